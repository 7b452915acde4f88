//! A relay between the driver and every member: the driver's connections go
//! through it, and each reply is held to a size and a nesting depth before the
//! driver sees it.
//!
//! The driver deserialises BSON by recursion and believes a reply's length up to
//! 48 MB: a member whose `hello` nests 10,000 documents (80 KB) overflowed the
//! stack and aborted the whole agent. The driver takes no custom stream, but it
//! does take a SOCKS5 proxy for every connection it opens (seeds, members it
//! discovers, its monitors), so the probe runs one on loopback for its driver
//! client. The relay dials each member with depprobe's own transport (the probe's
//! DNS, its TLS client: the same trust, client certificate and chain checks as the
//! member dials), and passes the member's replies on whole, once [`check_reply`]
//! has measured them without recursion. A reply over a bound closes that
//! connection; the violation is kept so that the run reports it as
//! `unexpected_response`, naming the bound.
//!
//! The relay listens on 127.0.0.1 and asks for a user name and password that only
//! its driver client knows (random per relay), so that nothing else on the host can
//! use it to reach a member with the probe's client certificate.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mongodb::bson::RawDocument;
use mongodb::bson::raw::RawBsonRef;
use mongodb::options::Socks5Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::members::member_address;
use super::watch::{MemberError, RelayedFailures};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::tls::TlsClient;
use crate::transport::{self, Dns, Io};

/// The largest reply passed on: the probe's commands (`hello`, `ping`, the login)
/// are answered in a few kilobytes, whatever the size of the set.
pub const MAX_REPLY: usize = 1 << 20;

/// The deepest nesting of documents and arrays passed on: the replies the probe
/// reads nest four levels; MongoDB itself refuses to store more than 100.
pub const MAX_DEPTH: usize = 100;

/// `OP_REPLY`: the legacy reply (to a handshake sent as `OP_QUERY`).
const OP_REPLY: i32 = 1;
/// `OP_MSG`: every other reply.
const OP_MSG: i32 = 2013;
/// The header every message starts with: length, request id, response to, opcode.
const HEADER: usize = 16;

/// What the relay refused first, for the run to report.
type Violation = Arc<Mutex<Option<ProbeError>>>;

/// The probe's relay: a SOCKS5 endpoint on loopback for its driver client.
pub struct Relay {
    address: SocketAddr,
    user: String,
    password: String,
    violation: Violation,
    accept: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// How the relay reaches a member, and where it says why it could not.
#[derive(Clone)]
struct Dialer {
    dns: Dns,
    tls: Option<TlsClient>,
    limit: Duration,
    failures: RelayedFailures,
}

impl Relay {
    /// Listens on a free loopback port; each connection is dialled with `dns` and
    /// `tls` (no TLS when `None`), within `limit`; why a member could not be
    /// reached, or what it sent that was refused, goes to `failures`.
    pub async fn start(
        dns: Dns,
        tls: Option<TlsClient>,
        limit: Duration,
        failures: RelayedFailures,
    ) -> Result<Relay, ProbeError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
            ProbeError::new(
                ErrorType::InternalError,
                Phase::Connect,
                format!("cannot listen on loopback for the driver's relay: {e}"),
            )
        })?;
        let address = listener.local_addr().map_err(|e| {
            ProbeError::new(
                ErrorType::InternalError,
                Phase::Connect,
                format!("the driver's relay has no address: {e}"),
            )
        })?;
        let (user, password) = (random_token()?, random_token()?);
        let violation = Violation::default();
        let dialer = Dialer {
            dns,
            tls,
            limit,
            failures,
        };
        let accept = tokio::spawn(accept_loop(
            listener,
            dialer,
            (user.clone(), password.clone()),
            violation.clone(),
        ));
        Ok(Relay {
            address,
            user,
            password,
            violation,
            accept,
        })
    }

    /// The proxy setting that sends the driver's connections here.
    pub fn proxy(&self) -> Socks5Proxy {
        Socks5Proxy::builder()
            .host(self.address.ip().to_string())
            .port(self.address.port())
            .authentication((self.user.clone(), self.password.clone()))
            .build()
    }

    /// What the relay refused since the last call, if anything.
    pub fn take_violation(&self) -> Option<ProbeError> {
        self.violation.lock().ok().and_then(|mut v| v.take())
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// 128 random bits, hex, from the system's random source.
fn random_token() -> Result<String, ProbeError> {
    let mut bits = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bits).map_err(|_| {
        ProbeError::new(
            ErrorType::InternalError,
            Phase::Connect,
            "the system's random source failed: no login for the driver's relay",
        )
    })?;
    Ok(bits.iter().map(|b| format!("{b:02x}")).collect())
}

