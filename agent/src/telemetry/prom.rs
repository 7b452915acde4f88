//! The Prometheus text exposition (`/metrics`), rendered straight from the agent's
//! state: the [`families`] with the standard OpenTelemetry-to-Prometheus translation
//! (names: dots to underscores, `_seconds` for the unit `s`, `_total` for counters;
//! attribute keys: invalid characters to underscores; labels sorted), the schedule
//! lateness histogram, and `target_info` with the resource attributes. One pass, one
//! buffer: no copy of every series in between.

use std::fmt::Write as _;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use super::metrics::{Family, LATENESS_BOUNDARIES, Type, families};
use crate::state::{State, TargetState};

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

fn family(out: &mut String, f: &Family, state: &State, now: SystemTime) {
    let name = prometheus_name(f);
    let mut series = String::new();
    f.observe(state, now, &mut |t, v, extra| {
        series.push_str(&name);
        labels(&mut series, t, extra);
        series.push(' ');
        number(&mut series, v);
        series.push('\n');
    });
    if series.is_empty() {
        return;
    }
    let kind = match f.kind {
        Type::Gauge => "gauge",
        Type::Counter => "counter",
    };
    header(out, &name, f.description, kind);
    out.push_str(&series);
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

/// The whole exposition.
pub fn render(state: &State, resource: &Resource, schedule: &Buckets) -> String {
    let mut out = String::with_capacity(4096 + state.len() * 2048);
    let now = SystemTime::now();
    let (agent, targets): (Vec<&Family>, Vec<&Family>) = families()
        .iter()
        .partition(|f| f.name.starts_with("depprobe."));
    for f in &agent {
        family(&mut out, f, state, now);
    }
    lateness(&mut out, schedule);
    for f in &targets {
        family(&mut out, f, state, now);
    }
    target_info(&mut out, resource);
    out
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
