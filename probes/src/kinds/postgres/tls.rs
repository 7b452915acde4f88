//! How a PostgreSQL session gets its TLS: the SSLRequest, and the adapter that hands
//! an established depprobe TLS session to tokio-postgres.
//!
//! The probe sends the SSLRequest and runs the handshake itself, through the shared
//! [`TlsClient`](crate::transport::tls::TlsClient), so that both are timed as phase
//! `tls`, the server's `N` is read as the byte it is (not inferred from an error
//! text), and the chain is captured and classified like every other probe's.
//! tokio-postgres then runs the login over the established session: it is told the
//! session is direct TLS, so it sends no SSLRequest of its own, and it gets the
//! `tls-server-end-point` channel binding that SCRAM-SHA-256-PLUS needs.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The SSLRequest message: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The server's one-byte answer to an SSLRequest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslAnswer {
    /// `S`: go ahead with the TLS handshake.
    Accepted,
    /// `N`: this server does not do TLS.
    Refused,
    /// Anything else: not a PostgreSQL server (or one older than 7.0).
    Other(u8),
}

/// Sends an SSLRequest on `io` and reads the answer (exactly one byte, so that
/// nothing the server sends after it is taken for part of the answer).
pub async fn ssl_request<IO>(io: &mut IO) -> io::Result<SslAnswer>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(&SSL_REQUEST).await?;
    io.flush().await?;
    let mut answer = [0u8; 1];
    io.read_exact(&mut answer).await?;
    Ok(match answer[0] {
        b'S' => SslAnswer::Accepted,
        b'N' => SslAnswer::Refused,
        other => SslAnswer::Other(other),
    })
}

/// An established TLS session, as tokio-postgres wants one.
pub struct PgTlsStream<IO> {
    inner: tokio_rustls::client::TlsStream<IO>,
    end_point: Option<Vec<u8>>,
}

impl<IO> PgTlsStream<IO> {
    /// Wraps an established session, computing its channel binding from the leaf.
    pub fn new(inner: tokio_rustls::client::TlsStream<IO>) -> Self {
        let end_point = inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| server_end_point(leaf.as_ref()));
        PgTlsStream { inner, end_point }
    }
}

/// The `tls-server-end-point` channel binding (RFC 5929): the leaf's DER hashed with
/// the hash of its signature algorithm, SHA-256 for MD5 and SHA-1. `None` for
/// algorithms without a hash of their own (Ed25519); SCRAM then goes without binding.
fn server_end_point(leaf: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::digest;
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let algorithm = match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        // md5WithRSA, sha1WithRSA, sha256WithRSA, ecdsa-with-SHA1, ecdsa-with-SHA256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2" => &digest::SHA256,
        // sha384WithRSA, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &digest::SHA384,
        // sha512WithRSA, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &digest::SHA512,
        _ => return None,
    };
    Some(digest::digest(algorithm, leaf).as_ref().to_vec())
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<IO> {
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

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<IO> {
    fn channel_binding(&self) -> ChannelBinding {
        match &self.end_point {
            Some(hash) => ChannelBinding::tls_server_end_point(hash.clone()),
            None => ChannelBinding::none(),
        }
    }
}

/// The `TlsConnect` for a session whose handshake is already done: it hands the
/// stream over as it is.
#[derive(Clone, Copy, Debug)]
pub struct Established;

impl<S: AsyncRead + AsyncWrite + TlsStream + Unpin> TlsConnect<S> for Established {
    type Stream = S;
    type Error = Infallible;
    type Future = Ready<Result<S, Infallible>>;

    fn connect(self, stream: S) -> Self::Future {
        ready(Ok(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ssl_request_reads_exactly_the_answer_byte() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let peer = tokio::spawn(async move {
            let mut request = [0u8; 8];
            server.read_exact(&mut request).await.unwrap();
            server.write_all(b"NE").await.unwrap();
            request
        });
        assert_eq!(ssl_request(&mut client).await.unwrap(), SslAnswer::Refused);
        assert_eq!(peer.await.unwrap(), SSL_REQUEST);
        let mut rest = [0u8; 1];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(
            &rest, b"E",
            "the byte after the answer is left in the stream"
        );
    }

    #[test]
    fn end_point_of_an_unparseable_certificate_is_none() {
        assert_eq!(server_end_point(b"not a certificate"), None);
    }
}
