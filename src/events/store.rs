//! Events in SQLite (WAL: a crash loses at most the clip being written, never the database), with
//! their clip and snapshot files under the same directory, and retention that removes rows and files
//! together.
//!
//! Paths in the database are relative to the directory holding it. A clip or snapshot path is set
//! only once its file is complete, so the database never points at a partial file; retention
//! deletes rows first and files second, and `sweep_orphans` removes files no row refers to (left by
//! a crash between the two, or by a clip interrupted by one).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{ClipStatus, Event, EventKind, EventPhase};

mod schema;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("event store: {0}")]
    Io(#[from] std::io::Error),
    #[error("event store: {0}")]
    Json(#[from] serde_json::Error),
    /// A newer HAVEN wrote the store: this one does not know its schema and leaves it as it is.
    #[error("event store: schema version {found} is newer than this HAVEN knows ({known}): written by a newer HAVEN, left unchanged")]
    NewerSchema { found: i64, known: i64 },
}

/// `GET /api/events` filters; all optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub camera_id: Option<String>,
    /// Only events of cameras matching one of these patterns (`*` any run, `?` one character: an
    /// account's camera scope; SQLite's GLOB, case-sensitive); empty: every camera.
    pub camera_globs: Vec<String>,
    pub kind: Option<EventKind>,
    /// Only events about this class ("person", "car", …).
    pub class: Option<String>,
    /// Only events that started in this zone of their camera.
    pub zone: Option<String>,
    /// Events that started at or after this (unix seconds)...
    pub since: Option<f64>,
    /// ...and at or before this.
    pub until: Option<f64>,
    /// At most this many, newest first (default 100)...
    pub limit: Option<usize>,
    /// ...after skipping this many (paging; default 0).
    pub offset: Option<usize>,
}

/// A finished clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipInfo {
    /// Relative to the store's directory.
    pub path: String,
    pub frames: u32,
    pub fps: f32,
    /// Time of its first frame (unix seconds).
    pub started_at: f64,
    pub bytes: u64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionReport {
    pub events: usize,
    pub files: usize,
    pub bytes: u64,
}

pub struct EventStore {
    conn: Connection,
    root: PathBuf,
    /// On a cluster node: its name (stored with each event it raises) and the first id of its own
    /// range, so that ids are the same on every node (`set_cluster`).
    cluster: Option<(String, i64)>,
}

/// Ids a cluster node gives its events: `base + 1 ..< base + ID_RANGE`.
pub const ID_RANGE: i64 = 1 << 32;

const COLUMNS: &str = "id, camera_id, kind, track_id, started_at, ended_at, score, bbox, keypoints, clip_path, \
                       clip_frames, clip_fps, clip_started_at, snapshot_path, clip_error, recording, model, class, node, \
                       raised_at, reason, acknowledged_at, acknowledged_by, ack_note, long_lie, long_lie_at, zones";

/// What a clip left by a run that stopped before finishing it is marked with.
pub const CLIP_INTERRUPTED: &str = "the server stopped before the clip was complete";

fn from_row(row: &Row) -> rusqlite::Result<Event> {
    let kind: String = row.get(2)?;
    let bbox: String = row.get(7)?;
    let keypoints: String = row.get(8)?;
    let ended_at: Option<f64> = row.get(5)?;
    let clip_path: Option<String> = row.get(9)?;
    let clip_error: Option<String> = row.get(14)?;
    // Derived, the one way: a complete file, else a kept reason, else a recording in progress.
    let clip_status = match (&clip_path, &clip_error, row.get::<_, i64>(15)? != 0) {
        (Some(_), _, _) => ClipStatus::Ready,
        (None, Some(_), _) => ClipStatus::Failed,
        (None, None, true) => ClipStatus::Recording,
        (None, None, false) => ClipStatus::None,
    };
    Ok(Event {
        id: Some(row.get(0)?),
        camera_id: row.get(1)?,
        kind: EventKind::parse(&kind).unwrap_or(EventKind::PersonDetected),
        phase: if ended_at.is_some() { EventPhase::End } else { EventPhase::Start },
        track_id: row.get::<_, i64>(3)? as u64,
        model: row.get(16)?,
        class: row.get(17)?,
        started_at: row.get(4)?,
        ended_at,
        score: row.get::<_, f64>(6)? as f32,
        bbox: serde_json::from_str(&bbox).unwrap_or_default(),
        keypoints: serde_json::from_str(&keypoints).unwrap_or_default(),
        clip_path,
        clip_frames: row.get::<_, Option<i64>>(10)?.map(|n| n as u32),
        clip_fps: row.get::<_, Option<f64>>(11)?.map(|f| f as f32),
        clip_started_at: row.get(12)?,
        snapshot_path: row.get(13)?,
        clip_error,
        clip_status,
        node: row.get(18)?,
        raised_at: row.get(19)?,
        reason: row.get::<_, Option<String>>(20)?.and_then(|r| serde_json::from_str(&r).ok()),
        acknowledged_at: row.get(21)?,
        acknowledged_by: row.get(22)?,
        ack_note: row.get(23)?,
        long_lie: row.get::<_, i64>(24)? != 0,
        long_lie_at: row.get(25)?,
        zones: row.get::<_, Option<String>>(26)?.and_then(|z| serde_json::from_str(&z).ok()).unwrap_or_default(),
    })
}

