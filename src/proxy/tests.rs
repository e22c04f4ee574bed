//! The proxy core in memory: messages in, transmits out, a simulated clock.
//! No socket, no sleep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::branch::{branch_prefix, push_hex, Branch};
use super::*;
use crate::config::Config;
use crate::sip::HeaderName;

const CALLER: &str = "127.0.0.1:5061";
const PSAP: &str = "127.0.0.1:5070";

fn config() -> Config {
    Config::from_toml(
        r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
allow = ["127.0.0.1/32"]
[sip.timers]
no_answer_ms = 3000
[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:5070"
[[trunk]]
name = "screening"
kind = "screening"
uri = "sip:127.0.0.1:5080"
[[trunk]]
name = "last-resort"
kind = "last-resort"
uri = "sip:127.0.0.1:5095"
[[route]]
numbers = ["911"]
targets = ["psap", "screening", "last-resort"]
"#,
    )
    .unwrap()
}

struct Harness {
    core: Core,
    now: Instant,
    sent: Vec<Transmit>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Harness {
    fn new() -> Harness {
        Harness::with(config())
    }

    fn with(c: Config) -> Harness {
        let cfg = CoreConfig::from_config(&c, vec![addr("127.0.0.1:5060")], 7);
        let router = Box::new(StaticRouter::new(&c));
        Harness {
            core: Core::new(cfg, router),
            now: Instant::now(),
            sent: Vec::new(),
        }
    }

    /// Delivers bytes as the transport hands them over (`sip::receive`): an
    /// INVITE with a fault in a header the proxy only passes on arrives
    /// with the fault recorded.
    fn deliver(&mut self, from: &str, text: &str) {
        self.deliver_over(Proto::Udp, from, text);
    }

    /// [`Harness::deliver`] over a given transport (TCP: connection 1).
    fn deliver_over(&mut self, proto: Proto, from: &str, text: &str) {
        self.deliver_bytes(proto, from, Bytes::from(text.to_string()));
    }

    /// [`Harness::deliver_over`] of a buffer the test may keep a handle on.
    fn deliver_bytes(&mut self, proto: Proto, from: &str, bytes: Bytes) {
        let msg = crate::sip::receive(bytes, proto.is_reliable(), &Default::default()).unwrap();
        let source = Source {
            proto,
            peer: addr(from),
            local: addr("127.0.0.1:5060"),
            conn: proto.is_reliable().then_some(ConnId(1)),
        };
        self.core.handle_message(self.now, msg, source);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            self.sent.push(t);
        }
    }

    /// Moves the clock forward, firing every timer on the way in order.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(d) = self.core.next_deadline() {
            if d > end {
                break;
            }
            self.now = self.now.max(d);
            self.core.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    /// Takes what was sent to `to` so far.
    fn take(&mut self, to: &str) -> Vec<String> {
        self.take_sent(to)
            .into_iter()
            .map(|t| String::from_utf8_lossy(&t.bytes).into_owned())
            .collect()
    }

    /// [`Harness::take`] with the transport and connection of each.
    fn take_sent(&mut self, to: &str) -> Vec<Transmit> {
        let want = Target::Addr(addr(to));
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.sent.drain(..).partition(|t| t.dest.target == want);
        self.sent = rest;
        mine
    }
}

fn invite(call_id: &str) -> String {
    format!(
        "INVITE sip:911@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f1\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+12125550142@{CALLER}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The CANCEL of [`invite`]`(call_id)`.
fn cancel(call_id: &str) -> String {
    invite(call_id)
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
}

/// A response to a forwarded request, echoing its Via headers.
fn answer(forwarded: &str, code: u16, reason: &str, to_tag: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for l in forwarded.lines() {
        if l.starts_with("Via:")
            || l.starts_with("From:")
            || l.starts_with("Call-ID:")
            || l.starts_with("CSeq:")
            || l.starts_with("Record-Route:")
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
        if l.starts_with("To:") {
            out.push_str(&format!("{l};tag={to_tag}\r\n"));
        }
    }
    out.push_str("Contact: <sip:trunk@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n");
    out
}

/// `msg` with every Via line but the first taken out: what a trunk that
/// does not copy the Vias it received sends back.
fn only_the_top_via(msg: &str) -> String {
    let mut seen_via = false;
    msg.split_inclusive("\r\n")
        .filter(|l| {
            let drop = l.starts_with("Via:") && seen_via;
            seen_via |= l.starts_with("Via:");
            !drop
        })
        .collect()
}

fn status(s: &str) -> &str {
    s.split(' ').nth(1).unwrap_or("")
}

#[test]
fn invite_gets_100_at_once_and_reaches_the_first_target() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c1"));
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0]), "100");
    let down = h.take("127.0.0.1:5070");
    assert_eq!(down.len(), 1);
    assert!(down[0].starts_with("INVITE sip:911@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsos"), "{}", down[0]);
    assert!(down[0].contains("Max-Forwards: 69\r\n"));
    assert!(down[0].contains("Record-Route: <sip:127.0.0.1:5060;lr>\r\n"));
}

#[test]
fn a_retransmitted_invite_is_absorbed() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c2"));
    h.take(CALLER);
    h.take("127.0.0.1:5070");
    h.deliver(CALLER, &invite("c2"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 0, "forwarded twice");
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0]), "100", "the last response is repeated");
}

#[test]
fn no_provisional_within_the_timer_moves_to_the_next_target() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c3"));
    h.take("127.0.0.1:5070");
    h.advance(Duration::from_millis(2999));
    assert!(h.take("127.0.0.1:5080").is_empty(), "failed over too early");
    // Timer A retransmitted the INVITE to the silent PSAP meanwhile.
    assert!(h.take("127.0.0.1:5070").len() >= 2);
    h.advance(Duration::from_millis(2));
    let screening = h.take("127.0.0.1:5080");
    assert_eq!(screening.len(), 1);
    assert!(screening[0].starts_with("INVITE "));
    assert_eq!(h.core.stats().failovers, 1);
    // Nothing more goes to the abandoned PSAP once it is given up... except
    // its own retransmissions until its transaction ends; none after Timer B.
    h.advance(Duration::from_secs(40));
    h.take("127.0.0.1:5070");
    h.advance(Duration::from_secs(40));
    assert!(h.take("127.0.0.1:5070").is_empty());
}

/// [`config`] with the 911 route marked as not carrying emergency calls.
fn non_emergency_config() -> Config {
    let mut c = config();
    for r in &mut c.routes {
        r.emergency = false;
    }
    c
}

#[test]
fn a_503_fails_over_and_a_486_goes_upstream_on_a_route_that_is_not_an_emergency() {
    let mut h = Harness::with(non_emergency_config());
    h.deliver(CALLER, &invite("c4"));
    h.take(CALLER);
    let fwd = h.take("127.0.0.1:5070").remove(0);
    h.deliver(
        "127.0.0.1:5070",
        &answer(&fwd, 503, "Service Unavailable", "p1"),
    );
    let ack = h.take("127.0.0.1:5070");
    assert_eq!(ack.len(), 1);
    assert!(ack[0].starts_with("ACK "), "{}", ack[0]);
    let fwd2 = h.take("127.0.0.1:5080").remove(0);
    h.deliver("127.0.0.1:5080", &answer(&fwd2, 486, "Busy Here", "s1"));
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0]), "486");
    // Our Via is gone from what goes upstream.
    assert_eq!(up[0].matches("Via:").count(), 1);
    assert!(h.take("127.0.0.1:5095").is_empty(), "a 486 is final");
}

/// An emergency call moves on after any final non-2xx: a PSAP that checks
/// the Request-URI (404), one whose call takers are all busy (486), one
/// that declines (603). The caller hears only from the target that answers.
#[test]
fn an_emergency_call_moves_on_after_every_final_refusal() {
    for (code, reason) in [
        (404, "Not Found"),
        (486, "Busy Here"),
        (603, "Decline"),
        (403, "Forbidden"),
        (302, "Moved Temporarily"),
    ] {
        let mut h = Harness::new();
        h.deliver(CALLER, &invite("c4e"));
        h.take(CALLER);
        let fwd = h.take("127.0.0.1:5070").remove(0);
        h.deliver("127.0.0.1:5070", &answer(&fwd, code, reason, "p1"));
        let ack = h.take("127.0.0.1:5070");
        assert!(ack[0].starts_with("ACK "), "{code}: {ack:?}");
        assert!(h.take(CALLER).is_empty(), "{code} went upstream");
        let fwd2 = h.take("127.0.0.1:5080").remove(0);
        h.deliver("127.0.0.1:5080", &answer(&fwd2, 200, "OK", "s1"));
        let up = h.take(CALLER);
        assert_eq!(
            up.iter().map(|m| status(m)).collect::<Vec<_>>(),
            vec!["200"],
            "{code}"
        );
        assert_eq!(h.core.stats().failovers, 1, "{code}");
    }
}

/// When every target of an emergency call refuses, the caller gets the last
/// target's answer, not the first one's.
#[test]
fn an_emergency_call_refused_by_every_target_gets_the_last_answer() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c4l"));
    h.take(CALLER);
    for (port, code, reason) in [
        (5070, 603, "Decline"),
        (5080, 486, "Busy Here"),
        (5095, 404, "Not Found"),
    ] {
        let to = format!("127.0.0.1:{port}");
        let fwd = h.take(&to).remove(0);
        h.deliver(&to, &answer(&fwd, code, reason, "t"));
    }
    let up = h.take(CALLER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec!["404"]
    );
}

#[test]
fn every_target_silent_ends_in_408_after_the_no_answer_timers() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c5"));
    h.take(CALLER);
    h.advance(Duration::from_millis(9001));
    let up = h.take(CALLER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec!["408"]
    );
    assert_eq!(h.core.stats().failovers, 3);
}

#[test]
fn answered_call_relays_the_200_and_memory_returns_to_zero() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c6"));
    h.take(CALLER);
    let fwd = h.take("127.0.0.1:5070").remove(0);
    h.deliver("127.0.0.1:5070", &answer(&fwd, 180, "Ringing", "p1"));
    h.deliver("127.0.0.1:5070", &answer(&fwd, 200, "OK", "p1"));
    let up = h.take(CALLER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec!["180", "200"]
    );
    // A 200 retransmission is passed up too (the caller's ACK stops it).
    h.deliver("127.0.0.1:5070", &answer(&fwd, 200, "OK", "p1"));
    assert_eq!(h.take(CALLER).len(), 1);
    // The no-answer timer must not fire for an answered call.
    h.advance(Duration::from_secs(5));
    assert!(h.take("127.0.0.1:5080").is_empty());
    h.advance(Duration::from_secs(120));
    assert_eq!(h.core.open(), (0, 0), "transactions or calls left behind");
}

