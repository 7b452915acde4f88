//! Schedule lateness over a window, from two snapshots of the agent's `/schedule`
//! HDR histogram.

use hdrhistogram::Histogram;

use crate::BenchError;

/// Quantiles of a window, in milliseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Quantiles {
    /// Runs started in the window.
    pub runs: u64,
    /// Median lateness.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// A `/schedule` snapshot.
pub struct Snapshot {
    hist: Histogram<u64>,
}

impl Snapshot {
    /// Parses the JSON of `/schedule`.
    pub fn parse(json: &str) -> Result<Snapshot, BenchError> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| BenchError::Agent(format!("/schedule is not JSON: {e}")))?;
        let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| BenchError::Agent(e.to_string()))?;
        for pair in v["recorded"].as_array().into_iter().flatten() {
            let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) else {
                continue;
            };
            hist.record_n(value.max(1), count)
                .map_err(|e| BenchError::Agent(e.to_string()))?;
        }
        Ok(Snapshot { hist })
    }

    /// Runs recorded so far.
    pub fn runs(&self) -> u64 {
        self.hist.len()
    }

    /// What was recorded after `earlier`.
    pub fn since(&self, earlier: &Snapshot) -> Result<Quantiles, BenchError> {
        let mut h = self.hist.clone();
        h.subtract(&earlier.hist)
            .map_err(|e| BenchError::Agent(format!("/schedule snapshots: {e}")))?;
        if h.is_empty() {
            return Ok(Quantiles::default());
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Ok(Quantiles {
            runs: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let a = Snapshot::parse(r#"{"recorded":[[100,10],[5000,1]]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let b = Snapshot::parse(r#"{"recorded":[[100,20],[5000,1],[900,3]]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let w = b.since(&a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.runs, 13);
        assert!((0.89..0.91).contains(&w.max_ms), "{w:?}");
        assert!((0.099..0.101).contains(&w.p50_ms), "{w:?}");
    }
}
