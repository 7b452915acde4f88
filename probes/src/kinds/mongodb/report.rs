//! What a run reports from the watch: the topology as details, the samples of the
//! kind's metric families (members by state, elections, replication lag), and the
//! findings: members unreachable with their class, `elections`, `election_storm`
//! (counted by term, see [`super::elections`]), `replication_lag`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use depprobe_config::split_host_port;

use super::replication::{REPLICATION_LAG_METRIC, lag_finding};
use super::watch::{MemberState, PrimaryChange, TopologyView};
use crate::declared::{Instrument, MetricDecl, Number, Sample};
use crate::outcome::{Finding, Severity, rfc3339};
use crate::run::{ProbeError, Run, humanize};
use crate::taxonomy::ErrorType;

/// `probe.mongodb.members`: replica-set members by state.
pub(super) static MEMBERS: MetricDecl = MetricDecl {
    name: "probe.mongodb.members",
    unit: Some("{member}"),
    description: "Replica-set members by state.",
    instrument: Instrument::Gauge,
    number: Number::U64,
    until_now: false,
};

/// `probe.mongodb.primary_changes`: primary changes seen by the watch.
pub(super) static PRIMARY_CHANGES: MetricDecl = MetricDecl {
    name: "probe.mongodb.primary_changes",
    unit: Some("{election}"),
    description: "Elections counted by the replica-set watch (by term; observed primary changes where no term is stated).",
    instrument: Instrument::Counter,
    number: Number::U64,
    until_now: false,
};

/// Most election records listed in `details.primary_changes`.
const CHANGES_LISTED: usize = 20;

/// Most members listed in `details.replication_lag_s` (a set has at most 50).
const LAGS_LISTED: usize = 50;

/// Detail key (`{member: seconds}`) of each secondary's replication lag (also the
/// samples of `probe.mongodb.replication_lag`, attribute `member.address`).
pub const REPLICATION_LAG_DETAIL: &str = "replication_lag_s";

/// When elections and lag become findings.
pub(super) struct ElectionRules {
    /// Elections are counted over this window.
    pub window: Duration,
    /// This many in the window is a storm.
    pub threshold: u32,
    /// A secondary this far behind the primary is a `replication_lag` finding.
    pub lag_warn: Duration,
}

/// What the probe's own dial of the members found this run.
#[derive(Default)]
pub(super) struct Dialled {
    /// Members it could not reach, with why.
    pub unreachable: Vec<(String, ProbeError)>,
    /// How long the TCP connect to each reachable member took: one network round trip.
    pub connect: Vec<(String, Duration)>,
}

/// One member as reported.
struct MemberRow {
    address: String,
    state: MemberState,
    rtt: Option<Duration>,
    error: Option<(ErrorType, String)>,
}

/// Fills the outcome's details and findings from the watch's `view` and the
/// members the probe's own dial could not reach. When the run `failed`, its
/// message already names the members' problems: they are not repeated as
/// findings (the details still list them).
pub(super) fn describe(
    run: &mut Run<'_>,
    view: &TopologyView,
    dialled: &Dialled,
    rules: &ElectionRules,
    failed: bool,
) {
    let now = Instant::now();
    let names = Names::of(view, &dialled.unreachable);
    let members = member_rows(view, dialled);
    let down = unreachable_members(run, &members, &names, failed);
    let recent = view.changes_within(rules.window, now);
    if let Some(f) = election_finding(view, &recent, &down, &names, rules, now) {
        run.findings.push(f);
    }
    let lags = view.replication_lags();
    for (member, lag) in &lags {
        if *lag > rules.lag_warn && !failed {
            run.findings.push(lag_finding(
                &names.get(member),
                member,
                *lag,
                rules.lag_warn,
            ));
        }
    }
    topology_details(run, view, &members);
    election_details(run, view, &recent, rules);
    lag_details(run, &lags);
}

/// "X unreachable (class)" for every member that did not answer, each also a
/// `member_unreachable` finding unless the run `failed` (its message names them).
fn unreachable_members(
    run: &mut Run<'_>,
    members: &[MemberRow],
    names: &Names,
    failed: bool,
) -> Vec<String> {
    let mut down: Vec<String> = Vec::new();
    for m in members {
        // A refused login marks the member unknown to the driver, but the member
        // answered: the run's own class says it, not an "unreachable" finding.
        if let Some((class, message)) = &m.error
            && *class != ErrorType::AuthRejected
        {
            let name = names.get(&m.address);
            down.push(format!("{name} unreachable ({class})"));
            if failed {
                continue;
            }
            run.findings.push(
                Finding::new(
                    super::MEMBER_UNREACHABLE,
                    Severity::Warning,
                    format!("member {name} unreachable ({class}): {message}"),
                )
                .with("member", m.address.as_str())
                .with("error_type", class.as_str()),
            );
        }
    }
    down
}

