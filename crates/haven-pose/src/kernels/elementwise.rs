//! Elementwise kernels over feature maps: residual add, parallel copy, exp, sigmoid, bias + SiLU,
//! and the column softmax of the attention block.
//!
//! Layering: imports `kernels::{simd, pool}` only.
//! Unsafe boundary: the AVX2 loops check their slice lengths first; `softmax_cols` hands disjoint
//! column blocks of one `&mut` matrix to rayon tasks through a [`SendPtr`].

use rayon::prelude::*;

use super::pool::SendPtr;
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use super::simd::avx2;
use super::simd::{exp_fast, sigmoid, silu};

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2_loops {
    use super::avx2::{exp8, ld, silu8, st};
    use crate::kernels::simd::{sigmoid, silu};
    use std::arch::x86_64::*;

    /// dst = sigmoid(src) elementwise.
    pub(super) fn sigmoid_into(dst: &mut [f32], src: &[f32]) {
        // SAFETY: loads and stores 8 floats at 8 i with 8 i + 8 <= 8 n <= dst.len() <= src.len() (asserted); dst is borrowed mutably; AVX2/FMA present by cfg.
        unsafe {
            assert!(src.len() >= dst.len());
            let n = dst.len() / 8;
            let one = _mm256_set1_ps(1.0);
            for i in 0..n {
                let v = ld(src.as_ptr().wrapping_add(8 * i));
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
                st(
                    dst.as_mut_ptr().wrapping_add(8 * i),
                    _mm256_div_ps(one, _mm256_add_ps(one, e)),
                );
            }
            for i in n * 8..dst.len() {
                dst[i] = sigmoid(src[i]);
            }
        }
    }

    /// y = silu(y + b) over a slice.
    #[inline]
    pub(super) fn bias_silu(y: &mut [f32], b: f32) {
        // SAFETY: each chunk `c` is exactly 8 floats, borrowed mutably; AVX2/FMA present by cfg.
        unsafe {
            let bv = _mm256_set1_ps(b);
            let mut chunks = y.chunks_exact_mut(8);
            for c in &mut chunks {
                let p = c.as_mut_ptr();
                st(p, silu8(_mm256_add_ps(ld(p), bv)));
            }
            for v in chunks.into_remainder() {
                *v = silu(*v + b);
            }
        }
    }
}

/// a += b elementwise (parallel in chunks).
pub(crate) fn add_assign(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    a.par_chunks_mut(16 * 1024)
        .zip(b.par_chunks(16 * 1024))
        .for_each(|(x, y)| {
            for (p, q) in x.iter_mut().zip(y) {
                *p += *q;
            }
        });
}

/// dst = src (parallel in chunks).
pub(crate) fn copy_par(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(64 * 1024)
        .zip(src.par_chunks(64 * 1024))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// x = exp(x) elementwise.
pub(crate) fn exp_inplace(x: &mut [f32]) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            let p = c.as_mut_ptr();
            // SAFETY: `c` is exactly 8 floats, borrowed mutably.
            unsafe { avx2::st(p, avx2::exp8(avx2::ld(p))) };
        }
        for v in chunks.into_remainder() {
            *v = exp_fast(*v);
        }
        return;
    }
    #[allow(unreachable_code)]
    for v in x.iter_mut() {
        *v = exp_fast(*v);
    }
}

/// dst = sigmoid(src) elementwise.
pub(crate) fn sigmoid_into(dst: &mut [f32], src: &[f32]) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        avx2_loops::sigmoid_into(dst, src);
        return;
    }
    #[allow(unreachable_code)]
    for (d, s) in dst.iter_mut().zip(src) {
        *d = sigmoid(*s);
    }
}

/// y = act(y + b) over a slice.
#[inline]
pub(crate) fn bias_act(y: &mut [f32], b: f32, act: bool) {
    if act {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        {
            avx2_loops::bias_silu(y, b);
            return;
        }
        #[allow(unreachable_code)]
        for v in y.iter_mut() {
            *v = silu(*v + b);
        }
    } else {
        for v in y.iter_mut() {
            *v += b;
        }
    }
}

