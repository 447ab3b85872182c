//! Zones compiled for fast, exact decisions.
//!
//! A zone is projected once onto the tangent plane at its centre; a fix is
//! projected into that plane and compared there. The one answer every order
//! rule needs is the *signed distance* from a position to the zone's boundary:
//! negative inside, positive outside, in metres.
//!
//! Small polygons are scanned edge by edge in one pass (crossing parity and
//! nearest edge together). Polygons with many edges carry an R-tree of their
//! edges so both answers cost a logarithmic lookup instead.

use geo::{Coord, Line};
use rstar::{RTree, AABB};

use crate::geodesy::{degree_margins, Ecef, LocalFrame, Planar};
use crate::model::ZoneGeometry;

/// Above this many edges a zone gets an edge index.
const EDGE_INDEX_THRESHOLD: usize = 96;

/// A box in degrees: `min = [lon, lat]`, `max = [lon, lat]`.
pub type DegreeBox = AABB<[f64; 2]>;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CompiledZone {
    frame: LocalFrame,
    shape: Shape,
    /// The zone's own extent in degrees.
    bounds: DegreeBox,
    /// Largest distance from the frame origin to any vertex (metres).
    reach_m: f64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Shape {
    /// Centred on the frame origin.
    Circle { radius_m: f64 },
    Rings {
        /// Closed rings, last point equal to the first; parity across all
        /// rings decides inside (polygons of a multipolygon do not overlap).
        rings: Vec<Vec<Planar>>,
        edges: Option<RTree<Line<f64>>>,
    },
}

impl CompiledZone {
    /// Compiles a validated geometry. Returns `None` for a geometry without a
    /// single usable ring, which validation refuses before it gets here.
    pub fn compile(geometry: &ZoneGeometry) -> Option<CompiledZone> {
        match geometry {
            ZoneGeometry::Circle {
                coordinates: [lon, lat],
                radius_m,
            } => {
                let frame = LocalFrame::new(*lat, *lon);
                let (dlat, dlon) = degree_margins(*lat, *radius_m);
                Some(CompiledZone {
                    frame,
                    shape: Shape::Circle {
                        radius_m: *radius_m,
                    },
                    bounds: AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]),
                    reach_m: *radius_m,
                })
            }
            ZoneGeometry::Polygon { coordinates } => Self::from_rings(coordinates.iter()),
            ZoneGeometry::MultiPolygon { coordinates } => {
                Self::from_rings(coordinates.iter().flatten())
            }
        }
    }

    fn from_rings<'a>(rings: impl Iterator<Item = &'a Vec<[f64; 2]>> + Clone) -> Option<Self> {
        let mut min = [f64::INFINITY; 2];
        let mut max = [f64::NEG_INFINITY; 2];
        for p in rings.clone().flatten() {
            for i in 0..2 {
                min[i] = min[i].min(p[i]);
                max[i] = max[i].max(p[i]);
            }
        }
        if !(min[0].is_finite() && max[0].is_finite()) {
            return None;
        }
        let frame = LocalFrame::new((min[1] + max[1]) / 2.0, (min[0] + max[0]) / 2.0);
        let planar: Vec<Vec<Planar>> = rings
            .map(|ring| {
                let mut r: Vec<Planar> = ring
                    .iter()
                    .map(|[lon, lat]| frame.project_lat_lon(*lat, *lon))
                    .collect();
                if r.first() != r.last() {
                    if let Some(first) = r.first().copied() {
                        r.push(first);
                    }
                }
                r
            })
            .filter(|r| r.len() >= 4)
            .collect();
        if planar.is_empty() {
            return None;
        }
        let reach_m = planar
            .iter()
            .flatten()
            .map(|p| p.east.hypot(p.north))
            .fold(0.0, f64::max);
        let edge_count: usize = planar.iter().map(|r| r.len() - 1).sum();
        let edges = (edge_count > EDGE_INDEX_THRESHOLD).then(|| {
            RTree::bulk_load(
                planar
                    .iter()
                    .flat_map(|r| r.windows(2))
                    .map(|w| Line::new(coord(w[0]), coord(w[1])))
                    .collect(),
            )
        });
        Some(CompiledZone {
            frame,
            shape: Shape::Rings {
                rings: planar,
                edges,
            },
            bounds: AABB::from_corners(min, max),
            reach_m,
        })
    }

    pub fn frame(&self) -> &LocalFrame {
        &self.frame
    }

    /// The zone's extent in degrees, grown by `margin_m` metres on every side.
    pub fn bounds_with_margin(&self, margin_m: f64) -> DegreeBox {
        let (lo, hi) = (self.bounds.lower(), self.bounds.upper());
        let lat_extreme = if lo[1].abs() > hi[1].abs() {
            lo[1]
        } else {
            hi[1]
        };
        let (dlat, dlon) = degree_margins(lat_extreme, margin_m);
        AABB::from_corners([lo[0] - dlon, lo[1] - dlat], [hi[0] + dlon, hi[1] + dlat])
    }

    /// Metres from the frame origin that enclose every vertex (the zone's
    /// planar distances never exceed the true ones, so this bounds it).
    pub fn reach_m(&self) -> f64 {
        self.reach_m + 1.0
    }

    /// Whether a position could lie within `margin_m` of the zone: a cheap
    /// test that lets most fixes skip the exact one.
    #[inline]
    pub fn may_touch(&self, p: &Ecef, margin_m: f64) -> bool {
        // The tangent plane only shortens distances, so its reach is a safe bound.
        self.frame.origin().distance_m(p) <= self.reach_m() + margin_m
    }

    /// Signed distance in metres from `p` to the boundary: negative inside.
    pub fn signed_distance_m(&self, p: &Ecef) -> f64 {
        let q = self.frame.project(p);
        match &self.shape {
            Shape::Circle { radius_m } => q.east.hypot(q.north) - radius_m,
            Shape::Rings { rings, edges: None } => {
                let mut inside = false;
                let mut best = f64::INFINITY;
                for ring in rings {
                    for w in ring.windows(2) {
                        let (a, b) = (w[0], w[1]);
                        if crosses_eastward_ray(q, a, b) {
                            inside = !inside;
                        }
                        best = best.min(segment_distance_sq(q, a, b));
                    }
                }
                let d = best.sqrt();
                if inside {
                    -d
                } else {
                    d
                }
            }
            Shape::Rings {
                edges: Some(tree), ..
            } => {
                let d = tree
                    // Not `nearest_neighbor`: its pruning can miss the nearest
                    // segment (georust/rstar#13); the iterator is exact.
                    .nearest_neighbor_iter(&geo::Point::new(q.east, q.north))
                    .next()
                    .map(|l| segment_distance_sq(q, planar(l.start), planar(l.end)).sqrt())
                    .unwrap_or(f64::INFINITY);
                let far_east = tree.root().envelope().upper().x() + 1.0;
                let ray = AABB::from_corners(
                    geo::Point::new(q.east, q.north),
                    geo::Point::new(far_east, q.north),
                );
                let crossings = tree
                    .locate_in_envelope_intersecting(&ray)
                    .filter(|l| crosses_eastward_ray(q, planar(l.start), planar(l.end)))
                    .count();
                if crossings % 2 == 1 {
                    -d
                } else {
                    d
                }
            }
        }
    }
}

fn coord(p: Planar) -> Coord<f64> {
    Coord {
        x: p.east,
        y: p.north,
    }
}

fn planar(c: Coord<f64>) -> Planar {
    Planar {
        east: c.x,
        north: c.y,
    }
}

/// Whether the edge a→b crosses the ray from `q` towards +east. Half-open in
/// north (a vertex exactly on the ray counts for one of its two edges only).
#[inline]
fn crosses_eastward_ray(q: Planar, a: Planar, b: Planar) -> bool {
    if (a.north > q.north) == (b.north > q.north) {
        return false;
    }
    let t = (q.north - a.north) / (b.north - a.north);
    q.east < a.east + t * (b.east - a.east)
}

#[inline]
fn segment_distance_sq(q: Planar, a: Planar, b: Planar) -> f64 {
    let (abx, aby) = (b.east - a.east, b.north - a.north);
    let (aqx, aqy) = (q.east - a.east, q.north - a.north);
    let len_sq = abx * abx + aby * aby;
    let t = if len_sq > 0.0 {
        ((aqx * abx + aqy * aby) / len_sq).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (dx, dy) = (aqx - t * abx, aqy - t * aby);
    dx * dx + dy * dy
}
