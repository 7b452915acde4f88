//! The benchmark's result: absolute figures, ratios, and the targets met or missed,
//! as a table for people and as JSON for comparing runs.

use std::fmt::Write as _;

use crate::Options;
use crate::agent::AgentResult;
use crate::blackbox::BlackboxResult;
use crate::floor::FloorResult;

/// CPU per HTTPS probe against the floor: the target (issue 26).
pub const TARGET_VS_FLOOR: f64 = 1.10;
/// CPU per `mysql` probe against the floor: the target (issue 26).
pub const TARGET_MYSQL_VS_FLOOR: f64 = 1.35;
/// CPU per `redis` probe against the floor: the target (issue 26).
pub const TARGET_REDIS_VS_FLOOR: f64 = 1.20;
/// Steady RSS at scale, MiB: the target (issue 26, at 10,000 targets).
pub const TARGET_SCALE_RSS_MIB: f64 = 48.0;
/// Peak RSS at scale against the steady RSS: the target (issue 26).
pub const TARGET_SCALE_PEAK_VS_STEADY: f64 = 1.25;
/// Bytes of one `/metrics` at scale, millions: the target (issue 26, at 10,000).
pub const TARGET_SCALE_METRICS_MB: f64 = 15.0;
/// p99 schedule lateness at scale, ms: the target.
pub const TARGET_SCALE_P99_MS: f64 = 50.0;

/// Ratios between the measured processes (CPU per probe).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Ratios {
    /// depprobe `http` / floor.
    pub http_vs_floor: Option<f64>,
    /// depprobe `tls` / floor.
    pub tls_vs_floor: Option<f64>,
    /// depprobe `http` / blackbox_exporter.
    pub http_vs_blackbox: Option<f64>,
    /// blackbox_exporter / floor.
    pub blackbox_vs_floor: Option<f64>,
    /// depprobe `mysql` / floor (a probe is a handshake, a login and three queries).
    pub mysql_vs_floor: Option<f64>,
    /// depprobe `redis` / floor (a probe is a handshake and four commands).
    pub redis_vs_floor: Option<f64>,
}

/// A target and whether this run met it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Target {
    /// What is measured.
    pub what: String,
    /// The limit.
    pub limit: f64,
    /// The figure.
    pub measured: f64,
    /// Whether `measured <= limit`.
    pub met: bool,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// When (Unix seconds).
    pub unix_time: u64,
    /// CPUs online.
    pub cpus: usize,
    /// 1-minute load average before the run.
    pub load_before: f64,
    /// Probes per second in the rate phases.
    pub rate: f64,
    /// The bare handshake loop, both runs pooled.
    pub floor: Option<FloorResult>,
    /// CPU per handshake of each floor run, ms.
    pub floor_runs_ms: Vec<f64>,
    /// nginx CPU per floor handshake, ms.
    pub floor_nginx_cpu_ms: f64,
    #[serde(skip)]
    floor_nginx_cpu: std::time::Duration,
    /// depprobe with `http` probes.
    pub depprobe_http: Option<AgentResult>,
    /// depprobe with `tls` probes.
    pub depprobe_tls: Option<AgentResult>,
    /// depprobe with `mysql` probes on a real MariaDB.
    pub depprobe_mysql: Option<AgentResult>,
    /// depprobe with `redis` probes on a real Redis.
    pub depprobe_redis: Option<AgentResult>,
    /// blackbox_exporter.
    pub blackbox: Option<BlackboxResult>,
    /// depprobe at scale.
    pub scale: Option<AgentResult>,
    /// depprobe at scale, exporting over OTLP (`--otlp`).
    pub scale_otlp: Option<AgentResult>,
    /// Ratios of CPU per probe.
    pub ratios: Ratios,
    /// The targets.
    pub targets: Vec<Target>,
    /// Size of the `depprobe` binary measured, bytes.
    pub binary_bytes: u64,
    /// The same once stripped (`strip`, as the Dockerfile ships it), bytes.
    pub binary_stripped_bytes: u64,
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a > 0.0).then(|| a / b)
}

impl Report {
    /// An empty report for `opts`.
    pub fn new(opts: &Options) -> Report {
        Report {
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            load_before: load_average(),
            rate: opts.rate,
            ..Report::default()
        }
    }

    /// Pools a run of the floor (and the nginx CPU it caused) into the report.
    pub fn add_floor(&mut self, run: FloorResult, nginx_cpu: std::time::Duration) {
        self.floor_runs_ms.push(run.cpu_ms_per_handshake());
        self.floor_nginx_cpu += nginx_cpu;
        let pooled = match self.floor.take() {
            None => run,
            Some(mut p) => {
                p.handshakes += run.handshakes;
                p.failures += run.failures;
                p.cpu_seconds += run.cpu_seconds;
                p
            }
        };
        self.floor_nginx_cpu_ms = if pooled.handshakes == 0 {
            0.0
        } else {
            self.floor_nginx_cpu.as_secs_f64() * 1000.0 / pooled.handshakes as f64
        };
        self.floor = Some(pooled);
    }

