//! Accounts and tokens shared by the nodes of a cluster. Each node keeps its own accounts file; its
//! changes (through the API or `haven user|token`, noted by the file's triggers in `replicate`) are
//! put into a key-value bucket as whole rows, and every node applies what the bucket holds, so
//! all converge on the bucket's last value of each key. Sessions and the audit log stay per node
//! (a session is the browser's with one node; each node logs what it was asked).
//!
//! This side is the store's: what to share ([`AccountStore::to_share`]), that it was shared
//! ([`AccountStore::shared_up_to`]) and applying another node's ([`AccountStore::apply_shared`]),
//! which notes nothing to share again (no echo). The bucket's side is `cluster::accounts`.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::store::{AccountStore, StoreError};

/// One row as the bucket holds it: the whole row, password hash and token hash included (the
/// bucket is the cluster's own, as the accounts file is the node's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SharedRow {
    User { name: String, password: String, role: String, cameras: String, created_at: f64 },
    Token { name: String, hash: String, role: String, cameras: String, created_at: f64, expires_at: Option<f64>, created_by: String },
}

/// A key of the bucket: `user.<hex name>` or `token.<hex name>` (hex: a name's dots would be
/// subject separators).
pub fn key(kind: &str, name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{kind}.{hex}")
}

/// The kind and name of a key made by [`key`].
pub fn parse_key(key: &str) -> Option<(&str, String)> {
    let (kind, hex) = key.split_once('.')?;
    if !matches!(kind, "user" | "token") || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>()?;
    Some((kind, String::from_utf8(bytes).ok()?))
}

/// A change to share: the key, and the row as it is now (`None`: removed).
pub type Change = (String, Option<SharedRow>);

