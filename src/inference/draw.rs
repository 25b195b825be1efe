//! Draws what the engine found onto the frame that viewers see.

use opencv::core::{Mat, Point, Rect, Scalar};
use opencv::imgproc;
use opencv::prelude::*;

use haven_pose::SKELETON;

use super::Detection;

/// Keypoints below this confidence are neither drawn nor joined.
pub const KEYPOINT_MIN_CONF: f32 = 0.5;

/// A person's box and label (RGB), green as they always were.
pub const PERSON_RGB: u32 = 0x00FF00;
/// The dots on a person's confident keypoints (RGB).
pub const KEYPOINT_RGB: u32 = 0xFF0000;

/// OpenCV's colour (BGR) of an RGB `0xRRGGBB`.
fn bgr(rgb: u32) -> Scalar {
    Scalar::new((rgb & 0xFF) as f64, ((rgb >> 8) & 0xFF) as f64, (rgb >> 16) as f64, 0.0)
}

/// The colour (RGB) of the limb between keypoints `a` and `b`, by body part: the same in the
/// browser, which reads it from `GET /api/overlay`.
pub fn limb_rgb(a: usize, b: usize) -> u32 {
    match (a.min(b), a.max(b)) {
        (x, _) if x <= 4 => 0x00C8FF,  // head: light blue
        (_, y) if y <= 10 => 0xFFC800, // arms: orange
        _ => 0xC800FF,                 // torso and legs: violet
    }
}

/// The detections in a frame scaled by `factor` (a smaller rendition's coordinates).
pub fn scaled(detections: &[Detection], factor: f32) -> Vec<Detection> {
    detections
        .iter()
        .map(|d| Detection {
            bbox: d.bbox.map(|v| v * factor),
            keypoints: d.keypoints.iter().map(|&[x, y, c]| [x * factor, y * factor, c]).collect(),
            ..d.clone()
        })
        .collect()
}

/// Ultralytics' palette (RGB): an object's box and label take the colour of its class id, the same
/// for every frame, camera and viewer (the browser reads it from `GET /api/overlay`).
pub const PALETTE: [u32; 20] = [
    0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231, 0x48F90A, 0x92CC17, 0x3DDB86, 0x1A9334, 0x00D4BB,
    0x2C99A8, 0x00C2FF, 0x344593, 0x6473FF, 0x0018EC, 0x8438FF, 0x520085, 0xCB38FF, 0xFF95C8, 0xFF37C7,
];

/// The colour of objects of class `class_id` (BGR).
pub fn class_color(class_id: usize) -> Scalar {
    bgr(PALETTE[class_id % PALETTE.len()])
}

/// Draws boxes and labels ("person 0.87", "car 0.64"), and for people the skeleton and confident
/// keypoints, in place. People (detections with keypoints) are green as they always were; objects
/// take their class's colour.
pub fn annotate(frame: &mut Mat, detections: &[Detection]) -> opencv::Result<()> {
    let thickness = ((frame.cols().max(frame.rows()) as f32) / 400.0).ceil().max(1.0) as i32;
    for det in detections {
        let [x1, y1, x2, y2] = det.bbox;
        let rect = Rect::new(x1 as i32, y1 as i32, (x2 - x1).max(1.0) as i32, (y2 - y1).max(1.0) as i32);
        let color = if det.keypoints.is_empty() { class_color(super::class_id(det)) } else { bgr(PERSON_RGB) };
        imgproc::rectangle(frame, rect, color, thickness, imgproc::LINE_8, 0)?;
        imgproc::put_text(
            frame,
            &format!("{} {:.2}", &*det.class, det.score),
            Point::new(rect.x, (rect.y - 4).max(10)),
            imgproc::FONT_HERSHEY_SIMPLEX,
            0.4 * thickness as f64,
            color,
            thickness.max(1),
            imgproc::LINE_AA,
            false,
        )?;
        let kp = &det.keypoints;
        let point = |i: usize| Point::new(kp[i][0].round() as i32, kp[i][1].round() as i32);
        let visible = |i: usize| i < kp.len() && kp[i][2] >= KEYPOINT_MIN_CONF;
        for &(a, b) in SKELETON.iter() {
            if visible(a) && visible(b) {
                imgproc::line(frame, point(a), point(b), bgr(limb_rgb(a, b)), thickness, imgproc::LINE_AA, 0)?;
            }
        }
        for i in (0..kp.len()).filter(|&i| visible(i)) {
            imgproc::circle(frame, point(i), thickness + 2, bgr(KEYPOINT_RGB), -1, imgproc::LINE_AA, 0)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Vec3b, CV_8UC3};

    #[test]
    fn objects_take_their_class_colour_and_people_stay_green() {
        let mut frame = Mat::new_rows_cols_with_default(200, 200, CV_8UC3, Scalar::all(90.0)).unwrap();
        let car = Detection { class_id: 2, class: "car".into(), score: 0.7, bbox: [20.0, 20.0, 120.0, 120.0], keypoints: Vec::new() };
        let person = Detection::person(0.9, [140.0, 20.0, 190.0, 180.0], vec![[0.0, 0.0, 0.0]; 17]);
        annotate(&mut frame, &[car, person]).unwrap();
        let px = |x: i32, y: i32| *frame.at_2d::<Vec3b>(y, x).unwrap();
        let c = class_color(2);
        assert_eq!(px(20, 70), Vec3b::from([c[0] as u8, c[1] as u8, c[2] as u8]), "the car's box is the class's colour");
        assert_eq!(px(140, 100), Vec3b::from([0, 255, 0]), "a person's box is green");
        assert_ne!(class_color(2), class_color(3));
        assert_eq!(class_color(2), class_color(2 + PALETTE.len()), "stable per class id");
    }
}
