//! MongoDB wire-protocol framing: reading requests (OP_MSG, and the legacy OP_QUERY
//! that old drivers use for their first `isMaster`) and writing replies (OP_MSG, or
//! OP_REPLY to an OP_QUERY).
//!
//! Every message starts with a 16-byte header: total length, request id, the id
//! it responds to, and the opcode, all little-endian `i32`.

use bson::{Bson, Document};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// OP_REPLY: the answer to an OP_QUERY.
pub const OP_REPLY: i32 = 1;
/// OP_QUERY: legacy query; commands go to `<db>.$cmd`.
pub const OP_QUERY: i32 = 2004;
/// OP_MSG: every modern request and reply.
pub const OP_MSG: i32 = 2013;

/// The largest message accepted (the server's `maxMessageSizeBytes`).
pub const MAX_MESSAGE: usize = 48_000_000;

/// OP_MSG flag: a CRC-32C checksum ends the message.
const CHECKSUM_PRESENT: u32 = 1;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a message this server understands.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// A command as received.
#[derive(Debug)]
pub struct Request {
    /// The request id, to answer to.
    pub id: i32,
    /// OP_MSG or OP_QUERY.
    pub op: i32,
    /// The command document (OP_MSG document sequences folded in as arrays).
    pub body: Document,
}

impl Request {
    /// The command's name: the body's first key.
    pub fn command(&self) -> &str {
        self.body.keys().next().map_or("", String::as_str)
    }
}

/// Reads one request.
pub async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> Result<Request, WireError> {
    let len = r.read_i32_le().await?;
    let id = r.read_i32_le().await?;
    let _response_to = r.read_i32_le().await?;
    let op = r.read_i32_le().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (16..=MAX_MESSAGE).contains(l))
        .ok_or_else(|| WireError::Malformed(format!("length {len}")))?;
    let mut rest = vec![0u8; len - 16];
    r.read_exact(&mut rest).await?;
    let body = match op {
        OP_MSG => parse_msg(&rest)?,
        OP_QUERY => parse_query(&rest)?,
        other => return Err(WireError::Malformed(format!("opcode {other}"))),
    };
    Ok(Request { id, op, body })
}

fn parse_msg(bytes: &[u8]) -> Result<Document, WireError> {
    let bad = |what: &str| WireError::Malformed(format!("OP_MSG: {what}"));
    let flags = u32::from_le_bytes(
        bytes
            .get(..4)
            .ok_or_else(|| bad("no flags"))?
            .try_into()
            .map_err(|_| bad("flags"))?,
    );
    let end = if flags & CHECKSUM_PRESENT != 0 {
        bytes
            .len()
            .checked_sub(4)
            .ok_or_else(|| bad("no checksum"))?
    } else {
        bytes.len()
    };
    let mut at = 4;
    let mut body: Option<Document> = None;
    let mut sequences: Vec<(String, Vec<Bson>)> = Vec::new();
    while at < end {
        let kind = bytes[at];
        at += 1;
        match kind {
            0 => {
                let len = doc_len(&bytes[at..end]).ok_or_else(|| bad("section 0 length"))?;
                let doc = Document::from_reader(&bytes[at..at + len])
                    .map_err(|e| bad(&format!("section 0: {e}")))?;
                body = Some(doc);
                at += len;
            }
            1 => {
                let size = doc_len(&bytes[at..end]).ok_or_else(|| bad("section 1 length"))?;
                let section = &bytes[at + 4..at + size];
                let nul = section
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or_else(|| bad("section 1 identifier"))?;
                let ident = String::from_utf8_lossy(&section[..nul]).into_owned();
                let mut docs = Vec::new();
                let mut p = nul + 1;
                while p < section.len() {
                    let l = doc_len(&section[p..]).ok_or_else(|| bad("sequence document"))?;
                    let d = Document::from_reader(&section[p..p + l])
                        .map_err(|e| bad(&format!("sequence: {e}")))?;
                    docs.push(Bson::Document(d));
                    p += l;
                }
                sequences.push((ident, docs));
                at += size;
            }
            other => return Err(bad(&format!("section kind {other}"))),
        }
    }
    let mut body = body.ok_or_else(|| bad("no body section"))?;
    for (ident, docs) in sequences {
        body.insert(ident, Bson::Array(docs));
    }
    Ok(body)
}

