//! The engine's stories: a fall, a fall only the fall model sees, someone walking out of sight, an
//! object's presence, a late viewer.

use super::*;
use crate::events::fall::tests::{bbox_of, fall, pivoted, FPS};
use crate::events::hub::tests::hub;
use crate::events::recorder::tests::{count_frames, synthetic_frame};
use crate::events::store::tests::TempDir;
use crate::events::{ClipStatus, EventFilter, EventPhase, FallConfig};

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
fn a_fall_acknowledged_then_still_down_becomes_a_long_lie_and_ends_with_both() {
    let dir = TempDir::new("engine-long-lie");
    let hub = hub(&dir.0, false);
    let (_, mut alerts) = hub.subscribe(None);
    let mut engine = hub.engine("cam1");
    engine.set_fall_config(FallConfig { long_lie_secs: 2.0, ..FallConfig::default() });
    let poses: Vec<Vec<[f32; 3]>> = std::iter::repeat(pivoted(300.0, 0.0))
        .take(30)
        .chain(fall(0.8))
        .chain(std::iter::repeat(pivoted(300.0, 90.0)).take(50))
        .collect();
    let t0 = now().floor();
    let mut fall_id = None;
    let n = poses.len();
    for (i, k) in poses.iter().enumerate() {
        let started = engine.on_frame(&synthetic_frame(i), None, &[det(k.clone())], t0 + i as f64 / FPS);
        if let Some(id) = fall_id {
            // Acknowledged once, right after it was raised; a second time changes nothing.
            if hub.store().get(id).unwrap().unwrap().acknowledged_at.is_none() {
                let (ev, acked) = hub.acknowledge(id, 1000.0, "Ann", Some("on my way")).unwrap().unwrap();
                assert!(acked && ev.is_active(), "{ev:?}");
                let (ev, acked) = hub.acknowledge(id, 2000.0, "Bob", None).unwrap().unwrap();
                assert_eq!((acked, ev.acknowledged_by.as_deref(), ev.acknowledged_at), (false, Some("Ann"), Some(1000.0)));
            }
        }
        fall_id = fall_id.or(started.iter().find(|e| e.kind == EventKind::Fall).and_then(|e| e.id));
    }
    for i in n..n + 30 {
        engine.on_frame(&synthetic_frame(i), None, &[], t0 + i as f64 / FPS);
    }
    let id = fall_id.expect("a fall");
    assert!(hub.acknowledge(id + 100, 1.0, "Ann", None).unwrap().is_none(), "no such event");
    let falls: Vec<Event> = std::iter::from_fn(|| alerts.try_recv().ok()).filter(|e| e.kind == EventKind::Fall).collect();
    let seen: Vec<(EventPhase, Option<&str>, bool)> = falls.iter().map(|e| (e.phase, e.acknowledged_by.as_deref(), e.long_lie)).collect();
    assert_eq!(
        seen,
        [
            (EventPhase::Start, None, false),
            (EventPhase::Start, Some("Ann"), false),
            (EventPhase::Start, Some("Ann"), true),
            (EventPhase::End, Some("Ann"), true),
        ],
        "start, ack, long lie, end: the end keeps both"
    );
    let raised = falls[0].raised_at.unwrap();
    let at = falls[2].long_lie_at.unwrap();
    assert!(at >= raised + 2.0 && at < raised + 2.0 + 1.5 / FPS, "long lie at {} s after it was raised", at - raised);
    let stored = hub.store().get(id).unwrap().unwrap();
    assert_eq!((stored.long_lie, stored.long_lie_at, stored.ack_note.as_deref()), (true, Some(at), Some("on my way")));
}

