//! Notifications: every change of an event this node owns, to every target that wants it (webhooks,
//! and any other [`Target`]), through a persistent outbox so that nothing is lost when a target
//! fails, is down, or HAVEN is killed.
//!
//! * [`config`]: `[notify]` and `[[notify.webhooks]]`.
//! * [`target`]: the [`Notification`] and the [`Target`] trait a place notifications go implements.
//! * [`outbox`]: the `outbox` table of the event store; backoff.
//! * [`webhook`]: the webhook target (HTTP POST, HMAC-SHA256 signature).
//! * [`delivery`]: the notify thread: one task per target sending its rows in order, escalations.
//!
//! On the event path (a camera's thread, a clip writer) a change costs one store read at most and
//! one INSERT transaction; everything slow happens on the notify thread. See `docs/alerts.md`.

pub mod config;
pub mod delivery;
pub mod outbox;
pub mod target;
pub mod webhook;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use serde_json::Value;

pub use config::{NotifySettings, WebhookSettings};
pub use outbox::Outbox;
pub use target::{ChangeType, DeliveryError, Notification, Target};

use crate::events::{now, Event, EventChange, EventHub, EventKind, DB_FILE};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A webhook's secret file or CA file cannot be used (the file's content is never shown).
    #[error("{field} {reason}")]
    Secret { field: String, reason: String },
    #[error("notify outbox: {0}")]
    Outbox(#[from] rusqlite::Error),
    #[error("notify thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A target's counts since this process started (pending: in the outbox now).
#[derive(Debug, Default)]
pub struct TargetStats {
    pub delivered: AtomicU64,
    pub pending: AtomicU64,
    pub failed: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// One target as `GET /api/notify` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub name: String,
    pub kind: &'static str,
    /// Where it sends, credentials masked.
    pub address: String,
    pub delivered: u64,
    pub pending: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

/// A target with its counts and the signal that wakes its task.
pub(crate) struct Slot {
    pub target: Arc<dyn Target>,
    pub stats: TargetStats,
    pub wake: tokio::sync::Notify,
}

/// The process's notifier: told of each change by the event hub, read by the API.
pub struct Notifier {
    settings: NotifySettings,
    slots: Vec<Arc<Slot>>,
    /// The event path's own connection (the notify thread has another).
    outbox: Outbox,
    events: Weak<EventHub>,
    /// Each event as last notified, while it may still change: the next notification's `before`.
    last: Mutex<HashMap<i64, Value>>,
    /// Cameras whose notifications are snoozed, until when (unix seconds); kept in the store too,
    /// so that a restart keeps them.
    snoozed: Mutex<HashMap<String, f64>>,
    /// Falls to escalate: (when, event id); kept in the store too.
    escalations: Mutex<Vec<(f64, i64)>>,
}

impl Notifier {
    /// The webhooks of `settings` (their secret files read now).
    pub fn webhooks(settings: &NotifySettings) -> Result<Vec<Arc<dyn Target>>, NotifyError> {
        let mut out: Vec<Arc<dyn Target>> = Vec::new();
        for (i, hook) in settings.webhooks.iter().enumerate() {
            out.push(Arc::new(webhook::Webhook::new(hook, i)?));
        }
        Ok(out)
    }

    /// Starts notifying `targets` of the changes of `events`' own events: hooks into the hub and
    /// starts the notify thread, which sends what the outbox still holds from before first.
    pub fn start(settings: &NotifySettings, targets: Vec<Arc<dyn Target>>, events: &Arc<EventHub>) -> Result<Arc<Self>, NotifyError> {
        let db = events.settings().data_dir.join(DB_FILE);
        let outbox = Outbox::open(&db)?;
        let names: Vec<&str> = targets.iter().map(|t| t.name()).collect();
        for (target, n) in outbox.orphans(&names)? {
            log::warn!("notify: {n} notifications of target {target:?} wait in the outbox, but no target has that name now; kept");
        }
        let snoozed: HashMap<String, f64> = outbox.snoozes(now())?.into_iter().collect();
        let escalations = outbox.escalations()?;
        if !snoozed.is_empty() || !escalations.is_empty() {
            log::info!("notify: {} cameras still snoozed and {} falls to escalate, from before the restart", snoozed.len(), escalations.len());
        }
        let mut slots = Vec::new();
        for target in targets {
            let stats = TargetStats { pending: AtomicU64::new(outbox.pending(target.name())?), ..Default::default() };
            slots.push(Arc::new(Slot { target, stats, wake: tokio::sync::Notify::new() }));
        }
        let notifier = Arc::new(Self {
            settings: settings.clone(),
            slots,
            outbox,
            events: Arc::downgrade(events),
            last: Mutex::default(),
            snoozed: Mutex::new(snoozed),
            escalations: Mutex::new(escalations),
        });
        if !notifier.slots.is_empty() {
            let hooked = Arc::downgrade(&notifier);
            events.notify_to(Box::new(move |id, change, event| {
                if let Some(n) = hooked.upgrade() {
                    n.changed(id, change, event);
                }
            }));
            delivery::spawn(notifier.clone(), Outbox::open(&db)?)?;
        }
        Ok(notifier)
    }

    /// Every target's counts.
    pub fn targets(&self) -> Vec<TargetView> {
        self.slots
            .iter()
            .map(|s| TargetView {
                name: s.target.name().to_string(),
                kind: s.target.kind(),
                address: s.target.address(),
                delivered: s.stats.delivered.load(Ordering::Relaxed),
                pending: s.stats.pending.load(Ordering::Relaxed),
                failed: s.stats.failed.load(Ordering::Relaxed),
                last_error: s.stats.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            })
            .collect()
    }

    /// `target` is reachable again (a broker reconnected): what it has waiting goes now, not after
    /// its backoff.
    pub fn retry_now(&self, target: &str) {
        let Some(slot) = self.slots.iter().find(|s| s.target.name() == target) else { return };
        if let Err(e) = self.outbox.retry_now(target, now()) {
            log::warn!("notify {target}: the outbox cannot be updated: {e}");
        }
        slot.wake.notify_one();
    }

    /// Snoozes `camera`'s notifications for `minutes` (0: ends the snooze); returns until when.
    pub fn snooze(&self, camera: &str, minutes: u32) -> Option<f64> {
        let until = (minutes > 0).then(|| (now() + minutes as f64 * 60.0).floor());
        self.hold_snooze(camera, until);
        until
    }

    /// Holds `camera`'s snooze until `until` (unix seconds; `None` ends it): as another node of the
    /// cluster took it.
    pub fn hold_snooze(&self, camera: &str, until: Option<f64>) {
        let mut snoozed = self.snoozed.lock().unwrap_or_else(|p| p.into_inner());
        if snoozed.get(camera).copied() == until {
            return;
        }
        match until {
            Some(until) => snoozed.insert(camera.to_string(), until),
            None => snoozed.remove(camera),
        };
        if let Err(e) = self.outbox.save_snooze(camera, until) {
            log::warn!("notify: camera {camera:?}: the snooze holds, but only until a restart: {e}");
        }
    }

    /// Until when `camera`'s notifications are snoozed (unix seconds), if they are.
    pub fn snoozed_until(&self, camera: &str) -> Option<f64> {
        let snoozed = self.snoozed.lock().unwrap_or_else(|p| p.into_inner());
        snoozed.get(camera).copied().filter(|&until| until > now())
    }

    /// Told by the event hub (on the thread that changed the event): into the outbox, for each
    /// target that wants it. The event is read from the store (as `/api/events` gives it), under
    /// `last`'s lock, so that changes told from different threads (a camera's, its snapshot
    /// writer's) go into the outbox in one order, each `before` the previous `after`.
    fn changed(&self, id: i64, change: EventChange, given: Option<Event>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.events.upgrade().map(|hub| hub.store().get(id));
        let event = match (stored, given) {
            (Some(Ok(Some(e))), _) | (_, Some(e)) => e,
            (Some(Err(e)), None) => return log::warn!("notify: event {id} unreadable: {e}; not notified"),
            _ => return,
        };
        let kind = match change {
            EventChange::Start => ChangeType::New,
            EventChange::End => ChangeType::End,
            // A snapshot written before its event's start was told: the `new` to come reads it.
            EventChange::Snapshot | EventChange::Clip if event.is_active() && !last.contains_key(&id) => return,
            EventChange::Snapshot | EventChange::Clip => ChangeType::Update,
            // Acknowledged, or still down after long_lie_secs: the people told must hear it too.
            EventChange::Ack | EventChange::LongLie => ChangeType::Update,
        };
        // Kept as the next change's `before` until nothing more can change (ended, clip settled).
        let after = target::api_json(&event);
        let settled = !event.is_active() && event.clip_status != crate::events::ClipStatus::Recording;
        let before = if settled { last.remove(&id) } else { last.insert(id, after) };
        if kind == ChangeType::New && event.kind == EventKind::Fall && self.settings.escalate_after_secs > 0 {
            let due = event.started_at + self.settings.escalate_after_secs as f64;
            self.escalations.lock().unwrap_or_else(|p| p.into_inner()).push((due, id));
            if let Err(e) = self.outbox.add_escalation(id, due) {
                log::warn!("notify: fall {id} will be escalated, but not after a restart: {e}");
            }
        }
        let before = if kind == ChangeType::New { None } else { before };
        self.enqueue(Notification::new(kind, before, &event, &self.settings.public_url));
    }

    /// Writes `n` once for each target that wants it (none while its camera is snoozed) and wakes
    /// their tasks.
    fn enqueue(&self, n: Notification) {
        if self.snoozed_until(n.camera()).is_some() {
            log::info!("notify: camera {:?} is snoozed: event {} {} not notified", n.camera(), n.event_id(), n.change.as_str());
            return;
        }
        let wanting: Vec<&Arc<Slot>> = self.slots.iter().filter(|s| s.target.wants(&n)).collect();
        if wanting.is_empty() {
            return;
        }
        let names: Vec<&str> = wanting.iter().map(|s| s.target.name()).collect();
        let payload = serde_json::to_string(&n).unwrap_or_default();
        if let Err(e) = self.outbox.push(&names, n.event_id(), n.change, &payload, now()) {
            log::error!("notify: event {} {}: the outbox refused it ({e}); not notified", n.event_id(), n.change.as_str());
            return;
        }
        for slot in wanting {
            slot.stats.pending.fetch_add(1, Ordering::Relaxed);
            slot.wake.notify_one();
        }
    }

    /// Falls due for escalation now: those still not acknowledged are sent again as `escalation`.
    /// `false` once the event hub is gone.
    pub(crate) fn escalate_due(&self) -> bool {
        let now = now();
        let due: Vec<i64> = {
            let mut pending = self.escalations.lock().unwrap_or_else(|p| p.into_inner());
            let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(at, _)| *at <= now);
            *pending = later;
            due.into_iter().map(|(_, id)| id).collect()
        };
        let Some(hub) = self.events.upgrade() else { return false };
        if due.is_empty() {
            return true;
        }
        for &id in &due {
            let event = match hub.store().get(id) {
                Ok(Some(e)) => e,
                _ => continue,
            };
            if event.acknowledged_at.is_some() {
                continue;
            }
            log::warn!("notify: fall {id} on camera {:?} not acknowledged after {} s: escalated", event.camera_id, self.settings.escalate_after_secs);
            self.enqueue(Notification::new(ChangeType::Escalation, None, &event, &self.settings.public_url));
        }
        // Only once sent (or found acknowledged): a kill before this sends them again, never none.
        if let Err(e) = self.outbox.remove_escalations(&due) {
            log::warn!("notify: escalations {due:?} stay in the store ({e}): a restart would send them again");
        }
        true
    }

    pub(crate) fn slots(&self) -> &[Arc<Slot>] {
        &self.slots
    }

    pub(crate) fn max_age_secs(&self) -> f64 {
        self.settings.max_age_secs as f64
    }
}
