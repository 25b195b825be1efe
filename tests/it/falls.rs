//! Real falls (GMDCSA24 clips in tests/fixtures/falls): the pose model and the fall model on real
//! footage, through `haven analyze` and through a served camera, and the commands' answers to bad
//! input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use haven::analyze::Analyzer;
use haven::inference::pose::PoseEngine;
use haven::inference::Engines;
use haven::settings::{Settings, SourceType};
use serde_json::Value;

use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/falls").join(name)
}

/// The shipped models (pose and fall), loaded as the server loads them; `None` (said, and a failure
/// under CI) when their weights have not been fetched.
fn shipped_models(settings: &Settings) -> Option<Engines> {
    for model in settings.models.values() {
        let path = repo().join(&model.weights);
        if !path.is_file() {
            eprintln!("skipped: {} is missing (bash scripts/fetch-weights.sh fetches it)", path.display());
            assert!(std::env::var_os("CI").is_none(), "CI must have fetched {}", path.display());
            return None;
        }
    }
    let mut settings = settings.clone();
    for model in settings.models.values_mut() {
        model.weights = repo().join(&model.weights);
    }
    let engines = PoseEngine::engines_for_server(&settings.models).unwrap();
    assert_eq!(engines.0.len(), 2, "pose and fall load");
    Some(engines)
}

