//! Fuzzes the metrics exposition parser (Prometheus text 0.0.4 and OpenMetrics 1.0)
//! with arbitrary bytes: it must never panic, and what it reports must hold
//! together: every sample is counted, series never outnumber samples nor families
//! series, and an error's line and column lie inside the body.

#![no_main]

use depprobe_probes::kinds::metrics::exposition::{Format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line_count = data.iter().filter(|b| **b == b'\n').count() + 1;
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let mut seen = 0usize;
        let result = parse(data, format, |sample| {
            seen += 1;
            assert!(!sample.name.is_empty());
            assert!(sample.line >= 1 && sample.line <= line_count);
            assert!(sample.labels.iter().all(|(l, _)| !l.is_empty()));
        });
        match result {
            Ok(summary) => {
                assert_eq!(summary.samples, seen);
                assert!(summary.series <= summary.samples);
                assert!(summary.families <= summary.series);
            }
            Err(e) => {
                assert!(e.line >= 1 && e.line <= line_count, "{e}");
                assert!(e.column >= 1, "{e}");
                if let Ok(text) = std::str::from_utf8(data) {
                    let line = text.split('\n').nth(e.line - 1).unwrap_or("");
                    assert!(e.column <= line.chars().count() + 1, "{e}");
                }
            }
        }
    }
});
