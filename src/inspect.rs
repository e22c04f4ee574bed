//! `sosrouter inspect`: what the router makes of a message, as one JSON
//! object per file. Field names are stable; scripts rely on them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::config::{Config, RoutingMode};
use crate::emergency::EmergencyRouter;
use crate::proxy::{
    CallEvent, ConnId, Core, CoreConfig, Proto, Router, Source, StaticRouter, Target,
};
use crate::sip::{self, text::lossy, HeaderName, Message, ParseError, Status};

/// The `inspect` command: builds the routing phase `config` runs with (the
/// emergency router, its inventory replaced by `inventory` when given, or
/// the static table when `routing.mode = "static"`), then prints
/// [`describe_with_router`] of each file on stdout, one JSON object a line,
/// in order, as if the messages came from `from` (default:
/// [`default_source`]). A file that cannot be read is named on stderr and
/// the others still run.
///
/// Returns how many files could not be read, or why the router could not
/// be built (nothing is printed then).
pub fn run(
    config: &Config,
    inventory: Option<&Path>,
    from: Option<SocketAddr>,
    stream: bool,
    files: &[PathBuf],
) -> Result<usize, String> {
    let emergency = EmergencyRouter::from_config(config, inventory)?;
    let ins = Inspector {
        config,
        emergency: &emergency,
        source: from.unwrap_or_else(|| default_source(config)),
    };
    let mut unreadable = 0;
    for f in files {
        let name = f.display().to_string();
        match std::fs::read(f) {
            Ok(data) => println!("{}", describe_with_router(&name, data.into(), stream, &ins)),
            Err(e) => {
                eprintln!("sosrouter: {name}: {e}");
                unreadable += 1;
            }
        }
    }
    Ok(unreadable)
}

/// Parses one file's bytes as a datagram (or as stream bytes) and describes
/// the result: the message-layer fields only.
pub fn describe(file: &str, data: Bytes, stream: bool) -> Value {
    describe_inner(file, data, stream, None)
}

/// What `inspect` runs a message through: the configuration, its
/// emergency router (for the decision and its reasons, and as the routing
/// phase unless the configuration routes by its static table), and where
/// the message is taken to come from.
pub struct Inspector<'a> {
    pub config: &'a Config,
    pub emergency: &'a EmergencyRouter,
    pub source: SocketAddr,
}

impl Inspector<'_> {
    /// The routing phase the router runs with this configuration.
    fn router(&self) -> Box<dyn Router> {
        if self.config.routing.mode == RoutingMode::Static {
            Box::new(StaticRouter::new(self.config))
        } else {
            Box::new(self.emergency.clone())
        }
    }
}

/// As [`describe`], plus what the router does with the message and why:
/// `verdict` (see [`verdict`]: the same receive path and proxy core as the
/// running router), and for a request `emergency` (`null`, or the dial
/// string, the caller's country and the kind), `location` (the dynamic
/// location when usable, else the registered address, else none) and
/// `decision` (route, what it rests on, PSAP, area, trunk, reason,
/// fallbacks, and `lost`: what the ECRF would be asked, or why not, and
/// what the embedded data gives) and `registered_address_check` (the
/// caller's registered address as the inventory's address check sees
/// it), for the inbound trunk of the source. A message the router
/// takes despite faults in what it passes on is `ok`, with the faults
/// listed in `faults`.
pub fn describe_with_router(file: &str, data: Bytes, stream: bool, ins: &Inspector<'_>) -> Value {
    let mut v = describe_inner(file, data.clone(), stream, Some(ins));
    if let Value::Object(o) = &mut v {
        let verdict = verdict(ins.config, ins.router(), data, stream, ins.source);
        o.insert("verdict".into(), verdict);
    }
    v
}

