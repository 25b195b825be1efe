//! The README's demo under viewers, for memory: the shipped settings (three demo cameras, AI and
//! events on), 30 WebSocket viewers that read every frame (10 per camera) and one that never reads.
//! Per build: resident size (VmRSS, its anonymous and file-backed parts) sampled over a window after
//! a warm-up, where the resident pages lie (from /proc/PID/smaps, by mapping) and what the viewers got.
//!
//! `cargo build && cargo run --example demo_memory -- [--warmup 60] [--window 60] [--rounds 1]
//!   [--readers 30] [--never-read 1] [--skip-this] [--this COPY] [--exe PATH[=LABEL]]... [--variant LABEL:KEY=VALUE[,KEY=VALUE]]...`
//!
//! Each `--exe` (another build, with its checkout's settings) and `--variant` (this tree's build with
//! environment added, `MALLOC_ARENA_MAX=2`, say) runs in turn with this tree's build, round by round,
//! so that before and after are measured side by side on the same machine (docs/performance.md,
//! "Memory"); these options are shared with examples/capacity.rs (examples/support, `Builds`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};


#[path = "support/mod.rs"]
mod support;
use support::{median, repo, rss, Build, Builds};

struct Args {
    warmup: f64,
    window: f64,
    rounds: usize,
    readers: usize,
    never_read: usize,
    builds: Builds,
}

fn parse_args() -> Args {
    let mut a = Args { warmup: 60.0, window: 60.0, rounds: 1, readers: 30, never_read: 1, builds: Builds::new() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--warmup" => a.warmup = value().parse().expect("--warmup SECONDS"),
            "--window" => a.window = value().parse().expect("--window SECONDS"),
            "--rounds" => a.rounds = value().parse().expect("--rounds N"),
            "--readers" => a.readers = value().parse().expect("--readers N"),
            "--never-read" => a.never_read = value().parse().expect("--never-read N"),
            other if a.builds.parse(other, &mut value) => {}
            other => panic!("unknown argument {other} (see the comment at the top of examples/demo_memory.rs)"),
        }
    }
    a
}

const CAMERAS: [&str; 3] = ["cam1", "cam2", "cam3"];

/// The build's shipped settings, its events stored under `scratch` and its sources absolute.
fn settings_for(build: &Build, scratch: &Path) -> PathBuf {
    let mut text = build.settings_with_cameras(1000);
    text = text.replace("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", scratch.join("events").display()));
    for id in CAMERAS {
        let n = &id[3..];
        text = text.replace(&format!("source = \"data/{n}.mp4\""), &format!("source = \"{}\"", repo().join(format!("data/{n}.mp4")).display()));
    }
    let path = scratch.join("haven.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Resident MiB by what is mapped: the heap, thread stacks, other anonymous memory (glibc's other
/// arenas, large mmapped blocks), and each file (the program, each library).
fn smaps(pid: u32) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            let name = line.split_whitespace().nth(5).unwrap_or("");
            current = match name {
                "" => "anonymous (arenas, mmapped blocks, thread stacks)".into(),
                n if n.starts_with('[') => n.to_string(),
                n => {
                    let base = n.rsplit('/').next().unwrap_or(n);
                    // libavcodec.so.59.37.100 → libavcodec
                    base.split(".so").next().unwrap_or(base).to_string()
                }
            };
        } else if let Some(kb) = line.strip_prefix("Rss:") {
            let kb: f64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0.0);
            *out.entry(current.clone()).or_default() += kb / 1024.0;
        }
    }
    out
}

async fn reader(port: u16, cam: &str, frames: Arc<AtomicU64>) -> actix_web::rt::task::JoinHandle<()> {
    support::viewer(port, cam, move |_| {
        frames.fetch_add(1, Ordering::Relaxed);
    })
    .await
}

/// A socket that completes the upgrade and never reads a byte.
fn never_reader(port: u16, cam: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /ws/stream/{cam} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    s
}

/// One round of one build: medians of [VmRSS, anon, file] over the window, the last smaps, and the
/// frames per second each reading viewer got.
struct Round {
    rss: [f64; 3],
    max_rss: f64,
    /// Medians of VmRSS over the window's first and last tenth (at least one sample each): drift.
    drift: (f64, f64),
    smaps: BTreeMap<String, f64>,
    viewer_fps: f64,
    /// The server's last glibc figures (`haven::memory` logs them every minute at debug level).
    heap: Option<String>,
}

