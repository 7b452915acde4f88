//! The `mongodb` probe against depprobe's own MongoDB wire-protocol replica set
//! (`depprobe_tests::mongo`), with the real driver. Each test drives the set into a
//! state (elections, no primary, a silent member, a bad certificate, refused
//! logins) and asserts what a user sees: status, class, phase, findings and facts.
//! Waiting is on the probe's own recorded state (its replica-set watch), never on
//! the clock.

use std::time::Duration;

use depprobe_probes::kinds::mongodb::spec::MongoSpec;
use depprobe_probes::kinds::mongodb::{self, MemberState, MongoProbe, TopologyView};
use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Probe, ProbeEnv, Severity, Status};
use depprobe_tests::mongo::ReplicaSet;
use depprobe_tests::{Ca, Scratch, Validity};
use serde_json::Value;

/// Short timeouts: heartbeats every 500 ms (the driver's minimum), members given
/// 2 s to answer (loopback answers in milliseconds, even on a loaded machine),
/// server selection 2 s.
const FAST: &str =
    "timeout: 10s\nheartbeat_frequency: 500ms\nconnect_timeout: 2s\nserver_selection_timeout: 2s\n";

/// A generous bound on waits for the driver's monitors, so a broken test fails
/// instead of hanging.
const WAIT: Duration = Duration::from_secs(20);

fn probe(probe_yaml: &str) -> MongoProbe {
    let mut yaml = String::from("probes:\n");
    for (i, line) in probe_yaml.trim_end().lines().enumerate() {
        yaml.push_str(if i == 0 { "  - " } else { "    " });
        yaml.push_str(line);
        yaml.push('\n');
    }
    let cfg = depprobe_tests::harness::config(&yaml).unwrap();
    let Some(spec) = cfg.probes[0].spec.get::<MongoSpec>() else {
        panic!("not a mongodb probe")
    };
    MongoProbe::new(&cfg.probes[0], spec, &ProbeEnv::system().unwrap()).unwrap()
}

/// A probe of `set` logging in as `probe` / `s3cret`.
fn probe_of(set: &ReplicaSet, extra: &str) -> MongoProbe {
    probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe@{}/?replicaSet=rs0\npassword: s3cret\n{FAST}{extra}",
        set.seed_list()
    ))
}

/// A three-member set with the probe's user, streaming (MongoDB 4.4+) or not.
async fn probed_set(streaming: bool) -> ReplicaSet {
    ReplicaSet::builder()
        .user("probe", "s3cret")
        .streaming(streaming)
        .start()
        .await
        .unwrap()
}

/// A three-member set, and a probe of it whose first run was up.
async fn up_set() -> (ReplicaSet, MongoProbe) {
    let set = probed_set(true).await;
    let p = probe_of(&set, "");
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    (set, p)
}

async fn wait_for(p: &MongoProbe, what: &str, condition: impl Fn(&TopologyView) -> bool) {
    if tokio::time::timeout(WAIT, p.watch().wait_until(condition))
        .await
        .is_err()
    {
        panic!("timed out waiting for {what}: {:#?}", p.watch().snapshot());
    }
}

