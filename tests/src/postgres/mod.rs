//! Real PostgreSQL clusters for the tests: Debian's PostgreSQL 15 binaries
//! (`/usr/lib/postgresql/15/bin`, or `$DEPPROBE_PG_BIN`), run as the `postgres` OS
//! user when the tests run as root (initdb refuses root), as the current user
//! otherwise.
//!
//! A cluster listens only on 127.0.0.1, on a free port taken from `127.0.0.1:0` (a
//! start that loses the port to another process is retried on a new one), with its
//! unix socket in its own data directory: the machine's own PostgreSQL (5432,
//! `/var/run/postgresql`) is never used or changed. `initdb` runs once per process;
//! each cluster is a copy of that template with its own certificates, `pg_hba.conf`
//! and settings. `pg_ctl start -w` returns once the server accepts connections.
//!
//! Clusters are stopped when the test process exits, by an `atexit` hook, and the
//! leftovers of a killed process are removed by the next one (`process.rs`).
//! `direct_tls.rs` stands in for PostgreSQL 17's direct TLS.

use std::path::PathBuf;
use std::process::Command;

use crate::certs::{CertError, Identity};

mod client;
mod direct_tls;
mod process;

pub use client::psql_connects;
pub use direct_tls::DirectTlsFront;
pub use process::files_dir;
use process::{base_dir, pg_tool, register, run, stop, template, unregister, write_owned};

