//! LoST mappings kept for later calls (RFC 5222 s5.2, s5.5).
//!
//! - A mapping is stored under the query that got it: the service URN and
//!   the point (to 1e-7 degree) or the normalised civic address
//!   ([`CacheKey`]).
//! - It answers that key again, and, when it came with a geodetic service
//!   boundary, every later point of the same service inside the boundary.
//! - It is fresh until its `expires`; after that it stays, as
//!   [`Hit::Stale`], for the caller to use when the ECRF cannot answer.
//!   `NO-CACHE` mappings are not stored at all.
//! - The cache holds at most `capacity` mappings; the least recently used
//!   goes first.
//! - In the last quarter of its lifetime a fresh mapping is due for a
//!   refresh ([`Cache::claim_refresh`]): the first call that finds it then
//!   routes on it at once and has it asked again in the background, so a
//!   mapping in use is replaced before it expires and no call waits for
//!   the ECRF because of its age. One claim per mapping at a time: a
//!   refresh that fails is not claimed again for [`REFRESH_RETRY`].
//! - The boundaries' bounding boxes are kept in an R-tree (`rstar`): a
//!   point lookup tests only the polygons whose box holds the point, not
//!   every boundary of the cache. A mapping leaves the tree when it leaves
//!   the cache (evicted, replaced, or replaced by a `NO-CACHE` answer).
//!
//! Time is given (`now`), never read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use geo::{BoundingRect, Coord, Intersects, LineString, Polygon, Rect};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::RTree;
use time::OffsetDateTime;

use super::{Expires, Mapping};
use crate::pidf::{CivicAddress, Position, Shape};

/// Where a mapping was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// A service and a point in 1e-7 degrees (about a centimetre).
    Point {
        service: String,
        lat_e7: i64,
        lon_e7: i64,
    },
    /// A service and a civic address in [`civic_key`] form.
    Civic { service: String, address: String },
}

impl CacheKey {
    pub fn point(service: &str, lat: f64, lon: f64) -> CacheKey {
        CacheKey::Point {
            service: service.to_owned(),
            lat_e7: (lat * 1e7).round() as i64,
            lon_e7: (lon * 1e7).round() as i64,
        }
    }

    pub fn civic(service: &str, civic: &CivicAddress) -> CacheKey {
        CacheKey::Civic {
            service: service.to_owned(),
            address: civic_key(civic),
        }
    }
}

/// The civic elements that tell one address from another, in RFC 5139
/// order; `xml:lang`, names of people and places, and free-text location
/// notes are not part of the key.
const KEY_FIELDS: &[&str] = &[
    "country", "A1", "A2", "A3", "A4", "A5", "A6", "PRM", "PRD", "RD", "STS", "POD", "POM",
    "RDSEC", "RDBR", "RDSUBBR", "HNO", "HNS", "BLD", "UNIT", "FLR", "ROOM", "PC",
];

/// A civic address as a cache key: `FIELD=VALUE` for each key field
/// present, in a fixed order, values upper-cased with runs of whitespace
/// made one space, joined by `|`.
pub fn civic_key(civic: &CivicAddress) -> String {
    let mut out = String::new();
    for f in KEY_FIELDS {
        let Some(v) = civic.get(f) else { continue };
        let v: Vec<String> = v.split_whitespace().map(|w| w.to_uppercase()).collect();
        if v.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('|');
        }
        out.push_str(f);
        out.push('=');
        out.push_str(&v.join(" "));
    }
    out
}

/// A cached mapping found for a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Hit {
    /// Within its `expires`: use it without asking.
    Fresh(Arc<Mapping>),
    /// Past its `expires`: ask again, and fall back on it only if the
    /// answer does not come.
    Stale(Arc<Mapping>),
}

impl Hit {
    pub fn mapping(&self) -> &Arc<Mapping> {
        match self {
            Hit::Fresh(m) | Hit::Stale(m) => m,
        }
    }

