//! Support for depprobe's end-to-end tests: real PostgreSQL clusters, MariaDB and
//! Redis servers, the MongoDB wire-protocol server and the MySQL 8.0 protocol server
//! (ours: no MongoDB or MySQL server can be installed here), an OTLP receiver,
//! Prometheus tools, and (re-exported from `depprobe-demo`, which the demo shares)
//! the certificate factory and local servers that behave like healthy or broken
//! dependencies. The product binary does not link this crate.
//!
//! Everything here binds loopback ports from `127.0.0.1:0` and is ready when its
//! constructor returns. The same code serves the tests and the demo, so the demo
//! shows exactly what the tests prove.

pub mod agent_process;
pub mod brokers;
pub mod children;
pub mod contract;
pub mod harness;
pub mod mariadb;
pub mod mysql8;
pub mod openssl_cli;
pub mod postgres;
pub mod prometheus;
pub mod redis;

pub use depprobe_demo::{certs, mongo, ocsp, otlp, servers};

pub use certs::{Ca, CertError, Identity, Validity};
pub use children::ChildError;
pub use harness::{HarnessError, Scratch, run_once};
pub use mariadb::{MariaDb, MariaDbSpec};
pub use mysql8::{Mysql8, Mysql8Spec};
pub use postgres::{Cluster, ClusterSpec, DirectTlsFront, PgError};
pub use prometheus::{
    BlackboxExporter, ChildServerError, PrometheusServer, ScrapeJob, TargetHealth,
};
pub use redis::{RedisServer, RedisSpec};
pub use servers::{
    HttpServer, RawServer, Reply, Req, ServerError, SilentServer, Versions, closed_port, free_port,
};
