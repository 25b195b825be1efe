//! Two models on one camera, end to end: the real pose model and a (seeded-random) YOLOv8n detect
//! model behind the shared scheduler, a real demo video decoded by OpenCV, real WebSocket viewers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::ws::Frame;
use futures_util::StreamExt;
use haven::inference::pose::PoseEngine;
use haven::inference::{AiEngine, Engines};
use haven::settings::Settings;
use serde_json::{json, Value};

use crate::pose::pose_engine;
use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

/// The seeded-random detect fixture (80 COCO classes; it finds a handful of random boxes).
pub fn detect_fixture() -> std::path::PathBuf {
    let path = repo().join("tests/fixtures/detect/yolov8n-detect-random.safetensors");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

pub fn objects_engine() -> Arc<dyn AiEngine> {
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut m = Settings::from_toml(&text, "settings/default.toml").unwrap().models["pose"].clone();
    m.weights = detect_fixture();
    m.conf_threshold = 0.25;
    Arc::new(PoseEngine::load(&m).expect("the detect fixture loads"))
}

async fn patch(server: &TestServer, id: &str, body: Value) -> (u16, Value) {
    let mut res = awc::Client::new().patch(server.url(&format!("/api/cameras/{id}"))).send_json(&body).await.unwrap();
    let code = res.status().as_u16();
    (code, serde_json::from_slice(&res.body().await.unwrap()).unwrap_or(Value::Null))
}

fn of_model<'a>(frame: &'a Value, model: &str) -> Vec<&'a Value> {
    frame["metadata"]["detections"].as_array().unwrap().iter().filter(|d| d["model"] == model).collect()
}

