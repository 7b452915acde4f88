//! Each rule across lines, broken and kept, in scrapes written for the purpose.

use super::super::{Format, parse};
use super::{Breach, Rule};

/// The breaches of an OpenMetrics scrape that parses.
fn breaches(body: &str) -> Vec<Breach> {
    let summary = parse(body.as_bytes(), Format::OpenMetrics, |_| {})
        .unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(summary.breaches.total, summary.breaches.first.len());
    summary.breaches.first
}

/// `body` (without `# EOF`) breaks exactly `rule`, first on `line`.
#[track_caller]
fn breaks(body: &str, rule: Rule, line: usize) -> String {
    breaks_also(body, rule, line, &[])
}

/// `body` (without `# EOF`) breaks `rule`, first on `line`, and no rule but `also`.
#[track_caller]
fn breaks_also(body: &str, rule: Rule, line: usize, also: &[Rule]) -> String {
    let body = format!("{body}# EOF\n");
    let found = breaches(&body);
    assert!(
        found.iter().all(|b| b.rule == rule || also.contains(&b.rule)),
        "expected only {rule} and {also:?}:\n{body}\nfound {found:#?}"
    );
    let first = found
        .iter()
        .find(|b| b.rule == rule)
        .unwrap_or_else(|| panic!("expected {rule}:\n{body}\nfound {found:#?}"));
    assert_eq!(first.line, line, "{found:#?}");
    first.to_string()
}

/// `body` (without `# EOF`) breaks nothing.
#[track_caller]
fn keeps(body: &str) {
    let body = format!("{body}# EOF\n");
    let found = breaches(&body);
    assert!(found.is_empty(), "{body}\n{found:#?}");
}

