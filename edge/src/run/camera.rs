//! V4L2 camera frames (`--source camera:/dev/video0`).
//!
//! The device code needs the `camera` feature (v4l's bindings are generated
//! with bindgen, so building it needs libclang). Pixel conversion and the
//! wording of device errors do not, so they are always compiled and tested.

use std::io;
use std::path::Path;

use anyhow::{bail, Result};
use image::RgbImage;

/// Pixel formats we ask the camera for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// Motion JPEG: small frames over USB, decoded on the CPU.
    Mjpeg,
    /// Packed YUV 4:2:2 (Y0 U Y1 V): no decode cost, but USB bandwidth
    /// limits it to low resolutions or frame rates on most webcams.
    Yuyv,
}

impl PixelFormat {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mjpeg" | "mjpg" => Ok(PixelFormat::Mjpeg),
            "yuyv" | "yuy2" => Ok(PixelFormat::Yuyv),
            other => bail!("unknown camera format {other:?}: use mjpeg or yuyv"),
        }
    }

    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Yuyv => *b"YUYV",
        }
    }
}

/// What to ask the camera for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CameraConfig {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Requested frame rate; 0 leaves the driver's default.
    pub fps: u32,
}

/// Convert one packed YUYV (YUY2) frame to RGB (BT.601, limited range, which
/// is what UVC webcams send).
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbImage> {
    let need = width as usize * height as usize * 2;
    if width & 1 != 0 || data.len() < need {
        bail!(
            "YUYV frame of {} bytes does not hold {width}x{height} pixels",
            data.len()
        );
    }
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for (src, dst) in data[..need].chunks_exact(4).zip(out.chunks_exact_mut(6)) {
        let (y0, u, y1, v) = (src[0], src[1], src[2], src[3]);
        dst[..3].copy_from_slice(&ycbcr_to_rgb(y0, u, v));
        dst[3..].copy_from_slice(&ycbcr_to_rgb(y1, u, v));
    }
    Ok(RgbImage::from_raw(width, height, out).expect("buffer sized for the frame"))
}

fn ycbcr_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (f32::from(y) - 16.0) * 1.164;
    let d = f32::from(u) - 128.0;
    let e = f32::from(v) - 128.0;
    let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    [
        clamp(c + 1.596 * e),
        clamp(c - 0.392 * d - 0.813 * e),
        clamp(c + 2.017 * d),
    ]
}

/// One-line explanation of a failure to open or start `device`, with what
/// to check; the raw errno text alone does not tell a lab user what to do.
pub fn describe_open_error(device: &Path, err: &io::Error) -> String {
    let dev = device.display();
    match err.raw_os_error() {
        Some(libc_errno::ENOENT) | Some(libc_errno::ENODEV) | Some(libc_errno::ENXIO) => format!(
            "camera {dev} not found: check it is plugged in and listed by `v4l2-ctl --list-devices`"
        ),
        Some(libc_errno::EACCES) | Some(libc_errno::EPERM) => format!(
            "camera {dev}: permission denied: add this user to the `video` group (`sudo usermod -aG video $USER`, then log in again)"
        ),
        Some(libc_errno::EBUSY) => format!(
            "camera {dev} is busy: another program is streaming from it (find it with `fuser {dev}`)"
        ),
        _ => format!(
            "cannot use camera {dev}: {err} (check `v4l2-ctl --list-devices` and `v4l2-ctl -d {dev} --list-formats-ext`)"
        ),
    }
}

/// The few errno values we explain; spelled out so this file does not need
/// libc outside the `camera` feature.
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const ENXIO: i32 = 6;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const ENODEV: i32 = 19;
}

#[cfg(feature = "camera")]
pub use device::CameraSource;

#[cfg(feature = "camera")]
mod device {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use anyhow::{anyhow, bail, Result};
    use v4l::buffer::Type;
    use v4l::io::mmap::Stream;
    use v4l::io::traits::CaptureStream;
    use v4l::video::capture::Parameters;
    use v4l::video::Capture;
    use v4l::{Device, Format, FourCC};

    use super::{describe_open_error, yuyv_to_rgb, CameraConfig, PixelFormat};
    use crate::run::frame::{Frame, FrameSource};

    /// A streaming V4L2 capture device.
    pub struct CameraSource {
        path: PathBuf,
        format: PixelFormat,
        width: u32,
        height: u32,
        // Declared before `_device` so the stream is stopped before the fd
        // closes.
        stream: Stream<'static>,
        _device: Device,
        seq: u64,
    }

