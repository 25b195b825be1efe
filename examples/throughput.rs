//! What the machine sustains: 1, 3 and 6 demo cameras with AI on, one viewer each; per camera the
//! decode, processed and detection FPS, dropped frames and inference time, over a fixed window.
//!
//! `cargo build && cargo run --example throughput -- [--cameras 1,3,6] [--window 20]`

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};

#[path = "support/mod.rs"]
mod support;
use support::{shipped_settings_with_cameras, Haven};

async fn cameras(port: u16) -> Vec<serde_json::Value> {
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras")).send().await.unwrap();
    let v: serde_json::Value = res.json().limit(1 << 20).await.unwrap();
    v["cameras"].as_array().unwrap().clone()
}

#[actix_web::main]
async fn main() {
    support::help::help_if_asked(include_str!("throughput.rs"));
    let mut counts = vec![1usize, 3, 6];
    let mut window = 20.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cameras" => counts = args.next().unwrap().split(',').map(|v| v.parse().unwrap()).collect(),
            "--window" => window = args.next().unwrap().parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    let head = shipped_settings_with_cameras(0);
    println!("# throughput, AI on (yolo11n-pose 640x640), one viewer per camera, {window} s window");
    println!("| cameras | camera | decode fps | processed fps | detection fps | dropped/s | inference ms |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &counts {
        let settings = std::env::temp_dir().join(format!("haven-throughput-{}-{n}.toml", std::process::id()));
        let mut s = head.clone();
        for i in 0..n {
            s.push_str(&format!(
                "[[cameras]]\ncamera_id = \"cam{}\"\nsource = \"data/{}.mp4\"\nsource_type = \"video_file\"\n\n",
                i + 1,
                i % 3 + 1
            ));
        }
        std::fs::write(&settings, s).unwrap();
        let haven = Haven::start(&settings, &[], None);
        let port = haven.port;
        let mut tasks = Vec::new();
        for i in 0..n {
            let (_, mut ws) = awc::Client::new()
                .ws(format!("ws://127.0.0.1:{port}/ws/stream/cam{}", i + 1))
                .max_frame_size(16 << 20)
                .connect()
                .await
                .unwrap();
            tasks.push(actix_web::rt::spawn(async move {
                while let Some(Ok(frame)) = ws.next().await {
                    if let awc::ws::Frame::Ping(p) = frame {
                        let _ = ws.send(awc::ws::Message::Pong(p)).await;
                    }
                }
            }));
        }
        actix_web::rt::time::sleep(Duration::from_secs(5)).await;
        let before = cameras(port).await;
        actix_web::rt::time::sleep(Duration::from_secs_f64(window)).await;
        let after = cameras(port).await;
        for (b, a) in before.iter().zip(&after) {
            let rate = |k: &str| (a[k].as_u64().unwrap() - b[k].as_u64().unwrap()) as f64 / window;
            println!(
                "| {n} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
                a["camera_id"].as_str().unwrap(),
                rate("frames_decoded"),
                rate("frames_processed"),
                rate("inferences"),
                rate("dropped_frames"),
                a["inference_ms"].as_f64().unwrap()
            );
        }
        for t in tasks {
            t.abort();
        }
        haven.stop();
        let _ = std::fs::remove_file(settings);
    }
}
