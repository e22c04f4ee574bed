//! The real binary on loopback against connections that hold its slots:
//! SIP over TCP that trickles in, says nothing, or takes every slot, and
//! idle connections to the admin listener.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{get, http_port, metric, Answer, RawTrunk, Router, Trunks};

/// A router whose emergency calls go to a raw trunk that answers 200, with
/// `extra` appended to the lab configuration and a metrics listener; the
/// other trunks are down. Given back in that order, so that the router is
/// the first dropped.
fn router(extra: &str) -> (Trunks, RawTrunk, Router) {
    let trunk = RawTrunk::start(Answer::Ok);
    let trunks = Trunks::new().with_psap(trunk.port);
    let cfg = trunks.lab_config(&format!("{extra}\n[metrics]\nlisten = \"127.0.0.1:0\"\n"));
    let router = Router::start(&cfg, &[]);
    (trunks, trunk, router)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Whether the far end closed `s` within `within` (end of stream or a
/// reset); anything it sends meanwhile is read past.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Whether `s` answers a CRLF keep-alive ping with its pong.
fn pongs(s: &mut TcpStream) -> bool {
    if s.write_all(b"\r\n\r\n").is_err() {
        return false;
    }
    let end = Instant::now() + Duration::from_secs(3);
    let mut pong = [0u8; 2];
    let mut got = 0;
    while got < 2 && Instant::now() < end {
        match s.read(&mut pong[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
    got == 2 && &pong == b"\r\n"
}

fn closed_count(router: &Router, reason: &str) -> f64 {
    let (_, text) = get(http_port(router, "metrics"), "/metrics");
    metric(
        &text,
        "sosrouter_tcp_connections_closed_total",
        &[("reason", reason)],
    )
}

fn options(s: &TcpStream, n: usize) -> String {
    let local = s.local_addr().unwrap();
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKopt{n}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p{n}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: idle-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A slow-loris connection: one byte every 500 ms, each well within the
/// idle timeout, is closed at the message deadline (1 s here), counted by
/// its reason.
#[test]
fn a_message_sent_a_byte_at_a_time_is_cut_off() {
    let (_trunks, _trunk, router) = router("[sip.tcp]\nmessage_timeout_ms = 1000\n");
    let mut s = connect(router.port);
    let text = options(&s, 1);
    let start = Instant::now();
    let mut closed = false;
    for b in text.bytes() {
        if s.write_all(&[b]).is_err() || closed_within(&mut s, Duration::from_millis(500)) {
            closed = true;
            break;
        }
    }
    let took = start.elapsed();
    assert!(closed, "the whole message went out a byte at a time");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(closed_count(&router, "message_timeout"), 1.0);
    router.wait_log("reason=\"message_timeout\"", 1, Duration::from_secs(3));
}

/// A connection that sends nothing is closed at the first-message timeout.
#[test]
fn a_connection_that_sends_nothing_is_closed() {
    let (_trunks, _trunk, router) = router("[sip.tcp]\nfirst_message_timeout_ms = 1000\n");
    let start = Instant::now();
    let mut s = connect(router.port);
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(closed_count(&router, "first_message_timeout"), 1.0);
}

/// Every slot taken by idle connections: an emergency call over a new
/// connection still gets through, and the connection least recently used
/// is closed for it.
#[test]
fn an_emergency_call_on_a_new_connection_gets_a_slot_when_all_are_taken() {
    let (_trunks, trunk, router) = router("[sip.tcp]\nmax_connections = 8\n");
    let mut idle: Vec<TcpStream> = Vec::new();
    for n in 0..8 {
        let mut s = connect(router.port);
        s.write_all(options(&s, n).as_bytes()).unwrap();
        // Each answered before the next opens: the first is the least
        // recently used.
        let mut got = String::new();
        let mut buf = [0u8; 4096];
        let end = Instant::now() + Duration::from_secs(5);
        while !got.contains("SIP/2.0 200 OK") {
            assert!(Instant::now() < end, "no 200 to OPTIONS {n}: {got:?}");
            if let Ok(k) = s.read(&mut buf) {
                got.push_str(&String::from_utf8_lossy(&buf[..k]));
            }
        }
        idle.push(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let mut caller = connect(router.port);
    let local = caller.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:911@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKslot9\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f9\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: slot-9\r\nCSeq: 1 INVITE\r\nContact: <sip:+12125550142@{local};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    );
    caller.write_all(invite.as_bytes()).unwrap();
    let fwd = trunk
        .next("INVITE", Duration::from_secs(5))
        .expect("the call reaches the trunk");
    assert!(fwd.contains("Call-ID: slot-9\r\n"), "{fwd}");
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(5);
    while !got.contains("SIP/2.0 200 OK") {
        assert!(Instant::now() < end, "no 200 OK to the caller: {got:?}");
        if let Ok(k) = caller.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..k]));
        }
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert!(closed_within(&mut idle[0], Duration::from_secs(2)));
    for (n, s) in idle.iter_mut().enumerate().skip(1) {
        assert!(pongs(s), "idle connection {n} was closed too");
    }
    assert_eq!(closed_count(&router, "evicted"), 1.0);
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from`.
fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&std::net::SocketAddr::from((from, 0)).into())
        .unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Reads an HTTP response's status line and headers off `s`.
fn http_head(s: &mut TcpStream) -> String {
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(5);
    while !got.contains("\r\n\r\n") {
        assert!(Instant::now() < end, "no HTTP answer: {got:?}");
        match s.read(&mut buf) {
            Ok(0) => panic!("closed before an answer: {got:?}"),
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    got
}

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\nmax_connections = 8\nmax_connections_per_peer = 4\nheader_read_timeout_ms = 1000\nidle_timeout_s = 3\n";

/// More idle connections than the admin listener takes: past the per-peer
/// cap they are closed at once, past the listener's cap the least
/// recently used is closed for the new one, so `/healthz` answers on a
/// fresh connection at once; what stays is closed at the header-read
/// timeout, a trickled header block too.
#[test]
fn idle_admin_connections_neither_hold_the_listener_nor_stay() {
    let (_trunks, _trunk, router) = router(ADMIN);
    let port = http_port(&router, "admin");
    let start = Instant::now();
    let mut first: Vec<TcpStream> = (0..5).map(|_| connect_from([127, 0, 0, 2], port)).collect();
    assert!(
        closed_within(&mut first[4], Duration::from_millis(500)),
        "the fifth from one address is closed at once"
    );
    let mut more: Vec<TcpStream> = (3..=4u8)
        .flat_map(|ip| (0..4).map(move |_| connect_from([127, 0, 0, ip], port)))
        .collect();
    let (status, body) = get(port, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    // The oldest, from 127.0.0.2, made room for the others and the probe.
    for (n, s) in first.iter_mut().take(4).enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(2)),
            "connection {n} from 127.0.0.2"
        );
    }
    // A header block sent a byte at a time.
    let mut slow = connect_from([127, 0, 0, 5], port);
    let slow_start = Instant::now();
    let mut slow_closed = false;
    for b in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
        if slow.write_all(&[*b]).is_err() || closed_within(&mut slow, Duration::from_millis(200)) {
            slow_closed = true;
            break;
        }
    }
    assert!(slow_closed);
    assert!(slow_start.elapsed() < Duration::from_millis(2500));
    for s in more.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(2)),
            "idle past the header-read timeout"
        );
    }
    let (_, text) = get(http_port(&router, "metrics"), "/metrics");
    let count = |name: &str, reason: &str| {
        metric(&text, name, &[("listener", "admin"), ("reason", reason)])
    };
    assert_eq!(
        count("sosrouter_http_connections_refused_total", "peer_limit"),
        1.0
    );
    assert!(
        count("sosrouter_http_connections_closed_total", "evicted") >= 4.0,
        "{text}"
    );
    assert!(
        count("sosrouter_http_connections_closed_total", "header_timeout") >= 4.0,
        "{text}"
    );
}

/// A keep-alive connection that has been answered may wait for its next
/// request longer than a header block may take, up to the idle timeout.
#[test]
fn an_answered_admin_connection_stays_until_the_idle_timeout() {
    let (_trunks, _trunk, router) = router(ADMIN);
    let port = http_port(&router, "admin");
    let mut s = connect(port);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert!(http_head(&mut s).starts_with("HTTP/1.1 200 "));
    assert!(!closed_within(&mut s, Duration::from_millis(1800)));
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert!(http_head(&mut s).starts_with("HTTP/1.1 200 "));
    let answered = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    let took = answered.elapsed();
    assert!(took >= Duration::from_millis(2800), "{took:?}");
}
