//! The caller's location as the INVITE conveys it (RFC 6442).
//!
//! Every `Geolocation` value is read in order. A `cid:` value names a body
//! part (nested multiparts included) whose PIDF-LO is parsed; the first one
//! that yields a usable location is the dynamic location. An `http`,
//! `https`, `sip` or `sips` value is a location by reference: it is recorded
//! with its URI and not fetched here. Without any `Geolocation` value, a
//! PIDF-LO part (or body) is still read, so a client that forgets the header
//! does not lose its location.
//!
//! `Geolocation-Routing` is read and kept: emergency calls are routed by
//! location whatever it says (RFC 6881 section 9.3, SP-33).
//!
//! Nothing here fails: an unparsable document, a missing part, a broken
//! multipart body each become an entry in [`Location::errors`].
//!
//! [`matching_location`] tells which of the locations a tenant defined in
//! the inventory the caller's location is, if any.

use crate::sip::body::{self, BodyPart, Parts};
use crate::sip::uri::Scheme;
use crate::sip::{HeaderName, Message, NameAddr, Uri};

use crate::inventory::TenantLocation;
use crate::pidf::{self, CivicAddress, Geo, Pidf};

/// How far a geodetic location may lie from a tenant-defined location's
/// point and still be that location, in metres.
pub const LOCATION_MATCH_RADIUS_M: f64 = 50.0;

/// Where the location used came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocationSource {
    /// A PIDF-LO civic address sent with the call.
    PidfCivic,
    /// A PIDF-LO geodetic shape sent with the call.
    PidfGeo,
    /// Only a reference (URI) to the location came with the call.
    Reference,
    /// The registered address from the number inventory.
    Registered,
    None,
}

impl LocationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationSource::PidfCivic => "pidf-civic",
            LocationSource::PidfGeo => "pidf-geo",
            LocationSource::Reference => "reference",
            LocationSource::Registered => "registered",
            LocationSource::None => "none",
        }
    }
}

/// A location and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub source: LocationSource,
    /// PIDF-LO `method` (`GPS`, `Manual`, ...).
    pub method: Option<String>,
    pub civic: Option<CivicAddress>,
    pub geo: Option<Geo>,
    /// The first location-by-reference URI, if any.
    pub reference: Option<String>,
    /// The `Geolocation` value the location came from (`cid:...`).
    pub from: Option<String>,
    /// `Geolocation-Routing`: `Some(true)` for `yes`, `Some(false)` for `no`
    /// or an unknown value (RFC 6442 section 4.2), `None` when absent.
    pub routing_allowed: Option<bool>,
    /// Why values could not be used.
    pub errors: Vec<String>,
}

impl Location {
    pub fn none() -> Location {
        Location {
            source: LocationSource::None,
            method: None,
            civic: None,
            geo: None,
            reference: None,
            from: None,
            routing_allowed: None,
            errors: Vec::new(),
        }
    }

    /// Whether a civic address or a shape is present.
    pub fn is_usable(&self) -> bool {
        self.civic.is_some() || self.geo.is_some()
    }

    /// The country of a civic address (upper case), if it names one.
    pub fn civic_country(&self) -> Option<String> {
        self.civic
            .as_ref()
            .and_then(|c| c.get("country"))
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty())
    }

    fn take_pidf(&mut self, doc: Pidf, from: String) {
        let (sel, rejected) = doc.into_selected();
        self.source = if sel.geo.is_some() {
            LocationSource::PidfGeo
        } else {
            LocationSource::PidfCivic
        };
        self.method = sel.method;
        self.civic = sel.civic;
        self.geo = sel.geo;
        for r in &rejected {
            self.errors
                .push(format!("{from}: {}: {}", r.error.kind(), r.error));
        }
        self.from = Some(from);
    }
}

