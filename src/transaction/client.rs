//! Client transactions: INVITE (RFC 3261 17.1.1 with the RFC 6026
//! `Accepted` state) and non-INVITE (17.1.2).
//!
//! A client transaction sends its request when it is created (the first
//! `poll_transmit()` yields it) and retransmits it on an unreliable
//! transport. Received responses come in as status codes through
//! `on_response`; what the proxy core must do with them comes out as
//! events.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timers::{timer_names, Timers};
use super::{
    doubled_capped, Outbox, StatusClass, TimerConfig, TransactionError, Transport,
    MIN_RETRANSMIT_INTERVAL,
};

/// States of a client INVITE transaction (RFC 3261 figure 5, RFC 6026
/// figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientInviteState {
    /// The INVITE was sent; no response yet. Timers A and B run.
    Calling,
    /// A provisional response arrived; the request is no longer
    /// retransmitted and the transaction waits for a final response.
    Proceeding,
    /// A 3xx-6xx arrived and was acknowledged; Timer D absorbs its
    /// retransmissions, each one answered by the ACK again.
    Completed,
    /// A 2xx arrived (RFC 6026); further 2xx responses are passed up until
    /// Timer M fires.
    Accepted,
    /// Finished: the machine ignores all input and may be dropped.
    Terminated,
}

impl ClientInviteState {
    /// The state's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Calling => "Calling",
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Accepted => "Accepted",
            Self::Terminated => "Terminated",
        }
    }
}

/// What a client INVITE transaction tells the proxy core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientInviteEvent {
    /// A 1xx response arrived in `Calling` or `Proceeding`; the core
    /// forwards it.
    Provisional {
        /// Its status code.
        status: u16,
    },
    /// A 2xx response arrived, the first one or a later one in `Accepted`
    /// (a retransmission or a 2xx from another fork); the core forwards
    /// each of them.
    Success {
        /// Its status code.
        status: u16,
    },
    /// The first 3xx-6xx response arrived. The core builds the ACK for it
    /// and hands it over with [`ClientInvite::send_ack`]; the transaction
    /// sends it and answers the response's retransmissions with it.
    /// Retransmissions of the response produce no further event.
    Failure {
        /// Its status code.
        status: u16,
    },
    /// Timer B fired in `Calling`: the request got no response. A proxy
    /// treats it as a 408 (Request Timeout). The transaction is terminated.
    Timeout,
    /// The caller reported a transport failure while the transaction was
    /// sending. The transaction is terminated.
    TransportError,
}

timer_names! {
    /// Timers of a client INVITE transaction. On equal deadlines, B fires
    /// before A, so the timeout wins over a last retransmission.
    pub enum ClientInviteTimer {
        /// Timer B: transaction timeout in `Calling` (64·T1).
        B,
        /// Timer A: request retransmission in `Calling` (T1, doubling;
        /// unreliable transports only).
        A,
        /// Timer D: end of `Completed` (32 s; zero on reliable transports).
        D,
        /// Timer M: end of `Accepted` (64·T1).
        M,
    }
}

/// Where the ACK for a 3xx-6xx stands.
#[derive(Debug, Clone)]
enum Ack {
    /// No 3xx-6xx response yet.
    NotNeeded,
    /// A 3xx-6xx arrived; the core has not supplied the ACK yet.
    Awaited,
    /// The ACK was sent and is kept to answer retransmissions.
    Held(Bytes),
    /// The ACK was sent and is no longer needed.
    Sent,
}

/// A client INVITE transaction (RFC 3261 17.1.1, RFC 6026 section 7.2).
#[derive(Debug)]
pub struct ClientInvite {
    config: TimerConfig,
    transport: Transport,
    state: ClientInviteState,
    request: Bytes,
    ack: Ack,
    /// The interval Timer A is re-armed with the next time it fires.
    timer_a_interval: Duration,
    timers: Timers<ClientInviteTimer, 4>,
    out: Outbox<ClientInviteEvent>,
}

