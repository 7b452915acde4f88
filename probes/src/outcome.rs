//! What one run of a probe produced.
//!
//! An [`Outcome`] is the only thing that leaves a probe: the agent turns it into
//! state, spans, metrics and `/status`; `depprobe check` prints it. Its JSON form is
//! the `check --json` shape of the design.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::declared::{Attribute, Sample};
use crate::taxonomy::{ErrorType, Phase, Status};
use depprobe_config::Kind;

/// The network endpoint a probe talks to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    /// Host name or address (`server.address`).
    pub address: String,
    /// Port (`server.port`); 0 when the probe has none (a local file).
    pub port: u16,
}

/// The result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The probe's name.
    pub name: String,
    /// The probe's kind.
    #[serde(serialize_with = "ser_kind")]
    pub kind: Kind,
    /// What was probed.
    pub target: Target,
    /// up / degraded / down.
    pub status: Status,
    /// The failure class, when down.
    pub error_type: Option<ErrorType>,
    /// Where it failed or hung, when down.
    pub phase: Option<Phase>,
    /// One line for a human: what happened, and what to do. Never a secret.
    pub message: String,
    /// When the run started.
    #[serde(serialize_with = "ser_time")]
    pub started_at: SystemTime,
    /// Total and per-phase durations.
    #[serde(rename = "duration_ms", serialize_with = "ser_durations")]
    pub timings: Timings,
    /// Warnings that make a working target `degraded`.
    pub findings: Vec<Finding>,
    /// Every problem seen, when several hold at once (the class is the first).
    pub problems: Vec<Problem>,
    /// What TLS looked like, when a handshake was attempted and the server answered.
    pub tls: Option<TlsFacts>,
    /// The last HTTP answer, for HTTP-based kinds.
    pub http: Option<HttpFacts>,
    /// Facts specific to the kind (server version, replica-set topology, ...).
    pub details: BTreeMap<String, serde_json::Value>,
    /// Semantic attributes of the run's span that the kind declares
    /// (`db.system.name`, ...).
    #[serde(skip)]
    pub attributes: Vec<Attribute>,
    /// Values of the metric families the kind declares.
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// The identity of the run's span (sent to the target as `traceparent`).
    #[serde(skip)]
    pub trace: Option<crate::trace::TraceContext>,
}

/// Total and per-phase durations of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Wall time of the whole run.
    pub total: Duration,
    /// Each phase that ran, in order, with its duration (phases repeated by
    /// redirects are summed).
    pub phases: Vec<(Phase, Duration)>,
}

impl Timings {
    /// The duration of `phase`, if it ran.
    pub fn get(&self, phase: Phase) -> Option<Duration> {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, d)| *d)
    }

    /// Adds `d` to `phase`.
    pub fn add(&mut self, phase: Phase, d: Duration) {
        match self.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, total)) => *total += d,
            None => self.phases.push((phase, d)),
        }
    }
}

/// One problem, when a run hit several.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    /// Its class.
    #[serde(rename = "type")]
    pub class: ErrorType,
    /// What it is.
    pub message: String,
}

/// A finding: the target works, but something needs attention.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// What kind of finding.
    #[serde(rename = "type")]
    pub kind: FindingType,
    /// How urgent.
    pub severity: Severity,
    /// What it is and what to do.
    pub message: String,
    /// Facts for machines (certificate subject, days left, counts, ...).
    #[serde(flatten)]
    pub facts: BTreeMap<String, serde_json::Value>,
}

/// The type of a finding: a stable snake_case name. The findings every kind may
/// report are constants here; a kind declares its own in its module (and lists them
/// in its [`crate::kinds::ProbeKind::FINDINGS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingType(&'static str);

