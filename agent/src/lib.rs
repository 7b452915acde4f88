//! The depprobe agent and its command line.
//!
//! `depprobe run` schedules every probe on its interval and exports outcomes as
//! OpenTelemetry spans and metrics and on a Prometheus endpoint; `check` runs them
//! once for CI; `validate` checks a configuration; `demo` shows it all on local
//! dependencies. Data flows one way: config -> scheduler -> probe -> outcome ->
//! state -> telemetry.

pub mod agent;
pub mod api;
pub mod check;
pub mod cli;
pub mod demo;
pub mod history;
pub mod memory;
pub mod page;
pub mod persist;
pub mod reload;
pub mod scheduler;
pub mod setup;
pub mod shard;
pub mod state;
pub mod supervise;
pub mod table;
pub mod telemetry;
pub mod web_config;
