//! The `mysql` probe against real MariaDB servers (`tests/src/mariadb.rs`): one with
//! a valid certificate serves most cases (the client side decides unknown CA and
//! wrong name); expired, expiring and no-TLS servers, a source with its replica, and
//! the incident 03 server are started only by the tests that need them. At most
//! ten servers start in this binary (four shared, four for the two replication
//! tests, one for incident 03, one that counts aborted clients). Every test asserts the status, the class,
//! the phase and the facts a user sees.

use std::sync::OnceLock;
use std::time::SystemTime;

use depprobe_probes::kinds::role::REPLICATION_LINK_DOWN;
use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Severity, Status};
use depprobe_tests::harness::{Pki, assert_down, build_one, detail, finding};
use depprobe_tests::{Identity, MariaDb, MariaDbSpec, Validity, run_once};

/// The password of user `probe` on every server.
const PASSWORD: &str = "probe-pw-8d1e4b";

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new("MySQL Test").unwrap())
}

fn leaf(validity: Validity) -> Identity {
    pki().localhost(validity).unwrap()
}

/// Users: `probe` (native password), `edprobe` (ed25519, behind an auth switch).
fn users() -> Vec<String> {
    vec![
        format!("CREATE USER probe@'%' IDENTIFIED BY '{PASSWORD}'"),
        "GRANT SLAVE MONITOR ON *.* TO probe@'%'".into(),
        format!("CREATE USER edprobe@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{PASSWORD}')"),
    ]
}

fn server(tls: Option<Identity>) -> MariaDb {
    MariaDb::start(&MariaDbSpec {
        tls,
        setup_sql: users(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("starting MariaDB: {e}"))
}

fn good() -> &'static MariaDb {
    static S: OnceLock<MariaDb> = OnceLock::new();
    S.get_or_init(|| server(Some(leaf(Validity::current()))))
}

fn expired() -> &'static MariaDb {
    static S: OnceLock<MariaDb> = OnceLock::new();
    S.get_or_init(|| server(Some(leaf(Validity::expired()))))
}

fn expiring() -> &'static MariaDb {
    static S: OnceLock<MariaDb> = OnceLock::new();
    S.get_or_init(|| server(Some(leaf(Validity::expiring_in(10)))))
}

fn plain() -> &'static MariaDb {
    static S: OnceLock<MariaDb> = OnceLock::new();
    S.get_or_init(|| server(None))
}

/// The keys of one `mysql` probe with `url`, the password and the test root CA,
/// plus `extra` lines.
fn yaml(url: &str, extra: &str) -> String {
    format!(
        "name: db\nkind: mysql\nurl: {url}\npassword: {PASSWORD}\ntls:\n  ca_file: {}\n{extra}",
        pki().root_file.display()
    )
}

async fn probe(url: &str) -> Outcome {
    run_once(&yaml(url, "")).await.unwrap()
}

#[tokio::test]
async fn valid_chain_is_up_with_version_flavour_role_and_chain() {
    let o = probe(&format!("mysql://probe@localhost:{}/", good().port())).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "flavour"), "mariadb");
    let version = detail(&o, "server_version").as_str().unwrap();
    assert!(
        version.starts_with("10.11.") && version.contains("MariaDB"),
        "the real version, without MariaDB's 5.5.5- prefix: {o:#?}"
    );
    assert_eq!(detail(&o, "ssl_mode"), "verify_identity");
    assert_eq!(detail(&o, "tls_used"), true);
    assert_eq!(detail(&o, "role"), "primary");
    assert_eq!(detail(&o, "read_only"), false);
    assert_eq!(detail(&o, "auth_plugin"), "mysql_native_password");
    assert!(
        o.attributes
            .iter()
            .any(|(k, v)| *k == "db.system.name" && v == "mariadb"),
        "db.system.name follows the greeting: {:?}",
        o.attributes
    );
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.chain.len(), 2, "the server sends its intermediate");
    assert_eq!(tls.chain[0].subject, "O=depprobe test, CN=localhost");
    for phase in [Phase::Connect, Phase::Tls, Phase::Auth, Phase::Query] {
        assert!(o.timings.get(phase).is_some(), "{phase} timed: {o:#?}");
    }
    assert!(o.message.starts_with("MariaDB "), "{}", o.message);
    assert!(
        o.message.contains("primary: login as probe"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn ed25519_user_logs_in_after_an_auth_switch() {
    let o = probe(&format!("mysql://edprobe@localhost:{}/", good().port())).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "auth_plugin"), "client_ed25519");
}

