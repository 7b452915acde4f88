//! The command line: `run`, `check`, `validate`, `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use depprobe_probes::ProbeEnv;

use crate::check::{self, EXIT_CONFIG, EXIT_USAGE};
use crate::shard::{Shard, ShardSpec};
use crate::{setup, table};

/// depprobe: synthetic probes for an application's dependencies.
#[derive(Debug, Parser)]
#[command(name = "depprobe", version, about, long_about = None)]
pub struct Cli {
    /// Log records as `text` (one line each, for a terminal) or `json` (one JSON
    /// object per line, for a log pipeline). The level is `DEPPROBE_LOG` (`info` by
    /// default; `debug` shows depprobe's own runs, `trace` every library's too).
    #[arg(long = "log.format", env = "DEPPROBE_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log records are written (on stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the message as
    /// `message` and every field of the record.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: every probe on its interval, exported over OTLP and on /metrics.
    Run {
        /// Configuration file (reloaded on SIGHUP and when it changes).
        #[arg(short, long, env = "DEPPROBE_CONFIG", default_value = "depprobe.yaml")]
        config: PathBuf,
        /// Run only this shard of the probes: i/n (rendezvous hashing of each name),
        /// or pod/n to take i from the StatefulSet pod's index.
        #[arg(long, env = "DEPPROBE_SHARD")]
        shard: Option<ShardSpec>,
        /// Threads that run the probes. One thread runs about 2,000 HTTPS probes a
        /// second and costs the least CPU per probe (no hand-offs between threads);
        /// raise it only for more than that. Off-thread work (rendering /metrics,
        /// trimming memory) uses a separate pool either way.
        #[arg(long, env = "DEPPROBE_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: u16,
    },
    /// Run every probe once, print a table, exit 0 (all up), 1 (degraded), 2 (down), 3 (bad config), 64 (bad command line).
    Check {
        /// Configuration file.
        #[arg(short, long, env = "DEPPROBE_CONFIG", default_value = "depprobe.yaml")]
        config: PathBuf,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Exit 0 when targets are degraded but none is down.
        #[arg(long)]
        allow_degraded: bool,
        /// Check only this shard of the probes: i/n, or pod/n.
        #[arg(long, env = "DEPPROBE_SHARD")]
        shard: Option<ShardSpec>,
    },
    /// Check a configuration file and report every error with file, line and column.
    Validate {
        /// Configuration file.
        #[arg(short, long, env = "DEPPROBE_CONFIG", default_value = "depprobe.yaml")]
        config: PathBuf,
    },
    /// Start local demo dependencies (healthy, expiring, expired, untrusted, ...) and probe them.
    Demo {
        /// Print the table once and exit.
        #[arg(long)]
        once: bool,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Address of /metrics and /status while the demo runs.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: String,
        /// Print the demo's configuration file and exit.
        #[arg(long)]
        print_config: bool,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    crate::memory::limit_arenas();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_logging(
        matches!(
            cli.command,
            Command::Check { .. } | Command::Validate { .. }
        ),
        cli.log_format,
    );
    let mut builder = match cli.command {
        // The agent runs its probes on the threads it is given: one by default, on
        // which a probe's wake-ups never cross to another thread.
        Command::Run { threads: 1, .. } => tokio::runtime::Builder::new_current_thread(),
        Command::Run { threads, .. } => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(threads));
            b
        }
        // A one-shot check (and the demo) finishes sooner on every CPU.
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("depprobe: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli.command)))
}

/// Prints clap's message; `--help` and `--version` exit 0, every other error
/// [`EXIT_USAGE`].
fn usage_error(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp
        | clap::error::ErrorKind::DisplayVersion
        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ExitCode::from(check::EXIT_UP)
        }
        _ => ExitCode::from(EXIT_USAGE),
    }
}

/// depprobe's own crates: what `DEPPROBE_LOG=debug` turns up.
const OWN_CRATES: &[&str] = &[
    "depprobe",
    "depprobe_agent",
    "depprobe_probes",
    "depprobe_config",
];

