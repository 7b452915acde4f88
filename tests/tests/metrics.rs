//! The `metrics` probe against real endpoints: Debian's Prometheus server (its own
//! `/metrics` and `/federate`) and blackbox_exporter, started by the tests; and a
//! local HTTPS metrics API that requires a bearer JWT, serving incident 01's
//! failure and every way a scrape can be wrong.

use std::time::{SystemTime, UNIX_EPOCH};

use depprobe_probes::{ErrorType, Outcome, Phase, Status};
use depprobe_tests::{
    BlackboxExporter, Ca, HttpServer, PrometheusServer, Reply, Req, Scratch, Validity, run_once,
};

/// The token the metrics API accepts, and the one signed with the rotated-out key.
const GOOD_JWT: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjbWktcmVhZGVyIn0.bmV3LWtleS1zaWduYXR1cmU";
const OLD_JWT: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjbWktcmVhZGVyIn0.b2xkLWtleS1zaWduYXR1cmU";
/// Incident 01's answer.
const JWT_BODY: &str = r#"{"message":"Failed to validate JWT."}"#;

const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const HEALTHY: &str = r#"# HELP neo4j_database_count_node Nodes in the database.
# TYPE neo4j_database_count_node gauge
neo4j_database_count_node{instance="db-1",database="neo4j"} 1027
neo4j_database_count_node{instance="db-1",database="system"} 3
# HELP neo4j_up Whether the instance answers.
# TYPE neo4j_up gauge
neo4j_up{instance="db-1"} 1
# TYPE neo4j_bolt_connections_opened_total counter
neo4j_bolt_connections_opened_total{instance="db-1"} 88412
"#;

/// A local customer-metrics API: HTTPS, bearer JWT required, answering `reply`
/// to an authorised scrape and incident 01's body to any other.
struct MetricsApi {
    server: HttpServer,
    _scratch: Scratch,
    ca: Ca,
    ca_file: std::path::PathBuf,
    token_file: std::path::PathBuf,
}

async fn api(reply: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> MetricsApi {
    let ca = Ca::root("Metrics API CA").unwrap();
    let leaf = ca.leaf(&["localhost"], Validity::current()).unwrap();
    let server = HttpServer::builder()
        .tls(&leaf)
        .respond(move |req| {
            if req.header("authorization") == Some(&format!("Bearer {GOOD_JWT}")) {
                reply(req)
            } else {
                Reply::new(401, JWT_BODY).header("content-type", "application/json")
            }
        })
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new().unwrap();
    let ca_file = scratch.ca(&ca).unwrap();
    let token_file = scratch.write("cmi.jwt", &format!("{GOOD_JWT}\n")).unwrap();
    MetricsApi {
        server,
        _scratch: scratch,
        ca,
        ca_file,
        token_file,
    }
}

fn text(body: impl Into<String>) -> impl Fn(&Req) -> Reply + Send + Sync + 'static {
    let body = body.into();
    move |_| Reply::ok(body.clone()).header("content-type", TEXT_TYPE)
}

fn openmetrics(body: impl Into<String>) -> impl Fn(&Req) -> Reply + Send + Sync + 'static {
    let body = body.into();
    move |_| Reply::ok(body.clone()).header("content-type", OPENMETRICS_TYPE)
}

