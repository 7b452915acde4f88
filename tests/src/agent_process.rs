//! A real `depprobe run` process for end-to-end tests: started on a config file,
//! its log captured, its HTTP endpoints queried, signalled, and measured.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// A running agent.
pub struct AgentProcess {
    child: Child,
    log: PathBuf,
    /// Where its endpoints listen.
    pub api: SocketAddr,
}

/// Why the agent could not be started or queried.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Spawning or I/O.
    #[error("agent process: {0}")]
    Io(#[from] std::io::Error),
    /// It did not say where it listens in time.
    #[error("the agent did not start serving within {0:?}; its log:\n{1}")]
    NotServing(Duration, String),
    /// An HTTP query failed.
    #[error("GET {0}: {1}")]
    Http(String, String),
}

impl AgentProcess {
    /// Starts `bin run -c config` with `envs`, logging to `log`, and waits until it
    /// serves its endpoints (the config should set `agent.listen: 127.0.0.1:0`).
    pub async fn start(
        bin: &Path,
        config: &Path,
        log: &Path,
        envs: &[(&str, &str)],
    ) -> Result<AgentProcess, AgentError> {
        Self::start_args(
            bin,
            &["run", "-c", &config.display().to_string()],
            log,
            envs,
        )
        .await
    }

    /// Starts `bin` with `args`; see [`AgentProcess::start`].
    pub async fn start_args(
        bin: &Path,
        args: &[&str],
        log: &Path,
        envs: &[(&str, &str)],
    ) -> Result<AgentProcess, AgentError> {
        let file = std::fs::File::create(log)?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        cmd.env("DEPPROBE_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let mut agent = AgentProcess {
            child,
            log: log.to_owned(),
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let limit = Duration::from_secs(30);
        let found = wait_until(limit, || {
            let text = agent.log_text();
            text.lines().find_map(|l| {
                l.split("on http://")
                    .nth(1)
                    .or_else(|| l.split("on https://").nth(1))
                    .filter(|_| l.contains("serving /metrics"))
                    .and_then(|a| {
                        // The address ends the text line; in a JSON record a quote
                        // or a slash follows it.
                        let end = a
                            .find(|c: char| !(c.is_ascii_hexdigit() || "[]:.".contains(c)))
                            .unwrap_or(a.len());
                        a[..end].parse().ok()
                    })
            })
        })
        .await;
        match found {
            Some(addr) => {
                agent.api = addr;
                Ok(agent)
            }
            None => Err(AgentError::NotServing(limit, agent.log_text())),
        }
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// `GET path` on its endpoints: status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), AgentError> {
        http_get(self.api, path).await
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> Result<serde_json::Value, AgentError> {
        let (_, body) = self.get("/status").await?;
        serde_json::from_str(&body).map_err(|e| AgentError::Http("/status".into(), e.to_string()))
    }

    /// Sends `signal` (e.g. `TERM`, `HUP`).
    pub fn signal(&self, signal: &str) -> Result<(), AgentError> {
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        Ok(())
    }

    /// Waits for the process to exit, for at most `limit`; its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_until(limit, || {
            self.child
                .try_wait()
                .ok()
                .flatten()
                .map(|s| s.code().unwrap_or(-1))
        })
        .await
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `depprobe` binary cargo built for this profile, next to the running test's
/// executable (`target/<profile>/deps/<test>-*` -> `target/<profile>/depprobe`), or
/// `DEPPROBE_BIN`. `cargo test --workspace` builds it; a test of another crate run
/// alone needs `cargo build -p depprobe-agent` (same profile) first.
pub fn depprobe_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DEPPROBE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().unwrap_or(Path::new("."));
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    dir.join(format!("depprobe{}", std::env::consts::EXE_SUFFIX))
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Polls `f` (every 20 ms) until it returns `Some`, for at most `limit`.
pub async fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.1 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), AgentError> {
    let err = |e: &dyn std::fmt::Display| AgentError::Http(path.to_owned(), e.to_string());
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| err(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| err(&e))?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| err(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| err(&e))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| err(&e))?
        .to_bytes();
    driver.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
