//! The event: what happened (a person seen, a fall, an object), to whom, when, why, and what to
//! expect of its clip; as stored, listed, pushed on `/ws/alerts` and told to the cluster.

use serde::{Deserialize, Serialize};

use super::FallReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PersonDetected,
    Fall,
    /// An object of a class the camera names in `object_events`, from one of its detect models.
    ObjectDetected,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [EventKind::PersonDetected, EventKind::Fall, EventKind::ObjectDetected];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PersonDetected => "person_detected",
            EventKind::Fall => "fall",
            EventKind::ObjectDetected => "object_detected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What an alert says happened: the event started, or it ended (`ended_at` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventPhase {
    Start,
    End,
}

/// What to expect of an event's clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipStatus {
    /// None will be recorded: events are off, `person_clips` is off for a `person_detected` event,
    /// `max_concurrent_clips` were already being written, or the store could not take the event.
    None,
    /// Being recorded (while the event lasts, then its post-roll and the writing of the file).
    Recording,
    /// Complete: `clip_path` is set.
    Ready,
    /// Not recorded after all: `clip_error` says why.
    Failed,
}

/// One event, as stored, listed and pushed on `/ws/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The store's id (`None` only if the store could not take the event).
    pub id: Option<i64>,
    pub camera_id: String,
    pub kind: EventKind,
    pub phase: EventPhase,
    pub track_id: u64,
    /// The model whose detections raised it ("pose" for people and falls); `None` in events stored
    /// before models had names.
    pub model: Option<String>,
    /// What it is about: "person", or the object's class (`object_detected`).
    pub class: Option<String>,
    /// Unix seconds: the person (object) first seen, or gone down (fall).
    pub started_at: f64,
    /// Unix seconds: the person last seen, or up again; `None` while the event goes on.
    pub ended_at: Option<f64>,
    /// Detection score (person_detected) or fall confidence (fall), 0..1.
    pub score: f32,
    /// The person's box (x1, y1, x2, y2, frame pixels) when the event was raised.
    pub bbox: [f32; 4],
    /// The 17 COCO keypoints [x, y, conf] that raised the event (empty for objects).
    pub keypoints: Vec<[f32; 3]>,
    /// Relative to `events.data_dir`; set once the clip is complete (serve it by `/api/events/{id}/clip.mp4`).
    pub clip_path: Option<String>,
    pub snapshot_path: Option<String>,
    pub clip_frames: Option<u32>,
    pub clip_fps: Option<f32>,
    /// Unix time of the clip's first frame: `started_at - clip_started_at` is the event's offset in it.
    pub clip_started_at: Option<f64>,
    /// Why the event has no clip, if its recording failed (a full disk, say).
    pub clip_error: Option<String>,
    /// What to expect of the clip: none, recording, ready (`clip_path`) or failed (`clip_error`).
    pub clip_status: ClipStatus,
    /// The cluster node that raised it (absent on a single server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Unix seconds: when the event was raised (its alert sent). A fall is raised once it is sure,
    /// after it began (`started_at`); `None` in events stored before this was kept.
    #[serde(default)]
    pub raised_at: Option<f64>,
    /// Why a fall was raised: which evidence, with its scores (`None` for other kinds).
    #[serde(default)]
    pub reason: Option<FallReason>,
    /// Unix seconds: when a person acknowledged it (`POST /api/events/{id}/ack`); the first
    /// acknowledgement is kept.
    #[serde(default)]
    pub acknowledged_at: Option<f64>,
    /// Who acknowledged it, as they gave their name.
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// What they noted with it, if anything.
    #[serde(default)]
    pub ack_note: Option<String>,
    /// A fall still going on `[events.fall] long_lie_secs` after it was raised: the person has not
    /// got up, which matters more than the fall itself.
    #[serde(default)]
    pub long_lie: bool,
    /// Unix seconds (frame time): when it became a long lie.
    #[serde(default)]
    pub long_lie_at: Option<f64>,
    /// The camera's zones (`no_falls`, `watch`) its person or object was in when it started.
    #[serde(default)]
    pub zones: Vec<String>,
}

/// What changed in a stored event: what a cluster node tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventChange {
    Start,
    End,
    /// Its snapshot is written.
    Snapshot,
    /// Its clip is complete, or failed.
    Clip,
    /// A person acknowledged it (`acknowledged_at`, `acknowledged_by`, `ack_note`).
    Ack,
    /// A fall became a long lie (`long_lie`, `long_lie_at`).
    LongLie,
}

impl EventChange {
    pub fn as_str(self) -> &'static str {
        match self {
            EventChange::Start => "start",
            EventChange::End => "end",
            EventChange::Snapshot => "snapshot",
            EventChange::Clip => "clip",
            EventChange::Ack => "ack",
            EventChange::LongLie => "long_lie",
        }
    }
}

impl Event {
    pub fn is_active(&self) -> bool {
        self.ended_at.is_none()
    }

    /// Takes `other`'s acknowledgement and long lie where this copy has none (the engine's copy of
    /// an event does not hear of an acknowledgement the API stored meanwhile).
    pub fn keep_marks_of(&mut self, other: &Event) {
        if self.acknowledged_at.is_none() && other.acknowledged_at.is_some() {
            self.acknowledged_at = other.acknowledged_at;
            self.acknowledged_by.clone_from(&other.acknowledged_by);
            self.ack_note.clone_from(&other.ack_note);
        }
        if !self.long_lie && other.long_lie {
            self.long_lie = true;
            self.long_lie_at = other.long_lie_at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_event_schema_lists_every_field_and_clip_status() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../api/openapi.json")).unwrap();
        let schema = &doc["components"]["schemas"]["Event"]["properties"];
        let mut event = crate::events::store::tests::event("cam1", EventKind::Fall, 1.0);
        event.node = Some("a".into());
        let event = serde_json::to_value(event).unwrap();
        let mut fields: Vec<&String> = event.as_object().unwrap().keys().collect();
        let mut documented: Vec<&String> = schema.as_object().unwrap().keys().collect();
        fields.sort();
        documented.sort();
        assert_eq!(fields, documented);
        let statuses: Vec<String> = [ClipStatus::None, ClipStatus::Recording, ClipStatus::Ready, ClipStatus::Failed]
            .iter()
            .map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string())
            .collect();
        assert_eq!(statuses, ["none", "recording", "ready", "failed"]);
        assert_eq!(schema["clip_status"]["enum"], serde_json::json!(statuses));
    }
}
