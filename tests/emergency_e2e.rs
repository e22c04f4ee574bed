//! Emergency calls end to end through the running router on the lab
//! configuration (`config/loopback.toml`, ports moved so tests can run side
//! by side): every corpus INVITE over real sockets, and SIPp callers
//! through each routing rule and each failover.

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::{get, http_port, metric, root, uac, Answer, RawTrunk, Router};

struct Lab {
    router: Router,
    psap: RawTrunk,
    screening: RawTrunk,
    test: RawTrunk,
    last: RawTrunk,
}

/// The shipped lab config with its ports moved to the test's trunks. Each
/// lab address becomes a placeholder first, so a new port can never be
/// mistaken for an old one.
fn lab_text(psap: &RawTrunk, screening: &RawTrunk, test: &RawTrunk, last: &RawTrunk) -> String {
    let mut text = std::fs::read_to_string(root().join("config/loopback.toml"))
        .unwrap()
        .replace("advertise = \"127.0.0.1:5060\"\n", "");
    let moves = [
        ("127.0.0.1:5060", 0),
        ("127.0.0.1:5070", psap.port),
        ("127.0.0.1:5080", screening.port),
        ("127.0.0.1:5090", test.port),
        ("127.0.0.1:5095", last.port),
        ("127.0.0.1:8080", 0),
        ("127.0.0.1:9090", 0),
    ];
    for (i, (from, _)) in moves.iter().enumerate() {
        text = text.replace(from, &format!("@LAB{i}@"));
    }
    for (i, (_, port)) in moves.iter().enumerate() {
        text = text.replace(&format!("@LAB{i}@"), &format!("127.0.0.1:{port}"));
    }
    assert!(
        text.contains("[emergency]"),
        "the lab config routes emergency calls"
    );
    text
}

/// The lab with trunks answering as told, plus `extra` config text.
fn lab_with(psap: Answer, screening: Answer, test: Answer, last: Answer, extra: &str) -> Lab {
    lab_edited([psap, screening, test, last], |text| text + extra)
}

/// The lab with its configuration text changed by `edit`.
fn lab_edited(answers: [Answer; 4], edit: impl FnOnce(String) -> String) -> Lab {
    let [psap, screening, test, last] = answers.map(RawTrunk::start);
    let text = edit(lab_text(&psap, &screening, &test, &last));
    let inventory = root().join("tests/corpus/emergency-invites/inventory.tsv");
    let router = Router::start(&text, &["--inventory", inventory.to_str().unwrap()]);
    Lab {
        router,
        psap,
        screening,
        test,
        last,
    }
}

fn lab(psap: Answer, screening: Answer, test: Answer, last: Answer) -> Lab {
    lab_with(psap, screening, test, last, "")
}

/// Lab configuration text that lets the router fetch locations from the
/// test's location servers on loopback, which it never asks unless listed.
fn loopback_lis(text: String) -> String {
    text.replacen(
        "[emergency]\n",
        "[emergency]\nlocation_servers = [\"127.0.0.1\", \"127.0.0.9\"]\n",
        1,
    )
}

/// The lab with its trunks answering as told and [`loopback_lis`].
fn lab_lis(answers: [Answer; 4]) -> Lab {
    lab_edited(answers, loopback_lis)
}

