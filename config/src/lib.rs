//! depprobe's configuration: the YAML schema, defaults, `${ENV}` interpolation and
//! validation whose every error names file, line, column and key path.
//!
//! Loading goes text -> located tree ([`tree`]) -> `defaults` merged into each probe
//! -> typed structs ([`model`], [`kinds`]) -> checks. Nothing here knows how a probe
//! runs; the `depprobe-probes` crate turns a [`ProbeConfig`] into a running probe.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

pub mod de;
pub mod duration;
pub mod error;
pub mod kinds;
pub mod model;
pub mod secret;
pub mod suggest;
pub mod tree;

pub use duration::ConfigDuration;
pub use error::{ConfigError, ConfigErrors, LoadError};
pub use kinds::{Kind, ProbeSpec};
pub use model::{
    AgentConfig, Config, OtlpCompression, OtlpConfig, OtlpProtocol, ProbeConfig, TelemetryConfig,
    TlsSpec,
};
pub use secret::{Secret, SecretError, SecretSource};

use error::Errors;
use model::CommonKeys;
use tree::{Entry, Loc, Node, Value};

const TOP_KEYS: &[&str] = &["agent", "telemetry", "defaults", "probes"];

/// Reads and checks the configuration file at `path`, interpolating from the
/// process environment.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let env: HashMap<String, String> = std::env::vars().collect();
    parse_str(&text, &path.display().to_string(), &env).map_err(LoadError::Invalid)
}

/// Checks configuration `text` read from `file` (used in messages), interpolating
/// `${VAR}` from `env`.
pub fn parse_str(
    text: &str,
    file: &str,
    env: &HashMap<String, String>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::new(file);
    for (loc, name) in tree::unset_references(text, env) {
        errors.push(
            loc,
            "",
            format!("environment variable `{name}` is not set (write ${{{name}:-default}} for a default)"),
        );
    }
    if !errors.list.is_empty() {
        return Err(ConfigErrors(errors.list));
    }
    let root = match tree::parse(text, env) {
        Ok(root) => root,
        Err(e) => {
            let loc = e
                .location()
                .map(|l| Loc {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or_default();
            errors.push(loc, "", yaml_message(&e));
            return Err(ConfigErrors(errors.list));
        }
    };
    let config = build(&root, file, &mut errors);
    match config {
        Some(c) if errors.list.is_empty() => Ok(c),
        _ => {
            errors.list.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(errors.list))
        }
    }
}

/// serde-saphyr's message without the snippet and the position (we print our own).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    format!("invalid YAML: {text}")
}

fn build(root: &Node, file: &str, errors: &mut Errors) -> Option<Config> {
    let empty = Node::synthetic(Value::Map(Vec::new()), Loc { line: 1, column: 1 });
    let root = match root.value {
        Value::Null => &empty,
        Value::Map(_) => root,
        _ => {
            errors.push(
                root.loc,
                "",
                "the configuration must be a mapping with a `probes` list",
            );
            return None;
        }
    };
    unknown_keys(root, "", TOP_KEYS, &[], errors);

    let agent = section::<AgentConfig>(root, "agent", errors);
    let telemetry = section::<TelemetryConfig>(root, "telemetry", errors);
    if let Some(a) = &agent {
        if a.concurrency == 0 {
            errors.push(
                kinds::locate(root, "agent.concurrency"),
                "agent.concurrency",
                "must be at least 1",
            );
        }
        if a.interval.0.is_zero() {
            errors.push(
                kinds::locate(root, "agent.interval"),
                "agent.interval",
                "must be more than 0s",
            );
        }
        if a.timeout.0.is_zero() {
            errors.push(
                kinds::locate(root, "agent.timeout"),
                "agent.timeout",
                "must be more than 0s",
            );
        }
    }

    let defaults = root.get("defaults");
    if let Some(d) = defaults {
        check_defaults(d, errors);
    }

    let probes = match root.get("probes") {
        None => {
            errors.push(
                root.loc,
                "probes",
                "missing required key `probes` (a list of probes)",
            );
            Vec::new()
        }
        Some(Node {
            value: Value::Seq(items),
            ..
        }) => {
            let agent_defaults = agent.clone().unwrap_or_default();
            items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| probe(n, i, defaults, &agent_defaults, errors))
                .collect()
        }
        Some(other) => {
            errors.push(
                other.loc,
                "probes",
                format!("expected a list of probes, found {}", other.type_name()),
            );
            Vec::new()
        }
    };
    duplicate_names(root, errors);

    Some(Config {
        source: file.to_owned(),
        agent: agent?,
        telemetry: telemetry?,
        probes,
    })
}

