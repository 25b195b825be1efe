//! The frame step's stages one by one, in simulated time with scripted frames and models: what each
//! stage makes of a frame, without the stages after it. (Stage (a), the settings, is tested in
//! `frame_settings`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use opencv::core::Mat;

use super::analyse::{Analyser, Analysis};
use super::clock::{Clock, SimClock};
use super::event_feed;
use super::frame_settings::{FrameSettings, SettingsWatch};
use super::frame_step::Captured;
use super::motion::{Motion, MotionSettings};
use super::packet::Feed;
use super::publish::Publisher;
use super::render::{Rendered, Renderer, Wants};
use super::rendition::{Formats, Rendition};
use super::scripted::{context, still_frame, Counting};
use super::worker::WorkerContext;
use crate::events::{EventEngine, EventHub, EventKind, EventSettings};
use crate::inference::{Engines, Task};
use crate::camera::config::{CameraConfig, SourceType};

/// One camera's stages (b) and (c) over frames handed over one at a time, `step` of simulated
/// time apart, each look's answer waited for (it is taken with the next frame).
struct Stages {
    ctx: WorkerContext,
    clock: Arc<SimClock>,
    analyser: Analyser,
    settings: SettingsWatch,
    events: Option<EventEngine>,
    index: u64,
    step: Duration,
}

impl Stages {
    fn new(engines: Engines, events: Option<Arc<EventHub>>, configure: impl FnOnce(&mut CameraConfig)) -> Self {
        let clock = Arc::new(SimClock::new(0.0));
        let mut config = CameraConfig::new("cam", "scripted.mp4", SourceType::VideoFile);
        configure(&mut config);
        let ctx = context(clock.clone(), engines, events.clone(), config);
        let engines = ctx.deps.inference.as_ref().map(|s| s.engines());
        let mut settings = SettingsWatch::new(&ctx.config, engines);
        let analyser = Analyser::new(&ctx, &settings.current(&ctx.config, engines), None);
        let events = events.map(|hub| hub.engine("cam"));
        Self { ctx, clock, analyser, settings, events, index: 0, step: Duration::from_millis(100) }
    }

    fn settings(&mut self) -> Arc<FrameSettings> {
        self.settings.current(&self.ctx.config, self.analyser.engines())
    }

    /// Stage (b) on `image`; `analyse`: not fenced.
    fn analyse(&mut self, image: &Mat, analyse: bool) -> Analysis {
        let s = self.settings();
        let infer = self.analyser.infers(&s, analyse);
        let frame = Captured { camera_id: "cam", image, index: self.index, timestamp: self.clock.wall(), watched: true };
        let analysis = self.analyser.analyse(&self.ctx, &s, self.events.as_ref(), &frame, infer).unwrap();
        self.index += 1;
        self.clock.advance(self.step);
        let until = Instant::now() + Duration::from_secs(10);
        while self.analyser.lane().is_some_and(|l| l.busy()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        analysis
    }

    /// Stages (b) and (c): the events in progress after `image`.
    fn analyse_and_feed(&mut self, image: &Mat) -> Vec<crate::events::Event> {
        let timestamp = self.clock.wall();
        let analysis = self.analyse(image, true);
        let s = self.settings();
        let jpeg = Bytes::from(crate::jpeg::encode(image, 80).unwrap());
        let frame = Captured { camera_id: "cam", image, index: self.index - 1, timestamp, watched: true };
        event_feed::feed(self.events.as_mut().unwrap(), &mut self.analyser, &s, &analysis.fresh, &jpeg, &frame)
    }

    fn counter(&self, counter: impl Fn(&super::status::CameraStatus) -> &AtomicU64) -> u64 {
        counter(&self.ctx.status).load(Ordering::Relaxed)
    }
}

fn pose_and_objects() -> (Arc<Counting>, Arc<Counting>, Engines) {
    let (pose, objects) = (Counting::new(Task::Pose), Counting::new(Task::Detect));
    let engines = Engines::named(vec![("pose", pose.clone()), ("objects", objects.clone())]);
    (pose, objects, engines)
}

/// Every frame counts as moving, and every moving frame goes to the models.
fn every_frame(c: &mut CameraConfig) {
    c.motion = Some(MotionSettings { enabled: false, ..MotionSettings::default() });
    c.detect_fps = Some(0.0);
}

// Stage (b): analyse.

#[test]
fn a_still_scene_is_looked_at_once_its_answer_taken_with_the_next_frame_then_skipped() {
    let (pose, _, engines) = pose_and_objects();
    let mut stages = Stages::new(engines, None, |_| {});
    let still = still_frame(64, 48, 90.0);
    assert!(stages.analyse(&still, true).fresh.is_empty(), "the first check is handed over, not yet answered");
    assert_eq!(stages.analyse(&still, true).fresh, [0], "the pose model's answer, with the next frame");
    for _ in 0..3 {
        assert!(!stages.analyse(&still, true).motion.moving);
    }
    assert_eq!(*pose.calls.lock().unwrap(), 1);
    assert_eq!(stages.counter(|s| &s.inferences_skipped), 4, "every still frame after the first check is a pass saved");
}

#[test]
fn a_fenced_frame_is_measured_for_motion_but_not_looked_at_and_the_models_answers_leave_the_picture() {
    let (_, objects, engines) = pose_and_objects();
    let mut stages = Stages::new(engines, None, |c| {
        every_frame(c);
        c.models = Some(vec!["objects".into()]);
    });
    let frame = still_frame(64, 48, 90.0);
    stages.analyse(&frame, true);
    stages.analyse(&frame, true);
    assert_eq!(stages.analyser.looks.shown().len(), 1, "the car is shown");
    let calls = *objects.calls.lock().unwrap();
    let fenced = stages.analyse(&frame, false);
    assert!(fenced.motion.moving && !fenced.infer);
    assert!(stages.analyser.looks.shown().is_empty());
    assert_eq!(*objects.calls.lock().unwrap(), calls, "no pass past the fence");
}

// Stage (c): events.

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_car_a_detect_model_sees_in_two_looks_raises_an_object_event_of_that_model() {
    let dir = TempDir(std::env::temp_dir().join(format!("haven-stage-events-{}", std::process::id())));
    let mut settings = EventSettings { data_dir: dir.0.clone(), ..EventSettings::default() };
    settings.objects.min_secs = 0.0;
    let hub = EventHub::open(&settings).unwrap();
    let (_, _, engines) = pose_and_objects();
    let mut stages = Stages::new(engines, Some(hub), |c| {
        every_frame(c);
        c.models = Some(vec!["objects".into()]);
        c.object_events = Some(vec!["car".into()]);
    });
    let frame = still_frame(64, 48, 90.0);
    let mut events = Vec::new();
    for _ in 0..4 {
        events = stages.analyse_and_feed(&frame);
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].kind, events[0].model.as_deref()), (EventKind::ObjectDetected, Some("objects")));
}

