//! `kind: http`: dial, handshake, one HTTP exchange (HTTP/1.1 or HTTP/2 by ALPN),
//! judge the answer.
//!
//! The exchange and the naming of a refused answer (`upstream_tls_error`,
//! `jwt_rejected`, `auth_rejected`, `http_status`) are shared with the other
//! HTTP-based kinds in [`crate::transport::http_client`]; this module adds what is
//! particular to `http`: the method and body, redirects, and the expectations on
//! status, body and headers.

use bytes::Bytes;
use http::Method;
use http::header::HeaderName;
use regex::Regex;
use url::Url;

pub mod spec;

use spec::{HttpExpect, HttpSpec};
use depprobe_config::{ProbeConfig, Secret};

use crate::outcome::{HttpFacts, Target};
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::http_client::HttpClient;
use crate::transport::tls::{ClientRules, TlsClient};
use crate::{BuildError, Exec, ProbeEnv};

use super::ProbeKind;

// Kept reachable from here for the code that used them before they moved.
pub use crate::transport::http_client::{
    Answer, classify_status, is_jwt_rejection, send, snippet,
};

/// What a good answer looks like, compiled.
struct Expect {
    status: Vec<u16>,
    body_contains: Option<String>,
    body_regex: Option<Regex>,
    headers: Vec<(HeaderName, Regex)>,
}

/// One request of the probe: the first, or a later step of a sequence.
struct Request {
    /// The configured URL text (placeholders unreplaced), relative to the probe's
    /// `url` for a step; `None` is the probe's `url`.
    url: Option<String>,
    method: Method,
    headers: Vec<(HeaderName, Secret)>,
    body: Option<String>,
    expect: Expect,
}

/// An `http` probe.
pub struct HttpProbe {
    meta: ProbeMeta,
    base_url: String,
    requests: Vec<Request>,
    follow_redirects: bool,
    max_redirects: u32,
    redirects_to_http: bool,
    client: HttpClient,
}

fn invalid(what: impl Into<String>) -> BuildError {
    BuildError::Invalid(what.into())
}

fn compile_expect(e: &HttpExpect, key: &str) -> Result<Expect, BuildError> {
    let mut headers = Vec::new();
    for (name, re) in &e.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("`{name}` is not a header name")))?;
        let r = Regex::new(re).map_err(|err| invalid(format!("{key}.headers.{name}: {err}")))?;
        headers.push((n, r));
    }
    let body_regex = match &e.body_regex {
        Some(r) => Some(Regex::new(r).map_err(|err| invalid(format!("{key}.body_regex: {err}")))?),
        None => None,
    };
    Ok(Expect {
        status: e.status.clone(),
        body_contains: e.body_contains.clone(),
        body_regex,
        headers,
    })
}

fn method(m: &str) -> Result<Method, BuildError> {
    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("`{m}` is not an HTTP method")))
}

fn header_list(
    h: &std::collections::BTreeMap<String, Secret>,
) -> Result<Vec<(HeaderName, Secret)>, BuildError> {
    h.iter()
        .map(|(name, value)| {
            HeaderName::from_bytes(name.as_bytes())
                .map(|n| (n, value.clone()))
                .map_err(|_| invalid(format!("`{name}` is not a header name")))
        })
        .collect()
}

/// The values of the placeholders of one run.
struct Placeholders {
    run_id: String,
    timestamp: String,
    timestamp_ns: String,
}

impl Placeholders {
    fn now() -> Placeholders {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let nanos = now.as_nanos();
        Placeholders {
            run_id: format!("depprobe-{nanos:x}"),
            timestamp: now.as_secs().to_string(),
            timestamp_ns: nanos.to_string(),
        }
    }