/// The value of `series` with `labels` in the router's metrics, once it has
/// one (0 after 5 s without).
fn metric_when_seen(lab: &Lab, series: &str, labels: &[(&str, &str)]) -> f64 {
    let port = http_port(&lab.router, "metrics");
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = get(port, "/metrics");
        let v = metric(&text, series, labels);
        if v > 0.0 || std::time::Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// c11 as sent, but with its location reference pointing at `uri`.
fn c11_with_reference(uri: &str) -> String {
    let text = std::fs::read_to_string(
        root().join("tests/corpus/emergency-invites/c11-geoloc-by-reference.sip"),
    )
    .unwrap();
    let original = header(&text, "Geolocation")[0].to_string();
    text.replace(&original, &format!("<{uri}>"))
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

fn call_id(msg: &str) -> String {
    header(msg, "Call-ID")
        .first()
        .or(header(msg, "i").first())
        .unwrap_or(&"")
        .to_string()
}

/// The INVITE of this call arriving at `trunk`.
fn invite_for(trunk: &RawTrunk, cid: &str, within: Duration) -> Option<String> {
    let end = std::time::Instant::now() + within;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        let m = trunk.next("INVITE", left)?;
        if call_id(&m) == cid {
            return Some(m);
        }
    }
    None
}

fn manifest() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("tests/corpus/emergency-invites/MANIFEST.tsv"))
        .unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn every_corpus_invite_reaches_its_trunk_through_the_running_router() {
    let lab = lab(Answer::Ok, Answer::Ok, Answer::Ok, Answer::Ok);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rows = manifest();
    assert_eq!(rows.len(), 14);
    for row in rows {
        let (file, route, reason, area) = (&row[0], &row[5], &row[6], &row[7]);
        let bytes =
            std::fs::read(root().join("tests/corpus/emergency-invites").join(file)).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let cid = call_id(&text);
        if header(&text, "Via")
            .first()
            .is_some_and(|v| v.contains("/TCP"))
        {
            let mut s = TcpStream::connect(("127.0.0.1", lab.router.port)).unwrap();
            s.write_all(&bytes).unwrap();
            std::mem::forget(s); // keep the connection for the responses
        } else {
            udp.send_to(&bytes, ("127.0.0.1", lab.router.port)).unwrap();
        }
        let trunk = match route.as_str() {
            "psap" => &lab.psap,
            "screening" => &lab.screening,
            "test" => &lab.test,
            other => panic!("{file}: unexpected route {other}"),
        };
        let fwd = invite_for(trunk, &cid, Duration::from_secs(5)).unwrap_or_else(|| {
            panic!(
                "{file}: no INVITE at the {route} trunk\n{}",
                lab.router.log()
            )
        });
        // Nothing the caller sent is stripped; the router adds its own.
        for name in ["Geolocation", "Geolocation-Routing", "Priority"] {
            for v in header(&text, name) {
                assert!(
                    header(&fwd, name).contains(&v),
                    "{file}: {name}: {v} missing"
                );
            }
        }
        let infos = header(&fwd, "Call-Info").join(" ");
        assert!(
            infos.contains("purpose=emergency-CallId")
                && infos.contains("purpose=emergency-IncidentId"),
            "{file}: {infos}"
        );
        if text.starts_with("INVITE urn:service:sos") {
            assert!(
                fwd.starts_with("INVITE urn:service:sos "),
                "{file}: request URI kept"
            );
        }
        if route == "psap" {
            let want = format!("sip:sos@{}.psap.example", area.to_ascii_lowercase());
            assert!(
                header(&fwd, "Route").iter().any(|r| r.contains(&want)),
                "{file}: Route should name {want}: {:?}",
                header(&fwd, "Route")
            );
        }
        if reason == "common-area-phone" || reason == "registered-address" {
            // The registered address travels as a PIDF-LO part, its
            // Geolocation first, the caller's own kept after it.
            let geo = header(&fwd, "Geolocation");
            assert!(
                geo.first().is_some_and(|g| g.contains("cid:registered-")),
                "{file}: {geo:?}"
            );
            assert!(
                fwd.contains("<ca:A3>") || fwd.contains("A3>"),
                "{file}: no civic part"
            );
        }
    }
    lab.router.wait_log("answered", 14, Duration::from_secs(5));
}

const SDP: &str =
    "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 40000 RTP/AVP 0\n";

fn civic(country: &str, a1: &str, a3: &str, rd: &str, hno: &str, pc: &str, method: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" xmlns:ca=\"urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr\" entity=\"pres:caller@example.com\">\n<tuple id=\"t1\"><status><gp:geopriv><gp:location-info><ca:civicAddress><ca:country>{country}</ca:country><ca:A1>{a1}</ca:A1><ca:A3>{a3}</ca:A3><ca:RD>{rd}</ca:RD><ca:HNO>{hno}</ca:HNO><ca:PC>{pc}</ca:PC></ca:civicAddress></gp:location-info><gp:usage-rules/><gp:method>{method}</gp:method></gp:geopriv></status></tuple>\n</presence>\n"
    )
}

