//! LoST (RFC 5222) in the emergency router: for a call the rules send to
//! the PSAP of its own location, an ECRF is asked which PSAP serves that
//! location (`[emergency.lost]`), and its answer goes first.
//!
//! - Asked only when the country (the caller's, as the rules found it) has
//!   an ECRF, the rules route the call to a PSAP by its dynamic location
//!   (the shape, else the civic address it carries) or by the caller's
//!   registered address (profile `civic`), or would route it by that
//!   address but screen it because no service area holds it, and no fresh
//!   cached mapping answers ([`crate::lost::route::plan`]).
//! - A registered address's mapping is kept under the address's civic key
//!   (elements upper-cased, whitespace collapsed), not under the number:
//!   every number registered at the same address, written in any case or
//!   spacing, finds it, and a new inventory snapshot leaves it in place;
//!   an address that changes has another key and is asked about afresh.
//! - The answer, a cached mapping even expired, or else the embedded data
//!   decides ([`crate::lost::route::settle`]); the rules' own targets stay
//!   behind the LoST one as failover, so a LoST URI that does not answer
//!   costs the call one attempt, not the call.
//! - A cached mapping in the last quarter of its lifetime is refreshed in
//!   the background: the call that finds it routes on it at once, and a
//!   query tied to no call goes out ([`LostRouting::poll_refresh`], at most
//!   [`REFRESHES_QUEUED`] waiting); its answer replaces the mapping
//!   ([`LostRouting::refreshed`]). A failed refresh leaves the mapping in
//!   use until it expires.
//! - The mapping's SIP URI becomes the first target: through
//!   `[emergency.psap_trunks]` when it is the URI of a known PSAP record,
//!   else through the trunk of the `*` pattern (the first `psap` trunk by
//!   default), with the URI in a `Route` header.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::inventory::Address;
use crate::lost::route::{plan, settle, DecidedBy, Outcome, Plan};
use crate::lost::{self, Cache, Mapping};
use crate::metrics as m;
use crate::proxy::{LostAnswer, LostQuery, LostRefresh, RouteTarget};

use super::location::Location as CallLocation;
use super::psap::{MatchKind, ServiceAreas};
use super::rules::{
    DynamicUse, PsapChoice, PsapTrunks, Reason, RouteDecision, RouteKind, RoutedBy,
};

/// The `id` of the location in the router's queries.
const LOCATION_ID: &str = "call";

/// Where a call is: the location it carried, and the caller's registered
/// address from the inventory.
#[derive(Clone, Copy)]
pub(super) struct Located<'a> {
    pub dynamic: &'a CallLocation,
    pub registered: Option<&'a Address>,
}

/// Background refreshes waiting for the core to take them: more are not
/// queued (their mappings are claimed again after
/// [`lost::cache::REFRESH_RETRY`]).
pub(super) const REFRESHES_QUEUED: usize = 64;

/// `[emergency.lost]` as the router uses it, and its caches: one per
/// ECRF, for a mapping is what one ECRF answered.
pub(super) struct LostRouting {
    default: Option<String>,
    countries: HashMap<String, String>,
    timeout: Duration,
    /// By ECRF URL: every URL of the configuration has one.
    caches: HashMap<String, Cache>,
    /// Refreshes of cached mappings for the core to send.
    refreshes: VecDeque<LostRefresh>,
}

/// A copy has the same settings and empty caches of the same size.
impl Clone for LostRouting {
    fn clone(&self) -> Self {
        LostRouting {
            default: self.default.clone(),
            countries: self.countries.clone(),
            timeout: self.timeout,
            caches: self
                .caches
                .iter()
                .map(|(u, c)| (u.clone(), Cache::new(c.capacity())))
                .collect(),
            refreshes: VecDeque::new(),
        }
    }
}

