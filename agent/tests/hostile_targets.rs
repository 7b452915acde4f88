//! `depprobe run` against dependencies that behave as hostile ones would: a target
//! that echoes every credential it gets at the offsets where texts are cut, and a
//! scrape of 60,000 labels served beside a healthy target. The agent shows no
//! secret, not even a part of one, and no target stalls another or the endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::time::Duration;

use common::{World, entry, wait_status};
use depprobe_tests::agent_process::AgentProcess;
use depprobe_tests::{HttpServer, Reply, Req};

const WAIT: Duration = Duration::from_secs(60);
/// How long this test's HTTP client waits for an answer from the agent.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

const TOKEN: &str = "tK7vQ2mX9pL4wR8nB3jH6cF1";
const PASSWORD: &str = "pW5zN8kT2qY7vM4xC9rD3gJ6";
const API_KEY: &str = "aK3hV9bN6tR2wQ8mL5pX7cZ4";
/// base64("probe:" + PASSWORD), the basic-auth credential as sent.
const BASIC: &str = "cHJvYmU6cFc1ek44a1QycVk3dk00eEM5ckQzZ0o2";

/// The credential a careless server would echo: the bearer token, or the
/// basic-auth password it decoded.
fn credential(req: &Req) -> &'static str {
    match req.header("authorization") {
        Some(a) if a.starts_with("Bearer ") => TOKEN,
        Some(_) => PASSWORD,
        None => "none",
    }
}

/// Echoes the credentials after `pad` bytes of padding, so that they straddle the
/// place a text is cut: `/b{pad}` (401 body, cut at 200 characters), `/k{pad}`
/// (the same with the API key first), `/h{pad}` (a header the probe quotes in a
/// message cut at 1000), `/m{pad}` (a scrape line quoted cut at 120).
fn echo(req: &Req) -> Reply {
    let kind = req.path.get(1..2).unwrap_or("b");
    let pad: usize = req.path.get(2..).and_then(|p| p.parse().ok()).unwrap_or(0);
    let padding = "x".repeat(pad);
    let cred = credential(req);
    let key = req.header("x-api-key").unwrap_or("none");
    let auth = req.header("authorization").unwrap_or("none");
    match kind {
        "k" => Reply::new(401, format!("{padding}{key} {cred} {auth}")),
        "h" => Reply::ok("ok").header("x-echo", &format!("{padding}{cred}{key}{auth}")),
        "m" => Reply::ok(format!("bad {padding}{cred} {key}\n"))
            .header("content-type", "text/plain; version=0.0.4"),
        _ => Reply::new(401, format!("{padding}{cred} {key} {auth}")),
    }
}

fn http_probe(name: &str, port: u16, path: &str, auth: &str) -> String {
    format!(
        "  - name: {name}\n    kind: http\n    url: https://localhost:{port}/{path}\n    headers:\n      X-Api-Key: \"${{API_KEY}}\"\n    expect:\n      headers:\n        x-echo: \"^never$\"\n{auth}"
    )
}

/// Every 8-character run of `secret`.
fn runs(secret: &str) -> Vec<&str> {
    (0..=secret.len() - 8).map(|i| &secret[i..i + 8]).collect()
}

