//! Dense 3x3 stride-1 convolution by Winograd F(2x2, 3x3) and F(4x4, 3x3), in three named steps
//! per chunk of tiles:
//! 1. [`input_transform`]: V = Bᵀ d B of 8 tiles at a time, straight into packed GEMM operands;
//! 2. [`batched_gemm`]: 16 (36) GEMMs M = U V with the packed micro-kernel;
//! 3. [`output_transform`]: Y = Aᵀ M A + bias (+ SiLU) into the compact [cout, h, w] output.
//!
//! [`winograd`] plans the split of tiles and output channels over the rayon pool ([`plan`]) and
//! runs the steps. [`Wino`] holds the transformed weights U = G g Gᵀ (made at load time).
//!
//! Layering: imports `kernels::{gemm, planes, pool, simd}` only.
//! Unsafe boundary: the vector transforms read the phase planes and write the packed operands and
//! the output through raw pointers (`unsafe fn`s with `# Safety` contracts); [`winograd`] checks
//! the planes cover the furthest read and hands each task disjoint tiles / channels of the output.

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use std::cell::RefCell;
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use super::gemm::{gemm_tile, Kernel, NR};
use super::gemm::{pack_a, MR};
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use super::{
    planes::phase_planes,
    pool::{PBuf, SendPtr},
};
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use rayon::prelude::*;

/// Winograd weights U = G g Gᵀ: 16 (F(2x2, 3x3)) or 36 (F(4x4, 3x3)) matrices [cout, cin] (index
/// (R + 2) * row + column of the transformed tile), each packed for the micro-kernel; the bias is
/// applied after the output transform, so the GEMMs get a zero bias.
pub(crate) struct Wino {
    u: Vec<Vec<f32>>,
    zero: Vec<f32>,
}

/// Floats of transformed input (16 x cin x tiles) per tile chunk: ~512 KiB, half the L2.
const WINO_V_FLOATS: usize = 128 * 1024;
/// Floats of GEMM results (16 x cout x tiles) per output-transform pass.
const WINO_M_FLOATS: usize = 64 * 1024;

