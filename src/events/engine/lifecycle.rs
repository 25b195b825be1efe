//! An event's life as the engine sees it: made, started (stored, its snapshot and clip asked of the
//! recorder, broadcast) and ended (stored, its clip given its post-roll, broadcast).

use super::EventEngine;
use crate::events::hub::clip_done;
use crate::events::{ClipStatus, Event, EventChange, EventKind, EventPhase, CLIPS_DIR, SNAPSHOTS_DIR};

impl EventEngine {
    /// A new event about track `track_id`, raised at `raised_at` (the frame the model looked at).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_event(&self, kind: EventKind, track_id: u64, class: &str, started_at: f64, raised_at: f64, score: f32, keypoints: &[[f32; 3]], bbox: [f32; 4]) -> Event {
        Event {
            id: None,
            camera_id: self.camera_id.clone(),
            kind,
            phase: EventPhase::Start,
            track_id,
            model: Some("pose".into()),
            class: Some(class.to_string()),
            started_at,
            ended_at: None,
            score,
            bbox,
            keypoints: keypoints.to_vec(),
            clip_path: None,
            snapshot_path: None,
            clip_frames: None,
            clip_fps: None,
            clip_started_at: None,
            clip_error: None,
            clip_status: ClipStatus::None,
            node: None,
            raised_at: Some(raised_at),
            reason: None,
            acknowledged_at: None,
            acknowledged_by: None,
            ack_note: None,
            long_lie: false,
            long_lie_at: None,
            zones: self.zones_at(keypoints, &bbox),
        }
    }

    fn file_name(&self, id: i64, kind: EventKind, ext: &str) -> String {
        format!("{}/{}-{}.{ext}", path_safe(&self.camera_id), id, kind.as_str())
    }

    /// Stores, records and broadcasts a new event.
    pub(super) fn start(&mut self, mut ev: Event, jpeg: Option<&[u8]>) -> Event {
        let record = self.recorder.as_ref().is_some_and(|r| {
            let wanted = match ev.kind {
                EventKind::Fall => return true,
                EventKind::PersonDetected => self.settings.person_clips,
                EventKind::ObjectDetected => self.settings.objects.clips,
            };
            wanted && r.open_clips() < self.settings.max_concurrent_clips
        });
        match self.hub.store().insert(&ev, record) {
            Ok(id) => ev.id = Some(id),
            Err(e) => log::warn!("[{}] cannot store a {} event: {e}", self.camera_id, ev.kind.as_str()),
        }
        if let (Some(id), true) = (ev.id, self.recorder.is_some()) {
            let snapshot_rel = format!("{SNAPSHOTS_DIR}/{}", self.file_name(id, ev.kind, "jpg"));
            let clip_rel = format!("{CLIPS_DIR}/{}", self.file_name(id, ev.kind, "mp4"));
            let rec = self.recorder.as_mut().expect("checked");
            if let Some(jpeg) = jpeg {
                let rel = snapshot_rel;
                let hub = self.hub.clone();
                let path = hub.store().resolve(&rel);
                rec.snapshot(
                    path.clone(),
                    jpeg,
                    Box::new(move |r| match r {
                        Ok(bytes) => {
                            if !matches!(hub.store().set_snapshot(id, &rel, bytes), Ok(true)) {
                                let _ = std::fs::remove_file(&path);
                            } else {
                                hub.changed(id, EventChange::Snapshot, None);
                            }
                        }
                        Err(e) => log::warn!("event {id}: snapshot not written: {e}"),
                    }),
                );
            }
            if record {
                ev.clip_status = ClipStatus::Recording;
                let rel = clip_rel;
                let hub = self.hub.clone();
                let path = hub.store().resolve(&rel);
                rec.start_clip(
                    id,
                    path.clone(),
                    ev.started_at,
                    Box::new(move |r| clip_done(&hub, id, rel, &path, r)),
                );
            }
        }
        self.hub.publish(&ev);
        ev
    }

    /// Ends an event: stored, its clip given its post-roll, broadcast.
    pub(super) fn end(&mut self, mut ev: Event, at: f64) -> Event {
        let at = at.max(ev.started_at);
        ev.ended_at = Some(at);
        ev.phase = EventPhase::End;
        if let Some(id) = ev.id {
            if let Err(e) = self.hub.store().set_ended(id, at) {
                log::warn!("[{}] cannot store the end of event {id}: {e}", self.camera_id);
            }
            if let Some(rec) = &mut self.recorder {
                rec.end_clip(id, at);
            }
        }
        self.hub.publish(&ev);
        ev
    }
}

impl EventEngine {
    /// Falls still going on `long_lie_secs` after they were raised (frame time `t`) become long
    /// lies, once each: stored, and published again as an update. Returns them.
    pub(super) fn check_long_lies(&mut self, t: f64) -> Vec<Event> {
        let secs = self.settings.fall.long_lie_secs as f64;
        if secs <= 0.0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for state in self.people.values_mut() {
            let Some(ev) = state.fall_event.as_mut() else { continue };
            if ev.long_lie || t - ev.raised_at.unwrap_or(ev.started_at) < secs {
                continue;
            }
            ev.long_lie = true;
            ev.long_lie_at = Some(t);
            if let Some(id) = ev.id {
                if let Err(e) = self.hub.store().set_long_lie(id, t) {
                    log::warn!("[{}] cannot store the long lie of event {id}: {e}", self.camera_id);
                }
            }
            log::info!("[{}] fall {:?} (track {}): still down after {secs} s: a long lie", self.camera_id, ev.id, ev.track_id);
            out.push(self.hub.long_lie(ev));
        }
        out
    }
}

/// A camera id as a path component.
fn path_safe(id: &str) -> String {
    let s: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

