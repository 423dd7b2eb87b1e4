//! The floor under the hyper engine's per-request cost: the gateway's rustls
//! config and hyper 1.x + hyper-util (h1/h2 by ALPN, pooled keep-alive
//! HTTP/1.1 upstream) doing only what nginx and haproxy do in `benches/run`
//! (compare one API key, 401 without it, add the principal header, strip
//! the key), with none of the gateway's filters. `benches/run` measures it
//! as the `hyper` column beside the pingora floor (`bare_proxy.rs`). It
//! links the gateway's library, so it allocates with the same allocator.
//!
//! Usage: `bare_hyper LISTEN UPSTREAM CERT KEY THREADS API_KEY`
//!
//! With `BARE_HYPER_IN_PINGORA=1` the same work runs inside pingora's
//! `Server` (its listener and runtime, as the gateway's hyper engine does)
//! instead of plain tokio: the difference is what pingora as the process
//! runtime costs.
//!
//! With `BARE_HYPER_PER_CORE=1` each of THREADS threads runs its own
//! single-threaded tokio runtime with its own `SO_REUSEPORT` socket and its
//! own upstream pool, as nginx's workers do: no work stealing, no wake-up
//! crosses a thread. The difference to plain tokio is what the
//! work-stealing scheduler costs per request.
//!
//! With `BARE_HYPER_DRIVEN=1` as well, the upstream connections have no
//! task of their own: the request's task drives its pooled connection while
//! it waits for the response head and while the response body streams, and
//! puts it back when the body ends; idle connections are a plain stack, not
//! hyper-util's pooled `Client`. The difference is that `Client` plus the
//! hop from the request's task to the connection's task and back (the
//! gateway, with its own pool already, gained nothing from the hop alone:
//! docs/benchmarks.md, ninth round).

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mft_gateway::tls;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type RespBody = UnsyncBoxBody<Bytes, hyper::Error>;

const UNAUTHORIZED: &[u8] = br#"{"status":401}"#;

struct Bare {
    client: Client<HttpConnector, Incoming>,
    upstream: String,
    api_key: http::HeaderValue,
    driven: Option<Arc<Driven>>,
}

type Sender = hyper::client::conn::http1::SendRequest<Incoming>;
type Conn =
    Pin<Box<hyper::client::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, Incoming>>>;

/// Idle upstream connections, each with the future that drives it: no task.
struct Driven {
    addr: String,
    idle: std::sync::Mutex<Vec<(Sender, Conn)>>,
}

impl Driven {
    fn take(&self) -> Option<(Sender, Conn)> {
        self.idle.lock().ok()?.pop()
    }

    fn put(&self, link: (Sender, Conn)) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < 256 {
                idle.push(link);
            }
        }
    }

    async fn connect(&self) -> Option<(Sender, Conn)> {
        let tcp = tokio::net::TcpStream::connect(&self.addr).await.ok()?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .ok()?;
        Some((sender, Box::pin(conn)))
    }

    async fn send(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> Option<http::Response<RespBody>> {
        let (mut sender, mut conn) = match self.take() {
            Some(link) => link,
            None => self.connect().await?,
        };
        let mut response = std::pin::pin!(sender.send_request(req));
        let mut open = true;
        let head = std::future::poll_fn(|cx| {
            if open && conn.as_mut().poll(cx).is_ready() {
                open = false;
            }
            response.as_mut().poll(cx)
        })
        .await
        .ok()?;
        let link = open.then_some((sender, conn));
        Some(head.map(|body| {
            DrivenBody {
                body,
                link,
                pool: self,
            }
            .boxed_unsync()
        }))
    }
}

/// The response body, driving the connection it comes from.
struct DrivenBody {
    body: Incoming,
    link: Option<(Sender, Conn)>,
    pool: Arc<Driven>,
}

