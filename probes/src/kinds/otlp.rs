//! `kind: otlp`: the ingest path of an OTLP receiver, probed with one small export.
//!
//! Applications push their telemetry to a collector; when it refuses their token or
//! is overloaded, monitoring goes dark (incident 01, from the other side). One run
//! dials the receiver through the shared transport (so TLS is judged like every
//! other kind), sends one gauge point or one span that says it is synthetic
//! (`depprobe.synthetic=true`, service `depprobe-synthetic`, so a collector can drop
//! it), and names the answer: gRPC `UNAUTHENTICATED` / HTTP 401 is `auth_rejected`
//! (`jwt_rejected` when it names the token), `PERMISSION_DENIED` / 403 is
//! `auth_rejected`, `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, 503, 429 and the rest are
//! `http_status` with the code, and a partial success is a `partial_success` finding.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::Method;
use http::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use depprobe_config::kinds::otlp::{OtlpProbeSpec, OtlpSignal};
use depprobe_config::{OtlpProtocol, ProbeConfig, Secret};

use crate::outcome::{Finding, FindingType, HttpFacts, Severity, Target};
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify::{ClientAuth, classify};
use crate::transport::http_client::{HttpClient, classify_status, is_jwt_rejection};
use crate::transport::tap::{Tap, Tapped};
use crate::transport::tls::TlsClient;
use crate::transport::{Dns, classify_stream, dial};
use crate::{BuildError, Exec, ProbeEnv};

/// The `service.name` of what the probe sends.
pub const SYNTHETIC_SERVICE: &str = "depprobe-synthetic";
/// The resource attribute that marks it (true).
pub const SYNTHETIC_ATTRIBUTE: &str = "depprobe.synthetic";
/// The name of the gauge it sends.
pub const HEARTBEAT_METRIC: &str = "depprobe.synthetic.heartbeat";
/// The name of the span it sends.
pub const SPAN_NAME: &str = "depprobe synthetic probe";

