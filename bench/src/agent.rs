//! depprobe under load: the real agent (`depprobe run`) on a generated config, its
//! CPU and memory read from `/proc`, its schedule precision from `/schedule`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use depprobe_tests::agent_process::AgentProcess;

use crate::lateness::{Quantiles, Snapshot};
use crate::nginx::Nginx;
use crate::procfs::{self, Usage};
use crate::{BenchError, mib};

/// The probe kind under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// `kind: http`: TLS handshake, `GET`, status check.
    Https,
    /// `kind: tls`: the handshake alone.
    Tls,
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
    /// nginx CPU per probe, milliseconds.
    pub nginx_cpu_ms_per_probe: f64,
    /// Key-exchange group the agent negotiated (from `/status`).
    pub kx_group: String,
    /// Bytes of `/metrics` (scrapes during the window, when any).
    pub metrics_bytes: usize,
    /// Scrapes of `/metrics` during the window.
    pub scrapes: u32,
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
    pub load: Load,
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
        let port = ports[i % ports.len()];
        let _ = match run.load {
            Load::Https => writeln!(
                y,
                "  - {{ name: https-{i}, kind: http, url: \"https://localhost:{port}/t{i}\" }}"
            ),
            Load::Tls => writeln!(
                y,
                "  - {{ name: tls-{i}, kind: tls, address: \"localhost:{port}\" }}"
            ),
        };
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
pub async fn measure(run: &AgentRun<'_>, nginx: &Nginx) -> Result<AgentResult, BenchError> {
    if nginx.ports.is_empty() || run.targets == 0 {
        return Err(BenchError::Server("nothing to probe".into()));
    }
    let cfg = run.dir.join(format!("{}.yaml", run.label));
    std::fs::write(&cfg, config(run, &nginx.ports)).map_err(BenchError::Io)?;
    let log = run.dir.join(format!("{}.log", run.label));
    let mut envs = vec![("DEPPROBE_LOG", "warn,depprobe_agent::agent=info")];
    if let Some(endpoint) = run.otlp {
        envs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
        envs.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    }
    let agent = AgentProcess::start(run.bin, &cfg, &log, &envs)
        .await
        .map_err(|e| BenchError::Agent(e.to_string()))?;

    // Warm-up: every target has run once (readiness, polled on /readyz).
    let round = run.interval * 2 + Duration::from_secs(30);
    let deadline = Instant::now() + round;
    loop {
        let ready = agent.get("/readyz").await.map(|(s, _)| s == 200);
        if matches!(ready, Ok(true)) {
            break;
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

    let pid = agent.pid();
    let before = schedule(&agent).await?;
    let u0 = procfs::usage(pid)?;
    let n0 = nginx.usage()?;
    let t0 = Instant::now();
    let mut scrapes = 0;
    let mut metrics_bytes = 0;
    // The window: the agent works; the bench only scrapes when asked to.
    let end = t0 + run.window;
    let mut next_scrape = run.scrape_every.map(|e| t0 + e);
    let mut next_sample = t0 + SAMPLE_EVERY;
    let mut rss = vec![u0.rss_kib];
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
            rss.push(procfs::usage(pid)?.rss_kib);
            next_sample += SAMPLE_EVERY;
        }
        if let Some(s) = next_scrape
            && Instant::now() >= s
        {
            let (_, body) = agent
                .get("/metrics")
                .await
                .map_err(|e| BenchError::Agent(e.to_string()))?;
            metrics_bytes = body.len();
            scrapes += 1;
            next_scrape = run.scrape_every.map(|e| s + e);
        }
    }
    let elapsed = t0.elapsed();
    let u1 = procfs::usage(pid)?;
    let n1 = nginx.usage()?;
    let after = schedule(&agent).await?;
    let lateness = after.since(&before)?;

    let status = agent
        .status()
        .await
        .map_err(|e| BenchError::Agent(e.to_string()))?;
    let outcomes = status.as_array().cloned().unwrap_or_default();
    let up = outcomes.iter().filter(|o| o["status"] == "up").count();
    let kx_group = outcomes
        .iter()
        .find_map(|o| o["tls"]["kx_group"].as_str())
        .unwrap_or_default()
        .to_owned();
    rss.push(u1.rss_kib);
    rss.sort_unstable();
    let max_kib = rss.last().copied().unwrap_or(0);
    let memory = Memory {
        median_kib: rss[rss.len() / 2],
        max_kib,
        // VmHWM and VmRSS are read one after the other: the peak is at least every
        // sample taken.
        peak_kib: u1.peak_kib.max(max_kib),
    };
    Ok(result(
        run,
        lateness,
        elapsed,
        (u0, u1),
        (n0, n1),
        memory,
        up,
        kx_group,
        (scrapes, metrics_bytes),
    ))
}

/// How often resident memory is sampled during a window.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Resident memory over a window, KiB.
struct Memory {
    median_kib: u64,
    max_kib: u64,
    peak_kib: u64,
}

#[allow(clippy::too_many_arguments)]
fn result(
    run: &AgentRun<'_>,
    lateness: Quantiles,
    elapsed: Duration,
    (u0, u1): (Usage, Usage),
    (n0, n1): (Usage, Usage),
    memory: Memory,
    up: usize,
    kx_group: String,
    (scrapes, metrics_bytes): (u32, usize),
) -> AgentResult {
    let probes = lateness.runs;
    let cpu = (u1.cpu.saturating_sub(u0.cpu)).as_secs_f64();
    let nginx_cpu = (n1.cpu.saturating_sub(n0.cpu)).as_secs_f64();
    let per = |s: f64| {
        if probes == 0 {
            0.0
        } else {
            s * 1000.0 / probes as f64
        }
    };
    AgentResult {
        targets: run.targets,
        interval_s: run.interval.as_secs_f64(),
        window_s: elapsed.as_secs_f64(),
        probes,
        up,
        cpu_seconds: cpu,
        cpu_ms_per_probe: per(cpu),
        cpu_ms_per_second: cpu * 1000.0 / elapsed.as_secs_f64().max(0.001),
        rss_mib: mib(memory.median_kib),
        rss_max_mib: mib(memory.max_kib),
        peak_rss_mib: mib(memory.peak_kib),
        lateness,
        nginx_cpu_ms_per_probe: per(nginx_cpu),
        kx_group,
        metrics_bytes,
        scrapes,
        otlp_spans: 0,
        otlp_metric_exports: 0,
    }
}
