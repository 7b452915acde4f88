//! `kind: mongodb`: TLS to every member, login, `ping`, and a watch on the replica
//! set's elections between runs.
//!
//! The connection string is read without a driver ([`url`]), so that its mistakes
//! are reported with their line, and so that a password written in it is known as a
//! secret.

mod url;

pub use url::{DEFAULT_PORT, MAX_HOSTS, MongoUrl, MongoUrlParts};

use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::{Check, Checked};
use depprobe_config::ConfigDuration;
use depprobe_config::TlsSpec;
use depprobe_config::{Secret, SecretSource};

/// Settings of a `mongodb` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSpec {
    /// `mongodb://[user[:password]@]host[:port][,host[:port]...][/db][?options]` or
    /// `mongodb+srv://[user[:password]@]host[/db][?options]`.
    pub url: MongoUrl,
    /// User name (overrides the one in the URL).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (usually `${ENV}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How long the driver waits for a suitable member (the primary, for `ping`);
    /// default: `serverSelectionTimeoutMS` from the URL, else 5s.
    #[serde(default)]
    pub server_selection_timeout: Option<ConfigDuration>,
    /// Deadline of a TCP connect plus TLS handshake plus `hello`, to one member;
    /// default: `connectTimeoutMS` from the URL, else 5s.
    #[serde(default)]
    pub connect_timeout: Option<ConfigDuration>,
    /// How often the driver checks each member when the server does not push
    /// changes; default: `heartbeatFrequencyMS` from the URL, else the probe's
    /// interval when shorter than 10s (never below 500ms), else 10s.
    #[serde(default)]
    pub heartbeat_frequency: Option<ConfigDuration>,
    /// When elections become a finding.
    #[serde(default)]
    pub elections: ElectionWatch,
    /// A secondary whose last write is more than this behind the primary's is a
    /// `replication_lag` finding; default 30s.
    #[serde(default = "default_lag_warn")]
    pub lag_warn: ConfigDuration,
    /// TLS settings (used when the URL turns TLS on, or for `mongodb+srv://`).
    #[serde(default)]
    pub tls: TlsSpec,
}

/// `server_selection_timeout` when neither the key nor the URL sets it.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: ConfigDuration = ConfigDuration::secs(5);

/// `connect_timeout` when neither the key nor the URL sets it.
pub const DEFAULT_CONNECT_TIMEOUT: ConfigDuration = ConfigDuration::secs(5);

/// `heartbeat_frequency` when neither the key nor the URL sets it.
pub const DEFAULT_HEARTBEAT_FREQUENCY: ConfigDuration = ConfigDuration::secs(10);

/// The smallest heartbeat frequency the driver accepts.
pub const MIN_HEARTBEAT_FREQUENCY: ConfigDuration = ConfigDuration::millis(500);

/// `lag_warn` when not set.
pub const DEFAULT_LAG_WARN: ConfigDuration = ConfigDuration::secs(30);

fn default_lag_warn() -> ConfigDuration {
    DEFAULT_LAG_WARN
}

/// The heartbeat when neither the key nor the URL sets it: the probe's `interval`
/// when that is shorter than [`DEFAULT_HEARTBEAT_FREQUENCY`], so that a probe run
/// often also looks often, but never below [`MIN_HEARTBEAT_FREQUENCY`].
pub fn default_heartbeat(interval: ConfigDuration) -> ConfigDuration {
    ConfigDuration(
        interval
            .0
            .min(DEFAULT_HEARTBEAT_FREQUENCY.0)
            .max(MIN_HEARTBEAT_FREQUENCY.0),
    )
}

/// `elections:` how many elections in how long make a storm.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElectionWatch {
    /// Elections are counted over this sliding window.
    pub window: ConfigDuration,
    /// This many elections within the window is an `election_storm`.
    pub threshold: u32,
}

impl Default for ElectionWatch {
    fn default() -> Self {
        ElectionWatch {
            window: ConfigDuration::secs(600),
            threshold: 3,
        }
    }
}

impl MongoSpec {
    /// Secrets written inline: the password, and a password inside the URL.
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self.password.iter().cloned().collect();
        if let Ok(parts) = self.url.parts() {
            if let Some(p) = parts.password {
                out.push(p);
            }
            if let Some(raw) = parts.raw_password {
                out.push(raw);
            }
        }
        out
    }

    /// Where the password comes from: `password`, `password_file`, or the URL.
    pub fn password_source(&self) -> Option<SecretSource> {
        SecretSource::from_pair(self.password.clone(), self.password_file.clone()).or_else(|| {
            self.url
                .parts()
                .ok()
                .and_then(|p| p.password)
                .map(SecretSource::Value)
        })
    }
}

