//! Writing LoST documents: the router's requests to an ECRF and its own
//! server's responses.
//!
//! Shapes are written in the `geodetic-2d` profile (RFC 5222 s12.2, RFC
//! 5491 shapes in EPSG 4326): a sphere as a circle, an ellipsoid as an
//! ellipse, a prism as its base polygon, and altitudes dropped.

use std::fmt::Write as _;

use quick_xml::escape::escape;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Boundary, ErrorKind, Expires, Location, Mapping, Validation, NS};
use crate::pidf::civic::{EXTENSION_NS, EXTENSION_PREFIX};
use crate::pidf::dom::{is_xml_char, NS_CIVIC, NS_GEOSHAPE, NS_GML};
use crate::pidf::{CivicAddress, Position, Shape};

const CRS_2D: &str = "urn:ogc:def:crs:EPSG::4326";
const UOM_METRE: &str = "urn:ogc:def:uom:EPSG::9001";
const UOM_DEGREE: &str = "urn:ogc:def:uom:EPSG::9102";

/// Escapes `s` for text or a quoted attribute, dropping characters XML 1.0
/// cannot carry.
fn esc(s: &str) -> String {
    if s.chars().all(is_xml_char) {
        escape(s).into_owned()
    } else {
        escape(s.chars().filter(|&c| is_xml_char(c)).collect::<String>()).into_owned()
    }
}

/// Whether `s` is an ASCII NCName (every civic element name is).
fn ncname(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn root_open(out: &mut String, name: &str, attrs: &str) {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<{name} xmlns=\"{NS}\" xmlns:gml=\"{NS_GML}\" xmlns:gs=\"{NS_GEOSHAPE}\" \
         xmlns:ca=\"{NS_CIVIC}\"{attrs}>"
    );
}

/// A number as XML Schema double text (never NaN or infinite here: shapes
/// come from parsed, checked documents or the router's own data).
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".to_owned()
    }
}

fn pos(out: &mut String, p: &Position, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}<gml:pos>{} {}</gml:pos>",
        num(p.lat),
        num(p.lon)
    );
}

fn measure(out: &mut String, name: &str, v: f64, uom: &str, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}<gs:{name} uom=\"{uom}\">{}</gs:{name}>",
        num(v)
    );
}

fn polygon(out: &mut String, ring: &[Position], indent: &str) {
    let _ = writeln!(out, "{indent}<gml:Polygon srsName=\"{CRS_2D}\">");
    let _ = writeln!(out, "{indent}  <gml:exterior><gml:LinearRing>");
    out.push_str(indent);
    out.push_str("    <gml:posList>");
    let closed = ring.len() > 1
        && ring.first().map(|p| (p.lat, p.lon)) == ring.last().map(|p| (p.lat, p.lon));
    for (n, p) in ring.iter().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{} {}", num(p.lat), num(p.lon));
    }
    if !closed {
        if let Some(p) = ring.first() {
            let _ = write!(out, " {} {}", num(p.lat), num(p.lon));
        }
    }
    out.push_str("</gml:posList>\n");
    let _ = writeln!(out, "{indent}  </gml:LinearRing></gml:exterior>");
    let _ = writeln!(out, "{indent}</gml:Polygon>");
}

