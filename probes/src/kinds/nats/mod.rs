//! `kind: nats`: a NATS server's INFO, TLS, a login and a PING answered.
//!
//! One run: dial, read the server's `INFO` (its id, name, version, cluster and
//! whether JetStream is on become details), upgrade to TLS when the URL is `tls://`
//! (the server must offer it: `tls_not_offered` otherwise; with `tls_first` the
//! handshake comes before the INFO), send `CONNECT` with the configured login and a
//! `PING`, and expect `PONG`. `-ERR 'Authorization Violation'` is `auth_rejected`,
//! `-ERR 'User Authentication Expired'` is `credential_expired`; the user JWT of a
//! `.creds` file is judged before it is sent (`credential_expired`, or a
//! `credential_expiring` finding). NATS is a few lines of text: written by hand.

pub mod spec;

use std::time::Duration;

use serde::Deserialize;

use depprobe_config::ProbeConfig;
use crate::kinds::broker_url::BrokerUrl;
use spec::{NatsAuth, NatsSpec};
use depprobe_config::{Secret, SecretSource};

use crate::credentials::record_expiry;
use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::secrets::read_secret;
use crate::transport::lines::Lines;
use crate::transport::tls::TlsClient;
use crate::transport::{Dns, dial, upgrade};
use crate::kinds::ProbeKind;
use crate::{BuildError, Exec, ProbeEnv};

mod creds;

/// The longest protocol line read (an INFO with many cluster URLs is a few KiB).
const MAX_LINE: usize = 64 * 1024;

/// A `nats` probe.
pub struct NatsProbe {
    meta: ProbeMeta,
    url: BrokerUrl,
    auth: NatsAuth,
    tls: Option<TlsClient>,
    tls_first: bool,
    warn: Option<Duration>,
    critical: Option<Duration>,
    dns: Dns,
}

/// What the server says of itself.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Info {
    server_id: String,
    server_name: String,
    version: String,
    cluster: Option<String>,
    jetstream: bool,
    tls_required: bool,
    tls_available: bool,
    nonce: Option<String>,
}

/// The login fields of `CONNECT`, read for this run.
#[derive(Default)]
struct Login {
    fields: serde_json::Map<String, serde_json::Value>,
    creds: Option<(creds::Creds, String)>,
}

impl NatsProbe {
    /// The `CONNECT` object: who the client is, and the login `fields`.
    fn connect_fields(
        &self,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut connect = serde_json::Map::new();
        connect.insert("verbose".into(), false.into());
        connect.insert("pedantic".into(), false.into());
        connect.insert("tls_required".into(), self.tls.is_some().into());
        connect.insert("name".into(), format!("depprobe {}", self.meta.name).into());
        connect.insert("lang".into(), "rust".into());
        connect.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        connect.insert("protocol".into(), 1.into());
        connect.insert("echo".into(), false.into());
        connect.extend(fields);
        connect
    }

    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &NatsSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let (url, auth) = spec
            .target()
            .map_err(|(key, e)| BuildError::Invalid(format!("{key}: {e}")))?;
        let tls = match url.scheme.tls {
            true => Some(TlsClient::from_spec(&spec.tls, &[])?),
            false => None,
        };
        Ok(NatsProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: url.host.clone(),
                    port: url.port,
                },
            ),
            url,
            auth,
            tls,
            tls_first: spec.tls_first,
            warn: spec.warn_before.map(|d| d.0),
            critical: spec.critical_before.map(|d| d.0),
            dns: env.dns.clone(),
        })
    }

    /// Reads the login's secrets now (files may have rotated) and judges a user JWT.
    fn login(&self, run: &mut Run<'_>) -> Result<Login, ProbeError> {
        let mut login = Login::default();
        let secret = |run: &mut Run<'_>, src: &SecretSource, what: &str| {
            let s = read_secret(src, what)?;
            run.secret(&s);
            Ok::<Secret, ProbeError>(s)
        };
        match &self.auth {
            NatsAuth::None => {}
            NatsAuth::User { user, password } => {
                login.fields.insert("user".into(), user.clone().into());
                if let Some(src) = password {
                    let p = secret(run, src, "password")?;
                    login.fields.insert("pass".into(), p.expose().into());
                }
            }
            NatsAuth::Token(src) => {
                let t = secret(run, src, "token")?;
                login.fields.insert("auth_token".into(), t.expose().into());
            }
            NatsAuth::Creds(path) => {
                let file = path.display().to_string();
                let text = secret(run, &SecretSource::File(path.clone()), "creds_file")?;
                let c = creds::parse(text.expose(), &file)?;
                run.secret(&Secret::new(c.seed.clone()));
                let (finding, exp) = creds::judge(&c, &file, run.now(), self.warn, self.critical)?;
                run.findings.extend(finding);
                if let Some(exp) = exp {
                    record_expiry(run, exp);
                }
                login.fields.insert("jwt".into(), c.jwt.clone().into());
                login.creds = Some((c, file));
            }
        }
        Ok(login)
    }

    /// Reads and records the server's INFO.
    async fn info(&self, lines: &mut Lines, run: &mut Run<'_>) -> Result<Info, ProbeError> {
        let line = lines
            .line(
                Phase::Request,
                "the server closed the connection before its INFO",
            )
            .await?;
        let info: Info = line
            .strip_prefix("INFO ")
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| {
                ProbeError::new(
                    ErrorType::UnexpectedResponse,
                    Phase::Request,
                    format!(
                        "the server did not greet with a NATS INFO: {}",
                        crate::transport::http_client::snippet(line.as_bytes())
                    ),
                )
            })?;
        for (key, value) in [
            ("nats.server_id", info.server_id.clone().into()),
            ("nats.server_name", info.server_name.clone().into()),
            ("nats.version", info.version.clone().into()),
            ("nats.jetstream", info.jetstream.into()),
        ] {
            run.details.insert(key.into(), value);
        }
        if let Some(c) = &info.cluster {
            run.details.insert("nats.cluster".into(), c.clone().into());
        }
        Ok(info)
    }
}

