//! The OpenMetrics 1.0 rules that span lines: what a family, a metric and a
//! metric point must be, checked while the scrape streams past.
//!
//! [`super::parse`] reads each line on its own; a [`Checker`] is handed every
//! metadata line and sample of an OpenMetrics scrape in order, and keeps only the
//! state the rules need: the current family (its metadata, the current metric and
//! point, a timestamp per series), and a hash per sample name of the families
//! already closed (to see one resume or clash). It is linear in the scrape.
//!
//! A breach is not a parse error: Prometheus ingests such a scrape, so the probe
//! reports it as an `exposition_invalid` finding, or fails on it under
//! `expect.strict`. Which family a sample belongs to follows the specification:
//! the current family's type says which sample names are its own (`_total` and
//! `_created` for a counter, ...); any other name starts a new family of type
//! unknown.

mod kind;
mod points;
mod rule;

pub(crate) use kind::{Kind, Meta, Role};

pub use rule::{Breach, Breaches, MAX_BREACHES_KEPT, Rule};

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::Sample;
use super::lines::Exemplar;
use points::Point;

/// The family being read.
struct Family<'a> {
    name: &'a str,
    kind: Kind,
    /// Lines of its TYPE, UNIT and HELP.
    meta: [Option<usize>; 3],
    unit: &'a str,
    first_sample: Option<usize>,
    last_line: usize,
    /// It resumes a family that already ended (reported once, when it resumed).
    resumed: bool,
    /// The current metric (label set) and its current point.
    metric: Option<(u64, Point)>,
    closed_metrics: HashSet<u64>,
    /// The last timestamp of each series, and its line.
    series: HashMap<u64, (Option<f64>, usize)>,
}

impl<'a> Family<'a> {
    fn new(name: &'a str, kind: Kind, line: usize, resumed: bool) -> Self {
        Family {
            name,
            kind,
            meta: [None; 3],
            unit: "",
            first_sample: None,
            last_line: line,
            resumed,
            metric: None,
            closed_metrics: HashSet::new(),
            series: HashMap::new(),
        }
    }

    /// "the counter `a`".
    fn named(&self) -> String {
        format!("the {} `{}`", self.kind.title(), self.name)
    }
}

/// A family that ended, as later lines may meet it again.
#[derive(Clone, Copy)]
struct Closed<'a> {
    family: &'a str,
    kind: Kind,
    last_line: usize,
}

/// The rules across lines, fed one OpenMetrics line at a time.
#[derive(Default)]
pub(super) struct Checker<'a> {
    family: Option<Family<'a>>,
    /// The sample names of every closed family, hashed.
    closed_samples: HashMap<u64, Closed<'a>>,
    /// The names of every closed family.
    closed_families: HashMap<&'a str, Closed<'a>>,
    breaches: Breaches,
}

impl<'a> Checker<'a> {
    /// A `# TYPE`, `# UNIT` or `# HELP` line for `name`; `kind` for TYPE, `unit`
    /// for UNIT.
    pub(super) fn metadata(
        &mut self,
        line: usize,
        meta: Meta,
        name: &'a str,
        kind: Option<Kind>,
        unit: &'a str,
    ) {
        let same = self.family.as_ref().is_some_and(|f| f.name == name);
        if !same {
            self.close();
            let resumed = self.closed_families.get(name).copied();
            if let Some(closed) = resumed {
                self.breaches.push(
                    line,
                    Rule::FamilyInterleaved,
                    || format!(
                        "`# {} {name}` describes the {} `{name}` again, whose lines ended on line {}: a family's lines must be together",
                        meta.keyword(),
                        closed.kind.title(),
                        closed.last_line
                    ),
                );
            }
            self.family = Some(Family::new(name, Kind::Unknown, line, resumed.is_some()));
        }
        let Some(family) = self.family.as_mut() else {
            return;
        };
        family.last_line = line;
        let slot = meta as usize;
        if let Some(first) = family.first_sample {
            self.breaches.push(
                line,
                Rule::MetadataAfterSamples,
                || format!(
                    "`# {} {name}` comes after the samples of {} (from line {first}): metadata goes first",
                    meta.keyword(),
                    family.named()
                ),
            );
            return;
        }
        if let Some(first) = family.meta[slot] {
            self.breaches.push(
                line,
                Rule::MetadataRepeated,
                || format!(
                    "a second `# {}` for `{name}` (the first is on line {first}): a family has one TYPE, one UNIT and one HELP at most",
                    meta.keyword()
                ),
            );
            return;
        }
        family.meta[slot] = Some(line);
        match meta {
            Meta::Type => family.kind = kind.unwrap_or(Kind::Unknown),
            Meta::Unit => family.unit = unit,
            Meta::Help => {}
        }
    }

