//! A gRPC server with the standard health service (`tonic-health`, the real
//! implementation), over TLS or cleartext HTTP/2, optionally requiring a token.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::certs::Identity;
use crate::servers::{ServerError, Task};

/// A running gRPC health server; stops when dropped.
pub struct GrpcHealthServer {
    addr: SocketAddr,
    tls: bool,
    reporter: HealthReporter,
    _task: Task,
}

/// How a [`GrpcHealthServer`] is set up.
#[derive(Default)]
pub struct GrpcHealthOptions {
    /// Serve TLS with this certificate (cleartext HTTP/2 without).
    pub identity: Option<Identity>,
    /// Refuse calls without `authorization: Bearer <token>` (UNAUTHENTICATED:
    /// "invalid or missing token" when none came, "missing or wrong credentials"
    /// for another).
    pub token: Option<String>,
}

fn tls_acceptor(identity: &Identity) -> Result<TlsAcceptor, ServerError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key =
        rustls::sign::CertifiedKey::from_der(identity.chain.clone(), identity.key(), &provider)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl GrpcHealthServer {
    /// Starts on a free loopback port; the server as a whole (service `""`) is
    /// SERVING.
    pub async fn start(options: GrpcHealthOptions) -> Result<GrpcHealthServer, ServerError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = options.identity.as_ref().map(tls_acceptor).transpose()?;
        let (reporter, health) = tonic_health::server::health_reporter();
        let token = options.token.map(|t| format!("Bearer {t}"));
        let check_token = move |req: tonic::Request<()>| match &token {
            None => Ok(req),
            Some(want) => {
                let got = req
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                match got {
                    Some(got) if got == want.as_str() => Ok(req),
                    Some(_) => Err(tonic::Status::unauthenticated(
                        "missing or wrong credentials",
                    )),
                    // As many interceptors word it, whether a token came or not.
                    None => Err(tonic::Status::unauthenticated("invalid or missing token")),
                }
            }
        };
        let routes = tonic::service::Routes::new(InterceptedService::new(health, check_token));
        let task = tokio::spawn(async move {
            // Connections live in this set, so dropping the server closes them too.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let service = TowerToHyperService::new(routes.clone());
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Ok(GrpcHealthServer {
            addr,
            tls: options.identity.is_some(),
            reporter,
            _task: Task::new(task),
        })
    }

    /// `https://localhost:<port>` (TLS) or `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sets what the health service answers for `service` (`""`: the server).
    pub async fn set(&self, service: &str, status: ServingStatus) {
        self.reporter.set_service_status(service, status).await;
    }
}
