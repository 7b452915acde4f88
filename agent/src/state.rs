//! What the agent remembers about each target between runs.
//!
//! The latest outcome and counters derived from outcomes: runs, failures by class,
//! certificate changes. Outcomes arrive complete (the probes' own memory finds
//! changes between runs: `depprobe_probes::memory`) and are never edited here.
//! Everything exported (gauges, `/status`) is derived from this state, so a target
//! removed by a reload simply stops being reported.

use std::collections::BTreeMap;
use std::ops::{Bound, Deref};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use depprobe_probes::{ErrorType, FindingType, Outcome, ProbeMeta};
use opentelemetry::KeyValue;

/// One target's memory.
#[derive(Debug)]
pub struct TargetState {
    /// Position in the configuration (for `/status` order).
    pub order: usize,
    /// Fingerprint of the probe's configuration: unchanged probes keep their state
    /// across reloads.
    pub fingerprint: u64,
    /// The attributes every series of this target carries.
    pub attributes: Arc<[KeyValue]>,
    /// The latest outcome (shared with telemetry, not copied).
    pub last: Option<Arc<Outcome>>,
    /// Runs finished so far.
    pub runs: u64,
    /// When the last run finished (wall clock), or when the target was configured
    /// until its first run finishes: a probe that stops finishing runs shows as
    /// stale, never as healthy.
    pub last_run: SystemTime,
    /// The time between runs, as scheduled (zero until the scheduler sets it).
    pub interval: Duration,
    /// Failures so far, by class.
    pub failures: BTreeMap<ErrorType, u64>,
    /// Leaf certificate changes seen.
    pub cert_changes: u64,
    /// Whether a run has reached TLS and seen a certificate.
    pub saw_certificate: bool,
    /// The last runs, for the status page.
    pub history: crate::history::History,
}

impl TargetState {
    /// A target that has not run yet.
    pub fn new(meta: &ProbeMeta, order: usize, fingerprint: u64) -> Self {
        TargetState {
            order,
            fingerprint,
            attributes: target_attributes(meta),
            last: None,
            runs: 0,
            last_run: SystemTime::now(),
            interval: Duration::ZERO,
            failures: BTreeMap::new(),
            cert_changes: 0,
            saw_certificate: false,
            history: crate::history::History::new(),
        }
    }

    /// Records a run's outcome (complete as the probe made it).
    pub fn record(&mut self, outcome: Outcome) -> Arc<Outcome> {
        self.runs += 1;
        self.last_run = SystemTime::now();
        if let Some(class) = outcome.error_type {
            *self.failures.entry(class).or_default() += 1;
        }
        if outcome.tls.as_ref().and_then(|t| t.leaf()).is_some() {
            self.saw_certificate = true;
        }
        if outcome
            .findings
            .iter()
            .any(|f| f.kind == FindingType::CERT_CHANGED)
        {
            self.cert_changes += 1;
        }
        self.history.push(&outcome);
        let outcome = Arc::new(outcome);
        self.last = Some(outcome.clone());
        outcome
    }
}

/// `probe.name`, `probe.kind`, and `server.address`, `server.port`; or, for a kind
/// that reads a local file, `file.path` (semconv: a file is no server).
pub fn target_attributes(meta: &ProbeMeta) -> Arc<[KeyValue]> {
    let mut v = vec![
        KeyValue::new("probe.name", meta.name.clone()),
        KeyValue::new("probe.kind", meta.kind.as_str()),
    ];
    if depprobe_probes::kinds::is_local(meta.kind.as_str()) {
        v.push(KeyValue::new("file.path", meta.target.address.clone()));
    } else {
        v.push(KeyValue::new("server.address", meta.target.address.clone()));
        v.push(KeyValue::new("server.port", i64::from(meta.target.port)));
    }
    Arc::from(v)
}

/// A target's latest outcome, when its last run finished, and its runs so far.
pub type Latest = (Arc<Outcome>, SystemTime, u64);

/// Every target's state, shared by the scheduler (writer) and the exporters and
/// HTTP endpoints (readers).
#[derive(Debug, Default)]
pub struct State {
    targets: RwLock<BTreeMap<String, TargetState>>,
    ready: AtomicBool,
    /// 1 when the last reload succeeded (or there was none), 0 when it failed.
    pub last_reload_success: AtomicBool,
    /// Spans dropped because the export queue was full.
    pub dropped_spans: AtomicU64,
    /// Failed exports, traces.
    pub trace_export_failures: AtomicU64,
    /// Failed exports, metrics.
    pub metric_export_failures: AtomicU64,
    /// Runs that ended in a panic of the probe (reported as `internal_error`).
    pub probe_panics: AtomicU64,
}

impl State {
    /// An empty state.
    pub fn new() -> Arc<State> {
        let s = State::default();
        s.last_reload_success.store(true, Ordering::Relaxed);
        Arc::new(s)
    }

