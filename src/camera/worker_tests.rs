//! The worker's life in simulated time with scripted sources: pacing, skipping, looping, the end of
//! a file, stalls, reconnects with backoff and jitter, stopping. No FFmpeg, no model.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use opencv::core::Mat;
use tokio::sync::watch;

use super::*;
use crate::camera::clock::SimClock;
use crate::camera::scripted::{Counting, Opening, ScriptedOpener, Step};

fn capture() -> CaptureSettings {
    CaptureSettings {
        open_timeout_secs: 5.0,
        read_timeout_secs: 5.0,
        watchdog_secs: 2.0,
        reconnect_initial_secs: 1.0,
        reconnect_max_secs: 4.0,
    }
}

struct Harness {
    ctx: WorkerContext,
    clock: Arc<SimClock>,
    opener: Arc<ScriptedOpener>,
}

impl Harness {
    fn new(source_type: SourceType, opener: impl FnOnce(Arc<SimClock>) -> ScriptedOpener) -> Self {
        let clock = Arc::new(SimClock::new(0.4));
        let opener = Arc::new(opener(clock.clone()));
        let deps = CameraDeps {
            inference: None,
            capture: Arc::new(capture()),
            detection: Live::default(),
            events: None,
            opener: opener.clone(),
            clock: clock.clone(),
            wait_for_models: false,
        };
        let config = CameraConfig::new("cam", "scripted.mp4", source_type);
        let ctx = WorkerContext::new(config, Arc::new(watch::channel(Feed::Waiting).0), Default::default(), deps);
        opener.attach(ctx.stop.clone(), ctx.status.clone());
        Self { ctx, clock, opener }
    }

    fn file(openings: Vec<Opening>) -> Self {
        Self::new(SourceType::VideoFile, |clock| ScriptedOpener::new(clock, openings))
    }

    fn set(&self, f: impl FnOnce(&mut CameraConfig)) {
        f(&mut self.ctx.config.write().unwrap());
    }

    /// Runs the worker to its end on this thread.
    fn run(&self) {
        run(&self.ctx);
    }

