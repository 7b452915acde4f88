//! The server side of `caching_sha2_password`, as MySQL 8.0 runs it
//! (`sql/auth/sha2_password.cc`): what the server keeps of a password, the fast path
//! that checks a scramble against the cache, and the full path that checks the
//! password itself, sent in cleartext over TLS or RSA-OAEP encrypted under the
//! server's key over plaintext.
//!
//! The cache holds `SHA256(SHA256(password))`; a scramble is
//! `SHA256(password) XOR SHA256(SHA256(SHA256(password)) || nonce)`, so the server
//! recovers `SHA256(password)` with what it holds and checks that its hash is the
//! cached value. (MySQL checks the full path against `mysql.user`'s salted SHA-crypt
//! string; this server keeps the same double SHA-256 for both, which changes nothing
//! a client can see.) The encrypted password is `password || 0` XOR the nonce
//! (repeated), under RSA-OAEP with SHA-1, the padding MySQL asks OpenSSL for.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// A nonce's length (MySQL's `SCRAMBLE_LENGTH`).
pub const NONCE_LEN: usize = 20;

/// Why the server's RSA key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("RSA key: {0}")]
pub struct KeyError(pub String);

/// A fresh nonce as MySQL makes one (`generate_user_salt`): 7-bit bytes, never NUL
/// nor `$`, so that it also reads as a C string.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    // Randomness that fails leaves zeros, which the loop below still makes valid.
    let _ = aws_lc_rs::rand::fill(&mut n);
    for b in &mut n {
        *b &= 0x7f;
        if *b == 0 || *b == b'$' {
            *b += 1;
        }
    }
    n
}

/// What the server keeps of a password: `SHA256(SHA256(password))`.
pub fn stored(password: &[u8]) -> [u8; 32] {
    sha256(&[&sha256(&[password])])
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The fast path: whether `scramble` (the client's answer to `nonce`) proves the
/// password whose double hash is `stored`.
pub fn scramble_matches(stored: &[u8; 32], nonce: &[u8], scramble: &[u8]) -> bool {
    if scramble.len() != 32 {
        return false;
    }
    let mask = sha256(&[stored, nonce]);
    let mut stage1 = [0u8; 32];
    for (i, b) in stage1.iter_mut().enumerate() {
        *b = scramble[i] ^ mask[i];
    }
    verify_slices_are_equal(digest(&SHA256, &stage1).as_ref(), stored).is_ok()
}

/// The full path: whether `password` (as the client sent it, without its NUL) is
/// the one whose double hash is `stored`.
pub fn password_matches(stored: &[u8; 32], password: &[u8]) -> bool {
    verify_slices_are_equal(&self::stored(password), stored).is_ok()
}

/// The password in a cleartext answer: the bytes before the terminating NUL (none
/// when it has no NUL, as MySQL refuses such an answer).
pub fn cleartext(answer: &[u8]) -> Option<&[u8]> {
    match answer.split_last() {
        Some((0, password)) => Some(password),
        _ => None,
    }
}

/// The server's RSA key pair (MySQL generates a 2048-bit pair at its first start).
pub struct RsaKey {
    key: OaepPrivateDecryptingKey,
    pem: String,
}

impl RsaKey {
    /// A new 2048-bit pair.
    pub fn generate() -> Result<RsaKey, KeyError> {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|e| KeyError(format!("generation: {e}")))?;
        let spki = private
            .public_key()
            .as_der()
            .map_err(|e| KeyError(format!("public key: {e}")))?;
        let pem = pem("PUBLIC KEY", spki.as_ref());
        let key =
            OaepPrivateDecryptingKey::new(private).map_err(|e| KeyError(format!("OAEP: {e}")))?;
        Ok(RsaKey { key, pem })
    }

    /// The public key as MySQL sends it (its `public_key.pem`).
    pub fn public_pem(&self) -> &str {
        &self.pem
    }

    /// The password in an RSA-encrypted answer to `nonce`, or `None` when it does not
    /// decrypt or is not a NUL-terminated password.
    pub fn decrypt_password(&self, nonce: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; self.key.min_output_size()];
        let plain = self
            .key
            .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut buf, None)
            .ok()?;
        let mut plain = plain.to_vec();
        if nonce.is_empty() {
            return None;
        }
        for (i, b) in plain.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
        cleartext(&plain).map(<[u8]>::to_vec)
    }
}

/// `der` in PEM with `label`, 64 characters a line.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A public key with the right PEM label whose DER stops after its first byte.
pub fn truncated_key_pem() -> String {
    pem("PUBLIC KEY", &[0x30])
}

/// A well-formed RSA `SubjectPublicKeyInfo` with a 2048-bit modulus and a public
/// exponent of `exponent_bytes` bytes: encrypting with it costs as many modular
/// squarings as the exponent has bits.
pub fn huge_exponent_key_pem(exponent_bytes: usize) -> String {
    let mut modulus = vec![0xc5u8; 256];
    let _ = aws_lc_rs::rand::fill(&mut modulus);
    modulus[0] |= 0x80;
    modulus[255] |= 1;
    let exponent = vec![0xffu8; exponent_bytes.max(1)];
    let rsa_key = der(0x30, &[der_uint(&modulus), der_uint(&exponent)].concat());
    // AlgorithmIdentifier { rsaEncryption, NULL }.
    let algorithm = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let bits = der(0x03, &[&[0u8][..], &rsa_key].concat());
    pem("PUBLIC KEY", &der(0x30, &[algorithm, bits].concat()))
}

/// A DER element: `tag`, a definite length, `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
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

/// A DER INTEGER for the unsigned big-endian `value`.
fn der_uint(value: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(value.len() + 1);
    if value.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(value);
    der(0x02, &content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;

    const NONCE: [u8; 20] = *b"abcdefghij0123456789";

    #[test]
    fn the_clients_scramble_passes_the_fast_path_and_a_wrong_one_does_not() {
        let stored = stored(b"s3cret");
        let good = scramble_sha256(&NONCE, b"s3cret").unwrap();
        assert!(scramble_matches(&stored, &NONCE, &good));
        let bad = scramble_sha256(&NONCE, b"other").unwrap();
        assert!(!scramble_matches(&stored, &NONCE, &bad));
        let other_nonce = *b"zbcdefghij0123456789";
        assert!(!scramble_matches(&stored, &other_nonce, &good));
    }

    #[test]
    fn the_clients_rsa_answer_decrypts_to_the_password() {
        let key = RsaKey::generate().unwrap();
        let mut plain = b"s3cret\0".to_vec();
        for (i, b) in plain.iter_mut().enumerate() {
            *b ^= NONCE[i % NONCE.len()];
        }
        let sealed = mysql_common::crypto::encrypt(&plain, key.public_pem().as_bytes()).unwrap();
        assert_eq!(
            key.decrypt_password(&NONCE, &sealed).as_deref(),
            Some(&b"s3cret"[..])
        );
        assert_eq!(key.decrypt_password(&NONCE, b"garbage"), None);
    }

    #[test]
    fn a_nonce_is_seven_bit_without_nul_or_dollar() {
        for _ in 0..50 {
            assert!(nonce().iter().all(|b| *b != 0 && *b != b'$' && *b < 0x80));
        }
    }
}
