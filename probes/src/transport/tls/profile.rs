//! Client profiles: a captured chain judged by the rules of the client the
//! application uses.
//!
//! rustls does the handshake and captures the chain; under the `openssl` profile
//! the chain is then judged here by OpenSSL's own X.509 verification (the system
//! OpenSSL that psql, curl and the MySQL client link), with the trust store, CRL
//! flags and partial-chain rule the client sets, and by the client's own name rule
//! ([`super::names`]). What the profile accepts but WebPKI clients refuse (an X.509
//! v1 certificate, a name only in the CN, a CA:TRUE leaf, an address written as a
//! dNSName) is kept as [`Legacy`], reported as a `cert_legacy` notice, or as a
//! failure under `tls.strict`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use depprobe_config::TlsSpec;
use openssl::ssl::{SslContext, SslFiletype, SslMethod};
use openssl::stack::Stack;
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509PurposeId, X509StoreContext};
use rustls::pki_types::CertificateDer;

use super::TlsSetupError;
use super::names::{self, NameMatch, NameRule};
use super::words::{self, KeyMinimum};
use crate::outcome::{CertFacts, Problem};
use crate::taxonomy::ErrorType;
use crate::transport::chain;

/// Which OpenSSL-based client a probe stands for: its name rule and whether an
/// intermediate in the trust store is an anchor of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientRules {
    /// libpq: its name rule; no `X509_V_FLAG_PARTIAL_CHAIN` (a store holding only
    /// an intermediate fails).
    Libpq,
    /// curl: its name rule; partial chains allowed (curl 7.68+ sets the flag).
    Curl,
    /// hiredis (redis-cli, and the clients built on it): the chain is verified,
    /// the name is not (hiredis sets no host to check); a name the certificate does
    /// not cover is a `cert_legacy` notice, since go-redis, node-redis, Lettuce and
    /// redis-py 6+ refuse it.
    Hiredis,
    /// The MySQL/MariaDB, broker and SMTP clients: `X509_check_host`, no partial
    /// chains.
    #[default]
    OpenSsl,
}

impl ClientRules {
    fn name_rule(self) -> NameRule {
        match self {
            ClientRules::Libpq => NameRule::Libpq,
            ClientRules::Curl => NameRule::Curl,
            ClientRules::OpenSsl | ClientRules::Hiredis => NameRule::CheckHost,
        }
    }

    /// The client, for messages.
    pub fn client(self) -> &'static str {
        match self {
            ClientRules::Libpq => "libpq",
            ClientRules::Curl => "curl",
            ClientRules::Hiredis => "redis-cli (hiredis)",
            ClientRules::OpenSsl => "OpenSSL-based clients",
        }
    }
}

/// Something the profile accepts that WebPKI clients refuse.
#[derive(Clone, Debug, PartialEq)]
pub struct Legacy {
    /// A stable name: `cn_only`, `x509_v1`, `ca_leaf`, `address_as_dns_name`,
    /// `name_unchecked`.
    pub what: &'static str,
    /// What it is and which clients refuse it.
    pub message: String,
}

impl Legacy {
    /// The class a strict probe fails with.
    pub fn class(&self) -> ErrorType {
        match self.what {
            "cn_only" | "address_as_dns_name" | "name_unchecked" => ErrorType::TlsHostnameMismatch,
            _ => ErrorType::TlsBadCertificate,
        }
    }
}

/// The judgement of one chain.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Every problem, in table order; empty when the client accepts the chain.
    pub problems: Vec<Problem>,
    /// What stricter clients would refuse (reported when the chain is accepted).
    pub legacy: Vec<Legacy>,
}

/// The trust of the `openssl` profile: anchors, CRLs and the security level.
#[derive(Debug)]
pub struct OpenSslTrust {
    anchors: Vec<X509>,
    system_roots: bool,
    crl_file: Option<PathBuf>,
    crl_dir: Option<PathBuf>,
    /// Issuers of the X.509 v1 CRLs in `crl_file` (accepted here, refused by
    /// rustls/webpki).
    v1_crls: Vec<String>,
}

type TrustKey = (bool, String, Option<PathBuf>, Option<PathBuf>);

fn trust_cache() -> &'static Mutex<HashMap<TrustKey, Arc<OpenSslTrust>>> {
    static CACHE: OnceLock<Mutex<HashMap<TrustKey, Arc<OpenSslTrust>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The system's trust anchors, parsed once: what `set_default_paths` would load
