//! LoST documents on bytes: the RFC 5222 examples, NG911 test data, hostile
//! and broken input, the writers read back, and the cache.

use std::sync::Arc;

use time::macros::datetime;

use super::read::{read_request, RequestKind, RequestLocationError};
use super::write::{self, FindService};
use super::*;
use crate::pidf::{CivicAddress, Position, Shape};

macro_rules! doc {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lost/", $name)).as_slice()
    };
}

fn found(xml: &[u8]) -> FindServiceResponse {
    match read_response(xml) {
        Ok(Response::Found(r)) => r,
        other => panic!("not a findServiceResponse: {other:?}"),
    }
}

fn p(lat: f64, lon: f64) -> Position {
    Position {
        lat,
        lon,
        alt: None,
    }
}

#[test]
fn rfc5222_geodetic_response() {
    let r = found(doc!("rfc5222-find-service-response-geodetic.xml"));
    assert_eq!(r.mappings.len(), 1);
    let m = &r.mappings[0];
    assert_eq!(m.expires, Expires::At(datetime!(2007-01-01 01:44:33 UTC)));
    assert_eq!(m.last_updated, Some(datetime!(2006-11-01 01:00:00 UTC)));
    assert_eq!(m.source, "authoritative.example");
    assert_eq!(m.source_id, "7e3f40b098c711dbb6060800200c9a66");
    assert_eq!(m.display_name(), Some("New York City Police Department"));
    assert_eq!(m.display_names[0].0.as_deref(), Some("en"));
    assert_eq!(m.service, "urn:service:sos.police");
    assert_eq!(m.uris, ["sip:nypd@example.com"]);
    assert_eq!(m.other_uris, ["xmpp:nypd@example.com"]);
    assert_eq!(m.service_number.as_deref(), Some("911"));
    let b = m.boundary.as_ref().unwrap();
    assert!(b.unreadable.is_empty(), "{:?}", b.unreadable);
    match &b.geodetic[..] {
        [Shape::Polygon { exterior }] => {
            assert_eq!(exterior.len(), 5);
            assert_eq!(exterior[1], p(37.555, -122.4194));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.path, ["resolver.example", "authoritative.example"]);
    assert_eq!(r.location_used.as_deref(), Some("6020688f1ce1896d"));
    assert!(r.warnings.is_empty());
    assert!(!m.fresh_at(datetime!(2007-01-01 01:44:33 UTC)));
    assert!(m.fresh_at(datetime!(2007-01-01 01:44:32 UTC)));
}

#[test]
fn rfc5222_civic_response_and_validation() {
    let r = found(doc!("rfc5222-find-service-response-civic.xml"));
    let m = r.routable().unwrap();
    assert_eq!(m.uris, ["sip:munich-police@example.com"]);
    assert_eq!(m.service_number.as_deref(), Some("110"));
    let civic = &m.boundary.as_ref().unwrap().civic[0];
    assert_eq!(civic.get("A3"), Some("Munich"));
    assert_eq!(civic.get("PC"), Some("81675"));

    let r = found(doc!("rfc5222-find-service-response-validation.xml"));
    let m = &r.mappings[0];
    assert_eq!(m.expires, Expires::NoCache);
    assert!(!m.fresh_at(datetime!(2000-01-01 00:00:00 UTC)));
    assert!(m.boundary.is_none());
    assert_eq!(
        m.boundary_reference,
        Some(BoundaryReference {
            source: "authoritative.example".into(),
            key: "7214148E0433AFE2FA2D48003D31172E".into(),
        })
    );
    assert_eq!(
        r.warnings,
        [Warning {
            source: "authoritative.example".into(),
            kind: "locationValidationUnavailable".into(),
            message: Some("The HNO could not be checked.".into()),
        }]
    );
}

#[test]
fn rfc5222_errors_redirect_and_service_list() {
    let Ok(Response::Errors(e)) = read_response(doc!("rfc5222-errors.xml")) else {
        panic!()
    };
    assert_eq!(e.source, "resolver.example");
    assert_eq!(
        e.faults,
        [Fault {
            kind: ErrorKind::InternalError,
            message: Some("Software bug.".into())
        }]
    );
    assert!(e.transient());
    assert_eq!(
        e.reason(),
        "internalError from resolver.example: Software bug."
    );

    assert_eq!(
        read_response(doc!("rfc5222-redirect.xml")),
        Ok(Response::Redirect(Redirect {
            target: "eastpsap.example".into(),
            source: "westpsap.example".into(),
            message: Some("We have temporarily turned off that service.".into()),
        }))
    );

    let Ok(Response::Listed(l)) =
        read_response(doc!("rfc5222-list-services-by-location-response.xml"))
    else {
        panic!()
    };
    assert_eq!(l.services.len(), 9);
    assert_eq!(l.services[0], "urn:service:sos.ambulance");
    assert_eq!(l.services[8], "urn:service:sos.police");
    assert_eq!(l.location_used.as_deref(), Some("5415203asdf548"));
}

#[test]
fn every_error_kind_is_typed_with_a_reason() {
    for kind in ErrorKind::ALL {
        let xml = write::errors("ecrf.example", kind, "because");
        let Ok(Response::Errors(e)) = read_response(xml.as_bytes()) else {
            panic!("{xml}")
        };
        assert_eq!(e.faults[0].kind, kind);
        assert_eq!(
            e.reason(),
            format!("{} from ecrf.example: because", kind.as_str())
        );
        assert_eq!(ErrorKind::from_name(kind.as_str()), Some(kind));
    }
    // Several errors, a long message with a line break: one short line.
    let xml = format!(
        "<errors xmlns='{NS}' source='a.example'><notFound message='{}&#10;x'/><loop/></errors>",
        "m".repeat(300)
    );
    let Ok(Response::Errors(e)) = read_response(xml.as_bytes()) else {
        panic!()
    };
    let reason = e.reason();
    assert!(
        reason.starts_with("notFound+loop from a.example: mmm"),
        "{reason}"
    );
    assert!(reason.len() <= REASON_MAX);
    assert!(!reason.contains('\n'));
    assert!(!e.transient());
}

#[test]
fn ng911_responses() {
    // Boundary positions separated by commas are not GML: the boundary is
    // reported unreadable, the mapping itself is still used.
    let r = found(doc!("ng911-find-service-response-comma-positions.xml"));
    let m = &r.mappings[0];
    assert_eq!(m.uris, ["sip:nypd@example.com"]);
    let b = m.boundary.as_ref().unwrap();
    assert!(b.geodetic.is_empty());
    assert_eq!(b.unreadable.len(), 1, "{b:?}");

    let r = found(doc!("ng911-find-service-response-bronx.xml"));
    let m = &r.mappings[0];
    assert_eq!(m.uris, ["sip:bronx-psap@example.com"]);
    assert_eq!(m.boundary.as_ref().unwrap().geodetic.len(), 1);
    assert_eq!(
        r.path,
        ["ecrf-lvf.example.com", "ts-ecrf-lvf-2.example.com"]
    );
}

#[test]
fn requests_of_rfc5222_and_ng911_are_read() {
    let r = read_request(
        doc!("rfc5222-find-service-geodetic.xml"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(r.kind, RequestKind::FindService);
    assert!(r.boundary_by_value);
    assert_eq!(r.service.as_deref(), Some("urn:service:sos.police"));
    assert_eq!(r.locations[0].0, "6020688f1ce1896d");
    assert_eq!(
        r.locations[0].1,
        Ok(Location::Geodetic(Shape::Point {
            pos: p(37.775, -122.422)
        }))
    );

    let r = read_request(doc!("rfc5222-find-service-civic.xml"), &Limits::default()).unwrap();
    let Ok(Location::Civic(c)) = &r.locations[0].1 else {
        panic!()
    };
    assert_eq!(c.get("A6"), Some("Neu Perlach"));

    let r = read_request(doc!("ng911-find-service-arc-band.xml"), &Limits::default()).unwrap();
    assert!(matches!(
        r.locations[0].1,
        Ok(Location::Geodetic(Shape::ArcBand { .. }))
    ));

    let xml = format!(
        "<listServicesByLocation xmlns='{NS}'><location id='x' profile='geodetic-3d'/>\
         <service>urn:service:sos</service></listServicesByLocation>"
    );
    let r = read_request(xml.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(r.kind, RequestKind::ListServicesByLocation);
    assert_eq!(
        r.locations[0].1,
        Err(RequestLocationError::Profile("geodetic-3d".into()))
    );
}

fn shapes() -> Vec<Shape> {
    let c = p(38.8977, -77.0365);
    vec![
        Shape::Point { pos: c },
        Shape::Circle {
            center: c,
            radius_m: 25.5,
        },
        Shape::Ellipse {
            center: c,
            semi_major_m: 120.0,
            semi_minor_m: 40.0,
            orientation_deg: 33.5,
        },
        Shape::ArcBand {
            center: c,
            inner_radius_m: 100.0,
            outer_radius_m: 900.0,
            start_angle_deg: 20.0,
            opening_angle_deg: 45.0,
        },
        Shape::Polygon {
            exterior: vec![
                p(38.0, -77.0),
                p(38.1, -77.0),
                p(38.1, -77.1),
                p(38.0, -77.1),
                p(38.0, -77.0),
            ],
        },
    ]
}

fn civic() -> CivicAddress {
    let mut c: CivicAddress = [
        ("country", "US"),
        ("A1", "DC"),
        ("A3", "Washington"),
        ("RD", "Pennsylvania"),
        ("STS", "Ave"),
        ("HNO", "1600"),
        ("cae:MP", "12"),
        ("PC", "20500"),
    ]
    .into_iter()
    .collect();
    c.set_lang(Some("en-US".into()));
    c
}

#[test]
fn find_service_requests_carry_the_shape_itself() {
    let mut locations: Vec<Location> = shapes().into_iter().map(Location::Geodetic).collect();
    locations.push(Location::Civic(civic()));
    for loc in &locations {
        let xml = write::find_service(&FindService {
            location: loc,
            location_id: "loc-1",
            service: "urn:service:sos.fire",
            boundary_by_value: true,
            recursive: false,
            validate_location: false,
        });
        assert!(xml.contains("serviceBoundary=\"value\""));
        assert!(xml.contains(&format!("profile=\"{}\"", loc.profile())));
        let r = read_request(xml.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(r.service.as_deref(), Some("urn:service:sos.fire"));
        assert!(r.boundary_by_value);
        assert!(!r.validate_location);
        assert_eq!(r.locations.len(), 1);
        assert_eq!(r.locations[0].0, "loc-1");
        assert_eq!(r.locations[0].1.as_ref(), Ok(loc), "{xml}");
    }
    // Three-dimensional shapes go as their 2D counterparts.
    let sphere = Location::Geodetic(Shape::Sphere {
        center: p(1.0, 2.0),
        radius_m: 5.0,
    });
    let xml = write::find_service(&FindService {
        location: &sphere,
        location_id: "s",
        service: DEFAULT_SERVICE,
        boundary_by_value: false,
        recursive: true,
        validate_location: true,
    });
    let r = read_request(xml.as_bytes(), &Limits::default()).unwrap();
    assert!(r.validate_location, "{xml}");
    assert_eq!(
        r.locations[0].1,
        Ok(Location::Geodetic(Shape::Circle {
            center: p(1.0, 2.0),
            radius_m: 5.0
        }))
    );
    // Hostile text is escaped, not interpreted.
    let mut c = CivicAddress::new();
    c.push("country", "US");
    c.push("RD", "<x>&amp;\"'\u{1}");
    let loc = Location::Civic(c);
    let xml = write::list_services_by_location(&loc, "a\"b", "urn:service:sos");
    let r = read_request(xml.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(r.kind, RequestKind::ListServicesByLocation);
    assert_eq!(r.locations[0].0, "a\"b");
    let Ok(Location::Civic(c)) = &r.locations[0].1 else {
        panic!()
    };
    assert_eq!(c.get("RD"), Some("<x>&amp;\"'"));
}

fn mapping(expires: Expires, boundary: Option<Boundary>) -> Mapping {
    Mapping {
        expires,
        last_updated: Some(datetime!(2026-01-01 00:00:00 UTC)),
        source: "ecrf.example".into(),
        source_id: "id-1".into(),
        display_names: vec![(Some("en".into()), "County PSAP".into())],
        service: DEFAULT_SERVICE.into(),
        boundary,
        boundary_reference: None,
        uris: vec!["sip:psap@county.example".into()],
        other_uris: vec![],
        service_number: Some("911".into()),
    }
}

fn square(lat: f64, lon: f64, size: f64) -> Boundary {
    Boundary {
        geodetic: vec![Shape::Polygon {
            exterior: vec![
                p(lat, lon),
                p(lat + size, lon),
                p(lat + size, lon + size),
                p(lat, lon + size),
                p(lat, lon),
            ],
        }],
        ..Boundary::default()
    }
}

#[test]
fn responses_written_are_read_back() {
    let mut b = square(38.0, -77.1, 0.1);
    b.civic.push(civic());
    let m = mapping(Expires::At(datetime!(2026-12-08 00:00:00 UTC)), Some(b));
    let xml = write::find_service_response(
        std::slice::from_ref(&m),
        &["ecrf.example".into()],
        Some("loc-1"),
    );
    let r = found(xml.as_bytes());
    assert_eq!(r.mappings, [m]);
    assert_eq!(r.path, ["ecrf.example"]);
    assert_eq!(r.location_used.as_deref(), Some("loc-1"));

    for expires in [Expires::NoCache, Expires::NoExpiration] {
        let m = mapping(expires, None);
        let xml = write::find_service_response(std::slice::from_ref(&m), &[], None);
        assert_eq!(found(xml.as_bytes()).mappings[0].expires, expires);
    }
    let xml = write::list_services_by_location_response(
        &["urn:service:sos".into(), "urn:service:sos.police".into()],
        &["ecrf.example".into()],
        Some("x"),
    );
    let Ok(Response::Listed(l)) = read_response(xml.as_bytes()) else {
        panic!()
    };
    assert_eq!(l.services, ["urn:service:sos", "urn:service:sos.police"]);
}

fn response_with(mapping_body: &str) -> String {
    format!(
        "<findServiceResponse xmlns='{NS}'><mapping expires='NO-EXPIRATION' \
         lastUpdated='2026-01-01T00:00:00Z' source='a.example' sourceId='1'>{mapping_body}\
         </mapping><path><via source='a.example'/></path></findServiceResponse>"
    )
}

#[test]
fn broken_and_hostile_documents_are_typed_errors() {
    let kind = |xml: &[u8]| read_response(xml).map(|_| ()).unwrap_err().kind();
    // No URI, or only URIs the router cannot send a call to.
    assert_eq!(
        kind(response_with("<service>urn:service:sos</service>").as_bytes()),
        "no-sip-uri"
    );
    assert_eq!(
        kind(
            response_with(
                "<service>urn:service:sos</service><uri>xmpp:a@b</uri><uri>tel:911</uri>\
                 <uri>http://x</uri><uri>sipx</uri>"
            )
            .as_bytes()
        ),
        "no-sip-uri"
    );
    // A SIP URI that would break the Route header it goes into is no
    // routable URI.
    for bad in [
        "sip:a@b.example&#13;&#10;Via: SIP/2.0/UDP evil.example",
        "sip:a@b.example&gt;;lr&lt;sip:evil.example",
        "sip:a@b.example\"x",
        "sip:a b@example",
        "sip:",
    ] {
        let xml = response_with(&format!(
            "<service>urn:service:sos</service><uri>{bad}</uri>"
        ));
        assert_eq!(kind(xml.as_bytes()), "no-sip-uri", "{bad}");
    }
    let long = response_with(&format!(
        "<service>urn:service:sos</service><uri>sip:{}@b.example</uri>",
        "a".repeat(600)
    ));
    assert_eq!(kind(long.as_bytes()), "no-sip-uri");
    // SIPS counts, in any case of scheme.
    let ok = response_with("<service>urn:service:sos</service><uri>SIPS:a@b.example</uri>");
    assert_eq!(found(ok.as_bytes()).mappings[0].uris, ["SIPS:a@b.example"]);
    // Missing service, missing or bad expires.
    assert_eq!(
        kind(response_with("<uri>sip:a@b</uri>").as_bytes()),
        "invalid"
    );
    let bad_expires = format!(
        "<findServiceResponse xmlns='{NS}'><mapping expires='tomorrow' lastUpdated='x' \
         source='a.example' sourceId='1'><service>urn:service:sos</service><uri>sip:a@b</uri>\
         </mapping></findServiceResponse>"
    );
    assert_eq!(kind(bad_expires.as_bytes()), "invalid");
    // Wrong namespace, wrong root, not XML, empty.
    assert_eq!(
        kind(
            response_with("<service>urn:service:sos</service><uri>sip:a@b</uri>")
                .replace(NS, "urn:ietf:params:xml:ns:lost2")
                .as_bytes()
        ),
        "not-lost"
    );
    assert_eq!(
        kind(b"<findServiceResponse><mapping/></findServiceResponse>"),
        "not-lost"
    );
    assert_eq!(
        kind(format!("<findService xmlns='{NS}'/>").as_bytes()),
        "not-lost"
    );
    assert_eq!(kind(b"not xml at all"), "not-well-formed");
    assert_eq!(kind(b""), "not-well-formed");
    assert_eq!(kind(b"\xff\xfe<x/>"), "not-well-formed");
    // No mapping at all.
    assert_eq!(
        kind(format!("<findServiceResponse xmlns='{NS}'><path/></findServiceResponse>").as_bytes()),
        "invalid"
    );
    // Entities: a DTD is never read, so nothing expands.
    let billion = format!(
        "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 \
         '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]><errors xmlns='{NS}' \
         source='a.example'><notFound message='&lol2;'/></errors>"
    );
    assert_eq!(kind(billion.as_bytes()), "not-well-formed");
    let external = format!(
        "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><errors xmlns='{NS}' \
         source='a.example'><notFound message='&e;'/></errors>"
    );
    assert_eq!(kind(external.as_bytes()), "not-well-formed");
    // Too large, too deep, too many elements, mappings, URIs.
    let limits = Limits::default();
    let huge = format!(
        "<errors xmlns='{NS}' source='a.example'>{}</errors>",
        " ".repeat(limits.max_bytes)
    );
    assert_eq!(kind(huge.as_bytes()), "too-large");
    let deep = format!(
        "<errors xmlns='{NS}' source='a.example'>{}{}</errors>",
        "<x:a xmlns:x='urn:x'>".repeat(100),
        "</x:a>".repeat(100)
    );
    assert_eq!(kind(deep.as_bytes()), "too-deep");
    let small = Limits {
        max_elements: 100,
        ..limits
    };
    let many = format!(
        "<errors xmlns='{NS}' source='a.example'>{}</errors>",
        "<x:a xmlns:x='urn:x'/>".repeat(100)
    );
    assert_eq!(
        read_response_with(many.as_bytes(), &small)
            .unwrap_err()
            .kind(),
        "too-many-elements"
    );
    let one = "<mapping expires='NO-CACHE' lastUpdated='2026-01-01T00:00:00Z' source='a.example' \
               sourceId='1'><service>urn:service:sos</service><uri>sip:a@b</uri></mapping>";
    let mappings = format!(
        "<findServiceResponse xmlns='{NS}'>{}</findServiceResponse>",
        one.repeat(limits.max_mappings + 1)
    );
    assert_eq!(kind(mappings.as_bytes()), "too-many");
    let uris = response_with(&format!(
        "<service>urn:service:sos</service>{}",
        "<uri>sip:a@b</uri>".repeat(limits.max_uris + 1)
    ));
    assert_eq!(kind(uris.as_bytes()), "too-many");
    // A redirect must say where to.
    assert_eq!(
        kind(format!("<redirect xmlns='{NS}'/>").as_bytes()),
        "invalid"
    );
}

/// A small deterministic generator (xorshift), so that a failing case can
/// be replayed from its number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&[u8]] = &[
    b"<",
    b">",
    b"/>",
    b"</mapping>",
    b"<uri>sip:x@y</uri>",
    b"<mapping expires='NO-CACHE'>",
    b"&amp;",
    b"&#0;",
    b"&#x1F600;",
    b"&bogus;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"xmlns='urn:ietf:params:xml:ns:lost1'",
    b"xmlns:g='http://www.opengis.net/gml'",
    b"<g:Polygon><g:exterior><g:LinearRing><g:posList>1 2 3 4 5 6",
    b"NaN",
    b"1e999",
    b"-",
    b"\xff",
    b"\"",
    b"'",
    b"\0",
    // The civic shapes: a registered address asked about, and a civic
    // service boundary.
    b"<civicAddress xmlns='urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr'>",
    b"</civicAddress>",
    b"<A3>",
    b"</A3>",
    b"profile='civic'",
    b"<serviceBoundary profile='civic'>",
    b"<redirect xmlns='urn:ietf:params:xml:ns:lost1' target='",
    b"source=''",
];

#[test]
fn mutated_and_truncated_documents_never_panic() {
    // What the router itself sends and reads for a registered address:
    // the civic query, and an answer with a civic service boundary.
    let civic_query = write::find_service(&FindService {
        location: &Location::Civic(civic()),
        location_id: "call",
        service: DEFAULT_SERVICE,
        boundary_by_value: true,
        recursive: true,
        validate_location: false,
    });
    let civic_answer = write::find_service_response(
        &[mapping(
            Expires::NoExpiration,
            Some(Boundary {
                civic: vec![civic()],
                ..Boundary::default()
            }),
        )],
        &["ecrf.example".into()],
        Some("call"),
    );
    let seeds: &[&[u8]] = &[
        civic_query.as_bytes(),
        civic_answer.as_bytes(),
        doc!("rfc5222-find-service-civic.xml"),
        doc!("rfc5222-find-service-response-geodetic.xml"),
        doc!("rfc5222-find-service-response-civic.xml"),
        doc!("rfc5222-find-service-response-validation.xml"),
        doc!("rfc5222-errors.xml"),
        doc!("rfc5222-redirect.xml"),
        doc!("rfc5222-list-services-by-location-response.xml"),
        doc!("ng911-find-service-response-bronx.xml"),
        doc!("rfc5222-find-service-geodetic.xml"),
        doc!("ng911-find-service-arc-band.xml"),
    ];
    let limits = Limits::default();
    let mut rng = Rng(0x5EED_1057);
    let mut errors = 0;
    let mut total = 0;
    for seed in seeds {
        // Every truncation.
        for n in 0..seed.len() {
            let r = read_response(&seed[..n]);
            let q = read_request(&seed[..n], &limits);
            total += 1;
            if r.is_err() && q.is_err() {
                errors += 1;
            }
        }
        // Mutations: bytes flipped, pieces inserted, spans deleted or
        // repeated.
        for case in 0..600 {
            let mut doc = seed.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(doc.len() + 1);
                match rng.below(4) {
                    0 if !doc.is_empty() => {
                        let i = at.min(doc.len() - 1);
                        doc[i] = rng.next() as u8;
                    }
                    1 => {
                        let piece = PIECES[rng.below(PIECES.len())];
                        doc.splice(at..at, piece.iter().copied());
                    }
                    2 => {
                        let end = (at + rng.below(64)).min(doc.len());
                        doc.drain(at..end);
                    }
                    _ => {
                        let end = (at + rng.below(64)).min(doc.len());
                        let span = doc[at..end].to_vec();
                        doc.splice(at..at, span);
                    }
                }
            }
            let r = std::panic::catch_unwind(|| {
                let _ = read_request(&doc, &limits);
                read_response(&doc)
            });
            assert!(
                r.is_ok(),
                "case {case} panicked: {}",
                String::from_utf8_lossy(&doc)
            );
            total += 1;
            if let Ok(Err(e)) = r {
                // Every failure is typed and short enough for a record.
                assert!(!e.kind().is_empty());
                assert!(e.reason().len() <= REASON_MAX);
                errors += 1;
            }
        }
    }
    // Most broken documents are refused; the rest are still documents the
    // reader can stand behind.
    assert!(errors > total / 2, "{errors} of {total}");
}

#[test]
fn cache_answers_the_same_key_and_points_inside_the_boundary() {
    let now = datetime!(2026-12-07 12:00:00 UTC);
    let later = datetime!(2026-12-09 00:00:00 UTC);
    let mut cache = Cache::new(8);
    let m = Arc::new(mapping(
        Expires::At(datetime!(2026-12-08 00:00:00 UTC)),
        Some(square(38.0, -77.1, 0.1)),
    ));
    cache.insert(
        CacheKey::point(DEFAULT_SERVICE, 38.05, -77.05),
        m.clone(),
        now,
    );
    // The same point; another point inside the boundary; fresh until expiry.
    assert_eq!(
        cache.lookup_point(DEFAULT_SERVICE, 38.05, -77.05, now),
        Some(Hit::Fresh(m.clone()))
    );
    assert_eq!(
        cache.lookup_point(DEFAULT_SERVICE, 38.01, -77.09, now),
        Some(Hit::Fresh(m.clone()))
    );
    // Outside it, or another service: nothing.
    assert_eq!(cache.lookup_point(DEFAULT_SERVICE, 38.2, -77.05, now), None);
    assert_eq!(
        cache.lookup_point("urn:service:sos.police", 38.01, -77.09, now),
        None
    );
    // After expiry the mapping is still there, stale, for when the ECRF fails.
    assert_eq!(
        cache.lookup_point(DEFAULT_SERVICE, 38.01, -77.09, later),
        Some(Hit::Stale(m.clone()))
    );
    // A fresh mapping over the same area wins over the stale one, even at
    // the point the stale one was asked for.
    let newer = Arc::new(mapping(
        Expires::NoExpiration,
        Some(square(38.0, -77.1, 0.1)),
    ));
    cache.insert(
        CacheKey::point(DEFAULT_SERVICE, 38.09, -77.01),
        newer.clone(),
        now,
    );
    assert_eq!(
        cache.lookup_point(DEFAULT_SERVICE, 38.01, -77.09, later),
        Some(Hit::Fresh(newer.clone()))
    );
    assert_eq!(
        cache.lookup_point(DEFAULT_SERVICE, 38.05, -77.05, later),
        Some(Hit::Fresh(newer))
    );
    assert_eq!(
        cache.get(&CacheKey::point(DEFAULT_SERVICE, 38.05, -77.05), later),
        Some(Hit::Stale(m.clone()))
    );
    // NO-CACHE is not kept, and replaces what the key held.
    cache.insert(
        CacheKey::point(DEFAULT_SERVICE, 38.05, -77.05),
        Arc::new(mapping(Expires::NoCache, None)),
        now,
    );
    assert_eq!(
        cache.get(&CacheKey::point(DEFAULT_SERVICE, 38.05, -77.05), now),
        None
    );
}

#[test]
fn cache_keys_civic_addresses_by_their_routing_fields() {
    let now = datetime!(2026-12-07 12:00:00 UTC);
    let mut cache = Cache::new(8);
    let m = Arc::new(mapping(Expires::NoExpiration, None));
    cache.insert(CacheKey::civic(DEFAULT_SERVICE, &civic()), m.clone(), now);
    // Case, spacing, language and extra descriptive fields do not matter.
    let mut same: CivicAddress = [
        ("country", "us"),
        ("A1", "dc"),
        ("A3", " washington "),
        ("RD", "PENNSYLVANIA"),
        ("STS", "ave"),
        ("HNO", "1600"),
        ("PC", "20500"),
        ("NAM", "The White House"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        cache.lookup_civic(DEFAULT_SERVICE, &same, now),
        Some(Hit::Fresh(m))
    );
    same.push("UNIT", "B");
    assert_eq!(cache.lookup_civic(DEFAULT_SERVICE, &same, now), None);
}

#[test]
fn cache_is_bounded_and_evicts_the_least_recently_used() {
    let now = datetime!(2026-12-07 12:00:00 UTC);
    let mut cache = Cache::new(3);
    let m = Arc::new(mapping(Expires::NoExpiration, None));
    for i in 0..3 {
        cache.insert(
            CacheKey::point(DEFAULT_SERVICE, i as f64, 0.0),
            m.clone(),
            now,
        );
    }
    // Use the first, then add a fourth: the second goes.
    assert!(cache.lookup_point(DEFAULT_SERVICE, 0.0, 0.0, now).is_some());
    cache.insert(CacheKey::point(DEFAULT_SERVICE, 3.0, 0.0), m.clone(), now);
    assert_eq!(cache.len(), 3);
    assert!(cache.lookup_point(DEFAULT_SERVICE, 1.0, 0.0, now).is_none());
    for i in [0.0, 2.0, 3.0] {
        assert!(cache.lookup_point(DEFAULT_SERVICE, i, 0.0, now).is_some());
    }
    // Many more inserts never grow it past its capacity.
    for i in 0..1000 {
        cache.insert(
            CacheKey::point(DEFAULT_SERVICE, 10.0, i as f64 / 10.0),
            m.clone(),
            now,
        );
        assert!(cache.len() <= 3);
    }
}

/// A mapping told apart by its source id.
fn named(name: &str, expires: Expires, boundary: Option<Boundary>) -> Arc<Mapping> {
    let mut m = mapping(expires, boundary);
    m.source_id = name.into();
    Arc::new(m)
}

#[test]
fn cache_finds_boundaries_through_their_boxes() {
    let now = datetime!(2026-12-07 12:00:00 UTC);
    let later = datetime!(2026-12-09 00:00:00 UTC);
    let until = Expires::At(datetime!(2026-12-08 00:00:00 UTC));
    let mut cache = Cache::new(4);
    // A: a triangle whose box is the square (38, -77.1)-(38.1, -77.0); its
    // half north-west of the diagonal is outside it.
    let triangle = Boundary {
        geodetic: vec![Shape::Polygon {
            exterior: vec![
                p(38.0, -77.1),
                p(38.0, -77.0),
                p(38.1, -77.0),
                p(38.0, -77.1),
            ],
        }],
        ..Boundary::default()
    };
    cache.insert(
        CacheKey::point(DEFAULT_SERVICE, 38.01, -77.01),
        named("A", until, Some(triangle)),
        now,
    );
    // B: two squares far apart, both its boundary.
    let mut two = square(40.0, -75.0, 0.1);
    two.geodetic.extend(square(41.0, -74.0, 0.1).geodetic);
    cache.insert(
        CacheKey::point(DEFAULT_SERVICE, 40.05, -74.95),
        named("B", Expires::NoExpiration, Some(two)),
        now,
    );
    assert_eq!(cache.boxes(), 3);

    // (case, lat, lon, at, the mapping found and whether it is fresh)
    type Case<'a> = (
        &'a str,
        f64,
        f64,
        time::OffsetDateTime,
        Option<(&'a str, bool)>,
    );
    let cases: [Case<'_>; 10] = [
        ("inside A", 38.02, -77.01, now, Some(("A", true))),
        ("in A's box, outside A", 38.09, -77.09, now, None),
        ("on A's edge", 38.0, -77.05, now, Some(("A", true))),
        ("A's corner", 38.1, -77.0, now, Some(("A", true))),
        ("outside every box", 39.0, -76.0, now, None),
        ("A expired", 38.02, -77.01, later, Some(("A", false))),
        ("B's first square", 40.05, -74.92, now, Some(("B", true))),
        ("B's second square", 41.05, -73.95, now, Some(("B", true))),
        ("between B's squares", 40.5, -74.5, now, None),
        ("not a number", f64::NAN, -77.01, now, None),
    ];
    for (case, lat, lon, at, want) in cases {
        let got = cache.lookup_point(DEFAULT_SERVICE, lat, lon, at);
        let got = got.map(|h| (h.mapping().source_id.clone(), h.is_fresh()));
        assert_eq!(got, want.map(|(n, f)| (n.to_owned(), f)), "{case}");
    }

    // Replaced under the same key by a mapping with no boundary: its box
    // leaves the tree, its area answers no more.
    cache.insert(
        CacheKey::point(DEFAULT_SERVICE, 38.01, -77.01),
        named("A2", until, None),
        now,
    );
    assert_eq!(cache.boxes(), 2);
    assert_eq!(
        cache.lookup_point(DEFAULT_SERVICE, 38.02, -77.01, now),
        None
    );
    // A NO-CACHE answer takes B (and its two boxes) out.
    cache.insert(
        CacheKey::point(DEFAULT_SERVICE, 40.05, -74.95),
        named("B2", Expires::NoCache, Some(square(40.0, -75.0, 0.1))),
        now,
    );
    assert_eq!(cache.boxes(), 0);
    assert_eq!(
        cache.lookup_point(DEFAULT_SERVICE, 40.05, -74.92, now),
        None
    );

    // Evicted: four squares fill the cache; a fifth evicts the least
    // recently used, whose area then answers nothing.
    let mut cache = Cache::new(4);
    for i in 0..4 {
        let lat = 30.0 + f64::from(i);
        cache.insert(
            CacheKey::point(DEFAULT_SERVICE, lat + 0.05, -80.05),
            named(&format!("S{i}"), until, Some(square(lat, -80.1, 0.1))),
            now,
        );
    }
    assert_eq!(cache.boxes(), 4);
    // S0 used, so S1 is the oldest.
    assert!(cache
        .lookup_point(DEFAULT_SERVICE, 30.02, -80.02, now)
        .is_some());
    cache.insert(
        CacheKey::point(DEFAULT_SERVICE, 50.05, -80.05),
        named("S4", until, Some(square(50.0, -80.1, 0.1))),
        now,
    );
    assert_eq!((cache.len(), cache.boxes()), (4, 4));
    let found = |cache: &mut Cache, lat: f64| {
        cache
            .lookup_point(DEFAULT_SERVICE, lat, -80.02, now)
            .map(|h| h.mapping().source_id.clone())
    };
    assert_eq!(found(&mut cache, 31.02), None);
    for (lat, name) in [(30.02, "S0"), (32.02, "S2"), (33.02, "S3"), (50.02, "S4")] {
        assert_eq!(found(&mut cache, lat).as_deref(), Some(name));
    }
    // Many more: the tree never holds more boxes than the cache holds
    // boundaries.
    for i in 0..200 {
        let lat = -60.0 + f64::from(i) * 0.5;
        cache.insert(
            CacheKey::point(DEFAULT_SERVICE, lat + 0.05, 10.05),
            named("n", until, Some(square(lat, 10.0, 0.1))),
            now,
        );
        assert_eq!(cache.boxes(), cache.len());
    }
    assert_eq!(found(&mut cache, 30.02), None);
}
