//! Object detection (Detect heads) against onnxruntime and Ultralytics' own postprocessing, on the
//! seeded-random YOLOv8n and YOLO11n detect models of `tests/fixtures/detect/` (made once by
//! `scripts/make_detect_fixtures.py`; see its header). Same tolerances as the pose goldens (golden.rs):
//! coordinates within 0.5 px and scores within 1e-3 on the raw output; final boxes IoU >= 0.95, scores
//! within 2e-3, classes equal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use haven_pose::{
    Arch, Detection, EngineOptions, Input, Letterbox, PoseError, PoseOptions, Task, YoloModel,
    COCO_NAMES,
};

mod common;
use common::{letterboxed_bgr as bgr_of, letterboxed_input as input_of, root};

fn fixture(name: &str) -> PathBuf {
    common::fixture_in("detect", name)
}

fn load_st(path: &Path) -> HashMap<String, Tensor> {
    common::load_safetensors(path)
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("haven-detect-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const V8: &str = "yolov8n-detect-random";
const V11: &str = "yolo11n-detect-random";

/// The YOLO11n detect fixture is an Ultralytics `.pt`: converted once per test run, by the crate's
/// converter (what `haven convert-weights` runs).
fn v11_weights() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let out = scratch().join("yolo11n-detect-random.safetensors");
        let s = haven_pose::convert_pt_to_safetensors(&fixture(&format!("{V11}.pt")), &out)
            .unwrap();
        assert_eq!(s.task, Task::Detect);
        assert_eq!(s.names, ["bicycle", "car", "dog", "package"]);
        assert_eq!(s.arch.as_deref(), Some("yolo11"));
        out
    })
}

fn weights(name: &str) -> PathBuf {
    match name {
        V8 => fixture(&format!("{V8}.safetensors")),
        V11 => v11_weights().to_path_buf(),
        _ => unreachable!(),
    }
}

fn io(name: &str) -> HashMap<String, Tensor> {
    load_st(&fixture(&format!("{name}_io.safetensors")))
}

fn load(name: &str, opts: PoseOptions, candle_ops: bool) -> YoloModel {
    let engine = EngineOptions {
        candle_cpu_ops: candle_ops,
        ..EngineOptions::default()
    };
    let m = YoloModel::load_with_engine(&weights(name), opts, engine).unwrap();
    assert_eq!(m.uses_haven_kernels(), !candle_ops);
    m
}

/// [1, 4 + nc, N] outputs: box rows within `px`, class-score rows within `prob`.
fn compare(ours: &Tensor, reference: &Tensor, px: f32, prob: f32) {
    assert_eq!(ours.dims(), reference.dims(), "output shapes");
    let (_, rows, n) = ours.dims3().unwrap();
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (mut worst_px, mut worst_prob) = ((0f32, 0, 0), (0f32, 0, 0));
    for r in 0..rows {
        for i in 0..n {
            let d = (a[r * n + i] - b[r * n + i]).abs();
            let w = if r >= 4 { &mut worst_prob } else { &mut worst_px };
            if d > w.0 || d.is_nan() {
                *w = (d, r, i);
            }
        }
    }
    eprintln!("max |diff|: coordinates {worst_px:?} (value, row, anchor), scores {worst_prob:?}");
    assert!(worst_px.0 <= px, "coordinate diff {worst_px:?} exceeds {px} px");
    assert!(worst_prob.0 <= prob, "score diff {worst_prob:?} exceeds {prob}");
}

struct Golden {
    names: Vec<String>,
    src: (usize, usize),
    input: (usize, usize),
    dets: Vec<(usize, f32, [f32; 4])>,
    filter: Vec<usize>,
    filtered: Vec<(usize, f32, [f32; 4])>,
}