fn member<'a>(o: &'a Outcome, address: &str) -> &'a Value {
    o.details["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["address"] == address)
        .unwrap_or_else(|| panic!("no member {address} in {:#?}", o.details))
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

#[tokio::test]
async fn healthy_three_member_set_is_up_with_its_topology() {
    let set = probed_set(true).await;
    let p = probe_of(&set, "");
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.error_type, None);
    assert_eq!(o.details["replica_set"], "rs0");
    assert_eq!(o.details["primary"], set.host(0).as_str());
    assert_eq!(member(&o, &set.host(0))["state"], "primary");
    assert_eq!(member(&o, &set.host(1))["state"], "secondary");
    assert_eq!(member(&o, &set.host(2))["state"], "secondary");
    assert!(member(&o, &set.host(1))["rtt_ms"].is_number(), "{o:#?}");
    assert_eq!(o.details["members_by_state"]["primary"], 1);
    assert_eq!(o.details["members_by_state"]["secondary"], 2);
    assert_eq!(o.details["members_by_state"]["unknown"], 0);
    assert_eq!(o.details["primary_changes_total"], 0);
    assert!(o.findings.is_empty(), "{o:#?}");
    assert!(o.message.contains("replica set rs0"), "{}", o.message);
    assert!(o.timings.get(Phase::Connect).is_some(), "{o:#?}");
    assert!(o.timings.get(Phase::Auth).is_some() && o.timings.get(Phase::Query).is_some());
    assert!(o.tls.is_none(), "no TLS was asked for");
    assert!(!format!("{o:?}").contains("s3cret"));

    // The client is kept: a second run is up too, with the same view.
    let again = p.run().await;
    assert_eq!(again.status, Status::Up, "{again:#?}");
    assert_eq!(again.details["primary"], set.host(0).as_str());
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_and_never_shown() {
    let set = ReplicaSet::builder()
        .user("probe", "right-one")
        .start()
        .await
        .unwrap();
    let p = probe_of(&set, "");
    let o = p.run().await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(
        o.message.contains("18"),
        "the server's code is named: {}",
        o.message
    );
    assert!(!format!("{o:?}").contains("s3cret"));
    // The member answered: a refused login is not an unreachable member.
    assert!(o.findings.is_empty(), "{o:#?}");
    // The driver marks the member that refused (the first one it found) as unknown;
    // the watch records the class.
    wait_for(&p, "the refusal in the watch", |v| {
        v.members.values().any(|m| {
            m.error
                .as_ref()
                .is_some_and(|e| e.class == ErrorType::AuthRejected)
        })
    })
    .await;
}

#[tokio::test]
async fn refused_login_with_the_right_password_is_auth_rejected() {
    let set = probed_set(true).await;
    set.refuse_logins(true);
    let o = probe_of(&set, "").run().await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(o.message.contains("AuthenticationFailed"), "{}", o.message);
}

#[tokio::test]
async fn set_without_primary_is_no_primary() {
    let set = probed_set(true).await;
    set.step_down();
    let o = probe_of(&set, "").run().await;
    assert_down(&o, ErrorType::NoPrimary, Phase::Query);
    assert!(
        o.message.contains("rs0 has no writable primary"),
        "{}",
        o.message
    );
    assert_eq!(o.details["primary"], Value::Null);
    assert_eq!(o.details["members_by_state"]["secondary"], 3, "{o:#?}");
}

#[tokio::test]
async fn primary_stepping_down_under_a_running_probe_is_no_primary() {
    let (set, p) = up_set().await;
    set.step_down();
    wait_for(&p, "the primary to step down", |v| {
        v.primary.is_none()
            && v.members
                .values()
                .all(|m| m.state == MemberState::Secondary)
    })
    .await;
    let o = p.run().await;
    assert_down(&o, ErrorType::NoPrimary, Phase::Query);
    assert!(o.details.contains_key("primary_lost_at"), "{o:#?}");
}

#[tokio::test]
async fn one_primary_change_is_an_elections_finding() {
    let (set, p) = up_set().await;
    set.elect(1);
    wait_for(&p, "the new primary", |v| v.primary_changes_total >= 1).await;
    let o = p.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    let f = &o.findings[0];
    assert_eq!(f.kind, mongodb::ELECTIONS);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.facts["count"], 1);
    assert!(
        f.message.contains(&format!(
            "1 election in the last 600s ({} -> {}, term 1 -> 2)",
            set.host(0),
            set.host(1)
        )),
        "{}",
        f.message
    );
    assert_eq!(f.facts["counted_by"], "term");
    assert_eq!(o.details["primary"], set.host(1).as_str());
    assert_eq!(o.details["primary_changes"][0]["to"], set.host(1).as_str());
    assert_eq!(
        o.details["primary_changes"][0]["election_id"],
        "7fffffff0000000000000002"
    );
}

