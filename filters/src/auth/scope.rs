//! Which scope a route needs.
//!
//! The policy is a list of rules, each a path prefix, an optional method set
//! and the scope it requires. It is deny-by-default: when
//! [`ScopePolicy::required_scope`] returns `None`, no scope grants the route
//! and the caller answers 403 with
//! [`Rejection::no_scope_for_route`](crate::decision::Rejection::no_scope_for_route)
//! ("no scope grants this route"), even for a credential holding `*`. So a
//! backend route added later stays closed until a rule opens it.

/// The scope that grants every other scope.
pub const WILDCARD: &str = "*";

/// One line of the route policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRule {
    /// Methods this rule covers (upper-case, as sent on the wire); `None` = any.
    pub methods: Option<Vec<String>>,
    /// Path prefix, matched on segment boundaries.
    pub path_prefix: String,
    /// Scope a credential must hold.
    pub scope: String,
}

impl ScopeRule {
    /// A rule for the given methods (empty slice = any method).
    pub fn new(methods: &[&str], path_prefix: &str, scope: &str) -> Self {
        ScopeRule {
            methods: if methods.is_empty() {
                None
            } else {
                Some(methods.iter().map(|m| m.to_string()).collect())
            },
            path_prefix: path_prefix.to_string(),
            scope: scope.to_string(),
        }
    }

    fn matches_method(&self, method: &str) -> bool {
        match &self.methods {
            None => true,
            Some(ms) => ms.iter().any(|m| m == method),
        }
    }
}

/// The route policy: rules ordered so the first match is the winner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePolicy {
    rules: Vec<ScopeRule>,
}

impl ScopePolicy {
    /// A policy from `rules`. Prefixes are normalised (no trailing `/`, except
    /// the root) and methods upper-cased: HTTP methods are case-sensitive, so
    /// a request's `get` is not `GET` and matches no rule, but a lower-case
    /// method in the config is surely meant upper-case. Among rules with
    /// prefixes of equal length, the one listed first wins.
    pub fn new(rules: Vec<ScopeRule>) -> ScopePolicy {
        let mut rules: Vec<ScopeRule> = rules
            .into_iter()
            .map(|mut r| {
                r.path_prefix = normalise_prefix(&r.path_prefix);
                if let Some(ms) = &mut r.methods {
                    for m in ms.iter_mut() {
                        m.make_ascii_uppercase();
                    }
                }
                r
            })
            .collect();
        // Stable: equal lengths keep their listed order.
        rules.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        ScopePolicy { rules }
    }

    /// The rules for the backend API in `docs/backend-api.md`.
    pub fn default_policy() -> ScopePolicy {
        const READ: &[&str] = &["GET", "HEAD"];
        ScopePolicy::new(vec![
            ScopeRule::new(READ, "/api/v1/files", "files:read"),
            ScopeRule::new(
                &["POST", "PUT", "PATCH", "DELETE"],
                "/api/v1/files",
                "files:write",
            ),
            // Every tus request, including the GET/HEAD/OPTIONS that probe an
            // upload's offset, is part of writing a file.
            ScopeRule::new(&[], "/api/v1/uploads", "files:write"),
            ScopeRule::new(READ, "/api/v1/deliveries", "deliveries:read"),
            ScopeRule::new(&["POST"], "/api/v1/deliveries", "deliveries:write"),
            ScopeRule::new(READ, "/api/v1/transfers", "transfers:read"),
            ScopeRule::new(&["POST"], "/api/v1/transfers", "transfers:write"),
        ])
    }

    /// `default` plus `extra_rules` from the config. At equal prefix length an
    /// extra rule wins over a default one; a longer prefix still wins over a
    /// shorter one wherever it comes from.
    pub fn with_overrides(default: ScopePolicy, extra_rules: Vec<ScopeRule>) -> ScopePolicy {
        let mut rules = extra_rules;
        rules.extend(default.rules);
        ScopePolicy::new(rules)
    }

    /// The rules, longest prefix first.
    pub fn rules(&self) -> &[ScopeRule] {
        &self.rules
    }

