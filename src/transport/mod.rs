//! The I/O edge: UDP and TCP sockets, framing, and the task that drives the
//! proxy core. Everything here is thin: bytes in, parse, hand to the core;
//! bytes out to the socket the core names.

pub mod names;
pub mod rfc3263;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics as m;
use crate::sip::{self, build, Limits, Message, ParseError};
use crate::wire::{ConnId, Proto, Source};

/// What the I/O tasks hand to the core's task.
#[derive(Debug)]
pub enum Inbound {
    Message(Box<Message>, Source),
    /// A location fetch the core asked for is over: the document, if one
    /// came back in time.
    Fetched {
        id: u64,
        document: Option<Bytes>,
    },
    /// A LoST query the core asked for gave no answer, for this reason.
    LostFailed {
        id: u64,
        why: crate::proxy::LostFailure,
    },
    /// A message could not be sent; the token names the transaction.
    SendFailed {
        token: u64,
    },
    /// A lookup of a next hop's host name came back (`None`: it failed or
    /// timed out).
    Resolved {
        host: String,
        port: u16,
        found: Option<rfc3263::Found>,
    },
    /// The transport a trunk host's NAPTR (or SRV) records choose came
    /// back (`None`: they say nothing, or the lookup failed).
    NaptrTransport {
        host: String,
        proto: Option<crate::wire::Proto>,
    },
    /// A TCP connection opened or closed (for the gauge).
    ConnOpened(ConnId),
    ConnClosed(ConnId),
    /// The client certificate of a TLS connection names an inbound trunk;
    /// sent before any message of the connection.
    Identified {
        conn: ConnId,
        trunk: Arc<str>,
    },
}

pub type InboundTx = mpsc::Sender<Inbound>;

/// What to do with bytes received: hand a message to the core, or send an
/// error response back, or nothing.
pub enum Accepted {
    Core(Inbound),
    Reply(Bytes),
    Nothing,
}

/// Parses one message for the core. A request that does not parse is
/// answered here (400, 505 or 513 with the reason naming the fault): `Err`
/// carries the error response to send, if any; a response that does not
/// parse is dropped. Both are counted.
///
/// An INVITE whose only faults are in headers the proxy passes on (see
/// [`sip::receive`]) reaches the core with the fault attached: the core
/// routes it if it is an emergency call and answers 400 otherwise.
pub fn parse_received(
    data: Bytes,
    source: &Source,
    stream: bool,
    limits: &Limits,
    counters: &mut m::MessageCounters,
) -> Result<Message, Option<Bytes>> {
    let proto = source.proto;
    let checked = sip::receive(data.clone(), stream, limits);
    if let Some(e) = checked.as_ref().ok().and_then(Message::fault) {
        metrics::counter!(m::PARSE_ERRORS, "transport" => proto.lower(), "kind" => e.kind())
            .increment(1);
    }
    match checked {
        Ok(msg) => {
            counters.received(proto, &msg);
            Ok(msg)
        }
        Err(e) => {
            metrics::counter!(m::PARSE_ERRORS, "transport" => proto.lower(), "kind" => e.kind())
                .increment(1);
            Err(error_response(&data, &e, source))
        }
    }
}

/// [`parse_received`] for the I/O tasks, whose messages reach the core
/// through the channel.
pub fn accept(
    data: Bytes,
    source: Source,
    stream: bool,
    limits: &Limits,
    counters: &mut m::MessageCounters,
) -> Accepted {
    match parse_received(data, &source, stream, limits, counters) {
        Ok(msg) => Accepted::Core(Inbound::Message(Box::new(msg), source)),
        Err(Some(reply)) => Accepted::Reply(reply),
        Err(None) => Accepted::Nothing,
    }
}

/// The answer to a request that failed to parse, when it looks like a
/// request and has enough headers to answer.
fn error_response(data: &Bytes, e: &ParseError, source: &Source) -> Option<Bytes> {
    let lenient = sip::parse_lenient(data.clone())?;
    if !lenient.is_request() || lenient.method() == sip::Method::Ack {
        tracing::debug!(peer = %source.peer, error = %e, "unparsable response dropped");
        return None;
    }
    lenient.top_via()?;
    static TELL: std::sync::LazyLock<crate::logbuf::SharedThrottle> =
        std::sync::LazyLock::new(Default::default);
    if let Some(refused) = TELL.hit() {
        tracing::info!(refused, peer = %source.peer, error = %e, "request refused: does not parse (count since the last such line; the latest named)");
    } else {
        tracing::debug!(peer = %source.peer, error = %e, "request refused: does not parse");
    }
    Some(build::response(
        &lenient,
        Some(source.peer),
        e.status(),
        &e.reason(),
        Some("sos-bad"),
        &[],
        None,
    ))
}

/// The local address a socket is bound to, for sources.
pub fn local_source(
    proto: Proto,
    peer: SocketAddr,
    local: SocketAddr,
    conn: Option<ConnId>,
) -> Source {
    Source {
        proto,
        peer,
        local,
        conn,
    }
}

/// Shared handles the driver uses to send.
#[derive(Clone)]
pub struct Senders {
    pub udp: Arc<Vec<udp::UdpEndpoint>>,
    pub tcp: tcp::TcpPool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request past the header limits is answered, not dropped: the
    /// answer is built from a reading of the header block that ignores them.
    #[test]
    fn a_request_past_the_header_limits_is_answered() {
        let source = Source {
            proto: Proto::Udp,
            peer: "127.0.0.1:5061".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            conn: None,
        };
        let many: String = (0..300).map(|i| format!("X-H{i}: {i}\r\n")).collect();
        let long = format!("X-Long: {}\r\n", "a".repeat(20_000));
        for extra in [many, long] {
            let text = format!(
                "INVITE sip:911@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKlim;rport\r\n{extra}From: <sip:a@b>;tag=1\r\nTo: <sip:911@b>\r\nCall-ID: lim\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            let mut counters = m::MessageCounters::default();
            let reply = match parse_received(
                Bytes::from(text),
                &source,
                false,
                &Limits::default(),
                &mut counters,
            ) {
                Err(Some(reply)) => String::from_utf8_lossy(&reply).into_owned(),
                other => panic!("{:?}", other.map(|_| ())),
            };
            assert!(reply.starts_with("SIP/2.0 "), "{reply}");
            let code: u16 = reply[8..11].parse().unwrap();
            assert!((400..600).contains(&code), "{reply}");
            assert!(reply.contains("Call-ID: lim\r\n"));
            assert!(reply.contains(";received=127.0.0.1;rport=5061"), "{reply}");
        }
    }
}
