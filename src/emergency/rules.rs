//! The routing decision for an emergency or test call: a pure function of
//! what is known about the call ([`CallFacts`]) and the rules, service areas
//! and trunks it is decided under ([`RulesContext`]).
//!
//! In order:
//! 1. A test call goes to the test trunk (`test-call`); never to a PSAP.
//! 2. A country that screens every call (`screen_all`) sends it to the
//!    screening center (`screening-country-policy`).
//! 3. In a country with dynamic routing, a dynamic location inside the
//!    caller's country that is trusted (its method, or a match with one of
//!    the tenant's defined locations) goes to the PSAP serving it
//!    (`dynamic-location`).
//! 4. Otherwise there, a Common Area Phone goes to the PSAP of its registered
//!    address (`common-area-phone`), and any other call to the screening
//!    center, with the reason the dynamic location was not used
//!    (`screening-location-outside-country`, `screening-untrusted-location`,
//!    `screening-no-psap`, `screening-no-location`).
//! 5. Elsewhere the registered address routes the call to its PSAP
//!    (`registered-address`); without one (or without a PSAP for it) the
//!    call is screened, else sent to the country's default PSAP
//!    (`country-default`).
//!
//! Every PSAP is looked up for the call's service ([`CallFacts::service`]):
//! the PSAP of that service serving the place, else that of its parent
//! service, down to `urn:service:sos` (see [`crate::emergency::psap`]).
//!
//! After the first target come the fallbacks the proxy walks when it
//! fails: the PSAP of a trusted dynamic location, the screening center, the
//! PSAP of the registered address and the last resort, each once. For a
//! call to one service (`urn:service:sos.police`) each PSAP of that service
//! is followed by the general (`urn:service:sos`) PSAP of the same place.
//! When no target at all is found the call goes to the last resort
//! (`last-resort`).

use crate::emergency::detect::{CallKind, CountryRules, SOS};
use crate::emergency::location::{matching_location, Location};
use crate::emergency::psap::{self, MatchKind, ServiceAreas};
use crate::inventory::{Address, NumberEntry, TenantLocation};
use crate::proxy::RouteTarget;

/// Where the call goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Psap,
    Screening,
    Test,
    LastResort,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Psap => "psap",
            RouteKind::Screening => "screening",
            RouteKind::Test => "test",
            RouteKind::LastResort => "last-resort",
        }
    }
}

/// Which location the decision rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutedBy {
    Dynamic,
    Registered,
    None,
}

impl RoutedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RoutedBy::Dynamic => "dynamic",
            RoutedBy::Registered => "registered",
            RoutedBy::None => "none",
        }
    }
}

/// Why the call goes where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TestCall,
    DynamicLocation,
    CommonAreaPhone,
    RegisteredAddress,
    ScreeningCountryPolicy,
    ScreeningUntrustedLocation,
    ScreeningNoLocation,
    ScreeningLocationOutsideCountry,
    /// A location was usable but no PSAP was found for it.
    ScreeningNoPsap,
    CountryDefault,
    LastResort,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TestCall => "test-call",
            Reason::DynamicLocation => "dynamic-location",
            Reason::CommonAreaPhone => "common-area-phone",
            Reason::RegisteredAddress => "registered-address",
            Reason::ScreeningCountryPolicy => "screening-country-policy",
            Reason::ScreeningUntrustedLocation => "screening-untrusted-location",
            Reason::ScreeningNoLocation => "screening-no-location",
            Reason::ScreeningLocationOutsideCountry => "screening-location-outside-country",
            Reason::ScreeningNoPsap => "screening-no-psap",
            Reason::CountryDefault => "country-default",
            Reason::LastResort => "last-resort",
        }
    }
}

