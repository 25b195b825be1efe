//! The Detect / Pose head as one CPU op: the three levels' branches side by side, then DFL and the
//! decoding into ONNX `output0`'s rows.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::{chain, nchw, stack, CResult};
use crate::kernels::conv::Conv;
use crate::kernels::elementwise as ops;
use crate::kernels::pool::PBuf;
use crate::net::Head;

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
