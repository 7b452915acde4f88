//! `kind: http`: dial, handshake, one HTTP exchange (HTTP/1.1 or HTTP/2 by ALPN),
//! judge the answer.
//!
//! hyper is driven by hand over our own connection so that DNS, connect, TLS and the
//! request are each timed and classified. A refused answer is named precisely: a
//! CDN's 525/526 is `upstream_tls_error`, a 401 that names the token is
//! `jwt_rejected`, other 401/403 are `auth_rejected`.

use std::future::Future;
use std::sync::OnceLock;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use regex::Regex;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use depprobe_config::kinds::http::HttpSpec;
use depprobe_config::{ProbeConfig, Secret, SecretError, SecretSource};

use crate::outcome::{HttpFacts, Outcome, Target};
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify::{ClientAuth, classify};
use crate::transport::tap::{Tap, Tapped};
use crate::transport::tls::TlsClient;
use crate::transport::{self, Dns};
use crate::{BuildError, Probe, ProbeEnv};

/// What a good answer looks like, compiled.
struct Expect {
    status: Vec<u16>,
    body_contains: Option<String>,
    body_regex: Option<Regex>,
    headers: Vec<(HeaderName, Regex)>,
}

/// How the request authenticates.
enum Auth {
    Bearer(SecretSource),
    Basic {
        user: String,
        password: Option<SecretSource>,
    },
}

/// An `http` probe.
pub struct HttpProbe {
    meta: ProbeMeta,
    url: Url,
    method: Method,
    headers: Vec<(HeaderName, Secret)>,
    body: Option<Bytes>,
    auth: Option<Auth>,
    expect: Expect,
    follow_redirects: bool,
    max_redirects: u32,
    max_body: usize,
    tls: TlsClient,
    dns: Dns,
}

/// One HTTP answer.
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body, cut at the configured limit.
    pub body: Bytes,
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
        let mut headers = Vec::new();
        for (name, value) in &spec.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("`{name}` is not a header name")))?;
            headers.push((n, value.clone()));
        }
        let auth = match (spec.bearer_source(), &spec.basic_auth) {
            (Some(src), _) => Some(Auth::Bearer(src)),
            (None, Some(b)) => Some(Auth::Basic {
                user: b.username.clone(),
                password: b.password_source(),
            }),
            (None, None) => None,
        };
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
            headers,
            body: spec.body.clone().map(Bytes::from),
            auth,
            expect: Expect {
                status: spec.expect.status.clone(),
                body_contains: spec.expect.body_contains.clone(),
                body_regex,
                headers: expect_headers,
            },
            follow_redirects: spec.follow_redirects,
            max_redirects: spec.max_redirects,
            max_body: spec.max_body_bytes,
            tls: TlsClient::from_spec(&spec.tls, &["h2", "http/1.1"])?,
            dns: env.dns.clone(),
        })
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let authorization = self.authorization(run)?;
        let mut url = self.url.clone();
        let mut redirects = 0;
        loop {
            let answer = self.exchange(run, &url, authorization.as_ref()).await?;
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

    /// The `Authorization` header, reading token files now (they may have rotated).
    fn authorization(&self, run: &mut Run<'_>) -> Result<Option<HeaderValue>, ProbeError> {
        let value = match &self.auth {
            None => return Ok(None),
            Some(Auth::Bearer(src)) => {
                let token = read_secret(src, "bearer token")?;
                run.secret(&token);
                format!("Bearer {}", token.expose())
            }
            Some(Auth::Basic { user, password }) => {
                let pass = match password {
                    Some(src) => {
                        let p = read_secret(src, "basic-auth password")?;
                        run.secret(&p);
                        p.expose().to_owned()
                    }
                    None => String::new(),
                };
                let raw = format!("{user}:{pass}");
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                run.secret(&Secret::new(encoded.clone()));
                format!("Basic {encoded}")
            }
        };
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            ProbeError::new(
                ErrorType::CredentialInvalid,
                Phase::Auth,
                "the credential holds characters that cannot be sent in a header",
            )
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    /// One request to `url` on a new connection.
    async fn exchange(
        &self,
        run: &mut Run<'_>,
        url: &Url,
        authorization: Option<&HeaderValue>,
    ) -> Result<Answer, ProbeError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let tcp = transport::dial(run, &self.dns, &host, port).await?;
        if url.scheme() == "https" {
            let now = run.now();
            let mut session = run
                .phase(Phase::Tls, self.tls.handshake(tcp, &host, now))
                .await?;
            let h2 = session.facts.alpn.as_deref() == Some("h2");
            run.tls = Some(session.facts.clone());
            run.findings.append(&mut session.findings);
            let req = self.request(url, h2, authorization)?;
            let auth = session.client_auth;
            run.phase(
                Phase::Request,
                send(session.stream, h2, req, self.max_body, auth),
            )
            .await
        } else {
            let req = self.request(url, false, authorization)?;
            run.phase(
                Phase::Request,
                send(tcp, false, req, self.max_body, ClientAuth::default()),
            )
            .await
        }
    }

    fn request(
        &self,
        url: &Url,
        h2: bool,
        authorization: Option<&HeaderValue>,
    ) -> Result<http::Request<Full<Bytes>>, ProbeError> {
        let bad = |e: http::Error| {
            ProbeError::new(
                ErrorType::UnexpectedResponse,
                Phase::Request,
                format!("cannot build the request: {e}"),
            )
        };
        let target = if h2 {
            url.as_str().to_owned()
        } else {
            let mut t = url.path().to_owned();
            if let Some(q) = url.query() {
                t.push('?');
                t.push_str(q);
            }
            t
        };
        let mut b = http::Request::builder()
            .method(self.method.clone())
            .uri(target);
        if !h2 {
            let host = url.host_str().unwrap_or_default();
            let host_header = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            };
            b = b.header(http::header::HOST, host_header);
        }
        b = b
            .header(
                http::header::USER_AGENT,
                concat!("depprobe/", env!("CARGO_PKG_VERSION")),
            )
            .header(http::header::ACCEPT, "*/*");
        for (name, value) in &self.headers {
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                ProbeError::new(
                    ErrorType::CredentialInvalid,
                    Phase::Request,
                    format!("header {name} has a value that cannot be sent"),
                )
            })?;
            v.set_sensitive(true);
            b = b.header(name, v);
        }
        if let Some(a) = authorization {
            b = b.header(http::header::AUTHORIZATION, a.clone());
        }
        let body = self.body.clone().unwrap_or_default();
        b.body(Full::new(body)).map_err(bad)
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

