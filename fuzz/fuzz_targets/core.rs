//! The proxy core, without sockets, on a sequence of datagrams from the
//! network: a caller, the PSAP and screening trunks and a stranger on
//! loopback addresses, the shipped configuration and routing data, a
//! simulated clock, every timer fired at the end.
//!
//! The input is datagrams separated by two NUL bytes. Each starts with one
//! byte: its two low bits pick the sender, the rest how far the clock moves
//! before it arrives (in steps of 100 ms). A response from a trunk with no
//! Via of its own gets those of the last request the router sent it.
//! Whatever the input, nothing
//! panics and every request the router sends is one a SIP peer accepts; so
//! is every response, as long as every message it was given was well
//! formed (a response copies To, From and Call-ID from its request, and a
//! fault there, which an emergency INVITE may carry, stays in it).

#![no_main]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sosrouter::config::Config;
use sosrouter::emergency::detect::Countries;
use sosrouter::emergency::psap::ServiceAreas;
use sosrouter::emergency::EmergencyRouter;
use sosrouter::inventory::Inventory;
use sosrouter::proxy::{Core, CoreConfig, Proto, Source, Target};
use sosrouter::sip::{self, Limits};

static CONFIG: LazyLock<Config> = LazyLock::new(Config::embedded);

static ROUTER: LazyLock<EmergencyRouter> = LazyLock::new(|| {
    let inventory = Inventory::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/corpus/emergency-invites/inventory.tsv"),
    )
    .expect("inventory loads");
    EmergencyRouter::new(
        &CONFIG,
        Countries::shipped(),
        Arc::new(inventory),
        Arc::new(ServiceAreas::embedded().expect("service areas load")),
    )
    .expect("router builds")
});

const LOCAL: &str = "127.0.0.1:5060";
const PEERS: [&str; 4] = [
    "127.0.0.1:5061",  // a caller, inside the carrier trunk's sources
    "127.0.0.1:5070",  // the PSAP trunk
    "127.0.0.1:5080",  // the screening trunk
    "192.0.2.66:5060", // a stranger
];

fn split(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = input;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = separator(rest).unwrap_or(rest.len());
        let chunk = &rest[..end];
        rest = rest.get(end + 2..).unwrap_or_default();
        Some(chunk)
    })
}

fn separator(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == [0, 0])
}

fuzz_target!(|input: &[u8]| {
    let local: SocketAddr = LOCAL.parse().unwrap();
    let mut core = Core::new(
        CoreConfig::from_config(&CONFIG, vec![local], 7),
        Box::new(ROUTER.clone()),
    );
    let limits = Limits::default();
    let roomy = Limits {
        max_message: 1 << 20,
        ..Limits::default()
    };
    let start = Instant::now();
    let mut now = start;
    let mut well_formed = true;
    // The Via lines of the last request the router sent to each peer.
    let mut vias: [Vec<u8>; PEERS.len()] = Default::default();
    let check = |core: &mut Core, well_formed: bool, vias: &mut [Vec<u8>; PEERS.len()]| {
        while let Some(t) = core.poll_transmit() {
            if t.bytes.iter().all(|&b| matches!(b, b'\r' | b'\n' | 0)) {
                continue;
            }
            let response = t.bytes.starts_with(b"SIP/2.0 ");
            if !response {
                if let Some(i) = PEERS
                    .iter()
                    .position(|p| t.dest.target == Target::Addr(p.parse().unwrap()))
                {
                    vias[i] = via_lines(&t.bytes);
                }
            }
            if !well_formed && response {
                continue;
            }
            if let Err(e) = sip::receive(t.bytes.clone(), false, &roomy) {
                panic!(
                    "the router sent a message no peer accepts ({}):\n{}",
                    e.reason(),
                    String::from_utf8_lossy(&t.bytes)
                );
            }
        }
    };
    for chunk in split(input).take(16) {
        let Some((&head, datagram)) = chunk.split_first() else {
            continue;
        };
        now += Duration::from_millis(100 * u64::from(head >> 2));
        if core.next_deadline().is_some_and(|d| d <= now) {
            core.handle_timeout(now);
        }
        let peer = usize::from(head & 3);
        let source = Source {
            proto: Proto::Udp,
            peer: PEERS[peer].parse().unwrap(),
            local,
            conn: None,
        };
        // A response with no Via gets those of the last request sent to its
        // sender, so that the fuzzer reaches the transactions' answers
        // without guessing the router's branches.
        let datagram = with_vias(datagram, &vias[peer]);
        if let Ok(msg) = sip::receive(datagram, false, &limits) {
            well_formed &= msg.fault().is_none();
            core.handle_message(now, msg, source);
        }
        check(&mut core, well_formed, &mut vias);
    }
    // Every timer of every transaction, up to Timer M's 32 s and beyond.
    let end = now + Duration::from_secs(70);
    while let Some(d) = core.next_deadline().filter(|&d| d <= end) {
        now = now.max(d);
        core.handle_timeout(now);
        check(&mut core, well_formed, &mut vias);
    }
});

fn via_lines(msg: &[u8]) -> Vec<u8> {
    let head = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(msg, |n| &msg[..n]);
    let mut out = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        if line.starts_with(b"Via:") || line.starts_with(b"v:") {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

fn with_vias(datagram: &[u8], vias: &[u8]) -> Bytes {
    let status_line_end = datagram.iter().position(|&b| b == b'\n');
    match status_line_end {
        Some(n)
            if datagram.starts_with(b"SIP/2.0 ")
                && !vias.is_empty()
                && !datagram.windows(5).any(|w| w == b"\nVia:") =>
        {
            let mut out = Vec::with_capacity(datagram.len() + vias.len());
            out.extend_from_slice(&datagram[..=n]);
            out.extend_from_slice(vias);
            out.extend_from_slice(&datagram[n + 1..]);
            Bytes::from(out)
        }
        _ => Bytes::copy_from_slice(datagram),
    }
}
