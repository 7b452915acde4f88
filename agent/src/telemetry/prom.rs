//! The Prometheus text exposition (`/metrics`), rendered straight from the agent's
//! state: the [`families`] with the standard OpenTelemetry-to-Prometheus translation
//! (names: dots to underscores, `_seconds` for the unit `s`, `_total` for counters;
//! attribute keys: invalid characters to underscores; labels sorted), the schedule
//! lateness histogram, and `target_info` with the resource attributes. Each family
//! is rendered a part of the targets at a time ([`PART`]), and the text goes to a
//! sink in pieces of about [`PIECE`] bytes: the state's lock is held for one part
//! only, and no buffer ever holds the whole exposition (at 10,000 targets that
//! buffer, grown by doubling, was the agent's peak during a scrape).

use std::fmt::Write as _;
use std::ops::Bound;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use super::metrics::{Family, LATENESS_BOUNDARIES, Type, families};
use crate::state::{State, TargetState, View};

/// Targets rendered per family under one read of the state's lock.
pub const PART: usize = 500;
/// About how many bytes of text go to the sink at a time.
pub const PIECE: usize = 64 * 1024;

/// Families whose Prometheus name stays as it was before they had a unit: Unix
/// times (unit `s`) that blackbox_exporter, and dashboards, name without
/// `_seconds`.
const KEPT_NAMES: &[(&str, &str)] = &[
    (
        "probe.ssl.earliest_cert_expiry",
        "probe_ssl_earliest_cert_expiry",
    ),
    ("probe.tls.cert.not_before", "probe_tls_cert_not_before"),
];

/// The Prometheus name of a family: the OpenTelemetry translation of its name and
/// unit (`s` -> `_seconds`, `By` -> `_bytes`; annotations such as `{run}` and the
/// unit `1` add nothing, so `probe.success` stays blackbox_exporter's
/// `probe_success`), `_total` for counters, and the [`KEPT_NAMES`].
pub fn prometheus_name(f: &Family) -> String {
    if let Some((_, kept)) = KEPT_NAMES.iter().find(|(otel, _)| *otel == f.name) {
        return (*kept).to_owned();
    }
    let mut name = sanitize(f.name);
    match f.unit {
        Some("s") => name.push_str("_seconds"),
        Some("By") => name.push_str("_bytes"),
        _ => {}
    }
    if f.kind == Type::Counter {
        name.push_str("_total");
    }
    name
}

/// An attribute key or metric name with every character outside `[a-zA-Z0-9_:]`
/// replaced by `_`.
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape_into(out: &mut String, value: &str, quote: bool) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Writes `{k="v",...}` with the target's attributes and `extra`, sorted by key.
fn labels(out: &mut String, t: Option<&TargetState>, extra: &[KeyValue]) {
    let target = t.map(|t| &t.attributes[..]).unwrap_or(&[]);
    if target.is_empty() && extra.is_empty() {
        return;
    }
    let mut pairs: Vec<(String, &KeyValue)> = target
        .iter()
        .chain(extra)
        .map(|kv| (sanitize(kv.key.as_str()), kv))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    out.push('{');
    for (i, (key, kv)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        escape_into(out, &kv.value.as_str(), true);
        out.push('"');
    }
    out.push('}');
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_into(out, help, false);
    let _ = write!(out, "\n# TYPE {name} {kind}\n");
}

/// Writes family `f` for the targets of `view`, its header first when
/// `headed` is false and a series is written.
fn family(
    out: &mut String,
    f: &Family,
    name: &str,
    view: &View<'_>,
    now: SystemTime,
    headed: &mut bool,
) {
    f.observe(view, now, &mut |t, v, extra| {
        if !*headed {
            let kind = match f.kind {
                Type::Gauge => "gauge",
                Type::Counter => "counter",
            };
            header(out, name, f.description, kind);
            *headed = true;
        }
        out.push_str(name);
        labels(out, t, extra);
        out.push(' ');
        number(out, v);
        out.push('\n');
    });
}

/// Cumulative counts at [`LATENESS_BOUNDARIES`], total count, sum in seconds.
pub type Buckets = (Vec<u64>, u64, f64);

