//! Convolution layers (BatchNorm folded): [`Conv`] owns a layer's weights in every layout its
//! paths need and dispatches each call to the direct GEMM over an implicit im2col (this file),
//! Winograd (`winograd`) or depthwise (`depthwise`).
//!
//! Layering: the top of `kernels`; imports every kernel file, none imports it.
//! Unsafe boundary: `dense_gemm` hands each rayon task a disjoint block of the output through a
//! [`SendPtr`] and calls the GEMM tile functions on it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::depthwise::{depthwise, Depthwise};
use super::gemm::{
    gemm_tile_offs, gemm_tile_to, pack_a, pack_b_row, unpack_a, Dst, Kernel, KC, MR, NR,
};
use super::int8::driver::MAX_K;
use super::int8::{I8Kernel, QConv};
use super::options::{KernelOptions, Precision, Winograd4};
use super::planes::phase_planes;
use super::pool::{PBuf, SendPtr};
use super::winograd::Wino;
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use super::winograd::{winograd, WinoLayer};

thread_local! {
    /// packed B of the current tile (strided convolutions with one K block)
    static BPACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A convolution with BatchNorm folded in: weight [cout, cin/groups, k, k], bias [cout], optional SiLU.
///
/// It keeps its weights only in the layouts its paths use (issue 25: the two demo models' layers
/// held every layout, ~200 MiB for 56 MB of weights): a layer that always takes Winograd keeps the
/// plain weights and makes each Winograd layout on its first use (no GEMM panels); a layer that always
/// takes the GEMM keeps only its packed panels ([`Conv::weights`] unpacks them when asked); a
/// depthwise layer keeps the plain weights.
pub(crate) struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    /// 1 (dense) or cin == cout (depthwise)
    pub groups: usize,
    /// [cout, cin/groups, k, k]; empty for a layer that only runs the GEMM (see [`Conv::weights`])
    w: Vec<f32>,
    pub b: Vec<f32>,
    pub act: bool,
    /// dense: weights packed for the GEMM micro-kernel, bias padded to the panel height (empty for
    /// a layer that always takes Winograd)
    pa: Vec<f32>,
    /// instead of `pa`: the panels as 16-bit values and a scale per row (`opts.half_weights`)
    half: Option<HalfPanels>,
    bpad: Vec<f32>,
    /// Winograd F(2x2, 3x3) weights, made on first use
    wino: OnceLock<Wino>,
    /// Winograd F(4x4, 3x3) weights, made on first use
    wino4: OnceLock<Wino>,
    /// the paths this convolution takes (from the model's options)
    opts: KernelOptions,
    /// the GEMM micro-kernel, selected once from `opts` and the CPU
    kernel: Kernel,
    /// `Precision::Int8` and a layer that takes it ([`int8_takes`]): the quantized weights
    q: Option<QConv>,
}

/// Which layers the 8-bit path takes: dense convolutions followed by SiLU with more than 3 input
/// channels. The first convolution (the image, K = 27: cheap, and the image's error would reach
/// everything), the depthwise ones and the attention's projections (no SiLU) stay f32; so does the
/// whole head, which the network loads with `Precision::F32` (`net::Net::load`).
/// Layers whose K would let the i32 sums overflow stay f32 as well.
pub(crate) fn int8_takes(cin: usize, groups: usize, act: bool, k: usize) -> bool {
    groups == 1 && act && cin > 3 && cin * k * k <= MAX_K
}

/// The widest layer (cin x cout) that gets F(4x4, 3x3) weights by default (`Winograd4::Auto`).
/// They are 4x the layer's own weights (F(2x2)'s 1.78x) and most of them lie in the widest layers,
/// where F(4x4) gains least (maps of 20x20-40x40: 4-14 % of the layer against F(2x2), docs/pose.md).
/// 256 x 128 keeps every layer of yolo11n-pose on the paths it took before (its widest, the merged
/// head convolution at P5, is 256 x 115) and caps the fall model's (YOLOv8s: 256 x 256 and 512 x 128
/// layers) F(4x4) weights at 45 instead of 90 MiB (issue 25).
pub(crate) const F4_MAX_CIN_COUT: usize = 256 * 128;

