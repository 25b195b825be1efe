//! Test support: the real server in-process on a free loopback port, real HTTP and WebSocket clients,
//! real video made with ffmpeg from the demo footage.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use haven::inference::{AiEngine, Engines};
use haven::settings::{CameraConfig, Settings, SourceType};
use haven::{Application, Stopper};
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo clip every test video is cut from (made by scripts/setup.sh).
pub fn demo_video(name: &str) -> PathBuf {
    let path = repo().join("data").join(name);
    assert!(path.is_file(), "{} is missing: run `bash scripts/setup.sh` first", path.display());
    path
}

/// A scratch directory under target/ that lives as long as the value.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = repo().join("target").join("test-scratch").join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Cuts `seconds` of the pedestrian footage into an H.264 MP4 (optionally scaled to `width`).
pub fn make_clip(out: &Path, start: f64, seconds: f64, width: Option<u32>) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-loglevel", "error", "-y", "-ss", &start.to_string(), "-t", &seconds.to_string(), "-i"])
        .arg(demo_video("vtest.avi"))
        .args(["-an", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-bf", "0"]);
    if let Some(w) = width {
        cmd.args(["-vf", &format!("scale={w}:-2")]);
    }
    let status = cmd.arg(out).status().expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed to make {}", out.display());
}

/// A scratch directory holding `seconds` of the footage (320 wide) as `a.mp4`, and a server (AI off)
/// with one camera per id on that clip.
pub async fn server_on_clip(name: &str, seconds: f64, ids: &[&str]) -> (Scratch, PathBuf, TestServer) {
    let s = Scratch::new(name);
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, seconds, Some(320));
    let server = TestServer::start(settings(ids.iter().map(|id| camera(id, &clip)).collect()), None).await;
    (s, clip, server)
}

pub fn camera(id: &str, source: &Path) -> CameraConfig {
    CameraConfig { ai_enabled: false, ..CameraConfig::new(id, &source.display().to_string(), SourceType::VideoFile) }
}

/// The shipped settings with a free port, short heartbeats and the given cameras.
pub fn settings(cameras: Vec<CameraConfig>) -> Settings {
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut s = Settings::from_toml(&text, "settings/default.toml").unwrap();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 2;
    s.stream.heartbeat_interval_secs = 1.0;
    s.stream.client_timeout_secs = 5.0;
    s.stream.send_timeout_secs = 3.0;
    s.cameras = cameras;
    // Each server keeps its events apart from the others' and from the demo's.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    s.events.data_dir = repo().join("target/test-scratch").join(format!("events-{}-{n}", std::process::id()));
    s.validate().unwrap();
    s
}

/// A HAVEN running in this test's actix system.
pub struct TestServer {
    pub port: u16,
    stopper: Stopper,
}

impl TestServer {
    pub async fn start(settings: Settings, engine: Option<Arc<dyn AiEngine>>) -> Self {
        Self::start_with(settings, Engines::from(engine)).await
    }

