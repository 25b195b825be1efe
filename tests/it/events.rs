//! Events end to end: the real server, the real model, a video in which a real person falls.

use std::time::{Duration, Instant};

use awc::ws::Frame;
use futures_util::StreamExt;
use opencv::core::{self, Mat, Point2f, Rect, Scalar, Size, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc, videoio};
use serde_json::Value;

use crate::pose::pose_engine;
use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);
/// Where the person's feet stand on the 640x480 canvas.
const FEET: (f32, f32) = (150.0, 420.0);

/// The left player of `basketball1.png`, alone on a grey canvas, rotated about the feet by `phi`°.
pub fn person_at(phi: f64) -> Mat {
    let img = imgcodecs::imread(repo().join("tests/fixtures/pose/basketball1.png").to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    let crop = Mat::roi(&img, Rect::new(14, 60, 175, 420)).unwrap().try_clone().unwrap();
    let mut small = Mat::default();
    imgproc::resize(&crop, &mut small, Size::new(140, 336), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    let mut canvas = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(114.0)).unwrap();
    let (fx, fy) = ((101.0 - 14.0) * 0.8, (476.0 - 60.0) * 0.8);
    let (x, y) = ((FEET.0 - fx).round() as i32, (FEET.1 - fy).round() as i32);
    small.copy_to(&mut Mat::roi_mut(&mut canvas, Rect::new(x, y, 140, 336)).unwrap()).unwrap();
    let m = imgproc::get_rotation_matrix_2d(Point2f::new(FEET.0, FEET.1), -phi, 1.0).unwrap();
    let mut out = Mat::default();
    imgproc::warp_affine(&canvas, &mut out, &m, Size::new(640, 480), imgproc::INTER_LINEAR, core::BORDER_CONSTANT, Scalar::all(114.0)).unwrap();
    out
}

/// 2 s upright, a 0.8 s fall, 4 s lying, 2 s of empty scene, at 10 fps.
fn write_fall_video(path: &std::path::Path) {
    write_fall_video_lying(path, 4.0, false);
}

/// 2 s upright, a 0.8 s fall, `lying_secs` lying perfectly still, then (if `gets_up`) 3 s upright
/// again, then 2 s of empty scene, at 10 fps.
pub fn write_fall_video_lying(path: &std::path::Path, lying_secs: f64, gets_up: bool) {
    let mut angles: Vec<Option<f64>> = vec![Some(0.0); 20];
    angles.extend((1..=8).map(|i| Some(90.0 * (i as f64 / 8.0).powi(2))));
    angles.extend(std::iter::repeat_n(Some(90.0), (lying_secs * 10.0).round() as usize));
    if gets_up {
        angles.extend(std::iter::repeat_n(Some(0.0), 30));
    }
    angles.extend(std::iter::repeat_n(None, 20));
    write_video(path, angles.into_iter().map(|phi| phi.map(person_at)));
}

/// Writes frames (640x480; `None`: the empty grey scene) as an MP4 at 10 fps.
pub fn write_video(path: &std::path::Path, frames: impl Iterator<Item = Option<Mat>>) {
    let blank = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(114.0)).unwrap();
    let fourcc = videoio::VideoWriter::fourcc('m', 'p', '4', 'v').unwrap();
    let mut writer = videoio::VideoWriter::new(path.to_str().unwrap(), fourcc, 10.0, Size::new(640, 480), true).unwrap();
    for frame in frames {
        writer.write(&frame.unwrap_or_else(|| blank.clone())).unwrap();
    }
    writer.release().unwrap();
}

