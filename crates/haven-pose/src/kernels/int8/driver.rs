//! The 8-bit convolution: [`QConv`] holds a layer's quantized, packed weights; a call quantizes the
//! input per tensor (its range measured on that input), lays it out as zero-point-padded phase
//! planes (so every kernel tap is one contiguous run of "wide" output pixels, as in the f32 path),
//! packs B per tile, runs the micro-kernels and dequantizes with bias + SiLU into the compact output
//! (the wide rows' junk columns dropped).
//!
//! Unsafe boundary: rayon tasks write disjoint (channel, pixel) blocks of the output through a
//! [`SendPtr`] in `store_tile`.

use std::cell::RefCell;

use rayon::prelude::*;

use super::micro::tile;
use super::pack::{b_panel_len, k4, pack_a, pack_b};
use super::quant::{quant_planes, quantize_weights, ActQ};
use super::{I8Kernel, MR, NR};
use crate::kernels::pool::SendPtr;
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
use crate::kernels::simd::silu;

/// The largest K whose i32 sums cannot overflow: 2^31 / (2 x 255 x 127) (the zero-point term, up to
/// 255 x 127 x K, starts the sum).
pub(crate) const MAX_K: usize = 33_000;

thread_local! {
    /// packed B of the current tile
    static BPACK8: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A dense convolution (BatchNorm folded) with int8 weights: per output channel symmetric scales,
/// weights packed for the micro-kernels at load.
pub(crate) struct QConv {
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    act: bool,
    /// packed [cout / MR][K / 4][MR][4]
    pa: Vec<i8>,
    /// per output channel: weight scale, Σ of its quantized weights, bias (padded to MR rows)
    wscale: Vec<f32>,
    wsum: Vec<i32>,
    bias: Vec<f32>,
    kernel: I8Kernel,
    /// print each call's time to stderr (`HAVEN_CONV_PROFILE=1`)
    pub(crate) profile: bool,
}

/// The output geometry of one call.
struct Geo {
    /// wide row length (the planes' width) and output size
    wp: usize,
    oh: usize,
    ow: usize,
    /// wide output pixels (oh · wp)
    n: usize,
}

impl QConv {
    /// From folded f32 weights [cout, cin, k, k] and bias [cout]. K = cin·k·k must stay below
    /// 33 000 (the i32 sums: see the module header; `conv::int8_takes` keeps larger layers f32).
    pub(crate) fn new(
        (cin, cout, k, stride): (usize, usize, usize, usize),
        w: &[f32],
        b: &[f32],
        act: bool,
        kernel: I8Kernel,
    ) -> Self {
        let kk = cin * k * k;
        assert!(kk <= MAX_K, "an 8-bit layer with K = {kk} could overflow its i32 sums");
        let (q, mut wscale) = quantize_weights(w, cout, kk, kernel.qmax_w());
        let mp = cout.div_ceil(MR) * MR;
        let mut wsum: Vec<i32> = q
            .chunks_exact(kk)
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        let mut bias = b.to_vec();
        wscale.resize(mp, 0.0);
        wsum.resize(mp, 0);
        bias.resize(mp, 0.0);
        Self {
            cin,
            cout,
            k,
            stride,
            pad: k / 2,
            act,
            pa: pack_a(&q, cout, kk),
            wscale,
            wsum,
            bias,
            kernel,
            profile: false,
        }
    }

    /// Writes the [cout, oh, ow] result into `out` (exactly that length).
    pub(crate) fn forward_into(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (k, s, p) = (self.k, self.stride, self.pad);
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        assert_eq!(x.len(), self.cin * h * w, "int8 conv input");
        assert_eq!(out.len(), self.cout * oh * ow, "int8 conv output");
        let (hp, wp) = ((h + 2 * p).div_ceil(s), (w + 2 * p).div_ceil(s));
        let mut offs = Vec::with_capacity(self.cin * k * k);
        for ci in 0..self.cin {
            for ky in 0..k {
                for kx in 0..k {
                    offs.push(((ci * s * s + (ky % s) * s + kx % s) * hp + ky / s) * wp + kx / s);
                }
            }
        }
        let g = Geo {
            wp,
            oh,
            ow,
            n: oh * wp,
        };
        let total = self.cin * s * s * hp * wp;
        let need = offs.iter().max().copied().unwrap_or(0) + g.n.div_ceil(NR) * NR;
        let t0 = self.profile.then(std::time::Instant::now);
        let q = ActQ::of(x);
        let t1 = self.profile.then(std::time::Instant::now);
        let (planes, _, _) = quant_planes(x, (self.cin, h, w), s, p, q, need.saturating_sub(total));
        let t2 = self.profile.then(std::time::Instant::now);
        self.gemm(&planes, &offs, q, &g, out);
        if let (Some(t0), Some(t1), Some(t2)) = (t0, t1, t2) {
            let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e3;
            let t3 = std::time::Instant::now();
            let gop = 2.0 * (self.cout * offs.len() * g.n) as f64 / 1e9;
            eprintln!(
                "int8 conv {}->{} k{k} s{s} {oh}x{ow}: range {:.2} ms, planes {:.2} ms, gemm {:.2} ms ({:.0} GOP/s, {:?})",
                self.cin, self.cout, ms(t0, t1), ms(t1, t2), ms(t2, t3), gop / (t3 - t2).as_secs_f64(), self.kernel
            );
        }
    }

    /// The tiles and their threads.
    fn gemm(&self, src: &[u8], offs: &[usize], q: ActQ, g: &Geo, out: &mut [f32]) {
        let kq = k4(offs.len());
        let threads = rayon::current_num_threads().max(1);
        // one tile's packed B within ~192 KiB (L2), at least two tiles per thread where possible
        let mut tn = ((192 << 10) / (kq * 4) / NR).clamp(1, 16) * NR;
        if g.n.div_ceil(tn) < 2 * threads {
            tn = g.n.div_ceil(2 * threads).div_ceil(NR).max(1) * NR;
        }
        let ntiles = g.n.div_ceil(tn);
        let mpanels = self.cout.div_ceil(MR);
        let mchunks = if threads == 1 || ntiles >= 4 * threads {
            1
        } else {
            (4 * threads).div_ceil(ntiles).min(mpanels)
        };
        let mcp = mpanels.div_ceil(mchunks);
        let mchunks = mpanels.div_ceil(mcp);
        let dst = SendPtr(out.as_mut_ptr());
        let run = |task: usize| {
            let (t, mi) = (task / mchunks, task % mchunks);
            let p0 = t * tn;
            let len = tn.min(g.n - p0);
            let panels = (mi * mcp)..((mi + 1) * mcp).min(mpanels);
            BPACK8.with(|bp| {
                let mut bp = bp.borrow_mut();
                let plen = b_panel_len(offs.len());
                let need = len.div_ceil(NR) * plen;
                if bp.len() < need {
                    bp.resize(need, 0);
                }
                pack_b(src, offs, p0, len, &mut bp);
                let mut acc = [0i32; MR * NR];
                for mp in panels.clone() {
                    let a = &self.pa[mp * kq * MR * 4..(mp + 1) * kq * MR * 4];
                    let init: [i32; MR] =
                        std::array::from_fn(|r| -(q.zp as i32) * self.wsum[mp * MR + r]);
                    for pi in 0..len.div_ceil(NR) {
                        tile(
                            self.kernel,
                            kq,
                            a,
                            &bp[pi * plen..(pi + 1) * plen],
                            &init,
                            &mut acc,
                        );
                        let cols = (p0 + pi * NR)..(p0 + pi * NR + NR).min(p0 + len);
                        self.store_tile(&acc, mp * MR, cols, q, g, dst);
                    }
                }
            });
        };
        let tasks = ntiles * mchunks;
        if tasks == 1 {
            run(0)
        } else {
            (0..tasks).into_par_iter().for_each(run);
        }
    }

    /// Dequantizes a tile (rows m0.., wide pixels `cols`) with bias and SiLU into `dst`, dropping
    /// the wide rows' junk columns.
    fn store_tile(
        &self,
        acc: &[i32; MR * NR],
        m0: usize,
        cols: std::ops::Range<usize>,
        q: ActQ,
        g: &Geo,
        dst: SendPtr,
    ) {
        let mut vals = [0f32; NR];
        let plane = g.oh * g.ow;
        for r in 0..MR.min(self.cout - m0) {
            let co = m0 + r;
            let (sc, b) = (q.scale * self.wscale[co], self.bias[co]);
            let row: &[i32; NR] = acc[r * NR..(r + 1) * NR].try_into().unwrap();
            dequant_row(row, sc, b, self.act, &mut vals);
            // runs of valid columns, copied; the wide rows' junk columns skipped
            let (mut i, n) = (0, cols.len());
            while i < n {
                let q = cols.start + i;
                let (oy, ox) = (q / g.wp, q % g.wp);
                if ox < g.ow {
                    let run = (g.ow - ox).min(n - i);
                    // SAFETY: co < cout, oy < oh (the wide pixel is below oh · wp), ox + run <= ow:
                    // inside `out` (cout x oh x ow, asserted in `forward_into`, borrowed mutably for
                    // the parallel section); each (channel, wide pixel) belongs to exactly one task.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            vals.as_ptr().add(i),
                            dst.0.add(co * plane + oy * g.ow + ox),
                            run,
                        )
                    };
                    i += run;
                } else {
                    i += (g.wp - ox).min(n - i);
                }
            }
        }
    }
}

