//! The GEMM driver: loops over K blocks, pixel panels and weight panels around the micro-kernels
//! ([`gemm_tile`], [`gemm_tile_to`], [`gemm_tile_offs`]: one tile of C on the calling thread), and
//! [`matmul`], a plain threaded matrix product (column tiles over the rayon pool).
//!
//! Unsafe boundary: the tile functions write C through a raw [`Dst`] and are `unsafe fn`s (their
//! callers split C between threads); they check A, B, bias and the implicit-im2col reads against
//! their slices before any kernel runs. [`matmul`] is the safe wrapper over a `&mut [f32]` C.

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use super::micro::micro8;
use super::micro::{micro, BSrc, VPlan};
use super::pack::{pack_a_strided, pack_b_row};
use super::{Dst, Kernel, KC, MR, NR};
use crate::kernels::pool::{PBuf, SendPtr};

/// C[m, ncols] (row stride ldc) = act(A·B + bias) for one packed tile: `ap` packed A ([m/MR][k][MR]),
/// `bp` packed B ([ncols/NR][k][NR]), `bias` of length >= m rounded up to MR (all checked).
///
/// # Safety
/// For each row r < m and each column j < ncols that the plain destination `(c, ldc)` keeps (all of them for a plain the plain destination `(c, ldc)`;
/// wide columns with `(dst.q + j) % dst.w2 < dst.ow` otherwise), `c + r ldc + j`
/// must be writable and untouched by other threads during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_tile(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    bp: &[f32],
    bias: &[f32],
    act: bool,
    c: *mut f32,
    ldc: usize,
    kernel: Kernel,
) {
    // SAFETY: forwarded contract (a plain destination keeps every column).
    unsafe {
        gemm_packed(
            m,
            ncols,
            k,
            ap,
            bp,
            bias,
            act,
            Dst::plain(c, ldc),
            false,
            kernel,
        )
    }
}

/// [`gemm_tile`] into a feature map (its rows `dst.ldc` apart, possibly through the wide-row mapping
/// of [`gemm_tile_offs`]).
///
/// # Safety
/// For each row r < m and each column j < ncols that `dst` keeps (all of them for a plain `dst`;
/// wide columns with `(dst.q + j) % dst.w2 < dst.ow` otherwise), `dst.c + r dst.ldc + col(j)`
/// must be writable and untouched by other threads during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_tile_to(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    bp: &[f32],
    bias: &[f32],
    act: bool,
    dst: Dst,
    kernel: Kernel,
) {
    // SAFETY: forwarded contract.
    unsafe { gemm_packed(m, ncols, k, ap, bp, bias, act, dst, true, kernel) }
}

/// # Safety
/// As for [`gemm_tile_to`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_packed(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    bp: &[f32],
    bias: &[f32],
    act: bool,
    dst: Dst,
    rows_first: bool,
    kernel: Kernel,
) {
    let npanels = ncols.div_ceil(NR);
    assert!(bp.len() >= npanels * k * NR);
    let bsrc = |np, kb| BSrc::Packed(bp[(np * k + kb) * NR..].as_ptr());
    // SAFETY: every packed B panel the kernels read (npanels x k x NR floats) is in `bp`
    // (asserted); the destination is the caller's contract.
    unsafe {
        gemm_generic(
            m, ncols, k, KC, ap, bsrc, bias, act, dst, rows_first, kernel,
        )
    }
}

/// Like [`gemm_tile`] but without packing B: row r of B (for the tile's columns) is the contiguous run
/// `base[offs[r] ..]`, as produced by the padded phase planes of a convolution input.
/// Reads up to NR - 1 floats past the last column (junk columns, discarded by the caller).
/// `dst.q` is the wide column of the tile's first column.
///
/// # Safety
/// For each row r < m and each column j < ncols that `dst` keeps (all of them for a plain `dst`;
/// wide columns with `(dst.q + j) % dst.w2 < dst.ow` otherwise), `dst.c + r dst.ldc + col(j)`
/// must be writable and untouched by other threads during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_tile_offs(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    base: &[f32],
    offs: &[usize],
    bias: &[f32],
    act: bool,
    dst: Dst,
    kernel: Kernel,
) {
    assert!(offs.len() == k);
    let npanels = ncols.div_ceil(NR);
    let maxo = offs.iter().copied().max().unwrap_or(0);
    assert!(
        maxo + npanels * NR <= base.len(),
        "implicit im2col reads past the input planes"
    );
    // No K blocking: the rows come from many places in the planes anyway, and each extra block
    // costs a load and store of the C tile (whole K: strided layers 3-5 % faster than blocks of 192).
    // SAFETY: each B row the kernels read, base[offs[r] + np NR ..][..NR], lies in `base`
    // (asserted above); the destination is the caller's contract.
    unsafe {
        gemm_generic(
            m,
            ncols,
            k,
            k,
            ap,
            |np, kb| BSrc::Offs(base.as_ptr().wrapping_add(np * NR), offs[kb..].as_ptr()),
            bias,
            act,
            dst,
            false,
            kernel,
        )
    }
}

