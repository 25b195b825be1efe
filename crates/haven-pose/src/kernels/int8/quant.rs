//! Quantization: weights per output channel (symmetric, 7 bits), activations per tensor (u8 with a
//! zero point), written straight into the zero-point-padded, stride-phase-split planes the packing
//! reads (the u8 twin of `planes::phase_planes`).
//!
//! Unsafe boundary: none.

use rayon::prelude::*;

/// Weights [m, k] -> (i8 [m, k] with |q| <= `qmax`, per-row scales): w ≈ q · scale[row].
pub(crate) fn quantize_weights(w: &[f32], m: usize, k: usize, qmax: i32) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(w.len(), m * k);
    let mut q = vec![0i8; m * k];
    let mut scales = vec![0f32; m];
    for (r, (row, qrow)) in w.chunks_exact(k).zip(q.chunks_exact_mut(k)).enumerate() {
        let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        let s = if amax > 0.0 { amax / qmax as f32 } else { 1.0 };
        scales[r] = s;
        for (d, v) in qrow.iter_mut().zip(row) {
            *d = (v / s).round_ties_even().clamp(-qmax as f32, qmax as f32) as i8;
        }
    }
    (q, scales)
}

/// A per-tensor activation quantization: x ≈ (q - zp) · scale, q in 0..=255.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ActQ {
    pub scale: f32,
    pub zp: u8,
}

impl ActQ {
    /// The quantization covering [min(lo, 0), max(hi, 0)] (0 exactly representable, so that
    /// padding is exact).
    pub(crate) fn for_range(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        if !(hi - lo).is_finite() || hi - lo <= 0.0 {
            return Self { scale: 1.0, zp: 0 };
        }
        let scale = (hi - lo) / 255.0;
        let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
        Self { scale, zp }
    }

    /// The range of `x` (per tensor, parallel over chunks).
    pub(crate) fn of(x: &[f32]) -> Self {
        let (lo, hi) = x
            .par_chunks(1 << 14)
            .map(|c| {
                c.iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)))
            })
            .reduce(|| (f32::MAX, f32::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
        Self::for_range(lo, hi)
    }

    /// One value quantized (round half to even, as `vcvtps2dq`).
    #[inline(always)]
    pub(crate) fn q(self, inv: f32, v: f32) -> u8 {
        v.mul_add(inv, self.zp as f32)
            .round_ties_even()
            .clamp(0.0, 255.0) as u8
    }
}

/// Quantizes a row into `dst` (same length): 32 values at a time with AVX2 (`vcvtps2dq` rounds half
/// to even under the default rounding mode, and the saturating packs clamp to 0..=255, as [`ActQ::q`]).
#[inline]
fn quant_row(q: ActQ, inv: f32, src: &[f32], dst: &mut [u8]) {
    let n = src.len().min(dst.len());
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is enabled at compile time (cfg); every load reads src[i .. i + 32] and every
        // store writes dst[i .. i + 32] with i + 32 <= n <= both lengths.
        unsafe {
            let (vinv, vzp) = (_mm256_set1_ps(inv), _mm256_set1_ps(q.zp as f32));
            let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            while done + 32 <= n {
                let p = src.as_ptr().add(done);
                let c = |o: usize| {
                    _mm256_cvtps_epi32(_mm256_fmadd_ps(_mm256_loadu_ps(p.add(o)), vinv, vzp))
                };
                let ab = _mm256_packs_epi32(c(0), c(8));
                let cd = _mm256_packs_epi32(c(16), c(24));
                let u = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), perm);
                _mm256_storeu_si256(dst.as_mut_ptr().add(done) as *mut __m256i, u);
                done += 32;
            }
        }
    }
    for (d, &v) in dst[done..n].iter_mut().zip(&src[done..n]) {
        *d = q.q(inv, v);
    }
}

/// `x` [c, h, w] quantized by `q`, padded by `p` with the zero point and split into s x s phase
/// planes: phase (py, px) of channel ci holds padded pixel (iy·s + py, ix·s + px) at
/// [(ci·s·s + py·s + px), iy, ix]. Returns (buffer, hp, wp); `slack` zero points follow the planes.
pub(crate) fn quant_planes(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    s: usize,
    p: usize,
    q: ActQ,
    slack: usize,
) -> (Vec<u8>, usize, usize) {
    assert_eq!(x.len(), c * h * w);
    let (hp, wp) = ((h + 2 * p).div_ceil(s), (w + 2 * p).div_ceil(s));
    let plane = hp * wp;
    let total = c * s * s * plane;
    let inv = 1.0 / q.scale;
    let mut buf = vec![q.zp; total + slack];
    if s == 1 && p == 0 {
        buf[..total]
            .par_chunks_mut(1 << 14)
            .zip(x.par_chunks(1 << 14))
            .for_each(|(d, src)| quant_row(q, inv, src, d));
        return (buf, hp, wp);
    }
    if s == 2 {
        buf[..total]
            .par_chunks_mut(4 * plane)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, xc)| quant_phases2(xc, w, (p, plane, wp), q, dst));
        return (buf, hp, wp);
    }
    buf[..total]
        .par_chunks_mut(s * s * plane)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, xc)| {
            let mut row = vec![0u8; w];
            for (y, src) in xc.chunks_exact(w).enumerate() {
                let yy = y + p;
                let (py, iy) = (yy % s, yy / s);
                if s == 1 {
                    quant_row(q, inv, src, &mut dst[iy * wp + p..iy * wp + p + w]);
                    continue;
                }
                quant_row(q, inv, src, &mut row);
                for px in 0..s {
                    // the columns x0 with (x0 + p) % s == px, at ix = (x0 + p) / s
                    let first = (px + s - p % s) % s;
                    let base = (py * s + px) * plane + iy * wp + (first + p) / s;
                    let d = &mut dst[base..];
                    for (i, &v) in row.iter().skip(first).step_by(s).enumerate() {
                        d[i] = v;
                    }
                }
            }
        });
    (buf, hp, wp)
}

