//! `kind: postgres`: a real PostgreSQL session (TLS as libpq's `sslmode` says, a login,
//! a query), configured by a `postgres://` URL, by key/value fields, or both.
//!
//! The URL and the fields are resolved here into one [`PgTarget`], so that the probe
//! and validation agree on what a configuration means. A setting given both in the URL
//! and as a key is an error rather than a silent precedence rule.

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use serde::Deserialize;

use super::{Check, Checked};
use crate::duration::ConfigDuration;
use crate::model::TlsSpec;
use crate::secret::{Secret, SecretSource};

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

/// Where the trusted CAs come from when `sslrootcert` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    /// Only the CAs of this PEM file.
    File(PathBuf),
    /// The system's roots (`sslrootcert=system`).
    System,
}

/// A `postgres` probe's settings once the URL and the fields are resolved.
#[derive(Clone, Debug)]
pub struct PgTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role.
    pub user: String,
    /// Database.
    pub dbname: String,
    /// Where the password comes from, if one is configured.
    pub password: Option<SecretSource>,
    /// The sslmode as written (default `verify-full`).
    pub sslmode: SslMode,
    /// `sslrootcert`.
    pub sslrootcert: Option<RootCert>,
    /// `sslcert`.
    pub sslcert: Option<PathBuf>,
    /// `sslkey`.
    pub sslkey: Option<PathBuf>,
    /// `sslnegotiation`.
    pub sslnegotiation: SslNegotiation,
    /// `connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// `application_name`.
    pub application_name: String,
}

