//! Emergency call handling: detection, location (PIDF-LO), the number
//! inventory, the country rules and PSAP selection, plugged into the proxy
//! as [`EmergencyRouter`].
//!
//! - [`detect`]: country rules and which dial strings are emergency or test
//!   calls.
//! - [`location`]: the location an INVITE carries (RFC 6442), read with
//!   the PIDF-LO layer ([`crate::pidf`]).
//! - [`rules`]: the routing decision, a pure function.
//! - [`psap`]: service areas and PSAPs.
//!
//! For each request the router reads the Request-URI first; only a dial
//! string that may be an emergency or test call goes further (caller,
//! inventory, location, rules). The forwarded INVITE keeps everything it
//! came with; the router adds `Call-Info` identifiers (NENA i3
//! `emergency-CallId` and `emergency-IncidentId`) when absent and, when the
//! decision rests on the registered address, that address as a PIDF-LO body
//! part whose `Geolocation` value goes first. Each PSAP target carries the
//! PSAP's URI in a `Route` header.

pub mod detect;
pub mod location;
mod lost;
pub mod psap;
pub mod rules;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::config::{Config, TrunkKind};
use crate::inventory::{self, Address, Inventory, NumberEntry, SharedInventory, TenantLocation};
use crate::pidf;
use crate::proxy::{
    Augment, Decision, LocationRecord, LostQuery, RouteContext, RouteDetails, Router,
};
use crate::sip::{HeaderName, Message, NameAddr};

use detect::{Countries, Detected};
use location::{Location, LocationSource};
use psap::ServiceAreas;
use rules::{CallFacts, PsapTrunks, RouteDecision, RoutedBy, RulesContext};

/// Where the caller's country was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountrySource {
    Inventory,
    Trunk,
    Number,
    Unknown,
}

impl CountrySource {
    pub fn as_str(self) -> &'static str {
        match self {
            CountrySource::Inventory => "inventory",
            CountrySource::Trunk => "trunk",
            CountrySource::Number => "number",
            CountrySource::Unknown => "unknown",
        }
    }
}

/// An inbound trunk as the router needs it.
#[derive(Debug, Clone, Default)]
struct Inbound {
    country: Option<String>,
    strip_prefixes: Vec<String>,
}

/// The emergency routing phase. The proxy core owns it and alone calls
/// it; a new inventory snapshot comes in through the core
/// ([`Router::set_inventory`]), so it needs no lock.
#[derive(Clone)]
pub struct EmergencyRouter {
    countries: Arc<Countries>,
    inventory: SharedInventory,
    /// Number → PIDF-LO document of its registered address, written once
    /// per snapshot.
    documents: HashMap<String, Bytes>,
    /// Number → its registered address as the call record and notice
    /// show it, the JSON made once per snapshot.
    registered: HashMap<String, Arc<dyn LocationRecord>>,
    areas: Arc<ServiceAreas>,
    psap_trunks: PsapTrunks,
    inbound: HashMap<String, Inbound>,
    reject_status: u16,
    domain: String,
    /// `[emergency.lost]` with an ECRF: LoST asked for calls routed by
    /// their own location.
    lost: Option<lost::LostRouting>,
}

impl std::fmt::Debug for EmergencyRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmergencyRouter")
            .field("numbers", &self.inventory.len())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// Everything the router found out about one request.
#[derive(Debug, Clone)]
pub struct Evaluation<'a> {
    pub detected: Option<Detected>,
    /// The caller's number in E.164 form.
    pub caller: Option<String>,
    pub entry: Option<NumberEntry>,
    /// The locations the caller's tenant defined.
    pub tenant_locations: &'a [TenantLocation],
    pub country: Option<String>,
    pub country_source: CountrySource,
    /// The location sent with the call (`none` when the request was not
    /// looked at).
    pub dynamic: Location,
    /// `None` for a call that is not an emergency or test call.
    pub decision: Option<RouteDecision>,
}

