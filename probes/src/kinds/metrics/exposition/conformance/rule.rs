//! The rules of OpenMetrics 1.0 that span lines, as stable names, and a breach of
//! one: the rule, the line, and what was seen there.

/// Breaches kept with their words; the rest are only counted.
pub const MAX_BREACHES_KEPT: usize = 10;
/// The longest a breach's words get.
pub const MAX_DETAIL_CHARS: usize = 300;

/// A rule of the OpenMetrics 1.0 specification that a parse of single lines cannot
/// check. Each has a stable snake_case name (the finding's `rule` fact).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A family has more than one `# TYPE`, `# UNIT` or `# HELP` line.
    MetadataRepeated,
    /// A family's metadata line comes after its samples.
    MetadataAfterSamples,
    /// A family's lines are not contiguous: it resumes after another family.
    FamilyInterleaved,
    /// A family's name is a sample name of another family (a gauge `a_created`
    /// beside a counter `a`).
    NameClash,
    /// A family's sample lacks the suffix its type requires (`a` for a counter).
    SampleName,
    /// A counter's total is NaN or negative.
    CounterValue,
    /// A histogram's bucket, count or sum is NaN, negative, or (count and buckets)
    /// not an integer.
    HistogramValue,
    /// A bucket has no `le`, or one that is not a number, is NaN, or writes the
    /// infinite threshold otherwise than `+Inf`.
    BucketLe,
    /// Buckets are not in increasing order of `le`, or a threshold repeats.
    BucketOrder,
    /// A bucket's value is below the one before it (buckets are cumulative).
    BucketNotCumulative,
    /// A histogram point has no `+Inf` bucket.
    InfBucketMissing,
    /// `_count` (`_gcount`) differs from the `+Inf` bucket.
    CountMismatch,
    /// `_sum` without `_count`, or the reverse (`_gsum` and `_gcount` alike).
    SumCountPair,
    /// A histogram with negative thresholds has a `_sum`.
    NegativeBucketsWithSum,
    /// A gauge histogram's `_gsum` is negative without negative thresholds.
    GsumNegative,
    /// A summary quantile has no `quantile` label, or one outside [0, 1].
    SummaryQuantile,
    /// A summary's count or sum is NaN or negative (or the count not an
    /// integer), or a quantile's value is negative.
    SummaryValue,
    /// A state set sample has no label named after its family.
    StatesetLabel,
    /// A state set sample's value is neither 0 nor 1.
    StatesetValue,
    /// An info sample's value is not 1.
    InfoValue,
    /// An info or state set family has a unit.
    UnitNotAllowed,
    /// A label the type reserves (`le`, `quantile`) is on a sample that is not
    /// a bucket or a quantile.
    ReservedLabel,
    /// A metric (a label set) of a family resumes after another metric of it.
    MetricInterleaved,
    /// A series repeats without timestamps, or its timestamps go backwards.
    TimestampOrder,
    /// An exemplar on a sample whose type takes none (only counter totals and
    /// histogram buckets do).
    ExemplarNotAllowed,
    /// An exemplar's label names and values exceed 128 code points.
    ExemplarTooLong,
    /// An exemplar's value lies above its bucket's threshold.
    ExemplarOutOfRange,
}

impl Rule {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        use Rule::*;
        match self {
            MetadataRepeated => "metadata_repeated",
            MetadataAfterSamples => "metadata_after_samples",
            FamilyInterleaved => "family_interleaved",
            NameClash => "name_clash",
            SampleName => "sample_name",
            CounterValue => "counter_value",
            HistogramValue => "histogram_value",
            BucketLe => "bucket_le",
            BucketOrder => "bucket_order",
            BucketNotCumulative => "bucket_not_cumulative",
            InfBucketMissing => "inf_bucket_missing",
            CountMismatch => "count_mismatch",
            SumCountPair => "sum_count_pair",
            NegativeBucketsWithSum => "negative_buckets_with_sum",
            GsumNegative => "gsum_negative",
            SummaryQuantile => "summary_quantile",
            SummaryValue => "summary_value",
            StatesetLabel => "stateset_label",
            StatesetValue => "stateset_value",
            InfoValue => "info_value",
            UnitNotAllowed => "unit_not_allowed",
            ReservedLabel => "reserved_label",
            MetricInterleaved => "metric_interleaved",
            TimestampOrder => "timestamp_order",
            ExemplarNotAllowed => "exemplar_not_allowed",
            ExemplarTooLong => "exemplar_too_long",
            ExemplarOutOfRange => "exemplar_out_of_range",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One breach of a [`Rule`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breach {
    /// The line it is on, from 1.
    pub line: usize,
    /// The rule.
    pub rule: Rule,
    /// What was seen, for a human (`the buckets of the histogram \`a\` ...`).
    pub detail: String,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {} (rule {})", self.line, self.detail, self.rule)
    }
}

/// The breaches of one scrape: the first [`MAX_BREACHES_KEPT`] in line order,
/// and how many there were.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breaches {
    /// The first breaches, in the order they were found.
    pub first: Vec<Breach>,
    /// How many breaches there were in all.
    pub total: usize,
}

impl Breaches {
    /// Whether the scrape breaks no rule.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Counts a breach; its words are only written for one that is kept, and
    /// cut at [`MAX_DETAIL_CHARS`] (a label value may be 64 KiB long).
    pub(super) fn push(&mut self, line: usize, rule: Rule, detail: impl FnOnce() -> String) {
        self.total += 1;
        if self.first.len() < MAX_BREACHES_KEPT {
            let mut detail = detail();
            if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL_CHARS) {
                detail.truncate(cut);
                detail.push('…');
            }
            self.first.push(Breach { line, rule, detail });
        }
    }

    /// Sorts the kept breaches by line (checks that close a family or a point
    /// report them after later lines were read).
    pub(super) fn sort(&mut self) {
        self.first.sort_by_key(|b| b.line);
    }
}
