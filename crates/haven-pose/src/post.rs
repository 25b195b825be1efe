//! Letterbox geometry, decoding of the raw output, NMS and mapping back to source pixels,
//! following Ultralytics (`LetterBox`, `non_max_suppression`, `scale_boxes`, `scale_coords`).

use std::sync::Arc;

use serde::Serialize;

/// One detection: class, score, box and (pose models only) keypoints, in source-frame pixels.
///
/// JSON of a pose model: `{"class":"person","score":0.89,"bbox":[x1,y1,x2,y2],"keypoints":[[x,y,conf] x 17]}`;
/// of a detect model: `{"class":"dog","score":0.71,"bbox":[x1,y1,x2,y2]}` (no `keypoints`).
#[derive(Clone, Debug, Serialize)]
pub struct Detection {
    /// Index of the class in the model's class list ([`crate::YoloModel::class_names`]).
    #[serde(skip)]
    pub class_id: usize,
    /// The class name (shared with the model's list: cloning a detection does not copy it).
    pub class: Arc<str>,
    pub score: f32,
    /// x1, y1, x2, y2 in source-frame pixels, clipped to the frame.
    pub bbox: [f32; 4],
    /// Pose models: K x [x, y, conf] in source-frame pixels (COCO order, see [`crate::KEYPOINT_NAMES`]);
    /// not clipped, so a keypoint the network places outside the frame keeps its position (its
    /// confidence is then usually low). Empty for detect models (and then left out of the JSON).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keypoints: Vec<[f32; 3]>,
}

impl Detection {
    /// A `person` detection of class 0 (what a pose model gives).
    pub fn person(score: f32, bbox: [f32; 4], keypoints: Vec<[f32; 3]>) -> Self {
        Self {
            class_id: 0,
            class: Arc::from("person"),
            score,
            bbox,
            keypoints,
        }
    }
}

/// Ultralytics `LetterBox` geometry: scale to fit, centre, pad (value 114).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    /// resize ratio r = min(dst_w / src_w, dst_h / src_h)
    pub scale: f32,
    /// left padding in destination pixels
    pub pad_x: f32,
    /// top padding in destination pixels
    pub pad_y: f32,
    pub src_w: usize,
    pub src_h: usize,
    pub dst_w: usize,
    pub dst_h: usize,
}

/// Python's round(): half to even.
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

impl Letterbox {
    pub fn new(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize) -> Self {
        let r = (dst_h as f64 / src_h as f64).min(dst_w as f64 / src_w as f64);
        let new_w = py_round(src_w as f64 * r);
        let new_h = py_round(src_h as f64 * r);
        let dw = (dst_w as f64 - new_w) / 2.0;
        let dh = (dst_h as f64 - new_h) / 2.0;
        let left = py_round(dw - 0.1).max(0.0);
        let top = py_round(dh - 0.1).max(0.0);
        Self {
            scale: r as f32,
            pad_x: left as f32,
            pad_y: top as f32,
            src_w,
            src_h,
            dst_w,
            dst_h,
        }
    }

    /// (width, height) of the resized image inside the letterbox (before padding).
    pub fn resized_size(&self) -> (usize, usize) {
        let r = (self.dst_h as f64 / self.src_h as f64).min(self.dst_w as f64 / self.src_w as f64);
        (
            py_round(self.src_w as f64 * r) as usize,
            py_round(self.src_h as f64 * r) as usize,
        )
    }

    /// Destination (letterboxed) x -> source x.
    #[inline]
    pub fn to_src_x(&self, x: f32) -> f32 {
        (x - self.pad_x) / self.scale
    }

    /// Destination (letterboxed) y -> source y.
    #[inline]
    pub fn to_src_y(&self, y: f32) -> f32 {
        (y - self.pad_y) / self.scale
    }
}

/// IoU of two xyxy boxes (torchvision's definition, no +1).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let aa = (a[2] - a[0]) * (a[3] - a[1]);
    let ab = (b[2] - b[0]) * (b[3] - b[1]);
    let u = aa + ab - inter;
    if u <= 0.0 {
        0.0
    } else {
        inter / u
    }
}

/// Ultralytics `non_max_suppression`: at most this many candidates (best first) go into NMS,
pub(crate) const MAX_NMS: usize = 30_000;
/// at most this many detections come out,
pub(crate) const MAX_DET: usize = 300;
/// and class-aware NMS offsets each box by `class * MAX_WH` pixels (boxes of different classes
/// then never overlap).
pub(crate) const MAX_WH: f32 = 7680.0;

