//! The Candle YOLO-pose engine behind the `AiEngine` contract: OpenCV letterboxes the frame, the
//! `haven-pose` crate runs the network and decodes people, OpenCV draws them.

use std::path::Path;
use std::sync::Arc;

use haven_pose::{Letterbox, PoseModel};
use opencv::core::{self, Mat, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::regions::region_input;
use super::{AiEngine, Detection, EngineError, ModelInfo, Prepared};
use crate::inference::config::ModelSettings;

/// "models.objects.classes names "cars", which w.safetensors does not have (its 80 classes: person, …)".
fn unknown_class(setting: &str, settings: &ModelSettings, names: &[String], class: &str) -> String {
    let some: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
    format!(
        "{setting} names \"{class}\", which {} does not have (its {} classes: {}{})",
        settings.weights.display(),
        names.len(),
        some.join(", "),
        if names.len() > some.len() { ", …" } else { "" }
    )
}

/// The grey Ultralytics pads with.
const PAD: f64 = 114.0;

pub struct PoseEngine {
    model: PoseModel,
    name: String,
    input: InputSize,
    device: String,
}

/// The network input a frame is letterboxed into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSize {
    /// Always this width x height (`model.input_width` and `model.input_height` set).
    Fixed(usize, usize),
    /// The frame's aspect ratio with this longer side, the shorter one padded up to a multiple of 32,
    /// as Ultralytics' video predictor does: 640x480 for 4:3, 640x384 for 16:9. A 4:3 frame costs
    /// three quarters of a square pass, and the padding carries nothing.
    Fitted(usize),
}

impl InputSize {
    /// The input for a `w` x `h` frame.
    pub fn for_frame(self, w: usize, h: usize) -> (usize, usize) {
        match self {
            InputSize::Fixed(iw, ih) => (iw, ih),
            InputSize::Fitted(side) => {
                let (w, h) = (w.max(1) as f64, h.max(1) as f64);
                let r = side as f64 / w.max(h);
                let up32 = |v: f64| (((v * r).round() as usize).div_ceil(32) * 32).clamp(32, side);
                (up32(w), up32(h))
            }
        }
    }
}

impl PoseEngine {
    pub fn load(settings: &ModelSettings) -> Result<Self, EngineError> {
        let input = settings.input();
        let load = |opts| {
            PoseModel::load_with_engine(&settings.weights, opts, settings.engine_options()).map_err(|e| match e {
                e @ haven_pose::PoseError::Device { .. } => EngineError::Device(e),
                e => e.into(),
            })
        };
        let mut model = load(settings.pose_options())?;
        // A class filter by name: the names are the checkpoint's, known once it is loaded; the model is
        // loaded again with their ids (start-up only).
        if let Some(names) = &settings.classes {
            let ids = names
                .iter()
                .map(|n| model.class_id(n).ok_or_else(|| EngineError::Classes(unknown_class("classes", settings, model.class_names(), n))))
                .collect::<Result<Vec<usize>, _>>()?;
            model = load(haven_pose::PoseOptions { classes: Some(ids), ..settings.pose_options() })?;
        }
        let stem = Path::new(&settings.weights).file_stem().and_then(|s| s.to_str()).unwrap_or("weights");
        let size = match input {
            InputSize::Fixed(w, h) => format!("{w}x{h}"),
            InputSize::Fitted(side) => format!("{side} fitted to the frame"),
        };
        let precision = match model.options().precision {
            haven_pose::Precision::F32 => String::new(),
            p => format!(", {p}"),
        };
        let name = format!("{} ({:?}-{} {}{precision}, {size})", stem, model.arch(), model.task(), model.scale_name());
        Ok(Self { model, name, input, device: settings.device.clone() })
    }

    /// The engine a server should run with: `None` (with a warning that says how to fix it) when the
    /// model is turned off or its weights cannot be loaded, so the server still starts, without AI.
    pub fn for_server(settings: &ModelSettings) -> Option<Arc<dyn AiEngine>> {
        Self::for_server_named("model", settings)
    }

