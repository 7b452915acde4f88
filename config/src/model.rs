//! The typed configuration: what `depprobe.yaml` means once loaded.
//!
//! Sections and their keys are documented in the README; the doc comment on each
//! field is the short form. Defaults are those a team running one agent beside one
//! application wants without thinking.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::duration::ConfigDuration;
use crate::kind::ProbeSpec;

/// A whole configuration file.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, as given.
    pub source: String,
    /// The `agent` section.
    pub agent: AgentConfig,
    /// The `telemetry` section.
    pub telemetry: TelemetryConfig,
    /// The probes, in file order.
    pub probes: Vec<ProbeConfig>,
}

/// `agent:` how the agent runs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Default time between two runs of a probe.
    pub interval: ConfigDuration,
    /// Default deadline of one run.
    pub timeout: ConfigDuration,
    /// Runs in flight at once, over all probes.
    pub concurrency: usize,
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/status`; `null` turns them off.
    pub listen: Option<SocketAddr>,
    /// The endpoint security file (TLS, basic auth) in the Prometheus exporters'
    /// `web.config` shape; none: plain HTTP without authentication.
    pub web_config: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            interval: ConfigDuration::secs(30),
            timeout: ConfigDuration::secs(10),
            concurrency: 256,
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            web_config: None,
        }
    }
}

/// `telemetry:` where results go besides `/metrics`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP export of spans and metrics; off when absent (unless the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` variable is set).
    pub otlp: Option<OtlpConfig>,
    /// Extra resource attributes (`deployment.environment`, `cloud.region`, ...).
    pub resource: BTreeMap<String, String>,
}

/// `telemetry.otlp:` the OTLP exporter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Collector endpoint, e.g. `http://otel-collector:4317` (gRPC) or
    /// `http://otel-collector:4318` (HTTP).
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub protocol: OtlpProtocol,
    /// Headers sent with every export (values may hold secrets).
    pub headers: BTreeMap<String, crate::Secret>,
    /// CA certificate for an `https` endpoint, added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// `gzip` or `none`.
    pub compression: OtlpCompression,
    /// Deadline of one export.
    pub timeout: ConfigDuration,
    /// How often metrics are exported.
    pub metrics_interval: ConfigDuration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            headers: BTreeMap::new(),
            ca_file: None,
            compression: OtlpCompression::None,
            timeout: ConfigDuration::secs(10),
            metrics_interval: ConfigDuration::secs(30),
        }
    }
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// OTLP payload compression.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpCompression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
}

/// One probe: the keys every kind shares, and the kind's own.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Unique name; the `probe.name` of every series and span.
    pub name: String,
    /// Time between two runs.
    pub interval: ConfigDuration,
    /// Deadline of one run.
    pub timeout: ConfigDuration,
    /// Per-phase latency budgets (`total`, `dns`, `connect`, `tls`, ...): a run that
    /// exceeds one is `degraded` with a `slow` finding.
    pub latency_budget: BTreeMap<String, ConfigDuration>,
    /// Whether requests carry the run's W3C `traceparent` (kinds that speak HTTP).
    pub propagate_trace: bool,
    /// A W3C `tracestate` sent beside it, when set.
    pub tracestate: Option<String>,
    /// The kind and its settings.
    pub spec: ProbeSpec,
}

impl ProbeConfig {
    /// A fingerprint of every setting, secrets included: a probe whose fingerprint
    /// did not change across a reload keeps its state.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{self:?}").hash(&mut h);
        for s in self.spec.inline_secrets() {
            s.expose().hash(&mut h);
        }
        h.finish()
    }
}

/// Keys every probe accepts, whatever its kind.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommonKeys {
    pub name: String,
    #[allow(dead_code)]
    pub kind: String,
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub latency_budget: BTreeMap<String, ConfigDuration>,
    #[serde(default)]
    pub propagate_trace: Option<bool>,
    #[serde(default)]
    pub tracestate: Option<String>,
}

/// The phase names a latency budget may use.
pub const BUDGET_PHASES: &[&str] = &["total", "dns", "connect", "tls", "auth", "request", "query"];

/// `tls:` how a probe speaks TLS (also under `defaults.tls`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSpec {
    /// PEM file of CA certificates trusted in addition to (or instead of) the system roots.
    pub ca_file: Option<PathBuf>,
    /// Whether the system's roots are trusted too.
    pub system_roots: bool,
    /// Name sent in SNI and checked against the certificate (default: the host).
    pub server_name: Option<String>,
    /// Lowest TLS version accepted: `"1.2"` or `"1.3"`.
    pub min_version: Option<String>,
    /// ALPN protocols to offer (default: what the kind speaks).
    pub alpn: Option<Vec<String>>,
    /// Client certificate chain (PEM), for servers that require one.
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// PEM file of CRLs; a certificate listed there is `tls_cert_revoked`.
    pub crl_file: Option<PathBuf>,
    /// A certificate of the chain that expires within this is a `cert_expiring` finding.
    pub warn_before: ConfigDuration,
    /// Within this, the finding is critical.
    pub critical_before: ConfigDuration,
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            ca_file: None,
            system_roots: true,
            server_name: None,
            min_version: None,
            alpn: None,
            cert_file: None,
            key_file: None,
            crl_file: None,
            warn_before: ConfigDuration::days(14),
            critical_before: ConfigDuration::days(3),
        }
    }
}
