//! Shared setup of the agent's end-to-end tests: a CA, two HTTPS dependencies (one
//! healthy, one with an expired certificate), and a configuration file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use depprobe_tests::agent_process::AgentProcess;
use depprobe_tests::{Ca, HttpServer, Reply, Scratch, Validity};

/// The `depprobe` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_depprobe"))
}

/// Two dependencies and a scratch directory.
pub struct World {
    pub scratch: Scratch,
    pub ca: Ca,
    pub ca_file: PathBuf,
    pub healthy: HttpServer,
    pub expired: HttpServer,
}

impl World {
    pub async fn new() -> World {
        let ca = Ca::root("Agent Test CA").unwrap();
        let healthy = HttpServer::builder()
            .tls(&ca.leaf(&["localhost"], Validity::current()).unwrap())
            .respond(|_| Reply::ok("{\"status\":\"ok\"}"))
            .start()
            .await
            .unwrap();
        let expired = HttpServer::builder()
            .tls(&ca.leaf(&["localhost"], Validity::expired()).unwrap())
            .start()
            .await
            .unwrap();
        let scratch = Scratch::new().unwrap();
        let ca_file = scratch.ca(&ca).unwrap();
        World {
            scratch,
            ca,
            ca_file,
            healthy,
            expired,
        }
    }

    /// The probes section for the two dependencies.
    pub fn probes(&self) -> String {
        format!(
            "probes:\n  - name: healthy-api\n    kind: http\n    url: https://localhost:{}/health\n  - name: expired-tls\n    kind: tls\n    address: localhost:{}\n",
            self.healthy.port(),
            self.expired.port()
        )
    }

    /// A configuration with `agent_and_telemetry` (YAML sections), the CA as a
    /// default, and the two probes; written to `name`.
    pub fn config(&self, name: &str, agent_and_telemetry: &str) -> PathBuf {
        let text = format!(
            "{agent_and_telemetry}defaults:\n  tls:\n    ca_file: {}\n{}",
            self.ca_file.display(),
            self.probes()
        );
        self.scratch.write(name, &text).unwrap()
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    pub async fn start(&self, config: &Path, log: &str) -> AgentProcess {
        AgentProcess::start(&bin(), config, &self.log(log), &[])
            .await
            .unwrap()
    }
}

/// The agent section used by most tests: fast runs, API on a free port.
pub const FAST_AGENT: &str = "agent:\n  interval: 500ms\n  timeout: 10s\n  listen: 127.0.0.1:0\n";

/// Polls `/status` until `f` accepts it.
pub async fn wait_status(
    agent: &AgentProcess,
    limit: Duration,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(s) = agent.status().await
            && f(&s)
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never matched; log:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The entry of probe `name` in a `/status` array.
pub fn entry<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status.as_array()?.iter().find(|e| e["name"] == name)
}

/// The value of the first sample of `metric` whose labels contain all of `labels`.
pub fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (name, rest) = match series.split_once('{') {
            Some((n, r)) => (n, r),
            None => (series, ""),
        };
        if name != metric {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// Polls the agent's log until a line contains every one of `needles`; that line.
pub async fn wait_for_log_line(agent: &AgentProcess, needles: &[&str]) -> String {
    let found = depprobe_tests::agent_process::wait_until(Duration::from_secs(30), || {
        agent
            .log_text()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
    })
    .await;
    match found {
        Some(l) => l,
        None => panic!("no log line with {needles:?}; log:\n{}", agent.log_text()),
    }
}

/// Polls `/metrics` until `metric{labels}` equals `value`.
pub async fn wait_metric(agent: &AgentProcess, metric: &str, labels: &[(&str, &str)], value: f64) {
    wait_metric_where(agent, metric, labels, &format!("= {value}"), |v| v == value).await;
}

/// Polls `/metrics` (for at most 30 s) until the sample of `metric` with `labels`
/// satisfies `ok` (described by `what` in the failure message); returns it.
pub async fn wait_metric_where(
    agent: &AgentProcess,
    metric: &str,
    labels: &[(&str, &str)],
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((_, text)) = agent.get("/metrics").await
            && let Some(v) = sample(&text, metric, labels).filter(|v| ok(*v))
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{metric} never became {what}; log:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
