//! A fixed-bucket histogram of durations in lock-free atomics: recording is two relaxed atomic
//! adds (the bucket and the sum in microseconds; the count is the sum of the buckets,
//! so a scrape never sees a count that disagrees with its buckets).

use std::sync::atomic::{AtomicU64, Ordering};

use super::text::{Family, Value};

/// Request durations, seconds: the GenAI `gen_ai.client.operation.duration` boundaries, extended
/// to 5½ minutes for long streams.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84,
    327.68,
];

/// Time to first token, seconds: the GenAI `time_to_first_chunk` boundaries.
pub const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The gateway's own time per request, seconds: 10 µs to 100 ms.
pub const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,
];

/// One histogram series.
#[derive(Debug)]
pub(crate) struct Histogram {
    /// The `le` label of each bucket, `+Inf` last.
    le: Box<[String]>,
    /// Upper bounds in microseconds, for integer comparison.
    bounds_us: Box<[u64]>,
    /// Non-cumulative counts; the last is above every bound.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        let mut le: Vec<String> = bounds
            .iter()
            .map(|&b| {
                let mut s = String::new();
                super::text::write_float(&mut s, b);
                s
            })
            .collect();
        le.push("+Inf".into());
        Histogram {
            le: le.into(),
            bounds_us: bounds.iter().map(|b| (b * 1e6).round() as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation of `us` microseconds.
    pub(crate) fn record_us(&self, us: u64) {
        let i = self.bounds_us.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The number of observations.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples.
    pub(crate) fn write(&self, family: &mut Family<'_>, labels: &[(&str, &str)]) {
        let mut cumulative = 0;
        for (c, le) in self.counts.iter().zip(&self.le) {
            cumulative += c.load(Ordering::Relaxed);
            family.write("_bucket", labels, Some(("le", le)), Value::Int(cumulative));
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        family.write("_sum", labels, None, Value::Float(sum));
        family.write("_count", labels, None, Value::Int(cumulative));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::text::Exposition;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.record_us(1_000); // exactly on the first bound: counted in it
        h.record_us(1_001);
        h.record_us(50_000);
        assert_eq!(h.count(), 3);
        let mut out = Exposition::new();
        let mut f = out.start("h_seconds", "h", "histogram");
        h.write(&mut f, &[("model", "m")]);
        let text = out.finish();
        assert!(
            text.contains("h_seconds_bucket{model=\"m\",le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_bucket{model=\"m\",le=\"0.01\"} 2\n"));
        assert!(text.contains("h_seconds_bucket{model=\"m\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("h_seconds_sum{model=\"m\"} 0.052001\n"));
        assert!(text.contains("h_seconds_count{model=\"m\"} 3\n"));
    }
}