#[tokio::test]
async fn five_primary_changes_with_a_silent_member_is_an_election_storm() {
    let (set, p) = up_set().await;

    // The incident: members lose sight of each other, the primary flips back and
    // forth, and one member is cut off.
    set.stop_answering(2);
    for (n, member) in [1, 0, 1, 0, 1].into_iter().enumerate() {
        set.elect(member);
        let want = n as u64 + 1;
        wait_for(&p, "the election to be seen", |v| {
            v.primary_changes_total >= want
        })
        .await;
    }
    let silent = set.host(2);
    wait_for(&p, "the silent member to be unreachable", |v| {
        v.member(&silent).is_some_and(|m| m.error.is_some())
    })
    .await;

    let o = p.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let storm = o
        .findings
        .iter()
        .find(|f| f.kind == mongodb::ELECTION_STORM)
        .unwrap_or_else(|| panic!("no storm finding: {o:#?}"));
    assert_eq!(storm.severity, Severity::Critical);
    assert_eq!(storm.facts["count"], 5);
    assert_eq!(storm.facts["threshold"], 3);
    assert!(
        storm.message.starts_with("election storm: 5 elections in "),
        "{}",
        storm.message
    );
    assert!(
        storm.message.contains(", term 1 -> 6), "),
        "{}",
        storm.message
    );
    assert!(
        storm
            .message
            .contains(&format!("primary now {}", set.host(1))),
        "{}",
        storm.message
    );
    assert!(
        storm
            .message
            .contains(&format!("{silent} unreachable (timeout)")),
        "{}",
        storm.message
    );
    // The storm is the outcome's message; the silent member is its own finding.
    assert_eq!(o.message, storm.message);
    assert!(
        o.findings
            .iter()
            .any(|f| f.kind == mongodb::MEMBER_UNREACHABLE && f.facts["member"] == silent.as_str())
    );
    assert_eq!(o.details["primary_changes_total"], 5);
    assert_eq!(o.details["primary_changes_in_window"], 5);
    assert_eq!(o.details["primary_changes"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn member_that_stops_answering_is_unreachable_while_the_probe_stays_up() {
    let (set, p) = up_set().await;
    set.stop_answering(2);
    let silent = set.host(2);
    wait_for(&p, "the silent member to be unreachable", |v| {
        v.member(&silent).is_some_and(|m| m.error.is_some())
    })
    .await;
    let o = p.run().await;
    assert_eq!(o.status, Status::Degraded, "the set still works: {o:#?}");
    assert_eq!(o.error_type, None);
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    let f = &o.findings[0];
    assert_eq!(f.kind, mongodb::MEMBER_UNREACHABLE);
    assert_eq!(f.facts["member"], silent.as_str());
    assert_eq!(f.facts["error_type"], "timeout");
    assert!(
        f.message
            .starts_with(&format!("member {silent} unreachable (timeout)")),
        "{}",
        f.message
    );
    assert_eq!(member(&o, &silent)["state"], "unknown");
    assert_eq!(member(&o, &silent)["error_type"], "timeout");
    assert_eq!(o.details["members_by_state"]["unknown"], 1);

    // It comes back.
    set.resume(2);
    wait_for(&p, "the member to answer again", |v| {
        v.member(&silent)
            .is_some_and(|m| m.state == MemberState::Secondary)
    })
    .await;
    assert_eq!(p.run().await.status, Status::Up);
}

#[tokio::test]
async fn wire_server_answers_a_legacy_op_query_is_master() {
    use depprobe_tests::mongo::wire::{read_op_reply, write_op_query};
    let set = ReplicaSet::builder().start().await.unwrap();
    let mut s = tokio::net::TcpStream::connect(set.addr(1).unwrap())
        .await
        .unwrap();
    write_op_query(&mut s, 7, &bson::doc! { "isMaster": 1, "helloOk": true })
        .await
        .unwrap();
    let (response_to, reply) = read_op_reply(&mut s).await.unwrap();
    assert_eq!(response_to, 7);
    assert!(!reply.get_bool("ismaster").unwrap());
    assert!(reply.get_bool("secondary").unwrap());
    assert_eq!(reply.get_str("setName").unwrap(), "rs0");
    assert_eq!(reply.get_str("primary").unwrap(), set.host(0));
    assert_eq!(reply.get_str("me").unwrap(), set.host(1));
    assert!(reply.get_bool("helloOk").unwrap());
}

struct TlsSet {
    set: ReplicaSet,
    scratch: Scratch,
    ca_file: std::path::PathBuf,
}

/// A TLS replica set whose members present `leaves` (made by `ca` for `localhost`),
/// and the probe's CA file trusting `trusted`.
async fn tls_set(ca: &Ca, validities: &[Validity], trusted: &Ca) -> TlsSet {
    let leaves: Vec<_> = validities
        .iter()
        .map(|v| ca.leaf(&["localhost"], *v).unwrap())
        .collect();
    let set = ReplicaSet::builder()
        .user("probe", "s3cret")
        .tls(&leaves)
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new().unwrap();
    let ca_file = scratch.ca(trusted).unwrap();
    TlsSet {
        set,
        scratch,
        ca_file,
    }
}

fn tls_probe(t: &TlsSet) -> MongoProbe {
    probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe@{}/?replicaSet=rs0&tls=true\npassword_file: {}\ntls:\n  ca_file: {}\n  system_roots: false\n{FAST}",
        t.set.seed_list(),
        t.scratch.write("password", "s3cret\n").unwrap().display(),
        t.ca_file.display(),
    ))
}

#[tokio::test]
async fn tls_set_is_up_with_the_certificate_facts() {
    let ca = Ca::root("Mongo Test CA").unwrap();
    let t = tls_set(&ca, &[Validity::current()], &ca).await;
    // The system's roots and the CA file, as by default: the driver is given both.
    let p = probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe@{}/?replicaSet=rs0&tls=true\npassword: s3cret\ntls:\n  ca_file: {}\n{FAST}",
        t.set.seed_list(),
        t.ca_file.display(),
    ));
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    let tls = o.tls.as_ref().expect("TLS facts");
    assert!(tls.verified);
    assert_eq!(tls.version.as_deref(), Some("1.3"));
    assert_eq!(tls.chain[0].subject, "O=depprobe test, CN=localhost");
    assert_eq!(tls.chain[0].issuer, "O=depprobe test, CN=Mongo Test CA");
    assert!(o.timings.get(Phase::Tls).is_some());
    assert_eq!(o.details["members_by_state"]["secondary"], 2, "{o:#?}");
}

