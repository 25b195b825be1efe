//! The outbox: notifications not yet delivered, one row per notification and target, in the event
//! store's SQLite (table `outbox`, created by the store's schema). A row is written before anything
//! is sent and deleted once delivered or given up, so a restart (a kill -9 included) resumes where
//! the last process stopped: a row delivered but not yet deleted is sent again (at least once).
//! Beside it, what else the notifier must not forget in a restart: snoozes and escalations to come.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::target::ChangeType;

/// The first retry waits this long, each next one twice as long...
pub const FIRST_RETRY_SECS: f64 = 1.0;
/// ...up to this.
pub const MAX_RETRY_SECS: f64 = 300.0;

/// How long to wait after the `attempts`-th failed attempt (1-based): 1 s doubling to 5 min, spread
/// by `jitter` (0..1) over ±25 % so that targets failing together do not retry in lockstep.
pub fn backoff(attempts: u32, jitter: f64) -> f64 {
    let base = FIRST_RETRY_SECS * 2f64.powi(attempts.saturating_sub(1).min(20) as i32);
    (base.min(MAX_RETRY_SECS) * (0.75 + 0.5 * jitter.clamp(0.0, 1.0))).min(MAX_RETRY_SECS)
}

/// A number in 0..1 that differs from call to call (enough for retry jitter).
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    (nanos.wrapping_mul(2654435761) % 1000) as f64 / 1000.0
}

/// One pending notification of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub event_id: i64,
    pub payload: String,
    pub created_at: f64,
    pub attempts: u32,
    pub next_attempt_at: f64,
}

/// A connection to the store's `outbox` table. The event path and the notify thread each hold their
/// own, so that neither waits for the other's statement to be prepared.
pub struct Outbox {
    conn: Mutex<Connection>,
}

