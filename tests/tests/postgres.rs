//! The `postgres` probe against real PostgreSQL 15 clusters, each started for the case
//! it proves (a certificate, `ssl = off`, a client-certificate requirement) and shared
//! by every test of this binary that needs it. Every test asserts the status, the
//! class, the phase and the facts a user sees.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Probe, ProbeEnv, Severity, Status};
use depprobe_tests::{
    Ca, Cluster, ClusterSpec, DirectTlsFront, Identity, RawServer, Scratch, SilentServer, Validity,
    closed_port, run_once,
};

/// The password of role `probe` on every cluster.
const PASSWORD: &str = "probe-pw-5f2c9a";

/// The test CA (a root and an issuing intermediate), its root in a file, and the
/// certificates every cluster is made from.
struct Pki {
    root: Ca,
    issuing: Ca,
    files: PathBuf,
    root_file: PathBuf,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let root = Ca::root("PG Test Root CA").unwrap();
        let issuing = root
            .intermediate("PG Test Issuing CA", Validity::days(-100, 1000))
            .unwrap();
        let files = depprobe_tests::postgres::files_dir().unwrap();
        let root_file = files.join("pg-test-root.pem");
        std::fs::write(&root_file, &root.pem).unwrap();
        Pki {
            root,
            issuing,
            files,
            root_file,
        }
    })
}

/// Roles every cluster has: `probe` (the probe's login) and `rejected` (refused by a
/// pg_hba `reject` line where there is one).
fn roles() -> Vec<String> {
    vec![
        format!("CREATE ROLE probe LOGIN PASSWORD '{PASSWORD}'"),
        "CREATE ROLE rejected LOGIN PASSWORD 'rejected-pw'".into(),
        "SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5-pw-31b7'".into(),
    ]
}

fn cluster(name: &str, tls: Option<Identity>, client_ca: Option<String>, hba: &[&str]) -> Cluster {
    Cluster::start(&ClusterSpec {
        name: name.into(),
        tls,
        client_ca,
        hba: hba.iter().map(|l| (*l).to_owned()).collect(),
        setup_sql: roles(),
    })
    .unwrap_or_else(|e| panic!("starting cluster {name}: {e}"))
}

fn leaf(validity: Validity) -> Identity {
    pki().issuing.leaf(&["localhost"], validity).unwrap()
}

/// A valid certificate for `localhost`; plaintext refused; one role refused by name.
fn good() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        cluster(
            "good",
            Some(leaf(Validity::current())),
            None,
            &[
                "hostnossl all all 127.0.0.1/32 reject",
                "host all rejected 127.0.0.1/32 reject",
                "host all md5user 127.0.0.1/32 md5",
                "host all all 127.0.0.1/32 scram-sha-256",
            ],
        )
    })
}

const ANY_SCRAM: &[&str] = &["host all all 127.0.0.1/32 scram-sha-256"];

fn expired() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| cluster("expired", Some(leaf(Validity::expired())), None, ANY_SCRAM))
}

fn expiring() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        cluster(
            "expiring",
            Some(leaf(Validity::expiring_in(10))),
            None,
            ANY_SCRAM,
        )
    })
}

fn untrusted() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        let other = Ca::root("Internal Fallback CA").unwrap();
        let id = other.leaf(&["localhost"], Validity::current()).unwrap();
        cluster("untrusted", Some(id), None, ANY_SCRAM)
    })
}

/// `ssl = off`.
fn plain() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| cluster("plain", None, None, ANY_SCRAM))
}

/// Every TCP client must present a certificate from the test CA whose CN is its role.
fn clientcert() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        cluster(
            "clientcert",
            Some(leaf(Validity::current())),
            Some(pki().root.pem.clone()),
            &["hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full"],
        )
    })
}

/// The keys of one `postgres` probe with `url`, the password and the test root CA as
/// `sslrootcert`, plus `extra` lines.
fn probe_yaml(url: &str, extra: &str) -> String {
    format!(
        "name: db\nkind: postgres\nurl: {url}\npassword: {PASSWORD}\nsslrootcert: {}\n{extra}",
        pki().root_file.display()
    )
}

