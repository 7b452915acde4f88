//! The local dependencies `depprobe demo` starts, shared with the tests: a
//! certificate factory, in-process HTTP(S) servers that behave like healthy or
//! broken dependencies, a MongoDB replica set speaking the wire protocol (not
//! mongod: no MongoDB server can be installed where the tests run), an OTLP
//! receiver decoding the official protobufs, and the demo itself.
//!
//! Everything here binds loopback ports from `127.0.0.1:0` and is ready when its
//! constructor returns. The demo and the tests use the same servers, so the demo
//! shows exactly what the tests prove; the rest of the test support (database
//! clusters, receivers, tools) stays in the `depprobe-tests` crate, which the
//! product does not link.

pub mod certs;
pub mod demo;
pub mod mongo;
pub mod ocsp;
pub mod otlp;
pub mod scratch;
pub mod servers;

pub use certs::{Ca, CertError, Identity, Validity};
pub use demo::{Demo, DemoError};
pub use scratch::Scratch;
pub use servers::{
    HttpServer, RawServer, Reply, Req, ServerError, SilentServer, Versions, closed_port, free_port,
};