fn reason_json(ev: &Event) -> Result<Option<String>, serde_json::Error> {
    ev.reason.as_ref().map(serde_json::to_string).transpose()
}

/// The SQL condition (with numbered parameters) for `filter`'s camera, kind and time range.
fn where_clause(filter: &EventFilter) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = String::from("1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(c) = &filter.camera_id {
        args.push(c.clone().into());
        sql += &format!(" AND camera_id = ?{}", args.len());
    }
    if !filter.camera_globs.is_empty() {
        let mut any = Vec::with_capacity(filter.camera_globs.len());
        for g in &filter.camera_globs {
            args.push(g.clone().into());
            any.push(format!("camera_id GLOB ?{}", args.len()));
        }
        sql += &format!(" AND ({})", any.join(" OR "));
    }
    if let Some(k) = filter.kind {
        args.push(k.as_str().to_string().into());
        sql += &format!(" AND kind = ?{}", args.len());
    }
    if let Some(c) = &filter.class {
        args.push(c.clone().into());
        sql += &format!(" AND class = ?{}", args.len());
    }
    if let Some(z) = &filter.zone {
        args.push(z.clone().into());
        sql += &format!(" AND EXISTS (SELECT 1 FROM json_each(events.zones) WHERE json_each.value = ?{})", args.len());
    }
    if let Some(s) = filter.since {
        args.push(s.into());
        sql += &format!(" AND started_at >= ?{}", args.len());
    }
    if let Some(u) = filter.until {
        args.push(u.into());
        sql += &format!(" AND started_at <= ?{}", args.len());
    }
    (sql, args)
}

impl EventStore {
    /// Opens (creating it and its directory if need be) the database at `path`. Events a previous
    /// run left open (it crashed, or was killed) are closed at their start time, and clips it was
    /// writing are forgotten (their partial files go with `sweep_orphans`).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let root = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&root)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Before anything is written: a store from a newer HAVEN is refused as it is.
        schema::migrate(&mut conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let interrupted = conn.execute("UPDATE events SET ended_at = started_at WHERE ended_at IS NULL", [])?;
        // Their clips will not come: say so (the partial files go with `sweep_orphans`).
        conn.execute(
            "UPDATE events SET clip_error = COALESCE(clip_error, ?1), recording = 0 WHERE recording != 0 AND clip_path IS NULL",
            [CLIP_INTERRUPTED],
        )?;
        conn.execute("UPDATE events SET recording = 0 WHERE recording != 0", [])?;
        if interrupted > 0 {
            log::warn!("{}: closed {interrupted} events left open by the previous run", path.display());
        }
        Ok(Self { conn, root, cluster: None })
    }

    /// A cluster node's store: its events carry `node` and take ids from `base` on (a range of
    /// `ID_RANGE` per node, so that an event has the same id on every node that lists it).
    pub fn set_cluster(&mut self, node: &str, base: i64) {
        self.cluster = Some((node.to_string(), base));
    }

