//! What a `hello` reply says about elections and replication: the replica-set term,
//! the primary's identity, and the member's last write.
//!
//! Under protocol version 1 (every MongoDB since 3.2 by default) each election opens
//! a new term, and the term is in every member's `hello`: in the primary's
//! `electionId` (an `ObjectId` made of `7fffffff` and the term as a big-endian
//! 64-bit number) and in every member's `lastWrite.opTime.t` (the term of its last
//! write; a new primary writes at once in its term, and secondaries replicate it).
//! The number of elections between two observations is the difference of their
//! terms, whether or not anyone saw the primaries in between. Servers that expose no
//! term (protocol version 0, some MongoDB-compatible services) leave only the
//! primaries actually seen, which is what the watch falls back to.

use std::time::SystemTime;

use mongodb::bson::{Bson, Document};

/// The first four bytes of an `electionId` that carries a term.
const TERM_PREFIX: [u8; 4] = [0x7f, 0xff, 0xff, 0xff];

/// The identity of a primary, as its own `hello` states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PrimaryIdentity {
    /// `host:port`, as the driver names the member.
    pub host: String,
    /// `electionId`, raw.
    pub election_id: Option<[u8; 12]>,
    /// `setVersion`.
    pub set_version: Option<i64>,
}

impl PrimaryIdentity {
    /// The term, when the `electionId` carries one.
    pub fn term(&self) -> Option<u64> {
        self.election_id.and_then(term_of_election_id)
    }

    /// Whether two identities of the same host are the same term: the same
    /// `electionId`, or (for servers that send none) the same `setVersion`.
    pub fn same_term(&self, other: &PrimaryIdentity) -> bool {
        match (self.election_id, other.election_id) {
            (Some(x), Some(y)) => x == y,
            _ => self.set_version == other.set_version,
        }
    }
}

/// The term an `electionId` carries: `7fffffff` then the term, big-endian.
pub(super) fn term_of_election_id(id: [u8; 12]) -> Option<u64> {
    if id[..4] != TERM_PREFIX {
        return None;
    }
    let mut term = [0u8; 8];
    term.copy_from_slice(&id[4..]);
    Some(u64::from_be_bytes(term))
}

/// The primary identity in a `hello` reply from `address`, if it says it is the
/// writable primary of a replica set.
pub(super) fn primary_in(reply: &Document, address: &str) -> Option<PrimaryIdentity> {
    let writable = reply
        .get_bool("isWritablePrimary")
        .or_else(|_| reply.get_bool("ismaster"))
        .unwrap_or(false);
    if !writable || reply.get_str("setName").is_err() {
        return None;
    }
    Some(PrimaryIdentity {
        host: address.to_owned(),
        election_id: reply.get_object_id("electionId").ok().map(|o| o.bytes()),
        set_version: reply.get("setVersion").and_then(integer),
    })
}

/// The term a reply states: the primary's `electionId`, else the member's
/// `lastWrite.opTime.t` (negative under protocol version 0: no term).
pub(super) fn term_in(reply: &Document, primary: Option<&PrimaryIdentity>) -> Option<u64> {
    primary.and_then(PrimaryIdentity::term).or_else(|| {
        let t = reply
            .get_document("lastWrite")
            .ok()?
            .get_document("opTime")
            .ok()?
            .get("t")
            .and_then(integer)?;
        u64::try_from(t).ok()
    })
}

/// `lastWrite.lastWriteDate`: the wall time (the writing primary's clock) of the
/// member's last write.
pub(super) fn last_write_in(reply: &Document) -> Option<SystemTime> {
    let date = reply
        .get_document("lastWrite")
        .ok()?
        .get_datetime("lastWriteDate")
        .ok()?;
    Some(date.to_system_time())
}

fn integer(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        _ => None,
    }
}

/// `bytes` in lower-case hex.
pub(super) fn hex(bytes: [u8; 12]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;
    use mongodb::bson::oid::ObjectId;

    fn election_id(term: u64) -> ObjectId {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&TERM_PREFIX);
        b[4..].copy_from_slice(&term.to_be_bytes());
        ObjectId::from_bytes(b)
    }

    #[test]
    fn election_id_under_protocol_version_1_carries_the_term() {
        assert_eq!(term_of_election_id(election_id(33).bytes()), Some(33));
        let big = (1u64 << 40) + 7;
        assert_eq!(term_of_election_id(election_id(big).bytes()), Some(big));
        // Protocol version 0: an ordinary ObjectId, no term.
        let pv0 = ObjectId::parse_str("5f1a2b3c4d5e6f7081920a1b").unwrap();
        assert_eq!(term_of_election_id(pv0.bytes()), None);
    }

    #[test]
    fn the_primary_states_its_term_and_a_secondary_its_last_writes() {
        let primary = doc! {
            "isWritablePrimary": true, "setName": "rs0", "setVersion": 3,
            "electionId": election_id(9),
            "lastWrite": { "opTime": { "t": 8_i64 } },
        };
        let p = primary_in(&primary, "m1:27017").unwrap();
        assert_eq!(p.set_version, Some(3));
        assert_eq!(term_in(&primary, Some(&p)), Some(9), "electionId first");
        let secondary = doc! {
            "isWritablePrimary": false, "setName": "rs0",
            "lastWrite": { "opTime": { "t": 9_i64 }, "lastWriteDate": mongodb::bson::DateTime::from_millis(5_000) },
        };
        assert!(primary_in(&secondary, "m2:27017").is_none());
        assert_eq!(term_in(&secondary, None), Some(9));
        assert_eq!(
            last_write_in(&secondary),
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5))
        );
        let pv0 = doc! { "lastWrite": { "opTime": { "t": -1_i64 } } };
        assert_eq!(term_in(&pv0, None), None);
        assert_eq!(term_in(&doc! {}, None), None);
    }
}
