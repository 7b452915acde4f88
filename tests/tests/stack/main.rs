//! The local observability stack (`docker-compose.yml`, `Dockerfile`, `deploy/`),
//! checked without a Docker engine: promtool checks the Prometheus configuration
//! and runs the alert rules' unit tests; the compose file, the Collector and
//! Grafana configurations are parsed and held to each other (mounted files exist,
//! ports and host names agree); the depprobe service's configuration passes
//! `depprobe validate`; the rules and the dashboard use only the metric contract;
//! the image's HEALTHCHECK is run against a real local server; the Kubernetes
//! manifests pass the Kubernetes and Prometheus Operator schemas (python3 and the
//! kubernetes-validate package, from scripts/deps) and run the agent as the tests
//! run it.
//!
//! `depprobe validate` runs the `depprobe` binary next to this test's executable
//! (`target/<profile>/depprobe`); build it first with `cargo build -p
//! depprobe-agent`, or point `DEPPROBE_BIN` at one.

mod dashboard;
mod files;
mod fleet;
mod image;
mod kubernetes;
mod promql;
mod rules;
mod wiring;

use std::path::PathBuf;
use std::process::{Command, Output};

use files::{Compose, repo};

const PROMETHEUS_DIR: &str = "deploy/prometheus";
const COLLECTOR_CONFIG: &str = "deploy/otel-collector/config.yaml";
const DASHBOARDS_DIR: &str = "deploy/grafana/dashboards";
const DATASOURCES: &str = "deploy/grafana/provisioning/datasources/datasources.yml";
const DASHBOARD_PROVIDERS: &str = "deploy/grafana/provisioning/dashboards/dashboards.yml";

/// Runs promtool in `deploy/prometheus` and returns its output when it succeeds;
/// fails with promtool's own words otherwise.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo().join(PROMETHEUS_DIR))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): run scripts/deps (Debian's `prometheus` package)")
        });
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `depprobe` binary cargo built for this profile, next to this test's
/// executable (`target/<profile>/deps/stack-*` -> `target/<profile>/depprobe`).
fn depprobe_bin() -> PathBuf {
    let bin = depprobe_tests::agent_process::depprobe_bin();
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo build -p depprobe-agent` (same profile) before this \
         test, or set DEPPROBE_BIN to a depprobe binary",
        bin.display()
    );
    bin
}

/// The repository path of the depprobe service's configuration: the `-c` argument
/// of its command, through its mounts.
fn depprobe_config_path(compose: &Compose) -> PathBuf {
    let service = compose.service("depprobe");
    let in_container = service
        .flag("-c")
        .or_else(|| service.flag("--config"))
        .expect("the depprobe service's command names its configuration with -c");
    service.repo_path_of(&in_container).unwrap_or_else(|| {
        panic!("the depprobe service reads {in_container}, which no volume mounts")
    })
}

fn load_agent_config(compose: &Compose) -> depprobe_config::Config {
    let path = depprobe_config_path(compose);
    depprobe_probes::load_config(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
