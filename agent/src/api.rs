//! The agent's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, `/status`,
//! `/schedule`, and the status page (`/`, `/targets/NAME`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::telemetry::Telemetry;

/// Binds `addr` and serves until the returned task is aborted. Binding errors are
/// returned (the agent does not start without its endpoints).
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::debug!("accept on the API port failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let t = telemetry.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let t = t.clone();
                    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
                    let query = req.uri().query().unwrap_or_default().to_owned();
                    async move {
                        // Rendering /metrics or /status for thousands of targets takes
                        // milliseconds of CPU: off the runtime's workers, so that no
                        // probe starts late because of a scrape.
                        let resp = tokio::task::spawn_blocking(move || {
                            let r = route(&method, &path, &query, &t);
                            if matches!(path.as_str(), "/metrics" | "/status") {
                                crate::memory::trim();
                            }
                            r
                        })
                        .await
                        .unwrap_or_else(|_| {
                            reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "failed\n")
                        });
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

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
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            t.prometheus_text(),
        ),
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
            let body = crate::check::to_json(&t.state().outcomes());
            reply(StatusCode::OK, "application/json", body)
        }
        "/schedule" => reply(StatusCode::OK, "application/json", t.schedule_json()),
        _ => crate::page::respond(path, query, t.state())
            .unwrap_or_else(|| reply(StatusCode::NOT_FOUND, "text/plain", "not found\n")),
    }
}
