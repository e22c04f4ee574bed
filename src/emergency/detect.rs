//! Emergency call detection and the country rules it reads.
//!
//! The rules come from a TOML file (`config/countries.toml`, compiled in as
//! [`SHIPPED_COUNTRIES`]): per country its emergency and test numbers, its
//! calling code, whether trusted dynamic locations route directly, which
//! PIDF-LO methods are trusted, whether every call is screened, and the
//! trunks for screening, test calls and the last resort.
//!
//! Detection runs in two steps so that a call that is no emergency costs
//! almost nothing:
//! 1. [`Countries::dialed`] reads the Request-URI alone and keeps it only when
//!    it could be an emergency or test call for some caller (a service URN,
//!    or digits that are some country's number once a trunk's dial prefix and
//!    a country code are taken off). No allocation.
//! 2. [`Countries::classify`] decides for the caller's country.
//!
//! Dial strings are read from `tel:911`, `sip:911@host;user=phone`,
//! `sip:911@host`, with visual separators (`9-1-1`), with a country code in
//! front (`+1911`, `+44999`, or `44999` for a caller of that country), and
//! after a dial prefix that the inbound trunk is configured to strip.
//! `urn:service:sos` and its sub-services (RFC 5031) are emergency calls for
//! everyone; `urn:service:test.sos` and its sub-services (RFC 6881) are test
//! calls.
//!
//! Each call also gets the emergency service it asks for, as a service URN
//! ([`Detected::service`]): a dialed `urn:service:sos.fire` keeps its URN; a
//! number takes the URN its country's `services` table gives it (`110` in
//! Germany is `urn:service:sos.police`), else `urn:service:sos`. The PSAP
//! lookup then looks for a PSAP of that service first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::sip::uri::Digits;
use crate::sip::Message;

/// The shipped country rules.
pub const SHIPPED_COUNTRIES: &str = include_str!("../../config/countries.toml");

/// Dial strings that are emergency numbers for every caller.
pub const GLOBAL_NUMBERS: [&str; 2] = ["112", "911"];

/// The emergency service as a whole (RFC 5031): the service of every
/// emergency number the country rules give no other service.
pub const SOS: &str = "urn:service:sos";

/// The service of a test number (RFC 6881).
pub const TEST_SOS: &str = "urn:service:test.sos";

/// Whether `urn` is `urn:service:sos` or one of its sub-services
/// (`urn:service:sos.police`), in lower case: labels of letters, digits and
/// `-`, separated by dots.
pub fn is_sos_service(urn: &str) -> bool {
    let Some(rest) = urn.strip_prefix(SOS) else {
        return false;
    };
    rest.is_empty()
        || rest.strip_prefix('.').is_some_and(|sub| {
            sub.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
        })
}

/// How many services [`service_chain`] gives at most before
/// `urn:service:sos`: a dialed URN of a thousand labels costs no more
/// lookups than one of a few.
pub const MAX_SERVICE_DEPTH: usize = 4;

/// The services to look for in turn for a call to `service`: the service
/// itself, then each parent (`urn:service:sos.police.local`,
/// `urn:service:sos.police`, `urn:service:sos`): [`MAX_SERVICE_DEPTH`]
/// levels below `urn:service:sos` at most, a deeper URN being looked up
/// from that level. Always
/// ends with `urn:service:sos`; a URN outside it gives only
/// `urn:service:sos`. Slices of `service`, no allocation.
pub fn service_chain(service: &str) -> impl Iterator<Item = &str> {
    let start = if service.len() > SOS.len()
        && service.as_bytes()[SOS.len()] == b'.'
        && service.as_bytes()[..SOS.len()].eq_ignore_ascii_case(SOS.as_bytes())
    {
        Some(service)
    } else {
        None
    };
    // Past the depth, the finest levels are left out.
    let start = start.map(
        |s| match s[SOS.len()..].match_indices('.').nth(MAX_SERVICE_DEPTH) {
            Some((i, _)) => &s[..SOS.len() + i],
            None => s,
        },
    );
    let mut next = start.or(Some(SOS));
    std::iter::from_fn(move || {
        let current = next?;
        next = if current.len() > SOS.len() {
            current
                .rfind('.')
                .map(|i| &current[..i])
                .filter(|p| p.len() >= SOS.len())
        } else {
            None
        };
        Some(if current.len() == SOS.len() {
            SOS
        } else {
            current
        })
    })
}

/// An emergency call or a test of emergency calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    Emergency,
    Test,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Emergency => "emergency",
            CallKind::Test => "test",
        }
    }
}

