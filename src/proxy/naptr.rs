//! The transport of a next hop named by a host alone (RFC 3263 section
//! 4.1).
//!
//! A trunk URI, or a Route value of a request within a dialog, that names
//! a host with no port, no `transport` parameter and no `sips:` leaves the
//! transport to the host's NAPTR records (then SRV, then UDP). The driver
//! looks them up and reports what they chose ([`Core::handle_naptr`]):
//! for trunk hosts before the first call and after a reload; for a Route
//! host when a request first needs it ([`Core::poll_naptr`]); for every
//! host known here again every `sip.name_refresh_s`.
//!
//! A request whose Route host has not been looked up yet waits here until
//! the answer comes, at most [`CoreConfig::naptr_wait`](super::CoreConfig)
//! (twice `sip.name_timeout_ms`); then it goes over UDP, the transport RFC
//! 3263 falls back to. Its server transaction is open meanwhile, so a
//! retransmission of it is absorbed. At most [`MAX_WAITING`] requests wait
//! at once; past that, a request goes over UDP at once. The answers are
//! kept by host: all those of trunk hosts, at most [`MAX_ROUTE_HOSTS`] of
//! Route hosts (past that, the Route hosts are forgotten and looked up
//! again when next used).
//!
//! Only requests within a dialog follow Route values here: a new request
//! goes to the trunk its routing chose.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use tracing::warn;

use super::{Core, Id, IdMap, Proto, Source, TimerRef};
use crate::sip::{Message, Uri};
use crate::wire::Target;

/// At most this many requests wait for their next hop's transport.
pub(super) const MAX_WAITING: usize = 1024;

/// At most this many Route hosts' transports are kept.
pub(super) const MAX_ROUTE_HOSTS: usize = 4096;

/// A request waiting for its next hop's transport.
pub(super) enum Parked {
    /// A request within a dialog, with its server transaction open.
    Request {
        server: Id,
        msg: Message,
        source: Source,
        loop_hash: u64,
    },
    /// The ACK of a 2xx, which has no transaction.
    Ack {
        msg: Message,
        source: Source,
        loop_hash: u64,
    },
}

/// What NAPTR records chose, and what waits for them.
#[derive(Default)]
pub(super) struct Transports {
    /// By host (lower case): the transport, and whether the host was met
    /// only in a Route value.
    chosen: HashMap<String, (Proto, bool)>,
    route_hosts: usize,
    /// Requests waiting, by host, with the id of the host's timer.
    waiting: HashMap<String, (Id, Vec<Parked>)>,
    /// The timers' hosts.
    timers: IdMap<String>,
    parked: usize,
    /// Hosts to look up, for the driver.
    asks: VecDeque<String>,
}

/// The host whose NAPTR records choose the transport to `uri`: a name with
/// no port, and no transport given (lower case).
pub(super) fn naptr_host(uri: &Uri<'_>, target: &Target) -> Option<String> {
    match target {
        Target::Host(h, 0) if super::uri_transport(uri).is_none() => Some(h.to_ascii_lowercase()),
        _ => None,
    }
}

impl Transports {
    pub(super) fn get(&self, host: &str) -> Option<Proto> {
        self.chosen.get(host).map(|(p, _)| *p)
    }

    pub(super) fn has_room(&self) -> bool {
        self.parked < MAX_WAITING
    }

    /// Records `proto` for `host`; whether it changed.
    fn set(&mut self, host: &str, proto: Proto, route_only: bool) -> bool {
        if let Some((p, r)) = self.chosen.get_mut(host) {
            let changed = *p != proto;
            *p = proto;
            if *r && !route_only {
                *r = false;
                self.route_hosts -= 1;
            }
            return changed;
        }
        if route_only {
            if self.route_hosts >= MAX_ROUTE_HOSTS {
                self.chosen.retain(|_, (_, r)| !*r);
                self.route_hosts = 0;
            }
            self.route_hosts += 1;
        }
        self.chosen.insert(host.to_string(), (proto, route_only));
        true
    }
}

impl Core {
    /// The hosts whose NAPTR records choose a transport, for the driver to
    /// look up (at start, after a reload, and again as their records age):
    /// the trunks' and the Route hosts' met so far.
    pub fn naptr_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = (self.cfg.trunks.iter())
            .filter_map(|t| t.naptr_host.clone())
            .chain(self.naptr.chosen.keys().cloned())
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Whether `host`'s transport has been found (since it was configured,
    /// for a trunk host).
    pub fn naptr_known(&self, host: &str) -> bool {
        self.naptr.chosen.contains_key(&host.to_ascii_lowercase())
    }

