//! `kind: postgres`: a real session with a PostgreSQL server, opened the way an
//! application's driver opens it: DNS, TCP connect, TLS as libpq's `sslmode` says (an
//! SSLRequest then the handshake, or PostgreSQL 17's direct TLS), the login, the
//! configured query, and `pg_is_in_recovery()` to know whether the server is a primary
//! or a standby.
//!
//! Verification is never turned off. Under `require`, `prefer` and `allow`, which do
//! not verify in libpq, the chain is still verified and every problem is a
//! `cert_invalid` finding: the expired certificate of incident 03 is named on the day
//! even by a probe configured like the application that kept working without
//! verifying. The role is kept between runs of the probe; a change is a
//! `role_changed` finding (a failover happened).

mod answer;
pub mod bounded;
mod classify;
mod keyfile;
pub mod spec;
mod tls;

use std::future::Future;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_postgres::config::{SslMode as WireSslMode, SslNegotiation as WireNegotiation};
use tokio_postgres::tls::{NoTls, TlsConnect};

use spec::{PgTarget, PostgresSpec, SslCertMode, SslMode, SslNegotiation, TlsVersion};
use depprobe_config::{ProbeConfig, Secret};

use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run, humanize};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify::ClientAuth;
use crate::transport::tls::{ClientRules, Enforcement, TlsClient, client_key_with, names};
use crate::transport::{self, Dns};
use crate::{BuildError, Exec, ProbeEnv};

use super::ProbeKind;

use answer::{Answer, Role};
use classify::LoginContext;
use tls::{Established, PgTlsStream, SslAnswer};

/// The ALPN protocol of PostgreSQL (required by servers for direct TLS).
const ALPN: &str = "postgresql";

/// How long a finished run waits for the session's orderly close (Terminate,
/// close_notify), so that the server does not log an abrupt disconnect.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// A `postgres` probe.
pub struct PostgresProbe {
    meta: ProbeMeta,
    target: PgTarget,
    /// The mode in force (`require` with `sslrootcert` is `verify-ca`).
    sslmode: SslMode,
    /// `None` under `sslmode=disable`.
    tls: Option<TlsClient>,
    query: String,
    expect: Option<String>,
    dns: Dns,
}

