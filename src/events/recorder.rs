//! Clips around events: the camera thread hands every frame (as JPEG) to a writer thread, which keeps
//! the last seconds in a ring for pre-roll and writes each clip's frames to an MP4 with OpenCV's
//! `VideoWriter`. The camera thread never waits on the writer: frames go through a bounded queue and
//! are dropped (and counted) when it is full.
//!
//! A clip covers `[event start - pre_roll, event end + post_roll]`, one video frame per processed
//! camera frame, at the camera's measured rate. It is written to `NAME.part.mp4` and renamed to
//! `NAME.mp4` once complete, so a complete name always means a playable file: before the rename the
//! file is opened and its first frame decoded, since OpenCV's writer does not report failed writes
//! (a full disk leaves an MP4 without its index, which nothing can play).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use opencv::core::{Mat, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc, videoio};

/// JPEG quality of frames the recorder encodes itself (when the caller has no JPEG at hand).
pub const JPEG_QUALITY: u8 = 80;
/// Frames (and commands) waiting for the writer.
const QUEUE: usize = 256;

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub pre_roll_secs: f64,
    pub post_roll_secs: f64,
    /// How much the ring keeps: the pre-roll plus the longest delay between an event's start and
    /// the moment it is known (a fall is raised `min_duration_secs` after the person went down).
    pub ring_secs: f64,
    /// Upper bound on the ring's memory.
    pub ring_max_bytes: usize,
    /// A clip ends at most this long after its event started, even if the event goes on.
    pub max_clip_secs: f64,
    /// How late an event's end may be learnt (a track ends `max_unseen_secs` after it was last
    /// seen): frames reach the clips this much behind the camera, so that the post-roll is exact.
    pub end_delay_secs: f64,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self { pre_roll_secs: 3.0, post_roll_secs: 3.0, ring_secs: 10.0, ring_max_bytes: 64 << 20, max_clip_secs: 60.0, end_delay_secs: 2.5 }
    }
}

/// A complete clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipDone {
    pub path: PathBuf,
    pub frames: u32,
    pub fps: f32,
    /// Time of the first frame.
    pub started_at: f64,
    pub bytes: u64,
    /// The FourCC it was written with ("avc1" or "mp4v").
    pub codec: &'static str,
}

pub type ClipCallback = Box<dyn FnOnce(Result<ClipDone, String>) + Send>;
pub type SnapshotCallback = Box<dyn FnOnce(Result<u64, String>) + Send>;

enum Command {
    Frame { t: f64, jpeg: Arc<[u8]> },
    Open { key: i64, path: PathBuf, from: f64, cap: f64, done: ClipCallback },
    Close { key: i64, until: f64 },
    Snapshot { path: PathBuf, jpeg: Arc<[u8]>, done: SnapshotCallback },
    Finish,
}

/// The camera thread's side.
pub struct Recorder {
    config: RecorderConfig,
    tx: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
    /// Commands the full queue could not take yet; frames are dropped rather than kept here.
    pending: VecDeque<Command>,
    /// Clips open, with the time their last frame is due (as far as the camera side knows).
    open: HashMap<i64, f64>,
    last_t: f64,
    dropped: u64,
    label: String,
}

impl Recorder {
    /// Starts the writer thread (named after `label`, the camera).
    pub fn new(label: &str, config: RecorderConfig) -> Self {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer::new(label.to_string(), config.clone());
        let thread = std::thread::Builder::new()
            .name(format!("clips-{label}"))
            .spawn(move || writer.run(rx))
            .expect("spawn the clip writer thread");
        Self {
            config,
            tx: Some(tx),
            thread: Some(thread),
            pending: VecDeque::new(),
            open: HashMap::new(),
            last_t: f64::NEG_INFINITY,
            dropped: 0,
            label: label.to_string(),
        }
    }

