//! The checkpoint's float tensors as f32 values, read from their storages.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::archive::Archive;
use super::checkpoint_error;
use crate::pickle::{Val, V};
use crate::PoseError;

/// The tensors converted, by state-dict name.
pub(super) struct F32Tensors {
    /// name -> (shape, little-endian f32 bytes)
    pub by_name: BTreeMap<String, (Vec<usize>, Vec<u8>)>,
    /// storage dtypes met, in order
    pub dtypes: Vec<String>,
    /// integer buffers left out (BatchNorm's `num_batches_tracked`)
    pub skipped: usize,
    /// values written
    pub parameters: usize,
}

impl F32Tensors {
    /// Every float tensor of `tensors` as f32, each storage read once from `archive`.
    pub fn collect(
        pt: &Path,
        tensors: &[(String, V)],
        archive: &mut Archive,
    ) -> Result<Self, PoseError> {
        let err = |msg: String| checkpoint_error(pt, msg);
        let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
        let mut out = F32Tensors {
            by_name: BTreeMap::new(),
            dtypes: vec![],
            skipped: 0,
            parameters: 0,
        };
        for (name, t) in tensors {
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
                out.skipped += 1; // integer buffers such as num_batches_tracked
                continue;
            }
            if !out.dtypes.contains(dtype) {
                out.dtypes.push(dtype.clone());
            }
            if !storages.contains_key(key) {
                storages.insert(key.clone(), archive.storage(key)?);
            }
            let view = Strided {
                dtype,
                es,
                offset: *offset,
                size,
                stride,
            };
            let vals = view
                .to_f32_bytes(&storages[key])
                .ok_or_else(|| err(format!("tensor {name}: storage {key} too short")))?;
            out.parameters += size.iter().product::<usize>();
            out.by_name.insert(name.clone(), (size.clone(), vals));
        }
        Ok(out)
    }

    /// The class count of the tensors themselves (the last class convolution of level 0).
    pub fn class_count(&self) -> Option<usize> {
        self.by_name
            .iter()
            .find(|(k, _)| k.ends_with(".cv3.0.2.weight"))
            .map(|(_, (shape, _))| shape[0])
    }
}

/// A tensor's view of its storage: element type and size, offset, shape and strides (in elements).
struct Strided<'a> {
    dtype: &'a str,
    es: usize,
    offset: usize,
    size: &'a [usize],
    stride: &'a [usize],
}

impl Strided<'_> {
    /// The values in row-major order as little-endian f32 bytes; `None` when `data` is too short.
    fn to_f32_bytes(&self, data: &[u8]) -> Option<Vec<u8>> {
        let (es, size) = (self.es, self.size);
        let numel: usize = size.iter().product();
        let mut vals = Vec::with_capacity(numel * 4);
        let mut idx = vec![0usize; size.len()];
        for _ in 0..numel {
            let off = self.offset
                + idx
                    .iter()
                    .zip(self.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            let b = data.get(off * es..off * es + es)?;
            vals.extend_from_slice(&to_f32(self.dtype, b).unwrap().to_le_bytes());
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Some(vals)
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
