//! POP3 poller against a real Dovecot.
