//! Reading LoST documents: the responses of an ECRF, and the requests the
//! router's own LoST server answers.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    Boundary, BoundaryReference, ErrorKind, Errors, Expires, Fault, FindServiceResponse, Limits,
    Location, LostError, Mapping, Redirect, Response, ServiceList, Validation, Warning,
};
use crate::pidf::civic::parse_civic;
use crate::pidf::dom::{self, trim_xml, Attr, Dom, Ns, ROOT};
use crate::pidf::geo::{is_shape_ns, parse_shape};
use crate::pidf::{Limits as DomLimits, PidfError};
use crate::sip::uri::{Scheme, Uri};

fn from_pidf(e: PidfError) -> LostError {
    match e {
        PidfError::NotWellFormed(m) => LostError::NotWellFormed(m),
        PidfError::TooLarge { limit } => LostError::TooLarge { limit },
        PidfError::TooDeep { limit } => LostError::TooDeep { limit },
        PidfError::TooManyElements { limit } => LostError::TooManyElements { limit },
        other => LostError::Invalid(other.to_string()),
    }
}

fn invalid(msg: impl Into<String>) -> LostError {
    LostError::Invalid(msg.into())
}

fn read_dom<'i>(xml: &'i [u8], limits: &Limits) -> Result<Dom<'i>, LostError> {
    dom::read(
        xml,
        &DomLimits {
            max_bytes: limits.max_bytes,
            max_depth: limits.max_depth,
            max_elements: limits.max_elements,
        },
    )
    .map_err(from_pidf)
}

/// Reads an ECRF's answer with the default [`Limits`].
pub fn read_response(xml: &[u8]) -> Result<Response, LostError> {
    read_response_with(xml, &Limits::default())
}

/// Reads an ECRF's answer: `findServiceResponse`,
/// `listServicesByLocationResponse`, `redirect` or `errors`.
///
/// A `findServiceResponse` in which no mapping has a `sip:` or `sips:` URI
/// is [`LostError::NoSipUri`]: the router could not send a call anywhere
/// with it.
pub fn read_response_with(xml: &[u8], limits: &Limits) -> Result<Response, LostError> {
    let dom = read_dom(xml, limits)?;
    if dom.ns(ROOT) != Ns::Lost {
        return Err(LostError::NotLost(dom.clark(ROOT)));
    }
    match dom.name(ROOT) {
        "findServiceResponse" => find_service_response(&dom, limits).map(Response::Found),
        "listServicesByLocationResponse" | "listServicesResponse" => {
            service_list(&dom, limits).map(Response::Listed)
        }
        "redirect" => Ok(Response::Redirect(Redirect {
            target: required_attr(&dom, ROOT, Attr::Target, "target")?,
            source: attr(&dom, ROOT, Attr::Source).unwrap_or_default(),
            message: attr(&dom, ROOT, Attr::Message),
        })),
        "errors" => Ok(Response::Errors(errors(&dom, limits)?)),
        _ => Err(LostError::NotLost(dom.clark(ROOT))),
    }
}

fn attr(dom: &Dom<'_>, i: usize, key: Attr) -> Option<String> {
    dom.attr(i, key)
        .map(trim_xml)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn required_attr(dom: &Dom<'_>, i: usize, key: Attr, name: &str) -> Result<String, LostError> {
    attr(dom, i, key).ok_or_else(|| invalid(format!("<{}> without {name}", dom.name(i))))
}

fn lost_children<'d>(
    dom: &'d Dom<'_>,
    i: usize,
    name: &'d str,
) -> impl Iterator<Item = usize> + 'd {
    dom.children(i)
        .filter(move |&c| dom.ns(c) == Ns::Lost && dom.name(c) == name)
}

fn text(dom: &Dom<'_>, i: usize) -> String {
    trim_xml(dom.text(i)).to_owned()
}

/// An `xsd:dateTime`; one without a time zone is taken as UTC.
pub(crate) fn date_time(s: &str) -> Option<OffsetDateTime> {
    let s = trim_xml(s);
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .or_else(|| OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339).ok())
}

