//! Input rules for account names and scopes, checked before anything is written.

use super::StoreError;

/// Longest accepted service account name.
pub const MAX_ACCOUNT_LEN: usize = 64;
/// Longest accepted single scope.
pub const MAX_SCOPE_LEN: usize = 128;
/// Most scopes on one key.
pub const MAX_SCOPES: usize = 64;

/// Checks a service account name: `[A-Za-z0-9._-]{1,64}`.
pub fn validate_account(name: &str) -> Result<(), StoreError> {
    let refuse = |reason| {
        Err(StoreError::InvalidAccount {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_ACCOUNT_LEN {
        return refuse("it is longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return refuse("only letters A-Z a-z, digits 0-9 and . _ - are allowed");
    }
    Ok(())
}

/// Checks scopes (each `[a-z*][a-z0-9:_*.-]*`, at least one) and returns them
/// without duplicates, in the order given.
pub fn validate_scopes(scopes: &[String]) -> Result<Vec<String>, StoreError> {
    if scopes.is_empty() {
        return Err(StoreError::NoScopes);
    }
    if scopes.len() > MAX_SCOPES {
        return Err(StoreError::InvalidScope {
            scope: format!("({} scopes)", scopes.len()),
            reason: "a key may have at most 64 scopes",
        });
    }
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        validate_scope(scope)?;
        if !out.contains(scope) {
            out.push(scope.clone());
        }
    }
    Ok(out)
}

fn validate_scope(scope: &str) -> Result<(), StoreError> {
    let refuse = |reason| {
        Err(StoreError::InvalidScope {
            scope: scope.to_string(),
            reason,
        })
    };
    let Some(first) = scope.bytes().next() else {
        return refuse("it is empty");
    };
    if scope.len() > MAX_SCOPE_LEN {
        return refuse("it is longer than 128 characters");
    }
    if !(first.is_ascii_lowercase() || first == b'*') {
        return refuse("it must start with a lowercase letter a-z or *");
    }
    if !scope.bytes().all(|b| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b':' | b'_' | b'*' | b'.' | b'-')
    }) {
        return refuse("only lowercase letters, digits and : _ * . - are allowed");
    }
    Ok(())
}

/// Whether `id` could be a key id at all; anything else is answered "unknown"
/// without asking the database.
pub(crate) fn plausible_key_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An allowed-senders list (`ops@ourcorp.example,*@billing.ourcorp.example`)
/// in its canonical stored form.
pub fn validate_senders(list: &str) -> Result<String, StoreError> {
    Ok(mft_filters::auth::senders::SenderBinding::parse(list)?.canonical())
}
