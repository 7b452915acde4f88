//! Schedule precision: how late runs started against their schedule, kept in an
//! HDR histogram (microsecond resolution, 3 significant digits) and served as JSON
//! on `/schedule`. The OpenTelemetry histogram `depprobe.schedule.lateness` carries
//! the same data in coarse buckets; this one gives exact quantiles and the maximum,
//! and its recorded values let a reader subtract two snapshots to get a window
//! (the benchmark does).

use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest lateness tracked exactly: one hour, in microseconds (longer is clamped).
const MAX_US: u64 = 3_600_000_000;

/// The lateness histogram.
pub struct Lateness {
    /// `None` only if the histogram could not be built (the bounds are constants,
    /// so it always can).
    hist: Option<Histogram<u64>>,
    /// Sum of every lateness recorded, seconds.
    sum: f64,
}

impl Default for Lateness {
    fn default() -> Self {
        Self::new()
    }
}

impl Lateness {
    /// An empty histogram.
    pub fn new() -> Lateness {
        Lateness {
            hist: Histogram::new_with_bounds(1, MAX_US, 3).ok(),
            sum: 0.0,
        }
    }

    /// Records one run that started `late`.
    pub fn record(&mut self, late: Duration) {
        let us = u64::try_from(late.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        if let Some(h) = self.hist.as_mut() {
            h.saturating_record(us);
        }
        self.sum += late.as_secs_f64();
    }

    /// Cumulative counts at each of `bounds` (seconds), the total count, and the sum
    /// in seconds: a Prometheus histogram.
    pub fn buckets(&self, bounds: &[f64]) -> (Vec<u64>, u64, f64) {
        let Some(h) = &self.hist else {
            return (vec![0; bounds.len()], 0, 0.0);
        };
        let counts = bounds
            .iter()
            .map(|b| h.count_between(1, (b * 1e6) as u64))
            .collect();
        (counts, h.len(), self.sum)
    }

    /// `{"runs": n, "p50_ms": .., "p90_ms": .., "p99_ms": .., "p999_ms": .., "max_ms": ..,
    /// "recorded": [[microseconds, count], ...]}`.
    pub fn to_json(&self) -> String {
        let Some(h) = &self.hist else {
            return "{}".to_owned();
        };
        let ms = |v: u64| v as f64 / 1000.0;
        let q = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        let recorded: Vec<[u64; 2]> = h
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect();
        serde_json::json!({
            "runs": h.len(),
            "p50_ms": q(0.5),
            "p90_ms": q(0.9),
            "p99_ms": q(0.99),
            "p999_ms": q(0.999),
            "max_ms": if h.is_empty() { 0.0 } else { ms(h.max()) },
            "recorded": recorded,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_recorded_values() {
        let mut l = Lateness::new();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let v: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap_or_default();
        assert_eq!(v["runs"], 100);
        let p99 = v["p99_ms"].as_f64().unwrap_or_default();
        assert!((98.9..=99.1).contains(&p99), "p99 {p99}");
        let max = v["max_ms"].as_f64().unwrap_or_default();
        assert!((99.9..=100.1).contains(&max), "max {max}");
        let total: u64 = v["recorded"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p[1].as_u64()).sum())
            .unwrap_or_default();
        assert_eq!(total, 100);
    }
}
