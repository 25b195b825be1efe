//! `haven [serve]` runs the server; `haven detect` runs the pose engine on still images; `haven
//! analyze` runs a camera's pipeline over video files and `haven evaluate` judges falls on labelled clips;
//! `haven convert-weights` turns an Ultralytics `.pt` into the safetensors the engine loads;
//! `haven user …` and `haven token …` manage accounts and API tokens (docs/security.md).
//! `haven --help` (and `haven SUB-COMMAND --help`) describe them, with the exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use haven::inference::pose::PoseEngine;
use haven::inference::{draw, AiEngine};
use haven::settings::{Settings, SettingsError};
use haven::analyze::{AnalyzeError, Analyzer};
use haven::evaluate::EvaluateError;
use haven::Application;
use opencv::core::Vector;
use opencv::imgcodecs;
use opencv::prelude::*;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failed while running (the server stopped on an error, a result could not be written)
  2  bad command line (unknown option, missing argument, a --camera the settings lack)
  3  settings file missing, unreadable or invalid
  4  the server could not start (address in use, event store unusable)
  5  model weights missing or unusable, or a conversion that failed
  6  an input file (image, checkpoint, video, labels.json) missing, unreadable or malformed

Errors are one line on stderr; RUST_BACKTRACE=1 adds the chain of causes and a backtrace.";

/// HAVEN: real-time multi-camera video analytics (pose inference once per frame, fanned out to every
/// viewer). Without a sub-command it runs the server.
#[derive(Debug, Parser)]
#[command(name = "haven", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The settings file (TOML); any value in it can be overridden by HAVEN__SECTION__KEY variables
    #[arg(long, short = 's', global = true, value_name = "PATH", env = "HAVEN_SETTINGS", default_value = "settings/default.toml")]
    settings: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default): cameras, REST API, WebSockets, events, the web UI
    #[command(after_help = EXIT_CODES)]
    Serve,
    /// Find people and their 17 keypoints (or, with --model, a detect model's objects) in still
    /// images, with the server's model settings
    #[command(after_help = EXIT_CODES)]
    Detect {
        /// Images to read (any format OpenCV reads: JPEG, PNG, BMP, ...)
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        /// Print the results as JSON (one array, one object per image) instead of text
        #[arg(long)]
        json: bool,
        /// Write annotated copies of the images into DIR (created if need be)
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run the model on DEVICE ("cpu", "cuda:N", "metal") instead of the settings' model.device
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
        /// Which of the settings' models looks at the images ([models.NAME]; [model] is "pose")
        #[arg(long, value_name = "NAME", default_value = "pose")]
        model: String,
    },
    /// Run video files through a camera's whole pipeline (motion gate, detect rate, regions, every
    /// model the settings give the camera, tracker, fall rule and fall model) in the video's own time, as fast as the
    /// CPU allows, and print the events each raised (kind, start, alert and end in seconds of the video,
    /// and why)
    #[command(after_help = EXIT_CODES)]
    Analyze {
        /// Video files (any format OpenCV reads through FFmpeg)
        #[arg(required = true, value_name = "VIDEO")]
        videos: Vec<PathBuf>,
        /// Print the results as JSON (one array, one object per video) instead of text
        #[arg(long)]
        json: bool,
        /// Use this camera's own settings from the settings file (detect rate, motion, models, fall
        /// rule); without it, a camera with the settings file's defaults
        #[arg(long, value_name = "ID")]
        camera: Option<String>,
        /// Show each video's last frame again for this many seconds at its end, as a camera would go
        /// on showing someone who stays down
        #[arg(long, value_name = "SECS", default_value_t = 0.0)]
        hold_last: f64,
    },
    /// Judge the fall detector on labelled clips: DIR holds the clips and a labels.json (the format of
    /// the development set: file, kind "fall" or "adl", fall_times_s). Prints per clip and in total
    /// the falls raised and missed, false alarms, and seconds from reaching the floor to the alert
    #[command(after_help = EXIT_CODES)]
    Evaluate {
        /// The folder with labels.json and the clips it names
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Print the results as JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Use this camera's own settings from the settings file
        #[arg(long, value_name = "ID")]
        camera: Option<String>,
        /// Seconds each clip's last frame is held at its end (the person stays down)
        #[arg(long, value_name = "SECS", default_value_t = 10.0)]
        hold_last: f64,
    },
    /// Convert Ultralytics YOLOv8 / YOLO11 weights (.pt), pose or detect (any scale, COCO or custom
    /// classes), to the f32 safetensors file HAVEN loads, without PyTorch. The checkpoint's task and
    /// class names are checked and kept; segment, obb and classify models are refused. The result is
    /// loaded once to verify it
    #[command(after_help = EXIT_CODES)]
    ConvertWeights {
        /// Only check that WEIGHTS (a .safetensors file) loads, and print its task, architecture, scale
        /// and classes
        #[arg(long, value_name = "WEIGHTS", conflicts_with_all = ["input", "output"])]
        check: Option<PathBuf>,
        /// The Ultralytics checkpoint (.pt)
        #[arg(value_name = "IN.pt", required_unless_present = "check")]
        input: Option<PathBuf>,
        /// The safetensors file to write
        #[arg(value_name = "OUT.safetensors", required_unless_present = "check")]
        output: Option<PathBuf>,
    },
    /// Manage the people who may sign in (accounts in <events.data_dir>/accounts.db); works while
    /// the server runs
    #[command(after_help = EXIT_CODES)]
    User {
        #[command(subcommand)]
        command: haven::auth::cli::UserCommand,
    },
    /// Manage API tokens for integrations (Authorization: Bearer TOKEN); works while the server runs
    #[command(after_help = EXIT_CODES)]
    Token {
        #[command(subcommand)]
        command: haven::auth::cli::TokenCommand,
    },
}

