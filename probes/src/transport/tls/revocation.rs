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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crl_without_a_file_has_no_dates() {
        let dates = CrlDates::from_spec(&TlsSpec::default());
        assert!(dates.findings(SystemTime::now()).is_empty());
    }
}