#[tokio::test]
async fn expired_certificate_on_one_member_is_cert_expired_naming_it() {
    let ca = Ca::root("Mongo Test CA").unwrap();
    let t = tls_set(
        &ca,
        &[
            Validity::current(),
            Validity::current(),
            Validity::expired(),
        ],
        &ca,
    )
    .await;
    let o = tls_probe(&t).run().await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    let expired = t.set.host(2);
    assert!(
        o.message.starts_with(&format!("member {expired}: ")),
        "{}",
        o.message
    );
    let tls = o.tls.as_ref().expect("the expired chain is reported");
    assert!(!tls.verified);
    assert!(tls.chain[0].not_after < std::time::SystemTime::now());
    assert_eq!(tls.chain[0].issuer, "O=depprobe test, CN=Mongo Test CA");
}

#[tokio::test]
async fn certificate_from_an_unknown_ca_is_unknown_issuer() {
    let ca = Ca::root("Mongo Test CA").unwrap();
    let other = Ca::root("Some Other CA").unwrap();
    let t = tls_set(&ca, &[Validity::current()], &other).await;
    let o = tls_probe(&t).run().await;
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    let tls = o.tls.as_ref().expect("the untrusted chain is reported");
    assert!(!tls.verified);
    assert_eq!(tls.chain[0].issuer, "O=depprobe test, CN=Mongo Test CA");
}

#[tokio::test]
async fn certificate_expiring_soon_is_a_finding_on_a_working_set() {
    let ca = Ca::root("Mongo Test CA").unwrap();
    let t = tls_set(
        &ca,
        &[
            Validity::current(),
            Validity::expiring_in(5),
            Validity::current(),
        ],
        &ca,
    )
    .await;
    let o = tls_probe(&t).run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CERT_EXPIRING);
}

