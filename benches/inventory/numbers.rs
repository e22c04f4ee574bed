//! What checking a number costs per row of an upload: 100,000 US numbers
//! (real area codes and exchanges) through `check_number`, as written in
//! E.164 and in a national form, after one warm-up number (the metadata
//! is read on first use).
//!
//! `cargo run --release --example inventory_numbers [COUNT]`

use std::time::Instant;

use sosrouter::inventory::number::check_number;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let npas = ["212", "303", "415", "617", "713", "312", "206", "404"];
    let numbers: Vec<String> = (0..count)
        .map(|i| {
            let npa = npas[i % npas.len()];
            format!("+1{npa}{}{:04}", 200 + (i / 10_000) % 700, i % 10_000)
        })
        .collect();
    let t = Instant::now();
    check_number("+13035550117", Some("US")).expect("a valid number");
    println!("first number (reads the metadata): {:?}", t.elapsed());
    for (form, inputs) in [
        ("E.164", numbers.clone()),
        (
            "national (303) 555-0117",
            numbers
                .iter()
                .map(|n| format!("({}) {}-{}", &n[2..5], &n[5..8], &n[8..]))
                .collect(),
        ),
    ] {
        let t = Instant::now();
        let mut valid = 0;
        for n in &inputs {
            if check_number(n, Some("US")).is_ok() {
                valid += 1;
            }
        }
        let e = t.elapsed();
        println!(
            "{form}: {count} numbers in {e:?}, {:.2} µs each ({valid} valid)",
            e.as_secs_f64() * 1e6 / count as f64
        );
    }
}
