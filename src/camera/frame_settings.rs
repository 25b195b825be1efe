//! Stage (a) of the frame step: what a frame uses of its camera's settings, resolved once per change
//! (the camera's own settings over the `[detection]` defaults, its models as the scheduler's
//! indices), never per frame.

use std::sync::Arc;

use super::live_config::LiveConfig;
use super::motion::MotionSettings;
use crate::inference::{Engines, Task};
use crate::camera::config::{CameraConfig, DetectionSettings, Zone, ZoneKind};

#[derive(Debug, Clone, PartialEq)]
pub struct FrameSettings {
    pub resize_width: Option<u32>,
    pub jpeg_quality: u8,
    pub max_fps: Option<f64>,
    pub loop_video: bool,
    pub ai_enabled: bool,
    pub detect_fps: f64,
    pub idle_detect_interval_secs: f64,
    pub motion: MotionSettings,
    /// Look in regions around what moves (else the whole frame), enlarged up to `region_scale`
    /// within `region_budget` of one square pass.
    pub regions: bool,
    pub region_scale: f32,
    pub region_budget: f32,
    /// The camera's models that this server has loaded, by their index in the scheduler.
    pub models: Vec<usize>,
    /// The first pose model among them: its people feed the person and fall events.
    pub pose_model: Option<usize>,
    /// Classes that raise `object_detected` events.
    pub object_classes: Vec<String>,
    /// The camera's zones (the events read `no_falls` and `watch`)...
    pub zones: Arc<Vec<Zone>>,
    /// ...and the polygons of its `motion_mask` ones (the motion detector's).
    pub motion_mask: Vec<Vec<[f64; 2]>>,
}

impl FrameSettings {
    /// The camera's settings, each its own where it sets one, else `[detection]`'s; `engines`: the
    /// models loaded (none: no model).
    pub fn resolve(config: &CameraConfig, detection: &DetectionSettings, engines: Option<&Engines>) -> Self {
        let loaded = |name: &String| engines.and_then(|e| e.0.iter().position(|e| &**e.model() == name.as_str()));
        let models: Vec<usize> = config.model_names().iter().filter_map(loaded).collect();
        let task = |m: usize| engines.and_then(|e| e.0.get(m)).map(|e| e.task());
        let pose_model = models.iter().copied().find(|&m| task(m) == Some(Task::Pose));
        let own = config.detection(detection);
        Self {
            resize_width: config.resize_width,
            jpeg_quality: config.jpeg_quality,
            max_fps: config.max_fps,
            loop_video: config.loop_video,
            ai_enabled: config.ai_enabled,
            detect_fps: own.detect_fps,
            idle_detect_interval_secs: own.idle_detect_interval_secs,
            motion: own.motion,
            regions: detection.regions,
            region_scale: detection.region_scale,
            region_budget: detection.region_budget,
            models,
            pose_model,
            object_classes: config.object_event_classes().to_vec(),
            zones: Arc::new(config.zones.clone()),
            motion_mask: crate::zones::of_kind(&config.zones, ZoneKind::MotionMask).map(|z| z.points.clone()).collect(),
        }
    }
}

/// The newest `FrameSettings` of one camera, rebuilt when its `LiveConfig` changes.
pub struct SettingsWatch {
    generation: u64,
    current: Arc<FrameSettings>,
}

impl SettingsWatch {
    pub fn new(live: &LiveConfig, engines: Option<&Engines>) -> Self {
        let generation = live.generation();
        Self { generation, current: Arc::new(Self::resolve(live, engines)) }
    }

    /// The settings for this frame: the last ones, unless the camera's settings changed since.
    pub fn current(&mut self, live: &LiveConfig, engines: Option<&Engines>) -> Arc<FrameSettings> {
        let generation = live.generation();
        if generation != self.generation {
            self.current = Arc::new(Self::resolve(live, engines));
            self.generation = generation;
        }
        self.current.clone()
    }

    fn resolve(live: &LiveConfig, engines: Option<&Engines>) -> FrameSettings {
        let detection = live.detection();
        FrameSettings::resolve(&live.read().unwrap(), &detection, engines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::scripted::Counting;
    use crate::camera::config::SourceType;
    use crate::config::Live;

    fn engines() -> Engines {
        Engines::named(vec![("objects", Counting::new(Task::Detect)), ("pose", Counting::new(Task::Pose))])
    }

    fn live() -> LiveConfig {
        LiveConfig::new(CameraConfig::new("cam", "a.mp4", SourceType::VideoFile), Live::default())
    }

    #[test]
    fn a_camera_takes_the_detection_defaults_where_it_sets_none_of_its_own() {
        let mut config = CameraConfig::new("cam", "a.mp4", SourceType::VideoFile);
        let defaults = DetectionSettings { detect_fps: 3.0, idle_detect_interval_secs: 4.0, ..DetectionSettings::default() };
        let s = FrameSettings::resolve(&config, &defaults, None);
        assert_eq!((s.detect_fps, s.idle_detect_interval_secs), (3.0, 4.0));
        config.detect_fps = Some(0.0);
        let s = FrameSettings::resolve(&config, &defaults, None);
        assert_eq!((s.detect_fps, s.idle_detect_interval_secs), (0.0, 4.0));
        assert!(s.models.is_empty(), "no model loaded: none to run");
    }

    #[test]
    fn the_cameras_models_are_the_loaded_ones_by_their_index_in_the_scheduler() {
        let mut config = CameraConfig::new("cam", "a.mp4", SourceType::VideoFile);
        config.models = Some(vec!["pose".into(), "missing".into(), "objects".into()]);
        let s = FrameSettings::resolve(&config, &DetectionSettings::default(), Some(&engines()));
        assert_eq!((s.models, s.pose_model), (vec![1, 0], Some(1)));
    }

    #[test]
    fn the_settings_are_rebuilt_only_when_the_camera_or_its_defaults_change() {
        let (live, engines) = (live(), engines());
        let mut watch = SettingsWatch::new(&live, Some(&engines));
        let first = watch.current(&live, Some(&engines));
        assert!(Arc::ptr_eq(&first, &watch.current(&live, Some(&engines))), "unchanged: the same snapshot");
        live.write().unwrap().models = Some(vec!["objects".into()]);
        let patched = watch.current(&live, Some(&engines));
        assert_eq!((patched.models.as_slice(), patched.pose_model), ([0].as_slice(), None));
        live.detection_handle().set(DetectionSettings { detect_fps: 1.0, ..DetectionSettings::default() });
        assert_eq!(watch.current(&live, Some(&engines)).detect_fps, 1.0, "new defaults apply like a PATCH");
    }
}
