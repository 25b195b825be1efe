//! The values a pickle builds: Python's built-in types, globals, inert objects, storages and tensors.

use std::cell::RefCell;
use std::rc::Rc;

pub(crate) type V = Rc<Val>;

#[derive(Debug)]
#[allow(dead_code)] // some fields are kept for Debug output only
pub(crate) enum Val {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<V>),
    List(RefCell<Vec<V>>),
    Dict(RefCell<Vec<(V, V)>>),
    Global {
        module: String,
        name: String,
    },
    /// An instance of a class (NEWOBJ, or REDUCE of an unknown callable) and its BUILD state.
    Object {
        module: String,
        name: String,
        args: V,
        state: RefCell<Option<V>>,
    },
    Storage {
        dtype: String,
        key: String,
        numel: usize,
    },
    Tensor {
        storage: V,
        offset: usize,
        size: Vec<usize>,
        stride: Vec<usize>,
    },
}

impl Val {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Val::Float(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    /// Items of a tuple or list.
    pub fn items(&self) -> Option<Vec<V>> {
        match self {
            Val::Tuple(t) => Some(t.clone()),
            Val::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }
    /// Entries of a dict.
    pub fn entries(&self) -> Option<Vec<(V, V)>> {
        match self {
            Val::Dict(d) => Some(d.borrow().clone()),
            _ => None,
        }
    }
    /// `d[key]` for a dict with string keys.
    pub fn get(&self, key: &str) -> Option<V> {
        match self {
            Val::Dict(d) => d
                .borrow()
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    }
    /// For an object: its BUILD state (the module's `__dict__`).
    pub fn state(&self) -> Option<V> {
        match self {
            Val::Object { state, .. } => state.borrow().clone(),
            _ => None,
        }
    }
}
