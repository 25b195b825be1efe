//! The YOLOv8-pose and YOLO11-pose networks, built from an Ultralytics state dict (`model.N.…`).
//!
//! Channel counts, kernel sizes, repeat counts and the C3k/Bottleneck choice are read from the tensor
//! shapes and names; strides, shortcuts and the layer wiring follow the reference yaml files
//! (`yolov8-pose.yaml`, `yolo11-pose.yaml`), identical for every width/depth scale.

use rayon::prelude::*;

use crate::kernels::conv::Conv;
use crate::kernels::elementwise as ops;
use crate::kernels::gemm::{self, Kernel};
use crate::kernels::pool::PBuf;
use crate::kernels::pooling;
use crate::store::Store;
use crate::EngineOptions;
use crate::{Arch, PoseError};

/// A feature map, CHW, batch 1.
pub(crate) struct Fm {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub d: PBuf,
}

impl Fm {
    fn hw(&self) -> usize {
        self.h * self.w
    }
}

struct Ctx<'a> {
    st: &'a Store,
    eps: f32,
    /// the engine switches, fixed at load time
    engine: &'a EngineOptions,
}

impl Ctx<'_> {
    /// An Ultralytics `Conv` (Conv2d without bias + BatchNorm2d + SiLU) at `p`, BN folded.
    fn conv(
        &self,
        p: &str,
        cin: usize,
        stride: usize,
        act: bool,
        what: &str,
    ) -> Result<Conv, PoseError> {
        let wname = format!("{p}.conv.weight");
        let wt = self
            .st
            .get_shaped(&wname, what, &[None, None, None, None])?;
        let (cout, cpg, k, k2) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3]);
        let groups = if cpg == cin {
            1
        } else if cpg == 1 && cout == cin {
            cin
        } else {
            return Err(self.bad_shape(
                &wname,
                &wt.shape,
                &format!("[_, {cin}, k, k] or depthwise [{cin}, 1, k, k]"),
            ));
        };
        if k != k2 || k % 2 == 0 {
            return Err(self.bad_shape(&wname, &wt.shape, "a square odd kernel"));
        }
        let shape1 = [Some(cout)];
        let g = &self
            .st
            .get_shaped(&format!("{p}.bn.weight"), what, &shape1)?
            .data;
        let b = &self
            .st
            .get_shaped(&format!("{p}.bn.bias"), what, &shape1)?
            .data;
        let m = &self
            .st
            .get_shaped(&format!("{p}.bn.running_mean"), what, &shape1)?
            .data;
        let v = &self
            .st
            .get_shaped(&format!("{p}.bn.running_var"), what, &shape1)?
            .data;
        let per = cpg * k * k;
        let mut w = wt.data.clone();
        let mut bias = vec![0f32; cout];
        for o in 0..cout {
            let s = g[o] / (v[o] + self.eps).sqrt();
            for x in &mut w[o * per..(o + 1) * per] {
                *x *= s;
            }
            bias[o] = b[o] - m[o] * s;
        }
        Ok(Conv::new(
            cin,
            cout,
            k,
            stride,
            groups,
            w,
            bias,
            act,
            self.engine.kernels,
        ))
    }

    /// A plain `nn.Conv2d` with bias at `p` (the head's last 1x1 convolutions).
    fn conv2d(&self, p: &str, cin: usize, what: &str) -> Result<Conv, PoseError> {
        let wname = format!("{p}.weight");
        let wt = self
            .st
            .get_shaped(&wname, what, &[None, Some(cin), None, None])?;
        let (cout, k) = (wt.shape[0], wt.shape[2]);
        let b = match self.st.tensors.get(&format!("{p}.bias")) {
            Some(_) => self
                .st
                .get_shaped(&format!("{p}.bias"), what, &[Some(cout)])?
                .data
                .clone(),
            None => vec![0.0; cout],
        };
        Ok(Conv::new(
            cin,
            cout,
            k,
            1,
            1,
            wt.data.clone(),
            b,
            false,
            self.engine.kernels,
        ))
    }

    fn bad_shape(&self, name: &str, got: &[usize], expected: &str) -> PoseError {
        PoseError::BadShape {
            path: self.st.path.clone(),
            name: name.to_string(),
            got: got.to_vec(),
            expected: expected.to_string(),
        }
    }

    fn require(&self, name: &str, what: &str) -> Result<(), PoseError> {
        self.st.get(name, what).map(|_| ())
    }
}

