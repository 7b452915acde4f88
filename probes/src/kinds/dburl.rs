//! The parts every `scheme://user:password@host:port/path?query` URL of a database
//! kind has (`mysql://`, `redis://`): read once here, so that each kind only says what
//! its path and parameters mean, and the password is a [`Secret`] from the start.

use percent_encoding::percent_decode_str;

use depprobe_config::{Secret, SecretSource};

/// The parts of a database URL, decoded.
#[derive(Debug, Default)]
pub struct DbUrl {
    /// The scheme, lowercase.
    pub scheme: String,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// The port, when written.
    pub port: Option<u16>,
    /// The user name, when written.
    pub user: Option<String>,
    /// The password, when written: decoded, and as written (both are secrets).
    pub password: Option<(Secret, Secret)>,
    /// The path without its leading `/`, decoded (empty when there is none).
    pub path: String,
    /// The query parameters, decoded, in order.
    pub params: Vec<(String, String)>,
}

impl DbUrl {
    /// Where the password comes from: the URL, `password` or `password_file`, which
    /// must be one place only (the error never shows the password).
    pub fn password_source(
        &self,
        password: &Option<Secret>,
        password_file: &Option<std::path::PathBuf>,
    ) -> Result<Option<SecretSource>, String> {
        match (&self.password, password, password_file) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(
                "the URL already holds a password; set it in one place (`password`, `password_file` or the URL)"
                    .into(),
            ),
            (Some((p, _)), None, None) => Ok(Some(SecretSource::Value(p.clone()))),
            (None, p, f) => Ok(SecretSource::from_pair(p.clone(), f.clone())),
        }
    }
}

/// Secrets written inline in a database kind's settings: `password`, and the one in
/// `url` (decoded and as written).
pub fn inline_secrets(url: &Secret, password: &Option<Secret>, schemes: &[&str]) -> Vec<Secret> {
    let mut out: Vec<Secret> = password.iter().cloned().collect();
    if let Ok(DbUrl {
        password: Some((decoded, raw)),
        ..
    }) = parse(url.expose(), schemes, "")
    {
        out.push(decoded);
        out.push(raw);
    }
    out
}

/// Percent-decoded only: `+` stays a plus, as the clients read it.
pub fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The query parameters of `url`, percent-decoded only (libpq and the MySQL and
/// MongoDB clients do not read `+` as a space: `root+server_ca.crt` is that file).
pub fn query_params(url: &url::Url) -> Vec<(String, String)> {
    url.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Parses `url`, which must use one of `schemes`; `example` is shown in errors. The
/// error never holds the URL (it may hold a password).
pub fn parse(url: &str, schemes: &[&str], example: &str) -> Result<DbUrl, String> {
    let parsed =
        url::Url::parse(url).map_err(|e| format!("not a valid URL ({e}); e.g. {example}"))?;
    let scheme = parsed.scheme().to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(format!(
            "the URL must start with {}:// (e.g. {example})",
            schemes.join("://, ")
        ));
    }
    let host = parsed
        .host_str()
        .map(|h| decode(h.trim_start_matches('[').trim_end_matches(']')))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("the URL has no host (e.g. {example})"))?;
    if parsed.fragment().is_some() {
        return Err("the URL must not have a #fragment".into());
    }
    Ok(DbUrl {
        scheme,
        host,
        port: parsed.port(),
        user: Some(decode(parsed.username())).filter(|u| !u.is_empty()),
        password: parsed
            .password()
            .map(|raw| (Secret::new(decode(raw)), Secret::new(raw))),
        path: decode(parsed.path().trim_start_matches('/')),
        params: query_params(&parsed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_decoded_and_the_password_is_secret() {
        let u = parse(
            "mysql://pro%40be:p%2Fw@db.example.com:3307/orders?ssl-mode=required",
            &["mysql"],
            "mysql://user@host/db",
        )
        .unwrap();
        assert_eq!(u.host, "db.example.com");
        assert_eq!(u.port, Some(3307));
        assert_eq!(u.user.as_deref(), Some("pro@be"));
        let (decoded, raw) = u.password.unwrap();
        assert_eq!((decoded.expose(), raw.expose()), ("p/w", "p%2Fw"));
        assert_eq!(format!("{decoded:?}"), "Secret(***)");
        assert_eq!(u.path, "orders");
        assert_eq!(u.params, vec![("ssl-mode".into(), "required".into())]);
    }

    #[test]
    fn an_error_never_shows_the_url() {
        let e = parse(
            "postgres://u:hunter2@h/db",
            &["mysql"],
            "mysql://user@host/db",
        )
        .unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse("mysql://u:hunter2@/db", &["mysql"], "mysql://user@host/db").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