/// A call's transactions live on for 64*T1 after the answer (RFC 6026),
/// tens of thousands of them under load: they must not keep the messages
/// they will never send again. Each buffer below is held by the test alone
/// once the call is answered and hung up, while the transactions still run.
#[test]
fn an_answered_call_keeps_no_message_it_will_not_send_again() {
    let mut h = Harness::new();
    let received = Bytes::from(invite("c-mem"));
    h.deliver_bytes(Proto::Udp, CALLER, received.clone());
    h.take(CALLER);
    let forwarded = h.take_sent("127.0.0.1:5070").remove(0).bytes;
    let fwd = String::from_utf8_lossy(&forwarded).into_owned();
    h.deliver("127.0.0.1:5070", &answer(&fwd, 200, "OK", "p1"));
    let relayed: Vec<Bytes> = h.take_sent(CALLER).into_iter().map(|t| t.bytes).collect();
    assert_eq!(relayed.len(), 1);
    assert!(relayed[0].starts_with(b"SIP/2.0 200 "));

    // The PSAP hangs up; its BYE is answered by the caller.
    let bye = Bytes::from(format!(
        "BYE sip:+12125550142@{CALLER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKpbye-mem\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:911@127.0.0.1>;tag=p1\r\nTo: <sip:+12125550142@example.com>;tag=f1\r\nCall-ID: c-mem\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    ));
    h.deliver_bytes(Proto::Udp, "127.0.0.1:5070", bye.clone());
    let down = h.take(CALLER).remove(0);
    assert!(down.starts_with("BYE "), "{down}");
    h.deliver(CALLER, &answer(&down, 200, "OK", "f1"));
    let ok = h.take("127.0.0.1:5070");
    assert!(ok.iter().any(|m| status(m) == "200"), "{ok:?}");

    h.advance(Duration::from_secs(1));
    assert_ne!(
        h.core.open(),
        (0, 0),
        "the transactions are meant to live on"
    );
    assert!(received.is_unique(), "the caller's INVITE is still held");
    assert!(
        forwarded.is_unique(),
        "the INVITE as forwarded is still held"
    );
    assert!(
        relayed[0].is_unique(),
        "the 200 relayed upstream is still held"
    );
    assert!(bye.is_unique(), "the PSAP's BYE is still held");
    h.advance(Duration::from_secs(120));
    assert_eq!(h.core.open(), (0, 0));
}

#[test]
fn cancel_before_any_provisional_answers_487_at_once() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c7"));
    h.take(CALLER);
    h.take("127.0.0.1:5070");
    let cancel = cancel("c7");
    h.deliver(CALLER, &cancel);
    let up = h.take(CALLER);
    let mut got: Vec<(&str, bool)> = up
        .iter()
        .map(|m| (status(m), m.contains("CSeq: 1 CANCEL")))
        .collect();
    got.sort();
    assert_eq!(got, vec![("200", true), ("487", false)]);
    // No CANCEL goes to a target that has not answered yet.
    assert!(h
        .take("127.0.0.1:5070")
        .iter()
        .all(|m| !m.starts_with("CANCEL")));
    // When it rings after all, it is cancelled.
    h.advance(Duration::from_millis(100));
    h.take("127.0.0.1:5070");
    assert_eq!(h.core.stats().calls_cancelled, 1);
}

#[test]
fn cancel_for_an_unknown_transaction_gets_481() {
    let mut h = Harness::new();
    let cancel = cancel("c8");
    h.deliver(CALLER, &cancel);
    let up = h.take(CALLER);
    assert_eq!(status(&up[0]), "481");
}

#[test]
fn proxy_require_is_refused_for_ordinary_calls_but_not_for_emergency_ones() {
    let mut h = Harness::new();
    let req = invite("c9").replace(
        "Content-Length: 0",
        "Proxy-Require: foo\r\nContent-Length: 0",
    );
    h.deliver(CALLER, &req);
    // The static table treats 911 as an emergency: routed anyway.
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    let req = invite("c10")
        .replace("sip:911@127.0.0.1:5060 SIP", "sip:alice@127.0.0.1:5060 SIP")
        .replace(
            "Content-Length: 0",
            "Proxy-Require: foo\r\nContent-Length: 0",
        );
    h.deliver(CALLER, &req);
    // Not routable: refused before the option tag matters.
    let up = h.take(CALLER);
    assert_eq!(status(up.last().unwrap()), "403");
}

#[test]
fn via_gets_received_and_rport_for_callers_behind_nat() {
    let mut h = Harness::new();
    // The caller's Via names a private address and asks for rport; the
    // packet really came from 127.0.0.1:5061.
    let req = invite("c11").replace(
        &format!("Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKc11"),
        "Via: SIP/2.0/UDP 10.1.2.3:5062;rport;branch=z9hG4bKc11",
    );
    h.deliver(CALLER, &req);
    let fwd = h.take("127.0.0.1:5070").remove(0);
    assert!(
        fwd.contains("\r\nVia: SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bKc11;received=127.0.0.1;rport=5061\r\n"),
        "{fwd}"
    );
    // Responses go where the request came from, not to the Via address.
    let up = h.take(CALLER);
    assert_eq!(status(&up[0]), "100");
}

/// An RFC 2543 caller's Via has no parameters at all (no branch), and the
/// packet came from another address than the one it names: the router
/// adds `received` and forwards the call. This once panicked the core
/// (found by fuzzing).
#[test]
fn a_via_without_parameters_from_another_address_gets_received() {
    for via in [
        "Via: SIP/2.0/UDP 198.51.100.3",
        "Via: SIP/2.0/UDP 198.51.100.3:5060",
        "Via: SIP/2.0/UDP 198.51.100.3 ",
        "Via: SIP/2.0/UDP [2001:db8::3]:5060",
    ] {
        let mut h = Harness::new();
        let req = invite("c2543").replace(
            &format!("Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKc2543"),
            via,
        );
        h.deliver(CALLER, &req);
        let fwd = h.take("127.0.0.1:5070");
        assert_eq!(fwd.len(), 1, "{via}: {fwd:?}");
        // The caller's own Via, below the router's (trailing blanks of the
        // line stay where they were).
        let expected = format!("{};received=127.0.0.1", via.trim_end());
        assert_eq!(
            fwd[0].lines().nth(2).map(str::trim_end),
            Some(expected.as_str()),
            "{via}: {}",
            fwd[0]
        );
        let up = h.take(CALLER);
        assert_eq!(status(&up[0]), "100", "{via}");
    }
}

/// A trunk that answers with the router's Via alone (the caller's dropped):
/// upstream the answer would have no Via, so it is dropped; the same
/// answer with both Vias goes through.
#[test]
fn a_response_without_the_callers_via_is_dropped() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c-via"));
    let fwd = h.take("127.0.0.1:5070").remove(0);
    assert_eq!(h.take(CALLER).len(), 1, "100 Trying");
    let whole = answer(&fwd, 180, "Ringing", "t1");
    let stripped = only_the_top_via(&whole);
    assert_eq!(stripped.matches("Via:").count(), 1, "{stripped}");
    h.deliver("127.0.0.1:5070", &stripped);
    assert!(
        h.take(CALLER).is_empty(),
        "nothing without a Via goes upstream"
    );
    h.deliver("127.0.0.1:5070", &whole);
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0]), "180");
    assert!(
        up[0].contains(&format!(
            "Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKc-via\r\n"
        )),
        "{}",
        up[0]
    );
}

#[test]
fn probes_mark_a_silent_trunk_down_and_routing_tries_it_last() {
    let mut c = config();
    c.health.interval_s = 5;
    c.health.timeout_ms = 1000;
    c.health.down_after = 2;
    let cfg = CoreConfig::from_config(&c, vec![addr("127.0.0.1:5060")], 7);
    let mut h = Harness {
        core: Core::new(cfg, Box::new(StaticRouter::new(&c))),
        now: Instant::now(),
        sent: Vec::new(),
    };
    h.core.start(h.now);
    let states = |h: &Harness| {
        h.core
            .trunk_health(h.now)
            .iter()
            .map(|t| (t.trunk.clone(), t.state))
            .collect::<Vec<_>>()
    };
    assert!(states(&h).iter().all(|(_, s)| *s == TrunkState::Probing));
    // Screening and last resort answer their probes; the PSAP never does.
    for _ in 0..3 {
        h.advance(Duration::from_millis(2500));
        for port in ["127.0.0.1:5080", "127.0.0.1:5095"] {
            for probe in h.take(port) {
                assert!(probe.starts_with("OPTIONS sip:127.0.0.1:"), "{probe}");
                h.deliver(port, &answer(&probe, 200, "OK", "t"));
            }
        }
        h.take("127.0.0.1:5070");
    }
    h.advance(Duration::from_secs(6));
    for port in ["127.0.0.1:5080", "127.0.0.1:5095"] {
        for probe in h.take(port) {
            h.deliver(port, &answer(&probe, 200, "OK", "t"));
        }
    }
    let s = states(&h);
    assert!(s.contains(&("psap".to_string(), TrunkState::Down)), "{s:?}");
    assert!(
        s.contains(&("screening".to_string(), TrunkState::Up)),
        "{s:?}"
    );
    let psap = h
        .core
        .trunk_health(h.now)
        .into_iter()
        .find(|t| t.trunk == "psap")
        .unwrap();
    assert!(psap.reason.contains("no answer"), "{}", psap.reason);
    // A call now goes to screening first; the PSAP is kept as the last try.
    h.take("127.0.0.1:5070");
    h.deliver(CALLER, &invite("c12"));
    assert_eq!(
        h.take("127.0.0.1:5080")
            .iter()
            .filter(|m| m.starts_with("INVITE"))
            .count(),
        1
    );
    assert!(h
        .take("127.0.0.1:5070")
        .iter()
        .all(|m| !m.starts_with("INVITE")));
}

/// A caller over TCP and a trunk over UDP: the router records the route
/// twice (RFC 5658), the trunk's side on top, and an in-dialog request
/// crosses to the other leg's transport.
#[test]
fn a_dialog_across_transports_is_record_routed_twice() {
    let mut h = Harness::new();
    let inv = invite("c-x").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    h.deliver_over(Proto::Tcp, CALLER, &inv);
    let sent = h.take_sent("127.0.0.1:5070");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dest.proto, Proto::Udp);
    let fwd = String::from_utf8_lossy(&sent[0].bytes).into_owned();
    let rr: Vec<&str> = fwd
        .lines()
        .filter(|l| l.starts_with("Record-Route:"))
        .collect();
    assert_eq!(
        rr,
        vec![
            "Record-Route: <sip:127.0.0.1:5060;lr>",
            "Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr>",
        ]
    );
    h.deliver("127.0.0.1:5070", &answer(&fwd, 200, "OK", "p1"));
    let up = h.take_sent(CALLER);
    assert!(up.iter().all(|t| t.dest.proto == Proto::Tcp));
    assert!(up.iter().any(|t| t.bytes.starts_with(b"SIP/2.0 200 ")));

    // The PSAP hangs up: its route set is the Record-Route list in order.
    // Ours both go, and the BYE reaches the caller over TCP, the caller's
    // transport, though the caller's Contact names none.
    let bye = format!(
        "BYE sip:+12125550142@{CALLER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKpbye\r\nRoute: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5060;transport=tcp;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:911@127.0.0.1>;tag=p1\r\nTo: <sip:+12125550142@example.com>;tag=f1\r\nCall-ID: c-x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    h.deliver("127.0.0.1:5070", &bye);
    let down: Vec<Transmit> = h
        .take_sent(CALLER)
        .into_iter()
        .filter(|t| t.bytes.starts_with(b"BYE "))
        .collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].dest.proto, Proto::Tcp);
    let text = String::from_utf8_lossy(&down[0].bytes);
    assert!(!text.contains("Route:"), "{text}");
    assert!(
        text.contains("Via: SIP/2.0/TCP 127.0.0.1:5060;branch="),
        "{text}"
    );

    // The caller's ACK takes the route set the other way round: over UDP
    // to the PSAP's Contact, with no Route left.
    let ack = format!(
        "ACK sip:trunk@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/TCP {CALLER};branch=z9hG4bKack-x\r\nRoute: <sip:127.0.0.1:5060;transport=tcp;lr>, <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f1\r\nTo: <sip:911@127.0.0.1>;tag=p1\r\nCall-ID: c-x\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    h.deliver_over(Proto::Tcp, CALLER, &ack);
    let acks = h.take_sent("127.0.0.1:5070");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].dest.proto, Proto::Udp);
    assert!(!String::from_utf8_lossy(&acks[0].bytes).contains("Route:"));
}

/// Both legs over one transport: one Record-Route, naming none.
#[test]
fn a_dialog_on_one_transport_is_record_routed_once() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c-y"));
    let fwd = h.take("127.0.0.1:5070").remove(0);
    assert_eq!(fwd.matches("Record-Route:").count(), 1, "{fwd}");
    assert!(fwd.contains("Record-Route: <sip:127.0.0.1:5060;lr>\r\n"));
}

