//! From the located tree to the typed configuration: the sections, `defaults`
//! merged into each probe, each probe's keys checked against its kind, and every
//! problem collected with its position.

use std::collections::{BTreeSet, HashMap};

use crate::error::Errors;
use crate::kind::{self as kinds, Check, Kind, KindEntry, ProbeSpec};
use crate::model::{self, AgentConfig, CommonKeys, Config, ProbeConfig, TelemetryConfig};
use crate::tree::{Entry, Loc, Node, Value};
use crate::{de, suggest};

const TOP_KEYS: &[&str] = &["agent", "telemetry", "defaults", "probes"];

pub(crate) fn build(
    root: &Node,
    file: &str,
    kinds: &[KindEntry],
    errors: &mut Errors,
) -> Option<Config> {
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
        check_agent(root, a, errors);
    }

    let defaults = root.get("defaults");
    if let Some(d) = defaults {
        check_defaults(d, kinds, errors);
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
                .filter_map(|(i, n)| probe(n, i, defaults, &agent_defaults, kinds, errors))
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

/// Checks of the `agent` section that its types cannot express.
fn check_agent(root: &Node, a: &AgentConfig, errors: &mut Errors) {
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

fn check_defaults(defaults: &Node, kinds: &[KindEntry], errors: &mut Errors) {
    let Some(entries) = defaults.as_map() else {
        errors.push(defaults.loc, "defaults", "expected a mapping of probe keys");
        return;
    };
    let mut allowed: BTreeSet<&str> = common_fields().iter().copied().collect();
    allowed.remove("name");
    allowed.remove("kind");
    for k in kinds {
        allowed.extend((k.fields)().iter().copied());
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
    kinds: &[KindEntry],
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
    let entry = kind_of(node, &path, kinds, errors)?;
    let own = (entry.fields)();
    let common = common_fields();
    let merged = with_defaults(node, defaults, own, common);

    let valid: Vec<&str> = common.iter().chain(own.iter()).copied().collect();
    let elsewhere: Vec<(&str, Kind)> = kinds
        .iter()
        .filter(|k| k.kind != entry.kind)
        .flat_map(|k| (k.fields)().iter().map(move |f| (*f, k.kind)))
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
    check_common(node, &path, &keys, errors);
    let settings = (entry.parse)(&mut Check::new(&kind_node, &path, errors))?;
    Some(ProbeConfig {
        name: keys.name,
        interval: keys.interval.unwrap_or(agent.interval),
        timeout: keys.timeout.unwrap_or(agent.timeout),
        latency_budget: keys.latency_budget,
        propagate_trace: keys.propagate_trace.unwrap_or(true),
        tracestate: keys.tracestate,
        spec: ProbeSpec::new(entry.kind, settings),
    })
}

/// The kind named by the probe's `kind` key, or an error naming the kinds there are.
fn kind_of<'k>(
    node: &Node,
    path: &str,
    kinds: &'k [KindEntry],
    errors: &mut Errors,
) -> Option<&'k KindEntry> {
    let Some(k) = node.get("kind") else {
        errors.push(node.loc, path, "missing required key `kind`");
        return None;
    };
    if let Some(entry) = k.as_str().and_then(|name| KindEntry::find(kinds, name)) {
        return Some(entry);
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
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
    None
}

/// The probe mapping with the `defaults` that apply to its kind merged in.
fn with_defaults(node: &Node, defaults: Option<&Node>, own: &[&str], common: &[&str]) -> Node {
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
    merged
}

/// Checks of the keys every probe has: budget phases, the name, non-zero durations.
fn check_common(node: &Node, path: &str, keys: &CommonKeys, errors: &mut Errors) {
    if let Some(state) = &keys.tracestate
        && (state.len() > 512
            || state.is_empty()
            || !state.chars().all(|c| c.is_ascii_graphic() || c == ' ')
            || !state
                .split(',')
                .all(|m| m.trim().is_empty() || m.contains('=')))
    {
        errors.push(
            kinds::locate(node, "tracestate"),
            format!("{path}.tracestate"),
            "a W3C tracestate is `key=value` pairs separated by commas, printable ASCII, at most 512 characters",
        );
    }
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
