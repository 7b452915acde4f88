//! `kind: postgres`: the URL and the fields resolve to one target, and every mistake
//! is reported with file, line, column and key path.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use depprobe_config::{ConfigErrors, SecretSource};
use depprobe_probes::kinds::postgres::spec::{PostgresSpec, RootCert, SslMode, SslNegotiation};
use depprobe_probes::parse_config;

fn env() -> HashMap<String, String> {
    HashMap::from([
        ("PG_PASSWORD".to_string(), "s3cret-pg".to_string()),
        ("PG_URL_PASSWORD".to_string(), "p%40ss-word".to_string()),
    ])
}

/// The probe's keys, indented under a `probes:` list item.
fn config(keys: &str) -> String {
    let mut text = String::from("probes:\n  - name: db\n    kind: postgres\n");
    for line in keys.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn spec(keys: &str) -> PostgresSpec {
    let c =
        parse_config(&config(keys), "depprobe.yaml", &env()).unwrap_or_else(|e| panic!("{e:#?}"));
    match c.probes[0].spec.get::<PostgresSpec>() {
        Some(p) => p.clone(),
        None => panic!("not postgres: {:?}", c.probes[0].spec),
    }
}

fn errors(keys: &str) -> Vec<String> {
    match parse_config(&config(keys), "depprobe.yaml", &env()) {
        Ok(_) => panic!("expected errors for:\n{keys}"),
        Err(ConfigErrors(list)) => list.iter().map(ToString::to_string).collect(),
    }
}

fn one_error(keys: &str) -> String {
    let list = errors(keys);
    assert_eq!(list.len(), 1, "expected one error, got {list:#?}");
    list.into_iter().next().unwrap()
}

#[test]
fn url_gives_every_part_and_defaults_follow_libpq() {
    let s = spec("url: postgres://probe@db.example.com/app");
    let t = s.target().unwrap();
    assert_eq!(t.host, "db.example.com");
    assert_eq!(t.port, 5432);
    assert_eq!(t.user, "probe");
    assert_eq!(t.dbname, "app");
    assert_eq!(t.sslmode, SslMode::VerifyFull, "verify-full by default");
    assert_eq!(t.sslnegotiation, SslNegotiation::Postgres);
    assert_eq!(t.application_name, "depprobe");
    assert!(t.password.is_none());
    assert_eq!(s.query, "SELECT 1");

    let t = spec("url: postgresql://probe@[::1]:6432").target().unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 6432));
    assert_eq!(t.dbname, "probe", "the database defaults to the user name");
}

#[test]
fn url_parameters_are_read_with_libpq_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let t = spec(&format!(
        "url: postgres://probe@db:5433/app?sslmode=require&sslrootcert={}&connect_timeout=7&application_name=probe-x&sslnegotiation=direct",
        ca.display()
    ))
    .target()
    .unwrap();
    assert_eq!(t.sslmode, SslMode::Require);
    assert_eq!(
        t.effective_sslmode(),
        SslMode::VerifyCa,
        "require with a root file is verify-ca, as libpq"
    );
    assert_eq!(t.sslrootcert, Some(RootCert::File(ca.clone())));
    assert_eq!(t.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(t.application_name, "probe-x");
    assert_eq!(t.sslnegotiation, SslNegotiation::Direct);
}

