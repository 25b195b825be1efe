//! People followed across frames, per camera: greedy matching by box overlap (IoU), falling back to
//! the distance between centres (a person who falls changes box shape faster than it overlaps).

use serde::{Deserialize, Serialize};

use haven_pose::iou;

use crate::inference::{containment, Detection};
use crate::config::{check_within, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// A detection continues a track whose last box it overlaps by at least this IoU...
    pub iou_threshold: f32,
    /// ...or, failing that, whose centre lies within this fraction of the track's box's larger side
    /// (0.8: a person falling full length between two processed frames moves their box's centre by
    /// about 0.7 of their height, and must stay the same track for the fall to be seen).
    pub max_center_distance: f32,
    /// A track not seen for this long is over.
    pub max_unseen_secs: f64,
    /// Detections scoring below this are ignored.
    pub min_score: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { iou_threshold: 0.2, max_center_distance: 0.8, max_unseen_secs: 2.0, min_score: 0.3 }
    }
}

/// One person as the tracker last saw them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackedPerson {
    /// Unique per camera for the life of the tracker.
    pub track_id: u64,
    /// What was tracked ("person" for the pose model's people; an object tracker's classes).
    pub class: String,
    pub bbox: [f32; 4],
    pub keypoints: Vec<[f32; 3]>,
    pub score: f32,
    pub first_seen: f64,
    pub last_seen: f64,
    /// Seconds since first seen (to the newest frame).
    pub age_secs: f64,
    /// Frames the person was matched in.
    pub hits: u32,
    /// Consecutive frames the person has not been seen in (0: seen in the newest frame).
    pub lost_frames: u32,
}

impl TrackedPerson {
    pub fn seen_now(&self) -> bool {
        self.lost_frames == 0
    }
}

/// `max_center_distance` holds for detections this far apart (10 fps); a camera looked at less often
/// (its detect rate, 5 fps by default) lets people move further between two looks, up to
/// `MAX_REACH_FACTOR` times as far: a falling person's box moves by their full height in 0.2 s.
const REACH_INTERVAL_SECS: f64 = 0.1;
const MAX_REACH_FACTOR: f64 = 2.0;

fn reach_factor(since_last_seen: f64) -> f32 {
    (since_last_seen / REACH_INTERVAL_SECS).clamp(1.0, MAX_REACH_FACTOR) as f32
}

/// An unmatched detection lying this much (by area) inside a better one is a duplicate box.
const DUPLICATE_CONTAINMENT: f32 = 0.7;

pub(crate) fn larger_side(r: &[f32; 4]) -> f32 {
    (r[2] - r[0]).max(r[3] - r[1])
}


fn centre(r: &[f32; 4]) -> (f32, f32) {
    ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0)
}

