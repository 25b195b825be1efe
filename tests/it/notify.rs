//! Notifications end to end: the real server raising real events, a real HTTP receiver written
//! here, failing, down, and HAVEN killed with -9 while deliveries wait.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use haven::notify::webhook::signature;
use haven::notify::WebhookSettings;
use serde_json::Value;

use crate::events::write_fall_video_lying;
use crate::pose::pose_engine;
use crate::support::*;

const SECRET: &str = "s3cret-do-not-show";

/// What a receiver got: each accepted POST's signature header and body, and how many it was sent.
#[derive(Clone, Default)]
pub struct Inbox {
    pub got: Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>,
    pub calls: Arc<AtomicUsize>,
    /// The first this many POSTs are answered 500.
    pub fail_first: usize,
}

impl Inbox {
    pub fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect()
    }
}

async fn receive(inbox: web::Data<Inbox>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if inbox.calls.fetch_add(1, Ordering::SeqCst) < inbox.fail_first {
        return HttpResponse::InternalServerError().body("not now");
    }
    let sig = req.headers().get("X-Haven-Signature").map(|v| v.to_str().unwrap().to_string());
    inbox.got.lock().unwrap().push((sig, body.to_vec()));
    HttpResponse::Ok().finish()
}

/// A webhook receiver on `listener`, in this test's actix system.
pub fn start_receiver(listener: TcpListener, inbox: Inbox) -> ServerHandle {
    let server = HttpServer::new(move || App::new().app_data(web::Data::new(inbox.clone())).route("/hook", web::post().to(receive)))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}

fn hook(name: &str, port: u16, kinds: &[&str], secret_file: Option<&Path>) -> WebhookSettings {
    WebhookSettings {
        name: name.into(),
        url: format!("http://127.0.0.1:{port}/hook"),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        cameras: vec![],
        secret_file: secret_file.map(Path::to_path_buf),
        ca_file: None,
        timeout_secs: 5,
        escalation: false,
    }
}

/// `(type, event id, kind)` of each notification.
fn summary(bodies: &[Value]) -> Vec<(String, i64, String)> {
    bodies.iter().map(|b| (b["type"].as_str().unwrap().into(), b["after"]["id"].as_i64().unwrap(), b["after"]["kind"].as_str().unwrap().into())).collect()
}