    pub fn is_fresh(&self) -> bool {
        matches!(self, Hit::Fresh(_))
    }
}

struct Entry {
    mapping: Arc<Mapping>,
    /// When the mapping was stored: its lifetime runs from here to its
    /// `expires`.
    stored: OffsetDateTime,
    /// A refresh was claimed: none is claimed again before this time.
    refresh_claimed_until: Option<OffsetDateTime>,
    /// The geodetic boundary as polygons (x longitude, y latitude), with
    /// their bounding box.
    area: Vec<(Rect<f64>, Polygon<f64>)>,
    used: u64,
}

/// A boundary polygon's box in the tree: the key of its mapping and the
/// polygon's place in the entry's `area`.
type Leaf = GeomWithData<Rectangle<[f64; 2]>, (CacheKey, usize)>;

fn leaf(key: &CacheKey, part: usize, r: &Rect<f64>) -> Leaf {
    GeomWithData::new(
        Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
        (key.clone(), part),
    )
}

/// The mapping cache. Not shared: the core owns one.
pub struct Cache {
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
    /// The box of each boundary polygon of `entries`.
    boxes: RTree<Leaf>,
    /// Recency: use tick → key, oldest first.
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity)
            .field("len", &self.entries.len())
            .finish()
    }
}

/// How long a claimed refresh holds off the next claim of the same
/// mapping: the time for its answer to come, or, when the ECRF fails, the
/// pause before the next call tries again.
pub const REFRESH_RETRY: time::Duration = time::Duration::seconds(30);

