//! Frame-sized buffers shared by every camera's encoder and the models' copies of frames: taken for
//! one use and given back, so that a copy reuses memory already mapped instead of a fresh block
//! (mapped and faulted in anew each time: blocks over 256 KiB are mapped on their own, see
//! `memory`). Few are kept, whatever the number of cameras: as many as are in use at once, up to
//! [`MAX_SPARE`].

use std::sync::Mutex;

use opencv::core::Mat;
use opencv::prelude::*;

/// Spare buffers kept: giving back one more frees the one given back longest ago.
pub const MAX_SPARE: usize = 3;

static SPARE: Mutex<Vec<Mat>> = Mutex::new(Vec::new());

/// A copy of `frame` in a spare buffer (one of its size where there is one).
pub fn copy_of(frame: &Mat) -> opencv::Result<Mat> {
    let mut copy = take(frame.cols(), frame.rows(), frame.typ());
    frame.copy_to(&mut copy)?;
    Ok(copy)
}

/// A spare buffer of this size and type (its contents unspecified), or an empty `Mat` when none is
/// spare: for a caller that writes it whole.
pub fn take(cols: i32, rows: i32, typ: i32) -> Mat {
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    let same = spare.iter().position(|m| (m.cols(), m.rows(), m.typ()) == (cols, rows, typ));
    same.map(|i| spare.remove(i)).unwrap_or_default()
}

/// Gives a buffer back once nothing refers to its pixels any more; the longest spare goes when
/// [`MAX_SPARE`] are.
pub fn give_back(frame: Mat) {
    if frame.empty() {
        return;
    }
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() == MAX_SPARE {
        spare.remove(0);
    }
    spare.push(frame);
}

#[cfg(test)]
mod tests {
    use opencv::core::{Scalar, CV_8UC3};

    use super::*;

    /// A copy is the frame's pixels, in the buffer given back before it when the size matches.
    #[test]
    fn a_copy_reuses_a_buffer_given_back() {
        let a = Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::all(7.0)).unwrap();
        let copy = copy_of(&a).unwrap();
        assert_eq!(copy.data_bytes().unwrap(), a.data_bytes().unwrap());
        let at = copy.data();
        give_back(copy);
        let b = Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::all(9.0)).unwrap();
        let again = copy_of(&b).unwrap();
        // other tests may take it meanwhile; when it comes back it holds b's pixels
        if again.data() == at {
            assert!(again.data_bytes().unwrap().iter().all(|&v| v == 9));
        }
        assert_eq!(again.data_bytes().unwrap(), b.data_bytes().unwrap());
    }
}
