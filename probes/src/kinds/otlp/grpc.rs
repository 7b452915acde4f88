//! OTLP over gRPC on a connection the probe already opened (and took through TLS);
//! the channel and the naming of a refused export are the shared
//! [`crate::transport::grpc`].

use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use super::spec::OtlpSignal;

use super::Accepted;
use super::payload::{metrics_request, traces_request};
use crate::run::ProbeError;
use crate::transport::Io;
use crate::transport::grpc::{GrpcFailure, channel_over};

pub(super) async fn grpc_export<IO: Io + 'static>(
    io: IO,
    authority: &str,
    signal: OtlpSignal,
    probe: &str,
    now: SystemTime,
    metadata: tonic::metadata::MetadataMap,
) -> Result<Result<Accepted, GrpcFailure>, ProbeError> {
    let channel = match channel_over(io, authority).await? {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let accepted = match signal {
        OtlpSignal::Metrics => {
            let mut req = tonic::Request::new(metrics_request(probe, now));
            *req.metadata_mut() = metadata;
            MetricsServiceClient::new(channel)
                .export(req)
                .await
                .map(|r| {
                    let p = r.into_inner().partial_success.unwrap_or_default();
                    Accepted {
                        rejected: p.rejected_data_points,
                        message: p.error_message,
                    }
                })
        }
        OtlpSignal::Traces => {
            let mut req = tonic::Request::new(traces_request(probe, now));
            *req.metadata_mut() = metadata;
            TraceServiceClient::new(channel).export(req).await.map(|r| {
                let p = r.into_inner().partial_success.unwrap_or_default();
                Accepted {
                    rejected: p.rejected_spans,
                    message: p.error_message,
                }
            })
        }
    };
    Ok(accepted.map_err(GrpcFailure::Status))
}
