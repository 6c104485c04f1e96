//! Where frames come from: `--source camera:DEV`, `dir:PATH_OR_GLOB`,
//! `file:PATH`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};

use super::camera::CameraConfig;
pub use super::frame::{Frame, FrameSource};

/// Parsed `--source` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Camera(PathBuf),
    Dir(String),
    File(PathBuf),
}

impl SourceSpec {
    pub fn parse(s: &str) -> Result<Self> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            anyhow!("--source {s:?}: expected camera:DEVICE, dir:PATH or file:PATH")
        })?;
        if rest.is_empty() {
            bail!("--source {s:?}: nothing after {kind:?}");
        }
        match kind {
            "camera" => Ok(SourceSpec::Camera(PathBuf::from(rest))),
            "dir" => Ok(SourceSpec::Dir(rest.to_string())),
            "file" => Ok(SourceSpec::File(PathBuf::from(rest))),
            _ => bail!("--source {s:?}: unknown kind {kind:?} (use camera:, dir: or file:)"),
        }
    }
}

/// Open the source named by `spec`.
pub fn open_source(
    spec: &SourceSpec,
    looping: bool,
    camera: CameraConfig,
) -> Result<Box<dyn FrameSource>> {
    match spec {
        SourceSpec::Camera(dev) => open_camera(dev, camera),
        SourceSpec::Dir(pattern) => {
            Ok(Box::new(ReplaySource::new(list_images(pattern)?, looping)?))
        }
        SourceSpec::File(path) => {
            if !path.is_file() {
                bail!("--source file:{}: no such file", path.display());
            }
            Ok(Box::new(ReplaySource::new(vec![path.clone()], looping)?))
        }
    }
}

#[cfg(feature = "camera")]
fn open_camera(dev: &Path, cfg: CameraConfig) -> Result<Box<dyn FrameSource>> {
    Ok(Box::new(super::camera::CameraSource::open(dev, cfg)?))
}

#[cfg(not(feature = "camera"))]
fn open_camera(dev: &Path, _cfg: CameraConfig) -> Result<Box<dyn FrameSource>> {
    bail!(
        "cannot use camera {}: this build has no camera support (rebuild with the default `camera` feature)",
        dev.display()
    )
}

const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "tif", "tiff"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Images under a directory (recursive) or matching a glob, sorted by path
/// so a replay is reproducible.
pub fn list_images(pattern: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
        glob::glob(pattern)
            .map_err(|e| anyhow!("--source dir:{pattern}: bad glob pattern ({e})"))?
            .filter_map(|entry| entry.ok())
            .filter(|p| p.is_file() && is_image(p))
            .collect()
    } else {
        let root = Path::new(pattern);
        if !root.is_dir() {
            bail!("--source dir:{pattern}: not a directory");
        }
        walkdir::WalkDir::new(root)
            .follow_links(true)
            .into_iter()
            .filter_map(|entry| entry.ok())
            .filter(|e| e.file_type().is_file() && is_image(e.path()))
            .map(|e| e.into_path())
            .collect()
    };
    if files.is_empty() {
        bail!("--source dir:{pattern}: no images (png, jpg, tif) found");
    }
    files.sort();
    Ok(files)
}

/// Replays image files, optionally forever.
pub struct ReplaySource {
    files: Vec<PathBuf>,
    next: usize,
    looping: bool,
    seq: u64,
    /// Consecutive unreadable files; a whole pass of them is an error rather
    /// than a silent busy loop.
    bad_in_a_row: usize,
}

