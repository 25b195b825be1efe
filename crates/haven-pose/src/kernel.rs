//! A small packed GEMM for convolutions, C[M, N] = A[M, K] · B[K, N] with a fused bias + SiLU epilogue.
//!
//! M = output channels, K = cin·k·k, N = output pixels (C row-major with row stride `ldc`, the feature
//! map's H·W). A (the weights, BatchNorm folded) is packed once at load time in panels of MR rows; B (the
//! im2col of a tile of output pixels, or the input itself for 1x1 convolutions) is packed per tile in
//! panels of NR columns. The AVX2/FMA micro-kernel keeps a 4 x 24 block of C in 12 ymm registers and
//! applies bias and SiLU before its single store, so every output value is written exactly once.

pub(crate) const MR: usize = 4;
pub(crate) const NR: usize = 24;
/// K block: a B sub-panel (KC x NR floats, 18 KiB) stays in L1 while every A panel passes over it.
pub(crate) const KC: usize = 192;

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

/// Scatters one row (index `r` of K) of a tile's B values into the packed layout [n/NR][k][NR].
#[inline]
pub(crate) fn pack_b_row(row: &[f32], r: usize, k: usize, bp: &mut [f32]) {
    let len = row.len();
    let full = len / NR;
    assert!(bp.len() >= len.div_ceil(NR) * k * NR && r < k);
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    unsafe {
        use crate::ops::avx2::{ld, st};
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
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
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

/// Where the micro-kernel reads B from.
#[derive(Clone, Copy)]
enum BSrc {
    /// packed panel: k-th row of the panel at ptr + k * NR
    Packed(*const f32),
    /// implicit im2col: k-th row at base + offs[k] (24 contiguous floats)
    Offs(*const f32, *const usize),
}

/// C[m, ncols] (row stride ldc) = act(A·B + bias) for one packed tile: `ap` packed A ([m/MR][k][MR]),
/// `bp` packed B ([ncols/NR][k][NR]), `bias` of length >= m rounded up to MR.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_tile(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    bp: &[f32],
    bias: &[f32],
    act: bool,
    c: *mut f32,
    ldc: usize,
) {
    gemm_packed(m, ncols, k, ap, bp, bias, act, Dst::plain(c, ldc), false)
}

/// [`gemm_tile`] into a feature map (its rows `dst.ldc` apart, possibly through the wide-row mapping
/// of [`gemm_tile_offs`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_tile_to(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    bp: &[f32],
    bias: &[f32],
    act: bool,
    dst: Dst,
) {
    gemm_packed(m, ncols, k, ap, bp, bias, act, dst, true)
}

#[allow(clippy::too_many_arguments)]
fn gemm_packed(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    bp: &[f32],
    bias: &[f32],
    act: bool,
    dst: Dst,
    rows_first: bool,
) {
    let npanels = ncols.div_ceil(NR);
    assert!(bp.len() >= npanels * k * NR);
    let bsrc = |np, kb| BSrc::Packed(bp[(np * k + kb) * NR..].as_ptr());
    gemm_generic(m, ncols, k, KC, ap, bsrc, bias, act, dst, rows_first)
}

/// Where a micro-tile's results go: column q of the (possibly wide) C maps to column
/// q - (q / w2) * (w2 - ow) of the compact output, and columns with q % w2 >= ow are dropped.
#[derive(Clone, Copy)]
pub(crate) struct Dst {
    /// row 0, column 0 of the compact output
    pub c: *mut f32,
    /// row stride of the compact output
    pub ldc: usize,
    /// wide column of the first column of this (tile / panel)
    pub q: usize,
    /// wide row width (usize::MAX: no mapping)
    pub w2: usize,
    /// compact row width
    pub ow: usize,
}

impl Dst {
    /// A plain row-major destination: no wide-row mapping.
    pub(crate) fn plain(c: *mut f32, ldc: usize) -> Dst {
        Dst {
            c,
            ldc,
            q: 0,
            w2: usize::MAX,
            ow: usize::MAX,
        }
    }