impl http_body::Body for DrivenBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some((_, conn)) = &mut this.link {
            if conn.as_mut().poll(cx).is_ready() {
                this.link = None;
            }
        }
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() || this.body.is_end_stream() {
            if let Some((sender, mut conn)) = this.link.take() {
                // One more turn lets the connection take in the end of the
                // exchange and ask for the next request.
                if conn.as_mut().poll(cx).is_pending() && sender.is_ready() {
                    this.pool.put((sender, conn));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream() && self.link.is_none()
    }
}

impl Bare {
    async fn serve(&self, mut req: http::Request<Incoming>) -> http::Response<RespBody> {
        if req.headers().get("x-api-key") != Some(&self.api_key) {
            let mut resp = http::Response::new(
                Full::new(Bytes::from_static(UNAUTHORIZED))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
            let h = resp.headers_mut();
            h.insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            h.insert(
                "content-length",
                http::HeaderValue::from(UNAUTHORIZED.len()),
            );
            return resp;
        }
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let uri = format!("{}{pq}", self.upstream).parse().unwrap_or_default();
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_11;
        let h = req.headers_mut();
        h.remove("x-api-key");
        h.insert(
            "x-mft-principal",
            http::HeaderValue::from_static("key:bench"),
        );
        let sent = match &self.driven {
            Some(driven) => driven.clone().send(req).await,
            None => self
                .client
                .request(req)
                .await
                .ok()
                .map(|r| r.map(|b| b.boxed_unsync())),
        };
        match sent {
            Some(resp) => resp,
            None => {
                let mut resp = http::Response::new(
                    Full::new(Bytes::new())
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
                resp
            }
        }
    }
}

type Builder = hyper_util::server::conn::auto::Builder<TokioExecutor>;

fn builders() -> (Builder, Builder) {
    let mut h1 = Builder::new(TokioExecutor::new()).http1_only();
    h1.http1().keep_alive(true);
    let mut h2 = Builder::new(TokioExecutor::new()).http2_only();
    h2.http2()
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(1024 * 1024);
    (h1, h2)
}

fn bare(upstream: &str, api_key: &str) -> Result<Arc<Bare>, Box<dyn std::error::Error>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Ok(Arc::new(Bare {
        client: Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(256)
            .build(connector),
        upstream: format!("http://{upstream}"),
        api_key: http::HeaderValue::from_str(api_key)?,
        driven: std::env::var_os("BARE_HYPER_DRIVEN").map(|_| {
            Arc::new(Driven {
                addr: upstream.to_string(),
                idle: std::sync::Mutex::new(Vec::new()),
            })
        }),
    }))
}

async fn serve_tls<S>(
    tls: tokio_rustls::server::TlsStream<S>,
    bare: Arc<Bare>,
    h1: &Builder,
    h2: &Builder,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http2 = tls.get_ref().1.alpn_protocol() == Some(&b"h2"[..]);
    let service = hyper::service::service_fn(move |req| {
        let bare = bare.clone();
        async move { Ok::<_, std::convert::Infallible>(bare.serve(req).await) }
    });
    let builder = if http2 { h2 } else { h1 };
    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
}

/// The same floor as a pingora `ServerApp`.
struct InPingora {
    acceptor: tokio_rustls::TlsAcceptor,
    bare: Arc<Bare>,
    h1: Builder,
    h2: Builder,
}

#[async_trait::async_trait]
impl pingora_core::apps::ServerApp for InPingora {
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora_core::protocols::Stream,
        _shutdown: &pingora_core::server::ShutdownWatch,
    ) -> Option<pingora_core::protocols::Stream> {
        if let Ok(tls) = self.acceptor.accept(stream).await {
            serve_tls(tls, self.bare.clone(), &self.h1, &self.h2).await;
        }
        None
    }
}

fn in_pingora(
    args: &[String],
    acceptor: tokio_rustls::TlsAcceptor,
) -> Result<(), Box<dyn std::error::Error>> {
    let conf = pingora_core::server::configuration::ServerConf {
        threads: args[5].parse()?,
        ..Default::default()
    };
    let mut server = pingora_core::server::Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let (h1, h2) = builders();
    let app = InPingora {
        acceptor,
        bare: bare(&args[2], &args[6])?,
        h1,
        h2,
    };
    let mut svc = pingora_core::services::listening::Service::new("bare".to_string(), app);
    // As the gateway does: no pingora L4 buffers under rustls and hyper.
    svc.add_listener(
        pingora_core::listeners::ListenerConfig::tcp(args[1].clone())
            .l4_buffer(pingora_core::listeners::L4BufferSettings::unbuffered()),
    );
    server.add_service(svc);
    server.run_forever()
}

fn per_core(
    args: &[String],
    acceptor: tokio_rustls::TlsAcceptor,
) -> Result<(), Box<dyn std::error::Error>> {
    let listen: std::net::SocketAddr = args[1].parse()?;
    let threads: usize = args[5].parse()?;
    let mut workers = Vec::new();
    for _ in 0..threads.max(1) {
        let socket = mft_gateway::proxy::listener::reuseport_socket(listen)?;
        let (acceptor, upstream, key) = (acceptor.clone(), args[2].clone(), args[6].clone());
        workers.push(std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let bare = bare(&upstream, &key).map_err(|e| e.to_string())?;
                let (h1, h2) = builders();
                let (h1, h2) = (Arc::new(h1), Arc::new(h2));
                let listener =
                    tokio::net::TcpListener::from_std(socket).map_err(|e| e.to_string())?;
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let (acceptor, bare, h1, h2) =
                        (acceptor.clone(), bare.clone(), h1.clone(), h2.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve_tls(tls, bare, &h1, &h2).await;
                        }
                    });
                }
            })
        }));
    }
    for worker in workers {
        worker.join().map_err(|_| "worker panicked")??;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        return Err("usage: bare_hyper LISTEN UPSTREAM CERT KEY THREADS API_KEY".into());
    }
    let listen: std::net::SocketAddr = args[1].parse()?;
    let key = tls::load_certified_key(args[3].as_ref(), args[4].as_ref())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(key)?);
    if std::env::var_os("BARE_HYPER_IN_PINGORA").is_some() {
        return in_pingora(&args, acceptor);
    }
    if std::env::var_os("BARE_HYPER_PER_CORE").is_some() {
        return per_core(&args, acceptor);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args[5].parse()?)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let bare = bare(&args[2], &args[6])?;
        let (h1, h2) = builders();
        let (h1, h2) = (Arc::new(h1), Arc::new(h2));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, bare, h1, h2) = (acceptor.clone(), bare.clone(), h1.clone(), h2.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_tls(tls, bare, &h1, &h2).await;
                }
            });
        }
    })
}
