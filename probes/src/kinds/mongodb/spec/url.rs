//! MongoDB connection strings, read without a driver: scheme, credentials, seed
//! hosts and options. A password written in the URL is a secret: `Debug` and
//! `Display` show the URL with `***` in its place.

use std::fmt;

use serde::{Deserialize, Deserializer};

use depprobe_config::Secret;

/// Seed hosts a URL may list at most: a replica set has at most 50 members.
pub const MAX_HOSTS: usize = 50;

/// A MongoDB connection string. Its `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoUrl(String);

impl MongoUrl {
    /// Wraps a connection string.
    pub fn new(text: impl Into<String>) -> Self {
        MongoUrl(text.into())
    }

    /// The connection string itself, password included: for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its parts, or what is wrong with it.
    pub fn parts(&self) -> Result<MongoUrlParts, String> {
        parse_url(&self.0)
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".into();
        };
        match split_userinfo(rest) {
            Userinfo::None => self.0.clone(),
            Userinfo::Written(info, after) => match info.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{after}"),
                None => self.0.clone(),
            },
            Userinfo::Unescaped(after) => format!("{scheme}://***@{after}"),
        }
    }
}

impl fmt::Debug for MongoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MongoUrl({})", self.redacted())
    }
}

impl fmt::Display for MongoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for MongoUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(MongoUrl)
    }
}

/// What a connection string says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MongoUrlParts {
    /// `mongodb+srv://`: the seed list comes from DNS SRV records.
    pub srv: bool,
    /// Seed hosts with their ports (27017 when not written; for SRV, the one name
    /// with port 0).
    pub hosts: Vec<(String, u16)>,
    /// User name, percent-decoded.
    pub username: Option<String>,
    /// Password, percent-decoded.
    pub password: Option<Secret>,
    /// Password as written (percent-encoded), so that it can be scrubbed too.
    pub raw_password: Option<Secret>,
    /// Options after `?`, keys as written, values percent-decoded.
    pub options: Vec<(String, String)>,
}

impl MongoUrlParts {
    /// The value of option `key` (case-insensitive, as the driver reads them).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection uses TLS: `tls=true` / `ssl=true`, or SRV without
    /// `tls=false`.
    pub fn tls(&self) -> bool {
        match self.option("tls").or_else(|| self.option("ssl")) {
            Some(v) => v.eq_ignore_ascii_case("true"),
            None => self.srv,
        }
    }
}

/// Where the credentials of a connection string (after `scheme://`) end.
enum Userinfo<'a> {
    /// No `@`: no credentials.
    None,
    /// `user:password` before the `@` of the authority, and what follows it.
    Written(&'a str, &'a str),
    /// An `@` after the first `/` or `?`: credentials holding an unescaped `/` or
    /// `?` (the password, most likely). What follows the last `@`.
    Unescaped(&'a str),
}

fn split_userinfo(rest: &str) -> Userinfo<'_> {
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest.rfind('@') {
        // An `@` past the authority: the user information holds an unescaped `/`
        // or `?`, so where it ends is unknown and nothing before the last `@` is
        // shown.
        Some(at) if at >= authority_end => Userinfo::Unescaped(&rest[at + 1..]),
        Some(at) => Userinfo::Written(&rest[..at], &rest[at + 1..]),
        None => Userinfo::None,
    }
}

/// The default MongoDB port.
pub const DEFAULT_PORT: u16 = 27017;

pub(super) fn parse_url(text: &str) -> Result<MongoUrlParts, String> {
    let (srv, rest) = if let Some(r) = text.strip_prefix("mongodb://") {
        (false, r)
    } else if let Some(r) = text.strip_prefix("mongodb+srv://") {
        (true, r)
    } else {
        let scheme = text.split_once("://").map_or(text, |(s, _)| s);
        return Err(format!(
            "scheme `{scheme}` is not supported; use mongodb:// or mongodb+srv://"
        ));
    };
    if let Userinfo::Unescaped(_) = split_userinfo(rest) {
        // Not echoed: what precedes the `@` is most likely a password.
        return Err("the user name or password holds an unescaped `/`, `?` or `@`; percent-encode it (%2F, %3F, %40)".into());
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host_list) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (username, password, raw_password) = match userinfo {
        None => (None, None, None),
        Some(info) => {
            let (user, pass) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user = percent_decode(user).ok_or("the user name is not valid percent-encoding")?;
            let password = match pass {
                Some(p) => Some(Secret::new(
                    percent_decode(p).ok_or("the password is not valid percent-encoding")?,
                )),
                None => None,
            };
            (
                (!user.is_empty()).then_some(user),
                password,
                pass.map(Secret::new),
            )
        }
    };
    if host_list.is_empty() {
        return Err("the URL has no host".into());
    }
    let count = host_list.split(',').count();
    if count > MAX_HOSTS {
        return Err(format!(
            "the URL lists {count} hosts; a replica set has at most {MAX_HOSTS} members"
        ));
    }
    let mut hosts = Vec::new();
    for item in host_list.split(',') {
        hosts.push(parse_host(item, srv)?);
    }
    if srv && hosts.len() != 1 {
        return Err("mongodb+srv:// takes exactly one host name (the SRV name)".into());
    }
    let query = tail.split_once('?').map_or("", |(_, q)| q);
    let mut options = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("option `{pair}` has no value (write key=value)"))?;
        let v = percent_decode(v)
            .ok_or_else(|| format!("option `{k}` is not valid percent-encoding"))?;
        options.push((k.to_owned(), v));
    }
    Ok(MongoUrlParts {
        srv,
        hosts,
        username,
        password,
        raw_password,
        options,
    })
}