impl FindingType {
    /// A verified chain does not match `tls.expect_issuer` or `tls.pin_sha256`.
    pub const ISSUER_UNEXPECTED: FindingType = FindingType("issuer_unexpected");
    /// A must-staple certificate came without a stapled OCSP response.
    pub const OCSP_MISSING: FindingType = FindingType("ocsp_missing");
    /// The OCSP response (stapled or from the responder) is past its `nextUpdate`.
    pub const OCSP_STALE: FindingType = FindingType("ocsp_stale");
    /// The stapled OCSP response is not usable (another certificate, a bad
    /// signature, unreadable, an error status).
    pub const OCSP_INVALID: FindingType = FindingType("ocsp_invalid");
    /// The OCSP responder says it does not know the leaf.
    pub const OCSP_UNKNOWN: FindingType = FindingType("ocsp_unknown");
    /// `tls.ocsp: online` got no usable answer from the responder.
    pub const OCSP_UNAVAILABLE: FindingType = FindingType("ocsp_unavailable");
    /// A CRL of `tls.crl_file` is past its `nextUpdate`.
    pub const CRL_STALE: FindingType = FindingType("crl_stale");
    /// A certificate of the chain expires within `warn_before`.
    pub const CERT_EXPIRING: FindingType = FindingType("cert_expiring");
    /// The leaf certificate differs from the last run.
    pub const CERT_CHANGED: FindingType = FindingType("cert_changed");
    /// The leaf's issuer differs from the last run.
    pub const ISSUER_CHANGED: FindingType = FindingType("issuer_changed");
    /// The certificate fails verification, but the probe's mode does not enforce it
    /// (PostgreSQL `sslmode=require`): the connection works, verifying clients fail.
    pub const CERT_INVALID: FindingType = FindingType("cert_invalid");
    /// The certificate works for the probe's client profile, but stricter clients
    /// refuse it (CN-only, X.509 v1, a CA:TRUE leaf): a notice.
    pub const CERT_LEGACY: FindingType = FindingType("cert_legacy");
    /// A local credential expires within its window.
    pub const CREDENTIAL_EXPIRING: FindingType = FindingType("credential_expiring");
    /// A database changed role (primary / standby) since the last run.
    pub const ROLE_CHANGED: FindingType = FindingType("role_changed");
    /// A phase exceeded its latency budget.
    pub const SLOW: FindingType = FindingType("slow");

    /// The findings any kind may report.
    pub const COMMON: &'static [FindingType] = &[
        FindingType::CERT_EXPIRING,
        FindingType::CERT_CHANGED,
        FindingType::ISSUER_CHANGED,
        FindingType::ISSUER_UNEXPECTED,
        FindingType::CRL_STALE,
        FindingType::OCSP_MISSING,
        FindingType::OCSP_STALE,
        FindingType::OCSP_INVALID,
        FindingType::OCSP_UNKNOWN,
        FindingType::OCSP_UNAVAILABLE,
        FindingType::CERT_INVALID,
        FindingType::CERT_LEGACY,
        FindingType::CREDENTIAL_EXPIRING,
        FindingType::ROLE_CHANGED,
        FindingType::SLOW,
    ];

    /// The finding named `name` (snake_case); a kind declares its own with this.
    pub const fn new(name: &'static str) -> FindingType {
        FindingType(name)
    }

    /// The stable string.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for FindingType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for FindingType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// How urgent a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; never degrades a status (`cert_legacy`).
    Notice,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The stable name (`notice`, `warning`, `critical`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl Finding {
    /// A finding without machine facts.
    pub fn new(kind: FindingType, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            kind,
            severity,
            message: message.into(),
            facts: BTreeMap::new(),
        }
    }

    /// Adds a machine fact.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.facts.insert(key.to_owned(), value.into());
        self
    }
}

/// What the TLS session looked like.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TlsFacts {
    /// Protocol version (`1.2`, `1.3`), once negotiated.
    pub version: Option<String>,
    /// Cipher suite, once negotiated.
    pub cipher: Option<String>,
    /// Key-exchange group, once negotiated.
    pub kx_group: Option<String>,
    /// ALPN protocol, when one was agreed.
    pub alpn: Option<String>,
    /// The name that was sent in SNI and verified.
    pub server_name: String,
    /// Whether the chain verified.
    pub verified: bool,
    /// Every certificate the server presented, leaf first.
    pub chain: Vec<CertFacts>,
}

impl TlsFacts {
    /// The leaf certificate, if any was presented.
    pub fn leaf(&self) -> Option<&CertFacts> {
        self.chain.first()
    }

    /// The earliest `not_after` of the chain.
    pub fn earliest_not_after(&self) -> Option<SystemTime> {
        self.chain.iter().map(|c| c.not_after).min()
    }
}

/// The facts of one certificate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CertFacts {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity.
    #[serde(serialize_with = "ser_time")]
    pub not_before: SystemTime,
    /// End of validity.
    #[serde(serialize_with = "ser_time")]
    pub not_after: SystemTime,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
    /// Subject alternative names (DNS names and IP addresses).
    pub sans: Vec<String>,
    /// Public key type (`EC P-256`, `RSA`, `Ed25519`).
    pub key_type: String,
    /// Public key size in bits.
    pub key_bits: Option<u32>,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
}

impl CertFacts {
    /// Time left before `not_after` as seen at `now`, negative when expired.
    pub fn seconds_left(&self, now: SystemTime) -> f64 {
        seconds_between(now, self.not_after)
    }

    /// The subject's common name, or the whole subject; a certificate without a
    /// subject (allowed when its names are all in the subjectAltName) is named by
    /// its first name there, or by its serial number, never by a blank.
    pub fn short_name(&self) -> std::borrow::Cow<'_, str> {
        let cn = common_name(&self.subject);
        if !cn.trim().is_empty() {
            return cn.into();
        }
        match self.sans.first() {
            Some(name) => format!("{name} (no subject)").into(),
            None => format!("serial {} (no subject)", self.serial).into(),
        }
    }
}