/// Writes `shape` as a `geodetic-2d` shape element.
pub fn shape(out: &mut String, shape: &Shape, indent: &str) {
    let inner = format!("{indent}  ");
    match shape {
        Shape::Point { pos: p } => {
            let _ = writeln!(out, "{indent}<gml:Point srsName=\"{CRS_2D}\">");
            pos(out, p, &inner);
            let _ = writeln!(out, "{indent}</gml:Point>");
        }
        Shape::Circle { center, radius_m } | Shape::Sphere { center, radius_m } => {
            let _ = writeln!(out, "{indent}<gs:Circle srsName=\"{CRS_2D}\">");
            pos(out, center, &inner);
            measure(out, "radius", *radius_m, UOM_METRE, &inner);
            let _ = writeln!(out, "{indent}</gs:Circle>");
        }
        Shape::Ellipse {
            center,
            semi_major_m,
            semi_minor_m,
            orientation_deg,
        }
        | Shape::Ellipsoid {
            center,
            semi_major_m,
            semi_minor_m,
            orientation_deg,
            ..
        } => {
            let _ = writeln!(out, "{indent}<gs:Ellipse srsName=\"{CRS_2D}\">");
            pos(out, center, &inner);
            measure(out, "semiMajorAxis", *semi_major_m, UOM_METRE, &inner);
            measure(out, "semiMinorAxis", *semi_minor_m, UOM_METRE, &inner);
            measure(out, "orientation", *orientation_deg, UOM_DEGREE, &inner);
            let _ = writeln!(out, "{indent}</gs:Ellipse>");
        }
        Shape::ArcBand {
            center,
            inner_radius_m,
            outer_radius_m,
            start_angle_deg,
            opening_angle_deg,
        } => {
            let _ = writeln!(out, "{indent}<gs:ArcBand srsName=\"{CRS_2D}\">");
            pos(out, center, &inner);
            measure(out, "innerRadius", *inner_radius_m, UOM_METRE, &inner);
            measure(out, "outerRadius", *outer_radius_m, UOM_METRE, &inner);
            measure(out, "startAngle", *start_angle_deg, UOM_DEGREE, &inner);
            measure(out, "openingAngle", *opening_angle_deg, UOM_DEGREE, &inner);
            let _ = writeln!(out, "{indent}</gs:ArcBand>");
        }
        Shape::Polygon { exterior } => polygon(out, exterior, indent),
        Shape::Prism { base, .. } => polygon(out, base, indent),
    }
}

/// Writes `civic` as an RFC 5139 `civicAddress` (prefix `ca`, declared on
/// the root). Keys follow [`CivicAddress`]: `cae:NAME` goes in the RFC 6848
/// namespace, `{uri}NAME` in `uri`; a key that cannot be an element name is
/// left out.
pub fn civic(out: &mut String, civic: &CivicAddress, indent: &str) {
    match civic.lang() {
        Some(lang) => {
            let _ = writeln!(out, "{indent}<ca:civicAddress xml:lang=\"{}\">", esc(lang));
        }
        None => {
            let _ = writeln!(out, "{indent}<ca:civicAddress>");
        }
    }
    for (key, value) in civic.iter() {
        let value = esc(value);
        if let Some(name) = key.strip_prefix("cae:") {
            if ncname(name) {
                let _ = writeln!(
                    out,
                    "{indent}  <{EXTENSION_PREFIX}:{name} xmlns:{EXTENSION_PREFIX}=\"{EXTENSION_NS}\">{value}</{EXTENSION_PREFIX}:{name}>"
                );
            }
        } else if let Some((uri, name)) = key.strip_prefix('{').and_then(|k| k.split_once('}')) {
            if ncname(name) && !uri.is_empty() {
                let _ = writeln!(
                    out,
                    "{indent}  <x:{name} xmlns:x=\"{}\">{value}</x:{name}>",
                    esc(uri)
                );
            }
        } else if ncname(key) {
            let _ = writeln!(out, "{indent}  <ca:{key}>{value}</ca:{key}>");
        }
    }
    let _ = writeln!(out, "{indent}</ca:civicAddress>");
}

fn location_body(out: &mut String, loc: &Location, indent: &str) {
    match loc {
        Location::Geodetic(s) => shape(out, s, indent),
        Location::Civic(c) => civic(out, c, indent),
    }
}

/// What to ask in a `findService` request.
#[derive(Clone, Debug)]
pub struct FindService<'a> {
    pub location: &'a Location,
    /// The `id` of the `<location>` element, echoed in `locationUsed`.
    pub location_id: &'a str,
    /// The service URN (`urn:service:sos`, `urn:service:sos.police`...).
    pub service: &'a str,
    /// Ask for the service boundary by value (`serviceBoundary="value"`), so
    /// that later calls inside it are routed without a query.
    pub boundary_by_value: bool,
    /// Ask the server to resolve recursively rather than redirect.
    pub recursive: bool,
    /// Ask the server to check the civic address (`validateLocation`,
    /// RFC 5222 s8.4.2).
    pub validate_location: bool,
}

