//! The agent's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, `/status`,
//! `/schedule`, and the status page (`/`, `/targets/NAME`).
//!
//! The server is hardened for a port others can reach: HTTP/1.1 only, a deadline
//! on each request's headers (and on the TLS handshake), an idle timeout, a cap on
//! connections served at once, GET and HEAD only with no body and a bounded target,
//! one render shared by concurrent requests of the same path, and `/metrics`
//! streamed as it is rendered (at most [`METRICS_RENDERS`] at once). TLS and basic
//! auth come from the web config file ([`crate::web_config`]); `/healthz` answers
//! without credentials (it tells nothing but that the process is alive).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::telemetry::Telemetry;
use crate::web_config::WebSecurity;
use idle::{Activity, Watched};
use single_flight::Renders;

mod idle;
mod single_flight;

/// The body of every answer: a whole buffer, or `/metrics` as it is rendered.
type Body = BoxBody<Bytes, Infallible>;

/// `/metrics` renders at once; further scrapes wait for one to finish. Each render
/// holds a few pieces of text, never the whole exposition, so a burst of scrapes
/// costs CPU, not memory.
pub const METRICS_RENDERS: usize = 2;

/// Pieces of `/metrics` rendered ahead of what the client has read.
const METRICS_AHEAD: usize = 2;

fn boxed(r: Response<Full<Bytes>>) -> Response<Body> {
    r.map(BodyExt::boxed)
}

/// What one connection may cost the agent.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to receive a request's headers (and the TLS handshake): a client that
    /// trickles them (slowloris) is cut.
    pub header_read_timeout: Duration,
    /// A connection that moves no byte for this long is closed (half-open
    /// connections, idle keep-alive, a client that does not read its answer).
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until a
    /// slot frees.
    pub max_connections: usize,
    /// Longest request target accepted (414 beyond).
    pub max_path_bytes: usize,
    /// bcrypt verifications at once (each costs tens of milliseconds of CPU).
    pub max_auth_checks: usize,
    /// Requests waiting for a bcrypt verification at most; more get 429 at once.
    pub max_auth_waiting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_path_bytes: 2048,
            max_auth_checks: 2,
            max_auth_waiting: 32,
        }
    }
}

/// Binds `addr` and serves until the returned task is aborted, with the default
/// [`Limits`] and no TLS or authentication. Binding errors are returned (the agent
/// does not start without its endpoints).
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    serve_with(addr, telemetry, WebSecurity::default(), Limits::default()).await
}

/// Binds `addr` and serves with `security` (TLS, basic auth) and `limits`.
pub async fn serve_with(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    security: WebSecurity,
    limits: Limits,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let server = Arc::new(Server {
        telemetry,
        tls: security.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        auth_checks: Semaphore::new(limits.max_auth_checks.max(1)),
        auth_waiting: AtomicUsize::new(0),
        security,
        limits,
        renders: Renders::default(),
        metrics_renders: Arc::new(Semaphore::new(METRICS_RENDERS)),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let task = tokio::spawn(async move {
        loop {
            // At the cap, the next connection waits in the backlog for a slot.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::debug!("accept on the API port failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let server = server.clone();
            tokio::spawn(async move {
                server.connection(tcp).await;
                drop(slot);
            });
        }
    });
    Ok((bound, task))
}

/// What every connection shares.
struct Server {
    telemetry: Arc<Telemetry>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    security: WebSecurity,
    auth_checks: Semaphore,
    /// Requests waiting for one of `auth_checks`.
    auth_waiting: AtomicUsize,
    limits: Limits,
    renders: Renders,
    /// Slots for `/metrics` renders in progress.
    metrics_renders: Arc<Semaphore>,
}

impl Server {
    /// Serves one connection until it ends, errs, or stays idle too long.
    async fn connection(self: Arc<Self>, tcp: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = Watched {
            inner: tcp,
            activity: activity.clone(),
        };
        let idle = self.limits.idle_timeout;
        let work = async {
            match self.tls.clone() {
                Some(acceptor) => {
                    let handshake = acceptor.accept(io);
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(self.limits.header_read_timeout, handshake).await
                    {
                        self.http(tls).await;
                    }
                }
                None => self.http(io).await,
            }
        };
        tokio::select! {
            _ = work => {}
            _ = activity.idle_for(idle) => {}
        }
    }

    async fn http<I>(self: &Arc<Self>, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self.clone();
        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.respond(req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(16 * 1024)
            .max_headers(64)
            .serve_connection(TokioIo::new(io), svc)
            .await;
    }

    /// The answer to one request: limits first, then authentication, then the
    /// route (rendered once for concurrent requests of the same path; `/metrics`
    /// streamed).
    async fn respond(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        if let Some(refused) = refuse(&req, self.limits.max_path_bytes) {
            return boxed(refused);
        }
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        if self.security.requires_auth() && path != "/healthz" {
            let header = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            match self.authorized(header).await {
                Auth::Granted => {}
                Auth::Refused => {
                    let mut r = reply(StatusCode::UNAUTHORIZED, "text/plain", "unauthorized\n");
                    r.headers_mut().insert(
                        hyper::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"depprobe\""),
                    );
                    return boxed(r);
                }
                Auth::Busy => {
                    let mut r = reply(
                        StatusCode::TOO_MANY_REQUESTS,
                        "text/plain",
                        "too many password checks waiting; retry\n",
                    );
                    r.headers_mut()
                        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                    return boxed(r);
                }
            }
        }
        if path == "/healthz" {
            return boxed(route(req.method(), &path, &query, &self.telemetry));
        }
        if path == "/metrics" {
            return self.metrics().await;
        }
        let t = self.telemetry.clone();
        // Requests of the same route and parameters share one render.
        let key = crate::page::render_key(&path, &query);
        let rendered = self
            .renders
            .get(&key, move || {
                let r = route(&Method::GET, &path, &query, &t);
                if matches!(path.as_str(), "/metrics" | "/status") {
                    crate::memory::trim();
                }
                r
            })
            .await;
        let mut r = Response::new(Full::new(rendered.body.clone()));
        *r.status_mut() = rendered.status;
        *r.headers_mut() = rendered.headers.clone();
        boxed(r)
    }

    /// `/metrics`, rendered on the blocking pool a part of the targets at a time
    /// and sent as it is rendered: the agent never holds the whole exposition. A
    /// client that goes away stops the render at its next piece.
    async fn metrics(&self) -> Response<Body> {
        let Ok(slot) = self.metrics_renders.clone().acquire_owned().await else {
            return boxed(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "shutting down\n",
            ));
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(METRICS_AHEAD);
        let t = self.telemetry.clone();
        tokio::task::spawn_blocking(move || {
            t.prometheus_into(&mut |piece| tx.blocking_send(Bytes::from(piece)).is_ok());
            drop(slot);
            crate::memory::trim();
        });
        let pieces = futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|piece| piece.map(|b| Ok::<_, Infallible>(Frame::data(b))))
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(pieces)));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        );
        r
    }

    /// Whether `header` authorizes the request. Remembered credentials answer at
    /// once; others wait for one of `max_auth_checks` bcrypt slots, and past
    /// `max_auth_waiting` waiting checks a request is turned away at once, so that
    /// a flood of wrong passwords neither queues without end nor delays a scraper
    /// whose credentials were verified before.
    async fn authorized(&self, header: Option<Vec<u8>>) -> Auth {
        match self.security.remembered(header.as_deref()) {
            Some(true) => return Auth::Granted,
            Some(false) => return Auth::Refused,
            None => {}
        }
        let waiting = Waiting::enter(&self.auth_waiting);
        if waiting.ahead >= self.limits.max_auth_waiting {
            return Auth::Busy;
        }
        let Ok(_permit) = self.auth_checks.acquire().await else {
            return Auth::Refused;
        };
        drop(waiting);
        let security = self.security.clone();
        let ok = tokio::task::spawn_blocking(move || security.authorized(header.as_deref()))
            .await
            .unwrap_or(false);
        if ok { Auth::Granted } else { Auth::Refused }
    }
}

