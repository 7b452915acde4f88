//! Giving freed memory back to the system.
//!
//! Every run allocates and frees its connection's buffers on whichever worker
//! thread polls it, and glibc's allocator keeps what a thread's arena freed for
//! reuse instead of returning it; at thousands of targets that was a third of the
//! agent's resident memory (docs/benchmarks.md). `malloc_trim` returns the free
//! pages of every arena; the agent calls it on a timer and after rendering a large
//! `/metrics` or `/status`.

use std::time::Duration;

/// How often the agent trims.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Returns free heap pages to the system (glibc only; elsewhere a no-op).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims every [`TRIM_EVERY`] until aborted.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A walk over the free lists: off the runtime's workers.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}
