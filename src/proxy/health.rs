//! Trunk health from SIP OPTIONS probes, sans-IO.
//!
//! Each outbound trunk is in exactly one state: `probing` (not known yet, or
//! coming back), `up` or `down`, with the time it last changed and the
//! outcome of its last probe (with, while the state holds against that
//! outcome, how many more like it would change the state). A
//! trunk goes down after `down_after` failed probes in a row, and up again
//! after `up_after` answered probes in a row. Any final response proves the
//! trunk's SIP stack is alive, except 503 (it says it cannot take calls)
//! and 408; no answer within the probe timeout is a failure.

use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkState {
    Probing,
    Up,
    Down,
}

impl TrunkState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkState::Probing => "probing",
            TrunkState::Up => "up",
            TrunkState::Down => "down",
        }
    }
}

/// Probe settings.
#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    /// Time between probes of one trunk; zero turns probing off (every
    /// trunk is then taken as up).
    pub interval: Duration,
    /// How long a probe may wait for its answer.
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            down_after: 3,
            up_after: 2,
        }
    }
}

/// One trunk's health, as shown to operators.
#[derive(Debug, Clone, Serialize)]
pub struct TrunkHealth {
    pub trunk: String,
    pub kind: String,
    pub state: TrunkState,
    /// Seconds since the state last changed (filled in when reported).
    pub since_s: f64,
    #[serde(skip)]
    pub since: Instant,
    /// The last probe's outcome (`OPTIONS answered 200`, `no answer to
    /// OPTIONS within 2000 ms`), followed, while the state holds against
    /// it, by the count towards the next state.
    pub reason: String,
    pub last_latency_ms: Option<f64>,
    /// The trunk refused a TCP connection for a request sent over TCP only
    /// for its size: requests go to it over UDP for a while (filled in
    /// when reported).
    pub tcp_refused: bool,
    /// Until when requests go over UDP whatever their size.
    #[serde(skip)]
    pub tcp_refused_until: Option<Instant>,
    #[serde(skip)]
    fails: u32,
    #[serde(skip)]
    oks: u32,
}

/// A probe outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Answered { status: u16, latency: Duration },
    TimedOut,
    SendFailed,
}

/// A state change, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub trunk: String,
    pub from: TrunkState,
    pub to: TrunkState,
    pub reason: String,
}

impl TrunkHealth {
    pub fn new(trunk: &str, kind: &str, now: Instant, probing: bool) -> TrunkHealth {
        TrunkHealth {
            trunk: trunk.to_string(),
            kind: kind.to_string(),
            state: if probing {
                TrunkState::Probing
            } else {
                TrunkState::Up
            },
            since_s: 0.0,
            since: now,
            reason: if probing {
                "no probe answered yet".into()
            } else {
                "probing off".into()
            },
            last_latency_ms: None,
            tcp_refused: false,
            tcp_refused_until: None,
            fails: 0,
            oks: 0,
        }
    }

