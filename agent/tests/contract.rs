//! The metric contract (`depprobe_tests::contract`, which the alert rules and the
//! dashboard are held to) against a live agent's `/metrics`: every name of the
//! contract is produced, every series the agent produces is in the contract, and
//! every label is one the contract allows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{World, entry, wait_status};
use depprobe_tests::contract::{self, METRICS, MetricKind};
use depprobe_tests::harness::{jwt, unix_in};
use depprobe_tests::mongo::ReplicaSet;
use depprobe_tests::{HttpServer, Validity};

/// `name{labels} value` lines of a Prometheus text exposition: (name, label names).
fn series(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, _) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut names = Vec::new();
            let mut rest = labels;
            while let Some((k, after)) = rest.split_once("=\"") {
                names.push(k.trim_start_matches(',').to_owned());
                // Skip the value (escaped quotes included).
                let mut chars = after.char_indices();
                let mut end = after.len();
                while let Some((i, c)) = chars.next() {
                    if c == '\\' {
                        chars.next();
                    } else if c == '"' {
                        end = i;
                        break;
                    }
                }
                rest = &after[(end + 1).min(after.len())..];
            }
            Some((name.to_owned(), names))
        })
        .collect()
}

#[tokio::test]
async fn the_live_metrics_endpoint_keeps_the_contract() {
    let world = World::new().await;
    let expiring = HttpServer::builder()
        .tls(
            &world
                .ca
                .leaf(&["localhost"], Validity::expiring_in(5))
                .unwrap(),
        )
        .start()
        .await
        .unwrap();
    let set = ReplicaSet::builder()
        .user("probe", "s3cret")
        .start()
        .await
        .unwrap();
    let token = world
        .scratch
        .write(
            "token",
            &jwt(&format!(r#"{{"exp":{}}}"#, unix_in(7 * 86_400))),
        )
        .unwrap();
    let text = format!(
        "{}defaults:\n  tls:\n    ca_file: {}\n{}  - name: expiring-tls\n    kind: tls\n    address: localhost:{}\n  - name: token\n    kind: credential\n    file: {}\n  - name: sessions\n    kind: mongodb\n    url: mongodb://probe@{}/?replicaSet=rs0\n    password: s3cret\n    heartbeat_frequency: 500ms\n",
        common::FAST_AGENT,
        world.ca_file.display(),
        world.probes(),
        expiring.port(),
        token.display(),
        set.seed_list()
    );
    let config = world.scratch.write("contract.yaml", &text).unwrap();
    let agent = world.start(&config, "contract.log").await;
    wait_status(&agent, Duration::from_secs(30), |s| {
        [
            "healthy-api",
            "expired-tls",
            "expiring-tls",
            "token",
            "sessions",
        ]
        .iter()
        .all(|n| entry(s, n).is_some())
    })
    .await;
    let (_, body) = agent.get("/metrics").await.unwrap();
    let produced = series(&body);

    let names: BTreeSet<&str> = produced.iter().map(|(n, _)| n.as_str()).collect();
    for m in METRICS {
        for s in m.series_names() {
            assert!(
                names.contains(s.as_str()),
                "contract series {s} is not produced:\n{body}"
            );
        }
    }
    for (name, labels) in &produced {
        let Some(m) = contract::metric_of_series(name) else {
            panic!("{name} is produced but not in the contract (tests/src/contract.rs)");
        };
        if m.name == "target_info" {
            continue; // the resource's attributes, open-ended by design
        }
        for l in labels {
            assert!(
                m.has_label(name, l),
                "{name} carries label {l}, which the contract does not list"
            );
        }
        if m.kind == MetricKind::Counter {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
}