/// URL options that turn certificate or host name verification off.
const INSECURE_OPTIONS: &[&str] = &[
    "tlsInsecure",
    "tlsAllowInvalidCertificates",
    "tlsAllowInvalidHostnames",
    "sslAllowInvalidCertificates",
    "sslAllowInvalidHostnames",
    "tlsDisableOCSPEndpointCheck",
    "tlsDisableCertificateRevocationCheck",
];

impl Checked for MongoSpec {
    fn check(&self, check: &mut Check<'_>) {
        match self.url.parts() {
            Err(e) => check.error("url", e),
            Ok(parts) => self.check_url(check, &parts),
        }
        check.exclusive(
            "password",
            self.password.is_some(),
            "password_file",
            self.password_file.is_some(),
        );
        for (key, d) in [
            ("server_selection_timeout", self.server_selection_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d.is_some_and(|d| d.0.is_zero()) {
                check.error(key, "must be more than 0s");
            }
        }
        if self
            .heartbeat_frequency
            .is_some_and(|d| d < MIN_HEARTBEAT_FREQUENCY)
        {
            check.error(
                "heartbeat_frequency",
                "must be at least 500ms (the driver's minimum)",
            );
        }
        if self.elections.window.0.is_zero() {
            check.error("elections.window", "must be more than 0s");
        }
        if self.lag_warn.0.is_zero() {
            check.error("lag_warn", "must be more than 0s");
        }
        if self.elections.threshold == 0 {
            check.error("elections.threshold", "must be at least 1");
        }
        check.tls(&self.tls);
    }
}

impl MongoSpec {
    fn check_url(&self, check: &mut Check<'_>, parts: &MongoUrlParts) {
        for key in INSECURE_OPTIONS {
            if parts
                .option(key)
                .is_some_and(|v| !v.eq_ignore_ascii_case("false"))
            {
                check.error(
                    "url",
                    format!(
                        "`{key}` turns TLS verification off, which depprobe never does; add the CA with tls.ca_file instead"
                    ),
                );
            }
        }
        if parts.password.is_some() && (self.password.is_some() || self.password_file.is_some()) {
            let key = if self.password.is_some() {
                "password"
            } else {
                "password_file"
            };
            check.error(
                key,
                "the URL already holds a password; set it in one place only",
            );
        }
        let has_user = self.username.is_some() || parts.username.is_some();
        let has_password =
            parts.password.is_some() || self.password.is_some() || self.password_file.is_some();
        let mechanism = parts.option("authMechanism").unwrap_or("");
        let needs_password = !["MONGODB-X509", "MONGODB-AWS", "MONGODB-OIDC", "GSSAPI"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(mechanism));
        if has_user && !has_password && needs_password {
            let key = if self.username.is_some() {
                "username"
            } else {
                "url"
            };
            check.error(
                key,
                "the user has no password: set `password_file` (or `password: ${ENV}`)",
            );
        }
        if !has_user && (self.password.is_some() || self.password_file.is_some()) {
            let key = if self.password.is_some() {
                "password"
            } else {
                "password_file"
            };
            check.error(
                key,
                "a password needs a user name: set `username` or put it in the URL",
            );
        }
        if let Some(ca) = parts.option("tlsCAFile") {
            let ca = PathBuf::from(ca);
            if let Some(own) = &self.tls.ca_file
                && *own != ca
            {
                check.error(
                    "tls.ca_file",
                    format!(
                        "the URL sets tlsCAFile={}; set the CA in one place only",
                        ca.display()
                    ),
                );
            }
            check.file_exists("url", Some(&ca));
        }
        if let Some(file) = parts.option("tlsCertificateKeyFile") {
            let file = PathBuf::from(file);
            if self.tls.cert_file.is_some() {
                check.error(
                    "tls.cert_file",
                    "the URL sets tlsCertificateKeyFile; set the client certificate in one place only",
                );
            }
            check.file_exists("url", Some(&file));
        }
    }
}

impl depprobe_config::KindSpec for MongoSpec {
    fn inline_secrets(&self) -> Vec<depprobe_config::Secret> {
        MongoSpec::inline_secrets(self)
    }
}
