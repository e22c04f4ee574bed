//! Next hops by name (RFC 3263) against a real DNS server: dnsmasq,
//! started by the test on loopback on a chosen port, serves a NAPTR
//! record for the PSAP's name that points at SRV records for two targets
//! of different priority. The real router binary looks them up there
//! (`sip.nameservers`); each SRV target is a failover step before the next
//! trunk.
//!
//! `bash .ci/run` installs dnsmasq (Debian package dnsmasq-base) when it
//! is missing; the test fails saying so when it is.

mod common;
mod peers;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{held_by, on_a_chosen_port, tempdir::Dir, Answer, RawTrunk, Router, CHOSEN_PORTS};
use peers::{require, wait_until, Proc};

/// dnsmasq on 127.0.0.1:`port` with `records` (its `--...-record`
/// options) and nothing else: no upstream, no hosts file.
struct Dnsmasq {
    port: u16,
    proc: Proc,
    _dir: Dir,
}

impl Dnsmasq {
    fn start(records: &[String]) -> Dnsmasq {
        let dnsmasq = require("dnsmasq", "dnsmasq-base");
        on_a_chosen_port("dnsmasq", CHOSEN_PORTS, |port| {
            let dir = Dir::new("dnsmasq");
            let mut cmd = Command::new(&dnsmasq);
            cmd.args(["--keep-in-foreground", "--conf-file=/dev/null"])
                .arg(format!("--port={port}"))
                .args([
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    "--log-queries",
                    "--log-facility=-",
                    "--user=root",
                ])
                .arg(format!(
                    "--pid-file={}",
                    dir.path().join("dnsmasq.pid").display()
                ))
                .args(records);
            let mut proc = Proc::spawn("dnsmasq", &mut cmd, dir.path().join("dnsmasq.log"));
            let pid = proc.pid();
            let up = wait_until(Duration::from_secs(10), || {
                proc.ended().is_some() || (held_by("u", port, pid) && held_by("t", port, pid))
            });
            if proc.ended().is_some() {
                let log = proc.log();
                if log.contains("in use") {
                    return Err(log);
                }
                panic!("dnsmasq stopped:\n{log}");
            }
            assert!(up, "dnsmasq did not start:\n{}", proc.log());
            Ok(Dnsmasq {
                port,
                proc,
                _dir: dir,
            })
        })
    }
}

/// The zone: `psap.test` has a NAPTR record for SIP over UDP naming
/// `_sip._udp.srv.psap.test` (not the name RFC 3263 would try without
/// it), whose SRV records give `first.psap.test` (priority 10) and
/// `second.psap.test` (priority 20), both 127.0.0.1, on their ports.
fn zone(first: u16, second: u16) -> Vec<String> {
    vec![
        "--naptr-record=psap.test,10,10,S,SIP+D2U,,_sip._udp.srv.psap.test".into(),
        format!("--srv-host=_sip._udp.srv.psap.test,first.psap.test,{first},10,10"),
        format!("--srv-host=_sip._udp.srv.psap.test,second.psap.test,{second},20,10"),
        "--host-record=first.psap.test,127.0.0.1".into(),
        "--host-record=second.psap.test,127.0.0.1".into(),
    ]
}

/// A router whose 911 calls go to `sip:psap.test` (no port: NAPTR and
/// SRV say), then to the screening trunk at `screening`.
fn router(dns: u16, screening: u16) -> Router {
    Router::start(
        &format!(
            r#"
[sip]
listen = ["udp:127.0.0.1:0"]
allow = ["127.0.0.1/32"]
nameservers = ["127.0.0.1:{dns}"]
name_timeout_ms = 1000

[sip.timers]
t1_ms = 500
no_answer_ms = 1000

[routing]
mode = "static"

[health]
interval_s = 0

[[trunk]]
name = "carrier"
kind = "inbound"
sources = ["127.0.0.1/32"]
country = "US"

[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:psap.test"
tcp_fallback = false

[[trunk]]
name = "screening"
kind = "screening"
uri = "sip:127.0.0.1:{screening}"
tcp_fallback = false

[[route]]
numbers = ["911"]
targets = ["psap", "screening"]
"#
        ),
        &[],
    )
}

/// Sends a 911 INVITE to the router; the final response's first line.
fn call(router: &Router, call_id: &str) -> Option<String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = s.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:911@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f1\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+12125550142@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(invite.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let first = text.lines().next().unwrap_or("").to_string();
            if !first.starts_with("SIP/2.0 1") {
                return Some(first);
            }
        }
    }
    None
}

