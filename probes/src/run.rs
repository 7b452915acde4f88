//! One run of a probe: its deadline, its phase clock, and how it ends as an
//! [`Outcome`].
//!
//! A probe wraps each step in [`Run::phase`], which times it and enforces the run's
//! single deadline; when the deadline passes, the error names the phase that hung.
//! [`Run::finish`] turns the result into an outcome: status, class, message,
//! findings (including `slow` from the latency budgets), with secrets scrubbed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use depprobe_config::{Kind, ProbeConfig, Secret};
use tokio::time::Instant;

use crate::declared::{Attribute, Sample};
use crate::memory::Memory;
use crate::outcome::{
    Finding, FindingType, HttpFacts, Outcome, Problem, Severity, Target, Timings, TlsFacts, scrub,
};
use crate::taxonomy::{ErrorType, Phase, Status};
use crate::trace::TraceContext;

/// Why a run failed: a class, the phase, a message, and what was seen on the way.
#[derive(Clone, Debug)]
pub struct ProbeError {
    /// The failure class.
    pub class: ErrorType,
    /// Where it failed.
    pub phase: Phase,
    /// What happened, for a human (no secrets).
    pub message: String,
    /// Every problem, when several hold (TLS).
    pub problems: Vec<Problem>,
    /// The TLS facts gathered before the failure (the chain, even unverified).
    pub tls: Option<Box<TlsFacts>>,
}

impl ProbeError {
    /// A failure of class `class` in `phase`.
    pub fn new(class: ErrorType, phase: Phase, message: impl Into<String>) -> Self {
        ProbeError {
            class,
            phase,
            message: message.into(),
            problems: Vec::new(),
            tls: None,
        }
    }

    /// Attaches the TLS facts seen before the failure.
    pub fn with_tls(mut self, tls: TlsFacts) -> Self {
        self.tls = Some(Box::new(tls));
        self
    }

    /// The error for a deadline that passed during `phase`.
    pub fn deadline(phase: Phase, budget: Duration) -> Self {
        let budget = humanize(budget);
        match phase {
            Phase::Connect => ProbeError::new(
                ErrorType::ConnectTimeout,
                phase,
                format!("no answer to the TCP connection attempt within {budget}"),
            ),
            Phase::Dns => ProbeError::new(
                ErrorType::Timeout,
                phase,
                format!("the DNS lookup did not finish within {budget}"),
            ),
            Phase::Tls => ProbeError::new(
                ErrorType::Timeout,
                phase,
                format!(
                    "the server accepted the connection but did not complete the TLS handshake within {budget}"
                ),
            ),
            _ => ProbeError::new(
                ErrorType::Timeout,
                phase,
                format!("no answer in phase {phase} within {budget}"),
            ),
        }
    }
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {}: {}", self.class, self.phase, self.message)
    }
}

impl std::error::Error for ProbeError {}