impl LostRouting {
    /// None when no ECRF is configured.
    pub(super) fn from_config(config: &Config) -> Option<LostRouting> {
        let l = &config.emergency.lost;
        if l.ecrf.is_none() && l.countries.is_empty() {
            return None;
        }
        let caches = l
            .ecrf
            .iter()
            .chain(l.countries.values())
            .map(|u| (u.clone(), Cache::new(l.cache_size)))
            .collect();
        Some(LostRouting {
            default: l.ecrf.clone(),
            countries: l
                .countries
                .iter()
                .map(|(c, u)| (c.trim().to_ascii_uppercase(), u.clone()))
                .collect(),
            timeout: Duration::from_millis(l.timeout_ms),
            caches,
            refreshes: VecDeque::new(),
        })
    }

    /// The mappings cached, by ECRF, taken out of a router a reload
    /// replaces.
    pub(super) fn take_caches(&mut self) -> crate::proxy::LostCaches {
        std::mem::take(&mut self.caches)
    }

    /// Takes over the mappings of the router this one replaces: those of
    /// an ECRF it still asks, with the same `cache_size`. The others
    /// (an ECRF no country asks any more) are dropped.
    pub(super) fn keep_caches(&mut self, old: crate::proxy::LostCaches) {
        for (url, cache) in old {
            if let Some(mine) = self.caches.get_mut(&url) {
                if mine.capacity() == cache.capacity() {
                    *mine = cache;
                }
            }
        }
    }

    /// The cache of the ECRF at `url` (one of the configuration's, which
    /// all have one from the start).
    fn cache(&mut self, url: &str) -> &mut Cache {
        if !self.caches.contains_key(url) {
            let capacity = self.caches.values().next().map_or(1, Cache::capacity);
            self.caches.insert(url.to_owned(), Cache::new(capacity));
        }
        self.caches.get_mut(url).expect("inserted above")
    }

    fn url_for(&self, country: Option<&str>) -> Option<&str> {
        country
            .and_then(|c| self.countries.get(&c.to_ascii_uppercase()))
            .or(self.default.as_ref())
            .map(String::as_str)
    }

    /// What LoST is asked about for this call: its location and service,
    /// and the ECRF; `None` when the call does not go by LoST.
    fn subject(
        &self,
        decision: &RouteDecision,
        country: Option<&str>,
        located: Located<'_>,
        service: &str,
    ) -> Option<(String, lost::Location, String)> {
        if decision.route != RouteKind::Psap && !unplaced_address(decision) {
            return None;
        }
        let location = match decision.routed_by {
            RoutedBy::Dynamic => match (&located.dynamic.geo, &located.dynamic.civic) {
                (Some(g), _) => lost::Location::Geodetic(g.shape.clone()),
                (None, Some(c)) => lost::Location::Civic(c.clone()),
                (None, None) => return None,
            },
            // The caller's registered address, by the `civic` profile.
            RoutedBy::Registered => lost::Location::Civic(located.registered?.civic.clone()),
            RoutedBy::None => return None,
        };
        let url = self.url_for(country)?.to_owned();
        // The call's service as the country rules found it (`110` in
        // Germany asks for urn:service:sos.police).
        let service = if service.starts_with("urn:service:sos") {
            service.to_owned()
        } else {
            lost::DEFAULT_SERVICE.to_owned()
        };
        Some((url, location, service))
    }

    /// The query for a call about to be routed, unless a fresh cached
    /// mapping answers.
    pub(super) fn query(
        &mut self,
        decision: &RouteDecision,
        country: Option<&str>,
        located: Located<'_>,
        service: &str,
        wall: Option<time::OffsetDateTime>,
    ) -> Option<LostQuery> {
        let (url, location, service) = self.subject(decision, country, located, service)?;
        let now = wall.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        self.plan(&url, &location, &service, now).err()
    }

