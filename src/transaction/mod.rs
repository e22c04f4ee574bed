//! RFC 3261 transactions (section 17), sans-IO.
//!
//! The four state machines ([`ClientInvite`], [`ClientNonInvite`],
//! [`ServerInvite`], [`ServerNonInvite`]) never read the clock and never do
//! I/O. Every input carries the current time where time matters, and the
//! caller pulls the outputs:
//!
//! - `poll_transmit()`: bytes to send on the wire to the transaction's peer,
//! - `poll_event()`: what the transaction user (the proxy core) must learn,
//! - `next_deadline()`: when to call `handle_timeout(now)` next.
//!
//! The module does not parse SIP. The caller passes the status code of a
//! received response and the bytes of the messages to send; the machines
//! keep the bytes they retransmit as [`Bytes`], so holding them is cheap.
//!
//! INVITE transactions follow RFC 6026: a 2xx moves them to an `Accepted`
//! state (Timer L on the server, Timer M on the client) instead of ending
//! them at once, so retransmitted INVITEs are absorbed and retransmitted
//! 2xx responses still reach the proxy core.
//!
//! A zero timer (Timers D, I, J and K on a reliable transport) is not armed:
//! the machine takes the transition it would take when the timer fires at
//! once, inside the call that entered the state.
//!
//! Transaction matching lives in [`key`]: [`TransactionKey`] and
//! [`new_branch`].

#![warn(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;

pub mod client;
pub mod key;
pub mod server;
pub mod timers;

pub use client::{
    ClientInvite, ClientInviteEvent, ClientInviteState, ClientInviteTimer, ClientNonInvite,
    ClientNonInviteEvent, ClientNonInviteState, ClientNonInviteTimer,
};
pub use key::{new_branch, KeyKind, RequestKeyParts, TransactionKey, MAGIC_COOKIE};
pub use server::{
    ServerInvite, ServerInviteEvent, ServerInviteState, ServerInviteTimer, ServerNonInvite,
    ServerNonInviteEvent, ServerNonInviteState, ServerNonInviteTimer,
};
pub use timers::{TimerName, Timers};

/// Timer D on an unreliable transport (RFC 3261 table 4: "> 32 s").
pub const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// Shortest interval between two retransmissions, whatever the
/// configuration says: it keeps a zero T1 or T2 from making
/// `handle_timeout` spin on the same instant.
pub const MIN_RETRANSMIT_INTERVAL: Duration = Duration::from_millis(1);

/// The base timer values of RFC 3261 section 17.1.1.1 and table 4.
///
/// All other timers derive from these three; the `timer_*` methods give
/// their values, taking the transport into account where table 4 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip time estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// A configuration with the given base values.
    pub const fn new(t1: Duration, t2: Duration, t4: Duration) -> Self {
        Self { t1, t2, t4 }
    }

    /// 64·T1: Timers B, F, H, L and M, and Timer J on unreliable transports.
    pub fn sixty_four_t1(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer A, the first INVITE retransmission interval: T1.
    pub fn timer_a(&self) -> Duration {
        self.t1
    }

    /// Timer B, the INVITE transaction timeout: 64·T1.
    pub fn timer_b(&self) -> Duration {
        self.sixty_four_t1()
    }

    /// Timer D, the wait for final response retransmissions: 32 s on an
    /// unreliable transport, zero on a reliable one.
    pub fn timer_d(&self, transport: Transport) -> Duration {
        transport.unreliable_only(TIMER_D_UNRELIABLE)
    }

    /// Timer E, the first non-INVITE retransmission interval: T1.
    pub fn timer_e(&self) -> Duration {
        self.t1
    }

    /// Timer F, the non-INVITE transaction timeout: 64·T1.
    pub fn timer_f(&self) -> Duration {
        self.sixty_four_t1()
    }

    /// Timer G, the first INVITE final response retransmission interval: T1.
    pub fn timer_g(&self) -> Duration {
        self.t1
    }

    /// Timer H, the wait for the ACK: 64·T1.
    pub fn timer_h(&self) -> Duration {
        self.sixty_four_t1()
    }

    /// Timer I, the wait for ACK retransmissions: T4 on an unreliable
    /// transport, zero on a reliable one.
    pub fn timer_i(&self, transport: Transport) -> Duration {
        transport.unreliable_only(self.t4)
    }

    /// Timer J, the wait for non-INVITE request retransmissions: 64·T1 on
    /// an unreliable transport, zero on a reliable one.
    pub fn timer_j(&self, transport: Transport) -> Duration {
        transport.unreliable_only(self.sixty_four_t1())
    }

    /// Timer K, the wait for non-INVITE response retransmissions: T4 on an
    /// unreliable transport, zero on a reliable one.
    pub fn timer_k(&self, transport: Transport) -> Duration {
        transport.unreliable_only(self.t4)
    }

    /// Timer L (RFC 6026), the server's wait in `Accepted`: 64·T1.
    pub fn timer_l(&self) -> Duration {
        self.sixty_four_t1()
    }

    /// Timer M (RFC 6026), the client's wait in `Accepted`: 64·T1.
    pub fn timer_m(&self) -> Duration {
        self.sixty_four_t1()
    }
}

