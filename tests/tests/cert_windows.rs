//! Expiry windows relative to a certificate's lifetime, and the expected issuer:
//! real TLS servers presenting certificates of 6, 90 and 398 days at several ages,
//! judged with the default windows, with durations and with shares; and chains that
//! verify but come from the wrong CA or carry no pinned key.

use base64::Engine as _;
use depprobe_probes::{ErrorType, FindingType, Outcome, Severity, Status};
use depprobe_tests::harness::Pki;
use depprobe_tests::{Ca, HttpServer, Identity, Scratch, Validity, run_once};
use time::{Duration, OffsetDateTime};

/// `Test Root CA`, and `Test Issuing CA` under it.
fn pki() -> Pki {
    Pki::new("Test").unwrap()
}

/// A validity of `lifetime_hours` in all, of which `left_hours` remain.
fn aged(lifetime_hours: i64, left_hours: i64) -> Validity {
    let now = OffsetDateTime::now_utc();
    let not_after = now + Duration::hours(left_hours) + Duration::minutes(10);
    Validity {
        not_before: not_after - Duration::hours(lifetime_hours),
        not_after,
    }
}

/// One run of a `tls` probe against a server presenting `leaf`, trusting `roots`.
async fn probe(roots: &[&Ca], leaf: &Identity, extra: &str) -> Outcome {
    let pem: String = roots.iter().map(|c| c.pem.as_str()).collect();
    let scratch = Scratch::new().unwrap();
    let ca = scratch.write("roots.pem", &pem).unwrap();
    let server = HttpServer::builder().tls(leaf).start().await.unwrap();
    run_once(&format!(
        "name: t\nkind: tls\naddress: localhost:{}\ntimeout: 2s\ntls:\n  ca_file: {}\n  system_roots: false\n{extra}",
        server.port(),
        ca.display()
    ))
    .await
    .unwrap()
}

/// The severity of the `cert_expiring` finding of a leaf of `lifetime_hours` with
/// `left_hours` to go (`None`: no finding, and the target is up).
async fn expiry(p: &Pki, lifetime_hours: i64, left_hours: i64, extra: &str) -> Option<Severity> {
    let leaf = p
        .issuing
        .leaf(&["localhost"], aged(lifetime_hours, left_hours))
        .unwrap();
    let o = probe(&[&p.root], &leaf, extra).await;
    let found: Vec<_> = o
        .findings
        .iter()
        .filter(|f| f.kind == FindingType::CERT_EXPIRING)
        .collect();
    assert!(found.len() <= 1, "{o:#?}");
    match found.first() {
        None => {
            assert_eq!(o.status, Status::Up, "{o:#?}");
            None
        }
        Some(f) => {
            assert_eq!(o.status, Status::Degraded, "{o:#?}");
            assert_eq!(f.facts["position"], "leaf");
            Some(f.severity)
        }
    }
}

const DAY: i64 = 24;

#[tokio::test]
async fn six_day_certificate_default_windows_follow_its_lifetime() {
    let p = pki();
    // A third of 6 days is 2 days; a tenth is 14.4 hours. A fixed 14d would warn
    // for the certificate's whole life.
    assert_eq!(expiry(&p, 6 * DAY, 5 * DAY, "").await, None);
    assert_eq!(expiry(&p, 6 * DAY, 3 * DAY, "").await, None);
    assert_eq!(expiry(&p, 6 * DAY, 36, "").await, Some(Severity::Warning));
    assert_eq!(expiry(&p, 6 * DAY, 10, "").await, Some(Severity::Critical));
}

#[tokio::test]
async fn ninety_day_certificate_default_windows_are_14_and_3_days() {
    let p = pki();
    assert_eq!(expiry(&p, 90 * DAY, 60 * DAY, "").await, None);
    assert_eq!(expiry(&p, 90 * DAY, 20 * DAY, "").await, None);
    assert_eq!(
        expiry(&p, 90 * DAY, 10 * DAY, "").await,
        Some(Severity::Warning)
    );
    assert_eq!(
        expiry(&p, 90 * DAY, 2 * DAY, "").await,
        Some(Severity::Critical)
    );
}

#[tokio::test]
async fn year_long_certificate_default_windows_are_14_and_3_days() {
    let p = pki();
    assert_eq!(expiry(&p, 398 * DAY, 200 * DAY, "").await, None);
    assert_eq!(expiry(&p, 398 * DAY, 30 * DAY, "").await, None);
    assert_eq!(
        expiry(&p, 398 * DAY, 13 * DAY, "").await,
        Some(Severity::Warning)
    );
    assert_eq!(
        expiry(&p, 398 * DAY, 2 * DAY, "").await,
        Some(Severity::Critical)
    );
}

