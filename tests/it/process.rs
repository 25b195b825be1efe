//! The server as a user runs it: the real binary on the shipped settings, logs, signals.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

#[actix_web::test]
async fn the_shipped_settings_start_three_cameras_and_sigterm_stops_them_cleanly() {
    let mut haven = Running::start("settings/default.toml", &[("HAVEN__SERVER__BIND", "127.0.0.1:0")]);
    let port = haven.port();
    for id in ["cam1", "cam2", "cam3"] {
        let n = &id[3..];
        haven.expect_log(&format!("Registered camera: {id} → data/{n}.mp4"), Duration::from_secs(5));
        haven.expect_log(&format!("[{id}] Worker started: data/{n}.mp4"), Duration::from_secs(5));
        haven.expect_log(&format!("[{id}] Opened: 768x576 @ 10.0fps"), Duration::from_secs(10));
    }

    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras")).send().await.unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["total_cameras"], 3);

    let mut viewer = Viewer::connect(&format!("ws://127.0.0.1:{port}/ws/stream")).await;
    assert_eq!(viewer.next_frame(Duration::from_secs(60)).await["metadata"]["camera_id"], "cam1");

    let signalled = Instant::now();
    let pid = haven.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The viewer gets a close frame, the cameras stop, the process exits: all within 5 s.
    loop {
        match viewer.next_event(Duration::from_secs(5)).await {
            Some(Event::Frame(_)) => continue,
            Some(Event::Closed(reason)) => {
                assert_eq!(reason.and_then(|r| r.description).as_deref(), Some("server shutting down"));
                break;
            }
            None => panic!("no close frame within 5 s of SIGTERM"),
        }
    }
    haven.expect_log("All cameras stopped", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = haven.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "haven still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "haven exited with {status}");
    assert!(signalled.elapsed() < Duration::from_secs(5), "stopping took {:?}", signalled.elapsed());
}

#[test]
fn a_malformed_settings_file_stops_start_up_with_one_clear_message() {
    let s = Scratch::new("badsettings");
    let path = s.path("bad.toml");
    let text = std::fs::read_to_string(repo().join("settings/default.toml"))
        .unwrap()
        .replacen("jpeg_quality = 80", "jpeg_quality = 101", 1);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_haven")).arg("--settings").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: camera \"cam1\": jpeg_quality 101 is out of range 1-100", path.display())),
        "{stderr}"
    );
}

#[actix_web::test]
async fn sighup_reloads_the_cameras_from_the_settings_file() {
    let s = Scratch::new("sighup");
    let path = s.path("haven.toml");
    let shipped = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let one_camera: String = shipped.split("[[cameras]]").take(2).collect::<Vec<_>>().join("[[cameras]]");
    std::fs::write(&path, &one_camera).unwrap();
    let mut haven = Running::start(&path.display().to_string(), &[("HAVEN__SERVER__BIND", "127.0.0.1:0"), ("HAVEN__MODEL__ENABLED", "false")]);
    let port = haven.port();
    haven.expect_log("[cam1] Opened", Duration::from_secs(10));
    // Write the file with its modification time unchanged, so that only the signal can reveal it.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, &shipped).unwrap();
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    assert!(Command::new("kill").args(["-HUP", &haven.child.id().to_string()]).status().unwrap().success());
    haven.expect_log("Reloaded cameras: added [cam2, cam3]", Duration::from_secs(5));
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras")).send().await.unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["total_cameras"], 3);
}

#[actix_web::test]
async fn without_weights_the_server_starts_with_ai_off_and_says_how_to_fetch_them() {
    let mut haven = Running::start(
        "settings/default.toml",
        &[("HAVEN__SERVER__BIND", "127.0.0.1:0"), ("HAVEN__MODEL__WEIGHTS", "weights/not-there.safetensors")],
    );
    let port = haven.port();
    let warning = haven.expect_log("AI disabled", Duration::from_secs(5));
    assert!(warning.contains("scripts/fetch-weights.sh"), "{warning}");
    let mut viewer = Viewer::connect(&format!("ws://127.0.0.1:{port}/ws/stream/cam2")).await;
    let frame = viewer.next_frame(Duration::from_secs(30)).await;
    assert_eq!(frame["metadata"]["ai_enabled"], false);
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/engine")).send().await.unwrap();
    let engine: serde_json::Value = res.json().await.unwrap();
    assert_eq!(engine["loaded"], false);
}
