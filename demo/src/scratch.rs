//! A scratch directory for the files a case needs (CA bundles, keys, tokens).

use std::path::PathBuf;

use tempfile::TempDir;

use crate::certs::{Ca, CertError};

/// A scratch directory for the files a case needs (CA bundles, keys, tokens).
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    /// A new empty directory, removed when dropped.
    pub fn new() -> Result<Scratch, std::io::Error> {
        Ok(Scratch {
            dir: tempfile::tempdir()?,
        })
    }

    /// The path of `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` and returns the path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf, CertError> {
        let p = self.path(name);
        crate::certs::write(&p, text)?;
        Ok(p)
    }

    /// Writes `bytes` to `name` and returns the path.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, CertError> {
        let p = self.path(name);
        std::fs::write(&p, bytes).map_err(|source| CertError::Write {
            path: p.clone(),
            source,
        })?;
        Ok(p)
    }

    /// Writes the CA's certificate as `<name>.pem` and returns the path.
    pub fn ca(&self, ca: &Ca) -> Result<PathBuf, CertError> {
        self.write(&format!("{}.pem", ca.name.replace(' ', "_")), &ca.pem)
    }
}
