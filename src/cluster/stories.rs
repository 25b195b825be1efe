//! The lease algorithm's stories, told on a cluster in memory (`sim`): every step of every story
//! also checks that no two nodes analyse one camera at the same time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::rendezvous_winner;
use super::sim::{Sim, STEP};

/// A lease of 3 s: a round every second.
const LEASE_SECS: f64 = 3.0;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn cams(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("cam{i}")).collect()
}

fn winners(ids: &[String], nodes: &[(&str, f64)]) -> Vec<(String, String)> {
    let nodes: Vec<(String, f64)> = nodes.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    ids.iter().map(|id| (id.clone(), rendezvous_winner(id, &nodes).unwrap())).collect()
}

fn holders(sim: &Sim, ids: &[String]) -> Vec<(String, String)> {
    ids.iter().map(|id| (id.clone(), sim.holder(id).unwrap_or_default())).collect()
}

fn count(sim: &Sim, node: &str, counter: fn(&super::Counters) -> &std::sync::atomic::AtomicU64) -> u64 {
    counter(&sim.node(node).counters).load(Ordering::Relaxed)
}

/// Nodes `names` (capacity 1) that have heard each other, then `ids` added and placed.
fn settled(names: &[&str], ids: &[String], rebalance: bool) -> Sim {
    let mut sim = Sim::new(LEASE_SECS);
    for name in names {
        sim.join(name, 1.0, rebalance);
        sim.run_for(secs(0.3));
    }
    sim.run_for(secs(1.0));
    sim.add_cameras(ids);
    sim.run_until(secs(5.0), |sim| ids.iter().all(|id| sim.holder(id).is_some()));
    sim.run_for(secs(1.0));
    sim
}

#[test]
fn a_node_alone_takes_every_camera_at_its_first_round() {
    let mut sim = Sim::new(LEASE_SECS);
    sim.add_cameras(&cams(4));
    sim.join("a", 1.0, false);
    sim.run_for(STEP);
    assert_eq!(sim.node("a").owned(), cams(4));
    assert_eq!(sim.node("a").running(), cams(4));
    assert!(cams(4).iter().all(|id| sim.holder(id).as_deref() == Some("a")));
    assert_eq!(count(&sim, "a", |c| &c.leases_taken), 4);
}

#[test]
fn two_nodes_that_see_each_other_split_the_cameras_by_rendezvous_hashing() {
    let ids = cams(12);
    let sim = settled(&["a", "b"], &ids, false);
    let expected = winners(&ids, &[("a", 1.0), ("b", 1.0)]);
    assert_eq!(holders(&sim, &ids), expected);
    assert!(expected.iter().any(|(_, n)| n == "a") && expected.iter().any(|(_, n)| n == "b"), "{expected:?}");
    for name in ["a", "b"] {
        let mut theirs: Vec<String> = expected.iter().filter(|(_, n)| n == name).map(|(id, _)| id.clone()).collect();
        theirs.sort();
        assert_eq!(sim.node(name).owned(), theirs);
        assert_eq!(sim.node(name).running(), theirs);
    }
}

#[test]
fn a_node_with_three_times_the_capacity_gets_about_three_times_the_cameras() {
    let ids = cams(40);
    let mut sim = Sim::new(LEASE_SECS);
    sim.join("small", 1.0, false);
    sim.run_for(secs(0.3));
    sim.join("big", 3.0, false);
    sim.run_for(secs(1.0));
    sim.add_cameras(&ids);
    sim.run_for(secs(3.0));
    assert_eq!(holders(&sim, &ids), winners(&ids, &[("small", 1.0), ("big", 3.0)]));
    let (small, big) = (sim.node("small").owned().len(), sim.node("big").owned().len());
    assert_eq!(small + big, 40);
    assert!((24..=36).contains(&big), "big {big}, small {small}");
}

