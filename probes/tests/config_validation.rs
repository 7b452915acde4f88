//! Every configuration mistake is reported with file, line, column and key path.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::collections::HashMap;
use std::time::Duration;

use depprobe_config::ConfigErrors;
use depprobe_probes::kinds::http::spec::HttpSpec;
use depprobe_probes::kinds::tls::spec::TlsProbeSpec;
use depprobe_probes::parse_config;

fn env() -> HashMap<String, String> {
    HashMap::from([
        ("PG_PASSWORD".to_string(), "s3cret-pg".to_string()),
        ("API_TOKEN".to_string(), "tok-123456".to_string()),
    ])
}

fn errors(text: &str) -> Vec<String> {
    match parse_config(text, "depprobe.yaml", &env()) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigErrors(list)) => list.iter().map(ToString::to_string).collect(),
    }
}

fn one_error(text: &str) -> String {
    let list = errors(text);
    assert_eq!(list.len(), 1, "expected one error, got {list:#?}");
    list.into_iter().next().unwrap()
}

#[test]
fn unknown_probe_key_suggests_the_nearest() {
    let e = one_error("probes:\n  - name: api\n    kind: http\n    ulr: https://example.com\n");
    assert_eq!(
        e,
        "depprobe.yaml:4:5: probes[0].ulr: unknown key `ulr`; did you mean `url`?"
    );
}

#[test]
fn unknown_top_level_key_suggests_the_nearest() {
    let e = one_error("agnet:\n  interval: 10s\nprobes: []\n");
    assert_eq!(
        e,
        "depprobe.yaml:1:1: agnet: unknown key `agnet`; did you mean `agent`?"
    );
}

#[test]
fn nested_unknown_key_is_located() {
    let e = one_error(
        "probes:\n  - name: api\n    kind: tls\n    address: a:443\n    tls:\n      sever_name: x\n",
    );
    assert_eq!(
        e,
        "depprobe.yaml:6:7: probes[0].tls.sever_name: unknown key `sever_name`; did you mean `server_name`?"
    );
}

#[test]
fn key_of_another_kind_is_named_as_such() {
    let e =
        one_error("probes:\n  - name: t\n    kind: tls\n    address: a:443\n    url: https://a\n");
    assert_eq!(
        e,
        "depprobe.yaml:5:5: probes[0].url: key `url` belongs to kind `http`, not to this probe's kind"
    );
}

#[test]
fn duration_without_unit_is_refused() {
    let e = one_error("agent:\n  interval: 30\nprobes: []\n");
    assert!(
        e.starts_with("depprobe.yaml:2:13: agent.interval: `30` has no unit"),
        "{e}"
    );
}

#[test]
fn unknown_kind_suggests_the_nearest() {
    let e = one_error("probes:\n  - name: a\n    kind: htp\n    url: https://a\n");
    assert!(
        e.starts_with(
            "depprobe.yaml:3:11: probes[0].kind: unknown kind `htp`; did you mean `http`?"
        ),
        "{e}"
    );
}

#[test]
fn missing_kind_and_missing_key_are_located() {
    let e = one_error("probes:\n  - name: a\n    url: https://a\n");
    assert_eq!(
        e,
        "depprobe.yaml:2:5: probes[0]: missing required key `kind`"
    );
    let e = one_error("probes:\n  - name: a\n    kind: http\n");
    assert_eq!(
        e,
        "depprobe.yaml:2:5: probes[0]: missing required key `url`"
    );
}

#[test]
fn duplicate_names_point_at_the_second() {
    let e = one_error(
        "probes:\n  - name: a\n    kind: tls\n    address: a:443\n  - name: a\n    kind: tls\n    address: b:443\n",
    );
    assert_eq!(
        e,
        "depprobe.yaml:5:5: probes[1].name: duplicate probe name `a` (first used on line 2)"
    );
}

#[test]
fn unset_environment_variable_is_an_error_with_its_position() {
    let e = one_error(
        "probes:\n  - name: a\n    kind: http\n    url: https://a\n    bearer_token: \"${NOPE_UNSET}\"\n",
    );
    assert!(
        e.starts_with(
            "depprobe.yaml:5:20: probes[0].bearer_token: environment variable `NOPE_UNSET` is not set"
        ),
        "{e}"
    );
    let e = one_error(
        "probes:\n  - name: a\n    kind: tls\n    address: a:443\n  - name: b\n    kind: tls\n    address: b:443\n    tls:\n      ca_file: ${NOPE_CA_DIR}/ca.pem\n",
    );
    assert!(
        e.starts_with(
            "depprobe.yaml:9:16: probes[1].tls.ca_file: environment variable `NOPE_CA_DIR` is not set"
        ),
        "{e}"
    );
}

#[test]
fn interpolation_and_defaults_in_variables() {
    let text = "probes:\n  - name: a\n    kind: http\n    url: ${BASE:-https://api.example.com}/health\n    bearer_token: \"${API_TOKEN}\"\n";
    let c = parse_config(text, "f.yaml", &env()).unwrap();
    let Some(h) = c.probes[0].spec.get::<HttpSpec>() else {
        panic!()
    };
    assert_eq!(h.url, "https://api.example.com/health");
    assert_eq!(h.bearer_token.as_ref().unwrap().expose(), "tok-123456");
    // The secret never shows in a debug print of the configuration.
    assert!(!format!("{c:?}").contains("tok-123456"));
    assert_eq!(c.inline_secrets().len(), 1);
}

