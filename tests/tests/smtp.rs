//! `kind: smtp` against Debian's Postfix, one instance per test with certificates
//! made for the case: STARTTLS and a login, SMTPS, the certificate cases, a relay
//! without STARTTLS, SMTPS to the STARTTLS port, and a wrong password. No mail is
//! ever sent.

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Status};
use depprobe_tests::brokers::Postfix;
use depprobe_tests::{Ca, Scratch, Validity, run_once};

const USER: &str = "probe";
const PASSWORD: &str = "smtp-secret-1";

struct Case {
    root: Ca,
    scratch: Scratch,
}

fn case() -> Case {
    Case {
        root: Ca::root("SMTP Test Root").unwrap(),
        scratch: Scratch::new().unwrap(),
    }
}

impl Case {
    async fn relay(&self, validity: Validity) -> Postfix {
        let id = self.root.leaf(&["localhost"], validity).unwrap();
        Postfix::start(&id, USER, PASSWORD).await.unwrap()
    }

    /// Probes `url` trusting only the case's root; `extra` adds keys.
    async fn probe(&self, url: &str, extra: &str) -> Outcome {
        let ca = self.scratch.ca(&self.root).unwrap();
        run_once(&format!(
            "name: mail-relay\nkind: smtp\nurl: {url}\ntimeout: 10s\ntls:\n  ca_file: {}\n  system_roots: false\n{extra}",
            ca.display()
        ))
        .await
        .unwrap()
    }
}

fn submission(r: &Postfix) -> String {
    format!("smtp://{USER}:{PASSWORD}@localhost:{}", r.starttls_port)
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

#[tokio::test]
async fn starttls_and_login_are_up_and_so_is_smtps() {
    let c = case();
    let r = c.relay(Validity::current()).await;
    let o = c.probe(&submission(&r), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}\n{}", r.log_tail());
    assert!(
        o.message
            .contains("answered EHLO over TLS and accepted the login of probe; no mail sent"),
        "{}",
        o.message
    );
    assert!(
        o.details["smtp.greeting"]
            .as_str()
            .unwrap()
            .contains("localhost"),
        "{:?}",
        o.details
    );
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.chain[0].sans, vec!["localhost".to_owned()]);
    for phase in [Phase::Connect, Phase::Request, Phase::Tls, Phase::Auth] {
        assert!(o.timings.get(phase).is_some(), "{phase}");
    }
    assert!(!format!("{o:?}").contains(PASSWORD));

    let url = format!("smtps://{USER}:{PASSWORD}@localhost:{}", r.smtps_port);
    let o = c.probe(&url, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}\n{}", r.log_tail());
}

#[tokio::test]
async fn expiring_is_degraded_and_expired_is_cert_expired() {
    let c = case();
    let r = c.relay(Validity::expiring_in(5)).await;
    let o = c.probe(&submission(&r), "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CERT_EXPIRING);

    let r = c.relay(Validity::expired()).await;
    let o = c.probe(&submission(&r), "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(!o.tls.as_ref().unwrap().verified);
}

#[tokio::test]
async fn unknown_ca_and_wrong_name_are_named() {
    let c = case();
    let r = c.relay(Validity::current()).await;
    let o = run_once(&format!(
        "name: mail-relay\nkind: smtp\nurl: {}\ntimeout: 10s",
        submission(&r)
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert_eq!(o.tls.as_ref().unwrap().chain.len(), 1);

    let o = c
        .probe(&submission(&r), "  server_name: smtp.example.com")
        .await;
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
}

#[tokio::test]
async fn a_relay_without_starttls_is_tls_not_offered() {
    let c = case();
    let r = c.relay(Validity::current()).await;
    let url = format!("smtp://localhost:{}", r.plain_port);
    let o = c.probe(&url, "").await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
    assert!(
        o.message.contains("does not offer STARTTLS"),
        "{}",
        o.message
    );
    // Plaintext on purpose: up, and no TLS facts.
    let o = c.probe(&url, "starttls: disabled").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn smtps_to_the_starttls_port_is_tls_not_offered() {
    let c = case();
    let r = c.relay(Validity::current()).await;
    let url = format!("smtps://localhost:{}", r.starttls_port);
    let o = c.probe(&url, "").await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_and_never_shown() {
    let c = case();
    let r = c.relay(Validity::current()).await;
    let url = format!("smtp://{USER}@localhost:{}", r.starttls_port);
    let o = c.probe(&url, "password: not-the-password").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(o.message.contains("535"), "{}", o.message);
    assert!(!format!("{o:?}").contains("not-the-password"));
}
