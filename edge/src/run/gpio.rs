//! Concrete pins for [`super::signals::PinSignals`]: Linux GPIO character
//! device lines (linux-embedded-hal's `CdevPin`), and a recording pin that
//! writes every level change to a file (`--gpio-trace`, for tests and for
//! dry runs on a machine without the hardware).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};
use embedded_hal::digital::{ErrorKind, ErrorType, OutputPin};
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

use super::signals::{Pins, Role};

/// Line offsets on the GPIO chip for each role (BCM numbers on a Pi).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinNumbers {
    pub benign: u32,
    pub malignant: u32,
    pub uncertain: u32,
    pub heartbeat: u32,
}

impl PinNumbers {
    pub fn line(&self, role: Role) -> u32 {
        match role {
            Role::Malignant => self.malignant,
            Role::Uncertain => self.uncertain,
            Role::Benign => self.benign,
            Role::Heartbeat => self.heartbeat,
        }
    }

    fn by_role(&self) -> [(Role, u32); 4] {
        [
            (Role::Malignant, self.malignant),
            (Role::Uncertain, self.uncertain),
            (Role::Benign, self.benign),
            (Role::Heartbeat, self.heartbeat),
        ]
    }

    /// The lines in shutdown order with the level their safe (inactive) state puts on them,
    /// e.g. `malignant 17, uncertain 22, benign 27, heartbeat 23 low`, for the stop summary.
    pub fn safe_levels(&self, active_low: bool) -> String {
        let lines: Vec<String> = self
            .by_role()
            .iter()
            .map(|(role, line)| format!("{} {line}", role.as_str()))
            .collect();
        let level = if active_low { "high" } else { "low" };
        format!("{} {level}", lines.join(", "))
    }

    /// Two roles on one line would make the lamps lie; refuse it.
    pub fn validate(&self) -> Result<()> {
        let all = self.by_role();
        for (i, (role_a, a)) in all.iter().enumerate() {
            for (role_b, b) in &all[i + 1..] {
                if a == b {
                    bail!(
                        "GPIO pin {a} is given for both --pin-{} and --pin-{}",
                        role_a.as_str(),
                        role_b.as_str()
                    );
                }
            }
        }
        Ok(())
    }
}

/// Request the four lines as outputs, initially at their inactive level.
pub fn open_cdev_pins(
    chip_path: &Path,
    numbers: PinNumbers,
    active_low: bool,
) -> Result<Pins<CdevPin>> {
    numbers.validate()?;
    let mut chip = Chip::new(chip_path).map_err(|e| {
        anyhow!(
            "cannot open GPIO chip {}: {} (check it exists with `gpiodetect` or `ls /dev/gpiochip*`, and that this user may use it, e.g. is in the `gpio` group)",
            chip_path.display(),
            cdev_reason(&e)
        )
    })?;
    let lines = chip.num_lines();
    let inactive = u8::from(active_low);
    let mut request = |role: Role, offset: u32| -> Result<CdevPin> {
        if offset >= lines {
            bail!(
                "GPIO pin {offset} (--pin-{}) does not exist on {}: it has lines 0..{}",
                role.as_str(),
                chip_path.display(),
                lines.saturating_sub(1)
            );
        }
        let ctx = |e: linux_embedded_hal::gpio_cdev::Error| {
            anyhow!(
                "cannot claim GPIO pin {offset} (--pin-{}) on {}: {} (is another program using it? see `gpioinfo`)",
                role.as_str(),
                chip_path.display(),
                cdev_reason(&e)
            )
        };
        let handle = chip
            .get_line(offset)
            .map_err(ctx)?
            .request(LineRequestFlags::OUTPUT, inactive, "histoscreen")
            .map_err(ctx)?;
        CdevPin::new(handle).map_err(ctx)
    };
    Ok(Pins {
        malignant: request(Role::Malignant, numbers.malignant)?,
        uncertain: request(Role::Uncertain, numbers.uncertain)?,
        benign: request(Role::Benign, numbers.benign)?,
        heartbeat: request(Role::Heartbeat, numbers.heartbeat)?,
    })
}

/// gpio-cdev errors print a multi-line chain; keep the first line.
fn cdev_reason(e: &linux_embedded_hal::gpio_cdev::Error) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// A pin that records each level it is set to as `<role> <line> <high|low>`.
pub struct TracePin {
    role: Role,
    line: u32,
    out: Arc<Mutex<File>>,
    path: PathBuf,
}

/// Error of a [`TracePin`]: the trace file could not be written.
#[derive(Debug)]
pub struct TraceError(pub String);

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl embedded_hal::digital::Error for TraceError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl ErrorType for TracePin {
    type Error = TraceError;
}

impl TracePin {
    fn record(&mut self, level: &str) -> Result<(), TraceError> {
        let line = format!("{} {} {level}\n", self.role.as_str(), self.line);
        let mut f = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line, unbuffered: a killed process leaves whole lines.
        f.write_all(line.as_bytes())
            .map_err(|e| TraceError(format!("{}: {e}", self.path.display())))
    }
}

impl OutputPin for TracePin {
    fn set_low(&mut self) -> Result<(), TraceError> {
        self.record("low")
    }

    fn set_high(&mut self) -> Result<(), TraceError> {
        self.record("high")
    }
}

/// Four trace pins sharing one file (created or truncated).
pub fn open_trace_pins(path: &Path, numbers: PinNumbers) -> Result<Pins<TracePin>> {
    numbers.validate()?;
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| anyhow!("cannot open GPIO trace {}: {e}", path.display()))?;
    let out = Arc::new(Mutex::new(file));
    let pin = |role: Role, line: u32| TracePin {
        role,
        line,
        out: out.clone(),
        path: path.to_path_buf(),
    };
    Ok(Pins {
        benign: pin(Role::Benign, numbers.benign),
        malignant: pin(Role::Malignant, numbers.malignant),
        uncertain: pin(Role::Uncertain, numbers.uncertain),
        heartbeat: pin(Role::Heartbeat, numbers.heartbeat),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: PinNumbers = PinNumbers {
        benign: 27,
        malignant: 17,
        uncertain: 22,
        heartbeat: 23,
    };

    #[test]
    fn duplicate_pins_are_refused_naming_both_roles() {
        let bad = PinNumbers {
            heartbeat: 17,
            ..DEFAULT
        };
        let err = bad.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "GPIO pin 17 is given for both --pin-malignant and --pin-heartbeat"
        );
        assert!(DEFAULT.validate().is_ok());
    }

    #[test]
    fn safe_levels_list_every_line_in_shutdown_order() {
        assert_eq!(
            DEFAULT.safe_levels(false),
            "malignant 17, uncertain 22, benign 27, heartbeat 23 low"
        );
        assert!(DEFAULT.safe_levels(true).ends_with("heartbeat 23 high"));
    }

    #[test]
    fn missing_chip_error_names_the_chip() {
        let err = match open_cdev_pins(Path::new("/dev/gpiochip-missing"), DEFAULT, false) {
            Ok(_) => panic!("no such chip here"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("/dev/gpiochip-missing"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn trace_pins_record_levels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace");
        let mut pins = open_trace_pins(&path, DEFAULT).unwrap();
        pins.malignant.set_high().unwrap();
        pins.heartbeat.set_low().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "malignant 17 high\nheartbeat 23 low\n");
    }
}
