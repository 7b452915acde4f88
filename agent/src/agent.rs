//! `depprobe run`: the agent.
//!
//! Wires config -> scheduler -> probe -> outcome -> state -> telemetry, serves the
//! HTTP endpoints, reloads on SIGHUP or a change of the file, and on SIGINT/SIGTERM
//! stops the probes and flushes the exporters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use depprobe_config::Config;
use depprobe_probes::{Probe, ProbeEnv};
use tokio::sync::mpsc;

use crate::check::EXIT_CONFIG;
use crate::persist::Persist;
use crate::scheduler::{Scheduled, Scheduler, Sink};
use crate::setup::{self, Shard};
use crate::state::State;
use crate::telemetry::Telemetry;
use crate::web_config::WebSecurity;

/// How long exporters get to flush when the agent stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

fn scheduled(config: &Config, probes: Vec<Arc<dyn Probe>>) -> Vec<Scheduled> {
    config
        .probes
        .iter()
        .zip(probes)
        .map(|(cfg, probe)| Scheduled {
            probe,
            interval: cfg.interval.0,
            fingerprint: cfg.fingerprint(),
        })
        .collect()
}

/// Each probe with its configuration's fingerprint (what the memory kept on disk
/// needs to follow the scheduler).
fn fingerprinted(scheduled: &[Scheduled]) -> Vec<(u64, Arc<dyn Probe>)> {
    scheduled
        .iter()
        .map(|s| (s.fingerprint, s.probe.clone()))
        .collect()
}

/// Loads `path`, then runs the agent until SIGINT/SIGTERM. Returns the exit code.
pub async fn run_file(path: &Path, shard: Option<Shard>) -> u8 {
    let env = match ProbeEnv::system() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_CONFIG;
        }
    };
    match setup::load_and_build_shard(path, &env, shard) {
        Ok((cfg, probes)) => run_config(cfg, probes, env, Some(path.to_owned()), shard).await,
        Err(e) => {
            tracing::error!("cannot start:\n{e}");
            EXIT_CONFIG
        }
    }
}

/// Runs the agent on an already built configuration; `path`, when given, is
/// watched for reloads.
// A little over 80 lines on purpose: the agent's life in order (telemetry,
// endpoints, memory, schedule, reloads until a signal, then the stop in reverse).
pub async fn run_config(
    cfg: Config,
    probes: Vec<Arc<dyn Probe>>,
    env: ProbeEnv,
    path: Option<PathBuf>,
    shard: Option<Shard>,
) -> u8 {
    let state = State::new();
    let telemetry = match Telemetry::start(&cfg.telemetry, state.clone(), probes.len()) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            tracing::error!("cannot start telemetry: {e}");
            return EXIT_CONFIG;
        }
    };
    let api = match start_endpoints(&cfg, telemetry.clone()).await {
        Ok(api) => api,
        Err(code) => return code,
    };
    let sink = Arc::new(Sink {
        state: state.clone(),
        telemetry: telemetry.clone(),
    });
    let mut scheduler = Scheduler::new(cfg.agent.concurrency, sink);
    let n = probes.len();
    let persist = cfg
        .agent
        .state_dir
        .as_deref()
        .map(|dir| Arc::new(Persist::open(dir)));
    let initial = scheduled(&cfg, probes);
    if let Some(p) = &persist {
        p.adopt(&fingerprinted(&initial));
    }
    scheduler.apply(initial);
    let saver = persist.clone().map(|p| tokio::spawn(p.save_periodically()));
    tracing::info!(
        "depprobe {} running {n} probe{}{}",
        crate::telemetry::VERSION,
        if n == 1 { "" } else { "s" },
        shard.map(|s| format!(" (shard {s})")).unwrap_or_default()
    );

    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    let watcher = path.clone().map(|p| crate::reload::watch(p, reload_tx));
    let trim = tokio::spawn(crate::memory::trim_periodically());
    let stop = stop_signal();
    tokio::pin!(stop);
    // The running configuration is kept for what a reload compares (agent and
    // telemetry settings); the probes live in the scheduler, so their settings are
    // not kept twice (at 10,000 targets that was some 10 MB).
    let mut current = without_probes(cfg);
    loop {
        tokio::select! {
            // Without a file to watch the channel is closed at once: never poll it.
            Some(why) = reload_rx.recv(), if watcher.is_some() => {
                if let Some(p) = path.as_ref() {
                    let mut running = Running { scheduler: &mut scheduler, persist: persist.as_ref() };
                    reload(p, why, &env, shard, &mut current, &mut running, &state);
                }
            }
            sig = &mut stop => {
                tracing::info!("{sig}: stopping");
                break;
            }
        }
    }

    if let Some(w) = watcher {
        w.abort();
    }
    trim.abort();
    scheduler.stop().await;
    if let Some(saver) = saver {
        saver.abort();
    }
    if let Some(p) = &persist {
        p.save_logged(crate::persist::SAVE_DEADLINE).await;
    }
    if let Some(api) = api {
        api.abort();
    }
    telemetry.shutdown(FLUSH_TIMEOUT).await;
    0
}

