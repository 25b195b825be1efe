//! A fall told by more than the pose rule: per person, a story in time (upright, then a drop, a down
//! pose or a loss, then down and staying down), with the fall model's looks as evidence where the pose
//! model goes quiet. The small pose model often stops seeing a person once they lie on the floor; the
//! fall model (a detector of people `Normal` and `Fall`) still sees them, but on its own it also calls
//! a bending or squatting person, a bed or a pile of clothes `Fall` now and then. The story asks it only
//! when the pose saw something happen to someone who was upright (a fast drop, or lost away from the
//! frame's edges), looks only where that person is, and
//! raises a fall only when it keeps saying `Fall` there for `min_duration_secs`.
//! (docs/events.md, "Falls the pose model cannot see").

use haven_pose::iou;

use super::tracker::larger_side;
use crate::inference::{containment, Detection};

/// A story opened by a trigger watches this long for `Fall` looks (a vanished person's, half as
/// long) ...
pub const WATCH_SECS: f64 = 4.0;
/// ... and this long after its latest one.
const KEEP_SECS: f64 = 2.0;
/// A trigger opens a story only for a person seen upright at most this long before it.
pub const UPRIGHT_BEFORE_SECS: f64 = 3.0;
/// A pose with a smoothed down score under this is upright (standing, walking, sitting up).
pub const UPRIGHT_SCORE: f32 = 0.25;
/// A person's box this much wider (width / height) than when they were upright ...
const RESHAPED_ASPECT: f32 = 1.5;
/// ... or this much shorter ...
const RESHAPED_HEIGHT: f32 = 0.75;
/// ... with its top (the head) this far down, in upright heights ...
const HEAD_DOWN: f32 = 0.25;
/// ... and its bottom no higher than this: a falling person's box turns wide and short from the
/// top while the feet stay on the floor; a walking person's keeps its shape, and one hidden behind
/// someone else or furniture loses its bottom.
const FEET_UP: f32 = 0.2;

/// A person lost upright is worth a look only if the pose model was this sure of them ...
pub const CLEAR_SCORE: f32 = 0.6;
/// ... and their box this tall a share of the frame.
pub const CLEAR_HEIGHT: f32 = 0.2;

/// Whether two people's boxes are near each other: one could hide the other (within a box's larger
/// side of each other's centres).
pub fn near(a: &[f32; 4], b: &[f32; 4]) -> bool {
    let (ca, cb) = (((a[0] + a[2]) / 2.0, (a[1] + a[3]) / 2.0), ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0));
    let reach = larger_side(a).max(larger_side(b));
    ((ca.0 - cb.0).powi(2) + (ca.1 - cb.1).powi(2)).sqrt() < reach
}

/// Whether `now`, a person's box, is no longer the `upright` one of a moment ago: shorter or wider,
/// the head come down, the feet where they were.
pub fn reshaped(upright: &[f32; 4], now: &[f32; 4]) -> bool {
    let (uw, uh) = ((upright[2] - upright[0]).max(1.0), (upright[3] - upright[1]).max(1.0));
    let (w, h) = ((now[2] - now[0]).max(1.0), (now[3] - now[1]).max(1.0));
    let shape = w / h >= RESHAPED_ASPECT * (uw / uh) || h <= RESHAPED_HEIGHT * uh;
    shape && now[1] - upright[1] >= HEAD_DOWN * uh && upright[3] - now[3] <= FEET_UP * uh
}

/// Before a fall is raised, the fall model looks at most this often (at least three looks over
/// `min_duration_secs` still confirm it, at half the cost of every look at 5 a second).
const UNSURE_LOOK_SECS: f64 = 0.35;