/// The rules of one country (or the default rules), with the default's
/// values filled in for every key the country leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryRules {
    /// ISO 3166-1 alpha-2 code; empty for the default rules.
    pub code: String,
    /// E.164 country calling code without `+`.
    pub calling_code: Option<String>,
    /// Area codes that tell this country apart under a shared calling code.
    pub area_codes: Vec<String>,
    /// Every emergency number of the country, those of `services`
    /// included.
    pub emergency_numbers: Vec<String>,
    /// Emergency numbers that ask for one service: dial string and service
    /// URN in lower case (`"110"`, `"urn:service:sos.police"`). A number not
    /// listed here asks for `urn:service:sos`.
    pub services: Vec<(String, Arc<str>)>,
    pub test_numbers: Vec<String>,
    pub dynamic_routing: bool,
    /// Trusted PIDF-LO methods, in lower case.
    pub trusted_methods: Vec<String>,
    pub screen_all: bool,
    /// Further country codes that count as inside the country.
    pub also_inside: Vec<String>,
    /// Whether a location known only to the country may go to the
    /// country's default PSAP.
    pub country_default: bool,
    pub screening_trunk: Option<String>,
    pub test_trunk: Option<String>,
    pub last_resort_trunk: Option<String>,
}

impl CountryRules {
    /// Whether a PIDF-LO `method` is trusted (case-insensitive).
    pub fn trusts_method(&self, method: &str) -> bool {
        let m = method.trim();
        self.trusted_methods
            .iter()
            .any(|t| t.eq_ignore_ascii_case(m))
    }

    /// Whether a location in `country` (ISO code, any case) is inside this
    /// country. Never true for the default rules.
    pub fn is_inside(&self, country: &str) -> bool {
        let c = country.trim();
        !self.code.is_empty()
            && (self.code.eq_ignore_ascii_case(c)
                || self.also_inside.iter().any(|o| o.eq_ignore_ascii_case(c)))
    }

    /// Whether `number` is one of this country's emergency numbers or a
    /// global one.
    pub fn is_emergency_number(&self, number: &str) -> bool {
        GLOBAL_NUMBERS.contains(&number) || self.emergency_numbers.iter().any(|n| n == number)
    }

    pub fn is_test_number(&self, number: &str) -> bool {
        self.test_numbers.iter().any(|n| n == number)
    }

    /// The service URN an emergency number of this country asks for, when
    /// the `services` table names one.
    pub fn service_of(&self, number: &str) -> Option<&Arc<str>> {
        self.services
            .iter()
            .find(|(n, _)| n == number)
            .map(|(_, s)| s)
    }
}

/// The file as written: every key optional so that a country inherits the
/// default's value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFields {
    calling_code: Option<String>,
    area_codes: Option<Vec<String>>,
    emergency_numbers: Option<Vec<String>>,
    services: Option<BTreeMap<String, String>>,
    test_numbers: Option<Vec<String>>,
    dynamic_routing: Option<bool>,
    trusted_methods: Option<Vec<String>>,
    screen_all: Option<bool>,
    also_inside: Option<Vec<String>>,
    country_default: Option<bool>,
    screening_trunk: Option<String>,
    test_trunk: Option<String>,
    last_resort_trunk: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountriesFile {
    default: RulesFields,
    #[serde(default)]
    country: BTreeMap<String, RulesFields>,
}

#[derive(Debug, thiserror::Error)]
pub enum CountriesError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("country rules: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("country rules: {0}")]
    Invalid(String),
}

/// Every country's rules, the default rules, and the indexes detection uses.
#[derive(Debug, Clone)]
pub struct Countries {
    default: CountryRules,
    by_code: HashMap<String, CountryRules>,
    /// Every emergency and test number of any country, and the global ones.
    any_number: HashSet<String>,
    /// Every emergency number of any country, and the global ones, with
    /// the service it asks for when the caller's country is unknown: the one
    /// every country listing it agrees on, else `urn:service:sos`.
    any_emergency: HashMap<String, Arc<str>>,
    /// Distinct calling codes, longest first.
    calling_codes: Vec<String>,
    /// Every service URN the rules name, `urn:service:sos` and
    /// `urn:service:test.sos`: a detected call shares one of these rather
    /// than a copy.
    known_services: HashSet<Arc<str>>,
    sos: Arc<str>,
    test_sos: Arc<str>,
}

/// A Request-URI that may be an emergency or test call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialed<'a> {
    /// `urn:service:...`: the service as written (`sos.fire`).
    Service { service: &'a [u8], test: bool },
    /// Digits, after the inbound trunk's dial prefix was taken off.
    Number(Digits),
}

/// What a request dials, for an emergency or test call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub kind: CallKind,
    /// The number as the country knows it (`911`), or the service URN in
    /// lower case (`urn:service:sos.fire`).
    pub number: String,
    /// The emergency service asked for, in lower case: the dialed service
    /// URN, the one the caller's country gives the number
    /// (`urn:service:sos.police` for `110` in Germany), else
    /// `urn:service:sos` (`urn:service:test.sos` for a test number).
    pub service: Arc<str>,
}

