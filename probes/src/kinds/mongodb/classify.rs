//! From a MongoDB driver error to a failure class.
//!
//! The driver's errors are typed: an `ErrorKind::Io` holds the `io::Error` (with the
//! `rustls::Error` inside it for TLS failures), an authentication failure carries the
//! server's command error (code 18) as its source. Those are followed to the class.
//! A server-selection error is the exception: it carries only text, so it is
//! classified from what the watch saw of the members ([`from_topology`]).

use std::error::Error as _;
use std::io;

use mongodb::error::{Error as DriverError, ErrorKind};

use super::watch::{MemberError, MemberState, TopologyView};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// MongoDB's `AuthenticationFailed`.
pub const AUTHENTICATION_FAILED: i32 = 18;
/// MongoDB's `Unauthorized`.
pub const UNAUTHORIZED: i32 = 13;

/// The class of a driver error, or `None` when it has no typed cause (server
/// selection, a cleared pool): those are judged from the topology.
pub fn driver_error(e: &DriverError) -> Option<(ErrorType, String)> {
    let mut found: Option<(ErrorType, String)> = None;
    for err in chain(e) {
        let here = match err.kind.as_ref() {
            ErrorKind::Io(ioe) => Some(io_class(ioe)),
            ErrorKind::Authentication { message, .. } => Some((
                ErrorType::AuthRejected,
                format!("authentication failed: {message}"),
            )),
            ErrorKind::Command(c) if matches!(c.code, AUTHENTICATION_FAILED | UNAUTHORIZED) => {
                Some((
                    ErrorType::AuthRejected,
                    format!(
                        "the server refused the credentials (code {} {}: {})",
                        c.code, c.code_name, c.message
                    ),
                ))
            }
            ErrorKind::Command(c) => Some((
                ErrorType::QueryFailed,
                format!(
                    "the server answered with error {} {}: {}",
                    c.code, c.code_name, c.message
                ),
            )),
            ErrorKind::DnsResolve { message, .. } => Some((
                ErrorType::DnsFailure,
                format!("DNS resolution failed: {message}"),
            )),
            ErrorKind::InvalidResponse { message, .. } => Some((
                ErrorType::UnexpectedResponse,
                format!("the server's reply did not parse: {message}"),
            )),
            ErrorKind::IncompatibleServer { message, .. } => Some((
                ErrorType::UnexpectedResponse,
                format!("the server is not compatible with the driver: {message}"),
            )),
            ErrorKind::ServerSelection { .. } | ErrorKind::ConnectionPoolCleared { .. } => None,
            other => Some((
                ErrorType::UnexpectedResponse,
                format!("driver error: {other}"),
            )),
        };
        // The innermost cause with a class wins: an authentication failure carries the
        // server's code 18 as its cause, and a broken connection during authentication
        // is a network failure, not a refusal.
        if let Some(h) = here {
            found = Some(h);
        }
    }
    found
}

/// The error and its sources, outermost first.
fn chain(e: &DriverError) -> Vec<&DriverError> {
    let mut out = vec![e];
    let mut cur: &DriverError = e;
    while let Some(source) = cur.source() {
        // The driver keeps its cause as a `Box<Error>`, and that box is what
        // `source()` returns.
        let next = source
            .downcast_ref::<Box<DriverError>>()
            .map(|b| &**b)
            .or_else(|| source.downcast_ref::<DriverError>());
        match next {
            Some(n) => {
                out.push(n);
                cur = n;
            }
            None => break,
        }
    }
    out
}

/// The class of an I/O error met by the driver (TLS inside it first). The driver's
/// connections are up when they time out (a member that stops answering), so a
/// timeout is `timeout`, not `connect_timeout`.
fn io_class(e: &io::Error) -> (ErrorType, String) {
    crate::transport::classify::io_class(e, Phase::Request)
}

/// Why a member is unusable, from the driver's error for it.
pub fn member_error(e: &DriverError) -> MemberError {
    let (class, message) = driver_error(e).unwrap_or_else(|| {
        (
            ErrorType::UnexpectedResponse,
            format!("driver error: {}", e.kind),
        )
    });
    MemberError { class, message }
}

/// The failure of a run that could not get a member (server selection failed, or
/// the deadline passed while waiting for one), judged from the topology.
/// `wanted_primary`: the command needed the primary (not just any member).
pub fn from_topology(
    view: &TopologyView,
    phase: Phase,
    wanted_primary: bool,
    waited: &str,
) -> ProbeError {
    let members = &view.members;
    let reachable: Vec<_> = members
        .values()
        .filter(|m| m.state != MemberState::Unknown)
        .collect();
    // Only a replica set has a primary to miss (mongos and standalone servers take
    // writes themselves).
    if wanted_primary && view.set_name.is_some() && view.primary.is_none() && !reachable.is_empty()
    {
        let set = view.set_name.as_deref().unwrap_or("?");
        let states: Vec<String> = members
            .values()
            .map(|m| format!("{} {}", m.address, state_text(m.state, m.error.as_ref())))
            .collect();
        return ProbeError::new(
            ErrorType::NoPrimary,
            phase,
            format!(
                "replica set {set} has no writable primary (waited {waited}): {}",
                states.join(", ")
            ),
        );
    }
    let failing: Vec<(&str, &MemberError)> = members
        .values()
        .filter_map(|m| m.error.as_ref().map(|e| (m.address.as_str(), e)))
        .collect();
    if reachable.is_empty()
        && let Some((address, first)) = failing.iter().min_by_key(|(_, e)| e.class)
    {
        let all: Vec<String> = failing
            .iter()
            .map(|(a, e)| format!("{a}: {} ({})", e.message, e.class))
            .collect();
        let mut err = ProbeError::new(
            first.class,
            phase,
            format!(
                "no member of the deployment is usable (waited {waited}); {address}: {}{}",
                first.message,
                if all.len() > 1 {
                    format!("; all: {}", all.join("; "))
                } else {
                    String::new()
                }
            ),
        );
        if first.class.is_tls() {
            err.phase = Phase::Tls;
        }
        return err;
    }
    if reachable.is_empty() {
        return ProbeError::new(
            ErrorType::Timeout,
            phase,
            format!("no member of the deployment answered within {waited}"),
        );
    }
    ProbeError::new(
        ErrorType::Timeout,
        phase,
        format!("the driver found no suitable member within {waited}"),
    )
}

/// "secondary", "unknown (connect_refused)".
pub fn state_text(state: MemberState, error: Option<&MemberError>) -> String {
    match error {
        Some(e) => format!("{} ({})", state.as_str(), e.class),
        None => state.as_str().to_owned(),
    }
}
