//! Cheap per-camera motion detection, so pose inference only runs on a camera while something moves.
//!
//! The classic background-subtraction recipe on a small grey copy of each frame: resize (INTER_AREA),
//! grey, Gaussian blur, absolute difference against a running-average background, threshold, a 3x3
//! morphological open to drop isolated noise pixels, a dilation to join a person's parts, external
//! contours and their bounding boxes, scaled back to the full frame.
//!
//! Global brightness is tracked separately: the median of (frame - background) over a sample of
//! pixels is the scene's brightness shift since the last frame. It is added to the background before
//! the difference (so drift and small exposure steps never show up as motion, and a person covering
//! less than half the frame cannot bias it), and a shift larger than `threshold`, or a change over
//! more than `lighting_change` of the frame, is a lighting switch: the background restarts from
//! that frame and no motion is reported.

use opencv::core::{self, Mat, Point, Rect, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Most boxes one frame reports; beyond it the closest boxes are merged.
const MAX_BOXES: usize = 16;
/// Beyond this many raw contours the motion is everywhere: one box around all of it.
const MAX_RAW_BOXES: usize = 64;
/// Boxes closer than this (pixels of the small copy) are merged.
const MERGE_GAP: i32 = 2;
/// Boxes smaller than this (pixels of the small copy, after undoing the dilation) are dropped.
const MIN_BOX_PX: i32 = 9;
/// About this many pixels are sampled for the brightness shift.
const BRIGHTNESS_SAMPLES: usize = 2048;

/// Settings, part of each camera's config; every field is optional.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionSettings {
    /// `false`: every frame counts as moving (the camera infers at its detect rate).
    pub enabled: bool,
    /// Width of the small grey copy the detector works on (height keeps the aspect ratio); frames
    /// narrower than this are used at their own size.
    pub width: u32,
    /// Difference of a pixel from the background (0-255, after blurring) that counts as changed.
    pub threshold: u8,
    /// Fraction of the frame that must change for "moving".
    pub min_area: f32,
    /// Running-average weight of each new frame in the background, (0, 1].
    pub background_alpha: f32,
    /// Odd Gaussian kernel size on the small copy; 0 or 1 = no blur.
    pub blur: u32,
    /// A change covering more than this fraction of the frame at once is a lighting change: the
    /// background restarts from that frame and no motion is reported.
    pub lighting_change: f32,
}

impl Default for MotionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            width: 320,
            threshold: 15,
            min_area: 0.0005,
            background_alpha: 0.05,
            blur: 5,
            lighting_change: 0.5,
        }
    }
}

impl MotionSettings {
    /// Every rule about a motion section; the error names the field (its caller, the section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let out_of = |field: &str, v: &dyn std::fmt::Display, range: &str| Err(ConfigError::new(field, format!("{v} is out of range {range}")));
        if !(16..=1920).contains(&self.width) {
            return out_of("width", &self.width, "16-1920");
        }
        if !(1..=254).contains(&self.threshold) {
            return out_of("threshold", &self.threshold, "1-254");
        }
        if !(0.0..=1.0).contains(&self.min_area) {
            return out_of("min_area", &self.min_area, "[0, 1]");
        }
        if !(self.background_alpha > 0.0 && self.background_alpha <= 1.0) {
            return out_of("background_alpha", &self.background_alpha, "(0, 1]");
        }
        if self.blur > 1 && (self.blur.is_multiple_of(2) || self.blur > 31) {
            return Err(ConfigError::new("blur", format!("{} must be 0, 1 or an odd size 3-31", self.blur)));
        }
        if !(self.lighting_change > 0.0 && self.lighting_change <= 1.0) {
            return out_of("lighting_change", &self.lighting_change, "(0, 1]");
        }
        if self.lighting_change <= self.min_area {
            let reason = format!("{} must be above motion.min_area {}", self.lighting_change, self.min_area);
            return Err(ConfigError::new("lighting_change", reason));
        }
        Ok(())
    }
}

/// What one frame showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Motion {
    pub moving: bool,
    /// Fraction of the frame that changed (0-1), after noise removal. On a lighting change it is the
    /// changed fraction that triggered it, with `moving` false; with the detector disabled it is 1.
    pub area: f32,
    /// Boxes around the changed regions, `[x1, y1, x2, y2]` in the full frame's pixels, merged where
    /// they overlap or nearly touch, at most 16; empty unless `moving`. With the detector disabled,
    /// one box around the whole frame.
    pub boxes: Vec<[f32; 4]>,
}

impl Motion {
    /// Nothing moved; `area` of the frame changed (noise, or a lighting change).
    fn still(area: f32) -> Self {
        Self { moving: false, area, boxes: Vec::new() }
    }
}

/// 8-bit grey, BGR or BGRA: what the detector reads.
fn check_format(frame: &Mat) -> opencv::Result<()> {
    if frame.depth() != core::CV_8U || ![1, 3, 4].contains(&frame.channels()) {
        return Err(opencv::Error::new(
            core::StsUnsupportedFormat,
            format!(
                "motion: frames must be 8-bit grey, BGR or BGRA, not type {}",
                frame.typ()
            ),
        ));
    }
    Ok(())
}

pub struct MotionDetector {
    settings: MotionSettings,
    /// Full-frame (cols, rows) and small (cols, rows) the background belongs to; `None`: no background yet.
    sizes: Option<((i32, i32), (i32, i32))>,
    small: Mat,
    grey: Mat,
    /// The blurred small grey copy of the current frame (CV_8U).
    cur: Mat,
    /// Running average of `cur` (CV_32F).
    background: Mat,
    spare: Mat,
    bg8: Mat,
    diff: Mat,
    mask: Mat,
    opened: Mat,
    dilated: Mat,
    open_kernel: Mat,
    dilate_kernel: Mat,
    /// Half the dilation kernel's size, undone on the boxes.
    dilate_radius: i32,
    contours: Vector<Vector<Point>>,
    hist: Vec<u32>,
    rects: Vec<[i32; 4]>,
    /// The camera's `motion_mask` zones (0..1 of the frame): what changes there is not motion...
    masked: Vec<Vec<[f64; 2]>>,
    /// ...and where it counts (255) in the small copy of `keep_size`, built when first needed.
    keep: Mat,
    keep_size: Option<Size>,
}

