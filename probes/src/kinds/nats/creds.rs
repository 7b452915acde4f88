//! NATS `.creds` files: a user JWT and the NKey seed that signs the server's nonce.
//! The JWT's times are judged locally, so an expired one is `credential_expired`
//! before anything is sent.

use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::credentials::{self, JwtClaims, Window};
use crate::outcome::Finding;
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// What a `.creds` file holds.
pub(super) struct Creds {
    /// The user JWT.
    pub(super) jwt: String,
    /// The user's NKey seed (`SU...`).
    pub(super) seed: String,
}

fn invalid(what: &str) -> ProbeError {
    ProbeError::new(ErrorType::CredentialInvalid, Phase::Auth, what.to_owned())
}

/// The first non-empty line after the line that contains `marker`.
fn block_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let mut lines = text.lines().skip_while(|l| !l.contains(marker));
    lines.next()?;
    lines
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("---"))
}

/// Parses a `.creds` file's text.
pub(super) fn parse(text: &str, file: &str) -> Result<Creds, ProbeError> {
    let jwt = block_after(text, "BEGIN NATS USER JWT")
        .ok_or_else(|| invalid(&format!("{file} is not a NATS .creds file: no user JWT")))?;
    let seed = block_after(text, "BEGIN USER NKEY SEED")
        .ok_or_else(|| invalid(&format!("{file} is not a NATS .creds file: no NKey seed")))?;
    Ok(Creds {
        jwt: jwt.to_owned(),
        seed: seed.to_owned(),
    })
}

/// The claims of a NATS JWT (`alg: ed25519-nkey`, which generic JWT libraries do
/// not know): its times only.
fn claims(jwt: &str) -> Option<JwtClaims> {
    let mut parts = jwt.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Judges the user JWT at `now`: expired is an error, expiring a finding.
pub(super) fn judge(
    creds: &Creds,
    file: &str,
    now: SystemTime,
    warn: Option<Duration>,
    critical: Option<Duration>,
) -> Result<(Option<Finding>, Option<SystemTime>), ProbeError> {
    let claims = claims(&creds.jwt)
        .ok_or_else(|| invalid(&format!("the user JWT in {file} does not decode")))?;
    let finding = credentials::judge(
        &format!("the user JWT in {file}"),
        claims
            .nbf
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s.max(0.0))),
        credentials::expiry(&claims),
        now,
        Window::for_jwt(&claims, warn, critical),
    )?;
    Ok((finding, credentials::expiry(&claims)))
}

/// The signature of the server's `nonce` with the seed, as NATS expects it
/// (base64url without padding).
pub(super) fn sign(creds: &Creds, nonce: &str, file: &str) -> Result<String, ProbeError> {
    let key = nkeys::KeyPair::from_seed(&creds.seed)
        .map_err(|_| invalid(&format!("the NKey seed in {file} is not valid")))?;
    let sig = key
        .sign(nonce.as_bytes())
        .map_err(|_| invalid(&format!("the NKey seed in {file} cannot sign")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJleHAiOjE4MDAwMDAwMDB9.c2ln\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n-----BEGIN USER NKEY SEED-----\nSUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n------END USER NKEY SEED------\n";

    #[test]
    fn a_creds_file_is_read_and_its_jwt_judged() {
        let c = parse(FILE, "u.creds").unwrap();
        assert!(c.jwt.starts_with("eyJhbGciOiJlZDI1NTE5LW5rZXkifQ."));
        assert!(c.seed.starts_with("SU"));
        let after = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
        let e = judge(&c, "u.creds", after, None, None).unwrap_err();
        assert_eq!(e.class, ErrorType::CredentialExpired);
        assert!(!e.message.contains(&c.seed));
    }

    #[test]
    fn a_file_without_a_seed_is_invalid() {
        let e = parse("-----BEGIN NATS USER JWT-----\nx.y.z\n", "u.creds")
            .err()
            .unwrap();
        assert_eq!(e.class, ErrorType::CredentialInvalid);
    }
}
