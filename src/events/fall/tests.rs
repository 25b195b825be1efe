//! The pose rule on synthetic skeletons: standing, walking, sitting, bending raise nothing; a fall
//! raises one; a stumble, lying from the start, missing keypoints do not.

use super::*;

pub const FPS: f64 = 10.0;
/// Body length in pixels and where the feet stand.
const L: f32 = 300.0;
const FEET: (f32, f32) = (300.0, 420.0);

/// A side-view skeleton. Positions along the body (from the feet up), as fractions of `L`.
const KNEE: f32 = 0.28;
const HIP: f32 = 0.52;
const SHOULDER: f32 = 0.82;
const HEAD: f32 = 0.94;

fn kp(points: &[(f32, f32); 17]) -> Vec<[f32; 3]> {
    points.iter().map(|p| [p.0, p.1, 0.9]).collect()
}

/// Box around the keypoints, a little larger (the head and feet reach beyond them).
pub fn bbox_of(k: &[[f32; 3]]) -> [f32; 4] {
    let (mut x1, mut y1, mut x2, mut y2) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in k {
        x1 = x1.min(p[0]);
        y1 = y1.min(p[1]);
        x2 = x2.max(p[0]);
        y2 = y2.max(p[1]);
    }
    [x1 - 15.0, y1 - 20.0, x2 + 15.0, y2 + 10.0]
}

/// 17 keypoints from the feet, hips, shoulders and head positions (lateral offsets added).
fn skeleton(feet: [(f32, f32); 2], knees: [(f32, f32); 2], hip: (f32, f32), shoulder: (f32, f32), head: (f32, f32)) -> Vec<[f32; 3]> {
    let w = 0.05 * L;
    kp(&[
        head,
        (head.0 - 5.0, head.1 - 5.0),
        (head.0 + 5.0, head.1 - 5.0),
        (head.0 - 10.0, head.1),
        (head.0 + 10.0, head.1),
        (shoulder.0 - w, shoulder.1),
        (shoulder.0 + w, shoulder.1),
        ((shoulder.0 + hip.0) / 2.0 - w, (shoulder.1 + hip.1) / 2.0),
        ((shoulder.0 + hip.0) / 2.0 + w, (shoulder.1 + hip.1) / 2.0),
        (hip.0 - w, hip.1),
        (hip.0 + w, hip.1),
        (hip.0 - w * 0.8, hip.1),
        (hip.0 + w * 0.8, hip.1),
        knees[0],
        knees[1],
        feet[0],
        feet[1],
    ])
}

/// The whole body straight, pivoted about the feet by `phi` degrees from vertical.
pub fn pivoted(feet_x: f32, phi: f32) -> Vec<[f32; 3]> {
    let (s, c) = phi.to_radians().sin_cos();
    let at = |u: f32| (feet_x + u * L * s, FEET.1 - u * L * c);
    skeleton([at(0.0), at(0.0)], [at(KNEE), at(KNEE)], at(HIP), at(SHOULDER), at(HEAD))
}

/// Walking: upright, legs swinging.
fn walking(x: f32, phase: f32) -> Vec<[f32; 3]> {
    let swing = 0.12 * L * phase.sin();
    let hip = (x, FEET.1 - HIP * L + 4.0 * (2.0 * phase).cos());
    skeleton(
        [(x - swing, FEET.1), (x + swing, FEET.1)],
        [(x - swing / 2.0, FEET.1 - KNEE * L), (x + swing / 2.0, FEET.1 - KNEE * L)],
        hip,
        (x + 3.0, hip.1 - (SHOULDER - HIP) * L),
        (x + 5.0, hip.1 - (HEAD - HIP) * L),
    )
}

/// From standing (k = 0) to sitting on a chair (k = 1): hips down to knee height, thighs
/// forward, torso slightly leaning.
fn sitting(k: f32) -> Vec<[f32; 3]> {
    let x = FEET.0;
    let knee = (x + k * 0.2 * L, FEET.1 - KNEE * L);
    let hip = (x, FEET.1 - (HIP - k * (HIP - KNEE)) * L);
    let lean = (10.0 * k).to_radians();
    let up = |u: f32| (hip.0 + u * L * lean.sin(), hip.1 - u * L * lean.cos());
    skeleton([(x + k * 0.2 * L, FEET.1); 2], [knee, knee], hip, up(SHOULDER - HIP), up(HEAD - HIP))
}