fn point(lat: f64, lon: f64, method: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" xmlns:gml=\"http://www.opengis.net/gml\" entity=\"pres:caller@example.com\">\n<tuple id=\"t1\"><status><gp:geopriv><gp:location-info><gml:Point srsName=\"urn:ogc:def:crs:EPSG::4326\"><gml:pos>{lat} {lon}</gml:pos></gml:Point></gp:location-info><gp:usage-rules/><gp:method>{method}</gp:method></gp:geopriv></status></tuple>\n</presence>\n"
    )
}

/// Places one SIPp call; `pidf` is sent as a multipart body with its
/// Geolocation header.
fn call(lab: &Lab, number: &str, caller: &str, pidf: Option<&str>) -> common::UacResult {
    let (headers, ctype, body) = match pidf {
        Some(doc) => (
            "Geolocation: <cid:loc@caller.example>\n      Geolocation-Routing: yes\n      Priority: emergency",
            "multipart/mixed;boundary=sipp-b",
            format!("--sipp-b\nContent-Type: application/sdp\n\n{SDP}\n--sipp-b\nContent-Type: application/pidf+xml\nContent-ID: <loc@caller.example>\n\n{doc}\n--sipp-b--\n"),
        ),
        None => ("Priority: emergency", "application/sdp", SDP.to_string()),
    };
    uac(
        "uac_emergency.xml",
        &[
            ("@HEADERS@", headers),
            ("@CONTENT_TYPE@", ctype),
            ("@BODY@", &body),
        ],
        lab.router.port,
        number,
        caller,
        1,
        1,
        false,
    )
}

fn routed(lab: &Lab, trunk: &RawTrunk) -> String {
    trunk
        .next("INVITE", Duration::from_secs(8))
        .unwrap_or_else(|| panic!("no INVITE at the trunk\n{}", lab.router.log()))
}

#[test]
fn sipp_us_civic_trusted_location_reaches_the_psap_of_that_address() {
    let lab = lab(Answer::Ok, Answer::Ok, Answer::Ok, Answer::Ok);
    let doc = civic("US", "IL", "Chicago", "S Wacker Dr", "233", "60606", "LIS");
    let r = call(&lab, "911", "+13125550161", Some(&doc));
    assert_eq!(
        (r.successful, r.failed),
        (1, 0),
        "{r:?}\n{}",
        lab.router.log()
    );
    let fwd = routed(&lab, &lab.psap);
    assert!(
        header(&fwd, "Route")
            .iter()
            .any(|v| v.contains("sip:sos@us-17031.psap.example")),
        "{fwd}"
    );
}

#[test]
fn sipp_us_point_reaches_the_psap_serving_it() {
    let lab = lab(Answer::Ok, Answer::Ok, Answer::Ok, Answer::Ok);
    let r = call(
        &lab,
        "911",
        "+13035550117",
        Some(&point(39.7392, -104.9903, "GPS")),
    );
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    let fwd = routed(&lab, &lab.psap);
    assert!(
        header(&fwd, "Route")
            .iter()
            .any(|v| v.contains("sip:sos@us-08031.psap.example")),
        "{fwd}"
    );
}

#[test]
fn sipp_canadian_call_is_screened() {
    let lab = lab(Answer::Ok, Answer::Ok, Answer::Ok, Answer::Ok);
    let doc = civic(
        "CA",
        "ON",
        "Toronto",
        "Front Street West",
        "290",
        "M5V 3L9",
        "LIS",
    );
    let r = call(&lab, "911", "+14165550199", Some(&doc));
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    routed(&lab, &lab.screening);
}

#[test]
fn sipp_no_location_common_area_phone_goes_to_its_registered_psap_others_are_screened() {
    let lab = lab(Answer::Ok, Answer::Ok, Answer::Ok, Answer::Ok);
    let r = call(&lab, "911", "+14155550177", None);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    let fwd = routed(&lab, &lab.psap);
    assert!(
        header(&fwd, "Route").iter().any(|v| v.contains("us-06075")),
        "{fwd}"
    );
    let r = call(&lab, "911", "+16175550123", None);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    routed(&lab, &lab.screening);
}

#[test]
fn sipp_933_reaches_the_test_trunk() {
    let lab = lab(Answer::Ok, Answer::Ok, Answer::Ok, Answer::Ok);
    let doc = civic("US", "TX", "Houston", "Bagby St", "901", "77002", "LIS");
    let r = call(&lab, "933", "+17135550150", Some(&doc));
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    routed(&lab, &lab.test);
}

