//! `kind: postgres`: a real PostgreSQL session (TLS as libpq's `sslmode` says, a login,
//! a query), configured by a `postgres://` URL, by key/value fields, or both.
//!
//! The URL (`uri.rs`) and the fields are resolved (`target.rs`) into one [`PgTarget`], so
//! that the probe and validation agree on what a configuration means. A setting given
//! both in the URL and as a key is an error rather than a silent precedence rule.

use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::{Check, Checked};
use depprobe_config::ConfigDuration;
use depprobe_config::TlsSpec;
use depprobe_config::Secret;

mod target;
mod uri;

pub use target::{PgTarget, RootCert, TlsVersions};
use uri::decode;

/// PostgreSQL's port.
pub const DEFAULT_PORT: u16 = 5432;

/// The URL parameters depprobe understands (libpq's names).
pub const URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslnegotiation",
    "connect_timeout",
    "application_name",
    "hostaddr",
    "sslcrl",
    "sslcrldir",
    "sslcertmode",
    "sslpassword",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
];

/// Settings of a `postgres` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    /// `postgres://user[:password]@host[:port]/dbname?sslmode=...`; a secret, since it
    /// may hold the password.
    #[serde(default)]
    pub url: Option<Secret>,
    /// Host name or address.
    #[serde(default)]
    pub host: Option<String>,
    /// Port (default 5432).
    #[serde(default)]
    pub port: Option<u16>,
    /// Role to log in as.
    #[serde(default)]
    pub user: Option<String>,
    /// Database (default: the user name, as libpq).
    #[serde(default)]
    pub dbname: Option<String>,
    /// Password (usually `${ENV}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// libpq's sslmode (default `verify-full`).
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// PEM file of the only CAs trusted, or `system` for the system's roots.
    #[serde(default)]
    pub sslrootcert: Option<String>,
    /// Client certificate (PEM).
    #[serde(default)]
    pub sslcert: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    #[serde(default)]
    pub sslkey: Option<PathBuf>,
    /// `postgres` (SSLRequest first) or `direct` (PostgreSQL 17 direct TLS).
    #[serde(default)]
    pub sslnegotiation: Option<SslNegotiation>,
    /// Most time spent establishing the session (DNS, connect, TLS, login).
    #[serde(default)]
    pub connect_timeout: Option<ConfigDuration>,
    /// `application_name` shown in `pg_stat_activity` (default `depprobe`).
    #[serde(default)]
    pub application_name: Option<String>,
    /// The address to connect to, without a name lookup; `host` stays the name
    /// verified and sent in SNI (libpq's `hostaddr`).
    #[serde(default)]
    pub hostaddr: Option<String>,
    /// PEM file of CRLs, read when `sslrootcert` is a file (libpq's `sslcrl`); a
    /// file that does not exist is ignored, as libpq ignores it.
    #[serde(default)]
    pub sslcrl: Option<PathBuf>,
    /// Directory of CRLs in `openssl rehash` form (libpq's `sslcrldir`).
    #[serde(default)]
    pub sslcrldir: Option<PathBuf>,
    /// `disable` (never send a client certificate), `allow` (send one when
    /// configured, the default) or `require` (fail when the server asks for none).
    #[serde(default)]
    pub sslcertmode: Option<SslCertMode>,
    /// Passphrase of an encrypted `sslkey` (usually `${ENV}`).
    #[serde(default)]
    pub sslpassword: Option<Secret>,
    /// Whether SNI is sent (libpq's `sslsni`, default true).
    #[serde(default)]
    pub sslsni: Option<bool>,
    /// Lowest TLS version: `TLSv1.2` (libpq's default) or `TLSv1.3`.
    #[serde(default)]
    pub ssl_min_protocol_version: Option<TlsVersion>,
    /// Highest TLS version: `TLSv1.2` or `TLSv1.3`.
    #[serde(default)]
    pub ssl_max_protocol_version: Option<TlsVersion>,
    /// The query run after login.
    #[serde(default = "default_query")]
    pub query: String,
    /// What the query must return.
    #[serde(default)]
    pub expect: PostgresExpect,
    /// TLS settings (CA, server name, expiry windows, ...).
    #[serde(default)]
    pub tls: TlsSpec,
}

fn default_query() -> String {
    "SELECT 1".into()
}

/// `expect:` what the query must return.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresExpect {
    /// The first column of the first row, as text (`t`/`f` for booleans).
    pub value: Option<String>,
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it (depprobe tries TLS first, unlike libpq).
    Allow,
    /// TLS if the server offers it, plaintext otherwise.
    Prefer,
    /// TLS required; the certificate is not enforced (but still checked and reported).
    Require,
    /// TLS required; the chain must lead to a trusted root; the name is not checked.
    VerifyCa,
    /// TLS required; chain and host name must verify.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: &'static [SslMode] = &[
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// libpq's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode named `name`.
    pub fn from_name(name: &str) -> Option<SslMode> {
        SslMode::ALL.iter().copied().find(|m| m.as_str() == name)
    }

    /// Whether the session must be encrypted (a server without TLS is a failure).
    pub fn needs_tls(self) -> bool {
        self >= SslMode::Require
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// libpq's `sslcertmode`: whether a client certificate is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SslCertMode {
    /// Never sent, even when configured.
    Disable,
    /// Sent when configured and asked for.
    #[default]
    Allow,
    /// The server must ask for one (a server that does not is a failure).
    Require,
}

