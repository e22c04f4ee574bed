//! The router's LoST server (RFC 5222): `POST /lost` on the admin listener
//! answers `findService` and `listServicesByLocation` from the service-area
//! data the router routes calls with (`ServiceAreas`).
//!
//! - Queries need no token: a LoST client (another router, an ESRP, a test
//!   rig) asks where a location's PSAP is, which is what the service-area
//!   data says to anyone who has the data files. The admin listener's own
//!   limits (connections, per-peer caps, timeouts) apply.
//! - The body is at most [`MAX_BODY`] bytes, of type `application/lost+xml`
//!   (`application/xml` and `text/xml` are taken too).
//! - Every LoST answer, `<errors>` included, comes with 200 OK and
//!   `application/lost+xml`; a body too large is 413 and a wrong media type
//!   415, each with a LoST `badRequest` as the body.
//! - A mapping expires [`LostServer::expires`] after the answer; its
//!   `source` and the last `via` of `path` are the configured name, its
//!   `sourceId` the area and PSAP ids.
//! - A mapping found for a service area comes with the area's outline as
//!   `<serviceBoundary profile="geodetic-2d">`, one `gml:Polygon` per
//!   polygon, so that a client can use it for every later point inside.
//!   Only polygons where every inside point is matched to the same area
//!   are given (no holes, no overlap with an area lookups prefer: see
//!   [`psap::OutlinePart`]), and at most [`MAX_BOUNDARY_VERTICES`]
//!   vertices in all: the polygon holding the asked point first, then the
//!   others largest first while they fit. Polygons are left out rather
//!   than simplified, so a boundary never claims a point the server would
//!   answer otherwise; it may cover less than the area.
//! - The answer itself ([`LostServer::answer`]) is a function of the body,
//!   the data and `now`: no I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use geo::{Area as _, Coord, Intersects, Polygon};
use time::OffsetDateTime;

use crate::emergency::psap::{self, Match, ServiceAreas};
use crate::inventory::address_check::{AddressCheck, AddressChecker};
use crate::lost::read::{RequestKind, RequestLocationError};
use crate::lost::{
    self, write, Boundary, ErrorKind, Expires, Limits, Location, Mapping, Validation,
};
use crate::pidf::{CivicAddress, Geo, Position, Shape};
use crate::store::gazetteer::Gazetteer;

/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

/// Vertices of one answer's service boundary, its polygons together
/// (about 25 bytes each as written: some 100 KiB at most).
pub const MAX_BOUNDARY_VERTICES: usize = 4096;

/// A polygon of an area's outline that may be given as its boundary.
struct Part {
    polygon: Polygon<f64>,
    vertices: usize,
}

/// What the server answers from.
pub struct LostServer {
    areas: Arc<ServiceAreas>,
    /// `source` of every answer (a dotted name).
    source: String,
    expires: Duration,
    /// When the data was loaded: the mappings' `lastUpdated`.
    loaded: OffsetDateTime,
    /// Area id → the polygons that may be its boundary, largest first
    /// (worked out once per area: the overlap test is not cheap).
    outlines: Mutex<HashMap<String, Arc<[Part]>>>,
    /// Checks civic locations for `validateLocation`.
    gazetteer: Gazetteer,
}

/// Request documents are small: a location and a service.
const REQUEST_LIMITS: Limits = Limits {
    max_bytes: MAX_BODY,
    max_depth: 32,
    max_elements: 2_000,
    max_mappings: 0,
    max_uris: 0,
    max_items: 16,
};

impl LostServer {
    pub fn new(
        areas: Arc<ServiceAreas>,
        source: String,
        expires: Duration,
        loaded: OffsetDateTime,
    ) -> LostServer {
        LostServer {
            gazetteer: Gazetteer::new(areas.clone()),
            areas,
            source,
            expires,
            loaded,
            outlines: Mutex::new(HashMap::new()),
        }
    }

