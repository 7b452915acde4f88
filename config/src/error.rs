//! Configuration errors: each names the file, line, column and key path.

use std::fmt;
use std::path::PathBuf;

use crate::tree::Loc;

/// One problem in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line (0 when the whole file is concerned).
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// The key path, e.g. `probes[2].tls.ca_file` (empty for the document).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one configuration, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

/// Collects errors while a configuration is checked.
#[derive(Debug)]
pub(crate) struct Errors {
    pub file: String,
    pub list: Vec<ConfigError>,
}

impl Errors {
    pub fn new(file: &str) -> Self {
        Errors {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    pub fn push(&mut self, loc: Loc, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            line: loc.line,
            column: loc.column,
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn push_de(&mut self, e: crate::de::DeError, fallback: Loc, fallback_path: &str) {
        let loc = e.loc.unwrap_or(fallback);
        let path = e.path.clone().unwrap_or_else(|| fallback_path.to_owned());
        self.push(loc, path, e.message);
    }
}
