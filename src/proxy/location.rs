//! Phase 1b: location by reference (RFC 6753).
//!
//! An initial INVITE whose only location is a reference (an `http(s)` URI
//! in its Geolocation header, as the routing phase finds it with
//! [`Router::location_reference`](super::Router::location_reference)) waits
//! here while the driver fetches the document: the core asks for the fetch
//! ([`Core::poll_fetch`]), answers the INVITE `100 Trying`, and routes it
//! when the result comes in ([`Core::handle_fetched`]) or when its own
//! deadline passes, whichever is first. The call never waits longer than
//! `emergency.dereference_timeout_ms` plus a margin.
//!
//! Meanwhile a retransmission of the INVITE is answered `100` again and a
//! CANCEL of it waits here, so that it follows the INVITE into the proxy
//! instead of being answered 481 before the call exists. Both are matched
//! by the INVITE's server transaction key.
//!
//! How many fetches run is bounded here too: at most `in_flight` in all and
//! `per_server` from one server; a call that finds no room is routed at
//! once without its location. Where the document may come from (the
//! destination policy) and the HTTP itself are the driver's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::txn::server_key;
use super::{lossy, Core, Id, IdMap, KeyMap, Load, LostFailure, RouteContext, Source, TimerRef};
use crate::logbuf::Throttle;
use crate::metrics as m;
use crate::sip::{Message, Method};
use crate::transaction::TransactionKey;

/// The core's answer wait past the fetch deadline it gives the driver: the
/// driver's own report (a document, or why there is none) normally comes
/// first; this only ends the wait when it never comes.
const MARGIN: Duration = Duration::from_millis(250);

/// `emergency.dereference_timeout_ms` and the limits on fetches.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// How long a fetch may take; zero: locations by reference are not
    /// fetched.
    pub timeout: Duration,
    /// At most this many fetches at once.
    pub in_flight: usize,
    /// At most this many at once from one server
    /// (`emergency.location_fetches_per_server`).
    pub per_server: usize,
    /// `emergency.location_servers`: the only servers asked, when set.
    pub servers: Option<Arc<[String]>>,
}

impl FetchConfig {
    /// Fetches at most this many locations at once. A flood of calls
    /// carrying references must not become a flood of connections.
    pub const IN_FLIGHT: usize = 256;

    /// Fetches from one server at once when any server may be named.
    pub const PER_SERVER: usize = 4;

    pub fn from_config(c: &crate::config::EmergencyConfig) -> FetchConfig {
        let servers: Option<Arc<[String]>> = c.location_servers.as_ref().map(|v| v.clone().into());
        FetchConfig {
            timeout: Duration::from_millis(c.dereference_timeout_ms.unwrap_or(1000)),
            in_flight: FetchConfig::IN_FLIGHT,
            // Servers the operator listed are its carriers' own: a surge of
            // calls through one of them must not lose their locations, so
            // only the overall cap holds them. A server the caller names
            // gets a small share.
            per_server: c
                .location_fetches_per_server
                .unwrap_or(if servers.is_some() {
                    FetchConfig::IN_FLIGHT
                } else {
                    FetchConfig::PER_SERVER
                })
                .max(1),
            servers,
        }
    }

    /// No fetches at all.
    pub fn off() -> FetchConfig {
        FetchConfig {
            timeout: Duration::ZERO,
            in_flight: 0,
            per_server: 0,
            servers: None,
        }
    }
}

/// A fetch the driver is to perform: an HTTP request to `uri` (a HELD
/// locationRequest, RFC 5985), given up after `timeout`. The result goes
/// back with [`Core::handle_fetched`] and the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationFetch {
    pub id: u64,
    /// The reference. It is itself a key to the caller's location: it
    /// stays out of logs below debug level.
    pub uri: String,
    pub timeout: Duration,
    /// The call's Call-ID, printable, for the driver's log lines.
    pub call_id: String,
    /// Set for a LoST query (RFC 5222): `uri` is the ECRF and this the
    /// `findService` to POST to it, instead of a HELD request.
    pub lost: Option<String>,
    /// A LoST query tied to no call: the background refresh of a cached
    /// mapping ([`super::LostRefresh`]); `call_id` is empty.
    pub refresh: bool,
}

/// An INVITE waiting for its location.
struct Waiting {
    key: TransactionKey,
    invite: Message,
    source: Source,
    /// Its CANCEL, when one came meanwhile.
    cancel: Option<(Message, Source)>,
    /// The server the reference names (lower case, no trailing dot).
    host: Box<str>,
    /// Waiting for a LoST answer rather than a location document.
    lost: bool,
    /// For a LoST wait: the location document fetched by reference before
    /// it, if any.
    document: Option<Bytes>,
}

