//! Telephone numbers as they come into the inventory (uploads, the
//! inventory file, `sosrouter inventory import`): put into E.164 form and
//! checked against libphonenumber's metadata for their country (the
//! `phonenumber` crate), so that a number no network can hand out
//! (`+1303555`, too short; `+19995550100`, no area code 999) is refused
//! before a call depends on it.
//!
//! [`check_number`] is the one check. It takes:
//! - E.164 with or without separators (`+1 303-555-0117`, `+44 20 7946 0018`);
//! - `00` and the country code;
//! - a national number (`(303) 555-0117`, `020 7946 0018`) when the row names
//!   the number's country.
//!
//! A number must be valid as libphonenumber knows its country's numbering
//! plan, and its country calling code must be the calling code of the row's
//! country (`+44...` is no US number). Within a calling code shared by
//! several countries (`+1`: the US, Canada and the Caribbean) the row's
//! country is what says where the service is, so a Canadian `+1 416` number
//! may be served in the US.
//!
//! The router's call path does not use this: it reads callers' numbers with
//! [`super::normalize_e164`], which accepts whatever a trunk presents.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;

/// Why a number was refused, as a row error says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberError {
    /// The cell as written.
    pub value: String,
    pub reason: String,
}

impl std::fmt::Display for NumberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "number {:?}: {}", self.value, self.reason)
    }
}

/// The number in E.164 form (`+13035550117`), or why it is not a telephone
/// number of `country` (ISO 3166-1 alpha-2, upper or lower case; `None`
/// when the row names none, and then the number must be international).
pub fn check_number(value: &str, country: Option<&str>) -> Result<String, NumberError> {
    let refuse = |reason: String| NumberError {
        value: value.to_string(),
        reason,
    };
    let raw = value.trim();
    let region = match country {
        Some(c) => Some(c.to_ascii_uppercase().parse::<Id>().map_err(|_| {
            refuse(format!(
                "{c:?} is a country libphonenumber has no numbering plan for"
            ))
        })?),
        None => None,
    };
    let international = raw.starts_with('+') || raw.starts_with("00");
    if !international && region.is_none() {
        return Err(refuse(
            "a national number needs the row's country (or write it with + and the country code)"
                .into(),
        ));
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')' | '/')))
    {
        return Err(refuse(format!("{bad:?} is not part of a telephone number")));
    }
    if raw.get(1..).is_some_and(|rest| rest.contains('+')) {
        return Err(refuse("+ comes only first".into()));
    }
    let digits = raw.bytes().filter(u8::is_ascii_digit).count();
    if digits > 17 {
        return Err(refuse(format!(
            "{digits} digits: E.164 numbers have at most 15"
        )));
    }
    let (code, national) = if international {
        // The common case (every row of a carrier's export): read the
        // calling code and the national number straight from the digits.
        let all: String = raw
            .trim_start_matches('+')
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let all = if raw.starts_with("00") {
            &all[2..]
        } else {
            &all[..]
        };
        let code = (1..=3)
            .filter_map(|n| all.get(..n)?.parse::<u16>().ok())
            .find(|c| !plans(*c).is_empty())
            .ok_or_else(|| refuse("no country has this calling code".into()))?;
        let national = all[code.to_string().len()..].to_string();
        (code, national)
    } else {
        // A national form: libphonenumber knows each country's trunk
        // prefix (the 0 of 020 7946 0018, the 1 of 1 303 555 0117).
        let parsed = phonenumber::parse(region, raw).map_err(|e| refuse(parse_reason(&e)))?;
        if parsed.extension().is_some() {
            return Err(refuse("an extension is not part of an E.164 number".into()));
        }
        (parsed.code().value(), parsed.national().to_string())
    };
    if let Some(region) = region {
        let expected = DATABASE
            .by_id(region.as_ref())
            .map(|m| m.country_code())
            .unwrap_or(code);
        if expected != code {
            return Err(refuse(format!(
                "a +{code} number, but {} numbers begin with +{expected}",
                region.as_ref()
            )));
        }
    }
    if national.is_empty() {
        return Err(refuse("too short for a telephone number".into()));
    }
    if !plans(code).iter().any(|p| p.valid(&national)) {
        return Err(refuse(invalid_reason(code, &national, region)));
    }
    let e164 = format!("+{code}{national}");
    if e164.len() > 16 {
        return Err(refuse("longer than the 15 digits of E.164".into()));
    }
    Ok(e164)
}