/// Reads the location the request carries.
pub fn dynamic_location(req: &Message) -> Location {
    let mut loc = Location::none();
    loc.routing_allowed = req
        .get(HeaderName::GeolocationRouting)
        .map(|v| v.trim_ascii().eq_ignore_ascii_case(b"yes"));
    let mut parts: Option<Parts> = None;
    let mut parts_failed = false;
    let mut any_value = false;
    for value in req.list(HeaderName::Geolocation) {
        any_value = true;
        let Some((na, uri)) = NameAddr::parse(value).and_then(|na| Some((na, na.uri()?))) else {
            let text = String::from_utf8_lossy(value.trim_ascii());
            loc.errors
                .push(format!("Geolocation value {text:?} does not parse"));
            continue;
        };
        let uri_text = String::from_utf8_lossy(na.uri_text).into_owned();
        if uri.scheme_text.eq_ignore_ascii_case(b"cid") {
            if loc.is_usable() {
                continue;
            }
            let cid = na.uri_text.get(4..).unwrap_or_default();
            if parts.is_none() && !parts_failed {
                match req.body_parts() {
                    Ok(p) => parts = Some(p),
                    Err(e) => {
                        parts_failed = true;
                        loc.errors.push(format!("body: {}", e.as_str()));
                    }
                }
            }
            match find_cid(req, parts.as_deref().unwrap_or_default(), cid) {
                Some(Found::Part(part)) if !part_may_be_pidf(req, &part) => {
                    loc.errors
                        .push(format!("{uri_text}: the part is not application/pidf+xml"));
                }
                Some(Found::Part(part)) => read_pidf(&mut loc, req.bytes_of(part.body), uri_text),
                Some(Found::Body) => read_pidf(&mut loc, req.body(), uri_text),
                None => loc
                    .errors
                    .push(format!("{uri_text}: no body part has this Content-ID")),
            }
        } else if is_reference(&uri) {
            if loc.reference.is_none() {
                loc.reference = Some(uri_text);
            }
        } else {
            loc.errors
                .push(format!("{uri_text}: unsupported location URI scheme"));
        }
    }
    if !any_value && !loc.is_usable() {
        // No header: the first PIDF-LO part, or a PIDF-LO body.
        if is_pidf_body(req) {
            read_pidf(&mut loc, req.body(), "body".into());
        } else if let Ok(p) = req.body_parts() {
            if let Some(part) = p.iter().find(|p| body::is_pidf(req, p)) {
                let from = part
                    .content_id
                    .map(|s| format!("part {}", String::from_utf8_lossy(req.bytes_of(s))))
                    .unwrap_or_else(|| "part".into());
                read_pidf(&mut loc, req.bytes_of(part.body), from);
            }
        }
    }
    if !loc.is_usable() && loc.reference.is_some() {
        loc.source = LocationSource::Reference;
    }
    loc
}

/// The http(s) location reference to dereference before routing: a
/// Geolocation value by reference and no value by `cid:` (RFC 6442 allows
/// both; the one in the body wins, RFC 6881 SP-13). Cheap: no body is
/// parsed.
pub fn reference_to_fetch(req: &Message) -> Option<String> {
    let mut reference = None;
    for value in req.list(HeaderName::Geolocation) {
        let na = NameAddr::parse(value)?;
        let uri = na.uri()?;
        if uri.scheme_text.eq_ignore_ascii_case(b"cid") {
            return None;
        }
        let scheme = uri.scheme_text.to_ascii_lowercase();
        if reference.is_none() && (scheme == b"http" || scheme == b"https") {
            reference = Some(String::from_utf8_lossy(na.uri_text).into_owned());
        }
    }
    reference
}

/// Adds a location document fetched by reference, when the call brought no
/// usable location of its own. A document that does not parse is recorded
/// as an error and changes nothing else.
pub fn add_dereferenced(loc: &mut Location, doc: &[u8]) {
    if loc.is_usable() {
        return;
    }
    let from = loc.reference.clone().unwrap_or_else(|| "reference".into());
    // A HELD locationResponse wraps the presence document.
    // The end tag is looked for after the start tag only: the document
    // comes from the network, and may have them in any order.
    const END: &[u8] = b"presence>";
    let inner = memchr::memmem::find(doc, b"<presence")
        .or_else(|| memchr::memmem::find(doc, b":presence"))
        // Back up to the '<' of a prefixed start tag.
        .map(|s| doc[..s + 1].iter().rposition(|&b| b == b'<').unwrap_or(s))
        .and_then(|s| memchr::memmem::rfind(&doc[s..], END).map(|e| &doc[s..s + e + END.len()]))
        .unwrap_or(doc);
    read_pidf(loc, inner, format!("{from} (dereferenced)"));
}

