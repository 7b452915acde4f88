//! depprobe's benchmark.
//!
//! In one run, on the same nginx targets (TLS 1.3, ECDSA P-256, no session reuse):
//! the floor (a bare rustls handshake loop), the real agent probing HTTPS and TLS
//! targets at a fixed rate, then `mysql` and `redis` targets on a real MariaDB and a
//! real Redis with the same certificate, blackbox_exporter driven at the same rate,
//! and the agent at scale (10,000 targets at 60 s by default). CPU and memory come
//! from `/proc`, schedule lateness from the agent's `/schedule`. `docs/benchmarks.md`
//! explains the method and holds a run's results.

pub mod agent;
pub mod blackbox;
pub mod floor;
pub mod kinds;
pub mod lateness;
pub mod nginx;
pub mod procfs;
pub mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use depprobe_tests::certs::{Ca, Identity, Validity};

pub use kinds::Kind;
pub use report::Report;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A program the benchmark needs is not installed.
    #[error("missing: {0}")]
    Missing(String),
    /// Reading `/proc`.
    #[error("reading {0}: {1}")]
    Proc(String, std::io::Error),
    /// Other I/O.
    #[error("{0}")]
    Io(std::io::Error),
    /// A server (nginx, blackbox_exporter) did not start or answer.
    #[error("{0}")]
    Server(String),
    /// The agent did not start or answer.
    #[error("depprobe: {0}")]
    Agent(String),
    /// TLS setup of the floor loop.
    #[error("TLS: {0}")]
    Tls(String),
    /// Certificates.
    #[error(transparent)]
    Cert(#[from] depprobe_tests::certs::CertError),
    /// The server of a kind's phase (MariaDB, Redis) did not start or set up.
    #[error("the {kind} phase's server: {source}")]
    Child {
        /// The kind (`mysql`, `redis`).
        kind: &'static str,
        /// What the harness said.
        source: depprobe_tests::ChildError,
    },
}

/// KiB to MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `depprobe` binary (a release build for real figures).
    pub depprobe: PathBuf,
    /// blackbox_exporter, when it is to be measured.
    pub blackbox: Option<PathBuf>,
    /// Probes per second in the rate phases (floor, depprobe, blackbox_exporter).
    pub rate: f64,
    /// Targets in the rate phases (their interval is `targets / rate`).
    pub targets: usize,
    /// Length of each measured window.
    pub window: Duration,
    /// Targets in the scale phase (0 skips it).
    pub scale_targets: usize,
    /// Interval in the scale phase.
    pub scale_interval: Duration,
    /// Measured window of the scale phase, after one full round.
    pub scale_window: Duration,
    /// nginx ports the targets are spread over.
    pub ports: usize,
    /// `/metrics` scrape interval during the scale phase (as Prometheus would).
    pub scrape_every: Option<Duration>,
    /// Run the scale phase a second time with OTLP export to a receiver.
    pub otlp: bool,
    /// The kinds with a phase of their own against a real server (`mysql`, `redis`),
    /// at the rate phases' rate, targets and window.
    pub kinds: Vec<Kind>,
    /// Only the scale phases: no floor, no rate phases, no kinds, no
    /// blackbox_exporter (for profiling the agent at scale).
    pub scale_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            depprobe: PathBuf::from("target/release/depprobe"),
            blackbox: blackbox::find(),
            rate: 100.0,
            targets: 200,
            window: Duration::from_secs(30),
            scale_targets: 10_000,
            scale_interval: Duration::from_secs(60),
            scale_window: Duration::from_secs(60),
            ports: 8,
            scrape_every: Some(Duration::from_secs(15)),
            otlp: false,
            kinds: Kind::ALL.to_vec(),
            scale_only: false,
        }
    }
}

/// Prints a progress line on stderr.
pub(crate) fn progress(msg: &str) {
    eprintln!("depprobe-bench: {msg}");
}

/// Runs every phase and returns the report.
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("depprobe-bench")
        .tempdir()
        .map_err(BenchError::Io)?;
    let ca = Ca::root("depprobe-bench CA")?;
    let leaf = ca.leaf(&["localhost"], Validity::current())?;
    let (cert, key) = leaf.write(dir.path(), "server")?;
    let ca_path = dir.path().join("ca.pem");
    depprobe_tests::certs::write(&ca_path, &ca.pem)?;
    let nginx = nginx::Nginx::start(dir.path(), &cert, &key, opts.ports)?;
    let mut report = Report::new(opts);
    report.binary_bytes = std::fs::metadata(&opts.depprobe).map_or(0, |m| m.len());
    report.binary_stripped_bytes = stripped_size(&opts.depprobe, dir.path());
    let files = Files {
        dir: dir.path(),
        ca: &ca_path,
        leaf: &leaf,
    };
    if opts.scale_only {
        if opts.scale_targets > 0 {
            scale_phases(opts, &files, &nginx, &mut report).await?;
        }
        report.finish();
        return Ok(report);
    }

    // The floor runs before and after the agent's phases, and the two are pooled:
    // a shared machine drifts, and a ratio against one side of it would be unfair.
    measure_floor(&nginx, &ca.cert, opts, &mut report, "floor (1 of 2)").await?;
    rate_phases(opts, &files, &nginx, &mut report).await?;
    kind_phases(opts, &files, &mut report).await?;
    measure_floor(&nginx, &ca.cert, opts, &mut report, "floor (2 of 2)").await?;

    if let Some(bin) = &opts.blackbox {
        progress(&format!(
            "blackbox_exporter: /probe at {}/s for {:?}",
            opts.rate, opts.window
        ));
        report.blackbox = Some(
            blackbox::measure(bin, dir.path(), &ca_path, &nginx, opts.rate, opts.window).await?,
        );
    } else {
        progress("blackbox_exporter: skipped (--no-blackbox, or not installed)");
    }
    if opts.scale_targets > 0 {
        scale_phases(opts, &files, &nginx, &mut report).await?;
    }
    report.finish();
    Ok(report)
}

