//! Events: people tracked across frames, falls detected from their poses, clips and an event store.
//!
//! * [`EventHub`]: one per process: the [`EventStore`], the alert broadcast and the events still active.
//! * [`EventEngine`]: one per camera, fed by the camera thread once per processed frame: tracker,
//!   fall detector, `person_detected` / `fall` events, snapshots and clips (through a [`Recorder`]
//!   whose writer thread does the slow work).
//!
//! See `docs/events.md`.

pub mod fall;
pub mod recorder;
pub mod store;
pub mod story;
pub mod tracker;
mod validate;


use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use opencv::core::Mat;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use fall::{FallConfig, FallDetector, FallReason, FallUpdate};
pub use recorder::{ClipDone, Recorder, RecorderConfig};
pub use store::{ClipInfo, EventFilter, EventStore, RetentionReport, StoreError};
pub use story::{Story, StoryUpdate, Trigger};
pub use tracker::{TrackedPerson, Tracker, TrackerConfig};

use crate::inference::Detection;

/// Alerts a slow `/ws/alerts` viewer may fall behind by before it misses some.
const ALERT_CAPACITY: usize = 256;
/// Sub-directories of `data_dir`.
pub const CLIPS_DIR: &str = "clips";
pub const SNAPSHOTS_DIR: &str = "snapshots";
pub const DB_FILE: &str = "events.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PersonDetected,
    Fall,
    /// An object of a class the camera names in `object_events`, from one of its detect models.
    ObjectDetected,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [EventKind::PersonDetected, EventKind::Fall, EventKind::ObjectDetected];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PersonDetected => "person_detected",
            EventKind::Fall => "fall",
            EventKind::ObjectDetected => "object_detected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What an alert says happened: the event started, or it ended (`ended_at` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventPhase {
    Start,
    End,
}

/// What to expect of an event's clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipStatus {
    /// None will be recorded: events are off, `person_clips` is off for a `person_detected` event,
    /// `max_concurrent_clips` were already being written, or the store could not take the event.
    None,
    /// Being recorded (while the event lasts, then its post-roll and the writing of the file).
    Recording,
    /// Complete: `clip_path` is set.
    Ready,
    /// Not recorded after all: `clip_error` says why.
    Failed,
}

/// One event, as stored, listed and pushed on `/ws/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The store's id (`None` only if the store could not take the event).
    pub id: Option<i64>,
    pub camera_id: String,
    pub kind: EventKind,
    pub phase: EventPhase,
    pub track_id: u64,
    /// The model whose detections raised it ("pose" for people and falls); `None` in events stored
    /// before models had names.
    pub model: Option<String>,
    /// What it is about: "person", or the object's class (`object_detected`).
    pub class: Option<String>,
    /// Unix seconds: the person (object) first seen, or gone down (fall).
    pub started_at: f64,
    /// Unix seconds: the person last seen, or up again; `None` while the event goes on.
    pub ended_at: Option<f64>,
    /// Detection score (person_detected) or fall confidence (fall), 0..1.
    pub score: f32,
    /// The person's box (x1, y1, x2, y2, frame pixels) when the event was raised.
    pub bbox: [f32; 4],
    /// The 17 COCO keypoints [x, y, conf] that raised the event (empty for objects).
    pub keypoints: Vec<[f32; 3]>,
    /// Relative to `events.data_dir`; set once the clip is complete (serve it by `/api/events/{id}/clip.mp4`).
    pub clip_path: Option<String>,
    pub snapshot_path: Option<String>,
    pub clip_frames: Option<u32>,
    pub clip_fps: Option<f32>,
    /// Unix time of the clip's first frame: `started_at - clip_started_at` is the event's offset in it.
    pub clip_started_at: Option<f64>,
    /// Why the event has no clip, if its recording failed (a full disk, say).
    pub clip_error: Option<String>,
    /// What to expect of the clip: none, recording, ready (`clip_path`) or failed (`clip_error`).
    pub clip_status: ClipStatus,
    /// The cluster node that raised it (absent on a single server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Unix seconds: when the event was raised (its alert sent). A fall is raised once it is sure,
    /// after it began (`started_at`); `None` in events stored before this was kept.
    #[serde(default)]
    pub raised_at: Option<f64>,
    /// Why a fall was raised: which evidence, with its scores (`None` for other kinds).
    #[serde(default)]
    pub reason: Option<FallReason>,
}

/// What changed in a stored event: what a cluster node tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventChange {
    Start,
    End,
    /// Its snapshot is written.
    Snapshot,
    /// Its clip is complete, or failed.
    Clip,
}

impl EventChange {
    pub fn as_str(self) -> &'static str {
        match self {
            EventChange::Start => "start",
            EventChange::End => "end",
            EventChange::Snapshot => "snapshot",
            EventChange::Clip => "clip",
        }
    }
}

/// Told of every change to a stored event (a cluster node's link to the others), with the event
/// as it is at that change where the caller has it (else the sink reads the store).
pub type EventSink = Box<dyn Fn(i64, EventChange, Option<Event>) + Send + Sync>;

impl Event {
    pub fn is_active(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// `[events]` in the settings file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    pub enabled: bool,
    /// Holds `events.db`, `clips/` and `snapshots/`.
    pub data_dir: PathBuf,
    /// Seconds of video kept before an event starts...
    pub pre_roll_secs: f64,
    /// ...and after it ends.
    pub post_roll_secs: f64,
    /// A clip stops at most this long after its event started, even if the event goes on.
    pub max_clip_secs: f64,
    /// Also record clips for `person_detected` (falls always get one).
    pub person_clips: bool,
    /// At most this many clips are written at once per camera; a `person_detected` event beyond it
    /// gets a snapshot but no clip.
    pub max_concurrent_clips: usize,
    /// A track must be seen this long before `person_detected` starts (debounce).
    pub person_min_secs: f64,
    /// Events (and their files) older than this are deleted; 0 keeps them forever.
    pub retention_days: f64,
    /// The clips' and snapshots' total size is kept under this, oldest deleted first; 0: no limit.
    pub retention_max_bytes: u64,
    pub fall: FallConfig,
    pub tracker: TrackerConfig,
    /// `object_detected`: how objects are followed from look to look.
    pub objects: ObjectEventSettings,
}

/// `[events.objects]`: one `object_detected` event per object presence, an object being followed
/// across looks by its own tracker (same class, overlapping or near boxes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectEventSettings {
    /// An object must be seen this long (and in two looks) before its event starts: a box the model
    /// gives once is not an event.
    pub min_secs: f64,
    /// The event ends when the object has not been seen for this long. Longer than people's: a still
    /// scene is looked at only at `idle_detect_interval_secs`, and detect models miss objects now and then.
    pub max_unseen_secs: f64,
    /// Detections scoring below this are not followed.
    pub min_score: f32,
    /// A detection continues an object's track whose box it overlaps by at least this IoU...
    pub iou_threshold: f32,
    /// ...or whose centre lies within this fraction of the larger box's larger side.
    pub max_center_distance: f32,
    /// Record clips for `object_detected` (a snapshot is always kept).
    pub clips: bool,
}

impl Default for ObjectEventSettings {
    fn default() -> Self {
        Self { min_secs: 1.0, max_unseen_secs: 5.0, min_score: 0.4, iou_threshold: 0.3, max_center_distance: 0.5, clips: false }
    }
}

impl ObjectEventSettings {
    pub fn tracker(&self) -> TrackerConfig {
        TrackerConfig {
            iou_threshold: self.iou_threshold,
            max_center_distance: self.max_center_distance,
            max_unseen_secs: self.max_unseen_secs,
            min_score: self.min_score,
        }
    }
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            data_dir: PathBuf::from("data/events"),
            pre_roll_secs: 3.0,
            post_roll_secs: 3.0,
            max_clip_secs: 60.0,
            person_clips: false,
            max_concurrent_clips: 4,
            person_min_secs: 0.5,
            retention_days: 7.0,
            retention_max_bytes: 2 << 30,
            fall: FallConfig::default(),
            tracker: TrackerConfig::default(),
            objects: ObjectEventSettings::default(),
        }
    }
}

