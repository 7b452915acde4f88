//! Revocation by OCSP, against real TLS servers that staple responses signed in the
//! test by the test CA (or a responder it delegated to, or a CA that has no say),
//! and a local OCSP responder over HTTP for `tls.ocsp: online`. The responses come
//! from two implementations: the test factory's (x509-ocsp, as the probe reads
//! them) and OpenSSL's `openssl ocsp` responder, which we did not write, so that
//! the probe's requests and its reading of responses are checked against another
//! party's understanding of RFC 6960.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::time::Duration as StdDuration;

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Probe, Severity, Status};
use depprobe_tests::harness::{Pki, assert_down, build_one};
use depprobe_tests::ocsp::{OcspStatus, Signer, responder};
use depprobe_tests::{Ca, HttpServer, Identity, Reply, Scratch, SilentServer, Validity};
use time::{Duration, OffsetDateTime};

fn pki() -> Pki {
    Pki::new("Ocsp").unwrap()
}

fn tomorrow() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(1)
}

/// A `tls` probe of a server presenting `leaf`, trusting `root`, with `extra` keys
/// under `tls:` (indented by four spaces). The server and files live as long as
/// the returned guard.
async fn probe(root: &Ca, leaf: &Identity, extra: &str) -> (Box<dyn Probe>, Scratch, HttpServer) {
    let scratch = Scratch::new().unwrap();
    let ca = scratch.write("root.pem", &root.pem).unwrap();
    let server = HttpServer::builder().tls(leaf).start().await.unwrap();
    let p = build_one(&format!(
        "name: t\nkind: tls\naddress: localhost:{}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n{extra}",
        server.port(),
        ca.display()
    ))
    .unwrap();
    (p, scratch, server)
}

async fn run(root: &Ca, leaf: &Identity, extra: &str) -> Outcome {
    let (p, _scratch, _server) = probe(root, leaf, extra).await;
    p.run().await
}

/// The only finding of `o`, which must be `kind` (a warning), with the target
/// degraded but working.
fn only_warning(o: &Outcome, kind: FindingType) -> &str {
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    assert_eq!(o.findings[0].kind, kind, "{o:#?}");
    assert_eq!(o.findings[0].severity, Severity::Warning);
    &o.findings[0].message
}

#[tokio::test]
async fn a_good_staple_from_the_issuer_is_up() {
    let p = pki();
    let mut leaf = p.localhost(Validity::current()).unwrap();
    leaf.ocsp = Some(
        p.issuing
            .ocsp_response(&leaf, OcspStatus::Good, tomorrow(), Signer::Issuer)
            .unwrap(),
    );
    let o = run(&p.root, &leaf, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.findings.is_empty(), "{o:#?}");
}

#[tokio::test]
async fn a_revoked_staple_is_tls_cert_revoked_with_the_certificate_facts() {
    let p = pki();
    let mut leaf = p.localhost(Validity::current()).unwrap();
    leaf.ocsp = Some(
        p.issuing
            .ocsp_response(&leaf, OcspStatus::Revoked, tomorrow(), Signer::Issuer)
            .unwrap(),
    );
    let o = run(&p.root, &leaf, "").await;
    assert_down(&o, ErrorType::TlsCertRevoked, Phase::Tls);
    assert!(o.message.contains("was revoked on"), "{}", o.message);
    assert!(o.message.contains("stapled by the server"), "{}", o.message);
    let tls = o.tls.as_ref().expect("certificate facts");
    assert!(!tls.verified);
    assert!(tls.chain[0].subject.contains("CN=localhost"), "{tls:#?}");
    assert!(tls.chain[1].subject.contains("Ocsp Issuing CA"), "{tls:#?}");
}

#[tokio::test]
async fn a_staple_signed_by_a_delegated_responder_counts() {
    let p = pki();
    let delegate = p.issuing.ocsp_delegate().unwrap();
    let mut leaf = p.localhost(Validity::current()).unwrap();
    leaf.ocsp = Some(
        p.issuing
            .ocsp_response(
                &leaf,
                OcspStatus::Revoked,
                tomorrow(),
                Signer::Delegate(&delegate),
            )
            .unwrap(),
    );
    let o = run(&p.root, &leaf, "").await;
    assert_down(&o, ErrorType::TlsCertRevoked, Phase::Tls);
}

