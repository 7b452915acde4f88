//! The metrics, defined once for OTLP and Prometheus.
//!
//! Every metric is a [`Family`]: an OpenTelemetry name, unit, description, type, and
//! a function that reads its series off the agent's state. The OTLP pipeline
//! registers each family as an observable instrument of the OpenTelemetry SDK; the
//! Prometheus endpoint renders the same families straight to the text format
//! ([`super::prom`]), with the standard OpenTelemetry-to-Prometheus translation of
//! names (dots to underscores, `_seconds` for the unit `s`, `_total` for counters),
//! without materialising every series in the SDK first (at 10,000 targets that cost
//! some 300 MB per scrape).
//!
//! Names are chosen so that the translation gives blackbox_exporter's names where
//! one exists (`probe.success` -> `probe_success`, `probe.duration` in seconds ->
//! `probe_duration_seconds`, ...). Series are observed from the state at collection
//! time, so a target removed by a reload stops being reported. Per-target series are
//! gauges of the last run (as blackbox_exporter's), not histograms: a histogram per
//! target and phase is some 80 series per target, which at thousands of targets costs
//! the agent and the user's Prometheus far more than it tells; the distribution of
//! run and phase durations is in the spans (one per run, a child per phase). Only the
//! agent's own schedule lateness is a histogram.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use depprobe_probes::declared::{Instrument, MetricDecl, Number};
use depprobe_probes::outcome::{CertFacts, seconds_between};
use depprobe_probes::{Outcome, Status};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};

use crate::state::{State, TargetState, View};

/// Histogram boundaries for schedule lateness, in seconds (100 µs to 1 s).
pub const LATENESS_BOUNDARIES: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The type of a family: gauge or counter.
pub type Type = Instrument;

/// Receives one series: its target (whose attributes it carries first), its
/// value, and its own extra attributes.
pub type Emit<'a> = dyn FnMut(Option<&TargetState>, f64, &[KeyValue]) + 'a;

/// One metric.
pub struct Family {
    /// OpenTelemetry name.
    pub name: &'static str,
    /// UCUM unit (`s`, `1`, `{run}`, ...); every family has one.
    pub unit: Option<&'static str>,
    /// Help text.
    pub description: &'static str,
    /// Gauge or counter.
    pub kind: Type,
    /// Integer or float.
    pub number: Number,
    /// Where its series come from.
    pub source: Source,
}

/// Where a family's series come from.
pub enum Source {
    /// Read off the agent's state (all its targets, or a part: [`View`]).
    State(fn(&View<'_>, SystemTime, &mut Emit<'_>)),
    /// The samples of a family a probe kind declares, from each target's last run.
    Declared(&'static MetricDecl),
}

impl Family {
    /// The family a probe kind declares.
    pub fn declared(decl: &'static MetricDecl) -> Family {
        Family {
            name: decl.name,
            unit: decl.unit,
            description: decl.description,
            kind: decl.instrument,
            number: decl.number,
            source: Source::Declared(decl),
        }
    }

    /// Emits every series of the family, as seen at `now`.
    pub fn observe(&self, state: &View<'_>, now: SystemTime, emit: &mut Emit<'_>) {
        match self.source {
            Source::State(read) => read(state, now, emit),
            Source::Declared(decl) => observe_declared(decl, state, now, emit),
        }
    }
}

/// Every family: the agent's own and every kind's, ordered by name.
pub fn families() -> &'static [Family] {
    static ALL: OnceLock<Vec<Family>> = OnceLock::new();
    ALL.get_or_init(|| {
        let declared = depprobe_probes::kinds::metric_families()
            .into_iter()
            .map(Family::declared);
        let mut all: Vec<Family> = declared.chain(COMMON.iter().map(Family::copy_of)).collect();
        all.sort_by_key(|f| f.name);
        all
    })
}

impl Family {
    fn copy_of(f: &Family) -> Family {
        Family {
            name: f.name,
            unit: f.unit,
            description: f.description,
            kind: f.kind,
            number: f.number,
            source: match f.source {
                Source::State(read) => Source::State(read),
                Source::Declared(d) => Source::Declared(d),
            },
        }
    }
}