impl ClientInvite {
    /// Starts the transaction at `now` in `Calling`: queues `request` for
    /// sending, arms Timer B and, on an unreliable transport, Timer A.
    pub fn new(now: Instant, config: TimerConfig, transport: Transport, request: Bytes) -> Self {
        let mut timers = Timers::new();
        timers.arm(ClientInviteTimer::B, now, config.timer_b());
        let timer_a_interval = config.timer_a().max(MIN_RETRANSMIT_INTERVAL);
        if !transport.is_reliable() {
            timers.arm(ClientInviteTimer::A, now, timer_a_interval);
        }
        let mut out = Outbox::new();
        out.transmit(&request);
        Self {
            config,
            transport,
            state: ClientInviteState::Calling,
            request,
            ack: Ack::NotNeeded,
            timer_a_interval,
            timers,
            out,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// True once the transaction has ended.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// Feeds a response received for this transaction, by status code.
    ///
    /// Responses that the current state does not expect are absorbed
    /// (nothing happens); a response after termination is ignored.
    ///
    /// # Errors
    /// [`TransactionError::InvalidStatus`] for a status outside 100..=699.
    pub fn on_response(&mut self, now: Instant, status: u16) -> Result<(), TransactionError> {
        use ClientInviteState::*;
        let class = StatusClass::of(status)?;
        match (self.state, class) {
            (Calling | Proceeding, StatusClass::Provisional) => {
                self.state = Proceeding;
                self.timers.cancel(ClientInviteTimer::A);
                self.timers.cancel(ClientInviteTimer::B);
                self.out.event(ClientInviteEvent::Provisional { status });
            }
            (Calling | Proceeding, StatusClass::Success) => {
                self.state = Accepted;
                self.timers.clear();
                // Never sent again: free it now, not when Timer M ends.
                self.request = Bytes::new();
                self.timers
                    .arm(ClientInviteTimer::M, now, self.config.timer_m());
                self.out.event(ClientInviteEvent::Success { status });
            }
            (Calling | Proceeding, StatusClass::Failure) => {
                self.state = Completed;
                self.timers.clear();
                self.request = Bytes::new();
                self.ack = Ack::Awaited;
                self.out.event(ClientInviteEvent::Failure { status });
                let timer_d = self.config.timer_d(self.transport);
                if timer_d.is_zero() {
                    self.terminate();
                } else {
                    self.timers.arm(ClientInviteTimer::D, now, timer_d);
                }
            }
            (Completed, StatusClass::Failure) => {
                if let Ack::Held(ack) = &self.ack {
                    self.out.transmit(ack);
                }
            }
            (Accepted, StatusClass::Success) => {
                self.out.event(ClientInviteEvent::Success { status });
            }
            (Completed | Accepted | Terminated, _) => {}
        }
        Ok(())
    }

    /// Hands over the ACK for the 3xx-6xx response reported by
    /// [`ClientInviteEvent::Failure`]. The ACK is queued for sending, and in
    /// `Completed` it is kept to answer retransmissions of the response.
    ///
    /// On a reliable transport the transaction is already terminated when
    /// the failure is reported (Timer D is zero); the ACK is still sent.
    ///
    /// # Errors
    /// [`TransactionError::InvalidState`] when no 3xx-6xx response has
    /// arrived or an ACK was already supplied.
    pub fn send_ack(&mut self, ack: Bytes) -> Result<(), TransactionError> {
        if !matches!(self.ack, Ack::Awaited) {
            return Err(TransactionError::InvalidState {
                action: "send an ACK",
                state: self.state.name(),
            });
        }
        self.out.transmit(&ack);
        self.ack = if self.state == ClientInviteState::Completed {
            Ack::Held(ack)
        } else {
            Ack::Sent
        };
        Ok(())
    }

    /// Reports that the transport failed to send for this transaction. In
    /// `Calling`, `Proceeding` and `Completed` the proxy core learns it
    /// through [`ClientInviteEvent::TransportError`] and the transaction
    /// ends; in other states the report is ignored.
    pub fn on_transport_error(&mut self) {
        use ClientInviteState::*;
        if matches!(self.state, Calling | Proceeding | Completed) {
            self.out.event(ClientInviteEvent::TransportError);
            self.terminate();
        }
    }

    /// Sends the request again over UDP, in this same transaction, after
    /// the reliable transport it was sent on could not carry it (RFC 3261
    /// section 18.1.1: a switch to TCP made only for the request's size,
    /// then refused). `request` is the request with its Via naming UDP.
    /// Only in `Calling`, before any response: returns whether it was done.
    /// Timer A starts now; Timer B keeps running from the first attempt.
    pub fn fall_back_to_udp(&mut self, now: Instant, request: Bytes) -> bool {
        if self.state != ClientInviteState::Calling || self.transport != Transport::Reliable {
            return false;
        }
        self.transport = Transport::Unreliable;
        self.request = request;
        self.timer_a_interval = self.config.timer_a().max(MIN_RETRANSMIT_INTERVAL);
        self.timers
            .arm(ClientInviteTimer::A, now, self.timer_a_interval);
        self.out.transmit(&self.request);
        true
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientInviteState::*;
        while let Some((timer, deadline)) = self.timers.pop_expired(now) {
            match (timer, self.state) {
                (ClientInviteTimer::A, Calling) => {
                    self.out.transmit(&self.request);
                    self.timer_a_interval = self.timer_a_interval.saturating_mul(2);
                    self.timers
                        .arm(ClientInviteTimer::A, deadline, self.timer_a_interval);
                }
                (ClientInviteTimer::B, Calling) => {
                    self.out.event(ClientInviteEvent::Timeout);
                    self.terminate();
                }
                (ClientInviteTimer::D, Completed) | (ClientInviteTimer::M, Accepted) => {
                    self.terminate();
                }
                _ => {}
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next;
    /// `None` when no timer is armed (always so once terminated).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next message to send to the peer: the request and its
    /// retransmissions, or the ACK.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.poll_transmit()
    }

    /// The next event for the proxy core.
    pub fn poll_event(&mut self) -> Option<ClientInviteEvent> {
        self.out.poll_event()
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.timers.clear();
        self.request = Bytes::new();
        if matches!(self.ack, Ack::Held(_)) {
            self.ack = Ack::Sent;
        }
    }
}

/// States of a client non-INVITE transaction (RFC 3261 figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNonInviteState {
    /// The request was sent; no response yet. Timers E and F run.
    Trying,
    /// A provisional response arrived; retransmissions continue every T2.
    Proceeding,
    /// A final response arrived; Timer K absorbs its retransmissions.
    Completed,
    /// Finished: the machine ignores all input and may be dropped.
    Terminated,
}

impl ClientNonInviteState {
    /// The state's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Trying => "Trying",
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Terminated => "Terminated",
        }
    }
}

/// What a client non-INVITE transaction tells the proxy core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNonInviteEvent {
    /// A 1xx response arrived in `Trying` or `Proceeding`.
    Provisional {
        /// Its status code.
        status: u16,
    },
    /// The final (2xx-6xx) response arrived; retransmissions of it produce
    /// no further event.
    Final {
        /// Its status code.
        status: u16,
    },
    /// Timer F fired before any final response: a proxy treats it as a
    /// 408 (Request Timeout). The transaction is terminated.
    Timeout,
    /// The caller reported a transport failure while the transaction was
    /// sending. The transaction is terminated.
    TransportError,
}

