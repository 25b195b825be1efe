//! Typed settings: loaded once from a TOML file plus `HAVEN__…` environment overrides,
//! validated before anything starts.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::camera::motion::MotionSettings;
use crate::events::{EventSettings, FallConfig, TrackerConfig};
use crate::inference::pose::InputSize;
use crate::redact::redact_url;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: cannot read settings: {message}")]
    Load { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub stream: StreamSettings,
    /// `/ws/alerts`'s timeouts (the section may be left out: the defaults apply).
    #[serde(default)]
    pub alerts: AlertsSettings,
    /// The legacy `[model]` section: the pose model, as `[models.pose]` (both at once is an error).
    /// Moved into `models` when the settings are loaded, so it is always `None` afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSettings>,
    /// `[models.<name>]`: every model the process loads, once, shared by the cameras that name it
    /// in their `models` list.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSettings>,
    pub capture: CaptureSettings,
    pub api: ApiSettings,
    #[serde(default)]
    pub detection: DetectionSettings,
    #[serde(default)]
    pub events: EventSettings,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// `[cluster]`: run as one node of a HAVEN cluster on NATS; without it, a single server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSettings>,
    /// The file these settings came from (for messages); not part of the file itself.
    #[serde(skip)]
    pub origin: String,
    /// Where camera changes made at run time are written back: the file `load` read.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Bearer token that POST, PATCH and DELETE requests must carry; empty means none is needed.
    #[serde(default)]
    pub token: String,
    /// Reads need the token too (REST, WebSockets, snapshots, MJPEG, metrics, events); clients that
    /// cannot set a header (a browser's WebSocket or `<img>`) pass it as `?token=`. The UI's own files
    /// stay open.
    #[serde(default)]
    pub protect_reads: bool,
    /// Directories that file sources added through the API must lie in.
    pub media_dirs: Vec<PathBuf>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `host:port`; port 0 picks a free port (tests).
    pub bind: String,
    /// HTTP worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Frames per second a viewer gets unless it asks for another rate with `?fps=`.
    pub fps_limit: f64,
    /// Upper bound a viewer may ask for with `?fps=`.
    pub max_fps: f64,
    /// How often the server pings each viewer.
    pub heartbeat_interval_secs: f64,
    /// A viewer silent (no pong, no message) for this long is closed.
    pub client_timeout_secs: f64,
    /// A viewer whose socket has not accepted a frame for this long is closed: it has stopped reading.
    pub send_timeout_secs: f64,
}

/// `[alerts]`: the timeouts of `/ws/alerts` sockets, as `[stream]` has them for viewers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSettings {
    /// How often the server pings each alerts socket.
    pub heartbeat_interval_secs: f64,
    /// An alerts socket silent (no pong, no message) for this long is closed.
    pub client_timeout_secs: f64,
    /// An alerts socket that has not taken an alert for this long is closed: it has stopped reading.
    pub send_timeout_secs: f64,
}

impl Default for AlertsSettings {
    fn default() -> Self {
        Self { heartbeat_interval_secs: 10.0, client_timeout_secs: 30.0, send_timeout_secs: 10.0 }
    }
}