/// Why a cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The PostgreSQL binaries are not installed.
    #[error("PostgreSQL binaries not found in {0} (install postgresql-15 or set DEPPROBE_PG_BIN)")]
    NoBinaries(PathBuf),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PostgreSQL tool failed.
    #[error("{command} failed ({status}):\n{output}")]
    Command {
        /// The tool and its main argument.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (and the server log, for a failed start).
        output: String,
    },
    /// A certificate could not be written.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// An earlier setup step of this process failed.
    #[error("{0}")]
    Setup(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// What a cluster serves.
#[derive(Clone, Default)]
pub struct ClusterSpec {
    /// Directory name; unique among the clusters of a process.
    pub name: String,
    /// The server's certificate chain and key; `None` is `ssl = off`.
    pub tls: Option<Identity>,
    /// CA certificate (PEM) that client certificates must chain to (`ssl_ca_file`);
    /// with it, the server asks every TLS client for a certificate.
    pub client_ca: Option<String>,
    /// `pg_hba.conf` lines for TCP clients, in order. Local (unix socket) access for
    /// the superuser is always allowed first.
    pub hba: Vec<String>,
    /// SQL run as the superuser once the server is up (roles, tables).
    pub setup_sql: Vec<String>,
}

/// A running cluster; stopped when dropped (or when the process exits).
#[derive(Debug)]
pub struct Cluster {
    name: String,
    data: PathBuf,
    port: u16,
    /// Settings written to `depprobe.conf`, except the port.
    settings: String,
}

impl Cluster {
    /// Creates and starts a cluster as `spec` says, then runs its setup SQL.
    pub fn start(spec: &ClusterSpec) -> Result<Cluster, PgError> {
        let base = base_dir()?;
        let template = template()?;
        let data = base.join(&spec.name);
        let _ = std::fs::remove_dir_all(&data);
        run(
            Command::new("cp").arg("-a").arg(&template).arg(&data),
            "cp -a template",
        )?;
        let mut settings = String::new();
        match &spec.tls {
            Some(id) => {
                write_owned(&data.join("server.crt"), &id.chain_pem, 0o644)?;
                write_owned(&data.join("server.key"), &id.key_pem, 0o600)?;
                settings.push_str(
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
                );
            }
            None => settings.push_str("ssl = off\n"),
        }
        if let Some(ca) = &spec.client_ca {
            write_owned(&data.join("client-ca.crt"), ca, 0o644)?;
            settings.push_str("ssl_ca_file = 'client-ca.crt'\n");
        }
        let mut hba = String::from("local all postgres trust\nlocal replication postgres trust\n");
        for line in &spec.hba {
            hba.push_str(line);
            hba.push('\n');
        }
        write_owned(&data.join("pg_hba.conf"), &hba, 0o600)?;
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(io_err("reading postgresql.conf"))?;
        text.push_str("\ninclude 'depprobe.conf'\n");
        write_owned(&conf, &text, 0o600)?;

        let mut cluster = Cluster {
            name: spec.name.clone(),
            data,
            port: 0,
            settings,
        };
        cluster.launch()?;
        for sql in &spec.setup_sql {
            cluster.psql(sql)?;
        }
        Ok(cluster)
    }

    /// A hot standby of this cluster (`pg_basebackup -R`), started, with the same
    /// settings and certificates.
    pub fn standby(&self, name: &str) -> Result<Cluster, PgError> {
        let data = base_dir()?.join(name);
        let _ = std::fs::remove_dir_all(&data);
        run(
            pg_tool("pg_basebackup")?
                .arg("-h")
                .arg(&self.data)
                .arg("-p")
                .arg(self.port.to_string())
                .args([
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-R",
                    "-c",
                    "fast",
                    "--no-sync",
                ])
                .arg("-D")
                .arg(&data),
            "pg_basebackup",
        )?;
        let mut standby = Cluster {
            name: name.to_owned(),
            data,
            port: 0,
            settings: self.settings.clone(),
        };
        standby.launch()?;
        Ok(standby)
    }

    /// Promotes a standby to primary and waits until it is one.
    pub fn promote(&self) -> Result<(), PgError> {
        run(
            pg_tool("pg_ctl")?
                .args(["promote", "-w", "-t", "60", "-D"])
                .arg(&self.data),
            "pg_ctl promote",
        )
        .map(drop)
    }

    /// Serves `identity` from the next connection on: writes the certificate and key
    /// and asks the server to reload its configuration (PostgreSQL reads its TLS
    /// files again on reload). The reload is asynchronous: wait for the new
    /// certificate by observing it, not by time.
    pub fn replace_certificate(&self, identity: &Identity) -> Result<(), PgError> {
        write_owned(&self.data.join("server.crt"), &identity.chain_pem, 0o644)?;
        write_owned(&self.data.join("server.key"), &identity.key_pem, 0o600)?;
        run(
            pg_tool("pg_ctl")?.args(["reload", "-D"]).arg(&self.data),
            &format!("pg_ctl reload {}", self.name),
        )
        .map(drop)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` as the superuser over the unix socket; the unaligned, tuples-only
    /// output.
    pub fn psql(&self, sql: &str) -> Result<String, PgError> {
        let out = run(
            pg_tool("psql")?
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    "postgres",
                ])
                .args(["-d", "postgres", "-h"])
                .arg(&self.data)
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-c")
                .arg(sql),
            &format!("psql on {}", self.name),
        )?;
        Ok(out.trim().to_owned())
    }

    /// Starts the server on a free port, retrying with another one if the port was
    /// taken in between.
    fn launch(&mut self) -> Result<(), PgError> {
        register(&self.data);
        let mut last = None;
        for _ in 0..5 {
            self.port = crate::free_port().map_err(io_err("binding 127.0.0.1:0"))?;
            let conf = format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 max_connections = 20\nshared_buffers = 16MB\nfsync = off\n\
                 synchronous_commit = off\nfull_page_writes = off\n{}",
                self.port,
                self.data.display(),
                self.settings
            );
            write_owned(&self.data.join("depprobe.conf"), &conf, 0o600)?;
            let log = self.data.join("server.log");
            let started = run(
                pg_tool("pg_ctl")?
                    .args(["start", "-w", "-t", "60", "-D"])
                    .arg(&self.data)
                    .arg("-l")
                    .arg(&log),
                &format!("pg_ctl start {}", self.name),
            );
            match started {
                Ok(_) => return Ok(()),
                Err(PgError::Command {
                    command,
                    status,
                    output,
                }) => {
                    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                    last = Some(PgError::Command {
                        command,
                        status,
                        output: format!("{output}\n--- server log ---\n{log_text}"),
                    });
                }
                Err(other) => return Err(other),
            }
        }
        Err(last.unwrap_or_else(|| PgError::Setup("pg_ctl start never ran".into())))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop(&self.data);
        unregister(&self.data);
    }
}
