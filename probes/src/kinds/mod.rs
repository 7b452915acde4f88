//! One module per probe kind. Each reads top to bottom: dial, handshake, request,
//! judge; the shared steps live in [`crate::transport`].

pub mod credential;
pub mod http;
pub mod metrics;
pub mod mongodb;
pub mod otlp;
pub mod postgres;
pub mod tls;