struct Bottleneck {
    cv1: Conv,
    cv2: Conv,
    add: bool,
}

impl Bottleneck {
    fn load(cx: &Ctx, p: &str, c: usize, shortcut: bool, what: &str) -> Result<Self, PoseError> {
        let cv1 = cx.conv(&format!("{p}.cv1"), c, 1, true, what)?;
        let cv2 = cx.conv(&format!("{p}.cv2"), cv1.cout, 1, true, what)?;
        let add = shortcut && cv2.cout == c;
        Ok(Self { cv1, cv2, add })
    }
    fn forward_into(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let t = self.cv1.forward(x, h, w);
        self.cv2.forward_into(&t, h, w, out);
        if self.add {
            ops::add_assign(out, x);
        }
    }
}

/// `C3k` (a C3 with k x k bottlenecks), used inside YOLO11's C3k2 when c3k=True.
struct C3k {
    cv1: Conv,
    cv2: Conv,
    cv3: Conv,
    m: Vec<Bottleneck>,
}

impl C3k {
    fn load(cx: &Ctx, p: &str, c1: usize, what: &str) -> Result<Self, PoseError> {
        let cv1 = cx.conv(&format!("{p}.cv1"), c1, 1, true, what)?;
        let cv2 = cx.conv(&format!("{p}.cv2"), c1, 1, true, what)?;
        let n = cx.st.count_children(&format!("{p}.m"));
        if n == 0 {
            cx.require(&format!("{p}.m.0.cv1.conv.weight"), what)?;
        }
        let m = (0..n)
            .map(|i| Bottleneck::load(cx, &format!("{p}.m.{i}"), cv1.cout, true, what))
            .collect::<Result<Vec<_>, _>>()?;
        let cv3 = cx.conv(&format!("{p}.cv3"), cv1.cout + cv2.cout, 1, true, what)?;
        Ok(Self { cv1, cv2, cv3, m })
    }
    fn forward_into(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let hw = h * w;
        let c_ = self.cv1.cout;
        let mut z = PBuf::new((c_ + self.cv2.cout) * hw);
        {
            let (za, zb) = z.split_at_mut(c_ * hw);
            let mut a = self.cv1.forward(x, h, w);
            let nm = self.m.len();
            for (i, b) in self.m.iter().enumerate() {
                if i + 1 == nm {
                    b.forward_into(&a, h, w, za);
                } else {
                    let mut t = PBuf::new(c_ * hw);
                    b.forward_into(&a, h, w, &mut t);
                    a = t;
                }
            }
            if nm == 0 {
                za.copy_from_slice(&a);
            }
            self.cv2.forward_into(x, h, w, zb);
        }
        self.cv3.forward_into(&z, h, w, out);
    }
}

enum Inner {
    Bottleneck(Bottleneck),
    C3k(C3k),
}

/// `C2f` (YOLOv8) and `C3k2` (YOLO11, a C2f whose inner blocks are Bottleneck or C3k).
struct C2f {
    cv1: Conv,
    cv2: Conv,
    c: usize,
    m: Vec<Inner>,
}

impl C2f {
    fn load(cx: &Ctx, p: &str, c1: usize, shortcut: bool, what: &str) -> Result<Self, PoseError> {
        let cv1 = cx.conv(&format!("{p}.cv1"), c1, 1, true, what)?;
        if cv1.cout % 2 != 0 {
            return Err(cx.bad_shape(
                &format!("{p}.cv1.conv.weight"),
                &[cv1.cout],
                "an even number of output channels",
            ));
        }
        let c = cv1.cout / 2;
        let n = cx.st.count_children(&format!("{p}.m"));
        if n == 0 {
            cx.require(&format!("{p}.m.0.cv1.conv.weight"), what)?;
        }
        let mut m = Vec::with_capacity(n);
        for i in 0..n {
            let q = format!("{p}.m.{i}");
            if cx.st.has_prefix(&format!("{q}.cv3.")) || cx.st.has_prefix(&format!("{q}.m.")) {
                let b = C3k::load(cx, &q, c, what)?;
                if b.cv3.cout != c {
                    return Err(cx.bad_shape(
                        &format!("{q}.cv3.conv.weight"),
                        &[b.cv3.cout],
                        &format!("{c} outputs"),
                    ));
                }
                m.push(Inner::C3k(b));
            } else {
                let b = Bottleneck::load(cx, &q, c, shortcut, what)?;
                if b.cv2.cout != c {
                    return Err(cx.bad_shape(
                        &format!("{q}.cv2.conv.weight"),
                        &[b.cv2.cout],
                        &format!("{c} outputs"),
                    ));
                }
                m.push(Inner::Bottleneck(b));
            }
        }
        let cv2 = cx.conv(&format!("{p}.cv2"), (2 + n) * c, 1, true, what)?;
        Ok(Self { cv1, cv2, c, m })
    }
    fn forward(&self, x: &Fm) -> Fm {
        let (h, w) = (x.h, x.w);
        let hw = h * w;
        let c = self.c;
        let mut y = PBuf::new((2 + self.m.len()) * c * hw);
        self.cv1.forward_into(&x.d, h, w, &mut y[..2 * c * hw]);
        for (i, m) in self.m.iter().enumerate() {
            let (prev, next) = y.split_at_mut((2 + i) * c * hw);
            let inp = &prev[(1 + i) * c * hw..];
            let out = &mut next[..c * hw];
            match m {
                Inner::Bottleneck(b) => b.forward_into(inp, h, w, out),
                Inner::C3k(b) => b.forward_into(inp, h, w, out),
            }
        }
        let d = self.cv2.forward(&y, h, w);
        Fm {
            c: self.cv2.cout,
            h,
            w,
            d,
        }
    }
}

