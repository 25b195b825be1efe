//! Fall detection on one tracked person's pose, frame after frame (see `docs/events.md` for the rule).
//!
//! Per frame: a "down" score from the torso angle (shoulder midpoint to hip midpoint against the
//! vertical) and the box's aspect (wider than tall), smoothed over time; and the hips' drop within
//! the last second relative to the body's length. A fall is a down pose that began right after a fast
//! drop of the hips and lasted `min_duration_secs`. A person first seen lying (in bed, on a sofa)
//! or who lies down slowly raises nothing; standing up again (up for `RECOVER_SECS`) ends the fall and
//! re-arms the detector.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use crate::config::{check_within, ConfigError};

/// COCO keypoint indices.
const L_SHOULDER: usize = 5;
const R_SHOULDER: usize = 6;
const L_HIP: usize = 11;
const R_HIP: usize = 12;

/// A keypoint counts when the network is at least this sure of it.
pub const KEYPOINT_MIN_CONF: f32 = 0.3;
/// Time constant of the exponential smoothing of the down score.
const SMOOTHING_SECS: f64 = 0.3;
/// The hips' drop is measured over this window...
const DROP_WINDOW_SECS: f64 = 1.0;
/// ...against the body's length: the largest box side seen over this window.
const HISTORY_SECS: f64 = 3.0;
/// A down pose is a fall only if the fast drop happened at most this long before it began.
const DESCENT_LOOKBACK_SECS: f64 = 2.0;
/// A drop this fraction of the rule's own is enough to ask the fall model (which then has to see the
/// person down): a person falling towards the camera drops less, in body lengths, than one seen side on.
const ASK_DROP_FACTOR: f32 = 0.6;
/// A fallen person must be up this long for the fall to end.
const RECOVER_SECS: f64 = 1.0;
/// Torso angle (degrees from vertical) where the angle evidence starts, and where it is full.
const ANGLE_LOW: f32 = 30.0;
const ANGLE_HIGH: f32 = 60.0;
/// Box width / height where the aspect evidence starts, and where it is full.
const ASPECT_LOW: f32 = 0.6;
const ASPECT_HIGH: f32 = 1.2;
/// Weights of the two pieces of evidence in the down score.
const ANGLE_WEIGHT: f32 = 0.6;
const ASPECT_WEIGHT: f32 = 0.4;

/// Per camera (`[events.fall]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallConfig {
    pub enabled: bool,
    /// 0 (only clear, fast falls) to 1 (anything that looks like one); 0.5 by default.
    pub sensitivity: f32,
    /// How long the person must stay down after the drop before the fall is raised.
    pub min_duration_secs: f32,
    /// The fall model (`[models.<name>]`: a detect model with a class `Fall`) that looks where the pose
    /// saw someone who was upright drop, turn towards lying or vanish, and sees them lying where the
    /// pose model no longer does; "" (or a model that is not loaded): the pose rule alone.
    pub model: String,
    /// A fall still going on this long after it was raised becomes a long lie (published again,
    /// `long_lie: true`): the person has not got up. 0: never.
    pub long_lie_secs: f32,
}

/// The longest `long_lie_secs` may be (a day).
pub const MAX_LONG_LIE_SECS: f64 = 86_400.0;

impl Default for FallConfig {
    fn default() -> Self {
        Self { enabled: true, sensitivity: 0.5, min_duration_secs: 1.5, model: "fall".into(), long_lie_secs: 60.0 }
    }
}

impl FallConfig {
    /// The thresholds the sensitivity stands for.
    pub fn thresholds(&self) -> Thresholds {
        let s = self.sensitivity.clamp(0.0, 1.0);
        let on = 0.8 - 0.3 * s;
        Thresholds { down_on: on, down_off: on - 0.25, drop: 0.35 - 0.2 * s, model_fall: 0.5 - 0.3 * s }
    }
}

/// What a sensitivity means (at 0.5: down at 0.65, up below 0.40, drop of 0.25 body lengths, the
/// fall model's `Fall` from 0.35).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Smoothed down score at which a pose counts as down.
    pub down_on: f32,
    /// ...and under which a down pose counts as up again (hysteresis).
    pub down_off: f32,
    /// Drop of the hips within `DROP_WINDOW_SECS`, as a fraction of the body's length.
    pub drop: f32,
    /// The fall model's `Fall` score from which a look counts as seeing the person down.
    pub model_fall: f32,
}

