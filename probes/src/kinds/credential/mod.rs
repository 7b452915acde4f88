//! `kind: credential`: a local secret the application depends on.
//!
//! Incident 05 (a Kubernetes service-account token no longer minted) and incident 01
//! (a service key not rotated with its certificate) were not about a remote server at
//! all. This probe reads the secret where the application reads it, on every run:
//! a token file (present, non-empty, readable; a JWT's `exp` and `nbf`), a
//! certificate with its key (expiry of every certificate, the key matches), or an
//! environment variable (set, non-empty).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub mod spec;

use spec::{CredentialFormat, CredentialSpec};
use depprobe_config::{ProbeConfig, Secret};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::credentials::{self, Window};
use crate::outcome::{Target, human_delta, rfc3339};
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::chain;
use crate::{BuildError, Exec, ProbeEnv};

use super::ProbeKind;

/// What is checked.
enum Source {
    Token(PathBuf),
    Certificate { cert: PathBuf, key: Option<PathBuf> },
    Env(String),
}

/// A `credential` probe.
pub struct CredentialProbe {
    meta: ProbeMeta,
    source: Source,
    format: CredentialFormat,
    warn: Option<Duration>,
    critical: Option<Duration>,
}

impl CredentialProbe {
    /// Builds the probe.
    pub fn new(
        cfg: &ProbeConfig,
        spec: &CredentialSpec,
        _env: &ProbeEnv,
    ) -> Result<Self, BuildError> {
        let (source, address) = match (&spec.file, &spec.cert_file, &spec.env) {
            (Some(f), None, None) => (Source::Token(f.clone()), f.display().to_string()),
            (None, Some(c), None) => (
                Source::Certificate {
                    cert: c.clone(),
                    key: spec.key_file.clone(),
                },
                c.display().to_string(),
            ),
            (None, None, Some(e)) => (Source::Env(e.clone()), format!("env:{e}")),
            _ => {
                return Err(BuildError::Invalid(
                    "set exactly one of file, cert_file, env".into(),
                ));
            }
        };
        Ok(CredentialProbe {
            meta: ProbeMeta::new(cfg, Target { address, port: 0 }),
            source,
            format: spec.format,
            warn: spec.warn_before.map(|d| d.0),
            critical: spec.critical_before.map(|d| d.0),
        })
    }

    fn judge(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let now = run.now();
        match &self.source {
            Source::Token(path) => {
                let token = read_text(path, "token file")?;
                run.secret(&Secret::new(token.clone()));
                self.judge_token(run, &format!("token {}", path.display()), &token, now)
            }
            Source::Env(name) => {
                let value = match std::env::var(name) {
                    Ok(v) if !v.trim().is_empty() => v,
                    Ok(_) => return Err(missing(format!("environment variable {name} is empty"))),
                    Err(std::env::VarError::NotPresent) => {
                        return Err(missing(format!("environment variable {name} is not set")));
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(invalid(format!(
                            "environment variable {name} is not valid UTF-8"
                        )));
                    }
                };
                run.secret(&Secret::new(value.clone()));
                self.judge_token(run, &format!("${name}"), value.trim(), now)
            }
            Source::Certificate { cert, key } => {
                self.judge_certificate(run, cert, key.as_deref(), now)
            }
        }
    }

    fn judge_token(
        &self,
        run: &mut Run<'_>,
        what: &str,
        token: &str,
        now: SystemTime,
    ) -> Result<String, ProbeError> {
        if self.format == CredentialFormat::Opaque {
            run.details
                .insert("credential_type".into(), "opaque".into());
            return Ok(format!("{what} is present"));
        }
        let (finding, claims) =
            credentials::judge_token(what, token, now, self.warn, self.critical)?;
        let Some(claims) = claims else {
            if self.format == CredentialFormat::Jwt {
                return Err(invalid(format!("{what} is not a JWT")));
            }
            run.details
                .insert("credential_type".into(), "opaque".into());
            return Ok(format!("{what} is present"));
        };
        run.details.insert("credential_type".into(), "jwt".into());
        if let Some(iss) = &claims.iss {
            run.details.insert("jwt_issuer".into(), iss.clone().into());
        }
        if let Some(sub) = &claims.sub {
            run.details.insert("jwt_subject".into(), sub.clone().into());
        }
        let Some(exp) = credentials::expiry(&claims) else {
            run.findings.extend(finding);
            return Ok(format!("{what} is a JWT without expiry"));
        };
        credentials::record_expiry(run, exp);
        run.details.insert("expires_at".into(), rfc3339(exp).into());
        run.findings.extend(finding);
        Ok(format!(
            "{what} is valid, expires {}",
            human_delta(now, exp)
        ))
    }