    /// Applies one probe result; returns the transition, if any.
    pub fn record(
        &mut self,
        now: Instant,
        result: ProbeResult,
        cfg: &HealthConfig,
    ) -> Option<Transition> {
        let (ok, why) = match result {
            ProbeResult::Answered { status, latency } => {
                self.last_latency_ms = Some(latency.as_secs_f64() * 1000.0);
                let ok = !matches!(status, 503 | 408);
                (ok, format!("OPTIONS answered {status}"))
            }
            ProbeResult::TimedOut => (
                false,
                format!("no answer to OPTIONS within {} ms", cfg.timeout.as_millis()),
            ),
            ProbeResult::SendFailed => (false, "OPTIONS could not be sent".to_string()),
        };
        if ok {
            self.oks += 1;
            self.fails = 0;
        } else {
            self.fails += 1;
            self.oks = 0;
        }
        let next = match self.state {
            TrunkState::Up if self.fails >= cfg.down_after => TrunkState::Down,
            TrunkState::Down if ok => TrunkState::Probing,
            TrunkState::Probing if self.oks >= cfg.up_after => TrunkState::Up,
            TrunkState::Probing if self.fails >= cfg.down_after => TrunkState::Down,
            s => s,
        };
        // A trunk that needs one answer to be up goes straight there.
        let next = if next == TrunkState::Probing && self.oks >= cfg.up_after {
            TrunkState::Up
        } else {
            next
        };
        let transition = (next != self.state).then(|| Transition {
            trunk: self.trunk.clone(),
            from: self.state,
            to: next,
            reason: why.clone(),
        });
        if transition.is_some() {
            self.state = next;
            self.since = now;
        }
        // The reason always tells the last probe's outcome, and how far the
        // trunk is from changing state when that outcome goes against it.
        self.reason = match self.state {
            TrunkState::Up if !ok => {
                format!(
                    "{why} ({} of {} failures before down)",
                    self.fails, cfg.down_after
                )
            }
            TrunkState::Probing if ok => {
                format!(
                    "{why} ({} of {} answers needed to be up)",
                    self.oks, cfg.up_after
                )
            }
            TrunkState::Probing => {
                format!(
                    "{why} ({} of {} failures before down)",
                    self.fails, cfg.down_after
                )
            }
            _ => why,
        };
        transition
    }

