//! Server transactions: INVITE (RFC 3261 17.2.1 with the RFC 6026
//! `Accepted` state) and non-INVITE (17.2.2).
//!
//! A server transaction is created when a new request arrives; the caller
//! passes the request to the proxy core itself. Retransmissions of the
//! request (and, for INVITE, the ACK) come in through `on_request` and
//! `on_ack`; the proxy core sends its responses through `send_response`,
//! and the transaction keeps the last one to repeat it.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timers::{timer_names, Timers};
use super::{
    doubled_capped, Outbox, StatusClass, TimerConfig, TransactionError, Transport,
    MIN_RETRANSMIT_INTERVAL,
};

/// States of a server INVITE transaction (RFC 3261 figure 7, RFC 6026
/// figure 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerInviteState {
    /// The INVITE arrived; the proxy core may send provisional responses.
    Proceeding,
    /// A 3xx-6xx was sent; Timer G retransmits it and Timer H bounds the
    /// wait for the ACK.
    Completed,
    /// The ACK arrived; Timer I absorbs its retransmissions.
    Confirmed,
    /// A 2xx was sent (RFC 6026); retransmitted INVITEs are absorbed and
    /// 2xx responses from the core are sent until Timer L fires.
    Accepted,
    /// Finished: the machine ignores all input and may be dropped.
    Terminated,
}

impl ServerInviteState {
    /// The state's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Confirmed => "Confirmed",
            Self::Accepted => "Accepted",
            Self::Terminated => "Terminated",
        }
    }
}

/// What a server INVITE transaction tells the proxy core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerInviteEvent {
    /// Timer H fired: the ACK for the 3xx-6xx never came. The transaction
    /// is terminated; the core may count it.
    AckTimeout,
    /// An ACK matching this transaction arrived in `Accepted`: it
    /// acknowledges a 2xx, so the core handles it (a proxy forwards it).
    Ack,
    /// The caller reported a transport failure while sending a response.
    /// In `Proceeding` and `Completed` the transaction is terminated; in
    /// `Accepted` it stays, as the core owns 2xx delivery.
    TransportError,
}

timer_names! {
    /// Timers of a server INVITE transaction. On equal deadlines, H fires
    /// before G.
    pub enum ServerInviteTimer {
        /// Timer H: wait for the ACK in `Completed` (64·T1).
        H,
        /// Timer G: final response retransmission in `Completed` (T1
        /// doubling up to T2; unreliable transports only).
        G,
        /// Timer I: end of `Confirmed` (T4; zero on reliable transports).
        I,
        /// Timer L: end of `Accepted` (64·T1).
        L,
    }
}

/// A server INVITE transaction (RFC 3261 17.2.1, RFC 6026 section 7.1).
///
/// It does not send `100 Trying` on its own: the core sends it through
/// [`send_response`](Self::send_response) as soon as it wants, and it is
/// then repeated for each retransmitted INVITE.
#[derive(Debug)]
pub struct ServerInvite {
    config: TimerConfig,
    transport: Transport,
    state: ServerInviteState,
    /// The last response sent, repeated for retransmitted INVITEs in
    /// `Proceeding` and by Timer G in `Completed`.
    last_response: Option<Bytes>,
    /// The interval Timer G is re-armed with the next time it fires.
    timer_g_interval: Duration,
    timers: Timers<ServerInviteTimer, 4>,
    out: Outbox<ServerInviteEvent>,
}