enum Found {
    Part(BodyPart),
    /// The message body itself, whose Content-ID matches.
    Body,
}

fn find_cid(req: &Message, parts: &[BodyPart], cid: &[u8]) -> Option<Found> {
    if let Some(p) = req.part_by_content_id(parts, cid) {
        return Some(Found::Part(p));
    }
    let own = req.get(HeaderName::ContentId)?;
    let strip = |s: &[u8]| -> Vec<u8> {
        let s = s.trim_ascii();
        let s = s
            .strip_prefix(b"<")
            .and_then(|s| s.strip_suffix(b">"))
            .unwrap_or(s);
        crate::sip::uri::unescape(s).into_owned()
    };
    (parts.is_empty() && strip(own) == strip(cid)).then_some(Found::Body)
}

fn part_may_be_pidf(req: &Message, part: &BodyPart) -> bool {
    part.content_type.is_none() || body::is_pidf(req, part)
}

fn is_pidf_body(req: &Message) -> bool {
    req.content_type()
        .is_some_and(|m| m.is("application", "pidf+xml"))
}

fn is_reference(uri: &Uri<'_>) -> bool {
    matches!(uri.scheme, Scheme::Sip | Scheme::Sips)
        || uri.scheme_text.eq_ignore_ascii_case(b"http")
        || uri.scheme_text.eq_ignore_ascii_case(b"https")
}

fn read_pidf(loc: &mut Location, xml: &[u8], from: String) {
    match pidf::parse(xml) {
        Ok(doc) => loc.take_pidf(doc, from),
        Err(e) => loc.errors.push(format!("{from}: {}: {e}", e.kind())),
    }
}

/// The first of `defined` that `location` matches: a civic address that
/// agrees on every street-level field both name (country, road and house
/// number required on both sides), or a point within
/// [`LOCATION_MATCH_RADIUS_M`] of the defined point.
pub fn matching_location<'a>(
    defined: &'a [TenantLocation],
    location: &Location,
) -> Option<&'a TenantLocation> {
    defined.iter().find(|d| {
        let civic_match = location
            .civic
            .as_ref()
            .is_some_and(|c| civic_matches(&d.address.civic, c));
        let point_match = match (d.address.point, location.geo.as_ref()) {
            (Some((lat, lon)), Some(g)) => {
                distance_m(lat, lon, g.lat, g.lon) <= LOCATION_MATCH_RADIUS_M
            }
            _ => false,
        };
        civic_match || point_match
    })
}

const MATCH_KEYS: [&str; 11] = [
    "country", "A1", "A2", "A3", "PRD", "RD", "STS", "POD", "HNO", "HNS", "PC",
];
const REQUIRED_KEYS: [&str; 3] = ["country", "RD", "HNO"];

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn civic_matches(defined: &CivicAddress, got: &CivicAddress) -> bool {
    for key in REQUIRED_KEYS {
        if defined.get(key).is_none() || got.get(key).is_none() {
            return false;
        }
    }
    MATCH_KEYS
        .iter()
        .all(|k| match (defined.get(k), got.get(k)) {
            (Some(a), Some(b)) => norm(a) == norm(b),
            _ => true,
        })
}

/// Great-circle distance in metres.
fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Address;
    use bytes::Bytes;

    const CIVIC: &str = r#"<?xml version="1.0"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr" entity="pres:a@example.com">
 <tuple id="t"><status><gp:geopriv><gp:location-info><ca:civicAddress><ca:country>US</ca:country><ca:A1>CO</ca:A1><ca:A3>Denver</ca:A3></ca:civicAddress></gp:location-info><gp:method>GPS</gp:method></gp:geopriv></status></tuple>