/// Vertices a boundary polygon may have to be kept for point lookups; a
/// larger one is kept for its own key only.
pub const MAX_BOUNDARY_VERTICES: usize = 20_000;

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            boxes: RTree::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn touch(&mut self, key: &CacheKey) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(key) {
            self.order.remove(&e.used);
            e.used = tick;
            self.order.insert(tick, key.clone());
        }
    }

    /// The boundary boxes in the tree (one per polygon kept).
    pub fn boxes(&self) -> usize {
        self.boxes.size()
    }

    /// Takes `key`'s mapping out of the cache, its boxes out of the tree.
    fn remove(&mut self, key: &CacheKey) {
        let Some(old) = self.entries.remove(key) else {
            return;
        };
        self.order.remove(&old.used);
        for (n, (r, _)) in old.area.iter().enumerate() {
            self.boxes.remove(&leaf(key, n, r));
        }
    }

    /// Stores `mapping` as the answer for `key`, got at `now`. A
    /// `NO-CACHE` mapping is not stored (and removes what `key` held).
    pub fn insert(&mut self, key: CacheKey, mapping: Arc<Mapping>, now: OffsetDateTime) {
        self.remove(&key);
        if mapping.expires == Expires::NoCache {
            return;
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
        let area: Vec<(Rect<f64>, Polygon<f64>)> = mapping
            .boundary
            .as_ref()
            .map(|b| b.geodetic.iter().filter_map(polygon_of).collect())
            .unwrap_or_default();
        for (n, (r, _)) in area.iter().enumerate() {
            self.boxes.insert(leaf(&key, n, r));
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(
            key,
            Entry {
                mapping,
                stored: now,
                refresh_claimed_until: None,
                area,
                used: self.tick,
            },
        );
    }

    fn hit(mapping: &Arc<Mapping>, now: OffsetDateTime) -> Hit {
        if mapping.fresh_at(now) {
            Hit::Fresh(mapping.clone())
        } else {
            Hit::Stale(mapping.clone())
        }
    }

    /// The mapping for `service` at a point: the one stored for that very
    /// point while fresh, else a fresh one whose boundary holds the point,
    /// else a stale one (the point's own first).
    pub fn lookup_point(
        &mut self,
        service: &str,
        lat: f64,
        lon: f64,
        now: OffsetDateTime,
    ) -> Option<Hit> {
        self.lookup_point_keyed(service, lat, lon, now)
            .map(|(_, h)| h)
    }

    /// [`Cache::lookup_point`], with the key of the mapping found (the
    /// point's own, or that of the mapping whose boundary holds it).
    pub fn lookup_point_keyed(
        &mut self,
        service: &str,
        lat: f64,
        lon: f64,
        now: OffsetDateTime,
    ) -> Option<(CacheKey, Hit)> {
        let key = self.find_point(service, lat, lon, now)?;
        let hit = Self::hit(&self.entries[&key].mapping, now);
        self.touch(&key);
        Some((key, hit))
    }

    fn find_point(
        &self,
        service: &str,
        lat: f64,
        lon: f64,
        now: OffsetDateTime,
    ) -> Option<CacheKey> {
        let own = CacheKey::point(service, lat, lon);
        let own = match self.entries.get(&own) {
            Some(e) if e.mapping.fresh_at(now) => return Some(own),
            Some(_) => Some(own),
            None => None,
        };
        if !lat.is_finite() || !lon.is_finite() {
            return own;
        }
        let c = Coord { x: lon, y: lat };
        let mut stale: Option<&CacheKey> = None;
        for l in self.boxes.locate_all_at_point(&[lon, lat]) {
            let (k, part) = &l.data;
            let Some(e) = self.entries.get(k) else {
                continue;
            };
            if e.mapping.service != service {
                continue;
            }
            if !e.area.get(*part).is_some_and(|(_, p)| p.intersects(&c)) {
                continue;
            }
            if e.mapping.fresh_at(now) {
                return Some(k.clone());
            }
            stale = stale.or(Some(k));
        }
        own.or_else(|| stale.cloned())
    }

    /// The mapping stored for `service` at this civic address.
    pub fn lookup_civic(
        &mut self,
        service: &str,
        civic: &CivicAddress,
        now: OffsetDateTime,
    ) -> Option<Hit> {
        self.get(&CacheKey::civic(service, civic), now)
    }

    /// The mapping stored under `key` exactly.
    pub fn get(&mut self, key: &CacheKey, now: OffsetDateTime) -> Option<Hit> {
        let hit = Self::hit(&self.entries.get(key)?.mapping, now);
        self.touch(key);
        Some(hit)
    }

    /// Whether the mapping under `key` is to be refreshed now: fresh, in
    /// the last quarter of the time from when it was stored to its
    /// `expires`, and not claimed within [`REFRESH_RETRY`]. True claims
    /// it: until the answer replaces the mapping, or the pause passes,
    /// the same mapping gives false. `NO-EXPIRATION` mappings are never
    /// due.
    pub fn claim_refresh(&mut self, key: &CacheKey, now: OffsetDateTime) -> bool {
        let Some(e) = self.entries.get_mut(key) else {
            return false;
        };
        let Expires::At(end) = e.mapping.expires else {
            return false;
        };
        if now >= end || now < end - (end - e.stored) / 4 {
            return false;
        }
        if e.refresh_claimed_until.is_some_and(|until| now < until) {
            return false;
        }
        e.refresh_claimed_until = Some(now + REFRESH_RETRY);
        true
    }
}

fn coord(p: &Position) -> Coord<f64> {
    Coord { x: p.lon, y: p.lat }
}

/// A boundary shape as a polygon for point tests: polygons (and a prism's
/// base) as they are; other shapes are not used as areas.
fn polygon_of(shape: &Shape) -> Option<(Rect<f64>, Polygon<f64>)> {
    let ring = match shape {
        Shape::Polygon { exterior } => exterior,
        Shape::Prism { base, .. } => base,
        _ => return None,
    };
    if ring.len() < 3
        || ring.len() > MAX_BOUNDARY_VERTICES
        || ring
            .iter()
            .any(|p| !p.lat.is_finite() || !p.lon.is_finite())
    {
        return None;
    }
    let p = Polygon::new(
        LineString::from(ring.iter().map(coord).collect::<Vec<_>>()),
        vec![],
    );
    let r = p.bounding_rect()?;
    Some((r, p))
}
