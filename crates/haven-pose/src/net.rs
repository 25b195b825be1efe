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
//! Both paths share this file's graph, weights loading and BatchNorm folding; `tests/golden.rs` checks
//! both against the reference outputs.

use candle_core::{Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};

use crate::kernels::conv::Conv;
use crate::kernels::gemm::Kernel;
use crate::kernels::KernelOptions;
use crate::store::{Store, Tensor32};
use crate::EngineOptions;
use crate::{Arch, PoseError, Task};

type CResult<T> = candle_core::Result<T>;

/// Which ops the blocks run (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ops {
    /// HAVEN's kernels as Candle custom ops (CPU device only).
    Haven(KernelOptions),
    /// Candle's own ops (any device).
    Candle,
}

/// Loads weights the way candle-nn's `VarBuilder` does (a prefix, `pp` to descend, `get` a tensor), over
/// this crate's [`Store`] so that a missing or misshapen tensor is a [`PoseError`] naming it.
#[derive(Clone)]
pub(crate) struct Vb<'a> {
    st: &'a Store,
    prefix: String,
    pub dev: &'a Device,
    pub ops: Ops,
    /// BatchNorm epsilon
    eps: f32,
    /// what the current layer is, for error messages
    what: String,
}

impl<'a> Vb<'a> {
    fn new(st: &'a Store, dev: &'a Device, ops: Ops, eps: f32) -> Self {
        Self {
            st,
            prefix: String::new(),
            dev,
            ops,
            eps,
            what: String::new(),
        }
    }

    /// The builder one level down (`model.3` -> `model.3.cv1`).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let mut vb = self.clone();
        vb.prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        vb
    }

    fn with_what(&self, what: String) -> Self {
        let mut vb = self.clone();
        vb.what = what;
        vb
    }

    fn path(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The tensor `name` under this prefix, of exactly this rank (`None`: any size in that dimension).
    fn get(&self, name: &str, shape: &[Option<usize>]) -> Result<&'a Tensor32, PoseError> {
        self.st.get_shaped(&self.path(name), &self.what, shape)
    }

    fn contains(&self, name: &str) -> bool {
        self.st.tensors.contains_key(&self.path(name))
    }

    /// Number of `name.N.` children (N = 0, 1, ...), at least one.
    fn children(&self, name: &str, first: &str) -> Result<usize, PoseError> {
        let n = self.st.count_children(&self.path(name));
        if n == 0 {
            self.st
                .get(&self.path(&format!("{name}.0.{first}")), &self.what)?;
        }
        Ok(n)
    }

    fn has_prefix(&self, name: &str) -> bool {
        self.st.has_prefix(&self.path(name))
    }

    fn bad_shape(&self, name: &str, got: &[usize], expected: &str) -> PoseError {
        PoseError::BadShape {
            path: self.st.path.clone(),
            name: self.path(name),
            got: got.to_vec(),
            expected: expected.to_string(),
        }
    }
}

/// How one convolution runs.
pub(crate) enum ConvImpl {
    /// HAVEN's kernel (weights packed for its GEMM / Winograd / depthwise paths).
    Haven(Conv),
    /// `candle_nn::Conv2d` on the model's device.
    Candle(Conv2d),
}

/// A convolution with its BatchNorm folded in and an optional SiLU: Ultralytics' `Conv` (Conv2d without
/// bias + BatchNorm2d + SiLU), `DWConv`, or a plain `nn.Conv2d` with bias (the head's last layers).
pub(crate) struct ConvBn {
    pub cout: usize,
    pub act: bool,
    pub imp: ConvImpl,
}