/// The fetches under way and what waits for them.
#[derive(Default)]
pub(super) struct Fetches {
    waiting: IdMap<Waiting>,
    /// Background refreshes of LoST mappings under way, with their
    /// server: no call waits for them.
    refreshing: IdMap<(super::LostRefresh, Box<str>)>,
    by_key: KeyMap<TransactionKey, Id>,
    /// Fetches under way by server.
    per_host: KeyMap<Box<str>, usize>,
    out: VecDeque<LocationFetch>,
    /// When to log calls routed without their fetch for want of room.
    busy: Option<Throttle>,
}

impl Fetches {
    /// Fetches and queries under way, refreshes included: they share the
    /// limits.
    pub(super) fn len(&self) -> usize {
        self.waiting.len() + self.refreshing.len()
    }

    fn remove(&mut self, id: Id) -> Option<Waiting> {
        let w = self.waiting.remove(&id)?;
        self.by_key.remove(&w.key);
        self.done_with(&w.host);
        Some(w)
    }

    fn remove_refresh(&mut self, id: Id) -> Option<super::LostRefresh> {
        let (r, host) = self.refreshing.remove(&id)?;
        self.done_with(&host);
        Some(r)
    }

    /// One fetch from `host` fewer under way.
    fn done_with(&mut self, host: &str) {
        if let Some(n) = self.per_host.get_mut(host) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(host);
            }
        }
    }
}

/// The server a reference names, as compared for the per-server limit:
/// the host as the URL parser writes it (an IP address in its plain
/// form), lower case, without a trailing dot; the port does not make
/// another server.
fn server_of(uri: &str) -> Option<Box<str>> {
    let url = url::Url::parse(uri).ok()?;
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    Some(host.into())
}

impl Core {
    /// Takes a request into the location phase when it is an INVITE
    /// waiting for its location (a retransmission of one, or a CANCEL of
    /// one), or an initial INVITE whose location is to be fetched; gives
    /// every other request back. A router refusing every new call, or
    /// shutting down, fetches nothing: the INVITE goes on to be answered.
    pub(super) fn take_for_location(
        &mut self,
        now: Instant,
        msg: Message,
        source: Source,
        key: &TransactionKey,
    ) -> Option<(Message, Source)> {
        match msg.method() {
            Method::Cancel if self.fetches.len() > 0 => {
                return self.hold_cancel(msg, source);
            }
            Method::Invite if msg.to().and_then(|t| t.tag()).is_none() => {}
            _ => return Some((msg, source)),
        }
        if self.fetches.by_key.contains_key(key) {
            debug!(call_id = %lossy(msg.call_id()), "retransmission of an INVITE whose location is being fetched; answered 100");
            self.trying(&msg, &source);
            return None;
        }
        if self.draining || self.load() == Load::Full {
            return Some((msg, source));
        }
        let reference = if self.cfg.fetch.timeout.is_zero() {
            None
        } else {
            self.router.location_reference(&msg)
        };
        let Some(uri) = reference else {
            return self.take_for_lost(now, msg, source, key);
        };
        let Some(host) = server_of(&uri) else {
            metrics::counter!(m::DEREFERENCE_SKIPPED, "reason" => "not_url").increment(1);
            return Some((msg, source));
        };
        if let Some((reason, why)) = self.no_room(&host) {
            metrics::counter!(m::DEREFERENCE_SKIPPED, "reason" => reason).increment(1);
            let throttle = self
                .fetches
                .busy
                .get_or_insert_with(|| Throttle::new(crate::logbuf::TELL_EVERY));
            if let Some(calls) = throttle.hit(now) {
                warn!(calls, host = %host, why, call_id = %lossy(msg.call_id()), "location by reference not fetched; routing without it (count since the last such line)");
            }
            return Some((msg, source));
        }
        let id = self.id();
        self.trying(&msg, &source);
        *self.fetches.per_host.entry(host.clone()).or_insert(0) += 1;
        self.fetches.by_key.insert(key.clone(), id);
        self.fetches.out.push_back(LocationFetch {
            id,
            uri,
            timeout: self.cfg.fetch.timeout,
            call_id: lossy(msg.call_id()).to_string(),
            lost: None,
            refresh: false,
        });
        self.timers
            .push(now + self.cfg.fetch.timeout + MARGIN, TimerRef::Fetch(id));
        self.fetches.waiting.insert(
            id,
            Waiting {
                key: key.clone(),
                invite: msg,
                source,
                cancel: None,
                host,
                lost: false,
                document: None,
            },
        );
        None
    }

