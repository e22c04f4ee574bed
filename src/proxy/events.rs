//! What the core reports about emergency calls as they happen: the raw
//! material of call records. Times are the core's `Instant`s; the I/O edge
//! stamps wall-clock time when it takes the events.

use std::time::Instant;

use super::route::RouteDetails;
use super::wire::Source;

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