/// Whether the transport under a transaction delivers reliably.
///
/// On a reliable transport (TCP, TLS, SCTP) nothing is retransmitted and
/// the timers that table 4 gives as zero (D, I, J, K) are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP and the like: the transaction retransmits.
    Unreliable,
    /// TCP, TLS, SCTP: the transport retransmits, the transaction does not.
    Reliable,
}

impl Transport {
    /// True for [`Transport::Reliable`].
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Reliable)
    }

    /// `value` on an unreliable transport, zero on a reliable one.
    fn unreliable_only(self, value: Duration) -> Duration {
        match self {
            Transport::Unreliable => value,
            Transport::Reliable => Duration::ZERO,
        }
    }
}

/// A call that the transaction refuses; the machine is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// A status code outside 100..=699.
    #[error("status code {0} is not in 100..=699")]
    InvalidStatus(u16),
    /// The call does not fit the transaction's current state.
    #[error("cannot {action} in state {state}")]
    InvalidState {
        /// What the caller tried to do.
        action: &'static str,
        /// The state the transaction was in.
        state: &'static str,
    },
}

/// The class of a response status code, as the state machines use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusClass {
    /// 100-199.
    Provisional,
    /// 200-299.
    Success,
    /// 300-699.
    Failure,
}

impl StatusClass {
    pub(crate) fn of(status: u16) -> Result<Self, TransactionError> {
        match status {
            100..=199 => Ok(Self::Provisional),
            200..=299 => Ok(Self::Success),
            300..=699 => Ok(Self::Failure),
            _ => Err(TransactionError::InvalidStatus(status)),
        }
    }
}

/// The pull-side queues shared by the machines: messages to send and
/// events for the transaction user.
///
/// A message is not queued twice: while a copy of the same buffer waits to
/// be polled, another retransmission of it adds nothing, so the queue holds
/// at most one copy of each message however late the caller drains it.
///
/// The proxy drains both queues after every input, so they rarely hold
/// more than one or two entries: they live inside the machine and take
/// the heap only beyond that.
#[derive(Debug)]
pub(crate) struct Outbox<E> {
    transmits: SmallVec<[Bytes; 2]>,
    events: SmallVec<[E; 2]>,
}

impl<E> Outbox<E> {
    pub(crate) fn new() -> Self {
        Self {
            transmits: SmallVec::new(),
            events: SmallVec::new(),
        }
    }

    pub(crate) fn transmit(&mut self, message: &Bytes) {
        let pending = self
            .transmits
            .iter()
            .any(|queued| queued.as_ptr() == message.as_ptr() && queued.len() == message.len());
        if !pending {
            self.transmits.push(message.clone());
        }
    }

    pub(crate) fn event(&mut self, event: E) {
        self.events.push(event);
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.transmits.is_empty()).then(|| self.transmits.remove(0))
    }

    pub(crate) fn poll_event(&mut self) -> Option<E> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }
}

