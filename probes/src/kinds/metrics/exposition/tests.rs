//! The parser against the shapes real endpoints serve and the mistakes they make.

use super::*;

fn parse_all(body: &str, format: Format) -> Result<(Summary, Vec<Sample<'_>>), ParseError> {
    let mut samples = Vec::new();
    let summary = parse(body.as_bytes(), format, |s| samples.push(s.clone()))?;
    Ok((summary, samples))
}

fn text_error(body: &str) -> String {
    parse_all(body, Format::PrometheusText)
        .unwrap_err()
        .to_string()
}

fn om_error(body: &str) -> String {
    parse_all(body, Format::OpenMetrics)
        .unwrap_err()
        .to_string()
}

const TEXT: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
	indented_and_trailing_comma{ a = "b" , } NaN
"#;

#[test]
fn the_text_format_example_of_the_prometheus_documentation_parses() {
    let (summary, samples) = parse_all(TEXT, Format::PrometheusText).unwrap();
    assert_eq!(summary.samples, 10);
    assert_eq!(summary.series, 10);
    // http_requests_total, msdos..., metric_without..., something_weird, the
    // histogram (four sample names, one family), indented...
    assert_eq!(summary.families, 6);
    assert_eq!(samples[0].label("code"), Some("200"));
    assert_eq!(samples[0].timestamp, Some(1_395_066_363.0));
    assert_eq!(samples[1].value, 3.0);
    assert_eq!(
        samples[2].label("path"),
        Some(r"C:\DIR\FILE.TXT"),
        "escaped backslashes"
    );
    assert_eq!(
        samples[2].label("error"),
        Some("Cannot find file:\n\"FILE.TXT\"")
    );
    assert_eq!(samples[4].value, f64::INFINITY);
    assert_eq!(samples[4].timestamp, Some(-3982.045));
    assert_eq!(samples[4].line, 13);
    assert!(samples[9].value.is_nan());
    assert_eq!(samples[9].label("a"), Some("b"));
}

#[test]
fn repeated_series_count_once() {
    let body = "a{x=\"1\",y=\"2\"} 1 1000\na{y=\"2\",x=\"1\"} 2 2000\na{x=\"2\"} 1\n";
    let (summary, _) = parse_all(body, Format::PrometheusText).unwrap();
    assert_eq!(
        (summary.samples, summary.series, summary.families),
        (3, 2, 1)
    );
}

#[test]
fn a_type_after_its_samples_still_gathers_them_in_one_family() {
    // Found by the fuzzer: families were once decided sample by sample.
    let body = "foo_bucket{le=\"1\"} 1\n# TYPE foo histogram\nfoo_bucket{le=\"2\"} 2\nfoo_sum 3\n";
    let (summary, _) = parse_all(body, Format::PrometheusText).unwrap();
    assert_eq!(
        (summary.samples, summary.series, summary.families),
        (3, 3, 1)
    );
}

#[test]
fn empty_text_scrape_is_valid_and_empty() {
    let (summary, _) = parse_all("", Format::PrometheusText).unwrap();
    assert_eq!(summary, Summary::default());
}