impl ServerInvite {
    /// A transaction for a newly received INVITE, in `Proceeding`. No
    /// timer runs until the core sends a final response.
    pub fn new(config: TimerConfig, transport: Transport) -> Self {
        Self {
            config,
            transport,
            state: ServerInviteState::Proceeding,
            last_response: None,
            timer_g_interval: config.timer_g().max(MIN_RETRANSMIT_INTERVAL),
            timers: Timers::new(),
            out: Outbox::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// True once the transaction has ended.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// Sends a response from the proxy core through the transaction.
    ///
    /// In `Proceeding`: a 1xx is sent and kept for retransmitted INVITEs; a
    /// 2xx is sent and moves to `Accepted` (Timer L); a 3xx-6xx is sent and
    /// moves to `Completed` (Timer H, and Timer G on an unreliable
    /// transport). In `Accepted` a 2xx (a retransmission by the core, or
    /// another 2xx) is sent.
    ///
    /// # Errors
    /// [`TransactionError::InvalidStatus`] for a status outside 100..=699,
    /// [`TransactionError::InvalidState`] for any other response or state.
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        response: Bytes,
    ) -> Result<(), TransactionError> {
        use ServerInviteState::*;
        let class = StatusClass::of(status)?;
        match (self.state, class) {
            (Proceeding, StatusClass::Provisional) => {}
            (Proceeding, StatusClass::Success) => {
                self.state = Accepted;
                self.timers
                    .arm(ServerInviteTimer::L, now, self.config.timer_l());
            }
            (Proceeding, StatusClass::Failure) => {
                self.state = Completed;
                self.timers
                    .arm(ServerInviteTimer::H, now, self.config.timer_h());
                if !self.transport.is_reliable() {
                    self.timers
                        .arm(ServerInviteTimer::G, now, self.timer_g_interval);
                }
            }
            (Accepted, StatusClass::Success) => {}
            (state, _) => {
                return Err(TransactionError::InvalidState {
                    action: "send this response",
                    state: state.name(),
                })
            }
        }
        self.out.transmit(&response);
        // In Accepted nothing is sent again (2xx retransmissions pass
        // through the proxy without the transaction), so a 2xx is not
        // kept for the 64*T1 the transaction lives on.
        self.last_response = (self.state != Accepted).then_some(response);
        Ok(())
    }

    /// Feeds a retransmission of the INVITE. In `Proceeding` the last
    /// response sent, if any, is sent again; in `Completed` the final
    /// response is; in other states the retransmission is absorbed.
    pub fn on_request(&mut self) {
        if matches!(
            self.state,
            ServerInviteState::Proceeding | ServerInviteState::Completed
        ) {
            if let Some(response) = &self.last_response {
                self.out.transmit(response);
            }
        }
    }

    /// Feeds an ACK matching this transaction. In `Completed` it moves to
    /// `Confirmed` (Timer I; at once to `Terminated` on a reliable
    /// transport); in `Accepted` it is passed up as
    /// [`ServerInviteEvent::Ack`]; otherwise it is absorbed.
    pub fn on_ack(&mut self, now: Instant) {
        match self.state {
            ServerInviteState::Completed => {
                self.state = ServerInviteState::Confirmed;
                self.timers.clear();
                self.last_response = None;
                let timer_i = self.config.timer_i(self.transport);
                if timer_i.is_zero() {
                    self.terminate();
                } else {
                    self.timers.arm(ServerInviteTimer::I, now, timer_i);
                }
            }
            ServerInviteState::Accepted => self.out.event(ServerInviteEvent::Ack),
            _ => {}
        }
    }

    /// Reports that the transport failed to send a response. See
    /// [`ServerInviteEvent::TransportError`] for the effect per state;
    /// in `Confirmed` and `Terminated` the report is ignored.
    pub fn on_transport_error(&mut self) {
        use ServerInviteState::*;
        match self.state {
            Proceeding | Completed => {
                self.out.event(ServerInviteEvent::TransportError);
                self.terminate();
            }
            Accepted => self.out.event(ServerInviteEvent::TransportError),
            Confirmed | Terminated => {}
        }
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ServerInviteState::*;
        while let Some((timer, deadline)) = self.timers.pop_expired(now) {
            match (timer, self.state) {
                (ServerInviteTimer::G, Completed) => {
                    if let Some(response) = &self.last_response {
                        self.out.transmit(response);
                    }
                    self.timer_g_interval = doubled_capped(self.timer_g_interval, self.config.t2);
                    self.timers
                        .arm(ServerInviteTimer::G, deadline, self.timer_g_interval);
                }
                (ServerInviteTimer::H, Completed) => {
                    self.out.event(ServerInviteEvent::AckTimeout);
                    self.terminate();
                }
                (ServerInviteTimer::I, Confirmed) | (ServerInviteTimer::L, Accepted) => {
                    self.terminate();
                }
                _ => {}
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next;
    /// `None` when no timer is armed (in `Proceeding`, and always once
    /// terminated).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next response to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.poll_transmit()
    }

    /// The next event for the proxy core.
    pub fn poll_event(&mut self) -> Option<ServerInviteEvent> {
        self.out.poll_event()
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.timers.clear();
        self.last_response = None;
    }
}

/// States of a server non-INVITE transaction (RFC 3261 figure 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerNonInviteState {
    /// The request arrived; no response sent yet. Retransmissions of the
    /// request are absorbed.
    Trying,
    /// A provisional response was sent; it is repeated for each
    /// retransmitted request.
    Proceeding,
    /// A final response was sent; it is repeated for each retransmitted
    /// request until Timer J fires.
    Completed,
    /// Finished: the machine ignores all input and may be dropped.
    Terminated,
}

impl ServerNonInviteState {
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

/// What a server non-INVITE transaction tells the proxy core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerNonInviteEvent {
    /// The caller reported a transport failure while sending a response.
    /// The transaction is terminated.
    TransportError,
}

timer_names! {
    /// Timers of a server non-INVITE transaction.
    pub enum ServerNonInviteTimer {
        /// Timer J: end of `Completed` (64·T1; zero on reliable
        /// transports).
        J,
    }
}

/// A server non-INVITE transaction (RFC 3261 17.2.2).
#[derive(Debug)]
pub struct ServerNonInvite {
    config: TimerConfig,
    transport: Transport,
    state: ServerNonInviteState,
    last_response: Option<Bytes>,
    timers: Timers<ServerNonInviteTimer, 1>,
    out: Outbox<ServerNonInviteEvent>,
}

impl ServerNonInvite {
    /// A transaction for a newly received non-INVITE request, in `Trying`.
    pub fn new(config: TimerConfig, transport: Transport) -> Self {
        Self {
            config,
            transport,
            state: ServerNonInviteState::Trying,
            last_response: None,
            timers: Timers::new(),
            out: Outbox::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// True once the transaction has ended.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    /// Sends a response from the proxy core through the transaction. In
    /// `Trying` or `Proceeding`: a 1xx is sent and moves to `Proceeding`;
    /// a 2xx-6xx is sent and moves to `Completed`, armed with Timer J (at
    /// once to `Terminated` on a reliable transport).
    ///
    /// # Errors
    /// [`TransactionError::InvalidStatus`] for a status outside 100..=699,
    /// [`TransactionError::InvalidState`] once a final response was sent.
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        response: Bytes,
    ) -> Result<(), TransactionError> {
        use ServerNonInviteState::*;
        let class = StatusClass::of(status)?;
        if !matches!(self.state, Trying | Proceeding) {
            return Err(TransactionError::InvalidState {
                action: "send this response",
                state: self.state.name(),
            });
        }
        self.out.transmit(&response);
        if class == StatusClass::Provisional {
            self.state = Proceeding;
            self.last_response = Some(response);
            return Ok(());
        }
        self.state = Completed;
        let timer_j = self.config.timer_j(self.transport);
        if timer_j.is_zero() {
            self.terminate();
        } else {
            self.last_response = Some(response);
            self.timers.arm(ServerNonInviteTimer::J, now, timer_j);
        }
        Ok(())
    }

    /// Feeds a retransmission of the request: absorbed in `Trying`,
    /// answered with the last response in `Proceeding` and `Completed`.
    pub fn on_request(&mut self) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            if let Some(response) = &self.last_response {
                self.out.transmit(response);
            }
        }
    }

    /// Reports that the transport failed to send a response: the core
    /// learns it through [`ServerNonInviteEvent::TransportError`] and the
    /// transaction ends. Ignored once terminated.
    pub fn on_transport_error(&mut self) {
        if !self.is_terminated() {
            self.out.event(ServerNonInviteEvent::TransportError);
            self.terminate();
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((ServerNonInviteTimer::J, _)) = self.timers.pop_expired(now) {
            if self.state == ServerNonInviteState::Completed {
                self.terminate();
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next;
    /// `None` when no timer is armed (before the final response, and
    /// always once terminated).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next response to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.poll_transmit()
    }

    /// The next event for the proxy core.
    pub fn poll_event(&mut self) -> Option<ServerNonInviteEvent> {
        self.out.poll_event()
    }

    fn terminate(&mut self) {
        self.state = ServerNonInviteState::Terminated;
        self.timers.clear();
        self.last_response = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{drain, ms, origin};

    const TRYING: &[u8] = b"SIP/2.0 100 Trying\r\n\r\n";
    const RINGING: &[u8] = b"SIP/2.0 180 Ringing\r\n\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\n\r\n";
    const BUSY: &[u8] = b"SIP/2.0 486 Busy Here\r\n\r\n";

    fn b(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    fn run_invite(tx: &mut ServerInvite, t0: Instant, until: Instant) -> Vec<(Duration, usize)> {
        let mut log = Vec::new();
        while let Some(deadline) = tx.next_deadline().filter(|d| *d <= until) {
            tx.handle_timeout(deadline);
            log.push((deadline - t0, drain(|| tx.poll_transmit()).len()));
        }
        log
    }

    fn rejected(t0: Instant, transport: Transport) -> ServerInvite {
        let mut tx = ServerInvite::new(TimerConfig::default(), transport);
        tx.send_response(t0, 486, b(BUSY)).unwrap();
        assert_eq!(tx.state(), ServerInviteState::Completed);
        assert_eq!(drain(|| tx.poll_transmit()), vec![BUSY]);
        tx
    }

    #[test]
    fn invite_retransmissions_repeat_the_last_response_in_proceeding() {
        let t0 = origin();
        let mut tx = ServerInvite::new(TimerConfig::default(), Transport::Unreliable);
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
        assert_eq!(tx.next_deadline(), None);
        // Nothing sent yet: a retransmission is absorbed.
        tx.on_request();
        assert_eq!(tx.poll_transmit(), None);

        tx.send_response(t0, 100, b(TRYING)).unwrap();
        assert_eq!(drain(|| tx.poll_transmit()), vec![TRYING]);
        tx.on_request();
        assert_eq!(drain(|| tx.poll_transmit()), vec![TRYING]);

        tx.send_response(t0 + ms(600), 180, b(RINGING)).unwrap();
        assert_eq!(drain(|| tx.poll_transmit()), vec![RINGING]);
        tx.on_request();
        assert_eq!(drain(|| tx.poll_transmit()), vec![RINGING]);
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn timer_g_doubles_up_to_t2_until_timer_h_gives_its_event() {
        let t0 = origin();
        let mut tx = rejected(t0, Transport::Unreliable);
        let log = run_invite(&mut tx, t0, t0 + ms(60_000));
        let mut expected: Vec<(Duration, usize)> =
            vec![(ms(500), 1), (ms(1_500), 1), (ms(3_500), 1), (ms(7_500), 1)];
        let mut at = 7_500;
        while at + 4_000 < 32_000 {
            at += 4_000;
            expected.push((ms(at), 1));
        }
        expected.push((ms(32_000), 0));
        assert_eq!(log, expected);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![ServerInviteEvent::AckTimeout]
        );
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn timer_g_resends_the_final_response_bytes() {
        let t0 = origin();
        let mut tx = rejected(t0, Transport::Unreliable);
        tx.handle_timeout(t0 + ms(500));
        assert_eq!(drain(|| tx.poll_transmit()), vec![BUSY]);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(1_500)));
    }

    #[test]
    fn reliable_completed_has_no_timer_g_only_h() {
        let t0 = origin();
        let mut tx = rejected(t0, Transport::Reliable);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(32_000)));
        let log = run_invite(&mut tx, t0, t0 + ms(60_000));
        assert_eq!(log, vec![(ms(32_000), 0)]);
        assert_eq!(tx.poll_event(), Some(ServerInviteEvent::AckTimeout));
        assert!(tx.is_terminated());
    }

    #[test]
    fn completed_repeats_the_final_response_for_retransmitted_invites() {
        let t0 = origin();
        let mut tx = ServerInvite::new(TimerConfig::default(), Transport::Unreliable);
        tx.send_response(t0, 100, b(TRYING)).unwrap();
        tx.send_response(t0, 486, b(BUSY)).unwrap();
        assert_eq!(drain(|| tx.poll_transmit()), vec![TRYING, BUSY]);
        tx.on_request();
        assert_eq!(drain(|| tx.poll_transmit()), vec![BUSY]);
        assert_eq!(
            tx.send_response(t0, 180, b(RINGING)),
            Err(TransactionError::InvalidState {
                action: "send this response",
                state: "Completed"
            })
        );
        assert!(tx.send_response(t0, 200, b(OK)).is_err());
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn ack_confirms_and_timer_i_terminates() {
        let t0 = origin();
        let mut tx = rejected(t0, Transport::Unreliable);
        tx.handle_timeout(t0 + ms(500));
        drain(|| tx.poll_transmit());
        tx.on_ack(t0 + ms(1_000));
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        // G and H are gone; only Timer I (T4) remains.
        assert_eq!(tx.next_deadline(), Some(t0 + ms(6_000)));
        // Retransmitted ACKs and INVITEs are absorbed.
        tx.on_ack(t0 + ms(1_500));
        tx.on_request();
        tx.handle_timeout(t0 + ms(5_999));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), None);
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        tx.handle_timeout(t0 + ms(6_000));
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn timer_i_is_zero_on_reliable_transport() {
        let t0 = origin();
        let mut tx = rejected(t0, Transport::Reliable);
        tx.on_ack(t0 + ms(50));
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn accepted_absorbs_invites_sends_2xx_and_timer_l_ends_it() {
        let t0 = origin();
        let mut tx = ServerInvite::new(TimerConfig::default(), Transport::Unreliable);
        tx.send_response(t0, 100, b(TRYING)).unwrap();
        tx.send_response(t0 + ms(1_000), 200, b(OK)).unwrap();
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        assert_eq!(drain(|| tx.poll_transmit()), vec![TRYING, OK]);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(33_000)));

        // A retransmitted INVITE is absorbed: the transaction does not
        // repeat the 2xx by itself.
        tx.on_request();
        assert_eq!(tx.poll_transmit(), None);
        // 2xx retransmissions from the core go out.
        tx.send_response(t0 + ms(1_500), 200, b(OK)).unwrap();
        assert_eq!(drain(|| tx.poll_transmit()), vec![OK]);
        // Non-2xx responses are refused.
        assert!(tx.send_response(t0, 486, b(BUSY)).is_err());
        assert!(tx.send_response(t0, 180, b(RINGING)).is_err());
        // The ACK for the 2xx is passed up.
        tx.on_ack(t0 + ms(2_000));
        assert_eq!(tx.poll_event(), Some(ServerInviteEvent::Ack));
        assert_eq!(tx.state(), ServerInviteState::Accepted);

        tx.handle_timeout(t0 + ms(32_999));
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        tx.handle_timeout(t0 + ms(33_000));
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        assert!(tx.send_response(t0 + ms(34_000), 200, b(OK)).is_err());
    }

    #[test]
    fn invite_transport_errors() {
        let t0 = origin();
        let mut tx = rejected(t0, Transport::Unreliable);
        tx.on_transport_error();
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(ServerInviteEvent::TransportError));
        assert_eq!(tx.next_deadline(), None);

        let mut tx = ServerInvite::new(TimerConfig::default(), Transport::Unreliable);
        tx.send_response(t0, 200, b(OK)).unwrap();
        tx.on_transport_error();
        assert_eq!(tx.poll_event(), Some(ServerInviteEvent::TransportError));
        assert_eq!(tx.state(), ServerInviteState::Accepted);
    }

    #[test]
    fn invite_rejects_bad_status() {
        let t0 = origin();
        let mut tx = ServerInvite::new(TimerConfig::default(), Transport::Unreliable);
        assert_eq!(
            tx.send_response(t0, 42, b(OK)),
            Err(TransactionError::InvalidStatus(42))
        );
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn non_invite_absorbs_then_repeats_the_last_response_until_timer_j() {
        let t0 = origin();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), Transport::Unreliable);
        assert_eq!(tx.state(), ServerNonInviteState::Trying);
        tx.on_request();
        assert_eq!(tx.poll_transmit(), None);

        tx.send_response(t0 + ms(600), 100, b(TRYING)).unwrap();
        assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
        assert_eq!(drain(|| tx.poll_transmit()), vec![TRYING]);
        tx.on_request();
        assert_eq!(drain(|| tx.poll_transmit()), vec![TRYING]);

        tx.send_response(t0 + ms(2_000), 200, b(OK)).unwrap();
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        assert_eq!(drain(|| tx.poll_transmit()), vec![OK]);
        for _ in 0..3 {
            tx.on_request();
            assert_eq!(drain(|| tx.poll_transmit()), vec![OK]);
        }
        assert!(tx.send_response(t0, 200, b(OK)).is_err());

        // Timer J: 64·T1 after the final response.
        assert_eq!(tx.next_deadline(), Some(t0 + ms(34_000)));
        tx.handle_timeout(t0 + ms(33_999));
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        tx.handle_timeout(t0 + ms(34_000));
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        tx.on_request();
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn timer_j_is_zero_on_reliable_transport() {
        let t0 = origin();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), Transport::Reliable);
        tx.send_response(t0, 404, b(BUSY)).unwrap();
        assert!(tx.is_terminated());
        assert_eq!(tx.next_deadline(), None);
        // The final response still goes out.
        assert_eq!(drain(|| tx.poll_transmit()), vec![BUSY]);
    }

    #[test]
    fn non_invite_transport_error_and_bad_status() {
        let t0 = origin();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), Transport::Unreliable);
        assert_eq!(
            tx.send_response(t0, 0, b(OK)),
            Err(TransactionError::InvalidStatus(0))
        );
        assert_eq!(tx.state(), ServerNonInviteState::Trying);
        tx.send_response(t0, 100, b(TRYING)).unwrap();
        tx.on_transport_error();
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(ServerNonInviteEvent::TransportError));
        tx.on_transport_error();
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn undrained_retransmissions_do_not_pile_up() {
        let t0 = origin();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), Transport::Unreliable);
        tx.send_response(t0, 200, b(OK)).unwrap();
        for _ in 0..10_000 {
            tx.on_request();
        }
        assert_eq!(drain(|| tx.poll_transmit()), vec![OK]);
    }
}
