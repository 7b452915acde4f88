//! OTLP exporters (gRPC or HTTP/protobuf) from the configuration and the standard
//! `OTEL_EXPORTER_OTLP_*` variables.
//!
//! A key in the configuration file wins over the variable; the variable wins over
//! the default. Signal-specific variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, ...)
//! win over the general ones.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use depprobe_config::{OtlpCompression, OtlpConfig, OtlpProtocol, TelemetryConfig};
use opentelemetry_otlp::{
    Compression, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Builds an OTLP exporter of type `$exporter` for `$signal` from the settings: the
/// span and metric builders are distinct types with the same methods.
macro_rules! build_exporter {
    ($settings:expr, $exporter:path, $signal:literal) => {{
        let s = $settings;
        let endpoint = s.endpoint_for($signal);
        Ok(match s.protocol {
            OtlpProtocol::Grpc => {
                let mut b = <$exporter>::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .with_timeout(s.timeout)
                    .with_protocol(Protocol::Grpc)
                    .with_metadata(s.tonic_metadata()?);
                if let Some(c) = s.compression() {
                    b = b.with_compression(c);
                }
                if let Some(tls) = s.tonic_tls(&endpoint)? {
                    b = b.with_tls_config(tls);
                }
                b.build()?
            }
            OtlpProtocol::HttpProtobuf => {
                let mut b = <$exporter>::builder()
                    .with_http()
                    .with_endpoint(endpoint)
                    .with_timeout(s.timeout)
                    .with_protocol(Protocol::HttpBinary)
                    .with_headers(s.http_headers())
                    .with_http_client(s.http_client()?);
                if let Some(c) = s.compression() {
                    b = b.with_compression(c);
                }
                b.build()?
            }
        })
    }};
}

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The exporter refused its configuration.
    #[error("OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A header is not valid.
    #[error("OTLP header `{0}` is not a valid header name")]
    Header(String),
    /// The CA file cannot be read.
    #[error("OTLP CA file {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The protocol is not one we speak.
    #[error("OTLP protocol `{0}` is not supported; use grpc or http/protobuf")]
    Protocol(String),
}

/// Everything an exporter needs, resolved.
#[derive(Clone)]
pub struct OtlpSettings {
    /// Base endpoint (gRPC), or base URL (HTTP; `/v1/traces` and `/v1/metrics` are added).
    pub endpoint: String,
    /// Traces endpoint override.
    pub traces_endpoint: Option<String>,
    /// Metrics endpoint override.
    pub metrics_endpoint: Option<String>,
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// Headers (values are secrets).
    pub headers: Vec<(String, String)>,
    /// CA certificates for an `https` endpoint.
    pub ca_file: Option<PathBuf>,
    /// gzip or none.
    pub gzip: bool,
    /// Deadline of one export.
    pub timeout: Duration,
    /// Metrics export period.
    pub metrics_interval: Duration,
}

impl std::fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSettings")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses `k=v,k2=v2` (values percent-decoded loosely: `%20` and `%2C`).
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = v
                .trim()
                .replace("%20", " ")
                .replace("%2C", ",")
                .replace("%3D", "=");
            Some((k.trim().to_ascii_lowercase(), v))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The OTLP settings, or `None` when OTLP export is off (no endpoint anywhere).
pub fn settings(cfg: &TelemetryConfig) -> Result<Option<OtlpSettings>, OtlpError> {
    let file = cfg.otlp.clone();
    let endpoint = file
        .as_ref()
        .and_then(|o| o.endpoint.clone())
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let traces_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let metrics_endpoint = env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
    let Some(endpoint) = endpoint
        .or_else(|| traces_endpoint.clone())
        .or_else(|| metrics_endpoint.clone())
    else {
        return Ok(None);
    };
    let defaults = OtlpConfig::default();
    let o = file.unwrap_or_default();
    let protocol = if cfg
        .otlp
        .as_ref()
        .is_some_and(|c| c.protocol != defaults.protocol)
    {
        o.protocol
    } else {
        match env("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            None | Some("grpc") => o.protocol,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some(other) => return Err(OtlpError::Protocol(other.to_owned())),
        }
    };
    let mut headers: Vec<(String, String)> = env("OTEL_EXPORTER_OTLP_HEADERS")
        .map(|h| parse_headers(&h))
        .unwrap_or_default();
    for (k, v) in &o.headers {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(k));
        headers.push((k.to_ascii_lowercase(), v.expose().to_owned()));
    }
    let gzip = match o.compression {
        OtlpCompression::Gzip => true,
        OtlpCompression::None => env("OTEL_EXPORTER_OTLP_COMPRESSION").as_deref() == Some("gzip"),
    };
    let timeout = if o.timeout != defaults.timeout {
        o.timeout.0
    } else {
        env("OTEL_EXPORTER_OTLP_TIMEOUT")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or(o.timeout.0, Duration::from_millis)
    };
    let ca_file = o
        .ca_file
        .clone()
        .or_else(|| env("OTEL_EXPORTER_OTLP_CERTIFICATE").map(PathBuf::from));
    let metrics_interval = if o.metrics_interval != defaults.metrics_interval {
        o.metrics_interval.0
    } else {
        env("OTEL_METRIC_EXPORT_INTERVAL")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or(o.metrics_interval.0, Duration::from_millis)
    };
    Ok(Some(OtlpSettings {
        endpoint,
        traces_endpoint,
        metrics_endpoint,
        protocol,
        headers,
        ca_file,
        gzip,
        timeout,
        metrics_interval,
    }))
}

