//! How a snapshot holds millions of numbers: compact entries in shards that
//! snapshots share.
//!
//! - A number is its E.164 digits as an integer (the `+` and the length
//!   follow from it: E.164 numbers never start with 0).
//! - Tenant names and location ids are interned: an entry holds their
//!   index.
//! - A registered address is encoded into one byte string
//!   ([`encode_address`]); the numbers whose address is their tenant
//!   location's share its encoding, and numbers written one after the
//!   other with the same address share one.
//! - The entries are spread over [`SHARDS`] hash tables by number. A
//!   snapshot made from the last one and a few changes copies only the
//!   shards the changes touch; every other shard is shared, so a change
//!   costs microseconds and no memory beyond its shards, and calls routed
//!   on the last snapshot keep it whole.
//!
//! Why not a bounded cache with the database behind it: a call must never
//! wait on the database, and a cache miss would be exactly that.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pidf::{CivicAddress, RFC5139_ELEMENTS};

use super::Address;

/// Shards per snapshot: a change copies one, about 1/4096 of the numbers.
pub(super) const SHARDS: usize = 4096;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// One number, packed: 16 bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) tenant: u32,
    /// Interned location id; [`NONE`] when the number has none.
    pub(super) location: u32,
    /// Its registered address: [`NONE`]; or, with [`SHARED`] set, an index
    /// into the snapshot's shared addresses (its tenant location's); or
    /// else an offset into its shard's arena.
    pub(super) address: u32,
    pub(super) country: [u8; 2],
    pub(super) flags: u8,
}

pub(super) const NONE: u32 = u32::MAX;
pub(super) const SHARED: u32 = 1 << 31;

pub(super) const COMMON_AREA_PHONE: u8 = 1;
pub(super) const SET_ADDRESS: u8 = 2;
pub(super) const CHANGE_ADDRESS: u8 = 4;
pub(super) const DELETE_ADDRESS: u8 = 8;

/// A shard: numbers by their E.164 integer, and the addresses of its own
/// numbers back to back (each a 2-byte length and its encoding), so that
/// an address costs its bytes and no allocation of its own.
#[derive(Debug, Default)]
pub(super) struct Shard {
    map: Map<u64, Slot>,
    arena: Vec<u8>,
}

impl Shard {
    pub(super) fn get(&self, key: u64) -> Option<&Slot> {
        self.map.get(&key)
    }

    pub(super) fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    /// Whether it was there. Its address stays in the arena until the
    /// shard is next copied.
    pub(super) fn remove(&mut self, key: u64) -> bool {
        self.map.remove(&key).is_some()
    }

    /// Adds or replaces a number, with its own encoded address when
    /// `own`; whether it is new.
    pub(super) fn insert(&mut self, key: u64, mut slot: Slot, own: Option<&[u8]>) -> bool {
        if let Some(code) = own {
            slot.address = self.push(code);
        }
        self.map.insert(key, slot).is_none()
    }

    fn push(&mut self, code: &[u8]) -> u32 {
        let at = u32::try_from(self.arena.len()).unwrap_or(NONE);
        debug_assert!(at < SHARED && code.len() <= usize::from(u16::MAX));
        self.arena
            .extend_from_slice(&(code.len() as u16).to_le_bytes());
        self.arena.extend_from_slice(code);
        at
    }

    /// The encoding at `offset` in the arena.
    pub(super) fn own_address(&self, offset: u32) -> Option<&[u8]> {
        let at = offset as usize;
        let len = u16::from_le_bytes(self.arena.get(at..at + 2)?.try_into().ok()?) as usize;
        self.arena.get(at + 2..at + 2 + len)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Slot)> {
        self.map.iter().map(|(&k, s)| (k, s))
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Its addresses, as [`Shard::from_parts`] takes them back.
    pub(super) fn arena(&self) -> &[u8] {
        &self.arena
    }

    /// A shard from its numbers and the arena their offsets point into.
    pub(super) fn from_parts(
        entries: impl ExactSizeIterator<Item = (u64, Slot)>,
        arena: Vec<u8>,
    ) -> Shard {
        let mut map = Map::with_capacity_and_hasher(entries.len(), Default::default());
        map.extend(entries);
        Shard { map, arena }
    }
}

/// A copy holds only the addresses its numbers still use: a shard is
/// copied when a change names one of its numbers, and the addresses that
/// change replaced are left behind then.
impl Clone for Shard {
    fn clone(&self) -> Shard {
        let mut copy = Shard {
            map: Map::with_capacity_and_hasher(self.map.len(), Default::default()),
            arena: Vec::with_capacity(self.arena.len()),
        };
        for (&key, slot) in &self.map {
            let own = (slot.address & SHARED == 0)
                .then(|| self.own_address(slot.address))
                .flatten();
            copy.insert(key, *slot, own);
        }
        copy
    }
}

/// The shard of a number.
pub(super) fn shard_of(key: u64) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// The integer of an E.164 number (`+` and 1 to 15 digits, the first not
/// 0); `None` for anything else.
pub(super) fn key_of(number: &str) -> Option<u64> {
    let digits = number.strip_prefix('+')?;
    if digits.is_empty()
        || digits.len() > 15
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}

/// Interned names (tenants, location ids), shared between snapshots and
/// copied only when a change brings a new one.
#[derive(Debug, Clone, Default)]
pub(super) struct Names {
    names: Vec<Arc<str>>,
    index: Map<Arc<str>, u32>,
}

impl Names {
    pub(super) fn get(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", |s| s)
    }