/// Whether a dense layer of this shape always runs Winograd with these options (never the GEMM):
/// 3x3, stride 1, at least 16 channels on each side (below that the transforms outweigh the saved
/// multiplications: measured at 160x160 with 8 -> 16 and 16 -> 8 channels, 10-40 % slower; 16 -> 32
/// and 32 -> 16 at 80x80, 20 % faster), on a build with the AVX2 Winograd kernels.
fn always_winograd(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    opts: KernelOptions,
) -> bool {
    cfg!(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )) && opts.winograd
        && groups == 1
        && k == 3
        && stride == 1
        && cin.min(cout) >= 16
}

/// BatchNorm folded into weights [cout, ...]: each output channel's weights times its scale, in f32
/// (the one multiplication every path, and the 16-bit panels' widening, make).
pub(crate) fn fold(mut w: Vec<f32>, scale: &[f32]) -> Vec<f32> {
    let per = w.len() / scale.len().max(1);
    for (row, &s) in w.chunks_exact_mut(per.max(1)).zip(scale) {
        for x in row {
            *x *= s;
        }
    }
    w
}

/// GEMM panels held as 16-bit values: raw weights packed as [`pack_a`] packs the folded ones, and
/// the fold's scale per row; [`HalfPanels::widen`] gives the folded f32 panels bit for bit.
struct HalfPanels {
    raw: Vec<half::f16>,
    /// per row of the panels (padded to MR, zero there)
    scale: Vec<f32>,
}

impl HalfPanels {
    /// `None` unless every raw weight [m, k] is a 16-bit value (exactly).
    fn of(raw: &[f32], scale: &[f32], m: usize, k: usize) -> Option<Self> {
        if !raw.iter().all(|&x| half::f16::from_f32(x).to_f32().to_bits() == x.to_bits()) {
            return None;
        }
        let packed = pack_a(raw, m, k);
        let mut rows = scale.to_vec();
        rows.resize(m.div_ceil(MR) * MR, 0.0);
        Some(Self {
            raw: packed.iter().map(|&x| half::f16::from_f32(x)).collect(),
            scale: rows,
        })
    }