/// One numbering plan's patterns, compiled once: its general pattern and
/// those of each kind of number (fixed line, mobile, toll free, ...),
/// each with its lengths. A number is valid when it fits the general
/// pattern and one kind, as libphonenumber's `isValidNumber` says.
struct Plan {
    general: Pattern,
    kinds: Vec<Pattern>,
}

struct Pattern {
    lengths: Vec<u16>,
    /// Anchored at both ends.
    regex: regex::Regex,
}

impl Pattern {
    fn of(d: &phonenumber::metadata::Descriptor) -> Option<Pattern> {
        // The metadata's patterns are written with insignificant spaces.
        let regex = regex::RegexBuilder::new(&format!("^(?:{})$", d.national_number().as_str()))
            .ignore_whitespace(true)
            .build()
            .ok()?;
        Some(Pattern {
            lengths: d.possible_length().to_vec(),
            regex,
        })
    }

    fn fits(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.regex.is_match(national)
    }
}

impl Plan {
    fn of(m: &phonenumber::Metadata) -> Option<Plan> {
        let d = m.descriptors();
        let kinds = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        Some(Plan {
            general: Pattern::of(d.general())?,
            kinds: kinds
                .into_iter()
                .flatten()
                .filter_map(Pattern::of)
                .collect(),
        })
    }

    fn valid(&self, national: &str) -> bool {
        self.general.fits(national) && self.kinds.iter().any(|k| k.fits(national))
    }
}

/// The plans of the countries that share a calling code (`+1`: the US,
/// Canada and the Caribbean), built on first use. The crate's own
/// matching goes through a locked cache of its regexes keyed by their
/// text (several kilobytes for a large country) on every match, about
/// 15 µs a number; these are compiled once and matched directly.
fn plans(code: u16) -> Arc<[Plan]> {
    static PLANS: OnceLock<RwLock<HashMap<u16, Arc<[Plan]>>>> = OnceLock::new();
    let all = PLANS.get_or_init(Default::default);
    if let Some(p) = all.read().unwrap_or_else(|e| e.into_inner()).get(&code) {
        return p.clone();
    }
    let built: Arc<[Plan]> = DATABASE
        .by_code(&code)
        .unwrap_or_default()
        .into_iter()
        .filter_map(Plan::of)
        .collect();
    all.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(code)
        .or_insert(built)
        .clone()
}

fn parse_reason(e: &phonenumber::ParseError) -> String {
    use phonenumber::ParseError as P;
    match e {
        P::InvalidCountryCode => "no country has this calling code".into(),
        P::TooShortAfterIdd | P::TooShortNsn => "too short for a telephone number".into(),
        P::TooLong => "too long for a telephone number".into(),
        _ => "not a telephone number".into(),
    }
}

