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

pub mod address_check;
pub mod checkpoint;
pub mod limits;
pub mod load;
pub mod number;
mod packed;
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

/// Encoded tenant location addresses, by interned tenant and location id.
type LocationCodes = HashMap<(u32, u32), u32>;

/// An immutable inventory snapshot, held compactly (see [`packed`]):
/// cloning one, or making one from another and a few changes, copies
/// almost nothing.
#[derive(Clone)]
pub struct Inventory {
    shards: Vec<Arc<packed::Shard>>,
    names: Arc<packed::Names>,
    /// Numbers the compact form cannot hold as they are (not E.164, or a
    /// country code that is not two letters): kept whole.
    odd: Arc<HashMap<String, NumberEntry>>,
    locations: Arc<HashMap<String, Vec<TenantLocation>>>,
    /// Encoded addresses many numbers share: their tenant locations'.
    /// Only ever added to, so that a number keeps the address it was
    /// given when its location moves.
    shared: Arc<Vec<Arc<[u8]>>>,
    /// Each tenant location's current entry in `shared`.
    location_codes: Arc<LocationCodes>,
    len: usize,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("numbers", &self.len)
            .field("tenants_with_locations", &self.locations.len())
            .finish_non_exhaustive()
    }
}

impl Default for Inventory {
    fn default() -> Inventory {
        let empty = Arc::new(packed::Shard::default());
        Inventory {
            shards: vec![empty; packed::SHARDS],
            names: Default::default(),
            odd: Default::default(),
            locations: Default::default(),
            shared: Default::default(),
            location_codes: Default::default(),
            len: 0,
        }
    }
}

impl Inventory {
    pub fn empty() -> Inventory {
        Inventory::default()
    }

    /// The entry of an E.164 number, unpacked.
    pub fn get(&self, number: &str) -> Option<NumberEntry> {
        match packed::key_of(number) {
            Some(key) => {
                let shard = &self.shards[packed::shard_of(key)];
                shard.get(key).map(|slot| self.unpack(shard, key, slot))
            }
            None => self.odd.get(number).cloned(),
        }
        .or_else(|| self.odd.get(number).cloned())
    }

