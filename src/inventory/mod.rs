//! The number inventory: per E.164 number its tenant, country, registered
//! emergency address, Common Area Phone flag and capabilities, and per tenant
//! the emergency locations it defined.
//!
//! An [`Inventory`] is an immutable snapshot, shared as [`SharedInventory`]
//! (an `Arc`); a new upload builds a new snapshot. [`Inventory::load`] reads
//! one from a TSV or CSV file (see [`load`] for the columns).
//!
//! [`caller_number`] finds the caller's number in a request and
//! [`normalize_e164`] puts a number into E.164 form.

pub mod limits;
pub mod load;
pub(crate) mod row;

use std::collections::HashMap;
use std::sync::Arc;

use crate::pidf::CivicAddress;
use crate::sip::{HeaderName, Message, NameAddr};

pub use limits::{AddressTooLarge, MAX_ADDRESS_BYTES, MAX_ADDRESS_ELEMENT_BYTES};
pub use load::InventoryError;

/// A snapshot shared between the router's threads.
pub type SharedInventory = Arc<Inventory>;

/// What a tenant admin may do with a number's registered address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub set_address: bool,
    pub change_address: bool,
    pub delete_address: bool,
}

/// An emergency address: a civic address and, if known, its point.
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    pub civic: CivicAddress,
    /// Latitude and longitude in degrees (WGS 84).
    pub point: Option<(f64, f64)>,
}

impl Address {
    /// The country of the civic address, upper case.
    pub fn country(&self) -> Option<String> {
        self.civic
            .get("country")
            .map(|c| c.trim().to_ascii_uppercase())
    }
}

/// One number of the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberEntry {
    /// E.164, with the `+`.
    pub number: String,
    pub tenant: String,
    /// ISO 3166-1 alpha-2 of the number's service.
    pub country: String,
    pub common_area_phone: bool,
    pub capabilities: Capabilities,
    /// The tenant location the number is assigned to, if any.
    pub location_id: Option<String>,
    pub registered: Option<Address>,
}

/// An emergency location a tenant defined in advance (a building, a floor).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLocation {
    pub id: String,
    pub address: Address,
}

/// What changed between two snapshots: numbers added or replaced (whole
/// entries, their registered address resolved), numbers removed, tenant
/// locations added or replaced, and tenant locations removed (tenant, id).
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub numbers: Vec<NumberEntry>,
    pub removed: Vec<String>,
    pub locations: Vec<(String, TenantLocation)>,
    pub removed_locations: Vec<(String, String)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
            && self.removed.is_empty()
            && self.locations.is_empty()
            && self.removed_locations.is_empty()
    }
}

/// An immutable inventory snapshot.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    numbers: HashMap<String, NumberEntry>,
    locations: HashMap<String, Vec<TenantLocation>>,
}

impl Inventory {
    pub fn empty() -> Inventory {
        Inventory::default()
    }

    /// The entry of an E.164 number.
    pub fn get(&self, number: &str) -> Option<&NumberEntry> {
        self.numbers.get(number)
    }