/// The geometry of one pose, as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseFeatures {
    /// Torso angle from vertical, degrees (0 upright, 90 horizontal); `None` without a shoulder and a hip.
    pub torso_angle: Option<f32>,
    /// Box width / height.
    pub aspect: f32,
    /// Image y of the hips' midpoint (the box's centre when no hip is seen).
    pub hip_y: f32,
    /// The box's larger side: the body's length whether standing or lying.
    pub size: f32,
}

fn visible(kp: &[[f32; 3]], i: usize) -> Option<(f32, f32)> {
    kp.get(i).filter(|k| k[2] >= KEYPOINT_MIN_CONF && k[0].is_finite() && k[1].is_finite()).map(|k| (k[0], k[1]))
}

fn midpoint(kp: &[[f32; 3]], a: usize, b: usize) -> Option<(f32, f32)> {
    match (visible(kp, a), visible(kp, b)) {
        (Some(p), Some(q)) => Some(((p.0 + q.0) / 2.0, (p.1 + q.1) / 2.0)),
        (Some(p), None) | (None, Some(p)) => Some(p),
        (None, None) => None,
    }
}

pub fn features(keypoints: &[[f32; 3]], bbox: [f32; 4]) -> PoseFeatures {
    let w = (bbox[2] - bbox[0]).max(1.0);
    let h = (bbox[3] - bbox[1]).max(1.0);
    let shoulders = midpoint(keypoints, L_SHOULDER, R_SHOULDER);
    let hips = midpoint(keypoints, L_HIP, R_HIP);
    let torso_angle = match (shoulders, hips) {
        (Some(s), Some(h)) => {
            let (dx, dy) = (s.0 - h.0, s.1 - h.1);
            (dx * dx + dy * dy > 1.0).then(|| dx.abs().atan2(dy.abs()).to_degrees())
        }
        _ => None,
    };
    PoseFeatures {
        torso_angle,
        aspect: w / h,
        hip_y: hips.map(|p| p.1).unwrap_or((bbox[1] + bbox[3]) / 2.0),
        size: w.max(h),
    }
}

pub(crate) fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

fn ramp(v: f32, low: f32, high: f32) -> f32 {
    ((v - low) / (high - low)).clamp(0.0, 1.0)
}

/// The unsmoothed down score of one pose in [0, 1]; `None` when the torso is not seen.
pub fn down_score(f: &PoseFeatures) -> Option<f32> {
    let angle = f.torso_angle?;
    Some(ANGLE_WEIGHT * ramp(angle, ANGLE_LOW, ANGLE_HIGH) + ASPECT_WEIGHT * ramp(f.aspect, ASPECT_LOW, ASPECT_HIGH))
}

/// Why a fall was raised: the evidence and its scores, as the event carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallReason {
    /// What raised it: "pose" (the rule on the tracked pose), "model" (the fall model's looks), or
    /// "pose+model" (both agreed).
    pub by: String,
    /// One line for people: what was seen, with the scores.
    pub summary: String,
    /// The pose's down score (0 upright .. 1 lying), averaged while down.
    pub pose_down: Option<f32>,
    /// How far the hips fell within a second, in body lengths.
    pub drop: Option<f32>,
    /// The fall model's mean `Fall` score over its looks that said so.
    pub model_fall: Option<f32>,
    /// The fall model's looks that said `Fall` there.
    pub model_looks: Option<u32>,
    /// The pose model had lost the person lying there.
    pub unseen: bool,
}

/// What one frame changed.
#[derive(Debug, Clone, PartialEq)]
pub enum FallUpdate {
    None,
    /// A fall, confirmed now; it began at `started_at` (when the person went down).
    Fell { started_at: f64, score: f32, keypoints: Vec<[f32; 3]>, bbox: [f32; 4], reason: FallReason },
    /// The fallen person has been up for `RECOVER_SECS`; up since `ended_at`.
    Recovered { ended_at: f64 },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Up,
    /// Down since `since`; a fall if it lasts and `descended`.
    Down { since: f64, descended: bool, score_sum: f32, frames: u32 },
    /// Down without a fast drop before it (lying in bed, lying down slowly, seen lying from the start).
    Lying,
    /// A raised fall; `up_since` while the person is getting up.
    Fallen { up_since: Option<f64> },
}