impl Wino {
    /// F(4x4, 3x3): U = G g Gᵀ with G 6 x 3, 36 matrices.
    pub(crate) fn new4(w: &[f32], cin: usize, cout: usize) -> Self {
        const G: [[f64; 3]; 6] = [
            [0.25, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        let mut u = vec![vec![0f32; cout * cin]; 36];
        for co in 0..cout {
            for ci in 0..cin {
                let g = &w[(co * cin + ci) * 9..(co * cin + ci + 1) * 9];
                let mut gg = [[0f64; 3]; 6];
                for i in 0..6 {
                    for j in 0..3 {
                        gg[i][j] = (0..3).map(|k| G[i][k] * g[k * 3 + j] as f64).sum();
                    }
                }
                for i in 0..6 {
                    for j in 0..6 {
                        let v: f64 = (0..3).map(|k| gg[i][k] * G[j][k]).sum();
                        u[i * 6 + j][co * cin + ci] = v as f32;
                    }
                }
            }
        }
        Wino {
            u: u.iter().map(|m| pack_a(m, cout, cin)).collect(),
            zero: vec![0f32; cout.div_ceil(MR) * MR],
        }
    }

    pub(crate) fn new(w: &[f32], cin: usize, cout: usize) -> Self {
        let mut u = vec![vec![0f32; cout * cin]; 16];
        for co in 0..cout {
            for ci in 0..cin {
                let g = &w[(co * cin + ci) * 9..(co * cin + ci + 1) * 9];
                // G g: 4 x 3
                let mut gg = [[0f32; 3]; 4];
                for j in 0..3 {
                    let (a, b, c) = (g[j], g[3 + j], g[6 + j]);
                    gg[0][j] = a;
                    gg[1][j] = 0.5 * (a + b + c);
                    gg[2][j] = 0.5 * (a - b + c);
                    gg[3][j] = c;
                }
                // (G g) Gᵀ: 4 x 4
                for (i, r) in gg.iter().enumerate() {
                    let (a, b, c) = (r[0], r[1], r[2]);
                    let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                    for (j, v) in row.iter().enumerate() {
                        u[i * 4 + j][co * cin + ci] = *v;
                    }
                }
            }
        }
        Wino {
            u: u.iter().map(|m| pack_a(m, cout, cin)).collect(),
            zero: vec![0f32; cout.div_ceil(MR) * MR],
        }
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
thread_local! {
    /// Winograd scratch: packed transformed input, GEMM results
    static WSCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Calls f(ty, tx_begin, tx_end, t_local) for each tile row segment of the tiles t0 .. t1 (row-major
/// tiles, tw per row); t_local is the index of (ty, tx_begin) relative to t0.
#[inline(always)]
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
fn for_tile_rows(t0: usize, t1: usize, tw: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    let mut t = t0;
    while t < t1 {
        let (ty, txa) = (t / tw, t % tw);
        let txb = tw.min(txa + (t1 - t));
        f(ty, txa, txb, t - t0);
        t += txb - txa;
    }
}

/// Winograd input transform V = Bᵀ d B of 8 horizontally adjacent 4 x 4 tiles (step 2) whose top-left
/// corner is at p (row stride wp); reads 4 rows of 18 floats. V[4 i + j] lane l = tile l's V[i][j].
///
/// # Safety
/// `p + r wp .. + 18` must be readable for r < 4.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn wino_in8(p: *const f32, wp: usize) -> [std::arch::x86_64::__m256; 16] {
    use crate::kernels::simd::avx2::ld;
    use std::arch::x86_64::*;
    #[inline(always)]
    fn deint(a: __m256, b: __m256) -> (__m256, __m256) {
        // SAFETY: value-only intrinsics; AVX2/FMA present by cfg.
        unsafe {
            let ev =
                _mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0x88>(a, b)));
            let od =
                _mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0xDD>(a, b)));
            (_mm256_castpd_ps(ev), _mm256_castpd_ps(od))
        }
    }
    let mut wr = [[_mm256_setzero_ps(); 4]; 4];
    for (r, wrr) in wr.iter_mut().enumerate() {
        let row = p.wrapping_add(r * wp);
        let (e0, o0) = deint(ld(row), ld(row.wrapping_add(8)));
        let (e1, o1) = deint(ld(row.wrapping_add(2)), ld(row.wrapping_add(10)));
        // columns 2l, 2l + 1, 2l + 2, 2l + 3 of tile l: e0, o0, e1, o1; d B
        wrr[0] = _mm256_sub_ps(e0, e1);
        wrr[1] = _mm256_add_ps(o0, e1);
        wrr[2] = _mm256_sub_ps(e1, o0);
        wrr[3] = _mm256_sub_ps(o0, o1);
    }
    let mut v = [_mm256_setzero_ps(); 16];
    for j in 0..4 {
        v[j] = _mm256_sub_ps(wr[0][j], wr[2][j]);
        v[4 + j] = _mm256_add_ps(wr[1][j], wr[2][j]);
        v[8 + j] = _mm256_sub_ps(wr[2][j], wr[1][j]);
        v[12 + j] = _mm256_sub_ps(wr[1][j], wr[3][j]);
    }
    v
}

/// F(4x4, 3x3) input transform V = Bᵀ d B of 8 horizontally adjacent 6 x 6 tiles (step 4) whose
/// top-left corner is at p (row stride wp); reads 6 rows of 36 floats. The lanes hold the tiles in
/// the order 0, 2, 4, 6, 1, 3, 5, 7 (what a 4-way de-interleave gives, and what the output transform's
/// 4 x 8 transpose wants), or 0 .. 7 if `natural` (partial groups at tile row ends).
///
/// # Safety
/// `p + r wp .. + 36` must be readable for r < 6.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn wino4_in8(p: *const f32, wp: usize, natural: bool) -> [std::arch::x86_64::__m256; 36] {
    use crate::kernels::simd::avx2::ld;
    use std::arch::x86_64::*;
    #[inline(always)]
    /// # Safety: `q .. q + 32` readable.
    unsafe fn deint4(q: *const f32) -> [__m256; 4] {
        let (a0, a1, a2, a3) = (
            ld(q),
            ld(q.wrapping_add(8)),
            ld(q.wrapping_add(16)),
            ld(q.wrapping_add(24)),
        );
        let t0 = _mm256_shuffle_ps::<0x88>(a0, a1);
        let t1 = _mm256_shuffle_ps::<0x88>(a2, a3);
        let t2 = _mm256_shuffle_ps::<0xDD>(a0, a1);
        let t3 = _mm256_shuffle_ps::<0xDD>(a2, a3);
        [
            _mm256_shuffle_ps::<0x88>(t0, t1),
            _mm256_shuffle_ps::<0x88>(t2, t3),
            _mm256_shuffle_ps::<0xDD>(t0, t1),
            _mm256_shuffle_ps::<0xDD>(t2, t3),
        ]
    }
    // Bᵀ applied to 6 values
    #[inline(always)]
    fn bt(c: [__m256; 6]) -> [__m256; 6] {
        // SAFETY: value-only intrinsics; AVX2/FMA present by cfg.
        unsafe {
            let four = _mm256_set1_ps(4.0);
            let five = _mm256_set1_ps(5.0);
            let two = _mm256_set1_ps(2.0);
            let a = _mm256_add_ps(c[3], c[4]);
            let b = _mm256_add_ps(c[1], c[2]);
            let e = _mm256_sub_ps(c[4], c[3]);
            let f = _mm256_sub_ps(c[1], c[2]);
            let g = _mm256_sub_ps(c[4], c[2]);
            let k = _mm256_sub_ps(c[3], c[1]);
            [
                _mm256_fnmadd_ps(five, c[2], _mm256_fmadd_ps(four, c[0], c[4])),
                _mm256_fnmadd_ps(four, b, a),
                _mm256_fmadd_ps(four, f, e),
                _mm256_fmadd_ps(two, k, g),
                _mm256_fnmadd_ps(two, k, g),
                _mm256_fnmadd_ps(five, c[3], _mm256_fmadd_ps(four, c[1], c[5])),
            ]
        }
    }
    let mut wr = [[_mm256_setzero_ps(); 6]; 6];
    for r in 0..6 {
        let row = p.wrapping_add(r * wp);
        let c = deint4(row);
        let d = deint4(row.wrapping_add(4));
        wr[r] = bt([c[0], c[1], c[2], c[3], d[0], d[1]]);
    }
    let mut v = [_mm256_setzero_ps(); 36];
    for j in 0..6 {
        let col = bt([wr[0][j], wr[1][j], wr[2][j], wr[3][j], wr[4][j], wr[5][j]]);
        for i in 0..6 {
            v[i * 6 + j] = col[i];
        }
    }
    if natural {
        let idx = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for x in v.iter_mut() {
            *x = _mm256_permutevar8x32_ps(*x, idx);
        }
    }
    v
}

