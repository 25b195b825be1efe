//! Why one frame could not be processed: typed, with its source, down to OpenCV. The camera logs it,
//! shows it in its status and goes on with the next frame.

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Resizing, motion, drawing or JPEG encoding failed.
    #[error(transparent)]
    OpenCv(#[from] opencv::Error),
}
