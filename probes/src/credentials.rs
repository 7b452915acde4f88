//! Judging a local credential: a token (a JWT's `exp` and `nbf`) or a certificate's
//! validity, against a warning window.
//!
//! Shared by `kind: credential` and by the HTTP-based kinds, which check a bearer
//! token before sending it, so that an expired JWT is named `credential_expired`
//! rather than left to a bare 401.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::declared::{Instrument, MetricDecl, Number, Sample};
use crate::outcome::{Finding, FindingType, Severity, human_delta, rfc3339, seconds_between};
use crate::run::{ProbeError, Run};
use crate::taxonomy::{ErrorType, Phase};

/// Detail key (unix seconds): when the credential a run depends on expires.
pub const NOT_AFTER_DETAIL: &str = "credential_not_after";

/// `probe.credential.time_left`: shared by every kind that reads a local credential.
pub static TIME_LEFT: MetricDecl = MetricDecl {
    name: "probe.credential.time_left",
    unit: Some("s"),
    description: "Time left before the local credential expires.",
    instrument: Instrument::Gauge,
    number: Number::F64,
    until_now: true,
};

/// Records when the credential the run depends on expires: a detail for `/status`
/// and a sample of [`TIME_LEFT`].
pub fn record_expiry(run: &mut Run<'_>, at: std::time::SystemTime) {
    let secs = seconds_between(std::time::SystemTime::UNIX_EPOCH, at);
    run.details.insert(NOT_AFTER_DETAIL.into(), secs.into());
    run.samples.push(Sample::new(&TIME_LEFT, secs));
}

/// The times of a JWT, and who issued it for whom.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct JwtClaims {
    /// Expiry, unix seconds.
    pub exp: Option<f64>,
    /// Not before, unix seconds.
    pub nbf: Option<f64>,
    /// Issued at, unix seconds.
    pub iat: Option<f64>,
    /// Issuer.
    pub iss: Option<String>,
    /// Subject.
    pub sub: Option<String>,
}

/// The claims of `token` if it is shaped like a JWT (three base64url parts whose
/// first two decode to JSON). The signature is not checked: only the times are read.
pub fn jwt_claims(token: &str) -> Option<JwtClaims> {
    let token = token.trim();
    if token.split('.').count() != 3 {
        return None;
    }
    jsonwebtoken::dangerous::insecure_decode::<JwtClaims>(token)
        .ok()
        .map(|d| d.claims)
}

/// When a credential counts as expiring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Warn when less than this is left.
    pub warn: Duration,
    /// Critical when less than this is left.
    pub critical: Duration,
}

impl Window {
    /// The window for a JWT: the configured one, or a fifth (warning) and a
    /// twentieth (critical) of its lifetime when it says when it was issued (a
    /// Kubernetes token is renewed at 80% of its lifetime), else 14 and 3 days.
    pub fn for_jwt(
        claims: &JwtClaims,
        warn: Option<Duration>,
        critical: Option<Duration>,
    ) -> Window {
        let lifetime = match (claims.iat, claims.exp) {
            // A hostile `exp - iat` (infinite, or past what a Duration holds) has no
            // lifetime to take a fraction of: the fixed window applies.
            (Some(iat), Some(exp)) if exp > iat => Duration::try_from_secs_f64(exp - iat).ok(),
            _ => None,
        };
        Window {
            warn: warn
                .unwrap_or_else(|| lifetime.map_or(Duration::from_secs(14 * 86_400), |l| l / 5)),
            critical: critical
                .unwrap_or_else(|| lifetime.map_or(Duration::from_secs(3 * 86_400), |l| l / 20)),
        }
    }

    /// The window for a certificate: the configured one, or 14 and 3 days.
    pub fn for_certificate(warn: Option<Duration>, critical: Option<Duration>) -> Window {
        Window {
            warn: warn.unwrap_or(Duration::from_secs(14 * 86_400)),
            critical: critical.unwrap_or(Duration::from_secs(3 * 86_400)),
        }
    }
}

