//! `kind: metrics`: scrape a Prometheus or OpenMetrics endpoint, parse it, judge
//! what it serves.
//!
//! The scrape is an HTTP(S) GET through the shared client, so transport, TLS and a
//! refused answer are classified exactly as for `kind: http` (`jwt_rejected` for
//! incident 01's `{"message":"Failed to validate JWT."}`). The `Accept` header
//! prefers OpenMetrics, as Prometheus does; the answer's `Content-Type` picks the
//! parser. A scrape that does not parse, or misses an expectation, is
//! `unexpected_response`, with the line and column or the series named.
//!
//! An OpenMetrics scrape that parses but breaks a rule across lines (a histogram's
//! buckets out of order, a counter below zero, ...) is ingested by Prometheus, so
//! the run stays working with an `exposition_invalid` warning naming the rule and
//! the line; `expect.strict: true` makes it `unexpected_response` in the same
//! words. What Prometheus refuses (the grammar, `# EOF`, an exemplar on a sample
//! that takes none) is `unexpected_response` either way.
//!
//! Details reported: `format`, `content_type`, `bytes` (the scrape's size),
//! `samples` (sample lines), `series` (distinct name + label sets), `families`
//! (metric families with samples), and `parse_error` when it does not parse.

pub mod exposition;
pub mod spec;

mod expect;

use std::time::SystemTime;

use http::Method;
use url::Url;

use depprobe_config::{ProbeConfig, Secret};
use spec::MetricsSpec;

use crate::outcome::{Finding, FindingType, HttpFacts, Severity, Target, scrub};
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::http_client::{Answer, HttpClient, classify_status};
use crate::transport::tls::{ClientRules, TlsClient};
use crate::{BuildError, Exec, ProbeEnv};

use super::ProbeKind;

use expect::Expectations;
use exposition::{Breaches, Format, ParseError, Summary};

/// An OpenMetrics scrape breaks a rule of the specification that Prometheus does
/// not enforce (it ingests the scrape).
pub const EXPOSITION_INVALID: FindingType = FindingType::new("exposition_invalid");

/// What Prometheus 2 sends: OpenMetrics first, then the text format.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A `metrics` probe.
pub struct MetricsProbe {
    meta: ProbeMeta,
    url: Url,
    status: Vec<u16>,
    expect: Expectations,
    max_body: usize,
    client: HttpClient,
}

impl MetricsProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &MetricsSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let url = Url::parse(&spec.url).map_err(|e| BuildError::Invalid(format!("url: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| BuildError::Invalid("url has no host".into()))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        Ok(MetricsProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: host,
                    port,
                },
            ),
            url,
            status: spec.expect.status.clone(),
            expect: Expectations::new(&spec.expect)?,
            max_body: spec.max_body_bytes,
            client: HttpClient::new(
                spec.credentials(),
                TlsClient::from_spec(&spec.tls, &["h2", "http/1.1"])?.with_rules(ClientRules::Curl),
                env.dns.clone(),
                ACCEPT,
                spec.max_body_bytes,
            )?,
        })
    }
}

/// The verdict on one scrape: its summary and every failed expectation.
type Judged = (Summary, Result<(), Vec<String>>);

/// Parses `body` and judges it on the blocking pool, so that a large or hostile
/// scrape (linear in its size, but up to `max_body_bytes`) never holds up the
/// thread that runs the other probes and the agent's endpoints. A parse error
/// comes with the text of the line it is on.
async fn judge_off_the_runtime(
    expect: &Expectations,
    answer: &Answer,
    format: Format,
    now: SystemTime,
) -> Result<Result<Judged, (ParseError, String)>, ProbeError> {
    let expect = expect.clone();
    let body = answer.body.clone();
    let secrets = answer.secrets.clone();
    let work = tokio::task::spawn_blocking(move || {
        let mut judge = expect.judge(now);
        match exposition::parse(&body, format, |s| judge.observe(s)) {
            Ok(summary) => {
                let verdict = judge.verdict(&summary);
                Ok((summary, verdict))
            }
            Err(e) => {
                let line = quoted_line(&body, e.line, &secrets);
                Err((e, line))
            }
        }
    });
    match work.await {
        Ok(judged) => Ok(judged),
        // A panic while judging is the run's own: it goes on to the supervisor.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(unexpected(format!("the scrape could not be judged: {e}"))),
    }
}

/// Line `number` (from 1) of `body`, secrets replaced, cut at 120 characters.
fn quoted_line(body: &[u8], number: usize, secrets: &[Secret]) -> String {
    let Some(line) = body.split(|b| *b == b'\n').nth(number.saturating_sub(1)) else {
        return String::new();
    };
    let mut line = String::from_utf8_lossy(line).into_owned();
    let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
    scrub(&mut line, &secrets);
    let mut shown: String = line.chars().take(120).collect();
    if line.chars().count() > 120 {
        shown.push('…');
    }
    shown
}

