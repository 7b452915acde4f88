//! Trust for the TLS client: the crypto provider, the system's roots, the
//! configured CA and CRL files, client certificates, and the verifiers built from
//! them (shared by every probe that trusts the same roots).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use depprobe_config::TlsSpec;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::transport::chain;

/// Why a TLS client could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path} holds no {what} in PEM form")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// A certificate or key was refused.
    #[error("{what}: {source}")]
    Rejected {
        /// What was being loaded.
        what: String,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The verifier could not be built.
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    /// An expected issuer or a pin cannot be used.
    #[error("{0}")]
    Expectation(String),
    /// There are no trust anchors at all.
    #[error("no trusted roots: the system has none and no ca_file is set")]
    NoRoots,
    /// A PEM block is malformed: refused whole, never skipped (a CRL that loses
    /// a block would let a revoked certificate through).
    #[error("{path} holds a malformed {what} block: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
        /// The PEM reader's reason.
        reason: String,
    },
}

/// The crypto provider of every TLS client (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The system's roots, or webpki-roots when the system has none. Loaded once.
fn system_roots() -> Arc<Vec<CertificateDer<'static>>> {
    static ROOTS: OnceLock<Arc<Vec<CertificateDer<'static>>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            if !found.errors.is_empty() {
                tracing::debug!(
                    "some system certificates could not be loaded: {:?}",
                    found.errors.len()
                );
            }
            Arc::new(found.certs)
        })
        .clone()
}

/// Verifiers are shared between every probe that trusts the same roots and CRLs:
/// ten thousand probes with one `ca_file` hold one root store, not ten thousand.
type VerifierKey = (bool, String, String);

fn verifier_cache() -> &'static Mutex<HashMap<VerifierKey, Arc<WebPkiServerVerifier>>> {
    static CACHE: OnceLock<Mutex<HashMap<VerifierKey, Arc<WebPkiServerVerifier>>>> =
        OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Verifiers kept at most; past it the cache starts again (a reload that changes
/// every `ca_file` many times over must not grow it for ever).
const MAX_VERIFIERS: usize = 256;

pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    let cap = depprobe_config::files::MAX_PEM_BYTES;
    depprobe_config::files::read_bounded(path, cap).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    certs_in(&read(path)?, path)
}

/// The certificates of `pem`, the contents of `path`: at least one.
fn certs_in(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsSetupError::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// A `ca_file`'s certificates, shared.
pub type Anchors = Arc<Vec<CertificateDer<'static>>>;

/// The certificates of a `ca_file` as trust anchors, one copy shared by every
/// client whose file has the same content (10,000 targets naming one CA file held
/// 10,000 copies of it: 0.4 KiB per target for a one-certificate file).
pub fn shared_anchors(path: &Path) -> Result<Anchors, TlsSetupError> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Anchors>>> = OnceLock::new();
    let pem = read(path)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pem);
    let key: [u8; 32] = digest.as_ref().try_into().unwrap_or([0; 32]);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(hit);
    }
    let certs = Arc::new(certs_in(&pem, path)?);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= MAX_VERIFIERS {
            c.clear();
        }
        c.insert(key, certs.clone());
    }
    Ok(certs)
}

