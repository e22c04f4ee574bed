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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CivicAddress {
    lang: Option<String>,
    fields: Vec<(String, String)>,
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
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.fields.push((key.into(), value.into()));
    }

    /// The first value stored under `key` (case-sensitive: `"A1"`, `"cae:MP"`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// The fields in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for CivicAddress {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut c = CivicAddress::new();
        for (k, v) in iter {
            c.push(k, v);
        }
        c
    }
}

struct Fields<'a>(&'a [(String, String)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for CivicAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("lang", &self.lang)?;
        m.serialize_entry("fields", &Fields(&self.fields))?;
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
    for c in dom.children(i) {
        let key = match dom.ns(c) {
            ns if ns.is_civic() => dom.name(c).to_owned(),
            Ns::CivicExt => format!("{EXTENSION_PREFIX}:{}", dom.name(c)),
            _ => dom.clark(c),
        };
        let value = if dom.has_children(c) {
            dom.deep_text(c)
        } else {
            trim_xml(dom.text(c)).to_owned()
        };
        if !value.is_empty() {
            civic.fields.push((key, value));
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
