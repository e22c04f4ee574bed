//! Emergency addresses as the API and the database write them: a JSON
//! object whose keys are RFC 5139 element names (`country`, `A1`, `A3`,
//! `RD`, `HNO`, `PC`, ...), with `lang` for the address's language and
//! `point` (`{"lat": .., "lon": ..}`, degrees WGS 84) when its position is
//! known. The database keeps the civic part (with `lang`) as JSON text and
//! the point in two columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{AddressPolicy, AddressValidationConfig, AdminConfig};
use crate::inventory::address_check::{AddressCheck, AddressChecker, Remembered};
use crate::inventory::limits::check_address_size;
use crate::inventory::Address;
use crate::pidf::{CivicAddress, RFC5139_ELEMENTS};

use super::gazetteer::Gazetteer;

/// The API form of an address.
pub fn to_json(a: &Address) -> Value {
    let mut o = civic_map(a);
    if let Some((lat, lon)) = a.point {
        o.insert("point".into(), serde_json::json!({"lat": lat, "lon": lon}));
    }
    Value::Object(o)
}

fn civic_map(a: &Address) -> Map<String, Value> {
    let mut o = Map::new();
    for (k, v) in a.civic.iter() {
        o.insert(k.to_string(), Value::String(v.to_string()));
    }
    if let Some(l) = a.civic.lang() {
        o.insert("lang".into(), Value::String(l.to_string()));
    }
    o
}

/// The civic part as stored (JSON text).
pub fn civic_text(a: &Address) -> String {
    Value::Object(civic_map(a)).to_string()
}

/// An address from its stored columns.
pub fn from_db(civic: &str, lat: Option<f64>, lon: Option<f64>) -> anyhow::Result<Address> {
    let v: Value = serde_json::from_str(civic)?;
    let Value::Object(o) = v else {
        anyhow::bail!("a stored civic address is not a JSON object");
    };
    let mut c = CivicAddress::new();
    for (k, v) in o {
        let v = v.as_str().unwrap_or_default().to_string();
        if k == "lang" {
            c.set_lang(Some(v));
        } else {
            c.push(k, v);
        }
    }
    Ok(Address {
        civic: c,
        point: lat.zip(lon),
    })
}

/// Reads an address from its API form. `default_country` fills a missing
/// `country`. Every problem is reported, not just the first; the size
/// limits of [`crate::inventory::limits`] are checked before the values.
pub fn from_json(v: &Value, default_country: Option<&str>) -> Result<Address, Vec<String>> {
    let Value::Object(o) = v else {
        return Err(vec![
            "an address is a JSON object with RFC 5139 element names as keys".into(),
        ]);
    };
    let mut errors = Vec::new();
    let mut fields: Vec<(usize, String)> = Vec::new();
    let mut lang = None;
    let mut point = None;
    for (k, v) in o {
        if k == "point" {
            match point_of(v) {
                Ok(p) => point = p,
                Err(e) => errors.push(e),
            }
            continue;
        }
        let text = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            _ => {
                errors.push(format!("{k}: a value is a string"));
                continue;
            }
        };
        if k == "lang" {
            lang = (!text.is_empty()).then_some(text);
            continue;
        }
        match RFC5139_ELEMENTS.iter().position(|e| e == k) {
            Some(i) => {
                if !text.is_empty() {
                    fields.push((i, text));
                }
            }
            None => errors.push(format!("{k:?} is not an RFC 5139 element")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let elements = fields
        .iter()
        .map(|(i, v)| (RFC5139_ELEMENTS[*i], v.as_str()));
    check_address_size(elements, lang.as_deref())
        .map_err(|e| e.iter().map(|e| e.describe("")).collect::<Vec<_>>())?;
    build(fields, lang, point, default_country).map_err(|e| vec![e])
}

fn point_of(v: &Value) -> Result<Option<(f64, f64)>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let lat = v.get("lat").and_then(Value::as_f64);
    let lon = v.get("lon").and_then(Value::as_f64);
    match (lat, lon) {
        (Some(lat), Some(lon)) => check_point(lat, lon).map(Some),
        _ => Err("point: {\"lat\": degrees, \"lon\": degrees}".into()),
    }
}

/// A point in range.
pub fn check_point(lat: f64, lon: f64) -> Result<(f64, f64), String> {
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(format!("latitude {lat} is out of range"));
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} is out of range"));
    }
    Ok((lat, lon))
}

