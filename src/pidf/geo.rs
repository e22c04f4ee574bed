//! Geodetic shapes (RFC 5491 s5) and their reduction to a point and a radius.
//!
//! Every shape keeps its own parameters in [`Shape`]; [`Geo`] adds the point
//! and uncertainty radius that routing uses:
//!
//! | shape | point | radius |
//! | --- | --- | --- |
//! | Point | the point | none |
//! | Circle, Sphere | the centre | the radius |
//! | Ellipse, Ellipsoid | the centre | the larger horizontal semi-axis |
//! | ArcBand | see [`arc_band_reduction`] | idem |
//! | Polygon, Prism | area centroid of the (base) ring | distance to the farthest vertex |
//!
//! Distances use a spherical Earth of mean radius 6 371 008.8 m, which is
//! well within the uncertainty of any location a caller sends.

use serde::Serialize;

use super::dom::{trim_xml, Attr, Dom, Ns};
use super::PidfError;

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS 84 position: latitude and longitude in degrees, altitude in metres.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Position {
    pub lat: f64,
    pub lon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<f64>,
}

/// A geodetic shape of RFC 5491 with its own parameters (lengths in metres,
/// angles in degrees clockwise from true north).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Shape {
    /// `gml:Point` (2D or 3D), or the RFC 4119 `gml:coordinates` form.
    Point {
        pos: Position,
    },
    Circle {
        center: Position,
        radius_m: f64,
    },
    Ellipse {
        center: Position,
        semi_major_m: f64,
        semi_minor_m: f64,
        orientation_deg: f64,
    },
    ArcBand {
        center: Position,
        inner_radius_m: f64,
        outer_radius_m: f64,
        start_angle_deg: f64,
        opening_angle_deg: f64,
    },
    /// The exterior ring as sent (usually closed: last vertex = first).
    Polygon {
        exterior: Vec<Position>,
    },
    Sphere {
        center: Position,
        radius_m: f64,
    },
    Ellipsoid {
        center: Position,
        semi_major_m: f64,
        semi_minor_m: f64,
        vertical_m: f64,
        orientation_deg: f64,
    },
    /// A polygon base (3D vertices) extruded upwards by `height_m`.
    Prism {
        base: Vec<Position>,
        height_m: f64,
    },
}

impl Shape {
    /// The shape's name in lower case, as in the corpus manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            Shape::Point { .. } => "point",
            Shape::Circle { .. } => "circle",
            Shape::Ellipse { .. } => "ellipse",
            Shape::ArcBand { .. } => "arcband",
            Shape::Polygon { .. } => "polygon",
            Shape::Sphere { .. } => "sphere",
            Shape::Ellipsoid { .. } => "ellipsoid",
            Shape::Prism { .. } => "prism",
        }
    }
}

/// A geodetic location: its shape, and the point and radius used for routing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Geo {
    pub shape: Shape,
    pub lat: f64,
    pub lon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<f64>,
    /// Uncertainty radius in metres around (`lat`, `lon`); `None` for a point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
}

impl Geo {
    /// Builds the routing point and radius of `shape`.
    pub fn from_shape(shape: Shape) -> Geo {
        let (pos, radius_m) = match &shape {
            Shape::Point { pos } => (*pos, None),
            Shape::Circle { center, radius_m } | Shape::Sphere { center, radius_m } => {
                (*center, Some(*radius_m))
            }
            Shape::Ellipse {
                center,
                semi_major_m,
                semi_minor_m,
                ..
            }
            | Shape::Ellipsoid {
                center,
                semi_major_m,
                semi_minor_m,
                ..
            } => (*center, Some(semi_major_m.max(*semi_minor_m))),
            Shape::ArcBand {
                center,
                inner_radius_m,
                outer_radius_m,
                start_angle_deg,
                opening_angle_deg,
            } => {
                let (p, r) = arc_band_reduction(
                    *center,
                    *inner_radius_m,
                    *outer_radius_m,
                    *start_angle_deg,
                    *opening_angle_deg,
                );
                (p, Some(r))
            }
            Shape::Polygon { exterior } => {
                let (p, r) = ring_reduction(exterior);
                (p, Some(r))
            }
            Shape::Prism { base, height_m } => {
                let (mut p, r) = ring_reduction(base);
                // The middle of the prism: base altitude plus half its height.
                p.alt = Some(p.alt.unwrap_or(0.0) + height_m / 2.0);
                (p, Some(r))
            }
        };
        Geo {
            shape,
            lat: pos.lat,
            lon: pos.lon,
            alt: pos.alt,
            radius_m,
        }
    }
}