impl ConvBn {
    /// Ultralytics `Conv` at `vb` (`conv.weight`, `bn.{weight,bias,running_mean,running_var}`), BN folded.
    pub fn load(vb: &Vb, cin: usize, stride: usize, act: bool) -> Result<Self, PoseError> {
        let wt = vb.get("conv.weight", &[None, None, None, None])?;
        let (cout, cpg, k, k2) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3]);
        let groups = if cpg == cin {
            1
        } else if cpg == 1 && cout == cin {
            cin
        } else {
            return Err(vb.bad_shape(
                "conv.weight",
                &wt.shape,
                &format!("[_, {cin}, k, k] or depthwise [{cin}, 1, k, k]"),
            ));
        };
        if k != k2 || k % 2 == 0 {
            return Err(vb.bad_shape("conv.weight", &wt.shape, "a square odd kernel"));
        }
        let shape1 = [Some(cout)];
        let g = &vb.get("bn.weight", &shape1)?.data;
        let b = &vb.get("bn.bias", &shape1)?.data;
        let m = &vb.get("bn.running_mean", &shape1)?.data;
        let v = &vb.get("bn.running_var", &shape1)?.data;
        let per = cpg * k * k;
        let mut w = wt.data.clone();
        let mut bias = vec![0f32; cout];
        for o in 0..cout {
            let s = g[o] / (v[o] + vb.eps).sqrt();
            for x in &mut w[o * per..(o + 1) * per] {
                *x *= s;
            }
            bias[o] = b[o] - m[o] * s;
        }
        Self::new(vb, [cin, cout, k, stride, groups], w, bias, act)
    }

    /// A plain `nn.Conv2d` with (optional) bias at `vb` (`weight`, `bias`), stride 1, no activation.
    pub fn load_plain(vb: &Vb, cin: usize) -> Result<Self, PoseError> {
        let wt = vb.get("weight", &[None, Some(cin), None, None])?;
        let (cout, k) = (wt.shape[0], wt.shape[2]);
        let b = if vb.contains("bias") {
            vb.get("bias", &[Some(cout)])?.data.clone()
        } else {
            vec![0.0; cout]
        };
        Self::new(vb, [cin, cout, k, 1, 1], wt.data.clone(), b, false)
    }

    /// From folded weights `[cout, cin/groups, k, k]` and bias `[cout]`; `dims` = cin, cout, k, stride, groups.
    fn new(
        vb: &Vb,
        [cin, cout, k, stride, groups]: [usize; 5],
        w: Vec<f32>,
        b: Vec<f32>,
        act: bool,
    ) -> Result<Self, PoseError> {
        let imp = match vb.ops {
            Ops::Haven(opts) => {
                ConvImpl::Haven(Conv::new(cin, cout, k, stride, groups, w, b, act, opts))
            }
            Ops::Candle => {
                let wt = Tensor::from_vec(w, (cout, cin / groups, k, k), vb.dev)?;
                let bt = Tensor::from_vec(b, cout, vb.dev)?;
                let cfg = Conv2dConfig {
                    padding: k / 2,
                    stride,
                    groups,
                    ..Default::default()
                };
                ConvImpl::Candle(Conv2d::new(wt, Some(bt), cfg))
            }
        };
        Ok(Self { cout, act, imp })
    }

    /// HAVEN's kernel of this layer (only called by the fused CPU ops, which exist only then).
    pub fn kernel(&self) -> &Conv {
        match &self.imp {
            ConvImpl::Haven(c) => c,
            ConvImpl::Candle(_) => {
                unreachable!("HAVEN's CPU ops run only on a model loaded for them")
            }
        }
    }

    pub fn is_haven(&self) -> bool {
        matches!(self.imp, ConvImpl::Haven(_))
    }
}

impl Module for ConvBn {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match &self.imp {
            ConvImpl::Haven(_) => x.apply_op1_no_bwd(self),
            ConvImpl::Candle(c) => {
                let y = c.forward(x)?;
                if self.act {
                    candle_nn::ops::silu(&y)
                } else {
                    Ok(y)
                }
            }
        }
    }
}

fn chain(convs: &[ConvBn], x: &Tensor) -> CResult<Tensor> {
    let mut y = convs[0].forward(x)?;
    for c in &convs[1..] {
        y = c.forward(&y)?;
    }
    Ok(y)
}

pub(crate) struct Bottleneck {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub add: bool,
}

impl Bottleneck {
    fn load(vb: &Vb, c: usize, shortcut: bool) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c, 1, true)?;
        let cv2 = ConvBn::load(&vb.pp("cv2"), cv1.cout, 1, true)?;
        let add = shortcut && cv2.cout == c;
        Ok(Self { cv1, cv2, add })
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = self.cv2.forward(&self.cv1.forward(x)?)?;
        if self.add {
            x + y
        } else {
            Ok(y)
        }
    }
}

/// `C3k` (a C3 with k x k bottlenecks), used inside YOLO11's C3k2 when c3k=True.
pub(crate) struct C3k {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub cv3: ConvBn,
    pub m: Vec<Bottleneck>,
}

impl C3k {
    fn load(vb: &Vb, c1: usize) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c1, 1, true)?;
        let cv2 = ConvBn::load(&vb.pp("cv2"), c1, 1, true)?;
        let n = vb.children("m", "cv1.conv.weight")?;
        let m = (0..n)
            .map(|i| Bottleneck::load(&vb.pp("m").pp(i), cv1.cout, true))
            .collect::<Result<Vec<_>, _>>()?;
        let cv3 = ConvBn::load(&vb.pp("cv3"), cv1.cout + cv2.cout, 1, true)?;
        Ok(Self { cv1, cv2, cv3, m })
    }
}

impl Module for C3k {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut a = self.cv1.forward(x)?;
        for b in &self.m {
            a = b.forward(&a)?;
        }
        let b = self.cv2.forward(x)?;
        self.cv3.forward(&Tensor::cat(&[a, b], 1)?)
    }
}

/// A C2f/C3k2 inner block (a few per model, made once at load: their size does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Inner {
    Bottleneck(Bottleneck),
    C3k(C3k),
}