/// F(4x4, 3x3) output transform Y = Aᵀ M A (+ bias, SiLU) of 8 horizontally adjacent tiles, M[xi] lane
/// l at m + xi * mstride + l (tile order as in [`wino4_in8`]). Stores the first `cols` (<= 32) columns
/// of the first `rows` rows of the 4 x 32 output block at o (row stride ow).
///
/// # Safety
/// `m + xi mstride .. + 8` readable for xi < 36; `o + i ow .. + cols` writable (and not accessed
/// by other threads) for i < rows.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
unsafe fn wino4_out8(
    m: *const f32,
    mstride: usize,
    bias: f32,
    act: bool,
    o: *mut f32,
    ow: usize,
    cols: usize,
    rows: usize,
    natural: bool,
) {
    use crate::kernels::simd::avx2::{ld, st};
    use std::arch::x86_64::*;
    // Aᵀ applied to 6 values
    #[inline(always)]
    fn at(c: [__m256; 6]) -> [__m256; 4] {
        // SAFETY: value-only intrinsics; AVX2/FMA present by cfg.
        unsafe {
            let a = _mm256_add_ps(c[1], c[2]);
            let b = _mm256_sub_ps(c[1], c[2]);
            let e = _mm256_add_ps(c[3], c[4]);
            let f = _mm256_sub_ps(c[3], c[4]);
            [
                _mm256_add_ps(_mm256_add_ps(c[0], a), e),
                _mm256_fmadd_ps(_mm256_set1_ps(2.0), f, b),
                _mm256_fmadd_ps(_mm256_set1_ps(4.0), e, a),
                _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0), f, b), c[5]),
            ]
        }
    }
    let mv = |xi: usize| ld(m.wrapping_add(xi * mstride));
    let mut s = [[_mm256_setzero_ps(); 4]; 6];
    for r in 0..6 {
        s[r] = at([
            mv(r * 6),
            mv(r * 6 + 1),
            mv(r * 6 + 2),
            mv(r * 6 + 3),
            mv(r * 6 + 4),
            mv(r * 6 + 5),
        ]);
    }
    let bv = _mm256_set1_ps(bias);
    let mut y = [_mm256_setzero_ps(); 16];
    for j in 0..4 {
        let col = at([s[0][j], s[1][j], s[2][j], s[3][j], s[4][j], s[5][j]]);
        for i in 0..4 {
            y[i * 4 + j] = _mm256_add_ps(col[i], bv);
        }
    }
    if act {
        let (a, b) = y.split_at_mut(8);
        crate::kernels::simd::avx2::silu8xn::<8>(a.try_into().unwrap());
        crate::kernels::simd::avx2::silu8xn::<8>(b.try_into().unwrap());
    }
    if natural {
        let idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        for x in y.iter_mut() {
            *x = _mm256_permutevar8x32_ps(*x, idx);
        }
    }
    static MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    let mk = |n: usize| _mm256_loadu_si256(MASK.as_ptr().add(8 - n) as *const __m256i);
    for i in 0..rows {
        let (y0, y1, y2, y3) = (y[i * 4], y[i * 4 + 1], y[i * 4 + 2], y[i * 4 + 3]);
        let lo01 = _mm256_unpacklo_ps(y0, y1);
        let hi01 = _mm256_unpackhi_ps(y0, y1);
        let lo23 = _mm256_unpacklo_ps(y2, y3);
        let hi23 = _mm256_unpackhi_ps(y2, y3);
        let v = [
            _mm256_shuffle_ps::<0x44>(lo01, lo23),
            _mm256_shuffle_ps::<0xEE>(lo01, lo23),
            _mm256_shuffle_ps::<0x44>(hi01, hi23),
            _mm256_shuffle_ps::<0xEE>(hi01, hi23),
        ];
        let r = o.wrapping_add(i * ow);
        for (q, vq) in v.iter().enumerate() {
            let n = cols.saturating_sub(8 * q).min(8);
            if n == 8 {
                st(r.wrapping_add(8 * q), *vq);
            } else if n > 0 {
                _mm256_maskstore_ps(r.wrapping_add(8 * q), mk(n), *vq);
            }
        }
    }
}