#[tokio::test]
async fn member_certificate_renewed_from_the_wrong_ca_fails_the_next_run() {
    let ca = Ca::root("Mongo Test CA").unwrap();
    let t = tls_set(&ca, &[Validity::current()], &ca).await;
    let p = tls_probe(&t);
    assert_eq!(p.run().await.status, Status::Up);
    let internal = Ca::root("Internal Fallback CA").unwrap();
    t.set
        .set_identity(
            1,
            &internal.leaf(&["localhost"], Validity::current()).unwrap(),
        )
        .unwrap();
    let o = p.run().await;
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert!(
        o.message
            .starts_with(&format!("member {}: ", t.set.host(1))),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn member_learnt_from_the_set_is_checked_on_the_first_run() {
    let ca = Ca::root("Mongo Test CA").unwrap();
    let t = tls_set(
        &ca,
        &[
            Validity::current(),
            Validity::current(),
            Validity::expired(),
        ],
        &ca,
    )
    .await;
    // Only the first member is a seed; the driver learns the others from `hosts`.
    let p = probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe:s3cret@{}/?replicaSet=rs0&tls=true\ntls:\n  ca_file: {}\n  system_roots: false\n{FAST}",
        t.set.host(0),
        t.ca_file.display(),
    ));
    let o = p.run().await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(
        o.message
            .starts_with(&format!("member {}: ", t.set.host(2))),
        "{}",
        o.message
    );
    assert!(
        !format!("{o:?}").contains("s3cret"),
        "the URL's password is a secret"
    );
}

#[tokio::test]
async fn driver_tls_failure_is_classified_from_its_monitoring_events() {
    // depprobe's own dial checks the certificate against `tls.server_name`; the driver
    // checks each member against its own host name, and fails. The class comes from
    // the driver's monitoring errors, down to the rustls error.
    let ca = Ca::root("Mongo Test CA").unwrap();
    let leaf = ca.leaf(&["mongo.internal"], Validity::current()).unwrap();
    let set = ReplicaSet::builder()
        .user("probe", "s3cret")
        .tls(&[leaf])
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new().unwrap();
    let p = probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe@{}/?replicaSet=rs0&tls=true\npassword: s3cret\ntls:\n  ca_file: {}\n  system_roots: false\n  server_name: mongo.internal\n{FAST}",
        set.seed_list(),
        scratch.ca(&ca).unwrap().display(),
    ));
    let o = p.run().await;
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
    assert!(
        o.message.contains("no member of the deployment is usable"),
        "{}",
        o.message
    );
    assert_eq!(
        member(&o, &set.host(0))["error_type"],
        "tls_hostname_mismatch",
        "{o:#?}"
    );
    // What depprobe itself saw verified: the facts are there.
    assert!(o.tls.as_ref().is_some_and(|t| t.verified), "{o:#?}");
}

#[tokio::test]
async fn rotated_password_file_is_read_again_and_the_client_rebuilt() {
    let set = ReplicaSet::builder()
        .user("probe", "new-pass")
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new().unwrap();
    let file = scratch.write("password", "old-pass\n").unwrap();
    let p = probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe@{}/?replicaSet=rs0\npassword_file: {}\n{FAST}",
        set.seed_list(),
        file.display()
    ));
    let o = p.run().await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(!format!("{o:?}").contains("old-pass"));
    scratch.write("password", "new-pass\n").unwrap();
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(!format!("{o:?}").contains("new-pass"));
}

#[tokio::test]
async fn missing_password_file_is_credential_missing() {
    let set = probed_set(true).await;
    let p = probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe@{}/?replicaSet=rs0\npassword_file: /nonexistent/mongo-password\n{FAST}",
        set.seed_list()
    ));
    let o = p.run().await;
    assert_down(&o, ErrorType::CredentialMissing, Phase::Auth);
    assert!(
        o.message.contains("/nonexistent/mongo-password"),
        "{}",
        o.message
    );
}

/// A TLS set that requires client certificates from `client_ca`.
async fn mutual_tls_set(ca: &Ca, client_ca: &Ca) -> ReplicaSet {
    let leaf = ca.leaf(&["localhost"], Validity::current()).unwrap();
    ReplicaSet::builder()
        .user("probe", "s3cret")
        .tls(&[leaf])
        .require_client_cert(&client_ca.cert)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_certificate_from_separate_files_is_used_by_both_connections() {
    let ca = Ca::root("Mongo Test CA").unwrap();
    let clients = Ca::root("Mongo Clients CA").unwrap();
    let set = mutual_tls_set(&ca, &clients).await;
    let scratch = Scratch::new().unwrap();
    let (cert, key) = clients
        .leaf(&["probe"], Validity::current())
        .unwrap()
        .write(&scratch.path(""), "client")
        .unwrap();
    let p = probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe@{}/?replicaSet=rs0&tls=true\npassword: s3cret\ntls:\n  ca_file: {}\n  system_roots: false\n  cert_file: {}\n  key_file: {}\n{FAST}",
        set.seed_list(),
        scratch.ca(&ca).unwrap().display(),
        cert.display(),
        key.display(),
    ));
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.tls.as_ref().is_some_and(|t| t.verified));
}