#[test]
fn call_events_tell_the_whole_story_of_a_failed_over_call() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c13"));
    let fwd = h.take("127.0.0.1:5070").remove(0);
    h.deliver(
        "127.0.0.1:5070",
        &answer(&fwd, 503, "Service Unavailable", "p1"),
    );
    let fwd2 = h.take("127.0.0.1:5080").remove(0);
    h.deliver("127.0.0.1:5080", &answer(&fwd2, 200, "OK", "s1"));
    let bye = "BYE sip:911@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKbye13\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f1\r\nTo: <sip:911@127.0.0.1>;tag=s1\r\nCall-ID: c13\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    h.deliver(CALLER, bye);
    let mut seen = Vec::new();
    while let Some(ev) = h.core.poll_event() {
        seen.push(match ev {
            CallEvent::Started { call_id, route, .. } => format!("started {call_id} {route}"),
            CallEvent::Attempt {
                trunk,
                outcome,
                status,
                ..
            } => format!("attempt {trunk} {outcome} {status:?}"),
            CallEvent::Finished {
                status, outcome, ..
            } => format!("finished {status} {outcome}"),
            CallEvent::Ended { call_id, .. } => format!("ended {call_id}"),
        });
    }
    assert_eq!(
        seen,
        vec![
            "started c13 static",
            "attempt psap failed Some(503)",
            "attempt screening answered Some(200)",
            "finished 200 answered",
            "ended c13",
        ]
    );
    // The BYE itself went to the screening trunk that answered.
    assert!(h
        .take("127.0.0.1:5080")
        .iter()
        .any(|m| m.starts_with("BYE ")));
}

#[test]
fn a_target_that_rings_too_long_is_cancelled_and_the_next_one_tried() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("c14"));
    let fwd = h.take("127.0.0.1:5070").remove(0);
    h.deliver("127.0.0.1:5070", &answer(&fwd, 180, "Ringing", "p1"));
    // Ringing stops the no-answer timer...
    h.advance(Duration::from_secs(10));
    assert!(h.take("127.0.0.1:5080").is_empty());
    // ...but not forever (30 s by default).
    h.advance(Duration::from_secs(21));
    let to_psap = h.take("127.0.0.1:5070");
    assert!(
        to_psap.iter().any(|m| m.starts_with("CANCEL ")),
        "{to_psap:?}"
    );
    // The screening center got the call (and Timer A's retransmission).
    let screening = h.take("127.0.0.1:5080");
    assert!(
        screening
            .iter()
            .filter(|m| m.starts_with("INVITE "))
            .count()
            >= 1
    );
    assert_eq!(h.core.stats().failovers, 1);
}

/// A non-GMT Date (RFC 3261 section 20.17) and a Contact that is no URI:
/// faults in headers the proxy passes on without reading.
fn with_passed_on_faults(invite: &str) -> String {
    invite.replace(
        "Contact: <sip:+12125550142@127.0.0.1:5061>\r\n",
        "Contact: <not a uri>\r\nDate: Sat, 13 Nov 2010 23:29:00 PST\r\n",
    )
}

#[test]
fn an_emergency_call_with_a_malformed_passed_on_header_is_routed() {
    let mut h = Harness::new();
    let text = with_passed_on_faults(&invite("c-fault"));
    assert!(text.contains("PST"), "the fault is in the message");
    h.deliver(CALLER, &text);
    let up = h.take(CALLER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec!["100"]
    );
    let down = h.take("127.0.0.1:5070");
    assert_eq!(down.len(), 1);
    assert!(down[0].starts_with("INVITE sip:911@"), "{}", down[0]);
    // Passed on as received.
    assert!(down[0].contains("Date: Sat, 13 Nov 2010 23:29:00 PST\r\n"));
    assert!(down[0].contains("Contact: <not a uri>\r\n"));
    assert_eq!(h.core.stats().rejected, 0);
}

#[test]
fn the_same_fault_in_a_call_that_is_no_emergency_gets_400_naming_it() {
    let mut h = Harness::new();
    let text = with_passed_on_faults(&invite("c-fault2")).replace("sip:911@", "sip:5551234@");
    refused(&mut h, &text, "SIP/2.0 400 Bad Contact Header\r\n");
    assert_eq!(h.core.stats().rejected, 1);
    // The refusal is a transaction like any other: the caller's ACK ends it.
    h.advance(Duration::from_secs(40));
    assert_eq!(h.core.open(), (0, 0));
}

#[test]
fn a_fault_in_an_in_dialog_invite_gets_400_even_on_an_emergency_call() {
    let mut h = Harness::new();
    let text = with_passed_on_faults(&invite("c-fault3")).replace(
        "To: <sip:911@127.0.0.1>",
        "To: <sip:911@127.0.0.1>;tag=psap1",
    );
    h.deliver(CALLER, &text);
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(status(&up[0]), "400");
    assert!(h.take("127.0.0.1:5070").is_empty());
}

/// Caller-ID names with quotes in them (`"John "Jack" Smith"`, or a quote
/// that never ends) reach the PSAP as received; a call that is no emergency
/// gets a 400 naming From.
#[test]
fn an_emergency_call_with_stray_quotes_in_its_caller_name_is_routed() {
    for (n, display) in ["\"John \"Jack\" Smith\"", "\"Smith"]
        .into_iter()
        .enumerate()
    {
        let mut h = Harness::new();
        let from = format!("From: {display} <sip:+12125550142@example.com>");
        let text =
            invite(&format!("c-q{n}")).replace("From: <sip:+12125550142@example.com>", &from);
        routed_as_received(&mut h, &text, &format!("{from};tag=f1\r\n"));

        let not_emergency = text
            .replace("sip:911@", "sip:5551234@")
            .replace("branch=z9hG4bKc-q", "branch=z9hG4bKn-q");
        refused(&mut h, &not_emergency, "SIP/2.0 400 Bad From Header\r\n");
    }
}

/// Delivers `text` from the caller: its one answer starts with `status_line`
/// and nothing reaches the PSAP.
fn refused(h: &mut Harness, text: &str, status_line: &str) {
    h.deliver(CALLER, text);
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(up[0].starts_with(status_line), "{}", up[0]);
    assert!(h.take("127.0.0.1:5070").is_empty());
}

#[test]
fn an_emergency_call_with_an_unquoted_comma_in_its_from_display_name_is_routed() {
    let mut h = Harness::new();
    let text = invite("c-dn").replace(
        "From: <sip:+12125550142@example.com>",
        "From: Smith, John <sip:+12125550142@example.com>",
    );
    routed_as_received(
        &mut h,
        &text,
        "From: Smith, John <sip:+12125550142@example.com>;tag=f1\r\n",
    );
}

/// Delivers `text` from the caller: it reaches the PSAP once, with `line`
/// as received, and the caller hears only 100 Trying.
fn routed_as_received(h: &mut Harness, text: &str, line: &str) {
    h.deliver(CALLER, text);
    let down = h.take("127.0.0.1:5070");
    assert_eq!(down.len(), 1, "not forwarded");
    assert!(down[0].contains(line), "{}", down[0]);
    let up = h.take(CALLER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec!["100"]
    );
}

#[test]
fn hex_digits_as_format_gives_them() {
    for v in [0, 1, 0xabc, 0x0123_4567_89ab_cdef, u64::MAX] {
        for width in [1, 8, 16] {
            let mut out = Branch::new();
            push_hex(&mut out, v, width);
            assert_eq!(
                out.as_slice(),
                format!("{v:0width$x}").as_bytes(),
                "{v} {width}"
            );
        }
    }
}

/// The keys of the router's own branches, and of a cookie branch as
/// phones write them, are built without an allocation.
#[test]
fn transaction_keys_of_ordinary_branches_stay_inline() {
    let branch = {
        let mut b = branch_prefix(u64::MAX);
        b.push(b'.');
        push_hex(&mut b, u64::from(u32::MAX), 1);
        push_hex(&mut b, u64::MAX, 1);
        b
    };
    assert!(TransactionKey::client(&branch, b"INVITE").is_inline());
    assert!(TransactionKey::client(&branch, b"OPTIONS").is_inline());
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Room for two transactions, the last one kept for emergency calls:
/// one pending call (its server and client transactions) fills it.
fn overloaded() -> Harness {
    let mut c = config();
    c.sip.overload.max_transactions = 4;
    c.sip.overload.emergency_reserve_percent = 50;
    c.sip.overload.retry_after_s = 7;
    Harness::with(c)
}

/// [`overloaded`] with two calls ringing on: full.
fn full() -> Harness {
    let mut h = overloaded();
    h.deliver(CALLER, &invite("full1"));
    h.deliver(CALLER, &invite("full2"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 2);
    h.take(CALLER);
    assert_eq!(h.core.load(), Load::Full);
    h
}

fn options(branch: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:ping@example.com>;tag=o1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn past_the_shedding_point_only_emergency_calls_are_admitted() {
    let mut h = overloaded();
    h.deliver(CALLER, &invite("ol1"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    h.take(CALLER);
    assert_eq!(h.core.open(), (2, 1));
    assert_eq!(h.core.load(), Load::Shedding);

    // Anything else new is refused, and holds nothing.
    h.deliver(CALLER, &options("olopt"));
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert!(up[0].starts_with("SIP/2.0 503 Overloaded\r\n"), "{}", up[0]);
    assert_eq!(header(&up[0], "Retry-After"), Some("7"));
    assert_eq!(h.core.open(), (2, 1));

    // An emergency call still gets through.
    h.deliver(CALLER, &invite("ol2"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    let up = h.take(CALLER);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), ["100"]);
    assert_eq!(h.core.open(), (4, 2));
    assert_eq!(h.core.stats().rejected, 1);
}

#[test]
fn requests_within_a_dialog_pass_the_limit_but_stop_at_the_ceiling() {
    // max_transactions 4: the ceiling is 10 % above it, 5.
    let mut h = full();
    assert_eq!(h.core.open().0, 4);
    // A BYE within one of the calls (a To tag; no route to follow, so the
    // router answers it itself): past the limit, it still passes...
    let bye = |n: u32| {
        invite(&format!("ceb{n}"))
            .replace("INVITE sip:911", "BYE sip:911")
            .replace("CSeq: 1 INVITE", "CSeq: 2 BYE")
            .replace(&format!("Call-ID: ceb{n}"), "Call-ID: full1")
            .replace("To: <sip:911@127.0.0.1>", "To: <sip:911@127.0.0.1>;tag=d1")
    };
    // ...but one of a dialog the router knows nothing of does not: only
    // emergency calls and their dialogs may hold the reserve.
    h.deliver(CALLER, &bye(0).replace("Call-ID: full1", "Call-ID: stray"));
    let up = h.take(CALLER);
    assert!(up[0].starts_with("SIP/2.0 503 Overloaded\r\n"), "{}", up[0]);
    assert_eq!(h.core.open().0, 4);
    h.deliver(CALLER, &bye(1));
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert_ne!(status(&up[0]), "503", "{}", up[0]);
    assert_eq!(h.core.open().0, 5);
    // ...but not beyond the ceiling: it gets a 503 holding nothing, and so
    // does a CANCEL.
    h.deliver(CALLER, &bye(2));
    let cancel = cancel("ce9");
    h.deliver(CALLER, &cancel);
    let up = h.take(CALLER);
    assert_eq!(up.len(), 2);
    assert!(
        up.iter()
            .all(|m| m.starts_with("SIP/2.0 503 Overloaded\r\n")),
        "{up:?}"
    );
    assert_eq!(
        header(&up[0], "To"),
        Some("<sip:911@127.0.0.1>;tag=d1"),
        "the dialog's own To tag"
    );
    assert_eq!(h.core.open().0, 5);
    // Once transactions end, they pass again.
    h.advance(Duration::from_secs(40));
    h.sent.clear();
    assert!(h.core.open().0 < 4, "{:?}", h.core.open());
    h.deliver(CALLER, &bye(3));
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert_ne!(status(&up[0]), "503", "{}", up[0]);
}

#[test]
fn when_full_a_new_emergency_call_gets_a_stateless_503_and_its_ack_ends_here() {
    let mut h = full();

    let refused = invite("ol5");
    h.deliver(CALLER, &refused);
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1, "no 100 Trying for a refused call: {up:?}");
    assert!(up[0].starts_with("SIP/2.0 503 Overloaded\r\n"), "{}", up[0]);
    assert!(h.take("127.0.0.1:5070").is_empty());
    assert_eq!(h.core.open(), (4, 2), "the refusal must hold no state");
    let to = header(&up[0], "To").unwrap().to_string();
    assert!(to.contains(";tag=sosol"), "{to}");
    // It has its call record all the same.
    let mut seen = Vec::new();
    while let Some(ev) = h.core.poll_event() {
        match ev {
            CallEvent::Started {
                call_id,
                route,
                refused,
                ..
            } => seen.push(format!("started {call_id} {route} refused={refused}")),
            CallEvent::Finished {
                status, outcome, ..
            } => seen.push(format!("finished {status} {outcome}")),
            _ => {}
        }
    }
    assert_eq!(
        seen[seen.len() - 2..],
        [
            "started ol5 static refused=true".to_string(),
            "finished 503 refused".to_string()
        ]
    );

    // Its retransmission gets the same answer, the same To tag.
    h.deliver(CALLER, &refused);
    let again = h.take(CALLER);
    assert_eq!(again.len(), 1);
    assert_eq!(header(&again[0], "To"), Some(to.as_str()));

    // The ACK of the 503 goes nowhere.
    let ack = refused
        .replace("INVITE sip:911", "ACK sip:911")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:911@127.0.0.1>", &format!("To: {to}"));
    h.deliver(CALLER, &ack);
    assert!(h.sent.is_empty(), "{:?}", h.sent);
    assert_eq!(h.core.open(), (4, 2));

    // A source that is not allowed is told so, overload or not.
    h.deliver("127.0.0.2:5061", &invite("ol-stranger"));
    let up = h.take("127.0.0.2:5061");
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0]), "403", "{}", up[0]);

    // A request within one of the calls still passes: it may end a call.
    let bye = format!(
        "BYE sip:trunk@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKolbye\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f1\r\nTo: <sip:911@127.0.0.1>;tag=p9\r\nCall-ID: full2\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    h.deliver(CALLER, &bye);
    let down = h.take("127.0.0.1:5070");
    assert_eq!(down.len(), 1);
    assert!(down[0].starts_with("BYE "), "{}", down[0]);
}

#[test]
fn admission_resumes_when_the_transactions_have_ended() {
    let mut h = overloaded();
    h.deliver(CALLER, &invite("ol6"));
    h.deliver(CALLER, &invite("ol7"));
    assert_eq!(h.core.load(), Load::Full);
    // Every target silent: both calls end in 408, and their transactions
    // with them.
    h.advance(Duration::from_secs(120));
    assert_eq!(h.core.open(), (0, 0));
    assert_eq!(h.core.load(), Load::Normal);
    h.sent.clear();
    h.deliver(CALLER, &options("olopt2"));
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0]), "200", "{}", up[0]);
}

