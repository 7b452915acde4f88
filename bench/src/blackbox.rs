//! blackbox_exporter under the same load: Debian's `prometheus-blackbox-exporter`
//! with an `http` module equivalent to depprobe's `http` probe, driven at a fixed
//! rate by a load generator calling `/probe` over kept-alive connections, as
//! Prometheus would.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::nginx::Nginx;
use crate::procfs;
use crate::{BenchError, mib};

/// Where the exporter is looked for.
pub const BINARY: &str = "/usr/bin/prometheus-blackbox-exporter";

/// What the exporter cost.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BlackboxResult {
    /// `/probe` calls answered in the window.
    pub probes: u64,
    /// Of which `probe_success 1`.
    pub successes: u64,
    /// Window, seconds.
    pub window_s: f64,
    /// Exporter CPU in the window, seconds.
    pub cpu_seconds: f64,
    /// Exporter CPU per probe, milliseconds.
    pub cpu_ms_per_probe: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// nginx CPU per probe, milliseconds.
    pub nginx_cpu_ms_per_probe: f64,
    /// Key-exchange groups nginx saw in the window, with counts.
    pub kx_groups: std::collections::BTreeMap<String, u64>,
    /// The load generator's (the bench's) own CPU per probe, milliseconds.
    pub loadgen_cpu_ms_per_probe: f64,
}

struct Exporter {
    child: Child,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the exporter against `nginx` at `rate` probes per second for `window`.
pub async fn measure(
    bin: &Path,
    dir: &Path,
    ca: &Path,
    nginx: &Nginx,
    rate: f64,
    window: Duration,
) -> Result<BlackboxResult, BenchError> {
    if !bin.exists() {
        return Err(BenchError::Missing(format!(
            "{} (Debian package prometheus-blackbox-exporter)",
            bin.display()
        )));
    }
    let port = nginx
        .ports
        .first()
        .copied()
        .ok_or_else(|| BenchError::Server("nginx has no port".into()))?;
    let conf = dir.join("blackbox.yml");
    std::fs::write(
        &conf,
        format!(
            "modules:\n  https:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n      valid_status_codes: [200]\n      tls_config:\n        ca_file: {}\n",
            ca.display()
        ),
    )
    .map_err(BenchError::Io)?;
    let listen = {
        let l = TcpListener::bind("127.0.0.1:0").map_err(BenchError::Io)?;
        l.local_addr().map_err(BenchError::Io)?
    };
    let log = std::fs::File::create(dir.join("blackbox.log")).map_err(BenchError::Io)?;
    let child = Command::new(bin)
        .arg(format!("--config.file={}", conf.display()))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(BenchError::Io)?;
    let exporter = Exporter { child };
    let pid = exporter.child.id();

    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let uri: hyper::Uri =
        format!("http://{listen}/probe?module=https&target=https://localhost:{port}/blackbox")
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| BenchError::Server(e.to_string()))?;

    wait_ready(&client, listen).await?;
    // Warm-up: a second of probes (the Go runtime sizes its heap, TLS code is paged in).
    drive(&client, &uri, rate, Duration::from_secs(1)).await;

    let u0 = procfs::usage(pid)?;
    let n0 = nginx.usage()?;
    let me0 = procfs::usage(std::process::id())?;
    let mark = nginx.curve_mark();
    let t0 = Instant::now();
    let (probes, successes) = drive(&client, &uri, rate, window).await;
    let elapsed = t0.elapsed();
    let u1 = procfs::usage(pid)?;
    let n1 = nginx.usage()?;
    let me1 = procfs::usage(std::process::id())?;
    let per = |a: Duration, b: Duration| {
        if probes == 0 {
            0.0
        } else {
            b.saturating_sub(a).as_secs_f64() * 1000.0 / probes as f64
        }
    };
    Ok(BlackboxResult {
        probes,
        successes,
        window_s: elapsed.as_secs_f64(),
        cpu_seconds: u1.cpu.saturating_sub(u0.cpu).as_secs_f64(),
        cpu_ms_per_probe: per(u0.cpu, u1.cpu),
        rss_mib: mib(u1.rss_kib),
        peak_rss_mib: mib(u1.peak_kib),
        nginx_cpu_ms_per_probe: per(n0.cpu, n1.cpu),
        kx_groups: nginx.curves_since(mark),
        loadgen_cpu_ms_per_probe: per(me0.cpu, me1.cpu),
    })
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

async fn wait_ready(client: &HttpClient, listen: SocketAddr) -> Result<(), BenchError> {
    let uri: hyper::Uri = format!("http://{listen}/-/healthy")
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| BenchError::Server(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(uri.clone()).await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Server(format!(
                "blackbox_exporter does not answer on {listen}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `/probe` at `rate` per second for `window`; (answered, successful).
async fn drive(client: &HttpClient, uri: &hyper::Uri, rate: f64, window: Duration) -> (u64, u64) {
    let answered = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let end = Instant::now() + window;
    while Instant::now() < end {
        tick.tick().await;
        let (c, u, a, k) = (client.clone(), uri.clone(), answered.clone(), ok.clone());
        tasks.spawn(async move {
            let Ok(resp) = c.get(u).await else { return };
            let Ok(body) = resp.into_body().collect().await else {
                return;
            };
            a.fetch_add(1, Ordering::Relaxed);
            let text = body.to_bytes();
            if String::from_utf8_lossy(&text)
                .lines()
                .any(|l| l == "probe_success 1")
            {
                k.fetch_add(1, Ordering::Relaxed);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    (answered.load(Ordering::Relaxed), ok.load(Ordering::Relaxed))
}

/// The exporter's path, when installed.
pub fn find() -> Option<PathBuf> {
    Some(PathBuf::from(BINARY)).filter(|p| p.exists())
}
