//! The gazetteer as an address checker: the service-area data compiled
//! into the router (US states, counties, cities and ZIP codes; Canadian
//! provinces and postal codes), read through
//! [`ServiceAreas::civic_facts`].
//!
//! What it checks, for the US (and its territories) and Canada:
//! - the country: a country code in use (elsewhere too);
//! - A1: present, and a state or province of the country;
//! - A2, when given: a county of that state;
//! - A3, when given (US): a city of that state in the gazetteer;
//! - PC, when given: a US ZIP code or a Canadian postal code in the data, in
//!   the state given (A1) and, for a ZIP, in the county given (A2).
//!
//! It does not check the street (the data has none), nor a ZIP against the
//! city: the gazetteer keeps one county per city, and a city over several
//! counties has ZIP codes in each. Other countries are `unchecked`.

use std::sync::{Arc, OnceLock};

use crate::emergency::psap::{self, ServiceAreas};
use crate::inventory::address_check::{AddressCheck, AddressChecker};

/// The elements [`Gazetteer::check`] reads: nothing else of an address
/// changes its answer.
pub(super) const DECIDED_BY: &[&str] = &["country", "A1", "A2", "A3", "PC"];
use crate::inventory::Address;

/// The checker of the compiled-in service-area data (see the module
/// documentation).
pub struct Gazetteer {
    areas: Arc<ServiceAreas>,
}

impl Gazetteer {
    pub fn new(areas: Arc<ServiceAreas>) -> Gazetteer {
        Gazetteer { areas }
    }

    /// The checker of the data compiled in, built once per process on first
    /// use.
    pub fn embedded() -> Arc<Gazetteer> {
        static SHARED: OnceLock<Arc<Gazetteer>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let areas = ServiceAreas::embedded().expect("the compiled-in service areas load");
                Arc::new(Gazetteer::new(Arc::new(areas)))
            })
            .clone()
    }

    /// The civic elements [`check`](AddressChecker::check) looks at for an
    /// address of `country` (upper case) when it has data for it: the
    /// others (street, house number...) go unchecked. Countries without
    /// data have their code checked only.
    pub fn checked_elements(country: &str) -> &'static [&'static str] {
        match country {
            "US" => &["country", "A1", "A2", "A3", "PC"],
            "CA" => &["country", "A1", "A2", "PC"],
            _ => &["country"],
        }
    }

    fn country_known(&self, country: &str) -> bool {
        self.areas.country_name(country).is_some() || phonenumber_region(country)
    }
}

/// Whether libphonenumber has a numbering plan for the country code: the
/// list of countries in use beside the outlines (which leave out a few
/// small ones, such as Gibraltar).
fn phonenumber_region(country: &str) -> bool {
    country.parse::<phonenumber::country::Id>().is_ok()
        && phonenumber::metadata::DATABASE.by_id(country).is_some()
}

const US_TERRITORIES: [&str; 5] = ["PR", "VI", "GU", "AS", "MP"];

