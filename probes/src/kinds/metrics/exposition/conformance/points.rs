//! The rules on one sample's value and labels by its family's type, on its
//! exemplar, and on a histogram point once all its samples are read.

use super::super::Sample;
use super::super::lines::{Exemplar, parse_number};
use super::{Breaches, Kind, Role, Rule};

/// Exemplar label sets are limited to this many code points (names and values).
const EXEMPLAR_MAX_CODE_POINTS: usize = 128;

/// Checks what one sample must be for its role in its family; the bucket's
/// threshold, when the sample is a bucket with a usable `le`.
pub(super) fn check_sample(
    kind: Kind,
    role: Role,
    family: &str,
    sample: &Sample<'_>,
    breaches: &mut Breaches,
) -> Option<f64> {
    let v = sample.value;
    let line = sample.line;
    let at = || format!("`{}` = {}", sample.series(), number(v));
    let histogram = matches!(kind, Kind::Histogram | Kind::GaugeHistogram);
    match role {
        Role::Total if v.is_nan() || v < 0.0 => breaches.push(
            line,
            Rule::CounterValue,
            || format!("{}: a counter's total is a number of 0 or more", at()),
        ),
        Role::Bucket | Role::Count | Role::GCount | Role::Sum if histogram => {
            let integer = role != Role::Sum;
            if v.is_nan() || v < 0.0 {
                breaches.push(
                    line,
                    Rule::HistogramValue,
                    || format!("{}: histogram buckets, counts and sums are never NaN or negative", at()),
                );
            } else if integer && v.fract() != 0.0 {
                breaches.push(
                    line,
                    Rule::HistogramValue,
                    || format!("{}: histogram buckets and counts are integers", at()),
                );
            }
        }
        Role::GSum if v.is_nan() => breaches.push(
            line,
            Rule::HistogramValue,
            || format!("{}: a gauge histogram's `_gsum` is never NaN", at()),
        ),
        Role::Count | Role::Sum if kind == Kind::Summary => {
            if v.is_nan() || v < 0.0 {
                breaches.push(
                    line,
                    Rule::SummaryValue,
                    || format!("{}: a summary's count and sum are never NaN or negative", at()),
                );
            } else if role == Role::Count && v.fract() != 0.0 {
                breaches.push(
                    line,
                    Rule::SummaryValue,
                    || format!("{}: a summary's count is an integer", at()),
                );
            }
        }
        Role::Quantile => check_quantile(sample, breaches),
        Role::Info if v != 1.0 => breaches.push(
            line,
            Rule::InfoValue,
            || format!("{}: an info sample's value is 1", at()),
        ),
        Role::Value if kind == Kind::StateSet => {
            if sample.label(family).is_none() {
                breaches.push(
                    line,
                    Rule::StatesetLabel,
                    || format!(
                        "`{}` has no label `{family}`: each sample of a state set names its state with a label named after the family",
                        sample.series()
                    ),
                );
            }
            if v != 0.0 && v != 1.0 {
                breaches.push(
                    line,
                    Rule::StatesetValue,
                    || format!("{}: a state is 0 (false) or 1 (true)", at()),
                );
            }
        }
        _ => {}
    }
    let reserved = match (kind, role) {
        (Kind::Histogram | Kind::GaugeHistogram, r) if r != Role::Bucket => Some("le"),
        (Kind::Summary, r) if r != Role::Quantile => Some("quantile"),
        _ => None,
    };
    if let Some(label) = reserved.filter(|l| sample.label(l).is_some()) {
        breaches.push(
            line,
            Rule::ReservedLabel,
            || format!(
                "`{}` has the label `{label}`, which a {} keeps for its {}",
                sample.series(),
                kind.title(),
                if label == "le" { "buckets" } else { "quantiles" }
            ),
        );
    }
    if role == Role::Bucket && histogram {
        return bucket_le(sample, breaches);
    }
    None
}

