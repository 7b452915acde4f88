//! The TLS client every probe shares.
//!
//! Verification is always on. To report what a server presented even when
//! verification fails, the client installs [`CaptureVerifier`]: it records the chain
//! and then delegates to rustls' WebPKI verifier, whose verdict stands. Session
//! resumption is off, since a resumed session skips the verifier (and the point of a
//! probe is to see the certificate served today).
//!
//! Some protocols let a client connect without enforcing the verdict (libpq's
//! `sslmode=require`). For them a client can be set to an [`Enforcement`] weaker than
//! [`Enforcement::Full`]: verification still runs in full, and every problem a
//! tolerated verdict holds is reported as a `cert_invalid` finding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use depprobe_config::TlsSpec;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::chain;
use super::classify::{ClientAuth, classify, classify_handshake};
use crate::outcome::{Finding, FindingType, Problem, Severity, TlsFacts, rfc3339};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

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
    /// There are no trust anchors at all.
    #[error("no trusted roots: the system has none and no ca_file is set")]
    NoRoots,
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

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
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
                .filter_map(Result::ok)
                .collect();
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
        cache.insert(key, v.clone());
    }
    Ok(v)
}

/// A client certificate and key, loaded from PEM files.
pub fn client_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let certs = read_certs(cert)?;
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsSetupError::Empty {
        path: key.to_owned(),
        what: "private key",
    })?;
    let ck = CertifiedKey::from_der(certs, key_der, &provider()).map_err(|source| {
        TlsSetupError::Rejected {
            what: format!(
                "client certificate {} with key {}",
                cert.display(),
                key.display()
            ),
            source,
        }
    })?;
    Ok(Arc::new(ck))
}

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

/// How one probe speaks TLS; built once, used by every run.
#[derive(Clone)]
pub struct TlsClient {
    verifier: Arc<WebPkiServerVerifier>,
    versions: &'static [&'static SupportedProtocolVersion],
    alpn: Vec<Vec<u8>>,
    client_key: Option<Arc<CertifiedKey>>,
    server_name: Option<String>,
    enforcement: Enforcement,
    /// A certificate that expires within this is a `cert_expiring` finding.
    pub warn_before: Duration,
    /// Within this, the finding is critical.
    pub critical_before: Duration,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("alpn", &self.alpn)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS12_AND_13: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A completed handshake.
pub struct TlsSession<IO> {
    /// The encrypted stream.
    pub stream: TlsStream<IO>,
    /// What the session looks like.
    pub facts: TlsFacts,
    /// `cert_expiring` findings for the chain.
    pub findings: Vec<Finding>,
    /// Whether the server asked for a client certificate, and whether one was sent.
    pub client_auth: ClientAuth,
}

impl TlsClient {
    /// The client for `spec`, offering `default_alpn` unless the spec sets its own.
    pub fn from_spec(spec: &TlsSpec, default_alpn: &[&str]) -> Result<TlsClient, TlsSetupError> {
        let versions = match spec.min_version.as_deref() {
            Some("1.3") => TLS13_ONLY,
            _ => TLS12_AND_13,
        };
        let alpn = match &spec.alpn {
            Some(list) => list.iter().map(|p| p.as_bytes().to_vec()).collect(),
            None => default_alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
        };
        let client_key = match (&spec.cert_file, &spec.key_file) {
            (Some(c), Some(k)) => Some(client_key(c, k)?),
            _ => None,
        };
        Ok(TlsClient {
            verifier: verifier(spec)?,
            versions,
            alpn,
            client_key,
            server_name: spec.server_name.clone(),
            enforcement: Enforcement::Full,
            warn_before: spec.warn_before.0,
            critical_before: spec.critical_before.0,
        })
    }