/// `clip` with its last frame held for `secs` (the person stays down, as a real camera shows them).
fn held(clip: &Path, secs: f64, out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(clip)
        .args(["-vf", &format!("tpad=stop_mode=clone:stop_duration={secs}"), "-an", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p", "-bf", "0"])
        .arg(out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed to make {}", out.display());
}

/// A fall's start and alert, in seconds after the clip's first person was first seen.
fn fall_times(fall: &Value, first_seen: f64) -> (f64, f64) {
    (fall["started_at"].as_f64().unwrap() - first_seen, fall["raised_at"].as_f64().unwrap() - first_seen)
}

#[actix_web::test]
async fn analyze_and_a_served_camera_raise_the_same_fall_on_the_same_real_clip() {
    let base = settings(Vec::new());
    let Some(engines) = shipped_models(&base) else { return };
    let s = Scratch::new("falls-same");
    let clip = s.path("fall.mp4");
    held(&fixture("gmdcsa24_S3_Fall_16.mp4"), 8.0, &clip);

    // haven analyze: the camera's pipeline in the video's own time.
    let analyzer = Analyzer::new(base.clone(), engines.clone(), None, 0.0).unwrap();
    let report = analyzer.run(&clip).unwrap();
    let falls: Vec<_> = report.falls().collect();
    assert_eq!(falls.len(), 1, "{report:#?}");
    let analyzed = falls[0];
    let reason = analyzed.reason.as_ref().unwrap();
    assert_eq!(reason.by, "model", "the pose model loses this person on the floor: {reason:?}");
    assert!(reason.model_fall.unwrap() >= 0.35 && reason.model_looks.unwrap() >= 3, "{reason:?}");
    // Reaching the floor at 2.25 s (labels.json); raised within 4 s of it.
    assert!((analyzed.raised_s - 2.25) > 0.0 && (analyzed.raised_s - 2.25) < 4.0, "{analyzed:?}");
    let first_person = report.events.iter().filter(|e| e.kind == "person_detected").map(|e| e.start_s).fold(f64::INFINITY, f64::min);
    assert!(report.looks["fall"] > 0 && report.looks["fall"] < report.looks["pose"], "asked only when it pays: {:?}", report.looks);

    // The same clip as a served camera, in real time.
    let mut camera = haven::settings::CameraConfig::new("ward", &clip.display().to_string(), SourceType::VideoFile);
    camera.loop_video = false;
    let server = TestServer::start_with(settings(vec![camera]), engines).await;
    server.wait_for("ward", Duration::from_secs(90), "the clip to end", |s| s["state"] == "ended").await;
    let (_, body) = server.get("/api/events?kind=fall").await;
    let served = body["events"].as_array().unwrap();
    assert_eq!(served.len(), 1, "{body}");
    assert_eq!(served[0]["reason"]["by"], "model", "{}", served[0]);
    let (_, people) = server.get("/api/events?kind=person_detected").await;
    let first_seen = people["events"].as_array().unwrap().iter().map(|e| e["started_at"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    let (start, raised) = fall_times(&served[0], first_seen);
    // The served camera's looks land where its model has time for them: the same fall within a look
    // or a few (a loaded machine answers later).
    assert!((start - (analyzed.start_s - first_person)).abs() < 1.5, "served {start:.2} s, analysed {:.2} s", analyzed.start_s);
    assert!((raised - (analyzed.raised_s - first_person)).abs() < 1.5, "served {raised:.2} s, analysed {:.2} s", analyzed.raised_s);
    server.stop().await;
}

#[test]
fn analyze_marks_the_real_fall_a_long_lie_once_down_long_lie_secs() {
    let mut base = settings(Vec::new());
    base.events.fall.long_lie_secs = 3.0;
    let Some(engines) = shipped_models(&base) else { return };
    let s = Scratch::new("falls-long-lie");
    let clip = s.path("fall.mp4");
    held(&fixture("gmdcsa24_S3_Fall_16.mp4"), 8.0, &clip);
    let report = Analyzer::new(base, engines, None, 0.0).unwrap().run(&clip).unwrap();
    let falls: Vec<_> = report.falls().collect();
    assert_eq!(falls.len(), 1, "{report:#?}");
    let (fall, at) = (falls[0], falls[0].long_lie_s.expect("a long lie"));
    // In the video's own time: 3 s after it was raised, to the frame.
    assert!(fall.long_lie && at - fall.raised_s >= 3.0 && at - fall.raised_s < 3.2, "{fall:?}");
    let json = serde_json::to_value(fall).unwrap();
    assert_eq!((json["long_lie"].as_bool(), json["long_lie_s"].as_f64()), (Some(true), Some(at)));
    assert!(report.events.iter().all(|e| e.kind == "fall" || !e.long_lie), "only falls lie long");
}

#[test]
fn evaluate_finds_the_real_fall_and_no_fall_in_the_squats() {
    let base = settings(Vec::new());
    let Some(engines) = shipped_models(&base) else { return };
    let labels_path = fixture("labels.json");
    let labels = haven::evaluate::read_labels(&labels_path).unwrap();
    let analyzer = Analyzer::new(base, engines, None, 10.0).unwrap();
    let e = haven::evaluate::evaluate(&analyzer, &labels_path, &labels, |_| {}).unwrap();
    let table = e.table();
    assert_eq!((e.falls, e.raised, e.false_alarms_adl, e.extra_alerts), (1, 1, 0, 0), "{table}");
    assert!(e.max_delay_s.unwrap() < 4.0, "{table}");
    assert!(table.contains("falls raised: 1 / 1 (100 %)"), "{table}");

    // The pose rule alone (the fall model off) misses it: the person vanishes on the floor.
    let mut pose_only = settings(Vec::new());
    pose_only.events.fall.model = String::new();
    let engines = shipped_models(&pose_only).unwrap();
    let e = haven::evaluate::evaluate(&Analyzer::new(pose_only, engines, None, 10.0).unwrap(), &labels_path, &labels, |_| {}).unwrap();
    assert_eq!((e.raised, e.false_alarms_adl), (0, 0), "{}", e.table());
    assert!(e.clips.iter().all(|c| !c.looks.contains_key("fall")), "the fall model is never asked");
}

fn haven(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_haven"))
        .current_dir(repo())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("HAVEN_SETTINGS")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn analyze_and_evaluate_name_bad_input_and_exit_6() {
    if shipped_models(&settings(Vec::new())).is_none() {
        return;
    }
    assert_eq!(haven(&["analyze", "not-there.mp4"]), (Some(6), "error: not-there.mp4: no such file\n".to_string()));
    let (code, err) = haven(&["analyze", "Cargo.toml"]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.starts_with("error: Cargo.toml: ") && err.contains("video") && err.lines().count() == 1, "{err}");

    let s = Scratch::new("falls-badlabels");
    std::fs::write(s.path("labels.json"), r#"[{"file": "a.mp4", "kind": "fall", "fall_times_s": [1.0]}, {"file": "b.mp4", "kind": "fell"}]"#).unwrap();
    let (code, err) = haven(&["evaluate", s.0.to_str().unwrap()]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("labels.json: entry 2 (\"b.mp4\"): unknown variant `fell`"), "{err}");
    let (code, err) = haven(&["evaluate", s.path("nowhere").to_str().unwrap()]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("nowhere/labels.json: no such file"), "{err}");
    let (code, err) = haven(&["analyze", "--camera", "nobody", "tests/fixtures/falls/gmdcsa24_S3_ADL_07.mp4"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--camera: settings/default.toml: no camera \"nobody\" (cameras: cam1, cam2, cam3)"), "{err}");
}