async fn accept_loop(
    listener: TcpListener,
    dialer: Dialer,
    login: (String, String),
    violation: Violation,
) {
    let login = Arc::new(login);
    while let Ok((client, _)) = listener.accept().await {
        let (dialer, login, violation) = (dialer.clone(), login.clone(), violation.clone());
        tokio::spawn(async move {
            let _ = relay_one(client, &dialer, &login, &violation).await;
        });
    }
}

/// Why a relayed connection ended early (nothing to report: the driver sees the
/// connection close and reports the member as it would).
struct Ended;

impl From<std::io::Error> for Ended {
    fn from(_: std::io::Error) -> Ended {
        Ended
    }
}

/// One driver connection: the SOCKS5 greeting and request, the dial, then the
/// bytes both ways, the member's replies checked whole.
async fn relay_one(
    mut client: TcpStream,
    dialer: &Dialer,
    login: &(String, String),
    violation: &Violation,
) -> Result<(), Ended> {
    let greeting = tokio::time::timeout(dialer.limit, socks_accept(&mut client, login)).await;
    let Ok(Ok((host, port))) = greeting else {
        return Err(Ended);
    };
    let opened = tokio::time::timeout(dialer.limit, dialer.open(&host, port)).await;
    let member = match opened {
        Ok(Ok(io)) => {
            dialer.note(&host, port, None);
            io
        }
        Ok(Err(e)) => {
            dialer.note(&host, port, Some(&e));
            let _ = client.write_all(&socks_reply(REPLY_REFUSED)).await;
            return Err(Ended);
        }
        Err(_) => {
            let e = ProbeError::deadline(Phase::Connect, dialer.limit);
            dialer.note(&host, port, Some(&e));
            let _ = client.write_all(&socks_reply(REPLY_UNREACHABLE)).await;
            return Err(Ended);
        }
    };
    client.write_all(&socks_reply(REPLY_OK)).await?;
    let (mut from_driver, mut to_driver) = client.into_split();
    let (mut from_member, mut to_member) = tokio::io::split(member);
    let requests = async {
        let _ = tokio::io::copy(&mut from_driver, &mut to_member).await;
        let _ = to_member.shutdown().await;
    };
    let replies = async {
        if let Err(why) = pass_replies(&mut from_member, &mut to_driver).await {
            dialer.note(&host, port, Some(&why));
            keep(violation, in_member(&host, port, why));
        }
    };
    // Either side closing ends the connection.
    tokio::select! {
        () = requests => {}
        () = replies => {}
    }
    Ok(())
}

/// `e`, said of the member at `host:port`.
fn in_member(host: &str, port: u16, mut e: ProbeError) -> ProbeError {
    e.message = format!("member {}: {}", member_address(host, port), e.message);
    e
}

/// Keeps the first violation until the run takes it.
fn keep(violation: &Violation, e: ProbeError) {
    if let Ok(mut v) = violation.lock()
        && v.is_none()
    {
        *v = Some(e);
    }
}

impl Dialer {
    /// Records why `host:port` could not be used, or that it could.
    fn note(&self, host: &str, port: u16, failure: Option<&ProbeError>) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        let key = member_address(host, port).to_ascii_lowercase();
        match failure {
            Some(e) => {
                failures.insert(
                    key,
                    MemberError {
                        class: e.class,
                        message: e.message.clone(),
                    },
                );
            }
            None => {
                failures.remove(&key);
            }
        }
    }

    /// DNS, TCP and TLS to a member, as the member dials do.
    async fn open(&self, host: &str, port: u16) -> Result<Box<dyn Io>, ProbeError> {
        let addrs = self.dns.resolve(host, port).await?;
        let tcp = transport::connect(&addrs).await?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let session = tls.handshake(tcp, host, SystemTime::now()).await?;
                Ok(Box::new(session.stream))
            }
        }
    }
}