#[test]
fn no_long_lie_while_it_is_off_or_the_person_gets_up_in_time() {
    let dir = TempDir::new("engine-no-long-lie");
    let hub = hub(&dir.0, false);
    for (secs, lying) in [(0.0, 50), (10.0, 50)] {
        let mut engine = hub.engine("cam1");
        engine.set_fall_config(FallConfig { long_lie_secs: secs, ..FallConfig::default() });
        let poses: Vec<Vec<[f32; 3]>> = std::iter::repeat(pivoted(300.0, 0.0))
            .take(30)
            .chain(fall(0.8))
            .chain(std::iter::repeat(pivoted(300.0, 90.0)).take(lying))
            .chain(std::iter::repeat(pivoted(300.0, 0.0)).take(30))
            .collect();
        let t0 = now().floor() + 1000.0 * secs as f64;
        let mut events = Vec::new();
        for (i, k) in poses.iter().enumerate() {
            events.extend(engine.on_frame(&synthetic_frame(i), None, &[det(k.clone())], t0 + i as f64 / FPS));
        }
        engine.finish();
        let fall = events.iter().find(|e| e.kind == EventKind::Fall).expect("a fall");
        let stored = hub.store().get(fall.id.unwrap()).unwrap().unwrap();
        assert!(!stored.long_lie && stored.long_lie_at.is_none() && stored.ended_at.is_some(), "long_lie_secs {secs}: {stored:?}");
    }
}

/// The fall story of `a_fall_gives_one_fall_event_with_a_snapshot_and_a_playable_clip` on a camera
/// (640x480) with `zones`: the events it raised, (kind, phase, zones).
fn fall_with_zones(name: &str, zones: Vec<crate::zones::Zone>) -> Vec<(EventKind, EventPhase, Vec<String>)> {
    let dir = TempDir::new(name);
    let hub = hub(&dir.0, false);
    let mut engine = hub.engine("cam");
    engine.set_frame_size(640, 480);
    engine.set_zones(&Arc::new(zones));
    let poses = std::iter::repeat_n(pivoted(300.0, 0.0), 30).chain(fall(0.8)).chain(std::iter::repeat_n(pivoted(300.0, 90.0), 50));
    let t0 = now().floor();
    let mut events = Vec::new();
    for (i, k) in poses.enumerate() {
        events.extend(engine.on_frame(&synthetic_frame(i), None, &[det(k)], t0 + i as f64 / FPS));
    }
    events.extend(engine.finish());
    events.into_iter().map(|e| (e.kind, e.phase, e.zones)).collect()
}

fn zone(name: &str, kind: crate::zones::ZoneKind, x: (f64, f64)) -> crate::zones::Zone {
    crate::zones::Zone { name: name.into(), kind, points: vec![[x.0, 0.0], [x.1, 0.0], [x.1, 1.0], [x.0, 1.0]] }
}

#[test]
fn a_fall_in_a_no_falls_zone_is_not_raised_and_one_elsewhere_is() {
    use crate::zones::ZoneKind::*;
    let kinds = |v: &[(EventKind, EventPhase, Vec<String>)]| v.iter().map(|e| e.0).collect::<Vec<_>>();
    let bed = fall_with_zones("zones-bed", vec![zone("bed", NoFalls, (0.0, 1.0))]);
    assert_eq!(kinds(&bed), [EventKind::PersonDetected, EventKind::PersonDetected], "{bed:?}");
    assert_eq!(bed[0].2, ["bed"], "the person event names the zone they are in");
    let aside = fall_with_zones("zones-aside", vec![zone("bed", NoFalls, (0.0, 0.2))]);
    assert!(kinds(&aside).contains(&EventKind::Fall), "a bed elsewhere: the fall is raised: {aside:?}");
    assert!(aside.iter().all(|e| e.2.is_empty()), "{aside:?}");
}

#[test]
fn with_watch_zones_events_start_only_inside_one_and_name_it() {
    use crate::zones::ZoneKind::*;
    let outside = fall_with_zones("zones-watch-out", vec![zone("door", Watch, (0.0, 0.2)), zone("tv", MotionMask, (0.0, 1.0))]);
    assert!(outside.is_empty(), "nobody in the watched zone: no event: {outside:?}");
    let inside = fall_with_zones("zones-watch-in", vec![zone("room", Watch, (0.0, 1.0)), zone("tv", MotionMask, (0.0, 1.0))]);
    assert!(inside.iter().any(|e| e.0 == EventKind::Fall), "{inside:?}");
    assert!(inside.iter().all(|e| e.2 == ["room"]), "a motion mask is no place: {inside:?}");
}
