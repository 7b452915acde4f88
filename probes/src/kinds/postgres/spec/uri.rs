//! Parsing of `postgres://` and `postgresql://` URLs into their parts, with libpq's
//! names for the parameters.

use std::path::PathBuf;
use std::time::Duration;


use super::{SslCertMode, SslMode, SslNegotiation, TlsVersion, URL_PARAMETERS};

/// What the URL says, before it is merged with the fields.
#[derive(Default)]
pub(super) struct UrlParts {
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) dbname: Option<String>,
    pub(super) sslmode: Option<SslMode>,
    pub(super) sslrootcert: Option<String>,
    pub(super) sslcert: Option<PathBuf>,
    pub(super) sslkey: Option<PathBuf>,
    pub(super) sslnegotiation: Option<SslNegotiation>,
    pub(super) connect_timeout: Option<Option<Duration>>,
    pub(super) application_name: Option<String>,
    pub(super) hostaddr: Option<String>,
    pub(super) sslcrl: Option<PathBuf>,
    pub(super) sslcrldir: Option<PathBuf>,
    pub(super) sslcertmode: Option<SslCertMode>,
    pub(super) sslpassword: Option<String>,
    pub(super) sslsni: Option<bool>,
    pub(super) ssl_min_protocol_version: Option<TlsVersion>,
    pub(super) ssl_max_protocol_version: Option<TlsVersion>,
}

pub(super) use crate::kinds::dburl::{decode, query_params};

/// Parses a `postgres://` or `postgresql://` URL.
// Over 80 lines on purpose: one match arm per libpq URL parameter, read in one
// pass; a table of closures would say the same less plainly.
pub(super) fn parse_url(url: &str) -> Result<UrlParts, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| {
            "the URL must start with postgres:// or postgresql:// (e.g. postgres://probe@db.example.com:5432/app)".to_owned()
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // An `@` past the authority: the user information holds an unescaped `/`, `?`
    // or `#`, and whatever the URL parser makes of it would hold part of a password.
    if rest.rfind('@').is_some_and(|at| at >= authority.len()) {
        // Not echoed: what precedes the `@` is most likely a password.
        return Err("the user name or password holds an unescaped `/`, `?` or `#`; percent-encode it (%2F, %3F, %23)".into());
    }
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
    for (key, value) in query_params(&parsed) {
        match key.as_str() {
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
            "hostaddr" => parts.hostaddr = Some(value),
            "sslcrl" => parts.sslcrl = Some(PathBuf::from(value)),
            "sslcrldir" => parts.sslcrldir = Some(PathBuf::from(value)),
            "sslpassword" => parts.sslpassword = Some(value),
            "sslcertmode" => {
                parts.sslcertmode = Some(SslCertMode::from_name(&value).ok_or_else(|| {
                    format!("sslcertmode `{value}` is not disable, allow or require")
                })?);
            }
            "sslsni" => {
                parts.sslsni = Some(match value.as_str() {
                    "1" => true,
                    "0" => false,
                    other => return Err(format!("sslsni `{other}` is not 0 or 1")),
                });
            }
            "ssl_min_protocol_version" => {
                parts.ssl_min_protocol_version = Some(TlsVersion::from_name(&value)?);
            }
            "ssl_max_protocol_version" => {
                parts.ssl_max_protocol_version = Some(TlsVersion::from_name(&value)?);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_percent_decoded_only() {
        let parts = parse_url(
            "postgres://u@h/db?sslrootcert=ssl/root+server_ca.crt&sslcrl=a%2Bb.crl&sslsni=0",
        )
        .unwrap();
        assert_eq!(parts.sslrootcert.as_deref(), Some("ssl/root+server_ca.crt"));
        assert_eq!(parts.sslcrl, Some(PathBuf::from("a+b.crl")));
        assert_eq!(parts.sslsni, Some(false));
    }

    #[test]
    fn a_password_holding_a_slash_question_mark_or_hash_is_never_echoed() {
        for url in [
            "postgres://app:s3cr/et-pw@db1:5432/app",
            "postgres://app:12/34et-pw@db1/app",
            "postgresql://app:s3cr?et-pw@db1/app?sslmode=require",
            "postgres://app:s3cr#et-pw@db1/app",
        ] {
            let Err(e) = parse_url(url) else {
                panic!("{url} parsed");
            };
            assert!(e.contains("unescaped"), "{e}");
            assert!(!e.contains("s3cr") && !e.contains("et-pw"), "{e}");
        }
        let parts = parse_url("postgres://app:s3cr%2Fet@db1/app").unwrap();
        assert_eq!(parts.password.as_deref(), Some("s3cr/et"));
    }
}
