//! Cameras per core: the model looks at a camera only while something moves or someone is tracked,
//! at the camera's detect rate, while viewers get every frame. Real server, real model, real video.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use crate::events::{person_at, write_fall_video_lying, write_video, AlertSocket};
use crate::pose::pose_engine;
use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

/// `seconds` of a still test pattern with fresh sensor-like noise in every frame, H.264 at 10 fps:
/// a scene where nothing moves and nobody is.
fn still_empty_scene(path: &std::path::Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("smptebars=s=640x480:r=10:d={seconds},noise=alls=8:allf=t"))
        .args(["-an", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-bf", "0"])
        .arg(path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed to make {}", path.display());
}

fn counter(status: &Value, key: &str) -> u64 {
    status[key].as_u64().unwrap_or_else(|| panic!("no {key} in {status}"))
}

#[actix_web::test]
async fn a_still_empty_scene_is_looked_at_once_and_still_streams_every_frame() {
    let s = Scratch::new("still-empty");
    let video = s.path("still.mp4");
    still_empty_scene(&video, 30);
    let mut cam = camera("hall", &video);
    cam.ai_enabled = true;
    let server = TestServer::start(settings(vec![cam]), Some(pose_engine(640, 480))).await;
    let mut viewer = server.viewer("/ws/stream/hall").await;
    viewer.next_frame(30 * SECOND).await;
    let first = server.wait_for("hall", 30 * SECOND, "the first check", |c| c["inferences"].as_u64() >= Some(1)).await;
    let (frames, last) = viewer.count_frames(4 * SECOND).await;
    let after = server.camera_status("hall").await;

    assert_eq!(counter(&after, "inferences"), 1, "only the first check: {after}");
    assert!(counter(&after, "inferences_skipped") > counter(&first, "inferences_skipped") + 10, "{after}");
    assert_eq!(after["motion"], false, "{after}");
    // Viewers still get the camera's frames; a still frame is not encoded again and again.
    assert!(frames >= 20, "the viewer got {frames} frames in 4 s");
    let processed = counter(&after, "frames_processed") - counter(&first, "frames_processed");
    let encoded = counter(&after, "frames_encoded") - counter(&first, "frames_encoded");
    assert!(processed >= 20 && encoded * 3 <= processed, "{encoded} encodes for {processed} frames");
    let meta = &last.unwrap()["metadata"];
    assert_eq!(meta["ai_enabled"], true, "{meta}");
    assert_eq!(meta["detections"].as_array().unwrap().len(), 0, "{meta}");
    assert_eq!(meta["motion"]["moving"], false, "{meta}");
    // Nothing happened, so nothing was raised.
    let (_, events) = server.get("/api/events?camera=hall").await;
    assert_eq!(events["total"], 0, "{events}");
    server.stop().await;
}

#[actix_web::test]
async fn people_walking_are_looked_at_the_detect_rate_and_every_frame_shows_the_newest_poses() {
    let s = Scratch::new("walking");
    let clip = s.path("a.mp4");
    make_clip(&clip, 53.0, 12.0, None); // people walking in view all the time
    let mut cam = camera("plaza", &clip);
    cam.ai_enabled = true;
    cam.detect_fps = Some(4.0);
    let server = TestServer::start(settings(vec![cam]), Some(pose_engine(640, 480))).await;
    let mut viewer = server.viewer("/ws/stream/plaza").await;
    let before = server.wait_for("plaza", 30 * SECOND, "poses", |c| c["inferences"].as_u64() >= Some(2)).await;
    // Frames made before the first pass carry no poses; from the first with poses on, all do.
    while viewer.next_frame(10 * SECOND).await["metadata"]["poses"].is_null() {}
    let mut frames = 0;
    let mut pose_frames = HashSet::new();
    let mut carried = 0; // frames showing poses the model found in an earlier frame
    let until = Instant::now() + 4 * SECOND;
    while Instant::now() < until {
        let m = viewer.next_frame(10 * SECOND).await["metadata"].clone();
        frames += 1;
        let poses = &m["poses"];
        assert!(poses.is_object(), "every frame says where its poses come from: {m}");
        let from = poses["frame_index"].as_u64().unwrap();
        assert!(from <= m["frame_index"].as_u64().unwrap(), "{m}");
        assert!(poses["age_ms"].as_f64().unwrap() >= 0.0, "{m}");
        if from != m["frame_index"].as_u64().unwrap() {
            carried += 1;
            assert!(!m["detections"].as_array().unwrap().is_empty(), "the newest poses are drawn on later frames too: {m}");
        }
        pose_frames.insert(from);
    }
    let after = server.camera_status("plaza").await;
    assert_eq!(after["motion"], true, "{after}");
    assert_eq!(after["detect_fps"], 4.0, "{after}");
    let inferred = counter(&after, "inferences") - counter(&before, "inferences");
    let processed = counter(&after, "frames_processed") - counter(&before, "frames_processed");
    // At 4 passes a second on a 10 fps camera, most frames are not looked at, yet all are streamed.
    assert!(inferred >= 2 && inferred * 2 <= processed, "{inferred} passes for {processed} frames");
    assert!(carried * 2 >= frames && pose_frames.len() * 2 <= frames, "{frames} frames, {carried} carried, {} pose frames", pose_frames.len());
    server.stop().await;
}

#[actix_web::test]
async fn a_person_standing_still_stays_detected_and_is_rechecked_at_the_idle_rate() {
    let s = Scratch::new("standing");
    let video = s.path("standing.mp4");
    let upright = person_at(0.0);
    write_video(&video, std::iter::repeat_n(Some(upright), 300)); // 30 s without a pixel moving
    let mut cam = camera("lobby", &video);
    cam.ai_enabled = true;
    cam.loop_video = false;
    let server = TestServer::start(settings(vec![cam]), Some(pose_engine(640, 480))).await;
    let (_, mut alerts) = awc::Client::new().ws(server.ws_url("/ws/alerts?camera=lobby")).connect().await.unwrap();
    let started = next_alert(&mut alerts, 20 * SECOND).await.expect("person_detected starts");
    assert_eq!((started["kind"].as_str(), started["phase"].as_str()), (Some("person_detected"), Some("start")), "{started}");
    let before = server.camera_status("lobby").await;
    // Ten seconds of stillness: no alert (the event neither ends nor starts again).
    assert!(next_alert(&mut alerts, 10 * SECOND).await.is_none(), "stillness changed the event");
    let after = server.camera_status("lobby").await;
    let rechecks = counter(&after, "inferences") - counter(&before, "inferences");
    assert!((5..=14).contains(&rechecks), "{rechecks} re-checks in 10 s at one a second: {after}");
    let (_, active) = server.get("/api/events?camera=lobby&kind=person_detected").await;
    assert!(active["events"][0]["ended_at"].is_null(), "{active}");
    server.stop().await;
}

#[actix_web::test]
async fn a_fallen_person_lying_still_for_a_minute_stays_fallen_until_they_get_up() {
    let s = Scratch::new("lying");
    let video = s.path("lying.mp4");
    write_fall_video_lying(&video, 60.0, true);
    let mut cam = camera("ward", &video);
    cam.ai_enabled = true;
    cam.loop_video = false;
    let mut settings = settings(vec![cam]);
    // Only the fall's start and end here: a machine slower than the video would also make it a long
    // lie (an update; tests/it/ack.rs tells that story).
    settings.events.fall.long_lie_secs = 0.0;
    let server = TestServer::start(settings, Some(pose_engine(640, 480))).await;
    let (_, mut alerts) = awc::Client::new().ws(server.ws_url("/ws/alerts?camera=ward")).connect().await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + 100 * SECOND;
    // (frames decoded, inferences) when the video is 33 s and 53 s in: lying perfectly still.
    let mut lying: Vec<(u64, u64)> = Vec::new();
    while Instant::now() < deadline {
        if let Some(a) = next_alert(&mut alerts, SECOND / 2).await {
            seen.push(a);
        }
        let status = server.camera_status("ward").await;
        let frame = counter(&status, "frames_decoded");
        if (lying.is_empty() && frame >= 330) || (lying.len() == 1 && frame >= 530) {
            lying.push((frame, counter(&status, "inferences")));
            let falls: Vec<&Value> = seen.iter().filter(|e| e["kind"] == "fall").collect();
            assert_eq!(falls.len(), 1, "one fall started, and it did not end while they lay still: {seen:#?}");
            assert_eq!(falls[0]["phase"], "start");
        }
        if status["state"] == "ended" {
            break;
        }
    }
    assert_eq!(lying.len(), 2, "the video never got 53 s in: {seen:#?}");
    let falls: Vec<&Value> = seen.iter().filter(|e| e["kind"] == "fall").collect();
    assert_eq!(falls.len(), 2, "{seen:#?}");
    assert_eq!(falls[1]["phase"], "end");
    // The fall ended when they got up (62.8 s into the video, the fall seen from about 2.9 s), not
    // while they lay still, and not only when the video ended (67.8 s) and ended every event.
    let (start, end) = (falls[1]["started_at"].as_f64().unwrap(), falls[1]["ended_at"].as_f64().unwrap());
    assert!((55.0..=62.5).contains(&(end - start)), "the fall lasted {:.1} s: {seen:#?}", end - start);
    // While nothing moved the camera was looked at about once a second, not at its detect rate.
    let secs = (lying[1].0 - lying[0].0) as f64 / 10.0;
    let rate = (lying[1].1 - lying[0].1) as f64 / secs;
    assert!(rate > 0.4 && rate < 2.0, "{rate:.2} passes a second while lying still");
    server.stop().await;
}

/// The next alert on the socket within `timeout`, if any.
async fn next_alert(alerts: &mut AlertSocket, timeout: Duration) -> Option<Value> {
    let until = Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match tokio::time::timeout(left, alerts.next()).await {
            Ok(Some(Ok(Frame::Text(bytes)))) => return Some(serde_json::from_slice(&bytes).unwrap()),
            Ok(Some(Ok(Frame::Ping(p)))) => alerts.send(Message::Pong(p)).await.unwrap(),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("alerts socket ended: {other:?}"),
            Err(_) => return None,
        }
    }
}
