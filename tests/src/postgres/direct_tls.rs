//! A stand-in for PostgreSQL 17's direct TLS, which PostgreSQL 15 does not have.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::certs::Identity;
use crate::servers::ServerError;

/// Aborts a background task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A stand-in for PostgreSQL 17's direct TLS (which PostgreSQL 15 does not have): it
/// accepts TLS right after connect, insists on ALPN `postgresql` as PostgreSQL 17
/// does, and relays the decrypted session to a real (plaintext) PostgreSQL server.
pub struct DirectTlsFront {
    addr: SocketAddr,
    _task: AbortOnDrop,
}

impl DirectTlsFront {
    /// Binds 127.0.0.1 on a free port, relaying to `backend`.
    pub async fn start(identity: &Identity, backend: SocketAddr) -> Result<Self, ServerError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(identity.chain.clone(), identity.key())?;
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() != Some(b"postgresql".as_slice()) {
                        return;
                    }
                    if let Ok(mut pg) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut pg).await;
                    }
                });
            }
        });
        Ok(DirectTlsFront {
            addr,
            _task: AbortOnDrop(task),
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
