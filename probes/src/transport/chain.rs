//! What a certificate chain says, and everything that is wrong with it.
//!
//! rustls stops at the first problem it meets. When verification fails, depprobe
//! checks the captured chain itself so that every problem is reported (an expired
//! certificate from an unknown CA is both), and reports each certificate's facts
//! whether verification passed or not.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use depprobe_config::ExpiryWindow;

use crate::outcome::{CertFacts, Finding, FindingType, Problem, Severity, human_delta, rfc3339};
use crate::taxonomy::ErrorType;

/// The facts of every certificate that parses (unparseable ones are skipped and
/// reported by [`problems`]).
pub fn facts(chain: &[CertificateDer<'_>]) -> Vec<CertFacts> {
    chain.iter().filter_map(|der| cert_facts(der)).collect()
}

/// Certificates whose facts are remembered at most; past that the memo starts over.
const MEMO_LIMIT: usize = 4096;

/// Facts by the SHA-256 of the certificate: a target presents the same certificate
/// run after run (and many targets share one), so it is parsed once rather than on
/// every run. Facts are a pure function of the DER bytes.
static MEMO: LazyLock<Mutex<HashMap<[u8; 32], CertFacts>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The facts of one DER certificate.
pub fn cert_facts(der: &CertificateDer<'_>) -> Option<CertFacts> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    let key: [u8; 32] = digest.as_ref().try_into().ok()?;
    if let Some(f) = MEMO.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Some(f);
    }
    let facts = parse_facts(der, &key)?;
    if let Ok(mut m) = MEMO.lock() {
        if m.len() >= MEMO_LIMIT {
            m.clear();
        }
        m.insert(key, facts.clone());
    }
    Some(facts)
}

fn parse_facts(der: &CertificateDer<'_>, sha256: &[u8; 32]) -> Option<CertFacts> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let validity = cert.validity();
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                GeneralName::IPAddress(ip) => ip_text(ip),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let (key_type, key_bits) = key_description(&cert);
    Some(CertFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: unix(validity.not_before.timestamp()),
        not_after: unix(validity.not_after.timestamp()),
        sha256: hex(sha256),
        sans,
        key_type,
        key_bits,
        is_ca: cert.is_ca(),
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => {
            let a: [u8; 4] = bytes.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(a).to_string())
        }
        16 => {
            let a: [u8; 16] = bytes.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(a).to_string())
        }
        _ => None,
    }
}

fn key_description(cert: &X509Certificate<'_>) -> (String, Option<u32>) {
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => ("RSA".into(), Some(rsa.key_size() as u32)),
        Ok(PublicKey::EC(ec)) => {
            let bits = ec.key_size() as u32;
            let curve = match bits {
                256 => "EC P-256".to_owned(),
                384 => "EC P-384".to_owned(),
                521 | 528 => "EC P-521".to_owned(),
                other => format!("EC {other}-bit"),
            };
            (curve, Some(bits))
        }
        _ => {
            let oid = cert.public_key().algorithm.algorithm.to_id_string();
            let name = match oid.as_str() {
                "1.3.101.112" => "Ed25519",
                "1.3.101.113" => "Ed448",
                _ => "unknown",
            };
            (name.into(), None)
        }
    }
}

fn unix(ts: i64) -> SystemTime {
    if ts >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// SHA-256 of the certificate's subject public key info (what a pin names).
pub fn spki_sha256(der: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.public_key().raw);
    digest.as_ref().try_into().ok()
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// "leaf", "intermediate #1", ...
pub fn position(index: usize) -> String {
    if index == 0 {
        "leaf".to_owned()
    } else {
        format!("intermediate #{index}")
    }
}

/// A problem for every certificate of the chain outside its validity dates at `now`.
pub(crate) fn validity_problems(facts: &[CertFacts], now: SystemTime) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, c) in facts.iter().enumerate() {
        if now > c.not_after {
            out.push(Problem {
                class: ErrorType::TlsCertExpired,
                message: format!(
                    "certificate {} ({}) expired {} (not after {}, issued by {})",
                    c.short_name(),
                    position(i),
                    human_delta(now, c.not_after)
                        .trim_end_matches(" ago")
                        .to_owned()
                        + " ago",
                    rfc3339(c.not_after),
                    crate::outcome::common_name(&c.issuer)
                ),
            });
        } else if now < c.not_before {
            out.push(Problem {
                class: ErrorType::TlsCertNotYetValid,
                message: format!(
                    "certificate {} ({}) is not valid before {} ({})",
                    c.short_name(),
                    position(i),
                    rfc3339(c.not_before),
                    human_delta(now, c.not_before)
                ),
            });
        }
    }
    out
}

