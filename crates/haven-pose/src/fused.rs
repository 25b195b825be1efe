//! HAVEN's kernels as Candle's CPU path: the custom ops that the network's modules (`crate::net`)
//! apply on the CPU device.
//!
//! Granularity: one op per convolution layer that stands alone in the graph, and one op per *block*
//! (C2f/C3k2, SPPF, C2PSA) and for the head (Detect or Pose), rather than one per convolution. Inside a block the
//! kernels write straight into slices of the block's concatenation buffer and recycle their scratch
//! maps through the buffer pool (`kernels::pool`); a Candle op per convolution would instead give every
//! intermediate map its own fresh tensor and copy each one again for `cat`/`chunk` (the block-level op
//! keeps today's engine speed, see docs/pose.md "Candle"). The same modules' `forward` runs Candle's
//! own ops on any other device, or on the CPU when asked (`EngineOptions::candle_cpu_ops`), which is
//! the reference these ops are tested against.
//!
//! Unsafe boundary: none here. The ops read their input through `CpuStorage::as_slice` and the
//! layout's contiguous offsets (a non-contiguous or non-f32 input is an error, never a reinterpretation)
//! and hand back owned vectors; the kernels they call keep their own `// SAFETY:` contracts.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, InplaceOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::conv::Conv;
use crate::kernels::elementwise as ops;
use crate::kernels::gemm;
use crate::kernels::pool::{self, PBuf};
use crate::kernels::pooling;
use crate::net::{Attention, Bottleneck, C2f, C2psa, C3k, ConvBn, Head, Inner, PsaBlock, Sppf};

type CResult<T> = candle_core::Result<T>;

/// A CPU tensor's f32 values and NCHW dims; it must be contiguous.
fn nchw<'a>(s: &'a CpuStorage, l: &Layout) -> CResult<(&'a [f32], [usize; 4])> {
    let (b, c, h, w) = l.shape().dims4()?;
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("HAVEN's CPU ops need a contiguous input".into()))?;
    Ok((&s.as_slice::<f32>()?[start..end], [b, c, h, w]))
}

/// The `b` images' results one after the other, as a tensor's storage. One image: its buffer becomes
/// the storage without a copy, possibly longer than the result (`PBuf::into_storage`).
fn stack(b: usize, mut f: impl FnMut(usize) -> PBuf) -> Vec<f32> {
    if b == 1 {
        return f(0).into_storage();
    }
    let mut v = Vec::new();
    for i in 0..b {
        let y = f(i);
        v.reserve_exact(b * y.len() - v.len());
        v.extend_from_slice(&y);
    }
    v
}

/// Runs `f` on each image of a contiguous f32 NCHW tensor; `f` gives one image's result and its
/// dims (C, H, W).
fn per_image(
    s: &CpuStorage,
    l: &Layout,
    f: impl Fn(&[f32], usize, usize) -> (PBuf, [usize; 3]),
) -> CResult<(CpuStorage, Shape)> {
    let (x, [b, c, h, w]) = nchw(s, l)?;
    let per = c * h * w;
    let mut dims = [0; 3];
    let out = stack(b, |i| {
        let (y, d) = f(&x[i * per..(i + 1) * per], h, w);
        dims = d;
        y
    });
    let [oc, oh, ow] = dims;
    Ok((CpuStorage::F32(out), Shape::from((b, oc, oh, ow))))
}

impl CustomOp1 for ConvBn {
    fn name(&self) -> &'static str {
        "haven-conv"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let k = self.kernel();
        per_image(s, l, |x, h, w| {
            let (oh, ow) = k.out_hw(h, w);
            (k.forward(x, h, w), [k.cout, oh, ow])
        })
    }
}

impl CustomOp1 for C2f {
    fn name(&self) -> &'static str {
        "haven-c2f"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        per_image(s, l, |x, h, w| (self.cpu(x, h, w), [self.cv2.cout, h, w]))
    }
}

impl CustomOp1 for Sppf {
    fn name(&self) -> &'static str {
        "haven-sppf"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        per_image(s, l, |x, h, w| (self.cpu(x, h, w), [self.cv2.cout, h, w]))
    }
}

