//! `kind: amqp`: an AMQP 0-9-1 broker (RabbitMQ): log in and open a virtual host.
//!
//! `amqps://user@host:5671/vhost` speaks TLS from the first byte, `amqp://` does not;
//! the path is the vhost (none: RabbitMQ's default `/`; `%2F` encodes a `/` inside a
//! name). The password comes from the URL, `password` or `password_file`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::kinds::broker_url::{BrokerLogin, BrokerTarget, BrokerUrl, KeyError, Scheme};
use depprobe_config::{Check, Checked};
use depprobe_config::TlsSpec;
use depprobe_config::{Secret, SecretSource};

/// The schemes of `kind: amqp`.
pub const SCHEMES: &[Scheme] = &[
    Scheme {
        name: "amqps",
        tls: true,
        default_port: 5671,
    },
    Scheme {
        name: "amqp",
        tls: false,
        default_port: 5672,
    },
];

/// Settings of an `amqp` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSpec {
    /// `amqps://user[:password]@host[:port]/vhost`; a secret, since it may hold the
    /// password.
    pub url: Secret,
    /// Password (usually `${ENV}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS settings (for `amqps://`).
    #[serde(default)]
    pub tls: TlsSpec,
}

/// An `amqp` probe's settings, resolved.
#[derive(Clone, Debug)]
pub struct AmqpTarget {
    /// Host, port, TLS and user.
    pub url: BrokerUrl,
    /// The user name (required).
    pub user: String,
    /// The virtual host (`/` when the URL has no path).
    pub vhost: String,
    /// Where the password comes from.
    pub password: Option<SecretSource>,
}

impl AmqpSpec {
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

    /// The URL and the keys resolved, or the key at fault and why.
    pub fn target(&self) -> Result<AmqpTarget, KeyError> {
        let BrokerTarget { url, password } =
            self.login()
                .resolve(SCHEMES, true, "amqps://host:5671/vhost")?;
        let user = url.user.clone().ok_or((
            "url",
            "set the user to log in as in the URL (amqps://USER@host:5671/vhost)".to_owned(),
        ))?;
        let vhost = if url.path.is_empty() {
            "/".to_owned()
        } else {
            url.path.clone()
        };
        Ok(AmqpTarget {
            url,
            user,
            vhost,
            password,
        })
    }
}

impl Checked for AmqpSpec {
    fn check(&self, check: &mut Check<'_>) {
        self.login().check(check, self.target());
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for AmqpSpec {
    fn inline_secrets(&self) -> Vec<Secret> {
        AmqpSpec::inline_secrets(self)
    }
}