/// Copies the member's replies to the driver, each read whole and checked first;
/// `Err` with the violation when one is refused, `Ok` when either side closes.
async fn pass_replies<R, W>(from: &mut R, to: &mut W) -> Result<(), ProbeError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut message = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        if from.read_exact(&mut header).await.is_err() {
            return Ok(());
        }
        let length = reply_length(&header)?;
        message.clear();
        message.extend_from_slice(&header);
        message.resize(length, 0);
        if from.read_exact(&mut message[HEADER..]).await.is_err() {
            return Ok(());
        }
        check_reply(&message)?;
        if to.write_all(&message).await.is_err() {
            return Ok(());
        }
        // A large reply's buffer is not kept for the small ones that follow.
        if message.capacity() > 64 * 1024 {
            message = Vec::new();
        }
    }
}

/// The length a message header announces, held to [`MAX_REPLY`].
fn reply_length(header: &[u8; HEADER]) -> Result<usize, ProbeError> {
    let announced = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    match usize::try_from(announced) {
        Ok(n) if (HEADER..=MAX_REPLY).contains(&n) => Ok(n),
        Ok(n) if n > MAX_REPLY => Err(refused(format!(
            "a reply announced as {n} bytes; the probe reads at most {} MiB per reply",
            MAX_REPLY >> 20
        ))),
        _ => Err(refused(format!(
            "a reply whose header announces {announced} bytes (less than its own header)"
        ))),
    }
}

/// Checks a whole message (`OP_MSG` or `OP_REPLY`, header included): its documents
/// nest at most [`MAX_DEPTH`] deep, measured without recursion. Other opcodes and
/// bytes that are not BSON are passed on for the driver to refuse (its walk over
/// them stops where this one does).
pub fn check_reply(message: &[u8]) -> Result<(), ProbeError> {
    if message.len() < HEADER {
        return Ok(());
    }
    let opcode = i32::from_le_bytes([message[12], message[13], message[14], message[15]]);
    let body = &message[HEADER..];
    match opcode {
        OP_MSG => check_op_msg(body),
        OP_REPLY => body.get(20..).map_or(Ok(()), check_documents),
        _ => Ok(()),
    }
}

/// `OP_MSG`: flag bits, then sections (a body document, or a sized sequence of
/// documents after an identifier), then an optional checksum.
fn check_op_msg(body: &[u8]) -> Result<(), ProbeError> {
    let Some(flags) = body.get(..4) else {
        return Ok(());
    };
    let checksum = flags[0] & 1 == 1;
    let end = body.len().saturating_sub(if checksum { 4 } else { 0 });
    let mut at = 4;
    while at < end {
        let kind = body[at];
        at += 1;
        let Some(size) = read_len(body, at) else {
            return Ok(());
        };
        let Some(section) = body.get(at..(at + size).min(end)) else {
            return Ok(());
        };
        match kind {
            0 => check_documents(section)?,
            1 => {
                let rest = section.get(4..).unwrap_or_default();
                let Some(nul) = rest.iter().position(|b| *b == 0) else {
                    return Ok(());
                };
                check_documents(&rest[nul + 1..])?;
            }
            _ => return Ok(()),
        }
        at += size;
    }
    Ok(())
}

/// The little-endian length at `at`, as a size.
fn read_len(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    usize::try_from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
}

/// Documents one after another, each measured.
fn check_documents(mut bytes: &[u8]) -> Result<(), ProbeError> {
    while let Some(size) = read_len(bytes, 0) {
        let Some(one) = bytes.get(..size) else {
            return Ok(());
        };
        check_depth(one)?;
        bytes = &bytes[size..];
        if size == 0 {
            break;
        }
    }
    Ok(())
}

/// The values of one document or array, as the walk meets them.
type Values<'a> = Box<dyn Iterator<Item = mongodb::bson::raw::Result<RawBsonRef<'a>>> + 'a>;