impl OtlpSettings {
    /// The endpoint of one signal: the override, or the base (with `/v1/<signal>`
    /// added for HTTP when the base has no path).
    pub fn endpoint_for(&self, signal: &str) -> String {
        let specific = match signal {
            "traces" => self.traces_endpoint.clone(),
            _ => self.metrics_endpoint.clone(),
        };
        if let Some(e) = specific {
            return e;
        }
        match self.protocol {
            OtlpProtocol::Grpc => self.endpoint.clone(),
            OtlpProtocol::HttpProtobuf => {
                let base = self.endpoint.trim_end_matches('/');
                let has_path = base.splitn(4, '/').nth(3).is_some_and(|p| !p.is_empty());
                if has_path {
                    base.to_owned()
                } else {
                    format!("{base}/v1/{signal}")
                }
            }
        }
    }

    /// The endpoint without credentials, for logs.
    pub fn display_endpoint(&self, signal: &str) -> String {
        let e = self.endpoint_for(signal);
        match url::Url::parse(&e) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u.to_string()
            }
            Err(_) => e,
        }
    }

    fn ca_pem(&self) -> Result<Option<Vec<u8>>, OtlpError> {
        match &self.ca_file {
            None => Ok(None),
            Some(path) => std::fs::read(path).map(Some).map_err(|e| OtlpError::Ca {
                path: path.clone(),
                message: e.to_string(),
            }),
        }
    }

    fn tonic_metadata(&self) -> Result<tonic::metadata::MetadataMap, OtlpError> {
        let mut map = tonic::metadata::MetadataMap::new();
        for (k, v) in &self.headers {
            let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                .map_err(|_| OtlpError::Header(k.clone()))?;
            let value = v.parse().map_err(|_| OtlpError::Header(k.clone()))?;
            map.insert(key, value);
        }
        Ok(map)
    }

    fn tonic_tls(
        &self,
        endpoint: &str,
    ) -> Result<Option<tonic::transport::ClientTlsConfig>, OtlpError> {
        if !endpoint.starts_with("https://") {
            return Ok(None);
        }
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(pem) = self.ca_pem()? {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        Ok(Some(tls))
    }

    fn http_client(
        &self,
    ) -> Result<
        opentelemetry_http::hyper::HyperClient<
            hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        >,
        OtlpError,
    > {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(pem) = self.ca_pem()? {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            roots.add_parsable_certificates(certs);
        }
        let provider = depprobe_probes::transport::tls::provider();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OtlpError::Ca {
                path: self.ca_file.clone().unwrap_or_default(),
                message: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(opentelemetry_http::hyper::HyperClient::new(
            connector,
            self.timeout,
            None,
        ))
    }

    fn http_headers(&self) -> HashMap<String, String> {
        self.headers.iter().cloned().collect()
    }

    fn compression(&self) -> Option<Compression> {
        self.gzip.then_some(Compression::Gzip)
    }

    /// The span exporter.
    pub fn span_exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
        build_exporter!(self, opentelemetry_otlp::SpanExporter, "traces")
    }

    /// The metric exporter.
    pub fn metric_exporter(&self) -> Result<opentelemetry_otlp::MetricExporter, OtlpError> {
        build_exporter!(self, opentelemetry_otlp::MetricExporter, "metrics")
    }

    /// The header values, to scrub from anything printed.
    pub fn secrets(&self) -> Arc<[String]> {
        self.headers.iter().map(|(_, v)| v.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lists_parse() {
        assert_eq!(
            parse_headers("Authorization=Bearer%20abc, x-tenant = t1"),
            vec![
                ("authorization".into(), "Bearer abc".into()),
                ("x-tenant".into(), "t1".into())
            ]
        );
    }

    #[test]
    fn http_endpoints_get_signal_paths_only_when_bare() {
        let s = OtlpSettings {
            endpoint: "http://collector:4318".into(),
            traces_endpoint: None,
            metrics_endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            headers: vec![],
            ca_file: None,
            gzip: false,
            timeout: Duration::from_secs(1),
            metrics_interval: Duration::from_secs(1),
        };
        assert_eq!(s.endpoint_for("traces"), "http://collector:4318/v1/traces");
        let s = OtlpSettings {
            endpoint: "http://collector:4318/custom/v1/metrics".into(),
            ..s
        };
        assert_eq!(
            s.endpoint_for("metrics"),
            "http://collector:4318/custom/v1/metrics"
        );
    }
}
