//! `GET /api/overlay`: how poses and objects are drawn, so that a browser drawing them itself
//! (`?overlay=client`) draws them as the server does, from the server's own constants.

use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::inference::draw::{limb_rgb, KEYPOINT_MIN_CONF, KEYPOINT_RGB, PALETTE, PERSON_RGB};

/// `#RRGGBB`, as a canvas takes it.
fn css(rgb: u32) -> String {
    format!("#{rgb:06X}")
}

/// The skeleton, its limbs' colours, the keypoints' and classes' colours, and the confidence below
/// which a keypoint is neither drawn nor joined.
pub fn style() -> Value {
    json!({
        "skeleton": haven_pose::SKELETON.iter().map(|&(a, b)| [a, b]).collect::<Vec<_>>(),
        "limb_colors": haven_pose::SKELETON.iter().map(|&(a, b)| css(limb_rgb(a, b))).collect::<Vec<_>>(),
        "keypoint_color": css(KEYPOINT_RGB),
        "keypoint_min_conf": KEYPOINT_MIN_CONF,
        "person_color": css(PERSON_RGB),
        "class_colors": PALETTE.iter().map(|&c| css(c)).collect::<Vec<_>>(),
    })
}

pub async fn get() -> HttpResponse {
    HttpResponse::Ok().json(style())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_gets_one_colour_per_limb_and_the_palette_as_css() {
        let s = style();
        assert_eq!(s["skeleton"].as_array().unwrap().len(), s["limb_colors"].as_array().unwrap().len());
        assert_eq!(s["skeleton"][0], json!([15, 13]));
        assert_eq!(s["limb_colors"][0], "#C800FF", "legs are violet");
        assert_eq!(s["limb_colors"][12], "#00C8FF", "eyes (1, 2) are the head's light blue");
        assert_eq!(s["class_colors"][0], "#FF3838");
        assert_eq!(s["person_color"], "#00FF00");
        assert_eq!(s["keypoint_color"], "#FF0000");
        assert_eq!(s["keypoint_min_conf"], 0.5);
    }
}