/// Winograd output transform Y = Aᵀ M A (+ bias, SiLU) of 8 horizontally adjacent tiles: M[xi] lane l
/// at m + xi * mstride + l. Stores the first `cols` (<= 16) columns of the 2 x 16 output block at o
/// (row stride ow); the second row only if `row2`.
///
/// # Safety
/// `m + xi mstride .. + 8` readable for xi < 16; `o .. + cols` (and `o + ow .. + cols` if `row2`)
/// writable and not accessed by other threads.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
unsafe fn wino_out8(
    m: *const f32,
    mstride: usize,
    bias: f32,
    act: bool,
    o: *mut f32,
    ow: usize,
    cols: usize,
    row2: bool,
) {
    use crate::kernels::simd::avx2::{ld, st};
    use std::arch::x86_64::*;
    let mv = |xi: usize| ld(m.wrapping_add(xi * mstride));
    // Aᵀ M: s0 = M0 + M1 + M2, s1 = M1 - M2 - M3 (rows)
    let mut s = [[_mm256_setzero_ps(); 4]; 2];
    for j in 0..4 {
        let (a, b, c, d) = (mv(j), mv(4 + j), mv(8 + j), mv(12 + j));
        s[0][j] = _mm256_add_ps(_mm256_add_ps(a, b), c);
        s[1][j] = _mm256_sub_ps(_mm256_sub_ps(b, c), d);
    }
    let bv = _mm256_set1_ps(bias);
    let mut y = [_mm256_setzero_ps(); 4];
    for i in 0..2 {
        y[2 * i] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[i][0], s[i][1]), s[i][2]), bv);
        y[2 * i + 1] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[i][1], s[i][2]), s[i][3]), bv);
    }
    if act {
        crate::kernels::simd::avx2::silu8xn(&mut y);
    }
    static MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    let mk = |n: usize| _mm256_loadu_si256(MASK.as_ptr().add(8 - n.min(8)) as *const __m256i);
    for i in 0..if row2 { 2 } else { 1 } {
        let (a, b) = (y[2 * i], y[2 * i + 1]);
        let lo = _mm256_unpacklo_ps(a, b);
        let hi = _mm256_unpackhi_ps(a, b);
        let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
        let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
        let r = o.wrapping_add(i * ow);
        if cols == 16 {
            st(r, first);
            st(r.wrapping_add(8), second);
        } else {
            _mm256_maskstore_ps(r, mk(cols), first);
            if cols > 8 {
                _mm256_maskstore_ps(r.wrapping_add(8), mk(cols - 8), second);
            }
        }
    }
}

/// One Winograd layer: transformed weights, channels, bias, activation.
pub(crate) struct WinoLayer<'a> {
    pub wino: &'a Wino,
    pub cin: usize,
    pub cout: usize,
    pub bias: &'a [f32],
    pub act: bool,
}

/// How a layer's tiles and output channels are split into tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// tiles per chunk (a multiple of NR)
    pub tc: usize,
    pub nchunks: usize,
    /// output-channel chunks of `mcp` weight panels each
    pub mchunks: usize,
    pub mcp: usize,
    /// few tiles for the threads: transform the whole input once (split by channels), then split
    /// the GEMMs and output transform by output channels
    pub shared: bool,
}

