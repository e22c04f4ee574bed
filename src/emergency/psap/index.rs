//! Spatial index over polygons: an R-tree of polygon bounding boxes, an exact
//! point-in-polygon test, and a search for the nearest polygon within a
//! distance in kilometres.

use geo::{BoundingRect, Coord, Intersects, LineString, MultiPolygon, Polygon, Relate};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};

/// Mean Earth radius in km times π/180: the length of one degree of latitude.
const KM_PER_DEGREE: f64 = 6371.0088 * std::f64::consts::PI / 180.0;

type Leaf = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// Polygons, each tagged with the index of the feature it belongs to.
#[derive(Debug, Default)]
pub(crate) struct PolygonIndex {
    polygons: Vec<(Polygon<f64>, u32)>,
    tree: RTree<Leaf>,
}

impl PolygonIndex {
    /// Indexes `(owner, geometry)` pairs; each polygon of a multipolygon gets
    /// its own leaf, so an owner with far-apart parts (Alaska's Aleutians,
    /// overseas territories) does not get one huge bounding box.
    pub(crate) fn new(mut features: Vec<(u32, MultiPolygon<f64>)>) -> Self {
        // Kept in owner order, so that an owner's polygons are found
        // together ([`polygons_of`](Self::polygons_of)).
        features.sort_by_key(|(owner, _)| *owner);
        let mut polygons = Vec::new();
        let mut leaves = Vec::new();
        for (owner, multi) in features {
            for polygon in multi {
                let Some(rect) = polygon.bounding_rect() else {
                    continue;
                };
                let slot = u32::try_from(polygons.len()).unwrap_or(u32::MAX);
                leaves.push(GeomWithData::new(
                    Rectangle::from_corners(
                        [rect.min().x, rect.min().y],
                        [rect.max().x, rect.max().y],
                    ),
                    slot,
                ));
                polygons.push((polygon, owner));
            }
        }
        PolygonIndex {
            polygons,
            tree: RTree::bulk_load(leaves),
        }
    }

    /// The lowest owner whose polygons hold the point (interior or boundary).
    /// `lon`/`lat` must be finite and in range.
    pub(crate) fn containing(&self, lon: f64, lat: f64) -> Option<u32> {
        let coord = Coord { x: lon, y: lat };
        self.tree
            .locate_all_at_point(&[lon, lat])
            .filter_map(|leaf| self.polygons.get(leaf.data as usize))
            .filter(|(polygon, _)| polygon.intersects(&coord))
            .map(|(_, owner)| *owner)
            .min()
    }

    /// The polygons of `owner`, in the order given.
    pub(crate) fn polygons_of(&self, owner: u32) -> impl Iterator<Item = &Polygon<f64>> {
        let start = self.polygons.partition_point(|(_, o)| *o < owner);
        self.polygons[start..]
            .iter()
            .take_while(move |(_, o)| *o == owner)
            .map(|(p, _)| p)
    }

    /// Whether a point inside `polygon` (one of `owner`'s) could be given
    /// to another owner by [`containing`](Self::containing): the interiors
    /// of `polygon` and of a polygon of a lower owner overlap. Polygons
    /// that only share an edge do not count.
    pub(crate) fn overlaps_lower(&self, polygon: &Polygon<f64>, owner: u32) -> bool {
        let Some(rect) = polygon.bounding_rect() else {
            return false;
        };
        let window = AABB::from_corners([rect.min().x, rect.min().y], [rect.max().x, rect.max().y]);
        self.tree
            .locate_in_envelope_intersecting(&window)
            .filter_map(|leaf| self.polygons.get(leaf.data as usize))
            .filter(|(_, o)| *o < owner)
            .any(|(other, _)| {
                let m = polygon.relate(other);
                m.is_intersects() && !m.is_touches()
            })
    }

    /// The owner nearest to the point among those that `accept`, if it lies
    /// within `max_km`, with its distance in km. Ties go to the lowest owner.
    pub(crate) fn nearest(
        &self,
        lon: f64,
        lat: f64,
        max_km: f64,
        mut accept: impl FnMut(u32) -> bool,
    ) -> Option<(u32, f64)> {
        if max_km.is_nan() || max_km <= 0.0 {
            return None;
        }
        let dlat = max_km / KM_PER_DEGREE;
        let cos = lat.to_radians().cos();
        let dlon = if cos * 180.0 * KM_PER_DEGREE > max_km {
            (max_km / (KM_PER_DEGREE * cos)).min(180.0)
        } else {
            180.0
        };
        let mut best: Option<(u32, f64)> = None;
        // Search the window, and its copies one turn east and west when it
        // crosses the antimeridian.
        for shift in [0.0, 360.0, -360.0] {
            let (west, east) = (lon - dlon + shift, lon + dlon + shift);
            if shift != 0.0 && (east < -180.0 || west > 180.0) {
                continue;
            }
            let window = AABB::from_corners([west, lat - dlat], [east, lat + dlat]);
            for leaf in self.tree.locate_in_envelope_intersecting(&window) {
                let Some((polygon, owner)) = self.polygons.get(leaf.data as usize) else {
                    continue;
                };
                if !accept(*owner) {
                    continue;
                }
                let km = polygon_km(polygon, lon, lat);
                if km > max_km {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some((b_owner, b_km)) => km < b_km || (km == b_km && *owner < b_owner),
                };
                if better {
                    best = Some((*owner, km));
                }
            }
        }
        best
    }
}

