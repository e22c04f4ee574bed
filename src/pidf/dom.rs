//! Bounded, namespace-aware reading of a document into a flat element table.
//!
//! The table holds one [`Node`] per element in document order (pre-order), so
//! the descendants of node `i` are exactly the nodes `i + 1 .. nodes[i].end`.
//! Walking children or a whole subtree is then a loop over indices: nothing
//! downstream needs recursion. Reading enforces [`Limits`] on the input size,
//! the nesting depth and the element count before anything is stored.
//!
//! Text stays borrowed from the input where it comes in one piece; only text
//! split by entity or character references, CDATA sections or comments is
//! copied. Entity references other than the five predefined ones and character
//! references are refused: a DTD is never read, so nothing can expand.
//!
//! The whole input is checked first to be UTF-8 made only of characters XML
//! 1.0 allows ([`check_chars`]), and so is every character a reference
//! stands for, in text and in attribute values: a document with a NUL or
//! another control character in it is not well-formed, so it is no location.

use std::borrow::Cow;
use std::collections::HashMap;

use quick_xml::encoding::Decoder;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::Reader;
use smallvec::SmallVec;

use super::{Limits, PidfError};

/// The namespaces the parser recognises, resolved from each element's URI.
///
/// Comparison is on the URI with surrounding XML whitespace removed (a URI
/// cannot contain whitespace, so this can never make two distinct namespaces
/// equal; it does let `xmlns:cl=" urn:...:civicLoc"` from the RFC 4119 example
/// resolve).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ns {
    /// No namespace at all (no default namespace in scope).
    None,
    Pidf,
    DataModel,
    Geopriv,
    BasicPolicy,
    Civic,
    /// RFC 4119's civic namespace, replaced by [`Ns::Civic`] in RFC 5139.
    CivicLegacy,
    /// RFC 6848 civic extensions.
    CivicExt,
    Gml,
    /// The GML 3.0 namespace used by the RFC 4119 examples.
    GmlLegacy,
    GeoShape,
    Confidence,
    Dynamic,
    /// LoST (RFC 5222), read by `crate::lost`.
    Lost,
    /// Any other namespace: index into [`Dom::other_ns`].
    Other(u32),
}

impl Ns {
    pub(crate) fn is_gml(self) -> bool {
        matches!(self, Ns::Gml | Ns::GmlLegacy)
    }

    pub(crate) fn is_civic(self) -> bool {
        matches!(self, Ns::Civic | Ns::CivicLegacy)
    }
}

pub(crate) const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
pub(crate) const NS_DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
pub(crate) const NS_GEOPRIV: &str = "urn:ietf:params:xml:ns:pidf:geopriv10";
pub(crate) const NS_BASIC_POLICY: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy";
pub(crate) const NS_CIVIC: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr";
pub(crate) const NS_CIVIC_LEGACY: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc";
pub(crate) const NS_CIVIC_EXT: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr:ext";
pub(crate) const NS_GML: &str = "http://www.opengis.net/gml";
pub(crate) const NS_GML_LEGACY: &str = "urn:opengis:specification:gml:schema-xsd:feature:v3.0";
pub(crate) const NS_GEOSHAPE: &str = "http://www.opengis.net/pidflo/1.0";
pub(crate) const NS_CONFIDENCE: &str = "urn:ietf:params:xml:ns:geopriv:conf";
pub(crate) const NS_DYNAMIC: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:dynamic";
pub(crate) const NS_LOST: &str = "urn:ietf:params:xml:ns:lost1";

const KNOWN: &[(&str, Ns)] = &[
    (NS_PIDF, Ns::Pidf),
    (NS_DATA_MODEL, Ns::DataModel),
    (NS_GEOPRIV, Ns::Geopriv),
    (NS_BASIC_POLICY, Ns::BasicPolicy),
    (NS_CIVIC, Ns::Civic),
    (NS_CIVIC_LEGACY, Ns::CivicLegacy),
    (NS_CIVIC_EXT, Ns::CivicExt),
    (NS_GML, Ns::Gml),
    (NS_GML_LEGACY, Ns::GmlLegacy),
    (NS_GEOSHAPE, Ns::GeoShape),
    (NS_CONFIDENCE, Ns::Confidence),
    (NS_DYNAMIC, Ns::Dynamic),
    (NS_LOST, Ns::Lost),
];

