//! `kind: amqp`: an AMQP 0-9-1 broker (RabbitMQ), logged in to and asked to open a
//! virtual host.
//!
//! One run: dial (TLS at once for `amqps://`, the chain captured whether it verifies
//! or not), the protocol header, `Connection.Start` (the broker's product, version
//! and cluster name become details), `StartOk` with PLAIN (EXTERNAL when a client
//! certificate is configured and no password), `Tune`/`TuneOk`, `Open` of the
//! vhost, then `Close`. The broker's `Connection.Close` names a refusal: 403
//! ACCESS_REFUSED (bad credentials) and 530 NOT_ALLOWED (a vhost the user may not
//! open, or one that does not exist) are `auth_rejected`; other codes are
//! `unexpected_response` with the broker's code and text. Frames are written and
//! parsed by `amq-protocol`.

pub mod spec;

use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, ProtocolVersion};
use amq_protocol::protocol::AMQPClass;
use amq_protocol::protocol::connection::{self, AMQPMethod};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

use depprobe_config::ProbeConfig;
use spec::{AmqpSpec, AmqpTarget};

use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::secrets::read_for_run;
use crate::transport::tls::TlsClient;
use crate::transport::{Dns, open};
use crate::kinds::ProbeKind;
use crate::{BuildError, Exec, ProbeEnv};

mod wire;

pub use wire::read_untrusted_frame;

use wire::{Ended, Wire};

/// How long the broker may take to confirm the final `Close`.
const CLOSE_WAIT: Duration = Duration::from_millis(500);
/// The largest frame the probe accepts after the tune.
const FRAME_MAX: u32 = 128 * 1024;

/// An `amqp` probe.
pub struct AmqpProbe {
    meta: ProbeMeta,
    target: AmqpTarget,
    tls: Option<TlsClient>,
    client_cert: bool,
    dns: Dns,
}

impl AmqpProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &AmqpSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let target = spec
            .target()
            .map_err(|(key, e)| BuildError::Invalid(format!("{key}: {e}")))?;
        let tls = match target.url.scheme.tls {
            true => Some(TlsClient::from_spec(&spec.tls, &[])?),
            false => None,
        };
        Ok(AmqpProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: target.url.host.clone(),
                    port: target.url.port,
                },
            ),
            target,
            tls,
            client_cert: spec.tls.cert_file.is_some(),
            dns: env.dns.clone(),
        })
    }
}