    /// The folded f32 panels (raw · scale, the multiplication `Conv::new_scaled` folds with), for
    /// `k` = cin/groups · k · k, in a pooled buffer.
    fn widen(&self, k: usize) -> PBuf {
        use half::slice::HalfFloatSliceExt;
        let mut pa = PBuf::new(self.raw.len());
        self.raw.convert_to_f32_slice(&mut pa);
        // [panel][k][MR]: each run of MR values is one k of one panel's rows
        for (i, run) in pa.chunks_exact_mut(MR).enumerate() {
            let rows = &self.scale[i / k.max(1) * MR..][..MR];
            for (x, s) in run.iter_mut().zip(rows) {
                *x *= s;
            }
        }
        pa
    }
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        w: Vec<f32>,
        b: Vec<f32>,
        act: bool,
        opts: KernelOptions,
    ) -> Self {
        assert!(
            groups == 1 || (groups == cin && cin == cout),
            "only dense or depthwise convolutions"
        );
        assert_eq!(w.len(), cout * cin / groups * k * k);
        assert_eq!(b.len(), cout);
        let q = (opts.precision == Precision::Int8 && int8_takes(cin, groups, act, k)).then(|| {
            let kernel = I8Kernel::select(opts.wide_kernel);
            let mut q = QConv::new((cin, cout, k, stride), &w, &b, act, kernel);
            q.profile = opts.conv_profile;
            q
        });
        // An 8-bit layer keeps no f32 weights at all (its 8-bit ones are in `q`).
        let winograd = always_winograd(cin, cout, k, stride, groups, opts);
        let (w, pa, bpad) = if q.is_some() {
            (Vec::new(), Vec::new(), Vec::new())
        } else if groups != 1 || winograd {
            (w, Vec::new(), Vec::new())
        } else {
            let mut bpad = b.clone();
            bpad.resize(cout.div_ceil(MR) * MR, 0.0);
            (Vec::new(), pack_a(&w, cout, cin * k * k), bpad)
        };
        Self {
            cin,
            cout,
            k,
            stride,
            pad: k / 2,
            groups,
            w,
            b,
            act,
            pa,
            half: None,
            bpad,
            wino: OnceLock::new(),
            wino4: OnceLock::new(),
            opts,
            kernel: Kernel::select(opts.wide_kernel),
            q,
        }
    }

    /// The weights [cout, cin/groups, k, k], unpacked from the GEMM panels for a layer that keeps
    /// only those (a load-time need: merging the head's convolutions, which stay f32, and tests).
    /// An 8-bit layer has none.
    pub fn weights(&self) -> Cow<'_, [f32]> {
        assert!(self.q.is_none(), "an 8-bit layer keeps no f32 weights");
        let kk = self.cin / self.groups * self.k * self.k;
        if let Some(half) = &self.half {
            Cow::Owned(unpack_a(&half.widen(kk), self.cout, kk))
        } else if self.pa.is_empty() {
            Cow::Borrowed(&self.w)
        } else {
            Cow::Owned(unpack_a(&self.pa, self.cout, kk))
        }
    }

    /// As [`Conv::new`], from unfolded weights `raw` [cout, cin/groups, k, k] and a scale per output
    /// channel (BatchNorm folded as raw · scale, in f32). With `opts.half_weights` a layer that keeps
    /// GEMM panels holds them as 16-bit values where every raw weight is one (a checkpoint saved in
    /// half precision): widened and scaled at each call into exactly the f32 panels it would hold.
    #[allow(clippy::too_many_arguments)]
    pub fn new_scaled(
        (cin, cout, k, stride, groups): (usize, usize, usize, usize, usize),
        raw: Vec<f32>,
        scale: &[f32],
        b: Vec<f32>,
        act: bool,
        opts: KernelOptions,
    ) -> Self {
        let per = raw.len() / cout.max(1);
        // the raw weights outlive the fold only where they may be held in 16 bits
        let kept = opts.half_weights.then(|| raw.clone());
        let mut c = Self::new(cin, cout, k, stride, groups, fold(raw, scale), b, act, opts);
        if let (Some(raw), false) = (kept, c.pa.is_empty()) {
            if let Some(half) = HalfPanels::of(&raw, scale, cout, per) {
                c.pa = Vec::new();
                c.half = Some(half);
            }
        }
        c
    }

    /// The kernel paths this convolution was made with.
    pub fn options(&self) -> KernelOptions {
        self.opts
    }

    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.pad - self.k) / self.stride + 1,
            (w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    pub fn forward(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let (oh, ow) = self.out_hw(h, w);
        let mut out = PBuf::new(self.cout * oh * ow);
        self.forward_into(x, h, w, &mut out);
        out
    }

    /// Writes the [cout, oh, ow] result into `out` (which must have exactly that length).
    pub fn forward_into(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        assert_eq!(x.len(), self.cin * h * w, "conv input buffer");
        let (oh, ow) = self.out_hw(h, w);
        assert_eq!(out.len(), self.cout * oh * ow, "conv output buffer");
        if self.groups == 1 {
            self.dense(x, h, w, oh, ow, out)
        } else {
            let d = Depthwise {
                c: self.cin,
                k: self.k,
                stride: self.stride,
                pad: self.pad,
                w: &self.w,
                b: &self.b,
                act: self.act,
            };
            depthwise(&d, x, h, w, oh, ow, out, self.opts.conv_profile)
        }
    }

    /// Dense convolution as GEMM over a "wide" pixel stream: the input is zero-padded and split into
    /// stride x stride phase planes, so that for every kernel tap (ci, ky, kx) the values the output
    /// pixels need form one contiguous run (output rows are computed W2 >= ow wide, the extra columns
    /// are discarded). Packing B is then a plain vector copy instead of a gather.
    fn dense(&self, x: &[f32], h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
        if let Some(q) = &self.q {
            return q.forward_into(x, h, w, out);
        }
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        if self.pa.is_empty() && self.half.is_none() {
            return self.winograd(x, h, w, out);
        }
        self.dense_gemm(x, h, w, oh, ow, out)
    }

    /// Whether F(4x4, 3x3) is expected to beat F(2x2, 3x3) for this layer: on 40x40 and larger maps
    /// it is 15-35 % faster, at 20x20 (25 tiles) ~5 %; smaller maps (e.g. 10x10 at 320x320 input, where
    /// 4 x 4 tiles would compute 12x12) keep F(2x2, 3x3) (not measured). Layers wider than
    /// [`F4_MAX_CIN_COUT`] keep F(2x2) by default too: see there.
    fn winograd4_pays(&self, h: usize, w: usize) -> bool {
        match self.opts.winograd4 {
            Winograd4::Never => false,
            Winograd4::Always => true,
            Winograd4::Auto => {
                h.div_ceil(4) * w.div_ceil(4) >= 25 && self.cin * self.cout <= F4_MAX_CIN_COUT
            }
        }
    }

    /// Dense 3x3 stride-1 convolution by Winograd (see `kernels::winograd`): F(4x4, 3x3) where it
    /// pays, else F(2x2, 3x3) (each one's weights made on first use).
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    fn winograd(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (profile, kernel) = (self.opts.conv_profile, self.kernel);
        let layer = |wino| WinoLayer {
            wino,
            cin: self.cin,
            cout: self.cout,
            bias: &self.b,
            act: self.act,
        };
        if self.winograd4_pays(h, w) {
            let u = self
                .wino4
                .get_or_init(|| Wino::new4(&self.w, self.cin, self.cout));
            winograd::<4>(&layer(u), x, h, w, out, kernel, profile)
        } else {
            let u = self
                .wino
                .get_or_init(|| Wino::new(&self.w, self.cin, self.cout));
            winograd::<2>(&layer(u), x, h, w, out, kernel, profile)
        }
    }

    fn dense_gemm(&self, x: &[f32], h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
        let (k, s, p) = (self.k, self.stride, self.pad);
        let kk = self.cin * k * k;
        let direct = k == 1 && s == 1 && p == 0;
        let t_planes = self.opts.conv_profile.then(std::time::Instant::now);
        // the stream and the per-tap offsets into it
        let planes;
        let (src, w2, offs): (&[f32], usize, Vec<usize>) = if direct {
            (x, w, (0..kk).map(|r| r * h * w).collect())
        } else {
            let (buf, hp, wp) = phase_planes(x, self.cin, h, w, s, p, k * (w + 2 * p) + k + NR);
            let mut offs = Vec::with_capacity(kk);
            for ci in 0..self.cin {
                for ky in 0..k {
                    for kx in 0..k {
                        offs.push(
                            ((ci * s * s + (ky % s) * s + kx % s) * hp + ky / s) * wp + kx / s,
                        );
                    }
                }
            }
            planes = buf;
            (&planes[..], wp, offs)
        };
        // Strided convolutions with few input channels (the first two at 640x640: K = 27 and 144, one
        // K block) run faster on B packed per tile than on B read through the tap offsets: their k
        // loops are too short to amortise the per-panel set-up (layer 0: 3.7 -> 3.0 ms, layer 1:
        // 5.1 -> 4.1 ms at 1 thread; the later strided ones, K = 576-1152, gained nothing).
        let pack_strided = s > 1 && kk <= KC;
        let t_prep = self.opts.conv_profile.then(std::time::Instant::now);
        let n = oh * w2; // wide output pixels
        let cp = SendPtr(out.as_mut_ptr());
        let threads = rayon::current_num_threads().max(1);
        let (tn, ntiles);
        if direct {
            // Tile the output pixels so that one tile's packed B (kk x tn floats) stays in L2.
            let mut t = ((160 * 1024 / 4) / kk / NR).clamp(1, 42) * NR;
            if n.div_ceil(t) < 2 * threads {
                t = n.div_ceil(2 * threads).div_ceil(NR).max(1) * NR;
            }
            tn = t;
        } else if pack_strided {
            // one tile's packed B (kk x tn floats) within half of L2
            let mut t = ((512 * 1024 / 4) / kk / NR).clamp(4, 42) * NR;
            if n.div_ceil(t) < 2 * threads {
                t = n.div_ceil(2 * threads).div_ceil(NR).max(1) * NR;
            }
            tn = t;
        } else {
            // implicit im2col: tiles only split the work
            tn = n.div_ceil(8 * threads).div_ceil(NR).clamp(4, 16) * NR;
        }
        ntiles = n.div_ceil(tn);
        // Small maps give few pixel tiles: split the output channels too, so that both threads get work.
        let mpanels = self.cout.div_ceil(MR);
        let mchunks = if threads == 1 || ntiles >= 4 * threads {
            1
        } else {
            (4 * threads).div_ceil(ntiles).min(mpanels)
        };
        let mcp = mpanels.div_ceil(mchunks);
        let mchunks = mpanels.div_ceil(mcp);
        let ldc = oh * ow;
        let widened = self.half.as_ref().map(|h| h.widen(kk));
        let pa: &[f32] = widened.as_deref().unwrap_or(&self.pa);
        let run = |task: usize| {
            let cp = cp;
            let (t, mi) = (task / mchunks, task % mchunks);
            let p0 = t * tn;
            let p1 = (p0 + tn).min(n);
            let len = p1 - p0;
            let m0 = mi * mcp * MR;
            let mlen = (mcp * MR).min(self.cout - m0);
            let (ap, bias) = (&pa[m0 * kk..], &self.bpad[m0..]);
            let dst = if direct {
                Dst::plain(cp.0.wrapping_add(m0 * n + p0), n)
            } else {
                // results go straight to the compact output (the wide junk columns are dropped)
                Dst {
                    c: cp.0.wrapping_add(m0 * ldc),
                    ldc,
                    q: p0,
                    w2,
                    ow,
                }
            };
            // SAFETY (both GEMM calls): this task writes output channels m0 .. m0 + mlen, pixels
            // p0 .. p1 (wide; the compact columns they map to) of `out`, which is cout x oh x ow
            // (asserted in `forward_into`) and borrowed mutably for the whole parallel section;
            // tasks split channels and pixels into disjoint chunks.
            if !direct && !pack_strided {
                unsafe {
                    gemm_tile_offs(
                        mlen,
                        len,
                        kk,
                        ap,
                        &src[p0..],
                        &offs,
                        bias,
                        self.act,
                        dst,
                        self.kernel,
                    )
                };
                return;
            }
            BPACK.with(|bp| {
                let mut bp = bp.borrow_mut();
                let need = len.div_ceil(NR) * NR * kk;
                if bp.len() < need {
                    bp.resize(need, 0.0);
                }
                for (r, &o) in offs.iter().enumerate() {
                    pack_b_row(&src[o + p0..o + p1], r, kk, &mut bp);
                }
                // SAFETY: see above.
                unsafe { gemm_tile_to(mlen, len, kk, ap, &bp, bias, self.act, dst, self.kernel) };
            });
        };
        let tasks = ntiles * mchunks;
        if tasks == 1 {
            run(0)
        } else {
            (0..tasks).into_par_iter().for_each(run);
        }
        if self.opts.conv_profile {
            let dt = t_prep.map_or(0.0, |t| t.elapsed().as_secs_f64());
            let dpl = t_planes.map_or(0.0, |t| t.elapsed().as_secs_f64()) - dt;
            let fl = 2.0 * (self.cout * kk * n) as f64;
            eprintln!("conv {}->{} k{} s{} {}x{}: planes {:.2} ms, prep+gemm {:.2} ms {:.0} MFLOP {:.1} GFLOP/s (tn {tn}, tiles {ntiles}x{mchunks})", self.cin, self.cout, k, s, oh, ow, dpl * 1e3, dt * 1e3, fl / 1e6, fl / dt / 1e9);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, conv_ref, kernels_to_test, pseudo};

    fn conv(shape: (usize, usize, usize, usize, usize), act: bool, opts: KernelOptions) -> Conv {
        let (cin, cout, k, stride, groups) = shape;
        let (w, b) = (pseudo(cout * cin / groups * k * k, 1), pseudo(cout, 2));
        Conv::new(cin, cout, k, stride, groups, w, b, act, opts)
    }

    /// A layer holding its panels in 16 bits computes the f32 layer's outputs bit for bit and keeps
    /// no f32 panels; one whose raw weights are not 16-bit values keeps f32 panels. The GEMM paths
    /// (1x1, implicit im2col, packed strided), 1 and 3 threads; `weights()` unpacks the same.
    #[test]
    fn half_weights_give_the_same_numbers_with_half_the_panels() {
        use crate::kernels::testutil::thread_pool;
        let no_wino = KernelOptions { winograd: false, ..KernelOptions::default() };
        let half = KernelOptions { half_weights: true, ..no_wino };
        for &(cin, cout, k, stride, h, w) in &[(16, 24, 1, 1, 9, 13), (12, 20, 3, 1, 11, 9), (3, 16, 3, 2, 17, 22), (32, 9, 3, 2, 15, 16)] {
            // raw weights that a half-precision checkpoint holds, and a BatchNorm scale that is not
            let raw: Vec<f32> = pseudo(cout * cin * k * k, 1).iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
            let scale: Vec<f32> = pseudo(cout, 4).iter().map(|x| 0.7 + x.abs() / 3.0).collect();
            let b = pseudo(cout, 2);
            let x = pseudo(cin * h * w, 3);
            let dims = (cin, cout, k, stride, 1);
            let plain = Conv::new_scaled(dims, raw.clone(), &scale, b.clone(), true, no_wino);
            let held = Conv::new_scaled(dims, raw.clone(), &scale, b.clone(), true, half);
            assert!(held.half.is_some() && held.pa.is_empty() && !plain.pa.is_empty());
            assert_eq!(plain.weights().as_ref(), held.weights().as_ref());
            for threads in [1, 3] {
                let (want, got) = thread_pool(threads).install(|| (plain.forward(&x, h, w), held.forward(&x, h, w)));
                assert!(want.iter().zip(got.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "{dims:?} {threads} threads");
            }
            let not_half: Vec<f32> = raw.iter().map(|x| x * 1.000_1).collect();
            let kept = Conv::new_scaled(dims, not_half, &scale, b, true, half);
            assert!(kept.half.is_none() && !kept.pa.is_empty(), "{dims:?}: f32 kept for weights that are not 16-bit values");
        }
    }

    /// Every path a convolution can take, forced through its options: direct GEMM (1x1), implicit
    /// im2col (strided, K over one block), B packed per tile (strided, one K block), Winograd off /
    /// F(2,3) only / F(4,3) always / by size, depthwise (AVX2 and portable strides); both GEMM
    /// micro-kernels. Odd sizes and channel counts, strides 1 and 2, kernels 1, 3, 5.
    #[test]
    fn conv_paths_match_reference() {
        let mut options = vec![];
        for (name, kernel) in kernels_to_test() {
            for (wname, winograd, winograd4) in [
                ("no winograd", false, Winograd4::Auto),
                ("winograd F(2,3)", true, Winograd4::Never),
                ("winograd F(4,3)", true, Winograd4::Always),
                ("winograd by size", true, Winograd4::Auto),
            ] {
                let opts = KernelOptions {
                    winograd,
                    winograd4,
                    wide_kernel: kernel.is_wide(),
                    conv_profile: false,
                    half_weights: false,
                    precision: Precision::F32,
                };
                options.push((format!("{name}, {wname}"), opts));
            }
        }
        for &(cin, cout, k, stride, groups, h, w) in &[
            (3, 8, 3, 2, 1, 17, 22),
            (5, 7, 1, 1, 1, 9, 13),
            (6, 6, 3, 1, 6, 11, 10),
            (6, 6, 3, 2, 6, 11, 10),
            (4, 9, 3, 1, 1, 40, 41),
            (4, 3, 5, 1, 1, 12, 7),
            (300, 7, 3, 1, 1, 9, 30),
            (9, 9, 3, 1, 9, 19, 21),
            (5, 5, 5, 1, 5, 12, 17),
            (4, 6, 3, 2, 1, 32, 48),
            (64, 51, 3, 2, 1, 33, 31),
            // Winograd-sized layers (>= 16 channels each side)
            (16, 24, 3, 1, 1, 21, 19),
            (33, 17, 3, 1, 1, 8, 9),
            // depthwise rows of 32 + 8 + an overlapping last vector
            (4, 4, 3, 1, 4, 9, 45),
            // maps of 4096 pixels and more: packed GEMMs weight panel by weight panel
            (5, 9, 1, 1, 1, 64, 70),
            (3, 8, 3, 2, 1, 130, 140),
        ] {
            let shape = (cin, cout, k, stride, groups);
            let x = pseudo(cin * h * w, 3);
            let c0 = conv(shape, true, KernelOptions::default());
            let want = conv_ref(shape, &c0.weights(), &c0.b, true, &x, h, w);
            for (what, opts) in &options {
                let c = conv(shape, true, *opts);
                let got = c.forward(&x, h, w);
                assert_close(
                    &got,
                    &want,
                    1e-4,
                    &format!("{cin} {cout} k{k} s{stride} g{groups} {h}x{w}, {what}"),
                );
            }
        }
    }

    /// Each layer keeps only the weight layouts its path uses (issue 25): a Winograd layer its plain
    /// weights (the transforms made on first use, the F(2x2) one only once a small map needs it), a
    /// GEMM layer its panels, a depthwise layer its plain weights; `weights()` gives the same
    /// values back whichever it keeps.
    #[test]
    fn layers_keep_only_the_layouts_their_path_uses() {
        let no_wino = KernelOptions {
            winograd: false,
            ..KernelOptions::default()
        };
        let f2_only = KernelOptions {
            winograd4: Winograd4::Never,
            ..KernelOptions::default()
        };
        let wino_path = cfg!(all(target_feature = "avx2", target_feature = "fma"));
        for (shape, opts, panels, plain) in [
            (
                (16, 24, 3, 1, 1),
                KernelOptions::default(),
                !wino_path,
                wino_path,
            ),
            ((16, 24, 3, 1, 1), no_wino, true, false),
            ((8, 24, 3, 1, 1), KernelOptions::default(), true, false),
            ((16, 24, 3, 2, 1), KernelOptions::default(), true, false),
            ((16, 24, 1, 1, 1), KernelOptions::default(), true, false),
            ((16, 16, 3, 1, 16), KernelOptions::default(), false, true),
        ] {
            let (cin, cout, k, _, groups) = shape;
            let c = conv(shape, true, opts);
            assert_eq!(!c.pa.is_empty(), panels, "{shape:?} {opts:?}: GEMM panels");
            assert_eq!(!c.w.is_empty(), plain, "{shape:?} {opts:?}: plain weights");
            assert_eq!(
                c.weights(),
                pseudo(cout * cin / groups * k * k, 1),
                "{shape:?}"
            );
            assert!(
                c.wino.get().is_none() && c.wino4.get().is_none(),
                "{shape:?}: Winograd weights made at load"
            );
        }
        // An 8-bit layer: its 8-bit weights only, no f32 copy of any layout.
        let int8 = KernelOptions {
            precision: Precision::Int8,
            ..KernelOptions::default()
        };
        let c = conv((16, 24, 3, 1, 1), true, int8);
        assert!(c.q.is_some() && c.w.is_empty() && c.pa.is_empty() && c.bpad.is_empty());
        if wino_path {
            let c = conv((16, 24, 3, 1, 1), true, f2_only);
            let x = pseudo(16 * 12 * 10, 3);
            let _ = c.forward(&x, 12, 10);
            assert!(
                c.wino.get().is_some() && c.wino4.get().is_none(),
                "F(2x2) only, made on use"
            );
        }
    }

    /// By default F(4x4) serves layers up to `F4_MAX_CIN_COUT` on maps of 25 tiles and more; wider
    /// layers stay on F(2x2) (no F(4x4) weights made), unless F(4x4) is forced.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[test]
    fn only_layers_up_to_the_width_cap_make_f4_weights() {
        let x = |cin: usize| pseudo(cin * 20 * 20, 3);
        let narrow = conv((256, 128, 3, 1, 1), true, KernelOptions::default());
        let _ = narrow.forward(&x(256), 20, 20);
        assert!(narrow.wino4.get().is_some() && narrow.wino.get().is_none());
        let wide = conv((256, 129, 3, 1, 1), true, KernelOptions::default());
        let _ = wide.forward(&x(256), 20, 20);
        assert!(wide.wino4.get().is_none() && wide.wino.get().is_some());
        let always = KernelOptions {
            winograd4: Winograd4::Always,
            ..KernelOptions::default()
        };
        let forced = conv((256, 129, 3, 1, 1), true, always);
        let _ = forced.forward(&x(256), 20, 20);
        assert!(forced.wino4.get().is_some());
    }

    /// The options a model is loaded with reach its layers, and the micro-kernel they choose is
    /// wide only where the CPU allows.
    #[test]
    fn options_select_the_kernel() {
        let narrow = KernelOptions {
            wide_kernel: false,
            ..KernelOptions::default()
        };
        let c = conv((16, 16, 3, 1, 1), true, narrow);
        assert_eq!(c.options(), narrow);
        assert!(!c.kernel.is_wide());
        let c = conv((16, 16, 3, 1, 1), true, KernelOptions::default());
        assert_eq!(c.kernel.is_wide(), crate::kernels::gemm::cpu_has_wide());
    }

    /// Per-layer timing of the Winograd and direct paths (best of WINO_REPS, default 50), on
    /// RAYON_NUM_THREADS threads: `cargo test -p haven-pose --lib winograd_speed -- --ignored --nocapture`.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[test]
    #[ignore]
    fn winograd_speed() {
        let reps: usize = std::env::var("WINO_REPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(50);
        for &(cin, cout, h, w) in &[
            (64, 115, 80, 80),
            (64, 64, 80, 80),
            (51, 51, 80, 80),
            (128, 115, 40, 40),
            (64, 64, 40, 40),
            (32, 64, 40, 40),
            (64, 32, 40, 40),
            (256, 115, 20, 20),
            (64, 64, 20, 20),
            (16, 32, 80, 80),
            (16, 8, 160, 160),
            (8, 16, 160, 160),
            (32, 32, 40, 40),
        ] {
            let c = conv((cin, cout, 3, 1, 1), true, KernelOptions::default());
            // the same layer without Winograd: a layer keeps only the weights its path uses
            let no_wino = KernelOptions {
                winograd: false,
                ..KernelOptions::default()
            };
            let d = conv((cin, cout, 3, 1, 1), true, no_wino);
            let x = pseudo(cin * h * w, 3);
            let mut o = vec![0f32; cout * h * w];
            let time = |f: &dyn Fn(&mut [f32])| {
                let mut o = o.clone();
                let mut best = f64::MAX;
                for _ in 0..reps {
                    let t0 = std::time::Instant::now();
                    f(&mut o);
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                best * 1e3
            };
            let tw = time(&|o| c.winograd(&x, h, w, o));
            let td = time(&|o| d.dense_gemm(&x, h, w, h, w, o));
            o[0] = tw as f32;
            eprintln!(
                "{cin:>3}->{cout:<3} {h:>3}x{w:<3}: winograd {tw:.3} ms, direct {td:.3} ms, ratio {:.2}",
                td / tw
            );
        }
    }
}