impl Module for Inner {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Inner::Bottleneck(b) => b.forward(x),
            Inner::C3k(b) => b.forward(x),
        }
    }
}

/// `C2f` (YOLOv8) and `C3k2` (YOLO11, a C2f whose inner blocks are Bottleneck or C3k).
pub(crate) struct C2f {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub c: usize,
    pub m: Vec<Inner>,
}

impl C2f {
    fn load(vb: &Vb, c1: usize, shortcut: bool) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c1, 1, true)?;
        if cv1.cout % 2 != 0 {
            return Err(vb.bad_shape(
                "cv1.conv.weight",
                &[cv1.cout],
                "an even number of output channels",
            ));
        }
        let c = cv1.cout / 2;
        let n = vb.children("m", "cv1.conv.weight")?;
        let mut m = Vec::with_capacity(n);
        for i in 0..n {
            let q = vb.pp("m").pp(i);
            if q.has_prefix("cv3.") || q.has_prefix("m.") {
                let b = C3k::load(&q, c)?;
                if b.cv3.cout != c {
                    return Err(q.bad_shape(
                        "cv3.conv.weight",
                        &[b.cv3.cout],
                        &format!("{c} outputs"),
                    ));
                }
                m.push(Inner::C3k(b));
            } else {
                let b = Bottleneck::load(&q, c, shortcut)?;
                if b.cv2.cout != c {
                    return Err(q.bad_shape(
                        "cv2.conv.weight",
                        &[b.cv2.cout],
                        &format!("{c} outputs"),
                    ));
                }
                m.push(Inner::Bottleneck(b));
            }
        }
        let cv2 = ConvBn::load(&vb.pp("cv2"), (2 + n) * c, 1, true)?;
        Ok(Self { cv1, cv2, c, m })
    }
}

impl Module for C2f {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        if self.cv1.is_haven() {
            return x.apply_op1_no_bwd(self);
        }
        let mut ys = self.cv1.forward(x)?.chunk(2, 1)?;
        for m in &self.m {
            let y = m.forward(ys.last().unwrap())?;
            ys.push(y);
        }
        self.cv2.forward(&Tensor::cat(&ys, 1)?)
    }
}

pub(crate) struct Sppf {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub k: usize,
}

impl Sppf {
    fn load(vb: &Vb, c1: usize) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c1, 1, true)?;
        let cv2 = ConvBn::load(&vb.pp("cv2"), 4 * cv1.cout, 1, true)?;
        Ok(Self { cv1, cv2, k: 5 })
    }
}

impl Module for Sppf {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        if self.cv1.is_haven() {
            return x.apply_op1_no_bwd(self);
        }
        // k x k max-pool, stride 1, padding k/2: edge replication pads as -inf does for a max whose
        // window always holds the replicated value.
        let p = self.k / 2;
        let pool = |t: &Tensor| -> CResult<Tensor> {
            t.pad_with_same(2, p, p)?
                .pad_with_same(3, p, p)?
                .max_pool2d_with_stride(self.k, 1)
        };
        let y1 = self.cv1.forward(x)?;
        let y2 = pool(&y1)?;
        let y3 = pool(&y2)?;
        let y4 = pool(&y3)?;
        self.cv2.forward(&Tensor::cat(&[y1, y2, y3, y4], 1)?)
    }
}

/// YOLO11 `Attention` (multi-head self-attention over the H*W positions, with a depthwise positional conv).
pub(crate) struct Attention {
    pub qkv: ConvBn,
    pub proj: ConvBn,
    pub pe: ConvBn,
    pub nh: usize,
    pub kd: usize,
    pub hd: usize,
    /// the GEMM micro-kernel of the attention products (HAVEN's CPU path)
    pub kernel: Option<Kernel>,
}