#[test]
fn no_limit_when_max_transactions_is_zero() {
    let mut c = config();
    c.sip.overload.max_transactions = 0;
    let mut h = Harness::with(c);
    for i in 0..50 {
        h.deliver(CALLER, &invite(&format!("nl{i}")));
    }
    assert_eq!(h.take("127.0.0.1:5070").len(), 50);
    assert_eq!(h.core.load(), Load::Normal);
}

/// Under shedding, a source holding more than the average of the sources
/// with calls open is refused, and the others keep the reserve: one
/// carrier's flood of emergency calls cannot take it from everyone.
#[test]
fn a_flooding_source_cannot_take_the_reserve_from_the_others() {
    const OTHER: &str = "127.0.0.3:5061";
    let mut c = config();
    c.sip.overload.max_transactions = 40;
    c.sip.overload.emergency_reserve_percent = 50;
    c.sip.allow.push("127.0.0.3/32".parse().unwrap());
    let mut h = Harness::with(c);
    // Alone, a source has all of the room: into the reserve.
    for i in 0..11 {
        h.deliver(CALLER, &invite(&format!("fl{i}")));
    }
    assert_eq!(h.take("127.0.0.1:5070").len(), 11);
    assert_eq!(h.core.load(), Load::Shedding);
    let from_other = |id: &str| invite(id).replace(CALLER, OTHER);
    h.deliver(OTHER, &from_other("ot0"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    assert_eq!(
        h.take(OTHER).iter().map(|m| status(m)).collect::<Vec<_>>(),
        ["100"]
    );
    h.take(CALLER);
    // Now the first source holds more than its share: refused, statelessly.
    h.deliver(CALLER, &invite("fl-over"));
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert!(up[0].starts_with("SIP/2.0 503 Overloaded\r\n"), "{}", up[0]);
    assert!(h.take("127.0.0.1:5070").is_empty());
    // The other source's calls still pass, up to the limit.
    for i in 1..9 {
        h.deliver(OTHER, &from_other(&format!("ot{i}")));
    }
    assert_eq!(h.take("127.0.0.1:5070").len(), 8);
    assert_eq!(h.core.open(), (40, 20));
    assert_eq!(h.core.load(), Load::Full);
    h.deliver(OTHER, &from_other("ot-full"));
    let up = h.take(OTHER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>().last(),
        Some(&"503")
    );
    // The held counts follow the transactions out.
    h.advance(Duration::from_secs(120));
    assert_eq!(h.core.open(), (0, 0));
    assert!(h.core.sources.is_empty());
}

/// A source not allowed is answered 403 and leaves nothing behind: its
/// flood cannot fill the table and push the router into refusing
/// emergency calls, and its CANCEL, forged to match a real call, cancels
/// nothing.
#[test]
fn strangers_are_answered_only_within_their_budget() {
    const STRANGER: &str = "192.0.2.9:5061";
    let mut c = config();
    c.sip.stranger_replies_per_s = 5;
    let mut h = Harness::with(c);
    // Over UDP a stranger's address may be someone else's: a flood of
    // forged requests must not become a flood of answers at the victim.
    for i in 0..100 {
        h.deliver(
            STRANGER,
            &invite(&format!("sb{i}")).replace(CALLER, STRANGER),
        );
    }
    assert_eq!(h.take(STRANGER).len(), 5);
    assert_eq!(h.core.stats().rejected, 100, "each is still refused");
    assert_eq!(h.core.open(), (0, 0));
    // Requests that do not parse share the same budget...
    let bad = Bytes::from_static(b"SIP/2.0 400 Bad\r\n\r\n");
    let from = |peer: &str| Source {
        proto: Proto::Udp,
        peer: addr(peer),
        local: addr("127.0.0.1:5060"),
        conn: None,
    };
    h.core.answer_unparsed(h.now, bad.clone(), &from(STRANGER));
    h.drain();
    assert!(h.take(STRANGER).is_empty());
    // ...which an allowed source does not draw on: its calls and its
    // faults are answered whatever strangers do.
    h.core.answer_unparsed(h.now, bad.clone(), &from(CALLER));
    h.drain();
    assert_eq!(h.take(CALLER).len(), 1);
    h.deliver(CALLER, &invite("sb-ok"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    // A second later the budget is back.
    h.advance(Duration::from_secs(1));
    h.deliver(STRANGER, &invite("sb-late").replace(CALLER, STRANGER));
    h.core.answer_unparsed(h.now, bad, &from(STRANGER));
    h.drain();
    let up = h.take(STRANGER);
    assert_eq!(up.len(), 2);
    assert_eq!(status(&up[0]), "403", "{}", up[0]);
}

#[test]
fn a_stranger_gets_403_and_leaves_nothing_behind() {
    const STRANGER: &str = "192.0.2.9:5061";
    let mut h = overloaded();
    h.deliver(CALLER, &invite("sc1"));
    let fwd = h.take("127.0.0.1:5070");
    assert_eq!(fwd.len(), 1);
    h.deliver("127.0.0.1:5070", &answer(&fwd[0], 180, "Ringing", "p1"));
    h.take(CALLER);
    let held = h.core.open();
    assert_eq!(held, (2, 1));

    // Within the default answer budget for strangers (50 a second).
    for i in 0..40 {
        h.deliver(
            STRANGER,
            &invite(&format!("st{i}")).replace(CALLER, STRANGER),
        );
    }
    let up = h.take(STRANGER);
    assert_eq!(up.len(), 40);
    assert!(
        up.iter()
            .all(|m| m.starts_with("SIP/2.0 403 Source Not Allowed\r\n")),
        "{}",
        up[0]
    );
    assert_eq!(h.core.open(), held, "a stranger's request holds no state");
    assert!(h.core.sources.held(addr(STRANGER).ip()) == 0);
    assert_eq!(h.core.stats().rejected, 40);

    // A retransmission gets the same answer, To tag and all.
    let again = invite("st0").replace(CALLER, STRANGER);
    h.deliver(STRANGER, &again);
    assert_eq!(h.take(STRANGER), [up[0].clone()]);

    // A CANCEL copying the real call's Via, from the stranger's address.
    let cancel = cancel("sc1");
    h.deliver(STRANGER, &cancel);
    let up = h.take(STRANGER);
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0]), "403", "{}", up[0]);
    assert!(
        h.take("127.0.0.1:5070").is_empty(),
        "no CANCEL reaches the trunk"
    );
    assert!(h.take(CALLER).is_empty());
    // The call is still there to answer.
    h.deliver("127.0.0.1:5070", &answer(&fwd[0], 200, "OK", "p1"));
    let up = h.take(CALLER);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), ["200"]);
    // The stranger's ACK goes nowhere.
    h.deliver(
        STRANGER,
        &cancel
            .replace("CANCEL sip:911", "ACK sip:911")
            .replace("CSeq: 1 CANCEL", "CSeq: 1 ACK"),
    );
    assert!(h.sent.is_empty(), "{:?}", h.sent);
}

/// While draining, a new call gets `503 Shutting Down` at once and holds
/// nothing; the call in progress goes on.
#[test]
fn a_new_call_while_draining_gets_a_stateless_503() {
    let mut h = Harness::new();
    h.deliver(CALLER, &invite("dr1"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    h.take(CALLER);
    h.core.set_draining(true);
    let held = h.core.open();
    h.deliver(CALLER, &invite("dr2"));
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1, "no 100 Trying first: {up:?}");
    assert!(
        up[0].starts_with("SIP/2.0 503 Shutting Down\r\n"),
        "{}",
        up[0]
    );
    assert_eq!(header(&up[0], "Retry-After"), Some("0"));
    assert!(header(&up[0], "To").unwrap().contains(";tag=sosol"));
    assert_eq!(h.core.open(), held, "the refusal holds no state");
    assert!(h.take("127.0.0.1:5070").is_empty());
    // Its ACK ends here.
    let to = header(&up[0], "To").unwrap().to_string();
    let ack = invite("dr2")
        .replace("INVITE sip:911", "ACK sip:911")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:911@127.0.0.1>", &format!("To: {to}"));
    h.deliver(CALLER, &ack);
    assert!(h.sent.is_empty(), "{:?}", h.sent);
}

/// A Route set preloaded on a new emergency call does not steer it: the
/// call goes where the emergency decision says, the preloaded entries are
/// removed, and the call record says so. A non-emergency route still
/// follows the Route set (RFC 3261 section 16.4).
#[test]
fn a_preloaded_route_never_steers_an_emergency_call() {
    let mut h = Harness::new();
    let inv = invite("pre1").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:6000;lr>\r\nRoute: <sip:10.0.0.9;lr>\r\n",
    );
    h.deliver(CALLER, &inv);
    assert!(
        h.take("127.0.0.1:6000").is_empty(),
        "went to the preloaded Route"
    );
    let fwd = h.take("127.0.0.1:5070");
    assert_eq!(fwd.len(), 1, "{:?}", h.sent);
    assert!(!fwd[0].contains("\nRoute:"), "{}", fwd[0]);
    let warnings = std::iter::from_fn(|| h.core.poll_event())
        .find_map(|ev| match ev {
            CallEvent::Started { warnings, .. } => Some(warnings),
            _ => None,
        })
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("127.0.0.1:6000"), "{warnings:?}");

    // The same INVITE on a route that carries no emergency calls follows
    // its Route set.
    let mut h = Harness::with(non_emergency_config());
    h.deliver(CALLER, &inv.replace("pre1", "pre2"));
    assert!(h.take("127.0.0.1:5070").is_empty());
    assert_eq!(h.take("127.0.0.1:6000").len(), 1);
}

