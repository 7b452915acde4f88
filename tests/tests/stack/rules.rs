//! The alert rules: promtool's checks and unit tests, a unit test where each alert
//! fires and one where it does not, and rules that select only the agent's own
//! scrape job and the series of the metric contract.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::files::{Compose, PrometheusConfig, yaml};
use crate::{PROMETHEUS_DIR, load_agent_config, promql, promtool};

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
    #[serde(default)]
    record: Option<String>,
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

fn all_rules() -> Vec<Rule> {
    let file: RuleFile = yaml(&format!("{PROMETHEUS_DIR}/alerts.yml"));
    file.groups.into_iter().flat_map(|g| g.rules).collect()
}

fn alert_rules() -> Vec<Rule> {
    all_rules()
        .into_iter()
        .filter(|r| r.alert.is_some())
        .collect()
}

/// The series the recording rules make, with the labels each keeps.
fn recorded() -> promql::Recorded {
    all_rules()
        .into_iter()
        .filter_map(|r| {
            let name = r.record?;
            let labels = promql::recorded_labels(&r.expr).unwrap_or_else(|e| panic!("{name}: {e}"));
            Some((name, labels))
        })
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
    let recorded = recorded();
    for rule in all_rules() {
        let name = rule
            .alert
            .as_deref()
            .or(rule.record.as_deref())
            .unwrap_or_default();
        for p in promql::contract_problems_with(&rule.expr, &recorded) {
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
        if rule.alert.is_none() {
            continue;
        }
        let severity = rule.labels.get("severity").map(String::as_str);
        // From the series: its own `severity`, or the finding's severity put in the
        // alert's `severity` label by a template.
        let severity_from_series = uses.grouping_labels.contains("severity")
            || (severity == Some("{{ $labels.probe_finding_severity }}")
                && uses.grouping_labels.contains("probe_finding_severity"));
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

#[derive(Deserialize)]
struct VantageCase {
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertRuleTest>,
}

#[derive(Deserialize)]
struct InputSeries {
    series: String,
}

#[derive(Deserialize)]
struct VantageTests {
    tests: Vec<VantageCase>,
}

/// The place a `target_info{...}` input series names: its node, else its host.
fn place_of(series: &str) -> Option<String> {
    let labels = series.strip_prefix("target_info{")?;
    let value = |key: &str| {
        let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
        labels[start..].split('"').next().map(str::to_owned)
    };
    value("k8s_node_name").or_else(|| value("host_name"))
}

#[test]
fn down_from_one_place_warns_and_down_from_two_places_is_critical() {
    let rules = alert_rules();
    let severity = |alert: &str| {
        rules
            .iter()
            .find(|r| r.alert.as_deref() == Some(alert))
            .unwrap_or_else(|| panic!("no alert {alert}"))
            .labels
            .get("severity")
            .cloned()
    };
    assert_eq!(severity("DepprobeProbeDown").as_deref(), Some("critical"));
    assert_eq!(
        severity("DepprobeProbeDownLocally").as_deref(),
        Some("warning")
    );
    // promtool runs the cases; here: one case puts agents in several places and
    // expects both alerts from them, so the quorum is tested, not only parsed.
    let tests: VantageTests = yaml(&format!("{PROMETHEUS_DIR}/alerts_test.yml"));
    let tested = tests.tests.iter().any(|case| {
        let places: BTreeSet<String> = case
            .input_series
            .iter()
            .filter_map(|s| place_of(&s.series))
            .collect();
        let fires = |alert: &str| {
            case.alert_rule_test
                .iter()
                .any(|t| t.alertname == alert && !t.exp_alerts.is_empty())
        };
        places.len() >= 3 && fires("DepprobeProbeDown") && fires("DepprobeProbeDownLocally")
    });
    assert!(
        tested,
        "alerts_test.yml: no case with agents in three places where both \
         DepprobeProbeDown and DepprobeProbeDownLocally fire"
    );
}
