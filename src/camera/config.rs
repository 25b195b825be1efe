//! A camera's settings (`[[cameras]]`), how it captures (`[capture]`) and when its frames go to the
//! models (`[detection]`): the types, their defaults and their rules, owned here with the code that
//! uses them. The loader (`crate::settings`) reads them from the file and checks them at start-up.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::camera::motion::MotionSettings;
use crate::config::ConfigError;
use crate::events::FallConfig;
use crate::redact::redact_url;
pub use crate::zones::{Zone, ZoneKind};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSettings {
    /// RTSP: how long opening a camera may take before the attempt fails.
    pub open_timeout_secs: f64,
    /// RTSP: how long one read may block.
    pub read_timeout_secs: f64,
    /// A camera that delivers no frame for this long is treated as failed and reconnected.
    pub watchdog_secs: f64,
    /// Reconnect backoff: the first wait, doubled after each failure up to `reconnect_max_secs`.
    pub reconnect_initial_secs: f64,
    pub reconnect_max_secs: f64,
}


impl CaptureSettings {
    /// Every rule about `[capture]`; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("open_timeout_secs", self.open_timeout_secs),
            ("read_timeout_secs", self.read_timeout_secs),
            ("watchdog_secs", self.watchdog_secs),
            ("reconnect_initial_secs", self.reconnect_initial_secs),
            ("reconnect_max_secs", self.reconnect_max_secs),
        ] {
            if !(v > 0.0 && v <= 3600.0) {
                return Err(ConfigError::new(name, format!("{v} is out of range (0, 3600]")).within("capture"));
            }
        }
        if self.reconnect_initial_secs > self.reconnect_max_secs {
            return Err(ConfigError::new("capture.reconnect_initial_secs", "is above capture.reconnect_max_secs"));
        }
        Ok(())
    }
}

/// When cameras run the model: the defaults every camera takes unless it sets its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionSettings {
    /// Inference workers shared by every camera; 0: one per two cores.
    pub workers: usize,
    /// Passes of the model per second while something moves; 0: every frame.
    pub detect_fps: f64,
    /// People tracked but nothing moving are looked at again this often.
    pub idle_detect_interval_secs: f64,
    /// Look only where something moves or people are tracked, in regions cut from the full frame
    /// (small, far people are found there); false: always the whole frame.
    pub regions: bool,
    /// Regions are enlarged up to this many times the frame's own resolution...
    pub region_scale: f32,
    /// ...as far as this fraction of one square pass at the model's size allows (their cost, all
    /// together, in network input pixels).
    pub region_budget: f32,
    pub motion: MotionSettings,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            workers: 0,
            detect_fps: 5.0,
            idle_detect_interval_secs: 1.0,
            regions: true,
            region_scale: 1.4,
            region_budget: 1.0,
            motion: MotionSettings::default(),
        }
    }
}

impl DetectionSettings {
    /// Every rule about `[detection]`; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let section = |e: ConfigError| e.within("detection");
        if self.workers > 64 {
            return Err(section(ConfigError::new("workers", format!("{} is out of range 0-64", self.workers))));
        }
        validate_detect_fps(self.detect_fps).map_err(section)?;
        validate_idle_interval(self.idle_detect_interval_secs).map_err(section)?;
        if !(0.25..=4.0).contains(&self.region_scale) {
            return Err(section(ConfigError::new("region_scale", format!("{} is out of range 0.25-4", self.region_scale))));
        }
        if !(0.1..=4.0).contains(&self.region_budget) {
            return Err(section(ConfigError::new("region_budget", format!("{} is out of range 0.1-4", self.region_budget))));
        }
        self.motion.validate().map_err(|e| section(e.within("motion")))
    }

    /// Worker threads to start on this machine.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => crate::inference::scheduler::default_workers(std::thread::available_parallelism().map_or(1, |n| n.get())),
            n => n,
        }
    }
}

