//! The command line as a CI job or an operator uses it: `check`, `validate`, `demo`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::collections::BTreeMap;

use common::{World, bin, entry};
use depprobe_tests::{HttpServer, Reply, Validity};

async fn run(args: &[&str]) -> (Option<i32>, String, String) {
    // The servers live in this test's runtime: run the command without blocking it.
    let out = tokio::process::Command::new(bin())
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn probes_yaml(world: &World, extra: &str) -> String {
    format!(
        "defaults:\n  tls:\n    ca_file: {}\nprobes:\n{extra}",
        world.ca_file.display()
    )
}

#[tokio::test]
async fn check_exit_codes_follow_the_worst_status() {
    let world = World::new().await;
    let expiring = HttpServer::builder()
        .tls(
            &world
                .ca
                .leaf(&["localhost"], Validity::expiring_in(5))
                .unwrap(),
        )
        .respond(|_| Reply::ok("ok"))
        .start()
        .await
        .unwrap();
    let up = world.scratch.write(
        "up.yaml",
        &probes_yaml(
            &world,
            &format!(
                "  - name: ok\n    kind: tls\n    address: localhost:{}\n",
                world.healthy.port()
            ),
        ),
    );
    let degraded = world.scratch.write(
        "degraded.yaml",
        &probes_yaml(
            &world,
            &format!(
                "  - name: soon\n    kind: tls\n    address: localhost:{}\n",
                expiring.port()
            ),
        ),
    );
    let down = world.scratch.write(
        "down.yaml",
        &probes_yaml(
            &world,
            &format!(
                "  - name: gone\n    kind: tls\n    address: localhost:{}\n",
                world.expired.port()
            ),
        ),
    );
    let path = |p: &std::path::PathBuf| p.display().to_string();

    let (code, out, _) = run(&["check", "-c", &path(up.as_ref().unwrap())]).await;
    assert_eq!(code, Some(0), "{out}");
    let header = out.lines().next().unwrap();
    for col in [
        "NAME", "KIND", "STATUS", "CLASS", "CERT", "LATENCY", "MESSAGE",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(out.lines().nth(1).unwrap().contains(" up "), "{out}");

    let (code, out, _) = run(&["check", "-c", &path(degraded.as_ref().unwrap())]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("degraded") && out.contains(" 5d "), "{out}");
    let (code, _, _) = run(&[
        "check",
        "--allow-degraded",
        "-c",
        &path(degraded.as_ref().unwrap()),
    ])
    .await;
    assert_eq!(code, Some(0));

    let (code, out, err) = run(&["check", "-c", &path(down.as_ref().unwrap())]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("tls_cert_expired"), "{out}");
    assert!(err.contains("1 probes: 0 up, 0 degraded, 1 down"), "{err}");
}

#[tokio::test]
async fn check_json_has_the_design_shape() {
    let world = World::new().await;
    let config = world.scratch.write(
        "json.yaml",
        &probes_yaml(
            &world,
            &format!(
                "  - name: healthy-api\n    kind: http\n    url: https://localhost:{}/\n  - name: expired-tls\n    kind: tls\n    address: localhost:{}\n",
                world.healthy.port(),
                world.expired.port()
            ),
        ),
    );
    let (code, out, _) = run(&[
        "check",
        "--json",
        "-c",
        &config.unwrap().display().to_string(),
    ])
    .await;
    assert_eq!(code, Some(2));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["healthy-api", "expired-tls"],
        "configuration order"
    );
    let ok = entry(&v, "healthy-api").unwrap();
    assert_eq!(ok["kind"], "http");
    assert_eq!(ok["status"], "up");
    assert!(ok["error_type"].is_null());
    assert!(ok["duration_ms"]["total"].as_f64().unwrap() > 0.0);
    for phase in ["dns", "connect", "tls", "request"] {
        assert!(ok["duration_ms"][phase].is_number(), "duration_ms.{phase}");
    }
    assert!(ok["findings"].as_array().unwrap().is_empty());
    let tls = &ok["tls"];
    assert_eq!(tls["version"], "1.3");
    assert!(tls["cipher"].is_string());
    let leaf = &tls["chain"][0];
    for key in [
        "subject",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "sha256",
        "sans",
    ] {
        assert!(!leaf[key].is_null(), "chain[0].{key}");
    }
    assert!(
        leaf["not_after"].as_str().unwrap().ends_with('Z'),
        "RFC 3339"
    );

    let bad = entry(&v, "expired-tls").unwrap();
    assert_eq!(bad["status"], "down");
    assert_eq!(bad["error_type"], "tls_cert_expired");
    assert_eq!(bad["phase"], "tls");
    assert!(bad["message"].as_str().unwrap().contains("expired"));
    assert!(
        bad["tls"]["chain"][0]["not_after"].is_string(),
        "facts of a failed verification"
    );
}

#[tokio::test]
async fn validate_reports_every_error_with_its_position() {
    let world = World::new().await;
    let bad = world
        .scratch
        .write(
            "bad.yaml",
            "agent:\n  interval: 30\nprobes:\n  - name: a\n    kind: http\n    ulr: https://x\n  - name: a\n    kind: tls\n    address: x:1\n",
        )
        .unwrap();
    let (code, out, err) = run(&["validate", "-c", &bad.display().to_string()]).await;
    assert_eq!(code, Some(3), "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    let file = bad.display().to_string();
    assert!(
        lines[0].starts_with(&format!("{file}:2:13: agent.interval: `30` has no unit")),
        "{err}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}:6:5: probes[0].ulr: unknown key `ulr`; did you mean `url`?"
        ))),
        "{err}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}:7:5: probes[1].name: duplicate probe name `a`"
        ))),
        "{err}"
    );

    let good = world.config("good.yaml", "");
    let (code, out, _) = run(&["validate", "-c", &good.display().to_string()]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("OK, 2 probes (http, tls)"), "{out}");

    let (code, _, err) = run(&["check", "-c", "/nonexistent/depprobe.yaml"]).await;
    assert_eq!(code, Some(3));
    assert!(
        err.contains("cannot read /nonexistent/depprobe.yaml"),
        "{err}"
    );
}