    /// A sample, with its exemplar; `series` is the hash of its name and labels.
    pub(super) fn sample(&mut self, sample: &Sample<'a>, exemplar: Option<Exemplar>, series: u64) {
        let line = sample.line;
        let role = match self.family.as_ref() {
            Some(f) => match f.kind.role(f.name, sample.name) {
                Some(role) => Some(role),
                None if f.name == sample.name => {
                    let names: Vec<String> = f
                        .kind
                        .suffixes()
                        .iter()
                        .map(|(s, _)| format!("`{}{s}`", f.name))
                        .collect();
                    self.breaches.push(
                        line,
                        Rule::SampleName,
                        || format!(
                            "`{}` is no sample name of {}: its samples are {}",
                            sample.name,
                            f.named(),
                            names.join(", ")
                        ),
                    );
                    None
                }
                None => {
                    self.start_family_of(sample);
                    self.own_role(sample.name)
                }
            },
            None => {
                self.start_family_of(sample);
                self.own_role(sample.name)
            }
        };
        let Some(family) = self.family.as_mut() else {
            return;
        };
        family.last_line = line;
        family.first_sample.get_or_insert(line);
        timestamps(family, sample, series, &mut self.breaches);
        let Some(role) = role else {
            return;
        };
        let le = points::check_sample(family.kind, role, family.name, sample, &mut self.breaches);
        if let Some(exemplar) = exemplar {
            points::check_exemplar(family.kind, role, family.name, sample, le, exemplar, &mut self.breaches);
        }
        group(family, role, sample, le, &mut self.breaches);
    }

    /// The role of a sample in the family it has just started.
    fn own_role(&self, sample: &str) -> Option<Role> {
        let f = self.family.as_ref()?;
        f.kind.role(f.name, sample)
    }

    /// A sample that is not the current family's starts a family: the one it
    /// resumes, when a closed family has its name, or a new one of type unknown.
    fn start_family_of(&mut self, sample: &Sample<'a>) {
        self.close();
        let line = sample.line;
        let family = match self.closed_samples.get(&name_hash(sample.name, "")).copied() {
            Some(closed) => {
                self.breaches.push(
                    line,
                    Rule::FamilyInterleaved,
                    || format!(
                        "`{}` belongs to the {} `{}`, whose lines ended on line {}: a family's lines must be together",
                        sample.name,
                        closed.kind.title(),
                        closed.family,
                        closed.last_line
                    ),
                );
                Family::new(closed.family, closed.kind, line, true)
            }
            None => Family::new(sample.name, Kind::Unknown, line, false),
        };
        self.family = Some(family);
    }

    /// Ends the current family: its last point, its unit, its names.
    fn close(&mut self) {
        let Some(mut family) = self.family.take() else {
            return;
        };
        if let Some((_, point)) = family.metric.take() {
            point.close(family.name, &mut self.breaches);
        }
        if let (Some(line), true) = (
            family.meta[Meta::Unit as usize],
            !family.unit.is_empty() && matches!(family.kind, Kind::Info | Kind::StateSet),
        ) {
            self.breaches.push(
                line,
                Rule::UnitNotAllowed,
                || format!(
                    "{} has the unit `{}`: info and state set families have none",
                    family.named(),
                    family.unit
                ),
            );
        }
        let closed = Closed {
            family: family.name,
            kind: family.kind,
            last_line: family.last_line,
        };
        if !family.resumed {
            let mut clashed = false;
            for (suffix, _) in family.kind.suffixes() {
                let key = name_hash(family.name, suffix);
                match self.closed_samples.get(&key) {
                    Some(other) if other.family != family.name => {
                        if !clashed {
                            clashed = true;
                            self.breaches.push(
                                family.meta.iter().flatten().copied().min().unwrap_or(family.last_line),
                                Rule::NameClash,
                                || format!(
                                    "`{}{suffix}` is a sample name of both {} and the {} `{}` (line {}): family names must not collide with another family's samples",
                                    family.name,
                                    family.named(),
                                    other.kind.title(),
                                    other.family,
                                    other.last_line
                                ),
                            );
                        }
                    }
                    _ => {
                        self.closed_samples.insert(key, closed);
                    }
                }
            }
        }
        self.closed_families.insert(family.name, closed);
    }

