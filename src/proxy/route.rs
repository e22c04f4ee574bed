//! The routing phase: given a request, an ordered list of targets. The
//! emergency rules plug in here; [`StaticRouter`] is a table from config.

use bytes::Bytes;

use crate::config::Config;
use crate::inventory::SharedInventory;
use crate::sip::{HeaderName, Message};

use crate::wire::Source;

/// What the routing phase knows besides the message.
#[derive(Debug, Clone, Copy)]
pub struct RouteContext<'a> {
    pub source: &'a Source,
    /// The inbound trunk the request came from, when its source matches one.
    pub inbound_trunk: Option<&'a str>,
    /// The location document fetched for the request's location reference
    /// (RFC 6753), if any.
    pub dereferenced: Option<&'a [u8]>,
    /// The answer to the LoST query made for the request
    /// ([`Router::lost_query`]); `None` when none was made.
    pub lost: Option<LostAnswer<'a>>,
    /// The wall-clock time of the decision, which LoST mappings expire
    /// against (the driver anchors it once; none in tests that do not).
    pub wall: Option<time::OffsetDateTime>,
    /// A value the core gives no other decision (from its seeded
    /// generator): what identifiers the router writes are made from.
    pub unique: u128,
}

/// LoST mapping caches by ECRF URL.
pub type LostCaches = std::collections::HashMap<String, crate::lost::Cache>;

/// What came back from a LoST query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostAnswer<'a> {
    /// The ECRF's response body.
    Body(&'a [u8]),
    /// Nothing usable in time, and why.
    Failed(LostFailure),
}

/// Why a LoST query gave no answer to read (the driver knows; the call's
/// record says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostFailure {
    /// Nothing came back within the deadline.
    Timeout,
    /// The ECRF's host refused the connection.
    Refused,
    /// The ECRF could not be reached otherwise (name, TLS, reset).
    Unreachable,
    /// The ECRF answered with this HTTP error status.
    Status(u16),
    /// The answer broke off while read.
    Unreadable,
    /// The answer was larger than the router reads.
    TooLarge,
    /// The destination policy (`emergency.location_servers`) does not
    /// allow the ECRF's host.
    NotAllowed,
}

impl LostFailure {
    /// One short line for the call's record (`lost_why`) and logs.
    pub fn why(self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow;
        Cow::Borrowed(match self {
            LostFailure::Timeout => "no answer from the ECRF in time",
            LostFailure::Refused => "ECRF refused the connection",
            LostFailure::Unreachable => "ECRF unreachable (name, TLS or connection failed)",
            LostFailure::Status(code) => return Cow::Owned(format!("ECRF answered HTTP {code}")),
            LostFailure::Unreadable => "ECRF answer unreadable: it broke off while read",
            LostFailure::TooLarge => "ECRF answer unreadable: larger than the router reads",
            LostFailure::NotAllowed => {
                "ECRF not asked: its host is not one emergency.location_servers allows"
            }
        })
    }
}

/// A LoST query (RFC 5222 `findService`) the routing phase asks for before
/// an initial INVITE is routed: the driver POSTs `body` to `url` and gives
/// up after `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostQuery {
    pub url: String,
    pub body: String,
    pub timeout: std::time::Duration,
}

/// A LoST query tied to no call: a cached mapping in use is near its
/// end, and is asked for again while calls route on it
/// ([`Router::poll_lost_refresh`]). The answer, or why none came, goes
/// back with [`Router::lost_refreshed`].
#[derive(Debug, Clone, PartialEq)]
pub struct LostRefresh {
    pub query: LostQuery,
    /// What the query is about, so that its answer is kept under the same
    /// key as a call's: the location and the service URN.
    pub location: crate::lost::Location,
    pub service: String,
}

/// One place to send the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    /// The trunk's name in the config.
    pub trunk: String,
    /// A URI put in a Route header above the trunk (the PSAP or queue the
    /// trunk leads to), if any.
    pub route: Option<String>,
    /// What this target is, for logs and records (a PSAP id, "screening").
    pub label: String,
}

/// Changes made to the request for every target.
#[derive(Debug, Clone, Default)]
pub struct Augment {
    /// Header lines appended (name, value).
    pub headers: Vec<(HeaderName, Bytes)>,
    /// Header lines put above the first of their name.
    pub headers_first: Vec<(HeaderName, Bytes)>,
    /// A body part added: its headers and content.
    pub body_part: Option<(Vec<(String, String)>, Bytes)>,
}

/// A caller's location kept for the call record, turned into JSON only when
/// a record or a debug log asks for it.
pub trait LocationRecord: std::fmt::Debug + Send + Sync {
    /// `source`, `method`, `civic`, `geo`, `reference`, `errors`.
    fn to_json(&self) -> serde_json::Value;
}

/// What the routing phase found out about a call, for logs (at debug level:
/// it holds the caller's location) and call records.
#[derive(Debug, Clone, Default)]
pub struct RouteDetails {
    /// `emergency` or `test`.
    pub kind: &'static str,
    /// The dial string as the caller's country knows it (`911`), or the
    /// service URN.
    pub dialed: String,
    /// The emergency service the call asks for and was routed by
    /// (`urn:service:sos.police`).
    pub service: Option<std::sync::Arc<str>>,
    /// The caller's number in E.164 form.
    pub caller: Option<String>,
    /// The caller's country (ISO 3166-1 alpha-2).
    pub country: Option<String>,
    /// `dynamic`, `registered` or `none`.
    pub routed_by: &'static str,
    /// The PSAP of the first target, and its service area.
    pub psap_id: Option<String>,
    pub area: Option<String>,
    /// Where the location came from (`pidf-civic`, `registered`, ...).
    pub location_source: &'static str,
    /// The location used.
    pub location: Option<std::sync::Arc<dyn LocationRecord>>,
    /// The caller's tenant, when the number is in the inventory.
    pub tenant: Option<String>,
    /// The address registered for the number.
    pub registered_address: Option<std::sync::Arc<dyn LocationRecord>>,
    /// Which source chose the PSAP when LoST was asked (`lost`,
    /// `lost-cache`, `lost-stale`, `embedded`), and why the ECRF's answer
    /// was not used.
    pub psap_decided_by: Option<&'static str>,
    pub lost_why: Option<String>,
}

