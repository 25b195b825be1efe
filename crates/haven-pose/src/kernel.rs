//! A small packed GEMM for convolutions, C[M, N] = A[M, K] · B[K, N] with a fused bias + SiLU epilogue.
//!
//! M = output channels, K = cin·k·k, N = output pixels (C row-major with row stride `ldc`, the feature
//! map's H·W). A (the weights, BatchNorm folded) is packed once at load time in panels of MR rows; B (the
//! im2col of a tile of output pixels, or the input itself for 1x1 convolutions) is packed per tile in
//! panels of NR columns. The AVX2/FMA micro-kernel keeps a 4 x 24 block of C in 12 ymm registers and
//! applies bias and SiLU before its single store, so every output value is written exactly once.

pub const MR: usize = 4;
pub const NR: usize = 24;
/// K block: a B sub-panel (KC x NR floats, 18 KiB) stays in L1 while every A panel passes over it.
pub const KC: usize = 192;

/// Packs A [m, k] (row-major) into panels [m/MR][k][MR], zero-padded rows.
pub fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    pack_a_strided(a, m, k, k)
}

/// Packs A [m, k] (row stride lda) into panels [m/MR][k][MR], zero-padded rows.
pub fn pack_a_strided(a: &[f32], m: usize, k: usize, lda: usize) -> Vec<f32> {
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
pub fn pack_b_row(row: &[f32], r: usize, k: usize, bp: &mut [f32]) {
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
pub fn gemm_tile(m: usize, ncols: usize, k: usize, ap: &[f32], bp: &[f32], bias: &[f32], act: bool, c: *mut f32, ldc: usize) {
    let npanels = ncols.div_ceil(NR);
    assert!(bp.len() >= npanels * k * NR);
    gemm_generic(m, ncols, k, ap, |np, kb| BSrc::Packed(bp[(np * k + kb) * NR..].as_ptr()), bias, act, c, ldc)
}

/// Like [`gemm_tile`] but without packing B: row r of B (for the tile's columns) is the contiguous run
/// `base[offs[r] ..]`, as produced by the padded phase planes of a convolution input.
/// Reads up to NR - 1 floats past the last column (junk columns, discarded by the caller).
#[allow(clippy::too_many_arguments)]
pub fn gemm_tile_offs(m: usize, ncols: usize, k: usize, ap: &[f32], base: &[f32], offs: &[usize], bias: &[f32], act: bool, c: *mut f32, ldc: usize) {
    assert!(offs.len() == k);
    let npanels = ncols.div_ceil(NR);
    let maxo = offs.iter().copied().max().unwrap_or(0);
    assert!(maxo + npanels * NR <= base.len(), "implicit im2col reads past the input planes");
    gemm_generic(
        m,
        ncols,
        k,
        ap,
        |np, kb| BSrc::Offs(base.as_ptr().wrapping_add(np * NR), offs[kb..].as_ptr()),
        bias,
        act,
        c,
        ldc,
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm_generic(
    m: usize,
    ncols: usize,
    k: usize,
    ap: &[f32],
    bsrc: impl Fn(usize, usize) -> BSrc,
    bias: &[f32],
    act: bool,
    c: *mut f32,
    ldc: usize,
) {
    let mpanels = m.div_ceil(MR);
    let npanels = ncols.div_ceil(NR);
    assert!(ap.len() >= mpanels * k * MR && bias.len() >= mpanels * MR);
    let mut kb = 0;
    while kb < k {
        let kc = KC.min(k - kb);
        let first = kb == 0;
        let last = kb + kc == k;
        for np in 0..npanels {
            let nr = NR.min(ncols - np * NR);
            let b = bsrc(np, kb);
            for mp in 0..mpanels {
                let mr = MR.min(m - mp * MR);
                let a = ap[(mp * k + kb) * MR..].as_ptr();
                unsafe {
                    micro(kc, a, b, c.wrapping_add(mp * MR * ldc + np * NR), ldc, first, last, bias[mp * MR..].as_ptr(), act, mr, nr);
                }
            }
        }
        kb += kc;
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    kc: usize,
    a: *const f32,
    b: BSrc,
    c: *mut f32,
    ldc: usize,
    first: bool,
    last: bool,
    bias: *const f32,
    act: bool,
    mr: usize,
    nr: usize,
) {
    use crate::ops::avx2::{bc, ld, st};
    use std::arch::x86_64::*;
    debug_assert!(MR == 4 && NR == 24);
    let mut acc = [_mm256_setzero_ps(); 12];
    if kc > 0 {
        // The k loop in assembly: 12 accumulators + 3 B vectors + 1 broadcast = all 16 ymm registers,
        // and no debug-build pointer checks inside the loop.
        let [mut c00, mut c01, mut c02, mut c10, mut c11, mut c12, mut c20, mut c21, mut c22, mut c30, mut c31, mut c32] = acc;
        match b {
        BSrc::Packed(b) => std::arch::asm!(
            "2:",
            "vmovups {b0}, ymmword ptr [{b}]",
            "vmovups {b1}, ymmword ptr [{b} + 32]",
            "vmovups {b2}, ymmword ptr [{b} + 64]",
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
            "add {b}, 96",
            "dec {k}",
            "jnz 2b",
            a = inout(reg) a => _,
            b = inout(reg) b => _,
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
        ),
        BSrc::Offs(base, offs) => std::arch::asm!(
            "2:",
            "mov {p}, qword ptr [{o}]",
            "lea {p}, [{base} + 4 * {p}]",
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
            "add {o}, 8",
            "dec {k}",
            "jnz 2b",
            a = inout(reg) a => _,
            base = in(reg) base,
            o = inout(reg) offs => _,
            p = out(reg) _,
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
        ),
        }
        acc = [c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32];
    }
    if mr == MR && nr == NR {
        for r in 0..4 {
            let bv = bc(bias.wrapping_add(r));
            for j in 0..3 {
                let p = c.wrapping_add(r * ldc + j * 8);
                let mut v = acc[r * 3 + j];
                if !first {
                    v = _mm256_add_ps(v, ld(p));
                }
                if last {
                    v = _mm256_add_ps(v, bv);
                    if act {
                        v = crate::ops::avx2::silu8(v);
                    }
                }
                st(p, v);
            }
        }
    } else {
        let mut tmp = [0f32; MR * NR];
        for (i, v) in acc.iter().enumerate() {
            st(tmp.as_mut_ptr().wrapping_add(i * 8), *v);
        }
        finish_scalar(&tmp, c, ldc, first, last, bias, act, mr, nr);
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    kc: usize,
    a: *const f32,
    b: BSrc,
    c: *mut f32,
    ldc: usize,
    first: bool,
    last: bool,
    bias: *const f32,
    act: bool,
    mr: usize,
    nr: usize,
) {
    let mut tmp = [0f32; MR * NR];
    for kk in 0..kc {
        for r in 0..MR {
            let av = *a.add(kk * MR + r);
            for j in 0..NR {
                tmp[r * NR + j] += av * *b.add(kk * NR + j);
            }
        }
    }
    finish_scalar(&tmp, c, ldc, first, last, bias, act, mr, nr);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish_scalar(
    tmp: &[f32; MR * NR],
    c: *mut f32,
    ldc: usize,
    first: bool,
    last: bool,
    bias: *const f32,
    act: bool,
    mr: usize,
    nr: usize,
) {
    for r in 0..mr {
        for j in 0..nr {
            let p = c.add(r * ldc + j);
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
pub fn matmul(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize) {
    use rayon::prelude::*;
    assert!(m > 0 && n > 0 && k > 0);
    assert!(a.len() >= (m - 1) * lda + k && b.len() >= (k - 1) * ldb + n && c.len() >= (m - 1) * ldc + n);
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
        let mut bp = vec![0f32; len.div_ceil(NR) * NR * k];
        for r in 0..k {
            pack_b_row(&b[r * ldb + p0..r * ldb + p1], r, k, &mut bp);
        }
        gemm_tile(m, len, k, &pa, &bp, &bias, false, cp.0.wrapping_add(p0), ldc);
    });
}