impl MotionDetector {
    pub fn new(settings: MotionSettings) -> Self {
        Self {
            settings,
            sizes: None,
            small: Mat::default(),
            grey: Mat::default(),
            cur: Mat::default(),
            background: Mat::default(),
            spare: Mat::default(),
            bg8: Mat::default(),
            diff: Mat::default(),
            mask: Mat::default(),
            opened: Mat::default(),
            dilated: Mat::default(),
            open_kernel: Mat::default(),
            dilate_kernel: Mat::default(),
            dilate_radius: 0,
            contours: Vector::new(),
            hist: vec![0; 511],
            rects: Vec::new(),
            masked: Vec::new(),
            keep: Mat::default(),
            keep_size: None,
        }
    }

    pub fn settings(&self) -> &MotionSettings {
        &self.settings
    }

    /// New settings; a change of `enabled`, `width` or `blur` restarts the background.
    pub fn set_settings(&mut self, s: MotionSettings) {
        if s.enabled != self.settings.enabled || s.width != self.settings.width || s.blur != self.settings.blur {
            self.reset();
        }
        self.settings = s;
    }

    /// The polygons (`[x, y]` in 0..1 of the frame: the camera's `motion_mask` zones) where nothing
    /// that changes is motion: it neither wakes the model nor counts in the boxes or the area.
    pub fn set_mask(&mut self, polygons: &[Vec<[f64; 2]>]) {
        if polygons != self.masked.as_slice() {
            self.masked = polygons.to_vec();
            self.keep_size = None;
        }
    }

    /// `self.keep` for a small copy of `size`: 255 but inside the masked polygons.
    fn build_keep(&mut self, size: Size) -> opencv::Result<()> {
        if self.keep_size == Some(size) {
            return Ok(());
        }
        self.keep = Mat::new_size_with_default(size, core::CV_8U, Scalar::all(255.0))?;
        let (w, h) = (size.width as f64, size.height as f64);
        let mut polys: Vector<Vector<Point>> = Vector::new();
        for poly in &self.masked {
            polys.push(poly.iter().map(|p| Point::new((p[0] * w).round() as i32, (p[1] * h).round() as i32)).collect());
        }
        imgproc::fill_poly_def(&mut self.keep, &polys, Scalar::all(0.0))?;
        self.keep_size = Some(size);
        Ok(())
    }

    /// Forget the background: the next frame only sets it.
    pub fn reset(&mut self) {
        self.sizes = None;
    }

    /// One decoded frame (BGR, or grey, or BGRA; 8-bit; any size; a size change restarts the
    /// background). The first frame only sets the background and reports no motion; an empty frame
    /// reports no motion and leaves the background alone.
    pub fn update(&mut self, frame: &Mat) -> opencv::Result<Motion> {
        let (cols, rows) = (frame.cols(), frame.rows());
        if frame.empty() || cols <= 0 || rows <= 0 {
            return Ok(Motion::default());
        }
        check_format(frame)?;
        let s = self.settings;
        if !s.enabled {
            self.reset();
            return Ok(Motion {
                moving: true,
                area: 1.0,
                boxes: vec![[0.0, 0.0, cols as f32, rows as f32]],
            });
        }
        let geo = Geometry::new(cols, rows, s.width as i32);
        let (sw, sh) = (geo.small.width, geo.small.height);
        self.small_grey(frame, &geo)?;

        if self.sizes != Some(((cols, rows), (sw, sh))) {
            self.restart(sw)?;
            self.sizes = Some(((cols, rows), (sw, sh)));
            return Ok(Motion::default());
        }

        let (shift, changed) = self.difference()?;
        let area = changed as f32 / (sw as f32 * sh as f32);
        if shift.unsigned_abs() > s.threshold as u32 || area > s.lighting_change {
            self.restart(sw)?;
            return Ok(Motion::still(area));
        }
        self.update_background(shift)?;
        if changed == 0 || area < s.min_area {
            return Ok(Motion::still(area));
        }
        self.changed_boxes(sw, sh)?;
        if self.rects.is_empty() {
            return Ok(Motion::still(area));
        }
        Ok(Motion {
            moving: true,
            area,
            boxes: self.full_frame_boxes(&geo, cols, rows),
        })
    }

    /// The scene's brightness shift since the last frame, then the pixels that differ from the
    /// background shifted by it (`self.opened`, isolated noise pixels removed): (shift, how many).
    fn difference(&mut self) -> opencv::Result<(i32, i32)> {
        let shift = brightness_shift(
            self.cur.data_bytes()?,
            self.background.data_typed::<f32>()?,
            &mut self.hist,
        );
        self.background
            .convert_to(&mut self.bg8, core::CV_8U, 1.0, shift as f64)?;
        core::absdiff(&self.cur, &self.bg8, &mut self.diff)?;
        imgproc::threshold(
            &self.diff,
            &mut self.mask,
            self.settings.threshold as f64,
            255.0,
            imgproc::THRESH_BINARY,
        )?;
        if !self.masked.is_empty() {
            self.build_keep(self.mask.size()?)?;
            core::bitwise_and(&self.mask, &self.keep, &mut self.diff, &core::no_array())?;
            std::mem::swap(&mut self.mask, &mut self.diff);
        }
        imgproc::morphology_ex(
            &self.mask,
            &mut self.opened,
            imgproc::MORPH_OPEN,
            &self.open_kernel,
            Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            imgproc::morphology_default_border_value()?,
        )?;
        Ok((shift, core::count_non_zero(&self.opened)?))
    }