    /// The polygons of `area` a boundary may hold, largest first.
    fn outline(&self, area: &str) -> Arc<[Part]> {
        if let Some(p) = self.outlines.lock().ok().and_then(|m| m.get(area).cloned()) {
            return p;
        }
        let mut parts: Vec<(f64, Part)> = self
            .areas
            .area_outline(area)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.exclusive)
            .map(|p| {
                (
                    p.polygon.unsigned_area(),
                    Part {
                        polygon: p.polygon.clone(),
                        vertices: p.polygon.exterior().0.len(),
                    },
                )
            })
            .collect();
        parts.sort_by(|a, b| b.0.total_cmp(&a.0));
        let parts: Arc<[Part]> = parts.into_iter().map(|(_, p)| p).collect();
        if let Ok(mut m) = self.outlines.lock() {
            m.insert(area.to_owned(), parts.clone());
        }
        parts
    }

    /// The service boundary of `area` for an answer about `point`
    /// (longitude, latitude), if any part of it may be given.
    fn boundary(&self, area: &str, point: Option<Coord<f64>>) -> Option<Boundary> {
        let parts = self.outline(area);
        let first = point.and_then(|c| parts.iter().position(|p| p.polygon.intersects(&c)));
        let order = first
            .into_iter()
            .chain((0..parts.len()).filter(|&n| Some(n) != first));
        let mut budget = MAX_BOUNDARY_VERTICES;
        let mut geodetic = Vec::new();
        for n in order {
            let part = &parts[n];
            if part.vertices > budget || part.vertices < 4 {
                continue;
            }
            budget -= part.vertices;
            let exterior = part
                .polygon
                .exterior()
                .0
                .iter()
                .map(|c| Position {
                    lat: c.y,
                    lon: c.x,
                    alt: None,
                })
                .collect();
            geodetic.push(Shape::Polygon { exterior });
        }
        (!geodetic.is_empty()).then(|| Boundary {
            geodetic,
            civic: Vec::new(),
            unreadable: Vec::new(),
        })
    }

    fn error(&self, kind: ErrorKind, message: &str) -> String {
        write::errors(&self.source, kind, &lost::one_line(message, 200))
    }

    /// The LoST answer to `body` at `now`.
    pub fn answer(&self, body: &[u8], now: OffsetDateTime) -> String {
        let req = match lost::read_request(body, &REQUEST_LIMITS) {
            Ok(r) => r,
            Err(e) => return self.error(ErrorKind::BadRequest, &e.to_string()),
        };
        if req
            .path
            .iter()
            .any(|v| v.eq_ignore_ascii_case(&self.source))
        {
            return self.error(ErrorKind::Loop, "the request has already been here");
        }
        let service = req.service.as_deref().unwrap_or(lost::DEFAULT_SERVICE);
        if service != lost::DEFAULT_SERVICE && !service.starts_with("urn:service:sos.") {
            return self.error(
                ErrorKind::ServiceNotImplemented,
                "only urn:service:sos and its sub-services",
            );
        }
        let Some((id, location)) = req
            .locations
            .iter()
            .find_map(|(id, l)| l.as_ref().ok().map(|l| (id.as_str(), l)))
        else {
            let profiles: Vec<&str> = req
                .locations
                .iter()
                .filter_map(|(_, l)| match l {
                    Err(RequestLocationError::Profile(p)) => Some(p.as_str()),
                    _ => None,
                })
                .collect();
            if profiles.len() == req.locations.len() {
                return write::profile_unrecognized(
                    &self.source,
                    &profiles,
                    "the server knows geodetic-2d and civic",
                );
            }
            let why = req
                .locations
                .iter()
                .find_map(|(_, l)| match l {
                    Err(RequestLocationError::Invalid(m)) => Some(m.as_str()),
                    _ => None,
                })
                .unwrap_or("no usable location");
            return self.error(ErrorKind::LocationInvalid, why);
        };
        let Some(found) = self.lookup(location) else {
            return self.error(ErrorKind::NotFound, "no service area holds the location");
        };
        let mut vias = req.path.clone();
        vias.push(self.source.clone());
        match req.kind {
            RequestKind::FindService => {
                let mut m = self.mapping(&found, service, now);
                let point = match location {
                    Location::Geodetic(shape) => {
                        let g = Geo::from_shape(shape.clone());
                        Some(Coord { x: g.lon, y: g.lat })
                    }
                    Location::Civic(_) => None,
                };
                m.boundary = self.boundary(found.area, point);
                let checked = match location {
                    Location::Civic(c) if req.validate_location => Some(self.validate(c)),
                    _ => None,
                };
                let unavailable = match location {
                    Location::Geodetic(_) if req.validate_location => vec![(
                        "locationValidationUnavailable",
                        "only civic locations are validated".to_owned(),
                    )],
                    _ => Vec::new(),
                };
                let extras = write::Extras {
                    validation: checked.as_ref(),
                    warnings: Some((self.source.as_str(), unavailable.as_slice())),
                };
                write::find_service_response_with(&[m], &extras, &vias, Some(id))
            }
            RequestKind::ListServicesByLocation => {
                let mut services = vec![lost::DEFAULT_SERVICE.to_owned()];
                if let Some(u) = &found.psap.service_urn {
                    if !services.contains(u) {
                        services.push(u.clone());
                    }
                }
                write::list_services_by_location_response(&services, &vias, Some(id))
            }
        }
    }

    /// `<locationValidation>` for a civic location (RFC 5222 s8.4.2),
    /// from the gazetteer of the service-area data: the elements it found
    /// at fault are invalid (listed even when absent: a missing state),
    /// the others it checks valid, the rest (street, house number...)
    /// unchecked. For a country it has no data for, only the country code
    /// is checked.
    pub fn validate(&self, civic: &CivicAddress) -> Validation {
        let check = self.gazetteer.check(&crate::inventory::Address {
            civic: civic.clone(),
            point: None,
        });
        let country = civic
            .get("country")
            .map(|c| c.trim().to_ascii_uppercase())
            .unwrap_or_default();
        let checked = match check {
            AddressCheck::Unchecked { .. } => Gazetteer::checked_elements(""),
            _ => Gazetteer::checked_elements(&country),
        };
        let mut v = Validation::default();
        if let AddressCheck::Invalid { elements, .. } = &check {
            v.invalid.clone_from(elements);
        }
        for (key, _) in civic.iter() {
            let plain = key.chars().all(|c| c.is_ascii_alphanumeric());
            let seen = v
                .valid
                .iter()
                .chain(&v.invalid)
                .chain(&v.unchecked)
                .any(|k| k == key);
            if !plain || seen {
                continue;
            }
            if checked.contains(&key) {
                v.valid.push(key.to_owned());
            } else {
                v.unchecked.push(key.to_owned());
            }
        }
        v
    }

    fn lookup(&self, location: &Location) -> Option<Match<'_>> {
        match location {
            Location::Geodetic(shape) => {
                let g = Geo::from_shape(shape.clone());
                self.areas.lookup_point(g.lat, g.lon)
            }
            Location::Civic(c) => self.areas.lookup_civic(&psap::CivicAddress {
                country: c.get("country").unwrap_or(""),
                a1: c.get("A1").unwrap_or(""),
                a2: c.get("A2").unwrap_or(""),
                a3: c.get("A3").unwrap_or(""),
                pc: c.get("PC").unwrap_or(""),
            }),
        }
    }

    fn mapping(&self, found: &Match<'_>, service: &str, now: OffsetDateTime) -> Mapping {
        let psap = found.psap;
        let (uris, other_uris): (Vec<String>, Vec<String>) = std::iter::once(psap.uri.clone())
            .filter(|u| !u.is_empty())
            .partition(|u| {
                let l = u.to_ascii_lowercase();
                l.starts_with("sip:") || l.starts_with("sips:")
            });
        let token = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_whitespace() { '_' } else { c })
                .collect()
        };
        Mapping {
            expires: Expires::At(now + self.expires),
            last_updated: Some(self.loaded),
            source: self.source.clone(),
            source_id: token(&format!("{}:{}", found.area, psap.id)),
            display_names: vec![(Some("en".to_owned()), psap.name.clone())],
            service: service.to_owned(),
            boundary: None,
            boundary_reference: None,
            uris,
            other_uris,
            service_number: psap.service_num.clone().filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
            }),
        }
    }
}

