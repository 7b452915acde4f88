//! OTLP over gRPC on a connection the probe already opened (and took through TLS),
//! and the naming of a refused export from its gRPC status.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tokio::io::{AsyncRead, AsyncWrite};

use super::spec::OtlpSignal;

use super::Accepted;
use super::payload::{metrics_request, traces_request};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify::{ClientAuth, classify};
use crate::transport::classify_stream;
use crate::transport::http_client::is_jwt_rejection;
use crate::transport::tap::{TapSlot, Tapped};

pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(super) fn insert_metadata(
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
pub(super) enum GrpcFailure {
    /// The channel could not be set up over the connection.
    Transport(tonic::transport::Error),
    /// The call returned a status.
    Status(tonic::Status),
}

pub(super) async fn grpc_export<IO: Io + 'static>(
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
pub(super) fn grpc_error(failure: GrpcFailure, slot: &TapSlot, auth: ClientAuth) -> ProbeError {
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
