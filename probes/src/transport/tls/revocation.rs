//! Whether the revocation data a probe relies on is current.
//!
//! rustls checks a certificate against the CRLs of `tls.crl_file` without looking at
//! their dates: a CRL past its `nextUpdate` still says "not revoked", about a past
//! that may have changed since. Such a CRL is a `crl_stale` warning on every run
//! that relies on it, so that the file's refresh job is fixed before a revoked
//! certificate goes unnoticed.
//!
//! A certificate that demands a stapled OCSP response (must-staple, RFC 7633) from a
//! server that staples none is refused by clients that honour the demand (Firefox):
//! an `ocsp_missing` critical finding. The staple's content is not judged here.

use std::time::{Duration, SystemTime};

use depprobe_config::TlsSpec;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;

use crate::outcome::{
    CertFacts, Finding, FindingType, Severity, common_name, human_delta, rfc3339,
};

/// id-pe-tlsfeature (RFC 7633).
const TLS_FEATURE_OID: &str = "1.3.6.1.5.5.7.1.24";

/// The DER of `SEQUENCE { INTEGER 5 }` inside the extension: `status_request`, the
/// only feature certificates carry in practice (and the one that means must-staple).
const STATUS_REQUEST: &[u8] = &[0x02, 0x01, 0x05];

/// Whether the certificate demands a stapled OCSP response.
fn must_staple(der: &CertificateDer<'_>) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return false;
    };
    cert.extensions().iter().any(|e| {
        e.oid.to_id_string() == TLS_FEATURE_OID
            && e.value
                .windows(STATUS_REQUEST.len())
                .any(|w| w == STATUS_REQUEST)
    })
}

/// The `ocsp_missing` finding of a must-staple leaf served without a staple.
pub(super) fn missing_staple(
    chain: &[CertificateDer<'static>],
    facts: &[CertFacts],
    stapled: bool,
) -> Option<Finding> {
    let (leaf, leaf_facts) = (chain.first()?, facts.first()?);
    if stapled || !must_staple(leaf) {
        return None;
    }
    Some(
        Finding::new(
            FindingType::OCSP_MISSING,
            Severity::Critical,
            format!(
                "certificate {} demands a stapled OCSP response (must-staple) and the server sent none: clients that honour it (Firefox) refuse the connection; enable OCSP stapling on the server",
                leaf_facts.short_name()
            ),
        )
        .with("subject", leaf_facts.subject.clone())
        .with("sha256", leaf_facts.sha256.clone()),
    )
}

/// When each configured CRL stops being current.
#[derive(Debug, Default)]
pub(super) struct CrlDates {
    /// (issuer DN, nextUpdate) of every CRL that states one.
    next_updates: Vec<(String, SystemTime)>,
}

impl CrlDates {
    /// The dates of `spec`'s CRL file (already checked by the verifier's setup; a
    /// CRL that does not parse here is one rustls parsed, and is left out).
    pub(super) fn from_spec(spec: &TlsSpec) -> CrlDates {
        let Some(path) = &spec.crl_file else {
            return CrlDates::default();
        };
        let Ok(pem) = std::fs::read(path) else {
            return CrlDates::default();
        };
        let next_updates = CertificateRevocationListDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .filter_map(|der| {
                let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).ok()?;
                let next = crl.next_update()?.timestamp();
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(next).ok()?);
                Some((crl.issuer().to_string(), at))
            })
            .collect();
        CrlDates { next_updates }
    }

    /// A `crl_stale` warning for each CRL past its `nextUpdate` at `now`.
    pub(super) fn findings(&self, now: SystemTime) -> Vec<Finding> {
        self.next_updates
            .iter()
            .filter(|(_, next)| *next < now)
            .map(|(issuer, next)| {
                Finding::new(
                    FindingType::CRL_STALE,
                    Severity::Warning,
                    format!(
                        "the CRL of {} in tls.crl_file is stale: its next update was due {} ({}); revocation is judged on old data, refresh the file",
                        common_name(issuer),
                        human_delta(now, *next),
                        rfc3339(*next)
                    ),
                )
                .with("issuer", issuer.clone())
                .with("next_update", rfc3339(*next))
            })
            .collect()
    }
}

/// What a stapled OCSP response says about the leaf.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StapledStatus {
    /// Not revoked, current until `next_update` (if stated).
    Good(Option<SystemTime>),
    /// Revoked at this time.
    Revoked(Option<SystemTime>),
}