/// on every verification (Debian's `ca-certificates`, as rustls-native-certs finds
/// them), which costs far more than the verification itself.
fn system_roots() -> &'static [X509] {
    static ROOTS: OnceLock<Vec<X509>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .filter_map(|der| X509::from_der(der).ok())
            .collect()
    })
}

/// The security level of a default OpenSSL client context on this system
/// (Debian: 2, so RSA keys under 2048 bits and SHA-1 signatures are refused).
fn security_level() -> i32 {
    static LEVEL: OnceLock<i32> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        SslContext::builder(SslMethod::tls_client())
            .map(|b| i32::try_from(b.build().security_level()).unwrap_or(1))
            .unwrap_or(1)
    })
}

impl OpenSslTrust {
    /// The trust `spec` configures (shared by every probe with the same files).
    pub fn from_spec(spec: &TlsSpec) -> Result<Arc<OpenSslTrust>, TlsSetupError> {
        let ca = match &spec.ca_file {
            Some(p) => super::roots::read(p)?,
            None => Vec::new(),
        };
        let key = (
            spec.system_roots,
            chain::sha256_hex(&ca),
            spec.crl_file.clone(),
            spec.crl_dir.clone(),
        );
        if let Ok(cache) = trust_cache().lock()
            && let Some(t) = cache.get(&key)
        {
            return Ok(t.clone());
        }
        let anchors = match &spec.ca_file {
            Some(path) => {
                let certs = X509::stack_from_pem(&ca).map_err(|e| TlsSetupError::Malformed {
                    path: path.clone(),
                    what: "CA certificate",
                    reason: e.to_string(),
                })?;
                if certs.is_empty() {
                    return Err(TlsSetupError::Empty {
                        path: path.clone(),
                        what: "CA certificate",
                    });
                }
                certs
            }
            None => Vec::new(),
        };
        let v1_crls = match &spec.crl_file {
            Some(path) => check_crls(path)?,
            None => Vec::new(),
        };
        let trust = Arc::new(OpenSslTrust {
            anchors,
            system_roots: spec.system_roots,
            crl_file: spec.crl_file.clone(),
            crl_dir: spec.crl_dir.clone(),
            v1_crls,
        });
        if let Ok(mut cache) = trust_cache().lock() {
            if cache.len() >= 256 {
                cache.clear();
            }
            cache.insert(key, trust.clone());
        }
        Ok(trust)
    }

    /// A store for one verification at `at`, with the client's flags.
    fn store(&self, rules: ClientRules, at: SystemTime) -> Result<X509Store, String> {
        let e = |e: openssl::error::ErrorStack| e.to_string();
        let mut b = X509StoreBuilder::new().map_err(e)?;
        if self.system_roots {
            for root in system_roots() {
                b.add_cert(root.clone()).map_err(e)?;
            }
        }
        for a in &self.anchors {
            b.add_cert(a.clone()).map_err(e)?;
        }
        let mut flags = X509VerifyFlags::empty();
        if let Some(path) = &self.crl_file {
            let lookup = b.add_lookup(X509Lookup::file()).map_err(e)?;
            lookup
                .load_crl_file(path, SslFiletype::PEM)
                .map_err(|err| format!("loading {}: {err}", path.display()))?;
            flags |= X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL;
        }
        if let Some(dir) = &self.crl_dir {
            let lookup = b.add_lookup(X509Lookup::hash_dir()).map_err(e)?;
            lookup
                .add_dir(&dir.to_string_lossy(), SslFiletype::PEM)
                .map_err(e)?;
            flags |= X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL;
        }
        if rules == ClientRules::Curl {
            flags |= X509VerifyFlags::PARTIAL_CHAIN;
        }
        let mut param = X509VerifyParam::new().map_err(e)?;
        param.set_flags(flags).map_err(e)?;
        param.set_purpose(X509PurposeId::SSL_SERVER).map_err(e)?;
        param.set_auth_level(security_level());
        let secs = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        param.set_time(libc_time(secs));
        b.set_param(&param).map_err(e)?;
        Ok(b.build())
    }