fn section<T: for<'de> serde::Deserialize<'de> + Default>(
    root: &Node,
    key: &str,
    errors: &mut Errors,
) -> Option<T> {
    match root.get(key) {
        None
        | Some(Node {
            value: Value::Null, ..
        }) => Some(T::default()),
        Some(node) => match de::from_node::<T>(node, key) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push_de(e, node.loc, key);
                None
            }
        },
    }
}

/// Keys a probe may carry whatever its kind.
fn common_fields() -> &'static [&'static str] {
    kinds::fields_of::<CommonKeys>()
}

fn check_defaults(defaults: &Node, errors: &mut Errors) {
    let Some(entries) = defaults.as_map() else {
        errors.push(defaults.loc, "defaults", "expected a mapping of probe keys");
        return;
    };
    let mut allowed: BTreeSet<&str> = common_fields().iter().copied().collect();
    allowed.remove("name");
    allowed.remove("kind");
    for k in Kind::ALL {
        allowed.extend(kinds::kind_fields(*k).iter().copied());
    }
    let allowed: Vec<&str> = allowed.into_iter().collect();
    for entry in entries {
        if matches!(entry.key.as_str(), "expect" | "steps") {
            errors.push(
                entry.key_loc,
                format!("defaults.{}", entry.key),
                format!(
                    "`{}` means something different for each kind; set it on each probe",
                    entry.key
                ),
            );
            continue;
        }
        if !allowed.contains(&entry.key.as_str()) {
            errors.push(
                entry.key_loc,
                format!("defaults.{}", entry.key),
                de::unknown_key_message(&entry.key, &allowed),
            );
        }
    }
}

/// Reports keys of `node` that are not in `valid`; `elsewhere` are keys valid for
/// another kind, reported as such.
fn unknown_keys(
    node: &Node,
    path: &str,
    valid: &[&str],
    elsewhere: &[(&str, Kind)],
    errors: &mut Errors,
) {
    let Some(entries) = node.as_map() else { return };
    for Entry { key, key_loc, .. } in entries {
        if valid.contains(&key.as_str()) {
            continue;
        }
        let full = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let message = match elsewhere.iter().find(|(k, _)| k == key) {
            Some((_, other))
                if !valid
                    .iter()
                    .any(|v| strsim::damerau_levenshtein(v, key) <= 1) =>
            {
                format!("key `{key}` belongs to kind `{other}`, not to this probe's kind")
            }
            _ => de::unknown_key_message(key, valid),
        };
        errors.push(*key_loc, full, message);
    }
}

