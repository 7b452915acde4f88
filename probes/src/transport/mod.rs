//! The shared transport every network probe uses: DNS, TCP connect and TLS.
//!
//! Each step returns a typed [`ProbeError`] with its class already decided, so a
//! probe module only has to say what it does after the connection is up.

pub mod chain;
pub mod classify;
mod dial;
pub mod grpc;
pub mod http_client;
pub mod lines;
pub mod tap;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};

pub use dial::{connect, dial, literal};

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
        if let Some(addrs) = literal(host, port) {
            return Ok(addrs);
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

/// The class of a failed TCP connect to `addr`.
pub fn classify_connect(addr: SocketAddr, e: &io::Error) -> ProbeError {
    let (class, what) = classify::io_class(e, Phase::Connect);
    ProbeError::new(
        class,
        Phase::Connect,
        format!("connecting to {addr}: {what}"),
    )
}

/// The class of an I/O error after the connection was up (not in the TLS handshake).
pub fn classify_stream(phase: Phase, e: &io::Error) -> ProbeError {
    let (class, message) = classify::io_class(e, phase);
    let phase = if class.is_tls() { Phase::Tls } else { phase };
    ProbeError::new(class, phase, message)
}

/// A byte stream a protocol runs over: TCP, or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// How long a probe spends saying goodbye to a server once its run is decided.
pub const GOODBYE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Ends a session politely: sends `last_words` (the protocol's quit command, if
/// any), then closes the stream (TLS `close_notify`, then TCP FIN), within
/// [`GOODBYE_WAIT`]. A server that is left without a goodbye logs every run as an
/// aborted connection (MariaDB: "Aborted connection ... Got an error reading
/// communication packets", counted in `Aborted_clients`). Failures are ignored: the
/// run's verdict is already made.
pub async fn goodbye<IO: tokio::io::AsyncWrite + Unpin>(io: &mut IO, last_words: &[u8]) {
    use tokio::io::AsyncWriteExt as _;
    let polite = async {
        if !last_words.is_empty() {
            io.write_all(last_words).await?;
            io.flush().await?;
        }
        io.shutdown().await
    };
    let _ = tokio::time::timeout(GOODBYE_WAIT, polite).await;
}

/// Dials `host:port` and, with `tls`, takes the connection through TLS at once (the
/// facts and findings land in `run`, the chain even when verification fails).
pub async fn open(
    run: &mut crate::run::Run<'_>,
    dns: &Dns,
    host: &str,
    port: u16,
    tls: Option<&tls::TlsClient>,
) -> Result<(Box<dyn Io>, classify::ClientAuth), ProbeError> {
    let tcp = dial(run, dns, host, port).await?;
    match tls {
        Some(tls) => upgrade(run, tcp, host, tls).await,
        None => Ok((Box::new(tcp), classify::ClientAuth::default())),
    }
}

/// Takes an open connection through TLS (at once, or after a protocol's own
/// upgrade such as STARTTLS); the facts and findings land in `run`.
pub async fn upgrade<IO: Io + 'static>(
    run: &mut crate::run::Run<'_>,
    io: IO,
    host: &str,
    tls: &tls::TlsClient,
) -> Result<(Box<dyn Io>, classify::ClientAuth), ProbeError> {
    let now = run.now();
    let mut session = run.phase(Phase::Tls, tls.handshake(io, host, now)).await?;
    session.adopt(run);
    Ok((Box::new(session.stream), session.client_auth))
}
