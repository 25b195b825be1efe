//! SIMD and scalar primitives every kernel builds on: unaligned 8-lane loads/stores, fast exp,
//! sigmoid and SiLU (scalar and 8-wide AVX2/FMA), the stride-2 de-interleave.
//!
//! Owns: the numerics of exp/SiLU (one polynomial each, shared by all kernels). Imports nothing
//! from the crate.
//! Unsafe boundary: `avx2::{ld, st, bc}` are `unsafe fn`s (raw pointers, caller guarantees the 8
//! (1) floats are in bounds); the arithmetic (`exp8`, `silu8xn`, ...) is safe (value intrinsics
//! with the features enabled at compile time); `deinterleave2` checks its slice lengths.

/// exp(x) for f32, Cephes polynomial, branch-free and integer-cast-free so that loops over slices
/// vectorise. Relative error about 2e-7 in the normal range; clamps to [-87.3, 88.3].
#[inline(always)]
pub(crate) fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer held in the low bits
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + MAGIC;
    let fx = t - MAGIC;
    let n = t.to_bits().wrapping_sub(MAGIC.to_bits()); // = round(x * log2 e) as two's complement
    let x = x - fx * 0.693_359_4 - fx * -2.121_944_4e-4;
    let z = x * x;
    let mut y = 1.987_569_1e-4_f32;
    y = y * x + 1.398_199_9e-3;
    y = y * x + 8.333_452e-3;
    y = y * x + 4.166_579_6e-2;
    y = y * x + 1.666_666_5e-1;
    y = y * x + 5.000_000_1e-1;
    y = y * z + x + 1.0;
    let pow2n = f32::from_bits(n.wrapping_add(127) << 23);
    y * pow2n
}

#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_fast(-x))
}

