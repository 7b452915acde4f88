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

/// glibc arenas the agent allocates from at most. glibc gives threads arenas of
/// their own (up to eight per core), each keeping what was freed in it: with the
/// probe thread, the render pool and the blocking pool, the peak at 10,000 targets
/// was 110.6 MiB with glibc's default and 109.9 MiB with two arenas, against
/// 88.5 MiB with one (docs/benchmarks.md, "Allocator arenas"). The threads then
/// share one arena's lock; the probes' CPU cost stayed within the noise of those
/// runs. An operator's `MALLOC_ARENA_MAX` still wins.
pub const ARENA_MAX: i32 = 1;

/// Caps glibc's arenas at [`ARENA_MAX`] unless `MALLOC_ARENA_MAX` is set; called
/// before any thread starts (glibc only; elsewhere a no-op).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes the allocator's tuning; it is called before
        // the runtime starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }
}

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
