//! The seed's Tests 1-6 and the core service's promises, against the real server.

use std::time::Duration;

use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

#[actix_web::test]
async fn rest_lists_every_camera_with_its_status() {
    let (_s, _clip, server) = server_on_clip("rest", 3.0, &["cam1", "cam2"]).await;
    server.wait_for("cam1", 10 * SECOND, "connecting", |c| c["connected"] == true).await;

    let (code, body) = server.get("/api/cameras").await;
    assert_eq!(code, 200);
    assert_eq!(body["total_cameras"], 2);
    let cams = body["cameras"].as_array().unwrap();
    assert_eq!(cams[0]["camera_id"], "cam1");
    assert_eq!(cams[1]["camera_id"], "cam2");
    for field in [
        "camera_id", "source", "source_type", "connected", "fps", "dropped_frames", "uptime_seconds",
        "ai_enabled", "viewers", "frames_decoded", "frames_processed", "inference_ms", "loops", "last_error",
    ] {
        assert!(cams[0].get(field).is_some(), "status lacks {field}: {}", cams[0]);
    }
    assert_eq!(cams[0]["source_type"], "video_file");
    assert_eq!(cams[0]["width"], 320);

    let (code, one) = server.get("/api/cameras/cam2").await;
    assert_eq!(code, 200);
    assert_eq!(one["camera_id"], "cam2");
    server.stop().await;
}

#[actix_web::test]
async fn unknown_camera_is_a_404_with_a_json_error() {
    let (_s, _clip, server) = server_on_clip("unknown", 2.0, &["cam1"]).await;

    let (code, body) = server.get("/api/cameras/nope").await;
    assert_eq!(code, 404);
    assert_eq!(body["error"], "unknown camera: nope");

    // The socket is refused before the upgrade.
    let res = awc::Client::new().ws(server.ws_url("/ws/stream/nope")).connect().await;
    match res {
        Err(awc::error::WsClientError::InvalidResponseStatus(code)) => assert_eq!(code.as_u16(), 404),
        Err(e) => panic!("expected a 404, got {e}"),
        Ok(_) => panic!("unknown camera was upgraded"),
    }
    server.stop().await;
}

#[actix_web::test]
async fn legacy_socket_streams_the_first_camera() {
    let (_s, _clip, server) = server_on_clip("legacy", 3.0, &["cam1", "cam2"]).await;
    let mut viewer = server.viewer("/ws/stream").await;
    let frame = viewer.next_frame(10 * SECOND).await;
    assert_eq!(frame["type"], "frame");
    assert_eq!(frame["metadata"]["camera_id"], "cam1");
    assert!(frame["metadata"]["detections"].as_array().is_some());
    // The image is a real JPEG.
    use base64::Engine as _;
    let jpeg = base64::engine::general_purpose::STANDARD.decode(frame["data"].as_str().unwrap()).unwrap();
    assert_eq!(&jpeg[..3], &[0xff, 0xd8, 0xff]);
    assert_eq!(frame["metadata"]["width"], 320);
    server.stop().await;
}

#[actix_web::test]
async fn three_sockets_on_three_cameras_each_get_their_own_camera() {
    let s = Scratch::new("three");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 3.0, Some(320));
    let ids = ["cam1", "cam2", "cam3"];
    let server = TestServer::start(settings(ids.iter().map(|id| camera(id, &clip)).collect()), None).await;
    let mut viewers = Vec::new();
    for id in ids {
        viewers.push((id, server.viewer(&format!("/ws/stream/{id}")).await));
    }
    for (id, viewer) in &mut viewers {
        for _ in 0..3 {
            let frame = viewer.next_frame(10 * SECOND).await;
            assert_eq!(frame["metadata"]["camera_id"], *id);
        }
    }
    server.stop().await;
}

#[actix_web::test]
async fn five_viewers_cost_one_encode_per_frame() {
    let (_s, _clip, server) = server_on_clip("five", 4.0, &["cam1"]).await;
    let mut viewers = Vec::new();
    for _ in 0..5 {
        viewers.push(server.viewer("/ws/stream/cam1").await);
    }
    for v in &mut viewers {
        v.next_frame(10 * SECOND).await;
    }
    let before = server.camera_status("cam1").await;
    assert_eq!(before["viewers"], 5);
    let counts = futures_util::future::join_all(viewers.iter_mut().map(|v| v.count_frames(2 * SECOND))).await;
    let received: usize = counts.iter().map(|(n, _)| n).sum();
    let after = server.camera_status("cam1").await;
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    let (processed, encoded) = (delta("frames_processed"), delta("frames_encoded"));
    assert!(processed >= 10, "camera barely ran: {after}");
    // One encode per processed frame, not one per viewer.
    assert!(encoded <= processed + 1, "encoded {encoded} for {processed} processed frames");
    assert!(received >= 5 * 10, "5 viewers got only {received} frames");
    server.stop().await;
}