/// Polls until `done`, or fails after `secs` with `what`.
async fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn a_fall_reaches_two_webhooks_signed_in_order_once_each_one_failing_first() {
    let s = Scratch::new("notify-fall");
    let video = s.path("fall.mp4");
    write_fall_video_lying(&video, 4.0, false);
    let secret_file = s.path("hook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let (steady_port, flaky_port, oncall_port) = (ports[0], ports[1], ports[2]);
    let steady = Inbox::default();
    let flaky = Inbox { fail_first: 3, ..Default::default() };
    let oncall = Inbox::default();
    let mut listeners = listeners.into_iter();
    let mut next = || listeners.next().unwrap();
    let receivers = [start_receiver(next(), steady.clone()), start_receiver(next(), flaky.clone()), start_receiver(next(), oncall.clone())];

    let mut cam = camera("ward", &video);
    cam.ai_enabled = true;
    cam.loop_video = false;
    let mut settings = settings(vec![cam]);
    settings.events.post_roll_secs = 1.0;
    settings.notify.public_url = "http://haven.example:8000/".into();
    settings.notify.escalate_after_secs = 2;
    // On call: nothing but escalations (it wants no fall itself).
    let on_call = WebhookSettings { escalation: true, ..hook("oncall", oncall_port, &["object_detected"], None) };
    settings.notify.webhooks = vec![hook("steady", steady_port, &["fall"], Some(&secret_file)), hook("flaky", flaky_port, &["fall"], None), on_call];
    let server = TestServer::start(settings, Some(pose_engine(640, 480))).await;

    // The fall: new, its snapshot and clip as updates, its end; the clip may come after the end.
    let complete = |inbox: &Inbox| {
        let b = inbox.bodies();
        b.iter().any(|n| n["type"] == "end") && b.iter().any(|n| n["after"]["clip_status"] == "ready" || n["after"]["clip_status"] == "failed")
    };
    wait_until(120, "the fall's notifications", || complete(&steady) && complete(&flaky)).await;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let (got, failing) = (steady.bodies(), flaky.bodies());
    assert_eq!(summary(&got), summary(&failing), "both targets get the same, in the same order");
    assert_eq!(got, failing);
    let types: Vec<&str> = got.iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"new"), "{types:?}");
    assert!(types.iter().filter(|t| **t == "new").count() == 1 && types.iter().filter(|t| **t == "end").count() == 1, "{types:?}");
    assert!(got.iter().all(|n| n["after"]["kind"] == "fall" && n["after"]["camera_id"] == "ward"), "kinds = [\"fall\"] only");
    assert_eq!(got[0]["before"], Value::Null);
    let id = got[0]["after"]["id"].as_i64().unwrap();
    assert_eq!(got[0]["links"]["clip"], format!("http://haven.example:8000/api/events/{id}/clip.mp4"));
    assert_eq!(got[0]["links"]["event"], format!("http://haven.example:8000/api/events/{id}"));
    for pair in got.windows(2) {
        assert_eq!(pair[1]["before"], pair[0]["after"], "each change's before is the last one's after");
    }
    let end = got.iter().find(|n| n["type"] == "end").unwrap();
    assert!(end["after"]["ended_at"].is_number(), "{end}");
    // Once each: 3 refused attempts (7 s of backoff: the end waits behind the new), then every notification exactly once.
    assert_eq!(flaky.calls.load(Ordering::SeqCst), got.len() + 3);
    // Signed with the secret; the other target, without one, is not.
    for (sig, body) in steady.got.lock().unwrap().iter() {
        assert_eq!(sig.as_deref(), Some(signature(SECRET.as_bytes(), body).as_str()));
    }
    assert!(flaky.got.lock().unwrap().iter().all(|(sig, _)| sig.is_none()));
    // Not acknowledged 2 s after it started: escalated once, to the on-call target only.
    let escalations = oncall.bodies();
    assert_eq!(summary(&escalations), [("escalation".to_string(), id, "fall".to_string())]);
    assert!(got.iter().all(|n| n["type"] != "escalation"));

    let (code, notify) = server.get("/api/notify").await;
    assert_eq!(code, 200);
    let targets = notify["targets"].as_array().unwrap();
    let by_name = |n: &str| targets.iter().find(|t| t["name"] == n).unwrap().clone();
    let (st, fl) = (by_name("steady"), by_name("flaky"));
    assert_eq!((st["delivered"].as_u64(), st["pending"].as_u64(), st["failed"].as_u64()), (Some(got.len() as u64), Some(0), Some(0)), "{st}");
    assert_eq!((fl["delivered"].as_u64(), fl["pending"].as_u64(), fl["last_error"].as_str()), (Some(got.len() as u64), Some(0), Some("answered HTTP 500")), "{fl}");
    assert_eq!(st["address"], format!("http://127.0.0.1:{steady_port}/hook"));
    let metrics = awc::Client::new().get(server.url("/metrics")).send().await.unwrap().body().await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains(&format!("haven_notify_delivered_total{{target=\"steady\"}} {}", got.len())), "{metrics}");
    assert!(metrics.contains("haven_notify_pending{target=\"flaky\"} 0"));
    assert!(metrics.contains("haven_notify_failed_total{target=\"flaky\"} 0"));
    assert!(!notify.to_string().contains(SECRET) && !metrics.contains(SECRET), "the secret is never shown");
    server.stop().await;
    for r in receivers {
        r.stop(false).await;
    }
}

#[actix_web::test]
async fn a_snoozed_camera_notifies_nothing_and_its_status_says_until_when() {
    let (_s, _clip, server) = server_on_clip("notify-snooze", 2.0, &["door"]).await;
    let client = awc::Client::new();
    let mut res = client.post(server.url("/api/cameras/door/snooze")).send_json(&serde_json::json!({"minutes": 30})).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    let until = body["snoozed_until"].as_f64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now + 1700.0..now + 1801.0).contains(&until), "{body}");
    assert_eq!(server.camera_status("door").await["snoozed_until"].as_f64(), Some(until));
    let res = client.post(server.url("/api/cameras/door/snooze")).send_json(&serde_json::json!({"minutes": 10081})).await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let res = client.post(server.url("/api/cameras/nope/snooze")).send_json(&serde_json::json!({"minutes": 5})).await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    client.post(server.url("/api/cameras/door/snooze")).send_json(&serde_json::json!({"minutes": 0})).await.unwrap();
    assert_eq!(server.camera_status("door").await["snoozed_until"], Value::Null);
    let (_, notify) = server.get("/api/notify").await;
    assert_eq!(notify["targets"], serde_json::json!([]));
    server.stop().await;
}