struct Sppf {
    cv1: Conv,
    cv2: Conv,
    k: usize,
}

impl Sppf {
    fn load(cx: &Ctx, p: &str, c1: usize, what: &str) -> Result<Self, PoseError> {
        let cv1 = cx.conv(&format!("{p}.cv1"), c1, 1, true, what)?;
        let cv2 = cx.conv(&format!("{p}.cv2"), 4 * cv1.cout, 1, true, what)?;
        Ok(Self { cv1, cv2, k: 5 })
    }
    fn forward(&self, x: &Fm) -> Fm {
        let (h, w) = (x.h, x.w);
        let n = self.cv1.cout * h * w;
        let mut z = PBuf::new(4 * n);
        self.cv1.forward_into(&x.d, h, w, &mut z[..n]);
        for i in 0..3 {
            let (a, b) = z.split_at_mut((i + 1) * n);
            pooling::maxpool_same(&a[i * n..], h, w, self.k, &mut b[..n]);
        }
        Fm {
            c: self.cv2.cout,
            h,
            w,
            d: self.cv2.forward(&z, h, w),
        }
    }
}

/// YOLO11 `Attention` (multi-head self-attention over the H*W positions, with a depthwise positional conv).
struct Attention {
    qkv: Conv,
    proj: Conv,
    pe: Conv,
    nh: usize,
    kd: usize,
    hd: usize,
    /// the GEMM micro-kernel of the attention products
    kernel: Kernel,
}

impl Attention {
    fn load(cx: &Ctx, p: &str, dim: usize, what: &str) -> Result<Self, PoseError> {
        // Ultralytics: PSABlock(c, attn_ratio=0.5, num_heads=c // 64)
        let nh = (dim / 64).max(1);
        let hd = dim / nh;
        let kd = hd / 2;
        let qkv = cx.conv(&format!("{p}.qkv"), dim, 1, false, what)?;
        if qkv.cout != nh * (2 * kd + hd) {
            return Err(cx.bad_shape(
                &format!("{p}.qkv.conv.weight"),
                &[qkv.cout, dim],
                &format!(
                    "[{}, {dim}, 1, 1] ({nh} heads, key dim {kd}, head dim {hd})",
                    nh * (2 * kd + hd)
                ),
            ));
        }
        let proj = cx.conv(&format!("{p}.proj"), dim, 1, false, what)?;
        let pe = cx.conv(&format!("{p}.pe"), dim, 1, false, what)?;
        Ok(Self {
            qkv,
            proj,
            pe,
            nh,
            kd,
            hd,
            kernel: Kernel::select(cx.engine.kernels.wide_kernel),
        })
    }