/// A bucket's `le`: present, a number, not NaN, `+Inf` spelt so.
fn bucket_le(sample: &Sample<'_>, breaches: &mut Breaches) -> Option<f64> {
    let Some(text) = sample.label("le") else {
        breaches.push(
            sample.line,
            Rule::BucketLe,
            || format!("the bucket `{}` has no `le` label", sample.series()),
        );
        return None;
    };
    let problem = match parse_number(text) {
        None => "is not a number",
        Some(le) if le.is_nan() => "is NaN",
        Some(le) if le == f64::INFINITY && text != "+Inf" => "must be written `+Inf`",
        Some(le) => return Some(le),
    };
    breaches.push(
        sample.line,
        Rule::BucketLe,
        || format!("the threshold le=\"{text}\" of `{}` {problem}", sample.name),
    );
    None
}

/// A quantile sample: a `quantile` label in [0, 1], a value never negative.
fn check_quantile(sample: &Sample<'_>, breaches: &mut Breaches) {
    match sample.label("quantile") {
        None => breaches.push(
            sample.line,
            Rule::SummaryQuantile,
            || format!(
                "`{}` has no `quantile` label: a summary's samples without a suffix are its quantiles",
                sample.series()
            ),
        ),
        Some(q) => {
            if !parse_number(q).is_some_and(|q| (0.0..=1.0).contains(&q)) {
                breaches.push(
                    sample.line,
                    Rule::SummaryQuantile,
                    || format!("quantile=\"{q}\" of `{}` is not a number from 0 to 1", sample.name),
                );
            }
        }
    }
    if sample.value < 0.0 {
        breaches.push(
            sample.line,
            Rule::SummaryValue,
            || format!(
                "`{}` = {}: a quantile's value is never negative",
                sample.series(),
                number(sample.value)
            ),
        );
    }
}

/// An exemplar: only on a counter's total or a histogram's bucket, within 128
/// code points, and within its bucket.
pub(super) fn check_exemplar(
    kind: Kind,
    role: Role,
    family: &str,
    sample: &Sample<'_>,
    le: Option<f64>,
    exemplar: Exemplar,
    breaches: &mut Breaches,
) {
    let line = sample.line;
    let allowed = matches!(
        (kind, role),
        (Kind::Counter, Role::Total) | (Kind::Histogram | Kind::GaugeHistogram, Role::Bucket)
    );
    if !allowed {
        breaches.push(
            line,
            Rule::ExemplarNotAllowed,
            || format!(
                "`{}` of the {} `{family}` carries an exemplar: only counter totals and histogram buckets do",
                sample.name,
                kind.title()
            ),
        );
    }
    if exemplar.label_chars > EXEMPLAR_MAX_CODE_POINTS {
        breaches.push(
            line,
            Rule::ExemplarTooLong,
            || format!(
                "the exemplar of `{}` has labels of {} code points: at most {EXEMPLAR_MAX_CODE_POINTS}",
                sample.name, exemplar.label_chars
            ),
        );
    }
    if let Some(le) = le
        && exemplar.value > le
    {
        breaches.push(
            line,
            Rule::ExemplarOutOfRange,
            || format!(
                "the exemplar value {} of `{}` lies above its bucket's threshold {}",
                number(exemplar.value),
                sample.series(),
                number(le)
            ),
        );
    }
}

/// A value as the exposition writes it: `+Inf`, `-Inf`, `NaN`, or the number.
pub(super) fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// One metric point of a family: the samples of a metric with one timestamp.
/// Only histograms have rules across them; the rest is what they need.
#[derive(Debug)]
pub(super) struct Point {
    kind: Kind,
    timestamp: Option<f64>,
    first_line: usize,
    buckets: usize,
    /// The last bucket's threshold and value.
    last: Option<(f64, f64)>,
    negative_threshold: bool,
    inf: Option<f64>,
    count: Option<(f64, usize)>,
    sum: Option<(f64, usize)>,
}

impl Point {
    pub(super) fn new(kind: Kind, timestamp: Option<f64>, line: usize) -> Point {
        Point {
            kind,
            timestamp,
            first_line: line,
            buckets: 0,
            last: None,
            negative_threshold: false,
            inf: None,
            count: None,
            sum: None,
        }
    }