#[actix_web::test]
async fn a_camera_nobody_watches_encodes_nothing() {
    let (_s, _clip, server) = server_on_clip("idle", 2.0, &["cam1"]).await;
    let status = server.wait_for("cam1", 10 * SECOND, "decoding", |c| c["frames_processed"].as_u64() > Some(10)).await;
    assert_eq!(status["frames_encoded"], 0, "{status}");
    assert_eq!(status["viewers"], 0);
    let mut viewer = server.viewer("/ws/stream/cam1").await;
    viewer.next_frame(5 * SECOND).await;
    assert!(server.camera_status("cam1").await["frames_encoded"].as_u64().unwrap() > 0);
    server.stop().await;
}

#[actix_web::test]
async fn a_short_clip_loops_and_keeps_streaming() {
    let s = Scratch::new("loop");
    let clip = s.path("short.mp4");
    make_clip(&clip, 10.0, 0.8, Some(320)); // 8 frames at 10 fps
    let server = TestServer::start(settings(vec![camera("cam1", &clip)]), None).await;
    let mut viewer = server.viewer("/ws/stream/cam1").await;
    let mut seen_first_frame_again = false;
    let mut last_index = 0;
    for _ in 0..25 {
        let frame = viewer.next_frame(5 * SECOND).await;
        let index = frame["metadata"]["frame_index"].as_u64().unwrap();
        if index < last_index {
            seen_first_frame_again = true;
        }
        last_index = index;
    }
    assert!(seen_first_frame_again, "frame_index never restarted");
    let status = server.camera_status("cam1").await;
    assert!(status["loops"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(status["connected"], true);
    server.stop().await;
}

#[actix_web::test]
async fn a_missing_file_is_reported_while_the_others_stream() {
    let s = Scratch::new("missing");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 3.0, Some(320));
    let corrupt = s.path("corrupt.mp4");
    std::fs::write(&corrupt, b"this is not a video at all, just text pretending to be one").unwrap();
    let missing = s.path("nope.mp4");
    let server = TestServer::start(
        settings(vec![camera("cam1", &missing), camera("cam2", &clip), camera("cam3", &corrupt)]),
        None,
    )
    .await;
    let mut viewer = server.viewer("/ws/stream/cam2").await;
    let frame = viewer.next_frame(10 * SECOND).await;
    assert_eq!(frame["metadata"]["camera_id"], "cam2");

    let gone = server.wait_for("cam1", 5 * SECOND, "reporting", |c| !c["last_error"].is_null()).await;
    assert_eq!(gone["connected"], false);
    let err = gone["last_error"].as_str().unwrap();
    assert!(err.contains("source file not found") && err.contains("nope.mp4"), "{err}");

    let bad = server.wait_for("cam3", 5 * SECOND, "reporting", |c| !c["last_error"].is_null()).await;
    assert_eq!(bad["connected"], false);
    assert_eq!(bad["state"], "retrying");

    // It keeps retrying: once the file appears, the camera comes up without a restart.
    std::fs::copy(&clip, &missing).unwrap();
    server.wait_for("cam1", 10 * SECOND, "recovering", |c| c["connected"] == true).await;
    let mut late = server.viewer("/ws/stream/cam1").await;
    assert_eq!(late.next_frame(10 * SECOND).await["metadata"]["camera_id"], "cam1");
    server.stop().await;
}

#[actix_web::test]
async fn each_viewer_gets_its_own_frame_rate() {
    let (_s, _clip, server) = server_on_clip("fps", 8.0, &["cam1"]).await;
    let mut slow = server.viewer("/ws/stream/cam1?fps=4").await;
    let mut fast = server.viewer("/ws/stream/cam1").await; // default 10, the clip's own rate
    slow.next_frame(10 * SECOND).await;
    fast.next_frame(10 * SECOND).await;
    let window = 4 * SECOND;
    let (slow_n, fast_n) = futures_util::join!(slow.count_frames(window), fast.count_frames(window));
    let slow_rate = slow_n.0 as f64 / 4.0;
    let fast_rate = fast_n.0 as f64 / 4.0;
    assert!((3.2..=4.8).contains(&slow_rate), "asked for 4 fps, got {slow_rate}");
    assert!((8.0..=12.0).contains(&fast_rate), "default 10 fps, got {fast_rate}");
    server.stop().await;
}

#[actix_web::test]
async fn a_bad_fps_is_a_400() {
    let (_s, _clip, server) = server_on_clip("badfps", 2.0, &["cam1"]).await;
    for bad in ["abc", "0", "1000"] {
        let res = awc::Client::new().ws(server.ws_url(&format!("/ws/stream/cam1?fps={bad}"))).connect().await;
        match res {
            Err(awc::error::WsClientError::InvalidResponseStatus(code)) => assert_eq!(code.as_u16(), 400),
            Err(e) => panic!("expected a 400 for fps={bad}, got {e}"),
            Ok(_) => panic!("fps={bad} was accepted"),
        }
    }
    server.stop().await;
}

#[actix_web::test]
async fn a_viewer_that_never_reads_does_not_slow_the_others() {
    let s = Scratch::new("stall");
    // Full-size frames (768x576) so that the stalled socket's buffers fill quickly.
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 10.0, None);
    let server = TestServer::start(settings(vec![camera("cam1", &clip)]), None).await;
    let mut reader = server.viewer("/ws/stream/cam1?fps=10").await;
    reader.next_frame(10 * SECOND).await;
    let (alone, _) = reader.count_frames(3 * SECOND).await;

    // A raw TCP client that completes the upgrade and then never reads a byte.
    use std::io::Write;
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        stalled,
        "GET /ws/stream/cam1?fps=30 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    actix_web::rt::time::sleep(SECOND).await;
    assert_eq!(server.camera_status("cam1").await["viewers"], 2);

    let (with_stalled, _) = reader.count_frames(3 * SECOND).await;
    assert!(
        with_stalled as f64 >= alone as f64 * 0.8,
        "the reading viewer dropped from {alone} to {with_stalled} frames in 3 s"
    );
    let status = server.camera_status("cam1").await;
    assert!(status["fps"].as_f64().unwrap() >= 8.0, "camera slowed down: {status}");
    // The stalled viewer is closed once its socket has not taken a frame for send_timeout_secs (3 s).
    server.wait_for("cam1", 40 * SECOND, "dropping the stalled viewer", |c| c["viewers"] == 1).await;
    drop(stalled);
    server.stop().await;
}

