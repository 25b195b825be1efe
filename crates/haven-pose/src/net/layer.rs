//! The body's layers as loaded: a block of [`Kind`] with the layers it reads.

use super::body::Kind;
use super::{C2f, C2psa, ConvBn, Sppf, Vb};
use crate::PoseError;

pub(crate) enum Layer {
    Conv(ConvBn),
    C2f(C2f),
    Sppf(Sppf),
    C2psa(C2psa),
    Upsample,
    Concat,
}

/// A layer and the layers whose outputs it reads (empty: the image).
pub(crate) struct Node {
    pub from: Vec<usize>,
    pub layer: Layer,
}

impl Layer {
    /// The layer of `kind` at `vb` over `cin` input channels, and its output channels (`chans`: those
    /// of the layers before it, which a concatenation sums).
    pub fn load(
        vb: &Vb,
        kind: Kind,
        cin: usize,
        from: &[usize],
        chans: &[usize],
    ) -> Result<(Self, usize), PoseError> {
        Ok(match kind {
            Kind::Conv => {
                let c = ConvBn::load(vb, cin, 2, true)?;
                let co = c.cout;
                (Layer::Conv(c), co)
            }
            Kind::C2f { shortcut } => {
                let c = C2f::load(vb, cin, shortcut)?;
                let co = c.cv2.cout;
                (Layer::C2f(c), co)
            }
            Kind::Sppf => {
                let c = Sppf::load(vb, cin)?;
                let co = c.cv2.cout;
                (Layer::Sppf(c), co)
            }
            Kind::C2psa => {
                let c = C2psa::load(vb, cin)?;
                let co = c.cv2.cout;
                (Layer::C2psa(c), co)
            }
            Kind::Upsample => (Layer::Upsample, cin),
            Kind::Concat => (Layer::Concat, from.iter().map(|&f| chans[f]).sum()),
        })
    }

    /// The name the layer profile prints.
    pub fn profile_name(&self) -> &'static str {
        match self {
            Layer::Conv(_) => "Conv",
            Layer::C2f(_) => "C2f/C3k2",
            Layer::Sppf(_) => "SPPF",
            Layer::C2psa(_) => "C2PSA",
            Layer::Upsample => "Upsample",
            Layer::Concat => "Concat",
        }
    }
}
