//! `kind: nats` against Debian's `nats-server`, one per test on a free port, with
//! certificates made per case: up with the server's facts, the certificate cases,
//! `tls://` to a server without TLS, a wrong password, and the user JWT of a `.creds`
//! file judged before it is sent.

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Status};
use depprobe_tests::brokers::{NatsOptions, NatsServer};
use depprobe_tests::harness::{jwt, unix_in};
use depprobe_tests::{Ca, Scratch, Validity, run_once};

const USER: &str = "probe";
const PASSWORD: &str = "nats-secret-1";

struct Case {
    root: Ca,
    scratch: Scratch,
}

fn case() -> Case {
    Case {
        root: Ca::root("NATS Test Root").unwrap(),
        scratch: Scratch::new().unwrap(),
    }
}

impl Case {
    async fn server(&self, validity: Option<Validity>) -> NatsServer {
        let options = NatsOptions {
            identity: validity.map(|v| self.root.leaf(&["localhost"], v).unwrap()),
            user: Some((USER.into(), PASSWORD.into())),
        };
        NatsServer::start(&options).await.unwrap()
    }

    /// Probes `url` trusting only the case's root; `extra` adds keys.
    async fn probe(&self, url: &str, extra: &str) -> Outcome {
        let ca = self.scratch.ca(&self.root).unwrap();
        run_once(&format!(
            "name: events\nkind: nats\nurl: {url}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n{extra}",
            ca.display()
        ))
        .await
        .unwrap()
    }
}

fn tls_url(s: &NatsServer) -> String {
    format!("tls://{USER}:{PASSWORD}@localhost:{}", s.port)
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

#[tokio::test]
async fn login_over_a_valid_chain_is_up_with_the_server_facts() {
    let c = case();
    let s = c.server(Some(Validity::current())).await;
    let o = c.probe(&tls_url(&s), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}\n{}", s.log_tail());
    assert!(
        o.details["nats.version"]
            .as_str()
            .unwrap()
            .starts_with("2."),
        "{:?}",
        o.details
    );
    assert_eq!(o.details["nats.jetstream"], false);
    assert!(o.message.contains("PING answered"), "{}", o.message);
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.chain[0].sans, vec!["localhost".to_owned()]);
    for phase in [Phase::Connect, Phase::Tls, Phase::Auth] {
        assert!(o.timings.get(phase).is_some(), "{phase}");
    }
    assert!(!format!("{o:?}").contains(PASSWORD));
}

#[tokio::test]
async fn expiring_is_degraded_and_expired_is_cert_expired() {
    let c = case();
    let s = c.server(Some(Validity::expiring_in(5))).await;
    let o = c.probe(&tls_url(&s), "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CERT_EXPIRING);

    let s = c.server(Some(Validity::expired())).await;
    let o = c.probe(&tls_url(&s), "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(!o.tls.as_ref().unwrap().verified);
}

#[tokio::test]
async fn unknown_ca_and_wrong_name_are_named() {
    let c = case();
    let s = c.server(Some(Validity::current())).await;
    let o = run_once(&format!(
        "name: events\nkind: nats\nurl: {}\ntimeout: 5s",
        tls_url(&s)
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert_eq!(o.tls.as_ref().unwrap().chain.len(), 1);

    let o = c
        .probe(&tls_url(&s), "  server_name: nats.example.com")
        .await;
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
}

#[tokio::test]
async fn tls_url_to_a_server_without_tls_is_tls_not_offered() {
    let c = case();
    let s = c.server(None).await;
    let o = c.probe(&tls_url(&s), "").await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
    let o = c
        .probe(
            &format!("nats://{USER}:{PASSWORD}@localhost:{}", s.port),
            "",
        )
        .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_and_never_shown() {
    let c = case();
    let s = c.server(Some(Validity::current())).await;
    let url = format!("tls://{USER}@localhost:{}", s.port);
    let o = c.probe(&url, "password: not-the-password").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(
        o.message.contains("Authorization Violation"),
        "{}",
        o.message
    );
    assert!(!format!("{o:?}").contains("not-the-password"));
}

fn creds_file(c: &Case, exp_in: i64) -> std::path::PathBuf {
    let seed = nkeys::KeyPair::new_user().seed().unwrap();
    let token = jwt(&format!(
        r#"{{"iat":{},"exp":{},"sub":"UABC","nats":{{"type":"user"}}}}"#,
        unix_in(-30 * 86_400),
        unix_in(exp_in)
    ));
    c.scratch
        .write(
            "user.creds",
            &format!(
                "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        )
        .unwrap()
}

#[tokio::test]
async fn an_expired_user_jwt_in_a_creds_file_is_credential_expired_before_connecting() {
    let c = case();
    let s = c.server(None).await;
    let file = creds_file(&c, -3600);
    let url = format!("nats://localhost:{}", s.port);
    let o = c
        .probe(&url, &format!("creds_file: {}", file.display()))
        .await;
    assert_down(&o, ErrorType::CredentialExpired, Phase::Auth);
    assert!(o.message.contains("the user JWT in"), "{}", o.message);
    assert!(o.timings.get(Phase::Connect).is_none(), "nothing was sent");
}

#[tokio::test]
async fn an_expiring_user_jwt_is_signed_sent_and_a_finding() {
    let c = case();
    // A server without authentication accepts any login: the JWT and the nonce
    // signature are sent, and the probe judges the JWT's time left.
    let s = NatsServer::start(&NatsOptions::default()).await.unwrap();
    let file = creds_file(&c, 2 * 86_400);
    let url = format!("nats://localhost:{}", s.port);
    let o = c
        .probe(&url, &format!("creds_file: {}", file.display()))
        .await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CREDENTIAL_EXPIRING);
    assert!(o.details.contains_key("credential_not_after"));
}