/// The connection once TLS is settled.
enum Channel {
    /// Encrypted, with what the handshake saw of client authentication.
    Tls(Box<PgTlsStream<TcpStream>>, ClientAuth),
    /// In plaintext, and why.
    Plain(TcpStream, &'static str),
}

impl PostgresProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &PostgresSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let target = spec.target().map_err(|errors| {
            let text: Vec<String> = errors.into_iter().map(|(_, m)| m).collect();
            BuildError::Invalid(text.join("; "))
        })?;
        let sslmode = target.effective_sslmode();
        let tls = match sslmode {
            SslMode::Disable => None,
            mode => {
                let enforcement = match mode {
                    SslMode::VerifyFull => Enforcement::Full,
                    SslMode::VerifyCa => Enforcement::ChainOnly,
                    _ => Enforcement::ReportOnly,
                };
                let tls_spec = spec.tls_spec(&target);
                let mut client = TlsClient::from_spec(&tls_spec, &[ALPN])?
                    .with_rules(ClientRules::Libpq)
                    .with_enforcement(enforcement)
                    .with_sni(target.sslsni && names::host_address(&target.host).is_none())
                    .with_versions(
                        target.versions.min <= TlsVersion::Tls12,
                        target.versions.max >= TlsVersion::Tls13,
                    );
                if let (Some(cert), Some(key)) = (&target.sslcert, &target.sslkey) {
                    let password = target.sslpassword.as_ref().map(Secret::expose);
                    client = client.with_client_key(Some(client_key_with(cert, key, password)?));
                }
                if target.sslcertmode == SslCertMode::Disable {
                    client = client.with_client_key(None);
                }
                Some(client)
            }
        };
        Ok(PostgresProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: target.host.clone(),
                    port: target.port,
                },
            ),
            target,
            sslmode,
            tls,
            query: spec.query.clone(),
            expect: spec.expect.value.clone(),
            dns: env.dns.clone(),
        })
    }

    /// Resolves the host (phase `dns`, skipped for an address) and connects (phase
    /// `connect`).
    async fn dial(
        &self,
        run: &mut Run<'_>,
        limit: Option<Instant>,
    ) -> Result<TcpStream, ProbeError> {
        // `hostaddr`: connect there; `host` is only the name verified.
        let host = self.target.hostaddr.as_ref().unwrap_or(&self.target.host);
        let port = self.target.port;
        // An address as libpq reads one (getaddrinfo, inet_aton forms included).
        let literal = names::host_address(host)
            .map(|ip| vec![std::net::SocketAddr::new(ip, port)]);
        let addrs = match literal {
            Some(addrs) => addrs,
            None => {
                self.establishing(run, limit, Phase::Dns, self.dns.resolve(host, port))
                    .await?
            }
        };
        self.establishing(run, limit, Phase::Connect, transport::connect(&addrs))
            .await
    }

    /// Phase `tls`: the SSLRequest (unless TLS is direct) and the handshake, as the
    /// sslmode says.
    async fn secure(
        &self,
        run: &mut Run<'_>,
        limit: Option<Instant>,
        mut tcp: TcpStream,
    ) -> Result<Channel, ProbeError> {
        let Some(client) = &self.tls else {
            return Ok(Channel::Plain(tcp, "in plaintext"));
        };
        let direct = self.target.sslnegotiation == SslNegotiation::Direct;
        if !direct {
            let asked = async {
                tls::ssl_request(&mut tcp)
                    .await
                    .map_err(|e| transport::classify_stream(Phase::Tls, &e))
            };
            let answer = self
                .establishing(run, limit, Phase::Tls, asked)
                .await
                .map_err(|e| self.ssl_request_failed(e))?;
            match answer {
                SslAnswer::Accepted => {}
                SslAnswer::Refused if self.sslmode.needs_tls() => {
                    return Err(ProbeError::new(
                        ErrorType::TlsNotOffered,
                        Phase::Tls,
                        format!(
                            "the server answered N to the SSLRequest: it does not accept TLS (ssl = off), and sslmode={} requires TLS",
                            self.sslmode
                        ),
                    ));
                }
                SslAnswer::Refused => {
                    return Ok(Channel::Plain(
                        tcp,
                        "in plaintext: the server answered N to the SSLRequest, so TLS was not used",
                    ));
                }
                SslAnswer::Other(byte) => {
                    // 0x15 / 0x16: a TLS alert or handshake record.
                    let hint = if byte == 0x15 || byte == 0x16 {
                        "a TLS record: the port expects TLS right away (a TLS proxy, or PostgreSQL 17 direct TLS: set sslnegotiation=direct)"
                    } else {
                        "is this a PostgreSQL port?"
                    };
                    return Err(ProbeError::new(
                        ErrorType::UnexpectedResponse,
                        Phase::Tls,
                        format!(
                            "the server answered the SSLRequest with {} instead of S or N: {hint}",
                            describe_byte(byte)
                        ),
                    ));
                }
            }
        }
        let now = run.now();
        let handshake = client.handshake(tcp, &self.target.host, now);
        let mut session = self
            .establishing(run, limit, Phase::Tls, handshake)
            .await
            .map_err(|e| direct_hint(e, direct))?;
        session.adopt(run);
        if self.target.sslcertmode == SslCertMode::Require && !session.client_auth.asked {
            return Err(ProbeError::new(
                ErrorType::TlsHandshakeFailure,
                Phase::Tls,
                "server accepted connection without a valid SSL certificate (sslcertmode=require: the server did not ask for a client certificate)",
            ));
        }
        if direct && session.facts.alpn.as_deref() != Some(ALPN) {
            return Err(ProbeError::new(
                ErrorType::TlsHandshakeFailure,
                Phase::Tls,
                "the server completed a direct TLS handshake without agreeing to ALPN `postgresql`: it is not a PostgreSQL 17+ server",
            ));
        }
        Ok(Channel::Tls(
            Box::new(PgTlsStream::new(session.stream)),
            session.client_auth,
        ))
    }

    /// Phases `auth` and `query`: the login over `stream`, the query, the role.
    async fn session<S, T>(
        &self,
        run: &mut Run<'_>,
        limit: Option<Instant>,
        stream: S,
        tls: T,
        password: Option<&Secret>,
        ctx: LoginContext,
    ) -> Result<Answer, ProbeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        T: TlsConnect<bounded::Bounded<S>>,
    {
        let stream = bounded::Bounded::new(stream);
        let violation = stream.violation();
        // A message over the cap fails the read inside tokio-postgres; the run
        // reports the cap, whatever tokio-postgres made of the failed read.
        let capped = move |e: ProbeError| match violation.lock().ok().and_then(|v| v.clone()) {
            Some(what) => ProbeError::new(ErrorType::UnexpectedResponse, e.phase, what),
            None => e,
        };
        let mut config = tokio_postgres::Config::new();
        config
            .user(&self.target.user)
            .dbname(&self.target.dbname)
            .application_name(&self.target.application_name);
        if ctx.client_auth.is_some() {
            // The handshake is done: tokio-postgres must not send an SSLRequest.
            config
                .ssl_mode(WireSslMode::Require)
                .ssl_negotiation(WireNegotiation::Direct);
        } else {
            config.ssl_mode(WireSslMode::Disable);
        }
        if let Some(p) = password {
            config.password(p.expose());
        }
        let login = async {
            config
                .connect_raw(stream, tls)
                .await
                .map_err(|e| classify::login_error(&e, &ctx))
        };
        let (client, connection) = self
            .establishing(run, limit, Phase::Auth, login)
            .await
            .map_err(&capped)?;
        let server_version = connection.parameter("server_version").map(str::to_owned);
        if let Some(v) = &server_version {
            run.details
                .insert("server_version".into(), v.clone().into());
        }

        // The connection is driven here, beside the queries, so that nothing outlives
        // the run.
        let mut connection = Box::pin(connection);
        let query = self.query.as_str();
        let work = async {
            let first = answer::query_first_value(&client, query)
                .await
                .map_err(|e| classify::query_error(&e))?;
            let recovery = client
                .simple_query("SELECT pg_is_in_recovery()")
                .await
                .map_err(|e| classify::query_error(&e))?;
            let role = Role::from_recovery(&recovery)?;
            Ok((first, role))
        };
        let result = run
            .phase(Phase::Query, async {
                tokio::select! {
                    biased;
                    r = work => r,
                    r = &mut connection => Err(classify::connection_ended(r)),
                }
            })
            .await;
        drop(client);
        let _ = tokio::time::timeout(CLOSE_WAIT.min(run.remaining()), connection).await;
        let (first_value, role) = result.map_err(&capped)?;
        Ok(Answer {
            server_version,
            role,
            first_value,
        })
    }

    /// Runs `step` as `phase`, cut also at `limit` (the end of `connect_timeout`).
    async fn establishing<T, F>(
        &self,
        run: &mut Run<'_>,
        limit: Option<Instant>,
        phase: Phase,
        step: F,
    ) -> Result<T, ProbeError>
    where
        F: Future<Output = Result<T, ProbeError>>,
    {
        let Some(limit) = limit else {
            return run.phase(phase, step).await;
        };
        let started = Instant::now();
        let bounded = tokio::time::timeout_at(limit, run.phase(phase, step)).await;
        match bounded {
            Ok(r) => r,
            Err(_) => {
                run.record(phase, started.elapsed());
                Err(ProbeError::deadline(phase, self.establish_budget()))
            }
        }
    }

    /// The time the session may take to establish: `connect_timeout` when it is
    /// shorter than the run's timeout.
    fn establish_budget(&self) -> Duration {
        match self.target.connect_timeout {
            Some(c) if c < self.meta.timeout => c,
            _ => self.meta.timeout,
        }
    }

    /// A hung SSLRequest says so: that is what a non-PostgreSQL port often does.
    fn ssl_request_failed(&self, mut e: ProbeError) -> ProbeError {
        if e.class == ErrorType::Timeout {
            e.message = format!(
                "the server accepted the TCP connection but did not answer the SSLRequest within {}: is this a PostgreSQL port?",
                humanize(self.establish_budget())
            );
        }
        e
    }
}

