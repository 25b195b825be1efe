//! When a camera's frame is worth a pass of the model: something moves (at the camera's detect
//! rate), or people are tracked who may have stopped moving (at the slow idle rate), or the camera
//! has never been looked at. A still, empty scene costs no inference after its first check.

/// Why a frame goes to the model, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The camera's first frame (or first after a restart): who is there?
    FirstCheck,
    /// Something moves.
    Motion,
    /// People are tracked but nothing moves: a fallen or sleeping person is re-checked now and then,
    /// so that stillness neither loses them nor ends their events.
    IdleCheck,
    /// Motion or tracking, but the detect rate allows no pass yet.
    RateLimited,
    /// Nothing moves and nobody is tracked.
    NoMotion,
}

impl Decision {
    pub fn detect(self) -> bool {
        matches!(self, Decision::FirstCheck | Decision::Motion | Decision::IdleCheck)
    }
}

/// A pass earns this fraction of a token less than one: frames that arrive a little early (jitter)
/// still go, so a 5 fps detect rate on a 10 fps camera takes every other frame.
const JITTER_TOLERANCE: f64 = 0.05;
/// Tokens saved up while nothing moved: at most this many passes in a burst when motion starts.
const MAX_TOKENS: f64 = 1.5;

/// Paces one camera's passes. Times are seconds on a monotonic clock.
#[derive(Debug, Clone)]
pub struct DetectGate {
    /// Passes per second while something moves; 0 means every frame.
    detect_fps: f64,
    idle_interval: f64,
    tokens: f64,
    last_tick: Option<f64>,
    last_pass: Option<f64>,
}

impl DetectGate {
    pub fn new(detect_fps: f64, idle_interval_secs: f64) -> Self {
        Self { detect_fps, idle_interval: idle_interval_secs, tokens: MAX_TOKENS, last_tick: None, last_pass: None }
    }

    pub fn set_rates(&mut self, detect_fps: f64, idle_interval_secs: f64) {
        self.detect_fps = detect_fps;
        self.idle_interval = idle_interval_secs;
    }

    /// What to do with the frame arriving at `now`; a frame that goes to the model is counted as a pass.
    pub fn decide(&mut self, now: f64, moving: bool, tracking: bool) -> Decision {
        if let Some(last) = self.last_tick {
            self.tokens = (self.tokens + (now - last).max(0.0) * self.detect_fps).min(MAX_TOKENS);
        }
        self.last_tick = Some(now);
        let decision = match self.last_pass {
            None => Decision::FirstCheck,
            Some(_) if moving && self.detect_fps <= 0.0 => Decision::Motion,
            Some(_) if moving && self.tokens >= 1.0 - JITTER_TOLERANCE => Decision::Motion,
            Some(last) if tracking && now - last >= self.idle_interval * (1.0 - JITTER_TOLERANCE) => {
                Decision::IdleCheck
            }
            Some(_) if moving || tracking => Decision::RateLimited,
            Some(_) => Decision::NoMotion,
        };
        if decision.detect() {
            self.tokens = (self.tokens - 1.0).max(0.0);
            self.last_pass = Some(now);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the gate over `secs` of frames at `fps` and counts the passes.
    fn passes(gate: &mut DetectGate, start: f64, secs: f64, fps: f64, moving: bool, tracking: bool) -> usize {
        let n = (secs * fps).round() as usize;
        (0..n).filter(|i| gate.decide(start + *i as f64 / fps, moving, tracking).detect()).count()
    }

    #[test]
    fn a_still_empty_scene_is_looked_at_once() {
        let mut gate = DetectGate::new(5.0, 1.0);
        assert_eq!(gate.decide(0.0, false, false), Decision::FirstCheck);
        assert_eq!(passes(&mut gate, 0.1, 600.0, 10.0, false, false), 0);
        assert_eq!(gate.decide(601.0, false, false), Decision::NoMotion);
    }

    #[test]
    fn motion_is_looked_at_the_detect_rate() {
        let mut gate = DetectGate::new(5.0, 1.0);
        gate.decide(0.0, false, false);
        let n = passes(&mut gate, 0.1, 60.0, 10.0, true, false);
        assert!((299..=302).contains(&n), "{n} passes in 60 s at 5 fps");
        // A rate that does not divide the camera's: 7.5 fps camera, 5 fps detection.
        let mut gate = DetectGate::new(5.0, 1.0);
        let n = passes(&mut gate, 0.0, 60.0, 7.5, true, false);
        assert!((298..=303).contains(&n), "{n} passes in 60 s");
    }

    #[test]
    fn frames_arriving_a_little_early_still_keep_the_rate() {
        let mut gate = DetectGate::new(5.0, 1.0);
        gate.decide(0.0, true, false);
        // 10 fps with +-3 ms of jitter.
        let n = (1..600).filter(|i| gate.decide(*i as f64 * 0.1 + if i % 2 == 0 { 0.003 } else { -0.003 }, true, false).detect()).count();
        assert!((297..=301).contains(&n), "{n}");
    }

    #[test]
    fn detect_fps_zero_looks_at_every_moving_frame() {
        let mut gate = DetectGate::new(0.0, 1.0);
        gate.decide(0.0, false, false);
        assert_eq!(passes(&mut gate, 0.1, 10.0, 10.0, true, false), 100);
    }

    #[test]
    fn a_still_tracked_person_is_rechecked_at_the_idle_rate() {
        let mut gate = DetectGate::new(5.0, 1.0);
        gate.decide(0.0, true, true);
        let n = passes(&mut gate, 0.1, 60.0, 10.0, false, true);
        assert!((59..=60).contains(&n), "{n} re-checks in 60 s");
    }

    #[test]
    fn motion_after_a_quiet_spell_is_looked_at_at_once() {
        let mut gate = DetectGate::new(5.0, 1.0);
        gate.decide(0.0, false, false);
        passes(&mut gate, 0.1, 30.0, 10.0, false, false);
        assert_eq!(gate.decide(30.1, true, false), Decision::Motion);
        assert_eq!(gate.decide(30.2, true, false), Decision::Motion, "a saved half token");
        assert_eq!(gate.decide(30.3, true, false), Decision::RateLimited);
    }
}
