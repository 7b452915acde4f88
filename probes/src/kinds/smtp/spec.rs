//! `kind: smtp`: a mail relay: greeting, `EHLO`, `STARTTLS`, an optional login,
//! `QUIT`; never a message.
//!
//! `smtp://host:587` upgrades with STARTTLS, which is required by default (a relay
//! that does not offer it is `tls_not_offered`); `smtps://host:465` speaks TLS from
//! the first byte. The user name is the URL's; the password comes from the URL,
//! `password` or `password_file`, and is only ever sent over TLS.

use std::path::PathBuf;

use serde::Deserialize;

use crate::kinds::broker_url::{BrokerLogin, BrokerTarget, KeyError, Scheme};
use depprobe_config::{Check, Checked};
use depprobe_config::TlsSpec;
use depprobe_config::Secret;

/// The schemes of `kind: smtp`.
pub const SCHEMES: &[Scheme] = &[
    Scheme {
        name: "smtps",
        tls: true,
        default_port: 465,
    },
    Scheme {
        name: "smtp",
        tls: false,
        default_port: 587,
    },
];

/// Whether an `smtp://` probe upgrades with STARTTLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    /// The relay must offer STARTTLS and complete it (the default).
    #[default]
    Required,
    /// Plaintext only (a port-25 relay on a trusted network); no login allowed.
    Disabled,
}

/// Settings of an `smtp` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSpec {
    /// `smtp://[user[:password]@]host[:port]` or `smtps://...`; a secret, since it may
    /// hold the password.
    pub url: Secret,
    /// Password (usually `${ENV}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `required` (default) or `disabled`, for `smtp://`.
    #[serde(default)]
    pub starttls: StartTls,
    /// The name sent with `EHLO`.
    #[serde(default = "default_ehlo")]
    pub ehlo_name: String,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

fn default_ehlo() -> String {
    "localhost".into()
}

impl SmtpSpec {
    /// Secrets written inline: the password, and the one in the URL.
    pub fn inline_secrets(&self) -> Vec<Secret> {
        self.login().inline_secrets()
    }

    /// The URL and password keys.
    pub fn login(&self) -> BrokerLogin<'_> {
        BrokerLogin {
            url: &self.url,
            password: self.password.as_ref(),
            password_file: self.password_file.as_ref(),
        }
    }

    /// The URL and the password resolved, or the key at fault and why.
    pub fn target(&self) -> Result<BrokerTarget, KeyError> {
        let target = self.login().resolve(SCHEMES, false, "smtp://host:587")?;
        if target.url.user.is_some()
            && !target.url.scheme.tls
            && self.starttls == StartTls::Disabled
        {
            return Err((
                "starttls",
                "a login is never sent in plaintext: use STARTTLS or smtps://".into(),
            ));
        }
        Ok(target)
    }
}

impl Checked for SmtpSpec {
    fn check(&self, check: &mut Check<'_>) {
        self.login().check(check, self.target());
        if self.ehlo_name.is_empty()
            || !self
                .ehlo_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            check.error("ehlo_name", "a host name (mx-probe.example.com)");
        }
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for SmtpSpec {
    fn inline_secrets(&self) -> Vec<Secret> {
        SmtpSpec::inline_secrets(self)
    }
}
