//! What the core reports about emergency calls as they happen: the raw
//! material of call records. Times are the core's `Instant`s; the I/O edge
//! stamps wall-clock time when it takes the events.

use std::time::Instant;

use super::route::RouteDetails;
use crate::wire::Source;

/// Identifies a call inside one router process.
pub type CallKey = u64;

#[derive(Debug, Clone)]
pub enum CallEvent {
    /// The routing phase chose targets for an emergency or test call.
    Started {
        call: CallKey,
        at: Instant,
        call_id: String,
        source: Source,
        /// The From and P-Asserted-Identity values as received.
        from: String,
        pai: Option<String>,
        user_agent: Option<String>,
        /// The dialed Request-URI as received.
        request_uri: String,
        route: &'static str,
        reason: &'static str,
        details: Option<Box<RouteDetails>>,
        /// Refused for overload (answered 503, never sent on): the carrier
        /// tries its other router, and the caller did dial.
        refused: bool,
        /// What the router tolerated or changed to route the call: a
        /// malformed header passed on, a preloaded Route removed, an
        /// unsupported option tag (empty for most calls: no allocation).
        warnings: Box<[String]>,
    },
    /// One target tried and what came of it.
    Attempt {
        call: CallKey,
        at: Instant,
        trunk: String,
        /// The PSAP id or queue the target stands for.
        label: String,
        /// `answered`, `failed`, `no-answer`, `timeout`, `unreachable`,
        /// `cancelled`.
        outcome: &'static str,
        status: Option<u16>,
    },
    /// The final response went upstream.
    Finished {
        call: CallKey,
        at: Instant,
        status: u16,
        /// `answered`, `failed`, `cancelled`, or `refused` (answered 503
        /// for overload, never sent on).
        outcome: &'static str,
    },
    /// A BYE ended the dialog of an answered call.
    Ended { call_id: String, at: Instant },
}

/// An emergency call from acme's +12125550142 routed to a PSAP by its
/// dynamic location: the event the tests of what consumes events start
/// from.
#[cfg(test)]
pub fn example_started(call: CallKey, at: Instant) -> CallEvent {
    CallEvent::Started {
        call,
        at,
        call_id: format!("cid-{call}"),
        source: Source {
            proto: super::Proto::Udp,
            peer: "192.0.2.10:5060".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            conn: None,
        },
        from: "<sip:+12125550142@example.com>;tag=1".into(),
        pai: None,
        user_agent: Some("phone/1".into()),
        request_uri: "sip:911@router".into(),
        route: "psap",
        reason: "dynamic-location",
        refused: false,
        warnings: Box::default(),
        details: Some(Box::new(RouteDetails {
            kind: "emergency",
            dialed: "911".into(),
            caller: Some("+12125550142".into()),
            tenant: Some("acme".into()),
            location_source: "pidf-geo",
            psap_id: Some("SYN-US-08031".into()),
            ..Default::default()
        })),
    }
}