// Stage (d): render.

#[test]
fn the_full_frame_is_encoded_only_when_the_events_or_a_viewer_want_it_and_reused_while_still() {
    let ctx = context(Arc::new(SimClock::new(0.0)), Engines::default(), None, CameraConfig::new("cam", "a.mp4", SourceType::VideoFile));
    let (status, looks) = (&ctx.status, super::looks::Looks::new(0));
    let frame = still_frame(320, 240, 90.0);
    let mut renderer = Renderer::default();
    let wants = |renditions: Vec<(Rendition, Formats)>, for_events| Wants { renditions, for_events, quality: 80 };
    let encoded = || (status.frames_encoded.load(Ordering::Relaxed), status.renditions_encoded.load(Ordering::Relaxed));
    let full = renderer.full_frame(status, Duration::ZERO, &frame, true, &looks, wants(Vec::new(), false)).unwrap();
    assert!(full.jpeg.is_none(), "nobody wants it");
    let full = renderer.full_frame(status, Duration::from_millis(100), &frame, true, &looks, wants(Vec::new(), true)).unwrap();
    assert!(full.jpeg.is_some());
    assert_eq!(encoded(), (1, 0));
    // The same still scene a moment later, for a viewer of the full frame and one of a small rendition.
    let small = Rendition { width: Some(160), ..Rendition::default() };
    let renditions = vec![(Rendition::default(), Formats::default()), (small, Formats::default())];
    let full = renderer.full_frame(status, Duration::from_millis(200), &frame, false, &looks, wants(renditions, false)).unwrap();
    let rendered = renderer.renditions(status, &frame, &looks, full).unwrap();
    assert!(rendered.full.is_some());
    assert_eq!(rendered.renditions.len(), 2);
    assert_eq!((rendered.renditions[1].meta.width, rendered.renditions[1].meta.height), (160, 120));
    assert_eq!(encoded(), (1, 1), "the still full frame is reused; only the small one is new");
}

// Stage (e): publish.

#[test]
fn packets_number_on_from_the_feeds_last_and_never_replace_a_closed_feed() {
    let clock = Arc::new(SimClock::new(0.0));
    let ctx = context(clock.clone(), Engines::default(), None, CameraConfig::new("cam", "a.mp4", SourceType::VideoFile));
    let s = FrameSettings::resolve(&ctx.config.read().unwrap(), &ctx.config.detection(), None);
    let analyser = Analyser::new(&ctx, &s, None);
    let analysis = Analysis { motion: Motion::default(), infer: false, fresh: Vec::new() };
    let image = still_frame(64, 48, 90.0);
    let frame = Captured { camera_id: "cam", image: &image, index: 3, timestamp: clock.wall(), watched: true };
    let rendered = || Rendered { full: None, renditions: Vec::new(), encode_ms: 0.0 };
    let viewer = ctx.feed.subscribe();
    let mut publisher = Publisher::default();
    assert_eq!(publisher.publish(&ctx, &frame, &s, &analyser, &analysis, &[], rendered()).seq, 1);
    // The camera restarted: a new worker's first packet follows the feed's last one.
    let mut restarted = Publisher::default();
    assert_eq!(restarted.publish(&ctx, &frame, &s, &analyser, &analysis, &[], rendered()).seq, 2);
    match &*viewer.borrow() {
        Feed::Frame(p) => assert_eq!((p.seq, p.frame_index, p.width), (2, 3, 64)),
        other => panic!("no packet: {other:?}"),
    }
    ctx.feed.send_replace(Feed::Closed("removed"));
    restarted.publish(&ctx, &frame, &s, &analyser, &analysis, &[], rendered());
    assert!(matches!(&*viewer.borrow(), Feed::Closed("removed")), "the close stays");
}
