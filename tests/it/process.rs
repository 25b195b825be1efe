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
        haven.expect_log(&format!("Registered camera: {id} → data/{n}.mp4"), Duration::from_secs(30));
        haven.expect_log(&format!("[{id}] Worker started: data/{n}.mp4"), Duration::from_secs(30));
        haven.expect_log(&format!("[{id}] Opened: 768x576 @ 10.0fps"), Duration::from_secs(30));
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
    let out = haven(&["--settings", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "a settings mistake is exit code 3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!("error: {}: camera \"cam1\": jpeg_quality 101 is out of range 1-100\n", path.display()),
        "one line, no backtrace"
    );
}

/// The binary run to completion from the repository root, without a backtrace or a settings path
/// from this environment.
fn haven(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_haven"))
        .current_dir(repo())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("HAVEN_SETTINGS")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn the_command_line_has_help_per_sub_command_a_version_and_exit_codes_that_say_what_failed() {
    // Help of its own for each sub-command, never taken for an image.
    let out = haven(&["detect", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: haven detect") && help.contains("--json") && help.contains("Exit codes:"), "{help}");
    let out = haven(&["--version"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("haven {}", env!("CARGO_PKG_VERSION")));
    let out = haven(&["--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2), "a bad command line");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));

    // The settings path from the environment; a missing file: 3, one line.
    let out = haven(&[], &[("HAVEN_SETTINGS", "settings/missing.toml")]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "error: settings/missing.toml: cannot read settings: file not found\n");
    // RUST_BACKTRACE asks for the details.
    let out = Command::new(env!("CARGO_BIN_EXE_haven"))
        .current_dir(repo())
        .args(["--settings", "settings/missing.toml"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: settings/missing.toml: cannot read settings: file not found\n"), "{stderr}");
    assert!(stderr.contains("backtrace"), "RUST_BACKTRACE=1 gives a backtrace: {stderr}");

    // An image that is not there: 6, named, before the model loads.
    let out = haven(&["detect", "not-there.jpg"], &[]);
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "error: not-there.jpg: no such file\n");

    // A device this build lacks (the default build has no CUDA): refused at start-up naming the
    // setting (3), and by `detect --device` (5).
    if !cfg!(feature = "cuda") {
        let out = haven(&[], &[("HAVEN__MODEL__DEVICE", "cuda:0")]);
        assert_eq!(out.status.code(), Some(3));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("model.device \"cuda:0\": this build has no CUDA support"), "{stderr}");
        let out = haven(&["detect", "--device", "cuda:0", "not-there.jpg"], &[]);
        assert_eq!(out.status.code(), Some(5));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--device: model.device \"cuda:0\"") && stderr.contains("--features cuda"), "{stderr}");
    }

    // The port taken: 4, and the last line says which address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let out = haven(&[], &[("HAVEN__SERVER__BIND", &bind), ("HAVEN__MODEL__ENABLED", "false")]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("error: cannot start: cannot bind {bind}: ")), "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("Caused by"), "{stderr}");
}

#[actix_web::test]
async fn sighup_reloads_the_cameras_from_the_settings_file() {
    let s = Scratch::new("sighup");
    let path = s.path("haven.toml");
    let shipped = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let one_camera: String = shipped.split("[[cameras]]").take(2).collect::<Vec<_>>().join("[[cameras]]");
    std::fs::write(&path, &one_camera).unwrap();
    let events = s.path("events").display().to_string();
    let env = [("HAVEN__SERVER__BIND", "127.0.0.1:0"), ("HAVEN__MODEL__ENABLED", "false"), ("HAVEN__EVENTS__DATA_DIR", events.as_str())];
    let mut haven = Running::start(&path.display().to_string(), &env);
    let port = haven.port();
    haven.expect_log("[cam1] Opened", Duration::from_secs(30));
    // Write the file with its modification time unchanged, so that only the signal can reveal it.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, &shipped).unwrap();
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    assert!(Command::new("kill").args(["-HUP", &haven.child.id().to_string()]).status().unwrap().success());
    // generous: on a loaded machine the reload waited over 5 s for its turn (CI, 2026-12-07)
    haven.expect_log("Reloaded cameras: added [cam2, cam3]", Duration::from_secs(30));
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras")).send().await.unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["total_cameras"], 3);
    // In the audit log, by the file, with what it changed.
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/audit")).send().await.unwrap();
    let audit: serde_json::Value = res.json().await.unwrap();
    let entry = &audit["entries"][0];
    assert_eq!((entry["who"].as_str(), entry["action"].as_str()), (Some("settings file"), Some("reload")), "{audit}");
    assert_eq!(entry["detail"], r#"cameras added ["cam2", "cam3"]"#, "{audit}");
}

#[actix_web::test]
async fn without_weights_the_server_starts_with_ai_off_and_says_how_to_fetch_them() {
    let mut haven = Running::start(
        "settings/default.toml",
        &[
            ("HAVEN__SERVER__BIND", "127.0.0.1:0"),
            ("HAVEN__MODEL__WEIGHTS", "weights/not-there.safetensors"),
            ("HAVEN__MODELS__FALL__WEIGHTS", "weights/not-there-either.safetensors"),
        ],
    );
    let port = haven.port();
    let warning = haven.expect_log("AI disabled", Duration::from_secs(30));
    assert!(warning.contains("scripts/fetch-weights.sh"), "{warning}");
    let mut viewer = Viewer::connect(&format!("ws://127.0.0.1:{port}/ws/stream/cam2")).await;
    let frame = viewer.next_frame(Duration::from_secs(30)).await;
    assert_eq!(frame["metadata"]["ai_enabled"], false);
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/engine")).send().await.unwrap();
    let engine: serde_json::Value = res.json().await.unwrap();
    assert_eq!(engine["loaded"], false);
}