/// The attributes the parser reads; all others are checked for syntax only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attr {
    Id,
    Entity,
    SrsName,
    SrsDimension,
    Uom,
    Lang,
    // The attributes of LoST (RFC 5222) documents.
    Expires,
    LastUpdated,
    Source,
    SourceId,
    Target,
    Message,
    Profile,
    Key,
    ServiceBoundary,
    Recursive,
    ValidateLocation,
}

impl Attr {
    fn from_key(key: &[u8]) -> Option<Attr> {
        // Unprefixed attributes have no namespace; `xml:` is bound to the XML
        // namespace by definition, so its prefix is not a choice of the author.
        Some(match key {
            b"id" => Attr::Id,
            b"entity" => Attr::Entity,
            b"srsName" => Attr::SrsName,
            b"srsDimension" => Attr::SrsDimension,
            b"uom" => Attr::Uom,
            b"xml:lang" => Attr::Lang,
            b"expires" => Attr::Expires,
            b"lastUpdated" => Attr::LastUpdated,
            b"source" => Attr::Source,
            b"sourceId" => Attr::SourceId,
            b"target" => Attr::Target,
            b"message" => Attr::Message,
            b"profile" => Attr::Profile,
            b"key" => Attr::Key,
            b"serviceBoundary" => Attr::ServiceBoundary,
            b"recursive" => Attr::Recursive,
            b"validateLocation" => Attr::ValidateLocation,
            _ => return None,
        })
    }
}

/// One element.
#[derive(Debug)]
pub(crate) struct Node<'i> {
    pub(crate) ns: Ns,
    /// The local name: `Dom::strings[name.0..name.1]`.
    name: (usize, usize),
    /// This element's entries in [`Dom::attrs`]: `attrs.0 .. attrs.1`.
    attrs: (usize, usize),
    /// The element's own character data (not its descendants'), with
    /// whitespace-only pieces before the first real character dropped.
    text: Cow<'i, str>,
    /// One past the index of the last descendant.
    end: usize,
}

/// A recognised attribute of some element: its value is
/// `Dom::strings[start..end]`.
#[derive(Debug)]
struct AttrValue {
    key: Attr,
    start: usize,
    end: usize,
}

/// All elements of a document, root first.
///
/// Element names and the values of the attributes that are read share one
/// string, so a document costs a handful of allocations however many
/// elements it has.
#[derive(Debug)]
pub(crate) struct Dom<'i> {
    nodes: Vec<Node<'i>>,
    attrs: Vec<AttrValue>,
    strings: String,
    other_ns: Vec<String>,
}

pub(crate) const ROOT: usize = 0;

impl<'i> Dom<'i> {
    pub(crate) fn ns(&self, i: usize) -> Ns {
        self.nodes[i].ns
    }

    pub(crate) fn name(&self, i: usize) -> &str {
        let (start, end) = self.nodes[i].name;
        &self.strings[start..end]
    }

    /// Whether node `i` is the element `name` in namespace `ns`.
    pub(crate) fn is(&self, i: usize, ns: Ns, name: &str) -> bool {
        self.nodes[i].ns == ns && self.name(i) == name
    }

