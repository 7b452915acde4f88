//! The Kubernetes manifests (`deploy/kubernetes/`): every object passes the
//! Kubernetes schemas and, for the Prometheus Operator's, the schemas kept in the
//! repository (`scripts/validate-kubernetes`); the kustomization lists every file;
//! the agents run unprivileged, sized, probed on `/healthz` and `/readyz`; the
//! fleet shards by pod index over exactly its replicas; the PodMonitor scrapes every
//! agent as the job the rules select; the PrometheusRule is generated from
//! `deploy/prometheus/alerts.yml`; the configurations pass `depprobe validate`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::files::{read, repo};
use crate::{PROMETHEUS_DIR, depprobe_bin, output_text};

const KUBERNETES_DIR: &str = "deploy/kubernetes";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/prometheusrule.yaml";

/// The kustomization's resources, parsed, by file name.
fn manifests() -> Vec<(String, Value)> {
    let k: Value = crate::files::yaml(&format!("{KUBERNETES_DIR}/kustomization.yaml"));
    let resources = k["resources"].as_array().expect("kustomization resources");
    resources
        .iter()
        .map(|r| {
            let file = r.as_str().expect("a resource is a file name").to_owned();
            let doc: Value = crate::files::yaml(&format!("{KUBERNETES_DIR}/{file}"));
            (file, doc)
        })
        .collect()
}

fn objects(kind: &str) -> Vec<Value> {
    manifests()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == kind)
        .collect()
}

fn object(kind: &str) -> Value {
    let mut all = objects(kind);
    assert_eq!(all.len(), 1, "one {kind} in {KUBERNETES_DIR}");
    all.remove(0)
}

/// Every workload whose pods run an agent: (workload, pod template, agent container).
fn agents() -> Vec<(Value, Value, Value)> {
    let mut out = Vec::new();
    for kind in ["StatefulSet", "Deployment"] {
        for w in objects(kind) {
            let template = w["spec"]["template"].clone();
            let containers = template["spec"]["containers"].as_array().unwrap().clone();
            for c in containers {
                if c["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("depprobe"))
                {
                    out.push((w.clone(), template.clone(), c));
                }
            }
        }
    }
    assert!(out.len() >= 2, "a fleet and a sidecar run the agent");
    out
}

fn env_value(container: &Value, name: &str) -> Option<Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

/// Whether `selector` (matchLabels) selects a pod with `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let wanted = selector["matchLabels"].as_object();
    wanted.is_some_and(|w| !w.is_empty() && w.iter().all(|(k, v)| labels[k] == *v))
}

#[test]
fn manifests_pass_the_kubernetes_and_operator_schemas() {
    let out = Command::new("python3")
        .arg(repo().join("scripts/validate-kubernetes"))
        .arg(repo().join(KUBERNETES_DIR))
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): run scripts/deps"));
    let text = output_text(&out);
    assert!(
        !text.contains("ModuleNotFoundError"),
        "{text}\nrun scripts/deps (it installs kubernetes-validate from PyPI)"
    );
    assert!(out.status.success(), "scripts/validate-kubernetes:\n{text}");
    let checked = manifests().len();
    assert!(
        text.contains(&format!("{checked} objects checked, 0 invalid")),
        "{text}"
    );
}

#[test]
fn kustomization_lists_every_manifest_of_the_directory() {
    let listed: Vec<String> = manifests().into_iter().map(|(f, _)| f).collect();
    let mut present: Vec<String> = std::fs::read_dir(repo().join(KUBERNETES_DIR))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    present.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, present, "kustomization.yaml resources");
}

