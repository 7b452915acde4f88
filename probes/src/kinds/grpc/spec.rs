//! `kind: grpc`: the standard health check of a gRPC server
//! (`grpc.health.v1.Health/Check`), for one service or for the server as a whole.
//!
//! The URL's scheme carries the TLS choice: `https://` (the default port 443) speaks
//! TLS, `http://` speaks HTTP/2 in cleartext (h2c). Credentials are sent as gRPC
//! metadata with the keys every HTTP kind uses (`headers`, `bearer_token`,
//! `bearer_token_file`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::http::{HttpCredentials, check_http_url};
use crate::kinds::otlp::spec::check_metadata_keys;
use depprobe_config::{Check, Checked};
use depprobe_config::TlsSpec;
use depprobe_config::Secret;

/// Settings of a `grpc` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcSpec {
    /// `https://host[:port]` (TLS) or `http://host[:port]` (cleartext HTTP/2).
    pub url: String,
    /// The service asked about (`payments.v1.Payments`); empty: the server as a whole.
    #[serde(default)]
    pub service: String,
    /// Metadata sent with the call; values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Bearer token sent as `authorization: Bearer ...`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token, read on every run.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings (for `https://`).
    #[serde(default)]
    pub tls: TlsSpec,
}

impl GrpcSpec {
    /// The metadata and credentials sent with the call.
    pub fn credentials(&self) -> HttpCredentials<'_> {
        HttpCredentials {
            headers: &self.headers,
            bearer_token: self.bearer_token.as_ref(),
            bearer_token_file: self.bearer_token_file.as_deref(),
            basic_auth: None,
        }
    }

    /// The host, the port (443 / 80 by default) and whether TLS is spoken.
    pub fn endpoint(&self) -> Option<(String, u16, bool)> {
        let url = url::Url::parse(&self.url).ok()?;
        let tls = url.scheme() == "https";
        let host = url.host_str()?.to_owned();
        Some((host, url.port_or_known_default()?, tls))
    }
}

impl Checked for GrpcSpec {
    fn check(&self, check: &mut Check<'_>) {
        check_http_url(check, "url", &self.url);
        if let Ok(u) = url::Url::parse(&self.url)
            && (!matches!(u.path(), "" | "/") || u.query().is_some())
        {
            check.error(
                "url",
                "a gRPC URL names the server only (https://host:port); put the service in `service`",
            );
        }
        if self.service.chars().any(char::is_whitespace) {
            check.error(
                "service",
                "a service name has no spaces (payments.v1.Payments)",
            );
        }
        self.credentials().check(check);
        check_metadata_keys(check, &self.headers);
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for GrpcSpec {
    fn inline_secrets(&self) -> Vec<Secret> {
        self.credentials().inline_secrets()
    }
}