#[tokio::test]
async fn share_windows_are_taken_of_each_certificates_lifetime() {
    let p = pki();
    let shares = "  warn_before: 33%\n  critical_before: 10%\n";
    // 90 days: warning from 29.7 days left, critical from 9 days.
    assert_eq!(expiry(&p, 90 * DAY, 40 * DAY, shares).await, None);
    assert_eq!(
        expiry(&p, 90 * DAY, 25 * DAY, shares).await,
        Some(Severity::Warning)
    );
    assert_eq!(
        expiry(&p, 90 * DAY, 5 * DAY, shares).await,
        Some(Severity::Critical)
    );
    // 398 days: warning from 131 days left, so 100 days left is already a warning.
    assert_eq!(
        expiry(&p, 398 * DAY, 100 * DAY, shares).await,
        Some(Severity::Warning)
    );
    // 6 days: warning from 47.5 hours, critical from 14.4 hours.
    assert_eq!(expiry(&p, 6 * DAY, 3 * DAY, shares).await, None);
    assert_eq!(
        expiry(&p, 6 * DAY, 12, shares).await,
        Some(Severity::Critical)
    );
}

#[tokio::test]
async fn duration_windows_apply_whatever_the_lifetime() {
    let p = pki();
    let fixed = "  warn_before: 14d\n  critical_before: 3d\n";
    assert_eq!(
        expiry(&p, 6 * DAY, 5 * DAY, fixed).await,
        Some(Severity::Warning)
    );
    assert_eq!(
        expiry(&p, 6 * DAY, 2 * DAY, fixed).await,
        Some(Severity::Critical)
    );
    assert_eq!(expiry(&p, 398 * DAY, 20 * DAY, fixed).await, None);
    assert_eq!(
        expiry(&p, 398 * DAY, 10 * DAY, fixed).await,
        Some(Severity::Warning)
    );
}

#[tokio::test]
async fn expiring_message_shows_the_share_of_lifetime_left() {
    let p = pki();
    let leaf = p
        .issuing
        .leaf(&["localhost"], aged(90 * DAY, 9 * DAY))
        .unwrap();
    let o = probe(&[&p.root], &leaf, "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert!(
        o.message.contains("10% of its 90-day lifetime left"),
        "{}",
        o.message
    );
    let f = &o.findings[0];
    assert_eq!(f.facts["lifetime_days"].as_f64(), Some(90.0));
    assert_eq!(f.facts["share_left_percent"].as_f64(), Some(10.0));
    assert!(f.facts["not_before"].as_str().is_some(), "{f:?}");
}

#[tokio::test]
async fn a_share_window_out_of_range_is_a_located_config_error() {
    let p = pki();
    let leaf = p.issuing.leaf(&["localhost"], Validity::current()).unwrap();
    for bad in ["0%", "150%", "abc%", "14"] {
        let server = HttpServer::builder().tls(&leaf).start().await.unwrap();
        let err = run_once(&format!(
            "name: t\nkind: tls\naddress: localhost:{}\ntls:\n  warn_before: \"{bad}\"\n",
            server.port()
        ))
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("warn_before"), "{bad}: {err}");
    }
}

/// Incident 02: the renewal came from an internal CA that the probe also trusts.
struct Renewal {
    p: Pki,
    internal: Ca,
    renewed: Identity,
}

fn renewal() -> Renewal {
    let p = pki();
    let internal = Ca::root("Internal Fallback CA").unwrap();
    let renewed = internal.leaf(&["localhost"], Validity::current()).unwrap();
    Renewal {
        p,
        internal,
        renewed,
    }
}

#[tokio::test]
async fn renewal_from_an_unexpected_trusted_issuer_is_issuer_unexpected() {
    let r = renewal();
    let expect = "  expect_issuer: 'CN=Test Issuing CA$'\n";
    let o = probe(&[&r.p.root, &r.internal], &r.renewed, expect).await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert!(o.tls.as_ref().unwrap().verified);
    let f = &o.findings[0];
    assert_eq!(f.kind, FindingType::ISSUER_UNEXPECTED);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(
        f.facts["issuer"],
        "O=depprobe test, CN=Internal Fallback CA"
    );
    assert!(o.message.contains("Internal Fallback CA"), "{}", o.message);

    // The expected issuer's own certificate passes.
    let good =
        r.p.issuing
            .leaf(&["localhost"], Validity::current())
            .unwrap();
    let o = probe(&[&r.p.root, &r.internal], &good, expect).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

/// The SHA-256 of the subject public key of `cert`, as (base64, hex with colons).
fn pin_of(cert: &rustls_pki_types::CertificateDer<'_>) -> (String, String) {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).unwrap();
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, c.public_key().raw);
    let hex: Vec<String> = d.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    (
        base64::engine::general_purpose::STANDARD.encode(d.as_ref()),
        hex.join(":"),
    )
}

