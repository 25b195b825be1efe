//! Engine-only benchmark: milliseconds per frame (median over N runs) at 640x640, 640x384 and 320x320.
//!
//!     RAYON_NUM_THREADS=2 cargo run -p haven-pose --example bench -- [WEIGHTS] [RUNS]
//!
//! WEIGHTS defaults to weights/yolo11n-pose.safetensors, RUNS to 20. Thread count: RAYON_NUM_THREADS
//! (default: all cores). "engine" = letterboxed BGR u8 frame -> detections (conversion, network, decode, NMS).
//! `BENCH_SIZES=640x640,320x320` picks the sizes; `BENCH_DEVICE=cuda:0` (a build with `--features cuda`)
//! the device (default cpu); `BENCH_PRECISION=int8` the precision (default f32); `BENCH_BATCH=1,4,16` the batch sizes (default 1): each run then is one
//! `detect_batch` of that many frames, reported per batch and per frame.

use std::path::PathBuf;
use std::time::Instant;

use haven_pose::{DeviceSpec, Letterbox, PoseModel, PoseOptions};

#[path = "../../../examples/support/help.rs"]
mod help;

/// CPU time of all this process's threads in ns (Linux /proc/self/task/*/schedstat), if available.
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for e in std::fs::read_dir("/proc/self/task").ok()? {
        let s = std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The process's resident size (VmRSS), as /proc says it.
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l[6..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn main() {
    help::help_if_asked(include_str!("bench.rs"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let weights = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("weights/yolo11n-pose.safetensors"));
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let sizes: Vec<(usize, usize)> = match std::env::var("BENCH_SIZES") {
        Ok(s) => s
            .split(',')
            .filter_map(|p| p.split_once('x'))
            .map(|(w, h)| (w.trim().parse().unwrap(), h.trim().parse().unwrap()))
            .collect(),
        Err(_) => vec![(640, 640), (640, 384), (320, 320)],
    };
    let fail = |e: haven_pose::PoseError| -> ! {
        eprintln!("error: {e}");
        std::process::exit(1)
    };
    let device: DeviceSpec = std::env::var("BENCH_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .unwrap_or_else(|e| fail(e));
    let batches: Vec<usize> = std::env::var("BENCH_BATCH")
        .unwrap_or_else(|_| "1".into())
        .split(',')
        .map(|b| {
            b.trim()
                .parse()
                .expect("BENCH_BATCH: batch sizes like 1,4,16")
        })
        .collect();
    let precision: haven_pose::Precision = std::env::var("BENCH_PRECISION")
        .unwrap_or_else(|_| "f32".into())
        .parse()
        .unwrap_or_else(|e: String| fail(haven_pose::PoseError::BadInput(e)));
    let opts = PoseOptions {
        device,
        precision,
        ..PoseOptions::default()
    };
    let model = PoseModel::load(&weights, opts).unwrap_or_else(|e| fail(e));
    println!(
        "model {} ({:?}-pose {}), precision {precision}, device {device} ({}), threads {}, runs {runs}",
        weights.display(),
        model.arch(),
        model.scale_name(),
        if model.uses_haven_kernels() {
            "HAVEN's kernels"
        } else {
            "Candle's ops"
        },
        rayon::current_num_threads()
    );
    for (w, h) in sizes {
        // a deterministic, non-trivial image (gradients + noise) in the letterbox of a 16:9 source
        let lb = Letterbox::new(1280, 720, w, h);
        let mut s = 12345u32;
        let bgr: Vec<u8> = (0..w * h * 3)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((i / 3 % w) as u32 + (s & 63)) as u8
            })
            .collect();
        for &batch in &batches {
            let frames: Vec<(&[u8], &Letterbox)> = (0..batch).map(|_| (&bgr[..], &lb)).collect();
            for _ in 0..2 {
                model.detect_batch(&frames).unwrap();
            }
            let mut t = Vec::with_capacity(runs);
            let c0 = cpu_ns();
            for _ in 0..runs {
                let t0 = Instant::now();
                let d = model.detect_batch(&frames).unwrap();
                t.push(t0.elapsed().as_secs_f64() * 1e3);
                std::hint::black_box(d);
            }
            let cpu = match (c0, cpu_ns()) {
                (Some(a), Some(b)) => format!(
                    ", cpu {:.1} ms/frame",
                    (b - a) as f64 / 1e6 / (runs * batch) as f64
                ),
                _ => String::new(),
            };
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let med = t[t.len() / 2];
            if batch == 1 {
                println!(
                    "{w}x{h}: median {med:.1} ms/frame (min {:.1}, max {:.1}{cpu}); idle buffer pool {:.1} MiB, RSS {}",
                    t[0],
                    t[t.len() - 1],
                    haven_pose::pooled_bytes() as f64 / 1048576.0,
                    rss()
                );
            } else {
                println!(
                    "{w}x{h} batch {batch}: median {med:.1} ms/batch, {:.2} ms/frame, {:.0} frames/s (min {:.1}, max {:.1} ms/batch{cpu})",
                    med / batch as f64,
                    batch as f64 * 1e3 / med,
                    t[0],
                    t[t.len() - 1]
                );
            }
        }
    }
}
