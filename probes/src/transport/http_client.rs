//! The HTTP(S) exchange every HTTP-based kind shares: credentials read for the run,
//! dial, TLS, one request driven by hyper over our own connection, and the naming
//! of a refused answer.
//!
//! hyper is driven by hand so that DNS, connect, TLS and the request are each timed
//! and classified. A kind builds one [`HttpClient`] from its settings, asks it for
//! the run's `Authorization` header (token files may have rotated), calls
//! [`HttpClient::exchange`] for each request, and judges the [`Answer`] itself;
//! [`classify_status`] names an unexpected status: a CDN's 525/526 is
//! `upstream_tls_error`, a 401/403 that names the token is `jwt_rejected`, other
//! 401/403 are `auth_rejected`, anything else `http_status`.

use std::future::Future;
use std::sync::OnceLock;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use regex::Regex;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use depprobe_config::http::HttpCredentials;
use depprobe_config::{Secret, SecretSource};

use super::classify::{ClientAuth, classify};
use super::tap::{Tap, Tapped};
use super::tls::TlsClient;
use super::{Dns, classify_stream, dial};
use crate::BuildError;
use crate::credentials;
use crate::run::{ProbeError, Run};
use crate::secrets::read_secret;
use crate::taxonomy::{ErrorType, Phase};

/// How requests authenticate.
enum Auth {
    Bearer(SecretSource),
    Basic {
        user: String,
        password: Option<SecretSource>,
    },
}

/// An HTTP(S) client for one probe: its TLS settings, headers and credentials.
pub struct HttpClient {
    tls: TlsClient,
    dns: Dns,
    headers: Vec<(HeaderName, Secret)>,
    auth: Option<Auth>,
    accept: HeaderValue,
    max_body: usize,
}

/// What only the configured origin may receive: the request's own headers and
/// the `Authorization` header (the probe's configured headers go with them).
#[derive(Clone, Copy)]
struct Credentials<'a> {
    extra_headers: &'a [(HeaderName, Secret)],
    authorization: Option<&'a HeaderValue>,
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
    /// Whether the body was longer than the limit (and cut).
    pub truncated: bool,
    /// The run's secrets, kept out of every text made of the answer.
    pub secrets: Vec<Secret>,
    /// The server ended the connection without TLS `close_notify` (the answer was
    /// read to that end, as curl reads it).
    pub unclean_close: bool,
    /// Whether the handshake carried a CertificateRequest, and whether the probe
    /// answered it with a certificate.
    pub client_auth: ClientAuth,
}

impl Answer {
    /// The start of the body, on one line, for messages: secrets replaced before
    /// it is cut, so that no part of one stays.
    pub fn snippet(&self) -> String {
        if self.secrets.is_empty() {
            return snippet(&self.body);
        }
        let mut text = String::from_utf8_lossy(&self.body).into_owned();
        let secrets: Vec<&str> = self.secrets.iter().map(Secret::expose).collect();
        crate::outcome::scrub(&mut text, &secrets);
        snippet(text.as_bytes())
    }
}

