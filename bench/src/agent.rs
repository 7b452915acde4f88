//! depprobe under load: the real agent (`depprobe run`) on a generated config, its
//! CPU and memory read from `/proc`, its schedule precision from `/schedule`, and the
//! CPU of the server its targets point at (nginx, MariaDB, Redis) over the same
//! window.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use depprobe_tests::agent_process::AgentProcess;

use crate::lateness::{Quantiles, Snapshot};
use crate::procfs::{self, Usage};
use crate::{BenchError, mib};

/// A database user the probes log in as.
#[derive(Clone, Copy, Debug)]
pub struct Login<'a> {
    /// The user.
    pub user: &'a str,
    /// The file holding the password (`password_file`, read again on every run).
    pub password_file: &'a Path,
}

/// The probe kind under load.
#[derive(Clone, Copy, Debug)]
pub enum Load<'a> {
    /// `kind: http`: TLS handshake, `GET`, status check.
    Https,
    /// `kind: tls`: the handshake alone.
    Tls,
    /// `kind: mysql` with `ssl-mode=verify_identity` and the default query: greeting,
    /// SSL request, TLS handshake, login, role facts, `SELECT 1`.
    Mysql(Login<'a>),
    /// `kind: redis` over `rediss://` as an ACL user: TLS handshake, `AUTH`, `PING`,
    /// `ROLE`, `INFO server`.
    Redis(Login<'a>),
}

impl Load<'_> {
    /// Target `i`'s line in the generated configuration, on `port`.
    fn probe(&self, i: usize, port: u16) -> String {
        match self {
            Load::Https => format!(
                "  - {{ name: https-{i}, kind: http, url: \"https://localhost:{port}/t{i}\" }}"
            ),
            Load::Tls => {
                format!("  - {{ name: tls-{i}, kind: tls, address: \"localhost:{port}\" }}")
            }
            Load::Mysql(l) => format!(
                "  - {{ name: mysql-{i}, kind: mysql, url: \"mysql://{}@localhost:{port}/?ssl-mode=verify_identity\", password_file: \"{}\" }}",
                l.user,
                l.password_file.display()
            ),
            Load::Redis(l) => format!(
                "  - {{ name: redis-{i}, kind: redis, url: \"rediss://{}@localhost:{port}/0\", password_file: \"{}\" }}",
                l.user,
                l.password_file.display()
            ),
        }
    }
}

/// The server the targets point at: its CPU over the window is reported beside the
/// agent's.
pub trait Server {
    /// What it is, for the report (`nginx`, `MariaDB`, `Redis`).
    fn name(&self) -> &'static str;
    /// The loopback ports the targets are spread over.
    fn ports(&self) -> Vec<u16>;
    /// CPU and memory of its processes.
    fn usage(&self) -> Result<Usage, BenchError>;
}

/// One depprobe measurement.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AgentResult {
    /// Targets configured.
    pub targets: usize,
    /// Interval of each target, seconds.
    pub interval_s: f64,
    /// Window measured, seconds.
    pub window_s: f64,
    /// Runs started in the window.
    pub probes: u64,
    /// Targets up at the end.
    pub up: usize,
    /// Runs that failed (down) since the agent started, warm-up included (the sum of
    /// `probe_failures_total`).
    pub failures: u64,
    /// Agent CPU in the window, seconds.
    pub cpu_seconds: f64,
    /// Agent CPU per probe, milliseconds.
    pub cpu_ms_per_probe: f64,
    /// Agent CPU per second of wall time, milliseconds.
    pub cpu_ms_per_second: f64,
    /// Steady resident memory: the median of one sample a second over the window, MiB.
    pub rss_mib: f64,
    /// The largest of those samples, MiB.
    pub rss_max_mib: f64,
    /// Peak resident memory since the start (`VmHWM`, start-up included), MiB.
    pub peak_rss_mib: f64,
    /// Schedule lateness in the window.
    pub lateness: Quantiles,
    /// The server the targets point at (`nginx`, `MariaDB`, `Redis`).
    pub server: String,
    /// Its version, as the probes reported it (`server_version`; database kinds).
    pub server_version: String,
    /// The server's CPU per probe, milliseconds (named `nginx_cpu_ms_per_probe` in
    /// reports before 2026-11-26).
    pub server_cpu_ms_per_probe: f64,
    /// Key-exchange group the agent negotiated (from `/status`).
    pub kx_group: String,
    /// TLS version the agent negotiated (from `/status`: `1.3`).
    pub tls_version: String,
    /// Cipher suite the agent negotiated (from `/status`).
    pub cipher: String,
    /// Bytes of `/metrics` (scrapes during the window, when any).
    pub metrics_bytes: usize,
    /// Scrapes of `/metrics` during the window.
    pub scrapes: u32,
    /// The longest of those scrapes, request to last byte, milliseconds.
    pub metrics_ms_max: f64,
    /// Spans the OTLP receiver got over the whole run (OTLP runs only).
    pub otlp_spans: usize,
    /// Metric export requests the OTLP receiver got over the whole run (OTLP runs only).
    pub otlp_metric_exports: usize,
}