fn parse_query(bytes: &[u8]) -> Result<Document, WireError> {
    let bad = |what: &str| WireError::Malformed(format!("OP_QUERY: {what}"));
    // flags (4), collection name (cstring), numberToSkip (4), numberToReturn (4), query
    let name_end = bytes
        .get(4..)
        .and_then(|b| b.iter().position(|c| *c == 0))
        .ok_or_else(|| bad("collection name"))?
        + 4;
    let collection = String::from_utf8_lossy(&bytes[4..name_end]).into_owned();
    if !collection.ends_with(".$cmd") {
        return Err(bad(&format!(
            "only commands are served, not queries on {collection}"
        )));
    }
    let at = name_end + 1 + 8;
    let len = bytes
        .get(at..)
        .and_then(doc_len)
        .ok_or_else(|| bad("query document"))?;
    let query = Document::from_reader(&bytes[at..at + len]).map_err(|e| bad(&e.to_string()))?;
    // Old drivers may wrap the command: {$query: {...}, $readPreference: ...}.
    match query.get_document("$query") {
        Ok(inner) => Ok(inner.clone()),
        Err(_) => Ok(query),
    }
}

/// The length of the BSON document starting `bytes`, when it fits.
fn doc_len(bytes: &[u8]) -> Option<usize> {
    let len = i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    (len >= 5 && len <= bytes.len()).then_some(len)
}

/// Writes `reply` as the answer to `request`: OP_REPLY for an OP_QUERY, OP_MSG
/// otherwise.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    request: &Request,
    reply_id: i32,
    reply: &Document,
) -> Result<(), WireError> {
    let mut doc = Vec::new();
    reply
        .to_writer(&mut doc)
        .map_err(|e| WireError::Malformed(format!("reply: {e}")))?;
    let mut payload = Vec::with_capacity(doc.len() + 24);
    let op = if request.op == OP_QUERY {
        payload.extend_from_slice(&0i32.to_le_bytes()); // responseFlags
        payload.extend_from_slice(&0i64.to_le_bytes()); // cursorID
        payload.extend_from_slice(&0i32.to_le_bytes()); // startingFrom
        payload.extend_from_slice(&1i32.to_le_bytes()); // numberReturned
        payload.extend_from_slice(&doc);
        OP_REPLY
    } else {
        payload.extend_from_slice(&0u32.to_le_bytes()); // flags: no moreToCome
        payload.push(0); // section kind 0: the body
        payload.extend_from_slice(&doc);
        OP_MSG
    };
    let total = i32::try_from(16 + payload.len())
        .map_err(|_| WireError::Malformed("reply too large".into()))?;
    let mut out = Vec::with_capacity(16 + payload.len());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&reply_id.to_le_bytes());
    out.extend_from_slice(&request.id.to_le_bytes());
    out.extend_from_slice(&op.to_le_bytes());
    out.extend_from_slice(&payload);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Writes a command as an OP_QUERY on `admin.$cmd` (what an old driver sends first),
/// for the tests of this server itself.
pub async fn write_op_query<W: AsyncWrite + Unpin>(
    w: &mut W,
    id: i32,
    command: &Document,
) -> Result<(), WireError> {
    let mut doc = Vec::new();
    command
        .to_writer(&mut doc)
        .map_err(|e| WireError::Malformed(format!("query: {e}")))?;
    let mut payload = Vec::new();
    payload.extend_from_slice(&0i32.to_le_bytes());
    payload.extend_from_slice(b"admin.$cmd\0");
    payload.extend_from_slice(&0i32.to_le_bytes());
    payload.extend_from_slice(&(-1i32).to_le_bytes());
    payload.extend_from_slice(&doc);
    let total = i32::try_from(16 + payload.len())
        .map_err(|_| WireError::Malformed("query too large".into()))?;
    let mut out = Vec::new();
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&OP_QUERY.to_le_bytes());
    out.extend_from_slice(&payload);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Reads an OP_REPLY's first document (for the tests of this server itself).
pub async fn read_op_reply<R: AsyncRead + Unpin>(r: &mut R) -> Result<(i32, Document), WireError> {
    let len = r.read_i32_le().await?;
    let _id = r.read_i32_le().await?;
    let response_to = r.read_i32_le().await?;
    let op = r.read_i32_le().await?;
    if op != OP_REPLY {
        return Err(WireError::Malformed(format!(
            "expected OP_REPLY, got opcode {op}"
        )));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (36..=MAX_MESSAGE).contains(l))
        .ok_or_else(|| WireError::Malformed(format!("length {len}")))?;
    let mut rest = vec![0u8; len - 16];
    r.read_exact(&mut rest).await?;
    let doc =
        Document::from_reader(&rest[20..]).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok((response_to, doc))
}
