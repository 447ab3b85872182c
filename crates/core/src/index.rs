//! R-trees over zone extents and live device positions, in degrees.
//!
//! Both trees only narrow the search; every answer is then decided exactly
//! in metres. Zone boxes are grown by their warning buffer. A device is
//! indexed at an *anchor* that is moved only when the device strays more than
//! [`ANCHOR_SLACK_M`] from it, so a device walking about does not rewrite the
//! tree on every fix; queries widen their box by the slack to compensate.

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};

use crate::geodesy::{degree_margins, Ecef};

/// How far a device may drift from its indexed anchor.
pub const ANCHOR_SLACK_M: f64 = 50.0;

/// Where an order lives: slots in the engine's case table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderRef {
    pub case: usize,
    pub order: usize,
}

type ZoneItem = GeomWithData<Rectangle<[f64; 2]>, OrderRef>;
type PositionItem = GeomWithData<[f64; 2], usize>;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ZoneIndex {
    tree: RTree<ZoneItem>,
}

impl ZoneIndex {
    pub fn insert(&mut self, bounds: AABB<[f64; 2]>, at: OrderRef) {
        self.tree
            .insert(GeomWithData::new(Rectangle::from_aabb(bounds), at));
    }

    pub fn remove(&mut self, bounds: AABB<[f64; 2]>, at: OrderRef) {
        self.tree
            .remove(&GeomWithData::new(Rectangle::from_aabb(bounds), at));
    }

    /// Orders whose (buffered) box contains the point.
    pub fn candidates(&self, lat: f64, lon: f64) -> impl Iterator<Item = OrderRef> + '_ {
        self.tree
            .locate_all_at_point(&[lon, lat])
            .map(|item| item.data)
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Anchor {
    point: [f64; 2],
    ecef: Ecef,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PositionIndex {
    tree: RTree<PositionItem>,
    /// Anchor by device slot.
    anchors: Vec<Option<Anchor>>,
}

impl PositionIndex {
    /// Records that device `slot` is now at the position.
    pub fn update(&mut self, slot: usize, lat: f64, lon: f64, ecef: Ecef) {
        if self.anchors.len() <= slot {
            self.anchors.resize(slot + 1, None);
        }
        if let Some(anchor) = self.anchors[slot] {
            if anchor.ecef.distance_m(&ecef) <= ANCHOR_SLACK_M {
                return;
            }
            self.tree.remove(&GeomWithData::new(anchor.point, slot));
        }
        let point = [lon, lat];
        self.tree.insert(GeomWithData::new(point, slot));
        self.anchors[slot] = Some(Anchor { point, ecef });
    }

    pub fn remove(&mut self, slot: usize) {
        if let Some(Some(anchor)) = self.anchors.get_mut(slot).map(Option::take) {
            self.tree.remove(&GeomWithData::new(anchor.point, slot));
        }
    }

    /// Device slots possibly within `radius_m` of the point.
    pub fn candidates(
        &self,
        lat: f64,
        lon: f64,
        radius_m: f64,
    ) -> impl Iterator<Item = usize> + '_ {
        let (dlat, dlon) = degree_margins(lat, radius_m + ANCHOR_SLACK_M);
        let query = AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]);
        self.tree.locate_in_envelope(&query).map(|item| item.data)
    }
}
