//! The accounts file (`accounts.db`): users with their password hashes, sessions and tokens (stored
//! as SHA-256 of their secret, never the secret), and the audit log. Versioned with `PRAGMA
//! user_version` like the event store, but a file of its own.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{now, random_secret, secret_hash, Identity, Role, Scope};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("accounts store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("accounts store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("accounts store {path} has version {found}; this HAVEN knows up to {known}")]
    TooNew { path: PathBuf, found: i64, known: i64 },
}

/// One migration per version, in order; `user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: users, sessions, tokens, the audit log.
    "CREATE TABLE users (name TEXT PRIMARY KEY, password TEXT NOT NULL, role TEXT NOT NULL, cameras TEXT NOT NULL, created_at REAL NOT NULL);
     CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, user TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL);
     CREATE INDEX sessions_user ON sessions(user);
     CREATE TABLE tokens (name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, cameras TEXT NOT NULL,
                          created_at REAL NOT NULL, expires_at REAL, created_by TEXT NOT NULL);
     CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
                         target TEXT NOT NULL, detail TEXT NOT NULL);",
    // 2: what a cluster node has still to share (`auth::shared`): every change of an account or a
    // token, by whatever process made it (the server, `haven user|token`), noted by triggers;
    // the accounts and tokens there were before are noted once, so a node that joins shares them.
    "CREATE TABLE replicate (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, name TEXT NOT NULL);
     CREATE TRIGGER users_added AFTER INSERT ON users BEGIN INSERT INTO replicate (kind, name) VALUES ('user', NEW.name); END;
     CREATE TRIGGER users_changed AFTER UPDATE ON users
       WHEN OLD.password IS NOT NEW.password OR OLD.role IS NOT NEW.role OR OLD.cameras IS NOT NEW.cameras
       BEGIN INSERT INTO replicate (kind, name) VALUES ('user', NEW.name); END;
     CREATE TRIGGER users_removed AFTER DELETE ON users BEGIN INSERT INTO replicate (kind, name) VALUES ('user', OLD.name); END;
     CREATE TRIGGER tokens_added AFTER INSERT ON tokens BEGIN INSERT INTO replicate (kind, name) VALUES ('token', NEW.name); END;
     CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
       WHEN OLD.hash IS NOT NEW.hash OR OLD.role IS NOT NEW.role OR OLD.cameras IS NOT NEW.cameras OR OLD.expires_at IS NOT NEW.expires_at
       BEGIN INSERT INTO replicate (kind, name) VALUES ('token', NEW.name); END;
     CREATE TRIGGER tokens_removed AFTER DELETE ON tokens BEGIN INSERT INTO replicate (kind, name) VALUES ('token', OLD.name); END;
     INSERT INTO replicate (kind, name) SELECT 'user', name FROM users;
     INSERT INTO replicate (kind, name) SELECT 'token', name FROM tokens;",
];

/// An account as the API shows it (never its password hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub cameras: Scope,
    pub created_at: f64,
}

/// A token as the API lists it (never its secret nor its hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
    pub cameras: Scope,
    pub created_at: f64,
    pub expires_at: Option<f64>,
    pub created_by: String,
}

/// One change: who made it, when, what (`PATCH /api/cameras/{camera_id}`), on what, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: f64,
    pub who: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

pub struct AccountStore {
    conn: Mutex<Connection>,
}