/// How to run one measurement.
pub struct AgentRun<'a> {
    /// The `depprobe` binary.
    pub bin: &'a Path,
    /// Where the config and the log go.
    pub dir: &'a Path,
    /// The CA of the targets.
    pub ca: &'a Path,
    /// What to probe.
    pub load: Load<'a>,
    /// Number of targets.
    pub targets: usize,
    /// Interval of every target.
    pub interval: Duration,
    /// Length of the measured window (after one full round).
    pub window: Duration,
    /// Scrape `/metrics` this often during the window (as Prometheus would).
    pub scrape_every: Option<Duration>,
    /// Label for files.
    pub label: &'a str,
    /// OTLP/gRPC endpoint the agent exports its spans and metrics to, if any.
    pub otlp: Option<&'a str>,
}

fn config(run: &AgentRun<'_>, ports: &[u16]) -> String {
    let mut y = format!(
        "agent:\n  listen: 127.0.0.1:0\n  interval: {}ms\n  timeout: 5s\n  concurrency: 256\ndefaults:\n  tls:\n    ca_file: {}\nprobes:\n",
        run.interval.as_millis(),
        run.ca.display()
    );
    for i in 0..run.targets {
        let _ = writeln!(y, "{}", run.load.probe(i, ports[i % ports.len()]));
    }
    y
}

async fn schedule(agent: &AgentProcess) -> Result<Snapshot, BenchError> {
    let (_, body) = agent
        .get("/schedule")
        .await
        .map_err(|e| BenchError::Agent(e.to_string()))?;
    Snapshot::parse(&body)
}

/// Starts the agent, waits for one full round of runs, then measures a window.
pub async fn measure(run: &AgentRun<'_>, server: &dyn Server) -> Result<AgentResult, BenchError> {
    let ports = server.ports();
    if ports.is_empty() || run.targets == 0 {
        return Err(BenchError::Server("nothing to probe".into()));
    }
    let agent = start(run, &ports).await?;
    let pid = agent.pid();
    let before = schedule(&agent).await?;
    let u0 = procfs::usage(pid)?;
    let s0 = server.usage()?;
    let window = window(run, &agent, u0).await?;
    let u1 = procfs::usage(pid)?;
    let s1 = server.usage()?;
    let after = schedule(&agent).await?;
    let seen = seen(&agent).await?;
    Ok(result(
        run,
        Measured {
            lateness: after.since(&before)?,
            agent: (u0, u1),
            server: (server.name(), s0, s1),
            window: window.with_last(u1),
            seen,
        },
    ))
}

