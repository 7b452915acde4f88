//! libpq's rule for the client's private key file: it refuses a key that other
//! users can read, before it connects.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// The process's effective uid, as the owner of `/proc/self` says (no unsafe call).
fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// libpq (`fe-secure-openssl.c`): a key owned by the current user must not be
/// readable by group or others (0600 or less); one owned by root may be readable
/// by its group (0640 or less). Anything else fails the connection with libpq's
/// own words.
pub fn check(path: &Path) -> Result<(), ProbeError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        ProbeError::new(
            ErrorType::CredentialMissing,
            Phase::Tls,
            format!("certificate present, but not private key file \"{}\": {e}", path.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(ProbeError::new(
            ErrorType::CredentialInvalid,
            Phase::Tls,
            format!("private key file \"{}\" is not a regular file", path.display()),
        ));
    }
    let mode = meta.mode();
    let too_open = if Some(meta.uid()) == own_uid() {
        mode & 0o077 != 0
    } else if meta.uid() == 0 {
        mode & 0o037 != 0
    } else {
        false
    };
    if too_open {
        return Err(ProbeError::new(
            ErrorType::CredentialInvalid,
            Phase::Tls,
            format!(
                "private key file \"{}\" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root",
                path.display()
            ),
        ));
    }
    Ok(())
}
