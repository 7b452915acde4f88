//! The agent as a witness a dependency can neither silence nor blind: a probe that
//! panics reports `internal_error` and keeps its schedule; every target exports when
//! it last finished a run; the endpoints survive half-open and slowloris connections
//! and, with a web config file, require TLS and basic auth.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{FAST_AGENT, World, entry, sample, wait_status};
use depprobe_agent::api::{Limits, serve_with};
use depprobe_agent::scheduler::{Scheduled, Scheduler, Sink};
use depprobe_agent::state::State;
use depprobe_agent::telemetry::Telemetry;
use depprobe_agent::web_config::WebSecurity;
use depprobe_config::{Kind, Secret, TelemetryConfig};
use depprobe_probes::outcome::Target;
use depprobe_probes::{Outcome, Probe, ProbeMeta};
use depprobe_tests::agent_process::{AgentProcess, http_get, wait_until};
use depprobe_tests::{Ca, Validity};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "panic-payload-secret-4711";

/// A probe whose every run panics, with its secret in the payload.
struct Panicking {
    meta: ProbeMeta,
    runs: AtomicU64,
}

impl Probe for Panicking {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    fn run(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(self.panics())
    }
}

impl Panicking {
    async fn panics(&self) -> Outcome {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        panic!("run {n} cannot parse the reply to {SECRET}");
    }
}

fn panicking_probe() -> Arc<Panicking> {
    Arc::new(Panicking {
        meta: ProbeMeta {
            name: "buggy".into(),
            kind: Kind::new("test"),
            target: Target {
                address: "localhost".into(),
                port: 9,
            },
            timeout: Duration::from_secs(5),
            budgets: Vec::new(),
            secrets: vec![Secret::new(SECRET)],
            attributes: &[],
            memory: Default::default(),
            propagate_trace: true,
            tracestate: None,
        },
        runs: AtomicU64::new(0),
    })
}