#[test]
fn fields_work_without_a_url() {
    let s = spec(
        "host: db.internal\nport: 6000\nuser: probe\ndbname: orders\nsslmode: verify-ca\npassword: ${PG_PASSWORD}\nquery: SELECT count(*) FROM pg_stat_activity\nexpect:\n  value: \"1\"\nconnect_timeout: 3s",
    );
    let t = s.target().unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.user.as_str(), t.dbname.as_str()),
        ("db.internal", 6000, "probe", "orders")
    );
    assert_eq!(t.sslmode, SslMode::VerifyCa);
    assert_eq!(t.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(s.expect.value.as_deref(), Some("1"));
    match t.password {
        Some(SecretSource::Value(p)) => assert_eq!(p.expose(), "s3cret-pg"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn password_in_the_url_is_a_secret_that_never_prints() {
    let text = config("url: postgres://probe:${PG_URL_PASSWORD}@db/app");
    let c = parse_config(&text, "depprobe.yaml", &env()).unwrap();
    let Some(s) = c.probes[0].spec.get::<PostgresSpec>() else {
        panic!()
    };
    match s.target().unwrap().password {
        Some(SecretSource::Value(p)) => assert_eq!(p.expose(), "p@ss-word", "percent-decoded"),
        other => panic!("{other:?}"),
    }
    let debug = format!("{c:?}");
    assert!(!debug.contains("ss-word"), "{debug}");
    let secrets: Vec<String> = c
        .inline_secrets()
        .iter()
        .map(|s| s.expose().to_owned())
        .collect();
    assert!(secrets.contains(&"p@ss-word".to_owned()), "{secrets:?}");
    assert!(secrets.contains(&"p%40ss-word".to_owned()), "{secrets:?}");
}

#[test]
fn sslrootcert_replaces_the_roots_and_sslcert_is_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, crt, key]: [PathBuf; 3] = ["ca.pem", "c.crt", "c.key"].map(|n| dir.path().join(n));
    for p in [&ca, &crt, &key] {
        std::fs::write(p, "x").unwrap();
    }
    let s = spec(&format!(
        "url: postgres://probe@db/app\nsslrootcert: {}\nsslcert: {}\nsslkey: {}",
        ca.display(),
        crt.display(),
        key.display()
    ));
    let t = s.target().unwrap();
    let tls = s.tls_spec(&t);
    assert_eq!(tls.ca_file.as_deref(), Some(ca.as_path()));
    assert!(!tls.system_roots, "sslrootcert trusts only its own CAs");
    // The client certificate and key are the probe's to load, as libpq loads them
    // (encrypted with sslpassword, DER, the key's permissions checked).
    assert_eq!(t.sslcert.as_deref(), Some(crt.as_path()));
    assert_eq!(t.sslkey.as_deref(), Some(key.as_path()));
    assert_eq!(tls.cert_file, None);
}

#[test]
fn unknown_sslmode_key_is_located() {
    let e = one_error("url: postgres://probe@db/app\nsslmode: verify_full");
    assert!(
        e.starts_with("depprobe.yaml:5:14: probes[0].sslmode: unknown variant `verify_full`"),
        "{e}"
    );
}

#[test]
fn bad_url_parameter_is_reported_at_the_url() {
    let e = one_error("url: postgres://probe@db/app?sslmode=verify");
    assert!(
        e.starts_with("depprobe.yaml:4:5: probes[0].url: sslmode `verify` is not one of disable, allow, prefer, require, verify-ca, verify-full"),
        "{e}"
    );
    let e = one_error("url: postgres://probe@db/app?target_session_attrs=read-write");
    assert!(
        e.contains("URL parameter `target_session_attrs` is not supported (supported: sslmode,"),
        "{e}"
    );
}

#[test]
fn several_hosts_or_no_host_are_refused() {
    let e = one_error("url: postgres://probe@db1:5432,db2:5432/app");
    assert!(
        e.contains("probes[0].url: the URL names several hosts"),
        "{e}"
    );
    let e = one_error("url: postgres:///app?host=/var/run/postgresql");
    assert!(e.contains("probes[0].url: the URL has no host"), "{e}");
    let e = one_error("url: mysql://probe@db/app");
    assert!(
        e.contains("must start with postgres:// or postgresql://"),
        "{e}"
    );
}

#[test]
fn a_setting_in_both_url_and_key_points_at_the_key() {
    let e = one_error("url: postgres://probe@db/app?sslmode=require\nsslmode: verify-full");
    assert_eq!(
        e,
        "depprobe.yaml:5:5: probes[0].sslmode: `sslmode` is also set in `url`; set it in one place"
    );
    let e = one_error("url: postgres://probe:pw@db/app\npassword_file: /run/secrets/pg");
    assert!(
        e.starts_with(
            "depprobe.yaml:5:5: probes[0].password_file: the URL already holds a password"
        ),
        "{e}"
    );
}

#[test]
fn missing_host_and_user_are_named() {
    let e = one_error("user: probe");
    assert_eq!(
        e,
        "depprobe.yaml:2:5: probes[0]: set `url` (postgres://user@host:5432/db) or `host`"
    );
    let e = one_error("host: db");
    assert!(
        e.starts_with("depprobe.yaml:2:5: probes[0].user: set the role to log in as"),
        "{e}"
    );
}

#[test]
fn weak_sslmode_with_direct_negotiation_is_refused() {
    let e = one_error("url: postgres://probe@db/app\nsslmode: prefer\nsslnegotiation: direct");
    assert!(
        e.starts_with("depprobe.yaml:5:5: probes[0].sslmode: sslnegotiation=direct needs sslmode=require or stronger"),
        "{e}"
    );
    let e = one_error("url: postgres://probe@db/app?sslmode=require&sslrootcert=system");
    assert!(
        e.starts_with(
            "depprobe.yaml:4:5: probes[0].url: sslrootcert=system needs sslmode=verify-full"
        ),
        "{e}"
    );
}

#[test]
fn certificate_files_are_checked_where_they_are_written() {
    let list = errors(
        "url: postgres://probe@db/app\nsslrootcert: /nonexistent/root.crt\nsslcert: /nonexistent/c.crt\ntls:\n  warn_before: 4d",
    );
    assert_eq!(list.len(), 3, "{list:#?}");
    assert!(
        list[0].starts_with("depprobe.yaml:5:5: probes[0].sslrootcert: sslrootcert /nonexistent/root.crt does not exist"),
        "{list:#?}"
    );
    assert!(
        list[1].starts_with(
            "depprobe.yaml:6:5: probes[0].sslcert: sslcert /nonexistent/c.crt does not exist"
        ),
        "{list:#?}"
    );
    assert!(
        list[2].starts_with("depprobe.yaml:6:5: probes[0].sslcert: a client certificate needs both `sslcert` and `sslkey`"),
        "{list:#?}"
    );
    let list =
        errors("url: postgres://probe@db/app?sslcert=/nonexistent/c.crt&sslkey=/nonexistent/c.key");
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(
        list[0].starts_with(
            "depprobe.yaml:4:5: probes[0].url: sslcert /nonexistent/c.crt does not exist"
        ),
        "{list:#?}"
    );
    assert!(
        list[1].starts_with(
            "depprobe.yaml:4:5: probes[0].url: sslkey /nonexistent/c.key does not exist"
        ),
        "{list:#?}"
    );
}

#[test]
fn sslrootcert_and_tls_ca_file_are_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let e = one_error(&format!(
        "url: postgres://probe@db/app\nsslrootcert: {0}\ntls:\n  ca_file: {0}",
        ca.display()
    ));
    assert!(
        e.starts_with("depprobe.yaml:7:7: probes[0].tls.ca_file: set either `sslrootcert`"),
        "{e}"
    );
}