/// The loop nest around the micro-kernels (see [`gemm_tile_to`] for the two orders).
///
/// # Safety
/// `bsrc(np, kb)` must give B sources the micro-kernel may read for K rows kb .. k of pixel panel
/// np (NR floats each); `dst` as for [`gemm_tile_to`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gemm_generic(
    m: usize,
    ncols: usize,
    k: usize,
    kblock: usize,
    ap: &[f32],
    bsrc: impl Fn(usize, usize) -> BSrc,
    bias: &[f32],
    act: bool,
    dst: Dst,
    rows_first: bool,
    kernel: Kernel,
) {
    let mpanels = m.div_ceil(MR);
    let npanels = ncols.div_ceil(NR);
    assert!(ap.len() >= mpanels * k * MR && bias.len() >= mpanels * MR);
    let wide = kernel.is_wide();
    if rows_first {
        // Packed B into a feature map: weight panel by weight panel over the whole K, so that each
        // writes its 4 (8) output rows left to right; pixel panel by pixel panel (below) writes to
        // all M rows in turn, more streams than the prefetchers follow. The tile's packed B then
        // comes from L2 for each weight panel, and with AVX-512VL pairs of weight panels share each
        // B load (the 8-row kernel). 1 thread, 640x640: 1x1 convolutions 5-25 % faster (48 -> 64 at
        // 160x160: 2.9 -> 2.1 ms; 512 -> 256 at 20x20: 1.09 -> 1.02), all dense convolutions 3-5 %;
        // the implicit-im2col path (scattered B rows) and the Winograd GEMMs (into small scratch)
        // are faster in the other order.
        let panels: Vec<_> = (0..npanels)
            .map(|np| Panel::new(&bsrc, dst, ncols, np, 0))
            .collect();
        let mut mp = 0;
        while mp < mpanels {
            let mut step = 1;
            for p in &panels {
                // SAFETY: A and bias checked above, B and dst by the caller; `wide` only from a
                // wide `Kernel`, i.e. on a CPU with AVX-512VL.
                step = unsafe { tile(m, k, ap, bias, act, wide, mp, 0, k, p) };
            }
            mp += step;
        }
        return;
    }
    let mut kb = 0;
    while kb < k {
        let kc = kblock.min(k - kb);
        // each pixel panel (B, in L1) meets every weight panel (A, streamed from L2); the 8-row
        // kernel only where B is read through the tap offsets (with packed B in L1 it was slower)
        for np in 0..npanels {
            let p = Panel::new(&bsrc, dst, ncols, np, kb);
            let mut mp = 0;
            while mp < mpanels {
                let pair = wide && matches!(p.b, BSrc::Offs(..));
                // SAFETY: as in the rows-first loop above.
                mp += unsafe { tile(m, k, ap, bias, act, pair, mp, kb, kc, &p) };
            }
        }
        kb += kc;
    }
}

/// A pixel panel: where its B rows come from, where its columns go, how its vectors are stored.
struct Panel {
    b: BSrc,
    dst: Dst,
    plans: [VPlan; 3],
    nr: usize,
}

impl Panel {
    #[inline(always)]
    fn new(
        bsrc: &impl Fn(usize, usize) -> BSrc,
        dst: Dst,
        ncols: usize,
        np: usize,
        kb: usize,
    ) -> Self {
        let nr = NR.min(ncols - np * NR);
        let dst = dst.at(0, np * NR);
        let plans = [
            VPlan::new(dst, 0, nr),
            VPlan::new(dst, 8, nr),
            VPlan::new(dst, 16, nr),
        ];
        Panel {
            b: bsrc(np, kb),
            dst,
            plans,
            nr,
        }
    }
}

