//! Small people: how many of the people in view each way of looking at a frame finds, against a
//! reference that looks closely (the model on four overlapping tiles of the frame, each about 60 %
//! of its size, cut at native resolution and enlarged into the network input), and at what cost.
//!
//! `cargo run --example small_people -- [--video data/vtest.avi] [--every 40] [--skip 40] [--scales 1.0,1.4]
//!   [--inputs 640x640,640x480,640x512,768x576] [--margin 0.1] [--track-margin 0.5] [--min-side 48]
//!   [--budget 1.0]`
//!
//! Frames are read in order; the motion detector sees every one of them, and HAVEN's pipeline looks
//! at every other frame (5 fps on the 10 fps footage) so that it has tracked people's boxes from its
//! previous pass, as a camera has. Every `--every`th frame is scored: recall against the reference
//! (boxes matched at IoU >= 0.5), and the model's time for that frame (median over scored frames).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use haven::camera::motion::{MotionDetector, MotionSettings};
use haven::inference::pose::PoseEngine;
use haven::inference::regions::{self, Plan, RegionPlan};
use haven::inference::{in_frame, merge_overlapping, AiEngine, Detection, SharedEngine};
use haven::settings::Settings;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use opencv::videoio;

#[path = "support/mod.rs"]
mod support;
use support::{median, repo};

fn engine() -> PoseEngine {
    let text = std::fs::read_to_string(repo().join("settings/default.toml")).unwrap();
    let mut m = Settings::from_toml(&text, "settings/default.toml").unwrap().models["pose"].clone();
    m.weights = repo().join(&m.weights);
    PoseEngine::load(&m).expect("the pose model loads (bash scripts/fetch-weights.sh)")
}

/// Greedy one-to-one matching at IoU >= 0.5: how many of `reference` `found` has.
fn matched(found: &[Detection], reference: &[Detection]) -> usize {
    let mut used = vec![false; found.len()];
    let mut n = 0;
    for r in reference {
        let best = found
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, f)| (i, haven_pose::iou(&f.bbox, &r.bbox)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, iou)) = best {
            if iou >= 0.5 {
                used[i] = true;
                n += 1;
            }
        }
    }
    n
}

/// Four tiles, each 60 % of the frame's width and height, at its corners.
fn tiles(w: i32, h: i32) -> Vec<Rect> {
    let (tw, th) = ((w as f32 * 0.6).round() as i32, (h as f32 * 0.6).round() as i32);
    vec![Rect::new(0, 0, tw, th), Rect::new(w - tw, 0, tw, th), Rect::new(0, h - th, tw, th), Rect::new(w - tw, h - th, tw, th)]
}

fn tiled(engine: &PoseEngine, frame: &Mat, input: (usize, usize)) -> Vec<Detection> {
    let mut all = Vec::new();
    for r in tiles(frame.cols(), frame.rows()) {
        let part = Mat::roi(frame, r).unwrap().try_clone().unwrap();
        all.extend(engine.detect_sized(&part, input).unwrap().into_iter().map(|d| in_frame(d, r)));
    }
    merge_overlapping(all)
}

struct Way {
    name: String,
    found: usize,
    ms: Vec<f64>,
    input_px: Vec<f64>,
}

impl Way {
    fn new(name: &str) -> Self {
        Self { name: name.into(), found: 0, ms: Vec::new(), input_px: Vec::new() }
    }
}