#[tokio::test]
async fn shards_split_the_probes_without_overlap() {
    let world = World::new().await;
    let mut probes = String::new();
    for i in 0..12 {
        probes.push_str(&format!(
            "  - name: p{i}\n    kind: tls\n    address: localhost:{}\n",
            world.healthy.port()
        ));
    }
    let config = world
        .scratch
        .write("shard.yaml", &probes_yaml(&world, &probes))
        .unwrap();
    let mut seen = BTreeMap::new();
    for shard in ["1/3", "2/3", "3/3"] {
        let (code, out, _) = run(&[
            "check",
            "--json",
            "--shard",
            shard,
            "-c",
            &config.display().to_string(),
        ])
        .await;
        assert_eq!(code, Some(0));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for e in v.as_array().unwrap() {
            assert!(
                seen.insert(e["name"].as_str().unwrap().to_owned(), shard)
                    .is_none(),
                "{e} in two shards"
            );
        }
    }
    assert_eq!(seen.len(), 12);
    let (code, _, err) = run(&[
        "check",
        "--shard",
        "4/3",
        "-c",
        &config.display().to_string(),
    ])
    .await;
    assert_eq!(code, Some(64), "a usage error is EX_USAGE, never 2 (down)");
    assert!(err.contains("is not a shard"), "{err}");
}

#[tokio::test]
async fn run_refuses_a_thread_count_it_cannot_use() {
    for bad in ["0", "many"] {
        let (code, _, err) = run(&["run", "--threads", bad, "-c", "/nonexistent.yaml"]).await;
        assert_eq!(code, Some(64), "--threads {bad}: {err}");
        assert!(err.contains("--threads"), "--threads {bad}: {err}");
    }
}

