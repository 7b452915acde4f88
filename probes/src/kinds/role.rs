//! What the database kinds that watch replication (`mysql`, `redis`) share: a
//! replica whose link to its source is down is a `replication_link_down` finding
//! that names the source. (The role itself is remembered between runs by the run's
//! memory: a change is `role_changed`.)

use crate::outcome::{Finding, FindingType, Severity};

/// A replica's link to its source is down (MySQL replication threads stopped,
/// Redis `master_link_status:down`).
pub const REPLICATION_LINK_DOWN: FindingType = FindingType::new("replication_link_down");

/// A replica whose replication link is down: it serves stale data.
pub fn link_down(source: &str, state: &str) -> Finding {
    Finding::new(
        REPLICATION_LINK_DOWN,
        Severity::Critical,
        format!(
            "the server is a replica of {source} and its replication link is down ({state}): it serves data that is no longer updated"
        ),
    )
    .with("source", source.to_owned())
    .with("link", state.to_owned())
}
