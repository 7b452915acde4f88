//! `/`: every target on one screen, grouped by status worst first (down, degraded,
//! up; configuration order within a group), with a filter by kind and status that
//! is made of links (`/?status=down&kind=http`), so it works without a script.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::SystemTime;

use depprobe_probes::Status;

use super::Row;
use super::escape::{html, path_segment, push_html, query_param};
use super::render::{document, earliest_cert, findings_list, millis, time_ago};
use super::svg::status_strip;

/// Statuses, worst first: the order of the groups.
const WORST_FIRST: [Status; 3] = [Status::Down, Status::Degraded, Status::Up];

/// What the overview shows: all targets, or those of one status and/or kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this kind (as its name).
    pub kind: Option<String>,
}

impl Filter {
    /// From a query string; an unknown status shows every status.
    pub fn parse(query: &str) -> Filter {
        let status = query_param(query, "status")
            .and_then(|s| WORST_FIRST.into_iter().find(|st| st.as_str() == s));
        Filter {
            status,
            kind: query_param(query, "kind"),
        }
    }

    fn keeps(&self, row: &Row) -> bool {
        self.status.is_none_or(|s| row.outcome.status == s)
            && self
                .kind
                .as_deref()
                .is_none_or(|k| row.outcome.kind.as_str() == k)
    }

    /// The link to this filter with `status` and `kind` replaced.
    fn href(status: Option<Status>, kind: Option<&str>) -> String {
        let mut params = Vec::new();
        if let Some(s) = status {
            params.push(format!("status={}", s.as_str()));
        }
        if let Some(k) = kind {
            params.push(format!("kind={}", path_segment(k)));
        }
        if params.is_empty() {
            "/".into()
        } else {
            format!("/?{}", params.join("&amp;"))
        }
    }
}

/// The overview of `rows` (`configured` targets in all).
pub fn render(rows: &[Row], configured: usize, filter: &Filter) -> String {
    let now = SystemTime::now();
    let count = |s: Status| rows.iter().filter(|r| r.outcome.status == s).count();
    let summary = WORST_FIRST
        .iter()
        .map(|s| format!("{} {}", count(*s), s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut body = format!(
        "<header><h1>depprobe</h1><p class=\"summary\">{configured} targets: {summary}</p></header>\n"
    );
    body.push_str(&filters(rows, filter));
    let mut sorted: Vec<&Row> = rows.iter().filter(|r| filter.keeps(r)).collect();
    sorted.sort_by_key(|r| (std::cmp::Reverse(r.outcome.status), r.order));
    for status in WORST_FIRST {
        let group: Vec<&Row> = sorted
            .iter()
            .copied()
            .filter(|r| r.outcome.status == status)
            .collect();
        if !group.is_empty() {
            body.push_str(&group_table(status, &group, now));
        }
    }
    if sorted.is_empty() {
        body.push_str("<p class=\"empty\">No target matches this filter.</p>\n");
    }
    let pending = configured.saturating_sub(rows.len());
    if pending > 0 {
        let _ = writeln!(
            body,
            "<p class=\"pending\">{pending} of {configured} targets have not run yet.</p>"
        );
    }
    document(&format!("depprobe: {summary}"), &body)
}

/// The filter links: by status (with counts) and by the kinds present.
fn filters(rows: &[Row], filter: &Filter) -> String {
    let kinds: BTreeSet<&str> = rows.iter().map(|r| r.outcome.kind.as_str()).collect();
    let link = |href: String, text: &str, active: bool| {
        format!(
            "<a href=\"{href}\"{}>{}</a>",
            if active { " class=\"active\"" } else { "" },
            html(text)
        )
    };
    let kind = filter.kind.as_deref();
    let mut out = String::from("<nav class=\"filters\"><span class=\"by-status\">status:");
    out.push_str(&link(
        Filter::href(None, kind),
        "all",
        filter.status.is_none(),
    ));
    for s in WORST_FIRST {
        let n = rows.iter().filter(|r| r.outcome.status == s).count();
        let text = format!("{} ({n})", s.as_str());
        out.push_str(&link(
            Filter::href(Some(s), kind),
            &text,
            filter.status == Some(s),
        ));
    }
    out.push_str("</span><span class=\"by-kind\">kind:");
    out.push_str(&link(
        Filter::href(filter.status, None),
        "all",
        kind.is_none(),
    ));
    for k in kinds {
        out.push_str(&link(
            Filter::href(filter.status, Some(k)),
            k,
            kind == Some(k),
        ));
    }
    out.push_str("</span></nav>\n");
    out
}

/// One status group: a heading and a table of its rows.
fn group_table(status: Status, rows: &[&Row], now: SystemTime) -> String {
    let s = status.as_str();
    let mut out = format!(
        "<section class=\"group status-{s}\" id=\"{s}\"><h2>{s} ({})</h2>\n\
         <table class=\"targets\"><thead><tr><th>target</th><th>kind</th><th>status</th>\
         <th>class</th><th>phase</th><th>message and findings</th><th>certificate</th>\
         <th>latency</th><th>last run</th><th>recent runs</th></tr></thead><tbody>\n",
        rows.len()
    );
    for r in rows {
        out.push_str(&row(r, now));
    }
    out.push_str("</tbody></table></section>\n");
    out
}

/// One target's row.
fn row(r: &Row, now: SystemTime) -> String {
    let o = &r.outcome;
    let status = o.status.as_str();
    let kind = html(o.kind.as_str());
    let (days, cert_class) = earliest_cert(o, now);
    let mut out = format!(
        "<tr class=\"target status-{status}\" data-kind=\"{kind}\" data-status=\"{status}\">\
         <td class=\"name\"><a href=\"/targets/{}\">{}</a></td>",
        path_segment(&o.name),
        html(&o.name)
    );
    let class = o.error_type.map_or("-", |e| e.as_str());
    let phase = o.phase.map_or("-", |p| p.as_str());
    let _ = write!(
        out,
        "<td class=\"kind\">{kind}</td><td class=\"status\">{status}</td>\
         <td class=\"class\">{class}</td><td class=\"phase\">{phase}</td><td class=\"message\">"
    );
    push_html(&mut out, &o.message);
    out.push_str(&findings_list(&o.findings, false));
    let _ = writeln!(
        out,
        "</td><td class=\"cert {cert_class}\">{days}</td><td class=\"latency\">{}</td>\
         <td class=\"last-run\">{}</td><td class=\"recent\">{}</td></tr>",
        millis(o.timings.total),
        time_ago(o.started_at, now),
        status_strip(&r.recent)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_read_from_the_query() {
        assert_eq!(Filter::parse(""), Filter::default());
        let f = Filter::parse("status=down&kind=http");
        assert_eq!(f.status, Some(Status::Down));
        assert_eq!(f.kind.as_deref(), Some("http"));
        assert_eq!(Filter::parse("status=%3Cb%3E").status, None);
    }

    #[test]
    fn filter_links_keep_the_other_filter() {
        assert_eq!(Filter::href(None, None), "/");
        assert_eq!(
            Filter::href(Some(Status::Degraded), Some("http")),
            "/?status=degraded&amp;kind=http"
        );
        assert_eq!(Filter::href(None, Some("a b")), "/?kind=a%20b");
    }
}
