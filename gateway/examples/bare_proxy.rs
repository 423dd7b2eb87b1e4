//! The floor under the gateway's per-request cost: the same TLS front and
//! pingora proxy with no filters at all (no auth, limits, signing, audit).
//! `benches/run` numbers minus this proxy's are what our filters cost.
//!
//! Usage: `bare_proxy LISTEN UPSTREAM CERT KEY THREADS`

use async_trait::async_trait;
use mft_gateway::conn_guard::ConnLimiter;
use mft_gateway::tls::{self, TlsFront};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session};
use std::sync::Arc;
use std::time::Duration;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

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
        upstream.insert_header("x-mft-principal", "key:bare")
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: bare_proxy LISTEN UPSTREAM CERT KEY THREADS".into());
    }
    let upstream = args[2].parse()?;
    let key = tls::load_certified_key(args[3].as_ref(), args[4].as_ref())?;
    let conf = ServerConf {
        threads: args[5].parse()?,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = pingora_proxy::http_proxy(&server.configuration, Bare { upstream });
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
