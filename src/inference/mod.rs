//! The AI engine contract shared by every camera, and its implementations.

pub mod draw;
pub mod pose;
pub mod regions;
pub mod scheduler;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use haven_pose::Detection;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;

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

/// The process's one engine, with a count of its passes so that "one inference per frame,
/// whatever the number of viewers" can be checked from the outside (`GET /api/engine`).
pub struct SharedEngine {
    engine: Arc<dyn AiEngine>,
    calls: AtomicU64,
}

impl SharedEngine {
    pub fn new(engine: Arc<dyn AiEngine>) -> Arc<Self> {
        Arc::new(Self { engine, calls: AtomicU64::new(0) })
    }

    pub fn name(&self) -> String {
        self.engine.name()
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
