//! A small pickle virtual machine for PyTorch checkpoints that pickle whole module objects
//! (Ultralytics `.pt`): shared references (memo) stay shared, BUILD fills module `__dict__`s,
//! `persistent_load` yields storages and `_rebuild_tensor_v2` / `_rebuild_parameter` yield tensors.
//! No Python code is ever executed: unknown callables become inert `Object`s.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

mod op;
mod value;

pub(crate) use value::{Val, V};

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

    /// Runs the pickle program `bytes` and gives the value it stops with.
    pub fn run(bytes: &[u8]) -> Result<V, String> {
        let mut m = Machine::new();
        let mut r = Reader { b: bytes, pos: 0 };
        loop {
            let code = r.u8()?;
            if code == op::STOP {
                return m.pop();
            }
            let done = m.framing(code, &mut r)?
                || m.literal(code, &mut r)?
                || m.collection(code)?
                || m.stack_and_memo(code, &mut r)?
                || m.object(code)?;
            if !done {
                return Err(format!(
                    "unsupported pickle opcode 0x{code:02x} at byte {}",
                    r.pos - 1
                ));
            }
        }
    }

    fn push(&mut self, v: Val) {
        self.stack.push(rc(v))
    }

    /// PROTO and FRAME: read and ignored.
    fn framing(&mut self, code: u8, r: &mut Reader) -> Result<bool, String> {
        match code {
            op::PROTO => {
                r.u8()?;
            }
            op::FRAME => {
                r.take(8)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that push a constant: None, booleans, integers, floats, strings, bytes, globals.
    fn literal(&mut self, code: u8, r: &mut Reader) -> Result<bool, String> {
        match code {
            op::NONE => self.push(Val::None),
            op::NEWTRUE => self.push(Val::Bool(true)),
            op::NEWFALSE => self.push(Val::Bool(false)),
            op::BININT1 => self.push(Val::Int(r.u8()? as i64)),
            op::BININT2 => self.push(Val::Int(r.u16()? as i64)),
            op::BININT => self.push(Val::Int(r.u32()? as i32 as i64)),
            op::LONG1 => {
                let n = r.u8()? as usize;
                self.push(Val::Int(long1(r.take(n)?)))
            }
            op::BINFLOAT => {
                let s = r.take(8)?;
                self.push(Val::Float(f64::from_be_bytes(s.try_into().unwrap())))
            }
            op::BINUNICODE | op::BINSTRING => {
                let n = r.u32()? as usize;
                self.push(Val::Str(String::from_utf8_lossy(r.take(n)?).into_owned()))
            }
            op::SHORT_BINUNICODE | op::SHORT_BINSTRING => {
                let n = r.u8()? as usize;
                self.push(Val::Str(String::from_utf8_lossy(r.take(n)?).into_owned()))
            }
            op::BINBYTES => {
                let n = r.u32()? as usize;
                self.push(Val::Bytes(r.take(n)?.to_vec()))
            }
            op::SHORT_BINBYTES => {
                let n = r.u8()? as usize;
                self.push(Val::Bytes(r.take(n)?.to_vec()))
            }
            op::GLOBAL => {
                let module = r.line()?;
                let name = r.line()?;
                self.push(Val::Global { module, name })
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                self.push(Val::Global {
                    module: module.as_str().unwrap_or_default().to_string(),
                    name: name.as_str().unwrap_or_default().to_string(),
                })
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that build tuples, lists (sets too) and dicts.
    fn collection(&mut self, code: u8) -> Result<bool, String> {
        match code {
            op::EMPTY_TUPLE => self.push(Val::Tuple(vec![])),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push(Val::Tuple(items))
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (code - op::TUPLE1 + 1) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Val::Tuple(items))
            }
            op::EMPTY_LIST | op::EMPTY_SET => self.push(Val::List(RefCell::new(vec![]))),
            op::LIST | op::FROZENSET => {
                let items = self.pop_mark()?;
                self.push(Val::List(RefCell::new(items)))
            }
            op::EMPTY_DICT => self.push(Val::Dict(RefCell::new(vec![]))),
            op::DICT => {
                let items = self.pop_mark()?;
                self.push(Val::Dict(RefCell::new(pairs(&items))))
            }
            op::ADDITEMS => {
                let items = self.pop_mark()?;
                if let Val::List(l) = &**self.top()? {
                    l.borrow_mut().extend(items)
                }
            }
            _ => return self.add_to_collection(code),
        }
        Ok(true)
    }

    /// APPEND, APPENDS, SETITEM, SETITEMS: into the list or dict below on the stack.
    fn add_to_collection(&mut self, code: u8) -> Result<bool, String> {
        match code {
            op::APPEND => {
                let v = self.pop()?;
                match &**self.top()? {
                    Val::List(l) => l.borrow_mut().push(v),
                    other => return Err(format!("APPEND to {other:?}")),
                }
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                match &**self.top()? {
                    Val::List(l) => l.borrow_mut().extend(items),
                    other => return Err(format!("APPENDS to {other:?}")),
                }
            }
            op::SETITEM => {
                let v = self.pop()?;
                let k = self.pop()?;
                match &**self.top()? {
                    Val::Dict(d) => d.borrow_mut().push((k, v)),
                    other => return Err(format!("SETITEM on {other:?}")),
                }
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                match &**self.top()? {
                    Val::Dict(d) => d.borrow_mut().extend(pairs(&items)),
                    other => return Err(format!("SETITEMS on {other:?}")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// MARK, POP, DUP and the memo (PUT, GET, MEMOIZE): shared references stay shared.
    fn stack_and_memo(&mut self, code: u8, r: &mut Reader) -> Result<bool, String> {
        match code {
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                self.pop()?;
            }
            op::DUP => {
                let v = self.top()?.clone();
                self.stack.push(v)
            }
            op::BINPUT => {
                let i = r.u8()? as u32;
                self.memo.insert(i, self.top()?.clone());
            }
            op::LONG_BINPUT => {
                let i = r.u32()?;
                self.memo.insert(i, self.top()?.clone());
            }
            op::MEMOIZE => {
                let i = self.memo.len() as u32;
                self.memo.insert(i, self.top()?.clone());
            }
            op::BINGET => {
                let i = r.u8()? as u32;
                self.push_memo(i)?
            }
            op::LONG_BINGET => {
                let i = r.u32()?;
                self.push_memo(i)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn push_memo(&mut self, i: u32) -> Result<(), String> {
        let v = self
            .memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("memo {i} missing"))?;
        self.stack.push(v);
        Ok(())
    }

    /// Objects: persistent ids (storages), REDUCE, NEWOBJ(_EX) and BUILD.
    fn object(&mut self, code: u8) -> Result<bool, String> {
        match code {
            op::BINPERSID => {
                let pid = self.pop()?;
                let v = self.persistent_load(pid)?;
                self.stack.push(v)
            }
            op::REDUCE => {
                let args = self.pop()?;
                let f = self.pop()?;
                let v = self.reduce(f, args)?;
                self.stack.push(v)
            }
            op::NEWOBJ => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = new_object(&cls, args)?;
                self.stack.push(v)
            }
            op::NEWOBJ_EX => {
                let _kw = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let (module, name) = match &*cls {
                    Val::Global { module, name } => (module.clone(), name.clone()),
                    other => return Err(format!("NEWOBJ_EX of {other:?}")),
                };
                self.push(Val::Object {
                    module,
                    name,
                    args,
                    state: RefCell::new(None),
                })
            }
            op::BUILD => self.build()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// BUILD: the state below sets an object's `__dict__` or extends a dict.
    fn build(&mut self) -> Result<(), String> {
        let st = self.pop()?;
        match &**self.top()? {
            Val::Object { state, .. } => *state.borrow_mut() = Some(st),
            Val::Dict(d) => {
                if let Some(e) = st.entries() {
                    d.borrow_mut().extend(e)
                }
            }
            _ => {} // state of tensors and other values is irrelevant here
        }
        Ok(())
    }
}

/// NEWOBJ of `cls`: an `OrderedDict` is a dict, any other class an inert object.
fn new_object(cls: &V, args: V) -> Result<V, String> {
    Ok(match &**cls {
        Val::Global { module, name } if module == "collections" && name == "OrderedDict" => {
            rc(Val::Dict(RefCell::new(vec![])))
        }
        Val::Global { module, name } => rc(Val::Object {
            module: module.clone(),
            name: name.clone(),
            args,
            state: RefCell::new(None),
        }),
        other => return Err(format!("NEWOBJ of {other:?}")),
    })
}

/// Key-value pairs from a flat list (a trailing odd item is dropped).
fn pairs(items: &[V]) -> Vec<(V, V)> {
    items
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// LONG1's little-endian two's-complement integer (at most 8 bytes are read).
fn long1(s: &[u8]) -> i64 {
    let n = s.len();
    let mut v: i64 = 0;
    for (i, b) in s.iter().enumerate().take(8) {
        v |= (*b as i64) << (8 * i);
    }
    if n > 0 && n < 8 && s[n - 1] & 0x80 != 0 {
        v -= 1i64 << (8 * n);
    }
    v
}