fn validate_detect_fps(v: f64) -> Result<(), ConfigError> {
    match (0.0..=120.0).contains(&v) {
        true => Ok(()),
        false => Err(ConfigError::new("detect_fps", format!("{v} is out of range 0-120 (0: every frame)"))),
    }
}

fn validate_idle_interval(v: f64) -> Result<(), ConfigError> {
    match v > 0.0 && v <= 60.0 {
        true => Ok(()),
        false => Err(ConfigError::new("idle_detect_interval_secs", format!("{v} is out of range (0, 60]"))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    VideoFile,
    Rtsp,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::VideoFile => "video_file",
            SourceType::Rtsp => "rtsp",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub camera_id: String,
    pub source: String,
    pub source_type: SourceType,
    #[serde(default = "default_true")]
    pub loop_video: bool,
    #[serde(default = "default_true")]
    pub ai_enabled: bool,
    /// Frames wider than this are scaled down (keeping the aspect ratio) before inference and encoding.
    #[serde(default)]
    pub resize_width: Option<u32>,
    #[serde(default = "default_jpeg_quality")]
    pub jpeg_quality: u8,
    /// Process at most this many frames per second (the rest are decoded and passed over); none
    /// means the source's own rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fps: Option<f64>,
    /// This camera's fall detection, if it differs from `[events.fall]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<FallConfig>,
    /// This camera's detect rate, if it differs from `[detection]`'s (0: every frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_fps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_detect_interval_secs: Option<f64>,
    /// This camera's motion detection, if it differs from `[detection.motion]` (fields left out take
    /// the built-in defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion: Option<MotionSettings>,
    /// The models (`[models.<name>]`) that look at this camera's frames; none: `["pose"]`. Changed
    /// live by `PATCH /api/cameras/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Classes (by name) of the camera's detect models that raise `object_detected` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_events: Option<Vec<String>>,
    /// Named polygons of the frame (`[[cameras.zones]]`): no falls, motion ignored, or events only
    /// inside (`crate::zones`). Changed live by `PATCH /api/cameras/{id}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<Zone>,
}

/// A camera's effective detection settings (`CameraConfig::detection`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraDetection {
    pub detect_fps: f64,
    pub idle_detect_interval_secs: f64,
    pub motion: MotionSettings,
}

/// The models a camera runs unless it names others.
pub const DEFAULT_CAMERA_MODELS: &[&str] = &["pose"];

fn default_true() -> bool {
    true
}

fn default_jpeg_quality() -> u8 {
    80
}

impl CameraConfig {
    /// A camera with every optional setting at its default, as a `[[cameras]]` entry with only
    /// these three keys would be.
    pub fn new(camera_id: &str, source: &str, source_type: SourceType) -> Self {
        Self {
            camera_id: camera_id.to_string(),
            source: source.to_string(),
            source_type,
            loop_video: default_true(),
            ai_enabled: default_true(),
            resize_width: None,
            jpeg_quality: default_jpeg_quality(),
            max_fps: None,
            fall: None,
            detect_fps: None,
            idle_detect_interval_secs: None,
            motion: None,
            models: None,
            object_events: None,
            zones: Vec::new(),
        }
    }

    /// When this camera's frames go to the models: its own settings where it has them, `[detection]`'s
    /// where not. The one place a camera's effective detect rate, idle interval and motion are found.
    pub fn detection(&self, defaults: &DetectionSettings) -> CameraDetection {
        CameraDetection {
            detect_fps: self.detect_fps.unwrap_or(defaults.detect_fps),
            idle_detect_interval_secs: self.idle_detect_interval_secs.unwrap_or(defaults.idle_detect_interval_secs),
            motion: self.motion.unwrap_or(defaults.motion),
        }
    }

    /// The names of the models that look at this camera (`models`, or `["pose"]`).
    pub fn model_names(&self) -> Vec<String> {
        match &self.models {
            Some(m) => m.clone(),
            None => DEFAULT_CAMERA_MODELS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The classes that raise `object_detected` events on this camera.
    pub fn object_event_classes(&self) -> &[String] {
        self.object_events.as_deref().unwrap_or_default()
    }

    /// Checks the camera's `models` against the models the process has (`known`) and its
    /// `object_events` against the classes its detect models can name (`classes`, `None` when no
    /// detect model is loaded to ask). The error names the camera and the setting.
    pub fn validate_models(&self, known: impl Fn(&str) -> bool, known_list: &str, classes: Option<&dyn Fn(&str) -> bool>) -> Result<(), ConfigError> {
        let id = crate::text::shown(&self.camera_id);
        if let Some(models) = &self.models {
            if let Some(name) = models.iter().find(|name| !known(name)) {
                let reason = format!("names \"{}\", which is not a model of this server (known: {known_list})", crate::text::shown(name));
                return Err(ConfigError::new("models", reason).on_camera(&id));
            }
        }
        if let (Some(classes), Some(wanted)) = (classes, &self.object_events) {
            if let Some(c) = wanted.iter().find(|c| !classes(c)) {
                let reason = format!("names \"{}\", which no detect model of this server has as a class", crate::text::shown(c));
                return Err(ConfigError::new("object_events", reason).on_camera(&id));
            }
        }
        Ok(())
    }

    /// The source as it may be shown: RTSP credentials masked.
    pub fn display_source(&self) -> String {
        redact_url(&self.source)
    }

    /// Checks one camera; the error names the camera and the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.camera_id.trim().is_empty() {
            return Err(ConfigError::new("", "camera with an empty camera_id"));
        }
        let id = &crate::text::shown(&self.camera_id);
        self.validate_fields().map_err(|e| e.on_camera(id))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        crate::text::check("camera_id", &self.camera_id, crate::text::ID)?;
        crate::text::check("source", &self.source, crate::text::SOURCE)?;
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(ConfigError::new("jpeg_quality", format!("{} is out of range 1-100", self.jpeg_quality)));
        }
        if let Some(w) = self.resize_width.filter(|w| !(16..=7680).contains(w)) {
            return Err(ConfigError::new("resize_width", format!("{w} is out of range 16-7680")));
        }
        if let Some(fps) = self.max_fps.filter(|fps| !(*fps > 0.0 && *fps <= 120.0)) {
            return Err(ConfigError::new("max_fps", format!("{fps} is out of range (0, 120]")));
        }
        self.detect_fps.map_or(Ok(()), validate_detect_fps)?;
        self.idle_detect_interval_secs.map_or(Ok(()), validate_idle_interval)?;
        if let Some(m) = &self.motion {
            m.validate().map_err(|e| e.within("motion"))?;
        }
        if let Some(f) = &self.fall {
            f.validate().map_err(|e| e.within("fall"))?;
        }
        self.validate_name_lists()?;
        crate::zones::validate(&self.zones)?;
        if self.source_type == SourceType::Rtsp && !(self.source.starts_with("rtsp://") || self.source.starts_with("rtsps://")) {
            return Err(ConfigError::new("source_type", format!("is rtsp but source {} is not an rtsp:// URL", self.display_source())));
        }
        Ok(())
    }

    /// `models` and `object_events`: bounded, printable, no name twice.
    fn validate_name_lists(&self) -> Result<(), ConfigError> {
        for (field, list, limit) in [("models", &self.models, 32), ("object_events", &self.object_events, 1000)] {
            let Some(list) = list else { continue };
            if list.len() > limit {
                return Err(ConfigError::new(field, format!("lists {} names; the limit is {limit}", list.len())));
            }
            let mut seen = HashSet::new();
            for name in list {
                crate::text::check(field, name, crate::text::SOURCE)?;
                if !seen.insert(name) {
                    return Err(ConfigError::new(field, format!("names \"{}\" twice", crate::text::shown(name))));
                }
            }
        }
        Ok(())
    }
}