    /// Makes the set of targets match `wanted` (name -> (meta, order, fingerprint)):
    /// targets whose fingerprint is unchanged keep their state, others start afresh,
    /// removed ones are forgotten.
    pub fn reconcile(&self, wanted: &[(ProbeMeta, u64)]) {
        let Ok(mut targets) = self.targets.write() else {
            return;
        };
        let mut next = BTreeMap::new();
        for (order, (meta, fp)) in wanted.iter().enumerate() {
            let kept = targets.remove(&meta.name).filter(|t| t.fingerprint == *fp);
            let mut t = kept.unwrap_or_else(|| TargetState::new(meta, order, *fp));
            t.order = order;
            next.insert(meta.name.clone(), t);
        }
        *targets = next;
        let all_ran = targets.values().all(|t| t.last.is_some());
        self.ready
            .store(all_ran && !targets.is_empty(), Ordering::Relaxed);
    }

    /// Records an outcome of target `outcome.name`; returns it with memory-based
    /// findings added, or `None` if the target is no longer configured.
    pub fn record(&self, outcome: Outcome) -> Option<(Arc<Outcome>, Arc<[KeyValue]>)> {
        let Ok(mut targets) = self.targets.write() else {
            return None;
        };
        let t = targets.get_mut(&outcome.name)?;
        let attrs = t.attributes.clone();
        let recorded = t.record(outcome);
        if !self.ready.load(Ordering::Relaxed) && targets.values().all(|t| t.last.is_some()) {
            self.ready.store(true, Ordering::Relaxed);
        }
        Some((recorded, attrs))
    }

    /// Sets the time between runs of each named target (for the staleness series).
    pub fn set_intervals(&self, intervals: &[(&str, Duration)]) {
        let Ok(mut targets) = self.targets.write() else {
            return;
        };
        for (name, interval) in intervals {
            if let Some(t) = targets.get_mut(*name) {
                t.interval = *interval;
            }
        }
    }

    /// The latest outcome of every target that has run, with when its last run
    /// finished and how many it has finished, in configuration order.
    pub fn latest(&self) -> Vec<Latest> {
        let Ok(targets) = self.targets.read() else {
            return Vec::new();
        };
        let mut v: Vec<(usize, Latest)> = targets
            .values()
            .filter_map(|t| {
                let last = t.last.clone()?;
                Some((t.order, (last, t.last_run, t.runs)))
            })
            .collect();
        v.sort_by_key(|(order, _)| *order);
        v.into_iter().map(|(_, e)| e).collect()
    }

    /// The status of the latest outcome of `name`.
    pub fn last_status(&self, name: &str) -> Option<depprobe_probes::Status> {
        let targets = self.targets.read().ok()?;
        targets.get(name)?.last.as_ref().map(|o| o.status)
    }

    /// Whether every target has run at least once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The latest outcomes, in configuration order (targets that have not run yet
    /// are left out).
    pub fn outcomes(&self) -> Vec<Outcome> {
        let Ok(targets) = self.targets.read() else {
            return Vec::new();
        };
        let mut v: Vec<(usize, Outcome)> = targets
            .values()
            .filter_map(|t| t.last.as_ref().map(|o| (t.order, Outcome::clone(o))))
            .collect();
        v.sort_by_key(|(order, _)| *order);
        v.into_iter().map(|(_, o)| o).collect()
    }

    /// Calls `f` on every target (read-locked).
    pub fn each(&self, mut f: impl FnMut(&TargetState)) {
        if let Ok(targets) = self.targets.read() {
            targets.values().for_each(&mut f);
        }
    }

    /// Calls `f` on every target whose name is within `names` (read-locked for
    /// this call only), in name order.
    pub fn each_between(&self, names: (Bound<&str>, Bound<&str>), mut f: impl FnMut(&TargetState)) {
        if let Ok(targets) = self.targets.read() {
            targets.range::<str, _>(names).for_each(|(_, t)| f(t));
        }
    }

    /// The name of the `n`-th target (from 1) after `after`, in name order, or
    /// `None` when fewer than `n` follow.
    pub fn name_after(&self, after: Bound<&str>, n: usize) -> Option<String> {
        let targets = self.targets.read().ok()?;
        let (name, _) = targets
            .range::<str, _>((after, Bound::Unbounded))
            .nth(n.checked_sub(1)?)?;
        Some(name.clone())
    }

    /// The number of configured targets.
    pub fn len(&self) -> usize {
        self.targets.read().map(|t| t.len()).unwrap_or(0)
    }

    /// Whether no target is configured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The targets a reader walks: all of them, or those whose names are in a range.
/// `/metrics` is rendered a range at a time, so that the state's lock is held for
/// a part of the targets only and the text goes out in pieces instead of one
/// buffer of every series; name ranges (not positions) keep a reload between two
/// parts from showing a target twice.
#[derive(Clone, Debug)]
pub struct View<'a> {
    state: &'a State,
    names: Option<(Bound<String>, Bound<String>)>,
}

impl<'a> View<'a> {
    /// Every target of `state`.
    pub fn all(state: &'a State) -> View<'a> {
        View { state, names: None }
    }

    /// The targets of `state` whose names are within `names`.
    pub fn between(state: &'a State, names: (Bound<String>, Bound<String>)) -> View<'a> {
        View {
            state,
            names: Some(names),
        }
    }

    /// Calls `f` on every target of the view (read-locked), in name order.
    pub fn each(&self, f: impl FnMut(&TargetState)) {
        match &self.names {
            None => self.state.each(f),
            Some((lo, hi)) => self.state.each_between((as_str(lo), as_str(hi)), f),
        }
    }
}

fn as_str(b: &Bound<String>) -> Bound<&str> {
    match b {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Deref for View<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        self.state
    }
}