    fn forward(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let n = h * w;
        let dim = self.nh * self.hd;
        let qkv = self.qkv.forward(x, h, w);
        let per = 2 * self.kd + self.hd;
        let mut v = PBuf::new(dim * n);
        for hh in 0..self.nh {
            let src = &qkv[(hh * per + 2 * self.kd) * n..(hh * per + per) * n];
            v[hh * self.hd * n..(hh + 1) * self.hd * n].copy_from_slice(src);
        }
        let mut xo = self.pe.forward(&v, h, w);
        let scale = (self.kd as f32).powf(-0.5);
        let (kd, hd) = (self.kd, self.hd);
        // the heads side by side (each one's GEMMs are small enough to leave threads idle)
        xo.par_chunks_mut(hd * n)
            .enumerate()
            .for_each(|(hh, xo_h)| {
                let mut attn_t = PBuf::new(n * n); // attn_t[j][i] = attention of query i to key j
                let mut kt = PBuf::new(n * kd);
                let mut o = PBuf::new(hd * n);
                let q = &qkv[hh * per * n..(hh * per + kd) * n];
                let k = &qkv[(hh * per + kd) * n..(hh * per + 2 * kd) * n];
                for d in 0..kd {
                    for (j, v) in k[d * n..(d + 1) * n].iter().enumerate() {
                        kt[j * kd + d] = *v;
                    }
                }
                // attn_t = k^T q  [n x n]
                gemm::matmul(n, n, kd, &kt, kd, q, n, &mut attn_t, n, self.kernel);
                ops::softmax_cols(&mut attn_t, n, n, scale);
                // o = v attn_t  [hd x n]
                let vh = &v[hh * hd * n..(hh + 1) * hd * n];
                gemm::matmul(hd, n, n, vh, n, &attn_t, n, &mut o, n, self.kernel);
                for (d, s) in xo_h.iter_mut().zip(o.iter()) {
                    *d += *s;
                }
            });
        self.proj.forward(&xo, h, w)
    }
}

struct PsaBlock {
    attn: Attention,
    ffn0: Conv,
    ffn1: Conv,
}

impl PsaBlock {
    fn forward_inplace(&self, x: &mut [f32], h: usize, w: usize) {
        let a = self.attn.forward(x, h, w);
        ops::add_assign(x, &a);
        let t = self.ffn0.forward(x, h, w);
        let f = self.ffn1.forward(&t, h, w);
        ops::add_assign(x, &f);
    }
}

struct C2psa {
    cv1: Conv,
    cv2: Conv,
    c: usize,
    m: Vec<PsaBlock>,
}

impl C2psa {
    fn load(cx: &Ctx, p: &str, c1: usize, what: &str) -> Result<Self, PoseError> {
        let cv1 = cx.conv(&format!("{p}.cv1"), c1, 1, true, what)?;
        let c = cv1.cout / 2;
        let n = cx.st.count_children(&format!("{p}.m"));
        if n == 0 {
            cx.require(&format!("{p}.m.0.attn.qkv.conv.weight"), what)?;
        }
        let mut m = Vec::new();
        for i in 0..n {
            let q = format!("{p}.m.{i}");
            let attn = Attention::load(cx, &format!("{q}.attn"), c, what)?;
            let ffn0 = cx.conv(&format!("{q}.ffn.0"), c, 1, true, what)?;
            let ffn1 = cx.conv(&format!("{q}.ffn.1"), ffn0.cout, 1, false, what)?;
            m.push(PsaBlock { attn, ffn0, ffn1 });
        }
        let cv2 = cx.conv(&format!("{p}.cv2"), 2 * c, 1, true, what)?;
        Ok(Self { cv1, cv2, c, m })
    }
    fn forward(&self, x: &Fm) -> Fm {
        let (h, w) = (x.h, x.w);
        let mut y = self.cv1.forward(&x.d, h, w);
        let b = &mut y[self.c * h * w..];
        for blk in &self.m {
            blk.forward_inplace(b, h, w);
        }
        Fm {
            c: self.cv2.cout,
            h,
            w,
            d: self.cv2.forward(&y, h, w),
        }
    }
}

/// The `Pose` head (Detect + keypoints): DFL box regression, class scores, 17x3 keypoints.
pub(crate) struct PoseHead {
    /// per level: box and keypoint branches' first convolutions merged (if compatible)
    first: Vec<Option<Conv>>,
    boxes: Vec<Vec<Conv>>,
    cls: Vec<Vec<Conv>>,
    kpt: Vec<Vec<Conv>>,
    pub nc: usize,
    pub nk: usize,
    reg_max: usize,
    dfl: Vec<f32>,
    profile: bool,
}

