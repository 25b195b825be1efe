//! The CSP blocks of the body: `C2f` (YOLOv8), `C3k2` (YOLO11) with their inner `Bottleneck` / `C3k`,
//! and `SPPF`.

use candle_core::{Module, Tensor};

use super::{CResult, ConvBn, Vb};
use crate::PoseError;

pub(crate) struct Bottleneck {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub add: bool,
}

impl Bottleneck {
    pub(crate) fn load(vb: &Vb, c: usize, shortcut: bool) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c, 1, true)?;
        let cv2 = ConvBn::load(&vb.pp("cv2"), cv1.cout, 1, true)?;
        let add = shortcut && cv2.cout == c;
        Ok(Self { cv1, cv2, add })
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = self.cv2.forward(&self.cv1.forward(x)?)?;
        if self.add {
            x + y
        } else {
            Ok(y)
        }
    }
}

/// `C3k` (a C3 with k x k bottlenecks), used inside YOLO11's C3k2 when c3k=True.
pub(crate) struct C3k {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub cv3: ConvBn,
    pub m: Vec<Bottleneck>,
}

impl C3k {
    pub(crate) fn load(vb: &Vb, c1: usize) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c1, 1, true)?;
        let cv2 = ConvBn::load(&vb.pp("cv2"), c1, 1, true)?;
        let n = vb.children("m", "cv1.conv.weight")?;
        let m = (0..n)
            .map(|i| Bottleneck::load(&vb.pp("m").pp(i), cv1.cout, true))
            .collect::<Result<Vec<_>, _>>()?;
        let cv3 = ConvBn::load(&vb.pp("cv3"), cv1.cout + cv2.cout, 1, true)?;
        Ok(Self { cv1, cv2, cv3, m })
    }
}

impl Module for C3k {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut a = self.cv1.forward(x)?;
        for b in &self.m {
            a = b.forward(&a)?;
        }
        let b = self.cv2.forward(x)?;
        self.cv3.forward(&Tensor::cat(&[a, b], 1)?)
    }
}

/// A C2f/C3k2 inner block (a few per model, made once at load: their size does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Inner {
    Bottleneck(Bottleneck),
    C3k(C3k),
}

impl Module for Inner {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Inner::Bottleneck(b) => b.forward(x),
            Inner::C3k(b) => b.forward(x),
        }
    }
}

/// `C2f` (YOLOv8) and `C3k2` (YOLO11, a C2f whose inner blocks are Bottleneck or C3k).
pub(crate) struct C2f {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub c: usize,
    pub m: Vec<Inner>,
}

impl C2f {
    pub(crate) fn load(vb: &Vb, c1: usize, shortcut: bool) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c1, 1, true)?;
        if cv1.cout % 2 != 0 {
            return Err(vb.bad_shape(
                "cv1.conv.weight",
                &[cv1.cout],
                "an even number of output channels",
            ));
        }
        let c = cv1.cout / 2;
        let n = vb.children("m", "cv1.conv.weight")?;
        let mut m = Vec::with_capacity(n);
        for i in 0..n {
            let q = vb.pp("m").pp(i);
            if q.has_prefix("cv3.") || q.has_prefix("m.") {
                let b = C3k::load(&q, c)?;
                if b.cv3.cout != c {
                    return Err(q.bad_shape(
                        "cv3.conv.weight",
                        &[b.cv3.cout],
                        &format!("{c} outputs"),
                    ));
                }
                m.push(Inner::C3k(b));
            } else {
                let b = Bottleneck::load(&q, c, shortcut)?;
                if b.cv2.cout != c {
                    return Err(q.bad_shape(
                        "cv2.conv.weight",
                        &[b.cv2.cout],
                        &format!("{c} outputs"),
                    ));
                }
                m.push(Inner::Bottleneck(b));
            }
        }
        let cv2 = ConvBn::load(&vb.pp("cv2"), (2 + n) * c, 1, true)?;
        Ok(Self { cv1, cv2, c, m })
    }
}

impl Module for C2f {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        if self.cv1.is_haven() {
            return x.apply_op1_no_bwd(self);
        }
        let mut ys = self.cv1.forward(x)?.chunk(2, 1)?;
        for m in &self.m {
            let y = m.forward(ys.last().unwrap())?;
            ys.push(y);
        }
        self.cv2.forward(&Tensor::cat(&ys, 1)?)
    }
}

pub(crate) struct Sppf {
    pub cv1: ConvBn,
    pub cv2: ConvBn,
    pub k: usize,
}

impl Sppf {
    pub(crate) fn load(vb: &Vb, c1: usize) -> Result<Self, PoseError> {
        let cv1 = ConvBn::load(&vb.pp("cv1"), c1, 1, true)?;
        let cv2 = ConvBn::load(&vb.pp("cv2"), 4 * cv1.cout, 1, true)?;
        Ok(Self { cv1, cv2, k: 5 })
    }
}

impl Module for Sppf {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        if self.cv1.is_haven() {
            return x.apply_op1_no_bwd(self);
        }
        // k x k max-pool, stride 1, padding k/2: edge replication pads as -inf does for a max whose
        // window always holds the replicated value.
        let p = self.k / 2;
        let pool = |t: &Tensor| -> CResult<Tensor> {
            t.pad_with_same(2, p, p)?
                .pad_with_same(3, p, p)?
                .max_pool2d_with_stride(self.k, 1)
        };
        let y1 = self.cv1.forward(x)?;
        let y2 = pool(&y1)?;
        let y3 = pool(&y2)?;
        let y4 = pool(&y3)?;
        self.cv2.forward(&Tensor::cat(&[y1, y2, y3, y4], 1)?)
    }
}
