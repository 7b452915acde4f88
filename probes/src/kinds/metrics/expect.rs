//! The expectations of a `metrics` probe, compiled once, and their verdict on one
//! scrape.
//!
//! A [`Judge`] watches the samples stream past (see [`super::exposition::parse`])
//! and keeps, per expectation, only how many samples matched, the first one that
//! broke a bound, and a few series of the same name to hint at when nothing
//! matched. Every expectation is judged; the verdict lists each that failed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use regex::Regex;

use depprobe_config::ConfigDuration;
use super::spec::{MatchOp, MetricsExpect, SeriesSelector};

use super::exposition::{Sample, Summary};
use crate::BuildError;
use crate::outcome::{human_delta, rfc3339};

/// Series of the same name quoted when a selector matched nothing.
const HINTS: usize = 3;

/// The compiled `expect:` of a probe (less the status, judged before parsing).
/// Cloning shares the compiled checks, so that a scrape is judged on a blocking
/// thread without copying them.
#[derive(Clone)]
pub struct Expectations {
    min_samples: usize,
    series: Arc<[SeriesCheck]>,
    strict: bool,
}

#[derive(Clone)]
struct SeriesCheck {
    text: String,
    name: Option<String>,
    matchers: Vec<Matcher>,
    min: Option<f64>,
    max: Option<f64>,
    max_age: Option<ConfigDuration>,
}

#[derive(Clone)]
struct Matcher {
    label: String,
    test: Test,
}

#[derive(Clone)]
enum Test {
    Equal(String),
    NotEqual(String),
    Regex(Regex),
    NotRegex(Regex),
}