/// The first SRV target as `first` answers; the call must complete on
/// the second SRV target, before the screening trunk is tried.
fn completes_on_the_second_target(first: Answer) {
    let one = RawTrunk::start(first);
    let two = RawTrunk::start(Answer::Ok);
    let screening = RawTrunk::start(Answer::Ok);
    let dns = Dnsmasq::start(&zone(one.port, two.port));
    let router = router(dns.port, screening.port);
    let answer = call(&router, &format!("dns-{first:?}"));
    assert_eq!(
        answer.as_deref(),
        Some("SIP/2.0 200 OK"),
        "router:\n{}\ndnsmasq:\n{}",
        router.log(),
        dns.proc.log()
    );
    assert!(
        one.next("INVITE", Duration::from_secs(1)).is_some(),
        "the first SRV target got the call first"
    );
    assert!(
        two.next("INVITE", Duration::from_secs(1)).is_some(),
        "the second SRV target got it next"
    );
    assert!(
        screening
            .next("INVITE", Duration::from_millis(500))
            .is_none(),
        "the screening trunk comes only after both SRV targets"
    );
    let log = dns.proc.log();
    for (what, query) in [
        ("NAPTR", "query[NAPTR] psap.test"),
        ("SRV", "query[SRV] _sip._udp.srv.psap.test"),
    ] {
        assert!(log.contains(query), "no {what} query:\n{log}");
    }
    assert!(
        router.log().contains("hop=1"),
        "the router says which target of the name it used:\n{}",
        router.log()
    );
}

#[test]
fn the_first_srv_target_silent_the_call_completes_on_the_second() {
    completes_on_the_second_target(Answer::Silent);
}

#[test]
fn the_first_srv_target_refusing_the_call_completes_on_the_second() {
    completes_on_the_second_target(Answer::Code(503));
}

/// The DNS server gone after the first answer: the last good answer stays
/// in use, and calls still reach the PSAP.
#[test]
fn the_last_good_answer_stays_when_dns_fails() {
    let one = RawTrunk::start(Answer::Ok);
    let two = RawTrunk::start(Answer::Ok);
    let screening = RawTrunk::start(Answer::Ok);
    let mut records = zone(one.port, two.port);
    // A short TTL, so that the router asks again soon.
    records.push("--local-ttl=1".into());
    let dns = Dnsmasq::start(&records);
    let router = router(dns.port, screening.port);
    assert_eq!(
        call(&router, "dns-before").as_deref(),
        Some("SIP/2.0 200 OK")
    );
    assert!(one.next("INVITE", Duration::from_secs(1)).is_some());
    drop(dns);
    std::thread::sleep(Duration::from_millis(1500));
    // This call sets off a lookup that fails; it goes to the address
    // known, and so do the ones after the failure.
    assert_eq!(
        call(&router, "dns-after").as_deref(),
        Some("SIP/2.0 200 OK")
    );
    assert!(one.next("INVITE", Duration::from_secs(1)).is_some());
    router.wait_log(
        "could not resolve a next hop: its last address stays in use",
        1,
        Duration::from_secs(15),
    );
    for n in 0..2 {
        assert_eq!(
            call(&router, &format!("dns-after-{n}")).as_deref(),
            Some("SIP/2.0 200 OK"),
            "{}",
            router.log()
        );
        assert!(one.next("INVITE", Duration::from_secs(1)).is_some());
    }
    assert!(screening
        .next("INVITE", Duration::from_millis(300))
        .is_none());
    assert!(
        router
            .log()
            .contains("could not resolve a next hop: its last address stays in use"),
        "{}",
        router.log()
    );
}

