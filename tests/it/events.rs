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
fn person_at(phi: f64) -> Mat {
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
    let mut angles: Vec<Option<f64>> = vec![Some(0.0); 20];
    angles.extend((1..=8).map(|i| Some(90.0 * (i as f64 / 8.0).powi(2))));
    angles.extend(std::iter::repeat_n(Some(90.0), 40));
    angles.extend(std::iter::repeat_n(None, 20));
    let blank = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(114.0)).unwrap();
    let fourcc = videoio::VideoWriter::fourcc('m', 'p', '4', 'v').unwrap();
    let mut writer = videoio::VideoWriter::new(path.to_str().unwrap(), fourcc, 10.0, Size::new(640, 480), true).unwrap();
    for phi in angles {
        writer.write(&phi.map(person_at).unwrap_or_else(|| blank.clone())).unwrap();
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

    // The clip is served with ranges (browsers seek), and plays in OpenCV with every frame it claims.
    let url = server.url(&format!("/api/events/{id}/clip.mp4"));
    let mut part = awc::Client::new().get(&url).insert_header(("Range", "bytes=0-99")).send().await.unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.body().await.unwrap().len(), 100);
    let mut whole = awc::Client::new().get(&url).send().await.unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    let bytes = whole.body().limit(64 << 20).await.unwrap();
    let saved = s.path("clip.mp4");
    std::fs::write(&saved, &bytes).unwrap();
    let mut cap = videoio::VideoCapture::from_file(saved.to_str().unwrap(), videoio::CAP_ANY).unwrap();
    let (mut frames, mut m) = (0u64, Mat::default());
    while cap.read(&mut m).unwrap() && !m.empty() {
        frames += 1;
    }
    assert!(frames > 0);
    assert_eq!(Some(frames), event["clip_frames"].as_u64(), "{event}");
    let snapshot = awc::Client::new().get(server.url(&format!("/api/events/{id}/snapshot.jpg"))).send().await.unwrap();
    assert_eq!(snapshot.status().as_u16(), 200);
    server.stop().await;
}
