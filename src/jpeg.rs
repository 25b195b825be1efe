//! JPEG encoding: the one place a frame becomes JPEG bytes (viewers' packets, event snapshots and
//! the frames clips are made of).

use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;

/// `frame` (BGR) as JPEG at `quality` (1-100).
pub fn encode(frame: &Mat, quality: u8) -> opencv::Result<Vec<u8>> {
    let mut buf = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]);
    imgcodecs::imencode(".jpg", frame, &mut buf, &params)?;
    Ok(buf.to_vec())
}

#[cfg(test)]
mod tests {
    use opencv::core::{Scalar, CV_8UC3};
    use opencv::prelude::*;

    #[test]
    fn a_frame_becomes_a_jpeg_smaller_at_lower_quality() {
        let frame = Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::new(10.0, 120.0, 240.0, 0.0)).unwrap();
        let high = super::encode(&frame, 95).unwrap();
        let low = super::encode(&frame, 5).unwrap();
        assert!(high.starts_with(&[0xff, 0xd8]) && low.starts_with(&[0xff, 0xd8]));
        assert!(low.len() < high.len(), "{} vs {}", low.len(), high.len());
    }
}