    /// [`plan`] for a call: the cached mapping to route on (a refresh it
    /// asks for queued), or the query to wait for.
    fn plan(
        &mut self,
        url: &str,
        location: &lost::Location,
        service: &str,
        now: time::OffsetDateTime,
    ) -> Result<Arc<Mapping>, LostQuery> {
        let timeout = self.timeout;
        match plan(self.cache(url), location, service, LOCATION_ID, now) {
            Plan::Cached(m) => Ok(m),
            Plan::Refresh { mapping, body } => {
                if self.refreshes.len() < REFRESHES_QUEUED {
                    self.refreshes.push_back(LostRefresh {
                        query: LostQuery {
                            url: url.to_owned(),
                            body,
                            timeout,
                        },
                        location: location.clone(),
                        service: service.to_owned(),
                    });
                } else {
                    metrics::counter!(m::LOST_REFRESHES, "outcome" => "queue_full").increment(1);
                }
                Ok(mapping)
            }
            Plan::Ask { body } => Err(LostQuery {
                url: url.to_owned(),
                body,
                timeout,
            }),
        }
    }

    /// The next refresh for the core to send.
    pub(super) fn poll_refresh(&mut self) -> Option<LostRefresh> {
        self.refreshes.pop_front()
    }

    /// A refresh's answer: kept in the cache of its ECRF when it gives a
    /// mapping and this router still asks that ECRF; otherwise the mapping
    /// in use stays until it expires.
    pub(super) fn refreshed(
        &mut self,
        refresh: LostRefresh,
        answer: LostAnswer<'_>,
        wall: Option<time::OffsetDateTime>,
    ) {
        let now = wall.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let LostRefresh {
            query,
            location,
            service,
        } = refresh;
        let Some(cache) = self.caches.get_mut(&query.url) else {
            metrics::counter!(m::LOST_REFRESHES, "outcome" => "dropped").increment(1);
            return;
        };
        let answer = match answer {
            LostAnswer::Body(b) => Ok(b),
            LostAnswer::Failed(why) => Err(why.why().into_owned()),
        };
        match lost::route::refreshed(cache, &location, &service, answer, now) {
            Ok(_) => metrics::counter!(m::LOST_REFRESHES, "outcome" => "ok").increment(1),
            Err(why) => {
                metrics::counter!(m::LOST_REFRESHES, "outcome" => "failed").increment(1);
                tracing::warn!(ecrf = %query.url, why = %why, "LoST refresh of a cached mapping failed; the mapping serves until it expires");
            }
        }
    }

    /// What decides the call's PSAP, given what came back from the query
    /// made for it (`answer`; `None`: none was made).
    pub(super) fn outcome(
        &mut self,
        decision: &RouteDecision,
        country: Option<&str>,
        located: Located<'_>,
        service: &str,
        answer: Option<LostAnswer<'_>>,
        wall: Option<time::OffsetDateTime>,
    ) -> Option<Outcome> {
        let (url, location, service) = self.subject(decision, country, located, service)?;
        let now = wall.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Some(match answer {
            Some(LostAnswer::Body(b)) => settle(self.cache(&url), &location, &service, Ok(b), now),
            Some(LostAnswer::Failed(why)) => settle(
                self.cache(&url),
                &location,
                &service,
                Err(why.why().into_owned()),
                now,
            ),
            None => match self.plan(&url, &location, &service, now) {
                Ok(m) => Outcome {
                    decided_by: DecidedBy::LostCache,
                    mapping: Some(m),
                    why: None,
                },
                Err(_) => settle(
                    self.cache(&url),
                    &location,
                    &service,
                    Err("the ECRF was not asked (no room for another query)".into()),
                    now,
                ),
            },
        })
    }
}

