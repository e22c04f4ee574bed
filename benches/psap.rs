//! PSAP lookup: loading the embedded data, point lookups, civic lookups.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sosrouter::emergency::psap::{CivicAddress, ServiceAreas};

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("psap_load");
    group.sample_size(10);
    group.bench_function("embedded", |b| {
        b.iter(|| ServiceAreas::embedded().expect("data loads"))
    });
    group.finish();
}

fn point(c: &mut Criterion) {
    let data = ServiceAreas::embedded().expect("data loads");
    let mut group = c.benchmark_group("psap_point");
    // inside a county (Denver)
    group.bench_function("contains", |b| {
        b.iter(|| data.lookup_point(black_box(39.7392), black_box(-104.9903)))
    });
    // in the Pacific off San Francisco: nearest county within 5 km
    group.bench_function("nearest", |b| {
        b.iter(|| data.lookup_point(black_box(37.76), black_box(-122.54)))
    });
    // Munich: no area, the country outline's default
    group.bench_function("country_default", |b| {
        b.iter(|| data.lookup_point(black_box(48.137), black_box(11.575)))
    });
    group.bench_function("country_of_point", |b| {
        b.iter(|| data.country_of_point(black_box(31.69), black_box(-106.42)))
    });
    group.finish();
}

fn civic(c: &mut Criterion) {
    let data = ServiceAreas::embedded().expect("data loads");
    let mut group = c.benchmark_group("psap_civic");
    let county = CivicAddress {
        country: "US",
        a1: "Missouri",
        a2: "St. Louis city",
        ..CivicAddress::default()
    };
    group.bench_function("county", |b| {
        b.iter(|| data.lookup_civic(black_box(&county)))
    });
    let zip = CivicAddress {
        country: "US",
        a1: "IL",
        a3: "Chicago",
        pc: "60606",
        ..CivicAddress::default()
    };
    group.bench_function("zip", |b| b.iter(|| data.lookup_civic(black_box(&zip))));
    let city = CivicAddress {
        country: "US",
        a1: "CA",
        a3: "San Francisco",
        ..CivicAddress::default()
    };
    group.bench_function("city", |b| b.iter(|| data.lookup_civic(black_box(&city))));
    group.finish();
}

criterion_group!(benches, load, point, civic);
criterion_main!(benches);
