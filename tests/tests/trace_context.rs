//! Trace context: an `http` or `metrics` probe sends its run's W3C `traceparent`
//! (and a configured `tracestate`), so a dependency instrumented with
//! OpenTelemetry shows its spans inside the probe's trace; the span the agent
//! exports for the run carries the same trace and span ids.

use std::sync::{Arc, Mutex};

use depprobe_agent::telemetry::traces;
use depprobe_tests::{Ca, HttpServer, Reply, Scratch, Validity, run_once};
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::RandomIdGenerator;

type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// An HTTPS server that records the trace headers of every request, and the CA
/// line a probe needs to trust it.
async fn recording_server(body: &'static str) -> (HttpServer, Scratch, Seen) {
    let ca = Ca::root("Trace CA").unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let server = HttpServer::builder()
        .tls(&ca.leaf(&["localhost"], Validity::current()).unwrap())
        .respond(move |req| {
            log.lock().unwrap().push((
                req.header("traceparent").map(str::to_owned),
                req.header("tracestate").map(str::to_owned),
            ));
            Reply::ok(body).header("content-type", "text/plain; version=0.0.4")
        })
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new().unwrap();
    scratch.ca(&ca).unwrap();
    (server, scratch, seen)
}

fn ca_line(s: &Scratch) -> String {
    format!("tls:\n  ca_file: {}\n", s.path("Trace_CA.pem").display())
}

#[tokio::test]
async fn the_target_receives_the_exported_spans_trace_and_span_ids() {
    let (server, scratch, seen) = recording_server("ok").await;
    let o = run_once(&format!(
        "name: traced\nkind: http\nurl: {}\ntracestate: vendor=depprobe\n{}",
        server.url("localhost", "/health"),
        ca_line(&scratch)
    ))
    .await
    .unwrap();
    assert_eq!(o.status, depprobe_probes::Status::Up, "{o:#?}");
    let (traceparent, tracestate) = seen.lock().unwrap()[0].clone();
    let traceparent = traceparent.expect("no traceparent header");
    assert_eq!(tracestate.as_deref(), Some("vendor=depprobe"));

    let spans = traces::spans(
        &o,
        &[],
        &InstrumentationScope::builder("test").build(),
        &RandomIdGenerator::default(),
    );
    let root = spans
        .iter()
        .find(|s| s.parent_span_id == SpanId::INVALID)
        .unwrap();
    let expected = format!(
        "00-{}-{}-01",
        root.span_context.trace_id(),
        root.span_context.span_id()
    );
    assert_eq!(traceparent, expected);
    // Every phase span belongs to the same trace.
    assert!(
        spans
            .iter()
            .all(|s| s.span_context.trace_id() == root.span_context.trace_id())
    );
}

#[tokio::test]
async fn each_run_is_its_own_trace() {
    let (server, scratch, seen) = recording_server("up 1\n").await;
    let yaml = format!(
        "name: scraped\nkind: metrics\nurl: {}\n{}",
        server.url("localhost", "/metrics"),
        ca_line(&scratch)
    );
    run_once(&yaml).await.unwrap();
    run_once(&yaml).await.unwrap();
    let seen = seen.lock().unwrap();
    let ids: Vec<&str> = seen.iter().filter_map(|(t, _)| t.as_deref()).collect();
    assert_eq!(ids.len(), 2, "{seen:?}");
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|t| t.len() == 55 && t.starts_with("00-")));
}

#[tokio::test]
async fn propagate_trace_false_sends_no_trace_context() {
    let (server, scratch, seen) = recording_server("ok").await;
    run_once(&format!(
        "name: private\nkind: http\nurl: {}\npropagate_trace: false\ntracestate: a=b\n{}",
        server.url("localhost", "/health"),
        ca_line(&scratch)
    ))
    .await
    .unwrap();
    assert_eq!(seen.lock().unwrap()[0], (None, None));
}

#[tokio::test]
async fn a_malformed_tracestate_is_a_configuration_error() {
    let e = depprobe_tests::harness::config(
        "probes:\n  - name: x\n    kind: http\n    url: https://localhost/\n    tracestate: \"no pairs here\"\n",
    )
    .expect_err("a tracestate without key=value must be refused");
    assert!(e.to_string().contains("tracestate"), "{e}");
}