/// The text of a server property (`product`, `version`, `cluster_name`).
fn property(table: &FieldTable, key: &str) -> Option<String> {
    match table.inner().get(&ShortString::from(key))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The failure a broker's `Connection.Close` names.
fn refusal(close: &connection::Close, phase: Phase, what: &str) -> ProbeError {
    let text = close.reply_text.as_str();
    let class = match close.reply_code {
        403 | 530 => ErrorType::AuthRejected,
        _ => ErrorType::UnexpectedResponse,
    };
    ProbeError::new(
        class,
        phase,
        format!("the broker refused {what}: {} {text}", close.reply_code),
    )
}

/// The failure of a read that ended without the frame expected.
fn ended(e: Ended, phase: Phase, closed: &str) -> ProbeError {
    match e {
        Ended::Failed(e) => e,
        Ended::Closed => ProbeError::new(ErrorType::ConnectionReset, phase, closed),
    }
}

fn method(frame: AMQPFrame) -> Option<AMQPMethod> {
    match frame {
        AMQPFrame::Method(0, AMQPClass::Connection(m)) => Some(m),
        _ => None,
    }
}

fn unexpected(phase: Phase, wanted: &str, got: impl std::fmt::Debug) -> ProbeError {
    let mut got = format!("{got:?}");
    got.truncate(200);
    ProbeError::new(
        ErrorType::UnexpectedResponse,
        phase,
        format!("the broker sent {got} where {wanted} was expected"),
    )
}

fn send_frame(m: AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(0, AMQPClass::Connection(m))
}

impl AmqpProbe {
    /// Protocol header, then the broker's `Connection.Start`.
    async fn greet(
        &self,
        wire: &mut Wire,
        run: &mut Run<'_>,
    ) -> Result<connection::Start, ProbeError> {
        let phase = Phase::Auth;
        let header = [b"AMQP".as_slice(), &[0, 0, 9, 1]].concat();
        wire.send_raw(&header, phase).await?;
        let closed = if self.tls.is_some() {
            "the broker closed the connection before its AMQP greeting"
        } else {
            "the broker closed the connection before its AMQP greeting (a TLS port? use amqps://)"
        };
        let frame = wire
            .next(phase)
            .await
            .map_err(|e| ended(e, phase, closed))?;
        let start = match frame {
            AMQPFrame::ProtocolHeader(v) if v != ProtocolVersion::amqp_0_9_1() => {
                return Err(ProbeError::new(
                    ErrorType::UnexpectedResponse,
                    phase,
                    format!(
                        "the broker does not speak AMQP 0-9-1 (it offers {}-{}-{})",
                        v.major, v.minor, v.revision
                    ),
                ));
            }
            f => match method(f) {
                Some(AMQPMethod::Start(s)) => s,
                other => return Err(unexpected(phase, "Connection.Start", other)),
            },
        };
        for (detail, key) in [
            ("amqp.server.product", "product"),
            ("amqp.server.version", "version"),
            ("amqp.cluster_name", "cluster_name"),
        ] {
            if let Some(v) = property(&start.server_properties, key) {
                run.details.insert(detail.into(), v.into());
            }
        }
        Ok(start)
    }

    /// `StartOk` with the credentials, then the broker's `Tune` (or its refusal).
    async fn login(
        &self,
        wire: &mut Wire,
        start: &connection::Start,
        password: Option<String>,
    ) -> Result<connection::Tune, ProbeError> {
        let phase = Phase::Auth;
        let offered = String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned();
        let external = password.is_none() && self.client_cert;
        let mechanism = if external { "EXTERNAL" } else { "PLAIN" };
        if !offered.split_whitespace().any(|m| m == mechanism) {
            return Err(ProbeError::new(
                ErrorType::AuthRejected,
                phase,
                format!("the broker does not offer {mechanism} login (it offers {offered})"),
            ));
        }
        let response: LongString = match external {
            true => LongString::default(),
            false => format!("\0{}\0{}", self.target.user, password.unwrap_or_default()).into(),
        };
        let mut capabilities = FieldTable::default();
        capabilities.insert(
            "authentication_failure_close".into(),
            AMQPValue::Boolean(true),
        );
        let mut props = FieldTable::default();
        props.insert("product".into(), AMQPValue::LongString("depprobe".into()));
        props.insert(
            "connection_name".into(),
            AMQPValue::LongString(self.meta.name.clone().into()),
        );
        props.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
        let start_ok = connection::StartOk {
            client_properties: props,
            mechanism: mechanism.into(),
            response,
            locale: "en_US".into(),
        };
        wire.send(&send_frame(AMQPMethod::StartOk(start_ok)), phase)
            .await?;
        let frame = wire.next(phase).await.map_err(|e| {
            ended(
                e,
                phase,
                "the broker closed the connection after the login (an older RabbitMQ does this for refused credentials)",
            )
        })?;
        match method(frame) {
            Some(AMQPMethod::Tune(t)) => Ok(t),
            Some(AMQPMethod::Close(c)) => Err(refusal(
                &c,
                phase,
                &format!("the login of {}", self.target.user),
            )),
            other => Err(unexpected(phase, "Connection.Tune", other)),
        }
    }

    /// `TuneOk` and `Open` of the vhost, then the broker's `OpenOk` (or its refusal).
    async fn open_vhost(&self, wire: &mut Wire, tune: &connection::Tune) -> Result<(), ProbeError> {
        let phase = Phase::Request;
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        let tune_ok = connection::TuneOk {
            channel_max: tune.channel_max.min(1),
            frame_max,
            heartbeat: 0,
        };
        wire.send(&send_frame(AMQPMethod::TuneOk(tune_ok)), phase)
            .await?;
        let open = connection::Open {
            virtual_host: self.target.vhost.as_str().into(),
        };
        wire.send(&send_frame(AMQPMethod::Open(open)), phase)
            .await?;
        let frame = wire.next(phase).await.map_err(|e| {
            ended(
                e,
                phase,
                "the broker closed the connection when the vhost was opened",
            )
        })?;
        match method(frame) {
            Some(AMQPMethod::OpenOk(_)) => Ok(()),
            Some(AMQPMethod::Close(c)) => {
                Err(refusal(&c, phase, &format!("vhost {}", self.target.vhost)))
            }
            other => Err(unexpected(phase, "Connection.OpenOk", other)),
        }
    }
}

impl Exec for AmqpProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let password = read_for_run(run, self.target.password.as_ref(), "password")?
            .map(|s| s.expose().to_owned());
        let url = &self.target.url;
        let (io, _) = open(run, &self.dns, &url.host, url.port, self.tls.as_ref()).await?;
        let mut wire = Wire::new(io);
        let start = self.greet(&mut wire, run).await?;
        let tune = run
            .phase(Phase::Auth, self.login(&mut wire, &start, password))
            .await?;
        run.phase(Phase::Request, self.open_vhost(&mut wire, &tune))
            .await?;
        run.details
            .insert("amqp.vhost".into(), self.target.vhost.clone().into());

        let close = connection::Close {
            reply_code: 200,
            reply_text: "depprobe: done".into(),
            class_id: 0,
            method_id: 0,
        };
        if wire
            .send(&send_frame(AMQPMethod::Close(close)), Phase::Request)
            .await
            .is_ok()
        {
            let _ =
                tokio::time::timeout(CLOSE_WAIT.min(run.remaining()), wire.next(Phase::Request))
                    .await;
        }
        wire.shutdown().await;

        let server = [
            run.details
                .get("amqp.server.product")
                .and_then(|v| v.as_str()),
            run.details
                .get("amqp.server.version")
                .and_then(|v| v.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        Ok(format!(
            "{}: logged in as {} and opened vhost {}",
            if server.is_empty() {
                "AMQP broker"
            } else {
                server.as_str()
            },
            self.target.user,
            self.target.vhost
        ))
    }
}

impl ProbeKind for AmqpProbe {
    const NAME: &'static str = "amqp";
    const ABOUT: &'static str = "an AMQP 0-9-1 broker (RabbitMQ): login and open a vhost";
    type Spec = AmqpSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[
        ("messaging.system", "rabbitmq"),
        ("network.protocol.name", "amqp"),
    ];

    fn build(cfg: &ProbeConfig, spec: &AmqpSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}
