//! The camera's zones as its events see them: no falls where a person's hips lie in a `no_falls`
//! zone; where the camera has `watch` zones, events start only inside one; every event names the
//! zones its person (object) is in when it starts.

use std::sync::Arc;

use super::EventEngine;
use crate::events::{fall, EventKind};
use crate::zones::{Zone, ZoneKind};

/// COCO's left and right hips.
const HIPS: [usize; 2] = [11, 12];

impl EventEngine {
    /// The camera's zones (its settings, from the frame step; rebuilt only when they change).
    pub fn set_zones(&mut self, zones: &Arc<Vec<Zone>>) {
        if !Arc::ptr_eq(&self.zones, zones) {
            self.zones = zones.clone();
        }
    }

    /// Where someone is, in 0..1 of the frame: the middle of their hips when the pose saw both
    /// surely, else the bottom centre of their box (an object's too). `None` before the frame's
    /// size is known.
    fn place(&self, keypoints: &[[f32; 3]], bbox: &[f32; 4]) -> Option<(f64, f64)> {
        let (w, h) = self.frame_size;
        if w <= 0.0 || h <= 0.0 {
            return None;
        }
        let sure = |i: usize| keypoints.get(i).filter(|k| k[2] >= fall::KEYPOINT_MIN_CONF && k[0].is_finite() && k[1].is_finite());
        let (x, y) = match (sure(HIPS[0]), sure(HIPS[1])) {
            (Some(l), Some(r)) => ((l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0),
            _ => ((bbox[0] + bbox[2]) / 2.0, bbox[3]),
        };
        Some((x as f64 / w as f64, y as f64 / h as f64))
    }

    /// The names of the zones (`no_falls` and `watch`; a `motion_mask` is about pixels, not places)
    /// someone at this place is in.
    pub(super) fn zones_at(&self, keypoints: &[[f32; 3]], bbox: &[f32; 4]) -> Vec<String> {
        let Some((x, y)) = self.place(keypoints, bbox) else { return Vec::new() };
        self.zones.iter().filter(|z| z.kind != ZoneKind::MotionMask && z.contains(x, y)).map(|z| z.name.clone()).collect()
    }

    /// Whether an event of `kind` may start for someone (something) here: inside a `watch` zone
    /// where the camera has any, and for a fall, outside every `no_falls` zone.
    pub(super) fn may_start(&self, kind: EventKind, keypoints: &[[f32; 3]], bbox: &[f32; 4]) -> bool {
        let Some((x, y)) = self.place(keypoints, bbox) else { return true };
        let mut watch = crate::zones::of_kind(&self.zones, ZoneKind::Watch).peekable();
        if watch.peek().is_some() && !watch.any(|z| z.contains(x, y)) {
            return false;
        }
        let lying_allowed = kind == EventKind::Fall && crate::zones::of_kind(&self.zones, ZoneKind::NoFalls).any(|z| z.contains(x, y));
        if lying_allowed {
            log::debug!(target: "haven::falls", "[{}] a fall at ({x:.2}, {y:.2}) is in a no_falls zone: not raised", self.camera_id);
        }
        !lying_allowed
    }
}
