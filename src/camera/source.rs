//! A camera's frame source as the worker sees it (open, read, skip, rewind, what it is), and the
//! one real implementation: OpenCV's `VideoCapture` over FFmpeg.

use std::path::Path;

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

use crate::redact::redact_in;
use crate::camera::config::{CameraConfig, CaptureSettings, SourceType};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source file not found: {0}")]
    NotFound(String),
    #[error("cannot open {0}: not a readable video (corrupt file, unsupported codec or unreachable camera)")]
    Open(String),
    #[error("{source_name}: no frame could be decoded")]
    NoFrames { source_name: String },
    /// A live stream has no end to loop from: reaching it means the camera went away.
    #[error("{source_name}: stream ended")]
    StreamEnded { source_name: String },
    #[error("{source_name}: no frame for {seconds} s")]
    Stalled { source_name: String, seconds: f64 },
    #[error("{0} changed on disk while open (truncated, replaced or rewritten): reopening it")]
    Changed(String),
    #[error("{0}")]
    OpenCv(String),
}

impl SourceError {
    pub fn stream_ended(source_name: &str) -> Self {
        Self::StreamEnded { source_name: source_name.to_string() }
    }

    pub fn stalled(source_name: &str, seconds: f64) -> Self {
        Self::Stalled { source_name: source_name.to_string(), seconds }
    }

    pub fn no_frames(source_name: &str) -> Self {
        Self::NoFrames { source_name: source_name.to_string() }
    }
}

/// What an opened source is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceInfo {
    pub width: i32,
    pub height: i32,
    /// The source's own rate; for files the pace at which frames are delivered.
    pub fps: f64,
}

/// An opened source of frames. Reads block until a frame is decoded or the source gives up (a live
/// camera's read timeout bounds that).
pub trait FrameSource: Send {
    fn info(&self) -> SourceInfo;
    /// The source as logs and errors may show it (credentials redacted).
    fn name(&self) -> &str;
    /// Decodes the next frame into `frame`; `false` at the end of the stream.
    fn read(&mut self, frame: &mut Mat) -> Result<bool, SourceError>;
    /// Advances one frame without converting it (a frame skipped to keep up).
    fn skip(&mut self) -> Result<bool, SourceError>;
    /// Goes back to the first frame of a file.
    fn rewind(&mut self) -> Result<bool, SourceError>;
    /// For a file: why it must be reopened rather than rewound, if it is no longer the file that was opened.
    fn changed_on_disk(&self) -> Option<SourceError> {
        None
    }
}

/// Opens a camera's source; the worker calls it again for every retry and reconnect.
pub trait Opener: Send + Sync {
    fn open(&self, config: &CameraConfig, capture: &CaptureSettings) -> Result<Box<dyn FrameSource>, SourceError>;
}

/// The production opener: files and RTSP through OpenCV's FFmpeg back-end.
pub struct OpenCvOpener;

impl Opener for OpenCvOpener {
    fn open(&self, config: &CameraConfig, capture: &CaptureSettings) -> Result<Box<dyn FrameSource>, SourceError> {
        Ok(Box::new(VideoSource::open(config, capture)?))
    }
}

pub struct VideoSource {
    cap: VideoCapture,
    display: String,
    raw: String,
    info: SourceInfo,
    /// A file's length and modification time when it was opened.
    stamp: Option<(u64, Option<std::time::SystemTime>)>,
}

impl VideoSource {
    pub fn open(config: &CameraConfig, capture: &CaptureSettings) -> Result<Self, SourceError> {
        let display = config.display_source();
        let err = |e: opencv::Error| SourceError::OpenCv(redact_in(&e.to_string(), &config.source));
        let cap = match config.source_type {
            SourceType::VideoFile => {
                if !Path::new(&config.source).is_file() {
                    return Err(SourceError::NotFound(display));
                }
                VideoCapture::from_file(&config.source, videoio::CAP_FFMPEG).map_err(err)?
            }
            SourceType::Rtsp => {
                let ms = |secs: f64| (secs * 1000.0).round() as i32;
                let params = Vector::<i32>::from_slice(&[
                    videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
                    ms(capture.open_timeout_secs),
                    videoio::CAP_PROP_READ_TIMEOUT_MSEC,
                    ms(capture.read_timeout_secs),
                ]);
                VideoCapture::from_file_with_params(&config.source, videoio::CAP_FFMPEG, &params).map_err(err)?
            }
        };
        if !cap.is_opened().map_err(err)? {
            return Err(SourceError::Open(display));
        }
        let width = cap.get(videoio::CAP_PROP_FRAME_WIDTH).map_err(err)? as i32;
        let height = cap.get(videoio::CAP_PROP_FRAME_HEIGHT).map_err(err)? as i32;
        let reported = cap.get(videoio::CAP_PROP_FPS).map_err(err)?;
        let fps = if reported.is_finite() && (1.0..=240.0).contains(&reported) { reported } else { 25.0 };
        let stamp = match config.source_type {
            SourceType::VideoFile => std::fs::metadata(&config.source).ok().map(|m| (m.len(), m.modified().ok())),
            SourceType::Rtsp => None,
        };
        Ok(Self { cap, display, raw: config.source.clone(), info: SourceInfo { width, height, fps }, stamp })
    }

    fn err(&self, e: opencv::Error) -> SourceError {
        SourceError::OpenCv(format!("{}: {}", self.display, redact_in(&e.to_string(), &self.raw)))
    }
}

impl FrameSource for VideoSource {
    fn info(&self) -> SourceInfo {
        self.info
    }

    fn name(&self) -> &str {
        &self.display
    }

    fn read(&mut self, frame: &mut Mat) -> Result<bool, SourceError> {
        let ok = self.cap.read(frame).map_err(|e| self.err(e))?;
        Ok(ok && !frame.empty())
    }

    fn skip(&mut self) -> Result<bool, SourceError> {
        self.cap.grab().map_err(|e| self.err(e))
    }

    fn rewind(&mut self) -> Result<bool, SourceError> {
        self.cap.set(videoio::CAP_PROP_POS_FRAMES, 0.0).map_err(|e| self.err(e))
    }

    /// FFmpeg keeps the index and a buffer of the file it opened, so a file truncated under it
    /// "plays" the few frames still buffered, pass after pass, as if it were whole; a deleted one plays
    /// on from the open descriptor.
    fn changed_on_disk(&self) -> Option<SourceError> {
        let (len, modified) = self.stamp?;
        match std::fs::metadata(&self.raw) {
            Err(_) => Some(SourceError::NotFound(self.display.clone())),
            Ok(m) if m.len() != len || m.modified().ok() != modified => Some(SourceError::Changed(self.display.clone())),
            Ok(_) => None,
        }
    }
}
