//! `tls.ocsp: online`: the responder named in the leaf's Authority Information
//! Access is asked over HTTP (RFC 6960, appendix A: a POST of the DER request).
//!
//! A responder is a dependency of its own, and a hostile or broken one must not
//! stall or rob the probe: the whole exchange (DNS, connect, request, response) has
//! its own deadline (`tls.ocsp_timeout`), the response is read up to
//! [`MAX_RESPONSE`] bytes, redirects are not followed, and only `http://` is spoken
//! (OCSP over TLS would need OCSP to check its own certificate). A verified answer
//! is kept until its `nextUpdate` (at most [`MAX_KEEP`]), so a probe every 30
//! seconds asks the responder about once per response period, as a browser would.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use x509_cert::serial_number::SerialNumber;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::response::{self, Answer, Issuer, ReadError};
use crate::transport::{Dns, dial};

/// The largest response read (real ones are 1 to 4 KiB; a few delegated
/// certificates fit too).
pub(crate) const MAX_RESPONSE: usize = 64 * 1024;

/// The longest an answer is kept, whatever its `nextUpdate` says.
pub(crate) const MAX_KEEP: Duration = Duration::from_secs(7 * 86_400);

/// Answers kept per probe (a probe sees one leaf, two around a renewal).
const CACHE_ENTRIES: usize = 8;

/// id-ad-ocsp.
const ACCESS_OCSP: &str = "1.3.6.1.5.5.7.48.1";

/// Why the responder gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    /// The leaf names no responder.
    #[error(
        "the certificate names no OCSP responder (no OCSP entry in its Authority Information Access)"
    )]
    NoResponder,
    /// The responder's address is not `http://host[:port]/...`.
    #[error("the OCSP responder address `{0}` is not an http:// URL")]
    Unsupported(String),
    /// DNS or TCP failed.
    #[error("the OCSP responder {url} cannot be reached: {message}")]
    Unreachable {
        /// The responder.
        url: String,
        /// Why.
        message: String,
    },
    /// No complete answer within the deadline.
    #[error("the OCSP responder {url} did not answer within {after:?} (tls.ocsp_timeout)")]
    Timeout {
        /// The responder.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// An HTTP status other than 200.
    #[error("the OCSP responder {url} answered HTTP {status}")]
    Status {
        /// The responder.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The HTTP exchange broke, or the body was too long.
    #[error("the OCSP responder {url} failed: {message}")]
    Exchange {
        /// The responder.
        url: String,
        /// Why.
        message: String,
    },
    /// The response does not count.
    #[error("the answer of the OCSP responder {url} is not usable: {error}")]
    Unusable {
        /// The responder.
        url: String,
        /// Why.
        error: ReadError,
    },
}

/// One answer kept.
struct Kept {
    /// The leaf's SHA-256.
    leaf: Vec<u8>,
    /// The responder asked.
    url: String,
    /// The answer.
    answer: Answer,
    /// Until when it is used.
    until: SystemTime,
}

/// The online OCSP client of one probe, with its answers kept.
pub(crate) struct Online {
    /// The deadline of one exchange.
    timeout: Duration,
    /// Verified answers, until their `nextUpdate`.
    kept: Mutex<Vec<Kept>>,
}

impl std::fmt::Debug for Online {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Online")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Online {
    /// A client whose exchanges last at most `timeout`.
    pub(crate) fn new(timeout: Duration) -> Online {
        Online {
            timeout,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The responder's answer about `leaf` (issued by `issuer`), from the answers
    /// kept while current, else asked now; with the responder's address.
    pub(crate) async fn ask(
        &self,
        leaf: &CertificateDer<'_>,
        serial: &SerialNumber,
        issuer: &Issuer,
        now: SystemTime,
    ) -> Result<(Answer, String), AskError> {
        let fingerprint = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref());
        if let Some(kept) = self.kept(fingerprint.as_ref(), now) {
            return Ok(kept);
        }
        let url = responder(leaf).ok_or(AskError::NoResponder)?;
        let body = response::request(serial, issuer).map_err(|e| AskError::Exchange {
            url: url.clone(),
            message: format!("cannot encode the request: {e}"),
        })?;
        let der = tokio::time::timeout(self.timeout, post(&url, body))
            .await
            .map_err(|_| AskError::Timeout {
                url: url.clone(),
                after: self.timeout,
            })??;
        let answer =
            response::read(&der, serial, issuer, now).map_err(|error| AskError::Unusable {
                url: url.clone(),
                error,
            })?;
        self.keep(fingerprint.as_ref(), &url, &answer, now);
        Ok((answer, url))
    }

    /// A kept answer about the leaf with this fingerprint, if still current.
    fn kept(&self, leaf: &[u8], now: SystemTime) -> Option<(Answer, String)> {
        let kept = self.kept.lock().ok()?;
        kept.iter()
            .find(|k| k.leaf == leaf && now < k.until)
            .map(|k| (k.answer.clone(), k.url.clone()))
    }

    /// Keeps `answer` until its `nextUpdate` (capped); one without is not kept.
    fn keep(&self, leaf: &[u8], url: &str, answer: &Answer, now: SystemTime) {
        let Some(next) = answer.next_update else {
            return;
        };
        let until = next.min(now + MAX_KEEP);
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        kept.retain(|k| k.leaf != leaf && now < k.until);
        if kept.len() >= CACHE_ENTRIES {
            kept.sort_by_key(|k| k.until);
            kept.remove(0);
        }
        kept.push(Kept {
            leaf: leaf.to_vec(),
            url: url.to_owned(),
            answer: answer.clone(),
            until,
        });
    }
}

/// The first `http://` OCSP responder in the leaf's Authority Information Access
/// (any other scheme is returned too, and refused by [`post`]).
pub(crate) fn responder(leaf: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref()).ok()?;
    let mut urls = cert
        .extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => Some(aia),
            _ => None,
        });
    let aia = urls.next()?;
    let found: Vec<String> = aia
        .accessdescs
        .iter()
        .filter(|d| d.access_method.to_id_string() == ACCESS_OCSP)
        .filter_map(|d| match &d.access_location {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect();
    found
        .iter()
        .find(|u| u.starts_with("http://"))
        .or(found.first())
        .cloned()
}

/// The resolver for responders' names: the system's, made once.
fn dns() -> Option<&'static Dns> {
    static DNS: OnceLock<Option<Dns>> = OnceLock::new();
    DNS.get_or_init(|| Dns::system().ok()).as_ref()
}