impl Attention {
    fn load(vb: &Vb, dim: usize) -> Result<Self, PoseError> {
        // Ultralytics: PSABlock(c, attn_ratio=0.5, num_heads=c // 64)
        let nh = (dim / 64).max(1);
        let hd = dim / nh;
        let kd = hd / 2;
        let qkv = ConvBn::load(&vb.pp("qkv"), dim, 1, false)?;
        if qkv.cout != nh * (2 * kd + hd) {
            return Err(vb.bad_shape(
                "qkv.conv.weight",
                &[qkv.cout, dim],
                &format!(
                    "[{}, {dim}, 1, 1] ({nh} heads, key dim {kd}, head dim {hd})",
                    nh * (2 * kd + hd)
                ),
            ));
        }
        let proj = ConvBn::load(&vb.pp("proj"), dim, 1, false)?;
        let pe = ConvBn::load(&vb.pp("pe"), dim, 1, false)?;
        let kernel = match vb.ops {
            Ops::Haven(o) => Some(Kernel::select(o.wide_kernel)),
            Ops::Candle => None,
        };
        Ok(Self {
            qkv,
            proj,
            pe,
            nh,
            kd,
            hd,
            kernel,
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let n = h * w;
        let (nh, kd, hd) = (self.nh, self.kd, self.hd);
        let qkv = self.qkv.forward(x)?.reshape((b, nh, 2 * kd + hd, n))?;
        let q = qkv.narrow(2, 0, kd)?;
        let k = qkv.narrow(2, kd, kd)?.contiguous()?;
        let v = qkv.narrow(2, 2 * kd, hd)?.contiguous()?;
        let attn = (q.transpose(2, 3)?.contiguous()?.matmul(&k)? * (kd as f64).powf(-0.5))?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?;
        let o = v
            .matmul(&attn.transpose(2, 3)?.contiguous()?)?
            .reshape((b, c, h, w))?;
        let pe = self.pe.forward(&v.reshape((b, c, h, w))?)?;
        self.proj.forward(&(o + pe)?)
    }
}

pub(crate) struct PsaBlock {
    pub attn: Attention,
    pub ffn0: ConvBn,
    pub ffn1: ConvBn,
}

impl Module for PsaBlock {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let x = (x + self.attn.forward(x)?)?;
        &x + self.ffn1.forward(&self.ffn0.forward(&x)?)?
    }
}

pub(crate) struct C2psa {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub c: usize,
    pub m: Vec<PsaBlock>,
}

impl C2psa {
    fn load(vb: &Vb, c1: usize) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c1, 1, true)?;
        let c = cv1.cout / 2;
        let n = vb.children("m", "attn.qkv.conv.weight")?;
        let mut m = Vec::new();
        for i in 0..n {
            let q = vb.pp("m").pp(i);
            let attn = Attention::load(&q.pp("attn"), c)?;
            let ffn0 = ConvBn::load(&q.pp("ffn.0"), c, 1, true)?;
            let ffn1 = ConvBn::load(&q.pp("ffn.1"), ffn0.cout, 1, false)?;
            m.push(PsaBlock { attn, ffn0, ffn1 });
        }
        let cv2 = ConvBn::load(&vb.pp("cv2"), 2 * c, 1, true)?;
        Ok(Self { cv1, cv2, c, m })
    }
}

impl Module for C2psa {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        if self.cv1.is_haven() {
            return x.apply_op1_no_bwd(self);
        }
        let y = self.cv1.forward(x)?;
        let a = y.narrow(1, 0, self.c)?;
        let mut b = y.narrow(1, self.c, self.c)?;
        for blk in &self.m {
            b = blk.forward(&b)?;
        }
        self.cv2.forward(&Tensor::cat(&[a, b], 1)?)
    }
}

/// The `Detect` head (DFL box regression and class scores) and the `Pose` head (the same plus a
/// keypoint branch, `cv4`): one type, the keypoint branch being empty for a detect model.
pub(crate) struct Head {
    /// HAVEN's path, per level: the box and keypoint branches' first convolutions merged (if compatible;
    /// empty for a detect model)
    pub first: Vec<Option<Conv>>,
    pub boxes: Vec<Vec<ConvBn>>,
    pub cls: Vec<Vec<ConvBn>>,
    /// per level the keypoint branch (`cv4`); empty for a detect model
    pub kpt: Vec<Vec<ConvBn>>,
    pub nc: usize,
    pub nk: usize,
    pub reg_max: usize,
    pub dfl: Vec<f32>,
    pub profile: bool,
}

/// One convolution computing the output channels of `a` then of `b` (same input, kernel, stride and
/// activation): the box and keypoint branches' first 3x3 convolutions share their input planes and
/// make one larger GEMM.
fn merge_convs(a: &Conv, b: &Conv) -> Option<Conv> {
    if (a.cin, a.k, a.stride, a.groups, a.act) != (b.cin, b.k, b.stride, b.groups, b.act)
        || a.groups != 1
    {
        return None;
    }
    let w = [a.w.as_slice(), b.w.as_slice()].concat();
    let bias = [a.b.as_slice(), b.b.as_slice()].concat();
    Some(Conv::new(
        a.cin,
        a.cout + b.cout,
        a.k,
        a.stride,
        1,
        w,
        bias,
        a.act,
        a.options(),
    ))
}

