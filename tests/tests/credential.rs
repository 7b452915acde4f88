//! `kind: credential` against real files and variables: missing, empty, expired,
//! expiring, malformed, mismatched, and rotated between runs.

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Severity, Status};
use depprobe_tests::harness::{jwt, unix_in};
use depprobe_tests::{Ca, Scratch, Validity, run_once};

fn assert_down(o: &Outcome, class: ErrorType) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(Phase::Auth), "{o:#?}");
}

async fn token_probe(path: &std::path::Path, extra: &str) -> Outcome {
    run_once(&format!(
        "name: sa-token\nkind: credential\nfile: {}\n{extra}",
        path.display()
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn missing_and_empty_token_files_are_credential_missing() {
    let s = Scratch::new().unwrap();
    let path = s.path("token");
    let o = token_probe(&path, "").await;
    assert_down(&o, ErrorType::CredentialMissing);
    assert!(o.message.contains("does not exist"), "{}", o.message);
    assert_eq!(o.target.address, path.display().to_string());
    std::fs::write(&path, "\n").unwrap();
    assert_down(&token_probe(&path, "").await, ErrorType::CredentialMissing);
}

#[tokio::test]
async fn opaque_token_present_is_up_and_never_shown() {
    let s = Scratch::new().unwrap();
    let path = s.write("token", "opaque-s3cr3t-value\n").unwrap();
    let o = token_probe(&path, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.details["credential_type"], "opaque");
    assert!(
        !serde_json::to_string(&o)
            .unwrap()
            .contains("opaque-s3cr3t-value")
    );
}

#[tokio::test]
async fn valid_jwt_reports_its_expiry() {
    let s = Scratch::new().unwrap();
    let exp = unix_in(30 * 86_400);
    let path = s.write("token", &jwt(&format!(r#"{{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:app:api","exp":{exp}}}"#))).unwrap();
    let o = token_probe(&path, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.details["credential_type"], "jwt");
    assert_eq!(o.details["credential_not_after"].as_f64(), Some(exp as f64));
    assert_eq!(o.details["jwt_subject"], "system:serviceaccount:app:api");
}

#[tokio::test]
async fn expired_jwt_is_credential_expired() {
    let s = Scratch::new().unwrap();
    let path = s
        .write(
            "token",
            &jwt(&format!(r#"{{"exp":{}}}"#, unix_in(-3 * 3_600))),
        )
        .unwrap();
    let o = token_probe(&path, "").await;
    assert_down(&o, ErrorType::CredentialExpired);
    assert!(o.message.contains("expired 3 hours ago"), "{}", o.message);
}

#[tokio::test]
async fn token_past_eighty_percent_of_its_life_is_expiring() {
    let s = Scratch::new().unwrap();
    // A one-hour token issued 55 minutes ago: the kubelet should have rotated it.
    let path = s
        .write(
            "token",
            &jwt(&format!(
                r#"{{"iat":{},"exp":{}}}"#,
                unix_in(-3_300),
                unix_in(300)
            )),
        )
        .unwrap();
    let o = token_probe(&path, "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CREDENTIAL_EXPIRING);
    assert_eq!(o.findings[0].severity, Severity::Warning);
    // An explicit window wins.
    let o = token_probe(&path, "warn_before: 10m\ncritical_before: 6m\n").await;
    assert_eq!(o.findings[0].severity, Severity::Critical);
}

#[tokio::test]
async fn non_jwt_where_a_jwt_is_required_is_invalid() {
    let s = Scratch::new().unwrap();
    let path = s.write("token", "not.a-jwt").unwrap();
    let o = token_probe(&path, "format: jwt\n").await;
    assert_down(&o, ErrorType::CredentialInvalid);
}

#[tokio::test]
async fn rotated_token_file_is_picked_up_on_the_next_run() {
    let s = Scratch::new().unwrap();
    let path = s.path("token");
    let yaml = format!(
        "probes:\n  - name: sa-token\n    kind: credential\n    file: {}\n",
        path.display()
    );
    let cfg = depprobe_tests::harness::config(&yaml).unwrap();
    let probe = depprobe_probes::build(
        &cfg.probes[0],
        &depprobe_probes::ProbeEnv::system().unwrap(),
    )
    .unwrap();
    assert_eq!(
        probe.run().await.error_type,
        Some(ErrorType::CredentialMissing)
    );
    std::fs::write(
        &path,
        jwt(&format!(r#"{{"exp":{}}}"#, unix_in(86_400 * 30))),
    )
    .unwrap();
    assert_eq!(probe.run().await.status, Status::Up);
}

#[tokio::test]
async fn certificate_and_key_are_checked() {
    let s = Scratch::new().unwrap();
    let ca = Ca::root("Client CA").unwrap();
    let good = ca.leaf(&["client"], Validity::current()).unwrap();
    let (cert, key) = good.write(&s.path(""), "good").unwrap();
    let probe = |c: &std::path::Path, k: &std::path::Path| {
        format!(
            "name: client-cert\nkind: credential\ncert_file: {}\nkey_file: {}\n",
            c.display(),
            k.display()
        )
    };
    let o = run_once(&probe(&cert, &key)).await.unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.message.contains("key matches"), "{}", o.message);
    assert!(o.details["credential_not_after"].as_f64().unwrap() > 0.0);

    let other = ca.leaf(&["client"], Validity::current()).unwrap();
    let (_, other_key) = other.write(&s.path(""), "other").unwrap();
    let o = run_once(&probe(&cert, &other_key)).await.unwrap();
    assert_down(&o, ErrorType::CredentialInvalid);
    assert!(o.message.contains("does not match"), "{}", o.message);

    let expired = ca.leaf(&["client"], Validity::expired()).unwrap();
    let (ecert, ekey) = expired.write(&s.path(""), "expired").unwrap();
    assert_down(
        &run_once(&probe(&ecert, &ekey)).await.unwrap(),
        ErrorType::CredentialExpired,
    );

    let soon = ca.leaf(&["client"], Validity::expiring_in(5)).unwrap();
    let (scert, skey) = soon.write(&s.path(""), "soon").unwrap();
    let o = run_once(&probe(&scert, &skey)).await.unwrap();
    assert_eq!(o.status, Status::Degraded);
    assert_eq!(o.findings[0].kind, FindingType::CREDENTIAL_EXPIRING);

    let garbage = s.write("garbage.crt", "not pem").unwrap();
    assert_down(
        &run_once(&probe(&garbage, &key)).await.unwrap(),
        ErrorType::CredentialInvalid,
    );
    assert_down(
        &run_once(&probe(&s.path("absent.crt"), &key)).await.unwrap(),
        ErrorType::CredentialMissing,
    );
}

#[tokio::test]
async fn environment_variable_must_be_set_and_non_empty() {
    // Names unique to this test; the test process sets only the one it checks.
    let o = run_once("name: e\nkind: credential\nenv: DEPPROBE_TEST_UNSET_VARIABLE_7\n")
        .await
        .unwrap();
    assert_down(&o, ErrorType::CredentialMissing);
    assert!(o.message.contains("is not set"), "{}", o.message);
    let o = run_once("name: e\nkind: credential\nenv: PATH\n")
        .await
        .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.target.address, "env:PATH");
}