    /// Whether a sample with `timestamp` belongs to this point.
    pub(super) fn holds(&self, timestamp: Option<f64>) -> bool {
        self.timestamp.map(f64::to_bits) == timestamp.map(f64::to_bits)
    }

    /// Takes a sample in; reports bucket order and cumulation as they are read.
    pub(super) fn add(
        &mut self,
        role: Role,
        le: Option<f64>,
        value: f64,
        line: usize,
        family: &str,
        breaches: &mut Breaches,
    ) {
        if !matches!(self.kind, Kind::Histogram | Kind::GaugeHistogram) {
            return;
        }
        match role {
            Role::Bucket => {
                self.buckets += 1;
                let Some(le) = le else { return };
                if let Some((last_le, last_value)) = self.last {
                    if le <= last_le {
                        let why = if le == last_le { "repeats" } else { "comes after" };
                        breaches.push(
                            line,
                            Rule::BucketOrder,
                            || format!(
                                "the bucket le={} of `{family}` {why} le={}: buckets go in increasing order of `le`",
                                number(le),
                                number(last_le)
                            ),
                        );
                    } else if value < last_value {
                        breaches.push(
                            line,
                            Rule::BucketNotCumulative,
                            || format!(
                                "the bucket le={} of `{family}` holds {}, less than {} in le={}: buckets are cumulative",
                                number(le),
                                number(value),
                                number(last_value),
                                number(last_le)
                            ),
                        );
                    }
                }
                self.last = Some((le, value));
                self.negative_threshold |= le < 0.0;
                if le == f64::INFINITY {
                    self.inf = Some(value);
                }
            }
            Role::Count | Role::GCount => self.count = Some((value, line)),
            Role::Sum | Role::GSum => self.sum = Some((value, line)),
            _ => {}
        }
    }

    /// The rules on the whole point: a `+Inf` bucket, `_count` equal to it, `_sum`
    /// and `_count` together, no `_sum` with negative thresholds.
    pub(super) fn close(self, family: &str, breaches: &mut Breaches) {
        let kind = self.kind;
        let gauge = match kind {
            Kind::Histogram => false,
            Kind::GaugeHistogram => true,
            _ => return,
        };
        let (count, sum) = if gauge { ("_gcount", "_gsum") } else { ("_count", "_sum") };
        let title = kind.title();
        if self.inf.is_none() {
            let what = if self.buckets == 0 { "no buckets" } else { "no `+Inf` bucket" };
            breaches.push(
                self.first_line,
                Rule::InfBucketMissing,
                || format!("a point of the {title} `{family}` has {what}: every point has a bucket le=\"+Inf\""),
            );
        }
        match (self.count, self.sum) {
            (Some((_, line)), None) => breaches.push(
                line,
                Rule::SumCountPair,
                || format!("`{family}{count}` without `{family}{sum}`: the two come together or not at all"),
            ),
            (None, Some((_, line))) => breaches.push(
                line,
                Rule::SumCountPair,
                || format!("`{family}{sum}` without `{family}{count}`: the two come together or not at all"),
            ),
            _ => {}
        }
        if let (Some((c, line)), Some(inf)) = (self.count, self.inf)
            && c != inf
        {
            breaches.push(
                line,
                Rule::CountMismatch,
                || format!(
                    "`{family}{count}` is {} but the `+Inf` bucket holds {}: they are equal",
                    number(c),
                    number(inf)
                ),
            );
        }
        if let Some((s, line)) = self.sum {
            if !gauge && self.negative_threshold {
                breaches.push(
                    line,
                    Rule::NegativeBucketsWithSum,
                    || format!("the {title} `{family}` has negative thresholds and a `_sum`: with negative thresholds it has none"),
                );
            } else if gauge && !self.negative_threshold && s < 0.0 {
                breaches.push(
                    line,
                    Rule::GsumNegative,
                    || format!(
                    "`{family}_gsum` is {} without negative thresholds: only they allow a negative sum",
                    number(s)
                ),
                );
            }
        }
    }
}
