//! CPU time and memory of a process, read from `/proc`.

use std::time::Duration;

use crate::BenchError;

/// One reading of a process (or a process and its children).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub peak_kib: u64,
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// `utime + stime` and the parent pid from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Result<(Duration, u32), BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::Proc(path.clone(), e))?;
    // The command name (field 2) may hold spaces: fields resume after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = num(11) + num(12);
    let tps = ticks_per_second();
    let cpu = Duration::from_secs(ticks / tps)
        + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps);
    Ok((cpu, u32::try_from(num(1)).unwrap_or(0)))
}

fn status_kib(pid: u32, key: &str) -> u64 {
    depprobe_tests::agent_process::proc_status_kib(pid, key).unwrap_or(0)
}

/// The usage of `pid` alone.
pub fn usage(pid: u32) -> Result<Usage, BenchError> {
    let (cpu, _) = stat(pid)?;
    Ok(Usage {
        cpu,
        rss_kib: status_kib(pid, "VmRSS:"),
        peak_kib: status_kib(pid, "VmHWM:"),
    })
}

/// The usage of `pid` plus its live children (nginx: master and workers). Memory is
/// summed too.
pub fn usage_with_children(pid: u32) -> Result<Usage, BenchError> {
    let mut total = usage(pid)?;
    for child in children(pid) {
        if let Ok(u) = usage(child) {
            total.cpu += u.cpu;
            total.rss_kib += u.rss_kib;
            total.peak_kib += u.peak_kib;
        }
    }
    Ok(total)
}

fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(*pid).map(|(_, ppid)| ppid == parent).unwrap_or(false))
        .collect()
}

/// CPU time of the calling thread (`getrusage(RUSAGE_THREAD)`).
pub fn thread_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let u = usage(std::process::id()).unwrap_or_default();
        assert!(u.rss_kib > 0 && u.peak_kib >= u.rss_kib, "{u:?}");
        let start = thread_cpu();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu() > start);
    }
}