/// One scrape of `api` with the keys `extra` added.
async fn scrape(api: &MetricsApi, extra: &str) -> Outcome {
    run_once(&format!(
        "name: customer-metrics\nkind: metrics\nurl: {}\ntimeout: 5s\nbearer_token_file: {}\ntls:\n  ca_file: {}\n{extra}",
        api.server.url("localhost", "/metrics"),
        api.token_file.display(),
        api.ca_file.display()
    ))
    .await
    .unwrap()
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

fn detail(o: &Outcome, key: &str) -> serde_json::Value {
    o.details.get(key).cloned().unwrap_or_default()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn authorised_scrape_is_up_with_counts_and_size() {
    let api = api(text(HEALTHY)).await;
    let o = scrape(
        &api,
        "expect:\n  series:\n    - match: 'neo4j_up{instance=\"db-1\"}'\n      min: 1\n      max: 1\n",
    )
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "format"), "prometheus-text-0.0.4");
    assert_eq!(detail(&o, "samples"), 4);
    assert_eq!(detail(&o, "series"), 4);
    assert_eq!(detail(&o, "families"), 3);
    assert_eq!(detail(&o, "bytes"), HEALTHY.len());
    assert_eq!(o.http.as_ref().unwrap().status_code, 200);
    assert!(
        o.message
            .starts_with("scraped 4 samples of 4 series in 3 families"),
        "{}",
        o.message
    );
    for phase in [Phase::Dns, Phase::Connect, Phase::Tls, Phase::Request] {
        assert!(o.timings.get(phase).is_some(), "{phase} not timed");
    }
}

#[tokio::test]
async fn rejected_token_is_jwt_rejected_with_the_body_of_incident_01() {
    let api = api(text(HEALTHY)).await;
    std::fs::write(&api.token_file, OLD_JWT).unwrap();
    let o = scrape(&api, "").await;
    assert_down(&o, ErrorType::JwtRejected, Phase::Request);
    assert!(o.message.contains(JWT_BODY), "{}", o.message);
    assert!(!o.message.contains(OLD_JWT), "{}", o.message);
    assert_eq!(o.http.unwrap().status_code, 401);

    // The rotated token is read on the next run, without a restart.
    std::fs::write(&api.token_file, GOOD_JWT).unwrap();
    assert_eq!(scrape(&api, "").await.status, Status::Up);
}

#[tokio::test]
async fn missing_token_file_is_credential_missing_and_nothing_is_sent() {
    let api = api(text(HEALTHY)).await;
    std::fs::remove_file(&api.token_file).unwrap();
    let o = scrape(&api, "").await;
    assert_down(&o, ErrorType::CredentialMissing, Phase::Auth);
    assert_eq!(api.server.requests(), 0);
}

#[tokio::test]
async fn expired_certificate_is_tls_cert_expired() {
    let api = api(text(HEALTHY)).await;
    let expired = api.ca.leaf(&["localhost"], Validity::expired()).unwrap();
    api.server.set_identity(&expired).unwrap();
    let o = scrape(&api, "").await;
    assert_down(&o, ErrorType::TlsCertExpired, Phase::Tls);
}

#[tokio::test]
async fn unavailable_endpoint_is_http_status() {
    let api = api(|_| Reply::new(503, "maintenance")).await;
    let o = scrape(&api, "").await;
    assert_down(&o, ErrorType::HttpStatus, Phase::Request);
    assert!(o.message.starts_with("HTTP 503"), "{}", o.message);
}

#[tokio::test]
async fn accept_prefers_openmetrics_and_openmetrics_with_eof_is_up_unless_accept_is_configured() {
    let om = "# TYPE cmi_exports counter\ncmi_exports_total{tenant=\"a\"} 17 1700000000.250 # {trace_id=\"4bf9\"} 1\ncmi_exports_created{tenant=\"a\"} 1600000000\n# TYPE cmi_export_seconds histogram\n# UNIT cmi_export_seconds seconds\ncmi_export_seconds_bucket{le=\"1.0\"} 3\ncmi_export_seconds_bucket{le=\"+Inf\"} 4\ncmi_export_seconds_count 4\ncmi_export_seconds_sum 2.5\n# EOF\n";
    // Content negotiation as a real exporter does it: OpenMetrics only when asked.
    let api = api(move |req| {
        let accept = req.header("accept").unwrap_or("");
        if accept.starts_with("application/openmetrics-text") {
            Reply::ok(om).header("content-type", OPENMETRICS_TYPE)
        } else {
            Reply::ok(HEALTHY).header("content-type", TEXT_TYPE)
        }
    })
    .await;
    let o = scrape(
        &api,
        "expect:\n  series:\n    - match: cmi_exports_total\n      min: 1\n",
    )
    .await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "format"), "openmetrics-1.0.0");
    assert_eq!(detail(&o, "samples"), 6);
    assert_eq!(detail(&o, "families"), 2);

    // A configured Accept replaces the default: the text format is served.
    let o = scrape(&api, "headers:\n  accept: text/plain;version=0.0.4\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "format"), "prometheus-text-0.0.4");
}

