//! The 8-bit path against f32 on real frames: people matched (IoU >= 0.9), box and keypoint error
//! (median, p95, in pixels of the 640x640 network input), score shift, per set of frames.
//!
//! `cargo run --example int8_agreement -- [--weights weights/yolo11n-pose.safetensors]
//!   [--video-frames 200] [--video-every 5] [--falls ../shared/falls] [--falls-every 15]
//!   [--golden ../shared/golden/yolo11n-pose] [--dump FILE] [--sweep 1,2,3,...]`
//!
//! Sets: the golden images (zidane, messi5, basketball1, vtest_frame50), `--video-frames` frames of
//! data/1.mp4, 2.mp4, 3.mp4 together (every `--video-every`th, the same number from each), and every
//! `--falls-every`th frame of each clip in `--falls`. Every frame is letterboxed to 640x640 as the
//! server does (OpenCV, pad 114) and run through both precisions of the same weights. A person is
//! one of f32's detections; it is matched when int8 has one with IoU >= 0.9 (greedy, one to one, best
//! IoU first); the f32 people scoring >= 0.5 are counted apart (most unmatched ones are near the
//! 0.25 threshold, where any change of arithmetic moves a box in or out). Box error: the mean of the four corners' coordinate differences; keypoint error: the
//! distance of each keypoint f32 sees with visibility >= 0.5; both in 640-input pixels. `--dump FILE`
//! writes every letterboxed frame (640x640x3 BGR u8, one after another) for
//! scripts/int8_onnxruntime.py, which runs onnxruntime fp32 and its own int8 on the same frames.
//! `--sweep LIST` (body layer numbers, `+` joining layers kept f32 together: `2,16,2+16`): the
//! per-layer sensitivity sweep; f32 runs once, then the 8-bit path once with every layer it takes
//! and once per item with those layers kept f32 (`EngineOptions::int8_f32_layers`), one line each:
//! people matched per set.

use std::io::Write;
use std::path::{Path, PathBuf};

use haven::inference::pose::letterbox;
use haven_pose::{Detection, EngineOptions, PoseModel, PoseOptions, Precision};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};

#[path = "support/mod.rs"]
mod support;
use support::repo;

