//! One span per run: a root `probe <kind>` with a child per phase.
//!
//! Names, kinds and attributes follow the OpenTelemetry semantic conventions
//! (docs/telemetry.md). The root is the run (CLIENT, or INTERNAL for a kind that
//! reads a local file); the `request` or `query` phase is the client call itself,
//! a CLIENT span named and attributed as semconv names an HTTP request (`GET`), a
//! database operation (`SELECT app`, `PING`) or an RPC
//! (`grpc.health.v1.Health/Check`), when the kind sets those attributes. The root
//! repeats the call's attributes, so a query on the run finds them too.
//!
//! A run is over before its span is made, so spans are built directly from the
//! outcome with the run's own timestamps, then pass through a bounded queue to an
//! export task. A full queue drops spans and counts them; a failing collector never
//! blocks or delays probing, is logged once per minute, and export resumes by itself.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use depprobe_probes::outcome::rfc3339;
use depprobe_probes::{Outcome, Phase, Status as ProbeStatus};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter, SpanLinks,
};
use tokio::sync::mpsc;

use crate::state::State;

/// Spans waiting for export at most; past this, new spans are dropped and counted.
pub const QUEUE_CAPACITY: usize = 8192;
/// Spans per export request at most.
pub const BATCH: usize = 512;
/// How often a partial batch is exported.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// The spans of one run: a root `probe <kind>` and a child per phase.
pub fn spans(
    outcome: &Outcome,
    target: &[KeyValue],
    scope: &InstrumentationScope,
    ids: &RandomIdGenerator,
) -> Vec<SpanData> {
    // The run's own identity, which the target got as `traceparent`.
    let (trace_id, root_id) = match &outcome.trace {
        Some(t) => (
            TraceId::from_bytes(t.trace_id),
            SpanId::from_bytes(t.span_id),
        ),
        None => (ids.new_trace_id(), ids.new_span_id()),
    };
    let start = outcome.started_at;
    let end = start + outcome.timings.total;
    let context = |id| {
        SpanContext::new(
            trace_id,
            id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    };
    let attributes = root_attributes(outcome, target);
    let events = events(outcome, end);
    let down = outcome.status == ProbeStatus::Down;
    let status = if down {
        Status::error(outcome.message.clone())
    } else {
        Status::Ok
    };
    let mut out = Vec::with_capacity(1 + outcome.timings.phases.len());
    out.push(SpanData {
        span_context: context(root_id),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: if depprobe_probes::kinds::is_local(outcome.kind.as_str()) {
            SpanKind::Internal
        } else {
            SpanKind::Client
        },
        name: Cow::Owned(format!("probe {}", outcome.kind.as_str())),
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: span_events(events),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    });

    out.extend(phase_spans(outcome, target, root_id, &context, scope, ids));
    out
}

/// The semconv name of the client call whose attributes are `attributes`: the HTTP
/// method, the full RPC method, `{db.operation.name} {db.namespace}` (or the part
/// that is known, or `db.system.name`); `None` when the run is no such call.
fn call_name(attributes: &[(&'static str, String)]) -> Option<String> {
    let get = |k: &str| {
        attributes
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(method) = get("http.request.method") {
        return Some(if method == "_OTHER" { "HTTP" } else { method }.to_owned());
    }
    if let Some(method) = get("rpc.method") {
        return Some(method.to_owned());
    }
    // A numeric namespace (a database index) says nothing in a name: semconv keeps
    // it out.
    let namespace = get("db.namespace").filter(|ns| !ns.bytes().all(|b| b.is_ascii_digit()));
    match (get("db.operation.name"), namespace) {
        (Some(op), Some(ns)) => Some(format!("{op} {ns}")),
        (Some(op), None) => Some(op.to_owned()),
        (None, _) => get("db.system.name").map(str::to_owned),
    }
}

/// The root span's attributes: the target's, the run's status and class, the TLS
/// session, the HTTP answer, and the attributes the kind declares.
fn root_attributes(outcome: &Outcome, target: &[KeyValue]) -> Vec<KeyValue> {
    let mut attributes: Vec<KeyValue> = target.to_vec();
    attributes.push(KeyValue::new("probe.status", outcome.status.as_str()));
    if let Some(class) = outcome.error_type {
        attributes.push(KeyValue::new("error.type", class.as_str()));
    }
    if let Some(phase) = outcome.phase {
        attributes.push(KeyValue::new("probe.phase", phase.as_str()));
    }
    if let Some(tls) = &outcome.tls {
        if let Some(v) = &tls.version {
            attributes.push(KeyValue::new("tls.protocol.name", "tls"));
            attributes.push(KeyValue::new("tls.protocol.version", v.clone()));
        }
        if let Some(c) = &tls.cipher {
            attributes.push(KeyValue::new(
                "tls.cipher",
                depprobe_probes::semconv::iana_cipher(c),
            ));
        }
        if let Some(leaf) = tls.leaf() {
            attributes.push(KeyValue::new("tls.server.subject", leaf.subject.clone()));
            attributes.push(KeyValue::new("tls.server.issuer", leaf.issuer.clone()));
            attributes.push(KeyValue::new(
                "tls.server.not_after",
                rfc3339(leaf.not_after),
            ));
            attributes.push(KeyValue::new(
                "tls.server.not_before",
                rfc3339(leaf.not_before),
            ));
            attributes.push(KeyValue::new(
                "tls.server.hash.sha256",
                leaf.sha256.to_uppercase(),
            ));
        }
    }
    if let Some(http) = &outcome.http {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(http.status_code),
        ));
    }
    for (key, value) in &outcome.attributes {
        attributes.push(KeyValue::new(*key, value.clone()));
    }

    attributes
}

/// Findings and problems, as events at the end of the run.
fn events(outcome: &Outcome, end: SystemTime) -> Vec<Event> {
    let mut events = Vec::new();
    for f in &outcome.findings {
        let severity = f.severity.as_str();
        events.push(Event::new(
            f.kind.as_str(),
            end,
            vec![
                KeyValue::new("probe.finding.severity", severity),
                KeyValue::new("probe.finding.message", f.message.clone()),
            ],
            0,
        ));
    }
    for p in &outcome.problems {
        events.push(Event::new(
            "problem",
            end,
            vec![
                KeyValue::new("error.type", p.class.as_str()),
                KeyValue::new("probe.problem.message", p.message.clone()),
            ],
            0,
        ));
    }

    events
}

/// One child span per phase, laid end to end from the start of the run; the
/// `request` or `query` phase of a client call is that call's CLIENT span.
fn phase_spans(
    outcome: &Outcome,
    target: &[KeyValue],
    root_id: SpanId,
    context: &dyn Fn(SpanId) -> SpanContext,
    scope: &InstrumentationScope,
    ids: &RandomIdGenerator,
) -> Vec<SpanData> {
    let down = outcome.status == ProbeStatus::Down;
    let mut out = Vec::with_capacity(outcome.timings.phases.len());
    let start = outcome.started_at;
    let mut at = start;
    let call = call_name(&outcome.attributes);
    for (phase, d) in &outcome.timings.phases {
        let failed_here = down && outcome.phase == Some(*phase);
        let mut attrs = vec![KeyValue::new("probe.phase", phase.as_str())];
        let is_call = matches!(phase, Phase::Request | Phase::Query) && call.is_some();
        if is_call {
            attrs.extend(
                target
                    .iter()
                    .filter(|kv| kv.key.as_str().starts_with("server."))
                    .cloned(),
            );
            for (key, value) in &outcome.attributes {
                attrs.push(KeyValue::new(*key, value.clone()));
            }
            if let Some(http) = &outcome.http {
                attrs.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(http.status_code),
                ));
            }
        }
        if failed_here && let Some(class) = outcome.error_type {
            attrs.push(KeyValue::new("error.type", class.as_str()));
        }
        let name = match (&call, is_call) {
            (Some(call), true) => Cow::Owned(call.clone()),
            _ => Cow::Borrowed(phase.as_str()),
        };
        out.push(SpanData {
            span_context: context(ids.new_span_id()),
            parent_span_id: root_id,
            parent_span_is_remote: false,
            span_kind: if is_call {
                SpanKind::Client
            } else {
                SpanKind::Internal
            },
            name,
            start_time: at,
            end_time: at + *d,
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if failed_here {
                Status::error(outcome.message.clone())
            } else {
                Status::Unset
            },
            instrumentation_scope: scope.clone(),
        });
        at += *d;
    }
    out
}

