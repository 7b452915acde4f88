//! The leaf's revocation status by OCSP: the response the server staples, and with
//! `tls.ocsp: online` the responder the leaf names.
//!
//! Only a verified response counts ([`response`]): one about this leaf, signed by
//! its issuer or a responder the issuer delegated to. A verified `revoked` fails the
//! run with `tls_cert_revoked` (phase `tls`); a stale, unknown or unusable answer,
//! and a responder that cannot be asked, are findings: like browsers, the probe
//! fails soft when revocation data is missing, and says so.

mod online;
mod response;

use std::time::SystemTime;

use rustls::pki_types::CertificateDer;

pub(crate) use online::Online;
use response::Issuer;
pub use response::{Answer, ReadError, Status};

use crate::outcome::{CertFacts, Finding, FindingType, Problem, Severity, human_delta, rfc3339};
use crate::taxonomy::ErrorType;

/// What OCSP says of one handshake's leaf.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Warnings about the answers (stale, unknown, unusable, unavailable).
    pub(crate) findings: Vec<Finding>,
    /// A verified answer saying the leaf is revoked.
    pub(crate) revoked: Option<Problem>,
}

/// What one handshake gives the OCSP check.
pub(crate) struct Presented<'a> {
    /// The chain, leaf first.
    pub(crate) chain: &'a [CertificateDer<'static>],
    /// Its facts.
    pub(crate) facts: &'a [CertFacts],
    /// The stapled response (empty: none).
    pub(crate) staple: &'a [u8],
    /// Certificates of `tls.ca_file`, where a leaf's issuer may be when the server
    /// does not send it.
    pub(crate) anchors: &'a [CertificateDer<'static>],
}

/// Reads `response` as a probe reads a staple for `chain`'s leaf, its issuer taken
/// from the chain or `anchors`: the verified answer, or why it does not count. (The
/// fuzzer's entry, and a tool's.)
pub fn read_staple(
    response: &[u8],
    chain: &[CertificateDer<'static>],
    anchors: &[CertificateDer<'static>],
    now: SystemTime,
) -> Result<Answer, ReadError> {
    let leaf = chain.first().ok_or(ReadError::NoIssuer)?;
    let candidates: Vec<CertificateDer<'static>> =
        chain[1..].iter().chain(anchors).cloned().collect();
    let issuer = Issuer::find(leaf, &candidates).ok_or(ReadError::NoIssuer)?;
    let serial = response::serial(leaf).ok_or(ReadError::NoIssuer)?;
    response::read(response, &serial, &issuer, now)
}

/// Judges the staple, then (when `online` and no current staple answered) asks
/// the responder.
pub(crate) async fn judge(p: Presented<'_>, online: Option<&Online>, now: SystemTime) -> Verdict {
    let mut verdict = Verdict::default();
    let (Some(leaf), Some(facts)) = (p.chain.first(), p.facts.first()) else {
        return verdict;
    };
    let candidates: Vec<CertificateDer<'static>> =
        p.chain[1..].iter().chain(p.anchors).cloned().collect();
    let issuer = Issuer::find(leaf, &candidates);
    let serial = response::serial(leaf);
    let mut answered = false;
    if !p.staple.is_empty() {
        let source = "stapled by the server";
        match (&issuer, &serial) {
            (Some(issuer), Some(serial)) => match response::read(p.staple, serial, issuer, now) {
                Ok(answer) => answered = verdict.take(&answer, facts, source, now),
                Err(e) => verdict.findings.push(finding(
                    FindingType::OCSP_INVALID,
                    facts,
                    format!(
                        "the OCSP response stapled for certificate {} is not usable: {e}; clients that check staples refuse the connection",
                        facts.short_name()
                    ),
                )),
            },
            _ => verdict.findings.push(no_issuer(
                FindingType::OCSP_INVALID,
                facts,
                "the stapled OCSP response cannot be checked",
            )),
        }
    }
    if let Some(online) = online.filter(|_| !answered) {
        match (&issuer, &serial) {
            (Some(issuer), Some(serial)) => match online.ask(leaf, serial, issuer, now).await {
                Ok((answer, url)) => {
                    verdict.take(&answer, facts, &format!("answered by {url}"), now);
                }
                Err(e) => verdict.findings.push(finding(
                    FindingType::OCSP_UNAVAILABLE,
                    facts,
                    format!(
                        "the revocation status of certificate {} is unknown: {e}",
                        facts.short_name()
                    ),
                )),
            },
            _ => verdict.findings.push(no_issuer(
                FindingType::OCSP_UNAVAILABLE,
                facts,
                "the OCSP responder cannot be asked",
            )),
        }
    }
    verdict
}

impl Verdict {
    /// Takes a verified answer in; whether it was current.
    fn take(&mut self, answer: &Answer, facts: &CertFacts, source: &str, now: SystemTime) -> bool {
        let stale = answer.next_update.filter(|next| *next < now);
        match answer.status {
            Status::Revoked(at) => {
                self.revoked = Some(Problem {
                    class: ErrorType::TlsCertRevoked,
                    message: format!(
                        "certificate {} was revoked on {} (OCSP, {source})",
                        facts.short_name(),
                        rfc3339(at)
                    ),
                });
                return true;
            }
            Status::Unknown => self.findings.push(finding(
                FindingType::OCSP_UNKNOWN,
                facts,
                format!(
                    "the OCSP responder does not know certificate {} ({source}): its CA has no record of issuing it; ask the CA",
                    facts.short_name()
                ),
            )),
            Status::Good => {}
        }
        if let Some(next) = stale {
            self.findings.push(
                finding(
                    FindingType::OCSP_STALE,
                    facts,
                    format!(
                        "the OCSP response for certificate {} ({source}) is stale: its next update was due {} ({}); clients may reject it",
                        facts.short_name(),
                        human_delta(now, next),
                        rfc3339(next)
                    ),
                )
                .with("next_update", rfc3339(next)),
            );
        }
        answer.status == Status::Good && stale.is_none()
    }
}

/// An OCSP finding about the leaf: a warning.
fn finding(kind: FindingType, facts: &CertFacts, message: String) -> Finding {
    Finding::new(kind, Severity::Warning, message)
        .with("subject", facts.subject.clone())
        .with("sha256", facts.sha256.clone())
}

/// The finding when the leaf's issuer is not at hand, so no answer can be checked.
fn no_issuer(kind: FindingType, facts: &CertFacts, what: &str) -> Finding {
    finding(
        kind,
        facts,
        format!(
            "{what} for certificate {}: its issuer's certificate ({}) is neither in the chain the server sent nor in tls.ca_file",
            facts.short_name(),
            facts.issuer
        ),
    )
}
