//! `convert-weights IN.pt OUT.safetensors [--check]`: converts an Ultralytics pose checkpoint
//! (YOLOv8-pose or YOLO11-pose `.pt`) to the f32 safetensors file HAVEN loads, without PyTorch.
//! With `--check`, only verifies that OUT loads as a pose model and exits 0 if it does.

use std::path::PathBuf;
use std::process::ExitCode;

use haven_pose::{convert_pt_to_safetensors, PoseModel, PoseOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check_only = args.iter().any(|a| a == "--check");
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if check_only && paths.len() == 1 {
        return match PoseModel::load(&PathBuf::from(paths[0]), PoseOptions::default()) {
            Ok(m) => {
                println!(
                    "{}: {:?}-pose, scale {}",
                    paths[0],
                    m.arch(),
                    m.scale_name()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if paths.len() != 2 || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: convert-weights IN.pt OUT.safetensors\n       convert-weights --check WEIGHTS.safetensors");
        return ExitCode::from(2);
    }
    let (input, output) = (PathBuf::from(paths[0]), PathBuf::from(paths[1]));
    let summary = match convert_pt_to_safetensors(&input, &output) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match PoseModel::load(&output, PoseOptions::default()) {
        Ok(m) => {
            println!(
                "wrote {}: {} tensors, {} parameters (from {:?}, BatchNorm eps {:?}), {:?}-pose scale {}",
                output.display(),
                summary.tensors,
                summary.parameters,
                summary.source_dtypes,
                summary.bn_eps,
                m.arch(),
                m.scale_name()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: converted {} but it does not load as a pose model: {e}",
                output.display()
            );
            ExitCode::FAILURE
        }
    }
}
