//! `kind: amqp` against a real RabbitMQ node (Debian's `rabbitmq-server`), started
//! once for this test binary on private ports: login and vhost over AMQPS with a
//! verified chain, the certificate cases (the node answers `expired.localhost` and
//! `expiring.localhost` with such certificates), AMQPS to the plaintext port, a
//! wrong password and a vhost the user may not open.

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Status};
use depprobe_tests::brokers::RabbitMq;
use depprobe_tests::brokers::rabbitmq::{
    EXPIRED_NAME, EXPIRING_NAME, FORBIDDEN_VHOST, PASSWORD, USER, VHOST,
};
use depprobe_tests::{Scratch, run_once};

async fn node() -> &'static RabbitMq {
    match RabbitMq::shared().await {
        Ok(n) => n,
        Err(e) => panic!("RabbitMQ did not start: {e}"),
    }
}

/// Probes `url` trusting the node's CA; `extra` adds keys (indented under the probe).
async fn probe(node: &RabbitMq, url: &str, extra: &str) -> Outcome {
    run_once(&format!(
        "name: orders-mq\nkind: amqp\nurl: {url}\ntimeout: 10s\ntls:\n  ca_file: {}\n  system_roots: false\n{extra}",
        node.ca_file.display()
    ))
    .await
    .unwrap()
}

fn amqps(node: &RabbitMq, vhost: &str) -> String {
    format!(
        "amqps://{USER}:{PASSWORD}@localhost:{}/{vhost}",
        node.amqps_port
    )
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase, node: &RabbitMq) {
    assert_eq!(o.status, Status::Down, "{o:#?}\n{}", node.log_tail());
    assert_eq!(o.error_type, Some(class), "{o:#?}\n{}", node.log_tail());
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

#[tokio::test]
async fn login_and_vhost_over_a_valid_chain_are_up_with_the_broker_facts() {
    let n = node().await;
    let o = probe(n, &amqps(n, VHOST), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}\n{}", n.log_tail());
    assert_eq!(o.details["amqp.server.product"], "RabbitMQ");
    assert!(
        o.details["amqp.server.version"]
            .as_str()
            .unwrap()
            .starts_with("3."),
        "{:?}",
        o.details
    );
    assert!(
        o.details.contains_key("amqp.cluster_name"),
        "{:?}",
        o.details
    );
    assert_eq!(o.details["amqp.vhost"], VHOST);
    assert!(
        o.message
            .contains(&format!("logged in as {USER} and opened vhost {VHOST}")),
        "{}",
        o.message
    );
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.chain[0].sans, vec!["localhost".to_owned()]);
    for phase in [Phase::Connect, Phase::Tls, Phase::Auth, Phase::Request] {
        assert!(o.timings.get(phase).is_some(), "{phase}");
    }
    assert!(!format!("{o:?}").contains(PASSWORD));
}

#[tokio::test]
async fn password_from_a_file_and_the_default_vhost() {
    let n = node().await;
    let s = Scratch::new().unwrap();
    let file = s.write("pw", &format!("{PASSWORD}\n")).unwrap();
    let o = probe(
        n,
        &format!("amqps://{USER}@localhost:{}/{VHOST}", n.amqps_port),
        &format!("password_file: {}", file.display()),
    )
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    // The default vhost `/` exists, but the user has no permission on it.
    let o = probe(
        n,
        &format!("amqps://{USER}:{PASSWORD}@localhost:{}", n.amqps_port),
        "",
    )
    .await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Request, n);
    assert_eq!(o.details.get("amqp.vhost"), None);
}

#[tokio::test]
async fn expiring_certificate_is_degraded_and_expired_is_cert_expired() {
    let n = node().await;
    let o = probe(
        n,
        &amqps(n, VHOST),
        &format!("  server_name: {EXPIRING_NAME}"),
    )
    .await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CERT_EXPIRING);

    let o = probe(
        n,
        &amqps(n, VHOST),
        &format!("  server_name: {EXPIRED_NAME}"),
    )
    .await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls, n);
    let tls = o.tls.as_ref().unwrap();
    assert!(!tls.verified);
    assert_eq!(tls.chain[0].sans, vec![EXPIRED_NAME.to_owned()]);
}

#[tokio::test]
async fn unknown_ca_and_wrong_name_are_named_with_the_chain() {
    let n = node().await;
    let o = run_once(&format!(
        "name: orders-mq\nkind: amqp\nurl: {}\ntimeout: 10s",
        amqps(n, VHOST)
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls, n);
    assert_eq!(o.tls.as_ref().unwrap().chain.len(), 1);

    let o = probe(n, &amqps(n, VHOST), "  server_name: mq.example.com").await;
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls, n);
}

#[tokio::test]
async fn amqps_to_the_plaintext_port_is_tls_not_offered() {
    let n = node().await;
    let url = format!(
        "amqps://{USER}:{PASSWORD}@localhost:{}/{VHOST}",
        n.amqp_port
    );
    let o = probe(n, &url, "").await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls, n);
    // The same port over amqp:// works (no TLS facts).
    let url = format!("amqp://{USER}:{PASSWORD}@localhost:{}/{VHOST}", n.amqp_port);
    let o = probe(n, &url, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_and_never_shown() {
    let n = node().await;
    let url = format!(
        "amqps://{USER}:not-the-password@localhost:{}/{VHOST}",
        n.amqps_port
    );
    let o = probe(n, &url, "").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth, n);
    assert!(o.message.contains("403"), "{}", o.message);
    assert!(!format!("{o:?}").contains("not-the-password"));
}

#[tokio::test]
async fn a_vhost_the_user_may_not_open_is_auth_rejected() {
    let n = node().await;
    let o = probe(n, &amqps(n, FORBIDDEN_VHOST), "").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Request, n);
    assert!(
        o.message.contains("530") && o.message.contains(FORBIDDEN_VHOST),
        "{}",
        o.message
    );
}