    #[inline(always)]
    fn at(self, rows: usize, cols: usize) -> Dst {
        Dst {
            c: self.c.wrapping_add(rows * self.ldc),
            q: self.q + cols,
            ..self
        }
    }
    /// The compact column of wide column `q + j`, or None for a dropped column.
    #[inline(always)]
    fn col(self, j: usize) -> Option<usize> {
        let q = self.q + j;
        if self.w2 == usize::MAX {
            return Some(q);
        }
        let (row, x) = (q / self.w2, q % self.w2);
        (x < self.ow).then_some(row * self.ow + x)
    }
}

/// How one 8-column vector of a micro-tile is stored.
#[derive(Clone, Copy)]
pub(crate) struct VPlan {
    /// 0: whole vector at `col`; 1: masked stores, lanes `m1` at `col` and lanes `m2` at `col2`;
    /// 2: element by element; 3: nothing to store
    kind: u8,
    col: usize,
    col2: isize,
    m1: [i32; 8],
    m2: [i32; 8],
}

impl VPlan {
    /// Plan for columns j0 .. j0 + 8 of the panel at `pd` (which has `nr` valid columns).
    fn new(pd: Dst, j0: usize, nr: usize) -> Self {
        let cols = nr.saturating_sub(j0).min(8);
        let mut p = VPlan {
            kind: 3,
            col: 0,
            col2: 0,
            m1: [0; 8],
            m2: [0; 8],
        };
        if cols == 0 {
            return p;
        }
        let q0 = pd.q + j0;
        if pd.w2 == usize::MAX {
            p.col = q0;
            p.kind = if cols == 8 { 0 } else { 1 };
            for l in 0..cols {
                p.m1[l] = -1;
            }
            return p;
        }
        let (row0, x0) = (q0 / pd.w2, q0 % pd.w2);
        p.col = row0 * pd.ow + x0;
        p.col2 = p.col as isize + pd.ow as isize - pd.w2 as isize;
        let mut n1 = 0;
        let (mut row, mut x) = (row0, x0);
        for l in 0..cols {
            if x < pd.ow {
                if row == row0 {
                    p.m1[l] = -1;
                    n1 += 1;
                } else if row == row0 + 1 {
                    p.m2[l] = -1;
                } else {
                    p.kind = 2;
                    return p;
                }
            }
            x += 1;
            if x == pd.w2 {
                x = 0;
                row += 1;
            }
        }
        p.kind = if n1 == 8 { 0 } else { 1 };
        p
    }
}