/// `POST /lost`.
pub fn routes(server: Arc<LostServer>) -> axum::Router {
    axum::Router::new()
        .route("/lost", post(post_lost))
        .with_state(server)
}

fn lost_reply(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, lost::CONTENT_TYPE)], body).into_response()
}

async fn post_lost(
    State(server): State<Arc<LostServer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !matches!(
        media.as_str(),
        "application/lost+xml" | "application/xml" | "text/xml"
    ) {
        return lost_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            server.error(
                ErrorKind::BadRequest,
                "the body must be application/lost+xml",
            ),
        );
    }
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return lost_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            server.error(
                ErrorKind::BadRequest,
                &format!("the body is larger than {MAX_BODY} bytes"),
            ),
        );
    };
    // Off the async workers: the first answer for an area works out its
    // boundary (polygon overlap tests), which may take milliseconds.
    let worker = server.clone();
    let answer =
        tokio::task::spawn_blocking(move || worker.answer(&bytes, OffsetDateTime::now_utc())).await;
    match answer {
        Ok(a) => lost_reply(StatusCode::OK, a),
        Err(_) => lost_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            server.error(ErrorKind::InternalError, "the answer could not be made"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> LostServer {
        LostServer::new(
            Arc::new(ServiceAreas::embedded().unwrap()),
            "ecrf.test".into(),
            Duration::from_secs(3600),
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    fn ask(server: &LostServer, lat: f64, lon: f64) -> lost::FindServiceResponse {
        let loc = Location::Geodetic(Shape::Point {
            pos: Position {
                lat,
                lon,
                alt: None,
            },
        });
        let body = write::find_service(&write::FindService {
            location: &loc,
            location_id: "l",
            service: lost::DEFAULT_SERVICE,
            boundary_by_value: true,
            recursive: false,
            validate_location: false,
        });
        match lost::read_response(
            server
                .answer(body.as_bytes(), OffsetDateTime::UNIX_EPOCH)
                .as_bytes(),
        ) {
            Ok(lost::Response::Found(r)) => r,
            other => panic!("{lat} {lon}: {other:?}"),
        }
    }

    fn polygons(b: &Boundary) -> Vec<Polygon<f64>> {
        b.geodetic
            .iter()
            .map(|s| {
                let Shape::Polygon { exterior } = s else {
                    panic!("{s:?}")
                };
                Polygon::new(
                    exterior
                        .iter()
                        .map(|p| Coord { x: p.lon, y: p.lat })
                        .collect(),
                    vec![],
                )
            })
            .collect()
    }

    /// Points of a grid over the polygon's box that lie inside it.
    fn inside(p: &Polygon<f64>) -> Vec<Coord<f64>> {
        use geo::BoundingRect;
        let r = p.bounding_rect().unwrap();
        let mut out = Vec::new();
        for i in 1..12 {
            for j in 1..12 {
                let c = Coord {
                    x: r.min().x + r.width() * f64::from(i) / 12.0,
                    y: r.min().y + r.height() * f64::from(j) / 12.0,
                };
                if p.intersects(&c) {
                    out.push(c);
                }
            }
        }
        out
    }

    #[test]
    fn a_boundary_holds_only_points_the_server_gives_the_same_area() {
        let s = server();
        // (place, lat, lon, area, whether a boundary comes)
        let cases = [
            ("San Francisco", 37.7749, -122.4194, "US-06075", true),
            ("Denver", 39.7392, -104.9903, "US-08031", true),
            // Nunavut: 91 polygons, over 10 000 vertices.
            ("Iqaluit", 63.7467, -68.517, "CA-NU", true),
            // Fairfax County's only polygon has a hole (Fairfax city).
            ("Reston", 38.9586, -77.357, "US-51059", false),
        ];
        for (place, lat, lon, area, given) in cases {
            let r = ask(&s, lat, lon);
            let m = &r.mappings[0];
            assert!(m.source_id.starts_with(area), "{place}: {}", m.source_id);
            let Some(b) = &m.boundary else {
                assert!(!given, "{place}: no boundary");
                continue;
            };
            assert!(given, "{place}: {b:?}");
            let ps = polygons(b);
            let vertices: usize = ps.iter().map(|p| p.exterior().0.len()).sum();
            assert!(vertices <= MAX_BOUNDARY_VERTICES, "{place}: {vertices}");
            // The asked point's polygon comes first.
            assert!(ps[0].intersects(&Coord { x: lon, y: lat }), "{place}");
            for p in &ps {
                for c in inside(p) {
                    let found = s.areas.lookup_point(c.y, c.x).unwrap();
                    assert_eq!(found.area, area, "{place}: {c:?}");
                }
            }
        }
        // Nunavut's boundary is cut to the budget, not dropped.
        let r = ask(&s, 63.7467, -68.517);
        let b = r.mappings[0].boundary.as_ref().unwrap();
        assert!(b.geodetic.len() < 91, "{}", b.geodetic.len());
    }

    fn civic(pairs: &[(&str, &str)]) -> CivicAddress {
        pairs.iter().copied().collect()
    }

    #[test]
    fn civic_locations_are_validated_against_the_gazetteer() {
        let s = server();
        let names = |v: &[String]| v.join(" ");
        // (address, valid, invalid, unchecked)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
        let cases: [Case<'_>; 6] = [
            (
                &[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A2", "Denver"),
                    ("A3", "Denver"),
                    ("RD", "Colfax"),
                    ("HNO", "200"),
                    ("PC", "80203"),
                ],
                "country A1 A2 A3 PC",
                "",
                "RD HNO",
            ),
            // A ZIP code of another state (there is a Denver in New York).
            (
                &[
                    ("country", "US"),
                    ("A1", "NY"),
                    ("A3", "Denver"),
                    ("PC", "80203"),
                ],
                "country A3",
                "PC A1",
                "",
            ),
            // No state at all: A1 is named though absent.
            (
                &[("country", "US"), ("A3", "Springfield")],
                "country A3",
                "A1",
                "",
            ),
            (
                &[
                    ("country", "CA"),
                    ("A1", "ON"),
                    ("PC", "K1A 0B1"),
                    ("RD", "Wellington"),
                ],
                "country A1 PC",
                "",
                "RD",
            ),
            // No address data for Germany: only the country code is checked.
            (
                &[
                    ("country", "DE"),
                    ("A1", "Bayern"),
                    ("A3", "München"),
                    ("PC", "80331"),
                ],
                "country",
                "",
                "A1 A3 PC",
            ),
            (&[("country", "XX"), ("A1", "ZZ")], "", "country", "A1"),
        ];
        for (address, valid, invalid, unchecked) in cases {
            let v = s.validate(&civic(address));
            assert_eq!(
                (names(&v.valid), names(&v.invalid), names(&v.unchecked)),
                (valid.to_owned(), invalid.to_owned(), unchecked.to_owned()),
                "{address:?}"
            );
        }
    }

    #[test]
    fn validate_location_is_answered_for_civic_locations_only() {
        let s = server();
        let civic_loc = Location::Civic(civic(&[
            ("country", "US"),
            ("A1", "CA"),
            ("A2", "San Francisco"),
            ("PC", "80203"),
            ("HNO", "1"),
        ]));
        let point = Location::Geodetic(Shape::Point {
            pos: Position {
                lat: 37.7749,
                lon: -122.4194,
                alt: None,
            },
        });
        for (loc, asked) in [(&civic_loc, true), (&civic_loc, false), (&point, true)] {
            let body = write::find_service(&write::FindService {
                location: loc,
                location_id: "l",
                service: lost::DEFAULT_SERVICE,
                boundary_by_value: false,
                recursive: false,
                validate_location: asked,
            });
            let answer = s.answer(body.as_bytes(), OffsetDateTime::UNIX_EPOCH);
            let Ok(lost::Response::Found(r)) = lost::read_response(answer.as_bytes()) else {
                panic!("{answer}")
            };
            assert_eq!(
                r.mappings[0].uris,
                ["sip:sos@us-06075.psap.example"],
                "{answer}"
            );
            match (loc, asked) {
                (Location::Civic(_), true) => {
                    let v = r.validation.expect("a locationValidation");
                    // 80203 is a ZIP code of Colorado: the ZIP and the
                    // state disagree.
                    assert_eq!(v.invalid, ["PC", "A1"], "{answer}");
                    assert_eq!(v.valid, ["country", "A2"], "{answer}");
                    assert_eq!(v.unchecked, ["HNO"], "{answer}");
                    assert!(r.warnings.is_empty());
                }
                (_, false) => assert_eq!((r.validation, r.warnings.len()), (None, 0)),
                (Location::Geodetic(_), true) => {
                    assert_eq!(r.validation, None);
                    assert_eq!(r.warnings[0].kind, "locationValidationUnavailable");
                    assert_eq!(r.warnings[0].source, "ecrf.test");
                }
            }
        }
    }
}
