//! LoST in a call's path, without I/O: before the call is routed,
//! [`plan`] says whether a cached mapping answers or a query is to be sent;
//! after the query, [`settle`] turns what came back (or did not) into the
//! mapping to route on and the source that decided, keeping the cache up to
//! date. The HTTP exchange and its deadline are the caller's.
//!
//! The order, so that no call waits on or is lost to a failing ECRF:
//! 1. a fresh cached mapping: no query (`lost-cache`); in the last quarter
//!    of its lifetime, the first call to find it also has it asked again
//!    in the background ([`Plan::Refresh`], answer kept by [`refreshed`]),
//!    so that a mapping in use does not expire under the calls;
//! 2. the ECRF's answer within the deadline (`lost`), stored for later;
//! 3. no usable answer (timeout, transport error, LoST `<errors>`, a
//!    redirect the driver did not follow, a document that does not read,
//!    no SIP URI): the cached mapping even if expired (`lost-stale`);
//! 4. nothing cached: the embedded service areas decide (`embedded`), and
//!    after them the country's rules (screening) as for any call.

use std::sync::Arc;

use time::OffsetDateTime;

use super::cache::{Cache, CacheKey, Hit};
use super::write::{self, FindService};
use super::{Location, Mapping, Response};

/// Which source decided a call's PSAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecidedBy {
    /// The ECRF's answer to this call's query.
    Lost,
    /// A cached mapping still within its `expires`.
    LostCache,
    /// A cached mapping past its `expires`, because the ECRF gave nothing
    /// usable.
    LostStale,
    /// The router's embedded service-area data.
    Embedded,
}

impl DecidedBy {
    /// The value in call records and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Lost => "lost",
            DecidedBy::LostCache => "lost-cache",
            DecidedBy::LostStale => "lost-stale",
            DecidedBy::Embedded => "embedded",
        }
    }
}

/// What to do before routing.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// A fresh cached mapping answers: route on it, ask nothing.
    Cached(Arc<Mapping>),
    /// A fresh cached mapping near its end answers: route on it now, and
    /// send this `findService` body in the background, tied to no call;
    /// its answer goes to [`refreshed`].
    Refresh { mapping: Arc<Mapping>, body: String },
    /// Send this `findService` body and wait at most the deadline.
    Ask { body: String },
}

/// The cache key of a location: its routing point for a shape, its civic
/// key for an address.
pub fn key(location: &Location, service: &str) -> CacheKey {
    match location {
        Location::Geodetic(shape) => {
            let g = crate::pidf::Geo::from_shape(shape.clone());
            CacheKey::point(service, g.lat, g.lon)
        }
        Location::Civic(c) => CacheKey::civic(service, c),
    }
}

fn lookup(
    cache: &mut Cache,
    location: &Location,
    service: &str,
    now: OffsetDateTime,
) -> Option<(CacheKey, Hit)> {
    match location {
        Location::Geodetic(shape) => {
            let g = crate::pidf::Geo::from_shape(shape.clone());
            cache.lookup_point_keyed(service, g.lat, g.lon, now)
        }
        Location::Civic(c) => {
            let key = CacheKey::civic(service, c);
            let hit = cache.get(&key, now)?;
            Some((key, hit))
        }
    }
}

/// The `findService` a router sends for `location`: the shape or address
/// itself, recursive, asking for the service boundary by value so that
/// later calls inside it need no query.
fn ask(location: &Location, service: &str, location_id: &str) -> String {
    write::find_service(&FindService {
        location,
        location_id,
        service,
        boundary_by_value: true,
        recursive: true,
        validate_location: false,
    })
}

