//! `kind: mongodb`: its settings, and every mistake reported with its line and key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::collections::HashMap;
use std::time::Duration;

use depprobe_config::{ConfigErrors, SecretSource};
use depprobe_probes::kinds::mongodb::spec::MongoSpec;
use depprobe_probes::parse_config;

fn env() -> HashMap<String, String> {
    HashMap::from([("MONGO_PASSWORD".to_string(), "m0ngo-s3cret".to_string())])
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

fn mongo(extra: &str) -> String {
    format!("probes:\n  - name: sessions\n    kind: mongodb\n{extra}")
}

#[test]
fn password_in_the_url_is_a_secret_and_never_printed() {
    let text = mongo(
        "    url: mongodb://probe:${MONGO_PASSWORD}@m1:27017,m2:27017,m3/?replicaSet=rs0&tls=true\n",
    );
    let c = parse_config(&text, "f.yaml", &env()).unwrap();
    let Some(m) = c.probes[0].spec.get::<MongoSpec>() else {
        panic!()
    };
    let parts = m.url.parts().unwrap();
    assert_eq!(parts.hosts.len(), 3);
    assert_eq!(parts.hosts[2], ("m3".to_string(), 27017));
    assert!(parts.tls());
    assert_eq!(
        m.password_source(),
        Some(SecretSource::Value(depprobe_config::Secret::new(
            "m0ngo-s3cret"
        )))
    );
    assert!(!format!("{c:?}").contains("m0ngo-s3cret"));
    assert!(
        c.inline_secrets()
            .iter()
            .any(|s| s.expose() == "m0ngo-s3cret")
    );
    assert_eq!(m.elections.window.0, Duration::from_secs(600));
    assert_eq!(m.elections.threshold, 3);
    assert_eq!(
        m.server_selection_timeout, None,
        "the URL or the default decides"
    );
}

#[test]
fn settings_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    let text = mongo(&format!(
        "    url: mongodb+srv://cluster0.example.net/?authSource=admin\n    username: probe\n    password_file: {}\n    server_selection_timeout: 3s\n    connect_timeout: 2s\n    heartbeat_frequency: 1s\n    elections: {{ window: 1m, threshold: 5 }}\n    lag_warn: 2m\n",
        pw.display()
    ));
    let c = parse_config(&text, "f.yaml", &env()).unwrap();
    let Some(m) = c.probes[0].spec.get::<MongoSpec>() else {
        panic!()
    };
    let parts = m.url.parts().unwrap();
    assert!(parts.srv && parts.tls());
    assert_eq!(m.username.as_deref(), Some("probe"));
    assert_eq!(m.password_source(), Some(SecretSource::File(pw)));
    assert_eq!(m.elections.window.0, Duration::from_secs(60));
    assert_eq!(m.elections.threshold, 5);
    assert_eq!(m.heartbeat_frequency.unwrap().0, Duration::from_secs(1));
    assert_eq!(m.lag_warn.0, Duration::from_secs(120));
}

#[test]
fn replication_lag_warns_after_30s_by_default() {
    let c = parse_config(&mongo("    url: mongodb://m1/\n"), "f.yaml", &env()).unwrap();
    let Some(m) = c.probes[0].spec.get::<MongoSpec>() else {
        panic!()
    };
    assert_eq!(m.lag_warn.0, Duration::from_secs(30));
    let e = one_error(&mongo("    url: mongodb://m1/\n    lag_warn: 0s\n"));
    assert_eq!(
        e,
        "depprobe.yaml:5:5: probes[0].lag_warn: must be more than 0s"
    );
}

#[test]
fn the_heartbeat_follows_a_short_interval_but_not_below_the_drivers_minimum() {
    use depprobe_config::ConfigDuration;
    use depprobe_probes::kinds::mongodb::spec::default_heartbeat;
    let hb = |i: ConfigDuration| default_heartbeat(i).0;
    assert_eq!(hb(ConfigDuration::secs(30)), Duration::from_secs(10));
    assert_eq!(hb(ConfigDuration::secs(10)), Duration::from_secs(10));
    assert_eq!(hb(ConfigDuration::secs(2)), Duration::from_secs(2));
    assert_eq!(hb(ConfigDuration::millis(100)), Duration::from_millis(500));
}