impl SslCertMode {
    /// The mode named `name`.
    pub fn from_name(name: &str) -> Option<SslCertMode> {
        match name {
            "disable" => Some(SslCertMode::Disable),
            "allow" => Some(SslCertMode::Allow),
            "require" => Some(SslCertMode::Require),
            _ => None,
        }
    }
}

/// A TLS version as libpq names it (`ssl_min_protocol_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum TlsVersion {
    /// `TLSv1` (not spoken by depprobe).
    #[serde(rename = "TLSv1")]
    Tls10,
    /// `TLSv1.1` (not spoken by depprobe).
    #[serde(rename = "TLSv1.1")]
    Tls11,
    /// `TLSv1.2`.
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// `TLSv1.3`.
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl TlsVersion {
    /// The version libpq names `name`.
    pub fn from_name(name: &str) -> Result<TlsVersion, String> {
        match name {
            "TLSv1" => Ok(TlsVersion::Tls10),
            "TLSv1.1" => Ok(TlsVersion::Tls11),
            "TLSv1.2" => Ok(TlsVersion::Tls12),
            "TLSv1.3" => Ok(TlsVersion::Tls13),
            other => Err(format!(
                "`{other}` is not a TLS version libpq names (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)"
            )),
        }
    }
}

/// How TLS is started: libpq's `sslnegotiation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SslNegotiation {
    /// An SSLRequest first; TLS if the server answers `S` (every PostgreSQL version).
    #[default]
    Postgres,
    /// A TLS handshake right after connect, with ALPN `postgresql` (PostgreSQL 17+).
    Direct,
}

impl SslNegotiation {
    /// libpq's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SslNegotiation::Postgres => "postgres",
            SslNegotiation::Direct => "direct",
        }
    }
}

impl PostgresSpec {
    /// Secrets written inline: the password, and the one in the URL (as written and
    /// decoded).
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self.password.iter().cloned().collect();
        out.extend(self.sslpassword.iter().cloned());
        if let Some(url) = &self.url
            && let Ok(parsed) = url::Url::parse(url.expose())
            && let Some(raw) = parsed.password()
        {
            out.push(Secret::new(raw));
            out.push(Secret::new(decode(raw)));
        }
        if let Some(url) = &self.url
            && let Ok(parsed) = url::Url::parse(url.expose())
        {
            for (k, v) in uri::query_params(&parsed) {
                if k == "sslpassword" {
                    out.push(Secret::new(v));
                }
            }
        }
        out
    }
}

impl Checked for PostgresSpec {
    fn check(&self, check: &mut Check<'_>) {
        check.exclusive(
            "password",
            self.password.is_some(),
            "password_file",
            self.password_file.is_some(),
        );
        // Files named by keys are checked whatever else is wrong; files named in the
        // URL once the URL resolves, and reported at `url`.
        let written = [
            (
                "sslrootcert",
                self.sslrootcert
                    .as_ref()
                    .filter(|r| *r != "system")
                    .map(PathBuf::from),
            ),
            ("sslcert", self.sslcert.clone()),
            ("sslkey", self.sslkey.clone()),
        ];
        for (key, path) in &written {
            if let Some(p) = path
                && !p.is_file()
            {
                check.error(
                    key,
                    format!("{key} {} does not exist or is not a file", p.display()),
                );
            }
        }
        match self.target() {
            Ok(target) => {
                let resolved = [
                    (
                        "sslrootcert",
                        match &target.sslrootcert {
                            Some(RootCert::File(p)) => Some(p.clone()),
                            _ => None,
                        },
                    ),
                    ("sslcert", target.sslcert.clone()),
                    ("sslkey", target.sslkey.clone()),
                ];
                for ((key, path), (_, as_key)) in resolved.iter().zip(&written) {
                    if as_key.is_none()
                        && let Some(p) = path
                        && !p.is_file()
                    {
                        check.error(
                            "url",
                            format!("{key} {} does not exist or is not a file", p.display()),
                        );
                    }
                }
            }
            Err(errors) => {
                for (key, message) in errors {
                    check.error(key, message);
                }
            }
        }
        if self.query.trim().is_empty() {
            check.error("query", "the query must not be empty");
        }
        if self.connect_timeout.is_some_and(|d| d.0.is_zero()) {
            check.error("connect_timeout", "must be more than 0s");
        }
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for PostgresSpec {
    fn inline_secrets(&self) -> Vec<depprobe_config::Secret> {
        PostgresSpec::inline_secrets(self)
    }
}