/// The samples of `decl` in every target's last outcome; instants become the time
/// left until them.
fn observe_declared(decl: &MetricDecl, s: &View<'_>, now: SystemTime, emit: &mut Emit<'_>) {
    let now_s = seconds_between(SystemTime::UNIX_EPOCH, now);
    s.each(|t| {
        let Some(last) = &t.last else { return };
        for sample in last.samples.iter().filter(|x| x.metric == decl.name) {
            let value = if decl.until_now {
                sample.value - now_s
            } else {
                sample.value
            };
            let attrs: Vec<KeyValue> = sample
                .attributes
                .iter()
                .map(|(k, v)| KeyValue::new(*k, v.clone()))
                .collect();
            emit(Some(t), value, &attrs);
        }
    });
}

/// Calls `f` with the last outcome of every target that has run.
fn each_last(
    s: &View<'_>,
    emit: &mut Emit<'_>,
    f: impl Fn(&Outcome, &mut dyn FnMut(f64, &[KeyValue])),
) {
    s.each(|t| {
        if let Some(last) = &t.last {
            f(last, &mut |v, extra| emit(Some(t), v, extra));
        }
    });
}

/// Emits `value` of every certificate of each target's last chain, with the
/// certificate's position, subject, issuer and fingerprint.
fn each_certificate(s: &View<'_>, emit: &mut Emit<'_>, value: impl Fn(&CertFacts) -> f64) {
    each_last(s, emit, |l, e| {
        let Some(tls) = &l.tls else { return };
        for (i, c) in tls.chain.iter().enumerate() {
            e(
                value(c),
                &[
                    KeyValue::new(
                        "probe.tls.cert.position",
                        depprobe_probes::transport::chain::position(i),
                    ),
                    KeyValue::new("probe.tls.cert.subject", c.subject.clone()),
                    KeyValue::new("probe.tls.cert.issuer", c.issuer.clone()),
                    KeyValue::new("probe.tls.cert.sha256", c.sha256.clone()),
                ],
            );
        }
    })
}

fn b(v: bool) -> f64 {
    if v { 1.0 } else { 0.0 }
}

