//! HAVEN's engine: YOLOv8 and YOLO11 (Ultralytics layouts), pose and object detection, in Candle.
//!
//! * [`YoloModel::load`] reads a `.safetensors` state dict (`model.N.…` names), detects the
//!   architecture ([`Arch`]), the task ([`Task`]: a Pose head has a keypoint branch `cv4`, a Detect
//!   head not) and scale from the tensor names and shapes, reads the class names (the converter's
//!   `haven.names` metadata), folds every BatchNorm into
//!   its convolution and puts the network on the device of [`PoseOptions::device`] ([`DeviceSpec`]:
//!   `cpu`, `cuda:N` with the `cuda`/`cudnn` features, `metal` with the `metal` feature).
//! * [`PoseModel::forward_raw`] gives the raw `[B, 4 + nc + 3K, N]` output, row for row the ONNX
//!   `output0` (cx, cy, w, h, the nc class scores, then for a pose model K x (x, y, visibility), in input
//!   pixels): `[B, 56, N]` for COCO pose, `[B, 84, N]` for COCO detect.
//! * [`PoseModel::detect_letterboxed_bgr`] is the server's path: letterboxed BGR frame in,
//!   [`Detection`]s in source-frame pixels out (confidence filter, NMS, mapping back);
//!   [`PoseModel::detect_batch`] runs several frames as one batch (worth it on a GPU);
//!   [`Input`] converts frames once for several models of one input size ([`YoloModel::detect_input`]).
//! * [`convert_pt_to_safetensors`] converts an Ultralytics `.pt` checkpoint without PyTorch.
//!
//! The network is written once, as Candle modules (`net/`), and runs on any Candle device. On the
//! CPU its convolution layers, blocks and head are Candle custom ops whose CPU path is this crate's
//! own kernels (`fused/`, `kernels/`, see `docs/pose.md`): BatchNorm folded into the convolutions
//! at load time; every dense convolution is one GEMM over an implicit im2col (zero-padded,
//! stride-phase-split input planes, so that no im2col matrix is materialised) with a hand-written
//! AVX2/FMA 4x24 micro-kernel whose epilogue adds the bias and applies SiLU in registers; Winograd for
//! 3x3 convolutions; depthwise convolutions, DFL, sigmoid and softmax are vectorised; feature maps are
//! recycled through a buffer pool; work is split over the rayon pool (`RAYON_NUM_THREADS`). Builds
//! without AVX2/FMA fall back to portable scalar code. On CUDA and Metal (and on the CPU when
//! [`EngineOptions::candle_cpu_ops`] asks) the same modules run Candle's own ops.
//!
//! Engine switches ([`EngineOptions`]): read once from the environment by [`PoseModel::load`]
//! (`HAVEN_POSE_PROFILE=1` prints each layer's time, `HAVEN_CONV_PROFILE=1` each convolution's time
//! and GFLOP/s (stderr); `HAVEN_WINOGRAD`, `HAVEN_WINOGRAD4`, `HAVEN_WIDE_KERNEL` pick kernel paths;
//! `HAVEN_CPU_OPS=candle` runs Candle's stock CPU ops instead of HAVEN's kernels), or given in code to
//! [`PoseModel::load_with_engine`].

use std::path::Path;

use candle_core::{DType, Device, Tensor};

mod convert;
mod device;
mod error;
mod fused;
mod kernels;
mod net;
mod pickle;
mod post;
mod store;

pub use convert::{convert_pt_to_safetensors, ConvertSummary};
pub use device::DeviceSpec;
pub use error::PoseError;
pub use kernels::{pooled_bytes, set_pool_limit, trim_pool, KernelOptions, Precision, Winograd4};
pub use post::{
    default_class_names, iou, postprocess_raw, postprocess_raw_with, Decode, Detection, Letterbox,
    COCO_NAMES,
};

use std::sync::Arc;

/// The network family, detected from the tensor names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Arch {
    /// YOLOv8: C2f blocks, SPPF, head at `model.22`.
    V8,
    /// YOLO11: C3k2 blocks, SPPF, C2PSA at `model.10`, DWConv class branch, head at `model.23`.
    V11,
}

