//! PIDF-LO location documents (RFC 4119, 5139, 5491).
//!
//! [`parse`] reads the location body of an emergency INVITE and returns every
//! location it holds plus the one to route on; [`civic_document`] writes a
//! document carrying a civic address. The module is sans-IO: bytes in, values
//! out, and every failure is a [`PidfError`] value.
//!
//! # What is read
//!
//! - A `presence` document (RFC 4119 / RFC 4479): each `tuple`, `dm:device`
//!   and `dm:person` child, with the `gp:geopriv` elements it holds (directly,
//!   or inside `status` as RFC 4119 places them). Each `geopriv` with a
//!   location becomes one [`LocationInfo`] with the element's `id`, the
//!   `gp:method`, `gp:usage-rules`, and the `timestamp` child (accepted in
//!   the PIDF or the data-model namespace, since clients mix them). A
//!   `method` in any namespace but geopriv's is not the geopriv method and is
//!   ignored, which leaves the location untrusted rather than guessed.
//! - A bare `civicAddress` or shape as the root element (RFC 5139 s5, RFC 6848
//!   examples): one location with [`Element::Bare`].
//! - Inside `location-info`: one civic address and/or one shape (RFC 5491
//!   s3.2 allows a shape plus a civic address, typically just the floor), the
//!   shape possibly wrapped in `gml:location` (RFC 4119, RFC 6442 examples),
//!   plus RFC 7459 `confidence` and RFC 5962 `Dynamic` next to it. Elements
//!   are matched by namespace URI only; prefixes are never looked at.
//!   Anything else (`provided-by`, extensions) is skipped.
//!
//! # The RFC 4119 civic namespace
//!
//! RFC 4119 defined civic addresses in `urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc`
//! with the same element names that RFC 5139 later put in `...:civicAddr`.
//! Documents from that era still circulate, so the old namespace is read
//! exactly like the new one (same keys, no renaming). Namespace URIs are
//! compared after trimming surrounding whitespace, which also reads the RFC
//! 4119 example that declares the namespace as `" urn:...:civicLoc"`: a URI
//! cannot contain a space, so no two distinct namespaces can become equal.
//!
//! # Selection (RFC 5491 s3.4)
//!
//! The location used is the first `device` that has one, else the first
//! `tuple`, else the first `person`. A `geopriv` whose location cannot be
//! used (unknown shape, empty civic address, coordinates out of range, ...)
//! is listed in [`Pidf::rejected`] and skipped; the document fails only when
//! no usable location remains, with the first such error or `no-location`.
//!
//! # Hostile input
//!
//! [`Limits`] caps the input size, nesting depth and element count; reading
//! stops at the first excess. No DTD is read and no entity other than the
//! five predefined ones and character references is expanded. Nothing
//! recurses. A document that is not UTF-8, or holds a character XML 1.0
//! forbids (a control character other than tab, CR and LF, U+FFFE, U+FFFF),
//! written out or as a reference, anywhere, is not well-formed: it gives no
//! location, as any other broken document.

pub(crate) mod civic;
pub(crate) mod dom;
pub(crate) mod geo;
mod write;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use smallvec::SmallVec;

pub use civic::{CivicAddress, EXTENSION_NS, EXTENSION_PREFIX, RFC5139_ELEMENTS};
pub use geo::{Geo, Position, Shape};
pub use write::civic_document;

use dom::{trim_xml, Attr, Dom, Ns, ROOT};

/// Where a location was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Element {
    /// PIDF `tuple` (RFC 3863 / RFC 4119).
    Tuple,
    /// Data-model `dm:device` (RFC 4479).
    Device,
    /// Data-model `dm:person` (RFC 4479).
    Person,
    /// The document's root is itself a `civicAddress` or a shape.
    Bare,
}

/// RFC 4119 / RFC 6772 basic usage rules, as far as they are given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageRules {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmission_allowed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_expiry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_ruleset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note_well: Option<String>,
}

/// RFC 5962 movement data given next to a shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Dynamic {
    /// Metres per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    /// Degrees clockwise from true north.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
}

