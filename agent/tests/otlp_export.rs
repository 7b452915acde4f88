//! `depprobe run` exports a span per run and the metrics of the design over OTLP,
//! gRPC and HTTP/protobuf, to a receiver that decodes the official protobufs; and
//! keeps probing while the collector is down, resuming export when it returns.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::time::Duration;

use common::{World, entry, sample, wait_status};
use depprobe_tests::agent_process::AgentProcess;
use depprobe_tests::otlp::{OtlpReceiver, Received, ReceivedSpan, attr};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

const WAIT: Duration = Duration::from_secs(30);

fn telemetry(endpoint: &str, protocol: &str, extra: &str) -> String {
    format!(
        "{}telemetry:\n  otlp:\n    endpoint: {endpoint}\n    protocol: {protocol}\n    metrics_interval: 500ms\n    timeout: 2s\n{extra}  resource:\n    deployment.environment.name: test\n",
        common::FAST_AGENT
    )
}

/// Starts the agent on the world's probes, exporting to `endpoint` over `protocol`;
/// its config and log are named after `name`.
async fn exporting(
    world: &World,
    name: &str,
    endpoint: &str,
    protocol: &str,
    extra: &str,
) -> AgentProcess {
    let config = world.config(
        &format!("{name}.yaml"),
        &telemetry(endpoint, protocol, extra),
    );
    world.start(&config, &format!("{name}.log")).await
}

/// SIGTERM, then a clean exit (status 0) within the wait: pending metrics are flushed.
async fn stop_cleanly(agent: &mut AgentProcess) {
    agent.signal("TERM").unwrap();
    assert_eq!(
        agent.wait_exit(WAIT).await,
        Some(0),
        "log:\n{}",
        agent.log_text()
    );
}

fn root<'a>(spans: &'a [ReceivedSpan], probe: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| {
        s.span.parent_span_id.is_empty() && s.attr("probe.name").as_deref() == Some(probe)
    })
}

fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.span.parent_span_id == parent.span.span_id)
        .collect()
}

fn has_both_roots(r: &Received) -> bool {
    let spans = r.spans();
    root(&spans, "healthy-api").is_some() && root(&spans, "expired-tls").is_some()
}

fn metric_names(r: &Received) -> Vec<String> {
    r.metrics().into_iter().map(|(m, _)| m.name).collect()
}

/// Every metric the two targets reliably produce, with its unit ("" for none).
/// `probe.findings` is not expected: neither target has findings here (the healthy
/// certificate has 90 days left, the expired one is an error, the leaf never changes).
const EXPECTED_METRICS: &[(&str, &str)] = &[
    ("probe.success", "1"),
    ("probe.duration", "s"),
    ("probe.phase.duration", "s"),
    ("probe.status", "1"),
    ("probe.error.info", "1"),
    ("probe.failures", "{failure}"),
    ("probe.ssl.earliest_cert_expiry", "s"),
    ("probe.tls.cert.time_left", "s"),
    ("probe.tls.cert.not_before", "s"),
    ("probe.tls.cert.lifetime", "s"),
    ("probe.tls.cert.changes", "{change}"),
    ("probe.tls.version_info", "1"),
    ("probe.http.status_code", "1"),
    ("probe.last_run.timestamp", "s"),
    ("probe.runs", "{run}"),
    ("probe.interval", "s"),
    ("depprobe.probe.panics", "{panic}"),
];