/// Before routing a call located at `location` for `service`: a fresh
/// cached mapping (with a refresh to send when it is due,
/// [`Cache::claim_refresh`]), or the query to send.
pub fn plan(
    cache: &mut Cache,
    location: &Location,
    service: &str,
    location_id: &str,
    now: OffsetDateTime,
) -> Plan {
    match lookup(cache, location, service, now) {
        Some((key, Hit::Fresh(mapping))) => {
            if cache.claim_refresh(&key, now) {
                Plan::Refresh {
                    mapping,
                    body: ask(location, service, location_id),
                }
            } else {
                Plan::Cached(mapping)
            }
        }
        _ => Plan::Ask {
            body: ask(location, service, location_id),
        },
    }
}

/// What a call routes on after its query.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub decided_by: DecidedBy,
    /// The mapping to route on (none: the embedded data decides).
    pub mapping: Option<Arc<Mapping>>,
    /// Why the ECRF's answer was not used, short, for the call record.
    pub why: Option<String>,
}

/// The mapping to route on in a query's answer, or why there is none.
fn usable(answer: Result<&[u8], String>) -> Result<Mapping, String> {
    match answer {
        Ok(body) => match super::read_response(body) {
            Ok(Response::Found(r)) => r
                .routable()
                .cloned()
                .ok_or_else(|| "no mapping with a SIP URI".to_owned()),
            Ok(Response::Errors(e)) => Err(e.reason()),
            Ok(Response::Redirect(r)) => Err(super::one_line(
                &format!("redirect to {} (not followed)", r.target),
                super::REASON_MAX,
            )),
            Ok(Response::Listed(_)) => Err("a service list, not a mapping".to_owned()),
            Err(e) => Err(e.reason()),
        },
        Err(why) => Err(super::one_line(&why, super::REASON_MAX)),
    }
}

/// After the query: `answer` is the response body, or why none came
/// (`"timeout"`, `"connection refused"`, an HTTP status). A usable mapping
/// is stored in the cache and decides; otherwise a cached one, even
/// expired; otherwise the embedded data.
pub fn settle(
    cache: &mut Cache,
    location: &Location,
    service: &str,
    answer: Result<&[u8], String>,
    now: OffsetDateTime,
) -> Outcome {
    let why = match usable(answer) {
        Ok(m) => {
            let m = Arc::new(m);
            cache.insert(key(location, service), m.clone(), now);
            return Outcome {
                decided_by: DecidedBy::Lost,
                mapping: Some(m),
                why: None,
            };
        }
        Err(why) => why,
    };
    match lookup(cache, location, service, now) {
        Some((_, hit)) => Outcome {
            decided_by: if hit.is_fresh() {
                DecidedBy::LostCache
            } else {
                DecidedBy::LostStale
            },
            mapping: Some(hit.mapping().clone()),
            why: Some(why),
        },
        None => Outcome {
            decided_by: DecidedBy::Embedded,
            mapping: None,
            why: Some(why),
        },
    }
}

