//! A camera's zones (`[[cameras.zones]]`): named polygons of the frame, in coordinates 0..1 of its
//! width and height, each of a kind: `no_falls` (a bed, a sofa: nobody whose hips are in it raises a
//! fall), `motion_mask` (a clock, a tree, a TV: the motion gate ignores what moves there) or `watch`
//! (where a camera has any, events start only for people and objects inside one). A leaf: the camera
//! (motion) and the events (engine) both read them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// At most this many zones per camera...
pub const MAX_ZONES: usize = 32;
/// ...and this many points per zone.
pub const MAX_POINTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    NoFalls,
    MotionMask,
    Watch,
}

impl ZoneKind {
    const NAMES: [(&'static str, ZoneKind); 3] = [("no_falls", ZoneKind::NoFalls), ("motion_mask", ZoneKind::MotionMask), ("watch", ZoneKind::Watch)];
}

/// Read from a name, with one message whatever the reader (the settings file's, a PATCH's JSON):
/// `unknown zone kind "bedroom": no_falls, motion_mask or watch`.
impl<'de> Deserialize<'de> for ZoneKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match ZoneKind::NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, kind)) => Ok(*kind),
            None => Err(serde::de::Error::custom(format!("unknown zone kind {name:?}: no_falls, motion_mask or watch"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    pub kind: ZoneKind,
    /// The polygon's corners, `[x, y]` in 0..1 of the frame's width and height.
    pub points: Vec<[f64; 2]>,
}

impl Zone {
    /// Whether the point `(x, y)` (0..1 of the frame) lies inside the polygon (even-odd rule).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        point_in_polygon(&self.points, x, y)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        crate::text::check("name", &self.name, crate::text::ID)?;
        if self.points.len() < 3 {
            return Err(ConfigError::new("points", format!("must have at least 3 points, got {}", self.points.len())));
        }
        if self.points.len() > MAX_POINTS {
            return Err(ConfigError::new("points", format!("has {} points; the limit is {MAX_POINTS}", self.points.len())));
        }
        for (i, p) in self.points.iter().enumerate() {
            if !p.iter().all(|v| (0.0..=1.0).contains(v)) {
                return Err(ConfigError::new(format!("points[{i}]"), format!("must lie in [0, 1], got [{}, {}]", p[0], p[1])));
            }
        }
        Ok(())
    }
}

/// Even-odd ray casting: `(x, y)` inside `points` (a closed polygon, any orientation).
pub fn point_in_polygon(points: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    let n = points.len();
    for i in 0..n {
        let ([xi, yi], [xj, yj]) = (points[i], points[(i + n - 1) % n]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

/// Every rule about a camera's zones: at most `MAX_ZONES`, names unique, each valid. The error
/// names the zone by its index (`zones[1].points must have at least 3 points, got 2`).
pub fn validate(zones: &[Zone]) -> Result<(), ConfigError> {
    if zones.len() > MAX_ZONES {
        return Err(ConfigError::new("zones", format!("lists {} zones; the limit is {MAX_ZONES}", zones.len())));
    }
    let mut names = HashSet::new();
    for (i, zone) in zones.iter().enumerate() {
        let at = format!("zones[{i}]");
        zone.validate().map_err(|e| e.within(&at))?;
        if !names.insert(zone.name.as_str()) {
            return Err(ConfigError::new(format!("{at}.name"), format!("\"{}\" is the name of another zone of this camera", zone.name)));
        }
    }
    Ok(())
}

/// The zones of a kind.
pub fn of_kind(zones: &[Zone], kind: ZoneKind) -> impl Iterator<Item = &Zone> {
    zones.iter().filter(move |z| z.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str, kind: ZoneKind, points: &[[f64; 2]]) -> Zone {
        Zone { name: name.into(), kind, points: points.to_vec() }
    }

    #[test]
    fn a_point_is_inside_a_square_a_triangle_and_a_concave_polygon_only_where_it_should_be() {
        let square = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]];
        assert!(point_in_polygon(&square, 0.5, 0.5));
        assert!(!point_in_polygon(&square, 0.1, 0.5));
        assert!(!point_in_polygon(&square, 0.5, 0.9));
        let triangle = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        assert!(point_in_polygon(&triangle, 0.2, 0.2));
        assert!(!point_in_polygon(&triangle, 0.8, 0.8));
        // A "U": its notch (top middle) is outside.
        let u = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.6], [0.7, 0.6], [0.7, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert!(!point_in_polygon(&u, 0.5, 0.3));
        assert!(point_in_polygon(&u, 0.5, 0.8));
        assert!(point_in_polygon(&u, 0.1, 0.3));
        // Reversed order: the same.
        let mut rev = u.to_vec();
        rev.reverse();
        assert!(!point_in_polygon(&rev, 0.5, 0.3) && point_in_polygon(&rev, 0.5, 0.8));
    }

    #[test]
    fn bad_zones_are_refused_naming_the_zone_and_the_field() {
        let ok = zone("bed", ZoneKind::NoFalls, &[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]);
        assert!(validate(std::slice::from_ref(&ok)).is_ok());
        let cases = [
            (vec![ok.clone(), zone("tv", ZoneKind::MotionMask, &[[0.0, 0.0], [1.0, 0.0]])], "zones[1].points must have at least 3 points, got 2"),
            (vec![zone("bed", ZoneKind::Watch, &[[0.0, 0.0], [1.5, 0.0], [1.0, 1.0]])], "zones[0].points[1] must lie in [0, 1], got [1.5, 0]"),
            (vec![zone("bed", ZoneKind::Watch, &[[0.0, f64::NAN], [1.0, 0.0], [1.0, 1.0]])], "zones[0].points[0] must lie in [0, 1], got [0, NaN]"),
            (vec![ok.clone(), ok.clone()], "zones[1].name \"bed\" is the name of another zone of this camera"),
            (vec![zone("a b", ZoneKind::Watch, &ok.points)], "zones[0].name may only hold letters, digits, '_', '-' and '.' (found ' ')"),
            (vec![zone("a", ZoneKind::Watch, &[[0.5, 0.5]; 65])], "zones[0].points has 65 points; the limit is 64"),
        ];
        for (zones, want) in cases {
            assert_eq!(validate(&zones).unwrap_err().to_string(), want);
        }
        let many: Vec<Zone> = (0..33).map(|i| zone(&format!("z{i}"), ZoneKind::Watch, &ok.points)).collect();
        assert_eq!(validate(&many).unwrap_err().to_string(), "zones lists 33 zones; the limit is 32");
    }

    #[test]
    fn an_unknown_kind_is_refused_when_read() {
        let err = toml::from_str::<Zone>("name = \"x\"\nkind = \"bedroom\"\npoints = [[0, 0], [1, 0], [1, 1]]").unwrap_err();
        assert!(err.to_string().contains("unknown zone kind \"bedroom\": no_falls, motion_mask or watch"), "{err}");
    }
}