/// The filter of a `DEPPROBE_LOG` value: a bare `debug` is depprobe's own debug
/// records over the libraries' `info` (rustls' and hyper's internals are `trace`);
/// anything else is an `EnvFilter` directive as written.
fn log_filter(value: Option<&str>, quiet: bool) -> tracing_subscriber::EnvFilter {
    let default = if quiet { "warn" } else { "info" };
    let directives = match value.map(str::trim) {
        None | Some("") => default.to_owned(),
        Some("debug") => {
            let own: Vec<String> = OWN_CRATES.iter().map(|c| format!("{c}=debug")).collect();
            format!("info,{}", own.join(","))
        }
        Some(other) => other.to_owned(),
    };
    tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

fn init_logging(quiet: bool, format: LogFormat) {
    let value = std::env::var("DEPPROBE_LOG").ok();
    let filter = log_filter(value.as_deref(), quiet);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

async fn dispatch(command: Command) -> u8 {
    match command {
        Command::Run { config, shard, .. } => match resolve(shard) {
            Ok(shard) => crate::agent::run_file(&config, shard).await,
            Err(code) => code,
        },
        Command::Check {
            config,
            json,
            allow_degraded,
            shard,
        } => match resolve(shard) {
            Ok(shard) => cmd_check(&config, json, allow_degraded, shard).await,
            Err(code) => code,
        },
        Command::Validate { config } => cmd_validate(&config).await,
        Command::Demo {
            once,
            json,
            listen,
            print_config,
        } => crate::demo::run(once, json, &listen, print_config).await,
    }
}

/// The shard this process runs (`pod/n` reads the pod's index now).
fn resolve(spec: Option<ShardSpec>) -> Result<Option<Shard>, u8> {
    spec.map(|s| s.resolve_from_env()).transpose().map_err(|e| {
        eprintln!("depprobe: {e}");
        EXIT_CONFIG
    })
}

fn env() -> Result<ProbeEnv, u8> {
    ProbeEnv::system().map_err(|e| {
        eprintln!("depprobe: {e}");
        EXIT_CONFIG
    })
}

/// `check`: the probes of `config` once.
pub async fn cmd_check(
    config: &std::path::Path,
    json: bool,
    allow_degraded: bool,
    shard: Option<Shard>,
) -> u8 {
    let env = match env() {
        Ok(e) => e,
        Err(code) => return code,
    };
    let (cfg, probes) = match setup::load_and_build_shard(config, &env, shard) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let outcomes = check::run_all(&probes, cfg.agent.concurrency).await;
    if json {
        table::out(&format!("{}\n", check::to_json(&outcomes)));
    } else {
        table::out(&table::render(&outcomes));
        eprintln!("{}", check::summary(&outcomes));
    }
    check::exit_code(&outcomes, allow_degraded)
}

async fn cmd_validate(config: &std::path::Path) -> u8 {
    let env = match env() {
        Ok(e) => e,
        Err(code) => return code,
    };
    match setup::load_and_build(config, &env) {
        Ok((cfg, probes)) => {
            if let Some(Err(e)) = cfg
                .agent
                .web_config
                .as_deref()
                .map(crate::web_config::WebSecurity::load)
            {
                eprintln!("agent.web_config: {e}");
                return EXIT_CONFIG;
            }
            let mut kinds: Vec<&str> = cfg.probes.iter().map(|p| p.spec.kind().as_str()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            table::out(&format!(
                "{}: OK, {} probe{} ({})\n",
                config.display(),
                probes.len(),
                if probes.len() == 1 { "" } else { "s" },
                kinds.join(", ")
            ));
            0
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_CONFIG
        }
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn a_bare_debug_is_depprobes_own_debug() {
        let f = log_filter(Some("debug"), false).to_string();
        assert!(f.contains("depprobe_probes=debug"), "{f}");
        assert!(f.contains("info"), "{f}");
        assert_eq!(
            log_filter(Some("rustls=trace"), false).to_string(),
            "rustls=trace"
        );
        assert_eq!(log_filter(None, true).to_string(), "warn");
    }
}