    /// The locations a tenant defined.
    pub fn tenant_locations(&self, tenant: &str) -> &[TenantLocation] {
        self.locations.get(tenant).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    /// Every number, in no particular order.
    pub fn numbers(&self) -> impl Iterator<Item = &NumberEntry> {
        self.numbers.values()
    }

    /// Adds or replaces a number (building a snapshot).
    pub fn insert(&mut self, entry: NumberEntry) {
        self.numbers.insert(entry.number.clone(), entry);
    }

    /// A new snapshot: this one with `changes` applied. Numbers and
    /// locations the changes do not name are shared with this snapshot,
    /// not copied.
    pub fn with_changes(&self, changes: &Changes) -> Inventory {
        let mut next = self.clone();
        for n in &changes.removed {
            next.numbers.remove(n);
        }
        for e in &changes.numbers {
            next.numbers.insert(e.number.clone(), e.clone());
        }
        for (tenant, id) in &changes.removed_locations {
            if let Some(ls) = next.locations.get_mut(tenant) {
                ls.retain(|l| &l.id != id);
            }
        }
        for (tenant, l) in &changes.locations {
            let ls = next.locations.entry(tenant.clone()).or_default();
            match ls.iter_mut().find(|x| x.id == l.id) {
                Some(x) => *x = l.clone(),
                None => ls.push(l.clone()),
            }
        }
        next
    }

    /// Adds a tenant-defined location (building a snapshot).
    pub fn add_location(&mut self, tenant: &str, location: TenantLocation) {
        self.locations
            .entry(tenant.to_string())
            .or_default()
            .push(location);
    }
}

/// Puts a dialed or presented number into E.164 form (`+` and 7 to 15
/// digits). `+...` and `00...` are international already; `context` (a
/// `phone-context` such as `+1`) or `country_code` (the calling code of the
/// caller's trunk, without `+`) make a national number international: a
/// leading trunk `0` is dropped, and in North America (`1`) a 10-digit
/// number gets the `1` and an 11-digit one starting with `1` keeps it.
pub fn normalize_e164(
    raw: &str,
    context: Option<&str>,
    country_code: Option<&str>,
) -> Option<String> {
    // Already E.164: the common case, one allocation.
    if let Some(d) = raw.strip_prefix('+') {
        if (7..=15).contains(&d.len())
            && !d.starts_with('0')
            && d.bytes().all(|b| b.is_ascii_digit())
        {
            return Some(raw.to_string());
        }
    }
    let mut digits = String::with_capacity(16);
    let mut plus = false;
    for (i, c) in raw.trim().chars().enumerate() {
        match c {
            '+' if i == 0 => plus = true,
            '0'..='9' => digits.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            _ => return None,
        }
    }
    let international = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else {
        let cc = context
            .and_then(|c| c.strip_prefix('+'))
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
            .or(country_code)?;
        if cc == "1" {
            match digits.len() {
                10 => format!("1{digits}"),
                11 if digits.starts_with('1') => digits,
                _ => return None,
            }
        } else {
            let national = digits.strip_prefix('0').unwrap_or(&digits);
            format!("{cc}{national}")
        }
    };
    let ok = (7..=15).contains(&international.len()) && !international.starts_with('0');
    ok.then(|| format!("+{international}"))
}

/// The caller's number in E.164 form: the first P-Asserted-Identity value
/// that is a telephone number, else From. A tel URI, or a sip URI whose
/// user part is a number (with or without `user=phone`).
/// `country_code` completes national numbers (see [`normalize_e164`]).
pub fn caller_number(req: &Message, country_code: Option<&str>) -> Option<String> {
    req.list(HeaderName::PAssertedIdentity)
        .filter_map(NameAddr::parse)
        .chain(req.from())
        .find_map(|na| {
            let uri = na.uri()?;
            let digits = uri.phone_digits()?;
            let context = uri
                .phone_context()
                .and_then(|c| std::str::from_utf8(c).ok());
            normalize_e164(digits.as_str(), context, country_code)
        })
}

impl Address {
    /// `{"civic": {RFC 5139 keys}, "point": {"lat", "lon"}}`, as call
    /// records show it.
    pub fn to_json(&self) -> serde_json::Value {
        let civic: serde_json::Map<String, serde_json::Value> = self
            .civic
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let mut o = serde_json::json!({ "civic": civic });
        if let Some((lat, lon)) = self.point {
            o["point"] = serde_json::json!({"lat": lat, "lon": lon});
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn e164_forms() {
        let n = |raw, ctx, cc| normalize_e164(raw, ctx, cc);
        assert_eq!(
            n("+12125550142", None, None).as_deref(),
            Some("+12125550142")
        );
        assert_eq!(
            n("+1 (212) 555-0142", None, None).as_deref(),
            Some("+12125550142")
        );
        assert_eq!(
            n("00442079460018", None, None).as_deref(),
            Some("+442079460018")
        );
        assert_eq!(
            n("2125550142", None, Some("1")).as_deref(),
            Some("+12125550142")
        );
        assert_eq!(
            n("12125550142", None, Some("1")).as_deref(),
            Some("+12125550142")
        );
        assert_eq!(
            n("2125550142", Some("+1"), None).as_deref(),
            Some("+12125550142")
        );
        assert_eq!(
            n("02079460018", None, Some("44")).as_deref(),
            Some("+442079460018")
        );
        assert_eq!(n("2125550142", None, None), None);
        assert_eq!(n("555", None, Some("1")), None);
        assert_eq!(n("+1234", None, None), None);
        assert_eq!(n("+1212555014299999", None, None), None);
        assert_eq!(n("+1212*5550142", None, None), None);
    }

    fn msg(headers: &str) -> Message {
        let s = format!(
            "INVITE sip:911@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:911@h>\r\nCall-ID: n1\r\nCSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        crate::sip::parse_datagram(Bytes::from(s), &Default::default()).unwrap()
    }

    #[test]
    fn caller_from_pai_then_from() {
        let m = msg("From: <sip:+12125550142@example.com>;tag=1\r\nP-Asserted-Identity: <sip:alice@example.com>, <tel:+1-303-555-0117>\r\n");
        assert_eq!(caller_number(&m, None).as_deref(), Some("+13035550117"));
        let m = msg("From: <sip:+12125550142@example.com;user=phone>;tag=1\r\nP-Asserted-Identity: <sip:alice@example.com>\r\n");
        assert_eq!(caller_number(&m, None).as_deref(), Some("+12125550142"));
        let m = msg("From: \"Desk\" <sip:3035550117@example.com>;tag=1\r\n");
        assert_eq!(caller_number(&m, None), None);
        assert_eq!(
            caller_number(&m, Some("1")).as_deref(),
            Some("+13035550117")
        );
        let m = msg("From: <tel:3035550117;phone-context=+1>;tag=1\r\n");
        assert_eq!(caller_number(&m, None).as_deref(), Some("+13035550117"));
        let m = msg("From: <sip:anonymous@anonymous.invalid>;tag=1\r\n");
        assert_eq!(caller_number(&m, Some("1")), None);
    }

    fn entry(number: &str, tenant: &str, city: Option<&str>) -> NumberEntry {
        NumberEntry {
            number: number.into(),
            tenant: tenant.into(),
            country: "US".into(),
            common_area_phone: false,
            capabilities: Capabilities::default(),
            location_id: None,
            registered: city.map(|c| {
                let mut civic = CivicAddress::new();
                civic.push("country", "US");
                civic.push("A3", c);
                Address { civic, point: None }
            }),
        }
    }

    fn city(inv: &Inventory, number: &str) -> Option<String> {
        let a = inv.get(number)?.registered.as_ref()?;
        a.civic.get("A3").map(str::to_string)
    }

    #[test]
    fn changes_make_a_new_snapshot_and_leave_the_old_one_whole() {
        let mut old = Inventory::empty();
        old.insert(entry("+12125550100", "acme", Some("New York")));
        old.insert(entry("+12125550101", "acme", Some("New York")));
        old.insert(entry("+12125550102", "acme", None));
        let hq = TenantLocation {
            id: "hq".into(),
            address: entry("+1", "acme", Some("Denver")).registered.unwrap(),
        };
        old.add_location("acme", hq.clone());
        let changes = Changes {
            numbers: vec![
                entry("+12125550100", "acme", Some("Boston")),
                entry("+12125550199", "beta", Some("Miami")),
            ],
            removed: vec!["+12125550101".into(), "+19995550000".into()],
            locations: vec![(
                "beta".into(),
                TenantLocation {
                    id: "b1".into(),
                    ..hq.clone()
                },
            )],
            removed_locations: vec![("acme".into(), "hq".into())],
        };
        assert!(!changes.is_empty());
        let new = old.with_changes(&changes);
        assert_eq!(city(&new, "+12125550100").as_deref(), Some("Boston"));
        assert_eq!(city(&new, "+12125550199").as_deref(), Some("Miami"));
        assert!(new.get("+12125550101").is_none());
        assert!(new.get("+12125550102").is_some(), "untouched");
        assert_eq!(new.len(), 3);
        assert!(new.tenant_locations("acme").is_empty());
        assert_eq!(new.tenant_locations("beta")[0].id, "b1");
        // Calls routed on the old snapshot still see it as it was.
        assert_eq!(city(&old, "+12125550100").as_deref(), Some("New York"));
        assert!(old.get("+12125550101").is_some());
        assert_eq!(old.len(), 3);
        assert_eq!(old.tenant_locations("acme").len(), 1);
        assert!(Changes::default().is_empty());
    }
}