impl EventSettings {
    fn recorder_config(&self) -> RecorderConfig {
        RecorderConfig {
            pre_roll_secs: self.pre_roll_secs,
            post_roll_secs: self.post_roll_secs,
            // A fall is known min_duration after it started, a person person_min_secs after first seen.
            // A track ends max_unseen_secs after it was last seen, a fall 1 s after the person got up.
            // (Object events end `objects.max_unseen_secs` after last seen: their clips, when on,
            // may run that much past the end; people's clips are not delayed for them.)
            end_delay_secs: self.tracker.max_unseen_secs.max(1.0) + 0.5,
            ring_secs: self.pre_roll_secs
                + (self.fall.min_duration_secs as f64).max(self.person_min_secs).max(self.objects.min_secs)
                + self.tracker.max_unseen_secs.max(1.0)
                + 3.0,
            max_clip_secs: self.max_clip_secs,
            ..RecorderConfig::default()
        }
    }
}

/// Shared by every camera and every HTTP handler.
pub struct EventHub {
    settings: EventSettings,
    store: Mutex<EventStore>,
    alerts: broadcast::Sender<Event>,
    /// Events started and not yet ended, by id (or by a negative key for events the store refused).
    active: Mutex<BTreeMap<i64, Event>>,
    unstored: Mutex<i64>,
    /// On a cluster node: its name and where changes go (`join_cluster`).
    cluster: OnceLock<(String, EventSink)>,
}

impl EventHub {
    /// Opens (creating) `data_dir/events.db`, removes files no event refers to and applies retention.
    /// Call before any camera starts.
    pub fn open(settings: &EventSettings) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(&settings.data_dir)?;
        let store = EventStore::open(&settings.data_dir.join(DB_FILE))?;
        store.sweep_orphans(&[CLIPS_DIR, SNAPSHOTS_DIR])?;
        let (alerts, _) = broadcast::channel(ALERT_CAPACITY);
        let hub = Arc::new(Self {
            settings: settings.clone(),
            store: Mutex::new(store),
            alerts,
            active: Mutex::new(BTreeMap::new()),
            unstored: Mutex::new(0),
            cluster: OnceLock::new(),
        });
        hub.enforce_retention();
        Ok(hub)
    }

    pub fn settings(&self) -> &EventSettings {
        &self.settings
    }

    /// The store, locked. Keep the guard briefly (one query).
    pub fn store(&self) -> MutexGuard<'_, EventStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The events of `camera` (or every camera) still active, oldest first, and a receiver of every
    /// event from now on: nothing is lost or repeated between the two.
    pub fn subscribe(&self, camera: Option<&str>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.alerts.subscribe();
        let mut events: Vec<Event> =
            active.values().filter(|e| camera.is_none_or(|c| e.camera_id == c)).cloned().collect();
        events.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
        (events, rx)
    }

    /// The events of `camera` (or every camera) still active.
    pub fn active(&self, camera: Option<&str>) -> Vec<Event> {
        self.subscribe(camera).0
    }

    /// A cluster node: its events carry `node` and ids from `id_base` on, and every change to a
    /// stored event goes to `sink` too. Call before any camera starts.
    pub fn join_cluster(&self, node: &str, id_base: i64, sink: EventSink) {
        self.store().set_cluster(node, id_base);
        let _ = self.cluster.set((node.to_string(), sink));
    }

    /// This node's name in a cluster.
    pub fn node(&self) -> Option<&str> {
        self.cluster.get().map(|(n, _)| n.as_str())
    }

    /// Tells the cluster (if any) that event `id` changed (to `event`, if given).
    pub fn changed(&self, id: i64, change: EventChange, event: Option<&Event>) {
        if let Some((_, sink)) = self.cluster.get() {
            sink(id, change, event.cloned());
        }
    }

    /// Records a start or end in the active set and pushes it to every alert viewer (and the cluster).
    pub fn publish(&self, event: &Event) -> i64 {
        let mut event = event.clone();
        if event.node.is_none() {
            event.node = self.node().map(str::to_string);
        }
        let key = self.announce(&event, true);
        if let Some(id) = event.id {
            self.changed(id, if event.is_active() { EventChange::Start } else { EventChange::End }, Some(&event));
        }
        key
    }

    /// Another node's event as its latest message says: into the store, and (a start or an end)
    /// into the active set, pushed to this node's alert viewers when `live` (not a replay of the
    /// stream at start-up).
    pub fn receive(&self, event: &Event, change: EventChange, live: bool) {
        match self.store().upsert_remote(event) {
            Ok(true) => {}
            Ok(false) => {
                log::warn!("event {:?} of node {:?}: its id is taken here by another node's event; not stored", event.id, event.node);
                return;
            }
            Err(e) => log::warn!("cannot store event {:?} of node {:?}: {e}", event.id, event.node),
        }
        if matches!(change, EventChange::Start | EventChange::End) {
            self.announce(event, live);
        }
    }

    /// Ends the events of `camera` still active here that another node raised: that node stopped
    /// owning the camera without ending them (killed, cut off). They end `at` (the takeover), a
    /// clip they were recording is marked failed; returns them (already pushed to this node's
    /// viewers and, through `changed`, to the cluster).
    pub fn end_abandoned(&self, camera: &str, at: f64) -> Vec<Event> {
        let me = self.node();
        let abandoned: Vec<Event> = self
            .active(Some(camera))
            .into_iter()
            .filter(|e| e.id.is_some() && e.node.is_some() && e.node.as_deref() != me)
            .collect();
        let mut out = Vec::new();
        for mut ev in abandoned {
            let id = ev.id.expect("filtered");
            let at = at.max(ev.started_at);
            ev.ended_at = Some(at);
            ev.phase = EventPhase::End;
            let store = self.store();
            let _ = store.set_ended(id, at);
            if ev.clip_status == ClipStatus::Recording {
                let why = format!("node {} stopped before the clip was complete", ev.node.as_deref().unwrap_or("?"));
                let _ = store.set_clip_failed(id, &why);
                ev.clip_status = ClipStatus::Failed;
                ev.clip_error = Some(why);
            }
            drop(store);
            self.announce(&ev, true);
            self.changed(id, EventChange::End, Some(&ev));
            out.push(ev);
        }
        out
    }

    /// Records a start or end in the active set and, if `push`, pushes it to every alert viewer.
    fn announce(&self, event: &Event, push: bool) -> i64 {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let key = match event.id {
            Some(id) => id,
            None => {
                // Not stored: key it by camera, kind and track among the active ones.
                let found = active.iter().find(|(k, e)| {
                    **k < 0 && e.camera_id == event.camera_id && e.kind == event.kind && e.track_id == event.track_id
                });
                match found {
                    Some((k, _)) => *k,
                    None => {
                        let mut n = self.unstored.lock().unwrap_or_else(|p| p.into_inner());
                        *n -= 1;
                        *n
                    }
                }
            }
        };
        if event.is_active() {
            active.insert(key, event.clone());
        } else {
            active.remove(&key);
        }
        if push {
            let _ = self.alerts.send(event.clone());
        }
        key
    }

    /// Deletes events (and their files) past `retention_days` or beyond `retention_max_bytes`.
    pub fn enforce_retention(&self) -> RetentionReport {
        let now = now();
        let max_age = (self.settings.retention_days > 0.0).then_some(self.settings.retention_days * 86400.0);
        let max_bytes = (self.settings.retention_max_bytes > 0).then_some(self.settings.retention_max_bytes);
        match self.store().apply_retention(now, max_age, max_bytes) {
            Ok(report) => {
                if report.events > 0 {
                    log::info!("events retention: deleted {} events, {} files, {} bytes", report.events, report.files, report.bytes);
                }
                report
            }
            Err(e) => {
                log::warn!("events retention failed: {e}");
                RetentionReport::default()
            }
        }
    }

    /// The engine for one camera.
    pub fn engine(self: &Arc<Self>, camera_id: &str) -> EventEngine {
        EventEngine::new(camera_id, self.clone())
    }
}