/// The task split for `nt` tiles of a cin -> cout layer with `nx` transformed values per tile.
pub(crate) fn plan(nx: usize, cin: usize, cout: usize, nt: usize, threads: usize) -> Plan {
    let nr = super::gemm::NR;
    let mut tc = (WINO_V_FLOATS / nx / cin / nr).clamp(1, 10) * nr;
    if nt.div_ceil(tc) < 2 * threads {
        tc = nt.div_ceil(2 * threads).div_ceil(nr).max(1) * nr;
    }
    let nchunks = nt.div_ceil(tc);
    let mpanels = cout.div_ceil(MR);
    let shared = threads > 1 && nchunks < 4 * threads;
    let mchunks = if shared {
        (4 * threads).min(mpanels)
    } else if threads == 1 || nchunks >= 4 * threads {
        1
    } else {
        (4 * threads).div_ceil(nchunks).min(mpanels)
    };
    let mcp = mpanels.div_ceil(mchunks);
    let mchunks = mpanels.div_ceil(mcp);
    Plan {
        tc,
        nchunks,
        mchunks,
        mcp,
        shared,
    }
}

/// The input planes and the tile grid every step reads.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
struct Grid<'a> {
    /// zero-padded input planes (pad 1), `plane` floats apart, rows `wp` apart
    src: &'a [f32],
    plane: usize,
    wp: usize,
    /// tiles per row
    tw: usize,
    h: usize,
    w: usize,
}

/// Step 1: input transform of tiles t0 .. t1, channels c0 .. c1, channel by channel, straight into
/// the packed GEMM operands (`[n/NR][cin][NR]` per transformed value xi, `vst` apart, n = t1 - t0).
///
/// # Safety
/// `vp .. + nx vst` must be writable (vst >= (t1 - t0).div_ceil(NR) NR cin), rows (panel, c) for
/// c in c0 .. c1 not written by other threads meanwhile; `g.src` must cover every tile's reads
/// (checked by [`winograd`]).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(clippy::too_many_arguments)]
unsafe fn input_transform<const R: usize>(
    g: &Grid,
    cin: usize,
    vp: *mut f32,
    vst: usize,
    t0: usize,
    t1: usize,
    c0: usize,
    c1: usize,
) {
    use std::arch::x86_64::*;
    let nx = (R + 2) * (R + 2);
    // tiles are processed in increasing order, so the junk lanes past a tile row's end land
    // on tiles that are written afterwards (or on padding)
    static HEAD: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    for c in c0..c1 {
        let pc = g.src[c * g.plane..].as_ptr();
        for_tile_rows(t0, t1, g.tw, |ty, txa, txb, tl| {
            let mut tx = txa;
            while tx < txb {
                let t = tl + tx - txa;
                let (panel, off) = (t / NR, t % NR);
                let d = vp.wrapping_add((panel * cin + c) * NR + off);
                let pt = pc.wrapping_add(R * ty * g.wp + R * tx);
                let mut v = [_mm256_setzero_ps(); 36];
                // SAFETY: the tile group's R + 2 rows of 8 R + 2 (+ rounding) floats lie in the
                // planes (the caller's bound).
                unsafe {
                    if R == 2 {
                        v[..16].copy_from_slice(&wino_in8(pt, g.wp));
                    } else {
                        v = wino4_in8(pt, g.wp, txb - tx < 8);
                    }
                }
                // SAFETY (stores): lane l goes to tile t + l of row (panel, c): a whole vector when
                // it fits the panel's row (lanes past the tile row's end land on later tiles or
                // padding of the same row), else masked into this panel's row and, for tiles that
                // exist, the next panel's (panel + 1 < n.div_ceil(NR) then): all inside the
                // caller's `vp` region, in rows of channel c only.
                unsafe {
                    if off + 8 <= NR {
                        for (xi, vv) in v.iter().enumerate().take(nx) {
                            super::simd::avx2::st(d.wrapping_add(xi * vst), *vv);
                        }
                    } else {
                        // lanes 0 .. NR - off end this panel's row, the rest start the next
                        let k = NR - off;
                        let m1 = _mm256_loadu_si256(HEAD.as_ptr().add(8 - k) as *const __m256i);
                        let second = off + (txb - tx).min(8) > NR;
                        let m2 = _mm256_xor_si256(m1, _mm256_set1_epi32(-1));
                        // lane l of the second part goes to (panel + 1, c, l - k)
                        let d2 = d.wrapping_add(cin * NR - NR);
                        for (xi, vv) in v.iter().enumerate().take(nx) {
                            _mm256_maskstore_ps(d.wrapping_add(xi * vst), m1, *vv);
                            if second {
                                _mm256_maskstore_ps(d2.wrapping_add(xi * vst), m2, *vv);
                            }
                        }
                    }
                }
                tx += 8;
            }
        });
    }
}