    /// New rolls and limits (a reload): clips started from now on follow them.
    pub fn set_config(&mut self, config: RecorderConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &RecorderConfig {
        &self.config
    }

    /// Frames dropped so far because the writer was behind.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// Clips not yet past their last frame.
    pub fn open_clips(&self) -> usize {
        self.open.len()
    }

    fn flush_pending(&mut self) -> bool {
        let Some(tx) = &self.tx else { return false };
        while let Some(cmd) = self.pending.pop_front() {
            match tx.try_send(cmd) {
                Ok(()) => {}
                Err(TrySendError::Full(cmd)) => {
                    self.pending.push_front(cmd);
                    return false;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        true
    }

    fn command(&mut self, cmd: Command) {
        self.pending.push_back(cmd);
        self.flush_pending();
    }

    /// One processed frame at `t` (unix seconds, increasing). Cheap: a copy of the JPEG and a queue push.
    pub fn push_frame(&mut self, t: f64, jpeg: &[u8]) {
        if t <= self.last_t {
            return;
        }
        self.last_t = t;
        self.open.retain(|_, until| *until >= t);
        let Some(tx) = &self.tx else { return };
        let frame = Command::Frame { t, jpeg: Arc::from(jpeg) };
        let sent = if self.pending.is_empty() { tx.try_send(frame).is_ok() } else { false };
        if !sent {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                log::warn!("[{}] clip writer behind: {} frames dropped from clips so far", self.label, self.dropped);
            }
            self.flush_pending();
        }
    }

    /// Starts the clip of an event that started at `event_start`: it begins `pre_roll_secs` before
    /// (from the ring) and runs until `end_clip`'s time plus the post-roll, or `max_clip_secs`.
    /// `done` runs on the writer thread once the file is complete (or could not be written).
    pub fn start_clip(&mut self, key: i64, path: PathBuf, event_start: f64, done: ClipCallback) {
        let cap = event_start + self.config.max_clip_secs;
        self.open.insert(key, cap);
        self.command(Command::Open { key, path, from: event_start - self.config.pre_roll_secs, cap, done });
    }

    /// The event behind clip `key` ended at `event_end`: the clip takes the post-roll and closes.
    pub fn end_clip(&mut self, key: i64, event_end: f64) {
        let until = event_end + self.config.post_roll_secs;
        if let Some(u) = self.open.get_mut(&key) {
            *u = u.min(until);
        }
        self.command(Command::Close { key, until });
    }

    /// Writes `jpeg` to `path` on the writer thread; `done` gets its size.
    pub fn snapshot(&mut self, path: PathBuf, jpeg: &[u8], done: SnapshotCallback) {
        self.command(Command::Snapshot { path, jpeg: Arc::from(jpeg), done });
    }

    /// Completes every clip with the frames it has (no more post-roll will come), then stops the
    /// writer and waits for it: after this returns every clip file is complete and playable.
    pub fn finish(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        for cmd in self.pending.drain(..).chain([Command::Finish]) {
            if tx.send(cmd).is_err() {
                break;
            }
        }
        drop(tx);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.open.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `NAME.mp4` is written as `NAME.part.mp4` (FFmpeg picks the container from the extension).
pub fn part_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{stem}.part.mp4"))
}

struct Clip {
    key: i64,
    path: PathBuf,
    part: PathBuf,
    from: f64,
    until: f64,
    fps: f64,
    writer: Option<(videoio::VideoWriter, Size, &'static str)>,
    frames: u32,
    first_t: Option<f64>,
    error: Option<String>,
    done: Option<ClipCallback>,
}

impl Clip {
    fn wants(&self, t: f64) -> bool {
        self.error.is_none() && t >= self.from && t <= self.until
    }
}

struct Writer {
    label: String,
    config: RecorderConfig,
    /// Recent frames, oldest first.
    ring: VecDeque<(f64, Arc<[u8]>)>,
    ring_bytes: usize,
    /// Frames up to this time have been handed to the clips.
    cursor: f64,
    clips: Vec<Clip>,
}

/// FourCCs tried in order: H.264 (FFmpeg's libx264 on Debian's OpenCV), else MPEG-4 part 2.
const CODECS: [&str; 2] = ["avc1", "mp4v"];

fn open_writer(part: &Path, fps: f64, size: Size) -> Result<(videoio::VideoWriter, &'static str), String> {
    if let Some(dir) = part.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let name = part.to_string_lossy();
    for codec in CODECS {
        let c: Vec<char> = codec.chars().collect();
        let fourcc = videoio::VideoWriter::fourcc(c[0], c[1], c[2], c[3]).map_err(|e| e.to_string())?;
        match videoio::VideoWriter::new(part, fourcc, fps, size, true) {
            Ok(w) if w.is_opened().unwrap_or(false) => return Ok((w, codec)),
            _ => log::debug!("{name}: no {codec} writer"),
        }
    }
    Err(format!("{name}: OpenCV can write neither H.264 nor MPEG-4 video{}", disk_note(part)))
}

/// Opens a written clip and decodes its first frame.
fn check_plays(part: &Path) -> Result<(), String> {
    let name = part.to_string_lossy();
    let mut cap = videoio::VideoCapture::from_file(part, videoio::CAP_FFMPEG).map_err(|e| e.to_string())?;
    let mut frame = Mat::default();
    if cap.is_opened().unwrap_or(false) && cap.read(&mut frame).unwrap_or(false) && !frame.empty() {
        Ok(())
    } else {
        Err(format!("{name}: the written file does not play{}", disk_note(part)))
    }
}

/// Below this much free space a failed write is put down to a full disk.
const NEARLY_FULL_BYTES: u64 = 4 << 20;

/// `" (no space left on its disk: N bytes free)"` if the disk holding `path` is (nearly) full.
pub fn disk_note(path: &Path) -> String {
    match free_bytes(path.parent().unwrap_or(path)) {
        Some(free) if free < NEARLY_FULL_BYTES => format!(" (no space left on its disk: {free} bytes free)"),
        _ => String::new(),
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a properly sized out-parameter.
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

impl Writer {
    fn new(label: String, config: RecorderConfig) -> Self {
        Self { label, config, ring: VecDeque::new(), ring_bytes: 0, cursor: f64::NEG_INFINITY, clips: Vec::new() }
    }

    fn run(mut self, rx: Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Command::Frame { t, jpeg } => self.frame(t, jpeg),
                Command::Open { key, path, from, cap, done } => self.open(key, path, from, cap, done),
                Command::Close { key, until } => {
                    if let Some(c) = self.clips.iter_mut().find(|c| c.key == key) {
                        c.until = c.until.min(until);
                    }
                }
                Command::Snapshot { path, jpeg, done } => done(write_atomically(&path, &jpeg)),
                Command::Finish => break,
            }
        }
        self.dispatch_until(f64::INFINITY);
        for clip in std::mem::take(&mut self.clips) {
            self.complete(clip);
        }
    }

    /// The camera's rate, from the ring's timestamps.
    fn fps(&self) -> f64 {
        match (self.ring.front(), self.ring.back()) {
            (Some(a), Some(b)) if self.ring.len() >= 2 && b.0 > a.0 => {
                let fps = (self.ring.len() - 1) as f64 / (b.0 - a.0);
                ((fps * 100.0).round() / 100.0).clamp(1.0, 60.0)
            }
            _ => 10.0,
        }
    }

    fn open(&mut self, key: i64, path: PathBuf, from: f64, cap: f64, done: ClipCallback) {
        let mut clip = Clip {
            key,
            part: part_path(&path),
            path,
            from,
            until: cap,
            fps: self.fps(),
            writer: None,
            frames: 0,
            first_t: None,
            error: None,
            done: Some(done),
        };
        // The pre-roll: frames already handed out; later ones come through `dispatch`.
        let cursor = self.cursor;
        let backlog: Vec<(f64, Arc<[u8]>)> =
            self.ring.iter().filter(|(t, _)| *t <= cursor && clip.wants(*t)).cloned().collect();
        for (t, jpeg) in backlog {
            match decode(&jpeg) {
                Ok(mat) => write_frame(&mut clip, t, &mat),
                Err(e) => log::warn!("[{}] undecodable frame in the ring: {e}", self.label),
            }
        }
        self.clips.push(clip);
    }

    fn frame(&mut self, t: f64, jpeg: Arc<[u8]>) {
        self.ring_bytes += jpeg.len();
        self.ring.push_back((t, jpeg));
        // Frames reach the clips `end_delay_secs` late, so that an end learnt that late still cuts
        // the post-roll at the right frame.
        self.dispatch_until(t - self.config.end_delay_secs);
        while let Some((front_t, _)) = self.ring.front() {
            let front_t = *front_t;
            if front_t < t - self.config.ring_secs || self.ring_bytes > self.config.ring_max_bytes {
                if front_t > self.cursor {
                    self.dispatch_until(front_t);
                }
                let (_, front) = self.ring.pop_front().expect("front exists");
                self.ring_bytes -= front.len();
            } else {
                break;
            }
        }
    }

    /// Hands the ring's frames after the cursor and up to `limit` to the clips, in order.
    fn dispatch_until(&mut self, limit: f64) {
        let start = self.ring.partition_point(|(t, _)| *t <= self.cursor);
        let due: Vec<(f64, Arc<[u8]>)> = self.ring.range(start..).take_while(|(t, _)| *t <= limit).cloned().collect();
        for (t, jpeg) in due {
            self.dispatch(t, &jpeg);
            self.cursor = t;
        }
    }

    fn dispatch(&mut self, t: f64, jpeg: &[u8]) {
        // Clips whose last frame is past are complete.
        let (over, open): (Vec<Clip>, Vec<Clip>) = std::mem::take(&mut self.clips).into_iter().partition(|c| t > c.until);
        self.clips = open;
        for clip in over {
            self.complete(clip);
        }
        if self.clips.iter().any(|c| c.wants(t)) {
            match decode(jpeg) {
                Ok(mat) => {
                    for clip in self.clips.iter_mut().filter(|c| c.wants(t)) {
                        write_frame(clip, t, &mat);
                    }
                }
                Err(e) => log::warn!("[{}] undecodable frame: {e}", self.label),
            }
        }
    }

    fn complete(&self, mut clip: Clip) {
        let done = clip.done.take().expect("a clip completes once");
        let codec = clip.writer.as_ref().map(|w| w.2).unwrap_or("");
        if let Some((mut w, ..)) = clip.writer.take() {
            if let Err(e) = w.release() {
                clip.error.get_or_insert(e.to_string());
            }
        }
        let result = match (&clip.error, clip.frames, clip.first_t) {
            (None, n, Some(first)) if n > 0 => check_plays(&clip.part)
                .and_then(|()| std::fs::rename(&clip.part, &clip.path).map_err(|e| format!("{}: {e}", clip.path.display())))
                .and_then(|()| std::fs::metadata(&clip.path).map_err(|e| e.to_string()))
                .map(|m| ClipDone {
                    path: clip.path.clone(),
                    frames: n,
                    fps: clip.fps as f32,
                    started_at: first,
                    bytes: m.len(),
                    codec,
                }),
            (Some(e), ..) => Err(e.clone()),
            _ => Err("no frames for the clip".to_string()),
        };
        if result.is_err() {
            let _ = std::fs::remove_file(&clip.part);
        }
        match &result {
            Ok(c) => log::info!("[{}] clip {} complete: {} frames at {} fps ({})", self.label, c.path.display(), c.frames, c.fps, c.codec),
            Err(e) => log::warn!("[{}] clip {} not written: {e}", self.label, clip.path.display()),
        }
        done(result);
    }
}

fn decode(jpeg: &[u8]) -> Result<Mat, String> {
    let buf = Vector::<u8>::from_slice(jpeg);
    let mat = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR).map_err(|e| e.to_string())?;
    if mat.empty() {
        return Err("not a JPEG".into());
    }
    Ok(mat)
}

fn write_frame(clip: &mut Clip, t: f64, frame: &Mat) {
    if clip.writer.is_none() {
        match open_writer(&clip.part, clip.fps, frame.size().unwrap_or_default()) {
            Ok((w, codec)) => clip.writer = Some((w, frame.size().unwrap_or_default(), codec)),
            Err(e) => {
                clip.error = Some(e);
                return;
            }
        }
    }
    let Some((writer, size, _)) = clip.writer.as_mut() else { return };
    let result = if frame.size().ok() == Some(*size) {
        writer.write(frame)
    } else {
        // The camera's resolution changed mid-clip: keep the clip's.
        let mut resized = Mat::default();
        imgproc::resize(frame, &mut resized, *size, 0.0, 0.0, imgproc::INTER_AREA).and_then(|()| writer.write(&resized))
    };
    match result {
        Ok(()) => {
            clip.frames += 1;
            clip.first_t.get_or_insert(t);
        }
        Err(e) => clip.error = Some(e.to_string()),
    }
}

/// Writes `bytes` to `path` through a temporary name, so the name only ever holds a whole file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<u64, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}{}", path.display(), disk_note(path))
        })?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::mpsc::channel;

    use opencv::core::{Point, Scalar, CV_8UC3};

    use super::*;
    use crate::events::store::tests::TempDir;

    /// A synthetic camera frame: frame number written on it and a moving disc.
    pub fn synthetic_frame(i: usize) -> Mat {
        let mut m = Mat::new_rows_cols_with_default(240, 320, CV_8UC3, Scalar::new(40.0, 60.0, 80.0, 0.0)).unwrap();
        imgproc::circle(&mut m, Point::new(20 + (i as i32 * 7) % 280, 120), 18, Scalar::new(0.0, 200.0, 255.0, 0.0), -1, imgproc::LINE_8, 0)
            .unwrap();
        imgproc::put_text(
            &mut m,
            &format!("{i}"),
            Point::new(10, 40),
            imgproc::FONT_HERSHEY_SIMPLEX,
            1.0,
            Scalar::all(255.0),
            2,
            imgproc::LINE_8,
            false,
        )
        .unwrap();
        m
    }

    pub fn count_frames(path: &Path) -> (u32, f64) {
        let mut cap = videoio::VideoCapture::from_file(path, videoio::CAP_ANY).unwrap();
        assert!(cap.is_opened().unwrap(), "{} does not open", path.display());
        let fps = cap.get(videoio::CAP_PROP_FPS).unwrap();
        let mut n = 0;
        let mut m = Mat::default();
        while cap.read(&mut m).unwrap() && !m.empty() {
            assert_eq!((m.cols(), m.rows()), (320, 240));
            n += 1;
        }
        (n, fps)
    }

    /// Frames OpenCV reads back from a video file.
    pub fn count_frames_any(path: &Path) -> u32 {
        let mut cap = videoio::VideoCapture::from_file(path, videoio::CAP_ANY).unwrap();
        assert!(cap.is_opened().unwrap(), "{} does not open", path.display());
        let (mut n, mut m) = (0, Mat::default());
        while cap.read(&mut m).unwrap() && !m.empty() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_clip_holds_pre_roll_event_and_post_roll_and_plays() {
        let dir = TempDir::new("recorder-clip");
        let config = RecorderConfig { pre_roll_secs: 2.0, post_roll_secs: 1.0, ring_secs: 5.0, end_delay_secs: 0.5, ..Default::default() };
        let mut rec = Recorder::new("test", config);
        let (tx, rx) = channel();
        let fps = 10.0;
        let t0 = 1_700_000_000.0;
        let path = dir.0.join("clips/test/1-fall.mp4");
        for i in 0..100 {
            let t = t0 + i as f64 / fps;
            rec.push_frame(t, &crate::jpeg::encode(&synthetic_frame(i), JPEG_QUALITY).unwrap());
            // The event starts at frame 40 (known at frame 55), ends at frame 70.
            if i == 55 {
                let tx = tx.clone();
                rec.start_clip(1, path.clone(), t0 + 4.0, Box::new(move |r| tx.send(r).unwrap()));
                assert_eq!(rec.open_clips(), 1);
            }
            if i == 70 {
                rec.end_clip(1, t);
            }
        }
        let done = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap().unwrap();
        // Pre-roll 2 s (frames 20..39), event (40..70), post-roll 1 s (71..80).
        assert_eq!(done.frames, 20 + 31 + 10);
        assert!((done.started_at - (t0 + 2.0)).abs() < 1e-6);
        assert_eq!(done.fps, 10.0);
        eprintln!("clip written with {}", done.codec);
        let (frames, file_fps) = count_frames(&path);
        assert_eq!(frames, done.frames);
        assert!((file_fps - 10.0).abs() < 0.01, "{file_fps}");
        assert!(!part_path(&path).exists());
        assert_eq!(rec.open_clips(), 0);
        rec.finish();
    }

    #[test]
    fn finish_completes_a_clip_in_progress() {
        let dir = TempDir::new("recorder-finish");
        let mut rec = Recorder::new("test", RecorderConfig { pre_roll_secs: 1.0, ..Default::default() });
        let (tx, rx) = channel();
        let path = dir.0.join("c.mp4");
        for i in 0..30 {
            let t = 100.0 + i as f64 / 10.0;
            rec.push_frame(t, &crate::jpeg::encode(&synthetic_frame(i), JPEG_QUALITY).unwrap());
            if i == 15 {
                let tx = tx.clone();
                rec.start_clip(5, path.clone(), t, Box::new(move |r| tx.send(r).unwrap()));
            }
        }
        rec.finish();
        let done = rx.try_recv().expect("finish waits for the clip").unwrap();
        // One second of pre-roll (frames 5..14) and everything since (15..29).
        assert_eq!(done.frames, 25);
        assert_eq!(count_frames(&path).0, 25);
    }

    #[test]
    fn snapshots_are_written_whole() {
        let dir = TempDir::new("recorder-snap");
        let mut rec = Recorder::new("test", RecorderConfig::default());
        let jpeg = crate::jpeg::encode(&synthetic_frame(3), JPEG_QUALITY).unwrap();
        let (tx, rx) = channel();
        let path = dir.0.join("snapshots/x/1.jpg");
        rec.snapshot(path.clone(), &jpeg, Box::new(move |r| tx.send(r).unwrap()));
        rec.finish();
        assert_eq!(rx.recv().unwrap().unwrap(), jpeg.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), jpeg);
    }
}
