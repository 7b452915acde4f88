//! The OpenMetrics parser test suite against a real `kind: metrics` probe, with
//! Prometheus itself as the judge of what a scraper ingests (issue 23).
//!
//! Every case is served over HTTP with the OpenMetrics content type, scraped by a
//! real probe (once as configured by default, once with `expect.strict: true`) and
//! by Debian's Prometheus server, which scrapes every case as a job of its own.
//! The verdicts asked for:
//! - strict: a valid case is `up` without a finding, an invalid one `down
//!   unexpected_response`;
//! - by default, Prometheus' verdict: a case Prometheus refuses is `down
//!   unexpected_response`; one it ingests works (`up` when valid, `degraded` with
//!   an `exposition_invalid` finding naming the rule and the line when invalid).
//!
//! The cases are the OpenMetrics project's own suite
//! (`tests/testdata/parsers/<case>/{metrics,test.json}` of
//! github.com/prometheus/OpenMetrics; 211 cases at commit 3bb328ab, 2025-01-31),
//! read from `DEPPROBE_OPENMETRICS_SUITE` or, by default, from
//! `../shared/openmetrics/parsers` beside the repository; and ours below, written
//! for each rule, which always run. The suite is not copied into the repository.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use depprobe_probes::kinds::metrics::EXPOSITION_INVALID;
use depprobe_probes::{ErrorType, Outcome, Status};
use depprobe_tests::{HttpServer, PrometheusServer, Reply, ScrapeJob, TargetHealth, run_once};

const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The environment variable naming the upstream suite's `parsers` directory.
const SUITE_VAR: &str = "DEPPROBE_OPENMETRICS_SUITE";

/// One case: a name, whether the specification calls it valid, the body.
struct Case {
    name: String,
    upstream: bool,
    valid: bool,
    body: Vec<u8>,
}

