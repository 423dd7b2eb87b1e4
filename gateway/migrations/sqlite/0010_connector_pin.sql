-- Client-certificate pin per DMZ connector (sqlite). Keep in step with
-- ../postgres/0010_connector_pin.sql.

-- SHA-256 of the certificate the connector must present, lower-case hex;
-- NULL = none required (the connector key alone authenticates it).
ALTER TABLE connectors ADD COLUMN client_cert_sha256 TEXT;
