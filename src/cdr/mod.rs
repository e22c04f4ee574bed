//! Call records: one per emergency or test call, assembled from the core's
//! call events, written off the hot path through a bounded queue in
//! batches, exported by operators.
//!
//! A record is written as soon as its call is routed (outcome `open`) and
//! written again, whole and under the same id, each time the call changes
//! (an attempt, the answer, the end): a router that dies loses at most
//! what was not yet written, never the calls in progress. Records that a
//! stopped router left `open` are closed as `interrupted` (see
//! [`store`]).

pub mod store;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::proxy::events::{CallEvent, CallKey};

/// One target tried for a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub trunk: String,
    pub label: String,
    pub outcome: String,
    pub status: Option<u16>,
    pub at_ms: i64,
}

/// Everything an operator may export about one call. Times are
/// milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Unique id of this record.
    pub id: String,
    pub tenant: Option<String>,
    /// `emergency` or `test`.
    pub kind: String,
    pub call_id: String,
    /// The caller's number (E.164) and identifiers as received.
    pub caller_number: Option<String>,
    pub caller_uri: String,
    pub from: String,
    pub pai: Option<String>,
    /// The dialed number or service URN, and the Request-URI as received.
    pub dialed: String,
    /// The emergency service the call was routed for
    /// (`urn:service:sos.police`); absent from records of older routers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub request_uri: String,
    pub invite_ms: i64,
    pub answer_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub final_status: Option<u16>,
    /// `answered`, `failed`, `cancelled`, `refused`; `open` while the call
    /// is in progress (answered or not: `answer_ms` and `final_status`
    /// say); `interrupted` when the router stopped, or was killed, before
    /// the call ended.
    pub outcome: String,
    pub route: String,
    pub reason: String,
    /// The trunk and PSAP (or queue) the call reached, or was last tried.
    pub trunk: Option<String>,
    pub psap_id: Option<String>,
    pub attempts: Vec<Attempt>,
    pub country: Option<String>,
    pub location_source: String,
    pub location: Option<Json>,
    pub registered_address: Option<Json>,
    pub source_ip: String,
    pub source_port: u16,
    pub transport: String,
    pub user_agent: Option<String>,
    /// What the router tolerated or changed to route the call (a malformed
    /// header passed on, a preloaded Route removed...), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A JSON value of a record (its location, its registered address),
/// kept as the compact text serde_json writes for it. It is made once per
/// call: the record's versions share it, and writing a version copies its
/// bytes instead of walking the value again.
///
/// Read back from the database it is parsed and written compact again,
/// so that a record whose stored text another writer reformatted (the
/// `jsonb` of PostgreSQL closing abandoned records) exports as it did
/// when it was written.
#[derive(Clone)]
pub struct Json(Arc<serde_json::value::RawValue>);

impl Json {
    /// The text of `v`.
    pub fn of(v: &serde_json::Value) -> Json {
        // A value's text cannot fail to be written: its keys are strings.
        let raw = serde_json::value::to_raw_value(v)
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
        Json(Arc::from(raw))
    }

    /// The compact JSON text, as in the record's JSON.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The value, parsed again: for readers of its parts.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.text()).unwrap_or(serde_json::Value::Null)
    }
}

impl std::fmt::Debug for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.text() == other.text()
    }
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        serde_json::Value::deserialize(d).map(|v| Json::of(&v))
    }
}

impl CallRecord {
    /// The router process that wrote the record: the first 16 hex digits
    /// of its id (see [`Assembler`]).
    pub fn node(&self) -> &str {
        self.id.get(..16).unwrap_or(&self.id)
    }
}

/// Outcome of a record whose call is in progress.
pub const OPEN: &str = "open";
/// The outcome of an answered call, once it is over.
pub const ANSWERED: &str = "answered";
/// Outcome of a record whose router stopped before the call ended.
pub const INTERRUPTED: &str = "interrupted";