    impl CameraSource {
        pub fn open(path: &Path, cfg: CameraConfig) -> Result<Self> {
            let dev =
                Device::with_path(path).map_err(|e| anyhow!(describe_open_error(path, &e)))?;
            let wanted = Format::new(cfg.width, cfg.height, FourCC::new(&cfg.format.fourcc()));
            let got = dev
                .set_format(&wanted)
                .map_err(|e| anyhow!(describe_open_error(path, &e)))?;
            if got.fourcc != wanted.fourcc {
                bail!(
                    "camera {} does not deliver {} (it offers {}): try --camera-format {}, see `v4l2-ctl -d {} --list-formats-ext`",
                    path.display(),
                    wanted.fourcc,
                    got.fourcc,
                    if cfg.format == PixelFormat::Mjpeg { "yuyv" } else { "mjpeg" },
                    path.display()
                );
            }
            if cfg.fps > 0 {
                // Drivers round to the nearest rate they support; not fatal.
                let _ = dev.set_params(&Parameters::with_fps(cfg.fps));
            }
            let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4)
                .map_err(|e| anyhow!(describe_open_error(path, &e)))?;
            // A camera that stops delivering must surface as an error, not
            // hang the capture thread forever.
            stream.set_timeout(Duration::from_secs(5));
            Ok(CameraSource {
                path: path.to_path_buf(),
                format: cfg.format,
                width: got.width,
                height: got.height,
                stream,
                _device: dev,
                seq: 0,
            })
        }
    }

    impl FrameSource for CameraSource {
        fn next_frame(&mut self) -> Result<Option<Frame>> {
            loop {
                let (buf, meta) = self.stream.next().map_err(|e| {
                    anyhow!("{} (while capturing)", describe_open_error(&self.path, &e))
                })?;
                let captured = Instant::now();
                let used = (meta.bytesused as usize).min(buf.len());
                let data = &buf[..used];
                let image = match self.format {
                    PixelFormat::Mjpeg => crate::preprocess::decode_image(data, "camera frame")
                        .map_err(anyhow::Error::from),
                    PixelFormat::Yuyv => yuyv_to_rgb(data, self.width, self.height),
                };
                self.seq += 1;
                match image {
                    Ok(image) => {
                        return Ok(Some(Frame {
                            seq: self.seq,
                            captured,
                            image,
                            origin: format!("{}#{}", self.path.display(), meta.sequence),
                        }))
                    }
                    // USB glitches produce the odd corrupt MJPEG frame; the
                    // next one is usually fine, so skip rather than stop.
                    Err(e) => eprintln!(
                        "histoscreen-edge: skipping camera frame {}: {e:#}",
                        self.seq
                    ),
                }
            }
        }

        fn describe(&self) -> String {
            format!(
                "camera {} {}x{} {}",
                self.path.display(),
                self.width,
                self.height,
                if self.format == PixelFormat::Mjpeg {
                    "mjpeg"
                } else {
                    "yuyv"
                }
            )
        }

        fn is_live(&self) -> bool {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_grey_and_colour_pixels() {
        // Two pixels sharing chroma: black and white (neutral chroma), then
        // a saturated red pair (Y=81, U=90, V=240 in BT.601 limited range).
        let data = [16, 128, 235, 128, 81, 90, 81, 240];
        let img = yuyv_to_rgb(&data, 4, 1).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        let red = img.get_pixel(2, 0).0;
        assert!(red[0] > 240 && red[1] < 10 && red[2] < 10, "{red:?}");
    }

    #[test]
    fn short_yuyv_buffer_is_an_error() {
        let err = yuyv_to_rgb(&[0; 10], 4, 2).unwrap_err().to_string();
        assert!(err.contains("4x2"), "{err}");
    }

    #[test]
    fn open_errors_say_what_to_check() {
        let dev = Path::new("/dev/video7");
        let msg = |code| describe_open_error(dev, &io::Error::from_raw_os_error(code));
        assert!(msg(2).contains("v4l2-ctl --list-devices"));
        assert!(msg(13).contains("`video` group"));
        assert!(msg(16).contains("busy"));
        for code in [2, 13, 16, 5] {
            let m = msg(code);
            assert!(m.contains("/dev/video7") && !m.contains('\n'), "{m}");
        }
    }

    #[test]
    fn pixel_format_names() {
        assert_eq!(PixelFormat::parse("MJPG").unwrap(), PixelFormat::Mjpeg);
        assert_eq!(PixelFormat::parse("yuyv").unwrap(), PixelFormat::Yuyv);
        assert!(PixelFormat::parse("h264").is_err());
    }
}
