//! `agent.state_dir`: what probes remember survives a restart of the real agent.
//! A renewal from another issuer across a restart is still `issuer_changed`
//! (incident 02); the file holds fingerprints and DNs, never a secret; a corrupt
//! file is a warning and a fresh start.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{FAST_AGENT, bin, entry, wait_status};
use depprobe_probes::transport::chain::sha256_hex;
use depprobe_tests::agent_process::{AgentProcess, wait_until};
use depprobe_tests::{Ca, HttpServer, Reply, Scratch, Validity};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "s3cr3t-header-value-never-stored";

/// Two CAs the probe trusts, and an HTTPS server for each.
struct World {
    scratch: Scratch,
    state_dir: PathBuf,
    public: HttpServer,
    internal: HttpServer,
    public_sha256: String,
}

async fn world() -> World {
    let public = Ca::root("Public Test CA").unwrap();
    let internal = Ca::root("Internal Fallback CA").unwrap();
    let public_leaf = public.leaf(&["localhost"], Validity::current()).unwrap();
    let internal_leaf = internal.leaf(&["localhost"], Validity::current()).unwrap();
    let serve = |leaf| async move {
        HttpServer::builder()
            .tls(&leaf)
            .respond(|_| Reply::ok("ok"))
            .start()
            .await
            .unwrap()
    };
    let scratch = Scratch::new().unwrap();
    let pem = format!("{}{}", public.pem, internal.pem);
    scratch.write("roots.pem", &pem).unwrap();
    let public_sha256 = sha256_hex(&public_leaf.chain[0]);
    World {
        state_dir: scratch.path("state"),
        public: serve(public_leaf).await,
        internal: serve(internal_leaf).await,
        scratch,
        public_sha256,
    }
}

impl World {
    /// A configuration whose probe `api` asks the server on `port` (with an inline
    /// secret header), keeping state in the state directory; written to `name`. The
    /// interval is long enough for `/status` to show the first run's findings
    /// before a second run replaces them.
    fn config(&self, name: &str, port: u16) -> PathBuf {
        let text = format!(
            "{FAST_AGENT}  state_dir: {}\ndefaults:\n  tls:\n    ca_file: {}\n    system_roots: false\nprobes:\n  - name: api\n    kind: http\n    interval: 10s\n    url: https://localhost:{port}/\n    headers:\n      X-Api-Key: {SECRET}\n",
            self.state_dir.display(),
            self.scratch.path("roots.pem").display(),
        );
        self.scratch.write(name, &text).unwrap()
    }

    async fn start(&self, config: &Path, log: &str) -> AgentProcess {
        AgentProcess::start(&bin(), config, &self.scratch.path(log), &[])
            .await
            .unwrap()
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir.join("memory.json")
    }
}