/// One tile row dequantized: a · sc + b, then SiLU when `act`, 8 lanes at a time with AVX2 (one
/// scalar `silu` per element did not vectorise: ~1 ns an output, a third of the small-K layers'
/// time). Bit for bit the scalar arithmetic (`a as f32 * sc + b`, `simd::silu`: no fused
/// multiply-adds, an exact division), so the 8-bit path computes exactly what it did before.
#[inline(always)]
fn dequant_row(row: &[i32; NR], sc: f32, b: f32, act: bool, vals: &mut [f32; NR]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    {
        use std::arch::x86_64::*;
        const _: () = assert!(NR % 8 == 0);
        // SAFETY: AVX2 is enabled at compile time (cfg); every load reads row[8i .. 8i + 8] and
        // every store writes vals[8i .. 8i + 8], 8i + 8 <= NR, inside the two NR-element arrays.
        unsafe {
            let (vs, vb) = (_mm256_set1_ps(sc), _mm256_set1_ps(b));
            for i in 0..NR / 8 {
                let a = _mm256_loadu_si256(row.as_ptr().add(8 * i) as *const __m256i);
                let mut v = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a), vs), vb);
                if act {
                    let e = exp_fast8(_mm256_xor_ps(v, _mm256_set1_ps(-0.0)));
                    v = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0), e));
                }
                _mm256_storeu_ps(vals.as_mut_ptr().add(8 * i), v);
            }
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
    for (v, &a) in vals.iter_mut().zip(row) {
        let x = a as f32 * sc + b;
        *v = if act { silu(x) } else { x };
    }
}