/// One channel of [`quant_planes`] at stride 2: each row split into its even and odd columns (f32,
/// 8 lanes at a time with AVX2), each half quantized straight into its phase plane's row (contiguous
/// there), instead of quantizing the row and scattering every other byte (a third of the time).
fn quant_phases2(xc: &[f32], w: usize, (p, plane, wp): (usize, usize, usize), q: ActQ, dst: &mut [u8]) {
    let inv = 1.0 / q.scale;
    let (mut ev, mut od) = (vec![0f32; w.div_ceil(2)], vec![0f32; w / 2]);
    for (y, src) in xc.chunks_exact(w).enumerate() {
        let (py, iy) = ((y + p) % 2, (y + p) / 2);
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
        let done = {
            crate::kernels::simd::avx2::deinterleave2(src, &mut ev, &mut od);
            w / 16 * 16
        };
        #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
        let done = 0;
        for (i, &v) in src.iter().enumerate().skip(done) {
            if i % 2 == 0 { ev[i / 2] = v } else { od[i / 2] = v }
        }
        // column x0 = first + 2 i sits in phase (first + p) % 2 at ix = (first + p) / 2 + i
        for (first, half) in [(0, &ev), (1, &od)] {
            let base = (py * 2 + (first + p) % 2) * plane + iy * wp + (first + p) / 2;
            quant_row(q, inv, half, &mut dst[base..base + half.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::pseudo;

    #[test]
    fn weights_round_trip_within_half_a_step() {
        let (m, k) = (5, 37);
        let mut w = pseudo(m * k, 7);
        w[k..2 * k].fill(0.0); // an all-zero channel
        for qmax in [63, 127] {
            let (q, s) = quantize_weights(&w, m, k, qmax);
            for r in 0..m {
                for i in 0..k {
                    let (v, qv) = (w[r * k + i], q[r * k + i] as i32);
                    assert!(qv.abs() <= qmax);
                    assert!((qv as f32 * s[r] - v).abs() <= 0.5 * s[r] + 1e-7, "{r} {i}");
                }
                let amax = q[r * k..(r + 1) * k].iter().map(|v| v.abs()).max();
                assert!(r == 1 || amax == Some(qmax as i8));
            }
        }
    }

    #[test]
    fn activations_cover_the_range_and_zero_is_exact() {
        let x: Vec<f32> = pseudo(1000, 3).iter().map(|v| v * 3.0 - 0.2).collect();
        let q = ActQ::of(&x);
        let inv = 1.0 / q.scale;
        assert_eq!(q.q(inv, 0.0), q.zp);
        for &v in &x {
            let back = (q.q(inv, v) as f32 - q.zp as f32) * q.scale;
            assert!((back - v).abs() <= 0.5 * q.scale + 1e-6, "{v} -> {back}");
        }
        assert_eq!(ActQ::of(&[0.0; 10]), ActQ { scale: 1.0, zp: 0 });
        assert_eq!(ActQ::for_range(0.0, 2.55).zp, 0);
    }

    #[test]
    fn planes_hold_every_pixel_and_pad_with_the_zero_point() {
        for &(c, h, w, s, p) in &[
            (2, 5, 7, 1, 1),
            (3, 6, 9, 2, 1),
            (1, 4, 4, 1, 0),
            (2, 7, 5, 2, 1),
            (2, 3, 70, 1, 1),
            (1, 2, 75, 2, 1),
            (2, 3, 40, 1, 0),
            (2, 4, 32, 2, 1),
            (1, 3, 33, 2, 0),
            (3, 5, 48, 2, 1),
        ] {
            let x = pseudo(c * h * w, 11);
            let q = ActQ::of(&x);
            let inv = 1.0 / q.scale;
            let (buf, hp, wp) = quant_planes(&x, (c, h, w), s, p, q, 5);
            assert_eq!(buf.len(), c * s * s * hp * wp + 5);
            for ci in 0..c {
                for yy in 0..hp * s {
                    for xx in 0..wp * s {
                        let at = ((ci * s * s + (yy % s) * s + xx % s) * hp + yy / s) * wp + xx / s;
                        let inside = yy >= p && xx >= p && yy - p < h && xx - p < w;
                        let want = if inside {
                            q.q(inv, x[(ci * h + yy - p) * w + xx - p])
                        } else {
                            q.zp
                        };
                        assert_eq!(buf[at], want, "{c} {h} {w} s{s} p{p} at {ci} {yy} {xx}");
                    }
                }
            }
        }
    }
}