impl Expectations {
    /// Compiles the configured expectations.
    pub fn new(expect: &MetricsExpect) -> Result<Expectations, BuildError> {
        let series = expect
            .series
            .iter()
            .map(|s| {
                Ok(SeriesCheck {
                    text: s.selector.text.clone(),
                    name: s.selector.name.clone(),
                    matchers: compile(&s.selector)?,
                    min: s.min,
                    max: s.max,
                    max_age: s.max_age,
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        Ok(Expectations {
            min_samples: expect.min_samples,
            series: series.into(),
            strict: expect.strict,
        })
    }

    /// How many expectations a scrape is judged on.
    pub fn count(&self) -> usize {
        self.series.len() + usize::from(self.min_samples > 0) + usize::from(self.strict)
    }

    /// Whether a breach of the OpenMetrics rules fails the scrape (`expect.strict`).
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// A judge for one scrape read at `now`.
    pub fn judge(&self, now: SystemTime) -> Judge<'_> {
        Judge {
            expect: self,
            now,
            seen: self.series.iter().map(|_| Seen::default()).collect(),
        }
    }
}

fn compile(selector: &SeriesSelector) -> Result<Vec<Matcher>, BuildError> {
    selector
        .matchers
        .iter()
        .map(|m| {
            let regex = || {
                Regex::new(&m.anchored_regex())
                    .map_err(|e| BuildError::Invalid(format!("selector {}: {e}", selector.text)))
            };
            let test = match m.op {
                MatchOp::Equal => Test::Equal(m.value.clone()),
                MatchOp::NotEqual => Test::NotEqual(m.value.clone()),
                MatchOp::Regex => Test::Regex(regex()?),
                MatchOp::NotRegex => Test::NotRegex(regex()?),
            };
            Ok(Matcher {
                label: m.label.clone(),
                test,
            })
        })
        .collect()
}

impl SeriesCheck {
    fn matches(&self, sample: &Sample<'_>) -> bool {
        if self.name.as_deref().is_some_and(|n| n != sample.name) {
            return false;
        }
        self.matchers.iter().all(|m| {
            // A missing label has the empty value, as in PromQL.
            let value = if m.label == "__name__" {
                sample.name
            } else {
                sample.label(&m.label).unwrap_or("")
            };
            match &m.test {
                Test::Equal(v) => value == v,
                Test::NotEqual(v) => value != v,
                Test::Regex(r) => r.is_match(value),
                Test::NotRegex(r) => !r.is_match(value),
            }
        })
    }

    /// What is wrong with a matching sample, if anything.
    fn violation(&self, sample: &Sample<'_>, now: SystemTime) -> Option<String> {
        let v = sample.value;
        let at = || format!("{} = {v} (line {})", sample.series(), sample.line);
        if let Some(min) = self.min
            && (v.is_nan() || v < min)
        {
            return Some(format!("{} is below min {min}", at()));
        }
        if let Some(max) = self.max
            && (v.is_nan() || v > max)
        {
            return Some(format!("{} is above max {max}", at()));
        }
        let max_age = self.max_age?;
        // A `*_timestamp_seconds` series says when something last happened; any
        // other sample is as old as its own timestamp.
        let (when, what) = if sample.name.ends_with("_timestamp_seconds") {
            (v, "its value")
        } else {
            match sample.timestamp {
                Some(t) => (t, "its timestamp"),
                None => {
                    return Some(format!(
                        "{} (line {}) carries no timestamp, so its age cannot be judged: max_age needs a timestamped sample or a *_timestamp_seconds series",
                        sample.series(),
                        sample.line
                    ));
                }
            }
        };
        let then = seconds_to_time(when)?;
        let age = now.duration_since(then).unwrap_or_default();
        (age > max_age.0).then(|| {
            format!(
                "{} is stale: {what} {} is {}, older than max_age {}",
                sample.series(),
                rfc3339(then),
                human_delta(now, then),
                max_age
            )
        })
    }
}

/// A time from seconds since the epoch, if it is one.
fn seconds_to_time(secs: f64) -> Option<SystemTime> {
    let d = Duration::try_from_secs_f64(secs.abs()).ok()?;
    if secs >= 0.0 {
        SystemTime::UNIX_EPOCH.checked_add(d)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(d)
    }
}

#[derive(Default)]
struct Seen {
    matched: usize,
    violation: Option<String>,
    same_name: Vec<String>,
}

/// The judgement of one scrape in progress.
pub struct Judge<'e> {
    expect: &'e Expectations,
    now: SystemTime,
    seen: Vec<Seen>,
}

impl Judge<'_> {
    /// Takes one sample into account.
    pub fn observe(&mut self, sample: &Sample<'_>) {
        for (check, seen) in self.expect.series.iter().zip(self.seen.iter_mut()) {
            if check.matches(sample) {
                seen.matched += 1;
                if seen.violation.is_none() {
                    seen.violation = check.violation(sample, self.now);
                }
            } else if seen.matched == 0
                && seen.same_name.len() < HINTS
                && check.name.as_deref() == Some(sample.name)
            {
                seen.same_name.push(sample.series());
            }
        }
    }

    /// Every failed expectation, or `Ok` when all hold.
    pub fn verdict(self, summary: &Summary) -> Result<(), Vec<String>> {
        let mut failed = Vec::new();
        let min = self.expect.min_samples;
        if summary.samples < min {
            failed.push(format!(
                "the scrape holds {} sample{}, fewer than min_samples {min}{}",
                summary.samples,
                if summary.samples == 1 { "" } else { "s" },
                if summary.samples == 0 {
                    " (the endpoint serves no metrics at all)"
                } else {
                    ""
                }
            ));
        }
        for (check, seen) in self.expect.series.iter().zip(self.seen) {
            if seen.matched == 0 {
                let hint = match (&check.name, seen.same_name.is_empty()) {
                    (Some(name), true) => format!(" (no series named {name} at all)"),
                    (Some(name), false) => {
                        format!(" ({name} is there as {})", seen.same_name.join(", "))
                    }
                    (None, _) => String::new(),
                };
                failed.push(format!("no sample matches {}{hint}", check.text));
            } else if let Some(v) = seen.violation {
                failed.push(v);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use crate::kinds::metrics::spec::SeriesExpect;

    use super::*;

    fn check(selector: &str) -> SeriesCheck {
        let expect = MetricsExpect {
            series: vec![SeriesExpect {
                selector: SeriesSelector::parse(selector).unwrap(),
                min: None,
                max: None,
                max_age: None,
            }],
            ..MetricsExpect::default()
        };
        let mut checks = Expectations::new(&expect).unwrap().series.to_vec();
        checks.remove(0)
    }

    fn sample<'a>(name: &'a str, labels: &[(&'a str, &'a str)]) -> Sample<'a> {
        Sample {
            name,
            labels: labels
                .iter()
                .map(|(l, v)| (*l, Cow::Borrowed(*v)))
                .collect(),
            value: 1.0,
            timestamp: None,
            line: 1,
        }
    }

    #[test]
    fn selectors_match_as_in_promql() {
        let abc = sample("up", &[("job", "abc")]);
        let bare = sample("up", &[]);
        assert!(check(r#"up{job="abc"}"#).matches(&abc));
        assert!(!check(r#"up{job="abc"}"#).matches(&bare));
        // Regular expressions are anchored.
        assert!(!check(r#"up{job=~"b"}"#).matches(&abc));
        assert!(check(r#"up{job=~"a.*"}"#).matches(&abc));
        assert!(check(r#"up{job!~"x.*"}"#).matches(&abc));
        // A missing label has the empty value.
        assert!(check(r#"up{job=""}"#).matches(&bare));
        assert!(!check(r#"up{job!=""}"#).matches(&bare));
        // The name, written or as __name__.
        assert!(!check("down").matches(&abc));
        assert!(check(r#"{__name__=~"u."}"#).matches(&abc));
    }

    #[test]
    fn the_verdict_names_every_failed_expectation() {
        let expect = MetricsExpect {
            min_samples: 3,
            series: vec![SeriesExpect {
                selector: SeriesSelector::parse("down").unwrap(),
                min: None,
                max: None,
                max_age: None,
            }],
            ..MetricsExpect::default()
        };
        let e = Expectations::new(&expect).unwrap();
        let mut judge = e.judge(SystemTime::now());
        judge.observe(&sample("up", &[]));
        let failed = judge
            .verdict(&Summary {
                samples: 1,
                series: 1,
                families: 1,
                ..Summary::default()
            })
            .unwrap_err();
        assert_eq!(
            failed,
            vec![
                "the scrape holds 1 sample, fewer than min_samples 3",
                "no sample matches down (no series named down at all)",
            ]
        );
    }
}
