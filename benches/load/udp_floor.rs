//! The floor of the load benchmark: a bare UDP forwarder, the least any
//! relay can do on the rig. It parses nothing. Each datagram from a
//! caller's port goes out unchanged to its pair's trunk port, and each
//! datagram from a trunk's port back to its caller, from one socket and one
//! blocking loop. `benches/load.sh --relay floor` runs it in the router's
//! place; `bash benches/load.sh --compare` sets its cost per call beside the
//! router's and Kamailio's (docs/performance.md).
//!
//! ```text
//! udp_floor LISTEN_ADDR CALLER_PORT:TRUNK_PORT [CALLER_PORT:TRUNK_PORT ...]
//! udp_floor 127.0.0.1:20000 20011:20001 20012:20002
//! ```
//!
//! Callers and trunks are addressed at the listen address's IP. A datagram
//! from any other port is dropped. Errors of a single receive or send (an
//! ICMP port unreachable reported on the socket, a full buffer) are
//! counted, not fatal. It runs until a signal ends it (SIGTERM's default
//! action).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;

const USAGE: &str =
    "usage: udp_floor LISTEN_ADDR CALLER_PORT:TRUNK_PORT [CALLER_PORT:TRUNK_PORT ...]
  e.g. udp_floor 127.0.0.1:20000 20011:20001 20012:20002
  Forwards each UDP datagram, unchanged, from a caller's port to its trunk's
  port and from a trunk's port to its caller's, all at LISTEN_ADDR's IP.";

/// Where a datagram from each source port goes.
struct Config {
    listen: SocketAddr,
    next_hop: HashMap<u16, SocketAddr>,
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("not a port (1-65535): {s:?}")),
        Ok(p) => Ok(p),
    }
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let (listen, pairs) = match args {
        [listen, pairs @ ..] if !pairs.is_empty() => (listen, pairs),
        _ => return Err("needs a listen address and at least one port pair".into()),
    };
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("not an IP:port listen address: {listen:?}"))?;
    let ip: IpAddr = listen.ip();
    if ip.is_unspecified() {
        return Err(format!(
            "the listen address must name an IP, since callers and trunks are addressed at it: {listen}"
        ));
    }
    let mut next_hop = HashMap::new();
    for pair in pairs {
        let (caller, trunk) = pair
            .split_once(':')
            .ok_or_else(|| format!("not CALLER_PORT:TRUNK_PORT: {pair:?}"))?;
        let (caller, trunk) = (parse_port(caller)?, parse_port(trunk)?);
        if caller == trunk || caller == listen.port() || trunk == listen.port() {
            return Err(format!(
                "a pair's ports must differ from each other and from the listen port: {pair:?}"
            ));
        }
        for port in [caller, trunk] {
            if next_hop.contains_key(&port) {
                return Err(format!("port {port} is in more than one pair"));
            }
        }
        next_hop.insert(caller, SocketAddr::new(ip, trunk));
        next_hop.insert(trunk, SocketAddr::new(ip, caller));
    }
    Ok(Config { listen, next_hop })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let cfg = match parse_args(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("udp_floor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let socket = match UdpSocket::bind(cfg.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp_floor: cannot bind {}: {e}", cfg.listen);
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "udp_floor: forwarding on {} for {} ports",
        cfg.listen,
        cfg.next_hop.len()
    );
    // The largest UDP payload: nothing is cut short.
    let mut buf = vec![0u8; 65_535];
    let (mut unknown, mut recv_errors, mut send_errors) = (0u64, 0u64, 0u64);
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => {
                // Also the ICMP errors of earlier sends (ECONNREFUSED).
                recv_errors += 1;
                if recv_errors.is_power_of_two() {
                    eprintln!("udp_floor: receive error ({recv_errors} so far): {e}");
                }
                continue;
            }
        };
        let Some(to) = cfg
            .next_hop
            .get(&from.port())
            .filter(|_| from.ip() == cfg.listen.ip())
        else {
            unknown += 1;
            if unknown.is_power_of_two() {
                eprintln!("udp_floor: dropped a datagram from {from} ({unknown} so far): not a caller or trunk");
            }
            continue;
        };
        if let Err(e) = socket.send_to(&buf[..len], to) {
            send_errors += 1;
            if send_errors.is_power_of_two() {
                eprintln!("udp_floor: send error to {to} ({send_errors} so far): {e}");
            }
        }
    }
}
