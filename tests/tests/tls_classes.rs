//! The TLS failure classes, each against a real local server with certificates made
//! for the case. Every test asserts the class, the phase and the facts a user sees.

use depprobe_probes::{ErrorType, FindingType, Outcome, Phase, Severity, Status};
use depprobe_tests::{
    Ca, HttpServer, RawServer, Scratch, SilentServer, Validity, Versions, closed_port, run_once,
};

struct Pki {
    root: Ca,
    inter: Ca,
    scratch: Scratch,
}

fn pki() -> Pki {
    let root = Ca::root("Test Root CA").unwrap();
    let inter = root
        .intermediate("Test Issuing CA", Validity::days(-100, 1000))
        .unwrap();
    Pki {
        root,
        inter,
        scratch: Scratch::new().unwrap(),
    }
}

async fn probe_tls(p: &Pki, port: u16, extra: &str) -> Outcome {
    let ca = p.scratch.ca(&p.root).unwrap();
    run_once(&format!(
        "name: t\nkind: tls\naddress: localhost:{port}\ntimeout: 2s\ntls:\n  ca_file: {}\n  system_roots: false\n{extra}",
        ca.display()
    ))
    .await
    .unwrap()
}

async fn serve(id: &depprobe_tests::Identity) -> HttpServer {
    HttpServer::builder().tls(id).start().await.unwrap()
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

#[tokio::test]
async fn valid_chain_is_up_with_facts_for_every_certificate() {
    let p = pki();
    let leaf = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.error_type, None);
    let tls = o.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert_eq!(tls.version.as_deref(), Some("1.3"));
    assert!(
        tls.cipher.as_deref().unwrap().starts_with("TLS13_"),
        "{tls:?}"
    );
    assert_eq!(tls.chain.len(), 2);
    assert_eq!(tls.chain[0].subject, "O=depprobe test, CN=localhost");
    assert_eq!(tls.chain[0].issuer, "O=depprobe test, CN=Test Issuing CA");
    assert_eq!(tls.chain[0].sans, vec!["localhost".to_string()]);
    assert_eq!(tls.chain[0].key_type, "EC P-256");
    assert_eq!(tls.chain[0].sha256.len(), 64);
    assert!(tls.chain[1].is_ca);
    assert!(o.timings.get(Phase::Dns).is_some() && o.timings.get(Phase::Tls).is_some());
}

#[tokio::test]
async fn expired_leaf_is_cert_expired_with_its_dates() {
    let p = pki();
    let leaf = p.inter.leaf(&["localhost"], Validity::expired()).unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(
        o.message.contains("CN=localhost") || o.message.contains("localhost (leaf) expired"),
        "{}",
        o.message
    );
    assert!(o.message.contains("not after"), "{}", o.message);
    let tls = o
        .tls
        .as_ref()
        .expect("facts are kept when verification fails");
    assert!(!tls.verified);
    assert!(tls.chain[0].not_after < std::time::SystemTime::now());
}

#[tokio::test]
async fn expired_intermediate_under_a_valid_leaf_is_cert_expired() {
    let p = pki();
    let old_inter = p
        .root
        .intermediate("Old Issuing CA", Validity::days(-400, -2))
        .unwrap();
    let leaf = old_inter.leaf(&["localhost"], Validity::current()).unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    assert!(
        o.message
            .contains("Old Issuing CA (intermediate #1) expired"),
        "{}",
        o.message
    );
    assert_eq!(o.tls.as_ref().unwrap().chain.len(), 2);
}

#[tokio::test]
async fn not_yet_valid_leaf_is_named() {
    let p = pki();
    let leaf = p
        .inter
        .leaf(&["localhost"], Validity::not_yet_valid())
        .unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsCertNotYetValid, Phase::Tls);
    assert!(o.message.contains("not valid before"), "{}", o.message);
}