#[tokio::test]
async fn ssl_mode_is_read_in_any_case() {
    let o = probe(&format!(
        "mysql://probe@localhost:{}/?ssl-mode=VERIFY_IDENTITY",
        good().port()
    ))
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn expired_leaf_is_cert_expired_with_the_chain_reported() {
    let o = probe(&format!("mysql://probe@localhost:{}/", expired().port())).await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    let tls = o
        .tls
        .as_ref()
        .expect("the chain is reported when verification fails");
    assert!(!tls.verified);
    assert!(tls.chain[0].not_after < SystemTime::now());
    assert!(
        o.timings.get(Phase::Auth).is_none(),
        "no login over a refused chain"
    );
}

#[tokio::test]
async fn unknown_ca_is_unknown_issuer_with_the_chain_reported() {
    let o = run_once(&format!(
        "name: db\nkind: mysql\nurl: mysql://probe@localhost:{}/\npassword: {PASSWORD}\n",
        good().port()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    let tls = o.tls.as_ref().unwrap();
    assert_eq!(
        tls.chain[1].subject,
        "O=depprobe test, CN=MySQL Test Issuing CA"
    );
}

#[tokio::test]
async fn wrong_name_fails_verify_identity_but_not_verify_ca() {
    let port = good().port();
    let o = probe(&format!("mysql://probe@127.0.0.1:{port}/")).await;
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
    let o = probe(&format!(
        "mysql://probe@127.0.0.1:{port}/?ssl-mode=verify_ca"
    ))
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(
        o.findings.is_empty(),
        "verify_ca does not check the name: {o:#?}"
    );
}

#[tokio::test]
async fn required_with_an_untrusted_certificate_is_degraded_cert_invalid() {
    let o = run_once(&format!(
        "name: db\nkind: mysql\nurl: mysql://probe@localhost:{}/?ssl-mode=required\npassword: {PASSWORD}\n",
        good().port()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = finding(&o, FindingType::CERT_INVALID);
    assert_eq!(f.severity, Severity::Critical);
    assert!(!o.tls.as_ref().unwrap().verified);
}

#[tokio::test]
async fn a_server_without_tls_is_tls_not_offered_unless_preferred() {
    let port = plain().port();
    let o = probe(&format!(
        "mysql://probe@localhost:{port}/?ssl-mode=required"
    ))
    .await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
    let o = probe(&format!("mysql://probe@localhost:{port}/")).await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
    let o = probe(&format!(
        "mysql://probe@localhost:{port}/?ssl-mode=preferred"
    ))
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "tls_used"), false);
    assert!(o.message.contains("in plaintext"), "{}", o.message);
}

#[tokio::test]
async fn bad_password_is_auth_rejected_and_never_shown() {
    let o = run_once(&format!(
        "name: db\nkind: mysql\nurl: mysql://probe:wrong-pw-77c1@localhost:{}/\ntls:\n  ca_file: {}\n",
        good().port(),
        pki().root_file.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(o.message.contains("1045"), "{}", o.message);
    let json = serde_json::to_string(&o).unwrap();
    assert!(!json.contains("wrong-pw-77c1"), "{json}");
}

#[tokio::test]
async fn failing_query_is_query_failed_with_the_server_error() {
    let o = run_once(&yaml(
        &format!("mysql://probe@localhost:{}/", good().port()),
        "query: SELECT * FROM nowhere.nothing\n",
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::QueryFailed, Phase::Query);
    assert!(
        o.message.contains("error 1146") || o.message.contains("error 1142"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn ten_days_from_expiry_is_degraded_cert_expiring() {
    let o = probe(&format!("mysql://probe@localhost:{}/", expiring().port())).await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = finding(&o, FindingType::CERT_EXPIRING);
    assert_eq!(f.severity, Severity::Warning);
}

/// A source and its replica, both with a valid certificate; `probe` and the
/// replication user come to the replica through replication.
fn source_and_replica() -> (MariaDb, MariaDb) {
    let mut setup = users();
    setup.push("CREATE USER repl@'%' IDENTIFIED BY 'repl-pw'".into());
    setup.push("GRANT REPLICATION SLAVE ON *.* TO repl@'%'".into());
    let source = MariaDb::start(&MariaDbSpec {
        tls: Some(leaf(Validity::current())),
        setup_sql: setup,
        server_id: Some(1),
        ..Default::default()
    })
    .unwrap();
    let replica = source
        .replica(
            &MariaDbSpec {
                tls: Some(leaf(Validity::current())),
                server_id: Some(2),
                ..Default::default()
            },
            "repl",
            "repl-pw",
        )
        .unwrap();
    (source, replica)
}

#[tokio::test]
async fn a_replica_names_its_source_and_a_promotion_is_role_changed() {
    let (source, replica) = tokio::task::spawn_blocking(source_and_replica)
        .await
        .unwrap();
    let p = build_one(&yaml(
        &format!("mysql://probe@localhost:{}/", replica.port()),
        "",
    ))
    .unwrap();
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "role"), "replica");
    assert_eq!(
        detail(&o, "replication_source"),
        &serde_json::Value::from(format!("127.0.0.1:{}", source.port()))
    );
    assert_eq!(detail(&o, "replication_link"), "io=Yes sql=Yes");

    replica.sql("STOP SLAVE; RESET SLAVE ALL").unwrap();
    let o = p.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(detail(&o, "role"), "primary");
    let f = finding(&o, FindingType::ROLE_CHANGED);
    assert_eq!(f.facts["from"], "replica");
    assert_eq!(f.facts["to"], "primary");

    // read_only is an honest role of its own: writes are refused.
    replica.sql("SET GLOBAL read_only = 1").unwrap();
    let o = p.run().await;
    assert_eq!(detail(&o, "read_only"), true);
    assert_eq!(detail(&o, "role"), "read_only");
    assert!(
        o.findings
            .iter()
            .any(|f| f.kind == FindingType::ROLE_CHANGED),
        "{o:#?}"
    );
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "no change, no finding: {o:#?}");
}

#[tokio::test]
async fn a_replica_whose_source_is_gone_is_degraded_link_down() {
    let (source, replica) = tokio::task::spawn_blocking(source_and_replica)
        .await
        .unwrap();
    // The replica's I/O thread stopped by hand: the link is down, as after a source
    // that went away.
    replica.sql("STOP SLAVE IO_THREAD").unwrap();
    let o = probe(&format!("mysql://probe@localhost:{}/", replica.port())).await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = finding(&o, REPLICATION_LINK_DOWN);
    assert_eq!(
        f.facts["source"],
        serde_json::Value::from(format!("127.0.0.1:{}", source.port()))
    );
    drop(source);
}

/// Incident 03, replayed against MySQL: the application connects with
/// `ssl-mode=required` and keeps working when the provider's certificate expires. A
/// probe configured the same way warns 13 days ahead, and on the day connects and
/// flags the expired certificate as `cert_invalid`; a verifying probe is down.
#[tokio::test]
async fn incident_03_provider_certificate_expires_under_required() {
    let db = tokio::task::spawn_blocking(|| server(Some(leaf(Validity::expiring_in(13)))))
        .await
        .unwrap();
    let lax = build_one(&yaml(
        &format!("mysql://probe@localhost:{}/?ssl-mode=required", db.port()),
        "",
    ))
    .unwrap();
    let o = lax.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert!(
        o.findings
            .iter()
            .any(|f| f.kind == FindingType::CERT_EXPIRING),
        "{o:#?}"
    );

    db.replace_certificate(&leaf(Validity::expired())).unwrap();
    let o = lax.run().await;
    assert_eq!(
        o.status,
        Status::Degraded,
        "the lax session still works: {o:#?}"
    );
    let f = finding(&o, FindingType::CERT_INVALID);
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.message.contains("expired"), "{}", f.message);

    let o = probe(&format!("mysql://probe@localhost:{}/", db.port())).await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
}

/// Issue 15's "done when", under the real agent binary: a `mysql` and a `redis`
/// probe in one `depprobe run` are up in `/status`, exported in `/metrics`, sent
/// over OTLP as spans with `db.system.name` `mariadb` and `redis`, and pass
/// `depprobe check`; their passwords (read from files) appear in none of these
/// nor in the log.
#[tokio::test]
async fn the_agent_runs_mysql_and_redis_in_status_metrics_otlp_and_check() {
    use depprobe_tests::agent_process::{AgentProcess, depprobe_bin};
    use depprobe_tests::otlp::OtlpReceiver;
    use depprobe_tests::{RedisServer, RedisSpec, Scratch};

    const REDIS_PASSWORD: &str = "redis-pw-51c0aa";
    let bin = depprobe_bin();
    assert!(
        bin.is_file(),
        "{} does not exist: `cargo test --workspace` builds it; alone, run `cargo build -p depprobe-agent` first or set DEPPROBE_BIN",
        bin.display()
    );
    let redis = RedisServer::start(&RedisSpec {
        tls: Some(leaf(Validity::current())),
        users: vec![format!("probe on >{REDIS_PASSWORD} ~* &* +@all")],
        ..Default::default()
    })
    .unwrap();
    let receiver = OtlpReceiver::start().await.unwrap();
    let scratch = Scratch::new().unwrap();
    let mysql_pw = scratch.write("mysql_password", PASSWORD).unwrap();
    let redis_pw = scratch.write("redis_password", REDIS_PASSWORD).unwrap();
    let config = scratch
        .write(
            "depprobe.yaml",
            &format!(
                "agent:\n  interval: 1s\n  timeout: 10s\n  listen: 127.0.0.1:0\ntelemetry:\n  otlp:\n    endpoint: {}\n    metrics_interval: 500ms\ndefaults:\n  tls:\n    ca_file: {}\nprobes:\n  - name: orders-mysql\n    kind: mysql\n    url: mysql://probe@localhost:{}/\n    password_file: {}\n  - name: sessions-cache\n    kind: redis\n    url: rediss://probe@localhost:{}/0\n    password_file: {}\n",
                receiver.grpc_endpoint(),
                pki().root_file.display(),
                good().port(),
                mysql_pw.display(),
                redis.port(),
                redis_pw.display()
            ),
        )
        .unwrap();
    let agent = AgentProcess::start(&bin, &config, &scratch.path("agent.log"), &[])
        .await
        .unwrap();

    let systems = ["mariadb", "redis"];
    let received = receiver.received();
    let exported = received
        .wait_for(std::time::Duration::from_secs(60), |r| {
            let spans = r.spans();
            systems.iter().all(|s| {
                spans
                    .iter()
                    .any(|sp| sp.attr("db.system.name").as_deref() == Some(*s))
            })
        })
        .await;
    assert!(
        exported,
        "no spans of both kinds; log:\n{}",
        agent.log_text()
    );

    let status = agent.status().await.unwrap();
    for name in ["orders-mysql", "sessions-cache"] {
        let entry = status
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in /status: {status:#}"));
        assert_eq!(entry["status"], "up", "{entry:#}");
    }
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    for name in ["orders-mysql", "sessions-cache"] {
        let label = format!("probe_name=\"{name}\"");
        assert!(
            metrics.lines().any(|l| l.starts_with("probe_success{")
                && l.contains(&label)
                && l.ends_with(" 1")),
            "probe_success of {name}: {metrics}"
        );
    }

    let check = std::process::Command::new(&bin)
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{printed}");
    assert!(
        printed.contains("orders-mysql") && printed.contains("sessions-cache"),
        "{printed}"
    );

    let exported = format!("{:?}", receiver.received().spans());
    for secret in [PASSWORD, REDIS_PASSWORD] {
        for (place, text) in [
            ("/status", status.to_string()),
            ("/metrics", metrics.clone()),
            ("OTLP", exported.clone()),
            ("the log", agent.log_text()),
            ("check", printed.clone()),
        ] {
            assert!(!text.contains(secret), "{place} holds a password");
        }
    }
}

/// A probe ends its session with `COM_QUIT` and a TLS `close_notify`: the server
/// counts no aborted client, so probing every 30 seconds does not fill its log with
/// "Aborted connection" warnings. Runs that end in `query_failed` quit too.
#[tokio::test]
async fn probes_say_goodbye_and_leave_no_aborted_connection() {
    let db = server(Some(leaf(Validity::current())));
    let url = format!("mysql://probe@localhost:{}/", db.port());
    for _ in 0..3 {
        assert_eq!(probe(&url).await.status, Status::Up);
    }
    let failing = run_once(&yaml(&url, "query: SELECT * FROM no_such_table\n"))
        .await
        .unwrap();
    assert_down(&failing, ErrorType::QueryFailed, Phase::Query);
    let aborted = db.sql("SHOW GLOBAL STATUS LIKE 'Aborted_clients'").unwrap();
    assert_eq!(aborted.split_whitespace().nth(1), Some("0"), "{aborted}");
}