impl Outbox {
    /// Opens the store's database (its schema already brought up to date by `EventStore::open`).
    pub fn open(db: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(db)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one notification for each of `targets`, in one transaction.
    pub fn push(&self, targets: &[&str], event_id: i64, change: ChangeType, payload: &str, now: f64) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO outbox (target, event_id, change_type, payload, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )?;
            for target in targets {
                insert.execute(params![target, event_id, change.as_str(), payload, now])?;
            }
        }
        tx.commit()
    }

    /// The oldest pending row of `target`: the only one it may send now (order per target).
    pub fn next(&self, target: &str) -> rusqlite::Result<Option<Row>> {
        self.conn()
            .prepare_cached("SELECT id, event_id, payload, created_at, attempts, next_attempt_at FROM outbox WHERE target = ?1 ORDER BY id LIMIT 1")?
            .query_row([target], |r| {
                Ok(Row { id: r.get(0)?, event_id: r.get(1)?, payload: r.get(2)?, created_at: r.get(3)?, attempts: r.get(4)?, next_attempt_at: r.get(5)? })
            })
            .optional()
    }

    /// Delivered or given up: gone.
    pub fn remove(&self, id: i64) -> rusqlite::Result<()> {
        self.conn().execute("DELETE FROM outbox WHERE id = ?1", [id]).map(drop)
    }

    /// A failed attempt: the next one not before `next_attempt_at`.
    pub fn failed(&self, id: i64, attempts: u32, next_attempt_at: f64, error: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute("UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1", params![id, attempts, next_attempt_at, error])
            .map(drop)
    }

    /// `target` is reachable again: its rows waiting out a backoff are due now.
    pub fn retry_now(&self, target: &str, now: f64) -> rusqlite::Result<usize> {
        self.conn().execute("UPDATE outbox SET next_attempt_at = ?2 WHERE target = ?1 AND next_attempt_at > ?2", params![target, now])
    }

    /// Snoozes `camera` until `until` (unix seconds); `None` ends its snooze.
    pub fn save_snooze(&self, camera: &str, until: Option<f64>) -> rusqlite::Result<()> {
        let conn = self.conn();
        match until {
            Some(until) => conn.execute("INSERT OR REPLACE INTO snoozes (camera_id, until) VALUES (?1, ?2)", params![camera, until]),
            None => conn.execute("DELETE FROM snoozes WHERE camera_id = ?1", [camera]),
        }
        .map(drop)
    }

    /// The snoozes still running at `now` (those past are deleted).
    pub fn snoozes(&self, now: f64) -> rusqlite::Result<Vec<(String, f64)>> {
        let conn = self.conn();
        conn.execute("DELETE FROM snoozes WHERE until <= ?1", [now])?;
        let mut stmt = conn.prepare("SELECT camera_id, until FROM snoozes ORDER BY camera_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// A fall to escalate at `due` unless acknowledged first.
    pub fn add_escalation(&self, event_id: i64, due: f64) -> rusqlite::Result<()> {
        self.conn().execute("INSERT OR REPLACE INTO escalations (event_id, due) VALUES (?1, ?2)", params![event_id, due]).map(drop)
    }

    /// Escalated, or found acknowledged: forgotten.
    pub fn remove_escalations(&self, event_ids: &[i64]) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in event_ids {
            tx.execute("DELETE FROM escalations WHERE event_id = ?1", [id])?;
        }
        tx.commit()
    }

    /// Every escalation to come, as (due, event id), soonest first.
    pub fn escalations(&self) -> rusqlite::Result<Vec<(f64, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT due, event_id FROM escalations ORDER BY due, event_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Rows pending for `target`.
    pub fn pending(&self, target: &str) -> rusqlite::Result<u64> {
        self.conn().query_row("SELECT COUNT(*) FROM outbox WHERE target = ?1", [target], |r| r.get::<_, i64>(0)).map(|n| n as u64)
    }

    /// Targets with pending rows that are not among `known` (renamed or removed from the settings):
    /// their rows stay, and are sent if the target comes back under its name.
    pub fn orphans(&self, known: &[&str]) -> rusqlite::Result<Vec<(String, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT target, COUNT(*) FROM outbox GROUP BY target ORDER BY target")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?.into_iter().filter(|(t, _)| !known.contains(&t.as_str())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::store::tests::TempDir;
    use crate::events::EventStore;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes_with_jitter() {
        let plain: Vec<f64> = (1..=12).map(|n| backoff(n, 0.5)).collect();
        assert_eq!(plain, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0, 300.0]);
        assert_eq!((backoff(1, 0.0), backoff(1, 1.0)), (0.75, 1.25));
        assert_eq!(backoff(1000, 1.0), MAX_RETRY_SECS, "never more than five minutes");
        assert!((0..100).map(|_| jitter()).all(|j| (0.0..1.0).contains(&j)));
    }

    #[test]
    fn rows_come_oldest_first_per_target_and_a_failing_one_blocks_only_its_own_target() {
        let dir = TempDir::new("outbox-order");
        let db = dir.0.join("events.db");
        drop(EventStore::open(&db).unwrap());
        let outbox = Outbox::open(&db).unwrap();
        for (i, change) in [ChangeType::New, ChangeType::Update, ChangeType::End].into_iter().enumerate() {
            outbox.push(&["a", "b"], 7, change, &format!("{{\"n\":{i}}}"), 100.0 + i as f64).unwrap();
        }
        let first_a = outbox.next("a").unwrap().unwrap();
        assert_eq!((first_a.payload.as_str(), first_a.attempts), ("{\"n\":0}", 0));
        // a's first row fails: it stays first for a, with its attempt counted; b goes on.
        outbox.failed(first_a.id, 1, 200.0, "answered 500").unwrap();
        let again = outbox.next("a").unwrap().unwrap();
        assert_eq!((again.id, again.attempts, again.next_attempt_at), (first_a.id, 1, 200.0));
        let mut b = Vec::new();
        while let Some(row) = outbox.next("b").unwrap() {
            b.push(row.payload.clone());
            outbox.remove(row.id).unwrap();
        }
        assert_eq!(b, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
        assert_eq!((outbox.pending("a").unwrap(), outbox.pending("b").unwrap()), (3, 0));
        assert_eq!(outbox.orphans(&["b"]).unwrap(), [("a".to_string(), 3)]);
        // Another connection (a restart) sees the same rows, in the same order.
        drop(outbox);
        let reopened = Outbox::open(&db).unwrap();
        assert_eq!(reopened.next("a").unwrap().unwrap().id, first_a.id);
    }

    #[test]
    fn snoozes_and_escalations_outlive_the_connection_and_past_snoozes_are_dropped() {
        let dir = TempDir::new("outbox-snoozes");
        let db = dir.0.join("events.db");
        drop(EventStore::open(&db).unwrap());
        let outbox = Outbox::open(&db).unwrap();
        outbox.save_snooze("hall", Some(500.0)).unwrap();
        outbox.save_snooze("door", Some(50.0)).unwrap();
        outbox.save_snooze("hall", Some(600.0)).unwrap();
        outbox.add_escalation(9, 300.0).unwrap();
        outbox.add_escalation(4, 200.0).unwrap();
        drop(outbox);
        let reopened = Outbox::open(&db).unwrap();
        assert_eq!(reopened.snoozes(100.0).unwrap(), [("hall".to_string(), 600.0)], "door's snooze had ended");
        assert_eq!(reopened.escalations().unwrap(), [(200.0, 4), (300.0, 9)]);
        reopened.remove_escalations(&[4]).unwrap();
        reopened.save_snooze("hall", None).unwrap();
        assert_eq!((reopened.snoozes(100.0).unwrap(), reopened.escalations().unwrap()), (vec![], vec![(300.0, 9)]));
    }
}
