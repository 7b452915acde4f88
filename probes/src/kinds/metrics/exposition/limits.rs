//! The limits a scrape is read under, and the linear duplicate-label check.
//!
//! A scrape is untrusted input: one line of 60,000 labels, a label value of a
//! megabyte or millions of series must not cost the agent more than reading them.
//! Each limit is far above what a real exporter serves (kube-state-metrics' widest
//! series carry a few dozen labels) and is reported, when passed, as a parse
//! problem that names it, so the probe is `unexpected_response` with the limit in
//! its message.

use std::collections::HashSet;

/// Bytes in one line (a sample with its labels, or a comment).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Labels in one sample.
pub const MAX_LABELS_PER_SERIES: usize = 1_000;
/// Bytes in one label name.
pub const MAX_LABEL_NAME_BYTES: usize = 1_024;
/// Bytes in one label value, as written (escapes included).
pub const MAX_LABEL_VALUE_BYTES: usize = 64 * 1024;
/// Distinct series in one scrape.
pub const MAX_SERIES_PER_SCRAPE: usize = 1_000_000;

/// A limit of [`super::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// [`MAX_LINE_BYTES`].
    LineBytes,
    /// [`MAX_LABELS_PER_SERIES`].
    LabelsPerSeries,
    /// [`MAX_LABEL_NAME_BYTES`].
    LabelNameBytes,
    /// [`MAX_LABEL_VALUE_BYTES`].
    LabelValueBytes,
    /// [`MAX_SERIES_PER_SCRAPE`].
    SeriesPerScrape,
}

impl Limit {
    /// The limit's value.
    pub fn value(self) -> usize {
        match self {
            Limit::LineBytes => MAX_LINE_BYTES,
            Limit::LabelsPerSeries => MAX_LABELS_PER_SERIES,
            Limit::LabelNameBytes => MAX_LABEL_NAME_BYTES,
            Limit::LabelValueBytes => MAX_LABEL_VALUE_BYTES,
            Limit::SeriesPerScrape => MAX_SERIES_PER_SCRAPE,
        }
    }

    /// What is counted, as the README names the limit.
    pub fn name(self) -> &'static str {
        match self {
            Limit::LineBytes => "bytes per line",
            Limit::LabelsPerSeries => "labels per series",
            Limit::LabelNameBytes => "bytes per label name",
            Limit::LabelValueBytes => "bytes per label value",
            Limit::SeriesPerScrape => "series per scrape",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the limit of {} {}", self.value(), self.name())
    }
}

/// Label names seen so far in one sample: a short list scanned while it is short,
/// a hash set once it is not, so that checking `n` labels costs `O(n)`.
#[derive(Default)]
pub(super) struct SeenLabels<'a> {
    few: Vec<&'a str>,
    many: HashSet<&'a str>,
    /// Label names compared or hashed so far (what the linearity test counts).
    pub(super) work: usize,
}

/// Names kept in the list before they move to the set.
const FEW: usize = 16;

impl<'a> SeenLabels<'a> {
    /// Adds `name`; `false` when it was already there.
    pub(super) fn insert(&mut self, name: &'a str) -> bool {
        if self.many.is_empty() {
            self.work += self.few.len();
            if self.few.contains(&name) {
                return false;
            }
            if self.few.len() < FEW {
                self.few.push(name);
                return true;
            }
            self.work += self.few.len();
            self.many.extend(self.few.drain(..));
        }
        self.work += 1;
        self.many.insert(name)
    }
}