/// Builds records from call events. Pure: wall-clock times come from an
/// anchor pair (an `Instant` and the epoch milliseconds at that instant).
///
/// Ids are the node (16 hex digits, one per router process), the INVITE
/// time and a sequence number, so that records of several routers sharing
/// a database never collide.
///
/// The assembler owns every record until it is written, and gathers what
/// changed for the writer itself: the events of a window change a call's
/// record in place, and [`Assembler::take_changed`] gives the latest
/// version of each call changed since the last take, once. No version is
/// ever shared with the writer, so none is ever copied: the writer gets
/// each record's JSON, made when it is taken.
pub struct Assembler {
    anchor: Instant,
    anchor_ms: i64,
    /// Calls in progress. Their outcome stays `open` until the call is
    /// over (an answered call has `answer_ms`).
    open: HashMap<CallKey, Open>,
    /// Answered calls waiting for their BYE, by Call-ID.
    answered: HashMap<String, CallKey>,
    /// Calls in progress changed since the last take, each once.
    changed: Vec<CallKey>,
    /// Calls over since the last take: their last records.
    over: Vec<CallRecord>,
    seq: u64,
    node: u64,
}

/// A call in progress.
struct Open {
    rec: CallRecord,
    /// In [`Assembler::changed`] already.
    changed: bool,
}

impl Assembler {
    pub fn new(anchor: Instant, anchor_ms: i64, node: u64) -> Assembler {
        Assembler {
            anchor,
            anchor_ms,
            open: HashMap::new(),
            answered: HashMap::new(),
            changed: Vec::new(),
            over: Vec::new(),
            seq: 0,
            node,
        }
    }

    fn ms(&self, at: Instant) -> i64 {
        if at >= self.anchor {
            self.anchor_ms + at.duration_since(self.anchor).as_millis() as i64
        } else {
            self.anchor_ms - self.anchor.duration_since(at).as_millis() as i64
        }
    }

    /// Records in progress.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// This assembler's node, as it begins every record id.
    pub fn node(&self) -> String {
        format!("{:016x}", self.node)
    }

    /// Records changed since the last take (at most; a call changed in
    /// progress and then over counts twice and is taken once).
    pub fn pending(&self) -> usize {
        self.changed.len() + self.over.len()
    }

    /// Gives `write` the latest version of each record changed since the
    /// last take, each once: the calls in progress (outcome `open`), then
    /// the calls over. The record of a call in progress stays here.
    pub fn take_changed(&mut self, mut write: impl FnMut(&CallRecord)) {
        for call in std::mem::take(&mut self.changed) {
            // A call over since is among `over`.
            if let Some(o) = self.open.get_mut(&call) {
                o.changed = false;
                write(&o.rec);
            }
        }
        for rec in self.over.drain(..) {
            write(&rec);
        }
    }

    /// Applies one event and takes what it changed: the record to write,
    /// if any (the call in progress, outcome `open`, or over). For
    /// callers that write every version; the recorder applies the events
    /// of a window, then takes the changes once.
    pub fn on_event(&mut self, ev: CallEvent) -> Option<CallRecord> {
        self.apply(ev);
        let mut last = None;
        self.take_changed(|r| last = Some(r.clone()));
        last
    }

    /// The record of a call in progress, as it stands now.
    pub fn in_progress_of(&self, call: CallKey) -> Option<&CallRecord> {
        self.open.get(&call).map(|o| &o.rec)
    }

    /// Marks a call in progress as changed; its record, to change.
    fn change(&mut self, call: CallKey) -> Option<&mut CallRecord> {
        let o = self.open.get_mut(&call)?;
        if !o.changed {
            o.changed = true;
            self.changed.push(call);
        }
        Some(&mut o.rec)
    }

    /// Applies one event to the records; what it changed waits for
    /// [`Assembler::take_changed`].
    pub fn apply(&mut self, ev: CallEvent) {
        self.apply_inner(ev);
    }

