//! Soak: the real server for a long run under churn, sampled for leaks.
//!
//! `cargo build && cargo run --example soak -- [--seconds 600] [--sample 5] [--csv target/soak.csv]
//!   [--churn-per-sec 2] [--never-read 3] [--slow-at 60] [--slow-secs 60] [--no-ai]`
//!
//! Starts `target/debug/haven` on a copy of the shipped settings (three demo cameras, AI on, events on
//! into a temporary directory) and, for the whole run:
//! - one steady viewer per camera that reads every frame (its rate is the "other viewers' rate");
//! - viewers joining and leaving continuously: `--churn-per-sec` new sockets a second on a random
//!   camera at a random rate (1-10 fps), each staying 1-20 s, then leaving with a close frame or by
//!   dropping the connection (half each);
//! - `--never-read` raw sockets that upgrade and never read a byte (each replaced every 30 s);
//! - one slow viewer that reads, then stops reading for `--slow-secs` from `--slow-at`.
//!
//! Every `--sample` seconds it records the server's RSS, CPU (user + system), thread count
//! (/proc/PID/status Threads) and descriptor count (/proc/PID/fd), the viewers the server counts, the
//! steady viewers' frame rates and the cameras' processed rates into a CSV. At the end the churn
//! stops, every client leaves, and the server is sampled once more when quiet. The summary gives RSS
//! drift after warm-up, thread and descriptor growth (quiet start vs quiet end), the slow viewer's
//! effect, and connection totals. Plot with `python3 scripts/plot_soak.py CSV docs/plots/soak.png`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};

#[path = "support/mod.rs"]
mod support;
use support::{repo, Haven};

struct Args {
    seconds: f64,
    sample: f64,
    csv: PathBuf,
    churn_per_sec: f64,
    never_read: usize,
    slow_at: f64,
    slow_secs: f64,
    warmup: f64,
    ai: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        seconds: 600.0,
        sample: 5.0,
        csv: repo().join("target/soak.csv"),
        churn_per_sec: 2.0,
        never_read: 3,
        slow_at: 60.0,
        slow_secs: 60.0,
        warmup: 60.0,
        ai: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().expect("a value");
        match arg.as_str() {
            "--seconds" => a.seconds = val().parse().unwrap(),
            "--sample" => a.sample = val().parse().unwrap(),
            "--csv" => a.csv = val().into(),
            "--churn-per-sec" => a.churn_per_sec = val().parse().unwrap(),
            "--never-read" => a.never_read = val().parse().unwrap(),
            "--slow-at" => a.slow_at = val().parse().unwrap(),
            "--slow-secs" => a.slow_secs = val().parse().unwrap(),
            "--warmup" => a.warmup = val().parse().unwrap(),
            "--no-ai" => a.ai = false,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}


/// Process figures from /proc.
struct Proc {
    rss_mib: f64,
    /// The anonymous part of the RSS (heap, stacks): what a leak would grow. The rest is file-backed,
    /// mostly code pages of the libraries (FFmpeg, x264, OpenCV) paged in as new paths first run.
    anon_mib: f64,
    cpu_s: f64,
    threads: u64,
    fds: u64,
}

fn sample_proc(pid: u32) -> Proc {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server alive");
    let field = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    Proc {
        rss_mib: field("VmRSS:") / 1024.0,
        anon_mib: field("RssAnon:") / 1024.0,
        cpu_s: ticks / 100.0,
        threads: field("Threads:") as u64,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64,
    }
}

/// A tiny deterministic generator (xorshift), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() % 1_000_000) as f64 / 1_000_000.0 * (hi - lo)
    }
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    failed: AtomicU64,
    closed_by_us: AtomicU64,
    dropped_by_us: AtomicU64,
    closed_by_server: AtomicU64,
    never_read_opened: AtomicU64,
}

const CAMERAS: [&str; 3] = ["cam1", "cam2", "cam3"];

/// A viewer that reads (answering pings) until `until` or `stop`; counts text frames into `frames`.
async fn read_until(
    ws: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    until: Instant,
    frames: &AtomicU64,
    stop: &AtomicBool,
) -> Result<(), String> {
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let left = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(500));
        if left.is_zero() {
            return Ok(());
        }
        match actix_web::rt::time::timeout(left, ws.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(awc::ws::Frame::Text(_)))) => {
                frames.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Ok(awc::ws::Frame::Ping(p)))) => {
                let _ = ws.send(awc::ws::Message::Pong(p)).await;
            }
            Ok(Some(Ok(awc::ws::Frame::Close(r)))) => return Err(format!("{r:?}")),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("connection ended".into()),
        }
    }
}