#[test]
fn agents_run_unprivileged_read_only_and_sized() {
    for (w, pod, c) in agents() {
        let name = format!("{}/{}", w["kind"], w["metadata"]["name"]);
        let pod_sc = &pod["spec"]["securityContext"];
        let sc = &c["securityContext"];
        let non_root = sc["runAsNonRoot"] == true || pod_sc["runAsNonRoot"] == true;
        assert!(non_root, "{name}: runAsNonRoot");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert_eq!(
            pod_sc["seccompProfile"]["type"], "RuntimeDefault",
            "{name}: seccomp"
        );
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false, "{name}");
        for (kind, key) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            assert!(
                c["resources"][kind][key].is_string(),
                "{name}: resources.{kind}.{key}"
            );
        }
        // The state directory and /tmp on emptyDirs (the root is read-only).
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        for path in ["/var/lib/depprobe", "/tmp"] {
            let mount = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("{name}: nothing mounted at {path}"));
            let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
            assert!(
                volume["emptyDir"].is_object(),
                "{name}: {path} is no emptyDir"
            );
        }
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(c[probe]["httpGet"]["path"], path, "{name}: {probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "depprobe", "{name}: {probe}");
        }
    }
}

/// The agent's configuration file in `pod` for `container`: the ConfigMap mounted
/// at the directory of its `-c` argument, and the key named by the file.
fn agent_config(pod: &Value, container: &Value) -> (String, String) {
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let path = args
        .windows(2)
        .find(|w| w[0] == "-c")
        .map(|w| Path::new(w[1]))
        .expect("the agent's -c argument");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == path.parent().unwrap().to_str().unwrap())
        .expect("a volume mounted at the configuration's directory");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let map_name = volume["configMap"]["name"].as_str().expect("a ConfigMap");
    let map = objects("ConfigMap")
        .into_iter()
        .find(|m| m["metadata"]["name"] == map_name)
        .unwrap_or_else(|| panic!("no ConfigMap {map_name} in the kustomization"));
    let key = path.file_name().unwrap().to_str().unwrap();
    let text = map["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {map_name} has no {key}"));
    (map_name.to_owned(), text.to_owned())
}