/// POSTs `body` to the responder at `url` and returns the response body.
async fn post(url: &str, body: Vec<u8>) -> Result<Vec<u8>, AskError> {
    let parsed = url::Url::parse(url).map_err(|_| AskError::Unsupported(url.to_owned()))?;
    let (Some(host), "http") = (parsed.host_str(), parsed.scheme()) else {
        return Err(AskError::Unsupported(url.to_owned()));
    };
    let port = parsed.port_or_known_default().unwrap_or(80);
    let unreachable = |message: String| AskError::Unreachable {
        url: url.to_owned(),
        message,
    };
    let dns = dns().ok_or_else(|| unreachable("no DNS resolver".into()))?;
    let addrs = dns
        .resolve(host, port)
        .await
        .map_err(|e| unreachable(e.message))?;
    let tcp = dial::connect(&addrs)
        .await
        .map_err(|e| unreachable(e.message))?;
    let exchange = |message: String| AskError::Exchange {
        url: url.to_owned(),
        message,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| exchange(e.to_string()))?;
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let request = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .header(http::header::ACCEPT, "application/ocsp-response")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| exchange(e.to_string()))?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| exchange(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(AskError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| {
                exchange(format!(
                    "{e} (a response is read up to {MAX_RESPONSE} bytes)"
                ))
            })?;
        Ok(body.to_bytes().to_vec())
    };
    // The connection is driven here, not spawned: when the deadline drops this
    // future, the socket closes with it. A connection that ends first has handed
    // over what it read; the answer then completes or fails on its own.
    tokio::pin!(answer);
    tokio::select! {
        biased;
        result = &mut answer => result,
        _ = conn => answer.await,
    }
}