    /// Whether routing should put this trunk behind the others.
    pub fn is_down(&self) -> bool {
        self.state == TrunkState::Down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            down_after: 3,
            up_after: 2,
        }
    }

    fn ok() -> ProbeResult {
        ProbeResult::Answered {
            status: 200,
            latency: Duration::from_millis(3),
        }
    }

    #[test]
    fn starts_probing_then_up_after_m_answers() {
        let t0 = Instant::now();
        let mut h = TrunkHealth::new("psap", "psap", t0, true);
        assert_eq!(h.state, TrunkState::Probing);
        assert_eq!(h.record(t0, ok(), &cfg()), None);
        let t = h.record(t0 + Duration::from_secs(5), ok(), &cfg()).unwrap();
        assert_eq!((t.from, t.to), (TrunkState::Probing, TrunkState::Up));
        assert_eq!(h.since, t0 + Duration::from_secs(5));
        assert_eq!(h.last_latency_ms, Some(3.0));
    }

    #[test]
    fn down_after_n_failures_in_a_row_and_back_through_probing() {
        let t0 = Instant::now();
        let c = cfg();
        let mut h = TrunkHealth::new("psap", "psap", t0, true);
        h.record(t0, ok(), &c);
        h.record(t0, ok(), &c);
        assert_eq!(h.state, TrunkState::Up);
        h.record(t0, ProbeResult::TimedOut, &c);
        h.record(t0, ProbeResult::TimedOut, &c);
        // An answer in between resets the count.
        h.record(t0, ok(), &c);
        h.record(t0, ProbeResult::TimedOut, &c);
        h.record(
            t0,
            ProbeResult::Answered {
                status: 503,
                latency: Duration::ZERO,
            },
            &c,
        );
        assert_eq!(h.state, TrunkState::Up);
        let t = h.record(t0, ProbeResult::SendFailed, &c).unwrap();
        assert_eq!(t.to, TrunkState::Down);
        assert!(h.is_down());
        assert_eq!(h.reason, "OPTIONS could not be sent");
        let t = h.record(t0, ok(), &c).unwrap();
        assert_eq!(t.to, TrunkState::Probing);
        let t = h.record(t0, ok(), &c).unwrap();
        assert_eq!(t.to, TrunkState::Up);
    }

    #[test]
    fn a_404_to_options_still_proves_the_trunk_alive() {
        let t0 = Instant::now();
        let c = HealthConfig {
            up_after: 1,
            ..cfg()
        };
        let mut h = TrunkHealth::new("psap", "psap", t0, true);
        let t = h
            .record(
                t0,
                ProbeResult::Answered {
                    status: 404,
                    latency: Duration::ZERO,
                },
                &c,
            )
            .unwrap();
        assert_eq!(t.to, TrunkState::Up);
    }

    fn answered(status: u16) -> ProbeResult {
        ProbeResult::Answered {
            status,
            latency: Duration::from_millis(2),
        }
    }

    /// The reason always tells the last probe's outcome, whether or not it
    /// changed the state, and how far the trunk is from its next state.
    #[test]
    fn the_reason_follows_every_probe() {
        let t0 = Instant::now();
        let c = cfg();
        let mut h = TrunkHealth::new("psap", "psap", t0, true);
        assert_eq!(h.reason, "no probe answered yet");
        let steps: &[(ProbeResult, TrunkState, &str)] = &[
            (
                ok(),
                TrunkState::Probing,
                "OPTIONS answered 200 (1 of 2 answers needed to be up)",
            ),
            (ok(), TrunkState::Up, "OPTIONS answered 200"),
            (ok(), TrunkState::Up, "OPTIONS answered 200"),
            (
                ProbeResult::TimedOut,
                TrunkState::Up,
                "no answer to OPTIONS within 1000 ms (1 of 3 failures before down)",
            ),
            (
                answered(503),
                TrunkState::Up,
                "OPTIONS answered 503 (2 of 3 failures before down)",
            ),
            (answered(404), TrunkState::Up, "OPTIONS answered 404"),
            (
                answered(408),
                TrunkState::Up,
                "OPTIONS answered 408 (1 of 3 failures before down)",
            ),
            (
                ProbeResult::SendFailed,
                TrunkState::Up,
                "OPTIONS could not be sent (2 of 3 failures before down)",
            ),
            (
                ProbeResult::TimedOut,
                TrunkState::Down,
                "no answer to OPTIONS within 1000 ms",
            ),
            (answered(503), TrunkState::Down, "OPTIONS answered 503"),
            (
                ok(),
                TrunkState::Probing,
                "OPTIONS answered 200 (1 of 2 answers needed to be up)",
            ),
            (
                ProbeResult::TimedOut,
                TrunkState::Probing,
                "no answer to OPTIONS within 1000 ms (1 of 3 failures before down)",
            ),
            (
                ok(),
                TrunkState::Probing,
                "OPTIONS answered 200 (1 of 2 answers needed to be up)",
            ),
            (ok(), TrunkState::Up, "OPTIONS answered 200"),
        ];
        for (n, (result, state, reason)) in steps.iter().enumerate() {
            h.record(t0 + Duration::from_secs(n as u64), *result, &c);
            assert_eq!((h.state, h.reason.as_str()), (*state, *reason), "step {n}");
        }
    }

    /// A transition reports the outcome that caused it, and the state's
    /// age counts from the transition, not from later probes.
    #[test]
    fn transitions_carry_the_outcome_and_since_stays() {
        let t0 = Instant::now();
        let c = cfg();
        let mut h = TrunkHealth::new("sc", "screening", t0, true);
        h.record(t0, ok(), &c);
        let t = h.record(t0 + Duration::from_secs(1), ok(), &c).unwrap();
        assert_eq!(t.reason, "OPTIONS answered 200");
        h.record(t0 + Duration::from_secs(2), ProbeResult::TimedOut, &c);
        assert_eq!(h.since, t0 + Duration::from_secs(1));
        assert_eq!(h.state, TrunkState::Up);
        // Probing off: the reason says so and nothing changes it.
        let h = TrunkHealth::new("sc", "screening", t0, false);
        assert_eq!(
            (h.state, h.reason.as_str()),
            (TrunkState::Up, "probing off")
        );
    }

    #[test]
    fn never_answering_trunk_goes_down_from_probing() {
        let t0 = Instant::now();
        let c = cfg();
        let mut h = TrunkHealth::new("psap", "psap", t0, true);
        for _ in 0..2 {
            assert!(h.record(t0, ProbeResult::TimedOut, &c).is_none());
        }
        assert_eq!(
            h.record(t0, ProbeResult::TimedOut, &c).unwrap().to,
            TrunkState::Down
        );
    }
}
