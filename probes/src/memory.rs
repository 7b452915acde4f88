//! What a probe remembers between its runs, in one place.
//!
//! Change detection needs the last run: the leaf certificate (a new fingerprint is
//! `cert_changed`, a new issuer `issuer_changed`: incident 02, a renewal that fell
//! back to an internal CA), and the server's role (a new role is `role_changed`: a
//! failover happened). Every kind reaches this memory through its [`crate::Run`]
//! ([`crate::Run::role`]; certificates are compared when the run finishes), so the
//! outcome is complete when it leaves the probe and nothing downstream edits it.
//! The memory is plain data (serde), ready to outlive the process.

use serde::{Deserialize, Serialize};

use crate::outcome::{Finding, FindingType, Severity, TlsFacts, common_name};

/// The leaf certificate of the last run that reached TLS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenLeaf {
    /// SHA-256 fingerprint.
    pub sha256: String,
    /// Issuer DN.
    pub issuer: String,
    /// Subject DN.
    pub subject: String,
}

/// One probe's memory of its past runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The leaf certificate seen last.
    pub leaf: Option<SeenLeaf>,
    /// The role the server had when last learned (`primary`, `standby`, `replica`...).
    pub role: Option<String>,
}

impl Memory {
    /// Compares the leaf of `tls` with the one seen last and remembers it: the
    /// `cert_changed` (and `issuer_changed`) findings of a change.
    pub fn leaf_changes(&mut self, tls: &TlsFacts) -> Vec<Finding> {
        let Some(leaf) = tls.leaf() else {
            return Vec::new();
        };
        let seen = SeenLeaf {
            sha256: leaf.sha256.clone(),
            issuer: leaf.issuer.clone(),
            subject: leaf.subject.clone(),
        };
        let mut findings = Vec::new();
        if let Some(before) = &self.leaf
            && before.sha256 != seen.sha256
        {
            if before.issuer != seen.issuer {
                findings.push(issuer_changed(before, &seen));
            }
            findings.push(cert_changed(before, &seen));
        }
        self.leaf = Some(seen);
        findings
    }

    /// Remembers `role`; a different role at the last run is a `role_changed`
    /// finding.
    pub fn role_change(&mut self, role: &str) -> Option<Finding> {
        let before = self.role.replace(role.to_owned())?;
        (before != role).then(|| {
            Finding::new(
                FindingType::ROLE_CHANGED,
                Severity::Warning,
                format!(
                    "the server was a {before} at the last run and is now a {role}: a failover or switchover happened"
                ),
            )
            .with("from", before.clone())
            .with("to", role)
        })
    }
}

fn issuer_changed(before: &SeenLeaf, seen: &SeenLeaf) -> Finding {
    Finding::new(
        FindingType::ISSUER_CHANGED,
        Severity::Critical,
        format!(
            "the certificate's issuer changed from {} to {}: check the renewal (did it fall back to another CA?)",
            common_name(&before.issuer),
            common_name(&seen.issuer)
        ),
    )
    .with("old_issuer", before.issuer.clone())
    .with("new_issuer", seen.issuer.clone())
}

fn cert_changed(before: &SeenLeaf, seen: &SeenLeaf) -> Finding {
    Finding::new(
        FindingType::CERT_CHANGED,
        Severity::Warning,
        format!(
            "the certificate changed (sha256 {}… -> {}…, issued by {})",
            short(&before.sha256),
            short(&seen.sha256),
            common_name(&seen.issuer)
        ),
    )
    .with("old_sha256", before.sha256.clone())
    .with("new_sha256", seen.sha256.clone())
}

/// The first 12 characters of a fingerprint.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_change_is_reported_once() {
        let mut memory = Memory::default();
        assert!(memory.role_change("standby").is_none(), "first run");
        assert!(memory.role_change("standby").is_none());
        let f = memory.role_change("primary").unwrap();
        assert_eq!(f.kind, FindingType::ROLE_CHANGED);
        assert_eq!(f.facts["from"], "standby");
        assert!(memory.role_change("primary").is_none());
    }
}
