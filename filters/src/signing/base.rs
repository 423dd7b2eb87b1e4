//! The signature base (RFC 9421 §2.5): one line per covered component, then
//! the `@signature-params` line. Written straight into the caller's buffer.

use super::RequestView;

/// A component could not go into the base.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BaseError {
    /// A derived component or form we do not support.
    #[error("unsupported component {0:?}")]
    Unsupported(String),
    /// A covered field is not in the request.
    #[error("covered field {0:?} is not in the request")]
    Absent(String),
    /// A component is listed twice.
    #[error("component {0:?} is covered twice")]
    Duplicate(String),
    /// A value contains a line break or other control character.
    #[error("value of {0:?} contains a control character")]
    BadValue(String),
}

/// Component identifiers are written as sf-strings without escaping, so
/// only lower-case field names and known derived names are allowed.
fn valid_name(name: &str) -> bool {
    let body = name.strip_prefix('@').unwrap_or(name);
    !body.is_empty() && body.bytes().all(|b| NAME_BYTE[usize::from(b)])
}

/// The bytes [`valid_name`] allows, as a table: every covered field's name
/// is checked on every signed request.
static NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(
                c,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'^'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

fn push_checked(out: &mut String, name: &str, value: &str) -> Result<(), BaseError> {
    // A fold without early exit: the compiler checks many bytes per
    // instruction, and values are short enough that stopping early buys nothing.
    let control = value.bytes().fold(false, |bad, b| {
        bad | ((b < 0x20 && b != b'\t') || b == 0x7f)
    });
    if control {
        return Err(BaseError::BadValue(name.to_string()));
    }
    out.push_str(value);
    Ok(())
}

/// Appends the value of component `name` of `req`.
fn write_value(out: &mut String, req: &RequestView<'_>, name: &str) -> Result<(), BaseError> {
    match name {
        "@method" => push_checked(out, name, req.method),
        "@authority" => {
            let start = out.len();
            push_checked(out, name, req.authority)?;
            out[start..].make_ascii_lowercase();
            Ok(())
        }
        "@path" => push_checked(out, name, if req.path.is_empty() { "/" } else { req.path }),
        "@query" => {
            out.push('?');
            push_checked(out, name, req.query.unwrap_or(""))
        }
        _ if name.starts_with('@') => Err(BaseError::Unsupported(name.to_string())),
        _ => {
            let mut found = false;
            for (n, v) in req.fields {
                if *n == name {
                    if found {
                        out.push_str(", ");
                    }
                    found = true;
                    push_checked(out, name, v.trim_matches([' ', '\t']))?;
                }
            }
            if found {
                Ok(())
            } else {
                Err(BaseError::Absent(name.to_string()))
            }
        }
    }
}

/// Appends the signature base for `components` of `req` to `out`, ending
/// with the `@signature-params` line whose parameters `write_params` writes.
/// Returns the offset in `out` where the inner list (the `Signature-Input`
/// member value) starts; it runs to the end of `out`.
pub fn write_base(
    out: &mut String,
    req: &RequestView<'_>,
    components: &[&str],
    write_params: impl FnOnce(&mut String),
) -> Result<usize, BaseError> {
    for (i, name) in components.iter().enumerate() {
        if !valid_name(name) {
            return Err(BaseError::Unsupported((*name).to_string()));
        }
        if components[..i].contains(name) {
            return Err(BaseError::Duplicate((*name).to_string()));
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\": ");
        write_value(out, req, name)?;
        out.push('\n');
    }
    out.push_str("\"@signature-params\": ");
    let list_start = out.len();
    out.push('(');
    for (i, name) in components.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push('"');
        out.push_str(name);
        out.push('"');
    }
    out.push(')');
    write_params(out);
    Ok(list_start)
}

/// The four derived components every gateway signature starts with.
pub const GATEWAY_DERIVED: [&str; 4] = ["@method", "@authority", "@path", "@query"];

