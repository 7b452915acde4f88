//! The five postmortems behind depprobe, replayed end to end.
//!
//! Each test is a timeline of stages against real local servers (HTTPS APIs, a
//! PostgreSQL 15 cluster, the MongoDB wire-protocol replica set), run through the
//! same probes and per-target state as `depprobe run`. At every stage it asserts the
//! outcome a user would see (status, class, findings) and, where the incident had a
//! warning to give, that it came at least the stated lead time before the failure.
//! Each stage's `check` table is printed (`cargo test --test incidents -- --nocapture`);
//! `docs/incidents.md` shows them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use depprobe_agent::persist::Persist;
use depprobe_agent::state::State;
use depprobe_probes::kinds::mongodb;
use depprobe_probes::{
    ErrorType, Finding, FindingType, Outcome, Phase, Probe, ProbeEnv, Severity, Status,
};
use depprobe_tests::harness::{config, jwt, unix_in};
use depprobe_tests::mongo::ReplicaSet;
use depprobe_tests::postgres::{Cluster, ClusterSpec};
use depprobe_tests::{Ca, HttpServer, Reply, Scratch, Validity};

/// Probes of one configuration with the agent's per-target state: what `depprobe
/// run` does on each tick, one stage at a time.
struct Timeline {
    title: &'static str,
    probes: Vec<Arc<dyn Probe>>,
    state: Arc<State>,
    /// What the probes remember, kept on disk (`agent.state_dir`), when set.
    persist: Option<Persist>,
}

impl Timeline {
    fn new(title: &'static str, yaml: &str) -> Timeline {
        let cfg = config(yaml).unwrap();
        let env = ProbeEnv::system().unwrap();
        let probes: Vec<Arc<dyn Probe>> = cfg
            .probes
            .iter()
            .map(|p| Arc::from(depprobe_probes::build(p, &env).unwrap()))
            .collect();
        let state = State::new();
        let wanted: Vec<_> = cfg
            .probes
            .iter()
            .zip(&probes)
            .map(|(c, p)| (p.meta().clone(), c.fingerprint()))
            .collect();
        state.reconcile(&wanted);
        let persist = cfg.agent.state_dir.as_deref().map(Persist::open);
        if let Some(p) = &persist {
            let fingerprinted: Vec<_> = wanted
                .iter()
                .zip(&probes)
                .map(|((_, f), p)| (*f, p.clone()))
                .collect();
            p.adopt(&fingerprinted);
        }
        println!("\n## {title}");
        Timeline {
            title,
            probes,
            state,
            persist,
        }
    }

    /// Stops as `depprobe run` does (what the probes remember is saved), and starts
    /// again on the same configuration.
    fn restart(self, yaml: &str) -> Timeline {
        if let Some(p) = &self.persist {
            p.save().unwrap();
        }
        println!("\n### {} — the agent restarts", self.title);
        Timeline::new(self.title, yaml)
    }

    /// Runs one probe, records it as the agent would, and returns what was recorded.
    async fn run(&self, name: &str) -> Outcome {
        let probe = self.probes.iter().find(|p| p.meta().name == name).unwrap();
        let (outcome, _) = self.state.record(probe.run().await).unwrap();
        Outcome::clone(&outcome)
    }

    /// Runs every probe once; prints the `check` table of the stage.
    async fn stage(&self, label: &str) -> Vec<Outcome> {
        let mut out = Vec::new();
        for p in &self.probes {
            out.push(self.run(&p.meta().name.clone()).await);
        }
        println!(
            "\n### {} — {label}\n\n```\n{}```",
            self.title,
            depprobe_agent::table::render(&out)
        );
        out
    }
}

fn by<'a>(outcomes: &'a [Outcome], name: &str) -> &'a Outcome {
    outcomes.iter().find(|o| o.name == name).unwrap()
}