/// A request to an emergency number that is not a call is answered by the
/// router and never reaches an emergency trunk; a text (MESSAGE) is routed
/// like a call.
#[test]
fn requests_to_an_emergency_number_that_are_not_calls_stay_at_the_router() {
    let mut h = Harness::new();
    for (method, want) in [
        ("OPTIONS", "200"),
        ("REGISTER", "405"),
        ("SUBSCRIBE", "405"),
        ("NOTIFY", "405"),
        ("PUBLISH", "405"),
        ("INFO", "481"),
        ("BYE", "481"),
    ] {
        let req = invite(&format!("nc-{method}"))
            .replace(
                "INVITE sip:911@127.0.0.1:5060",
                &format!("{method} sip:911@192.0.2.1"),
            )
            .replace("CSeq: 1 INVITE", &format!("CSeq: 1 {method}"));
        h.deliver(CALLER, &req);
        let up = h.take(CALLER);
        assert_eq!(
            up.iter().map(|m| status(m)).collect::<Vec<_>>(),
            vec![want],
            "{method}"
        );
        if want == "405" {
            assert!(header(&up[0], "Allow").is_some(), "{}", up[0]);
        }
        assert!(h.sent.is_empty(), "{method} went on: {:?}", h.sent);
    }
    let msg = invite("nc-msg")
        .replace("INVITE sip:", "MESSAGE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE");
    h.deliver(CALLER, &msg);
    assert_eq!(h.take("127.0.0.1:5070").len(), 1, "a text to 911 is routed");
}

/// A carrier's health check by the router's host name, with or without a
/// user part or port, is answered 200 by the router (`sip.aliases`).
#[test]
fn options_to_any_name_of_the_router_is_answered_200() {
    let mut c = config();
    c.sip.aliases = vec!["SOS.example.net".into()];
    let mut h = Harness::with(c);
    // Another name, or the alias with a port the router does not listen on,
    // is not the router: such an OPTIONS is no emergency call either.
    for (uri, want) in [
        ("sip:sos.example.net", "200"),
        ("sip:ping@sos.example.net:5060", "200"),
        ("sip:sos.example.net:5060", "200"),
        ("sip:ping@sos.example.net", "200"),
        ("sip:127.0.0.1:5060", "200"),
        ("sip:ping@127.0.0.1:5060", "200"),
        ("sip:other.example.net", "403"),
        ("sip:sos.example.net:5099", "403"),
    ] {
        let req = invite("al")
            .replace("INVITE sip:911@127.0.0.1:5060", &format!("OPTIONS {uri}"))
            .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS")
            .replace("branch=z9hG4bKal", &format!("branch=z9hG4bKal-{uri}"));
        h.deliver(CALLER, &req);
        let up = h.take(CALLER);
        assert_eq!(
            up.iter().map(|m| status(m)).collect::<Vec<_>>(),
            vec![want],
            "{uri}"
        );
    }
}

/// RFC 3581 on the router's own answers: a caller behind NAT that asks for
/// `rport` gets its public address and port in every response the router
/// writes itself (100, 403, 483, 200 to OPTIONS), as in relayed ones.
#[test]
fn the_routers_own_answers_carry_received_and_rport() {
    let mut h = Harness::new();
    let nat = |req: String, branch: &str| {
        req.replace(
            &format!("Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK{branch}"),
            &format!("Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{branch};rport"),
        )
    };
    let cases = [
        (nat(invite("rp1"), "rp1"), vec!["100"]),
        (
            nat(invite("rp2"), "rp2").replace("sip:911@", "sip:5551234@"),
            vec!["403"],
        ),
        (
            nat(invite("rp3"), "rp3").replace("Max-Forwards: 70", "Max-Forwards: 0"),
            vec!["483"],
        ),
        (
            nat(invite("rp4"), "rp4")
                .replace(
                    "INVITE sip:911@127.0.0.1:5060",
                    "OPTIONS sip:127.0.0.1:5060",
                )
                .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS"),
            vec!["200"],
        ),
    ];
    for (req, want) in cases {
        h.deliver(CALLER, &req);
        let up = h.take(CALLER);
        assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), want);
        for m in &up {
            let via = header(m, "Via").unwrap();
            assert!(
                via.ends_with(";received=127.0.0.1;rport=5061"),
                "{via}\n{m}"
            );
        }
    }
}

/// An INVITE with `pad` bytes of body, so that it is as large as a located
/// emergency call.
fn large_invite(call_id: &str, pad: usize) -> String {
    invite(call_id).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: text/plain\r\nContent-Length: {pad}\r\n\r\n{}",
            "x".repeat(pad)
        ),
    )
}

/// RFC 3261 section 18.1.1 with a UDP-only PSAP: a large INVITE goes over
/// TCP; the trunk refuses the connection; the same transaction sends it over
/// UDP at once, and later large requests to the trunk go straight to UDP.
#[test]
fn a_trunk_that_refuses_tcp_gets_large_requests_over_udp() {
    let mut c = config();
    c.health.interval_s = 0;
    let mut h = Harness::with(c);
    h.core.start(h.now);
    // Just under the limit stays on UDP: the size is the real one.
    h.deliver(CALLER, &large_invite("lg0", 880));
    let sent = h.take_sent("127.0.0.1:5070");
    assert!(sent[0].bytes.len() <= 1300, "{}", sent[0].bytes.len());
    assert_eq!(sent[0].dest.proto, Proto::Udp);

    h.deliver(CALLER, &large_invite("lg1", 1500));
    let sent = h.take_sent("127.0.0.1:5070");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dest.proto, Proto::Tcp);
    let tcp = String::from_utf8_lossy(&sent[0].bytes).into_owned();
    assert!(
        tcp.contains("\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch="),
        "{tcp}"
    );
    // The connection is refused.
    h.core.handle_send_failure(h.now, sent[0].token.unwrap());
    h.drain();
    let sent = h.take_sent("127.0.0.1:5070");
    assert_eq!(sent.len(), 1, "sent again at once");
    assert_eq!(sent[0].dest.proto, Proto::Udp);
    let udp = String::from_utf8_lossy(&sent[0].bytes).into_owned();
    assert_eq!(
        udp,
        tcp.replacen(
            "SIP/2.0/TCP 127.0.0.1:5060",
            "SIP/2.0/UDP 127.0.0.1:5060",
            1
        )
    );
    assert!(h.take("127.0.0.1:5080").is_empty(), "no failover");
    assert_eq!(h.core.stats().failovers, 0);
    // Timer A retransmits it over UDP until the PSAP answers.
    h.advance(Duration::from_millis(501));
    let again: Vec<Transmit> = h
        .take_sent("127.0.0.1:5070")
        .into_iter()
        .filter(|t| String::from_utf8_lossy(&t.bytes).contains("Call-ID: lg1\r\n"))
        .collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].dest.proto, Proto::Udp);
    h.deliver("127.0.0.1:5070", &answer(&udp, 200, "OK", "p1"));
    assert!(h.take(CALLER).iter().any(|m| status(m) == "200"));
    let health = h.core.trunk_health(h.now);
    let psap = health.iter().find(|t| t.trunk == "psap").unwrap();
    assert!(psap.tcp_refused);

    // The next large call goes over UDP at once.
    h.deliver(CALLER, &large_invite("lg2", 1500));
    let sent = h.take_sent("127.0.0.1:5070");
    assert_eq!(sent[0].dest.proto, Proto::Udp);
    assert!(String::from_utf8_lossy(&sent[0].bytes).contains("Via: SIP/2.0/UDP 127.0.0.1:5060"));
    // Ten minutes on, TCP is tried again.
    h.advance(Duration::from_secs(601));
    h.take_sent("127.0.0.1:5070");
    h.deliver(CALLER, &large_invite("lg3", 1500));
    let sent: Vec<Transmit> = h
        .take_sent("127.0.0.1:5070")
        .into_iter()
        .filter(|t| String::from_utf8_lossy(&t.bytes).contains("Call-ID: lg3\r\n"))
        .collect();
    assert_eq!(sent[0].dest.proto, Proto::Tcp);
    assert!(!h.core.trunk_health(h.now)[0].tcp_refused);
}

/// A TCP trunk, or a send failure after the trunk answered, is a failure
/// as ever: the call moves to the next target.
#[test]
fn a_tcp_trunk_that_cannot_be_reached_is_failed_over() {
    let mut c = config();
    c.trunks[0].transport = Some(crate::config::TransportName::Tcp);
    let mut h = Harness::with(c);
    h.deliver(CALLER, &invite("tc1"));
    let sent = h.take_sent("127.0.0.1:5070");
    assert_eq!(sent[0].dest.proto, Proto::Tcp);
    h.core.handle_send_failure(h.now, sent[0].token.unwrap());
    h.drain();
    assert!(h.take_sent("127.0.0.1:5070").is_empty());
    assert_eq!(h.take("127.0.0.1:5080").len(), 1);
}

/// A PSAP that answers 200 with only the router's Via (it does not copy the
/// Vias it received) still answers the caller: the Vias of the caller's
/// request are put back, on the 2xx and on its retransmissions.
#[test]
fn a_2xx_without_the_callers_via_reaches_the_caller() {
    let mut h = Harness::new();
    let inv = invite("c-2xx").replace(
        &format!("Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKc-2xx"),
        "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKc-2xx;rport\r\nVia: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKedge",
    );
    h.deliver(CALLER, &inv);
    let fwd = h.take("127.0.0.1:5070").remove(0);
    h.take(CALLER);
    let whole = answer(&fwd, 200, "OK", "t1");
    let stripped = only_the_top_via(&whole);
    assert_eq!(stripped.matches("Via:").count(), 1, "{stripped}");
    for _ in 0..2 {
        h.deliver("127.0.0.1:5070", &stripped);
        let up = h.take(CALLER);
        assert_eq!(up.len(), 1, "{up:?}");
        assert_eq!(status(&up[0]), "200");
        assert_eq!(
            header(&up[0], "Via").unwrap(),
            "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKc-2xx;received=127.0.0.1;rport=5061, SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKedge",
            "{}",
            up[0]
        );
    }
}

/// A header line with no colon in an emergency INVITE (a carrier's debug
/// line) costs nothing: the call is routed with the line passed on as it
/// came, and the record says what was wrong. Any other call gets 400.
#[test]
fn an_emergency_invite_with_a_garbage_line_is_routed_with_the_line_untouched() {
    let mut h = Harness::new();
    let inv = invite("gl1").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nX-Carrier-Debug\r\n",
    );
    h.deliver(CALLER, &inv);
    let fwd = h.take("127.0.0.1:5070");
    assert_eq!(fwd.len(), 1, "{:?}", h.sent);
    assert!(fwd[0].contains("\r\nX-Carrier-Debug\r\n"), "{}", fwd[0]);
    let warnings = std::iter::from_fn(|| h.core.poll_event())
        .find_map(|ev| match ev {
            CallEvent::Started { warnings, .. } => Some(warnings),
            _ => None,
        })
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");

    let mut h = Harness::with(non_emergency_config());
    h.deliver(CALLER, &inv.replace("gl1", "gl2"));
    assert!(h.take("127.0.0.1:5070").is_empty());
    let up = h.take(CALLER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec!["400"]
    );
    assert!(
        up[0].starts_with("SIP/2.0 400 Bad Header Line"),
        "{}",
        up[0]
    );
}

/// A routing phase that adds a registered address of `n` bytes to every
/// call, as the emergency router does when it routes by it.
struct AddsAddress(usize);

impl Router for AddsAddress {
    fn route(&mut self, _req: &Message, _ctx: &RouteContext<'_>) -> Decision {
        Decision::Route {
            targets: vec![RouteTarget {
                trunk: "psap".into(),
                route: None,
                label: "psap".into(),
            }],
            augment: Augment {
                body_part: Some((
                    vec![("Content-Type".into(), "application/pidf+xml".into())],
                    Bytes::from(vec![b'a'; self.0]),
                )),
                headers_first: vec![(HeaderName::Geolocation, Bytes::from_static(b"<cid:ra@x>"))],
                ..Augment::default()
            },
            emergency: true,
            route: "screening",
            reason: "registered-address",
            details: None,
        }
    }
}