    /// Computes the ratios and the targets.
    pub fn finish(&mut self) {
        let floor = self
            .floor
            .as_ref()
            .map_or(0.0, |f| f.cpu_ms_per_handshake());
        let http = self
            .depprobe_http
            .as_ref()
            .map_or(0.0, |r| r.cpu_ms_per_probe);
        let tls = self
            .depprobe_tls
            .as_ref()
            .map_or(0.0, |r| r.cpu_ms_per_probe);
        let bb = self.blackbox.as_ref().map_or(0.0, |r| r.cpu_ms_per_probe);
        let per_probe = |r: &Option<AgentResult>| r.as_ref().map_or(0.0, |r| r.cpu_ms_per_probe);
        self.ratios = Ratios {
            http_vs_floor: ratio(http, floor),
            tls_vs_floor: ratio(tls, floor),
            http_vs_blackbox: ratio(http, bb),
            blackbox_vs_floor: ratio(bb, floor),
            mysql_vs_floor: ratio(per_probe(&self.depprobe_mysql), floor),
            redis_vs_floor: ratio(per_probe(&self.depprobe_redis), floor),
        };
        let mut targets = Vec::new();
        let mut target = |what: String, limit: f64, measured: f64| {
            targets.push(Target {
                what,
                limit,
                measured,
                met: measured <= limit,
            })
        };
        for (what, r, limit) in [
            ("HTTPS", self.ratios.http_vs_floor, TARGET_VS_FLOOR),
            ("`mysql`", self.ratios.mysql_vs_floor, TARGET_MYSQL_VS_FLOOR),
            ("`redis`", self.ratios.redis_vs_floor, TARGET_REDIS_VS_FLOOR),
        ] {
            if let Some(r) = r {
                target(format!("CPU per {what} probe / floor"), limit, r);
            }
        }
        if let Some(s) = &self.scale {
            // The memory limits are the at 10,000 targets; at other sizes
            // they are printed for comparison, scaled by nothing.
            target(
                format!("steady RSS at {} targets, MiB", s.targets),
                TARGET_SCALE_RSS_MIB,
                s.rss_mib,
            );
            target(
                format!("peak RSS / steady at {} targets", s.targets),
                TARGET_SCALE_PEAK_VS_STEADY,
                if s.rss_mib > 0.0 {
                    s.peak_rss_mib / s.rss_mib
                } else {
                    0.0
                },
            );
            target(
                format!("/metrics at {} targets, MB", s.targets),
                TARGET_SCALE_METRICS_MB,
                s.metrics_bytes as f64 / 1e6,
            );
            target(
                format!("p99 schedule lateness at {} targets, ms", s.targets),
                TARGET_SCALE_P99_MS,
                s.lateness.p99_ms,
            );
        }
        self.targets = targets;
    }