    fn judge_certificate(
        &self,
        run: &mut Run<'_>,
        cert: &Path,
        key: Option<&Path>,
        now: SystemTime,
    ) -> Result<String, ProbeError> {
        let pem = read_bytes(cert, "certificate file")?;
        let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        if ders.is_empty() {
            return Err(invalid(format!(
                "{} holds no PEM certificate",
                cert.display()
            )));
        }
        let facts = chain::facts(&ders);
        if facts.len() != ders.len() {
            return Err(invalid(format!(
                "a certificate in {} cannot be parsed",
                cert.display()
            )));
        }
        if let Some(key_path) = key {
            let key_pem = read_bytes(key_path, "key file")?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|_| invalid(format!("{} holds no PEM private key", key_path.display())))?;
            let provider = crate::transport::tls::provider();
            let ck = rustls::sign::CertifiedKey::from_der(ders.clone(), key_der, &provider);
            let matches = ck.as_ref().map(|k| k.keys_match().is_ok()).unwrap_or(false);
            if !matches {
                return Err(invalid(format!(
                    "the key in {} does not match the certificate in {}",
                    key_path.display(),
                    cert.display()
                )));
            }
        }
        let window = Window::for_certificate(self.warn, self.critical);
        for (i, c) in facts.iter().enumerate() {
            let what = format!(
                "certificate {} ({}) in {}",
                c.short_name(),
                chain::position(i),
                cert.display()
            );
            if let Some(f) =
                credentials::judge(&what, Some(c.not_before), Some(c.not_after), now, window)?
            {
                run.findings.push(f.with("subject", c.subject.clone()));
            }
        }
        let earliest = facts.iter().map(|c| c.not_after).min().unwrap_or(now);
        run.details
            .insert("credential_type".into(), "certificate".into());
        credentials::record_expiry(run, earliest);
        run.details
            .insert("expires_at".into(), rfc3339(earliest).into());
        run.details
            .insert("subject".into(), facts[0].subject.clone().into());
        run.details
            .insert("issuer".into(), facts[0].issuer.clone().into());
        let keyed = if key.is_some() { ", key matches" } else { "" };
        Ok(format!(
            "certificate {} is valid{keyed}, expires {}",
            facts[0].short_name(),
            human_delta(now, earliest)
        ))
    }
}

fn missing(message: String) -> ProbeError {
    ProbeError::new(ErrorType::CredentialMissing, Phase::Auth, message)
}

fn invalid(message: String) -> ProbeError {
    ProbeError::new(ErrorType::CredentialInvalid, Phase::Auth, message)
}

fn read_bytes(path: &Path, what: &str) -> Result<Vec<u8>, ProbeError> {
    // Only a regular file, at most a PEM file's cap, within the read deadline: a
    // FIFO, a runaway file or a stalled mount is `credential_invalid`, never a wait.
    use depprobe_config::files::{MAX_PEM_BYTES, READ_DEADLINE, read_bounded, within};
    let owned = path.to_owned();
    match within(READ_DEADLINE, move || read_bounded(&owned, MAX_PEM_BYTES)) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => {
            Err(missing(format!("{what} {} is empty", path.display())))
        }
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(missing(format!("{what} {} does not exist", path.display())))
        }
        Err(e) => Err(invalid(format!(
            "{what} {} cannot be read: {e}",
            path.display()
        ))),
    }
}

fn read_text(path: &Path, what: &str) -> Result<String, ProbeError> {
    let bytes = read_bytes(path, what)?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| invalid(format!("{what} {} is not text", path.display())))
}

impl ProbeKind for CredentialProbe {
    const NAME: &'static str = "credential";
    const ABOUT: &'static str = "a local secret: a token file (JWT expiry), a certificate and its key";
    type Spec = CredentialSpec;
    const LOCAL: bool = true;

    fn build(cfg: &ProbeConfig, spec: &CredentialSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}

impl Exec for CredentialProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let started = std::time::Instant::now();
        let result = self.judge(run);
        run.record(Phase::Auth, started.elapsed());
        result
    }
}
