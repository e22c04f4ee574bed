//! Running it in production: metrics after real calls, readiness from trunk
//! probes, reload on SIGHUP, and the drain on SIGTERM. The real binary,
//! raw sockets and SIPp, all on loopback.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{get, http_port, metric, uac, Router, Trunks, Uas};

const HTTP: &str = r#"
[admin]
listen = "127.0.0.1:0"

[metrics]
listen = "127.0.0.1:0"
"#;

/// A trunk given by host name: its address is looked up once and reused,
/// and every call reaches it.
#[test]
fn a_trunk_given_by_name_is_looked_up_once_for_many_calls() {
    let trunk = UdpSocket::bind("127.0.0.1:0").unwrap();
    trunk
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let psap = trunk.local_addr().unwrap().port();
    let trunks = Trunks::new().with_psap(psap);
    let cfg = trunks.lab_config(HTTP).replace(
        &format!("uri = \"sip:127.0.0.1:{psap}\""),
        &format!("uri = \"sip:localhost:{psap}\""),
    );
    assert!(cfg.contains("sip:localhost:"), "{cfg}");
    let router = Router::start(&cfg, &[]);
    let mport = http_port(&router, "metrics");
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = caller.local_addr().unwrap();
    let mut buf = vec![0u8; 65536];
    for n in 0..3 {
        let req = format!(
            "INVITE sip:911@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKname{n}\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f{n}\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: name-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:+12125550142@{local}>\r\nContent-Length: 0\r\n\r\n"
        );
        caller
            .send_to(req.as_bytes(), ("127.0.0.1", router.port))
            .unwrap();
        let (len, _) = trunk
            .recv_from(&mut buf)
            .expect("the INVITE reached the trunk");
        let got = String::from_utf8_lossy(&buf[..len]);
        assert!(got.starts_with("INVITE "), "{got}");
        assert!(got.contains(&format!("Call-ID: name-{n}\r\n")), "{got}");
    }
    let (_, text) = get(mport, "/metrics");
    assert_eq!(
        metric(&text, "sosrouter_name_lookups_total", &[("result", "ok")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sosrouter_name_lookups_total",
            &[("result", "failed")]
        ),
        0.0
    );
}

#[test]
fn metrics_count_calls_failovers_and_messages() {
    let failing = Uas::start("uas_fail.xml", &[("@CODE@", "503")], false, 2);
    let screening = Uas::start("uas.xml", &[], false, 2);
    let trunks = Trunks::new()
        .with_psap(failing.port)
        .with_screening(screening.port);
    let router = Router::start(&trunks.lab_config(HTTP), &[]);
    let mport = http_port(&router, "metrics");
    let r = uac(
        "uac.xml",
        &[],
        router.port,
        "911",
        "+12125550142",
        2,
        10,
        false,
    );
    assert_eq!((r.successful, r.failed), (2, 0), "{r:?}");
    assert_eq!(failing.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(screening.wait(Duration::from_secs(10)), Some(0));
    let (code, text) = get(mport, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(&text, "sosrouter_calls_total", &[("outcome", "answered")]),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sosrouter_failovers_total",
            &[("trunk", "psap"), ("cause", "server-error")]
        ),
        2.0
    );
    assert_eq!(
        metric(&text, "sosrouter_hops_total", &[("trunk", "psap")]),
        2.0
    );
    assert_eq!(
        metric(&text, "sosrouter_hops_total", &[("trunk", "screening")]),
        2.0
    );
    // Each call: INVITE, ACK, BYE from the caller.
    assert_eq!(
        metric(
            &text,
            "sosrouter_sip_messages_received_total",
            &[("transport", "udp"), ("kind", "INVITE")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "sosrouter_sip_messages_received_total",
            &[("transport", "udp"), ("kind", "BYE")]
        ),
        2.0
    );
    assert_eq!(
        metric(&text, "sosrouter_call_setup_seconds_count", &[]),
        2.0,
        "{text}"
    );
    // Both calls under one set of labels, the second through the handle
    // the first left.
    let emergency = text
        .lines()
        .filter(|l| l.starts_with("sosrouter_emergency_calls_total{"))
        .collect::<Vec<_>>();
    assert_eq!(emergency.len(), 1, "{text}");
    assert!(
        emergency[0].contains("route=\"static\"") && emergency[0].ends_with(" 2"),
        "{text}"
    );
    assert!(metric(&text, "sosrouter_routing_decision_seconds_count", &[]) >= 2.0);
    assert_eq!(metric(&text, "sosrouter_build_info", &[]), 1.0);
    assert!(text.contains("# HELP sosrouter_failovers_total"));
}

#[test]
fn readiness_follows_the_screening_and_last_resort_probes() {
    // Trunks that answer OPTIONS or stay silent, under the test's control.
    let scr = UdpSocket::bind("127.0.0.1:0").unwrap();
    let last = UdpSocket::bind("127.0.0.1:0").unwrap();
    let extra = format!(
        "{HTTP}\n[health]\ninterval_s = 1\ntimeout_ms = 300\ndown_after = 2\nup_after = 1\n"
    );
    let trunks = Trunks::new()
        .with_screening(scr.local_addr().unwrap().port())
        .with_last_resort(last.local_addr().unwrap().port());
    let cfg = trunks
        .lab_config(&extra)
        .replace("[health]\ninterval_s = 0\n", "");
    let router = Router::start(&cfg, &[]);
    let aport = http_port(&router, "admin");
    assert_eq!(get(aport, "/healthz").0, 200);
    // Nobody answers yet: not ready.
    let (code, body) = get(aport, "/readyz");
    assert_eq!(code, 503, "{body}");
    // The screening trunk starts answering its probes.
    scr.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let end = Instant::now() + Duration::from_secs(8);
    let mut ready = false;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end && !ready {
        if let Ok((n, from)) = scr.recv_from(&mut buf) {
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            if req.starts_with("OPTIONS ") {
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                for l in req.lines().filter(|l| {
                    ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                        .iter()
                        .any(|h| l.starts_with(h))
                }) {
                    resp.push_str(l);
                    resp.push_str("\r\n");
                }
                resp.push_str("Content-Length: 0\r\n\r\n");
                scr.send_to(resp.as_bytes(), from).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        ready = get(aport, "/readyz").0 == 200;
    }
    let (code, body) = get(aport, "/readyz");
    assert_eq!(code, 200, "{body}\n{}", router.log());
    assert!(
        body.contains("\"trunk\":\"screening\",\"kind\":\"screening\",\"state\":\"up\""),
        "{body}"
    );
    // The silent trunks go down after two unanswered probes.
    let end = Instant::now() + Duration::from_secs(6);
    let mut body = body;
    while Instant::now() < end
        && !body.contains("\"trunk\":\"psap\",\"kind\":\"psap\",\"state\":\"down\"")
    {
        std::thread::sleep(Duration::from_millis(200));
        body = get(aport, "/readyz").1;
    }
    assert!(
        body.contains("\"trunk\":\"psap\",\"kind\":\"psap\",\"state\":\"down\""),
        "{body}"
    );
    router.wait_log("trunk state changed", 2, Duration::from_secs(5));
}

fn kill(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn sighup_reloads_routes_and_refuses_a_bad_file() {
    // The screening trunk answers the call once the reload moves 911 there.
    let screening = Uas::start("uas.xml", &[], false, 1);
    let trunks = Trunks::new().with_screening(screening.port);
    let dir = common::tempdir::Dir::new("reload");
    let path = dir.path().join("r.toml");
    let cfg = trunks.lab_config("");
    std::fs::write(&path, &cfg).unwrap();
    let router = Router::start(&cfg, &["--config", path.to_str().unwrap()]);
    // A broken file is refused; the running routes stay.
    std::fs::write(&path, "[sip]\nlisten = 5").unwrap();
    kill(router.pid(), "-HUP");
    router.wait_log("new configuration refused", 1, Duration::from_secs(5));
    // Now 911 goes to the screening trunk first.
    let moved = cfg.replace(
        r#"targets = ["psap", "screening", "last-resort"]"#,
        r#"targets = ["screening", "last-resort"]"#,
    );
    std::fs::write(&path, moved).unwrap();
    kill(router.pid(), "-HUP");
    router.wait_log("configuration reloaded", 1, Duration::from_secs(5));
    let r = uac(
        "uac.xml",
        &[],
        router.port,
        "911",
        "+12125550142",
        1,
        1,
        false,
    );
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}\n{}", router.log());
    assert_eq!(screening.wait(Duration::from_secs(10)), Some(0));
    assert!(!router.log().contains("trunk=psap"), "{}", router.log());
}

/// A reload reads its files off the driver: while one is stuck reading the
/// configuration (here a named pipe nobody writes to yet, as a hung
/// network mount would be), calls are still relayed; when the file comes,
/// the reload completes.
#[test]
fn calls_are_relayed_while_a_reload_is_stuck_reading_its_file() {
    let trunk = UdpSocket::bind("127.0.0.1:0").unwrap();
    trunk
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let trunks = Trunks::new().with_psap(trunk.local_addr().unwrap().port());
    let dir = common::tempdir::Dir::new("reload-stuck");
    let path = dir.path().join("r.toml");
    let cfg = trunks.lab_config("");
    std::fs::write(&path, &cfg).unwrap();
    let router = Router::start(&cfg, &["--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(made, "mkfifo");
    kill(router.pid(), "-HUP");
    router.wait_log("reloading the configuration", 1, Duration::from_secs(5));

    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = caller.local_addr().unwrap();
    let req = format!(
        "INVITE sip:911@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKstuck1\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=fs\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: stuck-1\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    caller
        .send_to(req.as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = trunk
        .recv_from(&mut buf)
        .expect("the INVITE was relayed during the reload");
    let fwd = String::from_utf8_lossy(&buf[..n]);
    assert!(fwd.contains("Call-ID: stuck-1\r\n"), "{fwd}");
    assert!(!router.log().contains("configuration reloaded"));

    // The file arrives: the reload completes.
    std::fs::write(&path, &cfg).unwrap();
    router.wait_log("configuration reloaded", 1, Duration::from_secs(5));
}

#[test]
fn sigterm_refuses_new_calls_lets_the_current_one_finish_and_exits_0() {
    let trunk = UdpSocket::bind("127.0.0.1:0").unwrap();
    trunk
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let trunks = Trunks::new().with_psap(trunk.local_addr().unwrap().port());
    let cfg = trunks.lab_config("");
    let mut router = Router::start(&cfg, &[]);
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let local = caller.local_addr().unwrap();
    let invite = |id: &str| {
        format!(
            "INVITE sip:911@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{id}\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550142@example.com>;tag=f{id}\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{local}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    caller
        .send_to(invite("drain1").as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = trunk.recv_from(&mut buf).unwrap();
    let fwd = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut head = String::new();
    for l in fwd.lines().filter(|l| {
        ["Via:", "From:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| l.starts_with(h))
    }) {
        head.push_str(l);
        head.push_str("\r\n");
    }
    head.push_str("To: <sip:911@127.0.0.1>;tag=t1\r\n");
    trunk
        .send_to(
            format!("SIP/2.0 180 Ringing\r\n{head}Content-Length: 0\r\n\r\n").as_bytes(),
            from,
        )
        .unwrap();
    kill(router.pid(), "-TERM");
    router.wait_log("shutting down", 1, Duration::from_secs(5));
    // A new call is refused so the carrier can try another router.
    caller
        .send_to(invite("drain2").as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    let mut statuses = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && !statuses.iter().any(|s: &String| s.contains("503")) {
        if let Ok((n, _)) = caller.recv_from(&mut buf) {
            statuses.push(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    assert!(
        statuses.iter().any(|s| s == "SIP/2.0 503 Shutting Down"),
        "{statuses:?}"
    );
    // The call in progress is answered and reaches the caller.
    trunk
        .send_to(
            format!(
                "SIP/2.0 200 OK\r\n{head}Contact: <sip:psap@{from}>\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
            from,
        )
        .unwrap();
    let mut answered = false;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && !answered {
        if let Ok((n, _)) = caller.recv_from(&mut buf) {
            answered = String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK");
        }
    }
    assert!(answered, "{}", router.log());
    let status = router
        .wait_exit(Duration::from_secs(10))
        .expect("router did not exit");
    assert_eq!(status, Some(0), "{}", router.log());
}

#[test]
fn sigusr1_turns_debug_logging_on_and_sigusr2_off() {
    let trunks = Trunks::new();
    let cfg = trunks.lab_config("");
    let router = Router::start(&cfg, &[]);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A response that matches no transaction is logged at debug only.
    let stray = |n: u32| {
        format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKstray{n}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", router.port)
    };
    c.send_to(stray(1).as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !router.log().contains("stray1"),
        "debug logged before SIGUSR1"
    );
    kill(router.pid(), "-USR1");
    router.wait_log(
        "log level changed to the debug level",
        1,
        Duration::from_secs(5),
    );
    c.send_to(stray(2).as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    router.wait_log("call_id=stray2", 1, Duration::from_secs(5));
    kill(router.pid(), "-USR2");
    router.wait_log(
        "log level changed to the configured level",
        1,
        Duration::from_secs(5),
    );
    c.send_to(stray(3).as_bytes(), ("127.0.0.1", router.port))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!router.log().contains("stray3"), "{}", router.log());
}
