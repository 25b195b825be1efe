//! Which cameras an account or token sees: names or globs (`ward-a-*`, `room-?`); none means all.

use serde::{Deserialize, Serialize};

/// A list of camera names and globs (`*` any run of characters, `?` one). Empty: every camera.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scope(Vec<String>);

impl Scope {
    pub fn all() -> Self {
        Scope(Vec::new())
    }

    /// Checks each pattern (1-64 characters: letters, digits, `_ - .` and the wildcards `* ?`).
    pub fn new(patterns: Vec<String>) -> Result<Self, String> {
        for p in &patterns {
            let ok_chars = p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*' | '?'));
            if p.is_empty() || p.chars().count() > 64 || !ok_chars {
                return Err(format!("camera pattern {:?} must be 1-64 letters, digits, '_', '-', '.', '*' or '?'", crate::text::shown(p)));
            }
        }
        if patterns.len() > 256 {
            return Err(format!("at most 256 camera patterns, got {}", patterns.len()));
        }
        Ok(Scope(patterns))
    }

    /// `a,b,ward-*` (the command line's form); empty parts are left out.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        Self::new(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }

    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether `camera_id` is in the scope.
    pub fn admits(&self, camera_id: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| glob(p.as_bytes(), camera_id.as_bytes()))
    }
}

/// `*` and `?` matching, iterative (backtracking to the last `*` only: linear in practice).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_globs() {
        let s = Scope::new(vec!["ward-a-*".into(), "door".into(), "room-?".into()]).unwrap();
        for yes in ["ward-a-1", "ward-a-", "door", "room-4"] {
            assert!(s.admits(yes), "{yes}");
        }
        for no in ["ward-b-1", "doors", "xdoor", "room-44", "room-", "ward-a"] {
            assert!(!s.admits(no), "{no}");
        }
        assert!(Scope::all().admits("anything"));
        assert!(glob(b"*a*b*", b"xxaxxbxx") && !glob(b"*a*b", b"xxaxxbxx"));
        assert!(Scope::new(vec!["'; DROP TABLE users;--".into()]).is_err());
        assert!(Scope::new(vec![String::new()]).is_err());
        assert_eq!(Scope::parse_list(" a, ,b*").unwrap().patterns(), ["a", "b*"]);
    }
}
