//! The checkpoint's module tree: its tensors' state-dict names, head, class names and BatchNorm eps.

use std::path::Path;

use super::checkpoint_error;
use crate::pickle::{Val, V};
use crate::{PoseError, Task};

/// What walking the checkpoint's modules found.
pub(super) struct Walk {
    /// state-dict name and tensor, in module order
    pub tensors: Vec<(String, V)>,
    eps: Vec<f64>,
    classes: Vec<String>,
    /// the first head module found: its class name and state
    head: Option<(String, V)>,
    /// the model's `names` attribute
    names: Option<V>,
}

impl Walk {
    /// The modules of the checkpoint `root`: a dict holding the model (`ema` or `model`), a module, or
    /// a plain state dict (possibly nested under a key).
    pub fn of_checkpoint(pt: &Path, root: &V) -> Result<Self, PoseError> {
        let mut w = Walk {
            tensors: vec![],
            eps: vec![],
            classes: vec![],
            head: None,
            names: None,
        };
        match &**root {
            Val::Dict(_) => {
                let model = ["ema", "model"]
                    .iter()
                    .filter_map(|k| root.get(k))
                    .find(|v| matches!(&**v, Val::Object { .. }));
                if let Some(model) = model {
                    if let Some(st) = model.state() {
                        w.names = st.get("names");
                    }
                    walk(&model, "", &mut w);
                } else {
                    w.tensors = state_dict_tensors(root);
                }
            }
            Val::Object { .. } => walk(root, "", &mut w),
            _ => {
                return Err(checkpoint_error(
                    pt,
                    "the pickle holds neither a checkpoint dict nor a module".into(),
                ))
            }
        }
        if w.tensors.is_empty() {
            return Err(checkpoint_error(
                pt,
                "no tensors found (expected an Ultralytics checkpoint with a `model` entry)".into(),
            ));
        }
        Ok(w)
    }

    /// The task: the head module's class, else (a plain state dict) the tensor names.
    pub fn task(&self, pt: &Path) -> Result<Task, PoseError> {
        if let Some((class, state)) = &self.head {
            return head_task(pt, class, state);
        }
        let has = |part: &str| self.tensors.iter().any(|(n, _)| n.contains(part));
        let unsupported = |task: &str| PoseError::UnsupportedTask {
            path: pt.to_path_buf(),
            task: task.into(),
        };
        if has(".proto.") {
            Err(unsupported("segment"))
        } else if has(".linear.weight") && !has(".dfl.") {
            Err(unsupported("classify"))
        } else if has(".cv4.") {
            Ok(Task::Pose)
        } else {
            Ok(Task::Detect)
        }
    }

    /// The head's `nc` attribute.
    pub fn head_nc(&self) -> Option<usize> {
        self.head
            .as_ref()
            .and_then(|(_, st)| st.get("nc"))
            .and_then(|v| v.as_int())
            .map(|v| v as usize)
    }

    /// The model's class names (empty for a plain state dict).
    pub fn names(&self, pt: &Path) -> Result<Vec<String>, PoseError> {
        match &self.names {
            Some(n) => names_list(n)
                .map_err(|m| checkpoint_error(pt, format!("the model's class names: {m}"))),
            None => Ok(Vec::new()),
        }
    }

    /// The BatchNorm epsilon, which every BatchNorm layer must share.
    pub fn bn_eps(&self) -> Result<Option<f64>, String> {
        let bn_eps = self.eps.first().copied();
        if let Some(e) = bn_eps {
            if self.eps.iter().any(|x| (x - e).abs() > 1e-12) {
                return Err(format!(
                    "BatchNorm layers use different eps values {:?}; not supported",
                    self.eps
                ));
            }
        }
        Ok(bn_eps)
    }

    /// "yolo11" or "yolov8", from the module classes.
    pub fn arch(&self) -> Option<String> {
        if self.classes.iter().any(|c| c == "C3k2" || c == "C2PSA") {
            Some("yolo11".to_string())
        } else if self.classes.iter().any(|c| c == "C2f") {
            Some("yolov8".to_string())
        } else {
            None
        }
    }
}

/// The tensors of a plain state dict, possibly nested under `state_dict`, `model_state_dict` or `model`.
fn state_dict_tensors(root: &V) -> Vec<(String, V)> {
    let sd = ["state_dict", "model_state_dict", "model"]
        .iter()
        .filter_map(|k| root.get(k))
        .find(|v| matches!(&**v, Val::Dict(_)))
        .unwrap_or_else(|| root.clone());
    let mut tensors = Vec::new();
    for (k, v) in sd.entries().unwrap_or_default() {
        if let (Some(k), Val::Tensor { .. }) = (k.as_str(), &*v) {
            tensors.push((k.to_string(), v.clone()));
        }
    }
    tensors
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
        for (class, task) in [
            ("Segment", "segment"),
            ("OBB", "obb"),
            ("Classify", "classify"),
        ] {
            let e = head_task(p, class, &plain).unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "m.pt: a {task} model; HAVEN runs pose and detect models"
                )),
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
}