#[test]
fn other_schemes_are_refused_at_the_url() {
    let e = one_error(&mongo("    url: postgres://db:5432\n"));
    assert_eq!(
        e,
        "depprobe.yaml:4:5: probes[0].url: scheme `postgres` is not supported; use mongodb:// or mongodb+srv://"
    );
}

#[test]
fn turning_verification_off_in_the_url_is_refused() {
    let e = one_error(&mongo(
        "    url: mongodb://m1/?tls=true&tlsAllowInvalidCertificates=true\n",
    ));
    assert!(
        e.starts_with("depprobe.yaml:4:5: probes[0].url: `tlsAllowInvalidCertificates` turns TLS verification off"),
        "{e}"
    );
}

#[test]
fn a_password_in_two_places_is_refused() {
    let e = one_error(&mongo(
        "    url: mongodb://probe:x@m1/\n    password: \"${MONGO_PASSWORD}\"\n",
    ));
    assert_eq!(
        e,
        "depprobe.yaml:5:5: probes[0].password: the URL already holds a password; set it in one place only"
    );
    let e = one_error(&mongo(
        "    url: mongodb://probe@m1/\n    password: a\n    password_file: /run/secrets/pw\n",
    ));
    assert_eq!(
        e,
        "depprobe.yaml:6:5: probes[0].password_file: set either `password` or `password_file`, not both"
    );
}

#[test]
fn a_password_without_a_user_is_refused() {
    let e = one_error(&mongo("    url: mongodb://m1/\n    password: a\n"));
    assert_eq!(
        e,
        "depprobe.yaml:5:5: probes[0].password: a password needs a user name: set `username` or put it in the URL"
    );
}

#[test]
fn a_user_without_a_password_is_refused() {
    let e = one_error(&mongo("    url: mongodb://probe@m1/\n"));
    assert_eq!(
        e,
        "depprobe.yaml:4:5: probes[0].url: the user has no password: set `password_file` (or `password: ${ENV}`)"
    );
    // A client certificate needs none.
    let text = mongo("    url: mongodb://CN=probe@m1/?authMechanism=MONGODB-X509\n");
    assert!(parse_config(&text, "f.yaml", &env()).is_ok());
}

#[test]
fn bad_hosts_are_located() {
    let e = one_error(&mongo("    url: mongodb://m1:70000,m2/\n"));
    assert_eq!(
        e,
        "depprobe.yaml:4:5: probes[0].url: host `m1:70000`: `70000` is not a port"
    );
    let e = one_error(&mongo(
        "    url: mongodb+srv://cluster0.example.net:27017/\n",
    ));
    assert!(e.ends_with("mongodb+srv:// host names take no port"), "{e}");
}

#[test]
fn timings_and_election_settings_are_checked_with_their_key() {
    let list = errors(&mongo(
        "    url: mongodb://m1/\n    heartbeat_frequency: 100ms\n    elections:\n      window: 10m\n      threshold: 0\n",
    ));
    assert_eq!(list.len(), 2, "{list:#?}");
    assert_eq!(
        list[0],
        "depprobe.yaml:5:5: probes[0].heartbeat_frequency: must be at least 500ms (the driver's minimum)"
    );
    assert_eq!(
        list[1],
        "depprobe.yaml:8:7: probes[0].elections.threshold: must be at least 1"
    );
    let e = one_error(&mongo(
        "    url: mongodb://m1/\n    elections: { windw: 5m }\n",
    ));
    assert!(
        e.starts_with("depprobe.yaml:5:18: probes[0].elections.windw: unknown key `windw`; did you mean `window`?"),
        "{e}"
    );
}

#[test]
fn ca_file_named_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pem");
    let b = dir.path().join("b.pem");
    std::fs::write(&a, "x").unwrap();
    std::fs::write(&b, "x").unwrap();
    let e = one_error(&mongo(&format!(
        "    url: mongodb://m1/?tls=true&tlsCAFile={}\n    tls:\n      ca_file: {}\n",
        a.display(),
        b.display()
    )));
    assert!(
        e.starts_with("depprobe.yaml:6:7: probes[0].tls.ca_file: the URL sets tlsCAFile="),
        "{e}"
    );
}