/// One person's fall detector; feed it every frame the person is seen in.
#[derive(Debug, Clone)]
pub struct FallDetector {
    config: FallConfig,
    th: Thresholds,
    smoothed: Option<f32>,
    last_t: Option<f64>,
    /// (t, hip_y, size)
    history: VecDeque<(f64, f32, f32)>,
    last_drop: Option<(f64, f32)>,
    /// The last drop worth asking the fall model about (`ASK_DROP_FACTOR` of the rule's).
    last_dip: Option<(f64, f32)>,
    state: State,
}

impl FallDetector {
    pub fn new(config: FallConfig) -> Self {
        Self {
            th: config.thresholds(),
            config,
            smoothed: None,
            last_t: None,
            history: VecDeque::new(),
            last_drop: None,
            last_dip: None,
            state: State::Up,
        }
    }

    pub fn set_config(&mut self, config: FallConfig) {
        self.th = config.thresholds();
        self.config = config;
    }

    pub fn thresholds(&self) -> Thresholds {
        self.th
    }

    /// A fast drop of the hips worth asking the fall model about, seen at most
    /// `DESCENT_LOOKBACK_SECS` before `t`, in body lengths.
    pub fn recent_drop(&self, t: f64) -> Option<f32> {
        self.last_dip.filter(|(at, _)| *at >= t - DESCENT_LOOKBACK_SECS).map(|(_, d)| d)
    }

    /// The smoothed down score (0 upright .. 1 lying), once the torso has been seen.
    pub fn score(&self) -> Option<f32> {
        self.smoothed
    }

    /// Whether a fall is raised and not yet over.
    pub fn fallen(&self) -> bool {
        matches!(self.state, State::Fallen { .. })
    }

    /// One frame in which this person was seen, at `t` seconds (increasing).
    pub fn update(&mut self, keypoints: &[[f32; 3]], bbox: [f32; 4], t: f64) -> FallUpdate {
        if !self.config.enabled {
            return FallUpdate::None;
        }
        if self.last_t.is_some_and(|last| t <= last) {
            return FallUpdate::None;
        }
        let f = features(keypoints, bbox);
        let dt = self.last_t.map(|last| t - last).unwrap_or(0.0);
        self.last_t = Some(t);
        if let Some(raw) = down_score(&f) {
            self.smooth(raw, dt);
        }
        self.note_drop(&f, t);
        let Some(score) = self.smoothed else {
            return FallUpdate::None;
        };
        self.step(score, t, keypoints, bbox)
    }

    /// The down score, smoothed over `SMOOTHING_SECS`.
    fn smooth(&mut self, raw: f32, dt: f64) {
        self.smoothed = Some(match self.smoothed {
            None => raw,
            Some(s) => {
                let alpha = (1.0 - (-dt / SMOOTHING_SECS).exp()) as f32;
                s + alpha * (raw - s)
            }
        });
    }

    /// The hips' drop over the last second, against the body's length over the last seconds: a
    /// drop the rule counts (`last_drop`), and one worth asking the fall model about (`last_dip`).
    fn note_drop(&mut self, f: &PoseFeatures, t: f64) {
        self.history.push_back((t, f.hip_y, f.size));
        while self.history.front().is_some_and(|h| h.0 < t - HISTORY_SECS) {
            self.history.pop_front();
        }
        let length = self.history.iter().map(|h| h.2).fold(1.0f32, f32::max);
        let highest = self
            .history
            .iter()
            .filter(|h| h.0 >= t - DROP_WINDOW_SECS)
            .map(|h| h.1)
            .fold(f32::INFINITY, f32::min);
        let drop = (f.hip_y - highest) / length;
        if drop >= self.th.drop {
            self.last_drop = Some((t, drop));
        }
        if drop >= ASK_DROP_FACTOR * self.th.drop && self.last_dip.is_none_or(|(at, d)| at < t - DESCENT_LOOKBACK_SECS || drop > d) {
            self.last_dip = Some((t, drop));
        }
    }

