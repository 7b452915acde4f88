//! How the stack's parts reach each other: the Collector's pipelines, the ports each
//! configuration listens on and compose publishes, scrape targets, data sources, and
//! every configuration file a service reads coming from a mounted repository file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use depprobe_config::OtlpProtocol;

use crate::files::{
    Collector, Compose, GrafanaDashboardProviders, GrafanaDatasources, PrometheusConfig, host_port,
    repo, url_host_port, yaml,
};
use crate::{
    COLLECTOR_CONFIG, DASHBOARD_PROVIDERS, DASHBOARDS_DIR, DATASOURCES, PROMETHEUS_DIR,
    load_agent_config,
};

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
fn the_agents_state_dir_is_a_volume_that_outlives_the_container() {
    let compose = Compose::load();
    let state_dir = load_agent_config(&compose)
        .agent
        .state_dir
        .expect("the stack's depprobe config sets agent.state_dir (issue 17: on in the container)");
    let state_dir = state_dir.display().to_string();
    let agent = compose.service("depprobe");
    let mounted = agent.volumes.iter().any(|v| {
        let mut parts = v.split(':');
        let source = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        target == state_dir && !source.starts_with('.') && !source.starts_with('/')
    });
    assert!(
        mounted,
        "docker-compose.yml: depprobe should mount a named volume at {state_dir}; it has {:?}",
        agent.volumes
    );
}