/// The trunk's URI gives no transport and the trunk no `transport`: the
/// NAPTR records choose it (RFC 3263 section 4.1). `psap.test` prefers TCP
/// (order 10) to UDP (order 20), each leading to its own SRV records: the
/// call goes over TCP to the TCP target, never to the UDP one.
#[test]
fn naptr_records_choose_the_transport_when_the_uri_gives_none() {
    let tcp = RawTrunk::start(Answer::Ok);
    let udp = RawTrunk::start(Answer::Ok);
    let screening = RawTrunk::start(Answer::Ok);
    let dns = Dnsmasq::start(&[
        "--naptr-record=psap.test,20,10,S,SIP+D2U,,_sip._udp.psap.test".into(),
        "--naptr-record=psap.test,10,10,S,SIP+D2T,,_sip._tcp.psap.test".into(),
        format!(
            "--srv-host=_sip._tcp.psap.test,tcp.psap.test,{},10,10",
            tcp.port
        ),
        format!(
            "--srv-host=_sip._udp.psap.test,udp.psap.test,{},10,10",
            udp.port
        ),
        "--host-record=tcp.psap.test,127.0.0.1".into(),
        "--host-record=udp.psap.test,127.0.0.1".into(),
    ]);
    let router = router(dns.port, screening.port);
    router.wait_log(
        "the trunk host's NAPTR records chose its transport",
        1,
        Duration::from_secs(5),
    );
    assert_eq!(
        call(&router, "dns-naptr-tcp").as_deref(),
        Some("SIP/2.0 200 OK"),
        "router:\n{}\ndnsmasq:\n{}",
        router.log(),
        dns.proc.log()
    );
    let invite = tcp
        .next("INVITE", Duration::from_secs(1))
        .expect("the TCP target got the call");
    assert!(
        invite.contains("Via: SIP/2.0/TCP "),
        "sent over TCP:\n{invite}"
    );
    assert!(udp.next("INVITE", Duration::from_millis(300)).is_none());
    assert!(screening
        .next("INVITE", Duration::from_millis(300))
        .is_none());
    let log = dns.proc.log();
    assert!(
        log.contains("query[SRV] _sip._tcp.psap.test"),
        "the TCP SRV records were asked for:\n{log}"
    );
}

/// A request within a dialog whose next Route value names a host alone
/// (no port, no transport): the host's NAPTR records choose TCP, and the
/// BYE goes there over TCP; the answer comes back to the sender.
#[test]
fn a_route_host_alone_is_reached_over_the_transport_its_naptr_records_choose() {
    let tcp = RawTrunk::start(Answer::Ok);
    let udp = RawTrunk::start(Answer::Ok);
    let screening = RawTrunk::start(Answer::Ok);
    let dns = Dnsmasq::start(&[
        "--naptr-record=edge.test,20,10,S,SIP+D2U,,_sip._udp.edge.test".into(),
        "--naptr-record=edge.test,10,10,S,SIP+D2T,,_sip._tcp.edge.test".into(),
        format!(
            "--srv-host=_sip._tcp.edge.test,tcp.edge.test,{},10,10",
            tcp.port
        ),
        format!(
            "--srv-host=_sip._udp.edge.test,udp.edge.test,{},10,10",
            udp.port
        ),
        "--host-record=tcp.edge.test,127.0.0.1".into(),
        "--host-record=udp.edge.test,127.0.0.1".into(),
    ]);
    let router = router(dns.port, screening.port);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = s.local_addr().unwrap();
    let port = router.port;
    for (i, call_id) in ["rh-1", "rh-2"].iter().enumerate() {
        let bye = format!(
            "BYE sip:+12125550142@edge.test SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}\r\nRoute: <sip:127.0.0.1:{port};lr>, <sip:edge.test;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:911@127.0.0.1>;tag=p1\r\nTo: <sip:+12125550142@example.com>;tag=f1\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        s.send_to(bye.as_bytes(), ("127.0.0.1", port)).unwrap();
        let got = tcp.next("BYE", Duration::from_secs(5)).unwrap_or_else(|| {
            panic!(
                "BYE {i} reached the TCP target:\nrouter:\n{}\ndnsmasq:\n{}",
                router.log(),
                dns.proc.log()
            )
        });
        assert!(got.contains("Via: SIP/2.0/TCP "), "sent over TCP:\n{got}");
        // The router's own Route value is gone; the edge's stays for it.
        assert!(
            got.contains("\r\nRoute: <sip:edge.test;lr>\r\n"),
            "only the edge's Route left:\n{got}"
        );
        let end = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65536];
        let mut answer = None;
        while answer.is_none() && Instant::now() < end {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        let answer = answer.expect("the 200 came back");
        assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
        assert!(answer.contains(&format!("Call-ID: {call_id}")), "{answer}");
    }
    assert!(udp.next("BYE", Duration::from_millis(300)).is_none());
    router.wait_log(
        "a Route host's NAPTR records chose its transport",
        1,
        Duration::from_secs(5),
    );
    // The transport was asked for once, for the first BYE (the address
    // lookup that follows reads the NAPTR records again, as the first step
    // of RFC 3263); the second BYE asked nothing.
    let log = dns.proc.log();
    let naptr = log.matches("query[NAPTR] edge.test").count();
    assert!((1..=2).contains(&naptr), "{naptr} NAPTR queries:\n{log}");
}
