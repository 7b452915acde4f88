//! `kind: mqtt`: an MQTT broker: `CONNECT` answered by `CONNACK`, then `DISCONNECT`.
//!
//! `mqtts://host:8883` speaks TLS from the first byte, `mqtt://host:1883` does not.
//! The user name is the URL's; the password comes from the URL, `password` or
//! `password_file`. MQTT 3.1.1 by default, 5 with `protocol_version: 5`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::kinds::broker_url::{BrokerLogin, BrokerTarget, KeyError, Scheme};
use depprobe_config::{Check, Checked};
use depprobe_config::TlsSpec;
use depprobe_config::Secret;

/// The schemes of `kind: mqtt`.
pub const SCHEMES: &[Scheme] = &[
    Scheme {
        name: "mqtts",
        tls: true,
        default_port: 8883,
    },
    Scheme {
        name: "mqtt",
        tls: false,
        default_port: 1883,
    },
];

/// The MQTT protocol version spoken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum MqttVersion {
    /// MQTT 3.1.1 (protocol level 4).
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5")]
    V5,
}

/// Settings of an `mqtt` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSpec {
    /// `mqtts://[user[:password]@]host[:port]`; a secret, since it may hold the
    /// password.
    pub url: Secret,
    /// Password (usually `${ENV}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The client id sent (default `depprobe-` and the probe's name, cut to 23
    /// characters, the length every broker accepts).
    #[serde(default)]
    pub client_id: Option<String>,
    /// `"3.1.1"` or `"5"`.
    #[serde(default)]
    pub protocol_version: MqttVersion,
    /// TLS settings (for `mqtts://`).
    #[serde(default)]
    pub tls: TlsSpec,
}

impl MqttSpec {
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
        self.login().resolve(SCHEMES, false, "mqtts://host:8883")
    }
}

impl Checked for MqttSpec {
    fn check(&self, check: &mut Check<'_>) {
        self.login().check(check, self.target());
        if self.client_id.as_ref().is_some_and(|id| id.len() > 65_535) {
            check.error("client_id", "a client id is at most 65535 bytes");
        }
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for MqttSpec {
    fn inline_secrets(&self) -> Vec<Secret> {
        MqttSpec::inline_secrets(self)
    }
}
