//! Live sources (RTSP): a reader thread drains the camera continuously and keeps only the newest
//! frame, so the delay from camera to viewer never grows however slow processing is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use opencv::core::Mat;

use super::source::{FrameSource, SourceError};
use super::status::CameraStatus;

#[derive(Default)]
struct Slot {
    frame: Option<Mat>,
    /// Frames read since the source opened; the index of `frame`.
    index: u64,
    /// Why the reader stopped, once it has.
    failed: Option<SourceError>,
    /// A frame the camera has finished with, for the reader to decode into: the same buffer again
    /// instead of a fresh one mapped and faulted in for every frame.
    spare: Option<Mat>,
}

struct Shared {
    slot: Mutex<Slot>,
    ready: Condvar,
    stop: AtomicBool,
}

/// The newest frame of a live source. Dropping it stops the reader thread, which releases the
/// capture as soon as its current read returns (bounded by the read timeout).
pub struct LatestFrame {
    shared: Arc<Shared>,
}

impl LatestFrame {
    pub fn spawn(mut source: Box<dyn FrameSource>, status: Arc<CameraStatus>, name: String) -> Self {
        let shared = Arc::new(Shared { slot: Mutex::default(), ready: Condvar::new(), stop: AtomicBool::new(false) });
        let reader = shared.clone();
        let spawned = std::thread::Builder::new().name(format!("{name}-reader")).spawn(move || {
            let mut frame = Mat::default();
            while !reader.stop.load(Ordering::Relaxed) {
                let outcome = source.read(&mut frame);
                let mut slot = reader.slot.lock().unwrap();
                match outcome {
                    Ok(true) => {
                        status.frames_decoded.fetch_add(1, Ordering::Relaxed);
                        let unread = slot.frame.replace(std::mem::take(&mut frame));
                        if unread.is_some() {
                            // The previous frame was never processed: it is dropped, not queued.
                            status.dropped_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        // the next frame is decoded into the dropped one's buffer, or a spare
                        frame = unread.or_else(|| slot.spare.take()).unwrap_or_default();
                        slot.index += 1;
                    }
                    Ok(false) => slot.failed = Some(SourceError::stream_ended(source.name())),
                    Err(e) => slot.failed = Some(e),
                }
                let failed = slot.failed.is_some();
                drop(slot);
                reader.ready.notify_one();
                if failed {
                    break;
                }
            }
        });
        if let Err(e) = spawned {
            shared.slot.lock().unwrap().failed = Some(SourceError::OpenCv(format!("cannot start reader thread: {e}")));
        }
        LatestFrame { shared }
    }

    /// The newest frame not yet taken and its index, waiting at most `timeout`; `Ok(None)` if none came.
    pub fn next(&self, timeout: Duration) -> Result<Option<(Mat, u64)>, SourceError> {
        let slot = self.shared.slot.lock().unwrap();
        let (mut slot, _) = self
            .shared
            .ready
            .wait_timeout_while(slot, timeout, |s| s.frame.is_none() && s.failed.is_none())
            .unwrap();
        if let Some(frame) = slot.frame.take() {
            return Ok(Some((frame, slot.index)));
        }
        match slot.failed.take() {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Gives back a frame taken with [`LatestFrame::next`] once nothing refers to its pixels any
    /// more (as a file camera reads its next frame into the same buffer), for the reader to reuse.
    pub fn recycle(&self, frame: Mat) {
        self.shared.slot.lock().unwrap().spare = Some(frame);
    }
}

impl Drop for LatestFrame {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