#[actix_web::test]
async fn pose_and_objects_on_one_camera_reach_viewers_raise_object_events_and_switch_off_live() {
    let s = Scratch::new("models");
    let clip = s.path("a.mp4");
    make_clip(&clip, 53.0, 20.0, None); // pedestrians in view throughout
    let objects = objects_engine();
    let names = objects.info().class_names.clone();
    assert_eq!(names.len(), 80, "COCO classes");
    let mut cam = camera("yard", &clip);
    cam.ai_enabled = true;
    let mut settings = settings(vec![cam]);
    settings.models.insert("objects".into(), settings.models["pose"].clone());
    settings.cameras[0].models = Some(vec!["pose".into(), "objects".into()]);
    // The random model gives random classes: every class raises events.
    settings.cameras[0].object_events = Some(names.clone());
    settings.events.objects.min_secs = 0.0;
    settings.events.objects.max_center_distance = 2.0;
    settings.events.objects.min_score = 0.0;
    settings.validate().unwrap();
    let server = TestServer::start_with(settings, Engines::named(vec![("pose", pose_engine(640, 480)), ("objects", objects)])).await;
    let (_, mut alerts) = awc::Client::new().ws(server.ws_url("/ws/alerts?camera=yard")).connect().await.unwrap();
    let mut viewer = server.viewer("/ws/stream/yard").await;

    // Both kinds of detections reach the viewer: people with keypoints, objects with COCO classes.
    let (mut people, mut things) = (None, None);
    let deadline = Instant::now() + 60 * SECOND;
    while (people.is_none() || things.is_none()) && Instant::now() < deadline {
        let frame = viewer.next_frame(30 * SECOND).await;
        if let Some(p) = of_model(&frame, "pose").first() {
            people = Some((*p).clone());
        }
        if let Some(o) = of_model(&frame, "objects").first() {
            things = Some((*o).clone());
        }
    }
    let person = people.expect("a person from the pose model reached the viewer");
    assert_eq!((person["class"].as_str(), person["keypoints"].as_array().map(Vec::len)), (Some("person"), Some(17)), "{person}");
    let thing = things.expect("an object from the objects model reached the viewer");
    assert!(names.iter().any(|n| thing["class"] == n.as_str()), "{thing}");
    assert!(thing.get("keypoints").is_none(), "objects carry no keypoints: {thing}");

    // One pass per model per frame looked at: each model's count on the camera is the engine's
    // count of that model (this is its only camera), and neither passes the frames looked at.
    let (_, engine) = server.get("/api/engine").await;
    let status = server.camera_status("yard").await;
    let looked = status["inferences"].as_u64().unwrap();
    let model_calls = |name: &str| engine["models"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["calls"].as_u64().unwrap();
    for name in ["pose", "objects"] {
        let on_camera = status["models_stats"][name]["inferences"].as_u64().unwrap();
        let calls = model_calls(name);
        assert!(on_camera > 0 && on_camera <= looked, "{name}: {on_camera} passes for {looked} frames looked at: {status}");
        // A pass in flight when the two were read counts in the engine, not yet on the camera.
        assert!(calls >= on_camera && calls <= on_camera + 1, "{name}: engine {calls}, camera {on_camera}");
    }
    let model = |name: &str| engine["models"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone();
    let (pose, objects) = (model("pose"), model("objects"));
    assert_eq!((pose["task"].as_str(), objects["task"].as_str()), (Some("pose"), Some("detect")), "{engine}");
    assert_eq!((pose["classes"].as_u64(), objects["classes"].as_u64()), (Some(1), Some(80)), "{engine}");
    assert_eq!((pose["precision"].as_str(), objects["precision"].as_str()), (Some("f32"), Some("f32")), "{engine}");
    assert_eq!(objects["cameras"], json!(["yard"]));
    // Both look at the whole first frame at 640x480: letterboxed once for the two.
    assert!(engine["shared_inputs"].as_u64().unwrap() >= 1, "{engine}");
    // Per model in /metrics too.
    let mut res = awc::Client::new().get(server.url("/metrics")).send().await.unwrap();
    let metrics = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    for needle in [
        "haven_camera_model_inferences_total{camera=\"yard\",model=\"objects\"} ",
        "haven_camera_model_inferences_total{camera=\"yard\",model=\"pose\"} ",
        "haven_camera_model_inference_seconds{camera=\"yard\",model=\"objects\"} ",
        "haven_engine_model_inferences_total{model=\"objects\"} ",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle:?}:\n{metrics}");
    }

    // object_detected events: pushed on /ws/alerts, stored with their model and class.
    let deadline = Instant::now() + 30 * SECOND;
    let alert = loop {
        assert!(Instant::now() < deadline, "no object_detected alert within 30 s");
        if let Ok(Some(Ok(Frame::Text(bytes)))) = tokio::time::timeout(SECOND, alerts.next()).await {
            let e: Value = serde_json::from_slice(&bytes).unwrap();
            if e["kind"] == "object_detected" {
                break e;
            }
        }
    };
    assert_eq!((alert["model"].as_str(), alert["camera_id"].as_str()), (Some("objects"), Some("yard")), "{alert}");
    let class = alert["class"].as_str().unwrap().to_string();
    assert!(names.contains(&class), "{alert}");
    let (code, list) = server.get(&format!("/api/events?camera=yard&kind=object_detected&class={class}")).await;
    assert_eq!(code, 200, "{list}");
    let stored = list["events"].as_array().unwrap();
    assert!(stored.iter().any(|e| e["id"] == alert["id"] && e["class"] == class.as_str() && e["model"] == "objects"), "{list}");

    // Switching objects off by PATCH: no restart, no more object detections nor passes.
    let uptime = server.camera_status("yard").await["uptime_seconds"].as_f64().unwrap();
    let (code, after) = patch(&server, "yard", json!({"models": ["pose"]})).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["models"], json!(["pose"]));
    // A viewer from now on: its first frame may be the one in the feed already (or one being made as
    // the change came); from the next on, none has objects.
    viewer.close().await;
    let mut viewer = server.viewer("/ws/stream/yard").await;
    for _ in 0..2 {
        viewer.next_frame(10 * SECOND).await;
    }
    let mut before = None;
    for n in 0..20 {
        let frame = viewer.next_frame(10 * SECOND).await;
        assert!(of_model(&frame, "objects").is_empty(), "objects after they were switched off: {}", frame["metadata"]);
        // A pass that was in the model when the switch came has long finished by now.
        if n == 9 {
            before = Some(server.camera_status("yard").await);
        }
    }
    let before = before.unwrap();
    let objects_before = before["models_stats"]["objects"]["inferences"].as_u64().unwrap();
    let pose_before = before["models_stats"]["pose"]["inferences"].as_u64().unwrap();
    let status = server.camera_status("yard").await;
    assert_eq!(status["models_stats"]["objects"]["inferences"].as_u64().unwrap(), objects_before, "{status}");
    assert!(status["models_stats"]["pose"]["inferences"].as_u64().unwrap() > pose_before, "pose goes on: {status}");
    assert!(status["uptime_seconds"].as_f64().unwrap() > uptime, "the camera was not restarted: {status}");

    // Switched on again: its first look comes with the next frames, whatever the motion gate says.
    let (code, after) = patch(&server, "yard", json!({"models": ["pose", "objects"]})).await;
    assert_eq!((code, &after["models"]), (200, &json!(["pose", "objects"])), "{after}");
    let mut back = false;
    for _ in 0..30 {
        if !of_model(&viewer.next_frame(10 * SECOND).await, "objects").is_empty() {
            back = true;
            break;
        }
    }
    assert!(back, "objects came back within 30 frames of being switched on");
    assert!(server.camera_status("yard").await["models_stats"]["objects"]["inferences"].as_u64().unwrap() > objects_before);

    // A model the server does not have is refused, naming it.
    let (code, body) = patch(&server, "yard", json!({"models": ["pose", "cars"]})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("\"cars\""), "{body}");
    server.stop().await;
}