fn describe_inner(file: &str, data: Bytes, stream: bool, ins: Option<&Inspector<'_>>) -> Value {
    let limits = sip::Limits::default();
    let parsed = if stream {
        match sip::parse_stream(&data, &limits) {
            Ok(Status::Complete(m, _)) => Ok(m),
            Ok(Status::Partial) => Err(None),
            Err(e) => Err(Some(e)),
        }
    } else {
        sip::parse_datagram(data.clone(), &limits).map_err(Some)
    };
    match parsed {
        Ok(m) => {
            let mut v = message_json(file, &m);
            if let (Some(ins), Value::Object(o)) = (ins, &mut v) {
                add_emergency(o, &m, ins);
            }
            v
        }
        Err(Some(e)) => {
            // An INVITE whose only faults are in what the router passes on:
            // the router keeps it, routes it if it is an emergency call and
            // answers 400 otherwise (the verdict says which).
            match (kept_at_receipt(&data, stream, &limits), ins) {
                (Some(m), Some(ins)) => {
                    let mut v = message_json(file, &m);
                    if let Value::Object(o) = &mut v {
                        o.insert("kept_at_receipt".into(), Value::Bool(true));
                        o.insert("faults".into(), json!([fault_json(&e)]));
                        add_emergency(o, &m, ins);
                    }
                    v
                }
                (Some(_), None) => {
                    let mut v = error_json(file, &e);
                    if let Value::Object(o) = &mut v {
                        o.insert("kept_at_receipt".into(), Value::Bool(true));
                    }
                    v
                }
                (None, _) => error_json(file, &e),
            }
        }
        Err(None) => json!({"file": file, "ok": false, "partial": true,
            "error": {"status": null, "reason": "incomplete message"}}),
    }
}

/// The message as the router's receive path keeps it despite a fault, if
/// it does.
fn kept_at_receipt(data: &Bytes, stream: bool, limits: &sip::Limits) -> Option<Message> {
    let framed = if stream {
        match sip::frame_stream(data, limits) {
            Ok(Status::Complete((), n)) => data.slice(..n),
            _ => return None,
        }
    } else {
        data.clone()
    };
    sip::receive(framed, stream, limits)
        .ok()
        .filter(|m| m.fault().is_some())
}

fn add_emergency(o: &mut Map<String, Value>, m: &Message, ins: &Inspector<'_>) {
    if !m.is_request() {
        for key in ["emergency", "location", "decision"] {
            o.insert(key.into(), Value::Null);
        }
        return;
    }
    let router = ins.emergency;
    let inventory = router.inventory();
    let ip = ins.source.ip();
    let inbound = ins
        .config
        .trunks
        .iter()
        .find(|t| {
            t.kind == crate::config::TrunkKind::Inbound && t.sources.iter().any(|n| n.contains(&ip))
        })
        .map(|t| t.name.as_str());
    let ev = router.evaluate(&inventory, m, inbound, true);
    o.insert("emergency".into(), ev.emergency_json());
    o.insert("location".into(), ev.location_json());
    let mut decision = ev.decision_json();
    // The service of the PSAP chosen: the call's own, or a parent's when
    // the service has no PSAP of its own for the place.
    if let Some(d) = decision.as_object_mut() {
        let service = d
            .get("psap_id")
            .and_then(Value::as_str)
            .and_then(|id| router.areas().psap(id))
            .map(|p| Value::String(p.service().to_string()))
            .unwrap_or(Value::Null);
        d.insert("psap_service".into(), service);
        d.insert("lost".into(), router.lost_json(&ev));
    }
    o.insert("decision".into(), decision);
    o.insert(
        "registered_address_check".into(),
        ev.registered_address()
            .map_or(Value::Null, |a| address_check_json(ins.config, a)),
    );
}

/// What the address check of the number inventory makes of a registered
/// address (`valid`, `invalid` with the elements at fault and why, or
/// `unchecked`), checked here with the checker and the rules of
/// `[admin]` that uploads use; `refused`: whether an upload would refuse
/// it (an element its country requires is missing, or it is invalid where
/// the country's policy is `refuse`).
fn address_check_json(config: &Config, a: &crate::inventory::Address) -> Value {
    let rules = crate::store::address::AddressRules::of_admin(config.admin.as_ref());
    match rules.check(a) {
        Ok(check) => {
            let mut v = check.to_json();
            v["refused"] = Value::Bool(false);
            v
        }
        Err(refused) => json!({
            "state": "invalid",
            "elements": refused.elements(),
            "reason": refused.describe("reg_"),
            "refused": true,
        }),
    }
}

