//! The endpoint security file: TLS and basic auth for the agent's endpoints.
//!
//! When the agent listens beyond loopback, `/metrics` and `/status` tell anyone
//! who can reach the port which dependencies an application has and how they are
//! doing. `agent.web_config` names a file in the shape Prometheus exporters use
//! (exporter-toolkit's `web.config`): `tls_server_config` (`cert_file`,
//! `key_file`, optionally `client_ca_file` and `client_auth_type`) and
//! `basic_auth_users` (user name to bcrypt hash). It is read once at start; an
//! unusable file stops the agent from starting, with the reason. The certificate
//! and key files are read again at each TLS handshake, so a renewed certificate is
//! served without a restart. Passwords are
//! checked with bcrypt against a dummy hash of the highest configured cost when the
//! user is unknown, so that the answer takes as long for a wrong user as for a
//! wrong password. Verified credentials are remembered for [`CACHE_FOR`] (as
//! Prometheus' exporter-toolkit caches them), by a SHA-256 of the user and the
//! password, so that a scraper's every request does not pay bcrypt, and a flood of
//! wrong passwords queued for bcrypt never delays it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use cert::RotatingCert;

mod cert;

/// The largest web config file read (it holds a few names and paths).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// How long a verified user and password are remembered after their last use.
pub const CACHE_FOR: Duration = Duration::from_secs(300);

/// Verified credentials remembered at most (a few scrapers, a few people).
const CACHE_ENTRIES: usize = 64;

/// The file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

/// `tls_server_config:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
}

/// Why the web config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not have the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A certificate or key file holds no usable PEM.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate, key or client CA.
    #[error("tls_server_config: {0}")]
    Tls(String),
    /// A `basic_auth_users` entry is not a bcrypt hash.
    #[error("basic_auth_users: the entry of user {0:?} is not a bcrypt hash ($2y$...)")]
    NotBcrypt(String),
    /// A `client_auth_type` depprobe does not implement.
    #[error(
        "tls_server_config.client_auth_type: {0:?} is not supported: use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert (client certificates are always verified against client_ca_file)"
    )]
    ClientAuthType(String),
}

/// What the endpoints require, loaded from the web config file.
#[derive(Clone, Default)]
pub struct WebSecurity {
    /// TLS for every connection, when configured.
    pub tls: Option<Arc<ServerConfig>>,
    users: Arc<BTreeMap<String, String>>,
    /// A bcrypt hash of a random string, of the highest cost among `users`,
    /// checked when the user is unknown.
    dummy: Arc<String>,
    /// SHA-256 of verified `user:password` pairs, with when they were last used.
    verified: Arc<Mutex<HashMap<String, Instant>>>,
}

impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.len())
            .finish()
    }
}

impl WebSecurity {
    /// Reads and checks the web config file at `path`.
    pub fn load(path: &Path) -> Result<WebSecurity, WebConfigError> {
        let text = read_small(path)?;
        let file: WebConfigFile =
            serde_saphyr::from_str(&text).map_err(|e| WebConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        let mut cost = 4;
        for (user, hash) in &file.basic_auth_users {
            match hash.parse::<bcrypt::HashParts>() {
                Ok(parts) => cost = cost.max(parts.get_cost()),
                Err(_) => return Err(WebConfigError::NotBcrypt(user.clone())),
            }
        }
        let tls = match &file.tls_server_config {
            Some(t) => Some(Arc::new(server_config(t)?)),
            None => None,
        };
        Ok(WebSecurity::new(tls, file.basic_auth_users, cost))
    }

    /// TLS `tls` and the users `users` (name to bcrypt hash), whose unknown names
    /// are checked against a dummy hash of bcrypt cost `cost`.
    fn new(
        tls: Option<Arc<ServerConfig>>,
        users: BTreeMap<String, String>,
        cost: u32,
    ) -> WebSecurity {
        let dummy = if users.is_empty() {
            String::new()
        } else {
            bcrypt::hash(random_text(), cost).unwrap_or_default()
        };
        WebSecurity {
            tls,
            users: Arc::new(users),
            dummy: Arc::new(dummy),
            verified: Arc::default(),
        }
    }

    /// Whether requests must carry basic auth credentials.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether the `Authorization` header value `header` names a configured user
    /// with the right password, when that is known without bcrypt: `Some(true)`
    /// for credentials verified within [`CACHE_FOR`] (which renews them), `Some(false)`
    /// for a header that is not basic auth at all, `None` when bcrypt must decide.
    pub fn remembered(&self, header: Option<&[u8]>) -> Option<bool> {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return Some(false);
        };
        let key = cache_key(&user, &password);
        let mut verified = self.verified.lock().ok()?;
        let last = verified.get_mut(&key)?;
        if last.elapsed() > CACHE_FOR {
            verified.remove(&key);
            return None;
        }
        *last = Instant::now();
        Some(true)
    }

    /// Whether the `Authorization` header value `header` names a configured user
    /// with the right password. Runs bcrypt unless the credentials are
    /// [remembered](Self::remembered): call it off the runtime's workers.
    pub fn authorized(&self, header: Option<&[u8]>) -> bool {
        if let Some(known) = self.remembered(header) {
            return known;
        }
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        // Every user name is compared, in constant time, whatever matches.
        let mut found: Option<&str> = None;
        for (name, hash) in self.users.iter() {
            if constant_time_eq(name.as_bytes(), user.as_bytes()) {
                found = Some(hash);
            }
        }
        let hash = found.unwrap_or(self.dummy.as_str());
        let ok = bcrypt::verify(password.as_bytes(), hash).unwrap_or(false) && found.is_some();
        if ok {
            self.remember(cache_key(&user, &password));
        }
        ok
    }