/// The point and radius for an arc band.
///
/// The point is the middle of the band: at the mean of the inner and outer
/// radii, on the bearing that halves the opening angle. The radius is the
/// distance from there to the farthest point of the band, which is one of its
/// four corners (the squared planar distance to a band point is convex in the
/// radius and grows with the angle away from the middle bearing). When the
/// band is so wide that the circle of the outer radius around the centre is
/// smaller, that circle is used instead.
pub(crate) fn arc_band_reduction(
    center: Position,
    inner: f64,
    outer: f64,
    start_deg: f64,
    opening_deg: f64,
) -> (Position, f64) {
    let mid_r = (inner + outer) / 2.0;
    let half = (opening_deg / 2.0).min(180.0).to_radians();
    let corner = |r: f64| {
        (r * r + mid_r * mid_r - 2.0 * r * mid_r * half.cos())
            .max(0.0)
            .sqrt()
    };
    let reach = corner(inner).max(corner(outer));
    if reach >= outer {
        return (center, outer);
    }
    let bearing = start_deg + opening_deg / 2.0;
    let mut p = destination(center, bearing, mid_r);
    p.alt = center.alt;
    (p, reach)
}

/// Great-circle distance in metres.
pub(crate) fn distance_m(a: Position, b: Position) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The point `dist_m` metres from `from` on the initial bearing `bearing_deg`.
fn destination(from: Position, bearing_deg: f64, dist_m: f64) -> Position {
    let d = dist_m / EARTH_RADIUS_M;
    let b = bearing_deg.to_radians();
    let la1 = from.lat.to_radians();
    let lo1 = from.lon.to_radians();
    let la2 = (la1.sin() * d.cos() + la1.cos() * d.sin() * b.cos()).asin();
    let lo2 = lo1 + (b.sin() * d.sin() * la1.cos()).atan2(d.cos() - la1.sin() * la2.sin());
    Position {
        lat: la2.to_degrees(),
        lon: normalize_lon(lo2.to_degrees()),
        alt: None,
    }
}

fn normalize_lon(lon: f64) -> f64 {
    let l = (lon + 180.0).rem_euclid(360.0) - 180.0;
    if l == -180.0 && lon > 0.0 {
        180.0
    } else {
        l
    }
}

