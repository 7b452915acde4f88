//! A broker run as a child process under a tiny shell supervisor that stops it when
//! the test process lets go of it, even when the test process dies: the supervisor
//! starts the broker in a session of its own, waits on a pipe from the test process,
//! and when that pipe closes (the guard is dropped, or the process exits) it sends
//! SIGTERM to the broker's whole process group (Postfix's and RabbitMQ's children
//! too), waits for it, and runs the broker's own clean-up (RabbitMQ's private `epmd`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::certs::CertError;

/// Pause between two readiness polls.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Why a broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The program is not installed.
    #[error("{program} is not installed; run scripts/deps to install it")]
    Missing {
        /// The program.
        program: String,
    },
    /// Files, ports or the supervisor.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Certificates for it could not be made.
    #[error("{0}")]
    Cert(#[from] CertError),
    /// It never became ready.
    #[error("{program} did not become ready: {why}; the end of its log:\n{log}")]
    NotReady {
        /// The program.
        program: String,
        /// What was seen.
        why: String,
        /// The end of its log.
        log: String,
    },
}

/// Runs `start` up to `attempts` times: a free port can be taken by another process
/// between its choice and the broker's bind. A missing program is not retried.
pub async fn with_retries<T, F, Fut>(attempts: usize, mut start: F) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BrokerError>>,
{
    let mut last = BrokerError::Io(std::io::Error::other("no attempt made"));
    for _ in 0..attempts {
        match start().await {
            Ok(t) => return Ok(t),
            Err(e @ BrokerError::Missing { .. }) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A broker process; stopped (and waited for) when dropped.
pub struct BrokerProcess {
    program: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    dir: TempDir,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        // Closing the pipe tells the supervisor to stop the broker.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl BrokerProcess {
    /// Starts `program` with `args` and `env` in `dir` (its log is `dir/log`);
    /// `cleanup` is a shell command run after the broker stopped.
    pub fn spawn(
        program: &str,
        args: &[String],
        env: &[(&str, String)],
        dir: TempDir,
        cleanup: &str,
    ) -> Result<BrokerProcess, BrokerError> {
        if !Path::new(program).is_file() {
            return Err(BrokerError::Missing {
                program: program.to_owned(),
            });
        }
        let log = dir.path().join("log");
        let out = File::create(&log)?;
        let script = format!(
            "setsid \"$@\" </dev/null & pid=$!; read _ignored; /bin/kill -TERM -- -$pid 2>/dev/null; wait $pid; {cleanup}"
        );
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut process = BrokerProcess {
            program: program.to_owned(),
            child,
            stdin: None,
            log,
            dir,
        };
        process.stdin = process.child.stdin.take();
        Ok(process)
    }

    /// Waits until every one of `ports` on 127.0.0.1 accepts a connection; an error
    /// when the broker exits first or `within` passes.
    pub async fn wait_ports(&mut self, ports: &[u16], within: Duration) -> Result<(), BrokerError> {
        let deadline = Instant::now() + within;
        for port in ports {
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(self.not_ready(format!("it exited with {status}")));
                }
                if TcpStream::connect(("127.0.0.1", *port)).await.is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(
                        self.not_ready(format!("port {port} did not open within {within:?}"))
                    );
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
        Ok(())
    }

    /// The error for a broker that did not come up, with the end of its log.
    pub fn not_ready(&self, why: String) -> BrokerError {
        BrokerError::NotReady {
            program: self.program.clone(),
            why,
            log: self.log_tail(),
        }
    }

    /// The last 30 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Its temporary directory (configuration, data, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
