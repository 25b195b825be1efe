//! Faults: what breaks around the server must not break the server. Each test injects one fault
//! (a source file deleted, truncated or corrupt; a burst of sockets dropped at once; malformed and
//! oversized WebSocket frames; a broken settings file; SIGTERM under load) and checks that the fault
//! is reported where it belongs, that nothing else is lost (other cameras and their viewers keep
//! their full rate, their sockets stay open, counters keep moving) and that the server stays healthy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

/// Reads `viewer` for `window`, answering pings; frames received and, if the socket closed, why.
async fn drain(viewer: &mut Viewer, window: Duration) -> (usize, Option<Option<awc::ws::CloseReason>>) {
    let deadline = Instant::now() + window;
    let mut n = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match viewer.next_event(left).await {
            Some(Event::Frame(_)) => n += 1,
            Some(Event::Closed(r)) => return (n, Some(r)),
            None => break,
        }
    }
    (n, None)
}

async fn get_json(port: u16, path: &str) -> (u16, Value) {
    let mut res = awc::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(10 * SECOND)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let code = res.status().as_u16();
    let body = res.body().limit(4 << 20).await.unwrap();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The server answers its API and metrics.
async fn assert_healthy(port: u16) {
    let (code, body) = get_json(port, "/api/cameras").await;
    assert_eq!(code, 200, "{body}");
    let res = awc::Client::new().get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn thread_count(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

/// A settings file for the real binary: the shipped one, with `cameras` (id, source) on files, AI off.
fn settings_file(path: &Path, cameras: &[(&str, &Path)], events_dir: &Path) {
    let shipped = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut text = shipped.split("[[cameras]]").next().unwrap().to_string();
    for (from, to) in [
        ("bind = \"127.0.0.1:8000\"", "bind = \"127.0.0.1:0\""),
        ("workers = 0", "workers = 2"),
        ("heartbeat_interval_secs = 5", "heartbeat_interval_secs = 1"),
        ("client_timeout_secs = 30", "client_timeout_secs = 5"),
        ("send_timeout_secs = 10", "send_timeout_secs = 3"),
        ("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", events_dir.display())),
    ] {
        assert!(text.contains(from), "shipped settings lack {from}");
        text = text.replacen(from, to, 1);
    }
    for (id, source) in cameras {
        text.push_str(&format!(
            "[[cameras]]\ncamera_id = \"{id}\"\nsource = \"{}\"\nsource_type = \"video_file\"\nloop_video = true\n\
             ai_enabled = false\njpeg_quality = 80\n\n",
            source.display()
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// Raw WebSocket over a blocking TCP socket: for what a well-behaved client library will not send.
mod raw {
    use super::*;

    pub fn connect(port: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    pub fn request(path: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }

    /// Completes the upgrade; panics unless the server answers 101.
    pub fn upgrade(port: u16, path: &str) -> TcpStream {
        let mut s = connect(port);
        s.write_all(request(path).as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut byte).expect("upgrade response");
            assert_eq!(n, 1, "connection closed during the upgrade: {}", String::from_utf8_lossy(&head));
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s
    }

    /// One client frame: `first` is FIN/RSV/opcode, `declared` the length put in the header (the
    /// payload sent may be shorter), masked with a zero key when `mask`.
    pub fn frame(first: u8, payload: &[u8], declared: u64, mask: bool) -> Vec<u8> {
        let mut f = vec![first];
        let m = if mask { 0x80 } else { 0 };
        if declared < 126 {
            f.push(m | declared as u8);
        } else if declared <= u16::MAX as u64 {
            f.push(m | 126);
            f.extend_from_slice(&(declared as u16).to_be_bytes());
        } else {
            f.push(m | 127);
            f.extend_from_slice(&declared.to_be_bytes());
        }
        if mask {
            f.extend_from_slice(&[0, 0, 0, 0]); // a zero key leaves the payload as it is
        }
        f.extend_from_slice(payload);
        f
    }

    fn read_exact(s: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf).ok()?;
        Some(buf)
    }

    /// Reads server frames until a close frame; its code and reason. `None` if the connection ended
    /// (or stayed silent 10 s) without one.
    pub fn read_close(s: &mut TcpStream) -> Option<(u16, String)> {
        loop {
            let h = read_exact(s, 2)?;
            let opcode = h[0] & 0x0f;
            let len = match h[1] & 0x7f {
                126 => u16::from_be_bytes(read_exact(s, 2)?.try_into().unwrap()) as usize,
                127 => u64::from_be_bytes(read_exact(s, 8)?.try_into().unwrap()) as usize,
                n => n as usize,
            };
            assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
            let payload = read_exact(s, len)?;
            if opcode == 0x8 {
                if payload.len() < 2 {
                    return Some((1005, String::new()));
                }
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
            }
        }
    }
}

/// Four cameras on copies of one clip; `fault` is applied to every file but the last ("ok")'s.
async fn files_under_fault(
    name: &str,
    ids: [&str; 3],
    fault: impl Fn(&Path),
) -> (Scratch, std::path::PathBuf, TestServer, Vec<Viewer>, Value) {
    let s = Scratch::new(name);
    let clip = s.path("clip.mp4");
    make_clip(&clip, 0.0, 3.0, Some(320));
    let files: Vec<_> = ids.iter().map(|id| s.path(&format!("{id}.mp4"))).collect();
    for f in &files {
        std::fs::copy(&clip, f).unwrap();
    }
    let mut cameras: Vec<_> = ids.iter().zip(&files).map(|(id, f)| camera(id, f)).collect();
    cameras.push(camera("ok", &clip));
    let server = TestServer::start(settings(cameras), None).await;
    let mut viewers = Vec::new();
    for id in ids.iter().chain(&["ok"]) {
        let mut v = server.viewer(&format!("/ws/stream/{id}")).await;
        assert_eq!(v.next_frame(10 * SECOND).await["metadata"]["camera_id"], *id);
        viewers.push(v);
    }
    let ok_before = server.camera_status("ok").await;
    for f in &files {
        fault(f);
    }
    (s, clip, server, viewers, ok_before)
}

/// Reads all four viewers for `window` at once; asserts none was closed and "ok" kept 10 fps.
async fn all_stream_on(viewers: &mut [Viewer], window: Duration, min_each: usize) -> [usize; 4] {
    let [a, b, c, o] = viewers else { unreachable!() };
    let (an, bn, cn, on) = futures_util::join!(drain(a, window), drain(b, window), drain(c, window), drain(o, window));
    for (i, (_, closed)) in [&an, &bn, &cn, &on].iter().enumerate() {
        assert!(closed.is_none(), "viewer {i} was closed: {closed:?}");
    }
    let min_ok = (window.as_secs_f64() * 10.0 * 0.8) as usize;
    assert!(on.0 >= min_ok, "ok's viewer got {} frames in {window:?}", on.0);
    for (i, n) in [an.0, bn.0, cn.0].iter().enumerate() {
        assert!(*n >= min_each, "viewer {i} got {n} frames in {window:?}");
    }
    [an.0, bn.0, cn.0, on.0]
}

async fn ok_is_untouched(server: &TestServer, before: &Value) {
    let after = server.camera_status("ok").await;
    assert_eq!(after["connected"], true, "{after}");
    assert_eq!(after["last_error"], Value::Null, "{after}");
    assert_eq!(after["reconnects"], before["reconnects"], "{after}");
    assert!(after["frames_encoded"].as_u64() > before["frames_encoded"].as_u64(), "{after}");
}

/// The files come back (written aside and renamed over): each camera recovers for the same viewers.
async fn files_come_back(s: &Scratch, clip: &Path, server: &TestServer, viewers: &mut [Viewer], ids: [&str; 3]) {
    for id in ids {
        let (tmp, f) = (s.path(&format!("{id}.tmp")), s.path(&format!("{id}.mp4")));
        std::fs::copy(clip, &tmp).unwrap();
        std::fs::rename(&tmp, &f).unwrap();
    }
    let recovered = async {
        for id in ids {
            server.wait_for(id, 10 * SECOND, "recovering", |c| c["connected"] == true && c["last_error"].is_null()).await;
        }
    };
    // Keep every viewer answering its pings while waiting.
    let (_, _) = futures_util::join!(recovered, all_stream_on(viewers, 5 * SECOND, 0));
    all_stream_on(viewers, 4 * SECOND, 20).await;
    assert_healthy(server.port).await;
}

#[actix_web::test]
async fn a_file_deleted_while_streaming_harms_nothing_and_comes_back() {
    let ids = ["del1", "del2", "del3"];
    let (s, clip, server, mut viewers, ok_before) =
        files_under_fault("faults-deleted", ids, |f| std::fs::remove_file(f).unwrap()).await;
    // 8 s: more than two passes of the 3 s clip, so every camera has reached its end and rewound.
    let counts = all_stream_on(&mut viewers, 8 * SECOND, 0).await;
    ok_is_untouched(&server, &ok_before).await;
    // A deleted file is still open: the camera plays the copy it holds (and loops it), or, if it
    // reopens at the end of a pass, reports the missing file. Never anything in between.
    for (id, n) in ids.iter().zip(counts) {
        let st = server.camera_status(id).await;
        let playing = st["connected"] == true && n >= 64 && st["loops"].as_u64() >= Some(2);
        let reported = st["last_error"].as_str().is_some_and(|e| e.contains("source file not found"))
            && st["state"] == "retrying";
        assert!(playing || reported, "{id}: {n} frames in 8 s, status {st}");
    }
    files_come_back(&s, &clip, &server, &mut viewers, ids).await;
    server.stop().await;
}

#[actix_web::test]
async fn a_file_truncated_while_streaming_is_reported_and_recovers() {
    let ids = ["empty", "half", "tenth"];
    let (s, clip, server, mut viewers, ok_before) = files_under_fault("faults-truncated", ids, |f| {
        // In place, keeping the inode, as a copy over the file or a crashed writer would.
        let len = std::fs::metadata(f).unwrap().len();
        let keep = match f.file_stem().unwrap().to_str().unwrap() {
            "empty" => 0,
            "half" => len / 2,
            _ => len / 10,
        };
        std::fs::File::options().write(true).open(f).unwrap().set_len(keep).unwrap();
    })
    .await;
    let counts = all_stream_on(&mut viewers, 8 * SECOND, 0).await;
    ok_is_untouched(&server, &ok_before).await;
    // The camera must not go on "streaming" the few frames FFmpeg still holds in its buffers as if
    // the file were whole: it reports the file (reopening it fails: an MP4 cut short has lost its
    // index, the moov atom at its end) and retries.
    for (id, n) in ids.iter().zip(counts) {
        let st = server.camera_status(id).await;
        assert_eq!(st["connected"], false, "{id} ({n} frames in 8 s) still reports itself healthy: {st}");
        assert!(st["last_error"].as_str().is_some_and(|e| e.contains(&format!("{id}.mp4"))), "{st}");
        assert_eq!(st["state"], "retrying", "{st}");
    }
    files_come_back(&s, &clip, &server, &mut viewers, ids).await;
    server.stop().await;
}

#[actix_web::test]
async fn corrupt_files_are_reported_and_never_take_the_server_down() {
    let s = Scratch::new("faults-corrupt");
    let clip = s.path("clip.mp4");
    make_clip(&clip, 0.0, 3.0, Some(320));
    let good = std::fs::read(&clip).unwrap();
    // Pseudo-random bytes, the same every run.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    // Garbage, an MP4 header followed by garbage, an empty file, and the real clip with its middle
    // (the coded frames) overwritten: a decoder fed broken H.264.
    let garbage = s.path("garbage.mp4");
    std::fs::write(&garbage, noise(200_000)).unwrap();
    let header_only = s.path("header.mp4");
    let mut bytes = good[..64.min(good.len())].to_vec();
    bytes.extend(noise(100_000));
    std::fs::write(&header_only, bytes).unwrap();
    let empty = s.path("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let damaged = s.path("damaged.mp4");
    let mut bytes = good.clone();
    let (a, b) = (bytes.len() / 5, bytes.len() * 3 / 5);
    let junk = noise(b - a);
    bytes[a..b].copy_from_slice(&junk);
    std::fs::write(&damaged, bytes).unwrap();

    let server = TestServer::start(
        settings(vec![
            camera("garbage", &garbage),
            camera("header", &header_only),
            camera("empty", &empty),
            camera("damaged", &damaged),
            camera("ok", &clip),
        ]),
        None,
    )
    .await;
    let mut ok = server.viewer("/ws/stream/ok").await;
    let mut damaged_viewer = server.viewer("/ws/stream/damaged").await;
    ok.next_frame(10 * SECOND).await;
    let (on, dn) = futures_util::join!(drain(&mut ok, 8 * SECOND), drain(&mut damaged_viewer, 8 * SECOND));
    assert!(on.1.is_none() && dn.1.is_none(), "a viewer was closed: ok {:?}, damaged {:?}", on.1, dn.1);
    assert!(on.0 >= 64, "ok's viewer got {} frames in 8 s next to corrupt files", on.0);
    for id in ["garbage", "header", "empty"] {
        let st = server.camera_status(id).await;
        assert_eq!(st["connected"], false, "{st}");
        assert_eq!(st["state"], "retrying", "{st}");
        let err = st["last_error"].as_str().unwrap_or_default();
        assert!(err.contains(&format!("{id}.mp4")), "{id}: {st}");
        assert!(st["reconnects"].as_u64().unwrap() >= 1, "{id} stopped retrying: {st}");
    }
    // The damaged clip decodes what it can (its undamaged frames) or reports itself; the server lives.
    let st = server.camera_status("damaged").await;
    assert!(dn.0 > 0 || st["last_error"].is_string(), "damaged: no frame and no error: {st}");
    assert_healthy(server.port).await;
    server.stop().await;
}

#[actix_web::test]
async fn two_hundred_sockets_dropped_at_once_leave_nothing_behind() {
    let s = Scratch::new("faults-burst");
    let clip = s.path("clip.mp4");
    make_clip(&clip, 0.0, 4.0, Some(320));
    let file = s.path("haven.toml");
    settings_file(&file, &[("cam1", &clip)], &s.path("events"));
    let mut haven = Running::start(&file.display().to_string(), &[("HAVEN__MODEL__ENABLED", "false")]);
    let port = haven.port();
    let pid = haven.child.id();
    let status = |id: &'static str| async move { get_json(port, &format!("/api/cameras/{id}")).await.1 };

    // Baseline: one well-behaved viewer, then the process's descriptors and threads.
    let mut steady = Viewer::connect(&format!("ws://127.0.0.1:{port}/ws/stream/cam1")).await;
    steady.next_frame(10 * SECOND).await;
    let (alone, _) = drain(&mut steady, 3 * SECOND).await;
    let (fds0, threads0) = (fd_count(pid), thread_count(pid));

    // 200 sockets: 120 complete the upgrade, 40 stop halfway through the request, 40 send nothing.
    let sockets = actix_web::rt::task::spawn_blocking(move || {
        let mut all = Vec::new();
        for i in 0..200 {
            let mut s = raw::connect(port);
            let req = raw::request("/ws/stream/cam1");
            match i % 5 {
                0..=2 => s.write_all(req.as_bytes()).unwrap(),
                3 => s.write_all(&req.as_bytes()[..30]).unwrap(),
                _ => {}
            }
            all.push(s);
        }
        all
    })
    .await
    .unwrap();
    let deadline = Instant::now() + 15 * SECOND;
    while status("cam1").await["viewers"] != 121 {
        assert!(Instant::now() < deadline, "never saw 121 viewers: {}", status("cam1").await);
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // The steady viewer keeps its rate with 120 more sockets on its camera (none of which reads).
    let (crowded, closed) = drain(&mut steady, 3 * SECOND).await;
    assert!(closed.is_none(), "{closed:?}");
    assert!(crowded as f64 >= alone as f64 * 0.8, "steady viewer: {alone} frames in 3 s alone, {crowded} with the crowd");

    // All dropped at once, without a close frame.
    drop(sockets);
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        // Keep answering pings meanwhile.
        let (_, closed) = drain(&mut steady, Duration::from_millis(200)).await;
        assert!(closed.is_none(), "the steady viewer was closed: {closed:?}");
        let st = status("cam1").await;
        if st["viewers"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "viewers never came back to 1: {st}");
    }
    let (after, closed) = drain(&mut steady, 3 * SECOND).await;
    assert!(closed.is_none());
    assert!(after as f64 >= alone as f64 * 0.8, "steady viewer: {alone} frames in 3 s before, {after} after");
    // A new viewer streams as usual.
    let mut fresh = Viewer::connect(&format!("ws://127.0.0.1:{port}/ws/stream/cam1")).await;
    fresh.next_frame(5 * SECOND).await;
    fresh.close().await;
    steady.close().await;
    let deadline = Instant::now() + 10 * SECOND;
    while status("cam1").await["viewers"] != 0 {
        assert!(Instant::now() < deadline, "viewers never came back to 0: {}", status("cam1").await);
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing leaked: the half-sent requests time out (actix's 5 s client request timeout) and every
    // descriptor and thread the burst took is returned.
    let deadline = Instant::now() + 15 * SECOND;
    loop {
        let (fds, threads) = (fd_count(pid), thread_count(pid));
        if fds <= fds0 && threads <= threads0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "descriptors {fds0} → {fds}, threads {threads0} → {threads} after the burst"
        );
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
    assert_healthy(port).await;
    assert!(haven.child.try_wait().unwrap().is_none(), "the server exited");
}

#[actix_web::test]
async fn malformed_and_oversized_websocket_frames_close_only_that_socket() {
    let (_s, _clip, server) = server_on_clip("faults-frames", 4.0, &["cam1"]).await;
    let port = server.port;
    let mut steady = server.viewer("/ws/stream/cam1").await;
    steady.next_frame(10 * SECOND).await;

    // (what, bytes sent after the upgrade, close codes accepted). actix-ws reports every protocol
    // error, an oversized frame included, as 1002; 1009 (message too big) would be as right for that.
    let big = vec![b'x'; 70 * 1024];
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("unmasked text frame", raw::frame(0x81, b"hello", 5, false), &[1002]),
        ("reserved opcode 0x3", raw::frame(0x83, b"??", 2, true), &[1002]),
        ("reserved bits set", raw::frame(0xf1, b"hi", 2, true), &[1002]),
        ("continuation with no start", raw::frame(0x80, b"tail", 4, true), &[1002]),
        ("fragmented ping", raw::frame(0x09, b"p", 1, true), &[1002]),
        ("oversized text frame (70 KiB > 64 KiB)", raw::frame(0x81, &big, big.len() as u64, true), &[1002, 1009]),
        ("text that is not UTF-8", raw::frame(0x81, &[0xff, 0xfe, 0xfd], 3, true), &[1002, 1007]),
        ("close with a 1-byte payload", raw::frame(0x88, &[3], 1, true), &[1002, 1000, 1005]),
    ];
    let results = actix_web::rt::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (what, bytes, accepted) in cases {
            let mut s = raw::upgrade(port, "/ws/stream/cam1?fps=1");
            // An oversized frame may be refused before it is all sent: a failed write is fine.
            let _ = s.write_all(&bytes);
            let started = Instant::now();
            let close = raw::read_close(&mut s);
            out.push((what, close, accepted, started.elapsed()));
        }
        out
    })
    .await
    .unwrap();
    for (what, close, accepted, took) in results {
        let (code, reason) = close.unwrap_or_else(|| panic!("{what}: no close frame"));
        assert!(accepted.contains(&code), "{what}: closed with {code} {reason:?}, expected one of {accepted:?}");
        assert!(took < 5 * SECOND, "{what}: closed after {took:?}");
    }

    // Many at once, mixed with the steady viewer: it never notices.
    let burst = actix_web::rt::task::spawn_blocking(move || {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = raw::upgrade(port, "/ws/stream/cam1");
                    let bytes = if i % 2 == 0 { raw::frame(0x81, b"x", 1, false) } else { raw::frame(0x81, &[b'y'; 70 * 1024], 70 * 1024, true) };
                    let _ = s.write_all(&bytes);
                    raw::read_close(&mut s).map(|(c, _)| c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    let ((steady_n, closed), codes) = futures_util::join!(drain(&mut steady, 4 * SECOND), burst);
    assert!(closed.is_none(), "the steady viewer was closed: {closed:?}");
    assert!(steady_n >= 32, "the steady viewer got {steady_n} frames in 4 s during the burst");
    let codes = codes.unwrap();
    assert!(codes.iter().all(|c| matches!(c, Some(1002) | Some(1009))), "{codes:?}");
    server.wait_for("cam1", 10 * SECOND, "dropping the bad sockets", |c| c["viewers"] == 1).await;
    assert_healthy(port).await;
    steady.close().await;
    server.stop().await;
}

#[actix_web::test]
async fn malformed_settings_on_reload_change_nothing() {
    let s = Scratch::new("faults-reload");
    let clip = s.path("clip.mp4");
    make_clip(&clip, 0.0, 4.0, Some(320));
    let file = s.path("haven.toml");
    settings_file(&file, &[("cam1", &clip), ("cam2", &clip)], &s.path("events"));
    let good = std::fs::read_to_string(&file).unwrap();
    let mut haven = Running::start(&file.display().to_string(), &[("HAVEN__MODEL__ENABLED", "false")]);
    let port = haven.port();
    let pid = haven.child.id().to_string();
    let mut viewer = Viewer::connect(&format!("ws://127.0.0.1:{port}/ws/stream/cam1")).await;
    viewer.next_frame(10 * SECOND).await;
    let (_, before) = get_json(port, "/api/cameras").await;
    let settings_of = |list: &Value| -> Vec<(Value, Value, Value, Value)> {
        list["cameras"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["camera_id"].clone(), c["source"].clone(), c["jpeg_quality"].clone(), c["ai_enabled"].clone()))
            .collect()
    };

    let cam = |body: &str| format!("{}[[cameras]]\n{body}\n", good.split("[[cameras]]").next().unwrap());
    let bad: Vec<(&str, String)> = vec![
        ("not TOML", "this is [not toml".into()),
        ("empty file", String::new()),
        // Cut in the middle of a key of the cameras' part (half the file can end at a line where
        // what precedes it is a whole, valid file without cameras, since [notify] and [mqtt] grew it).
        ("cut in the middle", good[..good.rfind("jpeg_quality").unwrap() + 6].to_string()),
        ("binary", String::from_utf8_lossy(&[0u8, 159, 146, 150, 0xff, 0x00, 0x1b]).into_owned()),
        ("wrong type", good.replace("jpeg_quality = 80", "jpeg_quality = \"high\"")),
        ("out of range", good.replacen("jpeg_quality = 80", "jpeg_quality = 101", 1)),
        ("unknown key", good.replace("[server]", "[server]\ncolour = \"red\"")),
        ("missing section", good.replace("[stream]", "[streams]")),
        ("duplicate camera", good.replace("camera_id = \"cam2\"", "camera_id = \"cam1\"")),
        ("camera without a source", cam("camera_id = \"x\"\nsource_type = \"video_file\"")),
        ("unknown source type", cam("camera_id = \"x\"\nsource = \"a\"\nsource_type = \"webcam\"")),
        ("huge number", good.replace("jpeg_quality = 80", "jpeg_quality = 99999999999999999999")),
    ];
    for (i, (what, text)) in bad.iter().enumerate() {
        std::fs::write(&file, text).unwrap();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
        // Every broken file is refused with one error line (the watcher may also see the change
        // on disk and say so a second time) ...
        let deadline = Instant::now() + 5 * SECOND;
        loop {
            let refused = haven.log_so_far(Duration::from_millis(50)).matches("Settings not reloaded, cameras unchanged").count();
            if refused > i {
                break;
            }
            assert!(Instant::now() < deadline, "{what}: no refusal logged");
        }
        // ... and the viewer streams on, undisturbed (drain panics on nothing; a close is checked).
        let (n, closed) = drain(&mut viewer, SECOND).await;
        assert!(closed.is_none(), "{what}: the viewer was closed: {closed:?}");
        assert!(n >= 6, "{what}: the viewer got {n} frames in 1 s");
        let (code, now) = get_json(port, "/api/cameras").await;
        assert_eq!(code, 200);
        assert_eq!(settings_of(&now), settings_of(&before), "{what}: the cameras changed");
    }
    // A change through the API while the file is broken is refused (it could not be saved), with a
    // JSON error, and neither the camera nor the file changes.
    let broken = std::fs::read_to_string(&file).unwrap();
    let mut res = awc::Client::new()
        .patch(format!("http://127.0.0.1:{port}/api/cameras/cam1"))
        .send_json(&serde_json::json!({"jpeg_quality": 42}))
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(res.status().as_u16() >= 400 && body["error"].is_string(), "{} {body}", res.status());
    assert_eq!(get_json(port, "/api/cameras/cam1").await.1["jpeg_quality"], 80);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
    let log = haven.log_so_far(Duration::from_millis(100));
    assert!(!log.contains("Reloaded cameras"), "a broken file was applied:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    // No camera was restarted by any of it: their uptime is unbroken and nothing reconnected.
    let (_, after) = get_json(port, "/api/cameras").await;
    for (b, a) in before["cameras"].as_array().unwrap().iter().zip(after["cameras"].as_array().unwrap()) {
        assert!(a["uptime_seconds"].as_f64() >= b["uptime_seconds"].as_f64(), "{b} → {a}");
        assert_eq!(a["reconnects"], b["reconnects"]);
    }

    // A good file again is applied as usual (a new quality is a live change: no restart).
    std::fs::write(&file, good.replacen("jpeg_quality = 80", "jpeg_quality = 60", 1)).unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    haven.expect_log("Reloaded cameras: added [], removed [], restarted [], updated live [cam1]", 5 * SECOND);
    let (_, cam1) = get_json(port, "/api/cameras/cam1").await;
    assert_eq!(cam1["jpeg_quality"], 60);
}

#[actix_web::test]
async fn sigterm_under_load_stops_cleanly_within_five_seconds() {
    let s = Scratch::new("faults-sigterm");
    let clips: Vec<_> = (0..3)
        .map(|i| {
            let c = s.path(&format!("c{i}.mp4"));
            make_clip(&c, 10.0 * i as f64, 6.0, None);
            c
        })
        .collect();
    let file = s.path("haven.toml");
    settings_file(&file, &[("cam1", &clips[0]), ("cam2", &clips[1]), ("cam3", &clips[2])], &s.path("events"));
    let mut haven = Running::start(&file.display().to_string(), &[("HAVEN__MODEL__ENABLED", "false")]);
    let port = haven.port();

    // Load: 20 reading viewers per camera, 5 that never read, and a client hammering the API.
    let mut viewers = Vec::new();
    for i in 0..60 {
        let mut v = Viewer::connect(&format!("ws://127.0.0.1:{port}/ws/stream/cam{}", i % 3 + 1)).await;
        v.next_frame(10 * SECOND).await;
        // Each keeps reading, as a browser does, until its socket closes; it ends with the close reason.
        viewers.push(actix_web::rt::spawn(async move {
            loop {
                match v.next_event(10 * SECOND).await {
                    Some(Event::Frame(_)) => continue,
                    Some(Event::Closed(r)) => break r.and_then(|r| r.description),
                    None => break None,
                }
            }
        }));
    }
    let stalled = actix_web::rt::task::spawn_blocking(move || {
        (0..5)
            .map(|_| {
                let mut s = raw::connect(port);
                s.write_all(raw::request("/ws/stream/cam1?fps=30").as_bytes()).unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let hammer = actix_web::rt::spawn(async move {
        let client = awc::Client::new();
        let mut answered = 0u64;
        loop {
            for path in ["/api/cameras", "/metrics", "/api/cameras/cam2/snapshot.jpg"] {
                match client.get(format!("http://127.0.0.1:{port}{path}")).timeout(2 * SECOND).send().await {
                    Ok(mut res) => {
                        let _ = res.body().limit(8 << 20).await;
                        answered += 1;
                    }
                    Err(_) => return answered,
                }
            }
        }
    });
    actix_web::rt::time::sleep(2 * SECOND).await;
    let (_, list) = get_json(port, "/api/cameras").await;
    let viewers_seen: u64 = list["cameras"].as_array().unwrap().iter().map(|c| c["viewers"].as_u64().unwrap()).sum();
    // 65 sockets; a snapshot request of the hammer in flight holds a subscription of its own and counts too.
    assert!((65..=66).contains(&viewers_seen), "{viewers_seen} viewers: {list}");

    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &haven.child.id().to_string()]).status().unwrap().success());
    // Every reading viewer gets its close frame with the reason.
    let closes: Vec<_> = futures_util::future::join_all(viewers).await.into_iter().map(Result::unwrap).collect();
    let clean = closes.iter().filter(|r| r.as_deref() == Some("server shutting down")).count();
    assert_eq!(clean, 60, "close reasons: {closes:?}");
    let deadline = signalled + 5 * SECOND;
    let status = loop {
        if let Some(status) = haven.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "haven still running 5 s after SIGTERM");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let took = signalled.elapsed();
    assert!(status.success(), "haven exited with {status}");
    assert!(took < 5 * SECOND, "stopping took {took:?}");
    haven.expect_log("All cameras stopped", SECOND);
    let log = haven.log_so_far(Duration::from_millis(100));
    assert!(!log.contains("still stopping"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // The API client was answered until the end, then refused: no hang.
    let answered = hammer.await.unwrap();
    assert!(answered > 10, "the API answered only {answered} requests under load");
    drop(stalled);
}

/// A frame whose header declares more than the 64 KiB limit must be refused when its header arrives,
/// not buffered until its payload is complete: otherwise one client that streams payload grows the
/// server's memory without bound (1 GiB per second on loopback) until the heartbeat gives up on it.
#[actix_web::test]
async fn a_frame_declaring_a_huge_length_is_refused_before_its_payload_is_buffered() {
    let (_s, _clip, server) = server_on_clip("faults-huge", 4.0, &["cam1"]).await;
    let port = server.port;
    let mut steady = server.viewer("/ws/stream/cam1").await;
    steady.next_frame(10 * SECOND).await;
    // The same attack on both WebSocket routes.
    for path in ["/ws/stream/cam1?fps=1", "/ws/alerts"] {
        let attacker = actix_web::rt::task::spawn_blocking(move || {
            let mut s = raw::upgrade(port, path);
            let started = Instant::now();
            s.write_all(&raw::frame(0x82, b"", 1 << 40, true)).unwrap();
            // Up to 64 MiB of payload, 1 MiB at a time, while the server has not closed the socket.
            let reader = s.try_clone().unwrap();
            let closed = std::thread::spawn(move || {
                let mut reader = reader;
                raw::read_close(&mut reader)
            });
            let chunk = vec![0u8; 1 << 20];
            let mut sent = 0usize;
            while sent < 64 << 20 && !closed.is_finished() && s.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            (closed.join().unwrap(), sent, started.elapsed())
        });
        let ((steady_n, steady_closed), attacked) = futures_util::join!(drain(&mut steady, 3 * SECOND), attacker);
        assert!(steady_closed.is_none());
        assert!(steady_n >= 24, "the steady viewer got {steady_n} frames in 3 s");
        let (close, sent, took) = attacked.unwrap();
        let (code, reason) = close.expect("a close frame");
        assert!(
            matches!(code, 1002 | 1009) && took < 2 * SECOND,
            "{path}: closed with {code} {reason:?} after {took:?}, having taken {} MiB of payload",
            sent >> 20
        );
    }
    assert_healthy(port).await;
    server.stop().await;
}

/// The file watcher reloads the settings file when its modification time changes, and the API's own
/// write-backs change it. A reload must never apply a stale copy: a camera deleted through the API
/// (204) must not come back, neither running nor in the file.
#[actix_web::test]
async fn cameras_deleted_through_the_api_stay_deleted_while_the_file_watcher_runs() {
    let s = Scratch::new("faults-watch-race");
    let clip = s.path("clip.mp4");
    make_clip(&clip, 0.0, 2.0, Some(160));
    let file = s.path("haven.toml");
    settings_file(&file, &[("cam1", &clip)], &s.path("events"));
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "media_dirs = [\"data\"]",
        &format!("media_dirs = [\"{}\"]", s.0.display()),
    );
    std::fs::write(&file, text).unwrap();
    let server = TestServer::start(haven::settings::Settings::load(&file).unwrap(), None).await;
    let started = Instant::now();
    // Four clients at once, each adding and deleting its own cameras, for long enough that the watcher
    // (polling every 2 s) sees several of the API's writes.
    let churn = |k: usize| {
        let (clip, url) = (clip.display().to_string(), server.url("/api/cameras"));
        async move {
            let client = awc::Client::new();
            let mut n = 0;
            while started.elapsed() < 7 * SECOND {
                let id = format!("tmp{k}-{n}");
                n += 1;
                let body = serde_json::json!({"camera_id": id, "source": clip, "source_type": "video_file",
                    "ai_enabled": false, "max_fps": 1});
                let res = client.post(&url).send_json(&body).await.unwrap();
                assert_eq!(res.status().as_u16(), 201);
                let res = client.delete(format!("{url}/{id}")).send().await.unwrap();
                assert_eq!(res.status().as_u16(), 204, "{id} vanished before its DELETE");
            }
            n
        }
    };
    let counts = futures_util::future::join_all((0..4).map(churn)).await;
    let i: usize = counts.iter().sum();
    actix_web::rt::time::sleep(5 * SECOND).await; // two more watcher polls
    let (_, list) = server.get("/api/cameras").await;
    let ids: Vec<&str> = list["cameras"].as_array().unwrap().iter().map(|c| c["camera_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["cam1"], "after {i} cameras added and deleted, these run");
    let on_disk = haven::settings::Settings::load(&file).unwrap();
    let ids: Vec<&str> = on_disk.cameras.iter().map(|c| c.camera_id.as_str()).collect();
    assert_eq!(ids, ["cam1"], "after {i} cameras added and deleted, the file holds these");
    server.stop().await;
}

/// A viewer rate so small that its period is no `Duration` (below about 5.4e-20 fps) must be refused
/// with a 400 like any other bad rate, not panic the request (which drops the connection unanswered).
#[actix_web::test]
async fn a_vanishingly_small_fps_is_a_400_not_a_panic() {
    let (_s, _clip, server) = server_on_clip("faults-tinyfps", 2.0, &["cam1"]).await;
    for fps in ["1e-20", "1e-300", "5e-324"] {
        match awc::Client::new().ws(server.ws_url(&format!("/ws/stream/cam1?fps={fps}"))).connect().await {
            Err(awc::error::WsClientError::InvalidResponseStatus(code)) => assert_eq!(code.as_u16(), 400, "fps={fps}"),
            Err(e) => panic!("fps={fps}: no answer ({e})"),
            Ok(_) => panic!("fps={fps} was accepted"),
        }
        let res = awc::Client::new().get(server.url(&format!("/api/cameras/cam1/mjpeg?fps={fps}"))).send().await;
        match res {
            Ok(res) => assert_eq!(res.status().as_u16(), 400, "mjpeg fps={fps}"),
            Err(e) => panic!("mjpeg fps={fps}: no answer ({e})"),
        }
    }
    // The same rate as the server's default is refused when the settings are read.
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap().replace("fps_limit = 10", "fps_limit = 1e-30");
    assert!(haven::settings::Settings::from_toml(&text, "tiny.toml").is_err(), "stream.fps_limit = 1e-30 was accepted");
    assert_healthy(server.port).await;
    server.stop().await;
}