impl Evaluation<'_> {
    fn registered(&self) -> Option<&Address> {
        self.entry.as_ref().and_then(|e| e.registered.as_ref())
    }

    /// The caller's registered address from the inventory, if any.
    pub fn registered_address(&self) -> Option<&Address> {
        self.registered()
    }

    /// The location shown and recorded: the dynamic one when usable, else
    /// the registered address, else none (with any reference and errors).
    pub fn location_json(&self) -> Value {
        location_json(&self.dynamic, self.registered())
    }

    /// `null`, or the dial string, the caller's country and the kind.
    pub fn emergency_json(&self) -> Value {
        match &self.detected {
            Some(d) => json!({
                "number": d.number,
                "service": &*d.service,
                "country": self.country,
                "kind": d.kind.as_str(),
            }),
            None => Value::Null,
        }
    }

    /// The decision: route, what it rests on, the PSAP, the reason and the
    /// fallbacks after the first target.
    pub fn decision_json(&self) -> Value {
        match &self.decision {
            None => json!({
                "route": "not-emergency",
                "routed_by": "none",
                "psap_id": null,
                "area": null,
                "trunk": null,
                "reason": "not-emergency",
                "fallbacks": [],
            }),
            Some(d) => json!({
                "route": d.route.as_str(),
                "routed_by": d.routed_by.as_str(),
                "psap_id": d.psap.as_ref().map(|p| &p.id),
                "area": d.psap.as_ref().map(|p| &p.area),
                "trunk": d.targets.first().map(|t| &t.trunk),
                "reason": d.reason.as_str(),
                "fallbacks": d.targets.iter().skip(1).map(|t| json!({
                    "trunk": t.trunk,
                    "label": t.label,
                    "route": t.route,
                })).collect::<Vec<_>>(),
            }),
        }
    }
}

/// Where the shown location comes from (see [`location_json`]).
fn shown_source(dynamic: &Location, registered: Option<&Address>) -> LocationSource {
    if dynamic.is_usable() {
        dynamic.source
    } else if registered.is_some() {
        LocationSource::Registered
    } else {
        dynamic.source
    }
}

/// The dynamic location when usable, else the registered address, else
/// none; with the reference and the errors of the dynamic location.
pub fn location_json(dynamic: &Location, registered: Option<&Address>) -> Value {
    let d = dynamic;
    let civic_json = |c: &pidf::CivicAddress| {
        Value::Object(
            c.iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect::<Map<_, _>>(),
        )
    };
    let source = shown_source(d, registered);
    let (method, civic, geo) = match (d.is_usable(), registered) {
        (true, _) => (
            d.method.clone(),
            d.civic.as_ref().map(civic_json),
            d.geo
                .as_ref()
                .map(|g| json!({"lat": g.lat, "lon": g.lon, "radius_m": g.radius_m})),
        ),
        (false, Some(a)) => (
            None,
            Some(civic_json(&a.civic)),
            a.point
                .map(|(lat, lon)| json!({"lat": lat, "lon": lon, "radius_m": null})),
        ),
        (false, None) => (None, None, None),
    };
    json!({
        "source": source.as_str(),
        "method": method,
        "civic": civic,
        "geo": geo,
        "reference": d.reference,
        "errors": d.errors,
    })
}

/// The location kept with a call's details.
#[derive(Debug)]
struct CallLocation {
    dynamic: Location,
    /// Kept only when it is the location shown.
    registered: Option<Address>,
}

impl LocationRecord for CallLocation {
    fn to_json(&self) -> Value {
        location_json(&self.dynamic, self.registered.as_ref())
    }
}

/// A registered address with its JSON made once: the router keeps one per
/// number and inventory snapshot, so that a call's record and notice copy
/// the JSON instead of writing it again.
#[derive(Debug)]
struct RegisteredRecord {
    json: Value,
}

impl RegisteredRecord {
    fn of(address: &Address) -> Arc<dyn LocationRecord> {
        Arc::new(RegisteredRecord {
            json: address.to_json(),
        })
    }
}

impl LocationRecord for RegisteredRecord {
    fn to_json(&self) -> Value {
        self.json.clone()
    }
}

