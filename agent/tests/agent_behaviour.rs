//! `depprobe run` as a user sees it: its endpoints, its schedule, its reloads, and
//! the secrets it never shows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::process::Command;
use std::time::Duration;

use common::{FAST_AGENT, World, entry, sample, wait_status};
use depprobe_tests::otlp::OtlpReceiver;
use depprobe_tests::{HttpServer, Reply, SilentServer};

const WAIT: Duration = Duration::from_secs(30);

fn both_ran(s: &serde_json::Value) -> bool {
    entry(s, "healthy-api").is_some() && entry(s, "expired-tls").is_some()
}

#[tokio::test]
async fn metrics_endpoint_passes_promtool_and_speaks_blackbox() {
    let world = World::new().await;
    let config = world.config("prom.yaml", FAST_AGENT);
    let agent = world.start(&config, "prom.log").await;
    wait_status(&agent, WAIT, both_ran).await;
    let (code, text) = agent.get("/metrics").await.unwrap();
    assert_eq!(code, 200);

    let file = world.scratch.write("metrics.txt", &text).unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("metrics")
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool (Debian package prometheus) is installed by scripts/deps");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let healthy = [("probe_name", "healthy-api")];
    let expired = [("probe_name", "expired-tls")];
    assert_eq!(sample(&text, "probe_success", &healthy), Some(1.0));
    assert_eq!(sample(&text, "probe_success", &expired), Some(0.0));
    assert!(sample(&text, "probe_duration_seconds", &healthy).unwrap() > 0.0);
    assert_eq!(
        sample(&text, "probe_http_status_code", &healthy),
        Some(200.0)
    );
    assert_eq!(
        sample(
            &text,
            "probe_tls_version_info",
            &[
                ("probe_name", "healthy-api"),
                ("tls_protocol_version", "1.3")
            ]
        ),
        Some(1.0)
    );
    let expiry = sample(&text, "probe_ssl_earliest_cert_expiry", &expired).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry < now,
        "the expired certificate's expiry is in the past"
    );
    assert_eq!(
        sample(
            &text,
            "probe_error_info",
            &[
                ("probe_name", "expired-tls"),
                ("error_type", "tls_cert_expired"),
                ("probe_phase", "tls")
            ]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "probe_failures_total",
            &[
                ("probe_name", "expired-tls"),
                ("error_type", "tls_cert_expired")
            ]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &text,
            "probe_phase_duration_seconds",
            &[("probe_name", "healthy-api"), ("probe_phase", "tls")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &text,
            "probe_status",
            &[("probe_name", "healthy-api"), ("probe_status", "up")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "depprobe_config_last_reload_success", &[]),
        Some(1.0)
    );
    assert!(
        text.contains("target_info{"),
        "the resource is exposed as target_info"
    );
    assert!(
        !text.contains("otel_scope"),
        "no scope labels on blackbox-compatible series"
    );

    let (code, _) = agent.get("/healthz").await.unwrap();
    assert_eq!(code, 200);
    let (code, _) = agent.get("/readyz").await.unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn status_matches_check_json() {
    let world = World::new().await;
    let config = world.config("status.yaml", FAST_AGENT);
    let agent = world.start(&config, "status.log").await;
    let status = wait_status(&agent, WAIT, both_ran).await;
    // The servers live in this test's runtime: run the command without blocking it.
    let out = tokio::process::Command::new(common::bin())
        .args(["check", "--json", "-c"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "one target is down");
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shape = |v: &serde_json::Value| -> Vec<(String, String, String, String, Vec<String>)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut keys: Vec<String> = e.as_object().unwrap().keys().cloned().collect();
                keys.sort();
                (
                    e["name"].to_string(),
                    e["status"].to_string(),
                    e["error_type"].to_string(),
                    e["tls"]["chain"][0]["sha256"].to_string(),
                    keys,
                )
            })
            .collect()
    };
    // /status is check --json plus what only a running agent knows: when each
    // target's last run finished, and how many it has finished.
    let mut status = status;
    for e in status.as_array_mut().unwrap() {
        let e = e.as_object_mut().unwrap();
        assert!(e.remove("last_run").is_some_and(|v| v.is_string()));
        assert!(e.remove("runs").is_some_and(|v| v.as_u64() >= Some(1)));
    }
    assert_eq!(shape(&status), shape(&check));
}

