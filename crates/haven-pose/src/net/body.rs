//! The layer table of a YOLO body: which block each `model.N` is and which layers it reads.
//!
//! YOLOv8 and YOLO11 share one wiring (`yolov8-pose.yaml`, `yolo11-pose.yaml`, identical for every
//! scale and for the detect models): a backbone of strided convolutions and CSP blocks ending in SPPF,
//! a top-down then bottom-up neck, and a head over three levels. What they differ in is data
//! ([`Body`]): YOLO11 adds a C2PSA after the SPPF, keeps its neck blocks' shortcuts and has a
//! depthwise class branch in its head.

use crate::Arch;

/// What one layer is (how it loads and runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A stride-2 `Conv`.
    Conv,
    /// `C2f` / `C3k2`; its bottlenecks add their input when `shortcut`.
    C2f {
        shortcut: bool,
    },
    Sppf,
    C2psa,
    Upsample,
    Concat,
}

/// One layer of the body: its kind and the layers it reads (empty for layer 0, which reads the image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LayerSpec {
    pub kind: Kind,
    pub from: Vec<usize>,
}

/// The parts in which YOLOv8 and YOLO11 differ.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Body {
    /// Ultralytics' name of the CSP block, for messages.
    pub block: &'static str,
    /// A C2PSA attention block after the SPPF.
    pub attention: bool,
    /// The neck's CSP blocks add their shortcuts (YOLOv8 turns them off, YOLO11 keeps the default).
    pub neck_shortcut: bool,
    /// The head's class branch is DWConv + Conv pairs rather than two Convs.
    pub dw_class_branch: bool,
}

/// YOLOv8 (`yolov8.yaml`, `yolov8-pose.yaml`).
pub(crate) const V8: Body = Body {
    block: "C2f",
    attention: false,
    neck_shortcut: false,
    dw_class_branch: false,
};

/// YOLO11 (`yolo11.yaml`, `yolo11-pose.yaml`).
pub(crate) const V11: Body = Body {
    block: "C3k2",
    attention: true,
    neck_shortcut: true,
    dw_class_branch: true,
};

impl Body {
    pub fn of(arch: Arch) -> Body {
        match arch {
            Arch::V8 => V8,
            Arch::V11 => V11,
        }
    }

    /// The layer table, `model.0` first.
    pub fn table(&self) -> Table {
        let mut t = Table::default();
        let csp = Kind::C2f { shortcut: true };
        let neck = Kind::C2f {
            shortcut: self.neck_shortcut,
        };
        // backbone: strides 2, 4, 8 (p3), 16 (p4), 32 (p5)
        t.then(Kind::Conv);
        t.then(Kind::Conv);
        t.then(csp);
        t.then(Kind::Conv);
        let p3 = t.then(csp);
        t.then(Kind::Conv);
        let p4 = t.then(csp);
        t.then(Kind::Conv);
        t.then(csp);
        let mut p5 = t.then(Kind::Sppf);
        if self.attention {
            p5 = t.then(Kind::C2psa);
        }
        // neck, top-down
        t.then(Kind::Upsample);
        t.concat_with(p4);
        let n4 = t.then(neck);
        t.then(Kind::Upsample);
        t.concat_with(p3);
        let out3 = t.then(neck);
        // neck, bottom-up
        t.then(Kind::Conv);
        t.concat_with(n4);
        let out4 = t.then(neck);
        t.then(Kind::Conv);
        t.concat_with(p5);
        let out5 = t.then(neck);
        t.head_from = vec![out3, out4, out5];
        t
    }
}

/// A body's layers, then the head (the next `model.N`) over three of them, finest level first.
#[derive(Default)]
pub(crate) struct Table {
    pub layers: Vec<LayerSpec>,
    pub head_from: Vec<usize>,
}

impl Table {
    fn push(&mut self, kind: Kind, from: Vec<usize>) -> usize {
        self.layers.push(LayerSpec { kind, from });
        self.layers.len() - 1
    }

    /// A layer reading the previous one (or the image, first).
    fn then(&mut self, kind: Kind) -> usize {
        let from = self.layers.len().checked_sub(1).into_iter().collect();
        self.push(kind, from)
    }

    /// The previous layer's output concatenated with `other`'s.
    fn concat_with(&mut self, other: usize) -> usize {
        let prev = self.layers.len() - 1;
        self.push(Kind::Concat, vec![prev, other])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body's layers read back as the yaml files write them: per layer its `from` (-1: the
    /// previous layer).
    fn as_yaml(table: &Table) -> Vec<(Vec<isize>, Kind)> {
        table
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let from = l
                    .from
                    .iter()
                    .map(|&f| if f + 1 == i { -1 } else { f as isize });
                (from.collect(), l.kind)
            })
            .collect()
    }

    #[test]
    fn v8_and_v11_are_wired_as_their_yaml_files() {
        use Kind::*;
        let (sc, no) = (C2f { shortcut: true }, C2f { shortcut: false });
        let prev = || vec![-1];
        let mut v8 = vec![(vec![], Conv)];
        v8.extend([Conv, sc, Conv, sc, Conv, sc, Conv, sc, Sppf, Upsample].map(|k| (prev(), k)));
        v8.extend([
            (vec![-1, 6], Concat),
            (prev(), no),
            (prev(), Upsample),
            (vec![-1, 4], Concat),
            (prev(), no),
            (prev(), Conv),
            (vec![-1, 12], Concat),
            (prev(), no),
            (prev(), Conv),
            (vec![-1, 9], Concat),
            (prev(), no),
        ]);
        assert_eq!(as_yaml(&V8.table()), v8);
        assert_eq!(V8.table().head_from, [15, 18, 21]);

        let mut v11 = vec![(vec![], Conv)];
        v11.extend(
            [
                Conv, sc, Conv, sc, Conv, sc, Conv, sc, Sppf, C2psa, Upsample,
            ]
            .map(|k| (prev(), k)),
        );
        v11.extend([
            (vec![-1, 6], Concat),
            (prev(), sc),
            (prev(), Upsample),
            (vec![-1, 4], Concat),
            (prev(), sc),
            (prev(), Conv),
            (vec![-1, 13], Concat),
            (prev(), sc),
            (prev(), Conv),
            (vec![-1, 10], Concat),
            (prev(), sc),
        ]);
        assert_eq!(as_yaml(&V11.table()), v11);
        assert_eq!(V11.table().head_from, [16, 19, 22]);
    }
}