#[actix_web::test]
async fn a_viewer_that_pauses_resumes_with_the_newest_frame_not_a_backlog() {
    let s = Scratch::new("pause");
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 20.0, None);
    let server = TestServer::start(settings(vec![camera("cam1", &clip)]), None).await;
    let mut paused = server.viewer("/ws/stream/cam1?fps=10").await;
    paused.next_frame(10 * SECOND).await;
    // 2 s without reading: 20 frames go by (within send_timeout_secs, so it stays connected).
    actix_web::rt::time::sleep(2 * SECOND).await;
    let newest = server.viewer("/ws/stream/cam1").await.next_frame(10 * SECOND).await;
    let newest = newest["metadata"]["seq"].as_u64().unwrap();
    // What was already on its way (a frame or two in the socket) arrives, then the newest.
    let mut stale = 0;
    while paused.next_frame(10 * SECOND).await["metadata"]["seq"].as_u64().unwrap() < newest {
        stale += 1;
    }
    assert!(stale <= 3, "after its pause the viewer got {stale} stale frames before the newest");
    server.stop().await;
}

#[actix_web::test]
async fn stopping_closes_viewers_with_a_close_frame() {
    let (_s, _clip, server) = server_on_clip("stop", 3.0, &["cam1"]).await;
    let mut viewer = server.viewer("/ws/stream/cam1").await;
    viewer.next_frame(10 * SECOND).await;
    let stopping = actix_web::rt::spawn(async move { server.stop().await });
    let started = std::time::Instant::now();
    loop {
        match viewer.next_event(5 * SECOND).await {
            Some(Event::Frame(_)) => continue,
            Some(Event::Closed(reason)) => {
                let reason = reason.expect("close frame carries a reason");
                assert_eq!(reason.description.as_deref(), Some("server shutting down"));
                break;
            }
            None => panic!("no close frame within 5 s"),
        }
    }
    stopping.await.unwrap();
    assert!(started.elapsed() < 5 * SECOND);
}

