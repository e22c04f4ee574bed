//! Admission under overload: how much state the core may hold before it
//! refuses new calls, and which calls keep the last of the room.
//!
//! Every open transaction costs memory until its timers end (up to 64*T1
//! after the final response, RFC 6026), so a flood of calls, a retry storm
//! after an outage or a telephony denial-of-service attack would grow the
//! process without bound. Past a limit the router answers new requests
//! `503` with `Retry-After`: the carrier's proxy then sends them to its
//! other router (RFC 3263 section 4.3) instead of waiting on this one. The
//! last share of the room is kept for emergency calls: test calls, probes
//! and any other new request are refused first. Requests within a dialog,
//! ACK and CANCEL are always let through, since they end calls and free
//! the room.
//!
//! The reserve is shared between the addresses calls come from: once the
//! router sheds, an emergency call from an address holding more than the
//! average of the addresses with calls open is refused too, so that one
//! carrier's flood (a misconfigured switch, an attack through one trunk)
//! cannot take the reserve from every other carrier's callers.

use core::net::IpAddr;
use std::collections::HashMap;
use std::time::Instant;

use tracing::{info, warn};

use crate::config::OverloadConfig;
use crate::metrics as m;

/// How full the core is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Load {
    /// Every request is admitted.
    Normal,
    /// Only emergency calls and requests within dialogs are admitted.
    Shedding,
    /// Only requests within dialogs are admitted.
    Full,
}

impl Load {
    /// The figure of the `sosrouter_overload_state` gauge.
    pub fn level(self) -> u8 {
        match self {
            Load::Normal => 0,
            Load::Shedding => 1,
            Load::Full => 2,
        }
    }

    pub fn from_level(level: u8) -> Load {
        match level {
            0 => Load::Normal,
            1 => Load::Shedding,
            _ => Load::Full,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Load::Normal => "normal",
            Load::Shedding => "shedding",
            Load::Full => "full",
        }
    }
}

/// What a new request is, for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Emergency,
    Test,
    Other,
    /// A request within a dialog (a To tag) or routed on by its Route
    /// headers: admitted past the limit, up to the ceiling.
    InDialog,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Emergency => "emergency",
            Class::Test => "test",
            Class::Other => "other",
            Class::InDialog => "in_dialog",
        }
    }
}

/// The limits, in open transactions, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadLimits {
    /// From this many on, only emergency calls are admitted.
    pub shed_at: usize,
    /// From this many on, no new call is admitted.
    pub refuse_at: usize,
    /// From this many on, no request at all but ACK: requests within a
    /// dialog pass the limit above, since they end calls and free the
    /// room, but not without bound.
    pub ceiling: usize,
    /// The `Retry-After` of the refusal, in seconds (0: none).
    pub retry_after: u32,
}

impl OverloadLimits {
    pub fn new(c: &OverloadConfig) -> OverloadLimits {
        if c.max_transactions == 0 {
            return OverloadLimits {
                shed_at: usize::MAX,
                refuse_at: usize::MAX,
                ceiling: usize::MAX,
                retry_after: c.retry_after_s,
            };
        }
        let reserve = u128::from(c.emergency_reserve_percent.min(100));
        let kept = (c.max_transactions as u128 * reserve / 100) as usize;
        OverloadLimits {
            shed_at: c.max_transactions - kept,
            refuse_at: c.max_transactions,
            ceiling: c
                .max_transactions
                .saturating_add(c.max_transactions.div_ceil(10)),
            retry_after: c.retry_after_s,
        }
    }

    pub fn load(&self, open: usize) -> Load {
        if open >= self.refuse_at {
            Load::Full
        } else if open >= self.shed_at {
            Load::Shedding
        } else {
            Load::Normal
        }
    }

    /// The load with `open` transactions, coming from `current`: it rises
    /// at once at a mark, and eases only once `open` is 5% below the mark
    /// it crossed, so that one transaction ending and the next call
    /// arriving do not flip it back and forth.
    pub fn next(&self, current: Load, open: usize) -> Load {
        let eased = |mark: usize| open < mark - mark / 20;
        let mut load = current;
        if load == Load::Full && eased(self.refuse_at) {
            load = Load::Shedding;
        }
        if load == Load::Shedding && eased(self.shed_at) {
            load = Load::Normal;
        }
        load.max(self.load(open))
    }

    /// Why a new request of `class` is refused at `load`, if it is;
    /// `over_share` says whether its source holds more than its share.
    pub fn admit(load: Load, class: Class, over_share: bool) -> Option<Refusal> {
        match (load, class) {
            (Load::Normal, _) => None,
            (Load::Shedding, Class::Emergency) if over_share => Some(Refusal::OverShare),
            (Load::Shedding, Class::Emergency) => None,
            (Load::Shedding, _) => Some(Refusal::Reserved),
            (Load::Full, _) => Some(Refusal::Full),
        }
    }
}