    /// As [`PoseEngine::for_server`], for the model of `[models.<name>]` (`section` names it in messages).
    fn for_server_named(section: &str, settings: &ModelSettings) -> Option<Arc<dyn AiEngine>> {
        if !settings.enabled {
            log::info!("{section}: disabled in settings ({section}.enabled = false); cameras naming it run without it");
            return None;
        }
        match Self::load(settings) {
            Ok(engine) => {
                log::info!("{section}: loaded {}", engine.name);
                Some(Arc::new(engine))
            }
            Err(e) => {
                log::warn!("{section}: not loaded; AI disabled for it, the cameras naming it stream without its detections: {e}");
                None
            }
        }
    }

    /// Every model of the settings (`[models.<name>]`, `[model]` as "pose"), each loaded once. A
    /// model that cannot be loaded is left out with a warning (its cameras stream without it); a
    /// class filter naming a class the model does not have stops the start.
    pub fn engines_for_server(models: &std::collections::BTreeMap<String, ModelSettings>) -> Result<super::Engines, String> {
        let mut list = Vec::new();
        for (name, settings) in models {
            let section = format!("models.{name}");
            if !settings.enabled {
                log::info!("{section}: disabled in settings ({section}.enabled = false); cameras naming it run without it");
                continue;
            }
            match Self::load(settings) {
                Ok(engine) => {
                    log::info!("{section}: loaded {}", engine.name);
                    list.push(super::SharedEngine::named(name, Arc::new(engine)));
                }
                // A class filter the model cannot have is a mistake in the settings: stop.
                Err(EngineError::Classes(message)) => return Err(message.replacen("classes", &format!("{section}.classes"), 1)),
                Err(e) => log::warn!("{section}: not loaded; AI disabled for it, the cameras naming it stream without its detections: {e}"),
            }
        }
        Ok(super::Engines(list))
    }
}