#[test]
fn the_specification_examples_keep_every_rule() {
    keeps(
        "# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.
acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32
acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0
acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0
acme_http_router_request_seconds_sum{path=\"/api/v2\",method=\"POST\"} 479.3
acme_http_router_request_seconds_count{path=\"/api/v2\",method=\"POST\"} 34.0
acme_http_router_request_seconds_created{path=\"/api/v2\",method=\"POST\"} 1605281325.0
# TYPE go_goroutines gauge
# HELP go_goroutines Number of goroutines that currently exist.
go_goroutines 69
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
# HELP process_cpu_seconds Total user and system CPU time spent in seconds.
process_cpu_seconds_total 4.20072246e+06
",
    );
    keeps(
        "# TYPE foo_seconds summary
# UNIT foo_seconds seconds
foo_seconds_count{a=\"bb\"} 0 123
foo_seconds_sum{a=\"bb\"} 0 123
foo_seconds_count{a=\"bb\"} 0 456
foo_seconds_sum{a=\"bb\"} 0 456
foo_seconds_count{a=\"ccc\"} 0 123
foo_seconds_sum{a=\"ccc\"} 0 123
foo_seconds_count{a=\"ccc\"} 0 456
foo_seconds_sum{a=\"ccc\"} 0 456
",
    );
    keeps(
        "# TYPE foo histogram
foo_bucket{le=\"0.01\"} 0
foo_bucket{le=\"0.1\"} 8 # {} 0.054
foo_bucket{le=\"1\"} 11 # {trace_id=\"KOO5S4vxi0o\"} 0.67
foo_bucket{le=\"10\"} 17 # {trace_id=\"oHg5SJYRHA0\"} 9.8 1520879607.789
foo_bucket{le=\"+Inf\"} 17
foo_count 17
foo_sum 324789.3
foo_created 1520430000.123
# TYPE foo2 gaugehistogram
foo2_bucket{le=\"0.01\"} 20.0
foo2_bucket{le=\"+Inf\"} 42.0
foo2_gcount 42.0
foo2_gsum 3289.3
# TYPE st stateset
st{entity=\"controller\",st=\"a\"} 1.0
st{entity=\"controller\",st=\"bb\"} 0.0
st{entity=\"replica\",st=\"a\"} 1.0
st{entity=\"replica\",st=\"bb\"} 0.0
# TYPE build info
build_info{name=\"pretty name\",version=\"8.2.7\"} 1
# TYPE c counter
c_total 17.0 1520879607.789
c_created 1520430000.123 1520879607.789
# TYPE q summary
q{quantile=\"0.95\"} 123.7
q{quantile=\"0.99\"} 150.0
q{quantile=\"0.5\"} NaN
# TYPE g gauge
g 17.0 123
g 18.0 456
",
    );
}

#[test]
fn metadata_comes_once_and_first() {
    let m = breaks("# TYPE a counter\n# TYPE a counter\n", Rule::MetadataRepeated, 2);
    assert_eq!(
        m,
        "line 2: a second `# TYPE` for `a` (the first is on line 1): a family has one TYPE, one UNIT and one HELP at most (rule metadata_repeated)"
    );
    breaks("# HELP a x\n# HELP a x\n", Rule::MetadataRepeated, 2);
    breaks("# UNIT a_s s\n# UNIT a_s s\n", Rule::MetadataRepeated, 2);
    let m = breaks("# HELP a x\na 1\n# TYPE a gauge\n", Rule::MetadataAfterSamples, 3);
    assert_eq!(
        m,
        "line 3: `# TYPE a` comes after the samples of the unknown-type family `a` (from line 2): metadata goes first (rule metadata_after_samples)"
    );
    keeps("# HELP a x\n# TYPE a counter\n# UNIT a \na_total 1\n");
}

#[test]
fn a_family_is_contiguous_and_its_names_its_own() {
    let m = breaks(
        "# TYPE a summary\na_count 1\na_sum 1\n# TYPE b gauge\nb 1\na_sum 2\n",
        Rule::FamilyInterleaved,
        6,
    );
    assert_eq!(
        m,
        "line 6: `a_sum` belongs to the summary `a`, whose lines ended on line 3: a family's lines must be together (rule family_interleaved)"
    );
    breaks("# TYPE a gauge\na 1\nb 1\n# HELP a again\n", Rule::FamilyInterleaved, 4);
    let m = breaks("# TYPE a_created gauge\n# TYPE a counter\n", Rule::NameClash, 2);
    assert!(m.contains("`a_created` is a sample name of both the counter `a` and the gauge `a_created`"), "{m}");
    let m = breaks("# TYPE a counter\na 1\n", Rule::SampleName, 2);
    assert_eq!(
        m,
        "line 2: `a` is no sample name of the counter `a`: its samples are `a_total`, `a_created` (rule sample_name)"
    );
    breaks("# TYPE a info\na 1\n", Rule::SampleName, 2);
    // A name that is no sample of the family starts a family of its own.
    keeps("# TYPE a counter\na_total 1\na_other 2\n");
}

#[test]
fn counter_totals_are_numbers_of_zero_or_more() {
    breaks("# TYPE a counter\na_total NaN\n", Rule::CounterValue, 2);
    breaks("# TYPE a counter\na_total -1\n", Rule::CounterValue, 2);
    keeps("# TYPE a counter\na_total 0\na_created -5\n");
    // Without a TYPE, `a_total` is a family of unknown type: no counter rule.
    keeps("a_total -1\n");
}

#[test]
fn histogram_values_and_thresholds() {
    breaks("# TYPE a histogram\na_bucket{le=\"+Inf\"} -1\n", Rule::HistogramValue, 2);
    breaks("# TYPE a histogram\na_bucket{le=\"+Inf\"} 1.5\n", Rule::HistogramValue, 2);
    breaks(
        "# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum NaN\n",
        Rule::HistogramValue,
        4,
    );
    breaks("# TYPE a histogram\na_bucket 0\na_bucket{le=\"+Inf\"} 0\n", Rule::BucketLe, 2);
    breaks_also("# TYPE a histogram\na_bucket 0\n", Rule::BucketLe, 2, &[Rule::InfBucketMissing]);
    let m = breaks(
        "# TYPE a histogram\na_bucket{le=\"+INF\"} 0\na_bucket{le=\"+Inf\"} 0\n",
        Rule::BucketLe,
        2,
    );
    assert!(m.contains("le=\"+INF\" of `a_bucket` must be written `+Inf`"), "{m}");
    breaks(
        "# TYPE a histogram\na_bucket{le=\"x\"} 0\na_bucket{le=\"+Inf\"} 0\n",
        Rule::BucketLe,
        2,
    );
    let m = breaks(
        "# TYPE a histogram\na_bucket{le=\"2\"} 0\na_bucket{le=\"1\"} 0\na_bucket{le=\"+Inf\"} 0\n",
        Rule::BucketOrder,
        3,
    );
    assert!(m.contains("the bucket le=1 of `a` comes after le=2"), "{m}");
    breaks(
        "# TYPE a histogram\na_bucket{le=\"1\"} 0\na_bucket{le=\"1.0\"} 0\na_bucket{le=\"+Inf\"} 0\n",
        Rule::BucketOrder,
        3,
    );
    breaks(
        "# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\n",
        Rule::BucketNotCumulative,
        3,
    );
    // Canonical or not, numbers compare as numbers.
    keeps("# TYPE a histogram\na_bucket{le=\"1e-04\"} 0\na_bucket{le=\"0.001\"} 0\na_bucket{le=\"+Inf\"} 0\n");
}

#[test]
fn histogram_points_have_inf_and_count_with_sum() {
    breaks("# TYPE a histogram\na_bucket{le=\"1\"} 0\n", Rule::InfBucketMissing, 2);
    let m = breaks("# TYPE a gaugehistogram\na_gsum 1\na_gcount 1\n", Rule::InfBucketMissing, 2);
    assert!(m.contains("a point of the gauge histogram `a` has no buckets"), "{m}");
    let m = breaks(
        "# TYPE a histogram\na_bucket{le=\"+Inf\"} 0\na_count 1\na_sum 1\n",
        Rule::CountMismatch,
        3,
    );
    assert!(m.contains("`a_count` is 1 but the `+Inf` bucket holds 0"), "{m}");
    let m = breaks("# TYPE a histogram\na_bucket{le=\"+Inf\"} 0\na_sum 0\n", Rule::SumCountPair, 3);
    assert!(m.contains("`a_sum` without `a_count`"), "{m}");
    breaks("# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 0\na_gcount 0\n", Rule::SumCountPair, 3);
    breaks(
        "# TYPE a histogram\na_bucket{le=\"-1\"} 0\na_bucket{le=\"+Inf\"} 0\na_count 0\na_sum 0\n",
        Rule::NegativeBucketsWithSum,
        5,
    );
    breaks(
        "# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum -1\n",
        Rule::GsumNegative,
        4,
    );
    keeps("# TYPE a gaugehistogram\na_bucket{le=\"-1\"} 1\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum -5\n");
    keeps("# TYPE a histogram\na_bucket{le=\"-1\"} 0\na_bucket{le=\"+Inf\"} 3\n");
    // Each metric is its own point, checked when it ends.
    breaks(
        "# TYPE a histogram\na_bucket{x=\"1\",le=\"+Inf\"} 0\na_bucket{x=\"2\",le=\"1\"} 0\n# TYPE b gauge\n",
        Rule::InfBucketMissing,
        3,
    );
}

#[test]
fn summaries_name_their_quantiles() {
    breaks("# TYPE a summary\na 0\n", Rule::SummaryQuantile, 2);
    for q in ["-1", "foo", "1.01", "NaN"] {
        breaks(&format!("# TYPE a summary\na{{quantile=\"{q}\"}} 0\n"), Rule::SummaryQuantile, 2);
    }
    breaks("# TYPE a summary\na{quantile=\"0.5\"} -1\n", Rule::SummaryValue, 2);
    breaks("# TYPE a summary\na_sum NaN\n", Rule::SummaryValue, 2);
    breaks("# TYPE a summary\na_count 1.5\n", Rule::SummaryValue, 2);
    breaks("# TYPE a summary\na_count{quantile=\"1\"} 1\n", Rule::ReservedLabel, 2);
    breaks_also(
        "# TYPE a histogram\na_bucket{le=\"+Inf\"} 1\na_count{le=\"1\"} 1\na_sum 1\n",
        Rule::ReservedLabel,
        3,
        &[Rule::InfBucketMissing, Rule::SumCountPair, Rule::MetricInterleaved],
    );
    keeps("# TYPE a summary\na_count 1\na_sum 2\na{quantile=\"0.5\"} 0.7\na{quantile=\"1\"} 0.8\n");
}

#[test]
fn state_sets_and_info_have_their_values() {
    breaks("# TYPE a stateset\na{a=\"x\"} 2\n", Rule::StatesetValue, 2);
    breaks("# TYPE a stateset\na{b=\"x\"} 1\n", Rule::StatesetLabel, 2);
    breaks("# TYPE a info\na_info{v=\"1\"} 2\n", Rule::InfoValue, 2);
    breaks("# TYPE x_u info\n# UNIT x_u u\n", Rule::UnitNotAllowed, 2);
    breaks("# UNIT x_u u\n# TYPE x_u stateset\n", Rule::UnitNotAllowed, 1);
}

#[test]
fn metrics_are_contiguous_and_their_timestamps_increase() {
    let m = breaks_also(
        "# TYPE a histogram\na_bucket{a=\"1\",le=\"+Inf\"} 0\na_bucket{a=\"2\",le=\"+Inf\"} 0\na_bucket{a=\"1\",le=\"+Inf\"} 0\n",
        Rule::MetricInterleaved,
        4,
        &[Rule::TimestampOrder],
    );
    assert!(m.contains("`a_bucket{a=\"1\",le=\"+Inf\"}` resumes a metric of the histogram `a`"), "{m}");
    breaks("# TYPE a gauge\na{x=\"1\"} 0 1\na{x=\"2\"} 0 1\na{x=\"1\"} 0 2\n", Rule::MetricInterleaved, 4);
    let m = breaks("# TYPE a gauge\na 0 1.1\na 0 1\n", Rule::TimestampOrder, 3);
    assert_eq!(
        m,
        "line 3: the timestamp of `a` goes back from 1.1 (line 2) to 1 (rule timestamp_order)"
    );
    breaks("# TYPE a gauge\na 0\na 0 0\n", Rule::TimestampOrder, 3);
    breaks("# TYPE a gauge\na 0 0\na 0\n", Rule::TimestampOrder, 3);
    breaks("a 1\na 2\n", Rule::TimestampOrder, 2);
    // Equal timestamps do not go back; other series have their own.
    keeps("# TYPE a gauge\na{x=\"1\"} 1 0\na{x=\"1\"} 2 0\na{x=\"2\"} 1 -5\n");
}

#[test]
fn exemplars_only_where_they_belong_and_short() {
    let m = breaks("# TYPE a_bucket gauge\na_bucket 1 # {a=\"b\"} 0.5\n", Rule::ExemplarNotAllowed, 2);
    assert!(m.contains("`a_bucket` of the gauge `a_bucket` carries an exemplar"), "{m}");
    breaks("a_total 1 # {a=\"b\"} 0.5\n", Rule::ExemplarNotAllowed, 1);
    let long = "x".repeat(128);
    let m = breaks(
        &format!("# TYPE a counter\na_total 1 # {{a=\"{long}\"}} 1\n"),
        Rule::ExemplarTooLong,
        2,
    );
    assert!(m.contains("labels of 129 code points: at most 128"), "{m}");
    // 128 code points, one of them three bytes long, is within the limit.
    keeps(&format!("# TYPE a counter\na_total 1 # {{a=\"☃{}\"}} 1\n", &long[..126]));
    breaks(
        "# TYPE a histogram\na_bucket{le=\"1\"} 1 # {} 2\na_bucket{le=\"+Inf\"} 1\n",
        Rule::ExemplarOutOfRange,
        2,
    );
}

#[test]
fn breaches_are_counted_past_those_kept() {
    let mut body = String::from("# TYPE a counter\n");
    for i in 0..25 {
        body.push_str(&format!("a_total{{i=\"{i}\"}} -1\n"));
    }
    body.push_str("# EOF\n");
    let summary = parse(body.as_bytes(), Format::OpenMetrics, |_| {}).unwrap();
    assert_eq!(summary.breaches.total, 25);
    assert_eq!(summary.breaches.first.len(), super::MAX_BREACHES_KEPT);
    assert_eq!(summary.breaches.first[0].line, 2);
}

#[test]
fn the_text_format_is_not_held_to_openmetrics_rules() {
    let body = "# TYPE a counter\n# TYPE a counter\na -1\n";
    let summary = parse(body.as_bytes(), Format::PrometheusText, |_| {}).unwrap();
    assert!(summary.breaches.is_empty());
}

#[test]
fn a_breach_quotes_at_most_a_few_hundred_characters_of_a_huge_label() {
    let value = "v".repeat(60_000);
    let body = format!("# TYPE a counter\na_total{{big=\"{value}\"}} -1\n# EOF\n");
    let found = breaches(&body);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rule, Rule::CounterValue);
    assert_eq!(found[0].detail.chars().count(), super::rule::MAX_DETAIL_CHARS + 1);
    assert!(found[0].detail.ends_with('…'));
}
