//! Capture-to-viewer latency: for every frame a viewer receives, the receive time minus the packet's
//! capture timestamp (both on this machine's clock, over loopback). Prints p50/p95/p99 per case.
//!
//! `cargo build && cargo run --example latency -- [--seconds 15] [--viewers 1,100] [--ai on|off|both] [--log FILE] [--exe PATH=LABEL]...`
//!
//! `--exe` (repeatable) measures other builds side by side (PATH = `<checkout>/target/debug/haven`).
//!
//! Runs the real `haven` binary on one demo camera, with AI off and on, and for each viewer count.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};

#[path = "support/mod.rs"]
mod support;
use support::{Build, Haven};

/// The part of a frame message the latency needs; the base64 JPEG (`data`) is skipped, not copied.
#[derive(serde::Deserialize)]
struct FrameMessage {
    metadata: FrameMeta,
}

#[derive(serde::Deserialize)]
struct FrameMeta {
    seq: u64,
    timestamp: f64,
    inference_ms: Option<f64>,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// haven on the first demo camera, AI on or off.
/// `log`: where the server's log goes, with its per-frame timings (`haven::latency` at trace level).
fn start(build: &Build, ai: bool, log: Option<&std::path::Path>) -> (Haven, PathBuf) {
    let settings = std::env::temp_dir().join(format!("haven-latency-{}-{ai}.toml", std::process::id()));
    std::fs::write(&settings, build.settings_with_cameras(1).replace("ai_enabled = true", &format!("ai_enabled = {ai}"))).unwrap();
    let env: &[(&str, &str)] = if log.is_some() { &[("RUST_LOG", "info,haven::latency=trace")] } else { &[] };
    (build.start(&settings, env, log), settings)
}

#[actix_web::main]
async fn main() {
    support::help::help_if_asked(include_str!("latency.rs"));
    let mut seconds = 15.0;
    let mut counts = vec![1usize, 100];
    let mut modes = vec![false, true];
    let mut log: Option<PathBuf> = None;
    let mut builds = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().unwrap().parse().unwrap(),
            "--ai" => {
                modes = match args.next().as_deref() {
                    Some("on") => vec![true],
                    Some("off") => vec![false],
                    Some("both") => vec![false, true],
                    other => panic!("--ai takes on, off or both, not {other:?}"),
                }
            }
            "--log" => log = Some(args.next().unwrap().into()),
            "--exe" => builds.push(Build::parse(&args.next().unwrap())),
            "--viewers" => counts = args.next().unwrap().split(',').map(|v| v.parse().unwrap()).collect(),
            other => panic!("unknown argument {other}"),
        }
    }
    println!("# capture-to-viewer latency, one camera (data/1.mp4, 768x576 @ 10 fps), {seconds} s per case");
    if builds.is_empty() {
        builds.push(Build::current());
    }
    println!("| build | AI | viewers | frames | p50 ms | first viewer p50 ms | p95 ms | p99 ms | inference ms (median) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (&ai, build) in modes.iter().flat_map(|ai| builds.iter().map(move |b| (ai, b))) {
        let (haven, settings) = start(build, ai, log.as_deref());
        let port = haven.port;
        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        for &n in &counts {
            let samples = Arc::new(Mutex::new(Vec::<f64>::new()));
            // Per frame, the first viewer's latency: what is left of the median is the fan-out's spread.
            let first = Arc::new(Mutex::new(std::collections::HashMap::<u64, f64>::new()));
            let inference = Arc::new(Mutex::new(Vec::<f64>::new()));
            let mut tasks = Vec::new();
            for i in 0..n {
                let (_, mut ws) = awc::Client::new()
                    .ws(format!("ws://127.0.0.1:{port}/ws/stream/cam1"))
                    .max_frame_size(16 << 20)
                    .connect()
                    .await
                    .unwrap();
                let (samples, inference, first) = (samples.clone(), inference.clone(), first.clone());
                tasks.push(actix_web::rt::spawn(async move {
                    let warm_until = now() + 2.0;
                    while let Some(Ok(frame)) = ws.next().await {
                        match frame {
                            awc::ws::Frame::Text(bytes) => {
                                let received = now();
                                // Only the metadata is read: the clients share the server's cores, and
                                // copying every JPEG out of the JSON would slow the server being measured.
                                let m: FrameMessage = serde_json::from_slice(&bytes).unwrap();
                                if received < warm_until {
                                    continue;
                                }
                                let ms = (received - m.metadata.timestamp) * 1000.0;
                                samples.lock().unwrap().push(ms);
                                let mut first = first.lock().unwrap();
                                let f = first.entry(m.metadata.seq).or_insert(ms);
                                *f = f.min(ms);
                                if i == 0 {
                                    if let Some(ms) = m.metadata.inference_ms {
                                        inference.lock().unwrap().push(ms);
                                    }
                                }
                            }
                            awc::ws::Frame::Ping(p) => {
                                let _ = ws.send(awc::ws::Message::Pong(p)).await;
                            }
                            _ => {}
                        }
                    }
                }));
            }
            actix_web::rt::time::sleep(Duration::from_secs_f64(seconds + 2.0)).await;
            for t in tasks {
                t.abort();
            }
            let mut s = samples.lock().unwrap().clone();
            s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let mut inf = inference.lock().unwrap().clone();
            inf.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let mut f: Vec<f64> = first.lock().unwrap().values().copied().collect();
            f.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let inf_med = if inf.is_empty() { "-".to_string() } else { format!("{:.1}", pct(&inf, 0.5)) };
            println!(
                "| {} | {} | {n} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {inf_med} |",
                build.label,
                if ai { "on" } else { "off" },
                s.len(),
                pct(&s, 0.5),
                pct(&f, 0.5),
                pct(&s, 0.95),
                pct(&s, 0.99)
            );
            actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        }
        haven.stop();
        let _ = std::fs::remove_file(settings);
    }
}
