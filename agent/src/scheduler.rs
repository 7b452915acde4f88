//! Every probe on its own interval.
//!
//! Each probe runs in its own task, so a target that hangs never delays another.
//! First runs are spread over the interval by a hash of the probe's name (no
//! thundering herd, and the same spread on every restart); a global semaphore caps
//! the runs in flight; each run is bounded by the probe's deadline, and a guard a
//! little later catches a probe that would ignore it. Every run is supervised
//! ([`crate::supervise`]): a probe that panics reports `internal_error` for that run,
//! is counted in `depprobe_probe_panics_total`, and keeps its schedule. Missed ticks
//! are skipped, not bunched.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use depprobe_probes::{ErrorType, Outcome, Phase, Probe, ProbeError, ProbeMeta, Run, Status};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::state::State;
use crate::supervise;
use crate::telemetry::Telemetry;

/// How long after its deadline a run is abandoned.
const GUARD: Duration = Duration::from_secs(2);

/// Where outcomes go: the state, then telemetry.
pub struct Sink {
    /// Per-target state.
    pub state: Arc<State>,
    /// Exporters.
    pub telemetry: Arc<Telemetry>,
}

impl Sink {
    /// Records one finished run that started `late` after its schedule.
    pub fn record(&self, outcome: Outcome, late: Duration) {
        self.telemetry.record_lateness(late);
        let before = self.state.last_status(&outcome.name);
        let Some((outcome, attrs)) = self.state.record(outcome) else {
            return;
        };
        if before != Some(outcome.status) {
            let class = outcome
                .error_type
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            let was = before.map_or("new", |s| s.as_str());
            match outcome.status {
                Status::Down => tracing::warn!(
                    "{}: {was} -> down{class}: {}",
                    outcome.name,
                    outcome.message
                ),
                Status::Degraded => {
                    tracing::warn!("{}: {was} -> degraded: {}", outcome.name, outcome.message)
                }
                Status::Up => tracing::info!("{}: {was} -> up: {}", outcome.name, outcome.message),
            }
        }
        self.telemetry.record(&outcome, &attrs);
    }
}

/// A probe to schedule.
pub struct Scheduled {
    /// The probe.
    pub probe: Arc<dyn Probe>,
    /// Time between runs.
    pub interval: Duration,
    /// Configuration fingerprint.
    pub fingerprint: u64,
}

struct Running {
    fingerprint: u64,
    handle: JoinHandle<()>,
}

/// The running probe tasks.
pub struct Scheduler {
    permits: Arc<Semaphore>,
    sink: Arc<Sink>,
    running: HashMap<String, Running>,
}

/// What a reconfiguration changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Probes started.
    pub added: usize,
    /// Probes restarted with new settings.
    pub changed: usize,
    /// Probes stopped.
    pub removed: usize,
    /// Probes left running as they were.
    pub kept: usize,
}

impl Scheduler {
    /// A scheduler allowing `concurrency` runs at once.
    pub fn new(concurrency: usize, sink: Arc<Sink>) -> Self {
        Scheduler {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            sink,
            running: HashMap::new(),
        }
    }

    /// Runs exactly `probes`: unchanged ones keep running (and their state), changed
    /// ones restart, others stop or start.
    pub fn apply(&mut self, probes: Vec<Scheduled>) -> Changes {
        let wanted: Vec<(ProbeMeta, u64)> = probes
            .iter()
            .map(|s| (s.probe.meta().clone(), s.fingerprint))
            .collect();
        self.sink.state.reconcile(&wanted);
        let intervals: Vec<(&str, Duration)> = probes
            .iter()
            .map(|s| (s.probe.meta().name.as_str(), s.interval))
            .collect();
        self.sink.state.set_intervals(&intervals);
        let mut changes = Changes::default();
        let mut next = HashMap::new();
        for s in probes {
            let name = s.probe.meta().name.clone();
            match self.running.remove(&name) {
                Some(r) if r.fingerprint == s.fingerprint && !r.handle.is_finished() => {
                    changes.kept += 1;
                    next.insert(name, r);
                }
                old => {
                    if let Some(r) = old {
                        r.handle.abort();
                        changes.changed += 1;
                    } else {
                        changes.added += 1;
                    }
                    let handle = tokio::spawn(probe_loop(
                        s.probe,
                        s.interval,
                        self.permits.clone(),
                        self.sink.clone(),
                    ));
                    next.insert(
                        name,
                        Running {
                            fingerprint: s.fingerprint,
                            handle,
                        },
                    );
                }
            }
        }
        for (_, r) in self.running.drain() {
            r.handle.abort();
            changes.removed += 1;
        }
        self.running = next;
        changes
    }

    /// Stops every probe.
    pub async fn stop(&mut self) {
        for (_, r) in self.running.drain() {
            r.handle.abort();
            let _ = r.handle.await;
        }
    }
}

/// FNV-1a, 64 bits: a stable hash of a probe's name (spread and sharding must not
/// change between runs or builds).
pub fn stable_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where in the interval the probe's first run falls.
pub fn first_run_offset(name: &str, interval: Duration) -> Duration {
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(stable_hash(name)) % nanos) as u64)
}

async fn probe_loop(
    probe: Arc<dyn Probe>,
    interval: Duration,
    permits: Arc<Semaphore>,
    sink: Arc<Sink>,
) {
    let interval = interval.max(Duration::from_millis(1));
    let mut next = Instant::now() + first_run_offset(&probe.meta().name, interval);
    loop {
        tokio::time::sleep_until(next).await;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let late = Instant::now().saturating_duration_since(next);
        let guard = probe.meta().timeout + GUARD;
        let outcome = match tokio::time::timeout(guard, supervise::run(&*probe)).await {
            Ok(finished) => {
                if finished.panicked {
                    sink.state.probe_panics.fetch_add(1, Ordering::Relaxed);
                }
                finished.outcome
            }
            Err(_) => abandoned(probe.meta()),
        };
        drop(permit);
        sink.record(outcome, late);
        next += interval;
        let now = Instant::now();
        if next <= now {
            let behind = now.duration_since(next).as_nanos() / interval.as_nanos() + 1;
            next += interval * u32::try_from(behind).unwrap_or(u32::MAX);
        }
    }
}

/// The outcome of a run that did not return within its deadline plus the guard.
fn abandoned(meta: &ProbeMeta) -> Outcome {
    Run::start(meta).finish(Err(ProbeError::new(
        ErrorType::Timeout,
        Phase::Request,
        format!(
            "the run did not return within its {}s deadline and was abandoned",
            meta.timeout.as_secs()
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_are_spread_and_stable() {
        let i = Duration::from_secs(60);
        let a = first_run_offset("orders-db", i);
        assert_eq!(a, first_run_offset("orders-db", i));
        assert!(a < i);
        let offsets: std::collections::BTreeSet<u64> = (0..100)
            .map(|n| first_run_offset(&format!("probe-{n}"), i).as_secs())
            .collect();
        assert!(offsets.len() > 40, "offsets cluster: {offsets:?}");
    }
}
