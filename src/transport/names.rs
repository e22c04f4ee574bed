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
//! The cache is sans-IO: time is an input, lookups are requested and their
//! answers handed back by the driver (`driver/sip_loop.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

pub use crate::config::NameSettings;
use crate::wire::{Target, Transmit};

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
    addr: Option<SocketAddr>,
    /// When `addr` was last confirmed by a lookup.
    confirmed: Option<Instant>,
    looking_up: bool,
    waiting: Vec<Transmit>,
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
        let key = match &t.dest.target {
            Target::Addr(a) => return Next::Send(*a, t),
            Target::Host(host, port) => (host.to_ascii_lowercase(), *port),
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
        let due = e
            .confirmed
            .is_none_or(|at| now.saturating_duration_since(at) >= self.settings.refresh);
        if due && !e.looking_up {
            e.looking_up = true;
            self.lookups.push(key);
        }
        match e.addr {
            Some(a) => Next::Send(a, t),
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

    /// A lookup for `host:port` came back with `found` (`None`: it failed
    /// or timed out).
    pub fn answer(
        &mut self,
        host: &str,
        port: u16,
        found: Option<SocketAddr>,
        now: Instant,
    ) -> Answered {
        let e = self
            .entries
            .entry((host.to_ascii_lowercase(), port))
            .or_default();
        e.looking_up = false;
        let kept_stale = found.is_none() && e.addr.is_some();
        let moved = found.is_some() && e.addr.is_some() && found != e.addr;
        if let Some(a) = found {
            e.addr = Some(a);
            e.confirmed = Some(now);
        }
        let waiting = std::mem::take(&mut e.waiting);
        let mut failed = Vec::new();
        match e.addr {
            Some(a) => self.ready.extend(waiting.into_iter().map(|t| (a, t))),
            None => failed = waiting,
        }
        Answered {
            addr: e.addr,
            kept_stale,
            moved,
            failed,
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
}