/// The `CN=` part of a distinguished name, or the whole name.
pub fn common_name(dn: &str) -> &str {
    dn.split(", ")
        .find_map(|part| part.strip_prefix("CN="))
        .unwrap_or(dn)
}

/// What the last HTTP answer was.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HttpFacts {
    /// Status code.
    pub status_code: u16,
    /// HTTP version (`HTTP/1.1`, `HTTP/2.0`).
    pub version: String,
    /// Body bytes read.
    pub body_bytes: usize,
    /// Redirects followed.
    pub redirects: u32,
}

impl Outcome {
    /// The seconds of `d` as f64.
    pub fn duration_secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    /// Replaces every secret in every text of the outcome (see [`scrub`]).
    pub fn scrub(&mut self, secrets: &[&str]) {
        let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
        if secrets.is_empty() {
            return;
        }
        scrub(&mut self.message, &secrets);
        for p in &mut self.problems {
            scrub(&mut p.message, &secrets);
        }
        for f in &mut self.findings {
            scrub(&mut f.message, &secrets);
            for v in f.facts.values_mut() {
                scrub_json(v, &secrets);
            }
        }
        for v in self.details.values_mut() {
            scrub_json(v, &secrets);
        }
        for (_, v) in &mut self.attributes {
            scrub(v, &secrets);
        }
    }
}

/// Secrets at least this long are replaced wherever they appear; a shorter one
/// only when it is a whole text, since replacing every `a` of a message would
/// destroy it without hiding anything (README, "Secrets").
pub const SCRUB_ANYWHERE_LEN: usize = 3;

/// Replaces each secret in `text` by `***`. Run it before any cut: a secret cut
/// in two is no longer found, and its half stays.
pub fn scrub(text: &mut String, secrets: &[&str]) {
    for secret in secrets {
        if secret.is_empty() {
            continue;
        }
        if secret.len() < SCRUB_ANYWHERE_LEN {
            if text == secret {
                *text = "***".into();
            }
        } else if text.contains(secret) {
            *text = text.replace(secret, "***");
        }
    }
}

fn scrub_json(v: &mut serde_json::Value, secrets: &[&str]) {
    match v {
        serde_json::Value::String(s) => scrub(s, secrets),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| scrub_json(i, secrets)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|i| scrub_json(i, secrets)),
        _ => {}
    }
}

/// Seconds from `from` to `to` (negative when `to` is earlier).
pub fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// RFC 3339, UTC, whole seconds. A time RFC 3339 cannot write (before year 0 or
/// after 9999, as a hostile timestamp may be) is written as seconds since the epoch
/// (`@-1000000000000000`), never a panic.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Whole seconds towards the past, as the floor of the instant.
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            whole
                .saturating_neg()
                .saturating_sub(i64::from(d.subsec_nanos() > 0))
        }
    };
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|dt| {
            dt.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

/// "in 9 days", "3 hours ago": a time from `now`, rounded for a human.
pub fn human_delta(now: SystemTime, then: SystemTime) -> String {
    let secs = seconds_between(now, then);
    let abs = secs.abs();
    let text = if abs >= 2.0 * 86_400.0 {
        format!("{} days", (abs / 86_400.0).floor())
    } else if abs >= 2.0 * 3_600.0 {
        format!("{} hours", (abs / 3_600.0).floor())
    } else if abs >= 120.0 {
        format!("{} minutes", (abs / 60.0).floor())
    } else {
        format!("{} seconds", abs.floor())
    };
    if secs >= 0.0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_kind<S: Serializer>(k: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn ser_durations<S: Serializer>(t: &Timings, s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(1 + t.phases.len()))?;
    map.serialize_entry("total", &ms(t.total))?;
    for (phase, d) in &t.phases {
        map.serialize_entry(phase.as_str(), &ms(*d))?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_deltas_read_naturally() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            human_delta(now, now + Duration::from_secs(10 * 86_400 + 5)),
            "in 10 days"
        );
        assert_eq!(
            human_delta(now, now - Duration::from_secs(3 * 3_600 + 1)),
            "3 hours ago"
        );
    }

    #[test]
    fn common_name_is_extracted() {
        assert_eq!(
            common_name("CN=api.example.com, O=Example"),
            "api.example.com"
        );
        assert_eq!(common_name("O=Example"), "O=Example");
    }

    #[test]
    fn rfc3339_is_utc_whole_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn rfc3339_writes_times_out_of_its_range_as_epoch_seconds() {
        let ancient = SystemTime::UNIX_EPOCH - Duration::from_secs(1_000_000_000_000_000);
        assert_eq!(rfc3339(ancient), "@-1000000000000000");
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000_000_000);
        assert_eq!(rfc3339(far), "@1000000000000000");
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(rfc3339(before), "1969-12-31T23:59:58Z");
    }
}
