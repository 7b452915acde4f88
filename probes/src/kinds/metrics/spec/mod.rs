//! `kind: metrics`: scrape a Prometheus or OpenMetrics endpoint (a dependency's own
//! metrics API) and check what it serves.
//!
//! The request side (URL, headers, bearer token, basic auth, TLS) means exactly what
//! it means for `kind: http`, and reuses its checks. The `expect` side names series
//! with Prometheus selectors (see [`selector`]) and bounds their values and age.

pub mod selector;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::http::{BasicAuth, HttpCredentials, check_http_url, check_status_codes};
use depprobe_config::{Check, Checked};
use depprobe_config::ConfigDuration;
use depprobe_config::TlsSpec;
use depprobe_config::Secret;

pub use selector::{LabelMatcher, MatchOp, SeriesSelector};

/// Settings of a `metrics` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// `https://` or `http://` URL of the metrics endpoint (`/metrics`, `/federate?...`).
    pub url: String,
    /// Request headers; values are treated as secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Bearer token sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token, read on every run.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// What a good scrape looks like.
    #[serde(default)]
    pub expect: MetricsExpect,
    /// Most bytes of a scrape read; a larger scrape is an error.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// TLS settings (for `https://`).
    #[serde(default)]
    pub tls: TlsSpec,
}

/// 10 MiB: above the largest exporters commonly scraped (kube-state-metrics on a big
/// cluster), far above a provider's metrics API.
fn default_max_body() -> usize {
    10 << 20
}

/// `expect:` what a good scrape looks like.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsExpect {
    /// Accepted status codes (default: 200).
    pub status: Vec<u16>,
    /// The scrape must hold at least this many samples (default 1: an empty scrape
    /// is an endpoint gone dark).
    pub min_samples: usize,
    /// Series that must be present, each with optional bounds.
    pub series: Vec<SeriesExpect>,
    /// An OpenMetrics scrape that breaks a rule of the specification across lines
    /// (which Prometheus ingests) fails the probe, instead of an
    /// `exposition_invalid` finding (default false).
    pub strict: bool,
}

impl Default for MetricsExpect {
    fn default() -> Self {
        MetricsExpect {
            status: vec![200],
            min_samples: 1,
            series: Vec::new(),
            strict: false,
        }
    }
}

/// One item of `expect.series`: a selector that must match at least one sample,
/// and what every matching sample must satisfy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesExpect {
    /// The Prometheus selector, e.g. `up{job="api"}`.
    #[serde(rename = "match")]
    pub selector: SeriesSelector,
    /// Lowest accepted value (inclusive).
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest accepted value (inclusive).
    #[serde(default)]
    pub max: Option<f64>,
    /// Staleness limit: each matching sample's timestamp, or its value when the
    /// series is a `*_timestamp_seconds` one, must be at most this old.
    #[serde(default)]
    pub max_age: Option<ConfigDuration>,
}

impl MetricsSpec {
    /// The request headers and credentials.
    pub fn credentials(&self) -> HttpCredentials<'_> {
        HttpCredentials {
            headers: &self.headers,
            bearer_token: self.bearer_token.as_ref(),
            bearer_token_file: self.bearer_token_file.as_deref(),
            basic_auth: self.basic_auth.as_ref(),
        }
    }
}

impl Checked for MetricsSpec {
    fn check(&self, check: &mut Check<'_>) {
        check_http_url(check, "url", &self.url);
        self.credentials().check(check);
        check_status_codes(check, "expect.status", &self.expect.status);
        for (i, series) in self.expect.series.iter().enumerate() {
            let at = |key: &str| format!("expect.series[{i}].{key}");
            for (key, bound) in [("min", series.min), ("max", series.max)] {
                if bound.is_some_and(f64::is_nan) {
                    check.error(&at(key), "must be a number, not NaN");
                }
            }
            if let (Some(min), Some(max)) = (series.min, series.max)
                && min > max
            {
                check.error(&at("max"), format!("`max` ({max}) is below `min` ({min})"));
            }
            if series.max_age.is_some_and(|d| d.0.is_zero()) {
                check.error(&at("max_age"), "must be more than 0s");
            }
        }
        if self.max_body_bytes == 0 {
            check.error("max_body_bytes", "must be at least 1");
        }
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for MetricsSpec {
    fn inline_secrets(&self) -> Vec<depprobe_config::Secret> {
        self.credentials().inline_secrets()
    }
}