impl LostRouting {
    /// What a running router would do with LoST for this call, as JSON,
    /// asking nothing and keeping nothing (`sosrouter inspect`): the ECRF
    /// and the request it would be sent, the location it is about and the
    /// key its answer would be cached under; or why no ECRF is asked.
    pub(super) fn describe(
        &self,
        decision: &RouteDecision,
        country: Option<&str>,
        located: Located<'_>,
        service: &str,
    ) -> serde_json::Value {
        use serde_json::json;
        let Some((url, location, service)) = self.subject(decision, country, located, service)
        else {
            let why = if self.url_for(country).is_none() {
                format!(
                    "no ECRF for {} ([emergency.lost] countries, ecrf)",
                    country.unwrap_or("an unknown country")
                )
            } else if decision.route != RouteKind::Psap {
                format!(
                    "the call goes to the {} route: only calls routed to a PSAP are asked about",
                    decision.route.as_str()
                )
            } else {
                "the call is routed on no location an ECRF can be asked about".to_owned()
            };
            return json!({
                "ecrf": self.url_for(country),
                "asked": false,
                "why": why,
            });
        };
        let cache_key = match lost::route::key(&location, &service) {
            lost::CacheKey::Point { lat_e7, lon_e7, .. } => json!({
                "lat": lat_e7 as f64 / 1e7,
                "lon": lon_e7 as f64 / 1e7,
            }),
            lost::CacheKey::Civic { address, .. } => json!(address),
        };
        // The request exactly as a router with nothing cached sends it.
        let request = match plan(
            &mut Cache::new(1),
            &location,
            &service,
            LOCATION_ID,
            time::OffsetDateTime::UNIX_EPOCH,
        ) {
            Plan::Ask { body } => Some(body),
            Plan::Cached(_) | Plan::Refresh { .. } => None,
        };
        json!({
            "ecrf": url,
            "asked": true,
            "location_from": decision.routed_by.as_str(),
            "profile": location.profile(),
            "service": service,
            "cache_key": cache_key,
            "timeout_ms": self.timeout.as_millis() as u64,
            "request": request,
        })
    }
}

/// Whether `decision` screens a call the rules route by its registered
/// address only because the embedded data places that address in no
/// service area: the ECRF may know it, and its answer then routes the call
/// to a PSAP ([`apply`]); with none, the call is screened as before. (A
/// trusted dynamic location in no area is not such a call: the caller is
/// elsewhere.)
fn unplaced_address(decision: &RouteDecision) -> bool {
    decision.route == RouteKind::Screening
        && decision.routed_by == RoutedBy::Registered
        && decision.reason == Reason::ScreeningNoPsap
        && decision.registered_psap.is_none()
        && !matches!(decision.dynamic, DynamicUse::Trusted { .. })
}

