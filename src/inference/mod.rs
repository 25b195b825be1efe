//! The AI engine contract shared by every camera, and its implementations.

pub mod config;
pub mod draw;
pub mod pose;
pub mod regions;
pub mod scheduler;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use haven_pose::{Detection, Letterbox};
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use serde::Serialize;

/// What a model finds: people with their keypoints (`pose`), or objects of its classes (`detect`).
pub use haven_pose::Task;

/// A whole frame letterboxed for one network input size, shared by every model of a frame that takes
/// that size: resized and padded once, and converted to the network's input tensor once (on first use).
pub struct Prepared {
    pub boxed: Mat,
    pub lb: Letterbox,
    input: std::sync::OnceLock<Result<haven_pose::Input, String>>,
}

impl Prepared {
    pub fn new(boxed: Mat, lb: Letterbox) -> Self {
        Self { boxed, lb, input: std::sync::OnceLock::new() }
    }

    /// The network input tensor (BGR HWC u8 to RGB CHW f32, once for every model that asks).
    pub fn input(&self) -> Result<&haven_pose::Input, EngineError> {
        let made = self.input.get_or_init(|| {
            let bytes = self.boxed.data_bytes().map_err(|e| e.to_string())?;
            haven_pose::Input::from_letterboxed_bgr(&[(bytes, &self.lb)]).map_err(|e| e.to_string())
        });
        made.as_ref().map_err(|e| EngineError::Prepare(e.clone()))
    }
}

/// A loaded model as `GET /api/engine` describes it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub task: Task,
    /// "V8", "V11" for the YOLO models.
    pub arch: Option<String>,
    /// "n", "s", "m", "l", "x".
    pub scale: Option<String>,
    /// The class names, in the model's order (class ids index them).
    pub class_names: Vec<String>,
    /// The network input: "640 fitted to the frame" or "640x640".
    pub input: String,
    pub device: String,
    /// "f32" or "int8" (`model.precision`).
    pub precision: String,
}

/// Detections of one model, as a frame's metadata, snapshots and events carry them.
#[derive(Debug, Clone)]
pub struct ModelDetections {
    /// The model's name (`[models.<name>]`).
    pub model: Arc<str>,
    pub task: Task,
    pub detections: Vec<Detection>,
}