/// The class of the server's `-ERR` to `CONNECT`.
fn refusal(err: &str) -> ProbeError {
    let text = err.trim_start_matches("-ERR").trim().trim_matches('\'');
    let lower = text.to_ascii_lowercase();
    let class = if lower.contains("authentication expired") {
        ErrorType::CredentialExpired
    } else if lower.contains("authorization violation") || lower.contains("authentication") {
        ErrorType::AuthRejected
    } else {
        ErrorType::UnexpectedResponse
    };
    ProbeError::new(
        class,
        Phase::Auth,
        format!("the server refused the login: {text}"),
    )
}

impl Exec for NatsProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let mut login = self.login(run)?;
        let (host, port) = (&self.url.host, self.url.port);
        let tcp = dial(run, &self.dns, host, port).await?;
        let (mut lines, info) = match (&self.tls, self.tls_first) {
            (Some(tls), true) => {
                let (io, _) = upgrade(run, tcp, host, tls).await?;
                let mut lines = Lines::new(io, MAX_LINE);
                let info = self.info(&mut lines, run).await?;
                (lines, info)
            }
            (tls, _) => {
                let mut lines = Lines::new(Box::new(tcp), MAX_LINE);
                let info = self.info(&mut lines, run).await?;
                match tls {
                    Some(_) if !info.tls_required && !info.tls_available => {
                        return Err(ProbeError::new(
                            ErrorType::TlsNotOffered,
                            Phase::Tls,
                            "the server's INFO offers no TLS (tls_required and tls_available are false)",
                        ));
                    }
                    Some(tls) => {
                        let io = lines.into_inner(Phase::Tls)?;
                        let (io, _) = upgrade(run, io, host, tls).await?;
                        (Lines::new(io, MAX_LINE), info)
                    }
                    None if info.tls_required => {
                        return Err(ProbeError::new(
                            ErrorType::UnexpectedResponse,
                            Phase::Request,
                            "the server requires TLS; use a tls:// URL",
                        ));
                    }
                    None => (lines, info),
                }
            }
        };
        if let Some((c, file)) = &login.creds {
            let nonce = info.nonce.as_deref().unwrap_or_default();
            let sig = creds::sign(c, nonce, file)?;
            login.fields.insert("sig".into(), sig.into());
        }
        let connect = self.connect_fields(std::mem::take(&mut login.fields));
        let command = format!("CONNECT {}\r\nPING\r\n", serde_json::Value::Object(connect));
        let answer = run
            .phase(Phase::Auth, async {
                lines.send(&command, Phase::Auth).await?;
                loop {
                    let line = lines
                        .line(
                            Phase::Auth,
                            "the server closed the connection after CONNECT",
                        )
                        .await?;
                    match line.as_str() {
                        "PONG" => return Ok(()),
                        l if l.starts_with("-ERR") => return Err(refusal(l)),
                        // Cluster updates (INFO), our own PING's echo: not the answer.
                        _ => {}
                    }
                }
            })
            .await;
        lines.shutdown().await;
        answer?;
        let name = match info.server_name.as_str() {
            "" => String::new(),
            n => format!(" ({n})"),
        };
        Ok(format!(
            "NATS {}{name}: logged in, PING answered; JetStream {}",
            info.version,
            if info.jetstream { "on" } else { "off" }
        ))
    }
}

impl ProbeKind for NatsProbe {
    const NAME: &'static str = "nats";
    const ABOUT: &'static str = "a NATS server: INFO, TLS, a login and a PING answered";
    type Spec = NatsSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[("messaging.system", "nats")];

    fn build(cfg: &ProbeConfig, spec: &NatsSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}
