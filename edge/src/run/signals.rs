//! Turning screen states into outputs: GPIO pins (any embedded-hal 1.0
//! `OutputPin`) or console lines.
//!
//! The safe state is every output inactive, heartbeat included: a PLC that
//! watches the heartbeat then sees the screener as stopped, and no lamp claims
//! a result nobody is computing any more. [`PinSignals`] enters that state when
//! it is created, on [`SignalSink::shutdown`], and from `Drop` as a last resort
//! (panic unwinding, early `?` returns).

use std::fmt::Display;
use std::io::Write;

use anyhow::{anyhow, Result};
use embedded_hal::digital::OutputPin;

use super::decision::ScreenState;

/// What a sink is told on a state change.
#[derive(Clone, Copy, Debug)]
pub struct Transition {
    pub frame: u64,
    pub from: ScreenState,
    pub to: ScreenState,
    pub p_malignant: Option<f32>,
    pub smoothed: Option<f32>,
}

/// Where decisions go.
pub trait SignalSink {
    /// Show a new state; only called when the state changed.
    fn show(&mut self, t: &Transition) -> Result<()>;
    /// Called once per processed frame; pin sinks toggle the heartbeat.
    fn heartbeat(&mut self) -> Result<()>;
    /// Put every output in its safe state. Idempotent.
    fn shutdown(&mut self) -> Result<()>;
    /// Each output's logical level as last set, in shutdown order; None when no pins are driven.
    fn outputs(&self) -> Option<[(Role, bool); 4]> {
        None
    }
}

/// The four output lines, one per role.
#[derive(Debug)]
pub struct Pins<P> {
    pub benign: P,
    pub malignant: P,
    pub uncertain: P,
    pub heartbeat: P,
}

/// Output roles, in the order they are switched off on shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Malignant,
    Uncertain,
    Benign,
    Heartbeat,
}

impl Role {
    /// Shutdown order: the malignant line (the PLC's input) first, so even a
    /// shutdown interrupted half-way never leaves an alarm standing alone;
    /// heartbeat last, since it is what says "the screener stopped".
    pub const SHUTDOWN_ORDER: [Role; 4] = [
        Role::Malignant,
        Role::Uncertain,
        Role::Benign,
        Role::Heartbeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Malignant => "malignant",
            Role::Uncertain => "uncertain",
            Role::Benign => "benign",
            Role::Heartbeat => "heartbeat",
        }
    }

    fn lamp_for(state: ScreenState) -> Option<Role> {
        match state {
            ScreenState::Idle => None,
            ScreenState::Benign => Some(Role::Benign),
            ScreenState::Uncertain => Some(Role::Uncertain),
            ScreenState::Malignant => Some(Role::Malignant),
        }
    }
}

impl<P> Pins<P> {
    fn get(&mut self, role: Role) -> &mut P {
        match role {
            Role::Benign => &mut self.benign,
            Role::Malignant => &mut self.malignant,
            Role::Uncertain => &mut self.uncertain,
            Role::Heartbeat => &mut self.heartbeat,
        }
    }
}

/// State lamps plus heartbeat on GPIO pins.
pub struct PinSignals<P: OutputPin> {
    pins: Option<Pins<P>>,
    active_low: bool,
    lamp: Option<Role>,
    beat: bool,
    safe: bool,
}