/// Area centroid of a ring and the distance from it to the farthest vertex.
///
/// The centroid is computed on a local equirectangular projection around the
/// ring's mean latitude, with longitudes taken relative to the first vertex
/// (so a ring across the antimeridian works). A degenerate ring (no area)
/// falls back to the mean of its distinct vertices. The altitude is the mean
/// of the vertex altitudes when every vertex has one.
pub(crate) fn ring_reduction(ring: &[Position]) -> (Position, f64) {
    let mut pts: &[Position] = ring;
    if pts.len() > 1 && pts.first().map(|p| (p.lat, p.lon)) == pts.last().map(|p| (p.lat, p.lon)) {
        pts = &pts[..pts.len() - 1];
    }
    let Some(first) = pts.first().copied() else {
        return (
            Position {
                lat: 0.0,
                lon: 0.0,
                alt: None,
            },
            0.0,
        );
    };
    let n = pts.len() as f64;
    let mean_lat = pts.iter().map(|p| p.lat).sum::<f64>() / n;
    let k = mean_lat.to_radians().cos().max(1e-9);
    let xy: Vec<(f64, f64)> = pts
        .iter()
        .map(|p| (normalize_lon(p.lon - first.lon) * k, p.lat - first.lat))
        .collect();
    let (mut a2, mut cx, mut cy) = (0.0, 0.0, 0.0);
    for (i, &(x0, y0)) in xy.iter().enumerate() {
        let (x1, y1) = xy[(i + 1) % xy.len()];
        let cross = x0 * y1 - x1 * y0;
        a2 += cross;
        cx += (x0 + x1) * cross;
        cy += (y0 + y1) * cross;
    }
    let (x, y) = if a2.abs() > 1e-12 {
        (cx / (3.0 * a2), cy / (3.0 * a2))
    } else {
        (
            xy.iter().map(|p| p.0).sum::<f64>() / n,
            xy.iter().map(|p| p.1).sum::<f64>() / n,
        )
    };
    let alt = if pts.iter().all(|p| p.alt.is_some()) {
        Some(pts.iter().filter_map(|p| p.alt).sum::<f64>() / n)
    } else {
        None
    };
    let c = Position {
        lat: first.lat + y,
        lon: normalize_lon(first.lon + x / k),
        alt,
    };
    let r = pts.iter().map(|&p| distance_m(c, p)).fold(0.0, f64::max);
    (c, r)
}

/// The coordinate reference system in force for a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Crs {
    /// No `srsName` seen: positions are read as lat lon [alt].
    Unspecified,
    /// EPSG 4326: latitude, longitude.
    TwoD,
    /// EPSG 4979: latitude, longitude, ellipsoidal height.
    ThreeD,
}

impl Crs {
    fn dimension(self) -> usize {
        if self == Crs::ThreeD {
            3
        } else {
            2
        }
    }
}

/// The numeric EPSG code at the end of a CRS or unit URN/URL, such as
/// `urn:ogc:def:crs:EPSG::4326`, `urn:ogc:def:uom:EPSG:6.6:9001`,
/// `EPSG:4326` or `http://www.opengis.net/def/crs/EPSG/0/4326`.
fn epsg_code(s: &str) -> Option<u32> {
    let s = trim_xml(s);
    if !s.to_ascii_lowercase().contains("epsg") {
        return None;
    }
    s.rsplit([':', '/', '#']).next()?.parse().ok()
}

