//! The event hub, one per process: the store, the alert broadcast, the events still active, the
//! cluster's sink for changes, and retention.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::broadcast;

use super::{now, ClipDone, ClipInfo, ClipStatus, Event, EventChange, EventEngine, EventPhase, EventSettings, EventStore, RetentionReport, StoreError};
use crate::config::Live;

/// Alerts a slow `/ws/alerts` viewer may fall behind by before it misses some.
const ALERT_CAPACITY: usize = 256;
/// Sub-directories of `data_dir`.
pub const CLIPS_DIR: &str = "clips";
pub const SNAPSHOTS_DIR: &str = "snapshots";
pub const DB_FILE: &str = "events.db";
/// Told of every change to a stored event (a cluster node's link to the others), with the event
/// as it is at that change where the caller has it (else the sink reads the store).
pub type EventSink = Box<dyn Fn(i64, EventChange, Option<Event>) + Send + Sync>;

/// Shared by every camera and every HTTP handler.
pub struct EventHub {
    /// `[events]`, replaced by a reload of the settings file; cameras follow it from their next frame.
    settings: Live<EventSettings>,
    store: Mutex<EventStore>,
    alerts: broadcast::Sender<Event>,
    /// Events started and not yet ended, by id (or by a negative key for events the store refused).
    active: Mutex<BTreeMap<i64, Event>>,
    unstored: Mutex<i64>,
    /// On a cluster node: its name and where changes go (`join_cluster`).
    cluster: OnceLock<(String, EventSink)>,
    /// Where this node's changes are notified (`crate::notify`, through `notify_to`).
    notify: OnceLock<EventSink>,
    /// Others told of every change to an event this node owns (MQTT; `watch`).
    watchers: Mutex<Vec<EventSink>>,
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
            settings: Live::new(settings.clone()),
            store: Mutex::new(store),
            alerts,
            active: Mutex::new(BTreeMap::new()),
            unstored: Mutex::new(0),
            cluster: OnceLock::new(),
            notify: OnceLock::new(),
            watchers: Mutex::new(Vec::new()),
        });
        hub.enforce_retention();
        Ok(hub)
    }

    /// `[events]` as the settings file has them now.
    pub fn settings(&self) -> Arc<EventSettings> {
        self.settings.get()
    }

    /// The live `[events]` handle: a reload sets it, cameras compare its version with theirs.
    pub fn live_settings(&self) -> Live<EventSettings> {
        self.settings.clone()
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

    /// Every change to an event this node owns goes to `sink` too (the notifier): other nodes'
    /// events, which come in through `receive`, do not (each event is notified once, by its
    /// owner). The sink runs on the thread that made the change, with no lock of the hub held.
    pub fn notify_to(&self, sink: EventSink) {
        let _ = self.notify.set(sink);
    }

    /// `sink` is told of every change to a stored event this node owns, as the cluster is (it must
    /// not block: it runs on camera and clip threads).
    pub fn watch(&self, sink: EventSink) {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).push(sink);
    }

    /// Tells the cluster (if any), the notifier (if any) and the watchers that event `id` changed
    /// (to `event`, if given).
    pub fn changed(&self, id: i64, change: EventChange, event: Option<&Event>) {
        if let Some(sink) = self.notify.get() {
            sink(id, change, event.cloned());
        }
        if let Some((_, sink)) = self.cluster.get() {
            sink(id, change, event.cloned());
        }
        for sink in self.watchers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            sink(id, change, event.cloned());
        }
    }

    /// Records a start or end in the active set and pushes it to every alert viewer (and the cluster).
    /// An acknowledgement or long lie the active copy has is kept (the engine's copy may lack it).
    pub fn publish(&self, event: &Event) -> i64 {
        let mut event = event.clone();
        if event.node.is_none() {
            event.node = self.node().map(str::to_string);
        }
        self.keep_marks(&mut event);
        let key = self.announce(&event, true);
        if let Some(id) = event.id {
            self.changed(id, if event.is_active() { EventChange::Start } else { EventChange::End }, Some(&event));
        }
        key
    }

    /// A fall became a long lie (already stored): into the active set, pushed to every alert viewer
    /// and the cluster as an update of the event. Returns it as pushed.
    pub fn long_lie(&self, event: &Event) -> Event {
        let mut event = event.clone();
        if event.node.is_none() {
            event.node = self.node().map(str::to_string);
        }
        self.keep_marks(&mut event);
        self.announce(&event, true);
        if let Some(id) = event.id {
            self.changed(id, EventChange::LongLie, Some(&event));
        }
        event
    }

    /// A person acknowledges event `id` (`at` unix seconds, `by` their name, with a note): stored,
    /// then pushed to every alert viewer and the cluster as an update. A second acknowledgement
    /// changes nothing and pushes nothing: the first is kept. `None` if there is no such event;
    /// else the event as stored and whether this call acknowledged it.
    pub fn acknowledge(&self, id: i64, at: f64, by: &str, note: Option<&str>) -> Result<Option<(Event, bool)>, StoreError> {
        let Some((mut event, now_acked)) = self.store().acknowledge(id, at, by, note)? else { return Ok(None) };
        if !now_acked {
            return Ok(Some((event, false)));
        }
        // The active copy is the freshest (phase, clip status): take it with the acknowledgement.
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
        if let Some(mut current) = active {
            current.keep_marks_of(&event);
            event = current;
        }
        self.announce(&event, true);
        self.changed(id, EventChange::Ack, Some(&event));
        Ok(Some((event, true)))
    }

    /// Puts the acknowledgement and long lie of the active copy of `event` (if any) on it.
    fn keep_marks(&self, event: &mut Event) {
        if let Some(id) = event.id {
            if let Some(active) = self.active.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
                event.keep_marks_of(active);
            }
        }
    }

    /// Another node's event as its latest message says: into the store, and (a start or an end)
    /// into the active set, pushed to this node's alert viewers when `live` (not a replay of the
    /// stream at start-up).
    pub fn receive(&self, event: &Event, change: EventChange, live: bool) {
        if change == EventChange::Ack {
            // Also this node's own events, acknowledged on another node; once only (the stream
            // brings back the acknowledgements this node published too).
            let known = event.id.and_then(|id| self.store().get(id).ok().flatten());
            if known.is_some_and(|k| k.acknowledged_at.is_some()) {
                return;
            }
        }
        let mut event = event.clone();
        self.keep_marks(&mut event);
        let event = &event;
        match self.store().upsert_remote(event) {
            Ok(true) => {}
            Ok(false) => {
                log::warn!("event {:?} of node {:?}: its id is taken here by another node's event; not stored", event.id, event.node);
                return;
            }
            Err(e) => log::warn!("cannot store event {:?} of node {:?}: {e}", event.id, event.node),
        }
        if change == EventChange::Ack {
            // The sender's copy may be older than this node's (an end it has not heard of yet).
            let stored = event.id.and_then(|id| self.store().get(id).ok().flatten());
            let mut ack = stored.unwrap_or_else(|| event.clone());
            ack.node = ack.node.or_else(|| event.node.clone());
            self.announce(&ack, live);
        } else if matches!(change, EventChange::Start | EventChange::End | EventChange::LongLie) {
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
        let settings = self.settings.get();
        let max_age = (settings.retention_days > 0.0).then_some(settings.retention_days * 86400.0);
        let max_bytes = (settings.retention_max_bytes > 0).then_some(settings.retention_max_bytes);
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
/// On the writer thread: a clip is complete (or failed); record it, then apply retention.
pub(super) fn clip_done(hub: &EventHub, id: i64, rel: String, path: &Path, result: Result<ClipDone, String>) {
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
            // The store's guard must be gone before `changed`: a sink may read the store.
            let failed = hub.store().set_clip_failed(id, &e);
            match failed {
                Ok(()) => hub.changed(id, EventChange::Clip, None),
                Err(stored) => log::warn!("event {id}: {stored}"),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::store::{self, tests::TempDir};
    use crate::events::EventKind;

    /// A hub over `dir` with short pre- and post-rolls (and `person_clips` as given).
    pub(crate) fn hub(dir: &Path, person_clips: bool) -> Arc<EventHub> {
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
    fn an_acknowledgement_made_on_another_node_reaches_the_owner_once_and_its_end_keeps_it() {
        let dir = TempDir::new("hub-ack-cluster");
        let hub = hub(&dir.0, false);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        hub.join_cluster("a", 3 * store::ID_RANGE, Box::new(move |id, change, ev: Option<Event>| log.lock().unwrap().push((id, change, ev.and_then(|e| e.acknowledged_by)))));
        // This node's fall, going on.
        let mut fall = store::tests::event("cam1", EventKind::Fall, now() - 5.0);
        fall.id = Some(hub.store().insert(&fall, false).unwrap());
        hub.publish(&fall);
        let id = fall.id.unwrap();
        let (_, mut alerts) = hub.subscribe(None);
        // Node b acknowledged it: its message (b's copy, perhaps older) comes through the stream.
        let mut theirs = fall.clone();
        theirs.node = Some("a".into());
        theirs.acknowledged_at = Some(50.0);
        theirs.acknowledged_by = Some("Bob".into());
        hub.receive(&theirs, EventChange::Ack, true);
        let pushed = alerts.try_recv().unwrap();
        assert_eq!((pushed.id, pushed.acknowledged_by.as_deref(), pushed.phase), (Some(id), Some("Bob"), EventPhase::Start));
        assert_eq!(hub.store().get(id).unwrap().unwrap().acknowledged_at, Some(50.0));
        // The same message again (or this node's own acknowledgement coming back): nothing.
        hub.receive(&theirs, EventChange::Ack, true);
        assert!(alerts.try_recv().is_err());
        assert_eq!(hub.acknowledge(id, 60.0, "Ann", None).unwrap().unwrap().1, false, "the first is kept");
        // The engine's copy knows nothing of it: its end carries it all the same.
        let mut end = fall.clone();
        end.ended_at = Some(now());
        end.phase = EventPhase::End;
        hub.publish(&end);
        assert_eq!(alerts.try_recv().unwrap().acknowledged_by.as_deref(), Some("Bob"));
        let changes: Vec<_> = sent.lock().unwrap().iter().map(|(_, c, by)| (*c, by.clone())).collect();
        assert_eq!(changes, [(EventChange::Start, None), (EventChange::End, Some("Bob".into()))], "received changes are not published again");
        // A late copy of the start from the stream does not take the acknowledgement back.
        let mut stale = fall.clone();
        stale.node = Some("a".into());
        hub.store().upsert_remote(&stale).unwrap();
        assert_eq!(hub.store().get(id).unwrap().unwrap().acknowledged_by.as_deref(), Some("Bob"));
    }
}
