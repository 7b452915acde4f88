//! Real third-party metrics endpoints: Debian's `prometheus` server and
//! `prometheus-blackbox-exporter`, each run as a child process on loopback.
//!
//! A free port is found by binding `127.0.0.1:0` and releasing it; another process
//! may take it before the child binds, so a child that exits before it is ready is
//! started again on a new port. Each child gets its own temporary directory
//! (configuration, storage, log), is ready when its readiness endpoint answers 200,
//! and is killed and reaped when its guard is dropped. `scripts/deps` installs the
//! packages.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Attempts at finding a port the child can bind.
const ATTEMPTS: usize = 5;
/// How long a child may take to become ready (Prometheus opens its TSDB first).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Pause between two readiness polls.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Why a third-party endpoint could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ChildServerError {
    /// The program is not installed.
    #[error("`{program}` cannot be started ({source}); run scripts/deps to install it")]
    Missing {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// Files or ports.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It never became ready.
    #[error("{program} did not become ready: {why}; its log:\n{log}")]
    NotReady {
        /// The program.
        program: String,
        /// What was seen.
        why: String,
        /// The end of its log.
        log: String,
    },
}

/// A third-party server running as a child process; killed when dropped.
pub struct ChildServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildServer {
    /// Starts `program` with the arguments `args(port, dir)` gives, in a new temporary
    /// directory after `prepare(port, dir)` wrote its files, and waits until
    /// `ready_path` answers 200.
    async fn start(
        program: &str,
        ready_path: &str,
        prepare: impl Fn(u16, &Path) -> std::io::Result<()>,
        args: impl Fn(u16, &Path) -> Vec<String>,
    ) -> Result<ChildServer, ChildServerError> {
        let mut last_why = String::new();
        let mut last_log = String::new();
        for _ in 0..ATTEMPTS {
            let dir = tempfile::tempdir()?;
            let port = crate::free_port()?;
            prepare(port, dir.path())?;
            let log_path = dir.path().join("log");
            let log = File::create(&log_path)?;
            let child = Command::new(program)
                .args(args(port, dir.path()))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|source| ChildServerError::Missing {
                    program: program.to_owned(),
                    source,
                })?;
            let mut server = ChildServer { child, port, dir };
            match server.wait_ready(ready_path).await {
                Ok(()) => return Ok(server),
                Err(why) => {
                    last_why = why;
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    // Dropping the server kills it; try again on another port.
                }
            }
        }
        let tail: Vec<&str> = last_log.lines().rev().take(20).collect();
        Err(ChildServerError::NotReady {
            program: program.to_owned(),
            why: last_why,
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        })
    }

    /// Polls `path` until it answers 200; an error when the child exits first or
    /// the time is up.
    async fn wait_ready(&mut self, path: &str) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited with {status} before it was ready"));
            }
            if let Ok((200, _)) = http_get(self.port, path).await {
                // Ours, not a process that took the port first: ours is alive.
                return match self.child.try_wait() {
                    Ok(None) => Ok(()),
                    _ => Err("it exited while another process answered on its port".into()),
                };
            }
            if Instant::now() > deadline {
                return Err(format!("{path} did not answer 200 within {READY_WITHIN:?}"));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Debian's Prometheus server, scraping itself every second.
pub struct PrometheusServer {
    server: ChildServer,
}

impl PrometheusServer {
    /// Starts it with its storage in a temporary directory; ready when `/-/ready`
    /// answers 200.
    pub async fn start() -> Result<PrometheusServer, ChildServerError> {
        let server = ChildServer::start(
            "prometheus",
            "/-/ready",
            |port, dir| {
                std::fs::write(
                    dir.join("prometheus.yml"),
                    format!(
                        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
                    ),
                )
            },
            |port, dir| {
                vec![
                    format!("--config.file={}", dir.join("prometheus.yml").display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    "--log.level=warn".into(),
                ]
            },
        )
        .await?;
        Ok(PrometheusServer { server })
    }

    /// Waits until its first scrape of itself is stored, so that `/federate` has
    /// the series `up{job="prometheus"}`.
    pub async fn wait_for_first_scrape(&self) -> Result<(), ChildServerError> {
        let deadline = Instant::now() + READY_WITHIN;
        let path = "/federate?match[]=up";
        loop {
            if let Ok((200, body)) = http_get(self.server.port, path).await
                && body.contains("up{")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ChildServerError::NotReady {
                    program: "prometheus".into(),
                    why: format!("{path} served no `up` series within {READY_WITHIN:?}"),
                    log: std::fs::read_to_string(self.server.dir().join("log")).unwrap_or_default(),
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }
}

/// One scrape job of [`PrometheusServer::scraping`]: its name, `host:port` and path.
#[derive(Clone, Debug)]
pub struct ScrapeJob {
    /// The job's name (its `job` label).
    pub name: String,
    /// `host:port` of the target.
    pub target: String,
    /// The path scraped (`/metrics`).
    pub path: String,
}

/// What Prometheus made of a target's last scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetHealth {
    /// `up` was 1: the scrape was ingested.
    pub up: bool,
    /// Prometheus' error for a failed scrape (empty when up).
    pub last_error: String,
}

impl PrometheusServer {
    /// Starts it scraping each job every second, and nothing else.
    pub async fn scraping(jobs: &[ScrapeJob]) -> Result<PrometheusServer, ChildServerError> {
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for job in jobs {
            config.push_str(&format!(
                "  - job_name: {:?}\n    metrics_path: {:?}\n    static_configs:\n      - targets: [{:?}]\n",
                job.name, job.path, job.target
            ));
        }
        let server = ChildServer::start(
            "prometheus",
            "/-/ready",
            |_, dir| std::fs::write(dir.join("prometheus.yml"), &config),
            |port, dir| {
                vec![
                    format!("--config.file={}", dir.join("prometheus.yml").display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    "--log.level=warn".into(),
                ]
            },
        )
        .await?;
        Ok(PrometheusServer { server })
    }

    /// Waits until `jobs` targets are known and each has been scraped once, and
    /// returns each job's health (from `/api/v1/targets`).
    pub async fn target_health(
        &self,
        jobs: usize,
    ) -> Result<std::collections::BTreeMap<String, TargetHealth>, ChildServerError> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut seen = String::new();
        loop {
            if let Ok((200, body)) = http_get(self.server.port, "/api/v1/targets").await {
                if let Some(health) = scraped_targets(&body).filter(|h| h.len() >= jobs) {
                    return Ok(health);
                }
                seen = body;
            }
            if Instant::now() > deadline {
                return Err(ChildServerError::NotReady {
                    program: "prometheus".into(),
                    why: format!(
                        "not every target was scraped within {READY_WITHIN:?}: {}",
                        seen.chars().take(500).collect::<String>()
                    ),
                    log: std::fs::read_to_string(self.server.dir().join("log")).unwrap_or_default(),
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// Each job's health from a `/api/v1/targets` answer, once none is `unknown`.
fn scraped_targets(body: &str) -> Option<std::collections::BTreeMap<String, TargetHealth>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let targets = v["data"]["activeTargets"].as_array()?;
    let mut health = std::collections::BTreeMap::new();
    for t in targets {
        let up = match t["health"].as_str()? {
            "up" => true,
            "down" => false,
            _ => return None,
        };
        health.insert(
            t["labels"]["job"].as_str()?.to_owned(),
            TargetHealth {
                up,
                last_error: t["lastError"].as_str().unwrap_or_default().to_owned(),
            },
        );
    }
    Some(health)
}

/// Debian's blackbox_exporter with one `http_2xx` module.
pub struct BlackboxExporter {
    server: ChildServer,
}

impl BlackboxExporter {
    /// Starts it; ready when `/-/healthy` answers 200.
    pub async fn start() -> Result<BlackboxExporter, ChildServerError> {
        let server = ChildServer::start(
            "prometheus-blackbox-exporter",
            "/-/healthy",
            |_, dir| {
                std::fs::write(
                    dir.join("blackbox.yml"),
                    "modules:\n  http_2xx:\n    prober: http\n",
                )
            },
            |port, dir| {
                vec![
                    format!("--config.file={}", dir.join("blackbox.yml").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    "--log.level=warn".into(),
                ]
            },
        )
        .await?;
        Ok(BlackboxExporter { server })
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
}

/// `GET http://127.0.0.1:port{path}`: the status and the body as text.
async fn http_get(port: u16, path: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, format!("127.0.0.1:{port}"))
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    conn.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
