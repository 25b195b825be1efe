//! The Detect and Pose heads: per level a box branch (DFL), a class branch and, for pose, a keypoint
//! branch; decoded into ONNX `output0`'s rows.

use candle_core::Tensor;

use super::{chain, CResult, ConvBn, Ops, Vb};
use crate::kernels::conv::Conv;
use crate::PoseError;

/// The `Detect` head (DFL box regression and class scores) and the `Pose` head (the same plus a
/// keypoint branch, `cv4`): one type, the keypoint branch being empty for a detect model.
pub(crate) struct Head {
    /// HAVEN's path, per level: the box and keypoint branches' first convolutions merged (if compatible;
    /// empty for a detect model)
    pub first: Vec<Option<Conv>>,
    pub boxes: Vec<Vec<ConvBn>>,
    pub cls: Vec<Vec<ConvBn>>,
    /// per level the keypoint branch (`cv4`); empty for a detect model
    pub kpt: Vec<Vec<ConvBn>>,
    pub nc: usize,
    pub nk: usize,
    pub reg_max: usize,
    pub dfl: Vec<f32>,
    pub profile: bool,
}

/// One convolution computing the output channels of `a` then of `b` (same input, kernel, stride and
/// activation): the box and keypoint branches' first 3x3 convolutions share their input planes and
/// make one larger GEMM.
fn merge_convs(a: &Conv, b: &Conv) -> Option<Conv> {
    if (a.cin, a.k, a.stride, a.groups, a.act) != (b.cin, b.k, b.stride, b.groups, b.act)
        || a.groups != 1
    {
        return None;
    }
    let w = [a.weights(), b.weights()].concat();
    let bias = [a.b.as_slice(), b.b.as_slice()].concat();
    Some(Conv::new(
        a.cin,
        a.cout + b.cout,
        a.k,
        a.stride,
        1,
        w,
        bias,
        a.act,
        a.options(),
    ))
}

/// A branch of three layers at `vb`'s `name`: two `Conv` then a plain `nn.Conv2d` (`name.0`, `.1`, `.2`).
fn load_branch(vb: &Vb, name: &str, cin: usize) -> Result<Vec<ConvBn>, PoseError> {
    let a = ConvBn::load(&vb.pp(format!("{name}.0")), cin, 1, true)?;
    let b = ConvBn::load(&vb.pp(format!("{name}.1")), a.cout, 1, true)?;
    let c = ConvBn::load_plain(&vb.pp(format!("{name}.2")), b.cout)?;
    Ok(vec![a, b, c])
}

/// YOLO11's class branch at `name`: two DWConv + Conv pairs (`name.0.{0,1}`, `name.1.{0,1}`), then a
/// plain `nn.Conv2d` (`name.2`).
fn load_dw_class_branch(vb: &Vb, name: &str, cin: usize) -> Result<Vec<ConvBn>, PoseError> {
    let conv = |part: &str, cin| ConvBn::load(&vb.pp(format!("{name}.{part}")), cin, 1, true);
    let a = conv("0.0", cin)?;
    let b = conv("0.1", a.cout)?;
    let c = conv("1.0", b.cout)?;
    let d = conv("1.1", c.cout)?;
    let e = ConvBn::load_plain(&vb.pp(format!("{name}.2")), d.cout)?;
    Ok(vec![a, b, c, d, e])
}

/// The outputs every level must agree on: box bins (4 x reg_max), classes, keypoint values (3 x K).
struct Outputs {
    nbox: usize,
    nc: usize,
    nk: usize,
}

impl Outputs {
    fn of_level(boxes: &[Vec<ConvBn>], cls: &[Vec<ConvBn>], kpt: &[Vec<ConvBn>], i: usize) -> Self {
        Self {
            nbox: boxes[i][2].cout,
            nc: cls[i].last().unwrap().cout,
            nk: kpt.get(i).map_or(0, |k| k[2].cout),
        }
    }

    /// Level 0's outputs, once checked for shape and against every other level's.
    fn check(
        vb: &Vb,
        boxes: &[Vec<ConvBn>],
        cls: &[Vec<ConvBn>],
        kpt: &[Vec<ConvBn>],
    ) -> Result<Self, PoseError> {
        let o = Self::of_level(boxes, cls, kpt, 0);
        if o.nbox % 4 != 0 || o.nk % 3 != 0 {
            return Err(vb.bad_shape(
                "cv2.0.2.weight",
                &[o.nbox],
                "4*reg_max outputs and 3*K keypoint outputs",
            ));
        }
        for i in 1..boxes.len() {
            let l = Self::of_level(boxes, cls, kpt, i);
            if (l.nbox, l.nc, l.nk) != (o.nbox, o.nc, o.nk) {
                return Err(vb.bad_shape(
                    &format!("cv2.{i}.2.weight"),
                    &[l.nbox],
                    "the same outputs as level 0",
                ));
            }
        }
        Ok(o)
    }
}