#[tokio::test]
async fn openmetrics_without_eof_is_unexpected_response_at_its_end() {
    let cut = "# TYPE cmi_up gauge\ncmi_up 1\n# TYPE cmi_exports counter\ncmi_exports_total 17\n";
    let api = api(openmetrics(cut)).await;
    let o = scrape(&api, "").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message.contains(
            "does not parse as OpenMetrics 1.0 (Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8): line 5, column 1: the body does not end with `# EOF`"
        ),
        "{}",
        o.message
    );
    assert_eq!(detail(&o, "parse_error")["line"], 5);
    assert_eq!(detail(&o, "parse_error")["column"], 1);
}

#[tokio::test]
async fn garbage_body_is_unexpected_response_with_line_and_column() {
    let broken = "# TYPE cmi_up gauge\ncmi_up 1\ncmi_tenants{region=\"eu\" 12\n";
    let api = api(text(broken)).await;
    let o = scrape(&api, "").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message.contains(
            "does not parse as Prometheus text format 0.0.4 (Content-Type: text/plain; version=0.0.4; charset=utf-8): line 3, column 25: expected `,` or `}` after the label, found `1`"
        ),
        "{}",
        o.message
    );
    assert!(
        o.message
            .contains(r#"the line reads "cmi_tenants{region=\"eu\" 12""#),
        "{}",
        o.message
    );
    // No expectation was set: the message claims none (issue 23).
    assert!(!o.message.contains("expectation"), "{}", o.message);

    // A login page served with 200 instead of metrics.
    api.server.set_responder(|_| {
        Reply::ok("<!DOCTYPE html>\n<html>").header("content-type", "text/html")
    });
    let o = scrape(&api, "").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message.contains(
            "(Content-Type: text/html): line 1, column 1: expected a metric name, found `<`"
        ),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn missing_series_is_unexpected_response_naming_what_is_there() {
    let api = api(text(HEALTHY)).await;
    let o = scrape(
        &api,
        "expect:\n  series:\n    - match: 'neo4j_up{instance=\"db-2\"}'\n    - match: neo4j_store_size_bytes\n    - match: neo4j_database_count_node\n",
    )
    .await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert_eq!(
        o.message,
        "2 of 4 expectations failed: no sample matches neo4j_up{instance=\"db-2\"} (neo4j_up is there as neo4j_up{instance=\"db-1\"}); no sample matches neo4j_store_size_bytes (no series named neo4j_store_size_bytes at all); the service answered, but not as it should: check what it sends"
    );
}

#[tokio::test]
async fn value_out_of_range_is_unexpected_response() {
    let api = api(text(HEALTHY.replace(
        "neo4j_up{instance=\"db-1\"} 1",
        "neo4j_up{instance=\"db-1\"} 0",
    )))
    .await;
    let o = scrape(
        &api,
        "expect:\n  series:\n    - match: neo4j_up\n      min: 1\n",
    )
    .await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message
            .starts_with("neo4j_up{instance=\"db-1\"} = 0 (line 7) is below min 1"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn prometheus_text_timestamps_are_judged_for_staleness() {
    let now_ms = (unix_now() * 1000.0) as i64;
    let two_hours_ago = now_ms - 2 * 3600 * 1000;
    let body =
        format!("cmi_up{{tenant=\"a\"}} 1 {now_ms}\ncmi_up{{tenant=\"b\"}} 1 {two_hours_ago}\n");
    let api = api(text(body)).await;

    let fresh = scrape(
        &api,
        "expect:\n  series:\n    - match: 'cmi_up{tenant=\"a\"}'\n      max_age: 5m\n",
    )
    .await;
    assert_eq!(fresh.status, Status::Up, "{fresh:#?}");

    let stale = scrape(
        &api,
        "expect:\n  series:\n    - match: cmi_up\n      max_age: 5m\n",
    )
    .await;
    assert_down(&stale, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        stale
            .message
            .starts_with("cmi_up{tenant=\"b\"} is stale: its timestamp "),
        "{}",
        stale.message
    );
    assert!(
        stale
            .message
            .contains(" is 2 hours ago, older than max_age 5m"),
        "{}",
        stale.message
    );
}

#[tokio::test]
async fn stale_timestamp_seconds_series_is_unexpected_response() {
    let body = format!(
        "# TYPE cmi_last_export_timestamp_seconds gauge\ncmi_last_export_timestamp_seconds {}\n",
        unix_now() - 3.0 * 3600.0
    );
    let api = api(text(body)).await;
    let stale = scrape(
        &api,
        "expect:\n  series:\n    - match: cmi_last_export_timestamp_seconds\n      max_age: 1h\n",
    )
    .await;
    assert_down(&stale, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        stale.message.contains("is stale: its value "),
        "{}",
        stale.message
    );
    assert!(
        stale
            .message
            .contains(" is 3 hours ago, older than max_age 1h"),
        "{}",
        stale.message
    );
    let fresh = scrape(
        &api,
        "expect:\n  series:\n    - match: cmi_last_export_timestamp_seconds\n      max_age: 4h\n",
    )
    .await;
    assert_eq!(fresh.status, Status::Up, "{fresh:#?}");
}

#[tokio::test]
async fn series_without_any_timestamp_cannot_be_judged_for_staleness() {
    let api = api(text(HEALTHY)).await;
    let o = scrape(
        &api,
        "expect:\n  series:\n    - match: neo4j_up\n      max_age: 5m\n",
    )
    .await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(o.message.contains("carries no timestamp"), "{}", o.message);
}

#[tokio::test]
async fn empty_scrape_and_too_few_samples_are_unexpected_response() {
    let api = api(text("")).await;
    let o = scrape(&api, "").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message.starts_with(
            "the scrape holds 0 samples, fewer than min_samples 1 (the endpoint serves no metrics at all)"
        ),
        "{}",
        o.message
    );
    api.server.set_responder(text(HEALTHY));
    let o = scrape(&api, "expect:\n  min_samples: 5\n").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message
            .starts_with("the scrape holds 4 samples, fewer than min_samples 5"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn scrape_larger_than_max_body_bytes_is_unexpected_response() {
    let api = api(text(HEALTHY)).await;
    let o = scrape(&api, "max_body_bytes: 64\n").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message
            .contains("the scrape is larger than max_body_bytes (64 bytes)"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn prometheus_server_own_metrics_are_scraped_and_judged() {
    let prometheus = PrometheusServer::start().await.unwrap();
    let o = run_once(&format!(
        "name: prometheus-self\nkind: metrics\nurl: {}\ntimeout: 10s\nexpect:\n  min_samples: 100\n  series:\n    - match: 'prometheus_build_info{{version!=\"\"}}'\n      min: 1\n      max: 1\n    - match: prometheus_config_last_reload_successful\n      min: 1\n    - match: prometheus_config_last_reload_success_timestamp_seconds\n      max_age: 1h\n",
        prometheus.url("/metrics")
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(detail(&o, "format"), "prometheus-text-0.0.4");
    let samples = detail(&o, "samples").as_u64().unwrap();
    let series = detail(&o, "series").as_u64().unwrap();
    let families = detail(&o, "families").as_u64().unwrap();
    assert!(
        samples >= 100 && series <= samples && families < series,
        "{o:#?}"
    );
    assert!(detail(&o, "bytes").as_u64().unwrap() > 1000, "{o:#?}");
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn prometheus_federation_serves_fresh_timestamped_series() {
    let prometheus = PrometheusServer::start().await.unwrap();
    prometheus.wait_for_first_scrape().await.unwrap();
    let federate = prometheus.url("/federate?match[]={job=\"prometheus\"}");
    let probe = |expect: &str| {
        format!(
            "name: federation\nkind: metrics\nurl: '{federate}'\ntimeout: 10s\nexpect:\n  series:\n{expect}"
        )
    };

    let o = run_once(&probe(
        "    - match: 'up{job=\"prometheus\"}'\n      min: 1\n      max: 1\n      max_age: 5m\n",
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(detail(&o, "series").as_u64().unwrap() > 1, "{o:#?}");

    let o = run_once(&probe("    - match: 'up{job=\"orders-api\"}'\n"))
        .await
        .unwrap();
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    let instance = format!("instance=\"127.0.0.1:{}\"", prometheus.port());
    assert!(
        o.message
            .contains("no sample matches up{job=\"orders-api\"} (up is there as up{")
            && o.message.contains(&instance),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn blackbox_exporter_metrics_are_scraped_and_judged() {
    let exporter = BlackboxExporter::start().await.unwrap();
    let o = run_once(&format!(
        "name: blackbox\nkind: metrics\nurl: {}\ntimeout: 10s\nexpect:\n  series:\n    - match: 'blackbox_exporter_build_info{{version=~\"0\\\\..+\"}}'\n    - match: blackbox_exporter_config_last_reload_successful\n      min: 1\n      max: 1\n    - match: blackbox_exporter_config_last_reload_success_timestamp_seconds\n      max_age: 1h\n",
        exporter.url("/metrics")
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(detail(&o, "samples").as_u64().unwrap() > 10, "{o:#?}");
}

#[tokio::test]
async fn stopped_exporter_is_connect_refused() {
    let exporter = BlackboxExporter::start().await.unwrap();
    let url = exporter.url("/metrics");
    drop(exporter);
    let o = run_once(&format!(
        "name: blackbox\nkind: metrics\nurl: {url}\ntimeout: 5s\n"
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::ConnectRefused, Phase::Connect);
}

#[tokio::test]
async fn a_timestamp_before_any_calendar_is_stale_not_a_vanished_probe() {
    let api = api(text(
        "# TYPE job_last_success_timestamp_seconds gauge\njob_last_success_timestamp_seconds -1e15\n",
    ))
    .await;
    let o = scrape(
        &api,
        "expect:\n  series:\n    - match: job_last_success_timestamp_seconds\n      max_age: 1h\n",
    )
    .await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message
            .contains("is stale: its value @-1000000000000000 is "),
        "{}",
        o.message
    );
}

/// One sample with `n` labels: 60,000 of them is the 588 KB scrape of issue 12.
fn wide_sample(n: usize) -> String {
    let labels: Vec<String> = (0..n).map(|i| format!("label_{i}=\"v\"")).collect();
    format!("wide_metric{{{}}} 1\n", labels.join(","))
}

#[tokio::test]
async fn sixty_thousand_labels_are_unexpected_response_naming_the_limit() {
    let body = wide_sample(60_000);
    assert!(body.len() > 580_000, "{}", body.len());
    let api = api(text(body)).await;
    let o = scrape(&api, "max_body_bytes: 1048576\n").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message
            .contains("the limit of 1000 labels per series is exceeded"),
        "{}",
        o.message
    );
    assert_eq!(detail(&o, "parse_error")["line"], 1);
}

/// An OpenMetrics exposition Prometheus ingests although it breaks the
/// specification: the histogram's buckets are out of order (issue 23).
const UNSORTED_BUCKETS: &str = "# TYPE cmi_export_seconds histogram\ncmi_export_seconds_bucket{le=\"2\"} 1\ncmi_export_seconds_bucket{le=\"1\"} 1\ncmi_export_seconds_bucket{le=\"+Inf\"} 1\ncmi_export_seconds_count 1\ncmi_export_seconds_sum 0.5\n# EOF\n";

#[tokio::test]
async fn openmetrics_rule_breach_is_a_warning_and_fails_only_under_expect_strict() {
    let api = api(openmetrics(UNSORTED_BUCKETS)).await;
    let o = scrape(&api, "").await;
    // Prometheus ingests it: the target works, the breach is named with its line.
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.error_type, None, "{o:#?}");
    let f =
        depprobe_tests::harness::finding(&o, depprobe_probes::kinds::metrics::EXPOSITION_INVALID);
    assert_eq!(f.severity, depprobe_probes::Severity::Warning);
    assert_eq!(f.facts["rule"], "bucket_order");
    assert_eq!(f.facts["line"], 3);
    assert_eq!(f.facts["breaches"], 1);
    assert_eq!(
        f.message,
        "the scrape breaks OpenMetrics 1.0, which Prometheus ingests anyway (expect.strict fails the probe on it): line 3: the bucket le=1 of `cmi_export_seconds` comes after le=2: buckets go in increasing order of `le` (rule bucket_order)"
    );
    assert_eq!(o.message, f.message);
    assert_eq!(detail(&o, "samples"), 5);

    let o = scrape(&api, "expect:\n  strict: true\n").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message.starts_with(
            "the scrape breaks OpenMetrics 1.0: line 3: the bucket le=1 of `cmi_export_seconds` comes after le=2: buckets go in increasing order of `le` (rule bucket_order); "
        ),
        "{}",
        o.message
    );
    assert!(o.findings.is_empty(), "{o:#?}");

    // A valid exposition is up under strict, without a finding.
    api.server
        .set_responder(openmetrics(UNSORTED_BUCKETS.replace(
            "le=\"2\"} 1\ncmi_export_seconds_bucket{le=\"1\"}",
            "le=\"1\"} 1\ncmi_export_seconds_bucket{le=\"2\"}",
        )));
    let o = scrape(&api, "expect:\n  strict: true\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.findings.is_empty(), "{o:#?}");
}

#[tokio::test]
async fn several_breaches_are_counted_and_the_text_format_has_none() {
    let body = "# TYPE jobs counter\njobs_total{q=\"a\"} -1\njobs_total{q=\"b\"} NaN\n# TYPE jobs counter\n# EOF\n";
    let api = api(openmetrics(body)).await;
    let o = scrape(&api, "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert!(
        o.message.ends_with(
            "line 2: `jobs_total{q=\"a\"}` = -1: a counter's total is a number of 0 or more (rule counter_value); 2 more breaches"
        ),
        "{}",
        o.message
    );
    let o = scrape(&api, "expect:\n  strict: true\n  min_samples: 3\n").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(
        o.message
            .starts_with("2 of 2 expectations failed: the scrape breaks OpenMetrics 1.0: line 2: "),
        "{}",
        o.message
    );
    assert!(
        o.message
            .contains("; the scrape holds 2 samples, fewer than min_samples 3"),
        "{}",
        o.message
    );

    // The same lines as the text format: no OpenMetrics rule applies.
    api.server.set_responder(text(body.replace("# EOF\n", "")));
    let o = scrape(&api, "expect:\n  strict: true\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn what_prometheus_refuses_is_down_with_or_without_strict() {
    // Issue 23's three grammar bugs, and an exemplar on a gauge.
    for (body, says) in [
        (
            "cmi_up 1 \n# EOF\n",
            "line 1, column 9: a space ends the line",
        ),
        (
            "# HELP cmi_up\ncmi_up 1\n# EOF\n",
            "line 1, column 14: expected a space, found the end of the line",
        ),
        (
            "# UNIT cmi_up\ncmi_up 1\n# EOF\n",
            "line 1, column 14: expected a space, found the end of the line",
        ),
        (
            "# TYPE cmi_up gauge\ncmi_up 1 # {trace_id=\"4bf9\"} 1\n# EOF\n",
            "line 2, column 10: `cmi_up` carries an exemplar: only `_total` and `_bucket` samples may (Prometheus refuses the scrape)",
        ),
    ] {
        let api = api(openmetrics(body)).await;
        for extra in ["", "expect:\n  strict: true\n"] {
            let o = scrape(&api, extra).await;
            assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
            assert!(o.message.contains(says), "{body:?}: {}", o.message);
            assert!(!o.message.contains("expectation"), "{}", o.message);
        }
    }
}
