//! The database kinds' phases: depprobe probing `kind: mysql` targets on one real
//! MariaDB, and `kind: redis` targets on one real Redis, each started through the
//! tests' harnesses (`depprobe_tests::mariadb`, `depprobe_tests::redis`) on a free
//! loopback port with the run's certificate (the one nginx serves: ECDSA P-256 from
//! the run's CA), so that a probe's CPU compares with the floor's handshake. The
//! probes log in as a real user with a password from a `password_file`, as the
//! README's examples do; the server's own CPU over the window is reported beside the
//! agent's.

use std::path::Path;
use std::time::Duration;

use depprobe_tests::{Identity, MariaDb, MariaDbSpec, RedisServer, RedisSpec};

use crate::agent::{self, AgentResult, AgentRun, Load, Login, Server};
use crate::procfs::{self, Usage};
use crate::{BenchError, progress};

/// A probe kind with a phase of its own against a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `kind: mysql` on MariaDB.
    Mysql,
    /// `kind: redis` on Redis.
    Redis,
}

impl Kind {
    /// Every kind, in the order the phases run.
    pub const ALL: [Kind; 2] = [Kind::Mysql, Kind::Redis];

    /// The kind's name in the configuration (`mysql`, `redis`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mysql => "mysql",
            Kind::Redis => "redis",
        }
    }

    /// The kind named `name`, if it has a phase.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name.trim())
    }

    /// The programs its server needs, with the Debian package of each.
    fn programs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Mysql => &[
                ("mariadbd", "mariadb-server"),
                ("mariadb-install-db", "mariadb-server"),
                ("mariadb", "mariadb-client"),
            ],
            Kind::Redis => &[("redis-server", "redis-server")],
        }
    }
}

/// The user the probes log in as, on either server.
const USER: &str = "probe";

/// Its password (a loopback server that lives for one phase).
const PASSWORD: &str = "depprobe-bench-5b0e3c";

/// How to run a kind's phase.
pub struct KindRun<'a> {
    /// The `depprobe` binary.
    pub bin: &'a Path,
    /// Where the config, the password file and the log go.
    pub dir: &'a Path,
    /// The run's CA (PEM file), trusted by the probes.
    pub ca: &'a Path,
    /// The certificate and key the server presents.
    pub identity: &'a Identity,
    /// Number of targets (all on the one server).
    pub targets: usize,
    /// Interval of every target.
    pub interval: Duration,
    /// Length of the measured window.
    pub window: Duration,
}

/// A MariaDB the targets point at.
struct MariaDbTarget(MariaDb);

impl Server for MariaDbTarget {
    fn name(&self) -> &'static str {
        "MariaDB"
    }

    fn ports(&self) -> Vec<u16> {
        vec![self.0.port()]
    }

    fn usage(&self) -> Result<Usage, BenchError> {
        procfs::usage(self.0.pid())
    }
}

/// A Redis the targets point at.
struct RedisTarget(RedisServer);

impl Server for RedisTarget {
    fn name(&self) -> &'static str {
        "Redis"
    }

    fn ports(&self) -> Vec<u16> {
        vec![self.0.port()]
    }

    fn usage(&self) -> Result<Usage, BenchError> {
        procfs::usage(self.0.pid())
    }
}

/// Starts `kind`'s server, measures the agent probing it, and stops the server.
pub async fn measure(kind: Kind, run: &KindRun<'_>) -> Result<AgentResult, BenchError> {
    require(kind)?;
    let password_file = run.dir.join(format!("{}-password", kind.name()));
    std::fs::write(&password_file, PASSWORD).map_err(BenchError::Io)?;
    let login = Login {
        user: USER,
        password_file: &password_file,
    };
    let label = format!("depprobe-{}", kind.name());
    progress(&format!(
        "{label}: starting {}",
        match kind {
            Kind::Mysql => "MariaDB",
            Kind::Redis => "Redis",
        }
    ));
    let server = start(kind, run.identity.clone()).await?;
    progress(&format!(
        "{label}: {} targets every {:?} for {:?}",
        run.targets, run.interval, run.window
    ));
    let load = match kind {
        Kind::Mysql => Load::Mysql(login),
        Kind::Redis => Load::Redis(login),
    };
    agent::measure(
        &AgentRun {
            bin: run.bin,
            dir: run.dir,
            ca: run.ca,
            load,
            targets: run.targets,
            interval: run.interval,
            window: run.window,
            scrape_every: None,
            label: &label,
            otlp: None,
        },
        server.as_ref(),
    )
    .await
}

/// Starts the server of `kind` presenting `identity`, with the probes' user. The
/// harnesses block (they wait for the server's notify socket), so they run on a
/// blocking thread.
async fn start(kind: Kind, identity: Identity) -> Result<Box<dyn Server + Send>, BenchError> {
    let started = tokio::task::spawn_blocking(move || -> Result<Box<dyn Server + Send>, _> {
        match kind {
            Kind::Mysql => MariaDb::start(&MariaDbSpec {
                tls: Some(identity),
                setup_sql: vec![
                    format!("CREATE USER {USER}@'%' IDENTIFIED BY '{PASSWORD}'"),
                    // The role facts read the replication status, as in production.
                    format!("GRANT SLAVE MONITOR ON *.* TO {USER}@'%'"),
                ],
                ..MariaDbSpec::default()
            })
            .map(|db| Box::new(MariaDbTarget(db)) as Box<dyn Server + Send>),
            Kind::Redis => RedisServer::start(&RedisSpec {
                tls: Some(identity),
                // Least privilege: what the probe sends, and nothing else.
                users: vec![format!("{USER} on >{PASSWORD} -@all +ping +role +info")],
                ..RedisSpec::default()
            })
            .map(|r| Box::new(RedisTarget(r)) as Box<dyn Server + Send>),
        }
    })
    .await
    .map_err(|e| BenchError::Server(format!("starting the {} server: {e}", kind.name())))?;
    started.map_err(|source| BenchError::Child {
        kind: kind.name(),
        source,
    })
}

/// Fails with what to install when a program `kind`'s server needs is missing.
fn require(kind: Kind) -> Result<(), BenchError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (program, package) in kind.programs() {
        if !std::env::split_paths(&path).any(|dir| dir.join(program).is_file()) {
            return Err(BenchError::Missing(format!(
                "{program} (Debian package {package}; scripts/deps installs it), for the {} phase (--no-kinds skips it)",
                kind.name()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_in_the_configuration() {
        assert_eq!(Kind::parse("mysql"), Some(Kind::Mysql));
        assert_eq!(Kind::parse(" redis"), Some(Kind::Redis));
        assert_eq!(Kind::parse("postgres"), None);
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
    }
}
