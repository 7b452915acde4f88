//! The human table of `check` and `demo`.

use std::time::SystemTime;

use depprobe_probes::{Outcome, outcome::seconds_between};

/// Days left on the earliest certificate of the chain, `-` without TLS.
pub fn cert_days(o: &Outcome, now: SystemTime) -> String {
    match o.tls.as_ref().and_then(|t| t.earliest_not_after()) {
        Some(t) => {
            let secs = seconds_between(now, t);
            if secs < 0.0 {
                "expired".into()
            } else {
                format!("{}d", (secs / 86_400.0).floor())
            }
        }
        None => "-".into(),
    }
}

/// Renders outcomes as an aligned table with a header.
pub fn render(outcomes: &[Outcome]) -> String {
    let now = SystemTime::now();
    let header = [
        "NAME", "KIND", "STATUS", "CLASS", "CERT", "LATENCY", "MESSAGE",
    ];
    let rows: Vec<[String; 7]> = outcomes
        .iter()
        .map(|o| {
            [
                o.name.clone(),
                o.kind.as_str().to_owned(),
                o.status.as_str().to_owned(),
                o.error_type
                    .map_or_else(|| "-".to_owned(), |e| e.as_str().to_owned()),
                cert_days(o, now),
                format!("{} ms", o.timings.total.as_millis()),
                o.message.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// Writes `text` to standard output. A closed pipe (`depprobe check --json | head`)
/// is not an error worth a panic: the rest is dropped.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // The reader went away; nothing else to do.
    }
}
