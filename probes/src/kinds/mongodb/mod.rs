//! `kind: mongodb`: every member's certificate, login, `ping`, and a watch on the
//! replica set between runs.
//!
//! One run reads top to bottom: read the password (a file is read again each run);
//! find the seeds (SRV records for `mongodb+srv://`); dial every known member with
//! depprobe's own transport to capture and classify its certificate (phases `dns`,
//! `connect`, `tls`); then use the probe's long-lived driver client to log in and
//! `ping` any member (phase `auth`: server selection, handshake, authentication) and
//! `ping` the primary (phase `query`); finally describe the topology and judge the
//! watch's record of elections.
//!
//! The driver client lives as long as the probe (it is rebuilt when the password
//! changes, or if the driver reports it shut down), so its monitors see every primary change between runs; see
//! [`watch`]. Its pool closes connections idle for half the interval, so each run
//! logs in afresh and a refused password is seen on the next run, not at the next
//! reconnect.

mod classify;
mod client;
mod elections;
mod members;
pub mod relay;
mod replication;
mod report;
pub mod spec;
mod terms;
pub mod watch;

/// One or more elections within the window (counted by term).
pub const ELECTIONS: FindingType = FindingType::new("elections");
/// The number of elections reached the storm threshold.
pub const ELECTION_STORM: FindingType = FindingType::new("election_storm");
/// A replica-set member cannot be reached.
pub const MEMBER_UNREACHABLE: FindingType = FindingType::new("member_unreachable");
/// A secondary's last write is more than `lag_warn` behind the primary's.
pub const REPLICATION_LAG: FindingType = FindingType::new("replication_lag");

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mongodb::Client;
use mongodb::bson::doc;
use mongodb::options::{ConnectionString, ReadPreference, SelectionCriteria};

use spec::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_SERVER_SELECTION_TIMEOUT, MIN_HEARTBEAT_FREQUENCY, MongoSpec,
    MongoUrlParts,
    default_heartbeat,
};
use depprobe_config::{
    ConfigDuration, ProbeConfig, Secret, SecretSource, TlsSpec, split_host_port,
};

use crate::secrets::read_secret;
use crate::declared::MetricDecl;
use crate::outcome::{FindingType, Target};
use crate::run::{ProbeError, ProbeMeta, Run, humanize};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::Dns;
use crate::transport::tls::TlsClient;
use crate::{BuildError, Exec, ProbeEnv};

use super::ProbeKind;

use classify::{driver_error, from_topology};
use client::DriverSettings;
use relay::Relay;
use members::{MemberDial, dial_all, srv_seeds};
pub use report::REPLICATION_LAG_DETAIL;
use report::{Dialled, ElectionRules, describe, success_message};
pub use watch::{
    MemberState, MemberView, MemberWrite, PrimaryChange, ReplicaSetWatch, TopologyView,
};

/// Idle pooled connections are closed after half the interval, within these
/// bounds, so that each run logs in afresh.
const POOL_IDLE_MIN: Duration = Duration::from_millis(100);
/// See [`POOL_IDLE_MIN`].
const POOL_IDLE_MAX: Duration = Duration::from_secs(10);

/// A `mongodb` probe.
pub struct MongoProbe {
    meta: ProbeMeta,
    srv: bool,
    seeds: Vec<(String, u16)>,
    password: Option<SecretSource>,
    tls: Option<TlsClient>,
    /// The relay's TLS client: the driver's view, which checks each member's own
    /// host name (drivers have no `tls.server_name`).
    driver_tls: Option<TlsClient>,
    driver: DriverSettings,
    elections: ElectionRules,
    dns: Dns,
    watch: Arc<ReplicaSetWatch>,
    live: tokio::sync::Mutex<Option<LiveClient>>,
}

/// The driver client kept across runs, the password it was built with, and the
/// relay its connections go through.
struct LiveClient {
    client: Client,
    password: Option<Secret>,
    relay: Arc<Relay>,
}

