//! Signature parameters and their RFC 8941 serialization.
//!
//! The `@signature-params` line of the base must be byte-identical on both
//! sides, so both the signer and the verifier (which re-serializes what it
//! parsed) write parameters through this one function.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A parameter value of the kinds RFC 9421 signature parameters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamValue<'a> {
    /// An sf-integer (`created`, `expires`).
    Integer(i64),
    /// An sf-string (`keyid`, `alg`, `nonce`, `tag`).
    String(&'a str),
    /// An sf-token.
    Token(&'a str),
    /// An sf-boolean.
    Boolean(bool),
    /// An sf-binary.
    Bytes(&'a [u8]),
}

/// Appends `;name=value` (or `;name` for `true`) to `out`.
pub fn write_param(out: &mut String, name: &str, value: ParamValue<'_>) {
    out.push(';');
    out.push_str(name);
    match value {
        ParamValue::Boolean(true) => {}
        ParamValue::Boolean(false) => out.push_str("=?0"),
        ParamValue::Integer(n) => {
            out.push('=');
            out.push_str(itoa::Buffer::new().format(n));
        }
        ParamValue::String(s) => {
            out.push('=');
            write_sf_string(out, s);
        }
        ParamValue::Token(t) => {
            out.push('=');
            out.push_str(t);
        }
        ParamValue::Bytes(b) => {
            out.push_str("=:");
            STANDARD.encode_string(b, out);
            out.push(':');
        }
    }
}

/// Appends an sf-string with `"` and `\` escaped.
pub fn write_sf_string(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    // Copy runs between the characters that need a backslash.
    while let Some(i) = rest.bytes().position(|b| b == b'"' || b == b'\\') {
        out.push_str(&rest[..i]);
        out.push('\\');
        out.push_str(&rest[i..i + 1]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// The parameters the gateway signs, in the order it writes them.
#[derive(Debug, Clone, Copy)]
pub struct SignParams<'a> {
    /// `created`, Unix seconds.
    pub created: u64,
    /// `expires`, Unix seconds.
    pub expires: Option<u64>,
    /// `keyid`.
    pub key_id: Option<&'a str>,
    /// `alg`.
    pub alg: Option<&'a str>,
    /// `nonce`.
    pub nonce: Option<&'a str>,
    /// `tag`.
    pub tag: Option<&'a str>,
}

impl SignParams<'_> {
    /// Appends the parameters to `out`.
    pub fn write(&self, out: &mut String) {
        write_param(
            out,
            "created",
            ParamValue::Integer(i64::try_from(self.created).unwrap_or(i64::MAX)),
        );
        if let Some(e) = self.expires {
            write_param(
                out,
                "expires",
                ParamValue::Integer(i64::try_from(e).unwrap_or(i64::MAX)),
            );
        }
        if let Some(k) = self.key_id {
            write_param(out, "keyid", ParamValue::String(k));
        }
        if let Some(a) = self.alg {
            write_param(out, "alg", ParamValue::String(a));
        }
        if let Some(n) = self.nonce {
            write_param(out, "nonce", ParamValue::String(n));
        }
        if let Some(t) = self.tag {
            write_param(out, "tag", ParamValue::String(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_each_kind() {
        let mut s = String::new();
        write_param(&mut s, "a", ParamValue::Integer(-3));
        write_param(&mut s, "b", ParamValue::String("x\"y\\z"));
        write_param(&mut s, "c", ParamValue::Token("tok"));
        write_param(&mut s, "d", ParamValue::Boolean(true));
        write_param(&mut s, "e", ParamValue::Boolean(false));
        write_param(&mut s, "f", ParamValue::Bytes(b"hi"));
        assert_eq!(s, r#";a=-3;b="x\"y\\z";c=tok;d;e=?0;f=:aGk=:"#);
    }
}