    /// A server running these models (by name).
    pub async fn start_with(settings: Settings, engines: Engines) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        haven::configure_process_env();
        let app = Application::build(settings, engines).await.expect("server starts");
        let port = app.port();
        let stopper = app.stopper();
        actix_web::rt::spawn(app.run());
        TestServer { port, stopper }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let mut res = awc::Client::new().get(self.url(path)).send().await.expect("GET answers");
        let status = res.status().as_u16();
        let body = res.body().limit(1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub async fn camera_status(&self, id: &str) -> Value {
        let (code, body) = self.get(&format!("/api/cameras/{id}")).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Polls the camera's status until `pred` holds, or panics after `timeout` showing the last status.
    pub async fn wait_for(&self, id: &str, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.camera_status(id).await;
            if pred(&status) {
                return status;
            }
            if Instant::now() > deadline {
                panic!("camera {id}: {what} did not happen within {timeout:?}; status: {status}");
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn viewer(&self, path: &str) -> Viewer {
        Viewer::connect(&self.ws_url(path)).await
    }

    pub async fn stop(self) {
        self.stopper.stop().await;
    }
}

type Framed = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// A WebSocket client that answers pings, like a browser.
pub struct Viewer {
    framed: Framed,
    /// A browser answers pings; a hung client does not.
    pub answers_pings: bool,
}

pub enum Event {
    Frame(Value),
    Closed(Option<awc::ws::CloseReason>),
}

impl Viewer {
    pub async fn connect(url: &str) -> Self {
        let (res, framed) = awc::Client::new()
            .ws(url)
            .max_frame_size(16 << 20)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("websocket {url}: {e}"));
        assert_eq!(res.status().as_u16(), 101);
        Viewer { framed, answers_pings: true }
    }

    /// A socket opened with one extra header (a session cookie, a bearer token): the HTTP status
    /// when the upgrade is refused.
    pub async fn connect_with(url: &str, header: Option<(&str, &str)>) -> Result<Self, u16> {
        let mut req = awc::Client::new().ws(url).max_frame_size(16 << 20);
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        match req.connect().await {
            Ok((_, framed)) => Ok(Viewer { framed, answers_pings: true }),
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
            Err(e) => panic!("websocket {url}: {e}"),
        }
    }

    /// The next frame message or close, within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let item = tokio::time::timeout_at(deadline, self.framed.next()).await.ok()?;
            match item {
                Some(Ok(Frame::Text(bytes))) => {
                    return Some(Event::Frame(serde_json::from_slice(&bytes).expect("frame message is JSON")))
                }
                // A binary frame: its header's JSON, with the JPEG as `"jpeg"` (bytes) beside it.
                Some(Ok(Frame::Binary(bytes))) => {
                    let n = u32::from_be_bytes(bytes[..4].try_into().expect("a 4-byte header length")) as usize;
                    let mut header: Value = serde_json::from_slice(&bytes[4..4 + n]).expect("binary header is JSON");
                    header["jpeg"] = Value::from(bytes[4 + n..].to_vec());
                    return Some(Event::Frame(header));
                }
                Some(Ok(Frame::Ping(p))) if self.answers_pings => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(reason))) => return Some(Event::Closed(reason)),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("websocket error: {e}"),
                None => return Some(Event::Closed(None)),
            }
        }
    }

    pub async fn next_frame(&mut self, timeout: Duration) -> Value {
        match self.next_event(timeout).await {
            Some(Event::Frame(v)) => v,
            Some(Event::Closed(r)) => panic!("socket closed instead of a frame: {r:?}"),
            None => panic!("no frame within {timeout:?}"),
        }
    }

    /// Reads frames for `window`; returns how many arrived and the last one.
    pub async fn count_frames(&mut self, window: Duration) -> (usize, Option<Value>) {
        let deadline = Instant::now() + window;
        let (mut n, mut last) = (0, None);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_event(left).await {
                Some(Event::Frame(v)) => {
                    n += 1;
                    last = Some(v);
                }
                Some(Event::Closed(r)) => panic!("socket closed while counting: {r:?}"),
                None => break,
            }
        }
        (n, last)
    }

    pub async fn close(mut self) {
        let _ = self.framed.send(Message::Close(None)).await;
    }
}

/// The real `haven` binary, started from the repository root, with its log lines collected.
pub struct Running {
    pub child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn start(settings: &str, env: &[(&str, &str)]) -> Self {
        demo_video("1.mp4");
        let mut child = Command::new(env!("CARGO_BIN_EXE_haven"))
            .current_dir(repo())
            .args(["--settings", settings])
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haven starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running { child, lines, seen: Vec::new() }
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn expect_log(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line with {needle:?} within {timeout:?}; log so far:\n{}", self.seen.join("\n"));
    }

    pub fn port(&mut self) -> u16 {
        let line = self.expect_log("listening on http://127.0.0.1:", Duration::from_secs(30));
        let after = line.split("127.0.0.1:").nth(1).unwrap();
        after.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    }
}

impl Running {
    /// Every line logged so far (waiting up to `settle` for more).
    pub fn log_so_far(&mut self, settle: Duration) -> String {
        while let Ok(line) = self.lines.recv_timeout(settle) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A self-signed certificate for 127.0.0.1 (`cert.pem`, `key.pem` under `dir/name`), made by openssl;
/// `None` (a failure when `CI` is set) without it.
pub fn certificate(dir: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "openssl is needed to make the test's certificate: {made:?}");
        eprintln!("SKIPPED: openssl cannot make a certificate: {made:?}");
        return None;
    }
    Some((cert, key))
}
