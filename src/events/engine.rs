//! One camera's events: people followed by the tracker, their falls (the pose rule, and the fall
//! model's stories), objects of the named classes, and the snapshots and clips of each event.

use std::collections::HashMap;
use std::sync::Arc;

use opencv::core::Mat;

use super::{
    fall, now, recorder, story, Event, EventHub, EventKind, EventSettings, FallConfig, FallUpdate, Recorder, Story, StoryUpdate,
    TrackedPerson, Tracker, Trigger,
};
use crate::inference::Detection;
use fall_model::FALL_LOOKS_BURST;
use person::PersonState;

mod fall_model;
mod lifecycle;
mod objects;
mod person;
mod zones;

/// A box within this share of the frame's width from its left or right edge is at the edge: a person
/// lost there walked out of view. (The top and bottom are not: a person near the camera is cut off
/// there while still in the room.)
const EDGE_MARGIN: f32 = 0.02;

/// One camera's events. The camera thread calls `on_frame` once per processed frame; the work it
/// does there is the tracker, the fall rule, a JPEG copy into the clip queue and, rarely (when an
/// event starts or ends), one SQLite row. Clips and snapshots are written by the recorder's thread.
pub struct EventEngine {
    camera_id: String,
    hub: Arc<EventHub>,
    settings: EventSettings,
    tracker: Tracker,
    people: HashMap<u64, PersonState>,
    /// Objects of the classes the camera names (`object_events`), and each one's event once started.
    objects: Tracker,
    object_classes: Vec<String>,
    object_events: HashMap<u64, Event>,
    recorder: Option<Recorder>,
    /// The newest frame pushed, and the newest frame the model looked at (people, objects, falls).
    last_t: f64,
    last_detection_t: f64,
    last_objects_t: f64,
    last_fall_look_t: f64,
    /// The fall model this camera asks (`[events.fall] model`, when it is loaded).
    fall_model: Option<String>,
    /// Looks of the fall model left for stories not yet sure (refilled over time; `FALL_LOOKS_*`),
    /// and when they were last counted.
    fall_looks_left: f64,
    fall_looks_at: f64,
    /// The frame's size (width, height): people lost at its edges walked out of view.
    frame_size: (f32, f32),
    /// The camera's zones (`no_falls`, `watch`: `engine/zones.rs`).
    zones: Arc<Vec<crate::zones::Zone>>,
}

impl EventEngine {
    pub fn new(camera_id: &str, hub: Arc<EventHub>) -> Self {
        let settings = EventSettings::clone(&hub.settings());
        let recorder = settings.enabled.then(|| Recorder::new(camera_id, settings.recorder_config()));
        Self {
            camera_id: camera_id.to_string(),
            tracker: Tracker::new(settings.tracker),
            objects: Tracker::for_classes(settings.objects.tracker(), &[]),
            object_classes: Vec::new(),
            object_events: HashMap::new(),
            settings,
            hub,
            people: HashMap::new(),
            recorder,
            last_t: f64::NEG_INFINITY,
            last_detection_t: f64::NEG_INFINITY,
            last_objects_t: f64::NEG_INFINITY,
            last_fall_look_t: f64::NEG_INFINITY,
            fall_model: None,
            fall_looks_left: FALL_LOOKS_BURST,
            fall_looks_at: f64::NEG_INFINITY,
            frame_size: (0.0, 0.0),
            zones: Arc::default(),
        }
    }

    pub fn set_frame_size(&mut self, width: i32, height: i32) {
        self.frame_size = (width as f32, height as f32);
    }

    fn at_edge(&self, b: &[f32; 4]) -> bool {
        let (w, h) = self.frame_size;
        if w <= 0.0 {
            return false;
        }
        let mx = EDGE_MARGIN * w;
        h > 0.0 && (b[0] <= mx || b[2] >= w - mx)
    }

    pub fn camera_id(&self) -> &str {
        &self.camera_id
    }

