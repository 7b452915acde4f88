//! Reading the local files the agent is given (its configuration, secrets, token
//! files, certificates) without trusting them to be small or to be files at all.
//!
//! A path may name a FIFO that no one writes (opening it would wait forever), a
//! device that never ends, or a file grown by mistake to gigabytes. [`read_bounded`]
//! reads only a regular file, opened without waiting, and at most a cap: anything
//! else is an I/O error that says why, which the caller reports as it reports an
//! unreadable file. A regular file on a network mount may still stall: the files
//! read on every run (secrets, tokens) are read through [`within`], on a thread of
//! their own, and given up after a deadline.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Most bytes of a configuration file.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Most bytes of a secret or token file.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// Most bytes of a certificate, key or CRL file (PEM).
pub const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// How long a file read on every run (a secret, a token) may take.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);

/// Reads given up on that may still be stalled, at most: past this, a read is
/// refused at once rather than given a thread of its own.
pub const MAX_STALLED_READS: usize = 16;

static READS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Runs `read` on a thread of its own and waits at most `deadline` for it. A read
/// that stalls (a hung network mount) is an error that says so and the caller goes
/// on; its thread ends when the read does. At most [`MAX_STALLED_READS`] such reads
/// are left running: past that, reads are refused at once.
pub fn within<T: Send + 'static>(
    deadline: Duration,
    read: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if READS_IN_FLIGHT.fetch_add(1, Ordering::SeqCst) >= MAX_STALLED_READS {
        READS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "earlier reads of local files are still stalled (a hung mount?); not read",
        ));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("depprobe-read".into())
        .spawn(move || {
            let result = read();
            READS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        READS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Err(e);
    }
    rx.recv_timeout(deadline).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the read did not finish within {}s (a stalled network mount?)",
                deadline.as_secs()
            ),
        ))
    })
}

/// The contents of the regular file at `path`, if it holds at most `cap` bytes.
pub fn read_bounded(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, socket, device or directory is never read)",
        ));
    }
    // Non-blocking, so that a FIFO put in its place since is not waited on.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the limit of {cap} bytes"),
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_text(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_read_is_given_up_after_its_deadline() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let e = within(Duration::from_millis(50), move || {
            // Stands for a read on a hung mount: it returns when released.
            let _ = wait.recv();
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("stalled"), "{e}");
        drop(release);
        assert_eq!(within(Duration::from_secs(5), || Ok(7)).unwrap(), 7);
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, "abc").unwrap();
        assert_eq!(read_bounded(&small, 3).unwrap(), b"abc");
        let e = read_bounded(&small, 2).unwrap_err();
        assert!(
            e.to_string().contains("larger than the limit of 2 bytes"),
            "{e}"
        );
        let e = read_bounded(dir.path(), 10).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_bounded(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