/// The verdict on a request's credentials.
enum Auth {
    Granted,
    Refused,
    /// Too many checks are waiting: 429, retry.
    Busy,
}

/// A place in the queue for a bcrypt slot, given up when dropped (also when the
/// request is abandoned).
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// Checks that were waiting already.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Waiting<'a> {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        Waiting { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The answer to a request outside the limits: a method other than GET and HEAD,
/// a body, an overlong target.
fn refuse<B>(req: &Request<B>, max_path_bytes: usize) -> Option<Response<Full<Bytes>>> {
    let closing = |status, text: &'static str| {
        let mut r = reply(status, "text/plain", text);
        r.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        Some(r)
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = closing(StatusCode::METHOD_NOT_ALLOWED, "GET only\n")?;
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(r);
    }
    let has_body = req.headers().contains_key(hyper::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return closing(StatusCode::PAYLOAD_TOO_LARGE, "no request body accepted\n");
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > max_path_bytes {
        return closing(StatusCode::URI_TOO_LONG, "request target too long\n");
    }
    None
}

/// The content type of `/metrics`: the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn route(method: &Method, path: &str, query: &str, t: &Telemetry) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    match path {
        "/metrics" => reply(StatusCode::OK, METRICS_CONTENT_TYPE, t.prometheus_text()),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            let state = t.state();
            if state.is_ready() {
                reply(StatusCode::OK, "text/plain", "ready\n")
            } else {
                let ran = state.outcomes().len();
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {ran} of {} targets have run\n", state.len()),
                )
            }
        }
        "/status" => {
            let body = status_json(t.state());
            reply(StatusCode::OK, "application/json", body)
        }
        "/schedule" => reply(StatusCode::OK, "application/json", t.schedule_json()),
        _ => crate::page::respond(path, query, t.state())
            .unwrap_or_else(|| reply(StatusCode::NOT_FOUND, "text/plain", "not found\n")),
    }
}

/// One `/status` entry: the latest outcome (the `check --json` shape), when the
/// target's last run finished, and how many runs it has finished.
#[derive(serde::Serialize)]
struct StatusEntry<'a> {
    #[serde(flatten)]
    outcome: &'a depprobe_probes::Outcome,
    last_run: String,
    runs: u64,
}

/// `/status`: every target that has run, in configuration order.
fn status_json(state: &crate::state::State) -> String {
    let latest = state.latest();
    let entries: Vec<StatusEntry<'_>> = latest
        .iter()
        .map(|(outcome, finished, runs)| StatusEntry {
            outcome,
            last_run: depprobe_probes::outcome::rfc3339(*finished),
            runs: *runs,
        })
        .collect();
    serde_json::to_string_pretty(&entries)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize: {e}\"}}"))
}