#[actix_web::test]
async fn a_person_falling_raises_one_alert_and_one_stored_event_with_a_playable_clip() {
    let s = Scratch::new("fall");
    let video = s.path("fall.mp4");
    write_fall_video(&video);
    let mut cam = camera("ward", &video);
    cam.ai_enabled = true;
    cam.loop_video = false;
    let mut settings = settings(vec![cam]);
    settings.events.pre_roll_secs = 2.0;
    settings.events.post_roll_secs = 1.0;
    let server = TestServer::start(settings, Some(pose_engine(640, 480))).await;
    let (_, mut alerts) = awc::Client::new().ws(server.ws_url("/ws/alerts?camera=ward")).connect().await.unwrap();

    // The alerts socket says what happens, as it happens: one fall.
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < 25 * SECOND {
        match tokio::time::timeout(SECOND, alerts.next()).await {
            Ok(Some(Ok(Frame::Text(bytes)))) => seen.push(serde_json::from_slice::<Value>(&bytes).unwrap()),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("alerts socket ended: {other:?}"),
        }
        if server.camera_status("ward").await["state"] == "ended" {
            break;
        }
    }
    let falls: Vec<&Value> = seen.iter().filter(|e| e["kind"] == "fall" && e["phase"] == "start").collect();
    assert_eq!(falls.len(), 1, "alerts: {seen:#?}");
    assert_eq!(falls[0]["camera_id"], "ward");
    // Each alert says what to expect of its clip: the fall's is being recorded, a person_detected
    // event gets none with the shipped settings (person_clips = false).
    assert_eq!(falls[0]["clip_status"], "recording", "{:#}", falls[0]);
    for person in seen.iter().filter(|e| e["kind"] == "person_detected") {
        assert_eq!(person["clip_status"], "none", "{person:#}");
    }
    for phase in ["start", "end"] {
        assert!(
            seen.iter().any(|e| e["kind"] == "person_detected" && e["phase"] == phase),
            "no person_detected {phase} alert: {seen:#?}"
        );
    }

    // One fall in the store, with its clip once the writer has finished it.
    let deadline = Instant::now() + 15 * SECOND;
    let event = loop {
        let (code, list) = server.get("/api/events?camera=ward&kind=fall").await;
        assert_eq!(code, 200, "{list}");
        let events = list["events"].as_array().unwrap().clone();
        assert_eq!(events.len(), 1, "{list}");
        if events[0]["clip_path"].is_string() {
            break events[0].clone();
        }
        assert!(Instant::now() < deadline, "the fall's clip never completed: {list}");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    };
    let id = event["id"].as_i64().unwrap();
    let (code, one) = server.get(&format!("/api/events/{id}")).await;
    assert_eq!(code, 200);
    assert_eq!(one["kind"], "fall");
    assert_eq!((&event["clip_status"], &one["clip_status"]), (&Value::from("ready"), &Value::from("ready")), "{one}");
    let (_, people) = server.get("/api/events?camera=ward&kind=person_detected").await;
    let people = people["events"].as_array().unwrap();
    assert!(!people.is_empty());
    for person in people {
        assert_eq!((&person["clip_status"], &person["clip_path"]), (&Value::from("none"), &Value::Null), "{person}");
    }

    // The clip is served with ranges (browsers seek), and plays in OpenCV with every frame it claims.
    let url = server.url(&format!("/api/events/{id}/clip.mp4"));
    let mut part = awc::Client::new().get(&url).insert_header(("Range", "bytes=0-99")).send().await.unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.body().await.unwrap().len(), 100);
    let frames = clip_frames_via_api(&server.url(""), id, &s).await;
    assert!(frames > 0);
    assert_eq!(Some(frames), event["clip_frames"].as_u64(), "{event}");
    let snapshot = awc::Client::new().get(server.url(&format!("/api/events/{id}/snapshot.jpg"))).send().await.unwrap();
    assert_eq!(snapshot.status().as_u16(), 200);
    server.stop().await;
}

/// A small tmpfs, unmounted when dropped; `None` where this process may not mount one.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }

    /// Fills what is left with `ballast` until the disk refuses more.
    fn fill(&self, ballast: &std::path::Path) {
        use std::io::Write;
        let mut f = std::fs::File::create(ballast).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&chunk[..4096]);
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The real binary with one camera, `ward`, on `video` (looping, AI on), its events in `events_dir`.
fn start_ward(s: &Scratch, video: &std::path::Path, events_dir: &std::path::Path) -> (Running, u16) {
    let shipped = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut text = shipped.split("[[cameras]]").next().unwrap().replace("bind = \"127.0.0.1:8000\"", "bind = \"127.0.0.1:0\"");
    text = text.replace("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", events_dir.display()));
    text.push_str(&format!(
        "[[cameras]]\ncamera_id = \"ward\"\nsource = \"{}\"\nsource_type = \"video_file\"\nloop_video = true\nai_enabled = true\n",
        video.display()
    ));
    let file = s.path("haven.toml");
    std::fs::write(&file, text).unwrap();
    let mut haven = Running::start(
        &file.display().to_string(),
        &[("HAVEN__EVENTS__PRE_ROLL_SECS", "2"), ("HAVEN__EVENTS__POST_ROLL_SECS", "1")],
    );
    let port = haven.port();
    (haven, port)
}