/// Why the engine could not look at a frame (or load), with the source error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pose model refused the weights, the options or the input.
    #[error("inference failed: {0}")]
    Model(#[from] haven_pose::PoseError),
    /// `model.device` names a device this machine cannot give (no GPU, no driver).
    #[error("model.{0}")]
    Device(haven_pose::PoseError),
    #[error("inference failed: empty frame")]
    EmptyFrame,
    /// A class filter names a class the model does not have.
    #[error("{0}")]
    Classes(String),
    /// The shared network input could not be made.
    #[error("inference failed: preparing the input: {0}")]
    Prepare(String),
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// What a model does with one frame: frame in, detections out. Implementations take `&self` so
/// that every camera can share one loaded model.
pub trait AiEngine: Send + Sync + 'static {
    fn name(&self) -> String;

    /// People in `frame` (BGR), in its pixels.
    fn detect(&self, frame: &Mat) -> Result<Vec<Detection>, EngineError>;

    /// Whole frames one [`AiEngine::detect_batch`] call takes at most: more than 1 where one pass over
    /// several frames costs less than a pass each (the pose model on a GPU), 1 (the default) otherwise.
    fn max_batch(&self) -> usize {
        1
    }

    /// People in each of several whole frames, in one pass where the engine can; by default one
    /// [`AiEngine::detect`] each.
    fn detect_batch(&self, frames: &[&Mat]) -> Vec<Result<Vec<Detection>, EngineError>> {
        frames.iter().map(|f| self.detect(f)).collect()
    }

    /// The network input a whole `w` x `h` frame is looked at in (what one pass over it costs).
    fn input_for(&self, w: usize, h: usize) -> (usize, usize) {
        (w, h)
    }

    /// What the model finds and how it is built (for `GET /api/engine`).
    fn info(&self) -> ModelInfo {
        ModelInfo { task: Task::Pose, arch: None, scale: None, class_names: vec!["person".into()], input: String::new(), device: "cpu".into(), precision: "f32".into() }
    }

    fn task(&self) -> Task {
        self.info().task
    }

    /// Whether the engine takes its whole-frame input letterboxed by the caller (BGR, pad 114, the
    /// size [`AiEngine::input_for`] gives), so that models with the same input share one.
    fn takes_letterboxed(&self) -> bool {
        false
    }

    /// Detections in a frame letterboxed by the caller (see [`AiEngine::takes_letterboxed`]), its
    /// input shared with the other models of the frame that take the same size.
    fn detect_letterboxed(&self, frame: &Mat, _prepared: &Prepared) -> Result<Vec<Detection>, EngineError> {
        self.detect(frame)
    }

    /// People in a part of a frame, looked at `scale` times its own resolution (the network input
    /// follows the part's size, not the model's default). Engines without sizes of their own ignore it.
    fn detect_scaled(&self, part: &Mat, _scale: f32) -> Result<Vec<Detection>, EngineError> {
        self.detect(part)
    }

    /// The seed's contract: the annotated frame and what was found.
    fn process_frame(&self, frame: &Mat) -> Result<(Mat, Vec<Detection>), EngineError> {
        let detections = self.detect(frame)?;
        let mut annotated = frame.try_clone()?;
        draw::annotate(&mut annotated, &detections)?;
        Ok((annotated, detections))
    }
}

/// One loaded model of the process, under its name, with a count of its passes so that "one
/// inference per model per frame, whatever the number of viewers" can be checked from the outside
/// (`GET /api/engine`).
pub struct SharedEngine {
    /// The model's name in the settings (`[models.<name>]`; `[model]` is "pose").
    model: Arc<str>,
    engine: Arc<dyn AiEngine>,
    info: ModelInfo,
    calls: AtomicU64,
}

impl SharedEngine {
    /// The pose model (the name the legacy `[model]` section has).
    pub fn new(engine: Arc<dyn AiEngine>) -> Arc<Self> {
        Self::named("pose", engine)
    }

    pub fn named(model: &str, engine: Arc<dyn AiEngine>) -> Arc<Self> {
        let info = engine.info();
        Arc::new(Self { model: model.into(), engine, info, calls: AtomicU64::new(0) })
    }

    /// The model's name in the settings.
    pub fn model(&self) -> &Arc<str> {
        &self.model
    }

    /// What the engine says it is (weights, architecture, input).
    pub fn name(&self) -> String {
        self.engine.name()
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn task(&self) -> Task {
        self.info.task
    }

    pub fn takes_letterboxed(&self) -> bool {
        self.engine.takes_letterboxed()
    }

    /// Detections in the whole frame, its input letterboxed by the caller (shared with other models).
    pub fn detect_letterboxed(&self, frame: &Mat, prepared: &Prepared) -> Result<Vec<Detection>, EngineError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.engine.detect_letterboxed(frame, prepared)
    }

    /// The network input a whole `w` x `h` frame is looked at in.
    pub fn input_for(&self, w: usize, h: usize) -> (usize, usize) {
        self.engine.input_for(w, h)
    }

    /// Frames looked at (a frame looked at in regions counts once).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Whole frames the scheduler may hand over at once ([`AiEngine::max_batch`], at least 1).
    pub fn max_batch(&self) -> usize {
        self.engine.max_batch().max(1)
    }

    /// Detections in each of several whole frames, in one pass where the engine batches (each frame
    /// counts as a call).
    pub fn detect_batch(&self, frames: &[&Mat]) -> Vec<Result<Vec<Detection>, EngineError>> {
        self.calls.fetch_add(frames.len() as u64, Ordering::Relaxed);
        self.engine.detect_batch(frames)
    }

