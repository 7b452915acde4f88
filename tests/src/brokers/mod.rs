//! The dependencies an application talks to beyond its databases and HTTP APIs:
//! message brokers, mail relays and gRPC services, run for real in the tests.
//!
//! The gRPC health server is the `tonic-health` implementation, served in-process;
//! RabbitMQ, NATS, Mosquitto and the SMTP server are Debian's own programs, each
//! started as a child process on free loopback ports with a configuration and
//! certificates written per test into a temporary directory (never the shared
//! instances on the standard ports). Each is ready when its constructor returns and
//! is stopped when dropped.

pub mod grpc;
pub mod mosquitto;
pub mod nats;
pub mod postfix;
pub mod process;
pub mod rabbitmq;

pub use grpc::GrpcHealthServer;
pub use mosquitto::{Mosquitto, MosquittoOptions};
pub use nats::{NatsOptions, NatsServer};
pub use postfix::Postfix;
pub use process::{BrokerError, BrokerProcess};
pub use rabbitmq::RabbitMq;