#[test]
fn a_renewed_lease_is_kept_lease_after_lease() {
    let mut sim = Sim::new(LEASE_SECS);
    sim.add_cameras(&cams(2));
    sim.join("a", 1.0, false);
    sim.run_for(secs(LEASE_SECS * 10.0));
    assert_eq!(sim.node("a").owned(), cams(2));
    assert_eq!(sim.node("a").running(), cams(2));
    assert!(sim.node("a").stops().is_empty());
    assert_eq!(count(&sim, "a", |c| &c.leases_taken), 2, "taken once, never again");
    assert!(count(&sim, "a", |c| &c.renewals) >= 2 * 29, "renewed every round");
    assert_eq!(count(&sim, "a", |c| &c.leases_lost) + count(&sim, "a", |c| &c.renewal_failures), 0);
}

#[test]
fn a_dead_owners_cameras_are_taken_after_its_leases_expire_and_not_before() {
    let ids = cams(8);
    let mut sim = settled(&["a", "b"], &ids, false);
    let lost = sim.node("a").owned();
    assert!(!lost.is_empty());
    sim.node_mut("a").gone = true; // kill -9
    let last_renewal = sim.node("a").last_round;
    let taken_at = sim.run_until(secs(10.0), |sim| lost.iter().all(|id| sim.holder(id).as_deref() == Some("b")));
    let after = taken_at - last_renewal;
    assert!(after >= sim.lease, "taken {after:?} after the last renewal: before the lease expired");
    // b may still count a live for a round (silence of 3/4 of a lease, as b saw it): then the
    // camera is taken once vacant for two rounds.
    assert!(after <= sim.lease + 2 * sim.round_period() + STEP, "taken only {after:?} after the last renewal");
    let mut all = ids.clone();
    all.sort();
    assert_eq!(sim.node("b").owned(), all);
}

#[test]
fn with_rebalance_a_node_that_joins_gets_only_the_cameras_it_wins() {
    let ids = cams(8);
    let mut sim = settled(&["a"], &ids, true);
    sim.join("b", 1.0, true);
    let expected = winners(&ids, &[("a", 1.0), ("b", 1.0)]);
    let moving: Vec<String> = expected.iter().filter(|(_, n)| n == "b").map(|(id, _)| id.clone()).collect();
    assert!(!moving.is_empty() && moving.len() < ids.len(), "{expected:?}");
    sim.run_until(secs(20.0), |sim| holders(sim, &ids) == expected);
    sim.run_for(secs(LEASE_SECS * 2.0));
    assert_eq!(holders(&sim, &ids), expected, "and it stays so");
    let mut stopped = sim.node("a").stops();
    stopped.sort();
    assert_eq!(stopped, moving, "a stopped exactly the cameras b wins");
    assert_eq!(count(&sim, "a", |c| &c.leases_released), moving.len() as u64);
}

#[test]
fn without_rebalance_a_node_that_joins_takes_nothing() {
    let ids = cams(8);
    let mut sim = settled(&["a"], &ids, false);
    sim.join("b", 1.0, false);
    sim.run_for(secs(LEASE_SECS * 4.0));
    assert_eq!(sim.node("a").owned(), ids);
    assert!(sim.node("b").owned().is_empty() && sim.node("a").stops().is_empty());
}

#[test]
fn a_draining_node_hands_every_lease_over_and_another_takes_them_within_a_round() {
    let ids = cams(8);
    let mut sim = settled(&["a", "b"], &ids, false);
    let handed = sim.node("a").owned();
    assert!(!handed.is_empty());
    sim.drain("a");
    assert!(handed.iter().all(|id| sim.holder(id).is_none()), "every lease deleted at once");
    assert_eq!(count(&sim, "a", |c| &c.leases_released), handed.len() as u64);
    assert!(sim.node("a").running().is_empty() && sim.node("a").owned().is_empty());
    let start = sim.clock.now();
    let done = sim.run_until(secs(10.0), |sim| ids.iter().all(|id| sim.holder(id).as_deref() == Some("b")));
    assert!(done - start <= sim.round_period() + STEP, "taken {:?} after the drain", done - start);
}