impl AddressChecker for Gazetteer {
    fn decided_by(&self) -> Option<&'static [&'static str]> {
        Some(DECIDED_BY)
    }

    fn check(&self, a: &Address) -> AddressCheck {
        let get = |k: &str| a.civic.get(k).map(str::trim).unwrap_or_default();
        let country = get("country");
        let upper = country.to_ascii_uppercase();
        if country.is_empty() {
            return invalid(vec![("country", "the address has no country".into())]);
        }
        if !self.country_known(&upper) {
            return invalid(vec![(
                "country",
                format!("{country:?} is not a country code in use"),
            )]);
        }
        let (a1, a2, a3, pc) = (get("A1"), get("A2"), get("A3"), get("PC"));
        // The gazetteer has the territories' counties but none of their
        // cities and ZIP codes.
        let territory = [upper.as_str(), &a1.to_ascii_uppercase()]
            .iter()
            .find(|c| US_TERRITORIES.contains(c))
            .map(|c| c.to_string());
        if let Some(t) = territory.filter(|_| upper != "CA") {
            return AddressCheck::Unchecked {
                reason: format!("no address data for {t}"),
            };
        }
        if upper != "US" && upper != "CA" {
            return AddressCheck::Unchecked {
                reason: format!("no address data for {upper}"),
            };
        }
        let facts = self.areas.civic_facts(&psap::CivicAddress {
            country: &upper,
            a1,
            a2,
            a3,
            pc,
        });
        let (us, region) = if upper == "CA" {
            (false, "province")
        } else {
            (true, "state")
        };
        let mut faults: Vec<(&'static str, String)> = Vec::new();
        let state = facts.state;
        if a1.is_empty() {
            faults.push(("A1", format!("no {region} (A1)")));
        } else if state.is_none() {
            faults.push(("A1", format!("{a1:?} is not a {region} of {upper}")));
        }
        let state_name = state.unwrap_or(a1);
        if let Some(s) = state {
            if !a2.is_empty() && facts.county.is_none() {
                faults.push(("A2", format!("{a2:?} is not a county of {s}")));
            }
            if us && !a3.is_empty() && facts.city.is_none() {
                faults.push((
                    "A3",
                    format!("{a3:?} is not a city of {s} in the gazetteer"),
                ));
            }
        }
        if !pc.is_empty() {
            let well_formed = if us { is_zip(pc) } else { is_ca_postal(pc) };
            match facts.postal {
                _ if !well_formed => faults.push((
                    "PC",
                    if us {
                        format!("{pc:?} is not a ZIP code (5 digits, or ZIP+4)")
                    } else {
                        format!("{pc:?} is not a Canadian postal code (A1A 1A1)")
                    },
                )),
                None => faults.push(("PC", format!("{pc:?} is not a postal code in the data"))),
                Some(area) => {
                    let at = area.a1.as_deref().unwrap_or_default();
                    if state.is_some_and(|s| s != at) {
                        faults.push(("PC", format!("{pc} is in {at}, not in {state_name}")));
                        faults.push(("A1", String::new()));
                    } else if let Some(county) = facts.county.filter(|c| c.id != area.id) {
                        let name = |a: &psap::Area| a.a2.clone().unwrap_or_else(|| a.id.clone());
                        faults.push((
                            "PC",
                            format!("{pc} is in {}, not in {}", name(area), name(county)),
                        ));
                        faults.push(("A2", String::new()));
                    }
                }
            }
        }
        if faults.is_empty() {
            AddressCheck::Valid
        } else {
            invalid(faults)
        }
    }
}

/// The faults as one check: each element once, in order; the reasons that
/// say something, joined.
fn invalid(faults: Vec<(&'static str, String)>) -> AddressCheck {
    let mut elements: Vec<String> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for (e, why) in faults {
        if !elements.iter().any(|x| x == e) {
            elements.push(e.to_string());
        }
        if !why.is_empty() {
            reasons.push(why);
        }
    }
    AddressCheck::Invalid {
        elements,
        reason: reasons.join("; "),
        source: crate::inventory::address_check::Source::Gazetteer,
    }
}

/// `80203` or `80203-1234`.
fn is_zip(pc: &str) -> bool {
    let b = pc.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => digits(b),
        10 => digits(&b[..5]) && b[5] == b'-' && digits(&b[6..]),
        _ => false,
    }
}