#[tokio::test]
async fn a_forged_revoked_staple_is_ocsp_invalid_and_never_revokes() {
    let p = pki();
    let stranger = Ca::root("Stranger CA").unwrap();
    let mut leaf = p.localhost(Validity::current()).unwrap();
    // The right CertID, signed by a CA that has no say about this certificate.
    let id = p.issuing.ocsp_cert_id(&leaf).unwrap();
    leaf.ocsp = Some(
        p.issuing
            .ocsp_answer(
                id,
                OcspStatus::Revoked,
                tomorrow(),
                Signer::Forger(&stranger),
            )
            .unwrap(),
    );
    let o = run(&p.root, &leaf, "").await;
    let message = only_warning(&o, FindingType::OCSP_INVALID);
    assert!(message.contains("signature does not verify"), "{message}");
    assert!(message.contains("Ocsp Issuing CA"), "{message}");
}

#[tokio::test]
async fn a_staple_for_another_certificate_or_unreadable_is_ocsp_invalid() {
    let p = pki();
    let other = p.localhost(Validity::current()).unwrap();
    let mut leaf = p.localhost(Validity::current()).unwrap();
    leaf.ocsp = Some(
        p.issuing
            .ocsp_response(&other, OcspStatus::Revoked, tomorrow(), Signer::Issuer)
            .unwrap(),
    );
    let o = run(&p.root, &leaf, "").await;
    let message = only_warning(&o, FindingType::OCSP_INVALID);
    assert!(message.contains("about another certificate"), "{message}");

    leaf.ocsp = Some(b"an OCSP response".to_vec());
    let o = run(&p.root, &leaf, "").await;
    let message = only_warning(&o, FindingType::OCSP_INVALID);
    assert!(
        message.contains("cannot be read as an OCSP response"),
        "{message}"
    );
}

#[tokio::test]
async fn a_stale_staple_is_ocsp_stale_and_an_unknown_one_ocsp_unknown() {
    let p = pki();
    let mut leaf = p.localhost(Validity::current()).unwrap();
    let yesterday = OffsetDateTime::now_utc() - Duration::days(1);
    leaf.ocsp = Some(
        p.issuing
            .ocsp_response(&leaf, OcspStatus::Good, yesterday, Signer::Issuer)
            .unwrap(),
    );
    let o = run(&p.root, &leaf, "").await;
    let message = only_warning(&o, FindingType::OCSP_STALE);
    assert!(message.contains("hours ago ("), "{message}");

    leaf.ocsp = Some(
        p.issuing
            .ocsp_response(&leaf, OcspStatus::Unknown, tomorrow(), Signer::Issuer)
            .unwrap(),
    );
    let o = run(&p.root, &leaf, "").await;
    let message = only_warning(&o, FindingType::OCSP_UNKNOWN);
    assert!(message.contains("does not know certificate"), "{message}");
}

#[tokio::test]
async fn the_issuer_of_a_leaf_sent_alone_is_found_in_ca_file() {
    let root = Ca::root("Lone Root").unwrap();
    let mut leaf = root.leaf(&["localhost"], Validity::current()).unwrap();
    assert_eq!(leaf.chain.len(), 1);
    leaf.ocsp = Some(
        root.ocsp_response(&leaf, OcspStatus::Revoked, tomorrow(), Signer::Issuer)
            .unwrap(),
    );
    let o = run(&root, &leaf, "").await;
    assert_down(&o, ErrorType::TlsCertRevoked, Phase::Tls);
}

