//! Where in a frame the model should look. People far from the camera are small: scaled down with
//! the whole frame into the network input they are missed, cut out at the frame's own resolution
//! (or larger) they are found. So a camera looks only where something moves or people are tracked,
//! in regions cut from the full frame, and falls back to the whole frame where the regions would
//! cost more than a pass over it.

use opencv::core::Rect;

/// How regions are planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionPlan {
    /// Regions are looked at up to this many times the frame's resolution (less where the budget
    /// allows no more); the network input follows the region's size.
    pub scale: f32,
    /// Motion boxes are grown by this fraction of their larger side on every side.
    pub margin: f32,
    /// Tracked people's boxes (from the previous pass) are grown by this fraction of their larger
    /// side: a person falling full length between two passes moves their box by most of their height.
    pub track_margin: f32,
    /// Smallest region side, in frame pixels.
    pub min_side: i32,
    /// The most network input pixels the regions may take together, as a fraction of one square
    /// pass at the model's size (640x640: what a frame cost before regions).
    pub budget: f32,
    /// The most regions one frame is cut into (each costs a little fixed work).
    pub max_regions: usize,
}

impl Default for RegionPlan {
    fn default() -> Self {
        // Measured on the demo footage (examples/small_people.rs): tight regions around motion (a
        // tenth of its size) leave budget to enlarge them 1.4 times, which finds 91-94 % of the
        // people a close look finds; margins of a quarter found 85 %, native scale 69 %.
        Self { scale: 1.4, margin: 0.1, track_margin: 0.5, min_side: 48, budget: 1.0, max_regions: 12 }
    }
}

/// What to look at in a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The whole frame, at the model's own input size.
    WholeFrame,
    /// These regions, at this scale of the frame's resolution.
    Regions(Vec<Rect>, f32),
    /// Nothing of interest.
    Nothing,
}

/// The network input for a `w` x `h` region looked at `scale` times its resolution: sides rounded
/// up to multiples of 32.
pub fn region_input(w: i32, h: i32, scale: f32) -> (usize, usize) {
    let side = |v: i32| ((v.max(1) as f32 * scale).round() as usize).div_ceil(32).max(1) * 32;
    (side(w), side(h))
}

fn grow(b: &[f32; 4], margin: f32, min_side: i32, w: i32, h: i32) -> Rect {
    let side = (b[2] - b[0]).max(b[3] - b[1]).max(1.0);
    let pad = side * margin;
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let half_w = ((b[2] - b[0]) / 2.0 + pad).max(min_side as f32 / 2.0);
    let half_h = ((b[3] - b[1]) / 2.0 + pad).max(min_side as f32 / 2.0);
    let x1 = ((cx - half_w).floor() as i32).clamp(0, w);
    let y1 = ((cy - half_h).floor() as i32).clamp(0, h);
    let x2 = ((cx + half_w).ceil() as i32).clamp(0, w);
    let y2 = ((cy + half_h).ceil() as i32).clamp(0, h);
    Rect::new(x1, y1, x2 - x1, y2 - y1)
}

fn union(a: Rect, b: Rect) -> Rect {
    let (x1, y1) = (a.x.min(b.x), a.y.min(b.y));
    let (x2, y2) = ((a.x + a.width).max(b.x + b.width), (a.y + a.height).max(b.y + b.height));
    Rect::new(x1, y1, x2 - x1, y2 - y1)
}

fn area(r: Rect) -> i64 {
    r.width.max(0) as i64 * r.height.max(0) as i64
}

fn overlaps(a: Rect, b: Rect) -> bool {
    a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
}

/// What regions cost together at `scale`: their network inputs' pixels.
pub fn cost(regions: &[Rect], scale: f32) -> i64 {
    regions
        .iter()
        .map(|r| {
            let (w, h) = region_input(r.width, r.height, scale);
            (w * h) as i64
        })
        .sum()
}

