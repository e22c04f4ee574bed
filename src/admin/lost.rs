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
//!   `sourceId` the area and PSAP ids. No `serviceBoundary` is given (the
//!   area outlines are not exposed by `ServiceAreas`), so a client caches
//!   the mapping for the location it asked about.
//! - The answer itself ([`LostServer::answer`]) is a function of the body,
//!   the data and `now`: no I/O.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use time::OffsetDateTime;

use crate::emergency::psap::{self, Match, ServiceAreas};
use crate::lost::read::{RequestKind, RequestLocationError};
use crate::lost::{self, write, ErrorKind, Expires, Limits, Location, Mapping};
use crate::pidf::Geo;

/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

/// What the server answers from.
pub struct LostServer {
    areas: Arc<ServiceAreas>,
    /// `source` of every answer (a dotted name).
    source: String,
    expires: Duration,
    /// When the data was loaded: the mappings' `lastUpdated`.
    loaded: OffsetDateTime,
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
            areas,
            source,
            expires,
            loaded,
        }
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
                let m = self.mapping(&found, service, now);
                write::find_service_response(&[m], &vias, Some(id))
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
    let answer = server.answer(&bytes, OffsetDateTime::now_utc());
    lost_reply(StatusCode::OK, answer)
}
