//! The 8-bit path (`PoseOptions::precision = Int8`) on the real yolo11n-pose weights: its own
//! goldens, with tolerances of its own (docs/pose.md, "8-bit path"), and the places it is refused.
//!
//! Tolerances, from what the path measured on these fixtures (2026-12-07, every body layer in 8
//! bits; VNNI kernels with 8-bit weights / AVX2 kernels with 7-bit weights: box IoU 0.906 and 0.996
//! / 0.986 and 0.997, scores 0.007 and 0.002 / 0.020 and 0.006 off, confident keypoints median 1.47
//! / 1.26 px, worst 20.5 / 11.3 px; raw person scores 0.008 / 0.046 off at most; with layers 2 and 9
//! kept f32, the default since: IoU 0.994 and 0.998 / 0.929 and 0.998, scores 0.003 and 0.000 /
//! 0.018 and 0.015 off, keypoints median 0.53 / 1.83 px, worst 3.6 / 22.0 px; raw scores 0.005
//! off), from the acceptance aim of issue 25
//! (median keypoint error <= 2 px at 640), and from what one image can say (the 0.906 is the left
//! person's right edge, an outstretched arm, moving 77 px in the source; over hundreds of frames the
//! boxes differ by 0.2-0.5 px at the median: docs/pose.md, "8-bit path"): the same people as
//! `detections.json` (Ultralytics on onnxruntime, fp32), box IoU >= 0.85, score within 0.05,
//! confident keypoints (golden visibility >= 0.5) median within 2 px of the 640 input and each within
//! 24 px; raw person scores within 0.1 of onnxruntime's on every anchor.

use haven_pose::{EngineOptions, Letterbox, PoseError, PoseModel, PoseOptions, Precision};

mod common;
use common::{letterboxed_bgr as zidane_bgr, letterboxed_input, root};

fn real_weights() -> std::path::PathBuf {
    let p = root().join("weights/yolo11n-pose.safetensors");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-weights.sh before running the tests",
        p.display()
    );
    p
}

fn int8() -> PoseOptions {
    PoseOptions {
        precision: Precision::Int8,
        ..PoseOptions::default()
    }
}

