//! People and permissions (issue 27) against the real server: accounts signed in with real HTTP,
//! every role on every kind of route (REST, snapshots, MJPEG, WebSockets, events, clips, alerts,
//! metrics), hostile sign-ins and credentials, and the command line that makes accounts and tokens.

use std::time::{Duration, Instant};

use awc::http::Method;
use haven::auth::{password, AccountStore, Role, Scope};
use haven::events::{ClipInfo, EventStore};
use serde_json::{json, Value};

use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);
/// Every account's password in these tests (a real argon2id hash of it is stored).
const PASSWORD: &str = "correct horse battery";

/// How a request proves who it is.
#[derive(Clone, Default)]
struct Who {
    /// `haven_session=…`
    cookie: Option<String>,
    /// The whole `Authorization` header value.
    authorization: Option<String>,
}

impl Who {
    fn nobody() -> Self {
        Who::default()
    }

    fn bearer(token: &str) -> Self {
        Who { cookie: None, authorization: Some(format!("Bearer {token}")) }
    }

    fn header(&self) -> Option<(&str, &str)> {
        match (&self.cookie, &self.authorization) {
            (Some(c), _) => Some(("Cookie", c.as_str())),
            (None, Some(a)) => Some(("Authorization", a.as_str())),
            (None, None) => None,
        }
    }
}

/// One request: the status, the JSON answer (Null if none) and the headers. Streaming answers
/// (MJPEG) are not read.
async fn call(port: u16, method: &str, path: &str, who: &Who, body: Option<Value>) -> (u16, Value, awc::http::header::HeaderMap) {
    let client = awc::Client::builder().disable_redirects().finish();
    let mut req = client.request(Method::from_bytes(method.as_bytes()).unwrap(), format!("http://127.0.0.1:{port}{path}"));
    if let Some((name, value)) = who.header() {
        req = req.insert_header((name, value));
    }
    let mut res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let streaming = headers.get("content-type").is_some_and(|v| v.to_str().unwrap_or("").starts_with("multipart/"));
    let json = if streaming { Value::Null } else { serde_json::from_slice(&res.body().limit(64 << 20).await.unwrap()).unwrap_or(Value::Null) };
    (status, json, headers)
}

async fn status(port: u16, method: &str, path: &str, who: &Who) -> u16 {
    call(port, method, path, who, None).await.0
}

/// Signs in; the session cookie (as a `Cookie` header's value).
async fn sign_in(port: u16, name: &str, password: &str) -> Who {
    let (code, body, headers) = call(port, "POST", "/api/session", &Who::nobody(), Some(json!({ "name": name, "password": password }))).await;
    assert_eq!(code, 200, "{name} signs in: {body}");
    let set = headers.get("set-cookie").expect("a session cookie").to_str().unwrap().to_string();
    let pair = set.split(';').next().unwrap().to_string();
    assert!(pair.starts_with("haven_session=") && pair.len() > 40, "{set}");
    Who { cookie: Some(pair), authorization: None }
}

/// Two cameras, `ward-a-1` and `door`, each with a stored fall that has its clip and snapshot; the
/// accounts `ann` (admin), `olga` (operator of ward-a-*), `vic` (viewer of ward-a-*).
struct Ward {
    _scratch: Scratch,
    server: TestServer,
    /// The falls' ids: (ward-a-1's, door's).
    falls: (i64, i64),
    data_dir: std::path::PathBuf,
}

fn seed_fall(store: &EventStore, dir: &std::path::Path, camera: &str, clip: &std::path::Path) -> i64 {
    let t = haven::events::now();
    let event = json!({ "id": null, "camera_id": camera, "kind": "fall", "phase": "end", "track_id": 1, "started_at": t - 60.0,
        "ended_at": t - 50.0, "score": 0.9, "bbox": [0, 0, 10, 10], "keypoints": [], "clip_status": "none" });
    let id = store.insert(&serde_json::from_value(event).unwrap(), false).unwrap();
    std::fs::create_dir_all(dir.join(format!("clips/{camera}"))).unwrap();
    std::fs::create_dir_all(dir.join(format!("snapshots/{camera}"))).unwrap();
    let (clip_rel, snap_rel) = (format!("clips/{camera}/{id}-fall.mp4"), format!("snapshots/{camera}/{id}-fall.jpg"));
    std::fs::copy(clip, dir.join(&clip_rel)).unwrap();
    std::fs::write(dir.join(&snap_rel), b"\xff\xd8 a jpeg").unwrap();
    let bytes = std::fs::metadata(dir.join(&clip_rel)).unwrap().len();
    store.set_clip(id, &ClipInfo { path: clip_rel, frames: 10, fps: 10.0, started_at: t - 61.0, bytes }).unwrap();
    store.set_snapshot(id, &snap_rel, 9).unwrap();
    id
}