fn lateness(out: &mut String, (counts, total, sum): &Buckets) {
    let name = "depprobe_schedule_lateness_seconds";
    header(
        out,
        name,
        "How late runs started against their schedule.",
        "histogram",
    );
    for (le, n) in LATENESS_BOUNDARIES.iter().zip(counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    out.push_str(name);
    out.push_str("_sum ");
    number(out, *sum);
    let _ = writeln!(out, "\n{name}_count {total}");
}

fn target_info(out: &mut String, resource: &Resource) {
    header(out, "target_info", "Target metadata", "gauge");
    let attrs: Vec<KeyValue> = resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    out.push_str("target_info");
    labels(out, None, &attrs);
    out.push_str(" 1\n");
}

/// The whole exposition, in one string (tests, small agents).
pub fn render(state: &State, resource: &Resource, schedule: &Buckets) -> String {
    let mut out = String::new();
    render_into(state, resource, schedule, &mut |piece| {
        out.push_str(&piece);
        true
    });
    out
}

/// The whole exposition, handed to `sink` in pieces of about [`PIECE`] bytes, in
/// order; stops early when `sink` returns false (the client went away).
pub fn render_into(
    state: &State,
    resource: &Resource,
    schedule: &Buckets,
    sink: &mut dyn FnMut(String) -> bool,
) {
    let mut out = String::with_capacity(PIECE + PIECE / 4);
    // Hands the buffer to the sink once it holds a piece; false: stop.
    let mut flush = |out: &mut String, force: bool| -> bool {
        if out.is_empty() || (!force && out.len() < PIECE) {
            return true;
        }
        let piece = std::mem::replace(out, String::with_capacity(PIECE + PIECE / 4));
        sink(piece)
    };
    let now = SystemTime::now();
    let (agent, targets): (Vec<&Family>, Vec<&Family>) = families()
        .iter()
        .partition(|f| f.name.starts_with("depprobe."));
    let all = View::all(state);
    for f in &agent {
        family(&mut out, f, &prometheus_name(f), &all, now, &mut false);
    }
    lateness(&mut out, schedule);
    for f in &targets {
        let name = prometheus_name(f);
        let mut headed = false;
        // Parts of PART targets by name: (after the last part's end, through the
        // PART-th name after it].
        let mut from: Bound<String> = Bound::Unbounded;
        loop {
            let lo = match &from {
                Bound::Excluded(n) => Bound::Excluded(n.as_str()),
                _ => Bound::Unbounded,
            };
            let to = match state.name_after(lo, PART) {
                Some(n) => Bound::Included(n),
                None => Bound::Unbounded,
            };
            let last = matches!(to, Bound::Unbounded);
            let view = View::between(state, (from, to.clone()));
            family(&mut out, f, &name, &view, now, &mut headed);
            if !flush(&mut out, false) {
                return;
            }
            if last {
                break;
            }
            from = match to {
                Bound::Included(n) => Bound::Excluded(n),
                b => b,
            };
        }
    }
    target_info(&mut out, resource);
    flush(&mut out, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_opentelemetry_translation() {
        let by = |n: &str| families().iter().find(|f| f.name == n).map(prometheus_name);
        assert_eq!(by("probe.success").as_deref(), Some("probe_success"));
        assert_eq!(
            by("probe.duration").as_deref(),
            Some("probe_duration_seconds")
        );
        assert_eq!(
            by("probe.failures").as_deref(),
            Some("probe_failures_total")
        );
        assert_eq!(
            by("probe.tls.cert.time_left").as_deref(),
            Some("probe_tls_cert_time_left_seconds")
        );
        assert_eq!(
            by("probe.ssl.earliest_cert_expiry").as_deref(),
            Some("probe_ssl_earliest_cert_expiry")
        );
        assert_eq!(by("probe.runs").as_deref(), Some("probe_runs_total"));
    }

    #[test]
    fn a_streamed_exposition_has_every_target_once_under_one_header() {
        let state = State::new();
        let wanted: Vec<(depprobe_probes::ProbeMeta, u64)> = (0..PART * 2 + 7)
            .map(|i| {
                let meta = depprobe_probes::ProbeMeta {
                    name: format!("t{i}"),
                    kind: depprobe_config::Kind::new("tls"),
                    target: depprobe_probes::outcome::Target {
                        address: "localhost".into(),
                        port: 443,
                    },
                    timeout: std::time::Duration::from_secs(1),
                    budgets: Vec::new(),
                    secrets: Vec::new(),
                    attributes: &[],
                    memory: Default::default(),
                    propagate_trace: true,
                    tracestate: None,
                };
                (meta, 0)
            })
            .collect();
        state.reconcile(&wanted);
        let resource = Resource::builder_empty().build();
        let buckets: Buckets = (vec![0; LATENESS_BOUNDARIES.len()], 0, 0.0);
        let mut pieces = Vec::new();
        render_into(&state, &resource, &buckets, &mut |p| {
            pieces.push(p);
            true
        });
        assert!(pieces.len() > 1, "sent in pieces");
        assert!(
            pieces.iter().all(|p| p.len() <= PIECE * 3),
            "no piece is the whole text"
        );
        let text = pieces.concat();
        assert_eq!(text, render(&state, &resource, &buckets));
        assert_eq!(text.matches("# TYPE probe_runs_total counter").count(), 1);
        for (meta, _) in &wanted {
            let series = format!("probe_name=\"{}\",", meta.name);
            let runs = text
                .lines()
                .filter(|l| l.starts_with("probe_runs_total{") && l.contains(&series))
                .count();
            assert_eq!(runs, 1, "{}", meta.name);
        }
        // A client gone after the first piece stops the render.
        let mut sent = 0;
        render_into(&state, &resource, &buckets, &mut |_| {
            sent += 1;
            false
        });
        assert_eq!(sent, 1);
    }

    #[test]
    fn label_values_are_escaped_and_keys_sanitised() {
        let mut s = String::new();
        labels(
            &mut s,
            None,
            &[
                KeyValue::new("probe.tls.cert.subject", "CN=a \"b\"\\c\nd"),
                KeyValue::new("error.type", "x"),
            ],
        );
        assert_eq!(
            s,
            r#"{error_type="x",probe_tls_cert_subject="CN=a \"b\"\\c\nd"}"#
        );
        let mut n = String::new();
        number(&mut n, f64::INFINITY);
        number(&mut n, 0.5);
        assert_eq!(n, "+Inf0.5");
    }
}
