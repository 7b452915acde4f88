//! The stack's files as the tests read them: the repository's paths, typed views of
//! the compose file, the Collector and Prometheus configurations, and the few facts
//! of the Dockerfile the other files must agree with.
//!
//! Each model holds only the keys a check needs; unknown keys are ignored, since
//! the real tools (Compose, the Collector, Prometheus) own the full schemas.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The repository's root (the workspace).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// Reads `rel` (relative to the repository), or fails naming it.
pub fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses the YAML file `rel` into `T`, or fails naming it.
pub fn yaml<T: DeserializeOwned>(rel: &str) -> T {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `host:port` split at the last colon; the port as a number.
pub fn host_port(address: &str) -> (String, u16) {
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("`{address}` has no port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("`{address}`: `{port}` is not a port"));
    (host.to_string(), port)
}

/// `scheme://host:port/...` -> (host, port).
pub fn url_host_port(url: &str) -> (String, u16) {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    host_port(rest)
}

/// `docker-compose.yml`.
#[derive(Debug, Deserialize)]
pub struct Compose {
    /// Services by name (also their host names on the compose network).
    pub services: BTreeMap<String, Service>,
}

/// One compose service.
#[derive(Debug, Deserialize)]
pub struct Service {
    /// The image, when not built.
    #[serde(default)]
    pub image: Option<String>,
    /// The build context (`build: .`).
    #[serde(default)]
    pub build: Option<String>,
    /// The command, in list form.
    #[serde(default)]
    pub command: Vec<String>,
    /// `source:target[:mode]` mounts.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `[ip:]published:container` ports.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Services started first.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// A bind mount of a repository path into a container.
#[derive(Debug)]
pub struct Mount {
    /// The path in the repository, as written (`./deploy/...`).
    pub source: String,
    /// The path in the container.
    pub target: String,
    /// Whether it is read-only.
    pub read_only: bool,
}

/// A published port.
#[derive(Debug)]
pub struct Published {
    /// The host address it is published on, if restricted.
    pub host_ip: Option<String>,
    /// The port on the host.
    pub host: u16,
    /// The port in the container.
    pub container: u16,
}

impl Compose {
    /// Loads `docker-compose.yml`.
    pub fn load() -> Compose {
        yaml("docker-compose.yml")
    }

    /// The service named `name`, or fails.
    pub fn service(&self, name: &str) -> &Service {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
    }
}

impl Service {
    /// Its bind mounts (named volumes are not repository files).
    pub fn mounts(&self) -> Vec<Mount> {
        self.volumes
            .iter()
            .filter(|v| v.starts_with("./") || v.starts_with('/'))
            .map(|v| {
                let mut parts = v.splitn(3, ':');
                let source = parts.next().unwrap_or_default().to_string();
                let target = parts
                    .next()
                    .unwrap_or_else(|| panic!("volume `{v}` has no target"))
                    .to_string();
                let read_only = parts.next() == Some("ro");
                Mount {
                    source,
                    target,
                    read_only,
                }
            })
            .collect()
    }

    /// The repository path that `container_path` comes from, through the mount
    /// with the longest matching target.
    pub fn repo_path_of(&self, container_path: &str) -> Option<PathBuf> {
        self.mounts()
            .into_iter()
            .filter(|m| {
                container_path == m.target
                    || container_path.starts_with(&format!("{}/", m.target.trim_end_matches('/')))
            })
            .max_by_key(|m| m.target.len())
            .map(|m| {
                let rest = container_path[m.target.len()..].trim_start_matches('/');
                let base = repo().join(m.source.trim_start_matches("./"));
                if rest.is_empty() {
                    base
                } else {
                    base.join(rest)
                }
            })
    }

    /// Its published ports.
    pub fn published(&self) -> Vec<Published> {
        self.ports
            .iter()
            .map(|p| {
                let spec = p.split('/').next().unwrap_or_default();
                let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
                let num = |s: &str| {
                    s.parse::<u16>()
                        .unwrap_or_else(|_| panic!("port `{p}`: `{s}` is not a port"))
                };
                match parts.as_slice() {
                    [container, host] => Published {
                        host_ip: None,
                        host: num(host),
                        container: num(container),
                    },
                    [container, host, ip] => Published {
                        host_ip: Some((*ip).to_string()),
                        host: num(host),
                        container: num(container),
                    },
                    _ => panic!("port `{p}`: write published:container"),
                }
            })
            .collect()
    }

    /// Whether container port `port` is published (on the same host port).
    pub fn publishes(&self, port: u16) -> bool {
        self.published()
            .iter()
            .any(|p| p.container == port && p.host == port)
    }

    /// The value of a `--name=value` (or `--name value`) argument of its command.
    pub fn flag(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        let mut args = self.command.iter();
        while let Some(arg) = args.next() {
            if let Some(v) = arg.strip_prefix(&prefix) {
                return Some(v.to_string());
            }
            if arg == name {
                return args.next().cloned();
            }
        }
        None
    }
}

/// The OpenTelemetry Collector's configuration.
#[derive(Debug, Deserialize)]
pub struct Collector {
    /// Receivers by id (`type[/name]`).
    pub receivers: BTreeMap<String, serde_json::Value>,
    /// Processors by id.
    #[serde(default)]
    pub processors: BTreeMap<String, serde_json::Value>,
    /// Exporters by id.
    pub exporters: BTreeMap<String, serde_json::Value>,
    /// Extensions by id.
    #[serde(default)]
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// Connectors by id.
    #[serde(default)]
    pub connectors: BTreeMap<String, serde_json::Value>,
    /// The `service` section.
    pub service: CollectorService,
}

/// The Collector's `service` section.
#[derive(Debug, Deserialize)]
pub struct CollectorService {
    /// Extensions switched on.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Pipelines by id (`traces`, `metrics/2`, ...).
    pub pipelines: BTreeMap<String, Pipeline>,
}

/// One Collector pipeline.
#[derive(Debug, Deserialize)]
pub struct Pipeline {
    /// Where data comes from.
    pub receivers: Vec<String>,
    /// What it goes through, in order.
    #[serde(default)]
    pub processors: Vec<String>,
    /// Where it goes.
    pub exporters: Vec<String>,
}

impl Collector {
    /// The `endpoint` of component `section.id[.path...]`, e.g.
    /// `("receivers", "otlp", &["protocols", "grpc"])`.
    pub fn endpoint(&self, section: &str, id: &str, path: &[&str]) -> String {
        let components = match section {
            "receivers" => &self.receivers,
            "exporters" => &self.exporters,
            "extensions" => &self.extensions,
            _ => panic!("no section {section}"),
        };
        let mut node = components
            .get(id)
            .unwrap_or_else(|| panic!("the Collector has no {section}.{id}"));
        for key in path {
            node = node
                .get(key)
                .unwrap_or_else(|| panic!("the Collector has no {section}.{id}...{key}"));
        }
        node.get("endpoint")
            .and_then(|e| e.as_str())
            .unwrap_or_else(|| {
                panic!(
                    "{section}.{id}.{}: no explicit endpoint (the Collector's default binds \
                     localhost, which other containers cannot reach)",
                    path.join(".")
                )
            })
            .to_string()
    }
}

/// Prometheus' configuration.
#[derive(Debug, Deserialize)]
pub struct PrometheusConfig {
    /// Rule files, relative to the configuration file.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// Scrape jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
}

/// One scrape job.
#[derive(Debug, Deserialize)]
pub struct ScrapeConfig {
    /// The `job` label of its series.
    pub job_name: String,
    /// Fixed targets.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
}

/// A list of fixed targets.
#[derive(Debug, Deserialize)]
pub struct StaticConfig {
    /// `host:port` targets.
    pub targets: Vec<String>,
}

impl PrometheusConfig {
    /// The targets of job `job`, or fails.
    pub fn targets(&self, job: &str) -> Vec<String> {
        let sc = self
            .scrape_configs
            .iter()
            .find(|s| s.job_name == job)
            .unwrap_or_else(|| panic!("prometheus.yml has no job `{job}`"));
        sc.static_configs
            .iter()
            .flat_map(|s| s.targets.clone())
            .collect()
    }
}

/// A Grafana data-source provisioning file.
#[derive(Debug, Deserialize)]
pub struct GrafanaDatasources {
    /// The data sources.
    pub datasources: Vec<GrafanaDatasource>,
}

/// One provisioned data source.
#[derive(Debug, Deserialize)]
pub struct GrafanaDatasource {
    /// Its uid, which dashboards refer to.
    pub uid: String,
    /// `prometheus`, `jaeger`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Where Grafana reaches it.
    pub url: String,
}

/// A Grafana dashboard provisioning file.
#[derive(Debug, Deserialize)]
pub struct GrafanaDashboardProviders {
    /// The providers.
    pub providers: Vec<GrafanaDashboardProvider>,
}

/// One dashboard provider.
#[derive(Debug, Deserialize)]
pub struct GrafanaDashboardProvider {
    /// `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `options.path`.
    pub options: BTreeMap<String, String>,
}

/// The facts of the Dockerfile that other files must agree with.
#[derive(Debug)]
pub struct Dockerfile {
    /// `EXPOSE` ports.
    pub exposed: Vec<u16>,
    /// `ENTRYPOINT` (exec form).
    pub entrypoint: Vec<String>,
    /// `CMD` (exec form).
    pub cmd: Vec<String>,
    /// The last `USER`.
    pub user: Option<String>,
    /// `HEALTHCHECK ... CMD` (exec form).
    pub healthcheck: Vec<String>,
}

impl Dockerfile {
    /// Reads the repository's Dockerfile: instructions joined across `\` line
    /// continuations, exec forms parsed as JSON.
    pub fn load() -> Dockerfile {
        let text = read("Dockerfile").replace("\\\n", " ");
        let mut d = Dockerfile {
            exposed: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            user: None,
            healthcheck: Vec::new(),
        };
        let exec_form = |rest: &str, line: &str| -> Vec<String> {
            serde_json::from_str(rest.trim())
                .unwrap_or_else(|e| panic!("Dockerfile: `{line}`: not the exec (JSON) form: {e}"))
        };
        for line in text.lines().map(str::trim) {
            let Some((instruction, rest)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            match instruction {
                "EXPOSE" => d.exposed.extend(rest.split_whitespace().map(|p| {
                    p.split('/')
                        .next()
                        .unwrap_or_default()
                        .parse::<u16>()
                        .unwrap()
                })),
                "ENTRYPOINT" => d.entrypoint = exec_form(rest, line),
                "CMD" => d.cmd = exec_form(rest, line),
                "USER" => d.user = Some(rest.trim().to_string()),
                "HEALTHCHECK" => {
                    let (_, cmd) = rest
                        .split_once(" CMD ")
                        .unwrap_or_else(|| panic!("Dockerfile: `{line}` has no CMD"));
                    d.healthcheck = exec_form(cmd, line);
                }
                _ => {}
            }
        }
        d
    }
}
