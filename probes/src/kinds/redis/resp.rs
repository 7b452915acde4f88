//! Redis commands and replies over depprobe's own stream, encoded and decoded with
//! `redis-protocol` (RESP2).
//!
//! A reply is refused past [`MAX_REPLY`] bytes or [`MAX_DEPTH`] nested arrays: a
//! probe only reads short replies (`+OK`, `+PONG`, `ROLE`, `INFO server`), and a
//! hostile peer must make it neither allocate without bound nor recurse deeply (the
//! decoder recurses once per level). The nesting is measured by a linear scan before
//! the decoder runs; the decoder starts again from the start of the buffer when more
//! bytes arrive, and the size bound keeps that cheap.

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify_stream;

/// The largest reply read.
pub const MAX_REPLY: usize = 256 * 1024;

/// The deepest nesting of arrays a reply may have (`ROLE` has 3).
const MAX_DEPTH: usize = 8;

/// A Redis connection.
pub struct Resp<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Resp<S> {
    /// A connection over `io`.
    pub fn new(io: S) -> Self {
        Resp {
            io,
            buf: Vec::new(),
        }
    }

    /// Sends `QUIT` (without waiting for its `+OK`) and closes the stream, within
    /// a short wait.
    pub async fn quit(&mut self) {
        crate::transport::goodbye(&mut self.io, b"*1\r\n$4\r\nQUIT\r\n").await;
    }

    /// Sends the command `args` and reads its reply, as `phase`.
    #[cfg(test)]
    pub async fn call(&mut self, args: &[&[u8]], phase: Phase) -> Result<OwnedFrame, ProbeError> {
        self.send(&[args], phase).await?;
        self.reply(phase).await
    }

    /// Sends `commands` in one write (pipelined: one round trip for all), as
    /// `phase`; their replies are then read in order with [`Resp::reply`].
    pub async fn send(&mut self, commands: &[&[&[u8]]], phase: Phase) -> Result<(), ProbeError> {
        let mut out = Vec::new();
        for args in commands {
            let frame = OwnedFrame::Array(
                args.iter()
                    .map(|a| OwnedFrame::BulkString(a.to_vec()))
                    .collect(),
            );
            let at = out.len();
            out.resize(at + frame.encode_len(false), 0);
            encode(&mut out[at..], &frame, false).map_err(|e| {
                ProbeError::new(
                    ErrorType::UnexpectedResponse,
                    phase,
                    format!("the command could not be encoded: {e}"),
                )
            })?;
        }
        self.io
            .write_all(&out)
            .await
            .map_err(|e| classify_stream(phase, &e))?;
        self.io
            .flush()
            .await
            .map_err(|e| classify_stream(phase, &e))
    }

