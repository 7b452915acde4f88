//! The shared transport every network probe uses: DNS, TCP connect and TLS.
//!
//! Each step returns a typed [`ProbeError`] with its class already decided, so a
//! probe module only has to say what it does after the connection is up.

pub mod chain;
pub mod classify;
pub mod http_client;
pub mod tap;
pub mod tls;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use tokio::net::TcpStream;

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// The DNS resolver: the system's configuration (`/etc/resolv.conf`, `/etc/hosts`),
/// with a cache shared by every probe of the process.
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioResolver>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// A resolver from the system configuration; when that cannot be read, one that
    /// only knows `/etc/hosts` (every other name is then `dns_failure`).
    pub fn system() -> Result<Dns, NetError> {
        let builder = match TokioResolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    "cannot read the system DNS configuration ({e}); only /etc/hosts will resolve"
                );
                TokioResolver::builder_with_config(
                    hickory_resolver::config::ResolverConfig::from_name_servers(Vec::new()),
                    hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
                )
            }
        };
        Ok(Dns {
            resolver: Arc::new(builder.build()?),
        })
    }

    /// The addresses of `host` (an IP literal is returned as is, without a lookup).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ProbeError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self.resolver.lookup_ip(host).await {
            Ok(found) => {
                let mut addrs: Vec<SocketAddr> =
                    found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                // IPv4 first: `localhost` resolves to ::1 too, and a failure is
                // reported from the first address tried.
                addrs.sort_by_key(|a| a.is_ipv6());
                if addrs.is_empty() {
                    Err(ProbeError::new(
                        ErrorType::DnsNotFound,
                        Phase::Dns,
                        format!("{host} has no address records"),
                    ))
                } else {
                    Ok(addrs)
                }
            }
            Err(e) => Err(classify_dns(host, &e)),
        }
    }
}

fn classify_dns(host: &str, e: &NetError) -> ProbeError {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => {
            let what = if nr.response_code == hickory_resolver::proto::op::ResponseCode::NXDomain {
                "does not exist (NXDOMAIN)"
            } else {
                "has no address records"
            };
            ProbeError::new(ErrorType::DnsNotFound, Phase::Dns, format!("{host} {what}"))
        }
        other => ProbeError::new(
            ErrorType::DnsFailure,
            Phase::Dns,
            format!("looking up {host} failed: {other}"),
        ),
    }
}

/// Connects to the first address that accepts; the error is the first address's.
pub async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, ProbeError> {
    let mut first_err: Option<(SocketAddr, io::Error)> = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some((*addr, e));
                }
            }
        }
    }
    Err(match first_err {
        Some((addr, e)) => classify_connect(addr, &e),
        None => ProbeError::new(
            ErrorType::DnsNotFound,
            Phase::Dns,
            "no address to connect to",
        ),
    })
}

/// The class of a failed TCP connect.
pub fn classify_connect(addr: SocketAddr, e: &io::Error) -> ProbeError {
    use io::ErrorKind::*;
    let class = match e.kind() {
        ConnectionRefused => ErrorType::ConnectRefused,
        TimedOut => ErrorType::ConnectTimeout,
        ConnectionReset | ConnectionAborted => ErrorType::ConnectionReset,
        _ => ErrorType::NetworkUnreachable,
    };
    let what = match class {
        ErrorType::ConnectRefused => "connection refused".to_owned(),
        ErrorType::ConnectTimeout => "connection timed out".to_owned(),
        _ => e.to_string(),
    };
    ProbeError::new(
        class,
        Phase::Connect,
        format!("connecting to {addr}: {what}"),
    )
}

/// The class of an I/O error after the connection was up (not in the TLS handshake).
pub fn classify_stream(phase: Phase, e: &io::Error) -> ProbeError {
    if let Some(tls) = classify::tls_error_in(e) {
        return tls;
    }
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => ProbeError::new(
            ErrorType::ConnectionReset,
            phase,
            format!("the peer closed the connection ({e})"),
        ),
        TimedOut => ProbeError::new(ErrorType::Timeout, phase, format!("timed out ({e})")),
        _ => ProbeError::new(
            ErrorType::ConnectionReset,
            phase,
            format!("connection error: {e}"),
        ),
    }
}

/// Resolves `host` (phase `dns`, skipped for an IP literal) and connects to it
/// (phase `connect`).
pub async fn dial(
    run: &mut crate::run::Run<'_>,
    dns: &Dns,
    host: &str,
    port: u16,
) -> Result<TcpStream, ProbeError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => run.phase(Phase::Dns, dns.resolve(host, port)).await?,
    };
    run.phase(Phase::Connect, connect(&addrs)).await
}
