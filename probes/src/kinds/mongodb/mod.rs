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
//! changes), so its monitors see every primary change between runs; see
//! [`watch`]. Its pool closes connections idle for half the interval, so each run
//! logs in afresh and a refused password is seen on the next run, not at the next
//! reconnect.

mod classify;
mod members;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use mongodb::Client;
use mongodb::bson::doc;
use mongodb::event::EventHandler;
use mongodb::options::{
    ClientOptions, ConnectionString, ReadPreference, SelectionCriteria, Tls, TlsOptions,
};
use serde_json::{Value, json};

use depprobe_config::kinds::mongodb::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEARTBEAT_FREQUENCY, DEFAULT_SERVER_SELECTION_TIMEOUT,
    MIN_HEARTBEAT_FREQUENCY, MongoSpec, MongoUrl,
};
use depprobe_config::{ProbeConfig, Secret, SecretSource, TlsSpec, split_host_port};

use crate::kinds::http::read_secret;
use crate::outcome::{Finding, FindingType, Outcome, Severity, Target, rfc3339};
use crate::run::{ProbeError, ProbeMeta, Run, humanize};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::Dns;
use crate::transport::tls::TlsClient;
use crate::{BuildError, Probe, ProbeEnv};

use classify::{driver_error, from_topology};
use members::{MemberDial, dial_all, srv_seeds};
pub use watch::{MemberState, MemberView, PrimaryChange, ReplicaSetWatch, TopologyView};

/// Idle pooled connections are closed after half the interval (within these
/// bounds), so that each run logs in afresh.
const POOL_IDLE_MIN: Duration = Duration::from_millis(100);
const POOL_IDLE_MAX: Duration = Duration::from_secs(10);

/// Most primary changes listed in `details.primary_changes`.
const CHANGES_LISTED: usize = 20;

/// A `mongodb` probe.
pub struct MongoProbe {
    meta: ProbeMeta,
    url: MongoUrl,
    srv: bool,
    seeds: Vec<(String, u16)>,
    username: Option<String>,
    password: Option<SecretSource>,
    tls: Option<TlsClient>,
    driver_tls: Option<DriverTls>,
    server_selection_timeout: Duration,
    connect_timeout: Duration,
    heartbeat_frequency: Duration,
    pool_idle: Duration,
    window: Duration,
    threshold: u32,
    dns: Dns,
    watch: Arc<ReplicaSetWatch>,
    live: tokio::sync::Mutex<Option<LiveClient>>,
}

/// The driver's TLS files.
struct DriverTls {
    ca_file: Option<PathBuf>,
    client: Option<ClientCert>,
}

/// The client certificate, as the driver wants it: one PEM file with both.
enum ClientCert {
    /// Certificate and key in one file already.
    OneFile(PathBuf),
    /// Separate files, joined into a private temporary file while the client is built.
    Pair { cert: PathBuf, key: PathBuf },
}

