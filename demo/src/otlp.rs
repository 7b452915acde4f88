//! An OTLP receiver for tests: gRPC (tonic) and HTTP/protobuf (hyper), decoding the
//! official `opentelemetry-proto` messages and keeping everything it received.
//!
//! It can require a header (to test authentication), answer with a partial
//! success, and be stopped and started again on the same ports (to test that an
//! agent keeps probing while its collector is down and resumes export after).

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::servers::{ServerError, Task};

/// What the receiver was sent, and how it answers.
#[derive(Default)]
pub struct Received {
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    headers: Mutex<Vec<Vec<(String, String)>>>,
    required: Mutex<Option<(String, String)>>,
    partial: Mutex<Option<(i64, String)>>,
    refusal: Mutex<Option<Refusal>>,
    changed: Notify,
}

/// How the receiver refuses every export, as a collector under pressure or in front
/// of an authenticating proxy does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// gRPC `UNAVAILABLE` / HTTP 503.
    Unavailable,
    /// gRPC `RESOURCE_EXHAUSTED` / HTTP 429 (rate limited).
    ResourceExhausted,
    /// gRPC `PERMISSION_DENIED` / HTTP 403.
    PermissionDenied,
    /// gRPC `UNAUTHENTICATED` / HTTP 401 with a message naming the token
    /// (`Failed to validate JWT.`).
    TokenRejected,
}

impl Refusal {
    const JWT_MESSAGE: &'static str = "Failed to validate JWT.";

    fn grpc(self) -> tonic::Status {
        match self {
            Refusal::Unavailable => tonic::Status::unavailable("the pipeline is not ready"),
            Refusal::ResourceExhausted => {
                tonic::Status::resource_exhausted("rate limit exceeded for this tenant")
            }
            Refusal::PermissionDenied => {
                tonic::Status::permission_denied("this key may not write metrics")
            }
            Refusal::TokenRejected => tonic::Status::unauthenticated(Self::JWT_MESSAGE),
        }
    }

    fn http(self) -> (u16, &'static str) {
        match self {
            Refusal::Unavailable => (503, "the pipeline is not ready"),
            Refusal::ResourceExhausted => (429, "rate limit exceeded for this tenant"),
            Refusal::PermissionDenied => (403, "this key may not write metrics"),
            Refusal::TokenRejected => (401, r#"{"message":"Failed to validate JWT."}"#),
        }
    }
}

/// A running receiver.
pub struct OtlpReceiver {
    grpc: SocketAddr,
    http: SocketAddr,
    received: Arc<Received>,
    grpc_stop: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<Task>,
    /// Whether the HTTP endpoint speaks TLS.
    pub tls: bool,
}

/// One received span with the resource it came with.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// The span.
    pub span: Span,
    /// Its resource's attributes.
    pub resource: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The string form of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

/// The string form of attribute `key` in `attrs`.
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(value_text)
}

/// Any OTLP value as text.
pub fn value_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn kvs(attrs: &[KeyValue]) -> Vec<(String, String)> {
    attrs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(value_text).unwrap_or_default(),
            )
        })
        .collect()
}

impl Received {
    fn check_header(&self, headers: &[(String, String)]) -> bool {
        match self.required.lock().ok().and_then(|r| r.clone()) {
            None => true,
            Some((k, v)) => headers
                .iter()
                .any(|(hk, hv)| hk.eq_ignore_ascii_case(&k) && *hv == v),
        }
    }

    fn note_headers(&self, headers: Vec<(String, String)>) {
        if let Ok(mut h) = self.headers.lock() {
            h.push(headers);
        }
    }

    fn refusal(&self) -> Option<Refusal> {
        self.refusal.lock().ok().and_then(|r| *r)
    }

    fn partial(&self) -> Option<(i64, String)> {
        self.partial.lock().ok().and_then(|p| p.clone())
    }

    fn add_traces(&self, req: ExportTraceServiceRequest) -> ExportTraceServiceResponse {
        if let Ok(mut t) = self.traces.lock() {
            t.push(req);
        }
        self.changed.notify_waiters();
        ExportTraceServiceResponse {
            partial_success: self.partial().map(|(n, m)| ExportTracePartialSuccess {
                rejected_spans: n,
                error_message: m,
            }),
        }
    }