/// The CRS named by `srsName`, or `inherited` when there is none. Any CRS
/// other than WGS 84 in latitude-longitude order is refused, since reading
/// its coordinates as lat/lon would place the caller somewhere else.
pub(crate) fn crs_of(srs_name: Option<&str>, inherited: Crs) -> Result<Crs, PidfError> {
    let Some(name) = srs_name else {
        return Ok(inherited);
    };
    match epsg_code(name) {
        Some(4326) => Ok(Crs::TwoD),
        Some(4979) => Ok(Crs::ThreeD),
        _ => Err(PidfError::UnsupportedCrs(name.to_owned())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Metre,
    Degree,
}

fn check_uom(uom: Option<&str>, unit: Unit) -> Result<(), PidfError> {
    let Some(u) = uom else {
        return Ok(());
    };
    let want = match unit {
        Unit::Metre => 9001,
        Unit::Degree => 9102,
    };
    if epsg_code(u) == Some(want) {
        Ok(())
    } else {
        Err(PidfError::UnsupportedUom(u.to_owned()))
    }
}

/// Parses an XML Schema double; refuses NaN and infinities.
pub(crate) fn number(s: &str) -> Option<f64> {
    let s = trim_xml(s);
    let lower = s.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn numbers(s: &str, what: &str) -> Result<Vec<f64>, PidfError> {
    s.split(|c: char| super::dom::is_xml_ws(c))
        .filter(|t| !t.is_empty())
        .map(|t| number(t).ok_or_else(|| invalid(format!("{what}: '{t}' is not a number"))))
        .collect()
}

fn invalid(msg: String) -> PidfError {
    PidfError::InvalidShape(msg)
}

fn position(lat: f64, lon: f64, alt: Option<f64>) -> Result<Position, PidfError> {
    if !(-90.0..=90.0).contains(&lat) {
        return Err(PidfError::OutOfRange(format!("latitude {lat}")));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(PidfError::OutOfRange(format!("longitude {lon}")));
    }
    Ok(Position { lat, lon, alt })
}

fn pos_from(v: &[f64], what: &str) -> Result<Position, PidfError> {
    match *v {
        [lat, lon] => position(lat, lon, None),
        [lat, lon, alt] => position(lat, lon, Some(alt)),
        _ => Err(invalid(format!(
            "{what} has {} coordinates, expected 2 or 3",
            v.len()
        ))),
    }
}

/// Parses the RFC 4119 `gml:coordinates` text, e.g. `37:46:30N 122:25:10W`.
///
/// Tokens are split on whitespace and commas. Each is either decimal degrees
/// or `D:M[:S]`, optionally followed by a hemisphere letter; a letter puts the
/// value in its axis (N/S latitude, E/W longitude), otherwise the order is
/// latitude, longitude, then altitude in metres.
pub(crate) fn parse_coordinates(text: &str) -> Result<Position, PidfError> {
    let mut lat = None;
    let mut lon = None;
    let mut plain = Vec::new();
    for tok in text
        .split(|c: char| c == ',' || super::dom::is_xml_ws(c))
        .filter(|t| !t.is_empty())
    {
        let (body, hemi) = match tok.chars().last() {
            Some(c @ ('N' | 'S' | 'E' | 'W' | 'n' | 's' | 'e' | 'w')) => {
                (&tok[..tok.len() - 1], Some(c.to_ascii_uppercase()))
            }
            _ => (tok, None),
        };
        let v = dms(body).ok_or_else(|| invalid(format!("gml:coordinates: bad value '{tok}'")))?;
        match hemi {
            Some('N') => lat = Some(v),
            Some('S') => lat = Some(-v),
            Some('E') => lon = Some(v),
            Some('W') => lon = Some(-v),
            _ => plain.push(v),
        }
    }
    let mut plain = plain.into_iter();
    let lat = lat.or_else(|| plain.next());
    let lon = lon.or_else(|| plain.next());
    let alt = plain.next();
    match (lat, lon, plain.next()) {
        (Some(lat), Some(lon), None) => position(lat, lon, alt),
        _ => Err(invalid(
            "gml:coordinates: expected latitude and longitude".into(),
        )),
    }
}

/// `D`, `D:M` or `D:M:S` (each part may have decimals) in degrees.
fn dms(s: &str) -> Option<f64> {
    let mut parts = s.split(':');
    let d = number(parts.next()?)?;
    let m = parts.next().map_or(Some(0.0), number)?;
    let sec = parts.next().map_or(Some(0.0), number)?;
    if parts.next().is_some() || !(0.0..60.0).contains(&m) || !(0.0..60.0).contains(&sec) {
        return None;
    }
    let mag = d.abs() + m / 60.0 + sec / 3600.0;
    Some(if s.trim_start().starts_with('-') {
        -mag
    } else {
        mag
    })
}

fn gml_child(dom: &Dom<'_>, i: usize, name: &str) -> Option<usize> {
    dom.child(i, &[Ns::Gml, Ns::GmlLegacy], name)
}

fn required(dom: &Dom<'_>, shape: usize, name: &str) -> Result<usize, PidfError> {
    dom.child(shape, &[Ns::GeoShape], name)
        .ok_or_else(|| invalid(format!("gs:{} without gs:{name}", dom.name(shape))))
}

fn measure(dom: &Dom<'_>, i: usize, unit: Unit) -> Result<f64, PidfError> {
    check_uom(dom.attr(i, Attr::Uom), unit)?;
    number(dom.text(i)).ok_or_else(|| invalid(format!("gs:{} is not a number", dom.name(i))))
}

fn length(dom: &Dom<'_>, shape: usize, name: &str) -> Result<f64, PidfError> {
    let v = measure(dom, required(dom, shape, name)?, Unit::Metre)?;
    if v < 0.0 {
        return Err(invalid(format!("gs:{name} is negative")));
    }
    Ok(v)
}

fn angle(dom: &Dom<'_>, shape: usize, name: &str) -> Result<f64, PidfError> {
    measure(dom, required(dom, shape, name)?, Unit::Degree)
}

/// The single `gml:pos` of a shape centred on a point.
fn center(dom: &Dom<'_>, shape: usize) -> Result<Position, PidfError> {
    let pos = gml_child(dom, shape, "pos")
        .ok_or_else(|| invalid(format!("{} without gml:pos", dom.name(shape))))?;
    pos_from(&numbers(dom.text(pos), "gml:pos")?, "gml:pos")
}

/// The exterior ring of a `gml:Polygon`, from `gml:pos` elements or a
/// `gml:posList`.
fn polygon_ring(dom: &Dom<'_>, polygon: usize, crs: Crs) -> Result<Vec<Position>, PidfError> {
    let crs = crs_of(dom.attr(polygon, Attr::SrsName), crs)?;
    let ring = gml_child(dom, polygon, "exterior")
        .and_then(|e| gml_child(dom, e, "LinearRing"))
        .ok_or_else(|| invalid("gml:Polygon without gml:exterior/gml:LinearRing".into()))?;
    let mut out = Vec::new();
    if let Some(list) = gml_child(dom, ring, "posList") {
        let dim = match dom.attr(list, Attr::SrsDimension).map(trim_xml) {
            None => crs.dimension(),
            Some("2") => 2,
            Some("3") => 3,
            Some(other) => return Err(invalid(format!("srsDimension {other}"))),
        };
        let v = numbers(dom.text(list), "gml:posList")?;
        if v.len() % dim != 0 {
            return Err(invalid(format!(
                "gml:posList has {} values, not a multiple of {dim}",
                v.len()
            )));
        }
        for c in v.chunks(dim) {
            out.push(pos_from(c, "gml:posList")?);
        }
    } else {
        for p in dom.children(ring) {
            if dom.ns(p).is_gml() && dom.name(p) == "pos" {
                out.push(pos_from(&numbers(dom.text(p), "gml:pos")?, "gml:pos")?);
            }
        }
    }
    let mut distinct: Vec<(f64, f64)> = Vec::new();
    for p in &out {
        if !distinct.contains(&(p.lat, p.lon)) {
            distinct.push((p.lat, p.lon));
        }
    }
    if distinct.len() < 3 {
        return Err(invalid(format!(
            "polygon with {} distinct vertices",
            distinct.len()
        )));
    }
    Ok(out)
}

/// Whether `(ns, name)` could be a shape element: anything in the GML or
/// GeoShape namespaces directly inside `location-info`.
pub(crate) fn is_shape_ns(ns: Ns) -> bool {
    ns.is_gml() || ns == Ns::GeoShape
}

/// Parses the shape element `i` (in the GML or GeoShape namespace).
pub(crate) fn parse_shape(dom: &Dom<'_>, i: usize) -> Result<Geo, PidfError> {
    let crs = crs_of(dom.attr(i, Attr::SrsName), Crs::Unspecified)?;
    let name = dom.name(i);
    let shape = match (dom.ns(i), name) {
        (ns, "Point") if ns.is_gml() => {
            let pos = if gml_child(dom, i, "pos").is_some() {
                center(dom, i)?
            } else if let Some(c) = gml_child(dom, i, "coordinates") {
                parse_coordinates(dom.text(c))?
            } else {
                return Err(invalid("gml:Point without gml:pos".into()));
            };
            Shape::Point { pos }
        }
        (ns, "Polygon") if ns.is_gml() => Shape::Polygon {
            exterior: polygon_ring(dom, i, crs)?,
        },
        (Ns::GeoShape, "Circle") => Shape::Circle {
            center: center(dom, i)?,
            radius_m: length(dom, i, "radius")?,
        },
        (Ns::GeoShape, "Sphere") => Shape::Sphere {
            center: center(dom, i)?,
            radius_m: length(dom, i, "radius")?,
        },
        (Ns::GeoShape, "Ellipse") => Shape::Ellipse {
            center: center(dom, i)?,
            semi_major_m: length(dom, i, "semiMajorAxis")?,
            semi_minor_m: length(dom, i, "semiMinorAxis")?,
            orientation_deg: angle(dom, i, "orientation")?,
        },
        (Ns::GeoShape, "Ellipsoid") => Shape::Ellipsoid {
            center: center(dom, i)?,
            semi_major_m: length(dom, i, "semiMajorAxis")?,
            semi_minor_m: length(dom, i, "semiMinorAxis")?,
            vertical_m: length(dom, i, "verticalAxis")?,
            orientation_deg: angle(dom, i, "orientation")?,
        },
        (Ns::GeoShape, "ArcBand") => {
            let inner = length(dom, i, "innerRadius")?;
            let outer = length(dom, i, "outerRadius")?;
            let start = angle(dom, i, "startAngle")?;
            let opening = angle(dom, i, "openingAngle")?;
            if inner > outer {
                return Err(invalid("gs:ArcBand inner radius exceeds outer".into()));
            }
            if !(opening > 0.0 && opening <= 360.0) {
                return Err(invalid(format!("gs:ArcBand opening angle {opening}")));
            }
            Shape::ArcBand {
                center: center(dom, i)?,
                inner_radius_m: inner,
                outer_radius_m: outer,
                start_angle_deg: start,
                opening_angle_deg: opening,
            }
        }
        (Ns::GeoShape, "Prism") => {
            let polygon = required(dom, i, "base")
                .ok()
                .and_then(|b| gml_child(dom, b, "Polygon"))
                .ok_or_else(|| invalid("gs:Prism without gs:base/gml:Polygon".into()))?;
            Shape::Prism {
                base: polygon_ring(dom, polygon, crs)?,
                height_m: length(dom, i, "height")?,
            }
        }
        _ => return Err(PidfError::UnknownShape(dom.clark(i))),
    };
    Ok(Geo::from_shape(shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> Position {
        Position {
            lat,
            lon,
            alt: None,
        }
    }

    #[test]
    fn dms_coordinates_of_rfc4119() {
        let pos = parse_coordinates("37:46:30N 122:25:10W").unwrap();
        assert!((pos.lat - 37.775).abs() < 1e-9);
        assert!((pos.lon + 122.419_444_4).abs() < 1e-6);
        // Hemisphere letters decide the axis whatever the order.
        let swapped = parse_coordinates("122:25:10W,37:46:30N").unwrap();
        assert_eq!((swapped.lat, swapped.lon), (pos.lat, pos.lon));
        let dec = parse_coordinates("-34.407 150.883 24.8").unwrap();
        assert_eq!((dec.lat, dec.lon, dec.alt), (-34.407, 150.883, Some(24.8)));
        assert!(parse_coordinates("37:61:00N 1W").is_err());
        assert!(parse_coordinates("37N").is_err());
        assert_eq!(
            parse_coordinates("95:00:00N 1E").unwrap_err().kind(),
            "out-of-range"
        );
    }

    #[test]
    fn crs_and_units_by_epsg_code() {
        assert_eq!(
            crs_of(Some("urn:ogc:def:crs:EPSG::4979"), Crs::Unspecified),
            Ok(Crs::ThreeD)
        );
        assert_eq!(crs_of(Some("epsg:4326"), Crs::ThreeD), Ok(Crs::TwoD));
        assert_eq!(crs_of(None, Crs::ThreeD), Ok(Crs::ThreeD));
        // CRS84 is longitude-first: reading it as lat/lon would misplace the caller.
        assert_eq!(
            crs_of(Some("urn:ogc:def:crs:OGC:1.3:CRS84"), Crs::Unspecified)
                .unwrap_err()
                .kind(),
            "unsupported-crs"
        );
        assert!(check_uom(Some("urn:ogc:def:uom:EPSG::9001"), Unit::Metre).is_ok());
        assert!(check_uom(Some("urn:ogc:def:uom:EPSG::9102"), Unit::Metre).is_err());
        assert!(check_uom(None, Unit::Degree).is_ok());
    }

    #[test]
    fn numbers_refuse_nan_and_infinity() {
        assert_eq!(number(" 1.5e2 "), Some(150.0));
        assert_eq!(number("NaN"), None);
        assert_eq!(number("INF"), None);
        assert_eq!(number("-infinity"), None);
        assert_eq!(number("1,5"), None);
    }

    #[test]
    fn distance_matches_known_values() {
        // One degree of latitude is about 111.2 km on the mean sphere.
        let d = distance_m(p(0.0, 0.0), p(1.0, 0.0));
        assert!((d - 111_195.0).abs() < 1.0, "{d}");
        let back = destination(p(10.0, 20.0), 90.0, 5000.0);
        assert!((distance_m(p(10.0, 20.0), back) - 5000.0).abs() < 0.01);
    }

    #[test]
    fn ring_centroid_of_a_square_and_a_degenerate_ring() {
        let sq = [
            p(0.0, 0.0),
            p(0.0, 2.0),
            p(2.0, 2.0),
            p(2.0, 0.0),
            p(0.0, 0.0),
        ];
        let (c, r) = ring_reduction(&sq);
        assert!(
            (c.lat - 1.0).abs() < 1e-3 && (c.lon - 1.0).abs() < 1e-3,
            "{c:?}"
        );
        assert!((r - distance_m(c, p(0.0, 0.0))).abs() < 1.0);
        // Across the antimeridian the centroid stays on the dateline.
        let am = [p(0.0, 179.0), p(0.0, -179.0), p(1.0, -179.0), p(1.0, 179.0)];
        let (c, _) = ring_reduction(&am);
        assert!(c.lon.abs() > 179.99, "{c:?}");
        let line = [p(0.0, 0.0), p(0.0, 1.0), p(0.0, 2.0)];
        let (c, _) = ring_reduction(&line);
        assert!((c.lon - 1.0).abs() < 1e-9);
    }

    #[test]
    fn arc_band_uses_band_middle_or_outer_circle() {
        let c = p(-43.5723, 153.2176);
        let (pt, r) = arc_band_reduction(c, 3594.0, 4148.0, 20.0, 20.0);
        // The middle of the band lies 3871 m out on bearing 30 degrees.
        assert!((distance_m(c, pt) - 3871.0).abs() < 0.5);
        // Corner at the outer radius, 10 degrees off the middle bearing.
        let want = (4148f64.powi(2) + 3871f64.powi(2)
            - 2.0 * 4148.0 * 3871.0 * 10f64.to_radians().cos())
        .sqrt();
        assert!((r - want).abs() < 1e-6 && r < 4148.0, "{r}");
        // A full ring: the centre with the outer radius is the better circle.
        let (pt, r) = arc_band_reduction(c, 100.0, 200.0, 0.0, 360.0);
        assert_eq!((pt, r), (c, 200.0));
    }
}