    /// OpenSSL's verdict on `chain` at `at`: `None` when it verifies, else the
    /// problem (class and OpenSSL's words, naming the certificate).
    fn verify(
        &self,
        rules: ClientRules,
        (chain, der): (&[X509], &[CertificateDer<'_>]),
        facts: &[CertFacts],
        at: SystemTime,
    ) -> Option<Problem> {
        let failed = |message: String| {
            Some(Problem {
                class: ErrorType::TlsBadCertificate,
                message,
            })
        };
        let Some((leaf, rest)) = chain.split_first() else {
            return failed("the server presented no certificate".into());
        };
        let store = match self.store(rules, at) {
            Ok(s) => s,
            Err(e) => return failed(format!("the trust store cannot be set up: {e}")),
        };
        let mut untrusted = match Stack::new() {
            Ok(s) => s,
            Err(e) => return failed(e.to_string()),
        };
        for c in rest {
            if untrusted.push(c.clone()).is_err() {
                return failed("the chain cannot be handed to OpenSSL".into());
            }
        }
        let mut ctx = match X509StoreContext::new() {
            Ok(c) => c,
            Err(e) => return failed(e.to_string()),
        };
        let outcome = ctx.init(&store, leaf, &untrusted, |c| {
            let ok = c.verify_cert()?;
            let depth = c.error_depth() as usize;
            let at_depth = c
                .chain()
                .and_then(|s| s.iter().nth(depth))
                .map(subject_text);
            Ok((ok, c.error(), depth, at_depth))
        });
        match outcome {
            Ok((true, ..)) => None,
            Ok((false, error, depth, subject)) => Some(openssl_problem(
                OpenSslError {
                    raw: error.as_raw(),
                    text: error.error_string(),
                    depth,
                    subject,
                },
                der,
                facts,
            )),
            Err(e) => failed(format!("OpenSSL could not verify the chain: {e}")),
        }
    }

    /// The verdict on `chain` for `host` (no name check when `host` is `None`), as
    /// `rules`' client reaches it at `now`; `strict` turns legacy into problems.
    pub fn judge(
        &self,
        rules: ClientRules,
        chain: &[CertificateDer<'_>],
        host: Option<&str>,
        now: SystemTime,
        strict: bool,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        let parsed: Vec<X509> = chain
            .iter()
            .filter_map(|c| X509::from_der(c.as_ref()).ok())
            .collect();
        let facts = chain::facts(chain);
        if parsed.len() != chain.len() || parsed.is_empty() {
            verdict.problems.push(Problem {
                class: ErrorType::TlsBadCertificate,
                message: if chain.is_empty() {
                    "the server presented no certificate".into()
                } else {
                    "a certificate of the chain cannot be parsed".into()
                },
            });
            return verdict;
        }
        if let Some(problem) = self.verify(rules, (&parsed, chain), &facts, now) {
            let timing = matches!(
                problem.class,
                ErrorType::TlsCertExpired | ErrorType::TlsCertNotYetValid
            );
            let validity = chain::validity_problems(&facts, now);
            if !timing || validity.is_empty() {
                verdict.problems.push(problem);
                verdict.problems.extend(validity);
            } else {
                verdict.problems.extend(validity);
                // Trust, judged when every certificate is valid, so that an expiry
                // does not hide an untrusted issuer.
                let at = chain::trust_moment(&facts, now);
                if let Some(p) = self.verify(rules, (&parsed, chain), &facts, at)
                    && !matches!(
                        p.class,
                        ErrorType::TlsCertExpired | ErrorType::TlsCertNotYetValid
                    )
                    && !p.message.contains("CRL")
                {
                    verdict.problems.push(p);
                }
            }
        }
        for issuer in &self.v1_crls {
            verdict.legacy.push(Legacy {
                what: "crl_v1",
                message: format!(
                    "the CRL of {} in tls.crl_file is an X.509 v1 CRL (`openssl ca -gencrl` without a crlnumber file makes one): {} accepts it, but rustls/webpki clients refuse to load it; issue it as v2",
                    crate::outcome::common_name(issuer),
                    rules.client()
                ),
            });
        }
        if let (Some(host), Some(leaf)) = (host, chain.first()) {
            match names::check(rules.name_rule(), leaf.as_ref(), host) {
                NameMatch::San => {}
                NameMatch::CommonName => verdict.legacy.push(Legacy {
                    what: "cn_only",
                    message: format!(
                        "the certificate names {host} only in its Common Name (no subjectAltName of that type): {} accepts it, but Go 1.15+, browsers and rustls clients refuse it; add a subjectAltName",
                        rules.client()
                    ),
                }),
                NameMatch::AddressAsDnsName => verdict.legacy.push(Legacy {
                    what: "address_as_dns_name",
                    message: format!(
                        "the address {host} is written in a dNSName subjectAltName instead of an iPAddress one: {} accepts it, but Go, browsers and rustls clients refuse it",
                        rules.client()
                    ),
                }),
                NameMatch::Mismatch(covered) => {
                    let covers = if covered.is_empty() {
                        "no names".to_owned()
                    } else {
                        covered.join(", ")
                    };
                    if rules == ClientRules::Hiredis {
                        verdict.legacy.push(Legacy {
                            what: "name_unchecked",
                            message: format!(
                                "the certificate is not valid for {host} (it covers {covers}): redis-cli and hiredis connect, as they do not check the name, but go-redis, node-redis, Lettuce and redis-py 6+ refuse it; add {host} to its subjectAltName"
                            ),
                        });
                        return finish(verdict, &parsed, &facts, rules, strict);
                    }
                    verdict.problems.push(Problem {
                        class: ErrorType::TlsHostnameMismatch,
                        message: format!(
                            "the certificate is not valid for {host} (it covers {covers}), by {}'s name rule",
                            rules.client()
                        ),
                    });
                }
            }
        }
        finish(verdict, &parsed, &facts, rules, strict)
    }
}

/// The end of a judgement: a reversed chain said first, the legacy of the
/// certificates, and under `strict` every legacy a problem.
fn finish(
    mut verdict: Verdict,
    parsed: &[X509],
    facts: &[CertFacts],
    rules: ClientRules,
    strict: bool,
) -> Verdict {
    if let (Some(text), Some(first)) = (words::reversed(facts), verdict.problems.first_mut()) {
        first.message = format!("{text} ({})", first.message);
    }
    verdict
        .legacy
        .extend(certificate_legacy(parsed, facts, rules));
    if strict {
        for l in &verdict.legacy {
            verdict.problems.push(Problem {
                class: l.class(),
                message: format!("{} (tls.strict)", l.message),
            });
        }
    }
    verdict.problems.sort_by_key(|p| p.class);
    verdict.problems.dedup_by_key(|p| p.class);
    verdict
}

/// `time_t` from Unix seconds.
fn libc_time(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn subject_text(cert: &openssl::x509::X509Ref) -> String {
    cert.subject_name()
        .entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            let value = e.data().to_string().ok()?;
            Some(format!("{key}={value}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The certificates of a chain OpenSSL accepts that WebPKI refuses.
fn certificate_legacy(parsed: &[X509], facts: &[CertFacts], rules: ClientRules) -> Vec<Legacy> {
    let mut out = Vec::new();
    for (i, cert) in parsed.iter().enumerate() {
        let self_signed = facts.get(i).is_some_and(|f| f.subject == f.issuer);
        if cert.version() == 0 && (i == 0 || !self_signed) {
            let name = facts.get(i).map_or("?".into(), CertFacts::short_name);
            out.push(Legacy {
                what: "x509_v1",
                message: format!(
                    "certificate {name} ({}) is an X.509 v1 certificate (no extensions: `openssl x509 -req` without -extfile makes one): {} accepts it, but rustls/webpki clients refuse it and Go refuses a v1 intermediate; reissue it as v3",
                    chain::position(i),
                    rules.client()
                ),
            });
        }
    }
    if let Some(leaf) = facts.first()
        && leaf.is_ca
    {
        out.push(Legacy {
            what: "ca_leaf",
            message: format!(
                "the server's certificate {} is a CA certificate (basicConstraints CA:TRUE, the default of `openssl req -x509`): {} accepts it as the server's own certificate, but rustls/webpki clients refuse it (CaUsedAsEndEntity); reissue it with CA:FALSE",
                leaf.short_name(),
                rules.client()
            ),
        });
    }
    out
}

/// A CRL file OpenSSL can read (v1 and v2 CRLs both): refused whole at setup when
/// a block does not parse. Returns the issuers of its v1 CRLs.
fn check_crls(path: &Path) -> Result<Vec<String>, TlsSetupError> {
    use x509_parser::prelude::FromDer;
    let pem = super::roots::read(path)?;
    let text = String::from_utf8_lossy(&pem);
    let mut found = 0;
    let mut v1 = Vec::new();
    for block in text.split("-----BEGIN X509 CRL-----").skip(1) {
        let body = format!("-----BEGIN X509 CRL-----{block}");
        let crl = openssl::x509::X509Crl::from_pem(body.as_bytes()).map_err(|e| {
            TlsSetupError::Malformed {
                path: path.to_owned(),
                what: "CRL",
                reason: e.to_string(),
            }
        })?;
        if let Ok(der) = crl.to_der()
            && let Ok((_, parsed)) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
            && parsed.version().is_none()
        {
            v1.push(parsed.issuer().to_string());
        }
        found += 1;
    }
    if found == 0 {
        return Err(TlsSetupError::Empty {
            path: path.to_owned(),
            what: "CRL",
        });
    }
    Ok(v1)
}

/// OpenSSL's X509_V_ERR codes, by meaning.
mod code {
    pub const UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
    pub const UNABLE_TO_GET_CRL: i32 = 3;
    pub const CERT_NOT_YET_VALID: i32 = 9;
    pub const CERT_HAS_EXPIRED: i32 = 10;
    pub const CRL_NOT_YET_VALID: i32 = 11;
    pub const CRL_HAS_EXPIRED: i32 = 12;
    pub const DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
    pub const SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
    pub const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
    pub const UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
    pub const CERT_REVOKED: i32 = 23;
    pub const CERT_UNTRUSTED: i32 = 27;
    pub const CERT_REJECTED: i32 = 28;
    pub const EE_KEY_TOO_SMALL: i32 = 66;
    pub const CA_KEY_TOO_SMALL: i32 = 67;
    pub const CA_MD_TOO_WEAK: i32 = 68;
}

/// One error of OpenSSL's verification.
struct OpenSslError<'a> {
    /// `X509_V_ERR_*`.
    raw: i32,
    /// OpenSSL's own words.
    text: &'a str,
    /// Where in the chain (0: the leaf).
    depth: usize,
    /// The subject of the certificate there, as OpenSSL built the chain.
    subject: Option<String>,
}

/// The problem of OpenSSL's error, in words that name the certificate.
fn openssl_problem(
    e: OpenSslError<'_>,
    der: &[CertificateDer<'_>],
    facts: &[CertFacts],
) -> Problem {
    use code::*;
    let OpenSslError {
        raw,
        text,
        depth,
        subject,
    } = e;
    let class = match raw {
        CERT_HAS_EXPIRED => ErrorType::TlsCertExpired,
        CERT_NOT_YET_VALID => ErrorType::TlsCertNotYetValid,
        UNABLE_TO_GET_ISSUER_CERT
        | UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | DEPTH_ZERO_SELF_SIGNED_CERT
        | SELF_SIGNED_CERT_IN_CHAIN
        | CERT_UNTRUSTED
        | CERT_REJECTED => ErrorType::TlsUnknownIssuer,
        CERT_REVOKED | UNABLE_TO_GET_CRL | CRL_HAS_EXPIRED | CRL_NOT_YET_VALID => {
            ErrorType::TlsCertRevoked
        }
        _ => ErrorType::TlsBadCertificate,
    };
    let who = subject
        .filter(|s| !s.trim().is_empty())
        .map(|s| crate::outcome::common_name(&s).to_owned())
        .or_else(|| facts.get(depth).map(|f| f.short_name().into_owned()))
        .unwrap_or_else(|| "?".into());
    let position = if depth < facts.len() {
        chain::position(depth)
    } else {
        "trust anchor".into()
    };
    let message = match raw {
        UNABLE_TO_GET_ISSUER_CERT_LOCALLY | UNABLE_TO_GET_ISSUER_CERT if depth < facts.len() => {
            format!("{} ({text})", words::untrusted(&facts[..=depth]))
        }
        UNABLE_TO_GET_ISSUER_CERT_LOCALLY | UNABLE_TO_GET_ISSUER_CERT => format!(
            "the chain does not lead to a trusted root: the issuer of {who} is not in the trust store and was not sent ({text})"
        ),
        DEPTH_ZERO_SELF_SIGNED_CERT => format!(
            "the chain does not lead to a trusted root: {who} is self-signed and not in the trust store ({text})"
        ),
        SELF_SIGNED_CERT_IN_CHAIN => format!(
            "the chain ends at {who}, which is not trusted (it is a root that is not in the trust store) ({text})"
        ),
        CERT_REVOKED => {
            format!("certificate {who} ({position}) is revoked by the configured CRL ({text})")
        }
        UNABLE_TO_GET_CRL => format!(
            "no CRL of the issuer of {who} ({position}) is configured, and the client checks every certificate of the chain against one ({text})"
        ),
        CRL_HAS_EXPIRED | CRL_NOT_YET_VALID => {
            format!("the CRL for {who} ({position}) is not current ({text}); refresh the CRL file")
        }
        CA_MD_TOO_WEAK => match words::weak_signature(der, facts) {
            Some(words) => format!("{words} ({text})"),
            None => format!("certificate {who} ({position}): {text}"),
        },
        EE_KEY_TOO_SMALL | CA_KEY_TOO_SMALL => {
            match words::weak_key(facts, KeyMinimum::openssl(security_level())) {
                Some(words) => format!("{words} ({text})"),
                None => format!("certificate {who} ({position}): {text}"),
            }
        }
        _ => format!("certificate {who} ({position}): {text}"),
    };
    Problem { class, message }
}