    /// The scope `method path` needs, or `None` if no rule covers it (deny).
    ///
    /// The longest matching prefix whose method set contains `method` wins.
    /// A query string or fragment is ignored. A path the backend might resolve
    /// to a different route than the one matched here (dot segments, empty
    /// segments, backslashes, percent-encoded `.`, `/` or `\`) gets `None`, so
    /// `/api/v1/files/../deliveries` can never borrow `files:read`.
    pub fn required_scope(&self, method: &str, path: &str) -> Option<&str> {
        let path = if is_plain(path) {
            path
        } else {
            let path = path.split(['?', '#']).next().unwrap_or(path);
            if !is_unambiguous(path) {
                return None;
            }
            path
        };
        self.rules
            .iter()
            .find(|r| prefix_matches(&r.path_prefix, path) && r.matches_method(method))
            .map(|r| r.scope.as_str())
    }
}

/// Whether `granted` includes `needed`, exactly or through `*`.
pub fn has_scope(granted: &[String], needed: &str) -> bool {
    granted.iter().any(|g| g == needed || g == WILDCARD)
}

fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A path that needs none of the checks below: it starts with `/` and has
/// no query, fragment, backslash, percent sign, dot or empty segment. Most
/// API paths are so, and one pass over the bytes settles it for a fraction
/// of what splitting into segments costs on every request.
fn is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && memchr::memchr3(b'?', b'#', b'\\', bytes).is_none()
        && memchr::memchr2(b'%', b'.', bytes).is_none()
        && !bytes.windows(2).any(|w| w == b"//")
}

