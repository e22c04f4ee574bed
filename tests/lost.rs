//! The router's LoST server (`POST /lost` on the admin listener) through
//! the real binary: answers from the shipped service-area data, LoST errors
//! for what it cannot answer, and every response valid against RFC 5222's
//! RELAX NG schema (`tests/lost/lost.rng`, checked with `xmllint`).

mod adminhttp;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http_port, lab_config, root, tempdir, ClosedPort, Router};
use sosrouter::lost::{self, read_response, ErrorKind, Response};

const NS: &str = "urn:ietf:params:xml:ns:lost1";

fn server() -> (Router, u16) {
    let closed = ClosedPort::new();
    let text = lab_config(
        closed.port,
        closed.port,
        closed.port,
        closed.port,
        r#"
[admin]
listen = "127.0.0.1:0"

[emergency.lost]
serve = true
source = "ecrf.sosrouter.example"
expires_s = 3600
"#,
    );
    let router = Router::start(&text, &[]);
    let port = http_port(&router, "admin");
    (router, port)
}

/// A plain HTTP POST: (status, content type, body).
fn post(port: u16, content_type: &str, body: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /lost HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // A body larger than the server reads may be cut short by its answer.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let buf = String::from_utf8_lossy(&buf).into_owned();
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, ctype, body.to_owned())
}

/// Whether `xmllint` is here (installed by `.ci/run`).
fn require_xmllint() {
    let ok = Command::new("xmllint")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "xmllint is missing: apt-get install libxml2-utils");
}