/// The families the agent reads off its state (see [`families`] for all).
const COMMON: &[Family] = &[
    Family {
        name: "depprobe.config.last_reload_success",
        unit: Some("1"),
        description: "1 if the last configuration reload succeeded, 0 if it failed (the old one keeps running).",
        kind: Type::Gauge,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            emit(None, b(s.last_reload_success.load(Ordering::Relaxed)), &[])
        }),
    },
    Family {
        name: "depprobe.probe.panics",
        unit: Some("{panic}"),
        description: "Runs that ended in a panic of the probe, reported as internal_error (a bug in depprobe).",
        kind: Type::Counter,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            emit(None, s.probe_panics.load(Ordering::Relaxed) as f64, &[])
        }),
    },
    Family {
        name: "depprobe.telemetry.dropped",
        unit: Some("{item}"),
        description: "Telemetry items dropped because an export queue was full.",
        kind: Type::Counter,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            emit(
                None,
                s.dropped_spans.load(Ordering::Relaxed) as f64,
                &[KeyValue::new("depprobe.telemetry.signal", "traces")],
            )
        }),
    },
    Family {
        name: "depprobe.telemetry.export_failures",
        unit: Some("{export}"),
        description: "Failed OTLP exports.",
        kind: Type::Counter,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            emit(
                None,
                s.metric_export_failures.load(Ordering::Relaxed) as f64,
                &[KeyValue::new("depprobe.telemetry.signal", "metrics")],
            );
            emit(
                None,
                s.trace_export_failures.load(Ordering::Relaxed) as f64,
                &[KeyValue::new("depprobe.telemetry.signal", "traces")],
            );
        }),
    },
    Family {
        name: "probe.duration",
        unit: Some("s"),
        description: "Duration of the last run.",
        kind: Type::Gauge,
        number: Number::F64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| e(l.timings.total.as_secs_f64(), &[]))
        }),
    },
    Family {
        name: "probe.error.info",
        unit: Some("1"),
        description: "1 while the target is down, with the failure class and the phase.",
        kind: Type::Gauge,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| {
                if let (Some(class), Some(phase)) = (l.error_type, l.phase) {
                    e(
                        1.0,
                        &[
                            KeyValue::new("error.type", class.as_str()),
                            KeyValue::new("probe.phase", phase.as_str()),
                        ],
                    );
                }
            })
        }),
    },
    Family {
        name: "probe.failures",
        unit: Some("{failure}"),
        description: "Failed runs, by failure class.",
        kind: Type::Counter,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            s.each(|t| {
                for (class, n) in &t.failures {
                    emit(
                        Some(t),
                        *n as f64,
                        &[KeyValue::new("error.type", class.as_str())],
                    );
                }
            })
        }),
    },
    Family {
        name: "probe.findings",
        unit: Some("{finding}"),
        description: "Current findings of the target, by type and severity.",
        kind: Type::Gauge,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| {
                let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
                for f in &l.findings {
                    let severity = f.severity.as_str();
                    *counts.entry((f.kind.as_str(), severity)).or_default() += 1;
                }
                for ((kind, severity), n) in counts {
                    e(
                        n as f64,
                        &[
                            KeyValue::new("probe.finding.type", kind),
                            KeyValue::new("probe.finding.severity", severity),
                        ],
                    );
                }
            })
        }),
    },
    Family {
        name: "probe.http.status_code",
        unit: Some("1"),
        description: "Status code of the last HTTP answer.",
        kind: Type::Gauge,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| {
                if let Some(h) = &l.http {
                    e(f64::from(h.status_code), &[]);
                }
            })
        }),
    },
    Family {
        name: "probe.phase.duration",
        unit: Some("s"),
        description: "Duration of each phase of the last run.",
        kind: Type::Gauge,
        number: Number::F64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| {
                for (phase, d) in &l.timings.phases {
                    e(
                        d.as_secs_f64(),
                        &[KeyValue::new("probe.phase", phase.as_str())],
                    );
                }
            })
        }),
    },
    Family {
        name: "probe.interval",
        unit: Some("s"),
        description: "Time between runs of the target, as scheduled.",
        kind: Type::Gauge,
        number: Number::F64,
        source: Source::State(|s, _, emit| {
            s.each(|t| emit(Some(t), t.interval.as_secs_f64(), &[]))
        }),
    },
    Family {
        name: "probe.last_run.timestamp",
        unit: Some("s"),
        description: "When the target's last run finished (or it was configured, before its first), unix seconds: compare with probe_interval_seconds to see a stale target.",
        kind: Type::Gauge,
        number: Number::F64,
        source: Source::State(|s, _, emit| {
            s.each(|t| {
                emit(
                    Some(t),
                    seconds_between(SystemTime::UNIX_EPOCH, t.last_run),
                    &[],
                )
            })
        }),
    },
    Family {
        name: "probe.runs",
        unit: Some("{run}"),
        description: "Runs of the target finished since it was configured.",
        kind: Type::Counter,
        number: Number::U64,
        source: Source::State(|s, _, emit| s.each(|t| emit(Some(t), t.runs as f64, &[]))),
    },
    Family {
        name: "probe.ssl.earliest_cert_expiry",
        unit: Some("s"),
        description: "Earliest not_after of the presented chain, unix seconds.",
        kind: Type::Gauge,
        number: Number::F64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| {
                if let Some(at) = l.tls.as_ref().and_then(|tls| tls.earliest_not_after()) {
                    e(seconds_between(SystemTime::UNIX_EPOCH, at), &[]);
                }
            })
        }),
    },
    Family {
        name: "probe.status",
        unit: Some("1"),
        description: "1 on the current status of the target (up, degraded, down), 0 on the others.",
        kind: Type::Gauge,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| {
                for status in [Status::Degraded, Status::Down, Status::Up] {
                    e(
                        b(l.status == status),
                        &[KeyValue::new("probe.status", status.as_str())],
                    );
                }
            })
        }),
    },
    Family {
        name: "probe.success",
        unit: Some("1"),
        description: "1 if the last run succeeded (up or degraded), 0 if it failed.",
        kind: Type::Gauge,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| e(b(l.status != Status::Down), &[]))
        }),
    },
    Family {
        name: "probe.tls.cert.changes",
        unit: Some("{change}"),
        description: "Changes of the leaf certificate seen between runs.",
        kind: Type::Counter,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            s.each(|t| {
                if t.saw_certificate {
                    emit(Some(t), t.cert_changes as f64, &[]);
                }
            })
        }),
    },
    Family {
        name: "probe.tls.cert.lifetime",
        unit: Some("s"),
        description: "Validity period (not_after - not_before) of each presented certificate.",
        kind: Type::Gauge,
        number: Number::F64,
        source: Source::State(|s, _, emit| {
            each_certificate(s, emit, |c| {
                depprobe_probes::transport::chain::lifetime(c).as_secs_f64()
            })
        }),
    },
    Family {
        name: "probe.tls.cert.not_before",
        unit: Some("s"),
        description: "Start of validity (not_before) of each presented certificate, unix seconds.",
        kind: Type::Gauge,
        number: Number::F64,
        source: Source::State(|s, _, emit| {
            each_certificate(s, emit, |c| {
                seconds_between(SystemTime::UNIX_EPOCH, c.not_before)
            })
        }),
    },
    Family {
        name: "probe.tls.cert.time_left",
        unit: Some("s"),
        description: "Time left before each presented certificate expires.",
        kind: Type::Gauge,
        number: Number::F64,
        source: Source::State(|s, now, emit| each_certificate(s, emit, |c| c.seconds_left(now))),
    },
    Family {
        name: "probe.tls.version_info",
        unit: Some("1"),
        description: "1, with the negotiated TLS version.",
        kind: Type::Gauge,
        number: Number::U64,
        source: Source::State(|s, _, emit| {
            each_last(s, emit, |l, e| {
                if let Some(v) = l.tls.as_ref().and_then(|tls| tls.version.as_ref()) {
                    e(1.0, &[KeyValue::new("tls.protocol.version", v.clone())]);
                }
            })
        }),
    },
];