/// Unix time in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// A camera id as a path component.
fn path_safe(id: &str) -> String {
    let s: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

#[derive(Default)]
struct PersonState {
    fall: Option<FallDetector>,
    /// The person_detected event, once started.
    person: Option<Event>,
    /// The fall in progress (raised by the pose rule or by the story).
    fall_event: Option<Event>,
    /// What the fall model is asked about this person (cameras with a fall model only).
    story: Option<Story>,
    /// The last time the pose saw them upright.
    upright_at: Option<f64>,
    /// Their body's length: the largest box side the pose gave them.
    body: f32,
    /// Their last keypoints, for a fall raised while the pose model no longer sees them.
    keypoints: Vec<[f32; 3]>,
    /// Their boxes while seen upright, the last few seconds (time, box).
    upright_boxes: std::collections::VecDeque<(f64, [f32; 4])>,
    /// Their box's shape changed from the upright one (wider, or much shorter) in their last sighting.
    reshaped: bool,
    /// The tracker ended their track: only their story (a fall going on) keeps them.
    gone: bool,
}

/// Two falls whose boxes overlap this much (of the smaller) are about the same person.
const SAME_FALL_OVERLAP: f32 = 0.5;

/// Looks of the fall model for stories not yet sure: at most this many in a row (enough for a fall
/// and a false start or two) ...
const FALL_LOOKS_BURST: f64 = 16.0;
/// ... then this many a second on average (a camera where nobody falls costs at most this).
const FALL_LOOKS_PER_SEC: f64 = 0.25;

/// A box within this share of the frame's width from its left or right edge is at the edge: a person
/// lost there walked out of view. (The top and bottom are not: a person near the camera is cut off
/// there while still in the room.)
const EDGE_MARGIN: f32 = 0.02;

/// One camera's events. The camera thread calls `on_frame` once per processed frame; the work it
/// does there is the tracker, the fall rule, a JPEG copy into the clip queue and, rarely (when an
/// event starts or ends), one SQLite row. Clips and snapshots are written by the recorder's thread.
pub struct EventEngine {
    camera_id: String,
    hub: Arc<EventHub>,
    settings: EventSettings,
    tracker: Tracker,
    people: HashMap<u64, PersonState>,
    /// Objects of the classes the camera names (`object_events`), and each one's event once started.
    objects: Tracker,
    object_classes: Vec<String>,
    object_events: HashMap<u64, Event>,
    recorder: Option<Recorder>,
    /// The newest frame pushed, and the newest frame the model looked at (people, objects, falls).
    last_t: f64,
    last_detection_t: f64,
    last_objects_t: f64,
    last_fall_look_t: f64,
    /// The fall model this camera asks (`[events.fall] model`, when it is loaded).
    fall_model: Option<String>,
    /// Looks of the fall model left for stories not yet sure (refilled over time; `FALL_LOOKS_*`),
    /// and when they were last counted.
    fall_looks_left: f64,
    fall_looks_at: f64,
    /// The frame's size (width, height): people lost at its edges walked out of view.
    frame_size: (f32, f32),
}

impl EventEngine {
    pub fn new(camera_id: &str, hub: Arc<EventHub>) -> Self {
        let settings = hub.settings().clone();
        let recorder = settings.enabled.then(|| Recorder::new(camera_id, settings.recorder_config()));
        Self {
            camera_id: camera_id.to_string(),
            tracker: Tracker::new(settings.tracker),
            objects: Tracker::for_classes(settings.objects.tracker(), &[]),
            object_classes: Vec::new(),
            object_events: HashMap::new(),
            settings,
            hub,
            people: HashMap::new(),
            recorder,
            last_t: f64::NEG_INFINITY,
            last_detection_t: f64::NEG_INFINITY,
            last_objects_t: f64::NEG_INFINITY,
            last_fall_look_t: f64::NEG_INFINITY,
            fall_model: None,
            fall_looks_left: FALL_LOOKS_BURST,
            fall_looks_at: f64::NEG_INFINITY,
            frame_size: (0.0, 0.0),
        }
    }

    /// The fall model the camera asks where the pose saw someone go down or vanish (`None`: the
    /// pose rule alone).
    pub fn set_fall_model(&mut self, model: Option<&str>) {
        self.fall_model = model.map(str::to_string);
        if self.fall_model.is_none() {
            for p in self.people.values_mut() {
                p.story = None;
            }
        }
    }

    pub fn set_frame_size(&mut self, width: i32, height: i32) {
        self.frame_size = (width as f32, height as f32);
    }

    /// Whether the fall model should look at the frame captured at `t`: a fall going on always
    /// may; stories not yet sure share a budget of looks, so that a scene that keeps opening them
    /// (people vanishing where the pose model cannot follow them) cannot keep the fall model busy.
    pub fn wants_fall_look(&self, t: f64) -> bool {
        if self.fall_model.is_none() {
            return false;
        }
        let mut wanting = self.people.values().filter_map(|p| p.story.as_ref()).filter(|s| s.wants_look(t));
        wanting.clone().any(|s| s.raised) || (wanting.next().is_some() && self.fall_looks_available(t) >= 1.0)
    }

    fn fall_looks_available(&self, t: f64) -> f64 {
        let refill = if self.fall_looks_at.is_finite() { (t - self.fall_looks_at).max(0.0) * FALL_LOOKS_PER_SEC } else { 0.0 };
        (self.fall_looks_left + refill).min(FALL_LOOKS_BURST)
    }

    /// Whether a story is being followed (the camera keeps looking, now and then, while nothing moves).
    pub fn fall_watch_active(&self) -> bool {
        self.people.values().any(|p| p.story.as_ref().is_some_and(|s| s.alive(self.last_detection_t)))
    }

    fn at_edge(&self, b: &[f32; 4]) -> bool {
        let (w, h) = self.frame_size;
        if w <= 0.0 {
            return false;
        }
        let mx = EDGE_MARGIN * w;
        h > 0.0 && (b[0] <= mx || b[2] >= w - mx)
    }

    /// The classes that raise `object_detected` (the camera's `object_events`); objects of classes
    /// no longer named end their events as if gone.
    pub fn set_object_classes(&mut self, classes: &[String]) {
        if self.object_classes != classes {
            self.object_classes = classes.to_vec();
            self.objects.set_classes(classes);
        }
    }

    /// The objects followed now (for the gate: a parked car is looked at again now and then).
    pub fn object_tracks(&self) -> &[TrackedPerson] {
        self.objects.tracks()
    }

    /// What a detect model (`model`) found in the frame captured at `t`: objects of the named
    /// classes are followed, and each one seen for `objects.min_secs` (in two looks at least) gets
    /// one `object_detected` event, which ends when it has been gone for `objects.max_unseen_secs`.
    pub fn on_objects(&mut self, model: &str, detections: &[Detection], t: f64, jpeg: Option<&[u8]>) -> Vec<Event> {
        if !self.settings.enabled || t <= self.last_objects_t {
            return Vec::new();
        }
        self.last_objects_t = t;
        let mut out = Vec::new();
        let tracks = self.objects.update(detections, t);
        for track in tracks.iter().filter(|tr| tr.seen_now()) {
            let start = !self.object_events.contains_key(&track.track_id)
                && track.age_secs + 1e-9 >= self.settings.objects.min_secs
                && track.hits >= 2;
            if start {
                let mut ev = self.new_event(EventKind::ObjectDetected, track.track_id, &track.class, track.first_seen, t, track.score, &[], track.bbox);
                ev.model = Some(model.to_string());
                let ev = self.start(ev, jpeg);
                self.object_events.insert(track.track_id, ev.clone());
                out.push(ev);
            }
        }
        for gone in self.objects.take_expired() {
            if let Some(ev) = self.object_events.remove(&gone.track_id) {
                out.push(self.end(ev, gone.last_seen));
            }
        }
        out
    }

    pub fn camera_id(&self) -> &str {
        &self.camera_id
    }

    /// A camera's own fall settings (from its `[[cameras]]` entry, say); applies to people from now on
    /// and to those already tracked.
    pub fn set_fall_config(&mut self, config: FallConfig) {
        for p in self.people.values_mut() {
            if let Some(d) = &mut p.fall {
                d.set_config(config.clone());
            }
        }
        self.settings.fall = config;
    }

    /// This camera's fall settings.
    pub fn fall_config(&self) -> &FallConfig {
        &self.settings.fall
    }

    /// This camera's active events (for frame metadata).
    pub fn active(&self) -> Vec<Event> {
        let mut v: Vec<Event> = self
            .people
            .values()
            .flat_map(|p| [p.person.clone(), p.fall_event.clone()])
            .flatten()
            .chain(self.object_events.values().cloned())
            .collect();
        v.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
        v
    }

    /// The people tracked now.
    pub fn tracks(&self) -> &[TrackedPerson] {
        self.tracker.tracks()
    }

    /// One processed frame with the model's detections in it: [`Self::push_frame`] then
    /// [`Self::on_detections`]. Returns the events that started or ended with this frame.
    pub fn on_frame(&mut self, frame: &Mat, jpeg: Option<&[u8]>, detections: &[Detection], t: f64) -> Vec<Event> {
        if !self.settings.enabled || t <= self.last_t {
            return Vec::new();
        }
        let encoded;
        let jpeg = match jpeg {
            Some(j) => Some(j),
            None => match crate::jpeg::encode(frame, recorder::JPEG_QUALITY) {
                Ok(j) => {
                    encoded = j;
                    Some(&encoded[..])
                }
                Err(e) => {
                    log::warn!("[{}] events: cannot encode the frame: {e}", self.camera_id);
                    None
                }
            },
        };
        if let Some(j) = jpeg {
            self.push_frame(j, t);
        }
        self.on_detections(detections, t, jpeg)
    }

    /// A frame for the clips (its JPEG, `t` its unix time). Every streamed frame goes here, whether
    /// the model looked at it or not.
    pub fn push_frame(&mut self, jpeg: &[u8], t: f64) {
        if !self.settings.enabled || t <= self.last_t {
            return;
        }
        self.last_t = t;
        if let Some(rec) = &mut self.recorder {
            rec.push_frame(t, jpeg);
        }
    }

    /// What the model found in the frame captured at `t` (unix time; increasing from call to call).
    /// `jpeg` is the frame to keep as an event's snapshot. Returns the events that started or ended
    /// (already stored and broadcast).
    pub fn on_detections(&mut self, detections: &[Detection], t: f64, jpeg: Option<&[u8]>) -> Vec<Event> {
        if !self.settings.enabled || t <= self.last_detection_t {
            return Vec::new();
        }
        self.last_detection_t = t;
        let mut out = Vec::new();
        let tracks = self.tracker.update(detections, t);
        let with_model = self.fall_model.is_some();
        for track in tracks.iter().filter(|tr| !tr.seen_now()) {
            // Lost now, away from the frame's edges, shortly after being seen upright: perhaps down
            // where the pose model no longer sees them (it often loses a person at the very start of
            // a fast fall). The fall model is asked when their box had already turned from upright,
            // or when they were seen clearly (large, a sure score: small far people flicker in and
            // out of the model's sight) with nobody else near them (no one to hide them: in a crowd
            // people are lost behind each other all the time).
            if !with_model || track.lost_frames != 1 || self.at_edge(&track.bbox) {
                continue;
            }
            let clear = track.score >= story::CLEAR_SCORE && track.bbox[3] - track.bbox[1] >= story::CLEAR_HEIGHT * self.frame_size.1;
            let alone = clear && !tracks.iter().any(|other| other.track_id != track.track_id && story::near(&other.bbox, &track.bbox));
            let Some(state) = self.people.get_mut(&track.track_id) else { continue };
            match &mut state.story {
                Some(story) => story.unseen = true,
                None if state.fall_event.is_none()
                    && (state.reshaped || alone)
                    && state.upright_at.is_some_and(|u| t - u <= story::UPRIGHT_BEFORE_SECS) =>
                {
                    let trigger = if state.reshaped { Trigger::Lost } else { Trigger::Vanished };
                    log::debug!(target: "haven::falls", "[{}] track {}: {trigger:?} at {:?}: asking the fall model", self.camera_id, track.track_id, track.bbox);
                    state.story = Some(Story::open(trigger, track.bbox, state.body, t));
                }
                None => {}
            }
        }
        for track in tracks.iter().filter(|tr| tr.seen_now()) {
            let fall_config = &self.settings.fall;
            let state = self.people.entry(track.track_id).or_default();
            let detector = state.fall.get_or_insert_with(|| FallDetector::new(fall_config.clone()));
            let update = detector.update(&track.keypoints, track.bbox, t);
            let down = detector.score();
            let drop = detector.recent_drop(t);
            // Upright in this very frame (the smoothed score keeps its last value while the torso is
            // not seen, as it often is not when someone lies on the floor).
            let now_down = fall::down_score(&fall::features(&track.keypoints, track.bbox));
            state.body = state.body.max(tracker::larger_side(&track.bbox));
            state.keypoints.clone_from(&track.keypoints);
            // Without a torso (a small, far person), a box much taller than wide is upright too.
            let upright = match now_down {
                Some(s) => s < story::UPRIGHT_SCORE && down.is_none_or(|d| d < story::UPRIGHT_SCORE),
                None => (track.bbox[2] - track.bbox[0]) < story::UPRIGHT_ASPECT * (track.bbox[3] - track.bbox[1]),
            };
            if upright {
                state.upright_at = Some(t);
                state.upright_boxes.push_back((t, track.bbox));
            }
            while state.upright_boxes.front().is_some_and(|b| b.0 < t - story::UPRIGHT_BEFORE_SECS) {
                state.upright_boxes.pop_front();
            }
            // Against their tallest upright box of the last seconds (mid-fall the pose may still
            // look upright for a look or two while the box already shrinks).
            let tallest = state.upright_boxes.iter().max_by(|a, b| (a.1[3] - a.1[1]).total_cmp(&(b.1[3] - b.1[1])));
            state.reshaped = tallest.is_some_and(|(_, upright)| story::reshaped(upright, &track.bbox));
            log::trace!(
                target: "haven::falls",
                "[{}] track {} at {t:.2}: down {down:?} (now {now_down:?}), drop {drop:?}, upright {:?} ago, reshaped {}",
                self.camera_id,
                track.track_id,
                state.upright_at.map(|u| t - u),
                state.reshaped
            );
            let mut story_update = StoryUpdate::None;
            if with_model {
                // A fast drop of someone who was upright, their box no longer an upright one, their
                // pose not plainly upright now: the fall model is asked.
                let leaning = now_down.is_none_or(|s| s >= story::LEANING_SCORE);
                match (&mut state.story, drop.filter(|_| state.reshaped && leaning)) {
                    (Some(story), Some(_)) => story.retrigger(t),
                    (None, Some(d)) if state.fall_event.is_none() && state.upright_at.is_some_and(|u| t - u <= story::UPRIGHT_BEFORE_SECS) => {
                        log::debug!(target: "haven::falls", "[{}] track {}: a drop of {d:.2} at {:?}: asking the fall model", self.camera_id, track.track_id, track.bbox);
                        state.story = Some(Story::open(Trigger::Drop(d), track.bbox, state.body, t));
                    }
                    _ => {}
                }
                if let Some(story) = &mut state.story {
                    story_update = story.pose_seen(track.bbox, now_down.zip(down).map(|(a, b)| a.max(b)), t);
                }
            }
            let start_person = state.person.is_none()
                && track.age_secs + 1e-9 >= self.settings.person_min_secs
                && track.hits >= 2;
            if start_person {
                let ev = self.new_event(EventKind::PersonDetected, track.track_id, &track.class, track.first_seen, t, track.score, &track.keypoints, track.bbox);
                let ev = self.start(ev, jpeg);
                self.people.entry(track.track_id).or_default().person = Some(ev.clone());
                out.push(ev);
            }
            if let StoryUpdate::Up { at } = story_update {
                log::debug!(target: "haven::falls", "[{}] track {}: seen up by the pose since {at:.2}", self.camera_id, track.track_id);
                out.extend(self.end_fall(track.track_id, at));
            }
            match update {
                FallUpdate::Fell { started_at, score, keypoints, bbox, mut reason } => {
                    let state = self.people.entry(track.track_id).or_default();
                    if state.fall_event.is_some() {
                        continue; // the story raised it already
                    }
                    if let Some(story) = &mut state.story {
                        if let Some((looks, mean)) = story.model_agrees() {
                            reason.by = "pose+model".into();
                            reason.model_fall = Some(fall::round2(mean));
                            reason.model_looks = Some(looks);
                            reason.summary += &format!("; fall model: Fall {mean:.2} in {looks} looks");
                        }
                        story.raised_by_pose();
                    }
                    let mut ev = self.new_event(EventKind::Fall, track.track_id, &track.class, started_at, t, score, &keypoints, bbox);
                    ev.reason = Some(reason);
                    let ev = self.start(ev, jpeg);
                    self.people.entry(track.track_id).or_default().fall_event = Some(ev.clone());
                    out.push(ev);
                }
                FallUpdate::Recovered { ended_at } => {
                    // A fall the story follows ends when the story says (the pose alone is least
                    // sure of people lying on the floor).
                    let followed = self.people.get(&track.track_id).is_some_and(|p| p.story.as_ref().is_some_and(|s| s.raised));
                    if !followed {
                        out.extend(self.end_fall(track.track_id, ended_at));
                    }
                }
                FallUpdate::None => {}
            }
        }
        for gone in self.tracker.take_expired() {
            out.extend(self.expire_person(&gone));
        }
        out
    }

    /// What the fall model (`model`) found in the frame captured at `t`: each person's story looks
    /// at the boxes about them, and raises or ends their fall.
    pub fn on_fall_model(&mut self, model: &str, detections: &[Detection], t: f64, jpeg: Option<&[u8]>) -> Vec<Event> {
        if !self.settings.enabled || t <= self.last_fall_look_t {
            return Vec::new();
        }
        self.last_fall_look_t = t;
        if self.people.values().any(|p| p.story.as_ref().is_some_and(|s| !s.raised)) {
            self.fall_looks_left = (self.fall_looks_available(t) - 1.0).max(0.0);
            self.fall_looks_at = t;
        }
        let (min_score, min_secs) = (self.settings.fall.thresholds().model_fall, self.settings.fall.min_duration_secs as f64);
        let mut out = Vec::new();
        let ids: Vec<u64> = self.people.iter().filter(|(_, p)| p.story.is_some()).map(|(id, _)| *id).collect();
        for id in ids {
            let Some(state) = self.people.get_mut(&id) else { continue };
            let Some(story) = state.story.as_mut() else { continue };
            let update = story.look(detections, t, min_score, min_secs);
            log::debug!(target: "haven::falls", "[{}] track {id}: fall model look at {t:.2}: {update:?} ({story:?})", self.camera_id);
            match update {
                StoryUpdate::Fell { since, mean_fall, looks, bbox } => {
                    let (trigger, unseen) = (story.trigger, story.unseen);
                    let down = state.fall.as_ref().and_then(FallDetector::score);
                    let keypoints = state.keypoints.clone();
                    let already = state.fall_event.is_some()
                        || self.people.iter().any(|(other, p)| *other != id && p.fall_event.as_ref().is_some_and(|e| story::overlap(&e.bbox, &bbox) >= SAME_FALL_OVERLAP));
                    if already {
                        continue;
                    }
                    let why = match trigger {
                        Trigger::Drop(d) => format!("after a drop of {d:.2} body lengths"),
                        Trigger::Lost => "after the pose model lost them going down".into(),
                        Trigger::Vanished => "after the pose model lost them".into(),
                        Trigger::Raised => "while down".into(),
                    };
                    let pose = match (unseen, down) {
                        (true, _) => "the pose model no longer sees them".to_string(),
                        (false, Some(d)) => format!("pose down {d:.2}"),
                        (false, None) => "no torso seen".into(),
                    };
                    let reason = FallReason {
                        by: "model".into(),
                        summary: format!("fall model: Fall {mean_fall:.2} in {looks} looks over {:.1} s {why}; {pose}", t - since),
                        pose_down: down.map(fall::round2),
                        drop: match trigger {
                            Trigger::Drop(d) => Some(fall::round2(d)),
                            _ => None,
                        },
                        model_fall: Some(fall::round2(mean_fall)),
                        model_looks: Some(looks),
                        unseen,
                    };
                    let mut ev = self.new_event(EventKind::Fall, id, "person", since, t, mean_fall, &keypoints, bbox);
                    ev.model = Some(model.to_string());
                    ev.reason = Some(reason);
                    let ev = self.start(ev, jpeg);
                    self.people.entry(id).or_default().fall_event = Some(ev.clone());
                    out.push(ev);
                }
                StoryUpdate::Up { at } | StoryUpdate::Gone { at } => out.extend(self.end_fall(id, at)),
                StoryUpdate::Closed => state.story = None,
                StoryUpdate::None => {}
            }
            // A person the tracker let go is kept only while their story goes on.
            if let Some(state) = self.people.get(&id) {
                if state.gone && state.fall_event.is_none() && !state.story.as_ref().is_some_and(|s| s.alive(t)) {
                    self.people.remove(&id);
                }
            }
        }
        out
    }

    /// Ends the fall of this person, if one is going on.
    fn end_fall(&mut self, track_id: u64, at: f64) -> Vec<Event> {
        match self.people.get_mut(&track_id).and_then(|p| p.fall_event.take()) {
            Some(ev) => vec![self.end(ev, at)],
            None => Vec::new(),
        }
    }

    /// The tracker ended a person's track: their person event ends; their fall goes on while the
    /// fall model can follow it (they lie where the pose model no longer sees them), else it ends.
    fn expire_person(&mut self, gone: &TrackedPerson) -> Vec<Event> {
        let now = self.last_detection_t;
        let keep = self.fall_model.is_some()
            && self.people.get(&gone.track_id).is_some_and(|p| p.fall_event.is_some() || p.story.as_ref().is_some_and(|s| s.alive(now)));
        if !keep {
            return self.end_person(gone.track_id, gone.last_seen);
        }
        let mut out = Vec::new();
        let Some(state) = self.people.get_mut(&gone.track_id) else { return out };
        state.gone = true;
        let story = state.story.get_or_insert_with(|| Story::open(Trigger::Raised, gone.bbox, state.body, now));
        story.unseen = true;
        if let Some(ev) = state.person.take() {
            out.push(self.end(ev, gone.last_seen));
        }
        out
    }

    /// Ends every active event now (at the last frame's time) and completes every clip so it plays;
    /// waits for the clip writer. Call when the camera stops (SIGTERM, camera removed). Returns the
    /// events it ended. The engine can be fed again afterwards (clips then resume).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let at = if self.last_t.is_finite() { self.last_t } else { now() };
        for track in self.tracker.clear() {
            out.extend(self.end_person(track.track_id, track.last_seen.min(at)));
        }
        let ids: Vec<u64> = self.people.keys().copied().collect();
        for id in ids {
            out.extend(self.end_person(id, at));
        }
        let seen: HashMap<u64, f64> = self.objects.clear().into_iter().map(|t| (t.track_id, t.last_seen)).collect();
        let open: Vec<(u64, Event)> = self.object_events.drain().collect();
        for (id, ev) in open {
            out.push(self.end(ev, seen.get(&id).copied().unwrap_or(at).min(at)));
        }
        if let Some(rec) = &mut self.recorder {
            rec.finish();
        }
        if self.settings.enabled {
            self.recorder = Some(Recorder::new(&self.camera_id, self.settings.recorder_config()));
        }
        out
    }

    fn end_person(&mut self, track_id: u64, at: f64) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(p) = self.people.remove(&track_id) {
            for ev in [p.fall_event, p.person].into_iter().flatten() {
                out.push(self.end(ev, at));
            }
        }
        out
    }

    /// A new event about track `track_id`, raised at `raised_at` (the frame the model looked at).
    #[allow(clippy::too_many_arguments)]
    fn new_event(&self, kind: EventKind, track_id: u64, class: &str, started_at: f64, raised_at: f64, score: f32, keypoints: &[[f32; 3]], bbox: [f32; 4]) -> Event {
        Event {
            id: None,
            camera_id: self.camera_id.clone(),
            kind,
            phase: EventPhase::Start,
            track_id,
            model: Some("pose".into()),
            class: Some(class.to_string()),
            started_at,
            ended_at: None,
            score,
            bbox,
            keypoints: keypoints.to_vec(),
            clip_path: None,
            snapshot_path: None,
            clip_frames: None,
            clip_fps: None,
            clip_started_at: None,
            clip_error: None,
            clip_status: ClipStatus::None,
            node: None,
            raised_at: Some(raised_at),
            reason: None,
        }
    }

    fn file_name(&self, id: i64, kind: EventKind, ext: &str) -> String {
        format!("{}/{}-{}.{ext}", path_safe(&self.camera_id), id, kind.as_str())
    }

    /// Stores, records and broadcasts a new event.
    fn start(&mut self, mut ev: Event, jpeg: Option<&[u8]>) -> Event {
        let record = self.recorder.as_ref().is_some_and(|r| {
            let wanted = match ev.kind {
                EventKind::Fall => return true,
                EventKind::PersonDetected => self.settings.person_clips,
                EventKind::ObjectDetected => self.settings.objects.clips,
            };
            wanted && r.open_clips() < self.settings.max_concurrent_clips
        });
        match self.hub.store().insert(&ev, record) {
            Ok(id) => ev.id = Some(id),
            Err(e) => log::warn!("[{}] cannot store a {} event: {e}", self.camera_id, ev.kind.as_str()),
        }
        if let (Some(id), true) = (ev.id, self.recorder.is_some()) {
            let snapshot_rel = format!("{SNAPSHOTS_DIR}/{}", self.file_name(id, ev.kind, "jpg"));
            let clip_rel = format!("{CLIPS_DIR}/{}", self.file_name(id, ev.kind, "mp4"));
            let rec = self.recorder.as_mut().expect("checked");
            if let Some(jpeg) = jpeg {
                let rel = snapshot_rel;
                let hub = self.hub.clone();
                let path = hub.store().resolve(&rel);
                rec.snapshot(
                    path.clone(),
                    jpeg,
                    Box::new(move |r| match r {
                        Ok(bytes) => {
                            if !matches!(hub.store().set_snapshot(id, &rel, bytes), Ok(true)) {
                                let _ = std::fs::remove_file(&path);
                            } else {
                                hub.changed(id, EventChange::Snapshot, None);
                            }
                        }
                        Err(e) => log::warn!("event {id}: snapshot not written: {e}"),
                    }),
                );
            }
            if record {
                ev.clip_status = ClipStatus::Recording;
                let rel = clip_rel;
                let hub = self.hub.clone();
                let path = hub.store().resolve(&rel);
                rec.start_clip(
                    id,
                    path.clone(),
                    ev.started_at,
                    Box::new(move |r| clip_done(&hub, id, rel, &path, r)),
                );
            }
        }
        self.hub.publish(&ev);
        ev
    }

    /// Ends an event: stored, its clip given its post-roll, broadcast.
    fn end(&mut self, mut ev: Event, at: f64) -> Event {
        let at = at.max(ev.started_at);
        ev.ended_at = Some(at);
        ev.phase = EventPhase::End;
        if let Some(id) = ev.id {
            if let Err(e) = self.hub.store().set_ended(id, at) {
                log::warn!("[{}] cannot store the end of event {id}: {e}", self.camera_id);
            }
            if let Some(rec) = &mut self.recorder {
                rec.end_clip(id, at);
            }
        }
        self.hub.publish(&ev);
        ev
    }
}