    /// A camera's own fall settings (from its `[[cameras]]` entry, say); applies to people from now on
    /// and to those already tracked.
    pub fn set_fall_config(&mut self, config: FallConfig) {
        for p in self.people.values_mut() {
            if let Some(d) = &mut p.fall {
                d.set_config(config.clone());
            }
        }
        self.settings.fall = config;
    }

    /// New `[events]` settings (a reload; the camera's own `fall` already put over them): the
    /// trackers, the clips to come and the fall rule, for people already tracked too, take them
    /// from the next frame.
    pub fn apply_settings(&mut self, settings: EventSettings) {
        self.tracker.set_config(settings.tracker);
        self.objects.set_config(settings.objects.tracker());
        if let Some(recorder) = &mut self.recorder {
            recorder.set_config(settings.recorder_config());
        }
        self.set_fall_config(settings.fall.clone());
        self.settings = settings;
    }

    /// This camera's fall settings.
    pub fn fall_config(&self) -> &FallConfig {
        &self.settings.fall
    }

    /// This camera's active events (for frame metadata).
    pub fn active(&self) -> Vec<Event> {
        let mut v: Vec<Event> = self
            .people
            .values()
            .flat_map(|p| [p.person.clone(), p.fall_event.clone()])
            .flatten()
            .chain(self.object_events.values().cloned())
            .collect();
        v.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
        v
    }

    /// The people tracked now.
    pub fn tracks(&self) -> &[TrackedPerson] {
        self.tracker.tracks()
    }

    /// One processed frame with the model's detections in it: [`Self::push_frame`] then
    /// [`Self::on_detections`]. Returns the events that started or ended with this frame.
    pub fn on_frame(&mut self, frame: &Mat, jpeg: Option<&[u8]>, detections: &[Detection], t: f64) -> Vec<Event> {
        if !self.settings.enabled || t <= self.last_t {
            return Vec::new();
        }
        let encoded;
        let jpeg = match jpeg {
            Some(j) => Some(j),
            None => match crate::jpeg::encode(frame, recorder::JPEG_QUALITY) {
                Ok(j) => {
                    encoded = j;
                    Some(&encoded[..])
                }
                Err(e) => {
                    log::warn!("[{}] events: cannot encode the frame: {e}", self.camera_id);
                    None
                }
            },
        };
        if let Some(j) = jpeg {
            self.push_frame(j, t);
        }
        self.on_detections(detections, t, jpeg)
    }

    /// A frame for the clips (its JPEG, `t` its unix time). Every streamed frame goes here, whether
    /// the model looked at it or not.
    pub fn push_frame(&mut self, jpeg: &[u8], t: f64) {
        if !self.settings.enabled || t <= self.last_t {
            return;
        }
        self.last_t = t;
        if let Some(rec) = &mut self.recorder {
            rec.push_frame(t, jpeg);
        }
        self.check_long_lies(t);
    }

    /// What the model found in the frame captured at `t` (unix time; increasing from call to call).
    /// `jpeg` is the frame to keep as an event's snapshot. Returns the events that started or ended
    /// (already stored and broadcast).
    pub fn on_detections(&mut self, detections: &[Detection], t: f64, jpeg: Option<&[u8]>) -> Vec<Event> {
        if !self.settings.enabled || t <= self.last_detection_t {
            return Vec::new();
        }
        self.last_detection_t = t;
        let mut out = Vec::new();
        let tracks = self.tracker.update(detections, t);
        if self.fall_model.is_some() {
            for track in tracks.iter().filter(|tr| !tr.seen_now()) {
                self.person_lost(track, &tracks, t);
            }
        }
        for track in tracks.iter().filter(|tr| tr.seen_now()) {
            out.extend(self.person_seen(track, t, jpeg));
        }
        for gone in self.tracker.take_expired() {
            out.extend(self.expire_person(&gone));
        }
        out
    }

