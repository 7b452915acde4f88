//! A parser for the two formats a metrics endpoint serves: the Prometheus text
//! format 0.0.4 and OpenMetrics 1.0 text, chosen by the answer's `Content-Type`.
//!
//! No maintained crate fits: `prometheus-parse` skips lines it cannot read and
//! knows no OpenMetrics, `openmetrics-parser` is LGPL and reports errors as text
//! without a position, the others are unmaintained or text-format only. A probe must
//! say *where* a scrape is broken (line and column), and must fail where
//! Prometheus' own scraper fails, so the parser is ours; `fuzz/` at the repository
//! root fuzzes it.
//!
//! [`parse`] streams: each sample is handed to a callback as it is read, so a large
//! scrape is never held as a list of samples; what is kept is one hash per series,
//! to count them. It is linear in its input, and reads under explicit limits
//! ([`Limit`]: bytes per line, labels per series, bytes per label name and value,
//! series per scrape); a breach is a [`Problem::Limit`] at the place it happens.

mod conformance;
mod limits;
mod lines;

pub use conformance::{Breach, Breaches, MAX_BREACHES_KEPT, Rule};

pub use limits::{
    Limit, MAX_LABEL_NAME_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS_PER_SERIES, MAX_LINE_BYTES,
    MAX_SERIES_PER_SCRAPE,
};

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use conformance::{Checker, Kind, Meta};
use lines::{Line, parse_line};

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (`text/plain; version=0.0.4`).
    PrometheusText,
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` names; the text format when it names neither
    /// (as Prometheus falls back to it).
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        let media = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    /// The stable name reported in the outcome's details.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::PrometheusText => "prometheus-text-0.0.4",
            Format::OpenMetrics => "openmetrics-1.0.0",
        }
    }

    /// Its name for a human.
    pub fn title(self) -> &'static str {
        match self {
            Format::PrometheusText => "Prometheus text format 0.0.4",
            Format::OpenMetrics => "OpenMetrics 1.0",
        }
    }
}

/// One sample as read.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The sample's metric name (`http_requests_total`, `rpc_seconds_bucket`).
    pub name: &'a str,
    /// Its labels, in written order, values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// Its value.
    pub value: f64,
    /// Its timestamp, in seconds since the epoch, when it carries one.
    pub timestamp: Option<f64>,
    /// The line it is on, from 1.
    pub line: usize,
}

impl Sample<'_> {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(l, _)| *l == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The series as PromQL writes it: `up{job="api"}`.
    pub fn series(&self) -> String {
        if self.labels.is_empty() {
            return self.name.to_owned();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(l, v)| format!("{l}={:?}", v.as_ref()))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }
}

/// What a whole scrape held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sample lines.
    pub samples: usize,
    /// Distinct series: sample name plus label set, whatever the timestamps.
    pub series: usize,
    /// Distinct metric families that have at least one sample. A family is named
    /// by `# TYPE` / `# HELP` / `# UNIT`; its samples are its name or, by its type,
    /// the name with `_bucket`, `_count`, `_sum`, `_created`, `_total`, `_gcount`,
    /// `_gsum` or `_info`. A sample of no declared family is its own family.
    pub families: usize,
    /// The OpenMetrics rules across lines it breaks (see [`Rule`]); none for the
    /// text format, which has no such rules.
    pub breaches: Breaches,
}

/// A scrape that does not parse, located.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {problem}")]
pub struct ParseError {
    /// The line, from 1.
    pub line: usize,
    /// The column, in characters, from 1.
    pub column: usize,
    /// What is wrong there.
    pub problem: Problem,
}