/// The size of `bin` once stripped of its symbols and debug information (what the
/// Dockerfile ships), by `strip -o` into `dir`; 0 without `strip`.
fn stripped_size(bin: &std::path::Path, dir: &std::path::Path) -> u64 {
    let out = dir.join("depprobe.stripped");
    let ok = std::process::Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    let size = if ok {
        std::fs::metadata(&out).map_or(0, |m| m.len())
    } else {
        0
    };
    let _ = std::fs::remove_file(&out);
    size
}

/// The run's files: its directory, the CA's certificate, and the servers' identity.
struct Files<'a> {
    dir: &'a std::path::Path,
    ca: &'a std::path::Path,
    leaf: &'a Identity,
}

/// The interval of each target in the rate phases: `targets / rate`.
fn rate_interval(opts: &Options) -> Duration {
    Duration::from_secs_f64(opts.targets as f64 / opts.rate.max(0.001))
}

/// depprobe with `http`, then `tls` targets on nginx.
async fn rate_phases(
    opts: &Options,
    files: &Files<'_>,
    nginx: &nginx::Nginx,
    report: &mut Report,
) -> Result<(), BenchError> {
    let interval = rate_interval(opts);
    for (load, label) in [
        (agent::Load::Https, "depprobe-http"),
        (agent::Load::Tls, "depprobe-tls"),
    ] {
        progress(&format!(
            "{label}: {} targets every {interval:?} ({}/s) for {:?}",
            opts.targets, opts.rate, opts.window
        ));
        let r = agent::measure(
            &agent::AgentRun {
                bin: &opts.depprobe,
                dir: files.dir,
                ca: files.ca,
                load,
                targets: opts.targets,
                interval,
                window: opts.window,
                scrape_every: None,
                label,
                otlp: None,
            },
            nginx,
        )
        .await?;
        if matches!(load, agent::Load::Https) {
            report.depprobe_http = Some(r);
        } else {
            report.depprobe_tls = Some(r);
        }
    }
    Ok(())
}

/// depprobe with the targets of each kind of `opts.kinds` on its real server.
async fn kind_phases(
    opts: &Options,
    files: &Files<'_>,
    report: &mut Report,
) -> Result<(), BenchError> {
    for kind in &opts.kinds {
        let r = kinds::measure(
            *kind,
            &kinds::KindRun {
                bin: &opts.depprobe,
                dir: files.dir,
                ca: files.ca,
                identity: files.leaf,
                targets: opts.targets,
                interval: rate_interval(opts),
                window: opts.window,
            },
        )
        .await?;
        match kind {
            Kind::Mysql => report.depprobe_mysql = Some(r),
            Kind::Redis => report.depprobe_redis = Some(r),
        }
    }
    Ok(())
}

/// depprobe at scale, and again exporting over OTLP when asked to.
async fn scale_phases(
    opts: &Options,
    files: &Files<'_>,
    nginx: &nginx::Nginx,
    report: &mut Report,
) -> Result<(), BenchError> {
    progress(&format!(
        "scale: {} targets every {:?}; one round, then {:?} measured",
        opts.scale_targets, opts.scale_interval, opts.scale_window
    ));
    report.scale = Some(scale(opts, files.dir, files.ca, nginx, None).await?);
    if opts.otlp {
        let receiver = depprobe_tests::otlp::OtlpReceiver::start()
            .await
            .map_err(|e| BenchError::Server(format!("OTLP receiver: {e}")))?;
        let endpoint = receiver.grpc_endpoint();
        progress(&format!(
            "scale with OTLP: the same, exporting spans and metrics to {endpoint}"
        ));
        let mut r = scale(opts, files.dir, files.ca, nginx, Some(&endpoint)).await?;
        r.otlp_spans = receiver.received().span_count();
        r.otlp_metric_exports = receiver.received().requests().1;
        report.scale_otlp = Some(r);
    }
    Ok(())
}

/// The scale phase, exporting over OTLP to `otlp` when given.
async fn scale(
    opts: &Options,
    dir: &std::path::Path,
    ca: &std::path::Path,
    nginx: &nginx::Nginx,
    otlp: Option<&str>,
) -> Result<agent::AgentResult, BenchError> {
    agent::measure(
        &agent::AgentRun {
            bin: &opts.depprobe,
            dir,
            ca,
            load: agent::Load::Https,
            targets: opts.scale_targets,
            interval: opts.scale_interval,
            window: opts.scale_window,
            scrape_every: opts.scrape_every,
            label: if otlp.is_some() {
                "depprobe-scale-otlp"
            } else {
                "depprobe-scale"
            },
            otlp,
        },
        nginx,
    )
    .await
}

async fn measure_floor(
    nginx: &nginx::Nginx,
    ca: &rustls_pki_types::CertificateDer<'static>,
    opts: &Options,
    report: &mut Report,
    label: &str,
) -> Result<(), BenchError> {
    progress(&format!(
        "{label}: bare rustls handshakes at {}/s for {:?}",
        opts.rate, opts.window
    ));
    let addrs: Vec<SocketAddr> = nginx
        .ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let cfg = floor::client_config(ca)?;
    let n0 = nginx.usage()?;
    let (rate, window) = (opts.rate, opts.window);
    let run =
        tokio::task::spawn_blocking(move || floor::run(cfg, addrs, "localhost", rate, window))
            .await
            .map_err(|e| BenchError::Tls(e.to_string()))??;
    let n1 = nginx.usage()?;
    report.add_floor(run, n1.cpu.saturating_sub(n0.cpu));
    Ok(())
}
