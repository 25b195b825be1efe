//! The 8-bit convolution path (`precision = "int8"`): C[M, N] = A[M, K] · B[K, N] with A the
//! weights quantized per output channel (symmetric, i8) and B the input quantized per tensor
//! (asymmetric, u8 with a zero point), i32 accumulation, dequantized with bias + SiLU fused into
//! the store. Laid out like `gemm/`: quantization ([`quant`]), packing ([`pack`]), micro-kernels
//! ([`micro`]: AVX512-VNNI `vpdpbusd`, AVX2 `vpmaddubsw` + `vpmaddwd`, portable scalar) and the
//! driver ([`driver`]: tiles, threads, the dequantizing epilogue).
//!
//! Saturation: `vpmaddubsw` (AVX2) adds two u8 x i8 products into a *saturating* i16, and
//! 2 x 255 x 127 overflows it. On the AVX2 kernel the weights are therefore kept in 7 bits (|q| <=
//! 63: 2 x 255 x 63 = 32130 fits; onnxruntime's `reduce_range` does the same for the same reason);
//! VNNI's `vpdpbusd` sums four products into i32 without intermediate saturation and the scalar
//! kernel is exact, so they take full 8-bit weights (|q| <= 127): on the fall clips that halved the
//! keypoint error of 7 bits (docs/pose.md, "8-bit path"). The quantization is chosen with the kernel
//! when a layer is loaded ([`I8Kernel::qmax_w`]). The i32 sums (the zero-point term included) cannot
//! overflow below K = 2^31 / (2 x 255 x 127) = 33 000 (`driver::MAX_K`; larger layers stay f32).
//!
//! Layouts: K is padded to a multiple of 4 (groups of 4 consecutive k, the unit of `vpdpbusd`);
//! A is packed once at load as [M / MR panels][K / 4][MR rows][4] i8, B per tile as
//! [N / NR panels][K / 4][NR columns][4] u8.
//!
//! Layering: imports `kernels::{pool, simd}` only; used by `conv`.

pub(crate) mod driver;
pub(crate) mod micro;
pub(crate) mod pack;
pub(crate) mod quant;

pub(crate) use driver::QConv;

/// Rows (output channels) of a packed A panel and of a micro-kernel tile.
pub(crate) const MR: usize = 8;
/// Columns (output pixels) of a packed B panel and of a micro-kernel tile.
pub(crate) const NR: usize = 32;

/// Which 8-bit micro-kernel runs. Only [`I8Kernel::select`] and [`I8Kernel::available`] make the
/// SIMD ones, and only where the CPU has their instructions, so holding one proves it may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum I8Kernel {
    /// AVX512-VNNI (with AVX-512F/BW): `vpdpbusd` on zmm registers.
    Vnni,
    /// AVX2: `vpmaddubsw` + `vpmaddwd` on ymm registers.
    Avx2,
    /// Portable scalar (also the tests' reference).
    Scalar,
}

impl I8Kernel {
    /// The fastest kernel this CPU runs; `allow_avx512 = false` keeps to AVX2 (the
    /// `HAVEN_WIDE_KERNEL=0` switch, and the tests of the AVX2 path on an AVX-512 machine).
    pub(crate) fn select(allow_avx512: bool) -> Self {
        Self::available()
            .into_iter()
            .find(|k| allow_avx512 || *k != I8Kernel::Vnni)
            .unwrap_or(I8Kernel::Scalar)
    }

    /// The largest weight magnitude this kernel takes exactly (see the header).
    pub(crate) fn qmax_w(self) -> i32 {
        match self {
            I8Kernel::Avx2 => 63,
            I8Kernel::Vnni | I8Kernel::Scalar => 127,
        }
    }

    /// Every kernel this CPU (and build) can run, fastest first; always ends with `Scalar`.
    pub(crate) fn available() -> Vec<Self> {
        let mut v = Vec::new();
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        {
            if std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512f")
            {
                v.push(I8Kernel::Vnni);
            }
            v.push(I8Kernel::Avx2);
        }
        v.push(I8Kernel::Scalar);
        v
    }
}