/// Puts the mapping's PSAP first in `decision`. Gives false, changing
/// nothing, when no trunk leads to it.
pub(super) fn apply(
    decision: &mut RouteDecision,
    mapping: &Arc<Mapping>,
    areas: &ServiceAreas,
    psap_trunks: &PsapTrunks,
) -> bool {
    let Some(uri) = mapping.uris.first() else {
        return false;
    };
    let known = areas.psap_by_uri(uri);
    let (id, area, trunk) = match known {
        Some(p) => (p.id.clone(), p.area.clone(), psap_trunks.trunk_for(&p.id)),
        None => (
            "lost".to_owned(),
            mapping.source.clone(),
            psap_trunks.trunk_for(""),
        ),
    };
    let Some(trunk) = trunk.map(str::to_owned) else {
        return false;
    };
    let target = RouteTarget {
        trunk: trunk.clone(),
        route: Some(uri.clone()),
        label: id.clone(),
    };
    decision.targets.retain(|t| *t != target);
    decision.targets.insert(0, target);
    // A call screened for want of a PSAP for its registered address goes
    // to the one the ECRF gave, the screening center behind it.
    if unplaced_address(decision) {
        decision.route = RouteKind::Psap;
        decision.reason = Reason::RegisteredAddress;
    }
    decision.psap = Some(PsapChoice {
        id,
        area,
        uri: uri.clone(),
        trunk,
        how: MatchKind::Contains,
    });
    true
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use time::macros::datetime;

    use super::*;
    use crate::emergency::detect::Countries;
    use crate::emergency::EmergencyRouter;
    use crate::inventory::{Capabilities, Inventory, NumberEntry};
    use crate::lost::{write, Expires, DEFAULT_SERVICE};
    use crate::pidf::CivicAddress;
    use crate::proxy::{Decision, LostFailure, Proto, RouteContext, Router, Source};

    const ECRF: &str = "https://ecrf.example/lost";
    const FROM_ECRF: &str = "sip:sf@psap.ecrf.example";

    fn address(fields: &[(&str, &str)]) -> Address {
        let mut civic = CivicAddress::new();
        for (k, v) in fields {
            civic.push(k, v);
        }
        Address { civic, point: None }
    }

    fn number(n: &str, cap: bool, a: Address) -> NumberEntry {
        NumberEntry {
            number: n.into(),
            tenant: "acme".into(),
            country: "US".into(),
            common_area_phone: cap,
            capabilities: Capabilities::default(),
            location_id: None,
            registered: Some(a),
        }
    }

    /// The shipped configuration with an ECRF; Common Area Phones at one
    /// San Francisco address written two ways, one in Denver, and an
    /// ordinary phone at the San Francisco address.
    fn router() -> EmergencyRouter {
        router_asking(ECRF, 4096)
    }

    /// [`router`] with another ECRF URL or cache size.
    fn router_asking(ecrf: &str, cache_size: usize) -> EmergencyRouter {
        let mut config = Config::embedded();
        config.emergency.lost.ecrf = Some(ecrf.into());
        config.emergency.lost.cache_size = cache_size;
        let sf = [
            ("country", "US"),
            ("A1", "CA"),
            ("A3", "San Francisco"),
            ("RD", "Dr Carlton B Goodlett"),
            ("STS", "Pl"),
            ("HNO", "1"),
            ("PC", "94102"),
        ];
        let sf_again = [
            ("country", "us"),
            ("A1", " ca"),
            ("A3", "san   francisco "),
            ("RD", "DR CARLTON B\tGOODLETT"),
            ("STS", "pl"),
            ("HNO", "1"),
            ("PC", "94102"),
        ];
        let denver = [
            ("country", "US"),
            ("A1", "CO"),
            ("A3", "Denver"),
            ("RD", "E Colfax"),
            ("STS", "Ave"),
            ("HNO", "200"),
            ("PC", "80203"),
        ];
        let mut inv = Inventory::empty();
        inv.insert(number("+14155550177", true, address(&sf)));
        inv.insert(number("+14155550178", true, address(&sf_again)));
        inv.insert(number("+13035550117", true, address(&denver)));
        inv.insert(number("+14155550179", false, address(&sf)));
        // A German number (Germany routes by the registered address) at an
        // address no embedded service area holds (a country code none has).
        let mut nowhere = number(
            "+4930555017",
            false,
            address(&[
                ("country", "ZZ"),
                ("A1", "Nirgendland"),
                ("A3", "Nirgendwo"),
                ("RD", "Keinweg"),
                ("HNO", "1"),
            ]),
        );
        nowhere.country = "DE".into();
        inv.insert(nowhere);
        let areas = super::super::psap::ServiceAreas::embedded().unwrap();
        EmergencyRouter::new(
            &config,
            Countries::shipped(),
            Arc::new(inv),
            Arc::new(areas),
        )
        .unwrap()
    }

    /// A 911 call from `caller` with no location of its own.
    fn invite(caller: &str) -> crate::sip::Message {
        let text = format!(
            "INVITE sip:911@192.0.2.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{caller}\r\n\
             Max-Forwards: 70\r\n\
             To: <sip:911@192.0.2.1>\r\n\
             From: <sip:{caller}@127.0.0.1>;tag=1\r\n\
             Call-ID: reg-{caller}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{caller}@127.0.0.1:5062>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        crate::sip::parse_datagram(Bytes::from(text), &Default::default()).unwrap()
    }

    fn source() -> Source {
        let a: SocketAddr = "127.0.0.1:5062".parse().unwrap();
        Source {
            proto: Proto::Udp,
            peer: a,
            local: a,
            conn: None,
        }
    }

    fn ctx<'a>(source: &'a Source, lost: Option<LostAnswer<'a>>) -> RouteContext<'a> {
        RouteContext {
            source,
            inbound_trunk: Some("carrier"),
            dereferenced: None,
            lost,
            wall: Some(datetime!(2026-12-07 12:00:00 UTC)),
            unique: 7,
        }
    }

    fn answer() -> String {
        let m = Mapping {
            expires: Expires::At(datetime!(2026-12-08 12:00:00 UTC)),
            last_updated: None,
            source: "ecrf.example".into(),
            source_id: "sf".into(),
            display_names: vec![],
            service: DEFAULT_SERVICE.into(),
            boundary: None,
            boundary_reference: None,
            uris: vec![FROM_ECRF.into()],
            other_uris: vec![],
            service_number: None,
        };
        write::find_service_response(&[m], &["ecrf.example".into()], Some(LOCATION_ID))
    }

    /// (first target's Route, psap_decided_by) of a routed call.
    fn routed(d: Decision) -> (Option<String>, Option<&'static str>) {
        let Decision::Route {
            targets, details, ..
        } = d
        else {
            panic!("not routed: {d:?}")
        };
        (
            targets[0].route.clone(),
            details.and_then(|d| d.psap_decided_by),
        )
    }

    #[test]
    fn a_registered_address_is_asked_by_the_civic_profile_then_found_in_the_cache() {
        let mut r = router();
        let src = source();

        // A Common Area Phone without a location: routed by its registered
        // address, which is asked about as a civic address.
        let call = invite("+14155550177");
        let q = r.lost_query(&call, &ctx(&src, None)).expect("a query");
        assert_eq!(q.url, ECRF);
        assert!(q.body.contains("profile=\"civic\""), "{}", q.body);
        assert!(q.body.contains("San Francisco"), "{}", q.body);
        assert!(q.body.contains("urn:service:sos"), "{}", q.body);
        let body = answer();
        let d = r.route(&call, &ctx(&src, Some(LostAnswer::Body(body.as_bytes()))));
        assert_eq!(routed(d), (Some(FROM_ECRF.into()), Some("lost")));

        // Another number at the same address, written in other case and
        // spacing: the cached mapping answers, nothing is asked.
        let call = invite("+14155550178");
        assert_eq!(r.lost_query(&call, &ctx(&src, None)), None);
        let d = r.route(&call, &ctx(&src, None));
        assert_eq!(routed(d), (Some(FROM_ECRF.into()), Some("lost-cache")));

        // Another address is asked about; with no answer the embedded data
        // routes it (Denver's own PSAP).
        let call = invite("+13035550117");
        let q = r.lost_query(&call, &ctx(&src, None)).expect("a query");
        assert!(q.body.contains("Denver"), "{}", q.body);
        let d = r.route(
            &call,
            &ctx(&src, Some(LostAnswer::Failed(LostFailure::Timeout))),
        );
        let (route, by) = routed(d);
        assert_eq!(by, Some("embedded"));
        assert!(route.unwrap().contains("us-08031"));

        // An ordinary phone at the cached address goes to the screening
        // center, which no ECRF is asked about.
        let call = invite("+14155550179");
        assert_eq!(r.lost_query(&call, &ctx(&src, None)), None);
        let Decision::Route { route, details, .. } = r.route(&call, &ctx(&src, None)) else {
            panic!()
        };
        assert_eq!(route, "screening");
        assert_eq!(details.unwrap().psap_decided_by, None);
    }

    #[test]
    fn a_new_inventory_snapshot_keeps_the_mappings_of_addresses() {
        let mut r = router();
        let src = source();
        let call = invite("+14155550177");
        assert!(r.lost_query(&call, &ctx(&src, None)).is_some());
        let body = answer();
        r.route(&call, &ctx(&src, Some(LostAnswer::Body(body.as_bytes()))));

        // A new snapshot in which a new number shares the address: its call
        // needs no query.
        let mut inv = (*r.inventory()).clone();
        let sf = inv.get("+14155550177").unwrap().registered.unwrap();
        inv.insert(number("+14155550180", true, sf));
        r.set_inventory(Arc::new(inv));
        let call = invite("+14155550180");
        assert_eq!(r.lost_query(&call, &ctx(&src, None)), None);
        let d = r.route(&call, &ctx(&src, None));
        assert_eq!(routed(d), (Some(FROM_ECRF.into()), Some("lost-cache")));
    }

    #[test]
    fn a_failed_query_is_recorded_with_its_reason() {
        let cases = [
            (LostFailure::Timeout, "no answer from the ECRF in time"),
            (LostFailure::Refused, "ECRF refused the connection"),
            (LostFailure::Status(503), "ECRF answered HTTP 503"),
            (LostFailure::Status(404), "ECRF answered HTTP 404"),
            (
                LostFailure::Unreadable,
                "ECRF answer unreadable: it broke off while read",
            ),
            (
                LostFailure::NotAllowed,
                "ECRF not asked: its host is not one emergency.location_servers allows",
            ),
        ];
        let src = source();
        for (failure, why) in cases {
            let mut r = router();
            let call = invite("+13035550117");
            assert!(r.lost_query(&call, &ctx(&src, None)).is_some());
            let d = r.route(&call, &ctx(&src, Some(LostAnswer::Failed(failure))));
            let Decision::Route { details, .. } = d else {
                panic!("{why}: not routed")
            };
            let details = details.unwrap();
            assert_eq!(details.psap_decided_by, Some("embedded"), "{why}");
            assert_eq!(details.lost_why.as_deref(), Some(why));
            assert!(why.len() <= crate::lost::REASON_MAX);
        }
    }

    #[test]
    fn a_reload_keeps_the_mappings_of_the_same_ecrf_only() {
        let src = source();
        let call = invite("+14155550177");
        // (the new router's ECRF, its cache size, whether the mapping is kept)
        let cases = [
            (ECRF, 4096, true),
            ("https://ecrf-b.example/lost", 4096, false),
            (ECRF, 16, false),
        ];
        for (ecrf, size, kept) in cases {
            let mut old = router();
            assert!(old.lost_query(&call, &ctx(&src, None)).is_some());
            let body = answer();
            old.route(&call, &ctx(&src, Some(LostAnswer::Body(body.as_bytes()))));

            let mut new = router_asking(ecrf, size);
            new.keep_lost_caches(old.take_lost_caches());
            let q = new.lost_query(&call, &ctx(&src, None));
            assert_eq!(q.is_none(), kept, "{ecrf} {size}");
            if kept {
                let d = new.route(&call, &ctx(&src, None));
                assert_eq!(routed(d), (Some(FROM_ECRF.into()), Some("lost-cache")));
            } else {
                assert_eq!(q.unwrap().url, ecrf);
            }
        }
    }

    #[test]
    fn a_registered_address_in_no_service_area_asks_the_ecrf() {
        let src = source();
        let mut r = router();
        let call = invite("+4930555017");

        // No answer: screened, as without LoST.
        let q = r.lost_query(&call, &ctx(&src, None)).expect("a query");
        assert!(q.body.contains("Nirgendwo"), "{}", q.body);
        let d = r.route(
            &call,
            &ctx(&src, Some(LostAnswer::Failed(LostFailure::Timeout))),
        );
        let Decision::Route { route, details, .. } = d else {
            panic!("not routed: {d:?}")
        };
        assert_eq!(route, "screening", "{details:?}");
        assert_eq!(details.unwrap().psap_decided_by, Some("embedded"));

        // The ECRF's answer: to its PSAP, the screening center behind it.
        let body = answer();
        let d = r.route(&call, &ctx(&src, Some(LostAnswer::Body(body.as_bytes()))));
        let Decision::Route {
            route,
            targets,
            details,
            ..
        } = d
        else {
            panic!("not routed: {d:?}")
        };
        assert_eq!(route, "psap");
        assert_eq!(targets[0].route.as_deref(), Some(FROM_ECRF));
        assert!(
            targets.iter().any(|t| t.label == "screening"),
            "{targets:?}"
        );
        assert_eq!(details.unwrap().psap_decided_by, Some("lost"));
    }
}
