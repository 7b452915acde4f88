//! Properties of configuration parsing that hold for every input of a shape, where a
//! fuzzer would be overkill (the fuzz targets in `fuzz/` cover arbitrary bytes):
//! durations read back what they print, and a password written in a database URL
//! never shows, whole or in part, in a `validate` error or a `Debug` print, whatever
//! characters it holds (`/`, `?`, `#`, `@` unescaped included).

use std::collections::HashMap;
use std::time::Duration;

use depprobe_config::duration::parse_duration;
use depprobe_config::{ConfigDuration, parse_str};
use proptest::prelude::*;

/// The longest run of a secret that may appear anywhere: shorter runs are common
/// words and digits.
const RUN: usize = 8;

/// The first `RUN`-character run of `secret` found in `text`.
fn leaked_run<'a>(text: &str, secret: &'a str) -> Option<&'a str> {
    let starts: Vec<usize> = secret.char_indices().map(|(i, _)| i).collect();
    (0..starts.len().saturating_sub(RUN - 1))
        .map(|k| {
            let end = starts.get(k + RUN).copied().unwrap_or(secret.len());
            &secret[starts[k]..end]
        })
        .find(|run| text.contains(run))
}

/// What a user can see of a configuration: every error of `validate`, or the
/// `Debug` print of what loaded.
fn shown(text: &str, password: &str) -> String {
    let env = HashMap::from([("PW".to_string(), password.to_string())]);
    match parse_str(text, "depprobe.yaml", &env) {
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

proptest! {
    // No regression files in the tree: a failure prints its minimal input.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_duration_reads_back_what_it_prints(ms in 0u64..7 * 86_400_000) {
        let d = Duration::from_millis(ms);
        let printed = ConfigDuration(d).to_string();
        prop_assert_eq!(parse_duration(&printed), Ok(d), "printed as {}", printed);
    }

    #[test]
    fn a_number_with_a_unit_is_that_many_units(n in 0u64..100_000, unit in 0usize..5) {
        let (suffix, secs_per_unit_ms) = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)][unit];
        let text = format!("{n}{suffix}");
        prop_assert_eq!(parse_duration(&text), Ok(Duration::from_millis(n * secs_per_unit_ms)));
    }

    #[test]
    fn a_number_without_a_unit_is_an_error_that_says_so(n in any::<u64>()) {
        let e = parse_duration(&n.to_string()).expect_err("a bare number");
        prop_assert!(e.contains("no unit"), "{}", e);
    }

    #[test]
    fn any_number_with_a_unit_gives_an_answer(n in any::<u64>(), unit in "(ms|s|m|h|d|w|y)") {
        // Overflowing products (18446744073709551615w) are errors, not panics.
        let _ = parse_duration(&format!("{n}{unit}"));
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
        leaked_run("x p4ss/w0rd y", "p4ss/w0rd-long"),
        Some("p4ss/w0r")
    );
    assert_eq!(leaked_run("x p4ss/w0 y", "p4ss/w0rd-long"), None);
    assert_eq!(leaked_run("anything", "short"), None);
}