    /// Why there is no room for another fetch from `host`, if there is
    /// none: the label of `sosrouter_location_fetches_skipped_total` and
    /// the words of the log line.
    fn no_room(&self, host: &str) -> Option<(&'static str, &'static str)> {
        if self.fetches.len() >= self.cfg.fetch.in_flight {
            Some(("busy", "every fetch busy"))
        } else if self.fetches.per_host.get(host).copied().unwrap_or(0) >= self.cfg.fetch.per_server
        {
            Some((
                "server_busy",
                "its server has emergency.location_fetches_per_server fetches under way",
            ))
        } else {
            None
        }
    }

    /// The LoST query the routing phase wants for an INVITE, with the
    /// document fetched by reference for it: `None` when it wants none,
    /// or when there is no room (the call is then routed at once, on a
    /// cached mapping or the embedded data).
    fn lost_query_for(
        &mut self,
        now: Instant,
        invite: &Message,
        source: &Source,
        document: Option<&[u8]>,
    ) -> Option<(super::LostQuery, Box<str>)> {
        let ctx = RouteContext {
            source,
            inbound_trunk: super::inbound_trunk(&self.cfg, &self.identified, source)
                .map(|t| t.name.as_str()),
            dereferenced: document,
            lost: None,
            wall: self.wall_at(now),
            unique: 0,
        };
        let q = self.router.lost_query(invite, &ctx);
        self.send_lost_refreshes(now);
        let q = q?;
        let Some(host) = server_of(&q.url) else {
            metrics::counter!(m::LOST_QUERIES, "outcome" => "not_url").increment(1);
            return None;
        };
        if let Some((reason, _)) = self.no_room(&host) {
            metrics::counter!(m::LOST_QUERIES, "outcome" => reason).increment(1);
            return None;
        }
        Some((q, host))
    }

    /// Sends the background refreshes the routing phase asks for, within
    /// the limits on fetches: one that finds no room is not sent (its
    /// mapping serves on, and is claimed again later).
    pub(super) fn send_lost_refreshes(&mut self, now: Instant) {
        while let Some(mut r) = self.router.poll_lost_refresh() {
            let Some(host) = server_of(&r.query.url) else {
                metrics::counter!(m::LOST_REFRESHES, "outcome" => "not_url").increment(1);
                continue;
            };
            if let Some((reason, _)) = self.no_room(&host) {
                metrics::counter!(m::LOST_REFRESHES, "outcome" => reason).increment(1);
                continue;
            }
            let id = self.id();
            *self.fetches.per_host.entry(host.clone()).or_insert(0) += 1;
            self.fetches.out.push_back(LocationFetch {
                id,
                uri: r.query.url.clone(),
                timeout: r.query.timeout,
                call_id: String::new(),
                lost: Some(std::mem::take(&mut r.query.body)),
                refresh: true,
            });
            self.timers
                .push(now + r.query.timeout + MARGIN, TimerRef::Fetch(id));
            self.fetches.refreshing.insert(id, (r, host));
        }
    }

    /// Parks an INVITE for its LoST query, as for a fetch; the answer (or
    /// its absence at the deadline) routes it.
    fn park_lost(&mut self, now: Instant, mut w: Waiting, q: super::LostQuery, host: Box<str>) {
        let id = self.id();
        *self.fetches.per_host.entry(host.clone()).or_insert(0) += 1;
        self.fetches.by_key.insert(w.key.clone(), id);
        self.fetches.out.push_back(LocationFetch {
            id,
            uri: q.url,
            timeout: q.timeout,
            call_id: lossy(w.invite.call_id()).to_string(),
            lost: Some(q.body),
            refresh: false,
        });
        self.timers
            .push(now + q.timeout + MARGIN, TimerRef::Fetch(id));
        w.host = host;
        w.lost = true;
        self.fetches.waiting.insert(id, w);
    }

    /// An initial INVITE with no location to fetch: it waits for a LoST
    /// query when the routing phase asks for one, else it is given back.
    fn take_for_lost(
        &mut self,
        now: Instant,
        msg: Message,
        source: Source,
        key: &TransactionKey,
    ) -> Option<(Message, Source)> {
        let Some((q, host)) = self.lost_query_for(now, &msg, &source, None) else {
            return Some((msg, source));
        };
        self.trying(&msg, &source);
        let w = Waiting {
            key: key.clone(),
            invite: msg,
            source,
            cancel: None,
            host: host.clone(),
            lost: true,
            document: None,
        };
        self.park_lost(now, w, q, host);
        None
    }

