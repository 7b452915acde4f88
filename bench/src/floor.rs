//! The floor: a bare loop of TCP connect + rustls handshake, no agent around it.
//! Same crypto provider as depprobe (aws-lc-rs), certificate verification against
//! the same CA, session resumption off, paced at the same rate as the agent so that
//! caches are as cold as they are for it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::BenchError;
use crate::procfs::thread_cpu;

/// What the loop measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FloorResult {
    /// Completed handshakes.
    pub handshakes: u64,
    /// Failed ones.
    pub failures: u64,
    /// CPU time of the loop's thread.
    pub cpu_seconds: f64,
    /// Negotiated key-exchange group (of the last handshake).
    pub kx_group: String,
    /// Negotiated protocol version.
    pub version: String,
}

impl FloorResult {
    /// CPU per handshake, in milliseconds.
    pub fn cpu_ms_per_handshake(&self) -> f64 {
        if self.handshakes == 0 {
            return 0.0;
        }
        self.cpu_seconds * 1000.0 / self.handshakes as f64
    }
}

/// The client configuration: aws-lc-rs, the CA as the only root, resumption off.
pub fn client_config(ca: &CertificateDer<'static>) -> Result<Arc<ClientConfig>, BenchError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| BenchError::Tls(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

fn handshake(
    cfg: &Arc<ClientConfig>,
    addr: SocketAddr,
    name: &ServerName<'static>,
) -> Result<(String, String), BenchError> {
    let mut sock = TcpStream::connect(addr).map_err(BenchError::Io)?;
    let _ = sock.set_nodelay(true);
    let mut conn = ClientConnection::new(cfg.clone(), name.clone())
        .map_err(|e| BenchError::Tls(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(BenchError::Io)?;
    }
    let group = conn
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
        .unwrap_or_default();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    let _ = sock.flush();
    Ok((group, version))
}

/// Runs handshakes against `addrs` (round robin) at `rate` per second for `duration`
/// on a thread of its own, measuring that thread's CPU time.
pub fn run(
    cfg: Arc<ClientConfig>,
    addrs: Vec<SocketAddr>,
    server_name: &str,
    rate: f64,
    duration: Duration,
) -> Result<FloorResult, BenchError> {
    if addrs.is_empty() {
        return Err(BenchError::Server("no address to handshake with".into()));
    }
    let name =
        ServerName::try_from(server_name.to_owned()).map_err(|e| BenchError::Tls(e.to_string()))?;
    let worker = std::thread::spawn(move || {
        let mut r = FloorResult::default();
        let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let start = Instant::now();
        let cpu0 = thread_cpu();
        let mut i: u64 = 0;
        while start.elapsed() < duration {
            // Pacing: the i-th handshake is due at start + i * every.
            let due = start + every.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let addr = addrs[usize::try_from(i).unwrap_or(0) % addrs.len()];
            match handshake(&cfg, addr, &name) {
                Ok((g, v)) => {
                    r.handshakes += 1;
                    r.kx_group = g;
                    r.version = v;
                }
                Err(_) => r.failures += 1,
            }
            i += 1;
        }
        r.cpu_seconds = (thread_cpu() - cpu0).as_secs_f64();
        r
    });
    worker
        .join()
        .map_err(|_| BenchError::Tls("the handshake loop panicked".into()))
}