/// What a model computes, detected from the tensor names: a Pose head has a keypoint branch
/// (`cv4.*`), a Detect head not. Serialized as `"pose"` / `"detect"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Boxes, class scores and keypoints per detection (`yolov8n-pose.pt`, `yolo11n-pose.pt`).
    Pose,
    /// Boxes and class scores (`yolov8n.pt`, `yolo11n.pt`, custom-class detect models).
    Detect,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Pose => "pose",
            Task::Detect => "detect",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inference settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PoseOptions {
    /// Network input width in pixels, a multiple of 32 (default 640).
    pub input_width: usize,
    /// Network input height in pixels, a multiple of 32 (default 640; 384 suits 16:9 sources at 640 wide).
    pub input_height: usize,
    /// Keep detections with score > this (default 0.25, as Ultralytics).
    pub conf_threshold: f32,
    /// NMS: suppress boxes overlapping a better one with IoU > this (default 0.7, as Ultralytics).
    pub iou_threshold: f32,
    /// Where the network runs (default the CPU).
    pub device: DeviceSpec,
    /// Keep only these class ids (Ultralytics `classes=`: the best class of a box must be listed;
    /// applied before NMS). `None` (default): every class.
    pub classes: Option<Vec<usize>>,
    /// The dense convolutions' arithmetic on HAVEN's CPU kernels (default `F32`; `Int8`: 8-bit
    /// weights and activations, refused on any other device or ops).
    pub precision: Precision,
}

/// [`PoseOptions`] under the name that fits a detect model as well.
pub type ModelOptions = PoseOptions;

impl Default for PoseOptions {
    fn default() -> Self {
        Self {
            input_width: 640,
            input_height: 640,
            conf_threshold: 0.25,
            iou_threshold: 0.7,
            device: DeviceSpec::Cpu,
            classes: None,
            precision: Precision::F32,
        }
    }
}

impl PoseOptions {
    pub fn validate(&self) -> Result<(), PoseError> {
        check_dims(self.input_width, self.input_height)?;
        if !(0.0..=1.0).contains(&self.conf_threshold) || !(0.0..=1.0).contains(&self.iou_threshold)
        {
            return Err(PoseError::BadInput(format!(
                "conf_threshold {} and iou_threshold {} must lie in [0, 1]",
                self.conf_threshold, self.iou_threshold
            )));
        }
        Ok(())
    }
}

fn check_dims(w: usize, h: usize) -> Result<(), PoseError> {
    if w == 0 || h == 0 || w % 32 != 0 || h % 32 != 0 {
        return Err(PoseError::BadInput(format!(
            "network input {w}x{h}: width and height must be positive multiples of 32"
        )));
    }
    Ok(())
}

/// How the engine runs (not what it computes): kernel paths and profiling. Read once when a model
/// is loaded ([`EngineOptions::from_env`] in [`PoseModel::load`]) and fixed for its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Kernel paths and the per-convolution profile.
    pub kernels: KernelOptions,
    /// Print each layer's time to stderr (`HAVEN_POSE_PROFILE=1`).
    pub layer_profile: bool,
    /// On the CPU device, run Candle's own CPU ops instead of HAVEN's kernels (`HAVEN_CPU_OPS=candle`):
    /// much slower, the reference the kernels are tested against.
    pub candle_cpu_ops: bool,
    /// Body layers (bit i: `model.i`) that stay f32 on the 8-bit path
    /// (`HAVEN_INT8_F32_LAYERS=2,16`; empty: none): the per-layer sensitivity sweep of docs/pose.md
    /// ("8-bit path"). `None`: the measured default, [`POSE_INT8_F32_LAYERS`] for a pose model,
    /// none for a detect model.
    pub int8_f32_layers: Option<u64>,
}

