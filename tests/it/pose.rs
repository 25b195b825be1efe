//! The real pose model, end to end: image files decoded by OpenCV, letterboxed, inferred, mapped back,
//! compared with the reference runtime's detections; and inside the server, once per frame.

use std::sync::Arc;
use std::time::Duration;

use haven::inference::pose::PoseEngine;
use haven::inference::AiEngine;
use haven::settings::Settings;
use haven_pose::iou;
use opencv::imgcodecs;
use opencv::prelude::*;
use serde_json::Value;

use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

fn model_settings(width: usize, height: usize) -> haven::settings::ModelSettings {
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut m = Settings::from_toml(&text, "settings/default.toml").unwrap().models["pose"].clone();
    m.weights = repo().join("weights/yolo11n-pose.safetensors");
    assert!(m.weights.is_file(), "{} is missing: run `bash scripts/fetch-weights.sh`", m.weights.display());
    m.input_width = Some(width);
    m.input_height = Some(height);
    m
}

pub fn pose_engine(width: usize, height: usize) -> Arc<dyn AiEngine> {
    Arc::new(PoseEngine::load(&model_settings(width, height)).expect("the pose model loads"))
}

#[test]
fn detections_from_image_files_match_the_reference_runtime() {
    let fixtures = repo().join("tests/fixtures/pose");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("detections.json")).unwrap()).unwrap();
    let engine = PoseEngine::load(&model_settings(640, 640)).unwrap();
    let (mut frames, mut singles) = (Vec::new(), Vec::new());
    for (image, expected) in golden.as_object().unwrap() {
        let frame = imgcodecs::imread(fixtures.join(image).to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
        assert!(!frame.empty(), "{image} unreadable");
        let found = engine.detect(&frame).unwrap();
        frames.push(frame);
        singles.push(found.clone());
        let want = expected["dets"].as_array().unwrap();
        assert_eq!(found.len(), want.len(), "{image}: {} people, reference {}", found.len(), want.len());
        for w in want {
            let wbox: Vec<f32> = w["box_xyxy"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let wbox: [f32; 4] = wbox.try_into().unwrap();
            let best = found.iter().max_by(|a, b| iou(&a.bbox, &wbox).total_cmp(&iou(&b.bbox, &wbox))).unwrap();
            let overlap = iou(&best.bbox, &wbox);
            assert!(overlap >= 0.95, "{image}: box {:?} vs reference {wbox:?}: IoU {overlap:.3}", best.bbox);
            assert!((best.score as f64 - w["conf"].as_f64().unwrap()).abs() < 0.01, "{image}: score {}", best.score);
            for (k, (got, want)) in best.keypoints.iter().zip(w["kpts_xyv"].as_array().unwrap()).enumerate() {
                let (wx, wy) = (want[0].as_f64().unwrap(), want[1].as_f64().unwrap());
                let d = ((got[0] as f64 - wx).powi(2) + (got[1] as f64 - wy).powi(2)).sqrt();
                assert!(d <= 2.0, "{image}: keypoint {k} at ({}, {}) is {d:.2} px from ({wx}, {wy})", got[0], got[1]);
            }
        }
    }
    // The same images as one batch (what the scheduler hands a GPU): the same people in each.
    let batched = engine.detect_batch(&frames.iter().collect::<Vec<_>>());
    assert_eq!(batched.len(), frames.len());
    for (one, single) in batched.into_iter().zip(&singles) {
        let one = one.unwrap();
        assert_eq!(one.len(), single.len());
        for (a, b) in one.iter().zip(single) {
            assert!(iou(&a.bbox, &b.bbox) > 0.999 && (a.score - b.score).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }
}

#[actix_web::test]
async fn five_viewers_share_one_inference_per_frame() {
    let s = Scratch::new("pose-fanout");
    let clip = s.path("a.mp4");
    make_clip(&clip, 53.0, 10.0, None); // a stretch where the model sees 1-3 of the small pedestrians
    let mut cam = camera("cam1", &clip);
    cam.ai_enabled = true;
    let server = TestServer::start(settings(vec![cam]), Some(pose_engine(640, 480))).await;
    let mut viewers = Vec::new();
    for _ in 0..5 {
        viewers.push(server.viewer("/ws/stream/cam1").await);
    }
    let first = viewers[0].next_frame(30 * SECOND).await;
    assert_eq!(first["metadata"]["ai_enabled"], true, "{}", first["metadata"]);
    let (_, engine_before) = server.get("/api/engine").await;
    let before = server.camera_status("cam1").await;
    let counts = futures_util::future::join_all(viewers.iter_mut().map(|v| v.count_frames(4 * SECOND))).await;
    let (_, engine_after) = server.get("/api/engine").await;
    let after = server.camera_status("cam1").await;
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    let calls = engine_after["calls"].as_u64().unwrap() - engine_before["calls"].as_u64().unwrap();
    let processed = delta("frames_processed");
    assert!(processed >= 3, "camera processed only {processed} frames in 4 s: {after}");
    // At most one inference per frame (at the camera's detect rate), not one per viewer.
    assert!(calls <= processed + 1 && calls * 4 >= processed, "{calls} engine calls for {processed} frames");
    assert!(delta("inferences").abs_diff(calls) <= 1, "camera counted {} inferences, engine {calls}", delta("inferences"));
    assert!(after["inference_ms"].as_f64().unwrap() > 0.0);
    // Every viewer saw people in the pedestrian footage.
    let people = counts.iter().filter_map(|(_, last)| last.as_ref()).map(|f| f["metadata"]["detections"].as_array().unwrap().len());
    let people: Vec<usize> = people.collect();
    assert!(people.len() == 5 && people.iter().all(|&n| n > 0), "people in the viewers. last frames: {people:?}; counts {:?}", counts.iter().map(|c| c.0).collect::<Vec<_>>());
    let det = &counts[0].1.as_ref().unwrap()["metadata"]["detections"][0];
    assert_eq!(det["class"], "person");
    assert_eq!(det["keypoints"].as_array().unwrap().len(), 17);
    server.stop().await;
}

/// `model.precision = "int8"` reaches the engine: it says so in its name and `info()` (what
/// `GET /api/engine` shows), and finds the golden image's people where the f32 engine does.
#[test]
fn an_int8_model_from_the_settings_says_so_and_finds_the_same_people() {
    let mut m = model_settings(640, 640);
    m.precision = "int8".into();
    m.validate().unwrap();
    let int8 = PoseEngine::load(&m).unwrap();
    let f32 = PoseEngine::load(&model_settings(640, 640)).unwrap();
    assert_eq!((int8.info().precision.as_str(), f32.info().precision.as_str()), ("int8", "f32"));
    assert!(int8.name().contains(", int8,") && !f32.name().contains("int8"), "{} / {}", int8.name(), f32.name());
    let frame = imgcodecs::imread(repo().join("tests/fixtures/pose/zidane.jpg").to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    let (a, b) = (f32.detect(&frame).unwrap(), int8.detect(&frame).unwrap());
    assert_eq!(a.len(), b.len(), "f32 {a:?}\nint8 {b:?}");
    for d in &a {
        let best = b.iter().map(|e| iou(&d.bbox, &e.bbox)).fold(0f32, f32::max);
        assert!(best >= 0.85, "an f32 person has no int8 match at IoU 0.85 (best {best}): {d:?}");
    }
    // int8 off the CPU is a settings error naming the setting (checked only in a build with the
    // metal feature: without it the device itself is refused first)
    m.device = "metal".into();
    if m.device_spec().and_then(|d| d.built_in()).is_ok() {
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains("precision") && err.contains("runs only on the CPU"), "{err}");
    }
}