/// Which trunk leads to a PSAP: patterns of PSAP ids (an exact id, a prefix
/// ending in `*` such as `SYN-US-*`, or `*`) with their trunk. An exact id
/// wins over a prefix, a longer prefix over a shorter one, any over `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PsapTrunks {
    exact: Vec<(String, String)>,
    /// Prefixes, longest first; `*` is the empty prefix.
    prefixes: Vec<(String, String)>,
}

impl PsapTrunks {
    /// Builds the table; a `*` anywhere but at the end is refused.
    pub fn new<'a>(
        patterns: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PsapTrunks, String> {
        let mut t = PsapTrunks::default();
        for (pattern, trunk) in patterns {
            match pattern.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => {
                    t.prefixes.push((prefix.to_string(), trunk.to_string()))
                }
                None if !pattern.is_empty() && !pattern.contains('*') => {
                    t.exact.push((pattern.to_string(), trunk.to_string()))
                }
                _ => {
                    return Err(format!(
                        "PSAP pattern {pattern:?}: only a trailing * is allowed"
                    ))
                }
            }
        }
        t.prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(t)
    }

    /// The trunk for a PSAP id.
    pub fn trunk_for(&self, psap_id: &str) -> Option<&str> {
        self.exact
            .iter()
            .find(|(id, _)| id == psap_id)
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| psap_id.starts_with(p.as_str()))
            })
            .map(|(_, t)| t.as_str())
    }

    /// Every trunk named.
    pub fn trunks(&self) -> impl Iterator<Item = &str> {
        self.exact
            .iter()
            .chain(&self.prefixes)
            .map(|(_, t)| t.as_str())
    }
}

/// What is known about the call.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    pub kind: CallKind,
    /// The emergency service the call asks for, in lower case
    /// (`urn:service:sos.police`; `urn:service:sos` for the service as a
    /// whole).
    pub service: &'a str,
    /// The caller's inventory entry, if the number is known.
    pub entry: Option<&'a NumberEntry>,
    /// The locations the caller's tenant defined.
    pub tenant_locations: &'a [TenantLocation],
    /// The location that came with the call.
    pub location: &'a Location,
}

/// What the call is decided under.
#[derive(Debug, Clone, Copy)]
pub struct RulesContext<'a> {
    /// The caller's country's rules (the default rules when unknown).
    pub rules: &'a CountryRules,
    pub areas: &'a ServiceAreas,
    pub psap_trunks: &'a PsapTrunks,
}

/// A PSAP chosen for a location.
#[derive(Debug, Clone, PartialEq)]
pub struct PsapChoice {
    pub id: String,
    /// The service area that matched (`US-08031`, or a country `DE`).
    pub area: String,
    pub uri: String,
    pub trunk: String,
    pub how: MatchKind,
}

impl PsapChoice {
    fn target(&self) -> RouteTarget {
        RouteTarget {
            trunk: self.trunk.clone(),
            route: Some(self.uri.clone()),
            label: self.id.clone(),
        }
    }
}