/// A registered address, as the call record's `registered_address`.
impl LocationRecord for Address {
    fn to_json(&self) -> Value {
        Address::to_json(self)
    }
}

/// Appends `bytes` as lower-case hex digits.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// The bits of one of a call's identifiers (`kind`: `callid`,
/// `incidentid`, `content-id`), from the decision's `unique` value: a
/// bijection of it per kind, so that no two decisions share an identifier
/// and none can be read back to the value.
fn identifier_bits(unique: u128, kind: &str) -> u128 {
    let salt = kind.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut x = unique ^ (u128::from(salt) << 64 | u128::from(salt));
    // Odd multipliers and xor-shifts are each invertible on 128 bits.
    for k in [
        0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835_u128,
        0xd6e8_feb8_6659_fd93_a5b3_5f6f_8a2e_c4ad,
    ] {
        x ^= x >> 67;
        x = x.wrapping_mul(k | 1);
    }
    x ^ (x >> 61)
}

impl EmergencyRouter {
    /// Builds the router from the configuration and its parts. Checks that
    /// every trunk the country rules and the PSAP table name exists.
    pub fn new(
        config: &Config,
        countries: Countries,
        inventory: SharedInventory,
        areas: Arc<ServiceAreas>,
    ) -> Result<EmergencyRouter, String> {
        let e = &config.emergency;
        let psap_trunks = if e.psap_trunks.is_empty() {
            let first = config
                .trunks
                .iter()
                .find(|t| t.kind == TrunkKind::Psap)
                .map(|t| t.name.as_str());
            PsapTrunks::new(first.map(|t| ("*", t)))?
        } else {
            PsapTrunks::new(e.psap_trunks.iter().map(|(p, t)| (p.as_str(), t.as_str())))?
        };
        let outbound = |name: &str| {
            config
                .trunk(name)
                .is_some_and(|t| t.kind != TrunkKind::Inbound)
        };
        for t in psap_trunks.trunks() {
            if !outbound(t) {
                return Err(format!("PSAP trunk {t:?} is not an outbound trunk"));
            }
        }
        for r in countries.all() {
            let what = if r.code.is_empty() {
                "default"
            } else {
                &r.code
            };
            for t in [&r.screening_trunk, &r.test_trunk, &r.last_resort_trunk]
                .into_iter()
                .flatten()
            {
                if !outbound(t) {
                    return Err(format!(
                        "country rules {what}: trunk {t:?} is not an outbound trunk of the configuration"
                    ));
                }
            }
        }
        let inbound = config
            .trunks
            .iter()
            .filter(|t| t.kind == TrunkKind::Inbound)
            .map(|t| {
                (
                    t.name.clone(),
                    Inbound {
                        country: t.country.as_ref().map(|c| c.trim().to_ascii_uppercase()),
                        strip_prefixes: t.strip_prefixes.clone(),
                    },
                )
            })
            .collect();
        let domain = e
            .domain
            .clone()
            .or_else(|| {
                config.sip.advertise.as_deref().map(|a| {
                    match a.rsplit_once(':') {
                        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
                        _ => a,
                    }
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
                })
            })
            .unwrap_or_else(|| "sosrouter.invalid".into());
        Ok(EmergencyRouter {
            countries: Arc::new(countries),
            inventory,
            documents: HashMap::new(),
            registered: HashMap::new(),
            areas,
            psap_trunks,
            inbound,
            reject_status: config.routing.non_emergency_status,
            domain,
            lost: lost::LostRouting::from_config(config),
        })
    }

    /// Builds the router from the configuration alone, reading the files it
    /// names; `inventory` replaces the configured inventory path.
    pub fn from_config(
        config: &Config,
        inventory: Option<&Path>,
    ) -> Result<EmergencyRouter, String> {
        let e = &config.emergency;
        let countries = match &e.countries {
            Some(p) => Countries::load(p).map_err(|e| e.to_string())?,
            None => Countries::shipped(),
        };
        let inv = match inventory.or(e.inventory.as_deref()) {
            Some(p) => Inventory::load(p).map_err(|e| e.to_string())?,
            None => Inventory::empty(),
        };
        let areas = match &e.service_areas {
            Some(dir) => ServiceAreas::load(dir),
            None => ServiceAreas::embedded(),
        }
        .map_err(|e| e.to_string())?;
        EmergencyRouter::new(config, countries, Arc::new(inv), Arc::new(areas))
    }

