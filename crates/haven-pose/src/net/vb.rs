//! The weights walker every block loads through.

use candle_core::Device;

use super::Ops;
use crate::store::{Store, Tensor32};
use crate::PoseError;

/// Loads weights the way candle-nn's `VarBuilder` does (a prefix, `pp` to descend, `get` a tensor), over
/// this crate's [`Store`] so that a missing or misshapen tensor is a [`PoseError`] naming it.
#[derive(Clone)]
pub(crate) struct Vb<'a> {
    pub st: &'a Store,
    prefix: String,
    pub dev: &'a Device,
    pub ops: Ops,
    /// BatchNorm epsilon
    pub eps: f32,
    /// what the current layer is, for error messages
    what: String,
}

impl<'a> Vb<'a> {
    pub fn new(st: &'a Store, dev: &'a Device, ops: Ops, eps: f32) -> Self {
        Self {
            st,
            prefix: String::new(),
            dev,
            ops,
            eps,
            what: String::new(),
        }
    }

    /// The builder one level down (`model.3` -> `model.3.cv1`).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let mut vb = self.clone();
        vb.prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        vb
    }

    pub fn with_what(&self, what: String) -> Self {
        let mut vb = self.clone();
        vb.what = what;
        vb
    }

    pub fn path(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The tensor `name` under this prefix, of exactly this rank (`None`: any size in that dimension).
    pub fn get(&self, name: &str, shape: &[Option<usize>]) -> Result<&'a Tensor32, PoseError> {
        self.st.get_shaped(&self.path(name), &self.what, shape)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.st.tensors.contains_key(&self.path(name))
    }

    /// Number of `name.N.` children (N = 0, 1, ...), at least one.
    pub fn children(&self, name: &str, first: &str) -> Result<usize, PoseError> {
        let n = self.st.count_children(&self.path(name));
        if n == 0 {
            self.st
                .get(&self.path(&format!("{name}.0.{first}")), &self.what)?;
        }
        Ok(n)
    }

    pub fn has_prefix(&self, name: &str) -> bool {
        self.st.has_prefix(&self.path(name))
    }

    pub fn bad_shape(&self, name: &str, got: &[usize], expected: &str) -> PoseError {
        PoseError::BadShape {
            path: self.st.path.clone(),
            name: self.path(name),
            got: got.to_vec(),
            expected: expected.to_string(),
        }
    }
}
