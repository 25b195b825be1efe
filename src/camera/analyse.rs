//! Stage (b) of the frame step: motion, the detect gate, and the camera's lane into the shared
//! models (the answers that came since the last frame taken, this frame handed over when the gate
//! says it is worth a pass).

use std::sync::atomic::Ordering;
use std::time::Duration;

use opencv::core::Rect;
use opencv::prelude::*;

use super::error::FrameError;
use super::frame_settings::FrameSettings;
use super::frame_step::Captured;
use super::gate::{Decision, DetectGate};
use super::looks::{Looked, Looks};
use super::motion::{Motion, MotionDetector};
use super::worker::WorkerContext;
use crate::events::{EventEngine, EventKind};
use crate::inference::regions::{self, BudgetControl, Plan, RegionPlan};
use crate::inference::scheduler::{Inferred, Job, Lane, Priority, Run as ModelRun};
use crate::inference::{Engines, Task};

/// What stage (b) found in a frame.
pub struct Analysis {
    pub motion: Motion,
    /// Whether the models look at this camera's frames (`Analyser::infers`).
    pub infer: bool,
    /// The models with a new answer, taken with this frame.
    pub fresh: Vec<usize>,
}

/// A camera's motion detector, detect gate and lane, and what its models last saw.
pub struct Analyser {
    lane: Option<Lane>,
    motion: MotionDetector,
    gate: DetectGate,
    pub looks: Looks,
    /// This camera's share of the region budget, by how long its frames wait for the model.
    budget: BudgetControl,
    /// When this worker started: the gate's clock.
    epoch: Duration,
    /// The last look's time, all models together.
    pub inference_ms: f64,
    /// The fall model the events ask where the pose saw someone go down or vanish (its index in
    /// the scheduler), and its newest answer not yet handed to them.
    pub fall_model: Option<usize>,
    pub fall_looked: Option<Looked>,
}

impl Analyser {
    pub fn new(ctx: &WorkerContext, settings: &FrameSettings, fall_model: Option<usize>) -> Self {
        let models = ctx.deps.inference.as_ref().map_or(0, |s| s.engines().0.len());
        Self {
            lane: ctx.deps.inference.as_ref().map(|s| s.lane()),
            motion: MotionDetector::new(settings.motion),
            gate: DetectGate::new(settings.detect_fps, settings.idle_detect_interval_secs),
            looks: Looks::new(models),
            budget: BudgetControl::default(),
            epoch: ctx.now(),
            inference_ms: 0.0,
            fall_model,
            fall_looked: None,
        }
    }

    pub fn lane(&self) -> Option<&Lane> {
        self.lane.as_ref()
    }

    pub fn engines(&self) -> Option<&Engines> {
        self.lane.as_ref().map(Lane::engines)
    }

    pub fn task(&self, model: usize) -> Option<Task> {
        self.engines().and_then(|e| e.0.get(model)).map(|e| e.task())
    }

    /// Whether the models look at this frame: a model loaded and chosen, AI on, and (`analyse`) this
    /// node still owns the camera.
    pub fn infers(&self, settings: &FrameSettings, analyse: bool) -> bool {
        analyse && self.lane.is_some() && settings.ai_enabled && !settings.models.is_empty()
    }

    /// Motion first; then, where the models look (`infer`), the answers that came are taken (so that
    /// this frame shows them and the events see them with it) and the frame is handed over if the
    /// gate lets it.
    pub fn analyse(&mut self, ctx: &WorkerContext, s: &FrameSettings, events: Option<&EventEngine>, frame: &Captured, infer: bool) -> Result<Analysis, FrameError> {
        self.gate.set_rates(s.detect_fps, s.idle_detect_interval_secs);
        if *self.motion.settings() != s.motion {
            self.motion.set_settings(s.motion);
        }
        self.motion.set_mask(&s.motion_mask);
        let motion = self.motion.update(frame.image)?;
        ctx.status.set_motion(motion.moving, motion.area);
        let wanted: &[usize] = if infer { &s.models } else { &[] };
        self.looks.keep_only(wanted);
        let mut fresh = Vec::new();
        if infer {
            if let Some(result) = self.lane.as_ref().and_then(Lane::take) {
                fresh = self.collect(ctx, s, frame.camera_id, result);
            }
            self.maybe_detect(ctx, s, events, frame, &motion)?;
        }
        self.looks.refresh_shown(wanted, self.lane.as_ref().map(Lane::engines));
        Ok(Analysis { motion, infer, fresh })
    }

