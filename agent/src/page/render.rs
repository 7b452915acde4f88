//! The parts both pages share: the document around a body, the style sheet, and the
//! cells that say the same thing in the same way on both (status, certificate days,
//! last run, findings).

use std::fmt::Write;
use std::time::SystemTime;

use depprobe_probes::outcome::{human_delta, rfc3339};
use depprobe_probes::{CertFacts, Finding, FindingType, Outcome, Severity};

use super::escape::{html, push_html};

/// How often the page reloads itself, in seconds (a `<meta>` refresh: no script).
const REFRESH_SECS: u32 = 30;

/// The style sheet, inline: the page loads nothing from elsewhere.
const STYLE: &str = "
:root{--up:#2e7d32;--degraded:#b26a00;--down:#c62828;--muted:#666;font-family:system-ui,sans-serif;color:#222;background:#fafafa}
body{margin:1.5rem auto;max-width:80rem;padding:0 1rem}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
a{color:#1a4f8b}.muted,.summary{color:var(--muted)}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;vertical-align:top;padding:.35rem .5rem;border-bottom:1px solid #ddd}
th{font-weight:600;background:#f0f0f0}
table.targets{table-layout:fixed}td{overflow-wrap:anywhere}
table.targets th:nth-child(1){width:12%}table.targets th:nth-child(2){width:5%}table.targets th:nth-child(3){width:8%}
table.targets th:nth-child(4){width:14%}table.targets th:nth-child(5){width:5%}table.targets th:nth-child(6){width:25%}
table.targets th:nth-child(7){width:8%}table.targets th:nth-child(8){width:6%}table.targets th:nth-child(9){width:7%}
table.targets th:nth-child(10){width:10%}td.recent svg{max-width:100%;height:18px}
.status{font-weight:700;text-transform:uppercase;font-size:.8rem}
.status-up .status,.status-up>h2{color:var(--up)}
.status-degraded .status,.status-degraded>h2{color:var(--degraded)}
.status-down .status,.status-down>h2{color:var(--down)}
tr.status-down{background:#fdf1f1}tr.status-degraded{background:#fff8ec}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;color:#fff;font-size:.8rem;font-weight:700;text-transform:uppercase;vertical-align:middle}
.badge.status-up{background:var(--up)}.badge.status-degraded{background:var(--degraded)}.badge.status-down{background:var(--down)}
td.cert-warning,dd.cert-warning{color:var(--degraded);font-weight:700}
td.cert-critical,td.cert-expired,dd.cert-critical,dd.cert-expired{color:var(--down);font-weight:700}
section.cert.cert-warning{border-left:4px solid var(--degraded)}
section.cert.cert-critical,section.cert.cert-expired{border-left:4px solid var(--down)}
.finding dl.facts{color:#222}
ul.findings,ul.problems{margin:.3rem 0 0;padding-left:1.1rem}
.severity-warning{color:var(--degraded)}.severity-critical{color:var(--down)}
nav.filters{margin:.8rem 0;font-size:.9rem}nav.filters span{margin-right:1.2rem}
nav.filters a{margin:0 .25rem;padding:.05rem .4rem;border-radius:.3rem}
nav.filters a.active{background:#1a4f8b;color:#fff;text-decoration:none}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.3rem 0;font-size:.9rem}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
section.cert{border:1px solid #ddd;border-radius:.4rem;padding:.4rem .8rem;margin:.5rem 0;background:#fff}
code,pre{font-family:ui-monospace,monospace;font-size:.85rem}pre{white-space:pre-wrap;overflow-wrap:anywhere}
svg .run-up{fill:var(--up)}svg .run-degraded{fill:var(--degraded)}svg .run-down{fill:var(--down)}
svg .latency{stroke:#1a4f8b;stroke-width:1.2}
svg.strip,svg.sparkline{display:block;margin:.3rem 0;max-width:100%}
";

/// A whole document around `body`, titled `title` (both already escaped).
pub fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>\n{body}\n\
         <footer class=\"muted\"><p>depprobe · the same outcomes as <a href=\"/status\">/status</a> (JSON) and \
         <a href=\"/metrics\">/metrics</a> · reloads every {REFRESH_SECS} s</p></footer>\n</body></html>\n"
    )
}

/// A page that says what was not found (`what` is escaped here).
pub fn not_found(what: &str) -> String {
    let what = html(what);
    document(
        "depprobe: not found",
        &format!(
            "<h1>Not found</h1><p class=\"missing\">{what}.</p><p><a href=\"/\">All targets</a></p>"
        ),
    )
}

/// The colour class of a certificate's days left: `cert-expired` past its end,
/// `cert-critical` / `cert-warning` inside the probe's own windows (its
/// `cert_expiring` finding says which), else `cert-ok`.
pub fn cert_class(findings: &[Finding], cert: &CertFacts, now: SystemTime) -> &'static str {
    if cert.seconds_left(now) <= 0.0 {
        return "cert-expired";
    }
    let severity = findings
        .iter()
        .filter(|f| f.kind == FindingType::CERT_EXPIRING)
        .filter(|f| f.facts.get("sha256").and_then(|v| v.as_str()) == Some(cert.sha256.as_str()))
        .map(|f| f.severity)
        .max();
    match severity {
        Some(Severity::Critical) => "cert-critical",
        Some(Severity::Warning) => "cert-warning",
        Some(Severity::Notice) | None => "cert-ok",
    }
}

/// The certificate cell's text and class for a row: the earliest-expiring
/// certificate of the chain, or `-` and `cert-none` without TLS.
pub fn earliest_cert(o: &Outcome, now: SystemTime) -> (String, &'static str) {
    let earliest = o
        .tls
        .as_ref()
        .and_then(|t| t.chain.iter().min_by_key(|c| c.not_after));
    match earliest {
        Some(c) => (
            crate::table::cert_days(o, now),
            cert_class(&o.findings, c, now),
        ),
        None => ("-".into(), "cert-none"),
    }
}

/// A `<time>` element: "3 seconds ago", with the exact time as its value.
pub fn time_ago(t: SystemTime, now: SystemTime) -> String {
    let exact = rfc3339(t);
    format!(
        "<time datetime=\"{exact}\" title=\"{exact}\">{}</time>",
        human_delta(now, t)
    )
}

/// Milliseconds, one decimal below 10 ms.
pub fn millis(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A list of findings, each with its severity class; empty without findings.
pub fn findings_list(findings: &[Finding], with_facts: bool) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"findings\">");
    for f in findings {
        let severity = f.severity.as_str();
        let _ = write!(
            out,
            "<li class=\"finding severity-{severity}\" data-type=\"{t}\"><strong>{t}</strong> ({severity}): ",
            t = f.kind.as_str()
        );
        push_html(&mut out, &f.message);
        if with_facts && !f.facts.is_empty() {
            out.push_str(&json_facts(f.facts.iter()));
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");
    out
}

/// Key/value facts as a `<dl>`: strings as text, other values as compact JSON.
pub fn json_facts<'a>(facts: impl Iterator<Item = (&'a String, &'a serde_json::Value)>) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    for (k, v) in facts {
        out.push_str("<dt>");
        push_html(&mut out, k);
        out.push_str("</dt><dd>");
        match v {
            serde_json::Value::String(s) => push_html(&mut out, s),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                let text = serde_json::to_string_pretty(v).unwrap_or_default();
                out.push_str("<pre>");
                push_html(&mut out, &text);
                out.push_str("</pre>");
            }
            other => push_html(&mut out, &other.to_string()),
        }
        out.push_str("</dd>");
    }
    out.push_str("</dl>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DAY: u64 = 86_400;

    fn cert(sha256: &str, days_left: i64, now: SystemTime) -> CertFacts {
        let not_after = if days_left >= 0 {
            now + Duration::from_secs(days_left.unsigned_abs() * DAY)
        } else {
            now - Duration::from_secs(days_left.unsigned_abs() * DAY)
        };
        CertFacts {
            subject: "CN=x".into(),
            issuer: "CN=ca".into(),
            serial: "01".into(),
            not_before: now - Duration::from_secs(30 * DAY),
            not_after,
            sha256: sha256.into(),
            sans: Vec::new(),
            key_type: "EC P-256".into(),
            key_bits: Some(256),
            is_ca: false,
        }
    }

    fn expiring(sha256: &str, severity: Severity) -> Finding {
        Finding::new(FindingType::CERT_EXPIRING, severity, "expires soon").with("sha256", sha256)
    }

    #[test]
    fn certificate_colours_follow_the_probes_own_windows() {
        let now = SystemTime::now();
        let none: [Finding; 0] = [];
        assert_eq!(cert_class(&none, &cert("a", -1, now), now), "cert-expired");
        assert_eq!(cert_class(&none, &cert("a", 89, now), now), "cert-ok");
        let warn = [expiring("a", Severity::Warning)];
        assert_eq!(cert_class(&warn, &cert("a", 10, now), now), "cert-warning");
        let crit = [
            expiring("a", Severity::Warning),
            expiring("a", Severity::Critical),
        ];
        assert_eq!(cert_class(&crit, &cert("a", 2, now), now), "cert-critical");
        // A finding about another certificate of the chain does not colour this one.
        assert_eq!(cert_class(&crit, &cert("b", 2, now), now), "cert-ok");
    }

    #[test]
    fn finding_messages_and_facts_are_escaped() {
        let f = Finding::new(FindingType::SLOW, Severity::Warning, "<b>slow</b>")
            .with("<k>", "<v>")
            .with("n", serde_json::json!({"<x>": 1}));
        let out = findings_list(&[f], true);
        assert!(
            !out.contains("<b>") && !out.contains("<k>") && !out.contains("<v>"),
            "{out}"
        );
        assert!(out.contains("&lt;b&gt;slow&lt;/b&gt;") && out.contains("&quot;&lt;x&gt;&quot;"));
    }
}
