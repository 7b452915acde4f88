//! AMQP 0-9-1 frames on a probe's connection: written and parsed by `amq-protocol`,
//! read with a size cap and the run's deadline.

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::{Io, classify_stream};

/// The most bytes buffered for one frame before the tune: the broker's greeting is
/// a few hundred bytes; a peer that sends more is not an AMQP broker.
const MAX_FRAME: usize = 64 * 1024;

/// The deepest nesting of field tables and arrays parsed. A broker's
/// `server-properties` nest two deep (`capabilities`); the size cap alone would
/// allow some 13,000 levels.
pub(super) const MAX_DEPTH: usize = 32;

/// How much of a frame the buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// A whole frame (or protocol header) of this many bytes is at the start.
    Whole(usize),
    /// More bytes are needed.
    Partial,
    /// The frame's header announces this many bytes, more than [`MAX_FRAME`].
    TooLarge(u64),
}

/// The general frame layout: type (1), channel (2), size (4), payload, end octet;
/// or the 8-byte protocol header a broker answers with to refuse a version.
fn whole_frame(buf: &[u8]) -> Framing {
    if buf.starts_with(b"AMQP") || (buf.len() < 4 && b"AMQP".starts_with(buf) && !buf.is_empty())
    {
        return if buf.len() >= 8 {
            Framing::Whole(8)
        } else {
            Framing::Partial
        };
    }
    let Some(size) = buf.get(3..7) else {
        return Framing::Partial;
    };
    let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
    let len = 7 + u64::from(size) + 1;
    if len > MAX_FRAME as u64 {
        return Framing::TooLarge(len);
    }
    let len = len as usize;
    if buf.len() >= len {
        Framing::Whole(len)
    } else {
        Framing::Partial
    }
}

/// Refuses a whole frame whose field tables nest deeper than [`MAX_DEPTH`], before
/// the recursive parser sees it. A value tagged `F` (table) or `A` (array) is needed
/// for each level, so a frame with at most [`MAX_DEPTH`] such bytes anywhere is
/// shallow enough as it is. Otherwise the depth is measured exactly where this
/// probe's frames carry tables (`Connection.Start`, and `Connection.Start-Ok`,
/// which amq-protocol parses too); any other frame that could hold tables (a
/// content header, a method of a class other than `connection`) has no business
/// on a connection that opened no channel and is refused.
fn check_depth(frame: &[u8], phase: Phase) -> Result<(), ProbeError> {
    let tags = frame.iter().filter(|b| matches!(b, b'F' | b'A')).count();
    if frame.starts_with(b"AMQP") || tags <= MAX_DEPTH {
        return Ok(());
    }
    let refuse = |why: String| Err(ProbeError::new(ErrorType::UnexpectedResponse, phase, why));
    let payload = &frame[7..frame.len() - 1];
    let (frame_type, class, method) = (
        frame[0],
        payload.get(0..2).map(|c| u16::from_be_bytes([c[0], c[1]])),
        payload.get(2..4).map(|m| u16::from_be_bytes([m[0], m[1]])),
    );
    let table = match (frame_type, class, method) {
        // Connection.Start: version-major, version-minor, server-properties.
        (1, Some(10), Some(10)) => payload.get(6..),
        // Connection.Start-Ok: client-properties.
        (1, Some(10), Some(11)) => payload.get(4..),
        // Every other method of `connection` carries no table.
        (1, Some(10), Some(_)) => return Ok(()),
        // Bodies and heartbeats carry none either.
        (3 | 8, _, _) => return Ok(()),
        _ => {
            return refuse(format!(
                "the server sent an AMQP frame of type {frame_type} (class {}) that may hold field tables on a connection that opened no channel",
                class.unwrap_or_default()
            ));
        }
    };
    let depth = table.map(table_depth).unwrap_or(0);
    if depth > MAX_DEPTH {
        return refuse(format!(
            "the server's Connection.Start nests field tables more than {MAX_DEPTH} deep; the probe parses at most {MAX_DEPTH} levels"
        ));
    }
    Ok(())
}

