//! Packing for the 8-bit micro-kernels: A (weights, at load) into [M / MR][K / 4][MR][4] i8 panels,
//! B (a tile of input rows, per call) into [N / NR][K / 4][NR][4] u8 panels, K padded to a multiple
//! of 4 with zeros (zero weights: the padded B rows never count).
//!
//! Unsafe boundary: the SSE2 interleave (`interleave4_sse2`), reading 16 bytes from each of four
//! slices whose lengths it checks.

use super::{MR, NR};

/// K rounded up to the 4-groups of the dot products.
pub(crate) fn k4(k: usize) -> usize {
    k.div_ceil(4)
}

/// Quantized weights [m, k] -> panels of MR rows, [m.div_ceil(MR)][k4][MR][4], zero padded.
pub(crate) fn pack_a(q: &[i8], m: usize, k: usize) -> Vec<i8> {
    assert_eq!(q.len(), m * k);
    let kq = k4(k);
    let mut out = vec![0i8; m.div_ceil(MR) * kq * MR * 4];
    for r in 0..m {
        let (panel, rr) = (r / MR, r % MR);
        for (kk, &v) in q[r * k..(r + 1) * k].iter().enumerate() {
            out[((panel * kq + kk / 4) * MR + rr) * 4 + kk % 4] = v;
        }
    }
    out
}

/// Bytes of one packed B panel (NR columns) for K = `k`.
pub(crate) fn b_panel_len(k: usize) -> usize {
    k4(k) * NR * 4
}

/// Packs columns `p0 .. p0 + len` of the rows `src[offs[r] ..]` (r < K) into `out`, panel after
/// panel; columns past `len` in the last panel and rows past K are zero. Each row must have
/// `len.div_ceil(NR) * NR` readable bytes from `offs[r] + p0` (the planes' slack).
pub(crate) fn pack_b(src: &[u8], offs: &[usize], p0: usize, len: usize, out: &mut [u8]) {
    let k = offs.len();
    let (kq, panels) = (k4(k), len.div_ceil(NR));
    let plen = b_panel_len(k);
    assert!(out.len() >= panels * plen, "packed B buffer");
    for g in 0..kq {
        let zero: &[u8] = &[0u8; NR];
        let row = |j: usize| -> &[u8] {
            let r = 4 * g + j;
            if r < k {
                &src[offs[r] + p0..offs[r] + p0 + panels * NR]
            } else {
                zero
            }
        };
        let rows = [row(0), row(1), row(2), row(3)];
        for pi in 0..panels {
            let cols = (len - pi * NR).min(NR);
            let dst = &mut out[pi * plen + g * NR * 4..pi * plen + (g + 1) * NR * 4];
            let at = |j: usize| if rows[j].len() == NR { 0 } else { pi * NR };
            let r4 = [0, 1, 2, 3].map(|j| &rows[j][at(j)..at(j) + NR]);
            interleave4(r4, dst);
            if cols < NR {
                dst[cols * 4..].fill(0);
            }
        }
    }
}

/// dst[n·4 + j] = rows[j][n] for n < NR.
#[inline]
fn interleave4(rows: [&[u8]; 4], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        interleave4_sse2(rows, dst);
    }
    #[cfg(not(target_arch = "x86_64"))]
    for n in 0..NR {
        for j in 0..4 {
            dst[n * 4 + j] = rows[j][n];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn interleave4_sse2(rows: [&[u8]; 4], dst: &mut [u8]) {
    use std::arch::x86_64::*;
    assert!(rows.iter().all(|r| r.len() >= NR) && dst.len() >= NR * 4);
    for h in 0..NR / 16 {
        // SAFETY: SSE2 is part of x86_64; each row has NR >= 16 (h + 1) bytes and dst NR x 4 >=
        // 64 (h + 1) bytes (asserted above); unaligned loads and stores.
        unsafe {
            let ld = |r: &[u8]| _mm_loadu_si128(r.as_ptr().add(16 * h) as *const __m128i);
            let (a, b, c, d) = (ld(rows[0]), ld(rows[1]), ld(rows[2]), ld(rows[3]));
            let ab_lo = _mm_unpacklo_epi8(a, b);
            let ab_hi = _mm_unpackhi_epi8(a, b);
            let cd_lo = _mm_unpacklo_epi8(c, d);
            let cd_hi = _mm_unpackhi_epi8(c, d);
            let o = dst.as_mut_ptr().add(64 * h) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_layouts_hold_every_element() {
        let (m, k) = (11, 10);
        let q: Vec<i8> = (0..m * k).map(|i| (i % 120) as i8 - 60).collect();
        let a = pack_a(&q, m, k);
        let kq = k4(k);
        assert_eq!(a.len(), 2 * kq * MR * 4);
        for r in 0..2 * MR {
            for kk in 0..4 * kq {
                let want = if r < m && kk < k { q[r * k + kk] } else { 0 };
                assert_eq!(
                    a[(((r / MR) * kq + kk / 4) * MR + r % MR) * 4 + kk % 4],
                    want
                );
            }
        }
        // B: 7 rows at scattered offsets, 45 columns from p0 = 3 (two panels, the second partial)
        let src: Vec<u8> = (0..2000).map(|i| (i * 7 % 251) as u8).collect();
        let offs = [0, 100, 250, 251, 600, 900, 1200];
        let (p0, len) = (3, 45);
        let mut out = vec![9u8; 2 * b_panel_len(offs.len())];
        pack_b(&src, &offs, p0, len, &mut out);
        let plen = b_panel_len(offs.len());
        for n in 0..2 * NR {
            for r in 0..4 * k4(offs.len()) {
                let want = if r < offs.len() && n < len {
                    src[offs[r] + p0 + n]
                } else {
                    0
                };
                let got = out[(n / NR) * plen + (r / 4) * NR * 4 + (n % NR) * 4 + r % 4];
                assert_eq!(got, want, "col {n} row {r}");
            }
        }
    }
}
