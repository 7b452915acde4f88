//! Fuzzes the JWT judge (`judge_token`): the token a probe is about to send is
//! read for its times (`exp`, `nbf`, `iat`) and judged against a window. Hostile
//! numbers (huge, negative, fractional) must give an answer, never a panic.
//!
//! Input: one mode byte, four bytes of time (`depprobe_fuzz::moment`), then either
//! the token itself (even mode) or the JSON claims, which the target wraps in a
//! JWT (odd mode), so that the fuzzer mutates the claims and not their base64.

#![no_main]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use depprobe_probes::credentials::{Window, expiry, judge_token, jwt_claims};
use depprobe_probes::outcome::FindingType;
use depprobe_probes::taxonomy::ErrorType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, a, b, c, d], rest)) = data.split_first_chunk::<5>() else {
        return;
    };
    let now = depprobe_fuzz::moment([a, b, c, d]);
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(rest)
        )
    };
    let claims = jwt_claims(&token);
    if let Some(c) = &claims {
        let _ = expiry(c);
        let window = Window::for_jwt(c, None, None);
        assert!(window.critical <= window.warn, "{window:?}");
    }
    let configured = (mode & 2 != 0).then(|| Duration::from_secs(7 * 86_400));
    match judge_token("the token", &token, now, configured, None) {
        Ok((finding, judged)) => {
            assert_eq!(judged, claims);
            if let Some(f) = finding {
                assert_eq!(f.kind, FindingType::CREDENTIAL_EXPIRING);
                assert!(!f.message.is_empty());
            }
        }
        Err(e) => {
            assert!(claims.is_some(), "an opaque token was judged: {e}");
            assert!(
                matches!(
                    e.class,
                    ErrorType::CredentialExpired | ErrorType::CredentialInvalid
                ),
                "{e}"
            );
        }
    }
});
