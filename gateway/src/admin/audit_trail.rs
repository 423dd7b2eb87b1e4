//! `GET /admin/v1/audit`: the audit trail (the JSON-lines file and its
//! rotated predecessors), newest first, filtered and paged; `format=jsonl`
//! exports the page as JSON lines. The files are read line by line on a
//! blocking thread of the control plane, keeping only the matches the page
//! needs, never a whole file.

use crate::admin::{json_reply, problem, AdminApp, Reply};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

pub(crate) const USAGE: &str = "use GET /admin/v1/audit";

/// Records per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// The deepest page: `offset` beyond this is refused (use the time filters).
const MAX_OFFSET: usize = 50_000;

/// What a caller asked for.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Filter {
    event: Option<String>,
    principal: Option<String>,
    decision: Option<String>,
    client_ip: Option<String>,
    /// RFC 3339 with milliseconds, as the trail writes `time`.
    since: Option<String>,
    until: Option<String>,
    offset: usize,
    limit: usize,
    jsonl: bool,
}

fn time_bound(value: &str, key: &str) -> Result<String, String> {
    humantime::parse_rfc3339_weak(value)
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .map_err(|_| format!("{key}: an RFC 3339 time such as 2026-01-31T12:00:00Z expected"))
}

/// Parses the query string; `Err` names the bad parameter.
pub(crate) fn parse_filter(query: &str) -> Result<Filter, String> {
    let mut f = Filter {
        limit: DEFAULT_LIMIT,
        ..Filter::default()
    };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = value.trim().to_string();
        if value.is_empty() {
            continue;
        }
        if value.len() > 256 {
            return Err(format!("{key}: too long"));
        }
        match key.as_ref() {
            "event" => f.event = Some(value),
            "principal" => f.principal = Some(value),
            "decision" => match value.as_str() {
                "allow" | "deny" => f.decision = Some(value),
                _ => return Err("decision: allow or deny".to_string()),
            },
            "client_ip" => {
                let ip: std::net::IpAddr = value
                    .parse()
                    .map_err(|_| "client_ip: an IP address expected".to_string())?;
                f.client_ip = Some(ip.to_string());
            }
            "since" => f.since = Some(time_bound(&value, "since")?),
            "until" => f.until = Some(time_bound(&value, "until")?),
            "offset" => {
                f.offset = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_OFFSET)
                    .ok_or_else(|| format!("offset: 0 to {MAX_OFFSET}"))?
            }
            "limit" => {
                f.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit: 1 to {MAX_LIMIT}"))?
            }
            "format" => match value.as_str() {
                "json" => f.jsonl = false,
                "jsonl" => f.jsonl = true,
                _ => return Err("format: json or jsonl".to_string()),
            },
            other => return Err(format!("{other}: unknown parameter")),
        }
    }
    Ok(f)
}

impl Filter {
    fn matches(&self, record: &Value) -> bool {
        let field = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or("");
        let eq =
            |want: &Option<String>, name: &str| want.as_deref().is_none_or(|w| field(name) == w);
        eq(&self.event, "event")
            && eq(&self.principal, "principal")
            && eq(&self.decision, "decision")
            && eq(&self.client_ip, "client_ip")
            && self.since.as_deref().is_none_or(|s| field("time") >= s)
            && self.until.as_deref().is_none_or(|u| field("time") <= u)
    }
}

/// The trail's files, oldest first: `file.<keep>` … `file.1`, `file`.
fn files(file: &Path, keep: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", file.display())))
        .filter(|p| p.exists())
        .collect();
    out.push(file.to_path_buf());
    out
}

