//! `kind: credential`: a local secret the application depends on: a token file
//! (often a JWT), a certificate with its key, or an environment variable.

use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::{Check, Checked};
use depprobe_config::ConfigDuration;

/// Settings of a `credential` probe. Exactly one of `file`, `cert_file`, `env`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// A token file (a JWT is recognised and its `exp`/`nbf` checked).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A PEM certificate (or chain); every certificate's expiry is checked.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file`; checked to match the certificate.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// An environment variable of the agent's process that must be set and non-empty.
    #[serde(default)]
    pub env: Option<String>,
    /// `auto` (a JWT is recognised), `jwt` (the secret must be a JWT), `opaque`
    /// (never parsed).
    #[serde(default)]
    pub format: CredentialFormat,
    /// `credential_expiring` when less than this is left (default: a fifth of a JWT's
    /// lifetime when it has `iat`, else 14 days).
    #[serde(default)]
    pub warn_before: Option<ConfigDuration>,
    /// Critical when less than this is left (default: a twentieth of a JWT's
    /// lifetime when it has `iat`, else 3 days).
    #[serde(default)]
    pub critical_before: Option<ConfigDuration>,
}

/// How a token is read.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CredentialFormat {
    /// A JWT is recognised by its shape; anything else is an opaque token.
    #[default]
    Auto,
    /// The secret must be a JWT.
    Jwt,
    /// The secret is never parsed; presence is all that is checked.
    Opaque,
}

impl Checked for CredentialSpec {
    fn check(&self, check: &mut Check<'_>) {
        let set = [
            self.file.is_some(),
            self.cert_file.is_some(),
            self.env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            check.error("", "set exactly one of `file`, `cert_file` or `env`");
        }
        if self.key_file.is_some() && self.cert_file.is_none() {
            check.error("key_file", "`key_file` goes with `cert_file`");
        }
        if let Some(name) = &self.env
            && (name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            check.error(
                "env",
                format!("`{name}` is not an environment variable name"),
            );
        }
        if let (Some(w), Some(c)) = (self.warn_before, self.critical_before)
            && c > w
        {
            check.error(
                "critical_before",
                "`critical_before` must not exceed `warn_before`",
            );
        }
    }
}

impl depprobe_config::KindSpec for CredentialSpec {}
