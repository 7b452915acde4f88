//! The typed configuration: what `depprobe.yaml` means once loaded.
//!
//! Sections and their keys are documented in the README; the doc comment on each
//! field is the short form. Defaults are those a team running one agent beside one
//! application wants without thinking.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Directory where the agent keeps what probes remember (certificates seen,
    /// server roles) across restarts; off when absent.
    pub state_dir: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            interval: ConfigDuration::secs(30),
            timeout: ConfigDuration::secs(10),
            concurrency: 256,
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            web_config: None,
            state_dir: None,
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
    /// Extra resource attributes (`deployment.environment.name`, `cloud.region`, ...).
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
    /// A directory of CRLs in OpenSSL's hashed form (`openssl rehash`), looked up
    /// by issuer (`openssl` profile; libpq's `sslcrldir`).
    pub crl_dir: Option<PathBuf>,
    /// A certificate of the chain that expires within this is a `cert_expiring`
    /// finding: a duration (`14d`) or a share of its lifetime (`33%`); by default the
    /// earlier of 14 days and a third of the lifetime.
    pub warn_before: ExpiryWindow,
    /// Within this, the finding is critical; by default the earlier of 3 days and a
    /// tenth of the lifetime.
    pub critical_before: ExpiryWindow,
    /// A regular expression the issuer DN of the leaf must match (`CN=R1[01]`).
    pub expect_issuer: Option<String>,
    /// SHA-256 pins of a subject public key (base64 or hex); one certificate of the
    /// chain must carry one of them.
    pub pin_sha256: Vec<String>,
    /// Where the leaf's revocation status comes from besides `crl_file`.
    pub ocsp: OcspMode,
    /// How long `ocsp: online` waits for the responder (counted in the `tls` phase).
    pub ocsp_timeout: ConfigDuration,
    /// Whose rules judge the certificate: `openssl` (the OpenSSL-based client of the
    /// kind's ecosystem: libpq, curl, the MySQL client, ...) or `webpki` (Go, Rust and
    /// browser clients); by default the kind's own (`openssl` for every kind).
    pub client_profile: Option<ClientProfile>,
    /// Whether a certificate that the profile accepts but stricter clients refuse
    /// (CN-only, X.509 v1, a CA:TRUE leaf) fails the run instead of being a
    /// `cert_legacy` notice.
    pub strict: bool,
}

/// `tls.client_profile`: whose verification rules a probe follows.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ClientProfile {
    /// OpenSSL's X.509 verification and the client's own name rule, as libpq, curl,
    /// the MySQL and Redis clients do.
    #[default]
    Openssl,
    /// rustls/webpki's verdict, as Go, Rust and browser clients judge.
    Webpki,
}

/// `tls.ocsp`: how a probe learns whether the leaf was revoked.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OcspMode {
    /// The OCSP response the server staples is verified and judged; nothing is asked.
    #[default]
    Stapled,
    /// The same, and the responder named in the leaf's Authority Information Access
    /// is asked too (unless a current staple answered); its answer is kept until
    /// the response's `nextUpdate`.
    Online,
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
            crl_dir: None,
            warn_before: ExpiryWindow::earlier(ConfigDuration::days(14), 1.0 / 3.0),
            critical_before: ExpiryWindow::earlier(ConfigDuration::days(3), 0.1),
            expect_issuer: None,
            pin_sha256: Vec::new(),
            ocsp: OcspMode::Stapled,
            ocsp_timeout: ConfigDuration::secs(3),
            client_profile: None,
            strict: false,
        }
    }
}

/// Decodes an SPKI SHA-256 pin written in base64 (`sha256/` prefix allowed) or hex
/// (colons allowed) into its 32 bytes.
pub fn decode_pin(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let t = text.trim();
    let t = t.strip_prefix("sha256/").unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    let bytes = if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
            .collect::<Result<Vec<u8>, String>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|_| "a pin is 64 hex digits or 44 base64 characters".to_owned())?
    };
    bytes.try_into().map_err(|_| {
        "a pin is a SHA-256: 32 bytes (64 hex digits, 44 base64 characters)".to_owned()
    })
}

/// How long before a certificate's expiry a window opens: a duration, a share of the
/// certificate's lifetime, or (the defaults) whichever of both comes first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExpiryWindow {
    /// A fixed time before expiry (`14d`).
    pub duration: Option<ConfigDuration>,
    /// A share of the lifetime (`not_after - not_before`), in `(0, 1]` (`33%`).
    pub share: Option<f64>,
}