/// One page, newest first, and whether older matches exist. Blocking.
pub(crate) fn read_page(file: &Path, keep: u32, f: &Filter) -> std::io::Result<(Vec<Value>, bool)> {
    let want = f.offset + f.limit + 1;
    let mut newest: VecDeque<Value> = VecDeque::with_capacity(want.min(4096));
    for path in files(file, keep) {
        let reader = match std::fs::File::open(&path) {
            Ok(r) => BufReader::new(r),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in reader.lines() {
            let Ok(line) = line else { continue };
            let Ok(record) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if f.matches(&record) {
                if newest.len() == want {
                    newest.pop_front();
                }
                newest.push_back(record);
            }
        }
    }
    let more = newest.len() == want;
    let page = newest
        .into_iter()
        .rev()
        .skip(f.offset)
        .take(f.limit)
        .collect();
    Ok((page, more))
}

impl AdminApp {
    pub(crate) async fn audit_api(
        &self,
        session: &pingora_core::protocols::http::ServerSession,
        rest: &str,
    ) -> Reply {
        if !rest.is_empty() {
            return problem(404, "no such endpoint");
        }
        if session.req_header().method != http::Method::GET {
            return problem(405, USAGE);
        }
        let query = session.req_header().uri.query().unwrap_or("");
        let filter = match parse_filter(query) {
            Ok(f) => f,
            Err(why) => return problem(400, &why),
        };
        let file = self.config.audit.file.clone();
        let keep = self.config.audit.keep;
        let read = self
            .control
            .run(async move {
                tokio::task::spawn_blocking(move || {
                    read_page(&file, keep, &filter).map(|(page, more)| (page, more, filter))
                })
                .await
            })
            .await;
        let Ok(Ok(Ok((page, more, filter)))) = read else {
            return problem(503, "cannot read the audit trail");
        };
        if filter.jsonl {
            let mut body = Vec::new();
            for record in &page {
                body.extend_from_slice(record.to_string().as_bytes());
                body.push(b'\n');
            }
            return (200, "application/jsonl", body);
        }
        json_reply(
            200,
            serde_json::json!({
                "records": page,
                "offset": filter.offset,
                "limit": filter.limit,
                "more": more,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        let f = parse_filter("event=console&decision=deny&client_ip=127.0.0.1&limit=5&offset=10")
            .unwrap();
        assert_eq!(f.event.as_deref(), Some("console"));
        assert_eq!((f.limit, f.offset), (5, 10));
        let f = parse_filter("since=2026-01-31T12:00:00Z&format=jsonl").unwrap();
        assert_eq!(f.since.as_deref(), Some("2026-01-31T12:00:00.000Z"));
        assert!(f.jsonl);
        for bad in [
            "decision=maybe",
            "client_ip=nope",
            "since=yesterday",
            "limit=0",
            "limit=5000",
            "offset=999999",
            "format=xml",
            "colour=red",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_newest_first_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let line = |i: u32, decision: &str| {
            format!(
                "{{\"time\":\"2026-01-01T00:00:{i:02}.000Z\",\"event\":\"request\",\"decision\":\"{decision}\",\"n\":{i}}}\n"
            )
        };
        let old: String = (0..10).map(|i| line(i, "allow")).collect();
        let new: String = (10..20)
            .map(|i| line(i, if i % 2 == 0 { "deny" } else { "allow" }))
            .collect::<String>()
            + "not json\n";
        std::fs::write(dir.path().join("audit.jsonl.1"), old).unwrap();
        std::fs::write(&file, new).unwrap();
        let mut f = parse_filter("limit=3").unwrap();
        let (page, more) = read_page(&file, 2, &f).unwrap();
        let ns: Vec<u64> = page.iter().map(|r| r["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [19, 18, 17]);
        assert!(more);
        f.offset = 9;
        let (page, _) = read_page(&file, 2, &f).unwrap();
        let ns: Vec<u64> = page.iter().map(|r| r["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [10, 9, 8], "into the rotated file");
        let f = parse_filter("decision=deny&since=2026-01-01T00:00:13Z&limit=10").unwrap();
        let (page, more) = read_page(&file, 2, &f).unwrap();
        let ns: Vec<u64> = page.iter().map(|r| r["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [18, 16, 14]);
        assert!(!more);
    }
}
