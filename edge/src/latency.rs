//! Latency percentiles in fixed memory.
//!
//! Latencies go into a log-spaced histogram rather than a growing Vec: the loop runs for hours,
//! and its own bookkeeping must not be what the soak test sees growing.

/// Relative width of one histogram bucket (1 %).
const GROWTH: f64 = 1.01;
/// Smallest latency resolved; anything below lands in bucket 0.
const MIN_MS: f64 = 0.01;
/// 0.01 ms .. ~100 s at 1 % resolution.
const BUCKETS: usize = 1620;

/// Fixed-size latency histogram with ~1 % quantile error.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, ms: f64) {
        let idx = if ms <= MIN_MS || !ms.is_finite() {
            if ms.is_finite() {
                0
            } else {
                BUCKETS - 1
            }
        } else {
            ((ms / MIN_MS).ln() / GROWTH.ln()).ceil() as usize
        };
        self.counts[idx.min(BUCKETS - 1)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Upper edge of the bucket holding the `q` quantile (0..=1), in ms.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(MIN_MS * GROWTH.powi(i as i32));
            }
        }
        None
    }

    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = LatencyHistogram::default();
        for i in 1..=1000 {
            h.record(f64::from(i) * 0.1); // 0.1 .. 100 ms
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((p50 / 50.0 - 1.0).abs() < 0.011, "{p50}");
        assert!((p99 / 99.0 - 1.0).abs() < 0.011, "{p99}");
        assert_eq!(h.count(), 1000);
        h.clear();
        assert_eq!(h.quantile(0.5), None);
    }

    #[test]
    fn extreme_values_are_clamped_not_lost() {
        let mut h = LatencyHistogram::default();
        h.record(0.0);
        h.record(1e9);
        h.record(f64::NAN);
        assert_eq!(h.count(), 3);
        assert!(h.quantile(1.0).unwrap() > 1e4);
    }
}
