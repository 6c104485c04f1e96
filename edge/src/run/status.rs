//! Run statistics: latency percentiles in fixed memory, the periodic status
//! line, and resident memory.
//!
//! Latencies go into a log-spaced histogram rather than a growing Vec: the
//! loop runs for hours, and its own bookkeeping must not be what the soak
//! test sees growing.

use std::time::Duration;

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

/// Resident set size of this process in bytes (VmRSS), if /proc has it.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "?".into(),
        |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    )
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"))
}

/// The periodic stderr line.
pub fn status_line(
    frames_in_window: u64,
    window: Duration,
    latencies: &LatencyHistogram,
    dropped: u64,
    state: &str,
    total_frames: u64,
    rss: Option<u64>,
) -> String {
    let secs = window.as_secs_f64();
    let fps = if secs > 0.0 {
        frames_in_window as f64 / secs
    } else {
        0.0
    };
    format!(
        "status: {fps:.1} fps, latency p50 {} p99 {}, dropped {dropped}, state {state}, frames {total_frames}, rss {}",
        ms(latencies.quantile(0.5)),
        ms(latencies.quantile(0.99)),
        mib(rss)
    )
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

    #[test]
    fn vm_rss_is_parsed_in_bytes() {
        let text = "Name:\tx\nVmPeak:\t  999 kB\nVmRSS:\t   2048 kB\n";
        assert_eq!(parse_vm_rss(text), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn status_line_reads_well() {
        let mut h = LatencyHistogram::default();
        h.record(20.0);
        let line = status_line(
            50,
            Duration::from_secs(5),
            &h,
            3,
            "benign",
            400,
            Some(64 << 20),
        );
        assert!(
            line.starts_with("status: 10.0 fps, latency p50 20."),
            "{line}"
        );
        assert!(
            line.ends_with("dropped 3, state benign, frames 400, rss 64.0 MiB"),
            "{line}"
        );
    }
}