    fn count(&self, counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn seconds(&self) -> f64 {
        self.clock.monotonic().as_secs_f64()
    }
}

fn file(frames: usize, fps: f64, read_cost_ms: u64) -> Opening {
    Opening::File { frames, fps, read_cost: Duration::from_millis(read_cost_ms) }
}

#[test]
fn a_file_plays_at_its_own_pace_then_the_camera_ends() {
    let h = Harness::file(vec![file(30, 10.0, 0)]);
    h.set(|c| c.loop_video = false);
    h.run();
    let s = &h.ctx.status;
    assert_eq!(s.state(), CameraState::Ended);
    assert_eq!((h.count(&s.frames_decoded), h.count(&s.frames_processed), h.count(&s.dropped_frames)), (30, 30, 0));
    // Frame 29 is due 2.9 s after the first, and the end is found when a 31st would be due:
    // never delivered faster than the file's rate.
    assert!((2.9..=3.05).contains(&h.seconds()), "played 30 frames at 10 fps in {} s", h.seconds());
}

#[test]
fn a_slow_decoder_skips_the_frames_it_missed_and_counts_them() {
    // Every frame takes 250 ms to decode at 10 fps: about 2.5 frame periods each.
    let h = Harness::file(vec![file(100, 10.0, 250)]);
    h.set(|c| c.loop_video = false);
    h.run();
    let s = &h.ctx.status;
    let (decoded, processed, dropped) = (h.count(&s.frames_decoded), h.count(&s.frames_processed), h.count(&s.dropped_frames));
    assert_eq!(decoded, 100, "every frame of the file is decoded or skipped");
    assert_eq!(processed + dropped, decoded);
    assert!((36..=44).contains(&processed), "processed {processed} of 100 frames at 2.5 periods each");
    // Skipping keeps the camera on time: it ends when the file would, plus one slow decode.
    assert!(h.seconds() < 10.3, "ended after {} s", h.seconds());
}

#[test]
fn a_looping_file_rewinds_restarts_its_frame_indices_and_stops_within_one_frame() {
    let opener = |clock| ScriptedOpener::new(clock, vec![file(5, 10.0, 0)]).stop_after_reads(13);
    let h = Harness::new(SourceType::VideoFile, opener);
    let viewer = h.ctx.feed.subscribe();
    h.run();
    let s = &h.ctx.status;
    assert_eq!(h.count(&s.loops), 2);
    // The stop came with the 13th frame: that frame is finished, no other one is read.
    assert_eq!(h.opener.reads.load(Ordering::Relaxed), 13);
    assert_eq!(h.count(&s.frames_processed), 13);
    assert_eq!(s.state(), CameraState::Stopped);
    match &*viewer.borrow() {
        Feed::Frame(p) => assert_eq!((p.seq, p.frame_index), (13, 2), "the third pass's third frame"),
        other => panic!("viewer has no frame: {other:?}"),
    };
}

#[test]
fn a_file_that_cannot_be_read_is_retried_with_capped_jittered_backoff_until_stopped() {
    // Empty, unreachable, empty, unreachable, unreachable; then the opener stops the camera.
    let h = Harness::file(vec![file(0, 10.0, 0), Opening::Unreachable, file(0, 10.0, 0), Opening::Unreachable, Opening::Unreachable]);
    h.run();
    // Waits 1, 2, 4, 4 (capped) s, each +10 % (jitter 0.4 of the +25 % range).
    let expected = [0.0, 1.1, 3.3, 7.7, 12.1, 16.5];
    let opened = h.opener.open_times();
    assert_eq!(opened.len(), expected.len(), "opened at {opened:?}");
    for (got, want) in opened.iter().zip(expected) {
        assert!((got - want).abs() < 0.06, "opened at {opened:?}, expected {expected:?}");
    }
    let errors: Vec<_> = h.opener.opens.lock().unwrap().iter().map(|(_, e)| e.clone().unwrap_or_default()).collect();
    assert!(errors[1].contains("no frame could be decoded"), "{errors:?}");
    assert!(errors[2].contains("cannot open scripted.mp4"), "{errors:?}");
    let s = &h.ctx.status;
    assert_eq!(h.count(&s.reconnects), 5);
    // Stopped during its last failure: it returns without waiting out the backoff.
    assert_eq!(s.state(), CameraState::Stopped);
    assert!((h.seconds() - 16.5).abs() < 0.06, "returned at {} s", h.seconds());
}

#[test]
fn a_live_camera_that_stalls_or_drops_is_reconnected() {
    let openings = vec![
        Opening::Live { fps: 10.0, steps: vec![Step::Frame, Step::Frame, Step::Frame, Step::Stall] },
        Opening::Live { fps: 10.0, steps: vec![Step::Frame, Step::Frame, Step::Fail] },
        Opening::Live { fps: 10.0, steps: vec![Step::Frame, Step::End] },
    ];
    let h = Harness::new(SourceType::Rtsp, |clock| ScriptedOpener::new(clock, openings));
    h.run();
    let errors: Vec<_> = h.opener.opens.lock().unwrap().iter().map(|(_, e)| e.clone().unwrap_or_default()).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[1].contains("no frame for 2 s"), "the watchdog noticed the stall: {errors:?}");
    assert!(errors[2].contains("connection reset"), "{errors:?}");
    assert!(errors[3].contains("stream ended"), "{errors:?}");
    let s = &h.ctx.status;
    assert_eq!(h.count(&s.frames_decoded), 6);
    assert_eq!(h.count(&s.reconnects), 3);
    assert_eq!(s.state(), CameraState::Stopped);
}

#[test]
fn a_changed_setting_applies_from_the_next_frame() {
    let opener = |clock| ScriptedOpener::new(clock, vec![file(1000, 10.0, 0)]).stop_after_reads(40);
    let h = Harness::new(SourceType::VideoFile, opener);
    // Capped at 5 of the file's 10 fps: every other frame is passed over (not counted as processed).
    h.set(|c| c.max_fps = Some(5.0));
    h.run();
    let processed = h.count(&h.ctx.status.frames_processed);
    assert!((19..=21).contains(&processed), "processed {processed} of 40 frames at half rate");
}

#[test]
fn jitter_spreads_retries_by_up_to_a_quarter_of_the_wait() {
    let d = Duration::from_secs(4);
    assert_eq!(with_jitter(d, 0.0), d);
    assert_eq!(with_jitter(d, 0.5), Duration::from_millis(4500));
    assert!(with_jitter(d, 0.999) < Duration::from_secs(5));
    assert_eq!(with_jitter(d, 7.0), Duration::from_secs(5), "out-of-range jitter is clamped");
}

#[test]
fn past_its_fence_a_camera_shows_frames_to_local_viewers_but_counts_none_as_processed() {
    let h = Harness::file(vec![file(10, 10.0, 0), file(10, 10.0, 0)]);
    h.set(|c| c.loop_video = false);
    let viewer = h.ctx.feed.subscribe();
    h.ctx.fence.close();
    h.run();
    let s = &h.ctx.status;
    assert_eq!((h.count(&s.frames_fenced), h.count(&s.frames_processed)), (10, 0));
    assert!(matches!(&*viewer.borrow(), Feed::Frame(p) if p.frame_index == 9), "the local viewer still sees the camera");
    // A renewed lease opens it again: the next worker of the same camera processes.
    let next = h.ctx.renewed(h.ctx.config.read().unwrap().clone());
    next.fence.extend_to(std::time::Instant::now() + Duration::from_secs(3600));
    assert!(!h.ctx.fence.expired(), "the fence outlives restarts");
    run(&next);
    assert_eq!((h.count(&next.status.frames_fenced), h.count(&next.status.frames_processed)), (0, 10));
}