/// The set, its members and their states: details, and the members gauge.
fn topology_details(run: &mut Run<'_>, view: &TopologyView, members: &[MemberRow]) {
    let d = &mut run.details;
    d.insert("replica_set".into(), json!(view.set_name));
    d.insert("topology_type".into(), json!(view.topology_type));
    d.insert("primary".into(), json!(view.primary));
    d.insert(
        "members".into(),
        members
            .iter()
            .map(|m| {
                json!({
                    "address": m.address,
                    "state": m.state.as_str(),
                    "rtt_ms": m.rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
                    "error_type": m.error.as_ref().map(|(c, _)| c.as_str()),
                    "error": m.error.as_ref().map(|(_, text)| text.as_str()),
                })
            })
            .collect(),
    );
    let by_state: serde_json::Map<String, Value> = MemberState::ALL
        .iter()
        .map(|s| {
            let n = members.iter().filter(|m| m.state == *s).count();
            (s.as_str().to_owned(), json!(n))
        })
        .collect();
    d.insert("members_by_state".into(), Value::Object(by_state));
    for state in MemberState::ALL {
        let n = members.iter().filter(|m| m.state == *state).count();
        run.samples
            .push(Sample::new(&MEMBERS, n as f64).with("probe.mongodb.member.state", state.as_str()));
    }
}

/// The elections: counts, term, the recent changes, and the counter.
fn election_details(
    run: &mut Run<'_>,
    view: &TopologyView,
    recent: &[&PrimaryChange],
    rules: &ElectionRules,
) {
    run.samples.push(Sample::new(
        &PRIMARY_CHANGES,
        view.primary_changes_total as f64,
    ));
    let d = &mut run.details;
    d.insert(
        "primary_changes_total".into(),
        json!(view.primary_changes_total),
    );
    d.insert("primary_changes_in_window".into(), json!(count(recent)));
    d.insert("elections_window_s".into(), json!(rules.window.as_secs()));
    d.insert("term".into(), json!(view.term));
    d.insert("elections_counted_by".into(), json!(counted_by(view)));
    d.insert(
        "primary_changes".into(),
        recent
            .iter()
            .rev()
            .take(CHANGES_LISTED)
            .rev()
            .map(|c| {
                json!({
                    "at": rfc3339(c.at),
                    "from": c.from,
                    "to": c.to,
                    "elections": c.elections,
                    "previous_term": c.previous_term,
                    "term": c.term,
                    "election_id": c.election_id,
                    "set_version": c.set_version,
                })
            })
            .collect(),
    );
    if let Some(at) = view.primary_lost_at {
        d.insert("primary_lost_at".into(), json!(rfc3339(at)));
    }
}

/// Each secondary's lag: a detail map and the lag gauge.
fn lag_details(run: &mut Run<'_>, lags: &[(String, Duration)]) {
    let lag_map: serde_json::Map<String, Value> = lags
        .iter()
        .take(LAGS_LISTED)
        .map(|(m, lag)| (m.clone(), json!((lag.as_secs_f64() * 1e3).round() / 1e3)))
        .collect();
    run.details
        .insert(REPLICATION_LAG_DETAIL.into(), Value::Object(lag_map));
    for (member, lag) in lags.iter().take(LAGS_LISTED) {
        run.samples.push(
            Sample::new(&REPLICATION_LAG_METRIC, lag.as_secs_f64())
                .with("probe.mongodb.member.address", member.as_str()),
        );
    }
}

/// The driver's members, with the probe's own dial failures (more precise: they
/// say whether TCP or TLS failed) taking precedence, and members only the dial
/// knows of. The round trip is this run's TCP connect time when the member was
/// dialled; the driver's own average only changes in its events when the member's
/// description changes, so it is the fallback.
fn member_rows(view: &TopologyView, dialled: &Dialled) -> Vec<MemberRow> {
    let unreachable = &dialled.unreachable;
    let mut rows: Vec<MemberRow> = view
        .members
        .values()
        .map(|m| {
            let dial = unreachable.iter().find(|(a, _)| *a == m.address);
            let error = match (dial, &m.error) {
                (Some((_, e)), _) => Some((e.class, e.message.clone())),
                (None, Some(e)) => Some((e.class, e.message.clone())),
                (None, None) => None,
            };
            let connect = dialled
                .connect
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(&m.address))
                .map(|(_, d)| *d);
            MemberRow {
                address: m.address.clone(),
                state: m.state,
                rtt: connect.or(m.rtt),
                error,
            }
        })
        .collect();
    for (address, e) in unreachable {
        if !view.members.contains_key(address) {
            rows.push(MemberRow {
                address: address.clone(),
                state: MemberState::Unknown,
                rtt: None,
                error: Some((e.class, e.message.clone())),
            });
        }
    }
    rows
}