/// The routing phase's answer.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Try these targets in order.
    Route {
        targets: Vec<RouteTarget>,
        augment: Augment,
        /// Whether this is an emergency or test call (it is never refused
        /// for an option tag, and it is recorded).
        emergency: bool,
        /// Route kind and reason code, for logs and records.
        route: &'static str,
        reason: &'static str,
        /// What was found out, when the router says.
        details: Option<Box<RouteDetails>>,
    },
    /// Answer with this final response.
    Reject { status: u16, reason: &'static str },
}

/// The routing phase. The core owns it and calls it on its own task.
pub trait Router: Send {
    fn route(&mut self, req: &Message, ctx: &RouteContext<'_>) -> Decision;

    /// A new inventory snapshot, for the calls routed from now on. Gives
    /// back the one it replaces, for the caller to let go of where freeing
    /// it costs no call anything.
    fn set_inventory(&mut self, _inventory: SharedInventory) -> Option<SharedInventory> {
        None
    }

    /// The location reference (an `http` or `https` URI) to fetch before
    /// an initial INVITE is routed, if the routing phase needs one: the
    /// document then comes in [`RouteContext::dereferenced`]. Cheap: asked
    /// of every initial INVITE.
    fn location_reference(&self, _req: &Message) -> Option<String> {
        None
    }

    /// What this router has cached from ECRFs, by ECRF URL, taken out
    /// when a reload replaces it ([`Router::keep_lost_caches`] of the new
    /// one).
    fn take_lost_caches(&mut self) -> LostCaches {
        LostCaches::new()
    }

    /// The caches of the router this one replaces: those of an ECRF this
    /// one asks too are kept, the others dropped.
    fn keep_lost_caches(&mut self, _old: LostCaches) {}

    /// The LoST query to make before an initial INVITE is routed, if the
    /// routing phase wants one (its location is known, and no fresh cached
    /// mapping answers); the answer then comes in [`RouteContext::lost`].
    /// `ctx.dereferenced` holds the location fetched by reference, if any.
    fn lost_query(&mut self, _req: &Message, _ctx: &RouteContext<'_>) -> Option<LostQuery> {
        None
    }

    /// The next background refresh of a cached LoST mapping the routing
    /// phase wants sent, if any: asked for after each query and decision.
    fn poll_lost_refresh(&mut self) -> Option<LostRefresh> {
        None
    }

    /// What came back from a refresh ([`Router::poll_lost_refresh`]), at
    /// the wall-clock time `wall`; it may reach another router than the
    /// one that asked, after a reload, which keeps it if it asks the same
    /// ECRF.
    fn lost_refreshed(
        &mut self,
        _refresh: LostRefresh,
        _answer: LostAnswer<'_>,
        _wall: Option<time::OffsetDateTime>,
    ) {
    }
}

/// Routes by the dialed number against the `[[route]]` table.
pub struct StaticRouter {
    /// Numbers, targets, and whether the route carries emergency calls.
    routes: Vec<(Vec<String>, Vec<String>, bool)>,
    reject_status: u16,
}

impl StaticRouter {
    pub fn new(config: &Config) -> Self {
        StaticRouter {
            routes: config
                .routes
                .iter()
                .map(|r| (r.numbers.clone(), r.targets.clone(), r.emergency))
                .collect(),
            reject_status: config.routing.non_emergency_status,
        }
    }
}

/// The dialed string of a request: the phone digits of its URI, or the
/// service URN.
pub fn dialed(req: &Message) -> Option<String> {
    let uri = req.request_uri()?;
    if let Some(service) = uri.service_urn() {
        return Some(format!(
            "urn:service:{}",
            String::from_utf8_lossy(service).to_ascii_lowercase()
        ));
    }
    uri.phone_digits().map(|d| d.as_str().to_string())
}

impl Router for StaticRouter {
    fn route(&mut self, req: &Message, _ctx: &RouteContext<'_>) -> Decision {
        let Some(number) = dialed(req) else {
            return Decision::Reject {
                status: self.reject_status,
                reason: "Not An Emergency Call",
            };
        };
        for (numbers, targets, emergency) in &self.routes {
            let hit = numbers.iter().any(|n| {
                n == "*"
                    || *n == number
                    || (n.starts_with("urn:service:") && number.starts_with(n.as_str()))
            });
            if hit {
                return Decision::Route {
                    targets: targets
                        .iter()
                        .map(|t| RouteTarget {
                            trunk: t.clone(),
                            route: None,
                            label: t.clone(),
                        })
                        .collect(),
                    augment: Augment::default(),
                    emergency: *emergency,
                    route: "static",
                    reason: "static-route",
                    details: None,
                };
            }
        }
        Decision::Reject {
            status: self.reject_status,
            reason: "Not An Emergency Call",
        }
    }
}