    /// Lost now, away from the frame's edges, shortly after being seen upright: perhaps down where
    /// the pose model no longer sees them (it often loses a person at the very start of a fast
    /// fall). The fall model is asked when their box had already turned from upright, or when they
    /// were seen clearly (large, a sure score: small far people flicker in and out of the model's
    /// sight) with nobody else near them (no one to hide them: in a crowd people are lost behind
    /// each other all the time).
    fn person_lost(&mut self, track: &TrackedPerson, tracks: &[TrackedPerson], t: f64) {
        if track.lost_frames != 1 || self.at_edge(&track.bbox) {
            return;
        }
        let clear = track.score >= story::CLEAR_SCORE && track.bbox[3] - track.bbox[1] >= story::CLEAR_HEIGHT * self.frame_size.1;
        let alone = clear && !tracks.iter().any(|other| other.track_id != track.track_id && story::near(&other.bbox, &track.bbox));
        if let Some(state) = self.people.get_mut(&track.track_id) {
            state.lost(track, alone, &self.camera_id, t);
        }
    }

    /// A person seen in this frame: the pose rule and their story hear of it; their
    /// `person_detected` event starts once they have been seen long enough; their fall starts or ends.
    fn person_seen(&mut self, track: &TrackedPerson, t: f64, jpeg: Option<&[u8]>) -> Vec<Event> {
        let state = self.people.entry(track.track_id).or_default();
        let seen = state.see(track, &self.settings.fall, t);
        log::trace!(
            target: "haven::falls",
            "[{}] track {} at {t:.2}: down {:?} (now {:?}), drop {:?}, upright {:?} ago, reshaped {}",
            self.camera_id,
            track.track_id,
            seen.down,
            seen.now_down,
            seen.drop,
            state.upright_at.map(|u| t - u),
            state.reshaped
        );
        let story_update = if self.fall_model.is_some() { state.follow_story(track, &seen, &self.camera_id, t) } else { StoryUpdate::None };
        let mut out = Vec::new();
        out.extend(self.start_person_if_due(track, t, jpeg));
        if let StoryUpdate::Up { at } = story_update {
            log::debug!(target: "haven::falls", "[{}] track {}: seen up by the pose since {at:.2}", self.camera_id, track.track_id);
            out.extend(self.end_fall(track.track_id, at));
        }
        match seen.update {
            fell @ FallUpdate::Fell { .. } => out.extend(self.raise_pose_fall(track, fell, t, jpeg)),
            FallUpdate::Recovered { ended_at } => {
                // A fall the story follows ends when the story says (the pose alone is least
                // sure of people lying on the floor).
                let followed = self.people.get(&track.track_id).is_some_and(|p| p.story.as_ref().is_some_and(|s| s.raised));
                if !followed {
                    out.extend(self.end_fall(track.track_id, ended_at));
                }
            }
            FallUpdate::None => {}
        }
        out
    }

    /// Their `person_detected` event, once they have been seen for `person_min_secs` (in two looks).
    fn start_person_if_due(&mut self, track: &TrackedPerson, t: f64, jpeg: Option<&[u8]>) -> Option<Event> {
        let due = self.people.get(&track.track_id).is_some_and(|p| p.person.is_none())
            && track.age_secs + 1e-9 >= self.settings.person_min_secs
            && track.hits >= 2
            && self.may_start(EventKind::PersonDetected, &track.keypoints, &track.bbox);
        if !due {
            return None;
        }
        let ev = self.new_event(EventKind::PersonDetected, track.track_id, &track.class, track.first_seen, t, track.score, &track.keypoints, track.bbox);
        let ev = self.start(ev, jpeg);
        self.people.entry(track.track_id).or_default().person = Some(ev.clone());
        Some(ev)
    }

