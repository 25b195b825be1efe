//! One frame's way through a camera, in typed stages: (a) the camera's settings as of this frame
//! (`frame_settings`), (b) motion, gate and the models (`analyse`), (c) the events (`event_feed`),
//! (d) the JPEGs (`render`), (e) the packet for every viewer (`publish`). Nothing is done when
//! nobody consumes the result (no viewer, no events).

use std::sync::Arc;

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::analyse::Analyser;
use super::error::FrameError;
use super::event_feed;
use super::frame_settings::{FrameSettings, SettingsWatch};
use super::publish::{forget_stale_packet, Publisher};
use super::render::{Renderer, Wants};
use super::stream::RateCap;
use super::worker::WorkerContext;
use crate::events::{EventEngine, EventSettings, FallConfig};
use crate::inference::scheduler::Lane;
use crate::inference::{Engines, Task};
use crate::camera::config::CameraConfig;

/// A frame as the stages see it.
pub struct Captured<'a> {
    pub camera_id: &'a str,
    /// Scaled to the camera's `resize_width`.
    pub image: &'a Mat,
    pub index: u64,
    /// Wall-clock time of its capture.
    pub timestamp: f64,
    /// Whether anyone watches the camera.
    pub watched: bool,
}

impl Captured<'_> {
    pub fn width(&self) -> i32 {
        self.image.cols()
    }

    pub fn height(&self) -> i32 {
        self.image.rows()
    }
}

/// What a camera's frames go through besides the source, and what each stage keeps from frame to
/// frame: its settings, its rate cap, its analysis (motion gate, lane into the shared models), its
/// events, its encoder, its packet numbers.
pub struct Pipeline {
    settings: SettingsWatch,
    pub cap: RateCap,
    analyser: Analyser,
    events: Option<EventEngine>,
    /// The camera's own `fall` (over `[events.fall]`), and the version of `[events]` its engine has.
    own_fall: Option<FallConfig>,
    events_version: Option<u64>,
    renderer: Renderer,
    publisher: Publisher,
}

impl Pipeline {
    pub fn new(ctx: &WorkerContext, config: &CameraConfig) -> Self {
        let engines = ctx.deps.inference.as_ref().map(|s| s.engines());
        let mut settings = SettingsWatch::new(&ctx.config, engines);
        let first = settings.current(&ctx.config, engines);
        ctx.status.set_region_budget(first.region_budget);
        let mut pipe = Self {
            settings,
            cap: RateCap::default(),
            analyser: Analyser::new(ctx, &first, None),
            events: ctx.deps.events.as_ref().map(|hub| hub.engine(&config.camera_id)),
            own_fall: config.fall.clone(),
            events_version: None,
            renderer: Renderer::default(),
            publisher: Publisher::default(),
        };
        pipe.follow_event_settings(ctx);
        pipe
    }

    /// `[events]` as the settings file has them now (a reload replaces them): the camera's engine
    /// takes them, its own `fall` over them, and the fall model they name, from this frame.
    fn follow_event_settings(&mut self, ctx: &WorkerContext) {
        let (Some(hub), Some(events)) = (&ctx.deps.events, &mut self.events) else { return };
        let live = hub.live_settings();
        if self.events_version == Some(live.version()) {
            return;
        }
        self.events_version = Some(live.version());
        let now = live.get();
        let fall = self.own_fall.clone().unwrap_or_else(|| now.fall.clone());
        ctx.status.set_fall_sensitivity(fall.sensitivity);
        events.apply_settings(EventSettings { fall, ..EventSettings::clone(&now) });
        self.analyser.fall_model = ctx.deps.inference.as_ref().and_then(|scheduler| {
            let found = fall_model_index(scheduler.engines(), &events.fall_config().model);
            events.set_fall_model(found.map(|m| &**scheduler.engines().0[m].model()));
            found
        });
    }

    /// Stage (a): the camera's settings for this frame, rebuilt only when they changed.
    pub fn settings(&mut self, ctx: &WorkerContext) -> Arc<FrameSettings> {
        self.settings.current(&ctx.config, self.analyser.engines())
    }