/// Step 2: the nx GEMMs M[xi] = U[xi] V[xi] for output channels ms .. ms + ml over n tiles, into
/// `mb` (M[xi] at xi mstride, rows n apart).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(clippy::too_many_arguments)]
fn batched_gemm(
    l: &WinoLayer,
    nx: usize,
    vp: &[f32],
    vst: usize,
    n: usize,
    (ms, ml): (usize, usize),
    mb: &mut [f32],
    mstride: usize,
    kernel: Kernel,
) {
    let cin = l.cin;
    let vsz = n.div_ceil(NR) * NR * cin;
    assert!(ml * n <= mstride && mb.len() >= nx * mstride);
    for xi in 0..nx {
        let c = mb[xi * mstride..].as_mut_ptr();
        // SAFETY: M[xi] is ml rows of n floats at xi mstride, inside `mb` (asserted) and clear of
        // M[xi + 1] (ml n <= mstride); `mb` is borrowed mutably.
        unsafe {
            gemm_tile(
                ml,
                n,
                cin,
                &l.wino.u[xi][ms * cin..],
                &vp[xi * vst..xi * vst + vsz],
                &l.wino.zero,
                false,
                c,
                n,
                kernel,
            )
        };
    }
}

/// Step 3: output transform of tiles t0 .. t1 for output channels ms .. ms + ml from the GEMM
/// results in `mb`, + bias (+ SiLU), into the [cout, h, w] output at `out`.
///
/// # Safety
/// `out` must point to cout h w writable floats of which this call's channels and tiles are not
/// accessed by other threads; `mb` as left by [`batched_gemm`] for n = t1 - t0 with 8 floats of
/// slack past each M[xi] (`mstride` >= ml n + 32, `mb.len()` >= nx mstride + 8).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform<const R: usize>(
    g: &Grid,
    l: &WinoLayer,
    mb: &[f32],
    mstride: usize,
    (t0, t1): (usize, usize),
    (ms, ml): (usize, usize),
    out: *mut f32,
) {
    let (h, w, n) = (g.h, g.w, t1 - t0);
    for co in 0..ml {
        let bias = l.bias[ms + co];
        let oc = out.wrapping_add((ms + co) * h * w);
        let mrow = mb[co * n..].as_ptr();
        for_tile_rows(t0, t1, g.tw, |ty, txa, txb, tl| {
            let mut tx = txa;
            while tx < txb {
                let cnt = (txb - tx).min(8);
                let mt = mrow.wrapping_add(tl + tx - txa);
                let o = oc.wrapping_add(R * ty * w + R * tx);
                let cols = (R * cnt).min(w - R * tx);
                // SAFETY: reads 8 lanes of each M[xi] from tile tl + tx - txa < n (the last group's
                // extra lanes fall in the slack); writes rows R ty .. (< h) and `cols` columns from
                // R tx (<= w) of channel ms + co: the caller's region.
                unsafe {
                    if R == 2 {
                        wino_out8(mt, mstride, bias, l.act, o, w, cols, 2 * ty + 1 < h);
                    } else {
                        wino4_out8(
                            mt,
                            mstride,
                            bias,
                            l.act,
                            o,
                            w,
                            cols,
                            (h - R * ty).min(R),
                            cnt < 8,
                        );
                    }
                }
                tx += 8;
            }
        });
    }
}

/// Nanoseconds in the Winograd input transform, GEMMs and output transform (conv profile).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
static WINO_NS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Adds the time since `t` (if profiling) to phase `i` of [`WINO_NS`] and restarts it.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
fn wino_lap(t: &mut Option<std::time::Instant>, i: usize) {
    if let Some(t) = t {
        WINO_NS[i].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        *t = std::time::Instant::now();
    }
}

