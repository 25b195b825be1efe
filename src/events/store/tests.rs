//! The store's stories: listing with filters and pages, cluster ids and merges, old stores, reopening
//! after a crash, retention by age and by size, orphan files.

use super::*;

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("haven-{name}-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn event(camera: &str, kind: EventKind, started_at: f64) -> Event {
    Event {
        id: None,
        camera_id: camera.into(),
        kind,
        phase: EventPhase::Start,
        track_id: 7,
        model: Some("pose".into()),
        class: Some("person".into()),
        started_at,
        ended_at: None,
        score: 0.8,
        bbox: [1.0, 2.0, 3.0, 4.0],
        keypoints: vec![[1.0, 2.0, 0.5]; 17],
        clip_path: None,
        snapshot_path: None,
        clip_frames: None,
        clip_fps: None,
        clip_started_at: None,
        clip_error: None,
        clip_status: ClipStatus::None,
        node: None,
        raised_at: Some(started_at + 1.5),
        reason: (kind == EventKind::Fall).then(|| crate::events::FallReason {
            by: "pose".into(),
            summary: "pose: down 0.90 after a drop of 0.40 body lengths".into(),
            pose_down: Some(0.9),
            drop: Some(0.4),
            model_fall: None,
            model_looks: None,
            unseen: false,
        }),
        acknowledged_at: None,
        acknowledged_by: None,
        ack_note: None,
        long_lie: false,
        long_lie_at: None,
        zones: vec!["hall".into()],
    }
}

/// A stored, ended event with a clip file of `bytes` bytes.
fn with_clip(store: &EventStore, camera: &str, started_at: f64, bytes: usize) -> (i64, PathBuf) {
    let id = store.insert(&event(camera, EventKind::Fall, started_at), true).unwrap();
    store.set_ended(id, started_at + 1.0).unwrap();
    let rel = format!("clips/{camera}/{id}.mp4");
    let path = store.resolve(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0u8; bytes]).unwrap();
    let clip = ClipInfo { path: rel, frames: 10, fps: 10.0, started_at: started_at - 3.0, bytes: bytes as u64 };
    assert!(store.set_clip(id, &clip).unwrap());
    (id, path)
}

