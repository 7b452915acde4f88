//! Keeps the typed cause of a stream's first I/O error.
//!
//! HTTP/2 (h2) turns the I/O errors of its connection into strings, so by the time
//! a request fails, the `rustls::Error` that caused it (a TLS 1.3 server rejecting
//! the client certificate on the first read) is gone. The tap sits between hyper
//! and the TLS stream and remembers the first error as it passes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::classify::find_rustls_error;

/// The first error seen by a [`Tap`].
#[derive(Clone, Debug)]
pub struct Tapped {
    /// The I/O error's kind.
    pub kind: io::ErrorKind,
    /// Its text.
    pub text: String,
    /// The TLS error inside it, if any.
    pub tls: Option<rustls::Error>,
}

/// Where a [`Tap`] records.
pub type TapSlot = Arc<Mutex<Option<Tapped>>>;

/// A stream wrapper that records the first error of `inner`.
pub struct Tap<IO> {
    inner: IO,
    slot: TapSlot,
    /// Set when the peer closed without TLS `close_notify` and the read was taken
    /// as the end of the stream ([`Tap::lenient`]).
    unclean_close: Option<Arc<AtomicBool>>,
}

impl<IO> Tap<IO> {
    /// Wraps `inner`; the first error will be in the returned slot.
    pub fn new(inner: IO) -> (Tap<IO>, TapSlot) {
        let slot: TapSlot = Arc::new(Mutex::new(None));
        (
            Tap {
                inner,
                slot: slot.clone(),
                unclean_close: None,
            },
            slot,
        )
    }

    /// As [`Tap::new`], but a peer that closes the connection without TLS
    /// `close_notify` ends the stream, as curl and OpenSSL-based HTTP clients take
    /// it, instead of failing the read: the end of a close-delimited HTTP/1.0 body
    /// (Python's `http.server` over `ssl`, many appliances). A body announced by
    /// length or chunks still fails as incomplete if it was cut. The returned flag
    /// says whether that happened.
    pub fn lenient(inner: IO) -> (Tap<IO>, TapSlot, Arc<AtomicBool>) {
        let (mut tap, slot) = Tap::new(inner);
        let flag = Arc::new(AtomicBool::new(false));
        tap.unclean_close = Some(flag.clone());
        (tap, slot, flag)
    }

    fn note<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r
            && let Ok(mut slot) = self.slot.lock()
            && slot.is_none()
        {
            *slot = Some(Tapped {
                kind: e.kind(),
                text: e.to_string(),
                tls: find_rustls_error(e).cloned(),
            });
        }
        r
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tap<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Err(e)), Some(flag)) = (&r, &self.unclean_close)
            && is_missing_close_notify(e)
        {
            flag.store(true, Ordering::SeqCst);
            return Poll::Ready(Ok(()));
        }
        self.note(r)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tap<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(r)
    }
}

/// Whether `e` is rustls' "peer closed connection without sending TLS
/// close_notify" (an `UnexpectedEof` read).
fn is_missing_close_notify(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof && e.to_string().contains("close_notify")
}