/// A socket's heartbeat, client timeout and send timeout (`[stream]`, `[alerts]`).
fn validate_socket(section: &str, heartbeat: f64, client_timeout: f64, send_timeout: f64) -> Result<(), String> {
    for (name, v) in [("heartbeat_interval_secs", heartbeat), ("client_timeout_secs", client_timeout), ("send_timeout_secs", send_timeout)] {
        if !(v > 0.0 && v <= 3600.0) {
            return Err(format!("{section}.{name} {v} is out of range (0, 3600]"));
        }
    }
    if client_timeout <= heartbeat {
        return Err(format!("{section}.client_timeout_secs must be longer than {section}.heartbeat_interval_secs"));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// false: the model is not loaded, and cameras that name it run without it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub weights: PathBuf,
    /// The network input's longer side; the shorter one follows the frame's aspect ratio (rounded up
    /// to a multiple of 32), unless `input_width` and `input_height` force a size.
    #[serde(default = "default_input_size")]
    pub input_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_height: Option<usize>,
    /// Keep detections scoring above this (Ultralytics' default, 0.25, when left out).
    #[serde(default = "default_conf_threshold")]
    pub conf_threshold: f32,
    /// NMS: drop boxes overlapping a better one of their class above this IoU (0.7 when left out).
    #[serde(default = "default_iou_threshold")]
    pub iou_threshold: f32,
    /// Where the network runs: "cpu" (HAVEN's kernels), "cuda:N" or "metal" (a build with the
    /// `cuda`/`cudnn` or `metal` feature).
    #[serde(default = "default_device")]
    pub device: String,
    /// Only these classes (by name, as the model's checkpoint names them) are kept, before NMS;
    /// none: every class. Checked against the model's names when it is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
}

impl ModelSettings {
    /// Every rule about `[model]`; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_as("model")
    }

    /// Every rule about one model's section (`model`, `models.objects`); the message names the setting.
    pub fn validate_as(&self, section: &str) -> Result<(), String> {
        for (name, v) in [("input_size", Some(self.input_size)), ("input_width", self.input_width), ("input_height", self.input_height)] {
            let Some(v) = v else { continue };
            if v == 0 || v % 32 != 0 || v > 2048 {
                return Err(format!("{section}.{name} {v} must be a multiple of 32 between 32 and 2048"));
            }
        }
        for (name, v) in [("conf_threshold", self.conf_threshold), ("iou_threshold", self.iou_threshold)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{section}.{name} {v} is out of range 0-1"));
            }
        }
        crate::text::check("weights", &self.weights.to_string_lossy(), crate::text::PATH).map_err(|e| format!("{section}.{e}"))?;
        if let Some(classes) = &self.classes {
            if classes.is_empty() {
                return Err(format!("{section}.classes is empty: leave it out to keep every class"));
            }
            for c in classes {
                crate::text::check("classes", c, crate::text::SOURCE).map_err(|e| format!("{section}.{e}"))?;
            }
        }
        // A device this build cannot drive fails here, at start-up; one the machine lacks, at load.
        self.device_spec().and_then(|d| d.built_in()).map_err(|e| format!("{section}.{e}"))?;
        // The engine's own rules, should they ever be stricter than the ones above.
        self.pose_options().validate().map_err(|e| format!("{section}: {e}"))
    }

    /// The network input frames are letterboxed into: `input_width` x `input_height` when both are
    /// set; otherwise the frame's aspect ratio with the one set (or `input_size`) as its longer side.
    pub fn input(&self) -> InputSize {
        match (self.input_width, self.input_height) {
            (Some(w), Some(h)) => InputSize::Fixed(w, h),
            (Some(w), None) => InputSize::Fitted(w),
            (None, Some(h)) => InputSize::Fitted(h),
            (None, None) => InputSize::Fitted(self.input_size),
        }
    }

    /// The pose model's options (a fitted input is loaded at its square size).
    pub fn pose_options(&self) -> haven_pose::PoseOptions {
        let (input_width, input_height) = match self.input() {
            InputSize::Fixed(w, h) => (w, h),
            InputSize::Fitted(side) => (side, side),
        };
        haven_pose::PoseOptions {
            input_width,
            input_height,
            conf_threshold: self.conf_threshold,
            iou_threshold: self.iou_threshold,
            device: self.device_spec().unwrap_or_default(),
            ..haven_pose::PoseOptions::default()
        }
    }

    /// `model.device` parsed (validated with the rest by [`ModelSettings::validate`]).
    pub fn device_spec(&self) -> Result<haven_pose::DeviceSpec, haven_pose::PoseError> {
        self.device.parse()
    }
}

/// `[events]`, `[events.fall]` and `[events.tracker]`; the message names the setting.
fn validate_events(e: &EventSettings) -> Result<(), String> {
    let secs = [
        ("pre_roll_secs", e.pre_roll_secs, 0.0, 60.0),
        ("post_roll_secs", e.post_roll_secs, 0.0, 60.0),
        ("max_clip_secs", e.max_clip_secs, 1.0, 3600.0),
        ("person_min_secs", e.person_min_secs, 0.0, 60.0),
        ("retention_days", e.retention_days, 0.0, 36500.0),
    ];
    for (name, v, lo, hi) in secs {
        if !(v >= lo && v <= hi) {
            return Err(format!("events.{name} must lie in [{lo}, {hi}], got {v}"));
        }
    }
    if e.max_concurrent_clips == 0 {
        return Err("events.max_concurrent_clips must be at least 1".into());
    }
    crate::text::check("events.data_dir", &e.data_dir.to_string_lossy(), crate::text::PATH).map_err(|e| e.to_string())?;
    validate_fall("events.fall", &e.fall)?;
    validate_tracker("events.tracker", &e.tracker)?;
    let o = &e.objects;
    if !(o.min_secs >= 0.0 && o.min_secs <= 60.0) {
        return Err(format!("events.objects.min_secs must lie in [0, 60], got {}", o.min_secs));
    }
    validate_tracker("events.objects", &o.tracker())
}

/// `[events.fall]`, or a camera's own `fall` (`section` says which).
fn validate_fall(section: &str, f: &FallConfig) -> Result<(), String> {
    if !(0.0..=1.0).contains(&f.sensitivity) {
        return Err(format!("{section}.sensitivity must lie in [0, 1], got {}", f.sensitivity));
    }
    if !(f.min_duration_secs >= 0.0 && f.min_duration_secs <= 60.0) {
        return Err(format!("{section}.min_duration_secs must lie in [0, 60], got {}", f.min_duration_secs));
    }
    Ok(())
}

fn validate_tracker(section: &str, t: &TrackerConfig) -> Result<(), String> {
    let ranges = [
        ("iou_threshold", t.iou_threshold as f64, 0.0, 1.0),
        ("max_center_distance", t.max_center_distance as f64, 0.0, 10.0),
        ("max_unseen_secs", t.max_unseen_secs, 0.0, 60.0),
        ("min_score", t.min_score as f64, 0.0, 1.0),
    ];
    for (name, v, lo, hi) in ranges {
        if !(v >= lo && v <= hi) {
            return Err(format!("{section}.{name} must lie in [{lo}, {hi}], got {v}"));
        }
    }
    Ok(())
}