/// A user or token name: 1-64 letters, digits, `_ - .` (it appears in logs, cookies never).
pub fn check_name(field: &'static str, name: &str) -> Result<(), StoreError> {
    crate::text::check(field, name, crate::text::ID).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn role_of(s: String) -> rusqlite::Result<Role> {
    Role::parse(&s).ok_or_else(|| rusqlite::Error::InvalidColumnType(0, format!("role {s}"), rusqlite::types::Type::Text))
}

fn scope_of(s: String) -> rusqlite::Result<Scope> {
    serde_json::from_str(&s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn scope_json(scope: &Scope) -> String {
    serde_json::to_string(scope).unwrap_or_else(|_| "[]".into())
}

impl AccountStore {
    /// Opens (creating) `<dir>/accounts.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        let path = dir.join("accounts.db");
        // The file holds password hashes: readable by its owner only, from its creation (SQLite
        // gives its -wal and -shm files the database's own permissions).
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let io = |source| StoreError::Io { path: path.clone(), source };
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(io)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // As the event store: a commit waits for the WAL write, not for a sync of the disk (the
        // gate records changes on the request's own thread).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew { path, found: version, known: MIGRATIONS.len() as i64 });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Self { conn: Mutex::new(conn) })
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn has_users(&self) -> Result<bool, StoreError> {
        Ok(self.conn().query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))?)
    }

    /// A new account with a password hash made by `password::hash`.
    pub fn add_user(&self, name: &str, phc: &str, role: Role, cameras: &Scope) -> Result<UserView, StoreError> {
        check_name("name", name)?;
        let at = now();
        let added = self.conn().execute(
            "INSERT INTO users (name, password, role, cameras, created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![name, phc, role.as_str(), scope_json(cameras), at],
        )?;
        if added == 0 {
            return Err(StoreError::Conflict(format!("an account named {name} exists already")));
        }
        Ok(UserView { name: name.into(), role, cameras: cameras.clone(), created_at: at })
    }

    pub fn users(&self) -> Result<Vec<UserView>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, role, cameras, created_at FROM users ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok(UserView { name: r.get(0)?, role: role_of(r.get(1)?)?, cameras: scope_of(r.get(2)?)?, created_at: r.get(3)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The account and its password hash.
    pub fn user(&self, name: &str) -> Result<Option<(UserView, String)>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT name, role, cameras, created_at, password FROM users WHERE name = ?1", [name], |r| {
                Ok((UserView { name: r.get(0)?, role: role_of(r.get(1)?)?, cameras: scope_of(r.get(2)?)?, created_at: r.get(3)? }, r.get(4)?))
            })
            .optional()?)
    }

    /// Changes what is given; a new password ends the account's sessions.
    pub fn update_user(&self, name: &str, phc: Option<&str>, role: Option<Role>, cameras: Option<&Scope>) -> Result<UserView, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let found = tx.query_row("SELECT role FROM users WHERE name = ?1", [name], |r| role_of(r.get(0)?)).optional()?;
        let Some(before) = found else {
            return Err(StoreError::NotFound(format!("no account named {name}")));
        };
        if before == Role::Admin && role.is_some_and(|r| r != Role::Admin) && admins(&tx)? == 1 {
            return Err(StoreError::Conflict(format!("{name} is the last admin: make another admin first")));
        }
        if let Some(phc) = phc {
            tx.execute("UPDATE users SET password = ?2 WHERE name = ?1", params![name, phc])?;
            tx.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
        }
        if let Some(role) = role {
            tx.execute("UPDATE users SET role = ?2 WHERE name = ?1", params![name, role.as_str()])?;
        }
        if let Some(cameras) = cameras {
            tx.execute("UPDATE users SET cameras = ?2 WHERE name = ?1", params![name, scope_json(cameras)])?;
        }
        tx.commit()?;
        drop(conn);
        self.user(name)?.map(|(u, _)| u).ok_or_else(|| StoreError::NotFound(format!("no account named {name}")))
    }

    /// Removes the account and ends its sessions. `keep_an_admin`: refuse to remove the last admin
    /// while other accounts remain (the API; the command line may remove anyone).
    pub fn remove_user(&self, name: &str, keep_an_admin: bool) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let role = tx.query_row("SELECT role FROM users WHERE name = ?1", [name], |r| role_of(r.get(0)?)).optional()?;
        match role {
            None => return Err(StoreError::NotFound(format!("no account named {name}"))),
            Some(Role::Admin) if keep_an_admin && admins(&tx)? == 1 => {
                return Err(StoreError::Conflict(format!("{name} is the last admin: make another admin first")));
            }
            Some(_) => {}
        }
        tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
        Ok(tx.commit()?)
    }

    /// A new session for `user`, lasting `hours`: its secret (the cookie's value) and its end.
    pub fn create_session(&self, user: &str, hours: f64) -> Result<(String, f64), StoreError> {
        let secret = random_secret()?;
        let (at, expires) = (now(), now() + hours * 3600.0);
        let conn = self.conn();
        // Expired sessions go as new ones come.
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [at])?;
        conn.execute(
            "INSERT INTO sessions (id_hash, user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![secret_hash(&secret), user, at, expires],
        )?;
        Ok((secret, expires))
    }

    /// Who a session cookie's secret belongs to, if the session lives and its account exists (its
    /// role and cameras as they are now).
    pub fn session(&self, secret: &str) -> Result<Option<Identity>, StoreError> {
        self.identity(
            "SELECT u.name, u.role, u.cameras FROM sessions s JOIN users u ON u.name = s.user WHERE s.id_hash = ?1 AND s.expires_at > ?2",
            secret,
            "session",
        )
    }

    /// The identity `sql` selects (name, role, cameras) for the hash of `secret` (?1) at this moment (?2).
    fn identity(&self, sql: &str, secret: &str, via: &'static str) -> Result<Option<Identity>, StoreError> {
        Ok(self
            .conn()
            .query_row(sql, params![secret_hash(secret), now()], |r| {
                Ok(Identity { name: r.get(0)?, role: role_of(r.get(1)?)?, cameras: scope_of(r.get(2)?)?, via })
            })
            .optional()?)
    }

    /// Ends every session of `user` (a lost phone, a shared computer): how many there were.
    pub fn end_sessions_of(&self, user: &str) -> Result<usize, StoreError> {
        if self.user(user)?.is_none() {
            return Err(StoreError::NotFound(format!("no account named {user}")));
        }
        Ok(self.conn().execute("DELETE FROM sessions WHERE user = ?1", [user])?)
    }

    pub fn end_session(&self, secret: &str) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM sessions WHERE id_hash = ?1", [secret_hash(secret)])?;
        Ok(())
    }

    /// A new API token: its secret (shown once) and how it is listed.
    pub fn add_token(&self, name: &str, role: Role, cameras: &Scope, days: Option<u32>, by: &str) -> Result<(String, TokenView), StoreError> {
        check_name("name", name)?;
        let secret = format!("haven_{}", random_secret()?);
        let at = now();
        let expires_at = days.map(|d| at + f64::from(d) * 86400.0);
        let added = self.conn().execute(
            "INSERT INTO tokens (name, hash, role, cameras, created_at, expires_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            params![name, secret_hash(&secret), role.as_str(), scope_json(cameras), at, expires_at, by],
        )?;
        if added == 0 {
            return Err(StoreError::Conflict(format!("a token named {name} exists already")));
        }
        Ok((secret, TokenView { name: name.into(), role, cameras: cameras.clone(), created_at: at, expires_at, created_by: by.into() }))
    }

    pub fn tokens(&self) -> Result<Vec<TokenView>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, role, cameras, created_at, expires_at, created_by FROM tokens ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenView { name: r.get(0)?, role: role_of(r.get(1)?)?, cameras: scope_of(r.get(2)?)?, created_at: r.get(3)?, expires_at: r.get(4)?, created_by: r.get(5)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Who a bearer token belongs to, if it exists and has not expired.
    pub fn token(&self, secret: &str) -> Result<Option<Identity>, StoreError> {
        self.identity("SELECT name, role, cameras FROM tokens WHERE hash = ?1 AND (expires_at IS NULL OR expires_at > ?2)", secret, "token")
    }

    pub fn remove_token(&self, name: &str) -> Result<(), StoreError> {
        match self.conn().execute("DELETE FROM tokens WHERE name = ?1", [name])? {
            0 => Err(StoreError::NotFound(format!("no token named {name}"))),
            _ => Ok(()),
        }
    }

    /// Records a change. Never fails the change itself: a failure to record is logged.
    pub fn audit(&self, who: &str, action: &str, target: &str, detail: &str) {
        let done = self.conn().execute(
            "INSERT INTO audit (at, who, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now(), who, action, target, detail],
        );
        if let Err(e) = done {
            log::error!("audit log: cannot record {action} {target} by {who}: {e}");
        }
    }

    /// The newest entries first: the total and one page.
    pub fn audit_log(&self, limit: usize, offset: usize) -> Result<(u64, Vec<AuditEntry>), StoreError> {
        let conn = self.conn();
        let total: i64 = conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
        let mut stmt = conn.prepare("SELECT id, at, who, action, target, detail FROM audit ORDER BY id DESC LIMIT ?1 OFFSET ?2")?;
        let rows = stmt.query_map(params![limit as i64, offset as i64], |r| {
            Ok(AuditEntry { id: r.get(0)?, at: r.get(1)?, who: r.get(2)?, action: r.get(3)?, target: r.get(4)?, detail: r.get(5)? })
        })?;
        Ok((total as u64, rows.collect::<Result<_, _>>()?))
    }
}

