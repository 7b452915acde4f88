//! Certificate problems in words: which certificate, which algorithm, which key
//! size against which minimum, which intermediate is missing, which CRL entry.
//!
//! The verifiers say what failed in their own terms (`UnknownIssuer`,
//! `CaUsedAsEndEntity`, "CA signature digest algorithm too weak", an algorithm
//! identifier as bytes). The helpers here read the captured chain to say the same
//! thing in the words an operator acts on: "certificate db.internal (leaf) is signed
//! with SHA-1 (sha1WithRSAEncryption)", "the server did not send the intermediate
//! Example Issuing CA", "the chain is in reverse order".

use rustls::AlertDescription;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::outcome::{CertFacts, Problem, common_name};
use crate::taxonomy::ErrorType;
use crate::transport::chain;

/// A signature algorithm by its OID: its name in words, its OID's name, and
/// whether clients refuse it (MD2, MD5, SHA-1: refused by rustls/webpki, by
/// browsers and by OpenSSL from security level 1).
struct SignatureAlgorithm {
    oid: &'static str,
    words: &'static str,
    asn1: &'static str,
    weak: bool,
}

const SIGNATURE_ALGORITHMS: &[SignatureAlgorithm] = &[
    sig(
        "1.2.840.113549.1.1.2",
        "MD2 with RSA",
        "md2WithRSAEncryption",
        true,
    ),
    sig(
        "1.2.840.113549.1.1.4",
        "MD5 with RSA",
        "md5WithRSAEncryption",
        true,
    ),
    sig(
        "1.2.840.113549.1.1.5",
        "SHA-1 with RSA",
        "sha1WithRSAEncryption",
        true,
    ),
    sig("1.3.14.3.2.29", "SHA-1 with RSA", "sha1WithRSA", true),
    sig(
        "1.2.840.10045.4.1",
        "SHA-1 with ECDSA",
        "ecdsa-with-SHA1",
        true,
    ),
    sig("1.2.840.10040.4.3", "SHA-1 with DSA", "dsa-with-sha1", true),
    sig(
        "1.2.840.113549.1.1.14",
        "SHA-224 with RSA",
        "sha224WithRSAEncryption",
        false,
    ),
    sig(
        "1.2.840.113549.1.1.11",
        "SHA-256 with RSA",
        "sha256WithRSAEncryption",
        false,
    ),
    sig(
        "1.2.840.113549.1.1.12",
        "SHA-384 with RSA",
        "sha384WithRSAEncryption",
        false,
    ),
    sig(
        "1.2.840.113549.1.1.13",
        "SHA-512 with RSA",
        "sha512WithRSAEncryption",
        false,
    ),
    sig("1.2.840.113549.1.1.10", "RSA-PSS", "rsassa-pss", false),
    sig(
        "1.2.840.10045.4.3.1",
        "SHA-224 with ECDSA",
        "ecdsa-with-SHA224",
        false,
    ),
    sig(
        "1.2.840.10045.4.3.2",
        "SHA-256 with ECDSA",
        "ecdsa-with-SHA256",
        false,
    ),
    sig(
        "1.2.840.10045.4.3.3",
        "SHA-384 with ECDSA",
        "ecdsa-with-SHA384",
        false,
    ),
    sig(
        "1.2.840.10045.4.3.4",
        "SHA-512 with ECDSA",
        "ecdsa-with-SHA512",
        false,
    ),
    sig("1.3.101.112", "Ed25519", "Ed25519", false),
    sig("1.3.101.113", "Ed448", "Ed448", false),
];

const fn sig(
    oid: &'static str,
    words: &'static str,
    asn1: &'static str,
    weak: bool,
) -> SignatureAlgorithm {
    SignatureAlgorithm {
        oid,
        words,
        asn1,
        weak,
    }
}

/// "SHA-1 with RSA (sha1WithRSAEncryption)", or the OID itself when unknown.
pub(crate) fn signature_algorithm_text(oid: &str) -> String {
    match SIGNATURE_ALGORITHMS.iter().find(|a| a.oid == oid) {
        Some(a) => format!("{} ({})", a.words, a.asn1),
        None => format!("the algorithm with OID {oid}"),
    }
}

