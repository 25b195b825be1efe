//! `object_detected`: objects of the classes a camera names, followed by their own tracker, one
//! event per presence.

use super::EventEngine;
use crate::events::{Event, EventKind, TrackedPerson};
use crate::inference::Detection;

impl EventEngine {
    /// The classes that raise `object_detected` (the camera's `object_events`); objects of classes
    /// no longer named end their events as if gone.
    pub fn set_object_classes(&mut self, classes: &[String]) {
        if self.object_classes != classes {
            self.object_classes = classes.to_vec();
            self.objects.set_classes(classes);
        }
    }

    /// The objects followed now (for the gate: a parked car is looked at again now and then).
    pub fn object_tracks(&self) -> &[TrackedPerson] {
        self.objects.tracks()
    }

    /// What a detect model (`model`) found in the frame captured at `t`: objects of the named
    /// classes are followed, and each one seen for `objects.min_secs` (in two looks at least) gets
    /// one `object_detected` event, which ends when it has been gone for `objects.max_unseen_secs`.
    pub fn on_objects(&mut self, model: &str, detections: &[Detection], t: f64, jpeg: Option<&[u8]>) -> Vec<Event> {
        if !self.settings.enabled || t <= self.last_objects_t {
            return Vec::new();
        }
        self.last_objects_t = t;
        let mut out = Vec::new();
        let tracks = self.objects.update(detections, t);
        for track in tracks.iter().filter(|tr| tr.seen_now()) {
            let start = !self.object_events.contains_key(&track.track_id)
                && track.age_secs + 1e-9 >= self.settings.objects.min_secs
                && track.hits >= 2
                && self.may_start(EventKind::ObjectDetected, &[], &track.bbox);
            if start {
                let mut ev = self.new_event(EventKind::ObjectDetected, track.track_id, &track.class, track.first_seen, t, track.score, &[], track.bbox);
                ev.model = Some(model.to_string());
                let ev = self.start(ev, jpeg);
                self.object_events.insert(track.track_id, ev.clone());
                out.push(ev);
            }
        }
        for gone in self.objects.take_expired() {
            if let Some(ev) = self.object_events.remove(&gone.track_id) {
                out.push(self.end(ev, gone.last_seen));
            }
        }
        out
    }
}