/// Why a new request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No new request is admitted.
    Full,
    /// The room left is kept for emergency calls.
    Reserved,
    /// An emergency call from an address holding more than its share.
    OverShare,
    /// A request within a dialog, at the ceiling.
    Ceiling,
}

impl Refusal {
    /// The `reason` label of `sosrouter_overload_refused_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::Reserved => "reserved",
            Refusal::OverShare => "over_share",
            Refusal::Ceiling => "ceiling",
        }
    }
}

impl Default for OverloadLimits {
    fn default() -> Self {
        OverloadLimits::new(&OverloadConfig::default())
    }
}

/// What one share of the reserve goes to: an IPv4 address (an IPv4-mapped
/// IPv6 address counts as its IPv4 address), or an IPv6 /64, the block one
/// site or host is given, so that a sender cannot take many shares by
/// spreading over the addresses of its own block.
fn share_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// Open server transactions by the address their requests came from.
#[derive(Debug, Default)]
pub struct Sources {
    held: HashMap<IpAddr, u32, foldhash::fast::RandomState>,
    total: u64,
}

impl Sources {
    pub fn opened(&mut self, ip: IpAddr) {
        *self.held.entry(share_key(ip)).or_default() += 1;
        self.total += 1;
    }

    pub fn closed(&mut self, ip: IpAddr) {
        let key = share_key(ip);
        if let Some(n) = self.held.get_mut(&key) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.held.remove(&key);
            }
        }
    }

    /// Server transactions open for requests from `ip`.
    pub fn held(&self, ip: IpAddr) -> u32 {
        self.held.get(&share_key(ip)).copied().unwrap_or(0)
    }

    /// Whether `ip` holds more than the average of the addresses holding
    /// any: the share of each when the room is split evenly.
    pub fn over_share(&self, ip: IpAddr) -> bool {
        u64::from(self.held(ip)) * self.held.len() as u64 > self.total
    }

    /// Addresses with server transactions open.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    Warn,
    Info,
    Over,
}

/// The core's admission state: the load last seen, told to the log and to
/// the metrics when it changes.
pub struct Admission {
    limits: OverloadLimits,
    load: Load,
    /// The highest state of the current episode.
    peak: Load,
    gauge: Option<metrics::Gauge>,
    /// By class and reason.
    refused: [[Option<metrics::Counter>; 4]; 4],
    /// When to warn about emergency calls refused.
    warn: crate::logbuf::Throttle,
    /// Emergency calls refused in the current episode.
    episode_refused: u64,
}

impl Admission {
    pub fn new(limits: OverloadLimits) -> Admission {
        // Present from the start, so that an alert can tell 0 from absent.
        let gauge = metrics::gauge!(m::OVERLOAD);
        gauge.set(0.0);
        Admission {
            limits,
            load: Load::Normal,
            peak: Load::Normal,
            gauge: Some(gauge),
            refused: Default::default(),
            warn: crate::logbuf::Throttle::new(crate::logbuf::TELL_EVERY),
            episode_refused: 0,
        }
    }