/// What became of the dynamic location.
#[derive(Debug, Clone, PartialEq)]
pub enum DynamicUse {
    /// No civic address or shape came with the call.
    Absent,
    /// Its country is not the caller's (or cannot be told).
    OutsideCountry { country: Option<String> },
    /// Inside the country, but neither its method nor a tenant location
    /// vouches for it.
    Untrusted,
    /// Trusted; `psap` is the PSAP serving it, if one was found.
    Trusted {
        /// `method:GPS` or `tenant-location:ID`.
        basis: String,
        psap: Option<PsapChoice>,
    },
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteDecision {
    pub route: RouteKind,
    pub routed_by: RoutedBy,
    pub reason: Reason,
    /// The PSAP of the first target, when it is one.
    pub psap: Option<PsapChoice>,
    /// First target first, then the fallbacks, without repeats.
    pub targets: Vec<RouteTarget>,
    /// How the dynamic location was judged (not judged for test calls and
    /// countries without dynamic routing: `Absent` or `Untrusted` then say
    /// only whether one came).
    pub dynamic: DynamicUse,
    /// The PSAP of the registered address, if it has one.
    pub registered_psap: Option<PsapChoice>,
}

/// Finds the PSAP for an address or location and the trunk leading to it.
fn choose(m: Option<psap::Match<'_>>, ctx: &RulesContext<'_>) -> Option<PsapChoice> {
    let m = m?;
    if m.how == MatchKind::CountryDefault && !ctx.rules.country_default {
        return None;
    }
    let trunk = ctx.psap_trunks.trunk_for(&m.psap.id)?;
    Some(PsapChoice {
        id: m.psap.id.clone(),
        area: m.area.to_string(),
        uri: m.psap.uri.clone(),
        trunk: trunk.to_string(),
        how: m.how,
    })
}

fn civic_lookup<'s>(
    areas: &'s ServiceAreas,
    civic: &crate::pidf::CivicAddress,
    service: &str,
) -> Option<psap::Match<'s>> {
    let get = |k: &str| civic.get(k).unwrap_or("");
    areas.lookup_civic_for(
        &psap::CivicAddress {
            country: get("country"),
            a1: get("A1"),
            a2: get("A2"),
            a3: get("A3"),
            pc: get("PC"),
        },
        service,
    )
}

/// The PSAP of `service` serving a location: its point first, else its
/// civic address.
pub fn psap_for_location(
    location: &Location,
    service: &str,
    ctx: &RulesContext<'_>,
) -> Option<PsapChoice> {
    location
        .geo
        .as_ref()
        .and_then(|g| choose(ctx.areas.lookup_point_for(g.lat, g.lon, service), ctx))
        .or_else(|| {
            location
                .civic
                .as_ref()
                .and_then(|c| choose(civic_lookup(ctx.areas, c, service), ctx))
        })
}

/// The PSAP of `service` serving an inventory address: its point first,
/// else its civic address.
pub fn psap_for_address(
    address: &Address,
    service: &str,
    ctx: &RulesContext<'_>,
) -> Option<PsapChoice> {
    address
        .point
        .and_then(|(lat, lon)| choose(ctx.areas.lookup_point_for(lat, lon, service), ctx))
        .or_else(|| choose(civic_lookup(ctx.areas, &address.civic, service), ctx))
}

/// The country a location lies in: its civic country, else that of its
/// point.
pub fn location_country(location: &Location, areas: &ServiceAreas) -> Option<String> {
    location.civic_country().or_else(|| {
        location
            .geo
            .as_ref()
            .and_then(|g| areas.country_of_point(g.lat, g.lon))
            .map(str::to_string)
    })
}

/// Judges the dynamic location under the caller's rules.
pub fn judge_dynamic(facts: &CallFacts<'_>, ctx: &RulesContext<'_>) -> DynamicUse {
    let loc = facts.location;
    if !loc.is_usable() {
        return DynamicUse::Absent;
    }
    let country = location_country(loc, ctx.areas);
    if !country.as_deref().is_some_and(|c| ctx.rules.is_inside(c)) {
        return DynamicUse::OutsideCountry { country };
    }
    let basis = match loc.method.as_deref() {
        Some(m) if ctx.rules.trusts_method(m) => Some(format!("method:{}", m.trim())),
        _ => matching_location(facts.tenant_locations, loc)
            .map(|t| format!("tenant-location:{}", t.id)),
    };
    match basis {
        Some(basis) => DynamicUse::Trusted {
            basis,
            psap: psap_for_location(loc, facts.service, ctx),
        },
        None => DynamicUse::Untrusted,
    }
}

fn named_target(trunk: Option<&String>, label: &str) -> Option<RouteTarget> {
    trunk.map(|t| RouteTarget {
        trunk: t.clone(),
        route: None,
        label: label.to_string(),
    })
}