/// How a raw output is decoded: what [`postprocess_raw_with`] needs besides the values.
#[derive(Clone, Copy, Debug)]
pub struct Decode<'a> {
    /// Number of classes (rows 4 .. 4 + nc of the output); the rest are keypoint rows (3 per keypoint).
    pub nc: usize,
    /// Class names (index = class id); a class without a name is called `class{id}`.
    pub names: &'a [Arc<str>],
    /// Keep candidates whose best class score is > this.
    pub conf: f32,
    /// NMS: a box overlapping a better one of the same class with IoU > this is suppressed.
    pub iou: f32,
    /// Ultralytics `classes=`: keep only candidates whose best class is in this list (before NMS).
    pub classes: Option<&'a [usize]>,
    /// Ultralytics `agnostic=True`: boxes of different classes suppress each other too.
    pub agnostic: bool,
}

/// Decodes a raw [rows, n] output (rows = 4 + nc + 3*K, row-major) of one image:
/// confidence filter (score > conf), class-aware NMS (IoU > iou suppresses), at most 300 detections,
/// then boxes and keypoints mapped back to source pixels (boxes clipped to the frame). Classes are
/// called as [`default_class_names`] names them; [`postprocess_raw_with`] takes names and a class filter.
pub fn postprocess_raw(
    raw: &[f32],
    rows: usize,
    n: usize,
    nc: usize,
    lb: &Letterbox,
    conf: f32,
    iou_thres: f32,
) -> Vec<Detection> {
    let names: Vec<Arc<str>> = default_class_names(nc, rows > 4 + nc)
        .into_iter()
        .map(Arc::from)
        .collect();
    postprocess_raw_with(
        raw,
        rows,
        n,
        lb,
        &Decode {
            nc,
            names: &names,
            conf,
            iou: iou_thres,
            classes: None,
            agnostic: false,
        },
    )
}

/// Ultralytics `non_max_suppression` (multi_label=False) on one image's raw [rows, n] output, then
/// `scale_boxes` / `scale_coords`: per anchor the best class; keep it if its score > `conf` and (with a
/// class filter) its class is listed; the best 30,000 by score; NMS with each box offset by
/// `class * 7680` (torchvision's IoU, computed on the offset boxes as Ultralytics does); at most 300.
pub fn postprocess_raw_with(
    raw: &[f32],
    rows: usize,
    n: usize,
    lb: &Letterbox,
    d: &Decode,
) -> Vec<Detection> {
    assert_eq!(
        raw.len(),
        rows * n,
        "raw output has {} values, expected {rows} x {n}",
        raw.len()
    );
    let nc = d.nc;
    assert!(rows >= 4 + nc, "{rows} rows cannot hold 4 + {nc} classes");
    let nk = (rows - 4 - nc) / 3;
    let cand = candidates(raw, n, d);
    let boxes: Vec<[f32; 4]> = cand
        .iter()
        .map(|&(_, _, a)| {
            let (cx, cy, w, h) = (raw[a], raw[n + a], raw[2 * n + a], raw[3 * n + a]);
            [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
        })
        .collect();
    let offset: Vec<[f32; 4]> = boxes
        .iter()
        .zip(&cand)
        .map(|(b, &(_, c, _))| {
            let o = if d.agnostic { 0.0 } else { c as f32 * MAX_WH };
            b.map(|v| v + o)
        })
        .collect();
    let keep = nms_sorted(&offset, d.iou, MAX_DET);
    let raw = RawOutput { raw, n, nc, nk };
    keep.into_iter()
        .map(|i| raw.detection(cand[i], boxes[i], lb, d))
        .collect()
}

/// Per anchor its best class, kept if its score > `d.conf` and its class is asked for: (score,
/// class, anchor), best first (ties: lower anchor first), at most `MAX_NMS`.
fn candidates(raw: &[f32], n: usize, d: &Decode) -> Vec<(f32, usize, usize)> {
    let mut cand: Vec<(f32, usize, usize)> = Vec::new();
    for a in 0..n {
        let (mut best, mut cls) = (f32::NEG_INFINITY, 0);
        for c in 0..d.nc {
            let s = raw[(4 + c) * n + a];
            if s > best {
                best = s;
                cls = c;
            }
        }
        if best > d.conf && d.classes.is_none_or(|k| k.contains(&cls)) {
            cand.push((best, cls, a));
        }
    }
    cand.sort_by(|x, y| {
        y.0.partial_cmp(&x.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(x.2.cmp(&y.2))
    });
    cand.truncate(MAX_NMS);
    cand
}

/// One image's raw `[rows, n]` output: 4 box rows, `nc` class rows, `nk` keypoints x 3 rows.
struct RawOutput<'a> {
    raw: &'a [f32],
    n: usize,
    nc: usize,
    nk: usize,
}

impl RawOutput<'_> {
    /// The detection of a kept candidate `(score, class, anchor)` with its box `[x1, y1, x2, y2]`,
    /// in source-frame pixels (the box clamped to the frame).
    fn detection(
        &self,
        (score, cls, a): (f32, usize, usize),
        b: [f32; 4],
        lb: &Letterbox,
        d: &Decode,
    ) -> Detection {
        let (raw, n) = (self.raw, self.n);
        let (sw, sh) = (lb.src_w as f32, lb.src_h as f32);
        let bbox = [
            lb.to_src_x(b[0]).clamp(0.0, sw),
            lb.to_src_y(b[1]).clamp(0.0, sh),
            lb.to_src_x(b[2]).clamp(0.0, sw),
            lb.to_src_y(b[3]).clamp(0.0, sh),
        ];
        let kb = 4 + self.nc;
        let keypoints = (0..self.nk)
            .map(|k| {
                [
                    lb.to_src_x(raw[(kb + 3 * k) * n + a]),
                    lb.to_src_y(raw[(kb + 3 * k + 1) * n + a]),
                    raw[(kb + 3 * k + 2) * n + a],
                ]
            })
            .collect();
        let class = d
            .names
            .get(cls)
            .cloned()
            .unwrap_or_else(|| Arc::from(format!("class{cls}")));
        Detection {
            class_id: cls,
            class,
            score,
            bbox,
            keypoints,
        }
    }
}