#[tokio::test]
async fn member_requiring_a_client_certificate_without_one_is_client_cert_required() {
    let ca = Ca::root("Mongo Test CA").unwrap();
    let clients = Ca::root("Mongo Clients CA").unwrap();
    let set = mutual_tls_set(&ca, &clients).await;
    let scratch = Scratch::new().unwrap();
    let p = probe(&format!(
        "name: sessions\nkind: mongodb\nurl: mongodb://probe@{}/?replicaSet=rs0&tls=true\npassword: s3cret\ntls:\n  ca_file: {}\n  system_roots: false\n{FAST}",
        set.seed_list(),
        scratch.ca(&ca).unwrap().display(),
    ));
    let o = p.run().await;
    assert_down(&o, ErrorType::TlsClientCertRequired, Phase::Tls);
    assert!(o.message.starts_with("member localhost:"), "{}", o.message);
}

/// The storm finding of `o`.
fn storm(o: &Outcome) -> &depprobe_probes::Finding {
    o.findings
        .iter()
        .find(|f| f.kind == mongodb::ELECTION_STORM)
        .unwrap_or_else(|| panic!("no storm finding: {o:#?}"))
}

#[tokio::test]
async fn several_elections_between_two_heartbeats_are_counted_exactly_without_streaming() {
    // MongoDB before 4.4: no `topologyVersion`, so the driver only polls, every
    // heartbeat. Five elections are held in one change of the set: no heartbeat can
    // fall between them, so only the terms can tell how many there were.
    let set = probed_set(false).await;
    let p = probe_of(&set, "");
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.details["term"], 1);
    assert_eq!(o.details["elections_counted_by"], "term");

    set.elect_in_turn(&[1, 2, 1, 0, 2]);
    let winner = set.host(2);
    wait_for(&p, "the driver to poll the new primary", |v| {
        v.primary.as_deref() == Some(winner.as_str())
    })
    .await;
    let o = p.run().await;
    let storm = storm(&o);
    assert_eq!(storm.facts["count"], 5, "{storm:#?}");
    assert_eq!(storm.facts["previous_term"], 1);
    assert_eq!(storm.facts["term"], 6);
    assert_eq!(storm.facts["re_elected"], false);
    assert!(
        storm.message.starts_with("election storm: 5 elections in ")
            && storm.message.contains(&format!(
                "({} -> {winner}, term 1 -> 6), primary now {winner}",
                set.host(0)
            )),
        "{}",
        storm.message
    );
    assert_eq!(o.details["primary_changes_total"], 5);
    assert_eq!(o.details["primary_changes_in_window"], 5);
    let changes = o.details["primary_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "one look saw all five: {changes:#?}");
    assert_eq!(changes[0]["elections"], 5);
    assert_eq!(changes[0]["election_id"], "7fffffff0000000000000006");
}

#[tokio::test]
async fn a_member_re_elected_between_two_looks_is_two_elections_named_re_elected() {
    let (set, p) = up_set().await;
    // Member 1 wins, then member 0 again, before anyone looks: the same primary
    // as before, two terms later.
    set.elect_in_turn(&[1, 0]);
    let o = p.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = o
        .findings
        .iter()
        .find(|f| f.kind == mongodb::ELECTIONS)
        .unwrap_or_else(|| panic!("no elections finding: {o:#?}"));
    assert_eq!(f.facts["count"], 2);
    assert_eq!(f.facts["re_elected"], true);
    assert_eq!(
        f.message,
        format!(
            "2 elections in the last 600s ({} re-elected, term 1 -> 3), primary now {}",
            set.host(0),
            set.host(0)
        )
    );
    assert_eq!(o.details["primary"], set.host(0).as_str());
    assert_eq!(o.details["term"], 3);
}

#[tokio::test]
async fn elections_while_the_monitors_connections_are_cut_are_counted_exactly() {
    let (set, p) = up_set().await;

    // The network flaps: every connection is cut, the monitors see nothing, and
    // three elections happen meanwhile.
    set.cut_connections();
    wait_for(&p, "the monitors to lose every member", |v| {
        v.members.values().all(|m| m.state == MemberState::Unknown)
    })
    .await;
    for member in [1, 2, 1] {
        set.elect(member);
    }
    set.restore_connections();
    let winner = set.host(1);
    wait_for(&p, "the monitors to see the set again", |v| {
        v.primary.as_deref() == Some(winner.as_str())
            && v.members.values().all(|m| m.state != MemberState::Unknown)
    })
    .await;
    let o = p.run().await;
    let storm = storm(&o);
    assert_eq!(storm.facts["count"], 3, "{storm:#?}");
    assert!(
        storm.message.contains(&format!(
            "({} -> {winner}, term 1 -> 4), primary now {winner}",
            set.host(0)
        )),
        "{}",
        storm.message
    );
    assert_eq!(o.details["primary_changes_total"], 3);
}

#[tokio::test]
async fn without_terms_changes_are_observed_and_the_message_says_so() {
    // A server that states no term: the watch counts the primaries it sees.
    let set = ReplicaSet::builder()
        .user("probe", "s3cret")
        .without_terms()
        .start()
        .await
        .unwrap();
    let p = probe_of(&set, "");
    let o = p.run().await;
    assert_eq!(o.details["elections_counted_by"], "observed", "{o:#?}");
    assert_eq!(o.details["term"], Value::Null);
    set.elect(1);
    wait_for(&p, "the new primary", |v| v.primary_changes_total >= 1).await;
    let o = p.run().await;
    let f = &o.findings[0];
    assert_eq!(f.kind, mongodb::ELECTIONS, "{o:#?}");
    assert_eq!(f.facts["counted_by"], "observed");
    assert!(
        f.message.starts_with("1 primary change in the last 600s")
            && f.message.contains("observed changes only"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn lagging_secondary_is_a_replication_lag_finding_naming_it() {
    let set = probed_set(true).await;
    let p = probe_of(&set, "");
    let o = p.run().await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    let lags = o.details["replication_lag_s"].as_object().unwrap();
    assert_eq!(lags.len(), 2, "{lags:#?}");
    assert!(
        lags.values().all(|l| l.as_f64().unwrap() < 5.0),
        "{lags:#?}"
    );

    set.set_lag(2, Duration::from_secs(45));
    let lagging = set.host(2);
    wait_for(&p, "the lagging write to be seen", |v| {
        v.replication_lags()
            .iter()
            .any(|(m, l)| *m == lagging && *l > Duration::from_secs(30))
    })
    .await;
    let o = p.run().await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    let f = &o.findings[0];
    assert_eq!(f.kind, mongodb::REPLICATION_LAG);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.facts["member"], lagging.as_str());
    let lag = f.facts["lag_s"].as_f64().unwrap();
    // The dates differ by 45 s; receiving the two replies adds milliseconds (a
    // loaded machine may add more: the bound only separates 45 s from 0 s or 90 s).
    assert!((40.0..50.0).contains(&lag), "{lag}");
    assert!(
        f.message.starts_with(&format!("member {lagging} is 4")),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("behind the primary (lag_warn 30s)"),
        "{}",
        f.message
    );
    let exported = o.details["replication_lag_s"][lagging.as_str()]
        .as_f64()
        .unwrap();
    assert!((40.0..50.0).contains(&exported), "{exported}");
}

#[tokio::test]
async fn wire_server_without_streaming_states_terms_and_last_writes() {
    use depprobe_tests::mongo::wire::{read_op_reply, write_op_query};
    let set = ReplicaSet::builder()
        .streaming(false)
        .start()
        .await
        .unwrap();
    set.elect_in_turn(&[2, 0]);
    set.set_lag(1, Duration::from_secs(60));
    let ask = |i: usize| {
        let addr = set.addr(i).unwrap();
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            write_op_query(&mut s, 1, &bson::doc! { "isMaster": 1 })
                .await
                .unwrap();
            read_op_reply(&mut s).await.unwrap().1
        }
    };
    let primary = ask(0).await;
    assert!(!primary.contains_key("topologyVersion"), "{primary:#?}");
    assert_eq!(
        primary.get_object_id("electionId").unwrap().to_hex(),
        "7fffffff0000000000000003"
    );
    let secondary = ask(1).await;
    let write = |d: &bson::Document| {
        let w = d.get_document("lastWrite").unwrap();
        (
            w.get_document("opTime").unwrap().get_i64("t").unwrap(),
            w.get_datetime("lastWriteDate").unwrap().timestamp_millis(),
        )
    };
    let ((pt, pdate), (st, sdate)) = (write(&primary), write(&secondary));
    assert_eq!((pt, st), (3, 3));
    // 60 s behind, give or take the moment between the two replies.
    assert!(
        (59_000..61_000).contains(&(pdate - sdate)),
        "{pdate} {sdate}"
    );
    assert!(!secondary.contains_key("electionId"));
}

/// The "done when", under the real agent binary: a replica set that holds
/// 7 elections between two runs is reported as `election_storm` with the count 7
/// at the next run. The set does not stream (MongoDB before 4.4), the heartbeat is
/// 10 s as by default; to keep the test fast the interval is 2 s instead of 30 s:
/// the 7 elections are one change of the set, made between two runs and (with a
/// 10 s heartbeat and no streaming) between two heartbeats.
#[tokio::test]
async fn seven_elections_between_two_runs_of_the_agent_are_a_storm_of_seven() {
    use depprobe_tests::agent_process::{AgentProcess, depprobe_bin};
    let set = probed_set(false).await;
    let scratch = Scratch::new().unwrap();
    let config = scratch
        .write(
            "depprobe.yaml",
            &format!(
                "agent:\n  interval: 2s\n  listen: 127.0.0.1:0\nprobes:\n  - name: sessions\n    kind: mongodb\n    url: mongodb://probe@{}/?replicaSet=rs0\n    password: s3cret\n    heartbeat_frequency: 10s\n",
                set.seed_list()
            ),
        )
        .unwrap();
    let bin = depprobe_bin();
    assert!(
        bin.is_file(),
        "{} does not exist: `cargo test --workspace` builds it; alone, run `cargo build -p depprobe-agent` first or set DEPPROBE_BIN",
        bin.display()
    );
    let agent = AgentProcess::start(&bin, &config, &scratch.path("agent.log"), &[])
        .await
        .unwrap();
    let sessions = |s: &Value| {
        s.as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == "sessions"))
            .cloned()
    };
    let first = poll_status(&agent, |s| {
        sessions(s).filter(|e| e["details"]["term"] == 1)
    })
    .await;
    assert_eq!(first["status"], "up", "{first:#?}");

    // Member 0 loses and wins again in the end: the driver's view never changes.
    set.elect_in_turn(&[1, 2, 0, 1, 2, 1, 0]);
    let after = first["started_at"].clone();
    // Runs after the first: the one that may have been under way during the
    // elections saw term 1, every later one sees all seven at once, never a part.
    let next = poll_status(&agent, |s| {
        sessions(s).filter(|e| e["started_at"] != after && e["details"]["term"] != 1)
    })
    .await;
    assert_eq!(next["details"]["term"], 8, "{next:#?}");
    assert_eq!(next["status"], "degraded", "{next:#?}");
    let storm = next["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "election_storm")
        .unwrap_or_else(|| panic!("no storm: {next:#?}"));
    assert_eq!(storm["count"], 7);
    assert_eq!(storm["re_elected"], true);
    assert!(
        storm["message"]
            .as_str()
            .unwrap()
            .contains(&format!("({} re-elected, term 1 -> 8)", set.host(0))),
        "{storm:#?}"
    );
    assert_eq!(next["details"]["primary_changes_total"], 7);
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("probe_mongodb_primary_changes_total{") && l.ends_with(" 7")),
        "{metrics}"
    );
    assert!(
        metrics.contains("probe_mongodb_replication_lag_seconds{"),
        "{metrics}"
    );
}

/// Polls the agent's `/status` until `pick` finds what it wants.
async fn poll_status(
    agent: &depprobe_tests::agent_process::AgentProcess,
    pick: impl Fn(&Value) -> Option<Value>,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = agent.status().await
            && let Some(v) = pick(&s)
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never matched; log:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
