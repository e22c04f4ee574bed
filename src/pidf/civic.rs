//! Civic addresses (RFC 5139), with RFC 6848 extensions.
//!
//! Keys of [`CivicAddress`]:
//! - an element of the civic namespace (RFC 5139 `...:civicAddr`, or RFC
//!   4119's `...:civicLoc`) is keyed by its local name: `country`, `A1`,
//!   `HNO`, ... Unknown names in that namespace are kept the same way;
//! - an element of the RFC 6848 extension namespace
//!   (`urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr:ext`) is keyed
//!   `cae:NAME`, the prefix that RFC 6848 itself uses, whatever prefix the
//!   document chose;
//! - any other element is keyed `{namespace-uri}NAME` (Clark notation), which
//!   is stable and cannot collide with the two forms above.
//!
//! Values are trimmed of leading and trailing XML whitespace (RFC 5139 s3.6);
//! an element that is empty after trimming is dropped. An extension element
//! with child elements gets the trimmed texts of all its descendants joined
//! by single spaces.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::dom::{trim_xml, Attr, Dom, Ns};
use super::PidfError;

/// The elements RFC 5139 defines, in its order.
pub const RFC5139_ELEMENTS: &[&str] = &[
    "country", "A1", "A2", "A3", "A4", "A5", "A6", "LMK", "LOC", "FLR", "NAM", "PC", "PRM", "PRD",
    "RD", "STS", "POD", "POM", "RDSEC", "RDBR", "RDSUBBR", "HNO", "HNS", "BLD", "UNIT", "ROOM",
    "SEAT", "PLC", "PCN", "POBOX", "ADDCODE",
];

/// The RFC 6848 civic extension namespace and the key prefix used for it.
pub const EXTENSION_NS: &str = super::dom::NS_CIVIC_EXT;
pub const EXTENSION_PREFIX: &str = "cae";

/// A civic address: ordered `(key, value)` pairs plus the `xml:lang` it was
/// written in. Serialised as `{"lang": ..., "fields": {key: value, ...}}` in
/// document order.
///
/// Keys: the local name for RFC 5139 (and RFC 4119 civicLoc) elements
/// (`"A1"`, `"HNO"`); `cae:NAME` for RFC 6848 extension elements
/// ([`EXTENSION_NS`]), whatever prefix the document used; `{uri}NAME` for an
/// element of any other namespace. Values are trimmed (RFC 5139 s3.6) and
/// empty ones dropped.
#[derive(Clone, Default)]
pub struct CivicAddress {
    lang: Option<String>,
    /// Every key and value, back to back: an address is read on every
    /// emergency call and copied into its details, and one string for all
    /// its fields keeps that to two allocations instead of two per field.
    text: String,
    fields: Vec<Field>,
}

/// One field: its key is `text[start..split]`, its value `text[split..end]`.
#[derive(Clone, Copy)]
struct Field {
    start: usize,
    split: usize,
    end: usize,
}

impl CivicAddress {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `xml:lang` of the address, if given.
    pub fn lang(&self) -> Option<&str> {
        self.lang.as_deref()
    }

    pub fn set_lang(&mut self, lang: Option<String>) {
        self.lang = lang;
    }

    /// Appends a field; keys follow the module's keying rules.
    pub fn push(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let start = self.text.len();
        self.text.push_str(key.as_ref());
        let split = self.text.len();
        self.text.push_str(value.as_ref());
        self.fields.push(Field {
            start,
            split,
            end: self.text.len(),
        });
    }

    /// The first value stored under `key` (case-sensitive: `"A1"`, `"cae:MP"`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// The fields in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|f| (&self.text[f.start..f.split], &self.text[f.split..f.end]))
    }
}

impl PartialEq for CivicAddress {
    fn eq(&self, other: &Self) -> bool {
        self.lang == other.lang && self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for CivicAddress {}

impl std::fmt::Debug for CivicAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Fields<'a>(&'a CivicAddress);
        impl std::fmt::Debug for Fields<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list().entries(self.0.iter()).finish()
            }
        }
        f.debug_struct("CivicAddress")
            .field("lang", &self.lang)
            .field("fields", &Fields(self))
            .finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for CivicAddress {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut c = CivicAddress::new();
        for (k, v) in iter {
            c.push(k, v);
        }
        c
    }
}

struct Fields<'a>(&'a CivicAddress);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for CivicAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("lang", &self.lang)?;
        m.serialize_entry("fields", &Fields(self))?;
        m.end()
    }
}

/// Reads the `civicAddress` element `i`.
pub(crate) fn parse_civic(dom: &Dom<'_>, i: usize) -> Result<CivicAddress, PidfError> {
    let mut civic = CivicAddress::new();
    civic.lang = dom
        .attr(i, Attr::Lang)
        .map(trim_xml)
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    // Sized for the common case of plain civic elements in one go.
    let (mut count, mut bytes) = (0, 0);
    for c in dom.children(i) {
        count += 1;
        bytes += dom.name(c).len() + dom.text(c).len();
    }
    civic.fields.reserve_exact(count);
    civic.text.reserve_exact(bytes);
    for c in dom.children(i) {
        let start = civic.text.len();
        match dom.ns(c) {
            ns if ns.is_civic() => civic.text.push_str(dom.name(c)),
            Ns::CivicExt => {
                civic.text.push_str(EXTENSION_PREFIX);
                civic.text.push(':');
                civic.text.push_str(dom.name(c));
            }
            _ => dom.push_clark(c, &mut civic.text),
        }
        let split = civic.text.len();
        if dom.has_children(c) {
            dom.push_deep_text(c, &mut civic.text);
        } else {
            civic.text.push_str(trim_xml(dom.text(c)));
        }
        if civic.text.len() == split {
            // Empty after trimming: dropped, key included.
            civic.text.truncate(start);
        } else {
            civic.fields.push(Field {
                start,
                split,
                end: civic.text.len(),
            });
        }
    }
    if civic.is_empty() {
        return Err(PidfError::EmptyCivic);
    }
    Ok(civic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_keep_order_and_first_value() {
        let c: CivicAddress = [("country", "US"), ("A1", "CA"), ("A1", "NV")]
            .into_iter()
            .collect();
        assert_eq!(c.get("A1"), Some("CA"));
        assert_eq!(c.get("a1"), None);
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["country", "A1", "A1"]
        );
        assert!(CivicAddress::new().is_empty());
    }

    #[test]
    fn serialises_as_lang_and_ordered_fields() {
        let mut c: CivicAddress = [("country", "AU"), ("cae:MP", "248")].into_iter().collect();
        c.set_lang(Some("en-AU".into()));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"lang":"en-AU","fields":{"country":"AU","cae:MP":"248"}}"#
        );
    }

    #[test]
    fn rfc5139_list_is_complete() {
        assert_eq!(RFC5139_ELEMENTS.len(), 31);
        for k in ["PRM", "POM", "RDSEC", "RDSUBBR", "SEAT", "ADDCODE", "PCN"] {
            assert!(RFC5139_ELEMENTS.contains(&k), "{k}");
        }
    }
}