/// A pose whose down score is under this is plainly upright (standing or walking, torso vertical,
/// box tall): a drop of its hips is the model's noise or a step, not a fall.
pub const LEANING_SCORE: f32 = 0.05;
/// A box this much narrower than tall is an upright person's, when the pose shows no torso.
pub const UPRIGHT_ASPECT: f32 = 0.5;
/// A model box is about the person when it overlaps their place by this much (of the smaller box) ...
const MIN_OVERLAP: f32 = 0.3;
/// ... and is not much smaller than the person (a picture on the wall, a cushion). A person sitting
/// or lying on the floor facing the camera is boxed at under half their standing height.
const MIN_SIZE: f32 = 0.35;
/// A box about the person reaches down to within this share of their place's height from its bottom
/// (their feet, or where they lie).
const ON_FLOOR: f32 = 0.35;
/// A `Fall` box this much like the person's place (IoU) becomes their place.
const PLACE_IOU: f32 = 0.15;
/// Consecutive looks not saying `Fall` that end a streak of them.
const MAX_MISSES: u32 = 2;
/// A streak must say `Fall` in this share of its looks.
const MIN_SHARE: f32 = 0.7;
/// A fallen person seen up (by the pose, or `Normal` by the model) this long is up again.
pub const RECOVER_SECS: f64 = 1.0;
/// A raised fall that neither model has seen for this long ends: the person is no longer there.
const GONE_SECS: f64 = 15.0;
/// While a raised fall goes on, the fall model looks at most this often (it is still down).
const RAISED_LOOK_SECS: f64 = 1.0;

/// What opened a story.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The hips dropped fast (body lengths within a second).
    Drop(f32),
    /// The pose model lost the person away from the frame's edges, their box already turned from
    /// upright.
    Lost,
    /// The pose model lost an upright person away from the frame's edges, nobody else near them: a
    /// short watch (the fall model's first looks tell whether they are down there).
    Vanished,
    /// A fall the pose rule raised goes on while the pose model no longer sees the person.
    Raised,
}

/// What one look of the fall model changed.
#[derive(Debug, Clone, PartialEq)]
pub enum StoryUpdate {
    None,
    /// Down for long enough: raise a fall that began at `since`.
    Fell { since: f64, mean_fall: f32, looks: u32, bbox: [f32; 4] },
    /// Up again since `at` (the raised fall ends).
    Up { at: f64 },
    /// Nobody seen there since `at` (the raised fall ends).
    Gone { at: f64 },
    /// Nothing more to watch (the story can go).
    Closed,
}

/// One person's story.
#[derive(Debug, Clone)]
pub struct Story {
    pub trigger: Trigger,
    /// Where the person is (or was last seen), frame pixels.
    pub place: [f32; 4],
    /// Their body's length: the largest box side the pose gave them.
    body: f32,
    watch_until: f64,
    /// The current streak of `Fall` looks: when it began, its scores, its looks, its misses in a row.
    streak: Option<(f64, Vec<f32>, u32, u32)>,
    /// The newest `Fall` box about the person, and when the model saw it.
    fall_box: [f32; 4],
    fall_at: f64,
    /// A fall is raised for this person (by the story or the pose rule).
    pub raised: bool,
    /// The pose model no longer sees the person.
    pub unseen: bool,
    last_look: f64,
    /// The last time either model saw the person there.
    last_seen: f64,
    up_since: Option<f64>,
}

/// The overlap of two boxes as a share of the smaller one.
pub fn overlap(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    containment(a, b).max(containment(b, a))
}

/// A fall model's class names: which of its classes says lying, and which upright.
pub fn is_fall_class(class: &str) -> bool {
    class.eq_ignore_ascii_case("fall")
}

impl Story {
    pub fn open(trigger: Trigger, place: [f32; 4], body: f32, t: f64) -> Self {
        Self {
            trigger,
            place,
            body: body.max(larger_side(&place)),
            watch_until: t + if trigger == Trigger::Vanished { WATCH_SECS / 2.0 } else { WATCH_SECS },
            streak: None,
            fall_box: place,
            fall_at: f64::NEG_INFINITY,
            raised: matches!(trigger, Trigger::Raised),
            unseen: matches!(trigger, Trigger::Lost | Trigger::Vanished | Trigger::Raised),
            last_look: f64::NEG_INFINITY,
            last_seen: t,
            up_since: None,
        }
    }

    /// Another trigger while the story is open: it watches longer.
    pub fn retrigger(&mut self, t: f64) {
        self.watch_until = self.watch_until.max(t + WATCH_SECS);
    }

    /// Whether the fall model should look at this person in the frame of `t`.
    pub fn wants_look(&self, t: f64) -> bool {
        let every = if self.raised { RAISED_LOOK_SECS } else { UNSURE_LOOK_SECS };
        t - self.last_look >= every - 1e-6 && (self.raised || t <= self.watch_until)
    }

