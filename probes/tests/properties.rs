//! Properties that hold for every secret, where a fuzzer would be overkill (the fuzz
//! targets in `fuzz/` cover arbitrary bytes): whatever a target echoes back and
//! wherever the echo falls (across the cut of a long message included), no run of
//! eight characters of a secret reaches the outcome as `/status` and `check --json`
//! show it; and a password written in a database URL never shows, whole or in part,
//! in a `validate` error or a `Debug` print, whatever characters it holds (`/`, `?`,
//! `#`, `@` unescaped included).

use std::collections::HashMap;
use std::time::Duration;

use depprobe_config::{Kind, Secret};
use depprobe_probes::outcome::{Finding, FindingType, Severity, Target};
use depprobe_probes::parse_config;
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
        kind: Kind::new("http"),
        target: Target {
            address: "127.0.0.1".into(),
            port: 8080,
        },
        timeout: Duration::from_secs(10),
        budgets: Vec::new(),
        secrets,
        attributes: &[],
        memory: Default::default(),
        propagate_trace: true,
        tracestate: None,
    }
}

/// What a user can see of a configuration whose `${PW}` is `password`: every
/// error of `validate`, or the `Debug` print of what loaded.
fn shown(text: &str, password: &str) -> String {
    let env = HashMap::from([("PW".to_string(), password.to_string())]);
    match parse_config(text, "depprobe.yaml", &env) {
        Ok(config) => format!("{config:?}"),
        Err(errors) => format!("{errors}\n{errors:?}"),
    }
}

/// Passwords as people write them into URLs by mistake: unescaped URL syntax
/// somewhere inside, long enough that any run of eight is theirs.
fn password() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{3,10}[/?#@:%][A-Za-z0-9/?#@:%._~-]{6,24}"
}

/// A probe whose URL holds `${PW}` as its password.
fn probe(kind: &str, url: &str) -> String {
    format!("probes:\n  - name: db\n    kind: {kind}\n    url: \"{url}\"\n")
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
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

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
        run.findings.push(Finding::new(FindingType::SLOW, Severity::Warning, echo(at, &s)));
        let shown = serde_json::to_string(&run.finish(Ok(echo(at, &s)))).expect("an outcome serializes");
        prop_assert_eq!(leaked_run(&shown, &s), None, "in {}", shown);
    }

    #[test]
    fn a_postgres_url_password_never_shows(pw in password(), mode in "(require|verify-full|bogus)") {
        let text = probe("postgres", &format!("postgres://probe:${{PW}}@db.example.com:5432/app?sslmode={mode}"));
        let seen = shown(&text, &pw);
        prop_assert_eq!(leaked_run(&seen, &pw), None, "in:\n{}", seen);
    }

    #[test]
    fn a_mongodb_url_password_never_shows(pw in password(), srv in any::<bool>()) {
        let url = if srv {
            "mongodb+srv://probe:${PW}@cluster0.example.net/?authSource=admin"
        } else {
            "mongodb://probe:${PW}@m1:27017,m2:27017/?replicaSet=rs0&tls=true"
        };
        let seen = shown(&probe("mongodb", url), &pw);
        prop_assert_eq!(leaked_run(&seen, &pw), None, "in:\n{}", seen);
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