impl Drop for EventEngine {
    fn drop(&mut self) {
        if self.people.values().any(|p| p.person.is_some() || p.fall_event.is_some()) || !self.object_events.is_empty() {
            self.finish();
        }
    }
}

/// On the writer thread: a clip is complete (or failed); record it, then apply retention.
fn clip_done(hub: &EventHub, id: i64, rel: String, path: &Path, result: Result<ClipDone, String>) {
    match result {
        Ok(done) => {
            let info = ClipInfo { path: rel, frames: done.frames, fps: done.fps, started_at: done.started_at, bytes: done.bytes };
            let stored = hub.store().set_clip(id, &info);
            if !matches!(stored, Ok(true)) {
                // The event is gone (retention, or the store failed): the file must go too.
                log::warn!("event {id}: clip not recorded ({stored:?}); deleting it");
                let _ = std::fs::remove_file(path);
            } else {
                hub.changed(id, EventChange::Clip, None);
            }
            hub.enforce_retention();
        }
        Err(e) => {
            log::warn!("event {id}: no clip: {e}");
            match hub.store().set_clip_failed(id, &e) {
                Ok(()) => hub.changed(id, EventChange::Clip, None),
                Err(stored) => log::warn!("event {id}: {stored}"),
            }
        }
    }
}

#[cfg(test)]
mod real_model_tests;