/// What is wrong at a [`ParseError`]'s position.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The body is not UTF-8.
    #[error("the body is not valid UTF-8")]
    InvalidUtf8,
    /// A metric name was expected.
    #[error("expected a metric name, found {0}")]
    ExpectedMetricName(String),
    /// A label name was expected.
    #[error("expected a label name, found {0}")]
    ExpectedLabelName(String),
    /// `=` was expected after a label name.
    #[error("expected `=` after the label name, found {0}")]
    ExpectedEquals(String),
    /// A label value must be quoted.
    #[error("expected `\"` to open the label value, found {0}")]
    ExpectedQuote(String),
    /// A label value's closing quote is missing.
    #[error("the label value is not closed by `\"`")]
    UnterminatedLabelValue,
    /// `,` or `}` was expected after a label.
    #[error("expected `,` or `}}` after the label, found {0}")]
    ExpectedCommaOrBrace(String),
    /// A label name repeats within one sample.
    #[error("label `{0}` appears twice in the sample")]
    DuplicateLabel(String),
    /// A space was expected between two tokens.
    #[error("expected a space, found {0}")]
    ExpectedSpace(String),
    /// The sample has no value.
    #[error("expected the sample value, found {0}")]
    ExpectedValue(String),
    /// The value is not a number.
    #[error("`{0}` is not a number")]
    InvalidValue(String),
    /// The timestamp is not one.
    #[error("`{0}` is not a timestamp ({1})")]
    InvalidTimestamp(String, &'static str),
    /// Something follows a complete line.
    #[error("unexpected {0} after the end of the sample")]
    TrailingText(String),
    /// An OpenMetrics line ends with a space.
    #[error("a space ends the line (OpenMetrics puts a token after every space)")]
    TrailingSpace,
    /// An exemplar on a sample Prometheus takes none on.
    #[error(
        "`{0}` carries an exemplar: only `_total` and `_bucket` samples may (Prometheus refuses the scrape)"
    )]
    ExemplarNotAllowed(String),
    /// `# TYPE` names no known type.
    #[error("unknown metric type `{0}`")]
    UnknownType(String),
    /// OpenMetrics has no blank lines.
    #[error("blank line (OpenMetrics allows none)")]
    BlankLine,
    /// OpenMetrics has no free comments.
    #[error(
        "a line starting with `#` must be `# HELP`, `# TYPE`, `# UNIT` or `# EOF` in OpenMetrics"
    )]
    UnknownComment,
    /// An OpenMetrics unit must end the family name.
    #[error("unit `{unit}` is not a suffix of the metric name `{name}`")]
    UnitNotSuffix {
        /// The unit.
        unit: String,
        /// The family name.
        name: String,
    },
    /// An OpenMetrics exemplar is malformed.
    #[error("expected an exemplar `# {{labels}} value`, found {0}")]
    InvalidExemplar(String),
    /// OpenMetrics must end with `# EOF`.
    #[error(
        "the body does not end with `# EOF` (OpenMetrics requires it; was the scrape cut short?)"
    )]
    MissingEof,
    /// Nothing may follow `# EOF`.
    #[error("data after `# EOF`")]
    DataAfterEof,
    /// The scrape passes one of the parser's limits (see [`Limit`]).
    #[error("{0} is exceeded")]
    Limit(Limit),
}