fn is_dial_string(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

fn is_country_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn trunk_name(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl Countries {
    /// The shipped rules.
    pub fn shipped() -> Countries {
        Countries::from_toml(SHIPPED_COUNTRIES).expect("the shipped country rules are valid")
    }

    pub fn load(path: &Path) -> Result<Countries, CountriesError> {
        let text = std::fs::read_to_string(path).map_err(|source| CountriesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Countries::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Countries, CountriesError> {
        let file: CountriesFile = toml::from_str(text)?;
        let mut default = Self::merge("", file.default, None)?;
        let mut by_code = HashMap::new();
        for (code, fields) in file.country {
            if !is_country_code(&code) {
                return Err(CountriesError::Invalid(format!(
                    "country {code:?}: the key must be an ISO 3166-1 alpha-2 code in capitals"
                )));
            }
            let rules = Self::merge(&code, fields, Some(&default))?;
            by_code.insert(code, rules);
        }
        let sos: Arc<str> = Arc::from(SOS);
        let test_sos: Arc<str> = Arc::from(TEST_SOS);
        let mut known_services: HashSet<Arc<str>> = HashSet::new();
        known_services.insert(sos.clone());
        known_services.insert(test_sos.clone());
        let mut any_number = HashSet::new();
        // Number → the service every country listing it agrees on (None:
        // they disagree).
        let mut agreed: HashMap<String, Option<Arc<str>>> = HashMap::new();
        let mut calling_codes = Vec::new();
        // In order of code, so that nothing depends on hash order.
        let mut listed: Vec<&mut CountryRules> = by_code.values_mut().collect();
        listed.sort_by(|a, b| a.code.cmp(&b.code));
        for r in std::iter::once(&mut default).chain(listed) {
            // Every rule set shares one copy of each service URN.
            for (_, s) in &mut r.services {
                match known_services.get(s) {
                    Some(k) => *s = k.clone(),
                    None => {
                        known_services.insert(s.clone());
                    }
                }
            }
            for n in &r.emergency_numbers {
                let service = r.service_of(n).unwrap_or(&sos);
                agreed
                    .entry(n.clone())
                    .and_modify(|a| {
                        if a.as_ref().is_some_and(|a| a != service) {
                            *a = None;
                        }
                    })
                    .or_insert_with(|| Some(service.clone()));
            }
            any_number.extend(r.emergency_numbers.iter().cloned());
            any_number.extend(r.test_numbers.iter().cloned());
            if let Some(cc) = &r.calling_code {
                if !calling_codes.contains(cc) {
                    calling_codes.push(cc.clone());
                }
            }
        }
        for g in GLOBAL_NUMBERS {
            any_number.insert(g.to_string());
            agreed
                .entry(g.to_string())
                .or_insert_with(|| Some(sos.clone()));
        }
        let any_emergency = agreed
            .into_iter()
            .map(|(n, s)| (n, s.unwrap_or_else(|| sos.clone())))
            .collect();
        calling_codes.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Ok(Countries {
            default,
            by_code,
            any_number,
            any_emergency,
            calling_codes,
            known_services,
            sos,
            test_sos,
        })
    }

    fn merge(
        code: &str,
        f: RulesFields,
        base: Option<&CountryRules>,
    ) -> Result<CountryRules, CountriesError> {
        let what = if code.is_empty() { "default" } else { code };
        let bad = |m: String| CountriesError::Invalid(format!("{what}: {m}"));
        let list = |v: Option<Vec<String>>, inherited: Option<&Vec<String>>| {
            v.or_else(|| inherited.cloned()).unwrap_or_default()
        };
        let flag = |v: Option<bool>, inherited: Option<bool>| v.or(inherited).unwrap_or(false);
        let trunk = |v: Option<String>, inherited: Option<&Option<String>>| match v {
            Some(v) => trunk_name(Some(v)),
            None => inherited.cloned().flatten(),
        };
        let services: Vec<(String, Arc<str>)> = match f.services {
            Some(table) => {
                let mut services = Vec::with_capacity(table.len());
                for (number, urn) in table {
                    let service = urn.trim().to_ascii_lowercase();
                    if !is_sos_service(&service) {
                        return Err(bad(format!(
                            "services: {number:?} = {urn:?} is not urn:service:sos or one of its sub-services (urn:service:sos.police)"
                        )));
                    }
                    services.push((number, Arc::from(service)));
                }
                services
            }
            None => base.map(|b| b.services.clone()).unwrap_or_default(),
        };
        let mut emergency_numbers = match f.emergency_numbers {
            Some(v) => v,
            // The inherited list holds the inherited services' numbers;
            // a table of its own replaces those.
            None => base
                .map(|b| {
                    b.emergency_numbers
                        .iter()
                        .filter(|n| b.service_of(n).is_none())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        };
        for (n, _) in &services {
            if !emergency_numbers.contains(n) {
                emergency_numbers.push(n.clone());
            }
        }
        let rules = CountryRules {
            code: code.to_string(),
            calling_code: f.calling_code,
            area_codes: f.area_codes.unwrap_or_default(),
            emergency_numbers,
            services,
            test_numbers: list(f.test_numbers, base.map(|b| &b.test_numbers)),
            dynamic_routing: flag(f.dynamic_routing, base.map(|b| b.dynamic_routing)),
            trusted_methods: list(f.trusted_methods, base.map(|b| &b.trusted_methods))
                .into_iter()
                .map(|m| m.trim().to_ascii_lowercase())
                .collect(),
            screen_all: flag(f.screen_all, base.map(|b| b.screen_all)),
            also_inside: list(f.also_inside, base.map(|b| &b.also_inside)),
            country_default: f
                .country_default
                .or(base.map(|b| b.country_default))
                .unwrap_or(true),
            screening_trunk: trunk(f.screening_trunk, base.map(|b| &b.screening_trunk)),
            test_trunk: trunk(f.test_trunk, base.map(|b| &b.test_trunk)),
            last_resort_trunk: trunk(f.last_resort_trunk, base.map(|b| &b.last_resort_trunk)),
        };
        if let Some(cc) = &rules.calling_code {
            if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("calling_code {cc:?} is not 1 to 3 digits")));
            }
        }
        if !rules.area_codes.is_empty() && rules.calling_code.is_none() {
            return Err(bad("area_codes without a calling_code".into()));
        }
        for a in &rules.area_codes {
            if a.len() != 3 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("area code {a:?} is not 3 digits")));
            }
        }
        for n in rules.emergency_numbers.iter().chain(&rules.test_numbers) {
            if !is_dial_string(n) {
                return Err(bad(format!(
                    "number {n:?} is not a dial string (digits, * and # only)"
                )));
            }
        }
        if let Some(n) = rules
            .test_numbers
            .iter()
            .find(|n| rules.is_emergency_number(n))
        {
            return Err(bad(format!("{n:?} is both an emergency and a test number")));
        }
        for m in &rules.trusted_methods {
            if m.is_empty() {
                return Err(bad("an empty trusted method".into()));
            }
        }
        for c in &rules.also_inside {
            if !is_country_code(c) {
                return Err(bad(format!("also_inside {c:?} is not a country code")));
            }
        }
        Ok(rules)
    }

    /// The default rules (callers of unknown or unlisted countries).
    pub fn default_rules(&self) -> &CountryRules {
        &self.default
    }

    /// A listed country's rules.
    pub fn get(&self, code: &str) -> Option<&CountryRules> {
        self.by_code.get(code)
    }

    /// The rules for a caller of `country`: its own, else the default.
    pub fn rules_for(&self, country: Option<&str>) -> &CountryRules {
        country
            .and_then(|c| self.by_code.get(c))
            .unwrap_or(&self.default)
    }

    /// Every rule set: the default first, then the countries by code.
    pub fn all(&self) -> impl Iterator<Item = &CountryRules> {
        let mut listed: Vec<&CountryRules> = self.by_code.values().collect();
        listed.sort_by(|a, b| a.code.cmp(&b.code));
        std::iter::once(&self.default).chain(listed)
    }

    /// The country of an E.164 number (`+14165550199` → `CA`) by its calling
    /// code, and area code where a calling code is shared.
    pub fn country_of_e164(&self, number: &str) -> Option<&str> {
        let digits = number.strip_prefix('+')?;
        let mut best: Option<(&CountryRules, usize)> = None;
        for r in self.by_code.values() {
            let Some(cc) = r.calling_code.as_deref() else {
                continue;
            };
            let Some(rest) = digits.strip_prefix(cc) else {
                continue;
            };
            // A country with area codes claims only those; one without them
            // takes whatever its calling code leaves. Longer codes win.
            let rank = if r.area_codes.is_empty() {
                cc.len() * 2
            } else if r.area_codes.iter().any(|a| rest.starts_with(a.as_str())) {
                cc.len() * 2 + 1
            } else {
                continue;
            };
            if best.is_none_or(|(b, br)| rank > br || (rank == br && r.code < b.code)) {
                best = Some((r, rank));
            }
        }
        best.map(|(r, _)| r.code.as_str())
    }

    /// Whether `d` could be an emergency or test number for some caller,
    /// with or without a country code in front.
    fn could_be(&self, d: &str) -> bool {
        if self.any_number.contains(d) {
            return true;
        }
        let bare = d.strip_prefix('+').unwrap_or(d);
        self.calling_codes.iter().any(|cc| {
            bare.strip_prefix(cc.as_str())
                .is_some_and(|rest| self.any_number.contains(rest))
        })
    }

    /// Step 1: the request's dial string, when it may be an emergency or
    /// test call for some caller. `strip` holds the inbound trunk's dial
    /// prefixes.
    pub fn dialed<'m>(&self, req: &'m Message, strip: &[String]) -> Option<Dialed<'m>> {
        let uri = req.request_uri()?;
        if let Some(service) = uri.service_urn() {
            return service_kind(service).map(|test| Dialed::Service { service, test });
        }
        let digits = uri.phone_digits()?;
        let d = digits.as_str();
        if self.could_be(d) {
            return Some(Dialed::Number(digits));
        }
        for p in strip {
            if let Some(rest) = d.strip_prefix(p.as_str()) {
                if !rest.is_empty() && self.could_be(rest) {
                    return Digits::from_dial_string(rest.as_bytes()).map(Dialed::Number);
                }
            }
        }
        None
    }

    /// Step 2: what the dial string is for a caller of `country` (`None`:
    /// unknown, in which case any country's emergency number counts).
    pub fn classify(&self, dialed: &Dialed<'_>, country: Option<&str>) -> Option<Detected> {
        match dialed {
            Dialed::Service { service, test } => {
                let number = format!(
                    "urn:service:{}",
                    String::from_utf8_lossy(service).to_ascii_lowercase()
                );
                // A dialed URN keeps its URN; one the rules name is shared.
                let service = match self.known_services.get(number.as_str()) {
                    Some(s) => s.clone(),
                    None => Arc::from(number.as_str()),
                };
                Some(Detected {
                    kind: if *test {
                        CallKind::Test
                    } else {
                        CallKind::Emergency
                    },
                    number,
                    service,
                })
            }
            Dialed::Number(digits) => {
                let rules = country.and_then(|c| self.by_code.get(c));
                let d = digits.as_str();
                let kind_of = |n: &str| -> Option<CallKind> {
                    match rules {
                        Some(r) if r.is_test_number(n) => Some(CallKind::Test),
                        Some(r) if r.is_emergency_number(n) => Some(CallKind::Emergency),
                        Some(_) => None,
                        None if self.default.is_test_number(n) => Some(CallKind::Test),
                        None if self.any_emergency.contains_key(n) => Some(CallKind::Emergency),
                        None => None,
                    }
                };
                let service_of = |kind: CallKind, n: &str| -> Arc<str> {
                    match (kind, rules) {
                        (CallKind::Test, _) => self.test_sos.clone(),
                        (CallKind::Emergency, Some(r)) => {
                            r.service_of(n).unwrap_or(&self.sos).clone()
                        }
                        (CallKind::Emergency, None) => {
                            self.any_emergency.get(n).unwrap_or(&self.sos).clone()
                        }
                    }
                };
                let found = |n: &str| {
                    kind_of(n).map(|kind| Detected {
                        kind,
                        number: n.to_string(),
                        service: service_of(kind, n),
                    })
                };
                if let Some(hit) = found(d) {
                    return Some(hit);
                }
                // With "+", any calling code; without, the caller's own (or
                // any, for a caller of unknown country).
                let (plus, bare) = match d.strip_prefix('+') {
                    Some(rest) => (true, rest),
                    None => (false, d),
                };
                let own = rules.and_then(|r| r.calling_code.as_deref());
                for cc in &self.calling_codes {
                    if !plus && own.is_some_and(|o| o != cc) {
                        continue;
                    }
                    if let Some(rest) = bare.strip_prefix(cc.as_str()) {
                        if let Some(hit) = found(rest) {
                            return Some(hit);
                        }
                    }
                }
                None
            }
        }
    }
}