#[test]
fn text_errors_are_located() {
    assert_eq!(
        text_error("ok 1\nbroken{a=\"b\" 1\n"),
        "line 2, column 14: expected `,` or `}` after the label, found `1`"
    );
    assert_eq!(
        text_error("a 1\n\nb{1=\"x\"} 2\n"),
        "line 3, column 3: expected a label name, found `1`"
    );
    assert_eq!(
        text_error("x{a=b} 1"),
        "line 1, column 5: expected `\"` to open the label value, found `b`"
    );
    assert_eq!(
        text_error("x{a=\"b} 1"),
        "line 1, column 5: the label value is not closed by `\"`"
    );
    assert_eq!(
        text_error("x one"),
        "line 1, column 3: `one` is not a number"
    );
    assert_eq!(
        text_error("x 1 12.5"),
        "line 1, column 5: `12.5` is not a timestamp (integer milliseconds since the epoch)"
    );
    assert_eq!(
        text_error("x 1 2 3"),
        "line 1, column 7: unexpected `3` after the end of the sample"
    );
    assert_eq!(
        text_error("x\n"),
        "line 1, column 2: expected a space, found the end of the line"
    );
    assert_eq!(
        text_error("# TYPE x countr\n"),
        "line 1, column 10: unknown metric type `countr`"
    );
    assert_eq!(
        text_error("x{a=\"1\",a=\"2\"} 1"),
        "line 1, column 9: label `a` appears twice in the sample"
    );
    assert_eq!(
        text_error("x 1\r\n"),
        "line 1, column 3: `1\\r` is not a number"
    );
    assert_eq!(
        text_error("<html>\n"),
        "line 1, column 1: expected a metric name, found `<`"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(
        text_error("x{a=\"ü€\"} oops"),
        "line 1, column 11: `oops` is not a number"
    );
}

#[test]
fn invalid_utf8_is_located() {
    let err = parse(b"a 1\nb{x=\"\xff\"} 1\n", Format::PrometheusText, |_| {}).unwrap_err();
    assert_eq!((err.line, err.column), (2, 6));
    assert_eq!(err.problem, Problem::InvalidUtf8);
}

#[test]
fn comments_and_unknown_escapes_pass_in_text() {
    let (summary, samples) = parse_all(
        "#no space\n# just words\n#\nx{p=\"a\\tb\"} 1\n",
        Format::PrometheusText,
    )
    .unwrap();
    assert_eq!(summary.samples, 1);
    assert_eq!(samples[0].label("p"), Some("a\\tb"));
}

const OM: &str = "# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.
acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32
acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0
acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0
# TYPE go_goroutines gauge
go_goroutines 69
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
process_cpu_seconds_total 4.20072246e+06 1700000000.5
# TYPE foo histogram
foo_bucket{le=\"0.1\"} 8 # {trace_id=\"KOO5S4vxi0o\"} 0.67
foo_bucket{le=\"+Inf\"} 17 1520879607.789 # {} 1 1520879607.7
foo_count 17
foo_sum 324789.3
# TYPE build info
build_info{version=\"1.0\"} 1
# EOF
";

#[test]
fn openmetrics_with_eof_parses() {
    let (summary, samples) = parse_all(OM, Format::OpenMetrics).unwrap();
    assert_eq!(summary.samples, 10);
    assert_eq!(summary.series, 10);
    assert_eq!(summary.families, 5);
    let cpu = samples
        .iter()
        .find(|s| s.name == "process_cpu_seconds_total")
        .unwrap();
    assert_eq!(cpu.timestamp, Some(1_700_000_000.5));
    assert_eq!(samples[6].name, "foo_bucket");
    assert_eq!(samples[6].timestamp, Some(1_520_879_607.789));
    assert!(parse_all(OM.trim_end(), Format::OpenMetrics).is_ok());
    assert!(parse_all("# EOF", Format::OpenMetrics).is_ok());
}

#[test]
fn openmetrics_without_eof_is_an_error_at_the_end() {
    assert_eq!(
        om_error("# TYPE a gauge\na 1\n"),
        "line 3, column 1: the body does not end with `# EOF` (OpenMetrics requires it; was the scrape cut short?)"
    );
    assert_eq!(
        om_error(""),
        "line 1, column 1: the body does not end with `# EOF` (OpenMetrics requires it; was the scrape cut short?)"
    );
}

#[test]
fn openmetrics_is_strict_where_its_grammar_is() {
    assert_eq!(
        om_error("a 1\n# EOF\n\n"),
        "line 3, column 1: data after `# EOF`"
    );
    assert_eq!(
        om_error("a 1\n\nb 2\n# EOF\n"),
        "line 2, column 1: blank line (OpenMetrics allows none)"
    );
    assert_eq!(
        om_error("# free comment\n# EOF\n"),
        "line 1, column 1: a line starting with `#` must be `# HELP`, `# TYPE`, `# UNIT` or `# EOF` in OpenMetrics"
    );
    assert_eq!(
        om_error("a{x=\"1\",} 1\n# EOF\n"),
        "line 1, column 9: expected a label name, found `}`"
    );
    assert_eq!(
        om_error("a  1\n# EOF\n"),
        "line 1, column 3: expected the sample value, found ` `"
    );
    assert_eq!(
        om_error("# TYPE a untyped\n# EOF\n"),
        "line 1, column 10: unknown metric type `untyped`"
    );
    assert_eq!(
        om_error("# UNIT a_bytes seconds\n# EOF\n"),
        "line 1, column 16: unit `seconds` is not a suffix of the metric name `a_bytes`"
    );
    assert_eq!(
        om_error("a 1 # trace 2\n# EOF\n"),
        "line 1, column 5: expected an exemplar `# {labels} value`, found `#`"
    );
    assert_eq!(
        om_error("a 1 NaN\n# EOF\n"),
        "line 1, column 5: `NaN` is not a timestamp (seconds since the epoch)"
    );
}

#[test]
fn openmetrics_puts_a_token_after_every_space() {
    // Issue 23: these three were accepted; Prometheus refuses each.
    assert_eq!(
        om_error("a 1 \n# EOF\n"),
        "line 1, column 4: a space ends the line (OpenMetrics puts a token after every space)"
    );
    assert_eq!(
        om_error("# HELP a\n# EOF\n"),
        "line 1, column 9: expected a space, found the end of the line"
    );
    assert_eq!(
        om_error("# UNIT a\n# EOF\n"),
        "line 1, column 9: expected a space, found the end of the line"
    );
    assert_eq!(
        om_error("a 1 2 \n# EOF\n"),
        "line 1, column 6: a space ends the line (OpenMetrics puts a token after every space)"
    );
    assert_eq!(
        om_error("a_total 1 2 3\n# EOF\n"),
        "line 1, column 13: unexpected `3` after the end of the sample"
    );
    assert_eq!(
        om_error("a_bucket{le=\"+Inf\"} 1 # {} 1 \n# EOF\n"),
        "line 1, column 29: a space ends the line (OpenMetrics puts a token after every space)"
    );
    // An empty HELP or UNIT keeps its space, and is valid.
    assert!(parse_all("# HELP a \n# UNIT a \n# EOF\n", Format::OpenMetrics).is_ok());
    // The text format keeps Prometheus' leniency.
    assert!(parse_all("a 1 \n# HELP b\n", Format::PrometheusText).is_ok());
}

#[test]
fn exemplars_only_on_samples_prometheus_takes_them_on() {
    assert_eq!(
        om_error("# TYPE a gauge\na 1 # {a=\"b\"} 1\n# EOF\n"),
        "line 2, column 5: `a` carries an exemplar: only `_total` and `_bucket` samples may (Prometheus refuses the scrape)"
    );
    assert_eq!(
        om_error("# TYPE a histogram\na_sum 1 # {a=\"b\"} 0.5\n# EOF\n"),
        "line 2, column 9: `a_sum` carries an exemplar: only `_total` and `_bucket` samples may (Prometheus refuses the scrape)"
    );
    assert!(parse_all("a_total 1 1 # {a=\"b\"} 0.5 1\n# EOF\n", Format::OpenMetrics).is_ok());
}

#[test]
fn content_type_chooses_the_format() {
    assert_eq!(
        Format::from_content_type(Some(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
        Format::PrometheusText
    );
    assert_eq!(Format::from_content_type(None), Format::PrometheusText);
}

fn labels_line(n: usize) -> String {
    let labels: Vec<String> = (0..n).map(|i| format!("l{i}=\"v\"")).collect();
    format!("wide{{{}}} 1\n", labels.join(","))
}

#[test]
fn sixty_thousand_labels_stop_at_the_labels_per_series_limit() {
    let body = labels_line(60_000);
    assert!(body.len() > 500_000);
    let e = parse_all(&body, Format::PrometheusText).unwrap_err();
    assert_eq!(e.problem, Problem::Limit(Limit::LabelsPerSeries));
    assert_eq!(e.line, 1);
    assert!(
        e.to_string()
            .contains("the limit of 1000 labels per series is exceeded"),
        "{e}"
    );
    // The limit itself is allowed.
    let body = labels_line(MAX_LABELS_PER_SERIES);
    let (summary, samples) = parse_all(&body, Format::PrometheusText).unwrap();
    assert_eq!(summary.series, 1);
    assert_eq!(samples[0].labels.len(), MAX_LABELS_PER_SERIES);
}

#[test]
fn the_duplicate_label_check_is_linear_in_the_labels() {
    for n in [10, 1_000, 60_000] {
        let names: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
        let mut seen = limits::SeenLabels::default();
        assert!(names.iter().all(|name| seen.insert(name)));
        assert!(!seen.insert(&names[n / 2]));
        // A constant amount of work per label, whatever their number.
        assert!(seen.work <= 32 * (n + 1), "{n} labels cost {}", seen.work);
    }
    let body = labels_line(MAX_LABELS_PER_SERIES - 1).replace("} 1", ",l7=\"x\"} 1");
    let e = parse_all(&body, Format::PrometheusText).unwrap_err();
    assert_eq!(e.problem, Problem::DuplicateLabel("l7".into()));
}

#[test]
fn long_lines_names_and_values_stop_at_their_limits() {
    let long_line = format!("# {}\n", "x".repeat(MAX_LINE_BYTES));
    let e = parse_all(&long_line, Format::PrometheusText).unwrap_err();
    assert_eq!(e.problem, Problem::Limit(Limit::LineBytes));
    assert_eq!((e.line, e.column), (1, MAX_LINE_BYTES + 1));

    let long_name = format!("m{{{}=\"v\"}} 1\n", "n".repeat(MAX_LABEL_NAME_BYTES + 1));
    let e = parse_all(&long_name, Format::PrometheusText).unwrap_err();
    assert_eq!(e.problem, Problem::Limit(Limit::LabelNameBytes));
    assert_eq!(e.column, 3);

    let long_value = format!("m{{a=\"{}\"}} 1\n", "v".repeat(MAX_LABEL_VALUE_BYTES + 1));
    let e = parse_all(&long_value, Format::OpenMetrics).unwrap_err();
    assert_eq!(e.problem, Problem::Limit(Limit::LabelValueBytes));
    assert_eq!(e.column, 5);
    let at_limit = format!("m{{a=\"{}\"}} 1\n", "v".repeat(MAX_LABEL_VALUE_BYTES));
    assert!(parse_all(&at_limit, Format::PrometheusText).is_ok());
}

#[test]
fn series_past_the_limit_stop_the_scrape_on_their_line() {
    let mut body = String::with_capacity(12 * (MAX_SERIES_PER_SCRAPE + 1));
    for i in 0..=MAX_SERIES_PER_SCRAPE {
        body.push_str(&format!("s{i} 1\n"));
    }
    let mut seen = 0;
    let e = parse(body.as_bytes(), Format::PrometheusText, |_| seen += 1).unwrap_err();
    assert_eq!(e.problem, Problem::Limit(Limit::SeriesPerScrape));
    assert_eq!(e.line, MAX_SERIES_PER_SCRAPE + 1);
    assert_eq!(seen, MAX_SERIES_PER_SCRAPE);
}
