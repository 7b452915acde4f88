//! `kind: metrics` settings: defaults, and every mistake located by file, line,
//! column and key path.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::collections::HashMap;

use depprobe_config::ConfigErrors;
use depprobe_probes::kinds::metrics::spec::{MatchOp, MetricsSpec};
use depprobe_probes::parse_config;

fn errors(text: &str) -> Vec<String> {
    match parse_config(text, "depprobe.yaml", &HashMap::new()) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigErrors(list)) => list.iter().map(ToString::to_string).collect(),
    }
}

fn one_error(text: &str) -> String {
    let list = errors(text);
    assert_eq!(list.len(), 1, "expected one error, got {list:#?}");
    list.into_iter().next().unwrap()
}

const HEAD: &str =
    "probes:\n  - name: m\n    kind: metrics\n    url: https://metrics.example.io/metrics\n";

#[test]
fn defaults_accept_200_and_require_one_sample() {
    let c = parse_config(HEAD, "f.yaml", &HashMap::new()).unwrap();
    let Some(m) = c.probes[0].spec.get::<MetricsSpec>() else {
        panic!("not a metrics probe")
    };
    assert_eq!(m.expect.status, vec![200]);
    assert_eq!(m.expect.min_samples, 1);
    assert_eq!(m.max_body_bytes, 10 << 20);
}

#[test]
fn series_expectations_are_typed() {
    let text = format!(
        "{HEAD}    bearer_token: abc.def.ghi\n    expect:\n      min_samples: 10\n      series:\n        - match: 'up{{job=\"api\", instance=~\"db-.*\"}}'\n          min: 1\n          max: 1\n        - match: backup_last_success_timestamp_seconds\n          max_age: 26h\n"
    );
    let c = parse_config(&text, "f.yaml", &HashMap::new()).unwrap();
    let Some(m) = c.probes[0].spec.get::<MetricsSpec>() else {
        panic!("not a metrics probe")
    };
    assert_eq!(m.expect.min_samples, 10);
    let up = &m.expect.series[0];
    assert_eq!(up.selector.name.as_deref(), Some("up"));
    assert_eq!(up.selector.matchers[1].op, MatchOp::Regex);
    assert_eq!((up.min, up.max), (Some(1.0), Some(1.0)));
    assert_eq!(m.expect.series[1].max_age.unwrap().0.as_secs(), 26 * 3600);
    // The inline token is known as a secret, so that outputs scrub it.
    assert_eq!(c.inline_secrets().len(), 1);
}

#[test]
fn invalid_selector_is_located_at_its_value() {
    let e = one_error(&format!(
        "{HEAD}    expect:\n      series:\n        - match: 'up{{job:\"api\"}}'\n"
    ));
    assert!(
        e.starts_with(
            "depprobe.yaml:7:18: probes[0].expect.series[0].match: invalid selector `up{job:\"api\"}`: at character 7: expected =, !=, =~ or !~"
        ),
        "{e}"
    );
}

#[test]
fn invalid_regex_in_a_matcher_is_refused() {
    let e = one_error(&format!(
        "{HEAD}    expect:\n      series:\n        - match: 'up{{job=~\"(\"}}'\n"
    ));
    assert!(e.starts_with("depprobe.yaml:7:18:"), "{e}");
    assert!(
        e.contains("the regular expression of `job` is invalid"),
        "{e}"
    );
}

#[test]
fn bounds_are_checked_on_their_list_item() {
    let list = errors(&format!(
        "{HEAD}    expect:\n      series:\n        - match: up\n        - match: up\n          min: 5\n          max: 1\n          max_age: 0s\n"
    ));
    assert_eq!(
        list,
        vec![
            "depprobe.yaml:10:11: probes[0].expect.series[1].max: `max` (1) is below `min` (5)",
            "depprobe.yaml:11:11: probes[0].expect.series[1].max_age: must be more than 0s",
        ]
    );
}

#[test]
fn unknown_expect_key_suggests_the_nearest() {
    let e = one_error(&format!("{HEAD}    expect:\n      min_sample: 3\n"));
    assert_eq!(
        e,
        "depprobe.yaml:6:7: probes[0].expect.min_sample: unknown key `min_sample`; did you mean `min_samples`?"
    );
}

#[test]
fn http_keys_are_checked_as_for_http() {
    let list = errors(
        "probes:\n  - name: m\n    kind: metrics\n    url: ftp://x/metrics\n    bearer_token: a\n    bearer_token_file: /run/t\n    max_body_bytes: 0\n    expect:\n      status: [999]\n",
    );
    assert_eq!(list.len(), 4, "{list:#?}");
    assert!(
        list[0].starts_with("depprobe.yaml:4:5: probes[0].url: scheme `ftp` is not supported"),
        "{list:#?}"
    );
    assert_eq!(
        list[1],
        "depprobe.yaml:6:5: probes[0].bearer_token_file: set either `bearer_token` or `bearer_token_file`, not both"
    );
    assert_eq!(
        list[2],
        "depprobe.yaml:7:5: probes[0].max_body_bytes: must be at least 1"
    );
    assert_eq!(
        list[3],
        "depprobe.yaml:9:7: probes[0].expect.status: 999 is not an HTTP status code"
    );
}

#[test]
fn http_only_key_is_named_as_such() {
    let e = one_error(&format!("{HEAD}    follow_redirects: true\n"));
    assert_eq!(
        e,
        "depprobe.yaml:5:5: probes[0].follow_redirects: key `follow_redirects` belongs to kind `http`, not to this probe's kind"
    );
}
