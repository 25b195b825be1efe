//! Input layout for the convolution kernels: zero-padded, stride-phase-split channel planes, so
//! that every kernel tap of a strided convolution reads one contiguous run (implicit im2col).
//!
//! Layering: imports `kernels::{pool, simd}` only. Unsafe boundary: none (the AVX2 de-interleave
//! is a safe, length-checked primitive).

use rayon::prelude::*;

use super::pool::PBuf;
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use super::simd::avx2;

/// Zero-pads every channel plane of `x` ([c, h, w]) by `p` and splits it into s x s phase planes:
/// phase (py, px) of channel ci holds padded pixel (iy * s + py, ix * s + px) at [(ci*s*s + py*s + px), iy, ix].
/// Returns (buffer, hp, wp); `slack` zeros follow the last plane (wide reads may run past it).
pub(crate) fn phase_planes(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    s: usize,
    p: usize,
    slack: usize,
) -> (PBuf, usize, usize) {
    let hp = (h + 2 * p).div_ceil(s);
    let wp = (w + 2 * p).div_ceil(s);
    let plane = hp * wp;
    let total = c * s * s * plane;
    let mut buf = PBuf::new(total + slack);
    buf[total..].fill(0.0);
    buf[..total]
        .par_chunks_mut(s * s * plane)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, xc)| {
            if s == 1 {
                dst[..p * wp].fill(0.0);
                dst[(p + h) * wp..].fill(0.0);
                for (y, row) in xc.chunks_exact(w).enumerate() {
                    let d = &mut dst[(y + p) * wp..(y + p + 1) * wp];
                    d[..p].fill(0.0);
                    d[p..p + w].copy_from_slice(row);
                    d[p + w..].fill(0.0);
                }
                return;
            }
            let fast2 = cfg!(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            )) && s == 2
                && p == 1
                && w.is_multiple_of(16)
                && h.is_multiple_of(2);
            if fast2 {
                // the row loop below writes every value except, in each phase plane, one row (the top
                // one of row phase 0, the bottom one of row phase 1) and one column (the left one of
                // column phase 0, the right one of column phase 1): zero only those
                for py in 0..2 {
                    for px in 0..2 {
                        let pl = &mut dst[(py * 2 + px) * plane..(py * 2 + px + 1) * plane];
                        let r = if py == 0 { 0 } else { hp - 1 };
                        pl[r * wp..(r + 1) * wp].fill(0.0);
                        let col = if px == 0 { 0 } else { wp - 1 };
                        for v in pl.iter_mut().skip(col).step_by(wp) {
                            *v = 0.0;
                        }
                    }
                }
            } else {
                dst.fill(0.0);
            }
            for (y, row) in xc.chunks_exact(w).enumerate() {
                let yy = y + p;
                let (py, iy) = (yy % s, yy / s);
                #[cfg(all(
                    target_arch = "x86_64",
                    target_feature = "avx2",
                    target_feature = "fma"
                ))]
                if s == 2 && p == 1 && w % 16 == 0 {
                    // padded column x + 1: source evens go to phase 1 from j = 0, odds to phase 0 from j = 1
                    let (ph0, ph1) = dst.split_at_mut(((py * 2 + 1) * hp) * wp);
                    let d0 =
                        &mut ph0[(py * 2 * hp + iy) * wp + 1..(py * 2 * hp + iy) * wp + 1 + w / 2];
                    let d1 = &mut ph1[iy * wp..iy * wp + w / 2];
                    avx2::deinterleave2(row, d1, d0);
                    continue;
                }
                // phase px holds padded columns xq = j * s + px, i.e. source column xq - p
                for px in 0..s {
                    let j0 = (p.saturating_sub(px)).div_ceil(s); // first j with j*s + px >= p
                    let x0 = j0 * s + px - p;
                    if x0 >= w {
                        continue;
                    }
                    let base = ((py * s + px) * hp + iy) * wp;
                    let d = &mut dst[base + j0..base + wp];
                    for (dv, sv) in d.iter_mut().zip(row[x0..].iter().step_by(s)) {
                        *dv = *sv;
                    }
                }
            }
        });
    (buf, hp, wp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::pool::POOL_MIN;

    /// Phase planes are exact (zero padding included) even in recycled buffers full of old values.
    #[test]
    fn phase_planes_in_dirty_pool_buffers() {
        for (c, h, w, s, p) in [
            (3usize, 32usize, 32usize, 2usize, 1usize),
            (2, 16, 48, 2, 1),
            (2, 9, 16, 2, 1),
            (3, 10, 12, 1, 1),
            (2, 12, 20, 2, 2),
        ] {
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let hp = (h + 2 * p).div_ceil(s);
            let wp = (w + 2 * p).div_ceil(s);
            let slack = POOL_MIN; // makes the planes a pooled buffer
            let len = c * s * s * hp * wp + slack;
            // leave NaN-filled buffers of about this size in the pool
            let dirty: Vec<PBuf> = (0..4)
                .map(|_| {
                    let mut b = PBuf::new(len);
                    b.fill(f32::NAN);
                    b
                })
                .collect();
            drop(dirty);
            let (buf, hp2, wp2) = phase_planes(&x, c, h, w, s, p, slack);
            assert_eq!((hp2, wp2), (hp, wp));
            for ci in 0..c {
                for py in 0..s {
                    for px in 0..s {
                        for iy in 0..hp {
                            for jx in 0..wp {
                                let (yy, xx) = (iy * s + py, jx * s + px);
                                let want = if yy >= p && yy < h + p && xx >= p && xx < w + p {
                                    x[(ci * h + yy - p) * w + xx - p]
                                } else {
                                    0.0
                                };
                                let got = buf[(((ci * s + py) * s + px) * hp + iy) * wp + jx];
                                assert_eq!(
                                    got, want,
                                    "c{c} h{h} w{w} s{s} p{p} at {ci} {py} {px} {iy} {jx}"
                                );
                            }
                        }
                    }
                }
            }
            assert!(buf[len - slack..len].iter().all(|&v| v == 0.0));
        }
    }
}
