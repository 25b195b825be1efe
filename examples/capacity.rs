//! Cameras per core: demo cameras (people walking all the time) beside still cameras (one frame of
//! the same footage held), one viewer each, AI on for all. Per camera: what its viewer received,
//! how often its poses were refreshed, its inferences per second and its own thread's CPU.
//!
//! `cargo build && cargo run --example capacity -- [--demo 6] [--still 6] [--window 30] [--rounds 1]
//!   [--this COPY] [--skip-this] [--exe PATH[=LABEL]]... [--variant LABEL:KEY=VALUE[,KEY=VALUE]]...
//!   [--with-objects LABEL:WEIGHTS]...`
//!
//! Each `--exe` is another build of the server (an older commit's `target/debug/haven` in a worktree,
//! say, with that tree's `settings/default.toml`) run on the same set-up, round after round in turn
//! with this tree's build, so that before and after are measured side by side on the same machine.
//! Each `--variant` runs this tree's build with environment overrides (`HAVEN__DETECTION__WORKERS=2`,
//! or `HAVEN__MODEL__PRECISION=int8,HAVEN__MODELS__FALL__PRECISION=int8` for both models in 8 bits)
//! in the same rotation; `--this` runs a copy of this tree's build in its place (examples/support).
//! Each `--with-objects` runs this tree's build with a second model, `[models.objects]` with these
//! detect weights, on every camera (`models = ["pose", "objects"]`): pose alone against pose plus
//! objects, side by side (docs/performance.md). `data/still.mp4` is made by `scripts/setup.sh`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};


#[path = "support/mod.rs"]
mod support;
use support::{cpu_seconds, median, minor_faults, repo, rss_mib, Build, Builds};

struct Args {
    demo: usize,
    still: usize,
    window: f64,
    rounds: usize,
    /// (build, environment added, detect weights to run beside pose on every camera)
    builds: Vec<(Build, Vec<(String, String)>, Option<PathBuf>)>,
}

fn parse_args() -> Args {
    let mut a = Args { demo: 6, still: 6, window: 30.0, rounds: 1, builds: Vec::new() };
    let mut builds = Builds::new();
    let mut objects: Vec<(String, PathBuf)> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--demo" => a.demo = value().parse().expect("--demo N"),
            "--still" => a.still = value().parse().expect("--still N"),
            "--window" => a.window = value().parse().expect("--window SECONDS"),
            "--rounds" => a.rounds = value().parse().expect("--rounds N"),
            "--with-objects" => {
                let v = value();
                let (label, weights) = v.split_once(':').expect("--with-objects LABEL:WEIGHTS");
                objects.push((label.to_string(), repo().join(weights)));
            }
            other if builds.parse(other, &mut value) => {}
            other => panic!("unknown argument {other} (see the comment at the top of examples/capacity.rs)"),
        }
    }
    let with_objects: Vec<_> = objects.into_iter().map(|(label, w)| (builds.this(&label), Vec::new(), Some(w))).collect();
    a.builds = builds.list.into_iter().map(|(b, env)| (b, env, None)).chain(with_objects).collect();
    a
}

/// What one viewer saw during the window.
#[derive(Default)]
struct Seen {
    frames: u64,
    /// Distinct source frames the shown poses came from (a fresh inference each), by capture time:
    /// frame indices repeat when a file loops.
    pose_frames: HashSet<u64>,
    counting: bool,
}

#[derive(serde::Deserialize)]
struct Meta {
    timestamp: f64,
    #[serde(default)]
    inference_ms: Option<f64>,
    #[serde(default)]
    poses: Option<PosesMeta>,
}

#[derive(serde::Deserialize)]
struct PosesMeta {
    timestamp: f64,
}

