//! YOLO11's `C2PSA`: position-sensitive attention blocks at the end of the backbone.

use candle_core::{Module, Tensor};

use super::{CResult, ConvBn, Ops, Vb};
use crate::kernels::gemm::Kernel;
use crate::PoseError;

/// YOLO11 `Attention` (multi-head self-attention over the H*W positions, with a depthwise positional conv).
pub(crate) struct Attention {
    pub qkv: ConvBn,
    pub proj: ConvBn,
    pub pe: ConvBn,
    pub nh: usize,
    pub kd: usize,
    pub hd: usize,
    /// the GEMM micro-kernel of the attention products (HAVEN's CPU path)
    pub kernel: Option<Kernel>,
}

impl Attention {
    pub(crate) fn load(vb: &Vb, dim: usize) -> Result<Self, PoseError> {
        // Ultralytics: PSABlock(c, attn_ratio=0.5, num_heads=c // 64)
        let nh = (dim / 64).max(1);
        let hd = dim / nh;
        let kd = hd / 2;
        let qkv = ConvBn::load(&vb.pp("qkv"), dim, 1, false)?;
        if qkv.cout != nh * (2 * kd + hd) {
            return Err(vb.bad_shape(
                "qkv.conv.weight",
                &[qkv.cout, dim],
                &format!(
                    "[{}, {dim}, 1, 1] ({nh} heads, key dim {kd}, head dim {hd})",
                    nh * (2 * kd + hd)
                ),
            ));
        }
        let proj = ConvBn::load(&vb.pp("proj"), dim, 1, false)?;
        let pe = ConvBn::load(&vb.pp("pe"), dim, 1, false)?;
        let kernel = match vb.ops {
            Ops::Haven(o) => Some(Kernel::select(o.wide_kernel)),
            Ops::Candle => None,
        };
        Ok(Self {
            qkv,
            proj,
            pe,
            nh,
            kd,
            hd,
            kernel,
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let n = h * w;
        let (nh, kd, hd) = (self.nh, self.kd, self.hd);
        let qkv = self.qkv.forward(x)?.reshape((b, nh, 2 * kd + hd, n))?;
        let q = qkv.narrow(2, 0, kd)?;
        let k = qkv.narrow(2, kd, kd)?.contiguous()?;
        let v = qkv.narrow(2, 2 * kd, hd)?.contiguous()?;
        let attn = (q.transpose(2, 3)?.contiguous()?.matmul(&k)? * (kd as f64).powf(-0.5))?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?;
        let o = v
            .matmul(&attn.transpose(2, 3)?.contiguous()?)?
            .reshape((b, c, h, w))?;
        let pe = self.pe.forward(&v.reshape((b, c, h, w))?)?;
        self.proj.forward(&(o + pe)?)
    }
}

pub(crate) struct PsaBlock {
    pub attn: Attention,
    pub ffn0: ConvBn,
    pub ffn1: ConvBn,
}

impl Module for PsaBlock {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let x = (x + self.attn.forward(x)?)?;
        &x + self.ffn1.forward(&self.ffn0.forward(&x)?)?
    }
}

pub(crate) struct C2psa {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub c: usize,
    pub m: Vec<PsaBlock>,
}

impl C2psa {
    pub(crate) fn load(vb: &Vb, c1: usize) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c1, 1, true)?;
        let c = cv1.cout / 2;
        let n = vb.children("m", "attn.qkv.conv.weight")?;
        let mut m = Vec::new();
        for i in 0..n {
            let q = vb.pp("m").pp(i);
            let attn = Attention::load(&q.pp("attn"), c)?;
            let ffn0 = ConvBn::load(&q.pp("ffn.0"), c, 1, true)?;
            let ffn1 = ConvBn::load(&q.pp("ffn.1"), ffn0.cout, 1, false)?;
            m.push(PsaBlock { attn, ffn0, ffn1 });
        }
        let cv2 = ConvBn::load(&vb.pp("cv2"), 2 * c, 1, true)?;
        Ok(Self { cv1, cv2, c, m })
    }
}

impl Module for C2psa {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        if self.cv1.is_haven() {
            return x.apply_op1_no_bwd(self);
        }
        let y = self.cv1.forward(x)?;
        let a = y.narrow(1, 0, self.c)?;
        let mut b = y.narrow(1, self.c, self.c)?;
        for blk in &self.m {
            b = blk.forward(&b)?;
        }
        self.cv2.forward(&Tensor::cat(&[a, b], 1)?)
    }
}
