//! Next hops given by host name (a trunk's URI, a Route header): their
//! addresses, kept between messages.
//!
//! A name is looked up once and its address reused for `refresh`; after
//! that the address is still used while a new lookup runs in the
//! background. A lookup that fails or times out keeps the last address
//! that worked: a resolver outage must not stop calls to a trunk that is
//! itself up (a dead address is caught by the proxy's failover timers like
//! any silent trunk). Messages for a name never resolved wait, in order,
//! for its first answer; if that answer is a failure they fail, which the
//! proxy turns into failover to the next target.
//!
//! A lookup may give several targets in order (RFC 3263: the SRV targets
//! of a name by priority and weight): a message goes to the first, and the
//! proxy, when it fails over, names the next one ([`Target::HostAlt`]). An
//! answer that says how long it holds (the DNS records' TTL) is used that
//! long, at most `refresh`.
//!
//! The cache is sans-IO: time is an input, lookups are requested and their
//! answers handed back by the driver (`driver/sip_loop.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use crate::config::NameSettings;
use crate::wire::{Proto, Target, Transmit};

/// Messages that may wait for one name's first answer; past that they
/// fail at once.
pub const MAX_WAITING: usize = 1024;
/// Names kept. When full, names neither fresh nor in use are forgotten; a
/// new name past that fails its message (names come from configuration
/// and from Route headers of allowed peers, so this is far above need).
pub const MAX_NAMES: usize = 4096;

/// What to do with a message now.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send it to this address.
    Send(SocketAddr, Transmit),
    /// It waits for the name's first answer (the cache keeps it).
    Queued,
    /// Too many messages already wait for this name: it fails.
    Full(Transmit),
}

#[derive(Debug, Default)]
struct Entry {
    /// The targets, in the order to try them; the first is the address.
    addrs: Vec<SocketAddr>,
    /// When `addrs` was last confirmed by a lookup.
    confirmed: Option<Instant>,
    /// How long the last answer holds (its TTL), when it said.
    ttl: Option<Duration>,
    looking_up: bool,
    waiting: Vec<Transmit>,
    /// The transport of the first message for it: which SRV records name
    /// its targets.
    proto: Option<Proto>,
}

impl Entry {
    fn refresh(&self, settings: &NameSettings) -> Duration {
        match self.ttl {
            Some(ttl) => ttl.clamp(
                Duration::from_secs(1),
                settings.refresh.max(Duration::from_secs(1)),
            ),
            None => settings.refresh,
        }
    }
}

#[derive(Debug, Default)]
pub struct NameCache {
    entries: HashMap<(String, u16), Entry>,
    settings: NameSettings,
    /// Lookups the driver is to start.
    lookups: Vec<(String, u16)>,
    /// Messages that waited for an answer and now have an address, in the
    /// order they came.
    ready: Vec<(SocketAddr, Transmit)>,
}

/// What a lookup's answer did.
#[derive(Debug, Default)]
pub struct Answered {
    /// The address now in use, if any.
    pub addr: Option<SocketAddr>,
    /// The lookup failed and the last address that worked was kept.
    pub kept_stale: bool,
    /// The lookup found another address than the one in use.
    pub moved: bool,
    /// Messages that waited and have nowhere to go: they fail.
    pub failed: Vec<Transmit>,
    /// How many targets the name has now.
    pub targets: usize,
    /// The name had no address before this answer.
    pub first: bool,
}

impl NameCache {
    pub fn new(settings: NameSettings) -> NameCache {
        NameCache {
            settings,
            ..NameCache::default()
        }
    }

    pub fn settings(&self) -> NameSettings {
        self.settings
    }

    pub fn set_settings(&mut self, settings: NameSettings) {
        self.settings = settings;
    }