fn span_events(events: Vec<Event>) -> SpanEvents {
    let mut e = SpanEvents::default();
    e.events = events;
    e
}

/// The sending side of the span queue.
#[derive(Clone)]
pub struct SpanQueue {
    tx: mpsc::Sender<SpanData>,
    state: Arc<State>,
}

impl SpanQueue {
    /// Queues `spans`, dropping (and counting) those that do not fit.
    pub fn push(&self, spans: Vec<SpanData>) {
        for s in spans {
            if self.tx.try_send(s).is_err() {
                self.state.dropped_spans.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts the export task; it ends, after a last export, when every queue handle
/// is dropped.
pub fn start<E: SpanExporter + 'static>(
    exporter: E,
    state: Arc<State>,
    timeout: Duration,
    endpoint: String,
) -> (SpanQueue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let task = tokio::spawn(export_loop(exporter, rx, state.clone(), timeout, endpoint));
    (SpanQueue { tx, state }, task)
}

async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<SpanData>,
    state: Arc<State>,
    timeout: Duration,
    endpoint: String,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
    let mut log = FailureLog::new("traces", endpoint);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let closed = tokio::select! {
            got = rx.recv() => match got {
                Some(s) => {
                    batch.push(s);
                    if batch.len() < BATCH {
                        continue;
                    }
                    false
                }
                None => true,
            },
            _ = tick.tick() => false,
        };
        if !batch.is_empty() {
            let sent = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            let n = sent.len() as u64;
            let result = tokio::time::timeout(timeout, exporter.export(sent)).await;
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {}s", timeout.as_secs())),
            };
            match error {
                None => log.success(),
                Some(e) => {
                    state.trace_export_failures.fetch_add(1, Ordering::Relaxed);
                    state.dropped_spans.fetch_add(n, Ordering::Relaxed);
                    log.failure(&e, state.dropped_spans.load(Ordering::Relaxed));
                }
            }
        }
        if closed {
            break;
        }
    }
}

