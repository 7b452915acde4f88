//! The metric instruments, one naming scheme for OTLP and Prometheus.
//!
//! Instrument names are chosen so that the standard OpenTelemetry-to-Prometheus
//! translation gives blackbox_exporter's names where one exists (`probe.success` ->
//! `probe_success`, `probe.duration` in seconds -> `probe_duration_seconds`, ...). The
//! blackbox-compatible gauges carry no unit for that reason, since a unit would add a
//! suffix. Gauges and counters are observed from the agent's state at collection
//! time, so a target removed by a reload stops being reported; only the per-phase
//! latency histogram is recorded as runs finish.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use depprobe_probes::outcome::seconds_between;
use depprobe_probes::{Outcome, Status};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};

use crate::state::State;

/// Histogram boundaries for phase durations, in seconds (1 ms to 10 s).
const PHASE_BOUNDARIES: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram boundaries for schedule lateness, in seconds (100 µs to 1 s).
const LATENESS_BOUNDARIES: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Detail key (cumulative count) exported as `probe.mongodb.primary_changes`.
pub const PRIMARY_CHANGES_TOTAL: &str = "primary_changes_total";
/// Detail key (`{state: count}`) exported as `probe.mongodb.members`.
pub const MEMBERS_BY_STATE: &str = "members_by_state";

/// The instruments recorded as runs finish; the observed ones live in the meter.
pub struct Instruments {
    phase_duration: Histogram<f64>,
    lateness: Histogram<f64>,
}

impl Instruments {
    /// Registers every instrument on `meter`, observing `state`.
    pub fn install(meter: &Meter, state: Arc<State>) -> Instruments {
        observe_targets(meter, &state);
        observe_agent(meter, &state);
        Instruments {
            phase_duration: meter
                .f64_histogram("probe.phase.duration")
                .with_unit("s")
                .with_description("Duration of each phase of a probe run.")
                .with_boundaries(PHASE_BOUNDARIES.to_vec())
                .build(),
            lateness: meter
                .f64_histogram("depprobe.schedule.lateness")
                .with_unit("s")
                .with_description("How late runs started against their schedule.")
                .with_boundaries(LATENESS_BOUNDARIES.to_vec())
                .build(),
        }
    }

    /// Records the phase durations of a finished run.
    pub fn record(&self, outcome: &Outcome, attributes: &[KeyValue]) {
        for (phase, d) in &outcome.timings.phases {
            let mut attrs = Vec::with_capacity(attributes.len() + 1);
            attrs.extend_from_slice(attributes);
            attrs.push(KeyValue::new("probe.phase", phase.as_str()));
            self.phase_duration.record(d.as_secs_f64(), &attrs);
        }
    }

    /// Records how late a run started.
    pub fn record_lateness(&self, seconds: f64) {
        self.lateness.record(seconds, &[]);
    }
}

fn with(attrs: &[KeyValue], extra: impl IntoIterator<Item = KeyValue>) -> Vec<KeyValue> {
    let mut v = attrs.to_vec();
    v.extend(extra);
    v
}