/// One location: the content of one `geopriv` element with a location.
/// At least one of `civic` and `geo` is present.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LocationInfo {
    pub source: Element,
    /// The `id` attribute of the tuple, device or person.
    pub id: Option<String>,
    pub civic: Option<CivicAddress>,
    pub geo: Option<Geo>,
    /// `gp:method`, trimmed (e.g. `GPS`, `Manual`, `802.11`).
    pub method: Option<String>,
    /// The element's `timestamp`, as written.
    pub timestamp: Option<String>,
    /// `gp:usage-rules`, when the element is present (even empty).
    pub usage_rules: Option<UsageRules>,
    /// RFC 7459 confidence in percent, next to the shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<Dynamic>,
    /// `dm:deviceID` of a device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// A `geopriv` that held a location the parser could not use.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rejected {
    pub source: Element,
    pub id: Option<String>,
    pub error: PidfError,
}

/// A parsed PIDF-LO document. It always holds at least one location.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pidf {
    entity: Option<String>,
    locations: Vec<LocationInfo>,
    selected: usize,
    rejected: Vec<Rejected>,
}

impl Pidf {
    /// The `entity` attribute of `presence`.
    pub fn entity(&self) -> Option<&str> {
        self.entity.as_deref()
    }

    /// Every usable location, in document order.
    pub fn locations(&self) -> &[LocationInfo] {
        &self.locations
    }

    /// The location chosen by the RFC 5491 rule.
    pub fn selected(&self) -> &LocationInfo {
        &self.locations[self.selected]
    }

    /// The index of [`Pidf::selected`] in [`Pidf::locations`].
    pub fn selected_index(&self) -> usize {
        self.selected
    }

    /// Locations that were present but unusable.
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    /// The selected location and the rejected ones, taken out of the
    /// document without copying.
    pub fn into_selected(mut self) -> (LocationInfo, Vec<Rejected>) {
        (self.locations.swap_remove(self.selected), self.rejected)
    }
}

/// Why a document gave no usable location.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PidfError {
    #[error("not well-formed XML: {0}")]
    NotWellFormed(String),
    #[error("document larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("elements nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("more than {limit} elements")]
    TooManyElements { limit: usize },
    #[error("not a PIDF-LO document (root element {0})")]
    NotPidf(String),
    #[error("no location in the document")]
    NoLocation,
    #[error("unknown location shape {0}")]
    UnknownShape(String),
    #[error("civic address without any non-empty element")]
    EmptyCivic,
    #[error("coordinate out of range: {0}")]
    OutOfRange(String),
    #[error("invalid shape: {0}")]
    InvalidShape(String),
    #[error("unsupported coordinate reference system {0}")]
    UnsupportedCrs(String),
    #[error("unsupported unit of measure {0}")]
    UnsupportedUom(String),
}

impl PidfError {
    /// A short, stable, machine-readable name for the error.
    pub fn kind(&self) -> &'static str {
        match self {
            PidfError::NotWellFormed(_) => "not-well-formed",
            PidfError::TooLarge { .. } => "too-large",
            PidfError::TooDeep { .. } => "too-deep",
            PidfError::TooManyElements { .. } => "too-many-elements",
            PidfError::NotPidf(_) => "not-pidf",
            PidfError::NoLocation => "no-location",
            PidfError::UnknownShape(_) => "unknown-shape",
            PidfError::EmptyCivic => "empty-civic",
            PidfError::OutOfRange(_) => "out-of-range",
            PidfError::InvalidShape(_) => "invalid-shape",
            PidfError::UnsupportedCrs(_) => "unsupported-crs",
            PidfError::UnsupportedUom(_) => "unsupported-uom",
        }
    }
}

/// Serialised as `{"kind": ..., "message": ...}`.
impl Serialize for PidfError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("PidfError", 2)?;
        st.serialize_field("kind", self.kind())?;
        st.serialize_field("message", &self.to_string())?;
        st.end()
    }
}

/// Bounds on what [`parse_with`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Input size in bytes.
    pub max_bytes: usize,
    /// Nesting depth of elements (the root is depth 1).
    pub max_depth: usize,
    /// Number of elements in the whole document.
    pub max_elements: usize,
}

impl Default for Limits {
    /// 1 MiB, 64 levels, 10 000 elements: real PIDF-LO bodies are a few KiB,
    /// about 12 levels and well under 200 elements.
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 20,
            max_depth: 64,
            max_elements: 10_000,
        }
    }
}