    fn apply_inner(&mut self, ev: CallEvent) -> Option<()> {
        match ev {
            CallEvent::Started {
                call,
                at,
                call_id,
                source,
                from,
                pai,
                user_agent,
                request_uri,
                route,
                reason,
                details,
                refused,
                warnings,
            } => {
                self.seq += 1;
                let d = details.map(|d| *d).unwrap_or_default();
                let caller_uri = crate::sip::NameAddr::parse(from.as_bytes())
                    .map(|n| String::from_utf8_lossy(n.uri_text).into_owned())
                    .unwrap_or_else(|| from.clone());
                let rec = CallRecord {
                    id: format!(
                        "{:016x}{:08x}{:08x}",
                        self.node,
                        self.ms(at) as u64 & 0xffff_ffff,
                        self.seq & 0xffff_ffff
                    ),
                    tenant: d.tenant.clone(),
                    kind: if d.kind.is_empty() {
                        "emergency".into()
                    } else {
                        d.kind.to_string()
                    },
                    call_id,
                    caller_number: d.caller.clone(),
                    caller_uri,
                    from,
                    pai,
                    dialed: if d.dialed.is_empty() {
                        request_uri.clone()
                    } else {
                        d.dialed.clone()
                    },
                    service: d.service.as_deref().map(str::to_string),
                    request_uri,
                    invite_ms: self.ms(at),
                    answer_ms: None,
                    end_ms: None,
                    duration_ms: None,
                    final_status: None,
                    outcome: "open".into(),
                    route: route.to_string(),
                    reason: reason.to_string(),
                    trunk: None,
                    psap_id: d.psap_id.clone(),
                    attempts: Vec::new(),
                    country: d.country.clone(),
                    location_source: if d.location_source.is_empty() {
                        "none".into()
                    } else {
                        d.location_source.to_string()
                    },
                    location: d.location.as_ref().map(|l| {
                        let mut v = l.to_json();
                        // When LoST was asked: which source chose the PSAP,
                        // and why the ECRF's answer was not the one.
                        if let (Some(by), Some(o)) = (d.psap_decided_by, v.as_object_mut()) {
                            o.insert("psap_decided_by".into(), by.into());
                            if let Some(why) = &d.lost_why {
                                o.insert("lost_why".into(), why.clone().into());
                            }
                        }
                        Json::of(&v)
                    }),
                    registered_address: d
                        .registered_address
                        .as_ref()
                        .map(|l| Json::of(&l.to_json())),
                    source_ip: source.peer.ip().to_string(),
                    source_port: source.peer.port(),
                    transport: source.proto.lower().to_string(),
                    user_agent,
                    warnings: warnings.into_vec(),
                };
                // A call refused for overload ends at once (its `Finished`
                // follows): one write, not two, when refusals come in floods.
                self.open.insert(
                    call,
                    Open {
                        rec,
                        changed: false,
                    },
                );
                if !refused {
                    self.change(call);
                }
                Some(())
            }
            CallEvent::Attempt {
                call,
                at,
                trunk,
                label,
                outcome,
                status,
            } => {
                let at_ms = self.ms(at);
                let rec = self.change(call)?;
                rec.trunk = Some(trunk.clone());
                rec.attempts.push(Attempt {
                    trunk,
                    label,
                    outcome: outcome.to_string(),
                    status,
                    at_ms,
                });
                Some(())
            }
            CallEvent::Finished {
                call,
                at,
                status,
                outcome,
            } => {
                let ms = self.ms(at);
                if outcome == ANSWERED {
                    // In progress until its BYE: the outcome stays `open`.
                    let rec = self.change(call)?;
                    rec.final_status = Some(status);
                    rec.answer_ms = Some(ms);
                    let call_id = rec.call_id.clone();
                    self.answered.insert(call_id, call);
                } else {
                    let mut rec = self.open.remove(&call)?.rec;
                    rec.final_status = Some(status);
                    rec.outcome = outcome.to_string();
                    rec.end_ms = Some(ms);
                    self.over.push(rec);
                }
                Some(())
            }
            CallEvent::Ended { call_id, at } => {
                let call = self.answered.remove(&call_id)?;
                let ms = self.ms(at);
                let mut rec = self.open.remove(&call)?.rec;
                rec.outcome = ANSWERED.into();
                rec.end_ms = Some(ms);
                rec.duration_ms = rec.answer_ms.map(|a| (ms - a).max(0));
                self.over.push(rec);
                Some(())
            }
        }
    }