/// A `findService` request (RFC 5222 s8).
pub fn find_service(q: &FindService<'_>) -> String {
    let mut out = String::with_capacity(1024);
    let mut attrs = String::new();
    if q.boundary_by_value {
        attrs.push_str(" serviceBoundary=\"value\"");
    }
    if q.recursive {
        attrs.push_str(" recursive=\"true\"");
    }
    if q.validate_location {
        attrs.push_str(" validateLocation=\"true\"");
    }
    root_open(&mut out, "findService", &attrs);
    let _ = writeln!(
        out,
        "  <location id=\"{}\" profile=\"{}\">",
        esc(q.location_id),
        q.location.profile()
    );
    location_body(&mut out, q.location, "    ");
    out.push_str("  </location>\n");
    let _ = writeln!(out, "  <service>{}</service>", esc(q.service));
    out.push_str("</findService>\n");
    out
}

/// A `listServicesByLocation` request (RFC 5222 s10).
pub fn list_services_by_location(location: &Location, location_id: &str, service: &str) -> String {
    let mut out = String::with_capacity(1024);
    root_open(&mut out, "listServicesByLocation", "");
    let _ = writeln!(
        out,
        "  <location id=\"{}\" profile=\"{}\">",
        esc(location_id),
        location.profile()
    );
    location_body(&mut out, location, "    ");
    out.push_str("  </location>\n");
    let _ = writeln!(out, "  <service>{}</service>", esc(service));
    out.push_str("</listServicesByLocation>\n");
    out
}

fn date(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn boundary(out: &mut String, b: &Boundary) {
    for s in &b.geodetic {
        out.push_str("    <serviceBoundary profile=\"geodetic-2d\">\n");
        shape(out, s, "      ");
        out.push_str("    </serviceBoundary>\n");
    }
    for c in &b.civic {
        out.push_str("    <serviceBoundary profile=\"civic\">\n");
        civic(out, c, "      ");
        out.push_str("    </serviceBoundary>\n");
    }
}

fn mapping(out: &mut String, m: &Mapping) {
    let expires = match m.expires {
        Expires::At(t) => date(t),
        Expires::NoCache => "NO-CACHE".to_owned(),
        Expires::NoExpiration => "NO-EXPIRATION".to_owned(),
    };
    let last = date(m.last_updated.unwrap_or(OffsetDateTime::UNIX_EPOCH));
    let _ = writeln!(
        out,
        "  <mapping expires=\"{expires}\" lastUpdated=\"{last}\" source=\"{}\" sourceId=\"{}\">",
        esc(&m.source),
        esc(&m.source_id)
    );
    for (lang, name) in &m.display_names {
        let _ = writeln!(
            out,
            "    <displayName xml:lang=\"{}\">{}</displayName>",
            esc(lang.as_deref().unwrap_or("en")),
            esc(name)
        );
    }
    let _ = writeln!(out, "    <service>{}</service>", esc(&m.service));
    if let Some(b) = &m.boundary {
        boundary(out, b);
    } else if let Some(r) = &m.boundary_reference {
        let _ = writeln!(
            out,
            "    <serviceBoundaryReference source=\"{}\" key=\"{}\"/>",
            esc(&r.source),
            esc(&r.key)
        );
    }
    for u in m.uris.iter().chain(&m.other_uris) {
        let _ = writeln!(out, "    <uri>{}</uri>", esc(u));
    }
    if let Some(n) = &m.service_number {
        let _ = writeln!(out, "    <serviceNumber>{}</serviceNumber>", esc(n));
    }
    out.push_str("  </mapping>\n");
}

fn path(out: &mut String, vias: &[String]) {
    out.push_str("  <path>\n");
    for v in vias {
        let _ = writeln!(out, "    <via source=\"{}\"/>", esc(v));
    }
    out.push_str("  </path>\n");
}

fn location_used(out: &mut String, id: Option<&str>) {
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        let _ = writeln!(out, "  <locationUsed id=\"{}\"/>", esc(id));
    }
}

