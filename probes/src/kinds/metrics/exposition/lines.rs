//! The grammar of one line of an exposition, in either format.
//!
//! The Prometheus text format (0.0.4) is read the way Prometheus' own scraper reads
//! it: blanks (spaces, tabs) may separate tokens and lead a line, a trailing comma
//! may close a label set, and any comment that is not `# HELP` or `# TYPE` is
//! ignored. OpenMetrics 1.0 is read as its ABNF says: single spaces, no blank lines,
//! no other comments, `# UNIT`, float-second timestamps and exemplars. In both,
//! an unknown escape in a label value is kept as written, as Prometheus does.
//!
//! The cursor only stops on ASCII bytes, so every offset it reports is a character
//! boundary of the body.

use std::borrow::Cow;

use super::limits::{
    Limit, MAX_LABEL_NAME_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS_PER_SERIES, SeenLabels,
};
use super::{Problem, Sample};

/// A sample's labels, in written order, values unescaped.
type Labels<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// A problem at a byte offset of the body.
#[derive(Debug)]
pub(super) struct Fail {
    pub offset: usize,
    pub problem: Problem,
}

/// What one line holds.
#[derive(Debug)]
pub(super) enum Line<'a> {
    /// Nothing (text format only).
    Blank,
    /// A comment that carries no metadata (text format only).
    Comment,
    /// `# HELP name ...`.
    Help { name: &'a str },
    /// `# TYPE name type`.
    Type { name: &'a str, kind: &'a str },
    /// `# UNIT name unit` (OpenMetrics).
    Unit { name: &'a str, unit: &'a str },
    /// `# EOF` (OpenMetrics).
    Eof,
    /// A sample, and its exemplar when it carries one (OpenMetrics).
    Sample(Sample<'a>, Option<Exemplar>),
}

/// What the checks across lines need of an exemplar (the rest is read and dropped).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Exemplar {
    /// The label names and values of its label set, in code points (values
    /// unescaped), as the 128-code-point limit counts them.
    pub label_chars: usize,
    /// Its value.
    pub value: f64,
}

const TEXT_TYPES: &[&str] = &["counter", "gauge", "histogram", "summary", "untyped"];
const OPENMETRICS_TYPES: &[&str] = &[
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "stateset",
    "info",
    "summary",
    "unknown",
];

/// Reads line `number` (from 1), whose text starts at byte `base` of the body.
pub(super) fn parse_line<'a>(
    text: &'a str,
    base: usize,
    number: usize,
    openmetrics: bool,
) -> Result<Line<'a>, Fail> {
    let mut c = Cursor {
        line: text,
        base,
        pos: 0,
        openmetrics,
    };
    if openmetrics {
        if text.is_empty() {
            return Err(c.fail(Problem::BlankLine));
        }
        if text.starts_with('#') {
            return c.openmetrics_descriptor();
        }
    } else {
        c.skip_blanks();
        if c.at_end() {
            return Ok(Line::Blank);
        }
        if c.eat(b'#') {
            return c.text_comment();
        }
    }
    c.sample(number)
}