fn add_accounts(dir: &std::path::Path) {
    let accounts = AccountStore::open(dir).unwrap();
    let phc = password::hash(PASSWORD).unwrap();
    let wing = Scope::new(vec!["ward-a-*".into()]).unwrap();
    accounts.add_user("ann", &phc, Role::Admin, &Scope::all()).unwrap();
    accounts.add_user("olga", &phc, Role::Operator, &wing).unwrap();
    accounts.add_user("vic", &phc, Role::Viewer, &wing).unwrap();
}

async fn ward(name: &str, token: &str) -> Ward {
    ward_with(name, token, |_| {}).await
}

async fn ward_with(name: &str, token: &str, adjust: impl FnOnce(&mut haven::settings::Settings)) -> Ward {
    let s = Scratch::new(name);
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 4.0, Some(320));
    let mut cameras = vec![camera("ward-a-1", &clip), camera("door", &clip)];
    for c in &mut cameras {
        c.loop_video = true;
    }
    let mut settings = settings(cameras);
    settings.api.token = token.into();
    adjust(&mut settings);
    let dir = settings.events.data_dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let store = EventStore::open(&dir.join("events.db")).unwrap();
    let falls = (seed_fall(&store, &dir, "ward-a-1", &clip), seed_fall(&store, &dir, "door", &clip));
    drop(store);
    add_accounts(&dir);
    let server = TestServer::start(settings, None).await;
    Ward { _scratch: s, server, falls, data_dir: dir }
}

