//! A HAVEN cluster on loopback: one real `nats-server` (JetStream on, started here on a free port)
//! and three real `haven` processes (kill -9 needs processes), six cameras on a short clip, AI off.
//! Skipped, with the reason printed, where nats-server is not installed (scripts/setup.sh installs it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join;
use serde_json::Value;

use crate::support::*;

/// Short leases keep the test short; failover takes about a lease plus a round (docs/scaling.md).
/// `HAVEN_TEST_LEASE_SECS` sets another (docs/scaling.md's figures at the default 6).
fn lease_secs() -> f64 {
    std::env::var("HAVEN_TEST_LEASE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(4.0)
}

fn nats_server() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: nats-server is not installed (scripts/setup.sh installs it)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A nats-server with JetStream, storing under the scratch directory; killed on drop.
struct Nats {
    child: Child,
    port: u16,
}

impl Nats {
    fn start(bin: &Path, dir: &Path) -> Self {
        Self::start_on(bin, dir, free_port())
    }

    fn start_on(bin: &Path, dir: &Path, port: u16) -> Self {
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats { child, port }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's settings file: the shipped one with a free port, AI off, its own event store, the
/// given cameras (seed) and a `[cluster]` section.
fn node_settings(s: &Scratch, name: &str, nats: u16, cameras: &[(String, PathBuf)]) -> String {
    node_settings_with(s, name, nats, cameras, false)
}

fn node_settings_with(s: &Scratch, name: &str, nats: u16, cameras: &[(String, PathBuf)], rebalance: bool) -> String {
    let configs: Vec<haven::settings::CameraConfig> = cameras.iter().map(|(id, clip)| camera(id, clip)).collect();
    node_settings_doc(s, name, &[nats], &configs, |doc| doc["cluster"]["rebalance"] = toml_edit::value(rebalance))
}

/// A node's settings file as `node_settings`, connected to every NATS server of `nats`, with the
/// given camera configurations, changed by `edit` last.
fn node_settings_doc(s: &Scratch, name: &str, nats: &[u16], cameras: &[haven::settings::CameraConfig], edit: impl FnOnce(&mut toml_edit::DocumentMut)) -> String {
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc["server"]["bind"] = toml_edit::value("127.0.0.1:0");
    doc["server"]["workers"] = toml_edit::value(2);
    doc["model"]["enabled"] = toml_edit::value(false);
    doc["events"]["data_dir"] = toml_edit::value(s.path(&format!("events-{name}")).display().to_string());
    let mut media = toml_edit::Array::new();
    media.push(s.0.display().to_string());
    doc["api"]["media_dirs"] = toml_edit::value(media);
    let mut list = toml_edit::ArrayOfTables::new();
    for config in cameras {
        list.push(toml_edit::ser::to_document(config).unwrap().as_table().clone());
    }
    doc.insert("cameras", toml_edit::Item::ArrayOfTables(list));
    let mut cluster = toml_edit::Table::new();
    if let [one] = nats {
        cluster["nats_url"] = toml_edit::value(format!("nats://127.0.0.1:{one}"));
    } else {
        let mut urls = toml_edit::Array::new();
        for port in nats {
            urls.push(format!("nats://127.0.0.1:{port}"));
        }
        cluster["nats_url"] = toml_edit::value(urls);
    }
    cluster["node_name"] = toml_edit::value(name);
    cluster["lease_secs"] = toml_edit::value(lease_secs());
    cluster["rebalance"] = toml_edit::value(false);
    doc.insert("cluster", toml_edit::Item::Table(cluster));
    edit(&mut doc);
    let path = s.path(&format!("{name}.toml"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path.display().to_string()
}

struct Node {
    name: String,
    settings: String,
    process: Running,
    port: u16,
}

impl Node {
    fn start(name: &str, settings: String) -> Self {
        let mut process = Running::start(&settings, &[]);
        let port = process.port();
        Node { name: name.to_string(), settings, process, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn ws(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.process.child.id().to_string()]).status().unwrap().success());
    }
}

async fn get_json(url: &str) -> Value {
    let mut res = awc::Client::new().get(url).timeout(Duration::from_secs(10)).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = res.body().limit(4 << 20).await.unwrap();
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

/// Camera id → owner, as a node lists them (`None`: no owner yet).
async fn owners(node: &Node) -> BTreeMap<String, Option<String>> {
    let list = get_json(&node.url("/api/cameras")).await;
    list["cameras"]
        .as_array()
        .map(|cams| cams.iter().map(|c| (c["camera_id"].as_str().unwrap().to_string(), c["owner"].as_str().map(str::to_string))).collect())
        .unwrap_or_default()
}

/// This node's own frames_processed per camera (its local counters, from /metrics).
async fn local_processed(node: &Node) -> HashMap<String, u64> {
    local_counter(node, "haven_camera_frames_processed_total").await
}

/// One of this node's per-camera counters, from /metrics.
async fn local_counter(node: &Node, metric: &str) -> HashMap<String, u64> {
    let prefix = format!("{metric}{{camera=\"");
    let mut res = awc::Client::new().get(node.url("/metrics")).timeout(Duration::from_secs(10)).send().await.unwrap();
    let text = String::from_utf8(res.body().limit(4 << 20).await.unwrap().to_vec()).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (id, value) = rest.split_once("\"} ")?;
            Some((id.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn cluster_view(node: &Node) -> Value {
    get_json(&node.url("/api/cluster")).await
}

/// Waits until every node lists exactly `ids`, each with an owner among `alive`, all agreeing.
async fn settled(nodes: &[&Node], ids: &[String], alive: &[&str], within: Duration) -> BTreeMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let mut views = Vec::new();
        for n in nodes {
            views.push(owners(n).await);
        }
        let first = &views[0];
        let complete = first.keys().cloned().collect::<Vec<_>>() == ids
            && first.values().all(|o| o.as_deref().is_some_and(|o| alive.contains(&o)))
            && views.iter().all(|v| v == first);
        if complete {
            return first.iter().map(|(k, v)| (k.clone(), v.clone().unwrap())).collect();
        }
        assert!(Instant::now() < deadline, "cameras not settled within {within:?}: {views:?}");
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
}

/// (seq, frame_index) of every frame a viewer gets in `window`.
async fn frames(viewer: &mut Viewer, window: Duration) -> Vec<(u64, u64)> {
    frames_aged(viewer, window).await.into_iter().map(|(seq, index, _)| (seq, index)).collect()
}

/// (seq, frame_index, ms from capture to arrival) of every frame a viewer gets in `window`.
async fn frames_aged(viewer: &mut Viewer, window: Duration) -> Vec<(u64, u64, f64)> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match viewer.next_event(left).await {
            Some(Event::Frame(v)) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
                let m = &v["metadata"];
                out.push((m["seq"].as_u64().unwrap(), m["frame_index"].as_u64().unwrap(), (now - m["timestamp"].as_f64().unwrap()) * 1000.0));
            }
            Some(Event::Closed(r)) => panic!("viewer closed: {r:?}"),
            None => break,
        }
    }
    out
}

/// Samples every node's own frames_processed: at no sample may two nodes have processed the same
/// camera since the previous one.
struct OwnershipCheck {
    last: HashMap<String, HashMap<String, u64>>,
    samples: usize,
}

impl OwnershipCheck {
    async fn sample(&mut self, nodes: &[&Node]) {
        let mut grew: HashMap<String, Vec<String>> = HashMap::new();
        for n in nodes {
            let now = local_processed(n).await;
            let before = self.last.entry(n.name.clone()).or_default();
            for (id, v) in &now {
                if before.get(id).is_some_and(|b| v > b) {
                    grew.entry(id.clone()).or_default().push(n.name.clone());
                }
            }
            *before = now;
        }
        for (id, who) in grew {
            assert!(who.len() <= 1, "camera {id} processed by {who:?} at once");
        }
        self.samples += 1;
    }

    /// Forgets a node (killed: its counters start again from zero when it comes back).
    fn forget(&mut self, name: &str) {
        self.last.remove(name);
    }
}

#[actix_web::test]
async fn three_nodes_share_six_cameras_fail_over_on_kill_9_relay_frames_and_rejoin_without_moving() {
    let Some(Setup { s, nats, ids, seed, .. }) = setup("cluster", 6, 6.0) else { return };

    // b and c first, then a with the six cameras: they spread over the three by rendezvous hashing.
    let b = Node::start("b", node_settings(&s, "b", nats.port, &[]));
    let c = Node::start("c", node_settings(&s, "c", nats.port, &[]));
    let a = Node::start("a", node_settings(&s, "a", nats.port, &seed));
    let mut nodes = vec![a, b, c];
    let all: Vec<&str> = vec!["a", "b", "c"];
    let placed = settled(&nodes.iter().collect::<Vec<_>>(), &ids, &all, Duration::from_secs(60)).await;
    eprintln!("placed: {placed:?}");
    let mut check = OwnershipCheck { last: HashMap::new(), samples: 0 };
    check.sample(&nodes.iter().collect::<Vec<_>>()).await;

    // The victim: the owner of cam1; the relay: another node.
    let cam = "cam1";
    let owner_name = placed[cam].clone();
    let oi = nodes.iter().position(|n| n.name == owner_name).unwrap();
    let ri = (oi + 1) % 3;
    let path = format!("/ws/stream/{cam}");

    // A viewer on the owner and one on a node that does not own the camera get the same frames.
    let mut on_owner = Viewer::connect(&nodes[oi].ws(&path)).await;
    let mut on_relay = Viewer::connect(&nodes[ri].ws(&path)).await;
    on_relay.next_frame(Duration::from_secs(20)).await;
    on_owner.next_frame(Duration::from_secs(20)).await;
    let (seen_owner, seen_relay) = join(frames_aged(&mut on_owner, Duration::from_secs(3)), frames_aged(&mut on_relay, Duration::from_secs(3))).await;
    let by_seq: HashMap<u64, u64> = seen_owner.iter().map(|(seq, index, _)| (*seq, *index)).collect();
    let common: Vec<_> = seen_relay.iter().filter(|(seq, _, _)| by_seq.contains_key(seq)).collect();
    assert!(common.len() >= 5, "few frames in common: owner {seen_owner:?}, relay {seen_relay:?}");
    for (seq, index, _) in &common {
        assert_eq!(by_seq[seq], *index, "seq {seq}: another frame through the relay");
    }
    let median = |v: &[(u64, u64, f64)]| {
        let mut ages: Vec<f64> = v.iter().map(|f| f.2).collect();
        ages.sort_by(f64::total_cmp);
        ages[ages.len() / 2]
    };
    eprintln!("capture to viewer, median: {:.1} ms on the owner, {:.1} ms through the relay ({} frames in common)", median(&seen_owner), median(&seen_relay), common.len());
    check.sample(&nodes.iter().collect::<Vec<_>>()).await;

    // A second viewer on the relaying node adds no second relay stream: the owner publishes each
    // packet once (published <= packets made), and the relay node receives what was published.
    let mut on_relay2 = Viewer::connect(&nodes[ri].ws(&path)).await;
    on_relay2.next_frame(Duration::from_secs(20)).await;
    let published = |v: &Value| v["relay_published"][cam].as_u64().unwrap_or(0);
    let received = |v: &Value| v["relay_received"][cam].as_u64().unwrap_or(0);
    let (owner0, relay0) = (cluster_view(&nodes[oi]).await, cluster_view(&nodes[ri]).await);
    let processed0 = local_processed(&nodes[oi]).await[cam];
    let (n1, n2) = join(frames(&mut on_relay, Duration::from_secs(3)), frames(&mut on_relay2, Duration::from_secs(3))).await;
    let (owner1, relay1) = (cluster_view(&nodes[oi]).await, cluster_view(&nodes[ri]).await);
    let processed1 = local_processed(&nodes[oi]).await[cam];
    let (sent, got, made) = (published(&owner1) - published(&owner0), received(&relay1) - received(&relay0), processed1 - processed0);
    let bytes = |v: &Value| v["relay_published_bytes"][cam].as_u64().unwrap_or(0);
    eprintln!(
        "2 relay viewers over 3 s: {} and {} frames; owner made {made} packets, published {sent} ({} bytes each on average); relay node received {got}",
        n1.len(),
        n2.len(),
        (bytes(&owner1) - bytes(&owner0)) / sent.max(1)
    );
    assert!(sent >= 5 && sent <= made + 2, "published {sent} for {made} packets: one relay stream, not one per viewer");
    assert!(got <= sent + 2, "received {got} of {sent} published");
    assert!(!n1.is_empty() && !n2.is_empty());
    on_relay2.close().await;
    on_owner.close().await;
    check.sample(&nodes.iter().collect::<Vec<_>>()).await;

    // kill -9 the owner: its cameras come back on the others within 10 s; the viewer on the relay
    // node sees a gap, not an error.
    let victim = nodes.remove(oi);
    let ri = if ri > oi { ri - 1 } else { ri };
    let lost: Vec<String> = placed.iter().filter(|(_, o)| **o == victim.name).map(|(id, _)| id.clone()).collect();
    victim.signal("-KILL");
    let killed = Instant::now();
    check.forget(&victim.name);
    // Frames already on their way may still come; then the gap; then frames from the new owner.
    let mut gap_ended = None;
    let mut last = Instant::now();
    while killed.elapsed() < Duration::from_secs(30) {
        match on_relay.next_event(Duration::from_secs(30)).await {
            Some(Event::Frame(_)) => {
                if last.elapsed() > Duration::from_secs(1) {
                    gap_ended = Some(killed.elapsed());
                    break;
                }
                last = Instant::now();
            }
            Some(Event::Closed(r)) => panic!("the relay viewer was closed during the failover: {r:?}"),
            None => break,
        }
    }
    let gap_ended = gap_ended.expect("frames again after the failover");
    eprintln!("failover: {cam}'s viewer on {} got frames again {:.1} s after kill -9", nodes[ri].name, gap_ended.as_secs_f64());
    let survivor_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let survivors: Vec<&str> = survivor_names.iter().map(String::as_str).collect();
    let after = settled(&nodes.iter().collect::<Vec<_>>(), &ids, &survivors, Duration::from_secs(20)).await;
    let moved_in = killed.elapsed();
    eprintln!("failover: {lost:?} owned by {:?} {:.1} s after kill -9", lost.iter().map(|id| &after[id]).collect::<Vec<_>>(), moved_in.as_secs_f64());
    assert!(gap_ended < Duration::from_secs(10), "{cam} streamed again only {gap_ended:?} after the kill");
    for id in ids.iter().filter(|id| !lost.contains(id)) {
        assert_eq!(after[id], placed[id], "{id} did not belong to the victim and must not move");
    }
    for _ in 0..4 {
        check.sample(&nodes.iter().collect::<Vec<_>>()).await;
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }

    // Restarted, the node rejoins (everyone sees it) and takes nothing back: no rebalance configured.
    let back = Node::start(&victim.name, victim.settings.clone());
    drop(victim);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let views = [cluster_view(&back).await, cluster_view(&nodes[0]).await, cluster_view(&nodes[1]).await];
        if views.iter().all(|v| v["live_nodes"].as_array().is_some_and(|l| l.len() == 3)) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node did not rejoin: {views:?}");
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
    actix_web::rt::time::sleep(Duration::from_secs_f64(lease_secs())).await;
    nodes.push(back);
    let rejoined = settled(&nodes.iter().collect::<Vec<_>>(), &ids, &survivors, Duration::from_secs(10)).await;
    assert_eq!(rejoined, after, "nothing moved back");
    let back = nodes.last().unwrap();
    assert_eq!(cluster_view(back).await["cameras_owned"], serde_json::json!([]));
    // ...and serves any camera through the relay.
    let mut on_back = Viewer::connect(&back.ws(&path)).await;
    assert_eq!(on_back.next_frame(Duration::from_secs(20)).await["metadata"]["camera_id"], cam);
    check.sample(&nodes.iter().collect::<Vec<_>>()).await;
    for _ in 0..3 {
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
        check.sample(&nodes.iter().collect::<Vec<_>>()).await;
    }
    let owned: HashSet<String> = {
        let mut all = HashSet::new();
        for n in &nodes {
            for id in cluster_view(n).await["cameras_owned"].as_array().unwrap() {
                assert!(all.insert(id.as_str().unwrap().to_string()), "{id} owned twice");
            }
        }
        all
    };
    assert_eq!(owned.len(), 6);
    eprintln!("ownership checked at {} samples", check.samples);
}

#[actix_web::test]
async fn cameras_added_through_any_node_reach_the_cluster_and_sigterm_hands_cameras_over_at_once() {
    let Some(Setup { s, nats, clip, seed, .. }) = setup("cluster-api", 1, 4.0) else { return };
    let a = Node::start("a", node_settings(&s, "a", nats.port, &seed));
    let b = Node::start("b", node_settings(&s, "b", nats.port, &[]));
    settled(&[&a, &b], &["cam1".to_string()], &["a", "b"], Duration::from_secs(30)).await;

    // POST on b: in the inventory, on both nodes, owned by one of them.
    let mut body = serde_json::to_value(camera("cam2", &clip)).unwrap();
    body["source"] = Value::from(clip.display().to_string());
    let res = awc::Client::new().post(b.url("/api/cameras")).send_json(&body).await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let res = awc::Client::new().post(a.url("/api/cameras")).send_json(&body).await.unwrap();
    assert_eq!(res.status().as_u16(), 409, "a duplicate id is refused on any node");
    let ids = vec!["cam1".to_string(), "cam2".to_string()];
    let placed = settled(&[&a, &b], &ids, &["a", "b"], Duration::from_secs(20)).await;

    // PATCH on one node, seen on the other.
    let res = awc::Client::new().patch(a.url("/api/cameras/cam2")).send_json(&serde_json::json!({"jpeg_quality": 55})).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&b.url("/api/cameras/cam2")).await["jpeg_quality"] != 55 {
        assert!(Instant::now() < deadline, "the change did not reach b");
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }

    // SIGTERM on a node that owns something: the other takes it well before a lease runs out.
    let (leaving, staying) = if placed.values().any(|o| o == "a") { (a, b) } else { (b, a) };
    let handed: Vec<String> = placed.iter().filter(|(_, o)| **o == leaving.name).map(|(id, _)| id.clone()).collect();
    leaving.signal("-TERM");
    let signalled = Instant::now();
    settled(&[&staying], &ids, &[staying.name.as_str()], Duration::from_secs(20)).await;
    let took = signalled.elapsed();
    eprintln!("drain: {handed:?} owned by {} {:.1} s after SIGTERM", staying.name, took.as_secs_f64());
    assert!(took < Duration::from_secs_f64(lease_secs()), "drain took {took:?}: the leases were not handed over");

    // DELETE: gone from the inventory.
    let res = awc::Client::new().delete(staying.url("/api/cameras/cam2")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 204);
    settled(&[&staying], &ids[..1], &[staying.name.as_str()], Duration::from_secs(10)).await;
    drop(leaving);
}

/// A nats-server on a free port and a `seconds`-long clip for `n` cameras `cam1`...: what every test
/// here starts from (`None`, the reason printed, where nats-server is not installed).
struct Setup {
    s: Scratch,
    nats_bin: PathBuf,
    nats_dir: PathBuf,
    nats: Nats,
    clip: PathBuf,
    ids: Vec<String>,
    seed: Vec<(String, PathBuf)>,
}

fn setup(name: &str, n: usize, seconds: f64) -> Option<Setup> {
    let nats_bin = nats_server()?;
    let s = Scratch::new(name);
    let nats_dir = s.path("nats");
    std::fs::create_dir_all(&nats_dir).unwrap();
    let nats = Nats::start(&nats_bin, &nats_dir);
    let clip = s.path("a.mp4");
    make_clip(&clip, 0.0, seconds, Some(320));
    let ids: Vec<String> = (1..=n).map(|i| format!("cam{i}")).collect();
    let seed = ids.iter().map(|id| (id.clone(), clip.clone())).collect();
    Some(Setup { s, nats_bin, nats_dir, nats, clip, ids, seed })
}

/// Reads frames until `window` has passed; returns how many came. A close fails the test.
async fn count_until(viewer: &mut Viewer, window: Duration) -> usize {
    frames(viewer, window).await.len()
}

#[actix_web::test]
async fn a_paused_owner_is_fenced_and_loses_its_cameras_and_nodes_keep_showing_cameras_through_a_nats_restart() {
    let Some(Setup { s, nats_bin, nats_dir, mut nats, ids, seed, .. }) = setup("cluster-fence", 2, 4.0) else { return };
    let a = Node::start("a", node_settings(&s, "a", nats.port, &seed));
    let b = Node::start("b", node_settings(&s, "b", nats.port, &[]));
    let placed = settled(&[&a, &b], &ids, &["a", "b"], Duration::from_secs(30)).await;
    let (owner, other) = if placed["cam1"] == "a" { (&a, &b) } else { (&b, &a) };
    let path = "/ws/stream/cam1";

    // SIGSTOP the owner for longer than a lease: the other node takes its cameras.
    let mut on_owner = Viewer::connect(&owner.ws(path)).await;
    on_owner.next_frame(Duration::from_secs(20)).await;
    let before = local_processed(owner).await["cam1"];
    owner.signal("-STOP");
    settled(&[other], &ids, &[other.name.as_str()], Duration::from_secs(30)).await;
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    owner.signal("-CONT");
    // Resumed, it finds its lease taken at its first renewal and stops the camera; its viewer,
    // still connected, is fed through the relay from the new owner.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = cluster_view(owner).await;
        if v["leases_lost"].as_u64().unwrap_or(0) >= 1 && v["cameras_owned"] == serde_json::json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "the resumed node kept its cameras: {v}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = local_processed(owner).await["cam1"];
    let fenced = local_counter(owner, "haven_camera_frames_fenced_total").await["cam1"];
    eprintln!("paused owner: {} frames processed between the last sample and SIGSTOP, {fenced} fenced after SIGCONT", stopped - before);
    // At 10 fps, only what it processed between the sample and the signal (not the seconds it
    // spent resuming and renewing, which the fence covers).
    assert!(stopped - before <= 5, "the resumed node processed {} frames of a camera it no longer owned", stopped - before);
    assert!(count_until(&mut on_owner, Duration::from_secs(3)).await >= 5, "the resumed node's viewer gets the new owner's frames");
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(local_processed(owner).await["cam1"], stopped, "nothing processed after the lease was lost");
    assert_eq!(settled(&[&a, &b], &ids, &[other.name.as_str()], Duration::from_secs(10)).await.len(), 2);

    // NATS goes away for longer than a lease: every node keeps showing its cameras to its own
    // viewers (fenced: no analysis), and the cluster comes back together when NATS does.
    let mut on_other = Viewer::connect(&other.ws(path)).await;
    on_other.next_frame(Duration::from_secs(20)).await;
    let port = nats.port;
    drop(nats);
    let outage = Duration::from_secs_f64(lease_secs() * 1.5);
    let shown = count_until(&mut on_other, outage).await;
    let fenced = local_counter(other, "haven_camera_frames_fenced_total").await["cam1"];
    eprintln!("NATS down {outage:?}: {shown} frames shown on the owner, {fenced} of them fenced");
    assert!(shown >= 10, "only {shown} frames while NATS was down");
    assert!(fenced >= 1, "the owner kept analysing without a lease");
    assert_eq!(cluster_view(other).await["nats_connected"], false);
    nats = Nats::start_on(&nats_bin, &nats_dir, port);
    let restarted = Instant::now();
    settled(&[&a, &b], &ids, &["a", "b"], Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(cluster_view(&a).await["nats_connected"] == true && cluster_view(&b).await["nats_connected"] == true) {
        assert!(Instant::now() < deadline, "the nodes did not reconnect");
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
    // Settled means an owner per camera as the nodes read the leases; frames again on both sockets.
    on_other.next_frame(Duration::from_secs(20)).await;
    on_owner.next_frame(Duration::from_secs(20)).await;
    eprintln!("NATS back: cluster settled and streaming {:.1} s later", restarted.elapsed().as_secs_f64());
    drop(nats);
}

#[actix_web::test]
async fn with_rebalance_a_node_that_joins_gets_the_cameras_rendezvous_hashing_gives_it() {
    let Some(Setup { s, nats, ids, seed, .. }) = setup("cluster-rebalance", 6, 4.0) else { return };
    let a = Node::start("a", node_settings_with(&s, "a", nats.port, &seed, true));
    settled(&[&a], &ids, &["a"], Duration::from_secs(30)).await;

    let b = Node::start("b", node_settings_with(&s, "b", nats.port, &[], true));
    let both = vec![("a".to_string(), 1.0), ("b".to_string(), 1.0)];
    let expected: BTreeMap<String, String> = ids.iter().map(|id| (id.clone(), haven::cluster::rendezvous_winner(id, &both).unwrap())).collect();
    assert!(expected.values().any(|o| o == "b"), "the test's camera names should give b some: {expected:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = settled(&[&a, &b], &ids, &["a", "b"], Duration::from_secs(30)).await;
        if now == expected {
            break;
        }
        assert!(Instant::now() < deadline, "not rebalanced: {now:?}, expected {expected:?}");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    let views = [cluster_view(&a).await, cluster_view(&b).await];
    let moved = views[0]["leases_released"].as_u64().unwrap();
    assert_eq!(moved as usize, expected.values().filter(|o| *o == "b").count(), "a released exactly the cameras that moved: {views:?}");
    eprintln!("rebalanced to {expected:?}: {moved} cameras handed over, one per round");
    drop(nats);
}

/// The next alert on `alerts` that `pred` accepts, within `within`.
async fn next_alert(alerts: &mut Viewer, within: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("no {what} alert within {within:?}"));
        match alerts.next_event(left).await {
            Some(Event::Frame(alert)) if pred(&alert) => return alert,
            Some(Event::Frame(_)) => {}
            Some(Event::Closed(r)) => panic!("the alerts socket closed: {r:?}"),
            None => panic!("no {what} alert within {within:?}"),
        }
    }
}

/// GETs `url` until it answers 200 (the event's file reached the store), within `within`.
async fn get_bytes_when_ready(url: &str, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        let mut res = awc::Client::new().get(url).timeout(Duration::from_secs(10)).send().await.unwrap();
        if res.status().as_u16() == 200 {
            return res.body().limit(64 << 20).await.unwrap().to_vec();
        }
        let body = res.body().await.unwrap_or_default();
        assert!(Instant::now() < deadline, "GET {url}: {} {}", res.status(), String::from_utf8_lossy(&body));
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
}

fn status_of(list: &Value, id: &str) -> Value {
    list["cameras"].as_array().unwrap().iter().find(|c| c["camera_id"] == id).cloned().unwrap_or(Value::Null)
}

#[actix_web::test]
async fn events_of_one_node_reach_the_others_with_their_files_a_patch_applies_live_and_a_dead_owners_open_events_end() {
    let Some(nats_bin) = nats_server() else { return };
    let s = Scratch::new("cluster-events");
    let nats_dir = s.path("nats");
    std::fs::create_dir_all(&nats_dir).unwrap();
    let nats = Nats::start(&nats_bin, &nats_dir);
    // A person falls every 8.8 s: the video loops, AI on.
    let video = s.path("fall.mp4");
    crate::events::write_fall_video_lying(&video, 4.0, false);
    let ward = haven::settings::CameraConfig { ai_enabled: true, loop_video: true, ..camera("ward", &video) };
    let with_model = |doc: &mut toml_edit::DocumentMut| {
        doc["model"]["enabled"] = toml_edit::value(true);
        doc["events"]["pre_roll_secs"] = toml_edit::value(2.0);
        doc["events"]["post_roll_secs"] = toml_edit::value(1.0);
    };
    let a = Node::start("a", node_settings_doc(&s, "a", &[nats.port], &[ward], with_model));
    let b = Node::start("b", node_settings_doc(&s, "b", &[nats.port], &[], with_model));
    let placed = settled(&[&a, &b], &["ward".to_string()], &["a", "b"], Duration::from_secs(60)).await;
    let (owner, other) = if placed["ward"] == "a" { (&a, &b) } else { (&b, &a) };

    // A fall on the owner: the other node pushes it on its /ws/alerts, names the node, lists it
    // under the same id and serves its snapshot and clip, which only the owner wrote.
    let mut alerts = Viewer::connect(&other.ws("/ws/alerts")).await;
    let mut owner_alerts = Viewer::connect(&owner.ws("/ws/alerts")).await;
    let fall = next_alert(&mut alerts, Duration::from_secs(60), "fall start", |e| e["kind"] == "fall" && e["phase"] == "start").await;
    assert_eq!(fall["node"], owner.name.as_str(), "{fall}");
    let id = fall["id"].as_i64().unwrap();
    let on_owner = next_alert(&mut owner_alerts, Duration::from_secs(30), "the same fall on the owner", |e| e["id"] == id && e["phase"] == "start").await;
    assert_eq!((&on_owner["node"], &on_owner["started_at"]), (&fall["node"], &fall["started_at"]), "one event, the same on both nodes");
    let ended = next_alert(&mut alerts, Duration::from_secs(30), "fall end", |e| e["id"] == id && e["phase"] == "end").await;
    assert!(ended["ended_at"].as_f64().unwrap() >= fall["started_at"].as_f64().unwrap());
    let listed = get_json(&other.url("/api/events?kind=fall&camera=ward")).await;
    assert!(listed["events"].as_array().unwrap().iter().any(|e| e["id"] == id && e["node"] == owner.name.as_str()), "{listed}");
    // Acknowledged through the node that does not own it: both nodes' viewers get the update, the
    // owner stores it (its own event, changed elsewhere), and the stream holds it once.
    let mut res = awc::Client::new().post(other.url(&format!("/api/events/{id}/ack"))).send_json(&serde_json::json!({"by": "Nurse B"})).await.unwrap();
    let acked: Value = res.json().await.unwrap();
    assert_eq!((res.status().as_u16(), acked["acknowledged_by"].as_str()), (200, Some("Nurse B")), "{acked}");
    next_alert(&mut alerts, Duration::from_secs(10), "the acknowledgement", |e| e["id"] == id && e["acknowledged_by"] == "Nurse B").await;
    let on_owner = next_alert(&mut owner_alerts, Duration::from_secs(30), "the acknowledgement on the owner", |e| e["id"] == id && e["acknowledged_by"] == "Nurse B").await;
    assert_eq!((on_owner["phase"].as_str(), on_owner["acknowledged_at"].as_f64()), (Some("end"), acked["acknowledged_at"].as_f64()), "{on_owner}");
    let stored = get_json(&owner.url(&format!("/api/events/{id}"))).await;
    assert_eq!(stored["acknowledged_by"], "Nurse B", "{stored}");
    let snapshot = get_bytes_when_ready(&other.url(&format!("/api/events/{id}/snapshot.jpg")), Duration::from_secs(20)).await;
    assert!(snapshot.starts_with(&[0xff, 0xd8]), "a JPEG");
    let clip_url = |n: &Node| n.url(&format!("/api/events/{id}/clip.mp4"));
    let from_other = get_bytes_when_ready(&clip_url(other), Duration::from_secs(30)).await;
    let from_owner = get_bytes_when_ready(&clip_url(owner), Duration::from_secs(5)).await;
    assert_eq!(from_other, from_owner, "the clip, byte for byte, through the media store");
    let event = get_json(&other.url(&format!("/api/events/{id}"))).await;
    let rel = event["clip_path"].as_str().unwrap();
    assert!(!s.path(&format!("events-{}", other.name)).join(rel).exists(), "not on the other node's disk: served from NATS");
    let mut ranged = awc::Client::new().get(clip_url(other)).insert_header(("Range", "bytes=10-19")).send().await.unwrap();
    assert_eq!(ranged.status().as_u16(), 206);
    assert_eq!(ranged.body().await.unwrap().to_vec(), from_owner[10..20].to_vec());
    // A file gone from the owner's disk (deleted by hand here) is served from the media store too.
    let snapshot_rel = event["snapshot_path"].as_str().unwrap();
    std::fs::remove_file(s.path(&format!("events-{}", owner.name)).join(snapshot_rel)).unwrap();
    let again = get_bytes_when_ready(&owner.url(&format!("/api/events/{id}/snapshot.jpg")), Duration::from_secs(5)).await;
    assert_eq!(again, snapshot, "the owner serves its deleted snapshot from NATS");
    let (ov, tv) = (cluster_view(owner).await, cluster_view(other).await);
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap();
    assert!(count(&ov, "events_published") >= 4 && count(&tv, "events_received") >= 4, "the fall's start, snapshot, end and clip at least: {ov} {tv}");
    assert_eq!(count(&ov, "events_unpublished"), 0);
    eprintln!(
        "fall {id} of node {}: listed, pushed and served by node {} ({} B snapshot, {} B clip); {} changes published, {} received",
        owner.name, other.name, snapshot.len(), from_other.len(), count(&ov, "events_published"), count(&tv, "events_received")
    );

    // PATCH through the node that does not own the camera: the owner applies it live (its worker
    // keeps running: uptime and counters go on, frames keep coming), as a single server does.
    let mut viewer = Viewer::connect(&owner.ws("/ws/stream/ward")).await;
    viewer.next_frame(Duration::from_secs(20)).await;
    let before = status_of(&get_json(&owner.url("/api/cameras")).await, "ward");
    let res = awc::Client::new().patch(other.url("/api/cameras/ward")).send_json(&serde_json::json!({"jpeg_quality": 55})).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let now = status_of(&get_json(&owner.url("/api/cameras")).await, "ward");
        if now["jpeg_quality"] == 55 {
            break now;
        }
        assert!(Instant::now() < deadline, "the owner did not apply the change: {now}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    let n = |v: &Value, k: &str| v[k].as_f64().unwrap();
    eprintln!("patch: uptime {:.1} -> {:.1} s, frames_processed {} -> {}", n(&before, "uptime_seconds"), n(&after, "uptime_seconds"), before["frames_processed"], after["frames_processed"]);
    assert!(n(&after, "uptime_seconds") >= n(&before, "uptime_seconds"), "the camera was restarted: {before} then {after}");
    assert!(n(&after, "frames_processed") >= n(&before, "frames_processed"), "the camera's counters started again: {before} then {after}");
    assert!(count_until(&mut viewer, Duration::from_secs(2)).await >= 5, "frames keep coming");
    viewer.close().await;

    // kill -9 the owner while a fall goes on: the node that takes the camera over ends the dead
    // owner's open events; they keep their node and id, and the clip that will never come says so.
    let fall = next_alert(&mut alerts, Duration::from_secs(60), "next fall start", |e| e["kind"] == "fall" && e["phase"] == "start" && e["node"] == owner.name.as_str()).await;
    owner.signal("-KILL");
    let id = fall["id"].as_i64().unwrap();
    let ended = next_alert(&mut alerts, Duration::from_secs(30), "the abandoned fall's end", |e| e["id"] == id && e["phase"] == "end").await;
    assert_eq!(ended["node"], owner.name.as_str());
    let stored = get_json(&other.url(&format!("/api/events/{id}"))).await;
    assert_eq!(stored["clip_status"], "failed", "{stored}");
    assert!(stored["clip_error"].as_str().unwrap().contains(&format!("node {}", owner.name)), "{stored}");
    assert!(stored["ended_at"].as_f64().is_some());
    eprintln!("abandoned fall {id}: ended by node {} after the takeover: {}", other.name, stored["clip_error"]);

    // The stream, as NATS holds it: every change of every event once, each with its raising node.
    let js = async_nats::jetstream::new(async_nats::connect(format!("nats://127.0.0.1:{}", nats.port)).await.unwrap());
    let stream = js.get_stream("HAVEN_EVENTS").await.unwrap();
    let last = stream.get_info().await.unwrap().state.last_sequence;
    let mut seen = HashSet::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        let key = (v["event"]["id"].as_i64().unwrap(), v["change"].as_str().unwrap().to_string());
        assert!(v["event"]["node"].is_string(), "{v}");
        assert!(seen.insert(key.clone()), "{key:?} stored twice");
    }
    assert!(seen.contains(&(id, "end".to_string())), "the abandoned fall's end is in the stream");
    assert!(seen.iter().any(|(_, change)| change == "ack"), "the acknowledgement is in the stream");
    eprintln!("HAVEN_EVENTS: {last} messages, each change once");
    drop(nats);
}

#[actix_web::test]
async fn a_node_whose_lease_secs_differs_from_the_clusters_refuses_to_start_and_names_the_setting() {
    let Some(Setup { s, nats, seed, .. }) = setup("cluster-lease", 1, 2.0) else { return };
    let a = Node::start("a", node_settings(&s, "a", nats.port, &seed));
    let other = lease_secs() + 1.0;
    let settings = node_settings_doc(&s, "b", &[nats.port], &[], |doc| doc["cluster"]["lease_secs"] = toml_edit::value(other));
    let mut b = Running::start(&settings, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = b.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "the node with another lease_secs kept running");
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = b.log_so_far(Duration::from_millis(200));
    eprintln!("{}", log.lines().find(|l| l.starts_with("error:")).unwrap_or_default());
    assert_eq!(code, Some(4), "exit code 4 (could not start): {log}");
    assert!(log.contains(&format!("cluster.lease_secs is {other} here but {} in the cluster", lease_secs())), "{log}");
    // The cluster is untouched: a still owns its camera.
    assert_eq!(cluster_view(&a).await["cameras_owned"], serde_json::json!(["cam1"]));
}

/// Three nats-servers in one NATS cluster (routes between them, JetStream on each), killed on drop.
struct NatsCluster {
    servers: Vec<Option<Nats>>,
    client_ports: Vec<u16>,
}

impl NatsCluster {
    fn start(bin: &Path, dir: &Path) -> Self {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let monitor_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let mut servers = Vec::new();
        for i in 0..3 {
            let store = dir.join(format!("n{i}"));
            std::fs::create_dir_all(&store).unwrap();
            let child = Command::new(bin)
                .args(["-js", "-a", "127.0.0.1", "-p", &client_ports[i].to_string(), "-n", &format!("n{i}"), "--cluster_name", "haven"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", route_ports[i]), "--routes", &routes, "-m", &monitor_ports[i].to_string(), "-sd"])
                .arg(&store)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts");
            servers.push(Some(Nats { child, port: client_ports[i] }));
        }
        for port in &client_ports {
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not listen on {port} within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        wait_for_jetstream_leader(&monitor_ports);
        NatsCluster { servers, client_ports }
    }
}

#[actix_web::test]
async fn a_node_whose_nats_server_dies_reconnects_to_another_of_its_list_and_keeps_its_cameras() {
    let Some(Setup { s, nats, seed, ids, .. }) = setup("cluster-nats3", 2, 4.0) else { return };
    drop(nats);
    let bin = nats_server().unwrap();
    let mut cluster = NatsCluster::start(&bin, &s.path("nats3"));
    let configs: Vec<haven::settings::CameraConfig> = seed.iter().map(|(id, clip)| camera(id, clip)).collect();
    // Three replicas: what the node keeps in NATS survives the loss of one server.
    // A lease long enough to ride out the election of new stream leaders when a server goes.
    let a = Node::start("a", node_settings_doc(&s, "a", &cluster.client_ports, &configs, |doc| {
        doc["cluster"]["replicas"] = toml_edit::value(3);
        doc["cluster"]["lease_secs"] = toml_edit::value(10.0);
    }));
    settled(&[&a], &ids, &["a"], Duration::from_secs(60)).await;
    let view = cluster_view(&a).await;
    let server = view["nats_server"].as_str().unwrap().to_string();
    let i: usize = server.trim_start_matches('n').parse().unwrap_or_else(|_| panic!("a server name: {view}"));
    let mut viewer = Viewer::connect(&a.ws("/ws/stream/cam1")).await;
    viewer.next_frame(Duration::from_secs(20)).await;

    // Kill the server the node is connected to: it connects to another of its list, keeps both
    // cameras (no lease lost) and goes on processing them.
    cluster.servers[i].take();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30);
    let view = loop {
        let v = cluster_view(&a).await;
        if v["nats_connected"] == true && v["nats_server"].as_str().is_some_and(|n| n != server) {
            break v;
        }
        assert!(Instant::now() < deadline, "the node did not reconnect to another server: {v}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("nats server {server} killed: node a on {} {:.1} s later", view["nats_server"], killed.elapsed().as_secs_f64());
    let processed = local_processed(&a).await;
    assert!(count_until(&mut viewer, Duration::from_secs(3)).await >= 10, "frames keep coming");
    // A lease later: renewals went through the new server.
    actix_web::rt::time::sleep(Duration::from_secs(10)).await;
    let view = cluster_view(&a).await;
    assert_eq!(view["cameras_owned"], serde_json::json!(ids), "{view}");
    assert_eq!(view["leases_lost"], 0, "{view}");
    let later = local_processed(&a).await;
    for id in &ids {
        assert!(later[id] > processed[id], "{id} is still processed: {processed:?} then {later:?}");
    }
    drop(cluster);
}

/// Waits until the NATS cluster's JetStream has elected its meta leader (before that, no bucket can
/// be made), as every server's monitoring endpoint (`/jsz`) says.
fn wait_for_jetstream_leader(monitor_ports: &[u16]) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in monitor_ports {
        loop {
            let body = TcpStream::connect(("127.0.0.1", *port)).ok().and_then(|mut c| {
                c.write_all(b"GET /jsz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
                let mut text = String::new();
                c.read_to_string(&mut text).ok()?;
                Some(text)
            });
            if body.is_some_and(|b| b.contains("\"leader\": \"n")) {
                break;
            }
            assert!(Instant::now() < deadline, "NATS JetStream elected no meta leader within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[actix_web::test]
async fn in_a_cluster_each_event_is_notified_once_by_the_node_that_owns_it_a_snooze_holds_everywhere_and_mqtt_stays_online() {
    let Some(nats_bin) = nats_server() else { return };
    let Some(mosquitto) = crate::mqtt::mosquitto() else { return };
    let s = Scratch::new("cluster-notify");
    let nats_dir = s.path("nats");
    std::fs::create_dir_all(&nats_dir).unwrap();
    let nats = Nats::start(&nats_bin, &nats_dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    let inbox = crate::notify::Inbox::default();
    let receiver = crate::notify::start_receiver(listener, inbox.clone());
    let mqtt_port = free_port();
    let _broker = crate::mqtt::Broker::start(&mosquitto, &s.0, mqtt_port, None);
    let mut watcher = crate::mqtt::Watcher::connect(mqtt_port, None);
    watcher.subscribed().await;
    // A person falls every 8.8 s: the video loops, AI on. Both nodes send falls to one receiver,
    // and to one MQTT broker.
    let video = s.path("fall.mp4");
    crate::events::write_fall_video_lying(&video, 4.0, false);
    let ward = haven::settings::CameraConfig { ai_enabled: true, loop_video: true, ..camera("ward", &video) };
    let with_hook = |doc: &mut toml_edit::DocumentMut| {
        doc["model"]["enabled"] = toml_edit::value(true);
        doc["events"]["post_roll_secs"] = toml_edit::value(1.0);
        let mut hook = toml_edit::Table::new();
        hook["name"] = toml_edit::value("pager");
        hook["url"] = toml_edit::value(format!("http://127.0.0.1:{hook_port}/hook"));
        let mut hooks = toml_edit::ArrayOfTables::new();
        hooks.push(hook);
        doc["notify"]["webhooks"] = toml_edit::Item::ArrayOfTables(hooks);
        doc["mqtt"]["url"] = toml_edit::value(format!("mqtt://127.0.0.1:{mqtt_port}"));
    };
    let a = Node::start("a", node_settings_doc(&s, "a", &[nats.port], &[ward], with_hook));
    let b = Node::start("b", node_settings_doc(&s, "b", &[nats.port], &[], with_hook));
    settled(&[&a, &b], &["ward".to_string()], &["a", "b"], Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let first_done = |bodies: &[Value]| {
        let first = bodies.iter().find(|n| n["type"] == "new").map(|n| n["after"]["id"].clone());
        first.is_some_and(|id| bodies.iter().any(|n| n["after"]["id"] == id && n["type"] == "end"))
    };
    while !first_done(&inbox.bodies()) {
        assert!(Instant::now() < deadline, "no fall notified start to end: {:?}", inbox.bodies().iter().map(|n| n["type"].clone()).collect::<Vec<_>>());
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let bodies = inbox.bodies();
    let mut seen = HashSet::new();
    for n in &bodies {
        assert!(seen.insert(n.to_string()), "notified twice: {} of event {}", n["type"], n["after"]["id"]);
    }
    let id = bodies.iter().find(|n| n["type"] == "new").unwrap()["after"]["id"].clone();
    let types: Vec<&str> = bodies.iter().filter(|n| n["after"]["id"] == id).map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!((types.iter().filter(|t| **t == "new").count(), types.iter().filter(|t| **t == "end").count()), (1, 1), "{types:?}");
    let delivered = |v: &Value| v["targets"][0]["delivered"].as_u64().unwrap();
    let (na, nb) = (delivered(&get_json(&a.url("/api/notify")).await), delivered(&get_json(&b.url("/api/notify")).await));
    assert!(na == 0 || nb == 0, "only the owner notifies: a {na}, b {nb}");

    // On MQTT too: the same changes, each once, by the owner.
    // Waits for as many of this event's messages as the webhook got (a type alone can repeat:
    // new, update, end, update).
    let mut next = 0;
    for _ in &types {
        next = watcher.expect_from(next, "haven/events", Duration::from_secs(30), |m| m.json()["after"]["id"] == id).await.0 + 1;
    }
    let published: Vec<Value> = watcher.seen.iter().filter(|m| m.topic == "haven/events").map(|m| m.json()).collect();
    let mut once = HashSet::new();
    for n in &published {
        assert!(once.insert(n.to_string()), "published twice: {} of event {}", n["type"], n["after"]["id"]);
    }
    let on_mqtt: Vec<&str> = published.iter().filter(|n| n["after"]["id"] == id).map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(on_mqtt, types, "MQTT has what the webhook has, in the same order");

    // A snooze taken by the node that does not run the camera holds on the one that does.
    let (owner, other) = if owners(&a).await.get("ward").cloned().flatten().as_deref() == Some("a") { (&a, &b) } else { (&b, &a) };
    let snoozed = awc::Client::new().post(other.url("/api/cameras/ward/snooze")).send_json(&serde_json::json!({"minutes": 30})).await.unwrap().json::<Value>().await.unwrap();
    let until = snoozed["snoozed_until"].as_f64().expect("snoozed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&owner.url("/api/cameras/ward")).await["snoozed_until"].as_f64() != Some(until) {
        assert!(Instant::now() < deadline, "the owner never heard of the snooze");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }

    // The other node dies: its last will says offline, the node still up says online again.
    other.signal("-KILL");
    let (will, _) = watcher.expect_from(0, "haven/available", Duration::from_secs(60), |m| m.text() == "offline").await;
    watcher.expect_from(will + 1, "haven/available", Duration::from_secs(30), |m| m.text() == "online").await;
    receiver.stop(false).await;
    drop(nats);
}


/// Signs in on `node`: the session cookie, or the status that refused it.
async fn sign_in_on(node: &Node, name: &str, password: &str) -> Result<String, u16> {
    let res = awc::Client::new().post(node.url("/api/session")).send_json(&serde_json::json!({ "name": name, "password": password })).await.unwrap();
    match res.status().as_u16() {
        200 => Ok(res.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string()),
        code => Err(code),
    }
}

/// `GET path` on `node` with a header (`Cookie` or `Authorization`): the status.
async fn status_with(node: &Node, path: &str, header: (&str, &str)) -> u16 {
    awc::Client::new().get(node.url(path)).insert_header(header).send().await.unwrap().status().as_u16()
}

/// Polls `check` until it holds, failing with `what` after 20 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Accounts and API tokens hold on every node: those a node had before it joined, and those made,
/// changed and revoked through any node's API or `haven user` on any node's machine; a new
/// password ends the account's sessions on every node.
#[actix_web::test]
async fn an_account_or_token_made_changed_or_revoked_on_any_node_holds_on_every_node() {
    use haven::auth::{password, AccountStore, Role, Scope};
    const PASSWORD: &str = "correct horse battery";
    let Some(Setup { s, nats, .. }) = setup("cluster-accounts", 0, 1.0) else { return };
    // `a` had an admin before it was a cluster node; `b` had no account.
    let store = AccountStore::open(&s.path("events-a")).unwrap();
    store.add_user("ann", &password::hash(PASSWORD).unwrap(), Role::Admin, &Scope::all()).unwrap();
    drop(store);
    let a = Node::start("a", node_settings(&s, "a", nats.port, &[]));
    let b = Node::start("b", node_settings(&s, "b", nats.port, &[]));
    eventually("ann signs in on b", || async { sign_in_on(&b, "ann", PASSWORD).await.is_ok() }).await;
    let ann_b = sign_in_on(&b, "ann", PASSWORD).await.unwrap();

    // An account made on b signs in on a.
    let made = awc::Client::new()
        .post(b.url("/api/users"))
        .insert_header(("Cookie", ann_b.as_str()))
        .send_json(&serde_json::json!({ "name": "vic", "password": PASSWORD, "role": "viewer", "cameras": ["ward-*"] }))
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    eventually("vic signs in on a", || async { sign_in_on(&a, "vic", PASSWORD).await.is_ok() }).await;
    let vic_a = sign_in_on(&a, "vic", PASSWORD).await.unwrap();
    let vic_b = sign_in_on(&b, "vic", PASSWORD).await.unwrap();

    // A token made on a works on b, and revoked on b stops on a.
    let ann_a = sign_in_on(&a, "ann", PASSWORD).await.unwrap();
    let mut res = awc::Client::new()
        .post(a.url("/api/tokens"))
        .insert_header(("Cookie", ann_a.as_str()))
        .send_json(&serde_json::json!({ "name": "ha", "role": "viewer" }))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let token: Value = res.json().await.unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    eventually("the token works on b", || async { status_with(&b, "/api/cameras", ("Authorization", bearer.as_str())).await == 200 }).await;
    let revoked = awc::Client::new().delete(b.url("/api/tokens/ha")).insert_header(("Cookie", ann_b.as_str())).send().await.unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    eventually("the token stops on a", || async { status_with(&a, "/api/cameras", ("Authorization", bearer.as_str())).await == 401 }).await;

    // A new password given on a ends vic's sessions on both nodes; the new one works on b.
    let changed = awc::Client::new()
        .patch(a.url("/api/users/vic"))
        .insert_header(("Cookie", ann_a.as_str()))
        .send_json(&serde_json::json!({ "password": "a new one, long enough" }))
        .await
        .unwrap();
    assert_eq!(changed.status().as_u16(), 200);
    assert_eq!(status_with(&a, "/api/cameras", ("Cookie", vic_a.as_str())).await, 401);
    eventually("vic's session on b ends", || async { status_with(&b, "/api/cameras", ("Cookie", vic_b.as_str())).await == 401 }).await;
    assert!(sign_in_on(&b, "vic", "a new one, long enough").await.is_ok());

    // `haven user remove` on a's machine, while a runs: vic can sign in nowhere.
    let out = Command::new(env!("CARGO_BIN_EXE_haven")).args(["--settings", &a.settings, "user", "remove", "vic"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("vic is gone from b", || async { sign_in_on(&b, "vic", "a new one, long enough").await == Err(401) }).await;
    drop((a, b));
}