    /// The inventory snapshot in use.
    pub fn inventory(&self) -> SharedInventory {
        self.inventory.clone()
    }

    pub fn countries(&self) -> &Countries {
        &self.countries
    }

    pub fn areas(&self) -> &ServiceAreas {
        &self.areas
    }

    pub fn psap_trunks(&self) -> &PsapTrunks {
        &self.psap_trunks
    }

    /// What LoST does for an evaluated call, as `inspect` shows it: `null`
    /// for a call that is no emergency; else where the PSAP would come
    /// from, asking nothing: the ECRF, the request and the cache key
    /// (`asked`), or why no ECRF is asked; and `embedded`, the PSAP the
    /// embedded service areas give (what routes the call when the ECRF
    /// gives nothing usable and no mapping is cached, and the failover
    /// behind a mapping's PSAP).
    pub fn lost_json(&self, ev: &Evaluation<'_>) -> Value {
        let (Some(d), Some(det)) = (&ev.decision, &ev.detected) else {
            return Value::Null;
        };
        let mut v = match &self.lost {
            Some(l) => l.describe(
                d,
                ev.country.as_deref(),
                lost::Located {
                    dynamic: &ev.dynamic,
                    registered: ev.registered(),
                },
                &det.service,
            ),
            None => json!({
                "ecrf": null,
                "asked": false,
                "why": "no ECRF is configured ([emergency.lost] ecrf, countries)",
            }),
        };
        if let Value::Object(o) = &mut v {
            o.insert(
                "embedded".into(),
                d.psap.as_ref().map_or(
                    Value::Null,
                    |p| json!({"psap_id": p.id, "area": p.area, "uri": p.uri, "trunk": p.trunk}),
                ),
            );
        }
        v
    }