    /// Whether `host` is a trunk's (the log says which kind of next hop
    /// it is).
    pub fn naptr_for_trunk(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.cfg
            .trunks
            .iter()
            .any(|t| t.naptr_host.as_deref() == Some(host.as_str()))
    }

    /// `host`'s NAPTR records chose `proto` (RFC 3263 section 4.1): the
    /// trunks and Route values that leave their transport to them use it
    /// for the requests sent from now on. Gives back whether anything
    /// changed.
    pub fn set_naptr_transport(&mut self, host: &str, proto: Proto) -> bool {
        let host = host.to_ascii_lowercase();
        let trunk = self.naptr_for_trunk(&host);
        let mut changed = self.naptr.set(&host, proto, !trunk);
        for t in &mut self.cfg.trunks {
            if t.naptr_host.as_deref() == Some(host.as_str()) && t.proto != proto {
                t.proto = proto;
                changed = true;
            }
        }
        changed
    }

    /// The driver's answer for `host`: the transport its records chose, or
    /// none (no records, or the lookup failed: the last answer stays, and a
    /// host never answered is taken as UDP). Requests waiting for it go
    /// on. Gives back whether anything changed.
    pub fn handle_naptr(&mut self, now: Instant, host: &str, proto: Option<Proto>) -> bool {
        self.timers.anchor(now);
        let host = host.to_ascii_lowercase();
        let changed = match proto {
            Some(p) => self.set_naptr_transport(&host, p),
            None if self.naptr.waiting.contains_key(&host) && !self.naptr_known(&host) => {
                let route_only = !self.naptr_for_trunk(&host);
                self.naptr.set(&host, Proto::Udp, route_only)
            }
            None => false,
        };
        self.release_naptr(now, &host);
        changed
    }

    /// The next host to look up for a request that waits for it.
    pub fn poll_naptr(&mut self) -> Option<String> {
        self.naptr.asks.pop_front()
    }

    /// Requests within a dialog waiting for their next hop's transport.
    pub fn naptr_waiting(&self) -> usize {
        self.naptr.parked
    }

    /// The transports found before apply to a new configuration's trunks.
    pub(super) fn apply_naptr(&mut self) {
        for t in &mut self.cfg.trunks {
            let Some(h) = t.naptr_host.as_deref() else {
                continue;
            };
            if let Some(p) = self.naptr.get(h) {
                t.proto = p;
                self.naptr.set(h, p, false);
            }
        }
    }

    /// Holds `parked` until `host`'s transport is known; asks the driver
    /// for it when the host is new.
    pub(super) fn park_for_naptr(&mut self, now: Instant, host: String, parked: Parked) {
        self.naptr.parked += 1;
        if let Some((_, list)) = self.naptr.waiting.get_mut(&host) {
            list.push(parked);
            return;
        }
        let id = self.id();
        self.timers
            .push(now + self.cfg.naptr_wait, TimerRef::NaptrWait(id));
        self.naptr.timers.insert(id, host.clone());
        self.naptr.asks.push_back(host.clone());
        self.naptr.waiting.insert(host, (id, vec![parked]));
    }

    /// No answer for a Route host in time: what waits for it goes over
    /// UDP.
    pub(super) fn on_naptr_timeout(&mut self, now: Instant, id: Id) {
        let Some(host) = self.naptr.timers.get(&id).cloned() else {
            return;
        };
        if self.naptr.waiting.get(&host).is_some_and(|(t, _)| *t == id) {
            warn!(%host, wait_ms = self.cfg.naptr_wait.as_millis() as u64, "no NAPTR answer in time for a Route host: its requests go over UDP");
            self.handle_naptr(now, &host, None);
        }
        self.naptr.timers.remove(&id);
    }

    /// Sends on what waited for `host`, in the order it came.
    fn release_naptr(&mut self, now: Instant, host: &str) {
        let Some((id, list)) = self.naptr.waiting.remove(host) else {
            return;
        };
        self.naptr.timers.remove(&id);
        self.naptr.parked -= list.len();
        for p in list {
            match p {
                Parked::Request {
                    server,
                    msg,
                    source,
                    loop_hash,
                } => {
                    // Gone if the transaction was ended meanwhile.
                    if self.txns.contains_key(&server) {
                        self.forward_by_route(now, server, msg, source, loop_hash);
                    }
                }
                Parked::Ack {
                    msg,
                    source,
                    loop_hash,
                } => self.ack_by_route(now, msg, source, loop_hash),
            }
        }
    }
}
