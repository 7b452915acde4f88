//! The endpoint's TLS certificate, renewed without a restart.
//!
//! Certificates are renewed where they live (cert-manager writing a Secret, a
//! mounted volume updated in place). Reading the two small files at each handshake
//! and building a new certified key only when their bytes change serves a renewed
//! certificate at once, and a half-done renewal never breaks the endpoint.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::{WebConfigError, certificates_in, pem_error, read_small};

/// The endpoint's certificate, read again from its files at each handshake: a
/// renewed certificate (cert-manager, a mounted Secret) is served without a restart.
/// A pair of files that does not make a certificate and its key (one renewed, not
/// yet the other) leaves the previous one in service.
#[derive(Debug)]
pub(super) struct RotatingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Served>,
}

/// The files' contents and the certificate made of them.
#[derive(Debug)]
struct Served {
    cert_pem: String,
    key_pem: String,
    key: Arc<CertifiedKey>,
}

impl RotatingCert {
    pub(super) fn load(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<RotatingCert, WebConfigError> {
        let (cert_pem, key_pem) = (read_small(cert_file)?, read_small(key_file)?);
        let key = Arc::new(certified(
            cert_file, &cert_pem, key_file, &key_pem, &provider,
        )?);
        Ok(RotatingCert {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: Mutex::new(Served {
                cert_pem,
                key_pem,
                key,
            }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut served = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Ok(cert_pem), Ok(key_pem)) =
            (read_small(&self.cert_file), read_small(&self.key_file))
            && (cert_pem != served.cert_pem || key_pem != served.key_pem)
        {
            match certified(
                &self.cert_file,
                &cert_pem,
                &self.key_file,
                &key_pem,
                &self.provider,
            ) {
                Ok(key) => {
                    tracing::info!(
                        "agent.web_config: serving the renewed certificate of {}",
                        self.cert_file.display()
                    );
                    *served = Served {
                        cert_pem,
                        key_pem,
                        key: Arc::new(key),
                    };
                }
                Err(e) => tracing::debug!("agent.web_config: the previous certificate stays: {e}"),
            }
        }
        served.key.clone()
    }
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The certificate chain in `cert_pem` with the private key in `key_pem`, checked
/// to match.
fn certified(
    cert_file: &Path,
    cert_pem: &str,
    key_file: &Path,
    key_pem: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, WebConfigError> {
    let chain = certificates_in(cert_file, cert_pem.as_bytes())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| pem_error(key_file, "no PEM private key"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| WebConfigError::Tls(e.to_string()))
}
