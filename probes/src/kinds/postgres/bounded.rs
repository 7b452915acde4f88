//! A cap on the size of every backend message, checked against the length the
//! server announces before the message is buffered.
//!
//! tokio-postgres reads a whole message before it decodes it, and believes the
//! length prefix: a server that announces a 2 GiB message is buffered as the bytes
//! arrive. [`Bounded`] sits between tokio-postgres and the connection (above TLS),
//! follows the framing of what is read (a type byte, a 4-byte length that counts
//! itself, the body), and fails the read as soon as a header announces more than
//! [`MAX_MESSAGE`]; the violation is kept so that the run reports it as
//! `unexpected_response`, naming the cap.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsStream};

/// The largest backend message read: the probe's query returns one value, and no
/// greeting, error or parameter message comes near it.
pub const MAX_MESSAGE: u64 = 1 << 20;

/// What the cap refused, once it has.
pub type Violation = Arc<Mutex<Option<String>>>;

/// A stream whose backend messages are held to [`MAX_MESSAGE`].
pub struct Bounded<S> {
    inner: S,
    /// The header of the next message, as far as read.
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to come.
    body_left: u64,
    violation: Violation,
}

impl<S> Bounded<S> {
    /// `inner`, with messages held to [`MAX_MESSAGE`].
    pub fn new(inner: S) -> Bounded<S> {
        Bounded {
            inner,
            header: [0; 5],
            have: 0,
            body_left: 0,
            violation: Violation::default(),
        }
    }

    /// Where a refused message is described.
    pub fn violation(&self) -> Violation {
        self.violation.clone()
    }

    /// Follows the framing over `bytes`, newly read; an error once a header
    /// announces a message over the cap.
    pub fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(bytes.len() as u64);
                self.body_left -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            let take = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have < 5 {
                continue;
            }
            self.have = 0;
            let h = self.header;
            let length = u64::from(u32::from_be_bytes([h[1], h[2], h[3], h[4]]));
            let body = length.saturating_sub(4);
            if body > MAX_MESSAGE {
                let what = format!(
                    "the server announced a backend message ({}) of {length} bytes; the probe reads at most {} MiB per message",
                    describe_type(h[0]),
                    MAX_MESSAGE >> 20
                );
                if let Ok(mut v) = self.violation.lock() {
                    v.get_or_insert(what.clone());
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, what));
            }
            self.body_left = body;
        }
        Ok(())
    }
}

/// A message type byte as text: `'D'` or `0x00`.
fn describe_type(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("type '{}'", byte as char)
    } else {
        format!("type 0x{byte:02x}")
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = buf.filled()[before..].to_vec();
                Poll::Ready(self.follow(&new))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Bounded<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_within_the_cap_pass_in_any_split() {
        let mut wire = Vec::new();
        for body in [0usize, 3, 1000] {
            wire.push(b'D');
            wire.extend_from_slice(&((body + 4) as u32).to_be_bytes());
            wire.extend(std::iter::repeat_n(7u8, body));
        }
        for split in 1..wire.len() {
            let mut b = Bounded::new(());
            for piece in wire.chunks(split) {
                b.follow(piece).unwrap();
            }
            assert_eq!((b.have, b.body_left), (0, 0), "split {split}");
        }
    }

    #[test]
    fn an_announced_message_over_the_cap_is_refused_at_its_header() {
        let mut b = Bounded::new(());
        b.follow(b"R\0\0\0\x08\0\0\0\0").unwrap();
        let e = b.follow(b"E\x7f\xff").and_then(|()| b.follow(b"\xff\xff"));
        let e = e.unwrap_err().to_string();
        assert!(e.contains("type 'E'") && e.contains("2147483647"), "{e}");
        let kept = b.violation().lock().unwrap().clone().unwrap();
        assert_eq!(kept, e);
    }
}
