//! A small packed GEMM for convolutions, C[M, N] = A[M, K] · B[K, N] with a fused bias + SiLU epilogue,
//! laid out like the `matrixmultiply`/`gemm` crates: packing ([`pack`]), micro-kernels ([`micro`]),
//! the loops and threading around them ([`driver`]).
//!
//! M = output channels, K = cin·k·k, N = output pixels (C row-major with row stride `ldc`, the feature
//! map's H·W). A (the weights, BatchNorm folded) is packed once at load time in panels of MR rows; B (the
//! im2col of a tile of output pixels, or the input itself for 1x1 convolutions) is packed per tile in
//! panels of the kernel's width (`Kernel::nr`: 24, 48 for the zmm kernel), or read in place through
//! per-row offsets (implicit im2col). The AVX2/FMA micro-kernel keeps a 4 x 24 block of C in 12 ymm
//! registers (8 x 24 in 24 registers with AVX-512VL, 8 x 48 in 24 zmm registers with AVX-512F) and
//! applies bias and SiLU before its single store, so every output value is written exactly once.
//!
//! Layering: imports only `kernels::{simd, pool, options}`; used by `conv`, `winograd` and the
//! attention block.

pub(crate) mod driver;
pub(crate) mod micro;
pub(crate) mod pack;

pub(crate) use driver::{gemm_tile, gemm_tile_offs, gemm_tile_to, matmul};
pub(crate) use micro::Dst;
pub(crate) use pack::{pack_a, pack_b_row, unpack_a};

use crate::kernels::options::KernelOptions;

pub(crate) const MR: usize = 4;
/// Columns of the ymm kernels' B panels (4 x 24 and 8 x 24).
pub(crate) const NR: usize = 24;
/// Columns of the zmm kernel's B panels (8 x 48: three 16-float vectors).
pub(crate) const NR_ZMM: usize = 48;
/// The widest B panel of any kernel: the slack a caller leaves after implicit-im2col input planes.
pub(crate) const NR_MAX: usize = NR_ZMM;
/// K block: a B sub-panel (KC x NR floats, 18 KiB) stays in L1 while every A panel passes over it.
pub(crate) const KC: usize = 192;

/// Which micro-kernel the driver uses (and so the width of the B panels callers pack). Only
/// [`Kernel::select`] makes a `Wide` or `Zmm` one, and only on a CPU that can run it, so holding
/// one proves its instructions may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// 4 x 24 (AVX2/FMA, or the portable scalar one).
    Narrow,
    /// 8 x 24 on ymm0-31 (AVX-512F/VL): two A panels over one B panel.
    Wide,
    /// 8 x 48 on zmm registers (AVX-512F): 24 accumulators of 16 floats, B panels of 48 columns.
    Zmm,
}

impl Kernel {
    #[cfg(test)]
    /// The 4 x 24 kernel (AVX2/FMA, or the portable scalar one).
    pub(crate) const NARROW: Kernel = Kernel::Narrow;

    #[cfg(test)]
    /// The 8 x 24 kernel if `want_wide` and the CPU has AVX-512VL (32 vector registers: two A
    /// panels over one B panel, half the B loads per multiply-add of the 4 x 24 kernel), else narrow.
    pub(crate) fn select(want_wide: bool) -> Kernel {
        Self::select_with(want_wide, false)
    }

    /// The kernel `opts` asks for on this CPU: the zmm one if `opts.zmm_kernel` and
    /// `opts.wide_kernel` (`HAVEN_WIDE_KERNEL=0` keeps the 4 x 24 one) and the CPU has AVX-512F/VL,
    /// else as [`Kernel::select`].
    pub(crate) fn from_options(opts: &KernelOptions) -> Kernel {
        Self::select_with(opts.wide_kernel, opts.zmm_kernel)
    }

    fn select_with(want_wide: bool, want_zmm: bool) -> Kernel {
        if want_wide && want_zmm && cpu_has_zmm() {
            Kernel::Zmm
        } else if want_wide && cpu_has_wide() {
            Kernel::Wide
        } else {
            Kernel::Narrow
        }
    }

    #[cfg(test)]
    /// Whether this is a kernel over two A panels (8 rows).
    pub(crate) fn is_wide(self) -> bool {
        self != Kernel::Narrow
    }

    /// The columns of this kernel's B panels: callers pack B and size their tiles in these.
    pub(crate) fn nr(self) -> usize {
        match self {
            Kernel::Zmm => NR_ZMM,
            _ => NR,
        }
    }

    /// The K block of packed B: a KC x NR sub-panel stays in L1 for the ymm kernels. The zmm
    /// kernel takes the whole K in one block: its 8 x 48 tile does 24 FMAs per 192 bytes of B, which
    /// L2 feeds, and every extra block reloads and stores the C tile (cached 128 x 576 x 144 on
    /// Zen 4: blocks of 128: 96 GFLOP/s, 192: 103, whole K: 111; the 4 x 24 kernel: 105).
    pub(crate) fn kc(self) -> usize {
        match self {
            Kernel::Zmm => usize::MAX,
            _ => KC,
        }
    }

    #[cfg(test)]
    /// The options that select this kernel (where the CPU allows it).
    pub(crate) fn options(self, base: KernelOptions) -> KernelOptions {
        KernelOptions {
            wide_kernel: self.is_wide(),
            zmm_kernel: self == Kernel::Zmm,
            ..base
        }
    }
}

/// Whether this build and CPU can run the 8 x 24 kernel.
pub(crate) fn cpu_has_wide() -> bool {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    false
}

/// Whether this build and CPU can run the 8 x 48 zmm kernel (AVX-512F; its epilogue is the ymm
/// one, so the same build features as the others).
pub(crate) fn cpu_has_zmm() -> bool {
    cpu_has_wide()
}
