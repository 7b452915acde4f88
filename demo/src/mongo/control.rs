//! What a test does to the running set: elections (one, or several between two
//! looks of any client), step-downs, silent members, cut connections, replication
//! lag, refused logins, new certificates. Every change wakes the held `hello`s.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ReplicaSet, ReplicaSetBuilder, certified};
use crate::certs::Identity;
use crate::servers::ServerError;

impl ReplicaSet {
    /// A builder: three members, set `rs0`, plain TCP, no users (a client without
    /// credentials is served; any login fails with code 18, as for an unknown user).
    pub fn builder() -> ReplicaSetBuilder {
        ReplicaSetBuilder {
            members: 3,
            set_name: "rs0".into(),
            identities: None,
            client_ca: None,
            users: Vec::new(),
            streaming: true,
            terms: true,
        }
    }

    /// `localhost:<port>` of each member, in order.
    pub fn hosts(&self) -> Vec<String> {
        self.state.lock().hosts.clone()
    }

    /// `localhost:<port>` of member `i`.
    pub fn host(&self, i: usize) -> String {
        self.hosts().get(i).cloned().unwrap_or_default()
    }

    /// The seed list for a URL: `localhost:p1,localhost:p2,...`.
    pub fn seed_list(&self) -> String {
        self.hosts().join(",")
    }

    /// The socket address of member `i`.
    pub fn addr(&self, i: usize) -> Option<SocketAddr> {
        self.addrs.get(i).copied()
    }

    /// The set's name.
    pub fn set_name(&self) -> String {
        self.state.lock().set_name.clone()
    }

    /// Member `i` wins an election: a new term (a new `electionId`), even when it
    /// was the primary already.
    pub fn elect(&self, i: usize) {
        self.state.change(|s| {
            s.term += 1;
            s.primary = Some(i);
        });
    }

    /// The members win elections one after the other, `winners` in order, all in
    /// one change of the set: no client can look between them (a streaming `hello`
    /// wakes once, with the last winner). One term per election.
    pub fn elect_in_turn(&self, winners: &[usize]) {
        self.state.change(|s| {
            for w in winners {
                s.term += 1;
                s.primary = Some(*w);
            }
        });
    }

    /// The members win elections one after the other, `winners` in order, when the
    /// next `ping` arrives (a client's first command after it has seen the set): a
    /// storm that a watching client is sure to witness.
    pub fn elect_on_next_ping(&self, winners: &[usize]) {
        self.state.lock().elect_on_ping = winners.to_vec();
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.state.lock().term
    }

    /// The network flaps: every open connection to every member is closed now, and
    /// every new one is closed as soon as it is accepted, until
    /// [`ReplicaSet::restore_connections`]. Elections held meanwhile are seen by
    /// nobody.
    pub fn cut_connections(&self) {
        self.state.change(|s| s.cut = true);
    }

    /// Connections are served again.
    pub fn restore_connections(&self) {
        self.state.change(|s| s.cut = false);
    }

    /// Member `i`'s last write is `lag` behind the primary's (its
    /// `lastWrite.lastWriteDate`); no effect while it is the primary.
    pub fn set_lag(&self, i: usize, lag: Duration) {
        self.state.change(|s| {
            if let Some(l) = s.lags.get_mut(i) {
                *l = lag;
            }
        });
    }

    /// The primary steps down and no member is elected: the set has no primary.
    pub fn step_down(&self) {
        self.state.change(|s| s.primary = None);
    }

    /// The current primary.
    pub fn primary(&self) -> Option<usize> {
        self.state.lock().primary
    }

    /// Member `i` stops answering: it still accepts TCP connections, but completes
    /// no TLS handshake and answers no command (held ones included) until
    /// [`ReplicaSet::resume`].
    pub fn stop_answering(&self, i: usize) {
        self.state.change(|s| {
            if let Some(a) = s.answering.get_mut(i) {
                *a = false;
            }
        });
    }

    /// Member `i` answers again.
    pub fn resume(&self, i: usize) {
        self.state.change(|s| {
            if let Some(a) = s.answering.get_mut(i) {
                *a = true;
            }
        });
    }

    /// Every login fails with code 18 (AuthenticationFailed) while `refuse` is true.
    pub fn refuse_logins(&self, refuse: bool) {
        self.state.change(|s| s.refuse_auth = refuse);
    }

    /// Member `i` presents `identity` from its next handshake on.
    pub fn set_identity(&self, i: usize, identity: &Identity) -> Result<(), ServerError> {
        let ck = certified(identity)?;
        self.state.change(|s| {
            if let Some(slot) = s.identities.get_mut(i) {
                *slot = Some(ck);
            }
        });
        Ok(())
    }
}
