//! LoST: reading an ECRF's answer, and finding a cached mapping again.
//!
//! The cache holds 4,096 mappings, each with a square service boundary of
//! its own (a grid over the continental US); a lookup is by the exact point
//! asked before, by a point inside one of the boundaries (the R-tree of
//! the boundaries' boxes, then the polygon whose box holds the point), or
//! by a point in none of them (a miss).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sosrouter::lost::{read_response, Boundary, Cache, CacheKey, Expires, Mapping};
use sosrouter::pidf::{Position, Shape};
use time::macros::datetime;

const SERVICE: &str = "urn:service:sos";
const ENTRIES: usize = 4096;

fn p(lat: f64, lon: f64) -> Position {
    Position {
        lat,
        lon,
        alt: None,
    }
}

/// Cell `i` of a 64 x 64 grid of 0.4 degree squares from (25, -124).
fn cell(i: usize) -> (f64, f64) {
    (25.0 + (i / 64) as f64 * 0.4, -124.0 + (i % 64) as f64 * 0.4)
}

fn mapping(i: usize) -> Mapping {
    let (lat, lon) = cell(i);
    let s = 0.4;
    Mapping {
        expires: Expires::At(datetime!(2030-01-01 00:00:00 UTC)),
        last_updated: None,
        source: "ecrf.example".into(),
        source_id: format!("m{i}"),
        display_names: vec![],
        service: SERVICE.into(),
        boundary: Some(Boundary {
            geodetic: vec![Shape::Polygon {
                exterior: vec![
                    p(lat, lon),
                    p(lat + s, lon),
                    p(lat + s, lon + s),
                    p(lat, lon + s),
                    p(lat, lon),
                ],
            }],
            ..Boundary::default()
        }),
        boundary_reference: None,
        uris: vec![format!("sip:psap{i}@example.net")],
        other_uris: vec![],
        service_number: Some("911".into()),
    }
}

fn cache(c: &mut Criterion) {
    let now = datetime!(2026-12-07 12:00:00 UTC);
    let mut cache = Cache::new(ENTRIES);
    for i in 0..ENTRIES {
        let (lat, lon) = cell(i);
        cache.insert(
            CacheKey::point(SERVICE, lat + 0.2, lon + 0.2),
            Arc::new(mapping(i)),
            now,
        );
    }
    let mut group = c.benchmark_group("lost_cache");
    let (lat, lon) = cell(2000);
    group.bench_function("same_point", |b| {
        b.iter(|| cache.lookup_point(SERVICE, black_box(lat + 0.2), black_box(lon + 0.2), now))
    });
    group.bench_function("inside_boundary", |b| {
        b.iter(|| cache.lookup_point(SERVICE, black_box(lat + 0.1), black_box(lon + 0.3), now))
    });
    group.bench_function("miss", |b| {
        b.iter(|| cache.lookup_point(SERVICE, black_box(60.0), black_box(10.0), now))
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let doc = include_bytes!("../tests/lost/rfc5222-find-service-response-geodetic.xml");
    c.bench_function("lost_read_find_service_response", |b| {
        b.iter(|| read_response(black_box(doc)).expect("reads"))
    });
}

criterion_group!(benches, cache, read);
criterion_main!(benches);
