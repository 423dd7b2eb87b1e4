//! Which public paths exist and what handles them.

/// Where a public request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`, answered by the gateway itself.
    Health,
    /// `/api/v1/...`, proxied to the backend.
    Api,
    /// `/federation/v1/...`, trust partners; answered by the gateway.
    Federation,
    /// Anything else: 404.
    NotFound,
}

/// Classifies a request path. Paths are compared as sent; the backend sees the
/// same path, so there is no normalisation gap between what we route and what it serves.
pub fn classify(method: &http::Method, path: &str) -> Route {
    if path == "/healthz" && (method == http::Method::GET || method == http::Method::HEAD) {
        Route::Health
    } else if path
        .strip_prefix(crate::backend_client::paths::API)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        Route::Api
    } else if path.starts_with("/federation/v1/") {
        Route::Federation
    } else {
        Route::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn routes() {
        assert_eq!(classify(&Method::GET, "/healthz"), Route::Health);
        assert_eq!(classify(&Method::POST, "/healthz"), Route::NotFound);
        let api = crate::backend_client::paths::API;
        assert_eq!(classify(&Method::GET, &format!("{api}/files")), Route::Api);
        assert_eq!(classify(&Method::GET, api), Route::Api);
        assert_eq!(
            classify(&Method::GET, &format!("{api}0/files")),
            Route::NotFound
        );
        assert_eq!(classify(&Method::GET, "/"), Route::NotFound);
        assert_eq!(
            classify(&Method::GET, "/federation/v1/ping"),
            Route::Federation
        );
        assert_eq!(
            classify(&Method::GET, "/federation/v2/ping"),
            Route::NotFound
        );
    }
}
