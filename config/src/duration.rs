//! Durations as people write them in YAML: `500ms`, `30s`, `5m`, `1h30m`, `14d`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration read from the configuration. A number needs a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// From whole seconds.
    pub const fn secs(s: u64) -> Self {
        ConfigDuration(Duration::from_secs(s))
    }

    /// From whole days.
    pub const fn days(d: u64) -> Self {
        ConfigDuration(Duration::from_secs(d * 86_400))
    }

    /// From milliseconds.
    pub const fn millis(ms: u64) -> Self {
        ConfigDuration(Duration::from_millis(ms))
    }
}

impl From<ConfigDuration> for Duration {
    fn from(d: ConfigDuration) -> Duration {
        d.0
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// The longest duration the configuration takes: ten years. Longer ones are
/// mistakes, and would overflow the clock arithmetic of a deadline.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `500ms`, `30s`, `1h30m`, `14d` (also `2w`), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. 30s, 500ms, 5m or 14d".into());
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{t}` has no unit; write e.g. {t}s or {t}ms (units: ms, s, m, h, d)"
        ));
    }
    let d = humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration `{t}`: {e}; write e.g. 30s, 500ms, 5m or 14d"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "`{t}` is longer than the longest duration allowed, 3650d (ten years)"
        ));
    }
    Ok(d)
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 30s, 500ms, 5m or 14d")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigDuration, E> {
                parse_duration(v).map(ConfigDuration).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit; write e.g. {v}s or {v}ms (units: ms, s, m, h, d)"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigDuration, E> {
                self.visit_i64(v as i64)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_understood() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86400)
        );
    }

    #[test]
    fn durations_past_ten_years_are_refused() {
        assert_eq!(parse_duration("3650d").unwrap(), MAX_DURATION);
        let e = parse_duration("3651d").unwrap_err();
        assert!(
            e.contains("longer than the longest duration allowed, 3650d"),
            "{e}"
        );
        // Past what humantime itself holds.
        assert!(parse_duration("99999999999999999999999s").is_err());
        let cfg = "agent:\n  timeout: 100000000d\nprobes: []\n";
        let e = crate::parse_str(cfg, "t.yaml", &Default::default(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("timeout") && e.contains("longest duration allowed"),
            "{e}"
        );
    }

    #[test]
    fn bare_numbers_and_nonsense_are_refused_with_a_hint() {
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("3x")
                .unwrap_err()
                .contains("invalid duration")
        );
    }
}