/// The error for a scrape that does not parse: where, what, and the line.
fn unparseable(
    run: &mut Run<'_>,
    format: Format,
    content_type: Option<String>,
    e: &ParseError,
    line: &str,
) -> ProbeError {
    run.details.insert(
        "parse_error".into(),
        serde_json::json!({
            "line": e.line,
            "column": e.column,
            "problem": e.problem.to_string(),
        }),
    );
    let ct = content_type.unwrap_or_else(|| "none".into());
    unexpected(format!(
        "the scrape does not parse as {} (Content-Type: {ct}): {e}; the line reads {line:?}",
        format.title()
    ))
}

fn unexpected(message: String) -> ProbeError {
    ProbeError::new(ErrorType::UnexpectedResponse, Phase::Request, message)
}

/// "line 3: ... (rule bucket_order); 2 more breaches".
fn breach_words(breaches: &Breaches) -> String {
    let mut words = breaches
        .first
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let more = breaches.total.saturating_sub(1);
    if more > 0 {
        words.push_str(&format!(
            "; {more} more breach{}",
            if more == 1 { "" } else { "es" }
        ));
    }
    words
}

/// The `exposition_invalid` finding for a scrape Prometheus ingests.
fn exposition_invalid(breaches: &Breaches) -> Finding {
    let mut finding = Finding::new(
        EXPOSITION_INVALID,
        Severity::Warning,
        format!(
            "the scrape breaks OpenMetrics 1.0, which Prometheus ingests anyway (expect.strict fails the probe on it): {}",
            breach_words(breaches)
        ),
    )
    .with("breaches", breaches.total as u64);
    if let Some(first) = breaches.first.first() {
        finding = finding
            .with("rule", first.rule.as_str())
            .with("line", first.line as u64);
    }
    finding
}

/// "scraped 1027 samples of 980 series in 75 families (86512 bytes, OpenMetrics 1.0)".
fn success_message(summary: &Summary, format: Format, bytes: usize) -> String {
    format!(
        "scraped {} samples of {} series in {} families ({bytes} bytes, {})",
        summary.samples,
        summary.series,
        summary.families,
        format.title()
    )
}

impl ProbeKind for MetricsProbe {
    const NAME: &'static str = "metrics";
    const ABOUT: &'static str = "a Prometheus or OpenMetrics scrape: parsed, with expected series";
    type Spec = MetricsSpec;
    const FINDINGS: &'static [FindingType] = &[EXPOSITION_INVALID];

    fn build(cfg: &ProbeConfig, spec: &MetricsSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}

impl Exec for MetricsProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let authorization = self.client.authorization(run)?;
        run.attribute("http.request.method", "GET");
        run.attribute("url.full", crate::semconv::url_full(&self.url));
        let answer = self
            .client
            .exchange(
                run,
                &Method::GET,
                &self.url,
                None,
                &[],
                authorization.as_ref(),
            )
            .await?;
        let code = answer.status.as_u16();
        run.http = Some(HttpFacts {
            status_code: code,
            version: answer.version.clone(),
            body_bytes: answer.body.len(),
            redirects: 0,
        });
        if !self.status.contains(&code) {
            return Err(classify_status(&answer));
        }
        if answer.truncated {
            return Err(unexpected(format!(
                "HTTP {code}, but the scrape is larger than max_body_bytes ({} bytes); raise max_body_bytes",
                self.max_body
            )));
        }
        let content_type = answer
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let format = Format::from_content_type(content_type.as_deref());
        run.details.insert("format".into(), format.as_str().into());
        run.details
            .insert("content_type".into(), content_type.clone().into());
        run.details
            .insert("bytes".into(), (answer.body.len() as u64).into());

        let judged = judge_off_the_runtime(&self.expect, &answer, format, run.now());
        let (summary, verdict) = match judged.await? {
            Ok(judged) => judged,
            Err((e, line)) => return Err(unparseable(run, format, content_type, &e, &line)),
        };
        run.details
            .insert("samples".into(), (summary.samples as u64).into());
        run.details
            .insert("series".into(), (summary.series as u64).into());
        run.details
            .insert("families".into(), (summary.families as u64).into());
        let mut failed = verdict.err().unwrap_or_default();
        if !summary.breaches.is_empty() {
            if self.expect.strict() {
                let words = breach_words(&summary.breaches);
                failed.insert(0, format!("the scrape breaks OpenMetrics 1.0: {words}"));
            } else {
                run.findings.push(exposition_invalid(&summary.breaches));
            }
        }
        if !failed.is_empty() {
            let total = self.expect.count();
            let head = if failed.len() > 1 {
                format!("{} of {total} expectations failed: ", failed.len())
            } else {
                String::new()
            };
            return Err(unexpected(format!("{head}{}", failed.join("; "))));
        }
        Ok(success_message(&summary, format, answer.body.len()))
    }
}