fn chain(convs: &[Conv], x: &[f32], h: usize, w: usize) -> PBuf {
    let mut cur: Option<PBuf> = None;
    for c in convs {
        let inp = cur.as_deref().unwrap_or(x);
        cur = Some(c.forward(inp, h, w));
    }
    cur.unwrap()
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

impl PoseHead {
    fn load(cx: &Ctx, p: &str, chs: &[usize], v11: bool) -> Result<Self, PoseError> {
        let what = "the Pose head";
        let mut boxes = Vec::new();
        let mut cls = Vec::new();
        let mut kpt = Vec::new();
        for (i, &ch) in chs.iter().enumerate() {
            let a = cx.conv(&format!("{p}.cv2.{i}.0"), ch, 1, true, what)?;
            let b = cx.conv(&format!("{p}.cv2.{i}.1"), a.cout, 1, true, what)?;
            let c = cx.conv2d(&format!("{p}.cv2.{i}.2"), b.cout, what)?;
            boxes.push(vec![a, b, c]);
            if v11 {
                let a = cx.conv(&format!("{p}.cv3.{i}.0.0"), ch, 1, true, what)?;
                let b = cx.conv(&format!("{p}.cv3.{i}.0.1"), a.cout, 1, true, what)?;
                let c = cx.conv(&format!("{p}.cv3.{i}.1.0"), b.cout, 1, true, what)?;
                let d = cx.conv(&format!("{p}.cv3.{i}.1.1"), c.cout, 1, true, what)?;
                let e = cx.conv2d(&format!("{p}.cv3.{i}.2"), d.cout, what)?;
                cls.push(vec![a, b, c, d, e]);
            } else {
                let a = cx.conv(&format!("{p}.cv3.{i}.0"), ch, 1, true, what)?;
                let b = cx.conv(&format!("{p}.cv3.{i}.1"), a.cout, 1, true, what)?;
                let c = cx.conv2d(&format!("{p}.cv3.{i}.2"), b.cout, what)?;
                cls.push(vec![a, b, c]);
            }
            let a = cx.conv(&format!("{p}.cv4.{i}.0"), ch, 1, true, what)?;
            let b = cx.conv(&format!("{p}.cv4.{i}.1"), a.cout, 1, true, what)?;
            let c = cx.conv2d(&format!("{p}.cv4.{i}.2"), b.cout, what)?;
            kpt.push(vec![a, b, c]);
        }
        let nbox = boxes[0][2].cout;
        let nc = cls[0].last().unwrap().cout;
        let nk = kpt[0][2].cout;
        if nbox % 4 != 0 || nk % 3 != 0 {
            return Err(cx.bad_shape(
                &format!("{p}.cv2.0.2.weight"),
                &[nbox],
                "4*reg_max outputs and 3*K keypoint outputs",
            ));
        }
        for i in 1..chs.len() {
            if boxes[i][2].cout != nbox || cls[i].last().unwrap().cout != nc || kpt[i][2].cout != nk
            {
                return Err(cx.bad_shape(
                    &format!("{p}.cv2.{i}.2.weight"),
                    &[boxes[i][2].cout],
                    "the same outputs as level 0",
                ));
            }
        }
        let reg_max = nbox / 4;
        let dfl = match cx.st.tensors.get(&format!("{p}.dfl.conv.weight")) {
            Some(t) if t.data.len() == reg_max => t.data.clone(),
            _ => (0..reg_max).map(|i| i as f32).collect(),
        };
        let profile = cx.engine.layer_profile;
        let first = boxes
            .iter()
            .zip(&kpt)
            .map(|(b, k)| merge_convs(&b[0], &k[0]))
            .collect();
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

    /// Raw output [4 + nc + nk, N] like ONNX `output0`.
    fn forward(&self, xs: &[&Fm], strides: &[f32]) -> (PBuf, usize) {
        let ntot: usize = xs.iter().map(|x| x.hw()).sum();
        let rows = self.rows();
        let mut out = PBuf::new(rows * ntot);
        let mut off = 0;
        // The three levels' box, keypoint and class branches are independent chains of convolutions:
        // run them side by side, so that the small maps' convolutions (too small to split well over
        // the threads on their own) fill each other's gaps.
        let branches: Vec<(PBuf, PBuf, PBuf, f64)> = xs
            .par_iter()
            .enumerate()
            .map(|(lvl, x)| {
                let t0 = std::time::Instant::now();
                let hw = x.hw();
                let ((bx, kp), cl) = rayon::join(
                    || match &self.first[lvl] {
                        Some(f) => {
                            let y = f.forward(&x.d, x.h, x.w);
                            let nb = self.boxes[lvl][0].cout * hw;
                            rayon::join(
                                || chain(&self.boxes[lvl][1..], &y[..nb], x.h, x.w),
                                || chain(&self.kpt[lvl][1..], &y[nb..], x.h, x.w),
                            )
                        }
                        None => rayon::join(
                            || chain(&self.boxes[lvl], &x.d, x.h, x.w),
                            || chain(&self.kpt[lvl], &x.d, x.h, x.w),
                        ),
                    },
                    || chain(&self.cls[lvl], &x.d, x.h, x.w),
                );
                (bx, kp, cl, t0.elapsed().as_secs_f64())
            })
            .collect();
        for (lvl, (x, (bx, kp, cl, conv_s))) in xs.iter().zip(branches).enumerate() {
            let hw = x.hw();
            let stride = strides[lvl];
            let t1 = std::time::Instant::now();
            let rm = self.reg_max;
            // DFL: softmax over the reg_max bins of each side, expectation with the bin values.
            let mut dist = PBuf::new(4 * hw);
            dist.par_chunks_mut(hw)
                .enumerate()
                .for_each(|(side, drow)| {
                    let bins = &bx[side * rm * hw..(side + 1) * rm * hw];
                    let mut m = bins[..hw].to_vec();
                    for b in 1..rm {
                        for (mv, v) in m.iter_mut().zip(&bins[b * hw..(b + 1) * hw]) {
                            *mv = mv.max(*v);
                        }
                    }
                    let mut s = vec![0f32; hw];
                    drow.fill(0.0);
                    let mut e = vec![0f32; hw];
                    for b in 0..rm {
                        for ((ev, v), mv) in e.iter_mut().zip(&bins[b * hw..(b + 1) * hw]).zip(&m) {
                            *ev = *v - *mv;
                        }
                        ops::exp_inplace(&mut e);
                        let wb = self.dfl[b];
                        for ((sv, dv), ev) in s.iter_mut().zip(drow.iter_mut()).zip(&e) {
                            *sv += *ev;
                            *dv += *ev * wb;
                        }
                    }
                    for (dv, sv) in drow.iter_mut().zip(&s) {
                        *dv /= *sv;
                    }
                });
            // anchor centres (x + 0.5, y + 0.5) in grid units
            let ax: Vec<f32> = (0..hw).map(|a| (a % x.w) as f32).collect();
            let ay: Vec<f32> = (0..hw).map(|a| (a / x.w) as f32).collect();
            {
                let (l, rest) = dist.split_at(hw);
                let (t, rest) = rest.split_at(hw);
                let (r, b) = rest.split_at(hw);
                let (o0, rest) = out.split_at_mut(ntot);
                let (o1, rest) = rest.split_at_mut(ntot);
                let (o2, o3) = rest.split_at_mut(ntot);
                let o3 = &mut o3[..ntot];
                for i in 0..hw {
                    let (cx, cy) = (ax[i] + 0.5, ay[i] + 0.5);
                    let (x1, y1, x2, y2) = (cx - l[i], cy - t[i], cx + r[i], cy + b[i]);
                    o0[off + i] = (x1 + x2) * 0.5 * stride;
                    o1[off + i] = (y1 + y2) * 0.5 * stride;
                    o2[off + i] = (x2 - x1) * stride;
                    o3[off + i] = (y2 - y1) * stride;
                }
            }
            for c in 0..self.nc {
                let dst = &mut out[(4 + c) * ntot + off..(4 + c) * ntot + off + hw];
                ops::sigmoid_into(dst, &cl[c * hw..(c + 1) * hw]);
            }
            let kbase = 4 + self.nc;
            for j in 0..self.nk {
                let dst = &mut out[(kbase + j) * ntot + off..(kbase + j) * ntot + off + hw];
                let src = &kp[j * hw..(j + 1) * hw];
                match j % 3 {
                    0 => {
                        for ((d, s), g) in dst.iter_mut().zip(src).zip(&ax) {
                            *d = (s * 2.0 + g) * stride;
                        }
                    }
                    1 => {
                        for ((d, s), g) in dst.iter_mut().zip(src).zip(&ay) {
                            *d = (s * 2.0 + g) * stride;
                        }
                    }
                    _ => ops::sigmoid_into(dst, src),
                }
            }
            if self.profile {
                eprintln!(
                    "  head level {lvl}: convs {:.2} ms (side by side with the other levels), decode {:.2} ms",
                    conv_s * 1e3,
                    t1.elapsed().as_secs_f64() * 1e3
                );
            }
            off += hw;
        }
        (out, ntot)
    }
}

enum Layer {
    Conv(Conv),
    C2f(C2f),
    Sppf(Sppf),
    C2psa(C2psa),
    Upsample,
    Concat,
    Pose(PoseHead),
}

struct Node {
    from: Vec<usize>,
    layer: Layer,
}

pub(crate) struct Net {
    nodes: Vec<Node>,
    /// index of the last node that reads each node's output
    last_use: Vec<usize>,
    /// upsamplings done by the concatenation that reads them
    up_in_concat: Vec<bool>,
    pub arch: Arch,
    pub scale: String,
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
    Pose,
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
    (&[15, 18, 21], Kind::Pose),
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
    (&[16, 19, 22], Kind::Pose),
];

pub(crate) fn detect_arch(st: &Store) -> Result<Arch, PoseError> {
    let v11 = st.has_prefix("model.23.cv4.") || st.has_prefix("model.10.m.0.attn.");
    let v8 = st.has_prefix("model.22.cv4.") && !st.has_prefix("model.23.");
    match (v11, v8) {
        (true, _) => Ok(Arch::V11),
        (false, true) => Ok(Arch::V8),
        _ => {
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
                    "no pose head found: expected `model.22.cv4.*` (YOLOv8-pose) or `model.23.cv4.*` (YOLO11-pose){}",
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
    pub fn load(st: &Store, engine: &EngineOptions) -> Result<Self, PoseError> {
        let arch = detect_arch(st)?;
        let eps = st
            .metadata
            .get("bn_eps")
            .and_then(|s| s.parse::<f32>().ok())
            .unwrap_or(1e-3);
        let cx = Ctx { st, eps, engine };
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
            let p = format!("model.{i}");
            let what = |name: &str| format!("layer {i} ({name}) of the {arch:?} pose model");
            let (layer, cout) = match kind {
                Kind::Conv => {
                    let c = cx.conv(&p, cin, 2, true, &what("Conv"))?;
                    let co = c.cout;
                    (Layer::Conv(c), co)
                }
                Kind::C2f(sc) => {
                    let name = if arch == Arch::V8 { "C2f" } else { "C3k2" };
                    let c = C2f::load(&cx, &p, cin, *sc, &what(name))?;
                    let co = c.cv2.cout;
                    (Layer::C2f(c), co)
                }
                Kind::Sppf => {
                    let c = Sppf::load(&cx, &p, cin, &what("SPPF"))?;
                    let co = c.cv2.cout;
                    (Layer::Sppf(c), co)
                }
                Kind::C2psa => {
                    let c = C2psa::load(&cx, &p, cin, &what("C2PSA"))?;
                    let co = c.cv2.cout;
                    (Layer::C2psa(c), co)
                }
                Kind::Up => (Layer::Upsample, cin),
                Kind::Cat => (Layer::Concat, from.iter().map(|&f| chans[f]).sum()),
                Kind::Pose => {
                    let chs: Vec<usize> = from.iter().map(|&f| chans[f]).collect();
                    let hd = PoseHead::load(&cx, &p, &chs, arch == Arch::V11)?;
                    let co = hd.rows();
                    (Layer::Pose(hd), co)
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
        // An upsampling whose only reader is a concatenation is done by the concatenation, straight
        // into its buffer (no upsampled map of its own, no copy of it): its input lives until then.
        let up_in_concat: Vec<bool> = (0..nodes.len())
            .map(|i| {
                matches!(nodes[i].layer, Layer::Upsample)
                    && readers[i] == 1
                    && matches!(nodes[last_use[i]].layer, Layer::Concat)
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
        let profile = engine.layer_profile;
        Ok(Self {
            nodes,
            last_use,
            up_in_concat,
            arch,
            scale,
            profile,
        })
    }

    pub fn head(&self) -> &PoseHead {
        match &self.nodes.last().unwrap().layer {
            Layer::Pose(h) => h,
            _ => unreachable!(),
        }
    }

    /// Runs the network on one CHW image (3 x h x w, RGB in [0,1]); returns ([rows, N], N).
    ///
    /// When no other pass is running, this one runs on a rayon worker (the caller, e.g. a camera
    /// thread, waits): its ~200 parallel sections then start where they are, instead of each being
    /// handed from the caller to the pool and back (1 thread, 640x640: 88 -> 82 ms per frame).
    /// Passes that overlap it run from their callers as before: two passes as pool jobs would nest
    /// (a worker waiting inside one takes up the next whole pass), and with six cameras on two cores
    /// one camera's inference then took 4 s instead of 0.3.
    pub fn forward(&self, img: PBuf, h: usize, w: usize) -> (PBuf, usize) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        if rayon::current_thread_index().is_some() {
            return self.forward_here(img, h, w);
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
            rayon::scope(|_| self.forward_here(img, h, w))
        } else {
            self.forward_here(img, h, w)
        }
    }

    fn forward_here(&self, img: PBuf, h: usize, w: usize) -> (PBuf, usize) {
        let mut outs: Vec<Option<Fm>> = Vec::with_capacity(self.nodes.len());
        let input = Fm { c: 3, h, w, d: img };
        for (i, node) in self.nodes.iter().enumerate() {
            let t0 = std::time::Instant::now();
            let x0 = if i == 0 {
                &input
            } else {
                outs[node.from[0]].as_ref().expect("freed too early")
            };
            let y = match &node.layer {
                Layer::Conv(c) => {
                    let (oh, ow) = c.out_hw(x0.h, x0.w);
                    Fm {
                        c: c.cout,
                        h: oh,
                        w: ow,
                        d: c.forward(&x0.d, x0.h, x0.w),
                    }
                }
                Layer::C2f(b) => b.forward(x0),
                Layer::Sppf(b) => b.forward(x0),
                Layer::C2psa(b) => b.forward(x0),
                Layer::Upsample if self.up_in_concat[i] => Fm {
                    c: x0.c,
                    h: 2 * x0.h,
                    w: 2 * x0.w,
                    d: PBuf::new(0),
                },
                Layer::Upsample => {
                    let mut d = PBuf::new(x0.c * 4 * x0.hw());
                    pooling::upsample2x(&x0.d, x0.h, x0.w, &mut d);
                    Fm {
                        c: x0.c,
                        h: 2 * x0.h,
                        w: 2 * x0.w,
                        d,
                    }
                }
                Layer::Concat => {
                    let parts: Vec<&Fm> = node
                        .from
                        .iter()
                        .map(|&f| outs[f].as_ref().unwrap())
                        .collect();
                    let c = parts.iter().map(|p| p.c).sum();
                    let mut d = PBuf::new(c * x0.hw());
                    let mut rest: &mut [f32] = &mut d;
                    let mut pieces = Vec::new();
                    for (&f, p) in node.from.iter().zip(&parts) {
                        assert_eq!((p.h, p.w), (x0.h, x0.w), "concat of mismatched maps");
                        let (head, tail) = rest.split_at_mut(p.c * p.hw());
                        // an upsampling left to this concatenation: its input, at half size
                        let up = self.up_in_concat[f]
                            .then(|| outs[self.nodes[f].from[0]].as_ref().unwrap());
                        pieces.push((head, &p.d[..], up));
                        rest = tail;
                    }
                    pieces.into_par_iter().for_each(|(dst, src, up)| match up {
                        Some(u) => pooling::upsample2x(&u.d, u.h, u.w, dst),
                        None => ops::copy_par(dst, src),
                    });
                    Fm {
                        c,
                        h: x0.h,
                        w: x0.w,
                        d,
                    }
                }
                Layer::Pose(hd) => {
                    let xs: Vec<&Fm> = node
                        .from
                        .iter()
                        .map(|&f| outs[f].as_ref().unwrap())
                        .collect();
                    let strides: Vec<f32> = xs.iter().map(|x| (h / x.h) as f32).collect();
                    let r = hd.forward(&xs, &strides);
                    if self.profile {
                        eprintln!(
                            "layer {i:2} Pose      {:7.2} ms",
                            t0.elapsed().as_secs_f64() * 1e3
                        );
                    }
                    return r;
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
                    Layer::Pose(_) => "Pose",
                };
                eprintln!(
                    "layer {i:2} {name:9} {:7.2} ms  -> {}x{}x{}",
                    t0.elapsed().as_secs_f64() * 1e3,
                    y.c,
                    y.h,
                    y.w
                );
            }
            outs.push(Some(y));
            // free what no later node reads
            for j in 0..=i {
                if self.last_use[j] <= i && j != i {
                    outs[j] = None;
                }
            }
        }
        unreachable!("the last layer is the Pose head")
    }
}
