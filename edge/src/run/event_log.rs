//! JSON-lines event log (`--log events.jsonl`): one line per processed frame.
//!
//! Each line is serialised in memory and handed to the kernel with a single
//! `write` on an append-mode file, with no user-space buffer in between, so a
//! `kill -9` or a crash loses at most the line being written and never
//! interleaves two lines. (A power cut can still lose what the page cache
//! held; per-line fsync would cost more than a frame on an SD card.)

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use serde::Serialize;

use super::decision::ScreenState;
use crate::colour::gate::GateVerdict;

/// Per-tile malignant probabilities of one frame (`--tiles`).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct TileMap {
    pub cols: u32,
    pub rows: u32,
    /// Row-major, `rows * cols` values.
    pub p_malignant: Vec<f32>,
    pub max: f32,
    pub mean: f32,
}

/// One line of the log.
#[derive(Serialize, Clone, Debug)]
pub struct Event {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub unix_ms: i64,
    /// 1-based count of frames processed by this run.
    pub frame: u64,
    /// Frame number at the source (gaps are dropped frames).
    pub source_frame: u64,
    pub origin: String,
    pub sharpness: f64,
    /// Malignant probability the decision used (max over tiles when tiled);
    /// absent for idle frames, which are not classified.
    pub p_malignant: Option<f32>,
    /// `[benign, malignant]` (tile mean when tiled).
    pub probs: Option<[f32; 2]>,
    /// EMA value or malignant vote fraction.
    pub smoothed: Option<f32>,
    pub state: ScreenState,
    pub changed: bool,
    pub latency_ms: f64,
    pub preprocess_ms: f64,
    pub infer_ms: f64,
    /// Frames dropped so far (the consumer was busy when newer ones came).
    pub dropped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiles: Option<TileMap>,
    /// Where the frame was saved (`--save-flagged`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved: Option<String>,
    /// Why the frame was idle: out of focus, not H&E (the gate's reasons), not screenable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_reason: Option<String>,
    /// The not-H&E gate's measurements on this frame (absent with scripted scores or --no-gate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateVerdict>,
}

/// Append-only JSONL writer.
pub struct EventLog {
    file: File,
    path: PathBuf,
    line: Vec<u8>,
}

impl EventLog {
    /// Open for appending (creating it if needed). Called before the loop
    /// starts so that a typo in the path fails in the first second, not
    /// after the first frame.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow!("cannot open event log {}: {}", path.display(), short_io(&e)))?;
        Ok(EventLog {
            file,
            path: path.to_path_buf(),
            line: Vec::with_capacity(512),
        })
    }

    pub fn write(&mut self, event: &Event) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, event)?;
        self.line.push(b'\n');
        self.file
            .write_all(&self.line)
            .and_then(|()| self.file.flush())
            .map_err(|e| {
                anyhow!(
                    "cannot write event log {}: {}",
                    self.path.display(),
                    short_io(&e)
                )
            })
    }
}

fn short_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::now_stamp;

    fn event(frame: u64) -> Event {
        let (time, unix_ms) = now_stamp();
        Event {
            time,
            unix_ms,
            frame,
            source_frame: frame,
            origin: "x.png".into(),
            sharpness: 12.5,
            p_malignant: Some(0.25),
            probs: Some([0.75, 0.25]),
            smoothed: Some(0.25),
            state: ScreenState::Benign,
            changed: frame == 1,
            latency_ms: 3.0,
            preprocess_ms: 1.0,
            infer_ms: 2.0,
            dropped: 0,
            tiles: None,
            saved: None,
            idle_reason: None,
            gate: None,
        }
    }

    #[test]
    fn appends_one_parsable_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let mut log = EventLog::open(&path).unwrap();
        log.write(&event(1)).unwrap();
        log.write(&event(2)).unwrap();
        // Visible without closing: nothing is buffered in user space.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["frame"], 2);
        assert_eq!(lines[2]["state"], "benign");
        assert!(lines[2]["time"].as_str().unwrap().ends_with('Z'));
        assert!(lines[2].get("tiles").is_none());
    }

    #[test]
    fn unwritable_path_is_one_line_naming_it() {
        let err = match EventLog::open(Path::new("/nonexistent-dir/events.jsonl")) {
            Ok(_) => panic!("opened a log in a missing directory"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            err,
            "cannot open event log /nonexistent-dir/events.jsonl: no such file or directory"
        );
    }
}
