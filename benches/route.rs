//! The routing phase end to end: the bytes of an emergency INVITE to the
//! proxy's decision (SIP parse, multipart, PIDF-LO, inventory, rules, PSAP
//! lookup, augmentation), a call that is no emergency, and loading the
//! embedded service areas; and a call routed on a cached LoST mapping.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sosrouter::config::Config;
use sosrouter::emergency::detect::Countries;
use sosrouter::emergency::psap::ServiceAreas;
use sosrouter::emergency::EmergencyRouter;
use sosrouter::inventory::Inventory;
use sosrouter::lost;
use sosrouter::proxy::{Decision, LostAnswer, Proto, RouteContext, Router, Source};
use sosrouter::sip;

const C01: &[u8] = include_bytes!("../tests/corpus/emergency-invites/c01-us-civic-cid.sip");
const C02: &[u8] = include_bytes!("../tests/corpus/emergency-invites/c02-us-geo-point.sip");

fn router() -> EmergencyRouter {
    router_with(&Config::embedded())
}

fn router_with(config: &Config) -> EmergencyRouter {
    let inventory = Inventory::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/emergency-invites/inventory.tsv"),
    )
    .expect("inventory loads");
    EmergencyRouter::new(
        config,
        Countries::shipped(),
        Arc::new(inventory),
        Arc::new(ServiceAreas::embedded().expect("data loads")),
    )
    .expect("router builds")
}

fn route(c: &mut Criterion) {
    let mut router = router();
    let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let source = Source {
        proto: Proto::Udp,
        peer: addr,
        local: "127.0.0.1:5060".parse().unwrap(),
        conn: None,
    };
    let ctx = RouteContext {
        source: &source,
        inbound_trunk: Some("carrier"),
        dereferenced: None,
        lost: None,
        wall: None,
        unique: 1,
    };
    let limits = sip::Limits::default();
    let mut decide = |bytes: &'static [u8]| {
        let msg = sip::parse_datagram(Bytes::from_static(bytes), &limits).expect("parses");
        router.route(&msg, &ctx)
    };
    assert!(matches!(
        decide(C01),
        Decision::Route {
            reason: "screening-untrusted-location",
            ..
        }
    ));
    let plain: &'static [u8] = Box::leak(
        String::from_utf8_lossy(C01)
            .replacen("INVITE sip:911@", "INVITE sip:+12125550100@", 1)
            .into_bytes()
            .into_boxed_slice(),
    );
    assert!(matches!(decide(plain), Decision::Reject { .. }));

    let mut group = c.benchmark_group("route");
    group.bench_function("c01_bytes_to_decision", |b| {
        b.iter(|| decide(black_box(C01)))
    });
    group.bench_function("c02_bytes_to_decision", |b| {
        b.iter(|| decide(black_box(C02)))
    });
    // The share of the PIDF-LO parser in c01: its location part alone.
    let msg = sip::parse_datagram(Bytes::from_static(C01), &limits).expect("parses");
    let parts = msg.body_parts().expect("multipart");
    let xml = msg.bytes_of(parts[1].body).to_vec();
    group.bench_function("c01_pidf_part_parse", |b| {
        b.iter(|| sosrouter::pidf::parse(black_box(&xml)))
    });
    group.bench_function("not_emergency_bytes_to_reject", |b| {
        b.iter(|| decide(black_box(plain)))
    });
    group.finish();
}

/// c02 in a country with an ECRF, its mapping cached: the decision as a
/// call in a place the ECRF answered for recently gets it (the cache
/// lookup, the mapping's URI put first), with no query.
fn route_lost_cache(c: &mut Criterion) {
    let mut config = Config::embedded();
    config.emergency.lost.ecrf = Some("https://ecrf.example/lost".into());
    let mut router = router_with(&config);
    let source = Source {
        proto: Proto::Udp,
        peer: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
        conn: None,
    };
    let now = time::OffsetDateTime::now_utc();
    let mapping = lost::Mapping {
        expires: lost::Expires::At(now + time::Duration::days(1)),
        last_updated: None,
        source: "ecrf.example".into(),
        source_id: "1".into(),
        display_names: vec![],
        service: lost::DEFAULT_SERVICE.into(),
        boundary: None,
        boundary_reference: None,
        uris: vec!["sip:county@psap.ecrf.example".into()],
        other_uris: vec![],
        service_number: None,
    };
    let answer = lost::write::find_service_response(&[mapping], &["ecrf.example".into()], None);
    let limits = sip::Limits::default();
    let mut decide = |bytes: &'static [u8], lost: Option<LostAnswer<'_>>| {
        let msg = sip::parse_datagram(Bytes::from_static(bytes), &limits).expect("parses");
        let ctx = RouteContext {
            source: &source,
            inbound_trunk: Some("carrier"),
            dereferenced: None,
            lost,
            wall: Some(now),
            unique: 1,
        };
        match router.route(&msg, &ctx) {
            Decision::Route { details, .. } => details.and_then(|d| d.psap_decided_by),
            _ => None,
        }
    };
    assert_eq!(
        decide(C02, Some(LostAnswer::Body(answer.as_bytes()))),
        Some("lost")
    );
    assert_eq!(decide(C02, None), Some("lost-cache"));
    let mut group = c.benchmark_group("route");
    group.bench_function("c02_bytes_to_decision_lost_cache", |b| {
        b.iter(|| decide(black_box(C02), None))
    });
    group.finish();
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_load");
    group.sample_size(10);
    group.bench_function("service_areas_embedded", |b| {
        b.iter(|| ServiceAreas::embedded().expect("data loads"))
    });
    group.finish();
}

criterion_group!(benches, route, route_lost_cache, load);
criterion_main!(benches);