    /// Whether anyone is tracked (events on: or a fall story followed, a person lying where the pose
    /// model no longer sees them), or was seen in the newest poses (events off).
    fn people_tracked(&self, s: &FrameSettings, events: Option<&EventEngine>) -> bool {
        match events {
            Some(events) => !events.tracks().is_empty() || events.fall_watch_active(),
            None => s.pose_model.and_then(|m| self.looks.get(m)).is_some_and(|p| !p.detections.is_empty()),
        }
    }

    /// Whether objects of the camera's event classes are followed (events on), or a detect model saw
    /// something in its newest look (events off): a still scene is looked at again now and then.
    fn objects_tracked(&self, s: &FrameSettings, events: Option<&EventEngine>) -> bool {
        match events {
            Some(events) => !events.object_tracks().is_empty(),
            None => s
                .models
                .iter()
                .filter(|&&m| self.task(m) == Some(Task::Detect))
                .any(|&m| self.looks.get(m).is_some_and(|l| !l.detections.is_empty())),
        }
    }

    /// Takes the models' newest answer for this camera; returns the models with a fresh one.
    fn collect(&mut self, ctx: &WorkerContext, s: &FrameSettings, id: &str, result: Inferred) -> Vec<usize> {
        ctx.status.record_inference(result.inference_ms, result.queue_ms);
        self.inference_ms = result.inference_ms;
        // At every frame (detect_fps 0) a 10 fps camera's period.
        let period_ms = 1000.0 / if s.detect_fps > 0.0 { s.detect_fps } else { 10.0 };
        // In simulated time (`haven analyze`) frames never wait for the model: the regions keep their
        // whole budget, whatever else the machine is doing (the analysis repeats exactly).
        if !ctx.deps.wait_for_models {
            self.budget.observe(result.queue_ms, period_ms);
        }
        ctx.status.set_region_budget(self.budget.share() * s.region_budget);
        let mut fresh = Vec::new();
        for r in result.results {
            let Some(name) = self.engines().and_then(|e| e.0.get(r.model)).map(|e| e.model().clone()) else { continue };
            let detections = match r.detections {
                Ok(detections) => detections,
                Err(e) => {
                    log::warn!("[{id}] frame {}: {name}: {e}", result.frame_index);
                    ctx.status.set_error(Some(format!("{name}: {e}")));
                    continue;
                }
            };
            ctx.status.record_model(&name, r.inference_ms, detections.len());
            log::debug!(
                target: "haven::detect",
                "[{id}] frame {}: {name}: {} found in {} ({:.1} ms, waited {:.1} ms): {:?}",
                result.frame_index,
                detections.len(),
                match r.regions {
                    0 => "the whole frame".to_string(),
                    n => format!("{n} regions"),
                },
                r.inference_ms,
                result.queue_ms,
                detections.iter().map(|d| (&*d.class, d.bbox.map(|v| v.round() as i32), (d.score * 100.0).round() / 100.0)).collect::<Vec<_>>()
            );
            let looked = |detections| Looked { detections, frame_index: result.frame_index, timestamp: result.timestamp, regions: r.regions };
            // The fall model's answer goes to the events (and is shown only where the camera names
            // the model among its own).
            if Some(r.model) == self.fall_model {
                self.fall_looked = Some(looked(detections.clone()));
            }
            // A model switched off while its pass ran: its answer is not shown.
            if s.models.contains(&r.model) {
                self.looks.record(r.model, looked(detections));
                fresh.push(r.model);
            }
        }
        fresh
    }

