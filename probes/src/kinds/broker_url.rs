//! URLs of the broker and mail kinds (`amqps://user@host:5671/vhost`,
//! `tls://host:4222`, `mqtts://host:8883`, `smtp://host:587`): the scheme carries
//! the TLS choice, a password in the URL is a secret, and the password may instead
//! come from `password` / `password_file` (one place only).

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

use depprobe_config::Check;
use depprobe_config::{Secret, SecretSource};

/// A problem found while resolving: the key it belongs to, and what is wrong.
pub type KeyError = (&'static str, String);

/// A broker URL with the password resolved.
#[derive(Clone, Debug)]
pub struct BrokerTarget {
    /// Host, port, TLS, user and path.
    pub url: BrokerUrl,
    /// Where the password comes from, if one is configured.
    pub password: Option<SecretSource>,
}

/// The keys every broker kind shares: `url`, `password`, `password_file`.
#[derive(Clone, Copy, Debug)]
pub struct BrokerLogin<'a> {
    /// The URL (a secret: it may hold the password).
    pub url: &'a Secret,
    /// `password`.
    pub password: Option<&'a Secret>,
    /// `password_file`.
    pub password_file: Option<&'a PathBuf>,
}

impl BrokerLogin<'_> {
    /// Secrets written inline: the password, and the one in the URL (as written and
    /// decoded).
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self.password.into_iter().cloned().collect();
        out.extend(url_secrets(self.url));
        out
    }

    /// The URL parsed with `schemes` and the password resolved; `example` is the
    /// kind's URL shape for messages (`mqtts://host:8883`). A path is refused unless
    /// `path_allowed`, and a password needs a user.
    pub fn resolve(
        &self,
        schemes: &[Scheme],
        path_allowed: bool,
        example: &str,
    ) -> Result<BrokerTarget, KeyError> {
        let url = parse(self.url.expose(), schemes).map_err(|e| ("url", e))?;
        if !path_allowed && !url.path.is_empty() {
            return Err(("url", format!("this URL has no path ({example})")));
        }
        let password = password_source(&url, self.password, self.password_file)?;
        if password.is_some() && url.user.is_none() {
            let with_user = example.replacen("://", "://USER@", 1);
            return Err((
                "url",
                format!("a password needs a user name in the URL ({with_user})"),
            ));
        }
        Ok(BrokerTarget { url, password })
    }

    /// The checks every broker kind shares: one password source, and `resolved`.
    pub fn check<T>(&self, check: &mut Check<'_>, resolved: Result<T, KeyError>) {
        check.exclusive(
            "password",
            self.password.is_some(),
            "password_file",
            self.password_file.is_some(),
        );
        if let Err((key, message)) = resolved {
            check.error(key, message);
        }
    }
}

/// One scheme a kind accepts: its name, whether it speaks TLS, its default port.
#[derive(Clone, Copy, Debug)]
pub struct Scheme {
    /// `amqps`.
    pub name: &'static str,
    /// Whether the connection is TLS (from the first byte, or after an upgrade the
    /// kind performs).
    pub tls: bool,
    /// The port when the URL names none.
    pub default_port: u16,
}

/// What a broker URL says.
#[derive(Clone, Debug)]
pub struct BrokerUrl {
    /// The scheme, as accepted.
    pub scheme: Scheme,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name, decoded.
    pub user: Option<String>,
    /// Password, decoded.
    pub password: Option<Secret>,
    /// The path without its leading `/`, decoded (`""` when there is none).
    pub path: String,
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Parses `url` with one of `schemes`; the error says what to write instead, and
/// never repeats the URL (it may hold a password).
pub fn parse(url: &str, schemes: &[Scheme]) -> Result<BrokerUrl, String> {
    let names = || {
        schemes
            .iter()
            .map(|s| format!("{}://", s.name))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let parsed =
        url::Url::parse(url).map_err(|e| format!("not a valid URL ({e}); use {}", names()))?;
    let scheme = schemes
        .iter()
        .find(|s| s.name == parsed.scheme())
        .copied()
        .ok_or_else(|| {
            format!(
                "scheme `{}` is not supported; use {}",
                parsed.scheme(),
                names()
            )
        })?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| format!("the URL has no host ({}host:port)", names()))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("the URL must not have a ?query or #fragment; use the probe's keys".into());
    }
    Ok(BrokerUrl {
        scheme,
        host,
        port: parsed.port().unwrap_or(scheme.default_port),
        user: Some(decode(parsed.username())).filter(|u| !u.is_empty()),
        password: parsed.password().map(|p| Secret::new(decode(p))),
        path: decode(parsed.path().strip_prefix('/').unwrap_or(parsed.path())),
    })
}

/// The password of `url` as written and decoded, for scrubbing (nothing when the
/// URL does not parse or holds none).
pub fn url_secrets(url: &Secret) -> Vec<Secret> {
    match url::Url::parse(url.expose())
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(raw) => vec![Secret::new(decode(&raw)), Secret::new(raw)],
        None => Vec::new(),
    }
}

/// Where the password comes from: the URL, `password` or `password_file`, at most
/// one of them (the error names the key to remove).
fn password_source(
    url: &BrokerUrl,
    password: Option<&Secret>,
    password_file: Option<&PathBuf>,
) -> Result<Option<SecretSource>, KeyError> {
    match (&url.password, password, password_file) {
        (Some(_), Some(_), _) => Err((
            "password",
            "the URL already holds a password; set it in one place".into(),
        )),
        (Some(_), None, Some(_)) => Err((
            "password_file",
            "the URL already holds a password; remove it from the URL to use `password_file`"
                .into(),
        )),
        (Some(p), None, None) => Ok(Some(SecretSource::Value(p.clone()))),
        (None, p, f) => Ok(SecretSource::from_pair(p.cloned(), f.cloned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMQP: &[Scheme] = &[
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

    #[test]
    fn parts_are_decoded_and_the_scheme_says_tls() {
        let u = parse("amqps://probe:p%40ss@mq.example.com/orders%2Fv2", AMQP).unwrap();
        assert!(u.scheme.tls);
        assert_eq!(u.port, 5671);
        assert_eq!(u.user.as_deref(), Some("probe"));
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(u.path, "orders/v2");
        let u = parse("amqp://[::1]:5673", AMQP).unwrap();
        assert!(!u.scheme.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 5673, "")
        );
    }

    #[test]
    fn errors_never_repeat_the_password() {
        for bad in [
            "http://u:hunter2@h",
            "amqps://u:hunter2@h/?x=1",
            "amqps://u:hunter2@/x",
        ] {
            let e = parse(bad, AMQP).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
