//! `kind: nats`: a NATS server: its INFO, TLS, a login, and a PING answered.
//!
//! `tls://host:4222` requires TLS (upgraded after the server's INFO, as every NATS
//! client does), `nats://` does not. The login is one of: a user and password (the
//! user in the URL, the password in the URL, `password` or `password_file`), a token
//! (`token` / `token_file`), or a `.creds` file (a user JWT and its NKey seed).

use std::path::PathBuf;

use serde::Deserialize;

use crate::kinds::broker_url::{BrokerLogin, BrokerTarget, BrokerUrl, KeyError, Scheme};
use depprobe_config::{Check, Checked};
use depprobe_config::ConfigDuration;
use depprobe_config::TlsSpec;
use depprobe_config::{Secret, SecretSource};

/// The schemes of `kind: nats`.
pub const SCHEMES: &[Scheme] = &[
    Scheme {
        name: "tls",
        tls: true,
        default_port: 4222,
    },
    Scheme {
        name: "nats",
        tls: false,
        default_port: 4222,
    },
];

/// Settings of a `nats` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSpec {
    /// `tls://[user[:password]@]host[:port]` or `nats://...`; a secret, since it may
    /// hold the password.
    pub url: Secret,
    /// Password of the URL's user (usually `${ENV}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Token (`auth_token`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the token, read on every run.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and NKey seed), read on every run.
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// The user JWT expiring within this is a `credential_expiring` finding
    /// (default: a fifth of its lifetime, or 14 days).
    #[serde(default)]
    pub warn_before: Option<ConfigDuration>,
    /// Within this, the finding is critical (default: a twentieth of its lifetime,
    /// or 3 days).
    #[serde(default)]
    pub critical_before: Option<ConfigDuration>,
    /// Start TLS right after connecting, before the server's INFO (a server with
    /// `handshake_first`, NATS 2.10+); default: after the INFO.
    #[serde(default)]
    pub tls_first: bool,
    /// TLS settings (for `tls://`).
    #[serde(default)]
    pub tls: TlsSpec,
}

/// How a `nats` probe logs in.
#[derive(Clone, Debug)]
pub enum NatsAuth {
    /// No credentials.
    None,
    /// A user and password.
    User {
        /// The user.
        user: String,
        /// Where the password comes from.
        password: Option<SecretSource>,
    },
    /// A token.
    Token(SecretSource),
    /// A `.creds` file.
    Creds(PathBuf),
}

impl NatsSpec {
    /// The URL and password keys.
    pub fn login(&self) -> BrokerLogin<'_> {
        BrokerLogin {
            url: &self.url,
            password: self.password.as_ref(),
            password_file: self.password_file.as_ref(),
        }
    }

    /// Secrets written inline: the password, the token, and the URL's password.
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out = self.login().inline_secrets();
        out.extend(self.token.iter().cloned());
        out
    }

    /// The URL and the login resolved, or the key at fault and why.
    pub fn target(&self) -> Result<(BrokerUrl, NatsAuth), KeyError> {
        let BrokerTarget { url, password } =
            self.login().resolve(SCHEMES, false, "tls://host:4222")?;
        let token = SecretSource::from_pair(self.token.clone(), self.token_file.clone());
        let auth = match (&url.user, password, token, &self.creds_file) {
            (None, None, None, None) => NatsAuth::None,
            (Some(user), password, None, None) => NatsAuth::User {
                user: user.clone(),
                password,
            },
            (None, None, Some(t), None) => NatsAuth::Token(t),
            (None, None, None, Some(c)) => NatsAuth::Creds(c.clone()),
            _ => {
                return Err((
                    "creds_file",
                    "log in one way: a user and password, a token, or a .creds file".into(),
                ));
            }
        };
        Ok((url, auth))
    }
}

impl Checked for NatsSpec {
    fn check(&self, check: &mut Check<'_>) {
        self.login().check(check, self.target());
        check.exclusive(
            "token",
            self.token.is_some(),
            "token_file",
            self.token_file.is_some(),
        );
        if let (Some(w), Some(c)) = (self.warn_before, self.critical_before)
            && c.0 > w.0
        {
            check.error(
                "critical_before",
                "`critical_before` must not exceed `warn_before`",
            );
        }
        if self.tls_first
            && let Ok((url, _)) = self.target()
            && !url.scheme.tls
        {
            check.error("tls_first", "`tls_first` needs a tls:// URL");
        }
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for NatsSpec {
    fn inline_secrets(&self) -> Vec<Secret> {
        NatsSpec::inline_secrets(self)
    }
}