/// The micro-tile of weight panel `mp` (and `mp + 1` with the 8-row kernel when `pair`) over one
/// pixel panel for the k block kb .. kb + kc; returns how many weight panels it covered.
///
/// # Safety
/// `pair` only on a CPU with AVX-512F/VL; `ap` holds all panels of `m` rows over `k`, `bias` all
/// panels' rows; `p.b` readable and `p.dst` writable as for [`gemm_generic`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    m: usize,
    k: usize,
    ap: &[f32],
    bias: &[f32],
    act: bool,
    pair: bool,
    mp: usize,
    kb: usize,
    kc: usize,
    p: &Panel,
) -> usize {
    let (first, last) = (kb == 0, kb + kc == k);
    let a = ap[(mp * k + kb) * MR..].as_ptr();
    let bias = bias[mp * MR..].as_ptr();
    let dst = p.dst.at(mp * MR, 0);
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    if let (mr, 2) = panel_step(m, mp, pair) {
        // SAFETY: the caller's contract; rows mp MR .. mp MR + mr of A (two panels, `k MR` floats
        // apart) and bias exist as `(mp + 1) MR < m`.
        unsafe {
            micro8(
                kc,
                a,
                k * MR,
                p.b,
                dst,
                &p.plans,
                first,
                last,
                bias,
                act,
                mr,
                p.nr,
            )
        };
        return 2;
    }
    let (mr, _) = panel_step(m, mp, false);
    // SAFETY: the caller's contract, rows mp MR .. mp MR + mr (<= MR).
    unsafe { micro(kc, a, p.b, dst, &p.plans, first, last, bias, act, mr, p.nr) };
    1
}

/// The rows (and weight panels) the micro-tile at weight panel `mp` covers: 8 x 24 over two
/// panels when `pair` and a second panel exists, else 4 x 24 over one. Portable, so the wide
/// kernel's row split is tested on every machine.
#[inline(always)]
pub(crate) fn panel_step(m: usize, mp: usize, pair: bool) -> (usize, usize) {
    if pair && (mp + 1) * MR < m {
        ((2 * MR).min(m - mp * MR), 2)
    } else {
        (MR.min(m - mp * MR), 1)
    }
}