    pub fn lane(&self) -> Option<&Lane> {
        self.analyser.lane()
    }

    /// Ends active events and completes their clips, so they play.
    pub fn finish(&mut self) {
        if let Some(events) = self.events.as_mut() {
            events.finish();
        }
    }
}

/// The scheduler's index of the fall model `name`: a detect model with a class `Fall`. `None` (the
/// pose rule alone) when the name is empty or no such model is loaded.
fn fall_model_index(engines: &Engines, name: &str) -> Option<usize> {
    if name.is_empty() {
        return None;
    }
    let found = engines.0.iter().position(|e| &**e.model() == name);
    let usable = found.filter(|&m| {
        let e = &engines.0[m];
        e.task() == Task::Detect && e.info().class_names.iter().any(|c| crate::events::story::is_fall_class(c))
    });
    match (found, usable) {
        (Some(_), None) => log::warn!("events.fall.model names \"{name}\", which is not a detect model with a class \"Fall\": falls from the pose rule alone"),
        (None, _) => log::debug!("events.fall.model \"{name}\" is not loaded: falls from the pose rule alone"),
        _ => {}
    }
    usable
}

/// One frame's work: motion, a pass of the shared models when the gate lets it, the newest
/// detections drawn, one JPEG, the events, one packet for every viewer. Nothing is done when nobody
/// consumes the result (no viewer, no events). Without `analyse` (fenced), no model and no events.
pub fn process(ctx: &WorkerContext, pipe: &mut Pipeline, id: &str, frame: &mut Mat, frame_index: u64, analyse: bool) -> Result<(), FrameError> {
    let timestamp = ctx.deps.clock.wall();
    let s = pipe.settings(ctx);
    pipe.follow_event_settings(ctx);
    let infer = pipe.analyser.infers(&s, analyse);
    let watched = ctx.feed.receiver_count() > 0;
    let has_events = pipe.events.is_some() && infer;
    if !watched {
        forget_stale_packet(ctx);
        if !has_events {
            return Ok(());
        }
    }
    shrink_to(frame, s.resize_width)?;
    let frame = Captured { camera_id: id, image: frame, index: frame_index, timestamp, watched };
    // New answers first, so that this frame shows them and the events see them with this frame.
    let analysis = pipe.analyser.analyse(ctx, &s, pipe.events.as_ref(), &frame, infer)?;
    let wants = Wants { renditions: if watched { ctx.demand.current() } else { Vec::new() }, for_events: has_events, quality: s.jpeg_quality };
    let full = pipe.renderer.full_frame(&ctx.status, ctx.now(), frame.image, analysis.motion.moving, &pipe.analyser.looks, wants)?;
    let events = match (pipe.events.as_mut().filter(|_| infer), &full.jpeg) {
        (Some(events), Some(jpeg)) => event_feed::feed(events, &mut pipe.analyser, &s, &analysis.fresh, jpeg, &frame),
        _ => Vec::new(),
    };
    if ctx.feed.receiver_count() == 0 {
        return Ok(()); // encoded for the events' clips only: no message to build
    }
    let rendered = pipe.renderer.renditions(&ctx.status, frame.image, &pipe.analyser.looks, full)?;
    pipe.publisher.publish(ctx, &frame, &s, &pipe.analyser, &analysis, &events, rendered);
    Ok(())
}

/// Scales a frame wider than `width` down to it, keeping its aspect ratio.
fn shrink_to(frame: &mut Mat, width: Option<u32>) -> Result<(), FrameError> {
    let Some(w) = width else { return Ok(()) };
    let w = w as i32;
    if frame.cols() > w {
        let h = ((frame.rows() as f64) * (w as f64) / (frame.cols() as f64)).round() as i32;
        let mut small = Mat::default();
        imgproc::resize(&*frame, &mut small, Size::new(w, h), 0.0, 0.0, imgproc::INTER_AREA)?;
        *frame = small;
    }
    Ok(())
}