#[test]
fn malformed_yaml_is_located() {
    let e = one_error("probes:\n  - name: [a\n");
    assert!(e.starts_with("depprobe.yaml:2:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
}

#[test]
fn bad_values_are_checked_with_their_key() {
    let list = errors(
        "probes:\n  - name: a\n    kind: http\n    url: ftp://a\n    tls:\n      min_version: \"1.1\"\n      ca_file: /nonexistent/ca.pem\n    expect:\n      body_regex: \"(\"\n",
    );
    assert_eq!(list.len(), 4, "{list:#?}");
    assert!(list[0].starts_with("depprobe.yaml:4:5: probes[0].url: scheme `ftp` is not supported"));
    assert!(
        list[1]
            .starts_with("depprobe.yaml:6:7: probes[0].tls.min_version: unsupported TLS version")
    );
    assert!(list[2].starts_with(
        "depprobe.yaml:7:7: probes[0].tls.ca_file: file /nonexistent/ca.pem does not exist"
    ));
    assert!(
        list[3].starts_with(
            "depprobe.yaml:9:7: probes[0].expect.body_regex: invalid regular expression"
        )
    );
}

#[test]
fn defaults_are_merged_into_every_probe_that_takes_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let text = format!(
        "agent:\n  interval: 15s\ndefaults:\n  timeout: 3s\n  tls:\n    ca_file: {}\n    warn_before: 20d\nprobes:\n  - name: a\n    kind: tls\n    address: a:443\n    tls:\n      warn_before: 7d\n  - name: b\n    kind: http\n    url: https://b\n    interval: 1m\n",
        ca.display()
    );
    let c = parse_config(&text, "f.yaml", &env()).unwrap();
    let Some(a) = c.probes[0].spec.get::<TlsProbeSpec>() else {
        panic!()
    };
    assert_eq!(a.tls.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(
        a.tls.warn_before.duration.map(|d| d.0),
        Some(Duration::from_secs(7 * 86400))
    );
    assert_eq!(
        a.tls.critical_before,
        depprobe_config::TlsSpec::default().critical_before
    );
    assert_eq!(c.probes[0].interval.0, Duration::from_secs(15));
    assert_eq!(c.probes[0].timeout.0, Duration::from_secs(3));
    let Some(b) = c.probes[1].spec.get::<HttpSpec>() else {
        panic!()
    };
    assert_eq!(
        b.tls.warn_before.duration.map(|d| d.0),
        Some(Duration::from_secs(20 * 86400))
    );
    assert_eq!(c.probes[1].interval.0, Duration::from_secs(60));
}

#[test]
fn unknown_default_key_is_refused() {
    let e = one_error("defaults:\n  tsl: {}\nprobes: []\n");
    assert_eq!(
        e,
        "depprobe.yaml:2:3: defaults.tsl: unknown key `tsl`; did you mean `tls`?"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let list = errors(
        "probes:\n  - name: a\n    kind: http\n    ulr: x\n  - name: b\n    kind: tls\n    address: nope\n  - name: b\n    kind: tls\n    address: c:1\n",
    );
    assert_eq!(list.len(), 3, "{list:#?}");
}

#[test]
fn expect_cannot_be_a_default_because_it_differs_between_kinds() {
    let e = one_error("defaults:\n  expect:\n    status: [200]\nprobes: []\n");
    assert_eq!(
        e,
        "depprobe.yaml:2:3: defaults.expect: `expect` means something different for each kind; set it on each probe"
    );
}

#[test]
fn request_steps_are_checked_with_their_position() {
    let list = errors(
        "probes:\n  - name: w\n    kind: http\n    url: https://api.example.com/write\n    steps:\n      - url: /query\n        method: \"G E T\"\n        expect:\n          status: [999]\n",
    );
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(
        list[0].starts_with(
            "depprobe.yaml:7:9: probes[0].steps[0].method: `G E T` is not an HTTP method"
        ),
        "{list:#?}"
    );
    assert!(
        list[1].starts_with(
            "depprobe.yaml:9:11: probes[0].steps[0].expect.status: 999 is not an HTTP status code"
        ),
        "{list:#?}"
    );
}

#[test]
fn otlp_probe_keys_are_checked() {
    let list = errors(
        "probes:\n  - name: o\n    kind: otlp\n    endpoint: grpc://collector:4317\n    protocol: thrift\n",
    );
    assert_eq!(list.len(), 1, "{list:#?}");
    assert!(
        list[0].starts_with("depprobe.yaml:5:15: probes[0].protocol:"),
        "{list:#?}"
    );
    let e = one_error("probes:\n  - name: o\n    kind: otlp\n    endpoint: ftp://collector:4317\n");
    assert!(
        e.starts_with("depprobe.yaml:4:5: probes[0].endpoint: scheme `ftp` is not supported"),
        "{e}"
    );
}

#[test]
fn credential_probe_needs_exactly_one_source() {
    let e = one_error("probes:\n  - name: c\n    kind: credential\n    file: /x\n    env: TOKEN\n");
    assert_eq!(
        e,
        "depprobe.yaml:2:5: probes[0]: set exactly one of `file`, `cert_file` or `env`"
    );
    let e = one_error("probes:\n  - name: c\n    kind: credential\n    env: \"not a name\"\n");
    assert!(
        e.starts_with(
            "depprobe.yaml:4:5: probes[0].env: `not a name` is not an environment variable name"
        ),
        "{e}"
    );
}