#[tokio::test]
async fn readyz_waits_for_the_first_round() {
    let world = World::new().await;
    let silent = SilentServer::start().await.unwrap();
    let text = format!(
        "agent:\n  interval: 1h\n  timeout: 30s\n  listen: 127.0.0.1:0\nprobes:\n  - name: hangs\n    kind: tls\n    address: 127.0.0.1:{}\n",
        silent.addr().port()
    );
    let config = world.scratch.write("ready.yaml", &text).unwrap();
    let agent = world.start(&config, "ready.log").await;
    let (code, body) = agent.get("/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("0 of 1 targets"), "{body}");
}

#[tokio::test]
async fn a_hanging_target_does_not_delay_the_others() {
    let world = World::new().await;
    let silent = SilentServer::start().await.unwrap();
    let fast = HttpServer::builder()
        .respond(|_| Reply::ok("ok"))
        .start()
        .await
        .unwrap();
    let text = format!(
        "agent:\n  listen: 127.0.0.1:0\n  concurrency: 2\nprobes:\n  - name: hangs\n    kind: tls\n    address: 127.0.0.1:{}\n    interval: 100ms\n    timeout: 20s\n  - name: fast\n    kind: http\n    url: {}\n    interval: 100ms\n",
        silent.addr().port(),
        fast.url("127.0.0.1", "/")
    );
    let config = world.scratch.write("hang.yaml", &text).unwrap();
    // On several threads (the other tests run the default, one): the same isolation.
    let agent = depprobe_tests::agent_process::AgentProcess::start(
        &common::bin(),
        &config,
        &world.log("hang.log"),
        &[("DEPPROBE_THREADS", "3")],
    )
    .await
    .unwrap();
    // The hanging probe holds one of the two slots for its whole 20 s deadline; the
    // fast target keeps being probed at its own pace with the other.
    let served =
        depprobe_tests::agent_process::wait_until(WAIT, || (fast.requests() >= 20).then_some(()))
            .await;
    assert!(
        served.is_some(),
        "the fast target was served {} times; log:\n{}",
        fast.requests(),
        agent.log_text()
    );
    let status = agent.status().await.unwrap();
    assert_eq!(entry(&status, "fast").unwrap()["status"], "up");
    assert!(
        entry(&status, "hangs").is_none(),
        "the hanging run has not finished: {status}"
    );
}

#[tokio::test]
async fn reload_applies_a_valid_change_and_keeps_the_old_config_on_an_invalid_one() {
    let world = World::new().await;
    let config = world.config("reload.yaml", FAST_AGENT);
    let agent = world.start(&config, "reload.log").await;
    wait_status(&agent, WAIT, both_ran).await;
    let failures = |text: &str| {
        sample(
            text,
            "probe_failures_total",
            &[("probe_name", "expired-tls")],
        )
        .unwrap_or(0.0)
    };
    // Enough failed runs that a counter reset by the reload could not grow back to
    // this many in the second or two the reload takes (one run per 500 ms).
    let failures_before = common::wait_metric_where(
        &agent,
        "probe_failures_total",
        &[("probe_name", "expired-tls")],
        ">= 10",
        |v| v >= 10.0,
    )
    .await;

    // A valid change: a third probe. The unchanged probes keep their state.
    let extra = HttpServer::builder()
        .respond(|_| Reply::ok("ok"))
        .start()
        .await
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "  - name: added-later\n    kind: http\n    url: {}\n",
            extra.url("127.0.0.1", "/")
        );
    std::fs::write(&config, &text).unwrap();
    wait_status(&agent, WAIT, |s| entry(s, "added-later").is_some()).await;
    let (_, after) = agent.get("/metrics").await.unwrap();
    assert!(
        failures(&after) >= failures_before,
        "an unchanged probe keeps its counters across a reload: {} then {}",
        failures_before,
        failures(&after)
    );
    common::wait_for_log_line(&agent, &["reloaded", "1 added", "2 unchanged"]).await;

    // An invalid change: the old configuration keeps running, the error is logged
    // with its position, and the reload gauge says so.
    std::fs::write(&config, text.replace("kind: http", "kind: htp")).unwrap();
    let line = common::wait_for_log_line(&agent, &["reload of", "failed"]).await;
    assert!(
        line.contains("previous configuration keeps running"),
        "{line}"
    );
    let log = agent.log_text();
    assert!(
        log.contains("reload.yaml:") && log.contains("unknown kind `htp`; did you mean `http`?"),
        "{log}"
    );
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert_eq!(
        sample(&metrics, "depprobe_config_last_reload_success", &[]),
        Some(0.0)
    );
    let requests = extra.requests();
    depprobe_tests::agent_process::wait_until(WAIT, || {
        (extra.requests() > requests + 2).then_some(())
    })
    .await
    .expect("the old configuration keeps probing");

    // SIGHUP after fixing it: back to success.
    std::fs::write(&config, &text).unwrap();
    agent.signal("HUP").unwrap();
    common::wait_metric(&agent, "depprobe_config_last_reload_success", &[], 1.0).await;
}