    fn add_metrics(&self, req: ExportMetricsServiceRequest) -> ExportMetricsServiceResponse {
        if let Ok(mut t) = self.metrics.lock() {
            t.push(req);
        }
        self.changed.notify_waiters();
        ExportMetricsServiceResponse {
            partial_success: self.partial().map(|(n, m)| ExportMetricsPartialSuccess {
                rejected_data_points: n,
                error_message: m,
            }),
        }
    }
}

struct Grpc(Arc<Received>);

fn metadata_pairs(m: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
    m.iter()
        .filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                Some((k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            }
            tonic::metadata::KeyAndValueRef::Binary(_, _) => None,
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = metadata_pairs(request.metadata());
        self.0.note_headers(headers.clone());
        if let Some(refusal) = self.0.refusal() {
            return Err(refusal.grpc());
        }
        if !self.0.check_header(&headers) {
            return Err(tonic::Status::unauthenticated(
                "missing or wrong credentials",
            ));
        }
        Ok(tonic::Response::new(
            self.0.add_traces(request.into_inner()),
        ))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = metadata_pairs(request.metadata());
        self.0.note_headers(headers.clone());
        if let Some(refusal) = self.0.refusal() {
            return Err(refusal.grpc());
        }
        if !self.0.check_header(&headers) {
            return Err(tonic::Status::unauthenticated(
                "missing or wrong credentials",
            ));
        }
        Ok(tonic::Response::new(
            self.0.add_metrics(request.into_inner()),
        ))
    }
}