impl PgTarget {
    /// The mode in force: libpq's `require` with a root CA file behaves as `verify-ca`.
    pub fn effective_sslmode(&self) -> SslMode {
        match (self.sslmode, &self.sslrootcert) {
            (SslMode::Require, Some(RootCert::File(_))) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }
}

/// A problem found while resolving: the key it belongs to, and what is wrong.
type KeyError = (&'static str, String);

/// What the URL says, before it is merged with the fields.
#[derive(Default)]
struct UrlParts {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    sslmode: Option<SslMode>,
    sslrootcert: Option<String>,
    sslcert: Option<PathBuf>,
    sslkey: Option<PathBuf>,
    sslnegotiation: Option<SslNegotiation>,
    connect_timeout: Option<Option<Duration>>,
    application_name: Option<String>,
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Parses a `postgres://` or `postgresql://` URL.
fn parse_url(url: &str) -> Result<UrlParts, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| {
            "the URL must start with postgres:// or postgresql:// (e.g. postgres://probe@db.example.com:5432/app)".to_owned()
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hosts = authority.rsplit('@').next().unwrap_or("");
    if hosts.contains(',') {
        return Err(
            "the URL names several hosts; depprobe probes one server per probe: write one probe per host"
                .into(),
        );
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    let mut parts = UrlParts {
        host: parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| decode(h.trim_start_matches('[').trim_end_matches(']'))),
        port: parsed.port(),
        user: Some(decode(parsed.username())).filter(|u| !u.is_empty()),
        password: parsed.password().map(decode),
        dbname: Some(decode(parsed.path().trim_start_matches('/'))).filter(|d| !d.is_empty()),
        ..UrlParts::default()
    };
    if parts.host.is_none() {
        return Err(
            "the URL has no host; depprobe probes over TCP (postgres://user@host:5432/db)".into(),
        );
    }
    if parsed.fragment().is_some() {
        return Err("the URL must not have a #fragment".into());
    }
    for (key, value) in parsed.query_pairs() {
        let value = value.into_owned();
        match key.as_ref() {
            "sslmode" => {
                parts.sslmode =
                    Some(SslMode::from_name(&value).ok_or_else(|| {
                        format!("sslmode `{value}` is not one of {}", mode_names())
                    })?);
            }
            "sslnegotiation" => {
                parts.sslnegotiation = Some(match value.as_str() {
                    "postgres" => SslNegotiation::Postgres,
                    "direct" => SslNegotiation::Direct,
                    other => {
                        return Err(format!(
                            "sslnegotiation `{other}` is not `postgres` or `direct`"
                        ));
                    }
                });
            }
            "sslrootcert" => parts.sslrootcert = Some(value),
            "sslcert" => parts.sslcert = Some(PathBuf::from(value)),
            "sslkey" => parts.sslkey = Some(PathBuf::from(value)),
            "application_name" => parts.application_name = Some(value),
            "connect_timeout" => {
                // libpq: whole seconds; zero or less means no limit.
                let secs: i64 = value.trim().parse().map_err(|_| {
                    format!("connect_timeout `{value}` is not a whole number of seconds")
                })?;
                parts.connect_timeout = Some(
                    u64::try_from(secs)
                        .ok()
                        .filter(|s| *s > 0)
                        .map(Duration::from_secs),
                );
            }
            other => {
                return Err(format!(
                    "URL parameter `{other}` is not supported (supported: {})",
                    URL_PARAMETERS.join(", ")
                ));
            }
        }
    }
    Ok(parts)
}

fn mode_names() -> String {
    SslMode::ALL
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One setting that may come from the URL or from a key: both is an error.
fn one_of<T>(
    errors: &mut Vec<KeyError>,
    key: &'static str,
    from_url: Option<T>,
    from_key: Option<T>,
) -> Option<T> {
    match (from_url, from_key) {
        (Some(u), Some(_)) => {
            errors.push((
                key,
                format!("`{key}` is also set in `url`; set it in one place"),
            ));
            Some(u)
        }
        (u, k) => u.or(k),
    }
}

impl PostgresSpec {
    /// What the URL says (nothing when there is no URL).
    fn url_parts(&self) -> Result<UrlParts, String> {
        match &self.url {
            Some(url) => parse_url(url.expose()),
            None => Ok(UrlParts::default()),
        }
    }

    /// Resolves the URL and the fields into one target, or every problem found.
    pub fn target(&self) -> Result<PgTarget, Vec<(&'static str, String)>> {
        let mut errors: Vec<KeyError> = Vec::new();
        let url = match self.url_parts() {
            Ok(parts) => parts,
            Err(e) => return Err(vec![("url", e)]),
        };
        let host = one_of(&mut errors, "host", url.host, self.host.clone());
        let port = one_of(&mut errors, "port", url.port, self.port).unwrap_or(DEFAULT_PORT);
        let user = one_of(&mut errors, "user", url.user, self.user.clone());
        let dbname = one_of(&mut errors, "dbname", url.dbname, self.dbname.clone());
        let sslmode = one_of(&mut errors, "sslmode", url.sslmode, self.sslmode)
            .unwrap_or(SslMode::VerifyFull);
        let sslrootcert = one_of(
            &mut errors,
            "sslrootcert",
            url.sslrootcert,
            self.sslrootcert.clone(),
        );
        let sslcert = one_of(&mut errors, "sslcert", url.sslcert, self.sslcert.clone());
        let sslkey = one_of(&mut errors, "sslkey", url.sslkey, self.sslkey.clone());
        let sslnegotiation = one_of(
            &mut errors,
            "sslnegotiation",
            url.sslnegotiation,
            self.sslnegotiation,
        )
        .unwrap_or_default();
        let connect_timeout = one_of(
            &mut errors,
            "connect_timeout",
            url.connect_timeout,
            self.connect_timeout.map(|d| Some(d.0)),
        )
        .flatten();
        let application_name = one_of(
            &mut errors,
            "application_name",
            url.application_name,
            self.application_name.clone(),
        )
        .unwrap_or_else(|| "depprobe".into());

        let password = match (url.password, &self.password, &self.password_file) {
            (Some(_), Some(_), _) => {
                errors.push((
                    "password",
                    "the URL already holds a password; set it in one place".into(),
                ));
                None
            }
            (Some(_), None, Some(_)) => {
                errors.push((
                    "password_file",
                    "the URL already holds a password; remove it from the URL to use `password_file`"
                        .into(),
                ));
                None
            }
            (Some(p), None, None) => Some(SecretSource::Value(Secret::new(p))),
            (None, p, f) => SecretSource::from_pair(p.clone(), f.clone()),
        };

        let Some(host) = host.filter(|h| !h.trim().is_empty()) else {
            errors.push((
                "",
                "set `url` (postgres://user@host:5432/db) or `host`".into(),
            ));
            return Err(errors);
        };
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            errors.push((
                "user",
                "set the role to log in as: in `url` (postgres://USER@host/db) or with `user`"
                    .into(),
            ));
            return Err(errors);
        };
        let sslrootcert = sslrootcert.map(|r| match r.as_str() {
            "system" => RootCert::System,
            _ => RootCert::File(PathBuf::from(r)),
        });

        let ssl_key = if self.url.as_ref().is_some_and(|_| self.sslmode.is_none()) {
            "url"
        } else {
            "sslmode"
        };
        if sslnegotiation == SslNegotiation::Direct && !sslmode.needs_tls() {
            errors.push((
                ssl_key,
                format!(
                    "sslnegotiation=direct needs sslmode=require or stronger (sslmode={sslmode} could fall back to plaintext)"
                ),
            ));
        }
        if sslrootcert == Some(RootCert::System) && sslmode != SslMode::VerifyFull {
            errors.push((
                ssl_key,
                format!(
                    "sslrootcert=system needs sslmode=verify-full (as libpq): sslmode={sslmode} would not check the name"
                ),
            ));
        }
        if sslcert.is_some() != sslkey.is_some() {
            // Reported where the half that is set was written.
            let key = if self.sslcert.is_some() {
                "sslcert"
            } else if self.sslkey.is_some() {
                "sslkey"
            } else {
                "url"
            };
            errors.push((
                key,
                "a client certificate needs both `sslcert` and `sslkey`".into(),
            ));
        }
        if sslrootcert.is_some() && self.tls.ca_file.is_some() {
            errors.push((
                "tls.ca_file",
                "set either `sslrootcert` (only these CAs) or `tls.ca_file` (added to the system roots), not both".into(),
            ));
        }
        if sslcert.is_some() && self.tls.cert_file.is_some() {
            errors.push((
                "tls.cert_file",
                "set either `sslcert`/`sslkey` or `tls.cert_file`/`tls.key_file`, not both".into(),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PgTarget {
            dbname: dbname.unwrap_or_else(|| user.clone()),
            host,
            port,
            user,
            password,
            sslmode,
            sslrootcert,
            sslcert,
            sslkey,
            sslnegotiation,
            connect_timeout,
            application_name,
        })
    }

    /// The TLS settings in force: `tls:` with `sslrootcert`, `sslcert` and `sslkey`
    /// applied (`sslrootcert=FILE` trusts only that file, as libpq does).
    pub fn tls_spec(&self, target: &PgTarget) -> TlsSpec {
        let mut tls = self.tls.clone();
        match &target.sslrootcert {
            Some(RootCert::File(path)) => {
                tls.ca_file = Some(path.clone());
                tls.system_roots = false;
            }
            Some(RootCert::System) => tls.system_roots = true,
            None => {}
        }
        if let (Some(cert), Some(key)) = (&target.sslcert, &target.sslkey) {
            tls.cert_file = Some(cert.clone());
            tls.key_file = Some(key.clone());
        }
        tls
    }

    /// Secrets written inline: the password, and the one in the URL (as written and
    /// decoded).
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self.password.iter().cloned().collect();
        if let Some(url) = &self.url
            && let Ok(parsed) = url::Url::parse(url.expose())
            && let Some(raw) = parsed.password()
        {
            out.push(Secret::new(raw));
            out.push(Secret::new(decode(raw)));
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
