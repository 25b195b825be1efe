//! Passwords: argon2id (RustCrypto's `argon2`, its default parameters: 19 MiB, 2 passes) in PHC
//! strings, which carry their own salt and parameters, so stronger ones can come later.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The longest password taken, in bytes: argon2 takes any length, but a request should not make the
/// server hash megabytes.
pub const MAX_BYTES: usize = 1024;
/// The shortest password an account may be given, in characters.
pub const MIN_CHARS: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password must have at least {MIN_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_BYTES} bytes")]
    TooLong,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Whether `password` may be given to an account.
pub fn check_new(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < MIN_CHARS {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of a new password, with 16 random
/// bytes of salt from the operating system.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_new(password)?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| PasswordError::Hash(e.to_string()))?.to_string())
}

/// Whether `password` is the one `phc` was made from (argon2 compares in constant time). A password
/// over [`MAX_BYTES`] is never hashed: it is wrong.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_BYTES {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A PHC string that no password matches, to spend the same time on an unknown name as on a known
/// one (a sign-in's answer time must not tell which names exist).
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password never given out").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse", &phc));
        assert!(!verify("correct horsE", &phc));
        assert!(!verify("", &phc));
        assert_ne!(hash("correct horse").unwrap(), phc, "salted");
        assert!(!verify("x", "not a phc string"));
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(hash(&"p".repeat(10_000)), Err(PasswordError::TooLong));
        assert!(!verify(&"p".repeat(10_000), &phc));
        assert!(!verify("decoy", decoy()));
    }
}