/// Like [`gemm_tile`] but without packing B: row r of B (for the tile's columns) is the contiguous run
/// `base[offs[r] ..]`, as produced by the padded phase planes of a convolution input.
/// Reads up to NR - 1 floats past the last column (junk columns, discarded by the caller).
/// `dst.q` is the wide column of the tile's first column.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_tile_offs(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    base: &[f32],
    offs: &[usize],
    bias: &[f32],
    act: bool,
    dst: Dst,
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
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm_generic(
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
) {
    let mpanels = m.div_ceil(MR);
    let npanels = ncols.div_ceil(NR);
    assert!(ap.len() >= mpanels * k * MR && bias.len() >= mpanels * MR);
    let wide = wide_kernel();
    if rows_first {
        // Packed B into a feature map: weight panel by weight panel over the whole K, so that each
        // writes its 4 (8) output rows left to right; pixel panel by pixel panel (below) writes to
        // all M rows in turn, more streams than the prefetchers follow. The tile's packed B then
        // comes from L2 for each weight panel, and with AVX-512VL pairs of weight panels share each
        // B load (the 8-row kernel). 1 thread, 640x640: 1x1 convolutions 5-25 % faster (48 -> 64 at
        // 160x160: 2.9 -> 2.1 ms; 512 -> 256 at 20x20: 1.09 -> 1.02), all dense convolutions 3-5 %;
        // the implicit-im2col path (scattered B rows) and the Winograd GEMMs (into small scratch)
        // are faster in the other order.
        let panels: Vec<_> = (0..npanels).map(|np| Panel::new(&bsrc, dst, ncols, np, 0)).collect();
        let mut mp = 0;
        while mp < mpanels {
            let mut step = 1;
            for p in &panels {
                step = tile(m, k, ap, bias, act, wide, mp, 0, k, p);
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
                mp += tile(m, k, ap, bias, act, wide && matches!(p.b, BSrc::Offs(..)), mp, kb, kc, &p);
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
    fn new(bsrc: &impl Fn(usize, usize) -> BSrc, dst: Dst, ncols: usize, np: usize, kb: usize) -> Self {
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
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile(
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
    if pair && (mp + 1) * MR < m {
        let mr = (2 * MR).min(m - mp * MR);
        unsafe { micro8(kc, a, k * MR, p.b, dst, &p.plans, first, last, bias, act, mr, p.nr) };
        return 2;
    }
    let mr = MR.min(m - mp * MR);
    unsafe { micro(kc, a, p.b, dst, &p.plans, first, last, bias, act, mr, p.nr) };
    1
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    kc: usize,
    a: *const f32,
    b: BSrc,
    dst: Dst,
    plans: &[VPlan; 3],
    first: bool,
    last: bool,
    bias: *const f32,
    act: bool,
    mr: usize,
    nr: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(MR == 4 && NR == 24);
    let mut acc = [_mm256_setzero_ps(); 12];
    if kc > 0 {
        // The k loop in assembly: 12 accumulators + 3 B vectors + 1 broadcast = all 16 ymm registers,
        // and no debug-build pointer checks inside the loop.
        let [mut c00, mut c01, mut c02, mut c10, mut c11, mut c12, mut c20, mut c21, mut c22, mut c30, mut c31, mut c32] =
            acc;
        // the k loop: three B loads (from `{p}`), four broadcasts of A, 12 multiply-adds; the B
        // pointer steps per variant (as in `micro8`)
        macro_rules! k_loop {
            ([$($pre:literal),*], [$($post:literal),*], $($b_ops:tt)*) => {
                std::arch::asm!(
                    "2:",
                    $($pre,)*
                    "vmovups {b0}, ymmword ptr [{p}]",
                    "vmovups {b1}, ymmword ptr [{p} + 32]",
                    "vmovups {b2}, ymmword ptr [{p} + 64]",
                    "vbroadcastss {t}, dword ptr [{a}]",
                    "vfmadd231ps {c00}, {t}, {b0}",
                    "vfmadd231ps {c01}, {t}, {b1}",
                    "vfmadd231ps {c02}, {t}, {b2}",
                    "vbroadcastss {t}, dword ptr [{a} + 4]",
                    "vfmadd231ps {c10}, {t}, {b0}",
                    "vfmadd231ps {c11}, {t}, {b1}",
                    "vfmadd231ps {c12}, {t}, {b2}",
                    "vbroadcastss {t}, dword ptr [{a} + 8]",
                    "vfmadd231ps {c20}, {t}, {b0}",
                    "vfmadd231ps {c21}, {t}, {b1}",
                    "vfmadd231ps {c22}, {t}, {b2}",
                    "vbroadcastss {t}, dword ptr [{a} + 12]",
                    "vfmadd231ps {c30}, {t}, {b0}",
                    "vfmadd231ps {c31}, {t}, {b1}",
                    "vfmadd231ps {c32}, {t}, {b2}",
                    "add {a}, 16",
                    $($post,)*
                    "dec {k}",
                    "jnz 2b",
                    $($b_ops)*
                    a = inout(reg) a => _,
                    k = inout(reg) kc => _,
                    b0 = out(ymm_reg) _,
                    b1 = out(ymm_reg) _,
                    b2 = out(ymm_reg) _,
                    t = out(ymm_reg) _,
                    c00 = inout(ymm_reg) c00,
                    c01 = inout(ymm_reg) c01,
                    c02 = inout(ymm_reg) c02,
                    c10 = inout(ymm_reg) c10,
                    c11 = inout(ymm_reg) c11,
                    c12 = inout(ymm_reg) c12,
                    c20 = inout(ymm_reg) c20,
                    c21 = inout(ymm_reg) c21,
                    c22 = inout(ymm_reg) c22,
                    c30 = inout(ymm_reg) c30,
                    c31 = inout(ymm_reg) c31,
                    c32 = inout(ymm_reg) c32,
                    options(nostack, readonly),
                )
            };
        }
        match b {
            BSrc::Packed(b) => k_loop!([], ["add {p}, 96"], p = inout(reg) b => _,),
            BSrc::Offs(base, offs) => k_loop!(
                ["mov {p}, qword ptr [{o}]", "lea {p}, [{base} + 4 * {p}]"],
                ["add {o}, 8"],
                base = in(reg) base,
                o = inout(reg) offs => _,
                p = out(reg) _,
            ),
        }
        acc = [c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32];
    }
    finish(acc, dst, plans, first, last, bias, act, mr, nr)
}

/// Stores a 4 x 24 tile of accumulators: adds the partial sums already in C (unless `first`), and
/// bias + SiLU on the last K block; `mr` rows and `nr` columns are valid.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish(
    acc: [std::arch::x86_64::__m256; 12],
    dst: Dst,
    plans: &[VPlan; 3],
    first: bool,
    last: bool,
    bias: *const f32,
    act: bool,
    mr: usize,
    nr: usize,
) {
    use crate::ops::avx2::{bc, ld, st};
    use std::arch::x86_64::*;
    // Common case: a full 4 x 24 tile stored as whole vectors; SiLU on all 12 vectors at once.
    if mr == MR && plans.iter().all(|p| p.kind == 0) {
        let mut v = acc;
        for r in 0..4 {
            let bv = bc(bias.wrapping_add(r));
            for j in 0..3 {
                let p = dst.c.wrapping_add(r * dst.ldc + plans[j].col);
                if !first {
                    v[r * 3 + j] = _mm256_add_ps(v[r * 3 + j], ld(p));
                }
                if last {
                    v[r * 3 + j] = _mm256_add_ps(v[r * 3 + j], bv);
                }
            }
        }
        if last && act {
            let (a, b) = v.split_at_mut(6);
            crate::ops::avx2::silu8x6(a.try_into().unwrap());
            crate::ops::avx2::silu8x6(b.try_into().unwrap());
        }
        for r in 0..4 {
            for j in 0..3 {
                st(dst.c.wrapping_add(r * dst.ldc + plans[j].col), v[r * 3 + j]);
            }
        }
        return;
    }
    let mask = |m: [i32; 8]| std::mem::transmute::<[i32; 8], __m256i>(m);
    // General case: some vectors straddle dropped (wide junk) columns or a tile edge. Vectors stored
    // whole or through masks (kinds 0 and 1) still get their SiLU computed for the whole tile at once
    // (12 interleaved chains; one `silu8` after another is latency-bound); kind 2 goes element by element.
    let mut v = acc;
    for (j, plan) in plans.iter().enumerate() {
        if plan.kind > 1 {
            continue;
        }
        let (m1, m2): (__m256i, __m256i) = (mask(plan.m1), mask(plan.m2));
        let any2 = plan.m2.iter().any(|&v| v != 0);
        for r in 0..mr {
            let row = dst.c.wrapping_add(r * dst.ldc);
            let x = &mut v[r * 3 + j];
            if !first {
                let old = if plan.kind == 0 {
                    ld(row.wrapping_add(plan.col))
                } else {
                    let mut old = _mm256_maskload_ps(row.wrapping_add(plan.col), m1);
                    if any2 {
                        old = _mm256_or_ps(
                            old,
                            _mm256_maskload_ps(row.wrapping_offset(plan.col2), m2),
                        );
                    }
                    old
                };
                *x = _mm256_add_ps(*x, old);
            }
            if last {
                *x = _mm256_add_ps(*x, bc(bias.wrapping_add(r)));
            }
        }
    }
    if last && act {
        let (a, b) = v.split_at_mut(6);
        crate::ops::avx2::silu8x6(a.try_into().unwrap());
        crate::ops::avx2::silu8x6(b.try_into().unwrap());
    }
    for (j, plan) in plans.iter().enumerate() {
        if plan.kind == 3 {
            break;
        }
        let (m1, m2): (__m256i, __m256i) = (mask(plan.m1), mask(plan.m2));
        let any2 = plan.m2.iter().any(|&v| v != 0);
        for r in 0..mr {
            let row = dst.c.wrapping_add(r * dst.ldc);
            match plan.kind {
                0 => st(row.wrapping_add(plan.col), v[r * 3 + j]),
                1 => {
                    _mm256_maskstore_ps(row.wrapping_add(plan.col), m1, v[r * 3 + j]);
                    if any2 {
                        _mm256_maskstore_ps(row.wrapping_offset(plan.col2), m2, v[r * 3 + j]);
                    }
                }
                _ => {
                    let mut lanes = [0f32; 8];
                    st(lanes.as_mut_ptr(), acc[r * 3 + j]);
                    let cols = 8.min(NR - 8 * j);
                    for (l, lv) in lanes.iter().enumerate().take(cols) {
                        if 8 * j + l >= nr {
                            break;
                        }
                        let Some(col) = dst.col(8 * j + l) else {
                            continue;
                        };
                        let p = row.add(col);
                        let mut x = *lv;
                        if !first {
                            x += *p;
                        }
                        if last {
                            x += *bias.add(r);
                            if act {
                                x = crate::ops::silu(x);
                            }
                        }
                        *p = x;
                    }
                }
            }
        }
    }
}

/// Whether this CPU has AVX-512VL, whose 32 vector registers let the micro-kernel hold an 8 x 24 tile
/// (two A panels over one B panel: half the B loads per multiply-add of the 4 x 24 kernel).
pub(crate) fn wide_kernel() -> bool {
    static W: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *W.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("HAVEN_WIDE_KERNEL").is_none_or(|v| v != "0")
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// The k step of the 8 x 24 kernel after its three B loads: eight broadcasts of A (rows 0-3 at
/// `{a}`, rows 4-7 `{d}` bytes further) into `{t}`/`{s}` in turn, 24 multiply-adds.
macro_rules! fma_8x24 {
    () => {
        concat!(
            "vbroadcastss {t:y}, dword ptr [{a}]\n",
            "vfmadd231ps {c00:y}, {t:y}, {b0:y}\n",
            "vfmadd231ps {c01:y}, {t:y}, {b1:y}\n",
            "vfmadd231ps {c02:y}, {t:y}, {b2:y}\n",
            "vbroadcastss {s:y}, dword ptr [{a} + 4]\n",
            "vfmadd231ps {c10:y}, {s:y}, {b0:y}\n",
            "vfmadd231ps {c11:y}, {s:y}, {b1:y}\n",
            "vfmadd231ps {c12:y}, {s:y}, {b2:y}\n",
            "vbroadcastss {t:y}, dword ptr [{a} + 8]\n",
            "vfmadd231ps {c20:y}, {t:y}, {b0:y}\n",
            "vfmadd231ps {c21:y}, {t:y}, {b1:y}\n",
            "vfmadd231ps {c22:y}, {t:y}, {b2:y}\n",
            "vbroadcastss {s:y}, dword ptr [{a} + 12]\n",
            "vfmadd231ps {c30:y}, {s:y}, {b0:y}\n",
            "vfmadd231ps {c31:y}, {s:y}, {b1:y}\n",
            "vfmadd231ps {c32:y}, {s:y}, {b2:y}\n",
            "vbroadcastss {t:y}, dword ptr [{a} + {d}]\n",
            "vfmadd231ps {c40:y}, {t:y}, {b0:y}\n",
            "vfmadd231ps {c41:y}, {t:y}, {b1:y}\n",
            "vfmadd231ps {c42:y}, {t:y}, {b2:y}\n",
            "vbroadcastss {s:y}, dword ptr [{a} + {d} + 4]\n",
            "vfmadd231ps {c50:y}, {s:y}, {b0:y}\n",
            "vfmadd231ps {c51:y}, {s:y}, {b1:y}\n",
            "vfmadd231ps {c52:y}, {s:y}, {b2:y}\n",
            "vbroadcastss {t:y}, dword ptr [{a} + {d} + 8]\n",
            "vfmadd231ps {c60:y}, {t:y}, {b0:y}\n",
            "vfmadd231ps {c61:y}, {t:y}, {b1:y}\n",
            "vfmadd231ps {c62:y}, {t:y}, {b2:y}\n",
            "vbroadcastss {s:y}, dword ptr [{a} + {d} + 12]\n",
            "vfmadd231ps {c70:y}, {s:y}, {b0:y}\n",
            "vfmadd231ps {c71:y}, {s:y}, {b1:y}\n",
            "vfmadd231ps {c72:y}, {s:y}, {b2:y}\n"
        )
    };
}

/// [`micro`] for two A panels at once (rows 0-3 at `a`, rows 4-7 at `a` + `panel` floats): 24
/// accumulators in the registers AVX-512VL adds (ymm16-31), still 256-bit arithmetic.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[target_feature(enable = "avx512f,avx512vl")]
#[allow(clippy::too_many_arguments, unused_assignments)]
unsafe fn micro8(
    kc: usize,
    a: *const f32,
    panel: usize,
    b: BSrc,
    dst: Dst,
    plans: &[VPlan; 3],
    first: bool,
    last: bool,
    bias: *const f32,
    act: bool,
    mr: usize,
    nr: usize,
) {
    use std::arch::x86_64::*;
    let mut c = [_mm256_setzero_ps(); 24];
    let dbytes = panel * 4;
    // typed scratch outputs: with `_` the `:y` modifier printed some of them as zmm registers
    let mut scratch = [_mm256_setzero_ps(); 5];
    if kc > 0 {
        // the k loop: three B loads (from `{p}`), then fma_8x24; the B pointer steps per variant
        macro_rules! k_loop {
            ([$($pre:literal),*], [$($post:literal),*], $($b_ops:tt)*) => {
                std::arch::asm!(
                    "2:",
                    $($pre,)*
                    "vmovups {b0:y}, ymmword ptr [{p}]",
                    "vmovups {b1:y}, ymmword ptr [{p} + 32]",
                    "vmovups {b2:y}, ymmword ptr [{p} + 64]",
                    fma_8x24!(),
                    "add {a}, 16",
                    $($post,)*
                    "dec {k}",
                    "jnz 2b",
                    $($b_ops)*
                    a = inout(reg) a => _,
                    d = in(reg) dbytes,
                    k = inout(reg) kc => _,
                    b0 = out(zmm_reg) scratch[0],
                    b1 = out(zmm_reg) scratch[1],
                    b2 = out(zmm_reg) scratch[2],
                    t = out(zmm_reg) scratch[3],
                    s = out(zmm_reg) scratch[4],
                    c00 = inout(zmm_reg) c[0],
                    c01 = inout(zmm_reg) c[1],
                    c02 = inout(zmm_reg) c[2],
                    c10 = inout(zmm_reg) c[3],
                    c11 = inout(zmm_reg) c[4],
                    c12 = inout(zmm_reg) c[5],
                    c20 = inout(zmm_reg) c[6],
                    c21 = inout(zmm_reg) c[7],
                    c22 = inout(zmm_reg) c[8],
                    c30 = inout(zmm_reg) c[9],
                    c31 = inout(zmm_reg) c[10],
                    c32 = inout(zmm_reg) c[11],
                    c40 = inout(zmm_reg) c[12],
                    c41 = inout(zmm_reg) c[13],
                    c42 = inout(zmm_reg) c[14],
                    c50 = inout(zmm_reg) c[15],
                    c51 = inout(zmm_reg) c[16],
                    c52 = inout(zmm_reg) c[17],
                    c60 = inout(zmm_reg) c[18],
                    c61 = inout(zmm_reg) c[19],
                    c62 = inout(zmm_reg) c[20],
                    c70 = inout(zmm_reg) c[21],
                    c71 = inout(zmm_reg) c[22],
                    c72 = inout(zmm_reg) c[23],
                    options(nostack, readonly),
                )
            };
        }
        match b {
            BSrc::Packed(b) => k_loop!([], ["add {p}, 96"], p = inout(reg) b => _,),
            BSrc::Offs(base, offs) => k_loop!(
                ["mov {p}, qword ptr [{o}]", "lea {p}, [{base} + 4 * {p}]"],
                ["add {o}, 8"],
                base = in(reg) base,
                o = inout(reg) offs => _,
                p = out(reg) _,
            ),
        }
    }
    let lo: [__m256; 12] = c[..12].try_into().unwrap();
    let hi: [__m256; 12] = c[12..].try_into().unwrap();
    finish(lo, dst, plans, first, last, bias, act, mr.min(MR), nr);
    if mr > MR {
        finish(hi, dst.at(MR, 0), plans, first, last, bias.wrapping_add(MR), act, mr - MR, nr);
    }
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    kc: usize,
    a: *const f32,
    b: BSrc,
    dst: Dst,
    _plans: &[VPlan; 3],
    first: bool,
    last: bool,
    bias: *const f32,
    act: bool,
    mr: usize,
    nr: usize,
) {
    let mut tmp = [0f32; MR * NR];
    for kk in 0..kc {
        let brow = match b {
            BSrc::Packed(p) => p.add(kk * NR),
            BSrc::Offs(base, offs) => base.add(*offs.add(kk)),
        };
        for r in 0..MR {
            let av = *a.add(kk * MR + r);
            for j in 0..NR {
                tmp[r * NR + j] += av * *brow.add(j);
            }
        }
    }
    finish_scalar(&tmp, dst, first, last, bias, act, mr, nr);
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish_scalar(
    tmp: &[f32; MR * NR],
    dst: Dst,
    first: bool,
    last: bool,
    bias: *const f32,
    act: bool,
    mr: usize,
    nr: usize,
) {
    for j in 0..nr {
        let Some(col) = dst.col(j) else { continue };
        for r in 0..mr {
            let p = dst.c.add(r * dst.ldc + col);
            let mut v = tmp[r * NR + j];
            if !first {
                v += *p;
            }
            if last {
                v += *bias.add(r);
                if act {
                    v = crate::ops::silu(v);
                }
            }
            *p = v;
        }
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
    let cp = crate::ops::SendPtr(c.as_mut_ptr());
    (0..n.div_ceil(tn)).into_par_iter().for_each(|t| {
        let cp = cp;
        let p0 = t * tn;
        let p1 = (p0 + tn).min(n);
        let len = p1 - p0;
        let mut bp = crate::ops::PBuf::new(len.div_ceil(NR) * NR * k);
        for r in 0..k {
            pack_b_row(&b[r * ldb + p0..r * ldb + p1], r, k, &mut bp);
        }
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
        );
    });
}

#[cfg(all(
    test,
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod tests {
    use super::*;

    /// The micro-kernel's throughput on cached data (a 3x3 convolution's tile: M = 128, K = 576,
    /// 120 columns): `KERNEL_REPS=20000 cargo test -p haven-pose --lib kernel_speed -- --ignored --nocapture`.
    /// ~110 GFLOP/s on the development machine's core (FMA peak ~116).
    #[test]
    #[ignore]
    fn kernel_speed_on_cached_data() {
        let (m, k, n) = (128, 576, 120);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let ap = pack_a(&a, m, k);
        let mut bp = vec![0f32; n.div_ceil(NR) * NR * k];
        for r in 0..k {
            pack_b_row(&b[r * n..(r + 1) * n], r, k, &mut bp);
        }
        let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.01).collect();
        let reps: usize = std::env::var("KERNEL_REPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        let mut c = vec![0f32; m * n];
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t0 = std::time::Instant::now();
            gemm_tile(m, n, k, &ap, &bp, &bias, true, c.as_mut_ptr(), n);
            best = best.min(t0.elapsed().as_secs_f64());
        }
        assert!(c.iter().all(|v| v.is_finite()));
        println!(
            "micro-kernel: {:.1} GFLOP/s (best of {reps})",
            2.0 * (m * n * k) as f64 / best / 1e9
        );
    }
}
