//! How long one registered address change takes to reach the published
//! snapshot on a large inventory: what `PUT .../numbers/{n}/address` does
//! (`Store::set_address`, which commits and then refreshes the snapshot),
//! on a SQLite database holding N numbers (half of them taking their
//! address from a tenant location). Run on a release build:
//!
//!     cargo run --release --example inventory_change -- 100000 1000000
//!
//! Prints, per size, the time of the import (not what is measured), of the
//! first full load, of each address change (wall clock, and the CPU time
//! of the process, which a busy machine inflates less), and the process's
//! resident memory after the changes. The database is a temporary file,
//! removed at the end. `RUST_LOG=sosrouter::store=debug` shows how long
//! the store took to apply each change to the snapshot.

use std::time::Instant;

use sosrouter::config::DatabaseConfig;
use sosrouter::inventory::{Address, Capabilities, Inventory, NumberEntry, TenantLocation};
use sosrouter::pidf::CivicAddress;
use sosrouter::store::{Actor, Hub, Store};

fn address(street: &str, hno: u64) -> Address {
    let mut civic = CivicAddress::new();
    civic.push("country", "US");
    civic.push("A1", "NY");
    civic.push("A3", "New York");
    civic.push("RD", street);
    civic.push("HNO", hno.to_string());
    Address {
        civic,
        point: Some((40.75, -73.98)),
    }
}

fn inventory(n: u64) -> Inventory {
    let mut inv = Inventory::empty();
    let hq = TenantLocation {
        id: "hq".into(),
        address: address("34th", 20),
    };
    inv.add_location("acme", hq);
    for i in 0..n {
        let linked = i % 2 == 0;
        inv.insert(NumberEntry {
            number: format!("+1{}", 2_000_000_000 + i),
            tenant: "acme".into(),
            country: "US".into(),
            common_area_phone: false,
            capabilities: Capabilities {
                set_address: true,
                change_address: true,
                delete_address: true,
            },
            location_id: linked.then(|| "hq".into()),
            registered: Some(if linked {
                address("34th", 20)
            } else {
                address("Broadway", i)
            }),
        });
    }
    inv
}

/// User and system CPU time of the process so far, in seconds.
fn cpu_s() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

async fn run(n: u64) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "sosrouter-inventory-change-{}-{n}",
        std::process::id()
    ));
    let db = DatabaseConfig {
        data_dir: dir.clone(),
        ..DatabaseConfig::default()
    };
    let actor = Actor {
        name: "bench".into(),
        role: "operator",
    };
    {
        let store = Store::open(&db, Hub::new()).await?;
        let inv = inventory(n);
        let t = Instant::now();
        store.import(&inv, &actor).await?;
        println!("{n} numbers: import {:.1} s", t.elapsed().as_secs_f64());
    }
    // A fresh process's view: open and load the snapshot as a start does.
    let hub = Hub::new();
    let store = Store::open(&db, hub.clone()).await?;
    let t = Instant::now();
    store.refresh().await?;
    println!(
        "{n} numbers: first load {:.2} s, {} numbers",
        t.elapsed().as_secs_f64(),
        hub.inventory().len()
    );
    for k in 0..5u64 {
        let number = format!("+1{}", 2_000_000_000 + k * 7 + 1);
        let t = Instant::now();
        let cpu = cpu_s();
        store
            .set_address(
                "acme",
                &number,
                Some((
                    address("Lexington", 100 + k),
                    sosrouter::inventory::address_check::AddressCheck::Valid,
                )),
                &actor,
                false,
            )
            .await?;
        let took = t.elapsed();
        let cpu = cpu_s() - cpu;
        let got = hub.inventory();
        let hno = got
            .get(&number)
            .and_then(|e| e.registered)
            .and_then(|a| a.civic.get("HNO").map(str::to_string));
        anyhow::ensure!(
            hno == Some((100 + k).to_string()),
            "the change is not in the snapshot"
        );
        println!(
            "{n} numbers: address change {k}: {:.3} s, CPU {cpu:.3} s",
            took.as_secs_f64()
        );
    }
    println!("{n} numbers: resident memory {} MiB", rss_mib());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    for n in if sizes.is_empty() {
        vec![100_000]
    } else {
        sizes
    } {
        run(n).await?;
    }
    Ok(())
}