    /// The pose rule says they fell: their fall starts (unless their story raised it already), with
    /// the fall model's agreement in its reason where the story had asked it.
    fn raise_pose_fall(&mut self, track: &TrackedPerson, fell: FallUpdate, t: f64, jpeg: Option<&[u8]>) -> Option<Event> {
        let FallUpdate::Fell { started_at, score, keypoints, bbox, mut reason } = fell else { return None };
        if !self.may_start(EventKind::Fall, &keypoints, &bbox) {
            return None;
        }
        let state = self.people.entry(track.track_id).or_default();
        if state.fall_event.is_some() {
            return None; // the story raised it already
        }
        if let Some(story) = &mut state.story {
            if let Some((looks, mean)) = story.model_agrees() {
                reason.by = "pose+model".into();
                reason.model_fall = Some(fall::round2(mean));
                reason.model_looks = Some(looks);
                reason.summary += &format!("; fall model: Fall {mean:.2} in {looks} looks");
            }
            story.raised_by_pose();
        }
        let mut ev = self.new_event(EventKind::Fall, track.track_id, &track.class, started_at, t, score, &keypoints, bbox);
        ev.reason = Some(reason);
        let ev = self.start(ev, jpeg);
        self.people.entry(track.track_id).or_default().fall_event = Some(ev.clone());
        Some(ev)
    }

    /// Ends the fall of this person, if one is going on.
    fn end_fall(&mut self, track_id: u64, at: f64) -> Vec<Event> {
        match self.people.get_mut(&track_id).and_then(|p| p.fall_event.take()) {
            Some(ev) => vec![self.end(ev, at)],
            None => Vec::new(),
        }
    }

    /// The tracker ended a person's track: their person event ends; their fall goes on while the
    /// fall model can follow it (they lie where the pose model no longer sees them), else it ends.
    fn expire_person(&mut self, gone: &TrackedPerson) -> Vec<Event> {
        let now = self.last_detection_t;
        let keep = self.fall_model.is_some()
            && self.people.get(&gone.track_id).is_some_and(|p| p.fall_event.is_some() || p.story.as_ref().is_some_and(|s| s.alive(now)));
        if !keep {
            return self.end_person(gone.track_id, gone.last_seen);
        }
        let mut out = Vec::new();
        let Some(state) = self.people.get_mut(&gone.track_id) else { return out };
        state.gone = true;
        let story = state.story.get_or_insert_with(|| Story::open(Trigger::Raised, gone.bbox, state.body, now));
        story.unseen = true;
        if let Some(ev) = state.person.take() {
            out.push(self.end(ev, gone.last_seen));
        }
        out
    }

    fn end_person(&mut self, track_id: u64, at: f64) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(p) = self.people.remove(&track_id) {
            for ev in [p.fall_event, p.person].into_iter().flatten() {
                out.push(self.end(ev, at));
            }
        }
        out
    }

    /// Ends every active event now (at the last frame's time) and completes every clip so it plays;
    /// waits for the clip writer. Call when the camera stops (SIGTERM, camera removed). Returns the
    /// events it ended. The engine can be fed again afterwards (clips then resume).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let at = if self.last_t.is_finite() { self.last_t } else { now() };
        for track in self.tracker.clear() {
            out.extend(self.end_person(track.track_id, track.last_seen.min(at)));
        }
        let ids: Vec<u64> = self.people.keys().copied().collect();
        for id in ids {
            out.extend(self.end_person(id, at));
        }
        let seen: HashMap<u64, f64> = self.objects.clear().into_iter().map(|t| (t.track_id, t.last_seen)).collect();
        let open: Vec<(u64, Event)> = self.object_events.drain().collect();
        for (id, ev) in open {
            out.push(self.end(ev, seen.get(&id).copied().unwrap_or(at).min(at)));
        }
        if let Some(rec) = &mut self.recorder {
            rec.finish();
        }
        if self.settings.enabled {
            self.recorder = Some(Recorder::new(&self.camera_id, self.settings.recorder_config()));
        }
        out
    }

}

impl Drop for EventEngine {
    fn drop(&mut self) {
        if self.people.values().any(|p| p.person.is_some() || p.fall_event.is_some()) || !self.object_events.is_empty() {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests;