    /// Stores (or updates) an event another node raised, as its latest message says: ends and
    /// files are never taken back by an older message. Its files stay on the node that wrote them
    /// (and in the cluster's media store), so they count no bytes here. `false` if `ev` has no id
    /// or its id belongs to an event of another node (two nodes' ranges met: not overwritten).
    pub fn upsert_remote(&self, ev: &Event) -> Result<bool, StoreError> {
        let Some(id) = ev.id else { return Ok(false) };
        let n = self.conn.execute(
            "INSERT INTO events (id, camera_id, kind, track_id, started_at, ended_at, score, bbox, keypoints, clip_path,
                 clip_frames, clip_fps, clip_started_at, snapshot_path, clip_error, recording, node, model, class, bytes,
                 raised_at, reason, acknowledged_at, acknowledged_by, ack_note, long_lie, long_lie_at, zones)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, 0, ?20, ?21,
                     ?22, ?23, ?24, ?25, ?26, ?27)
             ON CONFLICT(id) DO UPDATE SET
                 ended_at = COALESCE(events.ended_at, excluded.ended_at),
                 clip_path = COALESCE(excluded.clip_path, events.clip_path),
                 clip_frames = COALESCE(excluded.clip_frames, events.clip_frames),
                 clip_fps = COALESCE(excluded.clip_fps, events.clip_fps),
                 clip_started_at = COALESCE(excluded.clip_started_at, events.clip_started_at),
                 snapshot_path = COALESCE(excluded.snapshot_path, events.snapshot_path),
                 clip_error = COALESCE(excluded.clip_error, events.clip_error),
                 recording = CASE WHEN events.clip_path IS NOT NULL OR events.clip_error IS NOT NULL THEN 0 ELSE excluded.recording END,
                 acknowledged_by = CASE WHEN events.acknowledged_at IS NULL THEN excluded.acknowledged_by ELSE events.acknowledged_by END,
                 ack_note = CASE WHEN events.acknowledged_at IS NULL THEN excluded.ack_note ELSE events.ack_note END,
                 acknowledged_at = COALESCE(events.acknowledged_at, excluded.acknowledged_at),
                 long_lie = MAX(events.long_lie, excluded.long_lie),
                 long_lie_at = COALESCE(events.long_lie_at, excluded.long_lie_at)
             WHERE events.node IS excluded.node",
            params![
                id,
                ev.camera_id,
                ev.kind.as_str(),
                ev.track_id as i64,
                ev.started_at,
                ev.ended_at,
                ev.score as f64,
                serde_json::to_string(&ev.bbox)?,
                serde_json::to_string(&ev.keypoints)?,
                ev.clip_path,
                ev.clip_frames.map(|n| n as i64),
                ev.clip_fps.map(|f| f as f64),
                ev.clip_started_at,
                ev.snapshot_path,
                ev.clip_error,
                (ev.clip_status == ClipStatus::Recording) as i64,
                ev.node,
                ev.model,
                ev.class,
                ev.raised_at,
                reason_json(ev)?,
                ev.acknowledged_at,
                ev.acknowledged_by,
                ev.ack_note,
                ev.long_lie as i64,
                ev.long_lie_at,
                serde_json::to_string(&ev.zones)?,
            ],
        )?;
        Ok(n == 1)
    }

    /// The directory clip and snapshot paths are relative to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a stored relative path names.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Stores a new event and returns its id. `recording` marks it as having a clip in progress
    /// (retention leaves it alone until `set_clip` or `set_clip_failed`).
    pub fn insert(&self, ev: &Event, recording: bool) -> Result<i64, StoreError> {
        // A cluster node takes the next id of its own range; a single server lets SQLite pick (NULL).
        let (node, base) = match &self.cluster {
            Some((node, base)) => (Some(node.as_str()), Some(*base)),
            None => (None, None),
        };
        self.conn.execute(
            "INSERT INTO events (id, camera_id, kind, track_id, started_at, ended_at, score, bbox, keypoints, recording,
                 node, model, class, raised_at, reason, zones)
             VALUES (CASE WHEN ?10 IS NULL THEN NULL
                          ELSE (SELECT COALESCE(MAX(id), ?10) + 1 FROM events WHERE id > ?10 AND id < ?10 + ?12) END,
                     ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?11, ?13, ?14, ?15, ?16, ?17)",
            params![
                ev.camera_id,
                ev.kind.as_str(),
                ev.track_id as i64,
                ev.started_at,
                ev.ended_at,
                ev.score as f64,
                serde_json::to_string(&ev.bbox)?,
                serde_json::to_string(&ev.keypoints)?,
                recording as i64,
                base,
                node,
                ID_RANGE,
                ev.model,
                ev.class,
                ev.raised_at,
                reason_json(ev)?,
                serde_json::to_string(&ev.zones)?,
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn set_ended(&self, id: i64, ended_at: f64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE events SET ended_at = ?2 WHERE id = ?1", params![id, ended_at])?;
        Ok(())
    }

    /// Records who acknowledged event `id`, when, and their note, unless it was acknowledged
    /// already (the first acknowledgement is kept). `None` if there is no such event; else the
    /// event as stored now and whether this call acknowledged it.
    pub fn acknowledge(&self, id: i64, at: f64, by: &str, note: Option<&str>) -> Result<Option<(Event, bool)>, StoreError> {
        let n = self.conn.execute(
            "UPDATE events SET acknowledged_at = ?2, acknowledged_by = ?3, ack_note = ?4 WHERE id = ?1 AND acknowledged_at IS NULL",
            params![id, at, by, note],
        )?;
        Ok(self.get(id)?.map(|ev| (ev, n == 1)))
    }

    /// Marks a fall as a long lie from `at` on (once).
    pub fn set_long_lie(&self, id: i64, at: f64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE events SET long_lie = 1, long_lie_at = COALESCE(long_lie_at, ?2) WHERE id = ?1", params![id, at])?;
        Ok(())
    }

    /// Records a finished clip (its file complete) and ends the recording.
    pub fn set_clip(&self, id: i64, clip: &ClipInfo) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE events SET clip_path = ?2, clip_frames = ?3, clip_fps = ?4, clip_started_at = ?5,
                 bytes = bytes + ?6, recording = 0 WHERE id = ?1",
            params![id, clip.path, clip.frames as i64, clip.fps as f64, clip.started_at, clip.bytes as i64],
        )?;
        Ok(n == 1)
    }

    /// Ends the recording without a clip, keeping why.
    pub fn set_clip_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn.execute("UPDATE events SET clip_error = ?2, recording = 0 WHERE id = ?1", params![id, error])?;
        Ok(())
    }

    /// Records a written snapshot; `false` if the event is gone (the caller then deletes the file).
    pub fn set_snapshot(&self, id: i64, path: &str, bytes: u64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE events SET snapshot_path = ?2, bytes = bytes + ?3 WHERE id = ?1",
            params![id, path, bytes as i64],
        )?;
        Ok(n == 1)
    }

    pub fn get(&self, id: i64) -> Result<Option<Event>, StoreError> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1"), [id], from_row)
            .optional()?)
    }

    /// Newest first.
    /// The events `filter` selects, newest first, `filter.limit` of them from `filter.offset` on.
    pub fn list(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let (conditions, mut args) = where_clause(filter);
        args.push((filter.limit.unwrap_or(100) as i64).into());
        args.push((filter.offset.unwrap_or(0) as i64).into());
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE {conditions} ORDER BY started_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many events `filter` selects in all (its limit and offset aside).
    pub fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let (conditions, args) = where_clause(filter);
        let sql = format!("SELECT COUNT(*) FROM events WHERE {conditions}");
        Ok(self.conn.query_row(&sql, rusqlite::params_from_iter(args), |r| r.get::<_, i64>(0))? as u64)
    }

    /// Total bytes of the clip and snapshot files the store refers to.
    pub fn total_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row("SELECT COALESCE(SUM(bytes), 0) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Deletes, oldest first, events that started before `now - max_age_secs`, then as many more as
    /// needed to bring the files' total to `max_bytes` or under; then their files. Events still
    /// open or still being recorded are kept.
    pub fn apply_retention(&mut self, now: f64, max_age_secs: Option<f64>, max_bytes: Option<u64>) -> Result<RetentionReport, StoreError> {
        let tx = self.conn.transaction()?;
        let mut doomed: Vec<(i64, Option<String>, Option<String>, u64)> = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT id, clip_path, snapshot_path, bytes, started_at FROM events
                 WHERE ended_at IS NOT NULL AND recording = 0 ORDER BY started_at ASC, id ASC",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64, r.get::<_, f64>(4)?))
            })?;
            let total: i64 = tx.query_row("SELECT COALESCE(SUM(bytes), 0) FROM events", [], |r| r.get(0))?;
            let mut total = total as u64;
            for row in rows {
                let (id, clip, snap, bytes, started) = row?;
                let too_old = max_age_secs.is_some_and(|age| started < now - age);
                let too_big = max_bytes.is_some_and(|max| total > max);
                if !too_old && !too_big {
                    break;
                }
                total = total.saturating_sub(bytes);
                doomed.push((id, clip, snap, bytes));
            }
        }
        for (id, ..) in &doomed {
            tx.execute("DELETE FROM events WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        // Rows first, files second: a crash in between leaves files no row refers to (swept at the
        // next start), never a row whose file is gone.
        let mut report = RetentionReport { events: doomed.len(), ..Default::default() };
        for (_, clip, snap, bytes) in doomed {
            report.bytes += bytes;
            for rel in [clip, snap].into_iter().flatten() {
                match std::fs::remove_file(self.resolve(&rel)) {
                    Ok(()) => report.files += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => log::warn!("retention: cannot delete {rel}: {e}"),
                }
            }
        }
        Ok(report)
    }

    /// Every clip and snapshot path the store refers to.
    pub fn referenced(&self) -> Result<HashSet<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT clip_path FROM events WHERE clip_path IS NOT NULL
             UNION SELECT snapshot_path FROM events WHERE snapshot_path IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes files under `dirs` (relative to the root) that no event refers to: partial clips of a
    /// crash, files whose rows retention removed just before a crash. Call it before any recording
    /// starts. Returns how many it deleted.
    pub fn sweep_orphans(&self, dirs: &[&str]) -> Result<usize, StoreError> {
        let referenced = self.referenced()?;
        let mut deleted = 0;
        let mut stack: Vec<PathBuf> = dirs.iter().map(|d| self.root.join(d)).collect();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&self.root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                if !referenced.contains(&rel) && std::fs::remove_file(&path).is_ok() {
                    log::info!("event store: removed orphan file {rel}");
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
pub(crate) mod tests;
