//! Stage (c) of the frame step: what a frame tells the camera's events. The full JPEG goes to
//! their clips, each model's fresh answer to the rules that read it (a pose model's people, a
//! detect model's objects), and the fall model's answer after the pose model's of the same frame.

use actix_web::web::Bytes;

use super::analyse::Analyser;
use super::frame_settings::FrameSettings;
use super::frame_step::Captured;
use crate::events::{Event, EventEngine};
use crate::inference::Task;

/// Hands the frame and the models' `fresh` answers to `events`; returns the events in progress.
pub fn feed(events: &mut EventEngine, analyser: &mut Analyser, s: &FrameSettings, fresh: &[usize], jpeg: &Bytes, frame: &Captured) -> Vec<Event> {
    events.push_frame(jpeg, frame.timestamp);
    events.set_object_classes(&s.object_classes);
    events.set_zones(&s.zones);
    events.set_frame_size(frame.width(), frame.height());
    for &m in fresh {
        let Some(looked) = analyser.looks.get(m) else { continue };
        let Some(engine) = analyser.engines().and_then(|e| e.0.get(m)) else { continue };
        match engine.task() {
            Task::Pose if Some(m) == s.pose_model => {
                events.on_detections(&looked.detections, looked.timestamp, Some(jpeg));
            }
            Task::Detect => {
                events.on_objects(engine.model(), &looked.detections, looked.timestamp, Some(jpeg));
            }
            Task::Pose => {}
        }
    }
    if let (Some(looked), Some(f)) = (analyser.fall_looked.take(), analyser.fall_model) {
        if let Some(engine) = analyser.engines().and_then(|e| e.0.get(f)) {
            events.on_fall_model(engine.model(), &looked.detections, looked.timestamp, Some(jpeg));
        }
    }
    events.active()
}