    /// Remembers verified credentials; past [`CACHE_ENTRIES`], the expired ones are
    /// dropped, and if none is, all are.
    fn remember(&self, key: String) {
        let Ok(mut verified) = self.verified.lock() else {
            return;
        };
        if verified.len() >= CACHE_ENTRIES {
            verified.retain(|_, last| last.elapsed() <= CACHE_FOR);
            if verified.len() >= CACHE_ENTRIES {
                verified.clear();
            }
        }
        verified.insert(key, Instant::now());
    }
}

/// What verified credentials are remembered by: a SHA-256, never the password.
fn cache_key(user: &str, password: &str) -> String {
    let mut bytes = Vec::with_capacity(user.len() + password.len() + 1);
    bytes.extend_from_slice(user.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(password.as_bytes());
    depprobe_probes::transport::chain::sha256_hex(&bytes)
}

/// 32 hexadecimal digits from the process' random hasher keys.
fn random_text() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut text = String::new();
    for _ in 0..2 {
        let h = std::collections::hash_map::RandomState::new().build_hasher();
        text.push_str(&format!("{:016x}", h.finish()));
    }
    text
}

/// `Basic base64(user:password)`: the user and the password.
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, value) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Equal bytes, compared without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A small file, through the bounded reader (a regular file only, at most
/// [`MAX_FILE_BYTES`], on a thread of its own with a deadline).
pub(crate) fn read_small(path: &Path) -> Result<String, WebConfigError> {
    use depprobe_config::files;
    let owned = path.to_owned();
    files::within(files::READ_DEADLINE, move || {
        files::read_bounded_text(&owned, MAX_FILE_BYTES)
    })
    .map_err(|source| WebConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn pem_error(path: &Path, e: impl std::fmt::Display) -> WebConfigError {
    WebConfigError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    certificates_in(path, read_small(path)?.as_bytes())
}

fn certificates_in(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no PEM certificate"));
    }
    Ok(certs)
}

fn server_config(t: &TlsServerConfig) -> Result<ServerConfig, WebConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certificate = RotatingCert::load(&t.cert_file, &t.key_file, provider.clone())?;
    let tls = |e: rustls::Error| WebConfigError::Tls(e.to_string());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls)?;
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match (auth_type, &t.client_ca_file) {
        ("NoClientCert", _) => builder.with_no_client_auth(),
        ("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert", Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(tls)?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth_type == "VerifyClientCertIfGiven" {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| WebConfigError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        ("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert", None) => {
            return Err(WebConfigError::Tls(format!(
                "client_auth_type {auth_type} needs client_ca_file"
            )));
        }
        (other, _) => return Err(WebConfigError::ClientAuthType(other.to_owned())),
    };
    let mut config = builder.with_cert_resolver(Arc::new(certificate));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(pairs: &[(&str, &str)]) -> WebSecurity {
        let users = pairs
            .iter()
            .map(|(u, p)| ((*u).to_owned(), bcrypt::hash(p, 4).unwrap()))
            .collect();
        WebSecurity::new(None, users, 4)
    }

    #[test]
    fn an_unknown_user_costs_what_the_costliest_configured_hash_costs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        let cheap = bcrypt::hash("a", 4).unwrap();
        let dear = bcrypt::hash("b", 6).unwrap();
        std::fs::write(
            &path,
            format!("basic_auth_users:\n  a: '{cheap}'\n  b: '{dear}'\n"),
        )
        .unwrap();
        let s = WebSecurity::load(&path).unwrap();
        let dummy: bcrypt::HashParts = s.dummy.parse().unwrap();
        assert_eq!(dummy.get_cost(), 6);
        assert!(!s.authorized(Some(&basic("nobody", "b"))));
    }

    #[test]
    fn verified_credentials_are_remembered_and_wrong_ones_never() {
        let s = users(&[("prometheus", "scrape-me")]);
        let right = basic("prometheus", "scrape-me");
        let wrong = basic("prometheus", "scrape-you");
        assert_eq!(s.remembered(Some(&right)), None);
        assert!(!s.authorized(Some(&wrong)));
        assert_eq!(s.remembered(Some(&wrong)), None);
        assert!(s.authorized(Some(&right)));
        assert_eq!(s.remembered(Some(&right)), Some(true));
        assert_eq!(s.remembered(Some(&wrong)), None);
        assert_eq!(s.remembered(Some(b"Bearer x")), Some(false));
        let kept = format!("{:?}", s.verified.lock().unwrap().keys());
        assert!(!kept.contains("scrape-me"), "{kept}");
    }

    fn basic(user: &str, password: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b64}").into_bytes()
    }

    #[test]
    fn only_a_known_user_with_its_password_is_authorized() {
        let s = users(&[("prometheus", "scrape-me"), ("ops", "other")]);
        assert!(s.authorized(Some(&basic("prometheus", "scrape-me"))));
        assert!(s.authorized(Some(&basic("ops", "other"))));
        assert!(!s.authorized(Some(&basic("prometheus", "other"))));
        assert!(!s.authorized(Some(&basic("nobody", "scrape-me"))));
        assert!(!s.authorized(Some(b"Bearer abc")));
        assert!(!s.authorized(Some(b"Basic !!!")));
        assert!(!s.authorized(None));
    }

    #[test]
    fn a_plain_password_in_basic_auth_users_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, "basic_auth_users:\n  prometheus: hunter2\n").unwrap();
        let e = WebSecurity::load(&path).unwrap_err().to_string();
        assert!(e.contains("prometheus") && e.contains("bcrypt"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, "basic_auth_user: {}\n").unwrap();
        assert!(matches!(
            WebSecurity::load(&path),
            Err(WebConfigError::Parse { .. })
        ));
    }
}