/// An address from RFC 5139 fields (by index in `RFC5139_ELEMENTS`), in
/// the RFC's order with the country first; the country upper-cased and,
/// when absent, taken from `default_country`.
pub fn build(
    mut fields: Vec<(usize, String)>,
    lang: Option<String>,
    point: Option<(f64, f64)>,
    default_country: Option<&str>,
) -> Result<Address, String> {
    fields.sort_by_key(|(i, _)| *i);
    let mut civic = CivicAddress::new();
    civic.set_lang(lang);
    let has_country = fields
        .iter()
        .any(|(i, _)| RFC5139_ELEMENTS[*i] == "country");
    if !has_country {
        let c = default_country.ok_or("the address has no country")?;
        civic.push("country", c.to_ascii_uppercase());
    }
    for (i, v) in fields {
        let key = RFC5139_ELEMENTS[i];
        if key == "country" {
            if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!("country {v:?} is not an ISO 3166-1 alpha-2 code"));
            }
            civic.push(key, v.to_ascii_uppercase());
        } else {
            civic.push(key, v);
        }
    }
    Ok(Address { civic, point })
}

/// Whether the element `k` is absent or blank in `a`.
fn lacks(a: &Address, k: &str) -> bool {
    a.civic.get(k).is_none_or(|v| v.trim().is_empty())
}

/// The address elements each country requires (see
/// `admin.required_address`).
#[derive(Debug, Clone)]
pub struct RequiredFields(BTreeMap<String, Vec<String>>);

impl RequiredFields {
    /// The built-in table (North America: state, city, street and house
    /// number; elsewhere: city and street), with `overrides` replacing
    /// whole countries.
    pub fn new(overrides: &BTreeMap<String, Vec<String>>) -> RequiredFields {
        let v = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut t = BTreeMap::new();
        t.insert("US".to_string(), v(&["country", "A1", "A3", "RD", "HNO"]));
        t.insert("CA".to_string(), v(&["country", "A1", "A3", "RD", "HNO"]));
        t.insert("*".to_string(), v(&["country", "A3", "RD"]));
        for (k, f) in overrides {
            let key = if k == "*" {
                k.clone()
            } else {
                k.to_ascii_uppercase()
            };
            t.insert(key, f.clone());
        }
        RequiredFields(t)
    }

    /// The elements `a` lacks for its country.
    pub fn missing(&self, a: &Address) -> Vec<String> {
        self.needed(a)
            .iter()
            .filter(|k| lacks(a, k))
            .cloned()
            .collect()
    }

    /// Whether `a` lacks an element its country requires: the question of
    /// every upload row, answered without allocating.
    pub fn lacks_any(&self, a: &Address) -> bool {
        self.needed(a).iter().any(|k| lacks(a, k))
    }

    /// The elements required in `a`'s country (upper-cased, trimmed, as
    /// [`Address::country`] gives it), else those of `*`.
    fn needed(&self, a: &Address) -> &[String] {
        let country = a.civic.get("country").map(str::trim).unwrap_or_default();
        // Country codes are two letters: one longer names no row.
        let mut buf = [0u8; 8];
        let code = buf.get_mut(..country.len()).and_then(|b| {
            b.copy_from_slice(country.as_bytes());
            b.make_ascii_uppercase();
            std::str::from_utf8(b).ok()
        });
        code.and_then(|c| self.0.get(c))
            .or_else(|| self.0.get("*"))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// An error naming what is missing, if anything.
    pub fn check(&self, a: &Address) -> Result<(), String> {
        let missing = self.missing(a);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the address lacks {} (required in {})",
                missing.join(", "),
                a.country().unwrap_or_default()
            ))
        }
    }
}

/// What every address that comes in goes through: the elements its
/// country requires ([`RequiredFields`]), then the address checker, whose
/// answer is stored with the address, and the operator's policy for an
/// address found invalid (`admin.address_validation`).
#[derive(Clone)]
pub struct AddressRules {
    pub required: RequiredFields,
    validation: AddressValidationConfig,
    checker: Arc<dyn AddressChecker>,
}

impl std::fmt::Debug for AddressRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressRules")
            .field("required", &self.required)
            .field("validation", &self.validation)
            .finish_non_exhaustive()
    }
}