/// Starts the agent on the generated configuration and waits until every target has
/// run once (readiness, polled on `/readyz`).
async fn start(run: &AgentRun<'_>, ports: &[u16]) -> Result<AgentProcess, BenchError> {
    let cfg = run.dir.join(format!("{}.yaml", run.label));
    std::fs::write(&cfg, config(run, ports)).map_err(BenchError::Io)?;
    let log = run.dir.join(format!("{}.log", run.label));
    let mut envs = vec![("DEPPROBE_LOG", "warn,depprobe_agent::agent=info")];
    if let Some(endpoint) = run.otlp {
        envs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
        envs.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    }
    let agent = AgentProcess::start(run.bin, &cfg, &log, &envs)
        .await
        .map_err(|e| BenchError::Agent(e.to_string()))?;
    let round = run.interval * 2 + Duration::from_secs(30);
    let deadline = Instant::now() + round;
    loop {
        let ready = agent.get("/readyz").await.map(|(s, _)| s == 200);
        if matches!(ready, Ok(true)) {
            return Ok(agent);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Agent(format!(
                "{}: not every target ran within {round:?}; log:\n{}",
                run.label,
                agent.log_text()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the window saw besides CPU: memory samples and scrapes.
struct Window {
    elapsed: Duration,
    /// Resident memory, one sample a second (and the first and last readings), KiB.
    rss_kib: Vec<u64>,
    scrapes: u32,
    metrics_bytes: usize,
    metrics_ms_max: f64,
}

impl Window {
    /// Adds the reading taken at the end of the window.
    fn with_last(mut self, last: Usage) -> Window {
        self.rss_kib.push(last.rss_kib);
        self.rss_kib.sort_unstable();
        self
    }
}

/// The measured window: the agent works; the bench samples memory every second and
/// scrapes `/metrics` only when asked to.
async fn window(run: &AgentRun<'_>, agent: &AgentProcess, u0: Usage) -> Result<Window, BenchError> {
    let t0 = Instant::now();
    let end = t0 + run.window;
    let mut w = Window {
        elapsed: Duration::ZERO,
        rss_kib: vec![u0.rss_kib],
        scrapes: 0,
        metrics_bytes: 0,
        metrics_ms_max: 0.0,
    };
    let mut next_scrape = run.scrape_every.map(|e| t0 + e);
    let mut next_sample = t0 + SAMPLE_EVERY;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let until = next_scrape
            .filter(|s| *s < end)
            .unwrap_or(end)
            .min(next_sample);
        tokio::time::sleep(until.saturating_duration_since(now)).await;
        if Instant::now() >= next_sample {
            w.rss_kib.push(procfs::usage(agent.pid())?.rss_kib);
            next_sample += SAMPLE_EVERY;
        }
        if let Some(s) = next_scrape
            && Instant::now() >= s
        {
            let asked = Instant::now();
            w.metrics_bytes = metrics(agent).await?.len();
            w.metrics_ms_max = w.metrics_ms_max.max(asked.elapsed().as_secs_f64() * 1000.0);
            w.scrapes += 1;
            next_scrape = run.scrape_every.map(|e| s + e);
        }
    }
    w.elapsed = t0.elapsed();
    Ok(w)
}

async fn metrics(agent: &AgentProcess) -> Result<String, BenchError> {
    let (_, body) = agent
        .get("/metrics")
        .await
        .map_err(|e| BenchError::Agent(e.to_string()))?;
    Ok(body)
}

/// What the agent reports once the window is over.
struct Seen {
    up: usize,
    failures: u64,
    kx_group: String,
    tls_version: String,
    cipher: String,
    server_version: String,
}

/// Reads `/status` (targets up, the TLS session, server version) and `/metrics`
/// (failed runs), after the window so that neither read is measured.
async fn seen(agent: &AgentProcess) -> Result<Seen, BenchError> {
    let status = agent
        .status()
        .await
        .map_err(|e| BenchError::Agent(e.to_string()))?;
    let outcomes = status.as_array().cloned().unwrap_or_default();
    let first = |f: &dyn Fn(&serde_json::Value) -> Option<&str>| {
        outcomes.iter().find_map(f).unwrap_or_default().to_owned()
    };
    Ok(Seen {
        up: outcomes.iter().filter(|o| o["status"] == "up").count(),
        failures: counter_sum(&metrics(agent).await?, "probe_failures_total"),
        kx_group: first(&|o| o["tls"]["kx_group"].as_str()),
        tls_version: first(&|o| o["tls"]["version"].as_str()),
        cipher: first(&|o| o["tls"]["cipher"].as_str()),
        server_version: first(&|o| o["details"]["server_version"].as_str()),
    })
}

/// The sum of every series of the counter `name` in a Prometheus text exposition.
pub fn counter_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// How often resident memory is sampled during a window.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Everything read for one measurement.
struct Measured {
    lateness: Quantiles,
    /// The agent's usage at the start and the end of the window.
    agent: (Usage, Usage),
    /// The server's name and usage at the start and the end of the window.
    server: (&'static str, Usage, Usage),
    /// Memory samples (sorted) and scrapes.
    window: Window,
    seen: Seen,
}

fn result(run: &AgentRun<'_>, m: Measured) -> AgentResult {
    let probes = m.lateness.runs;
    let (u0, u1) = m.agent;
    let (server, s0, s1) = m.server;
    let cpu = (u1.cpu.saturating_sub(u0.cpu)).as_secs_f64();
    let server_cpu = (s1.cpu.saturating_sub(s0.cpu)).as_secs_f64();
    let per = |s: f64| {
        if probes == 0 {
            0.0
        } else {
            s * 1000.0 / probes as f64
        }
    };
    let rss = &m.window.rss_kib;
    let max_kib = rss.last().copied().unwrap_or(0);
    let elapsed = m.window.elapsed.as_secs_f64();
    AgentResult {
        targets: run.targets,
        interval_s: run.interval.as_secs_f64(),
        window_s: elapsed,
        probes,
        up: m.seen.up,
        failures: m.seen.failures,
        cpu_seconds: cpu,
        cpu_ms_per_probe: per(cpu),
        cpu_ms_per_second: cpu * 1000.0 / elapsed.max(0.001),
        rss_mib: mib(rss.get(rss.len() / 2).copied().unwrap_or(0)),
        rss_max_mib: mib(max_kib),
        // VmHWM and VmRSS are read one after the other: the peak is at least every
        // sample taken.
        peak_rss_mib: mib(u1.peak_kib.max(max_kib)),
        lateness: m.lateness,
        server: server.to_owned(),
        server_version: m.seen.server_version,
        server_cpu_ms_per_probe: per(server_cpu),
        kx_group: m.seen.kx_group,
        tls_version: m.seen.tls_version,
        cipher: m.seen.cipher,
        metrics_bytes: m.window.metrics_bytes,
        scrapes: m.window.scrapes,
        metrics_ms_max: m.window.metrics_ms_max,
        otlp_spans: 0,
        otlp_metric_exports: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_is_summed_over_its_series_and_nothing_else() {
        let text = "# TYPE probe_failures_total counter\n\
            probe_failures_total{probe_name=\"a\",error_type=\"timeout\"} 2\n\
            probe_failures_total{probe_name=\"b\",error_type=\"auth_rejected\"} 3\n\
            probe_failures_total_extra 100\n\
            probe_runs_total{probe_name=\"a\"} 7\n";
        assert_eq!(counter_sum(text, "probe_failures_total"), 5);
        assert_eq!(counter_sum(text, "probe_runs_total"), 7);
        assert_eq!(counter_sum(text, "absent_total"), 0);
    }
}
