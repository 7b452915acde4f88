//! What a PromQL expression uses, checked against the metric contract
//! (`depprobe_tests::contract`): series names, label names in selectors and
//! groupings, and label values of closed vocabularies (failure classes, findings).
//!
//! Expressions are parsed with `promql-parser`; Grafana's variables are replaced by
//! values of the same type first, so dashboard queries parse like rule expressions.

use std::collections::{BTreeMap, BTreeSet};

use depprobe_tests::contract::{self, Metric};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};

/// Series Prometheus itself produces for every scrape target (not the agent's).
pub const SCRAPE_SERIES: &[&str] = &["up"];

/// One selector of an expression: its series name and matchers.
#[derive(Debug)]
pub struct Selector {
    /// The series name.
    pub name: String,
    /// `(label, op, value)` of each matcher other than the name.
    pub matchers: Vec<(String, MatchOp, String)>,
}

/// What an expression uses.
#[derive(Debug, Default)]
pub struct Uses {
    /// Every vector or range selector.
    pub selectors: Vec<Selector>,
    /// Labels named in `by`, `without`, `on`, `ignoring` and `group_left/right`.
    pub grouping_labels: BTreeSet<String>,
}

struct Collect<'a>(&'a mut Uses, String);

impl Collect<'_> {
    fn selector(&mut self, vs: &VectorSelector) -> Result<(), String> {
        let name = vs
            .name
            .clone()
            .or_else(|| {
                vs.matchers
                    .matchers
                    .iter()
                    .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                    .map(|m| m.value.clone())
            })
            .ok_or_else(|| format!("`{}`: a selector without a metric name", self.1))?;
        let matchers = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name != "__name__")
            .map(|m| (m.name.clone(), m.op.clone(), m.value.clone()))
            .collect();
        self.0.selectors.push(Selector { name, matchers });
        Ok(())
    }

    fn labels(&mut self, modifier: &LabelModifier) {
        self.0
            .grouping_labels
            .extend(modifier.labels().labels.iter().cloned());
    }
}

impl ExprVisitor for Collect<'_> {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs)?,
            Expr::MatrixSelector(ms) => self.selector(&ms.vs)?,
            Expr::Aggregate(a) => {
                if let Some(m) = &a.modifier {
                    self.labels(m);
                }
            }
            Expr::Binary(b) => {
                if let Some(m) = &b.modifier {
                    if let Some(matching) = &m.matching {
                        self.labels(matching);
                    }
                    if let parser::VectorMatchCardinality::ManyToOne(l)
                    | parser::VectorMatchCardinality::OneToMany(l) = &m.card
                    {
                        self.0.grouping_labels.extend(l.labels.iter().cloned());
                    }
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// Parses `expr` and returns what it uses.
pub fn uses(expr: &str) -> Result<Uses, String> {
    let ast = parser::parse(expr).map_err(|e| format!("`{expr}` does not parse: {e}"))?;
    let mut uses = Uses::default();
    walk_expr(&mut Collect(&mut uses, expr.to_string()), &ast)?;
    Ok(uses)
}

/// Replaces Grafana's variables with values PromQL accepts: interval variables with
/// a duration; others only occur inside label values, where they stay as text.
pub fn without_grafana_variables(expr: &str) -> String {
    ["$__rate_interval", "$__interval", "$__range"]
        .iter()
        .fold(expr.to_string(), |e, v| e.replace(v, "5m"))
}

/// Series that recording rules make, by name, with the labels they keep.
pub type Recorded = BTreeMap<String, BTreeSet<String>>;

/// The labels a recording rule's series keeps: the `by` labels of its outermost
/// aggregation; an error for any other shape (its labels could not be known).
pub fn recorded_labels(expr: &str) -> Result<BTreeSet<String>, String> {
    let ast = parser::parse(expr).map_err(|e| format!("`{expr}` does not parse: {e}"))?;
    let Expr::Aggregate(a) = ast else {
        return Err(format!("`{expr}`: record an aggregation `... by (...)`"));
    };
    match &a.modifier {
        Some(LabelModifier::Include(labels)) => Ok(labels.labels.iter().cloned().collect()),
        _ => Err(format!("`{expr}`: record an aggregation `... by (...)`")),
    }
}

/// The metric of a series name in the contract, or `None` for Prometheus' own and
/// recorded series.
fn contract_metric(name: &str, recorded: &Recorded) -> Result<Option<&'static Metric>, String> {
    if SCRAPE_SERIES.contains(&name) || recorded.contains_key(name) {
        return Ok(None);
    }
    contract::metric_of_series(name)
        .map(Some)
        .ok_or_else(|| format!("`{name}` is not a series of the metric contract"))
}

/// Whether `label` is carried by series `name`.
fn carries(name: &str, label: &str, recorded: &Recorded) -> Result<bool, String> {
    if let Some(labels) = recorded.get(name) {
        return Ok(labels.contains(label));
    }
    Ok(match contract_metric(name, recorded)? {
        Some(m) => m.has_label(name, label),
        None => contract::SCRAPE_LABELS.contains(&label),
    })
}

/// Every problem of `expr` against the contract: unknown series, matchers on labels
/// the series does not carry, values outside a label's vocabulary, and grouping
/// labels that no selector of the expression carries. Empty when it conforms.
pub fn contract_problems(expr: &str) -> Vec<String> {
    contract_problems_with(expr, &Recorded::new())
}

/// [`contract_problems`], where the series of `recorded` (recording rules) are
/// known too, with the labels they keep.
pub fn contract_problems_with(expr: &str, recorded: &Recorded) -> Vec<String> {
    let uses = match uses(expr) {
        Ok(u) => u,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for s in &uses.selectors {
        if let Err(e) = contract_metric(&s.name, recorded) {
            problems.push(e);
            continue;
        }
        for (label, op, value) in &s.matchers {
            match carries(&s.name, label, recorded) {
                Ok(true) => {}
                Ok(false) => problems.push(format!("`{}` has no label `{label}`", s.name)),
                Err(e) => problems.push(e),
            }
            if let Some(allowed) = contract::label_values(label) {
                problems.extend(values_outside(label, op, value, &allowed));
            }
        }
    }
    for label in &uses.grouping_labels {
        let known = uses
            .selectors
            .iter()
            .any(|s| carries(&s.name, label, recorded).unwrap_or(false));
        if !known {
            problems.push(format!(
                "`{label}` (in by/on/group_left) is carried by no series of the expression"
            ));
        }
    }
    problems
}

/// The values a matcher names that are outside the label's vocabulary. A regex is
/// checked when it is a plain alternation (`a|b|c`); Grafana variables are skipped.
fn values_outside(label: &str, op: &MatchOp, value: &str, allowed: &[&str]) -> Vec<String> {
    if value.contains('$') {
        return Vec::new();
    }
    let named: Vec<&str> = match op {
        MatchOp::Equal | MatchOp::NotEqual => vec![value],
        MatchOp::Re(_) | MatchOp::NotRe(_) => {
            if !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|' || c == ' ' || c == '.')
            {
                return Vec::new();
            }
            value.split('|').collect()
        }
    };
    named
        .into_iter()
        .filter(|v| !v.is_empty() && !allowed.contains(v))
        .map(|v| format!("`{label}=\"{v}\"`: not a value of `{label}` (one of {allowed:?})"))
        .collect()
}
