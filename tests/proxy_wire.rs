//! The real binary on loopback, raw bytes on the wire, for the corner cases
//! SIPp cannot stage: bad Max-Forwards, a loop, an unknown source, a CANCEL
//! racing a 200, requests that do not parse, an oversized TCP message.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Router, Trunks};

fn udp(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The other trunks (down), the PSAP trunk's socket and the router, in
/// the order they are given back, so that the router is the first dropped.
fn router_with_trunk() -> (Trunks, UdpSocket, Router) {
    let trunk = udp("127.0.0.1");
    let trunks = Trunks::new().with_psap(trunk.local_addr().unwrap().port());
    let router = Router::start(&trunks.lab_config(""), &[]);
    (trunks, trunk, router)
}

/// Receives the next message that is not a 100 Trying.
fn recv(s: &UdpSocket) -> (String, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = s.recv_from(&mut buf).expect("no message arrived");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100 ") {
            return (text, from);
        }
    }
}

fn invite(call_id: &str, branch: &str, local: SocketAddr, extra: &str) -> String {
    format!(
        "INVITE sip:911@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f1\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+12125550142@{local}>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The start of a trunk's 200 OK to a forwarded request: its Via, From,
/// Call-ID, CSeq and Record-Route lines, and its To with a tag; the caller
/// adds Contact and ends it.
fn ok_headers(fwd: &str) -> String {
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for l in fwd.lines() {
        if ["Via:", "From:", "Call-ID:", "CSeq:", "Record-Route:"]
            .iter()
            .any(|h| l.starts_with(h))
        {
            ok.push_str(l);
            ok.push_str("\r\n");
        } else if l.starts_with("To:") {
            ok.push_str(&format!("{l};tag=psap1\r\n"));
        }
    }
    ok
}

fn status_of(msg: &str) -> &str {
    msg.split(' ').nth(1).unwrap_or("")
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn options_to_the_router_is_answered_with_its_capabilities() {
    let (_trunks, _trunk, router) = router_with_trunk();
    let c = udp("127.0.0.1");
    let local = c.local_addr().unwrap();
    let req = format!(
        "OPTIONS sip:127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKopt1\r\nMax-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        router.port
    );
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&c);
    assert_eq!(status_of(&resp), "200", "{resp}");
    assert!(header(&resp, "Allow").unwrap().contains("INVITE"));
    assert!(header(&resp, "Supported").unwrap().contains("geolocation"));
    assert!(header(&resp, "To").unwrap().contains("tag="));
}

#[test]
fn max_forwards_zero_gets_483() {
    let (_trunks, _trunk, router) = router_with_trunk();
    let c = udp("127.0.0.1");
    let req = invite("mf-0", "z9hG4bKmf0", c.local_addr().unwrap(), "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&c);
    assert_eq!(status_of(&resp), "483", "{resp}");
}

#[test]
fn a_request_that_comes_back_gets_482() {
    let (_trunks, trunk, router) = router_with_trunk();
    let c = udp("127.0.0.1");
    c.send_to(
        invite("loop-1", "z9hG4bKloop1", c.local_addr().unwrap(), "").as_bytes(),
        ("127.0.0.1", router.port),
    )
    .unwrap();
    // The trunk sends the forwarded INVITE straight back to the router.
    let (fwd, _) = recv(&trunk);
    assert!(fwd.starts_with("INVITE "), "{fwd}");
    trunk
        .send_to(fwd.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&trunk);
    assert_eq!(status_of(&resp), "482", "{resp}");
}

#[test]
fn an_unknown_source_gets_403() {
    let (_trunks, _trunk, router) = router_with_trunk();
    // The lab config allows 127.0.0.1 only; 127.0.0.2 is on loopback too.
    let c = udp("127.0.0.2");
    c.send_to(
        invite("src-1", "z9hG4bKsrc1", c.local_addr().unwrap(), "").as_bytes(),
        ("127.0.0.1", router.port),
    )
    .unwrap();
    let (resp, _) = recv(&c);
    assert_eq!(status_of(&resp), "403", "{resp}");
    router.wait_log("Source Not Allowed", 1, Duration::from_secs(2));
}

/// A stranger's answers, 403 or 400, come out of a budget per second, so a
/// flood of forged datagrams cannot aim the router's answers at someone;
/// allowed sources are answered whatever strangers do.
#[test]
fn a_stranger_is_answered_only_within_its_budget() {
    let trunk = udp("127.0.0.1");
    let trunks = Trunks::new().with_psap(trunk.local_addr().unwrap().port());
    let cfg = trunks.lab_config("").replace(
        "allow = [\"127.0.0.1/32\"]\n",
        "allow = [\"127.0.0.1/32\"]\nstranger_replies_per_s = 3\n",
    );
    let router = Router::start(&cfg, &[]);
    let c = udp("127.0.0.2");
    let local = c.local_addr().unwrap();
    let started = std::time::Instant::now();
    for i in 0..30 {
        let req = invite(&format!("sb-{i}"), &format!("z9hG4bKsb{i}"), local, "");
        // Every third one does not parse (no Call-ID): a 400 to a stranger
        // comes out of the same budget.
        let req = if i % 3 == 0 {
            req.replace(&format!("Call-ID: sb-{i}\r\n"), "")
        } else {
            req
        };
        c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
            .unwrap();
    }
    c.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = c.recv_from(&mut buf) {
        answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // The burst of 3, plus what 3 a second refills while the test ran.
    let most = 3 + (started.elapsed().as_secs_f64() * 3.0).ceil() as usize;
    assert!(
        (3..=most).contains(&answers.len()),
        "{} answers, at most {most} expected: {answers:?}",
        answers.len()
    );
    assert!(answers
        .iter()
        .all(|a| ["400", "403"].contains(&status_of(a))));
    // An allowed caller still gets its 400.
    let ok = udp("127.0.0.1");
    let req = invite("", "z9hG4bKsb-ok", ok.local_addr().unwrap(), "").replace("Call-ID: \r\n", "");
    ok.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&ok);
    assert_eq!(status_of(&resp), "400", "{resp}");
}

/// An RFC 2543 phone: its Via has no branch nor any other parameter, and
/// names an address the packet did not come from. The call reaches the
/// PSAP with `received` added, and the answer comes back to the phone.
#[test]
fn a_call_from_an_rfc_2543_phone_behind_nat_is_routed_and_answered() {
    let (_trunks, trunk, router) = router_with_trunk();
    let caller = udp("127.0.0.1");
    let to = ("127.0.0.1", router.port);
    let local = caller.local_addr().unwrap();
    let req = invite("rfc2543-1", "unused", local, "").replace(
        &format!("Via: SIP/2.0/UDP {local};branch=unused"),
        "Via: SIP/2.0/UDP 198.51.100.3",
    );
    caller.send_to(req.as_bytes(), to).unwrap();
    let (fwd, from) = recv(&trunk);
    assert!(fwd.starts_with("INVITE sip:"), "{fwd}");
    assert!(
        fwd.contains("\r\nVia: SIP/2.0/UDP 198.51.100.3;received=127.0.0.1\r\n"),
        "{fwd}"
    );
    let mut ok = ok_headers(&fwd);
    ok.push_str("Contact: <sip:psap@127.0.0.1>\r\nContent-Length: 0\r\n\r\n");
    trunk.send_to(ok.as_bytes(), from).unwrap();
    let (answer, _) = recv(&caller);
    assert_eq!(status_of(&answer), "200", "{answer}\n{}", router.log());
    assert_eq!(header(&answer, "Call-ID"), Some("rfc2543-1"));
}

#[test]
fn a_request_that_does_not_parse_gets_400_naming_the_fault() {
    let (_trunks, _trunk, router) = router_with_trunk();
    let c = udp("127.0.0.1");
    let req = invite("", "z9hG4bKbad1", c.local_addr().unwrap(), "").replace("Call-ID: \r\n", "");
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&c);
    assert!(
        resp.starts_with("SIP/2.0 400 Missing Call-ID Header\r\n"),
        "{resp}"
    );
    // A Content-Length beyond the datagram.
    let req = invite("cl-1", "z9hG4bKcl1", c.local_addr().unwrap(), "")
        .replace("Content-Length: 0", "Content-Length: 500");
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&c);
    assert!(
        resp.starts_with("SIP/2.0 400 Body Shorter Than Content-Length\r\n"),
        "{resp}"
    );
    // A wrong version.
    let req = invite("v-1", "z9hG4bKv1", c.local_addr().unwrap(), "")
        .replace("sip:911@127.0.0.1 SIP/2.0", "sip:911@127.0.0.1 SIP/3.0");
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&c);
    assert_eq!(status_of(&resp), "505", "{resp}");
}

