//! The one validator for free text that ends up in a file name, a log line or a label: camera ids,
//! sources, the paths of the settings file. Each field has a [`Rule`]: a length limit (in
//! characters) and the characters it may hold. Control characters are refused everywhere: a
//! newline in a source would forge a log line.

/// Identifiers (`camera_id`): file names, log prefixes, UI labels.
pub const ID: Rule = Rule { max_chars: 64, chars: Chars::Identifier };
/// Camera sources (a file path or an RTSP URL): log lines and labels.
pub const SOURCE: Rule = Rule { max_chars: 2048, chars: Chars::Printable };
/// Paths in the settings file (data directory, weights, media directories): log lines.
pub const PATH: Rule = Rule { max_chars: 4096, chars: Chars::Printable };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chars {
    /// ASCII letters, digits, `_`, `-` and `.`.
    Identifier,
    /// Anything but control characters.
    Printable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub max_chars: usize,
    pub chars: Chars,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} characters long; the limit is {max}")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("{field} may only hold letters, digits, '_', '-' and '.' (found {found:?})")]
    NotAnIdentifier { field: &'static str, found: char },
    #[error("{field} holds a control character ({found:?})")]
    Control { field: &'static str, found: char },
}

/// Checks `value` (the field named `field`) against `rule`.
pub fn check(field: &'static str, value: &str, rule: Rule) -> Result<(), TextError> {
    if value.trim().is_empty() {
        return Err(TextError::Empty { field });
    }
    let len = value.chars().count();
    if len > rule.max_chars {
        return Err(TextError::TooLong { field, len, max: rule.max_chars });
    }
    if let Some(found) = value.chars().find(|c| c.is_control()) {
        return Err(TextError::Control { field, found });
    }
    if rule.chars == Chars::Identifier {
        if let Some(found) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
            return Err(TextError::NotAnIdentifier { field, found });
        }
    }
    Ok(())
}

/// `value` as it may appear in a message about it: at most `ID.max_chars` characters (then `…`),
/// control characters escaped.
pub fn shown(value: &str) -> String {
    let mut out: String = value.chars().take(ID.max_chars).flat_map(char::escape_debug).collect();
    if value.chars().count() > ID.max_chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_limited_to_safe_characters() {
        assert_eq!(check("camera_id", "cam-1.a_b", ID), Ok(()));
        assert_eq!(check("camera_id", &"a".repeat(64), ID), Ok(()));
        assert_eq!(
            check("camera_id", &"a".repeat(5000), ID).unwrap_err().to_string(),
            "camera_id is 5000 characters long; the limit is 64"
        );
        assert_eq!(check("camera_id", " ", ID), Err(TextError::Empty { field: "camera_id" }));
        assert_eq!(
            check("camera_id", "a/b", ID).unwrap_err().to_string(),
            "camera_id may only hold letters, digits, '_', '-' and '.' (found '/')"
        );
    }

    #[test]
    fn free_text_refuses_control_characters_and_counts_characters_not_bytes() {
        assert_eq!(check("source", "rtsp://h/é", SOURCE), Ok(()));
        assert_eq!(check("source", &"é".repeat(2048), SOURCE), Ok(()));
        assert!(matches!(check("source", &"é".repeat(2049), SOURCE), Err(TextError::TooLong { len: 2049, .. })));
        assert_eq!(
            check("source", "a.mp4\n[cam1] forged", SOURCE).unwrap_err().to_string(),
            "source holds a control character ('\\n')"
        );
    }

    #[test]
    fn shown_values_are_short_and_on_one_line() {
        assert_eq!(shown("cam1"), "cam1");
        assert_eq!(shown(&"x".repeat(5000)), format!("{}…", "x".repeat(64)));
        assert_eq!(shown("a\nb"), "a\\nb");
    }
}
