//! A camera's zones with the real server and the real models: saved by PATCH into the settings file
//! and kept across a restart, a motion mask that keeps a moving scene from waking the model, a
//! `no_falls` zone that silences a real fall (`haven analyze --camera`), and bad zones refused at
//! start-up and by PATCH, naming the camera and the field.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use haven::settings::Settings;
use serde_json::{json, Value};

use crate::pose::pose_engine;
use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

/// A settings file: the shipped one up to its cameras, a free port, and `cameras` (TOML) after.
fn settings_file(s: &Scratch, cameras: &str) -> PathBuf {
    let path = s.path("haven.toml");
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut text = text.split("[[cameras]]").next().unwrap().replace("bind = \"127.0.0.1:8000\"", "bind = \"127.0.0.1:0\"");
    text = text.replace("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", s.path("events").display()));
    text.push_str(cameras);
    std::fs::write(&path, text).unwrap();
    path
}

fn camera_toml(id: &str, source: &Path, extra: &str) -> String {
    format!("[[cameras]]\ncamera_id = \"{id}\"\nsource = \"{}\"\nsource_type = \"video_file\"\n{extra}", source.display())
}

async fn patch(server: &TestServer, id: &str, body: Value) -> (u16, Value) {
    let mut res = awc::Client::new().patch(server.url(&format!("/api/cameras/{id}"))).send_json(&body).await.unwrap();
    let code = res.status().as_u16();
    (code, serde_json::from_slice(&res.body().await.unwrap()).unwrap_or(Value::Null))
}

fn whole_frame(name: &str, kind: &str) -> Value {
    json!({"name": name, "kind": kind, "points": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]})
}

fn counter(status: &Value, key: &str) -> u64 {
    status[key].as_u64().unwrap_or_else(|| panic!("no {key} in {status}"))
}

#[actix_web::test]
async fn zones_saved_by_patch_are_shown_written_to_the_file_and_kept_across_a_restart() {
    let s = Scratch::new("zones-patch");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 3.0, Some(320));
    let file = settings_file(&s, &camera_toml("door", &clip, "ai_enabled = false\n"));
    let server = TestServer::start(Settings::load(&file).unwrap(), None).await;

    let bed = json!({"name": "bed", "kind": "no_falls", "points": [[0.1, 0.5], [0.5, 0.5], [0.5, 0.9], [0.1, 0.9]]});
    let zones = json!([bed, whole_frame("clock", "motion_mask")]);
    let (code, body) = patch(&server, "door", json!({"zones": zones})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["zones"], zones, "the answer shows them");
    assert_eq!(server.camera_status("door").await["zones"], zones, "the status shows them");

    // Bad zones: 400, naming the camera and the field; nothing changed, in the server or the file.
    let written = std::fs::read_to_string(&file).unwrap();
    let bad = [
        (json!([bed, {"name": "tv", "kind": "motion_mask", "points": [[0, 0], [1, 1]]}]), "camera \"door\": zones[1].points must have at least 3 points, got 2"),
        (json!([{"name": "bed", "kind": "no_falls", "points": [[0, 0], [1.5, 0], [1, 1]]}]), "camera \"door\": zones[0].points[1] must lie in [0, 1], got [1.5, 0]"),
        (json!([bed, bed]), "camera \"door\": zones[1].name \"bed\" is the name of another zone of this camera"),
        (json!([{"name": "bed", "kind": "bedroom", "points": [[0, 0], [1, 0], [1, 1]]}]), "camera \"door\": invalid zones[0].kind: unknown zone kind \"bedroom\": no_falls, motion_mask or watch"),
    ];
    for (zones, message) in bad {
        let (code, body) = patch(&server, "door", json!({"zones": zones})).await;
        assert_eq!(code, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(message), "{message:?} in {body}");
    }
    assert_eq!(server.camera_status("door").await["zones"], json!([bed, whole_frame("clock", "motion_mask")]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written, "the file is left as it was");
    server.stop().await;

    // In the file, and back after a restart.
    let reloaded = Settings::load(&file).unwrap();
    assert_eq!(serde_json::to_value(&reloaded.cameras[0].zones).unwrap(), zones);
    let again = TestServer::start(reloaded, None).await;
    assert_eq!(again.camera_status("door").await["zones"], zones);
    // Removed by PATCH: gone from the status and the file.
    let (code, body) = patch(&again, "door", json!({"zones": []})).await;
    assert_eq!((code, &body["zones"]), (200, &json!([])), "{body}");
    assert!(Settings::load(&file).unwrap().cameras[0].zones.is_empty());
    again.stop().await;
}

