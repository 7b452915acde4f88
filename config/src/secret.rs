//! Secrets: passwords and tokens that must never be printed.
//!
//! A secret is either written in the configuration (usually through `${ENV}`) or
//! named by a `*_file` key. Files are read again on every run, so a rotated
//! Kubernetes token or password is picked up without a restart.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// A secret value. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Where a secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the configuration (after `${ENV}` interpolation).
    Value(Secret),
    /// Read from this file on every run; surrounding whitespace is trimmed. Only a
    /// regular file of at most 64 KiB is read (a FIFO never is).
    File(PathBuf),
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file does not exist.
    #[error("secret file {path} does not exist")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The secret is empty.
    #[error("secret {origin} is empty")]
    Empty {
        /// `file /x` or `value`.
        origin: String,
    },
    /// The file exists but cannot be read.
    #[error("secret file {path} cannot be read: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SecretSource {
    /// Builds the source from a pair of `key` / `key_file` values; `None` when neither
    /// is set. Both set is rejected by validation before this is called.
    pub fn from_pair(value: Option<Secret>, file: Option<PathBuf>) -> Option<SecretSource> {
        match (value, file) {
            (Some(v), _) => Some(SecretSource::Value(v)),
            (None, Some(f)) => Some(SecretSource::File(f)),
            (None, None) => None,
        }
    }

    /// Reads the secret now.
    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Value(v) if v.0.is_empty() => Err(SecretError::Empty {
                origin: "value".into(),
            }),
            SecretSource::Value(v) => Ok(v.clone()),
            SecretSource::File(path) => read_file(path),
        }
    }

    /// The file, when the secret comes from one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SecretSource::File(p) => Some(p),
            SecretSource::Value(_) => None,
        }
    }
}

fn read_file(path: &Path) -> Result<Secret, SecretError> {
    let owned = path.to_owned();
    let read = crate::files::within(crate::files::READ_DEADLINE, move || {
        crate::files::read_bounded_text(&owned, crate::files::MAX_SECRET_BYTES)
    });
    match read {
        Ok(text) => {
            let value = text.trim();
            if value.is_empty() {
                Err(SecretError::Empty {
                    origin: format!("file {}", path.display()),
                })
            } else {
                Ok(Secret(value.to_owned()))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretError::Missing {
            path: path.to_owned(),
        }),
        Err(source) => Err(SecretError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn files_are_read_each_time_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        let src = SecretSource::File(path.clone());
        assert!(matches!(src.read(), Err(SecretError::Missing { .. })));
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(src.read(), Err(SecretError::Empty { .. })));
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(src.read().unwrap().expose(), "abc");
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(src.read().unwrap().expose(), "rotated");
    }

    #[test]
    fn a_huge_secret_file_is_unreadable_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge");
        std::fs::write(&path, "x".repeat(1 << 20)).unwrap();
        let e = SecretSource::File(path).read().unwrap_err();
        assert!(matches!(e, SecretError::Unreadable { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("larger than the limit of 65536 bytes"),
            "{e}"
        );
    }
}
