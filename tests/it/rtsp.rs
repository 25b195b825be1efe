//! A real RTSP camera on loopback (GStreamer's RTSP server) that goes away and comes back.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `scripts/rtsp_server.py` serving `video` on `port`, killed when dropped.
struct RtspCamera(Child);

impl RtspCamera {
    fn start(video: &std::path::Path, port: u16) -> Self {
        let mut child = Command::new("/usr/bin/python3")
            .arg(repo().join("scripts/rtsp_server.py"))
            .arg(video)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the RTSP server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("serving rtsp://"), "RTSP server did not start: {line:?}");
        RtspCamera(child)
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn an_rtsp_camera_that_goes_away_is_reported_and_recovers_for_the_same_viewers() {
    let s = Scratch::new("rtsp");
    let video = s.path("rtsp.mp4");
    make_clip(&video, 0.0, 60.0, Some(320));
    let clip = s.path("file.mp4");
    make_clip(&clip, 0.0, 4.0, Some(320));
    let port = free_port();
    let secret = "hunter2-s3cret";
    let url = format!("rtsp://admin:{secret}@127.0.0.1:{port}/cam");

    let settings_path = s.path("haven.toml");
    let mut text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    text = text.split("[[cameras]]").next().unwrap().to_string();
    for (from, to) in [
        ("watchdog_secs = 5", "watchdog_secs = 2"),
        ("read_timeout_secs = 3", "read_timeout_secs = 1"),
        ("open_timeout_secs = 5", "open_timeout_secs = 2"),
        ("reconnect_max_secs = 3", "reconnect_max_secs = 1.5"),
    ] {
        assert!(text.contains(from), "settings lack {from}");
        text = text.replace(from, to);
    }
    text.push_str(&format!(
        "[[cameras]]\ncamera_id = \"door\"\nsource = \"{url}\"\nsource_type = \"rtsp\"\nai_enabled = false\n\n\
         [[cameras]]\ncamera_id = \"hall\"\nsource = \"{}\"\nsource_type = \"video_file\"\nai_enabled = false\n",
        clip.display()
    ));
    std::fs::write(&settings_path, text).unwrap();

    let camera = RtspCamera::start(&video, port);
    let path = settings_path.display().to_string();
    let mut haven = Running::start(&path, &[("HAVEN__SERVER__BIND", "127.0.0.1:0")]);
    let port_http = haven.port();
    let server = Remote(port_http);

    let mut door = Viewer::connect(&format!("ws://127.0.0.1:{port_http}/ws/stream/door")).await;
    let mut hall = Viewer::connect(&format!("ws://127.0.0.1:{port_http}/ws/stream/hall")).await;
    assert_eq!(door.next_frame(15 * SECOND).await["metadata"]["camera_id"], "door");
    hall.next_frame(10 * SECOND).await;
    let status = server.status("door").await;
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["source"], format!("rtsp://admin:***@127.0.0.1:{port}/cam"));

    // The camera goes away: reported within the watchdog time, while the other camera streams on.
    drop(camera);
    let gone_at = Instant::now();
    let reported = async {
        loop {
            let st = server.status("door").await;
            if st["connected"] == false {
                return (st, gone_at.elapsed());
            }
            assert!(gone_at.elapsed() < 10 * SECOND, "door still connected 10 s after its server died: {st}");
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ((status, took), (hall_frames, _)) = futures_util::join!(reported, hall.count_frames(4 * SECOND));
    assert!(took <= 4 * SECOND, "took {took:?} to notice");
    assert_eq!(status["state"], "reconnecting", "{status}");
    assert!(status["last_error"].is_string(), "{status}");
    assert!(hall_frames >= 30, "hall got {hall_frames} frames in 4 s while door was down");
    actix_web::rt::time::sleep(3 * SECOND).await;
    assert!(server.status("door").await["reconnects"].as_u64().unwrap() >= 1);

    // It comes back: the same viewer gets frames again within 5 s, without reconnecting.
    let _camera = RtspCamera::start(&video, port);
    let back_at = Instant::now();
    // Drain what was sent before the outage, then wait for a frame made after the return.
    let back = loop {
        let frame = door.next_frame(8 * SECOND).await;
        let captured = frame["metadata"]["timestamp"].as_f64().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        if now - captured < back_at.elapsed().as_secs_f64() {
            break back_at.elapsed();
        }
    };
    assert!(back <= 5 * SECOND, "frames came back after {back:?}");
    assert_eq!(server.status("door").await["connected"], true);

    // The password appears in no response and no log line.
    for path in ["/api/cameras", "/api/cameras/door", "/metrics", "/api/openapi.json"] {
        let body = server.text(path).await;
        assert!(!body.contains(secret), "{path} leaks the password");
    }
    let log = haven.log_so_far(Duration::from_millis(300));
    assert!(log.contains("rtsp://admin:***@127.0.0.1"), "log never names the camera:\n{log}");
    assert!(!log.contains(secret), "the log leaks the password:\n{log}");
}

/// HTTP to a server started as a separate process.
struct Remote(u16);

impl Remote {
    async fn text(&self, path: &str) -> String {
        let mut res = awc::Client::new().get(format!("http://127.0.0.1:{}{path}", self.0)).send().await.unwrap();
        String::from_utf8(res.body().limit(1 << 20).await.unwrap().to_vec()).unwrap()
    }

    async fn status(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.text(&format!("/api/cameras/{id}")).await).unwrap()
    }
}
