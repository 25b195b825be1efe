//! Cluster benchmark: three nats-servers in one NATS cluster (routes, JetStream on each, loopback)
//! and three `haven` nodes (`target/debug/haven`, AI off, three demo cameras, `replicas = 3`).
//!
//! `cargo run --example cluster_bench -- [--window 10] [--rounds 3] [--failovers 3] [--lease 6]`
//! (`scripts/cluster_bench.sh` builds and runs it.)
//!
//! Measures, each round:
//! - relay latency: capture to viewer (now - the frame's timestamp) for a viewer on the camera's
//!   owner and one on another node, over the same window; medians and the difference;
//! - what a relayed camera costs NATS: messages and bytes per second the owner publishes;
//! - the owner's CPU over the window with 1 viewer on another node, then with 100 (one relay stream
//!   per camera per node: it must not grow with remote viewers), and the relaying node's;
//!
//! then `--failovers` times: kill -9 the owner of a watched camera, time until its viewer on a
//! surviving node gets frames again, restart the node. Prints medians and ratios as a markdown table.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/mod.rs"]
mod support;
use support::{cpu_seconds, free_port, median, repo, Haven};

struct Args {
    window: f64,
    rounds: usize,
    failovers: usize,
    lease: f64,
}

fn parse_args() -> Args {
    let mut a = Args { window: 10.0, rounds: 3, failovers: 3, lease: 6.0 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--window" => a.window = it.next().unwrap().parse().unwrap(),
            "--rounds" => a.rounds = it.next().unwrap().parse().unwrap(),
            "--failovers" => a.failovers = it.next().unwrap().parse().unwrap(),
            "--lease" => a.lease = it.next().unwrap().parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn nats_bin() -> PathBuf {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("nats-server is not installed (scripts/setup.sh installs it)")
}

/// Three nats-servers with routes to each other; killed on drop.
struct NatsCluster {
    children: Vec<Child>,
    ports: Vec<u16>,
}

impl NatsCluster {
    fn start(dir: &Path) -> Self {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let monitors: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_list = routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let children = (0..3)
            .map(|i| {
                let store = dir.join(format!("n{i}"));
                std::fs::create_dir_all(&store).unwrap();
                Command::new(nats_bin())
                    .args(["-js", "-a", "127.0.0.1", "-p", &ports[i].to_string(), "-n", &format!("n{i}"), "--cluster_name", "haven"])
                    .args(["--cluster", &format!("nats://127.0.0.1:{}", routes[i]), "--routes", &route_list, "-m", &monitors[i].to_string(), "-sd"])
                    .arg(&store)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nats-server starts")
            })
            .collect();
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Buckets can be made once JetStream has a meta leader.
        for port in &monitors {
            use std::io::{Read, Write};
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let body = std::net::TcpStream::connect(("127.0.0.1", *port)).ok().and_then(|mut c| {
                    c.write_all(b"GET /jsz HTTP/1.0\r\n\r\n").ok()?;
                    let mut text = String::new();
                    c.read_to_string(&mut text).ok()?;
                    Some(text)
                });
                if body.is_some_and(|b| b.contains("\"leader\": \"n")) {
                    break;
                }
                assert!(Instant::now() < deadline, "no JetStream meta leader within 30 s");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        NatsCluster { children, ports }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A node's settings: the shipped file with its three demo cameras (AI off; they seed the
/// inventory) and a `[cluster]` section on all three NATS servers.
fn node_settings(dir: &Path, name: &str, nats: &[u16], lease: f64) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap().replace("ai_enabled = true", "ai_enabled = false");
    let urls = nats.iter().map(|p| format!("\"nats://127.0.0.1:{p}\"")).collect::<Vec<_>>().join(", ");
    let events = dir.join(format!("events-{name}"));
    let text = text.replace("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", events.display()));
    let cluster = format!("\n[cluster]\nnats_url = [{urls}]\nnode_name = \"{name}\"\nlease_secs = {lease}\nreplicas = 3\n");
    // [cluster] must come before the [[cameras]] tables.
    let (head, cameras) = text.split_once("[[cameras]]").unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("{head}{cluster}\n[[cameras]]{cameras}")).unwrap();
    path
}

async fn get_json(port: u16, path: &str) -> Value {
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}{path}")).timeout(Duration::from_secs(10)).send().await.unwrap();
    res.json().limit(4 << 20).await.unwrap_or(Value::Null)
}

/// Camera → owner as `port` lists them, once every camera has one.
async fn owners(port: u16, n: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = get_json(port, "/api/cameras").await;
        let owners: Vec<(String, String)> = list["cameras"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| Some((c["camera_id"].as_str()?.to_string(), c["owner"].as_str()?.to_string()))).collect())
            .unwrap_or_default();
        if owners.len() == n {
            return owners;
        }
        assert!(Instant::now() < deadline, "cameras not placed: {list}");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `n` viewers of `camera` on `port` that read until aborted; the ages (ms, capture to arrival) of
/// every frame go to `ages` when `record`.
async fn viewers(port: u16, camera: &str, n: usize, frames: Arc<AtomicU64>, ages: Option<Arc<std::sync::Mutex<Vec<f64>>>>) -> Vec<actix_web::rt::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (frames, ages) = (frames.clone(), ages.clone());
        tasks.push(
            support::viewer(port, camera, move |b| {
                frames.fetch_add(1, Ordering::Relaxed);
                if let Some(ages) = &ages {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
                    if let Ok(v) = serde_json::from_slice::<Value>(b) {
                        if let Some(t) = v["metadata"]["timestamp"].as_f64() {
                            ages.lock().unwrap().push((now - t) * 1000.0);
                        }
                    }
                }
            })
            .await,
        );
    }
    tasks
}

