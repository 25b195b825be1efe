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

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use crate::pickle::{Machine, Val, V};
use crate::{PoseError, Task};

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

struct Walk {
    tensors: Vec<(String, V)>,
    eps: Vec<f64>,
    classes: Vec<String>,
    /// the first head module found: its class name and state
    head: Option<(String, V)>,
}

/// Ultralytics head classes and the task each one is (`ultralytics/nn/modules/head.py`).
const HEADS: &[(&str, &str)] = &[
    ("Pose", "pose"),
    ("Detect", "detect"),
    ("Segment", "segment"),
    ("OBB", "obb"),
    ("Classify", "classify"),
    ("Pose26", "pose (YOLO26)"),
    ("Segment26", "segment (YOLO26)"),
    ("OBB26", "obb (YOLO26)"),
    ("v10Detect", "detect (YOLOv10, end-to-end)"),
    ("WorldDetect", "open-vocabulary detect (YOLO-World)"),
    ("YOLOEDetect", "open-vocabulary detect (YOLOE)"),
    ("YOLOESegment", "open-vocabulary segment (YOLOE)"),
    ("RTDETRDecoder", "detect (RT-DETR)"),
];

/// The task of a head module (its class and state), or an error naming the task HAVEN does not run.
fn head_task(pt: &Path, class: &str, state: &V) -> Result<Task, PoseError> {
    let task = HEADS
        .iter()
        .find(|(c, _)| *c == class)
        .map_or(class, |(_, t)| *t);
    let end2end = state
        .get("end2end")
        .and_then(|v| v.as_int())
        .is_some_and(|v| v != 0);
    match task {
        "pose" | "detect" if end2end => Err(PoseError::UnsupportedTask {
            path: pt.to_path_buf(),
            task: format!("{task} (end-to-end, NMS-free head)"),
        }),
        "pose" => Ok(Task::Pose),
        "detect" => Ok(Task::Detect),
        other => Err(PoseError::UnsupportedTask {
            path: pt.to_path_buf(),
            task: other.to_string(),
        }),
    }
}

/// The model's `names` (a dict index -> name, or a list) as a list in index order; every name must
/// be a string and the indices 0, 1, ... without gaps.
fn names_list(names: &V) -> Result<Vec<String>, String> {
    let entries: Vec<(Option<i64>, V)> = if let Some(e) = names.entries() {
        e.into_iter().map(|(k, v)| (k.as_int(), v)).collect()
    } else if let Some(items) = names.items() {
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Some(i as i64), v))
            .collect()
    } else {
        return Err(format!("`names` is neither a dict nor a list: {names:?}"));
    };
    let mut out: Vec<Option<String>> = vec![None; entries.len()];
    for (k, v) in entries {
        let Some(i) = k.filter(|&i| i >= 0 && (i as usize) < out.len()) else {
            return Err(format!(
                "`names` keys must be the class indices 0..{}, found {k:?}",
                out.len()
            ));
        };
        let name = v
            .as_str()
            .ok_or_else(|| format!("names[{i}] is {v:?}, not a string"))?;
        out[i as usize] = Some(name.to_string());
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

fn walk(obj: &V, prefix: &str, w: &mut Walk) {
    let (name, state) = match &**obj {
        Val::Object { name, .. } => (name.clone(), obj.state()),
        _ => return,
    };
    let Some(state) = state else { return };
    w.classes.push(name.clone());
    if w.head.is_none() && HEADS.iter().any(|(c, _)| *c == name) {
        w.head = Some((name.clone(), state.clone()));
    }
    if name.starts_with("BatchNorm") {
        if let Some(e) = state.get("eps").and_then(|e| e.as_float()) {
            w.eps.push(e);
        }
    }
    let non_persistent: Vec<String> = state
        .get("_non_persistent_buffers_set")
        .and_then(|s| match &*s {
            Val::Object { args, .. } => {
                args.items().and_then(|a| a.first().and_then(|l| l.items()))
            }
            Val::List(l) => Some(l.borrow().clone()),
            _ => None,
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for key in ["_parameters", "_buffers"] {
        if let Some(entries) = state.get(key).and_then(|d| d.entries()) {
            for (k, v) in entries {
                let Some(k) = k.as_str() else { continue };
                if key == "_buffers" && non_persistent.iter().any(|n| n == k) {
                    continue;
                }
                if matches!(&*v, Val::Tensor { .. }) {
                    w.tensors.push((format!("{prefix}{k}"), v.clone()));
                }
            }
        }
    }
    if let Some(entries) = state.get("_modules").and_then(|d| d.entries()) {
        for (k, v) in entries {
            if let Some(k) = k.as_str() {
                walk(&v, &format!("{prefix}{k}."), w);
            }
        }
    }
}

fn elem_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "FloatStorage" | "IntStorage" => 4,
        "DoubleStorage" | "LongStorage" => 8,
        "ByteStorage" | "CharStorage" | "BoolStorage" => 1,
        _ => return None,
    })
}

