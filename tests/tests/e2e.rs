//! End-to-end tests: the real binaries on loopback, real TLS clients.
//! One test binary (faster to link), one module per area.

mod e2e {
    pub mod acme;
    pub mod admin_hardening;
    pub mod auth;
    pub mod bridge_drain;
    pub mod certificates;
    pub mod cli;
    pub mod console;
    pub mod content_digest;
    pub mod curl;
    pub mod dmz;
    pub mod edge;
    pub mod errors;
    pub mod imap;
    pub mod jwt;
    pub mod limits;
    pub mod log_secrets;
    pub mod mail_pins;
    pub mod mail_spoof;
    pub mod package;
    pub mod pop3;
    pub mod proxy;
    pub mod ratelimit;
    pub mod reload;
    pub mod sender_binding;
    pub mod sftp;
    pub mod sftp_attacks;
    pub mod shutdown;
    pub mod signing;
    pub mod smtp;
    pub mod smtp_limits;
    pub mod tls;
    pub mod tls_audit;
    pub mod transports;
    pub mod trust;
    pub mod trust_limits;
    pub mod trust_relay;
    pub mod tus;
    pub mod webhooks;
}