/// An `otlp` probe.
pub struct OtlpProbe {
    meta: ProbeMeta,
    url: Url,
    protocol: OtlpProtocol,
    signal: OtlpSignal,
    client: HttpClient,
    tls: TlsClient,
    dns: Dns,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the receiver said to an accepted export.
struct Accepted {
    rejected: i64,
    message: String,
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn resource(probe: &str) -> Resource {
    let mut attributes = vec![
        kv("service.name", SYNTHETIC_SERVICE),
        kv("depprobe.probe.name", probe),
    ];
    attributes.push(KeyValue {
        key: SYNTHETIC_ATTRIBUTE.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(true)),
        }),
        ..Default::default()
    });
    Resource {
        attributes,
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "depprobe".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One gauge point, marked synthetic.
pub fn metrics_request(probe: &str, now: SystemTime) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(probe)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: vec![Metric {
                    name: HEARTBEAT_METRIC.to_owned(),
                    description: "A synthetic point sent by depprobe to test an OTLP ingest path; safe to drop.".to_owned(),
                    unit: "1".to_owned(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: unix_nanos(now),
                            value: Some(number_data_point::Value::AsInt(1)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One span, marked synthetic.
pub fn traces_request(probe: &str, now: SystemTime) -> ExportTraceServiceRequest {
    let nanos = unix_nanos(now);
    let mut trace_id = nanos.to_be_bytes().to_vec();
    trace_id.extend_from_slice(&(nanos ^ 0x5eed_5eed_5eed_5eed).to_be_bytes());
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(probe)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: vec![Span {
                    trace_id,
                    span_id: nanos.to_le_bytes().to_vec(),
                    name: SPAN_NAME.to_owned(),
                    kind: span::SpanKind::Internal as i32,
                    start_time_unix_nano: nanos,
                    end_time_unix_nano: nanos,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn invalid(what: impl Into<String>) -> BuildError {
    BuildError::Invalid(what.into())
}

impl OtlpProbe {
    /// Builds the probe.
    pub fn new(
        cfg: &ProbeConfig,
        spec: &OtlpProbeSpec,
        env: &ProbeEnv,
    ) -> Result<Self, BuildError> {
        let mut url = Url::parse(&spec.endpoint).map_err(|e| invalid(format!("endpoint: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| invalid("endpoint has no host"))?
            .to_owned();
        let default_port = match spec.protocol {
            OtlpProtocol::Grpc => 4317,
            OtlpProtocol::HttpProtobuf => 4318,
        };
        let port = url.port().unwrap_or(default_port);
        if spec.protocol == OtlpProtocol::HttpProtobuf && matches!(url.path(), "" | "/") {
            let signal = match spec.signal {
                OtlpSignal::Metrics => "metrics",
                OtlpSignal::Traces => "traces",
            };
            url.set_path(&format!("/v1/{signal}"));
        }
        if url.port().is_none() {
            let _ = url.set_port(Some(port));
        }
        let alpn: &[&str] = match spec.protocol {
            OtlpProtocol::Grpc => &["h2"],
            OtlpProtocol::HttpProtobuf => &["h2", "http/1.1"],
        };
        let tls = TlsClient::from_spec(&spec.tls, alpn)?;
        Ok(OtlpProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: host,
                    port,
                },
            ),
            url,
            protocol: spec.protocol,
            signal: spec.signal,
            client: HttpClient::new(
                spec.credentials(),
                tls.clone(),
                env.dns.clone(),
                "application/x-protobuf",
                1 << 20,
            )?,
            tls,
            dns: env.dns.clone(),
        })
    }

    async fn over_http(
        &self,
        run: &mut Run<'_>,
        authorization: Option<&HeaderValue>,
        now: SystemTime,
    ) -> Result<Accepted, ProbeError> {
        let body = Bytes::from(match self.signal {
            OtlpSignal::Metrics => metrics_request(&self.meta.name, now).encode_to_vec(),
            OtlpSignal::Traces => traces_request(&self.meta.name, now).encode_to_vec(),
        });
        let content_type = [(
            HeaderName::from_static("content-type"),
            Secret::new("application/x-protobuf"),
        )];
        let answer = self
            .client
            .exchange(
                run,
                &Method::POST,
                &self.url,
                Some(&body),
                &content_type,
                authorization,
            )
            .await?;
        run.http = Some(HttpFacts {
            status_code: answer.status.as_u16(),
            version: answer.version.clone(),
            body_bytes: answer.body.len(),
            redirects: 0,
        });
        if !answer.status.is_success() {
            return Err(classify_status(&answer));
        }
        let bad = |e: prost::DecodeError| {
            ProbeError::new(
                ErrorType::UnexpectedResponse,
                Phase::Request,
                format!(
                    "HTTP {}, but the answer is not an OTLP export response: {e}",
                    answer.status.as_u16()
                ),
            )
        };
        Ok(match self.signal {
            OtlpSignal::Metrics => {
                let r = ExportMetricsServiceResponse::decode(answer.body.as_ref()).map_err(bad)?;
                let p = r.partial_success.unwrap_or_default();
                Accepted {
                    rejected: p.rejected_data_points,
                    message: p.error_message,
                }
            }
            OtlpSignal::Traces => {
                let r = ExportTraceServiceResponse::decode(answer.body.as_ref()).map_err(bad)?;
                let p = r.partial_success.unwrap_or_default();
                Accepted {
                    rejected: p.rejected_spans,
                    message: p.error_message,
                }
            }
        })
    }

    async fn over_grpc(
        &self,
        run: &mut Run<'_>,
        authorization: Option<&HeaderValue>,
        now: SystemTime,
    ) -> Result<Accepted, ProbeError> {
        let host = self.url.host_str().unwrap_or_default().to_owned();
        let port = self.meta.target.port;
        let tcp = dial(run, &self.dns, &host, port).await?;
        let (io, auth): (Box<dyn Io>, ClientAuth) = if self.url.scheme() == "https" {
            let mut session = run
                .phase(Phase::Tls, self.tls.handshake(tcp, &host, now))
                .await?;
            run.tls = Some(session.facts.clone());
            run.findings.append(&mut session.findings);
            (Box::new(session.stream), session.client_auth)
        } else {
            (Box::new(tcp), ClientAuth::default())
        };
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (name, value) in self.client.headers() {
            insert_metadata(&mut metadata, name.as_str(), value.expose())?;
        }
        if let Some(a) = authorization {
            insert_metadata(
                &mut metadata,
                "authorization",
                a.to_str().unwrap_or_default(),
            )?;
        }
        let (io, slot) = Tap::new(io);
        let authority = format!("http://{host}:{port}");
        let exported = run
            .phase(
                Phase::Request,
                grpc_export(io, &authority, self.signal, &self.meta.name, now, metadata),
            )
            .await?;
        exported.map_err(|failure| grpc_error(failure, &slot, auth))
    }
}

fn insert_metadata(
    map: &mut tonic::metadata::MetadataMap,
    name: &str,
    value: &str,
) -> Result<(), ProbeError> {
    let bad = || {
        ProbeError::new(
            ErrorType::CredentialInvalid,
            Phase::Request,
            format!("header {name} cannot be sent as gRPC metadata"),
        )
    };
    let key = tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| bad())?;
    let value = value.parse().map_err(|_| bad())?;
    map.insert(key, value);
    Ok(())
}

/// How a gRPC export failed.
enum GrpcFailure {
    /// The channel could not be set up over the connection.
    Transport(tonic::transport::Error),
    /// The call returned a status.
    Status(tonic::Status),
}

async fn grpc_export<IO: Io + 'static>(
    io: IO,
    authority: &str,
    signal: OtlpSignal,
    probe: &str,
    now: SystemTime,
    metadata: tonic::metadata::MetadataMap,
) -> Result<Result<Accepted, GrpcFailure>, ProbeError> {
    // The connection is already open (and through TLS): the channel's connector
    // hands it over once.
    let cell = Arc::new(Mutex::new(Some(io)));
    let connector = tower::service_fn(move |_: http::Uri| {
        let io = cell.lock().ok().and_then(|mut c| c.take());
        async move {
            io.map(TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the probe's connection was already used"))
        }
    });
    let endpoint = tonic::transport::Endpoint::from_shared(authority.to_owned()).map_err(|e| {
        ProbeError::new(
            ErrorType::UnexpectedResponse,
            Phase::Request,
            format!("endpoint: {e}"),
        )
    })?;
    let channel = match endpoint.connect_with_connector(connector).await {
        Ok(c) => c,
        Err(e) => return Ok(Err(GrpcFailure::Transport(e))),
    };
    let accepted = match signal {
        OtlpSignal::Metrics => {
            let mut req = tonic::Request::new(metrics_request(probe, now));
            *req.metadata_mut() = metadata;
            MetricsServiceClient::new(channel)
                .export(req)
                .await
                .map(|r| {
                    let p = r.into_inner().partial_success.unwrap_or_default();
                    Accepted {
                        rejected: p.rejected_data_points,
                        message: p.error_message,
                    }
                })
        }
        OtlpSignal::Traces => {
            let mut req = tonic::Request::new(traces_request(probe, now));
            *req.metadata_mut() = metadata;
            TraceServiceClient::new(channel).export(req).await.map(|r| {
                let p = r.into_inner().partial_success.unwrap_or_default();
                Accepted {
                    rejected: p.rejected_spans,
                    message: p.error_message,
                }
            })
        }
    };
    Ok(accepted.map_err(GrpcFailure::Status))
}

/// The class of a failed gRPC export: the connection's own error when it had one
/// (TLS, reset), else the gRPC status.
fn grpc_error(
    failure: GrpcFailure,
    slot: &crate::transport::tap::TapSlot,
    auth: ClientAuth,
) -> ProbeError {
    let tapped = slot.lock().ok().and_then(|s| s.clone());
    match tapped {
        Some(Tapped { tls: Some(tls), .. }) => {
            let (class, message) = classify(&tls, auth);
            return ProbeError::new(class, Phase::Tls, message);
        }
        Some(t) => return classify_stream(Phase::Request, &std::io::Error::new(t.kind, t.text)),
        None => {}
    }
    let status = match failure {
        GrpcFailure::Transport(e) => {
            return ProbeError::new(
                ErrorType::ConnectionReset,
                Phase::Request,
                format!("the gRPC connection could not be set up: {e}"),
            );
        }
        GrpcFailure::Status(s) => s,
    };
    use tonic::Code;
    let code = status.code();
    let text = format!(
        "gRPC {} ({}): {}",
        code_name(code),
        code as i32,
        status.message()
    );
    let class = match code {
        Code::Unauthenticated
            if is_jwt_rejection(&http::HeaderMap::new(), status.message().as_bytes()) =>
        {
            ErrorType::JwtRejected
        }
        Code::Unauthenticated | Code::PermissionDenied => ErrorType::AuthRejected,
        _ => ErrorType::HttpStatus,
    };
    ProbeError::new(class, Phase::Request, text)
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Exec for OtlpProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let authorization = self.client.authorization(run)?;
        let now = run.now();
        let accepted = match self.protocol {
            OtlpProtocol::HttpProtobuf => self.over_http(run, authorization.as_ref(), now).await?,
            OtlpProtocol::Grpc => self.over_grpc(run, authorization.as_ref(), now).await?,
        };
        let what = match self.signal {
            OtlpSignal::Metrics => "data point",
            OtlpSignal::Traces => "span",
        };
        if accepted.rejected > 0 {
            run.findings.push(
                Finding::new(
                    FindingType::PartialSuccess,
                    Severity::Warning,
                    format!(
                        "the receiver accepted the export but rejected {} {what}(s): {}",
                        accepted.rejected,
                        if accepted.message.is_empty() {
                            "no reason given"
                        } else {
                            accepted.message.as_str()
                        }
                    ),
                )
                .with("rejected", accepted.rejected)
                .with("receiver_message", accepted.message.clone()),
            );
        }
        let protocol = match self.protocol {
            OtlpProtocol::Grpc => "gRPC",
            OtlpProtocol::HttpProtobuf => "HTTP/protobuf",
        };
        Ok(format!(
            "the receiver accepted one synthetic {what} over OTLP/{protocol}"
        ))
    }
}
