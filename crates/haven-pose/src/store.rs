//! Named f32 tensors read from a safetensors file, with errors that name the missing tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::PoseError;

pub(crate) struct Tensor32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub(crate) struct Store {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor32>,
    pub metadata: HashMap<String, String>,
}

impl Store {
    pub fn load(path: &Path) -> Result<Self, PoseError> {
        if !path.exists() {
            return Err(PoseError::WeightsNotFound {
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(path).map_err(|source| PoseError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, PoseError> {
        let bad = |msg: String| PoseError::BadWeightsFile {
            path: path.to_path_buf(),
            msg,
        };
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                safetensors::Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::F64 => raw
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
                // Integer buffers (BatchNorm's num_batches_tracked) are not used by inference.
                _ => continue,
            };
            tensors.insert(
                name.to_string(),
                Tensor32 {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    pub fn get(&self, name: &str, what: &str) -> Result<&Tensor32, PoseError> {
        self.tensors
            .get(name)
            .ok_or_else(|| PoseError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
                what: what.to_string(),
            })
    }

    /// A tensor that must have exactly `rank` dimensions, optionally with some fixed.
    pub fn get_shaped(
        &self,
        name: &str,
        what: &str,
        expected: &[Option<usize>],
    ) -> Result<&Tensor32, PoseError> {
        let t = self.get(name, what)?;
        let ok = t.shape.len() == expected.len()
            && t.shape
                .iter()
                .zip(expected)
                .all(|(g, e)| e.map_or(true, |e| e == *g));
        if !ok {
            let exp: Vec<String> = expected
                .iter()
                .map(|e| e.map_or_else(|| "_".to_string(), |v| v.to_string()))
                .collect();
            return Err(PoseError::BadShape {
                path: self.path.clone(),
                name: name.to_string(),
                got: t.shape.clone(),
                expected: format!("[{}]", exp.join(", ")),
            });
        }
        Ok(t)
    }

    /// Number of `prefix.N.` children present (N = 0, 1, ... contiguous).
    pub fn count_children(&self, prefix: &str) -> usize {
        let mut n = 0;
        loop {
            let p = format!("{prefix}.{n}.");
            if self.tensors.keys().any(|k| k.starts_with(&p)) {
                n += 1;
            } else {
                return n;
            }
        }
    }

    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors.keys().any(|k| k.starts_with(prefix))
    }
}