/// Why a command failed, and so its exit code.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot start: {0}")]
    Start(#[from] haven::AppError),
    #[error("{0}")]
    Model(String),
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    /// A command-line value clap cannot check (a camera the settings lack, a duration out of range).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Run(_) => 1,
            Failure::Settings(_) => 3,
            Failure::Start(_) => 4,
            Failure::Model(_) => 5,
            Failure::Input { .. } => 6,
            Failure::Usage(_) => 2,
        }
    }
}

fn main() -> ExitCode {
    // Parse errors, --help and --version exit here (2 for a bad command line, 0 for help).
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    haven::configure_process_env();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings),
        Command::Detect { images, json, out, device, model } => detect(&cli.settings, &images, json, out.as_deref(), device, &model),
        Command::Analyze { videos, json, camera, hold_last } => analyze(&cli.settings, &videos, json, camera.as_deref(), hold_last),
        Command::Evaluate { dir, json, camera, hold_last } => evaluate(&cli.settings, &dir, json, camera.as_deref(), hold_last),
        Command::ConvertWeights { check: Some(weights), .. } => check_weights(&weights),
        Command::ConvertWeights { input: Some(input), output: Some(output), .. } => convert(&input, &output),
        Command::ConvertWeights { .. } => unreachable!("clap requires IN.pt and OUT.safetensors without --check"),
        Command::User { command } => accounts(&cli.settings, |dir, out| haven::auth::cli::user(dir, &command, out)),
        Command::Token { command } => accounts(&cli.settings, |dir, out| haven::auth::cli::token(dir, &command, out)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("error: {}", e.one_line());
            if backtrace_wanted() {
                match e {
                    Failure::Run(inner) => eprintln!("{inner:?}"),
                    other => eprintln!("{:?}", anyhow::Error::new(other)),
                }
            }
            ExitCode::from(code)
        }
    }
}

impl Failure {
    /// The message with its causes, on one line.
    fn one_line(&self) -> String {
        let text = match self {
            Failure::Run(inner) => format!("{inner:#}"),
            other => other.to_string(),
        };
        text.replace('\n', " ")
    }
}

fn backtrace_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| !v.is_empty() && v != "0")
}

fn serve(settings_path: &Path) -> Result<(), Failure> {
    let settings = Settings::load(settings_path)?;
    haven::memory::keep_tidy();
    let invalid = |message: String| Failure::Settings(SettingsError::Invalid { path: settings.origin.clone(), message });
    let engines = PoseEngine::engines_for_server(&settings.models).map_err(invalid)?;
    // Cameras' object_events against the classes of the models that did load.
    let catalog = haven::hub::ModelCatalog::new(settings.models.keys().cloned(), &engines);
    for camera in &settings.cameras {
        catalog.check(camera).map_err(|e| invalid(e.to_string()))?;
    }
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings, engines).await?;
        app.run_until_stopped().await.map_err(|e| anyhow::anyhow!("the server stopped: {e}"))?;
        Ok(())
    })
}

