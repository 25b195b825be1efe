//! Live view that fits the link: viewers ask for smaller renditions and binary frames; each rendition
//! is encoded once per frame for all its viewers, and only while someone wants it.

use std::time::Duration;

use base64::Engine as _;
use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;
use serde_json::Value;

use crate::pose::pose_engine;
use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

/// The JPEG of a frame message, text (base64 `data`) or binary (`jpeg` bytes), decoded.
fn image(frame: &Value) -> Mat {
    let bytes = match &frame["jpeg"] {
        Value::Array(a) => a.iter().map(|v| v.as_u64().unwrap() as u8).collect(),
        _ => base64::engine::general_purpose::STANDARD.decode(frame["data"].as_str().expect("base64 data")).unwrap(),
    };
    imgcodecs::imdecode(&Vector::<u8>::from_slice(&bytes), imgcodecs::IMREAD_COLOR).expect("a JPEG")
}

fn size(m: &Mat) -> (i32, i32) {
    (m.cols(), m.rows())
}

/// A server with one camera on `seconds` of the demo footage at its full 768x576.
async fn full_size_camera(name: &str, seconds: f64, ai: bool) -> (Scratch, TestServer) {
    let s = Scratch::new(name);
    let clip = s.path("a.mp4");
    make_clip(&clip, 53.0, seconds, None);
    let mut cam = camera("cam", &clip);
    cam.ai_enabled = ai;
    let engine = ai.then(|| pose_engine(640, 480));
    let server = TestServer::start(settings(vec![cam]), engine).await;
    (s, server)
}