/// Decides where the call goes.
pub fn decide(facts: &CallFacts<'_>, ctx: &RulesContext<'_>) -> RouteDecision {
    let rules = ctx.rules;
    let registered = facts.entry.and_then(|e| e.registered.as_ref());
    let by_registered_or_none = if registered.is_some() {
        RoutedBy::Registered
    } else {
        RoutedBy::None
    };

    if facts.kind == CallKind::Test {
        let routed_by = if facts.location.is_usable() {
            RoutedBy::Dynamic
        } else {
            by_registered_or_none
        };
        return RouteDecision {
            route: RouteKind::Test,
            routed_by,
            reason: Reason::TestCall,
            psap: None,
            targets: named_target(rules.test_trunk.as_ref(), "test")
                .into_iter()
                .collect(),
            dynamic: if facts.location.is_usable() {
                DynamicUse::Untrusted
            } else {
                DynamicUse::Absent
            },
            registered_psap: None,
        };
    }

    let registered_psap = registered.and_then(|a| psap_for_address(a, facts.service, ctx));
    let dynamic = if rules.dynamic_routing {
        judge_dynamic(facts, ctx)
    } else if facts.location.is_usable() {
        DynamicUse::Untrusted
    } else {
        DynamicUse::Absent
    };
    let dynamic_psap = match &dynamic {
        DynamicUse::Trusted { psap: Some(p), .. } => Some(p.clone()),
        _ => None,
    };
    let cap = facts.entry.is_some_and(|e| e.common_area_phone);
    // A call for one service (police) also gets the general PSAP of the
    // same place right after that service's PSAP: it takes every
    // emergency, and is nearer the caller than the screening center.
    let for_service = facts.service != SOS;
    let registered_general = registered
        .filter(|_| for_service && registered_psap.is_some())
        .and_then(|a| psap_for_address(a, SOS, ctx));
    let dynamic_general = dynamic_psap
        .as_ref()
        .filter(|_| for_service)
        .and_then(|_| psap_for_location(facts.location, SOS, ctx));

    // The first choice, before trunks are known to exist.
    enum First {
        Psap(PsapChoice, Reason, RoutedBy),
        Screening(Reason),
    }
    let first = if rules.screen_all {
        First::Screening(Reason::ScreeningCountryPolicy)
    } else if rules.dynamic_routing {
        match (&dynamic, &dynamic_psap) {
            (_, Some(p)) => First::Psap(p.clone(), Reason::DynamicLocation, RoutedBy::Dynamic),
            _ => {
                let why = match &dynamic {
                    DynamicUse::Absent => Reason::ScreeningNoLocation,
                    DynamicUse::OutsideCountry { .. } => Reason::ScreeningLocationOutsideCountry,
                    DynamicUse::Untrusted => Reason::ScreeningUntrustedLocation,
                    DynamicUse::Trusted { .. } => Reason::ScreeningNoPsap,
                };
                match (&registered_psap, cap) {
                    (Some(p), true) => {
                        First::Psap(p.clone(), Reason::CommonAreaPhone, RoutedBy::Registered)
                    }
                    _ => First::Screening(why),
                }
            }
        }
    } else {
        match &registered_psap {
            Some(p) => First::Psap(p.clone(), Reason::RegisteredAddress, RoutedBy::Registered),
            None if registered.is_some() => First::Screening(Reason::ScreeningNoPsap),
            None => First::Screening(Reason::ScreeningNoLocation),
        }
    };

    let has_screening = rules.screening_trunk.is_some();
    let screening = named_target(rules.screening_trunk.as_ref(), "screening");
    let last_resort = named_target(rules.last_resort_trunk.as_ref(), "last-resort");
    let (mut route, mut reason, mut routed_by, mut psap) = match &first {
        First::Psap(p, reason, by) => (RouteKind::Psap, *reason, *by, Some(p.clone())),
        First::Screening(reason) => (RouteKind::Screening, *reason, by_registered_or_none, None),
    };
    let mut order: Vec<Option<RouteTarget>> = Vec::with_capacity(if for_service { 8 } else { 5 });
    let target = |p: &Option<PsapChoice>| p.as_ref().map(PsapChoice::target);
    match &first {
        First::Psap(p, _, by) => {
            order.push(Some(p.target()));
            order.push(target(if *by == RoutedBy::Dynamic {
                &dynamic_general
            } else {
                &registered_general
            }));
            order.push(target(&dynamic_psap));
            order.push(target(&dynamic_general));
            order.push(screening);
        }
        First::Screening(_) => {
            order.push(screening);
            order.push(target(&dynamic_psap));
            order.push(target(&dynamic_general));
        }
    }
    order.push(target(&registered_psap));
    order.push(target(&registered_general));

    // No screening center: the next PSAP is the first target.
    if matches!(first, First::Screening(_)) && !has_screening {
        if let Some(p) = &dynamic_psap {
            (route, reason, routed_by, psap) = (
                RouteKind::Psap,
                Reason::DynamicLocation,
                RoutedBy::Dynamic,
                Some(p.clone()),
            );
        } else if let Some(p) = &registered_psap {
            let why = if cap {
                Reason::CommonAreaPhone
            } else {
                Reason::RegisteredAddress
            };
            (route, reason, routed_by, psap) =
                (RouteKind::Psap, why, RoutedBy::Registered, Some(p.clone()));
        } else if let Some(p) = country_default(facts.service, ctx) {
            (route, reason, routed_by, psap) = (
                RouteKind::Psap,
                Reason::CountryDefault,
                RoutedBy::None,
                Some(p.clone()),
            );
            order.push(Some(p.target()));
            if for_service {
                order.push(country_default(SOS, ctx).map(|g| g.target()));
            }
        } else {
            (route, reason, routed_by, psap) = (
                RouteKind::LastResort,
                Reason::LastResort,
                RoutedBy::None,
                None,
            );
        }
    }
    order.push(last_resort);

    let mut targets: Vec<RouteTarget> = Vec::with_capacity(order.len());
    for t in order.into_iter().flatten() {
        if !targets
            .iter()
            .any(|seen| seen.trunk == t.trunk && seen.route == t.route)
        {
            targets.push(t);
        }
    }
    RouteDecision {
        route,
        routed_by,
        reason,
        psap,
        targets,
        dynamic,
        registered_psap,
    }
}