/// Every problem of a chain that failed verification, judged at `now` for `name`.
pub fn problems(
    chain: &[CertificateDer<'static>],
    facts: &[CertFacts],
    name: &ServerName<'static>,
    verifier: &WebPkiServerVerifier,
    now: SystemTime,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(leaf) = chain.first() else {
        out.push(Problem {
            class: ErrorType::TlsBadCertificate,
            message: "the server presented no certificate".into(),
        });
        return out;
    };
    if facts.len() != chain.len() {
        out.push(Problem {
            class: ErrorType::TlsBadCertificate,
            message: "a certificate of the chain cannot be parsed".into(),
        });
    }

    out.extend(validity_problems(facts, now));

    if let Ok(ee) = webpki::EndEntityCert::try_from(leaf)
        && ee.verify_is_valid_for_subject_name(name).is_err()
    {
        let covers = facts
            .first()
            .map(|f| f.sans.join(", "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "no names".into());
        out.push(Problem {
            class: ErrorType::TlsHostnameMismatch,
            message: format!(
                "the certificate is not valid for {} (it covers {covers})",
                name.to_str()
            ),
        });
    }

    // Trust, judged at a moment when every certificate is valid, so that expiry does
    // not hide an untrusted issuer (or the reverse).
    let judge_at = trust_time(facts, now);
    let intermediates = &chain[1..];
    let trust = verifier.verify_server_cert(leaf, intermediates, name, &[], judge_at);
    if let Err(rustls::Error::InvalidCertificate(e)) = trust {
        use rustls::CertificateError as C;
        match e {
            C::UnknownIssuer => out.push(Problem {
                class: ErrorType::TlsUnknownIssuer,
                message: super::tls::words::untrusted(facts),
            }),
            C::Revoked => out.push(Problem {
                class: ErrorType::TlsCertRevoked,
                message: "a certificate of the chain is revoked by the configured CRL".into(),
            }),
            C::BadSignature | C::BadEncoding | C::UnhandledCriticalExtension => {
                let (class, message) = super::classify::classify(
                    &rustls::Error::InvalidCertificate(e),
                    super::classify::ClientAuth::default(),
                );
                out.push(Problem { class, message });
            }
            _ => {}
        }
    }
    out
}

/// A moment inside every certificate's validity if there is one, else `now`.
pub(crate) fn trust_moment(facts: &[CertFacts], now: SystemTime) -> SystemTime {
    let latest_start = facts.iter().map(|c| c.not_before).max();
    let earliest_end = facts.iter().map(|c| c.not_after).min();
    match (latest_start, earliest_end) {
        (Some(s), Some(e)) if s < e && (now < s || now > e) => {
            s + (e.duration_since(s).unwrap_or_default() / 2)
        }
        _ => now,
    }
}

/// [`trust_moment`] for rustls.
fn trust_time(facts: &[CertFacts], now: SystemTime) -> UnixTime {
    let t = trust_moment(facts, now);
    UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

/// `cert_expiring` findings for every certificate of the chain that expires within
/// its `warn` window (critical within `critical`); windows given as a share are
/// taken of each certificate's own lifetime.
pub fn expiry_findings(
    chain: &[CertFacts],
    now: SystemTime,
    warn: &ExpiryWindow,
    critical: &ExpiryWindow,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, c) in chain.iter().enumerate() {
        let left = c.seconds_left(now);
        let lifetime = lifetime(c);
        let window = warn.resolve(lifetime).max(critical.resolve(lifetime));
        if left <= 0.0 || left > window.as_secs_f64() {
            continue;
        }
        let severity = if left <= critical.resolve(lifetime).as_secs_f64() {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let days = left / 86_400.0;
        let share_left = share_left(left, lifetime);
        out.push(
            Finding::new(
                FindingType::CERT_EXPIRING,
                severity,
                format!(
                    "certificate {} ({}) expires {} ({}; {}% of its {} lifetime left); renew it{}",
                    c.short_name(),
                    position(i),
                    human_delta(now, c.not_after),
                    rfc3339(c.not_after),
                    share_left,
                    lifetime_text(lifetime),
                    if severity == Severity::Critical {
                        " now"
                    } else {
                        ""
                    }
                ),
            )
            .with("subject", c.subject.clone())
            .with("issuer", c.issuer.clone())
            .with("position", position(i))
            .with("not_before", rfc3339(c.not_before))
            .with("not_after", rfc3339(c.not_after))
            .with("days_left", (days * 10.0).floor() / 10.0)
            .with(
                "lifetime_days",
                (lifetime.as_secs_f64() / 86_400.0 * 10.0).round() / 10.0,
            )
            .with("share_left_percent", share_left)
            .with("sha256", c.sha256.clone()),
        );
    }
    out
}

/// How long the certificate is valid in all (zero when its dates are reversed).
pub fn lifetime(c: &CertFacts) -> Duration {
    c.not_after.duration_since(c.not_before).unwrap_or_default()
}

/// The percentage of `lifetime` that `left` seconds are, to one decimal.
fn share_left(left: f64, lifetime: Duration) -> f64 {
    let total = lifetime.as_secs_f64();
    if total <= 0.0 {
        return 0.0;
    }
    ((left / total * 1000.0).floor() / 10.0).clamp(0.0, 100.0)
}

/// "90-day", "6-hour".
fn lifetime_text(lifetime: Duration) -> String {
    let secs = lifetime.as_secs();
    if secs >= 2 * 86_400 {
        format!("{}-day", (secs + 43_200) / 86_400)
    } else {
        format!("{}-hour", (secs + 1_800) / 3_600)
    }
}