#[actix_web::test]
async fn a_motion_mask_over_the_whole_frame_keeps_a_moving_scene_from_waking_the_model() {
    let s = Scratch::new("zones-mask");
    let clip = s.path("a.mp4");
    make_clip(&clip, 53.0, 30.0, None); // people walking in view all the time
    let mut cam = camera("plaza", &clip);
    cam.ai_enabled = true;
    cam.zones = vec![serde_json::from_value(whole_frame("everything", "motion_mask")).unwrap()];
    let server = TestServer::start(settings(vec![cam]), Some(pose_engine(640, 480))).await;
    let mut viewer = server.viewer("/ws/stream/plaza").await;
    let before = server.wait_for("plaza", 30 * SECOND, "the first check", |c| c["inferences"].as_u64() >= Some(1)).await;
    let started = Instant::now();
    let (frames, _) = viewer.count_frames(6 * SECOND).await;
    let after = server.camera_status("plaza").await;
    let secs = started.elapsed().as_secs_f64();
    assert!(frames >= 10, "the viewer still gets frames: {frames}");
    assert_eq!((&after["motion"], &after["motion_area"]), (&json!(false), &json!(0.0)), "{after}");
    // At most the idle rechecks of the people the first check found (one a second), never the detect rate.
    let looks = counter(&after, "inferences") - counter(&before, "inferences");
    assert!((looks as f64) <= secs + 2.0, "{looks} passes in {secs:.1} s with the whole frame masked: {after}");

    // The mask removed live: the same scene moves again.
    let (code, body) = patch(&server, "plaza", json!({"zones": null})).await;
    assert_eq!(code, 200, "{body}");
    let moving = server.wait_for("plaza", 30 * SECOND, "motion once unmasked", |c| c["motion"] == true).await;
    assert!(moving["motion_area"].as_f64().unwrap() > 0.0, "{moving}");
    server.stop().await;
}

/// `haven analyze --json` of the real fall clip (its last frame held 8 s, the person down) as
/// camera `id` of `settings`: the events it raised.
fn analyze(settings: &Path, id: &str) -> Vec<Value> {
    let clip = repo().join("tests/fixtures/falls/gmdcsa24_S3_Fall_16.mp4");
    let out = Command::new(env!("CARGO_BIN_EXE_haven"))
        .current_dir(repo())
        .args(["--settings", settings.to_str().unwrap(), "analyze", "--json", "--hold-last", "8", "--camera", id])
        .arg(&clip)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    reports[0]["events"].as_array().unwrap().clone()
}

#[test]
fn a_no_falls_zone_over_the_whole_frame_silences_a_real_fall_that_is_raised_without_it() {
    for w in ["weights/yolo11n-pose.safetensors", "weights/fall-yolov8s.safetensors"] {
        if !repo().join(w).is_file() {
            eprintln!("skipped: {w} is missing (bash scripts/fetch-weights.sh fetches it)");
            assert!(std::env::var_os("CI").is_none(), "CI must have fetched {w}");
            return;
        }
    }
    let s = Scratch::new("zones-nofalls");
    let clip = repo().join("tests/fixtures/falls/gmdcsa24_S3_Fall_16.mp4");
    let bed = "[[cameras.zones]]\nname = \"bed\"\nkind = \"no_falls\"\npoints = [[0, 0], [1, 0], [1, 1], [0, 1]]\n";
    let file = settings_file(&s, &format!("{}{}{bed}", camera_toml("open", &clip, ""), camera_toml("ward", &clip, "")));

    let open = analyze(&file, "open");
    assert_eq!(open.iter().filter(|e| e["kind"] == "fall").count(), 1, "without a zone the fall is raised: {open:?}");
    let ward = analyze(&file, "ward");
    assert!(ward.iter().all(|e| e["kind"] != "fall"), "no fall in a no_falls zone: {ward:?}");
    let people: Vec<&Value> = ward.iter().filter(|e| e["kind"] == "person_detected").collect();
    assert!(!people.is_empty() && people.iter().all(|e| e["zones"] == json!(["bed"])), "people still seen, in the bed: {ward:?}");
}

#[test]
fn bad_zones_stop_start_up_naming_the_camera_and_the_field() {
    let s = Scratch::new("zones-startup");
    let clip = demo_video("1.mp4");
    let cases = [
        ("points = [[0, 0], [1, 1]]\nkind = \"watch\"", "camera \"door\": zones[0].points must have at least 3 points, got 2"),
        ("points = [[0, 0], [1, 0], [1, 1.2]]\nkind = \"watch\"", "camera \"door\": zones[0].points[2] must lie in [0, 1], got [1, 1.2]"),
        ("points = [[0, 0], [1, 0], [1, 1]]\nkind = \"bed\"", "camera \"door\": zones[0].kind: unknown zone kind \"bed\": no_falls, motion_mask or watch"),
    ];
    for (zone, message) in cases {
        let file = settings_file(&s, &format!("{}[[cameras.zones]]\nname = \"z\"\n{zone}\n", camera_toml("door", &clip, "")));
        let out = Command::new(env!("CARGO_BIN_EXE_haven"))
            .current_dir(repo())
            .args(["--settings", file.to_str().unwrap()])
            .env_remove("RUST_BACKTRACE")
            .env_remove("HAVEN_SETTINGS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.starts_with(&format!("error: {}:", file.display())) && stderr.contains(message), "{message:?} in {stderr}");
    }
}
