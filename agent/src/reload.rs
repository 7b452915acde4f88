//! Noticing that the configuration should be read again: SIGHUP, or a change of
//! the file's content (polled, which also sees Kubernetes ConfigMap symlink swaps).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

/// How often the file is checked.
pub const POLL: Duration = Duration::from_secs(1);

/// A hash of the file's content, or `None` when it cannot be read now. The file
/// goes through the bounded reader (a regular file only, at most the configuration's
/// cap, opened without waiting) on a blocking thread with a deadline, so that a FIFO
/// or a hung mount put where the configuration was never stops the runtime: the
/// probes, the endpoints and SIGTERM go on, and the loader reports the file.
async fn content_hash(path: &Path) -> Option<u64> {
    use depprobe_config::files;
    use std::hash::{Hash, Hasher};
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        files::within(files::READ_DEADLINE, move || {
            files::read_bounded(&owned, files::MAX_CONFIG_BYTES)
        })
    });
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            tracing::debug!("the configuration file cannot be read for its hash: {e}");
            return None;
        }
        Err(_) => return None,
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Sends on `tx` whenever the file at `path` changes content or SIGHUP arrives.
pub fn watch(path: PathBuf, tx: mpsc::Sender<&'static str>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP ({e}); reload on file change only");
                None
            }
        };
        let mut last = content_hash(&path).await;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = tick.tick() => {
                    let now = content_hash(&path).await;
                    if now.is_none() || now == last {
                        continue;
                    }
                    last = now;
                    "the file changed"
                }
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    last = content_hash(&path).await;
                    "SIGHUP"
                }
            };
            if tx.send(why).await.is_err() {
                return;
            }
        }
    })
}
