//! The replica-set watch: what the driver's monitoring (SDAM) events say about the
//! set between runs.
//!
//! The probe keeps one driver client per target for as long as it lives; the client's
//! monitors check every member all the time, and each event lands here (as does the
//! `hello` each run sends the primary). The watch keeps the latest view of the
//! members (state, round-trip time, the class of the last error, the wall time of
//! their last write) and a history of elections with their times, so that a run can
//! say "7 elections in 30 s" even though no run saw them happen.
//!
//! Elections are counted by term ([`super::terms`]): the highest term any reply
//! stated, and the difference each time a higher one is seen, so that elections
//! between two heartbeats, or while the monitors' connections were cut, are counted
//! all the same. Only when no member states a term does the watch fall back to the
//! primaries it sees: a new primary identity (another host, or the same host with a
//! new `electionId` or `setVersion`) is one change, and elections between two looks
//! are missed. Replies older than the newest term or identity seen (the old primary
//! of a split) are stale and ignored, as the driver does. A primary that turns into
//! a secondary or becomes unreachable is recorded as a step-down; the set has no
//! primary until a new one is seen. This does not use `has_writable_server()`, which
//! stays true after the only primary steps down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use mongodb::bson::Document;
use mongodb::event::sdam::SdamEvent;
use mongodb::options::ServerAddress;
use mongodb::{ServerInfo, ServerType};
use tokio::sync::watch;

use super::classify::member_error;
use super::elections::Elections;
use super::terms::last_write_in;
use crate::taxonomy::ErrorType;

/// The state of a member as the driver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    /// The writable primary.
    Primary,
    /// A secondary.
    Secondary,
    /// An arbiter.
    Arbiter,
    /// Hidden, starting up, recovering, or not (yet) in the set's configuration.
    Other,
    /// A standalone server (not a replica-set member).
    Standalone,
    /// A mongos router of a sharded cluster (or a load balancer in front of one).
    Mongos,
    /// Not reachable, or not checked yet.
    Unknown,
}

impl MemberState {
    /// Every state, in the order of `members_by_state`.
    pub const ALL: &'static [MemberState] = &[
        MemberState::Primary,
        MemberState::Secondary,
        MemberState::Arbiter,
        MemberState::Other,
        MemberState::Standalone,
        MemberState::Mongos,
        MemberState::Unknown,
    ];

    /// The stable string (the `state` of `probe.mongodb.members`).
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberState::Primary => "primary",
            MemberState::Secondary => "secondary",
            MemberState::Arbiter => "arbiter",
            MemberState::Other => "other",
            MemberState::Standalone => "standalone",
            MemberState::Mongos => "mongos",
            MemberState::Unknown => "unknown",
        }
    }

    fn of(t: ServerType) -> MemberState {
        match t {
            ServerType::RsPrimary => MemberState::Primary,
            ServerType::RsSecondary => MemberState::Secondary,
            ServerType::RsArbiter => MemberState::Arbiter,
            ServerType::RsOther | ServerType::RsGhost => MemberState::Other,
            ServerType::Standalone => MemberState::Standalone,
            ServerType::Mongos | ServerType::LoadBalancer => MemberState::Mongos,
            _ => MemberState::Unknown,
        }
    }
}

/// Why a member cannot be used.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberError {
    /// The failure class.
    pub class: ErrorType,
    /// What happened.
    pub message: String,
}

/// One member as the driver sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    /// `host:port`.
    pub address: String,
    /// Its state.
    pub state: MemberState,
    /// The driver's average round-trip time of `hello`.
    pub rtt: Option<Duration>,
    /// The last error, while the member is unusable.
    pub error: Option<MemberError>,
}

/// Elections seen at one observation: one primary change, or several at once when
/// the term moved by more than one.
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryChange {
    /// When it was observed (wall clock).
    pub at: SystemTime,
    /// When it was observed (monotonic, for windows).
    pub seen: Instant,
    /// When the set was last seen before them (monotonic): the elections happened
    /// between this and `seen`.
    pub since: Instant,
    /// The primary before, if one was known.
    pub from: Option<String>,
    /// The new primary, once known (a term can be read from a secondary before the
    /// winner answers).
    pub to: Option<String>,
    /// How many elections: the difference of the terms, or 1 for an observed change
    /// without terms.
    pub elections: u64,
    /// The term before, when counted by term.
    pub previous_term: Option<u64>,
    /// The term after, when counted by term.
    pub term: Option<u64>,
    /// The new primary's `electionId`, hex.
    pub election_id: Option<String>,
    /// The set's configuration version.
    pub set_version: Option<i64>,
}