    /// Answered calls that saw no BYE for `max_age` are taken as they
    /// are (outcome `answered`, end unknown), so a lost BYE cannot hold a
    /// record forever; a call that never had a final response is taken
    /// `interrupted`. They wait among the changes; how many.
    pub fn expire(&mut self, now: Instant, max_age: Duration) -> usize {
        let cutoff = self.ms(now) - max_age.as_millis() as i64;
        let old: Vec<CallKey> = self
            .open
            .iter()
            .filter(|(_, o)| o.rec.invite_ms < cutoff)
            .map(|(k, _)| *k)
            .collect();
        self.close(old, |r| {
            if r.answer_ms.is_some() {
                ANSWERED
            } else {
                INTERRUPTED
            }
        })
    }

    /// Everything still held, for a shutdown, with outcome `interrupted`:
    /// this router will never see those calls end (an answered call goes
    /// on without it: `answer_ms` and `final_status` say it was answered).
    /// They wait among the changes; how many.
    pub fn flush_all(&mut self) -> usize {
        let all: Vec<CallKey> = self.open.keys().copied().collect();
        self.close(all, |_| INTERRUPTED)
    }

    fn close(
        &mut self,
        keys: Vec<CallKey>,
        outcome: impl Fn(&CallRecord) -> &'static str,
    ) -> usize {
        let n = keys.len();
        for k in keys {
            if let Some(Open { mut rec, .. }) = self.open.remove(&k) {
                self.answered.remove(&rec.call_id);
                rec.outcome = outcome(&rec).into();
                self.over.push(rec);
            }
        }
        n
    }
}