/// A `findServiceResponse` with `mappings`, the `path` it took (the
/// server's own `source` last) and the location used.
pub fn find_service_response(
    mappings: &[Mapping],
    vias: &[String],
    location_id: Option<&str>,
) -> String {
    find_service_response_with(mappings, &Extras::default(), vias, location_id)
}

/// What a `findServiceResponse` may carry besides its mappings.
#[derive(Clone, Debug, Default)]
pub struct Extras<'a> {
    /// `<locationValidation>`: civic element names (`country`, `A1`...),
    /// written in the civic namespace; other names are left out.
    pub validation: Option<&'a Validation>,
    /// `<warnings source=...>`: the server's name and `(kind, message)` of
    /// each warning (`locationValidationUnavailable`...).
    pub warnings: Option<(&'a str, &'a [(&'a str, String)])>,
}

fn validation(out: &mut String, v: &Validation) {
    out.push_str("  <locationValidation>\n");
    for (name, list) in [
        ("valid", &v.valid),
        ("invalid", &v.invalid),
        ("unchecked", &v.unchecked),
    ] {
        let names: Vec<String> = list
            .iter()
            .filter(|n| ncname(n))
            .map(|n| format!("ca:{n}"))
            .collect();
        if !names.is_empty() {
            let _ = writeln!(out, "    <{name}>{}</{name}>", names.join(" "));
        }
    }
    out.push_str("  </locationValidation>\n");
}

/// [`find_service_response`] with a location validation and warnings.
pub fn find_service_response_with(
    mappings: &[Mapping],
    extras: &Extras<'_>,
    vias: &[String],
    location_id: Option<&str>,
) -> String {
    let mut out = String::with_capacity(1024);
    root_open(&mut out, "findServiceResponse", "");
    for m in mappings {
        mapping(&mut out, m);
    }
    if let Some(v) = extras.validation {
        validation(&mut out, v);
    }
    if let Some((source, warnings)) = extras.warnings.filter(|(_, w)| !w.is_empty()) {
        let _ = writeln!(out, "  <warnings source=\"{}\">", esc(source));
        for (kind, message) in warnings {
            if ncname(kind) {
                let _ = writeln!(
                    out,
                    "    <{kind} message=\"{}\" xml:lang=\"en\"/>",
                    esc(message)
                );
            }
        }
        out.push_str("  </warnings>\n");
    }
    path(&mut out, vias);
    location_used(&mut out, location_id);
    out.push_str("</findServiceResponse>\n");
    out
}

/// A `listServicesByLocationResponse`.
pub fn list_services_by_location_response(
    services: &[String],
    vias: &[String],
    location_id: Option<&str>,
) -> String {
    let mut out = String::with_capacity(512);
    root_open(&mut out, "listServicesByLocationResponse", "");
    let list: Vec<String> = services.iter().map(|s| esc(s)).collect();
    let _ = writeln!(out, "  <serviceList>{}</serviceList>", list.join(" "));
    path(&mut out, vias);
    location_used(&mut out, location_id);
    out.push_str("</listServicesByLocationResponse>\n");
    out
}

/// An `<errors>` response with one error of `kind`.
pub fn errors(source: &str, kind: ErrorKind, message: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<errors xmlns=\"{NS}\" source=\"{}\">", esc(source));
    let _ = writeln!(
        out,
        "  <{} message=\"{}\" xml:lang=\"en\"/>",
        kind.as_str(),
        esc(message)
    );
    out.push_str("</errors>\n");
    out
}

/// An `<errors>` response with `locationProfileUnrecognized`, naming the
/// profiles the request used.
pub fn profile_unrecognized(source: &str, profiles: &[&str], message: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<errors xmlns=\"{NS}\" source=\"{}\">", esc(source));
    let names: Vec<String> = profiles
        .iter()
        .filter(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
        })
        .map(|p| esc(p))
        .collect();
    let names = if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(" ")
    };
    let _ = writeln!(
        out,
        "  <locationProfileUnrecognized unsupportedProfiles=\"{names}\" message=\"{}\" xml:lang=\"en\"/>",
        esc(message)
    );
    out.push_str("</errors>\n");
    out
}
