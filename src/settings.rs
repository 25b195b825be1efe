//! The loader at the top: reads the settings file (TOML) plus `HAVEN__…` environment overrides
//! into each part's own typed settings, checks them (each part's rules, then the ones that span
//! sections) before anything starts, and writes cameras changed at run time back into the file.
//! Nothing below (camera, inference, events, api, cluster) imports this module.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::api::config::{AlertsSettings, ApiSettings, ServerSettings, StreamSettings};
pub use crate::camera::config::{CameraConfig, CaptureSettings, DetectionSettings, SourceType, DEFAULT_CAMERA_MODELS};
pub use crate::cluster::config::{ClusterSettings, NatsUrls};
use crate::config::ConfigError;
use crate::events::EventSettings;
pub use crate::notify::{NotifySettings, WebhookSettings};
pub use crate::inference::config::ModelSettings;
pub use crate::mqtt::MqttSettings;

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
    /// `[notify]`: webhooks and the other places event changes are sent to.
    #[serde(default)]
    pub notify: NotifySettings,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// `[cluster]`: run as one node of a HAVEN cluster on NATS; without it, a single server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSettings>,
    /// `[mqtt]`: events and states to an MQTT broker, Home Assistant's way (off while `url` is empty).
    #[serde(default)]
    pub mqtt: MqttSettings,
    /// `[auth]`: sessions and sign-in throttling (accounts themselves live in the accounts file).
    #[serde(default)]
    pub auth: crate::auth::AuthSettings,
    /// The file these settings came from (for messages); not part of the file itself.
    #[serde(skip)]
    pub origin: String,
    /// Where camera changes made at run time are written back: the file `load` read.
    #[serde(skip)]
    pub file: Option<PathBuf>,
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
        let mut settings: Settings = raw.clone().try_deserialize().map_err(|e| SettingsError::Invalid {
            path: origin.clone(),
            message: name_camera(&e.to_string(), &raw),
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
        model.validate_as("model").map_err(|e| invalid(e.to_string()))?;
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

    /// Each part's rules, then the ones that span sections (the cameras' models); the error
    /// names the file and the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.check().map_err(|e| SettingsError::Invalid { path: self.origin.clone(), message: e.to_string() })
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.stream.validate()?;
        self.alerts.validate()?;
        if let Some(model) = &self.model {
            model.validate_as("model")?;
        }
        for (name, model) in &self.models {
            crate::text::check("models", name, crate::text::ID).map_err(|e| ConfigError::new("", format!("{e} (a [models.<name>] section)")))?;
            model.validate_as(&format!("models.{name}"))?;
        }
        self.capture.validate()?;
        self.events.validate()?;
        self.notify.validate()?;
        self.detection.validate()?;
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        self.api.validate()?;
        self.mqtt.validate()?;
        self.auth.validate()?;
        self.check_cameras()
    }

    /// Every camera's own rules, the models it names, and no camera_id twice.
    fn check_cameras(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        let known = match self.models.keys().map(String::as_str).collect::<Vec<_>>().join(", ") {
            none if none.is_empty() => "none".to_string(),
            list => list,
        };
        for cam in &self.cameras {
            cam.validate()?;
            cam.validate_models(|n| self.models.contains_key(n), &known, None)?;
            if !seen.insert(cam.camera_id.as_str()) {
                return Err(ConfigError::new("", format!("camera \"{}\": duplicate camera_id", cam.camera_id)));
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

/// A message about `cameras[N]…` (the TOML reader's: "… for key `cameras[0]zones[0]kind`") with
/// the camera named as the validators name it: `camera "ward": zones[0].kind: …`.
fn name_camera(message: &str, raw: &config::Config) -> String {
    let named = || {
        let (what, key) = message.split_once(" for key `")?;
        let key = key.strip_suffix('`').unwrap_or(key);
        let (index, field) = key.strip_prefix("cameras[")?.split_once(']')?;
        let id = raw.get_string(&format!("cameras[{index}].camera_id")).ok()?;
        // `zones[0]kind` as the validators write it: `zones[0].kind`.
        let field = field.trim_start_matches('.').replace("]", "].").replace("].[", "][").replace("]..", "].");
        Some(format!("camera \"{id}\": {}: {what}", field.trim_end_matches('.')))
    };
    named().unwrap_or_else(|| message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::config::default_input_size;
    use crate::inference::pose::InputSize;

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
    fn a_cameras_zones_are_read_with_whole_numbers_too_and_bad_ones_named() {
        let cam = "[[cameras]]\ncamera_id=\"door\"\nsource=\"a.mp4\"\nsource_type=\"video_file\"\n";
        let bed = "[[cameras.zones]]\nname = \"bed\"\nkind = \"no_falls\"\npoints = [[0, 0.5], [0.4, 0.5], [0.4, 1]]\n";
        let s = with_cameras(&format!("{cam}{bed}")).unwrap();
        assert_eq!(s.cameras[0].zones[0].points, [[0.0, 0.5], [0.4, 0.5], [0.4, 1.0]]);
        let two = "[[cameras.zones]]\nname = \"tv\"\nkind = \"motion_mask\"\npoints = [[0, 0], [1, 1]]\n";
        let err = with_cameras(&format!("{cam}{bed}{two}")).unwrap_err().to_string();
        assert_eq!(err, "test.toml: camera \"door\": zones[1].points must have at least 3 points, got 2");
        let err = with_cameras(&format!("{cam}{}", bed.replace("no_falls", "bedroom"))).unwrap_err().to_string();
        assert!(err.contains("unknown zone kind \"bedroom\": no_falls, motion_mask or watch"), "{err}");
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
            ("[events.fall]\nlong_lie_secs = -1\n", "events.fall.long_lie_secs must lie in [0, 86400], got -1"),
            (
                "[[cameras]]\ncamera_id=\"c\"\nsource=\"a.mp4\"\nsource_type=\"video_file\"\n[cameras.fall]\nlong_lie_secs = 100000\n",
                "camera \"c\": fall.long_lie_secs must lie in [0, 86400], got 100000",
            ),
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

    /// `model.precision`: "f32" by default, "int8" reaches the engine, anything else is refused naming
    /// the setting and the two values it takes.
    #[test]
    fn model_precision_is_checked_and_reaches_the_engine() {
        let with_precision = |p: &str| Settings::from_toml(&BASE.replace("iou_threshold = 0.7", &format!("iou_threshold = 0.7\nprecision = \"{p}\"")), "test.toml");
        let m = with_model_device("cpu").unwrap().models["pose"].clone();
        assert_eq!((m.precision.as_str(), m.pose_options().precision), ("f32", haven_pose::Precision::F32));
        let m = with_precision("int8").unwrap().models["pose"].clone();
        assert_eq!(m.pose_options().precision, haven_pose::Precision::Int8);
        let err = with_precision("fp16").unwrap_err().to_string();
        assert!(err.contains("model.precision") && err.contains("\"fp16\" is not a precision: use \"f32\" or \"int8\""), "{err}");
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
        let err = cam.validate_models(known, "objects, pose", Some(&coco)).unwrap_err().to_string();
        assert_eq!(err, "camera \"yard\": object_events names \"unicorn\", which no detect model of this server has as a class");
        cam.object_events = Some(vec!["car".into()]);
        cam.validate_models(known, "objects, pose", Some(&coco)).unwrap();
        // Nothing loaded to ask: the classes cannot be checked, the models still are.
        cam.object_events = Some(vec!["unicorn".into()]);
        cam.validate_models(known, "objects, pose", None).unwrap();
        cam.models = Some(vec!["cars".into()]);
        assert!(cam.validate_models(known, "objects, pose", None).unwrap_err().to_string().contains("models names \"cars\""));
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