/// [`write_base`] for the gateway's own component list:
/// [`GATEWAY_DERIVED`] followed by every field of `req`, in order. The same
/// bytes as `write_base` with that list (a test holds them equal), without
/// looking each component up by name: per request that lookup, and checking
/// the fixed derived names again, cost more than the fields' own bytes.
pub fn write_gateway_base(
    out: &mut String,
    req: &RequestView<'_>,
    write_params: impl FnOnce(&mut String),
) -> Result<usize, BaseError> {
    for (i, (name, _)) in req.fields.iter().enumerate() {
        if name.starts_with('@') || !valid_name(name) {
            return Err(BaseError::Unsupported((*name).to_string()));
        }
        if req.fields[..i].iter().any(|(n, _)| n == name) {
            return Err(BaseError::Duplicate((*name).to_string()));
        }
    }
    out.push_str("\"@method\": ");
    push_checked(out, "@method", req.method)?;
    out.push_str("\n\"@authority\": ");
    let start = out.len();
    push_checked(out, "@authority", req.authority)?;
    out[start..].make_ascii_lowercase();
    out.push_str("\n\"@path\": ");
    let path = if req.path.is_empty() { "/" } else { req.path };
    push_checked(out, "@path", path)?;
    out.push_str("\n\"@query\": ?");
    push_checked(out, "@query", req.query.unwrap_or(""))?;
    out.push('\n');
    for (name, value) in req.fields {
        out.push('"');
        out.push_str(name);
        out.push_str("\": ");
        push_checked(out, name, value.trim_matches([' ', '\t']))?;
        out.push('\n');
    }
    out.push_str("\"@signature-params\": ");
    let list_start = out.len();
    out.push_str("(\"@method\" \"@authority\" \"@path\" \"@query\"");
    for (name, _) in req.fields {
        out.push_str(" \"");
        out.push_str(name);
        out.push('"');
    }
    out.push(')');
    write_params(out);
    Ok(list_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(fields: &'a [(&'a str, &'a str)], query: Option<&'a str>) -> RequestView<'a> {
        RequestView {
            method: "POST",
            authority: "Example.COM:8080",
            path: "/api/v1/files",
            query,
            fields,
        }
    }

    #[test]
    fn derived_components_follow_rfc_9421() {
        let fields = [("x-a", " one "), ("x-a", "two")];
        let mut out = String::new();
        let at = write_base(
            &mut out,
            &req(&fields, None),
            &["@method", "@authority", "@path", "@query", "x-a"],
            |o| o.push_str(";created=1"),
        )
        .unwrap();
        assert_eq!(
            out,
            "\"@method\": POST\n\"@authority\": example.com:8080\n\"@path\": /api/v1/files\n\
             \"@query\": ?\n\"x-a\": one, two\n\"@signature-params\": \
             (\"@method\" \"@authority\" \"@path\" \"@query\" \"x-a\");created=1"
        );
        assert_eq!(
            &out[at..],
            "(\"@method\" \"@authority\" \"@path\" \"@query\" \"x-a\");created=1"
        );
        let mut out = String::new();
        write_base(&mut out, &req(&[], Some("a=1&b")), &["@query"], |_| {}).unwrap();
        assert!(out.starts_with("\"@query\": ?a=1&b\n"), "{out}");
    }

    #[test]
    fn the_name_table_allows_lower_case_tokens_only() {
        for b in 0..=255u8 {
            let want =
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b);
            assert_eq!(NAME_BYTE[usize::from(b)], want, "byte {b}");
        }
    }

    #[test]
    fn the_gateway_base_is_write_base_over_its_component_list() {
        let fields = [
            ("x-request-id", "01a2"),
            ("x-mft-principal", " key:ab\t"),
            ("content-length", "5"),
        ];
        for query in [None, Some("a=1&b")] {
            for path in ["/api/v1/files", ""] {
                let r = RequestView {
                    path,
                    ..req(&fields, query)
                };
                let names: Vec<&str> = GATEWAY_DERIVED
                    .iter()
                    .copied()
                    .chain(fields.iter().map(|(n, _)| *n))
                    .collect();
                let params = |o: &mut String| o.push_str(";created=1");
                let (mut ours, mut theirs) = (String::new(), String::new());
                let a = write_gateway_base(&mut ours, &r, params).unwrap();
                let b = write_base(&mut theirs, &r, &names, params).unwrap();
                assert_eq!((ours.as_str(), a), (theirs.as_str(), b));
            }
        }
    }

    #[test]
    fn the_gateway_base_refuses_what_write_base_refuses() {
        let mut out = String::new();
        for (fields, want) in [
            (
                &[("x-a", "1"), ("x-a", "2")][..],
                BaseError::Duplicate("x-a".into()),
            ),
            (
                &[("@path", "/")][..],
                BaseError::Unsupported("@path".into()),
            ),
            (&[("Date", "x")][..], BaseError::Unsupported("Date".into())),
            (
                &[("x-bad", "a\nb")][..],
                BaseError::BadValue("x-bad".into()),
            ),
        ] {
            assert_eq!(
                write_gateway_base(&mut out, &req(fields, None), |_| {}),
                Err(want)
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_represent() {
        let fields = [("x-bad", "a\nb")];
        let r = req(&fields, None);
        let mut out = String::new();
        assert_eq!(
            write_base(&mut out, &r, &["x-bad"], |_| {}),
            Err(BaseError::BadValue("x-bad".into()))
        );
        assert_eq!(
            write_base(&mut out, &r, &["x-missing"], |_| {}),
            Err(BaseError::Absent("x-missing".into()))
        );
        assert_eq!(
            write_base(&mut out, &r, &["@target-uri"], |_| {}),
            Err(BaseError::Unsupported("@target-uri".into()))
        );
        assert_eq!(
            write_base(&mut out, &r, &["Date"], |_| {}),
            Err(BaseError::Unsupported("Date".into()))
        );
        assert_eq!(
            write_base(&mut out, &r, &["@method", "@method"], |_| {}),
            Err(BaseError::Duplicate("@method".into()))
        );
    }
}