#[tokio::test]
async fn must_staple_leaf_with_a_good_staple_has_no_finding() {
    let p = pki();
    let mut leaf = p
        .issuing
        .leaf_must_staple(&["localhost"], Validity::current())
        .unwrap();
    leaf.ocsp = Some(
        p.issuing
            .ocsp_response(&leaf, OcspStatus::Good, tomorrow(), Signer::Issuer)
            .unwrap(),
    );
    let o = run(&p.root, &leaf, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

/// A leaf of `ca` whose AIA names `url`.
fn leaf_at(ca: &Ca, url: &str) -> Identity {
    ca.leaf_with_ocsp(&["localhost"], Validity::current(), url)
        .unwrap()
}

const ONLINE: &str = "  ocsp: online\n  ocsp_timeout: 2s\n";

#[tokio::test]
async fn online_good_answer_is_up_and_kept_until_its_next_update() {
    let p = pki();
    // The responder's address is known only once it listens; the leaf names it.
    let server = HttpServer::builder().start().await.unwrap();
    let leaf = leaf_at(&p.issuing, &server.url("127.0.0.1", "/ocsp"));
    let der = p
        .issuing
        .ocsp_response(&leaf, OcspStatus::Good, tomorrow(), Signer::Issuer)
        .unwrap();
    server.set_responder(responder(vec![(&leaf, der)]));

    let (probe, _scratch, _server) = probe(&p.root, &leaf, ONLINE).await;
    for _ in 0..3 {
        let o = probe.run().await;
        assert_eq!(o.status, Status::Up, "{o:#?}");
        assert!(o.findings.is_empty(), "{o:#?}");
    }
    assert_eq!(server.requests(), 1, "the answer is kept until nextUpdate");
}

#[tokio::test]
async fn online_revoked_answer_is_tls_cert_revoked() {
    let p = pki();
    let server = HttpServer::builder().start().await.unwrap();
    let leaf = leaf_at(&p.issuing, &server.url("127.0.0.1", "/"));
    let der = p
        .issuing
        .ocsp_response(&leaf, OcspStatus::Revoked, tomorrow(), Signer::Issuer)
        .unwrap();
    server.set_responder(responder(vec![(&leaf, der)]));
    let o = run(&p.root, &leaf, ONLINE).await;
    assert_down(&o, ErrorType::TlsCertRevoked, Phase::Tls);
    assert!(
        o.message.contains("answered by http://127.0.0.1:"),
        "{}",
        o.message
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_current_staple_spares_the_responder() {
    let p = pki();
    let server = HttpServer::builder().start().await.unwrap();
    let mut leaf = leaf_at(&p.issuing, &server.url("127.0.0.1", "/"));
    leaf.ocsp = Some(
        p.issuing
            .ocsp_response(&leaf, OcspStatus::Good, tomorrow(), Signer::Issuer)
            .unwrap(),
    );
    let o = run(&p.root, &leaf, ONLINE).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_responder_that_never_answers_is_ocsp_unavailable_within_its_deadline() {
    let p = pki();
    let silent = SilentServer::start().await.unwrap();
    let leaf = leaf_at(&p.issuing, &format!("http://{}/", silent.addr()));
    let o = run(&p.root, &leaf, "  ocsp: online\n  ocsp_timeout: 300ms\n").await;
    let message = only_warning(&o, FindingType::OCSP_UNAVAILABLE);
    assert!(message.contains("did not answer within 300ms"), "{message}");
    // The wait is the `tls` phase's.
    let tls = o.timings.get(Phase::Tls).unwrap();
    assert!(tls >= StdDuration::from_millis(300), "{:?}", o.timings);
}

#[tokio::test]
async fn hostile_or_broken_responders_are_ocsp_unavailable() {
    let p = pki();
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::new(500, "oops"), "answered HTTP 500"),
        (
            Reply::new(302, "").header("location", "http://example.com/"),
            "answered HTTP 302",
        ),
        (Reply::ok(vec![0x30u8; 1 << 20]), "read up to 65536 bytes"),
        (Reply::ok("not DER"), "cannot be read as an OCSP response"),
    ];
    for (reply, expected) in cases {
        let server = HttpServer::builder()
            .respond(move |_| reply.clone())
            .start()
            .await
            .unwrap();
        let leaf = leaf_at(&p.issuing, &server.url("127.0.0.1", "/"));
        let o = run(&p.root, &leaf, ONLINE).await;
        let message = only_warning(&o, FindingType::OCSP_UNAVAILABLE);
        assert!(message.contains(expected), "{expected}: {message}");
    }
}

#[tokio::test]
async fn online_without_a_named_responder_is_ocsp_unavailable() {
    let p = pki();
    let leaf = p.localhost(Validity::current()).unwrap();
    let o = run(&p.root, &leaf, ONLINE).await;
    let message = only_warning(&o, FindingType::OCSP_UNAVAILABLE);
    assert!(message.contains("names no OCSP responder"), "{message}");

    let leaf = leaf_at(&p.issuing, "ldap://ocsp.example.com/");
    let o = run(&p.root, &leaf, ONLINE).await;
    let message = only_warning(&o, FindingType::OCSP_UNAVAILABLE);
    assert!(message.contains("is not an http:// URL"), "{message}");
}

#[tokio::test]
async fn bad_ocsp_settings_are_located_config_errors() {
    for (keys, expected) in [
        ("  ocsp: sometimes\n", "unknown variant"),
        ("  ocsp_timeout: 0s\n", "must be longer than zero"),
    ] {
        let yaml = format!("name: t\nkind: tls\naddress: localhost:443\ntls:\n{keys}");
        let err = build_one(&yaml).err().expect("refused").to_string();
        assert!(err.contains("tls.ocsp"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
}

/// OpenSSL's OCSP responder (`openssl ocsp -index`), a real implementation we did
/// not write: it answers each request the probe sends (run once per request on the
/// request's bytes, so that it listens on no port of its own) from an index that
/// marks one leaf revoked and one valid, signing as the CA.
struct OpensslResponder {
    dir: Scratch,
}

impl OpensslResponder {
    fn new(ca: &Ca, revoked: &Identity, valid: &Identity) -> OpensslResponder {
        let dir = Scratch::new().unwrap();
        dir.write("ca.pem", &ca.pem).unwrap();
        dir.write("ca.key", &ca.key_pem()).unwrap();
        let line = |state: &str, revoked_at: &str, leaf: &Identity| {
            format!(
                "{state}\t351231000000Z\t{revoked_at}\t{}\tunknown\t/CN=localhost\n",
                serial_hex(leaf)
            )
        };
        let index = line("R", "260101000000Z", revoked) + &line("V", "", valid);
        dir.write("index.txt", &index).unwrap();
        OpensslResponder { dir }
    }

    /// OpenSSL's response (DER) to `request` (DER).
    fn answer(&self, request: &[u8]) -> Vec<u8> {
        let req = self.dir.write_bytes("req.der", request).unwrap();
        let out = self.dir.path("resp.der");
        let d = |name: &str| self.dir.path(name);
        let status = std::process::Command::new("openssl")
            .arg("ocsp")
            .arg("-index")
            .arg(d("index.txt"))
            .arg("-CA")
            .arg(d("ca.pem"))
            .arg("-rsigner")
            .arg(d("ca.pem"))
            .arg("-rkey")
            .arg(d("ca.key"))
            .arg("-reqin")
            .arg(&req)
            .arg("-respout")
            .arg(&out)
            .args(["-ndays", "1"])
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        std::fs::read(out).unwrap()
    }
}

/// The leaf's serial as OpenSSL's index writes it (hex, upper case, no sign byte).
fn serial_hex(leaf: &Identity) -> String {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&leaf.chain[0]).unwrap();
    let raw = cert.raw_serial();
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len() - 1);
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

#[tokio::test]
async fn openssls_responder_understands_the_probes_request_and_its_answers_count() {
    let p = pki();
    let server = HttpServer::builder().start().await.unwrap();
    let url = server.url("127.0.0.1", "/");
    let revoked = leaf_at(&p.issuing, &url);
    let valid = leaf_at(&p.issuing, &url);
    let openssl = OpensslResponder::new(&p.issuing, &revoked, &valid);
    server.set_responder(move |req| {
        Reply::ok(openssl.answer(&req.body)).header("content-type", "application/ocsp-response")
    });

    let o = run(&p.root, &valid, ONLINE).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.findings.is_empty(), "{o:#?}");

    let o = run(&p.root, &revoked, ONLINE).await;
    assert_down(&o, ErrorType::TlsCertRevoked, Phase::Tls);
    assert!(
        o.message.contains("was revoked on 2026-01-01T00:00:00Z"),
        "{}",
        o.message
    );
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_staple_made_by_openssl_is_verified() {
    let p = pki();
    let mut revoked = p.localhost(Validity::current()).unwrap();
    let valid = p.localhost(Validity::current()).unwrap();
    let openssl = OpensslResponder::new(&p.issuing, &revoked, &valid);
    // The request as the probe would send it, answered by OpenSSL, stapled.
    let id = p.issuing.ocsp_cert_id(&revoked).unwrap();
    revoked.ocsp = Some(openssl.answer(&depprobe_tests::ocsp::request_for(id).unwrap()));
    let o = run(&p.root, &revoked, "").await;
    assert_down(&o, ErrorType::TlsCertRevoked, Phase::Tls);
}