fn is_unambiguous(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let encoded_separator = path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e' | b'f') | (b'5', b'c')
            )
    });
    if encoded_separator {
        return false;
    }
    // Skip the leading empty segment; allow one trailing slash.
    let inner = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
    inner.is_empty()
        || inner
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_path_is_one_the_full_checks_pass_unchanged() {
        for path in [
            "/",
            "/api/v1/files",
            "/api/v1/files/",
            "/api/v1/files/0192-ab_C~!",
            "api/v1/files",
            "/api//files",
            "/api/v1/files?x=1",
            "/api/v1/files#f",
            "/api/v1/files/.",
            "/api/v1/files/a.txt",
            "/api/v1/%2e%2e/deliveries",
            "/api\\v1",
            "",
        ] {
            if is_plain(path) {
                assert!(is_unambiguous(path), "{path}");
                assert_eq!(path.split(['?', '#']).next(), Some(path));
            }
        }
        assert!(is_plain("/api/v1/files/0192"));
        assert!(!is_plain("/api//files") && !is_plain("api/v1") && !is_plain("/a.b"));
    }

    #[test]
    fn default_policy_maps_the_backend_api() {
        let p = ScopePolicy::default_policy();
        let cases = [
            ("GET", "/api/v1/files", Some("files:read")),
            ("HEAD", "/api/v1/files/abc", Some("files:read")),
            ("GET", "/api/v1/files/abc/content", Some("files:read")),
            ("POST", "/api/v1/files", Some("files:write")),
            ("DELETE", "/api/v1/files/abc", Some("files:write")),
            ("PATCH", "/api/v1/files/abc", Some("files:write")),
            ("PUT", "/api/v1/files/abc", Some("files:write")),
            ("OPTIONS", "/api/v1/files", None),
            ("POST", "/api/v1/uploads", Some("files:write")),
            ("PATCH", "/api/v1/uploads/123", Some("files:write")),
            ("DELETE", "/api/v1/uploads/123", Some("files:write")),
            ("HEAD", "/api/v1/uploads/123", Some("files:write")),
            ("GET", "/api/v1/uploads/123", Some("files:write")),
            ("OPTIONS", "/api/v1/uploads", Some("files:write")),
            ("GET", "/api/v1/deliveries", Some("deliveries:read")),
            ("GET", "/api/v1/deliveries/d1", Some("deliveries:read")),
            ("POST", "/api/v1/deliveries", Some("deliveries:write")),
            ("DELETE", "/api/v1/deliveries/d1", None),
            ("GET", "/api/v1/transfers/t1", Some("transfers:read")),
            ("POST", "/api/v1/transfers", Some("transfers:write")),
            ("GET", "/api/v1/other", None),
            ("GET", "/healthz", None),
            ("get", "/api/v1/files", None),
        ];
        for (m, path, want) in cases {
            assert_eq!(p.required_scope(m, path), want, "{m} {path}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let p = ScopePolicy::default_policy();
        assert_eq!(p.required_scope("GET", "/api/v1/filesystem"), None);
        assert_eq!(
            p.required_scope("GET", "/api/v1/files/"),
            Some("files:read")
        );
        assert_eq!(p.required_scope("GET", "/api/v1/file"), None);
    }

    #[test]
    fn query_and_fragment_are_ignored() {
        let p = ScopePolicy::default_policy();
        assert_eq!(
            p.required_scope("GET", "/api/v1/files?folder=a/../b"),
            Some("files:read")
        );
        assert_eq!(p.required_scope("GET", "/api/v1/filesx?x=/"), None);
    }

    #[test]
    fn ambiguous_paths_get_no_scope() {
        let p = ScopePolicy::default_policy();
        for path in [
            "/api/v1/files/../deliveries",
            "/api/v1/files/./x",
            "/api/v1/files//x",
            "/api/v1/files/%2e%2e/deliveries",
            "/api/v1/files/%2E%2E/deliveries",
            "/api/v1/files%2fx",
            "/api/v1/files\\..\\deliveries",
            "/api/v1/files/%5c",
            "api/v1/files",
            "",
        ] {
            assert_eq!(p.required_scope("GET", path), None, "{path}");
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let p = ScopePolicy::new(vec![
            ScopeRule::new(&[], "/api", "api"),
            ScopeRule::new(&[], "/api/v1/files/special", "special"),
            ScopeRule::new(&["GET"], "/api/v1/files", "files:read"),
        ]);
        assert_eq!(
            p.required_scope("GET", "/api/v1/files/special/x"),
            Some("special")
        );
        assert_eq!(
            p.required_scope("GET", "/api/v1/files/x"),
            Some("files:read")
        );
        // The longer prefix's method set does not match, so the shorter rule applies.
        assert_eq!(p.required_scope("POST", "/api/v1/files/x"), Some("api"));
        assert_eq!(p.required_scope("POST", "/other"), None);
    }

    #[test]
    fn root_prefix_and_normalisation() {
        let p = ScopePolicy::new(vec![
            ScopeRule::new(&["get"], "/", "root"),
            ScopeRule::new(&[], "api/v2/", "v2"),
        ]);
        assert_eq!(p.required_scope("GET", "/anything"), Some("root"));
        assert_eq!(p.required_scope("GET", "/"), Some("root"));
        assert_eq!(p.required_scope("POST", "/api/v2/x"), Some("v2"));
        assert_eq!(p.rules()[0].path_prefix, "/api/v2");
    }

    #[test]
    fn overrides_win_at_equal_length_only() {
        let p = ScopePolicy::with_overrides(
            ScopePolicy::default_policy(),
            vec![
                ScopeRule::new(&["GET"], "/api/v1/files", "files:list"),
                ScopeRule::new(&[], "/api/v1", "api:any"),
            ],
        );
        assert_eq!(
            p.required_scope("GET", "/api/v1/files/x"),
            Some("files:list")
        );
        assert_eq!(
            p.required_scope("HEAD", "/api/v1/files/x"),
            Some("files:read")
        );
        assert_eq!(
            p.required_scope("POST", "/api/v1/files"),
            Some("files:write")
        );
        assert_eq!(p.required_scope("GET", "/api/v1/other"), Some("api:any"));
    }

    #[test]
    fn has_scope_is_exact_or_wildcard() {
        let granted = vec!["files:read".to_string()];
        assert!(has_scope(&granted, "files:read"));
        assert!(!has_scope(&granted, "files:write"));
        assert!(!has_scope(&granted, "files"));
        assert!(!has_scope(&granted, "files:rea"));
        assert!(!has_scope(&[], "files:read"));
        assert!(has_scope(&["*".to_string()], "transfers:write"));
        assert!(!has_scope(&["files:*".to_string()], "files:read"));
    }
}
