//! The replica-set watch: what the driver's monitoring (SDAM) events say about the
//! set between runs.
//!
//! The probe keeps one driver client per target for as long as it lives; the client's
//! monitors check every member all the time, and each event lands here. The watch
//! keeps the latest view of the members (state, round-trip time, the class of the
//! last error) and a history of primary changes with their times, so that a run can
//! say "5 primary changes in 60 s" even though no run saw them happen.
//!
//! A primary change is a new primary identity, read from the primaries' own `hello`
//! replies: another host, or the same host with a new `electionId` (a new term).
//! Replies older than the newest identity seen (a lower `electionId`/`setVersion`,
//! the old primary of a split) are stale and ignored, as the driver does. A primary
//! that turns into a secondary or becomes unreachable is recorded as a step-down; the
//! set has no primary until a new one is seen. This does not use
//! `has_writable_server()`, which stays true after the only primary steps down.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use mongodb::bson::Document;
use mongodb::event::sdam::SdamEvent;
use mongodb::options::ServerAddress;
use mongodb::{ServerInfo, ServerType};
use tokio::sync::watch;

use super::classify::member_error;
use crate::taxonomy::ErrorType;

/// Most primary changes remembered (the count goes on past it).
const HISTORY_LIMIT: usize = 10_000;

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

/// One observed change of primary.
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryChange {
    /// When it was observed (wall clock).
    pub at: SystemTime,
    /// When it was observed (monotonic, for windows).
    pub seen: Instant,
    /// The primary before, if one was known.
    pub from: Option<String>,
    /// The new primary.
    pub to: String,
    /// The new primary's `electionId`, hex.
    pub election_id: Option<String>,
    /// The set's configuration version.
    pub set_version: Option<i64>,
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
    /// Primary changes observed since the watch started.
    pub primary_changes_total: u64,
    /// The most recent primary changes, oldest first.
    pub changes: Vec<PrimaryChange>,
    /// When the primary last stepped down or was lost without a successor yet.
    pub primary_lost_at: Option<SystemTime>,
    /// Whether any monitoring event has arrived.
    pub discovered: bool,
}

impl TopologyView {
    /// The member at `address`.
    pub fn member(&self, address: &str) -> Option<&MemberView> {
        self.members.get(address)
    }

    /// Changes observed within `window` of `now`.
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

/// The identity of a primary: a new one is a primary change.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PrimaryIdentity {
    host: String,
    election_id: Option<[u8; 12]>,
    set_version: Option<i64>,
}

/// The replica-set watch of one probe, fed by its driver client's SDAM events.
#[derive(Debug)]
pub struct ReplicaSetWatch {
    view: Mutex<State>,
    /// Bumped on every event, so that a waiter can re-check its condition.
    version: watch::Sender<u64>,
    window: Duration,
}

#[derive(Debug, Default)]
struct State {
    view: TopologyView,
    /// Changes, oldest first, trimmed to the window and the history limit.
    history: VecDeque<PrimaryChange>,
    last_primary: Option<PrimaryIdentity>,
    /// The newest (electionId, setVersion) seen from any primary.
    newest: Option<(Option<[u8; 12]>, Option<i64>)>,
    /// The last heartbeat failure of each member, cleared by a success.
    heartbeat_failures: BTreeMap<String, MemberError>,
}

