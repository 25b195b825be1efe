//! CPU kernels: convolution (BatchNorm folded) as im2col + GEMM with a fused bias + SiLU epilogue,
//! depthwise convolution, max-pool, nearest upsampling, attention and fast exp/sigmoid/SiLU.
//!
//! Feature maps are f32, CHW (batch 1), contiguous. Concatenation along channels is therefore a
//! matter of writing into consecutive slices of one buffer, which the blocks do instead of copying.

use std::cell::RefCell;

use crate::kernel;
use rayon::prelude::*;

/// A pooled f32 buffer: feature maps and scratch space are recycled between layers and frames, which
/// saves the page faults and zeroing of fresh large allocations. Its initial contents are unspecified
/// (old values, never uninitialised memory): use [`PBuf::zeroed`] where zeros are needed.
/// (vector, pooled, length in use: the vector keeps its longest initialised length so that reuse
/// does not zero-fill it again)
pub(crate) struct PBuf(Vec<f32>, bool, usize);

static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
const POOL_MIN: usize = 16 * 1024; // floats; smaller buffers come from malloc
/// Upper bound of the recycled memory (the working set at 640x640 is ~60 MB per concurrent frame).
const POOL_MAX_BYTES: usize = 256 << 20;

/// Bytes the feature-map pool holds for reuse (not counting buffers in use).
pub fn pooled_bytes() -> usize {
    POOL.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|b| b.capacity() * 4).sum()
}

impl PBuf {
    pub fn new(len: usize) -> Self {
        if len >= POOL_MIN {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len && v.capacity() <= 4 * len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let mut v = pool.swap_remove(i);
                drop(pool);
                if v.len() < len {
                    v.resize(len, 0.0);
                }
                return PBuf(v, true, len);
            }
        }
        PBuf(vec![0f32; len], true, len)
    }

    /// Wraps a caller's vector; it is freed normally, not kept in the pool.
    pub fn from_vec(v: Vec<f32>) -> Self {
        let n = v.len();
        PBuf(v, false, n)
    }

    /// The contents as a plain vector (copied out of pooled memory).
    pub fn to_vec(&self) -> Vec<f32> {
        self.0[..self.2].to_vec()
    }
}

impl Drop for PBuf {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if self.1 && v.capacity() >= POOL_MIN {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            let total: usize = pool.iter().map(|b| b.capacity() * 4).sum();
            if total + v.capacity() * 4 <= POOL_MAX_BYTES {
                pool.push(v);
            }
        }
    }
}

impl std::ops::Deref for PBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0[..self.2]
    }
}

impl std::ops::DerefMut for PBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0[..self.2]
    }
}

/// HAVEN_CONV_PROFILE=1: print every dense convolution's time and GFLOP/s to stderr.
fn profile_convs() -> bool {
    static P: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *P.get_or_init(|| std::env::var_os("HAVEN_CONV_PROFILE").is_some_and(|v| v != "0"))
}

/// A raw pointer that may cross rayon tasks; each task writes a disjoint region.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// exp(x) for f32, Cephes polynomial, branch-free and integer-cast-free so that loops over slices
/// vectorise. Relative error about 2e-7 in the normal range; clamps to [-87.3, 88.3].
#[inline(always)]
pub(crate) fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer held in the low bits
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + MAGIC;
    let fx = t - MAGIC;
    let n = t.to_bits().wrapping_sub(MAGIC.to_bits()); // = round(x * log2 e) as two's complement
    let x = x - fx * 0.693_359_4 - fx * -2.121_944_4e-4;
    let z = x * x;
    let mut y = 1.987_569_1e-4_f32;
    y = y * x + 1.398_199_9e-3;
    y = y * x + 8.333_452e-3;
    y = y * x + 4.166_579_6e-2;
    y = y * x + 1.666_666_5e-1;
    y = y * x + 5.000_000_1e-1;
    y = y * z + x + 1.0;
    let pow2n = f32::from_bits(n.wrapping_add(127) << 23);
    y * pow2n
}

#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_fast(-x))
}