/// `K1A 0B1`, with or without the space, any case.
fn is_ca_postal(pc: &str) -> bool {
    let c: Vec<u8> = pc.bytes().filter(|b| *b != b' ').collect();
    c.len() == 6
        && c.iter().enumerate().all(|(i, b)| {
            if i % 2 == 0 {
                b.is_ascii_alphabetic()
            } else {
                b.is_ascii_digit()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::address_check::Remembered;
    use crate::pidf::CivicAddress;

    fn address(fields: &[(&str, &str)]) -> Address {
        let mut civic = CivicAddress::new();
        for (k, v) in fields {
            civic.push(*k, *v);
        }
        Address { civic, point: None }
    }

    /// An address, its state, the elements at fault, words of the reason.
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static [&'static str],
        &'static str,
    );

    #[test]
    fn addresses_per_element() {
        let g = Gazetteer::embedded();
        // (address, state, elements at fault, words of the reason)
        let cases: &[Case] = &[
            (
                &[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A3", "Denver"),
                    ("PC", "80203"),
                ],
                "valid",
                &[],
                "",
            ),
            (
                &[
                    ("country", "US"),
                    ("A1", "New York"),
                    ("A2", "New York County"),
                    ("A3", "New York"),
                    ("PC", "10001-2345"),
                ],
                "valid",
                &[],
                "",
            ),
            (
                &[
                    ("country", "US"),
                    ("A1", "CA"),
                    ("A3", "San Francisco"),
                    ("PC", "94102"),
                ],
                "valid",
                &[],
                "",
            ),
            (
                &[("country", "PR"), ("A3", "San Juan"), ("PC", "00901")],
                "unchecked",
                &[],
                "PR",
            ),
            (
                &[("country", "US"), ("A1", "PR"), ("A3", "San Juan")],
                "unchecked",
                &[],
                "PR",
            ),
            (
                &[
                    ("country", "CA"),
                    ("A1", "ON"),
                    ("A3", "Toronto"),
                    ("PC", "M5V 3L9"),
                ],
                "valid",
                &[],
                "",
            ),
            (
                &[
                    ("country", "CA"),
                    ("A1", "Quebec"),
                    ("A3", "Montréal"),
                    ("PC", "h3b2y7"),
                ],
                "valid",
                &[],
                "",
            ),
            // Faults, element by element.
            (
                &[("country", "US"), ("A3", "Denver"), ("PC", "80203")],
                "invalid",
                &["A1"],
                "no state (A1)",
            ),
            (
                &[("country", "US"), ("A1", "ZZ"), ("A3", "Denver")],
                "invalid",
                &["A1"],
                "\"ZZ\" is not a state of US",
            ),
            (
                &[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A2", "Atlantis"),
                    ("A3", "Denver"),
                ],
                "invalid",
                &["A2"],
                "not a county of CO",
            ),
            (
                &[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A3", "Springfield-on-Mars"),
                ],
                "invalid",
                &["A3"],
                "not a city of CO",
            ),
            (
                &[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A3", "Denver"),
                    ("PC", "10001"),
                ],
                "invalid",
                &["PC", "A1"],
                "10001 is in NY, not in CO",
            ),
            (
                &[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A2", "Jefferson"),
                    ("PC", "80203"),
                ],
                "invalid",
                &["PC", "A2"],
                "80203 is in Denver County, not in Jefferson County",
            ),
            (
                &[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A3", "Denver"),
                    ("PC", "8020"),
                ],
                "invalid",
                &["PC"],
                "not a ZIP code",
            ),
            (
                &[
                    ("country", "US"),
                    ("A1", "CO"),
                    ("A3", "Denver"),
                    ("PC", "00000"),
                ],
                "invalid",
                &["PC"],
                "not a postal code in the data",
            ),
            (
                &[
                    ("country", "CA"),
                    ("A1", "BC"),
                    ("A3", "Toronto"),
                    ("PC", "M5V 3L9"),
                ],
                "invalid",
                &["PC", "A1"],
                "M5V 3L9 is in ON, not in BC",
            ),
            (
                &[("country", "CA"), ("A1", "ON"), ("PC", "12345")],
                "invalid",
                &["PC"],
                "not a Canadian postal code",
            ),
            (
                &[("country", "QQ"), ("A3", "Nowhere")],
                "invalid",
                &["country"],
                "not a country code in use",
            ),
            // Countries without data; Gibraltar has no outline but is a country.
            (
                &[("country", "DE"), ("A3", "München"), ("PC", "80331")],
                "unchecked",
                &[],
                "no address data for DE",
            ),
            (
                &[("country", "GI"), ("A3", "Gibraltar")],
                "unchecked",
                &[],
                "GI",
            ),
        ];
        let mut wrong = Vec::new();
        let remembered = Remembered::new(g.clone()).expect("the gazetteer says what decides");
        for (fields, state, elements, words) in cases {
            let got = g.check(&address(fields));
            // With a street, a house number and a unit: the same answer
            // (they are not among the elements that decide it), and the
            // same again through the remembered answers.
            let mut more = fields.to_vec();
            more.extend([("RD", "Main"), ("STS", "St"), ("HNO", "12"), ("UNIT", "4B")]);
            let more = address(&more);
            assert_eq!(g.check(&more), got, "{fields:?}");
            assert_eq!(remembered.check(&more), got, "{fields:?}");
            assert_eq!(remembered.check(&address(fields)), got, "{fields:?}");
            let right = got.state() == *state
                && match &got {
                    AddressCheck::Invalid {
                        elements: e,
                        reason,
                        ..
                    } => e == elements && reason.contains(words),
                    AddressCheck::Unchecked { reason } => reason.contains(words),
                    AddressCheck::Valid | AddressCheck::EcrfValid => true,
                };
            if !right {
                wrong.push(format!("{fields:?}: {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