/// The driver client kept across runs, and the password it was built with.
struct LiveClient {
    client: Client,
    password: Option<Secret>,
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
            let mut tls_spec: TlsSpec = spec.tls.clone();
            if tls_spec.ca_file.is_none() {
                tls_spec.ca_file = parts.option("tlsCAFile").map(PathBuf::from);
            }
            let url_cert = parts.option("tlsCertificateKeyFile").map(PathBuf::from);
            if let Some(file) = &url_cert {
                tls_spec.cert_file = Some(file.clone());
                tls_spec.key_file = Some(file.clone());
            }
            let client = match (&tls_spec.cert_file, &tls_spec.key_file) {
                (Some(c), Some(k)) if c == k => Some(ClientCert::OneFile(c.clone())),
                (Some(c), Some(k)) => Some(ClientCert::Pair {
                    cert: c.clone(),
                    key: k.clone(),
                }),
                _ => None,
            };
            (
                Some(TlsClient::from_spec(&tls_spec, &[])?),
                Some(DriverTls {
                    ca_file: tls_spec.ca_file.clone(),
                    client,
                }),
            )
        } else {
            (None, None)
        };
        let pick = |key: Option<depprobe_config::ConfigDuration>,
                    url: Option<Duration>,
                    default: depprobe_config::ConfigDuration| {
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
            url: spec.url.clone(),
            srv: parts.srv,
            seeds: parts.hosts.clone(),
            username: spec.username.clone(),
            password: spec.password_source(),
            tls,
            driver_tls,
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
                DEFAULT_HEARTBEAT_FREQUENCY,
            )
            .max(MIN_HEARTBEAT_FREQUENCY.0),
            pool_idle: (cfg.interval.0 / 2).clamp(POOL_IDLE_MIN, POOL_IDLE_MAX),
            window: spec.elections.window.0,
            threshold: spec.elections.threshold.max(1),
            dns: env.dns.clone(),
            watch: Arc::new(ReplicaSetWatch::new(spec.elections.window.0)),
            live: tokio::sync::Mutex::new(None),
        })
    }

    /// The replica-set watch: what the driver's monitors have seen so far.
    pub fn watch(&self) -> &ReplicaSetWatch {
        &self.watch
    }

    async fn exec(
        &self,
        run: &mut Run<'_>,
        unreachable: &mut Vec<(String, ProbeError)>,
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
        self.judge_dials(run, &dials, unreachable)?;

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

        // On the first runs, give the driver's monitors the time to check every member
        // once, so that the topology reported is complete.
        let settle = self.connect_timeout.min(run.remaining());
        let _ = tokio::time::timeout(
            settle,
            self.watch.wait_until(|v| {
                v.members
                    .values()
                    .all(|m| m.state != MemberState::Unknown || m.error.is_some())
            }),
        )
        .await;

        // Members first learnt from the set itself this run (not seeds, not known
        // before): their certificates are checked now, so that the first run says
        // what every later one will.
        let dialled: Vec<String> = dials
            .iter()
            .map(|d| d.address.to_ascii_lowercase())
            .collect();
        let new_members: Vec<(String, u16)> = self
            .watch
            .snapshot()
            .members
            .keys()
            .filter(|a| !dialled.contains(&a.to_ascii_lowercase()))
            .filter_map(|a| split_host_port(a))
            .collect();
        if !new_members.is_empty() {
            dials.extend(self.dial_members(run, &new_members).await);
            self.judge_dials(run, &dials, unreachable)?;
        }

        Ok(success_message(&self.watch.snapshot()))
    }

    /// Dials `targets` all at once, and records the slowest of each step as the
    /// phase's duration.
    async fn dial_members(&self, run: &mut Run<'_>, targets: &[(String, u16)]) -> Vec<MemberDial> {
        let limit = self.connect_timeout.min(run.remaining());
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
        unreachable: &mut Vec<(String, ProbeError)>,
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
        unreachable.clear();
        for d in dials {
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
                Err(e) => unreachable.push((d.address.clone(), e.clone())),
            }
        }
        run.tls = chosen.cloned();
        if !dials.is_empty() && dials.iter().all(|d| d.result.is_err()) {
            let (address, first) = &unreachable[0];
            let all: Vec<String> = unreachable
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
        let client = self.new_client(password).await?;
        *live = Some(LiveClient {
            client: client.clone(),
            password: password.cloned(),
        });
        Ok(client)
    }

    async fn new_client(&self, password: Option<&Secret>) -> Result<Client, ProbeError> {
        let setup = |e: mongodb::error::Error| {
            let (class, message) = match e.kind.as_ref() {
                mongodb::error::ErrorKind::InvalidTlsConfig { message, .. } => (
                    ErrorType::CredentialInvalid,
                    format!("the TLS files cannot be used: {message}"),
                ),
                _ => driver_error(&e).unwrap_or((
                    ErrorType::UnexpectedResponse,
                    format!("driver setup: {}", e.kind),
                )),
            };
            ProbeError::new(class, phase_for(class, Phase::Auth), message)
        };
        let mut opts = ClientOptions::parse(self.url.expose())
            .await
            .map_err(setup)?;
        opts.app_name.get_or_insert_with(|| "depprobe".to_owned());
        opts.connect_timeout = Some(self.connect_timeout);
        opts.server_selection_timeout = Some(self.server_selection_timeout);
        opts.heartbeat_freq = Some(self.heartbeat_frequency);
        opts.max_idle_time = Some(self.pool_idle);
        if self.username.is_some() || password.is_some() {
            let mut cred = opts.credential.take().unwrap_or_default();
            if let Some(u) = &self.username {
                cred.username = Some(u.clone());
            }
            if let Some(p) = password {
                cred.password = Some(p.expose().to_owned());
            }
            opts.credential = Some(cred);
        }
        // The joined certificate-and-key file only needs to exist while the client is
        // built: the driver reads it then.
        let mut _joined: Option<tempfile::NamedTempFile> = None;
        if let Some(t) = &self.driver_tls {
            let mut o = TlsOptions::default();
            o.ca_file_path = t.ca_file.clone();
            o.cert_key_file_path = match &t.client {
                None => None,
                Some(ClientCert::OneFile(p)) => Some(p.clone()),
                Some(ClientCert::Pair { cert, key }) => {
                    let file = join_pem(cert, key)?;
                    let path = file.path().to_owned();
                    _joined = Some(file);
                    Some(path)
                }
            };
            opts.tls = Some(Tls::Enabled(o));
        }
        let watch = self.watch.clone();
        opts.sdam_event_handler = Some(EventHandler::callback(move |event| watch.handle(event)));
        Client::with_options(opts).map_err(setup)
    }

    /// The failure of a driver command in `phase`.
    fn driver_failure(
        &self,
        e: &mongodb::error::Error,
        phase: Phase,
        wanted_primary: bool,
    ) -> ProbeError {
        match driver_error(e) {
            Some((class, message)) => ProbeError::new(class, phase_for(class, phase), message),
            None => from_topology(
                &self.watch.snapshot(),
                phase,
                wanted_primary,
                &humanize(self.server_selection_timeout),
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

    /// Fills the outcome's details and findings from the watch.
    fn describe(&self, run: &mut Run<'_>, unreachable: &[(String, ProbeError)]) {
        let view = self.watch.snapshot();
        let now = Instant::now();
        let names = Names::of(&view, unreachable);

        // Members: the driver's view, with the probe's own dial failures (which are
        // more precise: they say whether TCP or TLS failed) taking precedence.
        let mut members: Vec<(
            String,
            MemberState,
            Option<Duration>,
            Option<(ErrorType, String)>,
        )> = view
            .members
            .values()
            .map(|m| {
                let dial = unreachable.iter().find(|(a, _)| *a == m.address);
                let error = match (dial, &m.error) {
                    (Some((_, e)), _) => Some((e.class, e.message.clone())),
                    (None, Some(e)) => Some((e.class, e.message.clone())),
                    (None, None) => None,
                };
                (m.address.clone(), m.state, m.rtt, error)
            })
            .collect();
        for (address, e) in unreachable {
            if !view.members.contains_key(address) {
                members.push((
                    address.clone(),
                    MemberState::Unknown,
                    None,
                    Some((e.class, e.message.clone())),
                ));
            }
        }

        let mut down: Vec<String> = Vec::new();
        for (address, _, _, error) in &members {
            // A refused login marks the member unknown to the driver, but the member
            // answered: the run's own class says it, not an "unreachable" finding.
            if let Some((class, message)) = error
                && *class != ErrorType::AuthRejected
            {
                let name = names.get(address);
                down.push(format!("{name} unreachable ({class})"));
                run.findings.push(
                    Finding::new(
                        FindingType::MemberUnreachable,
                        Severity::Warning,
                        format!("member {name} unreachable ({class}): {message}"),
                    )
                    .with("member", address.as_str())
                    .with("error_type", class.as_str()),
                );
            }
        }

        let recent = view.changes_within(self.window, now);
        let count = recent.len() as u64;
        let primary_now = match &view.primary {
            Some(p) => format!("primary now {}", names.get(p)),
            None => "no primary now".to_owned(),
        };
        if count > 0 {
            let span = recent
                .first()
                .map_or(Duration::ZERO, |c| now.saturating_duration_since(c.seen));
            let last = recent.last();
            let mut finding = if count >= u64::from(self.threshold) {
                let mut text = format!(
                    "election storm: {count} primary changes in {}, {primary_now}",
                    span_text(span)
                );
                for d in &down {
                    text.push_str(", ");
                    text.push_str(d);
                }
                Finding::new(FindingType::ElectionStorm, Severity::Critical, text)
            } else {
                let what = match last {
                    Some(c) => format!(
                        "{} -> {}",
                        c.from.as_deref().map_or("?".to_owned(), |f| names.get(f)),
                        names.get(&c.to)
                    ),
                    None => String::new(),
                };
                Finding::new(
                    FindingType::Elections,
                    Severity::Warning,
                    format!(
                        "{count} primary change{} in the last {} ({what}), {primary_now}",
                        if count == 1 { "" } else { "s" },
                        humanize(self.window)
                    ),
                )
            };
            finding = finding
                .with("count", count)
                .with("threshold", self.threshold)
                .with("window_s", self.window.as_secs())
                .with("span_s", span.as_secs());
            if let Some(p) = &view.primary {
                finding = finding.with("primary", p.as_str());
            }
            run.findings.push(finding);
        }

        let member_list: Vec<Value> = members
            .iter()
            .map(|(address, state, rtt, error)| {
                json!({
                    "address": address,
                    "state": state.as_str(),
                    "rtt_ms": rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
                    "error_type": error.as_ref().map(|(c, _)| c.as_str()),
                    "error": error.as_ref().map(|(_, m)| m.as_str()),
                })
            })
            .collect();
        let mut by_state = serde_json::Map::new();
        for s in MemberState::ALL {
            let n = members.iter().filter(|(_, st, _, _)| st == s).count();
            by_state.insert(s.as_str().to_owned(), json!(n));
        }
        let changes: Vec<Value> = recent
            .iter()
            .rev()
            .take(CHANGES_LISTED)
            .rev()
            .map(|c| {
                json!({
                    "at": rfc3339(c.at),
                    "from": c.from,
                    "to": c.to,
                    "election_id": c.election_id,
                    "set_version": c.set_version,
                })
            })
            .collect();
        let d = &mut run.details;
        d.insert("replica_set".into(), json!(view.set_name));
        d.insert("topology_type".into(), json!(view.topology_type));
        d.insert("primary".into(), json!(view.primary));
        d.insert("members".into(), Value::Array(member_list));
        d.insert("members_by_state".into(), Value::Object(by_state));
        d.insert(
            "primary_changes_total".into(),
            json!(view.primary_changes_total),
        );
        d.insert("primary_changes_in_window".into(), json!(count));
        d.insert("elections_window_s".into(), json!(self.window.as_secs()));
        d.insert("primary_changes".into(), Value::Array(changes));
        if let Some(at) = view.primary_lost_at {
            d.insert("primary_lost_at".into(), json!(rfc3339(at)));
        }
    }
}

impl Probe for MongoProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    fn run(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let mut run = Run::start(&self.meta);
            let mut unreachable = Vec::new();
            let result = self.exec(&mut run, &mut unreachable).await;
            self.describe(&mut run, &unreachable);
            run.finish(result)
        })
    }
}

