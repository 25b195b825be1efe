//! A model's settings (`[models.<name>]`, the legacy `[model]`): its weights, input size,
//! thresholds, device and classes, and the engine options they give.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::inference::pose::InputSize;

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
    /// The dense convolutions' arithmetic: "f32" (the default) or "int8" (8-bit weights and
    /// activations on HAVEN's CPU kernels, 0.6-0.85x the CPU time; docs/pose.md, "8-bit path").
    #[serde(default = "default_precision")]
    pub precision: String,
    /// On HAVEN's CPU kernels, 3x3 convolutions by Winograd (faster, but each such layer keeps its
    /// weights transformed, 1.8x and up to 4x more of them); false: the direct path only, every
    /// layer's weights held once (for a model asked a few times a minute, like the fall model).
    #[serde(default = "default_true")]
    pub winograd: bool,
    /// On HAVEN's CPU kernels, layers on the direct path hold the checkpoint's own 16-bit weights
    /// (and a scale per channel), widened to the very same f32 numbers at each pass: half the
    /// memory of those layers for a little CPU. Layers whose weights are not 16-bit values, and
    /// Winograd's transformed copies, stay f32.
    #[serde(default)]
    pub half_weights: bool,
}

impl ModelSettings {
    /// Every rule about `[model]`; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_as("model")
    }

    /// Every rule about one model's section (`model`, `models.objects`); the error names the setting.
    pub fn validate_as(&self, section: &str) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within(section))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        for (name, v) in [("input_size", Some(self.input_size)), ("input_width", self.input_width), ("input_height", self.input_height)] {
            let Some(v) = v else { continue };
            if v == 0 || v % 32 != 0 || v > 2048 {
                return Err(ConfigError::new(name, format!("{v} must be a multiple of 32 between 32 and 2048")));
            }
        }
        for (name, v) in [("conf_threshold", self.conf_threshold), ("iou_threshold", self.iou_threshold)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::new(name, format!("{v} is out of range 0-1")));
            }
        }
        crate::text::check("weights", &self.weights.to_string_lossy(), crate::text::PATH)?;
        if let Some(classes) = &self.classes {
            if classes.is_empty() {
                return Err(ConfigError::new("classes", "is empty: leave it out to keep every class"));
            }
            for c in classes {
                crate::text::check("classes", c, crate::text::SOURCE)?;
            }
        }
        // A device this build cannot drive fails here, at start-up; one the machine lacks, at load.
        let device = self.device_spec().and_then(|d| d.built_in().map(|()| d)).map_err(|e| ConfigError::from_message(e.to_string()))?;
        let precision = self.precision_of().map_err(|e| ConfigError::new("precision", e))?;
        if precision != haven_pose::Precision::F32 && device != haven_pose::DeviceSpec::Cpu {
            return Err(ConfigError::new(
                "precision",
                format!("\"{precision}\" runs only on the CPU (device = \"cpu\"), not on device \"{}\": use \"f32\" there", self.device),
            ));
        }
        // The engine's own rules, should they ever be stricter than the ones above.
        self.pose_options().validate().map_err(|e| ConfigError::new("", format!(": {e}")))
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
            precision: self.precision_of().unwrap_or_default(),
            ..haven_pose::PoseOptions::default()
        }
    }

    /// `model.precision` parsed (validated with the rest by [`ModelSettings::validate`]).
    pub fn precision_of(&self) -> Result<haven_pose::Precision, String> {
        self.precision.parse()
    }

    /// How the engine runs this model: the `HAVEN_*` switches of the environment, with Winograd
    /// off where `winograd = false` and 16-bit weights where `half_weights = true`.
    pub fn engine_options(&self) -> haven_pose::EngineOptions {
        let mut engine = haven_pose::EngineOptions::from_env();
        engine.kernels.winograd &= self.winograd;
        engine.kernels.half_weights = self.half_weights;
        engine
    }

    /// `model.device` parsed (validated with the rest by [`ModelSettings::validate`]).
    pub fn device_spec(&self) -> Result<haven_pose::DeviceSpec, haven_pose::PoseError> {
        self.device.parse()
    }
}

fn default_true() -> bool {
    true
}

fn default_conf_threshold() -> f32 {
    0.25
}

fn default_iou_threshold() -> f32 {
    0.7
}

pub(crate) fn default_input_size() -> usize {
    640
}

fn default_device() -> String {
    "cpu".into()
}

fn default_precision() -> String {
    "f32".into()
}

/// The shipped settings file's pose model (`[model]`), for tests below the loader.
#[cfg(test)]
pub(crate) fn shipped_pose_model() -> ModelSettings {
    let text = include_str!("../../settings/default.toml");
    let file: toml::Table = toml::from_str(text).expect("settings/default.toml is TOML");
    file["model"].clone().try_into().expect("settings/default.toml's [model] is a model's settings")
}