fn parse_host(item: &str, srv: bool) -> Result<(String, u16), String> {
    if item.is_empty() {
        return Err("empty host in the host list".into());
    }
    let (host, port) = if let Some(v6) = item.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("host `{item}`: missing `]`"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("host `{item}` is not host:port")),
        }
    } else {
        match item.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (item, None),
        }
    };
    if host.is_empty() {
        return Err(format!("host `{item}` has no name"));
    }
    match (port, srv) {
        (Some(_), true) => Err("mongodb+srv:// host names take no port".into()),
        (None, true) => Ok((host.to_owned(), 0)),
        (None, false) => Ok((host.to_owned(), DEFAULT_PORT)),
        (Some(p), false) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok((host.to_owned(), n)),
            _ => Err(format!("host `{item}`: `{p}` is not a port")),
        },
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_hosts_than_a_replica_set_can_have_are_refused() {
        let many: Vec<String> = (0..=MAX_HOSTS).map(|i| format!("m{i}:27017")).collect();
        let e = parse_url(&format!("mongodb://{}/", many.join(","))).unwrap_err();
        assert!(e.contains("at most 50 members"), "{e}");
        let fifty: Vec<String> = (0..MAX_HOSTS).map(|i| format!("m{i}:27017")).collect();
        assert!(parse_url(&format!("mongodb://{}/", fifty.join(","))).is_ok());
    }

    #[test]
    fn hosts_credentials_and_options_are_read() {
        let p = parse_url(
            "mongodb://probe:p%40ss@m1:27018,m2,[::1]:27019/admin?replicaSet=rs0&tls=true",
        )
        .unwrap();
        assert!(!p.srv);
        assert_eq!(
            p.hosts,
            vec![
                ("m1".to_string(), 27018),
                ("m2".to_string(), 27017),
                ("::1".to_string(), 27019)
            ]
        );
        assert_eq!(p.username.as_deref(), Some("probe"));
        assert_eq!(p.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(p.raw_password.as_ref().unwrap().expose(), "p%40ss");
        assert_eq!(p.option("replicaset"), Some("rs0"));
        assert!(p.tls());
    }

    #[test]
    fn srv_urls_take_one_name_and_default_to_tls() {
        let p = parse_url("mongodb+srv://cluster0.example.net/?appName=x").unwrap();
        assert!(p.srv && p.tls());
        assert_eq!(p.hosts, vec![("cluster0.example.net".to_string(), 0)]);
        assert!(parse_url("mongodb+srv://a,b").is_err());
        assert!(parse_url("mongodb+srv://a:27017").is_err());
    }

    #[test]
    fn a_password_holding_a_slash_or_question_mark_never_prints() {
        for url in [
            "mongodb://app:s3cr/et-pw@db1:27017/admin",
            "mongodb://app:s3cr?et-pw@db1/admin?replicaSet=rs0",
            "mongodb+srv://app:s3/cr?et-pw@cluster.example.com/",
        ] {
            let u = MongoUrl::new(url);
            let e = u.parts().unwrap_err();
            assert!(e.contains("unescaped"), "{e}");
            for shown in [format!("{u:?}"), u.to_string(), e] {
                assert!(
                    !shown.contains("s3cr") && !shown.contains("et-pw"),
                    "{shown}"
                );
            }
        }
        assert_eq!(
            MongoUrl::new("mongodb://app:s3cr/et@db1/admin").to_string(),
            "mongodb://***@db1/admin"
        );
    }

    #[test]
    fn the_password_never_prints() {
        let u = MongoUrl::new("mongodb://probe:hunter2@m1:27017/?tls=true");
        assert_eq!(u.to_string(), "mongodb://probe:***@m1:27017/?tls=true");
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
