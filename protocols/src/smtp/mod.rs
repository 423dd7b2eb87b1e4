//! SMTP as the listener reads it: [`command`] (the command stream) and
//! [`sasl`] (AUTH responses).

pub mod command;
pub mod sasl;