#[tokio::test]
async fn chain_without_a_pinned_key_is_issuer_unexpected() {
    let r = renewal();
    let good =
        r.p.issuing
            .leaf(&["localhost"], Validity::current())
            .unwrap();
    // Pin the intermediate, in base64 and in hex: the expected chain carries it.
    let (b64, hex) = pin_of(&r.p.issuing.cert);
    for pin in [format!("sha256/{b64}"), hex] {
        let pins = format!("  pin_sha256: ['{pin}']\n");
        let o = probe(&[&r.p.root, &r.internal], &good, &pins).await;
        assert_eq!(o.status, Status::Up, "{pin}: {o:#?}");
        let o = probe(&[&r.p.root, &r.internal], &r.renewed, &pins).await;
        assert_eq!(o.status, Status::Degraded, "{o:#?}");
        assert_eq!(o.findings[0].kind, FindingType::ISSUER_UNEXPECTED);
        assert_eq!(o.findings[0].severity, Severity::Critical);
    }
    // A pin of the leaf's own key matches too.
    let (leaf_pin, _) = pin_of(&r.renewed.chain[0]);
    let pins = format!("  pin_sha256: ['{leaf_pin}']\n");
    let o = probe(&[&r.p.root, &r.internal], &r.renewed, &pins).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn malformed_pins_and_issuer_patterns_are_config_errors() {
    let r = renewal();
    let server = HttpServer::builder().tls(&r.renewed).start().await.unwrap();
    for (bad, key) in [
        ("  pin_sha256: ['abcd']\n", "pin_sha256"),
        ("  expect_issuer: 'CN=(unclosed'\n", "expect_issuer"),
    ] {
        let err = run_once(&format!(
            "name: t\nkind: tls\naddress: localhost:{}\ntls:\n{bad}",
            server.port()
        ))
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains(key), "{bad}: {err}");
    }
}

#[tokio::test]
async fn a_crl_past_its_next_update_is_crl_stale() {
    let p = pki();
    let leaf = p.localhost(Validity::current()).unwrap();
    let scratch = Scratch::new().unwrap();
    let yesterday = OffsetDateTime::now_utc() - Duration::days(1);
    // rustls wants the status of every certificate: the root's CRL (current) covers
    // the intermediate, the intermediate's (stale) the leaf.
    let root_crl = p.root.crl(&[]).unwrap();
    let stale = scratch
        .write(
            "stale.crl",
            &(root_crl.clone() + &p.issuing.crl_due(&[], yesterday).unwrap()),
        )
        .unwrap();
    // Under the default `openssl` profile the client refuses a CRL past its next
    // update, as curl does ("CRL has expired"): the run is down, naming the CRL.
    let o = probe(
        &[&p.root],
        &leaf,
        &format!("  crl_file: {}\n", stale.display()),
    )
    .await;
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(ErrorType::TlsCertRevoked), "{o:#?}");
    assert!(o.message.contains("CRL has expired"), "{}", o.message);
    // rustls/webpki clients go on with a stale CRL: there it is a finding.
    let o = probe(
        &[&p.root],
        &leaf,
        &format!(
            "  crl_file: {}\n  client_profile: webpki\n",
            stale.display()
        ),
    )
    .await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = &o.findings[0];
    assert_eq!(f.kind, FindingType::CRL_STALE);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.facts["issuer"], "O=depprobe test, CN=Test Issuing CA");
    assert!(o.message.contains("Test Issuing CA"), "{}", o.message);

    // A current CRL is silent.
    let fresh = scratch
        .write("fresh.crl", &(root_crl + &p.issuing.crl(&[]).unwrap()))
        .unwrap();
    let o = probe(
        &[&p.root],
        &leaf,
        &format!("  crl_file: {}\n", fresh.display()),
    )
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn must_staple_certificate_without_a_staple_is_ocsp_missing() {
    let p = pki();
    let mut leaf = p
        .issuing
        .leaf_must_staple(&["localhost"], Validity::current())
        .unwrap();
    let o = probe(&[&p.root], &leaf, "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    let f = &o.findings[0];
    assert_eq!(f.kind, FindingType::OCSP_MISSING);
    assert_eq!(f.severity, Severity::Critical);
    assert!(o.message.contains("must-staple"), "{}", o.message);

    // The same certificate with a staple: no `ocsp_missing` (the staple's content
    // is judged in tests/tests/ocsp.rs).
    leaf.ocsp = Some(b"an OCSP response".to_vec());
    let o = probe(&[&p.root], &leaf, "").await;
    assert!(
        o.findings
            .iter()
            .all(|f| f.kind != FindingType::OCSP_MISSING),
        "{o:#?}"
    );

    // An ordinary certificate needs no staple.
    let plain = p.localhost(Validity::current()).unwrap();
    let o = probe(&[&p.root], &plain, "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}
