//! Packing for the GEMM: A (weights) into [m/MR][k][MR] panels once at load time, B rows into
//! [n/NR][k][NR] panels per tile. Safe functions over slices (the AVX2 copy checks its bounds first).

use super::{MR, NR};

/// Packs A [m, k] (row-major) into panels [m/MR][k][MR], zero-padded rows.
pub(crate) fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    pack_a_strided(a, m, k, k)
}

/// Packs A [m, k] (row stride lda) into panels [m/MR][k][MR], zero-padded rows.
pub(crate) fn pack_a_strided(a: &[f32], m: usize, k: usize, lda: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut out = vec![0f32; panels * k * MR];
    for p in 0..panels {
        for r in 0..MR {
            let row = p * MR + r;
            if row >= m {
                continue;
            }
            for kk in 0..k {
                out[(p * k + kk) * MR + r] = a[row * lda + kk];
            }
        }
    }
    out
}

/// The inverse of [`pack_a`]: A [m, k] from its panels.
pub(crate) fn unpack_a(pa: &[f32], m: usize, k: usize) -> Vec<f32> {
    assert_eq!(pa.len(), m.div_ceil(MR) * k * MR, "packed A's length");
    let mut a = vec![0f32; m * k];
    for (row, dst) in a.chunks_exact_mut(k.max(1)).enumerate().take(m) {
        let (p, r) = (row / MR, row % MR);
        for (kk, v) in dst.iter_mut().enumerate() {
            *v = pa[(p * k + kk) * MR + r];
        }
    }
    a
}

/// Scatters one row (index `r` of K) of a tile's B values into the packed layout [n/NR][k][NR].
#[inline]
pub(crate) fn pack_b_row(row: &[f32], r: usize, k: usize, bp: &mut [f32]) {
    let len = row.len();
    let full = len / NR;
    assert!(bp.len() >= len.div_ceil(NR) * k * NR && r < k);
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: panel p reads row[p NR .. (p + 1) NR] (p < full = len / NR) and writes
    // bp[(p k + r) NR .. +NR], within bp since r < k and p < len.div_ceil(NR) (asserted above).
    unsafe {
        use crate::kernels::simd::avx2::{ld, st};
        let s = row.as_ptr();
        let d = bp.as_mut_ptr();
        for p in 0..full {
            let sp = s.wrapping_add(p * NR);
            let dp = d.wrapping_add((p * k + r) * NR);
            st(dp, ld(sp));
            st(dp.wrapping_add(8), ld(sp.wrapping_add(8)));
            st(dp.wrapping_add(16), ld(sp.wrapping_add(16)));
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    for p in 0..full {
        bp[(p * k + r) * NR..(p * k + r + 1) * NR].copy_from_slice(&row[p * NR..(p + 1) * NR]);
    }
    if full * NR < len {
        let dst = &mut bp[(full * k + r) * NR..(full * k + r + 1) * NR];
        let src = &row[full * NR..];
        dst[..src.len()].copy_from_slice(src);
        dst[src.len()..].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_layouts_hold_every_element() {
        let (m, k, lda) = (7, 5, 9);
        let a: Vec<f32> = (0..m * lda).map(|i| i as f32 + 1.0).collect();
        let pa = pack_a_strided(&a, m, k, lda);
        assert_eq!(pa.len(), m.div_ceil(MR) * k * MR);
        let compact: Vec<f32> = a.chunks(lda).flat_map(|r| r[..k].to_vec()).collect();
        assert_eq!(
            unpack_a(&pack_a(&compact, m, k), m, k),
            compact,
            "unpack_a inverts pack_a"
        );
        for p in 0..m.div_ceil(MR) {
            for kk in 0..k {
                for r in 0..MR {
                    let row = p * MR + r;
                    let want = if row < m { a[row * lda + kk] } else { 0.0 };
                    assert_eq!(pa[(p * k + kk) * MR + r], want);
                }
            }
        }
        // B: a 53-column tile (two full panels and a partial one), K = 3
        let (n, k) = (53usize, 3usize);
        let mut bp = vec![f32::NAN; n.div_ceil(NR) * k * NR];
        for r in 0..k {
            let row: Vec<f32> = (0..n).map(|j| (r * 1000 + j) as f32).collect();
            pack_b_row(&row, r, k, &mut bp);
        }
        for np in 0..n.div_ceil(NR) {
            for r in 0..k {
                for j in 0..NR {
                    let col = np * NR + j;
                    let want = if col < n {
                        (r * 1000 + col) as f32
                    } else {
                        0.0
                    };
                    assert_eq!(
                        bp[(np * k + r) * NR + j],
                        want,
                        "panel {np} row {r} col {j}"
                    );
                }
            }
        }
    }
}