/// One log line per failing exporter per minute, and one when it recovers.
pub struct FailureLog {
    signal: &'static str,
    endpoint: String,
    failing_since: Option<Instant>,
    last_line: Option<Instant>,
    failures: u64,
}

/// How often a still-failing exporter is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

impl FailureLog {
    /// A log for `signal` exports to `endpoint`.
    pub fn new(signal: &'static str, endpoint: String) -> Self {
        FailureLog {
            signal,
            endpoint,
            failing_since: None,
            last_line: None,
            failures: 0,
        }
    }

    /// An export failed with `error`.
    pub fn failure(&mut self, error: &str, dropped: u64) {
        self.failures += 1;
        let now = Instant::now();
        self.failing_since.get_or_insert(now);
        if self
            .last_line
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            self.last_line = Some(now);
            tracing::warn!(
                "OTLP {} export to {} failing: {error} ({} failures so far, {dropped} items dropped); probing continues",
                self.signal,
                self.endpoint,
                self.failures
            );
        }
    }

    /// An export succeeded.
    pub fn success(&mut self) {
        if let Some(since) = self.failing_since.take() {
            self.last_line = None;
            tracing::info!(
                "OTLP {} export to {} resumed after {}s",
                self.signal,
                self.endpoint,
                since.elapsed().as_secs()
            );
        }
    }
}
