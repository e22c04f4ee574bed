//! The transaction table: the four RFC 3261 machines the core holds, how
//! each is opened, pumped (its transmits queued, its events handled, its
//! deadline armed) and removed once it ends; and the [`Response`] from the
//! next hop that a pump hands to the handlers of those events.

use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;
use tracing::debug;

use super::{Core, Dest, Id, Proto, Source, TimerRef, Transmit};
use crate::sip::edit::Editor;
use crate::sip::{text, HeaderName, Message, Method};
use crate::transaction::{
    ClientInvite, ClientInviteEvent, ClientNonInvite, ClientNonInviteEvent, RequestKeyParts,
    ServerInvite, ServerInviteEvent, ServerNonInvite, ServerNonInviteEvent, TransactionKey,
    Transport,
};

/// A response from the next hop, while the events its client transaction
/// gives back are handled: what they relay upstream.
#[derive(Clone, Copy)]
pub(super) struct Response<'a> {
    pub(super) msg: &'a Message,
    /// It lacks the Vias below the router's: not relayed as it is.
    unrelayable: bool,
}

impl<'a> Response<'a> {
    pub(super) fn new(msg: &'a Message, unrelayable: bool) -> Response<'a> {
        Response { msg, unrelayable }
    }

    /// The response, with our Via removed, for upstream.
    pub(super) fn upstream_bytes(self) -> Option<(u16, Bytes)> {
        if self.unrelayable {
            return None;
        }
        let r = self.msg;
        let mut e = Editor::new(r);
        e.remove_top_via();
        Some((r.status()?, e.build()))
    }
}

#[allow(clippy::enum_variant_names)] // named after the RFC 3261 machines
pub(super) enum Txn {
    ServerInvite {
        key: TransactionKey,
        /// The earliest instant the timer heap holds for it.
        armed: Option<Instant>,
        m: ServerInvite,
        source: Source,
        call: Option<Id>,
        to_tag: u64,
    },
    ServerNonInvite {
        key: TransactionKey,
        /// The earliest instant the timer heap holds for it.
        armed: Option<Instant>,
        m: ServerNonInvite,
        source: Source,
        to_tag: u64,
        /// The request, to answer it when the next hop does not (boxed:
        /// the other kinds of transaction are much smaller); freed once a
        /// final response has gone upstream (the transaction itself lives
        /// on for 64*T1 over UDP, to absorb retransmissions).
        request: Option<Box<Message>>,
    },
    ClientInvite {
        key: TransactionKey,
        /// The earliest instant the timer heap holds for it.
        armed: Option<Instant>,
        m: ClientInvite,
        dest: Dest,
        call: Id,
        /// The request as sent, parsed again only for an ACK or a CANCEL;
        /// freed once a final response has come (the transaction itself
        /// lives on for 64*T1 after a 2xx).
        request: Bytes,
        trunk: String,
        /// What the target stands for (a PSAP id, a queue).
        label: String,
        provisional: bool,
        abandoned: bool,
        cancel_sent: bool,
        /// The trunk's index when the request went over TCP only for its
        /// size: a refused connection sends it over UDP instead.
        size_switch: Option<usize>,
    },
    ClientNonInvite {
        key: TransactionKey,
        /// The earliest instant the timer heap holds for it.
        armed: Option<Instant>,
        m: ClientNonInvite,
        dest: Dest,
        /// The server transaction its responses are relayed to (none for
        /// CANCELs the router sends on its own).
        server: Option<Id>,
        /// As for [`Txn::ClientInvite`].
        size_switch: Option<usize>,
    },
}

impl Txn {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        match self {
            Txn::ServerInvite { m, .. } => m.next_deadline(),
            Txn::ServerNonInvite { m, .. } => m.next_deadline(),
            Txn::ClientInvite { m, .. } => m.next_deadline(),
            Txn::ClientNonInvite { m, .. } => m.next_deadline(),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Txn::ServerInvite { m, .. } => m.handle_timeout(now),
            Txn::ServerNonInvite { m, .. } => m.handle_timeout(now),
            Txn::ClientInvite { m, .. } => m.handle_timeout(now),
            Txn::ClientNonInvite { m, .. } => m.handle_timeout(now),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Txn::ServerInvite { m, .. } => m.is_terminated(),
            Txn::ServerNonInvite { m, .. } => m.is_terminated(),
            Txn::ClientInvite { m, .. } => m.is_terminated(),
            Txn::ClientNonInvite { m, .. } => m.is_terminated(),
        }
    }

    pub(super) fn on_transport_error(&mut self) {
        match self {
            Txn::ServerInvite { m, .. } => m.on_transport_error(),
            Txn::ServerNonInvite { m, .. } => m.on_transport_error(),
            Txn::ClientInvite { m, .. } => m.on_transport_error(),
            Txn::ClientNonInvite { m, .. } => m.on_transport_error(),
        }
    }