#[actix_web::test]
async fn grid_viewers_share_one_small_binary_rendition_while_the_focused_one_gets_the_full_frame() {
    let (_s, server) = full_size_camera("live-grid", 20.0, false).await;
    let mut tile_a = server.viewer("/ws/stream/cam?format=binary&width=300").await;
    let mut tile_b = server.viewer("/ws/stream/cam?format=binary&width=320&quality=55").await;
    let mut focused = server.viewer("/ws/stream/cam").await;

    let small = tile_a.next_frame(20 * SECOND).await;
    assert_eq!(small["type"], "frame");
    assert_eq!(size(&image(&small)), (320, 240), "300 snaps up to the 320 rung");
    let meta = &small["metadata"];
    assert_eq!((meta["width"].as_i64(), meta["height"].as_i64()), (Some(768), Some(576)), "coordinates stay the frame's: {meta}");
    assert_eq!(meta["rendition"]["width"], 320);
    let other = tile_b.next_frame(20 * SECOND).await;
    assert_eq!(size(&image(&other)), (320, 240));
    assert_eq!(other["metadata"]["rendition"]["quality"], 60, "55 snaps to the 60 rung");
    let full = focused.next_frame(20 * SECOND).await;
    assert!(full["data"].is_string(), "the default stays the text format");
    assert_eq!(size(&image(&full)), (768, 576));

    // Sizes: a small binary frame is a fraction of the full text one.
    let (bin_len, text_len) = (small["jpeg"].as_array().unwrap().len(), full["data"].as_str().unwrap().len());
    assert!(bin_len * 3 < text_len, "small binary JPEG {bin_len} B vs full text {text_len} B");

    let status = server.camera_status("cam").await;
    let renditions: Vec<(Value, Value, Value, u64)> = status["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["width"].clone(), r["quality"].clone(), r["format"].clone(), r["viewers"].as_u64().unwrap()))
        .collect();
    assert!(renditions.contains(&(Value::from(320), Value::Null, Value::from("binary"), 1)), "{status}");
    assert!(renditions.contains(&(Value::from(320), Value::from(60), Value::from("binary"), 1)), "{status}");
    assert!(renditions.contains(&(Value::Null, Value::Null, Value::from("text"), 1)), "{status}");

    // Encoded once per frame per rendition, not per viewer: two more viewers of the same rung add nothing.
    let mut more = vec![server.viewer("/ws/stream/cam?format=binary&width=320").await, server.viewer("/ws/stream/cam?format=binary&width=200").await];
    for v in &mut more {
        v.next_frame(20 * SECOND).await;
    }
    let before = server.camera_status("cam").await;
    tile_a.count_frames(3 * SECOND).await;
    let after = server.camera_status("cam").await;
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    let (frames, small_encodes) = (delta("frames_processed"), delta("renditions_encoded"));
    assert!(frames >= 5, "{after}");
    assert!(small_encodes <= 2 * frames + 2, "{small_encodes} small encodes for {frames} frames, 4 viewers on 2 rungs");

    // When the last viewer of a rendition leaves, the camera stops making it.
    for v in more {
        v.close().await;
    }
    tile_a.close().await;
    tile_b.close().await;
    server
        .wait_for("cam", 10 * SECOND, "the small renditions to stop", |c| {
            c["renditions"].as_array().is_some_and(|r| r.iter().all(|r| r["width"].is_null()))
        })
        .await;
    // A frame already being encoded for the last small viewer may still finish: let it.
    focused.count_frames(SECOND).await;
    let settled = server.camera_status("cam").await;
    focused.count_frames(2 * SECOND).await;
    let later = server.camera_status("cam").await;
    assert_eq!(later["renditions_encoded"], settled["renditions_encoded"], "no viewer, no encode: {later}");
    let (code, metrics) = {
        let mut res = awc::Client::new().get(server.url("/metrics")).send().await.unwrap();
        (res.status().as_u16(), String::from_utf8(res.body().await.unwrap().to_vec()).unwrap())
    };
    assert_eq!(code, 200);
    assert!(metrics.contains(r#"haven_camera_rendition_viewers{camera="cam",width="0",quality="0",overlay="server",format="text"} 1"#), "{metrics}");
    server.stop().await;
}

#[actix_web::test]
async fn a_camera_watched_only_in_a_grid_never_encodes_its_full_frame() {
    let (_s, server) = full_size_camera("live-grid-only", 20.0, false).await;
    let mut tile = server.viewer("/ws/stream/cam?format=binary&width=320").await;
    tile.next_frame(20 * SECOND).await;
    let before = server.camera_status("cam").await;
    let (frames, _) = tile.count_frames(3 * SECOND).await;
    let after = server.camera_status("cam").await;
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(frames >= 5 && delta("renditions_encoded") >= 5, "{after}");
    assert_eq!(delta("frames_encoded"), 0, "nobody wants the full frame: {after}");
    server.stop().await;
}

#[actix_web::test]
async fn snapshots_and_mjpeg_come_in_the_size_asked_for() {
    let (_s, server) = full_size_camera("live-media", 20.0, false).await;
    server.wait_for("cam", 20 * SECOND, "the camera to stream", |c| c["connected"] == true).await;
    let mut res = awc::Client::new().get(server.url("/api/cameras/cam/snapshot.jpg?width=320")).timeout(20 * SECOND).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let jpeg = res.body().limit(8 << 20).await.unwrap();
    let small = imgcodecs::imdecode(&Vector::<u8>::from_slice(&jpeg), imgcodecs::IMREAD_COLOR).unwrap();
    assert_eq!(size(&small), (320, 240));

    let mut res = awc::Client::new().get(server.url("/api/cameras/cam/mjpeg?width=640&quality=40")).timeout(20 * SECOND).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut body = Vec::new();
    while !body.windows(2).any(|w| w == [0xff, 0xd9]) {
        let chunk = futures_util::StreamExt::next(&mut res).await.expect("a part").unwrap();
        body.extend_from_slice(&chunk);
    }
    let start = body.windows(2).position(|w| w == [0xff, 0xd8]).expect("a JPEG in the part");
    let end = body.windows(2).position(|w| w == [0xff, 0xd9]).unwrap() + 2;
    let part = imgcodecs::imdecode(&Vector::<u8>::from_slice(&body[start..end]), imgcodecs::IMREAD_COLOR).unwrap();
    assert_eq!(size(&part), (640, 480));
    server.stop().await;
}

#[actix_web::test]
async fn bad_rendition_values_get_a_400_that_says_what_is_wrong_before_the_upgrade() {
    let (_s, _clip, server) = server_on_clip("live-bad", 2.0, &["cam"]).await;
    for (query, word) in [("width=0", "width"), ("width=99999", "width"), ("quality=0", "quality"), ("format=png", "format"), ("overlay=paint", "overlay")] {
        match awc::Client::new().ws(server.ws_url(&format!("/ws/stream/cam?{query}"))).connect().await {
            Err(awc::error::WsClientError::InvalidResponseStatus(code)) => assert_eq!(code.as_u16(), 400, "{query}"),
            Err(e) => panic!("{query}: no answer ({e})"),
            Ok(_) => panic!("{query} was accepted"),
        }
        // The same request as plain HTTP shows the message.
        let (code, body) = server.get(&format!("/ws/stream/cam?{query}")).await;
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.to_string().contains(word), "{query}: {body}");
    }
    for path in ["/api/cameras/cam/mjpeg?format=binary", "/api/cameras/cam/snapshot.jpg?width=0", "/api/cameras/cam/mjpeg?quality=101"] {
        let (code, body) = server.get(path).await;
        assert_eq!(code, 400, "{path}: {body}");
    }
    server.stop().await;
}

#[actix_web::test]
async fn a_client_overlay_viewer_gets_the_frame_without_drawings_and_the_poses_to_draw() {
    let (_s, server) = full_size_camera("live-overlay", 20.0, true).await;
    let mut drawn = server.viewer("/ws/stream/cam?format=binary").await;
    let mut plain = server.viewer("/ws/stream/cam?format=binary&overlay=client").await;
    // Frames of the same moment, once people are found.
    let mut by_seq = std::collections::HashMap::new();
    let pair = 'found: {
        for _ in 0..400 {
            for (which, v) in [(0, &mut drawn), (1, &mut plain)] {
                let f = v.next_frame(30 * SECOND).await;
                if f["metadata"]["detections"].as_array().is_some_and(|d| !d.is_empty()) {
                    let seq = f["metadata"]["seq"].as_u64().unwrap();
                    let entry: &mut [Option<Value>; 2] = by_seq.entry(seq).or_default();
                    entry[which] = Some(f);
                    if let [Some(a), Some(b)] = entry {
                        break 'found (a.clone(), b.clone());
                    }
                }
            }
        }
        panic!("no frame with people reached both viewers");
    };
    let (with, without) = pair;
    assert_eq!(with["metadata"]["rendition"]["overlay"], "server");
    assert_eq!(without["metadata"]["rendition"]["overlay"], "client");
    assert_eq!(with["metadata"]["detections"], without["metadata"]["detections"], "both get the poses");
    // The server's drawing (green boxes, coloured limbs) is in one JPEG only.
    let (a, b) = (image(&with), image(&without));
    let mut diff = Mat::default();
    opencv::core::absdiff(&a, &b, &mut diff).unwrap();
    let mut grey = Mat::default();
    opencv::imgproc::cvt_color(&diff, &mut grey, opencv::imgproc::COLOR_BGR2GRAY, 0).unwrap();
    let mut strong = Mat::default();
    opencv::imgproc::threshold(&grey, &mut strong, 60.0, 255.0, opencv::imgproc::THRESH_BINARY).unwrap();
    let changed = opencv::core::count_non_zero(&strong).unwrap();
    assert!(changed > 200, "only {changed} pixels differ between the drawn and the plain frame");
    server.stop().await;
}
