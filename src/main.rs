//! `haven [serve]` runs the server; `haven detect` runs the pose engine on still images;
//! `haven convert-weights` turns an Ultralytics `.pt` into the safetensors the engine loads.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use haven::inference::pose::PoseEngine;
use haven::inference::{draw, AiEngine};
use haven::settings::Settings;
use haven::Application;
use opencv::core::Vector;
use opencv::imgcodecs;
use opencv::prelude::*;

const USAGE: &str = "usage:
  haven [serve] [--settings PATH]                         run the server (default settings/default.toml)
  haven detect IMAGE... [--json] [--out DIR] [--settings PATH]
                                                          people and keypoints in still images, with the
                                                          server's model settings; --out writes annotated copies
  haven convert-weights IN.pt OUT.safetensors             convert Ultralytics YOLOv8/YOLO11-pose weights";

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    haven::configure_process_env();

    let mut args = std::env::args().skip(1).peekable();
    let command = match args.peek().map(String::as_str) {
        Some("serve") | Some("detect") | Some("convert-weights") => args.next().unwrap(),
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => "serve".to_string(),
    };
    let mut settings_path = PathBuf::from("settings/default.toml");
    let mut rest = Vec::new();
    let (mut json, mut out) = (false, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--settings" => settings_path = args.next().context("--settings needs a path")?.into(),
            "--json" if command == "detect" => json = true,
            "--out" if command == "detect" => out = Some(PathBuf::from(args.next().context("--out needs a directory")?)),
            _ => rest.push(arg),
        }
    }
    match command.as_str() {
        "serve" => {
            if !rest.is_empty() {
                bail!("unexpected arguments: {}\n{USAGE}", rest.join(" "));
            }
            serve(settings_path)
        }
        "detect" => {
            if rest.is_empty() {
                bail!("detect needs at least one image\n{USAGE}");
            }
            detect(&settings_path, &rest, json, out.as_deref())
        }
        "convert-weights" => {
            let [input, output] = rest.as_slice() else {
                bail!("convert-weights needs IN.pt and OUT.safetensors\n{USAGE}");
            };
            let summary = haven_pose::convert_pt_to_safetensors(Path::new(input), Path::new(output))?;
            println!("{output}: {summary:?}");
            Ok(())
        }
        other => bail!("unknown command {other}\n{USAGE}"),
    }
}

fn serve(settings_path: PathBuf) -> anyhow::Result<()> {
    let settings = Settings::load(&settings_path)?;
    haven::memory::keep_tidy();
    let engine = PoseEngine::for_server(&settings.model);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings, engine).await?;
        app.run_until_stopped().await?;
        anyhow::Ok(())
    })
}

fn detect(settings_path: &Path, images: &[String], json: bool, out: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(settings_path)?;
    let engine = PoseEngine::load(&settings.model)?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut results = Vec::new();
    for image in images {
        let frame = imgcodecs::imread(image, imgcodecs::IMREAD_COLOR)?;
        if frame.empty() {
            bail!("{image}: not a readable image");
        }
        let started = std::time::Instant::now();
        let (annotated, detections) = engine.process_frame(&frame)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Some(dir) = out {
            let name = Path::new(image).file_name().context("image path has no file name")?;
            let target = dir.join(name);
            imgcodecs::imwrite(target.to_str().context("output path is not UTF-8")?, &annotated, &Vector::new())?;
        }
        if !json {
            println!("{image}: {} people ({}x{}, {ms:.0} ms)", detections.len(), frame.cols(), frame.rows());
            for d in &detections {
                let [x1, y1, x2, y2] = d.bbox;
                let visible = d.keypoints.iter().filter(|k| k[2] >= draw::KEYPOINT_MIN_CONF).count();
                println!("  person {:.2} box [{x1:.0}, {y1:.0}, {x2:.0}, {y2:.0}], {visible}/17 keypoints visible", d.score);
            }
        }
        results.push(serde_json::json!({
            "image": image, "width": frame.cols(), "height": frame.rows(),
            "inference_ms": (ms * 10.0).round() / 10.0, "detections": detections,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}