/// Parses a PIDF-LO document with the default [`Limits`].
pub fn parse(xml: &[u8]) -> Result<Pidf, PidfError> {
    parse_with(xml, &Limits::default())
}

/// Parses a PIDF-LO document within `limits`.
pub fn parse_with(xml: &[u8], limits: &Limits) -> Result<Pidf, PidfError> {
    let dom = dom::read(xml, limits)?;
    let mut found = Found::default();
    let root_ns = dom.ns(ROOT);
    let entity;
    if dom.is(ROOT, Ns::Pidf, "presence") {
        entity = dom
            .attr(ROOT, Attr::Entity)
            .map(trim_xml)
            .map(str::to_owned);
        for c in dom.children(ROOT) {
            let source = match (dom.ns(c), dom.name(c)) {
                (Ns::Pidf, "tuple") => Element::Tuple,
                (Ns::DataModel, "device") => Element::Device,
                (Ns::DataModel, "person") => Element::Person,
                _ => continue,
            };
            read_holder(&dom, c, source, &mut found);
        }
    } else if (root_ns.is_civic() && dom.name(ROOT) == "civicAddress") || geo::is_shape_ns(root_ns)
    {
        entity = None;
        let mut parts = Parts::default();
        let r = if root_ns.is_civic() {
            civic::parse_civic(&dom, ROOT).map(|c| parts.civic = Some(c))
        } else {
            geo::parse_shape(&dom, ROOT).map(|g| parts.geo = Some(g))
        };
        match r {
            Ok(()) => found.push(Element::Bare, None, None, None, parts),
            Err(error) => found.rejected.push(Rejected {
                source: Element::Bare,
                id: None,
                error,
            }),
        }
    } else {
        return Err(PidfError::NotPidf(dom.clark(ROOT)));
    }
    let Found {
        locations,
        rejected,
    } = found;
    let order = [
        Element::Device,
        Element::Tuple,
        Element::Person,
        Element::Bare,
    ];
    let selected = order
        .iter()
        .find_map(|kind| locations.iter().position(|l| l.source == *kind));
    match selected {
        Some(selected) => Ok(Pidf {
            entity,
            locations,
            selected,
            rejected,
        }),
        None => Err(rejected
            .into_iter()
            .next()
            .map_or(PidfError::NoLocation, |r| r.error)),
    }
}

#[derive(Default)]
struct Found {
    locations: Vec<LocationInfo>,
    rejected: Vec<Rejected>,
}

/// What one `geopriv` yields besides the holder's own data.
#[derive(Default)]
struct Parts {
    civic: Option<CivicAddress>,
    geo: Option<Geo>,
    method: Option<String>,
    usage_rules: Option<UsageRules>,
    confidence: Option<f64>,
    dynamic: Option<Dynamic>,
}

impl Found {
    fn push(
        &mut self,
        source: Element,
        id: Option<String>,
        timestamp: Option<String>,
        device_id: Option<String>,
        p: Parts,
    ) {
        self.locations.push(LocationInfo {
            source,
            id,
            civic: p.civic,
            geo: p.geo,
            method: p.method,
            timestamp,
            usage_rules: p.usage_rules,
            confidence: p.confidence,
            dynamic: p.dynamic,
            device_id,
        });
    }
}

