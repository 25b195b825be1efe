//! One person as the engine follows them: the pose rule's detector, their events, their story
//! (what the fall model is asked), and what their last sightings said of their shape.

use std::collections::VecDeque;

use crate::events::{fall, story, tracker, Event, FallConfig, FallDetector, FallUpdate, Story, StoryUpdate, TrackedPerson, Trigger};

/// One person tracked by the engine.
#[derive(Default)]
pub(super) struct PersonState {
    pub(super) fall: Option<FallDetector>,
    /// The person_detected event, once started.
    pub(super) person: Option<Event>,
    /// The fall in progress (raised by the pose rule or by the story).
    pub(super) fall_event: Option<Event>,
    /// What the fall model is asked about this person (cameras with a fall model only).
    pub(super) story: Option<Story>,
    /// The last time the pose saw them upright.
    pub(super) upright_at: Option<f64>,
    /// Their body's length: the largest box side the pose gave them.
    pub(super) body: f32,
    /// Their last keypoints, for a fall raised while the pose model no longer sees them.
    pub(super) keypoints: Vec<[f32; 3]>,
    /// Their boxes while seen upright, the last few seconds (time, box).
    pub(super) upright_boxes: VecDeque<(f64, [f32; 4])>,
    /// Their box's shape changed from the upright one (wider, or much shorter) in their last sighting.
    pub(super) reshaped: bool,
    /// The tracker ended their track: only their story (a fall going on) keeps them.
    pub(super) gone: bool,
}

/// What the pose rule made of one sighting of a person.
pub(super) struct Sighting {
    /// The pose rule's verdict: a fall raised, or over.
    pub update: FallUpdate,
    /// The smoothed down score (it keeps its last value while the torso is not seen)...
    pub down: Option<f32>,
    /// ...and this frame's own.
    pub now_down: Option<f32>,
    /// A fast drop of their body just before, in body lengths.
    pub drop: Option<f32>,
}

impl PersonState {
    /// A sighting of them: the pose rule's look, their body length and keypoints, their shape.
    pub(super) fn see(&mut self, track: &TrackedPerson, config: &FallConfig, t: f64) -> Sighting {
        let detector = self.fall.get_or_insert_with(|| FallDetector::new(config.clone()));
        let update = detector.update(&track.keypoints, track.bbox, t);
        let (down, drop) = (detector.score(), detector.recent_drop(t));
        let now_down = fall::down_score(&fall::features(&track.keypoints, track.bbox));
        self.body = self.body.max(tracker::larger_side(&track.bbox));
        self.keypoints.clone_from(&track.keypoints);
        self.note_shape(&track.bbox, now_down, down, t);
        Sighting { update, down, now_down, drop }
    }

    /// Whether they are upright in this very frame (the smoothed score keeps its last value while
    /// the torso is not seen, as it often is not when someone lies on the floor), and whether
    /// their box turned from the upright one.
    fn note_shape(&mut self, bbox: &[f32; 4], now_down: Option<f32>, down: Option<f32>, t: f64) {
        // Without a torso (a small, far person), a box much taller than wide is upright too.
        let upright = match now_down {
            Some(s) => s < story::UPRIGHT_SCORE && down.is_none_or(|d| d < story::UPRIGHT_SCORE),
            None => (bbox[2] - bbox[0]) < story::UPRIGHT_ASPECT * (bbox[3] - bbox[1]),
        };
        if upright {
            self.upright_at = Some(t);
            self.upright_boxes.push_back((t, *bbox));
        }
        while self.upright_boxes.front().is_some_and(|b| b.0 < t - story::UPRIGHT_BEFORE_SECS) {
            self.upright_boxes.pop_front();
        }
        // Against their tallest upright box of the last seconds (mid-fall the pose may still
        // look upright for a look or two while the box already shrinks).
        let tallest = self.upright_boxes.iter().max_by(|a, b| (a.1[3] - a.1[1]).total_cmp(&(b.1[3] - b.1[1])));
        self.reshaped = tallest.is_some_and(|(_, upright)| story::reshaped(upright, bbox));
    }

    /// Seen upright within the last `UPRIGHT_BEFORE_SECS`: a drop or a loss now may be a fall.
    fn upright_lately(&self, t: f64) -> bool {
        self.upright_at.is_some_and(|u| t - u <= story::UPRIGHT_BEFORE_SECS)
    }

    /// With a fall model: a fast drop of someone who was upright, their box no longer an upright
    /// one, their pose not plainly upright now, opens their story (or re-triggers it); the story
    /// then hears what the pose saw.
    pub(super) fn follow_story(&mut self, track: &TrackedPerson, seen: &Sighting, camera_id: &str, t: f64) -> StoryUpdate {
        let leaning = seen.now_down.is_none_or(|s| s >= story::LEANING_SCORE);
        let upright_lately = self.upright_lately(t);
        match (&mut self.story, seen.drop.filter(|_| self.reshaped && leaning)) {
            (Some(story), Some(_)) => story.retrigger(t),
            (None, Some(d)) if self.fall_event.is_none() && upright_lately => {
                log::debug!(target: "haven::falls", "[{camera_id}] track {}: a drop of {d:.2} at {:?}: asking the fall model", track.track_id, track.bbox);
                self.story = Some(Story::open(Trigger::Drop(d), track.bbox, self.body, t));
            }
            _ => {}
        }
        match &mut self.story {
            Some(story) => story.pose_seen(track.bbox, seen.now_down.zip(seen.down).map(|(a, b)| a.max(b)), t),
            None => StoryUpdate::None,
        }
    }

    /// The pose model lost them now (`alone`: seen clearly with nobody near to hide them): a story
    /// going on notes it; else, shortly after they were seen upright, when their box had already
    /// turned from upright or they were alone, their story opens.
    pub(super) fn lost(&mut self, track: &TrackedPerson, alone: bool, camera_id: &str, t: f64) {
        let may_open = self.fall_event.is_none() && (self.reshaped || alone) && self.upright_lately(t);
        match &mut self.story {
            Some(story) => story.unseen = true,
            None if may_open => {
                let trigger = if self.reshaped { Trigger::Lost } else { Trigger::Vanished };
                log::debug!(target: "haven::falls", "[{camera_id}] track {}: {trigger:?} at {:?}: asking the fall model", track.track_id, track.bbox);
                self.story = Some(Story::open(trigger, track.bbox, self.body, t));
            }
            None => {}
        }
    }
}