/// `simd::exp_fast` on 8 lanes, operation for operation (separate multiplies and adds, as the
/// scalar code compiles: Rust does not fuse them), so that it gives the same bits.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
#[inline(always)]
fn exp_fast8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: value-only AVX2 intrinsics; AVX2 is enabled at compile time (cfg).
    unsafe {
        let c = |v: f32| _mm256_set1_ps(v);
        let (add, mul, sub) = (_mm256_add_ps, _mm256_mul_ps, _mm256_sub_ps);
        let magic = c(12_582_912.0);
        // x.clamp(lo, hi) is max(x, lo) then min(.., hi)
        let x = _mm256_min_ps(_mm256_max_ps(x, c(-87.3)), c(88.3));
        let t = add(mul(x, c(std::f32::consts::LOG2_E)), magic);
        let fx = sub(t, magic);
        let n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
        let x = sub(sub(x, mul(fx, c(0.693_359_4))), mul(fx, c(-2.121_944_4e-4)));
        let z = mul(x, x);
        let mut y = c(1.987_569_1e-4);
        for k in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1] {
            y = add(mul(y, x), c(k));
        }
        let y = add(add(mul(y, z), x), c(1.0));
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
        mul(y, pow2n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{pseudo, silu_ref, thread_pool};

    /// The convolution of the dequantized values, in f64: what the int8 path must give up to the
    /// f32 epilogue's rounding and the fast SiLU.
    #[allow(clippy::too_many_arguments)]
    fn qconv_ref(
        qmax: i32,
        (cin, cout, k, s): (usize, usize, usize, usize),
        w: &[f32],
        b: &[f32],
        act: bool,
        x: &[f32],
        h: usize,
        wd: usize,
    ) -> Vec<f32> {
        let kk = cin * k * k;
        let (qw, ws) = quantize_weights(w, cout, kk, qmax);
        let q = ActQ::of(x);
        let inv = 1.0 / q.scale;
        let xd: Vec<f32> = x
            .iter()
            .map(|&v| (q.q(inv, v) as f32 - q.zp as f32) * q.scale)
            .collect();
        let wd_: Vec<f32> = (0..cout * kk).map(|i| qw[i] as f32 * ws[i / kk]).collect();
        let p = k / 2;
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (wd + 2 * p - k) / s + 1);
        let mut out = vec![0f32; cout * oh * ow];
        for co in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[co] as f64;
                    for ci in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (
                                    (oy * s + ky) as isize - p as isize,
                                    (ox * s + kx) as isize - p as isize,
                                );
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc += wd_[((co * cin + ci) * k + ky) * k + kx] as f64
                                        * xd[(ci * h + iy as usize) * wd + ix as usize] as f64;
                                }
                            }
                        }
                    }
                    let v = acc as f32;
                    out[(co * oh + oy) * ow + ox] = if act { silu_ref(v) } else { v };
                }
            }
        }
        out
    }

    /// The 8-lane epilogue gives the scalar arithmetic's bits exactly (so the 8-bit path's numbers
    /// did not move when it was vectorised), SiLU's clamps included.
    #[test]
    fn dequant_row_is_the_scalar_arithmetic_bit_for_bit() {
        use crate::kernels::simd::silu;
        let mut acc: Vec<i32> = pseudo(32 * 64, 5).iter().map(|v| (v * 4e5) as i32).collect();
        acc.extend([0, 1, -1, i32::MAX, i32::MIN, 1 << 24, -(1 << 24), 123_456_789]);
        acc.resize(acc.len().div_ceil(NR) * NR, 7);
        for (sc, b) in [(1e-4f32, 0.3f32), (3e-3, -1.7), (0.5, 0.0), (1e-9, -0.0)] {
            for act in [false, true] {
                for row in acc.chunks_exact(NR) {
                    let mut got = [0f32; NR];
                    dequant_row(row.try_into().unwrap(), sc, b, act, &mut got);
                    for (g, &a) in got.iter().zip(row) {
                        let x = a as f32 * sc + b;
                        let want = if act { silu(x) } else { x };
                        assert_eq!(g.to_bits(), want.to_bits(), "{a} {sc} {b} {act}: {g} vs {want}");
                    }
                }
            }
        }
    }

    /// Every micro-kernel this CPU runs (VNNI, AVX2, scalar), 1 and 3 threads, against the plain
    /// convolution of the dequantized weights and inputs: 1x1 and 3x3, strides 1 and 2, odd sizes,
    /// channel counts not multiples of MR, K not a multiple of 4, maps of several tiles.
    #[test]
    fn qconv_matches_dequantized_reference() {
        for &(cin, cout, k, s, h, w, act) in &[
            (5, 7, 1, 1, 9, 13, true),
            (16, 24, 3, 1, 21, 19, true),
            (3, 9, 3, 2, 17, 22, false),
            (33, 17, 3, 2, 33, 31, true),
            (64, 40, 1, 1, 40, 41, true),
            (24, 8, 3, 1, 80, 70, true),
            (300, 9, 3, 1, 9, 30, false),
        ] {
            let (wt, b) = (pseudo(cout * cin * k * k, 1), pseudo(cout, 2));
            // an input with a negative tail, as after SiLU, and a wide positive range
            let x: Vec<f32> = pseudo(cin * h * w, 3)
                .iter()
                .map(|v| v * 2.0 + 0.7)
                .collect();
            for kernel in I8Kernel::available() {
                let want = qconv_ref(kernel.qmax_w(), (cin, cout, k, s), &wt, &b, act, &x, h, w);
                let c = QConv::new((cin, cout, k, s), &wt, &b, act, kernel);
                for threads in [1, 3] {
                    let mut got = vec![f32::NAN; want.len()];
                    thread_pool(threads).install(|| c.forward_into(&x, h, w, &mut got));
                    for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - r).abs() <= 1e-4 * r.abs().max(1.0),
                            "{cin} {cout} k{k} s{s} {h}x{w} {kernel:?} {threads} threads at {i}: {g} vs {r}"
                        );
                    }
                }
            }
        }
    }
}
