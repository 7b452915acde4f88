//! `/targets/NAME`: one target's last outcome in full (the whole certificate chain
//! with every fact, phases with their timings, findings, problems, HTTP facts and
//! the kind's own details) and its recent history, drawn as a status strip and a
//! latency sparkline: when did it break, and how often does it flap.

use std::fmt::Write;
use std::time::SystemTime;

use depprobe_probes::outcome::rfc3339;
use depprobe_probes::{Outcome, Status, TlsFacts};

use super::Detail;
use super::escape::{html, push_html};
use super::render::{cert_class, document, findings_list, json_facts, millis, time_ago};
use super::svg::{latency_sparkline, status_strip};
use crate::history::PastRun;

/// The page of one target.
pub fn render(d: &Detail) -> String {
    let o = &d.outcome;
    let now = SystemTime::now();
    let name = html(&o.name);
    let status = o.status.as_str();
    let mut body = format!(
        "<p><a href=\"/\">← all targets</a></p>\n<header class=\"target status-{status}\">\
         <h1><span class=\"name\">{name}</span> <span class=\"badge status-{status}\">{status}</span></h1></header>\n"
    );
    body.push_str(&summary(d, now));
    if !o.problems.is_empty() {
        body.push_str("<h2>Problems</h2><ul class=\"problems\">");
        for p in &o.problems {
            let _ = write!(body, "<li><strong>{}</strong>: ", p.class.as_str());
            push_html(&mut body, &p.message);
            body.push_str("</li>");
        }
        body.push_str("</ul>\n");
    }
    if !o.findings.is_empty() {
        body.push_str("<h2>Findings</h2>");
        body.push_str(&findings_list(&o.findings, true));
    }
    body.push_str(&phases(o));
    if let Some(tls) = &o.tls {
        body.push_str(&tls_section(tls, o, now));
    }
    if let Some(h) = &o.http {
        let _ = writeln!(
            body,
            "<h2>HTTP</h2><dl class=\"facts http\"><dt>status</dt><dd>{}</dd><dt>version</dt><dd>{}</dd>\
             <dt>body bytes</dt><dd>{}</dd><dt>redirects</dt><dd>{}</dd></dl>",
            h.status_code,
            html(&h.version),
            h.body_bytes,
            h.redirects
        );
    }
    if !o.details.is_empty() {
        body.push_str("<h2>Details</h2>");
        body.push_str(&json_facts(o.details.iter()));
    }
    body.push_str(&history(&d.history));
    document(&format!("depprobe: {name} ({status})"), &body)
}

