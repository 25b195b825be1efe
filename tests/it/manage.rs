//! Cameras managed at run time: added, changed and removed through the API, written back to the
//! settings file, reloaded on SIGHUP; tokens, bad bodies and paths outside the media directories.

use std::time::Duration;

use haven::settings::Settings;
use serde_json::{json, Value};

use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

/// A settings file on disk (the server writes changes back to it) with one camera on `clip`.
fn settings_file(s: &Scratch, clip: &std::path::Path, token: &str) -> std::path::PathBuf {
    let path = s.path("haven.toml");
    let mut text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    text = text.split("[[cameras]]").next().unwrap().to_string();
    text = text
        .replace("bind = \"127.0.0.1:8000\"", "bind = \"127.0.0.1:0\"")
        .replace("token = \"\"", &format!("token = \"{token}\""))
        .replace("media_dirs = [\"data\"]", &format!("media_dirs = [\"{}\"]", s.0.display()));
    text.push_str(&format!(
        "[[cameras]]\ncamera_id = \"cam1\"\nsource = \"{}\"\nsource_type = \"video_file\"\nai_enabled = false\n",
        clip.display()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

async fn send(server: &TestServer, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::new();
    let url = server.url(path);
    let mut req = match method {
        "POST" => client.post(url),
        "PATCH" => client.patch(url),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    };
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let code = res.status().as_u16();
    let bytes = res.body().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[actix_web::test]
async fn cameras_added_changed_and_removed_through_the_api_survive_a_restart() {
    let s = Scratch::new("manage");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 3.0, Some(320));
    let file = settings_file(&s, &clip, "");
    let server = TestServer::start(Settings::load(&file).unwrap(), None).await;

    let new_cam = json!({"camera_id": "door", "source": clip.display().to_string(), "source_type": "video_file",
        "ai_enabled": false, "jpeg_quality": 70});
    let (code, body) = send(&server, "POST", "/api/cameras", None, Some(new_cam.clone())).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["camera_id"], "door");
    let (code, body) = send(&server, "POST", "/api/cameras", None, Some(new_cam)).await;
    assert_eq!(code, 409, "{body}");

    let mut viewer = server.viewer("/ws/stream/door").await;
    assert_eq!(viewer.next_frame(10 * SECOND).await["metadata"]["camera_id"], "door");

    // A live change: no restart, the same viewer keeps streaming at the new width.
    let (code, body) = send(&server, "PATCH", "/api/cameras/door", None, Some(json!({"resize_width": 160, "jpeg_quality": 40}))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["jpeg_quality"], 40);
    // Its processing rate can be capped live too.
    let (code, body) = send(&server, "PATCH", "/api/cameras/door", None, Some(json!({"max_fps": 4}))).await;
    assert_eq!(code, 200, "{body}");
    viewer.count_frames(2 * SECOND).await;
    let (n, _) = viewer.count_frames(3 * SECOND).await;
    assert!((10..=14).contains(&n), "max_fps 4 gave {n} frames in 3 s");
    let mut narrowed = false;
    for _ in 0..30 {
        if viewer.next_frame(5 * SECOND).await["metadata"]["width"] == 160 {
            narrowed = true;
            break;
        }
    }
    assert!(narrowed, "resize_width never took effect");

    // Removing closes its viewers with a reason.
    let (code, _) = send(&server, "DELETE", "/api/cameras/cam1", None, None).await;
    assert_eq!(code, 204);
    let (code, _) = send(&server, "DELETE", "/api/cameras/cam1", None, None).await;
    assert_eq!(code, 404);
    let (_, list) = server.get("/api/cameras").await;
    assert_eq!(list["total_cameras"], 1);
    server.stop().await;

    // The file now holds exactly what the API left, and a restart brings it back.
    let reloaded = Settings::load(&file).unwrap();
    let ids: Vec<_> = reloaded.cameras.iter().map(|c| c.camera_id.as_str()).collect();
    assert_eq!(ids, ["door"]);
    assert_eq!(reloaded.cameras[0].jpeg_quality, 40);
    assert_eq!(reloaded.cameras[0].resize_width, Some(160));
    assert!(std::fs::read_to_string(&file).unwrap().contains("# Frames per second each viewer gets"));
    let again = TestServer::start(reloaded, None).await;
    let mut v = again.viewer("/ws/stream/door").await;
    assert_eq!(v.next_frame(10 * SECOND).await["metadata"]["width"], 160);
    again.stop().await;
}

#[actix_web::test]
async fn removing_a_camera_closes_its_viewers_with_a_reason() {
    let (_s, _clip, server) = server_on_clip("remove", 3.0, &["cam1", "cam2"]).await;
    let mut gone = server.viewer("/ws/stream/cam1").await;
    let mut stays = server.viewer("/ws/stream/cam2").await;
    gone.next_frame(10 * SECOND).await;
    stays.next_frame(10 * SECOND).await;
    let (code, _) = send(&server, "DELETE", "/api/cameras/cam1", None, None).await;
    assert_eq!(code, 204);
    loop {
        match gone.next_event(5 * SECOND).await {
            Some(Event::Frame(_)) => continue,
            Some(Event::Closed(r)) => {
                assert_eq!(r.and_then(|r| r.description).as_deref(), Some("camera removed"));
                break;
            }
            None => panic!("viewer of a removed camera was not closed"),
        }
    }
    assert!(stays.count_frames(2 * SECOND).await.0 >= 10);
    server.stop().await;
}

#[actix_web::test]
async fn bad_requests_get_their_4xx_and_change_nothing() {
    let s = Scratch::new("bad");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 2.0, Some(320));
    let file = settings_file(&s, &clip, "");
    let before = std::fs::read_to_string(&file).unwrap();
    let server = TestServer::start(Settings::load(&file).unwrap(), None).await;
    let src = clip.display().to_string();
    let cases = [
        ("POST", "/api/cameras", json!({"camera_id": "x", "source": src, "source_type": "video_file", "jpeg_quality": 300}), "jpeg_quality"),
        ("POST", "/api/cameras", json!({"camera_id": "x", "source": src, "source_type": "video_file", "jpeg_quality": 0}), "jpeg_quality"),
        ("POST", "/api/cameras", json!({"camera_id": "x", "source": src, "source_type": "webcam"}), "source_type"),
        ("POST", "/api/cameras", json!({"camera_id": "", "source": src, "source_type": "video_file"}), "camera_id"),
        ("POST", "/api/cameras", json!({"source": src, "source_type": "video_file"}), "camera_id"),
        // Ids and sources are bounded: a 5,000-character id would name a file no filesystem takes.
        ("POST", "/api/cameras", json!({"camera_id": "c".repeat(5000), "source": src, "source_type": "video_file"}), "camera_id is 5000 characters long; the limit is 64"),
        ("POST", "/api/cameras", json!({"camera_id": "x", "source": format!("{src}{}", "/x".repeat(1100)), "source_type": "video_file"}), "source is 2"),
        ("POST", "/api/cameras", json!({"camera_id": "x", "source": format!("{src}\n[cam1] forged"), "source_type": "video_file"}), "source holds a control character"),
        ("POST", "/api/cameras", json!({"camera_id": "x", "source": "/etc/passwd", "source_type": "video_file"}), "outside the media directories"),
        ("POST", "/api/cameras", json!({"camera_id": "x", "source": format!("{}/../../etc/passwd", s.0.display()), "source_type": "video_file"}), ".."),
        ("PATCH", "/api/cameras/cam1", json!({"jpeg_quality": 101}), "jpeg_quality"),
        ("PATCH", "/api/cameras/cam1", json!({"ai_enabled": "yes"}), "ai_enabled"),
        ("PATCH", "/api/cameras/cam1", json!({"colour": "red"}), "colour"),
        ("PATCH", "/api/cameras/cam1", json!({"max_fps": 0}), "max_fps"),
        ("PATCH", "/api/cameras/cam1", json!({"loop_video": null}), "loop_video"),
        ("PATCH", "/api/cameras/cam1", json!([]), "JSON object"),
        ("POST", "/api/cameras", json!([{"camera_id": "x"}]), "JSON object"),
        ("PATCH", "/api/cameras/cam1", json!({"jpeg_quality": null}), "jpeg_quality"),
    ];
    for (method, path, body, names) in cases {
        let (code, answer) = send(&server, method, path, None, Some(body.clone())).await;
        assert_eq!(code, 400, "{method} {path} {body} → {answer}");
        let msg = answer["error"].as_str().unwrap_or_default();
        assert!(msg.contains(names), "{method} {body}: error {msg:?} does not name {names}");
        assert!(msg.len() < 300, "{method}: the error echoes too much: {msg}");
    }
    // Not JSON, and too large.
    let res = awc::Client::new().post(server.url("/api/cameras")).content_type("application/json").send_body("{not json").await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let huge = "x".repeat(200_000);
    let res = awc::Client::new().post(server.url("/api/cameras")).content_type("application/json").send_body(huge).await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let (code, _) = send(&server, "PATCH", "/api/cameras/nope", None, Some(json!({"ai_enabled": true}))).await;
    assert_eq!(code, 404);
    // A known route with a method it does not take: 405 naming the ones it does; an unknown route: 404.
    for (method, path, allowed) in [
        ("PUT", "/api/cameras", "GET, POST"),
        ("POST", "/api/cameras/cam1", "GET, PATCH, DELETE"),
        ("DELETE", "/api/events", "GET"),
        ("TRACE", "/ws/stream/cam1", "GET"),
    ] {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut res = awc::Client::new().request(method.clone(), server.url(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 405, "{method} {path}");
        assert_eq!(res.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allowed), "{method} {path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(allowed), "{body}");
    }
    let (code, _) = send(&server, "GET", "/api/nothing-here", None, None).await;
    assert_eq!(code, 404);
    // A WebSocket route asked without an upgrade: a 400 with a JSON error, like every other one.
    let mut res = awc::Client::new().get(server.url("/ws/stream/cam1")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("not a WebSocket upgrade"), "{body}");

    let (_, list) = server.get("/api/cameras").await;
    assert_eq!(list["total_cameras"], 1);
    assert_eq!(list["cameras"][0]["jpeg_quality"], 80);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "the settings file changed");
    server.stop().await;
}

#[actix_web::test]
async fn a_token_guards_every_change_but_not_reading() {
    let s = Scratch::new("token");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 2.0, Some(320));
    let file = settings_file(&s, &clip, "s3cr3t-token");
    let server = TestServer::start(Settings::load(&file).unwrap(), None).await;
    let body = json!({"ai_enabled": false});
    for token in [None, Some("wrong"), Some("s3cr3t-token-but-longer")] {
        let (code, answer) = send(&server, "PATCH", "/api/cameras/cam1", token, Some(body.clone())).await;
        assert_eq!(code, 401, "{answer}");
        let (code, answer) = send(&server, "DELETE", "/api/cameras/cam1", token, None).await;
        assert_eq!(code, 401);
        assert!(!answer.to_string().contains("s3cr3t"), "{answer}");
        let (code, answer) = send(&server, "POST", "/api/cameras", token, Some(json!({}))).await;
        assert_eq!(code, 401);
        assert!(!answer.to_string().contains("s3cr3t"), "{answer}");
        // The token is checked on the routes that write; a method a route does not take is still a 405.
        let (code, _) = send(&server, "DELETE", "/api/engine", token, None).await;
        assert_eq!(code, 405);
    }
    // From the header only: a token in the URL does not authorise a change.
    let (code, _) = send(&server, "PATCH", "/api/cameras/cam1?token=s3cr3t-token", None, Some(body.clone())).await;
    assert_eq!(code, 401);
    let (code, _) = server.get("/api/cameras").await;
    assert_eq!(code, 200);
    let (code, answer) = send(&server, "POST", "/api/cameras", Some("s3cr3t-token"), Some(json!({}))).await;
    assert_eq!(code, 400, "past the token, the body is checked: {answer}");
    let (code, _) = send(&server, "PATCH", "/api/cameras/cam1", Some("s3cr3t-token"), Some(body)).await;
    assert_eq!(code, 200);
    server.stop().await;
}