#[test]
fn a_class_filter_by_name_keeps_only_those_classes_and_a_name_the_model_lacks_stops_the_start() {
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut m = Settings::from_toml(&text, "settings/default.toml").unwrap().models["pose"].clone();
    m.weights = detect_fixture();
    let mut models = std::collections::BTreeMap::new();
    models.insert("objects".to_string(), m.clone());
    let frame = opencv::imgcodecs::imread(repo().join("tests/fixtures/pose/zidane.jpg").to_str().unwrap(), opencv::imgcodecs::IMREAD_COLOR).unwrap();
    let all = PoseEngine::engines_for_server(&models).unwrap().0[0].detect_regions(&frame, &[], 1.0).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for d in &all {
        *counts.entry(d.class.to_string()).or_insert(0) += 1;
    }
    assert!(counts.len() >= 3, "the random model finds several classes: {counts:?}");
    // Keep the two most frequent classes: only they come out, all of them.
    let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1));
    let kept: Vec<String> = by_count.iter().take(2).map(|(c, _)| c.clone()).collect();
    models.get_mut("objects").unwrap().classes = Some(kept.clone());
    let filtered = PoseEngine::engines_for_server(&models).unwrap().0[0].detect_regions(&frame, &[], 1.0).unwrap();
    assert!(!filtered.is_empty() && filtered.iter().all(|d| kept.contains(&d.class.to_string())), "{kept:?}: {filtered:?}");
    assert_eq!(filtered.len(), by_count[0].1 + by_count[1].1, "class-aware NMS: filtering first drops none of theirs");
    // A class the model lacks is a settings mistake, named.
    models.get_mut("objects").unwrap().classes = Some(vec!["cars".into()]);
    let err = PoseEngine::engines_for_server(&models).err().expect("an unknown class stops the start");
    assert!(err.starts_with("models.objects.classes names \"cars\", which "), "{err}");
    assert!(err.contains("does not have (its 80 classes: person, bicycle, car,"), "{err}");
}

/// The server's own start-up (`haven serve`): a camera's `models` and `object_events` are checked
/// against the models the settings load, and a mistake stops it with the settings' exit code (3),
/// naming the camera and the setting.
#[test]
fn the_server_refuses_to_start_with_a_camera_naming_a_model_or_class_it_lacks() {
    let s = Scratch::new("models-start");
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let head = text.split("[[cameras]]").next().unwrap();
    let objects = format!("[models.objects]\nweights = \"{}\"\nconf_threshold = 0.25\niou_threshold = 0.7\n\n", detect_fixture().display());
    let cam = |extra: &str| format!("[[cameras]]\ncamera_id = \"yard\"\nsource = \"data/1.mp4\"\nsource_type = \"video_file\"\n{extra}");
    for (body, message) in [
        (cam("models = [\"pose\", \"objets\"]\n"), "camera \"yard\": models names \"objets\", which is not a model of this server (known: fall, objects, pose)"),
        (cam("models = [\"pose\", \"objects\"]\nobject_events = [\"car\", \"unicorn\"]\n"), "camera \"yard\": object_events names \"unicorn\", which no detect model of this server has as a class"),
    ] {
        let file = s.path("s.toml");
        std::fs::write(&file, format!("{head}{objects}{body}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_haven"))
            .current_dir(repo())
            .args(["--settings", file.to_str().unwrap()])
            .env("HAVEN__SERVER__BIND", "127.0.0.1:0")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
}