/// Distance in km from a point to a polygon's outline (0 inside it). Uses a
/// flat projection centred on the point, accurate to well under 1% at the
/// tens of kilometres this is meant for.
pub(crate) fn polygon_km(polygon: &Polygon<f64>, lon: f64, lat: f64) -> f64 {
    if polygon.intersects(&Coord { x: lon, y: lat }) {
        return 0.0;
    }
    let kx = KM_PER_DEGREE * lat.to_radians().cos();
    let ky = KM_PER_DEGREE;
    std::iter::once(polygon.exterior())
        .chain(polygon.interiors())
        .map(|ring| ring_km(ring, lon, lat, kx, ky))
        .fold(f64::INFINITY, f64::min)
}

fn ring_km(ring: &LineString<f64>, lon: f64, lat: f64, kx: f64, ky: f64) -> f64 {
    let project = |c: &Coord<f64>| {
        let mut dlon = c.x - lon;
        if dlon > 180.0 {
            dlon -= 360.0;
        } else if dlon < -180.0 {
            dlon += 360.0;
        }
        (dlon * kx, (c.y - lat) * ky)
    };
    let mut best = f64::INFINITY;
    for pair in ring.0.windows(2) {
        let (ax, ay) = project(&pair[0]);
        let (bx, by) = project(&pair[1]);
        best = best.min(origin_to_segment(ax, ay, bx, by));
    }
    best
}

/// Distance from (0, 0) to the segment a-b.
fn origin_to_segment(ax: f64, ay: f64, bx: f64, by: f64) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (px, py) = (ax + t * dx, ay + t * dy);
    (px * px + py * py).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn square(x0: f64, y0: f64, size: f64) -> MultiPolygon<f64> {
        MultiPolygon(vec![polygon![
            (x: x0, y: y0),
            (x: x0 + size, y: y0),
            (x: x0 + size, y: y0 + size),
            (x: x0, y: y0 + size),
            (x: x0, y: y0),
        ]])
    }

    #[test]
    fn contains_and_shared_edge_goes_to_lowest_owner() {
        let index = PolygonIndex::new(vec![(7, square(0.0, 0.0, 1.0)), (3, square(1.0, 0.0, 1.0))]);
        assert_eq!(index.containing(0.5, 0.5), Some(7));
        assert_eq!(index.containing(1.5, 0.5), Some(3));
        assert_eq!(index.containing(1.0, 0.5), Some(3));
        assert_eq!(index.containing(2.5, 0.5), None);
    }

    #[test]
    fn an_owners_polygons_and_their_overlaps() {
        let mut two = square(5.0, 5.0, 1.0);
        two.0.extend(square(0.5, 0.0, 1.0).0);
        let index = PolygonIndex::new(vec![
            (4, two),
            (1, square(0.0, 0.0, 1.0)),
            (2, square(1.0, 0.0, 1.0)),
        ]);
        let of = |o: u32| index.polygons_of(o).cloned().collect::<Vec<_>>();
        assert_eq!(of(1), square(0.0, 0.0, 1.0).0);
        assert_eq!(of(4).len(), 2);
        assert!(of(3).is_empty());
        let cases = [
            // Shares an edge with owner 1: no overlap.
            (2, &of(2)[0], false),
            // Owner 1 is lowest: nothing can take its points.
            (1, &of(1)[0], false),
            // Overlaps owners 1 and 2.
            (4, &of(4)[1], true),
            // Far from the others.
            (4, &of(4)[0], false),
        ];
        for (owner, polygon, want) in cases {
            assert_eq!(
                index.overlaps_lower(polygon, owner),
                want,
                "{owner} {polygon:?}"
            );
        }
    }

    #[test]
    fn nearest_measures_kilometres() {
        let index = PolygonIndex::new(vec![(1, square(0.0, 0.0, 1.0))]);
        // 0.01° of latitude south of the square is about 1.11 km
        let (owner, km) = index.nearest(0.5, -0.01, 5.0, |_| true).unwrap();
        assert_eq!(owner, 1);
        assert!((km - 1.112).abs() < 0.01, "{km}");
        assert_eq!(index.nearest(0.5, -0.1, 5.0, |_| true), None);
        assert_eq!(index.nearest(0.5, -0.01, 5.0, |_| false), None);
        assert_eq!(index.nearest(0.5, -0.01, 0.0, |_| true), None);
        assert_eq!(index.nearest(0.5, -0.01, f64::NAN, |_| true), None);
    }

    #[test]
    fn nearest_shrinks_longitude_with_latitude() {
        // At 60°N a degree of longitude is half as long as at the equator.
        let index = PolygonIndex::new(vec![(1, square(10.0, 59.0, 1.0))]);
        let (_, km) = index.nearest(11.05, 59.5, 10.0, |_| true).unwrap();
        assert!((km - 0.05 * KM_PER_DEGREE * 0.5).abs() < 0.05, "{km}");
    }

    #[test]
    fn nearest_crosses_the_antimeridian() {
        let index = PolygonIndex::new(vec![(1, square(-180.0, 51.0, 0.5))]);
        let (owner, km) = index.nearest(179.99, 51.2, 5.0, |_| true).unwrap();
        assert_eq!(owner, 1);
        assert!(km < 1.0, "{km}");
    }

    #[test]
    fn nearest_near_the_pole_does_not_panic() {
        let index = PolygonIndex::new(vec![(1, square(0.0, 89.0, 1.0))]);
        assert!(index.nearest(170.0, 90.0, 5.0, |_| true).is_some());
    }
}
