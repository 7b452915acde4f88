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
//! an `ocsp_missing` critical finding. A staple's content is judged in [`super::ocsp`].

use std::path::{Path, PathBuf};
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

/// When each configured CRL stops being current, and where the CRLs are (to name
/// the entry that revoked a certificate).
#[derive(Debug, Default)]
pub(super) struct CrlDates {
    /// (issuer DN, nextUpdate) of every CRL that states one.
    next_updates: Vec<(String, SystemTime)>,
    /// `tls.crl_file` and `tls.crl_dir`, as configured.
    sources: Vec<PathBuf>,
}

/// Files of a CRL directory read at most when naming a revocation.
const MAX_DIR_FILES: usize = 1024;

/// RFC 5280's name of a CRLReason.
fn reason_name(code: u8) -> String {
    match code {
        0 => "unspecified".into(),
        1 => "keyCompromise".into(),
        2 => "cACompromise".into(),
        3 => "affiliationChanged".into(),
        4 => "superseded".into(),
        5 => "cessationOfOperation".into(),
        6 => "certificateHold".into(),
        8 => "removeFromCRL".into(),
        9 => "privilegeWithdrawn".into(),
        10 => "aACompromise".into(),
        other => format!("reason code {other}"),
    }
}

/// The CRLs of one file (PEM blocks, or one DER CRL).
fn crls_in(path: &Path) -> Vec<CertificateRevocationListDer<'static>> {
    let Ok(bytes) = super::roots::read(path) else {
        return Vec::new();
    };
    if bytes.starts_with(b"-----") || bytes.iter().take(64).any(|b| *b == b'-') {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .filter_map(Result::ok)
            .collect()
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    }
}

impl CrlDates {
    /// The dates of `spec`'s CRL file (already checked by the verifier's setup; a
    /// CRL that does not parse here is one rustls parsed, and is left out).
    pub(super) fn from_spec(spec: &TlsSpec) -> CrlDates {
        let sources: Vec<PathBuf> = spec.crl_file.iter().chain(&spec.crl_dir).cloned().collect();
        let Some(path) = &spec.crl_file else {
            return CrlDates {
                sources,
                ..CrlDates::default()
            };
        };
        let next_updates = crls_in(path)
            .into_iter()
            .filter_map(|der| {
                let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).ok()?;
                let next = crl.next_update()?.timestamp();
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(next).ok()?);
                Some((crl.issuer().to_string(), at))
            })
            .collect();
        CrlDates {
            next_updates,
            sources,
        }
    }

    /// The CRL entry that revokes a certificate of the chain, in words: which
    /// certificate, its serial, when, why, and whose CRL says so. The CRLs are read
    /// again here (a revocation is rare; keeping every entry of every CRL in memory
    /// would cost each probe the whole list).
    pub(super) fn revocation_words(&self, facts: &[CertFacts], now: SystemTime) -> Option<String> {
        let files = self.sources.iter().flat_map(|source| {
            if source.is_dir() {
                std::fs::read_dir(source)
                    .map(|dir| {
                        dir.filter_map(Result::ok)
                            .take(MAX_DIR_FILES)
                            .map(|e| e.path())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            } else {
                vec![source.clone()]
            }
        });
        for path in files {
            for der in crls_in(&path) {
                let Ok((_, crl)) = CertificateRevocationList::from_der(der.as_ref()) else {
                    continue;
                };
                let issuer = crl.issuer().to_string();
                for (i, cert) in facts.iter().enumerate() {
                    if cert.issuer != issuer {
                        continue;
                    }
                    let Some(entry) = crl
                        .iter_revoked_certificates()
                        .find(|e| e.raw_serial_as_string() == cert.serial)
                    else {
                        continue;
                    };
                    let when = unix_time(entry.revocation_date.timestamp());
                    let reason = entry
                        .reason_code()
                        .map(|(_, code)| reason_name(code.0))
                        .unwrap_or_else(|| "none given".into());
                    return Some(format!(
                        "certificate {} ({}), serial {}, was revoked {} ({}), reason: {reason}, by the CRL of {} in {}",
                        cert.short_name(),
                        crate::transport::chain::position(i),
                        cert.serial,
                        human_delta(now, when),
                        rfc3339(when),
                        common_name(&issuer),
                        path.display()
                    ));
                }
            }
        }
        None
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

/// Unix seconds as a time (before 1970 clamps to the epoch).
fn unix_time(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crl_without_a_file_has_no_dates() {
        let dates = CrlDates::from_spec(&TlsSpec::default());
        assert!(dates.findings(SystemTime::now()).is_empty());
    }
}