impl EngineOptions {
    /// The defaults with the `HAVEN_*` environment switches applied (see docs/pose.md).
    pub fn from_env() -> Self {
        Self {
            kernels: KernelOptions::from_env(),
            layer_profile: std::env::var_os("HAVEN_POSE_PROFILE").is_some_and(|v| v != "0"),
            candle_cpu_ops: std::env::var("HAVEN_CPU_OPS").is_ok_and(|v| v == "candle"),
            int8_f32_layers: std::env::var("HAVEN_INT8_F32_LAYERS").ok().map(|v| layer_mask(&v)),
        }
    }
}

/// The body layers a pose model keeps f32 on the 8-bit path unless told otherwise: 2 (the first
/// block, at a quarter of the input's size) and 9 (SPPF). The sweep of docs/pose.md found them the
/// two that cost the most people matched, and keeping them costs no time (99.4 % of the demo
/// videos' people matched instead of 95.9 %, CPU 0.99x of all-8-bit).
pub const POSE_INT8_F32_LAYERS: u64 = 1 << 2 | 1 << 9;

/// "2,16,19" -> bits 2, 16 and 19; anything that is not a layer number below 64 is ignored.
fn layer_mask(list: &str) -> u64 {
    list.split(',')
        .filter_map(|t| t.trim().parse::<u32>().ok())
        .filter(|&i| i < 64)
        .fold(0, |m, i| m | 1 << i)
}

/// COCO keypoint names, in the model's output order.
pub const KEYPOINT_NAMES: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// The COCO skeleton (Ultralytics' `skeleton`, made 0-based): pairs of keypoint indices.
pub const SKELETON: [(usize, usize); 19] = [
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
];

/// A loaded pose or detect network. `Send + Sync`: share one `Arc<YoloModel>` between camera
/// threads; every method takes `&self`.
pub struct YoloModel {
    net: net::Net,
    opts: PoseOptions,
    /// class names, index = class id (as given by [`YoloModel::class_names`])
    names: Vec<String>,
    /// the same, shared by the detections
    names_arc: Vec<Arc<str>>,
}

/// The pose engine's former name: a [`YoloModel`] (pose or detect).
pub type PoseModel = YoloModel;

/// Class names of a state dict: the converter's `haven.names` (or `names`) metadata, a JSON array of
/// strings; without it [`default_class_names`]. A list whose length is not the model's class count is
/// an error naming both.
fn class_names_of(st: &store::Store, nc: usize, task: Task) -> Result<Vec<String>, PoseError> {
    let Some((key, text)) = ["haven.names", "names"]
        .iter()
        .find_map(|k| st.metadata.get(*k).map(|v| (*k, v)))
    else {
        return Ok(default_class_names(nc, task == Task::Pose));
    };
    let bad = |msg: String| PoseError::BadWeightsFile {
        path: st.path.clone(),
        msg,
    };
    let names: Vec<String> = serde_json::from_str(text)
        .map_err(|e| bad(format!("metadata `{key}` is not a JSON array of strings: {e}")))?;
    if names.len() != nc {
        return Err(bad(format!(
            "metadata `{key}` names {} classes, the head has {nc}",
            names.len()
        )));
    }
    Ok(names)
}

impl YoloModel {
    /// Loads a `.safetensors` state dict (as written by `convert-weights`, or any Ultralytics state dict).
    /// The engine switches come from the environment ([`EngineOptions::from_env`]), read here once.
    pub fn load(path: &Path, opts: PoseOptions) -> Result<Self, PoseError> {
        Self::load_with_engine(path, opts, EngineOptions::from_env())
    }