async fn connect(port: u16, id: &str, seen: Arc<Mutex<Seen>>) -> actix_web::rt::task::JoinHandle<()> {
    support::viewer(port, id, move |bytes| {
        // Only the metadata is read: the clients share the server's cores.
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let Some(at) = text.find(r#""metadata":"#) else { return };
        let Ok(m) = serde_json::from_str::<Meta>(&text[at + 11..text.len() - 1]) else { return };
        let mut s = seen.lock().unwrap();
        if s.counting {
            s.frames += 1;
            // Builds from before the detect rate inferred every frame they showed.
            match (m.poses, m.inference_ms) {
                (Some(p), _) => s.pose_frames.insert(p.timestamp.to_bits()),
                (None, Some(_)) => s.pose_frames.insert(m.timestamp.to_bits()),
                _ => false,
            };
        }
    })
    .await
}

async fn statuses(port: u16) -> Vec<serde_json::Value> {
    let mut res = awc::Client::new().get(format!("http://127.0.0.1:{port}/api/cameras")).send().await.unwrap();
    let v: serde_json::Value = res.json().limit(1 << 22).await.unwrap();
    v["cameras"].as_array().unwrap().clone()
}

/// One camera's figures over a window.
struct Row {
    id: String,
    still: bool,
    viewer_fps: f64,
    pose_fps: f64,
    inferences_per_s: f64,
    cpu_percent: Option<f64>,
    /// Each model's passes per second and the median of its last-pass times sampled (ms).
    models: Vec<(String, f64, Option<f64>)>,
}

/// One build's round: per-camera rows and the process's figures.
struct Round {
    rows: Vec<Row>,
    /// CPU over the window, in cores.
    cores: f64,
    rss_mib: f64,
    /// Minor page faults a second over the window (memory mapped afresh and touched).
    faults_per_s: f64,
}

impl Round {
    /// The process's CPU per model pass of any camera, in ms: what a look costs, less sensitive to
    /// the machine's other load than looks a second.
    fn cpu_ms_per_pass(&self) -> f64 {
        let passes: f64 = self.rows.iter().flat_map(|r| r.models.iter().map(|m| m.1)).sum();
        self.cores * 1000.0 / passes
    }
}

async fn round(build: &Build, env: &[(String, String)], objects: Option<&std::path::Path>, args: &Args) -> Round {
    // Each build reads its own shipped settings (an older one refuses sections it does not know).
    let mut s = build.settings_with_cameras(0);
    if let Some(weights) = objects {
        s.push_str(&format!("[models.objects]\nweights = \"{}\"\nconf_threshold = 0.25\niou_threshold = 0.7\n\n", weights.display()));
    }
    let models = if objects.is_some() { "models = [\"pose\", \"objects\"]\n" } else { "" };
    let cams: Vec<(String, bool)> = (0..args.demo)
        .map(|i| (format!("demo{}", i + 1), false))
        .chain((0..args.still).map(|i| (format!("still{}", i + 1), true)))
        .collect();
    for (i, (id, still)) in cams.iter().enumerate() {
        let source = if *still { "data/still.mp4".to_string() } else { format!("data/{}.mp4", i % 3 + 1) };
        s.push_str(&format!("[[cameras]]\ncamera_id = \"{id}\"\nsource = \"{source}\"\nsource_type = \"video_file\"\n{models}\n"));
    }
    // The events in a scratch directory of their own, never the checkout's (another server may hold
    // its database).
    let events = std::env::temp_dir().join(format!("haven-capacity-events-{}", std::process::id()));
    let s = s.replace("data_dir = \"data/events\"", &format!("data_dir = \"{}\"", events.display()));
    let settings = std::env::temp_dir().join(format!("haven-capacity-{}.toml", std::process::id()));
    std::fs::write(&settings, s).unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let haven = build.start(&settings, &env, None);
    let (pid, port) = (haven.pid(), haven.port);
    let seen: Vec<Arc<Mutex<Seen>>> = cams.iter().map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for ((id, _), s) in cams.iter().zip(&seen) {
        tasks.push(connect(port, id, s.clone()).await);
    }
    actix_web::rt::time::sleep(Duration::from_secs(10)).await; // warm-up: first checks, queues settle
    let before = statuses(port).await;
    let (cpu0, faults0) = (cpu_seconds(pid), minor_faults(pid));
    seen.iter().for_each(|s| s.lock().unwrap().counting = true);
    let t0 = Instant::now();
    let mut cpu_samples: Vec<Vec<f64>> = vec![Vec::new(); cams.len()];
    let mut model_ms: Vec<std::collections::BTreeMap<String, Vec<f64>>> = vec![Default::default(); cams.len()];
    while t0.elapsed().as_secs_f64() < args.window {
        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        for (i, c) in statuses(port).await.iter().enumerate() {
            if let Some(v) = c["cpu_percent"].as_f64() {
                cpu_samples[i].push(v);
            }
            for (name, m) in c["models_stats"].as_object().into_iter().flatten() {
                if let Some(ms) = m["inference_ms"].as_f64() {
                    model_ms[i].entry(name.clone()).or_default().push(ms);
                }
            }
        }
    }
    seen.iter().for_each(|s| s.lock().unwrap().counting = false);
    let elapsed = t0.elapsed().as_secs_f64();
    let cores = (cpu_seconds(pid) - cpu0) / elapsed;
    let faults_per_s = (minor_faults(pid) - faults0) as f64 / elapsed;
    let rss = rss_mib(pid);
    let after = statuses(port).await;
    let rows = cams
        .iter()
        .enumerate()
        .map(|(i, (id, still))| {
            let s = seen[i].lock().unwrap();
            let inferred = after[i]["inferences"].as_u64().unwrap_or(0) - before[i]["inferences"].as_u64().unwrap_or(0);
            Row {
                id: id.clone(),
                still: *still,
                viewer_fps: s.frames as f64 / elapsed,
                pose_fps: s.pose_frames.len() as f64 / elapsed,
                inferences_per_s: inferred as f64 / elapsed,
                cpu_percent: (!cpu_samples[i].is_empty()).then(|| median(cpu_samples[i].clone())),
                models: after[i]["models_stats"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, m)| {
                        let n = m["inferences"].as_u64().unwrap_or(0) - before[i]["models_stats"][name]["inferences"].as_u64().unwrap_or(0);
                        let ms = model_ms[i].get(name).filter(|v| !v.is_empty()).map(|v| median(v.clone()));
                        (name.clone(), n as f64 / elapsed, ms)
                    })
                    .collect(),
            }
        })
        .collect();
    for t in tasks {
        t.abort();
    }
    haven.stop();
    let _ = std::fs::remove_file(settings);
    let _ = std::fs::remove_dir_all(events);
    Round { rows, cores, rss_mib: rss, faults_per_s }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

#[actix_web::main]
async fn main() {
    support::help::help_if_asked(include_str!("capacity.rs"));
    let args = parse_args();
    println!(
        "# capacity: {} demo + {} still cameras, AI on, one viewer each, {} s window after 10 s warm-up, {} round(s)",
        args.demo, args.still, args.window, args.rounds
    );
    let mut results: Vec<Vec<Round>> = args.builds.iter().map(|_| Vec::new()).collect();
    for r in 0..args.rounds {
        for (b, (build, env, objects)) in args.builds.iter().enumerate() {
            eprintln!("round {} of {}: {}", r + 1, args.rounds, build.label);
            let got = round(build, env, objects.as_deref(), &args).await;
            let demo: Vec<f64> = got.rows.iter().filter(|r| !r.still).map(|r| r.pose_fps).collect();
            eprintln!(
                "  demo poses refreshed /s {:.2}-{:.2}; process CPU {:.2} cores, {:.1} ms per model pass; {:.0} minor faults /s; RSS {:.0} MiB",
                demo.iter().cloned().fold(f64::INFINITY, f64::min),
                demo.iter().cloned().fold(0.0, f64::max),
                got.cores,
                got.cpu_ms_per_pass(),
                got.faults_per_s,
                got.rss_mib
            );
            results[b].push(got);
        }
    }
    for (b, (build, _, _)) in args.builds.iter().enumerate() {
        let label = &build.label;
        println!("\n## {label}\n");
        println!("| camera | viewer fps | poses refreshed /s | inferences /s | camera thread CPU % | per model: passes /s, median ms |");
        println!("|---|---|---|---|---|---|");
        let n = results[b][0].rows.len();
        let med = |f: &dyn Fn(&Row) -> f64, i: usize| median(results[b].iter().map(|r| f(&r.rows[i])).collect());
        for i in 0..n {
            let row = &results[b][0].rows[i];
            let cpu: Vec<f64> = results[b].iter().filter_map(|r| r.rows[i].cpu_percent).collect();
            let models: Vec<String> = row
                .models
                .iter()
                .enumerate()
                .map(|(k, (name, _, _))| {
                    let rate = median(results[b].iter().filter_map(|r| r.rows[i].models.get(k).map(|m| m.1)).collect());
                    let ms: Vec<f64> = results[b].iter().filter_map(|r| r.rows[i].models.get(k).and_then(|m| m.2)).collect();
                    format!("{name} {rate:.2}, {} ms", fmt_opt((!ms.is_empty()).then(|| median(ms))))
                })
                .collect();
            println!(
                "| {} | {:.1} | {:.1} | {:.2} | {} | {} |",
                row.id,
                med(&|r| r.viewer_fps, i),
                med(&|r| r.pose_fps, i),
                med(&|r| r.inferences_per_s, i),
                fmt_opt((!cpu.is_empty()).then(|| median(cpu))),
                models.join("; ")
            );
        }
        let pick = |still: bool, f: &dyn Fn(&Row) -> f64| -> Vec<f64> {
            (0..n).filter(|&i| results[b][0].rows[i].still == still).map(|i| med(f, i)).collect()
        };
        let min = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = |v: &[f64]| v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let viewer = pick(false, &|r| r.viewer_fps).into_iter().chain(pick(true, &|r| r.viewer_fps)).collect::<Vec<_>>();
        let demo_poses = pick(false, &|r| r.pose_fps);
        let still_inf = pick(true, &|r| r.inferences_per_s);
        let still_cpu: Vec<f64> = (0..n)
            .filter(|&i| results[b][0].rows[i].still)
            .filter_map(|i| {
                let v: Vec<f64> = results[b].iter().filter_map(|r| r.rows[i].cpu_percent).collect();
                (!v.is_empty()).then(|| median(v))
            })
            .collect();
        println!(
            "\nsummary ({label}): viewer fps min {:.1}; demo poses refreshed /s min {:.2}, max {:.2} (spread {:.0} %); still inferences /s max {:.2}; still camera thread CPU max {}; process CPU {:.2} cores, {:.1} ms per model pass, {:.0} minor faults /s; RSS {:.0} MiB",
            min(&viewer),
            min(&demo_poses),
            max(&demo_poses),
            if min(&demo_poses) > 0.0 { (max(&demo_poses) / min(&demo_poses) - 1.0) * 100.0 } else { f64::NAN },
            max(&still_inf),
            if still_cpu.is_empty() { "–".into() } else { format!("{:.1} %", max(&still_cpu)) },
            median(results[b].iter().map(|r| r.cores).collect()),
            median(results[b].iter().map(Round::cpu_ms_per_pass).collect()),
            median(results[b].iter().map(|r| r.faults_per_s).collect()),
            median(results[b].iter().map(|r| r.rss_mib).collect()),
        );
    }
}