#[test]
fn a_partitioned_owner_is_fenced_the_majority_takes_over_and_it_stops_when_it_is_back() {
    let ids = cams(8);
    let mut sim = settled(&["a", "b"], &ids, false);
    let cut_off = sim.node("a").owned();
    assert!(!cut_off.is_empty());
    let now = sim.clock.now();
    sim.node("a").link.cut(now);
    // Every step checks that a and b never analyse one camera at once.
    sim.run_until(secs(10.0), |sim| cut_off.iter().all(|id| sim.holder(id).as_deref() == Some("b")));
    assert!(count(&sim, "a", |c| &c.renewal_failures) >= 1, "a could not renew");
    let now = sim.clock.now();
    assert!(cut_off.iter().all(|id| !sim.node("a").book.lock().unwrap().active(id, now)), "a's fences closed");
    sim.node("a").link.heal();
    sim.run_for(sim.round_period() + STEP);
    assert_eq!(count(&sim, "a", |c| &c.leases_lost), cut_off.len() as u64, "its renewals find the leases lost");
    assert!(sim.node("a").owned().is_empty() && sim.node("a").running().is_empty());
    sim.run_for(secs(LEASE_SECS * 2.0));
    assert_eq!(sim.node("b").owned().len(), ids.len(), "b keeps them all");
}

#[test]
fn a_paused_owner_that_wakes_after_its_leases_expired_stops_and_does_not_fight_the_new_owner() {
    let ids = cams(8);
    let mut sim = settled(&["a", "b"], &ids, false);
    let paused = sim.node("a").owned();
    assert!(!paused.is_empty());
    sim.node_mut("a").paused = true; // SIGSTOP
    sim.run_until(secs(10.0), |sim| paused.iter().all(|id| sim.holder(id).as_deref() == Some("b")));
    sim.run_for(secs(1.0));
    let taken_by_b = count(&sim, "b", |c| &c.leases_taken);
    sim.node_mut("a").paused = false; // SIGCONT: a round at once
    sim.run_for(STEP);
    assert_eq!(count(&sim, "a", |c| &c.leases_lost), paused.len() as u64);
    assert!(sim.node("a").owned().is_empty() && sim.node("a").running().is_empty());
    sim.run_for(secs(LEASE_SECS * 3.0));
    assert!(sim.node("a").owned().is_empty(), "a took nothing back");
    assert_eq!(count(&sim, "b", |c| &c.leases_taken), taken_by_b, "b lost nothing");
    assert_eq!(holders(&sim, &ids), ids.iter().map(|id| (id.clone(), "b".to_string())).collect::<Vec<_>>());
}

#[test]
fn a_camera_removed_from_the_inventory_is_stopped_and_nobody_takes_it() {
    let ids = cams(3);
    let mut sim = settled(&["a"], &ids, false);
    sim.join("b", 1.0, false);
    sim.remove_camera("cam2");
    sim.run_for(sim.round_period() + STEP);
    assert_eq!(sim.node("a").owned(), vec!["cam1".to_string(), "cam3".to_string()]);
    assert_eq!(sim.node("a").running(), vec!["cam1".to_string(), "cam3".to_string()]);
    assert_eq!(sim.holder("cam2"), None, "its lease deleted");
    sim.run_for(secs(LEASE_SECS * 2.0));
    assert_eq!(sim.holder("cam2"), None);
    assert!(!sim.node("b").owned().contains(&"cam2".to_string()));
}

#[test]
fn a_vacant_camera_whose_winner_does_not_take_it_is_taken_by_another_node_after_two_rounds() {
    let mut sim = settled(&["a", "b"], &[], false);
    // A camera b wins; b stops right after a heartbeat, so a still counts b live.
    let both = [("a".to_string(), 1.0), ("b".to_string(), 1.0)];
    let id = (1..).map(|i| format!("cam{i}")).find(|id| rendezvous_winner(id, &both).as_deref() == Some("b")).unwrap();
    sim.run_until(secs(2.0), |sim| sim.node("b").last_round == sim.clock.now() - STEP);
    sim.node_mut("b").paused = true;
    sim.add_cameras(std::slice::from_ref(&id));
    let added = sim.clock.now();
    let taken = sim.run_until(secs(5.0), |sim| sim.holder(&id).is_some());
    assert_eq!(sim.holder(&id).as_deref(), Some("a"));
    assert!(taken - added <= 2 * sim.round_period() + STEP, "taken {:?} after it was added", taken - added);
    let live: Vec<String> = sim.node("a").book.lock().unwrap().live_nodes(taken).into_iter().map(|(n, _)| n).collect();
    assert!(live.contains(&"b".to_string()), "b was still live for a: {live:?}");
}