/// `haven user …`, `haven token …` on the accounts beside the settings' event store: a refused
/// change (a name taken or unknown, a bad password) is a bad command line (2).
fn accounts(
    settings_path: &Path,
    run: impl FnOnce(&Path, &mut std::io::Stdout) -> Result<(), haven::auth::cli::CliError>,
) -> Result<(), Failure> {
    use haven::auth::cli::CliError;
    use haven::auth::StoreError;
    let settings = Settings::load(settings_path)?;
    run(&settings.events.data_dir, &mut std::io::stdout()).map_err(|e| match e {
        CliError::Store(StoreError::Sqlite(_) | StoreError::Io { .. } | StoreError::TooNew { .. } | StoreError::Random(_)) => {
            Failure::Run(anyhow::Error::new(e))
        }
        other => Failure::Usage(other.to_string()),
    })
}

/// A pose-engine error about `input`: 6 when `input` is missing or unreadable, 5 for anything else.
fn pose_failure(e: haven_pose::PoseError, input: &Path) -> Failure {
    let input_failure = |message: String| Failure::Input { path: input.display().to_string(), message };
    match e {
        haven_pose::PoseError::WeightsNotFound { ref path } if path == input => input_failure("no such file".into()),
        haven_pose::PoseError::Io { ref path, ref source } if path == input => input_failure(source.to_string()),
        other => Failure::Model(other.to_string()),
    }
}

fn load_weights(weights: &Path) -> Result<haven_pose::PoseModel, haven_pose::PoseError> {
    haven_pose::PoseModel::load(weights, haven_pose::PoseOptions::default())
}

/// "task detect, YOLOv8 scale n, 80 classes: person, bicycle, car, motorcycle, airplane, ... 75 more".
fn describe(m: &haven_pose::YoloModel) -> String {
    let names = m.class_names();
    let mut shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = format!("... {} more", names.len().saturating_sub(5));
    if names.len() > 5 {
        shown.push(&more);
    }
    let arch = match m.arch() {
        haven_pose::Arch::V8 => "YOLOv8",
        haven_pose::Arch::V11 => "YOLO11",
    };
    let keypoints = if m.num_keypoints() > 0 { format!(", {} keypoints", m.num_keypoints()) } else { String::new() };
    let classes = if names.len() == 1 { "class" } else { "classes" };
    format!("task {}, {arch} scale {}, {} {classes}: {}{keypoints}", m.task(), m.scale_name(), names.len(), shown.join(", "))
}

fn check_weights(weights: &Path) -> Result<(), Failure> {
    let m = load_weights(weights).map_err(|e| pose_failure(e, weights))?;
    println!("{}: {}", weights.display(), describe(&m));
    Ok(())
}

fn convert(input: &Path, output: &Path) -> Result<(), Failure> {
    let summary = haven_pose::convert_pt_to_safetensors(input, output).map_err(|e| pose_failure(e, input))?;
    let m = load_weights(output).map_err(|e| {
        Failure::Model(format!("converted {} but it does not load: {e}", output.display()))
    })?;
    println!(
        "wrote {}: {} tensors, {} parameters (from {:?}, BatchNorm eps {:?}), {}",
        output.display(),
        summary.tensors,
        summary.parameters,
        summary.source_dtypes,
        summary.bn_eps,
        describe(&m)
    );
    Ok(())
}

