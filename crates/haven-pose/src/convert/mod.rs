//! Ultralytics `.pt` checkpoint -> safetensors (f32), without PyTorch.
//!
//! A `.pt` file is a zip archive: `<dir>/data.pkl` pickles the checkpoint dict (`{"model": PoseModel
//! object, "ema": ..., "train_args": ...}`) and `<dir>/data/<key>` hold the raw storages. We unpickle
//! with [`crate::pickle`], walk the module tree (`_parameters`, `_buffers`, `_modules`) to produce the
//! state-dict names (`model.0.conv.weight`, …), convert every float tensor to f32 and write them with
//! metadata (`bn_eps`, `arch`, `source`, `haven.task`, `haven.names`). Plain state dicts
//! (`torch.save(model.state_dict())`) are accepted too (task from the tensor names, no class names).
//!
//! What is checked: the head's class (`Pose` or `Detect`; a `Segment`, `OBB`, `Classify` or other head is
//! refused, naming its task), that the model's `names` are strings and as many as the head's classes.

use std::path::Path;

use crate::{PoseError, Task};

mod archive;
mod modules;
mod tensors;
mod write;

use archive::Archive;
use modules::Walk;
use tensors::F32Tensors;

/// What a conversion produced.
#[derive(Clone, Debug)]
pub struct ConvertSummary {
    /// Tensors written.
    pub tensors: usize,
    /// Total number of values written.
    pub parameters: usize,
    /// Storage dtype found in the checkpoint (e.g. "HalfStorage").
    pub source_dtypes: Vec<String>,
    /// BatchNorm epsilon found on the modules (0.001 for Ultralytics models).
    pub bn_eps: Option<f64>,
    /// "yolo11" or "yolov8" (from the module classes), if recognisable.
    pub arch: Option<String>,
    /// Integer buffers skipped (BatchNorm's `num_batches_tracked`).
    pub skipped: usize,
    /// Pose or detect (from the head's class, or the tensor names of a plain state dict).
    pub task: Task,
    /// The class names found on the model (`names`), index = class id; empty for a plain state dict.
    pub names: Vec<String>,
}

/// A checkpoint problem in `pt`, said in `msg`.
fn checkpoint_error(pt: &Path, msg: String) -> PoseError {
    PoseError::Checkpoint {
        path: pt.to_path_buf(),
        msg,
    }
}

pub fn convert_pt_to_safetensors(pt: &Path, out: &Path) -> Result<ConvertSummary, PoseError> {
    let err = |msg: String| checkpoint_error(pt, msg);
    let mut archive = Archive::open(pt)?;
    let root = archive.unpickle()?;
    let model = Walk::of_checkpoint(pt, &root)?;
    let task = model.task(pt)?;
    let nc = model.head_nc();
    let names = model.names(pt)?;
    let tensors = F32Tensors::collect(pt, &model.tensors, &mut archive)?;
    let bn_eps = model.bn_eps().map_err(err)?;
    let arch = model.arch();
    let meta = write::metadata(pt, bn_eps, arch.as_deref(), task, &names);
    check_classes(task, &names, nc, tensors.class_count()).map_err(err)?;
    write::safetensors_file(pt, out, &tensors.by_name, meta)?;
    Ok(ConvertSummary {
        tensors: tensors.by_name.len(),
        parameters: tensors.parameters,
        source_dtypes: tensors.dtypes,
        bn_eps,
        arch,
        skipped: tensors.skipped,
        task,
        names,
    })
}

/// The class names against the head's class count (its `nc` attribute and its last class
/// convolution's outputs): as many names as classes.
fn check_classes(
    task: Task,
    names: &[String],
    nc_attr: Option<usize>,
    conv_nc: Option<usize>,
) -> Result<(), String> {
    if let (Some(a), Some(c)) = (nc_attr, conv_nc) {
        if a != c {
            return Err(format!(
                "the {task} head says nc = {a} but its class convolution has {c} outputs"
            ));
        }
    }
    match nc_attr.or(conv_nc) {
        Some(nc) if !names.is_empty() && names.len() != nc => Err(format!(
            "the model names {} classes ({}) but its {task} head has {nc}",
            names.len(),
            preview(names)
        )),
        _ => Ok(()),
    }
}

/// The first few names of a list, for messages.
pub(crate) fn preview(names: &[String]) -> String {
    let mut s: Vec<String> = names.iter().take(5).map(|n| format!("{n:?}")).collect();
    if names.len() > 5 {
        s.push(format!("... {} more", names.len() - 5));
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_count_must_match_the_names() {
        let names: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        assert!(check_classes(Task::Detect, &names, Some(3), Some(3)).is_ok());
        assert!(check_classes(Task::Detect, &[], Some(80), Some(80)).is_ok());
        let e = check_classes(Task::Detect, &names, Some(80), None).unwrap_err();
        assert!(e.contains("names 3 classes") && e.contains("detect head has 80"), "{e}");
        let e = check_classes(Task::Detect, &names, None, Some(4)).unwrap_err();
        assert!(e.contains("head has 4"), "{e}");
        let e = check_classes(Task::Pose, &names, Some(3), Some(1)).unwrap_err();
        assert!(e.contains("nc = 3") && e.contains("1 outputs"), "{e}");
    }
}
