//! Call records: one per emergency or test call, assembled from the core's
//! call events, written off the hot path through a bounded queue in
//! batches, exported by operators.

pub mod store;
pub mod writer;

use std::collections::HashMap;
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
    pub request_uri: String,
    pub invite_ms: i64,
    pub answer_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub final_status: Option<u16>,
    /// `answered`, `failed`, `cancelled`, or `open` for a record flushed
    /// before its call ended.
    pub outcome: String,
    pub route: String,
    pub reason: String,
    /// The trunk and PSAP (or queue) the call reached, or was last tried.
    pub trunk: Option<String>,
    pub psap_id: Option<String>,
    pub attempts: Vec<Attempt>,
    pub country: Option<String>,
    pub location_source: String,
    pub location: Option<serde_json::Value>,
    pub registered_address: Option<serde_json::Value>,
    pub source_ip: String,
    pub source_port: u16,
    pub transport: String,
    pub user_agent: Option<String>,
    /// What the router tolerated or changed to route the call (a malformed
    /// header passed on, a preloaded Route removed...), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Builds records from call events. Pure: wall-clock times come from an
/// anchor pair (an `Instant` and the epoch milliseconds at that instant).
pub struct Assembler {
    anchor: Instant,
    anchor_ms: i64,
    open: HashMap<CallKey, CallRecord>,
    /// Answered calls waiting for their BYE, by Call-ID.
    answered: HashMap<String, CallKey>,
    seq: u64,
    node: u64,
}

impl Assembler {
    pub fn new(anchor: Instant, anchor_ms: i64, node: u64) -> Assembler {
        Assembler {
            anchor,
            anchor_ms,
            open: HashMap::new(),
            answered: HashMap::new(),
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

    /// Applies one event; returns a record when its call is over.
    pub fn on_event(&mut self, ev: CallEvent) -> Option<CallRecord> {
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
                refused: _,
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
                    location: d.location.as_ref().map(|l| l.to_json()),
                    registered_address: d.registered_address.as_ref().map(|l| l.to_json()),
                    source_ip: source.peer.ip().to_string(),
                    source_port: source.peer.port(),
                    transport: source.proto.lower().to_string(),
                    user_agent,
                    warnings: warnings.into_vec(),
                };
                self.open.insert(call, rec);
                None
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
                let rec = self.open.get_mut(&call)?;
                rec.trunk = Some(trunk.clone());
                rec.attempts.push(Attempt {
                    trunk,
                    label,
                    outcome: outcome.to_string(),
                    status,
                    at_ms,
                });
                None
            }
            CallEvent::Finished {
                call,
                at,
                status,
                outcome,
            } => {
                let ms = self.ms(at);
                let rec = self.open.get_mut(&call)?;
                rec.final_status = Some(status);
                rec.outcome = outcome.to_string();
                if outcome == "answered" {
                    rec.answer_ms = Some(ms);
                    let call_id = rec.call_id.clone();
                    self.answered.insert(call_id, call);
                    None
                } else {
                    let mut rec = self.open.remove(&call)?;
                    rec.end_ms = Some(ms);
                    Some(rec)
                }
            }
            CallEvent::Ended { call_id, at } => {
                let call = self.answered.remove(&call_id)?;
                let ms = self.ms(at);
                let mut rec = self.open.remove(&call)?;
                rec.end_ms = Some(ms);
                rec.duration_ms = rec.answer_ms.map(|a| (ms - a).max(0));
                Some(rec)
            }
        }
    }

    /// Answered calls that saw no BYE for `max_age` are written as they
    /// are (end unknown), so a lost BYE cannot hold a record forever.
    pub fn expire(&mut self, now: Instant, max_age: Duration) -> Vec<CallRecord> {
        let cutoff = self.ms(now) - max_age.as_millis() as i64;
        let old: Vec<CallKey> = self
            .open
            .iter()
            .filter(|(_, r)| r.invite_ms < cutoff)
            .map(|(k, _)| *k)
            .collect();
        self.take(old)
    }

    /// Everything still open, for a shutdown: nothing is lost.
    pub fn flush_all(&mut self) -> Vec<CallRecord> {
        let all: Vec<CallKey> = self.open.keys().copied().collect();
        self.take(all)
    }

    fn take(&mut self, keys: Vec<CallKey>) -> Vec<CallRecord> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(r) = self.open.remove(&k) {
                self.answered.remove(&r.call_id);
                out.push(r);
            }
        }
        out
    }
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

    #[test]
    fn an_answered_call_is_written_at_its_bye_with_times_and_duration() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 1_700_000_000_000, 1);
        assert!(a.on_event(started(1, t0)).is_none());
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(a
            .on_event(CallEvent::Attempt {
                call: 1,
                at: at(100),
                trunk: "psap".into(),
                label: "SYN-US-08031".into(),
                outcome: "answered",
                status: Some(200)
            })
            .is_none());
        assert!(a
            .on_event(CallEvent::Finished {
                call: 1,
                at: at(150),
                status: 200,
                outcome: "answered"
            })
            .is_none());
        assert_eq!(a.open(), 1);
        let r = a
            .on_event(CallEvent::Ended {
                call_id: "cid-1".into(),
                at: at(60_150),
            })
            .unwrap();
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
    fn a_failed_call_is_written_at_once_and_open_ones_on_flush() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 0, 1);
        a.on_event(started(1, t0));
        let r = a
            .on_event(CallEvent::Finished {
                call: 1,
                at: t0,
                status: 408,
                outcome: "failed",
            })
            .unwrap();
        assert_eq!(r.outcome, "failed");
        a.on_event(started(2, t0));
        a.on_event(CallEvent::Finished {
            call: 2,
            at: t0,
            status: 200,
            outcome: "answered",
        });
        a.on_event(started(3, t0));
        let flushed = a.flush_all();
        assert_eq!(flushed.len(), 2);
        assert_eq!(a.open(), 0);
        // An unknown BYE is nobody's business.
        assert!(a
            .on_event(CallEvent::Ended {
                call_id: "cid-2".into(),
                at: t0
            })
            .is_none());
    }
}
