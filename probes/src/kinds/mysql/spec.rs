//! `kind: mysql`: a real MySQL or MariaDB session (TLS negotiated inside the protocol
//! as the MySQL client's `ssl-mode` says, a login, a query), configured by a
//! `mysql://user@host:3306/db?ssl-mode=verify_identity` URL.
//!
//! `ssl-mode` takes the MySQL client's names, in any case (`VERIFY_IDENTITY`,
//! `verify_identity`, `verify-identity`); the default verifies the chain and the name.
//! A password written in the URL is a secret: it never reaches `Debug` or an error.

use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::{Check, Checked, Secret, SecretSource, TlsSpec};

use crate::kinds::dburl::{self, DbUrl};

/// MySQL's port.
pub const DEFAULT_PORT: u16 = 3306;

/// The URL parameters depprobe understands.
pub const URL_PARAMETERS: &[&str] = &["ssl-mode", "get-server-public-key"];

const EXAMPLE: &str = "mysql://probe@db.example.com:3306/orders?ssl-mode=verify_identity";

/// Settings of a `mysql` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSpec {
    /// `mysql://user[:password]@host[:port][/database][?ssl-mode=...]`; a secret, since
    /// it may hold the password.
    pub url: Secret,
    /// Password (usually `${ENV}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The query run after login.
    #[serde(default = "default_query")]
    pub query: String,
    /// TLS settings (CA, client certificate, server name, expiry windows, ...).
    #[serde(default)]
    pub tls: TlsSpec,
}

fn default_query() -> String {
    "SELECT 1".into()
}

/// The MySQL client's `--ssl-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SslMode {
    /// No TLS.
    Disabled,
    /// TLS when the server offers it, plaintext otherwise; the certificate is not
    /// enforced (but checked and reported).
    Preferred,
    /// TLS required; the certificate is not enforced (but checked and reported).
    Required,
    /// TLS required; the chain must lead to a trusted root; the name is not checked.
    VerifyCa,
    /// TLS required; chain and name must verify (the default).
    VerifyIdentity,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: &'static [SslMode] = &[
        SslMode::Disabled,
        SslMode::Preferred,
        SslMode::Required,
        SslMode::VerifyCa,
        SslMode::VerifyIdentity,
    ];

    /// The MySQL client's name, lowercase.
    pub const fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "disabled",
            SslMode::Preferred => "preferred",
            SslMode::Required => "required",
            SslMode::VerifyCa => "verify_ca",
            SslMode::VerifyIdentity => "verify_identity",
        }
    }

    /// The mode named `name`, in any case, with `-` or `_`.
    pub fn from_name(name: &str) -> Option<SslMode> {
        let name = name.trim().to_ascii_lowercase().replace('-', "_");
        SslMode::ALL.iter().copied().find(|m| m.as_str() == name)
    }

    /// Whether the session must be encrypted (a server without TLS is a failure).
    pub fn needs_tls(self) -> bool {
        self >= SslMode::Required
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `mysql` probe's settings once the URL is read.
#[derive(Clone, Debug)]
pub struct MysqlTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The default database, when the URL names one.
    pub database: Option<String>,
    /// Where the password comes from, if one is configured.
    pub password: Option<SecretSource>,
    /// The `ssl-mode` (default `verify_identity`).
    pub ssl_mode: SslMode,
    /// `get-server-public-key=true`: on a session without TLS, the probe may ask
    /// the server for its RSA key to send the password encrypted (the MySQL
    /// client's `--get-server-public-key`; off by default, as there).
    pub get_server_public_key: bool,
}

impl MysqlSpec {
    fn url_parts(&self) -> Result<DbUrl, String> {
        dburl::parse(self.url.expose(), &["mysql"], EXAMPLE)
    }

