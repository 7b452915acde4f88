//! `kind: otlp` against the tests' OTLP receiver, over gRPC and HTTP/protobuf:
//! accepted, refused for a missing header, refused as a busy or authenticating
//! collector refuses, receiver down, partial success.

use depprobe_probes::kinds::otlp;
use depprobe_probes::{ErrorType, Outcome, Phase, Status};
use depprobe_tests::otlp::{OtlpReceiver, Refusal};
use depprobe_tests::run_once;

async fn probe(endpoint: &str, protocol: &str, extra: &str) -> Outcome {
    run_once(&format!(
        "name: collector-ingest\nkind: otlp\nendpoint: {endpoint}\nprotocol: {protocol}\ntimeout: 5s\n{extra}"
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn grpc_export_is_accepted_and_marked_synthetic() {
    let r = OtlpReceiver::start().await.unwrap();
    let o = probe(&r.grpc_endpoint(), "grpc", "").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.message.contains("OTLP/gRPC"), "{}", o.message);
    let metrics = r.received().metrics();
    assert_eq!(metrics.len(), 1);
    let (m, resource) = &metrics[0];
    assert_eq!(m.name, "depprobe.synthetic.heartbeat");
    assert!(resource.contains(&("service.name".into(), "depprobe-synthetic".into())));
    assert!(resource.contains(&("depprobe.synthetic".into(), "true".into())));
    assert!(resource.contains(&("depprobe.probe.name".into(), "collector-ingest".into())));
    for phase in [Phase::Connect, Phase::Request] {
        assert!(o.timings.get(phase).is_some(), "{phase}");
    }
}

#[tokio::test]
async fn http_protobuf_export_of_a_span_is_accepted() {
    let r = OtlpReceiver::start().await.unwrap();
    let o = probe(&r.http_endpoint(), "http/protobuf", "signal: traces\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.http.as_ref().unwrap().status_code, 200);
    let spans = r.received().spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span.name, "depprobe synthetic probe");
}

#[tokio::test]
async fn a_missing_required_header_is_auth_rejected_over_both_protocols() {
    let r = OtlpReceiver::start().await.unwrap();
    r.require_header("x-api-key", "k-123");
    let o = probe(&r.grpc_endpoint(), "grpc", "").await;
    assert_eq!(o.error_type, Some(ErrorType::AuthRejected), "{o:#?}");
    assert_eq!(o.phase, Some(Phase::Request));
    assert!(
        o.message.contains("gRPC UNAUTHENTICATED (16)"),
        "{}",
        o.message
    );
    let o = probe(&r.http_endpoint(), "http/protobuf", "").await;
    assert_eq!(o.error_type, Some(ErrorType::AuthRejected), "{o:#?}");
    assert_eq!(o.http.as_ref().unwrap().status_code, 401);

    let headers = "headers:\n  x-api-key: k-123\n";
    assert_eq!(
        probe(&r.grpc_endpoint(), "grpc", headers).await.status,
        Status::Up
    );
    assert_eq!(
        probe(&r.http_endpoint(), "http/protobuf", headers)
            .await
            .status,
        Status::Up
    );
    assert!(
        r.received()
            .headers()
            .iter()
            .any(|h| h.iter().any(|(k, v)| k == "x-api-key" && v == "k-123"))
    );
}

#[tokio::test]
async fn every_refusal_is_named_with_its_code_over_both_protocols() {
    let r = OtlpReceiver::start().await.unwrap();
    // (refusal, class, what the gRPC message names, the HTTP status)
    let cases = [
        (
            Refusal::Unavailable,
            ErrorType::HttpStatus,
            "gRPC UNAVAILABLE (14)",
            503,
        ),
        (
            Refusal::ResourceExhausted,
            ErrorType::HttpStatus,
            "gRPC RESOURCE_EXHAUSTED (8)",
            429,
        ),
        (
            Refusal::PermissionDenied,
            ErrorType::AuthRejected,
            "gRPC PERMISSION_DENIED (7)",
            403,
        ),
        (
            Refusal::TokenRejected,
            ErrorType::JwtRejected,
            "gRPC UNAUTHENTICATED (16)",
            401,
        ),
    ];
    for (refusal, class, grpc_text, http_status) in cases {
        r.refuse(Some(refusal));
        let o = probe(&r.grpc_endpoint(), "grpc", "").await;
        assert_eq!(o.status, Status::Down, "{refusal:?} over gRPC: {o:#?}");
        // No bearer token was sent: over gRPC, UNAUTHENTICATED is then
        // auth_rejected, whatever its words (issue 23, item 4).
        let grpc_class = if class == ErrorType::JwtRejected {
            ErrorType::AuthRejected
        } else {
            class
        };
        assert_eq!(
            o.error_type,
            Some(grpc_class),
            "{refusal:?} over gRPC: {o:#?}"
        );
        assert_eq!(o.phase, Some(Phase::Request), "{refusal:?} over gRPC");
        assert!(o.message.contains(grpc_text), "{refusal:?}: {}", o.message);

        let o = probe(&r.http_endpoint(), "http/protobuf", "").await;
        assert_eq!(o.status, Status::Down, "{refusal:?} over HTTP: {o:#?}");
        assert_eq!(o.error_type, Some(class), "{refusal:?} over HTTP: {o:#?}");
        assert_eq!(o.phase, Some(Phase::Request), "{refusal:?} over HTTP");
        assert_eq!(o.http.as_ref().unwrap().status_code, http_status);
        assert!(
            o.message.contains(&format!("HTTP {http_status}")),
            "{refusal:?}: {}",
            o.message
        );
    }
    // The collector recovers: the probe is up again.
    r.refuse(None);
    assert_eq!(
        probe(&r.grpc_endpoint(), "grpc", "").await.status,
        Status::Up
    );
}

#[tokio::test]
async fn a_stopped_receiver_is_connect_refused() {
    let r = OtlpReceiver::start().await.unwrap();
    let (grpc, http) = (r.grpc_endpoint(), r.http_endpoint());
    r.stop().await;
    for (endpoint, protocol) in [(grpc, "grpc"), (http, "http/protobuf")] {
        let o = probe(&endpoint, protocol, "").await;
        assert_eq!(
            o.error_type,
            Some(ErrorType::ConnectRefused),
            "{protocol}: {o:#?}"
        );
        assert_eq!(o.phase, Some(Phase::Connect));
    }
}

#[tokio::test]
async fn partial_success_is_degraded_with_a_finding() {
    let r = OtlpReceiver::start().await.unwrap();
    r.answer_partial_success(1, "metric name not allowed by policy");
    let o = probe(&r.grpc_endpoint(), "grpc", "").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, otlp::PARTIAL_SUCCESS);
    assert!(
        o.message
            .contains("rejected 1 data point(s): metric name not allowed by policy"),
        "{}",
        o.message
    );
    let o = probe(&r.http_endpoint(), "http/protobuf", "signal: traces\n").await;
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert!(o.message.contains("rejected 1 span(s)"), "{}", o.message);
}
