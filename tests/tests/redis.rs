//! The `redis` probe against real Redis servers (`tests/src/redis.rs`), one started
//! for each case with the certificate, password, ACL users or replication the case
//! proves. Every test asserts the status, the class, the phase and the facts a user
//! sees.

use std::sync::OnceLock;
use std::time::SystemTime;

use depprobe_probes::kinds::role::REPLICATION_LINK_DOWN;
use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Severity, Status};
use depprobe_tests::harness::{Pki, assert_down, build_one, detail, finding};
use depprobe_tests::{Identity, RedisServer, RedisSpec, Validity, closed_port, run_once};

/// The password of ACL user `probe` on every server.
const PASSWORD: &str = "probe-pw-3a9f07";

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new("Redis Test").unwrap())
}

fn leaf(validity: Validity) -> Identity {
    pki().localhost(validity).unwrap()
}

/// ACL users: `probe` (enabled) and `gone` (disabled).
fn users() -> Vec<String> {
    vec![
        format!("probe on >{PASSWORD} ~* &* +@all"),
        format!("gone off >{PASSWORD} ~* &* +@all"),
    ]
}

fn start(spec: RedisSpec) -> RedisServer {
    RedisServer::start(&RedisSpec {
        users: users(),
        ..spec
    })
    .unwrap_or_else(|e| panic!("starting redis: {e}"))
}

fn tls(validity: Validity) -> RedisServer {
    start(RedisSpec {
        tls: Some(leaf(validity)),
        ..Default::default()
    })
}

/// The keys of one `redis` probe with `url`, the password and the test root CA.
fn yaml(url: &str) -> String {
    format!(
        "name: cache\nkind: redis\nurl: {url}\npassword: {PASSWORD}\ntls:\n  ca_file: {}\n",
        pki().root_file.display()
    )
}

async fn probe(url: &str) -> Outcome {
    run_once(&yaml(url)).await.unwrap()
}

#[tokio::test]
async fn valid_chain_is_up_with_version_and_role() {
    let s = tls(Validity::current());
    let o = probe(&format!("rediss://probe@localhost:{}/0", s.port())).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "flavour"), "redis");
    assert!(
        detail(&o, "server_version")
            .as_str()
            .unwrap()
            .starts_with('7'),
        "{o:#?}"
    );
    assert_eq!(detail(&o, "role"), "master");
    assert_eq!(detail(&o, "tls_used"), true);
    assert!(
        o.attributes
            .iter()
            .any(|(k, v)| *k == "db.system.name" && v == "redis"),
        "{:?}",
        o.attributes
    );
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.chain.len(), 2, "the server sends its intermediate");
    for phase in [Phase::Connect, Phase::Tls, Phase::Auth, Phase::Request] {
        assert!(o.timings.get(phase).is_some(), "{phase} timed: {o:#?}");
    }
    assert!(
        o.message.contains("(master): PING OK over TLS"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn expired_leaf_is_cert_expired_with_the_chain_reported() {
    let s = tls(Validity::expired());
    let o = probe(&format!("rediss://probe@localhost:{}", s.port())).await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    let tls = o.tls.as_ref().unwrap();
    assert!(!tls.verified);
    assert!(tls.chain[0].not_after < SystemTime::now());
}

#[tokio::test]
async fn unknown_ca_is_unknown_issuer() {
    let s = tls(Validity::current());
    let o = run_once(&format!(
        "name: cache\nkind: redis\nurl: rediss://probe@localhost:{}\npassword: {PASSWORD}\n",
        s.port()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert!(!o.tls.as_ref().unwrap().chain.is_empty());
}

/// redis-cli's verdict on `host:port` over TLS with the test root CA: whether
/// `PING` got `PONG`, and what it printed.
async fn redis_cli_pings(host: &str, port: u16) -> (bool, String) {
    let out = tokio::process::Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&pki().root_file)
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "--user",
            "probe",
            "--pass",
            PASSWORD,
        ])
        .args(["--no-auth-warning", "PING"])
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("PONG"), text)
}

/// redis-cli (hiredis) verifies the chain but not the name: a certificate for
/// another name connects, so the probe is up, with a `cert_legacy` notice naming
/// the clients that refuse it; `tls.strict` and the `webpki` profile fail it.
#[tokio::test]
async fn wrong_name_under_rediss_is_up_as_redis_cli_with_a_notice() {
    let s = tls(Validity::current());
    let url = format!("rediss://probe@127.0.0.1:{}", s.port());
    let o = probe(&url).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    let notice = o
        .findings
        .iter()
        .find(|f| f.kind == FindingType::CERT_LEGACY)
        .unwrap_or_else(|| panic!("no cert_legacy: {o:#?}"));
    assert_eq!(notice.facts["legacy"], "name_unchecked", "{notice:#?}");
    assert!(notice.message.contains("go-redis"), "{}", notice.message);
    let (pong, text) = redis_cli_pings("127.0.0.1", s.port()).await;
    assert!(pong, "redis-cli connects too: {text}");
    for extra in ["  strict: true\n", "  client_profile: webpki\n"] {
        let o = run_once(&format!("{}{extra}", yaml(&url))).await.unwrap();
        assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
    }
}