/// `[cluster]`: this server is one node of a cluster whose camera inventory, ownership leases and
/// relayed frames live in NATS (JetStream key-value buckets and core subjects). docs/scaling.md.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// One NATS URL or a list of them (`nats://host:4222`); the client tries each.
    pub nats_url: NatsUrls,
    /// This node's name, unique in the cluster: its leases and heartbeats carry it.
    pub node_name: String,
    /// A NATS credentials file (`.creds`: JWT and NKey seed); never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// This node's share of the cameras against the others' (rendezvous hashing weight).
    #[serde(default = "default_capacity")]
    pub capacity: f64,
    /// How long a camera's lease lasts unless renewed (renewed every third of it).
    #[serde(default = "default_lease_secs")]
    pub lease_secs: f64,
    /// Move cameras to the node rendezvous hashing picks when nodes join (false: a camera stays
    /// with its owner until the owner stops or dies).
    #[serde(default)]
    pub rebalance: bool,
    /// JetStream replicas of the buckets, the events stream and the media store when this node
    /// creates them: 1 on a single nats-server, 3 on a three-server NATS cluster (so that losing
    /// one server loses nothing).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

fn default_replicas() -> usize {
    1
}

/// `nats_url = "nats://a:4222"` or `nats_url = ["nats://a:4222", "nats://b:4222"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NatsUrls {
    One(String),
    Many(Vec<String>),
}

impl NatsUrls {
    pub fn list(&self) -> Vec<String> {
        match self {
            NatsUrls::One(u) => vec![u.clone()],
            NatsUrls::Many(v) => v.clone(),
        }
    }
}

fn default_capacity() -> f64 {
    1.0
}

fn default_lease_secs() -> f64 {
    6.0
}

/// The credentials file's path is shown as set or not, never its contents (nor its path).
impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("nats_url", &self.nats_url.list().iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("node_name", &self.node_name)
            .field("credentials_file", &self.credentials_file.as_ref().map(|_| "<set>"))
            .field("capacity", &self.capacity)
            .field("lease_secs", &self.lease_secs)
            .field("rebalance", &self.rebalance)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl ClusterSettings {
    /// Every rule about `[cluster]`; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let urls = self.nats_url.list();
        if urls.is_empty() {
            return Err("cluster.nats_url must name at least one NATS server".into());
        }
        for url in &urls {
            crate::text::check("cluster.nats_url", url, crate::text::SOURCE).map_err(|e| e.to_string())?;
            let scheme_ok = ["nats://", "tls://", "ws://", "wss://"].iter().any(|s| url.starts_with(s)) || !url.contains("://");
            if !scheme_ok {
                return Err(format!("cluster.nats_url {} must be nats://, tls://, ws:// or wss://", redact_url(url)));
            }
        }
        crate::text::check("cluster.node_name", &self.node_name, crate::text::ID).map_err(|e| e.to_string())?;
        if self.node_name.contains('.') {
            return Err(format!("cluster.node_name {:?} must not contain '.' (it is one token of NATS subjects)", self.node_name));
        }
        if let Some(path) = &self.credentials_file {
            crate::text::check("cluster.credentials_file", &path.to_string_lossy(), crate::text::PATH).map_err(|e| e.to_string())?;
        }
        if !(self.capacity > 0.0 && self.capacity <= 1000.0) {
            return Err(format!("cluster.capacity {} is out of range (0, 1000]", self.capacity));
        }
        if !(self.lease_secs >= 1.0 && self.lease_secs <= 300.0) {
            return Err(format!("cluster.lease_secs {} is out of range [1, 300]", self.lease_secs));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!("cluster.replicas {} is out of range [1, 5]", self.replicas));
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
    pub fn validate(&self) -> Result<(), String> {
        if self.workers > 64 {
            return Err(format!("detection.workers {} is out of range 0-64", self.workers));
        }
        validate_detect_fps("detection.detect_fps", self.detect_fps)?;
        validate_idle_interval("detection.idle_detect_interval_secs", self.idle_detect_interval_secs)?;
        if !(0.25..=4.0).contains(&self.region_scale) {
            return Err(format!("detection.region_scale {} is out of range 0.25-4", self.region_scale));
        }
        if !(0.1..=4.0).contains(&self.region_budget) {
            return Err(format!("detection.region_budget {} is out of range 0.1-4", self.region_budget));
        }
        self.motion.validate().map_err(|e| format!("detection.{e}"))
    }

    /// Worker threads to start on this machine.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => crate::inference::scheduler::default_workers(std::thread::available_parallelism().map_or(1, |n| n.get())),
            n => n,
        }
    }
}

fn validate_detect_fps(name: &str, v: f64) -> Result<(), String> {
    if (0.0..=120.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} {v} is out of range 0-120 (0: every frame)"))
    }
}