/// The values of `doc`.
fn values(doc: &RawDocument) -> Values<'_> {
    Box::new(doc.iter().map(|e| e.map(|(_, v)| v)))
}

/// Walks one document depth first with a stack of its own, and refuses it once it
/// nests deeper than [`MAX_DEPTH`].
fn check_depth(bytes: &[u8]) -> Result<(), ProbeError> {
    let Ok(doc) = RawDocument::from_bytes(bytes) else {
        return Ok(());
    };
    let mut stack: Vec<Values<'_>> = vec![values(doc)];
    while let Some(top) = stack.last_mut() {
        let nested: Option<Values<'_>> = match top.next() {
            None => {
                stack.pop();
                continue;
            }
            Some(Err(_)) => return Ok(()),
            Some(Ok(RawBsonRef::Document(d))) => Some(values(d)),
            Some(Ok(RawBsonRef::Array(a))) => Some(Box::new(a.into_iter())),
            Some(Ok(RawBsonRef::JavaScriptCodeWithScope(c))) => Some(values(c.scope)),
            Some(Ok(_)) => None,
        };
        if let Some(inner) = nested {
            if stack.len() >= MAX_DEPTH {
                return Err(refused(format!(
                    "a reply nests documents more than {MAX_DEPTH} deep; the probe refuses it before the driver decodes it"
                )));
            }
            stack.push(inner);
        }
    }
    Ok(())
}

/// A reply refused by the relay.
fn refused(what: String) -> ProbeError {
    ProbeError::new(ErrorType::UnexpectedResponse, Phase::Auth, what)
}

// SOCKS5 (RFC 1928, RFC 1929), the server's side of what the driver asks: a
// username/password login, then CONNECT to a member.

/// The SOCKS version.
const SOCKS5: u8 = 5;
/// The username/password method, and its sub-negotiation's version.
const USER_PASS: u8 = 2;
/// Reply codes.
const REPLY_OK: u8 = 0;
/// See [`REPLY_OK`].
const REPLY_UNREACHABLE: u8 = 4;
/// See [`REPLY_OK`].
const REPLY_REFUSED: u8 = 5;