    pub(crate) fn attr(&self, i: usize, key: Attr) -> Option<&str> {
        let (start, end) = self.nodes[i].attrs;
        self.attrs[start..end]
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| self.strings.get(a.start..a.end))
    }

    /// The element's own text, untrimmed.
    pub(crate) fn text(&self, i: usize) -> &str {
        &self.nodes[i].text
    }

    pub(crate) fn has_children(&self, i: usize) -> bool {
        self.nodes[i].end > i + 1
    }

    /// The direct children of `i`, in document order.
    pub(crate) fn children(&self, i: usize) -> Children<'_, 'i> {
        Children {
            dom: self,
            next: i + 1,
            end: self.nodes[i].end,
        }
    }

    /// The first child of `i` that is `name` in one of `ns`.
    pub(crate) fn child(&self, i: usize, ns: &[Ns], name: &str) -> Option<usize> {
        self.children(i)
            .find(|&c| ns.contains(&self.nodes[c].ns) && self.name(c) == name)
    }

    /// The trimmed text of the first such child, if it is not empty.
    pub(crate) fn child_text(&self, i: usize, ns: &[Ns], name: &str) -> Option<String> {
        self.child(i, ns, name)
            .map(|c| trim_xml(self.text(c)))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    /// Appends the trimmed texts of `i` and all its descendants to `out`,
    /// joined by one space.
    pub(crate) fn push_deep_text(&self, i: usize, out: &mut String) {
        let mut first = true;
        for node in &self.nodes[i..self.nodes[i].end] {
            let t = trim_xml(&node.text);
            if t.is_empty() {
                continue;
            }
            if !first {
                out.push(' ');
            }
            first = false;
            out.push_str(t);
        }
    }

    /// The namespace URI of node `i` (empty for no namespace).
    pub(crate) fn ns_uri(&self, i: usize) -> &str {
        match self.nodes[i].ns {
            Ns::None => "",
            Ns::Other(k) => &self.other_ns[k as usize],
            known => KNOWN
                .iter()
                .find(|(_, ns)| *ns == known)
                .map(|(uri, _)| *uri)
                .unwrap_or(""),
        }
    }

    /// `{uri}name` (Clark notation), for messages and foreign keys.
    pub(crate) fn clark(&self, i: usize) -> String {
        let mut out = String::new();
        self.push_clark(i, &mut out);
        out
    }

    /// Appends [`Dom::clark`] of `i` to `out`.
    pub(crate) fn push_clark(&self, i: usize, out: &mut String) {
        out.push('{');
        out.push_str(self.ns_uri(i));
        out.push('}');
        out.push_str(self.name(i));
    }
}

pub(crate) struct Children<'d, 'i> {
    dom: &'d Dom<'i>,
    next: usize,
    end: usize,
}

impl Iterator for Children<'_, '_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next = self.dom.nodes[i].end;
        Some(i)
    }
}

/// XML whitespace: space, tab, CR, LF (not the wider Unicode set).
pub(crate) fn is_xml_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

pub(crate) fn trim_xml(s: &str) -> &str {
    s.trim_matches(is_xml_ws)
}

fn not_wf(msg: impl Into<String>) -> PidfError {
    PidfError::NotWellFormed(msg.into())
}

/// Whether XML 1.0 allows `c` anywhere in a document (production [2]
/// `Char`): tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD and U+10000 up.
/// Surrogates cannot be a `char` at all.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn forbidden(c: char, at: usize) -> PidfError {
    not_wf(format!(
        "character U+{:04X} is not allowed in XML (byte {at})",
        u32::from(c)
    ))
}