#[cfg(test)]
mod tests {
    use super::fall::tests::{bbox_of, fall, pivoted, FPS};
    use super::recorder::tests::{count_frames, synthetic_frame};
    use super::store::tests::TempDir;
    use super::*;

    fn hub(dir: &Path, person_clips: bool) -> Arc<EventHub> {
        let _ = env_logger::builder().is_test(true).try_init();
        let settings = EventSettings {
            data_dir: dir.to_path_buf(),
            pre_roll_secs: 2.0,
            post_roll_secs: 1.0,
            person_clips,
            ..EventSettings::default()
        };
        EventHub::open(&settings).unwrap()
    }

    fn det(k: Vec<[f32; 3]>) -> Detection {
        Detection::person(0.9, bbox_of(&k), k)
    }

    #[test]
    fn a_fall_gives_one_fall_event_with_a_snapshot_and_a_playable_clip() {
        let dir = TempDir::new("engine-fall");
        let hub = hub(&dir.0, false);
        let (late, mut alerts) = hub.subscribe(None);
        assert!(late.is_empty());
        let mut engine = hub.engine("cam 1");
        let poses: Vec<Vec<[f32; 3]>> = std::iter::repeat(pivoted(300.0, 0.0))
            .take(30)
            .chain(fall(0.8))
            .chain(std::iter::repeat(pivoted(300.0, 90.0)).take(50))
            .collect();
        let t0 = now().floor();
        let mut events = Vec::new();
        let mut n = 0;
        for (i, k) in poses.iter().enumerate() {
            let t = t0 + i as f64 / FPS;
            events.extend(engine.on_frame(&synthetic_frame(i), None, &[det(k.clone())], t));
            n += 1;
        }
        // Then the person leaves: 3 s without detections.
        for i in n..n + 30 {
            events.extend(engine.on_frame(&synthetic_frame(i), None, &[], t0 + i as f64 / FPS));
        }
        let summary: Vec<(EventKind, EventPhase)> = events.iter().map(|e| (e.kind, e.phase)).collect();
        assert_eq!(
            summary,
            [
                (EventKind::PersonDetected, EventPhase::Start),
                (EventKind::Fall, EventPhase::Start),
                (EventKind::Fall, EventPhase::End),
                (EventKind::PersonDetected, EventPhase::End)
            ]
        );
        let fall_ev = &events[1];
        assert!(hub.active(Some("cam 1")).is_empty());
        let mut pushed = Vec::new();
        while let Ok(e) = alerts.try_recv() {
            pushed.push((e.kind, e.phase));
        }
        assert_eq!(pushed, summary);

        engine.finish();
        let id = fall_ev.id.unwrap();
        let stored = hub.store().get(id).unwrap().unwrap();
        assert_eq!(stored.kind, EventKind::Fall);
        let ended = stored.ended_at.unwrap();
        // Frames from started_at - 2 s to ended_at + 1 s.
        let (from, until) = (fall_ev.started_at - 2.0, ended + 1.0);
        let expected = (0..n + 30).map(|i| t0 + i as f64 / FPS).filter(|t| *t >= from && *t <= until).count() as u32;
        assert!(expected > 60, "{expected}");
        assert_eq!(stored.clip_frames, Some(expected), "{stored:?}");
        let clip = hub.store().resolve(stored.clip_path.as_ref().unwrap());
        assert_eq!(count_frames(&clip).0, expected);
        assert!((stored.clip_started_at.unwrap() - (fall_ev.started_at - 2.0)).abs() < 0.06);
        let snap = hub.store().resolve(stored.snapshot_path.as_ref().unwrap());
        assert!(std::fs::read(snap).unwrap().starts_with(&[0xff, 0xd8]));
        assert!(stored.clip_path.unwrap().starts_with("clips/cam_1/"));

        assert_eq!(stored.clip_status, ClipStatus::Ready);

        // person_detected: a snapshot, no clip (person_clips = false), and it says so from the start.
        assert_eq!((events[0].clip_status, events[3].clip_status), (ClipStatus::None, ClipStatus::None));
        assert_eq!((fall_ev.clip_status, events[2].clip_status), (ClipStatus::Recording, ClipStatus::Recording));
        let person = hub.store().list(&EventFilter { kind: Some(EventKind::PersonDetected), ..Default::default() }).unwrap();
        assert_eq!(person.len(), 1);
        assert!(person[0].clip_path.is_none() && person[0].snapshot_path.is_some());
        assert_eq!(person[0].clip_status, ClipStatus::None);
    }