    pub(super) fn armed(&mut self) -> &mut Option<Instant> {
        match self {
            Txn::ServerInvite { armed, .. }
            | Txn::ServerNonInvite { armed, .. }
            | Txn::ClientInvite { armed, .. }
            | Txn::ClientNonInvite { armed, .. } => armed,
        }
    }

    fn key(&self) -> &TransactionKey {
        match self {
            Txn::ServerInvite { key, .. }
            | Txn::ServerNonInvite { key, .. }
            | Txn::ClientInvite { key, .. }
            | Txn::ClientNonInvite { key, .. } => key,
        }
    }

    /// Where a server transaction's request came from.
    fn source(&self) -> Option<&Source> {
        match self {
            Txn::ServerInvite { source, .. } | Txn::ServerNonInvite { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[allow(clippy::enum_variant_names)]
enum Event {
    ClientInvite(ClientInviteEvent),
    ClientNonInvite(ClientNonInviteEvent),
    ServerInvite(ServerInviteEvent),
    ServerNonInvite(ServerNonInviteEvent),
}

impl Core {
    pub(super) fn new_server(
        &mut self,
        _now: Instant,
        key: TransactionKey,
        msg: &Message,
        source: Source,
        loop_hash: u64,
    ) -> Id {
        let id = self.id();
        let to_tag = loop_hash ^ self.cfg.seed;
        let transport = transport_of(source.proto);
        let txn = if msg.method() == Method::Invite {
            Txn::ServerInvite {
                key: key.clone(),
                armed: None,
                m: ServerInvite::new(self.cfg.timers, transport),
                source,
                call: None,
                to_tag,
            }
        } else {
            Txn::ServerNonInvite {
                key: key.clone(),
                armed: None,
                m: ServerNonInvite::new(self.cfg.timers, transport),
                source,
                to_tag,
                request: Some(Box::new(msg.clone())),
            }
        };
        self.server_index.insert(key, id);
        self.txns.insert(id, txn);
        self.sources.opened(source.peer.ip());
        id
    }

    /// A client INVITE transaction for one target of a call.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_client_invite(
        &mut self,
        now: Instant,
        call: Id,
        dest: Dest,
        bytes: Bytes,
        branch: &[u8],
        trunk: String,
        label: String,
    ) -> Id {
        let key = TransactionKey::client(branch, b"INVITE");
        let machine = ClientInvite::new(
            now,
            self.cfg.timers,
            transport_of(dest.proto),
            bytes.clone(),
        );
        let id = self.id();
        self.client_index.insert(key.clone(), id);
        self.txns.insert(
            id,
            Txn::ClientInvite {
                key,
                armed: None,
                m: machine,
                dest,
                call,
                request: bytes,
                trunk,
                label,
                provisional: false,
                abandoned: false,
                cancel_sent: false,
                size_switch: None,
            },
        );
        id
    }

    pub(super) fn new_client_non_invite(
        &mut self,
        now: Instant,
        server: Option<Id>,
        dest: Dest,
        bytes: Bytes,
        method: &[u8],
        branch: &[u8],
    ) -> Id {
        let key = TransactionKey::client(branch, method);
        let machine = ClientNonInvite::new(now, self.cfg.timers, transport_of(dest.proto), bytes);
        let id = self.id();
        self.client_index.insert(key.clone(), id);
        self.txns.insert(
            id,
            Txn::ClientNonInvite {
                key,
                armed: None,
                m: machine,
                dest,
                server,
                size_switch: None,
            },
        );
        self.pump(now, id);
        id
    }

    pub(super) fn pump(&mut self, now: Instant, id: Id) {
        self.pump_with(now, id, None);
    }

    /// Pumps the machine `id`; `response`: the response from the next hop
    /// it was just given, for the handlers of the events it gives back.
    pub(super) fn pump_with(&mut self, now: Instant, id: Id, response: Option<Response<'_>>) {
        let mut events: SmallVec<[Event; 2]> = SmallVec::new();
        let Some(t) = self.txns.get_mut(&id) else {
            return;
        };
        let dest = match t {
            Txn::ServerInvite { source, .. } | Txn::ServerNonInvite { source, .. } => {
                Dest::reply_to(source)
            }
            Txn::ClientInvite { dest, .. } | Txn::ClientNonInvite { dest, .. } => dest.clone(),
        };
        loop {
            let bytes = match t {
                Txn::ServerInvite { m, .. } => m.poll_transmit(),
                Txn::ServerNonInvite { m, .. } => m.poll_transmit(),
                Txn::ClientInvite { m, .. } => m.poll_transmit(),
                Txn::ClientNonInvite { m, .. } => m.poll_transmit(),
            };
            let Some(bytes) = bytes else { break };
            self.out.push_back(Transmit {
                dest: dest.clone(),
                bytes,
                token: Some(id),
            });
        }
        loop {
            let ev = match t {
                Txn::ServerInvite { m, .. } => m.poll_event().map(Event::ServerInvite),
                Txn::ServerNonInvite { m, .. } => m.poll_event().map(Event::ServerNonInvite),
                Txn::ClientInvite { m, .. } => m.poll_event().map(Event::ClientInvite),
                Txn::ClientNonInvite { m, .. } => m.poll_event().map(Event::ClientNonInvite),
            };
            let Some(ev) = ev else { break };
            events.push(ev);
        }
        let deadline = t.next_deadline();
        let terminated = t.is_terminated();
        for ev in events {
            match ev {
                Event::ClientInvite(e) => self.on_client_invite_event(now, id, e, response),
                Event::ClientNonInvite(e) => self.on_client_non_invite_event(now, id, e, response),
                Event::ServerInvite(ServerInviteEvent::AckTimeout) => {
                    debug!(id, "no ACK for a final response (Timer H)");
                }
                Event::ServerInvite(_) | Event::ServerNonInvite(_) => {}
            }
        }
        // Events may have changed the machine (an ACK sent, say).
        let (deadline, terminated) = match self.txns.get(&id) {
            Some(t) => (t.next_deadline(), t.is_terminated()),
            None => (deadline, terminated),
        };
        if terminated {
            self.remove_txn(id);
        } else if let Some(d) = deadline {
            self.arm(id, d);
        }
        // Flush anything queued by event handlers on this machine.
        if let Some(t) = self.txns.get_mut(&id) {
            let more = match t {
                Txn::ClientInvite { m, .. } => m.poll_transmit(),
                Txn::ClientNonInvite { m, .. } => m.poll_transmit(),
                Txn::ServerInvite { m, .. } => m.poll_transmit(),
                Txn::ServerNonInvite { m, .. } => m.poll_transmit(),
            };
            if let Some(bytes) = more {
                self.out.push_back(Transmit {
                    dest,
                    bytes,
                    token: Some(id),
                });
                self.pump_with(now, id, response);
            }
        }
    }

    /// Makes sure the timer heap holds an entry for the transaction no
    /// later than `deadline`: one entry per transaction, not one per event.
    pub(super) fn arm(&mut self, id: Id, deadline: Instant) {
        let Some(t) = self.txns.get_mut(&id) else {
            return;
        };
        let armed = t.armed();
        if armed.is_none_or(|a| deadline < a) {
            *armed = Some(deadline);
            self.timers.push(deadline, TimerRef::Txn(id));
        }
    }

    /// Frees the request a client INVITE transaction kept for its ACK or
    /// CANCEL, once a final response makes both needless.
    pub(super) fn release_request(&mut self, id: Id) {
        if let Some(Txn::ClientInvite { request, .. }) = self.txns.get_mut(&id) {
            *request = Bytes::new();
        }
    }

    fn remove_txn(&mut self, id: Id) {
        let Some(t) = self.txns.remove(&id) else {
            return;
        };
        if let Some(source) = t.source() {
            self.sources.closed(source.peer.ip());
            self.server_index.remove(t.key());
            if let Txn::ServerInvite {
                call: Some(call), ..
            } = t
            {
                if let Some(c) = self.calls.remove(&call) {
                    if let Some(n) = self.live_calls.get_mut(&c.call_id) {
                        *n -= 1;
                        if *n == 0 {
                            self.live_calls.remove(&c.call_id);
                        }
                    }
                }
            }
        } else {
            self.client_index.remove(t.key());
        }
    }
}

pub(super) fn server_key(msg: &Message, method: Option<&[u8]>) -> TransactionKey {
    let via = msg.top_via();
    let (host, port) = via.map(|v| v.sent_by()).unwrap_or((b"", None));
    let mut sent_by: SmallVec<[u8; 64]> = SmallVec::from_slice(host);
    if let Some(p) = port {
        sent_by.push(b':');
        sent_by.extend_from_slice(text::write_decimal(p.into(), &mut [0; 20]));
    }
    let parts = RequestKeyParts {
        method: method.unwrap_or(msg.method_bytes()),
        branch: via.and_then(|v| v.branch()),
        sent_by: &sent_by,
        request_uri: msg.request_uri_bytes(),
        to_tag: msg.to().and_then(|t| t.tag()),
        from_tag: msg.from().and_then(|f| f.tag()),
        call_id: msg.call_id().unwrap_or_default(),
        cseq: msg.cseq().map_or(0, |c| c.seq),
        top_via: msg.list(HeaderName::Via).next().unwrap_or_default(),
    };
    TransactionKey::server(&parts)
}

fn transport_of(p: Proto) -> Transport {
    if p.is_reliable() {
        Transport::Reliable
    } else {
        Transport::Unreliable
    }
}

/// An INVITE the router sent, parsed back to build its ACK or CANCEL.
pub(super) fn parse_sent(bytes: &Bytes) -> Option<Message> {
    let unlimited = crate::sip::Limits {
        max_message: usize::MAX,
        ..Default::default()
    };
    crate::sip::parse_datagram(bytes.clone(), &unlimited).ok()
}