#[test]
fn insert_get_update_and_list_with_filters() {
    let dir = TempDir::new("store-list");
    let store = EventStore::open(&dir.0.join("events.db")).unwrap();
    let a = store.insert(&event("cam1", EventKind::PersonDetected, 100.0), false).unwrap();
    assert_eq!(store.get(a).unwrap().unwrap().clip_status, ClipStatus::None);
    let b = store.insert(&event("cam1", EventKind::Fall, 200.0), false).unwrap();
    let c = store.insert(&event("cam2", EventKind::Fall, 300.0), false).unwrap();
    store.set_ended(b, 210.0).unwrap();
    let got = store.get(b).unwrap().unwrap();
    assert_eq!((got.id, got.kind, got.ended_at, got.phase), (Some(b), EventKind::Fall, Some(210.0), EventPhase::End));
    assert_eq!(got.keypoints.len(), 17);
    assert_eq!(got.bbox, [1.0, 2.0, 3.0, 4.0]);
    assert!(store.get(9999).unwrap().is_none());

    let ids = |f: EventFilter| store.list(&f).unwrap().iter().map(|e| e.id.unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(EventFilter::default()), [c, b, a]);
    assert_eq!(ids(EventFilter { camera_id: Some("cam1".into()), ..Default::default() }), [b, a]);
    assert_eq!(ids(EventFilter { kind: Some(EventKind::Fall), ..Default::default() }), [c, b]);
    // An account's camera patterns (names and globs, case-sensitive); paging and counting within them.
    let globs = |g: &[&str]| EventFilter { camera_globs: g.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    assert_eq!(ids(globs(&["cam2"])), [c]);
    assert_eq!(ids(globs(&["cam?"])), [c, b, a]);
    assert_eq!(ids(globs(&["*1", "nothing-*"])), [b, a]);
    assert_eq!(ids(globs(&["CAM*", "cam"])), Vec::<i64>::new());
    assert_eq!(ids(EventFilter { limit: Some(1), offset: Some(1), ..globs(&["cam1"]) }), [a]);
    assert_eq!(store.count(&globs(&["cam1", "cam1"])).unwrap(), 2);
    assert_eq!(ids(EventFilter { camera_id: Some("cam2".into()), ..globs(&["cam1"]) }), Vec::<i64>::new());
    assert_eq!(ids(EventFilter { since: Some(150.0), until: Some(250.0), ..Default::default() }), [b]);
    assert_eq!(ids(EventFilter { limit: Some(1), ..Default::default() }), [c]);
    // Paging: the next page starts where the last ended; the count ignores limit and offset.
    assert_eq!(ids(EventFilter { limit: Some(2), offset: Some(2), ..Default::default() }), [a]);
    assert_eq!(ids(EventFilter { offset: Some(3), ..Default::default() }), Vec::<i64>::new());
    let fall_page = EventFilter { kind: Some(EventKind::Fall), limit: Some(1), offset: Some(1), ..Default::default() };
    assert_eq!(ids(fall_page.clone()), [b]);
    assert_eq!(store.count(&fall_page).unwrap(), 2);
    assert_eq!(store.count(&EventFilter::default()).unwrap(), 3);
    assert_eq!(
        ids(EventFilter { camera_id: Some("cam1".into()), kind: Some(EventKind::Fall), since: Some(200.0), ..Default::default() }),
        [b]
    );    // By the zones an event started in.
    let mut in_bed = event("cam1", EventKind::PersonDetected, 400.0);
    in_bed.zones = vec!["door".into(), "bed".into()];
    let d = store.insert(&in_bed, false).unwrap();
    assert_eq!(ids(EventFilter { zone: Some("bed".into()), ..Default::default() }), [d]);
    assert_eq!(ids(EventFilter { zone: Some("be".into()), ..Default::default() }), Vec::<i64>::new(), "whole names only");

}

#[test]
fn a_cluster_nodes_ids_lie_in_its_range_and_other_nodes_events_merge_without_going_back() {
    let dir = TempDir::new("store-cluster");
    let mut store = EventStore::open(&dir.0.join("events.db")).unwrap();
    let single = store.insert(&event("cam1", EventKind::Fall, 1.0), false).unwrap();
    let base = 5 * ID_RANGE;
    store.set_cluster("a", base);
    let (one, two) = (store.insert(&event("cam1", EventKind::Fall, 2.0), false).unwrap(), store.insert(&event("cam1", EventKind::Fall, 3.0), false).unwrap());
    assert_eq!((single, one, two), (1, base + 1, base + 2), "a node's own range, after a single server's ids");
    assert_eq!(store.get(one).unwrap().unwrap().node.as_deref(), Some("a"));

    // Node b's event: its start, its end, then an older message: the end stays.
    let mut theirs = event("cam2", EventKind::Fall, 4.0);
    theirs.id = Some(9 * ID_RANGE + 1);
    theirs.node = Some("b".into());
    theirs.clip_status = ClipStatus::Recording;
    assert!(store.upsert_remote(&theirs).unwrap());
    let mut ended = theirs.clone();
    ended.ended_at = Some(6.0);
    ended.clip_path = Some("clips/cam2/x.mp4".into());
    ended.clip_status = ClipStatus::Ready;
    assert!(store.upsert_remote(&ended).unwrap());
    assert!(store.upsert_remote(&theirs).unwrap());
    let got = store.get(theirs.id.unwrap()).unwrap().unwrap();
    assert_eq!((got.ended_at, got.clip_status, got.node.as_deref()), (Some(6.0), ClipStatus::Ready, Some("b")));
    assert_eq!(store.total_bytes().unwrap(), 0, "another node's files take no room here");
    // An id of this node's own: never overwritten by another node's message.
    let mut clash = theirs.clone();
    clash.id = Some(one);
    assert!(!store.upsert_remote(&clash).unwrap());
    assert_eq!(store.get(one).unwrap().unwrap().camera_id, "cam1");
    assert_eq!(store.count(&EventFilter::default()).unwrap(), 4);
}

#[test]
fn a_store_from_before_clip_errors_opens_and_keeps_why_a_clip_failed() {
    let dir = TempDir::new("store-migrate");
    let path = dir.0.join("events.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(schema::ORIGINAL).unwrap();
        old.execute(
            "INSERT INTO events (camera_id, kind, track_id, started_at, score, bbox, keypoints)
             VALUES ('cam1', 'fall', 1, 10.0, 0.9, '[0,0,1,1]', '[]')",
            [],
        )
        .unwrap();
    }
    let store = EventStore::open(&path).unwrap();
    let old = store.get(1).unwrap().unwrap();
    assert_eq!((old.clip_error, old.clip_status), (None, ClipStatus::None));
    store.set_clip_failed(1, "disk full").unwrap();
    let failed = store.get(1).unwrap().unwrap();
    assert_eq!((failed.clip_error.as_deref(), failed.clip_status), (Some("disk full"), ClipStatus::Failed));
}

#[test]
fn reopening_closes_events_left_open() {
    let dir = TempDir::new("store-reopen");
    let path = dir.0.join("events.db");
    let id = {
        let store = EventStore::open(&path).unwrap();
        store.insert(&event("cam1", EventKind::Fall, 100.0), true).unwrap()
    };
    let store = EventStore::open(&path).unwrap();
    let ev = store.get(id).unwrap().unwrap();
    assert_eq!(ev.ended_at, Some(100.0));
    // Its clip was being written when the run stopped: it will not come, and the event says why.
    assert_eq!((ev.clip_status, ev.clip_error.as_deref()), (ClipStatus::Failed, Some(CLIP_INTERRUPTED)));
    let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn retention_by_age_removes_rows_and_files_together() {
    let dir = TempDir::new("store-age");
    let mut store = EventStore::open(&dir.0.join("events.db")).unwrap();
    let now = 1_000_000.0;
    let (old, old_file) = with_clip(&store, "cam1", now - 10.0 * 86400.0, 100);
    let (new, new_file) = with_clip(&store, "cam1", now - 86400.0, 100);
    // Open (still happening) events are kept however old.
    let open = store.insert(&event("cam1", EventKind::PersonDetected, now - 20.0 * 86400.0), false).unwrap();
    let report = store.apply_retention(now, Some(7.0 * 86400.0), None).unwrap();
    assert_eq!(report, RetentionReport { events: 1, files: 1, bytes: 100 });
    assert!(store.get(old).unwrap().is_none() && !old_file.exists());
    assert!(store.get(new).unwrap().is_some() && new_file.exists());
    assert!(store.get(open).unwrap().is_some());
}

#[test]
fn retention_by_size_removes_the_oldest_first() {
    let dir = TempDir::new("store-size");
    let mut store = EventStore::open(&dir.0.join("events.db")).unwrap();
    let files: Vec<_> = (0..5).map(|i| with_clip(&store, "cam1", 1000.0 + i as f64, 1000)).collect();
    // A clip still being written is neither counted out nor deleted.
    let recording = store.insert(&event("cam1", EventKind::Fall, 10.0), true).unwrap();
    store.set_ended(recording, 11.0).unwrap();
    assert_eq!(store.total_bytes().unwrap(), 5000);
    let report = store.apply_retention(2000.0, None, Some(2500)).unwrap();
    assert_eq!(report.events, 3);
    for (i, (id, path)) in files.iter().enumerate() {
        assert_eq!(store.get(*id).unwrap().is_some(), i >= 3, "event {i}");
        assert_eq!(path.exists(), i >= 3, "file {i}");
    }
    assert!(store.get(recording).unwrap().is_some());
    assert_eq!(store.total_bytes().unwrap(), 2000);
    // Under the limit: nothing more goes.
    assert_eq!(store.apply_retention(2000.0, None, Some(2500)).unwrap().events, 0);
}

#[test]
fn orphan_files_are_swept() {
    let dir = TempDir::new("store-sweep");
    let store = EventStore::open(&dir.0.join("events.db")).unwrap();
    let (_, kept) = with_clip(&store, "cam1", 100.0, 10);
    let orphan = dir.0.join("clips/cam1/99.part.mp4");
    std::fs::write(&orphan, b"partial").unwrap();
    assert_eq!(store.sweep_orphans(&["clips", "snapshots"]).unwrap(), 1);
    assert!(kept.exists() && !orphan.exists());
}
