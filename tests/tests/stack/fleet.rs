//! The real `depprobe` binary as the Kubernetes manifests run it: with the fleet's
//! `DEPPROBE_SHARD` and each pod's index, every probe runs on exactly one agent;
//! with a vantage point in the environment (as the downward API sets it) and in the
//! configuration, `/metrics` names it on `target_info`, the series the alert rules
//! count places by.

use std::collections::BTreeMap;
use std::process::Command;

use depprobe_tests::agent_process::AgentProcess;
use serde_json::Value;

use crate::depprobe_bin;
use crate::files::yaml;

/// A configuration of `n` credential probes: they run without any network.
fn credential_probes(n: usize) -> String {
    let mut text = String::from("agent:\n  listen: 127.0.0.1:0\nprobes:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - name: token-{i}\n    kind: credential\n    file: /nonexistent/depprobe/token-{i}\n"
        ));
    }
    text
}

/// `depprobe check --json` with `envs`: the exit code and the probe names it ran.
fn check(config: &std::path::Path, envs: &[(&str, &str)]) -> (Option<i32>, Vec<String>, String) {
    let mut cmd = Command::new(depprobe_bin());
    cmd.args(["check", "--json", "-c"]).arg(config);
    cmd.env_remove("DEPPROBE_POD_INDEX").env_remove("HOSTNAME");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names = serde_json::from_str::<Value>(&stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    (
        out.status.code(),
        names,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The fleet's `DEPPROBE_SHARD` value (`pod/N`) from its StatefulSet.
fn fleet_shard() -> (String, usize) {
    let set: Value = yaml("deploy/kubernetes/fleet-statefulset.yaml");
    let env = set["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let shard = env
        .iter()
        .find(|e| e["name"] == "DEPPROBE_SHARD")
        .and_then(|e| e["value"].as_str())
        .expect("the fleet's DEPPROBE_SHARD")
        .to_owned();
    let replicas = set["spec"]["replicas"].as_u64().unwrap() as usize;
    (shard, replicas)
}

#[test]
fn every_fleet_pod_runs_its_own_share_and_together_they_run_every_probe() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fleet.yaml");
    std::fs::write(&config, credential_probes(30)).unwrap();
    let (shard, replicas) = fleet_shard();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for index in 0..replicas {
        let pod_index = index.to_string();
        let (code, names, err) = check(
            &config,
            &[
                ("DEPPROBE_SHARD", &shard),
                ("DEPPROBE_POD_INDEX", &pod_index),
            ],
        );
        assert_eq!(code, Some(2), "the probes are down (no such file): {err}");
        assert!(!names.is_empty(), "pod {index} runs no probe of 30");
        for name in names {
            if let Some(other) = owner.insert(name.clone(), index) {
                panic!("{name} runs on pods {other} and {index}");
            }
        }
    }
    assert_eq!(owner.len(), 30, "every probe runs on one pod");
    // Without the label, the ordinal of the pod name gives the same shard.
    let last = replicas - 1;
    let hostname = format!("depprobe-{last}");
    let (_, names, _) = check(
        &config,
        &[("DEPPROBE_SHARD", &shard), ("HOSTNAME", &hostname)],
    );
    assert!(!names.is_empty() && names.iter().all(|n| owner[n] == last));
    // A pod past the replicas refuses to start rather than run nothing.
    let beyond = replicas.to_string();
    let (code, names, err) = check(
        &config,
        &[("DEPPROBE_SHARD", &shard), ("DEPPROBE_POD_INDEX", &beyond)],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(names.is_empty());
    assert!(
        err.contains("make n equal the StatefulSet's replicas"),
        "{err}"
    );
}

/// The labels of the `target_info` series of an exposition.
fn target_info(metrics: &str) -> Option<BTreeMap<String, String>> {
    let line = metrics.lines().find(|l| l.starts_with("target_info{"))?;
    let labels = line.strip_prefix("target_info{")?.rsplit_once('}')?.0;
    let pair = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).ok()?;
    Some(
        pair.captures_iter(labels)
            .map(|c| (c[1].to_owned(), c[2].to_owned()))
            .collect(),
    )
}

#[tokio::test]
async fn metrics_name_the_agents_vantage_point_on_target_info() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vantage.yaml");
    // Region and zone from the configuration (with the environment's value), the
    // cluster and node as the fleet's pod spec sets them from the downward API.
    let text = credential_probes(1).replace(
        "probes:\n",
        "telemetry:\n  resource:\n    cloud.region: ${CLOUD_REGION}\n    \
         cloud.availability_zone: eu-west-1b\nprobes:\n",
    );
    std::fs::write(&config, text).unwrap();
    let agent = AgentProcess::start(
        &depprobe_bin(),
        &config,
        &dir.path().join("agent.log"),
        &[
            ("CLOUD_REGION", "eu-west-1"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "k8s.cluster.name=eu-prod,k8s.node.name=node-7,k8s.pod.name=depprobe-2",
            ),
        ],
    )
    .await
    .unwrap();
    // The resource is rendered from the start: no run needs to have happened.
    let (status, body) = agent.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    let got = target_info(&body).unwrap_or_else(|| panic!("no target_info in /metrics:\n{body}"));
    for (label, value) in [
        ("cloud_region", "eu-west-1"),
        ("cloud_availability_zone", "eu-west-1b"),
        ("k8s_cluster_name", "eu-prod"),
        ("k8s_node_name", "node-7"),
    ] {
        assert_eq!(got.get(label).map(String::as_str), Some(value), "{got:?}");
    }
    assert!(
        got.get("host_name").is_some_and(|h| !h.is_empty()),
        "{got:?}"
    );
}