impl Head {
    /// The head at `vb`; its keypoint branch (`cv4`) is loaded when `pose`.
    fn load(
        vb: &Vb,
        chs: &[usize],
        v11: bool,
        pose: bool,
        profile: bool,
    ) -> Result<Self, PoseError> {
        let (mut boxes, mut cls, mut kpt) = (Vec::new(), Vec::new(), Vec::new());
        let conv = |name: String, cin| ConvBn::load(&vb.pp(name), cin, 1, true);
        let plain = |name: String, cin| ConvBn::load_plain(&vb.pp(name), cin);
        for (i, &ch) in chs.iter().enumerate() {
            let a = conv(format!("cv2.{i}.0"), ch)?;
            let b = conv(format!("cv2.{i}.1"), a.cout)?;
            let c = plain(format!("cv2.{i}.2"), b.cout)?;
            boxes.push(vec![a, b, c]);
            if v11 {
                let a = conv(format!("cv3.{i}.0.0"), ch)?;
                let b = conv(format!("cv3.{i}.0.1"), a.cout)?;
                let c = conv(format!("cv3.{i}.1.0"), b.cout)?;
                let d = conv(format!("cv3.{i}.1.1"), c.cout)?;
                let e = plain(format!("cv3.{i}.2"), d.cout)?;
                cls.push(vec![a, b, c, d, e]);
            } else {
                let a = conv(format!("cv3.{i}.0"), ch)?;
                let b = conv(format!("cv3.{i}.1"), a.cout)?;
                let c = plain(format!("cv3.{i}.2"), b.cout)?;
                cls.push(vec![a, b, c]);
            }
            if pose {
                let a = conv(format!("cv4.{i}.0"), ch)?;
                let b = conv(format!("cv4.{i}.1"), a.cout)?;
                let c = plain(format!("cv4.{i}.2"), b.cout)?;
                kpt.push(vec![a, b, c]);
            }
        }
        let nbox = boxes[0][2].cout;
        let nc = cls[0].last().unwrap().cout;
        let nk = kpt.first().map_or(0, |k| k[2].cout);
        if nbox % 4 != 0 || nk % 3 != 0 {
            return Err(vb.bad_shape(
                "cv2.0.2.weight",
                &[nbox],
                "4*reg_max outputs and 3*K keypoint outputs",
            ));
        }
        for i in 1..chs.len() {
            if boxes[i][2].cout != nbox
                || cls[i].last().unwrap().cout != nc
                || kpt.get(i).map_or(0, |k| k[2].cout) != nk
            {
                return Err(vb.bad_shape(
                    &format!("cv2.{i}.2.weight"),
                    &[boxes[i][2].cout],
                    "the same outputs as level 0",
                ));
            }
        }
        let reg_max = nbox / 4;
        let dfl = match vb.st.tensors.get(&vb.path("dfl.conv.weight")) {
            Some(t) if t.data.len() == reg_max => t.data.clone(),
            _ => (0..reg_max).map(|i| i as f32).collect(),
        };
        // only a Pose head has a keypoint branch to merge with
        let first = match vb.ops {
            Ops::Haven(_) => boxes
                .iter()
                .zip(&kpt)
                .map(|(b, k)| merge_convs(b[0].kernel(), k[0].kernel()))
                .collect(),
            Ops::Candle => Vec::new(),
        };
        Ok(Self {
            first,
            boxes,
            cls,
            kpt,
            nc,
            nk,
            reg_max,
            dfl,
            profile,
        })
    }

    pub fn rows(&self) -> usize {
        4 + self.nc + self.nk
    }

    /// Raw output `[B, 4 + nc + nk, N]` like ONNX `output0`, from the three levels' maps.
    fn forward(&self, xs: &[Tensor], strides: [f32; 3]) -> CResult<Tensor> {
        if self.boxes[0][0].is_haven() {
            return xs[0].apply_op3_no_bwd(
                &xs[1],
                &xs[2],
                &crate::fused::HeadOp {
                    head: self,
                    strides,
                },
            );
        }
        let mut levels = Vec::with_capacity(xs.len());
        for (lvl, x) in xs.iter().enumerate() {
            let (b, _, h, w) = x.dims4()?;
            let (hw, rm, dev, s) = (h * w, self.reg_max, x.device(), strides[lvl] as f64);
            // DFL: softmax over each side's reg_max bins, expectation with the bin values
            let bx = chain(&self.boxes[lvl], x)?.reshape((b, 4, rm, hw))?;
            let bins = Tensor::from_slice(&self.dfl, (1, 1, rm, 1), dev)?;
            let dist = candle_nn::ops::softmax(&bx, 2)?
                .broadcast_mul(&bins)?
                .sum(2)?; // [b, 4, hw]
                          // anchor centres (x + 0.5, y + 0.5) in grid units
            let gx: Vec<f32> = (0..hw).map(|a| (a % w) as f32).collect();
            let gy: Vec<f32> = (0..hw).map(|a| (a / w) as f32).collect();
            let gx = Tensor::from_vec(gx, (1, 1, hw), dev)?;
            let gy = Tensor::from_vec(gy, (1, 1, hw), dev)?;
            let side = |i| dist.narrow(1, i, 1);
            let (l, t, r, bt) = (side(0)?, side(1)?, side(2)?, side(3)?);
            let cx = (((&r - &l)? * 0.5)?.broadcast_add(&(&gx + 0.5)?)? * s)?;
            let cy = (((&bt - &t)? * 0.5)?.broadcast_add(&(&gy + 0.5)?)? * s)?;
            let bw = ((&l + &r)? * s)?;
            let bh = ((&t + &bt)? * s)?;
            let cl =
                candle_nn::ops::sigmoid(&chain(&self.cls[lvl], x)?.reshape((b, self.nc, hw))?)?;
            let Some(kpt) = self.kpt.get(lvl) else {
                levels.push(Tensor::cat(&[cx, cy, bw, bh, cl], 1)?);
                continue;
            };
            let kp = chain(kpt, x)?.reshape((b, self.nk / 3, 3, hw))?;
            let (gx, gy) = (gx.unsqueeze(0)?, gy.unsqueeze(0)?);
            let kx = ((kp.narrow(2, 0, 1)? * 2.0)?.broadcast_add(&gx)? * s)?;
            let ky = ((kp.narrow(2, 1, 1)? * 2.0)?.broadcast_add(&gy)? * s)?;
            let kv = candle_nn::ops::sigmoid(&kp.narrow(2, 2, 1)?)?;
            let kp = Tensor::cat(&[kx, ky, kv], 2)?.reshape((b, self.nk, hw))?;
            levels.push(Tensor::cat(&[cx, cy, bw, bh, cl, kp], 1)?);
        }
        Tensor::cat(&levels, 2)
    }
}