fn probe(
    node: &Node,
    index: usize,
    defaults: Option<&Node>,
    agent: &AgentConfig,
    errors: &mut Errors,
) -> Option<ProbeConfig> {
    let path = format!("probes[{index}]");
    if node.as_map().is_none() {
        errors.push(
            node.loc,
            path,
            format!(
                "expected a probe (a mapping with `name` and `kind`), found {}",
                node.type_name()
            ),
        );
        return None;
    }
    let kind = match node.get("kind") {
        None => {
            errors.push(node.loc, &path, "missing required key `kind`");
            return None;
        }
        Some(k) => match k.as_str().and_then(Kind::from_name) {
            Some(kind) => kind,
            None => {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                let given = k.as_str().unwrap_or("");
                let hint = match suggest::nearest(given, &names) {
                    Some(n) => format!("; did you mean `{n}`?"),
                    None => String::new(),
                };
                errors.push(
                    k.loc,
                    format!("{path}.kind"),
                    format!("unknown kind `{given}`{hint} (kinds: {})", names.join(", ")),
                );
                return None;
            }
        },
    };

    let own = kinds::kind_fields(kind);
    let common = common_fields();
    let mut merged = node.clone();
    if let Some(d) = defaults {
        let applicable: Vec<Entry> = d
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter(|e| {
                own.contains(&e.key.as_str())
                    || (common.contains(&e.key.as_str()) && e.key != "name" && e.key != "kind")
            })
            .cloned()
            .collect();
        merged.merge_defaults(&Node::synthetic(Value::Map(applicable), d.loc));
    }

    let valid: Vec<&str> = common.iter().chain(own.iter()).copied().collect();
    let elsewhere: Vec<(&str, Kind)> = Kind::ALL
        .iter()
        .filter(|k| **k != kind)
        .flat_map(|k| kinds::kind_fields(*k).iter().map(move |f| (*f, *k)))
        .collect();
    let before = errors.list.len();
    unknown_keys(node, &path, &valid, &elsewhere, errors);
    if errors.list.len() > before {
        return None;
    }

    let (common_node, kind_node) = split(&merged, common);
    let keys = match de::from_node::<CommonKeys>(&common_node, &path) {
        Ok(k) => k,
        Err(e) => {
            errors.push_de(e, node.loc, &path);
            return None;
        }
    };
    for phase in keys.latency_budget.keys() {
        if !model::BUDGET_PHASES.contains(&phase.as_str()) {
            errors.push(
                kinds::locate(node, &format!("latency_budget.{phase}")),
                format!("{path}.latency_budget.{phase}"),
                format!(
                    "unknown phase `{phase}` (phases: {})",
                    model::BUDGET_PHASES.join(", ")
                ),
            );
        }
    }
    if keys.name.trim().is_empty() || keys.name.chars().any(char::is_control) {
        errors.push(
            kinds::locate(node, "name"),
            format!("{path}.name"),
            "a probe name must be non-empty printable text",
        );
    }
    for (key, value) in [("interval", keys.interval), ("timeout", keys.timeout)] {
        if value.is_some_and(|d| d.0.is_zero()) {
            errors.push(
                kinds::locate(node, key),
                format!("{path}.{key}"),
                "must be more than 0s",
            );
        }
    }
    let spec = kinds::parse_spec(kind, &kind_node, &path, errors)?;
    Some(ProbeConfig {
        name: keys.name,
        interval: keys.interval.unwrap_or(agent.interval),
        timeout: keys.timeout.unwrap_or(agent.timeout),
        latency_budget: keys.latency_budget,
        spec,
    })
}

/// Splits a probe mapping into its common keys and its kind's keys.
fn split(node: &Node, common: &[&str]) -> (Node, Node) {
    let entries = node.as_map().unwrap_or(&[]);
    let (c, k): (Vec<Entry>, Vec<Entry>) = entries
        .iter()
        .cloned()
        .partition(|e| common.contains(&e.key.as_str()));
    (
        Node::synthetic(Value::Map(c), node.loc),
        Node::synthetic(Value::Map(k), node.loc),
    )
}

fn duplicate_names(root: &Node, errors: &mut Errors) {
    let Some(Value::Seq(items)) = root.get("probes").map(|n| &n.value) else {
        return;
    };
    let mut first_seen: HashMap<&str, Loc> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let Some(name) = item.get("name").and_then(Node::as_str) else {
            continue;
        };
        let loc = kinds::locate(item, "name");
        match first_seen.get(name) {
            Some(first) => errors.push(
                loc,
                format!("probes[{i}].name"),
                format!(
                    "duplicate probe name `{name}` (first used on line {})",
                    first.line
                ),
            ),
            None => {
                first_seen.insert(name, loc);
            }
        }
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6) into its parts.
pub fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(':') && !address.starts_with('[') {
        return None;
    }
    Some((host.to_owned(), port))
}

impl Config {
    /// Every secret written in the configuration (after interpolation), so that
    /// outputs can be scrubbed of them. Secrets read from files are added by the
    /// probes that read them.
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self
            .telemetry
            .otlp
            .iter()
            .flat_map(|o| o.headers.values().cloned())
            .collect();
        for p in &self.probes {
            out.extend(p.spec.inline_secrets());
        }
        out
    }
}