fn detect(settings_path: &Path, images: &[PathBuf], json: bool, out: Option<&Path>, device: Option<String>, name: &str) -> Result<(), Failure> {
    let settings = Settings::load(settings_path)?;
    let mut model = settings.models.get(name).cloned().ok_or_else(|| {
        let loaded: Vec<&str> = settings.models.keys().map(String::as_str).collect();
        Failure::Model(format!("{}: no model named {name:?} (the settings have [{}])", settings.origin, loaded.join(", ")))
    })?;
    if let Some(device) = device {
        model.device = device;
        model.validate().map_err(|e| Failure::Model(format!("--device: {e}")))?;
    }
    // A mistyped name fails at once, before the model loads.
    if let Some(missing) = images.iter().find(|i| !i.is_file()) {
        return Err(Failure::Input { path: missing.display().to_string(), message: "no such file".into() });
    }
    let engine = PoseEngine::load(&model).map_err(|e| Failure::Model(format!("{}: {e}", model.weights.display())))?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let mut results = Vec::new();
    for image in images {
        let name = image.display().to_string();
        let unreadable = |message: String| Failure::Input { path: name.clone(), message };
        let frame = imgcodecs::imread(&name, imgcodecs::IMREAD_COLOR).map_err(|e| unreadable(e.to_string()))?;
        if frame.empty() {
            return Err(unreadable("not a readable image".into()));
        }
        let started = std::time::Instant::now();
        let (annotated, detections) = engine.process_frame(&frame).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Some(dir) = out {
            let target = dir.join(image.file_name().ok_or_else(|| unreadable("the path has no file name".into()))?);
            let written = target
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("{}: the output path is not UTF-8", target.display()))
                .and_then(|t| Ok(imgcodecs::imwrite(t, &annotated, &Vector::new())?));
            if !matches!(written, Ok(true)) {
                let why = written.map_or_else(|e| e.to_string(), |_| "OpenCV wrote nothing".into());
                return Err(anyhow::anyhow!("cannot write {}: {why}", target.display()).into());
            }
        }
        if !json {
            let found = if engine.task() == haven_pose::Task::Detect { "objects" } else { "people" };
            println!("{name}: {} {found} ({}x{}, {ms:.0} ms)", detections.len(), frame.cols(), frame.rows());
            for d in &detections {
                let [x1, y1, x2, y2] = d.bbox;
                let visible = d.keypoints.iter().filter(|k| k[2] >= draw::KEYPOINT_MIN_CONF).count();
                let keypoints = if d.keypoints.is_empty() {
                    String::new()
                } else {
                    format!(", {visible}/{} keypoints visible", d.keypoints.len())
                };
                println!("  {} {:.2} box [{x1:.0}, {y1:.0}, {x2:.0}, {y2:.0}]{keypoints}", d.class, d.score);
            }
        }
        results.push(serde_json::json!({
            "image": name, "width": frame.cols(), "height": frame.rows(),
            "inference_ms": (ms * 10.0).round() / 10.0, "detections": detections,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results).map_err(anyhow::Error::from)?);
    }
    Ok(())
}

impl From<AnalyzeError> for Failure {
    fn from(e: AnalyzeError) -> Self {
        match e {
            AnalyzeError::Input { path, message } => Failure::Input { path, message },
            AnalyzeError::Camera(message) => Failure::Usage(format!("--camera: {message}")),
            other => Failure::Run(other.into()),
        }
    }
}

impl From<EvaluateError> for Failure {
    fn from(e: EvaluateError) -> Self {
        match e {
            EvaluateError::Labels { path, message } => Failure::Input { path, message },
            EvaluateError::Analyze(e) => e.into(),
        }
    }
}

/// The settings and their models, for `analyze` and `evaluate`.
fn analyzer(settings_path: &Path, camera: Option<&str>, hold_last: f64) -> Result<Analyzer, Failure> {
    if !(hold_last.is_finite() && (0.0..=3600.0).contains(&hold_last)) {
        return Err(Failure::Usage(format!("--hold-last {hold_last}: must lie in [0, 3600] seconds")));
    }
    let settings = Settings::load(settings_path)?;
    let invalid = |message: String| Failure::Settings(SettingsError::Invalid { path: settings.origin.clone(), message });
    let engines = PoseEngine::engines_for_server(&settings.models).map_err(invalid)?;
    if engines.is_empty() {
        return Err(Failure::Model(format!("{}: no model could be loaded (see the warnings above)", settings.origin)));
    }
    Ok(Analyzer::new(settings, engines, camera, hold_last)?)
}