    /// Reads the URL into the target, or says what is wrong with it (never showing
    /// the password).
    pub fn target(&self) -> Result<MysqlTarget, String> {
        let url = self.url_parts()?;
        let user = url
            .user
            .clone()
            .ok_or_else(|| format!("the URL names no user (e.g. {EXAMPLE})"))?;
        let mut ssl_mode = SslMode::VerifyIdentity;
        let mut get_server_public_key = false;
        for (key, value) in &url.params {
            match key.to_ascii_lowercase().replace('_', "-").as_str() {
                "get-server-public-key" => {
                    get_server_public_key = match value.to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => {
                            return Err(format!(
                                "get-server-public-key `{value}` is not true or false"
                            ));
                        }
                    };
                }
                "ssl-mode" | "sslmode" => {
                    ssl_mode = SslMode::from_name(value).ok_or_else(|| {
                        format!(
                            "ssl-mode `{value}` is not one of {}",
                            SslMode::ALL
                                .iter()
                                .map(|m| m.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                }
                _ => {
                    return Err(format!(
                        "URL parameter `{key}` is not supported (supported: {})",
                        URL_PARAMETERS.join(", ")
                    ));
                }
            }
        }
        let password = url.password_source(&self.password, &self.password_file)?;
        Ok(MysqlTarget {
            host: url.host,
            port: url.port.unwrap_or(DEFAULT_PORT),
            user,
            database: Some(url.path).filter(|d| !d.is_empty()),
            password,
            ssl_mode,
            get_server_public_key,
        })
    }

    /// Secrets written inline: the password, and the one in the URL (as written and
    /// decoded).
    pub fn inline_secrets(&self) -> Vec<Secret> {
        dburl::inline_secrets(&self.url, &self.password, &["mysql"])
    }
}

impl Checked for MysqlSpec {
    fn check(&self, check: &mut Check<'_>) {
        if let Err(e) = self.target() {
            check.error("url", e);
        }
        check.exclusive(
            "password",
            self.password.is_some(),
            "password_file",
            self.password_file.is_some(),
        );
        if self.query.trim().is_empty() {
            check.error("query", "the query must not be empty");
        }
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for MysqlSpec {
    fn inline_secrets(&self) -> Vec<Secret> {
        MysqlSpec::inline_secrets(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> MysqlSpec {
        MysqlSpec {
            url: Secret::new(url),
            password: None,
            password_file: None,
            query: default_query(),
            tls: TlsSpec::default(),
        }
    }

    #[test]
    fn ssl_mode_names_are_the_mysql_clients_in_any_case() {
        assert_eq!(
            SslMode::from_name("VERIFY_IDENTITY"),
            Some(SslMode::VerifyIdentity)
        );
        assert_eq!(SslMode::from_name("verify-ca"), Some(SslMode::VerifyCa));
        assert_eq!(SslMode::from_name("Required"), Some(SslMode::Required));
        assert_eq!(SslMode::from_name("require"), None);
        let t = spec("mysql://probe@db:3307/orders?ssl-mode=PREFERRED")
            .target()
            .unwrap();
        assert_eq!(t.ssl_mode, SslMode::Preferred);
        assert_eq!((t.port, t.database.as_deref()), (3307, Some("orders")));
    }

    #[test]
    fn default_mode_verifies_identity_and_port_is_3306() {
        let t = spec("mysql://probe@db").target().unwrap();
        assert_eq!(t.ssl_mode, SslMode::VerifyIdentity);
        assert_eq!((t.port, t.database), (3306, None));
    }

    #[test]
    fn a_url_password_is_secret_and_not_twice() {
        let s = spec("mysql://probe:s3cr%21t@db/x");
        assert_eq!(
            s.target().unwrap().password,
            Some(SecretSource::Value(Secret::new("s3cr!t")))
        );
        let shown: Vec<String> = s
            .inline_secrets()
            .iter()
            .map(|x| x.expose().to_owned())
            .collect();
        assert_eq!(shown, ["s3cr!t", "s3cr%21t"]);
        assert!(!format!("{s:?}").contains("s3cr"));
        let mut twice = s.clone();
        twice.password = Some(Secret::new("other"));
        let e = twice.target().unwrap_err();
        assert!(e.contains("one place") && !e.contains("s3cr"), "{e}");
    }

    #[test]
    fn unknown_parameter_and_mode_are_named() {
        let e = spec("mysql://probe@db/x?ssl-mode=on").target().unwrap_err();
        assert!(e.contains("`on`") && e.contains("verify_identity"), "{e}");
        let e = spec("mysql://probe@db/x?tls=1").target().unwrap_err();
        assert!(e.contains("`tls`"), "{e}");
        let e = spec("mysql://db/x").target().unwrap_err();
        assert!(e.contains("no user"), "{e}");
    }
}