impl OtlpReceiver {
    /// Starts both endpoints on free loopback ports.
    pub async fn start() -> Result<OtlpReceiver, ServerError> {
        let received = Arc::new(Received::default());
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::serve(grpc, http, received))
    }

    /// Starts again on the ports of a receiver that was stopped, keeping what it
    /// had received.
    pub async fn restart(
        grpc: SocketAddr,
        http: SocketAddr,
        received: Arc<Received>,
    ) -> Result<OtlpReceiver, ServerError> {
        let g = TcpListener::bind(grpc).await?;
        let h = TcpListener::bind(http).await?;
        Ok(Self::serve(g, h, received))
    }

    /// Starts with the HTTP endpoint served over TLS with `identity` (the gRPC
    /// endpoint stays plaintext); `https_endpoint` is its URL.
    pub async fn start_tls(identity: &crate::certs::Identity) -> Result<OtlpReceiver, ServerError> {
        let received = Arc::new(Received::default());
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rustls::sign::CertifiedKey::from_der(
            identity.chain.clone(),
            identity.key(),
            &provider,
        )?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut r = Self::serve_with(
            grpc,
            http,
            received,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        );
        r.tls = true;
        Ok(r)
    }

    /// `https://localhost:<port>` of the HTTP endpoint, when it speaks TLS.
    pub fn https_endpoint(&self) -> String {
        format!("https://localhost:{}", self.http.port())
    }

    fn serve(grpc: TcpListener, http: TcpListener, received: Arc<Received>) -> OtlpReceiver {
        Self::serve_with(grpc, http, received, None)
    }

    fn serve_with(
        grpc: TcpListener,
        http: TcpListener,
        received: Arc<Received>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> OtlpReceiver {
        let grpc_addr = grpc
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let http_addr = http
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let r = received.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let grpc_task = tokio::spawn(async move {
            let svc = Grpc(r.clone());
            let _ = tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(Grpc(r))
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .add_service(
                    MetricsServiceServer::new(svc)
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(grpc),
                    async {
                        let _ = stop_rx.await;
                    },
                )
                .await;
        });
        let r = received.clone();
        let http_task = tokio::spawn(async move {
            // Connections live in this set, so stopping the receiver closes them too.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = http.accept().await {
                let r = r.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let svc = service_fn(move |req| {
                        let r = r.clone();
                        async move { Ok::<_, Infallible>(http_export(req, &r).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        OtlpReceiver {
            grpc: grpc_addr,
            http: http_addr,
            received,
            grpc_stop: Some(stop_tx),
            tasks: vec![Task::new(grpc_task), Task::new(http_task)],
            tls: false,
        }
    }

    /// `http://127.0.0.1:<port>` of the gRPC endpoint.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `http://127.0.0.1:<port>` of the HTTP endpoint (paths `/v1/traces`, `/v1/metrics`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// What it received (shared with a restarted receiver).
    pub fn received(&self) -> Arc<Received> {
        self.received.clone()
    }

    /// Stops listening; returns the ports to restart on.
    pub async fn stop(mut self) -> (SocketAddr, SocketAddr) {
        let addrs = (self.grpc, self.http);
        if let Some(stop) = self.grpc_stop.take() {
            let _ = stop.send(());
        }
        let mut tasks = std::mem::take(&mut self.tasks).into_iter();
        if let Some(grpc) = tasks.next() {
            // Graceful first (closes idle HTTP/2 connections), then forced.
            let _ = tokio::time::timeout(Duration::from_secs(2), grpc.join()).await;
        }
        for t in tasks {
            t.stop().await;
        }
        addrs
    }

    /// Refuse requests that lack header `name: value` (401 / UNAUTHENTICATED).
    pub fn require_header(&self, name: &str, value: &str) {
        if let Ok(mut r) = self.received.required.lock() {
            *r = Some((name.to_owned(), value.to_owned()));
        }
    }

    /// Refuse every export this way (`None`: accept again).
    pub fn refuse(&self, refusal: Option<Refusal>) {
        if let Ok(mut r) = self.received.refusal.lock() {
            *r = refusal;
        }
    }

    /// Answer every export with a partial success rejecting `rejected` items.
    pub fn answer_partial_success(&self, rejected: i64, message: &str) {
        if let Ok(mut p) = self.received.partial.lock() {
            *p = Some((rejected, message.to_owned()));
        }
    }
}

impl Received {
    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let Ok(reqs) = self.traces.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for req in reqs.iter() {
            for rs in &req.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| kvs(&r.attributes))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(ReceivedSpan {
                            span: s.clone(),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every metrics export request received so far, as sent.
    pub fn metric_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.metrics.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every metric received so far, with its resource attributes.
    pub fn metrics(&self) -> Vec<(Metric, Vec<(String, String)>)> {
        let Ok(reqs) = self.metrics.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for req in reqs.iter() {
            for rm in &req.resource_metrics {
                let resource = rm
                    .resource
                    .as_ref()
                    .map(|r| kvs(&r.attributes))
                    .unwrap_or_default();
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        out.push((m.clone(), resource.clone()));
                    }
                }
            }
        }
        out
    }

    /// The headers of every request received.
    pub fn headers(&self) -> Vec<Vec<(String, String)>> {
        self.headers.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The number of spans received so far.
    pub fn span_count(&self) -> usize {
        self.traces.lock().map_or(0, |reqs| {
            reqs.iter()
                .flat_map(|r| &r.resource_spans)
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum()
        })
    }

    /// The number of export requests received (traces, metrics).
    pub fn requests(&self) -> (usize, usize) {
        (
            self.traces.lock().map(|t| t.len()).unwrap_or(0),
            self.metrics.lock().map(|m| m.len()).unwrap_or(0),
        )
    }

    /// Waits until `done` holds, re-checking whenever something arrives, for at
    /// most `limit`. Returns whether it held.
    pub async fn wait_for(&self, limit: Duration, mut done: impl FnMut(&Received) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(self);
            }
        }
    }
}

fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

async fn http_export(
    req: hyper::Request<hyper::body::Incoming>,
    r: &Received,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    r.note_headers(headers.clone());
    let respond = |status: u16, body: Vec<u8>| {
        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-protobuf"),
        );
        resp
    };
    if let Some(refusal) = r.refusal() {
        let (status, body) = refusal.http();
        return respond(status, body.as_bytes().to_vec());
    }
    if !r.check_header(&headers) {
        return respond(401, Vec::new());
    }
    let Ok(collected) = body.collect().await else {
        return respond(400, Vec::new());
    };
    let raw = collected.to_bytes();
    let gz = parts
        .headers
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let bytes = if gz {
        match gunzip(&raw) {
            Some(b) => b,
            None => return respond(400, Vec::new()),
        }
    } else {
        raw.to_vec()
    };
    match parts.uri.path() {
        "/v1/traces" => match ExportTraceServiceRequest::decode(bytes.as_slice()) {
            Ok(req) => respond(200, r.add_traces(req).encode_to_vec()),
            Err(_) => respond(400, Vec::new()),
        },
        "/v1/metrics" => match ExportMetricsServiceRequest::decode(bytes.as_slice()) {
            Ok(req) => respond(200, r.add_metrics(req).encode_to_vec()),
            Err(_) => respond(400, Vec::new()),
        },
        _ => respond(404, Vec::new()),
    }
}
