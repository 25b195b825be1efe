//! What a state dict holds, from its tensor names: architecture, task and scale.

use crate::store::Store;
use crate::{Arch, PoseError, Task};

/// The task a head's name says (`haven.task` metadata from the converter), or its tensors.
fn task_of_tensors(st: &Store, head: usize) -> Result<Task, PoseError> {
    let unsupported = |task: &str| PoseError::UnsupportedTask {
        path: st.path.clone(),
        task: task.to_string(),
    };
    if let Some(t) = st.metadata.get("haven.task") {
        match t.as_str() {
            "pose" | "detect" => {}
            other => return Err(unsupported(other)),
        }
    }
    let p = |name: &str| format!("model.{head}.{name}");
    if st.has_prefix(&p("proto.")) {
        return Err(unsupported("segment"));
    }
    match st.tensors.get(&p("cv4.0.2.weight")) {
        // OBB: one angle per box
        Some(t) if t.shape.first() == Some(&1) => Err(unsupported("obb")),
        Some(_) => Ok(Task::Pose),
        None if st.has_prefix(&p("cv4.")) => Ok(Task::Pose), // incomplete: loading names the tensor
        None => Ok(Task::Detect),
    }
}

/// The architecture and task of a state dict, from its tensor names: the head is at `model.22`
/// (YOLOv8) or `model.23` (YOLO11); a Pose head has a keypoint branch (`cv4.*`), a Detect head not.
pub(crate) fn detect_layout(st: &Store) -> Result<(Arch, Task), PoseError> {
    let v11 = st.has_prefix("model.23.cv2.") || st.has_prefix("model.10.m.0.attn.");
    let v8 = st.has_prefix("model.22.cv2.") && !st.has_prefix("model.23.");
    match (v11, v8) {
        (true, _) => Ok((Arch::V11, task_of_tensors(st, 23)?)),
        (false, true) => Ok((Arch::V8, task_of_tensors(st, 22)?)),
        _ => {
            if st.tensors.keys().any(|k| k.ends_with(".linear.weight")) {
                return Err(PoseError::UnsupportedTask {
                    path: st.path.clone(),
                    task: "classify".into(),
                });
            }
            let mut heads: Vec<&str> = st
                .tensors
                .keys()
                .filter(|k| k.contains(".cv4.") || k.contains(".dfl."))
                .map(|k| k.as_str())
                .collect();
            heads.sort();
            heads.truncate(3);
            let msg = if st.tensors.is_empty() {
                "the file holds no float tensors".to_string()
            } else if !st.has_prefix("model.0.") {
                let mut some: Vec<&String> = st.tensors.keys().collect();
                some.sort();
                format!(
                    "expected Ultralytics state-dict names (`model.0.conv.weight`, ...), found e.g. `{}`",
                    some[0]
                )
            } else {
                format!(
                    "no pose or detect head found: expected `model.22.cv2.*` (YOLOv8) or `model.23.cv2.*` (YOLO11){}",
                    if heads.is_empty() { String::new() } else { format!("; head-like tensors: {heads:?}") }
                )
            };
            Err(PoseError::UnknownLayout {
                path: st.path.clone(),
                msg,
            })
        }
    }
}

pub(crate) fn scale_name(arch: Arch, st: &Store, c0: usize) -> String {
    let s = match (arch, c0) {
        (_, 16) => "n",
        (_, 32) => "s",
        (Arch::V8, 48) => "m",
        (Arch::V8, 64) => "l",
        (Arch::V8, 80) => "x",
        (Arch::V11, 64) => {
            if st.count_children("model.2.m") >= 2 {
                "l"
            } else {
                "m"
            }
        }
        (Arch::V11, 96) => "x",
        _ => "custom",
    };
    s.to_string()
}