/// C[m, n] = A[m, k] · B[k, n], all row-major with row strides lda, ldb, ldc (C overwritten),
/// parallel over column tiles.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    kernel: Kernel,
) {
    use rayon::prelude::*;
    assert!(m > 0 && n > 0 && k > 0);
    assert!(
        a.len() >= (m - 1) * lda + k
            && b.len() >= (k - 1) * ldb + n
            && c.len() >= (m - 1) * ldc + n
    );
    let pa = pack_a_strided(a, m, k, lda);
    let bias = vec![0f32; m.div_ceil(MR) * MR];
    let threads = rayon::current_num_threads().max(1);
    let mut tn = ((160 * 1024 / 4) / k / NR).clamp(1, 42) * NR;
    if n.div_ceil(tn) < 2 * threads {
        tn = n.div_ceil(2 * threads).div_ceil(NR).max(1) * NR;
    }
    // tasks own disjoint column ranges p0 .. p1 of every row: rows must not overlap
    assert!(m == 1 || ldc >= n, "matmul: ldc {ldc} < n {n}");
    let cp = SendPtr(c.as_mut_ptr());
    (0..n.div_ceil(tn)).into_par_iter().for_each(|t| {
        let cp = cp;
        let p0 = t * tn;
        let p1 = (p0 + tn).min(n);
        let len = p1 - p0;
        let mut bp = PBuf::new(len.div_ceil(NR) * NR * k);
        for r in 0..k {
            pack_b_row(&b[r * ldb + p0..r * ldb + p1], r, k, &mut bp);
        }
        // SAFETY: this task writes rows 0 .. m, columns p0 .. p1 of C: inside `c` (asserted
        // length) and, as ldc >= n, disjoint from every other task's columns; `c` is borrowed
        // mutably for the whole parallel section.
        unsafe {
            gemm_tile(
                m,
                len,
                k,
                &pa,
                &bp,
                &bias,
                false,
                cp.0.wrapping_add(p0),
                ldc,
                kernel,
            )
        };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::pack_a;
    use crate::kernels::testutil::{kernels_to_test, pseudo, silu_ref, thread_pool};

    /// C = act(A B + bias), plainly, in f64.
    #[allow(clippy::too_many_arguments)]
    fn gemm_ref(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
        bias: &[f32],
        act: bool,
    ) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let mut acc = bias[r] as f64;
                for kk in 0..k {
                    acc += a[r * k + kk] as f64 * b[kk * n + j] as f64;
                }
                c[r * n + j] = if act {
                    silu_ref(acc as f32)
                } else {
                    acc as f32
                };
            }
        }
        c
    }

    fn close(got: &[f32], want: &[f32], k: usize, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let tol = 2e-5 * (k as f32).sqrt().max(1.0);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "{what} at {i}: {g} vs {w}"
            );
        }
    }

    /// Awkward shapes: M not a multiple of 4 or 8 (one or two weight panels, a partial pair), N not a
    /// multiple of 24 (partial pixel panels and vectors), K of 1, not a multiple of KC, over 2 KC.
    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (3, 7, 5),
        (4, 24, 8),
        (5, 25, 192),
        (8, 48, 193),
        (9, 71, 17),
        (13, 49, 400),
        (17, 23, 3),
        (12, 96, 64),
    ];

    fn operands(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (pseudo(m * k, 1), pseudo(k * n, 2), pseudo(m, 3))
    }

    fn pack_b(b: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut bp = vec![f32::NAN; n.div_ceil(NR) * NR * k];
        for r in 0..k {
            pack_b_row(&b[r * n..(r + 1) * n], r, k, &mut bp);
        }
        bp
    }

    /// Packed B, plain C: K-blocked, pixel panel by pixel panel (the Winograd GEMMs' order).
    #[test]
    fn packed_tile_matches_reference() {
        for (name, kernel) in kernels_to_test() {
            for &(m, n, k) in &SHAPES {
                for act in [false, true] {
                    let (a, b, bias) = operands(m, n, k);
                    let (ap, bp) = (pack_a(&a, m, k), pack_b(&b, n, k));
                    let mut bpad = bias.clone();
                    bpad.resize(m.div_ceil(MR) * MR, 0.0);
                    let mut c = vec![f32::NAN; m * n];
                    // SAFETY: c is m x n with ldc = n.
                    unsafe { gemm_tile(m, n, k, &ap, &bp, &bpad, act, c.as_mut_ptr(), n, kernel) };
                    close(
                        &c,
                        &gemm_ref(m, n, k, &a, &b, &bias, act),
                        k,
                        &format!("{name} {m}x{n}x{k} act {act}"),
                    );
                }
            }
        }
    }

    /// Packed B into a feature map whose rows are narrower than the wide rows (junk columns dropped),
    /// weight panel by weight panel: the order that pairs panels in the 8 x 24 kernel.
    #[test]
    fn packed_tile_into_wide_rows_matches_reference() {
        for (name, kernel) in kernels_to_test() {
            for &(m, k, oh, ow, w2, q0) in &[
                (9usize, 30usize, 5usize, 7usize, 9usize, 0usize),
                (13, 200, 4, 20, 22, 0),
                (8, 5, 3, 30, 31, 31),
                (5, 1, 6, 3, 5, 5),
            ] {
                let n = oh * w2 - q0; // wide columns of this tile, from q0
                let (a, b, bias) = operands(m, n, k);
                let mut bpad = bias.clone();
                bpad.resize(m.div_ceil(MR) * MR, 0.0);
                let (ap, bp) = (pack_a(&a, m, k), pack_b(&b, n, k));
                let want = gemm_ref(m, n, k, &a, &b, &bias, true);
                let mut c = vec![-7f32; m * oh * ow];
                let dst = Dst {
                    c: c.as_mut_ptr(),
                    ldc: oh * ow,
                    q: q0,
                    w2,
                    ow,
                };
                // SAFETY: kept columns map into the m x (oh ow) map.
                unsafe { gemm_tile_to(m, n, k, &ap, &bp, &bpad, true, dst, kernel) };
                for r in 0..m {
                    for j in 0..n {
                        let q = q0 + j;
                        let (row, x) = (q / w2, q % w2);
                        if x >= ow {
                            continue;
                        }
                        let (g, w) = (c[r * oh * ow + row * ow + x], want[r * n + j]);
                        assert!(
                            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                            "{name} m{m} k{k} ow{ow} w2{w2} r{r} j{j}: {g} vs {w}"
                        );
                    }
                }
                // columns before q0 untouched
                for r in 0..m {
                    for x in 0..q0.min(ow) {
                        assert_eq!(
                            c[r * oh * ow + x],
                            -7.0,
                            "{name}: wrote a column before the tile"
                        );
                    }
                }
            }
        }
    }

    /// Implicit B (rows at offsets into one buffer, as the phase planes give), the path that pairs
    /// weight panels over K blocks.
    #[test]
    fn implicit_b_tile_matches_reference() {
        for (name, kernel) in kernels_to_test() {
            for &(m, n, k) in &SHAPES {
                let (a, b, bias) = operands(m, n, k);
                // row r of B at base[offs[r] ..]: rows spaced n + 3 apart in reverse order
                let stride = n + 3;
                let mut base = vec![0f32; k * stride + NR];
                let offs: Vec<usize> = (0..k).map(|r| (k - 1 - r) * stride).collect();
                for r in 0..k {
                    base[offs[r]..offs[r] + n].copy_from_slice(&b[r * n..(r + 1) * n]);
                }
                let mut bpad = bias.clone();
                bpad.resize(m.div_ceil(MR) * MR, 0.0);
                let ap = pack_a(&a, m, k);
                let mut c = vec![f32::NAN; m * n];
                // SAFETY: c is m x n, plain.
                unsafe {
                    gemm_tile_offs(
                        m,
                        n,
                        k,
                        &ap,
                        &base,
                        &offs,
                        &bpad,
                        true,
                        Dst::plain(c.as_mut_ptr(), n),
                        kernel,
                    )
                };
                close(
                    &c,
                    &gemm_ref(m, n, k, &a, &b, &bias, true),
                    k,
                    &format!("{name} offs {m}x{n}x{k}"),
                );
            }
        }
    }

    /// The threaded product on 1 and 3 threads (tiles split across tasks), row strides > widths.
    #[test]
    fn matmul_threads_match_reference() {
        for threads in [1, 3] {
            let pool = thread_pool(threads);
            for (name, kernel) in kernels_to_test() {
                for &(m, n, k) in &[
                    (5usize, 300usize, 7usize),
                    (16, 1000, 33),
                    (3, 49, 500),
                    (1, 5, 1),
                ] {
                    let (lda, ldb, ldc) = (k + 2, n + 1, n + 5);
                    let (a, b) = (pseudo(m * lda, 4), pseudo(k * ldb, 5));
                    let mut c = vec![f32::NAN; m * ldc];
                    pool.install(|| matmul(m, n, k, &a, lda, &b, ldb, &mut c, ldc, kernel));
                    let ac: Vec<f32> = (0..m)
                        .flat_map(|r| a[r * lda..r * lda + k].to_vec())
                        .collect();
                    let bc: Vec<f32> = (0..k)
                        .flat_map(|r| b[r * ldb..r * ldb + n].to_vec())
                        .collect();
                    let want = gemm_ref(m, n, k, &ac, &bc, &vec![0.0; m], false);
                    let got: Vec<f32> = (0..m)
                        .flat_map(|r| c[r * ldc..r * ldc + n].to_vec())
                        .collect();
                    close(
                        &got,
                        &want,
                        k,
                        &format!("{name} matmul {m}x{n}x{k} on {threads}"),
                    );
                    for r in 0..m {
                        assert!(
                            c[r * ldc + n..(r + 1) * ldc].iter().all(|v| v.is_nan()),
                            "wrote past n"
                        );
                    }
                }
            }
        }
    }

    /// The wide kernel's row split, on any machine: stepping by `panel_step` covers every row of
    /// every weight panel exactly once, in tiles of at most 8 (paired) or 4 rows.
    #[test]
    fn panel_steps_cover_every_row_once() {
        for m in 1..40 {
            for pair in [false, true] {
                let mut covered = vec![0u8; m];
                let mut mp = 0;
                while mp < m.div_ceil(MR) {
                    let (rows, step) = panel_step(m, mp, pair);
                    assert!(rows <= step * MR && rows > 0);
                    assert!(pair || step == 1);
                    for c in &mut covered[mp * MR..mp * MR + rows] {
                        *c += 1;
                    }
                    mp += step;
                }
                assert!(
                    covered.iter().all(|&c| c == 1),
                    "m {m} pair {pair}: {covered:?}"
                );
            }
        }
    }

    /// The micro-kernel's throughput on cached data (a 3x3 convolution's tile: M = 128, K = 576,
    /// 120 columns): `KERNEL_REPS=20000 cargo test -p haven-pose --lib kernel_speed -- --ignored --nocapture`.
    /// ~110 GFLOP/s on the development machine's core (FMA peak ~116).
    #[test]
    #[ignore]
    fn kernel_speed_on_cached_data() {
        let (m, k, n) = (128, 576, 120);
        let (a, b, bias) = operands(m, n, k);
        let (ap, bp) = (pack_a(&a, m, k), pack_b(&b, n, k));
        let reps: usize = std::env::var("KERNEL_REPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        for (name, kernel) in kernels_to_test() {
            let mut c = vec![0f32; m * n];
            let mut best = f64::MAX;
            for _ in 0..reps {
                let t0 = std::time::Instant::now();
                // SAFETY: c is m x n.
                unsafe { gemm_tile(m, n, k, &ap, &bp, &bias, true, c.as_mut_ptr(), n, kernel) };
                best = best.min(t0.elapsed().as_secs_f64());
            }
            assert!(c.iter().all(|v| v.is_finite()));
            println!(
                "micro-kernel ({name}): {:.1} GFLOP/s (best of {reps})",
                2.0 * (m * n * k) as f64 / best / 1e9
            );
        }
    }
}
