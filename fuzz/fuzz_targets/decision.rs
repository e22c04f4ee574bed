//! The routing phase on bytes from the network, with the shipped country
//! rules and service areas: emergency detection, the location (PIDF-LO in
//! the body or fetched by reference), the rules, the PSAP lookup and the
//! additions to the forwarded INVITE; and what `inspect` prints of it.
//!
//! The first byte picks what the rest is. Even: a whole datagram. Odd: a
//! PIDF-LO document alone, which is parsed on its own, carried in the
//! emergency INVITE c01 in place of its own document, and given as the
//! document fetched for c11's location reference. The fuzzer can then
//! mutate the XML without having to keep a SIP message intact around it.

#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sosrouter::config::Config;
use sosrouter::emergency::detect::Countries;
use sosrouter::emergency::psap::ServiceAreas;
use sosrouter::emergency::EmergencyRouter;
use sosrouter::inventory::Inventory;
use sosrouter::pidf;
use sosrouter::proxy::{Proto, RouteContext, Router, Source};
use sosrouter::sip::{self, Limits, Message};

const C01: &str = include_str!("../../tests/corpus/emergency-invites/c01-us-civic-cid.sip");
const C11: &[u8] = include_bytes!("../../tests/corpus/emergency-invites/c11-geoloc-by-reference.sip");

static ROUTER: LazyLock<EmergencyRouter> = LazyLock::new(|| {
    let inventory = Inventory::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/corpus/emergency-invites/inventory.tsv"),
    )
    .expect("inventory loads");
    EmergencyRouter::new(
        &Config::embedded(),
        Countries::shipped(),
        Arc::new(inventory),
        Arc::new(ServiceAreas::embedded().expect("service areas load")),
    )
    .expect("router builds")
});

/// c01 with `doc` in place of its PIDF-LO part, Content-Length fixed.
fn in_c01(doc: &[u8]) -> Bytes {
    let start = C01.find("<?xml").expect("c01 has a document");
    let end = C01.rfind("\r\n--c01-boundary--").expect("c01 ends its body");
    let (head, body_start) = C01.split_at(C01.find("\r\n\r\n").expect("c01 has a body") + 4);
    let body_len = body_start.len() - (end - start) + doc.len();
    let cl = head.find("Content-Length: ").expect("c01 has Content-Length");
    let cl_end = cl + head[cl..].find("\r\n").unwrap();
    let mut out = Vec::with_capacity(C01.len() + doc.len());
    out.extend_from_slice(head[..cl].as_bytes());
    out.extend_from_slice(format!("Content-Length: {body_len}").as_bytes());
    out.extend_from_slice(C01[cl_end..start].as_bytes());
    out.extend_from_slice(doc);
    out.extend_from_slice(C01[end..].as_bytes());
    Bytes::from(out)
}

fn route(msg: &Message, inbound_trunk: Option<&str>, dereferenced: Option<&[u8]>) {
    let mut router = ROUTER.clone();
    let inventory = router.inventory();
    let ev = router.evaluate_with(&inventory, msg, inbound_trunk, true, dereferenced);
    for v in [ev.emergency_json(), ev.location_json(), ev.decision_json()] {
        serde_json::to_string(&v).expect("the JSON serializes");
    }
    let source = Source {
        proto: Proto::Udp,
        peer: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
        conn: None,
    };
    let ctx = RouteContext {
        source: &source,
        inbound_trunk,
        dereferenced,
        lost: None,
        wall: None,
        unique: 1,
    };
    let _ = router.route(msg, &ctx);
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let limits = Limits {
        max_message: 1 << 20,
        ..Limits::default()
    };
    let trunk = (mode & 2 == 0).then_some("carrier");
    if mode & 1 == 0 {
        if let Ok(msg) = sip::parse_datagram(Bytes::copy_from_slice(rest), &limits) {
            route(&msg, trunk, None);
        }
        return;
    }
    if let Ok(doc) = pidf::parse(rest) {
        assert!(doc.selected_index() < doc.locations().len());
        let _ = doc.entity();
        let _ = doc.selected();
    }
    if let Ok(msg) = sip::parse_datagram(in_c01(rest), &limits) {
        route(&msg, trunk, None);
    }
    let c11 = sip::parse_datagram(Bytes::from_static(C11), &limits).expect("c11 parses");
    route(&c11, trunk, Some(rest));
});
