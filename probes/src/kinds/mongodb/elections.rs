//! Counting elections from the `hello` replies the watch receives.
//!
//! The count is by term ([`super::terms`]): the highest term any reply stated is
//! kept, and each time a higher one arrives, the difference is the number of
//! elections since the set was last seen, whoever won them; the winner is named when
//! the primary of the new term answers (at once, from its own reply, or later). A
//! lower term is a member that has not caught up, or the old primary of a split, and
//! counts nothing. Until a term is seen, and for servers that state none, a new
//! primary identity (another host, or the same host with a new `electionId` or
//! `setVersion`) is one observed change: elections between two looks are missed.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use mongodb::bson::Document;

use super::terms::{PrimaryIdentity, hex, primary_in, term_in};
use super::watch::PrimaryChange;

/// Most election records remembered (the count goes on past it).
const HISTORY_LIMIT: usize = 10_000;

/// The highest term seen, and when it was last stated.
#[derive(Clone, Copy, Debug)]
struct TermSeen {
    term: u64,
    at: Instant,
}

/// The elections of one replica set, as counted so far.
#[derive(Debug, Default)]
pub(super) struct Elections {
    /// Elections, oldest first, trimmed to the window and the history limit.
    history: VecDeque<PrimaryChange>,
    /// Elections counted since the start.
    total: u64,
    last_primary: Option<PrimaryIdentity>,
    /// When the last primary was last seen.
    last_primary_at: Option<Instant>,
    /// The newest (electionId, setVersion) seen from any primary.
    newest: Option<(Option<[u8; 12]>, Option<i64>)>,
    /// The highest term any reply stated.
    term: Option<TermSeen>,
    /// The primary of that term, once known.
    term_primary: Option<String>,
}

impl Elections {
    /// Takes in a `hello` reply from `address`; the primary it names, when it is
    /// the (not stale) primary itself.
    pub fn observe(&mut self, address: &str, reply: &Document) -> Option<String> {
        let primary = primary_in(reply, address);
        if let Some(term) = term_in(reply, primary.as_ref()) {
            // A member that has written in the term knows its primary.
            let named = match &primary {
                Some(p) => (p.term() == Some(term)).then_some(p.host.as_str()),
                None => reply.get_str("primary").ok(),
            };
            self.observe_term(term, named, primary.as_ref());
        }
        let p = primary?;
        self.observe_primary(p)
    }

    /// Elections counted since the start.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The highest term seen.
    pub fn term(&self) -> Option<u64> {
        self.term.map(|t| t.term)
    }

    /// The records kept, oldest first.
    pub fn changes(&self) -> Vec<PrimaryChange> {
        self.history.iter().cloned().collect()
    }

