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

use std::time::SystemTime;

use bytes::Bytes;
use http::Method;
use http::header::{HeaderName, HeaderValue};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use url::Url;

use spec::{OtlpProbeSpec, OtlpSignal};
use depprobe_config::{OtlpProtocol, ProbeConfig, Secret};

use crate::outcome::{Finding, FindingType, HttpFacts, Severity, Target};
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::http_client::{HttpClient, classify_status};
use crate::transport::tap::Tap;
use crate::transport::tls::{ClientRules, TlsClient};
use crate::transport::Dns;
use crate::{BuildError, Exec, ProbeEnv};

use super::ProbeKind;

mod grpc;
mod payload;
pub mod spec;

/// The receiver accepted only part of what was sent.
pub const PARTIAL_SUCCESS: FindingType = FindingType::new("partial_success");

use crate::transport::grpc::{self as grpc_transport, GrpcFailure, grpc_error};
use grpc::grpc_export;

pub use payload::{
    HEARTBEAT_METRIC, SPAN_NAME, SYNTHETIC_ATTRIBUTE, SYNTHETIC_SERVICE, metrics_request,
    traces_request,
};

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

/// What the receiver said to an accepted export.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Data points or spans the receiver rejected (its `partial_success`).
    pub rejected: i64,
    /// The receiver's reason for rejecting them (empty when it gave none).
    pub message: String,
}

/// Reads the body of an OTLP/HTTP export response (protobuf) to a `signal` export:
/// what the receiver rejected, or why the body is not such a response. The body is
/// the receiver's, so hostile: the fuzz target `otlp_response` feeds it anything.
pub fn read_export_response(
    signal: OtlpSignal,
    body: &[u8],
) -> Result<Accepted, prost::DecodeError> {
    Ok(match signal {
        OtlpSignal::Metrics => {
            let p = ExportMetricsServiceResponse::decode(body)?
                .partial_success
                .unwrap_or_default();
            Accepted {
                rejected: p.rejected_data_points,
                message: p.error_message,
            }
        }
        OtlpSignal::Traces => {
            let p = ExportTraceServiceResponse::decode(body)?
                .partial_success
                .unwrap_or_default();
            Accepted {
                rejected: p.rejected_spans,
                message: p.error_message,
            }
        }
    })
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
        let tls = TlsClient::from_spec(&spec.tls, alpn)?.with_rules(ClientRules::Curl);
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
        run.attribute("http.request.method", "POST");
        run.attribute("url.full", crate::semconv::url_full(&self.url));
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
        read_export_response(self.signal, answer.body.as_ref()).map_err(bad)
    }

    async fn over_grpc(
        &self,
        run: &mut Run<'_>,
        authorization: Option<&HeaderValue>,
        now: SystemTime,
    ) -> Result<Accepted, ProbeError> {
        let host = self.url.host_str().unwrap_or_default().to_owned();
        let port = self.meta.target.port;
        let tls = (self.url.scheme() == "https").then_some(&self.tls);
        let (io, auth) = crate::transport::open(run, &self.dns, &host, port, tls).await?;
        let metadata =
            grpc_transport::metadata(&self.client, authorization, &run.trace_headers())?;
        let bearer_sent = grpc_transport::carries_bearer(&metadata);
        let (io, slot) = Tap::new(io);
        let authority = format!("http://{host}:{port}");
        run.attribute("rpc.system.name", "grpc");
        run.attribute(
            "rpc.method",
            match self.signal {
                OtlpSignal::Metrics => {
                    "opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
                }
                OtlpSignal::Traces => "opentelemetry.proto.collector.trace.v1.TraceService/Export",
            },
        );
        let exported = run
            .phase(
                Phase::Request,
                grpc_export(io, &authority, self.signal, &self.meta.name, now, metadata),
            )
            .await?;
        match &exported {
            Ok(_) => run.attribute("rpc.status_code", "OK"),
            Err(GrpcFailure::Status(s)) => run.attribute(
                "rpc.status_code",
                crate::semconv::grpc_status_name(s.code()),
            ),
            Err(_) => {}
        }
        exported.map_err(|failure| grpc_error(failure, &slot, auth, bearer_sent))
    }
}

impl ProbeKind for OtlpProbe {
    const NAME: &'static str = "otlp";
    const ABOUT: &'static str = "one small OTLP export to a collector, over gRPC or HTTP/protobuf";
    type Spec = OtlpProbeSpec;
    const FINDINGS: &'static [FindingType] = &[PARTIAL_SUCCESS];

    fn build(cfg: &ProbeConfig, spec: &OtlpProbeSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
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
                    PARTIAL_SUCCESS,
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