    /// background = (1 - alpha) * (background + shift) + alpha * cur
    fn update_background(&mut self, shift: i32) -> opencv::Result<()> {
        let alpha = self.settings.background_alpha as f64;
        imgproc::accumulate_weighted(&self.cur, &mut self.background, alpha, &core::no_array())?;
        if shift != 0 {
            let by = Scalar::all((1.0 - alpha) * shift as f64);
            core::add(&self.background, &by, &mut self.spare, &core::no_array(), -1)?;
            std::mem::swap(&mut self.background, &mut self.spare);
        }
        Ok(())
    }

    /// The changed pixels joined (dilated) into regions, their boxes in the small copy's pixels
    /// (`self.rects`, of `sw` x `sh`), the dilation undone, too small ones dropped, close ones merged.
    fn changed_boxes(&mut self, sw: i32, sh: i32) -> opencv::Result<()> {
        imgproc::dilate(
            &self.opened,
            &mut self.dilated,
            &self.dilate_kernel,
            Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            imgproc::morphology_default_border_value()?,
        )?;
        imgproc::find_contours(
            &self.dilated,
            &mut self.contours,
            imgproc::RETR_EXTERNAL,
            imgproc::CHAIN_APPROX_SIMPLE,
            Point::new(0, 0),
        )?;
        self.rects.clear();
        let r = self.dilate_radius;
        for contour in &self.contours {
            let b: Rect = imgproc::bounding_rect(&contour)?;
            // Undo the dilation, except where the box was cut by the frame's edge.
            let x1 = if b.x > 0 { b.x + r } else { 0 };
            let y1 = if b.y > 0 { b.y + r } else { 0 };
            let x2 = if b.x + b.width < sw { b.x + b.width - r } else { sw };
            let y2 = if b.y + b.height < sh { b.y + b.height - r } else { sh };
            if x2 > x1 && y2 > y1 && (x2 - x1) * (y2 - y1) >= MIN_BOX_PX {
                self.rects.push([x1, y1, x2, y2]);
            }
        }
        merge_boxes(&mut self.rects, MERGE_GAP, MAX_BOXES);
        Ok(())
    }

    /// `self.rects` scaled back to the full frame's `cols` x `rows` pixels.
    fn full_frame_boxes(&self, geo: &Geometry, cols: i32, rows: i32) -> Vec<[f32; 4]> {
        let (sw, sh) = (geo.small.width, geo.small.height);
        let (fx, fy) = (geo.used.width as f32 / sw as f32, geo.used.height as f32 / sh as f32);
        self.rects
            .iter()
            .map(|b| {
                [
                    (b[0] as f32 * fx).min(cols as f32),
                    (b[1] as f32 * fy).min(rows as f32),
                    (b[2] as f32 * fx).min(cols as f32),
                    (b[3] as f32 * fy).min(rows as f32),
                ]
            })
            .collect()
    }

    /// `frame` → `self.cur`: the small blurred grey copy. INTER_AREA is only fast for an integer
    /// factor (768 → 320 at 2.4 costs over 1 ms, 768 → 384 under 0.1 ms), so: INTER_AREA by the
    /// integer factor, grey, then INTER_LINEAR for the last step of less than 2x.
    fn small_grey(&mut self, frame: &Mat, geo: &Geometry) -> opencv::Result<()> {
        if geo.factor > 1 {
            let mid = Size::new(geo.used.width / geo.factor, geo.used.height / geo.factor);
            if geo.used.width == frame.cols() && geo.used.height == frame.rows() {
                imgproc::resize(frame, &mut self.small, mid, 0.0, 0.0, imgproc::INTER_AREA)?;
            } else {
                let used = frame.roi(geo.used)?;
                imgproc::resize(&used, &mut self.small, mid, 0.0, 0.0, imgproc::INTER_AREA)?;
            }
            to_grey(&self.small, &mut self.grey)?;
        } else {
            to_grey(frame, &mut self.grey)?;
        }
        if self.grey.size()? != geo.small {
            imgproc::resize(&self.grey, &mut self.small, geo.small, 0.0, 0.0, imgproc::INTER_LINEAR)?;
            std::mem::swap(&mut self.grey, &mut self.small);
        }
        let k = self.settings.blur as i32;
        if k > 1 {
            imgproc::gaussian_blur_def(&self.grey, &mut self.cur, Size::new(k, k), 0.0)?;
        } else {
            std::mem::swap(&mut self.grey, &mut self.cur);
        }
        Ok(())
    }

    /// The background restarts from the current frame; kernels for small width `sw`.
    fn restart(&mut self, sw: i32) -> opencv::Result<()> {
        self.cur.convert_to(&mut self.background, core::CV_32F, 1.0, 0.0)?;
        if self.open_kernel.empty() {
            self.open_kernel = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, Size::new(3, 3))?;
        }
        // About 2% of the width: joins a walking person's limbs and torso into one region.
        let k = ((sw / 48) | 1).clamp(3, 15);
        if self.dilate_radius != k / 2 || self.dilate_kernel.empty() {
            self.dilate_kernel = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, Size::new(k, k))?;
            self.dilate_radius = k / 2;
        }
        Ok(())
    }
}

/// How a frame is shrunk: INTER_AREA by an integer `factor` over the `used` part of the frame (all
/// of it but, where the size does not divide, the last few columns and rows), then to `small`.
struct Geometry {
    factor: i32,
    used: Rect,
    small: Size,
}

impl Geometry {
    fn new(cols: i32, rows: i32, width: i32) -> Self {
        let factor = (cols / width.max(1)).clamp(1, rows.max(1));
        let used = Rect::new(0, 0, cols / factor * factor, rows / factor * factor);
        let (mw, mh) = (used.width / factor, used.height / factor);
        let sw = width.clamp(1, mw);
        let sh = ((mh as f64 * sw as f64 / mw as f64).round() as i32).max(1);
        Self {
            factor,
            used,
            small: Size::new(sw, sh),
        }
    }
}

fn to_grey(src: &Mat, dst: &mut Mat) -> opencv::Result<()> {
    match src.channels() {
        3 => imgproc::cvt_color_def(src, dst, imgproc::COLOR_BGR2GRAY),
        4 => imgproc::cvt_color_def(src, dst, imgproc::COLOR_BGRA2GRAY),
        _ => src.copy_to(dst),
    }
}