impl CustomOp1 for C2psa {
    fn name(&self) -> &'static str {
        "haven-c2psa"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        per_image(s, l, |x, h, w| (self.cpu(x, h, w), [self.cv2.cout, h, w]))
    }
}

/// Concatenation of two maps along channels, each one optionally upsampled 2x (nearest) on the way:
/// an `Upsample` whose only reader is a `Concat` writes straight into the concatenation's buffer (no
/// upsampled map of its own, no copy of it).
pub(crate) struct CatOp {
    pub up: [bool; 2],
}

impl CustomOp2 for CatOp {
    fn name(&self) -> &'static str {
        "haven-upsample-concat"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let parts = [nchw(s1, l1)?, nchw(s2, l2)?];
        let out_hw = |i: usize| {
            let [_, _, h, w] = parts[i].1;
            if self.up[i] {
                (2 * h, 2 * w)
            } else {
                (h, w)
            }
        };
        let (h, w) = out_hw(0);
        if out_hw(1) != (h, w) || parts[0].1[0] != parts[1].1[0] {
            candle_core::bail!(
                "concat of mismatched maps: {:?} and {:?}",
                parts[0].1,
                parts[1].1
            )
        }
        let b = parts[0].1[0];
        let c: usize = parts.iter().map(|p| p.1[1]).sum();
        let out = stack(b, |i| {
            let mut y = PBuf::new(c * h * w);
            let (y0, y1) = y.split_at_mut(parts[0].1[1] * h * w);
            let piece = |k: usize, dst: &mut [f32]| {
                let (x, [_, pc, ph, pw]) = parts[k];
                let src = &x[i * pc * ph * pw..(i + 1) * pc * ph * pw];
                if self.up[k] {
                    pooling::upsample2x(src, ph, pw, dst)
                } else {
                    ops::copy_par(dst, src)
                }
            };
            rayon::join(|| piece(0, y0), || piece(1, y1));
            y
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

/// Gives a CPU tensor's memory back to the buffer pool when the network is done with it, so that the
/// next op's output reuses it (no fresh, zero-filled allocation per map per frame). The tensor is left
/// empty: call it only on a tensor the network made (an op's output, whose storage may be longer than
/// its values, see `PBuf::into_storage`) and that no one reads again. A view that starts inside its
/// storage is left alone.
pub(crate) fn reclaim(t: &Tensor) {
    struct Reclaim;
    impl InplaceOp1 for Reclaim {
        fn name(&self) -> &'static str {
            "haven-reclaim"
        }
        fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> CResult<()> {
            if let CpuStorage::F32(v) = s {
                if l.start_offset() == 0 && l.shape().elem_count() <= v.len() {
                    pool::recycle(std::mem::take(v));
                }
            }
            Ok(())
        }
    }
    if t.device().is_cpu() {
        // the op cannot fail on the CPU
        let _ = t.inplace_op1(&Reclaim);
    }
}

/// The Detect or Pose head over the three levels' maps, with their strides in input pixels.
pub(crate) struct HeadOp<'a> {
    pub head: &'a Head,
    pub strides: [f32; 3],
}

/// One image's feature map, borrowed from a tensor.
struct Map<'a> {
    h: usize,
    w: usize,
    d: &'a [f32],
}

impl CustomOp3 for HeadOp<'_> {
    fn name(&self) -> &'static str {
        "haven-head"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let levels = [nchw(s1, l1)?, nchw(s2, l2)?, nchw(s3, l3)?];
        let b = levels[0].1[0];
        let rows = self.head.rows();
        let ntot: usize = levels.iter().map(|(_, d)| d[2] * d[3]).sum();
        let out = stack(b, |i| {
            let maps: Vec<Map> = levels
                .iter()
                .map(|(x, [_, c, h, w])| {
                    let per = c * h * w;
                    Map {
                        h: *h,
                        w: *w,
                        d: &x[i * per..(i + 1) * per],
                    }
                })
                .collect();
            self.head.cpu(&maps, &self.strides)
        });
        Ok((CpuStorage::F32(out), Shape::from((b, rows, ntot))))
    }
}