fn expires(dom: &Dom<'_>, i: usize) -> Result<Expires, LostError> {
    let v = required_attr(dom, i, Attr::Expires, "expires")?;
    match v.as_str() {
        "NO-CACHE" => Ok(Expires::NoCache),
        "NO-EXPIRATION" => Ok(Expires::NoExpiration),
        t => date_time(t).map(Expires::At).ok_or_else(|| {
            invalid(format!(
                "expires '{}' is not a date",
                super::one_line(t, 40)
            ))
        }),
    }
}

/// The scheme of a URI, lower case.
fn scheme(uri: &str) -> Option<String> {
    let (s, rest) = uri.split_once(':')?;
    let ok = !rest.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then(|| s.to_ascii_lowercase())
}

/// Longest URI a mapping may route a call to.
const MAX_URI: usize = 512;

/// Whether `u` is a SIP or SIPS URI the router can put in a `Route`
/// header as it is: it parses as one, and holds no space, control
/// character, angle bracket or quote that would end the header value or
/// the name-addr around it.
fn routable_sip(u: &str) -> bool {
    u.len() <= MAX_URI
        && !u
            .bytes()
            .any(|b| b < 0x21 || b == 0x7f || matches!(b, b'<' | b'>' | b'"'))
        && Uri::parse(u.as_bytes()).is_ok_and(|x| matches!(x.scheme, Scheme::Sip | Scheme::Sips))
}