/// Median of `cur - bg` over about `BRIGHTNESS_SAMPLES` evenly spread pixels, rounded: the global
/// brightness shift, unmoved by anything covering less than half the frame.
fn brightness_shift(cur: &[u8], bg: &[f32], hist: &mut [u32]) -> i32 {
    let n = cur.len().min(bg.len());
    if n == 0 {
        return 0;
    }
    hist.iter_mut().for_each(|h| *h = 0);
    // An odd step so that the samples do not line up in columns.
    let step = (n / BRIGHTNESS_SAMPLES) | 1;
    let mut count = 0u32;
    let mut i = 0;
    while i < n {
        let d = cur[i] as f32 - bg[i];
        let bin = (d.round() as i32 + 255).clamp(0, 510) as usize;
        hist[bin] += 1;
        count += 1;
        i += step;
    }
    let half = count.div_ceil(2);
    let mut seen = 0;
    for (bin, &h) in hist.iter().enumerate() {
        seen += h;
        if seen >= half {
            return bin as i32 - 255;
        }
    }
    0
}

/// Gap between two boxes `[x1, y1, x2, y2]` (0 when they touch or overlap).
fn gap(a: &[i32; 4], b: &[i32; 4]) -> i32 {
    let gx = (a[0] - b[2]).max(b[0] - a[2]).max(0);
    let gy = (a[1] - b[3]).max(b[1] - a[3]).max(0);
    gx.max(gy)
}

