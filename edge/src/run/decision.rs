//! The screening state machine: per-frame scores in, a debounced state out.
//!
//! Single frames are noisy (focus breathing, a cell drifting across the tile
//! border), and a flickering malignant LED or PLC input is worse than useless,
//! so scores are smoothed (EMA or k-of-n voting) and the malignant state uses
//! hysteresis: it is entered above `hi` and only left below `lo`. Pure logic,
//! no clock and no I/O, so every transition is unit tested.

use std::collections::VecDeque;
use std::fmt;

use serde::Serialize;

/// What the signals show.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ScreenState {
    /// Nothing worth judging in view: blank slide, stage moving, out of focus.
    Idle,
    Benign,
    Uncertain,
    Malignant,
}

impl ScreenState {
    pub fn as_str(self) -> &'static str {
        match self {
            ScreenState::Idle => "idle",
            ScreenState::Benign => "benign",
            ScreenState::Uncertain => "uncertain",
            ScreenState::Malignant => "malignant",
        }
    }
}

impl fmt::Display for ScreenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How per-frame probabilities are combined before thresholding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// `s = alpha * p + (1 - alpha) * s`; alpha = 1 means no smoothing.
    Ema { alpha: f32 },
    /// Malignant needs `k` of the last `n` frames at or above `hi`.
    KOfN { k: usize, n: usize },
}

impl fmt::Display for Smoothing {
    /// As the status line shows it, in the words of the flags that set it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Smoothing::Ema { alpha } if *alpha >= 1.0 => f.write_str("no smoothing (ema alpha 1)"),
            Smoothing::Ema { alpha } => write!(f, "ema alpha {alpha}"),
            Smoothing::KOfN { k, n } => write!(f, "vote {k} of {n}"),
        }
    }
}

/// Thresholds and smoothing for [`Decider`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecisionConfig {
    pub smoothing: Smoothing,
    /// Enter malignant at or above this smoothed score.
    pub hi: f32,
    /// Leave malignant below this smoothed score; below it is benign.
    pub lo: f32,
}

impl DecisionConfig {
    /// Thresholds from a model card: its uncertain band around the threshold
    /// becomes the hysteresis gap, so the live loop and single-image
    /// `classify` agree on what counts as sure.
    pub fn from_card(threshold: f32, uncertain_band: f32, smoothing: Smoothing) -> Self {
        DecisionConfig {
            smoothing,
            hi: (threshold + uncertain_band).min(1.0),
            lo: (threshold - uncertain_band).max(0.0),
        }
    }

    /// Refuse configurations that would make a state unreachable or stuck.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.lo) || !(0.0..=1.0).contains(&self.hi) {
            return Err(format!(
                "thresholds must lie in [0, 1] (lo {}, hi {})",
                self.lo, self.hi
            ));
        }
        if self.lo > self.hi {
            return Err(format!(
                "low threshold {} is above high threshold {}",
                self.lo, self.hi
            ));
        }
        match self.smoothing {
            Smoothing::Ema { alpha } if !(alpha > 0.0 && alpha <= 1.0) => {
                Err(format!("--ema {alpha} must be in (0, 1]"))
            }
            Smoothing::KOfN { k, n } if k == 0 || n == 0 || k > n => {
                Err(format!("--vote {k}/{n} needs 1 <= k <= n"))
            }
            _ => Ok(()),
        }
    }
}

/// One frame's input to the decider.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Observation {
    /// The frame is not worth classifying (blank, blurred, moving).
    Unsharp,
    /// Malignant probability for a classified frame.
    Score(f32),
}

/// The decider's answer for one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub state: ScreenState,
    /// The value the thresholds were applied to (EMA, or the fraction of
    /// malignant votes); `None` while idle.
    pub smoothed: Option<f32>,
    /// True when `state` differs from the previous frame's.
    pub changed: bool,
}

/// Stateful decider; feed it one observation per processed frame.
#[derive(Debug)]
pub struct Decider {
    cfg: DecisionConfig,
    state: ScreenState,
    ema: Option<f32>,
    window: VecDeque<f32>,
}