    /// The breaches, once the whole scrape was read.
    pub(super) fn finish(mut self) -> Breaches {
        self.close();
        self.breaches.sort();
        self.breaches
    }
}

/// A sample name as its family's name and a suffix, hashed as one string.
fn name_hash(name: &str, suffix: &str) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(name.as_bytes());
    h.write(suffix.as_bytes());
    h.finish()
}

/// A series seen again must carry a timestamp each time, never going back.
fn timestamps(family: &mut Family<'_>, sample: &Sample<'_>, series: u64, breaches: &mut Breaches) {
    let now = (sample.timestamp, sample.line);
    let Some((before, line)) = family.series.insert(series, now) else {
        return;
    };
    match (before, sample.timestamp) {
        (Some(b), Some(t)) if t < b => breaches.push(sample.line, Rule::TimestampOrder, || {
            format!(
                "the timestamp of `{}` goes back from {} (line {line}) to {}",
                sample.series(),
                points::number(b),
                points::number(t)
            )
        }),
        (Some(_), Some(_)) => {}
        _ => breaches.push(sample.line, Rule::TimestampOrder, || {
            format!(
                "`{}` repeats (line {line}) without a timestamp on each: the points of a series carry increasing timestamps",
                sample.series()
            )
        }),
    }
}

/// Groups samples into metrics (label sets less `le`, `quantile`, or a state set's
/// own label) and points (a metric's samples with one timestamp); a metric that
/// resumes after another is interleaved.
fn group(family: &mut Family<'_>, role: Role, sample: &Sample<'_>, le: Option<f64>, breaches: &mut Breaches) {
    let skip = match role {
        Role::Bucket => Some("le"),
        Role::Quantile => Some("quantile"),
        Role::Value if family.kind == Kind::StateSet => Some(family.name),
        _ => None,
    };
    let key = metric_key(sample, skip);
    let same_metric = family.metric.as_ref().is_some_and(|(k, _)| *k == key);
    if !same_metric {
        if let Some((old, point)) = family.metric.take() {
            point.close(family.name, breaches);
            family.closed_metrics.insert(old);
        }
        if family.closed_metrics.contains(&key) {
            breaches.push(
                sample.line,
                Rule::MetricInterleaved,
                || format!(
                    "`{}` resumes a metric of {} after another one: a metric's samples must be together",
                    sample.series(),
                    family.named()
                ),
            );
        }
        family.metric = Some((key, Point::new(family.kind, sample.timestamp, sample.line)));
    }
    let Some((_, point)) = family.metric.as_mut() else {
        return;
    };
    if !point.holds(sample.timestamp) {
        let next = Point::new(family.kind, sample.timestamp, sample.line);
        std::mem::replace(point, next).close(family.name, breaches);
    }
    point.add(role,
        le,
        sample.value,
        sample.line,
        family.name,
        breaches,
    );
}

/// A hash of the sample's labels but `skip`, in name order.
fn metric_key(sample: &Sample<'_>, skip: Option<&str>) -> u64 {
    let mut labels: Vec<(&str, &str)> = sample
        .labels
        .iter()
        .filter(|(l, _)| Some(*l) != skip)
        .map(|(l, v)| (*l, v.as_ref()))
        .collect();
    labels.sort_unstable();
    let mut h = DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
