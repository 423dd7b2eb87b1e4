//! OAuth2 access tokens for XOAUTH2 (IMAP, POP3).