impl ExpiryWindow {
    /// The earlier of `duration` and `share` of the lifetime.
    pub const fn earlier(duration: ConfigDuration, share: f64) -> Self {
        ExpiryWindow {
            duration: Some(duration),
            share: Some(share),
        }
    }

    /// The window of a certificate valid for `lifetime`: the shortest form set.
    pub fn resolve(&self, lifetime: Duration) -> Duration {
        let by_share = self
            .share
            .map(|s| Duration::from_secs_f64(lifetime.as_secs_f64() * s.clamp(0.0, 1.0)));
        match (self.duration.map(|d| d.0), by_share) {
            (Some(d), Some(s)) => d.min(s),
            (Some(d), None) => d,
            (None, Some(s)) => s,
            (None, None) => Duration::ZERO,
        }
    }

    /// Whether this window opens before `other` for every lifetime, as far as can be
    /// told from their forms (both durations, or both shares).
    pub fn surely_exceeds(&self, other: &ExpiryWindow) -> bool {
        match (self.duration, self.share, other.duration, other.share) {
            (Some(a), None, Some(b), None) => a > b,
            (None, Some(a), None, Some(b)) => a > b,
            _ => false,
        }
    }

    /// Parses `14d` or `33%` (a share above 0 and at most 100).
    pub fn parse(text: &str) -> Result<ExpiryWindow, String> {
        let t = text.trim();
        let Some(percent) = t.strip_suffix('%') else {
            let d = crate::duration::parse_duration(t)?;
            return Ok(ExpiryWindow {
                duration: Some(ConfigDuration(d)),
                share: None,
            });
        };
        match percent.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(ExpiryWindow {
                duration: None,
                share: Some(p / 100.0),
            }),
            _ => Err(format!(
                "`{t}` is not a share of the lifetime; write a percentage above 0 and at most 100, e.g. 33%"
            )),
        }
    }
}

impl std::fmt::Display for ExpiryWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let percent = |s: f64| format!("{}%", (s * 1000.0).round() / 10.0);
        match (self.duration, self.share) {
            (Some(d), Some(s)) => {
                write!(f, "the earlier of {d} and {} of the lifetime", percent(s))
            }
            (Some(d), None) => write!(f, "{d}"),
            (None, Some(s)) => write!(f, "{} of the lifetime", percent(s)),
            (None, None) => f.write_str("0s"),
        }
    }
}

impl<'de> Deserialize<'de> for ExpiryWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ExpiryWindow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 14d, or a share of the lifetime such as 33%")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExpiryWindow, E> {
                ExpiryWindow::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExpiryWindow, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit; write e.g. {v}d for days or {v}% for a share of the lifetime"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExpiryWindow, E> {
                self.visit_i64(v as i64)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn default_windows_are_the_earlier_of_a_duration_and_a_share() {
        let spec = TlsSpec::default();
        let six = Duration::from_secs(6 * DAY);
        assert_eq!(spec.warn_before.resolve(six), Duration::from_secs(2 * DAY));
        assert_eq!(spec.critical_before.resolve(six).as_secs(), 6 * DAY / 10);
        let year = Duration::from_secs(398 * DAY);
        assert_eq!(
            spec.warn_before.resolve(year),
            Duration::from_secs(14 * DAY)
        );
        assert_eq!(
            spec.critical_before.resolve(year),
            Duration::from_secs(3 * DAY)
        );
    }

    #[test]
    fn windows_parse_as_durations_or_shares() {
        let w = ExpiryWindow::parse("33%").unwrap();
        assert_eq!(w.resolve(Duration::from_secs(100)), Duration::from_secs(33));
        let w = ExpiryWindow::parse("21d").unwrap();
        assert_eq!(
            w.resolve(Duration::from_secs(DAY)),
            Duration::from_secs(21 * DAY)
        );
        for bad in ["0%", "101%", "-5%", "NaN%", "%", "21"] {
            assert!(ExpiryWindow::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pins_decode_from_base64_or_hex() {
        let hex = "ab".repeat(32);
        assert_eq!(decode_pin(&hex).unwrap(), [0xab; 32]);
        let colons: Vec<&str> = std::iter::repeat_n("AB", 32).collect();
        assert_eq!(decode_pin(&colons.join(":")).unwrap(), [0xab; 32]);
        let b64 = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
        assert_eq!(decode_pin(&format!("sha256/{b64}")).unwrap(), [0xab; 32]);
        assert!(decode_pin("abcd").is_err());
        assert!(decode_pin(&"ab".repeat(33)).is_err());
    }
}
