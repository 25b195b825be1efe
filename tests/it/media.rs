//! Snapshots, MJPEG, metrics and the API description.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

#[actix_web::test]
async fn snapshot_and_mjpeg_reuse_the_frame_every_viewer_gets() {
    let s = Scratch::new("media");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 6.0, Some(320));
    let missing = s.path("missing.mp4");
    let server = TestServer::start(settings(vec![camera("cam1", &clip), camera("gone", &missing)]), None).await;
    server.wait_for("cam1", 10 * SECOND, "streaming", |c| c["connected"] == true).await;

    // Nobody watches: a snapshot makes the camera encode just what it needs.
    let mut res = awc::Client::new().get(server.url("/api/cameras/cam1/snapshot.jpg")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers().get("content-type").unwrap(), "image/jpeg");
    let jpeg = res.body().await.unwrap();
    assert_eq!(&jpeg[..3], &[0xff, 0xd8, 0xff]);
    actix_web::rt::time::sleep(SECOND).await;
    let idle = server.camera_status("cam1").await["frames_encoded"].as_u64().unwrap();
    actix_web::rt::time::sleep(SECOND).await;
    assert_eq!(server.camera_status("cam1").await["frames_encoded"].as_u64().unwrap(), idle, "kept encoding for nobody");

    // A WebSocket viewer and an MJPEG client together: still one encode per frame.
    let mut viewer = server.viewer("/ws/stream/cam1").await;
    viewer.next_frame(5 * SECOND).await;
    let before = server.camera_status("cam1").await;
    let mut res = awc::Client::new().get(server.url("/api/cameras/cam1/mjpeg?fps=5")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let ctype = res.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(ctype.starts_with("multipart/x-mixed-replace; boundary="), "{ctype}");
    let boundary = format!("--{}", ctype.split("boundary=").nth(1).unwrap());
    let mut body = Vec::new();
    let started = Instant::now();
    let ws = viewer.count_frames(3 * SECOND);
    let mjpeg = async {
        while started.elapsed() < 3 * SECOND {
            match tokio::time::timeout(SECOND, res.next()).await {
                Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let ((ws_frames, _), ()) = futures_util::join!(ws, mjpeg);
    let after = server.camera_status("cam1").await;
    let text = String::from_utf8_lossy(&body);
    let parts = text.matches(&boundary).count();
    assert!((11..=19).contains(&parts), "MJPEG at 5 fps gave {parts} parts in 3 s");
    assert!(text.contains("Content-Type: image/jpeg"));
    assert!(ws_frames >= 20, "WebSocket viewer got {ws_frames} frames in 3 s");
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(delta("frames_encoded") <= delta("frames_processed") + 1, "before {before}\nafter {after}");

    // Unknown camera, and a camera with nothing to show.
    let res = awc::Client::new().get(server.url("/api/cameras/nope/snapshot.jpg")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let (code, body) = {
        let mut res = awc::Client::new().get(server.url("/api/cameras/gone/snapshot.jpg")).send().await.unwrap();
        (res.status().as_u16(), res.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(code, 503);
    assert!(body["error"].as_str().unwrap().contains("source file not found"), "{body}");
    server.stop().await;
}

#[actix_web::test]
async fn metrics_and_the_api_description_are_served() {
    let (_s, _clip, server) = server_on_clip("metrics", 3.0, &["cam1"]).await;
    let mut viewer = server.viewer("/ws/stream/cam1").await;
    viewer.next_frame(5 * SECOND).await;
    actix_web::rt::time::sleep(2 * SECOND).await;
    let mut res = awc::Client::new().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    for needle in [
        "# TYPE haven_camera_decode_fps gauge",
        "haven_camera_viewers{camera=\"cam1\"} 1",
        "haven_camera_connected{camera=\"cam1\"} 1",
        "# TYPE haven_camera_inference_seconds histogram",
        "haven_camera_inference_seconds_bucket{camera=\"cam1\",le=\"+Inf\"} 0",
        "haven_camera_dropped_frames_total{camera=\"cam1\"}",
        "haven_camera_reconnects_total{camera=\"cam1\"} 0",
        "haven_engine_inferences_total 0",
        "haven_process_resident_memory_bytes ",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    let fps: f64 = text
        .lines()
        .find(|l| l.starts_with("haven_camera_processed_fps{camera=\"cam1\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((7.0..=13.0).contains(&fps), "processed fps {fps}");

    let (code, doc) = server.get("/api/openapi.json").await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/cameras", "/api/cameras/{camera_id}", "/api/cameras/{camera_id}/snapshot.jpg", "/api/cameras/{camera_id}/mjpeg",
        "/metrics", "/api/events", "/api/events/{id}", "/api/events/{id}/clip.mp4", "/ws/alerts", "/ws/stream/{camera_id}", "/api/overlay",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    for method in ["get", "post"] {
        assert!(doc["paths"]["/api/cameras"].get(method).is_some());
    }
    for method in ["get", "patch", "delete"] {
        assert!(doc["paths"]["/api/cameras/{camera_id}"].get(method).is_some());
    }
    // The browser draws poses with the server's own skeleton and colours.
    let (code, overlay) = server.get("/api/overlay").await;
    assert_eq!(code, 200);
    assert_eq!(overlay["skeleton"].as_array().unwrap().len(), overlay["limb_colors"].as_array().unwrap().len());
    assert_eq!(overlay["class_colors"][0], "#FF3838");
    server.stop().await;
}
