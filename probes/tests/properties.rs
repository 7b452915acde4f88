//! Properties of a run's outcome that hold for every secret and every message,
//! where a fuzzer would be overkill: whatever a target echoes back and wherever the
//! echo falls (across the cut of a long message included), no run of eight
//! characters of a secret reaches the outcome as `/status` and `check --json` show it.

use std::time::Duration;

use depprobe_config::{Kind, Secret};
use depprobe_probes::outcome::{Finding, FindingType, Severity, Target};
use depprobe_probes::run::{ProbeError, ProbeMeta, Run};
use depprobe_probes::taxonomy::{ErrorType, Phase};
use proptest::prelude::*;

/// The longest run of a secret that may appear anywhere.
const RUN: usize = 8;

/// The first `RUN`-character run of `secret` found in `text` (secrets here are
/// ASCII).
fn leaked_run<'a>(text: &str, secret: &'a str) -> Option<&'a str> {
    (0..secret.len().saturating_sub(RUN - 1))
        .map(|k| &secret[k..k + RUN])
        .find(|run| text.contains(run))
}

fn meta(secrets: Vec<Secret>) -> ProbeMeta {
    ProbeMeta {
        name: "echo".into(),
        kind: Kind::Http,
        target: Target {
            address: "127.0.0.1".into(),
            port: 8080,
        },
        timeout: Duration::from_secs(10),
        budgets: Vec::new(),
        secrets,
    }
}

/// Text the way a target echoes a secret: `before` characters, the secret, more.
fn echo(before: usize, secret: &str) -> String {
    format!("{}{secret} and more text after it", "x".repeat(before))
}

/// Secrets as tokens and passwords are written: no character JSON would escape.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9/+=_.~:@-]{8,48}"
}

/// Where the echo starts: anywhere, and often across the 1000-character cut.
fn offset() -> impl Strategy<Value = usize> {
    prop_oneof![940usize..1000, 0usize..1200]
}

proptest! {
    // No regression files in the tree: a failure prints its minimal input.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_configured_secret_never_reaches_the_outcome(s in secret(), at in offset()) {
        let meta = meta(vec![Secret::new(s.clone())]);
        let run = Run::start(&meta);
        let error = ProbeError::new(ErrorType::HttpStatus, Phase::Request, echo(at, &s));
        let shown = serde_json::to_string(&run.finish(Err(error))).expect("an outcome serializes");
        prop_assert_eq!(leaked_run(&shown, &s), None, "in {}", shown);
    }

    #[test]
    fn a_secret_read_during_the_run_never_reaches_the_outcome(s in secret(), at in offset()) {
        let meta = meta(Vec::new());
        let mut run = Run::start(&meta);
        run.secret(&Secret::new(s.clone()));
        run.findings.push(Finding::new(FindingType::Slow, Severity::Warning, echo(at, &s)));
        let shown = serde_json::to_string(&run.finish(Ok(echo(at, &s)))).expect("an outcome serializes");
        prop_assert_eq!(leaked_run(&shown, &s), None, "in {}", shown);
    }
}

#[test]
fn leaked_run_finds_eight_characters_and_no_fewer() {
    assert_eq!(
        leaked_run("x tok3n-s3cret y", "tok3n-s3cret"),
        Some("tok3n-s3")
    );
    assert_eq!(leaked_run("x tok3n-s y", "tok3n-s3cret"), None);
}