fn to_f32(dtype: &str, b: &[u8]) -> Option<f32> {
    Some(match dtype {
        "HalfStorage" => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        "BFloat16Storage" => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        "FloatStorage" => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        "DoubleStorage" => f64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
        _ => return None,
    })
}

pub fn convert_pt_to_safetensors(pt: &Path, out: &Path) -> Result<ConvertSummary, PoseError> {
    let err = |msg: String| PoseError::Checkpoint {
        path: pt.to_path_buf(),
        msg,
    };
    let file = std::fs::File::open(pt).map_err(|source| PoseError::Io {
        path: pt.to_path_buf(),
        source,
    })?;
    // PyTorch writes the archive from byte 0: say so rather than let the reader guess a prefix
    // (its guess failed on a torch 2.15 checkpoint whose random fp16 data held central-directory-like
    // bytes: "Invalid Central Directory header"); a guess is still the fallback.
    let config = zip::read::Config {
        archive_offset: zip::read::ArchiveOffset::Known(0),
    };
    let mut zip = zip::ZipArchive::with_config(config, std::io::BufReader::new(file))
        .or_else(|_| {
            let file = std::fs::File::open(pt)?;
            zip::ZipArchive::new(std::io::BufReader::new(file))
        })
        .map_err(|e| {
            err(format!(
                "not a PyTorch zip checkpoint ({e}); legacy non-zip .pt files are not supported"
            ))
        })?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("bad member name: {e}")))?;
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl"))
        .min_by_key(|n| n.len())
        .ok_or_else(|| err("no data.pkl in the archive".into()))?
        .clone();
    let dir = pkl.strip_suffix("data.pkl").unwrap().to_string();
    let read_member = |zip: &mut zip::ZipArchive<_>, name: &str| -> Result<Vec<u8>, PoseError> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| err(format!("member {name}: {e}")))?;
        let mut v = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut v)
            .map_err(|e| err(format!("member {name}: {e}")))?;
        Ok(v)
    };
    if let Ok(bo) = read_member(&mut zip, &format!("{dir}byteorder")) {
        if bo.trim_ascii() != b"little" {
            return Err(err(format!(
                "byte order {:?} is not supported",
                String::from_utf8_lossy(&bo)
            )));
        }
    }
    let pickle = read_member(&mut zip, &pkl)?;
    let root = Machine::run(&pickle).map_err(|e| err(format!("{pkl}: {e}")))?;

    let mut w = Walk {
        tensors: vec![],
        eps: vec![],
        classes: vec![],
        head: None,
    };
    let mut names_meta = None;
    match &*root {
        Val::Dict(_) => {
            let model = ["ema", "model"]
                .iter()
                .filter_map(|k| root.get(k))
                .find(|v| matches!(&**v, Val::Object { .. }));
            if let Some(model) = model {
                if let Some(st) = model.state() {
                    names_meta = st.get("names");
                }
                walk(&model, "", &mut w);
            } else {
                // a plain state dict, possibly nested under a key
                let sd = ["state_dict", "model_state_dict", "model"]
                    .iter()
                    .filter_map(|k| root.get(k))
                    .find(|v| matches!(&**v, Val::Dict(_)))
                    .unwrap_or_else(|| root.clone());
                for (k, v) in sd.entries().unwrap_or_default() {
                    if let (Some(k), Val::Tensor { .. }) = (k.as_str(), &*v) {
                        w.tensors.push((k.to_string(), v.clone()));
                    }
                }
            }
        }
        Val::Object { .. } => walk(&root, "", &mut w),
        _ => {
            return Err(err(
                "the pickle holds neither a checkpoint dict nor a module".into(),
            ))
        }
    }
    if w.tensors.is_empty() {
        return Err(err(
            "no tensors found (expected an Ultralytics checkpoint with a `model` entry)".into(),
        ));
    }
    // the task: the head module's class, else (a plain state dict) the tensor names
    let task = match &w.head {
        Some((class, state)) => head_task(pt, class, state)?,
        None => {
            let has = |part: &str| w.tensors.iter().any(|(n, _)| n.contains(part));
            if has(".proto.") {
                return Err(PoseError::UnsupportedTask {
                    path: pt.to_path_buf(),
                    task: "segment".into(),
                });
            } else if has(".linear.weight") && !has(".dfl.") {
                return Err(PoseError::UnsupportedTask {
                    path: pt.to_path_buf(),
                    task: "classify".into(),
                });
            } else if has(".cv4.") {
                Task::Pose
            } else {
                Task::Detect
            }
        }
    };
    let nc = w
        .head
        .as_ref()
        .and_then(|(_, st)| st.get("nc"))
        .and_then(|v| v.as_int())
        .map(|v| v as usize);
    let names = match names_meta {
        Some(n) => names_list(&n).map_err(|m| err(format!("the model's class names: {m}")))?,
        None => Vec::new(),
    };

    // Read storages once each.
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out_tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    let mut dtypes: Vec<String> = vec![];
    let mut skipped = 0;
    let mut parameters = 0;
    for (name, t) in &w.tensors {
        let Val::Tensor {
            storage,
            offset,
            size,
            stride,
        } = &**t
        else {
            continue;
        };
        let Val::Storage { dtype, key, .. } = &**storage else {
            return Err(err(format!(
                "tensor {name}: storage is not a persistent storage"
            )));
        };
        let es = elem_size(dtype)
            .ok_or_else(|| err(format!("tensor {name}: unsupported storage type {dtype}")))?;
        if to_f32(dtype, &[0; 8]).is_none() {
            skipped += 1; // integer buffers such as num_batches_tracked
            continue;
        }
        if !dtypes.contains(dtype) {
            dtypes.push(dtype.clone());
        }
        if !storages.contains_key(key) {
            let data = read_member(&mut zip, &format!("{dir}data/{key}"))?;
            storages.insert(key.clone(), data);
        }
        let data = &storages[key];
        let numel: usize = size.iter().product();
        let mut vals = Vec::with_capacity(numel * 4);
        let mut idx = vec![0usize; size.len()];
        for _ in 0..numel {
            let off = offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
            let b = data
                .get(off * es..off * es + es)
                .ok_or_else(|| err(format!("tensor {name}: storage {key} too short")))?;
            vals.extend_from_slice(&to_f32(dtype, b).unwrap().to_le_bytes());
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        parameters += numel;
        out_tensors.insert(name.clone(), (size.clone(), vals));
    }

    let bn_eps = w.eps.first().copied();
    if let Some(e) = bn_eps {
        if w.eps.iter().any(|x| (x - e).abs() > 1e-12) {
            return Err(err(format!(
                "BatchNorm layers use different eps values {:?}; not supported",
                w.eps
            )));
        }
    }
    let arch = if w.classes.iter().any(|c| c == "C3k2" || c == "C2PSA") {
        Some("yolo11".to_string())
    } else if w.classes.iter().any(|c| c == "C2f") {
        Some("yolov8".to_string())
    } else {
        None
    };
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
    if let Some(a) = &arch {
        meta.insert("arch".to_string(), a.clone());
    }
    meta.insert("haven.task".to_string(), task.to_string());
    if !names.is_empty() {
        let list = serde_json::to_string(&names).unwrap();
        meta.insert("haven.names".to_string(), list.clone());
        meta.insert("names".to_string(), list);
    }
    // the class count of the tensors themselves (the last class convolution of level 0)
    let conv_nc = out_tensors
        .iter()
        .find(|(k, _)| k.ends_with(".cv3.0.2.weight"))
        .map(|(_, (shape, _))| shape[0]);
    check_classes(task, &names, nc, conv_nc).map_err(err)?;

    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = out_tensors
        .iter()
        .map(|(k, (shape, bytes))| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| err(format!("tensor {k}: {e}")))
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
    // write to a temporary name, then rename, so an interrupted run leaves no half file behind
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
    })?;
    Ok(ConvertSummary {
        tensors: out_tensors.len(),
        parameters,
        source_dtypes: dtypes,
        bn_eps,
        arch,
        skipped,
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
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    fn st(s: &str) -> V {
        Rc::new(Val::Str(s.into()))
    }
    fn int(i: i64) -> V {
        Rc::new(Val::Int(i))
    }
    fn dict(e: Vec<(V, V)>) -> V {
        Rc::new(Val::Dict(RefCell::new(e)))
    }

    #[test]
    fn head_classes_map_to_tasks() {
        let p = Path::new("m.pt");
        let plain = dict(vec![(st("nc"), int(80))]);
        assert_eq!(head_task(p, "Detect", &plain).unwrap(), Task::Detect);
        assert_eq!(head_task(p, "Pose", &plain).unwrap(), Task::Pose);
        for (class, task) in [("Segment", "segment"), ("OBB", "obb"), ("Classify", "classify")] {
            let e = head_task(p, class, &plain).unwrap_err().to_string();
            assert!(
                e.contains(&format!("m.pt: a {task} model; HAVEN runs pose and detect models")),
                "{e}"
            );
        }
        let e2e = dict(vec![(st("end2end"), Rc::new(Val::Bool(true)))]);
        let e = head_task(p, "Detect", &e2e).unwrap_err().to_string();
        assert!(e.contains("end-to-end"), "{e}");
    }

    #[test]
    fn names_are_read_in_index_order_and_must_be_strings() {
        let d = dict(vec![(int(1), st("dog")), (int(0), st("cat"))]);
        assert_eq!(names_list(&d).unwrap(), ["cat", "dog"]);
        let l = Rc::new(Val::List(RefCell::new(vec![st("a"), st("b")])));
        assert_eq!(names_list(&l).unwrap(), ["a", "b"]);
        let bad = dict(vec![(int(0), st("cat")), (int(1), int(7))]);
        let e = names_list(&bad).unwrap_err();
        assert!(e.contains("names[1]") && e.contains("not a string"), "{e}");
        let gap = dict(vec![(int(0), st("cat")), (int(5), st("dog"))]);
        assert!(names_list(&gap).unwrap_err().contains("class indices"));
        assert!(names_list(&st("x")).is_err());
    }

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