/// How deep the field table at the start of `bytes` nests tables and arrays,
/// measured without recursion (past [`MAX_DEPTH`], the count stops). A malformed
/// or truncated table ends the walk: the parser refuses it where it stops, no
/// deeper.
fn table_depth(bytes: &[u8]) -> usize {
    /// An open table or array: where it ends, and whether its entries are named.
    struct Open {
        end: usize,
        named: bool,
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(len) = u32_at(0) else {
        return 0;
    };
    let mut open = vec![Open {
        end: 4 + len,
        named: true,
    }];
    let mut at = 4;
    let mut deepest = 1;
    while let Some(top) = open.last() {
        if at >= top.end {
            open.pop();
            continue;
        }
        if top.named {
            // A short string: its length octet, then the name.
            let Some(&n) = bytes.get(at) else { break };
            at += 1 + usize::from(n);
        }
        let Some(&tag) = bytes.get(at) else { break };
        at += 1;
        let fixed = match tag {
            b'V' => 0,
            b't' | b'b' | b'B' => 1,
            b'U' | b'u' | b's' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'L' | b'l' | b'd' | b'T' => 8,
            b'S' | b'x' => match u32_at(at) {
                Some(n) => 4 + n,
                None => break,
            },
            b'F' | b'A' => {
                let Some(n) = u32_at(at) else { break };
                open.push(Open {
                    end: at + 4 + n,
                    named: tag == b'F',
                });
                at += 4;
                deepest = deepest.max(open.len());
                if deepest > MAX_DEPTH {
                    break;
                }
                continue;
            }
            _ => break,
        };
        at += fixed;
    }
    deepest
}

/// What the probe makes of untrusted bytes as the start of its buffer: `Ok(None)`
/// while more are needed, `Ok(Some(len))` for a whole frame that was measured and
/// parsed, an error for one refused (too large, too deep, not AMQP). For the fuzz
/// target: the same path as [`Wire::next`], without the connection.
pub fn read_untrusted_frame(buf: &[u8]) -> Result<Option<usize>, ProbeError> {
    let unexpected = |why: String| ProbeError::new(ErrorType::UnexpectedResponse, Phase::Connect, why);
    match whole_frame(buf) {
        Framing::Partial => Ok(None),
        Framing::TooLarge(len) => Err(unexpected(format!("a frame of {len} bytes"))),
        Framing::Whole(len) => {
            check_depth(&buf[..len], Phase::Connect)?;
            match parse_frame(&buf[..len]) {
                Ok((rest, _)) => Ok(Some(len - rest.len())),
                Err(e) => Err(unexpected(format!("not AMQP 0-9-1: {e:?}"))),
            }
        }
    }
}

/// A connection speaking AMQP frames.
pub(super) struct Wire {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

/// What ended a read that produced no frame.
pub(super) enum Ended {
    /// The broker closed the connection.
    Closed,
    /// A failure, already classified.
    Failed(ProbeError),
}

impl From<ProbeError> for Ended {
    fn from(e: ProbeError) -> Self {
        Ended::Failed(e)
    }
}

impl Wire {
    pub(super) fn new(io: Box<dyn Io>) -> Wire {
        Wire {
            io,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Writes raw bytes (the protocol header).
    pub(super) async fn send_raw(&mut self, bytes: &[u8], phase: Phase) -> Result<(), ProbeError> {
        self.io
            .write_all(bytes)
            .await
            .map_err(|e| classify_stream(phase, &e))?;
        self.io
            .flush()
            .await
            .map_err(|e| classify_stream(phase, &e))
    }

    /// Writes one frame.
    pub(super) async fn send(&mut self, frame: &AMQPFrame, phase: Phase) -> Result<(), ProbeError> {
        let bytes = gen_frame(frame)(WriteContext::from(Vec::new()))
            .map_err(|e| {
                ProbeError::new(
                    ErrorType::UnexpectedResponse,
                    phase,
                    format!("an AMQP frame could not be written: {e}"),
                )
            })?
            .into_inner()
            .0;
        self.send_raw(&bytes, phase).await
    }

    /// The next frame that is not a heartbeat. A frame is parsed only once it is
    /// whole and its field tables have been found shallow enough ([`MAX_DEPTH`]):
    /// `amq-protocol` parses tables by recursion, and a frame of nested tables
    /// within the size cap would otherwise overflow the stack and abort the agent.
    pub(super) async fn next(&mut self, phase: Phase) -> Result<AMQPFrame, Ended> {
        loop {
            match whole_frame(&self.buf) {
                Framing::Whole(len) => {
                    check_depth(&self.buf[..len], phase)?;
                    let frame = self.parse(len, phase)?;
                    if matches!(frame, AMQPFrame::Heartbeat) {
                        continue;
                    }
                    return Ok(frame);
                }
                Framing::TooLarge(len) => {
                    return Err(ProbeError::new(
                        ErrorType::UnexpectedResponse,
                        phase,
                        format!(
                            "the server announced an AMQP frame of {len} bytes; before the tune the probe reads at most {MAX_FRAME}"
                        ),
                    )
                    .into());
                }
                Framing::Partial => {}
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .io
                .read(&mut chunk)
                .await
                .map_err(|e| classify_stream(phase, &e))?;
            if n == 0 {
                return Err(Ended::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Parses the whole frame at the start of the buffer (`len` bytes) and drops it
    /// from the buffer.
    fn parse(&mut self, len: usize, phase: Phase) -> Result<AMQPFrame, ProbeError> {
        match parse_frame(&self.buf[..len]) {
            Ok((rest, frame)) => {
                let used = len - rest.len();
                self.buf.drain(..used);
                Ok(frame)
            }
            Err(_) => Err(ProbeError::new(
                ErrorType::UnexpectedResponse,
                phase,
                format!(
                    "the server's reply is not AMQP 0-9-1 (first bytes: {})",
                    crate::transport::http_client::snippet(&self.buf[..self.buf.len().min(16)])
                ),
            )),
        }
    }

    /// Closes the TCP/TLS stream (best effort).
    pub(super) async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Connection.Start frame whose server-properties nest `depth` tables.
    fn deep_start(depth: usize) -> Vec<u8> {
        // Innermost first: an empty table; each level wraps the previous in an
        // entry named "a" of type F.
        let mut table: Vec<u8> = 0u32.to_be_bytes().to_vec();
        for _ in 1..depth {
            let mut entry = vec![1, b'a', b'F'];
            entry.extend_from_slice(&table);
            let mut next = (entry.len() as u32).to_be_bytes().to_vec();
            next.extend_from_slice(&entry);
            table = next;
        }
        let mut payload = vec![0, 10, 0, 10, 0, 9];
        payload.extend_from_slice(&table);
        payload.extend_from_slice(&5u32.to_be_bytes());
        payload.extend_from_slice(b"PLAIN");
        payload.extend_from_slice(&5u32.to_be_bytes());
        payload.extend_from_slice(b"en_US");
        let mut frame = vec![1, 0, 0];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(0xCE);
        frame
    }

    #[test]
    fn the_depth_of_nested_tables_is_measured_without_recursion() {
        for depth in [1, 2, 31, 32, 33, 9_000] {
            let frame = deep_start(depth);
            assert_eq!(whole_frame(&frame), Framing::Whole(frame.len()));
            let measured = table_depth(&frame[7 + 6..]);
            assert_eq!(measured, depth.min(MAX_DEPTH + 1), "depth {depth}");
            let checked = check_depth(&frame, Phase::Connect);
            assert_eq!(checked.is_ok(), depth <= MAX_DEPTH, "depth {depth}");
        }
    }

    #[test]
    fn a_shallow_start_still_parses() {
        let frame = deep_start(3);
        check_depth(&frame, Phase::Connect).unwrap();
        let (_, parsed) = parse_frame(frame.as_slice()).unwrap();
        assert!(matches!(parsed, AMQPFrame::Method(0, _)), "{parsed:?}");
    }

    #[test]
    fn an_oversized_announcement_is_refused_before_it_is_read() {
        let header = [1u8, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(whole_frame(&header), Framing::TooLarge(0xFFFF_FFFF + 8));
        assert_eq!(whole_frame(&header[..5]), Framing::Partial);
        assert_eq!(whole_frame(b"AMQP\0\0"), Framing::Partial);
        assert_eq!(whole_frame(b"AMQP\0\0\x09\x01"), Framing::Whole(8));
    }
}
