//! Fan-out benchmark: the server's CPU and memory with 1, 2, 10 and 100 viewers on one camera.
//!
//! `cargo run --example fanout -- [--viewers 1,2,10,100] [--window 10] [--rounds 3] [--ai]`
//!
//! Starts the real `haven` binary (build it first: `cargo build`) on one demo camera, then for each
//! round and each viewer count connects that many WebSocket viewers, lets them settle, and measures
//! the server process's CPU seconds (utime + stime from /proc) and RSS over a fixed window. Prints
//! medians over the rounds and ratios to the smallest viewer count, all measured in one run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};

#[path = "support/mod.rs"]
mod support;
use support::{cpu_seconds, median, rss_mib, shipped_settings_with_cameras, Haven};

struct Args {
    viewers: Vec<usize>,
    window: f64,
    rounds: usize,
    ai: bool,
}

fn parse_args() -> Args {
    let mut a = Args { viewers: vec![1, 2, 10, 100], window: 10.0, rounds: 3, ai: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--viewers" => a.viewers = it.next().unwrap().split(',').map(|v| v.parse().unwrap()).collect(),
            "--window" => a.window = it.next().unwrap().parse().unwrap(),
            "--rounds" => a.rounds = it.next().unwrap().parse().unwrap(),
            "--ai" => a.ai = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

async fn camera_counter(port: u16, key: &str) -> u64 {
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras/cam1")).send().await.unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    v[key].as_u64().unwrap()
}

/// Connects `n` viewers that read (and answer pings) until dropped; counts frames received.
async fn connect_viewers(port: u16, n: usize, frames: Arc<AtomicU64>) -> Vec<actix_web::rt::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (_, mut ws) = awc::Client::new()
            .ws(format!("ws://127.0.0.1:{port}/ws/stream/cam1"))
            .max_frame_size(16 << 20)
            .connect()
            .await
            .expect("viewer connects");
        let frames = frames.clone();
        tasks.push(actix_web::rt::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                match frame {
                    awc::ws::Frame::Text(_) => {
                        frames.fetch_add(1, Ordering::Relaxed);
                    }
                    awc::ws::Frame::Ping(p) => {
                        let _ = ws.send(awc::ws::Message::Pong(p)).await;
                    }
                    _ => {}
                }
            }
        }));
    }
    tasks
}

#[actix_web::main]
async fn main() {
    let args = parse_args();
    let settings = std::env::temp_dir().join(format!("haven-fanout-{}.toml", std::process::id()));
    let one_camera = shipped_settings_with_cameras(1).replace("ai_enabled = true", &format!("ai_enabled = {}", args.ai));
    std::fs::write(&settings, one_camera).unwrap();
    let haven = Haven::start(&settings, &[("HAVEN__STREAM__MAX_FPS", "30")], None);
    let (pid, port) = (haven.pid(), haven.port);
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;

    println!("# fan-out: one camera (data/1.mp4, 768x576 @ 10 fps), AI {}, window {} s, {} rounds",
        if args.ai { "on" } else { "off" }, args.window, args.rounds);
    let mut results: Vec<(usize, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)> =
        args.viewers.iter().map(|&n| (n, vec![], vec![], vec![], vec![], vec![])).collect();
    for round in 0..args.rounds {
        for r in results.iter_mut() {
            let n = r.0;
            let frames = Arc::new(AtomicU64::new(0));
            let rss_before = rss_mib(pid);
            let tasks = connect_viewers(port, n, frames.clone()).await;
            actix_web::rt::time::sleep(Duration::from_secs(2)).await;
            let (cpu0, f0, enc0, inf0) = (
                cpu_seconds(pid),
                frames.load(Ordering::Relaxed),
                camera_counter(port, "frames_encoded").await,
                camera_counter(port, "inferences").await,
            );
            let t0 = Instant::now();
            actix_web::rt::time::sleep(Duration::from_secs_f64(args.window)).await;
            let elapsed = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds(pid) - cpu0;
            let got = (frames.load(Ordering::Relaxed) - f0) as f64;
            let encoded = (camera_counter(port, "frames_encoded").await - enc0) as f64;
            let inferred = (camera_counter(port, "inferences").await - inf0) as f64;
            let rss = rss_mib(pid);
            r.1.push(cpu);
            r.2.push(rss);
            r.3.push(got / elapsed / n as f64);
            r.4.push(encoded / elapsed);
            r.5.push((rss - rss_before) * 1024.0 / n as f64);
            eprintln!(
                "round {round} viewers {n:>3}: cpu {cpu:.2} s, rss {rss:.1} MiB, {:.1} fps/viewer, {:.1} encodes/s, {:.1} inferences/s",
                got / elapsed / n as f64, encoded / elapsed, inferred / elapsed
            );
            for t in tasks {
                t.abort();
            }
            actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let base = median(results[0].1.clone());
    println!("| viewers | server CPU s / {} s (median) | ratio to {} viewer(s) | RSS MiB | fps per viewer | JPEG encodes/s | RSS growth per viewer KiB |",
        args.window, results[0].0);
    println!("|---|---|---|---|---|---|---|");
    for (n, cpu, rss, fps, enc, per) in &results {
        let c = median(cpu.clone());
        println!(
            "| {n} | {c:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} |",
            c / base,
            median(rss.clone()),
            median(fps.clone()),
            median(enc.clone()),
            median(per.clone())
        );
    }
    haven.stop();
    let _ = std::fs::remove_file(settings);
}