fn mapping(dom: &Dom<'_>, m: usize, limits: &Limits) -> Result<Mapping, LostError> {
    let service = lost_children(dom, m, "service")
        .next()
        .map(|s| text(dom, s))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("<mapping> without <service>"))?;
    let mut out = Mapping {
        expires: expires(dom, m)?,
        last_updated: attr(dom, m, Attr::LastUpdated).and_then(|t| date_time(&t)),
        source: attr(dom, m, Attr::Source).unwrap_or_default(),
        source_id: attr(dom, m, Attr::SourceId).unwrap_or_default(),
        display_names: Vec::new(),
        service,
        boundary: None,
        boundary_reference: None,
        uris: Vec::new(),
        other_uris: Vec::new(),
        service_number: None,
    };
    let mut uris = 0usize;
    for c in dom.children(m) {
        if dom.ns(c) != Ns::Lost {
            continue;
        }
        match dom.name(c) {
            "displayName" if out.display_names.len() < limits.max_items => {
                out.display_names
                    .push((attr(dom, c, Attr::Lang), text(dom, c)));
            }
            "uri" => {
                uris += 1;
                if uris > limits.max_uris {
                    return Err(LostError::TooMany {
                        what: "URIs in a mapping",
                        limit: limits.max_uris,
                    });
                }
                let u = text(dom, c);
                if routable_sip(&u) {
                    out.uris.push(u);
                } else if scheme(&u).is_some() {
                    out.other_uris.push(u);
                }
            }
            "serviceNumber" => {
                let n = text(dom, c);
                if !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                {
                    out.service_number = Some(n);
                }
            }
            "serviceBoundary" => {
                let b = out.boundary.get_or_insert_with(Boundary::default);
                boundary_part(dom, c, b);
            }
            "serviceBoundaryReference" => {
                out.boundary_reference = Some(BoundaryReference {
                    source: attr(dom, c, Attr::Source).unwrap_or_default(),
                    key: attr(dom, c, Attr::Key).unwrap_or_default(),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// One `<serviceBoundary profile=...>` into `b`.
fn boundary_part(dom: &Dom<'_>, i: usize, b: &mut Boundary) {
    let profile = attr(dom, i, Attr::Profile).unwrap_or_default();
    match location_value(dom, i, &profile) {
        Ok(Location::Geodetic(s)) => b.geodetic.push(s),
        Ok(Location::Civic(c)) => b.civic.push(c),
        Err(e) => {
            if b.unreadable.len() < 8 {
                b.unreadable.push(super::one_line(&e, 120));
            }
        }
    }
}

/// The location held by `i` (a `location` or `serviceBoundary`) in
/// `profile`.
fn location_value(dom: &Dom<'_>, i: usize, profile: &str) -> Result<Location, String> {
    match profile {
        "geodetic-2d" => {
            let shape = dom
                .children(i)
                .find(|&c| is_shape_ns(dom.ns(c)))
                .ok_or("geodetic-2d without a shape")?;
            parse_shape(dom, shape)
                .map(|g| Location::Geodetic(g.shape))
                .map_err(|e| e.to_string())
        }
        "civic" => {
            let civic = dom
                .children(i)
                .find(|&c| dom.ns(c).is_civic() && dom.name(c) == "civicAddress")
                .ok_or("civic without a civicAddress")?;
            parse_civic(dom, civic)
                .map(Location::Civic)
                .map_err(|e| e.to_string())
        }
        "" => Err("no profile".into()),
        other => Err(format!("unknown profile {}", super::one_line(other, 40))),
    }
}

/// What every response may carry: warnings, the path, the location used.
type Common = (Vec<Warning>, Vec<String>, Option<String>);

fn common(dom: &Dom<'_>, limits: &Limits) -> Result<Common, LostError> {
    let mut warnings = Vec::new();
    for w in lost_children(dom, ROOT, "warnings") {
        let source = attr(dom, w, Attr::Source).unwrap_or_default();
        for c in dom.children(w) {
            if warnings.len() >= limits.max_items {
                return Err(LostError::TooMany {
                    what: "warnings",
                    limit: limits.max_items,
                });
            }
            warnings.push(Warning {
                source: source.clone(),
                kind: dom.name(c).to_owned(),
                message: attr(dom, c, Attr::Message),
            });
        }
    }
    let mut path = Vec::new();
    for p in lost_children(dom, ROOT, "path") {
        for v in lost_children(dom, p, "via") {
            if path.len() >= limits.max_items {
                return Err(LostError::TooMany {
                    what: "vias in the path",
                    limit: limits.max_items,
                });
            }
            path.push(attr(dom, v, Attr::Source).unwrap_or_default());
        }
    }
    let location_used = lost_children(dom, ROOT, "locationUsed")
        .next()
        .and_then(|l| attr(dom, l, Attr::Id));
    Ok((warnings, path, location_used))
}

fn find_service_response(dom: &Dom<'_>, limits: &Limits) -> Result<FindServiceResponse, LostError> {
    let mut mappings = Vec::new();
    for m in lost_children(dom, ROOT, "mapping") {
        if mappings.len() >= limits.max_mappings {
            return Err(LostError::TooMany {
                what: "mappings",
                limit: limits.max_mappings,
            });
        }
        mappings.push(mapping(dom, m, limits)?);
    }
    if mappings.is_empty() {
        return Err(invalid("<findServiceResponse> without <mapping>"));
    }
    let (warnings, path, location_used) = common(dom, limits)?;
    let validation = match lost_children(dom, ROOT, "locationValidation").next() {
        Some(v) => Some(validation(dom, v, limits)?),
        None => None,
    };
    let r = FindServiceResponse {
        mappings,
        warnings,
        path,
        location_used,
        validation,
    };
    if r.routable().is_none() {
        return Err(LostError::NoSipUri);
    }
    Ok(r)
}

/// `<locationValidation>`: each list of QNames, by local name.
fn validation(dom: &Dom<'_>, v: usize, limits: &Limits) -> Result<Validation, LostError> {
    let mut out = Validation::default();
    let mut count = 0;
    for (name, list) in [
        ("valid", &mut out.valid),
        ("invalid", &mut out.invalid),
        ("unchecked", &mut out.unchecked),
    ] {
        for e in lost_children(dom, v, name) {
            for q in dom.text(e).split(dom::is_xml_ws).filter(|s| !s.is_empty()) {
                count += 1;
                if count > limits.max_items {
                    return Err(LostError::TooMany {
                        what: "validated elements",
                        limit: limits.max_items,
                    });
                }
                let local = q.rsplit_once(':').map_or(q, |(_, l)| l);
                list.push(super::one_line(local, 40));
            }
        }
    }
    Ok(out)
}

fn service_list(dom: &Dom<'_>, limits: &Limits) -> Result<ServiceList, LostError> {
    let list = lost_children(dom, ROOT, "serviceList")
        .next()
        .ok_or_else(|| invalid("service list response without <serviceList>"))?;
    let services: Vec<String> = dom
        .text(list)
        .split(dom::is_xml_ws)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if services.len() > limits.max_items {
        return Err(LostError::TooMany {
            what: "services",
            limit: limits.max_items,
        });
    }
    let (warnings, path, location_used) = common(dom, limits)?;
    Ok(ServiceList {
        services,
        warnings,
        path,
        location_used,
    })
}

fn errors(dom: &Dom<'_>, limits: &Limits) -> Result<Errors, LostError> {
    let mut faults = Vec::new();
    for c in dom.children(ROOT) {
        if dom.ns(c) != Ns::Lost {
            continue;
        }
        let Some(kind) = ErrorKind::from_name(dom.name(c)) else {
            continue;
        };
        if faults.len() >= limits.max_items {
            return Err(LostError::TooMany {
                what: "errors",
                limit: limits.max_items,
            });
        }
        faults.push(Fault {
            kind,
            message: attr(dom, c, Attr::Message),
        });
    }
    Ok(Errors {
        source: attr(dom, ROOT, Attr::Source).unwrap_or_default(),
        message: attr(dom, ROOT, Attr::Message),
        faults,
    })
}

/// What a LoST client asked the router's server.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub kind: RequestKind,
    /// Each `<location>`: its `id`, and the location or why it could not be
    /// read (`profile` unknown, shape invalid).
    pub locations: Vec<(String, Result<Location, RequestLocationError>)>,
    pub service: Option<String>,
    /// `serviceBoundary="value"` was asked for.
    pub boundary_by_value: bool,
    /// `validateLocation="true"` was asked for (RFC 5222 s8.4.2).
    pub validate_location: bool,
    /// The `source` of each `<via>` the request came through.
    pub path: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    FindService,
    ListServicesByLocation,
}

/// Why a request's location was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestLocationError {
    /// The profile is not one the server knows.
    Profile(String),
    /// The profile is known but the location in it is not valid.
    Invalid(String),
}

/// Reads a `findService` or `listServicesByLocation` request. Errors are
/// for the server to answer as `badRequest`.
pub fn read_request(xml: &[u8], limits: &Limits) -> Result<Request, LostError> {
    let dom = read_dom(xml, limits)?;
    if dom.ns(ROOT) != Ns::Lost {
        return Err(LostError::NotLost(dom.clark(ROOT)));
    }
    let kind = match dom.name(ROOT) {
        "findService" => RequestKind::FindService,
        "listServicesByLocation" => RequestKind::ListServicesByLocation,
        _ => return Err(LostError::NotLost(dom.clark(ROOT))),
    };
    let mut locations = Vec::new();
    for l in lost_children(&dom, ROOT, "location") {
        if locations.len() >= limits.max_items {
            return Err(LostError::TooMany {
                what: "locations",
                limit: limits.max_items,
            });
        }
        let id = attr(&dom, l, Attr::Id).unwrap_or_default();
        let profile = attr(&dom, l, Attr::Profile).unwrap_or_default();
        let loc = match profile.as_str() {
            "geodetic-2d" | "civic" => {
                location_value(&dom, l, &profile).map_err(RequestLocationError::Invalid)
            }
            other => Err(RequestLocationError::Profile(super::one_line(other, 40))),
        };
        locations.push((id, loc));
    }
    if locations.is_empty() {
        return Err(invalid("request without <location>"));
    }
    let service = lost_children(&dom, ROOT, "service")
        .next()
        .map(|s| text(&dom, s))
        .filter(|s| !s.is_empty());
    let mut path = Vec::new();
    for p in lost_children(&dom, ROOT, "path") {
        for v in lost_children(&dom, p, "via") {
            if path.len() >= limits.max_items {
                return Err(LostError::TooMany {
                    what: "vias in the path",
                    limit: limits.max_items,
                });
            }
            path.push(attr(&dom, v, Attr::Source).unwrap_or_default());
        }
    }
    Ok(Request {
        kind,
        locations,
        service,
        boundary_by_value: attr(&dom, ROOT, Attr::ServiceBoundary).as_deref() == Some("value"),
        validate_location: matches!(
            attr(&dom, ROOT, Attr::ValidateLocation).as_deref(),
            Some("true" | "1")
        ),
        path,
    })
}