    /// The same client offering other ALPN protocols.
    pub fn with_alpn(mut self, alpn: &[&str]) -> Self {
        self.alpn = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// The same client enforcing only part of the verdict (see [`Enforcement`]).
    pub fn with_enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// The name sent in SNI and verified: the override, or `host`.
    pub fn server_name_for(&self, host: &str) -> String {
        self.server_name.clone().unwrap_or_else(|| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
    }

    /// Performs the handshake over `io` for `host`, judging validity at `now`.
    pub async fn handshake<IO>(
        &self,
        io: IO,
        host: &str,
        now: SystemTime,
    ) -> Result<TlsSession<IO>, ProbeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name_text = self.server_name_for(host);
        let name = ServerName::try_from(name_text.clone()).map_err(|_| {
            ProbeError::new(
                ErrorType::TlsProtocolError,
                Phase::Tls,
                format!("`{name_text}` is not a valid TLS server name"),
            )
        })?;
        let capture = Arc::new(CaptureVerifier {
            inner: self.verifier.clone(),
            seen: Mutex::new(Vec::new()),
            enforcement: self.enforcement,
            tolerated: Mutex::new(None),
        });
        let recorder = Arc::new(AskRecorder {
            key: self.client_key.clone(),
            asked: std::sync::atomic::AtomicBool::new(false),
        });
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(self.versions)
            .map_err(|e| {
                ProbeError::new(
                    ErrorType::TlsProtocolError,
                    Phase::Tls,
                    format!("TLS setup: {e}"),
                )
            })?
            .dangerous()
            .with_custom_certificate_verifier(capture.clone())
            .with_client_cert_resolver(recorder.clone());
        config.alpn_protocols = self.alpn.clone();
        config.resumption = Resumption::disabled();
        let connector = TlsConnector::from(Arc::new(config));

        let result = connector.connect(name.clone(), io).await;
        let client_auth = ClientAuth {
            asked: recorder.asked.load(std::sync::atomic::Ordering::Relaxed),
            sent: self.client_key.is_some(),
        };
        let captured = capture.take();
        let tolerated = capture.take_tolerated();
        match result {
            Ok(stream) => {
                let conn = stream.get_ref().1;
                let chain_der: Vec<CertificateDer<'static>> = match conn.peer_certificates() {
                    Some(c) => c.iter().map(|c| c.clone().into_owned()).collect(),
                    None => captured,
                };
                let mut facts = TlsFacts {
                    version: conn.protocol_version().map(version_text),
                    cipher: conn
                        .negotiated_cipher_suite()
                        .map(|s| format!("{:?}", s.suite())),
                    kx_group: conn
                        .negotiated_key_exchange_group()
                        .map(|g| format!("{:?}", g.name())),
                    alpn: conn
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                    server_name: name_text,
                    verified: true,
                    chain: chain::facts(&chain_der),
                };
                let mut findings = chain::expiry_findings(
                    &facts.chain,
                    now,
                    self.warn_before,
                    self.critical_before,
                );
                if let Some(verdict) = tolerated {
                    let invalid = self.tolerated_problems(&verdict, &chain_der, &facts, &name, now);
                    facts.verified = invalid.is_empty();
                    findings.extend(invalid.iter().map(|p| cert_invalid(p, &facts)));
                }
                Ok(TlsSession {
                    stream,
                    facts,
                    findings,
                    client_auth,
                })
            }
            Err(e) => {
                let (class, message) = classify_handshake(&e, client_auth);
                let facts_list = chain::facts(&captured);
                let mut problems = Vec::new();
                if class.is_tls()
                    && matches!(
                        class,
                        ErrorType::TlsCertExpired
                            | ErrorType::TlsCertNotYetValid
                            | ErrorType::TlsUnknownIssuer
                            | ErrorType::TlsHostnameMismatch
                            | ErrorType::TlsCertRevoked
                            | ErrorType::TlsBadCertificate
                    )
                {
                    problems = chain::problems(&captured, &facts_list, &name, &self.verifier, now);
                }
                if !problems.iter().any(|p| p.class == class) {
                    problems.push(Problem { class, message });
                }
                problems.sort_by_key(|p| p.class);
                problems.dedup_by_key(|p| p.class);
                let first = &problems[0];
                let mut err = ProbeError::new(first.class, Phase::Tls, first.message.clone());
                if problems.len() > 1 {
                    let others: Vec<&str> =
                        problems[1..].iter().map(|p| p.message.as_str()).collect();
                    err.message = format!("{}; also: {}", err.message, others.join("; "));
                }
                err.problems = problems;
                if !captured.is_empty() {
                    err = err.with_tls(TlsFacts {
                        server_name: name_text,
                        verified: false,
                        chain: facts_list,
                        ..TlsFacts::default()
                    });
                }
                Err(err)
            }
        }
    }

    /// Every problem of a verdict the enforcement let through, in table order; under
    /// [`Enforcement::ChainOnly`] the name is not one.
    fn tolerated_problems(
        &self,
        verdict: &rustls::Error,
        chain_der: &[CertificateDer<'static>],
        facts: &TlsFacts,
        name: &ServerName<'static>,
        now: SystemTime,
    ) -> Vec<Problem> {
        let mut problems = chain::problems(chain_der, &facts.chain, name, &self.verifier, now);
        if problems.is_empty() {
            let (class, message) = classify(verdict, ClientAuth::default());
            problems.push(Problem { class, message });
        }
        if self.enforcement == Enforcement::ChainOnly {
            problems.retain(|p| p.class != ErrorType::TlsHostnameMismatch);
        }
        problems.sort_by_key(|p| p.class);
        problems.dedup_by_key(|p| p.class);
        problems
    }
}

/// The `cert_invalid` finding for a problem the handshake was allowed to ignore.
fn cert_invalid(problem: &Problem, facts: &TlsFacts) -> Finding {
    let mut finding = Finding::new(
        FindingType::CertInvalid,
        Severity::Critical,
        format!(
            "{} [{}]: verification is not enforced here, so the connection went ahead, but a client that verifies the certificate would refuse it",
            problem.message, problem.class
        ),
    )
    .with("error_type", problem.class.as_str());
    if let Some(leaf) = facts.leaf() {
        finding = finding
            .with("subject", leaf.subject.clone())
            .with("issuer", leaf.issuer.clone())
            .with("not_before", rfc3339(leaf.not_before))
            .with("not_after", rfc3339(leaf.not_after))
            .with("sha256", leaf.sha256.clone());
    }
    finding
}

/// `1.2`, `1.3`.
fn version_text(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Records the chain the server presented, then lets the WebPKI verifier decide.
/// This is the one deliberate custom verifier: it never accepts anything the
/// WebPKI verifier rejects.
/// Under a weaker [`Enforcement`], a failed verdict the mode tolerates is kept (and
/// reported by the client) instead of stopping the handshake.
#[derive(Debug)]
struct CaptureVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Vec<CertificateDer<'static>>>,
    enforcement: Enforcement,
    tolerated: Mutex<Option<rustls::Error>>,
}

impl CaptureVerifier {
    fn take(&self) -> Vec<CertificateDer<'static>> {
        match self.seen.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => Vec::new(),
        }
    }

    fn take_tolerated(&self) -> Option<rustls::Error> {
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
struct AskRecorder {
    key: Option<Arc<CertifiedKey>>,
    asked: std::sync::atomic::AtomicBool,
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
