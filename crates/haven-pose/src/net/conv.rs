//! One convolution layer: Ultralytics' `Conv` / `DWConv` / plain `nn.Conv2d`, BatchNorm folded at load.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};

use super::{CResult, Ops, Vb};
use crate::kernels::conv::Conv;
use crate::PoseError;

/// How one convolution runs.
pub(crate) enum ConvImpl {
    /// HAVEN's kernel (weights packed for its GEMM / Winograd / depthwise paths).
    Haven(Conv),
    /// `candle_nn::Conv2d` on the model's device.
    Candle(Conv2d),
}

/// A convolution with its BatchNorm folded in and an optional SiLU: Ultralytics' `Conv` (Conv2d without
/// bias + BatchNorm2d + SiLU), `DWConv`, or a plain `nn.Conv2d` with bias (the head's last layers).
pub(crate) struct ConvBn {
    pub cout: usize,
    pub act: bool,
    pub imp: ConvImpl,
}

impl ConvBn {
    /// Ultralytics `Conv` at `vb` (`conv.weight`, `bn.{weight,bias,running_mean,running_var}`), BN folded.
    pub fn load(vb: &Vb, cin: usize, stride: usize, act: bool) -> Result<Self, PoseError> {
        let wt = vb.get("conv.weight", &[None, None, None, None])?;
        let (cout, cpg, k, k2) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3]);
        let groups = if cpg == cin {
            1
        } else if cpg == 1 && cout == cin {
            cin
        } else {
            return Err(vb.bad_shape(
                "conv.weight",
                &wt.shape,
                &format!("[_, {cin}, k, k] or depthwise [{cin}, 1, k, k]"),
            ));
        };
        if k != k2 || k % 2 == 0 {
            return Err(vb.bad_shape("conv.weight", &wt.shape, "a square odd kernel"));
        }
        let shape1 = [Some(cout)];
        let g = &vb.get("bn.weight", &shape1)?.data;
        let b = &vb.get("bn.bias", &shape1)?.data;
        let m = &vb.get("bn.running_mean", &shape1)?.data;
        let v = &vb.get("bn.running_var", &shape1)?.data;
        let scale: Vec<f32> = (0..cout).map(|o| g[o] / (v[o] + vb.eps).sqrt()).collect();
        let bias = (0..cout).map(|o| b[o] - m[o] * scale[o]).collect();
        let dims = [cin, cout, k, stride, groups];
        match vb.ops {
            Ops::Haven(opts) => {
                let conv = Conv::new_scaled((cin, cout, k, stride, groups), wt.data.clone(), &scale, bias, act, opts);
                Ok(Self { cout, act, imp: ConvImpl::Haven(conv) })
            }
            Ops::Candle => Self::new(vb, dims, crate::kernels::conv::fold(wt.data.clone(), &scale), bias, act),
        }
    }

    /// A plain `nn.Conv2d` with (optional) bias at `vb` (`weight`, `bias`), stride 1, no activation.
    pub fn load_plain(vb: &Vb, cin: usize) -> Result<Self, PoseError> {
        let wt = vb.get("weight", &[None, Some(cin), None, None])?;
        let (cout, k) = (wt.shape[0], wt.shape[2]);
        let b = if vb.contains("bias") {
            vb.get("bias", &[Some(cout)])?.data.clone()
        } else {
            vec![0.0; cout]
        };
        Self::new(vb, [cin, cout, k, 1, 1], wt.data.clone(), b, false)
    }

    /// From folded weights `[cout, cin/groups, k, k]` and bias `[cout]`; `dims` = cin, cout, k, stride, groups.
    fn new(
        vb: &Vb,
        [cin, cout, k, stride, groups]: [usize; 5],
        w: Vec<f32>,
        b: Vec<f32>,
        act: bool,
    ) -> Result<Self, PoseError> {
        let imp = match vb.ops {
            Ops::Haven(opts) => {
                ConvImpl::Haven(Conv::new(cin, cout, k, stride, groups, w, b, act, opts))
            }
            Ops::Candle => {
                let wt = Tensor::from_vec(w, (cout, cin / groups, k, k), vb.dev)?;
                let bt = Tensor::from_vec(b, cout, vb.dev)?;
                let cfg = Conv2dConfig {
                    padding: k / 2,
                    stride,
                    groups,
                    ..Default::default()
                };
                ConvImpl::Candle(Conv2d::new(wt, Some(bt), cfg))
            }
        };
        Ok(Self { cout, act, imp })
    }

    /// HAVEN's kernel of this layer (only called by the fused CPU ops, which exist only then).
    pub fn kernel(&self) -> &Conv {
        match &self.imp {
            ConvImpl::Haven(c) => c,
            ConvImpl::Candle(_) => {
                unreachable!("HAVEN's CPU ops run only on a model loaded for them")
            }
        }
    }

    pub fn is_haven(&self) -> bool {
        matches!(self.imp, ConvImpl::Haven(_))
    }
}

impl Module for ConvBn {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match &self.imp {
            ConvImpl::Haven(_) => x.apply_op1_no_bwd(self),
            ConvImpl::Candle(c) => {
                let y = c.forward(x)?;
                if self.act {
                    candle_nn::ops::silu(&y)
                } else {
                    Ok(y)
                }
            }
        }
    }
}

pub(crate) fn chain(convs: &[ConvBn], x: &Tensor) -> CResult<Tensor> {
    let mut y = convs[0].forward(x)?;
    for c in &convs[1..] {
        y = c.forward(&y)?;
    }
    Ok(y)
}