#[tokio::test]
async fn a_probe_that_panics_reports_internal_error_and_keeps_its_schedule() {
    let state = State::new();
    let telemetry =
        Arc::new(Telemetry::start(&TelemetryConfig::default(), state.clone(), 1).unwrap());
    let sink = Arc::new(Sink {
        state: state.clone(),
        telemetry: telemetry.clone(),
    });
    let probe = panicking_probe();
    let mut scheduler = Scheduler::new(4, sink);
    scheduler.apply(vec![Scheduled {
        probe: probe.clone(),
        interval: Duration::from_millis(50),
        fingerprint: 1,
    }]);
    let ran = wait_until(WAIT, || {
        (probe.runs.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert!(
        ran.is_some(),
        "the probe did not keep its schedule after a panic"
    );
    let recorded = wait_until(WAIT, || {
        (state.probe_panics.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert!(recorded.is_some(), "panics were not counted");
    scheduler.stop().await;

    let outcomes = state.outcomes();
    let o = outcomes
        .iter()
        .find(|o| o.name == "buggy")
        .expect("an outcome");
    assert_eq!(o.status, depprobe_probes::Status::Down);
    assert_eq!(o.error_type.map(|e| e.as_str()), Some("internal_error"));
    assert!(o.phase.is_some());
    assert!(o.message.contains("the probe panicked"), "{}", o.message);
    assert!(
        o.message.contains("cannot parse the reply"),
        "{}",
        o.message
    );
    assert!(!o.message.contains(SECRET), "{}", o.message);

    let text = telemetry.prometheus_text();
    let panics = sample(&text, "depprobe_probe_panics_total", &[]).unwrap();
    assert!(panics >= 3.0, "{text}");
    let runs = sample(&text, "probe_runs_total", &[("probe_name", "buggy")]).unwrap();
    assert_eq!(runs, panics, "{text}");
    let info = sample(
        &text,
        "probe_error_info",
        &[("probe_name", "buggy"), ("error_type", "internal_error")],
    );
    assert_eq!(info, Some(1.0), "{text}");
    assert!(!text.contains(SECRET));
}

#[tokio::test]
async fn check_reports_a_panicking_probe_and_runs_the_others() {
    let buggy: Arc<dyn Probe> = panicking_probe();
    let outcomes = depprobe_agent::check::run_all(&[buggy.clone(), buggy], 2).await;
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert_eq!(o.error_type.map(|e| e.as_str()), Some("internal_error"));
        assert!(!o.message.contains(SECRET), "{}", o.message);
    }
    assert_eq!(depprobe_agent::check::exit_code(&outcomes, true), 2);
}

#[tokio::test]
async fn every_target_exports_its_last_run_runs_and_interval() {
    let world = World::new().await;
    let config = world.config("stale.yaml", FAST_AGENT);
    let agent = world.start(&config, "stale.log").await;
    let status = wait_status(&agent, WAIT, |s| {
        entry(s, "healthy-api").is_some_and(|e| e["runs"].as_u64() >= Some(2))
    })
    .await;
    let e = entry(&status, "healthy-api").unwrap();
    let last_run = time::OffsetDateTime::parse(
        e["last_run"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp() as f64;

    let (_, text) = agent.get("/metrics").await.unwrap();
    let label = [("probe_name", "healthy-api")];
    let interval = sample(&text, "probe_interval_seconds", &label).unwrap();
    assert_eq!(interval, 0.5, "{text}");
    let runs = sample(&text, "probe_runs_total", &label).unwrap();
    assert!(runs >= 2.0, "{text}");
    let exported = sample(&text, "probe_last_run_timestamp_seconds", &label).unwrap();
    assert!(exported >= last_run, "{exported} < {last_run}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!(
        exported <= now + 1.0 && exported > now - 60.0,
        "{exported} vs {now}"
    );
    assert_eq!(
        sample(&text, "depprobe_probe_panics_total", &[]),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn half_open_connections_do_not_stop_healthz() {
    let world = World::new().await;
    let config = world.config("halfopen.yaml", FAST_AGENT);
    let agent = world.start(&config, "halfopen.log").await;
    let mut held = Vec::new();
    for i in 0..300 {
        let mut c = TcpStream::connect(agent.api).await.unwrap();
        if i % 2 == 1 {
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Partial: ")
                .await
                .unwrap();
        }
        held.push(c);
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), agent.get("/healthz")).await;
    let (code, body) = answer
        .expect("/healthz did not answer within the client's 5 s")
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _) = tokio::time::timeout(Duration::from_secs(10), agent.get("/metrics"))
        .await
        .expect("/metrics did not answer")
        .unwrap();
    assert_eq!(code, 200);
    drop(held);
}

/// Serves an empty agent in-process with `limits`; its address.
async fn in_process(limits: Limits) -> std::net::SocketAddr {
    let state = State::new();
    let telemetry = Arc::new(Telemetry::start(&TelemetryConfig::default(), state, 0).unwrap());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (bound, _task) = serve_with(addr, telemetry, WebSecurity::default(), limits)
        .await
        .unwrap();
    bound
}

fn short_limits(max_connections: usize) -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        max_connections,
        ..Limits::default()
    }
}

#[tokio::test]
async fn slowloris_headers_are_cut_by_the_header_timeout() {
    let addr = in_process(short_limits(16)).await;
    let c = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = c.into_split();
    wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n")
        .await
        .unwrap();
    let trickle = async {
        // One header line after another, never the blank line that ends them.
        for i in 0.. {
            if wr
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let closed = async {
        let mut buf = Vec::new();
        let _ = rd.read_to_end(&mut buf).await;
        buf
    };
    let outcome = tokio::time::timeout(WAIT, async {
        tokio::select! {
            reply = closed => Some(reply),
            _ = trickle => None,
        }
    })
    .await
    .expect("the trickled headers were never cut");
    if let Some(reply) = outcome {
        let text = String::from_utf8_lossy(&reply);
        assert!(
            !text.contains("200 OK"),
            "a trickled request was served: {text}"
        );
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_slot() {
    let addr = in_process(short_limits(4)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Every slot is taken by a connection that sends nothing: /healthz waits until
    // the header timeout frees one, then answers.
    let (code, _) = tokio::time::timeout(WAIT, http_get(addr, "/healthz"))
        .await
        .expect("/healthz never got a slot")
        .unwrap();
    assert_eq!(code, 200);
    drop(held);
}

#[tokio::test]
async fn requests_outside_the_limits_are_refused() {
    let addr = in_process(short_limits(16)).await;
    let long = format!("/{}", "a".repeat(4096));
    let (code, _) = http_get(addr, &long).await.unwrap();
    assert_eq!(code, 414);
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /metrics HTTP/1.1\r\nHost: agent\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(WAIT, c.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
}

/// A TLS connection to `addr` as `localhost`, trusting `ca`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    ca: &Ca,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// A GET over TLS trusting `ca`, with an optional `Authorization` header.
async fn https_get(
    addr: std::net::SocketAddr,
    ca: &Ca,
    path: &str,
    auth: Option<&str>,
) -> (u16, hyper::HeaderMap, String) {
    let tls = tls_connect(addr, ca).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, "localhost");
    if let Some(a) = auth {
        req = req.header(hyper::header::AUTHORIZATION, a);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

#[tokio::test]
async fn the_web_config_requires_tls_and_basic_auth() {
    let world = World::new().await;
    let leaf = world.ca.leaf(&["localhost"], Validity::current()).unwrap();
    let dir = world.scratch.path("");
    let (cert, key) = leaf.write(&dir, "agent-endpoint").unwrap();
    let hash = bcrypt::hash("scrape-secret", 4).unwrap();
    let web = world
        .scratch
        .write(
            "web.yml",
            &format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: '{hash}'\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
    let agent_section = format!("{FAST_AGENT}  web_config: {}\n", web.display());
    let config = world.config("web.yaml", &agent_section);
    let agent: AgentProcess = world.start(&config, "web.log").await;
    assert!(
        agent.log_text().contains("on https://"),
        "{}",
        agent.log_text()
    );

    let (code, headers, _) = https_get(agent.api, &world.ca, "/metrics", None).await;
    assert_eq!(code, 401);
    let challenge = headers[hyper::header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    let wrong = basic("prometheus", "not-the-password");
    let (code, _, _) = https_get(agent.api, &world.ca, "/metrics", Some(&wrong)).await;
    assert_eq!(code, 401);
    let stranger = basic("someone", "scrape-secret");
    let (code, _, _) = https_get(agent.api, &world.ca, "/status", Some(&stranger)).await;
    assert_eq!(code, 401);
    let right = basic("prometheus", "scrape-secret");
    let (code, _, body) = https_get(agent.api, &world.ca, "/metrics", Some(&right)).await;
    assert_eq!(code, 200);
    assert!(body.contains("depprobe_probe_panics_total"), "{body}");
    let (code, _, _) = https_get(agent.api, &world.ca, "/healthz", None).await;
    assert_eq!(code, 200);

    let plaintext = tokio::time::timeout(WAIT, http_get(agent.api, "/healthz"))
        .await
        .expect("the plaintext request was left hanging");
    assert!(plaintext.is_err(), "plaintext was served: {plaintext:?}");
    assert!(!agent.log_text().contains("scrape-secret"));
}

#[tokio::test]
async fn validate_refuses_a_web_config_with_a_plain_password() {
    let world = World::new().await;
    let web = world
        .scratch
        .write(
            "plain-web.yml",
            "basic_auth_users:\n  prometheus: plain-hunter2\n",
        )
        .unwrap();
    let agent_section = format!("{FAST_AGENT}  web_config: {}\n", web.display());
    let config = world.config("plain-web.yaml", &agent_section);
    let out = tokio::process::Command::new(common::bin())
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("agent.web_config") && stderr.contains("bcrypt"),
        "{stderr}"
    );
    assert!(!stderr.contains("plain-hunter2"), "{stderr}");
}

/// The leaf certificate the server at `addr` presents, trusting `ca`.
async fn presented_leaf(addr: std::net::SocketAddr, ca: &Ca) -> Vec<u8> {
    let tls = tls_connect(addr, ca).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_renewed_endpoint_certificate_is_served_without_a_restart() {
    let world = World::new().await;
    let dir = world.scratch.path("");
    let first = world.ca.leaf(&["localhost"], Validity::current()).unwrap();
    let (cert, key) = first.write(&dir, "rotating").unwrap();
    let web = world
        .scratch
        .write(
            "rotating-web.yml",
            &format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
    let security = WebSecurity::load(&web).unwrap();
    let telemetry =
        Arc::new(Telemetry::start(&TelemetryConfig::default(), State::new(), 0).unwrap());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (bound, _task) = serve_with(addr, telemetry, security, Limits::default())
        .await
        .unwrap();
    assert_eq!(
        presented_leaf(bound, &world.ca).await,
        first.chain[0].to_vec()
    );

    let renewed = world.ca.leaf(&["localhost"], Validity::current()).unwrap();
    renewed.write(&dir, "rotating").unwrap();
    assert_eq!(
        presented_leaf(bound, &world.ca).await,
        renewed.chain[0].to_vec()
    );
}

/// Issue 24: a request reset at once must not leave its render behind. 1,000
/// requests to `/status?<unique>` and `/?kind=<unique>`, each closed right after it
/// is sent: the agent's memory stays within a bound and the next request gets a
/// fresh render (its state is the current one, not an abandoned answer).
#[tokio::test]
async fn reset_requests_leave_no_render_behind() {
    let world = World::new().await;
    // 400 targets make each render of /status about half a megabyte, so that
    // abandoned renders would show.
    let mut text = format!(
        "{FAST_AGENT}defaults:\n  tls:\n    ca_file: {}\n{}",
        world.ca_file.display(),
        world.probes()
    );
    for i in 0..400 {
        text.push_str(&format!(
            "  - name: many-{i}\n    kind: tls\n    interval: 5s\n    address: localhost:{}\n",
            world.healthy.port()
        ));
    }
    let config = world.scratch.write("reset.yaml", &text).unwrap();
    let agent = world.start(&config, "reset.log").await;
    wait_status(&agent, Duration::from_secs(60), |s| {
        s.as_array().is_some_and(|a| a.len() == 402)
    })
    .await;
    // Warm up the renders and the allocator, then measure.
    for _ in 0..3 {
        agent.get("/status").await.unwrap();
        agent.get("/").await.unwrap();
    }
    let before = agent.rss_kib().expect("the agent's RSS");
    for i in 0..1000 {
        let mut c = TcpStream::connect(agent.api).await.unwrap();
        let path = if i % 2 == 0 {
            format!("/status?{i}")
        } else {
            format!("/?kind=k{i}")
        };
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").as_bytes())
            .await
            .unwrap();
        // A reset: linger 0 turns the close into an RST. (Deprecated because a
        // non-zero linger blocks on drop; a zero linger never does.)
        #[allow(deprecated)]
        c.set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
    }
    let (code, body) = tokio::time::timeout(Duration::from_secs(5), agent.get("/healthz"))
        .await
        .expect("/healthz answers after the resets")
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    // The next /status is rendered now: the run count it reports keeps growing.
    let first = agent.status().await.unwrap();
    let runs = |s: &serde_json::Value| entry(s, "healthy-api").and_then(|e| e["runs"].as_u64());
    let seen = runs(&first).expect("runs of healthy");
    wait_status(&agent, Duration::from_secs(20), |s| {
        runs(s).is_some_and(|r| r > seen)
    })
    .await;
    let after = agent.rss_kib().expect("the agent's RSS");
    // Before the fix each abandoned render kept its body: 1,000 of them grew the
    // agent by tens of megabytes. Allow allocator slack, not a render per request.
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB over 1,000 reset requests"
    );
}

/// Issue 24: the configuration file replaced by a FIFO that nobody writes. The
/// watcher used to read it on the runtime thread and froze every probe, the
/// endpoints and SIGTERM; now the file is skipped until it is a file again.
#[tokio::test]
async fn a_config_replaced_by_a_fifo_freezes_nothing() {
    let world = World::new().await;
    let config = world.config("fifo.yaml", FAST_AGENT);
    let mut agent = world.start(&config, "fifo.log").await;
    let runs = |s: &serde_json::Value| entry(s, "healthy-api").and_then(|e| e["runs"].as_u64());
    let first = wait_status(&agent, Duration::from_secs(20), |s| runs(s).is_some()).await;
    std::fs::remove_file(&config).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&config)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    // Past several polls of the watcher, the agent still answers and probes.
    let seen = runs(&first).unwrap();
    wait_status(&agent, Duration::from_secs(20), |s| {
        runs(s).is_some_and(|r| r >= seen + 6)
    })
    .await;
    let (code, body) = tokio::time::timeout(Duration::from_secs(1), agent.get("/healthz"))
        .await
        .expect("/healthz answers within 1 s while the config is a FIFO")
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    agent.signal("TERM").unwrap();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "SIGTERM stops the agent"
    );
}

/// One request with `authorization` on a connection of its own; the status code.
async fn status_with_auth(addr: std::net::SocketAddr, authorization: &str) -> u16 {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: agent\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    c.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Issue 24: failed password checks cannot starve an authenticated scraper. Its
/// credentials, verified once, are remembered; a flood of wrong passwords queued
/// for bcrypt (and turned away with 429 past the queue's bound) does not delay it.
/// Before, the scraper waited behind every wrong password in the queue.
#[tokio::test]
async fn a_flood_of_wrong_passwords_does_not_starve_a_verified_scraper() {
    let scratch = depprobe_tests::Scratch::new().unwrap();
    let hash = bcrypt::hash("scrape-secret", 10).unwrap();
    let web = scratch
        .write(
            "web.yml",
            &format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
        )
        .unwrap();
    let security = WebSecurity::load(&web).unwrap();
    let state = State::new();
    let telemetry = Arc::new(Telemetry::start(&TelemetryConfig::default(), state, 0).unwrap());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (addr, _task) = serve_with(addr, telemetry, security, Limits::default())
        .await
        .unwrap();
    let right = basic("prometheus", "scrape-secret");
    assert_eq!(status_with_auth(addr, &right).await, 200);

    let wrong = basic("prometheus", "guess");
    let finished = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for _ in 0..80 {
        let (finished, busy, wrong) = (finished.clone(), busy.clone(), wrong.clone());
        flood.push(tokio::spawn(async move {
            let code = status_with_auth(addr, &wrong).await;
            assert!(code == 401 || code == 429, "{code}");
            if code == 429 {
                busy.fetch_add(1, Ordering::SeqCst);
            }
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // Once some of the flood has been turned away, the queue is full.
    wait_until(WAIT, || (busy.load(Ordering::SeqCst) > 0).then_some(())).await;
    assert_eq!(status_with_auth(addr, &right).await, 200);
    let done = finished.load(Ordering::SeqCst);
    assert!(
        done < 80,
        "the verified scraper was answered only after all 80 wrong passwords"
    );
    for f in flood {
        f.abort();
    }
}