impl ReplicaSetWatch {
    /// A watch that keeps primary changes for `window`.
    pub fn new(window: Duration) -> Self {
        ReplicaSetWatch {
            view: Mutex::new(State::default()),
            version: watch::channel(0).0,
            window,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while handling an event; the view it guards
        // is still a valid (if partial) view.
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the watch knows now.
    pub fn snapshot(&self) -> TopologyView {
        let mut s = self.state();
        s.trim(self.window);
        let mut view = s.view.clone();
        view.changes = s.history.iter().cloned().collect();
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

    /// Takes in one SDAM event from the driver.
    pub fn handle(&self, event: SdamEvent) {
        let mut s = self.state();
        s.view.discovered = true;
        match event {
            SdamEvent::ServerHeartbeatSucceeded(e) => {
                let address = e.server_address.to_string();
                s.heartbeat_failures.remove(&address);
                if let Some(primary) = primary_in(&e.reply, &address) {
                    s.observe_primary(primary);
                }
            }
            SdamEvent::ServerHeartbeatFailed(e) => {
                let address = e.server_address.to_string();
                s.heartbeat_failures
                    .insert(address, member_error(&e.failure));
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
            SdamEvent::TopologyDescriptionChanged(e) => {
                let d = &e.new_description;
                s.view.set_name = d.set_name().cloned();
                s.view.topology_type = Some(format!("{:?}", d.topology_type()));
                let mut members = BTreeMap::new();
                for (address, info) in d.servers() {
                    let view = s.member_view(address, &info);
                    members.insert(view.address.clone(), view);
                }
                let primary = members
                    .values()
                    .find(|m| m.state == MemberState::Primary)
                    .map(|m| m.address.clone());
                if primary.is_none() && s.view.primary.is_some() {
                    s.view.primary_lost_at = Some(SystemTime::now());
                }
                if primary.is_some() {
                    s.view.primary_lost_at = None;
                }
                s.view.primary = primary;
                s.view.members = members;
            }
            _ => {}
        }
        s.trim(self.window);
        drop(s);
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl State {
    fn member_view(&self, address: &ServerAddress, info: &ServerInfo<'_>) -> MemberView {
        let address = address.to_string();
        let state = MemberState::of(info.server_type());
        let error = match info.error() {
            Some(e) => Some(member_error(e)),
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

    fn observe_primary(&mut self, new: PrimaryIdentity) {
        let key = (new.election_id, new.set_version);
        if self.newest.is_some_and(|newest| key < newest) {
            return; // a stale primary: an older term still answering as primary
        }
        self.newest = Some(key);
        match &self.last_primary {
            // The first primary seen: elected before the watch began.
            None => {}
            Some(last) if last.host == new.host && same_term(last, &new) => {}
            Some(last) => {
                let change = PrimaryChange {
                    at: SystemTime::now(),
                    seen: Instant::now(),
                    from: Some(last.host.clone()),
                    to: new.host.clone(),
                    election_id: new.election_id.map(hex),
                    set_version: new.set_version,
                };
                self.view.primary_changes_total += 1;
                self.history.push_back(change);
            }
        }
        self.view.primary = Some(new.host.clone());
        self.view.primary_lost_at = None;
        self.last_primary = Some(new);
    }

    fn trim(&mut self, window: Duration) {
        let now = Instant::now();
        while self.history.len() > HISTORY_LIMIT
            || self
                .history
                .front()
                .is_some_and(|c| now.saturating_duration_since(c.seen) > window)
        {
            self.history.pop_front();
        }
    }
}

/// Whether two identities of the same host are the same term: the same
/// `electionId`, or (for servers that send none) the same `setVersion`.
fn same_term(a: &PrimaryIdentity, b: &PrimaryIdentity) -> bool {
    match (a.election_id, b.election_id) {
        (Some(x), Some(y)) => x == y,
        _ => a.set_version == b.set_version,
    }
}

/// The primary identity in a `hello` reply from `address`, if it says it is the
/// writable primary.
fn primary_in(reply: &Document, address: &str) -> Option<PrimaryIdentity> {
    let writable = reply
        .get_bool("isWritablePrimary")
        .or_else(|_| reply.get_bool("ismaster"))
        .unwrap_or(false);
    if !writable || reply.get_str("setName").is_err() {
        return None;
    }
    let election_id = reply.get_object_id("electionId").ok().map(|o| o.bytes());
    let set_version = match reply.get("setVersion") {
        Some(mongodb::bson::Bson::Int32(v)) => Some(i64::from(*v)),
        Some(mongodb::bson::Bson::Int64(v)) => Some(*v),
        _ => None,
    };
    Some(PrimaryIdentity {
        host: address.to_owned(),
        election_id,
        set_version,
    })
}

fn hex(bytes: [u8; 12]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