    /// Forgets records older than `window` (and past the history limit).
    pub fn trim(&mut self, window: Duration) {
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

    /// A term stated by a member; `winner` is the primary of that term when the
    /// reply names it (`primary` is the reply's own identity, when it is one).
    fn observe_term(&mut self, term: u64, winner: Option<&str>, primary: Option<&PrimaryIdentity>) {
        let now = Instant::now();
        let Some(seen) = self.term else {
            // The first term seen: elected before the watch began.
            self.term = Some(TermSeen { term, at: now });
            self.term_primary = winner.map(str::to_owned);
            return;
        };
        if term < seen.term {
            return; // a member that has not caught up, or a stale primary
        }
        if term > seen.term {
            let elections = term - seen.term;
            self.total = self.total.saturating_add(elections);
            let from = self
                .term_primary
                .take()
                .or_else(|| self.last_primary.as_ref().map(|p| p.host.clone()));
            self.history.push_back(PrimaryChange {
                at: SystemTime::now(),
                seen: now,
                since: seen.at,
                from,
                to: None,
                elections,
                previous_term: Some(seen.term),
                term: Some(term),
                election_id: None,
                set_version: None,
            });
        }
        self.term = Some(TermSeen { term, at: now });
        if self.term_primary.is_none() {
            self.term_primary = winner.map(str::to_owned);
        }
        // Name the winner in the elections that opened the term, once known, and
        // its `electionId` once the winner itself answers.
        if let Some(c) = self.history.back_mut()
            && c.term == Some(term)
        {
            if c.to.is_none() {
                c.to = winner.map(str::to_owned);
            }
            if let Some(p) = primary.filter(|p| p.term() == Some(term))
                && c.election_id.is_none()
            {
                c.election_id = p.election_id.map(hex);
                c.set_version = p.set_version;
            }
        }
    }

    /// A primary's own reply; its host unless it is stale.
    fn observe_primary(&mut self, new: PrimaryIdentity) -> Option<String> {
        let now = Instant::now();
        if let (Some(seen), Some(term)) = (self.term, new.term())
            && term < seen.term
        {
            return None; // a stale primary: an older term still answering as primary
        }
        let key = (new.election_id, new.set_version);
        if self.newest.is_some_and(|newest| key < newest) {
            return None; // a stale primary: an older identity still answering
        }
        self.newest = Some(key);
        // Without terms, a new identity is one observed change.
        if self.term.is_none()
            && let Some(last) = &self.last_primary
            && !(last.host == new.host && last.same_term(&new))
        {
            self.total = self.total.saturating_add(1);
            self.history.push_back(PrimaryChange {
                at: SystemTime::now(),
                seen: now,
                since: self.last_primary_at.unwrap_or(now),
                from: Some(last.host.clone()),
                to: Some(new.host.clone()),
                elections: 1,
                previous_term: None,
                term: None,
                election_id: new.election_id.map(hex),
                set_version: new.set_version,
            });
        }
        let host = new.host.clone();
        self.last_primary = Some(new);
        self.last_primary_at = Some(now);
        Some(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;
    use mongodb::bson::oid::ObjectId;

    fn primary(term: u64) -> Document {
        let mut id = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        id[4..].copy_from_slice(&term.to_be_bytes());
        doc! {
            "isWritablePrimary": true, "setName": "rs0", "setVersion": 1,
            "electionId": ObjectId::from_bytes(id),
            "lastWrite": { "opTime": { "t": i64::try_from(term).unwrap() } },
        }
    }

    fn secondary(term: i64) -> Document {
        doc! { "isWritablePrimary": false, "setName": "rs0", "lastWrite": { "opTime": { "t": term } } }
    }

    #[test]
    fn a_secondary_that_wrote_in_the_new_term_names_its_winner() {
        let mut e = Elections::default();
        e.observe("m1", &primary(1));
        let mut s = secondary(3);
        s.insert("primary", "m3");
        e.observe("m2", &s);
        let c = &e.changes()[0];
        assert_eq!(
            (c.from.as_deref(), c.to.as_deref()),
            (Some("m1"), Some("m3"))
        );
        assert_eq!(c.elections, 2);
    }

    #[test]
    fn a_term_jump_read_from_a_secondary_counts_every_election_and_names_the_winner_later() {
        let mut e = Elections::default();
        assert_eq!(e.observe("m1", &primary(4)).as_deref(), Some("m1"));
        assert_eq!(e.total(), 0, "the first term is the baseline");
        e.observe("m2", &secondary(4));
        e.observe("m3", &secondary(9));
        assert_eq!(e.total(), 5);
        let c = &e.changes()[0];
        assert_eq!((c.from.as_deref(), c.to.as_deref()), (Some("m1"), None));
        assert_eq!(
            (c.previous_term, c.term, c.elections),
            (Some(4), Some(9), 5)
        );
        // A member that has not caught up counts nothing.
        e.observe("m2", &secondary(6));
        assert_eq!(e.total(), 5);
        // The winner answers.
        e.observe("m1", &primary(9));
        assert_eq!(e.total(), 5);
        let c = &e.changes()[0];
        assert_eq!(c.to.as_deref(), Some("m1"), "re-elected");
        assert_eq!(c.election_id.as_deref(), Some("7fffffff0000000000000009"));
    }

    #[test]
    fn a_stale_primary_of_an_older_term_is_ignored() {
        let mut e = Elections::default();
        e.observe("m1", &primary(2));
        e.observe("m2", &primary(3));
        assert_eq!(e.observe("m1", &primary(2)), None);
        assert_eq!(e.total(), 1);
    }

    #[test]
    fn without_terms_observed_changes_are_counted() {
        let mut e = Elections::default();
        let no_term =
            |v: i32| doc! { "isWritablePrimary": true, "setName": "rs0", "setVersion": v };
        e.observe("m1", &no_term(1));
        e.observe("m2", &no_term(1));
        e.observe("m2", &no_term(1));
        e.observe("m1", &no_term(1));
        assert_eq!(e.term(), None);
        assert_eq!(e.total(), 2);
        assert!(
            e.changes()
                .iter()
                .all(|c| c.term.is_none() && c.elections == 1)
        );
    }
}
