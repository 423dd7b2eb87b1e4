//! RFC 9457 problem details, the one error body every HTTP surface returns.

use serde::Serialize;

/// Media type of a problem details body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem details object with the request id extension member.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// A URI reference naming the problem type; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence; never carries a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request id, so a caller can quote it to an operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem with the standard title for `status` and an optional detail.
    pub fn new(status: u16, detail: impl Into<Option<String>>) -> Self {
        Problem {
            kind: "about:blank".to_string(),
            title: title_for(status).to_string(),
            status,
            detail: detail.into(),
            request_id: None,
        }
    }

    /// Sets the problem type URI (for example `urn:mft:problem:invalid-filename`).
    pub fn with_type(mut self, kind: &str) -> Self {
        self.kind = kind.to_string();
        self
    }

    /// Attaches the request id.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// The JSON body, members in the order of the struct's fields (what
    /// its `Serialize` writes, see the tests).
    pub fn to_json(&self) -> Vec<u8> {
        write_json(
            &self.kind,
            &self.title,
            self.status,
            self.detail.as_deref(),
            self.request_id.as_deref(),
        )
    }
}

/// The JSON body of the problem `Problem::new(status, detail)
/// .with_type(kind).with_request_id(id)` would write, from borrowed
/// parts: a refusal answers without allocating the problem's strings
/// first (four allocations per refused request).
pub fn json_for(
    kind: &str,
    status: u16,
    detail: Option<&str>,
    request_id: Option<&str>,
) -> Vec<u8> {
    write_json(kind, title_for(status), status, detail, request_id)
}

/// [`json_for`] of a refusal whose type and detail are fixed texts (a
/// plain 401, a missing scope's route): everything before the request id
/// is the same from one refusal to the next, so each thread keeps the last
/// few of those prefixes and copies one instead of writing five members
/// again (a third of a refusal's JSON instructions, callgrind per 401).
/// `'static` is what makes the texts' addresses a sound key: they never
/// change or go away.
pub fn json_for_fixed(
    kind: &'static str,
    status: u16,
    detail: &'static str,
    request_id: &str,
) -> Vec<u8> {
    /// Type and detail by address and length, and the status.
    type Key = (usize, usize, usize, usize, u16);
    const SLOTS: usize = 4;
    /// The slot to fill next, and the slots.
    type Prefixes = (usize, [Option<(Key, Vec<u8>)>; SLOTS]);
    thread_local! {
        static PREFIXES: std::cell::RefCell<Prefixes> =
            const { std::cell::RefCell::new((0, [None, None, None, None])) };
    }
    let key: Key = (
        kind.as_ptr() as usize,
        kind.len(),
        detail.as_ptr() as usize,
        detail.len(),
        status,
    );
    let mut out = None;
    let _ = PREFIXES.try_with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return;
        };
        let (next, slots) = &mut *cache;
        let found = slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|(k, _)| *k == key));
        let i = match found {
            Some(i) => i,
            None => {
                let i = *next;
                *next = (*next + 1) % SLOTS;
                let mut prefix =
                    write_json(kind, title_for(status), status, Some(detail), Some(""));
                // Drop the empty id's `""}`: the id and the `}` follow.
                prefix.truncate(prefix.len() - 3);
                slots[i] = Some((key, prefix));
                i
            }
        };
        if let Some((_, prefix)) = &slots[i] {
            let mut body = Vec::with_capacity(prefix.len() + request_id.len() + 3);
            body.extend_from_slice(prefix);
            crate::json::push_str(&mut body, request_id);
            body.push(b'}');
            out = Some(body);
        }
    });
    out.unwrap_or_else(|| json_for(kind, status, Some(detail), Some(request_id)))
}

fn write_json(
    kind: &str,
    title: &str,
    status: u16,
    detail: Option<&str>,
    request_id: Option<&str>,
) -> Vec<u8> {
    // Sized for the members, so the body is one allocation (a 401 with its
    // request id outgrew a fixed 160 bytes).
    let mut out = Vec::with_capacity(
        64 + kind.len() + title.len() + detail.map_or(0, str::len) + request_id.map_or(0, str::len),
    );
    crate::json::Object::new(&mut out)
        .str("type", kind)
        .str("title", title)
        .uint("status", u64::from(status))
        .opt_str("detail", detail)
        .opt_str("request_id", request_id)
        .end();
    out
}

/// Reason phrase used as the problem title.
pub fn title_for(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        460 => "Checksum Mismatch",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_json_writes_what_serde_would() {
        let full = Problem::new(413, Some("too \"big\"\n".to_string()))
            .with_type("urn:mft:problem:x")
            .with_request_id("r-1");
        for p in [full, Problem::new(404, None)] {
            assert_eq!(p.to_json(), serde_json::to_vec(&p).unwrap());
        }
    }

    #[test]
    fn json_for_writes_what_the_built_problem_writes() {
        let built = Problem::new(401, Some("missing \"key\"".to_string()))
            .with_type("https://example/problems/unauthenticated")
            .with_request_id("0192-1");
        assert_eq!(
            json_for(
                "https://example/problems/unauthenticated",
                401,
                Some("missing \"key\""),
                Some("0192-1")
            ),
            built.to_json()
        );
        assert_eq!(
            json_for("about:blank", 404, None, None),
            Problem::new(404, None).to_json()
        );
    }

    #[test]
    fn a_fixed_refusal_writes_what_json_for_writes() {
        // More kinds than slots, in turns, so prefixes are made, reused and
        // replaced; ids that need escaping and one that is empty.
        const KINDS: [(&str, u16, &str); 6] = [
            (
                "urn:mft:problem:unauthenticated",
                401,
                "missing or invalid credentials",
            ),
            (
                "urn:mft:problem:route-not-granted",
                403,
                "no scope grants this route",
            ),
            ("about:blank", 404, "no such route"),
            (
                "urn:mft:problem:banned",
                429,
                "too many failed attempts; try again later",
            ),
            ("urn:mft:problem:x", 400, "a \"quoted\"\ndetail"),
            (
                "urn:mft:problem:unauthenticated",
                403,
                "missing or invalid credentials",
            ),
        ];
        for round in 0..3 {
            for (i, (kind, status, detail)) in KINDS.iter().enumerate() {
                for id in ["0192-1", "", "q\"uote", &format!("{round}-{i}")] {
                    assert_eq!(
                        json_for_fixed(kind, *status, detail, id),
                        json_for(kind, *status, Some(detail), Some(id)),
                        "{kind} {status} {id}"
                    );
                }
            }
        }
    }

    #[test]
    fn serialises_rfc9457_members() {
        let p = Problem::new(502, Some("backend unreachable".to_string())).with_request_id("r1");
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Bad Gateway");
        assert_eq!(v["status"], 502);
        assert_eq!(v["detail"], "backend unreachable");
        assert_eq!(v["request_id"], "r1");
    }

    #[test]
    fn omits_absent_members() {
        let v: serde_json::Value =
            serde_json::from_slice(&Problem::new(404, None).to_json()).unwrap();
        assert!(v.get("detail").is_none());
        assert!(v.get("request_id").is_none());
    }
}