/// A malformed header the router only passes on (a Date not in GMT) does
/// not stop an emergency call; the same fault in any other call gets a 400
/// naming it.
#[test]
fn an_emergency_call_with_a_malformed_date_still_reaches_the_psap() {
    let (_trunks, trunk, router) = router_with_trunk();
    let c = udp("127.0.0.1");
    let local = c.local_addr().unwrap();
    let bad_date = "Date: Sat, 13 Nov 2010 23:29:00 PST\r\n";
    let req = invite("date-1", "z9hG4bKdate1", local, bad_date);
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (fwd, _) = recv(&trunk);
    assert!(fwd.starts_with("INVITE sip:911@"), "{fwd}");
    assert_eq!(header(&fwd, "Call-ID"), Some("date-1"));
    assert_eq!(header(&fwd, "Date"), Some("Sat, 13 Nov 2010 23:29:00 PST"));

    let req = invite("date-2", "z9hG4bKdate2", local, bad_date)
        .replace("sip:911@127.0.0.1 SIP", "sip:alice@127.0.0.1 SIP");
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&c);
    assert!(
        resp.starts_with("SIP/2.0 400 Bad Date Header\r\n"),
        "{resp}"
    );
    assert_eq!(header(&resp, "Call-ID"), Some("date-2"));
}

