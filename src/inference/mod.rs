//! The AI engine contract shared by every camera, and its implementations.

pub mod draw;
pub mod pose;


use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use haven_pose::Detection;
use opencv::core::Mat;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// The seed's contract: one call per processed frame returns the annotated frame and what was found.
/// Implementations take `&self` so that every camera thread can share one loaded model.
pub trait AiEngine: Send + Sync + 'static {
    fn name(&self) -> String;
    fn process_frame(&self, frame: &Mat) -> Result<(Mat, Vec<Detection>), EngineError>;
}

/// The process's one engine, with a count of its calls so that "one inference per frame,
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

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn process_frame(&self, frame: &Mat) -> Result<(Mat, Vec<Detection>), EngineError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.engine.process_frame(frame)
    }
}
