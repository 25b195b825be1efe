//! The fall model's part: the stories it is asked about (people the pose saw drop or vanish), the
//! budget of its looks, and the falls it raises.

use super::EventEngine;
use crate::events::{fall, story, Event, EventKind, FallDetector, FallReason, StoryUpdate, Trigger};
use crate::inference::Detection;

/// Two falls whose boxes overlap this much (of the smaller) are about the same person.
const SAME_FALL_OVERLAP: f32 = 0.5;

/// Looks of the fall model for stories not yet sure: at most this many in a row (enough for a fall
/// and a false start or two) ...
pub(super) const FALL_LOOKS_BURST: f64 = 16.0;
/// ... then this many a second on average (a camera where nobody falls costs at most this).
const FALL_LOOKS_PER_SEC: f64 = 0.25;

impl EventEngine {
    /// The fall model the camera asks where the pose saw someone go down or vanish (`None`: the
    /// pose rule alone).
    pub fn set_fall_model(&mut self, model: Option<&str>) {
        self.fall_model = model.map(str::to_string);
        if self.fall_model.is_none() {
            for p in self.people.values_mut() {
                p.story = None;
            }
        }
    }

    /// Whether the fall model should look at the frame captured at `t`: a fall going on always
    /// may; stories not yet sure share a budget of looks, so that a scene that keeps opening them
    /// (people vanishing where the pose model cannot follow them) cannot keep the fall model busy.
    pub fn wants_fall_look(&self, t: f64) -> bool {
        if self.fall_model.is_none() {
            return false;
        }
        let mut wanting = self.people.values().filter_map(|p| p.story.as_ref()).filter(|s| s.wants_look(t));
        wanting.clone().any(|s| s.raised) || (wanting.next().is_some() && self.fall_looks_available(t) >= 1.0)
    }

    fn fall_looks_available(&self, t: f64) -> f64 {
        let refill = if self.fall_looks_at.is_finite() { (t - self.fall_looks_at).max(0.0) * FALL_LOOKS_PER_SEC } else { 0.0 };
        (self.fall_looks_left + refill).min(FALL_LOOKS_BURST)
    }

    /// Whether a story is being followed (the camera keeps looking, now and then, while nothing moves).
    pub fn fall_watch_active(&self) -> bool {
        self.people.values().any(|p| p.story.as_ref().is_some_and(|s| s.alive(self.last_detection_t)))
    }

    /// What the fall model (`model`) found in the frame captured at `t`: each person's story looks
    /// at the boxes about them, and raises or ends their fall.
    pub fn on_fall_model(&mut self, model: &str, detections: &[Detection], t: f64, jpeg: Option<&[u8]>) -> Vec<Event> {
        if !self.settings.enabled || t <= self.last_fall_look_t {
            return Vec::new();
        }
        self.last_fall_look_t = t;
        if self.people.values().any(|p| p.story.as_ref().is_some_and(|s| !s.raised)) {
            self.fall_looks_left = (self.fall_looks_available(t) - 1.0).max(0.0);
            self.fall_looks_at = t;
        }
        let mut out = Vec::new();
        let ids: Vec<u64> = self.people.iter().filter(|(_, p)| p.story.is_some()).map(|(id, _)| *id).collect();
        for id in ids {
            let Some(update) = self.story_look(id, detections, t) else { continue };
            match update {
                fell @ StoryUpdate::Fell { .. } => match self.raise_model_fall(id, model, fell, t, jpeg) {
                    Some(ev) => out.push(ev),
                    None => continue, // raised already, by them or by someone lying there
                },
                StoryUpdate::Up { at } | StoryUpdate::Gone { at } => out.extend(self.end_fall(id, at)),
                StoryUpdate::Closed => {
                    if let Some(state) = self.people.get_mut(&id) {
                        state.story = None;
                    }
                }
                StoryUpdate::None => {}
            }
            self.forget_if_gone(id, t);
        }
        out
    }

    /// Person `id`'s story looks at what the fall model found (`None`: they have no story).
    fn story_look(&mut self, id: u64, detections: &[Detection], t: f64) -> Option<StoryUpdate> {
        let (min_score, min_secs) = (self.settings.fall.thresholds().model_fall, self.settings.fall.min_duration_secs as f64);
        let story = self.people.get_mut(&id)?.story.as_mut()?;
        let update = story.look(detections, t, min_score, min_secs);
        log::debug!(target: "haven::falls", "[{}] track {id}: fall model look at {t:.2}: {update:?} ({story:?})", self.camera_id);
        Some(update)
    }

    /// The story says person `id` fell: their fall starts, raised by the fall model with its
    /// reason, unless they, or someone lying where they lie, have a fall going on already.
    fn raise_model_fall(&mut self, id: u64, model: &str, fell: StoryUpdate, t: f64, jpeg: Option<&[u8]>) -> Option<Event> {
        let StoryUpdate::Fell { since, mean_fall, looks, bbox } = fell else { return None };
        let state = self.people.get(&id)?;
        let story = state.story.as_ref()?;
        let (trigger, unseen) = (story.trigger, story.unseen);
        let down = state.fall.as_ref().and_then(FallDetector::score);
        let keypoints = state.keypoints.clone();
        let already = state.fall_event.is_some()
            || self.people.iter().any(|(other, p)| *other != id && p.fall_event.as_ref().is_some_and(|e| story::overlap(&e.bbox, &bbox) >= SAME_FALL_OVERLAP));
        if already || !self.may_start(EventKind::Fall, &keypoints, &bbox) {
            return None;
        }
        let mut ev = self.new_event(EventKind::Fall, id, "person", since, t, mean_fall, &keypoints, bbox);
        ev.model = Some(model.to_string());
        ev.reason = Some(model_fall_reason(trigger, unseen, down, mean_fall, looks, t - since));
        let ev = self.start(ev, jpeg);
        self.people.entry(id).or_default().fall_event = Some(ev.clone());
        Some(ev)
    }

    /// A person the tracker let go is kept only while their story goes on.
    fn forget_if_gone(&mut self, id: u64, t: f64) {
        if let Some(state) = self.people.get(&id) {
            if state.gone && state.fall_event.is_none() && !state.story.as_ref().is_some_and(|s| s.alive(t)) {
                self.people.remove(&id);
            }
        }
    }
}

/// Why the fall model raised a fall: what opened the story, the model's looks over `secs`, and
/// what the pose made of them (`down`) or that it no longer saw them (`unseen`).
fn model_fall_reason(trigger: Trigger, unseen: bool, down: Option<f32>, mean_fall: f32, looks: u32, secs: f64) -> FallReason {
    let why = match trigger {
        Trigger::Drop(d) => format!("after a drop of {d:.2} body lengths"),
        Trigger::Lost => "after the pose model lost them going down".into(),
        Trigger::Vanished => "after the pose model lost them".into(),
        Trigger::Raised => "while down".into(),
    };
    let pose = match (unseen, down) {
        (true, _) => "the pose model no longer sees them".to_string(),
        (false, Some(d)) => format!("pose down {d:.2}"),
        (false, None) => "no torso seen".into(),
    };
    FallReason {
        by: "model".into(),
        summary: format!("fall model: Fall {mean_fall:.2} in {looks} looks over {secs:.1} s {why}; {pose}"),
        pose_down: down.map(fall::round2),
        drop: match trigger {
            Trigger::Drop(d) => Some(fall::round2(d)),
            _ => None,
        },
        model_fall: Some(fall::round2(mean_fall)),
        model_looks: Some(looks),
        unseen,
    }
}
