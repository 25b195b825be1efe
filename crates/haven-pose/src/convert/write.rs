//! Writing the converted tensors: the metadata the engine reads, and the file, atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::checkpoint_error;
use crate::{PoseError, Task};

/// The file's metadata: `format`, `source`, `bn_eps`, `arch`, `haven.task`, `haven.names` (and
/// `names`, as Ultralytics' exports call it).
pub(super) fn metadata(
    pt: &Path,
    bn_eps: Option<f64>,
    arch: Option<&str>,
    task: Task,
    names: &[String],
) -> HashMap<String, String> {
    let mut meta = HashMap::new();
    meta.insert(
        "format".to_string(),
        "haven-pose f32 state dict".to_string(),
    );
    meta.insert(
        "source".to_string(),
        pt.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    if let Some(e) = bn_eps {
        meta.insert("bn_eps".to_string(), format!("{e}"));
    }
    if let Some(a) = arch {
        meta.insert("arch".to_string(), a.to_string());
    }
    meta.insert("haven.task".to_string(), task.to_string());
    if !names.is_empty() {
        let list = serde_json::to_string(&names).unwrap();
        meta.insert("haven.names".to_string(), list.clone());
        meta.insert("names".to_string(), list);
    }
    meta
}

/// Writes `tensors` (f32) and `meta` to `out`, creating its folder; through a temporary name then a
/// rename, so that an interrupted run leaves no half file behind.
pub(super) fn safetensors_file(
    pt: &Path,
    out: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
) -> Result<(), PoseError> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (shape, bytes))| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| checkpoint_error(pt, format!("tensor {k}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if let Some(parent) = out.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|source| PoseError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
    }
    let tmp = out.with_extension("safetensors.partial");
    safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| PoseError::Io {
        path: tmp.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    #[cfg(unix)]
    {
        // the serializer creates the file owner-only; weights are not secret
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644));
    }
    std::fs::rename(&tmp, out).map_err(|source| PoseError::Io {
        path: out.to_path_buf(),
        source,
    })
}
