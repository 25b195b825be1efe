//! Letterbox geometry, decoding of the raw output, NMS and mapping back to source pixels,
//! following Ultralytics (`LetterBox`, `non_max_suppression`, `scale_boxes`, `scale_coords`).

use serde::Serialize;

/// One detected person: box and 17 keypoints in source-frame pixels.
///
/// JSON: `{"class":"person","score":0.89,"bbox":[x1,y1,x2,y2],"keypoints":[[x,y,conf] x 17]}`.
#[derive(Clone, Debug, Serialize)]
pub struct Detection {
    #[serde(rename = "class")]
    pub class: &'static str,
    pub score: f32,
    /// x1, y1, x2, y2 in source-frame pixels, clipped to the frame.
    pub bbox: [f32; 4],
    /// 17 x [x, y, conf] in source-frame pixels (COCO order, see [`crate::KEYPOINT_NAMES`]); not
    /// clipped, so a keypoint the network places outside the frame keeps its position (its
    /// confidence is then usually low).
    pub keypoints: Vec<[f32; 3]>,
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

pub(crate) const MAX_NMS: usize = 30_000;
pub(crate) const MAX_DET: usize = 300;

/// Decodes a raw [rows, n] output (rows = 4 + nc + 3*K, row-major) of one image:
/// confidence filter (score > conf), class-aware NMS (IoU > iou suppresses), at most 300 detections,
/// then boxes and keypoints mapped back to source pixels (boxes clipped to the frame).
pub fn postprocess_raw(
    raw: &[f32],
    rows: usize,
    n: usize,
    nc: usize,
    lb: &Letterbox,
    conf: f32,
    iou_thres: f32,
) -> Vec<Detection> {
    assert_eq!(
        raw.len(),
        rows * n,
        "raw output has {} values, expected {rows} x {n}",
        raw.len()
    );
    let nk = (rows - 4 - nc) / 3;
    // candidates
    let mut cand: Vec<(f32, usize, usize)> = Vec::new(); // (score, class, anchor)
    for a in 0..n {
        let (mut best, mut cls) = (f32::NEG_INFINITY, 0);
        for c in 0..nc {
            let s = raw[(4 + c) * n + a];
            if s > best {
                best = s;
                cls = c;
            }
        }
        if best > conf {
            cand.push((best, cls, a));
        }
    }
    cand.sort_by(|x, y| {
        y.0.partial_cmp(&x.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(x.2.cmp(&y.2))
    });
    cand.truncate(MAX_NMS);
    let boxes: Vec<[f32; 4]> = cand
        .iter()
        .map(|&(_, _, a)| {
            let (cx, cy, w, h) = (raw[a], raw[n + a], raw[2 * n + a], raw[3 * n + a]);
            [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
        })
        .collect();
    let mut keep: Vec<usize> = Vec::new();
    let mut suppressed = vec![false; cand.len()];
    for i in 0..cand.len() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        if keep.len() >= MAX_DET {
            break;
        }
        for j in i + 1..cand.len() {
            if !suppressed[j] && cand[j].1 == cand[i].1 && iou(&boxes[i], &boxes[j]) > iou_thres {
                suppressed[j] = true;
            }
        }
    }
    let (sw, sh) = (lb.src_w as f32, lb.src_h as f32);
    keep.into_iter()
        .map(|i| {
            let (score, cls, a) = cand[i];
            let b = boxes[i];
            let bbox = [
                lb.to_src_x(b[0]).clamp(0.0, sw),
                lb.to_src_y(b[1]).clamp(0.0, sh),
                lb.to_src_x(b[2]).clamp(0.0, sw),
                lb.to_src_y(b[3]).clamp(0.0, sh),
            ];
            let kb = 4 + nc;
            let keypoints = (0..nk)
                .map(|k| {
                    [
                        lb.to_src_x(raw[(kb + 3 * k) * n + a]),
                        lb.to_src_y(raw[(kb + 3 * k + 1) * n + a]),
                        raw[(kb + 3 * k + 2) * n + a],
                    ]
                })
                .collect();
            Detection {
                class: class_name(cls),
                score,
                bbox,
                keypoints,
            }
        })
        .collect()
}

fn class_name(c: usize) -> &'static str {
    if c == 0 {
        "person"
    } else {
        "object"
    }
}