    fn fall_box(class: &str, score: f32, bbox: [f32; 4]) -> Detection {
        Detection { class_id: (class == "Fall") as usize, class: class.into(), score, bbox, keypoints: Vec::new() }
    }

    /// A person seen upright for 2 s whom the pose model then loses (they fell where it no longer
    /// sees them), the fall model looking where the camera asks it to with `model_says`, for `secs`.
    fn vanish_and_look(engine: &mut EventEngine, t0: f64, secs: f64, model_says: &[Detection]) -> Vec<Event> {
        let mut events = Vec::new();
        let frames = (secs * FPS) as usize;
        for i in 0..frames {
            let t = t0 + i as f64 / FPS;
            let dets = if i < 20 { vec![det(pivoted(300.0, 0.0))] } else { Vec::new() };
            events.extend(engine.on_frame(&synthetic_frame(i), None, &dets, t));
            if engine.wants_fall_look(t) {
                events.extend(engine.on_fall_model("fall", model_says, t, None));
            }
        }
        events
    }

    #[test]
    fn a_person_the_pose_model_loses_on_the_floor_is_raised_by_the_fall_model_with_its_reason() {
        let dir = TempDir::new("engine-story");
        let hub = hub(&dir.0, false);
        let mut engine = hub.engine("hall");
        engine.set_fall_model(Some("fall"));
        let t0 = now().floor();
        // Lying on the floor where they stood (the box reaches the floor at their feet), and a bed
        // beside them that the model calls Fall all along.
        let on_floor = [250.0, 330.0, 600.0, 440.0];
        let says = [fall_box("Fall", 0.7, on_floor), fall_box("Fall", 0.6, [380.0, 200.0, 560.0, 260.0])];
        let events = vanish_and_look(&mut engine, t0, 8.0, &says);
        let falls: Vec<&Event> = events.iter().filter(|e| e.kind == EventKind::Fall).collect();
        assert_eq!(falls.len(), 1, "one fall, however long they lie there: {events:?}");
        let fall = falls[0];
        assert_eq!(fall.phase, EventPhase::Start, "still down when the video ends");
        let reason = fall.reason.as_ref().unwrap();
        assert_eq!((reason.by.as_str(), reason.unseen, reason.model_fall), ("model", true, Some(0.7)), "{reason:?}");
        assert!(reason.summary.contains("Fall 0.70") && reason.summary.contains("lost them"), "{}", reason.summary);
        assert_eq!((fall.model.as_deref(), fall.bbox), (Some("fall"), on_floor));
        // Lost at 2.0 s; raised once the model said Fall for min_duration_secs (1.5 s).
        let (lost, raised) = (t0 + 2.0, fall.raised_at.unwrap());
        assert!(raised - lost >= 1.5 && raised - lost < 2.5, "raised {:.2} s after the loss", raised - lost);
        // The person event ended when the tracker let them go; the fall goes on, and the camera
        // keeps asking the model about it, once a second.
        assert!(events.iter().any(|e| e.kind == EventKind::PersonDetected && e.phase == EventPhase::End));
        assert!(engine.fall_watch_active() && engine.active().iter().any(|e| e.kind == EventKind::Fall));
        let stored = hub.store().get(fall.id.unwrap()).unwrap().unwrap();
        assert_eq!(stored.reason.as_ref(), Some(reason), "stored with its reason");
        assert_eq!(stored.raised_at, fall.raised_at);

        // Up again: the model sees them Normal there for a second, and the fall ends.
        let t1 = t0 + 8.0;
        let mut ended = Vec::new();
        for i in 0..30 {
            let t = t1 + i as f64 / FPS;
            ended.extend(engine.on_frame(&synthetic_frame(i), None, &[], t));
            if engine.wants_fall_look(t) {
                ended.extend(engine.on_fall_model("fall", &[fall_box("Normal", 0.8, [260.0, 120.0, 340.0, 435.0])], t, None));
            }
        }
        assert!(matches!(ended.as_slice(), [e] if e.kind == EventKind::Fall && e.phase == EventPhase::End), "{ended:?}");
        engine.finish();
    }

