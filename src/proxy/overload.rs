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
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Emergency => "emergency",
            Class::Test => "test",
            Class::Other => "other",
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
    /// The `Retry-After` of the refusal, in seconds (0: none).
    pub retry_after: u32,
}

impl OverloadLimits {
    pub fn new(c: &OverloadConfig) -> OverloadLimits {
        if c.max_transactions == 0 {
            return OverloadLimits {
                shed_at: usize::MAX,
                refuse_at: usize::MAX,
                retry_after: c.retry_after_s,
            };
        }
        let reserve = u128::from(c.emergency_reserve_percent.min(100));
        let kept = (c.max_transactions as u128 * reserve / 100) as usize;
        OverloadLimits {
            shed_at: c.max_transactions - kept,
            refuse_at: c.max_transactions,
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

    /// Whether a new request of `class` is admitted at `load`.
    pub fn admits(load: Load, class: Class) -> bool {
        match load {
            Load::Normal => true,
            Load::Shedding => class == Class::Emergency,
            Load::Full => false,
        }
    }
}

impl Default for OverloadLimits {
    fn default() -> Self {
        OverloadLimits::new(&OverloadConfig::default())
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
    refused: [Option<metrics::Counter>; 3],
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
            refused: [None, None, None],
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
                    "overload over: every request admitted again"
                )
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

    /// Counts a request of `class` refused.
    pub fn refused(&mut self, class: Class) {
        let i = class as usize;
        self.refused[i]
            .get_or_insert_with(
                || metrics::counter!(m::OVERLOAD_REFUSED, "class" => class.as_str()),
            )
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // (load, class, admitted)
        let cases = [
            (Load::Normal, Class::Emergency, true),
            (Load::Normal, Class::Test, true),
            (Load::Normal, Class::Other, true),
            (Load::Shedding, Class::Emergency, true),
            (Load::Shedding, Class::Test, false),
            (Load::Shedding, Class::Other, false),
            (Load::Full, Class::Emergency, false),
            (Load::Full, Class::Test, false),
            (Load::Full, Class::Other, false),
        ];
        for (load, class, want) in cases {
            assert_eq!(
                OverloadLimits::admits(load, class),
                want,
                "{load:?} {class:?}"
            );
        }
    }

    #[test]
    fn the_default_limit_is_on_and_keeps_a_fifth_for_emergency_calls() {
        let l = OverloadLimits::default();
        assert_eq!(l.refuse_at, OverloadConfig::default().max_transactions);
        assert_eq!(l.shed_at, l.refuse_at / 5 * 4);
        assert!(l.refuse_at > 0 && l.refuse_at < usize::MAX);
    }
}
