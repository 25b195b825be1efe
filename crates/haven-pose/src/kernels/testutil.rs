//! Shared test helpers: deterministic data, plain references, the kernel paths this CPU can run.

use super::gemm::{cpu_has_wide, Kernel};

/// Deterministic values in [-1, 1].
pub(crate) fn pseudo(n: usize, seed: u32) -> Vec<f32> {
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

/// A rayon pool of `threads` threads (to run a kernel's task split at a given width).
pub(crate) fn thread_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// SiLU in f64.
pub(crate) fn silu_ref(x: f32) -> f32 {
    (x as f64 / (1.0 + (-x as f64).exp())) as f32
}

/// The GEMM micro-kernels to test on this machine: always the 4 x 24 one, the 8 x 24 one where the
/// CPU has AVX-512F/VL (otherwise says why it is skipped; its row split is covered portably by
/// `panel_steps_cover_every_row_once`).
pub(crate) fn kernels_to_test() -> Vec<(&'static str, Kernel)> {
    let mut v = vec![("narrow 4x24", Kernel::NARROW)];
    if cpu_has_wide() {
        assert!(Kernel::select(true).is_wide());
        v.push(("wide 8x24 (AVX-512VL)", Kernel::select(true)));
    } else {
        assert!(
            !Kernel::select(true).is_wide(),
            "a wide kernel selected without AVX-512VL"
        );
        eprintln!("skipping the wide 8x24 kernel: this CPU (or build) lacks AVX-512F/VL; testing the narrow 4x24 kernel only");
    }
    v
}

/// A plain convolution: x [cin, h, w] -> [cout, oh, ow], weights [cout, cin/groups, k, k], padding
/// k / 2, bias, optional SiLU (f64 accumulation).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_ref(
    (cin, cout, k, stride, groups): (usize, usize, usize, usize, usize),
    wt: &[f32],
    b: &[f32],
    act: bool,
    x: &[f32],
    h: usize,
    w: usize,
) -> Vec<f32> {
    let pad = k / 2;
    let (oh, ow) = (
        (h + 2 * pad - k) / stride + 1,
        (w + 2 * pad - k) / stride + 1,
    );
    let (cpg, opg) = (cin / groups, cout / groups);
    let mut out = vec![0f32; cout * oh * ow];
    for co in 0..cout {
        let g = co / opg;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = b[co] as f64;
                for ci in 0..cpg {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            let ix = (ox * stride + kx) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += wt[((co * cpg + ci) * k + ky) * k + kx] as f64
                                    * x[((g * cpg + ci) * h + iy as usize) * w + ix as usize]
                                        as f64;
                            }
                        }
                    }
                }
                let acc = acc as f32;
                out[(co * oh + oy) * ow + ox] = if act { silu_ref(acc) } else { acc };
            }
        }
    }
    out
}

/// Asserts |got - want| <= tol max(1, |want|) elementwise.
pub(crate) fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what} at {i}: {g} vs {w}"
        );
    }
}