fn invalid(what: impl Into<String>) -> BuildError {
    BuildError::Invalid(what.into())
}

impl MongoProbe {
    /// Builds the probe; the driver client is made on the first run.
    pub fn new(cfg: &ProbeConfig, spec: &MongoSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let parts = spec.url.parts().map_err(|e| invalid(format!("url: {e}")))?;
        // The driver's own reading of the URL: options it refuses are build errors.
        let conn = ConnectionString::parse(spec.url.expose())
            .map_err(|e| invalid(format!("url: {}", e.kind)))?;
        let (host, port) = parts
            .hosts
            .first()
            .cloned()
            .ok_or_else(|| invalid("url has no host"))?;
        let (tls, driver_tls) = if parts.tls() {
            let (own, driver) = tls_settings(spec, &parts)?;
            (Some(own), Some(driver))
        } else {
            (None, None)
        };
        // A key of the probe wins over the URL's option, which wins over the default.
        let pick = |key: Option<ConfigDuration>, url: Option<Duration>, default: ConfigDuration| {
            key.map(|d| d.0).or(url).unwrap_or(default.0)
        };
        Ok(MongoProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: host,
                    port,
                },
            ),
            srv: parts.srv,
            seeds: parts.hosts.clone(),
            password: spec.password_source(),
            tls,
            driver_tls,
            driver: DriverSettings {
                url: spec.url.clone(),
                username: spec.username.clone(),
                server_selection_timeout: pick(
                    spec.server_selection_timeout,
                    conn.server_selection_timeout,
                    DEFAULT_SERVER_SELECTION_TIMEOUT,
                ),
                connect_timeout: pick(
                    spec.connect_timeout,
                    conn.connect_timeout,
                    DEFAULT_CONNECT_TIMEOUT,
                ),
                heartbeat_frequency: pick(
                    spec.heartbeat_frequency,
                    conn.heartbeat_frequency,
                    default_heartbeat(cfg.interval),
                )
                .max(MIN_HEARTBEAT_FREQUENCY.0),
                pool_idle: (cfg.interval.0 / 2).clamp(POOL_IDLE_MIN, POOL_IDLE_MAX),
            },
            elections: ElectionRules {
                window: spec.elections.window.0,
                threshold: spec.elections.threshold.max(1),
                lag_warn: spec.lag_warn.0,
            },
            dns: env.dns.clone(),
            watch: Arc::new(ReplicaSetWatch::new(spec.elections.window.0)),
            live: tokio::sync::Mutex::new(None),
        })
    }

    /// The replica-set watch: what the driver's monitors have seen so far.
    pub fn watch(&self) -> &ReplicaSetWatch {
        &self.watch
    }

    // Over 80 lines on purpose: one run's steps in the order the driver takes them
    // (seeds, member dials, login, ping, own hello, settle, late members), each a
    // phase of the run with its own deadline handling; split, the order would no
    // longer read top to bottom.
    async fn session(
        &self,
        run: &mut Run<'_>,
        dialled: &mut Dialled,
    ) -> Result<String, ProbeError> {
        let password = match &self.password {
            Some(src) => {
                let p = read_secret(src, "MongoDB password")?;
                run.secret(&p);
                Some(p)
            }
            None => None,
        };

        let seeds = match (self.srv, self.seeds.first()) {
            (true, Some((name, _))) => run.phase(Phase::Dns, srv_seeds(name)).await?,
            _ => self.seeds.clone(),
        };
        // The seeds, and every member the driver has seen.
        let mut targets = seeds;
        for address in self.watch.snapshot().members.keys() {
            if let Some(hp) = split_host_port(address)
                && !targets
                    .iter()
                    .any(|(h, p)| h.eq_ignore_ascii_case(&hp.0) && *p == hp.1)
            {
                targets.push(hp);
            }
        }
        let mut dials = self.dial_members(run, &targets).await;
        self.judge_dials(run, &dials, dialled)?;

        let client = run
            .phase(Phase::Auth, self.client(password.as_ref()))
            .await?;
        let admin = client.database("admin");
        let any_member =
            SelectionCriteria::ReadPreference(ReadPreference::PrimaryPreferred { options: None });
        let login = admin
            .run_command(doc! { "ping": 1 })
            .selection_criteria(any_member);
        let r = run
            .phase(Phase::Auth, async {
                login
                    .await
                    .map_err(|e| self.driver_failure(&e, Phase::Auth, false))
            })
            .await;
        self.explain_deadline(r, Phase::Auth, false)?;

        let ping = admin
            .run_command(doc! { "ping": 1 })
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary));
        let r = run
            .phase(Phase::Query, async {
                ping.await
                    .map_err(|e| self.driver_failure(&e, Phase::Query, true))
            })
            .await;
        self.explain_deadline(r, Phase::Query, true)?;
        self.look(&admin, self.driver.connect_timeout.min(run.remaining()))
            .await;

        // On the first runs, give the driver's monitors the time to check every member
        // once, so that the topology reported is complete. The driver delivers its
        // events through a queue, so the watch may lag its view a little: the ping
        // just reached a primary, so wait until the watch knows one too.
        let settle = self.driver.connect_timeout.min(run.remaining());
        let _ = tokio::time::timeout(
            settle,
            self.watch.wait_until(|v| {
                !v.members.is_empty()
                    && (v.set_name.is_none() || v.primary.is_some())
                    && v.members
                        .values()
                        .all(|m| m.state != MemberState::Unknown || m.error.is_some())
            }),
        )
        .await;

        // Members first learnt from the set itself this run (not seeds, not known
        // before): their certificates are checked now, so that the first run says
        // what every later one will.
        let seen: Vec<String> = dials
            .iter()
            .map(|d| d.address.to_ascii_lowercase())
            .collect();
        let new_members: Vec<(String, u16)> = self
            .watch
            .snapshot()
            .members
            .keys()
            .filter(|a| !seen.contains(&a.to_ascii_lowercase()))
            .filter_map(|a| split_host_port(a))
            .collect();
        if !new_members.is_empty() {
            dials.extend(self.dial_members(run, &new_members).await);
            self.judge_dials(run, &dials, dialled)?;
        }

        Ok(success_message(&self.watch.snapshot()))
    }

    /// Asks the primary for its `hello` and gives it to the watch: every run reads
    /// the term and the last write itself, whatever the driver's heartbeat (a
    /// server that does not stream is otherwise only heard every heartbeat). Its
    /// failure is not the run's: the `ping`s have answered for the set; a primary
    /// that does not answer costs at most `limit`.
    async fn look(&self, admin: &mongodb::Database, limit: Duration) {
        let hello = admin
            .run_command(doc! { "hello": 1 })
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary));
        if let Ok(Ok(reply)) = tokio::time::timeout(limit, hello).await
            && let Ok(me) = reply.get_str("me")
        {
            self.watch.observe_reply(me, &reply);
        }
    }

    /// Dials `targets` all at once, and records the slowest of each step as the
    /// phase's duration.
    async fn dial_members(&self, run: &mut Run<'_>, targets: &[(String, u16)]) -> Vec<MemberDial> {
        let limit = self.driver.connect_timeout.min(run.remaining());
        let dials = dial_all(&self.dns, self.tls.as_ref(), targets, run.now(), limit).await;
        for phase in [Phase::Dns, Phase::Connect, Phase::Tls] {
            let slowest = dials
                .iter()
                .flat_map(|d| d.timings.iter())
                .filter(|(p, _)| *p == phase)
                .map(|(_, d)| *d)
                .max();
            if let Some(d) = slowest {
                run.record(phase, d);
            }
        }
        dials
    }

    /// A TLS failure of any member fails the run (every client of the set meets it
    /// when that member is chosen); an unreachable member is a finding, unless none
    /// can be reached.
    fn judge_dials(
        &self,
        run: &mut Run<'_>,
        dials: &[MemberDial],
        dialled: &mut Dialled,
    ) -> Result<(), ProbeError> {
        for d in dials {
            if let Err(e) = &d.result
                && e.class.is_tls()
            {
                let mut err = e.clone();
                err.message = format!("member {}: {}", d.address, e.message);
                for p in &mut err.problems {
                    p.message = format!("member {}: {}", d.address, p.message);
                }
                return Err(err);
            }
        }
        let primary = self.watch.snapshot().primary;
        let mut chosen: Option<&crate::outcome::TlsFacts> = None;
        dialled.unreachable.clear();
        dialled.connect.clear();
        for d in dials {
            if let Some((_, took)) = d.timings.iter().find(|(p, _)| *p == Phase::Connect)
                && !matches!(&d.result, Err(e) if e.phase <= Phase::Connect)
            {
                dialled.connect.push((d.address.clone(), *took));
            }
            match &d.result {
                Ok(Some((facts, findings))) => {
                    if chosen.is_none() || primary.as_deref() == Some(d.address.as_str()) {
                        chosen = Some(facts);
                    }
                    // Members usually share a certificate: one finding per message.
                    for f in findings {
                        if !run.findings.iter().any(|g| g.message == f.message) {
                            run.findings.push(f.clone());
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => dialled.unreachable.push((d.address.clone(), e.clone())),
            }
        }
        run.tls = chosen.cloned();
        if !dials.is_empty() && dials.iter().all(|d| d.result.is_err()) {
            let (address, first) = &dialled.unreachable[0];
            let all: Vec<String> = dialled
                .unreachable
                .iter()
                .map(|(a, e)| format!("{a}: {}", e.message))
                .collect();
            let mut err = first.clone();
            err.message = format!(
                "no member can be reached; {address}: {}{}",
                first.message,
                if all.len() > 1 {
                    format!(" (all: {})", all.join("; "))
                } else {
                    String::new()
                }
            );
            return Err(err);
        }
        Ok(())
    }

    /// The long-lived driver client, built on first use and again when the password
    /// has changed.
    async fn client(&self, password: Option<&Secret>) -> Result<Client, ProbeError> {
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_ref()
            && l.password.as_ref().map(Secret::expose) == password.map(Secret::expose)
        {
            return Ok(l.client.clone());
        }
        let relay = Relay::start(
            self.dns.clone(),
            self.driver_tls.clone(),
            self.driver.connect_timeout,
            self.watch.relayed(),
        )
        .await?;
        let client = self
            .driver
            .connect(password, self.watch.clone(), &relay)
            .await?;
        *live = Some(LiveClient {
            client: client.clone(),
            password: password.cloned(),
            relay: Arc::new(relay),
        });
        Ok(client)
    }

    /// What the relay refused since the last run (a reply over its bounds, a TLS
    /// failure), in `phase`: the driver only saw a connection close.
    fn refused_by_relay(&self, phase: Phase) -> Option<ProbeError> {
        let live = self.live.try_lock().ok()?;
        let mut e = live.as_ref()?.relay.take_violation()?;
        e.phase = phase_for(e.class, phase);
        Some(e)
    }

    /// The failure of a driver command in `phase`.
    fn driver_failure(
        &self,
        e: &mongodb::error::Error,
        phase: Phase,
        wanted_primary: bool,
    ) -> ProbeError {
        if let Some(refused) = self.refused_by_relay(phase) {
            return refused;
        }
        if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Shutdown)
            && let Ok(mut live) = self.live.try_lock()
        {
            // The client is gone: the next run builds a new one.
            *live = None;
        }
        match driver_error(e) {
            Some((class, message)) => ProbeError::new(class, phase_for(class, phase), message),
            None => from_topology(
                &self.watch.snapshot(),
                phase,
                wanted_primary,
                &humanize(self.driver.server_selection_timeout),
            ),
        }
    }

    /// When the run's deadline passed while the driver waited for a member, the
    /// topology usually says why (no primary, every member unreachable).
    fn explain_deadline<T>(
        &self,
        r: Result<T, ProbeError>,
        phase: Phase,
        wanted_primary: bool,
    ) -> Result<T, ProbeError> {
        match r {
            Err(e) if e.class == ErrorType::Timeout && e.phase == phase => {
                if let Some(refused) = self.refused_by_relay(phase) {
                    return Err(refused);
                }
                let judged = from_topology(
                    &self.watch.snapshot(),
                    phase,
                    wanted_primary,
                    &humanize(self.meta.timeout),
                );
                Err(if judged.class == ErrorType::Timeout {
                    e
                } else {
                    judged
                })
            }
            other => other,
        }
    }
}

impl ProbeKind for MongoProbe {
    const NAME: &'static str = "mongodb";
    const ABOUT: &'static str = "a MongoDB deployment: TLS, login, ping, the replica set's primary and elections";
    type Spec = MongoSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[
        ("db.system.name", "mongodb"),
        ("db.operation.name", "ping"),
        ("db.namespace", "admin"),
    ];
    const METRICS: &'static [&'static MetricDecl] = &[
        &report::MEMBERS,
        &report::PRIMARY_CHANGES,
        &replication::REPLICATION_LAG_METRIC,
    ];
    const FINDINGS: &'static [FindingType] =
        &[ELECTIONS, ELECTION_STORM, MEMBER_UNREACHABLE, REPLICATION_LAG];

    fn build(cfg: &ProbeConfig, spec: &MongoSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}

impl Exec for MongoProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let mut dialled = Dialled::default();
        let result = self.session(run, &mut dialled).await;
        describe(
            run,
            &self.watch.snapshot(),
            &dialled,
            &self.elections,
            result.is_err(),
        );
        result
    }
}