/// Waits (as the admin) until both cameras deliver frames.
async fn both_connected(port: u16, admin: &Who) {
    let deadline = Instant::now() + 30 * SECOND;
    loop {
        let (_, body, _) = call(port, "GET", "/api/cameras", admin, None).await;
        let cams = body["cameras"].as_array().cloned().unwrap_or_default();
        if cams.len() == 2 && cams.iter().all(|c| c["connected"] == true) {
            return;
        }
        assert!(Instant::now() < deadline, "cameras not connected: {body}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

fn camera_ids(body: &Value, list: &str, key: &str) -> Vec<String> {
    body[list].as_array().unwrap_or(&vec![]).iter().map(|c| c[key].as_str().unwrap_or("").to_string()).collect()
}

#[actix_web::test]
async fn every_role_on_every_route_sees_its_cameras_only() {
    let w = ward("roles", "").await;
    let port = w.server.port;
    let (ann, olga, vic) = (sign_in(port, "ann", PASSWORD).await, sign_in(port, "olga", PASSWORD).await, sign_in(port, "vic", PASSWORD).await);
    both_connected(port, &ann).await;
    reads_need_a_session_and_show_the_accounts_cameras(port, &ann, &vic).await;
    media_of_another_camera_is_not_found(port, &ann, &vic).await;
    events_and_clips_of_another_camera_are_not_found(port, w.falls, &vic).await;
    sockets_open_with_the_session_for_the_accounts_cameras_only(port, &vic).await;
    alerts_reach_the_accounts_cameras_only(port, w.falls, &ann, &vic).await;
    writes_by_role(port, w.falls, &ann, &olga, &vic).await;
    the_audit_log_says_who_did_what(port, &ann).await;
    w.server.stop().await;
}

async fn reads_need_a_session_and_show_the_accounts_cameras(port: u16, ann: &Who, vic: &Who) {
    for path in ["/api/cameras", "/api/cameras/ward-a-1", "/api/events", "/metrics", "/api/engine", "/api/cameras/ward-a-1/snapshot.jpg"] {
        let (code, body, headers) = call(port, "GET", path, &Who::nobody(), None).await;
        assert_eq!(code, 401, "{path} without a session: {body}");
        assert!(headers.contains_key("www-authenticate"));
    }
    // The page sends a browser without a session to the login page, which is open, as its files.
    let (code, _, headers) = call(port, "GET", "/", &Who::nobody(), None).await;
    assert_eq!((code, headers.get("location").unwrap().to_str().unwrap()), (303, "/login"));
    for path in ["/login", "/ui/login.js", "/ui/style.css"] {
        assert_eq!(status(port, "GET", path, &Who::nobody()).await, 200, "{path}");
    }
    assert_eq!(status(port, "GET", "/", vic).await, 200);

    let (_, body, _) = call(port, "GET", "/api/cameras", vic, None).await;
    assert_eq!(camera_ids(&body, "cameras", "camera_id"), ["ward-a-1"], "{body}");
    assert_eq!(body["total_cameras"], 1);
    let (_, body, _) = call(port, "GET", "/api/cameras", ann, None).await;
    assert_eq!(camera_ids(&body, "cameras", "camera_id").len(), 2);
    let (_, who, _) = call(port, "GET", "/api/session", vic, None).await;
    assert_eq!((who["name"].as_str(), who["role"].as_str(), who["cameras"].clone()), (Some("vic"), Some("viewer"), json!(["ward-a-*"])));

    // Metrics name the account's cameras only.
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/metrics")).insert_header(("Cookie", vic.cookie.clone().unwrap())).send().await.unwrap();
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(text.contains("camera=\"ward-a-1\"") && !text.contains("camera=\"door\""), "{text}");
    // A view of every camera's node is for accounts that see them all.
    assert_eq!(status(port, "GET", "/api/notify", vic).await, 403);
    assert_eq!(status(port, "GET", "/api/notify", ann).await, 200);
}

async fn media_of_another_camera_is_not_found(port: u16, ann: &Who, vic: &Who) {
    for path in ["/api/cameras/door", "/api/cameras/door/snapshot.jpg", "/api/cameras/door/mjpeg", "/api/cameras/do%6Fr/snapshot.jpg"] {
        let (code, body, _) = call(port, "GET", path, vic, None).await;
        assert_eq!(code, 404, "{path}: {body}");
        // The same answer as a camera that does not exist, given to an admin.
        let (_, none, _) = call(port, "GET", &path.replace("door", "nowhere").replace("do%6Fr", "nowhere"), ann, None).await;
        assert_eq!(body["error"].as_str().unwrap().replace("door", "X"), none["error"].as_str().unwrap().replace("nowhere", "X"));
    }
    let (code, _, headers) = call(port, "GET", "/api/cameras/ward-a-1/snapshot.jpg", vic, None).await;
    assert_eq!((code, headers.get("content-type").unwrap().to_str().unwrap()), (200, "image/jpeg"));
    let (code, _, headers) = call(port, "GET", "/api/cameras/ward-a-1/mjpeg", vic, None).await;
    assert_eq!(code, 200);
    assert!(headers.get("content-type").unwrap().to_str().unwrap().starts_with("multipart/x-mixed-replace"));
}

async fn events_and_clips_of_another_camera_are_not_found(port: u16, (ward_fall, door_fall): (i64, i64), vic: &Who) {
    let (_, body, _) = call(port, "GET", "/api/events", vic, None).await;
    assert_eq!((body["total"].as_u64(), camera_ids(&body, "events", "camera_id")), (Some(1), vec!["ward-a-1".to_string()]), "{body}");
    let (_, body, _) = call(port, "GET", "/api/events?camera=door", vic, None).await;
    assert_eq!(body["total"], 0, "{body}");
    for what in ["", "/snapshot.jpg", "/clip.mp4"] {
        let (code, body, _) = call(port, "GET", &format!("/api/events/{door_fall}{what}"), vic, None).await;
        assert_eq!((code, body["error"].as_str()), (404, Some(format!("no such event: {door_fall}").as_str())), "door's event{what}");
        assert_eq!(status(port, "GET", &format!("/api/events/{ward_fall}{what}"), vic).await, 200, "ward's event{what}");
    }
}

async fn sockets_open_with_the_session_for_the_accounts_cameras_only(port: u16, vic: &Who) {
    let url = |p: &str| format!("ws://127.0.0.1:{port}{p}");
    for path in ["/ws/stream/ward-a-1", "/ws/stream", "/ws/alerts"] {
        assert_eq!(Viewer::connect_with(&url(path), None).await.err(), Some(401), "{path} without a session");
    }
    for path in ["/ws/stream/door", "/ws/alerts?camera=door"] {
        assert_eq!(Viewer::connect_with(&url(path), vic.header()).await.err(), Some(404), "{path}");
    }
    // The legacy stream is the first of the account's cameras (the server's first is door's… or
    // ward's: either way, never one outside the account).
    for path in ["/ws/stream/ward-a-1", "/ws/stream"] {
        let mut viewer = Viewer::connect_with(&url(path), vic.header()).await.unwrap_or_else(|c| panic!("{path}: {c}"));
        assert_eq!(viewer.next_frame(30 * SECOND).await["metadata"]["camera_id"], "ward-a-1", "{path}");
        viewer.close().await;
    }
}

async fn alerts_reach_the_accounts_cameras_only(port: u16, (ward_fall, door_fall): (i64, i64), ann: &Who, vic: &Who) {
    let mut alerts = Viewer::connect_with(&format!("ws://127.0.0.1:{port}/ws/alerts"), vic.header()).await.unwrap();
    // Door's acknowledgement first: the viewer's first alert must still be ward's.
    for id in [door_fall, ward_fall] {
        let (code, body, _) = call(port, "POST", &format!("/api/events/{id}/ack"), ann, Some(json!({ "by": "Ann" }))).await;
        assert_eq!(code, 200, "{body}");
    }
    let first = alerts.next_frame(10 * SECOND).await;
    assert_eq!((first["id"].as_i64(), first["camera_id"].as_str()), (Some(ward_fall), Some("ward-a-1")), "{first}");
    alerts.close().await;
}

async fn writes_by_role(port: u16, (ward_fall, door_fall): (i64, i64), ann: &Who, olga: &Who, vic: &Who) {
    let send = |who: &Who, method: &'static str, path: String, body: Value| {
        let who = who.clone();
        async move { call(port, method, &path, &who, Some(body)).await }
    };
    let snooze = json!({ "minutes": 1 });
    // Watching only: a viewer may not acknowledge nor snooze (403: it is known who asks).
    assert_eq!(send(vic, "POST", format!("/api/events/{ward_fall}/ack"), json!({ "by": "Vic" })).await.0, 403);
    assert_eq!(send(vic, "POST", "/api/cameras/ward-a-1/snooze".into(), snooze.clone()).await.0, 403);
    assert_eq!(send(&Who::nobody(), "POST", "/api/cameras/ward-a-1/snooze".into(), snooze.clone()).await.0, 401);
    // An operator may, on its own cameras; another camera's event or camera does not exist for it.
    assert_eq!(send(olga, "POST", format!("/api/events/{ward_fall}/ack"), json!({ "by": "Olga" })).await.0, 200);
    assert_eq!(send(olga, "POST", format!("/api/events/{door_fall}/ack"), json!({ "by": "Olga" })).await.0, 404);
    assert_eq!(send(olga, "POST", "/api/cameras/ward-a-1/snooze".into(), snooze.clone()).await.0, 200);
    assert_eq!(send(olga, "POST", "/api/cameras/door/snooze".into(), snooze).await.0, 404);
    // Settings, cameras, accounts and tokens are an admin's.
    let patch = json!({ "detect_fps": 4.0 });
    for who in [vic, olga] {
        assert_eq!(send(who, "PATCH", "/api/cameras/ward-a-1".into(), patch.clone()).await.0, 403);
        assert_eq!(send(who, "DELETE", "/api/cameras/ward-a-1".into(), Value::Null).await.0, 403);
        assert_eq!(send(who, "POST", "/api/cameras".into(), json!({})).await.0, 403);
        assert_eq!(send(who, "POST", "/api/users".into(), json!({ "name": "eve", "password": PASSWORD, "role": "admin" })).await.0, 403);
        assert_eq!(status(port, "GET", "/api/users", who).await, 403);
        assert_eq!(status(port, "GET", "/api/tokens", who).await, 403);
        assert_eq!(status(port, "GET", "/api/audit", who).await, 403);
    }
    let (code, body, _) = send(ann, "PATCH", "/api/cameras/ward-a-1".into(), patch).await;
    assert_eq!((code, body["detect_fps"].as_f64()), (200, Some(4.0)), "{body}");
    let (code, body, _) = send(ann, "POST", "/api/users".into(), json!({ "name": "nina", "password": PASSWORD, "role": "viewer", "cameras": ["door"] })).await;
    assert_eq!(code, 201, "{body}");
    assert!(body.get("password").is_none() && !body.to_string().contains("argon2"), "{body}");
    let nina = sign_in(port, "nina", PASSWORD).await;
    let (_, body, _) = call(port, "GET", "/api/cameras", &nina, None).await;
    assert_eq!(camera_ids(&body, "cameras", "camera_id"), ["door"]);
    // Narrowed while signed in: the session sees the change at once.
    assert_eq!(send(ann, "PATCH", "/api/users/nina".into(), json!({ "cameras": ["nothing-*"] })).await.0, 200);
    assert_eq!(status(port, "GET", "/api/cameras/door", &nina).await, 404);
    assert_eq!(send(ann, "DELETE", "/api/users/nina".into(), Value::Null).await.0, 204);
    assert_eq!(status(port, "GET", "/api/cameras", &nina).await, 401, "a removed account's session ends");
    // The last admin stays one.
    assert_eq!(send(ann, "PATCH", "/api/users/ann".into(), json!({ "role": "viewer" })).await.0, 409);
    assert_eq!(send(ann, "DELETE", "/api/users/ann".into(), Value::Null).await.0, 409);
}

async fn the_audit_log_says_who_did_what(port: u16, ann: &Who) {
    let (code, body, _) = call(port, "GET", "/api/audit?limit=1000", ann, None).await;
    assert_eq!(code, 200, "{body}");
    let entries = body["entries"].as_array().unwrap();
    let has = |who: &str, action: &str, target: &str| {
        entries.iter().any(|e| e["who"] == who && e["action"] == action && e["target"].as_str().is_some_and(|t| t.contains(target)))
    };
    assert!(has("olga", "POST /api/events/{id}/ack", "/ack"), "{body}");
    assert!(has("olga", "POST /api/cameras/{camera_id}/snooze", "/api/cameras/ward-a-1/snooze"), "{body}");
    assert!(has("ann", "PATCH /api/cameras/{camera_id}", "/api/cameras/ward-a-1"), "{body}");
    assert!(has("ann", "POST /api/users", "/api/users"), "{body}");
    assert!(has("ann", "DELETE /api/users/{name}", "/api/users/nina"), "{body}");
    assert!(has("vic", "sign in", "127.0.0.1"), "{body}");
    // What changed, by field name, never a value: no password in the log.
    let patch = entries.iter().find(|e| e["action"] == "PATCH /api/cameras/{camera_id}").unwrap();
    assert!(patch["detail"].as_str().unwrap().contains("detect_fps"), "{patch}");
    assert!(!body.to_string().contains(PASSWORD));
    // Refused changes are not changes.
    assert!(!entries.iter().any(|e| e["who"] == "vic" && e["action"] != "sign in"), "{body}");
}

#[actix_web::test]
async fn tokens_made_shown_once_used_and_revoked() {
    let w = ward("tokens", "legacy-admin-token").await;
    let port = w.server.port;
    let ann = sign_in(port, "ann", PASSWORD).await;
    // The legacy api.token is an admin token.
    assert_eq!(status(port, "GET", "/api/users", &Who::bearer("legacy-admin-token")).await, 200);

    let (code, made, headers) = call(port, "POST", "/api/tokens", &ann, Some(json!({ "name": "ha", "role": "viewer", "cameras": ["door"], "expires_in_days": 30 }))).await;
    assert_eq!(code, 201, "{made}");
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    let token = made["token"].as_str().unwrap().to_string();
    let (_, listed, _) = call(port, "GET", "/api/tokens", &ann, None).await;
    assert_eq!(listed["tokens"][0]["name"], "ha");
    assert!(!listed.to_string().contains(&token), "listed, never shown again: {listed}");
    assert!(listed["tokens"][0]["expires_at"].as_f64().unwrap() > haven::events::now() + 29.0 * 86400.0);

    let (code, body, _) = call(port, "GET", "/api/cameras", &Who::bearer(&token), None).await;
    assert_eq!((code, camera_ids(&body, "cameras", "camera_id")), (200, vec!["door".to_string()]));
    // As ?token= where a header cannot be set (a reader's <img>), for reads only.
    assert_eq!(status(port, "GET", &format!("/api/cameras/door?token={token}"), &Who::nobody()).await, 200);
    assert_eq!(status(port, "GET", &format!("/api/cameras/ward-a-1?token={token}"), &Who::nobody()).await, 404);
    assert_eq!(status(port, "POST", "/api/cameras/door/snooze", &Who::bearer(&token)).await, 403);
    let alerts = Viewer::connect_with(&format!("ws://127.0.0.1:{port}/ws/alerts"), Some(("Authorization", &format!("Bearer {token}")))).await.unwrap();
    alerts.close().await;

    // Stray whitespace, a token cut short, another case: refused, never matched loosely.
    for bad in [format!("Bearer  {token}"), format!("Bearer {token} x"), format!("Bearer {}", &token[..token.len() - 1]), format!("bearer {token}"), format!("Bearer {}", token.to_uppercase())] {
        let who = Who { cookie: None, authorization: Some(bad.clone()) };
        let (code, body, _) = call(port, "GET", "/api/cameras", &who, None).await;
        assert_eq!(code, 401, "{bad:?}: {body}");
        assert!(!body.to_string().contains(&token[10..]), "{body}");
    }
    assert_eq!(status(port, "POST", "/api/tokens", &Who::bearer(&token)).await, 403);

    assert_eq!(status(port, "DELETE", "/api/tokens/ha", &ann).await, 204);
    assert_eq!(status(port, "GET", "/api/cameras", &Who::bearer(&token)).await, 401, "revoked");
    assert_eq!(status(port, "DELETE", "/api/tokens/ha", &ann).await, 404);
    // An expired one (made straight in the store, as if 0 days ago).
    let store = AccountStore::open(&w.data_dir).unwrap();
    let (expired, _) = store.add_token("old", Role::Admin, &Scope::all(), Some(0), "test").unwrap();
    assert_eq!(status(port, "GET", "/api/cameras", &Who::bearer(&expired)).await, 401, "expired");
    let (code, _, _) = call(port, "POST", "/api/tokens", &ann, Some(json!({ "name": "x", "role": "god" }))).await;
    assert_eq!(code, 400);
    // The routes are described where clients look for them.
    let (_, doc, _) = call(port, "GET", "/api/openapi.json", &ann, None).await;
    for (path, methods) in [("/api/session", &["get", "post", "delete"][..]), ("/api/users", &["get", "post"]), ("/api/users/{name}", &["patch", "delete"]), ("/api/users/{name}/sessions", &["delete"]), ("/api/tokens", &["get", "post"]), ("/api/tokens/{name}", &["delete"]), ("/api/audit", &["get"])] {
        for m in methods {
            assert!(doc["paths"][path].get(m).is_some(), "openapi lacks {m} {path}");
        }
    }
    w.server.stop().await;
}

#[actix_web::test]
async fn hostile_sign_ins_and_sessions_are_refused() {
    let w = ward("hostile", "").await;
    let port = w.server.port;
    let post = |body: Value| async move { call(port, "POST", "/api/session", &Who::nobody(), Some(body)).await };

    // Wrong password and unknown name: one answer.
    let (code, wrong, _) = post(json!({ "name": "vic", "password": "not it at all" })).await;
    let (code2, unknown, _) = post(json!({ "name": "nobody", "password": "not it at all" })).await;
    assert_eq!((code, code2, &wrong), (401, 401, &unknown));
    // SQL-looking names are names like others: no account, no error.
    for name in ["' OR '1'='1", "vic'; DROP TABLE users;--", "vic\"--"] {
        let (code, body, _) = post(json!({ "name": name, "password": PASSWORD })).await;
        assert_eq!(code, 401, "{name}: {body}");
    }
    let ann = sign_in(port, "ann", PASSWORD).await;
    let (code, body, _) = call(port, "POST", "/api/users", &ann, Some(json!({ "name": "x'; DROP TABLE users;--", "password": PASSWORD, "role": "admin" }))).await;
    assert_eq!(code, 400, "{body}");
    // 10 kB of password: refused unhashed, as a sign-in and as a new password.
    let long = "p".repeat(10_000);
    assert_eq!(post(json!({ "name": "ann", "password": long })).await.0, 400);
    let (code, body, _) = call(port, "POST", "/api/users", &ann, Some(json!({ "name": "long", "password": long, "role": "viewer" }))).await;
    assert_eq!(code, 400, "{body}");
    let (_, users, _) = call(port, "GET", "/api/users", &ann, None).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 3, "the accounts are intact: {users}");

    // Sessions: ended, expired, another server's, a made-up one.
    let vic = sign_in(port, "vic", PASSWORD).await;
    assert_eq!(status(port, "GET", "/api/cameras", &vic).await, 200);
    assert_eq!(status(port, "DELETE", "/api/session", &vic).await, 204);
    assert_eq!(status(port, "GET", "/api/cameras", &vic).await, 401, "signed out");
    let store = AccountStore::open(&w.data_dir).unwrap();
    let (expired, _) = store.create_session("vic", -0.01).unwrap();
    let expired = Who { cookie: Some(format!("haven_session={expired}")), authorization: None };
    assert_eq!(status(port, "GET", "/api/cameras", &expired).await, 401, "expired");
    let other = ward("hostile-other", "").await;
    let theirs = sign_in(other.server.port, "vic", PASSWORD).await;
    assert_eq!(status(other.server.port, "GET", "/api/cameras", &theirs).await, 200);
    let (code, body, _) = call(port, "GET", "/api/cameras", &theirs, None).await;
    assert_eq!(code, 401, "another server's session: {body}");
    other.server.stop().await;
    let made_up = Who { cookie: Some("haven_session=' OR 1=1 --".into()), authorization: None };
    assert_eq!(status(port, "GET", "/api/cameras", &made_up).await, 401);
    // An admin signs an account out everywhere.
    let vic = sign_in(port, "vic", PASSWORD).await;
    assert_eq!(status(port, "DELETE", "/api/users/vic/sessions", &vic).await, 403);
    let (code, body, _) = call(port, "DELETE", "/api/users/vic/sessions", &ann, None).await;
    assert_eq!((code, body["sessions_ended"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(status(port, "GET", "/api/cameras", &vic).await, 401, "revoked by an admin");
    assert_eq!(status(port, "DELETE", "/api/users/nobody/sessions", &ann).await, 404);
    // A new password ends the sessions made with the old one.
    let vic = sign_in(port, "vic", PASSWORD).await;
    assert_eq!(call(port, "PATCH", "/api/users/vic", &ann, Some(json!({ "password": "a new one, long" }))).await.0, 200);
    assert_eq!(status(port, "GET", "/api/cameras", &vic).await, 401);
    sign_in(port, "vic", "a new one, long").await;
    w.server.stop().await;
}

/// Ten failures in a minute for an account, or from an address, and the eleventh attempt is refused
/// (429) without its password being looked at.
#[actix_web::test]
async fn the_eleventh_failed_sign_in_in_a_minute_is_refused() {
    let w = ward("throttle", "").await;
    let port = w.server.port;
    let post = |body: Value| async move { call(port, "POST", "/api/session", &Who::nobody(), Some(body)).await };
    for i in 0..10 {
        assert_eq!(post(json!({ "name": "olga", "password": format!("guess {i}") })).await.0, 401, "attempt {}", i + 1);
    }
    let (code, body, headers) = post(json!({ "name": "olga", "password": PASSWORD })).await;
    assert_eq!(code, 429, "the right password, too late: {body}");
    assert!(headers.get("retry-after").unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // The address has used up its failures too: another account from it waits as well.
    assert_eq!(post(json!({ "name": "vic", "password": PASSWORD })).await.0, 429);
    w.server.stop().await;
}

/// A sign-in through the proxy HAVEN trusts (`[auth] trusted_proxies`), which names the client in
/// `X-Forwarded-For`.
async fn sign_in_from(port: u16, client: &str, name: &str, password: &str) -> u16 {
    let res = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/session"))
        .insert_header(("X-Forwarded-For", client))
        .send_json(&json!({ "name": name, "password": password }))
        .await
        .unwrap();
    res.status().as_u16()
}

/// Behind a reverse proxy every client arrives from the proxy's address: with the proxy trusted, the
/// throttle counts each client by the address the proxy forwards, so one client's failures do not
/// lock out the others; a server that trusts no proxy ignores the header (a client cannot choose
/// the address it is counted by).
#[actix_web::test]
async fn behind_a_trusted_proxy_the_throttle_counts_each_client() {
    let w = ward_with("proxy", "", |s| s.auth.trusted_proxies = vec!["127.0.0.1".into()]).await;
    let port = w.server.port;
    for i in 0..10 {
        // different (unknown) accounts: only the address's count grows
        assert_eq!(sign_in_from(port, "203.0.113.7", &format!("guess{i}"), "nope").await, 401);
    }
    assert_eq!(sign_in_from(port, "203.0.113.7", "vic", PASSWORD).await, 429, "the guesser's address is refused");
    assert_eq!(sign_in_from(port, "198.51.100.2", "vic", PASSWORD).await, 200, "another client through the same proxy");
    // A forged left-most entry does not help the guesser: the proxy appends the real address.
    assert_eq!(sign_in_from(port, "198.51.100.2, 203.0.113.7", "vic", PASSWORD).await, 429);
    let ann = sign_in(port, "ann", PASSWORD).await;
    let (_, audit, _) = call(port, "GET", "/api/audit?limit=100", &ann, None).await;
    let signed = audit["entries"].as_array().unwrap().iter().any(|e| e["who"] == "vic" && e["target"].as_str().is_some_and(|t| t.contains("198.51.100.2")));
    assert!(signed, "the audit log names the client, not the proxy: {audit}");
    w.server.stop().await;

    let w = ward("no-proxy", "").await;
    let port = w.server.port;
    for i in 0..10 {
        assert_eq!(sign_in_from(port, &format!("203.0.113.{i}"), &format!("guess{i}"), "nope").await, 401);
    }
    assert_eq!(sign_in_from(port, "198.51.100.2", "vic", PASSWORD).await, 429, "an untrusted header is ignored");
    w.server.stop().await;
}

#[actix_web::test]
async fn the_session_cookie_is_http_only_strict_and_secure_behind_tls() {
    let w = ward("cookie", "").await;
    let port = w.server.port;
    let body = json!({ "name": "vic", "password": PASSWORD });
    for (proto, secure) in [(None, false), (Some("https"), true)] {
        let mut req = awc::Client::new().post(format!("http://127.0.0.1:{port}/api/session"));
        if let Some(p) = proto {
            req = req.insert_header(("X-Forwarded-Proto", p));
        }
        let res = req.send_json(&body).await.unwrap();
        let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
        assert_eq!(cookie.contains("Secure"), secure, "{cookie}");
    }
    w.server.stop().await;
}

/// `haven user add` and `haven token create`, the real binary, the password on stdin.
#[actix_web::test]
async fn the_command_line_makes_accounts_and_tokens_the_server_takes() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let s = Scratch::new("accounts-cli");
    let data = s.path("data");
    let file = s.path("settings.toml");
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let text = text.replace("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", data.display()));
    assert!(text.contains(&data.display().to_string()), "the shipped settings' data_dir moved");
    std::fs::write(&file, text).unwrap();
    let haven = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_haven"))
            .args(["--settings", file.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out, err) = haven(&["user", "add", "ann", "--role", "admin"], &format!("{PASSWORD}\n"));
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = haven(&["user", "add", "vic", "--role", "viewer", "--cameras", "ward-a-*,door"], "short\n");
    assert_eq!(code, Some(2), "a short password: {err}");
    let (code, _, _) = haven(&["user", "add", "vic", "--role", "viewer", "--password", PASSWORD], "");
    assert_eq!(code, Some(2), "no password on the command line");
    let (code, _, _) = haven(&["user", "add", "ann", "--role", "admin"], &format!("{PASSWORD}\n"));
    assert_eq!(code, Some(2), "taken");
    let (code, out, _) = haven(&["user", "list"], "");
    assert_eq!((code, out.as_str()), (Some(0), "ann\tadmin\tall\n"));
    let (code, token, err) = haven(&["token", "create", "ha", "--role", "viewer", "--expires-in-days", "7"], "");
    assert_eq!(code, Some(0), "{err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("haven_") && err.contains("shown once"), "{token} {err}");

    let mut settings = settings(vec![]);
    settings.events.data_dir = data.clone();
    let server = TestServer::start(settings, None).await;
    let ann = sign_in(server.port, "ann", PASSWORD).await;
    assert_eq!(status(server.port, "GET", "/api/users", &ann).await, 200);
    assert_eq!(status(server.port, "GET", "/api/cameras", &Who::bearer(&token)).await, 200);
    // Revoked from the command line while the server runs.
    assert_eq!(haven(&["token", "revoke", "ha"], "").0, Some(0));
    assert_eq!(status(server.port, "GET", "/api/cameras", &Who::bearer(&token)).await, 401);
    assert_eq!(haven(&["user", "passwd", "ann"], "another password\n").0, Some(0));
    assert_eq!(status(server.port, "GET", "/api/users", &ann).await, 401, "a new password ends the sessions");
    server.stop().await;
}

/// A server nobody has to sign in to stays on loopback; an account or a token lets it out.
#[actix_web::test]
async fn an_open_server_refuses_to_bind_beyond_loopback() {
    let mut open = settings(vec![]);
    open.server.bind = "0.0.0.0:0".into();
    let err = haven::Application::build(open.clone(), None::<std::sync::Arc<dyn haven::inference::AiEngine>>).await.err().expect("refused");
    assert!(err.to_string().contains("haven user add") && err.to_string().contains("not a loopback address"), "{err}");
    // Open on loopback: a token it does not know changes nothing, as before accounts.
    let mut local = open.clone();
    local.server.bind = "127.0.0.1:0".into();
    let server = TestServer::start(local, None).await;
    assert_eq!(status(server.port, "POST", "/api/cameras/x/snooze", &Who::bearer("stale")).await, 400, "past the gate: the body is checked");
    server.stop().await;
    let mut with_token = open;
    with_token.api.token = "some-token".into();
    let server = TestServer::start(with_token.clone(), None).await;
    assert_eq!(status(server.port, "GET", "/api/engine", &Who::nobody()).await, 200, "reads stay open with api.token alone");
    let basic = Who { cookie: None, authorization: Some("Basic YTpi".into()) };
    assert_eq!(status(server.port, "GET", "/api/engine", &basic).await, 200, "another scheme's header is not a wrong token");
    assert_eq!(status(server.port, "POST", "/api/cameras/x/snooze", &basic).await, 401);
    server.stop().await;
    // Protected reads without accounts: the pages still load (they ask for the token), not /login.
    let mut protected = with_token;
    protected.api.protect_reads = true;
    let server = TestServer::start(protected, None).await;
    assert_eq!(status(server.port, "GET", "/api/engine", &Who::nobody()).await, 401);
    for page in ["/", "/events"] {
        assert_eq!(status(server.port, "GET", page, &Who::nobody()).await, 200, "{page}");
    }
    server.stop().await;
}

/// Nothing a hostile caller sends shows up in the real binary's log: not a password, not a token.
#[actix_web::test]
async fn failed_sign_ins_are_logged_without_the_password() {
    let s = Scratch::new("accounts-log");
    let data = s.path("data");
    add_accounts(&data);
    let env = [("HAVEN__SERVER__BIND", "127.0.0.1:0"), ("HAVEN__EVENTS__DATA_DIR", data.to_str().unwrap()), ("HAVEN__MODEL__ENABLED", "false"), ("HAVEN__MODELS__FALL__ENABLED", "false")];
    let mut haven = Running::start("settings/default.toml", &env);
    let port = haven.port();
    haven.expect_log("accounts: every route but the login page needs a session or a token", 10 * SECOND);
    let secret = "hunter2-never-logged";
    let (code, body, _) = call(port, "POST", "/api/session", &Who::nobody(), Some(json!({ "name": "vic", "password": secret }))).await;
    assert_eq!(code, 401);
    assert!(!body.to_string().contains(secret));
    let (code, _, _) = call(port, "POST", "/api/session", &Who::nobody(), Some(json!({ "name": "mallory\nforged line", "password": secret }))).await;
    assert_eq!(code, 401);
    let bogus = "haven_bogusTokenValue0123456789";
    assert_eq!(status(port, "GET", "/api/cameras", &Who::bearer(bogus)).await, 401);
    let line = haven.expect_log("sign-in refused: wrong name or password for account \"vic\" from 127.0.0.1", 10 * SECOND);
    let log = haven.log_so_far(SECOND);
    assert!(!log.contains(secret) && !log.contains(bogus) && !log.contains(PASSWORD), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("forged line")), "a name cannot forge a log line: {log}");
    let _ = line;
}