#[tokio::test]
async fn secrets_cut_at_any_boundary_never_leak_even_in_part() {
    let world = World::new().await;
    let server = HttpServer::builder()
        .tls(
            &world
                .ca
                .leaf(&["localhost"], depprobe_tests::Validity::current())
                .unwrap(),
        )
        .respond(echo)
        .start()
        .await
        .unwrap();
    let port = server.port();
    let token_file = world.scratch.write("token", TOKEN).unwrap();
    let bearer = format!("    bearer_token_file: {}\n", token_file.display());
    let basic = "    basic_auth:\n      username: probe\n      password: \"${BASIC_PASSWORD}\"\n";
    let mut probes = String::new();
    let cases = [
        "b180", "b190", "b196", "k185", "k195", "h950", "h960", "h965", "h975",
    ];
    for (i, path) in cases.iter().enumerate() {
        probes.push_str(&http_probe(&format!("bearer-{i}"), port, path, &bearer));
        probes.push_str(&http_probe(&format!("basic-{i}"), port, path, basic));
    }
    for (i, pad) in [95, 100, 105].iter().enumerate() {
        probes.push_str(&format!(
            "  - name: scrape-{i}\n    kind: metrics\n    url: https://localhost:{port}/m{pad}\n    headers:\n      X-Api-Key: \"${{API_KEY}}\"\n{bearer}"
        ));
    }
    let text = format!(
        "agent:\n  interval: 1s\n  timeout: 10s\n  listen: 127.0.0.1:0\ndefaults:\n  tls:\n    ca_file: {}\nprobes:\n{probes}",
        world.ca_file.display()
    );
    let config = world.scratch.write("echo.yaml", &text).unwrap();
    let envs = [
        ("API_KEY", API_KEY),
        ("BASIC_PASSWORD", PASSWORD),
        ("DEPPROBE_LOG", "debug"),
    ];
    let agent = AgentProcess::start(&common::bin(), &config, &world.log("echo.log"), &envs)
        .await
        .unwrap();
    let total = 2 * cases.len() + 3;
    let status = wait_status(&agent, WAIT, |s| {
        s.as_array().is_some_and(|a| a.len() == total)
    })
    .await;
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    let mut check = tokio::process::Command::new(common::bin());
    check.args(["check", "--json", "-c"]).arg(&config);
    for (k, v) in envs {
        check.env(k, v);
    }
    let check = check.output().await.unwrap();
    let checked: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    // The echoes did reach the messages, scrubbed.
    let bearer_msg = entry(&checked, "bearer-0").unwrap()["message"].to_string();
    assert!(bearer_msg.contains("xxx***"), "{bearer_msg}");
    let header_msg = entry(&checked, "basic-6").unwrap()["message"].to_string();
    assert!(header_msg.contains("header x-echo"), "{header_msg}");
    let scrape_msg = entry(&checked, "scrape-1").unwrap()["message"].to_string();
    assert!(scrape_msg.contains("the line reads"), "{scrape_msg}");

    let outputs = [
        ("status", status.to_string()),
        ("metrics", metrics),
        (
            "check --json",
            String::from_utf8_lossy(&check.stdout).into(),
        ),
        (
            "check stderr",
            String::from_utf8_lossy(&check.stderr).into(),
        ),
        ("log", agent.log_text()),
    ];
    for (what, text) in &outputs {
        for secret in [TOKEN, PASSWORD, API_KEY, BASIC] {
            for run in runs(secret) {
                assert!(
                    !text.contains(run),
                    "{run} (of {secret}) leaked into {what}:\n{text}"
                );
            }
        }
    }
}

/// `GET path` on the agent, with this test's client timeout.
async fn get_in_time(agent: &AgentProcess, path: &str) -> (u16, String) {
    match tokio::time::timeout(CLIENT_TIMEOUT, agent.get(path)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => panic!("GET {path}: {e}"),
        Err(_) => panic!(
            "GET {path} got no answer within {CLIENT_TIMEOUT:?}; log:\n{}",
            agent.log_text()
        ),
    }
}

/// One sample of `n` labels: 60,000 is the 588 KB scrape of issue 12.
fn wide_sample(n: usize) -> String {
    let labels: Vec<String> = (0..n).map(|i| format!("label_{i}=\"v\"")).collect();
    format!("wide_metric{{{}}} 1\n", labels.join(","))
}

#[tokio::test]
async fn a_sixty_thousand_label_scrape_stalls_neither_healthz_nor_a_healthy_probe() {
    let world = World::new().await;
    let body = wide_sample(60_000);
    assert!(body.len() > 580_000);
    let wide = HttpServer::builder()
        .respond(move |_| Reply::ok(body.clone()).header("content-type", "text/plain"))
        .start()
        .await
        .unwrap();
    let text = format!(
        "agent:\n  interval: 500ms\n  timeout: 10s\n  listen: 127.0.0.1:0\ndefaults:\n  tls:\n    ca_file: {}\nprobes:\n  - name: healthy-api\n    kind: http\n    url: https://localhost:{}/health\n  - name: wide-scrape\n    kind: metrics\n    url: {}\n    max_body_bytes: 1048576\n",
        world.ca_file.display(),
        world.healthy.port(),
        wide.url("127.0.0.1", "/metrics")
    );
    let config = world.scratch.write("wide.yaml", &text).unwrap();
    let agent = world.start(&config, "wide.log").await;
    let status = wait_status(&agent, WAIT, |s| {
        entry(s, "wide-scrape").is_some() && entry(s, "healthy-api").is_some()
    })
    .await;
    let wide_entry = entry(&status, "wide-scrape").unwrap();
    assert_eq!(
        wide_entry["error_type"], "unexpected_response",
        "{wide_entry}"
    );
    let message = wide_entry["message"].as_str().unwrap();
    assert!(
        message.contains("the limit of 1000 labels per series is exceeded"),
        "{message}"
    );

    // While the wide target is scraped every 500 ms, the endpoints answer and the
    // healthy probe keeps its schedule: its runs keep starting anew.
    let scrapes_before = wide.requests();
    let mut starts = std::collections::BTreeSet::new();
    let mut polls = 0;
    while starts.len() < 4 || wide.requests() < scrapes_before + 4 {
        polls += 1;
        assert!(polls < 400, "the healthy probe stopped: {starts:?}");
        let (code, _) = get_in_time(&agent, "/healthz").await;
        assert_eq!(code, 200);
        let (_, body) = get_in_time(&agent, "/status").await;
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let healthy = entry(&status, "healthy-api").unwrap();
        assert_eq!(healthy["status"], "up", "{healthy}");
        starts.insert(healthy["started_at"].to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