/// The probe's TLS clients, the member dials' and the relay's: `tls:` with the
/// URL's `tlsCAFile` and `tlsCertificateKeyFile` applied; the relay's checks each
/// member's own name, as the driver does, whatever `tls.server_name` says.
fn tls_settings(
    spec: &MongoSpec,
    parts: &MongoUrlParts,
) -> Result<(TlsClient, TlsClient), BuildError> {
    let mut tls_spec: TlsSpec = spec.tls.clone();
    if tls_spec.ca_file.is_none() {
        tls_spec.ca_file = parts.option("tlsCAFile").map(PathBuf::from);
    }
    if let Some(file) = parts.option("tlsCertificateKeyFile").map(PathBuf::from) {
        tls_spec.cert_file = Some(file.clone());
        tls_spec.key_file = Some(file);
    }
    let own = TlsClient::from_spec(&tls_spec, &[])?;
    tls_spec.server_name = None;
    Ok((own, TlsClient::from_spec(&tls_spec, &[])?))
}

/// The phase a class belongs to when the driver met it while doing `step`.
fn phase_for(class: ErrorType, step: Phase) -> Phase {
    use ErrorType::*;
    match class {
        c if c.is_tls() => Phase::Tls,
        ConnectRefused | ConnectTimeout | NetworkUnreachable => Phase::Connect,
        // A login refused on the connection the `query` ping opened is still a login.
        AuthRejected => Phase::Auth,
        DnsNotFound | DnsFailure => Phase::Dns,
        _ => step,
    }
}

impl std::fmt::Debug for MongoProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoProbe")
            .field("name", &self.meta.name)
            .field("url", &self.driver.url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use members::member_address;

    #[test]
    fn member_addresses_bracket_ipv6() {
        assert_eq!(member_address("::1", 27017), "[::1]:27017");
        assert_eq!(member_address("m1", 27017), "m1:27017");
    }
}