pub type AlertSocket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Waits for the next fall to start; returns its stored id.
async fn next_fall(alerts: &mut AlertSocket) -> i64 {
    loop {
        match tokio::time::timeout(40 * SECOND, alerts.next()).await {
            Ok(Some(Ok(Frame::Text(bytes)))) => {
                let ev: Value = serde_json::from_slice(&bytes).unwrap();
                if ev["kind"] == "fall" && ev["phase"] == "start" {
                    return ev["id"].as_i64().expect("the fall is stored");
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no fall alert: {other:?}"),
        }
    }
}

/// Counts the frames OpenCV decodes from a video file.
fn frames_in(path: &std::path::Path) -> u64 {
    let mut cap = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_ANY).unwrap();
    let (mut frames, mut m) = (0u64, Mat::default());
    while cap.read(&mut m).unwrap_or(false) && !m.empty() {
        frames += 1;
    }
    frames
}

/// Downloads an event's clip through the API and counts the frames OpenCV decodes from it.
async fn clip_frames_via_api(base: &str, id: i64, scratch: &Scratch) -> u64 {
    let mut res = awc::Client::new().get(format!("{base}/api/events/{id}/clip.mp4")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "clip of event {id}");
    let saved = scratch.path(&format!("clip-{id}.mp4"));
    std::fs::write(&saved, res.body().limit(64 << 20).await.unwrap()).unwrap();
    frames_in(&saved)
}

#[actix_web::test]
async fn a_full_disk_while_recording_is_reported_keeps_the_store_whole_and_recording_resumes_once_freed() {
    let s = Scratch::new("full-disk");
    let video = s.path("fall.mp4");
    write_fall_video(&video);
    let events_dir = s.path("events");
    let Some(disk) = SmallDisk::mount(&events_dir, "32m") else {
        eprintln!("SKIPPED: this process cannot mount a tmpfs (needs root), so the full disk cannot be made");
        return;
    };
    let (mut haven, port) = start_ward(&s, &video, &events_dir);
    let base = format!("http://127.0.0.1:{port}");
    let (_, mut alerts) = awc::Client::new().ws(format!("ws://127.0.0.1:{port}/ws/alerts?camera=ward")).connect().await.unwrap();

    // The person falls; while the clip is being recorded the disk fills up.
    let first = next_fall(&mut alerts).await;
    let ballast = events_dir.join("ballast");
    disk.fill(&ballast);
    let error = haven.expect_log(&format!("event {first}: no clip:"), 40 * SECOND);
    assert!(error.contains("no space left on its disk"), "{error}");
    let mut viewer = Viewer::connect(&format!("ws://127.0.0.1:{port}/ws/stream/ward")).await;
    viewer.next_frame(10 * SECOND).await;

    // Space again: the next fall (the video loops) is recorded whole.
    std::fs::remove_file(&ballast).unwrap();
    let second = next_fall(&mut alerts).await;
    let deadline = Instant::now() + 20 * SECOND;
    let listed = loop {
        let mut res = awc::Client::new().get(format!("{base}/api/events?camera=ward&kind=fall")).send().await.unwrap();
        let list: Value = res.json().limit(1 << 20).await.unwrap();
        let events = list["events"].as_array().unwrap().clone();
        if events.iter().any(|e| e["id"] == second && e["clip_path"].is_string()) {
            break events;
        }
        assert!(Instant::now() < deadline, "the second fall's clip never completed: {list}");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    };
    // No event names a clip that does not play; the one that failed says why, where the store had room to.
    for ev in &listed {
        if ev["clip_path"].is_string() {
            let id = ev["id"].as_i64().unwrap();
            assert!(clip_frames_via_api(&base, id, &s).await > 0, "event {id}'s clip does not play: {ev}");
        }
    }
    let failed = listed.iter().find(|e| e["id"] == first).expect("the first fall is listed");
    assert!(failed["clip_path"].is_null(), "{failed}");

    // Stopped, the database is intact.
    assert!(std::process::Command::new("kill").args(["-TERM", &haven.child.id().to_string()]).status().unwrap().success());
    assert!(haven.child.wait().unwrap().success());
    let db = rusqlite::Connection::open(events_dir.join("events.db")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(db);
    drop(disk);
}

#[actix_web::test]
async fn sigterm_while_a_fall_is_recorded_leaves_its_clip_complete_and_playable() {
    let s = Scratch::new("sigterm-clip");
    let video = s.path("fall.mp4");
    write_fall_video(&video);
    let events_dir = s.path("events");
    let (mut haven, port) = start_ward(&s, &video, &events_dir);
    let (_, mut alerts) = awc::Client::new().ws(format!("ws://127.0.0.1:{port}/ws/alerts?camera=ward")).connect().await.unwrap();
    let fall = next_fall(&mut alerts).await;

    // Mid-fall (the person is still down, the clip still being written): SIGTERM.
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &haven.child.id().to_string()]).status().unwrap().success());
    let status = haven.child.wait().unwrap();
    assert!(status.success(), "haven exited with {status}");
    assert!(signalled.elapsed() < 5 * SECOND, "stopping took {:?}", signalled.elapsed());

    // The clip was finished on the way out: stored, and it plays every frame it claims.
    let db = rusqlite::Connection::open(events_dir.join("events.db")).unwrap();
    let (clip, frames, ended): (Option<String>, Option<i64>, Option<f64>) = db
        .query_row("SELECT clip_path, clip_frames, ended_at FROM events WHERE id = ?1", [fall], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let clip = clip.unwrap_or_else(|| panic!("the fall has no clip; log:\n{}", haven.log_so_far(Duration::from_millis(10))));
    assert!(ended.is_some(), "the fall was left open");
    assert_eq!(Some(frames_in(&events_dir.join(&clip)) as i64), frames);
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