// ---- the blocks' fused CPU bodies (one image, CHW, batch 1) ----

fn chain(convs: &[ConvBn], x: &[f32], h: usize, w: usize) -> PBuf {
    let mut cur: Option<PBuf> = None;
    for c in convs {
        let inp = cur.as_deref().unwrap_or(x);
        cur = Some(c.kernel().forward(inp, h, w));
    }
    cur.unwrap()
}

impl Bottleneck {
    fn cpu_into(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let t = self.cv1.kernel().forward(x, h, w);
        self.cv2.kernel().forward_into(&t, h, w, out);
        if self.add {
            ops::add_assign(out, x);
        }
    }
}

impl C3k {
    fn cpu_into(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let hw = h * w;
        let c_ = self.cv1.cout;
        let mut z = PBuf::new((c_ + self.cv2.cout) * hw);
        {
            let (za, zb) = z.split_at_mut(c_ * hw);
            let mut a = self.cv1.kernel().forward(x, h, w);
            let nm = self.m.len();
            for (i, b) in self.m.iter().enumerate() {
                if i + 1 == nm {
                    b.cpu_into(&a, h, w, za);
                } else {
                    let mut t = PBuf::new(c_ * hw);
                    b.cpu_into(&a, h, w, &mut t);
                    a = t;
                }
            }
            if nm == 0 {
                za.copy_from_slice(&a);
            }
            self.cv2.kernel().forward_into(x, h, w, zb);
        }
        self.cv3.kernel().forward_into(&z, h, w, out);
    }
}

impl C2f {
    /// cv1 writes both halves, each inner block its output, straight into the concatenation buffer.
    fn cpu(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let hw = h * w;
        let c = self.c;
        let mut y = PBuf::new((2 + self.m.len()) * c * hw);
        self.cv1
            .kernel()
            .forward_into(x, h, w, &mut y[..2 * c * hw]);
        for (i, m) in self.m.iter().enumerate() {
            let (prev, next) = y.split_at_mut((2 + i) * c * hw);
            let inp = &prev[(1 + i) * c * hw..];
            let out = &mut next[..c * hw];
            match m {
                Inner::Bottleneck(b) => b.cpu_into(inp, h, w, out),
                Inner::C3k(b) => b.cpu_into(inp, h, w, out),
            }
        }
        self.cv2.kernel().forward(&y, h, w)
    }
}

impl Sppf {
    fn cpu(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let n = self.cv1.cout * h * w;
        let mut z = PBuf::new(4 * n);
        self.cv1.kernel().forward_into(x, h, w, &mut z[..n]);
        for i in 0..3 {
            let (a, b) = z.split_at_mut((i + 1) * n);
            pooling::maxpool_same(&a[i * n..], h, w, self.k, &mut b[..n]);
        }
        self.cv2.kernel().forward(&z, h, w)
    }
}

impl Attention {
    fn cpu(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let kernel = self.kernel.expect("HAVEN's attention kernel");
        let n = h * w;
        let dim = self.nh * self.hd;
        let qkv = self.qkv.kernel().forward(x, h, w);
        let per = 2 * self.kd + self.hd;
        let mut v = PBuf::new(dim * n);
        for hh in 0..self.nh {
            let src = &qkv[(hh * per + 2 * self.kd) * n..(hh * per + per) * n];
            v[hh * self.hd * n..(hh + 1) * self.hd * n].copy_from_slice(src);
        }
        let mut xo = self.pe.kernel().forward(&v, h, w);
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
                gemm::matmul(n, n, kd, &kt, kd, q, n, &mut attn_t, n, kernel);
                ops::softmax_cols(&mut attn_t, n, n, scale);
                // o = v attn_t  [hd x n]
                let vh = &v[hh * hd * n..(hh + 1) * hd * n];
                gemm::matmul(hd, n, n, vh, n, &attn_t, n, &mut o, n, kernel);
                for (d, s) in xo_h.iter_mut().zip(o.iter()) {
                    *d += *s;
                }
            });
        self.proj.kernel().forward(&xo, h, w)
    }
}