    /// The locations a tenant defined.
    pub fn tenant_locations(&self, tenant: &str) -> &[TenantLocation] {
        self.locations.get(tenant).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every number, unpacked, in no particular order.
    pub fn numbers(&self) -> impl Iterator<Item = NumberEntry> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(key, slot)| self.unpack(s, key, slot)))
            .chain(self.odd.values().cloned())
    }

    /// Adds or replaces a number (building a snapshot).
    pub fn insert(&mut self, entry: NumberEntry) {
        let key = packed::key_of(&entry.number);
        let country = match entry.country.as_bytes() {
            &[a, b] => Some([a, b]),
            _ => None,
        };
        let (Some(key), Some(country)) = (key, country) else {
            self.remove(&entry.number);
            Arc::make_mut(&mut self.odd).insert(entry.number.clone(), entry);
            self.len += 1;
            return;
        };
        let (slot, own) = self.pack(&entry, country);
        if self.odd.contains_key(&entry.number) {
            Arc::make_mut(&mut self.odd).remove(&entry.number);
            self.len -= 1;
        }
        let shard = Arc::make_mut(&mut self.shards[packed::shard_of(key)]);
        if shard.insert(key, slot, own.as_deref()) {
            self.len += 1;
        }
    }

    /// Removes a number (building a snapshot); whether it was there.
    pub fn remove(&mut self, number: &str) -> bool {
        let removed = match packed::key_of(number) {
            Some(key) => {
                let i = packed::shard_of(key);
                self.shards[i].contains(key) && Arc::make_mut(&mut self.shards[i]).remove(key)
            }
            None => false,
        } || (self.odd.contains_key(number)
            && Arc::make_mut(&mut self.odd).remove(number).is_some());
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// A new snapshot: this one with `changes` applied. Only the shards
    /// holding the numbers the changes name are copied; the rest are
    /// shared with this snapshot, which stays as it was.
    pub fn with_changes(&self, changes: &Changes) -> Inventory {
        let mut next = self.clone();
        if !changes.removed_locations.is_empty() || !changes.locations.is_empty() {
            let locations = Arc::make_mut(&mut next.locations);
            for (tenant, id) in &changes.removed_locations {
                if let Some(ls) = locations.get_mut(tenant) {
                    ls.retain(|l| &l.id != id);
                }
            }
            for (tenant, l) in &changes.locations {
                let ls = locations.entry(tenant.clone()).or_default();
                match ls.iter_mut().find(|x| x.id == l.id) {
                    Some(x) => *x = l.clone(),
                    None => ls.push(l.clone()),
                }
            }
        }
        for n in &changes.removed {
            next.remove(n);
        }
        for e in &changes.numbers {
            next.insert(e.clone());
        }
        next
    }

    /// Adds a tenant-defined location (building a snapshot).
    pub fn add_location(&mut self, tenant: &str, location: TenantLocation) {
        Arc::make_mut(&mut self.locations)
            .entry(tenant.to_string())
            .or_default()
            .push(location);
    }

    /// An entry in its compact form (interning its names), and its own
    /// encoded address when it does not share one.
    fn pack(&mut self, e: &NumberEntry, country: [u8; 2]) -> (packed::Slot, Option<Vec<u8>>) {
        let tenant = self.intern(&e.tenant);
        let location = e
            .location_id
            .as_deref()
            .map_or(packed::NONE, |id| self.intern(id));
        let mut own = None;
        let address = match &e.registered {
            None => packed::NONE,
            Some(a) => match self.shared_code(a, &e.tenant, tenant, location) {
                Some(i) => i | packed::SHARED,
                None => {
                    own = Some(packed::encode_address(a));
                    packed::NONE
                }
            },
        };
        let c = e.capabilities;
        let flags = [
            (e.common_area_phone, packed::COMMON_AREA_PHONE),
            (c.set_address, packed::SET_ADDRESS),
            (c.change_address, packed::CHANGE_ADDRESS),
            (c.delete_address, packed::DELETE_ADDRESS),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit);
        let slot = packed::Slot {
            tenant,
            location,
            address,
            country,
            flags,
        };
        (slot, own)
    }

    fn intern(&mut self, name: &str) -> u32 {
        match self.names.find(name) {
            Some(i) => i,
            None => Arc::make_mut(&mut self.names).intern(name),
        }
    }

    /// The shared entry of `a` when it is the address of the number's
    /// tenant location (written to the shared addresses the first time).
    fn shared_code(
        &mut self,
        a: &Address,
        tenant_name: &str,
        tenant: u32,
        location: u32,
    ) -> Option<u32> {
        if location == packed::NONE {
            return None;
        }
        if let Some(&i) = self.location_codes.get(&(tenant, location)) {
            let same = self
                .shared
                .get(i as usize)
                .and_then(|code| packed::decode_address(code))
                .is_some_and(|known| &known == a);
            if same {
                return Some(i);
            }
        }
        let id = self.names.get(location);
        let at_location = self
            .tenant_locations(tenant_name)
            .iter()
            .any(|l| l.id == id && &l.address == a);
        if !at_location {
            return None;
        }
        let i = u32::try_from(self.shared.len())
            .ok()
            .filter(|i| i & packed::SHARED == 0)?;
        Arc::make_mut(&mut self.shared).push(packed::encode_address(a).into());
        Arc::make_mut(&mut self.location_codes).insert((tenant, location), i);
        Some(i)
    }

    fn unpack(&self, shard: &packed::Shard, key: u64, slot: &packed::Slot) -> NumberEntry {
        let f = |bit| slot.flags & bit != 0;
        let code = match slot.address {
            packed::NONE => None,
            i if i & packed::SHARED != 0 => self
                .shared
                .get((i & !packed::SHARED) as usize)
                .map(|c| &c[..]),
            offset => shard.own_address(offset),
        };
        NumberEntry {
            number: format!("+{key}"),
            tenant: self.names.get(slot.tenant).to_string(),
            country: String::from_utf8_lossy(&slot.country).into_owned(),
            common_area_phone: f(packed::COMMON_AREA_PHONE),
            capabilities: Capabilities {
                set_address: f(packed::SET_ADDRESS),
                change_address: f(packed::CHANGE_ADDRESS),
                delete_address: f(packed::DELETE_ADDRESS),
            },
            location_id: (slot.location != packed::NONE)
                .then(|| self.names.get(slot.location).to_string()),
            registered: code.and_then(packed::decode_address),
        }
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
        let a = inv.get(number)?.registered?;
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

    #[test]
    fn entries_come_back_as_they_went_in() {
        let mut civic = CivicAddress::new();
        civic.set_lang(Some("de".into()));
        civic.push("country", "DE");
        civic.push("A3", "München");
        civic.push("cae:XYZ", "ext value");
        civic.push("{urn:example}Other", "");
        civic.push("HNO", "12");
        let a = Address {
            civic,
            point: Some((48.137, 11.575)),
        };
        let whole = NumberEntry {
            number: "+498912345678".into(),
            tenant: "münchen-gmbh".into(),
            country: "DE".into(),
            common_area_phone: true,
            capabilities: Capabilities {
                set_address: true,
                change_address: false,
                delete_address: true,
            },
            location_id: Some("hq".into()),
            registered: Some(a.clone()),
        };
        // Not E.164, or a country that is not two letters: kept whole.
        let odd = NumberEntry {
            number: "12345".into(),
            ..whole.clone()
        };
        let odd_country = NumberEntry {
            number: "+498912345679".into(),
            country: "DEU".into(),
            ..whole.clone()
        };
        let mut inv = Inventory::empty();
        for e in [&whole, &odd, &odd_country] {
            inv.insert(e.clone());
        }
        assert_eq!(inv.len(), 3);
        for e in [&whole, &odd, &odd_country] {
            assert_eq!(inv.get(&e.number).as_ref(), Some(e));
        }
        assert_eq!(inv.get("+498912345678").unwrap().registered, Some(a));
        let mut all: Vec<NumberEntry> = inv.numbers().collect();
        all.sort_by(|x, y| x.number.cmp(&y.number));
        assert_eq!(all, [whole.clone(), odd_country.clone(), odd.clone()]);
        // A number moving between the two forms is counted once.
        inv.insert(NumberEntry {
            country: "DE".into(),
            ..odd_country.clone()
        });
        assert_eq!(inv.len(), 3);
        inv.insert(odd_country.clone());
        assert_eq!(inv.len(), 3);
        assert_eq!(inv.get("+498912345679").as_ref(), Some(&odd_country));
        let gone = inv.with_changes(&Changes {
            removed: vec![odd.number.clone(), odd_country.number.clone()],
            ..Changes::default()
        });
        assert_eq!(gone.len(), 1);
        assert_eq!(gone.numbers().count(), 1);
        assert_eq!(inv.len(), 3);
    }

    #[test]
    fn numbers_at_their_locations_address_share_it_and_keep_their_own() {
        let mut inv = Inventory::empty();
        let hq = entry("+1", "acme", Some("Denver")).registered.unwrap();
        inv.add_location(
            "acme",
            TenantLocation {
                id: "hq".into(),
                address: hq.clone(),
            },
        );
        let at_hq = |n: &str, a: Option<&str>| NumberEntry {
            location_id: Some("hq".into()),
            ..entry(n, "acme", a)
        };
        inv.insert(at_hq("+13035550100", Some("Denver")));
        inv.insert(at_hq("+13035550101", Some("Denver")));
        inv.insert(at_hq("+13035550102", Some("Aurora")));
        let slot = |inv: &Inventory, n: &str| {
            let key = packed::key_of(n).unwrap();
            *inv.shards[packed::shard_of(key)].get(key).unwrap()
        };
        let (a, b) = (slot(&inv, "+13035550100"), slot(&inv, "+13035550101"));
        assert_eq!(a.address, b.address);
        assert_ne!(a.address & packed::SHARED, 0, "one copy, the location's");
        assert_eq!(slot(&inv, "+13035550102").address & packed::SHARED, 0);
        assert_eq!(city(&inv, "+13035550102").as_deref(), Some("Aurora"));
        // The location moves: a number keeps the address it was given until
        // a change names it (the database resolves which numbers follow).
        let moved = TenantLocation {
            id: "hq".into(),
            address: entry("+1", "acme", Some("Boulder")).registered.unwrap(),
        };
        let next = inv.with_changes(&Changes {
            locations: vec![("acme".into(), moved.clone())],
            numbers: vec![at_hq("+13035550100", Some("Boulder"))],
            ..Changes::default()
        });
        assert_eq!(city(&next, "+13035550100").as_deref(), Some("Boulder"));
        assert_eq!(city(&next, "+13035550101").as_deref(), Some("Denver"));
        assert_eq!(next.tenant_locations("acme")[0], moved);
        assert_eq!(city(&inv, "+13035550100").as_deref(), Some("Denver"));
    }

    #[test]
    fn only_e164_numbers_have_a_compact_key() {
        assert_eq!(packed::key_of("+12125550142"), Some(12_125_550_142));
        assert_eq!(
            packed::key_of("+999999999999999"),
            Some(999_999_999_999_999)
        );
        for bad in [
            "",
            "+",
            "+0123",
            "12125550142",
            "+1212555014x",
            "+1234567890123456",
        ] {
            assert_eq!(packed::key_of(bad), None, "{bad}");
        }
    }
}
