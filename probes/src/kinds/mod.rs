//! One module per probe kind. Each reads top to bottom: dial, handshake, request,
//! judge; the shared steps live in [`crate::transport`].

pub mod http;
pub mod metrics;
pub mod tls;