/// The router's own additions never push a request past what the next hop
/// can take: an INVITE already near the size limit is forwarded without
/// the registered address (the record says so), a normal one with it.
#[test]
fn the_routers_additions_never_make_a_request_too_large_to_forward() {
    let c = config();
    let cfg = CoreConfig::from_config(&c, vec![addr("127.0.0.1:5060")], 7);
    let mut h = Harness {
        core: Core::new(cfg, Box::new(AddsAddress(3_000))),
        now: Instant::now(),
        sent: Vec::new(),
    };
    h.deliver_over(
        Proto::Tcp,
        CALLER,
        &large_invite("big", 63_000).replace("SIP/2.0/UDP", "SIP/2.0/TCP"),
    );
    let fwd = h.take("127.0.0.1:5070");
    assert_eq!(fwd.len(), 1);
    assert!(fwd[0].len() < 65_000, "{}", fwd[0].len());
    assert!(!fwd[0].contains("application/pidf+xml"));
    assert!(
        !fwd[0].contains("cid:ra@x"),
        "a Geolocation to a part not there"
    );
    let warnings = std::iter::from_fn(|| h.core.poll_event())
        .find_map(|ev| match ev {
            CallEvent::Started { warnings, .. } => Some(warnings),
            _ => None,
        })
        .unwrap();
    assert!(
        warnings[0].contains("registered address not added"),
        "{warnings:?}"
    );

    h.deliver_over(
        Proto::Tcp,
        CALLER,
        &large_invite("small", 500).replace("SIP/2.0/UDP", "SIP/2.0/TCP"),
    );
    let fwd = h.take("127.0.0.1:5070");
    assert!(fwd[0].contains("application/pidf+xml"), "{}", fwd[0]);
    assert!(fwd[0].contains("Geolocation: <cid:ra@x>"), "{}", fwd[0]);
}

/// The router's own refusals that no other test shows: a Request-URI
/// scheme it cannot route on (416), a route with no target (503 No Route),
/// and every target's 503 answered as 500 All Targets Failed (RFC 3261
/// section 16.7).
#[test]
fn the_routers_last_word_on_calls_it_cannot_place() {
    let mut h = Harness::new();
    h.deliver(
        CALLER,
        &invite("sch").replace("INVITE sip:911@127.0.0.1:5060", "INVITE im:911@example.net"),
    );
    let up = h.take(CALLER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec!["416"]
    );

    let mut c = config();
    c.routes[0].targets.clear();
    let mut h = Harness::with(c);
    h.deliver(CALLER, &invite("nr"));
    let up = h.take(CALLER);
    assert_eq!(
        up.iter().map(|m| status(m)).collect::<Vec<_>>(),
        vec!["100", "503"]
    );
    assert!(up[1].starts_with("SIP/2.0 503 No Route\r\n"), "{}", up[1]);

    let mut h = Harness::new();
    h.deliver(CALLER, &invite("all5"));
    h.take(CALLER);
    for port in [5070, 5080, 5095] {
        let to = format!("127.0.0.1:{port}");
        let fwd = h.take(&to).remove(0);
        h.deliver(&to, &answer(&fwd, 503, "Service Unavailable", "t"));
    }
    let up = h.take(CALLER);
    assert_eq!(up.len(), 1);
    assert!(
        up[0].starts_with("SIP/2.0 500 All Targets Failed\r\n"),
        "{}",
        up[0]
    );
}

/// A request the router refuses holds no state: its answer goes without a
/// transaction (a retransmission gets the same one, its ACK ends here), and
/// a source flooding such requests is answered only within its budget,
/// while another source is answered as ever.
#[test]
fn refusals_hold_no_state_and_each_source_has_a_budget_for_them() {
    let mut c = config();
    c.sip.answers_per_source_per_s = 10;
    c.sip.allow = vec!["127.0.0.0/8".parse().unwrap()];
    let mut h = Harness::with(c);
    let not_911 = |n: u32| invite(&format!("ne{n}")).replace("sip:911@", "sip:5551234@");
    h.deliver(CALLER, &not_911(0));
    let up = h.take(CALLER);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), ["403"]);
    assert_eq!(h.core.open(), (0, 0), "no transaction for a refusal");
    h.deliver(CALLER, &not_911(0));
    let again = h.take(CALLER);
    assert_eq!(header(&again[0], "To"), header(&up[0], "To"));
    let ack = not_911(0)
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: <sip:911@127.0.0.1>",
            &format!("To: {}", header(&up[0], "To").unwrap()),
        );
    h.deliver(CALLER, &ack);
    assert!(h.sent.is_empty(), "{:?}", h.sent);

    for n in 1..=50 {
        h.deliver(CALLER, &not_911(n));
    }
    assert_eq!(h.take(CALLER).len(), 8, "the rest of a burst of 10");
    assert_eq!(h.core.open(), (0, 0));
    // Another carrier is still answered, and emergency calls are not
    // refusals: they go through whatever the budget.
    h.deliver("127.0.0.9:5061", &not_911(99));
    let other = h.take("127.0.0.9:5061");
    assert!(
        other[0].starts_with("SIP/2.0 403 Not An Emergency Call\r\n"),
        "{other:?}"
    );
    h.deliver(CALLER, &invite("still-911"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
}

// ----- location by reference -----

/// The table router, asking for the location of every INVITE that carries
/// an `http(s)` Geolocation reference, and noting the document each
/// decision was given.
struct FetchesReferences {
    table: StaticRouter,
    given: Given,
}

/// The documents the routing phase was given, one entry a decision.
type Given = Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>>;

impl Router for FetchesReferences {
    fn route(&mut self, req: &Message, ctx: &RouteContext<'_>) -> Decision {
        self.given
            .lock()
            .unwrap()
            .push(ctx.dereferenced.map(<[u8]>::to_vec));
        self.table.route(req, ctx)
    }

    fn location_reference(&self, req: &Message) -> Option<String> {
        let v = req.get(HeaderName::Geolocation)?;
        let v = std::str::from_utf8(v).ok()?.trim_matches(['<', '>']);
        v.starts_with("http").then(|| v.to_string())
    }
}

/// A harness whose router fetches references, with `per_server` fetches
/// at most from one server.
fn fetching(per_server: usize) -> (Harness, Given) {
    let c = config();
    let mut cfg = CoreConfig::from_config(&c, vec![addr("127.0.0.1:5060")], 7);
    cfg.fetch.per_server = per_server;
    let given = Given::default();
    let router = Box::new(FetchesReferences {
        table: StaticRouter::new(&c),
        given: given.clone(),
    });
    let h = Harness {
        core: Core::new(cfg, router),
        now: Instant::now(),
        sent: Vec::new(),
    };
    (h, given)
}

fn invite_by_reference(call_id: &str, uri: &str) -> String {
    invite(call_id).replace(
        "Content-Length: 0\r\n",
        &format!("Geolocation: <{uri}>\r\nContent-Length: 0\r\n"),
    )
}

const LIS: &str = "https://lis.carrier.example/loc/1";

#[test]
fn an_invite_by_reference_waits_for_its_location_and_is_routed_with_it() {
    let (mut h, router) = fetching(4);
    h.deliver(CALLER, &invite_by_reference("r1", LIS));
    let fetch = h.core.poll_fetch().expect("the core asks for the location");
    assert_eq!(fetch.uri, LIS);
    assert_eq!(fetch.timeout, Duration::from_millis(1000));
    assert_eq!(fetch.call_id, "r1");
    assert_eq!(h.core.poll_fetch(), None, "one fetch per call");
    // The caller hears from the router at once; nothing goes on yet.
    let up = h.take(CALLER);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), ["100"]);
    assert!(h.take("127.0.0.1:5070").is_empty());
    assert_eq!(h.core.calls_in_progress(), 1, "a drain waits for it");
    // A retransmission meanwhile is answered 100 again, not fetched again.
    h.deliver(CALLER, &invite_by_reference("r1", LIS));
    assert_eq!(h.take(CALLER).len(), 1);
    assert_eq!(h.core.poll_fetch(), None);

    h.core
        .handle_fetched(h.now, fetch.id, Some(Bytes::from_static(b"<presence/>")));
    h.drain();
    assert_eq!(h.take("127.0.0.1:5070").len(), 1, "routed now");
    assert_eq!(
        *router.lock().unwrap(),
        [Some(b"<presence/>".to_vec())],
        "with the document"
    );
    // A late second report of the same fetch changes nothing.
    h.core.handle_fetched(h.now, fetch.id, None);
    h.drain();
    assert!(h.take("127.0.0.1:5070").is_empty());
    assert_eq!(router.lock().unwrap().len(), 1);
}

// ----- LoST queries -----

/// What a decision was given: the dereferenced document and the LoST
/// answer (`Some(None)`: the query failed).
type LostGiven = Arc<std::sync::Mutex<Vec<(Option<Vec<u8>>, Option<Option<Vec<u8>>>)>>>;

/// The table router, fetching references as [`FetchesReferences`] does and
/// asking an ECRF before every INVITE it routes.
struct AsksLost {
    inner: FetchesReferences,
    given: LostGiven,
}

const ECRF: &str = "https://ecrf.example/lost";

impl Router for AsksLost {
    fn route(&mut self, req: &Message, ctx: &RouteContext<'_>) -> Decision {
        self.given.lock().unwrap().push((
            ctx.dereferenced.map(<[u8]>::to_vec),
            ctx.lost.map(|a| match a {
                LostAnswer::Body(b) => Some(b.to_vec()),
                LostAnswer::Failed(_) => None,
            }),
        ));
        self.inner.table.route(req, ctx)
    }

    fn location_reference(&self, req: &Message) -> Option<String> {
        self.inner.location_reference(req)
    }

    fn lost_query(&mut self, _req: &Message, ctx: &RouteContext<'_>) -> Option<LostQuery> {
        let with = ctx.dereferenced.map(<[u8]>::to_vec).unwrap_or_default();
        Some(LostQuery {
            url: ECRF.into(),
            body: format!("findService for {}", String::from_utf8_lossy(&with)),
            timeout: Duration::from_millis(300),
        })
    }
}

fn asking_lost() -> (Harness, LostGiven) {
    let c = config();
    let cfg = CoreConfig::from_config(&c, vec![addr("127.0.0.1:5060")], 7);
    let given = LostGiven::default();
    let router = Box::new(AsksLost {
        inner: FetchesReferences {
            table: StaticRouter::new(&c),
            given: Given::default(),
        },
        given: given.clone(),
    });
    let h = Harness {
        core: Core::new(cfg, router),
        now: Instant::now(),
        sent: Vec::new(),
    };
    (h, given)
}

#[test]
fn an_invite_waits_for_its_lost_answer_and_is_routed_with_it() {
    let (mut h, given) = asking_lost();
    h.deliver(CALLER, &invite("l1"));
    let q = h.core.poll_fetch().expect("the core asks the ECRF");
    assert_eq!(
        (q.uri.as_str(), q.timeout),
        (ECRF, Duration::from_millis(300))
    );
    assert_eq!(q.lost.as_deref(), Some("findService for "));
    assert_eq!(
        h.take(CALLER).iter().map(|m| status(m)).collect::<Vec<_>>(),
        ["100"]
    );
    assert!(h.take("127.0.0.1:5070").is_empty());
    assert_eq!(h.core.calls_in_progress(), 1);
    h.core.handle_fetched(
        h.now,
        q.id,
        Some(Bytes::from_static(b"<findServiceResponse/>")),
    );
    h.drain();
    assert_eq!(h.take("127.0.0.1:5070").len(), 1, "routed now");
    assert_eq!(
        *given.lock().unwrap(),
        [(None, Some(Some(b"<findServiceResponse/>".to_vec())))]
    );
}

#[test]
fn a_silent_ecrf_holds_the_invite_only_until_the_cores_deadline() {
    let (mut h, given) = asking_lost();
    h.deliver(CALLER, &invite("l2"));
    let _q = h.core.poll_fetch().unwrap();
    h.take(CALLER);
    h.advance(Duration::from_millis(300));
    assert!(
        h.take("127.0.0.1:5070").is_empty(),
        "the driver's deadline first"
    );
    h.advance(Duration::from_millis(300));
    assert_eq!(
        h.take("127.0.0.1:5070").len(),
        1,
        "routed without the answer"
    );
    assert_eq!(*given.lock().unwrap(), [(None, Some(None))]);
}

