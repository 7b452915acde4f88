//! What probes remember, kept on disk across restarts (`agent.state_dir`).
//!
//! Change detection compares a run with the last one: without this, a restart
//! forgets the certificate seen before it, and a renewal from another CA that
//! happens across a restart (incident 02) goes unnoticed. The agent keeps one file,
//! `memory.json` (a versioned format), with each probe's [`Memory`] by probe name:
//! read at start to seed the probes, written atomically (temporary file, fsync,
//! rename) at most every [`SAVE_EVERY`] when something changed, and at stop. The
//! memory holds fingerprints, DNs and roles only: no secret reaches the file. A
//! missing, unreadable or corrupt file is a warning and a fresh start, never a
//! refusal to run.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use depprobe_config::files;
use depprobe_probes::Probe;
use depprobe_probes::memory::Memory;
use serde::{Deserialize, Serialize};

/// The file's name inside the state directory.
pub const FILE_NAME: &str = "memory.json";

/// The format this agent writes and reads.
pub const FORMAT: u32 = 1;

/// How often, at most, the file is written while the agent runs.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// How long a save may take before it is given up (at stop too).
pub const SAVE_DEADLINE: Duration = Duration::from_secs(5);

/// A larger file is not read (a hostile or mistaken file must not exhaust memory):
/// some 100,000 probes' memories fit well below it.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a state file of a format this agent reads.
    #[error("{path} is not a depprobe state file of format {FORMAT}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// [`FORMAT`].
    format: u32,
    /// Each probe's memory, by probe name.
    probes: BTreeMap<String, Memory>,
}

/// A running probe and its configuration's fingerprint.
type Fingerprinted = (u64, Arc<dyn Probe>);

/// The running probes' memories and where they are kept.
pub struct Persist {
    path: PathBuf,
    /// Memories read at start, handed to the probes of the same name once.
    loaded: Mutex<BTreeMap<String, Memory>>,
    /// The probes running now, by name, with their configuration's fingerprint.
    live: Mutex<BTreeMap<String, Fingerprinted>>,
    /// What was written last (not written again while nothing changes).
    written: Mutex<Option<Vec<u8>>>,
    /// A save is under way (on its own thread).
    saving: AtomicBool,
}

impl Persist {
    /// The state kept in `dir`: its file is read now. Problems are logged as
    /// warnings and give a fresh start.
    pub fn open(dir: &Path) -> Persist {
        if let Err(source) = std::fs::create_dir_all(dir) {
            tracing::warn!(
                "state_dir {}: {source}; what probes remember will not survive a restart",
                dir.display()
            );
        }
        let path = dir.join(FILE_NAME);
        let loaded = match read(&path) {
            Ok(Some(file)) => {
                tracing::info!(
                    "read the memory of {} probes from {}",
                    file.probes.len(),
                    path.display()
                );
                file.probes
            }
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                tracing::warn!("{e}; starting with a fresh memory");
                BTreeMap::new()
            }
        };
        Persist {
            path,
            loaded: Mutex::new(loaded),
            live: Mutex::new(BTreeMap::new()),
            written: Mutex::new(None),
            saving: AtomicBool::new(false),
        }
    }

    /// Takes note of the probes handed to the scheduler, each with its
    /// configuration's fingerprint. A probe whose fingerprint did not change keeps
    /// running (the scheduler keeps it, and so does this); a new one is seeded with
    /// the memory read at start under its name, if any.
    pub fn adopt(&self, probes: &[Fingerprinted]) {
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        let Ok(mut loaded) = self.loaded.lock() else {
            return;
        };
        let mut next = BTreeMap::new();
        for (fingerprint, probe) in probes {
            let name = probe.meta().name.clone();
            match live.remove(&name) {
                Some((f, kept)) if f == *fingerprint => {
                    next.insert(name, (f, kept));
                }
                _ => {
                    if let Some(memory) = loaded.remove(&name) {
                        probe.meta().seed(memory);
                    }
                    next.insert(name, (*fingerprint, probe.clone()));
                }
            }
        }
        *live = next;
    }

    /// Writes the running probes' memories if they changed since the last write;
    /// whether the file was written.
    pub fn save(&self) -> Result<bool, PersistError> {
        let file = StateFile {
            format: FORMAT,
            probes: match self.live.lock() {
                Ok(live) => live
                    .iter()
                    .map(|(name, (_, p))| (name.clone(), p.meta().snapshot()))
                    .filter(|(_, m)| *m != Memory::default())
                    .collect(),
                Err(_) => return Ok(false),
            },
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| PersistError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let Ok(mut written) = self.written.lock() else {
            return Ok(false);
        };
        if written.as_deref() == Some(bytes.as_slice()) {
            return Ok(false);
        }
        write_atomically(&self.path, &bytes)?;
        *written = Some(bytes);
        Ok(true)
    }

    /// Saves every [`SAVE_EVERY`] until aborted (off the scheduler's threads).
    pub async fn save_periodically(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SAVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.save_logged(SAVE_DEADLINE).await;
        }
    }

    /// Saves on a thread of its own, waiting at most `deadline` for it and logging
    /// a failure as a warning. A save that stalls (a hung mount) is left to finish
    /// on its thread, which holds neither the runtime nor the agent's stop; while it
    /// has not finished, later saves are skipped.
    pub async fn save_logged(self: &Arc<Self>, deadline: Duration) {
        if self.saving.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                "cannot save what probes remember: the previous save of {} has not finished",
                self.path.display()
            );
            return;
        }
        let me = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("depprobe-save".into())
            .spawn(move || {
                let result = me.save();
                me.saving.store(false, Ordering::SeqCst);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            self.saving.store(false, Ordering::SeqCst);
            tracing::warn!("cannot save what probes remember: {e}");
            return;
        }
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("cannot save what probes remember: {e}"),
            Ok(Err(_)) => tracing::warn!("cannot save what probes remember: the save failed"),
            Err(_) => tracing::warn!(
                "cannot save what probes remember: writing {} did not finish within {}s",
                self.path.display(),
                deadline.as_secs()
            ),
        }
    }
}

