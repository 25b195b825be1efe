//! GEMM micro-kernels: one MR x NR (4 x 24) or 2MR x NR (8 x 24, AVX-512VL registers) tile of C
//! over a K block, the k loop in inline assembly, and the epilogue that adds partial sums, bias and
//! SiLU and stores through a per-vector plan ([`VPlan`]) that drops the junk columns of a "wide" row.
//! A portable scalar kernel stands in on builds without AVX2/FMA.
//!
//! Unsafe boundary: every kernel here is an `unsafe fn` over raw pointers; the contract (which
//! `driver` upholds and checks with asserts on its slices) is in each `# Safety` section.

use super::{MR, NR};
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use crate::kernels::simd::avx2;
use crate::kernels::simd::silu;

/// Where the micro-kernel reads B from.
#[derive(Clone, Copy)]
pub(crate) enum BSrc {
    /// packed panel: k-th row of the panel at ptr + k * NR
    Packed(*const f32),
    /// implicit im2col: k-th row at base + offs[k] (24 contiguous floats)
    Offs(*const f32, *const usize),
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
    pub(crate) fn at(self, rows: usize, cols: usize) -> Dst {
        Dst {
            c: self.c.wrapping_add(rows * self.ldc),
            q: self.q + cols,
            ..self
        }
    }
    /// The compact column of wide column `q + j`, or None for a dropped column.
    #[inline(always)]
    pub(crate) fn col(self, j: usize) -> Option<usize> {
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
    pub(crate) fn new(pd: Dst, j0: usize, nr: usize) -> Self {
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

/// The 4 x 24 kernel: C tile (+)= A panel · B panel over `kc` k steps, then [`finish`].
///
/// # Safety
/// * `a` points to `kc` packed A rows of MR floats (`[kc][MR]`).
/// * `b`: `Packed(p)`: `kc` rows of NR floats at `p + k NR`; `Offs(base, offs)`: `offs` has `kc`
///   entries and `base + offs[k] .. + NR` is readable for each.
/// * `bias` points to `mr` floats (`mr` <= MR, `nr` <= NR valid rows and columns).
/// * For each of the `mr` rows r, every column `plans` (built by [`VPlan::new`] for `dst`, `nr`)
///   stores to, `dst.c + r dst.ldc + col`, is writable (and readable unless `first`), and no other
///   thread touches it meanwhile.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro(
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
///
/// # Safety
/// `bias`, `dst`, `plans`, `mr`, `nr` as for [`micro`].
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn finish(
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
    use avx2::{bc, ld, st};
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
            avx2::silu8x6(a.try_into().unwrap());
            avx2::silu8x6(b.try_into().unwrap());
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
        avx2::silu8x6(a.try_into().unwrap());
        avx2::silu8x6(b.try_into().unwrap());
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
                                x = silu(x);
                            }
                        }
                        *p = x;
                    }
                }
            }
        }
    }
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
///
/// # Safety
/// * The CPU has AVX-512F and AVX-512VL (hold a wide [`super::Kernel`]).
/// * As for [`micro`] with `mr` <= 2 MR: A rows 4-7 at `a + panel` (`[kc][MR]` floats there too),
///   `bias` has `mr` floats, the stores cover rows 0 .. mr of `dst`.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[target_feature(enable = "avx512f,avx512vl")]
#[allow(clippy::too_many_arguments, unused_assignments)]
pub(crate) unsafe fn micro8(
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
        finish(
            hi,
            dst.at(MR, 0),
            plans,
            first,
            last,
            bias.wrapping_add(MR),
            act,
            mr - MR,
            nr,
        );
    }
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
/// The portable 4 x 24 kernel (scalar), same contract as the AVX2 one.
///
/// # Safety
/// * `a` points to `kc` packed A rows of MR floats (`[kc][MR]`).
/// * `b`: `Packed(p)`: `kc` rows of NR floats at `p + k NR`; `Offs(base, offs)`: `offs` has `kc`
///   entries and `base + offs[k] .. + NR` is readable for each.
/// * `bias` points to `mr` floats (`mr` <= MR, `nr` <= NR valid rows and columns).
/// * For each of the `mr` rows r, every column `plans` (built by [`VPlan::new`] for `dst`, `nr`)
///   stores to, `dst.c + r dst.ldc + col`, is writable (and readable unless `first`), and no other
///   thread touches it meanwhile.
pub(crate) unsafe fn micro(
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
/// Scalar epilogue of the portable kernel.
///
/// # Safety
/// As for [`micro`].
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
                    v = silu(v);
                }
            }
            *p = v;
        }
    }
}