/// `Some(false)` for `sos` and `sos.*`, `Some(true)` for `test.sos` and
/// `test.sos.*`, any case.
fn service_kind(service: &[u8]) -> Option<bool> {
    let is = |s: &[u8], name: &[u8]| {
        s.len() >= name.len()
            && s[..name.len()].eq_ignore_ascii_case(name)
            && (s.len() == name.len() || s[name.len()] == b'.')
    };
    if is(service, b"sos") {
        Some(false)
    } else if is(service, b"test.sos") {
        Some(true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn invite(ruri: &str) -> Message {
        let s = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:x@example.net>\r\nFrom: <sip:+12125550142@example.com>;tag=1\r\nCall-ID: d1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        crate::sip::parse_datagram(Bytes::from(s), &Default::default()).unwrap()
    }

    fn detect(ruri: &str, country: Option<&str>, strip: &[&str]) -> Option<(CallKind, String)> {
        let countries = Countries::shipped();
        let msg = invite(ruri);
        let strip: Vec<String> = strip.iter().map(|s| s.to_string()).collect();
        let dialed = countries.dialed(&msg, &strip)?;
        countries
            .classify(&dialed, country)
            .map(|d| (d.kind, d.number))
    }

    fn emergency(n: &str) -> Option<(CallKind, String)> {
        Some((CallKind::Emergency, n.to_string()))
    }

    #[test]
    fn request_uri_forms() {
        for ruri in [
            "tel:911",
            "tel:911;phone-context=+1",
            "sip:911@proxy.example.net",
            "sip:911@gw.example.net;user=phone",
            "sip:911;phone-context=+1@gw.example.net;user=phone",
            "tel:9-1-1",
            "sip:9.1.1@h;user=phone",
            "tel:+1911",
            "tel:+1-911",
            "sip:1911@h;user=phone",
        ] {
            assert_eq!(detect(ruri, Some("US"), &[]), emergency("911"), "{ruri}");
        }
    }

    #[test]
    fn service_urns_and_sub_services() {
        for (ruri, kind, number) in [
            ("urn:service:sos", CallKind::Emergency, "urn:service:sos"),
            (
                "URN:Service:SOS.Fire",
                CallKind::Emergency,
                "urn:service:sos.fire",
            ),
            (
                "urn:service:sos.police",
                CallKind::Emergency,
                "urn:service:sos.police",
            ),
            (
                "urn:service:test.sos",
                CallKind::Test,
                "urn:service:test.sos",
            ),
            (
                "urn:service:test.sos.ambulance",
                CallKind::Test,
                "urn:service:test.sos.ambulance",
            ),
        ] {
            assert_eq!(
                detect(ruri, Some("GB"), &[]),
                Some((kind, number.to_string())),
                "{ruri}"
            );
        }
        assert_eq!(detect("urn:service:counseling", Some("US"), &[]), None);
        assert_eq!(detect("urn:service:sosx", Some("US"), &[]), None);
    }

    #[test]
    fn numbers_depend_on_the_callers_country() {
        assert_eq!(
            detect("sip:999@h;user=phone", Some("GB"), &[]),
            emergency("999")
        );
        assert_eq!(detect("sip:999@h;user=phone", Some("US"), &[]), None);
        assert_eq!(detect("sip:000@h", Some("AU"), &[]), emergency("000"));
        assert_eq!(detect("sip:000@h", Some("DE"), &[]), None);
        assert_eq!(detect("tel:110", Some("DE"), &[]), emergency("110"));
        assert_eq!(detect("tel:17", Some("FR"), &[]), emergency("17"));
        assert_eq!(detect("tel:17", Some("US"), &[]), None);
        // 112 and 911 for everyone.
        assert_eq!(detect("tel:911", Some("GB"), &[]), emergency("911"));
        assert_eq!(detect("tel:112", Some("US"), &[]), emergency("112"));
        assert_eq!(detect("tel:112", Some("ZZ"), &[]), emergency("112"));
        // Unknown country: any country's emergency number.
        assert_eq!(detect("tel:999", None, &[]), emergency("999"));
        assert_eq!(detect("tel:933", None, &[]), None);
    }

    #[test]
    fn test_numbers() {
        assert_eq!(
            detect("sip:933@h;user=phone", Some("US"), &[]),
            Some((CallKind::Test, "933".into()))
        );
        assert_eq!(detect("sip:933@h;user=phone", Some("GB"), &[]), None);
    }

    #[test]
    fn country_code_prefixes() {
        assert_eq!(detect("tel:+44999", Some("GB"), &[]), emergency("999"));
        assert_eq!(
            detect("sip:44999@h;user=phone", Some("GB"), &[]),
            emergency("999")
        );
        // A bare code counts only for the caller's own country.
        assert_eq!(detect("sip:44999@h;user=phone", Some("US"), &[]), None);
        // "+" with any code: a roaming caller.
        assert_eq!(detect("tel:+49112", Some("US"), &[]), emergency("112"));
        // A real number that starts like an emergency number is not one.
        assert_eq!(detect("tel:+19115550100", Some("US"), &[]), None);
        assert_eq!(detect("tel:9115550100", Some("US"), &[]), None);
    }

    #[test]
    fn trunk_dial_prefixes() {
        assert_eq!(
            detect("sip:9911@h;user=phone", Some("US"), &["9"]),
            emergency("911")
        );
        assert_eq!(detect("sip:9911@h;user=phone", Some("US"), &[]), None);
        assert_eq!(
            detect("sip:*31#911@h;user=phone", Some("US"), &["8", "*31#"]),
            emergency("911")
        );
        // A prefix is never the whole dial string.
        assert_eq!(detect("sip:9@h", Some("US"), &["9"]), None);
    }

    #[test]
    fn not_emergency() {
        for ruri in [
            "sip:alice@example.com",
            "sip:+12125550142@example.com",
            "tel:+12125550142",
            "sip:411@h;user=phone",
            "https://example.com/911",
        ] {
            assert_eq!(detect(ruri, Some("US"), &[]), None, "{ruri}");
        }
    }

    #[test]
    fn calling_codes() {
        let c = Countries::shipped();
        assert_eq!(c.country_of_e164("+12125550142"), Some("US"));
        assert_eq!(c.country_of_e164("+14165550199"), Some("CA"));
        assert_eq!(c.country_of_e164("+442079460018"), Some("GB"));
        assert_eq!(c.country_of_e164("+35312345678"), Some("IE"));
        assert_eq!(c.country_of_e164("+4989555010"), Some("DE"));
        assert_eq!(c.country_of_e164("+9991234567"), None);
        assert_eq!(c.country_of_e164("12125550142"), None);
    }

    #[test]
    fn shipped_rules() {
        let c = Countries::shipped();
        let us = c.get("US").unwrap();
        assert!(us.dynamic_routing && !us.screen_all);
        for m in [
            "LIS",
            "assist",
            "GPS",
            "a-gps",
            "Cell",
            "DHCP",
            "LLDP-MED",
            "Wiremap",
            "802.11",
            "Triangulation",
        ] {
            assert!(us.trusts_method(m), "{m}");
        }
        for m in ["CLS", "Manual", "Registered", ""] {
            assert!(!us.trusts_method(m), "{m}");
        }
        assert!(us.is_inside("us") && us.is_inside("PR") && !us.is_inside("MX"));
        for code in ["CA", "GB", "IE"] {
            assert!(c.get(code).unwrap().screen_all, "{code}");
        }
        for code in ["FR", "DE", "ES", "NL", "AU", "NZ"] {
            let r = c.get(code).unwrap();
            assert!(!r.screen_all && !r.dynamic_routing, "{code}");
            assert_eq!(r.screening_trunk.as_deref(), Some("screening"), "{code}");
        }
        assert!(!c.default_rules().is_inside(""));
        assert_eq!(c.rules_for(Some("ZZ")).code, "");
    }

    #[test]
    fn strict_keys_and_values() {
        let err = Countries::from_toml("[default]\nscreen_al = true\n").unwrap_err();
        assert!(err.to_string().contains("screen_al"), "{err}");
        let err = Countries::from_toml("[default]\n[country.usa]\n").unwrap_err();
        assert!(err.to_string().contains("usa"), "{err}");
        let err =
            Countries::from_toml("[default]\n[country.US]\nemergency_numbers = [\"9 1 1\"]\n")
                .unwrap_err();
        assert!(err.to_string().contains("9 1 1"), "{err}");
        let err = Countries::from_toml("[default]\ntest_numbers = [\"911\"]\n").unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        // A country inherits what it leaves out; "" turns a trunk off.
        let c = Countries::from_toml(
            "[default]\nscreening_trunk = \"ecrc\"\ntrusted_methods = [\"GPS\"]\n[country.XX]\nscreening_trunk = \"\"\n",
        )
        .unwrap();
        let xx = c.get("XX").unwrap();
        assert_eq!(xx.screening_trunk, None);
        assert!(xx.trusts_method("gps"));
        assert_eq!(c.default_rules().screening_trunk.as_deref(), Some("ecrc"));
    }

    #[test]
    fn services_of_numbers_and_urns() {
        let c = Countries::shipped();
        let msg = |ruri: &str| invite(ruri);
        let service = |ruri: &str, country: Option<&str>| {
            let m = msg(ruri);
            let d = c.dialed(&m, &[])?;
            c.classify(&d, country).map(|d| d.service.to_string())
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(service("tel:110", Some("DE")), s("urn:service:sos.police"));
        assert_eq!(service("tel:112", Some("DE")), s(SOS));
        assert_eq!(
            service("tel:+49110", Some("DE")),
            s("urn:service:sos.police")
        );
        assert_eq!(service("tel:911", Some("DE")), s(SOS));
        assert_eq!(service("tel:110", Some("NO")), s("urn:service:sos.fire"));
        assert_eq!(service("tel:110", Some("JP")), s("urn:service:sos.police"));
        assert_eq!(service("tel:18", Some("FR")), s("urn:service:sos.fire"));
        // Unknown country: the service every country listing the number
        // agrees on, else the service as a whole.
        assert_eq!(service("tel:110", None), s(SOS));
        assert_eq!(service("tel:1530", None), s("urn:service:sos.marine"));
        assert_eq!(service("tel:999", None), s(SOS));
        // A dialed URN keeps its URN, known to the rules or not.
        assert_eq!(
            service("urn:service:SOS.Police", Some("US")),
            s("urn:service:sos.police")
        );
        assert_eq!(
            service("urn:service:sos.animal-control", Some("DE")),
            s("urn:service:sos.animal-control")
        );
        assert_eq!(service("tel:933", Some("US")), s(TEST_SOS));
        assert_eq!(
            service("urn:service:test.sos.fire", Some("US")),
            s("urn:service:test.sos.fire")
        );
        // The numbers of the table are emergency numbers.
        let de = c.get("DE").unwrap();
        assert!(de.is_emergency_number("110") && de.is_emergency_number("112"));
        assert_eq!(
            de.service_of("110").map(|s| &**s),
            Some("urn:service:sos.police")
        );
        assert_eq!(de.service_of("112"), None);
        // One shared copy of each URN.
        let (a, b) = (
            c.get("DE").unwrap().service_of("110").unwrap(),
            c.get("FR").unwrap().service_of("17").unwrap(),
        );
        assert!(Arc::ptr_eq(a, b));
    }

    #[test]
    fn services_tables_are_checked_and_inherited() {
        for (toml, word) in [
            ("[default]\n[default.services]\n\"110\" = \"urn:service:counseling\"\n", "counseling"),
            ("[default]\n[default.services]\n\"110\" = \"sos.police\"\n", "sos.police"),
            ("[default]\n[default.services]\n\"1 10\" = \"urn:service:sos.police\"\n", "1 10"),
            (
                "[default]\ntest_numbers = [\"110\"]\n[default.services]\n\"110\" = \"urn:service:sos.police\"\n",
                "both",
            ),
        ] {
            let err = Countries::from_toml(toml).unwrap_err();
            assert!(err.to_string().contains(word), "{toml}: {err}");
        }
        let c = Countries::from_toml(
            "[default]\nemergency_numbers = [\"112\"]\n[default.services]\n\"110\" = \"URN:service:SOS.Police\"\n\
             [country.XX]\n[country.YY]\n[country.YY.services]\n\"117\" = \"urn:service:sos.police\"\n\
             [country.ZZ]\nemergency_numbers = [\"999\"]\n",
        )
        .unwrap();
        let police =
            |code: &str, n: &str| c.get(code).unwrap().service_of(n).map(|s| s.to_string());
        // Inherited whole, in lower case.
        assert_eq!(
            police("XX", "110").as_deref(),
            Some("urn:service:sos.police")
        );
        assert!(c.get("XX").unwrap().is_emergency_number("110"));
        // Replaced whole: 110 is not YY's, 117 is.
        assert_eq!(police("YY", "110"), None);
        assert!(!c.get("YY").unwrap().is_emergency_number("110"));
        assert!(c.get("YY").unwrap().is_emergency_number("117"));
        assert!(c.get("YY").unwrap().is_emergency_number("112"));
        // Its own numbers, the default's table still.
        assert!(c.get("ZZ").unwrap().is_emergency_number("110"));
        assert_eq!(c.get("ZZ").unwrap().emergency_numbers, ["999", "110"]);
    }

    #[test]
    fn service_chains_end_with_sos() {
        fn chain(s: &str) -> Vec<&str> {
            service_chain(s).collect()
        }
        assert_eq!(chain("urn:service:sos"), [SOS]);
        assert_eq!(
            chain("urn:service:sos.police"),
            ["urn:service:sos.police", SOS]
        );
        assert_eq!(
            chain("urn:service:sos.police.local"),
            [
                "urn:service:sos.police.local",
                "urn:service:sos.police",
                SOS
            ]
        );
        for other in [
            "urn:service:test.sos",
            "urn:service:sosx.a",
            "",
            "sos",
            "urn:service:counseling",
        ] {
            assert_eq!(chain(other), [SOS], "{other}");
        }
        // A deep URN: from its fourth level.
        let deep = format!("urn:service:sos{}", ".a".repeat(10_000));
        let got = chain(&deep);
        assert_eq!(got.len(), MAX_SERVICE_DEPTH + 1);
        assert_eq!(got[0].len(), SOS.len() + 2 * MAX_SERVICE_DEPTH);
        assert_eq!(got[MAX_SERVICE_DEPTH], SOS);
        assert!(is_sos_service("urn:service:sos.animal-control"));
        for bad in [
            "urn:service:sos.",
            "urn:service:sos..a",
            "urn:service:sos.A",
            "urn:service:sosa",
        ] {
            assert!(!is_sos_service(bad), "{bad}");
        }
    }
}