    /// Reads one reply.
    pub async fn reply(&mut self, phase: Phase) -> Result<OwnedFrame, ProbeError> {
        loop {
            if !self.buf.is_empty() {
                check_shape(&self.buf, phase)?;
                match decode(&self.buf) {
                    Ok(Some((frame, used))) => {
                        self.buf.drain(..used);
                        return Ok(frame);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(ProbeError::new(
                            ErrorType::UnexpectedResponse,
                            phase,
                            format!(
                                "the reply is not RESP ({}): is this a Redis port?",
                                e.details()
                            ),
                        ));
                    }
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .io
                .read(&mut chunk)
                .await
                .map_err(|e| classify_stream(phase, &e))?;
            if n == 0 {
                return Err(ProbeError::new(
                    ErrorType::ConnectionReset,
                    phase,
                    "the server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Refuses a reply that is too large or nested too deeply.
fn check_shape(buf: &[u8], phase: Phase) -> Result<(), ProbeError> {
    if buf.len() > MAX_REPLY {
        return Err(ProbeError::new(
            ErrorType::UnexpectedResponse,
            phase,
            format!("the reply is larger than the {MAX_REPLY} bytes a probe reads"),
        ));
    }
    if depth(buf) > MAX_DEPTH {
        return Err(ProbeError::new(
            ErrorType::UnexpectedResponse,
            phase,
            format!("the reply nests arrays more than {MAX_DEPTH} deep"),
        ));
    }
    Ok(())
}

/// The deepest nesting of arrays in the part of `buf` received so far, found in one
/// pass over its lines (bulk string bodies are skipped by their length); it stops
/// counting past [`MAX_DEPTH`].
fn depth(buf: &[u8]) -> usize {
    // Items still to come in each open array.
    let mut open: Vec<i64> = Vec::new();
    let mut deepest = 0;
    let mut pos = 0;
    while let Some(len) = buf
        .get(pos..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"\r\n"))
    {
        let kind = buf[pos];
        let line = buf.get(pos + 1..pos + len).unwrap_or_default();
        pos += len + 2;
        let n: i64 = std::str::from_utf8(line)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if kind == b'*' && n > 0 {
            open.push(n);
            deepest = deepest.max(open.len());
            if deepest > MAX_DEPTH {
                break;
            }
            continue;
        }
        if kind == b'$' && n > 0 {
            pos = pos
                .saturating_add(usize::try_from(n).unwrap_or(usize::MAX))
                .saturating_add(2);
        }
        // One item is complete: so is every array it completes.
        while let Some(left) = open.last_mut() {
            *left -= 1;
            if *left > 0 {
                break;
            }
            open.pop();
        }
    }
    deepest
}

/// The text of a simple or bulk string reply.
pub fn text(frame: &OwnedFrame) -> Option<String> {
    match frame {
        OwnedFrame::SimpleString(b) | OwnedFrame::BulkString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reply_in_pieces_is_read_whole() {
        let (client, mut server) = tokio::io::duplex(1024);
        let peer = tokio::spawn(async move {
            let mut cmd = [0u8; 14];
            server.read_exact(&mut cmd).await.unwrap();
            assert_eq!(&cmd, b"*1\r\n$4\r\nPING\r\n");
            server.write_all(b"+PO").await.unwrap();
            server.write_all(b"NG\r\n").await.unwrap();
            server
        });
        let mut resp = Resp::new(client);
        let reply = resp.call(&[b"PING"], Phase::Request).await.unwrap();
        assert_eq!(text(&reply).as_deref(), Some("PONG"));
        drop(peer.await.unwrap());
    }

    #[tokio::test]
    async fn deep_nesting_is_refused_without_recursing() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let hostile = b"*1\r\n".repeat(5000);
        let peer = tokio::spawn(async move {
            let mut cmd = [0u8; 14];
            server.read_exact(&mut cmd).await.unwrap();
            server.write_all(&hostile).await.unwrap();
            server
        });
        let mut resp = Resp::new(client);
        let e = resp.call(&[b"ROLE"], Phase::Request).await.unwrap_err();
        assert_eq!(e.class, ErrorType::UnexpectedResponse);
        assert!(e.message.contains("deep"), "{}", e.message);
        drop(peer.await.unwrap());
    }

    #[test]
    fn depth_counts_nesting_not_arrays() {
        // ROLE of a master with two replicas: depth 2 while the reply is open.
        let role = b"*3\r\n$6\r\nmaster\r\n:0\r\n*2\r\n*3\r\n$4\r\n10.0\r\n";
        assert_eq!(depth(role), 3);
        let many = b"*3\r\n".repeat(2);
        assert_eq!(depth(&many), 2);
        let flat = b"*100\r\n"
            .to_vec()
            .into_iter()
            .chain(b":1\r\n".repeat(100))
            .collect::<Vec<_>>();
        assert_eq!(depth(&flat), 1);
        let closed = b"*1\r\n"
            .repeat(20)
            .into_iter()
            .chain(b":1\r\n".to_vec())
            .collect::<Vec<_>>();
        assert!(
            depth(&closed) > MAX_DEPTH,
            "a complete deep reply is still deep"
        );
    }

    #[tokio::test]
    async fn a_plaintext_http_answer_is_not_resp() {
        let (client, mut server) = tokio::io::duplex(1024);
        let peer = tokio::spawn(async move {
            let mut cmd = [0u8; 14];
            server.read_exact(&mut cmd).await.unwrap();
            server
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await
                .unwrap();
            server
        });
        let mut resp = Resp::new(client);
        let e = resp.call(&[b"PING"], Phase::Request).await.unwrap_err();
        assert_eq!(e.class, ErrorType::UnexpectedResponse);
        drop(peer.await.unwrap());
    }
}
