//! Error messages with their whole cause chain, for operators' eyes.

/// reqwest's top-level message hides the cause ("error sending request"); show all.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
