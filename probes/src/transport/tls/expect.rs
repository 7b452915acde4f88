//! What a chain must be besides valid: the expected issuer and the pinned keys.
//!
//! A chain that verifies can still be the wrong one: a renewal that fell back to an
//! internal CA the probe also trusts (incident 02). `tls.expect_issuer` (a regular
//! expression on the leaf's issuer DN) and `tls.pin_sha256` (SHA-256 of a subject
//! public key of any presented certificate) catch it as a critical
//! `issuer_unexpected` finding.

use depprobe_config::TlsSpec;
use depprobe_config::model::decode_pin;
use regex::Regex;
use rustls::pki_types::CertificateDer;

use super::TlsSetupError;
use crate::outcome::{CertFacts, Finding, FindingType, Severity, common_name};
use crate::transport::chain;

/// Compiled regexes are bounded: an absurd expression fails at setup, not at a run.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The expectations of one probe; empty expects nothing.
#[derive(Debug, Default)]
pub(super) struct Expected {
    issuer: Option<Regex>,
    pins: Vec<[u8; 32]>,
}

impl Expected {
    /// The expectations `spec` sets.
    pub(super) fn from_spec(spec: &TlsSpec) -> Result<Expected, TlsSetupError> {
        let issuer = match &spec.expect_issuer {
            Some(re) => Some(
                regex::RegexBuilder::new(re)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| TlsSetupError::Expectation(format!("tls.expect_issuer: {e}")))?,
            ),
            None => None,
        };
        let pins = spec
            .pin_sha256
            .iter()
            .map(|p| {
                decode_pin(p)
                    .map_err(|e| TlsSetupError::Expectation(format!("tls.pin_sha256: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Expected { issuer, pins })
    }

    /// The `issuer_unexpected` findings of a verified chain (`der` and its `facts`).
    pub(super) fn judge(
        &self,
        der: &[CertificateDer<'static>],
        facts: &[CertFacts],
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some(leaf) = facts.first() else {
            return out;
        };
        if let Some(re) = &self.issuer
            && !re.is_match(&leaf.issuer)
        {
            out.push(
                unexpected(
                    leaf,
                    format!(
                        "the certificate is issued by {}, which does not match the expected issuer /{}/: check the renewal (did it fall back to another CA?)",
                        common_name(&leaf.issuer),
                        re.as_str()
                    ),
                )
                .with("expected_issuer", re.as_str()),
            );
        }
        if !self.pins.is_empty() {
            let keys: Vec<[u8; 32]> = der.iter().filter_map(chain::spki_sha256).collect();
            if !keys.iter().any(|k| self.pins.contains(k)) {
                out.push(unexpected(
                    leaf,
                    format!(
                        "no certificate of the chain (issued by {}) carries a pinned key ({} pins configured): the chain changed keys or CA",
                        common_name(&leaf.issuer),
                        self.pins.len()
                    ),
                ));
            }
        }
        out
    }
}

/// A critical `issuer_unexpected` finding about `leaf`.
fn unexpected(leaf: &CertFacts, message: String) -> Finding {
    Finding::new(FindingType::ISSUER_UNEXPECTED, Severity::Critical, message)
        .with("subject", leaf.subject.clone())
        .with("issuer", leaf.issuer.clone())
        .with("sha256", leaf.sha256.clone())
}