/// The endpoints on `agent.listen` (none when it is null), with the security of
/// `agent.web_config`; an error is the exit code.
async fn start_endpoints(
    cfg: &Config,
    telemetry: Arc<Telemetry>,
) -> Result<Option<tokio::task::JoinHandle<()>>, u8> {
    let security = match cfg.agent.web_config.as_deref().map(WebSecurity::load) {
        None => WebSecurity::default(),
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tracing::error!("agent.web_config: {e}");
            return Err(EXIT_CONFIG);
        }
    };
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let limits = crate::api::Limits::default();
    Ok(match cfg.agent.listen {
        Some(addr) => match crate::api::serve_with(addr, telemetry.clone(), security, limits).await
        {
            Ok((bound, task)) => {
                tracing::info!(
                    "serving /metrics /status /schedule /healthz /readyz on {scheme}://{bound}"
                );
                Some(task)
            }
            Err(e) => {
                tracing::error!("cannot listen on {addr}: {e}");
                return Err(EXIT_CONFIG);
            }
        },
        None => None,
    })
}

/// Where the running probes are: the scheduler, and the memory kept on disk.
struct Running<'a> {
    scheduler: &'a mut Scheduler,
    persist: Option<&'a Arc<Persist>>,
}

fn reload(
    path: &Path,
    why: &str,
    env: &ProbeEnv,
    shard: Option<Shard>,
    current: &mut Config,
    running: &mut Running<'_>,
    state: &Arc<State>,
) {
    match setup::load_and_build_shard(path, env, shard) {
        Ok((cfg, probes)) => {
            warn_restart_only(current, &cfg);
            let next = scheduled(&cfg, probes);
            if let Some(p) = running.persist {
                p.adopt(&fingerprinted(&next));
            }
            let changes = running.scheduler.apply(next);
            state.last_reload_success.store(true, Ordering::Relaxed);
            tracing::info!(
                "reloaded {} ({why}): {} added, {} changed, {} removed, {} unchanged",
                path.display(),
                changes.added,
                changes.changed,
                changes.removed,
                changes.kept
            );
            *current = without_probes(cfg);
        }
        Err(e) => {
            state.last_reload_success.store(false, Ordering::Relaxed);
            tracing::error!(
                "reload of {} ({why}) failed; the previous configuration keeps running:\n{e}",
                path.display()
            );
        }
    }
}

fn without_probes(mut cfg: Config) -> Config {
    cfg.probes = Vec::new();
    cfg
}

/// Settings that only take effect at start.
fn warn_restart_only(old: &Config, new: &Config) {
    if old.agent.listen != new.agent.listen
        || old.agent.web_config != new.agent.web_config
        || old.agent.concurrency != new.agent.concurrency
        || old.agent.state_dir != new.agent.state_dir
        || old.telemetry != new.telemetry
    {
        tracing::warn!(
            "agent.listen, agent.web_config, agent.concurrency, agent.state_dir and telemetry changes take effect at the next restart"
        );
    }
}

async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
