//! `kind: grpc`: the standard health check of a gRPC server.
//!
//! One run dials the server through the shared transport (TLS judged like every
//! other kind, the chain captured on the call's own connection), opens an HTTP/2
//! channel over it and asks `grpc.health.v1.Health/Check` about the configured
//! service (empty: the server as a whole). `SERVING` is up. `NOT_SERVING`,
//! `SERVICE_UNKNOWN` and `UNKNOWN` are `unexpected_response` (the call worked, the
//! answer is not the one wanted); a gRPC error is named by its code:
//! `UNAUTHENTICATED` / `PERMISSION_DENIED` are `auth_rejected`, the others
//! (`NOT_FOUND` for a service the server does not know, `UNIMPLEMENTED` for a
//! server without the health service) are `http_status`.

pub mod spec;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use depprobe_config::ProbeConfig;
use spec::GrpcSpec;

use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::Dns;
use crate::transport::Io;
use crate::transport::grpc::{self, GrpcFailure, channel_over, grpc_error};
use crate::transport::http_client::HttpClient;
use crate::transport::tap::Tap;
use crate::transport::tls::{ClientRules, TlsClient};
use crate::kinds::ProbeKind;
use crate::{BuildError, Exec, ProbeEnv};

/// The largest health answer read: a real one is a few bytes.
const MAX_ANSWER: usize = 16 * 1024;

/// A `grpc` probe.
pub struct GrpcProbe {
    meta: ProbeMeta,
    host: String,
    service: String,
    tls: Option<TlsClient>,
    client: HttpClient,
    dns: Dns,
}

impl GrpcProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &GrpcSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let (host, port, use_tls) = spec
            .endpoint()
            .ok_or_else(|| BuildError::Invalid(format!("`{}` is not a gRPC URL", spec.url)))?;
        let tls = TlsClient::from_spec(&spec.tls, &["h2"])?.with_rules(ClientRules::Curl);
        Ok(GrpcProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: host.clone(),
                    port,
                },
            ),
            host,
            service: spec.service.clone(),
            tls: use_tls.then(|| tls.clone()),
            client: HttpClient::new(
                spec.credentials(),
                tls,
                env.dns.clone(),
                "application/grpc",
                MAX_ANSWER,
            )?,
            dns: env.dns.clone(),
        })
    }

    /// What the health check asks about, for messages.
    fn subject(&self) -> String {
        if self.service.is_empty() {
            "the server".into()
        } else {
            format!("service {}", self.service)
        }
    }
}

async fn health_check<IO: Io + 'static>(
    io: IO,
    authority: &str,
    service: &str,
    metadata: tonic::metadata::MetadataMap,
) -> Result<Result<HealthCheckResponse, GrpcFailure>, ProbeError> {
    let channel = match channel_over(io, authority).await? {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    *req.metadata_mut() = metadata;
    Ok(HealthClient::new(channel)
        .max_decoding_message_size(MAX_ANSWER)
        .check(req)
        .await
        .map(tonic::Response::into_inner)
        .map_err(GrpcFailure::Status))
}

/// `SERVING`, `NOT_SERVING`: the health protocol's name of `status`.
fn status_name(status: Option<ServingStatus>) -> &'static str {
    match status {
        Some(s) => s.as_str_name(),
        None => "an unknown status",
    }
}

impl Exec for GrpcProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let authorization = self.client.authorization(run)?;
        let port = self.meta.target.port;
        let (io, auth) =
            crate::transport::open(run, &self.dns, &self.host, port, self.tls.as_ref()).await?;
        let metadata = grpc::metadata(&self.client, authorization.as_ref(), &run.trace_headers())?;
        let bearer_sent = grpc::carries_bearer(&metadata);
        let (io, slot) = Tap::new(io);
        // `host` keeps the brackets of an IPv6 literal.
        let authority = format!("http://{}:{port}", self.host);
        let answer = run
            .phase(
                Phase::Request,
                health_check(io, &authority, &self.service, metadata),
            )
            .await?;
        let answer = match answer {
            Ok(a) => a,
            Err(failure) => {
                if let GrpcFailure::Status(s) = &failure {
                    run.details
                        .insert("grpc.status_code".into(), (s.code() as i32).into());
                    run.attribute(
                        "rpc.status_code",
                        crate::semconv::grpc_status_name(s.code()),
                    );
                }
                let mut e = grpc_error(failure, &slot, auth, bearer_sent);
                if e.class == ErrorType::HttpStatus {
                    e.message = format!(
                        "the health check of {} failed: {}",
                        self.subject(),
                        e.message
                    );
                }
                return Err(e);
            }
        };
        let status = ServingStatus::try_from(answer.status).ok();
        let name = status_name(status);
        run.details.insert("grpc.status_code".into(), 0.into());
        run.attribute("rpc.status_code", "OK");
        run.details.insert("grpc.health.status".into(), name.into());
        if status == Some(ServingStatus::Serving) {
            return Ok(format!("gRPC health check: {} is SERVING", self.subject()));
        }
        Err(ProbeError::new(
            ErrorType::UnexpectedResponse,
            Phase::Request,
            format!(
                "gRPC health check: {} is {name} (expected SERVING)",
                self.subject()
            ),
        ))
    }
}

impl ProbeKind for GrpcProbe {
    const NAME: &'static str = "grpc";
    const ABOUT: &'static str = "a gRPC server's standard health check (grpc.health.v1.Health/Check)";
    type Spec = GrpcSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[
        ("rpc.system.name", "grpc"),
        ("rpc.method", "grpc.health.v1.Health/Check"),
    ];

    fn build(cfg: &ProbeConfig, spec: &GrpcSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}
