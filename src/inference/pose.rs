//! The Candle YOLO-pose engine behind the `AiEngine` contract: OpenCV letterboxes the frame, the
//! `haven-pose` crate runs the network and decodes people, OpenCV draws them.

use std::path::Path;
use std::sync::Arc;

use haven_pose::{Letterbox, PoseModel, PoseOptions};
use opencv::core::{self, Mat, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::{draw, AiEngine, Detection, EngineError};
use crate::settings::ModelSettings;

/// The grey Ultralytics pads with.
const PAD: f64 = 114.0;

pub struct PoseEngine {
    model: PoseModel,
    name: String,
}

impl PoseEngine {
    pub fn load(settings: &ModelSettings) -> Result<Self, EngineError> {
        let opts = PoseOptions {
            input_width: settings.input_width,
            input_height: settings.input_height,
            conf_threshold: settings.conf_threshold,
            iou_threshold: settings.iou_threshold,
        };
        let model = PoseModel::load(&settings.weights, opts).map_err(|e| EngineError::Inference(e.to_string()))?;
        let stem = Path::new(&settings.weights).file_stem().and_then(|s| s.to_str()).unwrap_or("weights");
        let name = format!(
            "{} ({:?}-pose {}, {}x{})",
            stem,
            model.arch(),
            model.scale_name(),
            settings.input_width,
            settings.input_height
        );
        Ok(Self { model, name })
    }

    /// The engine a server should run with: `None` (with a warning that says how to fix it) when the
    /// model is turned off or its weights cannot be loaded, so the server still starts, without AI.
    pub fn for_server(settings: &ModelSettings) -> Option<Arc<dyn AiEngine>> {
        if !settings.enabled {
            log::info!("AI disabled in settings (model.enabled = false)");
            return None;
        }
        match Self::load(settings) {
            Ok(engine) => {
                log::info!("AI engine loaded: {}", engine.name);
                Some(Arc::new(engine))
            }
            Err(e) => {
                log::warn!("AI disabled, cameras will stream without detections: {e}");
                None
            }
        }
    }

    /// People in `frame` (BGR), in its pixels.
    pub fn detect(&self, frame: &Mat) -> Result<Vec<Detection>, EngineError> {
        let o = self.model.options();
        let lb = Letterbox::new(frame.cols() as usize, frame.rows() as usize, o.input_width, o.input_height);
        let (w, h) = lb.resized_size();
        let mut resized = Mat::default();
        imgproc::resize(frame, &mut resized, Size::new(w as i32, h as i32), 0.0, 0.0, imgproc::INTER_LINEAR)?;
        let (left, top) = (lb.pad_x as i32, lb.pad_y as i32);
        let mut boxed = Mat::default();
        core::copy_make_border(
            &resized,
            &mut boxed,
            top,
            o.input_height as i32 - h as i32 - top,
            left,
            o.input_width as i32 - w as i32 - left,
            core::BORDER_CONSTANT,
            Scalar::all(PAD),
        )?;
        let bytes = boxed.data_bytes()?;
        self.model.detect_letterboxed_bgr(bytes, &lb).map_err(|e| EngineError::Inference(e.to_string()))
    }
}

impl AiEngine for PoseEngine {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn process_frame(&self, frame: &Mat) -> Result<(Mat, Vec<Detection>), EngineError> {
        let detections = self.detect(frame)?;
        let mut annotated = frame.try_clone()?;
        draw::annotate(&mut annotated, &detections)?;
        Ok((annotated, detections))
    }
}