/// Regions for a `w` x `h` frame around what moves and the people tracked (boxes in frame pixels),
/// whose whole-frame pass has the network input `whole` (the model's size is its longer side).
/// Regions are looked at as finely as `opts.scale` and the budget allow; where that is no finer
/// than the whole-frame pass, the whole frame is looked at.
pub fn plan(w: i32, h: i32, motion: &[[f32; 4]], tracked: &[[f32; 4]], opts: &RegionPlan, whole: (usize, usize)) -> Plan {
    let mut regions: Vec<Rect> = motion
        .iter()
        .map(|b| grow(b, opts.margin, opts.min_side, w, h))
        .chain(tracked.iter().map(|b| grow(b, opts.track_margin, opts.min_side, w, h)))
        .filter(|r| area(*r) > 0)
        .collect();
    if regions.is_empty() {
        return Plan::Nothing;
    }
    // Merge regions that overlap, or whose union is little larger than the two apart.
    loop {
        let mut merged = false;
        'outer: for i in 0..regions.len() {
            for j in i + 1..regions.len() {
                let (a, b) = (regions[i], regions[j]);
                let u = union(a, b);
                if overlaps(a, b) || area(u) <= (area(a) + area(b)) * 5 / 4 {
                    regions[i] = u;
                    regions.swap_remove(j);
                    merged = true;
                    break 'outer;
                }
            }
        }
        if !merged {
            break;
        }
    }
    if regions.len() > opts.max_regions {
        return Plan::WholeFrame;
    }
    let side = whole.0.max(whole.1) as f64;
    let budget = side * side * opts.budget as f64;
    let whole_scale = (whole.0 as f32 / w.max(1) as f32).min(whole.1 as f32 / h.max(1) as f32);
    // As fine as the budget allows: the square root of the budget over the native cost, then down in
    // small steps while rounding the inputs up to 32 still overshoots.
    let native = cost(&regions, 1.0).max(1) as f64;
    let mut scale = opts.scale.min((budget / native).sqrt() as f32);
    while cost(&regions, scale) as f64 > budget && scale > whole_scale {
        scale *= 0.95;
    }
    if scale <= whole_scale * 1.05 {
        return Plan::WholeFrame;
    }
    regions.sort_by_key(|r| (r.y, r.x));
    Plan::Regions(regions, scale)
}

/// A camera's share of its region budget under load: while its frames wait for the shared model
/// longer than a third of its detect period, the regions shrink (cheaper passes, more of them for
/// every camera); when they stop waiting, the regions grow back. Measured with 6 busy cameras on 2 cores
/// (`examples/capacity.rs`): a full budget gave 3.6-3.8 passes a second per camera, half of it 4.9
/// (of 5), while one camera alone keeps the full budget and finds the small people.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetControl {
    factor: f32,
}

/// The least share of the budget; the factor a long wait shrinks it by, a short one grows it by; a
/// wait longer than this share of the detect period is long.
const MIN_BUDGET_SHARE: f32 = 0.4;
const LONG_WAIT: f64 = 0.3;
const SHRINK: f32 = 0.85;
const GROW: f32 = 1.05;

impl Default for BudgetControl {
    fn default() -> Self {
        Self { factor: 1.0 }
    }
}

impl BudgetControl {
    /// One result: how long its frame waited for a worker, and the camera's detect period.
    pub fn observe(&mut self, queue_ms: f64, period_ms: f64) {
        self.factor = if queue_ms > period_ms * LONG_WAIT {
            (self.factor * SHRINK).max(MIN_BUDGET_SHARE)
        } else {
            (self.factor * GROW).min(1.0)
        };
    }