    /// Where `t` goes now: straight to its address, or, bound for a host
    /// name, to the name's address if it has one.
    pub fn route(&mut self, t: Transmit, now: Instant) -> Next {
        let (key, nth) = match &t.dest.target {
            Target::Addr(a) => return Next::Send(*a, t),
            Target::Host(host, port) => ((host.to_ascii_lowercase(), *port), 0),
            Target::HostAlt(host, port, n) => ((host.to_ascii_lowercase(), *port), *n),
        };
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_NAMES {
            let refresh = self.settings.refresh;
            self.entries.retain(|_, e| {
                e.looking_up
                    || !e.waiting.is_empty()
                    || e.confirmed
                        .is_some_and(|at| now.saturating_duration_since(at) < refresh)
            });
            if self.entries.len() >= MAX_NAMES {
                return Next::Full(t);
            }
        }
        let e = self.entries.entry(key.clone()).or_default();
        e.proto.get_or_insert(t.dest.proto);
        let refresh = e.refresh(&self.settings);
        let due = e
            .confirmed
            .is_none_or(|at| now.saturating_duration_since(at) >= refresh);
        if due && !e.looking_up {
            e.looking_up = true;
            self.lookups.push(key);
        }
        match e.addrs.get(nth) {
            Some(a) => Next::Send(*a, t),
            // A later target the name no longer has.
            None if !e.addrs.is_empty() => Next::Full(t),
            None if e.waiting.len() >= MAX_WAITING => Next::Full(t),
            None => {
                e.waiting.push(t);
                Next::Queued
            }
        }
    }

    /// The lookups to start (each name at most once at a time).
    pub fn take_lookups(&mut self) -> Vec<(String, u16)> {
        std::mem::take(&mut self.lookups)
    }

    /// `host`'s NAPTR records now choose `proto` for the trunks that leave
    /// it to them: the name (without a port) is looked up again for that
    /// transport's SRV records at its next message; its addresses serve
    /// until then.
    pub fn transport_changed(&mut self, host: &str, proto: Proto) {
        if let Some(e) = self.entries.get_mut(&(host.to_ascii_lowercase(), 0)) {
            e.proto = Some(proto);
            e.confirmed = None;
        }
    }

    /// The transport a name is looked up for (its SRV records).
    pub fn proto_of(&self, host: &str, port: u16) -> Proto {
        self.entries
            .get(&(host.to_ascii_lowercase(), port))
            .and_then(|e| e.proto)
            .unwrap_or(Proto::Udp)
    }

    /// A lookup for `host:port` came back with `found` (`None`: it failed
    /// or timed out).
    pub fn answer(
        &mut self,
        host: &str,
        port: u16,
        found: Option<SocketAddr>,
        now: Instant,
    ) -> Answered {
        self.answer_all(host, port, found.map(|a| vec![a]), None, now)
    }