    /// A drop the rule counts, seen at most `DESCENT_LOOKBACK_SECS` before `since` (or after).
    fn dropped_since(&self, since: f64) -> bool {
        self.last_drop.is_some_and(|(at, _)| at >= since - DESCENT_LOOKBACK_SECS)
    }

    /// The state machine, one frame on, with the smoothed down `score`: up, down (a fall if it lasts
    /// and came with a drop), lying, fallen (recovered once up for `RECOVER_SECS`).
    fn step(&mut self, score: f32, t: f64, keypoints: &[[f32; 3]], bbox: [f32; 4]) -> FallUpdate {
        let min_duration = self.config.min_duration_secs as f64;
        match self.state.clone() {
            State::Up => {
                if score >= self.th.down_on {
                    self.state = State::Down { since: t, descended: self.dropped_since(t), score_sum: score, frames: 1 };
                    return self.check_down(t, min_duration, keypoints, bbox);
                }
            }
            State::Down { since, descended, score_sum, frames } => {
                if score < self.th.down_off {
                    self.state = State::Up;
                } else {
                    self.state = State::Down {
                        since,
                        descended: descended || self.dropped_since(since),
                        score_sum: score_sum + score,
                        frames: frames + 1,
                    };
                    return self.check_down(t, min_duration, keypoints, bbox);
                }
            }
            State::Lying => {
                if score < self.th.down_off {
                    self.state = State::Up;
                } else if self.last_drop.is_some_and(|(at, _)| at == t) {
                    // Lying, then a fast drop: off the bed, the sofa.
                    self.state = State::Down { since: t, descended: true, score_sum: score, frames: 1 };
                    return self.check_down(t, min_duration, keypoints, bbox);
                }
            }
            State::Fallen { up_since } => return self.while_fallen(score, up_since, t),
        }
        FallUpdate::None
    }

    /// Fallen: recovered once up (below `down_off`) for `RECOVER_SECS`.
    fn while_fallen(&mut self, score: f32, up_since: Option<f64>, t: f64) -> FallUpdate {
        if score < self.th.down_off {
            let up_since = up_since.unwrap_or(t);
            if t - up_since >= RECOVER_SECS {
                self.state = State::Up;
                self.last_drop = None;
                return FallUpdate::Recovered { ended_at: up_since };
            }
            self.state = State::Fallen { up_since: Some(up_since) };
        } else {
            self.state = State::Fallen { up_since: None };
        }
        FallUpdate::None
    }

    fn check_down(&mut self, t: f64, min_duration: f64, keypoints: &[[f32; 3]], bbox: [f32; 4]) -> FallUpdate {
        let State::Down { since, descended, score_sum, frames } = self.state else {
            return FallUpdate::None;
        };
        if t - since + 1e-9 < min_duration {
            return FallUpdate::None;
        }
        if !descended {
            self.state = State::Lying;
            return FallUpdate::None;
        }
        self.state = State::Fallen { up_since: None };
        let pose = score_sum / frames as f32;
        let drop = self.last_drop.map(|d| d.1).unwrap_or(0.0);
        let score = (0.7 * pose + 0.3 * (drop / (2.0 * self.th.drop)).min(1.0)).clamp(0.0, 1.0);
        let f = features(keypoints, bbox);
        let torso = f.torso_angle.map(|a| format!("torso {a:.0}°, ")).unwrap_or_default();
        let reason = FallReason {
            by: "pose".into(),
            summary: format!("pose: down {pose:.2} ({torso}box {:.1}:1) for {:.1} s after a drop of {drop:.2} body lengths", f.aspect, t - since),
            pose_down: Some(round2(pose)),
            drop: Some(round2(drop)),
            model_fall: None,
            model_looks: None,
            unseen: false,
        };
        FallUpdate::Fell { started_at: since, score, keypoints: keypoints.to_vec(), bbox, reason }
    }
}

impl FallConfig {
    /// `[events.fall]`, or a camera's own `fall`: the error names the field, its caller the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_within("sensitivity", self.sensitivity, 0.0..=1.0)?;
        check_within("min_duration_secs", self.min_duration_secs, 0.0..=60.0)?;
        check_within("long_lie_secs", self.long_lie_secs, 0.0..=MAX_LONG_LIE_SECS)
    }
}

#[cfg(test)]
pub(crate) mod tests;