/// A DER element: its tag and content. Lengths past 4 bytes are refused, so
/// reading is linear and bounded by the input.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements inside a constructed element's content.
fn children(mut content: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((tag, value, rest)) = tlv(content) {
        out.push((tag, value));
        content = rest;
    }
    out
}

/// `YYYYMMDDHHMMSSZ` (GeneralizedTime as DER writes it).
fn generalized_time(text: &[u8]) -> Option<SystemTime> {
    let t = std::str::from_utf8(text).ok()?;
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(8..10)?, num(10..12)?, num(12..14)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The status a stapled OCSP response (DER) gives the certificate with serial
/// number `serial` (DER INTEGER content); `None` when it says nothing about it or
/// cannot be read. The response's signature is not checked: a staple here informs,
/// it never clears a certificate.
pub(super) fn stapled_status(response: &[u8], serial: &[u8]) -> Option<StapledStatus> {
    let (_, outer, _) = tlv(response)?;
    let outer = children(outer);
    if outer.first()? != &(0x0a, &[0u8][..]) {
        return None; // not `successful`
    }
    let (_, bytes) = outer.iter().find(|(t, _)| *t == 0xa0)?;
    let (_, response_bytes, _) = tlv(bytes)?;
    let (_, basic) = *children(response_bytes).iter().find(|(t, _)| *t == 0x04)?;
    let (_, basic, _) = tlv(basic)?;
    let (_, tbs, _) = tlv(basic)?;
    let tbs = children(tbs);
    let at = tbs.iter().position(|(t, _)| *t == 0x18)?;
    let (_, responses) = tbs.get(at + 1..)?.iter().find(|(t, _)| *t == 0x30)?;
    children(responses)
        .into_iter()
        .find_map(|(_, single)| single_status(single, serial))
}

/// The status of one SingleResponse, if it is about `serial`.
fn single_status(single: &[u8], serial: &[u8]) -> Option<StapledStatus> {
    let parts = children(single);
    let (_, cert_id) = parts.first()?;
    let (_, id_serial) = *children(cert_id).iter().find(|(t, _)| *t == 0x02)?;
    if id_serial != serial {
        return None;
    }
    let (status_tag, status) = parts.get(1)?;
    let next_update = parts
        .iter()
        .find(|(t, _)| *t == 0xa0)
        .and_then(|(_, v)| tlv(v))
        .and_then(|(_, t, _)| generalized_time(t));
    match status_tag {
        0x80 => Some(StapledStatus::Good(next_update)),
        0xa1 => Some(StapledStatus::Revoked(
            tlv(status).and_then(|(_, t, _)| generalized_time(t)),
        )),
        _ => None,
    }
}

/// The findings of a stapled response: `ocsp_revoked` (critical) when it says the
/// leaf is revoked, `ocsp_stale` (warning) when it is past its next update.
pub(super) fn staple_findings(
    response: &[u8],
    leaf: &CertificateDer<'_>,
    facts: &CertFacts,
    now: SystemTime,
) -> Option<Finding> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let finding = |kind, severity, message: String| {
        Finding::new(kind, severity, message)
            .with("subject", facts.subject.clone())
            .with("sha256", facts.sha256.clone())
    };
    match stapled_status(response, cert.raw_serial())? {
        StapledStatus::Revoked(at) => Some(finding(
            FindingType::OCSP_REVOKED,
            Severity::Critical,
            format!(
                "the server staples an OCSP response saying certificate {} is revoked{}: clients that check it refuse the connection; replace the certificate",
                facts.short_name(),
                at.map(|t| format!(" (since {})", rfc3339(t)))
                    .unwrap_or_default()
            ),
        )),
        StapledStatus::Good(Some(next)) if next < now => Some(finding(
            FindingType::OCSP_STALE,
            Severity::Warning,
            format!(
                "the stapled OCSP response for certificate {} is stale: its next update was due {} ({}); the server's stapling does not refresh",
                facts.short_name(),
                human_delta(now, next),
                rfc3339(next)
            ),
        )),
        StapledStatus::Good(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_staples_say_nothing() {
        for bytes in [
            &b""[..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            &[0x30, 0x05, 0x0a, 0x01, 0x00],
            &[0x30, 0x03, 0x0a, 0x01, 0x01],
        ] {
            assert_eq!(stapled_status(bytes, &[1]), None, "{bytes:?}");
        }
    }

    #[test]
    fn generalized_times_read_as_utc() {
        let t = generalized_time(b"20240229120000Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_709_208_000);
        assert_eq!(generalized_time(b"2024"), None);
    }
}