/// The algorithm named by the DER of an AlgorithmIdentifier's content (the OID
/// first, as rustls reports an unsupported one), in words.
pub(crate) fn algorithm_id_text(id: &[u8]) -> String {
    let oid = match id {
        [0x06, len, rest @ ..] if usize::from(*len) <= rest.len() && *len < 0x80 => {
            x509_parser::der_parser::oid::Oid::new(rest[..usize::from(*len)].into()).to_id_string()
        }
        _ => return "an algorithm it cannot name".into(),
    };
    signature_algorithm_text(&oid)
}

/// The OID of the algorithm the certificate is signed with.
fn signature_oid(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.signature_algorithm.algorithm.to_id_string())
}

/// The first certificate of the chain that is not its own trust anchor and is
/// signed with a weak algorithm (MD2, MD5, SHA-1): "certificate X (leaf) is signed
/// with SHA-1 with RSA (sha1WithRSAEncryption)".
pub(crate) fn weak_signature(
    chain_der: &[CertificateDer<'_>],
    facts: &[CertFacts],
) -> Option<String> {
    chain_der.iter().zip(facts).enumerate().find_map(|(i, (der, f))| {
        if i > 0 && f.subject == f.issuer {
            // A self-signed root's own signature is never checked.
            return None;
        }
        let oid = signature_oid(der)?;
        let alg = SIGNATURE_ALGORITHMS.iter().find(|a| a.oid == oid && a.weak)?;
        Some(format!(
            "certificate {} ({}) is signed with {} ({}), which current TLS clients refuse (rustls/webpki, browsers, and OpenSSL from security level 1); reissue it with SHA-256",
            f.short_name(),
            chain::position(i),
            alg.words,
            alg.asn1
        ))
    })
}

/// The smallest key sizes a client accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyMinimum {
    /// RSA (and DSA) modulus bits.
    pub rsa: u32,
    /// Elliptic-curve bits.
    pub ec: u32,
    /// Who sets it, for the message ("rustls/webpki", "OpenSSL security level 2").
    pub by: &'static str,
}

impl KeyMinimum {
    /// rustls/webpki: RSA from 2048 bits; P-256 and up.
    pub(crate) const WEBPKI: KeyMinimum = KeyMinimum {
        rsa: 2048,
        ec: 256,
        by: "rustls/webpki clients",
    };

    /// OpenSSL's minimum at security `level` (its `SSL_CTX_set_security_level`).
    pub(crate) fn openssl(level: i32) -> KeyMinimum {
        let (rsa, ec, by) = match level {
            i32::MIN..=0 => (0, 0, "OpenSSL at security level 0"),
            1 => (1024, 160, "OpenSSL at security level 1"),
            2 => (
                2048,
                224,
                "OpenSSL at security level 2 (this system's default)",
            ),
            3 => (3072, 256, "OpenSSL at security level 3"),
            4 => (7680, 384, "OpenSSL at security level 4"),
            _ => (15360, 512, "OpenSSL at security level 5"),
        };
        KeyMinimum { rsa, ec, by }
    }
}

/// The first certificate of the chain whose key is under `min`: "certificate X
/// (leaf) has a 1024-bit RSA key; rustls/webpki clients require at least 2048".
pub(crate) fn weak_key(facts: &[CertFacts], min: KeyMinimum) -> Option<String> {
    facts.iter().enumerate().find_map(|(i, f)| {
        let bits = f.key_bits?;
        let floor = if f.key_type.starts_with("EC") {
            min.ec
        } else if f.key_type == "RSA" {
            min.rsa
        } else {
            return None;
        };
        (bits < floor).then(|| {
            format!(
                "certificate {} ({}) has a {bits}-bit {} key, under the {floor} bits that {} require; reissue it with a larger key",
                f.short_name(),
                chain::position(i),
                f.key_type,
                min.by
            )
        })
    })
}

/// A chain sent in the wrong order: a CA certificate first and the certificate
/// it issued later ("the chain is in reverse order ...").
pub(crate) fn reversed(facts: &[CertFacts]) -> Option<String> {
    let first = facts.first()?;
    if !first.is_ca {
        return None;
    }
    let (at, issued) = facts
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, f)| !f.is_ca && f.issuer == first.subject)?;
    Some(format!(
        "the chain is in reverse order: the server sent the CA certificate {} first and its own certificate {} at position {}; TLS clients take the first certificate as the server's, so configure the server's certificate first, then its issuers",
        first.short_name(),
        issued.short_name(),
        at + 1
    ))
}

