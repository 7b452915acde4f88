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
//! checked with bcrypt against a dummy hash when the user is unknown, so that the
//! answer takes as long for a wrong user as for a wrong password.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A bcrypt hash of a random string, checked when the user is unknown.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

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
    /// The file is larger than any web config.
    #[error("{0}: larger than 1 MiB, not a web config file")]
    TooLarge(PathBuf),
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
        for (user, hash) in &file.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(WebConfigError::NotBcrypt(user.clone()));
            }
        }
        let tls = match &file.tls_server_config {
            Some(t) => Some(Arc::new(server_config(t)?)),
            None => None,
        };
        Ok(WebSecurity {
            tls,
            users: Arc::new(file.basic_auth_users),
        })
    }

    /// Whether requests must carry basic auth credentials.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether the `Authorization` header value `header` names a configured user
    /// with the right password. Runs bcrypt: call it off the runtime's workers.
    pub fn authorized(&self, header: Option<&[u8]>) -> bool {
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
        let hash = found.unwrap_or(DUMMY_HASH);
        let ok = bcrypt::verify(password.as_bytes(), hash).unwrap_or(false);
        ok && found.is_some()
    }
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

pub(crate) fn read_small(path: &Path) -> Result<String, WebConfigError> {
    let read = |source| WebConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if !meta.is_file() {
        return Err(read(std::io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(WebConfigError::TooLarge(path.to_owned()));
    }
    std::fs::read_to_string(path).map_err(read)
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
        WebSecurity {
            tls: None,
            users: Arc::new(
                pairs
                    .iter()
                    .map(|(u, p)| ((*u).to_owned(), bcrypt::hash(p, 4).unwrap()))
                    .collect(),
            ),
        }
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