impl HttpClient {
    /// A client sending `creds` with every request, `accept` as the `Accept`
    /// header, and reading at most `max_body` bytes of each answer's body.
    pub fn new(
        creds: HttpCredentials<'_>,
        tls: TlsClient,
        dns: Dns,
        accept: &'static str,
        max_body: usize,
    ) -> Result<HttpClient, BuildError> {
        let mut headers = Vec::new();
        for (name, value) in creds.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::Invalid(format!("`{name}` is not a header name")))?;
            headers.push((n, value.clone()));
        }
        let auth = match (creds.bearer_source(), creds.basic_auth) {
            (Some(src), _) => Some(Auth::Bearer(src)),
            (None, Some(b)) => Some(Auth::Basic {
                user: b.username.clone(),
                password: b.password_source(),
            }),
            (None, None) => None,
        };
        Ok(HttpClient {
            tls,
            dns,
            headers,
            auth,
            accept: HeaderValue::from_static(accept),
            max_body,
        })
    }

    /// The configured request headers (values are secrets).
    pub fn headers(&self) -> &[(HeaderName, Secret)] {
        &self.headers
    }

    /// The `Authorization` header, reading token files now (they may have rotated).
    /// A missing token is `credential_missing` in phase `auth`, before any request.
    pub fn authorization(&self, run: &mut Run<'_>) -> Result<Option<HeaderValue>, ProbeError> {
        let value = match &self.auth {
            None => return Ok(None),
            Some(Auth::Bearer(src)) => {
                let token = read_secret(src, "bearer token")?;
                run.secret(&token);
                // A JWT past its `exp` is named here, not left to a bare 401.
                let (finding, claims) = credentials::judge_token(
                    "the bearer token",
                    token.expose(),
                    run.now(),
                    None,
                    None,
                )?;
                run.findings.extend(finding);
                if let Some(exp) = claims.as_ref().and_then(credentials::expiry) {
                    credentials::record_expiry(run, exp);
                }
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

    /// One request to `url` on a new connection: DNS, connect, TLS (for
    /// `https://`; its facts and findings go into `run`), then the exchange, with
    /// the configured headers, `extra_headers` and `authorization`.
    pub async fn exchange(
        &self,
        run: &mut Run<'_>,
        method: &Method,
        url: &Url,
        body: Option<&Bytes>,
        extra_headers: &[(HeaderName, Secret)],
        authorization: Option<&HeaderValue>,
    ) -> Result<Answer, ProbeError> {
        let creds = Credentials {
            extra_headers,
            authorization,
        };
        self.exchange_with(run, method, url, body, Some(creds))
            .await
    }

    /// One request as [`HttpClient::exchange`], but with no credential and none
    /// of the configured headers: for a URL of another origin than the
    /// configured one (a redirect), where they must not go.
    pub async fn exchange_anonymous(
        &self,
        run: &mut Run<'_>,
        method: &Method,
        url: &Url,
        body: Option<&Bytes>,
    ) -> Result<Answer, ProbeError> {
        self.exchange_with(run, method, url, body, None).await
    }

    async fn exchange_with(
        &self,
        run: &mut Run<'_>,
        method: &Method,
        url: &Url,
        body: Option<&Bytes>,
        creds: Option<Credentials<'_>>,
    ) -> Result<Answer, ProbeError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let trace = run.trace_headers();
        let tcp = dial(run, &self.dns, &host, port).await?;
        let mut answer = if url.scheme() == "https" {
            let now = run.now();
            let mut session = run
                .phase(Phase::Tls, self.tls.handshake(tcp, &host, now))
                .await?;
            let h2 = session.facts.alpn.as_deref() == Some("h2");
            session.adopt(run);
            let req = self.request(method, url, body, h2, creds, &trace)?;
            let auth = session.client_auth;
            run.phase(
                Phase::Request,
                send(session.stream, h2, req, self.max_body, auth),
            )
            .await?
        } else {
            let req = self.request(method, url, body, false, creds, &trace)?;
            run.phase(
                Phase::Request,
                send(tcp, false, req, self.max_body, ClientAuth::default()),
            )
            .await?
        };
        answer.secrets = run.secrets().cloned().collect();
        Ok(answer)
    }

    fn request(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Bytes>,
        h2: bool,
        creds: Option<Credentials<'_>>,
        trace: &[(&'static str, String)],
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
        let mut b = http::Request::builder().method(method.clone()).uri(target);
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
            .header(http::header::ACCEPT, self.accept.clone());
        // Trace context goes to every origin: it names the probe's span, not a secret.
        for (name, value) in trace {
            b = b.header(*name, value.as_str());
        }
        let mut req = b
            .body(Full::new(body.cloned().unwrap_or_default()))
            .map_err(bad)?;
        let Some(Credentials {
            extra_headers,
            authorization,
        }) = creds
        else {
            return Ok(req);
        };
        // A configured header replaces the default of the same name (`Accept`), and
        // a request's own header replaces the probe's.
        for (name, value) in self.headers.iter().chain(extra_headers) {
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                ProbeError::new(
                    ErrorType::CredentialInvalid,
                    Phase::Request,
                    format!("header {name} has a value that cannot be sent"),
                )
            })?;
            v.set_sensitive(true);
            req.headers_mut().insert(name.clone(), v);
        }
        if let Some(a) = authorization {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, a.clone());
        }
        Ok(req)
    }
}

/// The class of an answer whose status was not expected.
pub fn classify_status(answer: &Answer) -> ProbeError {
    let code = answer.status.as_u16();
    let reason = answer.status.canonical_reason().unwrap_or("");
    let body = answer.snippet();
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
        // nginx with `ssl_verify_client on` completes a handshake without a client
        // certificate and answers 400 "No required SSL certificate was sent" (496
        // with `error_page`); the handshake had asked for one.
        400 | 496
            if answer.client_auth.asked && !answer.client_auth.sent && {
                code == 496
                    || String::from_utf8_lossy(&answer.body[..answer.body.len().min(4096)])
                        .contains("No required SSL certificate was sent")
            } =>
        {
            return ProbeError::new(
                ErrorType::TlsClientCertRequired,
                Phase::Tls,
                format!(
                    "the server asked for a client certificate in the handshake and none was sent; it answered HTTP {code}: {body}"
                ),
            );
        }
        // 495: nginx's "SSL Certificate Error", the certificate sent was refused.
        495 if answer.client_auth.asked => {
            return ProbeError::new(
                ErrorType::TlsClientCertRequired,
                Phase::Tls,
                format!(
                    "the server refused the client certificate (HTTP 495 SSL Certificate Error): {body}"
                ),
            );
        }
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
    let (io, slot, unclean) = Tap::lenient(io);
    let result = exchange(TokioIo::new(io), h2, req, max_body).await;
    result
        .map(|mut answer| {
            answer.unclean_close = unclean.load(std::sync::atomic::Ordering::SeqCst);
            answer.client_auth = auth;
            answer
        })
        .map_err(|e| {
            let tapped = slot.lock().ok().and_then(|s| s.clone());
            match tapped {
                Some(Tapped { tls: Some(tls), .. }) => {
                    let (class, message) = classify(&tls, auth);
                    ProbeError::new(class, Phase::Tls, message)
                }
                Some(t) => classify_stream(Phase::Request, &std::io::Error::new(t.kind, t.text)),
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
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let room = max_body - buf.len();
        if data.len() > room {
            buf.extend_from_slice(&data[..room]);
            truncated = true;
            break;
        }
        buf.extend_from_slice(&data);
    }
    Ok(Answer {
        status: parts.status,
        version: format!("{:?}", parts.version),
        headers: parts.headers,
        body: buf.freeze(),
        truncated,
        secrets: Vec::new(),
        unclean_close: false,
        client_auth: ClientAuth::default(),
    })
}

/// The class of a failed exchange.
fn request_error(e: hyper::Error) -> ProbeError {
    if let Some(violation) = super::classify::h2_violation(&e) {
        return violation;
    }
    if let Some(io) = super::classify::find_in_chain::<std::io::Error>(&e) {
        return classify_stream(Phase::Request, io);
    }
    if let Some(tls) = super::classify::find_rustls_error(&e) {
        let (class, message) = classify(tls, Default::default());
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
