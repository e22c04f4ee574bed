//! The real router binary against real SIP software on loopback, so that
//! the router's own assumptions are not shared by the rig: Kamailio 5.6 as
//! the carrier's edge proxy (record-routing, stateful relay, UDP or TCP to
//! the router), baresip 1.0 as a caller and as an auto-answering PSAP,
//! SIPp trunks that listen on UDP only (`-t u1`), and sipsak. The rig is
//! in tests/peers/. Each test names the behaviour a caller, carrier or PSAP
//! sees; the item numbers are those of the issue "No emergency call lost
//! on a real network".
//!
//! `bash .ci/run` installs the peers (Debian packages kamailio, baresip,
//! sipsak, sip-tester); a test whose peer is missing fails saying which.

mod common;
mod peers;

use std::path::PathBuf;
use std::time::Duration;

use common::{get, http_port, metric, root, tempdir::Dir, Router, Trunks, BIN};
use peers::{
    assert_udp_only, emergency_config, emergency_router, emergency_router_below_10000, header,
    request, sipp_call, sipsak, status, wait_until, Baresip, Kamailio, KamailioTls, RawUdp, Setup,
    SippCall, SippUas, Transport, UdpOnlyFront,
};

const SDP: &str =
    "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 40000 RTP/AVP 0\n";

/// A caller in the corpus inventory, in Chicago: its civic PIDF-LO routes
/// it to the PSAP trunk.
const CHICAGO: &str = "+13125550161";
/// A caller the inventory does not know: with no location it goes to the
/// screening center.
const STRANGER: &str = "+12025550100";

/// A civic PIDF-LO for 233 S Wacker Dr, Chicago, trusted (method LIS).
fn chicago_pidf() -> String {
    "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" xmlns:ca=\"urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr\" entity=\"pres:caller@example.com\">\n<tuple id=\"t1\"><status><gp:geopriv><gp:location-info><ca:civicAddress><ca:country>US</ca:country><ca:A1>IL</ca:A1><ca:A3>Chicago</ca:A3><ca:RD>S Wacker Dr</ca:RD><ca:HNO>233</ca:HNO><ca:PC>60606</ca:PC></ca:civicAddress></gp:location-info><gp:usage-rules/><gp:method>LIS</gp:method></gp:geopriv></status></tuple>\n</presence>\n".to_string()
}

fn sipp_scenario(name: &str) -> PathBuf {
    root().join("tests/sipp").join(name)
}

/// A SIPp emergency caller (tests/sipp/uac_emergency.xml): INVITE to
/// `number`, ACK and BYE along the Record-Route set. With `pidf`, the body
/// is multipart (SDP and the PIDF-LO, about 1.5 KB of INVITE in all).
fn sipp_emergency_call(
    to_port: u16,
    number: &str,
    caller: &str,
    pidf: Option<&str>,
    transport: Transport,
) -> SippCall {
    let (headers, ctype, body) = match pidf {
        Some(doc) => (
            "Geolocation: <cid:loc@caller.example>\n      Geolocation-Routing: yes\n      Priority: emergency",
            "multipart/mixed;boundary=sipp-b",
            format!("--sipp-b\nContent-Type: application/sdp\n\n{SDP}\n--sipp-b\nContent-Type: application/pidf+xml\nContent-ID: <loc@caller.example>\n\n{doc}\n--sipp-b--\n"),
        ),
        None => ("Priority: emergency", "application/sdp", SDP.to_string()),
    };
    sipp_call(
        &sipp_scenario("uac_emergency.xml"),
        &[
            ("@HEADERS@", headers),
            ("@CONTENT_TYPE@", ctype),
            ("@BODY@", &body),
        ],
        to_port,
        number,
        caller,
        transport,
    )
}

/// A located 911 call from Chicago straight to the router.
fn chicago_call(router: &Router) -> SippCall {
    sipp_emergency_call(
        router.port,
        "911",
        CHICAGO,
        Some(&chicago_pidf()),
        Transport::Udp,
    )
}