</presence>"#;

    fn msg(extra: &str, ct: Option<&str>, body: &str) -> Message {
        let ct = ct
            .map(|c| format!("Content-Type: {c}\r\n"))
            .unwrap_or_default();
        let s = format!(
            "INVITE sip:911@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:911@h>\r\nFrom: <sip:+13035550117@example.com>;tag=1\r\nCall-ID: l1\r\nCSeq: 1 INVITE\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        crate::sip::parse_datagram(Bytes::from(s), &Default::default()).unwrap()
    }

    fn mixed(parts: &[(&str, &str)]) -> String {
        let mut b = String::new();
        for (headers, content) in parts {
            b.push_str(&format!("--B\r\n{headers}\r\n\r\n{content}\r\n"));
        }
        b.push_str("--B--\r\n");
        b
    }

    #[test]
    fn by_value_in_a_part() {
        let body = mixed(&[
            ("Content-Type: application/sdp", "v=0"),
            (
                "Content-Type: application/pidf+xml\r\nContent-ID: <l@h>",
                CIVIC,
            ),
        ]);
        let m = msg(
            "Geolocation: <cid:l@h>\r\nGeolocation-Routing: no\r\n",
            Some("multipart/mixed; boundary=B"),
            &body,
        );
        let loc = dynamic_location(&m);
        assert_eq!(loc.source, LocationSource::PidfCivic);
        assert_eq!(loc.method.as_deref(), Some("GPS"));
        assert_eq!(loc.civic.as_ref().and_then(|c| c.get("A3")), Some("Denver"));
        assert_eq!(loc.civic_country().as_deref(), Some("US"));
        assert_eq!(loc.routing_allowed, Some(false));
        assert_eq!(loc.from.as_deref(), Some("cid:l@h"));
        assert!(loc.errors.is_empty(), "{:?}", loc.errors);
    }

    #[test]
    fn nested_multipart_and_several_values() {
        let inner = mixed(&[(
            "Content-Type: application/pidf+xml\r\nContent-ID: <deep@h>",
            CIVIC,
        )])
        .replace("--B", "--I");
        let body = mixed(&[
            ("Content-Type: application/sdp", "v=0"),
            ("Content-Type: multipart/mixed; boundary=I", &inner),
        ]);
        let m = msg(
            "Geolocation: <https://lis.example.com/l/1>, <cid:missing@h>\r\nGeolocation: <cid:deep@h>\r\n",
            Some("multipart/mixed; boundary=B"),
            &body,
        );
        let loc = dynamic_location(&m);
        assert_eq!(loc.source, LocationSource::PidfCivic);
        assert_eq!(
            loc.reference.as_deref(),
            Some("https://lis.example.com/l/1")
        );
        assert_eq!(loc.errors.len(), 1, "{:?}", loc.errors);
        assert!(loc.errors[0].contains("cid:missing@h"));
        assert_eq!(loc.routing_allowed, None);
    }

    #[test]
    fn reference_only() {
        let m = msg(
            "Geolocation: <sips:loc@lis.example.com>\r\nGeolocation-Routing: yes\r\n",
            None,
            "",
        );
        let loc = dynamic_location(&m);
        assert_eq!(loc.source, LocationSource::Reference);
        assert_eq!(loc.reference.as_deref(), Some("sips:loc@lis.example.com"));
        assert!(!loc.is_usable());
        assert_eq!(loc.routing_allowed, Some(true));
    }

    #[test]
    fn broken_documents_and_bodies_are_errors() {
        let body = mixed(&[(
            "Content-Type: application/pidf+xml\r\nContent-ID: <l@h>",
            "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"><tuple>",
        )]);
        let m = msg(
            "Geolocation: <cid:l@h>\r\n",
            Some("multipart/mixed; boundary=B"),
            &body,
        );
        let loc = dynamic_location(&m);
        assert_eq!(loc.source, LocationSource::None);
        assert_eq!(loc.errors.len(), 1);
        assert!(
            loc.errors[0].starts_with("cid:l@h: not-well-formed"),
            "{:?}",
            loc.errors
        );

        let m = msg(
            "Geolocation: <cid:l@h>\r\n",
            Some("multipart/mixed; boundary=B"),
            "--B\r\nContent-Type: application/pidf+xml\r\n\r\nx",
        );
        let loc = dynamic_location(&m);
        assert!(
            loc.errors.iter().any(|e| e.starts_with("body:")),
            "{:?}",
            loc.errors
        );

        let body = mixed(&[("Content-Type: text/plain\r\nContent-ID: <l@h>", "hi")]);
        let m = msg(
            "Geolocation: <cid:l@h>\r\nGeolocation: <ftp://x.example/l>\r\n",
            Some("multipart/mixed; boundary=B"),
            &body,
        );
        let loc = dynamic_location(&m);
        assert_eq!(loc.errors.len(), 2, "{:?}", loc.errors);
    }

    fn fetched(doc: &str) -> Location {
        let m = msg("Geolocation: <https://lis.example.com/l/1>\r\n", None, "");
        let mut loc = dynamic_location(&m);
        add_dereferenced(&mut loc, doc.as_bytes());
        loc
    }

    #[test]
    fn a_fetched_document_is_read_inside_its_held_envelope() {
        let held = format!(
            "<?xml version=\"1.0\"?><locationResponse xmlns=\"urn:ietf:params:xml:ns:geopriv:held\">{}</locationResponse>",
            CIVIC.trim_start_matches("<?xml version=\"1.0\"?>")
        );
        let loc = fetched(&held);
        assert_eq!(loc.source, LocationSource::PidfCivic, "{:?}", loc.errors);
        assert_eq!(loc.civic.as_ref().and_then(|c| c.get("A3")), Some("Denver"));
    }

    /// A fetched document is network input: an end tag before the start tag
    /// (found by fuzzing) is an error in the record, not a panic of the core.
    #[test]
    fn a_fetched_document_with_its_end_tag_first_is_an_error() {
        for doc in [
            "</presence> <presence xmlns=\"urn:ietf:params:xml:ns:pidf\">",
            "</p:presence><p:presence xmlns:p=\"urn:ietf:params:xml:ns:pidf\">",
            "presence><presence",
        ] {
            let loc = fetched(doc);
            assert!(!loc.is_usable(), "{doc}");
            assert!(
                loc.errors.iter().any(|e| e.contains("(dereferenced)")),
                "{doc}: {:?}",
                loc.errors
            );
        }
    }

    #[test]
    fn pidf_without_a_header_and_pidf_as_the_whole_body() {
        let m = msg("", Some("application/pidf+xml"), CIVIC);
        let loc = dynamic_location(&m);
        assert_eq!(loc.source, LocationSource::PidfCivic);
        let m = msg(
            "Geolocation: <cid:whole@h>\r\nContent-ID: <whole@h>\r\n",
            Some("application/pidf+xml"),
            CIVIC,
        );
        assert_eq!(dynamic_location(&m).source, LocationSource::PidfCivic);
        let m = msg("", Some("application/sdp"), "v=0\r\n");
        let loc = dynamic_location(&m);
        assert_eq!(loc.source, LocationSource::None);
        assert!(loc.errors.is_empty());
    }

    fn civic(fields: &[(&str, &str)]) -> CivicAddress {
        fields.iter().copied().collect()
    }

    #[test]
    fn tenant_locations_match_by_civic_or_point() {
        let defined = vec![TenantLocation {
            id: "hq".into(),
            address: Address {
                civic: civic(&[
                    ("country", "US"),
                    ("A1", "NY"),
                    ("A3", "New York"),
                    ("RD", "34th"),
                    ("HNO", "20"),
                ]),
                point: Some((40.7484, -73.9857)),
            },
        }];
        let mut loc = Location::none();
        loc.civic = Some(civic(&[
            ("country", "us"),
            ("A1", "NY"),
            ("A3", "new  york"),
            ("RD", "34th"),
            ("HNO", "20"),
            ("FLR", "34"),
        ]));
        assert_eq!(
            matching_location(&defined, &loc).map(|l| l.id.as_str()),
            Some("hq")
        );
        loc.civic = Some(civic(&[("country", "US"), ("RD", "34th"), ("HNO", "22")]));
        assert!(matching_location(&defined, &loc).is_none());
        loc.civic = Some(civic(&[("country", "US"), ("A3", "New York")]));
        assert!(matching_location(&defined, &loc).is_none());
        loc.civic = None;
        let geo = |lat, lon| crate::pidf::Geo {
            shape: crate::pidf::Shape::Point {
                pos: crate::pidf::Position {
                    lat,
                    lon,
                    alt: None,
                },
            },
            lat,
            lon,
            alt: None,
            radius_m: None,
        };
        loc.geo = Some(geo(40.7486, -73.9855));
        assert!(matching_location(&defined, &loc).is_some());
        loc.geo = Some(geo(40.7584, -73.9857));
        assert!(matching_location(&defined, &loc).is_none());
    }
}