impl<P: OutputPin> PinSignals<P>
where
    P::Error: Display,
{
    /// Take the pins and drive them all inactive straight away: whatever
    /// the lines held before (a previous crashed run) is not a result of ours.
    pub fn new(pins: Pins<P>, active_low: bool) -> Result<Self> {
        let mut s = PinSignals {
            pins: Some(pins),
            active_low,
            lamp: None,
            beat: false,
            safe: false,
        };
        s.all_off()?;
        Ok(s)
    }

    /// Shut down and hand the pins back (for tests and for reuse).
    pub fn release(mut self) -> Result<Pins<P>> {
        self.shutdown()?;
        Ok(self.pins.take().expect("pins present until released"))
    }

    fn set(&mut self, role: Role, on: bool) -> Result<()> {
        let high = on != self.active_low;
        let pin = self
            .pins
            .as_mut()
            .expect("pins present until released")
            .get(role);
        let r = if high { pin.set_high() } else { pin.set_low() };
        r.map_err(|e| {
            anyhow!(
                "cannot set GPIO {} pin: {}",
                role.as_str(),
                crate::error::one_line(e)
            )
        })
    }

    fn all_off(&mut self) -> Result<()> {
        // Try every pin even if one fails; report the first failure.
        let mut first_err = None;
        for role in Role::SHUTDOWN_ORDER {
            if let Err(e) = self.set(role, false) {
                first_err.get_or_insert(e);
            }
        }
        self.lamp = None;
        self.beat = false;
        self.safe = true;
        first_err.map_or(Ok(()), Err)
    }
}

impl<P: OutputPin> SignalSink for PinSignals<P>
where
    P::Error: Display,
{
    fn show(&mut self, t: &Transition) -> Result<()> {
        let next = Role::lamp_for(t.to);
        if next == self.lamp {
            return Ok(());
        }
        self.safe = false;
        // Break before make: a PLC sampling between the two writes must see
        // "no result", never two results at once.
        if let Some(old) = self.lamp.take() {
            self.set(old, false)?;
        }
        if let Some(new) = next {
            self.set(new, true)?;
            self.lamp = Some(new);
        }
        Ok(())
    }

    fn heartbeat(&mut self) -> Result<()> {
        self.safe = false;
        self.beat = !self.beat;
        self.set(Role::Heartbeat, self.beat)
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.safe || self.pins.is_none() {
            return Ok(());
        }
        self.all_off()
    }

    fn outputs(&self) -> Option<[(Role, bool); 4]> {
        Some(Role::SHUTDOWN_ORDER.map(|role| {
            let on = match role {
                Role::Heartbeat => self.beat,
                lamp => self.lamp == Some(lamp),
            };
            (role, on)
        }))
    }
}

impl<P: OutputPin> Drop for PinSignals<P> {
    fn drop(&mut self) {
        if self.safe {
            return;
        }
        if let Some(pins) = self.pins.as_mut() {
            for role in Role::SHUTDOWN_ORDER {
                let pin = pins.get(role);
                // Nothing left to report to; each pin is still tried.
                let _ = if self.active_low {
                    pin.set_high()
                } else {
                    pin.set_low()
                };
            }
        }
    }
}

/// Without GPIO: one line per state change on stdout.
pub struct ConsoleSignals<W: Write> {
    out: W,
}

impl<W: Write> ConsoleSignals<W> {
    pub fn new(out: W) -> Self {
        ConsoleSignals { out }
    }
}

impl<W: Write> SignalSink for ConsoleSignals<W> {
    fn show(&mut self, t: &Transition) -> Result<()> {
        let fmt_p = |p: Option<f32>| p.map_or_else(|| "-".to_string(), |p| format!("{p:.3}"));
        writeln!(
            self.out,
            "frame {}: {} -> {} (p_malignant {}, smoothed {})",
            t.frame,
            t.from,
            t.to,
            fmt_p(t.p_malignant),
            fmt_p(t.smoothed)
        )?;
        self.out.flush()?;
        Ok(())
    }

    fn heartbeat(&mut self) -> Result<()> {
        Ok(())
    }