impl Head {
    /// The head at `vb` over levels of `chs` channels; its class branch is YOLO11's (DWConv pairs)
    /// when `dw_class_branch`, its keypoint branch (`cv4`) is loaded when `pose`.
    pub(crate) fn load(
        vb: &Vb,
        chs: &[usize],
        dw_class_branch: bool,
        pose: bool,
        profile: bool,
    ) -> Result<Self, PoseError> {
        let (mut boxes, mut cls, mut kpt) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &ch) in chs.iter().enumerate() {
            boxes.push(load_branch(vb, &format!("cv2.{i}"), ch)?);
            cls.push(if dw_class_branch {
                load_dw_class_branch(vb, &format!("cv3.{i}"), ch)?
            } else {
                load_branch(vb, &format!("cv3.{i}"), ch)?
            });
            if pose {
                kpt.push(load_branch(vb, &format!("cv4.{i}"), ch)?);
            }
        }
        let Outputs { nbox, nc, nk } = Outputs::check(vb, &boxes, &cls, &kpt)?;
        let reg_max = nbox / 4;
        let dfl = match vb.st.tensors.get(&vb.path("dfl.conv.weight")) {
            Some(t) if t.data.len() == reg_max => t.data.clone(),
            _ => (0..reg_max).map(|i| i as f32).collect(),
        };
        // only a Pose head has a keypoint branch to merge with
        let first = match vb.ops {
            Ops::Haven(_) => boxes
                .iter()
                .zip(&kpt)
                .map(|(b, k)| merge_convs(b[0].kernel(), k[0].kernel()))
                .collect(),
            Ops::Candle => Vec::new(),
        };
        Ok(Self {
            first,
            boxes,
            cls,
            kpt,
            nc,
            nk,
            reg_max,
            dfl,
            profile,
        })
    }

    pub fn rows(&self) -> usize {
        4 + self.nc + self.nk
    }

    /// Raw output `[B, 4 + nc + nk, N]` like ONNX `output0`, from the three levels' maps.
    pub(crate) fn forward(&self, xs: &[Tensor], strides: [f32; 3]) -> CResult<Tensor> {
        if self.boxes[0][0].is_haven() {
            return xs[0].apply_op3_no_bwd(
                &xs[1],
                &xs[2],
                &crate::fused::HeadOp {
                    head: self,
                    strides,
                },
            );
        }
        let mut levels = Vec::with_capacity(xs.len());
        for (lvl, x) in xs.iter().enumerate() {
            let (b, _, h, w) = x.dims4()?;
            let (hw, rm, dev, s) = (h * w, self.reg_max, x.device(), strides[lvl] as f64);
            // DFL: softmax over each side's reg_max bins, expectation with the bin values
            let bx = chain(&self.boxes[lvl], x)?.reshape((b, 4, rm, hw))?;
            let bins = Tensor::from_slice(&self.dfl, (1, 1, rm, 1), dev)?;
            let dist = candle_nn::ops::softmax(&bx, 2)?
                .broadcast_mul(&bins)?
                .sum(2)?; // [b, 4, hw]
                          // anchor centres (x + 0.5, y + 0.5) in grid units
            let gx: Vec<f32> = (0..hw).map(|a| (a % w) as f32).collect();
            let gy: Vec<f32> = (0..hw).map(|a| (a / w) as f32).collect();
            let gx = Tensor::from_vec(gx, (1, 1, hw), dev)?;
            let gy = Tensor::from_vec(gy, (1, 1, hw), dev)?;
            let side = |i| dist.narrow(1, i, 1);
            let (l, t, r, bt) = (side(0)?, side(1)?, side(2)?, side(3)?);
            let cx = (((&r - &l)? * 0.5)?.broadcast_add(&(&gx + 0.5)?)? * s)?;
            let cy = (((&bt - &t)? * 0.5)?.broadcast_add(&(&gy + 0.5)?)? * s)?;
            let bw = ((&l + &r)? * s)?;
            let bh = ((&t + &bt)? * s)?;
            let cl =
                candle_nn::ops::sigmoid(&chain(&self.cls[lvl], x)?.reshape((b, self.nc, hw))?)?;
            let Some(kpt) = self.kpt.get(lvl) else {
                levels.push(Tensor::cat(&[cx, cy, bw, bh, cl], 1)?);
                continue;
            };
            let kp = chain(kpt, x)?.reshape((b, self.nk / 3, 3, hw))?;
            let (gx, gy) = (gx.unsqueeze(0)?, gy.unsqueeze(0)?);
            let kx = ((kp.narrow(2, 0, 1)? * 2.0)?.broadcast_add(&gx)? * s)?;
            let ky = ((kp.narrow(2, 1, 1)? * 2.0)?.broadcast_add(&gy)? * s)?;
            let kv = candle_nn::ops::sigmoid(&kp.narrow(2, 2, 1)?)?;
            let kp = Tensor::cat(&[kx, ky, kv], 2)?.reshape((b, self.nk, hw))?;
            levels.push(Tensor::cat(&[cx, cy, bw, bh, cl, kp], 1)?);
        }
        Tensor::cat(&levels, 2)
    }
}
