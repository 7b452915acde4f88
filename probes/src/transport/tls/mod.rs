//! The TLS client every probe shares.
//!
//! Verification is always on. To report what a server presented even when
//! verification fails, the client installs a capturing verifier ([`verifier`]): it
//! records the chain and then delegates to the probe's client profile
//! ([`profile`]): OpenSSL's verification with the rules of the kind's reference
//! client (`openssl`, the default), or rustls' WebPKI verifier (`webpki`), whose
//! verdict stands. Session resumption is off, since a resumed session skips the
//! verifier (and the point of a probe is to see the certificate served today).
//!
//! Some protocols let a client connect without enforcing the verdict (libpq's
//! `sslmode=require`). For them a client can be set to an [`Enforcement`] weaker than
//! [`Enforcement::Full`]: verification still runs in full, and every problem a
//! tolerated verdict holds is reported as a `cert_invalid` finding.

mod expect;
pub mod names;
pub mod ocsp;
pub mod profile;
mod revocation;
mod roots;
mod verifier;
pub(crate) mod words;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use depprobe_config::{ClientProfile, ExpiryWindow, OcspMode, TlsSpec};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::chain;
use super::classify::{ClientAuth, classify, classify_handshake};
use crate::outcome::{Finding, FindingType, Problem, Severity, TlsFacts, rfc3339};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

pub use profile::ClientRules;
use profile::{Legacy, OpenSslTrust, Verdict};
pub use roots::{TlsSetupError, client_key, client_key_with, provider, read_certs, verifier};
pub use verifier::Enforcement;
use verifier::{AskRecorder, CaptureVerifier, Judge};

/// How one probe speaks TLS; built once, used by every run.
#[derive(Clone)]
pub struct TlsClient {
    /// Who judges the chain: the profile.
    judge: Judge,
    versions: &'static [&'static SupportedProtocolVersion],
    alpn: Vec<Vec<u8>>,
    client_key: Option<Arc<CertifiedKey>>,
    server_name: Option<String>,
    /// Whether SNI is sent.
    sni: bool,
    enforcement: Enforcement,
    /// A certificate that expires within this is a `cert_expiring` finding.
    pub warn_before: ExpiryWindow,
    /// Within this, the finding is critical.
    pub critical_before: ExpiryWindow,
    /// What the chain must match besides verifying (issuer, pins).
    expected: Arc<expect::Expected>,
    /// When the CRLs of `crl_file` stop being current.
    crl_dates: Arc<revocation::CrlDates>,
    /// The certificates of `ca_file`, where OCSP looks for a leaf's issuer that the
    /// server did not send.
    anchors: Arc<Vec<CertificateDer<'static>>>,
    /// `tls.ocsp: online`: the responder client and its kept answers.
    online: Option<Arc<ocsp::Online>>,
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
static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
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

