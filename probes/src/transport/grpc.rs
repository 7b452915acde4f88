//! gRPC on a connection the probe already opened (and took through TLS), and the
//! naming of a failed call: the connection's own error when it had one (TLS, reset),
//! else the gRPC status.
//!
//! Every gRPC kind (`grpc`, `otlp`) hands the
//! stream from [`crate::transport::open`] to [`channel_over`], and classifies a failure with [`grpc_error`], so the
//! certificate chain is captured on the one connection the call uses.

use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tonic::transport::Channel;

use http::HeaderValue;

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify::{ClientAuth, classify};
use crate::transport::http_client::{HttpClient, is_jwt_rejection};
use crate::transport::tap::{TapSlot, Tapped};
use crate::transport::{Io, classify_stream};

/// How a gRPC call failed.
pub enum GrpcFailure {
    /// The channel could not be set up over the connection.
    Transport(tonic::transport::Error),
    /// The call returned a status.
    Status(tonic::Status),
}

/// The metadata of a call: the run's trace context (`traceparent`, `tracestate`),
/// the client's configured headers and `authorization`.
pub fn metadata(
    client: &HttpClient,
    authorization: Option<&HeaderValue>,
    trace: &[(&'static str, String)],
) -> Result<tonic::metadata::MetadataMap, ProbeError> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in trace {
        insert_metadata(&mut metadata, name, value)?;
    }
    for (name, value) in client.headers() {
        insert_metadata(&mut metadata, name.as_str(), value.expose())?;
    }
    if let Some(a) = authorization {
        insert_metadata(
            &mut metadata,
            "authorization",
            a.to_str().unwrap_or_default(),
        )?;
    }
    Ok(metadata)
}

/// Adds `name: value` to `map`; a header that is not valid metadata is
/// `credential_invalid` (its value is never shown).
pub fn insert_metadata(
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

/// An HTTP/2 channel over `io`, which is already open: the channel's connector hands
/// it over once (a reconnect fails rather than dialing around the probe).
/// `authority` is `http://host:port`.
pub async fn channel_over<IO: Io + 'static>(
    io: IO,
    authority: &str,
) -> Result<Result<Channel, GrpcFailure>, ProbeError> {
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
    Ok(endpoint
        .connect_with_connector(connector)
        .await
        .map_err(GrpcFailure::Transport))
}

/// The class of a failed call: the connection's own error when it had one (TLS,
/// reset), else the gRPC status (`UNAUTHENTICATED` naming a token is
/// `jwt_rejected`; `UNAUTHENTICATED` / `PERMISSION_DENIED` are `auth_rejected`;
/// `OUT_OF_RANGE` (a message over the decoder's limit) is `unexpected_response`;
/// the other codes are `http_status`, with the code in the message).
/// `UNAUTHENTICATED` is `jwt_rejected` only when the call carried a bearer token
/// (`bearer_sent`, see [`carries_bearer`]) and the server's words name a token;
/// without one, the server asked for credentials the probe did not send:
/// `auth_rejected`.
pub fn grpc_error(
    failure: GrpcFailure,
    slot: &TapSlot,
    auth: ClientAuth,
    bearer_sent: bool,
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
    let violation = match &failure {
        GrpcFailure::Transport(e) => crate::transport::classify::h2_violation(e),
        GrpcFailure::Status(s) => crate::transport::classify::h2_violation(s),
    };
    if let Some(violation) = violation {
        return violation;
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
    let class = match code {
        Code::Unauthenticated
            if bearer_sent
                && is_jwt_rejection(&http::HeaderMap::new(), status.message().as_bytes()) =>
        {
            ErrorType::JwtRejected
        }
        Code::Unauthenticated | Code::PermissionDenied => ErrorType::AuthRejected,
        // No call a probe makes has an OUT_OF_RANGE answer; it is what tonic's
        // decoder says of a message over the probe's limit (a length prefix of
        // 4 GiB is refused there, before anything is buffered).
        Code::OutOfRange => {
            return ProbeError::new(
                ErrorType::UnexpectedResponse,
                Phase::Request,
                format!(
                    "the answer is not one the call can have: {}",
                    status_text(&status)
                ),
            );
        }
        _ => ErrorType::HttpStatus,
    };
    ProbeError::new(class, Phase::Request, status_text(&status))
}

/// Whether `metadata` carries `authorization: Bearer ...`.
pub fn carries_bearer(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
}

/// "gRPC UNAVAILABLE (14): the message".
pub fn status_text(status: &tonic::Status) -> String {
    let code = status.code();
    format!(
        "gRPC {} ({}): {}",
        code_name(code),
        code as i32,
        status.message()
    )
}

/// The name gRPC gives `code` (`UNAVAILABLE`).
pub fn code_name(code: tonic::Code) -> &'static str {
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
