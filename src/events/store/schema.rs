//! The event store's schema, versioned with `PRAGMA user_version`: one migration per version, in
//! the order the columns came, each applied in its own transaction when the store opens.
//!
//! HAVENs before versioning left `user_version` at 0 and added missing columns one by one, always
//! in this order: such a store is recognised by the columns it has, and its version recorded. A
//! store a newer HAVEN wrote is refused and left as it is.

use std::collections::HashSet;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// One version of the schema: what it brings, and the SQL that brings it.
struct Migration {
    what: &'static str,
    sql: &'static str,
    /// The column it adds: by it a store from before versioning shows it had this version.
    adds_column: Option<&'static str>,
}

/// Version 1: the first HAVEN's table, and the indexes `list` and retention read by.
pub(super) const ORIGINAL: &str = "
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    score REAL NOT NULL,
    bbox TEXT NOT NULL,
    keypoints TEXT NOT NULL,
    clip_path TEXT,
    clip_frames INTEGER,
    clip_fps REAL,
    clip_started_at REAL,
    snapshot_path TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    recording INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_started ON events (started_at);
CREATE INDEX events_camera_started ON events (camera_id, started_at);
";

/// Version `n` is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[Migration] = &[
    Migration { what: "the events table", sql: ORIGINAL, adds_column: None },
    Migration { what: "why a clip failed", sql: "ALTER TABLE events ADD COLUMN clip_error TEXT", adds_column: Some("clip_error") },
    Migration { what: "the model that raised an event", sql: "ALTER TABLE events ADD COLUMN model TEXT", adds_column: Some("model") },
    Migration { what: "the class an event is about", sql: "ALTER TABLE events ADD COLUMN class TEXT", adds_column: Some("class") },
    Migration { what: "the cluster node that raised it", sql: "ALTER TABLE events ADD COLUMN node TEXT", adds_column: Some("node") },
    Migration { what: "when it was raised", sql: "ALTER TABLE events ADD COLUMN raised_at REAL", adds_column: Some("raised_at") },
    Migration { what: "why a fall was raised", sql: "ALTER TABLE events ADD COLUMN reason TEXT", adds_column: Some("reason") },
    // Versioned from here on: no HAVEN before versions had these columns.
    Migration { what: "acknowledgement and long lie", sql: ACK_AND_LONG_LIE, adds_column: None },
    Migration { what: "the zones an event started in (JSON)", sql: "ALTER TABLE events ADD COLUMN zones TEXT", adds_column: None },
    Migration { what: "the notifications' outbox", sql: OUTBOX, adds_column: None },
    Migration { what: "snoozes and escalations to come", sql: SNOOZES_AND_ESCALATIONS, adds_column: None },
];

/// Who acknowledged an event, when and with what note (`POST /api/events/{id}/ack`), and whether a
/// fall became a long lie.
const ACK_AND_LONG_LIE: &str = "
ALTER TABLE events ADD COLUMN acknowledged_at REAL;
ALTER TABLE events ADD COLUMN acknowledged_by TEXT;
ALTER TABLE events ADD COLUMN ack_note TEXT;
ALTER TABLE events ADD COLUMN long_lie INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN long_lie_at REAL;
";

/// The notifications not yet delivered (`crate::notify`): one row per notification and target,
/// sent oldest first per target, deleted once delivered or given up.
const OUTBOX: &str = "
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    change_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX outbox_target ON outbox (target, id);
";

/// What the notifier must remember across a restart: cameras snoozed until when, and falls to
/// escalate when, unless acknowledged first.
const SNOOZES_AND_ESCALATIONS: &str = "
CREATE TABLE snoozes (
    camera_id TEXT PRIMARY KEY,
    until REAL NOT NULL
);
CREATE TABLE escalations (
    event_id INTEGER PRIMARY KEY,
    due REAL NOT NULL
);
";

/// The version this build writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Brings the store to `LATEST`, one migration per transaction. Each transaction reads the version
/// again, so two processes opening one store at once do not apply a migration twice. A store from
/// a newer HAVEN is refused before anything is written.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (version, recorded) = version(&tx)?;
        if version > LATEST {
            return Err(StoreError::NewerSchema { found: version, known: LATEST });
        }
        let Some(next) = MIGRATIONS.get(version as usize) else {
            if !recorded {
                set_version(&tx, version)?;
                tx.commit()?;
            }
            return Ok(());
        };
        log::debug!("event store: schema version {} ({})", version + 1, next.what);
        tx.execute_batch(next.sql)?;
        set_version(&tx, version + 1)?;
        tx.commit()?;
    }
}