/// The verifier for `spec`'s roots and CRLs.
pub fn verifier(spec: &TlsSpec) -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    let ca = match &spec.ca_file {
        Some(p) => read(p)?,
        None => Vec::new(),
    };
    let crl = match &spec.crl_file {
        Some(p) => read(p)?,
        None => Vec::new(),
    };
    let key = (
        spec.system_roots,
        chain::sha256_hex(&ca),
        chain::sha256_hex(&crl),
    );
    if let Ok(cache) = verifier_cache().lock()
        && let Some(v) = cache.get(&key)
    {
        return Ok(v.clone());
    }

    let mut roots = RootCertStore::empty();
    if spec.system_roots {
        let system = system_roots();
        if system.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            roots.add_parsable_certificates(system.iter().cloned());
        }
    }
    if let Some(path) = &spec.ca_file {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&ca)
            .filter_map(Result::ok)
            .collect();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsSetupError::Empty {
                path: path.clone(),
                what: "CA certificate",
            });
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let mut builder = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider());
    if let Some(path) = &spec.crl_file {
        let crls: Vec<CertificateRevocationListDer<'static>> =
            CertificateRevocationListDer::pem_slice_iter(&crl)
                .collect::<Result<_, _>>()
                .map_err(|e| TlsSetupError::Malformed {
                    path: path.clone(),
                    what: "CRL",
                    reason: e.to_string(),
                })?;
        if crls.is_empty() {
            return Err(TlsSetupError::Empty {
                path: path.clone(),
                what: "CRL",
            });
        }
        builder = builder.with_crls(crls);
    }
    let v = builder.build()?;
    if let Ok(mut cache) = verifier_cache().lock() {
        if cache.len() >= MAX_VERIFIERS {
            cache.clear();
        }
        cache.insert(key, v.clone());
    }
    Ok(v)
}

/// A client certificate and key, loaded from PEM files. The certificate may be
/// X.509 v1 (OpenSSL-based servers accept one; rustls' own check of a key against
/// its certificate would refuse it), so the match is checked on the public key.
pub fn client_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let certs = read_certs(cert)?;
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsSetupError::Empty {
        path: key.to_owned(),
        what: "private key",
    })?;
    certified_key(certs, key_der, cert, key)
}

/// A client certificate and key as libpq reads them: the key in PEM, encrypted
/// PEM (with `password`) or DER; the certificate in PEM (v1 or v3).
pub fn client_key_with(
    cert: &Path,
    key: &Path,
    password: Option<&str>,
) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    use openssl::pkey::PKey;
    let certs = read_certs(cert)?;
    let bytes = read(key)?;
    let rejected = |reason: String| TlsSetupError::Malformed {
        path: key.to_owned(),
        what: "private key",
        reason,
    };
    let looks_pem = bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ");
    let pkey = if looks_pem {
        match password {
            Some(p) => PKey::private_key_from_pem_passphrase(&bytes, p.as_bytes()),
            // No passphrase: an encrypted key fails here, as libpq fails without
            // `sslpassword` (it never prompts).
            None => PKey::private_key_from_pem_callback(&bytes, |_| Ok(0)),
        }
        .map_err(|_| {
            rejected(match password {
                Some(_) => "it cannot be read with sslpassword (wrong passphrase?)".into(),
                None => "it cannot be read (an encrypted key needs sslpassword)".into(),
            })
        })?
    } else {
        PKey::private_key_from_der(&bytes).map_err(|e| {
            rejected(match password {
                // libpq with OpenSSL 3 reads a DER key unencrypted only.
                Some(_) => "a DER key is read unencrypted only, as libpq reads it (libpq says \"unsupported\" for an encrypted one): convert it to encrypted PEM".into(),
                None => e.to_string(),
            })
        })?
    };
    let pkcs8 = pkey
        .private_key_to_pkcs8()
        .map_err(|e| rejected(e.to_string()))?;
    let der = PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8));
    certified_key(certs, der, cert, key)
}

/// The certified key of `certs` and `key_der`, once the key is known to be the
/// certificate's.
pub(crate) fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let what = || {
        format!(
            "client certificate {} with key {}",
            cert.display(),
            key.display()
        )
    };
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsSetupError::Rejected {
            what: what(),
            source,
        })?;
    let leaf_spki = certs
        .first()
        .and_then(|c| X509Certificate::from_der(c.as_ref()).ok())
        .map(|(_, c)| c.public_key().raw.to_vec());
    if let (Some(cert_key), Some(own)) = (leaf_spki, signing.public_key())
        && cert_key != own.as_ref()
    {
        return Err(TlsSetupError::Rejected {
            what: what(),
            source: rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
        });
    }
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}