struct Node {
    name: String,
    settings: PathBuf,
    haven: Haven,
}

#[actix_web::main]
async fn main() {
    support::help::help_if_asked(include_str!("cluster_bench.rs"));
    let args = parse_args();
    let dir = std::env::temp_dir().join(format!("haven-cluster-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nats = NatsCluster::start(&dir);
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let settings = node_settings(&dir, name, &nats.ports, args.lease);
            let haven = Haven::start(&settings, &[], Some(&dir.join(format!("{name}.log"))));
            Node { name: name.to_string(), settings, haven }
        })
        .collect();
    let placed = owners(nodes[0].haven.port, 3).await;
    eprintln!("placed: {placed:?}");
    println!("# cluster: 3 nats-servers (one NATS cluster, JetStream R3), 3 haven nodes, 3 demo cameras (768x576 @ 10 fps, AI off), lease {} s, window {} s, {} rounds", args.lease, args.window, args.rounds);

    let (camera, owner) = placed[0].clone();
    let oi = nodes.iter().position(|n| n.name == owner).unwrap();
    let ri = (oi + 1) % 3;
    let (owner_port, relay_port, owner_pid, relay_pid) = (nodes[oi].haven.port, nodes[ri].haven.port, nodes[oi].haven.pid(), nodes[ri].haven.pid());
    let (mut relay1, mut relay100) = (Vec::new(), Vec::new());
    let mut lat_owner = Vec::new();
    let mut lat_relay = Vec::new();
    let mut msgs = Vec::new();
    let mut bytes = Vec::new();
    let mut cpu1 = Vec::new();
    let mut cpu100 = Vec::new();
    for round in 0..args.rounds {
        // Latency and NATS traffic: one viewer on the owner, one on another node.
        let frames = Arc::new(AtomicU64::new(0));
        let (ages_o, ages_r) = (Arc::new(std::sync::Mutex::new(Vec::new())), Arc::new(std::sync::Mutex::new(Vec::new())));
        let mut tasks = viewers(owner_port, &camera, 1, frames.clone(), Some(ages_o.clone())).await;
        tasks.extend(viewers(relay_port, &camera, 1, frames.clone(), Some(ages_r.clone())).await);
        actix_web::rt::time::sleep(Duration::from_secs(3)).await;
        ages_o.lock().unwrap().clear();
        ages_r.lock().unwrap().clear();
        let v0 = get_json(owner_port, "/api/cluster").await;
        let t0 = Instant::now();
        actix_web::rt::time::sleep(Duration::from_secs_f64(args.window)).await;
        let secs = t0.elapsed().as_secs_f64();
        let v1 = get_json(owner_port, "/api/cluster").await;
        let count = |v: &Value, k: &str| v[k][&camera].as_u64().unwrap_or(0) as f64;
        let (m, b) = ((count(&v1, "relay_published") - count(&v0, "relay_published")) / secs, (count(&v1, "relay_published_bytes") - count(&v0, "relay_published_bytes")) / secs);
        let (lo, lr) = (median(ages_o.lock().unwrap().clone()), median(ages_r.lock().unwrap().clone()));
        for t in tasks {
            t.abort();
        }
        // The owner's (and the relaying node's) CPU with 1, then 100 viewers on the other node and
        // none on the owner.
        let mut cpu = Vec::new();
        for n in [1, 100] {
            let frames = Arc::new(AtomicU64::new(0));
            let tasks = viewers(relay_port, &camera, n, frames.clone(), None).await;
            actix_web::rt::time::sleep(Duration::from_secs(3)).await;
            let (c0, r0, f0, t0) = (cpu_seconds(owner_pid), cpu_seconds(relay_pid), frames.load(Ordering::Relaxed), Instant::now());
            actix_web::rt::time::sleep(Duration::from_secs_f64(args.window)).await;
            let (c, r) = (cpu_seconds(owner_pid) - c0, cpu_seconds(relay_pid) - r0);
            let fps = (frames.load(Ordering::Relaxed) - f0) as f64 / t0.elapsed().as_secs_f64() / n as f64;
            for t in tasks {
                t.abort();
            }
            cpu.push((c, r, fps));
            actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        }
        let (cpu_1, cpu_100) = (cpu[0].0, cpu[1].0);
        relay1.push(cpu[0].1);
        relay100.push(cpu[1].1);
        eprintln!(
            "round {round}: capture-to-viewer median {lo:.1} ms on the owner, {lr:.1} ms relayed; {m:.1} msg/s, {:.0} kB/s; owner CPU {cpu_1:.2} s with 1 remote viewer, {cpu_100:.2} s with 100 ({:.1} fps each); relaying node {:.2} s, {:.2} s",
            b / 1000.0, cpu[1].2, cpu[0].1, cpu[1].1
        );
        lat_owner.push(lo);
        lat_relay.push(lr);
        msgs.push(m);
        bytes.push(b);
        cpu1.push(cpu_1);
        cpu100.push(cpu_100);
        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    }

    // Failover: kill -9 the owner of a camera watched on another node; time to frames again.
    let mut failovers = Vec::new();
    for round in 0..args.failovers {
        let placed = owners(nodes[0].haven.port, 3).await;
        let (camera, owner) = placed[round % placed.len()].clone();
        let oi = nodes.iter().position(|n| n.name == owner).unwrap();
        let wi = (oi + 1) % 3;
        let frames = Arc::new(AtomicU64::new(0));
        let tasks = viewers(nodes[wi].haven.port, &camera, 1, frames.clone(), None).await;
        actix_web::rt::time::sleep(Duration::from_secs(3)).await;
        let victim = nodes.remove(oi);
        let pid = victim.haven.pid();
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        let killed = Instant::now();
        // Frames in flight may still come; the gap starts when they stop.
        let mut last = (frames.load(Ordering::Relaxed), Instant::now());
        let gap = loop {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
            let n = frames.load(Ordering::Relaxed);
            if n != last.0 {
                if last.1.elapsed() > Duration::from_secs(1) {
                    break killed.elapsed().as_secs_f64();
                }
                last = (n, Instant::now());
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "no frames 60 s after kill -9");
        };
        for t in tasks {
            t.abort();
        }
        eprintln!("failover {round}: {camera} (owned by {owner}) streamed again on node {} {gap:.2} s after kill -9", if wi > oi { &nodes[wi - 1].name } else { &nodes[wi].name });
        failovers.push(gap);
        let mut child = victim.haven.child;
        let _ = child.wait();
        let haven = Haven::start(&victim.settings, &[], Some(&dir.join(format!("{}-{round}.log", victim.name))));
        nodes.insert(oi, Node { name: victim.name, settings: victim.settings, haven });
        actix_web::rt::time::sleep(Duration::from_secs_f64(args.lease)).await;
    }

    let (lo, lr) = (median(lat_owner), median(lat_relay));
    let (c1, c100) = (median(cpu1), median(cpu100));
    println!("| figure | median | |");
    println!("|---|---|---|");
    println!("| capture to viewer on the owner | {lo:.1} ms | |");
    println!("| capture to viewer through another node (relay) | {lr:.1} ms | +{:.1} ms, ratio {:.2} |", lr - lo, lr / lo);
    println!("| NATS messages per relayed camera | {:.1} msg/s | |", median(msgs));
    println!("| NATS bytes per relayed camera | {:.0} kB/s | |", median(bytes) / 1000.0);
    println!("| owner CPU, 1 viewer on another node | {c1:.2} s / {} s | |", args.window);
    println!("| owner CPU, 100 viewers on another node | {c100:.2} s / {} s | ratio to 1 viewer {:.2} |", args.window, c100 / c1);
    let (r1, r100) = (median(relay1), median(relay100));
    println!("| relaying node's CPU, 1 viewer / 100 viewers | {r1:.2} / {r100:.2} s / {} s | ratio {:.2} |", args.window, r100 / r1);
    println!("| failover after kill -9 (frames again on a surviving node), {} times | {:.2} s | lease {} s |", failovers.len(), median(failovers), args.lease);
    for n in nodes {
        n.haven.stop();
    }
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}
