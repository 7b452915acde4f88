//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), as MongoDB runs it over
//! `saslStart` / `saslContinue`, so that the driver's real authentication succeeds
//! with the right password and fails (code 18) with a wrong one.
//!
//! Passwords are taken as written (no SASLprep): the tests use ASCII passwords, for
//! which SASLprep changes nothing.

use std::num::NonZeroU32;

use aws_lc_rs::{digest, hmac, pbkdf2, rand};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// The iteration count: the driver's minimum (mongod uses 15000; fewer keeps the
/// unoptimised test build fast).
const ITERATIONS: u32 = 4096;

/// A conversation after `saslStart`, waiting for the client's proof.
#[derive(Debug)]
pub struct Conversation {
    user: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Why a step of the exchange failed: the server answers code 18 either way.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

/// Handles the client's first message (`n,,n=user,r=nonce`); returns the server's
/// first message and the conversation.
pub fn start(payload: &[u8], salt: &[u8]) -> Result<(Conversation, String), Refused> {
    let text = std::str::from_utf8(payload).map_err(|_| Refused("payload is not UTF-8".into()))?;
    let bare = text
        .strip_prefix("n,,")
        .ok_or_else(|| Refused("channel binding is not supported".into()))?;
    let user = attribute(bare, 'n').ok_or_else(|| Refused("no user name".into()))?;
    let client_nonce = attribute(bare, 'r').ok_or_else(|| Refused("no nonce".into()))?;
    let mut ours = [0u8; 18];
    rand::fill(&mut ours).map_err(|_| Refused("no randomness".into()))?;
    let nonce = format!("{client_nonce}{}", B64.encode(ours));
    let server_first = format!("r={nonce},s={},i={ITERATIONS}", B64.encode(salt));
    Ok((
        Conversation {
            user: user.replace("=2C", ",").replace("=3D", "="),
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        },
        server_first,
    ))
}

impl Conversation {
    /// The user name the client gave.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks the client's final message against `password`; returns the server's
    /// final message (`v=signature`).
    pub fn finish(
        &self,
        payload: &[u8],
        password: Option<&str>,
        salt: &[u8],
    ) -> Result<String, Refused> {
        let text =
            std::str::from_utf8(payload).map_err(|_| Refused("payload is not UTF-8".into()))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| Refused("no proof".into()))?;
        if attribute(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Err(Refused("nonce mismatch".into()));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| Refused("proof is not base64".into()))?;
        let Some(password) = password else {
            return Err(Refused("unknown user".into()));
        };
        let iterations = NonZeroU32::new(ITERATIONS).ok_or_else(|| Refused("iterations".into()))?;
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let salted_key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        if proof.len() != client_signature.as_ref().len() {
            return Err(Refused("proof has the wrong length".into()));
        }
        let recovered: Vec<u8> = proof
            .iter()
            .zip(client_signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        if digest::digest(&digest::SHA256, &recovered).as_ref() != stored_key.as_ref() {
            return Err(Refused("wrong password".into()));
        }
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        Ok(format!("v={}", B64.encode(server_signature.as_ref())))
    }
}

/// The value of `key=` in a comma-separated SCRAM message.
fn attribute(message: &str, key: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        part.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
    })
}
