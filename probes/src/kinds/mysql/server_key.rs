//! The password of a full `caching_sha2_password` (or `sha256_password`) login over
//! plaintext, as the MySQL client sends it: `password || 0`, XORed with the nonce,
//! encrypted with RSA-OAEP (SHA-1, the padding MySQL asks OpenSSL for) under the
//! public key the server sent when asked.
//!
//! The key is untrusted input, read here with aws-lc-rs (RSA keys of 2048 to 8192
//! bits, a public exponent of at most 33 bits) rather than with `mysql_common`'s own
//! reader, which indexes the DER without bounds checks (a truncated key panics the
//! run) and exponentiates with any exponent it is given (a key with a 16 KiB
//! exponent holds the scheduler's thread for seconds).

use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// The PEM labels of an RSA public key: X.509 `SubjectPublicKeyInfo` (what MySQL
/// sends), and PKCS#1 `RSAPublicKey`.
const SPKI: &str = "PUBLIC KEY";
const PKCS1: &str = "RSA PUBLIC KEY";

/// `password || 0` XOR `nonce`, encrypted under the RSA public key in `pem`.
pub fn encrypt_password(password: &[u8], nonce: &[u8], pem: &[u8]) -> Result<Vec<u8>, ProbeError> {
    if nonce.is_empty() {
        return Err(unusable("came with an empty nonce"));
    }
    let spki = spki_der(pem)?;
    let key = PublicEncryptingKey::from_der(&spki)
        .map_err(|e| {
            unusable(&format!(
                "cannot be used ({e}; depprobe takes RSA keys of 2048 to 8192 bits with a public exponent of at most 33 bits)"
            ))
        })?;
    let bits = key.key_size_bits();
    let key = OaepPublicEncryptingKey::new(key)
        .map_err(|_| unusable(&format!("({bits} bits) cannot be used for RSA-OAEP")))?;
    let mut plain = Vec::with_capacity(password.len() + 1);
    plain.extend_from_slice(password);
    plain.push(0);
    if plain.len() > key.max_plaintext_size(&OAEP_SHA1_MGF1SHA1) {
        return Err(unusable(&format!(
            "({bits} bits) is too small to encrypt a password of {} bytes",
            password.len()
        )));
    }
    for (i, b) in plain.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
    let mut sealed = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(&OAEP_SHA1_MGF1SHA1, &plain, &mut sealed, None)
        .map_err(|_| unusable(&format!("({bits} bits) refused the encryption")))?
        .len();
    sealed.truncate(n);
    Ok(sealed)
}

/// The `SubjectPublicKeyInfo` DER of the first PEM block: as it is for `PUBLIC
/// KEY`, wrapped for `RSA PUBLIC KEY`.
fn spki_der(pem: &[u8]) -> Result<Vec<u8>, ProbeError> {
    let text = std::str::from_utf8(pem).map_err(|_| unusable("is not PEM text"))?;
    for (label, wrap) in [(SPKI, false), (PKCS1, true)] {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let Some(start) = text.find(&begin) else {
            continue;
        };
        let body = &text[start + begin.len()..];
        let stop = body
            .find(&end)
            .ok_or_else(|| unusable(&format!("has no `{end}` line")))?;
        let b64: String = body[..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|_| unusable("is not valid base64"))?;
        return Ok(if wrap { wrap_pkcs1(&der) } else { der });
    }
    Err(unusable("is not a PEM `PUBLIC KEY`"))
}

/// `SubjectPublicKeyInfo { AlgorithmIdentifier { rsaEncryption, NULL }, BIT STRING
/// { pkcs1 } }`.
fn wrap_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut inner = RSA_ALGORITHM.to_vec();
    inner.extend(tlv(0x03, &bits));
    tlv(0x30, &inner)
}

/// A DER element with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn unusable(what: &str) -> ProbeError {
    ProbeError::new(
        ErrorType::UnexpectedResponse,
        Phase::Auth,
        format!(
            "the server's RSA public key (asked for to encrypt the password on a session without TLS) {what}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};

    const NONCE: &[u8; 20] = b"abcdefghij0123456789";

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            STANDARD.encode(der)
        )
    }

    fn key_pair() -> (OaepPrivateDecryptingKey, Vec<u8>) {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
        (OaepPrivateDecryptingKey::new(private).unwrap(), spki)
    }

    #[test]
    fn the_password_is_nul_terminated_xored_with_the_nonce_and_oaep_encrypted() {
        let (private, spki) = key_pair();
        let sealed = encrypt_password(b"s3cret", NONCE, pem(SPKI, &spki).as_bytes()).unwrap();
        let mut out = vec![0u8; private.min_output_size()];
        let plain = private
            .decrypt(&OAEP_SHA1_MGF1SHA1, &sealed, &mut out, None)
            .unwrap();
        let clear: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ NONCE[i % NONCE.len()])
            .collect();
        assert_eq!(clear, b"s3cret\0");
    }

    #[test]
    fn a_pkcs1_key_is_wrapped_into_the_spki_it_stands_for() {
        let (_, spki) = key_pair();
        // A 2048-bit SPKI: SEQUENCE (4), AlgorithmIdentifier (15), BIT STRING head (5).
        assert_eq!(wrap_pkcs1(&spki[24..]), spki);
        let pkcs1 = pem(PKCS1, &spki[24..]);
        assert!(encrypt_password(b"pw", NONCE, pkcs1.as_bytes()).is_ok());
    }

    #[test]
    fn a_truncated_or_foreign_key_is_unexpected_response() {
        for bad in [
            pem(SPKI, &[0x30]),
            pem(SPKI, &[0x30, 0x82, 0xff, 0xff, 0x02]),
            "-----BEGIN PUBLIC KEY-----\n%%%\n-----END PUBLIC KEY-----\n".into(),
            "-----BEGIN PUBLIC KEY-----\nMAo=\n".into(),
            "ssh-rsa AAAA".into(),
        ] {
            let e = encrypt_password(b"pw", NONCE, bad.as_bytes()).unwrap_err();
            assert_eq!(e.class, ErrorType::UnexpectedResponse, "{bad}");
            assert_eq!(e.phase, Phase::Auth);
            assert!(e.message.contains("RSA public key"), "{}", e.message);
        }
    }

    #[test]
    fn a_huge_exponent_or_a_small_modulus_is_refused_at_once() {
        let int = |v: &[u8]| {
            let mut c = vec![0u8];
            c.extend_from_slice(v);
            tlv(0x02, &c)
        };
        let spki = |modulus: &[u8], exponent: &[u8]| {
            let pkcs1 = tlv(0x30, &[int(modulus), int(exponent)].concat());
            wrap_pkcs1(&pkcs1)
        };
        let mut modulus = vec![0xc5u8; 256];
        modulus[255] |= 1;
        let started = std::time::Instant::now();
        let huge = spki(&modulus, &vec![0xff; 16 * 1024]);
        let e = encrypt_password(b"pw", NONCE, pem(SPKI, &huge).as_bytes()).unwrap_err();
        assert_eq!(e.class, ErrorType::UnexpectedResponse);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let small = spki(&modulus[..64], &[1, 0, 1]);
        let e = encrypt_password(b"pw", NONCE, pem(SPKI, &small).as_bytes()).unwrap_err();
        assert!(e.message.contains("RSA public key"), "{}", e.message);
    }
}