/// The finding types of probe `name` in `/status`.
fn finding_types(status: &serde_json::Value, name: &str) -> Vec<String> {
    entry(status, name)
        .and_then(|e| e["findings"].as_array())
        .map(|f| {
            f.iter()
                .filter_map(|x| x["type"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn ran(status: &serde_json::Value) -> bool {
    entry(status, "api").is_some_and(|e| e["status"] == "up" || e["status"] == "degraded")
}

async fn stop(mut agent: AgentProcess) {
    agent.signal("TERM").unwrap();
    assert_eq!(agent.wait_exit(WAIT).await, Some(0), "{}", agent.log_text());
}

#[tokio::test]
async fn a_new_issuer_after_a_restart_is_issuer_changed() {
    let w = world().await;
    let first = w.config("first.yaml", w.public.port());
    let agent = w.start(&first, "first.log").await;
    let s = wait_status(&agent, WAIT, ran).await;
    assert!(finding_types(&s, "api").is_empty(), "{s:#}");
    stop(agent).await;

    // The file names the certificate seen, and nothing secret.
    let text = std::fs::read_to_string(w.state_file()).unwrap();
    assert!(text.contains(&w.public_sha256), "{text}");
    assert!(text.contains("Public Test CA"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format"], 1);
    let api = json["probes"]["api"].as_object().unwrap();
    let keys: Vec<&String> = api.keys().collect();
    assert!(
        keys.iter().all(|k| *k == "leaf" || *k == "role"),
        "{keys:?}"
    );

    // Restarted against a certificate from the internal CA: the first run says so.
    let second = w.config("second.yaml", w.internal.port());
    let agent = w.start(&second, "second.log").await;
    let s = wait_status(&agent, WAIT, ran).await;
    let types = finding_types(&s, "api");
    assert!(
        types.contains(&"issuer_changed".to_owned()) && types.contains(&"cert_changed".to_owned()),
        "{s:#}"
    );
    stop(agent).await;
}

#[tokio::test]
async fn without_a_state_dir_a_restart_forgets() {
    let w = world().await;
    let write = |name: &str, port: u16| {
        let text = std::fs::read_to_string(w.config(name, port))
            .unwrap()
            .replace(&format!("  state_dir: {}\n", w.state_dir.display()), "");
        w.scratch.write(name, &text).unwrap()
    };
    let agent = w
        .start(&write("first.yaml", w.public.port()), "first.log")
        .await;
    wait_status(&agent, WAIT, ran).await;
    stop(agent).await;
    let agent = w
        .start(&write("second.yaml", w.internal.port()), "second.log")
        .await;
    let s = wait_status(&agent, WAIT, ran).await;
    assert!(finding_types(&s, "api").is_empty(), "{s:#}");
    assert!(!w.state_dir.exists());
    stop(agent).await;
}

#[tokio::test]
async fn a_corrupt_state_file_is_a_warning_and_a_fresh_start() {
    let w = world().await;
    std::fs::create_dir_all(&w.state_dir).unwrap();
    std::fs::write(w.state_file(), "{\"format\": 1, \"probes\": {\"api\": [").unwrap();
    let config = w.config("c.yaml", w.public.port());
    let agent = w.start(&config, "c.log").await;
    let s = wait_status(&agent, WAIT, ran).await;
    assert!(finding_types(&s, "api").is_empty(), "{s:#}");
    let log = agent.log_text();
    assert!(
        log.contains("WARN") && log.contains("memory.json") && log.contains("fresh memory"),
        "{log}"
    );
    // It works, and the file is replaced by a good one while it runs.
    let good = wait_until(WAIT, || {
        std::fs::read_to_string(w.state_file())
            .ok()
            .filter(|t| t.contains(&w.public_sha256))
    })
    .await;
    assert!(good.is_some(), "{}", agent.log_text());
    stop(agent).await;
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Issue 24: `memory.json` a FIFO that nobody writes. The agent used to bind its
/// port and never answer; now the file is a warning and a fresh start.
#[tokio::test]
async fn a_state_file_that_is_a_fifo_is_a_warning_and_a_fresh_start() {
    let w = world().await;
    std::fs::create_dir_all(&w.state_dir).unwrap();
    mkfifo(&w.state_file());
    let config = w.config("fifo.yaml", w.public.port());
    let agent = w.start(&config, "fifo.log").await;
    let s = wait_status(&agent, WAIT, ran).await;
    assert!(finding_types(&s, "api").is_empty(), "{s:#}");
    let (code, _) = tokio::time::timeout(Duration::from_secs(1), agent.get("/healthz"))
        .await
        .expect("/healthz answers within 1 s")
        .unwrap();
    assert_eq!(code, 200);
    let log = agent.log_text();
    assert!(
        log.contains("memory.json") && log.contains("not a regular file"),
        "{log}"
    );
    stop(agent).await;
}

/// Issue 24: the temporary file of a save is never a path someone else chose. A
/// symlink planted under the old fixed name (`memory.json.tmp`) pointing at a file
/// of the operator's is neither followed nor written, and a FIFO under that name
/// does not hold the save at stop: the agent exits, and the state is written.
#[tokio::test]
async fn planted_temporary_files_are_neither_followed_nor_waited_on() {
    let w = world().await;
    std::fs::create_dir_all(&w.state_dir).unwrap();
    let victim = w
        .scratch
        .write("victim.txt", "the operator's file\n")
        .unwrap();
    std::os::unix::fs::symlink(&victim, w.state_dir.join("memory.json.tmp")).unwrap();
    let config = w.config("symlink.yaml", w.public.port());
    let agent = w.start(&config, "symlink.log").await;
    wait_status(&agent, WAIT, ran).await;
    stop(agent).await;
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "the operator's file\n"
    );
    let text = std::fs::read_to_string(w.state_file()).unwrap();
    assert!(text.contains(&w.public_sha256), "{text}");

    std::fs::remove_file(w.state_dir.join("memory.json.tmp")).unwrap();
    std::fs::remove_file(w.state_file()).unwrap();
    mkfifo(&w.state_dir.join("memory.json.tmp"));
    let agent = w.start(&config, "fifo-tmp.log").await;
    wait_status(&agent, WAIT, ran).await;
    stop(agent).await;
    let text = std::fs::read_to_string(w.state_file()).unwrap();
    assert!(text.contains(&w.public_sha256), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(&w.state_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") && n != "memory.json.tmp")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
