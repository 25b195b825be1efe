//! Depthwise k x k convolutions (groups = channels): an AVX2 plane kernel for stride 1 (four
//! vectors of a row at once, SiLU fused) and a portable path for any stride.
//!
//! Layering: imports `kernels::{planes, elementwise, simd, pool}`.
//! Unsafe boundary: `dw_plane` asserts that its padded plane and output cover every vector it
//! loads and stores; those loads and stores are the only unsafe code.

use rayon::prelude::*;

use super::elementwise::bias_act;
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
use super::planes::phase_planes;

/// One depthwise convolution's parameters: weights [c, k, k], bias [c], padding `pad`.
pub(crate) struct Depthwise<'a> {
    pub c: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub act: bool,
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use crate::kernels::simd::avx2::{ld, silu8, silu8xn, st};
    use crate::kernels::simd::silu;
    use std::arch::x86_64::*;

    /// Depthwise k x k convolution, stride 1, of one zero-padded plane (row stride wp) into o [h, w].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dw_plane(
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
        // SAFETY: the loads read padded rows y + ky < h + k - 1 at columns < w + k - 1 <= wp (x + 32 <= w, or xv + 8 <= w), so within pp; the stores write row y < h, columns < w of o (all asserted first); `o` is borrowed mutably, `pp` shared; AVX2/FMA present by cfg.
        unsafe {
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
                    o[y * w + x] = if act { silu(acc) } else { acc };
                    x += 1;
                }
            }
        }
    }
}

/// out [c, oh, ow] = act(depthwise(x [c, h, w]) + bias); `profile` prints the time to stderr.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise(
    d: &Depthwise,
    x: &[f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    out: &mut [f32],
    profile: bool,
) {
    assert!(x.len() >= d.c * h * w && out.len() == d.c * oh * ow && d.w.len() == d.c * d.k * d.k);
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    if d.stride == 1 && oh == h && ow == w && d.k <= 7 {
        let t0 = profile.then(std::time::Instant::now);
        let (k, p) = (d.k, d.pad);
        let (planes, hp, wp) = phase_planes(x, d.c, h, w, 1, p, 8);
        let t1 = profile.then(std::time::Instant::now);
        let planes = &planes[..];
        out.par_chunks_mut(h * w).enumerate().for_each(|(c, o)| {
            avx2::dw_plane(
                &planes[c * hp * wp..],
                wp,
                &d.w[c * k * k..(c + 1) * k * k],
                k,
                d.b[c],
                d.act,
                h,
                w,
                o,
            )
        });
        if let (Some(t0), Some(t1)) = (t0, t1) {
            eprintln!(
                "depthwise {}x{} {h}x{w}: planes {:.2} ms, conv {:.2} ms",
                d.c,
                k,
                (t1 - t0).as_secs_f64() * 1e3,
                t1.elapsed().as_secs_f64() * 1e3
            );
        }
        return;
    }
    let k = d.k;
    let s = d.stride;
    let pad = d.pad as isize;
    out.par_chunks_mut(oh * ow).enumerate().for_each(|(c, o)| {
        let xc = &x[c * h * w..(c + 1) * h * w];
        let wc = &d.w[c * k * k..(c + 1) * k * k];
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
                        let src = &irow[(lo as isize + off) as usize..(hi as isize + off) as usize];
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
        bias_act(o, d.b[c], d.act);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, conv_ref, pseudo};

    /// Depthwise against a plain grouped convolution: kernels 3, 5, 7, strides 1 (AVX2 planes: rows
    /// shorter than a vector, of 32 + 8 + an overlapping last vector) and 2 (portable), odd channels.
    #[test]
    fn depthwise_matches_reference() {
        for &(c, k, stride, h, w) in &[
            (1, 3, 1, 1, 1),
            (3, 3, 1, 5, 7),
            (5, 3, 1, 9, 45),
            (2, 5, 1, 12, 17),
            (3, 7, 1, 11, 33),
            (3, 3, 2, 11, 10),
            (4, 5, 2, 9, 13),
            (2, 9, 1, 10, 12),
        ] {
            for act in [false, true] {
                let (wt, b, x) = (pseudo(c * k * k, 1), pseudo(c, 2), pseudo(c * h * w, 3));
                let want = conv_ref((c, c, k, stride, c), &wt, &b, act, &x, h, w);
                let (oh, ow) = (
                    (h + 2 * (k / 2) - k) / stride + 1,
                    (w + 2 * (k / 2) - k) / stride + 1,
                );
                let mut got = vec![f32::NAN; c * oh * ow];
                let d = Depthwise {
                    c,
                    k,
                    stride,
                    pad: k / 2,
                    w: &wt,
                    b: &b,
                    act,
                };
                depthwise(&d, &x, h, w, oh, ow, &mut got, false);
                assert_close(
                    &got,
                    &want,
                    1e-5,
                    &format!("c{c} k{k} s{stride} {h}x{w} act {act}"),
                );
            }
        }
    }
}