#[test]
fn sipp_psap_refusing_or_silent_the_call_completes_at_the_screening_center() {
    for psap in [Answer::Code(503), Answer::Silent] {
        let lab = lab(psap, Answer::Ok, Answer::Ok, Answer::Ok);
        let doc = civic("US", "IL", "Chicago", "S Wacker Dr", "233", "60606", "LIS");
        let r = call(&lab, "911", "+13125550161", Some(&doc));
        assert_eq!(
            (r.successful, r.failed),
            (1, 0),
            "{psap:?}: {r:?}\n{}",
            lab.router.log()
        );
        routed(&lab, &lab.psap);
        let fwd = routed(&lab, &lab.screening);
        // The screening center gets everything known: the caller's location.
        assert!(fwd.contains("Chicago"), "{fwd}");
    }
}

#[test]
fn sipp_every_trunk_down_the_last_resort_is_tried() {
    let lab = lab(Answer::Code(503), Answer::Code(500), Answer::Ok, Answer::Ok);
    let doc = civic("US", "IL", "Chicago", "S Wacker Dr", "233", "60606", "LIS");
    let r = call(&lab, "911", "+13125550161", Some(&doc));
    assert_eq!(
        (r.successful, r.failed),
        (1, 0),
        "{r:?}\n{}",
        lab.router.log()
    );
    routed(&lab, &lab.psap);
    routed(&lab, &lab.screening);
    routed(&lab, &lab.last);
}

/// A one-shot HTTP endpoint: hands the first request's body to the test.
fn webhook() -> (u16, std::sync::mpsc::Receiver<String>) {
    http_once("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".into())
}

/// A one-shot HTTP endpoint answering `response`.
fn http_once(response: String) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = s.write_all(response.as_bytes());
                        let _ = tx.send(body.to_string());
                        break;
                    }
                }
            }
        }
    });
    (port, rx)
}

#[test]
fn the_tenants_security_desk_is_told_of_each_emergency_call() {
    let (port, rx) = webhook();
    // acme's desk listens; bavaria's desk is down, which must not delay
    // bavaria's calls.
    let desks = format!("\n[emergency.security_desk]\nacme = \"http://127.0.0.1:{port}/sos\"\nbavaria = \"http://127.0.0.1:1/down\"\n");
    let lab = lab_with(Answer::Ok, Answer::Ok, Answer::Ok, Answer::Ok, &desks);
    let r = call(&lab, "911", "+14155550177", None);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    let body = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no notification");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["caller"], "+14155550177");
    assert_eq!(v["route"], "psap");
    assert_eq!(v["reason"], "common-area-phone");
    assert_eq!(v["registered_address"]["civic"]["A3"], "San Francisco");
    let r = call(&lab, "112", "+4989555010", None);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    assert!(
        r.elapsed < Duration::from_secs(3),
        "a dead desk delayed the call: {:?}",
        r.elapsed
    );
}