/// Dense 3x3 stride-1 convolution x [cin, h, w] -> out [cout, h, w] by Winograd F(R x R, 3x3),
/// R = 2 or 4 (`l.wino` made by [`Wino::new`] or [`Wino::new4`] respectively); `profile` prints
/// the time of each step to stderr.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn winograd<const R: usize>(
    l: &WinoLayer,
    x: &[f32],
    h: usize,
    w: usize,
    out: &mut [f32],
    kernel: Kernel,
    profile: bool,
) {
    const { assert!(R == 2 || R == 4) };
    let nx = (R + 2) * (R + 2);
    let (cin, cout) = (l.cin, l.cout);
    assert_eq!(l.wino.u.len(), nx, "Winograd weights for F({R},3)");
    assert!(x.len() == cin * h * w && out.len() == cout * h * w && l.bias.len() >= cout);
    let (th, tw) = (h.div_ceil(R), w.div_ceil(R));
    let nt = th * tw;
    let slack = (R + 1) * (w + 2) + R * tw + 8 * R + 64;
    let (planes, hp, wp) = phase_planes(x, cin, h, w, 1, 1, slack);
    let t_prep = profile.then(std::time::Instant::now);
    let plane = hp * wp;
    // the furthest input read: 8-tile groups of the last tile row read R + 2 rows and
    // 8 R + 2 columns (rounded up to whole vectors) from R tx
    assert!((cin - 1) * plane + (R * th + 1) * wp + R * tw + 8 * R + 4 <= planes.len());
    let threads = rayon::current_num_threads().max(1);
    let Plan {
        tc,
        nchunks,
        mchunks,
        mcp,
        shared,
    } = plan(nx, cin, cout, nt, threads);
    let g = Grid {
        src: &planes[..],
        plane,
        wp,
        tw,
        h,
        w,
    };
    let cp = SendPtr(out.as_mut_ptr());
    // GEMMs for output channels m0 .. mend over tiles t0 .. t1 and their output transform, in
    // passes of `msub` channels (M in scratch `mb`)
    let gemm_out = |vp: &[f32],
                    vst: usize,
                    mb: &mut Vec<f32>,
                    t0: usize,
                    t1: usize,
                    m0: usize,
                    mend: usize,
                    lap: &mut Option<std::time::Instant>| {
        let cp = cp;
        let n = t1 - t0;
        let msub = ((WINO_M_FLOATS / nx / n) / MR * MR).max(MR);
        let mstride = msub.min(mend - m0) * n + 32;
        if mb.len() < nx * mstride + 8 {
            mb.resize(nx * mstride + 8, 0.0);
        }
        let mut ms = m0;
        while ms < mend {
            let ml = msub.min(mend - ms);
            batched_gemm(l, nx, vp, vst, n, (ms, ml), mb, mstride, kernel);
            wino_lap(lap, 1);
            // SAFETY: `cp` is `out` (cout h w floats, borrowed mutably for this call); this task
            // owns tiles t0 .. t1 of channels ms .. ms + ml (tasks split tiles and channels into
            // disjoint chunks); `mb` sized above.
            unsafe { output_transform::<R>(&g, l, mb, mstride, (t0, t1), (ms, ml), cp.0) };
            wino_lap(lap, 2);
            ms += ml;
        }
    };
    // distance between the 16 (36) operands: not a multiple of 4 KiB, so that the streams of the
    // transforms do not all map to the same L1 sets
    let vstride = |n: usize| n.div_ceil(NR) * NR * cin + 32;
    if shared {
        // Few tiles for the threads: transform the whole input once (split by channels), then
        // split the GEMMs and output transform by output channels. Splitting tiles and output
        // channels together, as below, would transform each tile once per output chunk (32 -> 32
        // at 40x40: no faster on 2 threads than on 1).
        let vst = vstride(nt);
        let mut v = PBuf::new(nx * vst);
        let vpp = SendPtr(v.as_mut_ptr());
        let cgroups = cin.min(4 * threads);
        let mut lap = profile.then(std::time::Instant::now);
        (0..cgroups).into_par_iter().for_each(|gi| {
            let vpp = vpp;
            // SAFETY: `v` holds nx vst floats for all nt tiles; channel groups are disjoint, so
            // are the operand rows each task writes; the planes cover every read (asserted).
            unsafe {
                input_transform::<R>(
                    &g,
                    cin,
                    vpp.0,
                    vst,
                    0,
                    nt,
                    gi * cin / cgroups,
                    (gi + 1) * cin / cgroups,
                )
            }
        });
        wino_lap(&mut lap, 0);
        let v = &v[..];
        (0..mchunks).into_par_iter().for_each(|mi| {
            WSCRATCH.with(|sc| {
                let mb = &mut sc.borrow_mut().1;
                let m0 = mi * mcp * MR;
                let mend = (m0 + mcp * MR).min(cout);
                let mut lap = profile.then(std::time::Instant::now);
                gemm_out(v, vst, mb, 0, nt, m0, mend, &mut lap);
            })
        });
    } else {
        let run = |task: usize| {
            let (chunk, mi) = (task / mchunks, task % mchunks);
            let t0 = chunk * tc;
            let t1 = (t0 + tc).min(nt);
            let m0 = mi * mcp * MR;
            let mend = (m0 + mcp * MR).min(cout);
            WSCRATCH.with(|sc| {
                let mut sc = sc.borrow_mut();
                let (vp, mb) = &mut *sc;
                let vst = vstride(t1 - t0);
                if vp.len() < nx * vst {
                    vp.resize(nx * vst, 0.0);
                }
                let mut lap = profile.then(std::time::Instant::now);
                // SAFETY: this thread's scratch `vp` holds nx vst floats; the planes cover
                // every read (asserted).
                unsafe { input_transform::<R>(&g, cin, vp.as_mut_ptr(), vst, t0, t1, 0, cin) };
                wino_lap(&mut lap, 0);
                gemm_out(vp, vst, mb, t0, t1, m0, mend, &mut lap);
            });
        };
        let tasks = nchunks * mchunks;
        if tasks == 1 {
            run(0)
        } else {
            (0..tasks).into_par_iter().for_each(run);
        }
    }
    if profile {
        let dt = t_prep.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let fl = 2.0 * (cout * cin * 9 * h * w) as f64;
        // summed over the threads
        let wt: Vec<f64> = WINO_NS
            .iter()
            .map(|a| a.swap(0, Ordering::Relaxed) as f64 / 1e6)
            .collect();
        eprintln!("conv {cin}->{cout} k3 s1 {h}x{w}: winograd F({R},3) {:.2} ms (thread-ms: input transform {:.2}, gemm {:.2}, output transform {:.2}) {:.0} MFLOP {:.1} GFLOP/s (direct-equivalent; tiles {tc}, chunks {nchunks}x{mchunks})", dt * 1e3, wt[0], wt[1], wt[2], fl / 1e6, fl / dt / 1e9);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::NR;

    /// The task split covers every tile and output channel, in whole micro-kernel panels.
    #[test]
    fn plan_covers_tiles_and_channels() {
        for nx in [16, 36] {
            for &(cin, cout, nt) in &[
                (16, 16, 1),
                (64, 51, 100),
                (300, 9, 2),
                (32, 115, 1600),
                (512, 256, 25),
            ] {
                for threads in [1, 2, 3, 8] {
                    let p = plan(nx, cin, cout, nt, threads);
                    let what = format!("nx {nx} {cin}->{cout} nt {nt} threads {threads}: {p:?}");
                    assert!(p.tc % NR == 0 && p.tc > 0, "{what}");
                    assert!(
                        p.nchunks * p.tc >= nt && (p.nchunks - 1) * p.tc < nt,
                        "{what}"
                    );
                    let mpanels = cout.div_ceil(MR);
                    assert!(
                        p.mchunks * p.mcp >= mpanels && (p.mchunks - 1) * p.mcp < mpanels,
                        "{what}"
                    );
                    assert!(!p.shared || threads > 1, "{what}");
                }
            }
        }
    }

    /// F(2x2, 3x3) and F(4x4, 3x3) against a plain convolution: odd sizes (partial tiles and 8-tile
    /// groups), channel counts that are not multiples of the panel height, maps from 1x1 to many
    /// chunks, with and without SiLU, on 1 and 3 threads (both task splits), both micro-kernels.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[test]
    fn winograd_matches_reference() {
        use crate::kernels::testutil::{
            assert_close, conv_ref, kernels_to_test, pseudo, thread_pool,
        };
        for threads in [1, 3] {
            let pool = thread_pool(threads);
            for &(cin, cout, h, w, act) in &[
                (3, 5, 7, 9, true),
                (5, 7, 1, 1, true),
                (5, 7, 2, 3, false),
                (16, 13, 17, 33, true),
                (64, 51, 20, 20, true),
                (37, 70, 41, 39, false),
                (130, 115, 11, 12, true),
                (300, 9, 6, 5, false),
                (8, 16, 160, 37, true),
            ] {
                let (wt, b, x) = (
                    pseudo(cout * cin * 9, 1),
                    pseudo(cout, 2),
                    pseudo(cin * h * w, 3),
                );
                let want = conv_ref((cin, cout, 3, 1, 1), &wt, &b, act, &x, h, w);
                let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
                let (u2, u4) = (Wino::new(&wt, cin, cout), Wino::new4(&wt, cin, cout));
                for (name, kernel) in kernels_to_test() {
                    for r in [2, 4] {
                        let mut got = vec![f32::NAN; cout * h * w];
                        pool.install(|| {
                            let l = |wino| WinoLayer {
                                wino,
                                cin,
                                cout,
                                bias: &b,
                                act,
                            };
                            if r == 2 {
                                winograd::<2>(&l(&u2), &x, h, w, &mut got, kernel, false)
                            } else {
                                winograd::<4>(&l(&u4), &x, h, w, &mut got, kernel, false)
                            }
                        });
                        let what = format!(
                            "F({r},3) {cin}->{cout} {h}x{w} act {act} {name} {threads} thread(s)"
                        );
                        assert_close(&got, &want, 1e-4 * scale, &what);
                    }
                }
            }
        }
    }
}