/// The shipped settings with one camera (cam1, people walking, AI on) and a webhook for its
/// `person_detected` events to `port`, signed.
fn one_camera_settings(dir: &Path, port: u16, secret_file: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let head = &text[..text.find("\n[[cameras]]\n").unwrap()];
    let text = format!(
        "{head}\n[[cameras]]\ncamera_id = \"cam1\"\nsource = \"data/1.mp4\"\nsource_type = \"video_file\"\nloop_video = true\nai_enabled = true\n\n\
         [[notify.webhooks]]\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nkinds = [\"person_detected\"]\nsecret_file = \"{}\"\n",
        secret_file.display()
    );
    let path = dir.join("settings.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The outbox's rows for `target`, oldest first, as their payloads.
fn outbox(db: &Path, target: &str) -> Vec<Value> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT payload FROM outbox WHERE target = ?1 ORDER BY id").unwrap();
    let rows = stmt.query_map([target], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|r| serde_json::from_str(&r.unwrap()).unwrap()).collect()
}

async fn get_json(port: u16, path: &str) -> Value {
    awc::Client::new().get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap().json().await.unwrap()
}

#[actix_web::test]
async fn pending_deliveries_survive_a_kill_9_and_all_arrive_once_the_receiver_is_up() {
    let s = Scratch::new("notify-kill");
    let secret_file = s.path("hook.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    // The receiver's port, free and nobody listening yet: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = one_camera_settings(&s.0, port, &secret_file);
    let data_dir = s.path("events");
    let env = [("HAVEN__SERVER__BIND", "127.0.0.1:0"), ("HAVEN__EVENTS__DATA_DIR", data_dir.to_str().unwrap())];
    let mut first = Running::start(settings.to_str().unwrap(), &env);
    let api = first.port();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let notify = get_json(api, "/api/notify").await;
        let hook = &notify["targets"][0];
        assert!(!notify.to_string().contains(SECRET));
        if hook["pending"].as_u64().unwrap() >= 3 && hook["last_error"].as_str().is_some_and(|e| e.starts_with("no answer")) {
            break;
        }
        assert!(Instant::now() < deadline, "no pending notifications: {notify}");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(Command::new("kill").args(["-KILL", &first.child.id().to_string()]).status().unwrap().success());
    first.child.wait().unwrap();
    let log = first.log_so_far(Duration::from_millis(200));
    assert!(!log.contains(SECRET), "the secret is never logged");
    let waiting = outbox(&data_dir.join("events.db"), "hook");
    assert!(waiting.len() >= 3, "{waiting:?}");
    assert_eq!(waiting[0]["type"], "new");

    // Restarted, then the receiver comes up: what waited arrives first, in order, each once.
    let mut second = Running::start(settings.to_str().unwrap(), &env);
    let api = second.port();
    let inbox = Inbox::default();
    let receiver = start_receiver(TcpListener::bind(("127.0.0.1", port)).unwrap(), inbox.clone());
    wait_until(120, "the notifications waiting at the kill", || inbox.got.lock().unwrap().len() >= waiting.len()).await;
    let got = inbox.bodies();
    assert_eq!(summary(&got[..waiting.len()]), summary(&waiting), "oldest first, as written before the kill");
    assert!(got[..waiting.len()] == waiting[..], "the bodies as written before the kill");
    let distinct: std::collections::HashSet<String> = got.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), got.len(), "each once");
    for (sig, body) in inbox.got.lock().unwrap().iter() {
        assert_eq!(sig.as_deref(), Some(signature(SECRET.as_bytes(), body).as_str()));
    }
    // Each event's notifications in order: new first, end last.
    for id in got.iter().map(|n| n["after"]["id"].as_i64().unwrap()).collect::<std::collections::BTreeSet<_>>() {
        let types: Vec<&str> = got.iter().filter(|n| n["after"]["id"] == id).map(|n| n["type"].as_str().unwrap()).collect();
        assert!(types.iter().skip(1).all(|t| *t != "new"), "event {id}: {types:?}");
        if let Some(end) = types.iter().position(|t| *t == "end") {
            assert!(types[..end].contains(&"new") || end == 0, "event {id}: {types:?}");
        }
    }
    let notify = get_json(api, "/api/notify").await;
    assert!(notify["targets"][0]["delivered"].as_u64().unwrap() >= waiting.len() as u64, "{notify}");
    let log = second.log_so_far(Duration::from_millis(200));
    assert!(!log.contains(SECRET), "the secret is never logged");
    receiver.stop(false).await;
}

