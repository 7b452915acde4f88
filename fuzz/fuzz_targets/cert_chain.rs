//! Fuzzes what depprobe reads from a server's certificate chain: the facts of each
//! certificate (`chain::facts`, from arbitrary DER), every problem of the chain
//! (`chain::problems`, judged by a real verifier over the system roots) and the
//! expiry findings. None may panic; a certificate that does not parse is named as
//! a problem; each fact's fingerprint is a SHA-256 in hex.
//!
//! Input: four bytes of time (`depprobe_fuzz::moment`), then the chain as a server
//! sends it, DER after DER (`depprobe_fuzz::der_chain`).

#![no_main]

use std::sync::{Arc, OnceLock};

use depprobe_config::TlsSpec;
use depprobe_config::{ConfigDuration, ExpiryWindow};
use depprobe_probes::taxonomy::ErrorType;
use depprobe_probes::transport::chain::{expiry_findings, facts, problems};
use depprobe_probes::transport::tls::verifier;
use libfuzzer_sys::fuzz_target;
use rustls::client::WebPkiServerVerifier;
use rustls_pki_types::{CertificateDer, ServerName};

fn system_verifier() -> &'static Arc<WebPkiServerVerifier> {
    static VERIFIER: OnceLock<Arc<WebPkiServerVerifier>> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        verifier(&TlsSpec::default()).expect("a verifier over the system or bundled roots")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b, c, d], rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let now = depprobe_fuzz::moment([a, b, c, d]);
    let chain: Vec<CertificateDer<'static>> = depprobe_fuzz::der_chain(rest)
        .into_iter()
        .map(|der| CertificateDer::from(der.to_vec()))
        .collect();
    let found = facts(&chain);
    assert!(found.len() <= chain.len());
    for f in &found {
        assert_eq!(f.sha256.len(), 64, "{}", f.sha256);
        assert!(f.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    // The default windows: the earlier of 14 days and a third of the lifetime, of 3
    // days and a tenth (hostile validity dates make hostile lifetimes).
    let warn = ExpiryWindow::earlier(ConfigDuration::days(14), 1.0 / 3.0);
    let critical = ExpiryWindow::earlier(ConfigDuration::days(3), 0.1);
    let _ = expiry_findings(&found, now, &warn, &critical);
    let name = if a % 2 == 0 {
        ServerName::try_from("db.example.com")
    } else {
        ServerName::try_from("127.0.0.1")
    }
    .expect("a valid server name");
    let listed = problems(&chain, &found, &name, system_verifier(), now);
    if chain.is_empty() || found.len() != chain.len() {
        assert!(
            listed
                .iter()
                .any(|p| p.class == ErrorType::TlsBadCertificate),
            "{listed:?}"
        );
    }
});