async fn round(build: &Build, env: &[(String, String)], args: &Args) -> Round {
    let scratch = std::env::temp_dir().join(format!("haven-demo-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let settings = settings_for(build, &scratch);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("RUST_LOG", "info,haven::memory=debug"));
    let log = scratch.join("server.log");
    let haven = build.start(&settings, &env, Some(&log));
    let (pid, port) = (haven.pid(), haven.port);
    let frames = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..args.readers {
        tasks.push(reader(port, CAMERAS[i % 3], frames.clone()).await);
    }
    let never: Vec<_> = (0..args.never_read).map(|i| never_reader(port, CAMERAS[i % 3])).collect();
    actix_web::rt::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let f0 = frames.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut samples: Vec<[f64; 3]> = Vec::new();
    while t0.elapsed().as_secs_f64() < args.window {
        samples.push(rss(pid));
        actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    }
    let viewer_fps = (frames.load(Ordering::Relaxed) - f0) as f64 / t0.elapsed().as_secs_f64() / args.readers.max(1) as f64;
    let out = Round {
        rss: [0, 1, 2].map(|k| median(samples.iter().map(|s| s[k]).collect())),
        max_rss: samples.iter().map(|s| s[0]).fold(0.0, f64::max),
        drift: {
            let tenth = (samples.len() / 10).max(1);
            let rss: Vec<f64> = samples.iter().map(|s| s[0]).collect();
            (median(rss[..tenth].to_vec()), median(rss[rss.len() - tenth..].to_vec()))
        },
        smaps: smaps(pid),
        viewer_fps,
        heap: std::fs::read_to_string(&log).ok().and_then(|t| t.lines().rev().find(|l| l.contains("heap:")).map(|l| l[l.find("heap:").unwrap()..].to_string())),
    };
    for t in tasks {
        t.abort();
    }
    drop(never);
    haven.stop();
    let _ = std::fs::remove_dir_all(&scratch);
    out
}

#[actix_web::main]
async fn main() {
    support::help::help_if_asked(include_str!("demo_memory.rs"));
    let args = parse_args();
    println!(
        "# demo memory: the shipped settings (3 demo cameras), {} reading viewers + {} never reading; {} s warm-up, RSS sampled every 5 s for {} s; {} round(s)",
        args.readers, args.never_read, args.warmup, args.window, args.rounds
    );
    let mut results: Vec<Vec<Round>> = args.builds.list.iter().map(|_| Vec::new()).collect();
    for r in 0..args.rounds {
        for (b, (build, env)) in args.builds.list.iter().enumerate() {
            eprintln!("round {} of {}: {}", r + 1, args.rounds, build.label);
            let got = round(build, env, &args).await;
            eprintln!("  RSS {:.1} MiB (anon {:.1}, file {:.1}), viewers {:.1} fps", got.rss[0], got.rss[1], got.rss[2], got.viewer_fps);
            eprintln!("  {}", got.heap.as_deref().unwrap_or("(no heap figures: the round was under a minute)"));
            results[b].push(got);
        }
    }
    println!("\n| build | RSS MiB (median of rounds) | anonymous | file-backed | max RSS | RSS first → last tenth of the window (drift) | each reading viewer's fps |");
    println!("|---|---|---|---|---|---|---|");
    for (b, (build, _)) in args.builds.list.iter().enumerate() {
        let m = |f: &dyn Fn(&Round) -> f64| median(results[b].iter().map(f).collect());
        let (a, z) = (m(&|r| r.drift.0), m(&|r| r.drift.1));
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {a:.1} → {z:.1} ({:+.2} %) | {:.1} |",
            build.label,
            m(&|r| r.rss[0]),
            m(&|r| r.rss[1]),
            m(&|r| r.rss[2]),
            m(&|r| r.max_rss),
            (z - a) / a * 100.0,
            m(&|r| r.viewer_fps)
        );
    }
    println!();
    for (b, (build, _)) in args.builds.list.iter().enumerate() {
        for (r, got) in results[b].iter().enumerate() {
            println!("{} round {}: {}", build.label, r + 1, got.heap.as_deref().unwrap_or("no heap figures (under a minute)"));
        }
    }
    // Where the resident pages lie, from the last round of each build: every mapping over 1 MiB.
    let mut names: Vec<String> = results.iter().flat_map(|r| r.last().unwrap().smaps.keys().cloned()).collect();
    names.sort();
    names.dedup();
    let last = |b: usize, n: &str| results[b].last().unwrap().smaps.get(n).copied().unwrap_or(0.0);
    names.retain(|n| (0..results.len()).any(|b| last(b, n) >= 1.0));
    names.sort_by(|x, y| last(0, y).total_cmp(&last(0, x)));
    let labels: Vec<&str> = args.builds.list.iter().map(|(b, _)| b.label.as_str()).collect();
    println!("\n| resident MiB by mapping (last round) | {} |", labels.join(" | "));
    println!("|---|{}", "---|".repeat(labels.len()));
    for n in &names {
        let cells: Vec<String> = (0..results.len()).map(|b| format!("{:.1}", last(b, n))).collect();
        println!("| {n} | {} |", cells.join(" | "));
    }
    let rest: Vec<String> = (0..results.len())
        .map(|b| format!("{:.1}", results[b].last().unwrap().smaps.iter().filter(|(n, _)| !names.contains(n)).map(|(_, v)| v).sum::<f64>()))
        .collect();
    println!("| everything under 1 MiB | {} |", rest.join(" | "));
}