    /// A CANCEL of an INVITE whose location is being fetched waits for it:
    /// answered now, it would get 481, and the call the caller gave up on
    /// would then be routed. Its retransmissions meanwhile are dropped (the
    /// first one gets the proxy's answer). Any other CANCEL is given back.
    fn hold_cancel(&mut self, msg: Message, source: Source) -> Option<(Message, Source)> {
        let invite_key = server_key(&msg, Some(b"INVITE"));
        let Some(id) = self.fetches.by_key.get(&invite_key) else {
            return Some((msg, source));
        };
        let waiting = self.fetches.waiting.get_mut(id)?;
        if waiting.cancel.is_none() {
            debug!(call_id = %lossy(msg.call_id()), "CANCEL of an INVITE whose location is being fetched; held until the INVITE is routed");
            waiting.cancel = Some((msg, source));
        }
        None
    }

    /// The fetch `id` is over: `document` is what came back in time, if
    /// anything. The INVITE is routed now, with it, and a CANCEL held for
    /// it follows. A result that comes after the core stopped waiting is
    /// dropped.
    pub fn handle_fetched(&mut self, now: Instant, id: u64, document: Option<Bytes>) {
        self.fetched(now, id, document.ok_or(LostFailure::Timeout));
    }

    /// The LoST query of fetch `id` gave no answer, for the reason `why`
    /// (which the call's record keeps); for a location fetch, the same as
    /// [`Core::handle_fetched`] with no document.
    pub fn handle_lost_failed(&mut self, now: Instant, id: u64, why: LostFailure) {
        self.fetched(now, id, Err(why));
    }

    fn fetched(&mut self, now: Instant, id: u64, result: Result<Bytes, LostFailure>) {
        self.timers.anchor(now);
        self.lost_answer = None;
        if let Some(r) = self.fetches.remove_refresh(id) {
            let answer = match &result {
                Ok(body) => super::LostAnswer::Body(body),
                Err(why) => super::LostAnswer::Failed(*why),
            };
            let wall = self.wall_at(now);
            self.router.lost_refreshed(r, answer, wall);
            return;
        }
        let Some(w) = self.fetches.waiting.get(&id) else {
            debug!(
                fetch = id,
                "location fetched after its call was routed; dropped"
            );
            return;
        };
        let (key, invite, source, lost) = (w.key.clone(), w.invite.clone(), w.source, w.lost);
        let (dereferenced, answer) = if lost {
            let w = self.fetches.waiting.get(&id);
            (w.and_then(|w| w.document.clone()), Some(result))
        } else {
            let document = result.ok();
            if document.is_some() {
                info!(call_id = %lossy(invite.call_id()), "location fetched by reference");
            }
            // The location known, the routing phase may want a LoST query
            // for it: the INVITE waits on, with its document.
            if let Some((q, host)) = self.lost_query_for(now, &invite, &source, document.as_deref())
            {
                if let Some(mut w) = self.fetches.remove(id) {
                    w.document = document;
                    self.park_lost(now, w, q, host);
                    return;
                }
            }
            (document, None)
        };
        // Kept waiting until the INVITE has been handled: should that hit a
        // bug, the driver answers it with [`Core::abandon_fetch`].
        self.lost_answer = answer;
        self.on_located(now, key, invite, source, dereferenced.as_deref());
        self.lost_answer = None;
        if let Some((cancel, source)) = self.fetches.remove(id).and_then(|w| w.cancel) {
            self.on_request(now, cancel, source);
        }
    }

    /// The core's own deadline for a fetch passed with no word from the
    /// driver: the call is routed without the location.
    pub(super) fn on_fetch_timeout(&mut self, now: Instant, id: Id) {
        if self.fetches.refreshing.contains_key(&id) {
            warn!("LoST refresh not reported in time; the cached mapping serves until it expires");
            return self.handle_lost_failed(now, id, LostFailure::Timeout);
        }
        if let Some(w) = self.fetches.waiting.get(&id) {
            if w.lost {
                warn!(call_id = %lossy(w.invite.call_id()), "LoST answer not reported in time; routing without it");
            } else {
                warn!(call_id = %lossy(w.invite.call_id()), "location fetch not reported in time; routing without it");
            }
            self.handle_fetched(now, id, None);
        }
    }

    /// Handling the INVITE of fetch `id` hit a bug (the driver caught the
    /// panic): the INVITE is answered 500 from its server transaction, as
    /// any request that met a bug is, and forgotten with its CANCEL.
    pub fn abandon_fetch(&mut self, now: Instant, id: u64) {
        // The answer set for the INVITE that met the bug must not reach
        // another call's decision.
        self.lost_answer = None;
        self.fetches.remove_refresh(id);
        if let Some(w) = self.fetches.remove(id) {
            self.answer_internal_error(now, &w.invite, w.source);
        }
    }

    /// The next location the driver is to fetch.
    pub fn poll_fetch(&mut self) -> Option<LocationFetch> {
        self.fetches.out.pop_front()
    }
}