#[actix_web::test]
async fn editing_the_settings_file_applies_the_difference_without_disturbing_other_viewers() {
    let s = Scratch::new("reload");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 4.0, Some(320));
    let file = settings_file(&s, &clip, "");
    let server = TestServer::start(Settings::load(&file).unwrap(), None).await;
    let mut steady = server.viewer("/ws/stream/cam1").await;
    steady.next_frame(10 * SECOND).await;

    // Add a camera by editing the file (the server notices the change on disk).
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&format!(
        "\n[[cameras]]\ncamera_id = \"yard\"\nsource = \"{}\"\nsource_type = \"video_file\"\nai_enabled = false\n",
        clip.display()
    ));
    std::fs::write(&file, &text).unwrap();
    let (counted, _) = steady.count_frames(4 * SECOND).await; // panics if steady were closed
    assert!(counted >= 20, "cam1's viewer was disturbed: {counted} frames in 4 s");
    let (code, yard) = server.get("/api/cameras/yard").await;
    assert_eq!(code, 200, "yard was not added: {yard}");

    // A malformed file changes nothing.
    std::fs::write(&file, "this is [not toml").unwrap();
    actix_web::rt::time::sleep(3 * SECOND).await;
    let (_, list) = server.get("/api/cameras").await;
    assert_eq!(list["total_cameras"], 2);
    server.stop().await;
}