    /// Whether the story still has anything to follow at `t`.
    pub fn alive(&self, t: f64) -> bool {
        self.raised || t <= self.watch_until
    }

    /// The pose model sees the person at `t` in `bbox` with this down score (`None`: no torso seen).
    pub fn pose_seen(&mut self, bbox: [f32; 4], down: Option<f32>, t: f64) -> StoryUpdate {
        // Once the fall model sees them down, a pose elsewhere is someone else (or the tracker
        // reaching too far): only one rising from where they lie counts.
        if (self.raised || self.streak.is_some()) && overlap(&bbox, &self.place) < MIN_OVERLAP {
            return StoryUpdate::None;
        }
        self.unseen = false;
        self.place = bbox;
        self.body = self.body.max(larger_side(&bbox));
        self.last_seen = t;
        // The pose model is least sure of people lying down: while the fall model still sees them
        // down, a pose that looks upright is not them getting up.
        let upright = down.is_some_and(|s| s < UPRIGHT_SCORE) && t - self.fall_at > RECOVER_SECS;
        self.up(upright, t)
    }

    /// Counts a sign of the person up (or not) at `t`; a raised fall ends after `RECOVER_SECS` up,
    /// an unraised story once they are up again.
    fn up(&mut self, upright: bool, t: f64) -> StoryUpdate {
        if !upright {
            self.up_since = None;
            return StoryUpdate::None;
        }
        let since = *self.up_since.get_or_insert(t);
        if t - since + 1e-9 < RECOVER_SECS {
            return StoryUpdate::None;
        }
        if self.raised {
            self.raised = false;
            self.watch_until = f64::NEG_INFINITY;
            return StoryUpdate::Up { at: since };
        }
        // Up again before anything was raised: the streak (bending, squatting) is forgotten.
        self.streak = None;
        StoryUpdate::None
    }

