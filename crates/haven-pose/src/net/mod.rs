//! The YOLOv8 and YOLO11 networks (pose and detect) as Candle modules, written once for every device.
//!
//! Each block is loaded from an Ultralytics state dict (`model.N.…`) through a [`Vb`] (a
//! `VarBuilder`-style prefix walker over the weights file) and has `forward(&Tensor) -> Tensor` on
//! NCHW tensors of any batch size. Channel counts, kernel sizes, repeat counts and the C3k/Bottleneck
//! choice are read from the tensor shapes and names; strides, shortcuts and the layer wiring follow the
//! reference yaml files (`yolov8-pose.yaml`, `yolo11-pose.yaml`, `yolov8.yaml`, `yolo11.yaml`), identical
//! for every scale. The Detect head is the Pose head without its keypoint branch ([`Head`]).
//!
//! How a block computes depends on where its tensors live ([`Ops`], fixed at load):
//! * [`Ops::Candle`]: Candle's own ops (`candle_nn::Conv2d`, `silu`, `cat`, `matmul`, `softmax`, …), on
//!   the CPU, CUDA (cuDNN where built in) or Metal device;
//! * [`Ops::Haven`] (the CPU default): each convolution layer, each block (C2f/C3k2, SPPF, C2PSA) and the
//!   head is one Candle custom op whose `cpu_fwd` runs HAVEN's kernels (`crate::fused`).
//!
//! Both paths share this module's graph, weights loading and BatchNorm folding; `tests/golden.rs` checks
//! both against the reference outputs.

use candle_core::{Device, Module, Tensor};

use crate::kernels::KernelOptions;
use crate::store::Store;
use crate::EngineOptions;
use crate::{Arch, PoseError, Task};

mod attention;
mod blocks;
mod body;
mod conv;
mod head;
mod layer;
mod layout;
mod plan;
mod profile;
mod vb;

pub(crate) use attention::{Attention, C2psa, PsaBlock};
pub(crate) use blocks::{Bottleneck, C2f, C3k, Inner, Sppf};
pub(crate) use conv::{chain, ConvBn};
pub(crate) use head::Head;
pub(crate) use layout::detect_layout;
pub(crate) use vb::Vb;

use body::{Body, Kind};
use layer::{Layer, Node};
use layout::scale_name;
use plan::{Outputs, ReclaimPlan};
use profile::LayerProfiler;

type CResult<T> = candle_core::Result<T>;

/// Which ops the blocks run (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ops {
    /// HAVEN's kernels as Candle custom ops (CPU device only).
    Haven(KernelOptions),
    /// Candle's own ops (any device).
    Candle,
}

/// A whole pose or detect network on one device.
pub(crate) struct Net {
    /// the layers before the head, `model.0` first
    body: Vec<Node>,
    head: Head,
    /// the body layers the head reads, finest level first
    head_from: Vec<usize>,
    plan: ReclaimPlan,
    pub arch: Arch,
    pub task: Task,
    pub scale: String,
    pub device: Device,
    pub ops: Ops,
    /// HAVEN_POSE_PROFILE=1: print each layer's time to stderr
    profile: bool,
}

/// A layer's name in messages (Ultralytics' module names).
fn layer_name(kind: Kind, body: &Body) -> &'static str {
    match kind {
        Kind::Conv => "Conv",
        Kind::C2f { .. } => body.block,
        Kind::Sppf => "SPPF",
        Kind::C2psa => "C2PSA",
        Kind::Upsample => "Upsample",
        Kind::Concat => "Concat",
    }
}