/// Reads a `tuple`, `dm:device` or `dm:person` element.
fn read_holder(dom: &Dom<'_>, e: usize, source: Element, found: &mut Found) {
    let id = dom.attr(e, Attr::Id).map(trim_xml).map(str::to_owned);
    let timestamp = dom.child_text(e, &[Ns::Pidf, Ns::DataModel], "timestamp");
    let device_id = match source {
        Element::Device => dom.child_text(e, &[Ns::DataModel], "deviceID"),
        _ => None,
    };
    // geopriv directly in the element (RFC 4479 style) or inside its
    // status (RFC 4119 style), in document order.
    let mut geoprivs: SmallVec<[usize; 4]> = SmallVec::new();
    for c in dom.children(e) {
        if dom.is(c, Ns::Geopriv, "geopriv") {
            geoprivs.push(c);
        } else if dom.is(c, Ns::Pidf, "status") {
            geoprivs.extend(
                dom.children(c)
                    .filter(|&g| dom.is(g, Ns::Geopriv, "geopriv")),
            );
        }
    }
    let last = geoprivs.len().saturating_sub(1);
    let (mut id, mut timestamp, mut device_id) = (id, timestamp, device_id);
    for (n, g) in geoprivs.into_iter().enumerate() {
        match read_geopriv(dom, g) {
            // The last location takes the holder's values, the others copies.
            Ok(Some(parts)) if n == last => {
                found.push(source, id.take(), timestamp.take(), device_id.take(), parts)
            }
            Ok(Some(parts)) => found.push(
                source,
                id.clone(),
                timestamp.clone(),
                device_id.clone(),
                parts,
            ),
            Ok(None) => {}
            Err(error) => found.rejected.push(Rejected {
                source,
                id: id.clone(),
                error,
            }),
        }
    }
}

/// Reads one `geopriv`; `Ok(None)` when it carries no location at all.
fn read_geopriv(dom: &Dom<'_>, g: usize) -> Result<Option<Parts>, PidfError> {
    let Some(li) = dom.child(g, &[Ns::Geopriv], "location-info") else {
        return Ok(None);
    };
    let mut parts = Parts {
        method: dom.child_text(g, &[Ns::Geopriv], "method"),
        usage_rules: dom
            .child(g, &[Ns::Geopriv], "usage-rules")
            .map(|u| usage_rules(dom, u)),
        ..Parts::default()
    };
    let mut unrecognised = None;
    for c in dom.children(li) {
        let ns = dom.ns(c);
        if ns.is_civic() && dom.name(c) == "civicAddress" {
            if parts.civic.is_none() {
                parts.civic = Some(civic::parse_civic(dom, c)?);
            }
        } else if ns.is_gml() && dom.name(c) == "location" {
            // RFC 4119's wrapper around the shape.
            for s in dom.children(c) {
                take_shape(dom, s, &mut parts.geo)?;
            }
        } else if geo::is_shape_ns(ns) {
            take_shape(dom, c, &mut parts.geo)?;
        } else if dom.is(c, Ns::Confidence, "confidence") {
            parts.confidence = geo::number(dom.text(c)).filter(|v| (0.0..=100.0).contains(v));
        } else if dom.is(c, Ns::Dynamic, "Dynamic") {
            parts.dynamic = Some(Dynamic {
                speed_mps: dom
                    .child(c, &[Ns::Dynamic], "speed")
                    .and_then(|s| geo::number(dom.text(s))),
                heading_deg: dom
                    .child(c, &[Ns::Dynamic], "heading")
                    .and_then(|s| geo::number(dom.text(s))),
            });
        } else if unrecognised.is_none() {
            unrecognised = Some(dom.clark(c));
        }
    }
    if parts.civic.is_none() && parts.geo.is_none() {
        // Something was there, but nothing that is a location we know.
        return match unrecognised {
            Some(what) => Err(PidfError::UnknownShape(what)),
            None => Ok(None),
        };
    }
    Ok(Some(parts))
}

/// Parses shape `s` into `slot` unless a shape was already taken: RFC 5491
/// allows one shape per `location-info`, and the first one is used.
fn take_shape(dom: &Dom<'_>, s: usize, slot: &mut Option<Geo>) -> Result<(), PidfError> {
    if slot.is_none() {
        *slot = Some(geo::parse_shape(dom, s)?);
    }
    Ok(())
}

fn usage_rules(dom: &Dom<'_>, u: usize) -> UsageRules {
    // RFC 4119 put these elements in the geopriv namespace; RFC 6772 moved
    // them to basicPolicy. Both are read.
    let ns = [Ns::BasicPolicy, Ns::Geopriv];
    UsageRules {
        retransmission_allowed: dom.child(u, &ns, "retransmission-allowed").and_then(|c| {
            match trim_xml(dom.text(c)) {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            }
        }),
        retention_expiry: dom.child_text(u, &ns, "retention-expiry"),
        external_ruleset: dom.child_text(u, &ns, "external-ruleset"),
        note_well: dom.child_text(u, &ns, "note-well"),
    }
}

#[cfg(test)]
mod tests;
