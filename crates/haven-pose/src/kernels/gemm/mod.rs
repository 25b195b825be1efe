//! A small packed GEMM for convolutions, C[M, N] = A[M, K] · B[K, N] with a fused bias + SiLU epilogue,
//! laid out like the `matrixmultiply`/`gemm` crates: packing ([`pack`]), micro-kernels ([`micro`]),
//! the loops and threading around them ([`driver`]).
//!
//! M = output channels, K = cin·k·k, N = output pixels (C row-major with row stride `ldc`, the feature
//! map's H·W). A (the weights, BatchNorm folded) is packed once at load time in panels of MR rows; B (the
//! im2col of a tile of output pixels, or the input itself for 1x1 convolutions) is packed per tile in
//! panels of NR columns, or read in place through per-row offsets (implicit im2col). The AVX2/FMA
//! micro-kernel keeps a 4 x 24 block of C in 12 ymm registers (8 x 24 in 24 registers with AVX-512VL)
//! and applies bias and SiLU before its single store, so every output value is written exactly once.
//!
//! Layering: imports only `kernels::{simd, pool}`; used by `conv`, `winograd` and the attention block.

pub(crate) mod driver;
pub(crate) mod micro;
pub(crate) mod pack;

pub(crate) use driver::{gemm_tile, gemm_tile_offs, gemm_tile_to, matmul};
pub(crate) use micro::Dst;
pub(crate) use pack::{pack_a, pack_b_row, unpack_a};

pub(crate) const MR: usize = 4;
pub(crate) const NR: usize = 24;
/// K block: a B sub-panel (KC x NR floats, 18 KiB) stays in L1 while every A panel passes over it.
pub(crate) const KC: usize = 192;

/// Which micro-kernel the driver uses. Only [`Kernel::select`] makes a wide one, and only on a CPU
/// with AVX-512F and AVX-512VL, so holding `Kernel { wide: true }` proves the 8 x 24 kernel (which
/// uses ymm16-31) may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kernel {
    wide: bool,
}

impl Kernel {
    /// The 4 x 24 kernel (AVX2/FMA, or the portable scalar one).
    pub(crate) const NARROW: Kernel = Kernel { wide: false };

    /// The 8 x 24 kernel if `want_wide` and the CPU has AVX-512VL (32 vector registers: two A
    /// panels over one B panel, half the B loads per multiply-add of the 4 x 24 kernel), else narrow.
    pub(crate) fn select(want_wide: bool) -> Kernel {
        if want_wide && cpu_has_wide() {
            Kernel { wide: true }
        } else {
            Self::NARROW
        }
    }

    pub(crate) fn is_wide(self) -> bool {
        self.wide
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
