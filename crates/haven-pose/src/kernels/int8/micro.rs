//! The 8-bit micro-kernels: one MR x NR tile of i32 sums, C = init + A_panel · B_panel over the
//! whole (padded) K, written to a small buffer that the driver's epilogue dequantizes.
//!
//! * VNNI: 16 zmm accumulators (8 rows x 2 x 16 columns); per 4-group of K two B loads, and per
//!   row one broadcast of its 4 weights and two `vpdpbusd` (u8 x i8, four products summed into each
//!   i32 lane without intermediate saturation).
//! * AVX2: four passes of 4 rows x 16 columns (8 ymm accumulators); `vpmaddubsw` sums two u8 x i8
//!   products into a saturating i16, which its 7-bit weights keep exact (see the module header), and
//!   `vpmaddwd` by ones adds the pairs into i32.
//! * Scalar: the plain loops (portable fallback and the tests' reference).
//!
//! Unsafe boundary: `tile` checks the panel lengths and the CPU's features (through the
//! [`I8Kernel`] it is given), then calls the `unsafe fn` kernels, which read only within them.

use super::{I8Kernel, MR, NR};

/// One tile: out[r·NR + n] = init[r] + Σ_k a[k][r] · b[k][n] over `kq` 4-groups of K, with
/// `a` one packed A panel ([kq][MR][4] i8) and `b` one packed B panel ([kq][NR][4] u8).
pub(crate) fn tile(
    kernel: I8Kernel,
    kq: usize,
    a: &[i8],
    b: &[u8],
    init: &[i32; MR],
    out: &mut [i32; MR * NR],
) {
    assert!(
        a.len() >= kq * MR * 4 && b.len() >= kq * NR * 4,
        "int8 panels"
    );
    match kernel {
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        // SAFETY: an `I8Kernel::Vnni` is only made where the CPU has AVX-512F/BW/VNNI
        // (`I8Kernel::available`); the panels hold kq groups (asserted above); `out` is MR x NR.
        I8Kernel::Vnni => unsafe { tile_vnni(kq, a.as_ptr(), b.as_ptr(), init, out) },
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        // SAFETY: AVX2 is enabled at compile time (cfg); panel lengths asserted above.
        I8Kernel::Avx2 => unsafe { tile_avx2(kq, a.as_ptr(), b.as_ptr(), init, out) },
        _ => tile_scalar(kq, a, b, init, out),
    }
}

/// The plain loops.
pub(crate) fn tile_scalar(
    kq: usize,
    a: &[i8],
    b: &[u8],
    init: &[i32; MR],
    out: &mut [i32; MR * NR],
) {
    for r in 0..MR {
        for n in 0..NR {
            let mut s = init[r];
            for g in 0..kq {
                for j in 0..4 {
                    s += a[(g * MR + r) * 4 + j] as i32 * b[(g * NR + n) * 4 + j] as i32;
                }
            }
            out[r * NR + n] = s;
        }
    }
}

/// The 4 weights of row `r` in 4-group `g` as one i32 (for a broadcast).
///
/// # Safety
/// `a + (g·MR + r)·4 .. + 4` must be readable.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
#[inline(always)]
unsafe fn w4(a: *const i8, g: usize, r: usize) -> i32 {
    // SAFETY: the caller guarantees the 4 bytes; read unaligned.
    unsafe { std::ptr::read_unaligned(a.add((g * MR + r) * 4) as *const i32) }
}

/// # Safety
/// The CPU must have AVX-512F, AVX-512BW and AVX512-VNNI; `a` must hold kq·MR·4 bytes, `b`
/// kq·NR·4.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni(
    kq: usize,
    a: *const i8,
    b: *const u8,
    init: &[i32; MR],
    out: &mut [i32; MR * NR],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_si512(); 2]; MR];
    for r in 0..MR {
        let v = _mm512_set1_epi32(init[r]);
        acc[r] = [v, v];
    }
    for g in 0..kq {
        // SAFETY: group g of the B panel is bytes g·128 .. g·128 + 128 (NR = 32 columns x 4), within
        // the kq·NR·4 bytes the caller guarantees; `w4` reads within A's kq·MR·4 bytes.
        unsafe {
            let b0 = _mm512_loadu_si512(b.add(g * NR * 4) as *const _);
            let b1 = _mm512_loadu_si512(b.add(g * NR * 4 + 64) as *const _);
            for r in 0..MR {
                let w = _mm512_set1_epi32(w4(a, g, r));
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, w);
                acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, w);
            }
        }
    }
    let o = out.as_mut_ptr();
    for r in 0..MR {
        // SAFETY: row r's 32 i32s are out[r·NR .. r·NR + 32], within the MR x NR array.
        unsafe {
            _mm512_storeu_si512(o.add(r * NR) as *mut _, acc[r][0]);
            _mm512_storeu_si512(o.add(r * NR + 16) as *mut _, acc[r][1]);
        }
    }
}

