//! `kind: redis`: a real Redis (or Valkey) session, opened as a client opens it: DNS,
//! TCP connect, TLS for `rediss://` (chain captured and verified like every other
//! kind's), `AUTH` (ACL user and password, or the password alone), `SELECT` for a
//! database other than 0, `PING`, then `ROLE` and `INFO server` for the facts: the
//! version, the role, and for a replica its master and the state of its link. The
//! commands are pipelined: written in one piece after the handshake, their replies
//! read in order (one round trip, as `redis-cli --pipe` would, instead of four).
//!
//! A replica whose link is down is `degraded` with a `replication_link_down` finding
//! naming its master; a role other than the last run's is `role_changed` (a failover
//! happened).

mod resp;
pub mod spec;

use std::net::SocketAddr;
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use depprobe_config::ProbeConfig;

use crate::kinds::ProbeKind;
use crate::transport::tls::profile::ClientRules;
use crate::kinds::role::{REPLICATION_LINK_DOWN, link_down};
use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify::ClientAuth;
use crate::transport::tls::TlsClient;
use crate::transport::{self, Dns};
use crate::{BuildError, Exec, ProbeEnv};

use resp::{Resp, text};
use spec::{RedisSpec, RedisTarget};

/// A stream the session runs over: TCP or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A `redis` probe.
pub struct RedisProbe {
    meta: ProbeMeta,
    target: RedisTarget,
    /// `None` for `redis://`.
    tls: Option<TlsClient>,
    dns: Dns,
}

/// What `ROLE` answered.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    Master,
    Replica { master: String, state: String },
    Sentinel,
}

impl RedisProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &RedisSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let target = spec.target().map_err(BuildError::Invalid)?;
        let tls = if target.tls {
            Some(TlsClient::from_spec(&spec.tls, &[])?.with_rules(ClientRules::Hiredis))
        } else {
            None
        };
        Ok(RedisProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: target.host.clone(),
                    port: target.port,
                },
            ),
            target,
            tls,
            dns: env.dns.clone(),
        })
    }

    /// Phase `tls` for `rediss://`: the handshake. Returns the stream and what the
    /// handshake saw of client authentication.
    async fn secure(
        &self,
        run: &mut Run<'_>,
        tcp: TcpStream,
    ) -> Result<(Box<dyn Io>, Option<ClientAuth>), ProbeError> {
        let Some(client) = &self.tls else {
            return Ok((Box::new(tcp), None));
        };
        let now = run.now();
        let peer = tcp.peer_addr().ok();
        let handshake = client.handshake(tcp, &self.target.host, now);
        let session = run
            .phase(Phase::Tls, async {
                tokio::select! {
                    r = handshake => r,
                    answer = plaintext_answer(peer) => Err(ProbeError::new(
                        ErrorType::TlsNotOffered,
                        Phase::Tls,
                        format!(
                            "the server did not answer the TLS handshake, and the port answers Redis in plaintext ({answer}): use redis:// for it, or the server's TLS port"
                        ),
                    )),
                }
            })
            .await?;
        let mut session = session;
        session.adopt(run);
        Ok((Box::new(session.stream), Some(session.client_auth)))
    }

    /// Phase `auth`: `AUTH` when a password is configured, then `SELECT`, written
    /// in one piece with `then` (the request phase's commands, whose replies the
    /// caller reads): one round trip for the whole session instead of one per
    /// command. A refused `AUTH` is reported as such; the replies after it (Redis
    /// answers them `NOAUTH`) are not read.
    async fn login(
        &self,
        run: &mut Run<'_>,
        conn: &mut Resp<Box<dyn Io>>,
        then: &[&[&[u8]]],
    ) -> Result<(), ProbeError> {
        let password = crate::secrets::read_for_run(run, self.target.password.as_ref(), "password")?;
        let user = self.target.user.as_deref();
        let db = self.target.db.to_string();
        run.phase(Phase::Auth, async {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            let mut commands: Vec<&[&[u8]]> = Vec::new();
            if let Some(p) = &password {
                auth.extend(user.map(str::as_bytes));
                auth.push(p.expose().as_bytes());
                commands.push(&auth);
            }
            let select: [&[u8]; 2] = [b"SELECT", db.as_bytes()];
            if db != "0" {
                commands.push(&select);
            }
            commands.extend_from_slice(then);
            conn.send(&commands, Phase::Auth).await?;
            if password.is_some() {
                let reply = conn.reply(Phase::Auth).await?;
                refused(&reply, Phase::Auth, "AUTH")?;
            }
            if db != "0" {
                let reply = conn.reply(Phase::Auth).await?;
                refused(&reply, Phase::Auth, "SELECT")?;
            }
            Ok(())
        })
        .await
    }
}