#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp_fast(-x))
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    // Loads and stores through packed wrappers: plain unaligned vmovups, free of the debug-build
    // precondition checks that `_mm256_loadu_ps` (copy_nonoverlapping) and `ptr::add` carry, since the
    // workspace's dev profile keeps debug assertions on.
    #[repr(C, packed)]
    #[derive(Clone, Copy)]
    struct Un(__m256);
    #[repr(C, packed)]
    #[derive(Clone, Copy)]
    struct F1(f32);

    /// Unaligned 8 x f32 load.
    #[inline(always)]
    pub unsafe fn ld(p: *const f32) -> __m256 {
        (*(p as *const Un)).0
    }
    /// Unaligned 8 x f32 store.
    #[inline(always)]
    pub unsafe fn st(p: *mut f32, v: __m256) {
        (*(p as *mut Un)).0 = v;
    }
    /// Broadcast of one f32.
    #[inline(always)]
    pub unsafe fn bc(p: *const f32) -> __m256 {
        _mm256_set1_ps((*(p as *const F1)).0)
    }

    /// 8-wide exp_fast.
    #[inline(always)]
    pub unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
            _mm256_set1_ps(88.3),
        );
        let magic = _mm256_set1_ps(12_582_912.0);
        let t = _mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), magic);
        let fx = _mm256_sub_ps(t, magic);
        let n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), r);
        let z = _mm256_mul_ps(r, r);
        let mut y = _mm256_set1_ps(1.987_569_1e-4);
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.398_199_9e-3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.333_452e-3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.166_579_6e-2));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.666_666_5e-1));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.000_000_1e-1));
        y = _mm256_add_ps(_mm256_fmadd_ps(y, z, r), _mm256_set1_ps(1.0));
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_add_epi32(n, _mm256_set1_epi32(127)),
            23,
        ));
        _mm256_mul_ps(y, pow2n)
    }

    /// SiLU of 6 vectors in place, computed stage by stage so that the six dependency chains
    /// interleave (one `silu8` after another is latency-bound). Same arithmetic as [`silu8`].
    #[inline(always)]
    pub unsafe fn silu8x6(v: &mut [__m256; 6]) {
        silu8xn(v)
    }

    /// SiLU of N vectors in place, stage by stage (see [`silu8x6`]).
    ///
    /// x / (1 + 2^t) with t = -x log2(e) clamped to [-126, 125]: 2^t = 2^round(t) (exponent bits) times
    /// a degree-5 polynomial of the remainder in [-0.5, 0.5] (relative error 2e-7, like `exp_fast`),
    /// and the division as a reciprocal estimate + one Newton step. 19 operations per vector: a
    /// quarter fewer than through `exp_fast` with its two-constant range reduction.
    #[inline(always)]
    pub unsafe fn silu8xn<const N: usize>(v: &mut [__m256; N]) {
        let zero = _mm256_setzero_ps();
        let (lo, hi) = (_mm256_set1_ps(-126.0), _mm256_set1_ps(125.0));
        let magic = _mm256_set1_ps(12_582_912.0); // 1.5 * 2^23: adding it rounds to an integer
        let neg_log2e = _mm256_set1_ps(-std::f32::consts::LOG2_E);
        let mut t = [zero; N];
        let mut r = [zero; N];
        for i in 0..N {
            t[i] = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], neg_log2e), lo), hi);
        }
        for i in 0..N {
            r[i] = _mm256_add_ps(t[i], magic);
        }
        let mut f = [zero; N];
        for i in 0..N {
            f[i] = _mm256_sub_ps(t[i], _mm256_sub_ps(r[i], magic));
        }
        let mut y = [_mm256_set1_ps(POW2_POLY[5]); N];
        for c in [POW2_POLY[4], POW2_POLY[3], POW2_POLY[2], POW2_POLY[1], POW2_POLY[0]] {
            let cv = _mm256_set1_ps(c);
            for i in 0..N {
                y[i] = _mm256_fmadd_ps(y[i], f[i], cv);
            }
        }
        // 2^round(t): the integer sits in the low mantissa bits of r; shifted into the exponent
        // field (magic's own bits shift out: 0x4B400000 << 23 = 0) and biased by 127
        let bias = _mm256_set1_epi32(127 << 23);
        let one = _mm256_set1_ps(1.0);
        let two = _mm256_set1_ps(2.0);
        for i in 0..N {
            let pow2n = _mm256_castsi256_ps(_mm256_add_epi32(
                _mm256_slli_epi32(_mm256_castps_si256(r[i]), 23),
                bias,
            ));
            y[i] = _mm256_fmadd_ps(y[i], pow2n, one);
        }
        for i in 0..N {
            let q = _mm256_rcp_ps(y[i]);
            let q = _mm256_mul_ps(q, _mm256_fnmadd_ps(y[i], q, two));
            v[i] = _mm256_mul_ps(v[i], q);
        }
    }

    /// 2^f on [-0.5, 0.5], c0 + c1 f + ... + c5 f^5 (fitted to relative error; max 2.0e-7 in f32).
    const POW2_POLY: [f32; 6] = [
        1.000_000_1,
        0.693_147_06,
        0.240_221_11,
        0.055_506,
        0.009_675_888,
        0.001_331_336_1,
    ];

    /// 8-wide SiLU, the arithmetic of [`silu8xn`].
    #[inline(always)]
    pub unsafe fn silu8(x: __m256) -> __m256 {
        let mut v = [x];
        silu8xn(&mut v);
        v[0]
    }

    /// dst_even[j] = src[2j], dst_odd[j] = src[2j + 1] (src.len() a multiple of 16).
    pub unsafe fn deinterleave2(src: &[f32], dst_even: &mut [f32], dst_odd: &mut [f32]) {
        let n = src.len() / 16;
        assert!(dst_even.len() >= n * 8 && dst_odd.len() >= n * 8);
        let (s, e, o) = (src.as_ptr(), dst_even.as_mut_ptr(), dst_odd.as_mut_ptr());
        for i in 0..n {
            let a = ld(s.wrapping_add(16 * i));
            let b = ld(s.wrapping_add(16 * i + 8));
            let ev =
                _mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0x88>(a, b)));
            let od =
                _mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0xDD>(a, b)));
            st(e.wrapping_add(8 * i), _mm256_castpd_ps(ev));
            st(o.wrapping_add(8 * i), _mm256_castpd_ps(od));
        }
    }

    /// Depthwise k x k convolution, stride 1, of one zero-padded plane (row stride wp) into o [h, w].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn dw_plane(
        pp: &[f32],
        wp: usize,
        wk: &[f32],
        k: usize,
        b: f32,
        act: bool,
        h: usize,
        w: usize,
        o: &mut [f32],
    ) {
        assert!(
            pp.len() >= (h + k - 1) * wp
                && o.len() >= h * w
                && wk.len() >= k * k
                && wp >= w + k - 1
        );
        let mut wv = [_mm256_setzero_ps(); 49];
        for (i, v) in wk.iter().enumerate().take(49) {
            wv[i] = _mm256_set1_ps(*v);
        }
        let bv = _mm256_set1_ps(b);
        let (src, dst) = (pp.as_ptr(), o.as_mut_ptr());
        for y in 0..h {
            let mut x = 0;
            // four vectors at a time: four independent FMA chains, and SiLU over all four at once
            while x + 32 <= w {
                let mut acc = [bv; 4];
                for ky in 0..k {
                    let r = src.wrapping_add((y + ky) * wp + x);
                    for kx in 0..k {
                        let wkv = wv[ky * k + kx];
                        for (j, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(wkv, ld(r.wrapping_add(kx + 8 * j)), *a);
                        }
                    }
                }
                if act {
                    silu8xn(&mut acc);
                }
                for (j, a) in acc.iter().enumerate() {
                    st(dst.wrapping_add(y * w + x + 8 * j), *a);
                }
                x += 32;
            }
            // then single vectors, the last one ending at the row's end (it may overlap the one
            // before it: those outputs are computed twice, to the same values)
            while x < w && w >= 8 {
                let xv = x.min(w - 8);
                let mut acc = bv;
                for ky in 0..k {
                    let r = src.wrapping_add((y + ky) * wp + xv);
                    for kx in 0..k {
                        acc = _mm256_fmadd_ps(wv[ky * k + kx], ld(r.wrapping_add(kx)), acc);
                    }
                }
                if act {
                    acc = silu8(acc);
                }
                st(dst.wrapping_add(y * w + xv), acc);
                x = xv + 8;
            }
            while x < w {
                let mut acc = b;
                for ky in 0..k {
                    for kx in 0..k {
                        acc += wk[ky * k + kx] * pp[(y + ky) * wp + x + kx];
                    }
                }
                o[y * w + x] = if act { super::silu(acc) } else { acc };
                x += 1;
            }
        }
    }

    /// dst = sigmoid(src) elementwise.
    pub fn sigmoid_into(dst: &mut [f32], src: &[f32]) {
        assert!(src.len() >= dst.len());
        let n = dst.len() / 8;
        unsafe {
            let one = _mm256_set1_ps(1.0);
            for i in 0..n {
                let v = ld(src.as_ptr().wrapping_add(8 * i));
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
                st(
                    dst.as_mut_ptr().wrapping_add(8 * i),
                    _mm256_div_ps(one, _mm256_add_ps(one, e)),
                );
            }
        }
        for i in n * 8..dst.len() {
            dst[i] = super::sigmoid(src[i]);
        }
    }

    /// y = silu(y + b) over a slice.
    #[inline]
    pub fn bias_silu(y: &mut [f32], b: f32) {
        unsafe {
            let bv = _mm256_set1_ps(b);
            let mut chunks = y.chunks_exact_mut(8);
            for c in &mut chunks {
                let p = c.as_mut_ptr();
                st(p, silu8(_mm256_add_ps(ld(p), bv)));
            }
            for v in chunks.into_remainder() {
                *v = super::silu(*v + b);
            }
        }
    }
}

