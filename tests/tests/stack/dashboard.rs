//! The Grafana dashboard: its queries use only the metric contract and provisioned
//! data sources, and it shows the views a person opens it for.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::files::{GrafanaDatasources, repo, yaml};
use crate::{DASHBOARDS_DIR, DATASOURCES, promql};

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

/// Fails unless the depprobe dashboard has, for each view, a panel whose title
/// starts with the view's title and that queries its series by its label.
fn assert_views(views: &[(&str, &str, &str)]) {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(_, d)| d.uid == "depprobe")
        .expect("the depprobe dashboard (uid depprobe)");
    for &(title, series, by) in views {
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

#[test]
fn dashboard_shows_each_target_from_each_vantage_point() {
    // The agent's place comes from target_info; a target is broken down by node
    // (and region, cluster, host), and the places that see it down are counted.
    assert_views(&[
        ("Status per vantage point", "target_info", "k8s_node_name"),
        ("Status per vantage point", "probe_success", "probe_name"),
        (
            "Places that see a target down",
            "target_info",
            "cloud_region",
        ),
    ]);
}

#[test]
fn dashboard_shows_status_failure_classes_certificate_days_and_phase_latency() {
    // Each view: a panel title a person looks for, a series it must query, and a
    // label it must break the series down by.
    assert_views(&[
        ("Status per target", "probe_status", "probe_name"),
        (
            "Failure classes over time",
            "probe_error_info",
            "error_type",
        ),
        (
            "Days left per certificate",
            "probe_tls_cert_time_left_seconds",
            "probe_tls_cert_position",
        ),
        (
            "Latency per phase",
            "probe_phase_duration_seconds",
            "probe_phase",
        ),
    ]);
}
