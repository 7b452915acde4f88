//! `depprobe-bench`: runs the benchmark, prints the table, writes the JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use depprobe_bench::{Kind, Options, run};

/// CPU, memory and schedule precision of depprobe against a bare rustls handshake
/// loop and blackbox_exporter, on nginx targets over TLS 1.3, and the CPU of the
/// `mysql` and `redis` kinds on a real MariaDB and Redis (docs/benchmarks.md).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The depprobe binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/depprobe")]
    depprobe: PathBuf,
    /// Probes per second in the floor, depprobe and blackbox_exporter phases.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Targets in the rate phases (each runs every targets/rate seconds).
    #[arg(long, default_value_t = 200)]
    targets: usize,
    /// Measured window of each rate phase, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Targets in the scale phase (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    scale_targets: usize,
    /// Interval of each target in the scale phase.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    scale_interval: Duration,
    /// Measured window of the scale phase, after one full round.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    scale_window: Duration,
    /// Scrape /metrics this often during the scale phase (`0s`: never).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    scrape_every: Duration,
    /// nginx ports the targets are spread over.
    #[arg(long, default_value_t = 8)]
    ports: usize,
    /// Run the scale phase a second time, exporting spans and metrics over OTLP/gRPC
    /// to a receiver in the benchmark.
    #[arg(long)]
    otlp: bool,
    /// Skip blackbox_exporter.
    #[arg(long)]
    no_blackbox: bool,
    /// Kinds measured against a real server at --rate, --targets and --window:
    /// `mysql` (MariaDB), `redis` (Redis), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "mysql,redis", value_parser = parse_kind)]
    kinds: Vec<Kind>,
    /// Skip the kinds' phases (no MariaDB, no Redis).
    #[arg(long, conflicts_with = "kinds")]
    no_kinds: bool,
    /// Only the scale phases (no floor, rate phases, kinds or blackbox_exporter).
    #[arg(long)]
    scale_only: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/report.json")]
    out: PathBuf,
}

fn parse_kind(name: &str) -> Result<Kind, String> {
    Kind::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        format!("no phase for kind {name:?} (known: {})", known.join(", "))
    })
}

fn main() -> ExitCode {
    let a = Args::parse();
    let mut opts = Options {
        depprobe: a.depprobe,
        rate: a.rate,
        targets: a.targets.max(1),
        window: a.window,
        scale_targets: a.scale_targets,
        scale_interval: a.scale_interval,
        scale_window: a.scale_window,
        ports: a.ports.max(1),
        scrape_every: Some(a.scrape_every).filter(|d| !d.is_zero()),
        otlp: a.otlp,
        kinds: if a.no_kinds { Vec::new() } else { a.kinds },
        scale_only: a.scale_only,
        ..Options::default()
    };
    if a.no_blackbox {
        opts.blackbox = None;
    }
    if !opts.depprobe.exists() {
        eprintln!(
            "depprobe-bench: {} not found: build it first (cargo build --release -p depprobe-agent) or pass --depprobe",
            opts.depprobe.display()
        );
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("depprobe-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(&opts)) {
        Ok(report) => {
            println!("{}", report.table());
            if let Some(dir) = a.out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let json = serde_json::to_string_pretty(&report).unwrap_or_default();
            match std::fs::write(&a.out, json) {
                Ok(()) => eprintln!("depprobe-bench: JSON written to {}", a.out.display()),
                Err(e) => eprintln!("depprobe-bench: cannot write {}: {e}", a.out.display()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("depprobe-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