fn golden(name: &str) -> Golden {
    let text = std::fs::read_to_string(fixture("detections.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let m = &v[name];
    let f = |x: &serde_json::Value| x.as_f64().unwrap() as f32;
    let u = |x: &serde_json::Value| x.as_u64().unwrap() as usize;
    let dets = |d: &serde_json::Value| -> Vec<(usize, f32, [f32; 4])> {
        d.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let b = d["box_xyxy"].as_array().unwrap();
                (
                    u(&d["cls"]),
                    f(&d["conf"]),
                    [f(&b[0]), f(&b[1]), f(&b[2]), f(&b[3])],
                )
            })
            .collect()
    };
    Golden {
        names: m["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect(),
        src: (u(&m["src_wh"][0]), u(&m["src_wh"][1])),
        input: (u(&m["input_wh"][0]), u(&m["input_wh"][1])),
        dets: dets(&m["dets"]),
        filter: m["filter"]["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(u)
            .collect(),
        filtered: dets(&m["filter"]["dets"]),
    }
}

impl Golden {
    fn letterbox(&self) -> Letterbox {
        Letterbox::new(self.src.0, self.src.1, self.input.0, self.input.1)
    }
}

/// Same count; each golden detection matched (best IoU among ours of its class) with IoU >= 0.95,
/// score within 2e-3, the same class id and name; no keypoints.
fn assert_matches(ours: &[Detection], golden: &[(usize, f32, [f32; 4])], names: &[String]) {
    assert!(!golden.is_empty(), "the fixture has detections");
    assert_eq!(ours.len(), golden.len(), "number of detections: ours {ours:?}");
    let mut used = vec![false; ours.len()];
    for (cls, conf, bbox) in golden {
        let (bi, best) = ours
            .iter()
            .enumerate()
            .filter(|(i, d)| !used[*i] && d.class_id == *cls)
            .map(|(i, d)| (i, haven_pose::iou(&d.bbox, bbox)))
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap())
            .unwrap_or_else(|| panic!("no detection of class {cls} left for {bbox:?}"));
        used[bi] = true;
        let d = &ours[bi];
        assert!(best >= 0.95, "IoU {best}: ours {:?} golden {bbox:?}", d.bbox);
        assert!((d.score - conf).abs() < 2e-3, "score {} vs {conf}", d.score);
        assert_eq!(&*d.class, names[*cls]);
        assert!(d.keypoints.is_empty());
    }
}

#[test]
fn v8n_detect_reports_its_task_classes_and_layout() {
    let m = load(V8, PoseOptions::default(), false);
    assert_eq!((m.task(), m.arch(), m.scale_name()), (Task::Detect, Arch::V8, "n"));
    assert_eq!((m.num_classes(), m.num_keypoints(), m.output_rows()), (80, 0, 84));
    // no names in the file: COCO's, as Ultralytics' yolov8n.pt has them
    assert_eq!(m.class_names(), COCO_NAMES);
    assert_eq!(m.class_names(), golden(V8).names);
    assert_eq!(m.class_id("dog"), Some(16));
    assert_eq!(serde_json::to_string(&m.task()).unwrap(), "\"detect\"");
}

#[test]
fn v11n_detect_names_come_from_the_converted_checkpoint() {
    let m = load(V11, PoseOptions::default(), false);
    assert_eq!((m.task(), m.arch(), m.scale_name()), (Task::Detect, Arch::V11, "n"));
    assert_eq!(m.class_names(), ["bicycle", "car", "dog", "package"]);
    assert_eq!((m.num_classes(), m.num_keypoints(), m.output_rows()), (4, 0, 8));
}

fn raw_parity(name: &str, candle_ops: bool) {
    let m = load(name, PoseOptions::default(), candle_ops);
    let io = io(name);
    let out = m.forward_raw(&input_of(&io)).unwrap();
    compare(&out, &io["output0"], 0.5, 1e-3);
}

#[test]
fn v8n_detect_raw_output_matches_onnxruntime_on_haven_kernels() {
    raw_parity(V8, false);
}

#[test]
fn v8n_detect_raw_output_matches_onnxruntime_on_candle_ops() {
    raw_parity(V8, true);
}

#[test]
fn v11n_detect_raw_output_matches_onnxruntime_on_haven_kernels() {
    raw_parity(V11, false);
}

#[test]
fn v11n_detect_raw_output_matches_onnxruntime_on_candle_ops() {
    raw_parity(V11, true);
}

/// Our postprocessing of onnxruntime's own output0 equals Ultralytics' (`non_max_suppression` +
/// `scale_boxes`): the NMS alone, without the network's rounding.
#[test]
fn postprocess_of_reference_output0_reproduces_ultralytics() {
    for name in [V8, V11] {
        let m = load(name, PoseOptions::default(), false);
        let g = golden(name);
        let dets = m.postprocess(&io(name)["output0"], &g.letterbox()).unwrap();
        eprintln!("{name}: {} detections", dets.len());
        assert_matches(&dets, &g.dets, &g.names);
    }
}

/// The server's path (letterboxed BGR frame in, detections in source pixels out) on both kernel
/// paths reproduces Ultralytics' final detections; with a class filter only the listed classes, as
/// Ultralytics' `classes=` gives them.
#[test]
fn server_path_reproduces_ultralytics_detections_and_class_filter() {
    for name in [V8, V11] {
        let g = golden(name);
        let bgr = bgr_of(&io(name));
        let lb = g.letterbox();
        for candle_ops in [false, true] {
            let m = load(name, PoseOptions::default(), candle_ops);
            let dets = m.detect_letterboxed_bgr(&bgr, &lb).unwrap();
            assert_matches(&dets, &g.dets, &g.names);
            let filtered = load(
                name,
                PoseOptions {
                    classes: Some(g.filter.clone()),
                    ..PoseOptions::default()
                },
                candle_ops,
            );
            let dets = filtered.detect_letterboxed_bgr(&bgr, &lb).unwrap();
            assert!(dets.iter().all(|d| g.filter.contains(&d.class_id)));
            assert!(g.filtered.len() < g.dets.len(), "the filter removes something");
            assert_matches(&dets, &g.filtered, &g.names);
        }
    }
}

#[test]
fn detect_json_has_class_score_bbox_and_no_keypoints() {
    let g = golden(V11);
    let m = load(V11, PoseOptions::default(), false);
    let dets = m
        .detect_letterboxed_bgr(&bgr_of(&io(V11)), &g.letterbox())
        .unwrap();
    let json = serde_json::to_value(&dets[0]).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["bbox", "class", "score"]);
    assert!(g.names.contains(&json["class"].as_str().unwrap().to_string()));
}