/// Reads the greeting, the login and a CONNECT request: the member's host and port.
async fn socks_accept(
    client: &mut TcpStream,
    (user, password): &(String, String),
) -> Result<(String, u16), Ended> {
    let [version, count] = read_array::<2>(client).await?;
    let mut methods = vec![0u8; usize::from(count)];
    client.read_exact(&mut methods).await?;
    if version != SOCKS5 || !methods.contains(&USER_PASS) {
        client.write_all(&[SOCKS5, 0xFF]).await?;
        return Err(Ended);
    }
    client.write_all(&[SOCKS5, USER_PASS]).await?;
    let [_, user_len] = read_array::<2>(client).await?;
    let mut given_user = vec![0u8; usize::from(user_len)];
    client.read_exact(&mut given_user).await?;
    let [pass_len] = read_array::<1>(client).await?;
    let mut given_pass = vec![0u8; usize::from(pass_len)];
    client.read_exact(&mut given_pass).await?;
    let ok = same(&given_user, user.as_bytes()) & same(&given_pass, password.as_bytes());
    client.write_all(&[1, u8::from(!ok)]).await?;
    if !ok {
        return Err(Ended);
    }
    let [_, command, _, kind] = read_array::<4>(client).await?;
    let host = match kind {
        1 => std::net::Ipv4Addr::from(read_array::<4>(client).await?).to_string(),
        4 => std::net::Ipv6Addr::from(read_array::<16>(client).await?).to_string(),
        3 => {
            let [len] = read_array::<1>(client).await?;
            let mut name = vec![0u8; usize::from(len)];
            client.read_exact(&mut name).await?;
            String::from_utf8(name).map_err(|_| Ended)?
        }
        _ => return Err(Ended),
    };
    let port = u16::from_be_bytes(read_array::<2>(client).await?);
    if command != 1 {
        let _ = client.write_all(&socks_reply(7)).await;
        return Err(Ended);
    }
    Ok((host, port))
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn read_array<const N: usize>(client: &mut TcpStream) -> Result<[u8; N], Ended> {
    let mut bytes = [0u8; N];
    client.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// A reply to a CONNECT request (the bound address is not used by the driver).
fn socks_reply(code: u8) -> [u8; 10] {
    [SOCKS5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{Document, doc};

    /// A document nesting `depth` values of BSON type `kind` (3: documents, 4:
    /// arrays) under `d`, built as bytes (a `Document` that deep would overflow the
    /// test's own stack when written or dropped).
    fn nested_as(depth: usize, kind: u8) -> Vec<u8> {
        let mut bytes = vec![5, 0, 0, 0, 0];
        for _ in 0..depth {
            let len = (4 + 1 + 2 + bytes.len() + 1) as i32;
            let mut outer = len.to_le_bytes().to_vec();
            outer.extend_from_slice(&[kind, b'd', 0]);
            outer.extend_from_slice(&bytes);
            outer.push(0);
            bytes = outer;
        }
        bytes
    }

    fn nested(depth: usize) -> Vec<u8> {
        nested_as(depth, 3)
    }

    fn op_msg(doc: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((HEADER + 5 + doc.len()) as i32).to_le_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&OP_MSG.to_le_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0]);
        m.extend_from_slice(doc);
        m
    }

    fn op_reply(doc: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((HEADER + 20 + doc.len()) as i32).to_le_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&OP_REPLY.to_le_bytes());
        m.extend_from_slice(&[0; 16]);
        m.extend_from_slice(&1i32.to_le_bytes());
        m.extend_from_slice(doc);
        m
    }

    #[test]
    fn replies_nesting_up_to_the_bound_pass() {
        let shallow = nested(3);
        let read = RawDocument::from_bytes(&shallow).unwrap();
        assert!(read.get_document("d").unwrap().get_document("d").is_ok());
        // The top document and MAX_DEPTH - 1 nested ones.
        assert!(check_reply(&op_msg(&nested(MAX_DEPTH - 1))).is_ok());
        assert!(check_reply(&op_reply(&nested(MAX_DEPTH - 1))).is_ok());
    }

    #[test]
    fn a_reply_nesting_ten_thousand_documents_is_refused_without_recursion() {
        for message in [op_msg(&nested(10_000)), op_reply(&nested(10_000))] {
            let e = check_reply(&message).unwrap_err();
            assert_eq!(e.class, ErrorType::UnexpectedResponse);
            assert!(e.message.contains("more than 100 deep"), "{}", e.message);
        }
        assert!(check_reply(&op_msg(&nested(MAX_DEPTH))).is_err());
    }

    #[test]
    fn arrays_count_as_nesting() {
        let bytes = nested_as(200, 4);
        assert!(RawDocument::from_bytes(&bytes).is_ok());
        assert!(check_reply(&op_msg(&bytes)).is_err());
        assert!(check_reply(&op_msg(&nested_as(50, 4))).is_ok());
    }

    #[test]
    fn a_real_hello_passes_and_broken_bytes_are_left_to_the_driver() {
        let hello: Document = doc! { "isWritablePrimary": true, "hosts": ["a:1", "b:2"], "topologyVersion": { "counter": 1_i64 }, "ok": 1.0 };
        let mut bytes = Vec::new();
        hello.to_writer(&mut bytes).unwrap();
        assert!(check_reply(&op_msg(&bytes)).is_ok());
        let mut broken = op_msg(&bytes);
        broken.truncate(broken.len() - 7);
        assert!(check_reply(&broken).is_ok());
        assert!(check_reply(&[0xFF; 40]).is_ok());
    }

    #[test]
    fn announced_lengths_are_held_to_the_cap() {
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(MAX_REPLY as i32).to_le_bytes());
        assert_eq!(reply_length(&header).unwrap(), MAX_REPLY);
        header[..4].copy_from_slice(&(48_000_000i32).to_le_bytes());
        let e = reply_length(&header).unwrap_err();
        assert!(e.message.contains("at most 1 MiB"), "{}", e.message);
        header[..4].copy_from_slice(&(-5i32).to_le_bytes());
        assert!(reply_length(&header).is_err());
    }
}