#[tokio::test]
async fn usage_errors_exit_64_and_never_look_like_a_down_dependency() {
    for args in [
        &["chek"][..],
        &["check", "--jsn"],
        &["run", "--shard", "3/2", "-c", "/nonexistent.yaml"],
        &["validate", "--config"],
    ] {
        let (code, _, err) = run(args).await;
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(err.contains("error"), "{args:?} says what is wrong: {err}");
    }
    for args in [&["--help"][..], &["--version"], &["check", "--help"]] {
        let (code, out, _) = run(args).await;
        assert_eq!(code, Some(0), "{args:?}");
        assert!(!out.is_empty(), "{args:?} prints to stdout");
    }
}

#[tokio::test]
async fn demo_once_names_every_case() {
    let (code, out, err) = run(&["demo", "--once", "--json"]).await;
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let expected = [
        ("healthy-api", "up", None),
        ("expiring-api", "degraded", None),
        ("expired-db-proxy", "down", Some("tls_cert_expired")),
        ("untrusted-api", "down", Some("tls_unknown_issuer")),
        ("wrong-name-api", "down", Some("tls_hostname_mismatch")),
        ("plaintext-api", "down", Some("tls_not_offered")),
        ("metrics-api-jwt", "down", Some("jwt_rejected")),
        ("console-behind-cdn", "down", Some("upstream_tls_error")),
        ("metrics-endpoint", "up", None),
        ("api-tls", "up", None),
        ("otlp-collector", "up", None),
        ("sessions-mongodb", "degraded", None),
        ("sa-token", "down", Some("credential_expired")),
    ];
    assert_eq!(v.as_array().unwrap().len(), expected.len());
    for (name, status, class) in expected {
        let e = entry(&v, name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(e["status"], status, "{name}: {e}");
        assert_eq!(e["error_type"].as_str(), class, "{name}: {e}");
    }
    let expiring = entry(&v, "expiring-api").unwrap();
    assert_eq!(expiring["findings"][0]["type"], "cert_expiring");
    let storm = entry(&v, "sessions-mongodb").unwrap();
    assert_eq!(storm["findings"][0]["type"], "election_storm", "{storm}");

    let (code, out, _) = run(&["demo", "--once"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("13 probes: 4 up, 2 degraded, 7 down"), "{out}");
}

#[tokio::test]
async fn demo_keeps_serving_until_sigterm() {
    let world = World::new().await;
    let mut agent = depprobe_tests::agent_process::AgentProcess::start_args(
        &bin(),
        &["demo", "--listen", "127.0.0.1:0"],
        &world.log("demo.log"),
        &[],
    )
    .await
    .unwrap();
    let status = common::wait_status(&agent, std::time::Duration::from_secs(60), |s| {
        s.as_array().is_some_and(|a| a.len() == 13)
    })
    .await;
    assert_eq!(
        entry(&status, "expired-db-proxy").unwrap()["error_type"],
        "tls_cert_expired"
    );
    let (code, metrics) = agent.get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("probe_success{"), "{metrics}");
    agent.signal("TERM").unwrap();
    assert_eq!(
        agent.wait_exit(std::time::Duration::from_secs(30)).await,
        Some(0),
        "log:\n{}",
        agent.log_text()
    );
}

/// `--log.format json`: every record on stderr is one JSON object with its time,
/// level, target and message, so that a log pipeline needs no parser of its own.
#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let world = World::new().await;
    let mut agent = depprobe_tests::agent_process::AgentProcess::start_args(
        &bin(),
        &["--log.format", "json", "demo", "--listen", "127.0.0.1:0"],
        &world.log("json.log"),
        &[],
    )
    .await
    .unwrap();
    agent.signal("TERM").unwrap();
    assert_eq!(
        agent.wait_exit(std::time::Duration::from_secs(30)).await,
        Some(0)
    );
    let log = agent.log_text();
    let mut serving = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(record[key].is_string(), "{key} missing: {line}");
        }
        serving |= record["message"]
            .as_str()
            .is_some_and(|m| m.contains("serving /metrics"));
    }
    assert!(serving, "{log}");
}