    pub fn process_frame(&self, frame: &Mat) -> Result<(Mat, Vec<Detection>), EngineError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.engine.process_frame(frame)
    }

    /// Detections in the whole frame (`regions` empty) or in each region, cut from the frame and
    /// looked at `scale` times the frame's own resolution, mapped back to frame pixels and merged
    /// where regions overlap.
    pub fn detect_regions(&self, frame: &Mat, regions: &[Rect], scale: f32) -> Result<Vec<Detection>, EngineError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if regions.is_empty() {
            return self.engine.detect(frame);
        }
        let mut all = Vec::new();
        for r in regions {
            let part = Mat::roi(frame, *r)?.try_clone()?;
            all.extend(self.engine.detect_scaled(&part, scale)?.into_iter().map(|d| in_frame(d, *r)));
        }
        Ok(merge_overlapping(all))
    }
}

/// The models a server runs, in the settings' order, each loaded once and shared by every camera
/// that names it.
#[derive(Clone, Default)]
pub struct Engines(pub Vec<Arc<SharedEngine>>);

impl Engines {
    /// `(name, engine)` pairs.
    pub fn named(list: Vec<(&str, Arc<dyn AiEngine>)>) -> Self {
        Self(list.into_iter().map(|(n, e)| SharedEngine::named(n, e)).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<SharedEngine>> {
        self.0.iter().find(|e| &**e.model() == name)
    }
}

/// One engine: the pose model (what servers ran before models had names).
impl From<Option<Arc<dyn AiEngine>>> for Engines {
    fn from(engine: Option<Arc<dyn AiEngine>>) -> Self {
        Self(engine.map(SharedEngine::new).into_iter().collect())
    }
}

/// The detection's class id in its model (0 for people of a pose model).
pub fn class_id(d: &Detection) -> usize {
    d.class_id
}

/// A detection made in `region` of a frame, moved into the frame's pixels.
pub fn in_frame(mut d: Detection, region: Rect) -> Detection {
    let (dx, dy) = (region.x as f32, region.y as f32);
    d.bbox = [d.bbox[0] + dx, d.bbox[1] + dy, d.bbox[2] + dx, d.bbox[3] + dy];
    for k in &mut d.keypoints {
        k[0] += dx;
        k[1] += dy;
    }
    d
}

/// Two boxes are one person when they overlap by this IoU, or one lies this much inside the other
/// (a person cut by a region's edge is found whole in the neighbouring region).
const SAME_PERSON_IOU: f32 = 0.5;
const SAME_PERSON_CONTAINMENT: f32 = 0.8;

/// Keeps the best-scoring of each group of boxes that show the same person.
pub fn merge_overlapping(mut dets: Vec<Detection>) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(dets.len());
    for d in dets {
        let same = kept.iter().any(|k| {
            haven_pose::iou(&k.bbox, &d.bbox) > SAME_PERSON_IOU
                || containment(&d.bbox, &k.bbox) > SAME_PERSON_CONTAINMENT
                || containment(&k.bbox, &d.bbox) > SAME_PERSON_CONTAINMENT
        });
        if !same {
            kept.push(d);
        }
    }
    kept
}

/// The fraction of `inner`'s area that lies inside `outer` (an empty box lies inside anything).
pub fn containment(inner: &[f32; 4], outer: &[f32; 4]) -> f32 {
    let iw = (inner[2].min(outer[2]) - inner[0].max(outer[0])).max(0.0);
    let ih = (inner[3].min(outer[3]) - inner[1].max(outer[1])).max(0.0);
    let area = (inner[2] - inner[0]).max(0.0) * (inner[3] - inner[1]).max(0.0);
    if area > 0.0 {
        iw * ih / area
    } else {
        1.0
    }
}