impl ReplaySource {
    pub fn new(files: Vec<PathBuf>, looping: bool) -> Result<Self> {
        if files.is_empty() {
            bail!("no images to replay");
        }
        Ok(ReplaySource {
            files,
            next: 0,
            looping,
            seq: 0,
            bad_in_a_row: 0,
        })
    }
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if self.next == self.files.len() {
                if !self.looping {
                    return Ok(None);
                }
                self.next = 0;
            }
            let path = &self.files[self.next];
            self.next += 1;
            self.seq += 1;
            // Stamp when the bytes are in memory, like a dequeued camera
            // buffer: decoding is part of the measured latency.
            let read = std::fs::read(path);
            let captured = Instant::now();
            let what = path.display().to_string();
            let decoded = read
                .map_err(|e| anyhow!("cannot read {what}: {e}"))
                .and_then(|bytes| {
                    crate::preprocess::decode_image(&bytes, &what).map_err(anyhow::Error::from)
                });
            match decoded {
                Ok(image) => {
                    self.bad_in_a_row = 0;
                    return Ok(Some(Frame {
                        seq: self.seq,
                        captured,
                        image,
                        origin: what,
                    }));
                }
                Err(e) => {
                    self.bad_in_a_row += 1;
                    if self.bad_in_a_row >= self.files.len() {
                        return Err(e.context("no readable image in the replay set"));
                    }
                    // One bad file in a data set should not end an
                    // hours-long run.
                    eprintln!("histoscreen-edge: skipping {e:#}");
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} image file{}{}",
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            if self.looping { ", looping" } else { "" }
        )
    }

    fn is_live(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn parses_source_kinds() {
        assert_eq!(
            SourceSpec::parse("camera:/dev/video0").unwrap(),
            SourceSpec::Camera("/dev/video0".into())
        );
        assert_eq!(
            SourceSpec::parse("dir:a/*.png").unwrap(),
            SourceSpec::Dir("a/*.png".into())
        );
        assert_eq!(
            SourceSpec::parse("file:x.png").unwrap(),
            SourceSpec::File("x.png".into())
        );
        assert!(SourceSpec::parse("video0").is_err());
        assert!(SourceSpec::parse("rtsp:foo").is_err());
        assert!(SourceSpec::parse("dir:").is_err());
    }

    #[test]
    fn directory_listing_is_recursive_sorted_and_images_only() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["b/2.png", "a/1.PNG", "a/z/3.jpg", "c.png"] {
            write_png(&dir.path().join(rel).with_extension("png"));
        }
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let files = list_images(dir.path().to_str().unwrap()).unwrap();
        let rel: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, vec!["a/1.png", "a/z/3.png", "b/2.png", "c.png"]);

        let glob = format!("{}/a/*.png", dir.path().display());
        assert_eq!(list_images(&glob).unwrap().len(), 1);
        let empty = format!("{}/*.tif", dir.path().display());
        assert!(list_images(&empty)
            .unwrap_err()
            .to_string()
            .contains("no images"));
    }

    #[test]
    fn replay_stops_or_loops() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        let b = dir.path().join("b.png");
        write_png(&a);
        write_png(&b);
        let mut once = ReplaySource::new(vec![a.clone(), b.clone()], false).unwrap();
        assert_eq!(once.next_frame().unwrap().unwrap().seq, 1);
        assert_eq!(once.next_frame().unwrap().unwrap().seq, 2);
        assert!(once.next_frame().unwrap().is_none());

        let mut looped = ReplaySource::new(vec![a, b], true).unwrap();
        let origins: Vec<String> = (0..3)
            .map(|_| looped.next_frame().unwrap().unwrap().origin)
            .collect();
        assert!(origins[0].ends_with("a.png") && origins[2].ends_with("a.png"));
    }

    #[test]
    fn unreadable_files_are_skipped_until_none_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        let bad = dir.path().join("bad.png");
        write_png(&good);
        std::fs::write(&bad, b"not a png").unwrap();
        let mut src = ReplaySource::new(vec![bad.clone(), good], false).unwrap();
        assert!(src
            .next_frame()
            .unwrap()
            .unwrap()
            .origin
            .ends_with("good.png"));
        let mut all_bad = ReplaySource::new(vec![bad], true).unwrap();
        assert!(all_bad.next_frame().is_err());
    }

    #[test]
    fn missing_paths_are_named() {
        let err = list_images("/nonexistent/slides").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/slides"), "{err}");
        let cam = CameraConfig {
            format: super::super::camera::PixelFormat::Mjpeg,
            width: 640,
            height: 480,
            fps: 0,
        };
        let err = match open_source(&SourceSpec::File("/nope.png".into()), false, cam) {
            Ok(_) => panic!("missing file accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("/nope.png"), "{err}");
    }
}