/// Why libphonenumber's metadata finds a number invalid: its length for
/// the country, else a range the country does not use.
fn invalid_reason(code: u16, national: &str, region: Option<Id>) -> String {
    // The country to speak of: the row's, else the main one of the code.
    let meta = match region {
        Some(r) => DATABASE.by_id(r.as_ref()),
        None => DATABASE
            .by_code(&code)
            .and_then(|m| {
                m.into_iter()
                    .find(|m| m.is_main_country_for_code())
                    .or(None)
            })
            .or_else(|| DATABASE.by_code(&code).and_then(|m| m.into_iter().next())),
    };
    let Some(meta) = meta else {
        return format!("no country has the calling code +{code}");
    };
    let place = match meta.id() {
        "001" => format!("+{code}"),
        id => id.to_string(),
    };
    let d = meta.descriptors();
    let mut lengths: Vec<u16> = std::iter::once(d.general())
        .chain(d.fixed_line())
        .chain(d.mobile())
        .chain(d.toll_free())
        .chain(d.premium_rate())
        .chain(d.shared_cost())
        .chain(d.personal_number())
        .chain(d.voip())
        .chain(d.uan())
        .flat_map(|d| d.possible_length().iter().copied())
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    let len = national.len() as u16;
    if !lengths.is_empty() && !lengths.contains(&len) {
        let list = lengths
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        let which = if len < lengths[0] {
            "too short"
        } else if len > lengths[lengths.len() - 1] {
            "too long"
        } else {
            "a length no number has"
        };
        return format!(
            "{which} for {place}: {len} digits after +{code}, where {place} numbers have {list}"
        );
    }
    format!("{national} is not in a number range that {place} uses (libphonenumber's metadata)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_per_country() {
        // (cell, row's country, E.164 or the words of the refusal)
        let cases: &[(&str, Option<&str>, Result<&str, &str>)] = &[
            // As the router has always taken them.
            ("+13035550117", Some("US"), Ok("+13035550117")),
            ("+12125550142", None, Ok("+12125550142")),
            ("+14155550177", Some("us"), Ok("+14155550177")),
            ("+14165550199", Some("CA"), Ok("+14165550199")),
            ("+442079460018", Some("GB"), Ok("+442079460018")),
            ("+498912345678", Some("DE"), Ok("+498912345678")),
            ("+33142685300", Some("FR"), Ok("+33142685300")),
            ("+61298765432", Some("AU"), Ok("+61298765432")),
            // Separators, 00, and national forms with the row's country.
            ("+1 (303) 555-0117", Some("US"), Ok("+13035550117")),
            ("+1.303.555.0117", None, Ok("+13035550117")),
            ("0044 20 7946 0018", None, Ok("+442079460018")),
            ("(303) 555-0117", Some("US"), Ok("+13035550117")),
            ("303-555-0117", Some("US"), Ok("+13035550117")),
            ("1 303 555 0117", Some("US"), Ok("+13035550117")),
            ("020 7946 0018", Some("GB"), Ok("+442079460018")),
            ("089 12345678", Some("DE"), Ok("+498912345678")),
            ("01 42 68 53 00", Some("FR"), Ok("+33142685300")),
            // An Italian number keeps its leading 0.
            ("06 6982 1234", Some("IT"), Ok("+390669821234")),
            // A +1 number served in another +1 country.
            ("+14165550199", Some("US"), Ok("+14165550199")),
            // Refused.
            ("+1303555", Some("US"), Err("too short for US")),
            (
                "+19995550100",
                Some("US"),
                Err("not in a number range that US uses"),
            ),
            ("+1303555011799", Some("US"), Err("too long")),
            (
                "+442079460018",
                Some("US"),
                Err("a +44 number, but US numbers begin with +1"),
            ),
            (
                "3035550117",
                None,
                Err("a national number needs the row's country"),
            ),
            (
                "+1303555O117",
                Some("US"),
                Err("'O' is not part of a telephone number"),
            ),
            ("+1303+5550117", Some("US"), Err("+ comes only first")),
            (
                "+999123456789",
                None,
                Err("no country has this calling code"),
            ),
            (
                "+1 303 555 0117 ext 4",
                Some("US"),
                Err("is not part of a telephone number"),
            ),
            ("+13035550117", Some("XX"), Err("no numbering plan")),
            ("12", Some("US"), Err("")),
        ];
        let mut wrong = Vec::new();
        for (cell, country, want) in cases {
            let got = check_number(cell, *country);
            let right = match (want, &got) {
                (Ok(w), Ok(g)) => g == w,
                (Err(w), Err(e)) => {
                    e.reason.contains(w) && e.to_string().contains(&format!("{cell:?}"))
                }
                _ => false,
            };
            if !right {
                wrong.push(format!("{cell} {country:?}: {got:?}, expected {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// The compiled plans say what libphonenumber's own validation says.
    #[test]
    fn plans_agree_with_the_crate() {
        let numbers = [
            "+12125550142",
            "+13035550117",
            "+19995550100",
            "+12120000000",
            "+14165550199",
            "+18765550123",
            "+12425551234",
            "+442079460018",
            "+447911123456",
            "+44207946001",
            "+498912345678",
            "+4915123456789",
            "+491234",
            "+33142685300",
            "+33612345678",
            "+390669821234",
            "+393123456789",
            "+61298765432",
            "+61412345678",
            "+81312345678",
            "+8613812345678",
            "+5511912345678",
            "+27211234567",
            "+9647501234567",
            "+35020012345",
            "+80012345678",
            "+882345678901",
            "+4930123",
            "+3531234567",
            "+35312345678",
        ];
        for n in numbers {
            let ours = check_number(n, None).is_ok();
            let theirs = phonenumber::parse(None, n).is_ok_and(|p| p.is_valid());
            assert_eq!(ours, theirs, "{n}");
        }
    }
}