impl Decider {
    pub fn new(cfg: DecisionConfig) -> Self {
        Decider {
            cfg,
            state: ScreenState::Idle,
            ema: None,
            window: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ScreenState {
        self.state
    }

    pub fn observe(&mut self, obs: Observation) -> Decision {
        let previous = self.state;
        let (state, smoothed) = match obs {
            Observation::Unsharp => {
                // A new field of view after the stage stops must be judged on
                // its own frames, not on the EMA/votes of the previous one.
                self.ema = None;
                self.window.clear();
                (ScreenState::Idle, None)
            }
            Observation::Score(p) => {
                let p = if p.is_finite() {
                    p.clamp(0.0, 1.0)
                } else {
                    1.0
                };
                match self.cfg.smoothing {
                    Smoothing::Ema { alpha } => self.step_ema(p, alpha),
                    Smoothing::KOfN { k, n } => self.step_votes(p, k, n),
                }
            }
        };
        self.state = state;
        Decision {
            state,
            smoothed,
            changed: state != previous,
        }
    }

    fn step_ema(&mut self, p: f32, alpha: f32) -> (ScreenState, Option<f32>) {
        let s = match self.ema {
            Some(prev) => alpha * p + (1.0 - alpha) * prev,
            None => p,
        };
        self.ema = Some(s);
        let stays_malignant = self.state == ScreenState::Malignant && s >= self.cfg.lo;
        let state = if s >= self.cfg.hi || stays_malignant {
            ScreenState::Malignant
        } else if s < self.cfg.lo {
            ScreenState::Benign
        } else {
            ScreenState::Uncertain
        };
        (state, Some(s))
    }

    fn step_votes(&mut self, p: f32, k: usize, n: usize) -> (ScreenState, Option<f32>) {
        self.window.push_back(p);
        while self.window.len() > n {
            self.window.pop_front();
        }
        let count = |pred: &dyn Fn(f32) -> bool| self.window.iter().filter(|&&q| pred(q)).count();
        let above_hi = count(&|q| q >= self.cfg.hi);
        let at_least_lo = count(&|q| q >= self.cfg.lo);
        let below_lo = self.window.len() - at_least_lo;
        let state = if above_hi >= k || (self.state == ScreenState::Malignant && at_least_lo >= k) {
            ScreenState::Malignant
        } else if below_lo >= k {
            ScreenState::Benign
        } else {
            // Not enough agreeing votes yet (including right after idle).
            ScreenState::Uncertain
        };
        (state, Some(above_hi as f32 / n as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ema(alpha: f32) -> Decider {
        Decider::new(DecisionConfig {
            smoothing: Smoothing::Ema { alpha },
            hi: 0.7,
            lo: 0.3,
        })
    }

    fn states(d: &mut Decider, obs: &[Observation]) -> Vec<ScreenState> {
        obs.iter().map(|o| d.observe(*o).state).collect()
    }

    use Observation::{Score, Unsharp};
    use ScreenState::{Benign, Idle, Malignant, Uncertain};

    #[test]
    fn starts_idle_and_first_score_is_taken_as_is() {
        let mut d = ema(0.3);
        assert_eq!(d.state(), Idle);
        let first = d.observe(Score(0.9));
        assert_eq!(first.state, Malignant);
        assert_eq!(first.smoothed, Some(0.9));
        assert!(first.changed);
    }

    #[test]
    fn hysteresis_keeps_malignant_until_below_lo() {
        let mut d = ema(1.0);
        let got = states(
            &mut d,
            &[Score(0.8), Score(0.5), Score(0.31), Score(0.29), Score(0.5)],
        );
        assert_eq!(
            got,
            vec![Malignant, Malignant, Malignant, Benign, Uncertain]
        );
    }

    #[test]
    fn between_thresholds_is_uncertain_unless_already_malignant() {
        let mut d = ema(1.0);
        assert_eq!(
            states(&mut d, &[Score(0.1), Score(0.5), Score(0.69), Score(0.7)]),
            vec![Benign, Uncertain, Uncertain, Malignant]
        );
    }

    #[test]
    fn ema_needs_several_high_frames_to_raise_the_alarm() {
        let mut d = ema(0.3);
        d.observe(Score(0.1));
        // 0.1 -> 0.37 -> 0.559 -> 0.6913 -> 0.78391
        let got = states(&mut d, &[Score(1.0), Score(1.0), Score(1.0), Score(1.0)]);
        assert_eq!(got, vec![Uncertain, Uncertain, Uncertain, Malignant]);
    }

    #[test]
    fn a_single_spike_does_not_flip_a_benign_field() {
        let mut d = ema(0.3);
        let got = states(
            &mut d,
            &[Score(0.05), Score(0.99), Score(0.05), Score(0.05)],
        );
        assert!(!got.contains(&Malignant), "{got:?}");
    }

    #[test]
    fn unsharp_frames_go_idle_and_reset_the_history() {
        let mut d = ema(0.3);
        assert_eq!(d.observe(Score(0.95)).state, Malignant);
        let idle = d.observe(Unsharp);
        assert_eq!(idle.state, Idle);
        assert_eq!(idle.smoothed, None);
        assert!(idle.changed);
        // Without the reset the old 0.95 would drag this up to uncertain.
        let next = d.observe(Score(0.1));
        assert_eq!(next.state, Benign);
        assert_eq!(next.smoothed, Some(0.1));
    }

    #[test]
    fn changed_is_only_set_on_transitions() {
        let mut d = ema(1.0);
        let flags: Vec<bool> = [
            Score(0.1),
            Score(0.2),
            Score(0.9),
            Score(0.9),
            Unsharp,
            Unsharp,
        ]
        .iter()
        .map(|o| d.observe(*o).changed)
        .collect();
        assert_eq!(flags, vec![true, false, true, false, true, false]);
    }

    #[test]
    fn non_finite_scores_fail_safe_towards_malignant() {
        let mut d = ema(1.0);
        assert_eq!(d.observe(Score(f32::NAN)).state, Malignant);
    }

    #[test]
    fn k_of_n_votes() {
        let mut d = Decider::new(DecisionConfig {
            smoothing: Smoothing::KOfN { k: 2, n: 3 },
            hi: 0.7,
            lo: 0.3,
        });
        let got = states(
            &mut d,
            &[
                Score(0.9), // 1 high vote of 1: not yet
                Score(0.1), // 1 high, 1 low
                Score(0.8), // 2 high of 3: malignant
                Score(0.5), // window .1 .8 .5: only 1 high, but 2 >= lo: stays
                Score(0.1), // window .8 .5 .1: 2 >= lo: stays
                Score(0.1), // window .5 .1 .1: 2 below lo: benign
            ],
        );
        assert_eq!(
            got,
            vec![Uncertain, Uncertain, Malignant, Malignant, Malignant, Benign]
        );
        assert_eq!(d.observe(Unsharp).state, Idle);
        // Votes were cleared: one high vote is not enough again.
        assert_eq!(d.observe(Score(0.9)).state, Uncertain);
    }

    #[test]
    fn thresholds_from_card_band() {
        let cfg = DecisionConfig::from_card(0.4, 0.1, Smoothing::Ema { alpha: 0.3 });
        assert!((cfg.hi - 0.5).abs() < 1e-6 && (cfg.lo - 0.3).abs() < 1e-6);
        assert!(cfg.validate().is_ok());
        let bad = DecisionConfig {
            smoothing: Smoothing::KOfN { k: 4, n: 3 },
            ..cfg
        };
        assert!(bad.validate().unwrap_err().contains("4/3"));
        let bad = DecisionConfig {
            smoothing: Smoothing::Ema { alpha: 0.0 },
            ..cfg
        };
        assert!(bad.validate().is_err());
        let inverted = DecisionConfig { hi: 0.2, ..cfg };
        assert!(inverted.validate().is_err());
    }

    #[test]
    fn smoothing_reads_as_words_not_rust() {
        assert_eq!(Smoothing::Ema { alpha: 0.3 }.to_string(), "ema alpha 0.3");
        assert_eq!(Smoothing::KOfN { k: 3, n: 5 }.to_string(), "vote 3 of 5");
        assert_eq!(
            Smoothing::Ema { alpha: 1.0 }.to_string(),
            "no smoothing (ema alpha 1)"
        );
    }
}