#[tokio::test]
async fn unknown_ca_is_unknown_issuer_with_the_chain_reported() {
    let p = pki();
    let other = Ca::root("Internal Fallback CA").unwrap();
    let leaf = other.leaf(&["localhost"], Validity::current()).unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert!(o.message.contains("Internal Fallback CA"), "{}", o.message);
    let chain = &o.tls.as_ref().unwrap().chain;
    assert_eq!(chain[0].issuer, "O=depprobe test, CN=Internal Fallback CA");
}

#[tokio::test]
async fn self_signed_leaf_is_unknown_issuer() {
    let p = pki();
    let leaf = Ca::self_signed(&["localhost"], Validity::current()).unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsUnknownIssuer, Phase::Tls);
    assert!(o.message.contains("self-signed"), "{}", o.message);
}

#[tokio::test]
async fn wrong_name_is_hostname_mismatch() {
    let p = pki();
    let leaf = p
        .inter
        .leaf(&["other.example"], Validity::current())
        .unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
    assert!(
        o.message
            .contains("not valid for localhost (it covers other.example)"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn wrong_name_and_expired_are_both_reported() {
    let p = pki();
    let leaf = p
        .inter
        .leaf(&["other.example"], Validity::expired())
        .unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    let classes: Vec<ErrorType> = o.problems.iter().map(|p| p.class).collect();
    assert_eq!(
        classes,
        vec![ErrorType::TlsCertExpired, ErrorType::TlsHostnameMismatch]
    );
    assert!(
        o.message
            .contains("also: the certificate is not valid for localhost"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn expired_and_untrusted_are_both_reported() {
    let p = pki();
    let other = Ca::root("Internal Fallback CA").unwrap();
    let leaf = other.leaf(&["localhost"], Validity::expired()).unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
    let classes: Vec<ErrorType> = o.problems.iter().map(|p| p.class).collect();
    assert_eq!(
        classes,
        vec![ErrorType::TlsCertExpired, ErrorType::TlsUnknownIssuer]
    );
}

#[tokio::test]
async fn server_name_override_is_used_for_sni_and_verification() {
    let p = pki();
    let leaf = p
        .inter
        .leaf(&["api.internal.example"], Validity::current())
        .unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "  server_name: api.internal.example\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.tls.unwrap().server_name, "api.internal.example");
}

#[tokio::test]
async fn required_client_certificate_is_named_on_tls13_first_read() {
    let p = pki();
    let leaf = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    let client_ca = Ca::root("Client CA").unwrap();
    let server = HttpServer::builder()
        .tls(&leaf)
        .versions(Versions::Tls13Only)
        .require_client_cert(&client_ca.cert)
        .start()
        .await
        .unwrap();
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsClientCertRequired, Phase::Tls);

    // With a certificate the server trusts, the same probe is up.
    let client = client_ca
        .leaf(&["depprobe-client"], Validity::current())
        .unwrap();
    let (cert, key) = client
        .write(p.scratch.path("").as_path(), "client")
        .unwrap();
    let o = probe_tls(
        &p,
        server.port(),
        &format!(
            "  cert_file: {}\n  key_file: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn required_client_certificate_is_named_on_tls12() {
    let p = pki();
    let leaf = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    let client_ca = Ca::root("Client CA").unwrap();
    let server = HttpServer::builder()
        .tls(&leaf)
        .versions(Versions::Tls12Only)
        .require_client_cert(&client_ca.cert)
        .start()
        .await
        .unwrap();
    let o = probe_tls(&p, server.port(), "").await;
    assert_down(&o, ErrorType::TlsClientCertRequired, Phase::Tls);
}

#[tokio::test]
async fn tls12_only_server_fails_a_probe_that_requires_tls13() {
    let p = pki();
    let leaf = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    let server = HttpServer::builder()
        .tls(&leaf)
        .versions(Versions::Tls12Only)
        .start()
        .await
        .unwrap();
    let o = probe_tls(&p, server.port(), "  min_version: \"1.3\"\n").await;
    assert_down(&o, ErrorType::TlsHandshakeFailure, Phase::Tls);
    // Without the requirement the same server is up over 1.2.
    let o = probe_tls(&p, server.port(), "").await;
    assert_eq!(o.tls.unwrap().version.as_deref(), Some("1.2"));
}

#[tokio::test]
async fn plaintext_server_is_tls_not_offered() {
    let p = pki();
    let server = RawServer::start(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let o = probe_tls(&p, server.addr().port(), "").await;
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn silent_server_is_a_timeout_in_phase_tls() {
    let p = pki();
    let server = SilentServer::start().await.unwrap();
    let ca = p.scratch.ca(&p.root).unwrap();
    let o = run_once(&format!(
        "name: t\nkind: tls\naddress: 127.0.0.1:{}\ntimeout: 300ms\ntls:\n  ca_file: {}\n",
        server.addr().port(),
        ca.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::Timeout, Phase::Tls);
    assert!(
        o.message
            .contains("did not complete the TLS handshake within 300ms"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn closed_port_is_connect_refused() {
    let p = pki();
    let port = closed_port().await.unwrap();
    let o = probe_tls(&p, port, "").await;
    assert_down(&o, ErrorType::ConnectRefused, Phase::Connect);
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn unresolvable_name_is_dns_not_found() {
    let o = run_once("name: t\nkind: tls\naddress: nothing-here.invalid:443\ntimeout: 5s\n")
        .await
        .unwrap();
    assert_down(&o, ErrorType::DnsNotFound, Phase::Dns);
    assert!(o.message.contains("nothing-here.invalid"), "{}", o.message);
}

#[tokio::test]
async fn certificate_ten_days_from_expiry_is_a_warning() {
    let p = pki();
    let leaf = p
        .inter
        .leaf(&["localhost"], Validity::expiring_in(10))
        .unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings.len(), 1);
    let f = &o.findings[0];
    assert_eq!(f.kind, FindingType::CERT_EXPIRING);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.facts["days_left"].as_f64().map(f64::floor), Some(10.0));
    assert!(o.message.contains("expires in 10 days"), "{}", o.message);
}

#[tokio::test]
async fn certificate_two_days_from_expiry_is_critical() {
    let p = pki();
    let leaf = p
        .inter
        .leaf(&["localhost"], Validity::expiring_in(2))
        .unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(&p, server.port(), "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    let f = &o.findings[0];
    assert_eq!(f.kind, FindingType::CERT_EXPIRING);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.facts["days_left"].as_f64().map(f64::floor), Some(2.0));
}

#[tokio::test]
async fn expiring_intermediate_is_a_finding_too() {
    let p = pki();
    let inter = p
        .root
        .intermediate("Short Issuing CA", Validity::days(-300, 5))
        .unwrap();
    let leaf = inter.leaf(&["localhost"], Validity::days(-10, 4)).unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(
        &p,
        server.port(),
        "  warn_before: 30d\n  critical_before: 1d\n",
    )
    .await;
    assert_eq!(o.status, Status::Degraded);
    let positions: Vec<_> = o
        .findings
        .iter()
        .map(|f| f.facts["position"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(positions, vec!["leaf", "intermediate #1"]);
}

#[tokio::test]
async fn revoked_certificate_is_cert_revoked() {
    let p = pki();
    let leaf = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    let crl = p.inter.crl(&[&leaf]).unwrap();
    let crl_path = p.scratch.write("revoked.crl", &crl).unwrap();
    let server = serve(&leaf).await;
    let o = probe_tls(
        &p,
        server.port(),
        &format!("  crl_file: {}\n", crl_path.display()),
    )
    .await;
    assert_down(&o, ErrorType::TlsCertRevoked, Phase::Tls);
}

// ---- Verdict parity with curl (issue 23): the `openssl` profile, curl's rules ----

/// curl's verdict on the same server with `--cacert ca`: whether it got the page
/// (run beside the server's task, never blocking it).
async fn curl_gets(port: u16, ca: &std::path::Path) -> bool {
    tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(format!("https://localhost:{port}/"))
        .env("HOME", "/nonexistent")
        .output()
        .await
        .map(|o| {
            eprintln!("curl: {}", String::from_utf8_lossy(&o.stderr));
            o.status.success()
        })
        .unwrap_or(false)
}

fn legacy(o: &Outcome) -> Vec<String> {
    let mut out: Vec<String> = o
        .findings
        .iter()
        .filter(|f| f.kind == FindingType::CERT_LEGACY)
        .map(|f| {
            assert_eq!(f.severity, Severity::Notice, "{f:#?}");
            f.facts["legacy"].as_str().unwrap().to_owned()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_howto_self_signed_ca_true_certificate_is_up_as_curl_with_cert_legacy() {
    let dir = Scratch::new().unwrap();
    // `openssl req -x509 ... -subj /CN=localhost -addext subjectAltName=DNS:localhost`
    let id = depprobe_tests::openssl_cli::self_signed_howto(
        &dir.path(""),
        "howto",
        "localhost",
        Some("DNS:localhost"),
    )
    .unwrap();
    let ca = dir.path("howto.crt");
    let server = serve(&id).await;
    let yaml = format!(
        "name: h\nkind: http\nurl: https://localhost:{}/\ntimeout: 5s\ntls:\n  ca_file: {}\n",
        server.port(),
        ca.display()
    );
    let o = run_once(&yaml).await.unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(legacy(&o), vec!["ca_leaf"], "{o:#?}");
    let f = o
        .findings
        .iter()
        .find(|f| f.kind == FindingType::CERT_LEGACY)
        .unwrap();
    assert!(f.message.contains("CA:TRUE"), "{}", f.message);
    assert!(curl_gets(server.port(), &ca).await, "curl gets the page");
    // Go, Rust and browser clients refuse it: the webpki profile says so.
    let o = run_once(&format!("{yaml}  client_profile: webpki\n"))
        .await
        .unwrap();
    assert_down(&o, ErrorType::TlsBadCertificate, Phase::Tls);
}

#[tokio::test]
async fn a_cn_only_certificate_is_up_as_curl_and_only_the_intermediate_as_ca_file_too() {
    use depprobe_tests::openssl_cli::CliCa;
    let dir = Scratch::new().unwrap();
    let ca = CliCa::new(&dir.path(""), "CLI Root CA").unwrap();
    // `openssl req -subj /CN=localhost` then `x509 -req` with CA:FALSE and no SAN.
    let id = ca
        .issue(
            "cnonly",
            "/CN=localhost",
            Some("basicConstraints=CA:FALSE\n"),
        )
        .unwrap();
    let server = serve(&id).await;
    let o = run_once(&format!(
        "name: t\nkind: tls\naddress: localhost:{}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n",
        server.port(),
        ca.cert.display()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(legacy(&o), vec!["cn_only"], "{o:#?}");
    assert!(curl_gets(server.port(), &ca.cert).await);
    // ... and a wrong CN is a name mismatch for curl and the probe alike.
    let other = ca
        .issue(
            "other",
            "/CN=other.example",
            Some("basicConstraints=CA:FALSE\n"),
        )
        .unwrap();
    let server = serve(&other).await;
    let o = run_once(&format!(
        "name: t\nkind: tls\naddress: localhost:{}\ntimeout: 5s\ntls:\n  ca_file: {}\n",
        server.port(),
        ca.cert.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsHostnameMismatch, Phase::Tls);
    assert!(!curl_gets(server.port(), &ca.cert).await);

    // curl takes an intermediate in the store as an anchor (partial chains, curl
    // 7.68+); libpq does not (see the postgres tests).
    let p = pki();
    let leaf = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    let server = serve(&leaf).await;
    let inter = p.scratch.ca(&p.inter).unwrap();
    let o = run_once(&format!(
        "name: t\nkind: tls\naddress: localhost:{}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n",
        server.port(),
        inter.display()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(curl_gets(server.port(), &inter).await);
}

// ---- Certificate problems in words (issue 23, item 6) ----

/// Down with `class`, a message that holds every one of `words`, and no dump of
/// a verifier's internals (`Context {`, byte arrays, Rust enum names).
fn assert_in_words(o: &Outcome, class: ErrorType, words: &[&str]) {
    assert_down(o, class, Phase::Tls);
    for w in words {
        assert!(
            o.message.contains(w),
            "{w:?} missing from: {}\n{o:#?}",
            o.message
        );
    }
    for dump in [
        "Context",
        "[6, ",
        "{ ",
        "CaUsedAsEndEntity",
        "BadSignature",
        "HandshakePayload",
    ] {
        assert!(!o.message.contains(dump), "{dump:?} in: {}", o.message);
    }
    assert!(
        o.message.len() < 900,
        "{} bytes: {}",
        o.message.len(),
        o.message
    );
}

/// The same probe under each profile: the default (curl's rules, OpenSSL's
/// verification) and `webpki`.
async fn under_both_profiles(port: u16, ca: &std::path::Path) -> [Outcome; 2] {
    let yaml = format!(
        "name: t\nkind: tls\naddress: localhost:{port}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n",
        ca.display()
    );
    let openssl = run_once(&yaml).await.unwrap();
    let webpki = run_once(&format!("{yaml}  client_profile: webpki\n"))
        .await
        .unwrap();
    [openssl, webpki]
}

#[tokio::test]
async fn sha1_and_md5_signatures_are_named_with_the_certificate() {
    use depprobe_tests::openssl_cli::CliCa;
    let dir = Scratch::new().unwrap();
    let ca = CliCa::new(&dir.path(""), "CLI Root CA").unwrap();
    let ext = "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n";
    for (digest, words) in [("-sha1", "SHA-1 with RSA"), ("-md5", "MD5 with RSA")] {
        let id = ca
            .issue_with("weak", "/CN=localhost", Some(ext), "rsa:2048", Some(digest))
            .unwrap();
        let server = serve(&id).await;
        for o in under_both_profiles(server.port(), &ca.cert).await {
            assert_in_words(
                &o,
                ErrorType::TlsBadCertificate,
                &[
                    words,
                    "certificate localhost (leaf)",
                    "reissue it with SHA-256",
                ],
            );
        }
        assert!(
            !curl_gets(server.port(), &ca.cert).await,
            "curl refuses {digest}"
        );
    }
}

#[tokio::test]
async fn a_1024_bit_rsa_key_is_named_with_the_minimum() {
    use depprobe_tests::openssl_cli::{CliCa, openssl};
    let dir = Scratch::new().unwrap();
    let root = dir.path("");
    let ca = CliCa::new(&root, "CLI Root CA").unwrap();
    // An intermediate with a 1024-bit key, signing a leaf with a 2048-bit one.
    let inter = ca
        .issue_with(
            "inter",
            "/CN=Weak Issuing CA",
            Some("basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n"),
            "rsa:1024",
            None,
        )
        .unwrap();
    openssl(
        &root,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    )
    .unwrap();
    std::fs::write(
        root.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n",
    )
    .unwrap();
    openssl(
        &root,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "inter.crt",
            "-CAkey",
            "inter.key",
            "-CAcreateserial",
            "-out",
            "leaf.crt",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
        ],
    )
    .unwrap();
    let leaf = depprobe_tests::openssl_cli::identity(&root, "leaf", &[&inter.chain_pem]).unwrap();
    let server = serve(&leaf).await;
    let [openssl_o, webpki_o] = under_both_profiles(server.port(), &ca.cert).await;
    assert_in_words(
        &openssl_o,
        ErrorType::TlsBadCertificate,
        &[
            "certificate Weak Issuing CA (intermediate #1) has a 1024-bit RSA key",
            "2048 bits",
            "security level 2",
        ],
    );
    assert_in_words(
        &webpki_o,
        ErrorType::TlsBadCertificate,
        &["1024-bit RSA key", "2048 bits", "rustls/webpki"],
    );
    assert!(!curl_gets(server.port(), &ca.cert).await);
}

/// `openssl s_server` at security level 0 serving `cert`/`key` (a 1024-bit leaf
/// key, which rustls cannot sign with): its port, and the child to kill.
async fn s_server(dir: &std::path::Path) -> (u16, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            "leaf.crt",
            "-key",
            "leaf.key",
            "-www",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(addr) = line.strip_prefix("ACCEPT ") {
            let port = addr.rsplit(':').next().unwrap().parse().unwrap();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (port, child);
        }
    }
    panic!("s_server did not announce its port");
}

#[tokio::test]
async fn a_1024_bit_leaf_key_is_named_not_a_bad_signature() {
    use depprobe_tests::openssl_cli::CliCa;
    let dir = Scratch::new().unwrap();
    let ca = CliCa::new(&dir.path(""), "CLI Root CA").unwrap();
    ca.issue_with(
        "leaf",
        "/CN=localhost",
        Some("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n"),
        "rsa:1024",
        None,
    )
    .unwrap();
    let (port, _server) = s_server(&dir.path("")).await;
    for o in under_both_profiles(port, &ca.cert).await {
        assert_in_words(
            &o,
            ErrorType::TlsBadCertificate,
            &[
                "certificate localhost (leaf) has a 1024-bit RSA key",
                "2048 bits",
            ],
        );
    }
    assert!(!curl_gets(port, &ca.cert).await);
}

#[tokio::test]
async fn a_missing_intermediate_reads_otherwise_than_an_untrusted_root() {
    let p = pki();
    let ca = p.scratch.ca(&p.root).unwrap();
    let full = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    let mut alone = full.clone();
    alone.chain.truncate(1);
    let server = serve(&alone).await;
    for o in under_both_profiles(server.port(), &ca).await {
        assert_in_words(
            &o,
            ErrorType::TlsUnknownIssuer,
            &[
                "the server sent only its certificate localhost, issued by Test Issuing CA",
                "either the server did not send the intermediate Test Issuing CA",
            ],
        );
    }
    assert!(!curl_gets(server.port(), &ca).await);

    // The whole chain of another PKI, its root included: the chain ends at a root
    // nobody here trusts.
    let other_root = Ca::root("Other Root CA").unwrap();
    let other_inter = other_root
        .intermediate("Other Issuing CA", Validity::current())
        .unwrap();
    let mut with_root = other_inter
        .leaf(&["localhost"], Validity::current())
        .unwrap();
    with_root.chain.push(other_root.cert.clone());
    let server = serve(&with_root).await;
    for o in under_both_profiles(server.port(), &ca).await {
        assert_in_words(
            &o,
            ErrorType::TlsUnknownIssuer,
            &["the chain ends at Other Root CA, which is not trusted"],
        );
        assert!(!o.message.contains("did not send"), "{}", o.message);
    }
}

#[tokio::test]
async fn a_reversed_chain_is_named_as_such() {
    let p = pki();
    let ca = p.scratch.ca(&p.root).unwrap();
    let mut reversed = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    reversed.chain.reverse();
    let server = serve(&reversed).await;
    // Both read the CA certificate as the server's: a name mismatch first (WebPKI
    // also refuses a CA certificate as the end entity).
    for o in under_both_profiles(server.port(), &ca).await {
        assert_in_words(
            &o,
            ErrorType::TlsHostnameMismatch,
            &[
                "the chain is in reverse order",
                "CA certificate Test Issuing CA first",
                "localhost at position 2",
            ],
        );
    }
    assert!(!curl_gets(server.port(), &ca).await);
}

#[tokio::test]
async fn a_crl_revocation_names_the_entry() {
    let p = pki();
    let leaf = p.inter.leaf(&["localhost"], Validity::current()).unwrap();
    let crl = p.inter.crl(&[&leaf]).unwrap();
    let crl_path = p.scratch.write("revoked.crl", &crl).unwrap();
    let server = serve(&leaf).await;
    let serial = leaf_facts_serial(&leaf);
    for profile in ["openssl", "webpki"] {
        let o = probe_tls(
            &p,
            server.port(),
            &format!(
                "  crl_file: {}\n  client_profile: {profile}\n",
                crl_path.display()
            ),
        )
        .await;
        assert_in_words(
            &o,
            ErrorType::TlsCertRevoked,
            &[
                "certificate localhost (leaf)",
                &format!("serial {serial}"),
                "reason: keyCompromise",
                "by the CRL of Test Issuing CA",
                "minutes ago (",
            ],
        );
    }
}

/// The serial of an identity's leaf as depprobe prints it.
fn leaf_facts_serial(id: &depprobe_tests::Identity) -> String {
    use x509_parser::prelude::FromDer;
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(id.chain[0].as_ref()).unwrap();
    cert.raw_serial_as_string()
}

#[tokio::test]
async fn an_oversized_certificate_message_is_named() {
    use depprobe_tests::openssl_cli::CliCa;
    let dir = Scratch::new().unwrap();
    let ca = CliCa::new(&dir.path(""), "CLI Root CA").unwrap();
    // 10,000 names: a certificate of about 250 KB, as `openssl x509 -req` makes it.
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("DNS:host-{i:05}.example.com"))
        .collect();
    let ext = format!(
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,{}\n",
        names.join(",")
    );
    let big = ca.issue("leaf", "/CN=localhost", Some(&ext)).unwrap();
    assert!(big.chain[0].len() > 200_000);
    // rustls will not send such a message; OpenSSL's server does.
    let (port, _server) = s_server(&dir.path("")).await;
    for o in under_both_profiles(port, &ca.cert).await {
        assert_in_words(
            &o,
            ErrorType::TlsBadCertificate,
            &["over 64 KiB", "certificate message"],
        );
    }
    assert!(
        !curl_gets(port, &ca.cert).await,
        "curl refuses it too (over 100 KiB)"
    );
}

#[tokio::test]
async fn a_certificate_without_a_subject_is_named_by_its_first_name() {
    use depprobe_tests::openssl_cli::CliCa;
    let dir = Scratch::new().unwrap();
    let ca = CliCa::new(&dir.path(""), "CLI Root CA").unwrap();
    let id = ca
        .issue(
            "nosubject",
            "/",
            Some("basicConstraints=CA:FALSE\nsubjectAltName=critical,DNS:localhost\n"),
        )
        .unwrap();
    let server = serve(&id).await;
    let [o, _] = under_both_profiles(server.port(), &ca.cert).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(
        o.message
            .contains("earliest expiry: localhost (no subject) in "),
        "{}",
        o.message
    );
    assert!(!o.message.contains(":  "), "{}", o.message);
}

/// `openssl ca -gencrl` without a crlnumber file makes an X.509 v1 CRL: curl and
/// the `openssl` profile use it; rustls/webpki refuses to load it, which the
/// `cert_legacy` notice says.
#[tokio::test]
async fn a_v1_crl_is_used_with_a_cert_legacy_notice() {
    use depprobe_tests::openssl_cli::{CliCa, openssl};
    let dir = Scratch::new().unwrap();
    let root = dir.path("");
    let ca = CliCa::new(&root, "CLI Root CA").unwrap();
    let id = ca
        .issue(
            "leaf",
            "/CN=localhost",
            Some("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n"),
        )
        .unwrap();
    std::fs::write(
        root.join("ca.cnf"),
        "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = ca.index\ndefault_md = sha256\ndefault_crl_days = 30\n",
    )
    .unwrap();
    std::fs::write(root.join("ca.index"), "").unwrap();
    openssl(
        &root,
        &[
            "ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt", "-gencrl", "-out",
            "v1.crl",
        ],
    )
    .unwrap();
    let server = serve(&id).await;
    let yaml = format!(
        "name: t\nkind: tls\naddress: localhost:{}\ntimeout: 5s\ntls:\n  ca_file: {}\n  system_roots: false\n  crl_file: {}\n",
        server.port(),
        ca.cert.display(),
        root.join("v1.crl").display()
    );
    let o = run_once(&yaml).await.unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(legacy(&o), vec!["crl_v1"], "{o:#?}");
    let notice = o
        .findings
        .iter()
        .find(|f| f.kind == FindingType::CERT_LEGACY)
        .unwrap();
    assert!(notice.message.contains("CLI Root CA"), "{}", notice.message);
    let strict = run_once(&format!("{yaml}  strict: true\n")).await.unwrap();
    assert_down(&strict, ErrorType::TlsBadCertificate, Phase::Tls);
}