    /// Hands the frame to the models the gate says are worth a pass.
    fn maybe_detect(&mut self, ctx: &WorkerContext, s: &FrameSettings, events: Option<&EventEngine>, frame: &Captured, motion: &Motion) -> Result<(), FrameError> {
        if self.lane.is_none() || s.models.is_empty() {
            return Ok(());
        }
        let (people, objects) = (self.people_tracked(s, events), self.objects_tracked(s, events));
        let now = (ctx.now() - self.epoch).as_secs_f64();
        let decision = self.gate.decide(now, motion.moving, people || objects);
        // A model switched on looks at once, whatever the gate says: a parked car is there though nothing moves.
        let newly: Vec<usize> = s.models.iter().copied().filter(|&m| !self.looks.first_looked(m)).collect();
        let chosen: Vec<usize> = match decision {
            Decision::FirstCheck | Decision::Motion => s.models.clone(),
            // Still: the models with something to keep following (people, objects), and new ones.
            Decision::IdleCheck => s
                .models
                .iter()
                .copied()
                .filter(|&m| newly.contains(&m) || matches!(self.task(m), Some(Task::Pose) if people) || matches!(self.task(m), Some(Task::Detect) if objects))
                .collect(),
            Decision::NoMotion | Decision::RateLimited => newly.clone(),
        };
        if chosen.is_empty() {
            if decision == Decision::NoMotion {
                ctx.status.inferences_skipped.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        let Some(lane) = &self.lane else { return Ok(()) };
        lane.set_priority(priority(events, frame.watched));
        let runs = self.runs(s, events, frame, motion, decision, &chosen, &newly);
        for &m in &chosen {
            self.looks.mark_first_looked(m);
        }
        let Some(lane) = &self.lane else { return Ok(()) };
        let replaced = lane.replaced();
        lane.submit(Job { frame: crate::frame_pool::copy_of(&frame.image)?, frame_index: frame.index, timestamp: frame.timestamp, runs });
        ctx.status.inferences_replaced.fetch_add(lane.replaced() - replaced, Ordering::Relaxed);
        if ctx.deps.wait_for_models {
            lane.wait_idle();
        }
        Ok(())
    }

    /// How each chosen model looks. People: where something moves or people are tracked, in regions
    /// (small, far people are found there). Objects: the whole frame at the model's input, so that
    /// what stands still (a parked car) is seen as well as what moves. And the fall model, where a
    /// person's story asks for it (with the pose model's look).
    #[allow(clippy::too_many_arguments)]
    fn runs(&self, s: &FrameSettings, events: Option<&EventEngine>, frame: &Captured, motion: &Motion, decision: Decision, chosen: &[usize], newly: &[usize]) -> Vec<ModelRun> {
        let mut runs = Vec::with_capacity(chosen.len());
        for &m in chosen {
            let run = match (decision, self.task(m)) {
                (Decision::FirstCheck, _) => ModelRun::whole(m),
                _ if newly.contains(&m) => ModelRun::whole(m),
                (_, Some(Task::Pose)) if s.regions => {
                    let (regions, region_scale) = self.regions(m, frame, motion, s);
                    ModelRun { model: m, regions, region_scale }
                }
                _ => ModelRun::whole(m),
            };
            runs.push(run);
        }
        if let (Some(f), Some(events)) = (self.fall_model, events) {
            if !chosen.contains(&f) && chosen.iter().any(|&m| self.task(m) == Some(Task::Pose)) && events.wants_fall_look(frame.timestamp) {
                runs.push(ModelRun::whole(f));
            }
        }
        runs
    }

    /// Where the pose model `model` looks: around what moves and the people tracked, in regions of the
    /// full frame enlarged within the cost of one square pass; none (the whole frame) where regions
    /// would look no finer than the whole frame does, or would be too many.
    fn regions(&self, model: usize, frame: &Captured, motion: &Motion, s: &FrameSettings) -> (Vec<Rect>, f32) {
        let Some(lane) = &self.lane else { return (Vec::new(), 1.0) };
        let (w, h) = (frame.image.cols(), frame.image.rows());
        let whole = lane.whole_frame_input(model, w as usize, h as usize);
        let tracked: Vec<[f32; 4]> = self.looks.get(model).iter().flat_map(|p| p.detections.iter().map(|d| d.bbox)).collect();
        let budget = s.region_budget * self.budget.share();
        let opts = RegionPlan { scale: s.region_scale, budget, ..RegionPlan::default() };
        let plan = regions::plan(w, h, &motion.boxes, &tracked, &opts, whole);
        log::trace!(target: "haven::detect", "motion {:?}, tracked {:?}: {plan:?}", motion.boxes, tracked);
        match plan {
            Plan::Regions(r, scale) => (r, scale),
            Plan::WholeFrame | Plan::Nothing => (Vec::new(), 1.0),
        }
    }
}

/// Whose frames the shared models take first: a fall's, a person's, a watched camera's, the rest.
fn priority(events: Option<&EventEngine>, watched: bool) -> Priority {
    let active = events.map(|e| e.active()).unwrap_or_default();
    if active.iter().any(|e| e.kind == EventKind::Fall) {
        Priority::Fall
    } else if !active.is_empty() {
        Priority::Person
    } else if watched {
        Priority::Watched
    } else {
        Priority::Background
    }
}
