//! The metric contract: every series name and label the agent's `/metrics` carries,
//! as Prometheus sees it, in one place.
//!
//! The deployment files under `deploy/` (alert rules, the Grafana dashboard) may
//! only use what is listed here; `tests/tests/stack.rs` holds them to it. The same
//! list can be checked against a live agent's `/metrics`, so a rename on either side
//! breaks a test instead of an alert. Names are those of the OpenTelemetry SDK's
//! Prometheus exporter; the core series carry blackbox_exporter's names so existing
//! dashboards and alerts keep working.

use depprobe_probes::{ErrorType, Phase};

/// How a metric is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// One sample per label set.
    Gauge,
    /// Monotonic; its name ends in `_total`.
    Counter,
    /// `_bucket` (with `le`), `_sum` and `_count` series.
    Histogram,
}

/// One metric of the contract.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// The Prometheus name (a counter's includes `_total`, a histogram's has no suffix).
    pub name: &'static str,
    /// Gauge, counter or histogram.
    pub kind: MetricKind,
    /// Whether it carries [`PROBE_LABELS`] (every per-probe series does).
    pub per_probe: bool,
    /// Its own labels, beyond [`PROBE_LABELS`] and [`SCRAPE_LABELS`].
    pub labels: &'static [&'static str],
}

/// Labels every per-probe series carries: which target it is about (a kind that
/// reads a local file, `credential`, carries `file_path` in place of the server's).
pub const PROBE_LABELS: &[&str] = &[
    "probe_name",
    "probe_kind",
    "server_address",
    "server_port",
    "file_path",
];

/// Labels Prometheus adds to every scraped series.
pub const SCRAPE_LABELS: &[&str] = &["job", "instance"];

const fn probe(name: &'static str, kind: MetricKind, labels: &'static [&'static str]) -> Metric {
    Metric {
        name,
        kind,
        per_probe: true,
        labels,
    }
}

const fn agent(name: &'static str, kind: MetricKind, labels: &'static [&'static str]) -> Metric {
    Metric {
        name,
        kind,
        per_probe: false,
        labels,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// The labels of every per-certificate series.
const CERT_LABELS: &[&str] = &[
    "probe_tls_cert_position",
    "probe_tls_cert_subject",
    "probe_tls_cert_issuer",
    "probe_tls_cert_sha256",
];

/// Every metric of the agent's `/metrics`.
pub const METRICS: &[Metric] = &[
    probe("probe_success", Gauge, &[]),
    probe("probe_duration_seconds", Gauge, &[]),
    probe("probe_phase_duration_seconds", Gauge, &["probe_phase"]),
    probe("probe_status", Gauge, &["probe_status"]),
    probe("probe_error_info", Gauge, &["error_type", "probe_phase"]),
    probe("probe_failures_total", Counter, &["error_type"]),
    probe(
        "probe_findings",
        Gauge,
        &["probe_finding_type", "probe_finding_severity"],
    ),
    probe("probe_ssl_earliest_cert_expiry", Gauge, &[]),
    probe("probe_tls_cert_lifetime_seconds", Gauge, CERT_LABELS),
    probe("probe_tls_cert_not_before", Gauge, CERT_LABELS),
    probe("probe_tls_cert_time_left_seconds", Gauge, CERT_LABELS),
    probe("probe_tls_cert_changes_total", Counter, &[]),
    probe("probe_tls_version_info", Gauge, &["tls_protocol_version"]),
    probe("probe_http_status_code", Gauge, &[]),
    probe("probe_credential_time_left_seconds", Gauge, &[]),
    probe("probe_mongodb_primary_changes_total", Counter, &[]),
    probe(
        "probe_mongodb_members",
        Gauge,
        &["probe_mongodb_member_state"],
    ),
    probe(
        "probe_mongodb_replication_lag_seconds",
        Gauge,
        &["probe_mongodb_member_address"],
    ),
    probe("probe_last_run_timestamp_seconds", Gauge, &[]),
    probe("probe_runs_total", Counter, &[]),
    probe("probe_interval_seconds", Gauge, &[]),
    agent("depprobe_config_last_reload_success", Gauge, &[]),
    agent("depprobe_schedule_lateness_seconds", Histogram, &[]),
    agent("depprobe_probe_panics_total", Counter, &[]),
    agent(
        "depprobe_telemetry_dropped_total",
        Counter,
        &["depprobe_telemetry_signal"],
    ),
    agent(
        "depprobe_telemetry_export_failures_total",
        Counter,
        &["depprobe_telemetry_signal"],
    ),
    // The resource (service.name, service.instance.id, host.name, ...), one series;
    // it names the agent's vantage point, which the alert rules count places by.
    agent(
        "target_info",
        Gauge,
        &[
            "service_name",
            "service_version",
            "service_instance_id",
            "host_name",
            "cloud_region",
            "cloud_availability_zone",
            "k8s_cluster_name",
            "k8s_node_name",
        ],
    ),
];

/// Values of `probe_status`.
pub const STATUSES: &[&str] = &["up", "degraded", "down"];

/// Values of `probe_finding_type`.
pub const FINDING_TYPES: &[&str] = &[
    "cert_expiring",
    "cert_changed",
    "issuer_changed",
    "credential_expiring",
    "elections",
    "election_storm",
    "member_unreachable",
    "role_changed",
    "slow",
    "cert_invalid",
    "partial_success",
    "replication_link_down",
];

/// Values of `probe_finding_severity`.
pub const SEVERITIES: &[&str] = &["warning", "critical"];

/// Values of `probe_tls_version_info`'s `tls_protocol_version`.
pub const TLS_VERSIONS: &[&str] = &["1.2", "1.3"];

/// Values of `depprobe_telemetry_signal`.
pub const SIGNALS: &[&str] = &["traces", "metrics"];

/// The values a label may take, for labels with a closed vocabulary; `None` for
/// open ones (names, addresses, subjects).
pub fn label_values(label: &str) -> Option<Vec<&'static str>> {
    Some(match label {
        "error_type" => ErrorType::ALL.iter().map(|e| e.as_str()).collect(),
        "probe_phase" => Phase::ALL.iter().map(|p| p.as_str()).collect(),
        "probe_status" => STATUSES.to_vec(),
        "probe_finding_type" => FINDING_TYPES.to_vec(),
        "probe_finding_severity" => SEVERITIES.to_vec(),
        "tls_protocol_version" => TLS_VERSIONS.to_vec(),
        "depprobe_telemetry_signal" => SIGNALS.to_vec(),
        _ => return None,
    })
}

impl Metric {
    /// The sample names it produces: its name, or a histogram's three series.
    pub fn series_names(&self) -> Vec<String> {
        match self.kind {
            MetricKind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", self.name))
                .collect(),
            _ => vec![self.name.to_string()],
        }
    }

    /// Whether the series `series` (one of [`Metric::series_names`]) carries `label`.
    pub fn has_label(&self, series: &str, label: &str) -> bool {
        SCRAPE_LABELS.contains(&label)
            || (self.per_probe && PROBE_LABELS.contains(&label))
            || self.labels.contains(&label)
            || (label == "le" && series.ends_with("_bucket"))
    }
}

/// The metric a sample name belongs to (`probe_phase_duration_seconds_bucket` belongs
/// to `probe_phase_duration_seconds`).
pub fn metric_of_series(series: &str) -> Option<&'static Metric> {
    METRICS
        .iter()
        .find(|m| m.series_names().iter().any(|s| s == series))
}
