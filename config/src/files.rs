//! Reading the local files the agent is given (its configuration, secrets, token
//! files, certificates) without trusting them to be small or to be files at all.
//!
//! A path may name a FIFO that no one writes (opening it would wait forever), a
//! device that never ends, or a file grown by mistake to gigabytes. [`read_bounded`]
//! reads only a regular file, opened without waiting, and at most a cap: anything
//! else is an I/O error that says why, which the caller reports as it reports an
//! unreadable file.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Most bytes of a configuration file.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Most bytes of a secret or token file.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// Most bytes of a certificate, key or CRL file (PEM).
pub const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

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
