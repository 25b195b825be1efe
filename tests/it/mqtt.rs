//! MQTT, Home Assistant's way, end to end: a real `mosquitto` started here on a free loopback port,
//! the real HAVEN (in this process, or the `haven` binary where it must be killed), and a real MQTT
//! client subscribed to everything, as Home Assistant would be. Without `mosquitto` the tests say
//! so, and fail when `CI` is set (scripts/setup.sh installs it).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event as Net, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::events::{person_at, write_fall_video_lying, write_video};
use crate::pose::pose_engine;
use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

/// `mosquitto`'s path, or `None` with the reason printed (a failure when `CI` is set).
pub(crate) fn mosquitto() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "mosquitto is not installed (scripts/setup.sh installs it); CI is set, so this fails");
        eprintln!("SKIPPED: mosquitto is not installed (scripts/setup.sh installs it)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A mosquitto on loopback, anonymous or with one user (a password file made by
/// `mosquitto_passwd -b`); killed on drop.
pub(crate) struct Broker {
    child: Child,
    passwords: PathBuf,
}

impl Broker {
    pub(crate) fn start(bin: &Path, dir: &Path, port: u16, user: Option<(&str, &str)>) -> Self {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        let passwords = dir.join(format!("passwd-{port}"));
        let mut text = format!("listener {port} 127.0.0.1\npersistence false\n");
        if std::env::var("USER").as_deref() == Ok("root") || Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n") {
            text += "user root\n"; // else mosquitto drops to a user that cannot read the scratch files
        }
        match user {
            None => text += "allow_anonymous true\n",
            Some((name, password)) => {
                let made = Command::new("mosquitto_passwd").arg("-c").arg("-b").arg(&passwords).args([name, password]).status().expect("mosquitto_passwd runs");
                assert!(made.success(), "mosquitto_passwd failed");
                text += &format!("allow_anonymous false\npassword_file {}\n", passwords.display());
            }
        }
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("mosquitto starts");
        let deadline = Instant::now() + 20 * SECOND;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, passwords }
    }

    /// Lets another user in: into the password file, which mosquitto reads again on SIGHUP.
    fn add_user(&self, name: &str, password: &str) {
        let added = Command::new("mosquitto_passwd").arg("-b").arg(&self.passwords).args([name, password]).status().expect("mosquitto_passwd runs");
        assert!(added.success(), "mosquitto_passwd failed");
        assert!(Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().unwrap().success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message the watcher saw.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
}

impl Msg {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// A real MQTT client subscribed to every topic, as Home Assistant is to its part; it keeps
/// reconnecting while the broker is away.
pub(crate) struct Watcher {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Msg>,
    pub(crate) seen: Vec<Msg>,
}

impl Watcher {
    pub(crate) fn connect(port: u16, user: Option<(&str, &str)>) -> Self {
        let mut options = MqttOptions::new(format!("watcher-{port}"), "127.0.0.1", port);
        options.set_max_packet_size(16 << 20, 16 << 20);
        if let Some((name, password)) = user {
            options.set_credentials(name, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let subscriber = client.clone();
        actix_web::rt::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Net::Incoming(Packet::ConnAck(_))) => {
                        let _ = subscriber.subscribe("#", QoS::AtLeastOnce).await;
                    }
                    Ok(Net::Incoming(Packet::Publish(p))) => {
                        if tx.send(Msg { topic: p.topic, payload: p.payload.to_vec() }).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => actix_web::rt::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Watcher { client, rx, seen: Vec::new() }
    }

    /// The first message (seen so far or to come) on `topic` for which `pred` holds.
    pub(crate) async fn expect(&mut self, topic: &str, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Msg {
        self.expect_from(0, topic, timeout, pred).await.1
    }

    /// The first such message from the `from`th seen on, with its place.
    pub(crate) async fn expect_from(&mut self, from: usize, topic: &str, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> (usize, Msg) {
        match self.find(from, topic, timeout, pred).await {
            Some(at) => (at, self.seen[at].clone()),
            None => {
                let on: Vec<String> = self.seen.iter().filter(|m| m.topic == topic).map(|m| m.text().chars().take(300).collect()).collect();
                panic!("no such message on {topic} within {timeout:?}; seen there: {on:#?}")
            }
        }
    }

    async fn find(&mut self, from: usize, topic: &str, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut checked = from;
        loop {
            if let Some(i) = self.seen.iter().skip(checked).position(|m| m.topic == topic && pred(m)) {
                return Some(checked + i);
            }
            checked = checked.max(self.seen.len());
            let left = deadline.checked_duration_since(Instant::now())?;
            if let Ok(Some(m)) = tokio::time::timeout(left.min(SECOND), self.rx.recv()).await {
                self.seen.push(m);
            }
        }
    }

    /// Forgets every message seen or received so far.
    fn forget(&mut self) {
        while self.rx.try_recv().is_ok() {}
        self.seen.clear();
    }

    /// Returns once the watcher's subscription works: it hears its own probe.
    pub(crate) async fn subscribed(&mut self) {
        let deadline = Instant::now() + 30 * SECOND;
        while self.find(0, "probe", Duration::from_millis(500), |_| true).await.is_none() {
            assert!(Instant::now() < deadline, "the watcher did not hear its own probe within 30 s");
            self.send("probe", "1").await;
        }
    }

    pub(crate) async fn send(&self, topic: &str, payload: &str) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.unwrap();
    }
}

/// Each of a camera's four discovery configs, valid, naming the availability topic and the camera
/// as its device.
async fn expect_discovery(watcher: &mut Watcher, camera: &str) {
    for (component, thing) in [("binary_sensor", "fall"), ("sensor", "people"), ("switch", "ai"), ("camera", "snapshot")] {
        let topic = format!("homeassistant/{component}/haven_{camera}_{thing}/config");
        let config = watcher.expect(&topic, 30 * SECOND, |m| !m.payload.is_empty()).await.json();
        assert_eq!(config["unique_id"], format!("haven_{camera}_{thing}"), "{config}");
        assert_eq!(config["availability_topic"], "haven/available", "{config}");
        assert_eq!(config["device"]["name"], camera, "{config}");
        assert!(config["device"]["identifiers"][0].is_string(), "{config}");
    }
}

/// A person standing still for 30 s (raises person_detected at once), and a plain clip.
fn cameras(s: &Scratch) -> Vec<haven::settings::CameraConfig> {
    let video = s.path("standing.mp4");
    write_video(&video, std::iter::repeat_n(Some(person_at(0.0)), 300));
    let mut lobby = camera("lobby", &video);
    lobby.ai_enabled = true;
    lobby.loop_video = false;
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, 4.0, Some(320));
    vec![lobby, camera("door", &clip)]
}

#[actix_web::test]
async fn home_assistant_sees_haven_its_cameras_states_and_events_and_switches_ai() {
    let Some(bin) = mosquitto() else { return };
    let s = Scratch::new("mqtt-ha");
    let port = free_port();
    let _broker = Broker::start(&bin, &s.0, port, None);
    let mut watcher = Watcher::connect(port, None);
    watcher.subscribed().await;
    let mut settings = settings(cameras(&s));
    settings.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    let server = TestServer::start(settings, Some(pose_engine(640, 480))).await;

    watcher.expect("haven/available", 30 * SECOND, |m| m.text() == "online").await;
    expect_discovery(&mut watcher, "lobby").await;
    expect_discovery(&mut watcher, "door").await;
    watcher.expect("haven/door/ai", 30 * SECOND, |m| m.text() == "OFF").await;
    watcher.expect("haven/door/fall", 30 * SECOND, |m| m.text() == "OFF").await;
    watcher.expect("haven/lobby/people", 60 * SECOND, |m| m.text() == "1").await;

    // The person is an event, as /api/events gives it, and its snapshot feeds the camera entity.
    let new = watcher.expect("haven/events", 60 * SECOND, |m| m.json()["type"] == "new").await.json();
    assert_eq!((new["after"]["kind"].as_str(), new["after"]["camera_id"].as_str()), (Some("person_detected"), Some("lobby")), "{new}");
    assert!(new["before"].is_null(), "{new}");
    let id = new["after"]["id"].as_i64().expect("a stored event");
    let (_, stored) = server.get(&format!("/api/events/{id}")).await;
    assert_eq!((&stored["started_at"], &stored["kind"]), (&new["after"]["started_at"], &new["after"]["kind"]));
    // With its snapshot: already in `new` when the snapshot was written first, else an `update`.
    let shot = watcher.expect("haven/events", 60 * SECOND, |m| m.json()["after"]["id"] == id && m.json()["after"]["snapshot_path"].is_string()).await.json();
    assert!(shot["type"] == "new" || (shot["type"] == "update" && shot["before"]["snapshot_path"].is_null()), "{shot}");
    let jpeg = watcher.expect("haven/lobby/snapshot", 30 * SECOND, |m| !m.payload.is_empty()).await;
    assert_eq!(&jpeg.payload[..2], b"\xff\xd8", "a JPEG");

    // The AI switch: as PATCH ai_enabled, seen by the API and published back.
    watcher.send("haven/lobby/ai/set", "OFF").await;
    server.wait_for("lobby", 30 * SECOND, "AI off", |st| st["ai_enabled"] == false).await;
    watcher.expect("haven/lobby/ai", 30 * SECOND, |m| m.text() == "OFF").await;
    let (_, audit) = server.get("/api/audit").await;
    let by_mqtt = audit["entries"].as_array().unwrap().iter().find(|e| e["who"] == "mqtt" && e["action"] == "ai/set");
    assert_eq!(by_mqtt.map(|e| (e["target"].clone(), e["detail"].clone())), Some(("/api/cameras/lobby".into(), "OFF".into())), "{audit}");
    // Snooze is kept (and shown in the status) for the notifications.
    watcher.send("haven/door/snooze/set", "15").await;
    watcher.expect("haven/door/status", 30 * SECOND, |m| m.json()["snoozed_until"].is_number()).await;

    // A camera removed at run time loses its entities (empty retained configs).
    let res = awc::Client::new().delete(server.url("/api/cameras/door")).send().await.unwrap();
    assert!(res.status().is_success(), "{res:?}");
    watcher.expect("homeassistant/switch/haven_door_ai/config", 30 * SECOND, |m| m.payload.is_empty()).await;

    let (_, link) = server.get("/api/mqtt").await;
    assert_eq!((link["enabled"].as_bool(), link["connected"].as_bool()), (Some(true), Some(true)), "{link}");
    assert_eq!(link["broker"], format!("mqtt://127.0.0.1:{port}"));
    assert!(link["published"].as_u64().unwrap() > 10 && link["dropped"] == 0, "{link}");
    let metrics = awc::Client::new().get(server.url("/metrics")).send().await.unwrap().body().limit(1 << 22).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("\nhaven_mqtt_connected 1\n") && metrics.contains("\nhaven_mqtt_dropped_total 0\n"), "{metrics}");

    // A clean stop says so.
    server.stop().await;
    watcher.expect("haven/available", 30 * SECOND, |m| m.text() == "offline").await;
}

#[actix_web::test]
async fn event_changes_while_the_broker_refuses_haven_wait_and_go_out_once_it_lets_haven_in() {
    let Some(bin) = mosquitto() else { return };
    let s = Scratch::new("mqtt-queue");
    let port = free_port();
    let broker = Broker::start(&bin, &s.0, port, Some(("ha", "ha-password")));
    let mut watcher = Watcher::connect(port, Some(("ha", "ha-password")));
    watcher.subscribed().await;
    let password_file = s.path("haven-password");
    std::fs::write(&password_file, "haven-password").unwrap();
    let mut settings = settings(cameras(&s).into_iter().take(1).collect());
    settings.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    settings.mqtt.username = "haven".into();
    settings.mqtt.password_file = Some(password_file);
    let server = TestServer::start(settings, Some(pose_engine(640, 480))).await;

    // The person is seen while the broker refuses HAVEN: the change waits in HAVEN's queue.
    let deadline = Instant::now() + 60 * SECOND;
    let id = loop {
        let (_, found) = server.get("/api/events?camera=lobby&kind=person_detected").await;
        if let Some(id) = found["events"][0]["id"].as_i64() {
            break id;
        }
        assert!(Instant::now() < deadline, "no person_detected event within 60 s");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, link) = server.get("/api/mqtt").await;
    assert!(link["connected"] == false && link["queued"].as_u64() >= Some(1), "{link}");

    // Let in, HAVEN reconnects (with backoff) and sends it, in order, nothing dropped.
    broker.add_user("haven", "haven-password");
    watcher.expect("haven/available", 90 * SECOND, |m| m.text() == "online").await;
    let new = watcher.expect("haven/events", 30 * SECOND, |m| m.json()["type"] == "new").await.json();
    assert_eq!(new["after"]["id"], id, "the first change sent is the one that waited: {new}");
    let (_, link) = server.get("/api/mqtt").await;
    assert_eq!((link["connected"].as_bool(), link["dropped"].as_u64()), (Some(true), Some(0)), "{link}");
    server.stop().await;
}

#[actix_web::test]
async fn a_fall_turns_its_sensor_on_then_off_and_each_of_its_changes_follows_the_last() {
    let Some(bin) = mosquitto() else { return };
    let s = Scratch::new("mqtt-fall");
    let port = free_port();
    let _broker = Broker::start(&bin, &s.0, port, None);
    let mut watcher = Watcher::connect(port, None);
    watcher.subscribed().await;
    let video = s.path("fall.mp4");
    write_fall_video_lying(&video, 4.0, false);
    let mut ward = camera("ward", &video);
    ward.ai_enabled = true;
    ward.loop_video = false;
    let mut settings = settings(vec![ward]);
    settings.events.pre_roll_secs = 2.0;
    settings.events.post_roll_secs = 1.0;
    settings.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    let server = TestServer::start(settings, Some(pose_engine(640, 480))).await;

    let (on, _) = watcher.expect_from(0, "haven/ward/fall", 90 * SECOND, |m| m.text() == "ON").await;
    watcher.expect_from(on + 1, "haven/ward/fall", 60 * SECOND, |m| m.text() == "OFF").await;
    // The fall: new, then updates (snapshot, clip) and its end, each `before` the previous `after`.
    let is_fall = |m: &Msg| m.json()["after"]["kind"] == "fall";
    watcher.expect("haven/events", 60 * SECOND, |m| is_fall(m) && m.json()["after"]["clip_status"] == "ready").await;
    let changes: Vec<Value> = watcher.seen.iter().filter(|m| m.topic == "haven/events" && is_fall(m)).map(Msg::json).collect();
    let types: Vec<&str> = changes.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!((types[0], types.contains(&"end")), ("new", true), "{changes:#?}");
    assert!(changes[0]["before"].is_null(), "{changes:#?}");
    for pair in changes.windows(2) {
        assert_eq!(pair[1]["before"], pair[0]["after"], "{changes:#?}");
    }
    let (_, stored) = server.get(&format!("/api/events/{}", changes[0]["after"]["id"])).await;
    assert_eq!(changes.last().unwrap()["after"], stored, "the last change is the event as the API gives it");
    server.stop().await;
}

/// The shipped settings (three demo cameras, AI off) with `[mqtt]` from the environment.
fn start_haven(s: &Scratch, port: u16, extra: &[(&str, &str)]) -> Running {
    let url = format!("mqtt://127.0.0.1:{port}");
    let events = s.path("events").display().to_string();
    let mut env = vec![("HAVEN__SERVER__BIND", "127.0.0.1:0"), ("HAVEN__MODEL__ENABLED", "false"), ("HAVEN__MQTT__URL", url.as_str()), ("HAVEN__EVENTS__DATA_DIR", events.as_str())];
    env.extend_from_slice(extra);
    Running::start("settings/default.toml", &env)
}

#[actix_web::test]
async fn a_broker_started_late_or_restarted_gets_everything_again_and_the_last_will_on_kill_9() {
    let Some(bin) = mosquitto() else { return };
    let s = Scratch::new("mqtt-late");
    let port = free_port();
    let secret = "s3cret-Pa55word";
    let password_file = s.path("mqtt-password");
    std::fs::write(&password_file, format!("{secret}\n")).unwrap();
    let password_path = password_file.display().to_string();
    let mut haven = start_haven(&s, port, &[("HAVEN__MQTT__USERNAME", "haven"), ("HAVEN__MQTT__PASSWORD_FILE", &password_path)]);
    let http = haven.port();
    haven.expect_log("mqtt: cannot reach the broker", 30 * SECOND);
    let get = |path: &'static str| async move {
        let mut res = awc::Client::new().get(format!("http://127.0.0.1:{http}{path}")).send().await.unwrap();
        String::from_utf8_lossy(&res.body().limit(1 << 22).await.unwrap()).into_owned()
    };
    let link: Value = serde_json::from_str(&get("/api/mqtt").await).unwrap();
    assert_eq!(link["connected"], false, "{link}");

    // The broker comes: HAVEN connects and publishes availability, discovery and states.
    let broker = Broker::start(&bin, &s.0, port, Some(("haven", secret)));
    let mut watcher = Watcher::connect(port, Some(("haven", secret)));
    watcher.expect("haven/available", 60 * SECOND, |m| m.text() == "online").await;
    expect_discovery(&mut watcher, "cam1").await;
    watcher.expect("haven/cam3/people", 30 * SECOND, |m| m.text() == "0").await;
    haven.expect_log("mqtt: connected to", 30 * SECOND);
    let link: Value = serde_json::from_str(&get("/api/mqtt").await).unwrap();
    assert_eq!(link["connected"], true, "{link}");

    // The password is never shown: not in the log, the API, the metrics.
    for shown in [get("/api/mqtt").await, get("/metrics").await, haven.log_so_far(Duration::from_millis(300))] {
        assert!(!shown.contains(secret), "the password leaked: {shown}");
    }

    // The broker restarts, every retained message lost: HAVEN reconnects and publishes them again.
    drop(broker);
    watcher.forget();
    let _broker = Broker::start(&bin, &s.0, port, Some(("haven", secret)));
    watcher.expect("haven/available", 60 * SECOND, |m| m.text() == "online").await;
    expect_discovery(&mut watcher, "cam2").await;
    watcher.expect("haven/cam2/status", 30 * SECOND, |m| m.json()["camera_id"] == "cam2").await;

    // Killed with -9: the broker publishes the last will.
    haven.child.kill().unwrap();
    haven.child.wait().unwrap();
    watcher.expect("haven/available", 30 * SECOND, |m| m.text() == "offline").await;
}

#[test]
fn a_bad_mqtt_url_or_an_unreadable_password_file_stops_start_up_naming_it() {
    let s = Scratch::new("mqtt-bad");
    let events = s.path("events");
    let run = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_haven"))
            .current_dir(repo())
            .args(["--settings", "settings/default.toml"])
            .env("HAVEN__SERVER__BIND", "127.0.0.1:0")
            .env("HAVEN__MODEL__ENABLED", "false")
            .env("HAVEN__EVENTS__DATA_DIR", &events)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let out = run(&[("HAVEN__MQTT__URL", "http://me:hidden@127.0.0.1:1883")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("mqtt.url ") && stderr.contains("mqtt://") && !stderr.contains("hidden"), "{stderr}");
    let out = run(&[("HAVEN__MQTT__URL", "mqtt://127.0.0.1:1"), ("HAVEN__MQTT__USERNAME", "u"), ("HAVEN__MQTT__PASSWORD_FILE", "/nonexistent/pw")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("mqtt.password_file"), "{stderr}");
}

/// The outbox's rows waiting for MQTT, oldest first.
fn mqtt_outbox(db: &Path) -> Vec<Value> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT payload FROM outbox WHERE target = 'mqtt' ORDER BY id").unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|r| serde_json::from_str(&r.unwrap()).unwrap()).collect()
}

#[actix_web::test]
async fn event_changes_waiting_for_a_broker_survive_a_kill_9_and_arrive_once_in_order() {
    let Some(bin) = mosquitto() else { return };
    let s = Scratch::new("mqtt-kill");
    let port = free_port();
    // One camera with people walking and AI on; the broker is not there yet.
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let head = &text[..text.find("\n[[cameras]]\n").unwrap()];
    let settings = s.path("settings.toml");
    std::fs::write(&settings, format!("{head}\n[[cameras]]\ncamera_id = \"cam1\"\nsource = \"data/1.mp4\"\nsource_type = \"video_file\"\nloop_video = true\nai_enabled = true\n")).unwrap();
    let url = format!("mqtt://127.0.0.1:{port}");
    let data_dir = s.path("events");
    let env = [("HAVEN__SERVER__BIND", "127.0.0.1:0"), ("HAVEN__EVENTS__DATA_DIR", data_dir.to_str().unwrap()), ("HAVEN__MQTT__URL", url.as_str())];
    let mut first = Running::start(settings.to_str().unwrap(), &env);
    let api = first.port();
    let deadline = Instant::now() + 90 * SECOND;
    loop {
        let link: Value = awc::Client::new().get(format!("http://127.0.0.1:{api}/api/mqtt")).send().await.unwrap().json().await.unwrap();
        if link["queued"].as_u64() >= Some(3) {
            assert_eq!(link["connected"], false, "{link}");
            break;
        }
        assert!(Instant::now() < deadline, "no event changes waiting for the broker: {link}");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(Command::new("kill").args(["-KILL", &first.child.id().to_string()]).status().unwrap().success());
    first.child.wait().unwrap();
    let waiting = mqtt_outbox(&data_dir.join("events.db"));
    assert!(waiting.len() >= 3 && waiting[0]["type"] == "new", "{waiting:#?}");

    // The broker comes, HAVEN is started again: what waited arrives first, in order, each once.
    let _broker = Broker::start(&bin, &s.0, port, None);
    let mut watcher = Watcher::connect(port, None);
    watcher.subscribed().await;
    let _second = Running::start(settings.to_str().unwrap(), &env);
    let last = waiting.last().unwrap().clone();
    watcher.expect("haven/events", 120 * SECOND, |m| m.json() == last).await;
    let got: Vec<Value> = watcher.seen.iter().filter(|m| m.topic == "haven/events").map(Msg::json).collect();
    assert!(got[..waiting.len()] == waiting[..], "oldest first, as written before the kill: {got:#?}");
    let distinct: std::collections::HashSet<String> = got.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), got.len(), "each once: {got:#?}");
    for pair in got.windows(2).filter(|p| p[0]["after"]["id"] == p[1]["after"]["id"]) {
        assert_ne!(pair[1]["type"], "new", "a `new` only first: {got:#?}");
    }
}

/// One mosquitto, two listeners: plain for the test's watcher, TLS (`cert`, `key`, then the
/// listener options `tls_options`) for HAVEN; listening on both when it returns (child, plain, tls).
fn tls_broker(bin: &Path, s: &Scratch, cert: &Path, key: &Path, tls_options: &str) -> (Child, u16, u16) {
    let (plain, tls) = (free_port(), free_port());
    let conf = s.path("mosquitto-tls.conf");
    let user = if Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n") { "user root\n" } else { "" };
    let text = format!(
        "{user}persistence false\nallow_anonymous true\nlistener {plain} 127.0.0.1\nlistener {tls} 127.0.0.1\ncertfile {}\nkeyfile {}\n{tls_options}",
        cert.display(),
        key.display()
    );
    std::fs::write(&conf, text).unwrap();
    let broker = Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + 20 * SECOND;
    while TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen on {tls}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, plain, tls)
}

#[actix_web::test]
async fn haven_reaches_a_broker_over_tls_and_refuses_one_whose_certificate_it_does_not_trust() {
    let Some(bin) = mosquitto() else { return };
    let s = Scratch::new("mqtt-tls");
    let (Some((cert, key)), Some((other, _))) = (certificate(&s.0, "broker"), certificate(&s.0, "other")) else { return };
    let (mut broker, plain, tls) = tls_broker(&bin, &s, &cert, &key, "");
    let mut watcher = Watcher::connect(plain, None);
    watcher.subscribed().await;

    // The system's roots (as rustls-native-certs reads them) are another certificate: no connection.
    std::env::set_var("SSL_CERT_FILE", &other);
    let mut settings = settings(vec![]);
    settings.mqtt.url = format!("mqtts://127.0.0.1:{tls}");
    let untrusting = TestServer::start(settings.clone(), None).await;
    actix_web::rt::time::sleep(3 * SECOND).await;
    let (_, link) = untrusting.get("/api/mqtt").await;
    assert_eq!(link["connected"], false, "{link}");
    assert!(watcher.seen.iter().all(|m| m.topic != "haven/available"), "nothing published over an untrusted connection");
    untrusting.stop().await;

    // They are the broker's: connected, online, over TLS.
    std::env::set_var("SSL_CERT_FILE", &cert);
    let server = TestServer::start(settings, None).await;
    watcher.expect("haven/available", 30 * SECOND, |m| m.text() == "online").await;
    let (_, link) = server.get("/api/mqtt").await;
    assert_eq!((link["connected"].as_bool(), link["broker"].as_str()), (Some(true), Some(format!("mqtts://127.0.0.1:{tls}").as_str())), "{link}");
    server.stop().await;
    let _ = broker.kill();
    let _ = broker.wait();
}

/// A broker with a private CA that asks every client for a certificate (mosquitto's
/// `require_certificate`): HAVEN trusts it through `mqtt.ca_file` alone (no system root), is refused
/// without a client certificate, and is let in with `client_cert_file` / `client_key_file`.
#[actix_web::test]
async fn haven_shows_its_client_certificate_to_a_broker_that_asks_for_one() {
    let Some(bin) = mosquitto() else { return };
    let s = Scratch::new("mqtt-mtls");
    let (Some((cert, key)), Some((client_cert, client_key))) = (certificate(&s.0, "broker"), certificate(&s.0, "client")) else { return };
    let asks = format!("cafile {}\nrequire_certificate true\n", client_cert.display());
    let (mut broker, plain, tls) = tls_broker(&bin, &s, &cert, &key, &asks);
    let mut watcher = Watcher::connect(plain, None);
    watcher.subscribed().await;

    let mut settings = settings(vec![]);
    settings.mqtt.url = format!("mqtts://127.0.0.1:{tls}");
    settings.mqtt.ca_file = Some(cert.clone());
    let anonymous = TestServer::start(settings.clone(), None).await;
    actix_web::rt::time::sleep(3 * SECOND).await;
    let (_, link) = anonymous.get("/api/mqtt").await;
    assert_eq!(link["connected"], false, "no client certificate, no connection: {link}");
    assert!(watcher.seen.iter().all(|m| m.topic != "haven/available"), "nothing published without a certificate");
    anonymous.stop().await;

    settings.mqtt.client_cert_file = Some(client_cert);
    settings.mqtt.client_key_file = Some(client_key.clone());
    let server = TestServer::start(settings, None).await;
    watcher.expect("haven/available", 30 * SECOND, |m| m.text() == "online").await;
    let (_, link) = server.get("/api/mqtt").await;
    assert_eq!(link["connected"], true, "{link}");
    let key_text = std::fs::read_to_string(&client_key).unwrap();
    let key_body = key_text.lines().nth(1).unwrap();
    assert!(!link.to_string().contains(key_body), "the key is never shown");
    server.stop().await;
    let _ = broker.kill();
    let _ = broker.wait();
}