fn validate_idle_interval(name: &str, v: f64) -> Result<(), String> {
    if v > 0.0 && v <= 60.0 {
        Ok(())
    } else {
        Err(format!("{name} {v} is out of range (0, 60]"))
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
}

/// The models a camera runs unless it names others.
pub const DEFAULT_CAMERA_MODELS: &[&str] = &["pose"];

fn default_conf_threshold() -> f32 {
    0.25
}

fn default_iou_threshold() -> f32 {
    0.7
}

fn default_input_size() -> usize {
    640
}

fn default_device() -> String {
    "cpu".into()
}

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
    /// detect model is loaded to ask). Messages name the camera and the setting.
    pub fn validate_models(&self, known: impl Fn(&str) -> bool, known_list: &str, classes: Option<&dyn Fn(&str) -> bool>) -> Result<(), String> {
        let id = crate::text::shown(&self.camera_id);
        if let Some(models) = &self.models {
            for name in models {
                if !known(name) {
                    return Err(format!("camera \"{id}\": models names \"{}\", which is not a model of this server (known: {known_list})", crate::text::shown(name)));
                }
            }
        }
        if let (Some(classes), Some(wanted)) = (classes, &self.object_events) {
            for c in wanted {
                if !classes(c) {
                    return Err(format!("camera \"{id}\": object_events names \"{}\", which no detect model of this server has as a class", crate::text::shown(c)));
                }
            }
        }
        Ok(())
    }

    /// The source as it may be shown: RTSP credentials masked.
    pub fn display_source(&self) -> String {
        redact_url(&self.source)
    }

    /// Checks one camera; the message names the camera and the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.camera_id.trim().is_empty() {
            return Err("camera with an empty camera_id".into());
        }
        let id = &crate::text::shown(&self.camera_id);
        crate::text::check("camera_id", &self.camera_id, crate::text::ID).map_err(|e| format!("camera \"{id}\": {e}"))?;
        crate::text::check("source", &self.source, crate::text::SOURCE).map_err(|e| format!("camera \"{id}\": {e}"))?;
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(format!(
                "camera \"{id}\": jpeg_quality {} is out of range 1-100",
                self.jpeg_quality
            ));
        }
        if let Some(w) = self.resize_width {
            if !(16..=7680).contains(&w) {
                return Err(format!("camera \"{id}\": resize_width {w} is out of range 16-7680"));
            }
        }
        if let Some(fps) = self.max_fps {
            if !(fps > 0.0 && fps <= 120.0) {
                return Err(format!("camera \"{id}\": max_fps {fps} is out of range (0, 120]"));
            }
        }
        if let Some(v) = self.detect_fps {
            validate_detect_fps(&format!("camera \"{id}\": detect_fps"), v)?;
        }
        if let Some(v) = self.idle_detect_interval_secs {
            validate_idle_interval(&format!("camera \"{id}\": idle_detect_interval_secs"), v)?;
        }
        if let Some(m) = &self.motion {
            m.validate().map_err(|e| format!("camera \"{id}\": {e}"))?;
        }
        if let Some(f) = &self.fall {
            validate_fall(&format!("camera \"{id}\": fall"), f)?;
        }
        for (field, list, limit) in [("models", &self.models, 32), ("object_events", &self.object_events, 1000)] {
            let Some(list) = list else { continue };
            if list.len() > limit {
                return Err(format!("camera \"{id}\": {field} lists {} names; the limit is {limit}", list.len()));
            }
            let mut seen = HashSet::new();
            for name in list {
                crate::text::check(field, name, crate::text::SOURCE).map_err(|e| format!("camera \"{id}\": {e}"))?;
                if !seen.insert(name) {
                    return Err(format!("camera \"{id}\": {field} names \"{}\" twice", crate::text::shown(name)));
                }
            }
        }
        if self.source_type == SourceType::Rtsp
            && !(self.source.starts_with("rtsp://") || self.source.starts_with("rtsps://"))
        {
            return Err(format!(
                "camera \"{id}\": source_type is rtsp but source {} is not an rtsp:// URL",
                self.display_source()
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Loads `path` (TOML), applies `HAVEN__SECTION__KEY` environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let origin = path.display().to_string();
        if !path.is_file() {
            return Err(SettingsError::Load {
                path: origin,
                message: "file not found".into(),
            });
        }
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("HAVEN")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .map_err(|e| SettingsError::Load {
                path: origin.clone(),
                message: e.to_string(),
            })?;
        let mut settings: Settings = raw.try_deserialize().map_err(|e| SettingsError::Invalid {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        settings.origin = origin;
        settings.file = Some(path.to_path_buf());
        settings.resolve_models()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses settings from TOML text (no environment), then validates.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SettingsError> {
        let mut settings: Settings = toml::from_str(text).map_err(|e| SettingsError::Invalid {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        settings.origin = origin.to_string();
        settings.resolve_models()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Moves the legacy `[model]` into `models` as the pose model (checked as `model.…` first, so
    /// that its messages keep naming the section the file has). Both `[model]` and `[models.pose]`
    /// is an error: which one is meant cannot be guessed.
    pub fn resolve_models(&mut self) -> Result<(), SettingsError> {
        let Some(model) = self.model.take() else { return Ok(()) };
        let invalid = |message: String| SettingsError::Invalid { path: self.origin.clone(), message };
        model.validate_as("model").map_err(invalid)?;
        if self.models.contains_key("pose") {
            return Err(invalid("both [model] and [models.pose] are set: [model] is the old name of [models.pose]; keep one".into()));
        }
        self.models.insert("pose".into(), model);
        Ok(())
    }

    /// The pose model's settings (`[models.pose]`, or the legacy `[model]`).
    pub fn pose_model(&self) -> Option<&ModelSettings> {
        self.models.get("pose")
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |message: String| SettingsError::Invalid {
            path: self.origin.clone(),
            message,
        };
        let s = &self.stream;
        if !(s.fps_limit > 0.0 && s.fps_limit <= s.max_fps && std::time::Duration::try_from_secs_f64(1.0 / s.fps_limit).is_ok()) {
            return Err(invalid(format!(
                "stream.fps_limit {} must be above 0 and at most stream.max_fps {}",
                s.fps_limit, s.max_fps
            )));
        }
        if !(s.max_fps > 0.0 && s.max_fps <= 120.0) {
            return Err(invalid(format!("stream.max_fps {} is out of range (0, 120]", s.max_fps)));
        }
        validate_socket("stream", s.heartbeat_interval_secs, s.client_timeout_secs, s.send_timeout_secs).map_err(invalid)?;
        let a = &self.alerts;
        validate_socket("alerts", a.heartbeat_interval_secs, a.client_timeout_secs, a.send_timeout_secs).map_err(invalid)?;
        if let Some(model) = &self.model {
            model.validate_as("model").map_err(invalid)?;
        }
        for (name, model) in &self.models {
            crate::text::check("models", name, crate::text::ID).map_err(|e| invalid(format!("{e} (a [models.<name>] section)")))?;
            model.validate_as(&format!("models.{name}")).map_err(invalid)?;
        }
        let c = &self.capture;
        for (name, v) in [
            ("capture.open_timeout_secs", c.open_timeout_secs),
            ("capture.read_timeout_secs", c.read_timeout_secs),
            ("capture.watchdog_secs", c.watchdog_secs),
            ("capture.reconnect_initial_secs", c.reconnect_initial_secs),
            ("capture.reconnect_max_secs", c.reconnect_max_secs),
        ] {
            if !(v > 0.0 && v <= 3600.0) {
                return Err(invalid(format!("{name} {v} is out of range (0, 3600]")));
            }
        }
        if c.reconnect_initial_secs > c.reconnect_max_secs {
            return Err(invalid("capture.reconnect_initial_secs is above capture.reconnect_max_secs".into()));
        }
        validate_events(&self.events).map_err(invalid)?;
        self.detection.validate().map_err(invalid)?;
        if let Some(cluster) = &self.cluster {
            cluster.validate().map_err(invalid)?;
        }
        if self.api.protect_reads && self.api.token.is_empty() {
            return Err(invalid("api.protect_reads needs api.token".into()));
        }
        if !(256..=16 << 20).contains(&self.api.max_body_bytes) {
            return Err(invalid(format!("api.max_body_bytes {} is out of range 256-16777216", self.api.max_body_bytes)));
        }
        for dir in &self.api.media_dirs {
            crate::text::check("api.media_dirs", &dir.to_string_lossy(), crate::text::PATH).map_err(|e| invalid(e.to_string()))?;
        }
        let mut seen = HashSet::new();
        let known = match self.models.keys().map(String::as_str).collect::<Vec<_>>().join(", ") {
            none if none.is_empty() => "none".to_string(),
            list => list,
        };
        for cam in &self.cameras {
            cam.validate().map_err(invalid)?;
            cam.validate_models(|n| self.models.contains_key(n), &known, None).map_err(invalid)?;
            if !seen.insert(cam.camera_id.as_str()) {
                return Err(invalid(format!("camera \"{}\": duplicate camera_id", cam.camera_id)));
            }
        }
        Ok(())
    }
}

/// Writes the camera list back into the settings file, keeping everything else in it (comments
/// included), atomically: a temporary file beside it, fsync, rename, fsync of the directory.
pub fn save_cameras(path: &Path, cameras: &[CameraConfig]) -> Result<(), SettingsError> {
    let fail = |message: String| SettingsError::Load { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| fail(e.to_string()))?;
    // The comment above the first camera documents them all: keep it.
    let leading_comment = doc
        .get("cameras")
        .and_then(|c| c.as_array_of_tables())
        .and_then(|a| a.get(0))
        .and_then(|t| t.decor().prefix().cloned());
    let mut tables = toml_edit::ArrayOfTables::new();
    for (i, cam) in cameras.iter().enumerate() {
        let value = toml_edit::ser::to_document(cam).map_err(|e| fail(e.to_string()))?;
        let mut table = value.as_table().clone();
        match (&leading_comment, i) {
            (Some(prefix), 0) => table.decor_mut().set_prefix(prefix.clone()),
            _ => table.decor_mut().set_prefix("\n"),
        }
        tables.push(table);
    }
    doc.insert("cameras", toml_edit::Item::ArrayOfTables(tables));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("settings.toml");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(format!("cannot save cameras: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[server]
bind = "127.0.0.1:0"
[stream]
fps_limit = 10
max_fps = 30
heartbeat_interval_secs = 5
client_timeout_secs = 15
send_timeout_secs = 10
[model]
enabled = true
weights = "weights/yolo11n-pose.safetensors"
input_width = 640
input_height = 640
conf_threshold = 0.25
iou_threshold = 0.7
[capture]
open_timeout_secs = 5
read_timeout_secs = 3
watchdog_secs = 5
reconnect_initial_secs = 0.5
reconnect_max_secs = 3
[api]
media_dirs = ["data"]
max_body_bytes = 65536
"#;

    fn with_cameras(cams: &str) -> Result<Settings, SettingsError> {
        Settings::from_toml(&format!("{BASE}{cams}"), "test.toml")
    }

    #[test]
    fn shipped_defaults_are_valid() {
        let text = include_str!("../settings/default.toml");
        let s = Settings::from_toml(text, "settings/default.toml").unwrap();
        assert_eq!(s.cameras.len(), 3);
        assert_eq!(s.cameras[0].camera_id, "cam1");
        assert_eq!(s.server.bind, "127.0.0.1:8000");
        assert_eq!(s.stream.fps_limit, 10.0);
        // The file writes every default down: they must be the code's.
        assert_eq!(s.detection, DetectionSettings::default());
        assert_eq!(s.alerts, AlertsSettings::default());
        assert_eq!(s.models["pose"].input_size, default_input_size());
        assert_eq!(s.models.keys().collect::<Vec<_>>(), ["fall", "pose"], "the demo ships the pose and the fall model");
        assert_eq!(s.events.fall, crate::events::FallConfig::default());
    }

    #[test]
    fn duplicate_ids_are_named() {
        let cam = "[[cameras]]\ncamera_id=\"cam1\"\nsource=\"a.mp4\"\nsource_type=\"video_file\"\n";
        let err = with_cameras(&format!("{cam}{cam}")).unwrap_err().to_string();
        assert_eq!(err, "test.toml: camera \"cam1\": duplicate camera_id");
    }

    #[test]
    fn quality_out_of_range_is_named() {
        let err = with_cameras(
            "[[cameras]]\ncamera_id=\"cam4\"\nsource=\"a.mp4\"\nsource_type=\"video_file\"\njpeg_quality=0\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "test.toml: camera \"cam4\": jpeg_quality 0 is out of range 1-100");
    }

    #[test]
    fn unknown_source_type_is_rejected() {
        let err = with_cameras("[[cameras]]\ncamera_id=\"c\"\nsource=\"a.mp4\"\nsource_type=\"webcam\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml: "), "{err}");
        assert!(err.contains("webcam"), "{err}");
    }

    #[test]
    fn empty_id_is_rejected() {
        let err = with_cameras("[[cameras]]\ncamera_id=\"\"\nsource=\"a.mp4\"\nsource_type=\"video_file\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "test.toml: camera with an empty camera_id");
    }

    #[test]
    fn an_overlong_id_stops_start_up_with_the_limit_and_a_short_echo() {
        let long = "c".repeat(5000);
        let err = with_cameras(&format!("[[cameras]]\ncamera_id=\"{long}\"\nsource=\"a.mp4\"\nsource_type=\"video_file\"\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, format!("test.toml: camera \"{}…\": camera_id is 5000 characters long; the limit is 64", &long[..64]));
    }

    #[test]
    fn a_source_with_a_newline_is_rejected() {
        let err = with_cameras("[[cameras]]\ncamera_id=\"c\"\nsource=\"a.mp4\\nforged\"\nsource_type=\"video_file\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "test.toml: camera \"c\": source holds a control character ('\\n')");
    }

    fn with(section_lines: &str) -> Result<Settings, SettingsError> {
        Settings::from_toml(&format!("{BASE}{section_lines}"), "test.toml")
    }

    #[test]
    fn event_settings_are_checked_with_the_rest_and_named() {
        for (toml, message) in [
            ("[events]\npre_roll_secs = -1\n", "events.pre_roll_secs must lie in [0, 60], got -1"),
            ("[events]\nmax_concurrent_clips = 0\n", "events.max_concurrent_clips must be at least 1"),
            ("[events.fall]\nsensitivity = 1.5\n", "events.fall.sensitivity must lie in [0, 1], got 1.5"),
            ("[events.tracker]\nmax_unseen_secs = 100\n", "events.tracker.max_unseen_secs must lie in [0, 60], got 100"),
            ("[events.tracker]\niou_threshold = 2\n", "events.tracker.iou_threshold must lie in [0, 1], got 2"),
            ("[events]\ndata_dir = \"\"\n", "events.data_dir is empty"),
            (
                "[[cameras]]\ncamera_id=\"c\"\nsource=\"a.mp4\"\nsource_type=\"video_file\"\n[cameras.fall]\nmin_duration_secs = -2\n",
                "camera \"c\": fall.min_duration_secs must lie in [0, 60], got -2",
            ),
        ] {
            assert_eq!(with(toml).unwrap_err().to_string(), format!("test.toml: {message}"), "{toml}");
        }
        with("[events.fall]\nsensitivity = 0.7\n[events.tracker]\nmin_score = 0.5\n").unwrap();
    }

    #[test]
    fn model_settings_are_checked_in_one_place_and_named() {
        let model = |from: &str, to: &str| Settings::from_toml(&BASE.replace(from, to), "test.toml");
        for (from, to, message) in [
            ("input_width = 640", "input_width = 100", "model.input_width 100 must be a multiple of 32 between 32 and 2048"),
            ("input_height = 640", "input_height = 4096", "model.input_height 4096 must be a multiple of 32 between 32 and 2048"),
            ("conf_threshold = 0.25", "conf_threshold = 1.5", "model.conf_threshold 1.5 is out of range 0-1"),
            ("iou_threshold = 0.7", "iou_threshold = -0.1", "model.iou_threshold -0.1 is out of range 0-1"),
            ("weights = \"weights/yolo11n-pose.safetensors\"", "weights = \"\"", "model.weights is empty"),
            ("iou_threshold = 0.7", "iou_threshold = 0.7\ndevice = \"gpu\"", "model.device \"gpu\": expected \"cpu\", \"cuda\", \"cuda:N\" (N = 0, 1, ...) or \"metal\""),
        ] {
            assert_eq!(model(from, to).unwrap_err().to_string(), format!("test.toml: {message}"), "{to}");
        }
        // What the engine is given follows from the same settings.
        let m = model("input_height = 640\n", "").unwrap().models["pose"].clone();
        assert_eq!(m.input(), InputSize::Fitted(640));
        assert_eq!((m.pose_options().input_width, m.pose_options().input_height), (640, 640));
        let m = with("").unwrap().models["pose"].clone();
        assert_eq!(m.input(), InputSize::Fixed(640, 640));
        m.pose_options().validate().unwrap();
        assert_eq!((m.device.as_str(), m.pose_options().device), ("cpu", haven_pose::DeviceSpec::Cpu));
    }

    /// A build without CUDA (the default) refuses `device = "cuda:0"` at start-up, naming the setting.
    #[test]
    fn a_device_the_build_lacks_is_refused_naming_model_device() {
        let err = with_model_device("cuda:0").unwrap_err().to_string();
        if cfg!(feature = "cuda") {
            return;
        }
        assert!(err.contains("model.device \"cuda:0\"") && err.contains("--features cuda"), "{err}");
        let m = with_model_device("cpu").unwrap().models["pose"].clone();
        assert_eq!(m.pose_options().device, haven_pose::DeviceSpec::Cpu);
    }

    fn with_model_device(device: &str) -> Result<Settings, SettingsError> {
        Settings::from_toml(&BASE.replace("iou_threshold = 0.7", &format!("iou_threshold = 0.7\ndevice = \"{device}\"")), "test.toml")
    }

    #[test]
    fn named_models_and_each_cameras_models_are_checked_and_named() {
        let objects = "[models.objects]\nweights = \"w/yolo11n.safetensors\"\nconf_threshold = 0.35\niou_threshold = 0.7\nclasses = [\"car\", \"dog\"]\n";
        let cam = |extra: &str| format!("[[cameras]]\ncamera_id=\"c\"\nsource=\"a.mp4\"\nsource_type=\"video_file\"\n{extra}");
        // [model] is the pose model; [models.<name>] adds more; each is named in messages by its section.
        let s = with(&format!("{objects}{}", cam("models = [\"pose\", \"objects\"]\nobject_events = [\"car\"]\n"))).unwrap();
        assert_eq!(s.models.keys().collect::<Vec<_>>(), ["objects", "pose"]);
        assert!(s.model.is_none(), "[model] was moved into models");
        assert_eq!(s.models["objects"].classes.as_deref(), Some(&["car".to_string(), "dog".to_string()][..]));
        assert_eq!(s.cameras[0].model_names(), ["pose", "objects"]);
        assert_eq!(s.cameras[0].object_event_classes(), ["car"]);
        // A section that gives only its weights takes Ultralytics' thresholds and the other defaults.
        let s = with("[models.objects]\nweights = \"w/yolo11n.safetensors\"\n").unwrap();
        let m = &s.models["objects"];
        assert_eq!((m.conf_threshold, m.iou_threshold, m.input_size, m.device.as_str(), m.enabled), (0.25, 0.7, 640, "cpu", true));
        // A camera that names none runs the pose model.
        let s = with(&cam("")).unwrap();
        assert_eq!(s.cameras[0].model_names(), ["pose"]);
        assert!(s.cameras[0].object_event_classes().is_empty());
        for (toml, message) in [
            (cam("models = [\"pose\", \"objets\"]\n"), "camera \"c\": models names \"objets\", which is not a model of this server (known: pose)"),
            (cam("models = [\"pose\", \"pose\"]\n"), "camera \"c\": models names \"pose\" twice"),
            (cam("object_events = [\"\"]\n"), "camera \"c\": object_events is empty"),
            (objects.replace("conf_threshold = 0.35", "conf_threshold = 2"), "models.objects.conf_threshold 2 is out of range 0-1"),
            (objects.replace("[\"car\", \"dog\"]", "[]"), "models.objects.classes is empty: leave it out to keep every class"),
            ("[models.\"a b\"]\nweights = \"w\"\nconf_threshold = 0.3\niou_threshold = 0.7\n".to_string(), "models may only hold letters, digits, '_', '-' and '.' (found ' ') (a [models.<name>] section)"),
            ("[events.objects]\nmax_unseen_secs = 100\n".to_string(), "events.objects.max_unseen_secs must lie in [0, 60], got 100"),
            ("[events.objects]\nmin_secs = -1\n".to_string(), "events.objects.min_secs must lie in [0, 60], got -1"),
        ] {
            assert_eq!(with(&toml).unwrap_err().to_string(), format!("test.toml: {message}"), "{toml}");
        }
        // [model] and [models.pose] are one model under two names: both at once is refused.
        let twice = "[models.pose]\nweights = \"w\"\nconf_threshold = 0.3\niou_threshold = 0.7\n";
        assert_eq!(
            with(twice).unwrap_err().to_string(),
            "test.toml: both [model] and [models.pose] are set: [model] is the old name of [models.pose]; keep one"
        );
        // [models.pose] alone is the pose model.
        let only_new = Settings::from_toml(&BASE.replace("[model]", "[models.pose]"), "test.toml").unwrap();
        assert_eq!(only_new.pose_model().unwrap().weights, PathBuf::from("weights/yolo11n-pose.safetensors"));
    }

    #[test]
    fn a_cameras_object_events_are_checked_against_the_detect_models_classes() {
        let mut cam = CameraConfig::new("yard", "a.mp4", SourceType::VideoFile);
        cam.models = Some(vec!["pose".into(), "objects".into()]);
        cam.object_events = Some(vec!["car".into(), "unicorn".into()]);
        let known = |n: &str| n == "pose" || n == "objects";
        let coco = |c: &str| ["person", "car", "dog"].contains(&c);
        let err = cam.validate_models(known, "objects, pose", Some(&coco)).unwrap_err();
        assert_eq!(err, "camera \"yard\": object_events names \"unicorn\", which no detect model of this server has as a class");
        cam.object_events = Some(vec!["car".into()]);
        cam.validate_models(known, "objects, pose", Some(&coco)).unwrap();
        // Nothing loaded to ask: the classes cannot be checked, the models still are.
        cam.object_events = Some(vec!["unicorn".into()]);
        cam.validate_models(known, "objects, pose", None).unwrap();
        cam.models = Some(vec!["cars".into()]);
        assert!(cam.validate_models(known, "objects, pose", None).unwrap_err().contains("models names \"cars\""));
    }

    #[test]
    fn cluster_settings_default_and_are_checked_and_named() {
        let s = with("[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\nnode_name = \"a\"\n").unwrap();
        let c = s.cluster.unwrap();
        assert_eq!((c.capacity, c.lease_secs, c.rebalance, c.credentials_file), (1.0, 6.0, false, None));
        assert_eq!(c.nats_url.list(), vec!["nats://127.0.0.1:4222".to_string()]);
        let s = with("[cluster]\nnats_url = [\"nats://a:1\", \"nats://b:2\"]\nnode_name = \"n-1\"\ncapacity = 2.5\n").unwrap();
        assert_eq!(s.cluster.unwrap().nats_url.list().len(), 2);
        assert!(with("").unwrap().cluster.is_none(), "no [cluster]: a single server");
        for (lines, message) in [
            ("nats_url = []\nnode_name = \"a\"", "cluster.nats_url must name at least one NATS server"),
            ("nats_url = \"http://x:1\"\nnode_name = \"a\"", "cluster.nats_url http://x:1 must be nats://, tls://, ws:// or wss://"),
            ("nats_url = \"nats://x:1\"\nnode_name = \"\"", "cluster.node_name is empty"),
            ("nats_url = \"nats://x:1\"\nnode_name = \"a.b\"", "cluster.node_name \"a.b\" must not contain '.' (it is one token of NATS subjects)"),
            ("nats_url = \"nats://x:1\"\nnode_name = \"a\"\ncapacity = 0", "cluster.capacity 0 is out of range (0, 1000]"),
            ("nats_url = \"nats://x:1\"\nnode_name = \"a\"\nlease_secs = 0.5", "cluster.lease_secs 0.5 is out of range [1, 300]"),
            ("nats_url = \"nats://x:1\"\nnode_name = \"a\"\nreplicas = 0", "cluster.replicas 0 is out of range [1, 5]"),
        ] {
            assert_eq!(with(&format!("[cluster]\n{lines}\n")).unwrap_err().to_string(), format!("test.toml: {message}"), "{lines}");
        }
        let secret = with("[cluster]\nnats_url = \"nats://u:pw@x:1\"\nnode_name = \"a\"\ncredentials_file = \"/secret/n.creds\"\n").unwrap();
        let shown = format!("{:?}", secret.cluster.unwrap());
        assert!(!shown.contains("/secret") && !shown.contains("pw"), "{shown}");
    }

    #[test]
    fn alerts_timeouts_default_and_are_checked_like_the_streams() {
        assert_eq!(with("").unwrap().alerts, AlertsSettings::default());
        let s = with("[alerts]\nheartbeat_interval_secs = 1\nclient_timeout_secs = 2\nsend_timeout_secs = 3\n").unwrap();
        assert_eq!(s.alerts, AlertsSettings { heartbeat_interval_secs: 1.0, client_timeout_secs: 2.0, send_timeout_secs: 3.0 });
        for (toml, message) in [
            ("[alerts]\nheartbeat_interval_secs = 0\n", "alerts.heartbeat_interval_secs 0 is out of range (0, 3600]"),
            ("[alerts]\nclient_timeout_secs = 5\n", "alerts.client_timeout_secs must be longer than alerts.heartbeat_interval_secs"),
            ("[alerts]\nsend_timeout_secs = 5000\n", "alerts.send_timeout_secs 5000 is out of range (0, 3600]"),
        ] {
            assert_eq!(with(toml).unwrap_err().to_string(), format!("test.toml: {message}"), "{toml}");
        }
        assert!(with("[alerts]\nbogus = 1\n").is_err());
    }

    #[test]
    fn rtsp_errors_never_show_the_password() {
        let err = with_cameras(
            "[[cameras]]\ncamera_id=\"door\"\nsource=\"http://admin:hunter2@10.0.0.5/s\"\nsource_type=\"rtsp\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("admin:***@10.0.0.5"), "{err}");
    }
}

#[cfg(test)]
mod save_tests {
    use super::*;

    #[test]
    fn saving_cameras_keeps_the_rest_of_the_file() {
        let dir = std::env::temp_dir().join(format!("haven-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.toml");
        std::fs::write(&path, include_str!("../settings/default.toml")).unwrap();
        let mut s = Settings::load(&path).unwrap();
        s.cameras.remove(1);
        s.cameras[0].jpeg_quality = 55;
        save_cameras(&path, &s.cameras).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# Frames per second each viewer gets"), "comments kept");
        assert!(text.contains("# jpeg_quality: 1-100.\n"), "the cameras' comment kept:\n{text}");
        let again = Settings::load(&path).unwrap();
        assert_eq!(again.cameras, s.cameras);
        assert_eq!(again.server.bind, "127.0.0.1:8000");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
