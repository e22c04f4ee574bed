//! `sosrouter inspect`: what the router makes of a message, as one JSON
//! object per file. Field names are stable; scripts rely on them.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::emergency::EmergencyRouter;
use crate::sip::{self, text::lossy, HeaderName, Message, ParseError, Status};

/// Parses one file's bytes as a datagram (or as stream bytes) and describes
/// the result: the message-layer fields only.
pub fn describe(file: &str, data: Bytes, stream: bool) -> Value {
    describe_inner(file, data, stream, None)
}

/// As [`describe`], plus what the emergency router makes of a request:
/// `emergency` (`null`, or the dial string, the caller's country and the
/// kind), `location` (the dynamic location when usable, else the registered
/// address, else none) and `decision` (route, what it rests on, PSAP, area,
/// trunk, reason, fallbacks). No inbound trunk is assumed.
pub fn describe_with_router(
    file: &str,
    data: Bytes,
    stream: bool,
    router: &EmergencyRouter,
) -> Value {
    describe_inner(file, data, stream, Some(router))
}

fn describe_inner(
    file: &str,
    data: Bytes,
    stream: bool,
    router: Option<&EmergencyRouter>,
) -> Value {
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
            if let (Some(router), Value::Object(o)) = (router, &mut v) {
                add_emergency(o, &m, router);
            }
            v
        }
        Err(Some(e)) => {
            let mut v = error_json(file, &e);
            // An INVITE whose only fault is in a header the router passes on:
            // the router keeps it, routes it if it is an emergency call and
            // answers 400 otherwise.
            if let (Some(m), Value::Object(o)) = (kept_at_receipt(&data, stream, &limits), &mut v) {
                o.insert("kept_at_receipt".into(), Value::Bool(true));
                if let Some(router) = router {
                    add_emergency(o, &m, router);
                }
            }
            v
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

fn add_emergency(o: &mut Map<String, Value>, m: &Message, router: &EmergencyRouter) {
    if !m.is_request() {
        for key in ["emergency", "location", "decision"] {
            o.insert(key.into(), Value::Null);
        }
        return;
    }
    let inventory = router.inventory();
    let ev = router.evaluate(&inventory, m, None, true);
    o.insert("emergency".into(), ev.emergency_json());
    o.insert("location".into(), ev.location_json());
    o.insert("decision".into(), ev.decision_json());
}

fn error_json(file: &str, e: &ParseError) -> Value {
    json!({
        "file": file,
        "ok": false,
        "error": {"status": e.status(), "reason": e.reason(), "kind": e.kind()},
    })
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