fn main() {
    support::help::help_if_asked(include_str!("small_people.rs"));
    let mut video = repo().join("data/vtest.avi");
    let (mut every, mut skip) = (40usize, 40usize);
    let mut scales = vec![1.0f32, 1.4];
    let mut base = RegionPlan::default();
    let mut inputs: Vec<(usize, usize)> = vec![(640, 640), (640, 480), (640, 512), (768, 576)];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--video" => video = PathBuf::from(v()),
            "--every" => every = v().parse().unwrap(),
            "--skip" => skip = v().parse().unwrap(),
            "--scales" => scales = v().split(',').map(|s| s.parse().unwrap()).collect(),
            "--margin" => base.margin = v().parse().unwrap(),
            "--track-margin" => base.track_margin = v().parse().unwrap(),
            "--min-side" => base.min_side = v().parse().unwrap(),
            "--budget" => base.budget = v().parse().unwrap(),
            "--inputs" => {
                inputs = v()
                    .split(',')
                    .map(|wh| {
                        let (w, h) = wh.split_once('x').expect("--inputs WxH,WxH");
                        (w.parse().unwrap(), h.parse().unwrap())
                    })
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let pose = Arc::new(engine());
    let shared = SharedEngine::new(pose.clone());
    let mut cap = videoio::VideoCapture::from_file(video.to_str().unwrap(), videoio::CAP_ANY).unwrap();
    assert!(cap.is_opened().unwrap(), "{} does not open", video.display());
    let mut motion = MotionDetector::new(MotionSettings::default());
    let mut ways: Vec<Way> = inputs.iter().map(|(w, h)| Way::new(&format!("whole frame at {w}x{h}"))).collect();
    let region_ways = ways.len();
    for s in &scales {
        ways.push(Way::new(&format!("regions at {s}x (HAVEN)")));
    }
    let mut tracked: Vec<Vec<[f32; 4]>> = vec![Vec::new(); scales.len()];
    let mut plans: Vec<String> = vec![String::new(); scales.len()];
    let (mut reference_total, mut scored, mut reference_ms) = (0usize, 0usize, Vec::new());
    let mut frame = Mat::default();
    let mut index = 0usize;
    while cap.read(&mut frame).unwrap() && !frame.empty() {
        let m = motion.update(&frame).unwrap();
        let (w, h) = (frame.cols(), frame.rows());
        let whole = pose.input_for(w as usize, h as usize);
        let whole_px = (whole.0 * whole.1) as i64;
        let score = index >= skip && (index - skip) % every == 0;
        // HAVEN's pipeline: every other frame (5 fps), regions around motion and tracked people.
        if index % 2 == 0 || score {
            for (k, s) in scales.iter().enumerate() {
                let opts = RegionPlan { scale: *s, ..base };
                let t = Instant::now();
                let plan = regions::plan(w, h, &m.boxes, &tracked[k], &opts, whole);
                plans[k] = match &plan {
                    Plan::Nothing => "nothing".into(),
                    Plan::WholeFrame => "whole".into(),
                    Plan::Regions(r, _) => format!(
                        "{} regions {}",
                        r.len(),
                        r.iter().map(|r| format!("{}x{}", r.width, r.height)).collect::<Vec<_>>().join(" ")
                    ),
                };
                let (dets, px) = match plan {
                    Plan::Nothing => (Vec::new(), 0),
                    Plan::WholeFrame => (shared.detect_regions(&frame, &[], 1.0).unwrap(), whole_px),
                    Plan::Regions(r, scale) => (shared.detect_regions(&frame, &r, scale).unwrap(), regions::cost(&r, scale)),
                };
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                tracked[k] = dets.iter().map(|d| d.bbox).collect();
                if score {
                    let way = &mut ways[region_ways + k];
                    way.ms.push(ms);
                    way.input_px.push(px as f64);
                }
            }
        }
        if score {
            let t = Instant::now();
            let reference = tiled(&pose, &frame, (640, 480));
            reference_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            reference_total += reference.len();
            scored += 1;
            for (i, input) in inputs.iter().enumerate() {
                let t = Instant::now();
                let dets = pose.detect_sized(&frame, *input).unwrap();
                ways[i].ms.push(t.elapsed().as_secs_f64() * 1000.0);
                ways[i].input_px.push((input.0 * input.1) as f64);
                ways[i].found += matched(&dets, &reference);
            }
            for k in 0..scales.len() {
                let found: Vec<Detection> = tracked[k]
                    .iter()
                    .map(|b| Detection::person(1.0, *b, Vec::new()))
                    .collect();
                ways[region_ways + k].found += matched(&found, &reference);
            }
            eprintln!(
                "frame {index}: reference {} people; found so far {:?}; plans {plans:?}; motion boxes {:?}",
                reference.len(),
                ways.iter().map(|w| w.found).collect::<Vec<_>>(),
                m.boxes.iter().map(|b| format!("{:.0}x{:.0}", b[2] - b[0], b[3] - b[1])).collect::<Vec<_>>()
            );
        }
        index += 1;
    }
    println!("# small people: {} frames of {} scored (every {every}th from {skip}), RAYON_NUM_THREADS={}", scored, video.display(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into()));
    println!("reference: four 60 % tiles, each at 640x480 (x1.39 of native): {reference_total} people, {:.1} ms per frame (median)\n", median(reference_ms));
    println!("| way | people found | recall vs reference | model ms per frame (median) | network input pixels (median) |");
    println!("|---|---|---|---|---|");
    for w in &ways {
        println!(
            "| {} | {} | {:.0} % | {:.1} | {:.0} |",
            w.name,
            w.found,
            100.0 * w.found as f64 / reference_total.max(1) as f64,
            median(w.ms.clone()),
            median(w.input_px.clone())
        );
    }
    eprintln!("{}", AiEngine::name(&*pose));
}