    /// The share of the region budget to use now (0.4-1).
    pub fn share(&self) -> f32 {
        self.factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i32 = 768;
    const H: i32 = 576;
    /// A 640x480 pass over a 768x576 frame.
    const WHOLE: (usize, usize) = (640, 480);

    #[test]
    fn regions_shrink_while_frames_wait_for_the_model_and_grow_back_after() {
        let mut c = BudgetControl::default();
        assert_eq!(c.share(), 1.0);
        for _ in 0..5 {
            c.observe(150.0, 200.0);
        }
        let shrunk = c.share();
        assert!(shrunk < 0.5 && shrunk >= 0.4, "{shrunk}");
        for _ in 0..100 {
            c.observe(250.0, 200.0);
        }
        assert_eq!(c.share(), 0.4, "never below the floor");
        for _ in 0..30 {
            c.observe(5.0, 200.0);
        }
        assert_eq!(c.share(), 1.0, "back to the whole budget once nothing waits");
    }

    #[test]
    fn nothing_of_interest_is_nothing_to_look_at() {
        assert_eq!(plan(W, H, &[], &[], &RegionPlan::default(), WHOLE), Plan::Nothing);
    }

    #[test]
    fn a_small_person_gets_a_region_around_them_at_full_resolution() {
        let person = [400.0, 300.0, 420.0, 350.0];
        let Plan::Regions(r, scale) = plan(W, H, &[person], &[], &RegionPlan::default(), WHOLE) else { panic!() };
        assert_eq!(r.len(), 1);
        assert_eq!(scale, 1.4);
        let r = r[0];
        assert!(r.x <= 400 && r.y <= 300 && r.x + r.width >= 420 && r.y + r.height >= 350, "{r:?}");
        assert!(r.width >= 48 && r.height >= 48 && r.width < 200, "{r:?}");
        assert!(cost(&[r], scale) < 640 * 480 / 4);
    }

    #[test]
    fn regions_are_enlarged_as_far_as_the_budget_allows() {
        let person = [400.0, 300.0, 420.0, 350.0];
        let opts = RegionPlan { scale: 2.0, ..RegionPlan::default() };
        let Plan::Regions(_, scale) = plan(W, H, &[person], &[], &opts, WHOLE) else { panic!() };
        assert_eq!(scale, 2.0, "a small region gets the whole enlargement");
        let big = [100.0, 100.0, 600.0, 400.0];
        let Plan::Regions(r, scale) = plan(W, H, &[big], &[], &opts, WHOLE) else { panic!() };
        assert!(scale < 2.0 && scale > 640.0 / 768.0, "{scale}");
        assert!(cost(&r, scale) <= 640 * 640, "{}", cost(&r, scale));
        // Motion over the whole frame: the frame in one region, as finely as one square pass allows.
        let Plan::Regions(r, scale) = plan(W, H, &[[0.0, 0.0, 768.0, 576.0]], &[], &opts, WHOLE) else { panic!() };
        assert_eq!(r, vec![Rect::new(0, 0, 768, 576)]);
        assert!(scale > 0.9 && cost(&r, scale) <= 640 * 640, "{scale}");
    }

    #[test]
    fn a_tracked_person_gets_room_to_move_between_passes() {
        let upright = [400.0, 200.0, 440.0, 300.0];
        let Plan::Regions(r, _) = plan(W, H, &[], &[upright], &RegionPlan::default(), WHOLE) else { panic!() };
        // Half their height on every side: the box of someone halfway into a fall still fits.
        let half_fallen = Rect::new(352, 240, 80, 60);
        let r = r[0];
        assert!(r.x <= half_fallen.x && r.y <= 150 && r.x + r.width >= 490 && r.y + r.height >= 350, "{r:?}");
        assert!(r.x <= half_fallen.x && r.y + r.height >= half_fallen.y + half_fallen.height, "{r:?}");
    }

    #[test]
    fn regions_stay_inside_the_frame() {
        let corner = [0.0, 0.0, 10.0, 30.0];
        let Plan::Regions(r, _) = plan(W, H, &[corner, [760.0, 560.0, 768.0, 576.0]], &[], &RegionPlan::default(), WHOLE) else { panic!() };
        for r in r {
            assert!(r.x >= 0 && r.y >= 0 && r.x + r.width <= W && r.y + r.height <= H, "{r:?}");
        }
    }

    #[test]
    fn nearby_people_share_a_region_and_far_apart_ones_do_not() {
        let a = [100.0, 100.0, 120.0, 150.0];
        let b = [130.0, 110.0, 150.0, 160.0];
        let far = [600.0, 450.0, 620.0, 500.0];
        let Plan::Regions(r, _) = plan(W, H, &[a, b, far], &[], &RegionPlan::default(), WHOLE) else { panic!() };
        assert_eq!(r.len(), 2, "{r:?}");
    }

    #[test]
    fn the_input_follows_the_region() {
        assert_eq!(region_input(100, 200, 1.4), (160, 288));
        assert_eq!(region_input(10, 10, 1.0), (32, 32));
    }

    #[test]
    fn motion_everywhere_falls_back_to_the_whole_frame() {
        // Two dozen small things moving apart from each other: more regions than are worth cutting.
        let boxes: Vec<[f32; 4]> = (0..24)
            .map(|i| {
                let (x, y) = (20.0 + (i % 6) as f32 * 120.0, 20.0 + (i / 6) as f32 * 140.0);
                [x, y, x + 20.0, y + 20.0]
            })
            .collect();
        assert_eq!(plan(W, H, &boxes, &[], &RegionPlan::default(), WHOLE), Plan::WholeFrame);
    }
}