/// (score, box xyxy, keypoints xyv) of `detections.json`'s image.
fn golden(image: &str) -> Vec<(f32, [f32; 4], Vec<[f32; 3]>)> {
    let text = std::fs::read_to_string(common::fixture_in("pose", "detections.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let f = |x: &serde_json::Value| x.as_f64().unwrap() as f32;
    v[image]["dets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b = d["box_xyxy"].as_array().unwrap();
            let k = d["kpts_xyv"].as_array().unwrap();
            (
                f(&d["conf"]),
                [f(&b[0]), f(&b[1]), f(&b[2]), f(&b[3])],
                k.iter()
                    .map(|k| {
                        let k = k.as_array().unwrap();
                        [f(&k[0]), f(&k[1]), f(&k[2])]
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Zidane through the 8-bit path with the kernels `engine` allows, against the fp32 goldens.
fn zidane_against_golden(engine: EngineOptions, what: &str) {
    let m = PoseModel::load_with_engine(&real_weights(), int8(), engine).unwrap();
    assert_eq!(m.options().precision, Precision::Int8);
    let io = common::load_safetensors(&common::fixture_in("pose", "zidane_640_io.safetensors"));
    let bgr = zidane_bgr(&io);
    let lb = Letterbox::new(1280, 720, 640, 640);
    let dets = m.detect_letterboxed_bgr(&bgr, &lb).unwrap();
    let gold = golden("zidane.jpg");
    assert_eq!(dets.len(), gold.len(), "{what}: people: int8 {dets:?}");
    let mut errs = Vec::new();
    for (score, bbox, kpts) in &gold {
        let d = dets
            .iter()
            .max_by(|a, b| {
                haven_pose::iou(&a.bbox, bbox).total_cmp(&haven_pose::iou(&b.bbox, bbox))
            })
            .unwrap();
        let iou = haven_pose::iou(&d.bbox, bbox);
        eprintln!(
            "{what}: person: IoU {iou:.4}, score {:.4} vs {score:.4}",
            d.score
        );
        assert!(
            iou >= MIN_IOU,
            "{what}: box IoU {iou} < {MIN_IOU}: int8 {:?} golden {bbox:?}",
            d.bbox
        );
        assert!(
            (d.score - score).abs() <= 0.05,
            "{what}: score {} vs {score}",
            d.score
        );
        for (a, b) in d.keypoints.iter().zip(kpts).filter(|(_, b)| b[2] >= 0.5) {
            // in pixels of the 640 input (the source is scaled by lb.scale)
            errs.push(((a[0] - b[0]).hypot(a[1] - b[1])) * lb.scale);
        }
    }
    errs.sort_by(f32::total_cmp);
    let (median, worst) = (errs[errs.len() / 2], errs[errs.len() - 1]);
    eprintln!(
        "{what}: {} confident keypoints: median {median:.2} px, worst {worst:.2} px (640 input)",
        errs.len()
    );
    assert!(
        median <= 2.0,
        "{what}: median keypoint error {median} px > 2"
    );
    assert!(
        worst <= 24.0,
        "{what}: worst keypoint error {worst} px > 24"
    );
}

const MIN_IOU: f32 = 0.85;

#[test]
fn int8_zidane_matches_the_fp32_golden_detections() {
    zidane_against_golden(EngineOptions::default(), "fastest kernels");
}

/// The AVX2 path (`wide_kernel: false` keeps the 8-bit kernels to AVX2 on an AVX-512 machine, with
/// its 7-bit weights) meets the same goldens.
#[test]
fn int8_avx2_path_matches_the_fp32_golden_detections() {
    let mut engine = EngineOptions::default();
    engine.kernels.wide_kernel = false;
    zidane_against_golden(engine, "AVX2 kernels");
}

/// The raw output: every anchor's person score against onnxruntime's fp32 `output0`.
#[test]
fn int8_raw_scores_stay_near_onnxruntime() {
    let m = PoseModel::load(&real_weights(), int8()).unwrap();
    let io = common::load_safetensors(&common::fixture_in("pose", "zidane_640_io.safetensors"));
    let out = m.forward_raw(&letterboxed_input(&io)).unwrap();
    let a = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = io["output0"]
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(a.len(), b.len());
    let n = 8400;
    let worst = (0..n)
        .map(|i| (a[4 * n + i] - b[4 * n + i]).abs())
        .fold(0f32, f32::max);
    eprintln!("raw person scores: worst |int8 - onnxruntime fp32| {worst:.4}");
    assert!(worst <= 0.1, "raw score off by {worst}");
}

/// The path is refused where it cannot run, with an error that says why: on Candle's ops (the
/// reference, and what CUDA and Metal run).
#[test]
fn int8_is_refused_off_haven_kernels() {
    let engine = EngineOptions {
        candle_cpu_ops: true,
        ..EngineOptions::default()
    };
    let err = PoseModel::load_with_engine(&real_weights(), int8(), engine)
        .err()
        .expect("int8 on Candle's ops must be refused");
    assert!(matches!(err, PoseError::BadInput(_)), "{err}");
    assert!(err.to_string().contains("precision \"int8\""), "{err}");
    assert_eq!("int8".parse::<Precision>(), Ok(Precision::Int8));
    assert!("fp16"
        .parse::<Precision>()
        .unwrap_err()
        .contains("\"f32\" or \"int8\""));
}

/// The sensitivity sweep's switch (`EngineOptions::int8_f32_layers`, `HAVEN_INT8_F32_LAYERS`): with
/// every body layer kept f32 the 8-bit model computes exactly what the f32 one does (the head is f32
/// in both); keeping one layer f32 changes the output, so the switch reaches the layer; left unset,
/// a pose model keeps layers 2 and 9 f32.
#[test]
fn int8_with_every_layer_kept_f32_is_the_f32_model() {
    let io = common::load_safetensors(&common::fixture_in("pose", "zidane_640_io.safetensors"));
    let input = letterboxed_input(&io);
    let raw = |precision, mask: Option<u64>| {
        let engine = EngineOptions {
            int8_f32_layers: mask,
            ..EngineOptions::default()
        };
        let opts = PoseOptions {
            precision,
            ..PoseOptions::default()
        };
        let m = PoseModel::load_with_engine(&real_weights(), opts, engine).unwrap();
        m.forward_raw(&input).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let f32_out = raw(Precision::F32, Some(0));
    assert_eq!(raw(Precision::Int8, Some(u64::MAX)), f32_out);
    let all_but_2 = raw(Precision::Int8, Some(u64::MAX & !(1 << 2)));
    assert_ne!(all_but_2, f32_out, "layer 2 in 8 bits must change the output");
    // A pose model's default keeps layers 2 and 9 f32 (the sweep's choice); `Some(0)`: none.
    let default = raw(Precision::Int8, None);
    assert_eq!(default, raw(Precision::Int8, Some(haven_pose::POSE_INT8_F32_LAYERS)));
    assert_ne!(default, raw(Precision::Int8, Some(0)), "the default keeps some layer f32");
}