/// Parses `body` as `format`, handing each sample to `each` in order.
pub fn parse<'a>(
    body: &'a [u8],
    format: Format,
    mut each: impl FnMut(&Sample<'a>),
) -> Result<Summary, ParseError> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            let valid = body.get(..e.valid_up_to()).unwrap_or_default();
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            return Err(locate(valid, valid.len(), Problem::InvalidUtf8));
        }
    };
    let openmetrics = format == Format::OpenMetrics;
    let mut families = Families::default();
    // The rules across lines are OpenMetrics'; the text format has none.
    let mut checker = openmetrics.then(Checker::default);
    let mut series: HashSet<u64> = HashSet::new();
    let mut samples = 0;
    let mut offset = 0;
    let mut eof_seen = false;
    for (index, line) in text.split('\n').enumerate() {
        let start = offset;
        offset += line.len() + 1;
        if eof_seen {
            // Only the final newline may follow `# EOF`.
            if line.is_empty() && offset > text.len() {
                break;
            }
            return Err(locate(text, start, Problem::DataAfterEof));
        }
        if !openmetrics && line.is_empty() {
            continue;
        }
        if openmetrics && line.is_empty() && offset > text.len() {
            // The empty remainder after a body's last newline is no line.
            break;
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(locate(
                text,
                start + MAX_LINE_BYTES,
                Problem::Limit(Limit::LineBytes),
            ));
        }
        let parsed = parse_line(line, start, index + 1, openmetrics)
            .map_err(|f| locate(text, f.offset, f.problem))?;
        match parsed {
            Line::Blank | Line::Comment => {}
            Line::Help { name } => {
                families.declare(name, None);
                if let Some(c) = checker.as_mut() {
                    c.metadata(index + 1, Meta::Help, name, None, "");
                }
            }
            Line::Unit { name, unit } => {
                families.declare(name, None);
                if let Some(c) = checker.as_mut() {
                    c.metadata(index + 1, Meta::Unit, name, None, unit);
                }
            }
            Line::Type { name, kind } => {
                families.declare(name, Some(kind));
                if let Some(c) = checker.as_mut() {
                    c.metadata(index + 1, Meta::Type, name, Some(Kind::named(kind)), "");
                }
            }
            Line::Eof => eof_seen = true,
            Line::Sample(sample, exemplar) => {
                samples += 1;
                let key = series_key(&sample);
                series.insert(key);
                if let Some(c) = checker.as_mut() {
                    c.sample(&sample, exemplar, key);
                }
                if series.len() > MAX_SERIES_PER_SCRAPE {
                    return Err(locate(text, start, Problem::Limit(Limit::SeriesPerScrape)));
                }
                families.sample(sample.name);
                each(&sample);
            }
        }
    }
    if openmetrics && !eof_seen {
        return Err(locate(text, text.len(), Problem::MissingEof));
    }
    Ok(Summary {
        samples,
        series: series.len(),
        families: families.count_with_samples(),
        breaches: checker.map(Checker::finish).unwrap_or_default(),
    })
}

/// A hash of the sample's name and label set (in name order).
fn series_key(sample: &Sample<'_>) -> u64 {
    let mut labels: Vec<(&str, &str)> = sample
        .labels
        .iter()
        .map(|(l, v)| (*l, v.as_ref()))
        .collect();
    labels.sort_unstable();
    let mut h = DefaultHasher::new();
    sample.name.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

/// Suffixes a family's samples may carry, and the family types that allow each.
const SUFFIXES: &[(&str, &[&str])] = &[
    ("_bucket", &["histogram", "gaugehistogram"]),
    ("_count", &["histogram", "summary"]),
    ("_sum", &["histogram", "summary"]),
    ("_created", &["counter", "histogram", "summary"]),
    ("_total", &["counter"]),
    ("_gcount", &["gaugehistogram"]),
    ("_gsum", &["gaugehistogram"]),
    ("_info", &["info"]),
];

/// The metric families declared, and the sample names seen. A sample's family is
/// decided once the whole scrape is read, so that a `# TYPE` after its samples
/// still counts them in its family.
#[derive(Default)]
struct Families<'a> {
    declared: HashMap<&'a str, Option<&'a str>>,
    sample_names: HashSet<&'a str>,
}

impl<'a> Families<'a> {
    fn declare(&mut self, name: &'a str, kind: Option<&'a str>) {
        let entry = self.declared.entry(name).or_insert(None);
        if kind.is_some() {
            *entry = kind;
        }
    }

    fn sample(&mut self, name: &'a str) {
        self.sample_names.insert(name);
    }

    /// The families that have at least one sample.
    fn count_with_samples(&self) -> usize {
        let families: HashSet<&str> = self
            .sample_names
            .iter()
            .map(|name| self.family_of(name))
            .collect();
        families.len()
    }

    fn family_of(&self, name: &'a str) -> &'a str {
        if self.declared.contains_key(name) {
            return name;
        }
        SUFFIXES
            .iter()
            .find_map(|(suffix, kinds)| {
                let base = name.strip_suffix(suffix)?;
                let (base, kind) = self.declared.get_key_value(base)?;
                kinds.contains(&(*kind)?).then_some(*base)
            })
            .unwrap_or(name)
    }
}

/// The line and column (in characters) of byte `offset` of `text`.
fn locate(text: &str, offset: usize, problem: Problem) -> ParseError {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    ParseError {
        line: before.matches('\n').count() + 1,
        column: before.get(line_start..).unwrap_or_default().chars().count() + 1,
        problem,
    }
}

#[cfg(test)]
mod tests;