/// A failed direct handshake mentions what usually causes it.
fn direct_hint(mut e: ProbeError, direct: bool) -> ProbeError {
    if direct && e.class == ErrorType::TlsHandshakeFailure {
        e.message.push_str(
            "; with sslnegotiation=direct: PostgreSQL before 17 closes the connection on a direct TLS handshake (use sslnegotiation=postgres for it)",
        );
    }
    e
}

/// `0x48 ('H')`.
fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("0x{b:02x} ('{}')", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

impl ProbeKind for PostgresProbe {
    const NAME: &'static str = "postgres";
    const ABOUT: &'static str = "a PostgreSQL session: TLS as sslmode says, login, query, role";
    type Spec = PostgresSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[("db.system.name", "postgresql")];

    fn build(cfg: &ProbeConfig, spec: &PostgresSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}

impl Exec for PostgresProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        run.attribute("db.namespace", self.target.dbname.clone());
        if let Some(op) = crate::semconv::sql_operation(&self.query) {
            run.attribute("db.operation.name", op);
        }
        let password = match &self.target.password {
            Some(src) => {
                let p = crate::secrets::read_secret(src, "password")?;
                run.secret(&p);
                Some(p)
            }
            None => None,
        };
        run.details
            .insert("sslmode".into(), self.sslmode.as_str().into());
        let limit = self.target.connect_timeout.map(|d| Instant::now() + d);

        if self.tls.is_some()
            && self.target.sslcertmode != SslCertMode::Disable
            && let Some(key) = &self.target.sslkey
        {
            keyfile::check(key)?;
        }
        let tcp = self.dial(run, limit).await?;
        let channel = self.secure(run, limit, tcp).await?;
        let (answer, plain_because) = match channel {
            Channel::Tls(stream, client_auth) => {
                run.details.insert("tls_used".into(), true.into());
                let ctx = LoginContext {
                    password_configured: password.is_some(),
                    client_auth: Some(client_auth),
                };
                let answer = self
                    .session(run, limit, *stream, Established, password.as_ref(), ctx)
                    .await?;
                (answer, None)
            }
            Channel::Plain(tcp, why) => {
                run.details.insert("tls_used".into(), false.into());
                let ctx = LoginContext {
                    password_configured: password.is_some(),
                    client_auth: None,
                };
                let answer = self
                    .session(run, limit, tcp, NoTls, password.as_ref(), ctx)
                    .await?;
                (answer, Some(why))
            }
        };

        run.details
            .insert("role".into(), answer.role.as_str().into());
        run.role(answer.role.as_str());
        answer::judge(self.expect.as_deref(), &answer.first_value)?;
        let how = plain_because.map(|why| format!("{why} (sslmode={})", self.sslmode));
        Ok(answer::summary(
            &answer,
            &self.target.user,
            how,
            run.tls.as_ref(),
            run.now(),
        ))
    }
}