    /// The report as a Markdown table, then the scale phases and the targets.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{} CPUs, load {:.2} before the run, {} probes/s\n",
            self.cpus, self.load_before, self.rate
        );
        let _ = writeln!(
            t,
            "| process | probes | CPU ms/probe | vs floor | vs blackbox | RSS MiB (peak) | lateness p50/p99/max ms | server CPU ms/probe | TLS, key exchange |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
        self.floor_row(&mut t);
        self.agent_rows(&mut t);
        self.blackbox_row(&mut t);
        let _ = writeln!(
            t,
            "\nServer: nginx for the floor, `http`, `tls` and blackbox_exporter; the named server for `mysql` and `redis`."
        );
        self.scale_lines(&mut t);
        if self.binary_bytes > 0 {
            let _ = writeln!(
                t,
                "\nBinary: {} bytes ({:.1} MiB) as built, {} bytes ({:.1} MiB) stripped.",
                self.binary_bytes,
                self.binary_bytes as f64 / 1_048_576.0,
                self.binary_stripped_bytes,
                self.binary_stripped_bytes as f64 / 1_048_576.0
            );
        }
        self.target_lines(&mut t);
        t
    }

    fn floor_ms(&self) -> Option<f64> {
        self.floor.as_ref().map(FloorResult::cpu_ms_per_handshake)
    }

    fn floor_row(&self, t: &mut String) {
        let Some(fl) = &self.floor else { return };
        let _ = writeln!(
            t,
            "| floor: rustls handshake loop (runs: {}) | {} | {:.3} | 1.00 | {} | - | - | {:.3} | {} {} |",
            self.floor_runs_ms
                .iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            fl.handshakes,
            fl.cpu_ms_per_handshake(),
            two(self
                .blackbox
                .as_ref()
                .and_then(|b| ratio(fl.cpu_ms_per_handshake(), b.cpu_ms_per_probe))),
            self.floor_nginx_cpu_ms,
            fl.version,
            fl.kx_group
        );
    }

    /// depprobe's rows: `http` and `tls` on nginx, `mysql` and `redis` on theirs.
    fn agent_rows(&self, t: &mut String) {
        let floor_ms = self.floor_ms();
        let bb = self.blackbox.as_ref().map(|b| b.cpu_ms_per_probe);
        for (kind, r, against_blackbox) in [
            ("http", &self.depprobe_http, true),
            ("tls", &self.depprobe_tls, true),
            ("mysql", &self.depprobe_mysql, false),
            ("redis", &self.depprobe_redis, false),
        ] {
            let Some(r) = r else { continue };
            let server = match r.server_version.as_str() {
                "" => String::new(),
                v => format!("; {} {v}", r.server),
            };
            let _ = writeln!(
                t,
                "| depprobe `{kind}` ({} targets{server}) | {} | {:.3} | {} | {} | {:.1} ({:.1}) | {:.2} / {:.2} / {:.2} | {:.3} | {} |",
                r.targets,
                r.probes,
                r.cpu_ms_per_probe,
                two(floor_ms.and_then(|fl| ratio(r.cpu_ms_per_probe, fl))),
                two(bb
                    .filter(|_| against_blackbox)
                    .and_then(|b| ratio(r.cpu_ms_per_probe, b))),
                r.rss_mib,
                r.peak_rss_mib,
                r.lateness.p50_ms,
                r.lateness.p99_ms,
                r.lateness.max_ms,
                r.server_cpu_ms_per_probe,
                tls(r)
            );
        }
    }

    fn blackbox_row(&self, t: &mut String) {
        let Some(b) = &self.blackbox else { return };
        let groups: Vec<String> = b
            .kx_groups
            .iter()
            .map(|(g, n)| format!("{g} x{n}"))
            .collect();
        let _ = writeln!(
            t,
            "| blackbox_exporter `http` | {} ({} ok) | {:.3} | {} | 1.00 | {:.1} ({:.1}) | - | {:.3} | {} |",
            b.probes,
            b.successes,
            b.cpu_ms_per_probe,
            two(self.floor_ms().and_then(|fl| ratio(b.cpu_ms_per_probe, fl))),
            b.rss_mib,
            b.peak_rss_mib,
            b.nginx_cpu_ms_per_probe,
            groups.join(", ")
        );
    }

    fn scale_lines(&self, t: &mut String) {
        for (what, s) in [("", &self.scale), (" with OTLP export", &self.scale_otlp)] {
            let Some(s) = s else { continue };
            let _ = writeln!(
                t,
                "\nScale{what}: {} `http` targets every {:.0} s, {:.0} s measured after one full round: {} runs ({} targets up), CPU {:.1} ms/s ({:.3} ms/probe), RSS {:.1} MiB steady (median of a sample a second; {:.1} MiB at most in the window, {:.1} MiB peak since start), lateness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} scrapes of /metrics ({} bytes, {:.0} ms to the last byte at most).",
                s.targets,
                s.interval_s,
                s.window_s,
                s.probes,
                s.up,
                s.cpu_ms_per_second,
                s.cpu_ms_per_probe,
                s.rss_mib,
                s.rss_max_mib,
                s.peak_rss_mib,
                s.lateness.p50_ms,
                s.lateness.p99_ms,
                s.lateness.max_ms,
                s.scrapes,
                s.metrics_bytes,
                s.metrics_ms_max
            );
            if s.otlp_spans > 0 || s.otlp_metric_exports > 0 {
                let _ = writeln!(
                    t,
                    "OTLP receiver: {} spans, {} metric exports over the run.",
                    s.otlp_spans, s.otlp_metric_exports
                );
            }
        }
    }

    fn target_lines(&self, t: &mut String) {
        if self.targets.is_empty() {
            return;
        }
        let _ = writeln!(t, "\n| target | limit | measured | |\n|---|---:|---:|---|");
        for g in &self.targets {
            let _ = writeln!(
                t,
                "| {} | {:.2} | {:.2} | {} |",
                g.what,
                g.limit,
                g.measured,
                if g.met { "met" } else { "MISSED" }
            );
        }
    }
}

/// The TLS session of a depprobe phase: `TLS 1.3 X25519`.
fn tls(r: &AgentResult) -> String {
    match r.tls_version.as_str() {
        "" => r.kx_group.clone(),
        v => format!("TLS {v} {}", r.kx_group),
    }
}

/// A ratio with two decimals, or `-`.
fn two(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.2}"))
}