/// Milliseconds since the Unix epoch, now: the clock of the records, of
/// the writers' leases and of the store's timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 text for epoch milliseconds (UTC).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Epoch milliseconds from RFC 3339 text.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proxy::events::example_started as started;

    #[derive(Debug)]
    struct Point;

    impl crate::proxy::LocationRecord for Point {
        fn to_json(&self) -> serde_json::Value {
            serde_json::json!({"source": "pidf-geo", "geo": {"lat": 39.7, "lon": -105.0}})
        }
    }

    #[test]
    fn the_record_says_which_source_chose_the_psap_when_lost_was_asked() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 1_700_000_000_000, 1);
        let with = |by: Option<&'static str>, why: Option<&str>| {
            let mut e = started(1, t0);
            if let CallEvent::Started { details, .. } = &mut e {
                let d = details.as_mut().unwrap();
                d.location = Some(std::sync::Arc::new(Point));
                d.psap_decided_by = by;
                d.lost_why = why.map(str::to_owned);
            }
            e
        };
        let r = a
            .on_event(with(Some("lost-stale"), Some("timeout")))
            .unwrap();
        // Written once, compact, in the order of the location's keys.
        assert_eq!(
            r.location.as_ref().unwrap().text(),
            r#"{"source":"pidf-geo","geo":{"lat":39.7,"lon":-105.0},"psap_decided_by":"lost-stale","lost_why":"timeout"}"#
        );
        let loc = r.location.unwrap().value();
        assert_eq!(loc["psap_decided_by"], "lost-stale");
        assert_eq!(loc["lost_why"], "timeout");
        assert_eq!(loc["source"], "pidf-geo");
        // No LoST: the location as it was.
        let mut a = Assembler::new(t0, 1_700_000_000_000, 1);
        let r = a.on_event(with(None, None)).unwrap();
        let loc = r.location.unwrap().value();
        assert!(loc.get("psap_decided_by").is_none(), "{loc}");
    }

    /// What the assembler holds for the writer, taken.
    fn taken(a: &mut Assembler) -> Vec<CallRecord> {
        let mut out = Vec::new();
        a.take_changed(|r| out.push(r.clone()));
        out
    }

    #[test]
    fn the_events_of_a_window_give_each_call_once_as_it_stands_at_the_take() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 1_700_000_000_000, 1);
        a.apply(started(1, t0));
        a.apply(started(2, t0));
        assert_eq!(a.pending(), 2);
        let attempt = CallEvent::Attempt {
            call: 1,
            at: t0,
            trunk: "psap".into(),
            label: "SYN-US-08031".into(),
            outcome: "answered",
            status: Some(200),
        };
        a.apply(attempt);
        let answered = CallEvent::Finished {
            call: 1,
            at: t0 + Duration::from_millis(20),
            status: 200,
            outcome: "answered",
        };
        a.apply(answered);
        // Three events of call 1, one of call 2: a version of each, the
        // latest, in the order the calls first changed.
        assert_eq!(a.pending(), 2);
        let window = taken(&mut a);
        let calls: Vec<&str> = window.iter().map(|r| r.call_id.as_str()).collect();
        assert_eq!(calls, ["cid-1", "cid-2"]);
        let now = &window[0];
        assert_eq!(now.attempts.len(), 1);
        assert_eq!(
            (now.outcome.as_str(), now.final_status, now.answer_ms),
            ("open", Some(200), Some(1_700_000_000_020))
        );
        assert_eq!(window[1].attempts.len(), 0);
        // Taken once: nothing waits until the calls change again.
        assert_eq!(a.pending(), 0);
        assert!(taken(&mut a).is_empty());
        assert_eq!(a.in_progress_of(1).unwrap().id, now.id);
        // Call 2 fails and call 1 ends in the next window: each is given
        // once, over, with its last version.
        a.apply(CallEvent::Finished {
            call: 2,
            at: t0 + Duration::from_millis(30),
            status: 486,
            outcome: "failed",
        });
        a.apply(CallEvent::Ended {
            call_id: "cid-1".into(),
            at: t0 + Duration::from_millis(70),
        });
        let window = taken(&mut a);
        let last: Vec<(&str, &str, Option<i64>)> = window
            .iter()
            .map(|r| (r.call_id.as_str(), r.outcome.as_str(), r.duration_ms))
            .collect();
        assert_eq!(
            last,
            [("cid-2", "failed", None), ("cid-1", "answered", Some(50))]
        );
        assert_eq!(window[1].id, now.id);
        assert!(a.in_progress_of(1).is_none());
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn a_call_changed_then_over_in_one_window_is_given_once_over() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 0, 1);
        a.apply(started(1, t0));
        a.apply(CallEvent::Finished {
            call: 1,
            at: t0,
            status: 404,
            outcome: "failed",
        });
        let window = taken(&mut a);
        assert_eq!(window.len(), 1);
        assert_eq!(
            (window[0].outcome.as_str(), window[0].final_status),
            ("failed", Some(404))
        );
    }

    #[test]
    fn an_answered_call_is_written_open_as_it_goes_then_whole_at_its_bye() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 1_700_000_000_000, 1);
        // Routed: written at once, `open`.
        let r = a.on_event(started(1, t0)).unwrap();
        assert_eq!(r.outcome, "open");
        assert_eq!(r.node(), "0000000000000001");
        assert_eq!(r.id.len(), 32);
        assert_eq!((r.final_status, r.end_ms), (None, None));
        let id = r.id.clone();
        let at = |ms| t0 + Duration::from_millis(ms);
        let r = a
            .on_event(CallEvent::Attempt {
                call: 1,
                at: at(100),
                trunk: "psap".into(),
                label: "SYN-US-08031".into(),
                outcome: "answered",
                status: Some(200),
            })
            .unwrap();
        assert_eq!((r.outcome.as_str(), r.attempts.len()), ("open", 1));
        // Answered: still `open` (the call is up), with its answer.
        let r = a
            .on_event(CallEvent::Finished {
                call: 1,
                at: at(150),
                status: 200,
                outcome: "answered",
            })
            .unwrap();
        assert_eq!(r.id, id);
        assert_eq!(r.outcome, "open");
        assert_eq!(r.final_status, Some(200));
        assert_eq!(r.answer_ms, Some(1_700_000_000_150));
        assert_eq!(r.end_ms, None);
        assert_eq!(a.open(), 1);
        let r = a
            .on_event(CallEvent::Ended {
                call_id: "cid-1".into(),
                at: at(60_150),
            })
            .unwrap();
        assert_eq!(r.id, id);
        assert_eq!(r.invite_ms, 1_700_000_000_000);
        assert_eq!(r.answer_ms, Some(1_700_000_000_150));
        assert_eq!(r.end_ms, Some(1_700_000_060_150));
        assert_eq!(r.duration_ms, Some(60_000));
        assert_eq!(
            (r.outcome.as_str(), r.final_status),
            ("answered", Some(200))
        );
        assert_eq!(r.caller_uri, "sip:+12125550142@example.com");
        assert_eq!(r.tenant.as_deref(), Some("acme"));
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(
            (r.source_ip.as_str(), r.source_port, r.transport.as_str()),
            ("192.0.2.10", 5060, "udp")
        );
        assert_eq!(a.open(), 0);
        assert_eq!(rfc3339(r.invite_ms), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(r.invite_ms));
    }

    #[test]
    fn a_failed_call_is_written_at_once_and_calls_up_at_shutdown_as_interrupted() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 0, 1);
        assert_eq!(a.on_event(started(1, t0)).unwrap().outcome, "open");
        let r = a
            .on_event(CallEvent::Finished {
                call: 1,
                at: t0,
                status: 408,
                outcome: "failed",
            })
            .unwrap();
        assert_eq!(r.outcome, "failed");
        assert_eq!(r.end_ms, Some(0));
        a.on_event(started(2, t0));
        a.on_event(CallEvent::Finished {
            call: 2,
            at: t0,
            status: 200,
            outcome: "answered",
        });
        a.on_event(started(3, t0));
        assert_eq!(a.flush_all(), 2);
        let mut flushed = taken(&mut a);
        flushed.sort_by(|x, y| x.call_id.cmp(&y.call_id));
        assert_eq!(flushed.len(), 2);
        assert_eq!(a.open(), 0);
        // Answered and still up; routed and not answered: both interrupted,
        // the first with its answer, neither with an end.
        assert_eq!(flushed[0].call_id, "cid-2");
        assert_eq!(
            (flushed[0].outcome.as_str(), flushed[0].final_status),
            ("interrupted", Some(200))
        );
        assert!(flushed[0].answer_ms.is_some());
        assert_eq!(
            (flushed[1].outcome.as_str(), flushed[1].final_status),
            ("interrupted", None)
        );
        assert!(flushed.iter().all(|r| r.end_ms.is_none()));
        // An unknown BYE is nobody's business.
        assert!(a
            .on_event(CallEvent::Ended {
                call_id: "cid-2".into(),
                at: t0
            })
            .is_none());
    }

    #[test]
    fn a_call_refused_for_overload_is_written_once() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 0, 1);
        let mut ev = started(1, t0);
        if let CallEvent::Started { refused, .. } = &mut ev {
            *refused = true;
        }
        assert!(a.on_event(ev).is_none());
        let r = a
            .on_event(CallEvent::Finished {
                call: 1,
                at: t0,
                status: 503,
                outcome: "refused",
            })
            .unwrap();
        assert_eq!((r.outcome.as_str(), r.final_status), ("refused", Some(503)));
    }

    #[test]
    fn calls_past_the_longest_call_are_written_as_they_stand() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 0, 1);
        a.on_event(started(1, t0));
        a.on_event(CallEvent::Finished {
            call: 1,
            at: t0,
            status: 200,
            outcome: "answered",
        });
        a.on_event(started(2, t0));
        let max = Duration::from_secs(3600);
        assert_eq!(a.expire(t0 + max, max), 0);
        assert!(taken(&mut a).is_empty());
        assert_eq!(a.expire(t0 + max + Duration::from_secs(1), max), 2);
        let mut old = taken(&mut a);
        old.sort_by(|x, y| x.call_id.cmp(&y.call_id));
        let outcomes: Vec<&str> = old.iter().map(|r| r.outcome.as_str()).collect();
        assert_eq!(outcomes, ["answered", "interrupted"]);
        assert!(old.iter().all(|r| r.end_ms.is_none()));
        assert_eq!(a.open(), 0);
    }
}