impl AiEngine for PoseEngine {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            task: self.model.task(),
            arch: Some(format!("{:?}", self.model.arch())),
            scale: Some(self.model.scale_name().to_string()),
            class_names: self.model.class_names().to_vec(),
            input: match self.input {
                InputSize::Fixed(w, h) => format!("{w}x{h}"),
                InputSize::Fitted(side) => format!("{side} fitted to the frame"),
            },
            device: self.device.clone(),
            precision: self.model.options().precision.to_string(),
        }
    }

    fn takes_letterboxed(&self) -> bool {
        true
    }

    fn detect_letterboxed(&self, _frame: &Mat, prepared: &Prepared) -> Result<Vec<Detection>, EngineError> {
        Ok(self.model.detect_input(prepared.input()?)?.pop().unwrap_or_default())
    }

    fn detect(&self, frame: &Mat) -> Result<Vec<Detection>, EngineError> {
        self.detect_sized(frame, self.input.for_frame(frame.cols().max(0) as usize, frame.rows().max(0) as usize))
    }

    fn input_for(&self, w: usize, h: usize) -> (usize, usize) {
        self.input.for_frame(w, h)
    }

    fn detect_scaled(&self, part: &Mat, scale: f32) -> Result<Vec<Detection>, EngineError> {
        self.detect_sized(part, region_input(part.cols(), part.rows(), scale))
    }

    fn max_batch(&self) -> usize {
        if self.model.device().is_cpu() {
            1
        } else {
            GPU_BATCH
        }
    }

    /// Frames of one network input size go through the model as one batch; should a batch fail,
    /// its frames are tried one by one, so that each gets its own answer or error.
    fn detect_batch(&self, frames: &[&Mat]) -> Vec<Result<Vec<Detection>, EngineError>> {
        let mut results: Vec<Option<Result<Vec<Detection>, EngineError>>> = Vec::with_capacity(frames.len());
        let mut ready: Vec<(usize, Mat, Letterbox)> = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let size = self.input.for_frame(frame.cols().max(0) as usize, frame.rows().max(0) as usize);
            match letterbox(frame, size) {
                Ok((boxed, lb)) => {
                    results.push(None);
                    ready.push((i, boxed, lb));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        while let Some((_, _, first)) = ready.first() {
            let size = (first.dst_w, first.dst_h);
            let (group, rest): (Vec<_>, Vec<_>) = ready.into_iter().partition(|(_, _, lb)| (lb.dst_w, lb.dst_h) == size);
            ready = rest;
            let batch = group
                .iter()
                .map(|(_, boxed, lb)| Ok((boxed.data_bytes()?, lb)))
                .collect::<Result<Vec<_>, EngineError>>()
                .and_then(|inputs| Ok(self.model.detect_batch(&inputs)?));
            match batch {
                Ok(dets) => group.iter().zip(dets).for_each(|((i, _, _), d)| results[*i] = Some(Ok(d))),
                Err(_) => {
                    for (i, boxed, lb) in &group {
                        let one = boxed.data_bytes().map_err(EngineError::from).and_then(|b| Ok(self.model.detect_letterboxed_bgr(b, lb)?));
                        results[*i] = Some(one);
                    }
                }
            }
        }
        results.into_iter().map(|r| r.expect("every frame answered")).collect()
    }
}

/// Whole frames the scheduler hands a GPU at once (`model.device` other than cpu): one pass over
/// several cameras' waiting frames. On the CPU, HAVEN's kernels spread one frame over every core
/// already, and frames run one at a time.
const GPU_BATCH: usize = 8;

impl PoseEngine {
    /// People in `frame`, letterboxed into a `input_width` x `input_height` network input (multiples of 32).
    pub fn detect_sized(&self, frame: &Mat, size: (usize, usize)) -> Result<Vec<Detection>, EngineError> {
        if frame.typ() != core::CV_8UC3 {
            let (boxed, lb) = letterbox(frame, size)?;
            return Ok(self.model.detect_letterboxed_bgr(boxed.data_bytes()?, &lb)?);
        }
        // Regions come in many sizes: one growing buffer per thread serves them all (a fresh
        // input per region was mapped and faulted in anew each time).
        thread_local! {
            static INPUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // taken, not borrowed: the model's threads may run another camera's region meanwhile
        let mut input = INPUT.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let found = letterbox_bgr_into(frame, size, &mut input).and_then(|lb| Ok(self.model.detect_letterboxed_bgr(&input, &lb)?));
        INPUT.with(|b| *b.borrow_mut() = input);
        found
    }
}

/// [`letterbox`] of a BGR frame into `input` (resized to the input's bytes; its capacity kept from
/// call to call).
fn letterbox_bgr_into(frame: &Mat, size: (usize, usize), input: &mut Vec<u8>) -> Result<Letterbox, EngineError> {
    let lb = letterbox_for(frame, size)?;
    input.clear();
    input.resize(3 * lb.dst_w * lb.dst_h, PAD as u8);
    let mut boxed = Mat::new_rows_cols_with_bytes_mut::<core::Vec3b>(lb.dst_h as i32, lb.dst_w as i32, input)?;
    resize_into_place(frame, &lb, &mut boxed)?;
    Ok(lb)
}

/// `frame` letterboxed into a `input_width` x `input_height` network input (BGR, pad 114): resized
/// once, for every model whose input has this size.
pub fn letterbox(frame: &Mat, size: (usize, usize)) -> Result<(Mat, Letterbox), EngineError> {
    let lb = letterbox_for(frame, size)?;
    let mut boxed = Mat::new_rows_cols_with_default(lb.dst_h as i32, lb.dst_w as i32, frame.typ(), Scalar::all(PAD))?;
    resize_into_place(frame, &lb, &mut boxed)?;
    Ok((boxed, lb))
}

/// Where `frame` goes in a `input_width` x `input_height` input.
fn letterbox_for(frame: &Mat, (input_width, input_height): (usize, usize)) -> Result<Letterbox, EngineError> {
    let (src_w, src_h) = (frame.cols() as usize, frame.rows() as usize);
    if src_w == 0 || src_h == 0 {
        return Err(EngineError::EmptyFrame);
    }
    Ok(Letterbox::new(src_w, src_h, input_width, input_height))
}

/// `frame` resized straight into its place inside `boxed` (already the input's size, filled with the
/// pad): one input-sized buffer, not a resized frame and then a bordered copy.
fn resize_into_place(frame: &Mat, lb: &Letterbox, boxed: &mut impl MatTrait) -> Result<(), EngineError> {
    let (w, h) = lb.resized_size();
    let place = core::Rect::new(lb.pad_x as i32, lb.pad_y as i32, w as i32, h as i32);
    let mut inside = Mat::roi_mut(boxed, place)?;
    let at = inside.data();
    imgproc::resize(frame, &mut inside, Size::new(w as i32, h as i32), 0.0, 0.0, imgproc::INTER_LINEAR)?;
    // an ROI of the right size and type is written in place; were it ever reallocated, the input
    // would not hold the frame
    if inside.data() != at {
        return Err(EngineError::Prepare("the letterbox's resize did not write in place".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{EngineError, InputSize, PoseEngine};

    #[test]
    fn a_load_failure_keeps_the_pose_error_as_its_source() {
        let mut model = crate::inference::config::shipped_pose_model();
        model.weights = "/nonexistent/w.safetensors".into();
        let err = match PoseEngine::load(&model) {
            Ok(_) => panic!("loaded weights that do not exist"),
            Err(e) => e,
        };
        assert!(matches!(err, EngineError::Model(haven_pose::PoseError::WeightsNotFound { .. })), "{err:?}");
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.to_string().starts_with("inference failed: pose weights not found at /nonexistent/w.safetensors"), "{err}");
    }

    /// The frame resized into its place in the padded input is, byte for byte, the frame resized
    /// on its own and then bordered (the two copies the letterbox used to make).
    #[test]
    fn the_letterbox_is_the_resized_frame_inside_its_border() {
        use opencv::core::{self, Mat, Scalar, Size};
        use opencv::{imgproc, prelude::*};
        let mut frame = Mat::new_rows_cols_with_default(576, 768, core::CV_8UC3, Scalar::all(0.0)).unwrap();
        core::randu(&mut frame, &Scalar::all(0.0), &Scalar::all(255.0)).unwrap();
        for size in [(640, 480), (640, 640), (320, 256)] {
            let (boxed, lb) = super::letterbox(&frame, size).unwrap();
            let (w, h) = lb.resized_size();
            let (mut resized, mut want) = (Mat::default(), Mat::default());
            imgproc::resize(&frame, &mut resized, Size::new(w as i32, h as i32), 0.0, 0.0, imgproc::INTER_LINEAR).unwrap();
            let (top, left) = (lb.pad_y as i32, lb.pad_x as i32);
            let (bottom, right) = (size.1 as i32 - h as i32 - top, size.0 as i32 - w as i32 - left);
            core::copy_make_border(&resized, &mut want, top, bottom, left, right, core::BORDER_CONSTANT, Scalar::all(super::PAD)).unwrap();
            assert_eq!((boxed.cols(), boxed.rows()), (size.0 as i32, size.1 as i32));
            assert!(boxed.data_bytes().unwrap() == want.data_bytes().unwrap(), "{size:?}");
            // and into a reused buffer, larger or smaller than before
            let mut input = vec![7u8; 5];
            for _ in 0..2 {
                super::letterbox_bgr_into(&frame, size, &mut input).unwrap();
                assert!(input == want.data_bytes().unwrap(), "{size:?}, reused buffer");
                input.extend_from_slice(&[1, 2, 3]);
            }
        }
    }

    #[test]
    fn the_input_keeps_the_frames_aspect_ratio_in_multiples_of_32() {
        let fitted = InputSize::Fitted(640);
        assert_eq!(fitted.for_frame(768, 576), (640, 480));
        assert_eq!(fitted.for_frame(1920, 1080), (640, 384));
        assert_eq!(fitted.for_frame(1080, 1920), (384, 640));
        assert_eq!(fitted.for_frame(500, 500), (640, 640));
        assert_eq!(fitted.for_frame(4000, 10), (640, 32));
        assert_eq!(InputSize::Fixed(640, 640).for_frame(768, 576), (640, 640));
        assert_eq!(InputSize::Fitted(320).for_frame(768, 576), (320, 256));
    }
}
