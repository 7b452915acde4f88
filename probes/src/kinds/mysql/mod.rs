//! `kind: mysql`: a real session with a MySQL or MariaDB server, opened the way the
//! MySQL client opens it: DNS, TCP connect, the server's greeting, an SSL request and
//! the TLS handshake as `ssl-mode` says, the login with the plugin the server asks
//! for, the configured query, and the facts that make the server's role: its version
//! and flavour, `@@read_only` (and MySQL's `@@super_read_only`), and whether it
//! replicates from a source.
//!
//! Verification is never turned off. Under `preferred` and `required`, which do not
//! verify in the MySQL client, the chain is still verified and every problem is a
//! `cert_invalid` finding, exactly as the `postgres` kind does for `require`. The role
//! is kept between runs; a change is a `role_changed` finding.

mod facts;
mod login;
mod query;
mod server_key;
pub mod spec;
mod wire;

use tokio::net::TcpStream;

use depprobe_config::{ProbeConfig, Secret};

use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify::ClientAuth;
use crate::transport::tls::{Enforcement, TlsClient};
use crate::transport::{self, Dns};
use crate::{BuildError, Exec, ProbeEnv};

use crate::kinds::ProbeKind;
use crate::kinds::role::REPLICATION_LINK_DOWN;
use login::{Greeting, Login};
use spec::{MysqlSpec, MysqlTarget, SslMode};
use wire::{Io, Wire};

/// A `mysql` probe.
pub struct MysqlProbe {
    meta: ProbeMeta,
    target: MysqlTarget,
    /// `None` under `ssl-mode=disabled`.
    tls: Option<TlsClient>,
    query: String,
    dns: Dns,
}

impl MysqlProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &MysqlSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let target = spec.target().map_err(BuildError::Invalid)?;
        let tls = match target.ssl_mode {
            SslMode::Disabled => None,
            mode => {
                let enforcement = match mode {
                    SslMode::VerifyIdentity => Enforcement::Full,
                    SslMode::VerifyCa => Enforcement::ChainOnly,
                    _ => Enforcement::ReportOnly,
                };
                Some(TlsClient::from_spec(&spec.tls, &[])?.with_enforcement(enforcement))
            }
        };
        Ok(MysqlProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: target.host.clone(),
                    port: target.port,
                },
            ),
            target,
            tls,
            query: spec.query.clone(),
            dns: env.dns.clone(),
        })
    }

    /// Phase `tls`: the SSL request and the handshake, as `ssl-mode` says. Returns
    /// the framing the login goes on over, and what the handshake saw of client
    /// authentication (`None` in plaintext).
    async fn secure(
        &self,
        run: &mut Run<'_>,
        mut wire: Wire<TcpStream>,
        hello: &Greeting,
    ) -> Result<(Wire<Box<dyn Io>>, Option<ClientAuth>), ProbeError> {
        let mode = self.target.ssl_mode;
        let client = match &self.tls {
            Some(client) if hello.tls => client,
            Some(_) if mode.needs_tls() => {
                return Err(ProbeError::new(
                    ErrorType::TlsNotOffered,
                    Phase::Tls,
                    format!(
                        "the server does not offer TLS (no CLIENT_SSL in its greeting: have_ssl is DISABLED), and ssl-mode={mode} requires it"
                    ),
                ));
            }
            _ => {
                let (tcp, seq) = wire.into_parts();
                return Ok((Wire::resume(Box::new(tcp), seq), None));
            }
        };
        run.phase(
            Phase::Tls,
            login::ssl_request(&mut wire, hello, self.target.database.is_some()),
        )
        .await?;
        let (tcp, seq) = wire.into_parts();
        let now = run.now();
        let session = run
            .phase(Phase::Tls, client.handshake(tcp, &self.target.host, now))
            .await?;
        let mut session = session;
        session.adopt(run);
        let stream: Box<dyn Io> = Box::new(session.stream);
        Ok((Wire::resume(stream, seq), Some(session.client_auth)))
    }

    /// Phase `auth`: the login.
    async fn login(
        &self,
        run: &mut Run<'_>,
        wire: &mut Wire<Box<dyn Io>>,
        hello: &Greeting,
        password: Option<&Secret>,
        auth: Option<ClientAuth>,
    ) -> Result<String, ProbeError> {
        let login = Login {
            user: &self.target.user,
            password: password.map(|p| p.expose().as_bytes()).unwrap_or_default(),
            database: self.target.database.as_deref(),
            tls: auth.is_some(),
            get_server_public_key: self.target.get_server_public_key,
        };
        let result = run
            .phase(Phase::Auth, login::login(wire, hello, &login))
            .await;
        result.map_err(|e| no_password_hint(e, password.is_some()))
    }
}

