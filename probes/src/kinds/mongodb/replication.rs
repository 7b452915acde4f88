//! Replication health from `hello` alone: every member's `hello` carries
//! `lastWrite.lastWriteDate`, the wall time (the writing primary's clock) of its last
//! write. A secondary's lag is how much older its last write was, when its reply
//! arrived, than the primary's was when the primary's reply arrived: both dates are
//! the primary's clock and both arrivals this host's, so neither clock skew nor
//! replies received at different times add to it.

use std::time::Duration;

use super::watch::{MemberState, MemberWrite, TopologyView};
use crate::declared::{Instrument, MetricDecl, Number};
use crate::outcome::{Finding, Severity};
use crate::run::humanize;

/// `probe.mongodb.replication_lag`: each secondary's lag behind the primary, by
/// `probe.mongodb.member.address`.
pub(super) static REPLICATION_LAG_METRIC: MetricDecl = MetricDecl {
    name: "probe.mongodb.replication_lag",
    unit: Some("s"),
    description: "How far each replica-set secondary's last write is behind the primary's.",
    instrument: Instrument::Gauge,
    number: Number::F64,
    until_now: false,
};

impl TopologyView {
    /// How far each secondary's last write is behind the primary's, as of their
    /// last replies. Each write is taken relative to when its reply was received,
    /// so that replies received at different times compare, and clocks compare
    /// only with themselves (both dates are the writing primary's, both receipts
    /// this host's). Empty without a primary.
    pub fn replication_lags(&self) -> Vec<(String, Duration)> {
        let Some(p) = self.primary.as_ref().and_then(|p| self.writes.get(p)) else {
            return Vec::new();
        };
        let age = |w: &MemberWrite| {
            w.observed
                .duration_since(w.last_write)
                .map_or_else(|e| -e.duration().as_secs_f64(), |d| d.as_secs_f64())
        };
        let primary_age = age(p);
        self.members
            .values()
            .filter(|m| m.state == MemberState::Secondary)
            .filter_map(|m| {
                let lag = age(self.writes.get(&m.address)?) - primary_age;
                Some((
                    m.address.clone(),
                    Duration::from_secs_f64(lag.clamp(0.0, 1e12)),
                ))
            })
            .collect()
    }
}

/// `replication_lag`: `member` (shown as `name`) is `lag` behind the primary.
pub(super) fn lag_finding(name: &str, member: &str, lag: Duration, warn: Duration) -> Finding {
    Finding::new(
        super::REPLICATION_LAG,
        Severity::Warning,
        format!(
            "member {name} is {} behind the primary (lag_warn {}): reads from it are stale, and writes waiting for a majority may stall",
            lag_text(lag),
            humanize(warn)
        ),
    )
    .with("member", member)
    .with("lag_s", (lag.as_secs_f64() * 1e3).round() / 1e3)
    .with("lag_warn_s", warn.as_secs_f64())
}

/// A lag in whole seconds, or in milliseconds below one second.
fn lag_text(lag: Duration) -> String {
    if lag.as_secs() == 0 {
        humanize(Duration::from_millis(
            u64::try_from(lag.as_millis()).unwrap_or(0),
        ))
    } else {
        humanize(Duration::from_secs(lag.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use super::super::watch::MemberView;

    fn member(address: &str, state: MemberState) -> (String, MemberView) {
        let view = MemberView {
            address: address.to_owned(),
            state,
            rtt: None,
            error: None,
        };
        (address.to_owned(), view)
    }

    #[test]
    fn lag_compares_each_write_with_when_its_reply_arrived() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        let view = TopologyView {
            primary: Some("m1".into()),
            members: BTreeMap::from([
                member("m1", MemberState::Primary),
                member("m2", MemberState::Secondary),
                member("m3", MemberState::Secondary),
                member("m4", MemberState::Unknown),
            ]),
            writes: BTreeMap::from([
                // The primary's reply arrived 2 s after its last write.
                (
                    "m1".into(),
                    MemberWrite {
                        last_write: t0,
                        observed: t0 + s(2),
                    },
                ),
                // Heard 20 s earlier than the primary, and up to date then.
                (
                    "m2".into(),
                    MemberWrite {
                        last_write: t0 - s(22),
                        observed: t0 - s(20),
                    },
                ),
                // Heard with the primary, 45 s behind.
                (
                    "m3".into(),
                    MemberWrite {
                        last_write: t0 - s(45),
                        observed: t0 + s(2),
                    },
                ),
                (
                    "m4".into(),
                    MemberWrite {
                        last_write: t0 - s(900),
                        observed: t0,
                    },
                ),
            ]),
            ..TopologyView::default()
        };
        let lags = view.replication_lags();
        assert_eq!(lags, vec![("m2".into(), s(0)), ("m3".into(), s(45))]);
        let no_primary = TopologyView {
            primary: None,
            ..view
        };
        assert!(no_primary.replication_lags().is_empty());
    }
}