fn analyze(settings_path: &Path, videos: &[PathBuf], json: bool, camera: Option<&str>, hold_last: f64) -> Result<(), Failure> {
    // A mistyped name fails at once, before the models load.
    if let Some(missing) = videos.iter().find(|v| !v.is_file()) {
        return Err(Failure::Input { path: missing.display().to_string(), message: "no such file".into() });
    }
    let analyzer = analyzer(settings_path, camera, hold_last)?;
    let mut reports = Vec::new();
    for video in videos {
        let report = analyzer.run(video)?;
        if !json {
            let looks: Vec<String> = report.looks.iter().map(|(m, n)| format!("{m} {n}")).collect();
            println!(
                "{}: {:.1} s, {} frames, looks: {}; {} events",
                report.file,
                report.duration_s,
                report.frames,
                if looks.is_empty() { "none".into() } else { looks.join(", ") },
                report.events.len()
            );
            for e in &report.events {
                let end = e.end_s.map_or("on at the end".to_string(), |t| format!("ended {t:.2} s"));
                let why = e.reason.as_ref().map(|r| format!(": {}", r.summary)).unwrap_or_default();
                let long_lie = e.long_lie_s.map(|t| format!(", long lie {t:.2} s")).unwrap_or_default();
                println!("  {} (track {}) from {:.2} s, raised {:.2} s, {end}{long_lie}, score {:.2}{why}", e.kind, e.track_id, e.start_s, e.raised_s, e.score);
            }
        }
        reports.push(report);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).map_err(anyhow::Error::from)?);
    }
    Ok(())
}