/// How long a TLS handshake may meet silence before the port is asked whether it
/// speaks Redis in plaintext: a plaintext Redis reads a ClientHello as the start of
/// an inline command and waits for its end, so the handshake alone would only time
/// out.
const PLAINTEXT_CHECK_AFTER: Duration = Duration::from_secs(1);

/// Whether `peer` answers `PING` in plaintext RESP, asked on a second connection
/// after [`PLAINTEXT_CHECK_AFTER`]; what it answered, or never (the handshake then
/// runs to its own end).
async fn plaintext_answer(peer: Option<SocketAddr>) -> String {
    tokio::time::sleep(PLAINTEXT_CHECK_AFTER).await;
    let asked = async {
        let mut tcp = TcpStream::connect(peer?).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf).await.ok()?;
        let line = String::from_utf8_lossy(&buf[..n]);
        let line = line.lines().next().unwrap_or_default().to_owned();
        (line.starts_with('+') || line.starts_with('-')).then_some(line)
    };
    match asked.await {
        Some(answer) => answer,
        None => std::future::pending().await,
    }
}

/// The error a reply carries: `WRONGPASS`, `NOAUTH` and a disabled user are
/// `auth_rejected`; others are the server refusing `what`.
fn refused(reply: &OwnedFrame, phase: Phase, what: &str) -> Result<(), ProbeError> {
    let OwnedFrame::Error(e) = reply else {
        return Ok(());
    };
    let text: String = e.chars().take(200).collect();
    let code = text.split(' ').next().unwrap_or("");
    if matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM") || (what == "AUTH" && code == "ERR") {
        let hint = if code == "NOAUTH" {
            ": the server requires a password and none is configured (set `password` or `password_file`)"
        } else {
            ""
        };
        return Err(ProbeError::new(
            ErrorType::AuthRejected,
            Phase::Auth,
            format!("the server refused {what} ({text}){hint}"),
        ));
    }
    Err(ProbeError::new(
        ErrorType::UnexpectedResponse,
        phase,
        format!("the server answered {what} with an error ({text})"),
    ))
}

/// The role a `ROLE` reply names.
fn role_of(reply: &OwnedFrame) -> Option<Role> {
    let OwnedFrame::Array(items) = reply else {
        return None;
    };
    let int = |f: Option<&OwnedFrame>| match f {
        Some(OwnedFrame::Integer(i)) => Some(i.to_string()),
        other => other.and_then(text),
    };
    match text(items.first()?)?.as_str() {
        "master" => Some(Role::Master),
        "slave" | "replica" => Some(Role::Replica {
            master: format!("{}:{}", items.get(1).and_then(text)?, int(items.get(2))?),
            state: items.get(3).and_then(text)?,
        }),
        "sentinel" => Some(Role::Sentinel),
        _ => None,
    }
}

/// `redis_version`, and `server_name` (Valkey names itself), from `INFO server`.
fn version_of(info: &str) -> (Option<String>, &'static str) {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    let flavour = if field("server_name").as_deref() == Some("valkey") {
        "valkey"
    } else {
        "redis"
    };
    let version = field("valkey_version")
        .filter(|_| flavour == "valkey")
        .or_else(|| field("redis_version"));
    (version, flavour)
}

impl ProbeKind for RedisProbe {
    const NAME: &'static str = "redis";
    const ABOUT: &'static str = "a Redis / Valkey session: TLS for rediss, AUTH, PING, ROLE";
    type Spec = RedisSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[
        ("db.system.name", "redis"),
        ("db.operation.name", "PING"),
    ];
    const FINDINGS: &'static [crate::outcome::FindingType] = &[REPLICATION_LINK_DOWN];

