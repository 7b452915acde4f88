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
//! Lifecycle: every cluster of a process lives under one directory,
//! `$TMPDIR/depprobe-pg-<pid>-<nanos>`. An `atexit` hook, registered with the first
//! cluster, stops every cluster still running (`pg_ctl stop -m immediate`) and
//! removes that directory when the test process exits, whether its tests passed or
//! not; a [`Cluster`] dropped earlier is stopped by its `Drop`. A process killed
//! before its hook runs leaves its directory and servers behind: the next process that
//! starts a cluster stops and removes the leftovers of processes that no longer exist.

use std::ffi::CString;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::certs::{CertError, Identity};
use crate::servers::ServerError;

/// The OS user that owns the clusters when the tests run as root.
const OWNER: &str = "postgres";

/// Prefix of every process's cluster directory.
const DIR_PREFIX: &str = "depprobe-pg-";

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

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
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
            self.port = free_port()?;
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
        if let Ok(mut started) = started().lock() {
            started.retain(|d| d != &self.data);
        }
    }
}

/// A directory for the files of the tests that share this process's clusters (CA
/// bundles, client keys); removed with the clusters when the process exits.
pub fn files_dir() -> Result<PathBuf, PgError> {
    let dir = base_dir()?.join("files");
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// Where the PostgreSQL binaries are.
fn bin_dir() -> PathBuf {
    std::env::var_os("DEPPROBE_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of the cluster owner.
fn owner_ids() -> Option<(u32, u32)> {
    let name = CString::new(OWNER).ok()?;
    // SAFETY: `name` is a valid C string; the returned record is read at once,
    // before any other call that could overwrite it.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// A command for PostgreSQL tool `tool`, run as the cluster owner, with no `PG*`
/// variable of the caller's environment leaking in.
fn pg_tool(tool: &str) -> Result<Command, PgError> {
    let program = bin_dir().join(tool);
    if !program.is_file() {
        return Err(PgError::NoBinaries(bin_dir()));
    }
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", OWNER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir("/").env("LC_ALL", "C");
    Ok(cmd)
}

/// Runs `cmd`; its stdout, or an error with everything it printed.
fn run(cmd: &mut Command, what: &str) -> Result<String, PgError> {
    let out = cmd.output().map_err(io_err(format!("running {what}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(PgError::Command {
            command: what.to_owned(),
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// Writes `text` to `path` with `mode`, owned by the cluster owner.
fn write_owned(path: &Path, text: &str, mode: u32) -> Result<(), PgError> {
    crate::certs::write(path, text)?;
    give_to_owner(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("chmod {}", path.display())))
}

fn give_to_owner(path: &Path) -> Result<(), PgError> {
    if !running_as_root() {
        return Ok(());
    }
    let (uid, gid) = owner_ids().ok_or_else(|| {
        PgError::Setup(format!(
            "the `{OWNER}` OS user does not exist (install postgresql-15)"
        ))
    })?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(io_err(format!("chown {}", path.display())))
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, PgError> {
    let l = StdListener::bind("127.0.0.1:0").map_err(io_err("binding 127.0.0.1:0"))?;
    let port = l.local_addr().map_err(io_err("local_addr"))?.port();
    Ok(port)
}

/// This process's cluster directory, created (after cleaning up leftovers) on first
/// use, with the exit hook registered.
fn base_dir() -> Result<&'static Path, PgError> {
    static BASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = BASE.get_or_init(|| {
        remove_leftovers();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        give_to_owner(&dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        // SAFETY: `stop_all_at_exit` is an `extern "C"` function that does not unwind.
        unsafe {
            libc::atexit(stop_all_at_exit);
        }
        Ok(dir)
    });
    match made {
        Ok(dir) => Ok(dir.as_path()),
        Err(e) => Err(PgError::Setup(e.clone())),
    }
}

/// The initdb'd template every cluster is copied from; made once per process.
fn template() -> Result<PathBuf, PgError> {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = TEMPLATE.get_or_init(|| {
        let dir = base_dir().map_err(|e| e.to_string())?.join("template");
        run(
            pg_tool("initdb")
                .map_err(|e| e.to_string())?
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
                .args(["--no-sync", "--no-instructions", "-D"])
                .arg(&dir),
            "initdb",
        )
        .map_err(|e| e.to_string())?;
        Ok(dir)
    });
    made.clone().map_err(PgError::Setup)
}

/// Data directories of the clusters this process started and has not stopped.
fn started() -> &'static Mutex<Vec<PathBuf>> {
    static STARTED: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    STARTED.get_or_init(|| Mutex::new(Vec::new()))
}

fn register(data: &Path) {
    if let Ok(mut list) = started().lock()
        && !list.iter().any(|d| d == data)
    {
        list.push(data.to_owned());
    }
}

/// Stops the cluster in `data` at once (its data is thrown away anyway).
fn stop(data: &Path) {
    if let Ok(mut cmd) = pg_tool("pg_ctl") {
        let _ = cmd
            .args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
            .arg(data)
            .output();
    }
}

extern "C" fn stop_all_at_exit() {
    let list = match started().lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(_) => return,
    };
    for data in &list {
        stop(data);
    }
    if let Ok(dir) = base_dir() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Stops and removes the clusters left by test processes that no longer exist.
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(clusters) = std::fs::read_dir(entry.path()) {
            for c in clusters.flatten() {
                if c.path().join("postmaster.pid").exists() {
                    stop(&c.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A stand-in for PostgreSQL 17's direct TLS (which PostgreSQL 15 does not have): it
/// accepts TLS right after connect, insists on ALPN `postgresql` as PostgreSQL 17
/// does, and relays the decrypted session to a real (plaintext) PostgreSQL server.
pub struct DirectTlsFront {
    addr: SocketAddr,
    _task: AbortOnDrop,
}

impl DirectTlsFront {
    /// Binds 127.0.0.1 on a free port, relaying to `backend`.
    pub async fn start(identity: &Identity, backend: SocketAddr) -> Result<Self, ServerError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(identity.chain.clone(), identity.key())?;
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() != Some(b"postgresql".as_slice()) {
                        return;
                    }
                    if let Ok(mut pg) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut pg).await;
                    }
                });
            }
        });
        Ok(DirectTlsFront {
            addr,
            _task: AbortOnDrop(task),
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