pub(crate) enum Layer {
    Conv(ConvBn),
    C2f(C2f),
    Sppf(Sppf),
    C2psa(C2psa),
    Upsample,
    Concat,
    Head(Head),
}

struct Node {
    from: Vec<usize>,
    layer: Layer,
}

/// A whole pose or detect network on one device.
pub(crate) struct Net {
    nodes: Vec<Node>,
    /// index of the last node that reads each node's output
    last_use: Vec<usize>,
    /// HAVEN's path: upsamplings done by the concatenation that reads them (`fused::CatOp`)
    up_in_concat: Vec<bool>,
    pub arch: Arch,
    pub task: Task,
    pub scale: String,
    pub device: Device,
    pub ops: Ops,
    /// HAVEN_POSE_PROFILE=1: print each layer's time to stderr
    profile: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    Conv,
    C2f(bool),
    Sppf,
    C2psa,
    Up,
    Cat,
    Head,
}

const V8: &[(&[isize], Kind)] = &[
    (&[-1], Kind::Conv),
    (&[-1], Kind::Conv),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Conv),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Conv),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Conv),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Sppf),
    (&[-1], Kind::Up),
    (&[-1, 6], Kind::Cat),
    (&[-1], Kind::C2f(false)),
    (&[-1], Kind::Up),
    (&[-1, 4], Kind::Cat),
    (&[-1], Kind::C2f(false)),
    (&[-1], Kind::Conv),
    (&[-1, 12], Kind::Cat),
    (&[-1], Kind::C2f(false)),
    (&[-1], Kind::Conv),
    (&[-1, 9], Kind::Cat),
    (&[-1], Kind::C2f(false)),
    (&[15, 18, 21], Kind::Head),
];

const V11: &[(&[isize], Kind)] = &[
    (&[-1], Kind::Conv),
    (&[-1], Kind::Conv),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Conv),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Conv),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Conv),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Sppf),
    (&[-1], Kind::C2psa),
    (&[-1], Kind::Up),
    (&[-1, 6], Kind::Cat),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Up),
    (&[-1, 4], Kind::Cat),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Conv),
    (&[-1, 13], Kind::Cat),
    (&[-1], Kind::C2f(true)),
    (&[-1], Kind::Conv),
    (&[-1, 10], Kind::Cat),
    (&[-1], Kind::C2f(true)),
    (&[16, 19, 22], Kind::Head),
];

/// The task a head's name says (`haven.task` metadata from the converter), or its tensors.
fn task_of_tensors(st: &Store, head: usize) -> Result<Task, PoseError> {
    let unsupported = |task: &str| PoseError::UnsupportedTask {
        path: st.path.clone(),
        task: task.to_string(),
    };
    if let Some(t) = st.metadata.get("haven.task") {
        match t.as_str() {
            "pose" | "detect" => {}
            other => return Err(unsupported(other)),
        }
    }
    let p = |name: &str| format!("model.{head}.{name}");
    if st.has_prefix(&p("proto.")) {
        return Err(unsupported("segment"));
    }
    match st.tensors.get(&p("cv4.0.2.weight")) {
        // OBB: one angle per box
        Some(t) if t.shape.first() == Some(&1) => Err(unsupported("obb")),
        Some(_) => Ok(Task::Pose),
        None if st.has_prefix(&p("cv4.")) => Ok(Task::Pose), // incomplete: loading names the tensor
        None => Ok(Task::Detect),
    }
}