fn finding(o: &Outcome, kind: FindingType) -> &Finding {
    o.findings
        .iter()
        .find(|f| f.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} finding: {o:#?}"))
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

/// The warning came at least `days` before the certificate's expiry.
fn assert_lead_time(f: &Finding, days: f64) {
    let left = f.facts["days_left"].as_f64().unwrap();
    assert!(
        left >= days,
        "warned only {left} days ahead, not {days}: {f:#?}"
    );
}

/// Incident 01 (Neo4j Aura): the customer metrics endpoint's certificate expired, then,
/// renewed, the endpoint answered `{"message":"Failed to validate JWT."}` because the
/// service key had not been rotated with it.
#[tokio::test]
async fn incident_01_metrics_endpoint_cert_expiry_then_jwt_rejection() {
    let ca = Ca::root("Public Test CA").unwrap();
    let accepted = Arc::new(Mutex::new("key-2024".to_owned()));
    let key = accepted.clone();
    let server = HttpServer::builder()
        .tls(&ca.leaf(&["localhost"], Validity::expiring_in(10)).unwrap())
        .respond(move |req| {
            let want = format!("Bearer {}", key.lock().unwrap());
            if req.header("authorization") == Some(want.as_str()) {
                Reply::ok("# TYPE neo4j_up gauge\nneo4j_up{instance=\"db-1\"} 1\n")
                    .header("content-type", "text/plain; version=0.0.4")
            } else {
                Reply::new(401, r#"{"message":"Failed to validate JWT."}"#)
                    .header("content-type", "application/json")
            }
        })
        .start()
        .await
        .unwrap();
    let s = Scratch::new().unwrap();
    let ca_file = s.ca(&ca).unwrap();
    let token = s.write("metrics.jwt", "key-2024").unwrap();
    let t = Timeline::new(
        "Incident 01: metrics endpoint certificate expiry, then JWT rejection",
        &format!(
            "probes:\n  - name: customer-metrics\n    kind: metrics\n    url: {}\n    bearer_token_file: {}\n    expect:\n      series:\n        - match: neo4j_up\n          min: 1\n    tls:\n      ca_file: {}\n",
            server.url("localhost", "/metrics"),
            token.display(),
            ca_file.display()
        ),
    );

    // 10 days before: a warning, while everything works.
    let o = t.stage("10 days before the certificate expires").await;
    let o = by(&o, "customer-metrics");
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = finding(o, FindingType::CERT_EXPIRING);
    assert_eq!(f.severity, Severity::Warning);
    assert_lead_time(f, 10.0);

    // The day it expires.
    server
        .set_identity(&ca.leaf(&["localhost"], Validity::expired()).unwrap())
        .unwrap();
    let o = t.stage("the certificate has expired").await;
    let o = by(&o, "customer-metrics");
    assert_down(o, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(
        o.message.contains("not after") && o.message.contains("issued by Public Test CA"),
        "{}",
        o.message
    );
    assert!(o.tls.as_ref().unwrap().chain[0].not_after < std::time::SystemTime::now());

    // Renewed, but the service key was not rotated with it.
    server
        .set_identity(&ca.leaf(&["localhost"], Validity::current()).unwrap())
        .unwrap();
    *accepted.lock().unwrap() = "key-2025".to_owned();
    let o = t
        .stage("certificate renewed, service key not rotated")
        .await;
    let o = by(&o, "customer-metrics");
    assert_down(o, ErrorType::JwtRejected, Phase::Request);
    assert!(
        o.message.contains("Failed to validate JWT."),
        "{}",
        o.message
    );
    assert!(
        o.findings
            .iter()
            .any(|f| f.kind == FindingType::CERT_CHANGED),
        "the renewal is seen: {o:#?}"
    );

    // Fixed: the new key is deployed (the file is read again; no restart).
    std::fs::write(&token, "key-2025").unwrap();
    let o = t.stage("the new service key is deployed").await;
    assert_eq!(by(&o, "customer-metrics").status, Status::Up, "{o:#?}");
}

/// Incident 02 (Aiven): 12 days before expiry the renewal fell back to the internal
/// CA; API clients saw an untrusted certificate and the CDN in front answered 526.
#[tokio::test]
async fn incident_02_renewal_falls_back_to_an_internal_ca() {
    let public = Ca::root("R3 Test Public CA").unwrap();
    let internal = Ca::root("Aiven Internal CA").unwrap();
    let api = HttpServer::builder()
        .tls(
            &public
                .leaf(&["localhost"], Validity::expiring_in(12))
                .unwrap(),
        )
        .respond(|_| Reply::ok("{\"status\":\"ok\"}"))
        .start()
        .await
        .unwrap();
    // The CDN terminates TLS for the console and validates the origin's certificate.
    let origin_untrusted = Arc::new(AtomicBool::new(false));
    let flag = origin_untrusted.clone();
    let cdn = HttpServer::builder()
        .tls(&public.leaf(&["localhost"], Validity::current()).unwrap())
        .respond(move |_| {
            if flag.load(Ordering::SeqCst) {
                Reply::new(526, "<html>Error 526: Invalid SSL certificate</html>")
            } else {
                Reply::ok("<html>console</html>")
            }
        })
        .start()
        .await
        .unwrap();
    let s = Scratch::new().unwrap();
    let ca_file = s.ca(&public).unwrap();
    let yaml = format!(
        "agent:\n  state_dir: {}\ndefaults:\n  tls:\n    ca_file: {}\nprobes:\n  - name: aiven-api\n    kind: http\n    url: {}\n  - name: aiven-console\n    kind: http\n    url: {}\n",
        s.path("state").display(),
        ca_file.display(),
        api.url("localhost", "/v1/health"),
        cdn.url("localhost", "/")
    );
    let t = Timeline::new(
        "Incident 02: certificate renewal falls back to an internal CA",
        &yaml,
    );

    let o = t.stage("12 days before expiry: renewal is due").await;
    let f = finding(by(&o, "aiven-api"), FindingType::CERT_EXPIRING);
    assert_lead_time(f, 12.0);
    assert_eq!(by(&o, "aiven-console").status, Status::Up);

    // The agent restarts before the renewal (a deploy, a node drain): what it saw
    // survives in `agent.state_dir`, so the change of issuer is still seen.
    let t = t.restart(&yaml);

    // The renewal fails and falls back to the internal CA.
    api.set_identity(
        &internal
            .leaf(&["localhost"], Validity::days(0, 90))
            .unwrap(),
    )
    .unwrap();
    origin_untrusted.store(true, Ordering::SeqCst);
    let o = t.stage("renewal fell back to the internal CA").await;
    let a = by(&o, "aiven-api");
    assert_down(a, ErrorType::TlsUnknownIssuer, Phase::Tls);
    let changed = finding(a, FindingType::ISSUER_CHANGED);
    assert_eq!(changed.severity, Severity::Critical);
    assert!(
        changed
            .message
            .contains("from R3 Test Public CA to Aiven Internal CA"),
        "{}",
        changed.message
    );
    assert_down(
        by(&o, "aiven-console"),
        ErrorType::UpstreamTlsError,
        Phase::Request,
    );

    // Fixed: a certificate from the public CA again. The change is recorded.
    api.set_identity(&public.leaf(&["localhost"], Validity::current()).unwrap())
        .unwrap();
    origin_untrusted.store(false, Ordering::SeqCst);
    let o = t.stage("fixed: a public certificate again").await;
    let a = by(&o, "aiven-api");
    assert_ne!(a.status, Status::Down, "{a:#?}");
    assert!(
        finding(a, FindingType::ISSUER_CHANGED)
            .message
            .contains("from Aiven Internal CA to R3 Test Public CA")
    );
    assert_eq!(by(&o, "aiven-console").status, Status::Up);
    let mut changes = 0;
    t.state.each(|target| {
        if target.last.as_ref().is_some_and(|l| l.name == "aiven-api") {
            changes = target.cert_changes;
        }
    });
    assert_eq!(changes, 2, "both changes are counted");
    let o = t.stage("the next run").await;
    assert!(o.iter().all(|o| o.status == Status::Up), "{o:#?}");
}

/// Incident 03: the database provider's certificate expired; connections failed, no
/// one was alerted, and the fix was to turn verification off.
#[tokio::test]
async fn incident_03_database_provider_certificate_expires() {
    let ca = Ca::root("DB Provider CA").unwrap();
    let cluster = tokio::task::spawn_blocking({
        let id = ca.leaf(&["localhost"], Validity::expiring_in(13)).unwrap();
        move || {
            Cluster::start(&ClusterSpec {
                name: "incident-03".into(),
                tls: Some(id),
                hba: vec!["host all all 127.0.0.1/32 scram-sha-256".into()],
                setup_sql: vec!["CREATE ROLE probe LOGIN PASSWORD 'probe-pw'".into()],
                ..Default::default()
            })
        }
    })
    .await
    .unwrap()
    .unwrap();
    let s = Scratch::new().unwrap();
    let ca_file = s.ca(&ca).unwrap();
    let url = |mode: &str| {
        format!(
            "postgres://probe@localhost:{}/postgres?sslmode={mode}",
            cluster.port()
        )
    };
    let t = Timeline::new(
        "Incident 03: the database provider's certificate expires",
        &format!(
            "probes:\n  - name: orders-db\n    kind: postgres\n    url: {}&sslrootcert={}\n    password: probe-pw\n  - name: orders-db-as-the-app-connects\n    kind: postgres\n    url: {}\n    password: probe-pw\n    tls:\n      ca_file: {}\n",
            url("verify-full"),
            ca_file.display(),
            url("require"),
            ca_file.display()
        ),
    );

    let o = t.stage("13 days before the certificate expires").await;
    for name in ["orders-db", "orders-db-as-the-app-connects"] {
        let o = by(&o, name);
        assert_eq!(o.status, Status::Degraded, "{o:#?}");
        assert_lead_time(finding(o, FindingType::CERT_EXPIRING), 13.0);
        assert!(o.details["server_version"].is_string());
    }

    let expired = ca.leaf(&["localhost"], Validity::expired()).unwrap();
    cluster.replace_certificate(&expired).unwrap();
    let expired_sha = depprobe_probes::transport::chain::sha256_hex(expired.chain[0].as_ref());
    // The reload is asynchronous: wait until the server presents the new certificate.
    for _ in 0..100 {
        let o = t.run("orders-db").await;
        if o.tls
            .as_ref()
            .and_then(|t| t.leaf())
            .is_some_and(|l| l.sha256 == expired_sha)
        {
            break;
        }
    }
    let o = t.stage("the certificate has expired").await;
    let strict = by(&o, "orders-db");
    assert_down(strict, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(
        strict.message.contains("not after") && strict.message.contains("issued by DB Provider CA"),
        "{}",
        strict.message
    );
    // The application's sslmode=require still connects; depprobe flags it anyway.
    let lax = by(&o, "orders-db-as-the-app-connects");
    assert_eq!(lax.status, Status::Degraded, "{lax:#?}");
    let f = finding(lax, FindingType::CERT_INVALID);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.facts["error_type"], "tls_cert_expired");
}

/// Incident 04 (Auth0): an inconsistent VPN split a MongoDB replica set: 33 primary
/// elections in 9 minutes; services could not reach the primaries they were given.
#[tokio::test]
async fn incident_04_vpn_split_and_mongodb_election_storm() {
    let set = ReplicaSet::builder()
        .user("probe", "s3cret")
        .start()
        .await
        .unwrap();
    let t = Timeline::new(
        "Incident 04: a VPN split and a MongoDB election storm",
        &format!(
            "probes:\n  - name: sessions\n    kind: mongodb\n    url: mongodb://probe@{}/?replicaSet=rs0\n    password: s3cret\n    timeout: 10s\n    heartbeat_frequency: 500ms\n    connect_timeout: 2s\n    server_selection_timeout: 2s\n    elections:\n      window: 10s\n      threshold: 3\n",
            set.seed_list()
        ),
    );
    let o = t.stage("healthy").await;
    let o = by(&o, "sessions");
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.details["members"].as_array().unwrap().len(), 3);

    // The VPN goes inconsistent: the monitors' connections are cut, one member is
    // cut off for good, and the primary flips back and forth five times while
    // nobody can look. The terms tell how many elections there were.
    set.cut_connections();
    set.stop_answering(2);
    for member in [1, 0, 1, 0, 1] {
        set.elect(member);
    }
    set.restore_connections();
    let seen =
        wait_until(|| async { t.run("sessions").await.details["primary"] == set.host(1) }).await;
    assert!(seen, "the last election is never seen");
    let cut_off = wait_until(|| async {
        t.run("sessions")
            .await
            .findings
            .iter()
            .any(|f| f.kind == mongodb::MEMBER_UNREACHABLE)
    })
    .await;
    assert!(cut_off, "the cut-off member is never reported");
    let o = t.stage("5 elections, one member cut off").await;
    let o = by(&o, "sessions");
    let storm = finding(o, mongodb::ELECTION_STORM);
    assert_eq!(storm.severity, Severity::Critical);
    // Exactly five, from the terms, though no monitor saw one of them happen.
    assert_eq!(storm.facts["count"], 5, "{storm:#?}");
    assert_eq!(storm.facts["counted_by"], "term");
    assert_eq!(storm.facts["previous_term"], 1);
    assert_eq!(storm.facts["term"], 6);
    assert!(
        storm.message.starts_with("election storm: 5 elections in "),
        "{}",
        storm.message
    );
    assert!(
        storm.message.contains(&format!(
            "({} -> {}, term 1 -> 6)",
            set.host(0),
            set.host(1)
        )),
        "{}",
        storm.message
    );
    let cut = finding(o, mongodb::MEMBER_UNREACHABLE);
    assert_eq!(cut.facts["member"], set.host(2).as_str());
    // The cut-off member is named with its class: it accepts and never answers.
    assert_eq!(cut.facts["error_type"], "timeout", "{cut:#?}");
    assert!(cut.message.contains("(timeout)"), "{}", cut.message);
    assert_eq!(o.status, Status::Degraded, "the set still works: {o:#?}");

    // A moment with no primary at all.
    set.step_down();
    let no_primary =
        wait_until(|| async { t.run("sessions").await.error_type == Some(ErrorType::NoPrimary) })
            .await;
    assert!(no_primary);
    let o = t.stage("no primary").await;
    assert_down(by(&o, "sessions"), ErrorType::NoPrimary, Phase::Query);

    // The VPN is fixed: a primary again, every member back; up once the window has
    // passed without elections.
    set.resume(2);
    set.elect(0);
    let calm = wait_until(|| async { t.run("sessions").await.status == Status::Up }).await;
    assert!(calm, "never calm again");
    let o = t.stage("calm again, after the window").await;
    assert_eq!(by(&o, "sessions").status, Status::Up);
}

/// Polls `f` until it holds, for at most 45 s (each call is a probe run).
async fn wait_until<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Incident 05 (InfluxDB Cloud): after a Kubernetes upgrade, a service-account token
/// was no longer minted; services could not authenticate; writes and queries failed.
#[tokio::test]
async fn incident_05_service_account_token_no_longer_minted() {
    let ca = Ca::root("Cluster CA").unwrap();
    let good = jwt(&format!(
        r#"{{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:influx:writer","iat":{},"exp":{}}}"#,
        unix_in(-60),
        unix_in(3540)
    ));
    let valid = Arc::new(Mutex::new(good.clone()));
    let v = valid.clone();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = lines.clone();
    let api = HttpServer::builder()
        .tls(&ca.leaf(&["localhost"], Validity::current()).unwrap())
        .respond(move |req| {
            let want = format!("Bearer {}", v.lock().unwrap());
            if req.header("authorization") != Some(want.as_str()) {
                return Reply::new(
                    401,
                    r#"{"code":"unauthorized","message":"unauthorized access"}"#,
                );
            }
            if req.method == "POST" {
                store
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&req.body).into_owned());
                return Reply::new(204, "");
            }
            let q = req.path.split("q=").nth(1).unwrap_or("");
            let found: Vec<String> = store
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(q))
                .cloned()
                .collect();
            Reply::ok(found.join("\n"))
        })
        .start()
        .await
        .unwrap();
    let s = Scratch::new().unwrap();
    let ca_file = s.ca(&ca).unwrap();
    let token = s.write("token", &good).unwrap();
    let t = Timeline::new(
        "Incident 05: a service-account token no longer minted",
        &format!(
            "defaults:\n  tls:\n    ca_file: {ca}\nprobes:\n  - name: sa-token\n    kind: credential\n    file: {tok}\n  - name: influx-write-then-query\n    kind: http\n    url: {write}\n    method: POST\n    bearer_token_file: {tok}\n    body: \"probe,run={{{{run_id}}}} up=1i\"\n    expect:\n      status: [204]\n    steps:\n      - url: /api/v2/query?q={{{{run_id}}}}\n        expect:\n          body_contains: \"run={{{{run_id}}}}\"\n",
            ca = ca_file.display(),
            tok = token.display(),
            write = api.url("localhost", "/api/v2/write")
        ),
    );
    let o = t.stage("healthy").await;
    assert!(o.iter().all(|o| o.status == Status::Up), "{o:#?}");

    // The upgrade: the token is no longer minted.
    std::fs::remove_file(&token).unwrap();
    let before = api.requests();
    let o = t.stage("the token is no longer minted").await;
    for name in ["sa-token", "influx-write-then-query"] {
        assert_down(by(&o, name), ErrorType::CredentialMissing, Phase::Auth);
    }
    assert_eq!(api.requests(), before, "nothing is sent without a token");

    // A token the API refuses (minted for the wrong service account).
    std::fs::write(
        &token,
        jwt(&format!(
            r#"{{"sub":"system:serviceaccount:influx:other","iat":{},"exp":{}}}"#,
            unix_in(-60),
            unix_in(3540)
        )),
    )
    .unwrap();
    let o = t.stage("a token the API refuses").await;
    assert_eq!(
        by(&o, "sa-token").status,
        Status::Up,
        "the file itself is fine"
    );
    let w = by(&o, "influx-write-then-query");
    assert_down(w, ErrorType::AuthRejected, Phase::Request);
    assert!(w.message.starts_with("step 1/2"), "{}", w.message);

    // Restored: up on the next run, no restart.
    std::fs::write(&token, &good).unwrap();
    let o = t.stage("the token is restored").await;
    assert!(o.iter().all(|o| o.status == Status::Up), "{o:#?}");
    assert_eq!(
        lines.lock().unwrap().len(),
        2,
        "two synthetic writes landed"
    );
}
