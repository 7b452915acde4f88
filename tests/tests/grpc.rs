//! `kind: grpc` against the `tonic-health` server (the real implementation of
//! `grpc.health.v1.Health`) over TLS with certificates made per case: up for a
//! SERVING service, the TLS classes with the chain still reported, cleartext where
//! TLS is required, a rejected token, NOT_SERVING and a service the server does not
//! know.

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Status};
use depprobe_tests::brokers::grpc::{GrpcHealthOptions, GrpcHealthServer};
use depprobe_tests::{Ca, Identity, Scratch, SilentServer, Validity, run_once};
use tonic_health::ServingStatus;

struct Case {
    root: Ca,
    scratch: Scratch,
}

fn case() -> Case {
    Case {
        root: Ca::root("gRPC Test Root").unwrap(),
        scratch: Scratch::new().unwrap(),
    }
}

impl Case {
    fn leaf(&self, validity: Validity) -> Identity {
        self.root.leaf(&["localhost"], validity).unwrap()
    }

    async fn server(&self, validity: Validity, token: Option<&str>) -> GrpcHealthServer {
        GrpcHealthServer::start(GrpcHealthOptions {
            identity: Some(self.leaf(validity)),
            token: token.map(str::to_owned),
        })
        .await
        .unwrap()
    }

    /// Probes `url` trusting only the case's root; `extra` adds keys.
    async fn probe(&self, url: &str, extra: &str) -> Outcome {
        let ca = self.scratch.ca(&self.root).unwrap();
        run_once(&format!(
            "name: payments\nkind: grpc\nurl: {url}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n{extra}",
            ca.display()
        ))
        .await
        .unwrap()
    }
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

#[tokio::test]
async fn serving_service_over_a_valid_chain_is_up_with_its_facts() {
    let c = case();
    let s = c.server(Validity::current(), None).await;
    s.set("payments.v1.Payments", ServingStatus::Serving).await;
    let o = c.probe(&s.url(), "service: payments.v1.Payments").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(
        o.message
            .contains("service payments.v1.Payments is SERVING"),
        "{}",
        o.message
    );
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.alpn.as_deref(), Some("h2"));
    assert_eq!(tls.chain[0].sans, vec!["localhost".to_owned()]);
    assert_eq!(o.details["grpc.health.status"], "SERVING");
    for phase in [Phase::Connect, Phase::Tls, Phase::Request] {
        assert!(o.timings.get(phase).is_some(), "{phase}");
    }
    // Without a service, the server as a whole is asked.
    let o = c.probe(&s.url(), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.message.contains("the server is SERVING"), "{}", o.message);
}

#[tokio::test]
async fn expiring_certificate_is_degraded() {
    let c = case();
    let s = c.server(Validity::expiring_in(5), None).await;
    let o = c.probe(&s.url(), "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CERT_EXPIRING);
}

#[tokio::test]
async fn expired_certificate_is_cert_expired_with_the_chain() {
    let c = case();
    let s = c.server(Validity::expired(), None).await;
    let o = c.probe(&s.url(), "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    let tls = o.tls.as_ref().unwrap();
    assert!(!tls.verified);
    assert!(tls.chain[0].subject.contains("localhost"), "{tls:?}");
}

#[tokio::test]
async fn unknown_ca_is_unknown_issuer_with_the_chain() {
    let c = case();
    let s = c.server(Validity::current(), None).await;
    let o = run_once(&format!(
        "name: payments\nkind: grpc\nurl: {}\ntimeout: 5s",
        s.url()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert_eq!(o.tls.as_ref().unwrap().chain.len(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_in_the_phase_it_hung() {
    let silent = SilentServer::start().await.unwrap();
    let o = run_once(&format!(
        "name: payments\nkind: grpc\nurl: http://{}\ntimeout: 1s",
        silent.addr()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::Timeout, Phase::Request);
}

#[tokio::test]
async fn wrong_name_is_hostname_mismatch() {
    let c = case();
    let s = c.server(Validity::current(), None).await;
    let ca = c.scratch.ca(&c.root).unwrap();
    let o = run_once(&format!(
        "name: payments\nkind: grpc\nurl: {}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n  server_name: payments.example.com",
        s.url(),
        ca.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
}

#[tokio::test]
async fn cleartext_server_where_tls_is_required_is_tls_not_offered() {
    let c = case();
    let s = GrpcHealthServer::start(GrpcHealthOptions::default())
        .await
        .unwrap();
    let o = c
        .probe(&format!("https://localhost:{}", s.port()), "")
        .await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
    // The same server over http:// (h2c) is up.
    let o = c.probe(&s.url(), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn rejected_token_is_auth_rejected_and_never_shown() {
    let c = case();
    let s = c.server(Validity::current(), Some("good-token-123")).await;
    let o = c.probe(&s.url(), "bearer_token: wrong-token-456").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Request);
    assert!(
        o.message.contains("gRPC UNAUTHENTICATED (16)"),
        "{}",
        o.message
    );
    assert!(!format!("{o:?}").contains("wrong-token-456"));
    let file = c.scratch.write("token", "good-token-123\n").unwrap();
    let o = c
        .probe(&s.url(), &format!("bearer_token_file: {}", file.display()))
        .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

/// UNAUTHENTICATED to a call that carried no token, in words that name a token
/// ("invalid or missing token"), is `auth_rejected`: there was no token to rotate
/// (`jwt_rejected` needs a bearer token sent). Before, it was `jwt_rejected` ("the
/// token was refused: rotate or re-issue it").
#[tokio::test]
async fn unauthenticated_without_a_token_is_auth_rejected_not_jwt_rejected() {
    let c = case();
    let s = c.server(Validity::current(), Some("good-token-123")).await;
    let o = c.probe(&s.url(), "").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Request);
    assert!(
        o.message.contains("invalid or missing token"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn not_serving_and_unknown_services_are_down_with_their_status() {
    let c = case();
    let s = c.server(Validity::current(), None).await;
    s.set("payments.v1.Payments", ServingStatus::NotServing)
        .await;
    let o = c.probe(&s.url(), "service: payments.v1.Payments").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message
            .contains("service payments.v1.Payments is NOT_SERVING (expected SERVING)"),
        "{}",
        o.message
    );
    assert_eq!(o.details["grpc.health.status"], "NOT_SERVING");

    let o = c.probe(&s.url(), "service: refunds.v1.Refunds").await;
    assert_down(&o, ErrorType::HttpStatus, Phase::Request);
    assert!(o.message.contains("gRPC NOT_FOUND (5)"), "{}", o.message);
    assert_eq!(o.details["grpc.status_code"], 5);
}