/// "10s", "500ms".
pub fn humanize(d: Duration) -> String {
    if d.as_millis() < 1000 || d.subsec_millis() != 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// What every run of one probe shares: its identity, target, budgets and secrets.
#[derive(Clone, Debug)]
pub struct ProbeMeta {
    /// The probe's name.
    pub name: String,
    /// The probe's kind.
    pub kind: Kind,
    /// What it probes.
    pub target: Target,
    /// The run's deadline.
    pub timeout: Duration,
    /// Latency budgets: `None` is the total.
    pub budgets: Vec<(Option<Phase>, Duration)>,
    /// Secrets written in the configuration, scrubbed from every outcome.
    pub secrets: Vec<Secret>,
    /// The semantic attributes the kind declares for its spans.
    pub attributes: &'static [(&'static str, &'static str)],
    /// What the probe remembers between runs (shared by every run of the probe).
    pub memory: Arc<Mutex<Memory>>,
    /// Whether requests carry the run's `traceparent` (and `tracestate`).
    pub propagate_trace: bool,
    /// The `tracestate` sent beside it.
    pub tracestate: Option<String>,
}

impl ProbeMeta {
    /// The identity of the probe configured by `cfg`, probing `target`.
    pub fn new(cfg: &ProbeConfig, target: Target) -> Self {
        let budgets = cfg
            .latency_budget
            .iter()
            .map(|(name, d)| (Phase::ALL.iter().copied().find(|p| p.as_str() == name), d.0))
            .collect();
        ProbeMeta {
            name: cfg.name.clone(),
            kind: cfg.spec.kind(),
            target,
            timeout: cfg.timeout.0,
            budgets,
            secrets: cfg.spec.inline_secrets(),
            attributes: crate::kinds::find(cfg.spec.kind().as_str()).map_or(&[], |k| k.attributes),
            memory: Arc::default(),
            propagate_trace: cfg.propagate_trace,
            tracestate: cfg.tracestate.clone(),
        }
    }
}

impl ProbeMeta {
    /// Replaces what the probe remembers (a memory kept across a restart).
    pub fn seed(&self, memory: Memory) {
        if let Ok(mut m) = self.memory.lock() {
            *m = memory;
        }
    }

    /// A copy of what the probe remembers now.
    pub fn snapshot(&self) -> Memory {
        self.memory.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The declared attributes, with those a run set in their place.
    fn declared_with(&self, mut set: Vec<Attribute>) -> Vec<Attribute> {
        let declared = self
            .attributes
            .iter()
            .filter(|(k, _)| !set.iter().any(|(s, _)| s == k))
            .map(|(k, v)| (*k, (*v).to_owned()));
        let mut out: Vec<Attribute> = declared.collect();
        out.append(&mut set);
        out
    }
}

/// A run in progress.
pub struct Run<'m> {
    meta: &'m ProbeMeta,
    started: Instant,
    wall: SystemTime,
    deadline: Instant,
    timings: Timings,
    secrets: Vec<Secret>,
    /// TLS facts, once a handshake was attempted.
    pub tls: Option<TlsFacts>,
    /// The last HTTP answer.
    pub http: Option<HttpFacts>,
    /// Findings so far.
    pub findings: Vec<Finding>,
    /// Kind-specific facts.
    pub details: BTreeMap<String, serde_json::Value>,
    /// Values of the kind's declared metric families.
    pub samples: Vec<Sample>,
    /// Semantic attributes this run sets (they take the place of the declared ones).
    attributes: Vec<Attribute>,
    /// The identity of the run's span, sent to targets that take trace context.
    pub trace: TraceContext,
}

impl<'m> Run<'m> {
    /// Starts a run now, with the probe's timeout as the deadline.
    pub fn start(meta: &'m ProbeMeta) -> Self {
        let started = Instant::now();
        Run {
            meta,
            started,
            wall: SystemTime::now(),
            deadline: started + meta.timeout,
            timings: Timings::default(),
            secrets: Vec::new(),
            tls: None,
            http: None,
            findings: Vec::new(),
            details: BTreeMap::new(),
            samples: Vec::new(),
            attributes: Vec::new(),
            trace: TraceContext::random(),
        }
    }

    /// The `traceparent` and `tracestate` headers for this run's requests, unless
    /// the probe turned trace context off.
    pub fn trace_headers(&self) -> Vec<(&'static str, String)> {
        if !self.meta.propagate_trace {
            return Vec::new();
        }
        let mut out = vec![("traceparent", self.trace.traceparent())];
        if let Some(state) = &self.meta.tracestate {
            out.push(("tracestate", state.clone()));
        }
        out
    }

    /// Sets a semantic attribute of this run's span (`db.system.name` when it
    /// depends on the server met), in place of the kind's declared one.
    pub fn attribute(&mut self, key: &'static str, value: impl Into<String>) {
        self.attributes.retain(|(k, _)| *k != key);
        self.attributes.push((key, value.into()));
    }

    /// Wall-clock time at the start of the run (certificate validity is judged at it).
    pub fn now(&self) -> SystemTime {
        self.wall
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Remembers a secret read during this run so that it is scrubbed from the outcome.
    pub fn secret(&mut self, s: &Secret) {
        self.secrets.push(s.clone());
    }

    /// Every secret of the run: those written in the configuration and those read
    /// for it, for the texts that are cut before they reach the outcome.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.meta.secrets.iter().chain(self.secrets.iter())
    }

    /// Runs `fut` as `phase`: timed, and cut at the deadline.
    pub async fn phase<T, F>(&mut self, phase: Phase, fut: F) -> Result<T, ProbeError>
    where
        F: Future<Output = Result<T, ProbeError>>,
    {
        let start = Instant::now();
        let r = tokio::time::timeout_at(self.deadline, fut).await;
        self.timings.add(phase, start.elapsed());
        match r {
            Ok(r) => r,
            Err(_) => Err(ProbeError::deadline(phase, self.meta.timeout)),
        }
    }

    /// Remembers the server's `role` (`primary`, `standby`, ...); a change since the
    /// last run that learned it is a `role_changed` finding.
    pub fn role(&mut self, role: &str) {
        let changed = match self.meta.memory.lock() {
            Ok(mut memory) => memory.role_change(role),
            Err(_) => None,
        };
        self.findings.extend(changed);
    }

    /// Records a phase measured elsewhere.
    pub fn record(&mut self, phase: Phase, d: Duration) {
        self.timings.add(phase, d);
    }

    /// Ends the run: `Ok(message)` when the target works, or the error.
    pub fn finish(mut self, result: Result<String, ProbeError>) -> Outcome {
        self.timings.total = self.started.elapsed();
        self.budget_findings();
        let result = result.map_err(|mut e| {
            if let Some(tls) = e.tls.take() {
                self.tls = Some(*tls);
            }
            e
        });
        self.certificate_changes();
        let (status, error_type, phase, mut message, problems) = match result {
            Ok(msg) => {
                let worst = self
                    .findings
                    .iter()
                    .filter(|f| f.severity > Severity::Notice)
                    .max_by_key(|f| f.severity)
                    .map(|f| f.message.clone());
                match worst {
                    Some(w) => (Status::Degraded, None, None, w, Vec::new()),
                    None => (Status::Up, None, None, msg, Vec::new()),
                }
            }
            Err(e) => {
                let msg = format!("{}; {}", e.message, e.class.hint());
                (Status::Down, Some(e.class), Some(e.phase), msg, e.problems)
            }
        };
        // Secrets go before the message is cut: a secret cut in two is no longer
        // found, and its first half would stay.
        let secrets: Vec<&str> = (self.meta.secrets.iter().chain(self.secrets.iter()))
            .map(Secret::expose)
            .collect();
        scrub(&mut message, &secrets);
        if message.len() > 1000 {
            let mut cut = 1000;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let mut outcome = Outcome {
            name: self.meta.name.clone(),
            kind: self.meta.kind,
            target: self.meta.target.clone(),
            status,
            error_type,
            phase,
            message,
            started_at: self.wall,
            timings: self.timings,
            findings: self.findings,
            problems,
            tls: self.tls,
            http: self.http,
            details: self.details,
            attributes: self.meta.declared_with(self.attributes),
            samples: self.samples,
            trace: Some(self.trace),
        };
        outcome.scrub(&secrets);
        outcome
    }

    /// Compares the leaf certificate with the last run's (see [`Memory`]).
    fn certificate_changes(&mut self) {
        let Some(tls) = &self.tls else { return };
        if let Ok(mut memory) = self.meta.memory.lock() {
            self.findings.extend(memory.leaf_changes(tls));
        }
    }

    fn budget_findings(&mut self) {
        for (phase, budget) in &self.meta.budgets {
            let took = match phase {
                None => Some(self.timings.total),
                Some(p) => self.timings.get(*p),
            };
            let Some(took) = took else { continue };
            if took > *budget {
                let name = phase.map_or("total", Phase::as_str);
                self.findings.push(
                    Finding::new(
                        FindingType::SLOW,
                        Severity::Warning,
                        format!(
                            "{name} took {} ms, over its budget of {}",
                            took.as_millis(),
                            humanize(*budget)
                        ),
                    )
                    .with("phase", name)
                    .with("took_ms", took.as_millis() as u64)
                    .with("budget_ms", budget.as_millis() as u64),
                );
            }
        }
    }
}
