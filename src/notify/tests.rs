//! The notifier over a real event store and notify thread, with a target that records what it gets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;

use super::*;
use crate::events::hub::tests::hub;
use crate::events::store::{self, tests::TempDir};
use crate::events::{EventChange, EventKind};

/// Takes everything (escalations too), records `(type, camera)`.
struct Recorder(Arc<Mutex<Vec<(ChangeType, String)>>>);

impl Target for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn address(&self) -> String {
        String::new()
    }
    fn wants(&self, _: &Notification) -> bool {
        true
    }
    fn deliver<'a>(&'a self, n: &'a Notification) -> LocalBoxFuture<'a, Result<(), DeliveryError>> {
        self.0.lock().unwrap().push((n.change, n.camera().to_string()));
        Box::pin(async { Ok(()) })
    }
}

fn wait_for(got: &Mutex<Vec<(ChangeType, String)>>, n: usize) -> Vec<(ChangeType, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    got.lock().unwrap().clone()
}

#[test]
fn snoozed_cameras_and_other_nodes_events_are_not_notified_and_unacknowledged_falls_escalate() {
    let dir = TempDir::new("notify-unit");
    let hub = hub(&dir.0, false);
    hub.join_cluster("a", store::ID_RANGE, Box::new(|_, _, _| {}));
    let got = Arc::new(Mutex::new(Vec::new()));
    let settings = NotifySettings { escalate_after_secs: 1, ..Default::default() };
    let notifier = Notifier::start(&settings, vec![Arc::new(Recorder(got.clone()))], &hub).unwrap();
    assert!(notifier.snooze("quiet", 10).is_some() && notifier.snoozed_until("quiet").is_some());
    // Another node's event, live: stored and shown here, notified by its owner only.
    let mut theirs = store::tests::event("loud", EventKind::Fall, now());
    theirs.id = Some(5 * store::ID_RANGE + 1);
    theirs.node = Some("b".into());
    hub.receive(&theirs, EventChange::Start, true);
    for camera in ["quiet", "loud"] {
        let mut ev = store::tests::event(camera, EventKind::Fall, now() - 0.5);
        ev.id = Some(hub.store().insert(&ev, false).unwrap());
        hub.publish(&ev);
    }
    let seen = wait_for(&got, 2);
    assert_eq!(seen, [(ChangeType::New, "loud".to_string()), (ChangeType::Escalation, "loud".to_string())]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(got.lock().unwrap().len(), 2, "nothing of the snoozed camera or of node b: {:?}", got.lock().unwrap());
    let view = &notifier.targets()[0];
    assert_eq!((view.delivered, view.pending, view.failed), (2, 0, 0));
    assert_eq!(notifier.snooze("quiet", 0), None);
    assert_eq!(notifier.snoozed_until("quiet"), None);
}

/// Never takes anything.
struct Down;

impl Target for Down {
    fn name(&self) -> &str {
        "down"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn address(&self) -> String {
        String::new()
    }
    fn wants(&self, _: &Notification) -> bool {
        true
    }
    fn deliver<'a>(&'a self, _: &'a Notification) -> LocalBoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async { Err(DeliveryError::Unreachable("connection refused".into())) })
    }
}

#[test]
fn a_row_never_delivered_is_given_up_after_max_age_and_counted_while_another_target_goes_on() {
    let dir = TempDir::new("notify-give-up");
    let hub = hub(&dir.0, false);
    let got = Arc::new(Mutex::new(Vec::new()));
    let settings = NotifySettings { max_age_secs: 1, ..Default::default() };
    let notifier = Notifier::start(&settings, vec![Arc::new(Down), Arc::new(Recorder(got.clone()))], &hub).unwrap();
    let mut ev = store::tests::event("cam1", EventKind::PersonDetected, now());
    ev.id = Some(hub.store().insert(&ev, false).unwrap());
    hub.publish(&ev);
    assert_eq!(wait_for(&got, 1), [(ChangeType::New, "cam1".to_string())], "the other target is not held back");
    let deadline = Instant::now() + Duration::from_secs(20);
    while notifier.targets()[0].failed == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let down = &notifier.targets()[0];
    assert_eq!((down.delivered, down.pending, down.failed), (0, 0, 1), "{down:?}");
    assert_eq!(down.last_error.as_deref(), Some("no answer: connection refused"));
    let outbox = Outbox::open(&dir.0.join(DB_FILE)).unwrap();
    assert_eq!(outbox.pending("down").unwrap(), 0, "given up: gone from the outbox");
}

#[test]
fn a_snooze_and_a_fall_to_escalate_outlive_a_restart() {
    let dir = TempDir::new("notify-restart");
    let got = Arc::new(Mutex::new(Vec::new()));
    let settings = NotifySettings { escalate_after_secs: 3600, ..Default::default() };
    {
        let hub = hub(&dir.0, false);
        let notifier = Notifier::start(&settings, vec![Arc::new(Recorder(got.clone()))], &hub).unwrap();
        notifier.snooze("quiet", 60);
        let mut fall = store::tests::event("loud", EventKind::Fall, now());
        fall.id = Some(hub.store().insert(&fall, false).unwrap());
        hub.publish(&fall);
        assert_eq!(wait_for(&got, 1), [(ChangeType::New, "loud".to_string())]);
    }
    // An hour later nobody has acknowledged the fall, and HAVEN starts again.
    rusqlite::Connection::open(dir.0.join(DB_FILE)).unwrap().execute("UPDATE escalations SET due = due - 3600", []).unwrap();
    let hub = hub(&dir.0, false);
    let notifier = Notifier::start(&settings, vec![Arc::new(Recorder(got.clone()))], &hub).unwrap();
    assert!(notifier.snoozed_until("quiet").is_some_and(|until| until > now() + 3000.0), "still snoozed");
    assert_eq!(wait_for(&got, 2)[1], (ChangeType::Escalation, "loud".to_string()));
    let outbox = Outbox::open(&dir.0.join(DB_FILE)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outbox.escalations().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(outbox.escalations().unwrap(), [], "escalated once: forgotten");
}