/// The router's log lines that tell how calls went, for failure messages.
fn call_lines(router: &Router) -> String {
    // The log reaches the test through a pipe and a reader thread.
    wait_until(Duration::from_secs(1), || {
        router.log().contains("routing") || router.log().contains("not routed")
    });
    router
        .log()
        .lines()
        .filter(|l| {
            l.contains("forwarding")
                || l.contains("failed")
                || l.contains("answered")
                || l.contains("routing")
                || l.contains("WARN")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn readyz(router: &Router) -> serde_json::Value {
    let (_, body) = get(http_port(router, "admin"), "/readyz");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/readyz: {e}: {body}"))
}

/// One trunk's entry in `/readyz`.
fn readyz_trunk(router: &Router, trunk: &str) -> serde_json::Value {
    let v = readyz(router);
    v["trunks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["trunk"] == trunk).cloned())
        .unwrap_or_else(|| panic!("/readyz has no trunk {trunk}: {v}"))
}

fn metrics(router: &Router) -> String {
    get(http_port(router, "metrics"), "/metrics").1
}

/// Whether a trunk's `/readyz` entry says its TCP was refused: a field
/// about tcp that is `true` or says "refused".
fn says_tcp_refused(trunk: &serde_json::Value) -> bool {
    trunk.as_object().is_some_and(|o| {
        o.iter().any(|(k, v)| {
            k.to_ascii_lowercase().contains("tcp")
                && (v == &serde_json::Value::Bool(true)
                    || v.as_str().is_some_and(|s| s.contains("refused")))
        })
    })
}

/// Panics listing `failures`, if any.
fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------
// Item 1: UDP-only trunks

/// A caller with a PIDF-LO (a 1.5 KB INVITE) dials 911; the PSAP trunk, on
/// its default transport (UDP, `tcp_fallback` on), listens on UDP only.
/// The caller is answered by that PSAP, twice; the router counts the one
/// switch back to UDP and `/readyz` says the PSAP takes no TCP.
#[test]
fn a_located_911_call_reaches_a_udp_only_psap_and_is_answered() {
    let mut psap = SippUas::answering(2);
    let screening = SippUas::answering(2);
    let t = Trunks::new()
        .with_psap(psap.port)
        .with_screening(screening.port);
    let router = emergency_router(&t, &Setup::default());
    for n in 1..=2 {
        let call = chicago_call(&router);
        assert!(
            call.ok() && call.finals().first() == Some(&200),
            "call {n}: the caller was not answered: {}\nPSAP {}\nscreening {}\nrouter:\n{}",
            call.summary(),
            psap.summary(),
            screening.summary(),
            call_lines(&router)
        );
    }
    assert_eq!(
        psap.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        psap.summary()
    );
    assert!(screening.requests("INVITE").is_empty());
    let text = metrics(&router);
    let fallbacks = metric(
        &text,
        "sosrouter_trunk_udp_fallbacks_total",
        &[("trunk", "psap")],
    );
    assert_eq!(
        fallbacks,
        1.0,
        "one request re-sent over UDP, then the trunk is remembered as UDP-only:\n{}",
        text.lines()
            .filter(|l| l.contains("trunk"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let entry = readyz_trunk(&router, "psap");
    assert!(
        says_tcp_refused(&entry),
        "/readyz should say the PSAP trunk refuses TCP: {entry}"
    );
}

/// baresip dials 911 through Kamailio (UDP to the router); the screening
/// center is a baresip that answers on its own, at an address that takes
/// UDP only. Both phones see the call established, and the PSAP sees it
/// end when the caller hangs up.
#[test]
fn baresips_911_call_through_kamailio_reaches_a_udp_only_baresip_psap() {
    let answering = Baresip::psap("911", 20);
    let front = UdpOnlyFront::start(answering.port);
    let t = Trunks::new().with_screening(front.port);
    let router = emergency_router(&t, &Setup::default());
    let edge = Kamailio::start(router.port, Transport::Udp);
    let mut caller = Baresip::call(STRANGER, &format!("sip:911@127.0.0.1:{}", edge.port), 5);
    let answered = caller.established(Duration::from_secs(5));
    assert!(
        answered,
        "the caller saw no answer:\n{}\nPSAP:\n{}\nrouter:\n{}",
        caller.log(),
        answering.log(),
        call_lines(&router)
    );
    assert!(
        answering.established(Duration::from_secs(2)),
        "{}",
        answering.log()
    );
    router.wait_log("answered", 1, Duration::from_secs(2));
    caller.wait_exit(Duration::from_secs(10));
    assert!(
        answering.closed(Duration::from_secs(5)),
        "the PSAP never saw the BYE:\n{}",
        answering.log()
    );
    assert!(edge.relayed("BYE") >= 1, "{}", edge.log());
    assert_udp_only(front.port);
    let text = metrics(&router);
    let fallbacks = metric(
        &text,
        "sosrouter_trunk_udp_fallbacks_total",
        &[("trunk", "screening")],
    );
    assert_eq!(fallbacks, 1.0, "the INVITE was re-sent over UDP once");
    let entry = readyz_trunk(&router, "screening");
    assert!(
        says_tcp_refused(&entry),
        "/readyz should say the screening trunk refuses TCP: {entry}"
    );
}

// ---------------------------------------------------------------------
// Item 2: a PSAP's refusal does not end an emergency call

/// A located 911 call whose PSAP refuses it with `code`: the screening
/// center (UDP, answering) is tried next and answers; the caller gets its
/// 200, never the PSAP's code.
fn psap_refusal_fails_over(code: u16) {
    let psap = SippUas::refusing(code);
    let mut screening = SippUas::answering(1);
    let t = Trunks::new()
        .with_psap(psap.port)
        .with_screening(screening.port);
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let call = chicago_call(&router);
    assert!(
        psap.wait_requests("INVITE", 1, Duration::from_secs(2)),
        "the PSAP was not tried first: {}",
        psap.summary()
    );
    assert!(
        call.ok() && call.finals().first() == Some(&200),
        "PSAP answered {code}; the caller got {:?} instead of the screening center's 200: {}\nscreening {}\nrouter:\n{}",
        call.finals(),
        call.summary(),
        screening.summary(),
        call_lines(&router)
    );
    assert_eq!(screening.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn an_emergency_call_refused_404_by_the_psap_is_answered_by_the_screening_center() {
    psap_refusal_fails_over(404);
}

#[test]
fn an_emergency_call_refused_486_busy_by_the_psap_is_answered_by_the_screening_center() {
    psap_refusal_fails_over(486);
}

#[test]
fn an_emergency_call_refused_603_by_the_psap_is_answered_by_the_screening_center() {
    psap_refusal_fails_over(603);
}

/// The PSAP is a baresip phone registered as `psap`: it checks the
/// Request-URI (`sip:911@...`, forwarded unchanged) and answers
/// `404 Not Found`. The screening center answers the caller instead.
#[test]
fn an_emergency_call_refused_by_a_baresip_psap_checking_the_request_uri_is_answered_by_the_screening_center(
) {
    let phone = Baresip::psap("psap", 20);
    let front = UdpOnlyFront::start(phone.port);
    let mut screening = SippUas::answering(1);
    let t = Trunks::new()
        .with_psap(front.port)
        .with_screening(screening.port);
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let call = chicago_call(&router);
    assert!(
        call.ok() && call.finals().first() == Some(&200),
        "the caller got {:?}: {}\nbaresip PSAP:\n{}\nrouter:\n{}",
        call.finals(),
        call.summary(),
        phone.log(),
        call_lines(&router)
    );
    assert!(phone.log().contains("UA not found"), "{}", phone.log());
    assert_eq!(screening.wait_exit(Duration::from_secs(10)), Some(0));
}

/// A PSAP that takes the INVITE and never answers: after the no-answer
/// time the screening center answers the caller.
#[test]
fn an_emergency_call_to_a_silent_psap_is_answered_by_the_screening_center() {
    let psap = SippUas::silent();
    let mut screening = SippUas::answering(1);
    let t = Trunks::new()
        .with_psap(psap.port)
        .with_screening(screening.port);
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let call = chicago_call(&router);
    assert!(
        call.ok() && call.finals().first() == Some(&200),
        "{}\nPSAP {}\nrouter:\n{}",
        call.summary(),
        psap.summary(),
        call_lines(&router)
    );
    assert!(!psap.requests("INVITE").is_empty());
    assert_eq!(screening.wait_exit(Duration::from_secs(10)), Some(0));
}

/// A non-emergency number on a static route (`mode = "static"`): the
/// first trunk's 404 goes back to the caller, as before; the second trunk
/// is not tried.
#[test]
fn a_non_emergency_static_route_returns_the_trunks_404_to_the_caller() {
    let psap = SippUas::refusing(404);
    let screening = SippUas::answering(1);
    let t = Trunks::new()
        .with_psap(psap.port)
        .with_screening(screening.port);
    let config = t.lab_config(
        "\n[[route]]\nnumbers = [\"5551234\"]\ntargets = [\"psap\", \"screening\"]\nemergency = false\n",
    );
    let router = Router::start(&config, &[]);
    let call = sipp_call(
        &peers::peer_file("uac_refused.xml"),
        &[("@CODE@", "404")],
        router.port,
        "5551234",
        STRANGER,
        Transport::Udp,
    );
    assert!(
        call.ok(),
        "the caller should get the trunk's 404: {}\nrouter:\n{}",
        call.summary(),
        call_lines(&router)
    );
    assert!(psap.wait_requests("INVITE", 1, Duration::from_secs(1)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        screening.requests("INVITE").is_empty(),
        "{}",
        screening.summary()
    );
}

// ---------------------------------------------------------------------
// Item 3: ugly but routable INVITEs

/// A corpus INVITE with `edit` applied, its Via pointing at `from` (so the
/// answers come back to the test's socket whatever the router does with
/// rport).
fn corpus_invite(file: &str, from: &RawUdp, edit: impl Fn(String) -> String) -> String {
    let text =
        std::fs::read_to_string(root().join("tests/corpus/emergency-invites").join(file)).unwrap();
    let via = header(&text, "Via")[0].to_string();
    let sent_by = via
        .split_whitespace()
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let new_via = via.replacen(sent_by, &format!("127.0.0.1:{}", from.port), 1);
    edit(text.replacen(&via, &new_via, 1))
}

/// c02 (a located 911 call from Denver, routed to the PSAP) with one fault
/// added just after Max-Forwards.
fn c02_with(from: &RawUdp, line: &str) -> String {
    corpus_invite("c02-us-geo-point.sip", from, |t| {
        t.replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{line}\r\n"),
            1,
        )
    })
}

/// The three faults of item 3, each as (name, header line or edit).
fn ugly_invites(from: &RawUdp) -> Vec<(&'static str, String)> {
    vec![
        (
            "a header line with no colon",
            c02_with(from, "X-Carrier-Debug"),
        ),
        (
            "a malformed Date",
            c02_with(from, "Date: yesterday at noon"),
        ),
        (
            "a malformed Contact",
            corpus_invite("c02-us-geo-point.sip", from, |t| {
                t.replacen(
                    "Contact: <sip:+13035550117@192.0.2.20:5060>",
                    "Contact: <sip:+13035550117@192.0.2.20:5060",
                    1,
                )
            }),
        ),
    ]
}

/// Sends `invite` (a corpus INVITE routed to the PSAP) and checks that the
/// PSAP gets it and the carrier gets the PSAP's answer.
fn ugly_invite_is_routed(which: usize) {
    let psap = SippUas::answering(1);
    let t = Trunks::new().with_psap(psap.port);
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let carrier = RawUdp::new();
    let (what, invite) = ugly_invites(&carrier).swap_remove(which);
    carrier.send(router.port, invite.as_bytes());
    let answer = carrier.response(200, Duration::from_secs(8));
    let reached = psap.wait_requests("INVITE", 1, Duration::from_secs(1));
    assert!(
        reached && answer.as_deref().and_then(status) == Some(200),
        "an emergency INVITE with {what}: PSAP reached: {reached}; the carrier got: {:?}\nrouter:\n{}",
        answer.as_deref().map(|a| a.lines().next().unwrap_or("")),
        router.log()
    );
    if what.contains("colon") {
        let fwd = &psap.requests("INVITE")[0];
        assert!(
            fwd.contains("X-Carrier-Debug"),
            "the line is forwarded untouched: {fwd}"
        );
    }
}

/// An emergency INVITE with a header line that has no colon
/// (`X-Carrier-Debug`): the PSAP gets the call (with the line) and the
/// carrier gets the PSAP's answer, not silence.
#[test]
fn an_emergency_invite_with_a_header_line_without_a_colon_is_routed_and_answered() {
    ugly_invite_is_routed(0);
}

/// An emergency INVITE with `Date: yesterday at noon`: routed, answered.
#[test]
fn an_emergency_invite_with_a_malformed_date_is_routed_and_answered() {
    ugly_invite_is_routed(1);
}

/// An emergency INVITE whose Contact lacks its closing `>`: routed,
/// answered.
#[test]
fn an_emergency_invite_with_a_malformed_contact_is_routed_and_answered() {
    ugly_invite_is_routed(2);
}

/// `sosrouter inspect` on the same three INVITEs reports what the router
/// does with them: routed to the PSAP, not `400`.
#[test]
fn inspect_gives_the_verdict_the_router_acts_on_for_ugly_emergency_invites() {
    let dir = Dir::new("inspect");
    let from = RawUdp::new();
    let mut failures = Vec::new();
    for (i, (what, invite)) in ugly_invites(&from).into_iter().enumerate() {
        let path = dir.path().join(format!("ugly{i}.sip"));
        std::fs::write(&path, &invite).unwrap();
        let out = std::process::Command::new(BIN)
            .arg("inspect")
            .arg("--inventory")
            .arg(peers::inventory())
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: serde_json::Value = match serde_json::from_str(text.trim()) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{what}: inspect printed no JSON ({e}): {text}"));
                continue;
            }
        };
        let error_status = v["error"]["status"].as_u64();
        let route = v["decision"]["route"].as_str();
        if error_status == Some(400) || route != Some("psap") {
            failures.push(format!(
                "{what}: inspect says error {} ({}), decision route {route:?}; the router routes it to the PSAP",
                v["error"]["status"], v["error"]["reason"]
            ));
        }
    }
    report(failures);
}

// ---------------------------------------------------------------------
// Item 8: a preloaded Route does not steer an emergency call

/// `file` (a corpus INVITE routed to `trunk`) with a preloaded Route to
/// another SIPp UAS: the call goes where the emergency decision says, and
/// the Route's target receives nothing.
fn preloaded_route_is_ignored(file: &str, to_psap: bool) {
    let trunk = SippUas::answering(1);
    let t = if to_psap {
        Trunks::new().with_psap(trunk.port)
    } else {
        Trunks::new().with_screening(trunk.port)
    };
    let elsewhere = SippUas::answering(1);
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let carrier = RawUdp::new();
    let route = format!("Route: <sip:127.0.0.1:{};lr>", elsewhere.port);
    let invite = corpus_invite(file, &carrier, |t| {
        t.replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{route}\r\n"),
            1,
        )
    });
    carrier.send(router.port, invite.as_bytes());
    let answer = carrier.response(200, Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        elsewhere.received().is_empty(),
        "{file} with `{route}` went to the preloaded Route: {}",
        elsewhere.summary()
    );
    assert!(
        trunk.wait_requests("INVITE", 1, Duration::from_secs(1)),
        "{file}: the trunk the decision picks got nothing: {}\nrouter:\n{}",
        trunk.summary(),
        call_lines(&router)
    );
    assert_eq!(answer.as_deref().and_then(status), Some(200));
}

/// An INVITE to `urn:service:sos` (c07, screened) with
/// `Route: <sip:127.0.0.1:OTHER;lr>`: the screening center gets the call;
/// the host in the Route gets nothing.
#[test]
fn a_preloaded_route_does_not_steer_a_sos_urn_call_away_from_the_screening_center() {
    preloaded_route_is_ignored("c07-urn-service-sos.sip", false);
}

/// The same with a located 911 call (c02, to the PSAP).
#[test]
fn a_preloaded_route_does_not_steer_a_911_call_away_from_the_psap() {
    preloaded_route_is_ignored("c02-us-geo-point.sip", true);
}

// ---------------------------------------------------------------------
// Item 9: RFC 3581 on the router's own answers

/// Requests whose top Via names another host and asks for `rport`, sent
/// from 127.0.0.1: the router's own 100 Trying, 403, 483 and 200 to
/// OPTIONS carry `received=127.0.0.1` and `rport=<source port>`, and come
/// back to the source.
#[test]
fn the_routers_own_responses_carry_rport_and_received() {
    let psap = SippUas::answering(1);
    let screening = SippUas::answering(1);
    let t = Trunks::new()
        .with_psap(psap.port)
        .with_screening(screening.port);
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let p = router.port;
    let cases: [(&str, &str, &str, &str, u16); 4] = [
        ("INVITE", "911", "70", "INVITE to 911", 100),
        (
            "INVITE",
            "5551234",
            "70",
            "INVITE to a non-emergency number",
            403,
        ),
        ("INVITE", "911", "0", "INVITE with Max-Forwards: 0", 483),
        ("OPTIONS", "", "70", "OPTIONS to the router", 200),
    ];
    let mut failures = Vec::new();
    for (i, (method, user, mf, what, want)) in cases.into_iter().enumerate() {
        let sock = RawUdp::new();
        let uri = if user.is_empty() {
            format!("sip:127.0.0.1:{p}")
        } else {
            format!("sip:{user}@127.0.0.1:{p}")
        };
        let (ctype, body) = if method == "INVITE" {
            ("Content-Type: application/sdp", SDP.replace('\n', "\r\n"))
        } else {
            ("Accept: application/sdp", String::new())
        };
        let msg = format!(
            "{}{body}",
            request(&[
                &format!("{method} {uri} SIP/2.0"),
                &format!("Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKrport{i}x;rport"),
                &format!("Max-Forwards: {mf}"),
                &format!("From: <sip:{STRANGER}@192.0.2.10>;tag=r{i}"),
                &format!("To: <{uri}>"),
                &format!("Call-ID: rport-{i}@192.0.2.10"),
                &format!("CSeq: 1 {method}"),
                "Contact: <sip:caller@192.0.2.10:5062>",
                ctype,
                &format!("Content-Length: {}", body.len()),
            ])
        );
        sock.send(p, msg.as_bytes());
        let answer = std::iter::from_fn(|| sock.recv(Duration::from_secs(3)))
            .find(|m| status(m) == Some(want));
        let Some(answer) = answer else {
            failures.push(format!("{what}: no {want} came back to the source port"));
            continue;
        };
        let via = header(&answer, "Via").first().copied().unwrap_or("");
        let port_param = format!("rport={}", sock.port);
        if !(via.contains(&port_param) && via.contains("received=127.0.0.1")) {
            failures.push(format!(
                "{what}: the {want}'s Via should carry {port_param} and received=127.0.0.1: {via}"
            ));
        }
    }
    report(failures);
}

// ---------------------------------------------------------------------
// Item 10: requests that are not calls stay at the router

/// Every trunk a SIPp UAS on UDP that would answer OPTIONS, INFO and
/// NOTIFY itself (`-aa`): whatever reaches one shows in its trace.
fn probe_answering_trunks() -> (Vec<SippUas>, Trunks) {
    let uas: Vec<SippUas> = (0..4).map(|_| SippUas::answering_probes()).collect();
    let t = Trunks::new()
        .with_psap(uas[0].port)
        .with_screening(uas[1].port)
        .with_test(uas[2].port)
        .with_last_resort(uas[3].port);
    (uas, t)
}

fn nothing_reached(trunks: &[SippUas]) -> Result<(), String> {
    let reached: Vec<String> = trunks
        .iter()
        .filter(|u| !u.received().is_empty())
        .map(|u| u.summary())
        .collect();
    if reached.is_empty() {
        Ok(())
    } else {
        Err(format!("trunks reached: {reached:?}"))
    }
}

/// sipsak's OPTIONS to `sip:911@ROUTER` (and to 112 and 933) are answered
/// 200 by the router itself; no trunk receives them, and no trunk's
/// Contact comes back.
#[test]
fn sipsak_options_to_emergency_numbers_are_answered_by_the_router_alone() {
    let (trunks, t) = probe_answering_trunks();
    let router = emergency_router_below_10000(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let port = router.port;
    let mut failures = Vec::new();
    for number in ["911", "112", "933"] {
        let run = sipsak(&["-s", &format!("sip:{number}@127.0.0.1:{port}")]);
        let contact = run
            .output
            .lines()
            .find(|l| l.starts_with("Contact:"))
            .unwrap_or("");
        let trunk_contact = [t.psap, t.screening, t.test, t.last_resort]
            .iter()
            .any(|p| contact.contains(&format!(":{p}")));
        if run.status != Some(200) || trunk_contact {
            failures.push(format!(
                "OPTIONS to {number}: sipsak got {:?}, {contact}",
                run.status
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    if let Err(e) = nothing_reached(&trunks) {
        failures.push(e);
    }
    if !failures.is_empty() {
        failures.push(call_lines(&router));
    }
    report(failures);
}

/// REGISTER, SUBSCRIBE, NOTIFY and out-of-dialog INFO to 911, 112 and 933:
/// each is answered by the router (REGISTER and SUBSCRIBE refused with a
/// 4xx or 5xx) and none reaches a trunk.
#[test]
fn register_subscribe_notify_and_info_to_emergency_numbers_are_answered_by_the_router() {
    let (trunks, t) = probe_answering_trunks();
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let p = router.port;
    let mut sent = Vec::new();
    for method in ["REGISTER", "SUBSCRIBE", "NOTIFY", "INFO"] {
        for number in ["911", "112", "933"] {
            let sock = RawUdp::new();
            let uri = format!("sip:{number}@127.0.0.1:{p}");
            let extra = match method {
                "SUBSCRIBE" | "NOTIFY" => "Event: presence",
                "REGISTER" => "Expires: 60",
                _ => "Subject: not a call",
            };
            let msg = request(&[
                &format!("{method} {uri} SIP/2.0"),
                &format!(
                    "Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK{method}{number};rport",
                    sock.port
                ),
                "Max-Forwards: 70",
                &format!("From: <sip:{STRANGER}@127.0.0.1>;tag={method}{number}"),
                &format!("To: <{uri}>"),
                &format!("Call-ID: {method}-{number}@127.0.0.1"),
                &format!("CSeq: 1 {method}"),
                &format!("Contact: <sip:{STRANGER}@127.0.0.1:{}>", sock.port),
                extra,
                "Content-Length: 0",
            ]);
            sock.send(p, msg.as_bytes());
            sent.push((method, number, sock));
        }
    }
    let mut failures = Vec::new();
    for (method, number, sock) in &sent {
        let answer = sock.response(200, Duration::from_secs(3));
        let code = answer.as_deref().and_then(status);
        let refused = code.is_some_and(|c| c >= 400);
        if code.is_none() || (matches!(*method, "REGISTER" | "SUBSCRIBE") && !refused) {
            failures.push(format!("{method} to {number}: answered {code:?}"));
        }
    }
    if let Err(e) = nothing_reached(&trunks) {
        failures.push(e);
    }
    report(failures);
}

/// A text message (MESSAGE, RFC 8876) to 911 is still routed like a call:
/// the screening center takes it and its 200 comes back.
#[test]
fn a_message_to_911_is_routed_to_the_screening_center() {
    let screening = SippUas::start(&peers::peer_file("uas_message.xml"), &[], 1, &[]);
    let t = Trunks::new().with_screening(screening.port);
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback: Some(false),
            ..Setup::default()
        },
    );
    let sock = RawUdp::new();
    let uri = format!("sip:911@127.0.0.1:{}", router.port);
    let body = "Help, I cannot speak.";
    let msg = format!(
        "{}{body}",
        request(&[
            &format!("MESSAGE {uri} SIP/2.0"),
            &format!(
                "Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKmsg1;rport",
                sock.port
            ),
            "Max-Forwards: 70",
            &format!("From: <sip:{STRANGER}@127.0.0.1>;tag=m1"),
            &format!("To: <{uri}>"),
            "Call-ID: message-1@127.0.0.1",
            "CSeq: 1 MESSAGE",
            "Content-Type: text/plain",
            &format!("Content-Length: {}", body.len()),
        ])
    );
    sock.send(router.port, msg.as_bytes());
    let answer = sock.response(200, Duration::from_secs(5));
    assert!(
        screening.wait_requests("MESSAGE", 1, Duration::from_secs(1)),
        "{}\nrouter:\n{}",
        screening.summary(),
        router.log()
    );
    assert_eq!(answer.as_deref().and_then(status), Some(200), "{answer:?}");
}

// ---------------------------------------------------------------------
// Item 11: OPTIONS by name

/// sipsak's OPTIONS to the router's own address: `sip:127.0.0.1:PORT`
/// (200 today), and with a user part (`sip:ping@127.0.0.1:PORT`) or
/// without a port (`sip:127.0.0.1`, sent to PORT): 200 from the router.
#[test]
fn options_to_the_routers_address_with_a_user_part_or_without_a_port_get_200() {
    let t = Trunks::new();
    let router = emergency_router_below_10000(&t, &Setup::default());
    let port = router.port;
    let p = port.to_string();
    let cases: [(&str, Vec<String>); 3] = [
        (
            "sip:127.0.0.1:PORT",
            vec!["-s".into(), format!("sip:127.0.0.1:{port}")],
        ),
        (
            "sip:ping@127.0.0.1:PORT",
            vec!["-s".into(), format!("sip:ping@127.0.0.1:{port}")],
        ),
        (
            "sip:127.0.0.1 (no port)",
            vec!["-s".into(), "sip:127.0.0.1".into(), "-r".into(), p],
        ),
    ];
    let mut failures = Vec::new();
    for (what, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = sipsak(&args);
        if run.status != Some(200) {
            let line = run
                .output
                .lines()
                .find(|l| l.starts_with("SIP/2.0"))
                .unwrap_or("no answer");
            failures.push(format!("OPTIONS {what}: {line}"));
        }
    }
    if !failures.is_empty() {
        failures.push(router.log());
    }
    report(failures);
}

/// With `[sip] aliases = ["sos.example.net"]`, OPTIONS to
/// `sip:sos.example.net`, `sip:ping@sos.example.net:PORT` and
/// `sip:sos.example.net:PORT` (a carrier's health check by name) get 200.
#[test]
fn options_to_a_configured_host_name_get_200() {
    let t = Trunks::new();
    let router = emergency_router(
        &t,
        &Setup {
            sip: "aliases = [\"sos.example.net\"]",
            ..Setup::default()
        },
    );
    let p = router.port;
    let mut failures = Vec::new();
    for (i, uri) in [
        "sip:sos.example.net".to_string(),
        format!("sip:ping@sos.example.net:{p}"),
        format!("sip:sos.example.net:{p}"),
    ]
    .iter()
    .enumerate()
    {
        let sock = RawUdp::new();
        let msg = request(&[
            &format!("OPTIONS {uri} SIP/2.0"),
            &format!(
                "Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKalias{i};rport",
                sock.port
            ),
            "Max-Forwards: 70",
            "From: <sip:monitor@carrier.example>;tag=a1",
            &format!("To: <{uri}>"),
            &format!("Call-ID: alias-{i}@carrier.example"),
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        ]);
        sock.send(p, msg.as_bytes());
        let answer = sock.response(200, Duration::from_secs(3));
        if answer.as_deref().and_then(status) != Some(200) {
            failures.push(format!(
                "OPTIONS {uri}: {:?}",
                answer.as_deref().map(|a| a.lines().next().unwrap_or(""))
            ));
        }
    }
    report(failures);
}

// ---------------------------------------------------------------------
// Item 12: readiness text and the inventory gauge

/// Probes every second; a trunk needs three answers in a row to be up and
/// three failures to be down. Once a probe is answered, `/readyz` no
/// longer says "no probe answered yet"; once the trunk is gone and a probe
/// has gone unanswered, it no longer says "answered 200".
#[test]
fn readyz_reason_follows_the_last_probe() {
    let trunk = SippUas::answering_probes();
    let t = Trunks::new().with_psap(trunk.port);
    let router = emergency_router(
        &t,
        &Setup {
            health: "interval_s = 1\ntimeout_ms = 500\nup_after = 3\ndown_after = 3",
            ..Setup::default()
        },
    );
    let mut failures = Vec::new();
    assert!(
        trunk.wait_requests("OPTIONS", 1, Duration::from_secs(5)),
        "no probe reached the trunk: {}",
        trunk.summary()
    );
    // Let the router take the answer in.
    std::thread::sleep(Duration::from_millis(300));
    let entry = readyz_trunk(&router, "psap");
    if entry["reason"]
        .as_str()
        .unwrap_or("")
        .contains("no probe answered yet")
    {
        failures.push(format!(
            "a probe was answered {} time(s), yet /readyz says: {entry}",
            trunk.requests("OPTIONS").len()
        ));
    }
    let up = wait_until(Duration::from_secs(8), || {
        readyz_trunk(&router, "psap")["state"] == "up"
    });
    assert!(
        up,
        "the trunk never came up: {}",
        readyz_trunk(&router, "psap")
    );
    let probes = trunk.requests("OPTIONS").len();
    drop(trunk);
    // The next probe goes unanswered: 1 s interval, 0.5 s timeout.
    std::thread::sleep(Duration::from_millis(2000));
    let entry = readyz_trunk(&router, "psap");
    if entry["reason"]
        .as_str()
        .unwrap_or("")
        .contains("answered 200")
    {
        failures.push(format!(
            "the trunk answered {probes} probes and then none for 2 s, yet /readyz says: {entry}"
        ));
    }
    report(failures);
}

/// With a database, the inventory (the 14 numbers of the corpus
/// inventory, imported into the empty database) is exported as
/// `sosrouter_inventory_numbers`, which the Grafana dashboard reads.
#[test]
fn the_inventory_size_is_exported_when_a_database_is_configured() {
    let t = Trunks::new();
    let db = Dir::new("db");
    let router = emergency_router(
        &t,
        &Setup {
            database: Some(db.path()),
            ..Setup::default()
        },
    );
    let mut last = String::new();
    let seen = wait_until(Duration::from_secs(10), || {
        last = metrics(&router);
        metric(&last, "sosrouter_inventory_numbers", &[]) == 14.0
    });
    assert!(
        seen,
        "sosrouter_inventory_numbers should be 14: {:?}\nrouter:\n{}",
        last.lines()
            .filter(|l| l.contains("inventory"))
            .collect::<Vec<_>>(),
        router.log()
    );
}

// ---------------------------------------------------------------------
// Kamailio as the carrier's edge

/// A 911 call from a SIPp phone through Kamailio (record-routing, relaying
/// to the router over `to_router`) to a PSAP that listens on UDP only:
/// answered; the caller's ACK and BYE follow the route set through both
/// proxies and the BYE reaches the PSAP.
fn call_through_kamailio(to_router: Transport, tcp_fallback: Option<bool>) {
    let mut psap = SippUas::answering(1);
    let t = Trunks::new().with_psap(psap.port);
    let router = emergency_router(
        &t,
        &Setup {
            tcp_fallback,
            ..Setup::default()
        },
    );
    let edge = Kamailio::start(router.port, to_router);
    let call = sipp_emergency_call(
        edge.port,
        "911",
        CHICAGO,
        Some(&chicago_pidf()),
        Transport::Udp,
    );
    assert!(
        call.ok(),
        "the call through Kamailio ({} to the router) failed: {}\nPSAP {}\nrouter:\n{}\nkamailio:\n{}",
        to_router.name(),
        call.summary(),
        psap.summary(),
        call_lines(&router),
        edge.log()
    );
    assert_eq!(
        psap.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        psap.summary()
    );
    let invite = &psap.requests("INVITE")[0];
    let rr = header(invite, "Record-Route");
    assert!(
        rr.iter().any(|r| r.contains(&format!(":{}", edge.port)))
            && rr.iter().any(|r| r.contains(&format!(":{}", router.port))),
        "both proxies record-route: {rr:?}"
    );
    let bye = &psap.requests("BYE")[0];
    assert_eq!(
        header(bye, "Via").len(),
        3,
        "the BYE came through both proxies: {bye}"
    );
    assert!(edge.relayed("BYE") >= 1);
}

#[test]
fn a_911_call_through_kamailio_over_udp_reaches_a_udp_only_psap_and_its_bye_follows() {
    call_through_kamailio(Transport::Udp, None);
}

#[test]
fn a_911_call_through_kamailio_over_tcp_reaches_a_udp_only_psap_and_its_bye_follows() {
    call_through_kamailio(Transport::Tcp, None);
}

/// The same two calls with the trunks' `tcp_fallback` off, so that the
/// forwarded INVITE leaves over UDP: these show the rig (Kamailio's route
/// set, the BYE through both proxies) works on its own.
#[test]
fn with_tcp_fallback_off_a_911_call_through_kamailio_over_udp_is_answered_and_its_bye_follows() {
    call_through_kamailio(Transport::Udp, Some(false));
}

#[test]
fn with_tcp_fallback_off_a_911_call_through_kamailio_over_tcp_is_answered_and_its_bye_follows() {
    call_through_kamailio(Transport::Tcp, Some(false));
}

// ---------------------------------------------------------------------
// SIP over TLS between carriers, the router and PSAPs

/// The certificates of a TLS interconnect, made for the test: one CA, the
/// router's, the carrier edge's and the PSAP side's (each also names
/// 127.0.0.1, the address its peers reach it by).
struct Interconnect {
    dir: Dir,
    ca: PathBuf,
}

impl Interconnect {
    fn new() -> Interconnect {
        let dir = Dir::new("interconnect");
        let ca = common::pki::Ca::new("Interconnect CA");
        for (name, san) in [
            ("router", "router.test"),
            ("edge", "edge.carrier.test"),
            ("psap", "psap.test"),
        ] {
            ca.valid(&[san, "127.0.0.1"]).write(dir.path(), name);
        }
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        Interconnect { dir, ca: path }
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pem"))
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.key"))
    }
}

/// A located 911 call from Chicago through Kamailio over mutual TLS: the
/// SIPp caller sends to Kamailio as the carrier's edge over UDP; the edge
/// relays over TLS, presenting `edge.carrier.test`, which is how the
/// router knows the carrier; the router relays over TLS, presenting its
/// own certificate, to Kamailio on the PSAP side, which relays over UDP to
/// the SIPp PSAP. `psap_hangs_up` picks who sends the BYE.
fn call_over_tls_through_kamailio(psap_hangs_up: bool) {
    let pki = Interconnect::new();
    let mut psap = if psap_hangs_up {
        SippUas::start(&peers::peer_file("uas_hangup.xml"), &[], 1, &[])
    } else {
        SippUas::answering(1)
    };
    let psap_side = KamailioTls::start(
        "psap-side",
        &pki.cert("psap"),
        &pki.key("psap"),
        &pki.ca,
        &format!("127.0.0.1:{}", psap.port),
        "udp",
    );
    let t = Trunks::new().with_psap(psap_side.port);
    let mut cfg = emergency_config(&t, &Setup::default());
    cfg = cfg.replacen(
        "listen = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]",
        "listen = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]",
        1,
    );
    // The carrier is known by its certificate alone; the PSAP trunk is a
    // sips: URI, checked against the PSAP side's certificate.
    cfg = cfg.replacen(
        "sources = [\"127.0.0.0/8\"]\ncountry = \"US\"",
        "tls_names = [\"edge.carrier.test\"]\ncountry = \"US\"",
        1,
    );
    cfg = cfg.replacen(
        &format!("uri = \"sip:127.0.0.1:{}\"", psap_side.port),
        &format!("uri = \"sips:127.0.0.1:{}\"", psap_side.port),
        1,
    );
    cfg.push_str(&format!(
        "\n[sip.tls]\ncertificate = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        pki.cert("router").display(),
        pki.key("router").display(),
        pki.ca.display()
    ));
    let inventory = peers::inventory();
    let router = Router::start(&cfg, &["--inventory", inventory.to_str().unwrap()]);
    router.wait_log("listening sip tls 127.0.0.1:", 1, Duration::from_secs(5));
    let tls_port: u16 = router
        .log()
        .lines()
        .find_map(|l| l.split("listening sip tls 127.0.0.1:").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap();
    let edge = KamailioTls::start(
        "edge",
        &pki.cert("edge"),
        &pki.key("edge"),
        &pki.ca,
        &format!("127.0.0.1:{tls_port}"),
        "tls",
    );
    let pidf = chicago_pidf();
    let scenario = if psap_hangs_up {
        peers::peer_file("uac_hungup.xml")
    } else {
        sipp_scenario("uac_emergency.xml")
    };
    let call = sipp_call(
        &scenario,
        &[
            (
                "@HEADERS@",
                "Geolocation: <cid:loc@caller.example>\n      Geolocation-Routing: yes\n      Priority: emergency",
            ),
            ("@CONTENT_TYPE@", "multipart/mixed;boundary=sipp-b"),
            (
                "@BODY@",
                &format!("--sipp-b\nContent-Type: application/sdp\n\n{SDP}\n--sipp-b\nContent-Type: application/pidf+xml\nContent-ID: <loc@caller.example>\n\n{pidf}\n--sipp-b--\n"),
            ),
        ],
        edge.port,
        "911",
        CHICAGO,
        Transport::Udp,
    );
    let logs = |psap: &SippUas| {
        format!(
            "PSAP {}\nrouter:\n{}\nedge:\n{}\npsap side:\n{}",
            psap.summary(),
            call_lines(&router),
            edge.log(),
            psap_side.log()
        )
    };
    assert!(
        call.ok(),
        "the call failed: {}\n{}",
        call.summary(),
        logs(&psap)
    );
    let exit = psap.wait_exit(Duration::from_secs(10));
    assert_eq!(exit, Some(0), "{}", logs(&psap));
    let invite = &psap.requests("INVITE")[0];
    // The PSAP side's Via and the router's: the router's names TLS.
    assert!(
        header(invite, "Via")
            .iter()
            .any(|v| v.starts_with(&format!("SIP/2.0/TLS 127.0.0.1:{tls_port};"))),
        "{invite}"
    );
    let rr = header(invite, "Record-Route").join(",");
    assert!(
        rr.contains(&format!("127.0.0.1:{tls_port};transport=tls;lr")),
        "the router record-routes with its TLS listener: {rr}"
    );
    assert!(
        router.log().contains("trunk=carrier") || router.log().contains("trunk=\"carrier\""),
        "the edge was known by its certificate:\n{}",
        router.log()
    );
    assert!(
        psap_side
            .log()
            .lines()
            .any(|l| l.contains("psap-side: INVITE ") && l.trim_end().ends_with("/tls")),
        "the INVITE reached the PSAP side over TLS:\n{}",
        psap_side.log()
    );
    let bye_from = if psap_hangs_up { "psap-side" } else { "edge" };
    assert!(
        edge.relayed("BYE") >= 1 && psap_side.relayed("BYE") >= 1,
        "the BYE from the {bye_from} went through both Kamailios: {}",
        logs(&psap)
    );
    let text = metrics(&router);
    for direction in ["inbound", "outbound"] {
        assert!(
            metric(
                &text,
                "sosrouter_tls_handshakes_total",
                &[("direction", direction), ("result", "ok")]
            ) >= 1.0,
            "{direction}"
        );
    }
}

#[test]
fn a_911_call_over_mutual_tls_through_kamailio_both_ways_the_caller_hangs_up() {
    call_over_tls_through_kamailio(false);
}

#[test]
fn a_911_call_over_mutual_tls_through_kamailio_both_ways_the_psap_hangs_up() {
    call_over_tls_through_kamailio(true);
}