    #[test]
    fn a_person_who_walks_behind_something_raises_no_fall() {
        let dir = TempDir::new("engine-story-none");
        let hub = hub(&dir.0, false);
        let mut engine = hub.engine("hall");
        engine.set_fall_model(Some("fall"));
        let t0 = now().floor();
        // The model sees nobody where they were, only the bed beside it it calls Fall.
        let events = vanish_and_look(&mut engine, t0, 8.0, &[fall_box("Fall", 0.6, [380.0, 200.0, 560.0, 260.0])]);
        assert!(events.iter().all(|e| e.kind != EventKind::Fall), "{events:?}");
        assert!(!engine.fall_watch_active(), "the story closed");
        // Without the fall model the camera never asks it.
        engine.set_fall_model(None);
        assert!(!engine.wants_fall_look(t0 + 9.0));
        engine.finish();
    }

    fn object(class: &'static str, bbox: [f32; 4]) -> Detection {
        let class_id = haven_pose::COCO_NAMES.iter().position(|n| *n == class).unwrap();
        Detection { class_id, class: class.into(), score: 0.8, bbox, keypoints: Vec::new() }
    }

    #[test]
    fn an_object_of_a_named_class_gives_one_event_per_presence_with_its_model_and_class() {
        let dir = TempDir::new("engine-objects");
        let hub = hub(&dir.0, false);
        let (_, mut alerts) = hub.subscribe(None);
        let mut engine = hub.engine("drive");
        engine.set_object_classes(&["car".to_string()]);
        let t0 = now().floor();
        let car = [100.0, 200.0, 300.0, 300.0];
        let mut events = Vec::new();
        // A car parked for 3 s, looked at 5 times a second (it shifts a little), a dog passing by
        // (not a named class), then 6 s of nothing.
        for i in 0..15 {
            let t = t0 + i as f64 * 0.2;
            let dets = [object("car", car.map(|v| v + (i % 3) as f32)), object("dog", [400.0, 250.0, 450.0, 300.0])];
            events.extend(engine.on_objects("objects", &dets, t, None));
        }
        for i in 15..45 {
            let t = t0 + i as f64 * 0.2;
            events.extend(engine.on_objects("objects", &[], t, None));
        }
        let summary: Vec<_> = events.iter().map(|e| (e.kind, e.phase, e.class.as_deref(), e.model.as_deref())).collect();
        assert_eq!(
            summary,
            [
                (EventKind::ObjectDetected, EventPhase::Start, Some("car"), Some("objects")),
                (EventKind::ObjectDetected, EventPhase::End, Some("car"), Some("objects")),
            ]
        );
        // It started once seen for min_secs (1 s) and ended when last seen.
        assert!((events[0].started_at - t0).abs() < 1e-6 && (events[1].ended_at.unwrap() - (t0 + 14.0 * 0.2)).abs() < 1e-6, "{events:?}");
        assert!(events[0].keypoints.is_empty());
        let pushed: Vec<_> = std::iter::from_fn(|| alerts.try_recv().ok()).map(|e| (e.kind, e.phase)).collect();
        assert_eq!(pushed.len(), 2);
        let stored = hub.store().list(&EventFilter { class: Some("car".into()), ..Default::default() }).unwrap();
        assert_eq!((stored.len(), stored[0].kind, stored[0].model.as_deref()), (1, EventKind::ObjectDetected, Some("objects")));
        assert!(hub.store().list(&EventFilter { class: Some("dog".into()), ..Default::default() }).unwrap().is_empty());
        assert_eq!(EventKind::parse("object_detected"), Some(EventKind::ObjectDetected));
    }

