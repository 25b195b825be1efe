//! The whole camera step, stage by stage: decode, resize (when `resize_width` is set), inference
//! (letterbox + network + decode + NMS), annotation, JPEG encoding, message building.
//!
//! `RAYON_NUM_THREADS=2 cargo run --example camera_step -- [--frames 40] [--sizes 640x640,640x480,320x320]`
//!
//! Frames come from `data/1.mp4` (768x576), the same footage the demo cameras show. Prints the median
//! milliseconds per stage for each network input size.

use std::path::PathBuf;
use std::time::Instant;

use actix_web::web::Bytes;
use haven::camera::packet::{EncodedRendition, FrameMetadata, FramePacket, RenditionMeta};
use haven::camera::rendition::{Formats, Overlay, Rendition};
use haven::inference::pose::PoseEngine;
use haven::inference::{draw, AiEngine};
use haven::settings::Settings;
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio;

#[path = "support/help.rs"]
mod help;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    help::help_if_asked(include_str!("camera_step.rs"));
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut frames_wanted = 40;
    let mut sizes = vec![(640, 640), (640, 480), (320, 320)];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--frames" => frames_wanted = args.next().unwrap().parse().unwrap(),
            "--sizes" => {
                sizes = args
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|s| {
                        let (w, h) = s.split_once('x').unwrap();
                        (w.parse().unwrap(), h.parse().unwrap())
                    })
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let text = std::fs::read_to_string(repo.join("settings/default.toml")).unwrap();
    let settings = Settings::from_toml(&text, "settings/default.toml").unwrap();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());

    // Decode once up front (timed), so every size sees the same frames.
    let mut cap = videoio::VideoCapture::from_file(repo.join("data/1.mp4").to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    let mut frames = Vec::new();
    let mut decode_ms = Vec::new();
    for _ in 0..frames_wanted {
        let mut m = Mat::default();
        let t = Instant::now();
        if !cap.read(&mut m).unwrap() {
            break;
        }
        decode_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        frames.push(m);
    }
    println!("# camera step on data/1.mp4 (768x576), {} frames, RAYON_NUM_THREADS={threads}", frames.len());
    println!("| input | decode | inference | annotate | JPEG q80 | message | total |");
    println!("|---|---|---|---|---|---|---|");
    for (w, h) in sizes {
        let mut model = settings.models["pose"].clone();
        model.weights = repo.join("weights/yolo11n-pose.safetensors");
        model.input_width = Some(w);
        model.input_height = Some(h);
        let engine = PoseEngine::load(&model).expect("weights: run scripts/fetch-weights.sh");
        engine.detect(&frames[0]).unwrap(); // warm-up
        let (mut inf, mut ann, mut enc, mut msg) = (vec![], vec![], vec![], vec![]);
        for (i, frame) in frames.iter().enumerate() {
            let t = Instant::now();
            let dets = engine.detect(frame).unwrap();
            inf.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let mut shown = frame.try_clone().unwrap();
            draw::annotate(&mut shown, &dets).unwrap();
            ann.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let jpeg = haven::jpeg::encode(&shown, 80).unwrap();
            enc.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let groups = [haven::inference::ModelDetections { model: "pose".into(), task: haven::inference::Task::Pose, detections: dets.clone() }];
            let meta = FrameMetadata {
                camera_id: "cam1",
                seq: i as u64,
                frame_index: i as u64,
                timestamp: 0.0,
                fps: 10.0,
                width: shown.cols(),
                height: shown.rows(),
                ai_enabled: true,
                inference_ms: None,
                detections: &groups,
                poses: None,
                motion: None,
                events: &[],
                rendition: None,
            };
            // The default viewer's message: the full frame as text.
            let jpeg: Bytes = jpeg.into();
            let full = EncodedRendition {
                rendition: Rendition::default(),
                formats: Formats { text: true, binary: false },
                meta: RenditionMeta { width: shown.cols(), height: shown.rows(), quality: 80, overlay: Overlay::Server },
                jpeg: jpeg.clone(),
            };
            std::hint::black_box(FramePacket::new(meta, Some(jpeg), vec![full]));
            msg.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (d, i, a, e, m) = (median(decode_ms.clone()), median(inf), median(ann), median(enc), median(msg));
        println!("| {w}x{h} | {d:.1} | {i:.1} | {a:.1} | {e:.1} | {m:.2} | {:.1} |", d + i + a + e + m);
    }
}
