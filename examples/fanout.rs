//! Fan-out benchmark: the server's CPU and memory with 1, 2, 10 and 100 viewers on one camera.
//!
//! `cargo run --example fanout -- [--viewers 1,2,10,100] [--window 10] [--rounds 3] [--ai] [--renditions] [--exe PATH=LABEL]...`
//!
//! Starts the real `haven` binary (build it first: `cargo build`) on one demo camera, then for each
//! round and each viewer count connects that many WebSocket viewers, lets them settle, and measures
//! the server process's CPU seconds (utime + stime from /proc) and RSS over a fixed window. Prints
//! medians over the rounds and ratios to the smallest viewer count, all measured in one run.
//!
//! `--renditions` measures live-view modes instead: one viewer each of text full, binary full and
//! binary 320 (bytes per second a viewer receives), then 100 viewers on one rendition against 100
//! spread round-robin over three (full text, binary 640, binary 320): the cost must grow with
//! renditions, not viewers.
//!
//! `--exe PATH=LABEL` (repeatable) measures other builds of the server side by side, each round
//! running every build in turn (PATH = `<checkout>/target/debug/haven`, with that checkout's settings).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};


#[path = "support/mod.rs"]
mod support;
use support::{cpu_seconds, median, rss_mib, Build};

struct Args {
    viewers: Vec<usize>,
    window: f64,
    rounds: usize,
    ai: bool,
    renditions: bool,
    builds: Vec<Build>,
}

/// `n` viewers, viewer `i` asking with query `queries[i % len]`.
struct Case {
    n: usize,
    queries: Vec<&'static str>,
    label: String,
}

fn parse_args() -> Args {
    let mut a = Args { viewers: vec![1, 2, 10, 100], window: 10.0, rounds: 3, ai: false, renditions: false, builds: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--viewers" => a.viewers = it.next().unwrap().split(',').map(|v| v.parse().unwrap()).collect(),
            "--window" => a.window = it.next().unwrap().parse().unwrap(),
            "--rounds" => a.rounds = it.next().unwrap().parse().unwrap(),
            "--ai" => a.ai = true,
            "--renditions" => a.renditions = true,
            "--exe" => a.builds.push(Build::parse(&it.next().unwrap())),
            other => panic!("unknown argument {other}"),
        }
    }
    if a.builds.is_empty() {
        a.builds.push(Build::current());
    }
    a
}

async fn camera_counter(port: u16, key: &str) -> u64 {
    if key == "all_encodes" {
        return Box::pin(camera_counter(port, "frames_encoded")).await + Box::pin(camera_counter(port, "renditions_encoded")).await;
    }
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras/cam1")).send().await.unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    v[key].as_u64().unwrap_or(0) // an older build may lack a counter
}

/// Connects the case's viewers that read (and answer pings) until dropped; counts frames and bytes received.
async fn connect_viewers(port: u16, case: &Case, frames: Arc<AtomicU64>, bytes: Arc<AtomicU64>) -> Vec<actix_web::rt::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..case.n {
        let query = case.queries[i % case.queries.len()];
        let (frames, bytes) = (frames.clone(), bytes.clone());
        let on_frame = move |b: &[u8]| {
            frames.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        };
        tasks.push(support::viewer(port, &format!("cam1?{query}"), on_frame).await);
    }
    tasks
}