/// Checks that `xml` is UTF-8 holding only characters XML 1.0 allows, so
/// that no name, attribute value, text, comment or anything else carries a
/// control character, U+FFFE or U+FFFF. Valid UTF-8 encodes no surrogate, so
/// those are refused as invalid UTF-8. Byte offsets count from the start of
/// `xml`.
fn check_chars(xml: &[u8]) -> Result<(), PidfError> {
    let text = std::str::from_utf8(xml).map_err(|e| {
        not_wf(format!(
            "the document is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    // The forbidden characters below U+0080 are single bytes, and U+FFFE and
    // U+FFFF are EF BF BE and EF BF BF: looking at bytes finds them without
    // decoding the rest. A block of bytes is first looked at as a whole,
    // without a branch per byte (the compiler makes that a few vector
    // instructions), and only a block with a suspect byte byte by byte: this
    // check was a fifth of reading a PIDF-LO document.
    const BLOCK: usize = 32;
    let suspect = |b: u8| (b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r') | (b == 0xEF);
    let mut blocks = xml.chunks_exact(BLOCK);
    let mut at = 0;
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | suspect(b)) {
            check_block(text, block, at, suspect)?;
        }
        at += BLOCK;
    }
    check_block(text, blocks.remainder(), at, suspect)
}

/// Checks each suspect byte of `block`, which starts at byte `at` of
/// `text`: a suspect byte is ASCII or the lead byte of a character, so it
/// starts a character.
fn check_block(
    text: &str,
    block: &[u8],
    at: usize,
    suspect: impl Fn(u8) -> bool,
) -> Result<(), PidfError> {
    for (k, &b) in block.iter().enumerate() {
        if suspect(b) {
            if let Some(c) = text[at + k..].chars().next().filter(|&c| !is_xml_char(c)) {
                return Err(forbidden(c, at + k));
            }
        }
    }
    Ok(())
}

/// Checks the characters `s` got from references (the input itself has
/// passed [`check_chars`]).
/// `what` names the place for the message, written only when there is one.
fn check_resolved(s: &str, what: impl FnOnce() -> String) -> Result<(), PidfError> {
    match s.chars().find(|&c| !is_xml_char(c)) {
        Some(c) => Err(not_wf(format!(
            "{}: a reference to U+{:04X}, which XML does not allow",
            what(),
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

struct Builder<'i> {
    nodes: Vec<Node<'i>>,
    attrs: Vec<AttrValue>,
    strings: String,
    other_ns: Vec<String>,
    /// Only allocated once a namespace outside [`KNOWN`] appears.
    other_index: HashMap<Vec<u8>, u32>,
    stack: Vec<usize>,
    root_closed: bool,
}

impl<'i> Builder<'i> {
    fn classify(&mut self, res: ResolveResult<'_>) -> Result<Ns, PidfError> {
        let uri = match res {
            ResolveResult::Unbound => return Ok(Ns::None),
            ResolveResult::Unknown(prefix) => {
                return Err(not_wf(format!(
                    "undeclared namespace prefix '{}'",
                    String::from_utf8_lossy(&prefix)
                )))
            }
            ResolveResult::Bound(ns) => ns.into_inner(),
        };
        let uri = trim_bytes(uri);
        if let Some((_, ns)) = KNOWN.iter().find(|(k, _)| k.as_bytes() == uri) {
            return Ok(*ns);
        }
        if let Some(&k) = self.other_index.get(uri) {
            return Ok(Ns::Other(k));
        }
        let text = std::str::from_utf8(uri).map_err(|_| not_wf("namespace URI is not UTF-8"))?;
        let k = self.other_ns.len() as u32;
        self.other_ns.push(text.to_owned());
        self.other_index.insert(uri.to_vec(), k);
        Ok(Ns::Other(k))
    }

    fn open(
        &mut self,
        ns: Ns,
        e: &BytesStart<'_>,
        decoder: Decoder,
        limits: &Limits,
    ) -> Result<usize, PidfError> {
        if self.root_closed {
            return Err(not_wf("element after the end of the root element"));
        }
        if self.stack.len() >= limits.max_depth {
            return Err(PidfError::TooDeep {
                limit: limits.max_depth,
            });
        }
        if self.nodes.len() >= limits.max_elements {
            return Err(PidfError::TooManyElements {
                limit: limits.max_elements,
            });
        }
        let name = std::str::from_utf8(e.local_name().into_inner())
            .map_err(|_| not_wf("element name is not UTF-8"))?;
        let name_start = self.strings.len();
        self.strings.push_str(name);
        let name_range = (name_start, self.strings.len());
        let attrs_start = self.attrs.len();
        // Every attribute is checked for syntax; only those read are kept.
        // Most elements have none, and then there is nothing to iterate.
        // Duplicates are looked for here among keys on the stack: quick-xml's
        // own check keeps them in a vector allocated per element.
        let attributes = if trim_bytes(e.attributes_raw()).is_empty() {
            None
        } else {
            let mut it = e.attributes();
            it.with_checks(false);
            Some(it)
        };
        let mut keys: SmallVec<[&[u8]; 8]> = SmallVec::new();
        for a in attributes.into_iter().flatten() {
            let a = a.map_err(|err| not_wf(format!("attribute of <{name}>: {err}")))?;
            let raw_key = a.key.into_inner();
            if keys.contains(&raw_key) {
                return Err(not_wf(format!(
                    "attribute of <{name}>: duplicated attribute {}",
                    String::from_utf8_lossy(raw_key)
                )));
            }
            keys.push(raw_key);
            let key = Attr::from_key(raw_key);
            // A value with a reference is resolved even when it is not
            // read, to check what the reference stands for.
            if key.is_some() || a.value.contains(&b'&') {
                let v = a
                    .decode_and_unescape_value(decoder)
                    .map_err(|err| not_wf(format!("attribute of <{name}>: {err}")))?;
                check_resolved(&v, || format!("attribute of <{name}>"))?;
                let Some(key) = key else {
                    continue;
                };
                let start = self.strings.len();
                self.strings.push_str(&v);
                self.attrs.push(AttrValue {
                    key,
                    start,
                    end: self.strings.len(),
                });
            }
        }
        let i = self.nodes.len();
        self.nodes.push(Node {
            ns,
            name: name_range,
            attrs: (attrs_start, self.attrs.len()),
            text: Cow::Borrowed(""),
            end: i + 1,
        });
        Ok(i)
    }

    fn name(&self, i: usize) -> &str {
        let (start, end) = self.nodes[i].name;
        &self.strings[start..end]
    }

    fn close(&mut self, i: usize) {
        self.nodes[i].end = self.nodes.len();
        if self.stack.is_empty() {
            self.root_closed = true;
        }
    }

    /// Whether a raw piece of character data can be dropped unread: it is
    /// whitespace only, and either outside the root or before any real
    /// character of the open element (see [`Builder::text`]). Most text in
    /// a document is indentation, which then costs neither decoding nor
    /// line-end normalisation (SIP bodies use CRLF, which would copy it).
    fn is_droppable(&self, raw: &[u8]) -> bool {
        raw.iter()
            .all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
            && self
                .stack
                .last()
                .is_none_or(|&top| self.nodes[top].text.is_empty())
    }

    fn text(&mut self, piece: Cow<'i, str>) -> Result<(), PidfError> {
        let Some(&top) = self.stack.last() else {
            if piece.chars().all(is_xml_ws) {
                return Ok(());
            }
            return Err(not_wf("character data outside the root element"));
        };
        let text = &mut self.nodes[top].text;
        if text.is_empty() {
            // Whitespace before any real character is dropped: it is either
            // indentation between child elements or leading space that every
            // consumer trims anyway.
            if !piece.chars().all(is_xml_ws) {
                *text = piece;
            }
        } else {
            text.to_mut().push_str(&piece);
        }
        Ok(())
    }
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let start = b.iter().position(|c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_ws(c)).map_or(start, |p| p + 1);
    &b[start..end]
}

/// Reads `xml` into a [`Dom`], enforcing `limits`.
pub(crate) fn read<'i>(xml: &'i [u8], limits: &Limits) -> Result<Dom<'i>, PidfError> {
    if xml.len() > limits.max_bytes {
        return Err(PidfError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    check_chars(xml)?;
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    // Namespaces are resolved here rather than by `NsReader`, which also
    // resolves every end tag: an end tag only closes the open element.
    let mut reader = Reader::from_reader(xml);
    let mut scopes = NamespaceResolver::default();
    let scope_error = |err: quick_xml::name::NamespaceError, reader: &Reader<&[u8]>| {
        not_wf(format!("{err} (near byte {})", reader.error_position()))
    };
    // Room for a typical document up front (an element every 40 bytes or
    // so), without trusting the size of a large one.
    let expected = (xml.len() / 40).clamp(8, 256).min(limits.max_elements);
    let mut b = Builder {
        nodes: Vec::with_capacity(expected),
        attrs: Vec::new(),
        // Names average under ten bytes.
        strings: String::with_capacity(expected * 10),
        other_ns: Vec::new(),
        other_index: HashMap::new(),
        stack: Vec::with_capacity(16.min(limits.max_depth)),
        root_closed: false,
    };
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => {
                return Err(not_wf(format!(
                    "{err} (near byte {})",
                    reader.error_position()
                )))
            }
        };
        match event {
            Event::Start(e) => {
                scopes.push(&e).map_err(|err| scope_error(err, &reader))?;
                let ns = b.classify(scopes.resolve_element(e.name()).0)?;
                let i = b.open(ns, &e, reader.decoder(), limits)?;
                b.stack.push(i);
            }
            Event::Empty(e) => {
                scopes.push(&e).map_err(|err| scope_error(err, &reader))?;
                let ns = b.classify(scopes.resolve_element(e.name()).0)?;
                let i = b.open(ns, &e, reader.decoder(), limits)?;
                b.close(i);
                scopes.pop();
            }
            Event::End(_) => {
                // The reader has already matched the end tag with its start.
                let i = b.stack.pop().ok_or_else(|| not_wf("unmatched end tag"))?;
                b.close(i);
                scopes.pop();
            }
            Event::Text(t) => {
                if b.is_droppable(&t) {
                    continue;
                }
                let s = t.xml10_content().map_err(|e| not_wf(e.to_string()))?;
                b.text(s)?;
            }
            Event::CData(t) => {
                if b.is_droppable(&t) {
                    continue;
                }
                let s = t.xml10_content().map_err(|e| not_wf(e.to_string()))?;
                b.text(s)?;
            }
            Event::GeneralRef(r) => {
                let resolved: String = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => {
                            let s = c.to_string();
                            check_resolved(&s, || "text".to_owned())?;
                            s
                        }
                        _ => return Err(not_wf("invalid character reference")),
                    }
                } else {
                    let name = r.decode().map_err(|e| not_wf(e.to_string()))?;
                    match resolve_predefined_entity(&name) {
                        Some(s) => s.to_owned(),
                        None => {
                            return Err(not_wf(format!(
                                "reference to undeclared entity &{name}; (DTDs are not read)"
                            )))
                        }
                    }
                };
                b.text(Cow::Owned(resolved))?;
            }
            // A DOCTYPE is skipped unread: its entity declarations never take
            // effect, so a reference to one fails above instead of expanding.
            Event::DocType(_) | Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(&open) = b.stack.last() {
        return Err(not_wf(format!("document ends inside <{}>", b.name(open))));
    }
    if b.nodes.is_empty() {
        return Err(not_wf("no root element"));
    }
    Ok(Dom {
        nodes: b.nodes,
        attrs: b.attrs,
        strings: b.strings,
        other_ns: b.other_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(xml: &str) -> Dom<'_> {
        read(xml.as_bytes(), &Limits::default()).expect("well-formed")
    }

    #[test]
    fn children_and_subtrees_follow_document_order() {
        let d = dom("<a><b><c/>x</b><d>y</d><e/></a>");
        let kids: Vec<&str> = d.children(ROOT).map(|i| d.name(i)).collect();
        assert_eq!(kids, ["b", "d", "e"]);
        let b = d.child(ROOT, &[Ns::None], "b").unwrap();
        assert_eq!(d.children(b).map(|i| d.name(i)).collect::<Vec<_>>(), ["c"]);
        let mut deep = String::new();
        d.push_deep_text(ROOT, &mut deep);
        assert_eq!(deep, "x y");
        assert!(!d.has_children(d.child(ROOT, &[Ns::None], "e").unwrap()));
    }

    #[test]
    fn text_joins_references_cdata_and_keeps_inner_space() {
        let d = dom("<a> Haley&apos;s <![CDATA[<Place>]]> &#x41;&#66; </a>");
        assert_eq!(trim_xml(d.text(ROOT)), "Haley's <Place> AB");
    }

    #[test]
    fn crlf_is_normalised_in_text() {
        let d = dom("<a>x\r\ny</a>");
        assert_eq!(d.text(ROOT), "x\ny");
    }

    #[test]
    fn namespaces_resolve_by_uri_with_any_prefix() {
        let d = dom(concat!(
            r#"<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf">"#,
            r#"<civicAddress xmlns="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"/>"#,
            r#"<q:x xmlns:q="urn:example:other"/><y/></p:presence>"#
        ));
        assert_eq!(d.ns(ROOT), Ns::Pidf);
        let kids: Vec<usize> = d.children(ROOT).collect();
        assert_eq!(d.ns(kids[0]), Ns::Civic);
        assert_eq!(d.clark(kids[1]), "{urn:example:other}x");
        // An unprefixed element outside any default namespace has none.
        assert_eq!(d.ns(kids[2]), Ns::None);
    }

    #[test]
    fn declarations_end_with_their_element() {
        // An empty element's and a closed element's declarations do not
        // reach their siblings.
        let d = dom(concat!(
            r#"<a><b xmlns="urn:ietf:params:xml:ns:pidf"><c/></b>"#,
            r#"<d xmlns="urn:ietf:params:xml:ns:pidf"/><e/></a>"#
        ));
        let kids: Vec<usize> = d.children(ROOT).collect();
        assert_eq!(d.ns(kids[0]), Ns::Pidf);
        assert_eq!(d.ns(kids[0] + 1), Ns::Pidf);
        assert_eq!(d.ns(kids[1]), Ns::Pidf);
        assert_eq!(d.ns(kids[2]), Ns::None);
        let e = read(
            br#"<a><q:b xmlns:q="urn:example:other"/><q:c/></a>"#,
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e, not_wf("undeclared namespace prefix 'q'"));
    }

    #[test]
    fn reserved_prefixes_cannot_be_rebound() {
        for bad in [
            r#"<a xmlns:xml="urn:example:x"/>"#,
            r#"<a xmlns:xmlns="urn:example:x"/>"#,
            r#"<a xmlns:p="http://www.w3.org/XML/1998/namespace"/>"#,
        ] {
            let err = read(bad.as_bytes(), &Limits::default()).unwrap_err();
            assert_eq!(err.kind(), "not-well-formed", "{bad:?}: {err}");
            assert!(err.to_string().contains("cannot be bound"), "{err}");
        }
        // `xml:` needs no declaration.
        assert_eq!(
            dom(r#"<xml:a/>"#).clark(ROOT),
            "{http://www.w3.org/XML/1998/namespace}a"
        );
    }

    #[test]
    fn undeclared_prefix_and_unclosed_root_are_not_well_formed() {
        for bad in [
            "<x:a/>",
            "<a><b></a>",
            "<a>",
            "<a/><b/>",
            "<a/>text",
            "",
            "<a>&nbsp;</a>",
            "<a b='1' b='2'/>",
        ] {
            let err = read(bad.as_bytes(), &Limits::default()).unwrap_err();
            assert_eq!(err.kind(), "not-well-formed", "{bad:?}: {err}");
        }
    }

    #[test]
    fn limits_are_enforced_before_storing() {
        let limits = Limits {
            max_bytes: 64,
            max_depth: 3,
            max_elements: 4,
        };
        let e = read(b"<a><b><c><d/></c></b></a>", &limits).unwrap_err();
        assert_eq!(e, PidfError::TooDeep { limit: 3 });
        let e = read(b"<a><b/><b/><b/><b/></a>", &limits).unwrap_err();
        assert_eq!(e, PidfError::TooManyElements { limit: 4 });
        let e = read(&[b' '; 65], &limits).unwrap_err();
        assert_eq!(e, PidfError::TooLarge { limit: 64 });
        assert!(read(b"<a><b><c/></b></a>", &limits).is_ok());
    }
}