/// Bending forward at the hips by `beta` degrees, legs straight, hips pushed back a little.
fn bending(beta: f32) -> Vec<[f32; 3]> {
    let x = FEET.0;
    let hip = (x - 0.05 * L * beta / 90.0, FEET.1 - HIP * L + 0.03 * L * beta / 90.0);
    let (s, c) = beta.to_radians().sin_cos();
    let up = |u: f32| (hip.0 + u * L * s, hip.1 - u * L * c);
    skeleton([(x, FEET.1); 2], [(x, FEET.1 - KNEE * L); 2], hip, up(SHOULDER - HIP), up(HEAD - HIP))
}

/// Runs a sequence (one pose per frame at `FPS`) and returns the updates that were not `None`.
pub fn run(detector: &mut FallDetector, poses: impl IntoIterator<Item = Vec<[f32; 3]>>) -> Vec<(f64, FallUpdate)> {
    let mut out = Vec::new();
    for (i, k) in poses.into_iter().enumerate() {
        let t = 1000.0 + i as f64 / FPS;
        let u = detector.update(&k, bbox_of(&k), t);
        if u != FallUpdate::None {
            out.push((t, u));
        }
    }
    out
}

fn frames(secs: f64) -> usize {
    (secs * FPS).round() as usize
}

fn hold(pose: Vec<[f32; 3]>, secs: f64) -> impl Iterator<Item = Vec<[f32; 3]>> {
    std::iter::repeat(pose).take(frames(secs))
}

/// Upright to lying in `secs`, pivoting about the feet (accelerating, as a fall does).
pub fn fall(secs: f64) -> impl Iterator<Item = Vec<[f32; 3]>> {
    let n = frames(secs);
    (1..=n).map(move |i| {
        let p = i as f32 / n as f32;
        pivoted(FEET.0, 90.0 * p * p)
    })
}

fn falls(updates: &[(f64, FallUpdate)]) -> usize {
    updates.iter().filter(|u| matches!(u.1, FallUpdate::Fell { .. })).count()
}

fn detector() -> FallDetector {
    FallDetector::new(FallConfig::default())
}

#[test]
fn standing_raises_nothing() {
    let mut d = detector();
    assert!(run(&mut d, hold(pivoted(FEET.0, 0.0), 10.0)).is_empty());
    assert!(d.score().unwrap() < 0.05);
}

#[test]
fn walking_raises_nothing() {
    let mut d = detector();
    let seq = (0..frames(10.0)).map(|i| walking(100.0 + 12.0 * i as f32, i as f32 * 0.9));
    assert!(run(&mut d, seq).is_empty());
}

#[test]
fn sitting_down_raises_nothing() {
    let mut d = detector();
    let n = frames(1.5);
    let seq = hold(pivoted(FEET.0, 0.0), 2.0)
        .chain((1..=n).map(|i| sitting(i as f32 / n as f32)))
        .chain(hold(sitting(1.0), 10.0));
    assert!(run(&mut d, seq).is_empty());
    // Sitting down fast (0.5 s) is no fall either: the torso stays upright.
    let mut d = detector();
    let n = frames(0.5);
    let seq = hold(pivoted(FEET.0, 0.0), 2.0)
        .chain((1..=n).map(|i| sitting(i as f32 / n as f32)))
        .chain(hold(sitting(1.0), 10.0));
    assert!(run(&mut d, seq).is_empty());
}

#[test]
fn bending_raises_nothing() {
    let mut d = detector();
    let n = frames(0.8);
    let seq = hold(pivoted(FEET.0, 0.0), 2.0)
        .chain((1..=n).map(|i| bending(90.0 * i as f32 / n as f32)))
        .chain(hold(bending(90.0), 5.0))
        .chain((1..=n).rev().map(|i| bending(90.0 * i as f32 / n as f32)))
        .chain(hold(pivoted(FEET.0, 0.0), 2.0));
    assert!(run(&mut d, seq).is_empty());
}

#[test]
fn a_fall_raises_exactly_one_fall() {
    let mut d = detector();
    let seq = hold(pivoted(FEET.0, 0.0), 2.0).chain(fall(0.8)).chain(hold(pivoted(FEET.0, 90.0), 20.0));
    let updates = run(&mut d, seq);
    assert_eq!(updates.len(), 1, "{updates:?}");
    let (t, FallUpdate::Fell { started_at, score, keypoints, .. }) = &updates[0] else { panic!("{updates:?}") };
    // Down during the fall, raised min_duration later.
    assert!(*started_at > 1002.0 && *started_at < 1003.1, "{started_at}");
    assert!((t - started_at - 1.5).abs() < 0.11, "raised at {t}, down at {started_at}");
    assert!(*score > 0.6 && *score <= 1.0, "{score}");
    assert_eq!(keypoints.len(), 17);
    assert!(d.fallen());
}

