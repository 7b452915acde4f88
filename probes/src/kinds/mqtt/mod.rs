//! `kind: mqtt`: an MQTT broker's answer to a client's `CONNECT`.
//!
//! One run: dial (TLS at once for `mqtts://`, the chain captured whether it verifies
//! or not), `CONNECT` with the client id, user name and password (MQTT 3.1.1, or 5),
//! read the `CONNACK`, then `DISCONNECT`. A refusal is named by its return code:
//! bad user name or password, not authorized, banned, a refused client id are
//! `auth_rejected`; server unavailable or busy, an unsupported protocol version and
//! the other codes are `unexpected_response`, with the code and its name. Packets
//! are written and parsed by `mqttbytes`.

pub mod spec;

use bytes::BytesMut;
use mqttbytes::{v4, v5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use depprobe_config::ProbeConfig;
use crate::kinds::broker_url::BrokerTarget;
use spec::{MqttSpec, MqttVersion};

use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::secrets::read_for_run;
use crate::transport::tls::TlsClient;
use crate::transport::{Dns, Io, classify_stream, open};
use crate::kinds::ProbeKind;
use crate::{BuildError, Exec, ProbeEnv};

/// The largest packet read: a CONNACK is a few bytes (with MQTT 5 properties, a
/// few hundred).
const MAX_PACKET: usize = 16 * 1024;
/// Keep-alive announced in `CONNECT`, seconds (the probe disconnects at once).
const KEEP_ALIVE: u16 = 30;

/// An `mqtt` probe.
pub struct MqttProbe {
    meta: ProbeMeta,
    target: BrokerTarget,
    client_id: String,
    version: MqttVersion,
    tls: Option<TlsClient>,
    dns: Dns,
}

/// A broker's verdict on `CONNECT`.
struct ConnAck {
    /// The return (3.1.1) or reason (5) code.
    code: u8,
    /// Its name in the specification.
    name: String,
    /// The class when refused.
    refused: Option<ErrorType>,
}

impl MqttProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &MqttSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let target = spec
            .target()
            .map_err(|(key, e)| BuildError::Invalid(format!("{key}: {e}")))?;
        let tls = match target.url.scheme.tls {
            true => Some(TlsClient::from_spec(&spec.tls, &[])?),
            false => None,
        };
        let client_id = spec.client_id.clone().unwrap_or_else(|| {
            format!("depprobe-{}", cfg.name)
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(23)
                .collect()
        });
        Ok(MqttProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: target.url.host.clone(),
                    port: target.url.port,
                },
            ),
            target,
            client_id,
            version: spec.protocol_version,
            tls,
            dns: env.dns.clone(),
        })
    }

    /// The encoded `CONNECT`.
    fn connect_packet(&self, password: Option<String>) -> Result<BytesMut, mqttbytes::Error> {
        let mut buf = BytesMut::new();
        let user = self.target.url.user.clone();
        match self.version {
            MqttVersion::V311 => {
                let mut c = v4::Connect::new(self.client_id.clone());
                c.keep_alive = KEEP_ALIVE;
                if let Some(u) = user {
                    c.set_login(u, password.unwrap_or_default());
                }
                c.write(&mut buf)?;
            }
            MqttVersion::V5 => {
                let mut c = v5::Connect::new(self.client_id.clone());
                c.keep_alive = KEEP_ALIVE;
                if let Some(u) = user {
                    c.set_login(u, password.unwrap_or_default());
                }
                c.write(&mut buf)?;
            }
        }
        Ok(buf)
    }

    /// The `CONNACK`, if the next packet is one.
    fn parse(&self, buf: &mut BytesMut) -> Result<Option<ConnAck>, mqttbytes::Error> {
        let packet = match self.version {
            MqttVersion::V311 => match v4::read(buf, MAX_PACKET)? {
                v4::Packet::ConnAck(a) => Some(v4_verdict(a.code)),
                _ => None,
            },
            MqttVersion::V5 => match v5::read(buf, MAX_PACKET)? {
                v5::Packet::ConnAck(a) => Some(v5_verdict(a.code)),
                _ => None,
            },
        };
        Ok(packet)
    }

    /// Sends `CONNECT` and reads the broker's `CONNACK`.
    async fn connect(
        &self,
        io: &mut Box<dyn Io>,
        password: Option<String>,
    ) -> Result<ConnAck, ProbeError> {
        let phase = Phase::Auth;
        let packet = self.connect_packet(password).map_err(|e| {
            ProbeError::new(
                ErrorType::CredentialInvalid,
                phase,
                format!("CONNECT cannot be encoded: {e:?}"),
            )
        })?;
        io.write_all(&packet)
            .await
            .map_err(|e| classify_stream(phase, &e))?;
        io.flush().await.map_err(|e| classify_stream(phase, &e))?;
        let mut buf = BytesMut::with_capacity(64);
        loop {
            match self.parse(&mut buf) {
                Ok(Some(ack)) => return Ok(ack),
                Ok(None) => continue,
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => {
                    return Err(ProbeError::new(
                        ErrorType::UnexpectedResponse,
                        phase,
                        format!("the broker's answer to CONNECT is not an MQTT CONNACK ({e:?})"),
                    ));
                }
            }
            let mut chunk = [0u8; 1024];
            let n = io
                .read(&mut chunk)
                .await
                .map_err(|e| classify_stream(phase, &e))?;
            if n == 0 {
                return Err(ProbeError::new(
                    ErrorType::ConnectionReset,
                    phase,
                    "the broker closed the connection without a CONNACK (a broker that does not speak this MQTT version?)",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn v4_verdict(code: v4::ConnectReturnCode) -> ConnAck {
    use v4::ConnectReturnCode as C;
    let (name, refused) = match code {
        C::Success => ("accepted", None),
        C::RefusedProtocolVersion => (
            "unacceptable protocol version",
            Some(ErrorType::UnexpectedResponse),
        ),
        C::BadClientId => ("identifier rejected", Some(ErrorType::AuthRejected)),
        C::ServiceUnavailable => ("server unavailable", Some(ErrorType::UnexpectedResponse)),
        C::BadUserNamePassword => ("bad user name or password", Some(ErrorType::AuthRejected)),
        C::NotAuthorized => ("not authorized", Some(ErrorType::AuthRejected)),
    };
    ConnAck {
        code: code as u8,
        name: name.into(),
        refused,
    }
}

fn v5_verdict(code: v5::ConnectReturnCode) -> ConnAck {
    use v5::ConnectReturnCode as C;
    let refused = match code {
        C::Success => None,
        C::ClientIdentifierNotValid
        | C::BadUserNamePassword
        | C::NotAuthorized
        | C::Banned
        | C::BadAuthenticationMethod => Some(ErrorType::AuthRejected),
        _ => Some(ErrorType::UnexpectedResponse),
    };
    ConnAck {
        code: code as u8,
        name: format!("{code:?}"),
        refused,
    }
}

impl Exec for MqttProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let password = read_for_run(run, self.target.password.as_ref(), "password")?
            .map(|s| s.expose().to_owned());
        let url = &self.target.url;
        let (mut io, _) = open(run, &self.dns, &url.host, url.port, self.tls.as_ref())
            .await
            .map_err(|mut e| {
                // An MQTT broker has no greeting: a plaintext listener that gets a
                // ClientHello closes the connection without a word.
                if e.class == ErrorType::TlsHandshakeFailure {
                    e.message.push_str(
                        " (a plaintext MQTT listener closes the connection at the TLS ClientHello: is this port mqtt://?)",
                    );
                }
                e
            })?;
        let ack = run
            .phase(Phase::Auth, self.connect(&mut io, password))
            .await?;
        run.details
            .insert("mqtt.connack_code".into(), ack.code.into());
        let version = match self.version {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        };
        if let Some(class) = ack.refused {
            let _ = io.shutdown().await;
            return Err(ProbeError::new(
                class,
                Phase::Auth,
                format!(
                    "the broker refused the connection of client {}: CONNACK {} ({})",
                    self.client_id, ack.code, ack.name
                ),
            ));
        }
        let mut bye = BytesMut::new();
        let _ = match self.version {
            MqttVersion::V311 => v4::Disconnect.write(&mut bye),
            MqttVersion::V5 => v5::Disconnect::new().write(&mut bye),
        };
        let _ = io.write_all(&bye).await;
        let _ = io.shutdown().await;
        Ok(format!(
            "MQTT {version}: the broker accepted client {}",
            self.client_id
        ))
    }
}

impl ProbeKind for MqttProbe {
    const NAME: &'static str = "mqtt";
    const ABOUT: &'static str = "an MQTT broker: CONNECT answered by CONNACK (3.1.1 or 5)";
    type Spec = MqttSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[
        ("messaging.system", "mqtt"),
        ("network.protocol.name", "mqtt"),
    ];

    fn build(cfg: &ProbeConfig, spec: &MqttSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}
