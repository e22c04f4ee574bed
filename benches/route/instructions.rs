//! The routing phase repeated for a count of instructions under callgrind,
//! which the machine's other load does not move (docs/performance.md,
//! "PIDF-LO read"): c01's location part read COUNT times (`pidf`), or
//! c01's bytes taken to the routing decision COUNT times (`route`).
//!
//! ```sh
//! cargo build --release --example route_instructions
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/route_instructions pidf 1000
//! callgrind_annotate --inclusive=yes cg.out | grep pidf::parse
//! ```
//!
//! Divide the inclusive count of `sosrouter::pidf::parse_with` (or of the
//! emergency router's `route`) by COUNT.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use sosrouter::config::Config;
use sosrouter::emergency::detect::Countries;
use sosrouter::emergency::psap::ServiceAreas;
use sosrouter::emergency::EmergencyRouter;
use sosrouter::inventory::Inventory;
use sosrouter::proxy::{Decision, Proto, RouteContext, Router, Source};
use sosrouter::sip;

const C01: &[u8] = include_bytes!("../../tests/corpus/emergency-invites/c01-us-civic-cid.sip");

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "route".into());
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let limits = sip::Limits::default();
    match what.as_str() {
        "pidf" => {
            let msg = sip::parse_datagram(Bytes::from_static(C01), &limits).expect("parses");
            let parts = msg.body_parts().expect("multipart");
            let xml = msg.bytes_of(parts[1].body).to_vec();
            for _ in 0..count {
                let doc = sosrouter::pidf::parse(black_box(&xml)).expect("a location");
                black_box(doc);
            }
        }
        "route" => {
            let inventory = Inventory::load(
                &Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/corpus/emergency-invites/inventory.tsv"),
            )
            .expect("inventory loads");
            let mut router = EmergencyRouter::new(
                &Config::embedded(),
                Countries::shipped(),
                Arc::new(inventory),
                Arc::new(ServiceAreas::embedded().expect("data loads")),
            )
            .expect("router builds");
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
            for _ in 0..count {
                let msg = sip::parse_datagram(Bytes::from_static(black_box(C01)), &limits)
                    .expect("parses");
                let d = router.route(&msg, &ctx);
                assert!(matches!(d, Decision::Route { .. }));
                black_box(d);
            }
        }
        other => {
            eprintln!("route_instructions: pidf or route, not {other}");
            std::process::exit(2);
        }
    }
}