#[tokio::test]
async fn secrets_never_appear_in_logs_spans_metrics_status_or_messages() {
    const TOKEN: &str = "tok-ZX81-sekrit-bearer";
    const PASSWORD: &str = "pw-ZX81-sekrit-basic";
    const OTLP_KEY: &str = "otlp-ZX81-sekrit-key";
    let world = World::new().await;
    // A careless server that echoes the credentials it got in its error body.
    let echo = HttpServer::builder()
        .tls(
            &world
                .ca
                .leaf(&["localhost"], depprobe_tests::Validity::current())
                .unwrap(),
        )
        .respond(|req| {
            Reply::new(
                401,
                format!(
                    "invalid token: {}",
                    req.header("authorization").unwrap_or("none")
                ),
            )
        })
        .start()
        .await
        .unwrap();
    let receiver = OtlpReceiver::start().await.unwrap();
    let token_file = world.scratch.write("token", TOKEN).unwrap();
    let text = format!(
        "{FAST_AGENT}telemetry:\n  otlp:\n    endpoint: {}\n    metrics_interval: 300ms\n    headers:\n      authorization: \"Bearer ${{OTLP_KEY}}\"\ndefaults:\n  tls:\n    ca_file: {}\nprobes:\n  - name: echo-bearer\n    kind: http\n    url: https://localhost:{}/\n    bearer_token_file: {}\n  - name: echo-basic\n    kind: http\n    url: https://localhost:{}/\n    basic_auth:\n      username: probe\n      password: \"${{BASIC_PASSWORD}}\"\n",
        receiver.grpc_endpoint(),
        world.ca_file.display(),
        echo.port(),
        token_file.display(),
        echo.port()
    );
    let config = world.scratch.write("secrets.yaml", &text).unwrap();
    let agent = depprobe_tests::agent_process::AgentProcess::start(
        &common::bin(),
        &config,
        &world.log("secrets.log"),
        &[
            ("OTLP_KEY", OTLP_KEY),
            ("BASIC_PASSWORD", PASSWORD),
            ("DEPPROBE_LOG", "debug"),
        ],
    )
    .await
    .unwrap();
    let status = wait_status(&agent, WAIT, |s| {
        entry(s, "echo-bearer").is_some() && entry(s, "echo-basic").is_some()
    })
    .await;
    let got = receiver.received();
    assert!(
        got.wait_for(WAIT, |r| r.spans().len() >= 4 && !r.metrics().is_empty())
            .await
    );
    // The exporter did send the header (it is a secret, not a missing value).
    assert!(got.headers().iter().any(|h| {
        h.iter()
            .any(|(k, v)| k == "authorization" && v.contains(OTLP_KEY))
    }));

    let (_, metrics) = agent.get("/metrics").await.unwrap();
    let spans = format!("{:?}", got.spans());
    let otlp_metrics = format!("{:?}", got.metrics());
    let check = tokio::process::Command::new(common::bin())
        .args(["check", "--json", "-c"])
        .arg(&config)
        .env("OTLP_KEY", OTLP_KEY)
        .env("BASIC_PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let checked: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(
        entry(&checked, "echo-bearer").unwrap()["error_type"],
        "jwt_rejected"
    );
    let outputs = [
        ("status", status.to_string()),
        ("metrics", metrics),
        ("spans", spans),
        ("otlp metrics", otlp_metrics),
        (
            "check --json",
            String::from_utf8_lossy(&check.stdout).into_owned(),
        ),
        (
            "check stderr",
            String::from_utf8_lossy(&check.stderr).into_owned(),
        ),
        ("log", agent.log_text()),
    ];
    let basic = "cHJvYmU6cHctWlg4MS1zZWtyaXQtYmFzaWM="; // base64("probe:" + PASSWORD)
    for (what, text) in &outputs {
        for secret in [TOKEN, PASSWORD, OTLP_KEY, basic] {
            assert!(
                !text.contains(secret),
                "{secret} leaked into {what}:\n{text}"
            );
        }
    }
    // The echoed body did reach the message, scrubbed.
    let msg = entry(&status, "echo-bearer").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("invalid token: Bearer ***"), "{msg}");
}