    fn shutdown(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

    fn t(from: ScreenState, to: ScreenState) -> Transition {
        Transition {
            frame: 1,
            from,
            to,
            p_malignant: Some(0.5),
            smoothed: Some(0.5),
        }
    }

    fn pins(b: &[T], m: &[T], u: &[T], h: &[T]) -> Pins<Mock> {
        Pins {
            benign: Mock::new(b),
            malignant: Mock::new(m),
            uncertain: Mock::new(u),
            heartbeat: Mock::new(h),
        }
    }

    fn done(p: Pins<Mock>) {
        let Pins {
            mut benign,
            mut malignant,
            mut uncertain,
            mut heartbeat,
        } = p;
        benign.done();
        malignant.done();
        uncertain.done();
        heartbeat.done();
    }

    fn lo() -> T {
        T::set(State::Low)
    }
    fn hi() -> T {
        T::set(State::High)
    }

    #[test]
    fn console_prints_one_line_per_transition() {
        let mut out = Vec::new();
        {
            let mut c = ConsoleSignals::new(&mut out);
            c.show(&t(ScreenState::Idle, ScreenState::Benign)).unwrap();
            c.heartbeat().unwrap();
            c.shutdown().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "frame 1: idle -> benign (p_malignant 0.500, smoothed 0.500)\n"
        );
    }

    #[test]
    fn init_is_all_off_and_states_switch_break_before_make() {
        use ScreenState::*;
        let p = pins(
            // benign: init off, on, off (-> malignant), shutdown off
            &[lo(), hi(), lo(), lo()],
            // malignant: init off, on, off (-> idle), shutdown off
            &[lo(), hi(), lo(), lo()],
            // uncertain: init off, shutdown off
            &[lo(), lo()],
            // heartbeat: init off, two beats, shutdown off
            &[lo(), hi(), lo(), lo()],
        );
        let mut s = PinSignals::new(p, false).unwrap();
        s.show(&t(Idle, Benign)).unwrap();
        s.heartbeat().unwrap();
        // Same lamp again: no pin writes.
        s.show(&t(Benign, Benign)).unwrap();
        s.show(&t(Benign, Malignant)).unwrap();
        s.heartbeat().unwrap();
        s.show(&t(Malignant, Idle)).unwrap();
        done(s.release().unwrap());
    }

    #[test]
    fn shutdown_turns_everything_off_once() {
        use ScreenState::*;
        let p = pins(
            &[lo(), lo()],
            &[lo(), hi(), lo()],
            &[lo(), lo()],
            &[lo(), hi(), lo()],
        );
        let mut s = PinSignals::new(p, false).unwrap();
        s.show(&t(Idle, Malignant)).unwrap();
        s.heartbeat().unwrap();
        s.shutdown().unwrap();
        // Second shutdown (e.g. error path after SIGTERM) writes nothing.
        s.shutdown().unwrap();
        done(s.release().unwrap());
    }

    #[test]
    fn active_low_inverts_every_level() {
        use ScreenState::*;
        let p = pins(
            &[hi(), hi()],
            &[hi(), lo(), hi()],
            &[hi(), hi()],
            &[hi(), lo(), hi()],
        );
        let mut s = PinSignals::new(p, true).unwrap();
        s.show(&t(Idle, Malignant)).unwrap();
        s.heartbeat().unwrap();
        done(s.release().unwrap());
    }

    #[test]
    fn drop_without_shutdown_still_goes_safe() {
        use ScreenState::*;
        let p = pins(
            &[lo(), lo()],
            &[lo(), hi(), lo()],
            &[lo(), lo()],
            &[lo(), hi(), lo()],
        );
        // Clones share expectations, so they can be checked after the drop.
        let keep = Pins {
            benign: p.benign.clone(),
            malignant: p.malignant.clone(),
            uncertain: p.uncertain.clone(),
            heartbeat: p.heartbeat.clone(),
        };
        let mut s = PinSignals::new(p, false).unwrap();
        s.show(&t(Idle, Malignant)).unwrap();
        s.heartbeat().unwrap();
        drop(s);
        done(keep);
    }

    #[test]
    fn a_failing_pin_is_named_and_the_others_are_still_switched_off() {
        use embedded_hal_mock::eh1::MockError;
        let p = pins(
            &[lo()],
            &[lo().with_error(MockError::Io(std::io::ErrorKind::Other))],
            &[lo()],
            &[lo()],
        );
        let err = match PinSignals::new(p.clone_all(), false) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("malignant"), "{err}");
        done(p);
    }

    impl Pins<Mock> {
        fn clone_all(&self) -> Self {
            Pins {
                benign: self.benign.clone(),
                malignant: self.malignant.clone(),
                uncertain: self.uncertain.clone(),
                heartbeat: self.heartbeat.clone(),
            }
        }
    }
}