    pub(super) fn all(&self) -> &[Arc<str>] {
        &self.names
    }

    pub(super) fn find(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub(super) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(NONE - 1);
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.index.insert(name, i);
        i
    }
}

/// An address as one byte string: a flags byte (1: a point follows, 2: a
/// language follows), the point as two little-endian `f64`, the language
/// (a length byte and its bytes), then each field: a byte that is the
/// RFC 5139 element's index, or 0xff, a 2-byte length and the key for any
/// other key; then a 2-byte length and the value. About a third of the
/// memory of the parsed address, in one allocation.
pub(super) fn encode_address(a: &Address) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let lang = a.civic.lang().filter(|l| l.len() <= 255);
    out.push(u8::from(a.point.is_some()) | (u8::from(lang.is_some()) << 1));
    if let Some((lat, lon)) = a.point {
        out.extend_from_slice(&lat.to_le_bytes());
        out.extend_from_slice(&lon.to_le_bytes());
    }
    if let Some(l) = lang {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    for (k, v) in a.civic.iter() {
        match RFC5139_ELEMENTS.iter().position(|e| *e == k) {
            Some(i) => out.push(i as u8),
            None => {
                out.push(OTHER_KEY);
                push_text(&mut out, k);
            }
        }
        push_text(&mut out, v);
    }
    out
}

/// The marker of a key that is no RFC 5139 element.
const OTHER_KEY: u8 = 0xff;

/// A 2-byte length and the text (cut, on a character boundary, at 65,535
/// bytes; addresses in the inventory are held to 1,024).
fn push_text(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..n]);
}

/// The address [`encode_address`] wrote.
pub(super) fn decode_address(b: &[u8]) -> Option<Address> {
    let mut r = Reader(b);
    let flags = r.byte()?;
    let point = if flags & 1 != 0 {
        let lat = f64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let lon = f64::from_le_bytes(r.take(8)?.try_into().ok()?);
        Some((lat, lon))
    } else {
        None
    };
    let mut civic = CivicAddress::new();
    if flags & 2 != 0 {
        let n = r.byte()? as usize;
        civic.set_lang(Some(std::str::from_utf8(r.take(n)?).ok()?.to_string()));
    }
    while !r.0.is_empty() {
        let key = match r.byte()? {
            OTHER_KEY => r.text()?,
            i => RFC5139_ELEMENTS.get(usize::from(i))?,
        };
        civic.push(key, r.text()?);
    }
    Some(Address { civic, point })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(a)
    }

    fn text(&mut self) -> Option<&'a str> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Slot {
        Slot {
            tenant: 0,
            location: NONE,
            address: NONE,
            country: *b"US",
            flags: 0,
        }
    }

    #[test]
    fn a_copied_shard_keeps_only_the_addresses_its_numbers_use() {
        let mut shard = Shard::default();
        for k in 0..10u8 {
            shard.insert(u64::from(k), slot(), Some(&[k; 40]));
        }
        // Every number given a new address: the old ones stay behind.
        for k in 0..10u8 {
            shard.insert(u64::from(k), slot(), Some(&[k + 100; 40]));
        }
        shard.remove(9);
        assert_eq!(shard.arena.len(), 20 * 42);
        let copy = shard.clone();
        assert_eq!(copy.arena.len(), 9 * 42);
        for k in 0..9u8 {
            let s = copy.get(u64::from(k)).unwrap();
            assert_eq!(copy.own_address(s.address), Some(&[k + 100; 40][..]));
        }
        assert!(copy.get(9).is_none());
    }

    #[test]
    fn an_address_is_read_back_as_it_was_written() {
        let mut civic = CivicAddress::new();
        civic.push("country", "US");
        civic.push("{urn:x}Y", "z");
        civic.push("RD", "Main");
        let a = Address {
            civic,
            point: Some((40.7, -74.0)),
        };
        assert_eq!(decode_address(&encode_address(&a)), Some(a));
        // A cut encoding is no address, not a wrong one.
        let code = encode_address(&decode_address(&[0]).unwrap());
        assert_eq!(code, [0]);
        assert_eq!(decode_address(&[1, 0, 0]), None);
    }
}