#[test]
fn lying_from_the_start_raises_nothing() {
    // Seen lying from the first frame (in bed, or fallen before the camera saw them): no drop was
    // seen, so no fall (see docs/events.md).
    let mut d = detector();
    assert!(run(&mut d, hold(pivoted(FEET.0, 90.0), 10.0)).is_empty());
    // Lying down slowly (4 s) neither.
    let mut d = detector();
    let n = frames(4.0);
    let seq = hold(pivoted(FEET.0, 0.0), 2.0)
        .chain((1..=n).map(|i| pivoted(FEET.0, 90.0 * i as f32 / n as f32)))
        .chain(hold(pivoted(FEET.0, 90.0), 10.0));
    assert!(run(&mut d, seq).is_empty());
}

#[test]
fn a_short_stumble_is_not_a_fall() {
    // Down for less than min_duration, then up again.
    let mut d = detector();
    let seq = hold(pivoted(FEET.0, 0.0), 2.0)
        .chain(fall(0.6))
        .chain(hold(pivoted(FEET.0, 90.0), 0.5))
        .chain(hold(pivoted(FEET.0, 0.0), 5.0));
    assert_eq!(falls(&run(&mut d, seq)), 0);
}

#[test]
fn after_recovery_a_new_fall_is_raised() {
    let mut d = detector();
    let n = frames(1.5);
    let stand_up = (1..=n).rev().map(move |i| pivoted(FEET.0, 90.0 * (i - 1) as f32 / n as f32));
    let seq = hold(pivoted(FEET.0, 0.0), 2.0)
        .chain(fall(0.8))
        .chain(hold(pivoted(FEET.0, 90.0), 5.0))
        .chain(stand_up)
        .chain(hold(pivoted(FEET.0, 0.0), 5.0))
        .chain(fall(0.8))
        .chain(hold(pivoted(FEET.0, 90.0), 5.0));
    let updates = run(&mut d, seq);
    let kinds: Vec<&str> = updates
        .iter()
        .map(|u| match u.1 {
            FallUpdate::Fell { .. } => "fell",
            FallUpdate::Recovered { .. } => "recovered",
            FallUpdate::None => "none",
        })
        .collect();
    assert_eq!(kinds, ["fell", "recovered", "fell"], "{updates:?}");
}

#[test]
fn a_fall_off_the_bed_is_raised() {
    // Lying on a bed (hips 0.35 L above the floor), then rolling off onto the floor fast.
    let mut d = detector();
    let bed = |dy: f32| {
        let mut k = pivoted(FEET.0, 90.0);
        for p in &mut k {
            p[1] -= dy;
        }
        k
    };
    let n = frames(0.5);
    let seq = hold(bed(0.35 * L), 5.0).chain((1..=n).map(|i| bed(0.35 * L * (1.0 - i as f32 / n as f32)))).chain(hold(bed(0.0), 5.0));
    assert_eq!(falls(&run(&mut d, seq)), 1);
}

#[test]
fn missing_keypoints_neither_raise_nor_clear() {
    let mut d = detector();
    let mut blind = pivoted(FEET.0, 0.0);
    for p in &mut blind {
        p[2] = 0.1;
    }
    assert!(run(&mut d, hold(blind, 5.0)).is_empty());
    assert_eq!(d.score(), None);
}

#[test]
fn sensitivity_moves_the_thresholds() {
    let low = FallConfig { sensitivity: 0.0, ..FallConfig::default() }.thresholds();
    let high = FallConfig { sensitivity: 1.0, ..FallConfig::default() }.thresholds();
    assert!(low.down_on > high.down_on && low.drop > high.drop);
}

#[test]
fn disabled_raises_nothing() {
    let mut d = FallDetector::new(FallConfig { enabled: false, ..FallConfig::default() });
    let seq = hold(pivoted(FEET.0, 0.0), 2.0).chain(fall(0.8)).chain(hold(pivoted(FEET.0, 90.0), 5.0));
    assert!(run(&mut d, seq).is_empty());
}
