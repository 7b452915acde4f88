//! The verifier every handshake uses, and the client-certificate resolver.
//!
//! [`CaptureVerifier`] records the chain the server presented and hands the verdict
//! to the probe's client profile: rustls' WebPKI verifier (`webpki`), or OpenSSL's
//! verification with the client's own rules (`openssl`, [`super::profile`]), so
//! that a failed verification still reports what the server sent and the handshake
//! never refuses what the application's client accepts. [`Enforcement`] says which
//! part of the verdict stops the handshake (libpq's `sslmode=require` verifies and
//! reports, without refusing).

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::profile::{ClientRules, OpenSslTrust, Verdict};
use crate::taxonomy::ErrorType;

/// Which part of the verdict stops a handshake. Verification always runs in
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

/// Who judges the chain.
#[derive(Clone, Debug)]
pub(super) enum Judge {
    /// rustls' WebPKI verifier (the `webpki` profile).
    WebPki(Arc<WebPkiServerVerifier>),
    /// OpenSSL's verification and the client's name rule (the `openssl` profile).
    OpenSsl {
        /// Anchors and CRLs.
        trust: Arc<OpenSslTrust>,
        /// Whose rules.
        rules: ClientRules,
        /// `tls.strict`: legacy certificates fail.
        strict: bool,
    },
}

/// Records the chain the server presented, then lets the profile decide.
/// This is the one deliberate custom verifier: it never accepts anything the
/// profile's client rejects.
/// Under a weaker [`Enforcement`], a failed verdict the mode tolerates is kept (and
/// reported by the client) instead of stopping the handshake.
#[derive(Debug)]
pub(super) struct CaptureVerifier {
    pub(super) judge: Judge,
    /// Signature algorithms of the handshake (the crypto provider's).
    pub(super) algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    /// The name the certificate must be valid for, as the client compares it.
    pub(super) host: String,
    /// When validity is judged.
    pub(super) now: SystemTime,
    pub(super) seen: Mutex<Vec<CertificateDer<'static>>>,
    pub(super) enforcement: Enforcement,
    pub(super) tolerated: Mutex<Option<rustls::Error>>,
    /// The `openssl` profile's verdict on the chain.
    pub(super) verdict: Mutex<Option<Verdict>>,
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

    pub(super) fn take_verdict(&self) -> Option<Verdict> {
        self.verdict.lock().ok().and_then(|mut t| t.take())
    }

    /// The `openssl` profile's decision: the verdict is kept for the client's
    /// report; the handshake stops when the enforcement does not tolerate it.
    fn judge_openssl(
        &self,
        trust: &OpenSslTrust,
        rules: ClientRules,
        strict: bool,
        chain: &[CertificateDer<'static>],
    ) -> Result<ServerCertVerified, rustls::Error> {
        let host = match self.enforcement {
            Enforcement::ChainOnly => None,
            _ => Some(self.host.as_str()),
        };
        let verdict = trust.judge(rules, chain, host, self.now, strict);
        let first = verdict.problems.first().map(|p| p.class);
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(verdict);
        }
        match first {
            Some(class) if self.enforcement != Enforcement::ReportOnly => {
                Err(rustls::Error::InvalidCertificate(certificate_error(class)))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    /// A handshake signature checked against the leaf's public key as the
    /// certificate states it (an X.509 v1 leaf has one too; WebPKI does not parse
    /// such a certificate).
    fn raw_key_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding);
        let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|_| bad())?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        if tls13 {
            return rustls::crypto::verify_tls13_signature_with_raw_key(
                message,
                &spki,
                dss,
                &self.algorithms,
            );
        }
        let key = webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| bad())?;
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        for alg in candidates {
            if key.verify_signature(*alg, message, dss.signature()).is_ok() {
                return Ok(HandshakeSignatureValid::assertion());
            }
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadSignature,
        ))
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
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = chain.clone();
        }
        let inner = match &self.judge {
            Judge::WebPki(v) => v,
            Judge::OpenSsl {
                trust,
                rules,
                strict,
            } => return self.judge_openssl(trust, *rules, *strict, &chain),
        };
        let verdict =
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
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
        match &self.judge {
            Judge::WebPki(v) => v.verify_tls12_signature(message, cert, dss),
            Judge::OpenSsl { .. } => self.raw_key_signature(message, cert, dss, false),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.judge {
            Judge::WebPki(v) => v.verify_tls13_signature(message, cert, dss),
            Judge::OpenSsl { .. } => self.raw_key_signature(message, cert, dss, true),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        false
    }
}

/// The rustls error that stands for a refusal of class `class` (it picks the alert
/// sent to the server; the probe reports the profile's own problems).
fn certificate_error(class: ErrorType) -> rustls::CertificateError {
    use rustls::CertificateError as C;
    match class {
        ErrorType::TlsCertExpired => C::Expired,
        ErrorType::TlsCertNotYetValid => C::NotValidYet,
        ErrorType::TlsUnknownIssuer => C::UnknownIssuer,
        ErrorType::TlsHostnameMismatch => C::NotValidForName,
        ErrorType::TlsCertRevoked => C::Revoked,
        _ => C::BadEncoding,
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