#[actix_web::test]
async fn a_viewer_that_never_answers_is_closed_by_the_heartbeat() {
    let (_s, _clip, server) = server_on_clip("heartbeat", 3.0, &["cam1"]).await;
    let mut silent = server.viewer("/ws/stream/cam1?fps=1").await;
    silent.answers_pings = false;
    let mut polite = server.viewer("/ws/stream/cam1?fps=1").await;
    let started = std::time::Instant::now();
    // client_timeout_secs is 5 in the test settings.
    let silent_closed = async {
        loop {
            match silent.next_event(10 * SECOND).await {
                Some(Event::Frame(_)) => continue,
                Some(Event::Closed(reason)) => break (reason, started.elapsed()),
                None => panic!("silent viewer still open after 10 s"),
            }
        }
    };
    // Meanwhile the viewer that answers pings keeps streaming (count_frames panics on a close).
    let ((reason, after), (polite_frames, _)) = futures_util::join!(silent_closed, polite.count_frames(9 * SECOND));
    assert_eq!(reason.and_then(|r| r.description).as_deref(), Some("heartbeat timeout"));
    assert!(after >= 4 * SECOND, "closed too early: {after:?}");
    assert!(polite_frames >= 6, "polite viewer got {polite_frames} frames in 9 s at 1 fps");
    assert_eq!(server.camera_status("cam1").await["viewers"], 1);
    polite.close().await;
    server.stop().await;
}

#[actix_web::test]
async fn an_alerts_socket_that_never_answers_is_closed_by_the_alerts_heartbeat() {
    let mut settings = settings(vec![]);
    // Viewers keep the test settings' 5 s; alerts sockets get their own, shorter timeout.
    settings.alerts.heartbeat_interval_secs = 0.5;
    settings.alerts.client_timeout_secs = 2.0;
    let server = TestServer::start(settings, None).await;
    let mut silent = server.viewer("/ws/alerts").await;
    silent.answers_pings = false;
    let mut polite = server.viewer("/ws/alerts").await;
    let started = std::time::Instant::now();
    let silent_closed = async {
        match silent.next_event(10 * SECOND).await {
            Some(Event::Closed(reason)) => (reason, started.elapsed()),
            Some(Event::Frame(f)) => panic!("an alert with no cameras: {f}"),
            None => panic!("silent alerts socket still open after 10 s"),
        }
    };
    let polite_open = polite.next_event(5 * SECOND);
    let ((reason, after), polite_event) = futures_util::join!(silent_closed, polite_open);
    assert_eq!(reason.and_then(|r| r.description).as_deref(), Some("heartbeat timeout"));
    assert!(after >= 2 * SECOND && after < 4 * SECOND, "closed after {after:?}, alerts.client_timeout_secs is 2");
    assert!(polite_event.is_none(), "the socket that answers pings stays open");
    polite.close().await;
    server.stop().await;
}

#[actix_web::test]
async fn a_viewer_arriving_after_nobody_watched_gets_a_fresh_first_frame_and_snapshot() {
    let (_s, _clip, server) = server_on_clip("fresh-first", 20.0, &["cam1"]).await;
    let mut first = server.viewer("/ws/stream/cam1").await;
    first.next_frame(10 * SECOND).await;
    first.close().await;
    server.wait_for("cam1", 10 * SECOND, "the viewer to leave", |c| c["viewers"] == 0).await;
    // Nobody watches for a while: the camera keeps its place in time but publishes nothing.
    actix_web::rt::time::sleep(3 * SECOND).await;
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let mut late = server.viewer("/ws/stream/cam1").await;
    let frame = late.next_frame(10 * SECOND).await;
    let age = now() - frame["metadata"]["timestamp"].as_f64().unwrap();
    assert!(age < 1.0, "the first frame was {age:.1} s old (a packet from when someone last watched)");
    late.close().await;
    server.wait_for("cam1", 10 * SECOND, "the viewer to leave", |c| c["viewers"] == 0).await;
    actix_web::rt::time::sleep(2 * SECOND).await;
    let asked = now();
    let res = awc::Client::new().get(server.url("/api/cameras/cam1/snapshot.jpg")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let index: u64 = res.headers().get("X-Frame-Index").unwrap().to_str().unwrap().parse().unwrap();
    let status = server.camera_status("cam1").await;
    // The snapshot's frame is the one the camera was at when asked, not one from two seconds before.
    let decoded_since = status["frames_decoded"].as_u64().unwrap() as f64 - index as f64;
    assert!(decoded_since <= 10.0 * (now() - asked) + 5.0, "snapshot frame {index}, camera at {status}");
    server.stop().await;
}
