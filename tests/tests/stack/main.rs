//! The local observability stack (`docker-compose.yml`, `Dockerfile`, `deploy/`),
//! checked without a Docker engine: promtool checks the Prometheus configuration
//! and runs the alert rules' unit tests; the compose file, the Collector and
//! Grafana configurations are parsed and held to each other (mounted files exist,
//! ports and host names agree); the depprobe service's configuration passes
//! `depprobe validate`; the rules and the dashboard use only the metric contract;
//! the image's HEALTHCHECK is run against a real local server.
//!
//! `depprobe validate` runs the `depprobe` binary next to this test's executable
//! (`target/<profile>/depprobe`); build it first with `cargo build -p
//! depprobe-agent`, or point `DEPPROBE_BIN` at one.

mod files;
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use depprobe_config::OtlpProtocol;
use depprobe_tests::{HttpServer, Reply, closed_port};
use files::{
    Collector, Compose, Dockerfile, GrafanaDashboardProviders, GrafanaDatasources,
    PrometheusConfig, host_port, repo, url_host_port, yaml,
};
use serde::Deserialize;

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
    let bin = match std::env::var_os("DEPPROBE_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let exe = std::env::current_exe().expect("the test's own path");
            let mut dir = exe.parent().expect("the test's directory");
            if dir.ends_with("deps") {
                dir = dir.parent().expect("the profile directory");
            }
            dir.join(format!("depprobe{}", std::env::consts::EXE_SUFFIX))
        }
    };
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
    depprobe_config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn prometheus_config_passes_promtool_check_config() {
    let out = promtool(&["check", "config", "prometheus.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let out = promtool(&["check", "rules", "alerts.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rules_unit_tests_pass_under_promtool() {
    let out = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    expr: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RuleTests {
    tests: Vec<RuleTestCase>,
}

#[derive(Deserialize)]
struct RuleTestCase {
    #[serde(default)]
    alert_rule_test: Vec<AlertRuleTest>,
}

#[derive(Deserialize)]
struct AlertRuleTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<serde_json::Value>,
}

fn alert_rules() -> Vec<Rule> {
    let file: RuleFile = yaml(&format!("{PROMETHEUS_DIR}/alerts.yml"));
    file.groups
        .into_iter()
        .flat_map(|g| g.rules)
        .filter(|r| r.alert.is_some())
        .collect()
}

#[test]
fn every_alert_has_unit_tests_where_it_fires_and_where_it_does_not() {
    let tests: RuleTests = yaml(&format!("{PROMETHEUS_DIR}/alerts_test.yml"));
    let cases: Vec<&AlertRuleTest> = tests
        .tests
        .iter()
        .flat_map(|t| &t.alert_rule_test)
        .collect();
    let mut missing = Vec::new();
    for rule in alert_rules() {
        let name = rule.alert.unwrap();
        let fires = cases
            .iter()
            .any(|c| c.alertname == name && !c.exp_alerts.is_empty());
        let stays_quiet = cases
            .iter()
            .any(|c| c.alertname == name && c.exp_alerts.is_empty());
        if !fires {
            missing.push(format!("{name}: no case where it fires"));
        }
        if !stays_quiet {
            missing.push(format!("{name}: no case where it does not fire"));
        }
    }
    assert!(
        missing.is_empty(),
        "alerts_test.yml:\n{}",
        missing.join("\n")
    );
}

#[test]
fn alert_rules_select_only_the_agents_own_scrape_job_and_contract_series() {
    let prometheus: PrometheusConfig = yaml(&format!("{PROMETHEUS_DIR}/prometheus.yml"));
    let compose = Compose::load();
    let listen_port = load_agent_config(&compose)
        .agent
        .listen
        .expect("agent.listen")
        .port();
    // The job the rules select is the one that scrapes the agent itself.
    assert_eq!(
        prometheus.targets("depprobe"),
        vec![format!("depprobe:{listen_port}")]
    );
    let mut problems = Vec::new();
    for rule in alert_rules() {
        let name = rule.alert.as_deref().unwrap_or_default();
        for p in promql::contract_problems(&rule.expr) {
            problems.push(format!("{name}: {p}"));
        }
        let uses = promql::uses(&rule.expr).unwrap();
        for s in &uses.selectors {
            let selects_agent_job = s.matchers.iter().any(|(l, op, v)| {
                l == "job" && matches!(op, promql_parser::label::MatchOp::Equal) && v == "depprobe"
            });
            if !selects_agent_job {
                problems.push(format!(
                    "{name}: `{}` does not select job=\"depprobe\" (the Collector's copy would \
                     raise the alert a second time)",
                    s.name
                ));
            }
        }
        let severity = rule.labels.get("severity").map(String::as_str);
        let severity_from_series = uses.grouping_labels.contains("severity");
        if !matches!(severity, Some("warning" | "critical")) && !severity_from_series {
            problems.push(format!("{name}: no severity label (warning or critical)"));
        }
        for key in ["summary", "description"] {
            if rule
                .annotations
                .get(key)
                .is_none_or(|t| t.trim().is_empty())
            {
                problems.push(format!("{name}: no {key} annotation"));
            }
        }
    }
    assert!(problems.is_empty(), "alerts.yml:\n{}", problems.join("\n"));
}

#[test]
fn probe_down_alert_names_the_failure_class_and_phase_in_its_summary() {
    let rules = alert_rules();
    let down = rules
        .iter()
        .find(|r| r.alert.as_deref() == Some("DepprobeProbeDown"))
        .expect("a DepprobeProbeDown alert");
    let uses = promql::uses(&down.expr).unwrap();
    assert!(
        uses.selectors.iter().any(|s| s.name == "probe_error_info"),
        "{}",
        down.expr
    );
    let summary = &down.annotations["summary"];
    for label in ["probe_name", "error_type", "probe_phase"] {
        assert!(
            summary.contains(&format!("$labels.{label}")),
            "summary lacks {label}: {summary}"
        );
    }
}

#[test]
fn collector_pipelines_use_only_defined_components_and_use_them_all() {
    let c: Collector = yaml(COLLECTOR_CONFIG);
    let mut problems = Vec::new();
    let mut used: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (name, p) in &c.service.pipelines {
        let signal = name.split('/').next().unwrap_or_default();
        if !["traces", "metrics", "logs"].contains(&signal) {
            problems.push(format!("pipeline {name}: not traces, metrics or logs"));
        }
        let sections = [
            ("receivers", &p.receivers, &c.receivers),
            ("processors", &p.processors, &c.processors),
            ("exporters", &p.exporters, &c.exporters),
        ];
        for (section, ids, defined) in sections {
            for id in ids {
                let connector = section != "processors" && c.connectors.contains_key(id);
                if !defined.contains_key(id) && !connector {
                    problems.push(format!("pipeline {name}: {section}.{id} is not defined"));
                }
                used.insert((section, id));
            }
        }
        if p.receivers.is_empty() || p.exporters.is_empty() {
            problems.push(format!("pipeline {name}: needs receivers and exporters"));
        }
        if c.processors.contains_key("memory_limiter")
            && p.processors.first().map(String::as_str) != Some("memory_limiter")
        {
            problems.push(format!("pipeline {name}: memory_limiter must come first"));
        }
    }
    for id in &c.service.extensions {
        if !c.extensions.contains_key(id) {
            problems.push(format!("service.extensions: {id} is not defined"));
        }
    }
    for (section, defined) in [
        ("receivers", &c.receivers),
        ("processors", &c.processors),
        ("exporters", &c.exporters),
    ] {
        for id in defined.keys() {
            if !used.contains(&(section, id.as_str())) {
                problems.push(format!("{section}.{id} is defined but in no pipeline"));
            }
        }
    }
    assert!(
        c.service.pipelines.contains_key("traces") && c.service.pipelines.contains_key("metrics"),
        "the Collector needs a traces and a metrics pipeline"
    );
    assert!(
        problems.is_empty(),
        "{COLLECTOR_CONFIG}:\n{}",
        problems.join("\n")
    );
}

#[test]
fn agent_exports_otlp_to_the_collectors_receiver_port_for_its_protocol() {
    let compose = Compose::load();
    let collector: Collector = yaml(COLLECTOR_CONFIG);
    let otlp = load_agent_config(&compose)
        .telemetry
        .otlp
        .expect("the stack's depprobe config exports OTLP (telemetry.otlp)");
    let endpoint = otlp.endpoint.expect("telemetry.otlp.endpoint");
    let (host, port) = url_host_port(&endpoint);
    assert!(
        compose.services.contains_key(&host),
        "the agent exports to {endpoint}, but no compose service is named {host}"
    );
    let protocol = match otlp.protocol {
        OtlpProtocol::Grpc => "grpc",
        OtlpProtocol::HttpProtobuf => "http",
    };
    let receiver = collector.endpoint("receivers", "otlp", &["protocols", protocol]);
    let (bind, receiver_port) = host_port(&receiver);
    assert_eq!(
        port, receiver_port,
        "the agent sends OTLP/{protocol} to port {port}; the Collector receives it on {receiver}"
    );
    assert_eq!(
        bind, "0.0.0.0",
        "the Collector must listen beyond localhost"
    );
}

#[test]
fn compose_publishes_the_ports_the_configs_listen_on() {
    let compose = Compose::load();
    let collector: Collector = yaml(COLLECTOR_CONFIG);
    let agent = load_agent_config(&compose);
    let listen = agent.agent.listen.expect("agent.listen");
    assert!(
        listen.ip().is_unspecified(),
        "agent.listen is {listen}: inside a container it must be 0.0.0.0 for Prometheus to scrape"
    );
    let mut expected: Vec<(&str, u16, String)> =
        vec![("depprobe", listen.port(), format!("agent.listen {listen}"))];
    for protocol in ["grpc", "http"] {
        let endpoint = collector.endpoint("receivers", "otlp", &["protocols", protocol]);
        expected.push(("otel-collector", host_port(&endpoint).1, endpoint));
    }
    let prometheus = compose.service("prometheus");
    let web = prometheus
        .flag("--web.listen-address")
        .unwrap_or_else(|| "0.0.0.0:9090".to_string());
    expected.push(("prometheus", host_port(&web).1, web));
    let grafana = compose.service("grafana");
    let grafana_port = grafana
        .environment
        .get("GF_SERVER_HTTP_PORT")
        .map_or(3000, |p| p.parse().unwrap());
    expected.push(("grafana", grafana_port, "Grafana's http_port".to_string()));
    for (service, port, why) in expected {
        assert!(
            compose.service(service).publishes(port),
            "docker-compose.yml: {service} should publish {port}:{port} ({why}); it has {:?}",
            compose.service(service).ports
        );
    }
    for (name, service) in &compose.services {
        for p in service.published() {
            assert_eq!(
                p.host_ip.as_deref(),
                Some("127.0.0.1"),
                "{name} publishes {} beyond the loopback address",
                p.host
            );
        }
    }
}

#[test]
fn prometheus_scrapes_the_agent_and_the_collector_where_they_listen() {
    let compose = Compose::load();
    let collector: Collector = yaml(COLLECTOR_CONFIG);
    let prometheus: PrometheusConfig = yaml(&format!("{PROMETHEUS_DIR}/prometheus.yml"));
    let listen = load_agent_config(&compose).agent.listen.expect("listen");
    assert_eq!(
        prometheus.targets("depprobe"),
        vec![format!("depprobe:{}", listen.port())]
    );
    let exporter = collector.endpoint("exporters", "prometheus", &[]);
    assert_eq!(
        prometheus.targets("otel-collector"),
        vec![format!("otel-collector:{}", host_port(&exporter).1)],
        "the Collector's prometheus exporter listens on {exporter}"
    );
    for sc in &prometheus.scrape_configs {
        for target in sc.static_configs.iter().flat_map(|s| &s.targets) {
            let (host, _) = host_port(target);
            assert!(
                host == "localhost" || compose.services.contains_key(&host),
                "job {}: target {target} is no compose service",
                sc.job_name
            );
        }
    }
    for id in collector.exporters.keys() {
        if id.starts_with("otlp") {
            let (host, _) = host_port(&collector.endpoint("exporters", id, &[]));
            assert!(
                compose.services.contains_key(&host),
                "exporter {id} sends to {host}, which is no compose service"
            );
        }
    }
}

#[test]
fn every_file_compose_mounts_exists_in_the_repository() {
    let compose = Compose::load();
    let mut missing = Vec::new();
    for (name, service) in &compose.services {
        for m in service.mounts() {
            let path = repo().join(m.source.trim_start_matches("./"));
            if !path.exists() {
                missing.push(format!("{name}: {} -> {}", m.source, m.target));
            }
            if !m.read_only {
                missing.push(format!("{name}: {} should be mounted :ro", m.source));
            }
        }
        if service.image.is_none() && service.build.is_none() {
            missing.push(format!("{name}: neither image nor build"));
        }
        for dep in &service.depends_on {
            if !compose.services.contains_key(dep) {
                missing.push(format!("{name}: depends on unknown service {dep}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docker-compose.yml:\n{}",
        missing.join("\n")
    );
}

#[test]
fn services_read_their_configuration_from_mounted_repository_files() {
    let compose = Compose::load();
    let mounted = |service: &str, container_path: &str| -> PathBuf {
        let path = compose
            .service(service)
            .repo_path_of(container_path)
            .unwrap_or_else(|| panic!("{service} reads {container_path}, which no volume mounts"));
        assert!(
            path.exists(),
            "{service}: {} does not exist",
            path.display()
        );
        path
    };
    let agent_config = compose
        .service("depprobe")
        .flag("-c")
        .expect("the depprobe service's -c");
    assert_eq!(
        mounted("depprobe", &agent_config),
        repo().join("deploy/depprobe.yaml")
    );
    let collector_config = compose
        .service("otel-collector")
        .flag("--config")
        .expect("the Collector's --config");
    assert_eq!(
        mounted("otel-collector", &collector_config),
        repo().join(COLLECTOR_CONFIG)
    );
    let prometheus_config = compose
        .service("prometheus")
        .flag("--config.file")
        .expect("Prometheus' --config.file");
    assert_eq!(
        mounted("prometheus", &prometheus_config),
        repo().join(PROMETHEUS_DIR).join("prometheus.yml")
    );
    // Rule files are relative to the configuration file, in the container too.
    let prometheus: PrometheusConfig = yaml(&format!("{PROMETHEUS_DIR}/prometheus.yml"));
    let config_dir = Path::new(&prometheus_config).parent().unwrap();
    for rule_file in &prometheus.rule_files {
        let in_container = config_dir.join(rule_file);
        assert_eq!(
            mounted("prometheus", &in_container.to_string_lossy()),
            repo().join(PROMETHEUS_DIR).join(rule_file)
        );
    }
    // Grafana: provisioning, the dashboards directory, the home dashboard.
    assert_eq!(
        mounted(
            "grafana",
            "/etc/grafana/provisioning/datasources/datasources.yml"
        ),
        repo().join(DATASOURCES)
    );
    let providers: GrafanaDashboardProviders = yaml(DASHBOARD_PROVIDERS);
    assert_eq!(
        mounted(
            "grafana",
            "/etc/grafana/provisioning/dashboards/dashboards.yml"
        ),
        repo().join(DASHBOARD_PROVIDERS)
    );
    for provider in &providers.providers {
        assert_eq!(provider.kind, "file");
        let dir = mounted("grafana", &provider.options["path"]);
        assert_eq!(dir, repo().join(DASHBOARDS_DIR));
    }
    if let Some(home) = compose
        .service("grafana")
        .environment
        .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    {
        mounted("grafana", home);
    }
}

#[test]
fn grafana_data_sources_point_at_compose_services_on_their_ports() {
    let compose = Compose::load();
    let sources: GrafanaDatasources = yaml(DATASOURCES);
    let prometheus = sources
        .datasources
        .iter()
        .find(|d| d.kind == "prometheus")
        .expect("a Prometheus data source");
    let web = compose
        .service("prometheus")
        .flag("--web.listen-address")
        .unwrap_or_else(|| "0.0.0.0:9090".to_string());
    assert_eq!(
        url_host_port(&prometheus.url),
        ("prometheus".to_string(), host_port(&web).1)
    );
    for d in &sources.datasources {
        let (host, _) = url_host_port(&d.url);
        assert!(
            compose.services.contains_key(&host),
            "data source {}: {} is no compose service",
            d.uid,
            d.url
        );
    }
}

#[test]
fn the_stack_config_of_the_depprobe_service_passes_depprobe_validate() {
    let compose = Compose::load();
    let config = depprobe_config_path(&compose);
    let out = Command::new(depprobe_bin())
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .expect("run depprobe validate");
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "depprobe validate -c {} failed ({}):\n{text}",
        config.display(),
        out.status
    );
    assert!(text.contains(": OK,"), "{text}");
}

#[test]
fn image_runs_the_agent_unprivileged_with_the_config_compose_mounts() {
    let d = Dockerfile::load();
    let compose = Compose::load();
    let service = compose.service("depprobe");
    assert_eq!(d.entrypoint, vec!["depprobe"]);
    assert_eq!(d.cmd, vec!["run", "-c", "/etc/depprobe/depprobe.yaml"]);
    let command = if service.command.is_empty() {
        &d.cmd
    } else {
        &service.command
    };
    assert_eq!(command, &d.cmd, "compose runs the image's own command");
    assert!(
        service.repo_path_of(&d.cmd[2]).is_some(),
        "compose mounts nothing at {}",
        d.cmd[2]
    );
    let listen = load_agent_config(&compose).agent.listen.expect("listen");
    assert_eq!(d.exposed, vec![listen.port()], "EXPOSE and agent.listen");
    let user = d.user.expect("a USER instruction");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid != "0" && uid != "root",
        "the image runs as root ({user})"
    );
    assert_eq!(
        service.build.as_deref(),
        Some("."),
        "compose builds the Dockerfile"
    );
}

async fn run_healthcheck(port: u16) -> std::process::ExitStatus {
    let d = Dockerfile::load();
    let (program, args) = d.healthcheck.split_first().expect("HEALTHCHECK CMD");
    tokio::process::Command::new(program)
        .args(args)
        .env("DEPPROBE_HEALTH_PORT", port.to_string())
        .output()
        .await
        .expect("run the HEALTHCHECK command")
        .status
}

#[tokio::test]
async fn image_healthcheck_passes_on_healthz_200_and_fails_otherwise() {
    let healthy = HttpServer::builder()
        .respond(|req| match req.path.as_str() {
            "/healthz" => Reply::ok("ok"),
            _ => Reply::new(404, "not found"),
        })
        .start()
        .await
        .unwrap();
    assert!(run_healthcheck(healthy.port()).await.success());

    let unhealthy = HttpServer::builder()
        .respond(|_| Reply::new(503, "starting"))
        .start()
        .await
        .unwrap();
    assert!(!run_healthcheck(unhealthy.port()).await.success());

    let nothing = closed_port().await.unwrap();
    assert!(!run_healthcheck(nothing).await.success());
}

#[derive(Deserialize)]
struct Dashboard {
    uid: String,
    panels: Vec<Panel>,
    templating: Templating,
}

#[derive(Deserialize)]
struct Templating {
    list: Vec<Variable>,
}

#[derive(Deserialize)]
struct Variable {
    name: String,
    #[serde(default)]
    query: serde_json::Value,
}

#[derive(Deserialize)]
struct Panel {
    title: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    datasource: Option<DatasourceRef>,
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct DatasourceRef {
    uid: String,
}

#[derive(Deserialize)]
struct Target {
    expr: String,
    #[serde(default, rename = "legendFormat")]
    legend_format: Option<String>,
    #[serde(default)]
    datasource: Option<DatasourceRef>,
}

fn dashboards() -> Vec<(String, Dashboard)> {
    let dir = repo().join(DASHBOARDS_DIR);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let d: Dashboard =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.display().to_string(), d));
        }
    }
    assert!(!out.is_empty(), "no dashboard in {}", dir.display());
    out
}

/// `label_values(selector, label)` -> (selector, label).
fn label_values_query(query: &str) -> Option<(&str, &str)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

#[test]
fn dashboard_queries_use_only_contract_metrics_and_provisioned_data_sources() {
    let sources: GrafanaDatasources = yaml(DATASOURCES);
    let uids: BTreeSet<&str> = sources.datasources.iter().map(|d| d.uid.as_str()).collect();
    let legend_label = regex::Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}").unwrap();
    let mut problems = Vec::new();
    for (file, d) in dashboards() {
        for panel in d.panels.iter().filter(|p| p.kind != "row") {
            let refs = panel
                .datasource
                .iter()
                .chain(panel.targets.iter().filter_map(|t| t.datasource.as_ref()));
            for r in refs {
                if !uids.contains(r.uid.as_str()) {
                    problems.push(format!("{file}: {}: data source {}", panel.title, r.uid));
                }
            }
            if panel.targets.is_empty() {
                problems.push(format!("{file}: {}: no query", panel.title));
            }
            for t in &panel.targets {
                let expr = promql::without_grafana_variables(&t.expr);
                for p in promql::contract_problems(&expr) {
                    problems.push(format!("{file}: {}: {p}", panel.title));
                }
                let Ok(uses) = promql::uses(&expr) else {
                    continue;
                };
                for caps in legend_label.captures_iter(t.legend_format.as_deref().unwrap_or("")) {
                    let label = &caps[1];
                    let carried = uses.selectors.iter().any(|s| {
                        depprobe_tests::contract::metric_of_series(&s.name)
                            .is_some_and(|m| m.has_label(&s.name, label))
                    });
                    if !carried {
                        problems.push(format!(
                            "{file}: {}: legend {{{{{label}}}}} is carried by no series",
                            panel.title
                        ));
                    }
                }
            }
        }
        for v in &d.templating.list {
            let query = v
                .query
                .get("query")
                .and_then(|q| q.as_str())
                .or_else(|| v.query.as_str())
                .unwrap_or_default();
            let Some((selector, label)) = label_values_query(query) else {
                problems.push(format!("{file}: variable {}: `{query}`", v.name));
                continue;
            };
            for p in promql::contract_problems(selector) {
                problems.push(format!("{file}: variable {}: {p}", v.name));
            }
            let uses = promql::uses(selector).unwrap_or_default();
            let carried = uses.selectors.iter().all(|s| {
                depprobe_tests::contract::metric_of_series(&s.name)
                    .is_some_and(|m| m.has_label(&s.name, label))
            });
            if !carried {
                problems.push(format!("{file}: variable {}: no label {label}", v.name));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dashboard_shows_status_failure_classes_certificate_days_and_phase_latency() {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(_, d)| d.uid == "depprobe")
        .expect("the depprobe dashboard (uid depprobe)");
    // Each view: a panel title a person looks for, a series it must query, and a
    // label it must break the series down by.
    let views = [
        ("Status per target", "probe_status", "probe_name"),
        (
            "Failure classes over time",
            "probe_error_info",
            "error_type",
        ),
        (
            "Days left per certificate",
            "probe_tls_cert_time_left_seconds",
            "tls_cert_position",
        ),
        (
            "Latency per phase",
            "probe_phase_duration_seconds_bucket",
            "probe_phase",
        ),
    ];
    for (title, series, by) in views {
        let panel = d
            .panels
            .iter()
            .find(|p| p.title.starts_with(title))
            .unwrap_or_else(|| panic!("no panel titled {title:?}"));
        let ok = panel.targets.iter().any(|t| {
            let expr = promql::without_grafana_variables(&t.expr);
            promql::uses(&expr).is_ok_and(|u| {
                u.selectors.iter().any(|s| s.name == series) && u.grouping_labels.contains(by)
            })
        });
        assert!(ok, "{title}: no query of {series} by {by}");
    }
}