/// The phase a class belongs to when the driver met it while doing `step`.
fn phase_for(class: ErrorType, step: Phase) -> Phase {
    use ErrorType::*;
    match class {
        c if c.is_tls() => Phase::Tls,
        ConnectRefused | ConnectTimeout | NetworkUnreachable => Phase::Connect,
        DnsNotFound | DnsFailure => Phase::Dns,
        _ => step,
    }
}

/// Joins a certificate file and a key file into one private temporary file.
fn join_pem(cert: &PathBuf, key: &PathBuf) -> Result<tempfile::NamedTempFile, ProbeError> {
    use std::io::Write;
    let fail = |what: String| ProbeError::new(ErrorType::CredentialInvalid, Phase::Tls, what);
    let mut pem =
        std::fs::read(cert).map_err(|e| fail(format!("cannot read {}: {e}", cert.display())))?;
    pem.push(b'\n');
    pem.extend(
        std::fs::read(key).map_err(|e| fail(format!("cannot read {}: {e}", key.display())))?,
    );
    let mut file = tempfile::NamedTempFile::new()
        .map_err(|e| fail(format!("cannot write a temporary file: {e}")))?;
    file.write_all(&pem)
        .map_err(|e| fail(format!("cannot write a temporary file: {e}")))?;
    Ok(file)
}