fn union(a: &[i32; 4], b: &[i32; 4]) -> [i32; 4] {
    [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
}

/// Merge boxes closer than `near`, then the closest pairs until at most `cap` remain; sorted by
/// area, largest first.
fn merge_boxes(boxes: &mut Vec<[i32; 4]>, near: i32, cap: usize) {
    if boxes.len() > MAX_RAW_BOXES {
        let all = boxes.iter().skip(1).fold(boxes[0], |acc, b| union(&acc, b));
        boxes.clear();
        boxes.push(all);
        return;
    }
    let mut merged = true;
    while merged {
        merged = false;
        let mut i = 0;
        while i < boxes.len() {
            let mut j = i + 1;
            while j < boxes.len() {
                if gap(&boxes[i], &boxes[j]) <= near {
                    boxes[i] = union(&boxes[i], &boxes[j]);
                    boxes.swap_remove(j);
                    merged = true;
                } else {
                    j += 1;
                }
            }
            i += 1;
        }
    }
    while boxes.len() > cap.max(1) {
        let mut best = (i32::MAX, 0, 1);
        for i in 0..boxes.len() {
            for j in i + 1..boxes.len() {
                let g = gap(&boxes[i], &boxes[j]);
                if g < best.0 {
                    best = (g, i, j);
                }
            }
        }
        let (_, i, j) = best;
        boxes[i] = union(&boxes[i], &boxes[j]);
        boxes.swap_remove(j);
    }
    boxes.sort_by_key(|b| std::cmp::Reverse((b[2] - b[0]) * (b[3] - b[1])));
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::videoio;
    use std::path::Path;
    use std::time::Instant;

    const W: i32 = 768;
    const H: i32 = 576;

    /// A textured synthetic scene: 24 px blocks of grey levels 50-170 with a fine ±20 texture, so
    /// nothing saturates under the lighting tests.
    fn scene(seed: u64) -> Mat {
        let mut rng = core::RNG::new(seed).unwrap();
        let mut coarse = Mat::new_rows_cols_with_default(H / 24, W / 24, core::CV_8UC3, Scalar::all(0.0)).unwrap();
        rng.fill(
            &mut coarse,
            core::RNG_UNIFORM,
            &Scalar::all(50.0),
            &Scalar::all(170.0),
            false,
        )
        .unwrap();
        let mut base = Mat::default();
        imgproc::resize(&coarse, &mut base, Size::new(W, H), 0.0, 0.0, imgproc::INTER_NEAREST).unwrap();
        let mut fine = Mat::new_rows_cols_with_default(H, W, core::CV_16SC3, Scalar::all(0.0)).unwrap();
        rng.fill(
            &mut fine,
            core::RNG_UNIFORM,
            &Scalar::all(-20.0),
            &Scalar::all(20.0),
            false,
        )
        .unwrap();
        let mut out = Mat::default();
        core::add(&base, &fine, &mut out, &core::no_array(), core::CV_8U).unwrap();
        out
    }

    /// `base` + `offset` + Gaussian sensor noise of `sigma`, saturated to 8 bits.
    fn noisy(base: &Mat, offset: f64, sigma: f64, rng: &mut core::RNG) -> Mat {
        let mut noise =
            Mat::new_rows_cols_with_default(base.rows(), base.cols(), core::CV_16SC3, Scalar::all(0.0)).unwrap();
        rng.fill(
            &mut noise,
            core::RNG_NORMAL,
            &Scalar::all(offset),
            &Scalar::all(sigma),
            false,
        )
        .unwrap();
        let mut out = Mat::default();
        core::add(base, &noise, &mut out, &core::no_array(), core::CV_8U).unwrap();
        out
    }

    fn with_rects(base: &Mat, rects: &[Rect]) -> Mat {
        let mut out = base.try_clone().unwrap();
        for r in rects {
            imgproc::rectangle(&mut out, *r, Scalar::all(25.0), imgproc::FILLED, imgproc::LINE_8, 0).unwrap();
        }
        out
    }

    fn contains(b: &[f32; 4], r: Rect, tol: f32) -> bool {
        b[0] <= r.x as f32 + tol
            && b[1] <= r.y as f32 + tol
            && b[2] >= (r.x + r.width) as f32 - tol
            && b[3] >= (r.y + r.height) as f32 - tol
    }

    /// `b` lies on `path` (within 6 px).
    fn on(b: &[f32; 4], path: Rect) -> bool {
        b[0] >= path.x as f32 - 6.0
            && b[1] >= path.y as f32 - 6.0
            && b[2] <= (path.x + path.width) as f32 + 6.0
            && b[3] <= (path.y + path.height) as f32 + 6.0
    }

    #[test]
    fn a_still_scene_with_sensor_noise_never_moves_in_100_frames() {
        let base = scene(1);
        let mut rng = core::RNG::new(2).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        let mut max_area = 0.0f32;
        for i in 0..100 {
            let m = det.update(&noisy(&base, 0.0, 4.0, &mut rng)).unwrap();
            assert!(!m.moving, "frame {i}: noise reported as motion: {m:?}");
            max_area = max_area.max(m.area);
        }
        println!("sensor noise sigma 4: largest changed area {max_area}");
        assert_eq!(max_area, 0.0);
    }

    #[test]
    fn a_slow_lighting_drift_of_one_grey_level_a_frame_never_moves() {
        let base = scene(3);
        let mut rng = core::RNG::new(4).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for i in 0..60 {
            let m = det.update(&noisy(&base, i as f64, 3.0, &mut rng)).unwrap();
            assert!(
                !m.moving,
                "frame {i} (+{i} grey levels): drift reported as motion: {m:?}"
            );
        }
    }

    #[test]
    fn a_mover_is_seen_in_every_frame_while_the_light_drifts() {
        // Without brightness tracking the background would lag 1/alpha = 20 grey levels behind at
        // +1 a frame, 40 at +2: the whole frame "changed", and the detector blinded by restarts.
        let base = scene(3);
        let mut rng = core::RNG::new(4).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for i in 0..50 {
            let offset = 2.0 * i as f64 - 50.0;
            if i < 20 {
                let m = det.update(&noisy(&base, offset, 3.0, &mut rng)).unwrap();
                assert!(
                    !m.moving,
                    "frame {i} ({offset:+} grey levels): drift reported as motion: {m:?}"
                );
            } else {
                let r = Rect::new(300 + 5 * i, 200, 20, 50);
                let m = det
                    .update(&noisy(&with_rects(&base, &[r]), offset, 3.0, &mut rng))
                    .unwrap();
                assert!(m.moving, "frame {i} ({offset:+} grey levels): mover missed: {m:?}");
                assert!(m.area < 0.01, "frame {i}: area {}", m.area);
            }
        }
    }

    #[test]
    fn a_sudden_lighting_switch_is_not_motion_and_a_mover_is_seen_right_after() {
        let base = scene(5);
        let bright = noisy(&base, 60.0, 0.0, &mut core::RNG::new(0).unwrap());
        let mut rng = core::RNG::new(6).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for i in 0..10 {
            assert!(
                !det.update(&noisy(&base, 0.0, 3.0, &mut rng)).unwrap().moving,
                "frame {i}"
            );
        }
        for i in 0..5 {
            let m = det.update(&noisy(&bright, 0.0, 3.0, &mut rng)).unwrap();
            assert!(!m.moving, "{i} frames after the switch: {m:?}");
        }
        let mut seen = Vec::new();
        for i in 0..5 {
            let r = Rect::new(300 + 5 * i, 200, 20, 50);
            seen.push(
                det.update(&noisy(&with_rects(&bright, &[r]), 0.0, 3.0, &mut rng))
                    .unwrap()
                    .moving,
            );
        }
        assert_eq!(seen, [true; 5], "a rectangle appearing after the switch");
    }

    #[test]
    fn lights_coming_on_over_most_of_the_frame_restart_the_background_instead_of_moving() {
        let base = scene(7);
        let mut lit = base.try_clone().unwrap();
        let mut top = Mat::new_rows_cols_with_default(H, W, core::CV_8UC1, Scalar::all(0.0)).unwrap();
        imgproc::rectangle(
            &mut top,
            Rect::new(0, 0, W, H * 7 / 10),
            Scalar::all(255.0),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )
        .unwrap();
        core::add(&base, &Scalar::all(70.0), &mut lit, &top, -1).unwrap();
        let mut rng = core::RNG::new(8).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for _ in 0..10 {
            det.update(&noisy(&base, 0.0, 3.0, &mut rng)).unwrap();
        }
        let moving: Vec<bool> = (0..10)
            .map(|_| det.update(&noisy(&lit, 0.0, 3.0, &mut rng)).unwrap().moving)
            .collect();
        assert_eq!(moving, [false; 10]);
    }

    #[test]
    fn a_small_walking_rectangle_present_from_the_start_is_seen_from_the_second_frame() {
        let base = scene(9);
        let mut rng = core::RNG::new(10).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for i in 0..30 {
            let r = Rect::new(200 + 5 * i, 300, 20, 50);
            let m = det
                .update(&noisy(&with_rects(&base, &[r]), 0.0, 3.0, &mut rng))
                .unwrap();
            if i == 0 {
                assert!(!m.moving, "the first frame only sets the background");
                continue;
            }
            assert!(m.moving, "frame {}: {m:?}", i + 1);
            assert!(
                m.boxes.iter().any(|b| contains(b, r, 3.0)),
                "frame {}: no box around {r:?}: {m:?}",
                i + 1
            );
            // The background still remembers where it stood on the first frame: at most a second
            // box there, fading.
            assert!(m.boxes.len() <= 2, "frame {}: {m:?}", i + 1);
            assert!(m.area > 0.0 && m.area < 0.01, "frame {}: area {}", i + 1, m.area);
        }
    }

    #[test]
    fn a_mover_inside_a_motion_mask_is_not_motion_and_one_outside_still_is() {
        let base = scene(21);
        let mut rng = core::RNG::new(22).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        // The left half of the frame masked (a TV, a tree).
        det.set_mask(&[vec![[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]]);
        for _ in 0..5 {
            assert!(!det.update(&noisy(&base, 0.0, 3.0, &mut rng)).unwrap().moving);
        }
        for i in 0..10 {
            let r = Rect::new(100 + 5 * i, 300, 40, 80);
            let m = det.update(&noisy(&with_rects(&base, &[r]), 0.0, 3.0, &mut rng)).unwrap();
            assert!(!m.moving && m.area == 0.0, "frame {}: a mover in the mask: {m:?}", i + 1);
        }
        let r = Rect::new(600, 300, 40, 80);
        let m = det.update(&noisy(&with_rects(&base, &[r]), 0.0, 3.0, &mut rng)).unwrap();
        assert!(m.moving && m.boxes.iter().all(|b| b[0] >= W as f32 / 2.0 - 6.0), "outside the mask: {m:?}");
        // The mask removed: the left half moves again.
        det.set_mask(&[]);
        let r = Rect::new(150, 100, 40, 80);
        let m = det.update(&noisy(&with_rects(&base, &[r]), 0.0, 3.0, &mut rng)).unwrap();
        assert!(m.moving && m.boxes.iter().any(|b| contains(b, r, 3.0)), "unmasked: {m:?}");
    }

    #[test]
    fn a_small_rectangle_walking_into_a_known_scene_is_seen_at_once_inside_one_tight_box() {
        let base = scene(9);
        let mut rng = core::RNG::new(10).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for _ in 0..5 {
            assert!(!det.update(&noisy(&base, 0.0, 3.0, &mut rng)).unwrap().moving);
        }
        let mut longest_trail = 0.0f32;
        for i in 0..30 {
            let r = Rect::new(200 + 5 * i, 300, 20, 50);
            let m = det
                .update(&noisy(&with_rects(&base, &[r]), 0.0, 3.0, &mut rng))
                .unwrap();
            assert!(m.moving, "frame {} of the mover: {m:?}", i + 1);
            let around: Vec<&[f32; 4]> = m.boxes.iter().filter(|b| contains(b, r, 3.0)).collect();
            assert_eq!(around.len(), 1, "frame {}: boxes around {r:?}: {m:?}", i + 1);
            let b = *around[0];
            // Any other box is a fading patch of the trail, on the path already walked.
            let path = Rect::new(200, 300, 5 * i + 20, 50);
            assert!(
                m.boxes.iter().all(|o| on(o, path)),
                "frame {}: a box off the path: {m:?}",
                i + 1
            );
            // Tight: above, below and ahead within a few px; behind, the trail the background has
            // not yet forgotten.
            assert!(
                b[1] >= r.y as f32 - 6.0 && b[3] <= (r.y + r.height) as f32 + 6.0,
                "frame {}: {b:?}",
                i + 1
            );
            assert!(
                b[2] <= (r.x + r.width) as f32 + 6.0,
                "frame {}: {b:?} runs ahead of {r:?}",
                i + 1
            );
            longest_trail = longest_trail.max(r.x as f32 - b[0]);
            assert!(m.area > 0.0 && m.area < 0.01, "frame {}: area {}", i + 1, m.area);
        }
        println!("20x50 dark rectangle at 5 px/frame: trail behind it at most {longest_trail} px");
        assert!(longest_trail < 60.0, "trail {longest_trail} px");
    }

    #[test]
    fn a_low_contrast_mover_only_20_grey_levels_off_its_background_is_seen() {
        let mut rng = core::RNG::new(18).unwrap();
        let flat = Mat::new_rows_cols_with_default(H, W, core::CV_8UC3, Scalar::all(128.0)).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for _ in 0..5 {
            assert!(!det.update(&noisy(&flat, 0.0, 4.0, &mut rng)).unwrap().moving);
        }
        for i in 0..10 {
            let mut f = flat.try_clone().unwrap();
            let r = Rect::new(200 + 5 * i, 300, 20, 50);
            imgproc::rectangle(&mut f, r, Scalar::all(108.0), imgproc::FILLED, imgproc::LINE_8, 0).unwrap();
            let m = det.update(&noisy(&f, 0.0, 4.0, &mut rng)).unwrap();
            assert!(m.moving, "frame {} of the mover: {m:?}", i + 1);
            // Its faint edges blur below the threshold: the box may fall a little short of them.
            assert!(
                m.boxes.iter().any(|b| contains(b, r, 6.0)),
                "frame {}: no box around {r:?}: {m:?}",
                i + 1
            );
        }
    }

    #[test]
    fn two_separate_movers_give_two_boxes_in_full_frame_pixels() {
        let base = scene(11);
        let mut rng = core::RNG::new(12).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for _ in 0..5 {
            det.update(&noisy(&base, 0.0, 3.0, &mut rng)).unwrap();
        }
        for i in 0..20 {
            let rects = [Rect::new(100 + 5 * i, 100, 20, 50), Rect::new(600 - 4 * i, 420, 30, 60)];
            let m = det
                .update(&noisy(&with_rects(&base, &rects), 0.0, 3.0, &mut rng))
                .unwrap();
            assert!(m.moving);
            // One box around each mover (apart from, at times, a fading patch of its trail).
            for r in &rects {
                let around = m.boxes.iter().filter(|b| contains(b, *r, 3.0)).count();
                assert_eq!(around, 1, "frame {}: boxes around {r:?}: {m:?}", i + 1);
            }
            let paths = [
                Rect::new(100, 100, 5 * i + 20, 50),
                Rect::new(600 - 4 * i, 420, 4 * i + 30, 60),
            ];
            assert!(m.boxes.len() <= 4, "frame {}: {m:?}", i + 1);
            for b in &m.boxes {
                assert!(
                    paths.iter().any(|p| on(b, *p)),
                    "frame {}: box {b:?} lies off both movers' paths",
                    i + 1
                );
            }
            // Full-frame pixels: the lower mover's box is far below the small copy's 240 rows.
            assert!(m.boxes.iter().any(|b| b[3] > 470.0), "{m:?}");
            assert!(m
                .boxes
                .iter()
                .all(|b| b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= W as f32 && b[3] <= H as f32));
        }
    }

    #[test]
    fn something_that_stops_is_taken_into_the_background_within_seconds() {
        let base = scene(19);
        let mut rng = core::RNG::new(20).unwrap();
        let mut det = MotionDetector::new(MotionSettings::default());
        for _ in 0..5 {
            det.update(&noisy(&base, 0.0, 3.0, &mut rng)).unwrap();
        }
        let parked = with_rects(&base, &[Rect::new(300, 300, 60, 40)]);
        let moving: Vec<bool> = (0..80)
            .map(|_| det.update(&noisy(&parked, 0.0, 3.0, &mut rng)).unwrap().moving)
            .collect();
        let last = moving.iter().rposition(|m| *m).map_or(0, |i| i + 1);
        println!("a parked dark box stays \"moving\" for {last} frames (background_alpha 0.05)");
        assert!(moving[..10].iter().all(|m| *m), "{moving:?}");
        assert!(last < 60, "still moving after {last} frames: {moving:?}");
        assert!(moving[last..].iter().all(|m| !m));
    }

    #[test]
    fn a_disabled_detector_calls_every_frame_moving() {
        let mut det = MotionDetector::new(MotionSettings {
            enabled: false,
            ..Default::default()
        });
        let frame = scene(13);
        for _ in 0..3 {
            let m = det.update(&frame).unwrap();
            assert!(m.moving);
            assert_eq!(m.boxes, vec![[0.0, 0.0, W as f32, H as f32]]);
        }
        det.set_settings(MotionSettings::default());
        assert!(
            !det.update(&frame).unwrap().moving,
            "re-enabled: the first frame only sets the background"
        );
        assert!(!det.update(&frame).unwrap().moving);
    }

    #[test]
    fn a_detector_can_move_into_a_camera_thread() {
        fn send<T: Send + 'static>(_: &T) {}
        send(&MotionDetector::new(MotionSettings::default()));
    }

    #[test]
    fn odd_frames_give_no_motion_or_an_error_never_a_panic() {
        let mut det = MotionDetector::new(MotionSettings::default());
        assert_eq!(det.update(&Mat::default()).unwrap(), Motion::default());
        for (rows, cols, typ) in [
            (1, 1, core::CV_8UC3),
            (1, 1, core::CV_8UC1),
            (3, 2, core::CV_8UC4),
            (1, 2000, core::CV_8UC3),
            (2000, 1, core::CV_8UC3),
        ] {
            let a = Mat::new_rows_cols_with_default(rows, cols, typ, Scalar::all(10.0)).unwrap();
            let b = Mat::new_rows_cols_with_default(rows, cols, typ, Scalar::all(200.0)).unwrap();
            for f in [&a, &a, &b, &a] {
                let m = det.update(f).unwrap();
                assert!(
                    m.boxes.iter().all(|b| b[2] <= cols as f32 && b[3] <= rows as f32),
                    "{rows}x{cols}: {m:?}"
                );
            }
        }
        let float = Mat::new_rows_cols_with_default(10, 10, core::CV_32FC3, Scalar::all(0.5)).unwrap();
        assert!(det.update(&float).is_err());
        let two = Mat::new_rows_cols_with_default(10, 10, core::CV_8UC2, Scalar::all(0.0)).unwrap();
        assert!(det.update(&two).is_err());
    }

    #[test]
    fn a_frame_size_change_restarts_the_background() {
        let mut det = MotionDetector::new(MotionSettings::default());
        let big = scene(14);
        det.update(&big).unwrap();
        det.update(&big).unwrap();
        let mut small = Mat::default();
        imgproc::resize(&big, &mut small, Size::new(640, 480), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
        let r = Rect::new(100, 100, 40, 80);
        assert!(
            !det.update(&with_rects(&small, &[r])).unwrap().moving,
            "new size: only sets the background"
        );
        assert!(!det.update(&with_rects(&small, &[r])).unwrap().moving);
    }

    #[test]
    fn boxes_merge_when_they_nearly_touch_and_are_capped() {
        let mut b = vec![[0, 0, 10, 10], [11, 0, 20, 10], [50, 50, 60, 60]];
        merge_boxes(&mut b, 2, 16);
        assert_eq!(b, vec![[0, 0, 20, 10], [50, 50, 60, 60]]);
        let mut many: Vec<[i32; 4]> = (0..40).map(|i| [i * 10, 0, i * 10 + 4, 4]).collect();
        merge_boxes(&mut many, 2, 16);
        assert_eq!(many.len(), 16);
        let all = many.iter().fold(many[0], |a, b| union(&a, b));
        assert_eq!(all, [0, 0, 394, 4], "every box still covered");
        let mut flood: Vec<[i32; 4]> = (0..100).map(|i| [i * 10, 0, i * 10 + 4, 4]).collect();
        merge_boxes(&mut flood, 2, 16);
        assert_eq!(flood, vec![[0, 0, 994, 4]]);
    }

    #[test]
    fn brightness_shift_is_the_median_difference() {
        let mut hist = vec![0; 511];
        let bg = vec![100.0f32; 10_000];
        let mut cur = vec![130u8; 10_000];
        cur[..4000].iter_mut().for_each(|c| *c = 10); // something dark over 40 %
        assert_eq!(brightness_shift(&cur, &bg, &mut hist), 30);
        assert_eq!(brightness_shift(&[], &[], &mut hist), 0);
    }

    #[test]
    fn settings_are_optional_in_config_and_unknown_ones_rejected() {
        let s: MotionSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, MotionSettings::default());
        let s: MotionSettings = serde_json::from_str(r#"{"threshold": 30}"#).unwrap();
        assert_eq!(s.threshold, 30);
        assert_eq!(s.width, 320);
        assert!(serde_json::from_str::<MotionSettings>(r#"{"treshold": 30}"#).is_err());
        MotionSettings::default().validate().unwrap();
    }

    #[test]
    fn validate_rejects_out_of_range_settings_and_names_the_field() {
        let d = MotionSettings::default();
        let cases = [
            (MotionSettings { width: 0, ..d }, "motion.width"),
            (MotionSettings { width: 1921, ..d }, "motion.width"),
            (MotionSettings { blur: 4, ..d }, "motion.blur"),
            (MotionSettings { min_area: -0.1, ..d }, "motion.min_area"),
            (MotionSettings { min_area: 1.5, ..d }, "motion.min_area"),
            (
                MotionSettings {
                    min_area: f32::NAN,
                    ..d
                },
                "motion.min_area",
            ),
            (
                MotionSettings {
                    background_alpha: 0.0,
                    ..d
                },
                "motion.background_alpha",
            ),
            (
                MotionSettings {
                    background_alpha: 1.01,
                    ..d
                },
                "motion.background_alpha",
            ),
            (MotionSettings { threshold: 0, ..d }, "motion.threshold"),
            (
                MotionSettings {
                    lighting_change: 0.0,
                    ..d
                },
                "motion.lighting_change",
            ),
        ];
        for (s, field) in cases {
            let e = s.validate().map_err(|e| e.within("motion").to_string()).expect_err(field);
            assert!(e.contains(field), "{e:?} should name {field}");
            assert!(
                e.contains("range") || e.contains("must"),
                "{e:?} should give the allowed range"
            );
        }
        for ok in [
            MotionSettings { width: 16, ..d },
            MotionSettings { width: 1920, ..d },
            MotionSettings { blur: 0, ..d },
            MotionSettings { blur: 1, ..d },
            MotionSettings { blur: 7, ..d },
            MotionSettings { min_area: 0.0, ..d },
            MotionSettings {
                background_alpha: 1.0,
                ..d
            },
        ] {
            ok.validate().unwrap();
        }
    }

    fn footage() -> Option<&'static Path> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/1.mp4");
        if p.exists() {
            Some(Box::leak(p.into_boxed_path()))
        } else {
            println!("skipped: {} is missing (scripts/setup.sh makes it)", p.display());
            None
        }
    }

    fn read_frames(path: &Path, n: usize) -> Vec<Mat> {
        let mut cap = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_ANY).unwrap();
        assert!(cap.is_opened().unwrap(), "cannot open {}", path.display());
        let mut frames = Vec::new();
        while frames.len() < n {
            let mut f = Mat::default();
            if !cap.read(&mut f).unwrap() || f.empty() {
                break;
            }
            frames.push(f);
        }
        frames
    }

    #[test]
    fn pedestrians_in_real_footage_are_seen_moving() {
        let Some(path) = footage() else { return };
        let frames = read_frames(path, 40);
        assert_eq!(frames.len(), 40);
        let mut det = MotionDetector::new(MotionSettings::default());
        let motions: Vec<Motion> = frames.iter().map(|f| det.update(f).unwrap()).collect();
        let moving = motions[3..].iter().filter(|m| m.moving).count();
        let areas: Vec<f32> = motions.iter().map(|m| (m.area * 1e4).round() / 1e4).collect();
        let boxes: Vec<usize> = motions.iter().map(|m| m.boxes.len()).collect();
        println!(
            "data/1.mp4: {moving}/{} moving after frame 3; areas {areas:?}; boxes {boxes:?}",
            motions.len() - 3
        );
        println!("frame 20: {:?}", motions[20]);
        assert!(
            moving * 10 >= (motions.len() - 3) * 9,
            "only {moving} of {} frames moving",
            motions.len() - 3
        );
    }

    #[test]
    fn a_still_h264_video_shows_no_motion_at_all() {
        let Some(path) = footage() else { return };
        let still = read_frames(path, 1).remove(0);
        let out = std::env::temp_dir().join(format!("haven-motion-still-{}.mp4", std::process::id()));
        let out_s = out.to_str().unwrap();
        let size = Size::new(still.cols(), still.rows());
        let mut writer = None;
        for tag in [['a', 'v', 'c', '1'], ['m', 'p', '4', 'v']] {
            let fourcc = videoio::VideoWriter::fourcc(tag[0], tag[1], tag[2], tag[3]).unwrap();
            if let Ok(w) = videoio::VideoWriter::new(out_s, fourcc, 10.0, size, true) {
                if w.is_opened().unwrap_or(false) {
                    println!("writing with {}", tag.iter().collect::<String>());
                    writer = Some(w);
                    break;
                }
            }
        }
        let Some(mut writer) = writer else {
            println!("skipped: no H.264 or MPEG-4 writer in this OpenCV build");
            return;
        };
        // A still camera: the same frame with light sensor noise, so the encoder has something to
        // flicker on.
        let mut rng = core::RNG::new(15).unwrap();
        for _ in 0..30 {
            writer.write(&noisy(&still, 0.0, 2.0, &mut rng)).unwrap();
        }
        writer.release().unwrap();
        let frames = read_frames(&out, 30);
        let _ = std::fs::remove_file(&out);
        assert!(frames.len() >= 25, "read back {} frames", frames.len());
        let mut det = MotionDetector::new(MotionSettings::default());
        let mut max_area = 0.0f32;
        for (i, f) in frames.iter().enumerate() {
            let m = det.update(f).unwrap();
            assert!(!m.moving, "frame {i}: compression flicker reported as motion: {m:?}");
            max_area = max_area.max(m.area);
        }
        println!("still video: largest changed area {max_area}");
    }

    #[test]
    #[ignore = "timing report; run with --ignored --nocapture"]
    fn cost_per_768x576_frame() {
        let base = scene(16);
        let mut rng = core::RNG::new(17).unwrap();
        let frames: Vec<Mat> = (0..20)
            .map(|i| {
                noisy(
                    &with_rects(&base, &[Rect::new(200 + 5 * i, 300, 20, 50)]),
                    0.0,
                    3.0,
                    &mut rng,
                )
            })
            .collect();
        let threads = core::get_num_threads().unwrap();
        for n in [threads, 1] {
            core::set_num_threads(n).unwrap();
            let mut det = MotionDetector::new(MotionSettings::default());
            let mut times = Vec::new();
            for i in 0..400 {
                let started = Instant::now();
                det.update(&frames[i % frames.len()]).unwrap();
                times.push(started.elapsed().as_secs_f64() * 1e6);
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "motion update on 768x576, {n} OpenCV thread(s): median {:.0} µs, p90 {:.0} µs",
                times[times.len() / 2],
                times[times.len() * 9 / 10],
            );
        }
        core::set_num_threads(threads).unwrap();
    }
}
