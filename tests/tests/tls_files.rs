//! The files a TLS setup reads fail closed: a CRL file with a malformed block is a
//! configuration error, never a CRL silently missing that block.

use depprobe_tests::{Ca, Scratch, Validity, run_once};

fn probe(ca_file: &std::path::Path, extra: &str) -> String {
    format!(
        "name: t\nkind: tls\naddress: localhost:443\ntls:\n  ca_file: {}\n{extra}",
        ca_file.display()
    )
}

#[tokio::test]
async fn a_crl_file_with_a_malformed_block_is_a_configuration_error() {
    let ca = Ca::root("CRL CA").unwrap();
    let leaf = ca.leaf(&["localhost"], Validity::current()).unwrap();
    let scratch = Scratch::new().unwrap();
    let ca_file = scratch.ca(&ca).unwrap();
    let good = ca.crl(&[&leaf]).unwrap();
    let broken =
        format!("{good}-----BEGIN X509 CRL-----\n!!not base64!!\n-----END X509 CRL-----\n");
    let crl = scratch.write("broken.crl", &broken).unwrap();
    let e = run_once(&probe(
        &ca_file,
        &format!("  crl_file: {}\n", crl.display()),
    ))
    .await
    .expect_err("a malformed CRL must not build");
    let text = e.to_string();
    assert!(text.contains("holds a malformed CRL block"), "{text}");
    // The good CRL alone builds.
    let fine = scratch.write("good.crl", &good).unwrap();
    assert!(
        run_once(&probe(
            &ca_file,
            &format!("  crl_file: {}\n", fine.display())
        ))
        .await
        .is_ok()
    );
}
