//! Cost per frame of pose alone, object detection alone, and both on the same frame (the input
//! converted once for both, [`haven_pose::Input`]), interleaved round by round so that both see the same
//! machine state; medians over the rounds.
//!
//!     RAYON_NUM_THREADS=2 cargo run --release -p haven-pose --example multi_model -- [POSE] [DETECT] [ROUNDS]
//!
//! POSE defaults to weights/yolo11n-pose.safetensors, DETECT to the seeded-random YOLOv8n detect
//! fixture (tests/fixtures/detect/yolov8n-detect-random.safetensors, 80 classes: its cost is the real
//! yolov8n's, only its answers are meaningless), ROUNDS to 20. 640x640, CPU (HAVEN's kernels); a frame
//! is a letterboxed BGR u8 image in, detections in source pixels out (conversion, network, decode, NMS).

use std::path::PathBuf;
use std::time::Instant;

use haven_pose::{Input, Letterbox, PoseOptions, YoloModel};

#[path = "../../../examples/support/help.rs"]
mod help;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    help::help_if_asked(include_str!("multi_model.rs"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    // an empty argument takes the default
    let arg = |i: usize| args.get(i).filter(|a| !a.is_empty());
    let pose_w = arg(0)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("weights/yolo11n-pose.safetensors"));
    let det_w = arg(1).map(PathBuf::from).unwrap_or_else(|| {
        root.join("tests/fixtures/detect/yolov8n-detect-random.safetensors")
    });
    let rounds: usize = arg(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let load = |p: &PathBuf| {
        YoloModel::load(p, PoseOptions::default()).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        })
    };
    let (pose, det) = (load(&pose_w), load(&det_w));
    for (p, m) in [(&pose_w, &pose), (&det_w, &det)] {
        println!(
            "{}: {:?} {} {}, {} classes",
            p.display(),
            m.arch(),
            m.task(),
            m.scale_name(),
            m.num_classes()
        );
    }
    println!(
        "threads {}, {rounds} rounds, 640x640 (a 1280x720 source)",
        rayon::current_num_threads()
    );
    let (w, h) = (640, 640);
    let lb = Letterbox::new(1280, 720, w, h);
    // a deterministic, non-trivial image (gradients + noise), as the bench example's
    let mut s = 12345u32;
    let bgr: Vec<u8> = (0..w * h * 3)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            ((i / 3 % w) as u32 + (s & 63)) as u8
        })
        .collect();
    let frame = [(&bgr[..], &lb)];
    let pose_alone = || pose.detect_batch(&frame).unwrap();
    let det_alone = || det.detect_batch(&frame).unwrap();
    let both_shared = || {
        let input = Input::from_letterboxed_bgr(&frame).unwrap();
        (pose.detect_input(&input).unwrap(), det.detect_input(&input).unwrap())
    };
    let both_separate = || (pose.detect_batch(&frame).unwrap(), det.detect_batch(&frame).unwrap());
    let convert = || Input::from_letterboxed_bgr(&frame).unwrap();
    for _ in 0..2 {
        std::hint::black_box((pose_alone(), det_alone(), both_shared()));
    }
    let mut t: [Vec<f64>; 5] = Default::default();
    let time = |f: &dyn Fn()| {
        let t0 = Instant::now();
        f();
        t0.elapsed().as_secs_f64() * 1e3
    };
    for r in 0..rounds {
        // the order rotates each round
        for k in 0..5 {
            let i = (k + r) % 5;
            let ms = match i {
                0 => time(&|| drop(std::hint::black_box(pose_alone()))),
                1 => time(&|| drop(std::hint::black_box(det_alone()))),
                2 => time(&|| drop(std::hint::black_box(both_shared()))),
                3 => time(&|| drop(std::hint::black_box(both_separate()))),
                _ => time(&|| drop(std::hint::black_box(convert()))),
            };
            t[i].push(ms);
        }
    }
    let [p, d, b, sep, c] = t.map(|mut v| median(&mut v));
    println!("median ms per 640x640 frame:");
    println!("  pose alone                       {p:7.1}");
    println!("  detect alone                     {d:7.1}");
    println!("  pose + detect, input converted once {b:7.1}  ({:.2}x pose alone)", b / p);
    println!("  pose + detect, converted twice   {sep:7.1}");
    println!("  the conversion alone             {c:7.2}");
}