/// Softmax over each column of a row-major [rows, cols] matrix, of `scale * a`.
pub(crate) fn softmax_cols(a: &mut [f32], rows: usize, cols: usize, scale: f32) {
    const CB: usize = 64;
    let ap = SendPtr(a.as_mut_ptr());
    assert!(a.len() >= rows * cols);
    (0..cols.div_ceil(CB)).into_par_iter().for_each(|cb| {
        let ap = ap;
        let c0 = cb * CB;
        let len = CB.min(cols - c0);
        // SAFETY: row j's columns c0 .. c0 + len of the rows x cols matrix (in `a`: asserted);
        // this task is the only one with columns c0 .. c0 + len, and each slice made here is
        // dropped before the next one of the same row is made.
        let row =
            |j: usize| unsafe { std::slice::from_raw_parts_mut(ap.0.add(j * cols + c0), len) };
        let mut mx = row(0).to_vec();
        for j in 1..rows {
            for (m, v) in mx.iter_mut().zip(row(j).iter()) {
                *m = m.max(*v);
            }
        }
        let mut sum = vec![0f32; len];
        for j in 0..rows {
            let r = row(j);
            for (v, m) in r.iter_mut().zip(&mx) {
                *v = (*v - *m) * scale;
            }
            exp_inplace(r);
            for (s, v) in sum.iter_mut().zip(r.iter()) {
                *s += *v;
            }
        }
        for s in sum.iter_mut() {
            *s = 1.0 / *s;
        }
        for j in 0..rows {
            for (v, s) in row(j).iter_mut().zip(&sum) {
                *v *= *s;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{pseudo, silu_ref};

    /// Lengths around the 8-lane vectors and the parallel chunks.
    const LENS: [usize; 7] = [0, 1, 7, 8, 9, 67, 16 * 1024 + 13];

    #[test]
    fn bias_act_matches_reference() {
        for n in LENS {
            for act in [false, true] {
                let x: Vec<f32> = pseudo(n, 1).iter().map(|v| v * 20.0).collect();
                let mut y = x.clone();
                bias_act(&mut y, 0.25, act);
                for (g, x) in y.iter().zip(&x) {
                    let w = if act { silu_ref(x + 0.25) } else { x + 0.25 };
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "n {n} act {act} x {x}: {g} vs {w}"
                    );
                }
            }
        }
        // beyond the clamps: exactly x, or 0
        let mut v = vec![
            -1e30f32, -1000.0, -100.0, -88.0, 87.0, 100.0, 1000.0, 1e30, 3.0,
        ];
        let w = v.clone();
        bias_act(&mut v, 0.0, true);
        for (g, x) in v.iter().zip(&w) {
            let r = silu_ref(*x);
            assert!((g - r).abs() <= 1e-6 * r.abs().max(1.0), "{x}: {g} vs {r}");
        }
    }

    #[test]
    fn exp_sigmoid_add_copy_match_reference() {
        for n in LENS {
            let x: Vec<f32> = pseudo(n, 2).iter().map(|v| v * 30.0).collect();
            let mut e = x.clone();
            exp_inplace(&mut e);
            let mut s = vec![f32::NAN; n];
            sigmoid_into(&mut s, &x);
            for i in 0..n {
                let (xe, xs) = ((x[i] as f64).exp(), 1.0 / (1.0 + (-x[i] as f64).exp()));
                assert!(((e[i] as f64 - xe) / xe).abs() < 1e-6, "exp({})", x[i]);
                assert!((s[i] as f64 - xs).abs() < 1e-6, "sigmoid({})", x[i]);
            }
            let mut a = x.clone();
            add_assign(&mut a, &e);
            assert!(a.iter().zip(&x).zip(&e).all(|((a, x), e)| *a == x + e));
            let mut c = vec![0f32; n];
            copy_par(&mut c, &x);
            assert_eq!(c, x);
        }
    }

    /// Column softmax (as DFL and attention use it) of scale * a, against f64; widths around the
    /// 64-column blocks.
    #[test]
    fn softmax_cols_matches_reference() {
        for &(rows, cols) in &[(1usize, 1usize), (16, 3), (5, 64), (7, 65), (3, 200)] {
            let a0: Vec<f32> = pseudo(rows * cols, 3).iter().map(|v| v * 10.0).collect();
            let mut a = a0.clone();
            softmax_cols(&mut a, rows, cols, 0.7);
            for c in 0..cols {
                let mx = (0..rows)
                    .map(|r| a0[r * cols + c] as f64)
                    .fold(f64::MIN, f64::max);
                let sum: f64 = (0..rows)
                    .map(|r| ((a0[r * cols + c] as f64 - mx) * 0.7).exp())
                    .sum();
                for r in 0..rows {
                    let want = ((a0[r * cols + c] as f64 - mx) * 0.7).exp() / sum;
                    let got = a[r * cols + c] as f64;
                    assert!(
                        (got - want).abs() < 1e-6,
                        "{rows}x{cols} at {r},{c}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
