//! Whether the revocation data a probe relies on is current.
//!
//! rustls checks a certificate against the CRLs of `tls.crl_file` without looking at
//! their dates: a CRL past its `nextUpdate` still says "not revoked", about a past
//! that may have changed since. Such a CRL is a `crl_stale` warning on every run
//! that relies on it, so that the file's refresh job is fixed before a revoked
//! certificate goes unnoticed.

use std::time::{Duration, SystemTime};

use depprobe_config::TlsSpec;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::outcome::{Finding, FindingType, Severity, common_name, human_delta, rfc3339};

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