fn admins(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> (PathBuf, AccountStore) {
        let dir = std::env::temp_dir().join(format!("haven-accounts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = AccountStore::open(&dir).unwrap();
        (dir, store)
    }

    #[test]
    fn users_sessions_and_tokens_live_and_die() {
        let (dir, s) = store("life");
        assert!(!s.has_users().unwrap());
        let wing = Scope::new(vec!["ward-a-*".into()]).unwrap();
        s.add_user("ann", "$phc", Role::Admin, &Scope::all()).unwrap();
        s.add_user("bob", "$phc", Role::Viewer, &wing).unwrap();
        assert!(matches!(s.add_user("bob", "x", Role::Admin, &Scope::all()), Err(StoreError::Conflict(_))));
        assert!(matches!(s.add_user("'; DROP TABLE users;--", "x", Role::Admin, &Scope::all()), Err(StoreError::Invalid(_))));
        assert_eq!(s.users().unwrap().len(), 2);

        let (secret, _) = s.create_session("bob", 1.0).unwrap();
        let who = s.session(&secret).unwrap().unwrap();
        assert_eq!((who.name.as_str(), who.role, who.cameras.clone()), ("bob", Role::Viewer, wing));
        // A role change applies to a running session; a new password ends it.
        s.update_user("bob", None, Some(Role::Operator), None).unwrap();
        assert_eq!(s.session(&secret).unwrap().unwrap().role, Role::Operator);
        s.update_user("bob", Some("$new"), None, None).unwrap();
        assert_eq!(s.session(&secret).unwrap(), None);
        let (expired, _) = s.create_session("bob", -1.0).unwrap();
        assert_eq!(s.session(&expired).unwrap(), None);
        assert_eq!(s.session("not a session").unwrap(), None);

        // The last admin stays (through the API).
        assert!(matches!(s.update_user("ann", None, Some(Role::Viewer), None), Err(StoreError::Conflict(_))));
        assert!(matches!(s.remove_user("ann", true), Err(StoreError::Conflict(_))));

        let (token, view) = s.add_token("ha", Role::Viewer, &Scope::all(), Some(30), "ann").unwrap();
        assert!(token.starts_with("haven_") && token.len() > 40);
        assert!(view.expires_at.unwrap() > now() + 29.0 * 86400.0);
        assert_eq!(s.token(&token).unwrap().unwrap().name, "ha");
        assert_eq!(s.token(&format!(" {token}")).unwrap(), None);
        s.remove_token("ha").unwrap();
        assert_eq!(s.token(&token).unwrap(), None);
        assert!(matches!(s.remove_token("ha"), Err(StoreError::NotFound(_))));
        let (old, _) = s.add_token("old", Role::Admin, &Scope::all(), Some(0), "ann").unwrap();
        assert_eq!(s.token(&old).unwrap(), None, "expired");

        s.audit("ann", "DELETE /api/tokens/{name}", "/api/tokens/ha", "204");
        let (total, log) = s.audit_log(10, 0).unwrap();
        assert_eq!((total, log[0].who.as_str()), (1, "ann"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["accounts.db", "accounts.db-wal"] {
                let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{f}");
            }
        }
        // Nothing secret in the file.
        drop(s);
        let bytes = std::fs::read(dir.join("accounts.db")).unwrap();
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
        let _ = std::fs::remove_dir_all(dir);
    }
}
