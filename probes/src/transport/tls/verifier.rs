//! The verifier every handshake uses, and the client-certificate resolver.
//!
//! [`CaptureVerifier`] records the chain the server presented and delegates the
//! verdict to rustls' WebPKI verifier, so that a failed verification still reports
//! what the server sent. [`Enforcement`] says which part of the verdict stops the
//! handshake (libpq's `sslmode=require` verifies and reports, without refusing).

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Which part of the WebPKI verdict stops a handshake. Verification always runs in
/// full; a weaker enforcement only lets the handshake go on despite some problems,
/// which are then reported as `cert_invalid` findings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enforcement {
    /// Chain and name must verify (every kind's default; libpq's `verify-full`).
    #[default]
    Full,
    /// The chain must verify; a name the certificate does not cover is accepted
    /// without a finding (libpq's `verify-ca`).
    ChainOnly,
    /// Nothing stops the handshake; every problem is a `cert_invalid` finding (libpq's
    /// `require`, `prefer`, `allow`).
    ReportOnly,
}

/// Records the chain the server presented, then lets the WebPKI verifier decide.
/// This is the one deliberate custom verifier: it never accepts anything the
/// WebPKI verifier rejects.
/// Under a weaker [`Enforcement`], a failed verdict the mode tolerates is kept (and
/// reported by the client) instead of stopping the handshake.
#[derive(Debug)]
pub(super) struct CaptureVerifier {
    pub(super) inner: Arc<WebPkiServerVerifier>,
    pub(super) seen: Mutex<Vec<CertificateDer<'static>>>,
    pub(super) enforcement: Enforcement,
    pub(super) tolerated: Mutex<Option<rustls::Error>>,
    /// The OCSP response the server stapled (empty: none).
    pub(super) staple: Mutex<Vec<u8>>,
}

impl CaptureVerifier {
    pub(super) fn take(&self) -> Vec<CertificateDer<'static>> {
        match self.seen.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => Vec::new(),
        }
    }

    pub(super) fn take_tolerated(&self) -> Option<rustls::Error> {
        self.tolerated.lock().ok().and_then(|mut t| t.take())
    }

    /// Whether the enforcement lets the handshake go on despite `error`.
    fn tolerates(&self, error: &rustls::Error) -> bool {
        use rustls::CertificateError as C;
        match self.enforcement {
            Enforcement::Full => false,
            Enforcement::ChainOnly => matches!(
                error,
                rustls::Error::InvalidCertificate(
                    C::NotValidForName | C::NotValidForNameContext { .. }
                )
            ),
            Enforcement::ReportOnly => true,
        }
    }
}

impl ServerCertVerifier for CaptureVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut staple) = self.staple.lock() {
            *staple = ocsp_response.to_vec();
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.clear();
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(e) if self.tolerates(&e) => {
                if let Ok(mut t) = self.tolerated.lock() {
                    *t = Some(e);
                }
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        false
    }
}

/// Offers the configured client certificate (if any) and records that the server
/// asked for one, so that a later rejection can be named `tls_client_cert_required`.
#[derive(Debug)]
pub(super) struct AskRecorder {
    pub(super) key: Option<Arc<CertifiedKey>>,
    pub(super) asked: std::sync::atomic::AtomicBool,
}

impl ResolvesClientCert for AskRecorder {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, std::sync::atomic::Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}