fn error_json(file: &str, e: &ParseError) -> Value {
    json!({
        "file": file,
        "ok": false,
        "error": fault_json(e),
    })
}

fn fault_json(e: &ParseError) -> Value {
    json!({"status": e.status(), "reason": e.reason(), "kind": e.kind()})
}

fn s(b: &[u8]) -> Value {
    Value::String(lossy(b).into_owned())
}

/// The message-layer fields of the inspect object.
pub fn message_json(file: &str, m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("file".into(), json!(file));
    o.insert("ok".into(), json!(true));
    o.insert(
        "kind".into(),
        json!(if m.is_request() {
            "request"
        } else {
            "response"
        }),
    );
    o.insert(
        "method".into(),
        if m.is_request() {
            s(m.method_bytes())
        } else {
            Value::Null
        },
    );
    o.insert(
        "request_uri".into(),
        if m.is_request() {
            s(m.request_uri_bytes())
        } else {
            Value::Null
        },
    );
    o.insert("status".into(), json!(m.status()));
    o.insert("call_id".into(), m.call_id().map_or(Value::Null, s));
    o.insert(
        "cseq".into(),
        m.cseq().map_or(
            Value::Null,
            |c| json!({"seq": c.seq, "method": s(c.method)}),
        ),
    );
    for (key, na) in [("from", m.from()), ("to", m.to())] {
        o.insert(
            key.into(),
            na.map_or(
                Value::Null,
                |n| json!({"uri": s(n.uri_text), "tag": n.tag().map(s)}),
            ),
        );
    }
    let vias: Vec<Value> = m
        .vias()
        .flatten()
        .map(|v| {
            json!({
                "transport": s(v.transport),
                "host": s(v.host),
                "port": v.port,
                "branch": v.branch().map(s),
            })
        })
        .collect();
    o.insert("via".into(), Value::Array(vias));
    o.insert("max_forwards".into(), json!(m.max_forwards()));
    o.insert(
        "content_type".into(),
        m.get(HeaderName::ContentType).map_or(Value::Null, s),
    );
    o.insert("content_length".into(), json!(m.content_length()));
    match m.body_parts() {
        Ok(parts) => {
            let list: Vec<Value> = parts
                .iter()
                .map(|p| {
                    json!({
                        "content_type": p.content_type.map(|c| s(m.bytes_of(c))),
                        "content_id": p.content_id.map(|c| s(m.bytes_of(c))),
                        "len": p.body.len(),
                        "depth": p.depth,
                    })
                })
                .collect();
            o.insert("body_parts".into(), Value::Array(list));
        }
        Err(e) => {
            o.insert("body_parts".into(), json!([]));
            o.insert("body_error".into(), json!(e.as_str()));
        }
    }
    o.insert("parse_path".into(), json!(m.parse_path().as_str()));
    Value::Object(o)
}

/// Where `inspect` takes a message to come from when not told: an address
/// the configuration takes requests from (the first inbound trunk's first
/// network, else the first `sip.allow` network), else 127.0.0.1. A network
/// stands for its first address, port 5060.
pub fn default_source(config: &Config) -> SocketAddr {
    let net = config
        .trunks
        .iter()
        .filter(|t| t.kind == crate::config::TrunkKind::Inbound)
        .flat_map(|t| t.sources.iter())
        .chain(config.sip.allow.iter())
        .next();
    let ip = net.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |n| {
        n.hosts().next().unwrap_or(n.addr())
    });
    SocketAddr::new(ip, 5060)
}