fn observe_targets(meter: &Meter, state: &Arc<State>) {
    let s = state.clone();
    meter
        .u64_observable_gauge("probe.success")
        .with_description("1 if the last run succeeded (up or degraded), 0 if it failed.")
        .with_callback(move |o| {
            s.each(|t| {
                if let Some(last) = &t.last {
                    o.observe(u64::from(last.status != Status::Down), &t.attributes);
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .f64_observable_gauge("probe.duration")
        .with_unit("s")
        .with_description("Duration of the last run.")
        .with_callback(move |o| {
            s.each(|t| {
                if let Some(last) = &t.last {
                    o.observe(last.timings.total.as_secs_f64(), &t.attributes);
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_gauge("probe.status")
        .with_description(
            "1 on the current status of the target (up, degraded, down), 0 on the others.",
        )
        .with_callback(move |o| {
            s.each(|t| {
                if let Some(last) = &t.last {
                    for status in [Status::Up, Status::Degraded, Status::Down] {
                        o.observe(
                            u64::from(last.status == status),
                            &with(
                                &t.attributes,
                                [KeyValue::new("probe.status", status.as_str())],
                            ),
                        );
                    }
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_gauge("probe.error.info")
        .with_description("1 while the target is down, with the failure class and the phase.")
        .with_callback(move |o| {
            s.each(|t| {
                if let Some(last) = &t.last
                    && let (Some(class), Some(phase)) = (last.error_type, last.phase)
                {
                    o.observe(
                        1,
                        &with(
                            &t.attributes,
                            [
                                KeyValue::new("error.type", class.as_str()),
                                KeyValue::new("probe.phase", phase.as_str()),
                            ],
                        ),
                    );
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_gauge("probe.findings")
        .with_description("Current findings of the target, by type and severity.")
        .with_callback(move |o| {
            s.each(|t| {
                let Some(last) = &t.last else { return };
                let mut counts: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
                for f in &last.findings {
                    let severity = match f.severity {
                        depprobe_probes::Severity::Warning => "warning",
                        depprobe_probes::Severity::Critical => "critical",
                    };
                    *counts.entry((f.kind.as_str(), severity)).or_default() += 1;
                }
                for ((kind, severity), n) in counts {
                    o.observe(
                        n,
                        &with(
                            &t.attributes,
                            [
                                KeyValue::new("finding.type", kind),
                                KeyValue::new("severity", severity),
                            ],
                        ),
                    );
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .f64_observable_gauge("probe.ssl.earliest_cert_expiry")
        .with_description("Earliest not_after of the presented chain, unix seconds.")
        .with_callback(move |o| {
            s.each(|t| {
                if let Some(at) = t
                    .last
                    .as_ref()
                    .and_then(|l| l.tls.as_ref())
                    .and_then(|tls| tls.earliest_not_after())
                {
                    o.observe(seconds_between(SystemTime::UNIX_EPOCH, at), &t.attributes);
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .f64_observable_gauge("probe.tls.cert.time_left")
        .with_unit("s")
        .with_description("Time left before each presented certificate expires.")
        .with_callback(move |o| {
            let now = SystemTime::now();
            s.each(|t| {
                let Some(tls) = t.last.as_ref().and_then(|l| l.tls.as_ref()) else {
                    return;
                };
                for (i, c) in tls.chain.iter().enumerate() {
                    o.observe(
                        c.seconds_left(now),
                        &with(
                            &t.attributes,
                            [
                                KeyValue::new(
                                    "tls.cert.position",
                                    depprobe_probes::transport::chain::position(i),
                                ),
                                KeyValue::new("tls.cert.subject", c.subject.clone()),
                                KeyValue::new("tls.cert.issuer", c.issuer.clone()),
                                KeyValue::new("tls.cert.sha256", c.sha256.clone()),
                            ],
                        ),
                    );
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_gauge("probe.tls.version_info")
        .with_description("1, with the negotiated TLS version.")
        .with_callback(move |o| {
            s.each(|t| {
                if let Some(v) = t
                    .last
                    .as_ref()
                    .and_then(|l| l.tls.as_ref())
                    .and_then(|tls| tls.version.as_ref())
                {
                    o.observe(
                        1,
                        &with(
                            &t.attributes,
                            [KeyValue::new("version", format!("TLS {v}"))],
                        ),
                    );
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_gauge("probe.http.status_code")
        .with_description("Status code of the last HTTP answer.")
        .with_callback(move |o| {
            s.each(|t| {
                if let Some(h) = t.last.as_ref().and_then(|l| l.http.as_ref()) {
                    o.observe(u64::from(h.status_code), &t.attributes);
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .f64_observable_gauge("probe.credential.time_left")
        .with_unit("s")
        .with_description("Time left before the local credential expires.")
        .with_callback(move |o| {
            let now = SystemTime::now();
            s.each(|t| {
                if let Some(at) = t
                    .last
                    .as_ref()
                    .and_then(|l| {
                        l.details
                            .get(depprobe_probes::credentials::NOT_AFTER_DETAIL)
                    })
                    .and_then(|v| v.as_f64())
                {
                    let now_s = seconds_between(SystemTime::UNIX_EPOCH, now);
                    o.observe(at - now_s, &t.attributes);
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_gauge("probe.mongodb.members")
        .with_description("Replica-set members by state.")
        .with_callback(move |o| {
            s.each(|t| {
                let Some(map) = t
                    .last
                    .as_ref()
                    .and_then(|l| l.details.get(MEMBERS_BY_STATE))
                    .and_then(|v| v.as_object())
                else {
                    return;
                };
                for (member_state, n) in map {
                    if let Some(n) = n.as_u64() {
                        o.observe(
                            n,
                            &with(
                                &t.attributes,
                                [KeyValue::new("member.state", member_state.clone())],
                            ),
                        );
                    }
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_counter("probe.mongodb.primary_changes")
        .with_description("Primary changes seen by the replica-set watch.")
        .with_callback(move |o| {
            s.each(|t| {
                if let Some(n) = t
                    .last
                    .as_ref()
                    .and_then(|l| l.details.get(PRIMARY_CHANGES_TOTAL))
                    .and_then(|v| v.as_u64())
                {
                    o.observe(n, &t.attributes);
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_counter("probe.failures")
        .with_description("Failed runs, by failure class.")
        .with_callback(move |o| {
            s.each(|t| {
                for (class, n) in &t.failures {
                    o.observe(
                        *n,
                        &with(&t.attributes, [KeyValue::new("error.type", class.as_str())]),
                    );
                }
            })
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_counter("probe.tls.cert.changes")
        .with_description("Changes of the leaf certificate seen between runs.")
        .with_callback(move |o| {
            s.each(|t| {
                if t.leaf.is_some() {
                    o.observe(t.cert_changes, &t.attributes);
                }
            })
        })
        .build();
}

fn observe_agent(meter: &Meter, state: &Arc<State>) {
    let s = state.clone();
    meter
        .u64_observable_gauge("depprobe.config.last_reload_success")
        .with_description("1 if the last configuration reload succeeded, 0 if it failed (the old one keeps running).")
        .with_callback(move |o| o.observe(u64::from(s.last_reload_success.load(Ordering::Relaxed)), &[]))
        .build();

    let s = state.clone();
    meter
        .u64_observable_counter("depprobe.telemetry.dropped")
        .with_description("Telemetry items dropped because an export queue was full.")
        .with_callback(move |o| {
            o.observe(
                s.dropped_spans.load(Ordering::Relaxed),
                &[KeyValue::new("signal", "traces")],
            );
        })
        .build();

    let s = state.clone();
    meter
        .u64_observable_counter("depprobe.telemetry.export_failures")
        .with_description("Failed OTLP exports.")
        .with_callback(move |o| {
            o.observe(
                s.trace_export_failures.load(Ordering::Relaxed),
                &[KeyValue::new("signal", "traces")],
            );
            o.observe(
                s.metric_export_failures.load(Ordering::Relaxed),
                &[KeyValue::new("signal", "metrics")],
            );
        })
        .build();
}