/// Elections in `recent`.
fn count(recent: &[&PrimaryChange]) -> u64 {
    recent
        .iter()
        .fold(0u64, |n, c| n.saturating_add(c.elections))
}

/// `term` once any member stated a term, else `observed`.
fn counted_by(view: &TopologyView) -> &'static str {
    if view.term.is_some() {
        "term"
    } else {
        "observed"
    }
}

/// `election_storm` when the elections in the window reach the threshold,
/// `elections` for fewer, nothing for none.
fn election_finding(
    view: &TopologyView,
    recent: &[&PrimaryChange],
    down: &[String],
    names: &Names,
    rules: &ElectionRules,
    now: Instant,
) -> Option<Finding> {
    let (first, last) = (recent.first()?, recent.last()?);
    let count = count(recent);
    let span = now.saturating_duration_since(first.since);
    let by_term = view.term.is_some();
    let name = |a: &Option<String>| a.as_deref().map_or("?".to_owned(), |a| names.get(a));
    // The same host before the first election and after the last: re-elected.
    let re_elected = first.from.is_some() && first.from == last.to;
    let mut what = if re_elected {
        format!("{} re-elected", name(&last.to))
    } else {
        format!("{} -> {}", name(&first.from), name(&last.to))
    };
    if let (Some(a), Some(b)) = (first.previous_term, last.term) {
        what.push_str(&format!(", term {a} -> {b}"));
    }
    let primary_now = match &view.primary {
        Some(p) => format!("primary now {}", names.get(p)),
        None => "no primary now".to_owned(),
    };
    let method = if by_term {
        ""
    } else {
        "; observed changes only: the members state no election term, so elections between two checks are missed"
    };
    let plural = if count == 1 { "" } else { "s" };
    let noun = if by_term {
        "election"
    } else {
        "primary change"
    };
    let mut finding = if count >= u64::from(rules.threshold) {
        let mut text = format!(
            "election storm: {count} {noun}{plural} in {} ({what}), {primary_now}",
            span_text(span)
        );
        for d in down {
            text.push_str(", ");
            text.push_str(d);
        }
        text.push_str(method);
        Finding::new(super::ELECTION_STORM, Severity::Critical, text)
    } else {
        Finding::new(
            super::ELECTIONS,
            Severity::Warning,
            format!(
                "{count} {noun}{plural} in the last {} ({what}), {primary_now}{method}",
                humanize(rules.window)
            ),
        )
    };
    finding = finding
        .with("count", count)
        .with("threshold", rules.threshold)
        .with("window_s", rules.window.as_secs())
        .with("span_s", span.as_secs())
        .with("counted_by", counted_by(view))
        .with("re_elected", re_elected);
    if let (Some(a), Some(b)) = (first.previous_term, last.term) {
        finding = finding.with("previous_term", a).with("term", b);
    }
    if let Some(p) = &view.primary {
        finding = finding.with("primary", p.as_str());
    }
    Some(finding)
}

/// "replica set rs0: primary m1, 3 members (1 primary, 2 secondary)".
pub(super) fn success_message(view: &TopologyView) -> String {
    let counts: Vec<String> = view
        .members_by_state()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    match (&view.set_name, &view.primary) {
        (Some(set), Some(p)) => format!(
            "replica set {set}: primary {p}, {} members ({}); ping OK",
            view.members.len(),
            counts.join(", ")
        ),
        (Some(set), None) => format!("replica set {set}: ping OK ({})", counts.join(", ")),
        (None, _) => format!(
            "ping OK ({} server{})",
            view.members.len(),
            if view.members.len() == 1 { "" } else { "s" }
        ),
    }
}

/// "60 s", "4 min".
fn span_text(d: Duration) -> String {
    let s = d.as_secs().max(1);
    if s < 120 {
        format!("{s} s")
    } else {
        format!("{} min", s / 60)
    }
}

/// Short names for members: the host alone when every host is distinct, else
/// `host:port`.
struct Names {
    short: bool,
}

impl Names {
    fn of(view: &TopologyView, unreachable: &[(String, ProbeError)]) -> Names {
        let addresses: BTreeSet<&String> = view
            .members
            .keys()
            .chain(unreachable.iter().map(|(a, _)| a))
            .collect();
        let hosts: BTreeSet<String> = addresses
            .iter()
            .filter_map(|a| split_host_port(a).map(|(h, _)| h))
            .collect();
        Names {
            short: hosts.len() == addresses.len(),
        }
    }

    fn get(&self, address: &str) -> String {
        match split_host_port(address) {
            Some((h, _)) if self.short => h,
            _ => address.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span_text(Duration::from_secs(60)), "60 s");
        assert_eq!(span_text(Duration::from_millis(10)), "1 s");
        assert_eq!(span_text(Duration::from_secs(540)), "9 min");
    }
}