#[test]
fn password_and_password_file_are_exclusive_and_query_must_not_be_empty() {
    let list = errors(
        "url: postgres://probe@db/app\npassword: ${PG_PASSWORD}\npassword_file: /run/secrets/pg\nquery: \"  \"",
    );
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(
        list[0].starts_with(
            "depprobe.yaml:6:5: probes[0].password_file: set either `password` or `password_file`"
        ),
        "{list:#?}"
    );
    assert!(
        list[1].starts_with("depprobe.yaml:7:5: probes[0].query: the query must not be empty"),
        "{list:#?}"
    );
}

#[test]
fn postgres_keys_on_another_kind_are_named_as_such() {
    let e = one_error_raw(
        "probes:\n  - name: t\n    kind: tls\n    address: a:443\n    sslmode: require\n",
    );
    assert_eq!(
        e,
        "depprobe.yaml:5:5: probes[0].sslmode: key `sslmode` belongs to kind `postgres`, not to this probe's kind"
    );
}

fn one_error_raw(text: &str) -> String {
    match parse_config(text, "depprobe.yaml", &env()) {
        Ok(_) => panic!("expected an error"),
        Err(ConfigErrors(list)) => {
            assert_eq!(list.len(), 1, "{list:#?}");
            list[0].to_string()
        }
    }
}
