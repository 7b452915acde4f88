//! `kind: http`: dial, handshake, one HTTP exchange (HTTP/1.1 or HTTP/2 by ALPN),
//! judge the answer.
//!
//! The exchange and the naming of a refused answer (`upstream_tls_error`,
//! `jwt_rejected`, `auth_rejected`, `http_status`) are shared with the other
//! HTTP-based kinds in [`crate::transport::http_client`]; this module adds what is
//! particular to `http`: the method and body, redirects, and the expectations on
//! status, body and headers.

use bytes::Bytes;
use futures::future::BoxFuture;
use http::Method;
use http::header::HeaderName;
use regex::Regex;
use url::Url;

use depprobe_config::ProbeConfig;
use depprobe_config::kinds::http::HttpSpec;

use crate::outcome::{HttpFacts, Outcome, Target};
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::http_client::HttpClient;
use crate::transport::tls::TlsClient;
use crate::{BuildError, Probe, ProbeEnv};

// Kept reachable from here for the code that used them before they moved.
pub use crate::transport::http_client::{
    Answer, classify_status, is_jwt_rejection, read_secret, send, snippet,
};

/// What a good answer looks like, compiled.
struct Expect {
    status: Vec<u16>,
    body_contains: Option<String>,
    body_regex: Option<Regex>,
    headers: Vec<(HeaderName, Regex)>,
}

/// An `http` probe.
pub struct HttpProbe {
    meta: ProbeMeta,
    url: Url,
    method: Method,
    body: Option<Bytes>,
    expect: Expect,
    follow_redirects: bool,
    max_redirects: u32,
    client: HttpClient,
}

fn invalid(what: impl Into<String>) -> BuildError {
    BuildError::Invalid(what.into())
}

impl HttpProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &HttpSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let url = Url::parse(&spec.url).map_err(|e| invalid(format!("url: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| invalid("url has no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let method = Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| invalid(format!("`{}` is not an HTTP method", spec.method)))?;
        let mut expect_headers = Vec::new();
        for (name, re) in &spec.expect.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("`{name}` is not a header name")))?;
            let r = Regex::new(re).map_err(|e| invalid(format!("expect.headers.{name}: {e}")))?;
            expect_headers.push((n, r));
        }
        let body_regex = match &spec.expect.body_regex {
            Some(r) => Some(Regex::new(r).map_err(|e| invalid(format!("expect.body_regex: {e}")))?),
            None => None,
        };
        Ok(HttpProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: host,
                    port,
                },
            ),
            url,
            method,
            body: spec.body.clone().map(Bytes::from),
            expect: Expect {
                status: spec.expect.status.clone(),
                body_contains: spec.expect.body_contains.clone(),
                body_regex,
                headers: expect_headers,
            },
            follow_redirects: spec.follow_redirects,
            max_redirects: spec.max_redirects,
            client: HttpClient::new(
                spec.credentials(),
                TlsClient::from_spec(&spec.tls, &["h2", "http/1.1"])?,
                env.dns.clone(),
                "*/*",
                spec.max_body_bytes,
            )?,
        })
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let authorization = self.client.authorization(run)?;
        let mut url = self.url.clone();
        let mut redirects = 0;
        loop {
            let answer = self
                .client
                .exchange(
                    run,
                    &self.method,
                    &url,
                    self.body.as_ref(),
                    authorization.as_ref(),
                )
                .await?;
            run.http = Some(HttpFacts {
                status_code: answer.status.as_u16(),
                version: answer.version.clone(),
                body_bytes: answer.body.len(),
                redirects,
            });
            if self.follow_redirects
                && answer.status.is_redirection()
                && redirects < self.max_redirects
            {
                let next = answer
                    .headers
                    .get(http::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok());
                if let Some(next) = next {
                    url = next;
                    redirects += 1;
                    continue;
                }
            }
            return self.judge(&answer);
        }
    }

    fn judge(&self, answer: &Answer) -> Result<String, ProbeError> {
        let code = answer.status.as_u16();
        let expected = if self.expect.status.is_empty() {
            answer.status.is_success()
        } else {
            self.expect.status.contains(&code)
        };
        if !expected {
            return Err(classify_status(answer));
        }
        let text = String::from_utf8_lossy(&answer.body);
        if let Some(needle) = &self.expect.body_contains
            && !text.contains(needle.as_str())
        {
            return Err(unexpected(format!(
                "HTTP {code}, but the body does not contain {needle:?} (body starts: {})",
                snippet(&answer.body)
            )));
        }
        if let Some(re) = &self.expect.body_regex
            && !re.is_match(&text)
        {
            return Err(unexpected(format!(
                "HTTP {code}, but the body does not match /{}/ (body starts: {})",
                re.as_str(),
                snippet(&answer.body)
            )));
        }
        for (name, re) in &self.expect.headers {
            match answer.headers.get(name).and_then(|v| v.to_str().ok()) {
                None => {
                    return Err(unexpected(format!(
                        "HTTP {code}, but header {name} is missing"
                    )));
                }
                Some(v) if !re.is_match(v) => {
                    return Err(unexpected(format!(
                        "HTTP {code}, but header {name}: {v:?} does not match /{}/",
                        re.as_str()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(format!("HTTP {code} ({})", answer.version))
    }
}

fn unexpected(message: String) -> ProbeError {
    ProbeError::new(ErrorType::UnexpectedResponse, Phase::Request, message)
}

impl Probe for HttpProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    fn run(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let mut run = Run::start(&self.meta);
            let result = self.exec(&mut run).await;
            run.finish(result)
        })
    }
}
