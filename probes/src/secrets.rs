//! The one secret reader: a password, token or key from the configuration or from
//! a file read again on every run (a rotated Kubernetes token is picked up without
//! a restart), bounded in size and time (`depprobe_config::files`), with the
//! failure classes every kind shares; a secret read for a run is scrubbed from
//! everything the run reports.

use depprobe_config::{Secret, SecretError, SecretSource};

use crate::run::{ProbeError, Run};
use crate::taxonomy::{ErrorType, Phase};

/// Reads a secret for this run; a missing one is `credential_missing` (phase `auth`).
pub fn read_secret(src: &SecretSource, what: &str) -> Result<Secret, ProbeError> {
    src.read().map_err(|e| {
        let class = match e {
            SecretError::Missing { .. } | SecretError::Empty { .. } => ErrorType::CredentialMissing,
            SecretError::Unreadable { .. } => ErrorType::CredentialInvalid,
        };
        ProbeError::new(class, Phase::Auth, format!("{what}: {e}"))
    })
}

/// Reads the secret of `src`, if one is configured, for this run: it is scrubbed
/// from the outcome.
pub fn read_for_run(
    run: &mut Run<'_>,
    src: Option<&SecretSource>,
    what: &str,
) -> Result<Option<Secret>, ProbeError> {
    let Some(src) = src else { return Ok(None) };
    let secret = read_secret(src, what)?;
    run.secret(&secret);
    Ok(Some(secret))
}
