//! People and permissions (issue 27): accounts with argon2id passwords, sessions, API tokens, the
//! audit log, all in their own SQLite file beside the event store (`<events.data_dir>/accounts.db`),
//! kept apart from the events so that credentials never travel with an exported event store.
//!
//! Who is asking is decided in one place (`api::access`, from a session cookie or a bearer token);
//! what a role may do is [`Role::may`]; which cameras an identity sees is its [`Scope`].

pub mod cli;
pub mod config;
pub mod password;
pub mod proxies;
pub mod scope;
pub mod shared;
pub mod store;
pub mod throttle;

pub use config::AuthSettings;
pub use scope::Scope;
pub use store::{AccountStore, AuditEntry, StoreError, TokenView, UserView};

use serde::{Deserialize, Serialize};

/// What an account or a token may do. Ordered: each role may do what the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watch only: cameras, streams, snapshots, events, clips, alerts.
    Viewer,
    /// Watch, acknowledge events, snooze cameras; no settings.
    Operator,
    /// Everything: cameras, settings, accounts, tokens, the audit log.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` names.
    pub fn may(self, needed: Role) -> bool {
        self >= needed
    }
}

/// Who is asking: an account (by session), a token, the legacy `api.token`, or nobody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The account's or token's name (`api.token` for the legacy token; `anonymous` for nobody).
    pub name: String,
    pub role: Role,
    pub cameras: Scope,
    /// How it proved itself: `session`, `token`, `api.token`, `open` (no credentials needed).
    pub via: &'static str,
}

impl Identity {
    /// The caller of a server with no accounts and no token (loopback only): may do everything.
    pub fn open() -> Self {
        Identity { name: "anonymous".into(), role: Role::Admin, cameras: Scope::all(), via: "open" }
    }

    /// A caller without credentials on a server with only `api.token`: reads as before, no writes.
    pub fn reader() -> Self {
        Identity { name: "anonymous".into(), role: Role::Viewer, cameras: Scope::all(), via: "open" }
    }

    /// The legacy `api.token`: an admin token.
    pub fn legacy_token() -> Self {
        Identity { name: "api.token".into(), role: Role::Admin, cameras: Scope::all(), via: "api.token" }
    }

    /// Whether the camera `id` is one this identity may see.
    pub fn sees(&self, camera_id: &str) -> bool {
        self.cameras.admits(camera_id)
    }
}

/// Seconds since the epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// 32 random bytes from the operating system, as URL-safe base64 (43 characters): session ids and
/// tokens. 256 bits: guessing one is out of reach, so a fast hash (SHA-256) of it is enough to store.
pub fn random_secret() -> Result<String, StoreError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a high-entropy secret, hex: what the store keeps of a session id or a token. A slow
/// hash (argon2) protects low-entropy passwords; a 256-bit random secret needs none, and a fast
/// one lets every request be checked by an indexed lookup.
pub fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two byte strings (their lengths aside).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