#[test]
fn a_location_fetched_by_reference_goes_into_the_lost_query_and_the_decision() {
    let (mut h, given) = asking_lost();
    h.deliver(CALLER, &invite_by_reference("l3", LIS));
    let fetch = h.core.poll_fetch().unwrap();
    assert_eq!((fetch.uri.as_str(), fetch.lost.as_deref()), (LIS, None));
    h.core
        .handle_fetched(h.now, fetch.id, Some(Bytes::from_static(b"<presence/>")));
    h.drain();
    assert!(
        h.take("127.0.0.1:5070").is_empty(),
        "now waiting for the ECRF"
    );
    let q = h.core.poll_fetch().expect("then the ECRF is asked");
    assert_eq!(q.lost.as_deref(), Some("findService for <presence/>"));
    assert_eq!(h.core.calls_in_progress(), 1);
    h.core.handle_fetched(h.now, q.id, None);
    h.drain();
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    assert_eq!(
        *given.lock().unwrap(),
        [(Some(b"<presence/>".to_vec()), Some(None))]
    );
}

/// What background refreshes brought back: the service refreshed and the
/// answer's body (`None`: why none came).
type Refreshed = Arc<std::sync::Mutex<Vec<(String, Result<Vec<u8>, LostFailure>)>>>;

/// The table router, whose every decision asks for one background refresh
/// (as the emergency router does when a cached mapping it routes on is
/// near its end).
struct RefreshesLost {
    table: StaticRouter,
    queued: Vec<LostRefresh>,
    made: usize,
    refreshed: Refreshed,
}

impl Router for RefreshesLost {
    fn route(&mut self, req: &Message, ctx: &RouteContext<'_>) -> Decision {
        let n = self.made;
        self.made += 1;
        self.queued.push(LostRefresh {
            query: LostQuery {
                url: ECRF.into(),
                body: format!("refresh {n}"),
                timeout: Duration::from_millis(300),
            },
            location: crate::lost::Location::Civic(crate::pidf::CivicAddress::new()),
            service: format!("urn:service:sos.{n}"),
        });
        self.table.route(req, ctx)
    }

    fn poll_lost_refresh(&mut self) -> Option<LostRefresh> {
        self.queued.pop()
    }

    fn lost_refreshed(
        &mut self,
        refresh: LostRefresh,
        answer: LostAnswer<'_>,
        _wall: Option<time::OffsetDateTime>,
    ) {
        let answer = match answer {
            LostAnswer::Body(b) => Ok(b.to_vec()),
            LostAnswer::Failed(why) => Err(why),
        };
        self.refreshed
            .lock()
            .unwrap()
            .push((refresh.service, answer));
    }
}

#[test]
fn a_background_lost_refresh_delays_no_call_and_its_answer_reaches_the_router() {
    let c = config();
    let mut cfg = CoreConfig::from_config(&c, vec![addr("127.0.0.1:5060")], 7);
    cfg.fetch.per_server = 1;
    let refreshed = Refreshed::default();
    let router = Box::new(RefreshesLost {
        table: StaticRouter::new(&c),
        queued: Vec::new(),
        made: 0,
        refreshed: refreshed.clone(),
    });
    let mut h = Harness {
        core: Core::new(cfg, router),
        now: Instant::now(),
        sent: Vec::new(),
    };

    // The call goes on at once; the refresh is a query of its own, tied
    // to no call.
    h.deliver(CALLER, &invite("f1"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1, "routed at once");
    let q = h.core.poll_fetch().expect("the refresh is sent");
    assert_eq!(
        (
            q.uri.as_str(),
            q.lost.as_deref(),
            q.refresh,
            q.call_id.as_str()
        ),
        (ECRF, Some("refresh 0"), true, "")
    );
    assert_eq!(h.core.poll_fetch(), None);

    // While it is under way, the ECRF's one slot (per_server 1) is taken:
    // the next call's refresh is not sent, and that call is not held.
    h.deliver(CALLER, &invite("f2"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    assert_eq!(h.core.poll_fetch(), None, "no room: not sent");

    // The answer goes to the router, and nowhere else.
    h.take(CALLER);
    h.core.handle_fetched(
        h.now,
        q.id,
        Some(Bytes::from_static(b"<findServiceResponse/>")),
    );
    h.drain();
    assert!(h.take("127.0.0.1:5070").is_empty() && h.take(CALLER).is_empty());
    assert_eq!(
        *refreshed.lock().unwrap(),
        [(
            "urn:service:sos.0".to_owned(),
            Ok(b"<findServiceResponse/>".to_vec())
        )]
    );

    // A refresh the driver never reports on ends at the core's deadline,
    // as a timeout; one reported afterwards is dropped.
    h.deliver(CALLER, &invite("f3"));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    let q = h.core.poll_fetch().expect("room again");
    assert_eq!(q.lost.as_deref(), Some("refresh 2"));
    h.advance(Duration::from_millis(300));
    assert_eq!(
        refreshed.lock().unwrap().len(),
        1,
        "the driver's deadline first"
    );
    h.advance(Duration::from_millis(300));
    assert_eq!(
        refreshed.lock().unwrap().last(),
        Some(&("urn:service:sos.2".to_owned(), Err(LostFailure::Timeout)))
    );
    h.core
        .handle_fetched(h.now, q.id, Some(Bytes::from_static(b"late")));
    h.drain();
    assert_eq!(refreshed.lock().unwrap().len(), 2);
}

#[test]
fn a_cancel_during_the_fetch_follows_the_invite_into_the_proxy() {
    let (mut h, _) = fetching(4);
    h.deliver(CALLER, &invite_by_reference("r2", LIS));
    let fetch = h.core.poll_fetch().unwrap();
    h.take(CALLER);
    // Answered now, it would get 481 and leave the call to be routed.
    let cancel = cancel("r2").replace(
        "Content-Length: 0\r\n",
        &format!("Geolocation: <{LIS}>\r\nContent-Length: 0\r\n"),
    );
    h.deliver(CALLER, &cancel);
    h.deliver(CALLER, &cancel);
    assert!(
        h.take(CALLER).is_empty(),
        "held, and its retransmission too"
    );

    h.core.handle_fetched(h.now, fetch.id, None);
    h.drain();
    let mut up: Vec<String> = h
        .take(CALLER)
        .iter()
        .map(|m| {
            let cseq = header(m, "CSeq").unwrap_or_default().to_string();
            format!("{} {cseq}", status(m))
        })
        .collect();
    up.sort();
    assert_eq!(up, ["100 1 INVITE", "200 1 CANCEL", "487 1 INVITE"]);
    assert_eq!(h.core.calls_in_progress(), 0);
}

#[test]
fn with_no_word_from_the_driver_the_call_is_routed_at_the_cores_deadline() {
    let (mut h, router) = fetching(4);
    h.deliver(CALLER, &invite_by_reference("r3", LIS));
    let fetch = h.core.poll_fetch().unwrap();
    h.advance(fetch.timeout);
    assert!(
        h.take("127.0.0.1:5070").is_empty(),
        "the driver's own deadline comes first"
    );
    h.advance(Duration::from_millis(300));
    assert_eq!(h.take("127.0.0.1:5070").len(), 1, "routed without it");
    assert_eq!(*router.lock().unwrap(), [None]);
    // The report that comes after is dropped.
    h.core
        .handle_fetched(h.now, fetch.id, Some(Bytes::from_static(b"<presence/>")));
    h.drain();
    assert!(h.take("127.0.0.1:5070").is_empty());
}

#[test]
fn a_server_with_every_slot_taken_gets_no_more_fetches_and_its_calls_go_on() {
    let (mut h, router) = fetching(2);
    for i in 0..3 {
        h.deliver(CALLER, &invite_by_reference(&format!("s{i}"), LIS));
    }
    let fetches: Vec<LocationFetch> = std::iter::from_fn(|| h.core.poll_fetch()).collect();
    assert_eq!(fetches.len(), 2);
    assert_eq!(
        h.take("127.0.0.1:5070").len(),
        1,
        "the third is routed at once"
    );
    // Another server still has its own slots, in any spelling of its name.
    h.deliver(
        CALLER,
        &invite_by_reference("s3", "http://LIS.other.example./x"),
    );
    assert_eq!(
        h.core.poll_fetch().map(|f| f.call_id),
        Some("s3".to_string())
    );
    // A slot comes back when its fetch is over.
    h.core.handle_fetched(h.now, fetches[0].id, None);
    h.deliver(CALLER, &invite_by_reference("s4", LIS));
    assert_eq!(
        h.core.poll_fetch().map(|f| f.call_id),
        Some("s4".to_string())
    );
    assert_eq!(router.lock().unwrap().len(), 2);
}

#[test]
fn a_stranger_or_a_call_without_a_reference_fetches_nothing() {
    let (mut h, _) = fetching(4);
    h.deliver("127.0.0.9:5061", &invite_by_reference("x1", LIS));
    assert_eq!(h.core.poll_fetch(), None);
    assert_eq!(status(&h.take("127.0.0.9:5061")[0]), "403");
    h.deliver(CALLER, &invite("x2"));
    assert_eq!(h.core.poll_fetch(), None);
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
    // With fetches off (a zero timeout), a reference is routed at once.
    let mut c = config();
    c.emergency.dereference_timeout_ms = Some(0);
    let mut h = Harness::with(c);
    h.deliver(CALLER, &invite_by_reference("x3", LIS));
    assert_eq!(h.core.poll_fetch(), None);
    assert_eq!(h.take("127.0.0.1:5070").len(), 1);
}

#[test]
fn a_bug_met_by_a_located_invite_is_answered_500() {
    let (mut h, _) = fetching(4);
    h.deliver(CALLER, &invite_by_reference("b1", LIS));
    let fetch = h.core.poll_fetch().unwrap();
    h.take(CALLER);
    // What the driver does when routing the fetched call panicked.
    h.core.abandon_fetch(h.now, fetch.id);
    h.drain();
    let up = h.take(CALLER);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), ["500"]);
    assert_eq!(h.core.calls_in_progress(), 0);
    assert!(h.take("127.0.0.1:5070").is_empty());
}

/// A trunk given by a name without a port: its lookup's targets (RFC 3263
/// SRV targets) are failover steps of their own, in order, before the next
/// trunk.
#[test]
fn each_target_of_a_trunks_name_is_tried_before_the_next_trunk() {
    let mut c = config();
    c.trunks[0].uri = Some("sip:psap.example.net".into());
    let mut h = Harness::with(c);
    h.deliver(CALLER, &invite("srv1"));
    let named = |h: &mut Harness| {
        let i = h.sent.iter().position(|t| t.dest.target.host().is_some())?;
        Some(h.sent.remove(i))
    };
    let first = named(&mut h).expect("the INVITE to the PSAP's name");
    assert_eq!(
        first.dest.target,
        Target::Host("psap.example.net".into(), 0),
        "no port: its SRV records say"
    );
    // The lookup found two targets; the first fails.
    h.core.next_hops_resolved("PSAP.example.net", 0, 2);
    h.core.handle_send_failure(h.now, first.token.unwrap());
    h.drain();
    let second = named(&mut h).expect("the INVITE to the second target");
    assert_eq!(
        second.dest.target,
        Target::HostAlt("psap.example.net".into(), 0, 1)
    );
    assert!(
        h.take("127.0.0.1:5080").is_empty(),
        "not the next trunk yet"
    );
    // The second fails too: now the screening trunk.
    h.core.handle_send_failure(h.now, second.token.unwrap());
    h.drain();
    assert_eq!(h.take("127.0.0.1:5080").len(), 1);
}

/// Over TLS: the router's Via names TLS and the TLS listener's port; legs
/// both over TLS get one Record-Route naming TLS, legs on different
/// transports two (RFC 5658), the top one for the trunk's side.
#[test]
fn legs_over_tls_are_record_routed_with_the_tls_listener() {
    let text = r#"
[sip]
listen = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]
allow = ["127.0.0.1/32"]
[sip.tls]
certificate = "router.pem"
key = "router.key"
[[trunk]]
name = "psap"
kind = "psap"
uri = "sips:127.0.0.1:5071"
[[route]]
numbers = ["911"]
targets = ["psap"]
"#;
    let c = Config::from_toml(text).unwrap();
    let mut h = Harness::with(c);
    let rr = |t: &Transmit| {
        String::from_utf8_lossy(&t.bytes)
            .lines()
            .filter(|l| l.starts_with("Record-Route:"))
            .map(|l| l["Record-Route:".len()..].trim().to_string())
            .collect::<Vec<_>>()
    };
    h.deliver_over(
        Proto::Tls,
        CALLER,
        &invite("tls1").replace("SIP/2.0/UDP", "SIP/2.0/TLS"),
    );
    let sent = h.take_sent("127.0.0.1:5071");
    assert_eq!(sent[0].dest.proto, Proto::Tls);
    assert!(
        String::from_utf8_lossy(&sent[0].bytes).contains("Via: SIP/2.0/TLS 127.0.0.1:5061;branch=")
    );
    assert_eq!(rr(&sent[0]), ["<sip:127.0.0.1:5061;transport=tls;lr>"]);
    h.deliver(CALLER, &invite("tls2"));
    let sent = h.take_sent("127.0.0.1:5071");
    assert_eq!(
        rr(&sent[0]),
        [
            "<sip:127.0.0.1:5061;transport=tls;lr>",
            "<sip:127.0.0.1:5060;lr>"
        ]
    );
}