/// A class filter naming a class the model does not have is refused at load.
#[test]
fn class_filter_out_of_range_is_refused() {
    let err = YoloModel::load(
        &weights(V11),
        PoseOptions {
            classes: Some(vec![1, 4]),
            ..PoseOptions::default()
        },
    )
    .err()
    .expect("must fail");
    assert!(matches!(err, PoseError::BadInput(_)), "{err}");
    assert!(err.to_string().contains("class 4"), "{err}");
}

/// The pose model still is a pose model: task, one class `person`, 17 keypoints in its detections and
/// its JSON, on the same frame as a detect model; one converted input serves both (the pose fixture's
/// input size is the detect fixture's, 320x320) and gives what each model's own conversion gives.
#[test]
fn pose_and_detect_share_one_input() {
    let pose = YoloModel::load(
        &root().join("tests/fixtures/pose/yolov8n-pose-random.safetensors"),
        PoseOptions {
            conf_threshold: 0.01,
            ..PoseOptions::default()
        },
    )
    .unwrap();
    assert_eq!((pose.task(), pose.class_names()), (Task::Pose, &["person".to_string()][..]));
    assert_eq!((pose.num_keypoints(), pose.output_rows()), (17, 56));
    assert_eq!(serde_json::to_string(&pose.task()).unwrap(), "\"pose\"");
    let det = load(V8, PoseOptions::default(), false);
    let g = golden(V8);
    let lb = g.letterbox();
    let bgr = bgr_of(&io(V8));
    let input = Input::from_letterboxed_bgr(&[(&bgr, &lb), (&bgr, &lb)]).unwrap();
    assert_eq!((input.size(), input.len()), ((320, 320), 2));
    let people = pose.detect_input(&input).unwrap();
    let objects = det.detect_input(&input).unwrap();
    assert_eq!((people.len(), objects.len()), (2, 2));
    for frame in &objects {
        assert_matches(frame, &g.dets, &g.names);
    }
    assert!(!people[0].is_empty(), "the random pose model finds someone at conf 0.01");
    let alone = pose.detect_letterboxed_bgr(&bgr, &lb).unwrap();
    assert_eq!(people[0].len(), alone.len());
    for (a, b) in people[0].iter().zip(&alone) {
        assert_eq!((a.bbox, a.score, &a.keypoints), (b.bbox, b.score, &b.keypoints));
        assert_eq!((&*a.class, a.keypoints.len()), ("person", 17));
    }
    let json = serde_json::to_value(&people[0][0]).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["bbox", "class", "keypoints", "score"]);
    assert_eq!(json["class"], "person");
    // field order as before detect models existed
    let text = serde_json::to_string(&people[0][0]).unwrap();
    assert!(text.starts_with(r#"{"class":"person","score":"#), "{text}");
    assert!(text.contains(r#"],"keypoints":[["#), "{text}");
}

/// Weights whose metadata names a task HAVEN does not run, or names that do not fit the head, are
/// refused with errors that say so.
#[test]
fn metadata_task_and_names_are_checked() {
    let src = fixture(&format!("{V8}.safetensors"));
    let bytes = std::fs::read(&src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let dir = scratch().join("metadata");
    std::fs::create_dir_all(&dir).unwrap();
    let with_meta = |file: &str, meta: &[(&str, &str)]| -> PathBuf {
        let meta: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = dir.join(file);
        safetensors::serialize_to_file(st.tensors(), Some(meta), &p).unwrap();
        p
    };
    let p = with_meta("seg.safetensors", &[("haven.task", "segment")]);
    let err = YoloModel::load(&p, PoseOptions::default()).err().expect("must fail");
    assert!(matches!(err, PoseError::UnsupportedTask { .. }), "{err}");
    assert!(err.to_string().contains("a segment model; HAVEN runs pose and detect"), "{err}");

    let p = with_meta("three.safetensors", &[("haven.names", r#"["a","b","c"]"#)]);
    let err = YoloModel::load(&p, PoseOptions::default()).err().expect("must fail");
    assert!(err.to_string().contains("names 3 classes, the head has 80"), "{err}");

    let p = with_meta("numbers.safetensors", &[("haven.names", "[1, 2]")]);
    let err = YoloModel::load(&p, PoseOptions::default()).err().expect("must fail");
    assert!(err.to_string().contains("not a JSON array of strings"), "{err}");

    let names: Vec<String> = (0..80).map(|i| format!("thing{i}")).collect();
    let list = serde_json::to_string(&names).unwrap();
    let p = with_meta("named.safetensors", &[("haven.task", "detect"), ("haven.names", &list)]);
    let m = YoloModel::load(&p, PoseOptions::default()).unwrap();
    assert_eq!(m.class_names(), names);
    std::fs::remove_dir_all(&dir).ok();
}

/// The detect goldens on another device, `HAVEN_TEST_DEVICE=cuda:0` in a build with `--features cuda`
/// (scripts/gpu_check.sh): both models' raw output against onnxruntime, and a batch of two frames
/// against Ultralytics' detections. Skipped, saying so, when the variable is unset.
#[test]
fn detect_goldens_on_the_device_named_by_haven_test_device() {
    let Ok(name) = std::env::var("HAVEN_TEST_DEVICE") else {
        eprintln!("skipped: set HAVEN_TEST_DEVICE (e.g. cuda:0) to run the detect goldens on that device");
        return;
    };
    let opts = PoseOptions {
        device: name.parse().unwrap(),
        ..PoseOptions::default()
    };
    for model in [V8, V11] {
        let m = YoloModel::load(&weights(model), opts.clone()).unwrap();
        eprintln!("{model} on {name}: {:?}", m.device());
        let io = io(model);
        let out = m.forward_raw(&input_of(&io)).unwrap();
        compare(&out.to_device(&Device::Cpu).unwrap(), &io["output0"], 0.5, 1e-3);
        let g = golden(model);
        let (bgr, lb) = (bgr_of(&io), g.letterbox());
        for dets in m.detect_batch(&[(&bgr, &lb), (&bgr, &lb)]).unwrap() {
            assert_matches(&dets, &g.dets, &g.names);
        }
    }
}

/// The fall model (a YOLOv8s saved in half precision) run as the shipped settings run it, its
/// direct-path weights held in 16 bits (`half_weights`), gives the raw output of the f32-held model
/// bit for bit, at 1 and 2 threads.
#[test]
fn the_fall_model_with_16_bit_weights_gives_the_same_numbers() {
    let weights = root().join("weights/fall-yolov8s.safetensors");
    assert!(weights.exists(), "{} is missing: run scripts/fetch-weights.sh before running the tests", weights.display());
    let input = input_of(&common::load_safetensors(&common::fixture_in("pose", "zidane_640_io.safetensors")));
    let raw = |half_weights: bool, threads: usize| {
        let mut engine = EngineOptions::default();
        engine.kernels.winograd = false;
        engine.kernels.half_weights = half_weights;
        let m = YoloModel::load_with_engine(&weights, PoseOptions::default(), engine).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| m.forward_raw(&input).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
    };
    for threads in [1, 2] {
        let (held_f32, held_16) = (raw(false, threads), raw(true, threads));
        assert_eq!(held_f32.len(), held_16.len());
        let differ = held_f32.iter().zip(&held_16).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{threads} threads: {differ} of {} outputs differ", held_f32.len());
    }
}
