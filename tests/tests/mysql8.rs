//! The `mysql` probe against MySQL 8.0's default authentication,
//! `caching_sha2_password`, on **depprobe's own MySQL 8.0 protocol server, not
//! mysqld** (`depprobe_tests::mysql8`): no MySQL server can be installed where the
//! tests run, and MariaDB (`tests/mysql.rs`) has no `caching_sha2_password`. Each
//! case starts its own server (a few milliseconds, plus an RSA key pair) and asserts
//! what a user sees (status, class, phase, details, `db.system.name`) and, from the
//! server's records, which path the login really took.
//!
//! The server itself is checked against a client that is not ours: the `mariadb`
//! command-line client, whose Connector/C has its own `caching_sha2_password`
//! plugin (OpenSSL's RSA-OAEP), logs in to it by every path.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use depprobe_probes::kinds::role::REPLICATION_LINK_DOWN;
use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Status};
use depprobe_tests::harness::{Pki, assert_down, build_one, detail, finding};
use depprobe_tests::mysql8::{
    AuthPath, DefaultPlugin, Facts, Hostile, Login, Mysql8, Mysql8Spec, ReplicaStatus,
};
use depprobe_tests::{Identity, Validity, run_once};

/// The password of user `probe`.
const PASSWORD: &str = "probe8-pw-3c9a71";

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new("MySQL 8 Test").unwrap())
}

fn leaf() -> Identity {
    pki().localhost(Validity::current()).unwrap()
}

/// A server with the password of `probe`, TLS when `tls`, and the rest of `spec`.
async fn server(tls: bool, spec: Mysql8Spec) -> Mysql8 {
    Mysql8::start(&Mysql8Spec {
        tls: tls.then(leaf),
        password: PASSWORD.into(),
        ..spec
    })
    .await
    .unwrap()
}

/// The keys of a `mysql` probe of `server` with URL parameters `params`, password
/// `password`, the test CA, plus `extra` lines.
fn yaml(server: &Mysql8, params: &str, password: &str, extra: &str) -> String {
    format!(
        "name: db\nkind: mysql\nurl: mysql://probe@localhost:{}/{params}\npassword: {password}\ntimeout: 5s\ntls:\n  ca_file: {}\n{extra}",
        server.port(),
        pki().root_file.display()
    )
}

async fn probe(server: &Mysql8, params: &str) -> Outcome {
    run_once(&yaml(server, params, PASSWORD, "")).await.unwrap()
}

fn login(path: AuthPath, tls: bool) -> Login {
    Login {
        user: "probe".into(),
        tls,
        client_plugin: "caching_sha2_password".into(),
        switched: false,
        path,
    }
}

/// Up, as a MySQL 8.0.36 server, logged in with `caching_sha2_password`, and the
/// server saw no protocol violation.
fn assert_up_as_mysql(o: &Outcome, server: &Mysql8) {
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(o, "flavour"), "mysql");
    assert_eq!(detail(o, "server_version"), "8.0.36");
    assert_eq!(detail(o, "auth_plugin"), "caching_sha2_password");
    assert!(
        o.attributes
            .iter()
            .any(|(k, v)| *k == "db.system.name" && v == "mysql"),
        "db.system.name follows the greeting: {:?}",
        o.attributes
    );
    assert!(o.message.starts_with("MySQL 8.0.36, "), "{}", o.message);
    assert_eq!(server.violations(), Vec::<String>::new());
}

