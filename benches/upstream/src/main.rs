//! Upstream for `benches/run`: the same backend behind the gateway, nginx and
//! haproxy, so only the proxies differ.
//!
//! - `GET /api/v1/files/small`: 1 KiB.
//! - `GET /api/v1/files/big/content?mib=N`: N MiB (default 1024) from one
//!   shared buffer, with `Content-Length`.
//! - `POST /api/v1/files`: reads and discards the body, answers its size.
//!
//! Every response says in `x-saw-principal` whether the proxy set
//! `X-MFT-Principal` and removed `X-API-Key`, so the script can check that
//! each proxy really does the work it is measured for.
//!
//! Usage: `mft-bench-upstream ADDR`

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;

const CHUNK: usize = 64 * 1024;

fn did_the_work(headers: &HeaderMap) -> HeaderValue {
    let ok = headers.contains_key("x-mft-principal") && !headers.contains_key("x-api-key");
    HeaderValue::from_static(if ok { "yes" } else { "no" })
}

async fn small(headers: HeaderMap) -> Response {
    static BODY: [u8; 1024] = [b'x'; 1024];
    let mut r = Bytes::from_static(&BODY).into_response();
    r.headers_mut()
        .insert("x-saw-principal", did_the_work(&headers));
    r
}

async fn big(headers: HeaderMap, Query(q): Query<HashMap<String, u64>>) -> Response {
    let mib = q.get("mib").copied().unwrap_or(1024);
    let chunk = Bytes::from(vec![b'y'; CHUNK]);
    let count = mib * (1024 * 1024 / CHUNK as u64);
    let stream =
        futures_util::stream::iter((0..count).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-length", HeaderValue::from(mib << 20));
    r.headers_mut()
        .insert("x-saw-principal", did_the_work(&headers));
    r
}

async fn sink(req: Request) -> Response {
    let saw = did_the_work(req.headers());
    let mut body = req.into_body().into_data_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => n += c.len() as u64,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    let mut r = (StatusCode::CREATED, format!("{{\"size\":{n}}}")).into_response();
    r.headers_mut().insert("x-saw-principal", saw);
    r
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_string());
    let app = Router::new()
        .route("/api/v1/files/small", get(small))
        .route("/api/v1/files/big/content", get(big))
        .route("/api/v1/files", post(sink));
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
