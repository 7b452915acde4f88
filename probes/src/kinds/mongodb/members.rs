//! The members' certificates, through depprobe's own transport.
//!
//! The driver takes no custom TLS configuration, so before it connects, the probe
//! dials every member itself (DNS, TCP, TLS with the chain captured) to classify and
//! report certificates exactly as every other probe does. Members are dialled at
//! once, each bounded by `connect_timeout`, so that one member that does not answer
//! cannot eat the run's deadline. For `mongodb+srv://`, the seed list is read from
//! the SRV records first.

use std::time::{Duration, SystemTime};

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::spec::MAX_HOSTS;
use crate::outcome::{Finding, TlsFacts};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::tls::TlsClient;
use crate::transport::{self, Dns};

/// How long to wait for a TLS 1.3 member's verdict on a missing client certificate.
const CLIENT_CERT_VERDICT_WAIT: Duration = Duration::from_millis(300);

/// What dialling one member gave.
pub struct MemberDial {
    /// `host:port`.
    pub address: String,
    /// How long each step took.
    pub timings: Vec<(Phase, Duration)>,
    /// The TLS session's facts and `cert_expiring` findings (`None` without TLS), or
    /// why the member could not be reached.
    pub result: Result<Option<(TlsFacts, Vec<Finding>)>, ProbeError>,
}

/// Dials every member of `members` at once, each within `limit`; a topology that
/// claims more members than a replica set can have is dialled only up to
/// [`MAX_HOSTS`] (a hostile or broken server cannot make the probe open thousands
/// of connections).
pub async fn dial_all(
    dns: &Dns,
    tls: Option<&TlsClient>,
    members: &[(String, u16)],
    now: SystemTime,
    limit: Duration,
) -> Vec<MemberDial> {
    let dials = members
        .iter()
        .take(MAX_HOSTS)
        .map(|(host, port)| dial_one(dns, tls, host, *port, now, limit));
    futures::future::join_all(dials).await
}

async fn dial_one(
    dns: &Dns,
    tls: Option<&TlsClient>,
    host: &str,
    port: u16,
    now: SystemTime,
    limit: Duration,
) -> MemberDial {
    let deadline = Instant::now() + limit;
    let mut timings = Vec::new();
    let result = dial_steps(dns, tls, host, port, now, limit, deadline, &mut timings).await;
    MemberDial {
        address: member_address(host, port),
        timings,
        result,
    }
}

#[allow(clippy::too_many_arguments)]
async fn dial_steps(
    dns: &Dns,
    tls: Option<&TlsClient>,
    host: &str,
    port: u16,
    now: SystemTime,
    limit: Duration,
    deadline: Instant,
    timings: &mut Vec<(Phase, Duration)>,
) -> Result<Option<(TlsFacts, Vec<Finding>)>, ProbeError> {
    let addrs = match transport::literal(host, port) {
        Some(addrs) => addrs,
        None => {
            step(
                Phase::Dns,
                limit,
                deadline,
                timings,
                dns.resolve(host, port),
            )
            .await?
        }
    };
    let tcp = step(
        Phase::Connect,
        limit,
        deadline,
        timings,
        transport::connect(&addrs),
    )
    .await?;
    let Some(tls) = tls else {
        return Ok(None);
    };
    let mut session = step(
        Phase::Tls,
        limit,
        deadline,
        timings,
        tls.handshake(tcp, host, now),
    )
    .await?;
    // With TLS 1.3 a server that wants a client certificate says so only after the
    // client's side of the handshake: wait briefly for its verdict.
    if session.client_auth.asked
        && !session.client_auth.sent
        && session.facts.version.as_deref() == Some("1.3")
    {
        let wait = CLIENT_CERT_VERDICT_WAIT.min(deadline.saturating_duration_since(Instant::now()));
        let mut buf = [0u8; 64];
        let refused = match tokio::time::timeout(wait, session.stream.read(&mut buf)).await {
            Ok(Ok(0)) => Some(None),
            Ok(Err(e)) => Some(Some(e)),
            Ok(Ok(_)) | Err(_) => None,
        };
        if let Some(e) = refused {
            let mut err = ProbeError::new(
                ErrorType::TlsClientCertRequired,
                Phase::Tls,
                "the member asked for a client certificate and refused the connection when none was sent",
            );
            if let Some(e) = e {
                let class = transport::classify_stream(Phase::Tls, &e).class;
                if class.is_tls() && class != ErrorType::TlsHandshakeFailure {
                    err.class = class;
                }
            }
            return Err(err.with_tls(session.facts));
        }
    }
    // Close politely: a member logs an abrupt close as a network error.
    let _ = tokio::time::timeout(Duration::from_millis(100), session.stream.shutdown()).await;
    Ok(Some((session.facts, session.findings)))
}

/// Runs one step of a dial, timed, cut at the member's deadline.
async fn step<T>(
    phase: Phase,
    limit: Duration,
    deadline: Instant,
    timings: &mut Vec<(Phase, Duration)>,
    fut: impl Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    let start = Instant::now();
    let r = tokio::time::timeout_at(deadline, fut).await;
    timings.push((phase, start.elapsed()));
    match r {
        Ok(r) => r,
        Err(_) => Err(ProbeError::deadline(phase, limit)),
    }
}

/// `host:port`, with brackets for IPv6, as the driver writes member addresses.
pub fn member_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The seed list of a `mongodb+srv://` name: its `_mongodb._tcp` SRV records.
pub async fn srv_seeds(name: &str) -> Result<Vec<(String, u16)>, ProbeError> {
    // A resolver of its own, built per lookup: SRV probes are few, and a resolver
    // kept across runs would hold tasks of the runtime it was first used on.
    let resolver = TokioResolver::builder_tokio()
        .and_then(|b| b.build())
        .map_err(|e| {
            ProbeError::new(
                ErrorType::DnsFailure,
                Phase::Dns,
                format!("cannot set up the DNS resolver: {e}"),
            )
        })?;
    let query = format!("_mongodb._tcp.{name}");
    let lookup = resolver
        .lookup(query.as_str(), RecordType::SRV)
        .await
        .map_err(|e| match &e {
            NetError::Dns(DnsError::NoRecordsFound(_)) => ProbeError::new(
                ErrorType::DnsNotFound,
                Phase::Dns,
                format!("{query} has no SRV records"),
            ),
            other => ProbeError::new(
                ErrorType::DnsFailure,
                Phase::Dns,
                format!("looking up {query} failed: {other}"),
            ),
        })?;
    let seeds: Vec<(String, u16)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((
                srv.target.to_utf8().trim_end_matches('.').to_owned(),
                srv.port,
            )),
            _ => None,
        })
        .take(MAX_HOSTS)
        .collect();
    if seeds.is_empty() {
        return Err(ProbeError::new(
            ErrorType::DnsNotFound,
            Phase::Dns,
            format!("{query} has no SRV records"),
        ));
    }
    Ok(seeds)
}