    fn build(cfg: &ProbeConfig, spec: &RedisSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}

impl Exec for RedisProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        run.attribute("db.namespace", self.target.db.to_string());
        run.details
            .insert("tls_used".into(), self.tls.is_some().into());
        let tcp = transport::dial(run, &self.dns, &self.target.host, self.target.port).await?;
        let (io, auth) = self.secure(run, tcp).await?;
        let mut conn = Resp::new(io);
        // PING, ROLE and INFO go out with the login, in the same write.
        let requests: [&[&[u8]]; 3] = [&[b"PING"], &[b"ROLE"], &[b"INFO", b"server"]];
        self.login(run, &mut conn, &requests)
            .await
            .map_err(|e| client_cert_missing(e, auth))?;
        let (role, version, flavour) = run
            .phase(Phase::Request, async {
                let pong = conn.reply(Phase::Request).await?;
                refused(&pong, Phase::Request, "PING")?;
                let role = conn.reply(Phase::Request).await?;
                let info = conn.reply(Phase::Request).await?;
                let (version, flavour) = text(&info)
                    .map(|i| version_of(&i))
                    .unwrap_or((None, "redis"));
                Ok((role, version, flavour))
            })
            .await
            .map_err(|e| client_cert_missing(e, auth))?;
        conn.quit().await;
        run.details.insert("flavour".into(), flavour.into());
        if let Some(v) = &version {
            run.details
                .insert("server_version".into(), v.clone().into());
        }
        let role = match role_of(&role) {
            Some(r) => r,
            None => {
                // ROLE refused by the ACL: the session works, the role is unknown.
                run.details.insert(
                    "role".into(),
                    "unknown (ROLE not permitted or not understood)".into(),
                );
                return Ok(format!(
                    "{flavour} {}: PING OK",
                    version.as_deref().unwrap_or("?")
                ));
            }
        };
        let name = match &role {
            Role::Master => "master",
            Role::Replica { .. } => "replica",
            Role::Sentinel => "sentinel",
        };
        run.details.insert("role".into(), name.into());
        if let Role::Replica { master, state } = &role {
            let up = state == "connected";
            run.details.insert("master".into(), master.clone().into());
            let link = if up { "up" } else { "down" };
            run.details.insert("master_link_status".into(), link.into());
            if !up {
                run.findings.push(link_down(master, state));
            }
        }
        run.role(name);
        let how = match &run.tls {
            Some(t) => format!("over TLS {}", t.version.as_deref().unwrap_or("?")),
            None => "in plaintext (redis://)".to_owned(),
        };
        Ok(format!(
            "{flavour} {} ({name}): PING OK {how}",
            version.as_deref().unwrap_or("?")
        ))
    }
}

/// After a handshake in which the server asked for a client certificate and none was
/// sent, a closed connection is the server refusing it (TLS 1.3 says so only after
/// the handshake, on the first read).
fn client_cert_missing(e: ProbeError, auth: Option<ClientAuth>) -> ProbeError {
    let missing = auth.is_some_and(|a| a.asked && !a.sent);
    if missing && (e.class == ErrorType::ConnectionReset || e.class.is_tls()) {
        return ProbeError::new(
            ErrorType::TlsClientCertRequired,
            Phase::Tls,
            format!(
                "the server asked for a client certificate, none is configured (tls.cert_file, tls.key_file), and it ended the session ({})",
                e.message
            ),
        );
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> OwnedFrame {
        OwnedFrame::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn role_reads_master_replica_and_sentinel() {
        let master = OwnedFrame::Array(vec![
            bulk("master"),
            OwnedFrame::Integer(0),
            OwnedFrame::Array(vec![]),
        ]);
        assert_eq!(role_of(&master), Some(Role::Master));
        let replica = OwnedFrame::Array(vec![
            bulk("slave"),
            bulk("10.0.0.1"),
            OwnedFrame::Integer(6379),
            bulk("connect"),
            OwnedFrame::Integer(-1),
        ]);
        assert_eq!(
            role_of(&replica),
            Some(Role::Replica {
                master: "10.0.0.1:6379".into(),
                state: "connect".into()
            })
        );
        assert_eq!(role_of(&OwnedFrame::Error("NOPERM".into())), None);
    }

    #[test]
    fn wrongpass_and_noauth_are_auth_rejected() {
        let e = refused(
            &OwnedFrame::Error(
                "WRONGPASS invalid username-password pair or user is disabled.".into(),
            ),
            Phase::Auth,
            "AUTH",
        )
        .unwrap_err();
        assert_eq!((e.class, e.phase), (ErrorType::AuthRejected, Phase::Auth));
        let e = refused(
            &OwnedFrame::Error("NOAUTH Authentication required.".into()),
            Phase::Request,
            "PING",
        )
        .unwrap_err();
        assert_eq!((e.class, e.phase), (ErrorType::AuthRejected, Phase::Auth));
        assert!(e.message.contains("none is configured"));
    }

    #[test]
    fn version_and_flavour_come_from_info() {
        let (v, f) = version_of("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n");
        assert_eq!((v.as_deref(), f), (Some("7.0.15"), "redis"));
        let (v, f) =
            version_of("redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n");
        assert_eq!((v.as_deref(), f), (Some("8.0.1"), "valkey"));
    }
}