fn evaluate(settings_path: &Path, dir: &Path, json: bool, camera: Option<&str>, hold_last: f64) -> Result<(), Failure> {
    let labels_path = dir.join("labels.json");
    if !labels_path.is_file() {
        return Err(Failure::Input { path: labels_path.display().to_string(), message: "no such file".into() });
    }
    let labels = haven::evaluate::read_labels(&labels_path)?;
    if let Some(missing) = labels.iter().map(|l| dir.join(&l.file)).find(|p| !p.is_file()) {
        return Err(Failure::Input { path: missing.display().to_string(), message: "no such file (named in labels.json)".into() });
    }
    let analyzer = analyzer(settings_path, camera, hold_last)?;
    let evaluation = haven::evaluate::evaluate(&analyzer, &labels_path, &labels, |clip| {
        if !json {
            eprintln!("{}: {} of {} falls, {} false alarms", clip.file, clip.raised(), clip.fall_times_s.len(), clip.false_alarms);
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&evaluation).map_err(anyhow::Error::from)?);
    } else {
        print!("{}", evaluation.table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn without_a_sub_command_it_serves_and_the_settings_go_anywhere() {
        let cli = Cli::try_parse_from(["haven", "--settings", "a.toml"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.settings, PathBuf::from("a.toml"));
        let cli = Cli::try_parse_from(["haven", "detect", "x.jpg", "--settings", "b.toml", "--json"]).unwrap();
        assert_eq!(cli.settings, PathBuf::from("b.toml"));
        assert!(matches!(cli.command, Some(Command::Detect { json: true, ref images, out: None, device: None, ref model }) if images == &[PathBuf::from("x.jpg")] && model == "pose"));
        let cli = Cli::try_parse_from(["haven", "detect", "x.jpg", "--device", "cuda:1"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Detect { device: Some(ref d), .. }) if d == "cuda:1"));
        let cli = Cli::try_parse_from(["haven", "detect", "x.jpg", "--model", "objects"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Detect { ref model, .. }) if model == "objects"));
    }

    #[test]
    fn help_is_help_per_sub_command_with_the_exit_codes() {
        for (args, wants) in [
            (&["haven", "--help"][..], "convert-weights"),
            (&["haven", "detect", "--help"], "--out <DIR>"),
            (&["haven", "serve", "--help"], "HAVEN_SETTINGS"),
            (&["haven", "convert-weights", "--help"], "OUT.safetensors"),
            (&["haven", "convert-weights", "--help"], "pose or detect"),
            (&["haven", "analyze", "--help"], "--hold-last <SECS>"),
            (&["haven", "evaluate", "--help"], "labels.json"),
            (&["haven", "user", "--help"], "passwd"),
            (&["haven", "token", "--help"], "revoke"),
        ] {
            let err = Cli::try_parse_from(args.iter().copied()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
            let text = err.render().to_string();
            assert!(text.contains(wants) && text.contains("Exit codes:"), "{args:?}:\n{text}");
        }
        assert_eq!(Cli::try_parse_from(["haven", "--version"]).unwrap_err().kind(), ErrorKind::DisplayVersion);
        // Accounts: the password is never an argument; the roles are listed.
        let help = Cli::try_parse_from(["haven", "user", "add", "--help"]).unwrap_err().render().to_string();
        assert!(help.contains("never from the command line") && help.contains("operator"), "{help}");
        let cli = Cli::try_parse_from(["haven", "user", "add", "ann", "--role", "viewer", "--cameras", "ward-a-*"]).unwrap();
        assert!(matches!(cli.command, Some(Command::User { command: haven::auth::cli::UserCommand::Add { ref name, role: haven::auth::Role::Viewer, cameras: Some(_) } }) if name == "ann"));
        for bad in [&["haven", "user", "add", "ann", "--role", "root"][..], &["haven", "user", "add", "ann", "--role", "admin", "--password", "x"], &["haven", "token", "create", "t", "--role", "admin", "--expires-in-days", "0"]] {
            assert_eq!(Cli::try_parse_from(bad.iter().copied()).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn bad_command_lines_exit_with_2() {
        for args in [
            &["haven", "detect"][..],
            &["haven", "--bogus"],
            &["haven", "convert-weights", "a.pt"],
            &["haven", "convert-weights"],
            &["haven", "convert-weights", "--check", "w", "a.pt"],
            &["haven", "nothing"],
            &["haven", "analyze"],
            &["haven", "evaluate"],
            &["haven", "analyze", "v.mp4", "--hold-last", "soon"],
        ] {
            assert_eq!(Cli::try_parse_from(args.iter().copied()).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn convert_weights_converts_or_checks() {
        let cli = Cli::try_parse_from(["haven", "convert-weights", "--check", "w.safetensors"]).unwrap();
        assert!(matches!(cli.command, Some(Command::ConvertWeights { check: Some(ref w), input: None, output: None }) if w == Path::new("w.safetensors")));
        let cli = Cli::try_parse_from(["haven", "convert-weights", "a.pt", "b.safetensors"]).unwrap();
        assert!(matches!(cli.command, Some(Command::ConvertWeights { check: None, input: Some(_), output: Some(_) })));
    }

    /// A detect checkpoint converts (task and class names kept) and `--check` describes it.
    #[test]
    fn a_detect_checkpoint_converts_and_checks() {
        let pt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detect/yolo11n-detect-random.pt");
        let out = std::env::temp_dir().join(format!("haven-detect-convert-{}.safetensors", std::process::id()));
        convert(&pt, &out).unwrap();
        check_weights(&out).unwrap();
        let m = load_weights(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        assert_eq!(describe(&m), "task detect, YOLO11 scale n, 4 classes: bicycle, car, dog, package");
        let pose = load_weights(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pose/yolov8n-pose-random.safetensors")).unwrap();
        assert_eq!(describe(&pose), "task pose, YOLOv8 scale n, 1 class: person, 17 keypoints");
    }

    #[test]
    fn a_missing_input_is_exit_code_6_and_a_bad_file_5() {
        let missing = convert(Path::new("/nonexistent/x.pt"), Path::new("/tmp/never.safetensors")).unwrap_err();
        assert_eq!(missing.exit_code(), 6, "{missing}");
        assert!(missing.to_string().contains("/nonexistent/x.pt"), "{missing}");
        let missing = check_weights(Path::new("/nonexistent/w.safetensors")).unwrap_err();
        assert_eq!(missing.exit_code(), 6, "{missing}");
        let bad = std::env::temp_dir().join(format!("haven-bad-weights-{}.safetensors", std::process::id()));
        std::fs::write(&bad, b"not weights").unwrap();
        let refused = check_weights(&bad).unwrap_err();
        std::fs::remove_file(&bad).unwrap();
        assert_eq!(refused.exit_code(), 5, "{refused}");
    }

    #[test]
    fn each_failure_has_its_exit_code_and_one_line() {
        let settings = Failure::from(SettingsError::Invalid { path: "s.toml".into(), message: "bad".into() });
        assert_eq!((settings.exit_code(), settings.one_line()), (3, "s.toml: bad".to_string()));
        let run = Failure::from(anyhow::anyhow!("inner\nsecond line").context("outer"));
        assert_eq!((run.exit_code(), run.one_line()), (1, "outer: inner second line".to_string()));
        assert_eq!(Failure::Model("m".into()).exit_code(), 5);
        assert_eq!(Failure::Input { path: "p".into(), message: "m".into() }.exit_code(), 6);
        let start = Failure::from(haven::AppError::Events("disk".into()));
        assert_eq!((start.exit_code(), start.one_line()), (4, "cannot start: event store: disk".to_string()));
    }
}
