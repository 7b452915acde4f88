//! `depprobe check`: every probe once, a table or JSON, an exit code for CI.

use std::sync::Arc;

use depprobe_probes::{Outcome, Probe, Status};
use futures::StreamExt;

/// Exit code when every probe is up (or degraded with `--allow-degraded`).
pub const EXIT_UP: u8 = 0;
/// Exit code when a probe is degraded.
pub const EXIT_DEGRADED: u8 = 1;
/// Exit code when a probe is down.
pub const EXIT_DOWN: u8 = 2;
/// Exit code when the configuration is invalid.
pub const EXIT_CONFIG: u8 = 3;
/// Exit code of a command line that cannot be used (an unknown subcommand or flag,
/// a bad value): `EX_USAGE` of `sysexits.h`, distinct from every verdict above, so a
/// CI job that pages on 2 ("a dependency is down") never pages on a typo.
pub const EXIT_USAGE: u8 = 64;

/// Runs every probe once, at most `concurrency` at a time, and returns the
/// outcomes in configuration order. Runs are supervised: a probe that panics has an
/// `internal_error` outcome, and the others still run.
pub async fn run_all(probes: &[Arc<dyn Probe>], concurrency: usize) -> Vec<Outcome> {
    futures::stream::iter(probes.iter().cloned())
        .map(|p| async move { crate::supervise::run(&*p).await.outcome })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// The exit code for these outcomes.
pub fn exit_code(outcomes: &[Outcome], allow_degraded: bool) -> u8 {
    let worst = outcomes
        .iter()
        .map(|o| o.status)
        .max()
        .unwrap_or(Status::Up);
    match worst {
        Status::Up => EXIT_UP,
        Status::Degraded if allow_degraded => EXIT_UP,
        Status::Degraded => EXIT_DEGRADED,
        Status::Down => EXIT_DOWN,
    }
}

/// The outcomes as the `check --json` array.
pub fn to_json(outcomes: &[Outcome]) -> String {
    serde_json::to_string_pretty(outcomes)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize: {e}\"}}"))
}

/// A one-line summary: "9 probes: 2 up, 1 degraded, 6 down".
pub fn summary(outcomes: &[Outcome]) -> String {
    let count = |s| outcomes.iter().filter(|o| o.status == s).count();
    format!(
        "{} probes: {} up, {} degraded, {} down",
        outcomes.len(),
        count(Status::Up),
        count(Status::Degraded),
        count(Status::Down)
    )
}
