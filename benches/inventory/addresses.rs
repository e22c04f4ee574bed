//! What checking a registered address costs per row of an upload: COUNT US
//! addresses (the shape `benches/inventory/gen.py` writes: a street and
//! house number of their own in one of a few hundred city and ZIP code
//! pairs) through the rules every upload row goes through
//! (`AddressRules::check`: the elements the country requires, then the
//! gazetteer), after one warm-up address (the service-area data is read on
//! first use).
//!
//! `cargo run --release --example inventory_addresses [COUNT]`

use std::time::Instant;

use sosrouter::inventory::Address;
use sosrouter::pidf::CivicAddress;
use sosrouter::store::address::AddressRules;

/// (state, city, ZIP code) of real places in the gazetteer.
const PLACES: &[(&str, &str, &str)] = &[
    ("NY", "New York", "10001"),
    ("CO", "Denver", "80203"),
    ("CA", "San Francisco", "94102"),
    ("MA", "Boston", "02116"),
    ("TX", "Houston", "77002"),
    ("IL", "Chicago", "60606"),
    ("WA", "Seattle", "98101"),
    ("FL", "Miami", "33131"),
    ("TX", "Austin", "78701"),
    ("AZ", "Phoenix", "85004"),
];

const STREETS: &[(&str, &str)] = &[
    ("Main", "St"),
    ("Oak", "Ave"),
    ("Maple", "Dr"),
    ("Cedar", "Ln"),
    ("Pine", "Rd"),
];

fn address(i: usize) -> Address {
    let (a1, a3, pc) = PLACES[i % PLACES.len()];
    let (rd, sts) = STREETS[(i / PLACES.len()) % STREETS.len()];
    let mut civic = CivicAddress::new();
    civic.push("country", "US");
    civic.push("A1", a1);
    civic.push("A3", a3);
    civic.push("RD", rd);
    civic.push("STS", sts);
    civic.push("HNO", (1 + i % 9_973).to_string());
    civic.push("PC", pc);
    Address { civic, point: None }
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let rules = AddressRules::of_admin(None);
    let addresses: Vec<Address> = (0..count).map(address).collect();
    let t = Instant::now();
    let first = rules.check(&addresses[0]).expect("kept");
    println!(
        "first address (reads the service-area data): {:?}, {}",
        t.elapsed(),
        first.state()
    );
    let t = Instant::now();
    let mut valid = 0;
    for a in &addresses {
        if rules.check(a).is_ok_and(|c| c.state() == "valid") {
            valid += 1;
        }
    }
    let e = t.elapsed();
    println!(
        "{count} addresses in {e:?}, {:.2} µs each ({valid} valid)",
        e.as_secs_f64() * 1e6 / count as f64
    );
}