async fn probe(url: &str, extra: &str) -> Outcome {
    run_once(&probe_yaml(url, extra)).await.unwrap()
}

/// A probe built once, to run several times (role and password-file changes).
fn built(probe_yaml: &str) -> Box<dyn Probe> {
    let mut yaml = String::from("probes:\n");
    for (i, line) in probe_yaml.trim_end().lines().enumerate() {
        yaml.push_str(if i == 0 { "  - " } else { "    " });
        yaml.push_str(line);
        yaml.push('\n');
    }
    let cfg = depprobe_tests::harness::config(&yaml).unwrap();
    depprobe_probes::build(&cfg.probes[0], &ProbeEnv::system().unwrap()).unwrap()
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

fn detail<'o>(o: &'o Outcome, key: &str) -> &'o serde_json::Value {
    o.details
        .get(key)
        .unwrap_or_else(|| panic!("no detail {key}: {o:#?}"))
}

#[tokio::test]
async fn valid_chain_is_up_with_server_version_role_and_chain() {
    let c = good();
    let o = probe(
        &format!("postgres://probe@localhost:{}/postgres", c.port()),
        "",
    )
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(
        detail(&o, "server_version")
            .as_str()
            .unwrap()
            .starts_with("15."),
        "{o:#?}"
    );
    assert_eq!(detail(&o, "role"), "primary");
    assert_eq!(detail(&o, "tls_used"), true);
    assert_eq!(detail(&o, "sslmode"), "verify-full");
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.version.as_deref(), Some("1.3"));
    assert_eq!(tls.chain.len(), 2, "the server sends its intermediate");
    assert_eq!(tls.chain[0].subject, "O=depprobe test, CN=localhost");
    assert_eq!(
        tls.chain[1].subject,
        "O=depprobe test, CN=PG Test Issuing CA"
    );
    for phase in [Phase::Connect, Phase::Tls, Phase::Auth, Phase::Query] {
        assert!(o.timings.get(phase).is_some(), "{phase} timed: {o:#?}");
    }
    assert!(o.message.starts_with("PostgreSQL 15."), "{}", o.message);
    assert!(
        o.message.contains(", primary: login as probe"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn expired_certificate_is_cert_expired_with_its_dates_and_issuer() {
    let c = expired();
    let o = probe(
        &format!("postgres://probe@localhost:{}/postgres", c.port()),
        "",
    )
    .await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(
        o.message.contains("localhost (leaf) expired"),
        "{}",
        o.message
    );
    assert!(o.message.contains("not after"), "{}", o.message);
    assert!(
        o.message.contains("issued by PG Test Issuing CA"),
        "{}",
        o.message
    );
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

/// Incident 03: the application connected with `sslmode=require` and kept working
/// on an expired certificate; the probe, configured the same way, connects too and
/// says the certificate is expired.
#[tokio::test]
async fn expired_certificate_under_require_connects_but_is_flagged_cert_invalid() {
    let c = expired();
    let o = run_once(&format!(
        "name: db\nkind: postgres\nurl: postgres://probe@localhost:{}/postgres?sslmode=require\npassword: {PASSWORD}\ntls:\n  ca_file: {}\n",
        c.port(),
        pki().root_file.display()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(detail(&o, "tls_used"), true);
    assert_eq!(detail(&o, "sslmode"), "require");
    assert_eq!(
        detail(&o, "role"),
        "primary",
        "the login and query went ahead"
    );
    let invalid: Vec<_> = o
        .findings
        .iter()
        .filter(|f| f.kind == FindingType::CERT_INVALID)
        .collect();
    assert_eq!(invalid.len(), 1, "{o:#?}");
    let f = invalid[0];
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.facts["error_type"], "tls_cert_expired");
    assert_eq!(f.facts["issuer"], "O=depprobe test, CN=PG Test Issuing CA");
    assert!(f.facts.contains_key("not_after"), "{f:#?}");
    assert!(f.message.contains("expired"), "{}", f.message);
    assert!(!o.tls.as_ref().unwrap().verified);
    assert!(
        o.message.contains("localhost (leaf) expired"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn unknown_ca_is_unknown_issuer_and_require_with_sslrootcert_verifies_the_chain() {
    let c = untrusted();
    let url = format!("postgres://probe@localhost:{}/postgres", c.port());
    let o = probe(&url, "").await;
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert!(o.message.contains("Internal Fallback CA"), "{}", o.message);
    assert_eq!(
        o.tls.as_ref().unwrap().chain[0].issuer,
        "O=depprobe test, CN=Internal Fallback CA"
    );
    // libpq: `require` with a root CA file behaves as `verify-ca`.
    let o = probe(&format!("{url}?sslmode=require"), "").await;
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert_eq!(detail(&o, "sslmode"), "verify-ca");
    // `prefer` does not enforce the chain: the session works, the issuer is flagged.
    let o = probe(&format!("{url}?sslmode=prefer"), "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CERT_INVALID);
    assert_eq!(o.findings[0].facts["error_type"], "tls_unknown_issuer");
    assert_eq!(
        o.findings[0].facts["issuer"],
        "O=depprobe test, CN=Internal Fallback CA"
    );
    assert_eq!(detail(&o, "tls_used"), true);
}

#[tokio::test]
async fn wrong_host_name_fails_verify_full_but_is_up_under_verify_ca() {
    let c = good();
    let url = format!("postgres://probe@127.0.0.1:{}/postgres", c.port());
    let o = probe(&url, "").await;
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
    assert!(
        o.message
            .contains("not valid for 127.0.0.1 (it covers localhost)"),
        "{}",
        o.message
    );
    let o = probe(&format!("{url}?sslmode=verify-ca"), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.findings.is_empty(), "{o:#?}");
    assert!(o.tls.as_ref().unwrap().verified, "the chain verified");
    assert_eq!(detail(&o, "sslmode"), "verify-ca");
}

#[tokio::test]
async fn ssl_off_is_tls_not_offered_under_require_and_plaintext_under_prefer() {
    let c = plain();
    let url = format!("postgres://probe@localhost:{}/postgres", c.port());
    let o = probe(&format!("{url}?sslmode=require"), "").await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
    assert!(
        o.message.contains("answered N to the SSLRequest"),
        "{}",
        o.message
    );
    assert!(o.tls.is_none());

    let o = probe(&format!("{url}?sslmode=prefer"), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "tls_used"), false);
    assert!(o.message.contains("TLS was not used"), "{}", o.message);
    assert!(o.message.contains("sslmode=prefer"), "{}", o.message);
    assert!(o.tls.is_none());
    assert_eq!(detail(&o, "role"), "primary");
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_with_its_sqlstate_and_never_shown() {
    let c = good();
    let o = run_once(&format!(
        "name: db\nkind: postgres\nurl: postgres://probe:not-the-pw-9a1@localhost:{}/postgres\nsslrootcert: {}\n",
        c.port(),
        pki().root_file.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(o.message.contains("SQLSTATE 28P01"), "{}", o.message);
    let json = serde_json::to_string(&o).unwrap();
    assert!(!json.contains("not-the-pw-9a1"), "{json}");
    assert!(o.tls.as_ref().unwrap().verified, "TLS was fine");
}

#[tokio::test]
async fn pg_hba_reject_and_hostnossl_lines_are_auth_rejected() {
    let c = good();
    let o = run_once(&format!(
        "name: db\nkind: postgres\nurl: postgres://rejected@localhost:{}/postgres\npassword: rejected-pw\nsslrootcert: {}\n",
        c.port(),
        pki().root_file.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(o.message.contains("SQLSTATE 28000"), "{}", o.message);

    // `hostnossl ... reject`: the server refuses plaintext sessions.
    let o = probe(
        &format!(
            "postgres://probe@localhost:{}/postgres?sslmode=disable",
            c.port()
        ),
        "",
    )
    .await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(o.message.contains("SQLSTATE 28000"), "{}", o.message);
    assert_eq!(detail(&o, "tls_used"), false);
    assert!(
        o.timings.get(Phase::Tls).is_none(),
        "no TLS under sslmode=disable"
    );
}

#[tokio::test]
async fn md5_password_login_works() {
    let c = good();
    let o = run_once(&format!(
        "name: db\nkind: postgres\nhost: localhost\nport: {}\nuser: md5user\ndbname: postgres\npassword: md5-pw-31b7\nsslrootcert: {}\n",
        c.port(),
        pki().root_file.display()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn failing_query_is_query_failed_with_its_sqlstate() {
    let c = good();
    let o = probe(
        &format!("postgres://probe@localhost:{}/postgres", c.port()),
        "query: SELECT * FROM no_such_table",
    )
    .await;
    assert_down(&o, ErrorType::QueryFailed, Phase::Query);
    assert!(o.message.contains("SQLSTATE 42P01"), "{}", o.message);
    assert!(o.message.contains("no_such_table"), "{}", o.message);
    assert!(
        detail(&o, "server_version")
            .as_str()
            .unwrap()
            .starts_with("15."),
        "known from the login: {o:#?}"
    );
}

#[tokio::test]
async fn unknown_database_is_refused_at_login_with_its_sqlstate() {
    let c = good();
    let o = probe(
        &format!("postgres://probe@localhost:{}/no_such_db", c.port()),
        "",
    )
    .await;
    assert_down(&o, ErrorType::QueryFailed, Phase::Auth);
    assert!(o.message.contains("SQLSTATE 3D000"), "{}", o.message);
}

#[tokio::test]
async fn expected_value_is_checked() {
    let c = good();
    let url = format!("postgres://probe@localhost:{}/postgres", c.port());
    let o = probe(&url, "query: SELECT 41 + 1\nexpect:\n  value: \"42\"").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    let o = probe(&url, "query: SELECT 41\nexpect:\n  value: \"42\"").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Query);
    assert!(
        o.message
            .contains("the query returned `41` where `42` was expected"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn client_certificate_required_is_named_without_one_and_up_with_one() {
    let c = clientcert();
    let url = format!("postgres://probe@localhost:{}/postgres", c.port());
    let o = probe(&url, "").await;
    assert_down(&o, ErrorType::TlsClientCertRequired, Phase::Auth);
    assert!(o.message.contains("SQLSTATE 28000"), "{}", o.message);
    assert!(o.message.contains("sslcert"), "{}", o.message);

    // clientcert=verify-full: the certificate's CN is the role.
    let id = pki().issuing.leaf(&["probe"], Validity::current()).unwrap();
    let (crt, key) = id.write(&pki().files, "probe-client").unwrap();
    private(&key);
    let o = probe(
        &url,
        &format!("sslcert: {}\nsslkey: {}", crt.display(), key.display()),
    )
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "tls_used"), true);
}

#[tokio::test]
async fn client_certificate_from_an_unknown_ca_is_rejected_in_tls() {
    let c = clientcert();
    let other = Ca::root("Stranger CA").unwrap();
    let id = other.leaf(&["probe"], Validity::current()).unwrap();
    let (crt, key) = id.write(&pki().files, "stranger-client").unwrap();
    private(&key);
    let o = probe(
        &format!("postgres://probe@localhost:{}/postgres", c.port()),
        &format!("sslcert: {}\nsslkey: {}", crt.display(), key.display()),
    )
    .await;
    assert_down(&o, ErrorType::TlsClientCertRequired, Phase::Tls);
    assert!(
        o.message.contains("rejected the client certificate"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn certificate_ten_days_from_expiry_is_degraded() {
    let c = expiring();
    let o = probe(
        &format!("postgres://probe@localhost:{}/postgres", c.port()),
        "",
    )
    .await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    let f = &o.findings[0];
    assert_eq!(f.kind, FindingType::CERT_EXPIRING);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.facts["days_left"], 10.0);
    assert!(o.message.contains("expires in 10 days"), "{}", o.message);
    assert_eq!(detail(&o, "role"), "primary");
}

#[tokio::test]
async fn silent_server_is_a_timeout_in_tls_naming_the_ssl_request() {
    let server = SilentServer::start().await.unwrap();
    let o = probe(
        &format!(
            "postgres://probe@127.0.0.1:{}/postgres",
            server.addr().port()
        ),
        "timeout: 1s",
    )
    .await;
    assert_down(&o, ErrorType::Timeout, Phase::Tls);
    assert!(
        o.message
            .contains("did not answer the SSLRequest within 1s"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn connect_timeout_bounds_the_session_setup() {
    let server = SilentServer::start().await.unwrap();
    let o = probe(
        &format!(
            "postgres://probe@127.0.0.1:{}/postgres?connect_timeout=1",
            server.addr().port()
        ),
        "",
    )
    .await;
    assert_down(&o, ErrorType::Timeout, Phase::Tls);
    assert!(o.message.contains("within 1s"), "{}", o.message);
}

#[tokio::test]
async fn closed_port_is_connect_refused() {
    let port = closed_port().await.unwrap();
    let o = probe(&format!("postgres://probe@127.0.0.1:{port}/postgres"), "").await;
    assert_down(&o, ErrorType::ConnectRefused, Phase::Connect);
}

#[tokio::test]
async fn password_file_is_read_again_on_every_run() {
    let c = good();
    let dir = Scratch::new().unwrap();
    let file = dir.write("pg-password", "stale-password\n").unwrap();
    let db = built(&format!(
        "name: db\nkind: postgres\nurl: postgres://probe@localhost:{}/postgres\npassword_file: {}\nsslrootcert: {}\n",
        c.port(),
        file.display(),
        pki().root_file.display()
    ));
    let o = db.run().await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let o = db.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    std::fs::remove_file(&file).unwrap();
    let o = db.run().await;
    assert_down(&o, ErrorType::CredentialMissing, Phase::Auth);
}

#[tokio::test]
async fn promoted_standby_is_a_role_change() {
    let standby = good().standby("good-standby").unwrap();
    let db = built(&probe_yaml(
        &format!("postgres://probe@localhost:{}/postgres", standby.port()),
        "",
    ));
    let o = db.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "role"), "standby");

    standby.promote().unwrap();
    let o = db.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(detail(&o, "role"), "primary");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    let f = &o.findings[0];
    assert_eq!(f.kind, FindingType::ROLE_CHANGED);
    assert_eq!(f.facts["from"], "standby");
    assert_eq!(f.facts["to"], "primary");
    assert!(o.message.contains("failover"), "{}", o.message);

    let o = db.run().await;
    assert_eq!(o.status, Status::Up, "the change is reported once: {o:#?}");
}

#[tokio::test]
async fn direct_tls_with_alpn_postgresql_logs_in() {
    let front = DirectTlsFront::start(&leaf(Validity::current()), plain_addr())
        .await
        .unwrap();
    let o = probe(
        &format!(
            "postgres://probe@localhost:{}/postgres?sslnegotiation=direct",
            front.port()
        ),
        "",
    )
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    let tls = o.tls.as_ref().unwrap();
    assert_eq!(tls.alpn.as_deref(), Some("postgresql"));
    assert!(tls.verified);
    assert_eq!(detail(&o, "tls_used"), true);
}

#[tokio::test]
async fn direct_tls_to_postgresql_15_fails_in_tls_and_says_why() {
    let c = good();
    let o = probe(
        &format!(
            "postgres://probe@localhost:{}/postgres?sslnegotiation=direct",
            c.port()
        ),
        "",
    )
    .await;
    assert_down(&o, ErrorType::TlsHandshakeFailure, Phase::Tls);
    assert!(
        o.message
            .contains("PostgreSQL before 17 closes the connection"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn ssl_request_to_a_tls_only_port_says_to_use_direct_tls() {
    let front = DirectTlsFront::start(&leaf(Validity::current()), plain_addr())
        .await
        .unwrap();
    let o = probe(
        &format!("postgres://probe@localhost:{}/postgres", front.port()),
        "",
    )
    .await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Tls);
    assert!(o.message.contains("0x15"), "{}", o.message);
    assert!(o.message.contains("sslnegotiation=direct"), "{}", o.message);
}

#[tokio::test]
async fn ssl_request_to_a_non_postgresql_port_is_unexpected_response() {
    let server = RawServer::start(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        .await
        .unwrap();
    let o = probe(
        &format!(
            "postgres://probe@127.0.0.1:{}/postgres",
            server.addr().port()
        ),
        "",
    )
    .await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Tls);
    assert!(
        o.message
            .contains("with 0x48 ('H') instead of S or N: is this a PostgreSQL port?"),
        "{}",
        o.message
    );
}

fn plain_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], plain().port()))
}

#[tokio::test]
async fn a_query_of_a_million_rows_is_judged_on_its_first_and_the_rest_never_kept() {
    let c = good();
    let url = format!("postgres://probe@localhost:{}/postgres", c.port());
    let many = "query: SELECT generate_series(1, 1000000)::text\nexpect:\n  value: \"1\"";
    let o = probe(&url, many).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    // The session goes on after the rows it dropped: the role query still answers.
    assert!(o.message.contains("primary"), "{}", o.message);
}

// ---- Verdict parity with libpq (issue 23): the `openssl` profile ----

/// A cluster serving `id`, for TCP clients with the password.
fn serving(name: &str, id: Identity) -> Cluster {
    cluster(name, Some(id), None, ANY_SCRAM)
}

/// libpq's verdict on the same server and settings: psql with `conninfo`.
fn libpq_connects(conninfo: &str) -> bool {
    depprobe_tests::postgres::psql_connects(conninfo, Some(PASSWORD)).is_ok()
}

/// A scratch directory in the clusters' files directory, for the openssl CLI.
fn cli_dir(name: &str) -> PathBuf {
    let dir = pki().files.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn legacy_kinds(o: &Outcome) -> Vec<String> {
    o.findings
        .iter()
        .filter(|f| f.kind == FindingType::CERT_LEGACY)
        .map(|f| {
            assert_eq!(f.severity, Severity::Notice, "{f:#?}");
            f.facts["legacy"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn x509_v1_cn_only_certificate_is_up_with_cert_legacy_notices_as_libpq() {
    use depprobe_tests::openssl_cli::CliCa;
    let dir = cli_dir("v1");
    let ca = CliCa::new(&dir, "PG v1 CA").unwrap();
    // The PostgreSQL manual's recipe: `openssl x509 -req` without -extfile.
    let id = ca.issue("server", "/CN=localhost", None).unwrap();
    let c = serving("v1", id);
    let root = ca.cert.display().to_string();
    let url = format!("postgres://probe@localhost:{}/postgres", c.port());
    let yaml = format!(
        "name: db\nkind: postgres\nurl: {url}\npassword: {PASSWORD}\nsslrootcert: {root}\n"
    );
    let o = run_once(&yaml).await.unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.tls.as_ref().unwrap().verified, "{o:#?}");
    let mut kinds = legacy_kinds(&o);
    kinds.sort();
    assert_eq!(kinds, vec!["cn_only", "x509_v1"], "{o:#?}");
    let cn = finding_of(&o, "cn_only");
    assert!(
        cn.message
            .contains("Go 1.15+, browsers and rustls clients refuse it"),
        "{}",
        cn.message
    );
    assert!(libpq_connects(&format!(
        "host=localhost port={} user=probe dbname=postgres sslmode=verify-full sslrootcert={root}",
        c.port()
    )));

    // `tls.strict: true`: what stricter clients refuse fails the run.
    let o = run_once(&format!("{yaml}tls:\n  strict: true\n"))
        .await
        .unwrap();
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
    assert!(o.message.contains("tls.strict"), "{}", o.message);
    let classes: Vec<ErrorType> = o.problems.iter().map(|p| p.class).collect();
    assert_eq!(
        classes,
        vec![ErrorType::TlsHostnameMismatch, ErrorType::TlsBadCertificate]
    );

    // The `webpki` profile keeps rustls' verdict.
    let o = run_once(&format!("{yaml}tls:\n  client_profile: webpki\n"))
        .await
        .unwrap();
    assert_down(&o, ErrorType::TlsBadCertificate, Phase::Tls);
}

fn finding_of<'o>(o: &'o Outcome, legacy: &str) -> &'o depprobe_probes::Finding {
    o.findings
        .iter()
        .find(|f| f.kind == FindingType::CERT_LEGACY && f.facts["legacy"] == legacy)
        .unwrap_or_else(|| panic!("no cert_legacy {legacy}: {o:#?}"))
}

#[tokio::test]
async fn only_the_intermediate_as_sslrootcert_fails_as_libpq_fails() {
    let c = good();
    let inter = pki().files.join("pg-test-issuing-only.pem");
    std::fs::write(&inter, &pki().issuing.pem).unwrap();
    let url = format!("postgres://probe@localhost:{}/postgres", c.port());
    let o = run_once(&format!(
        "name: db\nkind: postgres\nurl: {url}\npassword: {PASSWORD}\nsslrootcert: {}\n",
        inter.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert!(o.message.contains("PG Test Root CA"), "{}", o.message);
    assert!(!libpq_connects(&format!(
        "host=localhost port={} user=probe dbname=postgres sslmode=verify-full sslrootcert={}",
        c.port(),
        inter.display()
    )));
}

#[tokio::test]
async fn revoked_chain_under_verify_ca_is_cert_revoked_never_a_name_problem() {
    let id = leaf(Validity::current());
    let c = serving("revoked", id.clone());
    let crl = pki().files.join("pg-revoked.crl");
    let text = format!(
        "{}{}",
        pki().root.crl(&[]).unwrap(),
        pki().issuing.crl(&[&id]).unwrap()
    );
    std::fs::write(&crl, text).unwrap();
    // 127.0.0.1 is not a name the certificate holds: verify-ca does not look.
    let url = format!(
        "postgres://probe@127.0.0.1:{}/postgres?sslmode=verify-ca",
        c.port()
    );
    let o = probe(&url, &format!("tls:\n  crl_file: {}\n", crl.display())).await;
    assert_down(&o, ErrorType::TlsCertRevoked, Phase::Tls);
    assert!(
        o.problems
            .iter()
            .all(|p| p.class != ErrorType::TlsHostnameMismatch),
        "{o:#?}"
    );
    assert!(!libpq_connects(&format!(
        "host=127.0.0.1 port={} user=probe dbname=postgres sslmode=verify-ca sslrootcert={} sslcrl={}",
        c.port(),
        pki().root_file.display(),
        crl.display()
    )));
}

#[tokio::test]
async fn address_host_in_inet_aton_form_matches_the_ip_san_as_libpq() {
    let id = pki()
        .issuing
        .leaf(&["localhost", "127.0.0.1"], Validity::current())
        .unwrap();
    let c = serving("ipsan", id);
    let url = format!("postgres://probe@127.000.000.001:{}/postgres", c.port());
    let o = probe(&url, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(libpq_connects(&format!(
        "host=127.000.000.001 port={} user=probe dbname=postgres sslmode=verify-full sslrootcert={}",
        c.port(),
        pki().root_file.display()
    )));
}

/// libpq refuses a key others can read: keys are written 0600, as users keep them.
fn private(key: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

// ---- libpq parameters (issue 23, item 3) ----

#[tokio::test]
async fn hostaddr_is_where_to_connect_and_host_the_name_verified() {
    let c = good();
    let url = format!(
        "postgres://probe@localhost:{}/postgres?hostaddr=127.0.0.1",
        c.port()
    );
    let o = probe(&url, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.timings.get(Phase::Dns).is_none(), "no lookup: {o:#?}");
    assert_eq!(o.tls.as_ref().unwrap().server_name, "localhost");
    assert!(libpq_connects(&format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=probe dbname=postgres sslmode=verify-full sslrootcert={}",
        c.port(),
        pki().root_file.display()
    )));
}

#[tokio::test]
async fn a_plus_in_a_url_parameter_is_a_plus_as_libpq_reads_it() {
    let c = good();
    let plus = pki().files.join("root+server_ca.crt");
    std::fs::write(&plus, &pki().root.pem).unwrap();
    let o = run_once(&format!(
        "name: db\nkind: postgres\nurl: postgres://probe@localhost:{}/postgres?sslrootcert={}&sslsni=0&ssl_max_protocol_version=TLSv1.2\npassword: {PASSWORD}\n",
        c.port(),
        plus.display()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.tls.as_ref().unwrap().version.as_deref(), Some("1.2"));
}

#[tokio::test]
async fn encrypted_der_and_v1_client_keys_work_and_a_readable_key_is_refused_as_libpq() {
    use depprobe_tests::openssl_cli::openssl;
    let c = clientcert();
    let dir = cli_dir("client-keys");
    std::fs::write(dir.join("issuing.crt"), &pki().issuing.pem).unwrap();
    std::fs::write(dir.join("issuing.key"), pki().issuing.key_pem()).unwrap();
    // A v1 client certificate for role `probe`, as `openssl x509 -req` makes it,
    // sent with its intermediate.
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "v1.key",
            "-out",
            "v1.csr",
            "-subj",
            "/CN=probe",
        ],
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "v1.csr",
            "-CA",
            "issuing.crt",
            "-CAkey",
            "issuing.key",
            "-CAcreateserial",
            "-out",
            "v1-leaf.crt",
            "-days",
            "30",
        ],
    )
    .unwrap();
    let chain = std::fs::read_to_string(dir.join("v1-leaf.crt")).unwrap() + &pki().issuing.pem;
    std::fs::write(dir.join("v1.crt"), chain).unwrap();
    openssl(
        &dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "v1.key",
            "-out",
            "v1-enc.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:key-pw-77",
        ],
    )
    .unwrap();
    openssl(
        &dir,
        &["pkey", "-in", "v1.key", "-outform", "DER", "-out", "v1.der"],
    )
    .unwrap();
    for k in ["v1.key", "v1-enc.key", "v1.der"] {
        private(&dir.join(k));
    }
    let url = format!("postgres://probe@localhost:{}/postgres", c.port());
    let crt = dir.join("v1.crt");
    let conninfo = |key: &str, extra: &str| {
        format!(
            "host=localhost port={} user=probe dbname=postgres sslmode=verify-full sslrootcert={} sslcert={} sslkey={} {extra}",
            c.port(),
            pki().root_file.display(),
            crt.display(),
            dir.join(key).display()
        )
    };
    for (key, extra) in [
        ("v1.key", ""),
        ("v1-enc.key", "sslpassword: key-pw-77\n"),
        ("v1.der", ""),
    ] {
        let o = probe(
            &url,
            &format!(
                "sslcert: {}\nsslkey: {}\n{extra}",
                crt.display(),
                dir.join(key).display()
            ),
        )
        .await;
        assert_eq!(o.status, Status::Up, "{key}: {o:#?}");
        let pw = extra
            .strip_prefix("sslpassword: ")
            .map(|p| format!("sslpassword={}", p.trim()))
            .unwrap_or_default();
        assert!(libpq_connects(&conninfo(key, &pw)), "libpq with {key}");
        let json = serde_json::to_string(&o).unwrap();
        assert!(!json.contains("key-pw-77"), "{json}");
    }
    // Readable by others: libpq refuses the key before it connects, and so does
    // the probe, in libpq's words.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("v1.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = probe(
        &url,
        &format!(
            "sslcert: {}\nsslkey: {}\n",
            crt.display(),
            dir.join("v1.key").display()
        ),
    )
    .await;
    assert_down(&o, ErrorType::CredentialInvalid, Phase::Tls);
    assert!(
        o.message.contains("has group or world access"),
        "{}",
        o.message
    );
    let err = depprobe_tests::postgres::psql_connects(&conninfo("v1.key", ""), Some(PASSWORD))
        .unwrap_err();
    assert!(err.contains("has group or world access"), "{err}");
}