/// After a background refresh ([`Plan::Refresh`]): a usable mapping is
/// stored under the refreshed location's key, as a call's answer would
/// be; otherwise the cache stays as it was (the old mapping serves until
/// it expires, and its refresh is claimed again after
/// [`super::cache::REFRESH_RETRY`]), and the reason is given back.
pub fn refreshed(
    cache: &mut Cache,
    location: &Location,
    service: &str,
    answer: Result<&[u8], String>,
    now: OffsetDateTime,
) -> Result<Arc<Mapping>, String> {
    let m = Arc::new(usable(answer)?);
    cache.insert(key(location, service), m.clone(), now);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::lost::{write as w, ErrorKind, Expires, DEFAULT_SERVICE};
    use crate::pidf::{Position, Shape};

    fn here() -> Location {
        Location::Geodetic(Shape::Circle {
            center: Position {
                lat: 38.05,
                lon: -77.05,
                alt: None,
            },
            radius_m: 30.0,
        })
    }

    fn answer(expires: Expires) -> String {
        let m = Mapping {
            expires,
            last_updated: None,
            source: "ecrf.example".into(),
            source_id: "1".into(),
            display_names: vec![],
            service: DEFAULT_SERVICE.into(),
            boundary: None,
            boundary_reference: None,
            uris: vec!["sip:psap@county.example".into()],
            other_uris: vec![],
            service_number: None,
        };
        w::find_service_response(&[m], &["ecrf.example".into()], Some("l"))
    }

    #[test]
    fn the_order_of_the_sources() {
        let now = datetime!(2026-12-07 12:00:00 UTC);
        let tomorrow = datetime!(2026-12-08 12:00:00 UTC);
        let later = datetime!(2026-12-09 12:00:00 UTC);
        let mut cache = Cache::new(16);
        let loc = here();

        // Nothing cached: ask, with the shape and the boundary by value.
        let Plan::Ask { body } = plan(&mut cache, &loc, DEFAULT_SERVICE, "l", now) else {
            panic!()
        };
        assert!(body.contains("gs:Circle") && body.contains("serviceBoundary=\"value\""));

        // No answer and nothing cached: the embedded data, with the reason.
        let o = settle(
            &mut cache,
            &loc,
            DEFAULT_SERVICE,
            Err("timeout".into()),
            now,
        );
        assert_eq!(
            (o.decided_by, o.mapping, o.why.as_deref()),
            (DecidedBy::Embedded, None, Some("timeout"))
        );

        // An answer: it decides and is kept.
        let a = answer(Expires::At(tomorrow));
        let o = settle(&mut cache, &loc, DEFAULT_SERVICE, Ok(a.as_bytes()), now);
        assert_eq!(o.decided_by, DecidedBy::Lost);
        assert_eq!(
            o.mapping.as_ref().unwrap().uris,
            ["sip:psap@county.example"]
        );
        assert_eq!(o.why, None);

        // The next call there: no query.
        assert!(matches!(
            plan(&mut cache, &loc, DEFAULT_SERVICE, "l", now),
            Plan::Cached(_)
        ));
        // Another service is asked for.
        assert!(matches!(
            plan(&mut cache, &loc, "urn:service:sos.fire", "l", now),
            Plan::Ask { .. }
        ));

        // Expired: asked again; the ECRF fails in each way: the stale
        // mapping routes, with the reason.
        assert!(matches!(
            plan(&mut cache, &loc, DEFAULT_SERVICE, "l", later),
            Plan::Ask { .. }
        ));
        let errors = w::errors("ecrf.example", ErrorKind::ServerTimeout, "busy");
        let redirect = format!(
            "<redirect xmlns='{}' target='other.example' source='ecrf.example'/>",
            crate::lost::NS
        );
        let failures: [(Result<&[u8], String>, &str); 5] = [
            (Err("connection refused".into()), "connection refused"),
            (
                Ok(errors.as_bytes()),
                "serverTimeout from ecrf.example: busy",
            ),
            (
                Ok(redirect.as_bytes()),
                "redirect to other.example (not followed)",
            ),
            (
                Ok(b"<html>502</html>"),
                "root element {}html is not a LoST message",
            ),
            (Ok(b""), "not well-formed XML"),
        ];
        for (answer, why) in failures {
            let o = settle(&mut cache, &loc, DEFAULT_SERVICE, answer, later);
            assert_eq!(o.decided_by, DecidedBy::LostStale, "{why}");
            assert!(o.mapping.is_some());
            assert!(o.why.as_deref().unwrap().starts_with(why), "{:?}", o.why);
        }

        // A NO-CACHE answer decides this call only.
        let mut cache = Cache::new(16);
        let a = answer(Expires::NoCache);
        let o = settle(&mut cache, &loc, DEFAULT_SERVICE, Ok(a.as_bytes()), now);
        assert_eq!(o.decided_by, DecidedBy::Lost);
        assert!(matches!(
            plan(&mut cache, &loc, DEFAULT_SERVICE, "l", now),
            Plan::Ask { .. }
        ));
        let o = settle(
            &mut cache,
            &loc,
            DEFAULT_SERVICE,
            Err("timeout".into()),
            now,
        );
        assert_eq!(o.decided_by, DecidedBy::Embedded);
    }

    #[test]
    fn a_mapping_in_the_last_quarter_of_its_life_is_refreshed_in_the_background() {
        let stored = datetime!(2026-12-07 12:00:00 UTC);
        let h = time::Duration::hours(1);
        let mut cache = Cache::new(16);
        let loc = here();
        let a = answer(Expires::At(stored + 4 * h));
        let o = settle(&mut cache, &loc, DEFAULT_SERVICE, Ok(a.as_bytes()), stored);
        assert_eq!(o.decided_by, DecidedBy::Lost);
        let planned = |cache: &mut Cache, at| match plan(cache, &loc, DEFAULT_SERVICE, "l", at) {
            Plan::Cached(_) => "cached",
            Plan::Refresh { body, .. } => {
                assert!(body.contains("gs:Circle") && body.contains("serviceBoundary=\"value\""));
                "refresh"
            }
            Plan::Ask { .. } => "ask",
        };

        // Three quarters of its life: routed on, nothing asked.
        assert_eq!(
            planned(&mut cache, stored + 3 * h - time::Duration::SECOND),
            "cached"
        );
        // Then the first call routes on it and asks again; the calls after
        // it do not, while the refresh is under way.
        assert_eq!(planned(&mut cache, stored + 3 * h), "refresh");
        assert_eq!(
            planned(&mut cache, stored + 3 * h + time::Duration::SECOND),
            "cached"
        );
        // The refresh failed: the mapping serves on, and is claimed again
        // after the pause.
        let failed = refreshed(
            &mut cache,
            &loc,
            DEFAULT_SERVICE,
            Err("ECRF refused the connection".into()),
            stored + 3 * h,
        );
        assert_eq!(failed, Err("ECRF refused the connection".to_owned()));
        let retry = stored + 3 * h + crate::lost::cache::REFRESH_RETRY;
        assert_eq!(
            planned(&mut cache, retry - time::Duration::SECOND),
            "cached"
        );
        assert_eq!(planned(&mut cache, retry), "refresh");
        // An answer that does not read changes nothing either.
        assert!(refreshed(&mut cache, &loc, DEFAULT_SERVICE, Ok(b"<html/>"), retry).is_err());
        assert_eq!(planned(&mut cache, retry), "cached");

        // This one comes back: a new mapping with a life of its own, so
        // the call after the old one's expiry neither waits nor asks.
        let renewed = stored + 3 * h + time::Duration::minutes(40);
        let a = answer(Expires::At(renewed + 4 * h));
        let m = refreshed(&mut cache, &loc, DEFAULT_SERVICE, Ok(a.as_bytes()), renewed).unwrap();
        assert_eq!(m.expires, Expires::At(renewed + 4 * h));
        assert_eq!(planned(&mut cache, stored + 5 * h), "cached");
        assert_eq!(planned(&mut cache, renewed + 3 * h), "refresh");
        // Past its expiry a mapping is no longer served without asking.
        assert_eq!(planned(&mut cache, renewed + 4 * h), "ask");

        // A mapping that never expires is never refreshed.
        let mut cache = Cache::new(16);
        let a = answer(Expires::NoExpiration);
        settle(&mut cache, &loc, DEFAULT_SERVICE, Ok(a.as_bytes()), stored);
        assert_eq!(planned(&mut cache, stored + 1000 * h), "cached");
    }

    #[test]
    fn labels() {
        let all = [
            DecidedBy::Lost,
            DecidedBy::LostCache,
            DecidedBy::LostStale,
            DecidedBy::Embedded,
        ];
        let names: Vec<&str> = all.iter().map(|d| d.as_str()).collect();
        assert_eq!(names, ["lost", "lost-cache", "lost-stale", "embedded"]);
    }
}