impl Net {
    /// The network of `st` on `device`; HAVEN's kernels run it when the device is the CPU, unless
    /// `engine.candle_cpu_ops` asks for Candle's own CPU ops.
    pub fn load(st: &Store, engine: &EngineOptions, device: Device) -> Result<Self, PoseError> {
        let (arch, task) = detect_layout(st)?;
        let eps = st
            .metadata
            .get("bn_eps")
            .and_then(|s| s.parse::<f32>().ok())
            .unwrap_or(1e-3);
        let ops = if device.is_cpu() && !engine.candle_cpu_ops {
            Ops::Haven(engine.kernels)
        } else {
            Ops::Candle
        };
        let root = Vb::new(st, &device, ops, eps).pp("model");
        let spec = Body::of(arch);
        let table = spec.table();
        let mut body = Vec::with_capacity(table.layers.len());
        let mut chans: Vec<usize> = Vec::with_capacity(table.layers.len());
        let kept_f32 = engine.int8_f32_layers.unwrap_or(if task == Task::Pose { crate::POSE_INT8_F32_LAYERS } else { 0 });
        for (i, l) in table.layers.into_iter().enumerate() {
            let cin = l.from.first().map_or(3, |&f| chans[f]);
            let what = format!(
                "layer {i} ({}) of the {arch:?} {task} model",
                layer_name(l.kind, &spec)
            );
            let vb = match ops {
                // a layer kept f32 on the 8-bit path (`int8_f32_layers`)
                Ops::Haven(k) if kept_f32 >> i & 1 == 1 => {
                    let k = KernelOptions { precision: crate::Precision::F32, ..k };
                    Vb::new(st, &device, Ops::Haven(k), eps).pp("model")
                }
                _ => root.clone(),
            };
            let vb = vb.pp(i).with_what(what);
            let (layer, cout) = Layer::load(&vb, l.kind, cin, &l.from, &chans)?;
            chans.push(cout);
            body.push(Node {
                from: l.from,
                layer,
            });
        }
        let head_from = table.head_from;
        let head = {
            let what = if task == Task::Pose {
                "the Pose head"
            } else {
                "the Detect head"
            };
            // The head stays f32 in every precision: its outputs are the boxes, scores and keypoints
            // themselves, and in 8 bits it alone doubled the keypoint error (docs/pose.md, "8-bit path").
            let head_ops = match ops {
                Ops::Haven(k) => Ops::Haven(KernelOptions {
                    precision: crate::Precision::F32,
                    ..k
                }),
                o => o,
            };
            let vb = Vb::new(st, &device, head_ops, eps).pp("model").pp(body.len()).with_what(what.into());
            let chs: Vec<usize> = head_from.iter().map(|&f| chans[f]).collect();
            let pose = task == Task::Pose;
            Head::load(&vb, &chs, spec.dw_class_branch, pose, engine.layer_profile)?
        };
        let plan = ReclaimPlan::new(&body, &head_from, matches!(ops, Ops::Haven(_)));
        let c0 = match &body[0].layer {
            Layer::Conv(c) => c.cout,
            _ => 0,
        };
        let scale = scale_name(arch, st, c0);
        Ok(Self {
            body,
            head,
            head_from,
            plan,
            arch,
            task,
            scale,
            device,
            ops,
            profile: engine.layer_profile,
        })
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Runs the network on `[B, 3, H, W]` (RGB in [0, 1]) on its device; gives `[B, rows, N]`.
    ///
    /// On HAVEN's CPU path, when no other pass is running, this one runs on a rayon worker (the
    /// caller, e.g. a camera thread, waits): its ~200 parallel sections then start where they are,
    /// instead of each being handed from the caller to the pool and back (1 thread, 640x640: 88 -> 82
    /// ms per frame). Passes that overlap it run from their callers as before: two passes as pool jobs
    /// would nest (a worker waiting inside one takes up the next whole pass), and with six cameras on
    /// two cores one camera's inference then took 4 s instead of 0.3.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        if !matches!(self.ops, Ops::Haven(_)) || rayon::current_thread_index().is_some() {
            return self.forward_here(x);
        }
        struct Running;
        impl Drop for Running {
            fn drop(&mut self) {
                RUNNING.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let alone = RUNNING.fetch_add(1, Ordering::AcqRel) == 0;
        let _running = Running;
        if alone {
            rayon::scope(|_| self.forward_here(x))
        } else {
            self.forward_here(x)
        }
    }

    /// The graph walk: each layer on the outputs it reads, then the head; each output is given back
    /// after its last reader (`ReclaimPlan`).
    fn forward_here(&self, input: &Tensor) -> CResult<Tensor> {
        let (_, _, h, _) = input.dims4()?;
        let haven = matches!(self.ops, Ops::Haven(_));
        let profiler = LayerProfiler::new(self.profile);
        let mut outs = Outputs::new(&self.plan, haven);
        for (i, node) in self.body.iter().enumerate() {
            let start = profiler.start();
            if self.plan.is_fused_upsample(i) {
                // done by the concatenation that reads it
                outs.push(None);
                continue;
            }
            let x0 = if i == 0 {
                input
            } else {
                outs.read(node.from[0]).0
            };
            let y = self.run_layer(node, x0, &outs, haven)?;
            profiler.layer(i, &node.layer, start, &y);
            outs.push(Some(y));
            outs.release_dead(i);
        }
        let start = profiler.start();
        let y = self.run_head(&outs, h)?;
        profiler.head(self.body.len(), start);
        outs.release_all();
        Ok(y)
    }

    /// One body layer on `x0` (its first input) and, for a concatenation, the outputs it reads.
    fn run_layer(&self, node: &Node, x0: &Tensor, outs: &Outputs, haven: bool) -> CResult<Tensor> {
        match &node.layer {
            Layer::Conv(c) => c.forward(x0),
            Layer::C2f(b) => b.forward(x0),
            Layer::Sppf(b) => b.forward(x0),
            Layer::C2psa(b) => b.forward(x0),
            Layer::Upsample => {
                let (_, _, xh, xw) = x0.dims4()?;
                x0.upsample_nearest2d(2 * xh, 2 * xw)
            }
            Layer::Concat if haven && node.from.len() == 2 => {
                let ((a, ua), (b, ub)) = (outs.read(node.from[0]), outs.read(node.from[1]));
                a.apply_op2_no_bwd(b, &crate::fused::CatOp { up: [ua, ub] })
            }
            Layer::Concat => {
                let parts: Vec<&Tensor> = node.from.iter().map(|&f| outs.get(f)).collect();
                Tensor::cat(&parts, 1)
            }
        }
    }

    /// The head on the three levels it reads, each level's stride from its height (`h`: the input's).
    fn run_head(&self, outs: &Outputs, h: usize) -> CResult<Tensor> {
        let xs: Vec<Tensor> = self
            .head_from
            .iter()
            .map(|&f| outs.get(f).clone())
            .collect();
        let s = |x: &Tensor| x.dim(2).map(|xh| (h / xh) as f32);
        self.head.forward(&xs, [s(&xs[0])?, s(&xs[1])?, s(&xs[2])?])
    }
}
