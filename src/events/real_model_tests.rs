//! The fall rule on the real pose model's output: a real person (from `basketball1.png`) rotated
//! about their feet, step by step, from upright to lying; and the pedestrian footage, which must
//! raise `person_detected` and no fall. Needs `weights/yolo11n-pose.safetensors` (fails without it).

use std::path::PathBuf;

use opencv::core::{self, Mat, Point2f, Rect, Scalar, Size, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc, videoio};

use super::recorder::tests::count_frames_any;
use super::store::tests::TempDir;
use super::*;
use crate::inference::pose::PoseEngine;
use crate::inference::AiEngine;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn engine() -> Option<PoseEngine> {
    let mut m = crate::inference::config::shipped_pose_model();
    m.weights = repo().join("weights/yolo11n-pose.safetensors");
    assert!(m.weights.is_file(), "{} is missing: run `bash scripts/fetch-weights.sh`", m.weights.display());
    Some(PoseEngine::load(&m).expect("the pose model loads"))
}

const FPS: f64 = 10.0;
/// Where the person's feet stand on the 640x480 canvas.
const FEET: (f32, f32) = (150.0, 420.0);

/// The left player of `basketball1.png` (box [34, 80, 169, 476]), scaled by 0.8, alone on a grey
/// canvas with their feet at `FEET`: room to lie down inside the frame.
fn standing_person() -> Mat {
    let img = imgcodecs::imread(&*repo().join("tests/fixtures/pose/basketball1.png").to_string_lossy(), imgcodecs::IMREAD_COLOR).unwrap();
    let crop = Mat::roi(&img, Rect::new(14, 60, 175, 420)).unwrap().try_clone().unwrap();
    let mut small = Mat::default();
    imgproc::resize(&crop, &mut small, Size::new(140, 336), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    let mut canvas = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(114.0)).unwrap();
    // The feet (bottom centre of the box: x 101, y 476 in the image) land on FEET.
    let (fx, fy) = ((101.0 - 14.0) * 0.8, (476.0 - 60.0) * 0.8);
    let (x, y) = ((FEET.0 - fx).round() as i32, (FEET.1 - fy).round() as i32);
    let mut dst = Mat::roi_mut(&mut canvas, Rect::new(x, y, 140, 336)).unwrap();
    small.copy_to(&mut dst).unwrap();
    canvas
}

/// Rotated about the feet by `phi` degrees, head towards +x.
fn rotated(person: &Mat, phi: f64) -> Mat {
    let m = imgproc::get_rotation_matrix_2d(Point2f::new(FEET.0, FEET.1), -phi, 1.0).unwrap();
    let mut out = Mat::default();
    imgproc::warp_affine(person, &mut out, &m, Size::new(640, 480), imgproc::INTER_LINEAR, core::BORDER_CONSTANT, Scalar::all(114.0))
        .unwrap();
    out
}

fn settings(dir: &std::path::Path) -> EventSettings {
    EventSettings { data_dir: dir.to_path_buf(), pre_roll_secs: 2.0, post_roll_secs: 1.0, ..EventSettings::default() }
}

/// The person's rotation in each frame at `FPS`: 2 s upright, a 0.8 s fall (accelerating), 4 s
/// lying, then 3 s of empty scene (`None`).
fn upright_falling_lying_then_gone() -> Vec<Option<f64>> {
    let mut angles: Vec<Option<f64>> = vec![Some(0.0); 20];
    angles.extend((1..=8).map(|i| Some(90.0 * (i as f64 / 8.0).powi(2))));
    angles.extend(std::iter::repeat(Some(90.0)).take(40));
    angles.extend(std::iter::repeat(None).take(30));
    angles
}

/// Where the input frames go (kept with `HAVEN_KEEP_FALL_CLIP`, to look at).
fn input_writer(path: &std::path::Path) -> videoio::VideoWriter {
    videoio::VideoWriter::new(path, videoio::VideoWriter::fourcc('m', 'p', '4', 'v').unwrap(), FPS, Size::new(640, 480), true).unwrap()
}

/// Frame `i`, the person rotated by `phi`: the model must see them; what it sees is logged.
fn the_model_sees_the_person(i: usize, phi: f64, dets: &[crate::inference::Detection]) {
    let d = dets.iter().max_by(|a, b| a.score.total_cmp(&b.score));
    let d = d.unwrap_or_else(|| panic!("frame {i} (rotated {phi:.0}°): the model sees nobody"));
    let f = fall::features(&d.keypoints, d.bbox);
    if (23..=28).contains(&i) {
        for d in dets {
            eprintln!("    det {:.2} {:?}", d.score, d.bbox.map(|v| v.round()));
        }
    }
    eprintln!(
        "frame {i:3} phi {phi:5.1}: score {:.2} torso {:?} aspect {:.2} hip_y {:.0} down {:?}",
        d.score,
        f.torso_angle.map(|a| a.round()),
        f.aspect,
        f.hip_y,
        fall::down_score(&f)
    );
}