/// Which part of the targets a meter provider observes: those whose configuration
/// order is `index` modulo `of`; the agent's own series go with part 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This part.
    pub index: usize,
    /// How many parts.
    pub of: usize,
}

impl Shard {
    /// Whether a series of `target` (`None`: the agent's own) belongs to this part.
    pub fn holds(self, target: Option<&TargetState>) -> bool {
        match target {
            None => self.index == 0,
            Some(t) => t.order % self.of.max(1) == self.index,
        }
    }
}

/// The instruments recorded as runs finish; the observed ones live in the meter.
#[derive(Default)]
pub struct Instruments {
    lateness: Option<Histogram<f64>>,
}

impl Instruments {
    /// Registers every family of type `kind` on `meter` as an observable instrument
    /// reading the series of `shard` off `state`, and with the counters of part 0
    /// the lateness histogram.
    pub fn install(meter: &Meter, state: Arc<State>, shard: Shard, kind: Type) -> Instruments {
        for f in families().iter().filter(|f| f.kind == kind) {
            register(meter, f, state.clone(), shard);
        }
        Instruments {
            lateness: (shard.index == 0 && kind == Type::Counter).then(|| {
                meter
                    .f64_histogram("depprobe.schedule.lateness")
                    .with_unit("s")
                    .with_description("How late runs started against their schedule.")
                    .with_boundaries(LATENESS_BOUNDARIES.to_vec())
                    .build()
            }),
        }
    }

    /// Records how late a run started.
    pub fn record_lateness(&self, seconds: f64) {
        if let Some(h) = &self.lateness {
            h.record(seconds, &[]);
        }
    }
}

/// Target attributes first, then the series' own.
fn attributes(t: Option<&TargetState>, extra: &[KeyValue]) -> Vec<KeyValue> {
    let target = t.map(|t| &t.attributes[..]).unwrap_or(&[]);
    let mut v = Vec::with_capacity(target.len() + extra.len());
    v.extend_from_slice(target);
    v.extend_from_slice(extra);
    v
}

fn register(meter: &Meter, f: &'static Family, state: Arc<State>, shard: Shard) {
    macro_rules! build {
        ($builder:ident, $conv:expr) => {{
            let mut b = meter.$builder(f.name).with_description(f.description);
            if let Some(u) = f.unit {
                b = b.with_unit(u);
            }
            b.with_callback(move |o| {
                f.observe(&View::all(&state), SystemTime::now(), &mut |t, v, extra| {
                    if shard.holds(t) {
                        o.observe($conv(v), &attributes(t, extra))
                    }
                })
            })
            .build();
        }};
    }
    let to_u64 = |v: f64| v.max(0.0) as u64;
    let to_f64 = |v: f64| v;
    match (f.kind, f.number) {
        (Type::Gauge, Number::U64) => build!(u64_observable_gauge, to_u64),
        (Type::Gauge, Number::F64) => build!(f64_observable_gauge, to_f64),
        (Type::Counter, Number::U64) => build!(u64_observable_counter, to_u64),
        (Type::Counter, Number::F64) => build!(f64_observable_counter, to_f64),
    }
}