/// The country's default PSAP for the service, where the country allows it.
fn country_default(service: &str, ctx: &RulesContext<'_>) -> Option<PsapChoice> {
    let rules = ctx.rules;
    if rules.code.is_empty() || !rules.country_default {
        return None;
    }
    let p = ctx.areas.psap_for_area_for(&rules.code, service)?;
    let trunk = ctx.psap_trunks.trunk_for(&p.id)?;
    Some(PsapChoice {
        id: p.id.clone(),
        area: rules.code.clone(),
        uri: p.uri.clone(),
        trunk: trunk.to_string(),
        how: MatchKind::CountryDefault,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psap_trunk_patterns() {
        let t = PsapTrunks::new([
            ("*", "any"),
            ("SYN-US-*", "us"),
            ("SYN-US-06*", "california"),
            ("SYN-US-06075", "sf"),
        ])
        .unwrap();
        assert_eq!(t.trunk_for("SYN-US-06075"), Some("sf"));
        assert_eq!(t.trunk_for("SYN-US-06001"), Some("california"));
        assert_eq!(t.trunk_for("SYN-US-08031"), Some("us"));
        assert_eq!(t.trunk_for("SYN-DE"), Some("any"));
        let t = PsapTrunks::new([("SYN-US-*", "us")]).unwrap();
        assert_eq!(t.trunk_for("SYN-DE"), None);
        assert!(PsapTrunks::new([("SYN-*-X", "x")]).is_err());
        assert!(PsapTrunks::new([("", "x")]).is_err());
    }
}
