//! The shape of the code, as a newcomer meets it (issue 26): each part owns its settings and the
//! loader sits on top, the modules import each other without circles, functions and files stay a
//! size one can read. Read from the sources themselves, so a change that breaks a rule fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The source with comments, string and char literals blanked (kept the same length, newlines
/// kept), so that neither braces nor `crate::` inside them count.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            i + rest.windows(2).position(|w| w == b"*/").map_or(rest.len(), |p| p + 2)
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let start = 2 + hashes;
            i + start + rest[start..].windows(close.len()).position(|w| w == close.as_slice()).map_or(rest.len() - start, |p| p + close.len())
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            i + (j + 1).min(rest.len())
        } else if rest[0] == b'\'' && rest.len() > 2 && rest[1] == b'\\' {
            // An escaped char literal ('\n', '\'', '\u{7f}').
            i + rest[3..].iter().position(|&c| c == b'\'').map_or(rest.len(), |p| p + 4)
        } else if rest[0] == b'\'' && rest.len() > 2 && rest[2] == b'\'' {
            // A char literal ('{'), not a lifetime ('a).
            i + 3
        } else {
            out.push(b[i]);
            i += 1;
            continue;
        };
        out.extend(b[i..end].iter().map(|&c| blank(c)));
        i = end;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(name, first line, lines)` of every function with a body.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("fn ") {
        let at = from + p;
        from = at + 3;
        let word_start = at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric() && code.as_bytes()[at - 1] != b'_';
        let name: String = code[from..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !word_start || name.is_empty() {
            continue;
        }
        // The body opens at the first '{' outside parentheses/brackets; a ';' first: no body.
        let (mut depth, mut open) = (0i32, None);
        for (k, c) in code[from..].char_indices() {
            match c {
                '(' | '[' | '<' => depth += 1,
                ')' | ']' | '>' => depth -= 1,
                ';' if depth <= 0 => break,
                '{' if depth <= 0 => {
                    open = Some(from + k);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0;
        let close = code[open..].char_indices().find_map(|(k, c)| {
            braces += match c {
                '{' => 1,
                '}' => -1,
                _ => 0,
            };
            (braces == 0).then_some(open + k)
        });
        let Some(close) = close else { continue };
        let first = code[..at].matches('\n').count() + 1;
        let last = code[..close].matches('\n').count() + 1;
        out.push((name, first, last - first + 1));
    }
    out
}

/// The top-level module a file of `src/` belongs to (`camera` for src/camera/worker.rs); none for
/// the crate roots.
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(repo().join("src")).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
    (!["lib", "main"].contains(&first.as_str())).then_some(first)
}

/// The top-level modules a piece of code names through `crate::` (both `crate::a::b` and
/// `crate::{a::b, c}`).
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (p, _) in code.match_indices("crate::") {
        let rest = &code[p + 7..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => {
                let mut depth = 0;
                let end = group.char_indices().find_map(|(k, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    (depth < 0).then_some(k)
                });
                let inner = &group[..end.unwrap_or(group.len())];
                // First-level names only: split at commas outside nested braces.
                let mut parts = Vec::new();
                let (mut d, mut start) = (0, 0);
                for (k, c) in inner.char_indices() {
                    match c {
                        '{' => d += 1,
                        '}' => d -= 1,
                        ',' if d == 0 => {
                            parts.push(&inner[start..k]);
                            start = k + 1;
                        }
                        _ => {}
                    }
                }
                parts.push(&inner[start..]);
                parts
            }
            None => vec![rest],
        };
        for n in names {
            let name: String = n.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                out.insert(name);
            }
        }
    }
    out
}

/// The module graph of `src/` (code outside `#[cfg(test)]` modules at the end of a file).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files(&repo().join("src"), "rs") {
        let Some(module) = top_module(&file) else { continue };
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        let targets = graph.entry(module.clone()).or_default();
        targets.extend(crate_imports(code).into_iter().filter(|t| *t != module));
    }
    graph
}

/// A circle through `start`, if there is one.
fn circle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(graph: &BTreeMap<String, BTreeSet<String>>, at: &str, start: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then(|| {
        path.push(start.to_string());
        path
    })
}

#[test]
fn the_parts_below_the_loader_never_import_it() {
    let mut offenders = Vec::new();
    for part in ["camera", "inference", "events", "api", "cluster"] {
        for file in files(&repo().join("src").join(part), "rs") {
            let code = code_only(&std::fs::read_to_string(&file).unwrap());
            if crate_imports(&code).contains("settings") {
                offenders.push(file.display().to_string());
            }
        }
    }
    assert!(offenders.is_empty(), "these import crate::settings (each part owns its settings; the loader sits on top): {offenders:#?}");
}

#[test]
fn the_modules_import_each_other_without_a_circle() {
    let graph = module_graph();
    assert!(graph.contains_key("camera") && graph["camera"].contains("inference"), "the graph was not read: {graph:?}");
    let circles: Vec<_> = graph.keys().filter_map(|m| circle_from(&graph, m)).collect();
    assert!(circles.is_empty(), "import circles among src/ modules: {circles:?}");
}

#[test]
fn no_function_is_longer_than_eighty_lines() {
    let mut long = Vec::new();
    // The pose crate's SIMD kernels are left out: their micro-kernels are unrolled register
    // schedules, read as one piece (docs/pose.md), and issue 25 reworks them.
    let kernels = repo().join("crates/haven-pose/src/kernels");
    for dir in ["src", "crates/haven-pose/src"] {
        for file in files(&repo().join(dir), "rs").into_iter().filter(|f| !f.starts_with(&kernels)) {
            let code = code_only(&std::fs::read_to_string(&file).unwrap());
            for (name, line, lines) in functions(&code) {
                if lines > 80 {
                    long.push(format!("{}:{line} {name} ({lines} lines)", file.strip_prefix(repo()).unwrap().display()));
                }
            }
        }
    }
    assert!(long.is_empty(), "functions over 80 lines: {long:#?}");
}

#[test]
fn the_hubs_of_events_and_cluster_and_the_ui_files_stay_small() {
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
    for (file, limit) in [("src/events/mod.rs", 400), ("src/cluster/mod.rs", 400)] {
        let n = lines(&repo().join(file));
        assert!(n < limit, "{file} has {n} lines (limit {limit})");
    }
    for file in files(&repo().join("ui"), "js").into_iter().chain(files(&repo().join("ui"), "css")).chain(files(&repo().join("ui"), "html")) {
        let n = lines(&file);
        assert!(n <= 600, "{} has {n} lines (limit 600)", file.display());
    }
}

#[test]
fn the_readers_used_above_see_what_they_should() {
    let code = code_only("fn a() {\n let s = \"}\"; // }\n if x { y } \n}\nfn b();\nuse crate::{camera::x, events};\n");
    assert_eq!(functions(&code), vec![("a".to_string(), 1, 4)]);
    assert_eq!(crate_imports(&code), ["camera", "events"].iter().map(|s| s.to_string()).collect());
}
