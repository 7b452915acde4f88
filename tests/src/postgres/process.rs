//! The clusters of one test process: where they live, who owns them, and how they
//! are torn down. Every cluster of a process lives under one directory,
//! `$TMPDIR/depprobe-pg-<pid>-<nanos>`. An `atexit` hook, registered with the first
//! cluster, stops every cluster still running (`pg_ctl stop -m immediate`) and
//! removes that directory when the test process exits, whether its tests passed or
//! not; a [`Cluster`](super::Cluster) dropped earlier is stopped by its `Drop`. A process killed
//! before its hook runs leaves its directory and servers behind: the next process that
//! starts a cluster stops and removes the leftovers of processes that no longer exist.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use super::{PgError, io_err};

/// The OS user that owns the clusters when the tests run as root.
const OWNER: &str = "postgres";

/// Prefix of every process's cluster directory.
const DIR_PREFIX: &str = "depprobe-pg-";

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
pub(super) fn pg_tool(tool: &str) -> Result<Command, PgError> {
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
pub(super) fn run(cmd: &mut Command, what: &str) -> Result<String, PgError> {
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
pub(super) fn write_owned(path: &Path, text: &str, mode: u32) -> Result<(), PgError> {
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

/// This process's cluster directory, created (after cleaning up leftovers) on first
/// use, with the exit hook registered.
pub(super) fn base_dir() -> Result<&'static Path, PgError> {
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
pub(super) fn template() -> Result<PathBuf, PgError> {
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

pub(super) fn register(data: &Path) {
    if let Ok(mut list) = started().lock()
        && !list.iter().any(|d| d == data)
    {
        list.push(data.to_owned());
    }
}

/// Stops the cluster in `data` at once (its data is thrown away anyway).
pub(super) fn stop(data: &Path) {
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

/// Forgets a cluster that was stopped.
pub(super) fn unregister(data: &Path) {
    if let Ok(mut list) = started().lock() {
        list.retain(|d| d != data);
    }
}