#[test]
fn a_location_by_reference_is_fetched_and_routes_the_call() {
    let doc = format!(
        "<?xml version=\"1.0\"?>\n<locationResponse xmlns=\"urn:ietf:params:xml:ns:geopriv:held\">\n{}</locationResponse>\n",
        point(39.7392, -104.9903, "GPS").replace("<?xml version=\"1.0\"?>\n", "")
    );
    let (port, rx) = http_once(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/held+xml\r\nContent-Length: {}\r\n\r\n{doc}",
        doc.len()
    ));
    let lab = lab_lis([Answer::Ok; 4]);
    // c11 as sent, but its reference points at the test's location server.
    let text = c11_with_reference(&format!("http://127.0.0.1:{port}/locations/c11"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(text.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    let request = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the location server was not asked");
    assert!(
        request.contains("locationRequest")
            && request.contains("urn:ietf:params:xml:ns:geopriv:held"),
        "{request}"
    );
    // The Common Area Phone's registered address is in San Francisco, but
    // the fetched GPS fix puts the caller in Denver: the call goes there.
    let fwd = invite_for(&lab.psap, &call_id(&text), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", lab.router.log()));
    assert!(
        header(&fwd, "Route").iter().any(|r| r.contains("us-08031")),
        "{:?}\n{}",
        header(&fwd, "Route"),
        lab.router.log()
    );
    assert!(
        header(&fwd, "Geolocation")
            .iter()
            .any(|g| g.contains("/locations/c11")),
        "the reference travels on"
    );
    // The router's log reaches the test through a pipe and a reader thread,
    // so it may trail the forwarded INVITE by a moment.
    lab.router
        .wait_log("location fetched by reference", 1, Duration::from_secs(5));
    let ok = [("outcome", "ok")];
    assert_eq!(
        metric_when_seen(&lab, "sosrouter_location_fetches_total", &ok),
        1.0,
        "{}",
        lab.router.log()
    );
}

/// An HTTPS location server on loopback with `leaf` as its certificate,
/// requiring a client certificate from `ca`: it answers one request with
/// `response` and hands the test the request's body and the names of the
/// client certificate it got.
fn https_once(
    leaf: &common::pki::Leaf,
    ca: &common::pki::Ca,
    response: String,
) -> (u16, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::Read;
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![leaf.der.clone()], leaf.key())
            .unwrap(),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = tls.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                let names = tls
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| String::from_utf8_lossy(c.as_ref()).into_owned())
                    .unwrap_or_default();
                let _ = tls.write_all(response.as_bytes());
                let _ = tls.flush();
                let _ = tx.send((body.to_string(), names));
                break;
            }
        }
    });
    (port, rx)
}

