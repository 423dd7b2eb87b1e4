//! HTTP-01 (RFC 8555 §8.3) for `[server.acme] challenge = "http-01"`: a
//! plain-HTTP listener that answers `GET /.well-known/acme-challenge/TOKEN`
//! with the key authorization of an order in progress and nothing else
//! (404 problem+json), so port 80 exposes no part of the gateway.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use mft_filters::problem::{Problem, CONTENT_TYPE};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::collections::HashMap;
use std::sync::Arc;

/// The path prefix the CA's validator asks for.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Tokens of the orders in progress and their key authorizations; read
/// with one atomic load per request, written by the ACME task.
#[derive(Debug, Default)]
pub struct Http01Tokens(ArcSwap<HashMap<String, String>>);

impl Http01Tokens {
    /// Answers `token` with `key_authorization` until removed.
    pub fn insert(&self, token: &str, key_authorization: String) {
        self.0.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(token.to_string(), key_authorization.clone());
            m
        });
    }

    /// Stops answering `token`.
    pub fn remove(&self, token: &str) {
        self.0.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(token);
            m
        });
    }

    fn get(&self, token: &str) -> Option<String> {
        self.0.load().get(token).cloned()
    }
}

/// The plain-HTTP app on `server.acme.http_listen`.
pub struct Http01App {
    tokens: Arc<Http01Tokens>,
}

impl Http01App {
    /// Answers from `tokens`.
    pub fn new(tokens: Arc<Http01Tokens>) -> Http01App {
        Http01App { tokens }
    }

    /// (status, content type, body) for `method` and `path`.
    fn answer(&self, method: &http::Method, path: &str) -> (u16, &'static str, Vec<u8>) {
        let problem = |status: u16, detail: &str| {
            (
                status,
                CONTENT_TYPE,
                Problem::new(status, Some(detail.to_string())).to_json(),
            )
        };
        let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) else {
            return problem(
                404,
                "this listener serves only ACME HTTP-01 challenges; the gateway is on HTTPS",
            );
        };
        if method != http::Method::GET && method != http::Method::HEAD {
            return problem(405, "ACME challenges are fetched with GET");
        }
        match self.tokens.get(token) {
            Some(key_authorization) => (
                200,
                "application/octet-stream",
                key_authorization.into_bytes(),
            ),
            None => problem(404, "no ACME challenge with this token is in progress"),
        }
    }
}

#[async_trait]
impl ServeHttp for Http01App {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let (method, path) = {
            let req = session.req_header();
            (req.method.clone(), req.uri.path().to_string())
        };
        let (status, content_type, body) = self.answer(&method, &path);
        let mut response = http::Response::new(body);
        *response.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::NOT_FOUND);
        if let Ok(v) = http::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&response.body().len().to_string()) {
            response
                .headers_mut()
                .insert(http::header::CONTENT_LENGTH, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_known_token_is_answered() {
        let tokens = Arc::new(Http01Tokens::default());
        tokens.insert("abc", "abc.thumb".to_string());
        let app = Http01App::new(tokens.clone());
        let (s, _, body) = app.answer(&http::Method::GET, "/.well-known/acme-challenge/abc");
        assert_eq!((s, body.as_slice()), (200, b"abc.thumb".as_slice()));
        assert_eq!(
            app.answer(&http::Method::GET, "/.well-known/acme-challenge/x")
                .0,
            404
        );
        assert_eq!(app.answer(&http::Method::GET, "/api/v1/files").0, 404);
        assert_eq!(
            app.answer(&http::Method::POST, "/.well-known/acme-challenge/abc")
                .0,
            405
        );
        tokens.remove("abc");
        assert_eq!(
            app.answer(&http::Method::GET, "/.well-known/acme-challenge/abc")
                .0,
            404
        );
    }
}
