//! The blocks' CPU paths: each one runs its convolutions with HAVEN's kernels, writing straight into
//! slices of its concatenation buffer.

use rayon::prelude::*;

use crate::kernels::elementwise as ops;
use crate::kernels::gemm;
use crate::kernels::pool::PBuf;
use crate::kernels::pooling;
use crate::net::{Attention, Bottleneck, C2f, C2psa, C3k, Inner, PsaBlock, Sppf};

impl Bottleneck {
    fn cpu_into(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let t = self.cv1.kernel().forward(x, h, w);
        self.cv2.kernel().forward_into(&t, h, w, out);
        if self.add {
            ops::add_assign(out, x);
        }
    }
}

impl C3k {
    fn cpu_into(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let hw = h * w;
        let c_ = self.cv1.cout;
        let mut z = PBuf::new((c_ + self.cv2.cout) * hw);
        {
            let (za, zb) = z.split_at_mut(c_ * hw);
            let mut a = self.cv1.kernel().forward(x, h, w);
            let nm = self.m.len();
            for (i, b) in self.m.iter().enumerate() {
                if i + 1 == nm {
                    b.cpu_into(&a, h, w, za);
                } else {
                    let mut t = PBuf::new(c_ * hw);
                    b.cpu_into(&a, h, w, &mut t);
                    a = t;
                }
            }
            if nm == 0 {
                za.copy_from_slice(&a);
            }
            self.cv2.kernel().forward_into(x, h, w, zb);
        }
        self.cv3.kernel().forward_into(&z, h, w, out);
    }
}

impl C2f {
    /// cv1 writes both halves, each inner block its output, straight into the concatenation buffer.
    pub(super) fn cpu(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let hw = h * w;
        let c = self.c;
        let mut y = PBuf::new((2 + self.m.len()) * c * hw);
        self.cv1
            .kernel()
            .forward_into(x, h, w, &mut y[..2 * c * hw]);
        for (i, m) in self.m.iter().enumerate() {
            let (prev, next) = y.split_at_mut((2 + i) * c * hw);
            let inp = &prev[(1 + i) * c * hw..];
            let out = &mut next[..c * hw];
            match m {
                Inner::Bottleneck(b) => b.cpu_into(inp, h, w, out),
                Inner::C3k(b) => b.cpu_into(inp, h, w, out),
            }
        }
        self.cv2.kernel().forward(&y, h, w)
    }
}

impl Sppf {
    pub(super) fn cpu(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let n = self.cv1.cout * h * w;
        let mut z = PBuf::new(4 * n);
        self.cv1.kernel().forward_into(x, h, w, &mut z[..n]);
        for i in 0..3 {
            let (a, b) = z.split_at_mut((i + 1) * n);
            pooling::maxpool_same(&a[i * n..], h, w, self.k, &mut b[..n]);
        }
        self.cv2.kernel().forward(&z, h, w)
    }
}

impl Attention {
    pub(super) fn cpu(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let kernel = self.kernel.expect("HAVEN's attention kernel");
        let n = h * w;
        let dim = self.nh * self.hd;
        let qkv = self.qkv.kernel().forward(x, h, w);
        let per = 2 * self.kd + self.hd;
        let mut v = PBuf::new(dim * n);
        for hh in 0..self.nh {
            let src = &qkv[(hh * per + 2 * self.kd) * n..(hh * per + per) * n];
            v[hh * self.hd * n..(hh + 1) * self.hd * n].copy_from_slice(src);
        }
        let mut xo = self.pe.kernel().forward(&v, h, w);
        let scale = (self.kd as f32).powf(-0.5);
        let (kd, hd) = (self.kd, self.hd);
        // the heads side by side (each one's GEMMs are small enough to leave threads idle)
        xo.par_chunks_mut(hd * n)
            .enumerate()
            .for_each(|(hh, xo_h)| {
                let mut attn_t = PBuf::new(n * n); // attn_t[j][i] = attention of query i to key j
                let mut kt = PBuf::new(n * kd);
                let mut o = PBuf::new(hd * n);
                let q = &qkv[hh * per * n..(hh * per + kd) * n];
                let k = &qkv[(hh * per + kd) * n..(hh * per + 2 * kd) * n];
                for d in 0..kd {
                    for (j, v) in k[d * n..(d + 1) * n].iter().enumerate() {
                        kt[j * kd + d] = *v;
                    }
                }
                // attn_t = k^T q  [n x n]
                gemm::matmul(n, n, kd, &kt, kd, q, n, &mut attn_t, n, kernel);
                ops::softmax_cols(&mut attn_t, n, n, scale);
                // o = v attn_t  [hd x n]
                let vh = &v[hh * hd * n..(hh + 1) * hd * n];
                gemm::matmul(hd, n, n, vh, n, &attn_t, n, &mut o, n, kernel);
                for (d, s) in xo_h.iter_mut().zip(o.iter()) {
                    *d += *s;
                }
            });
        self.proj.kernel().forward(&xo, h, w)
    }
}

impl PsaBlock {
    fn cpu_inplace(&self, x: &mut [f32], h: usize, w: usize) {
        let a = self.attn.cpu(x, h, w);
        ops::add_assign(x, &a);
        let t = self.ffn0.kernel().forward(x, h, w);
        let f = self.ffn1.kernel().forward(&t, h, w);
        ops::add_assign(x, &f);
    }
}

impl C2psa {
    pub(super) fn cpu(&self, x: &[f32], h: usize, w: usize) -> PBuf {
        let mut y = self.cv1.kernel().forward(x, h, w);
        let b = &mut y[self.c * h * w..];
        for blk in &self.m {
            blk.cpu_inplace(b, h, w);
        }
        self.cv2.kernel().forward(&y, h, w)
    }
}