/// A location server that requires a client certificate (mutual TLS):
/// the router presents its own (`[sip.tls]`) and trusts the server's CA
/// (`emergency.location_ca`); the fetched location routes the call.
#[test]
fn a_location_server_asking_for_a_client_certificate_gets_the_routers() {
    let ca = common::pki::Ca::new("Location CA");
    let dir = common::tempdir::Dir::new("lis-tls");
    let (cert, key) = ca.valid(&["router.test"]).write(dir.path(), "router");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let doc = format!(
        "<?xml version=\"1.0\"?>\n<locationResponse xmlns=\"urn:ietf:params:xml:ns:geopriv:held\">\n{}</locationResponse>\n",
        point(39.7392, -104.9903, "GPS").replace("<?xml version=\"1.0\"?>\n", "")
    );
    let (port, rx) = https_once(
        &ca.valid(&["127.0.0.1"]),
        &ca,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/held+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
            doc.len()
        ),
    );
    let lab = lab_edited([Answer::Ok; 4], |text| {
        let text = loopback_lis(text).replacen(
            "[emergency]\n",
            &format!(
                "[emergency]\nlocation_client_certificate = true\nlocation_ca = \"{}\"\n",
                ca_path.display()
            ),
            1,
        );
        format!(
            "{text}\n[sip.tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        )
    });
    let text = c11_with_reference(&format!("https://127.0.0.1:{port}/locations/c11"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(text.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    let (request, client_cert) = rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("the location server was not asked:\n{}", lab.router.log()));
    assert!(request.contains("locationRequest"), "{request}");
    assert!(
        client_cert.contains("router.test"),
        "the router presented its certificate"
    );
    let fwd = invite_for(&lab.psap, &call_id(&text), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", lab.router.log()));
    assert!(
        header(&fwd, "Route").iter().any(|r| r.contains("us-08031")),
        "the fetched location routed the call: {:?}\n{}",
        header(&fwd, "Route"),
        lab.router.log()
    );
}

/// A security desk that requires a client certificate: the router
/// presents its own (`[sip.tls]`, `emergency.webhook_client_certificate`)
/// and trusts the desk's CA (`emergency.webhook_ca`).
#[test]
fn a_security_desk_asking_for_a_client_certificate_gets_the_routers() {
    let ca = common::pki::Ca::new("Desk CA");
    let dir = common::tempdir::Dir::new("desk-tls");
    let (cert, key) = ca.valid(&["router.test"]).write(dir.path(), "router");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let (port, rx) = https_once(
        &ca.valid(&["127.0.0.1"]),
        &ca,
        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string(),
    );
    let lab = lab_edited([Answer::Ok; 4], |text| {
        let text = text.replacen(
            "[emergency]\n",
            &format!(
                "[emergency]\nwebhook_client_certificate = true\nwebhook_ca = \"{}\"\n",
                ca_path.display()
            ),
            1,
        );
        format!(
            "{text}\n[emergency.security_desk]\nacme = \"https://127.0.0.1:{port}/sos\"\n\n[sip.tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        )
    });
    let r = call(&lab, "911", "+14155550177", None);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}");
    let (body, client_cert) = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("the desk was not told:\n{}", lab.router.log()));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["tenant"], "acme");
    assert!(
        client_cert.contains("router.test"),
        "the router presented its certificate"
    );
}

#[test]
fn an_unreachable_location_server_does_not_hold_the_call_past_its_deadline() {
    let lab = lab_lis([Answer::Ok; 4]);
    // Nothing listens on port 9: the fetch fails at once or at the deadline.
    let text = c11_with_reference("http://127.0.0.9:9/never");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = std::time::Instant::now();
    udp.send_to(text.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    let fwd = invite_for(&lab.psap, &call_id(&text), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", lab.router.log()));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // One fetch, and it did not bring a document.
    let fetches = "sosrouter_location_fetches_total";
    assert_eq!(metric_when_seen(&lab, fetches, &[]), 1.0);
    let (_, text) = get(http_port(&lab.router, "metrics"), "/metrics");
    assert_eq!(metric(&text, fetches, &[("outcome", "ok")]), 0.0, "{text}");
    // Routed by the registered address of the Common Area Phone.
    assert!(
        header(&fwd, "Route").iter().any(|r| r.contains("us-06075")),
        "{fwd}"
    );
}

/// A location server a test expects the router never to ask: it tells
/// the test of any request it gets.
fn location_server_not_to_ask() -> (u16, std::sync::mpsc::Receiver<String>) {
    http_once(
        "HTTP/1.1 200 OK\r\nContent-Type: application/held+xml\r\nContent-Length: 0\r\n\r\n"
            .to_string(),
    )
}

#[test]
fn a_stranger_cannot_make_the_router_fetch_a_location() {
    let (port, rx) = location_server_not_to_ask();
    // Only 127.0.0.1 may send; 127.0.0.2 is on loopback too.
    let lab = lab_edited([Answer::Ok; 4], |text| {
        loopback_lis(text.replace(r#"["127.0.0.0/8", "::1/128"]"#, r#"["127.0.0.1/32"]"#))
    });
    let invite = c11_with_reference(&format!("http://127.0.0.1:{port}/locations/c11"));
    let udp = UdpSocket::bind("127.0.0.2:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.send_to(invite.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = udp.recv_from(&mut buf).expect("no answer");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 403 "), "{answer}");
    assert!(
        rx.recv_timeout(Duration::from_millis(1500)).is_err(),
        "the router fetched a location for a source it does not take requests from"
    );
    assert!(lab
        .psap
        .next("INVITE", Duration::from_millis(100))
        .is_none());
}

/// c11 with its reference pointing at the location server on `port`, which
/// must not be asked: the call is routed at once by the Common Area Phone's
/// registered address, and the server hears nothing.
fn routed_without_asking(lab: &Lab, port: u16, rx: &std::sync::mpsc::Receiver<String>) {
    let invite = c11_with_reference(&format!("http://127.0.0.1:{port}/locations/c11"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(invite.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    let fwd = invite_for(&lab.psap, &call_id(&invite), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", lab.router.log()));
    assert!(
        header(&fwd, "Route").iter().any(|r| r.contains("us-06075")),
        "{fwd}"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "a location server the router may not ask was asked"
    );
}

#[test]
fn a_reference_to_a_server_not_listed_is_not_fetched_and_the_call_still_goes() {
    let (port, rx) = location_server_not_to_ask();
    let lab = lab_edited([Answer::Ok; 4], |text| {
        text.replacen(
            "[emergency]\n",
            "[emergency]\nlocation_servers = [\"lis.carrier.example\", \".lis.example.net\"]\n",
            1,
        )
    });
    routed_without_asking(&lab, port, &rx);
    let not_listed = [("reason", "not_listed")];
    assert_eq!(
        metric_when_seen(
            &lab,
            "sosrouter_location_fetches_skipped_total",
            &not_listed
        ),
        1.0,
        "{}",
        lab.router.log()
    );
    lab.router.wait_log(
        "why=\"not one of emergency.location_servers\"",
        1,
        Duration::from_secs(5),
    );
    // The reference is a key to the caller's location: the log names its
    // host only.
    assert!(
        !lab.router.log().contains("/locations/c11"),
        "{}",
        lab.router.log()
    );
}

/// With no `location_servers`, the router still never asks its own host
/// (nor link-local addresses, where cloud metadata services answer): a
/// caller's reference must not reach the admin API or the metrics.
#[test]
fn with_no_list_a_reference_to_the_routers_own_host_is_not_fetched() {
    let (port, rx) = location_server_not_to_ask();
    let lab = lab(Answer::Ok, Answer::Ok, Answer::Ok, Answer::Ok);
    routed_without_asking(&lab, port, &rx);
    let reserved = [("reason", "reserved")];
    assert_eq!(
        metric_when_seen(&lab, "sosrouter_location_fetches_skipped_total", &reserved),
        1.0,
        "{}",
        lab.router.log()
    );
    lab.router
        .wait_log("the router's own host", 1, Duration::from_secs(5));
}

/// A location server that counts requests and holds each answer (a 404)
/// until the test lets it go, so a fetch is surely still running while the
/// test acts (past the router's deadline the call goes on without it).
struct HeldLocationServer {
    port: u16,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: std::sync::mpsc::Sender<()>,
}

impl HeldLocationServer {
    fn start() -> HeldLocationServer {
        use std::io::Read;
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = asked.clone();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Arc::new(std::sync::Mutex::new(held));
        std::thread::spawn(move || {
            while let Ok((mut s, _)) = l.accept() {
                count.fetch_add(1, Ordering::SeqCst);
                let held = held.clone();
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_millis(300)))
                        .unwrap();
                    let mut chunk = [0u8; 4096];
                    let _ = s.read(&mut chunk);
                    let _ = held.lock().unwrap().recv_timeout(Duration::from_secs(5));
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                });
            }
        });
        HeldLocationServer {
            port,
            asked,
            release,
        }
    }

    /// c11 with its reference pointing here, its Call-ID, and a caller's
    /// socket to send it from.
    fn caller(&self) -> (String, String, UdpSocket) {
        let invite = c11_with_reference(&format!("http://127.0.0.1:{}/locations/c11", self.port));
        let cid = call_id(&invite);
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        (invite, cid, udp)
    }

    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One location server gets no more than `location_fetches_per_server`
/// fetches at once: a call past them is routed at once without its
/// location, counted as `server_busy`, while the others wait for theirs.
#[test]
fn a_location_server_gets_no_more_than_its_share_of_fetches() {
    let lis = HeldLocationServer::start();
    let lab = lab_edited([Answer::Ok; 4], |text| {
        text.replacen(
            "[emergency]\n",
            "[emergency]\nlocation_servers = [\"127.0.0.1\"]\nlocation_fetches_per_server = 2\ndereference_timeout_ms = 8000\n",
            1,
        )
    });
    let (invite, cid, udp) = lis.caller();
    let calls: Vec<(String, String)> = (0..3)
        .map(|i| {
            let text = invite
                .replace(&cid, &format!("{i}-{cid}"))
                .replace("branch=z9hG4bKc11a", &format!("branch=z9hG4bKc11a{i}"));
            (text, format!("{i}-{cid}"))
        })
        .collect();
    for (text, _) in &calls[..2] {
        udp.send_to(text.as_bytes(), ("127.0.0.1", lab.router.port))
            .unwrap();
    }
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while lis.asked() < 2 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lis.asked(), 2, "{}", lab.router.log());
    // The third finds its server's fetches all under way: routed at once,
    // by the Common Area Phone's registered address.
    let start = std::time::Instant::now();
    udp.send_to(calls[2].0.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    let fwd = invite_for(&lab.psap, &calls[2].1, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", lab.router.log()));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        header(&fwd, "Route").iter().any(|r| r.contains("us-06075")),
        "{fwd}"
    );
    assert_eq!(lis.asked(), 2, "{}", lab.router.log());
    let busy = [("reason", "server_busy")];
    assert_eq!(
        metric_when_seen(&lab, "sosrouter_location_fetches_skipped_total", &busy),
        1.0,
        "{}",
        lab.router.log()
    );
    // The two held calls go on once their server answers.
    lis.release.send(()).unwrap();
    lis.release.send(()).unwrap();
    let mut held: Vec<String> = calls[..2].iter().map(|c| c.1.clone()).collect();
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !held.is_empty() {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let m = lab
            .psap
            .next("INVITE", left)
            .unwrap_or_else(|| panic!("{held:?} not forwarded\n{}", lab.router.log()));
        held.retain(|c| *c != call_id(&m));
    }
}

/// The next datagram a caller's socket receives, as text.
fn next_answer(udp: &UdpSocket, what: &str, lab: &Lab) -> String {
    let mut buf = [0u8; 65536];
    let (n, _) = udp
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no answer to the {what}: {e}\n{}", lab.router.log()));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_retransmission_during_the_fetch_is_answered_100_and_not_fetched_for_again() {
    let lis = HeldLocationServer::start();
    let lab = lab_lis([Answer::Ok; 4]);
    let (invite, cid, udp) = lis.caller();
    // The caller hears 100 Trying at once, not after the fetch: a caller
    // that hears nothing retransmits, and may fail the call over.
    let trying = |what: &str| {
        let answer = next_answer(&udp, what, &lab);
        assert!(answer.starts_with("SIP/2.0 100 "), "{answer}");
        assert_eq!(call_id(&answer), cid);
        assert!(!header(&answer, "To")[0].contains("tag="), "{answer}");
    };
    udp.send_to(invite.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    trying("INVITE");
    udp.send_to(invite.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    trying("retransmission");
    lis.release.send(()).unwrap();
    invite_for(&lab.psap, &cid, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", lab.router.log()));
    assert!(
        invite_for(&lab.psap, &cid, Duration::from_millis(500)).is_none(),
        "the call was forwarded twice"
    );
    assert_eq!(lis.asked(), 1, "{}", lab.router.log());
}

/// A caller who hangs up while the location is being fetched: the CANCEL
/// waits for its INVITE and then cancels the call, as it would have a
/// moment later; it is not answered 481 while the call goes on regardless.
#[test]
fn a_cancel_during_the_fetch_cancels_the_call() {
    let lis = HeldLocationServer::start();
    let lab = lab_lis([Answer::Silent; 4]);
    let (invite, cid, udp) = lis.caller();
    udp.send_to(invite.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    let trying = next_answer(&udp, "INVITE", &lab);
    assert!(trying.starts_with("SIP/2.0 100 "), "{trying}");
    // The CANCEL: the INVITE's request line, top Via, From, To, Call-ID
    // and CSeq number (RFC 3261 section 9.1).
    let head = invite.split("\r\n\r\n").next().unwrap();
    let mut cancel = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if i == 0 {
            cancel.push_str(&line.replacen("INVITE", "CANCEL", 1));
        } else if [
            "via",
            "v",
            "from",
            "f",
            "to",
            "t",
            "call-id",
            "i",
            "max-forwards",
        ]
        .contains(&name.as_str())
        {
            cancel.push_str(line);
        } else if name == "cseq" {
            cancel.push_str(&line.replace("INVITE", "CANCEL"));
        } else {
            continue;
        }
        cancel.push_str("\r\n");
    }
    cancel.push_str("Content-Length: 0\r\n\r\n");
    udp.send_to(cancel.as_bytes(), ("127.0.0.1", lab.router.port))
        .unwrap();
    lis.release.send(()).unwrap();
    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        let answer = next_answer(&udp, "CANCEL", &lab);
        let status = answer.split(' ').nth(1).unwrap_or("").to_string();
        let method = header(&answer, "CSeq")[0]
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        statuses.push(format!("{status} {method}"));
    }
    statuses.sort();
    // The core's own 100 to the INVITE, 200 to the CANCEL, 487 to the INVITE.
    assert_eq!(
        statuses,
        ["100 INVITE", "200 CANCEL", "487 INVITE"],
        "{}",
        lab.router.log()
    );
    // The call was routed before the CANCEL ended it, as it would have been
    // had the CANCEL come a moment later.
    invite_for(&lab.psap, &cid, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", lab.router.log()));
}