#[tokio::test]
async fn a_plaintext_port_behind_rediss_is_tls_not_offered() {
    let s = start(RedisSpec::default());
    let o = probe(&format!("rediss://probe@localhost:{}", s.port())).await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
    let o = probe(&format!("redis://probe@localhost:{}", s.port())).await;
    assert_eq!(
        o.status,
        Status::Up,
        "redis:// is plaintext when written so: {o:#?}"
    );
    assert_eq!(detail(&o, "tls_used"), false);
}

#[tokio::test]
async fn wrong_password_and_disabled_user_are_auth_rejected() {
    let s = tls(Validity::current());
    let o = run_once(&format!(
        "name: cache\nkind: redis\nurl: rediss://probe:not-it-5e2@localhost:{}\ntls:\n  ca_file: {}\n",
        s.port(),
        pki().root_file.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(o.message.contains("WRONGPASS"), "{}", o.message);
    assert!(!serde_json::to_string(&o).unwrap().contains("not-it-5e2"));
    let o = probe(&format!("rediss://gone@localhost:{}", s.port())).await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
}

#[tokio::test]
async fn noauth_without_a_password_is_auth_rejected() {
    let s = start(RedisSpec {
        tls: Some(leaf(Validity::current())),
        requirepass: Some("default-pw-11".into()),
        ..Default::default()
    });
    let o = run_once(&format!(
        "name: cache\nkind: redis\nurl: rediss://localhost:{}\ntls:\n  ca_file: {}\n",
        s.port(),
        pki().root_file.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(o.message.contains("NOAUTH"), "{}", o.message);
    assert!(o.message.contains("none is configured"), "{}", o.message);
}

#[tokio::test]
async fn ten_days_from_expiry_is_degraded_cert_expiring() {
    let s = tls(Validity::expiring_in(10));
    let o = probe(&format!("rediss://probe@localhost:{}", s.port())).await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = finding(&o, FindingType::CERT_EXPIRING);
    assert_eq!(f.severity, Severity::Warning);
}

async fn client_cert_required(protocols: Option<&str>) {
    let s = start(RedisSpec {
        tls: Some(leaf(Validity::current())),
        client_ca: Some(pki().root.pem.clone()),
        tls_protocols: protocols.map(str::to_owned),
        ..Default::default()
    });
    let o = probe(&format!("rediss://probe@localhost:{}", s.port())).await;
    assert_down(&o, ErrorType::TlsClientCertRequired, Phase::Tls);
}

#[tokio::test]
async fn tls_auth_clients_yes_is_client_cert_required() {
    client_cert_required(Some("TLSv1.2")).await;
}

#[tokio::test]
async fn tls_auth_clients_yes_is_client_cert_required_under_tls13() {
    client_cert_required(Some("TLSv1.3")).await;
}

#[tokio::test]
async fn a_replica_names_its_master_and_a_promotion_is_role_changed() {
    let master = start(RedisSpec::default());
    let replica = start(RedisSpec {
        replica_of: Some(master.port()),
        masterauth: true,
        ..Default::default()
    });
    // WAIT returns once the replica has acknowledged: its link is up.
    let acked = master
        .cli(Some(PASSWORD), &["--user", "probe", "WAIT", "1", "30000"])
        .unwrap();
    assert_eq!(acked.trim(), "1");
    let p = build_one(&yaml(&format!(
        "redis://probe@localhost:{}",
        replica.port()
    )))
    .unwrap();
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "role"), "replica");
    assert_eq!(
        detail(&o, "master"),
        &serde_json::Value::from(format!("127.0.0.1:{}", master.port()))
    );
    assert_eq!(detail(&o, "master_link_status"), "up");

    replica
        .cli(
            Some(PASSWORD),
            &["--user", "probe", "REPLICAOF", "NO", "ONE"],
        )
        .unwrap();
    let o = p.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(detail(&o, "role"), "master");
    let f = finding(&o, FindingType::ROLE_CHANGED);
    assert_eq!(f.facts["from"], "replica");
    assert_eq!(f.facts["to"], "master");
}

#[tokio::test]
async fn a_replica_without_its_master_is_degraded_link_down() {
    let gone = closed_port().await.unwrap();
    let replica = start(RedisSpec {
        replica_of: Some(gone),
        ..Default::default()
    });
    let o = probe(&format!("redis://probe@localhost:{}", replica.port())).await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(detail(&o, "master_link_status"), "down");
    let f = finding(&o, REPLICATION_LINK_DOWN);
    assert_eq!(
        f.facts["source"],
        serde_json::Value::from(format!("127.0.0.1:{gone}"))
    );
    assert_eq!(f.severity, Severity::Critical);
}