/// Validates `xml` against RFC 5222's schema with `xmllint`.
fn assert_schema_valid(dir: &Path, name: &str, xml: &str) {
    let file = dir.join(name);
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--relaxng")
        .arg(root().join("tests/lost/lost.rng"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} is not valid LoST: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find_service(location: &str, service: &str) -> String {
    format!(
        "<?xml version='1.0'?>\n<findService xmlns='{NS}' xmlns:gml='http://www.opengis.net/gml' \
         xmlns:gs='http://www.opengis.net/pidflo/1.0' serviceBoundary='value'>\
         {location}<service>{service}</service></findService>"
    )
}

const SF_POINT: &str = "<location id='sf' profile='geodetic-2d'><gml:Point \
     srsName='urn:ogc:def:crs:EPSG::4326'><gml:pos>37.7749 -122.4194</gml:pos></gml:Point></location>";

#[test]
fn the_router_answers_lost_queries_from_its_service_areas() {
    require_xmllint();
    let dir = tempdir::Dir::new("lost-server");
    let (_router, port) = server();
    let mut n = 0;
    let mut valid = |xml: &str| {
        n += 1;
        assert_schema_valid(dir.path(), &format!("answer-{n}.xml"), xml);
    };

    // A point in San Francisco: its county's PSAP.
    let (status, ctype, body) = post(
        port,
        "application/lost+xml",
        find_service(SF_POINT, "urn:service:sos").as_bytes(),
    );
    assert_eq!(
        (status, ctype.as_str()),
        (200, lost::CONTENT_TYPE),
        "{body}"
    );
    valid(&body);
    let Ok(Response::Found(r)) = read_response(body.as_bytes()) else {
        panic!("{body}")
    };
    let m = &r.mappings[0];
    assert_eq!(m.uris, ["sip:sos@us-06075.psap.example"]);
    assert_eq!(m.source, "ecrf.sosrouter.example");
    assert_eq!(m.source_id, "US-06075:SYN-US-06075");
    assert_eq!(m.service, "urn:service:sos");
    assert_eq!(m.service_number.as_deref(), Some("911"));
    assert!(m.display_name().unwrap().contains("San Francisco"));
    let lost::Expires::At(expires) = m.expires else {
        panic!("{:?}", m.expires)
    };
    let ahead = expires - time::OffsetDateTime::now_utc();
    assert!(
        ahead > time::Duration::minutes(50) && ahead <= time::Duration::hours(1),
        "{ahead}"
    );
    assert_eq!(r.path, ["ecrf.sosrouter.example"]);
    assert_eq!(r.location_used.as_deref(), Some("sf"));
    // San Francisco County's outline is the service boundary, holding
    // the point.
    let b = m.boundary.as_ref().expect("a service boundary");
    let [sosrouter::pidf::Shape::Polygon { exterior }] = b.geodetic.as_slice() else {
        panic!("{b:?}")
    };
    let ring: Vec<geo::Coord<f64>> = exterior
        .iter()
        .map(|p| geo::Coord { x: p.lon, y: p.lat })
        .collect();
    assert!(ring.len() > 3, "{ring:?}");
    assert!(geo::Intersects::intersects(
        &geo::Polygon::new(ring.into(), vec![]),
        &geo::Coord {
            x: -122.4194,
            y: 37.7749
        }
    ));

    // Every RFC 5491 shape is taken, by its point of routing; a
    // sub-service is answered for.
    let shapes = [
        "<gs:Circle srsName='urn:ogc:def:crs:EPSG::4326'><gml:pos>37.7749 -122.4194</gml:pos>\
         <gs:radius uom='urn:ogc:def:uom:EPSG::9001'>50</gs:radius></gs:Circle>",
        "<gs:Ellipse srsName='urn:ogc:def:crs:EPSG::4326'><gml:pos>37.7749 -122.4194</gml:pos>\
         <gs:semiMajorAxis uom='urn:ogc:def:uom:EPSG::9001'>90</gs:semiMajorAxis>\
         <gs:semiMinorAxis uom='urn:ogc:def:uom:EPSG::9001'>30</gs:semiMinorAxis>\
         <gs:orientation uom='urn:ogc:def:uom:EPSG::9102'>10</gs:orientation></gs:Ellipse>",
        "<gs:ArcBand srsName='urn:ogc:def:crs:EPSG::4326'><gml:pos>37.7749 -122.4194</gml:pos>\
         <gs:innerRadius uom='urn:ogc:def:uom:EPSG::9001'>100</gs:innerRadius>\
         <gs:outerRadius uom='urn:ogc:def:uom:EPSG::9001'>300</gs:outerRadius>\
         <gs:startAngle uom='urn:ogc:def:uom:EPSG::9102'>10</gs:startAngle>\
         <gs:openingAngle uom='urn:ogc:def:uom:EPSG::9102'>30</gs:openingAngle></gs:ArcBand>",
        "<gml:Polygon srsName='urn:ogc:def:crs:EPSG::4326'><gml:exterior><gml:LinearRing>\
         <gml:posList>37.77 -122.42 37.78 -122.42 37.78 -122.41 37.77 -122.41 37.77 -122.42\
         </gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>",
    ];
    for shape in shapes {
        let loc = format!("<location id='s' profile='geodetic-2d'>{shape}</location>");
        let (status, _, body) = post(
            port,
            "application/lost+xml",
            find_service(&loc, "urn:service:sos.police").as_bytes(),
        );
        assert_eq!(status, 200);
        valid(&body);
        let Ok(Response::Found(r)) = read_response(body.as_bytes()) else {
            panic!("{shape}: {body}")
        };
        assert_eq!(
            r.mappings[0].uris,
            ["sip:sos@us-06075.psap.example"],
            "{shape}"
        );
        assert_eq!(r.mappings[0].service, "urn:service:sos.police");
    }

    // A civic address, by state and county.
    let civic = "<location id='c' profile='civic'><civicAddress \
        xmlns='urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr'><country>US</country><A1>CA</A1>\
        <A2>San Francisco</A2><A3>San Francisco</A3><RD>Market</RD><HNO>1</HNO></civicAddress></location>";
    let (_, _, body) = post(
        port,
        "application/lost+xml",
        find_service(civic, "urn:service:sos").as_bytes(),
    );
    valid(&body);
    let Ok(Response::Found(r)) = read_response(body.as_bytes()) else {
        panic!("{body}")
    };
    assert_eq!(r.mappings[0].uris, ["sip:sos@us-06075.psap.example"]);

    // validateLocation: the civic elements checked against the
    // gazetteer; a point gets a warning instead.
    let validate = |loc: &str| {
        find_service(loc, "urn:service:sos").replacen(
            "serviceBoundary='value'",
            "validateLocation='true'",
            1,
        )
    };
    let (_, _, body) = post(port, "application/lost+xml", validate(civic).as_bytes());
    valid(&body);
    let Ok(Response::Found(r)) = read_response(body.as_bytes()) else {
        panic!("{body}")
    };
    let v = r.validation.expect("locationValidation");
    assert_eq!(v.valid, ["country", "A1", "A2", "A3"], "{body}");
    assert_eq!(v.unchecked, ["RD", "HNO"], "{body}");
    assert!(v.invalid.is_empty(), "{body}");
    let wrong = civic.replace("<A3>San Francisco</A3>", "<A3>Denver</A3><PC>80203</PC>");
    let (_, _, body) = post(port, "application/lost+xml", validate(&wrong).as_bytes());
    valid(&body);
    let Ok(Response::Found(r)) = read_response(body.as_bytes()) else {
        panic!("{body}")
    };
    assert_eq!(r.validation.unwrap().invalid, ["A3", "PC", "A1"], "{body}");
    let (_, _, body) = post(port, "application/lost+xml", validate(SF_POINT).as_bytes());
    valid(&body);
    let Ok(Response::Found(r)) = read_response(body.as_bytes()) else {
        panic!("{body}")
    };
    assert_eq!(r.validation, None);
    assert_eq!(
        r.warnings[0].kind, "locationValidationUnavailable",
        "{body}"
    );

    // listServicesByLocation.
    let list = format!(
        "<listServicesByLocation xmlns='{NS}' xmlns:gml='http://www.opengis.net/gml'>{SF_POINT}\
         <service>urn:service:sos</service></listServicesByLocation>"
    );
    let (status, _, body) = post(port, "application/lost+xml", list.as_bytes());
    assert_eq!(status, 200);
    valid(&body);
    let Ok(Response::Listed(l)) = read_response(body.as_bytes()) else {
        panic!("{body}")
    };
    assert_eq!(l.services, ["urn:service:sos"]);
    assert_eq!(l.location_used.as_deref(), Some("sf"));
}

#[test]
fn what_the_server_cannot_answer_is_a_lost_error() {
    require_xmllint();
    let dir = tempdir::Dir::new("lost-errors");
    let (_router, port) = server();
    let open_sea = "<location id='sea' profile='geodetic-2d'><gml:Point><gml:pos>0 -140</gml:pos>\
         </gml:Point></location>";
    let bad_point = "<location id='bad' profile='geodetic-2d'><gml:Point><gml:pos>95 0</gml:pos>\
         </gml:Point></location>";
    let unknown = "<location id='u' profile='geodetic-3d'><gml:Point><gml:pos>1 2 3</gml:pos>\
         </gml:Point></location>";
    let with_path = format!(
        "<findService xmlns='{NS}' xmlns:gml='http://www.opengis.net/gml'>{SF_POINT}\
         <service>urn:service:sos</service><path><via source='ecrf.sosrouter.example'/></path>\
         </findService>"
    );
    let cases: Vec<(String, ErrorKind)> = vec![
        (
            find_service(open_sea, "urn:service:sos"),
            ErrorKind::NotFound,
        ),
        (
            find_service(bad_point, "urn:service:sos"),
            ErrorKind::LocationInvalid,
        ),
        (
            find_service(unknown, "urn:service:sos"),
            ErrorKind::LocationProfileUnrecognized,
        ),
        (
            find_service(SF_POINT, "urn:service:counseling"),
            ErrorKind::ServiceNotImplemented,
        ),
        (with_path, ErrorKind::Loop),
        ("<findService/>".to_owned(), ErrorKind::BadRequest),
        ("not xml".to_owned(), ErrorKind::BadRequest),
        (
            format!("<!DOCTYPE x [<!ENTITY a 'b'>]><findService xmlns='{NS}'>&a;</findService>"),
            ErrorKind::BadRequest,
        ),
    ];
    for (n, (request, want)) in cases.iter().enumerate() {
        let (status, ctype, body) = post(port, "application/lost+xml", request.as_bytes());
        assert_eq!(
            (status, ctype.as_str()),
            (200, lost::CONTENT_TYPE),
            "{request}: {body}"
        );
        assert_schema_valid(dir.path(), &format!("error-{n}.xml"), &body);
        let Ok(Response::Errors(e)) = read_response(body.as_bytes()) else {
            panic!("{request}: {body}")
        };
        assert_eq!(e.faults[0].kind, *want, "{request}: {body}");
        assert_eq!(e.source, "ecrf.sosrouter.example");
    }

    // A body of another type, or too large: refused with a LoST error.
    let (status, _, body) = post(port, "application/json", b"{}");
    assert_eq!(status, 415);
    assert_schema_valid(dir.path(), "415.xml", &body);
    let big = find_service(SF_POINT, &"x".repeat(70 * 1024));
    let (status, _, body) = post(port, "application/lost+xml", big.as_bytes());
    assert_eq!(status, 413);
    assert_schema_valid(dir.path(), "413.xml", &body);
}

/// The client half of LoST in a call's path, against the router's own
/// server: the query and its answer, a fresh cached mapping that needs no
/// query, then the server gone: the expired mapping routes; with no cache,
/// the embedded data; a server that never answers ends at the deadline.
#[test]
fn a_failing_ecrf_falls_back_to_the_cache_then_the_embedded_data() {
    use sosrouter::held::{client, host_allowed, lost_query, ClientTls, FetchError};
    use sosrouter::lost::route::{plan, settle, DecidedBy, Plan};
    use sosrouter::lost::{Cache, Location, DEFAULT_SERVICE};
    use sosrouter::pidf::{Position, Shape};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (router, port) = server();
    let url = format!("http://127.0.0.1:{port}/lost");
    let listed: std::sync::Arc<[String]> = vec!["127.0.0.1".to_owned()].into();
    // The destination policy of location fetches holds for ECRFs: loopback
    // only when listed.
    assert!(host_allowed(&url, Some(&listed)));
    assert!(!host_allowed(&url, None));
    let http = client(Some(listed), &ClientTls::default()).unwrap();
    let deadline = Duration::from_secs(10);
    let location = Location::Geodetic(Shape::Point {
        pos: Position {
            lat: 37.7749,
            lon: -122.4194,
            alt: None,
        },
    });
    let now = time::OffsetDateTime::now_utc();
    let mut cache = Cache::new(64);

    let Plan::Ask { body } = plan(&mut cache, &location, DEFAULT_SERVICE, "call-1", now) else {
        panic!("nothing cached yet")
    };
    let answer = rt.block_on(lost_query(&http, &url, body, deadline));
    let answer = answer.map_err(|e| e.to_string());
    let o = settle(
        &mut cache,
        &location,
        DEFAULT_SERVICE,
        answer.as_deref().map_err(Clone::clone),
        now,
    );
    assert_eq!(o.decided_by, DecidedBy::Lost, "{:?}", o.why);
    assert_eq!(o.mapping.unwrap().uris, ["sip:sos@us-06075.psap.example"]);

    // The next call: the mapping is fresh (an hour), no query.
    let Plan::Cached(m) = plan(&mut cache, &location, DEFAULT_SERVICE, "call-2", now) else {
        panic!("cached")
    };
    assert_eq!(m.uris, ["sip:sos@us-06075.psap.example"]);

    // The ECRF stops; two hours on the mapping has expired: asked again,
    // refused, routed on the expired mapping.
    drop(router);
    let later = now + time::Duration::hours(2);
    let Plan::Ask { body } = plan(&mut cache, &location, DEFAULT_SERVICE, "call-3", later) else {
        panic!("expired")
    };
    let failed = rt.block_on(lost_query(&http, &url, body.clone(), deadline));
    // Refused, or the pooled connection to the stopped ECRF cut short.
    let why = match &failed {
        Err(e @ (FetchError::Refused(_) | FetchError::Failed(_))) => e.to_string(),
        other => panic!("{other:?}"),
    };
    let o = settle(
        &mut cache,
        &location,
        DEFAULT_SERVICE,
        Err(why.clone()),
        later,
    );
    assert_eq!(o.decided_by, DecidedBy::LostStale);
    assert_eq!(o.mapping.unwrap().uris, ["sip:sos@us-06075.psap.example"]);
    assert!(o.why.unwrap().starts_with("request failed"));

    // A router with no cache: the embedded data decides.
    let mut empty = Cache::new(64);
    let o = settle(
        &mut empty,
        &location,
        DEFAULT_SERVICE,
        Err(why.clone()),
        later,
    );
    assert_eq!((o.decided_by, o.mapping), (DecidedBy::Embedded, None));

    // An ECRF that takes the connection and never answers: the query ends
    // at its deadline, as a timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/lost", silent.local_addr().unwrap());
    let r = rt.block_on(lost_query(
        &http,
        &silent_url,
        body,
        Duration::from_millis(300),
    ));
    assert!(matches!(r, Err(FetchError::Timeout(_))), "{r:?}");
    drop(silent);
}

// ---- LoST in the call path, through two running routers ----

use common::{get, metric, Answer, RawTrunk};

/// The shipped lab configuration with its ports moved to the test's
/// trunks and port 0 for the router's listeners.
fn lab_text(trunks: &[&RawTrunk; 4]) -> String {
    let mut text = std::fs::read_to_string(root().join("config/loopback.toml"))
        .unwrap()
        .replace("advertise = \"127.0.0.1:5060\"\n", "");
    let moves = [
        ("127.0.0.1:5060", 0),
        ("127.0.0.1:5070", trunks[0].port),
        ("127.0.0.1:5080", trunks[1].port),
        ("127.0.0.1:5090", trunks[2].port),
        ("127.0.0.1:5095", trunks[3].port),
        ("127.0.0.1:8080", 0),
        ("127.0.0.1:9090", 0),
    ];
    for (i, (from, _)) in moves.iter().enumerate() {
        text = text.replace(from, &format!("@LAB{i}@"));
    }
    for (i, (_, port)) in moves.iter().enumerate() {
        text = text.replace(&format!("@LAB{i}@"), &format!("127.0.0.1:{port}"));
    }
    assert!(text.contains("[emergency]\n"));
    text
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// The INVITE of call `cid` arriving at `trunk`.
fn invite_for(trunk: &RawTrunk, cid: &str, within: Duration) -> Option<String> {
    let end = std::time::Instant::now() + within;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        let m = trunk.next("INVITE", left)?;
        if header(&m, "Call-ID").first() == Some(&cid) {
            return Some(m);
        }
    }
    None
}

/// The corpus call from Denver with a GPS point (trusted: routed by its own
/// location), under a Call-ID and branch of its own.
fn denver_call(n: u32) -> (String, String) {
    let text =
        std::fs::read_to_string(root().join("tests/corpus/emergency-invites/c02-us-geo-point.sip"))
            .unwrap();
    let cid = format!("lost-{n}@192.0.2.20");
    let text = text.replace("c02-41aa90@192.0.2.20", &cid).replace(
        "branch=z9hG4bKc02a",
        &format!("branch=z9hG4bKc02a-lost-{n}"),
    );
    (text, cid)
}

/// [`denver_call`] from another point of Denver County (a string of the
/// same length as the corpus call's, so its lengths still hold).
fn denver_call_at(n: u32, pos: &str) -> (String, String) {
    assert_eq!(pos.len(), "39.7392 -104.9903".len());
    let (text, cid) = denver_call(n);
    let moved = text.replace("39.7392 -104.9903", pos);
    assert_ne!(text, moved);
    (moved, cid)
}

/// The ECRF: a second router whose own PSAP data gives Denver and San
/// Francisco other URIs,
/// so that a call routed by its answer is told apart from one routed by
/// the caller's router's embedded data.
fn ecrf(dir: &Path) -> (Router, u16) {
    ecrf_expiring(dir, 3600)
}

/// [`ecrf`], whose mappings expire `expires_s` seconds after its answer.
fn ecrf_expiring(dir: &Path, expires_s: u64) -> (Router, u16) {
    let psaps = std::fs::read_to_string(root().join("data/psaps.json")).unwrap();
    let changed = psaps
        .replace(
            "sip:sos@us-08031.psap.example",
            "sip:ecrf-denver@psap.ecrf.example",
        )
        .replace(
            "sip:sos@us-06075.psap.example",
            "sip:ecrf-sf@psap.ecrf.example",
        );
    assert_eq!(changed.matches("psap.ecrf.example").count(), 2);
    std::fs::write(dir.join("psaps.json"), changed).unwrap();
    let closed = ClosedPort::new();
    let text = lab_config(
        closed.port,
        closed.port,
        closed.port,
        closed.port,
        &format!(
            "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[emergency]\nservice_areas = {:?}\n\n\
             [emergency.lost]\nserve = true\nsource = \"ecrf.example\"\nexpires_s = {expires_s}\n",
            dir.display().to_string()
        ),
    );
    let router = Router::start(&text, &[]);
    let port = http_port(&router, "admin");
    (router, port)
}

fn caller_router(trunks: &[&RawTrunk; 4], ecrf_port: u16) -> Router {
    caller_router_with(trunks, ecrf_port, 3000)
}

fn caller_router_with(trunks: &[&RawTrunk; 4], ecrf_port: u16, timeout_ms: u64) -> Router {
    let text = lab_text(trunks).replacen(
        "[emergency]\n",
        "[emergency]\nlocation_servers = [\"127.0.0.1\"]\n",
        1,
    ) + &format!(
        "\n[emergency.lost]\necrf = \"http://127.0.0.1:{ecrf_port}/lost\"\ntimeout_ms = {timeout_ms}\n"
    );
    Router::start(&text, &[])
}

/// Sends `call` (its text and Call-ID) to `router` from `udp` and gives
/// the Route header of the INVITE that reaches the PSAP trunk `psap`.
fn route_of_call(
    router: &Router,
    psap: &RawTrunk,
    udp: &std::net::UdpSocket,
    (text, cid): (String, String),
) -> String {
    udp.send_to(text.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let fwd = invite_for(psap, &cid, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{cid} did not reach the PSAP trunk: {}", router.log()));
    header(&fwd, "Route").join(",")
}

fn lost_routes(router: &Router, by: &str) -> f64 {
    let (_, text) = get(http_port(router, "metrics"), "/metrics");
    metric(&text, "sosrouter_lost_routes_total", &[("by", by)])
}

#[test]
fn a_call_is_routed_by_the_ecrf_then_by_its_cache_then_by_the_embedded_data() {
    let dir = tempdir::Dir::new("lost-ecrf");
    let (ecrf_router, ecrf_port) = ecrf(dir.path());
    let trunks = [Answer::Ok; 4].map(RawTrunk::start);
    let [psap, ..] = &trunks;
    let refs = trunks.each_ref();
    let router = caller_router(&refs, ecrf_port);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let route_of = |n: u32| route_of_call(&router, psap, &udp, denver_call(n));

    // The ECRF's answer routes the call.
    let route = route_of(1);
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost"), 1.0);

    // The ECRF stops: the next call is routed by the cached mapping,
    // fresh for an hour, without a query.
    drop(ecrf_router);
    let route = route_of(2);
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost-cache"), 1.0);

    // A new router with nothing cached and the ECRF down: the embedded
    // data routes the call, to the PSAP its own records give.
    drop(router);
    let router = caller_router(&refs, ecrf_port);
    let (text, cid) = denver_call(3);
    udp.send_to(text.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let fwd = invite_for(psap, &cid, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{}", router.log()));
    let route = header(&fwd, "Route").join(",");
    assert!(route.contains("sip:sos@us-08031.psap.example"), "{route}");
    assert_eq!(lost_routes(&router, "embedded"), 1.0);
    // Info lines reach the log a moment after the call is sent on.
    router.wait_log("PSAP chosen with LoST", 1, Duration::from_secs(5));
    assert!(
        router.log().contains("PSAP chosen with LoST"),
        "{}",
        router.log()
    );
}

/// A mapping in use is asked for again before it expires, while the calls
/// route on it: with the ECRF's mappings expiring 16 s after its answer
/// (so from 15 s after the caller's router stores it, as the answer's time
/// is written to the second), a call 12.5 s after the first finds it in
/// the last quarter of its life, is routed on it at once, and has it
/// refreshed. The ECRF then stops: a call after the first mapping's
/// expiry is still routed on a fresh mapping, the refreshed one, without
/// waiting for the ECRF.
#[test]
fn a_mapping_in_use_is_refreshed_in_the_background_before_it_expires() {
    let dir = tempdir::Dir::new("lost-refresh");
    let (ecrf_router, ecrf_port) = ecrf_expiring(dir.path(), 16);
    let trunks = [Answer::Ok; 4].map(RawTrunk::start);
    let [psap, ..] = &trunks;
    let refs = trunks.each_ref();
    let router = caller_router(&refs, ecrf_port);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let route_of = |n: u32| route_of_call(&router, psap, &udp, denver_call(n));
    let metrics = || get(http_port(&router, "metrics"), "/metrics").1;
    let refreshes = |outcome: &str| {
        metric(
            &metrics(),
            "sosrouter_lost_refreshes_total",
            &[("outcome", outcome)],
        )
    };

    let route = route_of(1);
    let stored = Instant::now();
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost"), 1.0);

    // Not yet in its last quarter: routed on it, nothing asked.
    let route = route_of(2);
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost-cache"), 1.0);
    assert_eq!(refreshes("ok"), 0.0);

    // In its last quarter: routed on it, and refreshed.
    std::thread::sleep(Duration::from_millis(12_500).saturating_sub(stored.elapsed()));
    let route = route_of(3);
    assert!(
        stored.elapsed() < Duration::from_secs(15),
        "the machine was too slow for this test's timing"
    );
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost-cache"), 2.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while refreshes("ok") < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(refreshes("ok"), 1.0, "{}", metrics());
    assert_eq!(
        metric(
            &metrics(),
            "sosrouter_lost_queries_total",
            &[("outcome", "ok")]
        ),
        2.0,
        "one query for the first call, one refresh"
    );

    // The ECRF stops. Past the first mapping's expiry, a call is routed on
    // the refreshed mapping, fresh: not on a stale one after waiting.
    drop(ecrf_router);
    std::thread::sleep(Duration::from_millis(17_000).saturating_sub(stored.elapsed()));
    let route = route_of(4);
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost-cache"), 3.0, "{}", metrics());
    assert_eq!(lost_routes(&router, "lost-stale"), 0.0);
}

/// An ECRF that takes the connection and never answers holds a call no
/// longer than `timeout_ms`: the call is then routed on the embedded data.
#[test]
fn a_silent_ecrf_delays_the_call_only_until_its_deadline() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let trunks = [Answer::Ok; 4].map(RawTrunk::start);
    let refs = trunks.each_ref();
    let router = caller_router_with(&refs, silent.local_addr().unwrap().port(), 300);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (text, cid) = denver_call(10);
    udp.send_to(text.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let fwd = invite_for(&trunks[0], &cid, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{}", router.log()));
    let route = header(&fwd, "Route").join(",");
    assert!(route.contains("sip:sos@us-08031.psap.example"), "{route}");
    assert_eq!(lost_routes(&router, "embedded"), 1.0);
    let (_, text) = get(http_port(&router, "metrics"), "/metrics");
    assert_eq!(
        metric(
            &text,
            "sosrouter_lost_queries_total",
            &[("outcome", "timeout")]
        ),
        1.0,
        "{text}"
    );
    drop(silent);
}

/// The ECRF's answer carries Denver County's outline as its service
/// boundary: with the ECRF gone, a call from another point of the county
/// is routed on the cached mapping, with no query.
#[test]
fn a_second_point_inside_the_boundary_is_routed_from_the_cache() {
    let dir = tempdir::Dir::new("lost-boundary");
    let (ecrf_router, ecrf_port) = ecrf(dir.path());
    let trunks = [Answer::Ok; 4].map(RawTrunk::start);
    let refs = trunks.each_ref();
    let router = caller_router(&refs, ecrf_port);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let route_of = |call: (String, String)| route_of_call(&router, &trunks[0], &udp, call);
    let queries = |outcome: &str| {
        let (_, text) = get(http_port(&router, "metrics"), "/metrics");
        metric(
            &text,
            "sosrouter_lost_queries_total",
            &[("outcome", outcome)],
        )
    };

    let route = route_of(denver_call(20));
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost"), 1.0);
    assert_eq!(queries("ok"), 1.0);

    // Some 5 km away, still in the county: the boundary answers.
    drop(ecrf_router);
    let route = route_of(denver_call_at(21, "39.7600 -104.9500"));
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost-cache"), 1.0);
    assert_eq!(queries("ok"), 1.0);
    assert_eq!(queries("failed"), 0.0);

    // Outside the county (Aurora, Arapahoe County): asked, the ECRF is
    // gone, the embedded data routes.
    let route = route_of(denver_call_at(22, "39.7000 -104.8000"));
    assert!(!route.contains("ecrf.example"), "{route}");
    assert_eq!(lost_routes(&router, "embedded"), 1.0);
    assert_eq!(queries("failed"), 1.0);
}

// ---- redirects (RFC 5222 s13.3) ----

/// A small LoST server on loopback that answers every query with a
/// `<redirect>`, its target chosen by the request's path: `/to/PORT` to
/// the LoST server at that port, `/loop` to itself, `/hop/N` to
/// `/hop/N+1`, `/away` to a host no listed location server allows. It
/// serves until dropped.
struct Redirector {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Redirector {
    fn start() -> Redirector {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (stop2, asked2) = (stop.clone(), asked.clone());
        let thread = std::thread::spawn(move || {
            let end = std::time::Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let Some(path) = read_request(&mut s) else {
                    continue;
                };
                asked2.lock().unwrap().push(path.clone());
                let target = if let Some(p) = path.strip_prefix("/to/") {
                    format!("http://127.0.0.1:{p}/lost")
                } else if path == "/loop" {
                    format!("http://127.0.0.1:{port}/loop")
                } else if let Some(n) = path.strip_prefix("/hop/") {
                    let n: u32 = n.parse().unwrap_or(0);
                    format!("http://127.0.0.1:{port}/hop/{}", n + 1)
                } else {
                    "https://ecrf.elsewhere.example/lost".to_owned()
                };
                let body = format!(
                    "<?xml version='1.0'?>\n<redirect xmlns='{NS}' target='{target}' \
                     source='redirector.example' message='ask there' xml:lang='en'/>\n"
                );
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/lost+xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Redirector {
            port,
            stop,
            asked,
            thread: Some(thread),
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP request (head and Content-Length body): its path.
fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 16 * 1024 || s.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(64 * 1024)];
    s.read_exact(&mut body).ok()?;
    head.split(' ').nth(1).map(str::to_owned)
}

fn caller_router_at(trunks: &[&RawTrunk; 4], ecrf: &str) -> Router {
    let text = lab_text(trunks).replacen(
        "[emergency]\n",
        "[emergency]\nlocation_servers = [\"127.0.0.1\"]\n",
        1,
    ) + &format!("\n[emergency.lost]\necrf = \"{ecrf}\"\ntimeout_ms = 3000\n");
    Router::start(&text, &[])
}

/// The ECRF redirects to another LoST server: the router asks it, and its
/// answer routes the call. A redirect that loops, goes on too long, or
/// leads to a host the destination policy refuses ends in the fallback
/// order (here the embedded data), with the reason in the call's log line
/// and metrics.
#[test]
fn redirects_are_followed_within_a_hop_limit_and_the_destination_policy() {
    let dir = tempdir::Dir::new("lost-redirect");
    let (_ecrf_router, ecrf_port) = ecrf(dir.path());
    let redirector = Redirector::start();
    let trunks = [Answer::Ok; 4].map(RawTrunk::start);
    let refs = trunks.each_ref();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", redirector.port);

    // (path the caller's router asks first, the reason when the redirect
    // is not followed, redirects received, the paths the redirector saw)
    type Case = (
        String,
        Option<(&'static str, &'static str)>,
        f64,
        Vec<String>,
    );
    let cases: [Case; 4] = [
        (
            format!("/to/{ecrf_port}"),
            None,
            1.0,
            vec![format!("/to/{ecrf_port}")],
        ),
        (
            "/loop".to_owned(),
            Some((
                "redirect_loop",
                "loop from sosrouter.lab.example: redirect loop",
            )),
            1.0,
            vec!["/loop".to_owned()],
        ),
        (
            "/hop/0".to_owned(),
            Some((
                "redirect_hops",
                "loop from sosrouter.lab.example: more than 3 redirects",
            )),
            4.0,
            (0..4).map(|n| format!("/hop/{n}")).collect(),
        ),
        (
            "/away".to_owned(),
            Some((
                "redirect_refused",
                "forbidden from sosrouter.lab.example: redirect refused by the destination policy",
            )),
            1.0,
            vec!["/away".to_owned()],
        ),
    ];
    for (n, (path, stop, redirects, seen)) in cases.into_iter().enumerate() {
        let before = redirector.asked().len();
        let router = caller_router_at(&refs, &format!("{base}{path}"));
        let (text, cid) = denver_call(30 + n as u32);
        udp.send_to(text.as_bytes(), ("127.0.0.1", router.port))
            .unwrap();
        let fwd = invite_for(&trunks[0], &cid, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{path}: {}", router.log()));
        let route = header(&fwd, "Route").join(",");
        let (_, metrics) = get(http_port(&router, "metrics"), "/metrics");
        let queries = |outcome: &str| {
            metric(
                &metrics,
                "sosrouter_lost_queries_total",
                &[("outcome", outcome)],
            )
        };
        assert_eq!(queries("redirect"), redirects, "{path}: {metrics}");
        assert_eq!(redirector.asked()[before..], seen[..], "{path}");
        router.wait_log("PSAP chosen with LoST", 1, Duration::from_secs(5));
        let log = router.log();
        match stop {
            None => {
                assert!(
                    route.contains("sip:ecrf-denver@psap.ecrf.example"),
                    "{path}: {route}"
                );
                assert_eq!(lost_routes(&router, "lost"), 1.0, "{path}");
                assert_eq!(queries("ok"), 1.0, "{path}");
            }
            Some((outcome, why)) => {
                assert!(
                    route.contains("sip:sos@us-08031.psap.example"),
                    "{path}: {route}"
                );
                assert_eq!(lost_routes(&router, "embedded"), 1.0, "{path}");
                assert_eq!(queries(outcome), 1.0, "{path}: {metrics}");
                assert_eq!(queries("ok"), 0.0, "{path}");
                let line = log
                    .lines()
                    .find(|l| l.contains("PSAP chosen with LoST"))
                    .unwrap_or_default();
                assert!(line.contains(why), "{path}: {line}");
            }
        }
    }
}

/// A Common Area Phone calling without a location is routed by its
/// registered address: the ECRF is asked about that address (profile
/// `civic`) and its answer routes the call; once the ECRF is gone, another
/// number registered at the same address, written in other case and
/// spacing, is routed by the mapping cached for the address. The call
/// records say which source chose the PSAP.
#[test]
fn a_call_by_its_registered_address_is_routed_by_the_ecrf_then_by_the_cache() {
    use adminhttp::{emergency_config, tokens, Api, Caller, Db};
    use serde_json::json;

    let dir = tempdir::Dir::new("lost-ecrf-registered");
    let (ecrf_router, ecrf_port) = ecrf(dir.path());
    let psap = RawTrunk::start(Answer::Ok);
    let screening = RawTrunk::start(Answer::Ok);
    let trunks = common::Trunks::new()
        .with_psap(psap.port)
        .with_screening(screening.port);
    let db = Db::sqlite();
    let t = tokens();
    let text = emergency_config(&trunks, &db, &t)
        + &format!(
            "\n[emergency]\nlocation_servers = [\"127.0.0.1\"]\n\n[emergency.lost]\n\
             ecrf = \"http://127.0.0.1:{ecrf_port}/lost\"\ntimeout_ms = 3000\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n"
        );
    let router = Router::start(&text, &[]);
    let api = Api::of(&router);
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.operator,
        &json!([
            {"number": "+14155550177", "country": "US", "common_area_phone": true,
             "reg_A1": "CA", "reg_A3": "San Francisco", "reg_RD": "Dr Carlton B Goodlett",
             "reg_STS": "Pl", "reg_HNO": "1", "reg_PC": "94102"},
            {"number": "+14155550178", "country": "US", "common_area_phone": true,
             "reg_A1": "ca", "reg_A3": "san francisco", "reg_RD": "dr  carlton b goodlett",
             "reg_STS": "PL", "reg_HNO": "1", "reg_PC": "94102"}
        ]),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let caller = Caller::new();
    let route_of = |number: &str, cid: &str| {
        caller.invite(router.port, number, cid);
        let fwd = invite_for(&psap, cid, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{cid} did not reach the PSAP trunk: {}", router.log()));
        header(&fwd, "Route").join(",")
    };

    // The ECRF's answer for the address routes the call.
    let route = route_of("+14155550177", "lost-reg-1");
    assert!(route.contains("sip:ecrf-sf@psap.ecrf.example"), "{route}");
    assert_eq!(lost_routes(&router, "lost"), 1.0);

    // The ECRF stops: the same address through another number is routed
    // by the cached mapping.
    drop(ecrf_router);
    let route = route_of("+14155550178", "lost-reg-2");
    assert!(route.contains("sip:ecrf-sf@psap.ecrf.example"), "{route}");
    assert_eq!(lost_routes(&router, "lost-cache"), 1.0);

    // The records, written off the call path.
    let mut by = Vec::new();
    for _ in 0..100 {
        let r = api.get("/v1/records", &t.operator);
        assert_eq!(r.status, 200, "{r:?}");
        by = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|rec| {
                (
                    rec["call_id"].as_str().unwrap_or_default().to_owned(),
                    rec["location_source"].clone(),
                    rec["location"]["psap_decided_by"].clone(),
                )
            })
            .collect();
        if by.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    by.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by,
        [
            ("lost-reg-1".to_owned(), json!("registered"), json!("lost")),
            (
                "lost-reg-2".to_owned(),
                json!("registered"),
                json!("lost-cache")
            ),
        ]
    );
}

/// An ECRF that answers every query with an HTTP error status.
struct FailingEcrf {
    port: u16,
}

impl FailingEcrf {
    fn start(status: &'static str) -> FailingEcrf {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                if read_request(&mut s).is_some() {
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        });
        FailingEcrf { port }
    }
}

/// A query that fails says how in the call's LoST line and record: a
/// refused connection, an HTTP error status and silence past the deadline
/// are three different reasons, while the metric counts them as before.
#[test]
fn a_failed_query_names_its_failure() {
    let closed = ClosedPort::new();
    let failing = FailingEcrf::start("503 Service Unavailable");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let trunks = [Answer::Ok; 4].map(RawTrunk::start);
    let refs = trunks.each_ref();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cases = [
        (closed.port, "failed", "ECRF refused the connection"),
        (failing.port, "failed", "ECRF answered HTTP 503"),
        (
            silent.local_addr().unwrap().port(),
            "timeout",
            "no answer from the ECRF in time",
        ),
    ];
    for (n, (port, outcome, why)) in cases.into_iter().enumerate() {
        let router = caller_router_with(&refs, port, 500);
        let (text, cid) = denver_call(50 + n as u32);
        udp.send_to(text.as_bytes(), ("127.0.0.1", router.port))
            .unwrap();
        let fwd = invite_for(&trunks[0], &cid, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{why}: {}", router.log()));
        let route = header(&fwd, "Route").join(",");
        assert!(route.contains("sip:sos@us-08031.psap.example"), "{route}");
        assert_eq!(lost_routes(&router, "embedded"), 1.0, "{why}");
        let (_, metrics) = get(http_port(&router, "metrics"), "/metrics");
        assert_eq!(
            metric(
                &metrics,
                "sosrouter_lost_queries_total",
                &[("outcome", outcome)]
            ),
            1.0,
            "{why}: {metrics}"
        );
        router.wait_log("PSAP chosen with LoST", 1, Duration::from_secs(5));
        let log = router.log();
        let line = log
            .lines()
            .find(|l| l.contains("PSAP chosen with LoST"))
            .unwrap_or_default();
        assert!(line.contains(why), "{why}: {line}");
    }
    drop(silent);
}

/// A reload keeps the mappings of an ECRF the new configuration still
/// asks: with the ECRF stopped after the reload, the next call is routed
/// from the cache. Once the country's ECRF URL changes, its old mappings
/// go: the next call asks the new one.
#[test]
fn a_reload_keeps_the_mappings_of_an_unchanged_ecrf() {
    let dir = tempdir::Dir::new("lost-reload");
    let (ecrf_router, ecrf_port) = ecrf(dir.path());
    let trunks = [Answer::Ok; 4].map(RawTrunk::start);
    let refs = trunks.each_ref();
    let router = caller_router(&refs, ecrf_port);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let route_of = |n: u32| route_of_call(&router, &trunks[0], &udp, denver_call(n));
    let reload = |times: usize| {
        let hup = Command::new("kill")
            .args(["-HUP", &router.pid().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        router.wait_log("configuration reloaded", times, Duration::from_secs(10));
    };

    let route = route_of(60);
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost"), 1.0);

    // The same configuration reloaded, then the ECRF stops: the mapping
    // cached before the reload routes the call.
    reload(1);
    drop(ecrf_router);
    let route = route_of(61);
    assert!(
        route.contains("sip:ecrf-denver@psap.ecrf.example"),
        "{route}"
    );
    assert_eq!(lost_routes(&router, "lost-cache"), 1.0, "{}", router.log());

    // Another ECRF URL (where nothing answers): the old mappings are not
    // its answers and go; the embedded data routes the call.
    let closed = ClosedPort::new();
    let text = std::fs::read_to_string(router.config_path()).unwrap();
    let moved = text.replace(
        &format!("http://127.0.0.1:{ecrf_port}/lost"),
        &format!("http://127.0.0.1:{}/lost", closed.port),
    );
    assert_ne!(text, moved);
    std::fs::write(router.config_path(), moved).unwrap();
    reload(2);
    let route = route_of(62);
    assert!(route.contains("sip:sos@us-08031.psap.example"), "{route}");
    assert_eq!(lost_routes(&router, "embedded"), 1.0, "{}", router.log());
    assert_eq!(lost_routes(&router, "lost-cache"), 1.0);
}

/// The call record's `lost_why` names the failure: a Common Area Phone
/// routed by its registered address while the ECRF refuses the
/// connection, then (after a reload to other ECRFs) answers HTTP 503, then
/// says nothing until the deadline.
#[test]
fn the_record_says_how_the_ecrf_failed() {
    use adminhttp::{emergency_config, tokens, Api, Caller, Db};
    use serde_json::json;

    let closed = ClosedPort::new();
    let failing = FailingEcrf::start("503 Service Unavailable");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let psap = RawTrunk::start(Answer::Ok);
    let screening = RawTrunk::start(Answer::Ok);
    let trunks = common::Trunks::new()
        .with_psap(psap.port)
        .with_screening(screening.port);
    let db = Db::sqlite();
    let t = tokens();
    let ecrf_at = |port: u16| format!("http://127.0.0.1:{port}/lost");
    let text = emergency_config(&trunks, &db, &t)
        + &format!(
            "\n[emergency]\nlocation_servers = [\"127.0.0.1\"]\n\n[emergency.lost]\n\
             ecrf = \"{}\"\ntimeout_ms = 500\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            ecrf_at(closed.port)
        );
    let router = Router::start(&text, &[]);
    let api = Api::of(&router);
    let r = api.send_json(
        "POST",
        "/v1/tenants/acme/numbers",
        &t.operator,
        &json!([
            {"number": "+14155550177", "country": "US", "common_area_phone": true,
             "reg_A1": "CA", "reg_A3": "San Francisco", "reg_RD": "Dr Carlton B Goodlett",
             "reg_STS": "Pl", "reg_HNO": "1", "reg_PC": "94102"}
        ]),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let caller = Caller::new();
    let why_of = |cid: &str| {
        caller.invite(router.port, "+14155550177", cid);
        invite_for(&psap, cid, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{cid} did not reach the PSAP trunk: {}", router.log()));
        for _ in 0..100 {
            let r = api.get("/v1/records", &t.operator);
            assert_eq!(r.status, 200, "{r:?}");
            let found = r.json().as_array().unwrap().iter().find_map(|rec| {
                (rec["call_id"] == cid).then(|| {
                    (
                        rec["location"]["psap_decided_by"].clone(),
                        rec["location"]["lost_why"].clone(),
                    )
                })
            });
            if let Some(found) = found {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no record for {cid}")
    };
    let mut reloads = 0;
    let mut ecrf_now = ecrf_at(closed.port);
    let mut move_to = |port: u16| {
        let text = std::fs::read_to_string(router.config_path()).unwrap();
        let next = ecrf_at(port);
        std::fs::write(router.config_path(), text.replace(&ecrf_now, &next)).unwrap();
        ecrf_now = next;
        let hup = Command::new("kill")
            .args(["-HUP", &router.pid().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        reloads += 1;
        router.wait_log("configuration reloaded", reloads, Duration::from_secs(10));
    };

    assert_eq!(
        why_of("lost-why-1"),
        (json!("embedded"), json!("ECRF refused the connection"))
    );
    move_to(failing.port);
    assert_eq!(
        why_of("lost-why-2"),
        (json!("embedded"), json!("ECRF answered HTTP 503"))
    );
    move_to(silent_port);
    assert_eq!(
        why_of("lost-why-3"),
        (json!("embedded"), json!("no answer from the ECRF in time"))
    );
    drop(silent);
}
