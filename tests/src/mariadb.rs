//! Real MariaDB servers for the tests: Debian's `mariadbd`, run with `--no-defaults`
//! on 127.0.0.1 and a free port, its unix socket and data in its own temporary
//! directory: the machine's own MariaDB (3306) is never used or changed.
//!
//! `mariadb-install-db` runs once per test process into a template directory; each
//! server starts from a copy of it (about 20 MB, a third of a second to start) with
//! its own certificate, or none. A server is ready when it says so on its notify
//! socket. Users are created over the unix socket as `root` with the `mariadb`
//! client, with real passwords (`mysql_native_password`, or `ed25519` behind an
//! auth switch: the plugin is loaded on every server). A test binary starts only the servers its cases need, and shares
//! each through a `static`: the client decides unknown CA and wrong name, so one
//! server with a valid certificate serves most cases; expired and expiring
//! certificates, no TLS, and a replica each need one more.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::certs::Identity;
use crate::children::{ChildError, Server, io_err, remove_at_exit, run, server_dir};
use crate::servers::free_port;

/// Where the template data directory lives; made once per process.
fn template() -> Result<&'static PathBuf, ChildError> {
    static TEMPLATE: OnceLock<Result<(tempfile::TempDir, PathBuf), String>> = OnceLock::new();
    let made = TEMPLATE.get_or_init(|| {
        let dir = server_dir("depprobe-mariadb-template-").map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        remove_at_exit(dir.path());
        run(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(USER)
                .args([
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ])
                .args(SMALL),
            "mariadb-install-db",
        )
        .map_err(|e| e.to_string())?;
        Ok((dir, data))
    });
    match made {
        Ok((_, data)) => Ok(data),
        Err(e) => Err(ChildError::Command {
            command: "mariadb-install-db".into(),
            output: e.clone(),
        }),
    }
}

/// Settings that keep a test server small.
const SMALL: &[&str] = &["--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M"];

/// `mariadbd` refuses to run as root unless told to.
const USER: &[&str] = &["--user=root"];

/// What a server serves.
#[derive(Clone, Default)]
pub struct MariaDbSpec {
    /// The server's certificate chain and key; `None` is a server without TLS.
    pub tls: Option<Identity>,
    /// CA (PEM) the server names for client certificates (`--ssl-ca`).
    pub client_ca: Option<String>,
    /// SQL run as root once the server is up (users, grants, tables).
    pub setup_sql: Vec<String>,
    /// `--server-id`, for a source or a replica.
    pub server_id: Option<u32>,
}

/// A running MariaDB server; stopped and removed when dropped (or when the process
/// exits).
#[derive(Debug)]
pub struct MariaDb {
    server: Server,
    port: u16,
}

impl MariaDb {
    /// Starts a server as `spec` says, then runs its setup SQL.
    pub fn start(spec: &MariaDbSpec) -> Result<MariaDb, ChildError> {
        let template = template()?;
        let mut last = None;
        // A port taken from 127.0.0.1:0 may be lost to another process before the
        // server binds it: the start is retried on a new one.
        for _ in 0..3 {
            match Self::launch(spec, template) {
                Ok(db) => {
                    for sql in &spec.setup_sql {
                        db.sql(sql)?;
                    }
                    return Ok(db);
                }
                Err(e @ ChildError::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ChildError::Command {
            command: "mariadbd".into(),
            output: "did not start".into(),
        }))
    }

    fn launch(spec: &MariaDbSpec, template: &PathBuf) -> Result<MariaDb, ChildError> {
        let dir = server_dir("depprobe-mariadb-")?;
        let data = dir.path().join("data");
        run(
            Command::new("cp").arg("-a").arg(template).arg(&data),
            "cp -a template",
        )?;
        let port = free_port().map_err(io_err("taking a free port"))?;
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .args(USER)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--socket={}",
                dir.path().join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                dir.path().join("error.log").display()
            ))
            .args(["--skip-name-resolve", "--performance-schema=off"])
            // Loaded at start on every server, so that an ed25519 user replicates.
            .arg("--plugin-load-add=auth_ed25519")
            .args(SMALL);
        if let Some(id) = &spec.tls {
            let (cert, key) = id
                .write(dir.path(), "server")
                .map_err(|e| ChildError::Command {
                    command: "writing the server certificate".into(),
                    output: e.to_string(),
                })?;
            cmd.arg(format!("--ssl-cert={}", cert.display()))
                .arg(format!("--ssl-key={}", key.display()));
        }
        if let Some(ca) = &spec.client_ca {
            let path = dir.path().join("client-ca.pem");
            std::fs::write(&path, ca).map_err(io_err("writing the client CA"))?;
            cmd.arg(format!("--ssl-ca={}", path.display()));
        }
        if let Some(id) = spec.server_id {
            cmd.arg(format!("--server-id={id}"))
                .arg("--log-bin=binlog")
                .arg("--binlog-format=ROW");
        }
        let server = Server::start(cmd, dir, "error.log")?;
        Ok(MariaDb { server, port })
    }

    /// Serves `identity` from the next connection on: writes the certificate and key
    /// over the ones the server started with and runs `FLUSH SSL`, which reloads
    /// them before it returns. The server must have started with TLS.
    pub fn replace_certificate(&self, identity: &Identity) -> Result<(), ChildError> {
        identity
            .write(self.server.dir(), "server")
            .map_err(|e| ChildError::Command {
                command: "writing the server certificate".into(),
                output: e.to_string(),
            })?;
        self.sql("FLUSH SSL").map(drop)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of `mariadbd` (one process: its threads' CPU is the process's).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Runs `sql` as root over the unix socket; what it printed (tab-separated, no
    /// column names).
    pub fn sql(&self, sql: &str) -> Result<String, ChildError> {
        run(
            Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!(
                    "--socket={}",
                    self.server.dir().join("mysqld.sock").display()
                ))
                .args(["-uroot", "-N", "-B", "-e", sql]),
            "mariadb",
        )
    }

    /// A replica of this server (which must have a `server_id`): a new server with
    /// `spec`, told to replicate from this one as `repl` / `repl_password` (a user
    /// this server must have, with `REPLICATION SLAVE`), returned once it has applied
    /// everything this server had written (`MASTER_GTID_WAIT`: the server tells).
    pub fn replica(
        &self,
        spec: &MariaDbSpec,
        repl: &str,
        repl_password: &str,
    ) -> Result<MariaDb, ChildError> {
        let replica = MariaDb::start(spec)?;
        replica.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{repl}', MASTER_PASSWORD='{repl_password}', MASTER_USE_GTID=no; START SLAVE",
            self.port
        ))?;
        let position = self.sql("SELECT @@gtid_binlog_pos")?;
        let reached = replica.sql(&format!(
            "SELECT MASTER_GTID_WAIT('{}', 60)",
            position.trim()
        ))?;
        if reached.trim() != "0" {
            return Err(ChildError::Command {
                command: "MASTER_GTID_WAIT".into(),
                output: format!("the replica did not catch up ({})", reached.trim()),
            });
        }
        Ok(replica)
    }
}