timer_names! {
    /// Timers of a client non-INVITE transaction. On equal deadlines, F
    /// fires before E.
    pub enum ClientNonInviteTimer {
        /// Timer F: transaction timeout (64·T1).
        F,
        /// Timer E: request retransmission (T1 doubling up to T2 in
        /// `Trying`, T2 in `Proceeding`; unreliable transports only).
        E,
        /// Timer K: end of `Completed` (T4; zero on reliable transports).
        K,
    }
}

/// A client non-INVITE transaction (RFC 3261 17.1.2).
#[derive(Debug)]
pub struct ClientNonInvite {
    config: TimerConfig,
    transport: Transport,
    state: ClientNonInviteState,
    request: Bytes,
    /// The interval Timer E is re-armed with the next time it fires in
    /// `Trying`.
    timer_e_interval: Duration,
    timers: Timers<ClientNonInviteTimer, 3>,
    out: Outbox<ClientNonInviteEvent>,
}

impl ClientNonInvite {
    /// Starts the transaction at `now` in `Trying`: queues `request` for
    /// sending, arms Timer F and, on an unreliable transport, Timer E.
    pub fn new(now: Instant, config: TimerConfig, transport: Transport, request: Bytes) -> Self {
        let mut timers = Timers::new();
        timers.arm(ClientNonInviteTimer::F, now, config.timer_f());
        let timer_e_interval = config.timer_e().max(MIN_RETRANSMIT_INTERVAL);
        if !transport.is_reliable() {
            timers.arm(ClientNonInviteTimer::E, now, timer_e_interval);
        }
        let mut out = Outbox::new();
        out.transmit(&request);
        Self {
            config,
            transport,
            state: ClientNonInviteState::Trying,
            request,
            timer_e_interval,
            timers,
            out,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// True once the transaction has ended.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    /// Feeds a response received for this transaction, by status code.
    /// Responses in `Completed` are absorbed; after termination they are
    /// ignored.
    ///
    /// # Errors
    /// [`TransactionError::InvalidStatus`] for a status outside 100..=699.
    pub fn on_response(&mut self, now: Instant, status: u16) -> Result<(), TransactionError> {
        use ClientNonInviteState::*;
        let class = StatusClass::of(status)?;
        match (self.state, class) {
            (Trying | Proceeding, StatusClass::Provisional) => {
                self.state = Proceeding;
                self.out.event(ClientNonInviteEvent::Provisional { status });
            }
            (Trying | Proceeding, StatusClass::Success | StatusClass::Failure) => {
                self.state = Completed;
                self.timers.clear();
                self.out.event(ClientNonInviteEvent::Final { status });
                let timer_k = self.config.timer_k(self.transport);
                if timer_k.is_zero() {
                    self.terminate();
                } else {
                    self.timers.arm(ClientNonInviteTimer::K, now, timer_k);
                }
            }
            (Completed | Terminated, _) => {}
        }
        Ok(())
    }

    /// Reports that the transport failed to send the request. In `Trying`
    /// and `Proceeding` the proxy core learns it through
    /// [`ClientNonInviteEvent::TransportError`] and the transaction ends;
    /// in other states the report is ignored.
    pub fn on_transport_error(&mut self) {
        use ClientNonInviteState::*;
        if matches!(self.state, Trying | Proceeding) {
            self.out.event(ClientNonInviteEvent::TransportError);
            self.terminate();
        }
    }

    /// The request as it is sent.
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// As [`ClientInvite::fall_back_to_udp`]: only in `Trying`; Timer E
    /// starts now, Timer F keeps running.
    pub fn fall_back_to_udp(&mut self, now: Instant, request: Bytes) -> bool {
        if self.state != ClientNonInviteState::Trying || self.transport != Transport::Reliable {
            return false;
        }
        self.transport = Transport::Unreliable;
        self.request = request;
        self.timer_e_interval = self.config.timer_e().max(MIN_RETRANSMIT_INTERVAL);
        self.timers
            .arm(ClientNonInviteTimer::E, now, self.timer_e_interval);
        self.out.transmit(&self.request);
        true
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientNonInviteState::*;
        while let Some((timer, deadline)) = self.timers.pop_expired(now) {
            match (timer, self.state) {
                (ClientNonInviteTimer::E, Trying) => {
                    self.out.transmit(&self.request);
                    self.timer_e_interval = doubled_capped(self.timer_e_interval, self.config.t2);
                    self.timers
                        .arm(ClientNonInviteTimer::E, deadline, self.timer_e_interval);
                }
                (ClientNonInviteTimer::E, Proceeding) => {
                    self.out.transmit(&self.request);
                    let interval = self.config.t2.max(MIN_RETRANSMIT_INTERVAL);
                    self.timers.arm(ClientNonInviteTimer::E, deadline, interval);
                }
                (ClientNonInviteTimer::F, Trying | Proceeding) => {
                    self.out.event(ClientNonInviteEvent::Timeout);
                    self.terminate();
                }
                (ClientNonInviteTimer::K, Completed) => self.terminate(),
                _ => {}
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next;
    /// `None` when no timer is armed (always so once terminated).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next message to send to the peer: the request or a
    /// retransmission of it.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.poll_transmit()
    }

    /// The next event for the proxy core.
    pub fn poll_event(&mut self) -> Option<ClientNonInviteEvent> {
        self.out.poll_event()
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
        self.timers.clear();
        self.request = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{drain, ms, origin};

    const INVITE: &[u8] = b"INVITE sip:112@example.net SIP/2.0\r\n\r\n";
    const ACK: &[u8] = b"ACK sip:112@example.net SIP/2.0\r\n\r\n";
    const OPTIONS: &[u8] = b"OPTIONS sip:psap@example.net SIP/2.0\r\n\r\n";

    fn invite(t0: Instant, transport: Transport) -> ClientInvite {
        let mut tx = ClientInvite::new(
            t0,
            TimerConfig::default(),
            transport,
            Bytes::from_static(INVITE),
        );
        assert_eq!(drain(|| tx.poll_transmit()), vec![INVITE]);
        tx
    }

    fn non_invite(t0: Instant, transport: Transport) -> ClientNonInvite {
        let mut tx = ClientNonInvite::new(
            t0,
            TimerConfig::default(),
            transport,
            Bytes::from_static(OPTIONS),
        );
        assert_eq!(drain(|| tx.poll_transmit()), vec![OPTIONS]);
        tx
    }

    /// Runs the simulated clock from deadline to deadline up to `until`
    /// and records, for each deadline, the offset from `t0` and how many
    /// messages it produced.
    fn run_invite(tx: &mut ClientInvite, t0: Instant, until: Instant) -> Vec<(Duration, usize)> {
        let mut log = Vec::new();
        while let Some(deadline) = tx.next_deadline().filter(|d| *d <= until) {
            tx.handle_timeout(deadline);
            log.push((deadline - t0, drain(|| tx.poll_transmit()).len()));
        }
        log
    }

    fn run_non_invite(
        tx: &mut ClientNonInvite,
        t0: Instant,
        until: Instant,
    ) -> Vec<(Duration, usize)> {
        let mut log = Vec::new();
        while let Some(deadline) = tx.next_deadline().filter(|d| *d <= until) {
            tx.handle_timeout(deadline);
            log.push((deadline - t0, drain(|| tx.poll_transmit()).len()));
        }
        log
    }

    #[test]
    fn timer_a_retransmits_at_t1_doublings_until_timer_b() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Unreliable);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(500)));
        tx.handle_timeout(t0 + ms(499));
        assert_eq!(tx.poll_transmit(), None);

        let log = run_invite(&mut tx, t0, t0 + ms(60_000));
        // Intervals T1, 2T1, 4T1, 8T1, 16T1, 32T1, then Timer B at 64·T1.
        let expected: Vec<(Duration, usize)> = vec![
            (ms(500), 1),
            (ms(1_500), 1),
            (ms(3_500), 1),
            (ms(7_500), 1),
            (ms(15_500), 1),
            (ms(31_500), 1),
            (ms(32_000), 0),
        ];
        assert_eq!(log, expected);
        assert_eq!(drain(|| tx.poll_event()), vec![ClientInviteEvent::Timeout]);
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn timer_a_follows_a_configured_t1() {
        let t0 = origin();
        let config = TimerConfig::new(ms(100), ms(1_000), ms(1_000));
        let mut tx = ClientInvite::new(
            t0,
            config,
            Transport::Unreliable,
            Bytes::from_static(INVITE),
        );
        drain(|| tx.poll_transmit());
        let log = run_invite(&mut tx, t0, t0 + ms(10_000));
        let times: Vec<Duration> = log.iter().map(|(at, _)| *at).collect();
        assert_eq!(
            times,
            vec![
                ms(100),
                ms(300),
                ms(700),
                ms(1_500),
                ms(3_100),
                ms(6_300),
                ms(6_400)
            ]
        );
        assert!(tx.is_terminated());
    }

    #[test]
    fn late_timeout_call_catches_up_without_duplicates() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Unreliable);
        // One call long after several Timer A deadlines: one pending copy.
        tx.handle_timeout(t0 + ms(20_000));
        assert_eq!(drain(|| tx.poll_transmit()).len(), 1);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(31_500)));
        assert_eq!(tx.state(), ClientInviteState::Calling);
    }

    #[test]
    fn reliable_invite_never_retransmits_and_times_out_with_b() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Reliable);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(32_000)));
        tx.handle_timeout(t0 + ms(31_999));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), None);
        tx.handle_timeout(t0 + ms(32_000));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), Some(ClientInviteEvent::Timeout));
        assert!(tx.is_terminated());
    }

    /// A request switched to TCP for its size, whose connection was refused,
    /// goes out over UDP in the same transaction: Timer A from the fallback,
    /// Timer B still from the first attempt.
    #[test]
    fn a_refused_reliable_invite_falls_back_to_udp_and_retransmits() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Reliable);
        const UDP: &[u8] = b"INVITE sip:112@example.net SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n\r\n";
        assert!(tx.fall_back_to_udp(t0 + ms(10), Bytes::from_static(UDP)));
        assert_eq!(drain(|| tx.poll_transmit()), vec![UDP]);
        assert_eq!(tx.poll_event(), None, "no transport error reported");
        let log = run_invite(&mut tx, t0, t0 + ms(60_000));
        assert_eq!(log[0], (ms(510), 1));
        assert_eq!(log[1], (ms(1_510), 1));
        assert_eq!(*log.last().unwrap(), (ms(32_000), 0));
        assert_eq!(drain(|| tx.poll_event()), vec![ClientInviteEvent::Timeout]);
        // Only once, and never on a transaction already on UDP.
        let mut udp = invite(t0, Transport::Unreliable);
        assert!(!udp.fall_back_to_udp(t0, Bytes::from_static(UDP)));
    }

    /// Once the peer has answered over TCP, TCP works: no fallback.
    #[test]
    fn no_fallback_after_a_response() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Reliable);
        tx.on_response(t0 + ms(5), 100).unwrap();
        assert!(!tx.fall_back_to_udp(t0 + ms(10), Bytes::from_static(INVITE)));
        let mut n = non_invite(t0, Transport::Reliable);
        n.on_response(t0 + ms(5), 100).unwrap();
        assert!(!n.fall_back_to_udp(t0 + ms(10), Bytes::from_static(OPTIONS)));
        let mut n = non_invite(t0, Transport::Reliable);
        assert!(n.fall_back_to_udp(t0 + ms(10), Bytes::from_static(OPTIONS)));
        assert_eq!(drain(|| n.poll_transmit()), vec![OPTIONS]);
        assert_eq!(n.next_deadline(), Some(t0 + ms(510)));
    }

    #[test]
    fn provisional_stops_timers_a_and_b() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Unreliable);
        tx.handle_timeout(t0 + ms(500));
        assert_eq!(drain(|| tx.poll_transmit()).len(), 1);
        tx.on_response(t0 + ms(700), 100).unwrap();
        tx.on_response(t0 + ms(900), 180).unwrap();
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                ClientInviteEvent::Provisional { status: 100 },
                ClientInviteEvent::Provisional { status: 180 },
            ]
        );
        assert_eq!(tx.next_deadline(), None);
        tx.handle_timeout(t0 + ms(120_000));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), None);
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
    }

    #[test]
    fn failure_is_acked_and_timer_d_absorbs_retransmissions() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Unreliable);
        tx.on_response(t0 + ms(200), 180).unwrap();
        tx.on_response(t0 + ms(1_000), 486).unwrap();
        assert_eq!(tx.state(), ClientInviteState::Completed);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                ClientInviteEvent::Provisional { status: 180 },
                ClientInviteEvent::Failure { status: 486 },
            ]
        );
        // Before the core supplies the ACK, a retransmission sends nothing.
        tx.on_response(t0 + ms(1_100), 486).unwrap();
        assert_eq!(tx.poll_transmit(), None);

        tx.send_ack(Bytes::from_static(ACK)).unwrap();
        assert_eq!(drain(|| tx.poll_transmit()), vec![ACK]);
        assert!(tx.send_ack(Bytes::from_static(ACK)).is_err());

        // Each retransmitted final response is answered by the ACK again,
        // and passed up to nobody.
        for at in [1_500, 2_500, 4_500] {
            tx.on_response(t0 + ms(at), 486).unwrap();
            assert_eq!(drain(|| tx.poll_transmit()), vec![ACK]);
        }
        tx.on_response(t0 + ms(5_000), 200).unwrap();
        tx.on_response(t0 + ms(5_000), 183).unwrap();
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), None);

        // Timer D: 32 s after entering Completed.
        assert_eq!(tx.next_deadline(), Some(t0 + ms(33_000)));
        tx.handle_timeout(t0 + ms(32_999));
        assert_eq!(tx.state(), ClientInviteState::Completed);
        tx.handle_timeout(t0 + ms(33_000));
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);

        tx.on_response(t0 + ms(34_000), 486).unwrap();
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn timer_d_is_zero_on_reliable_transport() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Reliable);
        tx.on_response(t0 + ms(300), 503).unwrap();
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![ClientInviteEvent::Failure { status: 503 }]
        );
        // The ACK is still sent once, after the transaction has ended.
        tx.send_ack(Bytes::from_static(ACK)).unwrap();
        assert_eq!(drain(|| tx.poll_transmit()), vec![ACK]);
        assert!(tx.send_ack(Bytes::from_static(ACK)).is_err());
        tx.on_response(t0 + ms(400), 503).unwrap();
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn success_enters_accepted_and_timer_m_ends_it() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Unreliable);
        tx.on_response(t0 + ms(2_000), 200).unwrap();
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(34_000)));

        // Retransmitted and forked 2xx responses keep being passed up;
        // other responses are absorbed; nothing is sent.
        tx.on_response(t0 + ms(2_500), 200).unwrap();
        tx.on_response(t0 + ms(3_000), 202).unwrap();
        tx.on_response(t0 + ms(3_000), 486).unwrap();
        tx.on_response(t0 + ms(3_000), 180).unwrap();
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                ClientInviteEvent::Success { status: 200 },
                ClientInviteEvent::Success { status: 200 },
                ClientInviteEvent::Success { status: 202 },
            ]
        );
        assert_eq!(tx.poll_transmit(), None);
        assert!(tx.send_ack(Bytes::from_static(ACK)).is_err());

        tx.handle_timeout(t0 + ms(33_999));
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        tx.handle_timeout(t0 + ms(34_000));
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        tx.on_response(t0 + ms(35_000), 200).unwrap();
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn timer_m_also_applies_on_reliable_transport() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Reliable);
        tx.on_response(t0, 200).unwrap();
        assert_eq!(tx.next_deadline(), Some(t0 + ms(32_000)));
        tx.handle_timeout(t0 + ms(32_000));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_transport_error_terminates_with_an_event() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Unreliable);
        tx.on_transport_error();
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(ClientInviteEvent::TransportError));
        assert_eq!(tx.next_deadline(), None);
        tx.on_transport_error();
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn invite_rejects_bad_input_without_changing_state() {
        let t0 = origin();
        let mut tx = invite(t0, Transport::Unreliable);
        assert_eq!(
            tx.on_response(t0, 700),
            Err(TransactionError::InvalidStatus(700))
        );
        assert_eq!(
            tx.on_response(t0, 99),
            Err(TransactionError::InvalidStatus(99))
        );
        assert_eq!(
            tx.send_ack(Bytes::from_static(ACK)),
            Err(TransactionError::InvalidState {
                action: "send an ACK",
                state: "Calling"
            })
        );
        assert_eq!(tx.state(), ClientInviteState::Calling);
        assert_eq!(tx.poll_event(), None);
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn timer_e_doubles_up_to_t2_then_timer_f_times_out() {
        let t0 = origin();
        let mut tx = non_invite(t0, Transport::Unreliable);
        let log = run_non_invite(&mut tx, t0, t0 + ms(60_000));
        let mut expected: Vec<(Duration, usize)> =
            vec![(ms(500), 1), (ms(1_500), 1), (ms(3_500), 1), (ms(7_500), 1)];
        // From here on the interval is T2 = 4 s.
        let mut at = 7_500;
        while at + 4_000 < 32_000 {
            at += 4_000;
            expected.push((ms(at), 1));
        }
        expected.push((ms(32_000), 0));
        assert_eq!(log, expected);
        assert_eq!(expected[expected.len() - 2].0, ms(31_500));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![ClientNonInviteEvent::Timeout]
        );
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn timer_e_retransmits_every_t2_in_proceeding() {
        let t0 = origin();
        let mut tx = non_invite(t0, Transport::Unreliable);
        tx.handle_timeout(t0 + ms(500));
        assert_eq!(drain(|| tx.poll_transmit()).len(), 1);
        tx.on_response(t0 + ms(700), 100).unwrap();
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        assert_eq!(
            tx.poll_event(),
            Some(ClientNonInviteEvent::Provisional { status: 100 })
        );
        // The pending Timer E still fires at 1.5 s, then every T2, where
        // `Trying` would have used 2 s.
        let log = run_non_invite(&mut tx, t0, t0 + ms(14_000));
        assert_eq!(
            log,
            vec![
                (ms(1_500), 1),
                (ms(5_500), 1),
                (ms(9_500), 1),
                (ms(13_500), 1)
            ]
        );
        // Timer F still ends the transaction in Proceeding.
        let rest = run_non_invite(&mut tx, t0, t0 + ms(40_000));
        assert_eq!(rest.last(), Some(&(ms(32_000), 0)));
        assert_eq!(tx.poll_event(), Some(ClientNonInviteEvent::Timeout));
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_non_invite_only_has_timer_f() {
        let t0 = origin();
        let mut tx = non_invite(t0, Transport::Reliable);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(32_000)));
        let log = run_non_invite(&mut tx, t0, t0 + ms(60_000));
        assert_eq!(log, vec![(ms(32_000), 0)]);
        assert_eq!(tx.poll_event(), Some(ClientNonInviteEvent::Timeout));
    }

    #[test]
    fn timer_k_absorbs_final_retransmissions_then_terminates() {
        let t0 = origin();
        let mut tx = non_invite(t0, Transport::Unreliable);
        tx.on_response(t0 + ms(1_000), 404).unwrap();
        assert_eq!(tx.state(), ClientNonInviteState::Completed);
        assert_eq!(
            tx.poll_event(),
            Some(ClientNonInviteEvent::Final { status: 404 })
        );
        assert_eq!(tx.next_deadline(), Some(t0 + ms(6_000)));
        // No more request retransmissions, no events for retransmissions.
        tx.on_response(t0 + ms(2_000), 404).unwrap();
        tx.handle_timeout(t0 + ms(5_999));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), None);
        tx.handle_timeout(t0 + ms(6_000));
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn timer_k_is_zero_on_reliable_transport() {
        let t0 = origin();
        let mut tx = non_invite(t0, Transport::Reliable);
        tx.on_response(t0 + ms(100), 180).unwrap();
        tx.on_response(t0 + ms(200), 200).unwrap();
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                ClientNonInviteEvent::Provisional { status: 180 },
                ClientNonInviteEvent::Final { status: 200 },
            ]
        );
    }

    #[test]
    fn non_invite_transport_error_and_bad_status() {
        let t0 = origin();
        let mut tx = non_invite(t0, Transport::Unreliable);
        assert_eq!(
            tx.on_response(t0, 1_000),
            Err(TransactionError::InvalidStatus(1_000))
        );
        assert_eq!(tx.state(), ClientNonInviteState::Trying);
        tx.on_transport_error();
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(ClientNonInviteEvent::TransportError));
        assert_eq!(tx.next_deadline(), None);
    }
}