    /// Finds out everything about a request against `inventory`. With
    /// `always_locate`, the location is read even when the call is no
    /// emergency (for `sosrouter inspect`).
    pub fn evaluate<'a>(
        &self,
        inventory: &'a Inventory,
        req: &Message,
        inbound_trunk: Option<&str>,
        always_locate: bool,
    ) -> Evaluation<'a> {
        self.evaluate_with(inventory, req, inbound_trunk, always_locate, None)
    }

    /// [`EmergencyRouter::evaluate`] with a location document fetched by
    /// reference for this request.
    pub fn evaluate_with<'a>(
        &self,
        inventory: &'a Inventory,
        req: &Message,
        inbound_trunk: Option<&str>,
        always_locate: bool,
        dereferenced: Option<&[u8]>,
    ) -> Evaluation<'a> {
        let mut ev = Evaluation {
            detected: None,
            caller: None,
            entry: None,
            tenant_locations: &[],
            country: None,
            country_source: CountrySource::Unknown,
            dynamic: Location::none(),
            decision: None,
        };
        let trunk = inbound_trunk.and_then(|n| self.inbound.get(n));
        let strip = trunk.map_or(&[][..], |t| t.strip_prefixes.as_slice());
        let dialed = if req.is_request() {
            self.countries.dialed(req, strip)
        } else {
            None
        };
        let Some(dialed) = dialed else {
            if always_locate && req.is_request() {
                ev.dynamic = location::dynamic_location(req);
            }
            return ev;
        };

        let trunk_country = trunk.and_then(|t| t.country.as_deref());
        let trunk_code = trunk_country
            .and_then(|c| self.countries.get(c))
            .and_then(|r| r.calling_code.as_deref());
        ev.caller = inventory::caller_number(req, trunk_code);
        ev.entry = ev.caller.as_deref().and_then(|n| inventory.get(n));
        (ev.country, ev.country_source) = if let Some(e) = &ev.entry {
            (Some(e.country.clone()), CountrySource::Inventory)
        } else if let Some(c) = trunk_country {
            (Some(c.to_string()), CountrySource::Trunk)
        } else if let Some(c) = ev
            .caller
            .as_deref()
            .and_then(|n| self.countries.country_of_e164(n))
        {
            (Some(c.to_string()), CountrySource::Number)
        } else {
            (None, CountrySource::Unknown)
        };
        ev.detected = self.countries.classify(&dialed, ev.country.as_deref());
        if ev.detected.is_none() && !always_locate {
            return ev;
        }
        ev.dynamic = location::dynamic_location(req);
        if let Some(doc) = dereferenced {
            location::add_dereferenced(&mut ev.dynamic, doc);
        }
        let Some(detected) = &ev.detected else {
            return ev;
        };
        let ctx = RulesContext {
            rules: self.countries.rules_for(ev.country.as_deref()),
            areas: &self.areas,
            psap_trunks: &self.psap_trunks,
        };
        ev.tenant_locations = ev
            .entry
            .as_ref()
            .map_or(&[][..], |e| inventory.tenant_locations(&e.tenant));
        let facts = CallFacts {
            kind: detected.kind,
            service: &detected.service,
            entry: ev.entry.as_ref(),
            tenant_locations: ev.tenant_locations,
            location: &ev.dynamic,
        };
        ev.decision = Some(rules::decide(&facts, &ctx));
        ev
    }

    /// The changes made to the forwarded request: Call-Info identifiers
    /// when absent, and the registered address when the decision rests on
    /// it.
    pub fn augment(&self, req: &Message, ev: &Evaluation<'_>, unique: u128) -> Augment {
        self.augment_with(req, ev, None, unique)
    }

    fn augment_with(
        &self,
        req: &Message,
        ev: &Evaluation<'_>,
        documents: Option<&mut HashMap<String, Bytes>>,
        unique: u128,
    ) -> Augment {
        let mut a = Augment::default();
        let (mut has_call, mut has_incident) = (false, false);
        for na in req.list(HeaderName::CallInfo).filter_map(NameAddr::parse) {
            if let Some(Some(p)) = na.param("purpose") {
                has_call |= p.eq_ignore_ascii_case(b"emergency-CallId");
                has_incident |= p.eq_ignore_ascii_case(b"emergency-IncidentId");
            }
        }
        let domain = &self.domain;
        let mut identifier = |kind: &str, purpose: &str| {
            const URN: &str = "<urn:emergency:uid:";
            const PURPOSE: &str = ">;purpose=";
            // Exactly the length written: the string then becomes the
            // header's bytes without another allocation.
            let len =
                URN.len() + kind.len() + 1 + 32 + 1 + domain.len() + PURPOSE.len() + purpose.len();
            let mut v = String::with_capacity(len);
            v.push_str(URN);
            v.push_str(kind);
            v.push(':');
            push_hex(&mut v, &identifier_bits(unique, kind).to_be_bytes());
            v.push(':');
            v.push_str(domain);
            v.push_str(PURPOSE);
            v.push_str(purpose);
            a.headers.push((HeaderName::CallInfo, Bytes::from(v)));
        };
        if !has_call {
            identifier("callid", "emergency-CallId");
        }
        if !has_incident {
            identifier("incidentid", "emergency-IncidentId");
        }
        let by_registered = ev
            .decision
            .as_ref()
            .is_some_and(|d| d.routed_by == RoutedBy::Registered);
        if let (true, Some(address)) = (by_registered, ev.registered()) {
            // `<registered-HEX@domain>`, the part's Content-ID; the
            // Geolocation value is `<cid:` and the same id.
            const PREFIX: &str = "registered-";
            let mut content_id = String::with_capacity(PREFIX.len() + 16 + domain.len() + 3);
            content_id.push('<');
            content_id.push_str(PREFIX);
            push_hex(
                &mut content_id,
                &(identifier_bits(unique, "content-id") as u64).to_be_bytes(),
            );
            content_id.push('@');
            content_id.push_str(domain);
            content_id.push('>');
            let id = &content_id[1..content_id.len() - 1];
            let mut geolocation = String::with_capacity(id.len() + 6);
            geolocation.push_str("<cid:");
            geolocation.push_str(id);
            geolocation.push('>');
            let caller = ev.caller.as_deref().unwrap_or("unknown");
            let write = || {
                Bytes::from(pidf::civic_document(
                    &format!("pres:{caller}@{domain}"),
                    "registered",
                    &address.civic,
                    "Registered",
                ))
            };
            let doc = match (documents, &ev.caller) {
                (Some(cache), Some(number)) => match cache.get(number.as_str()) {
                    Some(d) => d.clone(),
                    None => {
                        let d = write();
                        cache.insert(number.clone(), d.clone());
                        d
                    }
                },
                _ => write(),
            };
            a.headers_first
                .push((HeaderName::Geolocation, Bytes::from(geolocation)));
            a.body_part = Some((
                vec![
                    ("Content-Type".into(), "application/pidf+xml".into()),
                    ("Content-ID".into(), content_id),
                ],
                doc,
            ));
        }
        a
    }

    /// The answer to a request that is no emergency call.
    fn not_emergency(&self) -> Decision {
        Decision::Reject {
            status: self.reject_status,
            reason: "Not An Emergency Call",
        }
    }

    /// The proxy's answer for an evaluated request.
    /// `unique`: a value never given for another decision, which the
    /// call's identifiers are made from.
    pub fn decision(&self, req: &Message, ev: Evaluation<'_>, unique: u128) -> Decision {
        self.decide_with(req, ev, None, None, unique, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_with(
        &self,
        req: &Message,
        mut ev: Evaluation<'_>,
        documents: Option<&mut HashMap<String, Bytes>>,
        records: Option<&mut HashMap<String, Arc<dyn LocationRecord>>>,
        unique: u128,
        lost: Option<crate::lost::route::Outcome>,
    ) -> Decision {
        if let (Some(o), Some(d)) = (&lost, ev.decision.as_mut()) {
            if let Some(m) = &o.mapping {
                lost::apply(d, m, &self.areas, &self.psap_trunks);
            }
            metrics::counter!(crate::metrics::LOST_ROUTES, "by" => o.decided_by.as_str())
                .increment(1);
            tracing::info!(
                call_id = %crate::sip::text::Printable(req.call_id().unwrap_or_default()),
                by = o.decided_by.as_str(),
                why = o.why.as_deref().unwrap_or(""),
                "PSAP chosen with LoST"
            );
        }
        if ev.detected.is_none() || ev.decision.is_none() {
            return self.not_emergency();
        }
        let augment = self.augment_with(req, &ev, documents, unique);
        // The evaluation is spent here: its parts move into the details
        // rather than being copied.
        let registered = ev.registered();
        let location_source = shown_source(&ev.dynamic, registered).as_str();
        let registered_address = registered.map(|a| match (records, ev.caller.as_deref()) {
            (Some(cache), Some(number)) => match cache.get(number) {
                Some(r) => r.clone(),
                None => {
                    let r = RegisteredRecord::of(a);
                    cache.insert(number.to_string(), r.clone());
                    r
                }
            },
            _ => RegisteredRecord::of(a),
        });
        let shown_registered = (!ev.dynamic.is_usable())
            .then(|| registered.cloned())
            .flatten();
        let tenant = ev.entry.as_ref().map(|e| e.tenant.clone());
        let Evaluation {
            detected,
            caller,
            country,
            dynamic,
            decision,
            ..
        } = ev;
        let (Some(detected), Some(d)) = (detected, decision) else {
            return self.not_emergency();
        };
        let (psap_id, area) = match d.psap {
            Some(p) => (Some(p.id), Some(p.area)),
            None => (None, None),
        };
        let details = RouteDetails {
            kind: detected.kind.as_str(),
            dialed: detected.number,
            service: Some(detected.service),
            caller,
            country,
            routed_by: d.routed_by.as_str(),
            psap_id,
            area,
            location_source,
            location: Some(Arc::new(CallLocation {
                dynamic,
                registered: shown_registered,
            })),
            tenant,
            registered_address,
            psap_decided_by: lost.as_ref().map(|o| o.decided_by.as_str()),
            lost_why: lost.and_then(|o| o.why),
        };
        tracing::debug!(
            call_id = %crate::sip::text::Printable(req.call_id().unwrap_or_default()),
            ?details,
            "emergency call"
        );
        Decision::Route {
            targets: d.targets,
            augment,
            emergency: true,
            route: d.route.as_str(),
            reason: d.reason.as_str(),
            details: Some(Box::new(details)),
        }
    }
}

impl Router for EmergencyRouter {
    fn route(&mut self, req: &Message, ctx: &RouteContext<'_>) -> Decision {
        let inventory = self.inventory.clone();
        let ev = self.evaluate_with(&inventory, req, ctx.inbound_trunk, false, ctx.dereferenced);
        let outcome = match (&mut self.lost, &ev.decision, &ev.detected) {
            (Some(l), Some(d), Some(det)) => l.outcome(
                d,
                ev.country.as_deref(),
                lost::Located {
                    dynamic: &ev.dynamic,
                    registered: ev.registered(),
                },
                &det.service,
                ctx.lost,
                ctx.wall,
            ),
            _ => None,
        };
        let mut documents = std::mem::take(&mut self.documents);
        let mut registered = std::mem::take(&mut self.registered);
        let d = self.decide_with(
            req,
            ev,
            Some(&mut documents),
            Some(&mut registered),
            ctx.unique,
            outcome,
        );
        self.documents = documents;
        self.registered = registered;
        d
    }

    /// A LoST query for a call the rules route to a PSAP by its own location
    /// or by the caller's registered address, when its country has an ECRF
    /// and no fresh cached mapping answers.
    fn lost_query(&mut self, req: &Message, ctx: &RouteContext<'_>) -> Option<LostQuery> {
        self.lost.as_ref()?;
        let inventory = self.inventory.clone();
        let ev = self.evaluate_with(&inventory, req, ctx.inbound_trunk, false, ctx.dereferenced);
        let (d, det) = (ev.decision.as_ref()?, ev.detected.as_ref()?);
        self.lost.as_mut()?.query(
            d,
            ev.country.as_deref(),
            lost::Located {
                dynamic: &ev.dynamic,
                registered: ev.registered(),
            },
            &det.service,
            ctx.wall,
        )
    }

    fn poll_lost_refresh(&mut self) -> Option<crate::proxy::LostRefresh> {
        self.lost.as_mut()?.poll_refresh()
    }

    fn lost_refreshed(
        &mut self,
        refresh: crate::proxy::LostRefresh,
        answer: crate::proxy::LostAnswer<'_>,
        wall: Option<time::OffsetDateTime>,
    ) {
        if let Some(l) = &mut self.lost {
            l.refreshed(refresh, answer, wall);
        }
    }

    fn take_lost_caches(&mut self) -> crate::proxy::LostCaches {
        self.lost
            .as_mut()
            .map(lost::LostRouting::take_caches)
            .unwrap_or_default()
    }

    fn keep_lost_caches(&mut self, old: crate::proxy::LostCaches) {
        if let Some(l) = &mut self.lost {
            l.keep_caches(old);
        }
    }

    /// Calls routed from now on use `inventory`; the documents written for
    /// the last one go with it.
    fn set_inventory(&mut self, inventory: SharedInventory) -> Option<SharedInventory> {
        self.documents = HashMap::new();
        self.registered = HashMap::new();
        Some(std::mem::replace(&mut self.inventory, inventory))
    }

    /// Any initial INVITE whose location is given only by reference.
    fn location_reference(&self, req: &Message) -> Option<String> {
        location::reference_to_fetch(req)
    }
}