    /// The model box (of `dets`) about this person, if any: of those overlapping their place, on the
    /// floor where they stood (not a bed or a table top beside them) and not much smaller than them
    /// (not a cushion), the one the model is surest of.
    fn about<'a>(&self, dets: &'a [Detection]) -> Option<&'a Detection> {
        let floor = self.place[3] - ON_FLOOR * (self.place[3] - self.place[1]);
        dets.iter()
            .filter(|d| overlap(&d.bbox, &self.place) >= MIN_OVERLAP && larger_side(&d.bbox) >= MIN_SIZE * self.body && d.bbox[3] >= floor)
            .max_by(|a, b| a.score.total_cmp(&b.score))
    }

    /// One look of the fall model at the frame of `t`. `min_score`: a `Fall` box counts from this
    /// score; `min_secs`: how long a streak of them must last.
    pub fn look(&mut self, dets: &[Detection], t: f64, min_score: f32, min_secs: f64) -> StoryUpdate {
        self.last_look = t;
        let about = self.about(dets);
        let fall = about.filter(|d| is_fall_class(&d.class) && d.score >= min_score);
        if let Some(d) = about {
            self.last_seen = t;
            // A lying person's box is where they are now (if it is much like where they were: the
            // place does not jump to something else the model calls `Fall`).
            if fall.is_some() {
                self.fall_box = d.bbox;
                self.fall_at = t;
                if iou(&d.bbox, &self.place) >= PLACE_IOU {
                    self.place = d.bbox;
                }
            }
        }
        if self.raised {
            // Still down while it says `Fall`; up once it says otherwise for long enough; gone once
            // nothing is seen there.
            if t - self.last_seen > GONE_SECS {
                self.raised = false;
                self.watch_until = f64::NEG_INFINITY;
                return StoryUpdate::Gone { at: self.last_seen };
            }
            return match about {
                Some(_) => self.up(fall.is_none(), t),
                None => StoryUpdate::None,
            };
        }
        match (fall, self.streak.as_mut()) {
            (Some(d), None) => self.streak = Some((t, vec![d.score], 1, 0)),
            (Some(d), Some((_, scores, looks, misses))) => {
                scores.push(d.score);
                *looks += 1;
                *misses = 0;
            }
            (None, Some((_, _, looks, misses))) => {
                *looks += 1;
                *misses += 1;
                if *misses >= MAX_MISSES {
                    self.streak = None;
                }
            }
            (None, None) => {}
        }
        if fall.is_some() {
            self.watch_until = self.watch_until.max(t + KEEP_SECS);
        }
        if let Some((since, scores, looks, _)) = &self.streak {
            let share = scores.len() as f32 / *looks as f32;
            if t - since + 1e-9 >= min_secs && scores.len() >= 3 && share >= MIN_SHARE {
                let mean = scores.iter().sum::<f32>() / scores.len() as f32;
                let update = StoryUpdate::Fell { since: *since, mean_fall: mean, looks: scores.len() as u32, bbox: self.fall_box };
                self.raised = true;
                self.streak = None;
                self.up_since = None;
                return update;
            }
        }
        if !self.alive(t) {
            return StoryUpdate::Closed;
        }
        StoryUpdate::None
    }

    /// The pose rule raised this person's fall itself: the story follows it from now on.
    pub fn raised_by_pose(&mut self) {
        self.raised = true;
        self.streak = None;
        self.up_since = None;
    }

    /// The `Fall` looks of the current streak (count, mean score), for a fall the pose rule raises now.
    pub fn model_agrees(&self) -> Option<(u32, f32)> {
        let (_, scores, _, _) = self.streak.as_ref()?;
        (!scores.is_empty()).then(|| (scores.len() as u32, scores.iter().sum::<f32>() / scores.len() as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: &str, score: f32, bbox: [f32; 4]) -> Detection {
        Detection { class_id: if is_fall_class(class) { 1 } else { 0 }, class: class.into(), score, bbox, keypoints: Vec::new() }
    }

    const STANDING: [f32; 4] = [200.0, 40.0, 300.0, 360.0];
    const LYING: [f32; 4] = [150.0, 250.0, 480.0, 350.0];
    /// A bed the model calls `Fall` beside where the person stood.
    const BED: [f32; 4] = [300.0, 140.0, 460.0, 200.0];
    const PICTURE: [f32; 4] = [215.0, 43.0, 267.0, 93.0];

    /// Looks five times a second from `t0` for `secs`, each giving `dets`; the updates that happened.
    fn looks(story: &mut Story, t0: f64, secs: f64, dets: &[Detection]) -> Vec<(f64, StoryUpdate)> {
        let mut out = Vec::new();
        let n = (secs * 5.0).round() as usize;
        for i in 0..n {
            let t = t0 + i as f64 * 0.2;
            let u = story.look(dets, t, 0.35, 1.5);
            if u != StoryUpdate::None {
                out.push((t, u));
            }
        }
        out
    }

    #[test]
    fn a_person_lost_on_the_floor_that_the_model_calls_fall_is_raised_once_after_min_duration() {
        let mut s = Story::open(Trigger::Lost, STANDING, 320.0, 10.0);
        let lying = [det("Fall", 0.7, LYING), det("Fall", 0.6, BED), det("Fall", 0.45, PICTURE)];
        let updates = looks(&mut s, 10.0, 6.0, &lying);
        assert_eq!(updates.len(), 1, "{updates:?}");
        let (t, StoryUpdate::Fell { since, mean_fall, looks, bbox }) = &updates[0] else { panic!("{updates:?}") };
        assert!((since - 10.0).abs() < 1e-9 && (t - 11.6).abs() < 1e-6, "raised at {t}");
        assert!((mean_fall - 0.7).abs() < 1e-6 && *looks >= 8);
        assert_eq!(*bbox, LYING, "the person's box, not the bed's");
        assert!(s.raised && !s.wants_look(16.0) && s.wants_look(16.8), "looks once a second while down");
    }

    #[test]
    fn short_fall_streaks_bending_or_squatting_raise_nothing() {
        let mut s = Story::open(Trigger::Drop(0.3), STANDING, 320.0, 0.0);
        let mut updates = looks(&mut s, 0.0, 0.8, &[det("Fall", 0.75, STANDING)]);
        updates.extend(looks(&mut s, 0.8, 2.0, &[det("Normal", 0.8, STANDING)]));
        updates.extend(looks(&mut s, 2.8, 0.8, &[det("Fall", 0.75, STANDING)]));
        updates.extend(looks(&mut s, 3.6, 4.0, &[det("Normal", 0.8, STANDING)]));
        assert_eq!(updates.iter().filter(|u| matches!(u.1, StoryUpdate::Fell { .. })).count(), 0, "{updates:?}");
        assert_eq!(updates.last().map(|u| &u.1), Some(&StoryUpdate::Closed));
        assert!(!s.alive(8.0));
    }

    #[test]
    fn things_the_model_calls_fall_that_are_not_the_person_raise_nothing() {
        // The person walked out of view by the bed; the bed and a picture stay "Fall" all along.
        let mut s = Story::open(Trigger::Lost, [380.0, 40.0, 470.0, 360.0], 320.0, 0.0);
        let updates = looks(&mut s, 0.0, 8.0, &[det("Fall", 0.65, BED), det("Fall", 0.5, PICTURE)]);
        assert!(updates.iter().all(|u| !matches!(u.1, StoryUpdate::Fell { .. })), "{updates:?}");
        // Scores under min_score are no evidence either.
        let mut s = Story::open(Trigger::Lost, STANDING, 320.0, 0.0);
        let updates = looks(&mut s, 0.0, 8.0, &[det("Fall", 0.3, LYING)]);
        assert!(updates.iter().all(|u| !matches!(u.1, StoryUpdate::Fell { .. })), "{updates:?}");
    }

    #[test]
    fn a_box_is_reshaped_when_the_head_comes_down_and_the_feet_stay() {
        let standing = [200.0, 0.0, 300.0, 360.0];
        // Mid-fall and lying: wide, short, the top come down, the feet on the floor.
        assert!(reshaped(&standing, &[205.0, 151.0, 403.0, 359.0]));
        assert!(reshaped(&standing, &[150.0, 250.0, 480.0, 355.0]));
        // Walking on, a little further away: the same shape.
        assert!(!reshaped(&standing, &[260.0, 20.0, 350.0, 340.0]));
        // Legs hidden behind a table: shorter, but the top stays and the bottom rises.
        assert!(!reshaped(&standing, &[200.0, 0.0, 300.0, 200.0]));
        // Bending over: wider, but the head comes down less.
        assert!(!reshaped(&standing, &[180.0, 60.0, 330.0, 360.0]));
    }

    #[test]
    fn a_pose_elsewhere_does_not_end_a_fall() {
        let mut s = Story::open(Trigger::Lost, STANDING, 320.0, 0.0);
        looks(&mut s, 0.0, 3.0, &[det("Fall", 0.7, LYING)]);
        for t in [3.0, 3.5, 4.0, 4.5] {
            assert_eq!(s.pose_seen([578.0, 137.0, 595.0, 257.0], Some(0.0), t), StoryUpdate::None);
        }
        assert!(s.raised && s.place == LYING, "{s:?}");
    }

    #[test]
    fn a_raised_fall_ends_when_the_person_is_up_or_gone() {
        let mut s = Story::open(Trigger::Lost, STANDING, 320.0, 0.0);
        looks(&mut s, 0.0, 3.0, &[det("Fall", 0.7, LYING)]);
        assert!(s.raised);
        // Seen upright by the pose for a second: up since the first upright frame.
        assert_eq!(s.pose_seen(STANDING, Some(0.1), 5.0), StoryUpdate::None);
        assert_eq!(s.pose_seen(STANDING, Some(0.1), 6.0), StoryUpdate::Up { at: 5.0 });
        assert!(!s.raised && !s.alive(6.1));
        // Or: nobody there any more.
        let mut s = Story::open(Trigger::Lost, STANDING, 320.0, 0.0);
        looks(&mut s, 0.0, 3.0, &[det("Fall", 0.7, LYING)]);
        let updates: Vec<_> = looks(&mut s, 3.0, 20.0, &[]).into_iter().filter(|u| u.1 != StoryUpdate::Closed).collect();
        assert!(matches!(updates.as_slice(), [(_, StoryUpdate::Gone { at })] if (*at - 2.8).abs() < 1e-6), "{updates:?}");
    }
}