/// A login refused without a password configured says so. (A missing client
/// certificate is not guessed at: MySQL servers ask every TLS client for one, so
/// the request says nothing; a TLS alert on the first read is classified as such.)
fn no_password_hint(mut e: ProbeError, has_password: bool) -> ProbeError {
    if e.class == ErrorType::AuthRejected && !has_password {
        e.message
            .push_str("; no password is configured (set `password` or `password_file`)");
    }
    e
}

impl ProbeKind for MysqlProbe {
    const NAME: &'static str = "mysql";
    const ABOUT: &'static str =
        "a MySQL / MariaDB session: TLS in the protocol as ssl-mode says, login, query, role";
    type Spec = MysqlSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[("db.system.name", "mysql")];
    const FINDINGS: &'static [crate::outcome::FindingType] = &[REPLICATION_LINK_DOWN];

    fn build(cfg: &ProbeConfig, spec: &MysqlSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}

impl Exec for MysqlProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        if let Some(db) = &self.target.database {
            run.attribute("db.namespace", db.clone());
        }
        if let Some(op) = crate::semconv::sql_operation(&self.query) {
            run.attribute("db.operation.name", op);
        }
        let password = crate::secrets::read_for_run(run, self.target.password.as_ref(), "password")?;
        run.details
            .insert("ssl_mode".into(), self.target.ssl_mode.as_str().into());
        let tcp = transport::dial(run, &self.dns, &self.target.host, self.target.port).await?;
        let mut wire = Wire::new(tcp);
        let hello = run
            .phase(Phase::Connect, login::greeting(&mut wire))
            .await?;
        run.details
            .insert("server_version".into(), hello.version.clone().into());
        let flavour = if hello.mariadb { "mariadb" } else { "mysql" };
        run.details.insert("flavour".into(), flavour.into());
        run.attribute("db.system.name", flavour);

        let (mut wire, auth) = self.secure(run, wire, &hello).await?;
        run.details.insert("tls_used".into(), auth.is_some().into());
        let plugin = self
            .login(run, &mut wire, &hello, password.as_ref(), auth)
            .await?;
        run.details.insert("auth_plugin".into(), plugin.into());

        let state = run
            .phase(Phase::Query, facts::read(&mut wire, &hello))
            .await?;
        state.record(&mut run.details);
        run.role(state.role().as_str());
        run.findings.extend(state.finding());
        let answer = run
            .phase(Phase::Query, query::query(&mut wire, &self.query))
            .await?;
        wire.quit().await;
        if let Err(refusal) = answer {
            return Err(ProbeError::new(
                ErrorType::QueryFailed,
                Phase::Query,
                format!("the query failed ({})", refusal.text),
            ));
        }
        let how = match &run.tls {
            Some(t) => format!("over TLS {}", t.version.as_deref().unwrap_or("?")),
            None => format!("in plaintext (ssl-mode={})", self.target.ssl_mode),
        };
        Ok(format!(
            "{} {}, {}: login as {} and query OK {how}",
            if hello.mariadb { "MariaDB" } else { "MySQL" },
            hello.version,
            state.role().as_str(),
            self.target.user
        ))
    }
}
