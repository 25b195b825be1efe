//! The notify thread: its own single-threaded runtime, one task per target sending that target's
//! outbox rows strictly in order (a failing row holds back only its own target's later rows), and
//! a task escalating unacknowledged falls. Nothing here runs on a camera's or the API's threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::outbox::{backoff, jitter, Outbox, Row};
use super::{Notification, Notifier, Slot};
use crate::events::now;

/// How often a target with nothing to send looks at the outbox anyway (rows written by another
/// process, a wake-up missed); a new row wakes it at once.
const IDLE_CHECK: Duration = Duration::from_secs(2);
/// Waiting on a busy database, or between escalation checks.
const TICK: Duration = Duration::from_secs(1);

/// Starts the notify thread.
pub(super) fn spawn(notifier: Arc<Notifier>, outbox: Outbox) -> std::io::Result<()> {
    std::thread::Builder::new().name("haven-notify".into()).spawn(move || {
        let system = actix_web::rt::System::new();
        system.block_on(async move {
            let outbox = Arc::new(outbox);
            for slot in notifier.slots() {
                actix_web::rt::spawn(run_target(slot.clone(), outbox.clone(), notifier.max_age_secs()));
            }
            // Until the event hub is gone (a test's server dropped): then the targets' tasks end too.
            while notifier.escalate_due() {
                actix_web::rt::time::sleep(TICK).await;
            }
        });
    })?;
    Ok(())
}

/// What to do with a target's oldest row now.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Older than `max_age_secs`: given up.
    GiveUp,
    /// Not before its next attempt: wait this long (or until woken).
    Wait(f64),
    Send,
}

pub(super) fn step(row: &Row, now: f64, max_age_secs: f64) -> Step {
    if now - row.created_at > max_age_secs {
        Step::GiveUp
    } else if row.next_attempt_at > now {
        Step::Wait(row.next_attempt_at - now)
    } else {
        Step::Send
    }
}

/// One target's task: forever, its oldest row, sent until delivered or too old.
async fn run_target(slot: Arc<Slot>, outbox: Arc<Outbox>, max_age_secs: f64) {
    let name = slot.target.name().to_string();
    loop {
        let row = match outbox.next(&name) {
            Ok(Some(row)) => row,
            Ok(None) => {
                let _ = actix_web::rt::time::timeout(IDLE_CHECK, slot.wake.notified()).await;
                continue;
            }
            Err(e) => {
                log::warn!("notify {name}: the outbox cannot be read: {e}");
                actix_web::rt::time::sleep(TICK).await;
                continue;
            }
        };
        match step(&row, now(), max_age_secs) {
            Step::GiveUp => {
                log::error!("notify {name}: event {} given up after {} attempts in {max_age_secs} s", row.event_id, row.attempts);
                if outbox.remove(row.id).is_ok() {
                    slot.stats.failed.fetch_add(1, Ordering::Relaxed);
                    slot.stats.pending.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Step::Wait(secs) => {
                let _ = actix_web::rt::time::timeout(Duration::from_secs_f64(secs.min(IDLE_CHECK.as_secs_f64())), slot.wake.notified()).await;
            }
            Step::Send => send(&slot, &outbox, &row).await,
        }
    }
}

/// One attempt at a row: removed when delivered, else its next attempt put off.
async fn send(slot: &Slot, outbox: &Outbox, row: &Row) {
    let name = slot.target.name();
    let notification: Notification = match serde_json::from_str(&row.payload) {
        Ok(n) => n,
        Err(e) => {
            log::error!("notify {name}: outbox row {} is unreadable ({e}); dropped", row.id);
            let _ = outbox.remove(row.id);
            slot.stats.failed.fetch_add(1, Ordering::Relaxed);
            slot.stats.pending.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    match slot.target.deliver(&notification).await {
        Ok(()) => {
            if let Err(e) = outbox.remove(row.id) {
                // Sent again later: at least once, never lost.
                log::warn!("notify {name}: delivered event {}, but the outbox row stays: {e}", row.event_id);
                return;
            }
            slot.stats.delivered.fetch_add(1, Ordering::Relaxed);
            slot.stats.pending.fetch_sub(1, Ordering::Relaxed);
            log::debug!("notify {name}: event {} {} delivered", row.event_id, notification.change.as_str());
        }
        Err(e) => {
            let attempts = row.attempts + 1;
            let wait = backoff(attempts, jitter());
            let error = e.to_string();
            if attempts == 1 || attempts.is_power_of_two() {
                log::warn!("notify {name}: event {} {}: {error} (attempt {attempts}; next in {wait:.1} s)", row.event_id, notification.change.as_str());
            }
            let _ = outbox.failed(row.id, attempts, now() + wait, &error);
            *slot.stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_waits_for_its_attempt_and_is_given_up_past_its_age() {
        let row = Row { id: 1, event_id: 2, payload: String::new(), created_at: 100.0, attempts: 3, next_attempt_at: 110.0 };
        assert_eq!(step(&row, 105.0, 60.0), Step::Wait(5.0));
        assert_eq!(step(&row, 110.0, 60.0), Step::Send);
        assert_eq!(step(&row, 160.0, 60.0), Step::Send);
        assert_eq!(step(&row, 160.5, 60.0), Step::GiveUp, "past max_age even while waiting");
    }
}