/// The camera's status once `pred` holds for it (the file watcher looks every 2 s).
async fn camera_when(server: &TestServer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + 10 * SECOND;
    loop {
        let (_, cam) = server.get("/api/cameras/cam1").await;
        if pred(&cam) {
            return cam;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not seen within 10 s: {cam}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn editing_detection_and_fall_settings_in_the_file_applies_them_without_a_restart() {
    let s = Scratch::new("reload-sections");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 4.0, Some(320));
    let file = settings_file(&s, &clip, "");
    let server = TestServer::start(Settings::load(&file).unwrap(), None).await;
    let mut viewer = server.viewer("/ws/stream/cam1").await;
    viewer.next_frame(10 * SECOND).await;
    let before = camera_when(&server, "the shipped fall sensitivity", |c| c["fall_sensitivity"] == 0.5).await;
    assert_eq!(before["detect_fps"], 5.0);

    // `[detection] detect_fps` and `[events.fall] sensitivity` changed in the file, nothing else.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\ndetect_fps = 5\n") && text.contains("\nsensitivity = 0.5\n"), "the shipped settings changed");
    let edited = text.replacen("\ndetect_fps = 5\n", "\ndetect_fps = 2\n", 1).replacen("\nsensitivity = 0.5\n", "\nsensitivity = 0.8\n", 1);
    std::fs::write(&file, edited).unwrap();

    let after = camera_when(&server, "the new detect rate and fall sensitivity", |c| c["detect_fps"] == 2.0 && c["fall_sensitivity"] == 0.8).await;
    // Applied live: the camera was not restarted and its viewer streams on.
    assert!(after["uptime_seconds"].as_f64() >= before["uptime_seconds"].as_f64(), "{before} → {after}");
    assert_eq!(after["reconnects"], before["reconnects"]);
    let (counted, _) = viewer.count_frames(2 * SECOND).await; // panics if the viewer were closed
    assert!(counted >= 10, "cam1's viewer was disturbed: {counted} frames in 2 s");
    server.stop().await;
}

#[actix_web::test]
async fn concurrent_changes_are_all_kept_in_the_file() {
    let s = Scratch::new("concurrent");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 2.0, Some(320));
    let file = settings_file(&s, &clip, "");
    let server = TestServer::start(Settings::load(&file).unwrap(), None).await;
    let src = clip.display().to_string();
    let adds = (0..12).map(|i| {
        let body = json!({"camera_id": format!("c{i}"), "source": src, "source_type": "video_file", "ai_enabled": false});
        send(&server, "POST", "/api/cameras", None, Some(body))
    });
    let patches = (0..12).map(|q| send(&server, "PATCH", "/api/cameras/cam1", None, Some(json!({"jpeg_quality": 30 + q}))));
    let (added, patched) = futures_util::join!(futures_util::future::join_all(adds), futures_util::future::join_all(patches));
    assert!(added.iter().all(|(code, _)| *code == 201), "{added:?}");
    assert!(patched.iter().all(|(code, _)| *code == 200), "{patched:?}");
    let on_disk = Settings::load(&file).unwrap();
    assert_eq!(on_disk.cameras.len(), 13);
    let (_, live) = server.get("/api/cameras/cam1").await;
    assert_eq!(on_disk.cameras[0].jpeg_quality as u64, live["jpeg_quality"].as_u64().unwrap());
    server.stop().await;
}

#[actix_web::test]
async fn with_protected_reads_every_read_needs_the_token_but_the_page_loads() {
    let s = Scratch::new("protect");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 2.0, Some(320));
    let file = settings_file(&s, &clip, "r34d-token");
    let text = std::fs::read_to_string(&file).unwrap().replace("protect_reads = false", "protect_reads = true");
    std::fs::write(&file, text).unwrap();
    let server = TestServer::start(Settings::load(&file).unwrap(), None).await;
    for path in ["/api/cameras", "/api/cameras/cam1", "/metrics", "/api/events", "/api/cameras/cam1/snapshot.jpg", "/api/overlay"] {
        let (code, body) = send(&server, "GET", path, None, None).await;
        assert_eq!(code, 401, "{path} without a token: {body}");
        let (code, _) = send(&server, "GET", path, Some("wrong"), None).await;
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, _) = send(&server, "GET", "/api/cameras", Some("r34d-token"), None).await;
    assert_eq!(code, 200);
    let (code, _) = send(&server, "GET", "/api/cameras?token=r34d-token", None, None).await;
    assert_eq!(code, 200);
    let (code, _) = send(&server, "GET", "/", None, None).await;
    assert_eq!(code, 200, "the page itself stays open");
    match awc::Client::new().ws(server.ws_url("/ws/stream/cam1")).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(code)) => assert_eq!(code.as_u16(), 401),
        Err(e) => panic!("expected a 401, got {e}"),
        Ok(_) => panic!("a socket was opened without the token"),
    }
    let mut viewer = server.viewer("/ws/stream/cam1?token=r34d-token").await;
    assert_eq!(viewer.next_frame(10 * SECOND).await["metadata"]["camera_id"], "cam1");
    server.stop().await;
}