#[test]
fn bad_webhook_settings_stop_start_up_naming_the_field() {
    let s = Scratch::new("notify-bad");
    for (change, field) in [
        ("url = \"ftp://user:pw@127.0.0.1/hook\"", "notify.webhooks[0].url"),
        ("kinds = [\"falls\"]", "notify.webhooks[0].kinds"),
    ] {
        let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
        let hook = format!("name = \"pager\"\n{change}\n");
        let hook = if change.starts_with("url") { hook } else { format!("{hook}url = \"http://127.0.0.1:9/hook\"\n") };
        let path = s.path("bad.toml");
        std::fs::write(&path, format!("{text}\n[[notify.webhooks]]\n{hook}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_haven")).current_dir(repo()).args(["--settings", path.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(field), "{stderr}");
        assert!(!stderr.contains(":pw@"), "{stderr}");
    }
}

/// A one-connection-at-a-time HTTPS receiver (rustls, its own certificate `name` made by `openssl`
/// for 127.0.0.1) on a thread: answers 200 to each request, keeps the bodies.
fn start_tls_receiver(dir: &Path, name: &str) -> Option<(u16, Arc<Mutex<Vec<Value>>>, std::path::PathBuf)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{BufRead, BufReader, Read, Write};
    let (cert, key) = certificate(dir, name)?;
    let certs = vec![CertificateDer::from_pem_file(&cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_no_client_auth().with_single_cert(certs, key).unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let bodies = got.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else { continue };
            let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            if length == 0 || reader.read_exact(&mut body).is_err() {
                continue;
            }
            bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            let stream = reader.get_mut();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    });
    Some((port, got, cert))
}

/// Two https receivers: one whose certificate is among the system's roots, one trusted through the
/// webhook's own `ca_file` only; both get every notification, over TLS.
#[actix_web::test]
async fn an_https_webhook_is_delivered_over_tls_trusting_the_system_roots_or_its_ca_file() {
    let s = Scratch::new("notify-https");
    let (Some((port, got, cert)), Some((private_port, private_got, private_cert))) = (start_tls_receiver(&s.0, "receiver"), start_tls_receiver(&s.0, "private")) else { return };
    // The system's roots, as rustls-native-certs reads them: here, the first receiver's certificate.
    std::env::set_var("SSL_CERT_FILE", &cert);
    let video = s.path("fall.mp4");
    write_fall_video_lying(&video, 2.0, false);
    let mut cam = camera("ward", &video);
    cam.ai_enabled = true;
    cam.loop_video = false;
    let mut settings = settings(vec![cam]);
    settings.notify.webhooks = vec![
        WebhookSettings { url: format!("https://127.0.0.1:{port}/hook"), ..hook("tls", port, &["person_detected"], None) },
        WebhookSettings { url: format!("https://127.0.0.1:{private_port}/hook"), ca_file: Some(private_cert), ..hook("private", private_port, &["person_detected"], None) },
    ];
    let server = TestServer::start(settings, Some(pose_engine(640, 480))).await;
    for (what, got) in [("the system's roots", &got), ("its ca_file", &private_got)] {
        wait_until(60, &format!("a notification over https trusting {what}"), || got.lock().unwrap().iter().any(|n| n["type"] == "end")).await;
        assert_eq!(got.lock().unwrap()[0]["type"], "new");
    }
    let (_, notify) = server.get("/api/notify").await;
    for target in notify["targets"].as_array().unwrap() {
        assert_eq!(target["pending"], 0, "{notify}");
    }
    server.stop().await;
}