/// Why an address was refused: the elements at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressRefused {
    /// Elements its country requires are missing.
    Missing {
        elements: Vec<String>,
        message: String,
    },
    /// The checker found it invalid, and its country refuses that.
    Invalid {
        elements: Vec<String>,
        reason: String,
        country: String,
    },
}

impl AddressRefused {
    pub fn elements(&self) -> &[String] {
        match self {
            AddressRefused::Missing { elements, .. } | AddressRefused::Invalid { elements, .. } => {
                elements
            }
        }
    }

    /// What is wrong, naming each element after `prefix` (`reg_` in
    /// uploads, whose columns they are).
    pub fn describe(&self, prefix: &str) -> String {
        match self {
            AddressRefused::Missing { message, .. } => message.clone(),
            AddressRefused::Invalid {
                elements,
                reason,
                country,
            } => {
                let named = elements
                    .iter()
                    .map(|e| format!("{prefix}{e}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("invalid address ({named}): {reason}; addresses in {country} are refused when invalid")
            }
        }
    }
}

impl AddressRules {
    pub fn new(
        required: &BTreeMap<String, Vec<String>>,
        validation: &AddressValidationConfig,
        checker: Arc<dyn AddressChecker>,
    ) -> AddressRules {
        // A checker that says which elements decide its answers is asked
        // once per combination of them (see `Remembered`).
        let checker = match Remembered::new(checker.clone()) {
            Some(r) => Arc::new(r) as Arc<dyn AddressChecker>,
            None => checker,
        };
        AddressRules {
            required: RequiredFields::new(required),
            validation: validation.clone(),
            checker,
        }
    }

    /// The rules of `[admin]` (the defaults without it), checked against
    /// the gazetteer compiled in.
    pub fn of_admin(admin: Option<&AdminConfig>) -> AddressRules {
        let (required, validation) = match admin {
            Some(a) => (a.required_address.clone(), a.address_validation.clone()),
            None => Default::default(),
        };
        AddressRules::new(&required, &validation, Arc::new(EmbeddedGazetteer))
    }

    /// The same rules, with the ECRF's answers gathered for some of the
    /// addresses to come: those get the ECRF's check, the others this
    /// checker's.
    pub fn with_answers(
        &self,
        answers: std::collections::HashMap<String, AddressCheck>,
    ) -> AddressRules {
        if answers.is_empty() {
            return self.clone();
        }
        AddressRules {
            required: self.required.clone(),
            validation: self.validation.clone(),
            checker: Arc::new(crate::inventory::address_check::Prefetched {
                answers,
                fallback: self.checker.clone(),
            }),
        }
    }

    /// Whether the address has every element its country requires (an
    /// address that lacks one is refused before any checker is asked).
    pub fn complete(&self, a: &Address) -> bool {
        self.required.missing(a).is_empty()
    }

    /// The policy for an invalid address in `country`.
    pub fn policy(&self, country: &str) -> AddressPolicy {
        self.validation.policy(country)
    }

    /// The address's check to store with it, or why it is refused: an
    /// element its country requires is missing, or the checker finds it
    /// invalid where the country's policy is `refuse`.
    pub fn check(&self, a: &Address) -> Result<AddressCheck, AddressRefused> {
        if self.required.lacks_any(a) {
            return Err(AddressRefused::Missing {
                message: self.required.check(a).unwrap_err(),
                elements: self.required.missing(a),
            });
        }
        let check = self.checker.check(a);
        if let AddressCheck::Invalid {
            elements, reason, ..
        } = &check
        {
            let country = a.country().unwrap_or_default();
            if self.policy(&country) == AddressPolicy::Refuse {
                return Err(AddressRefused::Invalid {
                    elements: elements.clone(),
                    reason: reason.clone(),
                    country,
                });
            }
        }
        Ok(check)
    }
}

/// The gazetteer compiled in, built on the first address checked.
struct EmbeddedGazetteer;

impl AddressChecker for EmbeddedGazetteer {
    fn check(&self, a: &Address) -> AddressCheck {
        Gazetteer::embedded().check(a)
    }

    /// Said without loading the data: rules are built at start and on
    /// every reload, the data only once an address is checked.
    fn decided_by(&self) -> Option<&'static [&'static str]> {
        Some(super::gazetteer::DECIDED_BY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_errors() {
        let v = serde_json::json!({
            "HNO": "1", "A1": "CA", "A3": "San Francisco", "RD": "Dr Carlton B Goodlett",
            "lang": "en", "point": {"lat": 37.779, "lon": -122.419}
        });
        let a = from_json(&v, Some("us")).unwrap();
        let keys: Vec<&str> = a.civic.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["country", "A1", "A3", "RD", "HNO"]);
        assert_eq!(a.country().as_deref(), Some("US"));
        assert_eq!(a.point, Some((37.779, -122.419)));
        let back = from_db(&civic_text(&a), Some(37.779), Some(-122.419)).unwrap();
        assert_eq!(back, a);
        assert_eq!(to_json(&back)["lang"], "en");

        let e = from_json(&serde_json::json!({"HN0": "1", "A3": ["x"]}), Some("US")).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|m| m.contains("HN0")));
        let e = from_json(&serde_json::json!({"A3": "x"}), None).unwrap_err();
        assert!(e[0].contains("country"));
        let e = from_json(
            &serde_json::json!({"point": {"lat": 91, "lon": 0}}),
            Some("US"),
        )
        .unwrap_err();
        assert!(e[0].contains("latitude"));
        assert!(from_json(&serde_json::json!([1]), None).is_err());
    }