struct Cursor<'a> {
    line: &'a str,
    base: usize,
    pos: usize,
    openmetrics: bool,
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit()
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    is_label_start(b) || b.is_ascii_digit()
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.line.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Skips spaces and tabs; whether there were any.
    fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// The separator between tokens: one space in OpenMetrics, blanks otherwise.
    fn separator(&mut self) -> bool {
        if self.openmetrics {
            self.eat(b' ')
        } else {
            self.skip_blanks()
        }
    }

    /// Advances over ASCII bytes for which `keep` holds (it must refuse every
    /// non-ASCII byte, or the cursor could stop inside a character).
    fn take_ascii(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii() && keep(b)) {
            self.pos += 1;
        }
        self.line.get(start..self.pos).unwrap_or("")
    }

    /// Advances to the next blank (space or tab in text, space in OpenMetrics).
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        let om = self.openmetrics;
        while self.peek().is_some_and(|b| b != b' ' && (om || b != b'\t')) {
            self.pos += 1;
        }
        self.line.get(start..self.pos).unwrap_or("")
    }

    fn found(&self) -> String {
        match self.rest().chars().next() {
            None => "the end of the line".to_owned(),
            Some(c) => format!("`{}`", c.escape_debug()),
        }
    }

    fn fail(&self, problem: Problem) -> Fail {
        Fail {
            offset: self.base + self.pos,
            problem,
        }
    }

    fn fail_at(&self, pos: usize, problem: Problem) -> Fail {
        Fail {
            offset: self.base + pos,
            problem,
        }
    }

    fn metric_name(&mut self) -> Result<&'a str, Fail> {
        if !self.peek().is_some_and(is_name_start) {
            return Err(self.fail(Problem::ExpectedMetricName(self.found())));
        }
        Ok(self.take_ascii(is_name_char))
    }

    /// After `#` in the text format: `HELP` and `TYPE` carry metadata, anything
    /// else is a comment.
    fn text_comment(&mut self) -> Result<Line<'a>, Fail> {
        if !self.skip_blanks() {
            return Ok(Line::Comment);
        }
        let keyword = self.token();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(Line::Comment);
        }
        self.skip_blanks();
        let name = self.metric_name()?;
        if keyword == "HELP" {
            if !self.at_end() && !self.skip_blanks() {
                return Err(self.fail(Problem::ExpectedSpace(self.found())));
            }
            return Ok(Line::Help { name });
        }
        if !self.skip_blanks() {
            return Err(self.fail(Problem::ExpectedSpace(self.found())));
        }
        let at = self.pos;
        let kind = self.token();
        if !TEXT_TYPES.contains(&kind) {
            return Err(self.fail_at(at, Problem::UnknownType(kind.to_owned())));
        }
        self.skip_blanks();
        if !self.at_end() {
            return Err(self.fail(Problem::TrailingText(self.found())));
        }
        Ok(Line::Type { name, kind })
    }

    /// An OpenMetrics line starting with `#`: `# EOF`, `# HELP`, `# TYPE`, `# UNIT`.
    fn openmetrics_descriptor(&mut self) -> Result<Line<'a>, Fail> {
        if self.line == "# EOF" {
            return Ok(Line::Eof);
        }
        let keyword = ["# HELP ", "# TYPE ", "# UNIT "]
            .into_iter()
            .find(|k| self.eat_str(k))
            .ok_or_else(|| self.fail(Problem::UnknownComment))?;
        let name = self.metric_name()?;
        match keyword {
            "# HELP " => {
                // `# HELP name ` even when the text is empty: the space is the grammar's.
                if !self.eat(b' ') {
                    return Err(self.fail(Problem::ExpectedSpace(self.found())));
                }
                Ok(Line::Help { name })
            }
            "# TYPE " => {
                if !self.eat(b' ') {
                    return Err(self.fail(Problem::ExpectedSpace(self.found())));
                }
                let at = self.pos;
                let kind = self.rest();
                if !OPENMETRICS_TYPES.contains(&kind) {
                    return Err(self.fail_at(at, Problem::UnknownType(kind.to_owned())));
                }
                Ok(Line::Type { name, kind })
            }
            _ => {
                // `# UNIT name ` even when the unit is empty, as for HELP.
                if !self.eat(b' ') {
                    return Err(self.fail(Problem::ExpectedSpace(self.found())));
                }
                let at = self.pos;
                let unit = self.take_ascii(is_name_char);
                if !self.at_end() {
                    return Err(self.fail(Problem::TrailingText(self.found())));
                }
                let suffix_ok = unit.is_empty()
                    || name
                        .strip_suffix(unit)
                        .is_some_and(|head| head.ends_with('_'));
                if !suffix_ok {
                    return Err(self.fail_at(
                        at,
                        Problem::UnitNotSuffix {
                            unit: unit.to_owned(),
                            name: name.to_owned(),
                        },
                    ));
                }
                Ok(Line::Unit { name, unit })
            }
        }
    }

    /// `name{labels} value [timestamp]` (and an exemplar in OpenMetrics).
    fn sample(&mut self, line: usize) -> Result<Line<'a>, Fail> {
        let name = self.metric_name()?;
        let blank_after_name = !self.openmetrics && self.skip_blanks();
        let has_labels = self.peek() == Some(b'{');
        let labels = if self.eat(b'{') {
            self.labels()?.0
        } else {
            Vec::new()
        };
        // Text allows `name{...}value`; a bare name needs a blank before its value.
        let separated = self.separator() || (!self.openmetrics && (has_labels || blank_after_name));
        if !separated {
            return Err(self.fail(Problem::ExpectedSpace(self.found())));
        }
        let value = self.value()?;
        let (timestamp, exemplar) = if self.openmetrics {
            self.openmetrics_tail(name)?
        } else {
            let mut timestamp = None;
            if self.skip_blanks() && !self.at_end() {
                timestamp = Some(self.timestamp()?);
                self.skip_blanks();
            }
            (timestamp, None)
        };
        if !self.at_end() {
            return Err(self.fail(Problem::TrailingText(self.found())));
        }
        let sample = Sample {
            name,
            labels,
            value,
            timestamp,
            line,
        };
        Ok(Line::Sample(sample, exemplar))
    }

    /// What may follow an OpenMetrics value: `[SP timestamp] [SP # SP labels SP
    /// number [SP timestamp]]`, each space followed by something.
    fn openmetrics_tail(&mut self, name: &str) -> Result<(Option<f64>, Option<Exemplar>), Fail> {
        let mut timestamp = None;
        if !self.eat(b' ') {
            return Ok((None, None));
        }
        self.no_trailing_space()?;
        if self.peek() != Some(b'#') {
            timestamp = Some(self.timestamp()?);
            if !self.eat(b' ') {
                return Ok((timestamp, None));
            }
            self.no_trailing_space()?;
            if self.peek() != Some(b'#') {
                return Err(self.fail(Problem::TrailingText(self.found())));
            }
        }
        let at = self.pos;
        let exemplar = self.exemplar()?;
        // Prometheus refuses the whole scrape for an exemplar on any other sample.
        if !(name.ends_with("_total") || name.ends_with("_bucket")) {
            return Err(self.fail_at(at, Problem::ExemplarNotAllowed(name.to_owned())));
        }
        Ok((timestamp, Some(exemplar)))
    }

    /// A space that ends the line is an error in OpenMetrics: the grammar puts
    /// something after every separator.
    fn no_trailing_space(&self) -> Result<(), Fail> {
        if self.at_end() {
            return Err(self.fail_at(self.pos - 1, Problem::TrailingSpace));
        }
        Ok(())
    }

    /// The label set after `{`, up to and including `}`, and the code points of
    /// its names and (unescaped) values.
    fn labels(&mut self) -> Result<(Labels<'a>, usize), Fail> {
        let mut labels: Vec<(&'a str, Cow<'a, str>)> = Vec::new();
        let mut seen = SeenLabels::default();
        let text = !self.openmetrics;
        loop {
            if text {
                self.skip_blanks();
            }
            // `{}`, and in text a trailing comma before `}`.
            if (labels.is_empty() || text) && self.eat(b'}') {
                return Ok(with_code_points(labels));
            }
            let at = self.pos;
            if !self.peek().is_some_and(is_label_start) {
                return Err(self.fail(Problem::ExpectedLabelName(self.found())));
            }
            if labels.len() == MAX_LABELS_PER_SERIES {
                return Err(self.fail(Problem::Limit(Limit::LabelsPerSeries)));
            }
            let label = self.take_ascii(is_label_char);
            if label.len() > MAX_LABEL_NAME_BYTES {
                return Err(self.fail_at(at, Problem::Limit(Limit::LabelNameBytes)));
            }
            if text {
                self.skip_blanks();
            }
            if !self.eat(b'=') {
                return Err(self.fail(Problem::ExpectedEquals(self.found())));
            }
            if text {
                self.skip_blanks();
            }
            let value_at = self.pos;
            let value = self.label_value()?;
            if self.pos - value_at > MAX_LABEL_VALUE_BYTES + 2 {
                return Err(self.fail_at(value_at, Problem::Limit(Limit::LabelValueBytes)));
            }
            if !seen.insert(label) {
                return Err(self.fail_at(at, Problem::DuplicateLabel(label.to_owned())));
            }
            labels.push((label, value));
            if text {
                self.skip_blanks();
            }
            if self.eat(b'}') {
                return Ok(with_code_points(labels));
            }
            if !self.eat(b',') {
                return Err(self.fail(Problem::ExpectedCommaOrBrace(self.found())));
            }
        }
    }

    /// A quoted label value; `\\`, `\"` and `\n` are unescaped.
    fn label_value(&mut self) -> Result<Cow<'a, str>, Fail> {
        let open = self.pos;
        if !self.eat(b'"') {
            return Err(self.fail(Problem::ExpectedQuote(self.found())));
        }
        let rest = self.rest();
        let mut owned: Option<String> = None;
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(match owned {
                        Some(s) => Cow::Owned(s),
                        None => Cow::Borrowed(rest.get(..i).unwrap_or("")),
                    });
                }
                '\\' => {
                    let s = owned.get_or_insert_with(|| rest.get(..i).unwrap_or("").to_owned());
                    match chars.next() {
                        Some((_, 'n')) => s.push('\n'),
                        Some((_, e @ ('\\' | '"'))) => s.push(e),
                        Some((_, other)) => {
                            s.push('\\');
                            s.push(other);
                        }
                        None => break,
                    }
                }
                c => {
                    if let Some(s) = owned.as_mut() {
                        s.push(c);
                    }
                }
            }
        }
        Err(self.fail_at(open, Problem::UnterminatedLabelValue))
    }

    fn value(&mut self) -> Result<f64, Fail> {
        let at = self.pos;
        let token = self.token();
        if token.is_empty() {
            return Err(self.fail(Problem::ExpectedValue(self.found())));
        }
        parse_number(token).ok_or_else(|| {
            self.fail_at(at, Problem::InvalidValue(token.escape_debug().to_string()))
        })
    }

    /// Milliseconds as an integer in text, seconds as a number in OpenMetrics;
    /// returned in seconds.
    fn timestamp(&mut self) -> Result<f64, Fail> {
        let at = self.pos;
        let token = self.token();
        let seconds = if self.openmetrics {
            parse_number(token).filter(|t| t.is_finite())
        } else {
            token.parse::<i64>().ok().map(|ms| ms as f64 / 1000.0)
        };
        seconds.ok_or_else(|| {
            let expected = if self.openmetrics {
                "seconds since the epoch"
            } else {
                "integer milliseconds since the epoch"
            };
            self.fail_at(
                at,
                Problem::InvalidTimestamp(token.escape_debug().to_string(), expected),
            )
        })
    }

    /// `# {labels} value [timestamp]`: what the checks across lines need of it.
    fn exemplar(&mut self) -> Result<Exemplar, Fail> {
        if !self.eat_str("# {") {
            return Err(self.fail(Problem::InvalidExemplar(self.found())));
        }
        let (_, label_chars) = self.labels()?;
        if !self.eat(b' ') {
            return Err(self.fail(Problem::ExpectedSpace(self.found())));
        }
        let value = self.value()?;
        if self.eat(b' ') {
            self.no_trailing_space()?;
            self.timestamp()?;
        }
        Ok(Exemplar { label_chars, value })
    }
}

/// A label set with the code points of its names and values.
fn with_code_points(labels: Labels<'_>) -> (Labels<'_>, usize) {
    let chars = labels
        .iter()
        .map(|(l, v)| l.chars().count() + v.chars().count())
        .sum();
    (labels, chars)
}

/// A sample value: a decimal or exponent number, `NaN`, `+Inf`, `-Inf` (in any
/// case, as Go's parser that Prometheus uses takes them).
pub(super) fn parse_number(token: &str) -> Option<f64> {
    token.parse::<f64>().ok()
}
