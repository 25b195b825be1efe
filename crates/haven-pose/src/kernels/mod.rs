//! The network's CPU kernels, one concern per file, in layers (a file imports only from the
//! layers above it in this list, never from a later one):
//!
//! | file | owns |
//! |---|---|
//! | `options.rs` | [`KernelOptions`]: the engine switches, read once at model load |
//! | `pool.rs` | the feature-map buffer pool (`PBuf`, [`pooled_bytes`]) and `SendPtr` |
//! | `simd.rs` | AVX2 loads/stores, fast exp / sigmoid / SiLU (scalar and 8-wide) |
//! | `gemm/` | packing, the 4x24 and 8x24 micro-kernels, the GEMM driver and threaded `matmul` |
//! | `int8/` | the 8-bit path: quantization, packing, VNNI / AVX2 / scalar micro-kernels, driver |
//! | `elementwise.rs` | add, copy, exp, sigmoid, bias + SiLU, column softmax |
//! | `pooling.rs` | max-pool (SPPF) and 2x nearest upsampling |
//! | `planes.rs` | zero-padded, stride-phase-split input planes (implicit im2col) |
//! | `depthwise.rs` | depthwise convolutions |
//! | `winograd.rs` | Winograd F(2x2, 3x3) and F(4x4, 3x3): weights, transforms, task plan |
//! | `conv.rs` | [`Conv`](conv::Conv): a layer's weights and the choice of path per call |
//!
//! Feature maps are f32, CHW (batch 1), contiguous. Concatenation along channels is therefore a
//! matter of writing into consecutive slices of one buffer, which the blocks do instead of copying.
//! Each file's header states its unsafe boundary; every `unsafe` block carries a `// SAFETY:` note
//! and every `unsafe fn` a `# Safety` section.

pub(crate) mod conv;
pub(crate) mod depthwise;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod int8;
pub(crate) mod options;
pub(crate) mod planes;
pub(crate) mod pool;
pub(crate) mod pooling;
pub(crate) mod simd;
pub(crate) mod winograd;

#[cfg(test)]
pub(crate) mod testutil;

pub use options::{KernelOptions, Precision, Winograd4};
pub use pool::{pooled_bytes, set_pool_limit, trim_pool};