#[derive(Default)]
struct Stats {
    frames: usize,
    people: usize,
    matched: usize,
    /// f32 people scoring >= 0.5, and how many of them are matched
    confident: usize,
    confident_matched: usize,
    /// f32 people scoring >= 0.3 (clear of the 0.25 threshold's flips), and how many are matched
    clear: usize,
    clear_matched: usize,
    /// int8 people with no f32 person at IoU >= 0.5
    extra: usize,
    box_err: Vec<f64>,
    kpt_err: Vec<f64>,
    score_shift: Vec<f64>,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

impl Stats {
    fn add(&mut self, f: &[Detection], q: &[Detection], scale: f64) {
        self.frames += 1;
        self.people += f.len();
        self.confident += f.iter().filter(|a| a.score >= 0.5).count();
        self.clear += f.iter().filter(|a| a.score >= 0.3).count();
        let mut used = vec![false; q.len()];
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (i, a) in f.iter().enumerate() {
            for (j, b) in q.iter().enumerate() {
                pairs.push((haven_pose::iou(&a.bbox, &b.bbox), i, j));
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut done = vec![false; f.len()];
        for (iou, i, j) in pairs {
            if iou < 0.9 || done[i] || used[j] {
                continue;
            }
            (done[i], used[j]) = (true, true);
            self.matched += 1;
            let (a, b) = (&f[i], &q[j]);
            self.confident_matched += usize::from(a.score >= 0.5);
            self.clear_matched += usize::from(a.score >= 0.3);
            let be: f32 = a.bbox.iter().zip(&b.bbox).map(|(x, y)| (x - y).abs()).sum::<f32>() / 4.0;
            self.box_err.push(be as f64 * scale);
            self.score_shift.push((b.score - a.score) as f64);
            for (ka, kb) in a.keypoints.iter().zip(&b.keypoints) {
                if ka[2] >= 0.5 {
                    self.kpt_err.push(((ka[0] - kb[0]).hypot(ka[1] - kb[1])) as f64 * scale);
                }
            }
        }
        if std::env::var_os("WHY").is_some() {
            for (i, a) in f.iter().enumerate().filter(|(i, _)| !done[*i]) {
                let best = q.iter().map(|b| (haven_pose::iou(&a.bbox, &b.bbox), b.score)).max_by(|x, y| x.0.total_cmp(&y.0));
                eprintln!("unmatched f32 person {i}: score {:.3}, int8's best (IoU, score) {best:?}", a.score);
            }
        }
        self.extra += q
            .iter()
            .filter(|b| !f.iter().any(|a| haven_pose::iou(&a.bbox, &b.bbox) >= 0.5))
            .count();
    }

    fn row(&mut self, name: &str) -> String {
        let abs: Vec<f64> = self.score_shift.iter().map(|v| v.abs()).collect();
        let mean = self.score_shift.iter().sum::<f64>() / self.score_shift.len().max(1) as f64;
        format!(
            "| {name} | {} | {} | {} ({:.1} %) | {} of {} ({:.1} %) | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:+.4} / {:.4} |",
            self.frames,
            self.people,
            self.matched,
            100.0 * self.matched as f64 / self.people.max(1) as f64,
            self.confident_matched,
            self.confident,
            100.0 * self.confident_matched as f64 / self.confident.max(1) as f64,
            self.extra,
            pct(&mut self.box_err, 0.5),
            pct(&mut self.box_err, 0.95),
            pct(&mut self.kpt_err, 0.5),
            pct(&mut self.kpt_err, 0.95),
            mean,
            pct(&mut abs.clone(), 0.95),
        )
    }
}

struct Run {
    f32: PoseModel,
    int8: PoseModel,
    dump: Option<std::fs::File>,
}

impl Run {
    fn frame(&mut self, frame: &Mat, st: &mut Stats) {
        let (boxed, lb) = letterbox(frame, (640, 640)).expect("letterbox");
        let bgr = boxed.data_bytes().expect("continuous frame");
        let f = self.f32.detect_letterboxed_bgr(bgr, &lb).expect("f32 pass");
        let q = self.int8.detect_letterboxed_bgr(bgr, &lb).expect("int8 pass");
        st.add(&f, &q, lb.scale as f64);
        if let Some(d) = &mut self.dump {
            d.write_all(bgr).expect("dump");
        }
    }

    /// Every `every`th frame of `path`, at most `max`.
    fn video(&mut self, path: &Path, every: usize, max: usize, st: &mut Stats) {
        let mut cap = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_ANY).unwrap();
        assert!(cap.is_opened().unwrap_or(false), "cannot open {}", path.display());
        let (mut i, mut taken, mut m) = (0, 0, Mat::default());
        while taken < max && cap.read(&mut m).unwrap_or(false) && !m.empty() {
            if i % every == 0 {
                self.frame(&m, st);
                taken += 1;
            }
            i += 1;
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().ok().unwrap_or_else(|| panic!("{name}: bad value")))
        .unwrap_or(default)
}

fn main() {
    support::help::help_if_asked(include_str!("int8_agreement.rs"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let weights: PathBuf = arg(&args, "--weights", repo().join("weights/yolo11n-pose.safetensors"));
    let load = |precision| {
        PoseModel::load(&weights, PoseOptions { precision, ..PoseOptions::default() })
            .unwrap_or_else(|e| panic!("{}: {e}", weights.display()))
    };
    let dump: Option<PathBuf> = args.iter().position(|a| a == "--dump").map(|i| PathBuf::from(&args[i + 1]));
    let mut run = Run {
        f32: load(Precision::F32),
        int8: load(Precision::Int8),
        dump: dump.map(|p| std::fs::File::create(p).expect("--dump file")),
    };
    let golden: PathBuf = arg(&args, "--golden", repo().join("../shared/golden/yolo11n-pose"));
    let falls: PathBuf = arg(&args, "--falls", repo().join("../shared/falls"));
    let (vframes, vevery, fevery) = (
        arg(&args, "--video-frames", 200usize),
        arg(&args, "--video-every", 5usize),
        arg(&args, "--falls-every", 15usize),
    );
    if let Some(i) = args.iter().position(|a| a == "--sweep") {
        let frames = gather(&golden, &falls, (vframes, vevery, fevery));
        return sweep(&weights, &frames, &args[i + 1]);
    }
    let t0 = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut g = Stats::default();
    for img in ["zidane.jpg", "messi5.jpg", "basketball1.png", "vtest_frame50.png"] {
        let p = golden.join(img);
        let m = imgcodecs::imread(p.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
        assert!(!m.empty(), "cannot read {} (the golden images, ../shared)", p.display());
        run.frame(&m, &mut g);
    }
    rows.push(g.row("golden images"));
    let mut v = Stats::default();
    for n in 1..=3 {
        let per = vframes / 3 + usize::from(n <= vframes % 3);
        run.video(&repo().join(format!("data/{n}.mp4")), vevery, per, &mut v);
    }
    rows.push(v.row("demo videos data/1-3.mp4"));
    let mut f = Stats::default();
    let clips = fall_clips(&falls);
    for c in &clips {
        run.video(c, fevery, usize::MAX, &mut f);
    }
    rows.push(f.row(&format!("falls ({} clips)", clips.len())));
    println!("weights {}, 640x640, {:.0} s", weights.display(), t0.elapsed().as_secs_f64());
    println!("| frames | n | f32 people | matched at IoU >= 0.9 | those scoring >= 0.5: matched | int8 extra people | box error median / p95 (px) | keypoint error median / p95 (px) | score shift mean / p95 abs |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

/// Every frame of the three sets, letterboxed: (set 0 golden / 1 videos / 2 falls, BGR, letterbox).
type Frames = Vec<(usize, Vec<u8>, haven_pose::Letterbox)>;

fn gather(golden: &Path, falls: &Path, (vframes, vevery, fevery): (usize, usize, usize)) -> Frames {
    let mut out = Frames::new();
    let mut add = |set: usize, m: &Mat| {
        let (boxed, lb) = letterbox(m, (640, 640)).expect("letterbox");
        out.push((set, boxed.data_bytes().expect("continuous frame").to_vec(), lb));
    };
    for img in ["zidane.jpg", "messi5.jpg", "basketball1.png", "vtest_frame50.png"] {
        let m = imgcodecs::imread(golden.join(img).to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
        assert!(!m.empty(), "cannot read {img} (the golden images, ../shared)");
        add(0, &m);
    }
    let mut each = |path: &Path, set: usize, every: usize, max: usize| {
        let mut cap = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_ANY).unwrap();
        assert!(cap.is_opened().unwrap_or(false), "cannot open {}", path.display());
        let (mut i, mut taken, mut m) = (0, 0, Mat::default());
        while taken < max && cap.read(&mut m).unwrap_or(false) && !m.empty() {
            if i % every == 0 {
                add(set, &m);
                taken += 1;
            }
            i += 1;
        }
    };
    for n in 1..=3 {
        each(&repo().join(format!("data/{n}.mp4")), 1, vevery, vframes / 3 + usize::from(n <= vframes % 3));
    }
    for c in &fall_clips(falls) {
        each(c, 2, fevery, usize::MAX);
    }
    out
}

/// The fall clips (`*.mp4`) of `dir`, sorted.
fn fall_clips(dir: &Path) -> Vec<PathBuf> {
    let mut clips: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the fall clips, ../shared/falls)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    clips.sort();
    clips
}

/// The sensitivity sweep (`--sweep`): one line per set of layers kept f32.
fn sweep(weights: &Path, frames: &Frames, list: &str) {
    let load = |precision, mask: u64| {
        let engine = EngineOptions { int8_f32_layers: Some(mask), ..EngineOptions::from_env() };
        PoseModel::load_with_engine(weights, PoseOptions { precision, ..PoseOptions::default() }, engine)
            .unwrap_or_else(|e| panic!("{}: {e}", weights.display()))
    };
    let f32m = load(Precision::F32, 0);
    let want: Vec<Vec<Detection>> =
        frames.iter().map(|(_, bgr, lb)| f32m.detect_letterboxed_bgr(bgr, lb).expect("f32 pass")).collect();
    drop(f32m);
    println!("| kept f32 | golden matched | videos matched | falls matched | videos / falls scoring >= 0.3 matched | videos / falls scoring >= 0.5 matched | keypoint median videos / falls (px) |");
    println!("|---|---|---|---|---|---|---|");
    for item in std::iter::once("none").chain(list.split(',')) {
        let mask = item.split('+').filter_map(|t| t.parse::<u32>().ok()).fold(0u64, |m, i| m | 1 << i);
        let m = load(Precision::Int8, mask);
        let mut st: [Stats; 3] = Default::default();
        for ((set, bgr, lb), f) in frames.iter().zip(&want) {
            let q = m.detect_letterboxed_bgr(bgr, lb).expect("int8 pass");
            st[*set].add(f, &q, lb.scale as f64);
        }
        let pc = |s: &Stats| 100.0 * s.matched as f64 / s.people.max(1) as f64;
        let cc = |s: &Stats| 100.0 * s.confident_matched as f64 / s.confident.max(1) as f64;
        let c3 = |s: &Stats| 100.0 * s.clear_matched as f64 / s.clear.max(1) as f64;
        let [g, v, fa] = &mut st;
        println!(
            "| {item} | {} of {} | {} of {} ({:.1} %) | {} of {} ({:.1} %) | {:.1} / {:.1} % | {:.1} / {:.1} % | {:.2} / {:.2} |",
            g.matched, g.people, v.matched, v.people, pc(v), fa.matched, fa.people, pc(fa), c3(v), c3(fa), cc(v), cc(fa),
            pct(&mut v.kpt_err, 0.5), pct(&mut fa.kpt_err, 0.5)
        );
    }
}