impl AccountStore {
    /// What is still to share, one change per key (the row as it is now), and the last note it
    /// covers (for [`AccountStore::shared_up_to`]).
    pub fn to_share(&self) -> Result<(Vec<Change>, i64), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT kind, name, MAX(seq) FROM replicate GROUP BY kind, name ORDER BY MAX(seq)")?;
        let noted = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?.collect::<Result<Vec<_>, _>>()?;
        let upto = noted.iter().map(|n| n.2).max().unwrap_or(0);
        let mut changes = Vec::with_capacity(noted.len());
        for (kind, name, _) in noted {
            let row = match kind.as_str() {
                "user" => conn
                    .query_row("SELECT password, role, cameras, created_at FROM users WHERE name = ?1", [&name], |r| {
                        Ok(SharedRow::User { name: name.clone(), password: r.get(0)?, role: r.get(1)?, cameras: r.get(2)?, created_at: r.get(3)? })
                    })
                    .optional()?,
                _ => conn
                    .query_row("SELECT hash, role, cameras, created_at, expires_at, created_by FROM tokens WHERE name = ?1", [&name], |r| {
                        Ok(SharedRow::Token { name: name.clone(), hash: r.get(0)?, role: r.get(1)?, cameras: r.get(2)?, created_at: r.get(3)?, expires_at: r.get(4)?, created_by: r.get(5)? })
                    })
                    .optional()?,
            };
            changes.push((key(&kind, &name), row));
        }
        Ok((changes, upto))
    }

    /// The notes up to `upto` are shared: forget them (later ones stay).
    pub fn shared_up_to(&self, upto: i64) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM replicate WHERE seq <= ?1", [upto])?;
        Ok(())
    }

    /// Applies another node's change of `key` (`None`: removed) unless the row is that already;
    /// a new password or a removed account ends the account's sessions here. Whether it changed
    /// anything. What it changes is not noted to share again.
    pub fn apply_shared(&self, key: &str, row: Option<&SharedRow>) -> Result<bool, StoreError> {
        let Some((kind, name)) = parse_key(key) else { return Err(StoreError::Invalid(format!("not an accounts key: {key:?}"))) };
        let mut conn = self.conn();
        // Immediate: no other process (`haven user …`) writes between the change and the removal
        // of the notes it made.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM replicate", [], |r| r.get(0))?;
        let changed = match (kind, row) {
            ("user", Some(SharedRow::User { name: n, password, role, cameras, created_at })) if *n == name => {
                let old: Option<String> = tx.query_row("SELECT password FROM users WHERE name = ?1", [&name], |r| r.get(0)).optional()?;
                let n = tx.execute(
                    "INSERT INTO users (name, password, role, cameras, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (name) DO UPDATE SET password = excluded.password, role = excluded.role, cameras = excluded.cameras
                     WHERE password IS NOT excluded.password OR role IS NOT excluded.role OR cameras IS NOT excluded.cameras",
                    params![name, password, role, cameras, created_at],
                )?;
                if old.is_some_and(|old| old != *password) {
                    tx.execute("DELETE FROM sessions WHERE user = ?1", [&name])?;
                }
                n > 0
            }
            ("token", Some(SharedRow::Token { name: n, hash, role, cameras, created_at, expires_at, created_by })) if *n == name => {
                tx.execute(
                    "INSERT INTO tokens (name, hash, role, cameras, created_at, expires_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, role = excluded.role, cameras = excluded.cameras, expires_at = excluded.expires_at
                     WHERE hash IS NOT excluded.hash OR role IS NOT excluded.role OR cameras IS NOT excluded.cameras OR expires_at IS NOT excluded.expires_at",
                    params![name, hash, role, cameras, created_at, expires_at, created_by],
                )? > 0
            }
            ("user", None) => {
                tx.execute("DELETE FROM sessions WHERE user = ?1", [&name])?;
                tx.execute("DELETE FROM users WHERE name = ?1", [&name])? > 0
            }
            ("token", None) => tx.execute("DELETE FROM tokens WHERE name = ?1", [&name])? > 0,
            _ => return Err(StoreError::Invalid(format!("{key:?} holds another kind of row"))),
        };
        tx.execute("DELETE FROM replicate WHERE seq > ?1", [before])?;
        tx.commit()?;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{password, Role, Scope};

    fn store(dir: &std::path::Path) -> AccountStore {
        AccountStore::open(dir).unwrap()
    }

    /// Moves what `from` has to share into `to`, as the bucket would; how many rows changed there.
    fn share(from: &AccountStore, to: &AccountStore) -> usize {
        let (changes, upto) = from.to_share().unwrap();
        from.shared_up_to(upto).unwrap();
        changes.iter().filter(|(k, row)| to.apply_shared(k, row.as_ref()).unwrap()).count()
    }

    #[test]
    fn keys_survive_any_name() {
        for name in ["ann", "a.b..c", "ward-1_x"] {
            assert_eq!(parse_key(&key("user", name)), Some(("user", name.to_string())));
        }
        assert_eq!(parse_key("session.616e6e"), None);
        assert_eq!(parse_key("user.6"), None);
    }

    #[test]
    fn two_nodes_converge_and_applying_is_not_shared_again() {
        let dir = std::env::temp_dir().join(format!("haven-shared-{}", std::process::id()));
        let (a, b) = (store(&dir.join("a")), store(&dir.join("b")));
        let phc = password::hash("correct horse battery").unwrap();
        a.add_user("ann", &phc, Role::Admin, &Scope::all()).unwrap();
        let (secret, _) = a.add_token("ha", Role::Viewer, &Scope::new(vec!["door".into()]).unwrap(), None, "ann").unwrap();
        assert_eq!(share(&a, &b), 2);
        assert_eq!(b.user("ann").unwrap().unwrap().1, phc);
        assert_eq!(b.token(&secret).unwrap().unwrap().name, "ha");
        // b applied, and has nothing of its own to share: no echo.
        assert!(b.to_share().unwrap().0.is_empty());
        assert!(a.to_share().unwrap().0.is_empty());

        // A new password on b ends ann's sessions on a; a token revoked on b stops on a.
        let (session, _) = a.create_session("ann", 1.0).unwrap();
        b.update_user("ann", Some(&password::hash("another one entirely").unwrap()), None, None).unwrap();
        b.remove_token("ha").unwrap();
        assert_eq!(share(&b, &a), 2);
        assert!(a.session(&session).unwrap().is_none());
        assert!(a.token(&secret).unwrap().is_none());
        // The same change again changes nothing.
        assert!(!a.apply_shared(&key("token", "ha"), None).unwrap());

        // Removal; and a key holding another kind's row is refused.
        a.remove_user("ann", false).unwrap();
        assert_eq!(share(&a, &b), 1);
        assert!(!b.has_users().unwrap());
        let row = SharedRow::Token { name: "x".into(), hash: "h".into(), role: "viewer".into(), cameras: "[]".into(), created_at: 0.0, expires_at: None, created_by: "ann".into() };
        assert!(b.apply_shared(&key("user", "x"), Some(&row)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accounts_made_before_the_cluster_are_shared_when_a_node_first_joins() {
        let dir = std::env::temp_dir().join(format!("haven-shared-old-{}", std::process::id()));
        let old = store(&dir);
        old.add_user("ann", "phc", Role::Admin, &Scope::all()).unwrap();
        old.shared_up_to(i64::MAX).unwrap();
        // As version 1 left it: the notes table did not exist; the migration notes every row.
        {
            let conn = old.conn();
            let triggers = ["users_added", "users_changed", "users_removed", "tokens_added", "tokens_changed", "tokens_removed"];
            let drops: String = triggers.iter().map(|t| format!("DROP TRIGGER {t};")).collect();
            conn.execute_batch(&format!("{drops} DROP TABLE replicate; PRAGMA user_version = 1;")).unwrap();
        }
        drop(old);
        let reopened = store(&dir);
        let (changes, _) = reopened.to_share().unwrap();
        assert_eq!(changes.len(), 1);
        assert!(matches!(&changes[0].1, Some(SharedRow::User { name, .. }) if name == "ann"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