/// Reads a secret for this run; a missing one is `credential_missing` (phase `auth`).
pub fn read_secret(src: &SecretSource, what: &str) -> Result<Secret, ProbeError> {
    src.read().map_err(|e| {
        let class = match e {
            SecretError::Missing { .. } | SecretError::Empty { .. } => ErrorType::CredentialMissing,
            SecretError::Unreadable { .. } => ErrorType::CredentialInvalid,
        };
        ProbeError::new(class, Phase::Auth, format!("{what}: {e}"))
    })
}

/// The class of an answer whose status was not expected.
pub fn classify_status(answer: &Answer) -> ProbeError {
    let code = answer.status.as_u16();
    let reason = answer.status.canonical_reason().unwrap_or("");
    let body = snippet(&answer.body);
    let (class, message) = match code {
        525 => (
            ErrorType::UpstreamTlsError,
            "HTTP 525 (SSL Handshake Failed): the CDN in front cannot complete TLS with the origin"
                .to_owned(),
        ),
        526 => (
            ErrorType::UpstreamTlsError,
            "HTTP 526 (Invalid SSL Certificate): the CDN in front rejects the origin's certificate"
                .to_owned(),
        ),
        401 | 403 if is_jwt_rejection(&answer.headers, &answer.body) => (
            ErrorType::JwtRejected,
            format!("HTTP {code}: the bearer token was rejected: {body}"),
        ),
        401 | 403 => (
            ErrorType::AuthRejected,
            format!("HTTP {code} {reason}: the credentials were refused: {body}"),
        ),
        _ => (
            ErrorType::HttpStatus,
            format!("HTTP {code} {reason}: {body}"),
        ),
    };
    ProbeError::new(class, Phase::Request, message)
}

