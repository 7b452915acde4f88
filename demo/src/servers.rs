//! Local servers for tests and the demo: HTTP(S) with a swappable certificate and
//! responder, and the misbehaving ones (silent, plaintext, closed port).
//!
//! Every server binds `127.0.0.1:0` before `start` returns, so it is ready when the
//! caller gets its address: no sleeps, no races.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::certs::Identity;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or I/O.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration was refused.
    #[error("server TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// What a request looked like, for a responder.
#[derive(Clone, Debug)]
pub struct Req {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers (names lowercase).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Req {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// `status` with a text body.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// 200 with a text body.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply::new(200, body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Decides the answer to a request.
pub type Responder = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// Aborts a background task when dropped.
#[derive(Debug)]
pub struct Task(Option<JoinHandle<()>>);

impl Task {
    /// Owns `handle`.
    pub fn new(handle: JoinHandle<()>) -> Task {
        Task(Some(handle))
    }

    /// Waits for the task to end by itself.
    pub async fn join(mut self) {
        if let Some(h) = self.0.as_mut() {
            let _ = h.await;
            self.0 = None;
        }
    }

    /// Aborts the task and waits until it is gone (and what it held is closed).
    pub async fn stop(mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// Which TLS versions a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versions {
    /// 1.2 and 1.3.
    Both,
    /// 1.2 only.
    Tls12Only,
    /// 1.3 only.
    Tls13Only,
}

/// How to start an [`HttpServer`].
pub struct HttpServerBuilder {
    identity: Option<Identity>,
    versions: Versions,
    client_ca: Option<CertificateDer<'static>>,
    responder: Responder,
}

/// A running HTTP or HTTPS server.
pub struct HttpServer {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    _task: Task,
}

struct State {
    identity: RwLock<Option<Arc<CertifiedKey>>>,
    responder: RwLock<Responder>,
    requests: AtomicU64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("State")
    }
}

impl ResolvesServerCert for State {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.identity.read().ok().and_then(|g| g.clone())
    }
}

/// The chain as given, with its key. The key is not matched against the first
/// certificate, so that a broken server can be played too: a chain in reverse
/// order (its CA first) is served as such, as a misconfigured server sends it.
fn certified(identity: &Identity) -> Result<Arc<CertifiedKey>, ServerError> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider.key_provider.load_private_key(identity.key())?;
    let mut key = CertifiedKey::new(identity.chain.clone(), signer);
    key.ocsp = identity.ocsp.clone();
    Ok(Arc::new(key))
}

impl HttpServer {
    /// A builder for a server answering 200 `ok`.
    pub fn builder() -> HttpServerBuilder {
        HttpServerBuilder {
            identity: None,
            versions: Versions::Both,
            client_ca: None,
            responder: Arc::new(|_| Reply::ok("ok")),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://host:port/path` (or `http://`).
    pub fn url(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}{path}", self.addr.port())
    }

    /// Serves another certificate from the next handshake on.
    pub fn set_identity(&self, identity: &Identity) -> Result<(), ServerError> {
        let ck = certified(identity)?;
        if let Ok(mut g) = self.state.identity.write() {
            *g = Some(ck);
        }
        Ok(())
    }

    /// Answers differently from the next request on.
    pub fn set_responder(&self, f: impl Fn(&Req) -> Reply + Send + Sync + 'static) {
        if let Ok(mut g) = self.state.responder.write() {
            *g = Arc::new(f);
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }
}

impl HttpServerBuilder {
    /// Serve HTTPS with this certificate.
    pub fn tls(mut self, identity: &Identity) -> Self {
        self.identity = Some(identity.clone());
        self
    }

    /// Limit the TLS versions.
    pub fn versions(mut self, v: Versions) -> Self {
        self.versions = v;
        self
    }

    /// Require a client certificate issued by this CA.
    pub fn require_client_cert(mut self, ca: &CertificateDer<'static>) -> Self {
        self.client_ca = Some(ca.clone());
        self
    }

    /// Answer with `f`.
    pub fn respond(mut self, f: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Self {
        self.responder = Arc::new(f);
        self
    }

    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(self) -> Result<HttpServer, ServerError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let identity = match &self.identity {
            Some(id) => Some(certified(id)?),
            None => None,
        };
        let state = Arc::new(State {
            identity: RwLock::new(identity),
            responder: RwLock::new(self.responder),
            requests: AtomicU64::new(0),
        });
        let acceptor = match &self.identity {
            Some(_) => Some(TlsAcceptor::from(Arc::new(server_config(
                state.clone(),
                self.versions,
                self.client_ca.as_ref(),
            )?))),
            None => None,
        };
        let tls = acceptor.is_some();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                serve_http(tls, st).await;
                            }
                        }
                        None => serve_http(tcp, st).await,
                    }
                });
            }
        });
        Ok(HttpServer {
            addr,
            tls,
            state,
            _task: Task::new(task),
        })
    }
}

fn server_config(
    state: Arc<State>,
    versions: Versions,
    client_ca: Option<&CertificateDer<'static>>,
) -> Result<ServerConfig, ServerError> {
    static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
    static ONLY13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let v = match versions {
        Versions::Both => BOTH,
        Versions::Tls12Only => ONLY12,
        Versions::Tls13Only => ONLY13,
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(v)?;
    let mut config = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone())?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(state)
        }
        None => builder.with_no_client_auth().with_cert_resolver(state),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

async fn serve_http<IO>(io: IO, state: Arc<State>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let r = Req {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body,
            };
            state.requests.fetch_add(1, Ordering::Relaxed);
            let responder = state.responder.read().map(|g| g.clone());
            let reply = match responder {
                Ok(f) => f(&r),
                Err(_) => Reply::new(500, "responder poisoned"),
            };
            let mut resp = hyper::Response::builder().status(reply.status);
            for (k, v) in &reply.headers {
                resp = resp.header(k, v);
            }
            resp.body(Full::new(reply.body))
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// A server that accepts TCP connections and never says anything.
pub struct SilentServer {
    addr: SocketAddr,
    _task: Task,
}

impl SilentServer {
    /// Binds 127.0.0.1 on a free port.
    pub async fn start() -> Result<SilentServer, ServerError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut held: Vec<TcpStream> = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        Ok(SilentServer {
            addr,
            _task: Task::new(task),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A server that answers every connection with fixed bytes and closes.
pub struct RawServer {
    addr: SocketAddr,
    _task: Task,
}

impl RawServer {
    /// Binds 127.0.0.1 on a free port; each connection gets `reply`.
    pub async fn start(reply: &'static [u8]) -> Result<RawServer, ServerError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                    let _ = s.write_all(reply).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(RawServer {
            addr,
            _task: Task::new(task),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A loopback port with nothing listening (bound, then released).
pub async fn closed_port() -> Result<u16, ServerError> {
    Ok(free_port()?)
}

/// A loopback port that was free a moment ago (bound on `127.0.0.1:0`, then released),
/// for a child process (PostgreSQL, Prometheus, nginx) that must be told its port.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr().map(|a| a.port())
}