    #[test]
    fn late_viewers_get_the_active_events_and_finish_ends_them() {
        let dir = TempDir::new("engine-late");
        let hub = hub(&dir.0, true);
        let mut engine = hub.engine("cam1");
        let t0 = now().floor();
        for i in 0..20 {
            engine.on_frame(&synthetic_frame(i), None, &[det(pivoted(300.0, 0.0))], t0 + i as f64 / FPS);
        }
        let (active, mut rx) = hub.subscribe(Some("cam1"));
        assert_eq!(active.len(), 1);
        assert_eq!((active[0].kind, active[0].ended_at), (EventKind::PersonDetected, None));
        assert_eq!(active[0].started_at, t0);
        assert_eq!(active[0].clip_status, ClipStatus::Recording, "person_clips = true");
        assert_eq!(hub.store().get(active[0].id.unwrap()).unwrap().unwrap().clip_status, ClipStatus::Recording);
        assert!(hub.subscribe(Some("other")).0.is_empty());
        assert_eq!(engine.active().len(), 1);
        let ended = engine.finish();
        assert_eq!(ended.len(), 1);
        assert_eq!(rx.try_recv().unwrap().phase, EventPhase::End);
        assert!(hub.active(None).is_empty());
        // The clip in progress was completed: 20 frames (all since the start, pre-roll included).
        let ev = hub.store().get(active[0].id.unwrap()).unwrap().unwrap();
        assert_eq!(ev.clip_frames, Some(20));
        assert_eq!(ev.clip_status, ClipStatus::Ready);
        assert_eq!(count_frames(&hub.store().resolve(&ev.clip_path.unwrap())).0, 20);
    }

    #[test]
    fn another_nodes_events_are_stored_pushed_when_live_and_ended_when_their_owner_is_gone() {
        let dir = TempDir::new("engine-cluster");
        let hub = hub(&dir.0, false);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        hub.join_cluster("b", 7 * store::ID_RANGE, Box::new(move |id, change, _| log.lock().unwrap().push((id, change))));
        let (_, mut alerts) = hub.subscribe(None);
        let mut theirs = store::tests::event("cam1", EventKind::Fall, now() - 5.0);
        theirs.id = Some(3 * store::ID_RANGE + 1);
        theirs.node = Some("a".into());
        theirs.clip_status = ClipStatus::Recording;
        // Replayed at start-up: stored and active, not pushed; then a live one is pushed.
        hub.receive(&theirs, EventChange::Start, false);
        assert!(alerts.try_recv().is_err());
        assert_eq!(hub.active(Some("cam1")).len(), 1);
        let mut live = theirs.clone();
        live.id = Some(3 * store::ID_RANGE + 2);
        live.camera_id = "cam2".into();
        hub.receive(&live, EventChange::Start, true);
        assert_eq!(alerts.try_recv().unwrap().id, live.id);
        assert!(sent.lock().unwrap().is_empty(), "another node's events are not published again");
        // This node takes cam1 over: a's open fall ends now, its clip will never come.
        let ended = hub.end_abandoned("cam1", now());
        assert_eq!(ended.len(), 1);
        let pushed = alerts.try_recv().unwrap();
        assert_eq!((pushed.id, pushed.phase, pushed.node.as_deref()), (theirs.id, EventPhase::End, Some("a")));
        let stored = hub.store().get(theirs.id.unwrap()).unwrap().unwrap();
        assert_eq!(stored.clip_status, ClipStatus::Failed);
        assert!(stored.clip_error.unwrap().contains("node a"));
        assert_eq!(*sent.lock().unwrap(), vec![(theirs.id.unwrap(), EventChange::End)], "the end goes to the cluster");
        assert!(hub.end_abandoned("cam2", now()).len() == 1 && hub.active(None).is_empty());
    }

    #[test]
    fn the_openapi_event_schema_lists_every_field_and_clip_status() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../api/openapi.json")).unwrap();
        let schema = &doc["components"]["schemas"]["Event"]["properties"];
        let mut event = super::store::tests::event("cam1", EventKind::Fall, 1.0);
        event.node = Some("a".into());
        let event = serde_json::to_value(event).unwrap();
        let mut fields: Vec<&String> = event.as_object().unwrap().keys().collect();
        let mut documented: Vec<&String> = schema.as_object().unwrap().keys().collect();
        fields.sort();
        documented.sort();
        assert_eq!(fields, documented);
        let statuses: Vec<String> = [ClipStatus::None, ClipStatus::Recording, ClipStatus::Ready, ClipStatus::Failed]
            .iter()
            .map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string())
            .collect();
        assert_eq!(statuses, ["none", "recording", "ready", "failed"]);
        assert_eq!(schema["clip_status"]["enum"], serde_json::json!(statuses));
    }

    #[test]
    fn settings_parse_with_defaults_and_reject_unknown_fields() {
        let s: EventSettings = toml::from_str("data_dir = \"x\"\n[fall]\nsensitivity = 0.7\n").unwrap();
        assert_eq!(s.data_dir, PathBuf::from("x"));
        assert_eq!(s.fall.sensitivity, 0.7);
        assert_eq!(s.fall.min_duration_secs, FallConfig::default().min_duration_secs);
        assert!(toml::from_str::<EventSettings>("bogus = 1\n").is_err());
        assert!(toml::from_str::<EventSettings>("[fall]\nbogus = 1\n").is_err());
    }
}