    /// [`PoseModel::load`] with the engine switches given in code (the environment is not read).
    pub fn load_with_engine(
        path: &Path,
        opts: PoseOptions,
        engine: EngineOptions,
    ) -> Result<Self, PoseError> {
        opts.validate()?;
        let device = opts.device.open()?;
        if opts.precision != Precision::F32 && (!device.is_cpu() || engine.candle_cpu_ops) {
            return Err(PoseError::BadInput(format!(
                "precision \"{}\" runs only on HAVEN's CPU kernels (device \"cpu\", without HAVEN_CPU_OPS=candle); this model is on {}",
                opts.precision,
                if engine.candle_cpu_ops { "Candle's CPU ops".to_string() } else { format!("{:?}", opts.device) }
            )));
        }
        let engine = EngineOptions {
            kernels: KernelOptions { precision: opts.precision, ..engine.kernels },
            ..engine
        };
        let st = store::Store::load(path)?;
        let net = net::Net::load(&st, &engine, device)?;
        let nc = net.head().nc;
        let names = class_names_of(&st, nc, net.task)?;
        if let Some(bad) = opts.classes.iter().flatten().find(|&&c| c >= nc) {
            return Err(PoseError::BadInput(format!(
                "class filter: class {bad} does not exist (the model has {nc} classes, ids 0 to {})",
                nc.saturating_sub(1)
            )));
        }
        let names_arc = names.iter().map(|n| Arc::from(n.as_str())).collect();
        Ok(Self {
            net,
            opts,
            names,
            names_arc,
        })
    }

    /// Pose or detect.
    pub fn task(&self) -> Task {
        self.net.task
    }

    /// Class names, index = class id: `["person"]` for a COCO pose model, the 80 COCO names for a
    /// COCO detect model, a custom model's own names.
    pub fn class_names(&self) -> &[String] {
        &self.names
    }

    /// Number of classes (the length of [`YoloModel::class_names`]).
    pub fn num_classes(&self) -> usize {
        self.names.len()
    }

    /// The id of the class called `name`, if the model has one.
    pub fn class_id(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// How [`YoloModel::postprocess`] decodes (this model's classes, names, thresholds and filter).
    fn decode(&self) -> Decode<'_> {
        Decode {
            nc: self.net.head().nc,
            names: &self.names_arc,
            conf: self.opts.conf_threshold,
            iou: self.opts.iou_threshold,
            classes: self.opts.classes.as_deref(),
            agnostic: false,
        }
    }

    pub fn arch(&self) -> Arch {
        self.net.arch
    }

    /// "n", "s", "m", "l", "x" (or "custom" for an unrecognised width).
    pub fn scale_name(&self) -> &str {
        &self.net.scale
    }

    pub fn options(&self) -> &PoseOptions {
        &self.opts
    }

    /// The letterbox from a `src_w` x `src_h` frame to this model's configured input size.
    pub fn letterbox_for(&self, src_w: usize, src_h: usize) -> Letterbox {
        Letterbox::new(src_w, src_h, self.opts.input_width, self.opts.input_height)
    }

    /// Number of keypoints per detection (17 for COCO pose models, 0 for detect models).
    pub fn num_keypoints(&self) -> usize {
        self.net.head().nk / 3
    }

    /// Rows of the raw output: 4 + classes + 3 * keypoints (56 for COCO pose, 84 for COCO detect).
    pub fn output_rows(&self) -> usize {
        self.net.head().rows()
    }

    /// The device the network runs on.
    pub fn device(&self) -> &Device {
        &self.net.device
    }

    /// Whether this model runs on HAVEN's CPU kernels (the CPU device, unless
    /// [`EngineOptions::candle_cpu_ops`]) rather than Candle's own ops.
    pub fn uses_haven_kernels(&self) -> bool {
        matches!(self.net.ops, net::Ops::Haven(_))
    }

    /// Raw network output for an NCHW float input (RGB in [0, 1], H and W multiples of 32), on any
    /// device (moved to the model's): `[B, 4 + nc + 3K, N]` on the model's device, exactly the layout
    /// of the ONNX export's `output0`.
    pub fn forward_raw(&self, input_nchw_f32: &Tensor) -> Result<Tensor, PoseError> {
        let (_, c, h, w) = input_nchw_f32.dims4().map_err(|e| {
            PoseError::BadInput(format!(
                "expected an NCHW tensor [B, 3, H, W], got {:?}: {e}",
                input_nchw_f32.shape()
            ))
        })?;
        if c != 3 {
            return Err(PoseError::BadInput(format!(
                "expected 3 input channels, got {c}"
            )));
        }
        check_dims(w, h)?;
        let x = input_nchw_f32
            .to_device(&self.net.device)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        Ok(self.net.forward(&x)?)
    }