/// The last write of a member, and when the watch learnt it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemberWrite {
    /// `lastWrite.lastWriteDate` (the writing primary's clock).
    pub last_write: SystemTime,
    /// When the reply was received (this host's clock).
    pub observed: SystemTime,
}

/// What the watch knows now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopologyView {
    /// The replica set's name.
    pub set_name: Option<String>,
    /// The driver's topology type (`ReplicaSetWithPrimary`, ...).
    pub topology_type: Option<String>,
    /// Every member the driver monitors, by address.
    pub members: BTreeMap<String, MemberView>,
    /// The current primary, if there is one.
    pub primary: Option<String>,
    /// Elections counted since the watch started (by term; observed primary
    /// changes where no term is available).
    pub primary_changes_total: u64,
    /// The most recent elections, oldest first.
    pub changes: Vec<PrimaryChange>,
    /// When the primary last stepped down or was lost without a successor yet.
    pub primary_lost_at: Option<SystemTime>,
    /// Whether any monitoring event has arrived.
    pub discovered: bool,
    /// The highest term any member stated; `None` while no member states one (the
    /// elections are then the primary changes observed).
    pub term: Option<u64>,
    /// Each member's last write, as of its last `hello`.
    pub writes: BTreeMap<String, MemberWrite>,
}

impl TopologyView {
    /// The member at `address`.
    pub fn member(&self, address: &str) -> Option<&MemberView> {
        self.members.get(address)
    }

    /// Elections observed within `window` of `now`.
    pub fn changes_within(&self, window: Duration, now: Instant) -> Vec<&PrimaryChange> {
        self.changes
            .iter()
            .filter(|c| now.saturating_duration_since(c.seen) <= window)
            .collect()
    }

    /// How many members are in each state (every state listed, zeros included).
    pub fn members_by_state(&self) -> Vec<(MemberState, usize)> {
        MemberState::ALL
            .iter()
            .map(|s| (*s, self.members.values().filter(|m| m.state == *s).count()))
            .collect()
    }
}

/// The replica-set watch of one probe, fed by its driver client's SDAM events.
#[derive(Debug)]
pub struct ReplicaSetWatch {
    view: Mutex<State>,
    /// Bumped on every event, so that a waiter can re-check its condition.
    version: watch::Sender<u64>,
    window: Duration,
    /// Why the relay could not reach each member, as it last tried.
    relayed: RelayedFailures,
}

/// Why the probe's relay last failed to reach each member (lower-case
/// `host:port`), cleared when it reaches it: the driver only sees the relay refuse
/// the connection, so this is where a member's TLS or connect class comes from.
pub type RelayedFailures = Arc<Mutex<BTreeMap<String, MemberError>>>;

#[derive(Debug, Default)]
struct State {
    view: TopologyView,
    elections: Elections,
    /// The last heartbeat failure of each member, cleared by a success.
    heartbeat_failures: BTreeMap<String, MemberError>,
}

impl ReplicaSetWatch {
    /// A watch that keeps elections for `window`.
    pub fn new(window: Duration) -> Self {
        ReplicaSetWatch {
            view: Mutex::new(State::default()),
            version: watch::channel(0).0,
            window,
            relayed: RelayedFailures::default(),
        }
    }

    /// Where the relay records why it could not reach a member.
    pub fn relayed(&self) -> RelayedFailures {
        self.relayed.clone()
    }