/// The stored fall has ended, and its clip holds every frame from 2 s before it to 1 s after it
/// (`times`: every frame's time), with its snapshot beside it. Returns the clip.
fn its_clip_holds_the_fall_with_its_rolls(hub: &EventHub, fall: &Event, times: &[f64]) -> PathBuf {
    let stored = hub.store().get(fall.id.unwrap()).unwrap().unwrap();
    let ended = stored.ended_at.expect("the fall ended when the person left");
    let (from, until) = (stored.started_at - 2.0, ended + 1.0);
    let expected = times.iter().filter(|t| **t >= from && **t <= until).count() as u32;
    assert_eq!(stored.clip_frames, Some(expected));
    let clip = hub.store().resolve(stored.clip_path.as_deref().unwrap());
    assert_eq!(count_frames_any(&clip), expected, "{}", clip.display());
    assert!(hub.store().resolve(stored.snapshot_path.as_deref().unwrap()).is_file());
    clip
}

#[test]
fn a_real_person_rotated_to_lying_raises_one_fall_with_its_clip() {
    let Some(model) = engine() else { return };
    let person = standing_person();
    let angles = upright_falling_lying_then_gone();

    let dir = TempDir::new("real-fall");
    let hub = EventHub::open(&settings(&dir.0)).unwrap();
    let (_, mut alerts) = hub.subscribe(None);
    let mut engine = hub.engine("cam1");
    let t0 = now().floor();
    let mut times = Vec::new();
    let mut events = Vec::new();
    let blank = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(114.0)).unwrap();
    let mut writer = input_writer(&dir.0.join("input.mp4"));
    for (i, phi) in angles.iter().enumerate() {
        let frame = match phi {
            Some(phi) => rotated(&person, *phi),
            None => blank.clone(),
        };
        writer.write(&frame).unwrap();
        let dets = model.detect(&frame).unwrap();
        if let Some(phi) = phi {
            the_model_sees_the_person(i, *phi, &dets);
        }
        let t = t0 + i as f64 / FPS;
        times.push(t);
        events.extend(engine.on_frame(&frame, None, &dets, t));
    }
    writer.release().unwrap();
    engine.finish();

    let falls: Vec<&Event> = events.iter().filter(|e| e.kind == EventKind::Fall && e.phase == EventPhase::Start).collect();
    assert_eq!(falls.len(), 1, "{:?}", events.iter().map(|e| (e.kind, e.phase, e.started_at - t0)).collect::<Vec<_>>());
    let fall = falls[0];
    // Down during (or right after) the fall, frames 20..28.
    let onset = fall.started_at - t0;
    assert!((2.0..=3.3).contains(&onset), "fall started {onset:.1} s in");
    let mut pushed = 0;
    while let Ok(e) = alerts.try_recv() {
        if e.kind == EventKind::Fall && e.phase == EventPhase::Start {
            pushed += 1;
        }
    }
    assert_eq!(pushed, 1);

    let clip = its_clip_holds_the_fall_with_its_rolls(&hub, fall, &times);
    if let Ok(keep) = std::env::var("HAVEN_KEEP_FALL_CLIP") {
        std::fs::copy(&clip, &keep).unwrap();
        std::fs::copy(dir.0.join("input.mp4"), format!("{keep}.input.mp4")).unwrap();
    }
}

#[test]
fn pedestrians_raise_person_detected_and_no_fall() {
    let Some(model) = engine() else { return };
    let mut cap = videoio::VideoCapture::from_file(repo().join("data/vtest.avi"), videoio::CAP_ANY).unwrap();
    if !cap.is_opened().unwrap() {
        eprintln!("SKIPPED: data/vtest.avi is missing");
        return;
    }
    let dir = TempDir::new("real-pedestrians");
    let hub = EventHub::open(&EventSettings { person_clips: false, ..settings(&dir.0) }).unwrap();
    let mut engine = hub.engine("cam1");
    let t0 = now().floor();
    let mut frame = Mat::default();
    let mut events = Vec::new();
    // 12 s of the pedestrian footage at its 10 fps.
    for i in 0..120 {
        assert!(cap.read(&mut frame).unwrap());
        let dets = model.detect(&frame).unwrap();
        events.extend(engine.on_frame(&frame, None, &dets, t0 + i as f64 / FPS));
    }
    events.extend(engine.finish());
    let people = events.iter().filter(|e| e.kind == EventKind::PersonDetected && e.phase == EventPhase::Start).count();
    let falls = events.iter().filter(|e| e.kind == EventKind::Fall).count();
    eprintln!("pedestrians: {people} person_detected, {falls} fall events");
    assert!(people >= 1);
    assert_eq!(falls, 0);
    assert!(hub.active(None).is_empty());
}
