//! Run statistics: the periodic status line and resident memory.

use std::time::Duration;

pub use crate::latency::LatencyHistogram;

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

/// What happened since the last status line.
pub struct Window<'a> {
    pub frames: u64,
    pub span: Duration,
    pub latencies: &'a LatencyHistogram,
    /// Idle frames in the window and the last one's reason.
    pub idle: Option<(u64, &'a str)>,
}

/// The periodic stderr line.
pub fn status_line(
    w: &Window,
    dropped: u64,
    state: &str,
    total_frames: u64,
    rss: Option<u64>,
) -> String {
    let (frames_in_window, window, latencies, idle) = (w.frames, w.span, w.latencies, w.idle);
    let secs = window.as_secs_f64();
    let fps = if secs > 0.0 {
        frames_in_window as f64 / secs
    } else {
        0.0
    };
    let idle = match idle {
        Some((n, reason)) if n > 0 => format!(", idle {n} (last: {reason})"),
        _ => String::new(),
    };
    format!(
        "status: {fps:.1} fps, latency p50 {} p99 {}, dropped {dropped}, state {state}, frames {total_frames}, rss {}{idle}",
        ms(latencies.quantile(0.5)),
        ms(latencies.quantile(0.99)),
        mib(rss)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let window = |idle| Window {
            frames: 50,
            span: Duration::from_secs(5),
            latencies: &h,
            idle,
        };
        let line = status_line(&window(None), 3, "benign", 400, Some(64 << 20));
        assert!(
            line.starts_with("status: 10.0 fps, latency p50 20."),
            "{line}"
        );
        assert!(
            line.ends_with("dropped 3, state benign, frames 400, rss 64.0 MiB"),
            "{line}"
        );
        let with_idle = status_line(
            &window(Some((4, "not H&E: not H&E colours"))),
            3,
            "idle",
            400,
            Some(64 << 20),
        );
        assert!(
            with_idle.ends_with("rss 64.0 MiB, idle 4 (last: not H&E: not H&E colours)"),
            "{with_idle}"
        );
    }
}