/// torchvision's `nms` on boxes already sorted best first: the indices kept (at most `max_det`).
fn nms_sorted(boxes: &[[f32; 4]], iou_thres: f32, max_det: usize) -> Vec<usize> {
    let mut keep: Vec<usize> = Vec::new();
    let mut suppressed = vec![false; boxes.len()];
    for i in 0..boxes.len() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        if keep.len() >= max_det {
            break;
        }
        for j in i + 1..boxes.len() {
            if !suppressed[j] && iou(&boxes[i], &boxes[j]) > iou_thres {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// The 80 COCO class names, in the order of Ultralytics' COCO models.
pub const COCO_NAMES: [&str; 80] = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
];

/// Class names for a model whose weights name none: COCO's 80 when it has 80 classes, `person` for a
/// one-class pose model, else `class0`, `class1`, ... (what Ultralytics calls unnamed classes).
pub fn default_class_names(nc: usize, pose: bool) -> Vec<String> {
    if nc == 80 {
        COCO_NAMES.iter().map(|s| s.to_string()).collect()
    } else if nc == 1 && pose {
        vec!["person".to_string()]
    } else {
        (0..nc).map(|i| format!("class{i}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain reference: per class, greedy NMS over that class's boxes only (no offsets), the
    /// survivors of all classes merged best first, at most 300.
    fn reference(boxes: &[[f32; 4]], scores: &[f32], classes: &[usize], iou_t: f32) -> Vec<usize> {
        let mut kept = Vec::new();
        let ncls = classes.iter().max().map_or(0, |m| m + 1);
        for c in 0..ncls {
            let mut idx: Vec<usize> = (0..boxes.len()).filter(|&i| classes[i] == c).collect();
            idx.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap().then(a.cmp(&b)));
            let mut k: Vec<usize> = Vec::new();
            for i in idx {
                if k.iter().all(|&j| iou(&boxes[i], &boxes[j]) <= iou_t) {
                    k.push(i);
                }
            }
            kept.extend(k);
        }
        kept.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap().then(a.cmp(&b)));
        kept.truncate(MAX_DET);
        kept
    }

    /// A raw [4 + nc, n] output with one class score per anchor (the others 0).
    fn raw_of(boxes: &[[f32; 4]], scores: &[f32], classes: &[usize], nc: usize) -> Vec<f32> {
        let n = boxes.len();
        let mut raw = vec![0f32; (4 + nc) * n];
        for (a, b) in boxes.iter().enumerate() {
            raw[a] = (b[0] + b[2]) / 2.0;
            raw[n + a] = (b[1] + b[3]) / 2.0;
            raw[2 * n + a] = b[2] - b[0];
            raw[3 * n + a] = b[3] - b[1];
            raw[(4 + classes[a]) * n + a] = scores[a];
        }
        raw
    }

    fn rng(seed: &mut u64) -> f32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Class-aware NMS (offset boxes) keeps exactly what per-class NMS keeps, on clusters of boxes of
    /// several classes lying on top of each other; agnostic NMS keeps fewer.
    #[test]
    fn class_aware_nms_matches_per_class_reference() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let nc = 5;
        for round in 0..20 {
            let n = 200 + 10 * round;
            let (mut boxes, mut scores, mut classes) = (vec![], vec![], vec![]);
            for _ in 0..n {
                // 8 clusters: heavy overlap inside each
                let c = (rng(&mut seed) * 8.0) as usize;
                let (cx, cy) = (60.0 + 70.0 * c as f32, 300.0 + 5.0 * c as f32);
                let (x, y) = (cx + 20.0 * rng(&mut seed), cy + 20.0 * rng(&mut seed));
                let (w, h) = (40.0 + 30.0 * rng(&mut seed), 50.0 + 30.0 * rng(&mut seed));
                boxes.push([x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0]);
                scores.push(0.05 + 0.95 * rng(&mut seed));
                classes.push((rng(&mut seed) * nc as f32) as usize % nc);
            }
            let raw = raw_of(&boxes, &scores, &classes, nc);
            let lb = Letterbox::new(640, 640, 640, 640);
            let names: Vec<Arc<str>> = (0..nc).map(|i| Arc::from(format!("c{i}"))).collect();
            let mut d = Decode {
                nc,
                names: &names,
                conf: 0.25,
                iou: 0.5,
                classes: None,
                agnostic: false,
            };
            let got = postprocess_raw_with(&raw, 4 + nc, n, &lb, &d);
            let passing: Vec<usize> = (0..n).filter(|&i| scores[i] > 0.25).collect();
            let sub = |v: &Vec<[f32; 4]>| passing.iter().map(|&i| v[i]).collect::<Vec<_>>();
            let want: Vec<usize> = reference(
                &sub(&boxes),
                &passing.iter().map(|&i| scores[i]).collect::<Vec<_>>(),
                &passing.iter().map(|&i| classes[i]).collect::<Vec<_>>(),
                0.5,
            )
            .into_iter()
            .map(|j| passing[j])
            .collect();
            assert_eq!(got.len(), want.len(), "round {round}");
            for (g, &w) in got.iter().zip(&want) {
                assert_eq!(g.class_id, classes[w]);
                assert_eq!(&*g.class, format!("c{}", classes[w]));
                assert_eq!(g.score, scores[w]);
                assert!(g.keypoints.is_empty());
                for k in 0..4 {
                    assert!((g.bbox[k] - boxes[w][k]).abs() < 1e-3, "{:?} {:?}", g.bbox, boxes[w]);
                }
            }
            // several classes survive in one cluster: agnostic NMS removes them
            d.agnostic = true;
            let agn = postprocess_raw_with(&raw, 4 + nc, n, &lb, &d);
            assert!(agn.len() < got.len(), "agnostic {} vs class-aware {}", agn.len(), got.len());
            // the class filter: only the listed classes, and exactly the class-aware answer's ones
            d.agnostic = false;
            d.classes = Some(&[1, 3]);
            let filtered = postprocess_raw_with(&raw, 4 + nc, n, &lb, &d);
            let expect: Vec<usize> = got
                .iter()
                .filter(|g| g.class_id == 1 || g.class_id == 3)
                .map(|g| g.class_id)
                .collect();
            assert_eq!(filtered.iter().map(|g| g.class_id).collect::<Vec<_>>(), expect);
        }
    }

    /// The best class per anchor decides: an anchor whose best class is filtered out is dropped,
    /// even if another (listed) class of it passes the threshold (Ultralytics `classes=`).
    #[test]
    fn class_filter_applies_to_the_best_class() {
        let n = 1;
        let mut raw = vec![0f32; (4 + 3) * n];
        raw[..4].copy_from_slice(&[50.0, 50.0, 20.0, 20.0]);
        raw[4] = 0.4; // class 0
        raw[5] = 0.9; // class 1 (best)
        let lb = Letterbox::new(100, 100, 100, 100);
        let names: Vec<Arc<str>> = vec!["a".into(), "b".into()];
        let d = Decode {
            nc: 3,
            names: &names,
            conf: 0.25,
            iou: 0.7,
            classes: Some(&[0]),
            agnostic: false,
        };
        assert!(postprocess_raw_with(&raw, 7, n, &lb, &d).is_empty());
        let all = postprocess_raw_with(&raw, 7, n, &lb, &Decode { classes: None, ..d });
        assert_eq!((all[0].class_id, &*all[0].class), (1, "b"));
        raw[6] = 0.95; // class 2: no name given
        let all = postprocess_raw_with(&raw, 7, n, &lb, &Decode { classes: None, ..d });
        assert_eq!(&*all[0].class, "class2");
        let json = serde_json::to_string(&all[0]).unwrap();
        assert_eq!(json, r#"{"class":"class2","score":0.95,"bbox":[40.0,40.0,60.0,60.0]}"#);
    }

    #[test]
    fn default_names() {
        assert_eq!(default_class_names(80, false)[16], "dog");
        assert_eq!(default_class_names(1, true), ["person"]);
        assert_eq!(default_class_names(2, false), ["class0", "class1"]);
        assert_eq!(default_class_names(1, false), ["class0"]);
    }
}