/// Why a chain does not lead to a trusted root, from what the server sent: a
/// self-signed certificate nobody trusts, a chain that ends at an untrusted
/// root, or an issuer the server did not send.
pub(crate) fn untrusted(facts: &[CertFacts]) -> String {
    let Some(last) = facts.last() else {
        return "the chain does not lead to a trusted root".into();
    };
    if facts.len() == 1 && last.subject == last.issuer {
        return format!(
            "the chain does not lead to a trusted root: {} is self-signed and not in the trust store",
            last.short_name()
        );
    }
    if last.subject == last.issuer {
        return format!(
            "the chain ends at {}, which is not trusted (it is a root that is not in the trust store)",
            last.short_name()
        );
    }
    let issuer = common_name(&last.issuer);
    if facts.len() == 1 {
        format!(
            "the chain does not lead to a trusted root: the server sent only its certificate {}, issued by {issuer}, which is not in the trust store: either the server did not send the intermediate {issuer} (configure the full chain on the server), or {issuer} is a root this client does not trust (add it with tls.ca_file)",
            last.short_name()
        )
    } else {
        format!(
            "the chain ends at {} ({}), issued by {issuer}, which is neither sent by the server nor in the trust store: either the server did not send the intermediate {issuer}, or {issuer} is a root that is not trusted",
            last.short_name(),
            chain::position(facts.len() - 1)
        )
    }
}

/// Rewrites the problems the WebPKI verifier named in its own terms
/// (`CaUsedAsEndEntity`, `BadSignature`, an algorithm identifier) from what the
/// chain shows: a reversed chain, a weak signature algorithm, a key too small.
pub(crate) fn refine_webpki(
    problems: &mut [Problem],
    chain_der: &[CertificateDer<'_>],
    facts: &[CertFacts],
) {
    if let Some(text) = reversed(facts) {
        for p in problems
            .iter_mut()
            .filter(|p| p.class == ErrorType::TlsBadCertificate)
        {
            p.message = "a CA certificate cannot be the server's own certificate".into();
        }
        if let Some(first) = problems.first_mut() {
            first.message = format!("{text} ({})", first.message);
        }
        return;
    }
    let better = weak_signature(chain_der, facts).or_else(|| weak_key(facts, KeyMinimum::WEBPKI));
    if let (Some(better), Some(p)) = (
        better,
        problems
            .iter_mut()
            .find(|p| p.class == ErrorType::TlsBadCertificate),
    ) {
        p.message = better;
    }
}

/// An alert's name as RFC 8446 spells it: `handshake_failure`, `unknown_ca`.
pub(crate) fn alert_name(alert: AlertDescription) -> String {
    if let AlertDescription::Unknown(code) = alert {
        return format!("unknown alert {code}");
    }
    snake_case(&format!("{alert:?}"))
}

/// `HandshakeFailure` -> `handshake_failure`, `UnknownCA` -> `unknown_ca`,
/// `UnknownPSKIdentity` -> `unknown_psk_identity`.
fn snake_case(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || (chars[i - 1].is_ascii_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_spelt_as_the_rfc_does() {
        assert_eq!(
            alert_name(AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
        assert_eq!(
            alert_name(AlertDescription::ProtocolVersion),
            "protocol_version"
        );
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(
            alert_name(AlertDescription::UnknownPSKIdentity),
            "unknown_psk_identity"
        );
        assert_eq!(
            alert_name(AlertDescription::BadCertificateStatusResponse),
            "bad_certificate_status_response"
        );
        assert_eq!(
            alert_name(AlertDescription::Unknown(200)),
            "unknown alert 200"
        );
    }

    #[test]
    fn an_algorithm_identifier_is_named() {
        // OID 1.2.840.113549.1.1.5 (sha1WithRSAEncryption), then NULL parameters.
        let id = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
        ];
        assert_eq!(
            algorithm_id_text(&id),
            "SHA-1 with RSA (sha1WithRSAEncryption)"
        );
        assert_eq!(algorithm_id_text(&[1, 2, 3]), "an algorithm it cannot name");
    }
}