#[test]
fn a_model_switched_on_in_a_still_scene_looks_at_once_and_one_switched_off_leaves_the_picture() {
    use crate::inference::{Engines, Task};
    let pose = Counting::new(Task::Pose);
    let objects = Counting::new(Task::Detect);
    let scheduler = Scheduler::with_engines(Engines::named(vec![("pose", pose.clone()), ("objects", objects.clone())]), 1);
    let clock = Arc::new(SimClock::new(0.0));
    let deps = CameraDeps {
        inference: Some(scheduler),
        capture: Arc::new(capture()),
        detection: Live::default(),
        events: None,
        opener: Arc::new(ScriptedOpener::new(clock.clone(), Vec::new())),
        clock: clock.clone(),
        wait_for_models: false,
    };
    let config = CameraConfig::new("cam", "scripted.mp4", SourceType::VideoFile);
    let ctx = WorkerContext::new(config.clone(), Arc::new(watch::channel(Feed::Waiting).0), Default::default(), deps);
    let _viewer = ctx.feed.subscribe(); // someone watches: every frame is processed and published
    let mut pipe = Pipeline::new(&ctx, &config);
    let still = Mat::new_rows_cols_with_default(48, 64, opencv::core::CV_8UC3, opencv::core::Scalar::all(90.0)).unwrap();
    let mut index = 0;
    // One frame: processed, then the models' answer waited for (it is taken with the next frame).
    let mut step = |pipe: &mut Pipeline| {
        let mut frame = still.clone();
        process(&ctx, pipe, "cam", &mut frame, index, true).unwrap();
        index += 1;
        clock.advance(Duration::from_millis(100));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while pipe.lane().unwrap().busy() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let shown = |ctx: &WorkerContext| match &*ctx.feed.borrow() {
        Feed::Frame(p) => p.detections.iter().map(|g| (g.model.to_string(), g.detections.len())).collect::<Vec<_>>(),
        _ => panic!("no packet"),
    };
    let calls = || (*pose.calls.lock().unwrap(), *objects.calls.lock().unwrap());
    // The default: pose only; a still scene is looked at once.
    for _ in 0..5 {
        step(&mut pipe);
    }
    assert_eq!(calls(), (1, 0));
    // Objects switched on: the next frame goes to them alone, though nothing moves.
    ctx.config.write().unwrap().models = Some(vec!["pose".into(), "objects".into()]);
    step(&mut pipe);
    assert_eq!(calls(), (1, 1), "the new model looks at once, the other is not asked again");
    step(&mut pipe);
    assert_eq!(shown(&ctx), [("pose".to_string(), 0), ("objects".to_string(), 1)]);
    // Off again: the car leaves the picture with the next frame, and no more passes.
    ctx.config.write().unwrap().models = Some(vec!["pose".into()]);
    for _ in 0..3 {
        step(&mut pipe);
    }
    assert_eq!(shown(&ctx), [("pose".to_string(), 0)]);
    assert_eq!(calls(), (1, 1));
    let stats = ctx.status.model_stats();
    assert_eq!((stats["pose"].inferences, stats["objects"].inferences, stats["objects"].detections), (1, 1, 1));
}

#[test]
fn new_detection_defaults_reach_a_running_camera_from_its_next_frame_like_a_patch() {
    use crate::camera::motion::MotionSettings;
    use crate::camera::scripted::{context, still_frame};
    use crate::inference::{Engines, Task};
    let pose = Counting::new(Task::Pose);
    let clock = Arc::new(SimClock::new(0.0));
    let config = CameraConfig::new("cam", "scripted.mp4", SourceType::VideoFile);
    let ctx = context(clock.clone(), Engines::named(vec![("pose", pose.clone())]), None, config.clone());
    let _viewer = ctx.feed.subscribe();
    let mut pipe = Pipeline::new(&ctx, &config);
    let mut index = 0;
    let mut frames = |pipe: &mut Pipeline, n: usize| {
        for _ in 0..n {
            process(&ctx, pipe, "cam", &mut still_frame(64, 48, 90.0), index, true).unwrap();
            index += 1;
            clock.advance(Duration::from_millis(100));
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while pipe.lane().unwrap().busy() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    frames(&mut pipe, 5);
    assert_eq!(*pose.calls.lock().unwrap(), 1, "a still scene is looked at once");
    // `[detection]` now has motion off (every frame moving) at every frame: each frame is looked at.
    let motion = MotionSettings { enabled: false, ..MotionSettings::default() };
    ctx.deps.detection.set(DetectionSettings { motion, detect_fps: 0.0, ..DetectionSettings::default() });
    frames(&mut pipe, 5);
    assert_eq!(*pose.calls.lock().unwrap(), 6);
}