    /// Why `address` is unusable: the relay's failure when it had one (the driver's
    /// error then only says the relay refused), else the driver's error.
    fn member_error(&self, address: &str, e: &mongodb::error::Error) -> MemberError {
        let relayed = self
            .relayed
            .lock()
            .ok()
            .and_then(|r| r.get(&address.to_ascii_lowercase()).cloned());
        relayed.unwrap_or_else(|| member_error(e))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while handling an event; the view it guards
        // is still a valid (if partial) view.
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the watch knows now.
    pub fn snapshot(&self) -> TopologyView {
        let mut s = self.state();
        s.elections.trim(self.window);
        let mut view = s.view.clone();
        view.changes = s.elections.changes();
        view.term = s.elections.term();
        view.primary_changes_total = s.elections.total();
        view
    }

    /// Waits until `condition` holds for the view (checked after every event).
    pub async fn wait_until(&self, condition: impl Fn(&TopologyView) -> bool) {
        let mut rx = self.version.subscribe();
        loop {
            if condition(&self.snapshot()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Takes in a `hello` reply from `address` that the probe asked for itself
    /// (ignored unless `address` is a member the driver monitors).
    pub fn observe_reply(&self, address: &str, reply: &Document) {
        self.update(|s| {
            if s.view.members.contains_key(address) {
                s.observe(address, reply);
            }
        });
    }

    /// Takes in one SDAM event from the driver.
    pub fn handle(&self, event: SdamEvent) {
        self.update(|s| {
            s.view.discovered = true;
            match event {
                SdamEvent::ServerHeartbeatSucceeded(e) => {
                    let address = e.server_address.to_string();
                    s.heartbeat_failures.remove(&address);
                    s.observe(&address, &e.reply);
                }
                SdamEvent::ServerHeartbeatFailed(e) => {
                    let address = e.server_address.to_string();
                    let error = self.member_error(&address, &e.failure);
                    s.heartbeat_failures.insert(address, error);
                }
                SdamEvent::ServerDescriptionChanged(e) => {
                    let address = e.address.to_string();
                    if e.previous_description.server_type() == ServerType::RsPrimary
                        && e.new_description.server_type() != ServerType::RsPrimary
                        && s.view.primary.as_deref() == Some(address.as_str())
                    {
                        s.view.primary = None;
                        s.view.primary_lost_at = Some(SystemTime::now());
                    }
                }
                SdamEvent::TopologyDescriptionChanged(e) => s.topology(self, &e.new_description),
                _ => {}
            }
        });
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state();
        f(&mut s);
        s.elections.trim(self.window);
        drop(s);
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl State {
    fn topology(
        &mut self,
        watch: &ReplicaSetWatch,
        d: &mongodb::event::sdam::TopologyDescription,
    ) {
        self.view.set_name = d.set_name().cloned();
        self.view.topology_type = Some(format!("{:?}", d.topology_type()));
        let mut members = BTreeMap::new();
        for (address, info) in d.servers() {
            let view = self.member_view(watch, address, &info);
            members.insert(view.address.clone(), view);
        }
        let primary = members
            .values()
            .find(|m| m.state == MemberState::Primary)
            .map(|m| m.address.clone());
        if primary.is_none() && self.view.primary.is_some() {
            self.view.primary_lost_at = Some(SystemTime::now());
        }
        if primary.is_some() {
            self.view.primary_lost_at = None;
        }
        self.view.primary = primary;
        self.view.writes.retain(|a, _| members.contains_key(a));
        self.view.members = members;
    }

    fn member_view(
        &self,
        watch: &ReplicaSetWatch,
        address: &ServerAddress,
        info: &ServerInfo<'_>,
    ) -> MemberView {
        let address = address.to_string();
        let state = MemberState::of(info.server_type());
        let error = match info.error() {
            Some(e) => Some(watch.member_error(&address, e)),
            None if state == MemberState::Unknown => self.heartbeat_failures.get(&address).cloned(),
            None => None,
        };
        MemberView {
            address,
            state,
            rtt: info.average_round_trip_time(),
            error,
        }
    }

    /// One `hello` reply from `address`: its last write, its term, and whether it
    /// is the primary.
    fn observe(&mut self, address: &str, reply: &Document) {
        if let Some(last_write) = last_write_in(reply) {
            let observed = SystemTime::now();
            self.view.writes.insert(
                address.to_owned(),
                MemberWrite {
                    last_write,
                    observed,
                },
            );
        }
        if let Some(primary) = self.elections.observe(address, reply) {
            self.view.primary = Some(primary);
            self.view.primary_lost_at = None;
        }
    }
}