impl<IO> TlsSession<IO> {
    /// Hands what the handshake saw to `run`: the TLS facts and the certificate
    /// findings. Every kind does this once its handshake succeeded.
    pub fn adopt(&mut self, run: &mut crate::run::Run<'_>) {
        run.tls = Some(self.facts.clone());
        run.findings.append(&mut self.findings);
    }
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
        let judge = match spec.client_profile.unwrap_or_default() {
            ClientProfile::Webpki => Judge::WebPki(verifier(spec)?),
            ClientProfile::Openssl => Judge::OpenSsl {
                trust: OpenSslTrust::from_spec(spec)?,
                rules: ClientRules::default(),
                strict: spec.strict,
            },
        };
        Ok(TlsClient {
            judge,
            versions,
            alpn,
            client_key,
            server_name: spec.server_name.clone(),
            sni: true,
            enforcement: Enforcement::Full,
            warn_before: spec.warn_before,
            critical_before: spec.critical_before,
            expected: Arc::new(expect::Expected::from_spec(spec)?),
            crl_dates: Arc::new(revocation::CrlDates::from_spec(spec)),
            anchors: match &spec.ca_file {
                Some(path) => roots::shared_anchors(path)?,
                None => Arc::new(Vec::new()),
            },
            online: (spec.ocsp == OcspMode::Online)
                .then(|| Arc::new(ocsp::Online::new(spec.ocsp_timeout.into()))),
        })
    }

    /// The same client offering other ALPN protocols.
    pub fn with_alpn(mut self, alpn: &[&str]) -> Self {
        self.alpn = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// The same client judging as `rules`' client does (under the `openssl`
    /// profile; the kind's reference client: libpq, curl, ...).
    pub fn with_rules(mut self, rules: ClientRules) -> Self {
        if let Judge::OpenSsl { rules: r, .. } = &mut self.judge {
            *r = rules;
        }
        self
    }

    /// The same client presenting `key` as its certificate (or none).
    pub fn with_client_key(mut self, key: Option<Arc<CertifiedKey>>) -> Self {
        self.client_key = key;
        self
    }

    /// The same client sending SNI or not (libpq's `sslsni`).
    pub fn with_sni(mut self, sni: bool) -> Self {
        self.sni = sni;
        self
    }

    /// The same client offering TLS 1.2 and/or 1.3 only.
    pub fn with_versions(mut self, tls12: bool, tls13: bool) -> Self {
        self.versions = match (tls12, tls13) {
            (true, false) => TLS12_ONLY,
            (false, true) => TLS13_ONLY,
            _ => TLS12_AND_13,
        };
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
        let name = match names::host_address(&name_text) {
            // An address as C's inet_aton reads it (`192.000.002.001`): no SNI.
            Some(ip) => ServerName::IpAddress(ip.into()),
            None => ServerName::try_from(name_text.clone()).map_err(|_| {
                ProbeError::new(
                    ErrorType::TlsProtocolError,
                    Phase::Tls,
                    format!("`{name_text}` is not a valid TLS server name"),
                )
            })?,
        };
        let capture = Arc::new(CaptureVerifier {
            judge: self.judge.clone(),
            algorithms: provider().signature_verification_algorithms,
            host: name_text.clone(),
            now,
            seen: Mutex::new(Vec::new()),
            enforcement: self.enforcement,
            tolerated: Mutex::new(None),
            verdict: Mutex::new(None),
            staple: Mutex::new(Vec::new()),
        });
        let recorder = Arc::new(AskRecorder {
            key: self.client_key.clone(),
            asked: AtomicBool::new(false),
        });
        let connector = self.connector(capture.clone(), recorder.clone())?;
        let result = connector.connect(name.clone(), io).await;
        let client_auth = ClientAuth {
            asked: recorder.asked.load(Ordering::Relaxed),
            sent: self.client_key.is_some(),
        };
        let staple = capture
            .staple
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        let seen = Seen {
            chain: capture.take(),
            tolerated: capture.take_tolerated(),
            verdict: capture.take_verdict(),
            stapled: !staple.is_empty(),
            name,
            name_text,
            now,
        };
        match result {
            Ok(stream) => {
                let session = self.established(stream, seen, client_auth);
                self.revocation(session, &staple, now).await
            }
            Err(e) => Err(self.refused(&e, seen, client_auth)),
        }
    }

    /// A connector for one handshake: our verifier and client-certificate resolver,
    /// no session resumption (it would skip the verifier).
    fn connector(
        &self,
        capture: Arc<CaptureVerifier>,
        recorder: Arc<AskRecorder>,
    ) -> Result<TlsConnector, ProbeError> {
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
            .with_custom_certificate_verifier(capture)
            .with_client_cert_resolver(recorder);
        config.alpn_protocols = self.alpn.clone();
        config.enable_sni = self.sni;
        config.resumption = Resumption::disabled();
        Ok(TlsConnector::from(Arc::new(config)))
    }

    /// The session of a completed handshake: its facts, the expiry findings, and a
    /// `cert_invalid` finding for each problem a weaker enforcement let through.
    fn established<IO>(
        &self,
        stream: TlsStream<IO>,
        seen: Seen,
        client_auth: ClientAuth,
    ) -> TlsSession<IO> {
        let conn = stream.get_ref().1;
        let chain_der: Vec<CertificateDer<'static>> = match conn.peer_certificates() {
            Some(c) => c.iter().map(|c| c.clone().into_owned()).collect(),
            None => seen.chain,
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
            server_name: seen.name_text,
            verified: true,
            chain: chain::facts(&chain_der),
        };
        let mut findings = chain::expiry_findings(
            &facts.chain,
            seen.now,
            &self.warn_before,
            &self.critical_before,
        );
        findings.extend(self.expected.judge(&chain_der, &facts.chain));
        findings.extend(self.crl_dates.findings(seen.now));
        findings.extend(revocation::missing_staple(
            &chain_der,
            &facts.chain,
            seen.stapled,
        ));
        if let Some(verdict) = seen.tolerated {
            let invalid =
                self.tolerated_problems(&verdict, &chain_der, &facts, &seen.name, seen.now);
            facts.verified = invalid.is_empty();
            findings.extend(invalid.iter().map(|p| cert_invalid(p, &facts)));
        }
        if let Some(mut verdict) = seen.verdict {
            self.in_words(&mut verdict.problems, &chain_der, &facts.chain, seen.now);
            facts.verified = verdict.problems.is_empty();
            findings.extend(verdict.problems.iter().map(|p| cert_invalid(p, &facts)));
            findings.extend(verdict.legacy.iter().map(|l| cert_legacy(l, &facts)));
        }
        TlsSession {
            stream,
            facts,
            findings,
            client_auth,
        }
    }

    /// The OCSP verdict on a verified chain's leaf: a verified `revoked` fails the
    /// run with `tls_cert_revoked` (a `cert_invalid` finding where the enforcement
    /// lets problems through); the rest are findings. The responder's time counts
    /// in the `tls` phase, as this runs inside the handshake.
    async fn revocation<IO>(
        &self,
        mut session: TlsSession<IO>,
        staple: &[u8],
        now: SystemTime,
    ) -> Result<TlsSession<IO>, ProbeError> {
        if !session.facts.verified || (staple.is_empty() && self.online.is_none()) {
            return Ok(session);
        }
        let chain: Vec<CertificateDer<'static>> = session
            .stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let presented = ocsp::Presented {
            chain: &chain,
            facts: &session.facts.chain,
            staple,
            anchors: &self.anchors,
        };
        let verdict = ocsp::judge(presented, self.online.as_deref(), now).await;
        session.findings.extend(verdict.findings);
        let Some(problem) = verdict.revoked else {
            return Ok(session);
        };
        session.facts.verified = false;
        if self.enforcement == Enforcement::ReportOnly {
            session
                .findings
                .push(cert_invalid(&problem, &session.facts));
            return Ok(session);
        }
        let mut err = ProbeError::new(problem.class, Phase::Tls, problem.message.clone());
        err.problems = vec![problem];
        Err(err.with_tls(session.facts))
    }

    /// The error of a failed handshake: every problem of the chain, in table order,
    /// with the chain the server presented.
    fn refused(&self, e: &std::io::Error, seen: Seen, client_auth: ClientAuth) -> ProbeError {
        let (class, message) = classify_handshake(e, client_auth);
        let facts_list = chain::facts(&seen.chain);
        let mut problems = Vec::new();
        match (&self.judge, seen.verdict) {
            (_, Some(verdict)) if !verdict.problems.is_empty() => problems = verdict.problems,
            (Judge::WebPki(verifier), _) if is_chain_problem(class) && !seen.chain.is_empty() => {
                problems =
                    chain::problems(&seen.chain, &facts_list, &seen.name, verifier, seen.now);
            }
            _ => {}
        }
        if !problems.iter().any(|p| p.class == class) {
            problems.push(Problem { class, message });
        }
        self.in_words(&mut problems, &seen.chain, &facts_list, seen.now);
        problems.sort_by_key(|p| p.class);
        problems.dedup_by_key(|p| p.class);
        let first = &problems[0];
        let mut err = ProbeError::new(first.class, Phase::Tls, first.message.clone());
        if problems.len() > 1 {
            let others: Vec<&str> = problems[1..].iter().map(|p| p.message.as_str()).collect();
            err.message = format!("{}; also: {}", err.message, others.join("; "));
        }
        err.problems = problems;
        if !seen.chain.is_empty() {
            err = err.with_tls(TlsFacts {
                server_name: seen.name_text,
                verified: false,
                chain: facts_list,
                ..TlsFacts::default()
            });
        }
        err
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
        let mut problems = match &self.judge {
            Judge::WebPki(verifier) => {
                chain::problems(chain_der, &facts.chain, name, verifier, now)
            }
            Judge::OpenSsl { .. } => Vec::new(),
        };
        if problems.is_empty() {
            let (class, message) = classify(verdict, ClientAuth::default());
            problems.push(Problem { class, message });
        }
        if self.enforcement == Enforcement::ChainOnly {
            problems.retain(|p| p.class != ErrorType::TlsHostnameMismatch);
        }
        self.in_words(&mut problems, chain_der, &facts.chain, now);
        problems.sort_by_key(|p| p.class);
        problems.dedup_by_key(|p| p.class);
        problems
    }

    /// The problems in words the chain allows ([`words`]): under `webpki`, what
    /// the verifier named in its own terms; under both, the CRL entry that revoked
    /// a certificate.
    fn in_words(
        &self,
        problems: &mut [Problem],
        chain_der: &[CertificateDer<'static>],
        facts: &[crate::outcome::CertFacts],
        now: SystemTime,
    ) {
        if let Judge::WebPki(_) = self.judge {
            words::refine_webpki(problems, chain_der, facts);
        }
        // A certificate the CRLs revoke is what matters, whatever the verifier
        // met first on the way (an intermediate no CRL covers).
        if let Some(p) = problems
            .iter_mut()
            .find(|p| p.class == ErrorType::TlsCertRevoked)
            && let Some(entry) = self.crl_dates.revocation_words(facts, now)
        {
            p.message = entry;
        }
    }
}