/// What the router does with these bytes, found out the way the router
/// itself does it: the receive path (parse, the answer to what does not
/// parse) and the proxy core the router runs, with this configuration and
/// routing phase, as if the bytes came from `source` (over TCP when
/// `stream`). A location by reference is not fetched.
///
/// `{"action": "forwarded", "to", "trunk", "transport", "method"}`, or
/// `{"action": "answered", "status", "reason"}` (the final answer the
/// sender gets), or `{"action": "dropped"}`; with `warnings`, what the
/// router tolerated in an emergency call it routes.
pub fn verdict(
    config: &Config,
    router: Box<dyn Router>,
    data: Bytes,
    stream: bool,
    source: SocketAddr,
) -> Value {
    let local: Vec<SocketAddr> = config
        .listeners()
        .map(|ls| ls.iter().map(|l| l.addr).collect())
        .unwrap_or_default();
    let cfg = CoreConfig::from_config(config, local.clone(), 0);
    let trunks: Vec<(String, Option<Target>)> = cfg
        .trunks
        .iter()
        .map(|t| (t.name.clone(), t.target.clone()))
        .collect();
    let mut core = Core::new(cfg, router);
    let proto = if stream { Proto::Tcp } else { Proto::Udp };
    let src = Source {
        proto,
        peer: source,
        local: local
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060))),
        conn: stream.then_some(ConnId(1)),
    };
    let data = if stream {
        match sip::frame_stream(&data, &sip::Limits::default()) {
            Ok(Status::Complete((), n)) => data.slice(..n),
            _ => data,
        }
    } else {
        data
    };
    let now = Instant::now();
    let mut counters = crate::metrics::MessageCounters::default();
    let limits = sip::Limits::default();
    match crate::transport::parse_received(data, &src, stream, &limits, &mut counters) {
        Ok(msg) => core.handle_message(now, msg, src),
        Err(Some(reply)) => core.answer_unparsed(now, reply, &src),
        Err(None) => {}
    }
    // Inspect reaches no location server: a location given by reference
    // is reported as not fetched, and the verdict is the one the router
    // gives a call whose fetch fails.
    let mut unfetched = Vec::new();
    while let Some(fetch) = core.poll_fetch() {
        unfetched.push(crate::held::host_of(&fetch.uri));
        core.handle_fetched(now, fetch.id, None);
    }
    let sent: Vec<_> = std::iter::from_fn(|| core.poll_transmit()).collect();
    let warnings: Vec<String> = std::iter::from_fn(|| core.poll_event())
        .find_map(|ev| match ev {
            CallEvent::Started { warnings, .. } => Some(warnings.into_vec()),
            _ => None,
        })
        .unwrap_or_default();
    let back = Target::Addr(source);
    let mut v = if let Some(t) = sent
        .iter()
        .find(|t| t.dest.target != back && !t.bytes.starts_with(b"SIP/2.0 "))
    {
        let to = match &t.dest.target {
            Target::Addr(a) => a.to_string(),
            Target::Host(h, p) | Target::HostAlt(h, p, _) => format!("{h}:{p}"),
        };
        let trunk = trunks
            .iter()
            .find(|(_, target)| target.as_ref() == Some(&t.dest.target))
            .map(|(n, _)| n.clone());
        let method = t.bytes.split(|&b| b == b' ').next().unwrap_or_default();
        json!({"action": "forwarded", "method": s(method), "to": to, "trunk": trunk,
            "transport": t.dest.proto.lower()})
    } else if let Some(m) = sent
        .iter()
        .filter(|t| t.dest.target == back)
        .filter_map(|t| sip::parse_datagram(t.bytes.clone(), &limits).ok())
        .find(|m| m.status().is_some_and(|s| s >= 200))
    {
        json!({"action": "answered", "status": m.status(), "reason": s(m.reason())})
    } else {
        json!({"action": "dropped"})
    };
    if let (Value::Object(o), false) = (&mut v, warnings.is_empty()) {
        o.insert("warnings".into(), json!(warnings));
    }
    if let (Value::Object(o), false) = (&mut v, unfetched.is_empty()) {
        o.insert("location_not_fetched_from".into(), json!(unfetched));
    }
    v
}
