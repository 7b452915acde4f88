//! `kind: tls`: connect, handshake, report the chain.
//!
//! With TLS 1.3 a server that requires a client certificate only says so after the
//! client has finished its side of the handshake, so when the server asked for one
//! and none was sent, the probe waits briefly for the server's verdict.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use depprobe_config::ProbeConfig;
use spec::TlsProbeSpec;

use super::ProbeKind;

use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::tls::{ClientRules, TlsClient};
use crate::transport::{self, Dns};
use crate::{BuildError, Exec, ProbeEnv};

pub mod spec;

/// How long to wait for a TLS 1.3 server's verdict on a missing client certificate.
const CLIENT_CERT_VERDICT_WAIT: Duration = Duration::from_millis(300);

/// A `tls` probe.
pub struct TlsProbe {
    meta: ProbeMeta,
    host: String,
    port: u16,
    tls: TlsClient,
    dns: Dns,
}

impl TlsProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &TlsProbeSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let (host, port) = spec
            .host_port()
            .ok_or_else(|| BuildError::Invalid(format!("`{}` is not host:port", spec.address)))?;
        let target = Target {
            address: host.clone(),
            port,
        };
        Ok(TlsProbe {
            meta: ProbeMeta::new(cfg, target),
            host,
            port,
            tls: TlsClient::from_spec(&spec.tls, &[])?.with_rules(ClientRules::Curl),
            dns: env.dns.clone(),
        })
    }
}

/// "TLS 1.3 OK, certificate CN=x valid for 88 more days".
pub fn success_message(facts: &crate::outcome::TlsFacts, now: std::time::SystemTime) -> String {
    let version = facts.version.as_deref().unwrap_or("?");
    match facts.chain.iter().min_by_key(|c| c.not_after) {
        Some(c) => format!(
            "TLS {version} OK; earliest expiry: {} {}",
            c.short_name(),
            crate::outcome::human_delta(now, c.not_after)
        ),
        None => format!("TLS {version} OK"),
    }
}

impl ProbeKind for TlsProbe {
    const NAME: &'static str = "tls";
    const ABOUT: &'static str = "a TLS handshake: the chain, its expiry, its problems";
    type Spec = TlsProbeSpec;

    fn build(cfg: &ProbeConfig, spec: &TlsProbeSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}

impl Exec for TlsProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let tcp = transport::dial(run, &self.dns, &self.host, self.port).await?;
        let now = run.now();
        let mut session = run
            .phase(Phase::Tls, self.tls.handshake(tcp, &self.host, now))
            .await?;
        session.adopt(run);

        if session.client_auth.asked
            && !session.client_auth.sent
            && session.facts.version.as_deref() == Some("1.3")
        {
            let wait = CLIENT_CERT_VERDICT_WAIT.min(run.remaining());
            let mut buf = [0u8; 64];
            match tokio::time::timeout(wait, session.stream.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    return Err(ProbeError::new(
                        ErrorType::TlsClientCertRequired,
                        Phase::Tls,
                        "the server asked for a client certificate and closed the connection when none was sent",
                    ));
                }
                Ok(Err(e)) => {
                    let mut err = transport::classify_stream(Phase::Tls, &e);
                    if err.class == ErrorType::TlsHandshakeFailure
                        || err.class == ErrorType::ConnectionReset
                    {
                        err.class = ErrorType::TlsClientCertRequired;
                    }
                    return Err(err);
                }
                Ok(Ok(_)) | Err(_) => {}
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), session.stream.shutdown()).await;
        Ok(success_message(&session.facts, now))
    }
}
