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

use candle_core::{CpuStorage, CustomOp1, CustomOp2, InplaceOp1, Layout, Shape, Tensor};

use crate::kernels::elementwise as ops;
use crate::kernels::pool::{self, PBuf};
use crate::kernels::pooling;
use crate::net::{C2f, C2psa, ConvBn, Sppf};

mod blocks;
mod head;

pub(crate) use head::HeadOp;

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
    if let Some(v) = take_storage(t) {
        pool::recycle(v);
    }
}

/// A CPU tensor's vector itself, its values first (possibly longer), leaving the tensor empty: on
/// the terms of [`reclaim`], for reading a network output without copying it; `None` on another
/// device or for a view that starts inside its storage.
pub(crate) fn take_storage(t: &Tensor) -> Option<Vec<f32>> {
    struct Take(std::sync::Mutex<Option<Vec<f32>>>);
    impl InplaceOp1 for Take {
        fn name(&self) -> &'static str {
            "haven-take-storage"
        }
        fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> CResult<()> {
            if let CpuStorage::F32(v) = s {
                if l.start_offset() == 0 && l.shape().elem_count() <= v.len() {
                    *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::mem::take(v));
                }
            }
            Ok(())
        }
    }
    if !t.device().is_cpu() {
        return None;
    }
    let take = Take(std::sync::Mutex::new(None));
    // the op cannot fail on the CPU
    let _ = t.inplace_op1(&take);
    take.0.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn chain(convs: &[ConvBn], x: &[f32], h: usize, w: usize) -> PBuf {
    let mut cur: Option<PBuf> = None;
    for c in convs {
        let inp = cur.as_deref().unwrap_or(x);
        cur = Some(c.kernel().forward(inp, h, w));
    }
    cur.unwrap()
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
