//! Server processes the tests start themselves (MariaDB, Redis): started with a
//! systemd-style notify socket, so that "ready" is the server saying so (`READY=1`),
//! never a guess or a sleep. A server owns its directory: both go when it is dropped,
//! or, for a server shared through a `static` (never dropped), when the test process
//! exits, by an `atexit` hook.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Why a server process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server exited before it was ready.
    #[error("{program} exited before it was ready ({status}); its log:\n{log}")]
    Exited {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// The server did not say it was ready in time.
    #[error("{program} was not ready within {secs}s; its log:\n{log}")]
    NotReady {
        /// The program.
        program: String,
        /// The time waited.
        secs: u64,
        /// The end of its log.
        log: String,
    },
    /// A setup command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command.
        command: String,
        /// What it printed.
        output: String,
    },
}

/// `what` failed with an I/O error.
pub fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChildError {
    let what = what.into();
    move |source| ChildError::Io { what, source }
}

/// How long a server may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Pids and directories of the servers this process started and has not stopped.
fn running() -> &'static Mutex<Vec<(u32, PathBuf)>> {
    static RUNNING: OnceLock<Mutex<Vec<(u32, PathBuf)>>> = OnceLock::new();
    RUNNING.get_or_init(|| {
        // SAFETY: `stop_all_at_exit` is an `extern "C"` function that does not unwind.
        unsafe {
            libc::atexit(stop_all_at_exit);
        }
        Mutex::new(Vec::new())
    })
}

extern "C" fn stop_all_at_exit() {
    let pids = match running().lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(_) => return,
    };
    for (pid, dir) in pids {
        // Pid 0 marks a directory without a server (a template).
        if pid != 0 {
            // SAFETY: kill has no memory preconditions; the pid is a child we started.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A server process, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    dir: TempDir,
}

impl Server {
    /// Starts `cmd` with a notify socket in `dir` and returns once the server has sent
    /// `READY=1`, or an error with the end of its log (`log`, in `dir`) when it exits
    /// or stays silent.
    pub fn start(mut cmd: Command, dir: TempDir, log: &str) -> Result<Server, ChildError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let log = dir.path().join(log);
        let log = log.as_path();
        let notify = dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&notify);
        let socket = UnixDatagram::bind(&notify).map_err(io_err("binding the notify socket"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(io_err("notify socket timeout"))?;
        let list = running();
        let mut child = cmd
            .env("NOTIFY_SOCKET", &notify)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err(format!("starting {program}")))?;
        if let Ok(mut l) = list.lock() {
            l.push((child.id(), dir.path().to_owned()));
        }
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            // A timed-out receive only gives the exit check below its turn.
            if let Ok(n) = socket.recv(&mut buf)
                && buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1")
            {
                return Ok(Server { child, dir });
            }
            if let Ok(Some(status)) = child.try_wait() {
                forget(child.id());
                return Err(ChildError::Exited {
                    program,
                    status: status.to_string(),
                    log: tail(log),
                });
            }
            if started.elapsed() > READY_WITHIN {
                let _ = child.kill();
                let _ = child.wait();
                forget(child.id());
                return Err(ChildError::NotReady {
                    program,
                    secs: READY_WITHIN.as_secs(),
                    log: tail(log),
                });
            }
        }
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id (for reading its CPU and memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        forget(self.child.id());
    }
}

/// Removes `dir` when the test process exits (a directory shared through a `static`,
/// which is never dropped).
pub fn remove_at_exit(dir: &Path) {
    if let Ok(mut l) = running().lock() {
        l.push((0, dir.to_owned()));
    }
}

fn forget(pid: u32) {
    if let Ok(mut l) = running().lock() {
        l.retain(|(p, _)| *p != pid);
    }
}

/// The last 40 lines of `log`.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Runs `cmd`; its stdout, or an error with what it printed.
pub fn run(cmd: &mut Command, what: &str) -> Result<String, ChildError> {
    let out = cmd.output().map_err(io_err(format!("running {what}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ChildError::Command {
            command: what.to_owned(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// A new directory for one server under the system's temp directory, removed with
/// the [`Server`] that owns it.
pub fn server_dir(prefix: &str) -> Result<TempDir, ChildError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(io_err("creating a server directory"))
}
