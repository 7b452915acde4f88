//! Settings shared by every kind that speaks HTTP (`http`, `metrics`, `otlp`):
//! headers and credentials mean the same in each, and URLs are checked alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::kind::Check;
use crate::secret::{Secret, SecretSource};

/// `basic_auth:` user name and password.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password, read on every run.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl BasicAuth {
    /// Where the password comes from.
    pub fn password_source(&self) -> Option<SecretSource> {
        SecretSource::from_pair(self.password.clone(), self.password_file.clone())
    }
}

/// What every HTTP-based kind sends besides the request itself: headers and
/// credentials (the keys `headers`, `bearer_token`, `bearer_token_file`,
/// `basic_auth`), shared so that they mean the same in every kind.
#[derive(Clone, Copy, Debug)]
pub struct HttpCredentials<'a> {
    /// Request headers; values are secrets.
    pub headers: &'a BTreeMap<String, Secret>,
    /// Bearer token written in the configuration.
    pub bearer_token: Option<&'a Secret>,
    /// File holding the bearer token, read on every run.
    pub bearer_token_file: Option<&'a Path>,
    /// HTTP basic authentication.
    pub basic_auth: Option<&'a BasicAuth>,
}

impl HttpCredentials<'_> {
    /// Secrets written inline: header values, the bearer token, the basic-auth password.
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self.headers.values().cloned().collect();
        out.extend(self.bearer_token.cloned());
        out.extend(self.basic_auth.iter().filter_map(|b| b.password.clone()));
        out
    }

    /// Where the bearer token comes from.
    pub fn bearer_source(&self) -> Option<SecretSource> {
        SecretSource::from_pair(
            self.bearer_token.cloned(),
            self.bearer_token_file.map(Path::to_path_buf),
        )
    }

    /// Reports a token set twice, or a token together with basic authentication.
    pub fn check(&self, check: &mut Check<'_>) {
        check.exclusive(
            "bearer_token",
            self.bearer_token.is_some(),
            "bearer_token_file",
            self.bearer_token_file.is_some(),
        );
        if let Some(b) = self.basic_auth {
            check.exclusive(
                "basic_auth.password",
                b.password.is_some(),
                "basic_auth.password_file",
                b.password_file.is_some(),
            );
            if self.bearer_token.is_some() || self.bearer_token_file.is_some() {
                check.error(
                    "basic_auth",
                    "set either a bearer token or `basic_auth`, not both",
                );
            }
        }
    }
}

/// Checks an `http(s)://` URL; shared with the kinds that scrape or post over HTTP.
pub fn check_http_url(check: &mut Check<'_>, key: &str, url: &str) {
    match url::Url::parse(url) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => check.error(
            key,
            format!(
                "scheme `{}` is not supported; use https:// or http://",
                u.scheme()
            ),
        ),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => check.error(key, "the URL has no host"),
        Ok(u) if u.password().is_some() => check.error(
            key,
            "do not put a password in the URL; use `basic_auth` with `password_file`",
        ),
        Ok(_) => {}
        Err(e) => check.error(key, format!("not a valid URL: {e}")),
    }
}

/// Reports every code of `codes` (under `key`) that is not an HTTP status code.
pub fn check_status_codes(check: &mut Check<'_>, key: &str, codes: &[u16]) {
    for code in codes {
        if !(100..=599).contains(code) {
            check.error(key, format!("{code} is not an HTTP status code"));
        }
    }
}