/// # Safety
/// The CPU must have AVX2; `a` must hold kq·MR·4 bytes, `b` kq·NR·4.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2(
    kq: usize,
    a: *const i8,
    b: *const u8,
    init: &[i32; MR],
    out: &mut [i32; MR * NR],
) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let o = out.as_mut_ptr();
    for rh in 0..MR / 4 {
        for ch in 0..NR / 16 {
            let mut acc = [[_mm256_setzero_si256(); 2]; 4];
            for r in 0..4 {
                let v = _mm256_set1_epi32(init[rh * 4 + r]);
                acc[r] = [v, v];
            }
            for g in 0..kq {
                // SAFETY: columns ch·16 .. ch·16 + 16 of group g are bytes g·128 + ch·64 .. + 64 of
                // the B panel (kq·NR·4 bytes, caller); `w4` reads within A's kq·MR·4 bytes.
                unsafe {
                    let bp = b.add(g * NR * 4 + ch * 64);
                    let b0 = _mm256_loadu_si256(bp as *const __m256i);
                    let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
                    for r in 0..4 {
                        let w = _mm256_set1_epi32(w4(a, g, rh * 4 + r));
                        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(b0, w), ones);
                        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(b1, w), ones);
                        acc[r][0] = _mm256_add_epi32(acc[r][0], p0);
                        acc[r][1] = _mm256_add_epi32(acc[r][1], p1);
                    }
                }
            }
            for r in 0..4 {
                let at = (rh * 4 + r) * NR + ch * 16;
                // SAFETY: out[at .. at + 16] lies within row rh·4 + r of the MR x NR array.
                unsafe {
                    _mm256_storeu_si256(o.add(at) as *mut __m256i, acc[r][0]);
                    _mm256_storeu_si256(o.add(at + 8) as *mut __m256i, acc[r][1]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU runs gives the scalar loops' integers exactly, over its weight range, at
    /// the extremes (u8 255 against the largest weights: the AVX2 i16 pairs at their largest) and on
    /// random data.
    #[test]
    fn kernels_match_scalar_exactly() {
        let mut s = 12345u32;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for kernel in I8Kernel::available() {
            let qm = kernel.qmax_w();
            for kq in [1, 2, 7, 64, 300] {
                for case in 0..3 {
                    let a: Vec<i8> = (0..kq * MR * 4)
                        .map(|i| match case {
                            0 => qm as i8,
                            1 => {
                                if i % 2 == 0 {
                                    -qm as i8
                                } else {
                                    qm as i8
                                }
                            }
                            _ => ((rnd() % (2 * qm as u32 + 1)) as i32 - qm) as i8,
                        })
                        .collect();
                    let b: Vec<u8> = (0..kq * NR * 4)
                        .map(|_| if case < 2 { 255 } else { rnd() as u8 })
                        .collect();
                    let init: [i32; MR] = std::array::from_fn(|r| r as i32 * 1000 - 3000);
                    let mut want = [0i32; MR * NR];
                    tile_scalar(kq, &a, &b, &init, &mut want);
                    let mut got = [7i32; MR * NR];
                    tile(kernel, kq, &a, &b, &init, &mut got);
                    assert_eq!(got, want, "{kernel:?} kq {kq} case {case}");
                }
            }
        }
        let av = I8Kernel::available();
        if !av.contains(&I8Kernel::Vnni) {
            eprintln!("skipping the VNNI kernel: this CPU lacks AVX512-VNNI/BW; tested {av:?}");
        }
    }
}