/// The time `secs` after the epoch; a claim before it is the epoch, and one past
/// what the clock holds is the latest time it holds (a far future is still far).
fn unix(secs: f64) -> SystemTime {
    /// About the year 33658: later than any real credential, and still a time.
    const LATEST: u64 = 1 << 40;
    let d = Duration::try_from_secs_f64(secs.max(0.0))
        .unwrap_or(Duration::from_secs(LATEST))
        .min(Duration::from_secs(LATEST));
    SystemTime::UNIX_EPOCH
        .checked_add(d)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Judges a validity window `[not_before, not_after]` of `what` at `now`: expired is
/// `credential_expired`, not yet valid is `credential_invalid`, within the window a
/// `credential_expiring` finding.
pub fn judge(
    what: &str,
    not_before: Option<SystemTime>,
    not_after: Option<SystemTime>,
    now: SystemTime,
    window: Window,
) -> Result<Option<Finding>, ProbeError> {
    if let Some(nb) = not_before
        && now < nb
    {
        return Err(ProbeError::new(
            ErrorType::CredentialInvalid,
            Phase::Auth,
            format!(
                "{what} is not valid before {} ({})",
                rfc3339(nb),
                human_delta(now, nb)
            ),
        ));
    }
    let Some(na) = not_after else { return Ok(None) };
    let left = seconds_between(now, na);
    if left <= 0.0 {
        return Err(ProbeError::new(
            ErrorType::CredentialExpired,
            Phase::Auth,
            format!(
                "{what} expired {} (at {})",
                human_delta(now, na),
                rfc3339(na)
            ),
        ));
    }
    if left > window.warn.as_secs_f64() {
        return Ok(None);
    }
    let severity = if left <= window.critical.as_secs_f64() {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Ok(Some(
        Finding::new(
            FindingType::CREDENTIAL_EXPIRING,
            severity,
            format!(
                "{what} expires {} (at {}); rotate it",
                human_delta(now, na),
                rfc3339(na)
            ),
        )
        .with("not_after", rfc3339(na))
        .with("seconds_left", left.floor()),
    ))
}

/// Judges a token: a JWT's times (see [`judge`]), nothing for an opaque token.
/// Returns the finding, if any, and the JWT's expiry.
pub fn judge_token(
    what: &str,
    token: &str,
    now: SystemTime,
    warn: Option<Duration>,
    critical: Option<Duration>,
) -> Result<(Option<Finding>, Option<JwtClaims>), ProbeError> {
    let Some(claims) = jwt_claims(token) else {
        return Ok((None, None));
    };
    let window = Window::for_jwt(&claims, warn, critical);
    let finding = judge(
        &format!("{what} (a JWT)"),
        claims.nbf.map(unix),
        claims.exp.map(unix),
        now,
        window,
    )?;
    Ok((finding, Some(claims)))
}

/// A JWT's expiry as a time.
pub fn expiry(claims: &JwtClaims) -> Option<SystemTime> {
    claims.exp.map(unix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(payload: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.{}",
            b(r#"{"alg":"RS256","typ":"JWT"}"#),
            b(payload),
            b("sig")
        )
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn expired_jwt_is_credential_expired() {
        let t = jwt(r#"{"exp":1799990000}"#);
        let e = judge_token("bearer token", &t, now(), None, None).unwrap_err();
        assert_eq!(e.class, ErrorType::CredentialExpired);
        assert!(e.message.contains("expired 2 hours ago"), "{}", e.message);
    }

    #[test]
    fn kubernetes_token_warns_past_eighty_percent_of_its_life() {
        // Issued 50 minutes ago, valid one hour: 10 minutes (< 12) left.
        let t = jwt(r#"{"iat":1799997000,"exp":1800000600}"#);
        let (f, claims) = judge_token("token", &t, now(), None, None).unwrap();
        assert_eq!(f.unwrap().severity, Severity::Warning);
        assert!(claims.unwrap().exp.is_some());
        // Fresh: 55 minutes left, no finding.
        let t = jwt(r#"{"iat":1799999700,"exp":1800003300}"#);
        assert!(
            judge_token("token", &t, now(), None, None)
                .unwrap()
                .0
                .is_none()
        );
    }

    #[test]
    fn opaque_tokens_are_not_judged() {
        assert_eq!(
            judge_token("token", "s3cr3t-opaque", now(), None, None).unwrap(),
            (None, None)
        );
    }

    #[test]
    fn hostile_jwt_times_are_judged_without_a_panic() {
        // A lifetime no Duration holds, an expiry past any clock: far from expiring.
        let t = jwt(r#"{"iat":-1e300,"exp":1e300}"#);
        let (f, claims) = judge_token("token", &t, now(), None, None).unwrap();
        assert!(f.is_none());
        assert!(expiry(&claims.unwrap()).unwrap() > now());
        // An expiry before the epoch is long past.
        let t = jwt(r#"{"exp":-1e15}"#);
        let e = judge_token("token", &t, now(), None, None).unwrap_err();
        assert_eq!(e.class, ErrorType::CredentialExpired);
    }

    #[test]
    fn not_yet_valid_jwt_is_invalid() {
        let t = jwt(r#"{"nbf":1800003600,"exp":1800007200}"#);
        let e = judge_token("token", &t, now(), None, None).unwrap_err();
        assert_eq!(e.class, ErrorType::CredentialInvalid);
    }
}