#[test]
fn agent_configurations_pass_depprobe_validate_and_listen_on_the_scraped_port() {
    let dir = tempfile::tempdir().unwrap();
    for (w, pod, c) in agents() {
        let (map, text) = agent_config(&pod, &c);
        let file = dir.path().join(format!("{map}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(depprobe_bin())
            .args(["validate", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: ConfigMap {map}: {}",
            w["metadata"]["name"],
            output_text(&out)
        );
        let config = depprobe_probes::load_config(&file).unwrap();
        let listen = config.agent.listen.expect("agent.listen");
        assert!(listen.ip().is_unspecified(), "{map}: listen on 0.0.0.0");
        let port = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "depprobe")
            .expect("a container port named depprobe");
        assert_eq!(port["containerPort"], listen.port(), "{map}");
    }
}

#[test]
fn fleet_takes_its_shard_from_the_pod_index_over_all_its_replicas() {
    let set = object("StatefulSet");
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas");
    let c = agents()
        .into_iter()
        .find(|(w, _, _)| w["kind"] == "StatefulSet")
        .unwrap()
        .2;
    let shard = env_value(&c, "DEPPROBE_SHARD").expect("DEPPROBE_SHARD");
    assert_eq!(shard["value"], format!("pod/{replicas}"), "n = replicas");
    let index = env_value(&c, "DEPPROBE_POD_INDEX").expect("DEPPROBE_POD_INDEX");
    assert_eq!(
        index["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    let service = object("Service");
    assert_eq!(service["spec"]["clusterIP"], "None", "a headless Service");
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
    let service_selector = serde_json::json!({"matchLabels": service["spec"]["selector"]});
    assert!(
        selects(&service_selector, labels),
        "the Service selects the fleet"
    );
    let pdb = object("PodDisruptionBudget");
    assert!(
        selects(&pdb["spec"]["selector"], labels),
        "the PDB selects the fleet"
    );
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn pod_monitor_scrapes_every_agent_as_the_job_the_rules_select() {
    let monitor = object("PodMonitor");
    let endpoints = monitor["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    assert_eq!(endpoint["path"], "/metrics");
    let sets_job = endpoint["relabelings"].as_array().is_some_and(|r| {
        r.iter()
            .any(|r| r["targetLabel"] == "job" && r["replacement"] == "depprobe")
    });
    assert!(sets_job, "the rules select job=\"depprobe\"");
    for (w, pod, c) in agents() {
        let name = &w["metadata"]["name"];
        assert!(
            selects(&monitor["spec"]["selector"], &pod["metadata"]["labels"]),
            "the PodMonitor does not select {name}'s pods"
        );
        let named = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == endpoint["port"]);
        assert!(named, "{name}: no container port {}", endpoint["port"]);
    }
}

#[test]
fn agents_name_their_vantage_point_from_the_downward_api() {
    for (w, _, c) in agents() {
        let name = &w["metadata"]["name"];
        let attrs = env_value(&c, "OTEL_RESOURCE_ATTRIBUTES")
            .and_then(|v| v["value"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("{name}: OTEL_RESOURCE_ATTRIBUTES"));
        let pairs: BTreeMap<&str, &str> = attrs
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        for (key, var, field) in [
            ("k8s.node.name", "K8S_NODE_NAME", Some("spec.nodeName")),
            ("k8s.pod.name", "K8S_POD_NAME", Some("metadata.name")),
            ("k8s.cluster.name", "K8S_CLUSTER_NAME", None),
        ] {
            assert_eq!(pairs.get(key).copied(), Some(format!("$({var})").as_str()));
            let env = c["env"].as_array().unwrap();
            // Kubernetes expands $(VAR) only from variables defined before it.
            let defined = env.iter().position(|e| e["name"] == var);
            let used = env
                .iter()
                .position(|e| e["name"] == "OTEL_RESOURCE_ATTRIBUTES");
            assert!(defined < used && defined.is_some(), "{name}: {var} first");
            if let Some(field) = field {
                let e = env_value(&c, var).unwrap();
                assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], field, "{name}");
            }
        }
    }
}

/// The PrometheusRule for `alerts` (the text of alerts.yml): its rule groups,
/// comments included, under `spec`.
fn prometheus_rule(alerts: &str) -> String {
    let body = alerts
        .find("\ngroups:")
        .map(|i| &alerts[i + 1..])
        .expect("alerts.yml has groups");
    let mut out = String::from(
        "# Generated from deploy/prometheus/alerts.yml: do not edit. After a change there,\n\
         # run DEPPROBE_REGENERATE=1 cargo test -p depprobe-tests --test stack prometheus_rule\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: depprobe\n  labels:\n    app.kubernetes.io/name: depprobe\n\
         spec:\n",
    );
    for line in body.lines() {
        if !line.is_empty() {
            out.push_str("  ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[test]
fn prometheus_rule_is_generated_from_the_alert_rules() {
    let alerts = read(&format!("{PROMETHEUS_DIR}/alerts.yml"));
    let expected = prometheus_rule(&alerts);
    if std::env::var_os("DEPPROBE_REGENERATE").is_some() {
        std::fs::write(repo().join(PROMETHEUS_RULE), &expected).unwrap();
    }
    let committed = read(PROMETHEUS_RULE);
    assert!(
        committed == expected,
        "{PROMETHEUS_RULE} differs from what deploy/prometheus/alerts.yml generates: run \
         DEPPROBE_REGENERATE=1 cargo test -p depprobe-tests --test stack prometheus_rule"
    );
    // The same rules, not only the same text: the groups parse equal.
    let rule: Value = crate::files::yaml(PROMETHEUS_RULE);
    let file: Value = crate::files::yaml(&format!("{PROMETHEUS_DIR}/alerts.yml"));
    assert_eq!(rule["spec"]["groups"], file["groups"]);
    assert!(file["groups"].as_array().is_some_and(|g| !g.is_empty()));
}
