//! The proxy end to end: SIPp callers and trunks through the real router
//! binary on loopback, over UDP and TCP.

mod common;

use std::time::Duration;

use common::{uac, Router, Trunks, Uas};

const CALLER: &str = "+12125550142";

#[test]
fn basic_call_over_udp() {
    let uas = Uas::start("uas.xml", &[], false, 3);
    let trunks = Trunks::new().with_psap(uas.port);
    let router = Router::start(&trunks.lab_config(""), &[]);
    let r = uac("uac.xml", &[], router.port, "911", CALLER, 3, 10, false);
    assert_eq!((r.successful, r.failed), (3, 0), "{r:?}\n{}", router.log());
    assert_eq!(uas.wait(Duration::from_secs(10)), Some(0));
    router.wait_log("answered", 3, Duration::from_secs(2));
    // Each call's lines carry its span: Call-ID, route and reason.
    let log = router.log();
    let hop = log.lines().find(|l| l.contains("forwarding")).unwrap();
    assert!(
        hop.contains("call{call_id=") && hop.contains("reason=\"static-route\""),
        "{hop}"
    );
}

#[test]
fn basic_call_over_tcp() {
    let uas = Uas::start("uas.xml", &[], false, 3);
    let trunks = Trunks::new().with_psap(uas.port);
    let router = Router::start(&trunks.lab_config(""), &[]);
    let r = uac("uac.xml", &[], router.port, "911", CALLER, 3, 10, true);
    assert_eq!((r.successful, r.failed), (3, 0), "{r:?}\n{}", router.log());
    assert_eq!(uas.wait(Duration::from_secs(10)), Some(0));
}

/// One call through the router between the caller scenario `uac` (over TCP
/// or UDP) and the PSAP scenario `uas` (over UDP, as the lab trunks are):
/// both must complete two calls.
fn call_flow(uac_file: &str, uas_file: &str, tcp: bool) {
    let uas = Uas::start(uas_file, &[], false, 2);
    let trunks = Trunks::new().with_psap(uas.port);
    let router = Router::start(&trunks.lab_config(""), &[]);
    let r = uac(uac_file, &[], router.port, "911", CALLER, 2, 10, tcp);
    assert_eq!((r.successful, r.failed), (2, 0), "{r:?}\n{}", router.log());
    assert_eq!(
        uas.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        router.log()
    );
}

/// A mobile network's emergency call (IMS): a reliable 183 acknowledged with
/// PRACK, an UPDATE within the early dialog, the answer, and the PSAP hanging
/// up. Every request after the INVITE is routed by its Route set alone.
#[test]
fn reliable_provisionals_an_update_and_the_psap_hanging_up_over_udp() {
    call_flow("uac_prack.xml", "uas_prack.xml", false);
}

#[test]
fn reliable_provisionals_an_update_and_the_psap_hanging_up_over_tcp() {
    call_flow("uac_prack.xml", "uas_prack.xml", true);
}

/// The PSAP puts the caller on hold: its re-INVITE goes back to the caller
/// through the router (which answers it 100 Trying and relays the 200), its
/// ACK follows the route set; then the caller sends INFO and hangs up.
#[test]
fn the_psap_holds_the_caller_with_a_reinvite_then_info_and_bye_over_udp() {
    call_flow("uac_reinvite.xml", "uas_reinvite.xml", false);
}

#[test]
fn the_psap_holds_the_caller_with_a_reinvite_then_info_and_bye_over_tcp() {
    call_flow("uac_reinvite.xml", "uas_reinvite.xml", true);
}

#[test]
fn cancel_during_ringing() {
    let uas = Uas::start("uas_ring.xml", &[], false, 2);
    let trunks = Trunks::new().with_psap(uas.port);
    let router = Router::start(&trunks.lab_config(""), &[]);
    let r = uac(
        "uac_cancel.xml",
        &[],
        router.port,
        "911",
        CALLER,
        2,
        10,
        false,
    );
    assert_eq!((r.successful, r.failed), (2, 0), "{r:?}\n{}", router.log());
    assert_eq!(
        uas.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        router.log()
    );
    router.wait_log("cancelled by the caller", 2, Duration::from_secs(2));
}

#[test]
fn first_target_503_then_second_answers() {
    let failing = Uas::start("uas_fail.xml", &[("@CODE@", "503")], false, 2);
    let screening = Uas::start("uas.xml", &[], false, 2);
    let trunks = Trunks::new()
        .with_psap(failing.port)
        .with_screening(screening.port);
    let router = Router::start(&trunks.lab_config(""), &[]);
    let r = uac("uac.xml", &[], router.port, "911", CALLER, 2, 10, false);
    assert_eq!((r.successful, r.failed), (2, 0), "{r:?}\n{}", router.log());
    assert_eq!(failing.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(screening.wait(Duration::from_secs(10)), Some(0));
    router.wait_log(
        "target failed; trying the next one",
        2,
        Duration::from_secs(2),
    );
}

#[test]
fn first_target_silent_then_second_answers_within_the_no_answer_timer() {
    let screening = Uas::start("uas.xml", &[], false, 1);
    // Nothing listens on the PSAP port: the INVITE gets no answer at all.
    let trunks = Trunks::new().with_screening(screening.port);
    let router = Router::start(&trunks.lab_config(""), &[]);
    let r = uac("uac.xml", &[], router.port, "911", CALLER, 1, 1, false);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}\n{}", router.log());
    assert_eq!(screening.wait(Duration::from_secs(10)), Some(0));
    router.wait_log(
        "no provisional response; trying the next target",
        1,
        Duration::from_secs(1),
    );
    // The no-answer timer is 1.5 s in the test config: the call completes
    // long before SIP's 32 s Timer B would have fired.
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
}

#[test]
fn every_trunk_down_the_last_resort_is_tried() {
    let p = Uas::start("uas_fail.xml", &[("@CODE@", "503")], false, 1);
    let s = Uas::start("uas_fail.xml", &[("@CODE@", "500")], false, 1);
    let l = Uas::start("uas.xml", &[], false, 1);
    let trunks = Trunks::new()
        .with_psap(p.port)
        .with_screening(s.port)
        .with_last_resort(l.port);
    let router = Router::start(&trunks.lab_config(""), &[]);
    let r = uac("uac.xml", &[], router.port, "911", CALLER, 1, 1, false);
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}\n{}", router.log());
    for u in [p, s, l] {
        assert_eq!(u.wait(Duration::from_secs(10)), Some(0));
    }
}

#[test]
fn a_60_kb_invite_over_tcp() {
    // The forwarded INVITE is far over 1300 bytes, so it leaves over TCP.
    let uas = Uas::start("uas.xml", &[], true, 1);
    let trunks = Trunks::new().with_psap(uas.port);
    let router = Router::start(&trunks.lab_config(""), &[]);
    let pad: String = (0..600)
        .map(|i| format!("a=x-pad-{i:04}:{}\n", "p".repeat(84)))
        .collect();
    let r = uac(
        "uac.xml",
        &[(
            "a=rtpmap:0 PCMU/8000\n",
            &format!("a=rtpmap:0 PCMU/8000\n{pad}"),
        )],
        router.port,
        "911",
        CALLER,
        1,
        1,
        true,
    );
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}\n{}", router.log());
    assert_eq!(uas.wait(Duration::from_secs(10)), Some(0));
    router.wait_log("transport=\"TCP\"", 1, Duration::from_secs(5));
}
