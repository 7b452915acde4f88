//! `kind: http`: an HTTP(S) request with expectations on the answer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use depprobe_config::http::{BasicAuth, HttpCredentials, check_http_url, check_status_codes};
use depprobe_config::secret::{Secret, SecretSource};
use depprobe_config::{Check, Checked, TlsSpec};

/// Settings of an `http` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `https://` or `http://` URL.
    pub url: String,
    /// Request method.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers; values are treated as secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Request body.
    #[serde(default)]
    pub body: Option<String>,
    /// Bearer token sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token, read on every run.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// What a good answer looks like.
    #[serde(default)]
    pub expect: HttpExpect,
    /// Follow 3xx redirects (each hop is a new connection).
    #[serde(default)]
    pub follow_redirects: bool,
    /// Most redirects followed.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u32,
    /// Follow a redirect from `https://` to `http://` (refused by default; no
    /// credential or configured header is sent there either way).
    #[serde(default)]
    pub follow_redirects_to_http: bool,
    /// Most bytes of the body read (and checked).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Further requests run after the first, in order, on new connections: a
    /// synthetic write then a read that must see it. `{{run_id}}`, `{{timestamp}}`
    /// and `{{timestamp_ns}}` in a step's URL, body or `expect.body_contains` (and in
    /// the first request's) are replaced on every run.
    #[serde(default)]
    pub steps: Vec<HttpStep>,
    /// TLS settings (for `https://`).
    #[serde(default)]
    pub tls: TlsSpec,
}

/// One request of a sequence (`steps:`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// URL, absolute or relative to the probe's `url` (default: the probe's `url`).
    #[serde(default)]
    pub url: Option<String>,
    /// Request method.
    #[serde(default = "default_method")]
    pub method: String,
    /// Headers added to (or replacing) the probe's for this request; secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Request body.
    #[serde(default)]
    pub body: Option<String>,
    /// What a good answer to this request looks like.
    #[serde(default)]
    pub expect: HttpExpect,
}

fn default_method() -> String {
    "GET".into()
}

fn default_max_redirects() -> u32 {
    5
}

fn default_max_body() -> usize {
    1 << 20
}


/// `expect:` what a good HTTP answer looks like.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpExpect {
    /// Accepted status codes (default: any 2xx).
    pub status: Vec<u16>,
    /// The body must contain this text.
    pub body_contains: Option<String>,
    /// The body must match this regular expression.
    pub body_regex: Option<String>,
    /// Response headers that must be present and match these regular expressions.
    pub headers: BTreeMap<String, String>,
}

impl HttpSpec {
    /// Secrets written inline: header values (of the steps too), the bearer token,
    /// the basic-auth password.
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out = self.credentials().inline_secrets();
        out.extend(self.steps.iter().flat_map(|s| s.headers.values().cloned()));
        out
    }

    /// Where the bearer token comes from.
    pub fn bearer_source(&self) -> Option<SecretSource> {
        self.credentials().bearer_source()
    }

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


impl Checked for HttpSpec {
    fn check(&self, check: &mut Check<'_>) {
        check_http_url(check, "url", &self.url);
        if http_method_ok(&self.method).is_none() {
            check.error("method", format!("`{}` is not an HTTP method", self.method));
        }
        self.credentials().check(check);
        check_expect(check, "expect", &self.expect);
        let base = url::Url::parse(&self.url).ok();
        for (i, step) in self.steps.iter().enumerate() {
            let key = format!("steps[{i}]");
            if let (Some(base), Some(u)) = (&base, &step.url) {
                match base.join(u) {
                    Ok(joined) => check_http_url(check, &format!("{key}.url"), joined.as_str()),
                    Err(e) => check.error(&format!("{key}.url"), format!("not a valid URL: {e}")),
                }
            }
            if http_method_ok(&step.method).is_none() {
                check.error(
                    &format!("{key}.method"),
                    format!("`{}` is not an HTTP method", step.method),
                );
            }
            check_expect(check, &format!("{key}.expect"), &step.expect);
        }
        if self.max_body_bytes == 0 {
            check.error("max_body_bytes", "must be at least 1");
        }
        check.tls(&self.tls);
    }
}

/// Checks an `expect:` section under `key`.
fn check_expect(check: &mut Check<'_>, key: &str, expect: &HttpExpect) {
    check_status_codes(check, &format!("{key}.status"), &expect.status);
    if let Some(re) = &expect.body_regex
        && let Err(e) = regex::Regex::new(re)
    {
        check.error(
            &format!("{key}.body_regex"),
            format!("invalid regular expression: {e}"),
        );
    }
    for (name, re) in &expect.headers {
        if let Err(e) = regex::Regex::new(re) {
            check.error(
                &format!("{key}.headers.{name}"),
                format!("invalid regular expression: {e}"),
            );
        }
    }
}


/// The method in upper case when it is a valid HTTP token.
fn http_method_ok(m: &str) -> Option<String> {
    let ok = !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic());
    ok.then(|| m.to_ascii_uppercase())
}

impl depprobe_config::KindSpec for HttpSpec {
    fn inline_secrets(&self) -> Vec<depprobe_config::Secret> {
        HttpSpec::inline_secrets(self)
    }
}