#[actix_web::main]
async fn main() {
    support::help::help_if_asked(include_str!("fanout.rs"));
    let args = parse_args();
    println!("# fan-out: one camera (data/1.mp4, 768x576 @ 10 fps), AI {}, window {} s, {} rounds",
        if args.ai { "on" } else { "off" }, args.window, args.rounds);
    let cases: Vec<Case> = if args.renditions {
        vec![
            Case { n: 1, queries: vec![""], label: "1 text full".into() },
            Case { n: 1, queries: vec!["format=binary"], label: "1 binary full".into() },
            Case { n: 1, queries: vec!["format=binary&width=320"], label: "1 binary 320".into() },
            Case {
                n: 3,
                queries: vec!["", "format=binary&width=640", "format=binary&width=320"],
                label: "3, one on each of three (text full, binary 640, binary 320)".into(),
            },
            Case { n: 100, queries: vec![""], label: "100 on one rendition (text full)".into() },
            Case {
                n: 100,
                queries: vec!["", "format=binary&width=640", "format=binary&width=320"],
                label: "100 over three (text full, binary 640, binary 320)".into(),
            },
        ]
    } else {
        args.viewers.iter().map(|&n| Case { n, queries: vec![""], label: n.to_string() }).collect()
    };
    type Samples = Vec<f64>;
    let mut results: Vec<(&Build, &Case, Samples, Samples, Samples, Samples, Samples, Samples)> = args
        .builds
        .iter()
        .flat_map(|b| cases.iter().map(move |c| (b, c, vec![], vec![], vec![], vec![], vec![], vec![])))
        .collect();
    for round in 0..args.rounds {
        for build in &args.builds {
            let settings = std::env::temp_dir().join(format!("haven-fanout-{}.toml", std::process::id()));
            let one_camera = build.settings_with_cameras(1).replace("ai_enabled = true", &format!("ai_enabled = {}", args.ai));
            std::fs::write(&settings, one_camera).unwrap();
            let haven = build.start(&settings, &[("HAVEN__STREAM__MAX_FPS", "30")], None);
            let (pid, port) = (haven.pid(), haven.port);
            actix_web::rt::time::sleep(Duration::from_secs(2)).await;
            for r in results.iter_mut().filter(|r| std::ptr::eq(r.0, build)) {
                measure(r, round, build, pid, port, args.window).await;
            }
            haven.stop();
            let _ = std::fs::remove_file(&settings);
        }
    }
    print_table(&results, args.window);
}

type Row<'a> = (&'a Build, &'a Case, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// One case on a running server: connects its viewers, lets them settle, measures over `window` s.
async fn measure(r: &mut Row<'_>, round: usize, build: &Build, pid: u32, port: u16, window: f64) {
    let case = r.1;
    let n = case.n;
    let (frames, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let rss_before = rss_mib(pid);
    let tasks = connect_viewers(port, case, frames.clone(), bytes.clone()).await;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, f0, b0, enc0, inf0) = (
        cpu_seconds(pid),
        frames.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        camera_counter(port, "all_encodes").await,
        camera_counter(port, "inferences").await,
    );
    let t0 = Instant::now();
    actix_web::rt::time::sleep(Duration::from_secs_f64(window)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let got = (frames.load(Ordering::Relaxed) - f0) as f64;
    let got_bytes = (bytes.load(Ordering::Relaxed) - b0) as f64;
    let encoded = (camera_counter(port, "all_encodes").await - enc0) as f64;
    let inferred = (camera_counter(port, "inferences").await - inf0) as f64;
    let rss = rss_mib(pid);
    r.2.push(cpu);
    r.3.push(rss);
    r.4.push(got / elapsed / n as f64);
    r.5.push(encoded / elapsed);
    r.6.push((rss - rss_before) * 1024.0 / n as f64);
    r.7.push(got_bytes / elapsed / n as f64 / 1000.0);
    eprintln!(
        "round {round} {} {}: cpu {cpu:.2} s, rss {rss:.1} MiB, {:.1} fps/viewer, {:.0} kB/s/viewer, {:.1} encodes/s, {:.1} inferences/s",
        build.label, case.label, got / elapsed / n as f64, got_bytes / elapsed / n as f64 / 1000.0, encoded / elapsed, inferred / elapsed
    );
    for t in tasks {
        t.abort();
    }
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
}

fn print_table(results: &[Row<'_>], window: f64) {
    let base = median(results[0].2.clone());
    println!(
        "| build | viewers | server CPU s / {window} s (median) | ratio to {} {} | RSS MiB | fps per viewer | kB/s per viewer | JPEG encodes/s | RSS growth per viewer KiB |",
        results[0].0.label, results[0].1.label
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (build, case, cpu, rss, fps, enc, per, kbps) in results {
        let c = median(cpu.clone());
        println!(
            "| {} | {} | {c:.2} | {:.2} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} |",
            build.label,
            case.label,
            c / base,
            median(rss.clone()),
            median(fps.clone()),
            median(kbps.clone()),
            median(enc.clone()),
            median(per.clone())
        );
    }
}