/// What one handshake saw of the server's certificates.
struct Seen {
    /// The chain presented, leaf first (empty when none arrived).
    chain: Vec<CertificateDer<'static>>,
    /// A failed verdict the enforcement let through.
    tolerated: Option<rustls::Error>,
    /// The `openssl` profile's verdict.
    verdict: Option<Verdict>,
    /// Whether the server stapled an OCSP response.
    stapled: bool,
    /// The name verified.
    name: ServerName<'static>,
    /// The same name, as text.
    name_text: String,
    /// When validity is judged.
    now: SystemTime,
}

/// Whether `class` is a verdict on the chain (then every problem of the chain is
/// listed, not only the first the verifier met).
fn is_chain_problem(class: ErrorType) -> bool {
    matches!(
        class,
        ErrorType::TlsCertExpired
            | ErrorType::TlsCertNotYetValid
            | ErrorType::TlsUnknownIssuer
            | ErrorType::TlsHostnameMismatch
            | ErrorType::TlsCertRevoked
            | ErrorType::TlsBadCertificate
    )
}

/// The `cert_invalid` finding for a problem the handshake was allowed to ignore.
fn cert_invalid(problem: &Problem, facts: &TlsFacts) -> Finding {
    let mut finding = Finding::new(
        FindingType::CERT_INVALID,
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

/// The `cert_legacy` notice for what the profile accepted and stricter clients
/// refuse.
fn cert_legacy(legacy: &Legacy, facts: &TlsFacts) -> Finding {
    let mut finding = Finding::new(
        FindingType::CERT_LEGACY,
        Severity::Notice,
        legacy.message.clone(),
    )
    .with("legacy", legacy.what);
    if let Some(leaf) = facts.leaf() {
        finding = finding
            .with("subject", leaf.subject.clone())
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