/// a += b elementwise (parallel in chunks).
pub(crate) fn add_assign(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    a.par_chunks_mut(16 * 1024)
        .zip(b.par_chunks(16 * 1024))
        .for_each(|(x, y)| {
            for (p, q) in x.iter_mut().zip(y) {
                *p += *q;
            }
        });
}

/// dst = src (parallel in chunks).
pub(crate) fn copy_par(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(64 * 1024)
        .zip(src.par_chunks(64 * 1024))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// x = exp(x) elementwise.
pub(crate) fn exp_inplace(x: &mut [f32]) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        let n = x.len() / 8;
        unsafe {
            for i in 0..n {
                let p = x.as_mut_ptr().wrapping_add(8 * i);
                avx2::st(p, avx2::exp8(avx2::ld(p)));
            }
        }
        for v in &mut x[n * 8..] {
            *v = exp_fast(*v);
        }
        return;
    }
    #[allow(unreachable_code)]
    for v in x.iter_mut() {
        *v = exp_fast(*v);
    }
}

/// dst = sigmoid(src) elementwise.
pub(crate) fn sigmoid_into(dst: &mut [f32], src: &[f32]) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        avx2::sigmoid_into(dst, src);
        return;
    }
    #[allow(unreachable_code)]
    for (d, s) in dst.iter_mut().zip(src) {
        *d = sigmoid(*s);
    }
}

/// y = act(y + b) over a slice.
#[inline]
pub(crate) fn bias_act(y: &mut [f32], b: f32, act: bool) {
    if act {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        {
            avx2::bias_silu(y, b);
            return;
        }
        #[allow(unreachable_code)]
        for v in y.iter_mut() {
            *v = silu(*v + b);
        }
    } else {
        for v in y.iter_mut() {
            *v += b;
        }
    }
}

/// A convolution with BatchNorm folded in: weight [cout, cin/groups, k, k], bias [cout], optional SiLU.
pub(crate) struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    /// 1 (dense) or cin == cout (depthwise)
    pub groups: usize,
    /// [cout, cin/groups, k, k]
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub act: bool,
    /// dense: weights packed for the GEMM micro-kernel, bias padded to the panel height
    pa: Vec<f32>,
    bpad: Vec<f32>,
    /// dense 3x3 stride 1: Winograd F(2x2, 3x3) weights
    wino: Option<Wino>,
    /// Winograd F(4x4, 3x3) weights, made on first use
    wino4: std::sync::OnceLock<Wino>,
}

/// Winograd F(2x2, 3x3) weights U = G g Gᵀ: 16 matrices [cout, cin] (index 4 * row + column of the
/// 4 x 4 transformed tile), each packed for the micro-kernel; the bias is applied after the output
/// transform, so the GEMMs get a zero bias.
struct Wino {
    u: Vec<Vec<f32>>,
    zero: Vec<f32>,
}

/// HAVEN_WINOGRAD=0 turns the Winograd path off (for A/B comparisons); on by default.
fn winograd_enabled() -> bool {
    static P: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *P.get_or_init(|| std::env::var_os("HAVEN_WINOGRAD").is_none_or(|v| v != "0"))
}

/// HAVEN_CONV_PROFILE: nanoseconds in the Winograd input transform, GEMMs and output transform.
static WINO_NS: [std::sync::atomic::AtomicU64; 3] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 3];

/// Adds the time since `t` (if profiling) to phase `i` of [`WINO_NS`] and restarts it.
fn wino_lap(t: &mut Option<std::time::Instant>, i: usize) {
    if let Some(t) = t {
        WINO_NS[i].fetch_add(
            t.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        *t = std::time::Instant::now();
    }
}

/// HAVEN_WINOGRAD4=0 / 1: F(4x4, 3x3) off / for every Winograd layer (default: by size).
fn winograd4_mode() -> Option<bool> {
    static P: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    *P.get_or_init(|| std::env::var("HAVEN_WINOGRAD4").ok().map(|v| v != "0"))
}

fn winograd4_enabled() -> bool {
    winograd4_mode() != Some(false)
}

/// Floats of transformed input (16 x cin x tiles) per tile chunk: ~512 KiB, half the L2.
const WINO_V_FLOATS: usize = 128 * 1024;
/// Floats of GEMM results (16 x cout x tiles) per output-transform pass.
const WINO_M_FLOATS: usize = 64 * 1024;

impl Wino {
    /// F(4x4, 3x3): U = G g Gᵀ with G 6 x 3, 36 matrices.
    fn new4(w: &[f32], cin: usize, cout: usize) -> Self {
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
            u: u.iter().map(|m| kernel::pack_a(m, cout, cin)).collect(),
            zero: vec![0f32; cout.div_ceil(kernel::MR) * kernel::MR],
        }
    }

    fn new(w: &[f32], cin: usize, cout: usize) -> Self {
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
            u: u.iter().map(|m| kernel::pack_a(m, cout, cin)).collect(),
            zero: vec![0f32; cout.div_ceil(kernel::MR) * kernel::MR],
        }
    }
}