/// Runs `SELECT 1` with the `mariadb` client (TLS verified against the test CA, or
/// `--skip-ssl` with the server's public key asked for); what it printed.
async fn mariadb_client(server: &Mysql8, tls: bool, password: &str) -> (bool, String) {
    let mut cmd = std::process::Command::new("mariadb");
    cmd.args([
        "--no-defaults",
        "--protocol=tcp",
        "-h",
        "127.0.0.1",
        "-u",
        "probe",
    ])
    .arg(format!("-P{}", server.port()))
    .arg(format!("-p{password}"))
    .args(["-N", "-B", "-e", "SELECT 1"]);
    if tls {
        cmd.arg(format!("--ssl-ca={}", pki().root_file.display()));
    } else {
        cmd.arg("--skip-ssl");
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the mariadb client (Debian's mariadb-client) is installed");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// The server, checked with a client that is not ours: the `mariadb` client logs
/// in by the fast path, the full path over TLS, the full path with the public key
/// over plaintext, and after an auth switch; and is denied with MySQL's message.
#[tokio::test]
async fn the_mariadb_client_logs_in_by_every_path() {
    let native = DefaultPlugin::MysqlNativePassword;
    let sha2 = DefaultPlugin::CachingSha2Password;
    for (tls, cached, default_plugin, path) in [
        (true, true, sha2, AuthPath::Fast),
        (true, false, sha2, AuthPath::FullOverTls),
        (false, false, sha2, AuthPath::FullWithPublicKey),
        (true, true, native, AuthPath::Fast),
        (false, false, native, AuthPath::FullWithPublicKey),
    ] {
        let db = server(
            tls,
            Mysql8Spec {
                cached,
                default_plugin,
                ..Default::default()
            },
        )
        .await;
        let (ok, printed) = mariadb_client(&db, tls, PASSWORD).await;
        let case = format!("tls={tls} cached={cached} {default_plugin:?}");
        assert!(ok, "{case}: {printed}");
        assert_eq!(printed, "1\n", "{case}");
        let logins = db.logins();
        assert_eq!(logins.len(), 1, "{case}: {logins:?}");
        assert_eq!(logins[0].path, path, "{case}");
        assert_eq!(logins[0].switched, default_plugin == native, "{case}");
        assert_eq!(db.violations(), Vec::<String>::new(), "{case}");
    }
    let db = server(true, Mysql8Spec::default()).await;
    let (ok, printed) = mariadb_client(&db, true, "wrong-pw").await;
    assert!(!ok);
    assert!(
        printed.contains(
            "ERROR 1045 (28000): Access denied for user 'probe'@'localhost' (using password: YES)"
        ),
        "{printed}"
    );
}

#[tokio::test]
async fn fast_path_over_tls_is_up_as_mysql() {
    let db = server(
        true,
        Mysql8Spec {
            cached: true,
            ..Default::default()
        },
    )
    .await;
    let o = probe(&db, "").await;
    assert_up_as_mysql(&o, &db);
    assert_eq!(detail(&o, "ssl_mode"), "verify_identity");
    assert_eq!(detail(&o, "tls_used"), true);
    assert_eq!(detail(&o, "role"), "primary");
    assert!(o.tls.as_ref().unwrap().verified, "{o:#?}");
    assert!(o.message.contains("over TLS"), "{}", o.message);
    assert_eq!(db.logins(), [login(AuthPath::Fast, true)]);
    assert_eq!(
        db.statements(),
        [
            "SELECT @@read_only AS read_only, @@super_read_only AS super_read_only",
            "SHOW REPLICA STATUS",
            "SELECT 1"
        ]
    );
}

/// Not in the cache: "perform full authentication", the password in the TLS
/// session; the server then caches the account, so the next login is fast, until
/// the cache is flushed.
#[tokio::test]
async fn full_path_over_tls_then_the_cache_makes_the_next_login_fast() {
    let db = server(true, Mysql8Spec::default()).await;
    let p = build_one(&yaml(&db, "", PASSWORD, "")).unwrap();
    let o = p.run().await;
    assert_up_as_mysql(&o, &db);
    assert_eq!(detail(&o, "tls_used"), true);
    let o = p.run().await;
    assert_up_as_mysql(&o, &db);
    db.flush_cache();
    let o = p.run().await;
    assert_up_as_mysql(&o, &db);
    assert_eq!(
        db.logins(),
        [
            login(AuthPath::FullOverTls, true),
            login(AuthPath::Fast, true),
            login(AuthPath::FullOverTls, true)
        ]
    );
}

/// Full path in plaintext: the probe asks for the server's RSA public key and
/// sends the password encrypted with it; under `preferred` against a server without
/// TLS, and under `disabled` against one with it.
#[tokio::test]
async fn full_path_without_tls_asks_for_the_public_key() {
    let plain = server(false, Mysql8Spec::default()).await;
    let o = probe(&plain, "?ssl-mode=preferred&get-server-public-key=true").await;
    assert_up_as_mysql(&o, &plain);
    assert_eq!(detail(&o, "tls_used"), false);
    assert!(o.message.contains("in plaintext"), "{}", o.message);
    assert_eq!(plain.logins(), [login(AuthPath::FullWithPublicKey, false)]);

    let with_tls = server(true, Mysql8Spec::default()).await;
    let o = probe(&with_tls, "?ssl-mode=disabled&get-server-public-key=true").await;
    assert_up_as_mysql(&o, &with_tls);
    assert_eq!(detail(&o, "tls_used"), false);
    assert!(o.tls.is_none(), "{o:#?}");
    assert_eq!(
        with_tls.logins(),
        [login(AuthPath::FullWithPublicKey, false)]
    );
}

/// Without `get-server-public-key=true` the probe does not ask for the key over
/// plaintext (anyone in between could send his own and read the password), as the
/// MySQL client refuses (error 2061): `auth_rejected`, and no password reaches the
/// server in any form. A cached account still logs in by the fast path, which
/// sends only a scramble.
#[tokio::test]
async fn without_tls_the_key_is_asked_for_only_when_allowed() {
    let plain = server(false, Mysql8Spec::default()).await;
    let o = probe(&plain, "?ssl-mode=preferred").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(
        o.message.contains("get-server-public-key=true"),
        "{}",
        o.message
    );
    assert_eq!(plain.logins(), [], "the password reached the server");

    let cached = server(
        false,
        Mysql8Spec {
            cached: true,
            ..Default::default()
        },
    )
    .await;
    let o = probe(&cached, "?ssl-mode=preferred").await;
    assert_up_as_mysql(&o, &cached);
    assert_eq!(cached.logins(), [login(AuthPath::Fast, false)]);
}

/// A server whose default plugin is `mysql_native_password` switches the login to
/// `caching_sha2_password` with a new nonce: the fast path (the scramble of the new
/// nonce) over TLS, and the full path in plaintext (the password XORed with the new
/// nonce before it is encrypted).
#[tokio::test]
async fn auth_switch_from_native_password_to_caching_sha2() {
    let switched = |path, tls| Login {
        client_plugin: "mysql_native_password".into(),
        switched: true,
        ..login(path, tls)
    };
    let cached = server(
        true,
        Mysql8Spec {
            default_plugin: DefaultPlugin::MysqlNativePassword,
            cached: true,
            ..Default::default()
        },
    )
    .await;
    let o = probe(&cached, "").await;
    assert_up_as_mysql(&o, &cached);
    assert_eq!(cached.logins(), [switched(AuthPath::Fast, true)]);

    let plain = server(
        false,
        Mysql8Spec {
            default_plugin: DefaultPlugin::MysqlNativePassword,
            ..Default::default()
        },
    )
    .await;
    let o = probe(&plain, "?ssl-mode=preferred&get-server-public-key=true").await;
    assert_up_as_mysql(&o, &plain);
    assert_eq!(
        plain.logins(),
        [switched(AuthPath::FullWithPublicKey, false)]
    );
}

/// A wrong password fails the fast path (the account is cached) and the full path,
/// over TLS and in plaintext: MySQL's error 1045, and the password, wrong or right,
/// appears nowhere in the outcome.
#[tokio::test]
async fn wrong_password_is_auth_rejected_and_never_shown() {
    const WRONG: &str = "wrong-pw-5e07d2";
    for (tls, params) in [
        (true, ""),
        (false, "?ssl-mode=preferred&get-server-public-key=true"),
    ] {
        let db = server(
            tls,
            Mysql8Spec {
                cached: true,
                ..Default::default()
            },
        )
        .await;
        let o = run_once(&yaml(&db, params, WRONG, "")).await.unwrap();
        assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
        assert!(
            o.message.contains(
                "error 1045 (28000): Access denied for user 'probe'@'localhost' (using password: YES)"
            ),
            "{}",
            o.message
        );
        let shown = format!("{o:#?}{}", serde_json::to_string(&o).unwrap());
        assert!(!shown.contains(WRONG), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert_eq!(db.logins(), [login(AuthPath::Denied, tls)]);
        assert_eq!(db.violations(), Vec::<String>::new());
        assert!(db.statements().is_empty(), "no statement after a refusal");
    }
}

/// `read_only` and `super_read_only` (which implies `read_only`, as in MySQL) make
/// the role `read_only`; a writable server again is a `role_changed` finding.
#[tokio::test]
async fn read_only_and_super_read_only_are_the_read_only_role() {
    let db = server(
        true,
        Mysql8Spec {
            cached: true,
            facts: Facts {
                read_only: true,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let p = build_one(&yaml(&db, "", PASSWORD, "")).unwrap();
    let o = p.run().await;
    assert_up_as_mysql(&o, &db);
    assert_eq!(detail(&o, "role"), "read_only");
    assert_eq!(detail(&o, "read_only"), true);
    assert_eq!(detail(&o, "super_read_only"), false);
    assert!(o.message.contains(", read_only: login"), "{}", o.message);

    db.set_facts(Facts {
        super_read_only: true,
        ..Default::default()
    });
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "same role, no finding: {o:#?}");
    assert_eq!(detail(&o, "role"), "read_only");
    assert_eq!(detail(&o, "read_only"), true);
    assert_eq!(detail(&o, "super_read_only"), true);

    db.set_facts(Facts::default());
    let o = p.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(detail(&o, "role"), "primary");
    let f = finding(&o, FindingType::ROLE_CHANGED);
    assert_eq!(f.facts["from"], "read_only");
    assert_eq!(f.facts["to"], "primary");
}

fn replica(io: &str) -> Facts {
    Facts {
        read_only: true,
        replica: Some(ReplicaStatus {
            source_host: "db-source.internal".into(),
            source_port: 3306,
            io_running: io.into(),
            sql_running: "Yes".into(),
        }),
        ..Default::default()
    }
}

/// MySQL 8.0.22 and later: `SHOW REPLICA STATUS` and its `Source_*` / `Replica_*`
/// columns; a link that is not running is `replication_link_down`.
#[tokio::test]
async fn a_replica_names_its_source_from_show_replica_status() {
    let db = server(
        true,
        Mysql8Spec {
            cached: true,
            facts: replica("Yes"),
            ..Default::default()
        },
    )
    .await;
    let o = probe(&db, "").await;
    assert_up_as_mysql(&o, &db);
    assert_eq!(detail(&o, "role"), "replica");
    assert_eq!(detail(&o, "replication_source"), "db-source.internal:3306");
    assert_eq!(detail(&o, "replication_link"), "io=Yes sql=Yes");
    assert!(db.statements().contains(&"SHOW REPLICA STATUS".to_owned()));

    db.set_facts(replica("Connecting"));
    let o = probe(&db, "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = finding(&o, REPLICATION_LINK_DOWN);
    assert_eq!(f.facts["source"], "db-source.internal:3306");
    assert_eq!(detail(&o, "replication_link"), "io=Connecting sql=Yes");
}

/// Before 8.0.22 `SHOW REPLICA STATUS` is a syntax error: the probe asks `SHOW
/// SLAVE STATUS` and reads the `Master_*` / `Slave_*` columns.
#[tokio::test]
async fn before_8_0_22_the_replica_status_is_show_slave_status() {
    let db = server(
        true,
        Mysql8Spec {
            version: "8.0.21".into(),
            cached: true,
            facts: replica("Yes"),
            ..Default::default()
        },
    )
    .await;
    let o = probe(&db, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "server_version"), "8.0.21");
    assert_eq!(detail(&o, "role"), "replica");
    assert_eq!(detail(&o, "replication_source"), "db-source.internal:3306");
    assert!(
        db.statements().contains(&"SHOW SLAVE STATUS".to_owned()),
        "{:?}",
        db.statements()
    );
}

/// Without `REPLICATION CLIENT` the status is refused (1227): the role comes from
/// `read_only` alone, and the details say why.
#[tokio::test]
async fn without_replication_client_the_role_comes_from_read_only() {
    let db = server(
        true,
        Mysql8Spec {
            cached: true,
            facts: Facts {
                replication_client: false,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let o = probe(&db, "").await;
    assert_up_as_mysql(&o, &db);
    assert_eq!(detail(&o, "role"), "primary");
    let why = detail(&o, "replication").as_str().unwrap();
    assert!(
        why.starts_with("unknown: error 1227 (42000): Access denied; you need"),
        "{why}"
    );
}

/// A hostile login ends in `class`, in phase `auth`, within `limit` (the probe's
/// timeout is 5 s), and the password is not shown.
async fn hostile(
    how: Hostile,
    tls: bool,
    params: &str,
    class: ErrorType,
    limit: Duration,
) -> (Outcome, Mysql8) {
    let db = server(
        tls,
        Mysql8Spec {
            hostile: Some(how),
            ..Default::default()
        },
    )
    .await;
    let started = Instant::now();
    let o = probe(&db, params).await;
    let took = started.elapsed();
    assert_down(&o, class, Phase::Auth);
    assert!(took < limit, "{how:?} took {took:?}: {o:#?}");
    assert!(
        !format!("{o:#?}").contains(PASSWORD),
        "the password is shown: {o:#?}"
    );
    (o, db)
}

/// Well before the timeout: what the probe refuses, it refuses at once.
const SOON: Duration = Duration::from_secs(3);

#[tokio::test]
async fn an_endless_auth_more_data_loop_is_unexpected_response() {
    let (o, _) = hostile(
        Hostile::AuthMoreDataForever,
        true,
        "",
        ErrorType::UnexpectedResponse,
        SOON,
    )
    .await;
    assert!(o.message.contains("could not be answered"), "{}", o.message);
}

#[tokio::test]
async fn an_endless_auth_switch_loop_ends_after_eight_exchanges() {
    let (o, _) = hostile(
        Hostile::AuthSwitchForever,
        true,
        "",
        ErrorType::UnexpectedResponse,
        SOON,
    )
    .await;
    assert!(
        o.message.contains("did not end after 8 exchanges"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn an_absurd_packet_length_is_refused_unread() {
    let (o, _) = hostile(
        Hostile::HugePacket,
        true,
        "",
        ErrorType::UnexpectedResponse,
        SOON,
    )
    .await;
    assert!(o.message.contains("16777215 bytes"), "{}", o.message);
}

#[tokio::test]
async fn a_silent_login_is_a_timeout_in_phase_auth() {
    let (o, _) = hostile(
        Hostile::Silent,
        true,
        "",
        ErrorType::Timeout,
        Duration::from_secs(6),
    )
    .await;
    assert!(o.timings.get(Phase::Auth).is_some(), "{o:#?}");
}

/// A public key whose DER stops after its first byte is refused as unusable: the
/// run ends as `unexpected_response`, never in a panic.
#[tokio::test]
async fn a_truncated_public_key_is_unexpected_response() {
    let (o, _) = hostile(
        Hostile::TruncatedKey,
        false,
        "?ssl-mode=preferred&get-server-public-key=true",
        ErrorType::UnexpectedResponse,
        SOON,
    )
    .await;
    assert!(o.message.contains("RSA public key"), "{}", o.message);
}

/// A well-formed key with a 16 KiB public exponent is refused at once: encrypting
/// with it would hold the thread for 131,072 modular squarings.
#[tokio::test]
async fn a_public_key_with_a_huge_exponent_is_refused_at_once() {
    let (o, _) = hostile(
        Hostile::HugeExponentKey,
        false,
        "?ssl-mode=preferred&get-server-public-key=true",
        ErrorType::UnexpectedResponse,
        SOON,
    )
    .await;
    assert!(o.message.contains("RSA public key"), "{}", o.message);
}

/// A switch to `mysql_clear_password` asks for the password as it is: over an
/// unencrypted session the probe refuses, and the server never receives it; over
/// TLS it is sent, encrypted by the session (as for the full path).
#[tokio::test]
async fn a_switch_to_cleartext_is_refused_without_tls() {
    let (o, db) = hostile(
        Hostile::ClearPassword,
        false,
        "?ssl-mode=preferred&get-server-public-key=true",
        ErrorType::AuthRejected,
        SOON,
    )
    .await;
    assert!(o.message.contains("mysql_clear_password"), "{}", o.message);
    assert_eq!(db.logins(), [], "the password reached the server");

    let (_, db) = hostile(
        Hostile::ClearPassword,
        true,
        "",
        ErrorType::AuthRejected,
        SOON,
    )
    .await;
    let sent = Login {
        switched: true,
        ..login(AuthPath::ClearPasswordSent, true)
    };
    assert_eq!(db.logins(), [sent]);
}