pub struct Tracker {
    config: TrackerConfig,
    /// The classes followed: `None` for people ("person"), or an object tracker's classes. A track
    /// only continues with a detection of its own class.
    classes: Option<std::collections::HashSet<String>>,
    next_id: u64,
    tracks: Vec<TrackedPerson>,
    expired: Vec<TrackedPerson>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self { config, classes: None, next_id: 1, tracks: Vec::new(), expired: Vec::new() }
    }

    /// A tracker of objects of these classes (a car stays a car: tracks match their own class only).
    pub fn for_classes(config: TrackerConfig, classes: &[String]) -> Self {
        Self { classes: Some(classes.iter().cloned().collect()), ..Self::new(config) }
    }

    /// Follows these classes from now on (tracks of others end as unseen ones do).
    /// New thresholds (a reload), for the tracks already followed too.
    pub fn set_config(&mut self, config: TrackerConfig) {
        self.config = config;
    }

    pub fn set_classes(&mut self, classes: &[String]) {
        self.classes = Some(classes.iter().cloned().collect());
    }

    fn follows(&self, class: &str) -> bool {
        match &self.classes {
            None => class == "person",
            Some(set) => set.contains(class),
        }
    }

    /// Matches this frame's detections (at `t` seconds) to the tracks and returns every live track,
    /// those not seen in this frame included (`lost_frames > 0`). Tracks unseen for longer than
    /// `max_unseen_secs` end; `take_expired` hands them out.
    pub fn update(&mut self, detections: &[Detection], t: f64) -> Vec<TrackedPerson> {
        let dets: Vec<&Detection> =
            detections.iter().filter(|d| self.follows(&d.class) && d.score >= self.config.min_score).collect();
        // Every acceptable (track, detection) pair with its affinity: IoU matches (1 + IoU) before
        // centre-distance ones (0..1).
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (i, track) in self.tracks.iter().enumerate() {
            let (cx, cy) = centre(&track.bbox);
            for (j, det) in dets.iter().enumerate() {
                if *det.class != *track.class {
                    continue;
                }
                let overlap = iou(&track.bbox, &det.bbox);
                if overlap >= self.config.iou_threshold {
                    pairs.push((1.0 + overlap, i, j));
                    continue;
                }
                // Relative to the larger box: mid-fall the model may box only part of the body.
                let side = larger_side(&track.bbox).max(larger_side(&det.bbox)).max(1.0);
                let (dx, dy) = centre(&det.bbox);
                let dist = ((dx - cx).powi(2) + (dy - cy).powi(2)).sqrt() / side;
                let reach = self.config.max_center_distance * reach_factor(t - track.last_seen);
                if dist < reach {
                    pairs.push((1.0 - dist / reach, i, j));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_taken = vec![false; self.tracks.len()];
        let mut det_taken = vec![false; dets.len()];
        for (_, i, j) in pairs {
            if track_taken[i] || det_taken[j] {
                continue;
            }
            track_taken[i] = true;
            det_taken[j] = true;
            let (track, det) = (&mut self.tracks[i], dets[j]);
            track.bbox = det.bbox;
            track.keypoints = det.keypoints.clone();
            track.score = det.score;
            track.last_seen = t;
            track.hits += 1;
            track.lost_frames = 0;
        }
        for (i, taken) in track_taken.iter().enumerate() {
            if !taken {
                self.tracks[i].lost_frames += 1;
            }
        }
        for (j, det) in dets.iter().enumerate() {
            // A second box on a person already boxed (the model sometimes gives a lying person a
            // whole-body and a part-body box that NMS keeps both of) is not a new person.
            let duplicate = dets.iter().enumerate().any(|(k, other)| {
                k != j && other.class == det.class && other.score > det.score && containment(&det.bbox, &other.bbox) >= DUPLICATE_CONTAINMENT
            });
            if !det_taken[j] && !duplicate {
                self.tracks.push(TrackedPerson {
                    track_id: self.next_id,
                    class: det.class.to_string(),
                    bbox: det.bbox,
                    keypoints: det.keypoints.clone(),
                    score: det.score,
                    first_seen: t,
                    last_seen: t,
                    age_secs: 0.0,
                    hits: 1,
                    lost_frames: 0,
                });
                self.next_id += 1;
            }
        }
        let max_unseen = self.config.max_unseen_secs;
        let (gone, live): (Vec<_>, Vec<_>) = self.tracks.drain(..).partition(|tr| t - tr.last_seen > max_unseen);
        self.tracks = live;
        self.expired.extend(gone);
        for track in &mut self.tracks {
            track.age_secs = t - track.first_seen;
        }
        self.tracks.clone()
    }

    /// Tracks that ended since the last call, as last seen.
    pub fn take_expired(&mut self) -> Vec<TrackedPerson> {
        std::mem::take(&mut self.expired)
    }

    /// Ends every track now (shutdown); they are returned, not kept for `take_expired`.
    pub fn clear(&mut self) -> Vec<TrackedPerson> {
        let mut all = std::mem::take(&mut self.expired);
        all.append(&mut self.tracks);
        all
    }

    pub fn tracks(&self) -> &[TrackedPerson] {
        &self.tracks
    }
}

impl TrackerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ranges = [
            ("iou_threshold", self.iou_threshold as f64, 0.0, 1.0),
            ("max_center_distance", self.max_center_distance as f64, 0.0, 10.0),
            ("max_unseen_secs", self.max_unseen_secs, 0.0, 60.0),
            ("min_score", self.min_score as f64, 0.0, 1.0),
        ];
        ranges.into_iter().try_for_each(|(name, v, lo, hi)| check_within(name, v, lo..=hi))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn person(bbox: [f32; 4]) -> Detection {
        Detection::person(0.9, bbox, vec![[0.0, 0.0, 0.0]; 17])
    }

    fn shifted(b: [f32; 4], dx: f32) -> [f32; 4] {
        [b[0] + dx, b[1], b[2] + dx, b[3]]
    }

    #[test]
    fn ids_are_stable_while_people_move() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let a0 = [100.0, 100.0, 160.0, 300.0];
        let b0 = [400.0, 120.0, 450.0, 290.0];
        let mut ids = None;
        for i in 0..30 {
            let t = i as f64 * 0.1;
            // Detection order changes from frame to frame.
            let mut dets = vec![person(shifted(a0, 5.0 * i as f32)), person(shifted(b0, -4.0 * i as f32))];
            if i % 2 == 1 {
                dets.reverse();
            }
            let tracks = tracker.update(&dets, t);
            assert_eq!(tracks.len(), 2);
            let by_x: Vec<u64> = {
                let mut v: Vec<_> = tracks.iter().map(|t| (t.bbox[0] as i32, t.track_id)).collect();
                v.sort();
                v.into_iter().map(|p| p.1).collect()
            };
            match &ids {
                None => ids = Some(by_x),
                Some(prev) => assert_eq!(prev, &by_x, "frame {i}"),
            }
        }
        let tracks = tracker.tracks();
        assert!(tracks.iter().all(|t| t.hits == 30 && (t.age_secs - 2.9).abs() < 1e-9));
    }

    #[test]
    fn a_falling_person_keeps_their_id() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        // Pivot a 60x300 box about its bottom-left corner to 300x60 over 8 frames.
        let mut ids = Vec::new();
        for i in 0..=8 {
            let phi = (90.0 * i as f32 / 8.0).to_radians();
            let (w, h) = (60.0 * phi.cos() + 300.0 * phi.sin(), 300.0 * phi.cos() + 60.0 * phi.sin());
            let b = [100.0, 400.0 - h, 100.0 + w, 400.0];
            ids.push(tracker.update(&[person(b)], i as f64 * 0.1)[0].track_id);
        }
        assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
    }

    #[test]
    fn a_person_falling_between_looks_five_times_a_second_keeps_their_id() {
        // Boxes the model gave a falling person at a 5 fps detect rate (mid-fall only the upper
        // body was boxed): each centre moved by almost a whole box since the look before.
        let looks = [[88.0, 118.0, 299.0, 430.0], [296.0, 197.0, 390.0, 322.0], [297.0, 365.0, 468.0, 466.0]];
        let mut tracker = Tracker::new(TrackerConfig::default());
        let ids: Vec<u64> = looks.iter().enumerate().map(|(i, b)| tracker.update(&[person(*b)], i as f64 * 0.2)[0].track_id).collect();
        assert_eq!(ids, vec![1, 1, 1]);
        // The same jump within a tenth of a second is not the same person.
        let mut tracker = Tracker::new(TrackerConfig::default());
        tracker.update(&[person(looks[1])], 0.0);
        assert_eq!(tracker.update(&[person(looks[2])], 0.1).iter().filter(|t| t.seen_now()).map(|t| t.track_id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn tracks_survive_short_gaps_and_expire_after_long_ones() {
        let mut tracker = Tracker::new(TrackerConfig { max_unseen_secs: 1.0, ..TrackerConfig::default() });
        let b = [100.0, 100.0, 160.0, 300.0];
        let id = tracker.update(&[person(b)], 0.0)[0].track_id;
        // Missed for 0.5 s: still there, counted as lost.
        let tracks = tracker.update(&[], 0.5);
        assert_eq!((tracks.len(), tracks[0].lost_frames), (1, 1));
        assert_eq!(tracker.update(&[person(b)], 0.6)[0].track_id, id);
        assert!(tracker.take_expired().is_empty());
        // Gone for more than a second: over, and a new person there later gets a new id.
        assert!(tracker.update(&[], 1.7).is_empty());
        let expired = tracker.take_expired();
        assert_eq!(expired.len(), 1);
        assert_eq!((expired[0].track_id, expired[0].last_seen), (id, 0.6));
        let again = tracker.update(&[person(b)], 2.0);
        assert_ne!(again[0].track_id, id);
    }

    #[test]
    fn a_duplicate_box_inside_a_better_one_is_not_a_new_person() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut part = person([394.0, 386.0, 546.0, 480.0]);
        part.score = 0.38;
        let tracks = tracker.update(&[person([332.0, 381.0, 547.0, 480.0]), part.clone()], 0.0);
        assert_eq!(tracks.len(), 1);
        // Two people side by side are two.
        let tracks = tracker.update(&[person([332.0, 381.0, 547.0, 480.0]), person([10.0, 10.0, 60.0, 200.0])], 0.1);
        assert_eq!(tracks.len(), 2);
    }

    #[test]
    fn low_scores_and_other_classes_are_ignored() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut weak = person([0.0, 0.0, 10.0, 10.0]);
        weak.score = 0.1;
        let mut car = person([50.0, 50.0, 90.0, 90.0]);
        car.class = "car".into();
        car.class_id = 2;
        assert!(tracker.update(&[weak, car], 0.0).is_empty());
    }
}