#[test]
fn a_call_that_is_not_an_emergency_is_refused() {
    let (_trunks, _trunk, router) = router_with_trunk();
    let c = udp("127.0.0.1");
    let req = invite("ne-1", "z9hG4bKne1", c.local_addr().unwrap(), "")
        .replace("sip:911@127.0.0.1 SIP", "sip:alice@127.0.0.1 SIP");
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (resp, _) = recv(&c);
    assert_eq!(status_of(&resp), "403", "{resp}");
}

#[test]
fn a_cancel_racing_the_answer_leaves_the_call_answered() {
    let (_trunks, trunk, router) = router_with_trunk();
    let c = udp("127.0.0.1");
    let local = c.local_addr().unwrap();
    let inv = invite("race-1", "z9hG4bKrace1", local, "");
    c.send_to(inv.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (fwd, from) = recv(&trunk);
    let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via:")).collect();
    let common = format!(
        "{}\r\nFrom: <sip:+12125550142@example.com>;tag=f1\r\nTo: <sip:911@127.0.0.1>;tag=psap1\r\nCall-ID: race-1\r\nCSeq: 1 INVITE\r\n",
        vias.join("\r\n")
    );
    let ringing = format!("SIP/2.0 180 Ringing\r\n{common}Content-Length: 0\r\n\r\n");
    trunk.send_to(ringing.as_bytes(), from).unwrap();
    let (resp, _) = recv(&c);
    assert_eq!(status_of(&resp), "180", "{resp}");
    // The caller hangs up at the very moment the PSAP answers.
    let cancel = format!(
        "CANCEL sip:911@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKrace1\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f1\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: race-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    let ok = format!(
        "SIP/2.0 200 OK\r\n{common}Contact: <sip:psap@{from}>\r\nContent-Length: 0\r\n\r\n"
    );
    trunk.send_to(ok.as_bytes(), from).unwrap();
    c.send_to(cancel.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let (resp, _) = recv(&c);
        got.push((
            status_of(&resp).to_string(),
            header(&resp, "CSeq").unwrap_or("").to_string(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("200".to_string(), "1 CANCEL".to_string()),
            ("200".to_string(), "1 INVITE".to_string())
        ],
        "{}",
        router.log()
    );
    router.wait_log("answered", 1, Duration::from_secs(2));
    // And no 487 follows: the call stays answered.
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = c.recv_from(&mut buf) {
        let extra = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_ne!(status_of(&extra), "487", "{extra}");
    }
}

#[test]
fn an_oversized_tcp_message_gets_513_and_the_connection_closes() {
    let (_trunks, _trunk, router) = router_with_trunk();
    let mut s = TcpStream::connect(("127.0.0.1", router.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = s.local_addr().unwrap();
    let req = invite("big-1", "z9hG4bKbig1", local, "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("Content-Length: 0", "Content-Length: 70000");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("SIP/2.0 513 Message Too Large\r\n"),
        "{text:?}"
    );
}

/// Reads SIP messages off a TCP stream until one starts with `start`.
fn read_tcp_until(s: &mut TcpStream, start: &str) -> String {
    let mut got = String::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(i) = got.find(start) {
            return got[i..].to_string();
        }
        let n = s.read(&mut buf).expect("no message arrived over TCP");
        assert!(n > 0, "connection closed; got {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// A caller over TCP, the PSAP trunk over UDP: the INVITE carries two
/// Record-Route values (RFC 5658), and the PSAP's BYE, routed by them,
/// reaches the caller over the caller's own TCP connection.
#[test]
fn a_psap_hangs_up_on_a_tcp_caller_through_the_double_record_route() {
    let (_trunks, trunk, router) = router_with_trunk();
    let mut s = TcpStream::connect(("127.0.0.1", router.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = s.local_addr().unwrap();
    let req = invite("xrr-1", "z9hG4bKxrr1", local, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(req.as_bytes()).unwrap();
    let (fwd, from) = recv(&trunk);
    let rr: Vec<&str> = fwd
        .lines()
        .filter(|l| l.starts_with("Record-Route:"))
        .map(|l| l["Record-Route:".len()..].trim())
        .collect();
    assert_eq!(rr.len(), 2, "{fwd}");
    assert!(!rr[0].contains("transport="), "{fwd}");
    assert!(rr[1].contains(";transport=tcp"), "{fwd}");

    let mut ok = ok_headers(&fwd);
    let psap = trunk.local_addr().unwrap();
    ok.push_str(&format!(
        "Contact: <sip:psap@{psap}>\r\nContent-Length: 0\r\n\r\n"
    ));
    trunk.send_to(ok.as_bytes(), from).unwrap();
    let answer = read_tcp_until(&mut s, "SIP/2.0 200 OK");
    assert!(header(&answer, "Record-Route").is_some(), "{answer}");

    let bye = format!(
        "BYE sip:+12125550142@{local} SIP/2.0\r\nVia: SIP/2.0/UDP {psap};branch=z9hG4bKpsapbye1\r\nRoute: {}, {}\r\nMax-Forwards: 70\r\nFrom: <sip:911@127.0.0.1>;tag=psap1\r\nTo: <sip:+12125550142@example.com>;tag=f1\r\nCall-ID: xrr-1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        rr[0], rr[1]
    );
    trunk.send_to(bye.as_bytes(), from).unwrap();
    let got = read_tcp_until(&mut s, "BYE ");
    assert!(
        got.starts_with(&format!("BYE sip:+12125550142@{local} SIP/2.0\r\n")),
        "{got}"
    );
    assert_eq!(header(&got, "Route"), None, "{got}");
    assert!(got.contains("Via: SIP/2.0/TCP "), "{got}");
}

/// A TCP connection to the router on 127.0.0.1, and whether it answers a
/// CRLF keep-alive ping with a pong (RFC 5626) within 3 s.
fn connect_and_ping(port: u16) -> (TcpStream, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"\r\n\r\n");
    let mut pong = [0u8; 2];
    let answered = s.read_exact(&mut pong).is_ok() && &pong == b"\r\n";
    (s, answered)
}

#[test]
fn tcp_keepalive_ping_gets_a_pong() {
    let (_trunks, _trunk, router) = router_with_trunk();
    assert!(connect_and_ping(router.port).1);
}

#[test]
fn ipv6_listeners_answer_over_udp_and_tcp() {
    let trunks = Trunks::new();
    let cfg = trunks
        .lab_config("")
        .replace(
            r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
            r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "udp:[::1]:0", "tcp:[::1]:0"]"#,
        )
        .replace(
            r#"allow = ["127.0.0.1/32"]"#,
            r#"allow = ["127.0.0.1/32", "::1/128"]"#,
        );
    let router = Router::start(&cfg, &[]);
    router.wait_log("listening sip tcp [::1]:", 1, Duration::from_secs(5));
    let log = router.log();
    let port: u16 = log
        .lines()
        .find_map(|l| l.split("listening sip udp [::1]:").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no IPv6 listener: {log}"));
    let c = UdpSocket::bind("[::1]:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = c.local_addr().unwrap();
    let options = |via: &str| {
        format!(
            "OPTIONS sip:[::1]:{port} SIP/2.0\r\nVia: SIP/2.0/{via} {local};branch=z9hG4bKv6{via}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:[::1]>\r\nCall-ID: v6-{via}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    c.send_to(options("UDP").as_bytes(), ("::1", port)).unwrap();
    let (resp, _) = recv(&c);
    assert_eq!(status_of(&resp), "200", "{resp}");
    let mut s = TcpStream::connect(("::1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(options("TCP").as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK\r\n"));
}

#[test]
fn past_its_transaction_limit_the_router_answers_503_with_retry_after() {
    let trunk = udp("127.0.0.1");
    let trunks = Trunks::new().with_psap(trunk.local_addr().unwrap().port());
    let extra =
        "[sip.overload]\nmax_transactions = 2\nemergency_reserve_percent = 0\nretry_after_s = 9\n";
    let cfg = trunks.lab_config(extra);
    let router = Router::start(&cfg, &[]);
    let c = udp("127.0.0.1");
    let local = c.local_addr().unwrap();
    // The first call takes the room: its server and client transactions.
    c.send_to(
        invite("ol-1", "z9hG4bKol1", local, "").as_bytes(),
        ("127.0.0.1", router.port),
    )
    .unwrap();
    let (fwd, _) = recv(&trunk);
    assert!(fwd.starts_with("INVITE "), "{fwd}");
    c.send_to(
        invite("ol-2", "z9hG4bKol2", local, "").as_bytes(),
        ("127.0.0.1", router.port),
    )
    .unwrap();
    let (resp, _) = recv(&c);
    assert!(resp.starts_with("SIP/2.0 503 Overloaded\r\n"), "{resp}");
    assert_eq!(header(&resp, "Call-ID"), Some("ol-2"));
    assert_eq!(header(&resp, "Retry-After"), Some("9"));
    router.wait_log(
        "overload: emergency calls refused with 503",
        1,
        Duration::from_secs(2),
    );
}

/// A stranger's TCP connection is closed at once, so that strangers cannot
/// hold the router's connection slots; an allowed peer's stays open.
#[test]
fn a_tcp_connection_from_a_stranger_is_closed_at_once() {
    let (_trunks, _trunk, router) = router_with_trunk();
    // The lab config allows 127.0.0.1 only; 127.0.0.2 is on loopback too.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    sock.connect(&SocketAddr::from(([127, 0, 0, 1], router.port)).into())
        .unwrap();
    let mut stranger: TcpStream = sock.into();
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    // End of stream (or a reset), well before the timeout.
    let start = std::time::Instant::now();
    assert!(matches!(stranger.read(&mut buf), Ok(0) | Err(_)));
    assert!(start.elapsed() < Duration::from_secs(4));
    router.wait_log(
        "tcp connection refused: closed at once",
        1,
        Duration::from_secs(2),
    );
    // An allowed peer's connection stays and answers a keep-alive.
    assert!(connect_and_ping(router.port).1);
}

/// One peer holds at most `max_connections_per_peer` accepted
/// connections; the next is closed at once, and room comes back when one
/// of its connections closes.
#[test]
fn one_peer_holds_no_more_than_its_share_of_tcp_connections() {
    let trunk = udp("127.0.0.1");
    let trunks = Trunks::new().with_psap(trunk.local_addr().unwrap().port());
    let cfg = trunks.lab_config("[sip.tcp]\nmax_connections_per_peer = 2\n");
    let router = Router::start(&cfg, &[]);
    let open = || connect_and_ping(router.port);
    let (first, a) = open();
    let (_second, b) = open();
    let (_third, c) = open();
    assert_eq!((a, b, c), (true, true, false));
    router.wait_log("reason=\"peer_limit\"", 1, Duration::from_secs(2));
    drop(first);
    // The router sees the first close and frees its slot.
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_s, alive) = open();
        if alive {
            break;
        }
        assert!(std::time::Instant::now() < end, "the slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Control characters in what a caller sends never reach the text log as
/// they are: a Call-ID with ESC and backspace (a terminal escape, a
/// rewritten line) is logged escaped, and the call is still routed.
#[test]
fn control_characters_from_the_wire_are_escaped_in_the_log() {
    let (_trunks, trunk, router) = router_with_trunk();
    let c = udp("127.0.0.1");
    let local = c.local_addr().unwrap();
    let call_id = "esc\x1b[2J\x08\x07-1";
    let req = invite(call_id, "z9hG4bKesc1", local, "");
    c.send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let (fwd, _) = recv(&trunk);
    assert!(
        fwd.contains(&format!("Call-ID: {call_id}\r\n")),
        "forwarded as it came"
    );
    router.wait_log("esc\\x1b[2J\\x08\\x07-1", 1, Duration::from_secs(5));
    let log = router.log();
    assert!(!log.contains('\x1b') && !log.contains('\x08') && !log.contains('\x07'));
}