    /// Confidence filter + NMS + mapping back to source pixels for a raw `[1, rows, N]` (or `[rows, N]`) output.
    pub fn postprocess(&self, raw: &Tensor, lb: &Letterbox) -> Result<Vec<Detection>, PoseError> {
        let dims = raw.dims().to_vec();
        let (rows, n) = match dims.as_slice() {
            [1, r, n] | [r, n] => (*r, *n),
            _ => {
                return Err(PoseError::BadInput(format!(
                    "raw output must be [1, rows, N], got {dims:?}"
                )))
            }
        };
        if rows != self.output_rows() {
            return Err(PoseError::BadInput(format!(
                "raw output has {rows} rows, the model gives {}",
                self.output_rows()
            )));
        }
        let v = raw.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(postprocess_raw_with(&v, rows, n, lb, &self.decode()))
    }

    /// The server's path: `bgr` is the letterboxed frame (BGR u8, HWC, contiguous, `lb.dst_w` x `lb.dst_h`,
    /// pad value 114). BGR->RGB, /255, NCHW, forward, decode, filter, NMS, map back to source pixels.
    pub fn detect_letterboxed_bgr(
        &self,
        bgr: &[u8],
        lb: &Letterbox,
    ) -> Result<Vec<Detection>, PoseError> {
        Ok(self.detect_batch(&[(bgr, lb)])?.pop().unwrap_or_default())
    }

    /// [`PoseModel::detect_letterboxed_bgr`] for several frames of one network input size, as one
    /// forward pass at batch N (what a GPU gains from; on HAVEN's CPU kernels the images run one after
    /// the other inside each op, so batch 1 is the CPU default). One list of detections per frame.
    pub fn detect_batch(
        &self,
        frames: &[(&[u8], &Letterbox)],
    ) -> Result<Vec<Vec<Detection>>, PoseError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        self.detect_input(&Input::from_letterboxed_bgr(frames)?)
    }

    /// Detections for frames already converted to the network's input ([`Input`]): several models
    /// of one input size (pose and detect on the same camera) convert each frame once. One list of
    /// detections per frame.
    pub fn detect_input(&self, input: &Input) -> Result<Vec<Vec<Detection>>, PoseError> {
        let out = self.net.forward(&input.x.to_device(&self.net.device)?)?;
        let (_, rows, n) = out.dims3()?;
        // this call's own output, read in place (not copied: a fresh frame-sized vector per pass),
        // then its memory back to the buffer pool
        let raw = match out.is_contiguous().then(|| fused::take_storage(&out)).flatten() {
            Some(v) => v,
            None => out.flatten_all()?.to_vec1::<f32>()?,
        };
        let decode = self.decode();
        let found = input
            .lbs
            .iter()
            .zip(raw[..input.lbs.len() * rows * n].chunks_exact(rows * n))
            .map(|(lb, out)| postprocess_raw_with(out, rows, n, lb, &decode))
            .collect();
        kernels::pool::recycle(raw);
        Ok(found)
    }
}

/// Letterboxed frames converted once to a network input (RGB / 255, NCHW f32, on the CPU), for every
/// model of that input size ([`YoloModel::detect_input`]): pose and detect on the same frame share
/// the conversion. Its memory goes back to the engine's buffer pool when dropped.
pub struct Input {
    x: Tensor,
    lbs: Vec<Letterbox>,
}

