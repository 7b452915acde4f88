//! Support for depprobe's end-to-end tests and for `depprobe demo`: a certificate
//! factory, local servers that behave like healthy or broken dependencies, and real
//! PostgreSQL clusters.
//!
//! Everything here binds loopback ports from `127.0.0.1:0` and is ready when its
//! constructor returns. The same code serves the tests and the demo, so the demo
//! shows exactly what the tests prove.

pub mod agent_process;
pub mod certs;
pub mod contract;
pub mod demo;
pub mod harness;
pub mod mongo;
pub mod otlp;
pub mod postgres;
pub mod prometheus;
pub mod servers;

pub use certs::{Ca, CertError, Identity, Validity};
pub use harness::{HarnessError, Scratch, run_once};
pub use postgres::{Cluster, ClusterSpec, DirectTlsFront, PgError};
pub use prometheus::{BlackboxExporter, ChildServerError, PrometheusServer};
pub use servers::{
    HttpServer, RawServer, Reply, Req, ServerError, SilentServer, Versions, closed_port, free_port,
};
