//! Noticing that the configuration should be read again: SIGHUP, or a change of
//! the file's content (polled, which also sees Kubernetes ConfigMap symlink swaps).

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

/// How often the file is checked.
pub const POLL: Duration = Duration::from_secs(1);

fn content_hash(path: &PathBuf) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
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
        let mut last = content_hash(&path);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = tick.tick() => {
                    let now = content_hash(&path);
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
                    last = content_hash(&path);
                    "SIGHUP"
                }
            };
            if tx.send(why).await.is_err() {
                return;
            }
        }
    })
}
