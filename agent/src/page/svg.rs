//! The two drawings of a target's history, as inline SVG: a strip with one bar per
//! run coloured by its status (when did it break, how often does it flap), and a
//! sparkline of total latency.
//!
//! Both are plain markup styled by the page's CSS classes (`run-up`, `run-down`,
//! ...), need no script, and carry a `<title>` per bar so that hovering a run tells
//! when it was and what it said. No text in them comes from a probe or a server:
//! only statuses, classes, times and numbers.

use std::fmt::Write;

use depprobe_probes::outcome::rfc3339;

use crate::history::PastRun;

/// Width of one run's bar in the strip, and of one step in the sparkline.
const STEP: usize = 4;
/// Height of the strip.
const STRIP_HEIGHT: usize = 18;
/// Height of the sparkline's drawing area.
const SPARK_HEIGHT: f64 = 40.0;

/// One bar per run, oldest on the left; empty when there are no runs.
pub fn status_strip(runs: &[PastRun]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let width = runs.len() * STEP;
    let mut out = format!(
        r#"<svg class="strip" xmlns="http://www.w3.org/2000/svg" role="img" preserveAspectRatio="none" width="{width}" height="{STRIP_HEIGHT}" viewBox="0 0 {width} {STRIP_HEIGHT}"><title>status of the last {} runs, oldest first</title>"#,
        runs.len()
    );
    for (i, run) in runs.iter().enumerate() {
        let class = run.class.map(|c| c.as_str()).unwrap_or("");
        let _ = write!(
            out,
            r#"<rect class="run run-{status}" x="{x}" y="0" width="{w}" height="{STRIP_HEIGHT}"><title>{at}: {status}{sep}{class}, {ms} ms</title></rect>"#,
            status = run.status.as_str(),
            x = i * STEP,
            w = STEP - 1,
            at = rfc3339(run.started_at()),
            sep = if class.is_empty() { "" } else { " " },
            ms = run.latency_ms,
        );
    }
    out.push_str("</svg>");
    out
}

/// A polyline of total latency, scaled to the slowest run; a dot marks each run
/// that was down. Empty when there are no runs.
pub fn latency_sparkline(runs: &[PastRun]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let max = runs.iter().map(|r| r.latency_ms).max().unwrap_or(0).max(1);
    let width = runs.len() * STEP;
    let height = SPARK_HEIGHT + 4.0;
    let y = |ms: u32| 2.0 + SPARK_HEIGHT * (1.0 - f64::from(ms) / f64::from(max));
    let x = |i: usize| (i * STEP + STEP / 2) as f64;
    let mut points = String::new();
    for (i, run) in runs.iter().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        let _ = write!(points, "{sep}{:.1},{:.1}", x(i), y(run.latency_ms));
    }
    let mut out = format!(
        r#"<svg class="sparkline" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>total latency of the last {} runs, oldest first; highest {max} ms</title><polyline class="latency" fill="none" points="{points}"/>"#,
        runs.len()
    );
    for (i, run) in runs.iter().enumerate() {
        if run.status == depprobe_probes::Status::Down {
            let _ = write!(
                out,
                r#"<circle class="run-down" cx="{:.1}" cy="{:.1}" r="1.5"/>"#,
                x(i),
                y(run.latency_ms)
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use depprobe_probes::{ErrorType, Status};

    fn run(i: u32, status: Status, ms: u32) -> PastRun {
        PastRun {
            at_unix: 1_700_000_000 + i,
            latency_ms: ms,
            status,
            class: (status == Status::Down).then_some(ErrorType::TlsCertExpired),
        }
    }

    #[test]
    fn one_bar_per_run_coloured_by_status() {
        let runs = [
            run(0, Status::Up, 3),
            run(30, Status::Degraded, 4),
            run(60, Status::Down, 2),
        ];
        let svg = status_strip(&runs);
        assert_eq!(svg.matches("<rect ").count(), 3);
        let classes: Vec<&str> = svg
            .match_indices(r#"class="run run-"#)
            .map(|(i, m)| {
                let rest = &svg[i + m.len()..];
                &rest[..rest.find('"').unwrap_or(0)]
            })
            .collect();
        assert_eq!(classes, ["up", "degraded", "down"]);
        assert!(svg.contains("<title>2023-11-14T22:14:20Z: down tls_cert_expired, 2 ms</title>"));
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
    }

    #[test]
    fn the_sparkline_spans_the_slowest_run() {
        let runs = [
            run(0, Status::Up, 10),
            run(1, Status::Up, 40),
            run(2, Status::Down, 0),
        ];
        let svg = latency_sparkline(&runs);
        // The slowest run is at the top (y = 2), a 0 ms run at the bottom (y = 42).
        assert!(
            svg.contains(r#"points="2.0,32.0 6.0,2.0 10.0,42.0""#),
            "{svg}"
        );
        assert_eq!(svg.matches("<circle ").count(), 1);
        assert!(svg.contains("highest 40 ms"));
    }

    #[test]
    fn all_zero_latencies_do_not_divide_by_zero() {
        let svg = latency_sparkline(&[run(0, Status::Up, 0), run(1, Status::Up, 0)]);
        assert!(svg.contains(r#"points="2.0,42.0 6.0,42.0""#), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn no_runs_draw_nothing() {
        assert_eq!(status_strip(&[]), "");
        assert_eq!(latency_sparkline(&[]), "");
    }
}
