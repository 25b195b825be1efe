//! `convert-weights IN.pt OUT.safetensors`: converts an Ultralytics pose checkpoint (YOLOv8-pose or
//! YOLO11-pose `.pt`) to the f32 safetensors file HAVEN loads, without PyTorch.
//! `convert-weights --check WEIGHTS.safetensors` only verifies that a file loads as a pose model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use haven_pose::{convert_pt_to_safetensors, PoseError, PoseModel, PoseOptions};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (converted and verified, or --check: the file loads)
  2  bad command line (unknown option, missing argument)
  5  the conversion failed, or the weights do not load as a pose model
  6  the input file is missing or unreadable";

/// Convert Ultralytics YOLOv8-pose / YOLO11-pose weights (.pt) to the f32 safetensors file HAVEN
/// loads, without PyTorch; the result is loaded once to verify it.
#[derive(Debug, Parser)]
#[command(name = "convert-weights", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Only check that WEIGHTS (a .safetensors file) loads as a pose model
    #[arg(long, value_name = "WEIGHTS", conflicts_with_all = ["input", "output"])]
    check: Option<PathBuf>,
    /// The Ultralytics checkpoint (.pt)
    #[arg(value_name = "IN.pt", required_unless_present = "check")]
    input: Option<PathBuf>,
    /// The safetensors file to write
    #[arg(value_name = "OUT.safetensors", required_unless_present = "check")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (cli.check, cli.input, cli.output) {
        (Some(weights), _, _) => check(&weights),
        (None, Some(input), Some(output)) => convert(&input, &output),
        _ => unreachable!("clap requires IN.pt and OUT.safetensors without --check"),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("error: {}", message.replace('\n', " "));
            ExitCode::from(code)
        }
    }
}

/// 6 when `input` is missing or unreadable, 5 for anything else the engine refused.
fn code_of(e: &PoseError, input: &Path) -> u8 {
    match e {
        PoseError::WeightsNotFound { .. } => 6,
        PoseError::Io { path, .. } if path == input => 6,
        _ => 5,
    }
}

fn check(weights: &Path) -> Result<String, (u8, String)> {
    let m = PoseModel::load(weights, PoseOptions::default()).map_err(|e| (code_of(&e, weights), e.to_string()))?;
    Ok(format!("{}: {:?}-pose, scale {}", weights.display(), m.arch(), m.scale_name()))
}

fn convert(input: &Path, output: &Path) -> Result<String, (u8, String)> {
    let summary = convert_pt_to_safetensors(input, output).map_err(|e| (code_of(&e, input), e.to_string()))?;
    let m = PoseModel::load(output, PoseOptions::default()).map_err(|e| {
        (5, format!("converted {} but it does not load as a pose model: {e}", output.display()))
    })?;
    Ok(format!(
        "wrote {}: {} tensors, {} parameters (from {:?}, BatchNorm eps {:?}), {:?}-pose scale {}",
        output.display(),
        summary.tensors,
        summary.parameters,
        summary.source_dtypes,
        summary.bn_eps,
        m.arch(),
        m.scale_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn check_or_two_paths() {
        let cli = Cli::try_parse_from(["convert-weights", "--check", "w.safetensors"]).unwrap();
        assert_eq!(cli.check.as_deref(), Some(Path::new("w.safetensors")));
        assert!(Cli::try_parse_from(["convert-weights", "a.pt", "b.safetensors"]).unwrap().check.is_none());
        for bad in [&["convert-weights"][..], &["convert-weights", "a.pt"], &["convert-weights", "--check", "w", "a.pt"]] {
            let err = Cli::try_parse_from(bad.iter().copied()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_missing_input_is_exit_code_6() {
        let (code, message) = convert(Path::new("/nonexistent/x.pt"), Path::new("/tmp/never.safetensors")).unwrap_err();
        assert_eq!(code, 6, "{message}");
        assert!(message.contains("/nonexistent/x.pt"), "{message}");
    }
}
