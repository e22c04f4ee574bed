//! LoST (RFC 5222) in the emergency router: for a call the rules send to
//! the PSAP of its own location, an ECRF is asked which PSAP serves that
//! location (`[emergency.lost]`), and its answer goes first.
//!
//! - Asked only when the country (the caller's, as the rules found it) has
//!   an ECRF, the rules route the call by its dynamic location to a PSAP,
//!   and no fresh cached mapping answers ([`crate::lost::route::plan`]).
//! - The answer, a cached mapping even expired, or else the embedded data
//!   decides ([`crate::lost::route::settle`]); the rules' own targets stay
//!   behind the LoST one as failover, so a LoST URI that does not answer
//!   costs the call one attempt, not the call.
//! - The mapping's SIP URI becomes the first target: through
//!   `[emergency.psap_trunks]` when it is the URI of a known PSAP record,
//!   else through the trunk of the `*` pattern (the first `psap` trunk by
//!   default), with the URI in a `Route` header.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::lost::route::{plan, settle, DecidedBy, Outcome, Plan};
use crate::lost::{self, Cache, Mapping};
use crate::proxy::{LostAnswer, LostQuery, RouteTarget};

use super::location::Location as CallLocation;
use super::psap::{MatchKind, ServiceAreas};
use super::rules::{PsapChoice, PsapTrunks, RouteDecision, RouteKind, RoutedBy};

/// The `id` of the location in the router's queries.
const LOCATION_ID: &str = "call";

/// `[emergency.lost]` as the router uses it, and its cache.
pub(super) struct LostRouting {
    default: Option<String>,
    countries: HashMap<String, String>,
    timeout: Duration,
    cache: Cache,
}

/// A copy has the same settings and an empty cache of the same size.
impl Clone for LostRouting {
    fn clone(&self) -> Self {
        LostRouting {
            default: self.default.clone(),
            countries: self.countries.clone(),
            timeout: self.timeout,
            cache: Cache::new(self.cache.capacity()),
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
        Some(LostRouting {
            default: l.ecrf.clone(),
            countries: l
                .countries
                .iter()
                .map(|(c, u)| (c.trim().to_ascii_uppercase(), u.clone()))
                .collect(),
            timeout: Duration::from_millis(l.timeout_ms),
            cache: Cache::new(l.cache_size),
        })
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
        dynamic: &CallLocation,
        service: &str,
    ) -> Option<(String, lost::Location, String)> {
        if decision.route != RouteKind::Psap || decision.routed_by != RoutedBy::Dynamic {
            return None;
        }
        let url = self.url_for(country)?.to_owned();
        let location = match (&dynamic.geo, &dynamic.civic) {
            (Some(g), _) => lost::Location::Geodetic(g.shape.clone()),
            (None, Some(c)) => lost::Location::Civic(c.clone()),
            (None, None) => return None,
        };
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
        dynamic: &CallLocation,
        service: &str,
        wall: Option<time::OffsetDateTime>,
    ) -> Option<LostQuery> {
        let (url, location, service) = self.subject(decision, country, dynamic, service)?;
        let now = wall.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        match plan(&mut self.cache, &location, &service, LOCATION_ID, now) {
            Plan::Cached(_) => None,
            Plan::Ask { body } => Some(LostQuery {
                url,
                body,
                timeout: self.timeout,
            }),
        }
    }

    /// What decides the call's PSAP, given what came back from the query
    /// made for it (`answer`; `None`: none was made).
    pub(super) fn outcome(
        &mut self,
        decision: &RouteDecision,
        country: Option<&str>,
        dynamic: &CallLocation,
        service: &str,
        answer: Option<LostAnswer<'_>>,
        wall: Option<time::OffsetDateTime>,
    ) -> Option<Outcome> {
        let (_, location, service) = self.subject(decision, country, dynamic, service)?;
        let now = wall.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let c = &mut self.cache;
        Some(match answer {
            Some(LostAnswer::Body(b)) => settle(c, &location, &service, Ok(b), now),
            Some(LostAnswer::Failed) => settle(
                c,
                &location,
                &service,
                Err("no answer from the ECRF in time".into()),
                now,
            ),
            None => match plan(c, &location, &service, LOCATION_ID, now) {
                Plan::Cached(m) => Outcome {
                    decided_by: DecidedBy::LostCache,
                    mapping: Some(m),
                    why: None,
                },
                Plan::Ask { .. } => settle(
                    c,
                    &location,
                    &service,
                    Err("the ECRF was not asked (no room for another query)".into()),
                    now,
                ),
            },
        })
    }
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
    let known = areas
        .psaps()
        .iter()
        .find(|p| p.uri.eq_ignore_ascii_case(uri));
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
    decision.psap = Some(PsapChoice {
        id,
        area,
        uri: uri.clone(),
        trunk,
        how: MatchKind::Contains,
    });
    true
}