impl PsaBlock {
    fn cpu_inplace(&self, x: &mut [f32], h: usize, w: usize) {
        let a = self.attn.cpu(x, h, w);
        ops::add_assign(x, &a);
        let t = self.ffn0.kernel().forward(x, h, w);
        let f = self.ffn1.kernel().forward(&t, h, w);
        ops::add_assign(x, &f);
    }
}

impl C2psa {
    fn cpu(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let mut y = self.cv1.kernel().forward(x, h, w);
        let b = &mut y[self.c * h * w..];
        for blk in &self.m {
            blk.cpu_inplace(b, h, w);
        }
        self.cv2.kernel().forward(&y, h, w)
    }
}

/// One level's branch outputs: box bins, keypoint values (a Pose head), class logits, and how long
/// their convolutions took.
struct LevelMaps {
    boxes: PBuf,
    kpt: Option<PBuf>,
    cls: PBuf,
    conv_s: f64,
}

/// Where one level's decoded columns go in the head's output `[rows, ntot]`: columns `off..off + hw`.
struct Columns<'a> {
    out: &'a mut [f32],
    ntot: usize,
    off: usize,
    hw: usize,
}

impl Columns<'_> {
    /// Row `r`'s slice for this level.
    fn row(&mut self, r: usize) -> &mut [f32] {
        let start = r * self.ntot + self.off;
        &mut self.out[start..start + self.hw]
    }
}

impl Head {
    /// Raw output [4 + nc + nk, N] like ONNX `output0`, for one image (nk = 0 for a Detect head).
    fn cpu(&self, xs: &[Map], strides: &[f32]) -> PBuf {
        let ntot: usize = xs.iter().map(|x| x.h * x.w).sum();
        let mut out = PBuf::new(self.rows() * ntot);
        let mut off = 0;
        for (lvl, (x, maps)) in xs.iter().zip(self.branches_cpu(xs)).enumerate() {
            let hw = x.h * x.w;
            let t1 = std::time::Instant::now();
            let cols = Columns {
                out: &mut out,
                ntot,
                off,
                hw,
            };
            self.decode_level_cpu(x, &maps, strides[lvl], cols);
            if self.profile {
                eprintln!(
                    "  head level {lvl}: convs {:.2} ms (side by side with the other levels), decode {:.2} ms",
                    maps.conv_s * 1e3,
                    t1.elapsed().as_secs_f64() * 1e3
                );
            }
            off += hw;
        }
        out
    }

    /// The three levels' box, keypoint and class branches are independent chains of convolutions:
    /// run them side by side, so that the small maps' convolutions (too small to split well over
    /// the threads on their own) fill each other's gaps. A Detect head has no keypoint branch.
    fn branches_cpu(&self, xs: &[Map]) -> Vec<LevelMaps> {
        let first: Vec<Option<&Conv>> = self.first.iter().map(Option::as_ref).collect();
        xs.par_iter()
            .enumerate()
            .map(|(lvl, x)| {
                let t0 = std::time::Instant::now();
                let hw = x.h * x.w;
                let kpt = self.kpt.get(lvl);
                let ((boxes, kpt), cls) = rayon::join(
                    || match (first.get(lvl).copied().flatten(), kpt) {
                        (Some(f), Some(kpt)) => {
                            let y = f.forward(x.d, x.h, x.w);
                            let nb = self.boxes[lvl][0].cout * hw;
                            let (bx, kp) = rayon::join(
                                || chain(&self.boxes[lvl][1..], &y[..nb], x.h, x.w),
                                || chain(&kpt[1..], &y[nb..], x.h, x.w),
                            );
                            (bx, Some(kp))
                        }
                        (_, Some(kpt)) => {
                            let (bx, kp) = rayon::join(
                                || chain(&self.boxes[lvl], x.d, x.h, x.w),
                                || chain(kpt, x.d, x.h, x.w),
                            );
                            (bx, Some(kp))
                        }
                        (_, None) => (chain(&self.boxes[lvl], x.d, x.h, x.w), None),
                    },
                    || chain(&self.cls[lvl], x.d, x.h, x.w),
                );
                let conv_s = t0.elapsed().as_secs_f64();
                LevelMaps {
                    boxes,
                    kpt,
                    cls,
                    conv_s,
                }
            })
            .collect()
    }