/// Whether a 401/403 names the token: `WWW-Authenticate: Bearer error="invalid_token"`,
/// or a body such as `{"message":"Failed to validate JWT."}`.
pub fn is_jwt_rejection(headers: &HeaderMap, body: &[u8]) -> bool {
    static INVALID_TOKEN: OnceLock<Option<Regex>> = OnceLock::new();
    static TOKEN_WORD: OnceLock<Option<Regex>> = OnceLock::new();
    static FAILURE_WORD: OnceLock<Option<Regex>> = OnceLock::new();
    let invalid_token = INVALID_TOKEN
        .get_or_init(|| Regex::new(r#"(?i)^\s*bearer\b.*\berror\s*=\s*"?invalid_token"#).ok());
    let token_word =
        TOKEN_WORD.get_or_init(|| Regex::new(r"(?i)\b(jwt|jws|token|bearer)s?\b").ok());
    let failure_word = FAILURE_WORD.get_or_init(|| {
        Regex::new(r"(?i)(invalid|expired|fail|validat|verif|malformed|signature|reject|revoked|bad|not valid|unable)").ok()
    });
    let header_says = headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| invalid_token.as_ref().is_some_and(|r| r.is_match(v)));
    if header_says {
        return true;
    }
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    token_word.as_ref().is_some_and(|r| r.is_match(&text))
        && failure_word.as_ref().is_some_and(|r| r.is_match(&text))
}

/// The start of a body, on one line, for messages.
pub fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(400)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Sends `req` over `io` (HTTP/2 when `h2`) and reads the answer, at most
/// `max_body` bytes of body. `auth` says whether the server asked for a client
/// certificate during the handshake, to name a rejection that arrives now.
pub async fn send<IO>(
    io: IO,
    h2: bool,
    req: http::Request<Full<Bytes>>,
    max_body: usize,
    auth: ClientAuth,
) -> Result<Answer, ProbeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, slot) = Tap::new(io);
    let result = exchange(TokioIo::new(io), h2, req, max_body).await;
    result.map_err(|e| {
        let tapped = slot.lock().ok().and_then(|s| s.clone());
        match tapped {
            Some(Tapped { tls: Some(tls), .. }) => {
                let (class, message) = classify(&tls, auth);
                ProbeError::new(class, Phase::Tls, message)
            }
            Some(t) => {
                transport::classify_stream(Phase::Request, &std::io::Error::new(t.kind, t.text))
            }
            None => e,
        }
    })
}

async fn exchange<IO>(
    io: TokioIo<IO>,
    h2: bool,
    req: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<Answer, ProbeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(request_error)?;
        drive(conn, async move {
            read_answer(sender.send_request(req).await?, max_body).await
        })
        .await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(request_error)?;
        drive(conn, async move {
            read_answer(sender.send_request(req).await?, max_body).await
        })
        .await
    }
}

/// Polls the connection and the exchange together until the exchange is done.
async fn drive<C, F>(conn: C, exchange: F) -> Result<Answer, ProbeError>
where
    C: Future<Output = Result<(), hyper::Error>>,
    F: Future<Output = Result<Answer, hyper::Error>>,
{
    tokio::pin!(conn);
    tokio::pin!(exchange);
    tokio::select! {
        r = &mut exchange => r.map_err(request_error),
        c = &mut conn => match c {
            Err(e) => Err(request_error(e)),
            Ok(()) => exchange.await.map_err(request_error),
        },
    }
}

async fn read_answer(
    resp: http::Response<hyper::body::Incoming>,
    max_body: usize,
) -> Result<Answer, hyper::Error> {
    let (parts, mut body) = resp.into_parts();
    let mut buf = BytesMut::new();
    while buf.len() < max_body {
        match body.frame().await {
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    let room = max_body - buf.len();
                    buf.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            None => break,
        }
    }
    Ok(Answer {
        status: parts.status,
        version: format!("{:?}", parts.version),
        headers: parts.headers,
        body: buf.freeze(),
    })
}

/// The class of a failed exchange.
fn request_error(e: hyper::Error) -> ProbeError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return transport::classify_stream(Phase::Request, io);
        }
        cur = err.source();
    }
    if let Some(tls) = transport::classify::find_rustls_error(&e) {
        let (class, message) = transport::classify::classify(tls, Default::default());
        return ProbeError::new(class, Phase::Tls, message);
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ProbeError::new(
            ErrorType::ConnectionReset,
            Phase::Request,
            "the server closed the connection before answering",
        );
    }
    if e.is_parse() {
        return ProbeError::new(
            ErrorType::UnexpectedResponse,
            Phase::Request,
            format!("the answer is not valid HTTP: {e}"),
        );
    }
    ProbeError::new(
        ErrorType::ConnectionReset,
        Phase::Request,
        format!("HTTP exchange failed: {e}"),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn jwt_rejections_are_recognised() {
        assert!(is_jwt_rejection(
            &headers(&[(
                "www-authenticate",
                r#"Bearer realm="api", error="invalid_token""#
            )]),
            b""
        ));
        assert!(is_jwt_rejection(
            &HeaderMap::new(),
            br#"{"message":"Failed to validate JWT."}"#
        ));
        assert!(is_jwt_rejection(
            &HeaderMap::new(),
            br#"{"error":"token expired"}"#
        ));
        assert!(!is_jwt_rejection(
            &HeaderMap::new(),
            br#"{"message":"invalid username or password"}"#
        ));
        assert!(!is_jwt_rejection(
            &headers(&[("www-authenticate", r#"Basic realm="x""#)]),
            b"Unauthorized"
        ));
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet(b"a\n  b\tc"), "a b c");
        assert_eq!(snippet(b""), "(empty body)");
        assert!(snippet(&[b'x'; 500]).ends_with('…'));
    }
}
