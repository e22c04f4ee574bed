//! Memory of the inventory snapshot per number, and the cost of one
//! change: `cargo bench --bench inventory_memory` (N numbers, default
//! 1,000,000: `INVENTORY_NUMBERS=10000000 cargo bench --bench
//! inventory_memory`). Each number has a street address of its own, as
//! residential lines do; one in eight shares its tenant location's.
//! The figure is the growth of the process's resident memory (VmRSS)
//! while the snapshot is built, divided by N.

use std::time::Instant;

use sosrouter::inventory::{
    Address, Capabilities, Changes, Inventory, NumberEntry, TenantLocation,
};
use sosrouter::pidf::CivicAddress;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

const STREETS: [&str; 8] = [
    "Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Lake", "Hill",
];
const CITIES: [(&str, &str, &str); 4] = [
    ("NY", "New York", "100"),
    ("CA", "Los Angeles", "900"),
    ("IL", "Chicago", "606"),
    ("TX", "Houston", "770"),
];

fn address(i: u64) -> Address {
    let (state, city, zip) = CITIES[(i % 4) as usize];
    let mut civic = CivicAddress::new();
    civic.push("country", "US");
    civic.push("A1", state);
    civic.push("A3", city);
    civic.push("RD", STREETS[(i / 4 % 8) as usize]);
    civic.push("STS", "St");
    civic.push("HNO", (i % 9973 + 1).to_string());
    civic.push("PC", format!("{zip}{:02}", i % 97));
    Address { civic, point: None }
}

fn entry(i: u64) -> NumberEntry {
    let tenant = format!("tenant-{}", i % 5000);
    let shared = i.is_multiple_of(8);
    NumberEntry {
        number: format!("+1{}", 2_000_000_000 + i),
        tenant,
        country: "US".into(),
        common_area_phone: false,
        capabilities: Capabilities {
            set_address: true,
            change_address: true,
            delete_address: false,
        },
        location_id: shared.then(|| "hq".to_string()),
        registered: Some(if shared {
            address(i % 5000)
        } else {
            address(i)
        }),
    }
}

fn main() {
    let n: u64 = std::env::var("INVENTORY_NUMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_kib();
    let start = Instant::now();
    let mut inv = Inventory::empty();
    for t in 0..5000 {
        inv.add_location(
            &format!("tenant-{t}"),
            TenantLocation {
                id: "hq".into(),
                address: address(t),
            },
        );
    }
    for i in 0..n {
        inv.insert(entry(i));
    }
    let built = start.elapsed();
    let after = rss_kib();
    let per_number = (after.saturating_sub(before) as f64 * 1024.0) / n as f64;
    println!(
        "inventory_memory: {n} numbers built in {:.1} s; RSS {} -> {} MiB: {per_number:.0} bytes per number",
        built.as_secs_f64(),
        before / 1024,
        after / 1024
    );
    // One change: a new snapshot with one address changed.
    let mut times: Vec<f64> = (0..1000u64)
        .map(|k| {
            let mut e = entry(k * 997 % n);
            e.registered = Some(address(k + n));
            let t = Instant::now();
            let next = inv.with_changes(&Changes {
                numbers: vec![e],
                ..Changes::default()
            });
            let took = t.elapsed().as_secs_f64() * 1e6;
            std::hint::black_box(next.len());
            took
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "inventory_memory: one address change as a new snapshot: median {:.0} us, p99 {:.0} us (1000 changes)",
        times[500], times[990]
    );
    let t = Instant::now();
    let mut found = 0;
    for i in 0..100_000u64 {
        found += usize::from(
            inv.get(&format!("+1{}", 2_000_000_000 + i * 7 % n))
                .is_some(),
        );
    }
    println!(
        "inventory_memory: lookup and unpack: {:.2} us each ({found} found)",
        t.elapsed().as_secs_f64() * 1e6 / 100_000.0
    );
}