/// The state file at `path`: `None` when there is none yet. It is read through the
/// bounded reader (a regular file only, at most [`MAX_FILE_BYTES`], opened without
/// waiting, on a thread of its own with a deadline), so that a FIFO, a device or a
/// hung mount in its place is a warning and a fresh start, never an agent that
/// binds its port and does not answer.
fn read(path: &Path) -> Result<Option<StateFile>, PersistError> {
    let owned = path.to_owned();
    let read = files::within(files::READ_DEADLINE, move || {
        files::read_bounded(&owned, MAX_FILE_BYTES)
    });
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = |reason: String| PersistError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    // The version first, so that a file of another format says so.
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    let version: Version = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if version.format != FORMAT {
        return Err(corrupt(format!("it is of format {}", version.format)));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one,
/// never a mix: a temporary file beside it, fsync, rename, fsync of the directory.
/// The temporary file has a name no one can guess and is created, never opened:
/// `O_CREAT|O_EXCL|O_NOFOLLOW`, so a symlink or a FIFO planted in the state
/// directory is neither followed nor waited on. A failed write removes it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let tmp = temporary_name(path);
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| PersistError::Io { path: p, source }
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(source));
    }
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        // Makes the rename durable; a file system that cannot sync a directory
        // still has the file.
        let _ = d.sync_all();
    }
    Ok(())
}

/// `.memory.json.<random>.tmp` beside `path`: 64 bits from the process' random
/// hasher keys, the process id and the clock, so that no other process can plant
/// the name ahead of the write.
fn temporary_name(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(now.as_nanos());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| FILE_NAME.to_owned());
    path.with_file_name(format!(".{name}.{:016x}.tmp", h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_another_format_is_refused_with_its_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, r#"{"format": 7, "probes": {}}"#).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("format 7"), "{e}");
        std::fs::write(&path, "{\"format\": 1, \"probes\": {\"a\": ").unwrap();
        assert!(matches!(read(&path), Err(PersistError::Corrupt { .. })));
        std::fs::remove_file(&path).unwrap();
        assert!(read(&path).unwrap().is_none());
    }

    #[test]
    fn written_files_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut probes = BTreeMap::new();
        probes.insert(
            "db".to_owned(),
            Memory {
                leaf: None,
                role: Some("primary".into()),
            },
        );
        let file = StateFile {
            format: FORMAT,
            probes,
        };
        write_atomically(&path, &serde_json::to_vec(&file).unwrap()).unwrap();
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back.probes["db"].role.as_deref(), Some("primary"));
        assert!(!dir.path().join("memory.json.tmp").exists());
    }
}