/// Cases of our own, one or more per rule, valid and invalid (`# EOF` included
/// where the case needs it).
const OWN: &[(&str, bool, &str)] = &[
    (
        "own_counter_created_exemplar",
        true,
        "# TYPE http_requests counter\n# HELP http_requests Requests served.\nhttp_requests_total{code=\"200\"} 1027 # {trace_id=\"0af7651916cd43dd\"} 1 1700000000.5\nhttp_requests_created{code=\"200\"} 1600000000\nhttp_requests_total{code=\"500\"} 3\nhttp_requests_created{code=\"500\"} 1600000000\n# EOF\n",
    ),
    (
        "own_histogram_full",
        true,
        "# TYPE rpc_seconds histogram\n# UNIT rpc_seconds seconds\nrpc_seconds_bucket{method=\"get\",le=\"0.005\"} 2\nrpc_seconds_bucket{method=\"get\",le=\"0.5\"} 9 # {trace_id=\"a\"} 0.25\nrpc_seconds_bucket{method=\"get\",le=\"+Inf\"} 10 # {} 7\nrpc_seconds_count{method=\"get\"} 10\nrpc_seconds_sum{method=\"get\"} 9.75\nrpc_seconds_created{method=\"get\"} 1600000000\nrpc_seconds_bucket{method=\"put\",le=\"0.005\"} 0\nrpc_seconds_bucket{method=\"put\",le=\"0.5\"} 0\nrpc_seconds_bucket{method=\"put\",le=\"+Inf\"} 0\nrpc_seconds_count{method=\"put\"} 0\nrpc_seconds_sum{method=\"put\"} 0\n# EOF\n",
    ),
    (
        "own_gaugehistogram_negative_thresholds",
        true,
        "# TYPE queue_lag gaugehistogram\nqueue_lag_bucket{le=\"-10\"} 1\nqueue_lag_bucket{le=\"0\"} 4\nqueue_lag_bucket{le=\"+Inf\"} 6\nqueue_lag_gcount 6\nqueue_lag_gsum -3.5\n# EOF\n",
    ),
    (
        "own_summary_points_with_timestamps",
        true,
        "# TYPE job_seconds summary\njob_seconds_count{job=\"x\"} 3 100\njob_seconds_sum{job=\"x\"} 1.5 100\njob_seconds_count{job=\"x\"} 4 200\njob_seconds_sum{job=\"x\"} 2 200\njob_seconds{job=\"y\",quantile=\"0.99\"} NaN\njob_seconds{job=\"y\",quantile=\"0\"} 0.1\n# EOF\n",
    ),
    (
        "own_stateset_and_info",
        true,
        "# TYPE disk_state stateset\ndisk_state{dev=\"sda\",disk_state=\"ok\"} 1\ndisk_state{dev=\"sda\",disk_state=\"failed\"} 0\ndisk_state{dev=\"sdb\",disk_state=\"ok\"} 0\ndisk_state{dev=\"sdb\",disk_state=\"failed\"} 1\n# TYPE app info\napp_info{version=\"2.1.0\",commit=\"abc\"} 1\n# EOF\n",
    ),
    (
        "own_no_metadata_and_unknown",
        true,
        "free_bytes 17\nfree_bytes_total 3\n# TYPE temp unknown\ntemp{room=\"a\"} -4.5\n# EOF\n",
    ),
    (
        "own_gauge_points_in_time",
        true,
        "# TYPE temp_celsius gauge\ntemp_celsius{room=\"a\"} 20 1700000000\ntemp_celsius{room=\"a\"} 21 1700000000\ntemp_celsius{room=\"a\"} 22 1700000060.5\ntemp_celsius{room=\"b\"} 19 1600000000\n# EOF\n",
    ),
    (
        "own_type_repeated",
        false,
        "# TYPE jobs gauge\n# HELP jobs Jobs.\n# TYPE jobs gauge\njobs 1\n# EOF\n",
    ),
    (
        "own_help_after_samples",
        false,
        "# TYPE jobs gauge\njobs 1\n# HELP jobs Jobs.\n# EOF\n",
    ),
    (
        "own_family_resumes",
        false,
        "# TYPE jobs gauge\njobs{q=\"a\"} 1\n# TYPE workers gauge\nworkers 2\njobs{q=\"b\"} 1\n# EOF\n",
    ),
    (
        "own_name_clash",
        false,
        "# TYPE jobs counter\njobs_total 1\n# TYPE jobs_total gauge\n# EOF\n",
    ),
    (
        "own_counter_without_total",
        false,
        "# TYPE jobs counter\njobs 1\n# EOF\n",
    ),
    (
        "own_counter_negative",
        false,
        "# TYPE jobs counter\njobs_total{q=\"a\"} 5\njobs_total{q=\"b\"} -0.5\n# EOF\n",
    ),
    (
        "own_bucket_order",
        false,
        "# TYPE rpc_seconds histogram\nrpc_seconds_bucket{le=\"0.5\"} 1\nrpc_seconds_bucket{le=\"0.1\"} 1\nrpc_seconds_bucket{le=\"+Inf\"} 1\n# EOF\n",
    ),
    (
        "own_bucket_not_cumulative",
        false,
        "# TYPE rpc_seconds histogram\nrpc_seconds_bucket{le=\"0.1\"} 5\nrpc_seconds_bucket{le=\"0.5\"} 4\nrpc_seconds_bucket{le=\"+Inf\"} 5\n# EOF\n",
    ),
    (
        "own_no_inf_bucket",
        false,
        "# TYPE rpc_seconds histogram\nrpc_seconds_bucket{le=\"0.1\"} 5\nrpc_seconds_bucket{le=\"0.5\"} 7\n# EOF\n",
    ),
    (
        "own_count_is_not_inf",
        false,
        "# TYPE rpc_seconds histogram\nrpc_seconds_bucket{le=\"+Inf\"} 7\nrpc_seconds_count 8\nrpc_seconds_sum 3\n# EOF\n",
    ),
    (
        "own_sum_without_count",
        false,
        "# TYPE rpc_seconds histogram\nrpc_seconds_bucket{le=\"+Inf\"} 7\nrpc_seconds_sum 3\n# EOF\n",
    ),
    (
        "own_negative_threshold_with_sum",
        false,
        "# TYPE drift histogram\ndrift_bucket{le=\"-1\"} 1\ndrift_bucket{le=\"+Inf\"} 2\ndrift_count 2\ndrift_sum 0.5\n# EOF\n",
    ),
    (
        "own_gsum_negative",
        false,
        "# TYPE queue_lag gaugehistogram\nqueue_lag_bucket{le=\"1\"} 1\nqueue_lag_bucket{le=\"+Inf\"} 1\nqueue_lag_gcount 1\nqueue_lag_gsum -1\n# EOF\n",
    ),
    (
        "own_le_spelt_otherwise",
        false,
        "# TYPE rpc_seconds histogram\nrpc_seconds_bucket{le=\"Inf\"} 1\n# EOF\n",
    ),
    (
        "own_quantile_missing",
        false,
        "# TYPE job_seconds summary\njob_seconds{job=\"x\"} 0.5\n# EOF\n",
    ),
    (
        "own_quantile_out_of_range",
        false,
        "# TYPE job_seconds summary\njob_seconds{quantile=\"99\"} 0.5\n# EOF\n",
    ),
    (
        "own_summary_count_fraction",
        false,
        "# TYPE job_seconds summary\njob_seconds_count 2.5\njob_seconds_sum 1\n# EOF\n",
    ),
    (
        "own_stateset_value",
        false,
        "# TYPE disk_state stateset\ndisk_state{disk_state=\"ok\"} 0.5\n# EOF\n",
    ),
    (
        "own_stateset_without_state_label",
        false,
        "# TYPE disk_state stateset\ndisk_state{dev=\"sda\"} 1\n# EOF\n",
    ),
    (
        "own_info_value",
        false,
        "# TYPE app info\napp_info{version=\"2\"} 0\n# EOF\n",
    ),
    (
        "own_info_with_unit",
        false,
        "# TYPE app_bytes info\n# UNIT app_bytes bytes\n# EOF\n",
    ),
    (
        "own_le_on_count",
        false,
        "# TYPE rpc_seconds histogram\nrpc_seconds_bucket{le=\"+Inf\"} 1\nrpc_seconds_count 1\nrpc_seconds_sum 1\nrpc_seconds_created{le=\"1\"} 1600000000\n# EOF\n",
    ),
    (
        "own_metric_interleaved",
        false,
        "# TYPE job_seconds summary\njob_seconds_count{job=\"x\"} 1\njob_seconds_count{job=\"y\"} 1\njob_seconds_sum{job=\"x\"} 1\n# EOF\n",
    ),
    (
        "own_timestamp_backwards",
        false,
        "# TYPE temp_celsius gauge\ntemp_celsius 20 1700000060\ntemp_celsius 21 1700000000\n# EOF\n",
    ),
    (
        "own_series_repeated",
        false,
        "# TYPE temp_celsius gauge\ntemp_celsius{room=\"a\"} 20\ntemp_celsius{room=\"a\"} 21\n# EOF\n",
    ),
    (
        "own_exemplar_on_gauge_total",
        false,
        "# TYPE seen_total gauge\nseen_total 1 # {trace_id=\"a\"} 1\n# EOF\n",
    ),
    (
        "own_exemplar_too_long",
        false,
        "# TYPE jobs counter\njobs_total 1 # {trace_id=\"0123456789012345678901234567890123456789012345678901234567890123456789\",span_id=\"01234567890123456789012345678901234567890123456789\"} 1\n# EOF\n",
    ),
    (
        "own_exemplar_above_its_bucket",
        false,
        "# TYPE rpc_seconds histogram\nrpc_seconds_bucket{le=\"0.1\"} 1 # {trace_id=\"a\"} 0.3\nrpc_seconds_bucket{le=\"+Inf\"} 1\n# EOF\n",
    ),
    (
        "own_trailing_space",
        false,
        "# TYPE jobs gauge\njobs 1 \n# EOF\n",
    ),
    (
        "own_help_without_its_space",
        false,
        "# HELP jobs\njobs 1\n# EOF\n",
    ),
    (
        "own_unit_without_its_space",
        false,
        "# UNIT jobs\njobs 1\n# EOF\n",
    ),
    (
        "own_exemplar_on_gauge",
        false,
        "# TYPE jobs gauge\njobs 1 # {trace_id=\"a\"} 1\n# EOF\n",
    ),
    (
        "own_exemplar_on_created",
        false,
        "# TYPE jobs counter\njobs_total 1\njobs_created 1600000000 # {trace_id=\"a\"} 1\n# EOF\n",
    ),
    ("own_no_eof", false, "# TYPE jobs gauge\njobs 1\n"),
    ("own_blank_line", false, "jobs 1\n\n# EOF\n"),
];