    fn apply(&self, text: &str) -> String {
        if !text.contains("{{") {
            return text.to_owned();
        }
        text.replace("{{run_id}}", &self.run_id)
            .replace("{{timestamp_ns}}", &self.timestamp_ns)
            .replace("{{timestamp}}", &self.timestamp)
    }
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
        let mut requests = vec![Request {
            url: None,
            method: method(&spec.method)?,
            headers: Vec::new(),
            body: spec.body.clone(),
            expect: compile_expect(&spec.expect, "expect")?,
        }];
        let sample = Placeholders::now();
        for (i, step) in spec.steps.iter().enumerate() {
            if let Some(u) = &step.url {
                url.join(&sample.apply(u))
                    .map_err(|e| invalid(format!("steps[{i}].url: {e}")))?;
            }
            requests.push(Request {
                url: step.url.clone(),
                method: method(&step.method)?,
                headers: header_list(&step.headers)?,
                body: step.body.clone(),
                expect: compile_expect(&step.expect, &format!("steps[{i}].expect"))?,
            });
        }
        Ok(HttpProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: host,
                    port,
                },
            ),
            base_url: spec.url.clone(),
            requests,
            follow_redirects: spec.follow_redirects,
            max_redirects: spec.max_redirects,
            redirects_to_http: spec.follow_redirects_to_http,
            client: HttpClient::new(
                spec.credentials(),
                TlsClient::from_spec(&spec.tls, &["h2", "http/1.1"])?.with_rules(ClientRules::Curl),
                env.dns.clone(),
                "*/*",
                spec.max_body_bytes,
            )?,
        })
    }

    /// The URL of `req` for this run: placeholders replaced, relative to `url`.
    fn url_of(&self, req: &Request, values: &Placeholders) -> Result<Url, ProbeError> {
        let bad = |e: url::ParseError| {
            ProbeError::new(
                ErrorType::UnexpectedResponse,
                Phase::Request,
                format!("cannot build the URL: {e}"),
            )
        };
        let base = Url::parse(&values.apply(&self.base_url)).map_err(bad)?;
        match &req.url {
            None => Ok(base),
            Some(u) => base.join(&values.apply(u)).map_err(bad),
        }
    }

    /// One request (following redirects if asked), judged.
    async fn one(
        &self,
        run: &mut Run<'_>,
        req: &Request,
        values: &Placeholders,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<String, ProbeError> {
        let mut url = self.url_of(req, values)?;
        let origin = url.origin();
        let body = req.body.as_deref().map(|b| Bytes::from(values.apply(b)));
        let mut redirects = 0;
        loop {
            run.attribute(
                "http.request.method",
                crate::semconv::http_method(req.method.as_str()),
            );
            run.attribute("url.full", crate::semconv::url_full(&url));
            // Credentials stay with the configured origin (scheme, host and port),
            // as curl and browsers keep them: elsewhere, no `Authorization` and no
            // configured header (their values are secrets).
            let answer = if url.origin() == origin {
                let headers = &req.headers;
                let exchange = self.client.exchange(
                    run,
                    &req.method,
                    &url,
                    body.as_ref(),
                    headers,
                    authorization,
                );
                exchange.await?
            } else {
                let exchange =
                    self.client
                        .exchange_anonymous(run, &req.method, &url, body.as_ref());
                exchange.await?
            };
            run.http = Some(HttpFacts {
                status_code: answer.status.as_u16(),
                version: answer.version.clone(),
                body_bytes: answer.body.len(),
                redirects,
            });
            if answer.unclean_close {
                // Read to the end as curl does; noted, never a failure.
                run.details
                    .insert("tls_close_notify".into(), "missing".into());
            }
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
                    let code = answer.status.as_u16();
                    refuse_downgrade(&url, &next, code, self.redirects_to_http)?;
                    url = next;
                    redirects += 1;
                    continue;
                }
            }
            return judge(&req.expect, &answer, values);
        }
    }
}

/// A redirect from `https://` to `http://` is refused unless `allowed`
/// (`follow_redirects_to_http`): it would send the request in clear.
fn refuse_downgrade(from: &Url, to: &Url, code: u16, allowed: bool) -> Result<(), ProbeError> {
    if from.scheme() == "https" && to.scheme() == "http" && !allowed {
        let mut shown = to.clone();
        let _ = shown.set_password(None);
        return Err(unexpected(format!(
            "HTTP {code} redirects from https to plain http ({shown}): not followed, as a redirect may not downgrade to plaintext; set follow_redirects_to_http: true to follow it"
        )));
    }
    Ok(())
}

fn judge(expect: &Expect, answer: &Answer, values: &Placeholders) -> Result<String, ProbeError> {
    let code = answer.status.as_u16();
    let expected = if expect.status.is_empty() {
        answer.status.is_success()
    } else {
        expect.status.contains(&code)
    };
    if !expected {
        return Err(classify_status(answer));
    }
    let text = String::from_utf8_lossy(&answer.body);
    if let Some(needle) = &expect.body_contains {
        let needle = values.apply(needle);
        if !text.contains(needle.as_str()) {
            return Err(unexpected(format!(
                "HTTP {code}, but the body does not contain {needle:?} (body starts: {})",
                answer.snippet()
            )));
        }
    }
    if let Some(re) = &expect.body_regex
        && !re.is_match(&text)
    {
        return Err(unexpected(format!(
            "HTTP {code}, but the body does not match /{}/ (body starts: {})",
            re.as_str(),
            answer.snippet()
        )));
    }
    for (name, re) in &expect.headers {
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

fn unexpected(message: String) -> ProbeError {
    ProbeError::new(ErrorType::UnexpectedResponse, Phase::Request, message)
}

impl ProbeKind for HttpProbe {
    const NAME: &'static str = "http";
    const ABOUT: &'static str = "an HTTP(S) request: status, headers, body, auth, CDN and JWT failures";
    type Spec = HttpSpec;

    fn build(cfg: &ProbeConfig, spec: &HttpSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}

impl Exec for HttpProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let authorization = self.client.authorization(run)?;
        let values = Placeholders::now();
        let n = self.requests.len();
        let mut last = String::new();
        for (i, req) in self.requests.iter().enumerate() {
            let result = self.one(run, req, &values, authorization.as_ref()).await;
            match result {
                Ok(msg) => last = msg,
                Err(mut e) if n > 1 => {
                    let what = req.url.as_deref().unwrap_or(self.base_url.as_str());
                    e.message =
                        format!("step {}/{n} ({} {what}): {}", i + 1, req.method, e.message);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        if n > 1 {
            run.details.insert("steps".into(), n.into());
            Ok(format!("{n} requests OK; last: {last}"))
        } else {
            Ok(last)
        }
    }
}
