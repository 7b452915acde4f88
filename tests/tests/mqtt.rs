//! `kind: mqtt` against Debian's Mosquitto, one per test with certificates made for
//! the case: accepted over MQTT 3.1.1 and 5, the certificate cases, MQTTS to the
//! plaintext listener (a handshake failure: MQTT has no greeting), a wrong password, and a broker refusing the client id.

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Status};
use depprobe_tests::brokers::{Mosquitto, MosquittoOptions};
use depprobe_tests::{Ca, Scratch, Validity, run_once};

const USER: &str = "probe";
const PASSWORD: &str = "mqtt-secret-1";

struct Case {
    root: Ca,
    scratch: Scratch,
}

fn case() -> Case {
    Case {
        root: Ca::root("MQTT Test Root").unwrap(),
        scratch: Scratch::new().unwrap(),
    }
}

impl Case {
    async fn broker(&self, validity: Validity, refuse_empty_client_id: bool) -> Mosquitto {
        Mosquitto::start(&MosquittoOptions {
            identity: Some(self.root.leaf(&["localhost"], validity).unwrap()),
            user: Some((USER.into(), PASSWORD.into())),
            refuse_empty_client_id,
        })
        .await
        .unwrap()
    }

    /// Probes `url` trusting only the case's root; `extra` adds keys.
    async fn probe(&self, url: &str, extra: &str) -> Outcome {
        let ca = self.scratch.ca(&self.root).unwrap();
        run_once(&format!(
            "name: telemetry\nkind: mqtt\nurl: {url}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n{extra}",
            ca.display()
        ))
        .await
        .unwrap()
    }
}

fn mqtts(b: &Mosquitto) -> String {
    format!("mqtts://{USER}:{PASSWORD}@localhost:{}", b.tls_port)
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

#[tokio::test]
async fn connect_is_accepted_over_mqtt_3_and_5() {
    let c = case();
    let b = c.broker(Validity::current(), false).await;
    let o = c.probe(&mqtts(&b), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}\n{}", b.log_tail());
    assert!(
        o.message
            .contains("MQTT 3.1.1: the broker accepted client depprobe-telemetry"),
        "{}",
        o.message
    );
    assert_eq!(o.details["mqtt.connack_code"], 0);
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.chain[0].sans, vec!["localhost".to_owned()]);
    assert!(!format!("{o:?}").contains(PASSWORD));

    let o = c.probe(&mqtts(&b), "protocol_version: \"5\"").await;
    assert_eq!(o.status, Status::Up, "{o:#?}\n{}", b.log_tail());
    assert!(o.message.starts_with("MQTT 5:"), "{}", o.message);
}

#[tokio::test]
async fn expiring_is_degraded_and_expired_is_cert_expired() {
    let c = case();
    let b = c.broker(Validity::expiring_in(5), false).await;
    let o = c.probe(&mqtts(&b), "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CERT_EXPIRING);

    let b = c.broker(Validity::expired(), false).await;
    let o = c.probe(&mqtts(&b), "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(!o.tls.as_ref().unwrap().verified);
}

#[tokio::test]
async fn unknown_ca_and_wrong_name_are_named() {
    let c = case();
    let b = c.broker(Validity::current(), false).await;
    let o = run_once(&format!(
        "name: telemetry\nkind: mqtt\nurl: {}\ntimeout: 5s",
        mqtts(&b)
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert_eq!(o.tls.as_ref().unwrap().chain.len(), 1);

    let o = c.probe(&mqtts(&b), "  server_name: mqtt.example.com").await;
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
}

#[tokio::test]
async fn mqtts_to_the_plaintext_listener_is_a_handshake_failure_that_says_so() {
    let c = case();
    let b = c.broker(Validity::current(), false).await;
    let url = format!("mqtts://{USER}:{PASSWORD}@localhost:{}", b.plain_port);
    let o = c.probe(&url, "").await;
    // MQTT has no greeting: the plaintext listener closes at the ClientHello
    // without a byte, which is all the probe can see.
    assert_down(&o, ErrorType::TlsHandshakeFailure, Phase::Tls);
    assert!(o.message.contains("is this port mqtt://?"), "{}", o.message);
    let url = format!("mqtt://{USER}:{PASSWORD}@localhost:{}", b.plain_port);
    let o = c.probe(&url, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_over_both_versions() {
    let c = case();
    let b = c.broker(Validity::current(), false).await;
    let url = format!("mqtts://{USER}@localhost:{}", b.tls_port);
    for version in ["3.1.1", "5"] {
        let o = c
            .probe(
                &url,
                &format!("password: not-the-password\nprotocol_version: \"{version}\""),
            )
            .await;
        assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
        assert!(o.message.contains("CONNACK"), "{}", o.message);
        assert!(!format!("{o:?}").contains("not-the-password"));
    }
}

#[tokio::test]
async fn a_refused_client_id_is_named() {
    let c = case();
    let b = c.broker(Validity::current(), true).await;
    let o = c.probe(&mqtts(&b), "client_id: \"\"").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Auth);
    assert!(
        o.message.contains("CONNACK 2 (identifier rejected)"),
        "{}",
        o.message
    );
    assert_eq!(o.details["mqtt.connack_code"], 2);
}
