//! `kind: redis`: a real Redis (or Valkey) session: TLS for `rediss://`, `AUTH`,
//! `PING`, `ROLE`, configured by a `rediss://user@host:6380/0` URL.
//!
//! `rediss` is TLS with the chain and the name verified; `redis` is plaintext, and only
//! when written so. A password written in the URL is a secret: it never reaches
//! `Debug` or an error.

use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::{Check, Checked, Secret, SecretSource, TlsSpec};

use crate::kinds::dburl::{self, DbUrl};

/// Redis' port.
pub const DEFAULT_PORT: u16 = 6379;

const EXAMPLE: &str = "rediss://probe@cache.example.com:6380/0";

/// The most databases a Redis server is configured with in practice; an index above
/// is surely a typo.
const MAX_DB: u32 = 1 << 16;

/// Settings of a `redis` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// `rediss://[user[:password]@]host[:port][/db]` (TLS) or `redis://...`
    /// (plaintext); a secret, since it may hold the password.
    pub url: Secret,
    /// Password (usually `${ENV}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS settings (CA, client certificate, server name, expiry windows, ...).
    #[serde(default)]
    pub tls: TlsSpec,
}

/// A `redis` probe's settings once the URL is read.
#[derive(Clone, Debug)]
pub struct RedisTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether the session is TLS (`rediss://`).
    pub tls: bool,
    /// The ACL user, when the URL names one (`AUTH user password`); without one,
    /// `AUTH password` logs in as `default`.
    pub user: Option<String>,
    /// The database selected after login (0 unless the path says otherwise).
    pub db: u32,
    /// Where the password comes from, if one is configured.
    pub password: Option<SecretSource>,
}

impl RedisSpec {
    fn url_parts(&self) -> Result<DbUrl, String> {
        dburl::parse(self.url.expose(), &["redis", "rediss"], EXAMPLE)
    }

    /// Reads the URL into the target, or says what is wrong with it (never showing
    /// the password).
    pub fn target(&self) -> Result<RedisTarget, String> {
        let url = self.url_parts()?;
        if let Some((key, _)) = url.params.first() {
            return Err(format!(
                "URL parameter `{key}` is not supported: a redis URL has no parameters (use `tls:` and `password_file`)"
            ));
        }
        let db = match url.path.as_str() {
            "" => 0,
            path => path
                .parse::<u32>()
                .ok()
                .filter(|n| *n < MAX_DB)
                .ok_or_else(|| {
                    format!("the URL path `/{path}` is not a database number (e.g. {EXAMPLE})")
                })?,
        };
        let password = url.password_source(&self.password, &self.password_file)?;
        Ok(RedisTarget {
            tls: url.scheme == "rediss",
            host: url.host,
            port: url.port.unwrap_or(DEFAULT_PORT),
            user: url.user,
            db,
            password,
        })
    }

    /// Secrets written inline: the password, and the one in the URL (as written and
    /// decoded).
    pub fn inline_secrets(&self) -> Vec<Secret> {
        dburl::inline_secrets(&self.url, &self.password, &["redis", "rediss"])
    }
}

impl Checked for RedisSpec {
    fn check(&self, check: &mut Check<'_>) {
        match self.target() {
            Err(e) => check.error("url", e),
            Ok(t) if t.user.is_some() && t.password.is_none() => check.error(
                "url",
                "the URL names an ACL user but no password is configured: set `password` or `password_file`",
            ),
            Ok(_) => {}
        }
        check.exclusive(
            "password",
            self.password.is_some(),
            "password_file",
            self.password_file.is_some(),
        );
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for RedisSpec {
    fn inline_secrets(&self) -> Vec<Secret> {
        RedisSpec::inline_secrets(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> RedisSpec {
        RedisSpec {
            url: Secret::new(url),
            password: None,
            password_file: None,
            tls: TlsSpec::default(),
        }
    }

    #[test]
    fn rediss_is_tls_and_redis_is_not() {
        let t = spec("rediss://probe@cache:6380/2").target().unwrap();
        assert!(t.tls);
        assert_eq!((t.port, t.db, t.user.as_deref()), (6380, 2, Some("probe")));
        let t = spec("redis://cache").target().unwrap();
        assert!(!t.tls);
        assert_eq!((t.port, t.db, t.user), (6379, 0, None));
    }

    #[test]
    fn a_password_only_url_is_secret() {
        let s = spec("rediss://:pa%24s@cache");
        let t = s.target().unwrap();
        assert_eq!(t.user, None);
        assert_eq!(t.password, Some(SecretSource::Value(Secret::new("pa$s"))));
        assert_eq!(s.inline_secrets().len(), 2);
        assert!(!format!("{s:?}{t:?}").contains("pa$s"));
    }

    #[test]
    fn bad_paths_schemes_and_parameters_are_named() {
        assert!(
            spec("rediss://cache/x")
                .target()
                .unwrap_err()
                .contains("`/x`")
        );
        assert!(spec("rediss://cache/99999999").target().is_err());
        assert!(
            spec("http://cache")
                .target()
                .unwrap_err()
                .contains("rediss://")
        );
        let e = spec("rediss://:hunter2@cache/0?ssl_cert_reqs=none")
            .target()
            .unwrap_err();
        assert!(e.contains("ssl_cert_reqs") && !e.contains("hunter2"), "{e}");
    }
}
