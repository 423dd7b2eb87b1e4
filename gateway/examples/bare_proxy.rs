//! The floor under the gateway's per-request cost: the same TLS front and
//! pingora proxy doing only what nginx and haproxy do in `benches/run`
//! (compare one API key, 401 without it, add the principal header, strip the
//! key), with none of the gateway's filters: no key store, scopes, rate
//! limits, input limits, signing, audit or metrics. `benches/run` measures it
//! as the `pingora` column; the gateway's figures minus these are what our
//! filters cost, these minus nginx's are pingora's. It links the gateway's
//! library, so it allocates with the same allocator (jemalloc).
//!
//! Usage: `bare_proxy LISTEN UPSTREAM CERT KEY THREADS API_KEY`

use async_trait::async_trait;
use bytes::Bytes;
use mft_gateway::conn_guard::ConnLimiter;
use mft_gateway::tls::{self, TlsFront};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};
use std::sync::Arc;
use std::time::Duration;

struct Bare {
    upstream: std::net::SocketAddr,
    api_key: String,
}

const UNAUTHORIZED: &[u8] = br#"{"status":401}"#;

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<bool> {
        let presented = session.req_header().headers.get("x-api-key");
        if presented.map(|v| v.as_bytes()) == Some(self.api_key.as_bytes()) {
            return Ok(false);
        }
        let mut resp = ResponseHeader::build(401, Some(2))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", UNAUTHORIZED.len())?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from_static(UNAUTHORIZED)), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        _ctx: &mut (),
    ) -> pingora_core::Result<()> {
        upstream.remove_header("x-api-key");
        upstream.insert_header("x-mft-principal", "key:bench")
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        return Err("usage: bare_proxy LISTEN UPSTREAM CERT KEY THREADS API_KEY".into());
    }
    let upstream = args[2].parse()?;
    let key = tls::load_certified_key(args[3].as_ref(), args[4].as_ref())?;
    let conf = ServerConf {
        threads: args[5].parse()?,
        upstream_keepalive_pool_size: 256,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = pingora_proxy::http_proxy(
        &server.configuration,
        Bare {
            upstream,
            api_key: args[6].clone(),
        },
    );
    let front = TlsFront::new(
        tls::server_config(key)?,
        Arc::new(proxy),
        Duration::from_secs(10),
        ConnLimiter::new(None),
        Duration::from_secs(10),
    );
    let mut svc = Service::new("bare".to_string(), front);
    svc.add_tcp(&args[1]);
    server.add_service(svc);
    server.run_forever()
}