/// The upstream suite's directory, and whether it was asked for by name.
fn suite_dir() -> (PathBuf, bool) {
    match std::env::var_os(SUITE_VAR) {
        Some(dir) => (PathBuf::from(dir), true),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/openmetrics/parsers"),
            false,
        ),
    }
}

/// The upstream cases: every directory of `dir` with a `test.json`.
fn upstream_cases(dir: &std::path::Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let Ok(json) = std::fs::read_to_string(path.join("test.json")) else {
            continue;
        };
        let test: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(test["type"], "text", "{}", path.display());
        let file = test["file"].as_str().unwrap();
        cases.push(Case {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            upstream: true,
            valid: test["shouldParse"].as_bool().unwrap(),
            body: std::fs::read(path.join(file)).unwrap(),
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// What one case asks of the probe, given Prometheus' verdict; `None` when the
/// outcome is that.
fn judge(
    case: &Case,
    prometheus: &TargetHealth,
    default: &Outcome,
    strict: &Outcome,
) -> Option<String> {
    let unexpected = |o: &Outcome| {
        o.status == Status::Down && o.error_type == Some(ErrorType::UnexpectedResponse)
    };
    let clean_up = |o: &Outcome| o.status == Status::Up && o.findings.is_empty();
    let flagged = |o: &Outcome| {
        o.status == Status::Degraded
            && o.findings.len() == 1
            && o.findings[0].kind == EXPOSITION_INVALID
            && o.findings[0].facts.contains_key("rule")
            && o.findings[0].facts.contains_key("line")
    };
    let strict_right = if case.valid {
        clean_up(strict)
    } else {
        unexpected(strict)
    };
    let (default_right, wanted) = match (case.valid, prometheus.up) {
        (true, true) => (clean_up(default), "up"),
        (false, true) => (flagged(default), "degraded with exposition_invalid"),
        (_, false) => (unexpected(default), "down unexpected_response"),
    };
    let show = |o: &Outcome| {
        let message: String = o.message.chars().take(200).collect();
        format!("{:?} {:?} {message:?}", o.status, o.error_type)
    };
    let mut wrong = Vec::new();
    if !strict_right {
        wrong.push(format!(
            "strict wants {} but is {}",
            if case.valid {
                "up"
            } else {
                "down unexpected_response"
            },
            show(strict)
        ));
    }
    if !default_right {
        wrong.push(format!(
            "default wants {wanted} (Prometheus: {}) but is {}",
            if prometheus.up {
                "up".to_owned()
            } else {
                format!("down, {:?}", prometheus.last_error)
            },
            show(default)
        ));
    }
    (!wrong.is_empty()).then(|| format!("{}: {}", case.name, wrong.join("; ")))
}

#[tokio::test]
async fn every_openmetrics_parser_case_has_the_verdict_of_the_specification_and_of_prometheus() {
    let (dir, asked) = suite_dir();
    let mut cases: Vec<Case> = OWN
        .iter()
        .map(|(name, valid, body)| Case {
            name: (*name).to_owned(),
            upstream: false,
            valid: *valid,
            body: body.as_bytes().to_vec(),
        })
        .collect();
    if dir.is_dir() {
        cases.extend(upstream_cases(&dir));
    } else {
        assert!(!asked, "{SUITE_VAR}={} is no directory", dir.display());
        eprintln!(
            "the OpenMetrics suite is not at {} (set {SUITE_VAR}): only our {} cases run",
            dir.display(),
            OWN.len()
        );
    }
    let bodies: Arc<BTreeMap<String, Vec<u8>>> = Arc::new(
        cases
            .iter()
            .map(|c| (format!("/case/{}", c.name), c.body.clone()))
            .collect(),
    );
    let served = bodies.clone();
    let server = HttpServer::builder()
        .respond(move |req| match served.get(&req.path) {
            Some(body) => Reply::ok(body.clone()).header("content-type", OPENMETRICS_TYPE),
            None => Reply::new(404, "no such case"),
        })
        .start()
        .await
        .unwrap();
    let target = format!("127.0.0.1:{}", server.port());
    let jobs: Vec<ScrapeJob> = cases
        .iter()
        .map(|c| ScrapeJob {
            name: c.name.clone(),
            target: target.clone(),
            path: format!("/case/{}", c.name),
        })
        .collect();
    let prometheus = PrometheusServer::scraping(&jobs).await.unwrap();
    let health = prometheus.target_health(jobs.len()).await.unwrap();

    let probe = |name: &str, strict: bool| {
        format!(
            "name: om-{name}\nkind: metrics\nurl: http://{target}/case/{name}\ntimeout: 5s\nexpect:\n  min_samples: 0\n  strict: {strict}\n"
        )
    };
    let mut wrong = Vec::new();
    let mut agree = [0usize; 2]; // own, upstream
    let mut total = [0usize; 2];
    for case in &cases {
        let default = run_once(&probe(&case.name, false)).await.unwrap();
        let strict = run_once(&probe(&case.name, true)).await.unwrap();
        let prometheus = &health[&case.name];
        let which = usize::from(case.upstream);
        total[which] += 1;
        match judge(case, prometheus, &default, &strict) {
            None => agree[which] += 1,
            Some(w) => wrong.push(w),
        }
    }
    let figures = format!(
        "upstream suite: {}/{} cases agree, ours: {}/{}",
        agree[1], total[1], agree[0], total[0]
    );
    eprintln!("{figures}");
    assert!(
        wrong.is_empty(),
        "{figures}; disagreements:\n{}",
        wrong.join("\n")
    );
}