impl Input {
    /// `frames`: letterboxed BGR u8 HWC frames (contiguous, `lb.dst_w` x `lb.dst_h`, pad value 114),
    /// all of one size.
    pub fn from_letterboxed_bgr(frames: &[(&[u8], &Letterbox)]) -> Result<Self, PoseError> {
        let Some((_, lb0)) = frames.first() else {
            return Err(PoseError::BadInput("no frames to convert".into()));
        };
        let (w, h) = (lb0.dst_w, lb0.dst_h);
        check_dims(w, h)?;
        let per = 3 * w * h;
        // a pooled vector, possibly longer than the values: not truncated, so that it goes back to the
        // pool at its full length (a shortened one is zero-filled again when the pool hands it out for
        // a larger map); the tensor is a view of its first values, which both HAVEN's ops and Candle's read
        let mut chw = kernels::pool::PBuf::new(frames.len() * per).into_storage();
        for ((bgr, lb), dst) in frames.iter().zip(chw.chunks_exact_mut(per)) {
            if (lb.dst_w, lb.dst_h) != (w, h) {
                return Err(PoseError::BadInput(format!(
                    "a batch has one input size: {w}x{h} and {}x{}",
                    lb.dst_w, lb.dst_h
                )));
            }
            if bgr.len() != per {
                return Err(PoseError::BadInput(format!(
                    "letterboxed BGR frame has {} bytes, expected {w} x {h} x 3 = {per}",
                    bgr.len()
                )));
            }
            hwc_u8_to_chw_into(bgr, w, h, true, dst);
        }
        let stored = chw.len();
        let x = Tensor::from_vec(chw, stored, &Device::Cpu)?
            .narrow(0, 0, frames.len() * per)?
            .reshape((frames.len(), 3, h, w))?;
        Ok(Self {
            x,
            lbs: frames.iter().map(|(_, lb)| **lb).collect(),
        })
    }

    /// Network input (width, height).
    pub fn size(&self) -> (usize, usize) {
        (self.lbs[0].dst_w, self.lbs[0].dst_h)
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.lbs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lbs.is_empty()
    }

    /// The frames' letterboxes.
    pub fn letterboxes(&self) -> &[Letterbox] {
        &self.lbs
    }

}

impl Drop for Input {
    fn drop(&mut self) {
        fused::reclaim(&self.x);
    }
}

/// HWC u8 (RGB, or BGR when `swap_rb`) -> CHW f32 RGB / 255.
pub fn hwc_u8_to_chw_f32(img: &[u8], w: usize, h: usize, swap_rb: bool) -> Vec<f32> {
    let mut out = vec![0f32; 3 * w * h];
    hwc_u8_to_chw_into(img, w, h, swap_rb, &mut out);
    out
}

/// v / 255 for every byte value: a table lookup instead of a conversion and a division per channel
/// (640x640: 1.4 -> 0.4 ms), with the same values.
const UNIT: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f32 / 255.0;
        i += 1;
    }
    t
};

fn hwc_u8_to_chw_into(img: &[u8], w: usize, h: usize, swap_rb: bool, out: &mut [f32]) {
    use rayon::prelude::*;
    let n = w * h;
    assert!(
        img.len() >= 3 * n && out.len() == 3 * n,
        "image has {} bytes, expected {w} x {h} x 3",
        img.len()
    );
    let (r, rest) = out.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    let (ri, bi) = if swap_rb { (2, 0) } else { (0, 2) };
    let rows = 16 * w.max(1);
    r.par_chunks_mut(rows)
        .zip(g.par_chunks_mut(rows))
        .zip(b.par_chunks_mut(rows))
        .zip(img[..3 * n].par_chunks(3 * rows))
        .for_each(|(((r, g), b), src)| {
            for (((rv, gv), bv), px) in r
                .iter_mut()
                .zip(g.iter_mut())
                .zip(b.iter_mut())
                .zip(src.chunks_exact(3))
            {
                *rv = UNIT[px[ri] as usize];
                *gv = UNIT[px[1] as usize];
                *bv = UNIT[px[bi] as usize];
            }
        });
}

#[cfg(test)]
mod tests {
    /// `HAVEN_INT8_F32_LAYERS`' list: numbers below 64 become bits, the rest is ignored.
    #[test]
    fn layer_mask_reads_a_list_of_layers() {
        assert_eq!(super::layer_mask("2,16, 19"), 1 << 2 | 1 << 16 | 1 << 19);
        assert_eq!(super::layer_mask(""), 0);
        assert_eq!(super::layer_mask("x,64,3"), 1 << 3);
    }
}