    /// One level's boxes, class scores and keypoints into its columns of the output.
    fn decode_level_cpu(&self, x: &Map, maps: &LevelMaps, stride: f32, mut cols: Columns) {
        let hw = x.h * x.w;
        let dist = self.dfl_cpu(&maps.boxes, hw);
        // anchor centres (x + 0.5, y + 0.5) in grid units
        let ax: Vec<f32> = (0..hw).map(|a| (a % x.w) as f32).collect();
        let ay: Vec<f32> = (0..hw).map(|a| (a / x.w) as f32).collect();
        {
            let (l, rest) = dist.split_at(hw);
            let (t, rest) = rest.split_at(hw);
            let (r, b) = rest.split_at(hw);
            let (ntot, off) = (cols.ntot, cols.off);
            let (o0, rest) = cols.out.split_at_mut(ntot);
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
            ops::sigmoid_into(cols.row(4 + c), &maps.cls[c * hw..(c + 1) * hw]);
        }
        let kbase = 4 + self.nc;
        let kp = maps.kpt.as_deref().unwrap_or(&[]);
        for j in 0..self.nk {
            let dst = cols.row(kbase + j);
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
    }

    /// DFL: per side, the softmax over its reg_max bins' expectation with the bin values; `[4, hw]`.
    fn dfl_cpu(&self, bx: &[f32], hw: usize) -> PBuf {
        let rm = self.reg_max;
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
        dist
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Upsample + concatenation in one op equals Candle's `upsample_nearest2d` + `cat` (batch 2, odd
    /// sizes, either side upsampled); mismatched maps are an error.
    #[test]
    fn cat_op_matches_candle_upsample_and_cat() {
        let dev = Device::Cpu;
        let a = Tensor::rand(0f32, 1., (2, 3, 3, 5), &dev).unwrap();
        let b = Tensor::rand(0f32, 1., (2, 7, 6, 10), &dev).unwrap();
        let up = a.upsample_nearest2d(6, 10).unwrap();
        let ours = a
            .apply_op2_no_bwd(&b, &CatOp { up: [true, false] })
            .unwrap();
        let want = Tensor::cat(&[&up, &b], 1).unwrap();
        assert_eq!(ours.dims(), &[2, 10, 6, 10]);
        assert_eq!(values(&ours), values(&want));
        let ours = b
            .apply_op2_no_bwd(&a, &CatOp { up: [false, true] })
            .unwrap();
        assert_eq!(values(&ours), values(&Tensor::cat(&[&b, &up], 1).unwrap()));
        assert!(a
            .apply_op2_no_bwd(&b, &CatOp { up: [false, false] })
            .is_err());
    }

    /// The length of a CPU tensor's whole storage vector.
    struct StorageLen;
    impl CustomOp1 for StorageLen {
        fn name(&self) -> &'static str {
            "storage-len"
        }
        fn cpu_fwd(&self, s: &CpuStorage, _: &Layout) -> CResult<(CpuStorage, Shape)> {
            let n = s.as_slice::<f32>()?.len();
            Ok((CpuStorage::F32(vec![n as f32]), Shape::from(1)))
        }
    }

    /// `reclaim` leaves a view starting inside its storage alone and takes the memory of a tensor
    /// starting at its storage's start.
    #[test]
    fn reclaim_takes_only_whole_tensors() {
        let n = 3 * crate::kernels::pool::POOL_MIN;
        let len = |t: &Tensor| values(&t.apply_op1_no_bwd(&StorageLen).unwrap())[0] as usize;
        let t = Tensor::ones(n, DType::F32, &Device::Cpu).unwrap();
        reclaim(&t.narrow(0, 1, n - 1).unwrap());
        assert_eq!(len(&t), n);
        assert_eq!(values(&t.sum_all().unwrap()), [n as f32]);
        reclaim(&t);
        assert_eq!(len(&t), 0);
    }
}
