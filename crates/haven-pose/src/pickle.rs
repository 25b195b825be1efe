//! A small pickle virtual machine for PyTorch checkpoints that pickle whole module objects
//! (Ultralytics `.pt`): shared references (memo) stay shared, BUILD fills module `__dict__`s,
//! `persistent_load` yields storages and `_rebuild_tensor_v2` / `_rebuild_parameter` yield tensors.
//! No Python code is ever executed: unknown callables become inert `Object`s.

use std::cell::RefCell;
use std::collections::HashMap;
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

pub(crate) struct Machine {
    stack: Vec<V>,
    marks: Vec<usize>,
    memo: HashMap<u32, V>,
}

fn rc(v: Val) -> V {
    Rc::new(v)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.pos + n > self.b.len() {
            return Err(format!("pickle truncated at byte {}", self.pos));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes(s.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
            self.pos += 1;
        }
        let s = String::from_utf8_lossy(&self.b[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(s)
    }
}

impl Machine {
    fn new() -> Self {
        Self {
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn pop(&mut self) -> Result<V, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn top(&self) -> Result<&V, String> {
        self.stack
            .last()
            .ok_or_else(|| "pickle stack empty".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<V>, String> {
        let m = self.marks.pop().ok_or("pickle MARK missing")?;
        if m > self.stack.len() {
            return Err("pickle MARK beyond stack".into());
        }
        Ok(self.stack.split_off(m))
    }

    fn reduce(&mut self, callable: V, args: V) -> Result<V, String> {
        let (module, name) = match &*callable {
            Val::Global { module, name } => (module.as_str(), name.as_str()),
            other => return Err(format!("REDUCE of a non-global {other:?}")),
        };
        let a = args.items().unwrap_or_default();
        Ok(match (module, name) {
            ("collections", "OrderedDict")
            | ("collections", "defaultdict")
            | ("builtins", "dict")
            | ("__builtin__", "dict") => rc(Val::Dict(RefCell::new(Vec::new()))),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                if a.len() < 4 {
                    return Err("_rebuild_tensor_v2 with too few arguments".into());
                }
                let ints = |v: &V| -> Result<Vec<usize>, String> {
                    v.items()
                        .ok_or("tensor size/stride is not a tuple")?
                        .iter()
                        .map(|x| {
                            x.as_int()
                                .map(|i| i as usize)
                                .ok_or_else(|| "non-integer size".to_string())
                        })
                        .collect()
                };
                rc(Val::Tensor {
                    storage: a[0].clone(),
                    offset: a[1].as_int().ok_or("tensor offset")? as usize,
                    size: ints(&a[2])?,
                    stride: ints(&a[3])?,
                })
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => a
                .first()
                .cloned()
                .ok_or("_rebuild_parameter without data")?,
            ("torch", "Size") => a.first().cloned().unwrap_or_else(|| rc(Val::Tuple(vec![]))),
            _ => rc(Val::Object {
                module: module.to_string(),
                name: name.to_string(),
                args,
                state: RefCell::new(None),
            }),
        })
    }

    fn persistent_load(&self, pid: V) -> Result<V, String> {
        let t = pid.items().ok_or("persistent id is not a tuple")?;
        if t.len() < 5 || t[0].as_str() != Some("storage") {
            return Err(format!("unsupported persistent id {pid:?}"));
        }
        let dtype = match &*t[1] {
            Val::Global { name, .. } => name.clone(),
            Val::Object { name, .. } => name.clone(),
            other => return Err(format!("storage type {other:?}")),
        };
        let key = match &*t[2] {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            other => return Err(format!("storage key {other:?}")),
        };
        let numel = t[4].as_int().ok_or("storage size")? as usize;
        Ok(rc(Val::Storage { dtype, key, numel }))
    }

    pub fn run(bytes: &[u8]) -> Result<V, String> {
        let mut m = Machine::new();
        let mut r = Reader { b: bytes, pos: 0 };
        loop {
            let op = r.u8()?;
            match op {
                0x80 => {
                    r.u8()?;
                } // PROTO
                0x95 => {
                    r.take(8)?;
                } // FRAME
                b'.' => return m.pop(), // STOP
                b'(' => m.marks.push(m.stack.len()),
                b'N' => m.stack.push(rc(Val::None)),
                0x88 => m.stack.push(rc(Val::Bool(true))),
                0x89 => m.stack.push(rc(Val::Bool(false))),
                b'K' => {
                    let v = r.u8()? as i64;
                    m.stack.push(rc(Val::Int(v)))
                }
                b'M' => {
                    let v = r.u16()? as i64;
                    m.stack.push(rc(Val::Int(v)))
                }
                b'J' => {
                    let v = r.u32()? as i32 as i64;
                    m.stack.push(rc(Val::Int(v)))
                }
                0x8a => {
                    // LONG1
                    let n = r.u8()? as usize;
                    let s = r.take(n)?;
                    let mut v: i64 = 0;
                    for (i, b) in s.iter().enumerate().take(8) {
                        v |= (*b as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && s[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    m.stack.push(rc(Val::Int(v)))
                }
                b'G' => {
                    let s = r.take(8)?;
                    m.stack
                        .push(rc(Val::Float(f64::from_be_bytes(s.try_into().unwrap()))))
                }
                b'X' => {
                    let n = r.u32()? as usize;
                    let s = String::from_utf8_lossy(r.take(n)?).into_owned();
                    m.stack.push(rc(Val::Str(s)))
                }
                0x8c => {
                    let n = r.u8()? as usize;
                    let s = String::from_utf8_lossy(r.take(n)?).into_owned();
                    m.stack.push(rc(Val::Str(s)))
                }
                b'T' => {
                    let n = r.u32()? as usize;
                    let s = String::from_utf8_lossy(r.take(n)?).into_owned();
                    m.stack.push(rc(Val::Str(s)))
                }
                b'U' => {
                    let n = r.u8()? as usize;
                    let s = String::from_utf8_lossy(r.take(n)?).into_owned();
                    m.stack.push(rc(Val::Str(s)))
                }
                b'B' => {
                    let n = r.u32()? as usize;
                    m.stack.push(rc(Val::Bytes(r.take(n)?.to_vec())))
                }
                b'C' => {
                    let n = r.u8()? as usize;
                    m.stack.push(rc(Val::Bytes(r.take(n)?.to_vec())))
                }
                b'c' => {
                    let module = r.line()?;
                    let name = r.line()?;
                    m.stack.push(rc(Val::Global { module, name }))
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = m.pop()?;
                    let module = m.pop()?;
                    m.stack.push(rc(Val::Global {
                        module: module.as_str().unwrap_or_default().to_string(),
                        name: name.as_str().unwrap_or_default().to_string(),
                    }))
                }
                b')' => m.stack.push(rc(Val::Tuple(vec![]))),
                b't' => {
                    let items = m.pop_mark()?;
                    m.stack.push(rc(Val::Tuple(items)))
                }
                0x85 => {
                    let a = m.pop()?;
                    m.stack.push(rc(Val::Tuple(vec![a])))
                }
                0x86 => {
                    let b = m.pop()?;
                    let a = m.pop()?;
                    m.stack.push(rc(Val::Tuple(vec![a, b])))
                }
                0x87 => {
                    let c = m.pop()?;
                    let b = m.pop()?;
                    let a = m.pop()?;
                    m.stack.push(rc(Val::Tuple(vec![a, b, c])))
                }
                b']' => m.stack.push(rc(Val::List(RefCell::new(vec![])))),
                b'l' => {
                    let items = m.pop_mark()?;
                    m.stack.push(rc(Val::List(RefCell::new(items))))
                }
                b'}' => m.stack.push(rc(Val::Dict(RefCell::new(vec![])))),
                b'd' => {
                    let items = m.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    m.stack.push(rc(Val::Dict(RefCell::new(pairs))))
                }
                0x8f => m.stack.push(rc(Val::List(RefCell::new(vec![])))), // EMPTY_SET (as a list)
                0x90 => {
                    // ADDITEMS
                    let items = m.pop_mark()?;
                    if let Val::List(l) = &**m.top()? {
                        l.borrow_mut().extend(items)
                    }
                }
                0x91 => {
                    let items = m.pop_mark()?;
                    m.stack.push(rc(Val::List(RefCell::new(items))))
                }
                b'a' => {
                    let v = m.pop()?;
                    match &**m.top()? {
                        Val::List(l) => l.borrow_mut().push(v),
                        other => return Err(format!("APPEND to {other:?}")),
                    }
                }
                b'e' => {
                    let items = m.pop_mark()?;
                    match &**m.top()? {
                        Val::List(l) => l.borrow_mut().extend(items),
                        other => return Err(format!("APPENDS to {other:?}")),
                    }
                }
                b's' => {
                    let v = m.pop()?;
                    let k = m.pop()?;
                    match &**m.top()? {
                        Val::Dict(d) => d.borrow_mut().push((k, v)),
                        other => return Err(format!("SETITEM on {other:?}")),
                    }
                }
                b'u' => {
                    let items = m.pop_mark()?;
                    match &**m.top()? {
                        Val::Dict(d) => {
                            let mut d = d.borrow_mut();
                            for c in items.chunks(2) {
                                if c.len() == 2 {
                                    d.push((c[0].clone(), c[1].clone()));
                                }
                            }
                        }
                        other => return Err(format!("SETITEMS on {other:?}")),
                    }
                }
                b'q' => {
                    let i = r.u8()? as u32;
                    let v = m.top()?.clone();
                    m.memo.insert(i, v);
                }
                b'r' => {
                    let i = r.u32()?;
                    let v = m.top()?.clone();
                    m.memo.insert(i, v);
                }
                0x94 => {
                    // MEMOIZE
                    let i = m.memo.len() as u32;
                    let v = m.top()?.clone();
                    m.memo.insert(i, v);
                }
                b'h' => {
                    let i = r.u8()? as u32;
                    let v = m
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| format!("memo {i} missing"))?;
                    m.stack.push(v)
                }
                b'j' => {
                    let i = r.u32()?;
                    let v = m
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| format!("memo {i} missing"))?;
                    m.stack.push(v)
                }
                b'0' => {
                    m.pop()?;
                }
                b'2' => {
                    let v = m.top()?.clone();
                    m.stack.push(v)
                }
                b'Q' => {
                    let pid = m.pop()?;
                    let v = m.persistent_load(pid)?;
                    m.stack.push(v)
                }
                b'R' => {
                    let args = m.pop()?;
                    let f = m.pop()?;
                    let v = m.reduce(f, args)?;
                    m.stack.push(v)
                }
                0x81 => {
                    // NEWOBJ
                    let args = m.pop()?;
                    let cls = m.pop()?;
                    let v = match &*cls {
                        Val::Global { module, name }
                            if module == "collections" && name == "OrderedDict" =>
                        {
                            rc(Val::Dict(RefCell::new(vec![])))
                        }
                        Val::Global { module, name } => rc(Val::Object {
                            module: module.clone(),
                            name: name.clone(),
                            args,
                            state: RefCell::new(None),
                        }),
                        other => return Err(format!("NEWOBJ of {other:?}")),
                    };
                    m.stack.push(v)
                }
                0x92 => {
                    // NEWOBJ_EX
                    let _kw = m.pop()?;
                    let args = m.pop()?;
                    let cls = m.pop()?;
                    let (module, name) = match &*cls {
                        Val::Global { module, name } => (module.clone(), name.clone()),
                        other => return Err(format!("NEWOBJ_EX of {other:?}")),
                    };
                    m.stack.push(rc(Val::Object {
                        module,
                        name,
                        args,
                        state: RefCell::new(None),
                    }))
                }
                b'b' => {
                    let st = m.pop()?;
                    match &**m.top()? {
                        Val::Object { state, .. } => *state.borrow_mut() = Some(st),
                        Val::Dict(d) => {
                            if let Some(e) = st.entries() {
                                d.borrow_mut().extend(e)
                            }
                        }
                        _ => {} // state of tensors and other values is irrelevant here
                    }
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        r.pos - 1
                    ));
                }
            }
        }
    }
}