/// The architecture and task of a state dict, from its tensor names: the head is at `model.22`
/// (YOLOv8) or `model.23` (YOLO11); a Pose head has a keypoint branch (`cv4.*`), a Detect head not.
pub(crate) fn detect_layout(st: &Store) -> Result<(Arch, Task), PoseError> {
    let v11 = st.has_prefix("model.23.cv2.") || st.has_prefix("model.10.m.0.attn.");
    let v8 = st.has_prefix("model.22.cv2.") && !st.has_prefix("model.23.");
    match (v11, v8) {
        (true, _) => Ok((Arch::V11, task_of_tensors(st, 23)?)),
        (false, true) => Ok((Arch::V8, task_of_tensors(st, 22)?)),
        _ => {
            if st.tensors.keys().any(|k| k.ends_with(".linear.weight")) {
                return Err(PoseError::UnsupportedTask {
                    path: st.path.clone(),
                    task: "classify".into(),
                });
            }
            let mut heads: Vec<&str> = st
                .tensors
                .keys()
                .filter(|k| k.contains(".cv4.") || k.contains(".dfl."))
                .map(|k| k.as_str())
                .collect();
            heads.sort();
            heads.truncate(3);
            let msg = if st.tensors.is_empty() {
                "the file holds no float tensors".to_string()
            } else if !st.has_prefix("model.0.") {
                let mut some: Vec<&String> = st.tensors.keys().collect();
                some.sort();
                format!(
                    "expected Ultralytics state-dict names (`model.0.conv.weight`, ...), found e.g. `{}`",
                    some[0]
                )
            } else {
                format!(
                    "no pose or detect head found: expected `model.22.cv2.*` (YOLOv8) or `model.23.cv2.*` (YOLO11){}",
                    if heads.is_empty() { String::new() } else { format!("; head-like tensors: {heads:?}") }
                )
            };
            Err(PoseError::UnknownLayout {
                path: st.path.clone(),
                msg,
            })
        }
    }
}