/// "replica set rs0: primary m1, 3 members (1 primary, 2 secondary)".
fn success_message(view: &TopologyView) -> String {
    let counts: Vec<String> = view
        .members_by_state()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    match (&view.set_name, &view.primary) {
        (Some(set), Some(p)) => format!(
            "replica set {set}: primary {p}, {} members ({}); ping OK",
            view.members.len(),
            counts.join(", ")
        ),
        (Some(set), None) => format!("replica set {set}: ping OK ({})", counts.join(", ")),
        (None, _) => format!(
            "ping OK ({} server{})",
            view.members.len(),
            if view.members.len() == 1 { "" } else { "s" }
        ),
    }
}

/// "60 s", "4 min".
fn span_text(d: Duration) -> String {
    let s = d.as_secs().max(1);
    if s < 120 {
        format!("{s} s")
    } else {
        format!("{} min", s / 60)
    }
}

/// Short names for members: the host alone when every host is distinct, else
/// `host:port`.
struct Names {
    short: bool,
}

impl Names {
    fn of(view: &TopologyView, unreachable: &[(String, ProbeError)]) -> Names {
        let addresses: std::collections::BTreeSet<&String> = view
            .members
            .keys()
            .chain(unreachable.iter().map(|(a, _)| a))
            .collect();
        let hosts: std::collections::BTreeSet<String> = addresses
            .iter()
            .filter_map(|a| split_host_port(a).map(|(h, _)| h))
            .collect();
        Names {
            short: hosts.len() == addresses.len(),
        }
    }

    fn get(&self, address: &str) -> String {
        match split_host_port(address) {
            Some((h, _)) if self.short => h,
            _ => address.to_owned(),
        }
    }
}

impl std::fmt::Debug for MongoProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoProbe")
            .field("name", &self.meta.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use members::member_address;

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span_text(Duration::from_secs(60)), "60 s");
        assert_eq!(span_text(Duration::from_millis(10)), "1 s");
        assert_eq!(span_text(Duration::from_secs(540)), "9 min");
    }

    #[test]
    fn member_addresses_bracket_ipv6() {
        assert_eq!(member_address("::1", 27017), "[::1]:27017");
        assert_eq!(member_address("m1", 27017), "m1:27017");
    }
}