thread_local! {
    static BPACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Winograd scratch: packed transformed input, GEMM results
    static WSCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Calls f(ty, tx_begin, tx_end, t_local) for each tile row segment of the tiles t0 .. t1 (row-major
/// tiles, tw per row); t_local is the index of (ty, tx_begin) relative to t0.
#[inline(always)]
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
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn wino_in8(p: *const f32, wp: usize) -> [std::arch::x86_64::__m256; 16] {
    use avx2::ld;
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn deint(a: __m256, b: __m256) -> (__m256, __m256) {
        let ev = _mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0x88>(a, b)));
        let od = _mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0xDD>(a, b)));
        (_mm256_castpd_ps(ev), _mm256_castpd_ps(od))
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
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn wino4_in8(p: *const f32, wp: usize, natural: bool) -> [std::arch::x86_64::__m256; 36] {
    use avx2::ld;
    use std::arch::x86_64::*;
    #[inline(always)]
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
    unsafe fn bt(c: [__m256; 6]) -> [__m256; 6] {
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
    use avx2::{ld, st};
    use std::arch::x86_64::*;
    // Aᵀ applied to 6 values
    #[inline(always)]
    unsafe fn at(c: [__m256; 6]) -> [__m256; 4] {
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
        avx2::silu8xn::<8>(a.try_into().unwrap());
        avx2::silu8xn::<8>(b.try_into().unwrap());
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
    use avx2::{ld, st};
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
        avx2::silu8xn(&mut y);
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
    ) -> Self {
        assert!(
            groups == 1 || (groups == cin && cin == cout),
            "only dense or depthwise convolutions"
        );
        assert_eq!(w.len(), cout * cin / groups * k * k);
        assert_eq!(b.len(), cout);
        let (pa, bpad) = if groups == 1 {
            let mut bpad = b.clone();
            bpad.resize(cout.div_ceil(kernel::MR) * kernel::MR, 0.0);
            (kernel::pack_a(&w, cout, cin * k * k), bpad)
        } else {
            (Vec::new(), Vec::new())
        };
        let wino = (groups == 1 && k == 3 && stride == 1).then(|| Wino::new(&w, cin, cout));
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
            bpad,
            wino,
            wino4: std::sync::OnceLock::new(),
        }
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
            self.depthwise(x, h, w, oh, ow, out)
        }
    }

    /// Dense convolution as GEMM over a "wide" pixel stream: the input is zero-padded and split into
    /// stride x stride phase planes, so that for every kernel tap (ci, ky, kx) the values the output
    /// pixels need form one contiguous run (output rows are computed W2 >= ow wide, the extra columns
    /// are discarded). Packing B is then a plain vector copy instead of a gather.
    fn dense(&self, x: &[f32], h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        if self.wino.is_some() && winograd_enabled() && self.winograd_pays(h, w) {
            return self.winograd(x, h, w, out);
        }
        self.dense_gemm(x, h, w, oh, ow, out)
    }

    /// Whether the Winograd path is expected to beat the direct GEMM for this layer: with fewer than 16
    /// input or output channels the transforms (which scale with cin and cout, not cin x cout) outweigh
    /// the saved multiplications (measured at 160x160 with 8 -> 16 and 16 -> 8 channels: 10-40 % slower;
    /// 16 -> 32 and 32 -> 16 at 80x80: 20 % faster).
    fn winograd_pays(&self, _h: usize, _w: usize) -> bool {
        self.cin.min(self.cout) >= 16
    }

    /// Whether F(4x4, 3x3) is expected to beat F(2x2, 3x3) for this layer: on 40x40 and larger maps
    /// it is 15-35 % faster, at 20x20 (25 tiles) ~5 %; smaller maps (e.g. 10x10 at 320x320 input, where
    /// 4 x 4 tiles would compute 12x12) keep F(2x2, 3x3) (not measured).
    fn winograd4_pays(&self, h: usize, w: usize) -> bool {
        winograd4_mode() == Some(true) || h.div_ceil(4) * w.div_ceil(4) >= 25
    }

    /// Dense 3x3 stride-1 convolution by Winograd F(2x2, 3x3): every 2 x 2 output tile is computed from
    /// the 4 x 4 input tile around it with 16 multiplications per (cin, cout) pair instead of 36; or,
    /// on maps of at least 25 4 x 4 tiles, F(4x4, 3x3): 4 x 4 output tiles from 6 x 6 input tiles,
    /// 36 multiplications instead of 144.
    /// Per chunk of tiles: input transform V = Bᵀ d B into 16 (36) packed [cin, tiles] GEMM operands,
    /// 16 (36) GEMMs M = U V with the packed micro-kernel, output transform Y = Aᵀ M A + bias (+ SiLU)
    /// into the compact [cout, h, w] output. Vectorised over 8 tiles of a tile row.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    fn winograd(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        if winograd4_enabled() && self.winograd4_pays(h, w) {
            let u = self
                .wino4
                .get_or_init(|| Wino::new4(&self.w, self.cin, self.cout));
            self.winograd_r::<4>(u, x, h, w, out)
        } else {
            self.winograd_r::<2>(self.wino.as_ref().expect("winograd weights"), x, h, w, out)
        }
    }

    /// Winograd F(R x R, 3x3), R = 2 or 4 (see [`Conv::winograd`]).
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    fn winograd_r<const R: usize>(
        &self,
        wino: &Wino,
        x: &[f32],
        h: usize,
        w: usize,
        out: &mut [f32],
    ) {
        use kernel::{MR, NR};
        let nx = (R + 2) * (R + 2);
        let (cin, cout) = (self.cin, self.cout);
        let (th, tw) = (h.div_ceil(R), w.div_ceil(R));
        let nt = th * tw;
        let slack = (R + 1) * (w + 2) + R * tw + 8 * R + 64;
        let (planes, hp, wp) = phase_planes(x, cin, h, w, 1, 1, slack);
        let t_prep = profile_convs().then(std::time::Instant::now);
        let plane = hp * wp;
        // the furthest input read: 8-tile groups of the last tile row read R + 2 rows and
        // 8 R + 2 columns (rounded up to whole vectors) from R tx
        assert!((cin - 1) * plane + (R * th + 1) * wp + R * tw + 8 * R + 4 <= planes.len());
        let threads = rayon::current_num_threads().max(1);
        let mut tc = (WINO_V_FLOATS / nx / cin / NR).clamp(1, 10) * NR;
        if nt.div_ceil(tc) < 2 * threads {
            tc = nt.div_ceil(2 * threads).div_ceil(NR).max(1) * NR;
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
        let cp = SendPtr(out.as_mut_ptr());
        let src = &planes[..];
        // Input transform of tiles t0 .. t1, channels c0 .. c1, channel by channel, straight into the
        // packed GEMM operands ([n/NR][cin][NR] per xi, `vst` apart)
        let transform_in = |vpp: SendPtr, vst: usize, t0: usize, t1: usize, c0: usize, c1: usize| {
            // tiles are processed in increasing order, so the junk lanes past a tile row's end land
            // on tiles that are written afterwards (or on padding)
            static HEAD: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
            let vpp = vpp.0;
            for c in c0..c1 {
                let pc = src[c * plane..].as_ptr();
                for_tile_rows(t0, t1, tw, |ty, txa, txb, tl| {
                    let mut tx = txa;
                    while tx < txb {
                        let t = tl + tx - txa;
                        let (panel, off) = (t / NR, t % NR);
                        let d = vpp.wrapping_add((panel * cin + c) * NR + off);
                        unsafe {
                            use std::arch::x86_64::*;
                            let pt = pc.wrapping_add(R * ty * wp + R * tx);
                            let mut v = [_mm256_setzero_ps(); 36];
                            if R == 2 {
                                v[..16].copy_from_slice(&wino_in8(pt, wp));
                            } else {
                                v = wino4_in8(pt, wp, txb - tx < 8);
                            }
                            if off + 8 <= NR {
                                for (xi, vv) in v.iter().enumerate().take(nx) {
                                    avx2::st(d.wrapping_add(xi * vst), *vv);
                                }
                            } else {
                                // lanes 0 .. NR - off end this panel's row, the rest start the next
                                let k = NR - off;
                                let m1 = _mm256_loadu_si256(
                                    HEAD.as_ptr().add(8 - k) as *const __m256i
                                );
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
        };
        // GEMMs M = U V for output channels m0 .. mend and the output transform into `out`
        #[allow(clippy::too_many_arguments)]
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
            let vsz = n.div_ceil(NR) * NR * cin;
            let msub = ((WINO_M_FLOATS / nx / n) / MR * MR).max(MR);
            let mstride = msub.min(mend - m0) * n + 32;
            if mb.len() < nx * mstride + 8 {
                mb.resize(nx * mstride + 8, 0.0);
            }
            let mut ms = m0;
            while ms < mend {
                let ml = msub.min(mend - ms);
                for xi in 0..nx {
                    kernel::gemm_tile(
                        ml,
                        n,
                        cin,
                        &wino.u[xi][ms * cin..],
                        &vp[xi * vst..xi * vst + vsz],
                        &wino.zero,
                        false,
                        mb[xi * mstride..].as_mut_ptr(),
                        n,
                    );
                }
                wino_lap(lap, 1);
                // output transform
                for co in 0..ml {
                    let bias = self.b[ms + co];
                    let oc = cp.0.wrapping_add((ms + co) * h * w);
                    let mrow = mb[co * n..].as_ptr();
                    for_tile_rows(t0, t1, tw, |ty, txa, txb, tl| {
                        let mut tx = txa;
                        while tx < txb {
                            let cnt = (txb - tx).min(8);
                            let mt = mrow.wrapping_add(tl + tx - txa);
                            let o = oc.wrapping_add(R * ty * w + R * tx);
                            let cols = (R * cnt).min(w - R * tx);
                            unsafe {
                                if R == 2 {
                                    wino_out8(
                                        mt,
                                        mstride,
                                        bias,
                                        self.act,
                                        o,
                                        w,
                                        cols,
                                        2 * ty + 1 < h,
                                    );
                                } else {
                                    wino4_out8(
                                        mt,
                                        mstride,
                                        bias,
                                        self.act,
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
            let mut lap = profile_convs().then(std::time::Instant::now);
            (0..cgroups).into_par_iter().for_each(|g| {
                transform_in(vpp, vst, 0, nt, g * cin / cgroups, (g + 1) * cin / cgroups)
            });
            wino_lap(&mut lap, 0);
            let v = &v[..];
            (0..mchunks).into_par_iter().for_each(|mi| {
                WSCRATCH.with(|sc| {
                    let mb = &mut sc.borrow_mut().1;
                    let m0 = mi * mcp * MR;
                    let mend = (m0 + mcp * MR).min(cout);
                    let mut lap = profile_convs().then(std::time::Instant::now);
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
                    let mut lap = profile_convs().then(std::time::Instant::now);
                    transform_in(SendPtr(vp.as_mut_ptr()), vst, t0, t1, 0, cin);
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
        if profile_convs() {
            let dt = t_prep.map_or(0.0, |t| t.elapsed().as_secs_f64());
            let fl = 2.0 * (self.cout * self.cin * 9 * h * w) as f64;
            // summed over the threads
            let wt: Vec<f64> = WINO_NS
                .iter()
                .map(|a| a.swap(0, std::sync::atomic::Ordering::Relaxed) as f64 / 1e6)
                .collect();
            eprintln!("conv {}->{} k3 s1 {}x{}: winograd F({R},3) {:.2} ms (thread-ms: input transform {:.2}, gemm {:.2}, output transform {:.2}) {:.0} MFLOP {:.1} GFLOP/s (direct-equivalent; tiles {tc}, chunks {nchunks}x{mchunks})", self.cin, self.cout, h, w, dt * 1e3, wt[0], wt[1], wt[2], fl / 1e6, fl / dt / 1e9);
        }
    }

    fn dense_gemm(&self, x: &[f32], h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
        use kernel::NR;
        let (k, s, p) = (self.k, self.stride, self.pad);
        let kk = self.cin * k * k;
        let direct = k == 1 && s == 1 && p == 0;
        let t_planes = profile_convs().then(std::time::Instant::now);
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
        let pack_strided = s > 1 && kk <= kernel::KC;
        let t_prep = profile_convs().then(std::time::Instant::now);
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
        let mpanels = self.cout.div_ceil(kernel::MR);
        let mchunks = if threads == 1 || ntiles >= 4 * threads {
            1
        } else {
            (4 * threads).div_ceil(ntiles).min(mpanels)
        };
        let mcp = mpanels.div_ceil(mchunks);
        let mchunks = mpanels.div_ceil(mcp);
        let ldc = oh * ow;
        let run = |task: usize| {
            let cp = cp;
            let (t, mi) = (task / mchunks, task % mchunks);
            let p0 = t * tn;
            let p1 = (p0 + tn).min(n);
            let len = p1 - p0;
            let m0 = mi * mcp * kernel::MR;
            let mlen = (mcp * kernel::MR).min(self.cout - m0);
            let (ap, bias) = (&self.pa[m0 * kk..], &self.bpad[m0..]);
            let dst = if direct {
                kernel::Dst::plain(cp.0.wrapping_add(m0 * n + p0), n)
            } else {
                // results go straight to the compact output (the wide junk columns are dropped)
                kernel::Dst {
                    c: cp.0.wrapping_add(m0 * ldc),
                    ldc,
                    q: p0,
                    w2,
                    ow,
                }
            };
            if !direct && !pack_strided {
                kernel::gemm_tile_offs(mlen, len, kk, ap, &src[p0..], &offs, bias, self.act, dst);
                return;
            }
            BPACK.with(|bp| {
                let mut bp = bp.borrow_mut();
                let need = len.div_ceil(NR) * NR * kk;
                if bp.len() < need {
                    bp.resize(need, 0.0);
                }
                for (r, &o) in offs.iter().enumerate() {
                    kernel::pack_b_row(&src[o + p0..o + p1], r, kk, &mut bp);
                }
                kernel::gemm_tile_to(mlen, len, kk, ap, &bp, bias, self.act, dst);
            });
        };
        let tasks = ntiles * mchunks;
        if tasks == 1 {
            run(0)
        } else {
            (0..tasks).into_par_iter().for_each(run);
        }
        if profile_convs() {
            let dt = t_prep.map_or(0.0, |t| t.elapsed().as_secs_f64());
            let dpl = t_planes.map_or(0.0, |t| t.elapsed().as_secs_f64()) - dt;
            let fl = 2.0 * (self.cout * kk * n) as f64;
            eprintln!("conv {}->{} k{} s{} {}x{}: planes {:.2} ms, prep+gemm {:.2} ms {:.0} MFLOP {:.1} GFLOP/s (tn {tn}, tiles {ntiles}x{mchunks})", self.cin, self.cout, k, s, oh, ow, dpl * 1e3, dt * 1e3, fl / 1e6, fl / dt / 1e9);
        }
    }

    fn depthwise(&self, x: &[f32], h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        if self.stride == 1 && oh == h && ow == w && self.k <= 7 {
            let t0 = profile_convs().then(std::time::Instant::now);
            let (k, p) = (self.k, self.pad);
            let (planes, hp, wp) = phase_planes(x, self.cin, h, w, 1, p, 8);
            let t1 = profile_convs().then(std::time::Instant::now);
            let planes = &planes[..];
            out.par_chunks_mut(h * w)
                .enumerate()
                .for_each(|(c, o)| unsafe {
                    avx2::dw_plane(
                        &planes[c * hp * wp..],
                        wp,
                        &self.w[c * k * k..(c + 1) * k * k],
                        k,
                        self.b[c],
                        self.act,
                        h,
                        w,
                        o,
                    )
                });
            if let (Some(t0), Some(t1)) = (t0, t1) {
                eprintln!(
                    "depthwise {}x{} {h}x{w}: planes {:.2} ms, conv {:.2} ms",
                    self.cin, k, (t1 - t0).as_secs_f64() * 1e3, t1.elapsed().as_secs_f64() * 1e3
                );
            }
            return;
        }
        let k = self.k;
        let s = self.stride;
        let pad = self.pad as isize;
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(c, o)| {
            let xc = &x[c * h * w..(c + 1) * h * w];
            let wc = &self.w[c * k * k..(c + 1) * k * k];
            o.fill(0.0);
            for oy in 0..oh {
                let orow = &mut o[oy * ow..(oy + 1) * ow];
                for ky in 0..k {
                    let iy = (oy * s + ky) as isize - pad;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let irow = &xc[iy as usize * w..(iy as usize + 1) * w];
                    for kx in 0..k {
                        let wv = wc[ky * k + kx];
                        let off = kx as isize - pad;
                        if s == 1 {
                            // ox + off in [0, w)
                            let lo = (-off).max(0) as usize;
                            let hi = ((w as isize - off).min(ow as isize)).max(0) as usize;
                            if lo >= hi {
                                continue;
                            }
                            let src =
                                &irow[(lo as isize + off) as usize..(hi as isize + off) as usize];
                            for (d, sv) in orow[lo..hi].iter_mut().zip(src) {
                                *d += wv * sv;
                            }
                        } else {
                            for (ox, d) in orow.iter_mut().enumerate() {
                                let ix = (ox * s) as isize + off;
                                if ix >= 0 && ix < w as isize {
                                    *d += wv * irow[ix as usize];
                                }
                            }
                        }
                    }
                }
            }
            bias_act(o, self.b[c], self.act);
        });
    }
}

/// Zero-pads every channel plane of `x` ([c, h, w]) by `p` and splits it into s x s phase planes:
/// phase (py, px) of channel ci holds padded pixel (iy * s + py, ix * s + px) at [(ci*s*s + py*s + px), iy, ix].
/// Returns (buffer, hp, wp); `slack` zeros follow the last plane (wide reads may run past it).
pub(crate) fn phase_planes(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    s: usize,
    p: usize,
    slack: usize,
) -> (PBuf, usize, usize) {
    let hp = (h + 2 * p).div_ceil(s);
    let wp = (w + 2 * p).div_ceil(s);
    let plane = hp * wp;
    let total = c * s * s * plane;
    let mut buf = PBuf::new(total + slack);
    buf[total..].fill(0.0);
    buf[..total]
        .par_chunks_mut(s * s * plane)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, xc)| {
            if s == 1 {
                dst[..p * wp].fill(0.0);
                dst[(p + h) * wp..].fill(0.0);
                for (y, row) in xc.chunks_exact(w).enumerate() {
                    let d = &mut dst[(y + p) * wp..(y + p + 1) * wp];
                    d[..p].fill(0.0);
                    d[p..p + w].copy_from_slice(row);
                    d[p + w..].fill(0.0);
                }
                return;
            }
            let fast2 = cfg!(all(target_arch = "x86_64", target_feature = "avx2"))
                && s == 2
                && p == 1
                && w.is_multiple_of(16)
                && h.is_multiple_of(2);
            if fast2 {
                // the row loop below writes every value except, in each phase plane, one row (the top
                // one of row phase 0, the bottom one of row phase 1) and one column (the left one of
                // column phase 0, the right one of column phase 1): zero only those
                for py in 0..2 {
                    for px in 0..2 {
                        let pl = &mut dst[(py * 2 + px) * plane..(py * 2 + px + 1) * plane];
                        let r = if py == 0 { 0 } else { hp - 1 };
                        pl[r * wp..(r + 1) * wp].fill(0.0);
                        let col = if px == 0 { 0 } else { wp - 1 };
                        for v in pl.iter_mut().skip(col).step_by(wp) {
                            *v = 0.0;
                        }
                    }
                }
            } else {
                dst.fill(0.0);
            }
            for (y, row) in xc.chunks_exact(w).enumerate() {
                let yy = y + p;
                let (py, iy) = (yy % s, yy / s);
                #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
                if s == 2 && p == 1 && w % 16 == 0 {
                    // padded column x + 1: source evens go to phase 1 from j = 0, odds to phase 0 from j = 1
                    let (ph0, ph1) = dst.split_at_mut(((py * 2 + 1) * hp) * wp);
                    let d0 =
                        &mut ph0[(py * 2 * hp + iy) * wp + 1..(py * 2 * hp + iy) * wp + 1 + w / 2];
                    let d1 = &mut ph1[iy * wp..iy * wp + w / 2];
                    unsafe { avx2::deinterleave2(row, d1, d0) };
                    continue;
                }
                // phase px holds padded columns xq = j * s + px, i.e. source column xq - p
                for px in 0..s {
                    let j0 = (p.saturating_sub(px)).div_ceil(s); // first j with j*s + px >= p
                    let x0 = j0 * s + px - p;
                    if x0 >= w {
                        continue;
                    }
                    let base = ((py * s + px) * hp + iy) * wp;
                    let d = &mut dst[base + j0..base + wp];
                    for (dv, sv) in d.iter_mut().zip(row[x0..].iter().step_by(s)) {
                        *dv = *sv;
                    }
                }
            }
        });
    (buf, hp, wp)
}

/// Max-pool, kernel k, stride 1, padding k/2 (same size), channel by channel (separable).
pub(crate) fn maxpool_same(x: &[f32], h: usize, w: usize, k: usize, out: &mut [f32]) {
    let r = (k / 2) as isize;
    out.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, xc)| {
            let mut tmp = vec![0f32; h * w];
            for y in 0..h {
                let row = &xc[y * w..(y + 1) * w];
                for xo in 0..w {
                    let lo = (xo as isize - r).max(0) as usize;
                    let hi = ((xo as isize + r) as usize).min(w - 1);
                    let mut m = f32::NEG_INFINITY;
                    for v in &row[lo..=hi] {
                        m = m.max(*v);
                    }
                    tmp[y * w + xo] = m;
                }
            }
            for y in 0..h {
                let lo = (y as isize - r).max(0) as usize;
                let hi = ((y as isize + r) as usize).min(h - 1);
                let orow = &mut o[y * w..(y + 1) * w];
                orow.copy_from_slice(&tmp[lo * w..(lo + 1) * w]);
                for yy in lo + 1..=hi {
                    for (d, v) in orow.iter_mut().zip(&tmp[yy * w..(yy + 1) * w]) {
                        *d = d.max(*v);
                    }
                }
            }
        });
}

/// Nearest-neighbour 2x upsampling into `out` ([c, 2h, 2w]).
pub(crate) fn upsample2x(x: &[f32], h: usize, w: usize, out: &mut [f32]) {
    let (h2, w2) = (2 * h, 2 * w);
    out.par_chunks_mut(h2 * w2)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, xc)| {
            for y in 0..h {
                let src = &xc[y * w..(y + 1) * w];
                let (r0, r1) = o[2 * y * w2..(2 * y + 2) * w2].split_at_mut(w2);
                for (i, v) in src.iter().enumerate() {
                    r0[2 * i] = *v;
                    r0[2 * i + 1] = *v;
                }
                r1.copy_from_slice(r0);
            }
        });
}

/// Softmax over each column of a row-major [rows, cols] matrix, of `scale * a`.
pub(crate) fn softmax_cols(a: &mut [f32], rows: usize, cols: usize, scale: f32) {
    const CB: usize = 64;
    let ap = SendPtr(a.as_mut_ptr());
    assert!(a.len() >= rows * cols);
    (0..cols.div_ceil(CB)).into_par_iter().for_each(|cb| {
        let ap = ap;
        let c0 = cb * CB;
        let len = CB.min(cols - c0);
        let row =
            |j: usize| unsafe { std::slice::from_raw_parts_mut(ap.0.add(j * cols + c0), len) };
        let mut mx = row(0).to_vec();
        for j in 1..rows {
            for (m, v) in mx.iter_mut().zip(row(j).iter()) {
                *m = m.max(*v);
            }
        }
        let mut sum = vec![0f32; len];
        for j in 0..rows {
            let r = row(j);
            for (v, m) in r.iter_mut().zip(&mx) {
                *v = (*v - *m) * scale;
            }
            exp_inplace(r);
            for (s, v) in sum.iter_mut().zip(r.iter()) {
                *s += *v;
            }
        }
        for s in sum.iter_mut() {
            *s = 1.0 / *s;
        }
        for j in 0..rows {
            for (v, s) in row(j).iter_mut().zip(&sum) {
                *v *= *s;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Phase planes are exact (zero padding included) even in recycled buffers full of old values.
    #[test]
    fn phase_planes_in_dirty_pool_buffers() {
        for (c, h, w, s, p) in [
            (3usize, 32usize, 32usize, 2usize, 1usize),
            (2, 16, 48, 2, 1),
            (2, 9, 16, 2, 1),
            (3, 10, 12, 1, 1),
            (2, 12, 20, 2, 2),
        ] {
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let hp = (h + 2 * p).div_ceil(s);
            let wp = (w + 2 * p).div_ceil(s);
            let slack = POOL_MIN; // makes the planes a pooled buffer
            let len = c * s * s * hp * wp + slack;
            // leave NaN-filled buffers of about this size in the pool
            let dirty: Vec<PBuf> = (0..4)
                .map(|_| {
                    let mut b = PBuf::new(len);
                    b.fill(f32::NAN);
                    b
                })
                .collect();
            drop(dirty);
            let (buf, hp2, wp2) = phase_planes(&x, c, h, w, s, p, slack);
            assert_eq!((hp2, wp2), (hp, wp));
            for ci in 0..c {
                for py in 0..s {
                    for px in 0..s {
                        for iy in 0..hp {
                            for jx in 0..wp {
                                let (yy, xx) = (iy * s + py, jx * s + px);
                                let want = if yy >= p && yy < h + p && xx >= p && xx < w + p {
                                    x[(ci * h + yy - p) * w + xx - p]
                                } else {
                                    0.0
                                };
                                let got = buf[(((ci * s + py) * s + px) * hp + iy) * wp + jx];
                                assert_eq!(
                                    got, want,
                                    "c{c} h{h} w{w} s{s} p{p} at {ci} {py} {px} {iy} {jx}"
                                );
                            }
                        }
                    }
                }
            }
            assert!(buf[len - slack..len].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn silu_simd_matches_scalar() {
        let mut v: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.05).collect();
        // beyond the clamps: exactly x, or 0
        v.extend([-1e30, -1000.0, -100.0, -88.0, 87.0, 100.0, 1000.0, 1e30]);
        let w = v.clone();
        bias_act(&mut v, 0.25, true);
        for (a, x) in v.iter().zip(&w) {
            let x = x + 0.25;
            let r = (x as f64 / (1.0 + (-x as f64).exp())) as f32;
            assert!((a - r).abs() <= 1e-6 * r.abs().max(1.0), "{x}: {a} vs {r}");
        }
    }

    #[test]
    fn exp_fast_is_accurate() {
        let mut x = -80.0f32;
        while x < 80.0 {
            let a = exp_fast(x);
            let b = x.exp();
            assert!(((a - b) / b).abs() < 1e-6, "x={x} {a} {b}");
            x += 0.37;
        }
    }

    fn conv_ref(c: &Conv, x: &[f32], h: usize, w: usize) -> Vec<f32> {
        let (oh, ow) = c.out_hw(h, w);
        let cpg = c.cin / c.groups;
        let opg = c.cout / c.groups;
        let mut out = vec![0f32; c.cout * oh * ow];
        for co in 0..c.cout {
            let g = co / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = c.b[co];
                    for ci in 0..cpg {
                        for ky in 0..c.k {
                            for kx in 0..c.k {
                                let iy = (oy * c.stride + ky) as isize - c.pad as isize;
                                let ix = (ox * c.stride + kx) as isize - c.pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    acc += c.w[((co * cpg + ci) * c.k + ky) * c.k + kx]
                                        * x[((g * cpg + ci) * h + iy as usize) * w + ix as usize];
                                }
                            }
                        }
                    }
                    out[(co * oh + oy) * ow + ox] = if c.act {
                        acc / (1.0 + (-acc).exp())
                    } else {
                        acc
                    };
                }
            }
        }
        out
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The Winograd path agrees with the direct GEMM path (odd sizes, channel counts that are not
    /// multiples of the panel height, with and without SiLU, maps smaller than a tile chunk or many).
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[test]
    fn winograd_matches_direct() {
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
            let c = Conv::new(
                cin,
                cout,
                3,
                1,
                1,
                pseudo(cout * cin * 9, 1),
                pseudo(cout, 2),
                act,
            );
            let x = pseudo(cin * h * w, 3);
            let mut b = vec![f32::NAN; cout * h * w];
            c.dense_gemm(&x, h, w, h, w, &mut b);
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
            let u4 = Wino::new4(&c.w, cin, cout);
            for r in [2, 4] {
                let mut a = vec![f32::NAN; cout * h * w];
                if r == 2 {
                    c.winograd_r::<2>(c.wino.as_ref().unwrap(), &x, h, w, &mut a);
                } else {
                    c.winograd_r::<4>(&u4, &x, h, w, &mut a);
                }
                let md = a
                    .iter()
                    .zip(&b)
                    .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                eprintln!("winograd F({r},3) {cin}->{cout} {h}x{w}: max diff {md:e} (max {scale})");
                for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (p - q).abs() <= 1e-4 * scale.max(q.abs()),
                        "F({r},3) {cin} {cout} {h}x{w} act {act} at {i}: winograd {p} vs direct {q}"
                    );
                }
            }
        }
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
            let c = Conv::new(
                cin,
                cout,
                3,
                1,
                1,
                pseudo(cout * cin * 9, 1),
                pseudo(cout, 2),
                true,
            );
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
            let td = time(&|o| c.dense_gemm(&x, h, w, h, w, o));
            o[0] = tw as f32;
            eprintln!(
                "{cin:>3}->{cout:<3} {h:>3}x{w:<3}: winograd {tw:.3} ms, direct {td:.3} ms, ratio {:.2}",
                td / tw
            );
        }
    }

    #[test]
    fn conv_matches_reference() {
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
            // depthwise rows of 32 + 8 + an overlapping last vector
            (4, 4, 3, 1, 4, 9, 45),
            // maps of 4096 pixels and more: packed GEMMs weight panel by weight panel
            (5, 9, 1, 1, 1, 64, 70),
            (3, 8, 3, 2, 1, 130, 140),
        ] {
            let c = Conv::new(
                cin,
                cout,
                k,
                stride,
                groups,
                pseudo(cout * cin / groups * k * k, 1),
                pseudo(cout, 2),
                true,
            );
            let x = pseudo(cin * h * w, 3);
            let a = c.forward(&x, h, w);
            let b = conv_ref(&c, &x, h, w);
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (p - q).abs() < 1e-4,
                    "{cin} {cout} {k} {stride} {groups} at {i}: {p} vs {q}"
                );
            }
        }
    }
}