    #[test]
    fn required_fields_per_country() {
        let r = RequiredFields::new(&BTreeMap::new());
        let a = from_json(
            &serde_json::json!({"A3": "Denver", "RD": "Colfax"}),
            Some("US"),
        )
        .unwrap();
        assert_eq!(r.missing(&a), ["A1", "HNO"]);
        assert!(r.check(&a).unwrap_err().contains("A1, HNO"));
        let gb = from_json(
            &serde_json::json!({"A3": "London", "RD": "Whitehall"}),
            Some("GB"),
        )
        .unwrap();
        assert!(r.check(&gb).is_ok());
        let mut o = BTreeMap::new();
        o.insert(
            "gb".to_string(),
            vec!["country".to_string(), "PC".to_string()],
        );
        let r = RequiredFields::new(&o);
        assert_eq!(r.missing(&gb), ["PC"]);
        assert!(r.lacks_any(&gb));
    }

    /// The compiled-in gazetteer says what decides its answers without
    /// loading its data, and says what the gazetteer says.
    #[test]
    fn the_embedded_gazetteer_is_remembered_by_the_gazetteers_elements() {
        assert_eq!(
            EmbeddedGazetteer.decided_by(),
            Gazetteer::embedded().decided_by()
        );
        assert!(EmbeddedGazetteer.decided_by().is_some());
    }

    /// The quick answer of every upload row agrees with the list of what
    /// is missing, however the country is written.
    #[test]
    fn lacks_any_agrees_with_missing() {
        let r = RequiredFields::new(&BTreeMap::new());
        let cases: [&[(&str, &str)]; 8] = [
            &[
                ("country", "US"),
                ("A1", "CO"),
                ("A3", "Denver"),
                ("RD", "Colfax"),
                ("HNO", "1"),
            ],
            &[
                ("country", "us"),
                ("A1", "CO"),
                ("A3", "Denver"),
                ("RD", "Colfax"),
            ],
            &[("country", " Us "), ("A3", "Denver"), ("RD", "Colfax")],
            &[("country", "USA"), ("A3", "Denver"), ("RD", "Colfax")],
            &[("country", "GB"), ("A3", "London"), ("RD", "Whitehall")],
            &[("country", "gb"), ("A3", " "), ("RD", "Whitehall")],
            &[("A3", "Denver"), ("RD", "Colfax")],
            &[("country", "ÜÜÜÜÜ"), ("A3", "x"), ("RD", "y")],
        ];
        for fields in cases {
            let mut civic = CivicAddress::new();
            for (k, v) in fields {
                civic.push(k, v);
            }
            let a = Address { civic, point: None };
            assert_eq!(r.lacks_any(&a), !r.missing(&a).is_empty(), "{fields:?}");
        }
        let us_lower = Address {
            civic: [("country", "us"), ("A3", "Denver"), ("RD", "Colfax")]
                .into_iter()
                .collect(),
            point: None,
        };
        // The US rows apply to a lower-case code: A1 and HNO are missing.
        assert_eq!(r.missing(&us_lower), ["A1", "HNO"]);
    }
}