    pub fn set_limits(&mut self, limits: OverloadLimits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> OverloadLimits {
        self.limits
    }

    /// The load with `open` transactions, noting a change.
    pub fn update(&mut self, open: usize) -> Load {
        let load = self.limits.next(self.load, open);
        if load == self.load {
            return load;
        }
        match self.notice(load) {
            Notice::Warn => warn!(
                load = load.as_str(),
                open_transactions = open,
                shed_at = self.limits.shed_at,
                refuse_at = self.limits.refuse_at,
                "overload: new calls refused with 503 ({})",
                if load == Load::Full {
                    "all of them"
                } else {
                    "emergency calls still admitted"
                }
            ),
            Notice::Over => {
                info!(
                    open_transactions = open,
                    emergency_calls_refused = self.episode_refused,
                    "overload over: every request admitted again"
                );
                self.episode_refused = 0;
            }
            Notice::Info => info!(
                load = load.as_str(),
                open_transactions = open,
                "overload state changed"
            ),
        }
        self.load = load;
        self.gauge
            .get_or_insert_with(|| metrics::gauge!(m::OVERLOAD))
            .set(f64::from(load.level()));
        load
    }

    /// How a change to `load` is told. One episode, from leaving normal to
    /// coming back, warns once for each state it reaches; going back and
    /// forth between shedding and full within it, as cohorts of calls end,
    /// is only information.
    fn notice(&mut self, load: Load) -> Notice {
        if load > self.load && load > self.peak {
            self.peak = load;
            Notice::Warn
        } else if load == Load::Normal {
            self.peak = Load::Normal;
            Notice::Over
        } else {
            Notice::Info
        }
    }

    /// Counts a request of `class` refused at `now`. For an emergency
    /// call, returns how many were refused since the last warning when
    /// another is due: one line per ten seconds tells the flood without
    /// becoming one (each call still has its record and its debug line).
    pub fn refused(&mut self, now: Instant, class: Class, why: Refusal) -> Option<u64> {
        self.refused[class as usize][why as usize]
            .get_or_insert_with(|| {
                metrics::counter!(m::OVERLOAD_REFUSED, "class" => class.as_str(), "reason" => why.as_str())
            })
            .increment(1);
        if class != Class::Emergency {
            return None;
        }
        self.episode_refused += 1;
        self.warn.hit(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max: usize, reserve: u8) -> OverloadLimits {
        OverloadLimits::new(&OverloadConfig {
            max_transactions: max,
            emergency_reserve_percent: reserve,
            retry_after_s: 5,
        })
    }

    #[test]
    fn the_reserve_is_the_top_share_of_the_limit() {
        // (max, reserve %, open, load)
        let cases = [
            (100, 20, 0, Load::Normal),
            (100, 20, 79, Load::Normal),
            (100, 20, 80, Load::Shedding),
            (100, 20, 99, Load::Shedding),
            (100, 20, 100, Load::Full),
            (100, 20, 5000, Load::Full),
            (100, 0, 99, Load::Normal),
            (100, 0, 100, Load::Full),
            (100, 100, 0, Load::Shedding),
            (100, 100, 100, Load::Full),
            (10, 25, 7, Load::Normal),
            (10, 25, 8, Load::Shedding),
            (0, 20, usize::MAX - 1, Load::Normal),
            (usize::MAX, 50, usize::MAX / 2 - 1, Load::Normal),
            (usize::MAX, 50, usize::MAX - 1, Load::Shedding),
        ];
        for (max, reserve, open, want) in cases {
            assert_eq!(
                limits(max, reserve).load(open),
                want,
                "max {max}, reserve {reserve}%, {open} open"
            );
        }
    }

    #[test]
    fn the_ceiling_is_a_tenth_above_the_limit() {
        // (max, ceiling)
        let cases = [
            (100, 110),
            (4, 5),
            (1, 2),
            (400_000, 440_000),
            (0, usize::MAX),
            (usize::MAX, usize::MAX),
        ];
        for (max, want) in cases {
            assert_eq!(limits(max, 20).ceiling, want, "max {max}");
        }
    }

    #[test]
    fn the_load_eases_only_five_percent_below_the_mark_it_crossed() {
        use Load::*;
        // Marks 80 and 100; easing below 76 and 95. (from, open, to)
        let cases = [
            (Normal, 79, Normal),
            (Normal, 80, Shedding),
            (Normal, 100, Full),
            (Full, 99, Full),
            (Full, 95, Full),
            (Full, 94, Shedding),
            (Full, 80, Shedding),
            (Full, 75, Normal),
            (Shedding, 79, Shedding),
            (Shedding, 76, Shedding),
            (Shedding, 75, Normal),
            (Shedding, 100, Full),
        ];
        let l = limits(100, 20);
        for (from, open, want) in cases {
            assert_eq!(l.next(from, open), want, "{from:?} with {open} open");
        }
        // No limit: always normal. A reserve of 100%: never normal.
        assert_eq!(limits(0, 20).next(Normal, usize::MAX - 1), Normal);
        assert_eq!(limits(100, 100).next(Shedding, 0), Shedding);
    }

    #[test]
    fn an_episode_warns_once_per_state_it_reaches() {
        use Load::*;
        use Notice::*;
        let mut a = Admission::new(limits(100, 20));
        let steps = [
            (Shedding, Warn),
            (Full, Warn),
            (Shedding, Info),
            (Full, Info),
            (Shedding, Info),
            (Normal, Over),
            (Full, Warn),
            (Normal, Over),
            (Shedding, Warn),
        ];
        for (i, (load, want)) in steps.into_iter().enumerate() {
            assert_eq!(a.notice(load), want, "step {i}: to {load:?}");
            a.load = load;
        }
    }

    #[test]
    fn emergency_calls_keep_the_reserve_and_nothing_passes_when_full() {
        use Class::*;
        use Load::*;
        // (load, class, source over its share, refusal)
        let cases = [
            (Normal, Emergency, false, None),
            (Normal, Emergency, true, None),
            (Normal, Test, true, None),
            (Normal, Other, false, None),
            (Shedding, Emergency, false, None),
            (Shedding, Emergency, true, Some(Refusal::OverShare)),
            (Shedding, Test, false, Some(Refusal::Reserved)),
            (Shedding, Other, true, Some(Refusal::Reserved)),
            (Full, Emergency, false, Some(Refusal::Full)),
            (Full, Emergency, true, Some(Refusal::Full)),
            (Full, Test, false, Some(Refusal::Full)),
            (Full, Other, false, Some(Refusal::Full)),
        ];
        for (load, class, over, want) in cases {
            assert_eq!(
                OverloadLimits::admit(load, class, over),
                want,
                "{load:?} {class:?} over share {over}"
            );
        }
    }

    #[test]
    fn a_source_over_the_average_of_the_sources_is_over_its_share() {
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let mut s = Sources::default();
        // Nobody holds anything: nobody is over.
        assert!(!s.over_share(ip(1)));
        // One source alone holds all, and that is its share.
        for _ in 0..10 {
            s.opened(ip(1));
        }
        assert!(!s.over_share(ip(1)));
        // A second source with one: the average is 5.5.
        s.opened(ip(2));
        assert!(s.over_share(ip(1)));
        assert!(!s.over_share(ip(2)));
        // A source holding nothing is never over.
        assert!(!s.over_share(ip(3)));
        // Even: 10 and 10, neither over.
        for _ in 0..9 {
            s.opened(ip(2));
        }
        assert!(!s.over_share(ip(1)) && !s.over_share(ip(2)));
        // Closing all of one source forgets it.
        for _ in 0..10 {
            s.closed(ip(2));
        }
        assert_eq!((s.len(), s.held(ip(1)), s.held(ip(2))), (1, 10, 0));
        assert!(!s.over_share(ip(1)));
        // Closing for an address never seen changes nothing.
        s.closed(ip(9));
        assert_eq!((s.len(), s.total), (1, 10));
        for _ in 0..10 {
            s.closed(ip(1));
        }
        assert!(s.is_empty() && s.total == 0);
    }

    #[test]
    fn an_ipv6_64_is_one_share_and_a_mapped_address_is_its_ipv4() {
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut s = Sources::default();
        // (address opened, shares after, held by the first /64 after)
        let steps = [
            ("2001:db8:1:1::1", 1, 1),
            ("2001:db8:1:1::2", 1, 2),
            ("2001:db8:1:1:ffff:ffff:ffff:ffff", 1, 3),
            ("2001:db8:1:2::1", 2, 3),
            ("::ffff:192.0.2.1", 3, 3),
            ("192.0.2.1", 3, 3),
        ];
        for (addr, shares, held) in steps {
            s.opened(v6(addr));
            assert_eq!(s.len(), shares, "after {addr}");
            assert_eq!(s.held(v6("2001:db8:1:1::99")), held, "after {addr}");
        }
        assert_eq!(s.held(v6("192.0.2.1")), 2);
        // Three from one /64 against 1, 2: over the average of 2.
        assert!(s.over_share(v6("2001:db8:1:1::7")));
        s.closed(v6("2001:db8:1:1::5"));
        s.closed(v6("::ffff:192.0.2.1"));
        assert_eq!(
            (s.held(v6("2001:db8:1:1::1")), s.held(v6("192.0.2.1"))),
            (2, 1)
        );
    }

    #[test]
    fn refused_emergency_calls_are_warned_about_once_per_ten_seconds() {
        let mut a = Admission::new(limits(100, 20));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // (ms, class, warning due with this many calls)
        let steps = [
            (0, Class::Emergency, Some(1)),
            (10, Class::Emergency, None),
            (20, Class::Test, None),
            (9_999, Class::Emergency, None),
            (10_000, Class::Emergency, Some(3)),
            (10_001, Class::Other, None),
            (25_000, Class::Emergency, Some(1)),
        ];
        for (ms, class, want) in steps {
            assert_eq!(
                a.refused(at(ms), class, Refusal::Full),
                want,
                "{class:?} at {ms} ms"
            );
        }
        assert_eq!(a.episode_refused, 5);
        a.load = Load::Full;
        a.peak = Load::Full;
        a.update(0);
        assert_eq!(a.episode_refused, 0, "the episode's count ends with it");
    }

    #[test]
    fn the_default_limit_is_on_and_keeps_a_fifth_for_emergency_calls() {
        let l = OverloadLimits::default();
        assert_eq!(l.refuse_at, OverloadConfig::default().max_transactions);
        assert_eq!(l.shed_at, l.refuse_at / 5 * 4);
        assert!(l.refuse_at > 0 && l.refuse_at < usize::MAX);
    }
}