/// Waits for, then checks, what any OTLP export must carry for the two targets of
/// the world: a root span `probe <kind>` per target with a child per phase, their
/// key attributes and status, the resource, and every metric of the design with
/// its unit and main series.
async fn assert_spans_and_metrics(world: &World, got: &Received, agent: &AgentProcess) {
    assert!(
        got.wait_for(WAIT, has_both_roots).await,
        "no spans; log:\n{}",
        agent.log_text()
    );
    let spans = got.spans();

    let ok = root(&spans, "healthy-api").unwrap();
    assert_eq!(ok.span.name, "probe http");
    assert_eq!(ok.attr("probe.kind").as_deref(), Some("http"));
    assert_eq!(ok.attr("server.address").as_deref(), Some("localhost"));
    assert_eq!(
        ok.attr("server.port"),
        Some(world.healthy.port().to_string())
    );
    assert_eq!(ok.attr("tls.protocol.version").as_deref(), Some("1.3"));
    assert_eq!(ok.attr("http.response.status_code").as_deref(), Some("200"));
    assert!(
        ok.attr("tls.server.issuer")
            .unwrap()
            .contains("Agent Test CA")
    );
    assert!(ok.attr("tls.server.subject").unwrap().contains("localhost"));
    assert!(ok.attr("tls.server.not_after").unwrap().ends_with('Z'));
    assert_eq!(ok.attr("tls.server.hash.sha256").unwrap().len(), 64);
    assert!(ok.attr("error.type").is_none());
    assert_ne!(
        ok.span.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    let phases: Vec<String> = children(&spans, ok)
        .iter()
        .map(|s| s.span.name.clone())
        .collect();
    // The request phase is the HTTP client span, named and attributed per semconv.
    assert_eq!(phases, vec!["dns", "connect", "tls", "GET"]);
    let call = children(&spans, ok)
        .into_iter()
        .find(|c| c.span.name == "GET")
        .unwrap();
    assert_eq!(call.span.kind, SpanKind::Client as i32);
    assert_eq!(call.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        call.attr("url.full"),
        Some(format!("https://localhost:{}/health", world.healthy.port()))
    );
    assert_eq!(
        call.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(call.attr("server.address").as_deref(), Some("localhost"));
    for c in children(&spans, ok) {
        assert_eq!(c.span.trace_id, ok.span.trace_id);
        assert!(c.span.start_time_unix_nano >= ok.span.start_time_unix_nano);
        assert!(c.span.end_time_unix_nano <= ok.span.end_time_unix_nano);
    }

    let bad = root(&spans, "expired-tls").unwrap();
    assert_eq!(bad.span.name, "probe tls");
    assert_eq!(bad.attr("probe.kind").as_deref(), Some("tls"));
    assert_eq!(
        bad.attr("server.port"),
        Some(world.expired.port().to_string())
    );
    assert_eq!(bad.attr("error.type").as_deref(), Some("tls_cert_expired"));
    let status = bad.span.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert!(status.message.contains("expired"), "{}", status.message);
    assert!(
        bad.attr("tls.server.not_after").is_some(),
        "certificate facts are kept on failure"
    );
    let phases: Vec<String> = children(&spans, bad)
        .iter()
        .map(|s| s.span.name.clone())
        .collect();
    assert_eq!(phases, vec!["dns", "connect", "tls"]);
    let tls_child = children(&spans, bad)
        .into_iter()
        .find(|c| c.span.name == "tls")
        .unwrap();
    assert_eq!(tls_child.span.trace_id, bad.span.trace_id);
    assert_eq!(
        tls_child.attr("error.type").as_deref(),
        Some("tls_cert_expired")
    );

    let resource = &ok.resource;
    let res = |k: &str| {
        resource
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(res("service.name").as_deref(), Some("depprobe"));
    assert!(res("service.version").is_some());
    assert_eq!(res("service.instance.id").map(|v| v.len()), Some(36));
    assert!(res("host.name").is_some());
    assert_eq!(res("deployment.environment.name").as_deref(), Some("test"));
    let id = res("service.instance.id").unwrap();
    assert_eq!(&id[14..15], "4", "a version-4 UUID: {id}");

    let all_present = |r: &Received| {
        let names = metric_names(r);
        EXPECTED_METRICS
            .iter()
            .all(|(m, _)| names.iter().any(|n| n == m))
    };
    assert!(
        got.wait_for(WAIT, all_present).await,
        "metrics missing: {:?}; log:\n{}",
        metric_names(got),
        agent.log_text()
    );
    let metrics = got.metrics();
    let find = |name: &str| {
        metrics
            .iter()
            .rev()
            .find(|(m, _)| m.name == name)
            .map(|(m, _)| m.clone())
            .unwrap()
    };
    for (name, unit) in EXPECTED_METRICS {
        assert_eq!(find(name).unit, *unit, "unit of {name}");
    }

    let success = find("probe.success");
    let Some(Data::Gauge(g)) = &success.data else {
        panic!("probe.success is not a gauge: {success:?}")
    };
    let value_of = |probe: &str| {
        g.data_points
            .iter()
            .find(|p| attr(&p.attributes, "probe.name").as_deref() == Some(probe))
            .map(|p| format!("{:?}", p.value))
            .unwrap()
    };
    assert!(
        value_of("healthy-api").contains("AsInt(1)"),
        "{}",
        value_of("healthy-api")
    );
    assert!(
        value_of("expired-tls").contains("AsInt(0)"),
        "{}",
        value_of("expired-tls")
    );
    let p = &g.data_points[0];
    for key in ["probe.name", "probe.kind", "server.address", "server.port"] {
        assert!(
            attr(&p.attributes, key).is_some(),
            "{key} missing on probe.success"
        );
    }

    let phase = find("probe.phase.duration");
    let Some(Data::Gauge(h)) = &phase.data else {
        panic!("probe.phase.duration is not a gauge")
    };
    let phases: std::collections::BTreeSet<String> = h
        .data_points
        .iter()
        .filter_map(|p| attr(&p.attributes, "probe.phase"))
        .collect();
    assert!(
        phases.contains("tls") && phases.contains("request"),
        "{phases:?}"
    );

    // Counters are monotonic sums carrying the series that names them.
    for (counter, key, value) in [
        ("probe.failures", "error.type", "tls_cert_expired"),
        ("probe.tls.cert.changes", "probe.name", "healthy-api"),
    ] {
        let Some(Data::Sum(sum)) = &find(counter).data else {
            panic!("{counter} is not a sum")
        };
        assert!(sum.is_monotonic, "{counter}");
        assert!(
            sum.data_points
                .iter()
                .any(|p| attr(&p.attributes, key).as_deref() == Some(value)),
            "{counter}: no point with {key}={value}: {sum:?}"
        );
    }

    let Some(Data::Gauge(left)) = &find("probe.tls.cert.time_left").data else {
        panic!("probe.tls.cert.time_left is not a gauge")
    };
    assert!(left.data_points.iter().any(|p| {
        attr(&p.attributes, "probe.tls.cert.subject").is_some_and(|s| s.contains("localhost"))
    }));
}

#[tokio::test]
async fn grpc_export_carries_spans_with_phases_and_the_metrics_of_the_design() {
    let world = World::new().await;
    let receiver = OtlpReceiver::start().await.unwrap();
    let agent = exporting(&world, "grpc", &receiver.grpc_endpoint(), "grpc", "").await;
    assert_spans_and_metrics(&world, &receiver.received(), &agent).await;
}

#[tokio::test]
async fn http_protobuf_export_with_gzip_and_headers() {
    let world = World::new().await;
    let receiver = OtlpReceiver::start().await.unwrap();
    receiver.require_header("x-tenant", "team-a");
    let extra = "    compression: gzip\n    headers:\n      x-tenant: team-a\n";
    let agent = exporting(
        &world,
        "http",
        &receiver.http_endpoint(),
        "http/protobuf",
        extra,
    )
    .await;
    let got = receiver.received();
    assert_spans_and_metrics(&world, &got, &agent).await;
    let headers = got.headers();
    assert!(!headers.is_empty());
    assert!(headers.iter().all(|h| {
        h.iter()
            .any(|(k, v)| k == "content-encoding" && v == "gzip")
    }));
    assert!(
        headers
            .iter()
            .all(|h| h.iter().any(|(k, v)| k == "x-tenant" && v == "team-a"))
    );
}

#[tokio::test]
async fn collector_outage_neither_stops_probing_nor_grows_memory_and_export_resumes() {
    let world = World::new().await;
    let receiver = OtlpReceiver::start().await.unwrap();
    let agent = exporting(&world, "outage", &receiver.grpc_endpoint(), "grpc", "").await;
    let got = receiver.received();
    assert!(
        got.wait_for(WAIT, has_both_roots).await,
        "no spans; log:\n{}",
        agent.log_text()
    );

    let (grpc, http) = receiver.stop().await;
    let before = agent.rss_kib().unwrap();
    let started = |s: &serde_json::Value| {
        entry(s, "healthy-api").map(|e| e["started_at"].as_str().unwrap_or("").to_owned())
    };
    let first = started(&agent.status().await.unwrap()).unwrap();
    // Probing goes on: the healthy target is probed again and again while export
    // fails, and what cannot be exported is dropped and counted.
    wait_status(&agent, WAIT, |s| started(s).is_some_and(|t| t > first)).await;
    let dropped = loop {
        let (_, text) = agent.get("/metrics").await.unwrap();
        let dropped = sample(
            &text,
            "depprobe_telemetry_dropped_total",
            &[("depprobe_telemetry_signal", "traces")],
        )
        .unwrap_or(0.0);
        let failures = sample(
            &text,
            "depprobe_telemetry_export_failures_total",
            &[("depprobe_telemetry_signal", "traces")],
        )
        .unwrap_or(0.0);
        if dropped >= 100.0 && failures >= 2.0 {
            break dropped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = agent.rss_kib().unwrap();
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB while {dropped} spans were dropped"
    );
    let log = agent.log_text();
    let failing_lines = log
        .lines()
        .filter(|l| l.contains("OTLP traces export") && l.contains("failing"))
        .count();
    assert_eq!(
        failing_lines, 1,
        "one log line per failing exporter per minute:\n{log}"
    );

    let seen = got.requests().0;
    let _receiver = OtlpReceiver::restart(grpc, http, got.clone())
        .await
        .unwrap();
    assert!(
        got.wait_for(WAIT, |r| r.requests().0 > seen).await,
        "export did not resume; log:\n{}",
        agent.log_text()
    );
    common::wait_for_log_line(&agent, &["OTLP traces export", "resumed"]).await;
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_flushes_pending_metrics() {
    let world = World::new().await;
    let receiver = OtlpReceiver::start().await.unwrap();
    // Metrics are exported hourly: any that arrive came from the flush at exit.
    let tele = format!(
        "{}telemetry:\n  otlp:\n    endpoint: {}\n    metrics_interval: 1h\n",
        common::FAST_AGENT,
        receiver.grpc_endpoint()
    );
    let config = world.config("flush.yaml", &tele);
    let mut agent = world.start(&config, "flush.log").await;
    wait_status(&agent, WAIT, |s| {
        entry(s, "healthy-api").is_some() && entry(s, "expired-tls").is_some()
    })
    .await;
    assert_eq!(receiver.received().requests().1, 0);
    stop_cleanly(&mut agent).await;
    assert!(
        metric_names(&receiver.received())
            .iter()
            .any(|n| n == "probe.success")
    );
    assert!(agent.log_text().contains("SIGTERM: stopping"));
}

#[tokio::test]
async fn http_protobuf_export_over_tls_trusts_the_configured_ca() {
    let world = World::new().await;
    let collector_ca = depprobe_tests::Ca::root("Collector CA").unwrap();
    let identity = collector_ca
        .leaf(&["localhost"], depprobe_tests::Validity::current())
        .unwrap();
    let receiver = OtlpReceiver::start_tls(&identity).await.unwrap();
    let ca_file = world.scratch.ca(&collector_ca).unwrap();
    let extra = format!("    ca_file: {}\n", ca_file.display());
    let agent = exporting(
        &world,
        "tls",
        &receiver.https_endpoint(),
        "http/protobuf",
        &extra,
    )
    .await;
    let got = receiver.received();
    assert!(
        got.wait_for(WAIT, has_both_roots).await,
        "no spans over TLS; log:\n{}",
        agent.log_text()
    );

    // Without the CA, the collector's certificate is not trusted: export fails, is
    // logged once, and probing goes on.
    let receiver2 = OtlpReceiver::start_tls(&identity).await.unwrap();
    let agent = exporting(
        &world,
        "untrusted",
        &receiver2.https_endpoint(),
        "http/protobuf",
        "",
    )
    .await;
    common::wait_for_log_line(&agent, &["OTLP traces export", "failing"]).await;
    assert_eq!(receiver2.received().requests(), (0, 0));
    wait_status(&agent, WAIT, |s| entry(s, "healthy-api").is_some()).await;
}

#[tokio::test]
async fn standard_otel_variables_configure_export_and_resource() {
    let world = World::new().await;
    let receiver = OtlpReceiver::start().await.unwrap();
    // No telemetry section at all: the standard variables say where and what.
    let config = world.config("env.yaml", common::FAST_AGENT);
    let agent = depprobe_tests::agent_process::AgentProcess::start(
        &common::bin(),
        &config,
        &world.log("env.log"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=tenant-7"),
            ("OTEL_SERVICE_NAME", "edge-prober"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "cloud.region=eu-west-1,cloud.availability_zone=eu-west-1a",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ],
    )
    .await
    .unwrap();
    let got = receiver.received();
    assert!(
        got.wait_for(WAIT, has_both_roots).await,
        "no spans; log:\n{}",
        agent.log_text()
    );
    let span = got.spans().into_iter().next().unwrap();
    let res = |k: &str| {
        span.resource
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(res("service.name").as_deref(), Some("edge-prober"));
    assert_eq!(res("cloud.region").as_deref(), Some("eu-west-1"));
    assert_eq!(
        res("cloud.availability_zone").as_deref(),
        Some("eu-west-1a")
    );
    assert!(got.headers().iter().any(|h| {
        h.iter()
            .any(|(k, v)| k == "x-scope-orgid" && v == "tenant-7")
    }));
    assert!(
        got.wait_for(WAIT, |r| metric_names(r)
            .iter()
            .any(|n| n == "probe.success"))
            .await
    );
}

#[tokio::test]
async fn many_targets_are_exported_in_requests_of_at_most_500_targets() {
    const TARGETS: usize = 1_100;
    let world = World::new().await;
    let receiver = OtlpReceiver::start().await.unwrap();
    // Local `credential` probes (no network), every 2 s; metrics are exported hourly,
    // so the requests that arrive are the single flush at exit.
    let mut text = format!(
        "agent:\n  interval: 2s\n  listen: 127.0.0.1:0\ntelemetry:\n  otlp:\n    endpoint: {}\n    metrics_interval: 1h\nprobes:\n",
        receiver.grpc_endpoint()
    );
    for i in 0..TARGETS {
        text.push_str(&format!(
            "  - {{ name: c-{i}, kind: credential, env: PATH }}\n"
        ));
    }
    let config = world.scratch.write("many.yaml", &text).unwrap();
    let mut agent = world.start(&config, "many.log").await;
    wait_status(&agent, WAIT, |s| {
        s.as_array().is_some_and(|a| a.len() == TARGETS)
    })
    .await;
    stop_cleanly(&mut agent).await;

    // Each request carries its own part of the targets: together all of them, once.
    let mut seen = std::collections::BTreeSet::new();
    let requests = receiver.received().metric_requests();
    let mut with_targets = 0;
    for req in &requests {
        let names: std::collections::BTreeSet<String> = req
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .filter(|m| m.name == "probe.success")
            .flat_map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.clone(),
                _ => Vec::new(),
            })
            .filter_map(|p| attr(&p.attributes, "probe.name"))
            .collect();
        if names.is_empty() {
            continue; // the counters of a part
        }
        with_targets += 1;
        assert!(
            (300..=500).contains(&names.len()),
            "a request with {} targets",
            names.len()
        );
        for n in names {
            assert!(seen.insert(n.clone()), "{n} exported twice");
        }
    }
    assert_eq!(with_targets, 3, "1,100 targets in parts of at most 500");
    assert_eq!(seen.len(), TARGETS);
    // The agent's own series are exported once, with the first part.
    let reloads = requests
        .iter()
        .filter(|req| {
            req.resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .any(|m| m.name == "depprobe.config.last_reload_success")
        })
        .count();
    assert_eq!(reloads, 1);
}
