//! What the fuzz targets share: the checks a parser's answer must pass whatever the
//! input, and the small decoders that turn the fuzzer's bytes into the shapes the
//! parsers take (a large scrape, a certificate chain, a time).
//!
//! Each target under `fuzz_targets/` is a few lines over these, so that a crash
//! replayed from `fuzz/artifacts/<target>/` points at one check with one message.

use depprobe_probes::kinds::metrics::exposition::{Format, parse};

pub mod frame;

pub use frame::{amplify, der_chain, distinct_secret, echoes, moment, with_other_secret};

/// Parses `body` in both exposition formats and checks that the answer holds
/// together: every sample is counted, series never outnumber samples nor families
/// series, and an error's line and column lie inside the body.
pub fn check_exposition(body: &[u8]) {
    let line_count = body.iter().filter(|b| **b == b'\n').count() + 1;
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let mut seen = 0usize;
        let result = parse(body, format, |sample| {
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
                if let Ok(text) = std::str::from_utf8(body) {
                    let line = text.split('\n').nth(e.line - 1).unwrap_or("");
                    assert!(e.column <= line.chars().count() + 1, "{e}");
                }
            }
        }
    }
}