/// The interval after `current` for timers that double up to a cap
/// (E in `Trying`, G): `min(2·current, cap)`, never below
/// [`MIN_RETRANSMIT_INTERVAL`].
pub(crate) fn doubled_capped(current: Duration, cap: Duration) -> Duration {
    current
        .saturating_mul(2)
        .min(cap)
        .max(MIN_RETRANSMIT_INTERVAL)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for the transaction tests: a simulated clock origin and
    //! draining of the pull queues.

    use std::time::{Duration, Instant};

    /// The origin of the simulated clock. It is the only place the tests
    /// read the real clock; every other instant is `origin + Duration`.
    pub(crate) fn origin() -> Instant {
        Instant::now()
    }

    pub(crate) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Everything `poll` yields until it yields `None`.
    pub(crate) fn drain<T>(mut poll: impl FnMut() -> Option<T>) -> Vec<T> {
        std::iter::from_fn(&mut poll).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rfc3261() {
        let c = TimerConfig::default();
        assert_eq!(c.t1, Duration::from_millis(500));
        assert_eq!(c.t2, Duration::from_secs(4));
        assert_eq!(c.t4, Duration::from_secs(5));
        assert_eq!(c.timer_b(), Duration::from_secs(32));
        assert_eq!(c.timer_f(), Duration::from_secs(32));
        assert_eq!(c.timer_h(), Duration::from_secs(32));
        assert_eq!(c.timer_l(), Duration::from_secs(32));
        assert_eq!(c.timer_m(), Duration::from_secs(32));
    }

    #[test]
    fn transport_dependent_timers_are_zero_on_reliable() {
        let c = TimerConfig::default();
        let u = Transport::Unreliable;
        let r = Transport::Reliable;
        assert_eq!(c.timer_d(u), Duration::from_secs(32));
        assert_eq!(c.timer_i(u), Duration::from_secs(5));
        assert_eq!(c.timer_j(u), Duration::from_secs(32));
        assert_eq!(c.timer_k(u), Duration::from_secs(5));
        for d in [c.timer_d(r), c.timer_i(r), c.timer_j(r), c.timer_k(r)] {
            assert_eq!(d, Duration::ZERO);
        }
    }

    #[test]
    fn configured_values_propagate() {
        let c = TimerConfig::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        assert_eq!(c.timer_b(), Duration::from_millis(6400));
        assert_eq!(c.timer_i(Transport::Unreliable), Duration::from_secs(2));
        assert_eq!(
            c.timer_j(Transport::Unreliable),
            Duration::from_millis(6400)
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::of(100), Ok(StatusClass::Provisional));
        assert_eq!(StatusClass::of(199), Ok(StatusClass::Provisional));
        assert_eq!(StatusClass::of(200), Ok(StatusClass::Success));
        assert_eq!(StatusClass::of(299), Ok(StatusClass::Success));
        assert_eq!(StatusClass::of(300), Ok(StatusClass::Failure));
        assert_eq!(StatusClass::of(699), Ok(StatusClass::Failure));
        assert_eq!(
            StatusClass::of(99),
            Err(TransactionError::InvalidStatus(99))
        );
        assert_eq!(
            StatusClass::of(700),
            Err(TransactionError::InvalidStatus(700))
        );
    }

    #[test]
    fn doubling_caps_and_has_a_floor() {
        let t2 = Duration::from_secs(4);
        assert_eq!(
            doubled_capped(Duration::from_millis(500), t2),
            Duration::from_secs(1)
        );
        assert_eq!(doubled_capped(Duration::from_secs(2), t2), t2);
        assert_eq!(doubled_capped(t2, t2), t2);
        assert_eq!(
            doubled_capped(Duration::ZERO, Duration::ZERO),
            MIN_RETRANSMIT_INTERVAL
        );
    }

    #[test]
    fn outbox_keeps_one_pending_copy_per_message() {
        let mut out: Outbox<()> = Outbox::new();
        let a = Bytes::from_static(b"INVITE");
        let b = Bytes::from(b"INVITE".to_vec());
        for _ in 0..100 {
            out.transmit(&a);
        }
        out.transmit(&b);
        assert_eq!(out.poll_transmit().as_deref(), Some(&b"INVITE"[..]));
        assert_eq!(out.poll_transmit().as_deref(), Some(&b"INVITE"[..]));
        assert_eq!(out.poll_transmit(), None);
        out.transmit(&a);
        assert!(out.poll_transmit().is_some());
    }

    /// After termination every machine holds no timer and answers a
    /// flood of late input with nothing, so a terminated transaction that
    /// lingers costs nothing and queues nothing.
    #[test]
    fn terminated_machines_hold_no_deadline_and_queue_nothing() {
        use testutil::{drain, ms, origin};
        let t0 = origin();
        let config = TimerConfig::default();
        let late = t0 + ms(100_000);
        let msg = Bytes::from_static(b"message");

        let mut ci = ClientInvite::new(t0, config, Transport::Unreliable, msg.clone());
        ci.handle_timeout(t0 + ms(40_000));
        assert!(ci.is_terminated());
        drain(|| ci.poll_transmit());
        drain(|| ci.poll_event());
        for status in [100, 200, 486] {
            ci.on_response(late, status).unwrap();
        }
        ci.handle_timeout(late);
        assert_eq!(ci.next_deadline(), None);
        assert_eq!(ci.poll_transmit(), None);
        assert_eq!(ci.poll_event(), None);

        let mut cn = ClientNonInvite::new(t0, config, Transport::Unreliable, msg.clone());
        cn.on_response(t0, 200).unwrap();
        cn.handle_timeout(t0 + ms(5_000));
        assert!(cn.is_terminated());
        drain(|| cn.poll_transmit());
        drain(|| cn.poll_event());
        for status in [100, 200, 486] {
            cn.on_response(late, status).unwrap();
        }
        cn.handle_timeout(late);
        assert_eq!(cn.next_deadline(), None);
        assert_eq!(cn.poll_transmit(), None);
        assert_eq!(cn.poll_event(), None);

        let mut si = ServerInvite::new(config, Transport::Unreliable);
        si.send_response(t0, 500, msg.clone()).unwrap();
        si.on_ack(t0);
        si.handle_timeout(t0 + ms(5_000));
        assert!(si.is_terminated());
        drain(|| si.poll_transmit());
        for _ in 0..100 {
            si.on_request();
            si.on_ack(late);
        }
        si.handle_timeout(late);
        assert!(si.send_response(late, 200, msg.clone()).is_err());
        assert_eq!(si.next_deadline(), None);
        assert_eq!(si.poll_transmit(), None);
        assert_eq!(si.poll_event(), None);

        let mut sn = ServerNonInvite::new(config, Transport::Unreliable);
        sn.send_response(t0, 200, msg.clone()).unwrap();
        sn.handle_timeout(t0 + ms(32_000));
        assert!(sn.is_terminated());
        drain(|| sn.poll_transmit());
        for _ in 0..100 {
            sn.on_request();
        }
        sn.handle_timeout(late);
        assert_eq!(sn.next_deadline(), None);
        assert_eq!(sn.poll_transmit(), None);
        assert_eq!(sn.poll_event(), None);
    }

    /// The module's code must take time only from its callers. The test
    /// helper [`testutil::origin`] is the single allowed reader of the
    /// clock.
    #[test]
    fn no_clock_reads_outside_the_test_origin() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("timers.rs", include_str!("timers.rs")),
            ("key.rs", include_str!("key.rs")),
            ("client.rs", include_str!("client.rs")),
            ("server.rs", include_str!("server.rs")),
        ];
        let instant_now = concat!("Instant", "::now");
        let system_now = concat!("SystemTime", "::now");
        let mut instant_reads = 0;
        for (name, text) in sources {
            instant_reads += text.matches(instant_now).count();
            assert_eq!(
                text.matches(system_now).count(),
                0,
                "{name} reads SystemTime"
            );
            if name != "mod.rs" {
                assert_eq!(
                    text.matches(instant_now).count(),
                    0,
                    "{name} reads the clock"
                );
            }
        }
        assert_eq!(instant_reads, 1, "only testutil::origin may read the clock");
    }
}
