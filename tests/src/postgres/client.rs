//! libpq itself, beside the probe: `psql` (Debian's, linked against the system
//! OpenSSL) run with a conninfo string, so that a test asserts that the probe and
//! the application's own client agree on the same server and settings.

use std::process::Command;

/// Where psql is (`$DEPPROBE_PSQL`, or Debian's `/usr/bin/psql`).
fn psql_path() -> String {
    std::env::var("DEPPROBE_PSQL").unwrap_or_else(|_| "/usr/bin/psql".into())
}

/// Connects with `conninfo` (libpq's `key=value` form) and `password`, runs
/// `SELECT 1`: `Ok(())` when libpq connected, else what psql printed. No `PG*`
/// variable of the caller's environment leaks in, and no `~/.postgresql` file is
/// read (`HOME` points nowhere).
pub fn psql_connects(conninfo: &str, password: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(psql_path());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", "/nonexistent")
        .env("PGCONNECT_TIMEOUT", "10")
        .args([
            "-X", "-q", "-A", "-t", "-w", "-c", "SELECT 1", "-d", conninfo,
        ]);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().map_err(|e| format!("running psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