#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp_fast(-x))
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    // Loads and stores through packed wrappers: plain unaligned vmovups, free of the debug-build
    // precondition checks that `_mm256_loadu_ps` (copy_nonoverlapping) and `ptr::add` carry, since the
    // workspace's dev profile keeps debug assertions on.
    #[repr(C, packed)]
    #[derive(Clone, Copy)]
    struct Un(__m256);
    #[repr(C, packed)]
    #[derive(Clone, Copy)]
    struct F1(f32);

    /// Unaligned 8 x f32 load.
    ///
    /// # Safety
    /// `p .. p + 8` must be readable f32s (any alignment).
    #[inline(always)]
    pub unsafe fn ld(p: *const f32) -> __m256 {
        // SAFETY: `Un` is packed (alignment 1) and 32 bytes, which the caller guarantees readable.
        unsafe { (*(p as *const Un)).0 }
    }
    /// Unaligned 8 x f32 store.
    ///
    /// # Safety
    /// `p .. p + 8` must be writable f32s (any alignment) that no other thread accesses meanwhile.
    #[inline(always)]
    pub unsafe fn st(p: *mut f32, v: __m256) {
        // SAFETY: `Un` is packed (alignment 1) and 32 bytes, which the caller guarantees writable.
        unsafe { (*(p as *mut Un)).0 = v }
    }
    /// Broadcast of one f32.
    ///
    /// # Safety
    /// `p` must point to a readable f32 (any alignment).
    #[inline(always)]
    pub unsafe fn bc(p: *const f32) -> __m256 {
        // SAFETY: `F1` is packed (alignment 1), one f32 the caller guarantees readable.
        _mm256_set1_ps(unsafe { (*(p as *const F1)).0 })
    }

    /// 8-wide exp_fast.
    #[inline(always)]
    pub fn exp8(x: __m256) -> __m256 {
        // SAFETY: value-only AVX2/FMA intrinsics; this module is compiled only with avx2 and fma enabled (cfg), so the CPU has them.
        unsafe {
            let x = _mm256_min_ps(
                _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
                _mm256_set1_ps(88.3),
            );
            let magic = _mm256_set1_ps(12_582_912.0);
            let t = _mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), magic);
            let fx = _mm256_sub_ps(t, magic);
            let n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
            let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
            let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), r);
            let z = _mm256_mul_ps(r, r);
            let mut y = _mm256_set1_ps(1.987_569_1e-4);
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.398_199_9e-3));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.333_452e-3));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.166_579_6e-2));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.666_666_5e-1));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.000_000_1e-1));
            y = _mm256_add_ps(_mm256_fmadd_ps(y, z, r), _mm256_set1_ps(1.0));
            let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_add_epi32(n, _mm256_set1_epi32(127)),
                23,
            ));
            _mm256_mul_ps(y, pow2n)
        }
    }

    /// SiLU of 6 vectors in place, computed stage by stage so that the six dependency chains
    /// interleave (one `silu8` after another is latency-bound). Same arithmetic as [`silu8`].
    #[inline(always)]
    pub fn silu8x6(v: &mut [__m256; 6]) {
        silu8xn(v)
    }

    /// SiLU of N vectors in place, stage by stage (see [`silu8x6`]).
    ///
    /// x / (1 + 2^t) with t = -x log2(e) clamped to [-126, 125]: 2^t = 2^round(t) (exponent bits) times
    /// a degree-5 polynomial of the remainder in [-0.5, 0.5] (relative error 2e-7, like `exp_fast`),
    /// and the division as a reciprocal estimate + one Newton step. 19 operations per vector: a
    /// quarter fewer than through `exp_fast` with its two-constant range reduction.
    #[inline(always)]
    pub fn silu8xn<const N: usize>(v: &mut [__m256; N]) {
        // SAFETY: value-only AVX2/FMA intrinsics; this module is compiled only with avx2 and fma enabled (cfg), so the CPU has them.
        unsafe {
            let zero = _mm256_setzero_ps();
            let (lo, hi) = (_mm256_set1_ps(-126.0), _mm256_set1_ps(125.0));
            let magic = _mm256_set1_ps(12_582_912.0); // 1.5 * 2^23: adding it rounds to an integer
            let neg_log2e = _mm256_set1_ps(-std::f32::consts::LOG2_E);
            let mut t = [zero; N];
            let mut r = [zero; N];
            for i in 0..N {
                t[i] = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], neg_log2e), lo), hi);
            }
            for i in 0..N {
                r[i] = _mm256_add_ps(t[i], magic);
            }
            let mut f = [zero; N];
            for i in 0..N {
                f[i] = _mm256_sub_ps(t[i], _mm256_sub_ps(r[i], magic));
            }
            let mut y = [_mm256_set1_ps(POW2_POLY[5]); N];
            for c in [
                POW2_POLY[4],
                POW2_POLY[3],
                POW2_POLY[2],
                POW2_POLY[1],
                POW2_POLY[0],
            ] {
                let cv = _mm256_set1_ps(c);
                for i in 0..N {
                    y[i] = _mm256_fmadd_ps(y[i], f[i], cv);
                }
            }
            // 2^round(t): the integer sits in the low mantissa bits of r; shifted into the exponent
            // field (magic's own bits shift out: 0x4B400000 << 23 = 0) and biased by 127
            let bias = _mm256_set1_epi32(127 << 23);
            let one = _mm256_set1_ps(1.0);
            let two = _mm256_set1_ps(2.0);
            for i in 0..N {
                let pow2n = _mm256_castsi256_ps(_mm256_add_epi32(
                    _mm256_slli_epi32(_mm256_castps_si256(r[i]), 23),
                    bias,
                ));
                y[i] = _mm256_fmadd_ps(y[i], pow2n, one);
            }
            for i in 0..N {
                let q = _mm256_rcp_ps(y[i]);
                let q = _mm256_mul_ps(q, _mm256_fnmadd_ps(y[i], q, two));
                v[i] = _mm256_mul_ps(v[i], q);
            }
        }
    }

    /// 2^f on [-0.5, 0.5], c0 + c1 f + ... + c5 f^5 (fitted to relative error; max 2.0e-7 in f32).
    const POW2_POLY: [f32; 6] = [
        1.000_000_1,
        0.693_147_06,
        0.240_221_11,
        0.055_506,
        0.009_675_888,
        0.001_331_336_1,
    ];

    /// 8-wide SiLU, the arithmetic of [`silu8xn`].
    #[inline(always)]
    pub fn silu8(x: __m256) -> __m256 {
        let mut v = [x];
        silu8xn(&mut v);
        v[0]
    }

    /// dst_even[j] = src[2j], dst_odd[j] = src[2j + 1] for the first 16 * (src.len() / 16) values
    /// of src (panics if a destination is shorter than half of that).
    pub fn deinterleave2(src: &[f32], dst_even: &mut [f32], dst_odd: &mut [f32]) {
        // SAFETY: reads src[16 i .. 16 i + 16] with 16 i + 16 <= 16 n <= src.len(), writes dst_even/dst_odd[8 i .. 8 i + 8] with 8 i + 8 <= 8 n <= their lengths (asserted above; distinct &mut slices); AVX2 present by cfg.
        unsafe {
            let n = src.len() / 16;
            assert!(dst_even.len() >= n * 8 && dst_odd.len() >= n * 8);
            let (s, e, o) = (src.as_ptr(), dst_even.as_mut_ptr(), dst_odd.as_mut_ptr());
            for i in 0..n {
                let (a, b) = (ld(s.wrapping_add(16 * i)), ld(s.wrapping_add(16 * i + 8)));
                let ev = _mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(
                    _mm256_shuffle_ps::<0x88>(a, b),
                ));
                let od = _mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(
                    _mm256_shuffle_ps::<0xDD>(a, b),
                ));
                st(e.wrapping_add(8 * i), _mm256_castpd_ps(ev));
                st(o.wrapping_add(8 * i), _mm256_castpd_ps(od));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SiLU against f64, with the clamps (large |x|: exactly x, or 0).
    fn check_silu(got: f32, x: f32) {
        let r = (x as f64 / (1.0 + (-x as f64).exp())) as f32;
        assert!(
            (got - r).abs() <= 1e-6 * r.abs().max(1.0),
            "silu({x}): {got} vs {r}"
        );
    }

    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.05).collect();
        v.extend([-1e30, -1000.0, -100.0, -88.0, 87.0, 100.0, 1000.0, 1e30]);
        v
    }

    #[test]
    fn exp_fast_is_accurate() {
        let mut x = -80.0f32;
        while x < 80.0 {
            let a = exp_fast(x);
            let b = x.exp();
            assert!(((a - b) / b).abs() < 1e-6, "x={x} {a} {b}");
            x += 0.37;
        }
    }

    #[test]
    fn scalar_silu_and_sigmoid_match_f64() {
        for x in inputs() {
            check_silu(silu(x), x);
            let r = (1.0 / (1.0 + (-x as f64).exp())) as f32;
            assert!((sigmoid(x) - r).abs() <= 1e-6, "sigmoid({x})");
        }
    }

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[test]
    fn avx2_exp_silu_match_scalar() {
        let v = inputs();
        for c in v.chunks_exact(8) {
            // SAFETY: c has 8 floats; out is 8 floats.
            let x = unsafe { avx2::ld(c.as_ptr()) };
            let mut out = [0f32; 8];
            unsafe { avx2::st(out.as_mut_ptr(), avx2::silu8(x)) };
            for (o, x) in out.iter().zip(c) {
                check_silu(*o, *x);
            }
            let mut six = [x; 6];
            avx2::silu8x6(&mut six);
            let mut out6 = [0f32; 8];
            // SAFETY: out6 has 8 floats.
            unsafe { avx2::st(out6.as_mut_ptr(), six[5]) };
            assert_eq!(out, out6);
            // SAFETY: out has 8 floats.
            unsafe { avx2::st(out.as_mut_ptr(), avx2::exp8(x)) };
            for (o, x) in out.iter().zip(c) {
                let r = exp_fast(*x);
                assert!((o - r).abs() <= 1e-6 * r.abs(), "exp8({x}): {o} vs {r}");
            }
        }
    }

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[test]
    fn deinterleave2_splits_even_and_odd() {
        for n in [0usize, 15, 16, 17, 48, 53] {
            let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let full = n / 16 * 16;
            let (mut e, mut o) = (vec![-1f32; full / 2 + 1], vec![-1f32; full / 2 + 1]);
            avx2::deinterleave2(&src, &mut e, &mut o);
            for j in 0..full / 2 {
                assert_eq!((e[j], o[j]), (src[2 * j], src[2 * j + 1]), "n {n} j {j}");
            }
            assert_eq!(
                (e[full / 2], o[full / 2]),
                (-1.0, -1.0),
                "n {n}: wrote past the end"
            );
        }
    }
}