fn scale_name(arch: Arch, st: &Store, c0: usize) -> String {
    let s = match (arch, c0) {
        (_, 16) => "n",
        (_, 32) => "s",
        (Arch::V8, 48) => "m",
        (Arch::V8, 64) => "l",
        (Arch::V8, 80) => "x",
        (Arch::V11, 64) => {
            if st.count_children("model.2.m") >= 2 {
                "l"
            } else {
                "m"
            }
        }
        (Arch::V11, 96) => "x",
        _ => "custom",
    };
    s.to_string()
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
        let spec = match arch {
            Arch::V8 => V8,
            Arch::V11 => V11,
        };
        let mut nodes = Vec::with_capacity(spec.len());
        let mut chans: Vec<usize> = Vec::with_capacity(spec.len());
        for (i, (from, kind)) in spec.iter().enumerate() {
            // node 0 reads the image (no producing node)
            let from: Vec<usize> = if i == 0 {
                vec![]
            } else {
                from.iter()
                    .map(|&f| if f < 0 { i - 1 } else { f as usize })
                    .collect()
            };
            let cin = if i == 0 { 3 } else { chans[from[0]] };
            let name = match kind {
                Kind::Conv => "Conv",
                Kind::C2f(_) if arch == Arch::V8 => "C2f",
                Kind::C2f(_) => "C3k2",
                Kind::Sppf => "SPPF",
                Kind::C2psa => "C2PSA",
                Kind::Up => "Upsample",
                Kind::Cat => "Concat",
                Kind::Head if task == Task::Pose => "the Pose head",
                Kind::Head => "the Detect head",
            };
            let vb = root
                .pp(i)
                .with_what(format!("layer {i} ({name}) of the {arch:?} {task} model"));
            let (layer, cout) = match kind {
                Kind::Conv => {
                    let c = ConvBn::load(&vb, cin, 2, true)?;
                    let co = c.cout;
                    (Layer::Conv(c), co)
                }
                Kind::C2f(sc) => {
                    let c = C2f::load(&vb, cin, *sc)?;
                    let co = c.cv2.cout;
                    (Layer::C2f(c), co)
                }
                Kind::Sppf => {
                    let c = Sppf::load(&vb, cin)?;
                    let co = c.cv2.cout;
                    (Layer::Sppf(c), co)
                }
                Kind::C2psa => {
                    let c = C2psa::load(&vb, cin)?;
                    let co = c.cv2.cout;
                    (Layer::C2psa(c), co)
                }
                Kind::Up => (Layer::Upsample, cin),
                Kind::Cat => (Layer::Concat, from.iter().map(|&f| chans[f]).sum()),
                Kind::Head => {
                    let chs: Vec<usize> = from.iter().map(|&f| chans[f]).collect();
                    let vb = vb.with_what(name.into());
                    let pose = task == Task::Pose;
                    let hd = Head::load(&vb, &chs, arch == Arch::V11, pose, engine.layer_profile)?;
                    let co = hd.rows();
                    (Layer::Head(hd), co)
                }
            };
            chans.push(cout);
            nodes.push(Node { from, layer });
        }
        let mut last_use: Vec<usize> = (0..nodes.len()).collect();
        let mut readers = vec![0usize; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for &f in &n.from {
                last_use[f] = last_use[f].max(i);
                readers[f] += 1;
            }
        }
        // HAVEN's path: an upsampling whose only reader is a two-map concatenation is done by the
        // concatenation, straight into its buffer; its input lives until then.
        let up_in_concat: Vec<bool> = (0..nodes.len())
            .map(|i| {
                matches!(ops, Ops::Haven(_))
                    && matches!(nodes[i].layer, Layer::Upsample)
                    && readers[i] == 1
                    && matches!(nodes[last_use[i]].layer, Layer::Concat)
                    && nodes[last_use[i]].from.len() == 2
            })
            .collect();
        for i in 0..nodes.len() {
            if up_in_concat[i] {
                let src = nodes[i].from[0];
                last_use[src] = last_use[src].max(last_use[i]);
            }
        }
        let c0 = match &nodes[0].layer {
            Layer::Conv(c) => c.cout,
            _ => 0,
        };
        let scale = scale_name(arch, st, c0);
        Ok(Self {
            nodes,
            last_use,
            up_in_concat,
            arch,
            task,
            scale,
            device,
            ops,
            profile: engine.layer_profile,
        })
    }

    pub fn head(&self) -> &Head {
        match &self.nodes.last().unwrap().layer {
            Layer::Head(h) => h,
            _ => unreachable!(),
        }
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

    fn forward_here(&self, input: &Tensor) -> CResult<Tensor> {
        let (_, _, h, _) = input.dims4()?;
        let haven = matches!(self.ops, Ops::Haven(_));
        let mut outs: Vec<Option<Tensor>> = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let t0 = std::time::Instant::now();
            let x0 = if i == 0 {
                input
            } else {
                let f = node.from[0];
                let f = if self.up_in_concat[f] {
                    self.nodes[f].from[0]
                } else {
                    f
                };
                outs[f].as_ref().expect("freed too early")
            };
            let y = match &node.layer {
                Layer::Conv(c) => c.forward(x0)?,
                Layer::C2f(b) => b.forward(x0)?,
                Layer::Sppf(b) => b.forward(x0)?,
                Layer::C2psa(b) => b.forward(x0)?,
                // done by the concatenation that reads it
                Layer::Upsample if self.up_in_concat[i] => {
                    outs.push(None);
                    continue;
                }
                Layer::Upsample => {
                    let (_, _, xh, xw) = x0.dims4()?;
                    x0.upsample_nearest2d(2 * xh, 2 * xw)?
                }
                Layer::Concat if haven && node.from.len() == 2 => {
                    let part = |f: usize| {
                        let up = self.up_in_concat[f];
                        let src = if up { self.nodes[f].from[0] } else { f };
                        (outs[src].as_ref().expect("freed too early"), up)
                    };
                    let ((a, ua), (b, ub)) = (part(node.from[0]), part(node.from[1]));
                    a.apply_op2_no_bwd(b, &crate::fused::CatOp { up: [ua, ub] })?
                }
                Layer::Concat => {
                    let parts: Vec<&Tensor> = node
                        .from
                        .iter()
                        .map(|&f| outs[f].as_ref().unwrap())
                        .collect();
                    Tensor::cat(&parts, 1)?
                }
                Layer::Head(hd) => {
                    let xs: Vec<Tensor> = node
                        .from
                        .iter()
                        .map(|&f| outs[f].clone().unwrap())
                        .collect();
                    let s = |x: &Tensor| x.dim(2).map(|xh| (h / xh) as f32);
                    let r = hd.forward(&xs, [s(&xs[0])?, s(&xs[1])?, s(&xs[2])?])?;
                    if self.profile {
                        eprintln!(
                            "layer {i:2} Head      {:7.2} ms",
                            t0.elapsed().as_secs_f64() * 1e3
                        );
                    }
                    drop(xs);
                    if haven {
                        outs.iter().flatten().for_each(crate::fused::reclaim);
                    }
                    return Ok(r);
                }
            };
            if self.profile {
                let name = match &node.layer {
                    Layer::Conv(_) => "Conv",
                    Layer::C2f(_) => "C2f/C3k2",
                    Layer::Sppf(_) => "SPPF",
                    Layer::C2psa(_) => "C2PSA",
                    Layer::Upsample => "Upsample",
                    Layer::Concat => "Concat",
                    Layer::Head(_) => "Head",
                };
                eprintln!(
                    "layer {i:2} {name:9} {:7.2} ms  -> {:?}",
                    t0.elapsed().as_secs_f64() * 1e3,
                    y.dims()
                );
            }
            outs.push(Some(y));
            // free what no later node reads (HAVEN's path: its memory back to the buffer pool)
            for (j, out) in outs.iter_mut().enumerate().take(i) {
                if self.last_use[j] <= i {
                    if let Some(t) = out.take() {
                        if haven {
                            crate::fused::reclaim(&t);
                        }
                    }
                }
            }
        }
        unreachable!("the last layer is the head")
    }
}