    /// A lookup for `host:port` came back with its targets in order
    /// (`None` or none: it failed or timed out), good for `ttl` when the
    /// answer says.
    pub fn answer_all(
        &mut self,
        host: &str,
        port: u16,
        found: Option<Vec<SocketAddr>>,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Answered {
        let e = self
            .entries
            .entry((host.to_ascii_lowercase(), port))
            .or_default();
        e.looking_up = false;
        let found = found.filter(|f| !f.is_empty());
        let first = e.addrs.is_empty() && found.is_some();
        let kept_stale = found.is_none() && !e.addrs.is_empty();
        let moved = found
            .as_ref()
            .is_some_and(|f| !e.addrs.is_empty() && f.first() != e.addrs.first());
        if let Some(f) = found {
            e.addrs = f;
            e.confirmed = Some(now);
            e.ttl = ttl;
        }
        let waiting = std::mem::take(&mut e.waiting);
        let mut failed = Vec::new();
        for t in waiting {
            let nth = match &t.dest.target {
                Target::HostAlt(_, _, n) => *n,
                _ => 0,
            };
            match e.addrs.get(nth) {
                Some(a) => self.ready.push((*a, t)),
                None => failed.push(t),
            }
        }
        Answered {
            addr: e.addrs.first().copied(),
            kept_stale,
            moved,
            failed,
            targets: e.addrs.len(),
            first,
        }
    }

    /// Messages that waited for an answer and can now be sent.
    pub fn take_ready(&mut self) -> Vec<(SocketAddr, Transmit)> {
        std::mem::take(&mut self.ready)
    }

    /// Names known (for tests and the operator's eye).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Dest, Proto};
    use bytes::Bytes;
    use std::time::Duration;

    fn to(host: &str, port: u16, token: u64) -> Transmit {
        Transmit {
            dest: Dest {
                proto: Proto::Udp,
                target: Target::Host(host.into(), port),
                conn: None,
            },
            bytes: Bytes::from_static(b"INVITE"),
            token: Some(token),
        }
    }

    fn t(token: u64) -> Transmit {
        to(HOST, 5060, token)
    }

    /// The address a message is sent to, if it is sent now.
    fn sent(n: Next) -> Option<SocketAddr> {
        match n {
            Next::Send(a, _) => Some(a),
            _ => None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const HOST: &str = "psap.example.net";

    #[test]
    fn the_first_messages_wait_in_order_for_one_lookup() {
        let mut c = NameCache::new(NameSettings::default());
        let now = Instant::now();
        assert_eq!(c.route(t(1), now), Next::Queued);
        assert_eq!(c.route(to("PSAP.example.NET", 5060, 2), now), Next::Queued);
        assert_eq!(c.take_lookups(), vec![(HOST.to_string(), 5060)]);
        assert!(c.take_lookups().is_empty(), "one lookup at a time");
        let a = c.answer(HOST, 5060, Some(addr("192.0.2.7:5060")), now);
        assert_eq!(a.addr, Some(addr("192.0.2.7:5060")));
        assert!(a.failed.is_empty());
        assert!(!a.kept_stale && !a.moved);
        assert_eq!(
            c.take_ready()
                .iter()
                .map(|(a, t)| (*a, t.token))
                .collect::<Vec<_>>(),
            vec![
                (addr("192.0.2.7:5060"), Some(1)),
                (addr("192.0.2.7:5060"), Some(2))
            ]
        );
        // Then straight to the address, with no new lookup while fresh.
        let later = now + Duration::from_secs(59);
        assert_eq!(sent(c.route(t(3), later)), Some(addr("192.0.2.7:5060")));
        assert!(c.take_lookups().is_empty());
        // Another port is another next hop.
        assert_eq!(c.route(to(HOST, 5080, 4), later), Next::Queued);
        assert_eq!(c.take_lookups(), vec![(HOST.to_string(), 5080)]);
    }

    #[test]
    fn an_address_needs_no_name() {
        let mut c = NameCache::new(NameSettings::default());
        let mut m = t(1);
        m.dest.target = Target::Addr(addr("192.0.2.1:5060"));
        assert_eq!(
            c.route(m.clone(), Instant::now()),
            Next::Send(addr("192.0.2.1:5060"), m)
        );
        assert!(c.is_empty() && c.take_lookups().is_empty());
    }

    #[test]
    fn an_old_address_is_used_while_it_is_looked_up_again() {
        let mut c = NameCache::new(NameSettings::default());
        let now = Instant::now();
        c.route(t(1), now);
        c.take_lookups();
        c.answer(HOST, 5060, Some(addr("192.0.2.7:5060")), now);
        let later = now + Duration::from_secs(61);
        assert_eq!(sent(c.route(t(2), later)), Some(addr("192.0.2.7:5060")));
        assert_eq!(c.take_lookups(), vec![(HOST.to_string(), 5060)]);
        c.route(t(3), later);
        assert!(c.take_lookups().is_empty(), "one refresh at a time");
        // The name moved: the new address from then on.
        assert!(
            c.answer(HOST, 5060, Some(addr("192.0.2.8:5060")), later)
                .moved
        );
        assert_eq!(sent(c.route(t(4), later)), Some(addr("192.0.2.8:5060")));
    }

    #[test]
    fn a_failed_lookup_keeps_the_last_address_that_worked() {
        let mut c = NameCache::new(NameSettings::default());
        let now = Instant::now();
        c.route(t(1), now);
        c.take_lookups();
        c.answer(HOST, 5060, Some(addr("192.0.2.7:5060")), now);
        let later = now + Duration::from_secs(120);
        c.route(t(2), later);
        assert_eq!(c.take_lookups().len(), 1);
        let a = c.answer(HOST, 5060, None, later);
        assert!(a.kept_stale && a.failed.is_empty());
        assert_eq!(a.addr, Some(addr("192.0.2.7:5060")));
        // Still used; and looked up again on the next message, since the
        // address was not confirmed.
        assert_eq!(
            sent(c.route(t(3), later + Duration::from_secs(1))),
            Some(addr("192.0.2.7:5060"))
        );
        assert_eq!(c.take_lookups().len(), 1);
    }

    #[test]
    fn a_name_never_resolved_fails_its_messages_and_is_tried_again() {
        let mut c = NameCache::new(NameSettings::default());
        let now = Instant::now();
        c.route(t(1), now);
        c.take_lookups();
        let a = c.answer(HOST, 5060, None, now);
        assert_eq!(a.addr, None);
        assert!(!a.kept_stale);
        assert_eq!(a.failed.len(), 1);
        assert!(c.take_ready().is_empty());
        // The next message asks again.
        assert_eq!(c.route(t(2), now), Next::Queued);
        assert_eq!(c.take_lookups().len(), 1);
    }

    #[test]
    fn waiting_is_bounded() {
        let mut c = NameCache::new(NameSettings::default());
        let now = Instant::now();
        for i in 0..MAX_WAITING as u64 {
            assert_eq!(c.route(t(i), now), Next::Queued);
        }
        match c.route(t(9999), now) {
            Next::Full(t) => assert_eq!(t.token, Some(9999)),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.answer(HOST, 5060, None, now).failed.len(), MAX_WAITING);
    }

    #[test]
    fn names_are_bounded_and_stale_ones_make_room() {
        let mut c = NameCache::new(NameSettings::default());
        let now = Instant::now();
        for i in 0..MAX_NAMES {
            let host = format!("h{i}.example.net");
            c.route(to(&host, 5060, 1), now);
            c.answer(&host, 5060, Some(addr("192.0.2.9:5060")), now);
        }
        c.take_lookups();
        assert!(matches!(
            c.route(to("new.example.net", 5060, 2), now),
            Next::Full(_)
        ));
        // Known names still work.
        assert_eq!(
            sent(c.route(to("h1.example.net", 5060, 3), now)),
            Some(addr("192.0.2.9:5060"))
        );
        // Once the others are past their refresh time, they make room.
        let later = now + Duration::from_secs(61);
        assert_eq!(c.route(to("new.example.net", 5060, 4), later), Next::Queued);
        assert!(c.len() < MAX_NAMES);
    }

    /// A name with several targets (its SRV targets): a message goes to
    /// the first, and one that names the `n`th goes there; a target the
    /// name does not have fails. The answer is used for its TTL.
    #[test]
    fn each_target_of_a_name_is_reached_by_its_place() {
        let mut c = NameCache::new(NameSettings::default());
        let now = Instant::now();
        assert_eq!(c.route(to(HOST, 0, 1), now), Next::Queued);
        let mut second = to(HOST, 0, 2);
        second.dest.target = Target::HostAlt(HOST.into(), 0, 1);
        assert_eq!(c.route(second.clone(), now), Next::Queued);
        assert_eq!(c.take_lookups(), vec![(HOST.to_string(), 0)]);
        let a = c.answer_all(
            HOST,
            0,
            Some(vec![addr("192.0.2.1:5070"), addr("192.0.2.2:5080")]),
            Some(Duration::from_secs(5)),
            now,
        );
        assert!(a.first && a.targets == 2);
        assert_eq!(
            c.take_ready()
                .iter()
                .map(|(a, t)| (*a, t.token))
                .collect::<Vec<_>>(),
            vec![
                (addr("192.0.2.1:5070"), Some(1)),
                (addr("192.0.2.2:5080"), Some(2))
            ]
        );
        let mut third = to(HOST, 0, 3);
        third.dest.target = Target::HostAlt(HOST.into(), 0, 2);
        assert!(matches!(c.route(third, now), Next::Full(_)));
        // Looked up again when the TTL is out, well before `refresh`.
        assert_eq!(
            sent(c.route(second, now + Duration::from_secs(4))),
            Some(addr("192.0.2.2:5080"))
        );
        assert!(c.take_lookups().is_empty());
        c.route(to(HOST, 0, 4), now + Duration::from_secs(6));
        assert_eq!(c.take_lookups().len(), 1);
    }
}
