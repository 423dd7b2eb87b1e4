//! The durable SMTP spool under `data_dir`.
