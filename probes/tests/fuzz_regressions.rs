//! Inputs that made a fuzz target (`fuzz/`, `scripts/fuzz`) panic, replayed through
//! the same public entry points: each must now get an answer. The `jwt` target
//! reaches these through `judge_token` with claims a token issuer (or an attacker
//! who controls a token file) can write: times past the year 9999 and lifetimes
//! larger than any `Duration`.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use depprobe_probes::credentials::judge_token;
use depprobe_probes::taxonomy::ErrorType;

/// A JWT carrying `claims` (unsigned: only the times are read).
fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

/// 2026-01-01T00:00:00Z, the moment the fuzz targets count from.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

#[test]
fn a_jwt_expiring_after_the_year_9999_is_not_expiring() {
    let (finding, claims) = judge_token("the token", &jwt(r#"{"exp":1e15}"#), now(), None, None)
        .expect("a far future expiry is not an error");
    assert!(finding.is_none(), "{finding:?}");
    assert_eq!(claims.and_then(|c| c.exp), Some(1e15));
}

#[test]
fn a_jwt_expiring_past_any_duration_is_not_expiring() {
    let (finding, _) = judge_token("the token", &jwt(r#"{"exp":1e300}"#), now(), None, None)
        .expect("an expiry past any duration is not an error");
    assert!(finding.is_none(), "{finding:?}");
}

#[test]
fn a_jwt_whose_lifetime_overflows_a_duration_gets_a_window() {
    let token = jwt(r#"{"iat":-1e300,"exp":1e300}"#);
    assert!(judge_token("the token", &token, now(), None, None).is_ok());
}

#[test]
fn a_jwt_not_valid_before_the_year_9999_is_credential_invalid() {
    let e = judge_token("the token", &jwt(r#"{"nbf":1e15}"#), now(), None, None)
        .expect_err("not valid yet");
    assert_eq!(e.class, ErrorType::CredentialInvalid, "{e}");
}

#[test]
fn the_claims_the_jwt_target_crashed_on_are_judged() {
    // As found (fuzz/artifacts/jwt*/crash-*): the claims the target wrapped in a JWT.
    for claims in [
        r#"{"nbf":1767020031.8e9}"#,
        r#"{"exp":17672256007671391767225600720}"#,
        r#"{"exp":12207873555e50}"#,
    ] {
        match judge_token("the token", &jwt(claims), now(), None, None) {
            Ok(_) => {}
            Err(e) => assert!(
                matches!(
                    e.class,
                    ErrorType::CredentialExpired | ErrorType::CredentialInvalid
                ),
                "{claims}: {e}"
            ),
        }
    }
}
