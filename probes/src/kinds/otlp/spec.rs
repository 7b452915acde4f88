//! `kind: otlp`: the ingest path of an OTLP receiver (an OpenTelemetry Collector or
//! a vendor's endpoint): one small export, over gRPC or HTTP/protobuf.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::http::{BasicAuth, HttpCredentials, check_http_url};
use depprobe_config::{Check, Checked};
use depprobe_config::{OtlpProtocol, TlsSpec};
use depprobe_config::Secret;

/// Settings of an `otlp` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpProbeSpec {
    /// The receiver: `http(s)://host:4317` for gRPC, `http(s)://host:4318` for
    /// HTTP (`/v1/metrics` or `/v1/traces` is added to a URL without a path).
    pub endpoint: String,
    /// `grpc` or `http/protobuf`.
    #[serde(default = "default_protocol")]
    pub protocol: OtlpProtocol,
    /// What to send: one gauge point (`metrics`) or one span (`traces`).
    #[serde(default)]
    pub signal: OtlpSignal,
    /// Headers (gRPC metadata); values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Bearer token sent as `authorization: Bearer ...`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token, read on every run.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings (for `https://`).
    #[serde(default)]
    pub tls: TlsSpec,
}

fn default_protocol() -> OtlpProtocol {
    OtlpProtocol::Grpc
}

/// What an `otlp` probe sends.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpSignal {
    /// One gauge point, `depprobe.synthetic.heartbeat`.
    #[default]
    Metrics,
    /// One span, `depprobe synthetic probe`.
    Traces,
}

impl OtlpProbeSpec {
    /// The headers and credentials sent with the export.
    pub fn credentials(&self) -> HttpCredentials<'_> {
        HttpCredentials {
            headers: &self.headers,
            bearer_token: self.bearer_token.as_ref(),
            bearer_token_file: self.bearer_token_file.as_deref(),
            basic_auth: self.basic_auth.as_ref(),
        }
    }
}

impl Checked for OtlpProbeSpec {
    fn check(&self, check: &mut Check<'_>) {
        check_http_url(check, "endpoint", &self.endpoint);
        self.credentials().check(check);
        check_metadata_keys(check, &self.headers);
        check.tls(&self.tls);
    }
}

/// Reports every header name that gRPC metadata cannot carry (shared with `grpc`).
pub(crate) fn check_metadata_keys(
    check: &mut Check<'_>,
    headers: &std::collections::BTreeMap<String, depprobe_config::Secret>,
) {
    for name in headers.keys() {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            check.error(
                &format!("headers.{name}"),
                format!("`{name}` is not a header name"),
            );
        }
    }
}

impl depprobe_config::KindSpec for OtlpProbeSpec {
    fn inline_secrets(&self) -> Vec<depprobe_config::Secret> {
        self.credentials().inline_secrets()
    }
}