async fn connect(port: u16, path: &str) -> Result<actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>, String> {
    awc::Client::new()
        .ws(format!("ws://127.0.0.1:{port}{path}"))
        .max_frame_size(16 << 20)
        .connect()
        .await
        .map(|(_, ws)| ws)
        .map_err(|e| e.to_string())
}

async fn viewers_counted(port: u16) -> u64 {
    let Ok(mut res) = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras")).send().await else {
        return 0;
    };
    let v: serde_json::Value = res.json().limit(1 << 20).await.unwrap_or_default();
    v["cameras"].as_array().map(|c| c.iter().map(|c| c["viewers"].as_u64().unwrap_or(0)).sum()).unwrap_or(0)
}

async fn processed(port: u16) -> Vec<u64> {
    let Ok(mut res) = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras")).send().await else {
        return vec![0; 3];
    };
    let v: serde_json::Value = res.json().limit(1 << 20).await.unwrap_or_default();
    CAMERAS
        .iter()
        .map(|id| {
            v["cameras"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["camera_id"] == *id))
                .and_then(|c| c["frames_encoded"].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[actix_web::main]
async fn main() {
    support::help::help_if_asked(include_str!("soak.rs"));
    let args = parse_args();
    let scratch = std::env::temp_dir().join(format!("haven-soak-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let settings = scratch.join("haven.toml");
    let shipped = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut text = shipped.replace("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", scratch.join("events").display()));
    for id in CAMERAS {
        let n = &id[3..];
        text = text.replace(&format!("source = \"data/{n}.mp4\""), &format!("source = \"{}\"", repo().join(format!("data/{n}.mp4")).display()));
    }
    if !args.ai {
        text = text.replace("ai_enabled = true", "ai_enabled = false");
    }
    std::fs::write(&settings, text).unwrap();
    let log_path = scratch.join("server.log");
    let haven = Haven::start(&settings, &[], Some(&log_path));
    let (pid, port) = (haven.pid(), haven.port);

    // A quiet baseline: cameras and the model warmed up (AI and events run unwatched), no client yet.
    actix_web::rt::time::sleep(Duration::from_secs(20)).await;
    let quiet_start = sample_proc(pid);
    eprintln!("quiet start: rss {:.1} MiB, {} threads, {} descriptors", quiet_start.rss_mib, quiet_start.threads, quiet_start.fds);

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let steady_frames: Arc<Vec<AtomicU64>> = Arc::new(CAMERAS.iter().map(|_| AtomicU64::new(0)).collect());
    let churn_frames = Arc::new(AtomicU64::new(0));

    // Steady viewers, one per camera, for the whole run.
    let mut steady = Vec::new();
    for (i, id) in CAMERAS.iter().enumerate() {
        let mut ws = connect(port, &format!("/ws/stream/{id}")).await.expect("steady viewer connects");
        let (frames, stop) = (steady_frames.clone(), stop.clone());
        steady.push(actix_web::rt::spawn(async move {
            let r = read_until(&mut ws, Instant::now() + Duration::from_secs(1 << 30), &frames[i], &stop).await;
            let _ = ws.send(awc::ws::Message::Close(None)).await;
            r
        }));
    }

    // Churn.
    let churn = {
        let (stop, counters, frames) = (stop.clone(), counters.clone(), churn_frames.clone());
        let gap = Duration::from_secs_f64(1.0 / args.churn_per_sec);
        actix_web::rt::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut live = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let cam = CAMERAS[(rng.next() % 3) as usize];
                let fps = rng.range(1.0, 10.0);
                let stay = Duration::from_secs_f64(rng.range(1.0, 20.0));
                let polite = rng.next() % 2 == 0;
                let (stop2, counters, frames) = (stop.clone(), counters.clone(), frames.clone());
                live.push(actix_web::rt::spawn(async move {
                    match connect(port, &format!("/ws/stream/{cam}?fps={fps:.2}")).await {
                        Err(_) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(mut ws) => {
                            counters.opened.fetch_add(1, Ordering::Relaxed);
                            match read_until(&mut ws, Instant::now() + stay, &frames, &stop2).await {
                                Err(_) => {
                                    counters.closed_by_server.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(()) if polite => {
                                    let _ = ws.send(awc::ws::Message::Close(None)).await;
                                    counters.closed_by_us.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(()) => {
                                    counters.dropped_by_us.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }));
                live.retain(|h: &actix_web::rt::task::JoinHandle<()>| !h.is_finished());
                actix_web::rt::time::sleep(gap).await;
            }
            for h in live {
                let _ = h.await;
            }
        })
    };

    // Never-readers: raw sockets that upgrade and never read, each replaced every 30 s.
    let never: Vec<_> = (0..args.never_read)
        .map(|i| {
            let (stop, counters) = (stop.clone(), counters.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    let cam = CAMERAS[i % 3];
                    write!(
                        s,
                        "GET /ws/stream/{cam}?fps=30 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    )
                    .unwrap();
                    counters.never_read_opened.fetch_add(1, Ordering::Relaxed);
                    let until = Instant::now() + Duration::from_secs(30);
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    drop(s);
                }
            })
        })
        .collect();

    // The slow viewer: reads, stops reading for slow_secs, then tries again.
    let slow = {
        let (slow_at, slow_secs, stop) = (args.slow_at, args.slow_secs, stop.clone());
        actix_web::rt::spawn(async move {
            let frames = AtomicU64::new(0);
            let mut ws = connect(port, "/ws/stream/cam1").await.ok()?;
            let r = read_until(&mut ws, started + Duration::from_secs_f64(slow_at), &frames, &stop).await;
            if r.is_err() || stop.load(Ordering::Relaxed) {
                return Some(format!("closed before stalling: {r:?}"));
            }
            actix_web::rt::time::sleep(Duration::from_secs_f64(slow_secs)).await; // not reading
            let before = frames.load(Ordering::Relaxed);
            let r = read_until(&mut ws, Instant::now() + Duration::from_secs(5), &frames, &stop).await;
            Some(format!(
                "after {slow_secs} s unread: {} frames of backlog, then {}",
                frames.load(Ordering::Relaxed) - before,
                match r {
                    Ok(()) => "still open".to_string(),
                    Err(e) => format!("closed: {e}"),
                }
            ))
        })
    };

    // Sampling.
    let mut csv = std::fs::File::create(&args.csv).expect("CSV path writable");
    writeln!(
        csv,
        "t_s,phase,rss_mib,rss_anon_mib,cpu_s,cpu_pct,threads,fds,viewers,opened_total,steady_fps_cam1,steady_fps_cam2,steady_fps_cam3,processed_fps_cam1,processed_fps_cam2,processed_fps_cam3"
    )
    .unwrap();
    let period = Duration::from_secs_f64(args.sample);
    let mut rows: Vec<(f64, String, Proc, u64, [f64; 3])> = Vec::new();
    let mut last = (Instant::now(), sample_proc(pid).cpu_s, [0u64; 3], processed(port).await);
    let enc0 = last.3.clone();
    let mut next = Instant::now() + period;
    let slow_window = (args.slow_at, args.slow_at + args.slow_secs);
    println!("# soak: {} s, sampling every {} s into {}", args.seconds, args.sample, args.csv.display());
    loop {
        actix_web::rt::time::sleep_until(next.into()).await;
        next += period;
        let now = Instant::now();
        let t = now.duration_since(started).as_secs_f64();
        let p = sample_proc(pid);
        let dt = now.duration_since(last.0).as_secs_f64();
        let cpu_pct = (p.cpu_s - last.1) / dt * 100.0;
        let steady_now: Vec<u64> = steady_frames.iter().map(|f| f.load(Ordering::Relaxed)).collect();
        let steady_fps: Vec<f64> = (0..3).map(|i| (steady_now[i] - last.2[i]) as f64 / dt).collect();
        let proc_now = processed(port).await;
        let proc_fps: Vec<f64> = (0..3).map(|i| (proc_now[i].saturating_sub(last.3[i])) as f64 / dt).collect();
        let viewers = viewers_counted(port).await;
        let phase = if t < args.warmup.min(args.seconds * 0.2) {
            "warmup"
        } else if t >= slow_window.0 && t < slow_window.1 {
            "slow"
        } else {
            "run"
        };
        let opened = counters.opened.load(Ordering::Relaxed) + counters.never_read_opened.load(Ordering::Relaxed);
        writeln!(
            csv,
            "{t:.1},{phase},{:.1},{:.1},{:.2},{cpu_pct:.1},{},{},{viewers},{opened},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2}",
            p.rss_mib, p.anon_mib, p.cpu_s, p.threads, p.fds, steady_fps[0], steady_fps[1], steady_fps[2], proc_fps[0], proc_fps[1], proc_fps[2]
        )
        .unwrap();
        csv.flush().unwrap();
        eprintln!(
            "t {t:>6.1} {phase:<6} rss {:>7.1} MiB (anon {:>7.1})  cpu {cpu_pct:>5.1}%  threads {:>3}  fds {:>4}  viewers {viewers:>3}  opened {opened:>5}  steady fps {:.1}/{:.1}/{:.1}",
            p.rss_mib, p.anon_mib, p.threads, p.fds, steady_fps[0], steady_fps[1], steady_fps[2]
        );
        last = (now, p.cpu_s, [steady_now[0], steady_now[1], steady_now[2]], proc_now);
        rows.push((t, phase.to_string(), p, viewers, [steady_fps[0], steady_fps[1], steady_fps[2]]));
        if now >= end {
            break;
        }
    }

    let (steady_got, encoded): (u64, u64) = (last.2.iter().sum(), (0..3).map(|i| last.3[i].saturating_sub(enc0[i])).sum());

    // Quiesce: the churn, the never-readers and the steady viewers stop; the server is sampled quiet.
    stop.store(true, Ordering::Relaxed);
    let _ = churn.await;
    for t in never {
        let _ = t.join();
    }
    let slow_result = slow.await.ok().flatten();
    // Wait until only nothing is left on the server (the steady viewers have been told to stop too).
    for s in steady {
        let _ = s.await;
    }
    let quiet_deadline = Instant::now() + Duration::from_secs(30);
    while viewers_counted(port).await > 0 && Instant::now() < quiet_deadline {
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
    actix_web::rt::time::sleep(Duration::from_secs(6)).await; // half-open requests time out (5 s)
    let quiet_end = sample_proc(pid);
    let viewers_end = viewers_counted(port).await;
    let exit = haven.stop();

    // Summary.
    let after: Vec<&(f64, String, Proc, u64, [f64; 3])> = rows.iter().filter(|r| r.1 != "warmup").collect();
    let n = after.len().max(1);
    let head: Vec<f64> = after.iter().take((n / 10).max(1)).map(|r| r.2.rss_mib).collect();
    let tail: Vec<f64> = after.iter().rev().take((n / 10).max(1)).map(|r| r.2.rss_mib).collect();
    let (rss_start, rss_end) = (median(head), median(tail));
    let anon_head: Vec<f64> = after.iter().take((n / 10).max(1)).map(|r| r.2.anon_mib).collect();
    let anon_tail: Vec<f64> = after.iter().rev().take((n / 10).max(1)).map(|r| r.2.anon_mib).collect();
    let (anon_start, anon_end) = (median(anon_head), median(anon_tail));
    // Least-squares slope of RSS over time after warm-up.
    let (mx, my) = (
        after.iter().map(|r| r.0).sum::<f64>() / n as f64,
        after.iter().map(|r| r.2.rss_mib).sum::<f64>() / n as f64,
    );
    let sxy: f64 = after.iter().map(|r| (r.0 - mx) * (r.2.rss_mib - my)).sum();
    let sxx: f64 = after.iter().map(|r| (r.0 - mx).powi(2)).sum();
    let slope_per_hour = if sxx > 0.0 { sxy / sxx * 3600.0 } else { 0.0 };
    // The same drift counted only once every phase of the workload has run (from a minute after the
    // slow viewer's stall): the working set's peak includes that stall.
    let settled: Vec<f64> = after.iter().filter(|r| r.0 >= slow_window.1 + 60.0).map(|r| r.2.rss_mib).collect();
    let ns = settled.len();
    let (settled_start, settled_end) = if ns >= 10 {
        (median(settled[..ns / 10].to_vec()), median(settled[ns - ns / 10..].to_vec()))
    } else {
        (f64::NAN, f64::NAN)
    };
    let first_quiet = rows.iter().find(|r| r.1 != "warmup").map(|r| (r.2.threads, r.2.fds, r.3));
    let threads: Vec<u64> = after.iter().map(|r| r.2.threads).collect();
    let fds: Vec<u64> = after.iter().map(|r| r.2.fds).collect();
    let peak_viewers = rows.iter().map(|r| r.3).max().unwrap_or(0);
    let steady_in = |pred: &dyn Fn(&str) -> bool| -> Vec<f64> {
        (0..3).map(|i| median(after.iter().filter(|r| pred(&r.1)).map(|r| r.4[i]).collect())).collect()
    };
    // The stall is compared with the minute after it (the minute before it is usually warm-up).
    let next_minute = |t: f64| t >= slow_window.1 && t < slow_window.1 + 60.0;
    let fps_run: Vec<f64> = (0..3).map(|i| median(after.iter().filter(|r| next_minute(r.0)).map(|r| r.4[i]).collect())).collect();
    let fps_slow = steady_in(&|p| p == "slow");
    let rss_run = median(after.iter().filter(|r| next_minute(r.0)).map(|r| r.2.rss_mib).collect());
    let rss_slow_max = after.iter().filter(|r| r.1 == "slow").map(|r| r.2.rss_mib).fold(f64::NAN, f64::max);
    let cpu_total = rows.last().map(|r| r.2.cpu_s).unwrap_or(0.0) - quiet_start.cpu_s;
    let c = &counters;
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| duration | {:.0} s, {} samples every {} s (warm-up: first {:.0} s) |", args.seconds, rows.len(), args.sample, args.warmup.min(args.seconds * 0.2));
    println!("| connections opened | {} viewers (+{} never-readers), {} failed; {} left with a close frame, {} dropped, {} closed by the server |",
        c.opened.load(Ordering::Relaxed), c.never_read_opened.load(Ordering::Relaxed), c.failed.load(Ordering::Relaxed),
        c.closed_by_us.load(Ordering::Relaxed), c.dropped_by_us.load(Ordering::Relaxed), c.closed_by_server.load(Ordering::Relaxed));
    println!("| frames received by churn viewers | {} |", churn_frames.load(Ordering::Relaxed));
    println!("| peak viewers counted by the server | {peak_viewers} |");
    println!("| RSS after warm-up → end (medians of first/last 10%) | {rss_start:.1} → {rss_end:.1} MiB ({:+.2}%) |", (rss_end - rss_start) / rss_start * 100.0);
    println!("| of which anonymous (heap, stacks), same medians | {anon_start:.1} → {anon_end:.1} MiB ({:+.2}%) |", (anon_end - anon_start) / anon_start * 100.0);
    println!("| RSS from a minute after the slow viewer's stall ({:.0} s) → end, same medians | {settled_start:.1} → {settled_end:.1} MiB ({:+.2}%) |",
        slow_window.1 + 60.0, (settled_end - settled_start) / settled_start * 100.0);
    println!("| RSS trend after warm-up (least squares) | {slope_per_hour:+.1} MiB/hour |");
    println!("| RSS min / max after warm-up | {:.1} / {:.1} MiB |",
        after.iter().map(|r| r.2.rss_mib).fold(f64::INFINITY, f64::min), after.iter().map(|r| r.2.rss_mib).fold(0.0, f64::max));
    println!("| threads after warm-up (min / max) | {} / {} |", threads.iter().min().unwrap_or(&0), threads.iter().max().unwrap_or(&0));
    println!("| descriptors after warm-up (min / max) | {} / {} |", fds.iter().min().unwrap_or(&0), fds.iter().max().unwrap_or(&0));
    if let Some((t0, f0, v0)) = first_quiet {
        println!("| first sample after warm-up | {t0} threads, {f0} descriptors, {v0} viewers |");
    }
    println!("| quiet before any client (after 20 s) | {} threads, {} descriptors, RSS {:.1} MiB |", quiet_start.threads, quiet_start.fds, quiet_start.rss_mib);
    println!("| quiet at the end (0 clients; viewers counted {viewers_end}) | {} threads, {} descriptors, RSS {:.1} MiB |", quiet_end.threads, quiet_end.fds, quiet_end.rss_mib);
    println!("| growth quiet start → quiet end | {:+} threads, {:+} descriptors |", quiet_end.threads as i64 - quiet_start.threads as i64, quiet_end.fds as i64 - quiet_start.fds as i64);
    println!("| server CPU | {cpu_total:.0} s in {:.0} s ({:.0}% of one core) |", args.seconds, cpu_total / args.seconds * 100.0);
    println!("| steady viewers' fps, during the slow viewer's stall / the minute after (median, cam1/cam2/cam3) | {:.1}/{:.1}/{:.1} / {:.1}/{:.1}/{:.1} |",
        fps_slow[0], fps_slow[1], fps_slow[2], fps_run[0], fps_run[1], fps_run[2]);
    println!("| frames the steady viewers received / frames the cameras encoded | {steady_got} / {encoded} ({:.1}%) |", steady_got as f64 / encoded.max(1) as f64 * 100.0);
    println!("| RSS max during the stall / median the minute after | {rss_slow_max:.1} / {rss_run:.1} MiB |");
    println!("| slow viewer | {} |", slow_result.unwrap_or_else(|| "did not connect".into()));
    println!("| server exit after SIGTERM | {exit} |");
    println!("\nCSV: {}   server log: {}", args.csv.display(), log_path.display());
}