/// Which transport a trunk takes from its configuration, and which trunks
/// leave it to their host's NAPTR records; what those records chose
/// applies at once, and again after a reload.
#[test]
fn a_trunk_transport_comes_from_its_uri_its_key_or_the_naptr_records() {
    use crate::config::TransportName as T;
    let cases: &[(&str, Option<T>, Proto, Option<&str>)] = &[
        ("sip:127.0.0.1:5070", None, Proto::Udp, None),
        ("sip:psap.example.net:5060", None, Proto::Udp, None),
        (
            "sip:PSAP.example.net",
            None,
            Proto::Udp,
            Some("psap.example.net"),
        ),
        ("sip:psap.example.net", Some(T::Udp), Proto::Udp, None),
        ("sip:psap.example.net", Some(T::Tcp), Proto::Tcp, None),
        ("sip:psap.example.net;transport=tcp", None, Proto::Tcp, None),
        ("sip:psap.example.net;transport=TLS", None, Proto::Tls, None),
        ("sips:psap.example.net", None, Proto::Tls, None),
        ("sips:psap.example.net", Some(T::Tcp), Proto::Tls, None),
        (
            "sip:psap.example.net;transport=udp",
            Some(T::Tcp),
            Proto::Tcp,
            None,
        ),
    ];
    for (uri, key, proto, naptr) in cases {
        let mut c = config();
        c.trunks[0].uri = Some(uri.to_string());
        c.trunks[0].transport = *key;
        let cfg = CoreConfig::from_config(&c, vec![addr("127.0.0.1:5060")], 1);
        assert_eq!(cfg.trunks[0].proto, *proto, "{uri} {key:?}");
        assert_eq!(cfg.trunks[0].naptr_host.as_deref(), *naptr, "{uri} {key:?}");
    }

    let mut c = config();
    c.trunks[0].uri = Some("sip:psap.example.net".into());
    let mut h = Harness::with(c.clone());
    assert_eq!(h.core.naptr_hosts(), vec!["psap.example.net".to_string()]);
    assert!(!h.core.naptr_known("psap.example.net"));
    assert!(h.core.set_naptr_transport("psap.example.net", Proto::Tcp));
    assert!(!h.core.set_naptr_transport("psap.example.net", Proto::Tcp));
    h.deliver(CALLER, &invite("nt1"));
    let sent: Vec<Transmit> = std::mem::take(&mut h.sent);
    let to_psap = sent
        .iter()
        .find(|t| t.dest.target == Target::Host("psap.example.net".into(), 0))
        .expect("the INVITE went to the PSAP's name");
    assert_eq!(to_psap.dest.proto, Proto::Tcp);
    assert!(String::from_utf8_lossy(&to_psap.bytes).contains("Via: SIP/2.0/TCP "));
    // A reload keeps what the records said.
    let cfg = CoreConfig::from_config(&c, vec![addr("127.0.0.1:5060")], 1);
    let router = Box::new(StaticRouter::new(&c));
    h.core.reconfigure(h.now, cfg, router);
    assert!(h.core.naptr_known("psap.example.net"));
    h.deliver(CALLER, &invite("nt2"));
    let sent: Vec<Transmit> = std::mem::take(&mut h.sent);
    assert!(sent.iter().any(
        |t| t.dest.target == Target::Host("psap.example.net".into(), 0)
            && t.dest.proto == Proto::Tcp
    ));
}

/// A request within a dialog from the PSAP, routed through the router to
/// `route` (a Route value after the router's own).
fn in_dialog(method: &str, call_id: &str, branch: &str, route: &str) -> String {
    format!(
        "{method} sip:+12125550142@edge.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch}\r\nRoute: <sip:127.0.0.1:5060;lr>, <{route}>\r\nMax-Forwards: 70\r\nFrom: <sip:911@127.0.0.1>;tag=p1\r\nTo: <sip:+12125550142@example.com>;tag=f1\r\nCall-ID: {call_id}\r\nCSeq: 2 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

impl Harness {
    /// Takes what was sent to host name `host` (any port).
    fn take_named(&mut self, host: &str) -> Vec<Transmit> {
        let (mine, rest): (Vec<_>, Vec<_>) = (self.sent.drain(..)).partition(|t| {
            t.dest
                .target
                .host()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        });
        self.sent = rest;
        mine
    }
}

fn via_transport(t: &Transmit) -> String {
    let text = String::from_utf8_lossy(&t.bytes);
    let via = text.lines().find(|l| l.starts_with("Via: ")).unwrap();
    via["Via: SIP/2.0/".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_route_host_alone_waits_for_its_naptr_records_to_choose_the_transport() {
    let mut h = Harness::new();
    let route = "sip:edge.example.net;lr";
    h.deliver(PSAP, &in_dialog("BYE", "rn1", "rn1", route));
    assert!(h.take_named("edge.example.net").is_empty());
    assert_eq!(h.core.poll_naptr().as_deref(), Some("edge.example.net"));
    assert_eq!(h.core.naptr_waiting(), 1);
    // Its retransmission is absorbed by the open server transaction; the
    // ACK of another dialog waits with it, and the host is asked once.
    h.deliver(PSAP, &in_dialog("BYE", "rn1", "rn1", route));
    h.deliver(
        PSAP,
        &in_dialog("ACK", "rn2", "rn2", "sip:EDGE.example.net;lr"),
    );
    assert_eq!(h.core.naptr_waiting(), 2);
    assert_eq!(h.core.poll_naptr(), None);
    assert!(h.take_named("edge.example.net").is_empty());

    assert!(h
        .core
        .handle_naptr(h.now, "Edge.Example.Net", Some(Proto::Tcp)));
    h.drain();
    let sent = h.take_named("edge.example.net");
    let methods: Vec<&[u8]> = sent.iter().map(|t| &t.bytes[..4]).collect();
    assert_eq!(methods, vec![&b"BYE "[..], &b"ACK "[..]]);
    for t in &sent {
        assert_eq!(t.dest.proto, Proto::Tcp);
        assert!(
            matches!(&t.dest.target, Target::Host(h, 0) if h.eq_ignore_ascii_case("edge.example.net"))
        );
        assert_eq!(via_transport(t), "TCP");
    }
    assert_eq!(h.core.naptr_waiting(), 0);

    // Known now: the next request goes at once, and the host is looked up
    // again with the trunks'.
    h.deliver(PSAP, &in_dialog("BYE", "rn3", "rn3", route));
    let sent = h.take_named("edge.example.net");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dest.proto, Proto::Tcp);
    assert!(h
        .core
        .naptr_hosts()
        .contains(&"edge.example.net".to_string()));
    assert!(!h.core.naptr_for_trunk("edge.example.net"));

    // A port, a transport parameter or sips: leave nothing to NAPTR.
    let cases = [
        ("sip:other.example.net:5060;lr", Proto::Udp),
        ("sip:other.example.net;transport=udp;lr", Proto::Udp),
        ("sip:other.example.net;transport=tcp;lr", Proto::Tcp),
        ("sips:other.example.net;lr", Proto::Tls),
    ];
    for (i, (route, proto)) in cases.iter().enumerate() {
        h.deliver(
            PSAP,
            &in_dialog("BYE", &format!("ro{i}"), &format!("ro{i}"), route),
        );
        let sent = h.take_named("other.example.net");
        assert_eq!(sent.len(), 1, "{route}");
        assert_eq!(sent[0].dest.proto, *proto, "{route}");
        assert_eq!(via_transport(&sent[0]), proto.as_str(), "{route}");
    }
    assert_eq!(h.core.poll_naptr(), None);
}

#[test]
fn a_route_host_whose_records_never_come_is_reached_over_udp() {
    let mut h = Harness::new();
    let route = "sip:slow.example.net;lr";
    h.deliver(PSAP, &in_dialog("BYE", "rs1", "rs1", route));
    assert_eq!(h.core.poll_naptr().as_deref(), Some("slow.example.net"));
    // Twice the name timeout (2 s by default): nothing before it.
    let wait = CoreConfig::from_config(&config(), vec![addr("127.0.0.1:5060")], 1).naptr_wait;
    assert_eq!(wait, Duration::from_secs(4));
    h.advance(wait - Duration::from_millis(100));
    assert!(h.take_named("slow.example.net").is_empty());
    h.advance(Duration::from_millis(200));
    let sent = h.take_named("slow.example.net");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dest.proto, Proto::Udp);
    assert_eq!(via_transport(&sent[0]), "UDP");
    assert!(h.core.naptr_known("slow.example.net"));
    // The late answer still counts for the requests after it.
    assert!(h
        .core
        .handle_naptr(h.now, "slow.example.net", Some(Proto::Tcp)));
    h.deliver(PSAP, &in_dialog("BYE", "rs2", "rs2", route));
    assert_eq!(h.take_named("slow.example.net")[0].dest.proto, Proto::Tcp);

    // No records at all: UDP at once for the waiting request; a failed
    // refresh later keeps what was found.
    h.deliver(
        PSAP,
        &in_dialog("BYE", "rs3", "rs3", "sip:bare.example.net;lr"),
    );
    assert_eq!(h.core.poll_naptr().as_deref(), Some("bare.example.net"));
    h.core.handle_naptr(h.now, "bare.example.net", None);
    h.drain();
    assert_eq!(h.take_named("bare.example.net")[0].dest.proto, Proto::Udp);
    h.core.handle_naptr(h.now, "slow.example.net", None);
    h.deliver(PSAP, &in_dialog("BYE", "rs4", "rs4", route));
    assert_eq!(h.take_named("slow.example.net")[0].dest.proto, Proto::Tcp);
}

#[test]
fn past_the_waiting_limit_requests_to_a_new_route_host_go_over_udp_at_once() {
    let mut h = Harness::new();
    let route = "sip:many.example.net;lr";
    for i in 0..super::naptr::MAX_WAITING {
        let id = format!("rm{i}");
        h.deliver(PSAP, &in_dialog("BYE", &id, &id, route));
    }
    assert_eq!(h.core.naptr_waiting(), super::naptr::MAX_WAITING);
    assert!(h.take_named("many.example.net").is_empty());
    h.deliver(PSAP, &in_dialog("BYE", "rm-over", "rm-over", route));
    let sent = h.take_named("many.example.net");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dest.proto, Proto::Udp);
    assert!(String::from_utf8_lossy(&sent[0].bytes).contains("Call-ID: rm-over"));
    // The answer lets every waiting one go, in order.
    h.core
        .handle_naptr(h.now, "many.example.net", Some(Proto::Tcp));
    h.drain();
    let sent = h.take_named("many.example.net");
    assert_eq!(sent.len(), super::naptr::MAX_WAITING);
    assert!(sent.iter().all(|t| t.dest.proto == Proto::Tcp));
    assert!(String::from_utf8_lossy(&sent[0].bytes).contains("Call-ID: rm0\r\n"));
    assert_eq!(h.core.naptr_waiting(), 0);
}
