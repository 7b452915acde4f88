//! What an `otlp` probe sends: one gauge point or one span, marked synthetic
//! (`service.name=depprobe-synthetic`, `depprobe.synthetic=true`) so that a collector
//! can recognise and drop it.

use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};

/// The `service.name` of what the probe sends.
pub const SYNTHETIC_SERVICE: &str = "depprobe-synthetic";
/// The resource attribute that marks it (true).
pub const SYNTHETIC_ATTRIBUTE: &str = "depprobe.synthetic";
/// The name of the gauge it sends.
pub const HEARTBEAT_METRIC: &str = "depprobe.synthetic.heartbeat";
/// The name of the span it sends.
pub const SPAN_NAME: &str = "depprobe synthetic probe";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn resource(probe: &str) -> Resource {
    let mut attributes = vec![
        kv("service.name", SYNTHETIC_SERVICE),
        kv("depprobe.probe.name", probe),
    ];
    attributes.push(KeyValue {
        key: SYNTHETIC_ATTRIBUTE.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(true)),
        }),
        ..Default::default()
    });
    Resource {
        attributes,
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "depprobe".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One gauge point, marked synthetic.
pub fn metrics_request(probe: &str, now: SystemTime) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(probe)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: vec![Metric {
                    name: HEARTBEAT_METRIC.to_owned(),
                    description: "A synthetic point sent by depprobe to test an OTLP ingest path; safe to drop.".to_owned(),
                    unit: "1".to_owned(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: unix_nanos(now),
                            value: Some(number_data_point::Value::AsInt(1)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One span, marked synthetic.
pub fn traces_request(probe: &str, now: SystemTime) -> ExportTraceServiceRequest {
    let nanos = unix_nanos(now);
    let mut trace_id = nanos.to_be_bytes().to_vec();
    trace_id.extend_from_slice(&(nanos ^ 0x5eed_5eed_5eed_5eed).to_be_bytes());
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(probe)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: vec![Span {
                    trace_id,
                    span_id: nanos.to_le_bytes().to_vec(),
                    name: SPAN_NAME.to_owned(),
                    kind: span::SpanKind::Internal as i32,
                    start_time_unix_nano: nanos,
                    end_time_unix_nano: nanos,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