/// What, where, and the verdict of the last run, with the counters since start.
fn summary(d: &Detail, now: SystemTime) -> String {
    let o = &d.outcome;
    let mut out = String::from("<dl class=\"facts summary\">");
    let mut fact = |key: &str, value: &str| {
        let _ = write!(
            out,
            "<dt>{key}</dt><dd class=\"{}\">{value}</dd>",
            key.replace(' ', "-")
        );
    };
    fact("kind", &html(o.kind.as_str()));
    fact(
        "target",
        &html(&format!("{}:{}", o.target.address, o.target.port)),
    );
    fact("status", o.status.as_str());
    fact("class", o.error_type.map_or("-", |e| e.as_str()));
    fact("phase", o.phase.map_or("-", |p| p.as_str()));
    fact("message", &html(&o.message));
    fact("last run", &time_ago(o.started_at, now));
    fact("latency", &millis(o.timings.total));
    let failures = d
        .failures
        .iter()
        .map(|(class, n)| format!("{} × {n}", class.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    fact("runs", &d.runs.to_string());
    fact(
        "failures",
        if failures.is_empty() {
            "none"
        } else {
            &failures
        },
    );
    fact("certificate changes", &d.cert_changes.to_string());
    out.push_str("</dl>\n");
    out
}

/// The phases that ran, in order, with their durations.
fn phases(o: &Outcome) -> String {
    let mut out = String::from(
        "<h2>Phases</h2><table class=\"phases\"><thead><tr><th>phase</th><th>duration</th></tr></thead><tbody>",
    );
    for (phase, d) in &o.timings.phases {
        let failed = if o.phase == Some(*phase) && o.status == Status::Down {
            " class=\"failed\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr{failed}><td>{}</td><td>{}</td></tr>",
            phase.as_str(),
            millis(*d)
        );
    }
    let _ = writeln!(
        out,
        "<tr class=\"total\"><td>total</td><td>{}</td></tr></tbody></table>",
        millis(o.timings.total)
    );
    out
}

/// The TLS session and every certificate the server presented, leaf first.
fn tls_section(tls: &TlsFacts, o: &Outcome, now: SystemTime) -> String {
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_owned(), html);
    let mut out = format!(
        "<h2>TLS</h2><dl class=\"facts tls\"><dt>version</dt><dd>{}</dd><dt>cipher</dt><dd>{}</dd>\
         <dt>key exchange</dt><dd>{}</dd><dt>ALPN</dt><dd>{}</dd><dt>server name</dt><dd>{}</dd>\
         <dt>verified</dt><dd>{}</dd></dl>\n<h3>Certificate chain ({} presented, leaf first)</h3>\n",
        opt(&tls.version),
        opt(&tls.cipher),
        opt(&tls.kx_group),
        opt(&tls.alpn),
        html(&tls.server_name),
        if tls.verified { "yes" } else { "no" },
        tls.chain.len()
    );
    for (i, c) in tls.chain.iter().enumerate() {
        let position = if i == 0 {
            "leaf"
        } else {
            "intermediate or root"
        };
        let class = cert_class(&o.findings, c, now);
        let days = c.seconds_left(now) / 86_400.0;
        let left = if days <= 0.0 {
            "expired".to_owned()
        } else {
            format!("{} days", days.floor())
        };
        let key = match c.key_bits {
            Some(bits) => format!("{} {bits} bits", c.key_type),
            None => c.key_type.clone(),
        };
        let _ = writeln!(
            out,
            "<section class=\"cert {class}\" data-position=\"{i}\"><h4>#{n} {position}: {short}</h4>\
             <dl class=\"facts\"><dt>subject</dt><dd class=\"subject\">{subject}</dd>\
             <dt>issuer</dt><dd class=\"issuer\">{issuer}</dd><dt>serial</dt><dd>{serial}</dd>\
             <dt>not before</dt><dd>{nb}</dd><dt>not after</dt><dd>{na}</dd>\
             <dt>time left</dt><dd class=\"days-left {class}\">{left}</dd>\
             <dt>SANs</dt><dd class=\"sans\">{sans}</dd><dt>SHA-256</dt><dd><code>{sha}</code></dd>\
             <dt>key</dt><dd>{key}</dd><dt>CA</dt><dd>{ca}</dd></dl></section>",
            n = i + 1,
            short = html(&c.short_name()),
            subject = html(&c.subject),
            issuer = html(&c.issuer),
            serial = html(&c.serial),
            nb = rfc3339(c.not_before),
            na = rfc3339(c.not_after),
            sans = html(&c.sans.join(", ")),
            sha = html(&c.sha256),
            key = html(&key),
            ca = if c.is_ca { "yes" } else { "no" },
        );
    }
    out
}

/// The history: counts, the current streak, the strip and the sparkline.
fn history(runs: &[PastRun]) -> String {
    let mut out = format!(
        "<h2>History</h2><section class=\"history\"><p class=\"history-summary\">{}</p>",
        history_summary(runs)
    );
    out.push_str(&status_strip(runs));
    out.push_str(&latency_sparkline(runs));
    let mut sorted: Vec<u32> = runs.iter().map(|r| r.latency_ms).collect();
    sorted.sort_unstable();
    if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
        let median = sorted[sorted.len() / 2];
        let _ = write!(
            out,
            "<p class=\"latency-summary muted\">latency: lowest {min} ms, median {median} ms, highest {max} ms</p>"
        );
    }
    out.push_str("</section>\n");
    out
}

/// "12 runs kept: 10 up, 2 down; 3 status changes; down since … (2 runs)".
fn history_summary(runs: &[PastRun]) -> String {
    let Some(last) = runs.last() else {
        return "no runs kept yet".into();
    };
    let count = |s: Status| runs.iter().filter(|r| r.status == s).count();
    let changes = runs
        .windows(2)
        .filter(|w| w[0].status != w[1].status)
        .count();
    let streak = runs
        .iter()
        .rev()
        .take_while(|r| r.status == last.status)
        .count();
    let since = &runs[runs.len() - streak];
    format!(
        "{} runs kept: {} up, {} degraded, {} down; {changes} status change{}; {} since {} ({streak} run{})",
        runs.len(),
        count(Status::Up),
        count(Status::Degraded),
        count(Status::Down),
        if changes == 1 { "" } else { "s" },
        last.status.as_str(),
        rfc3339(since.started_at()),
        if streak == 1 { "" } else { "s" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(at: u32, status: Status) -> PastRun {
        PastRun {
            at_unix: 1_700_000_000 + at,
            latency_ms: 1,
            status,
            class: None,
        }
    }

    #[test]
    fn the_summary_says_when_it_broke_and_how_often_it_flapped() {
        let runs = [
            run(0, Status::Up),
            run(30, Status::Down),
            run(60, Status::Up),
            run(90, Status::Down),
            run(120, Status::Down),
        ];
        assert_eq!(
            history_summary(&runs),
            "5 runs kept: 2 up, 0 degraded, 3 down; 3 status changes; down since 2023-11-14T22:14:50Z (2 runs)"
        );
        assert_eq!(history_summary(&[]), "no runs kept yet");
    }
}