/// The store's version, and whether `user_version` records it (a store from before versioning:
/// the version its columns show).
fn version(conn: &Connection) -> Result<(i64, bool), StoreError> {
    let stored: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if stored != 0 {
        return Ok((stored, true));
    }
    let columns = columns(conn)?;
    if columns.is_empty() {
        return Ok((0, true)); // a new store
    }
    let later = MIGRATIONS[1..].iter().take_while(|m| m.adds_column.is_some_and(|c| columns.contains(c))).count();
    Ok((1 + later as i64, false))
}

fn columns(conn: &Connection) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('events')")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(names.collect::<Result<_, _>>()?)
}

fn set_version(conn: &Connection, version: i64) -> Result<(), StoreError> {
    Ok(conn.pragma_update(None, "user_version", version)?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::events::store::tests::{event, TempDir};
    use crate::events::store::EventStore;
    use crate::events::{ClipStatus, EventKind};

    fn user_version(path: &Path) -> i64 {
        Connection::open(path).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
    }

    /// The schema as SQLite keeps it, and the rows: what must not change.
    fn schema_and_rows(path: &Path) -> (Vec<String>, i64) {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").unwrap();
        let sql = stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
        (sql, conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap())
    }

    /// A store an older HAVEN left: the original table, then `later` of the columns added since
    /// (by that HAVEN's "add what is missing" loop), `user_version` 0, and one fall in it.
    fn old_store(path: &Path, later: &[&str]) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(ORIGINAL).unwrap();
        for column in later {
            let m = MIGRATIONS.iter().find(|m| m.adds_column == Some(column)).unwrap();
            conn.execute_batch(m.sql).unwrap();
        }
        conn.execute(
            "INSERT INTO events (camera_id, kind, track_id, started_at, ended_at, score, bbox, keypoints)
             VALUES ('cam1', 'fall', 1, 10.0, 12.0, 0.9, '[0,0,1,1]', '[]')",
            [],
        )
        .unwrap();
    }

    #[test]
    fn a_new_store_is_at_the_latest_version_with_every_column() {
        let dir = TempDir::new("schema-new");
        let path = dir.0.join("events.db");
        let store = EventStore::open(&path).unwrap();
        assert_eq!(user_version(&path), LATEST);
        let columns = columns(&store.conn).unwrap();
        for m in MIGRATIONS.iter().filter_map(|m| m.adds_column) {
            assert!(columns.contains(m), "{m}");
        }
        let fall = event("cam1", EventKind::Fall, 100.0);
        let id = store.insert(&fall, false).unwrap();
        let got = store.get(id).unwrap().unwrap();
        assert_eq!((got.model, got.class, got.raised_at, got.reason), (fall.model, fall.class, fall.raised_at, fall.reason));
        assert_eq!(got.zones, ["hall"]);
    }

    #[test]
    fn a_store_from_the_first_haven_is_upgraded_and_its_events_stay_readable() {
        let dir = TempDir::new("schema-first");
        let path = dir.0.join("events.db");
        old_store(&path, &[]);
        let store = EventStore::open(&path).unwrap();
        assert_eq!(user_version(&path), LATEST);
        let old = store.get(1).unwrap().unwrap();
        assert_eq!((old.camera_id.as_str(), old.kind, old.ended_at, old.bbox), ("cam1", EventKind::Fall, Some(12.0), [0.0, 0.0, 1.0, 1.0]));
        assert_eq!((old.model, old.class, old.node, old.raised_at, old.reason, old.clip_status), (None, None, None, None, None, ClipStatus::None));
        assert!(old.zones.is_empty());
        // The new columns take new events whole.
        let fall = event("cam1", EventKind::Fall, 20.0);
        let id = store.insert(&fall, false).unwrap();
        let got = store.get(id).unwrap().unwrap();
        assert_eq!((got.model, got.class, got.raised_at, got.reason), (fall.model, fall.class, fall.raised_at, fall.reason));
    }

    #[test]
    fn a_store_with_some_later_columns_is_upgraded_from_where_it_was() {
        let dir = TempDir::new("schema-middle");
        let path = dir.0.join("events.db");
        // A store of the HAVEN that named models and classes, before clusters.
        old_store(&path, &["clip_error", "model", "class"]);
        Connection::open(&path).unwrap().execute("UPDATE events SET model = 'pose', class = 'person', clip_error = 'disk full'", []).unwrap();
        assert_eq!(version(&Connection::open(&path).unwrap()).unwrap(), (4, false), "recognised by its columns");
        let store = EventStore::open(&path).unwrap();
        assert_eq!(user_version(&path), LATEST);
        let old = store.get(1).unwrap().unwrap();
        assert_eq!((old.model.as_deref(), old.class.as_deref(), old.clip_error.as_deref()), (Some("pose"), Some("person"), Some("disk full")));
        assert_eq!((old.node, old.raised_at, old.clip_status), (None, None, ClipStatus::Failed));
    }

    #[test]
    fn a_store_from_the_last_haven_before_versions_gets_only_the_versioned_migrations() {
        let dir = TempDir::new("schema-last-unversioned");
        let path = dir.0.join("events.db");
        old_store(&path, &["clip_error", "model", "class", "node", "raised_at", "reason"]);
        assert_eq!(version(&Connection::open(&path).unwrap()).unwrap(), (7, false), "recognised by its columns");
        let (before, rows) = schema_and_rows(&path);
        EventStore::open(&path).unwrap();
        let (mut after, rows_after) = schema_and_rows(&path);
        // Beside the later tables (the notifier's), ...
        after.retain(|sql| !["outbox", "snoozes", "escalations"].iter().any(|table| sql.contains(table)));
        assert_eq!((user_version(&path), rows_after), (LATEST, rows));
        // ... the table gained the later columns; nothing else changed.
        assert_eq!(after.len(), before.len());
        assert!(after[0].contains("acknowledged_at") && !before[0].contains("acknowledged_at"), "{after:?}");
        assert_eq!(after[1..], before[1..]);
    }

    #[test]
    fn a_store_from_before_acknowledgements_is_upgraded_and_its_events_can_be_acknowledged() {
        let dir = TempDir::new("schema-ack");
        let path = dir.0.join("events.db");
        old_store(&path, &["clip_error", "model", "class", "node", "raised_at", "reason"]);
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 7).unwrap();
        let store = EventStore::open(&path).unwrap();
        assert_eq!(user_version(&path), LATEST);
        let old = store.get(1).unwrap().unwrap();
        assert_eq!((old.acknowledged_at, old.acknowledged_by, old.ack_note, old.long_lie, old.long_lie_at), (None, None, None, false, None));
        let (acked, now_acked) = store.acknowledge(1, 50.0, "Ann", Some("seen")).unwrap().unwrap();
        assert!(now_acked);
        assert_eq!((acked.acknowledged_at, acked.acknowledged_by.as_deref(), acked.ack_note.as_deref()), (Some(50.0), Some("Ann"), Some("seen")));
        let (again, now_acked) = store.acknowledge(1, 60.0, "Bob", None).unwrap().unwrap();
        assert!(!now_acked, "the first acknowledgement is kept");
        assert_eq!(again, acked);
        assert!(store.acknowledge(2, 60.0, "Bob", None).unwrap().is_none());
        store.set_long_lie(1, 70.0).unwrap();
        store.set_long_lie(1, 80.0).unwrap();
        let got = store.get(1).unwrap().unwrap();
        assert_eq!((got.long_lie, got.long_lie_at), (true, Some(70.0)));
    }

    #[test]
    fn opening_a_store_twice_changes_nothing_the_second_time() {
        let dir = TempDir::new("schema-twice");
        let path = dir.0.join("events.db");
        old_store(&path, &["clip_error"]);
        drop(EventStore::open(&path).unwrap());
        let once = (user_version(&path), schema_and_rows(&path));
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn).unwrap();
        drop(conn);
        drop(EventStore::open(&path).unwrap());
        assert_eq!((user_version(&path), schema_and_rows(&path)), once);
        assert_eq!(once.0, LATEST);
    }

    #[test]
    fn a_store_from_a_newer_haven_is_refused_and_left_as_it_is() {
        let dir = TempDir::new("schema-newer");
        let path = dir.0.join("events.db");
        let store = EventStore::open(&path).unwrap();
        store.insert(&event("cam1", EventKind::Fall, 100.0), false).unwrap();
        drop(store);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1).unwrap();
        conn.execute_batch("ALTER TABLE events ADD COLUMN tomorrow TEXT").unwrap();
        drop(conn);
        let (before, bytes) = (schema_and_rows(&path), std::fs::read(&path).unwrap());
        let err = EventStore::open(&path).err().expect("refused");
        assert!(matches!(err, StoreError::NewerSchema { found, known: LATEST } if found == LATEST + 1), "{err:?}");
        assert!(err.to_string().contains("newer"), "{err}");
        assert_eq!((user_version(&path), schema_and_rows(&path)), (LATEST + 1, before));
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "not a byte changed");
    }
}
