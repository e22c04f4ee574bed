//! The I/O edge: UDP and TCP sockets, framing, and the task that drives the
//! proxy core. Everything here is thin: bytes in, parse, hand to the core;
//! bytes out to the socket the core names.

pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics as m;
use crate::proxy::{ConnId, Proto, Source};
use crate::sip::{self, build, Limits, Message, ParseError};

/// What the I/O tasks hand to the core's task.
#[derive(Debug)]
pub enum Inbound {
    Message(Box<Message>, Source),
    /// An INVITE whose location reference was dereferenced (or tried):
    /// the document, if one came back in time.
    Dereferenced(Box<Message>, Source, Option<bytes::Bytes>),
    /// A message could not be sent; the token names the transaction.
    SendFailed {
        token: u64,
    },
    /// A TCP connection opened or closed (for the gauge).
    ConnOpened(ConnId),
    ConnClosed(ConnId),
}

pub type InboundTx = mpsc::Sender<Inbound>;

/// Parses one message and sends it to the core. A request that does not
/// parse is answered here (400, 505 or 513 with the reason naming the
/// fault); a response that does not parse is dropped. Both are counted.
/// Returns the error response to send, if any.
/// What to do with bytes received: hand a message to the core, or send an
/// error response back, or nothing.
pub enum Accepted {
    Core(Inbound),
    Reply(Bytes),
    Nothing,
}

pub fn accept(data: Bytes, source: Source, stream: bool, limits: &Limits) -> Accepted {
    let proto = source.proto.lower();
    let parsed = if stream {
        sip::parse_framed_stream(data.clone(), limits)
    } else {
        sip::parse_datagram(data.clone(), limits)
    };
    match parsed {
        Ok(msg) => {
            let kind = if msg.is_request() {
                msg.method().as_str()
            } else {
                match msg.status().unwrap_or(0) / 100 {
                    1 => "1xx",
                    2 => "2xx",
                    3 => "3xx",
                    4 => "4xx",
                    5 => "5xx",
                    _ => "6xx",
                }
            };
            let kind = if kind.is_empty() { "other" } else { kind };
            metrics::counter!(m::SIP_RECEIVED, "transport" => proto, "kind" => kind).increment(1);
            metrics::counter!(m::PARSE_PATH, "path" => msg.parse_path().as_str()).increment(1);
            Accepted::Core(Inbound::Message(Box::new(msg), source))
        }
        Err(e) => {
            metrics::counter!(m::PARSE_ERRORS, "transport" => proto, "kind" => e.kind())
                .increment(1);
            error_response(&data, &e, &source, limits).map_or(Accepted::Nothing, Accepted::Reply)
        }
    }
}

/// The answer to a request that failed to parse, when it looks like a
/// request and has enough headers to answer.
fn error_response(data: &Bytes, e: &ParseError, source: &Source, limits: &Limits) -> Option<Bytes> {
    let lenient = sip::parse_lenient(data.clone(), limits)?;
    if !lenient.is_request() || lenient.method() == sip::Method::Ack {
        tracing::debug!(peer = %source.peer, error = %e, "unparsable response dropped");
        return None;
    }
    lenient.top_via()?;
    tracing::info!(peer = %source.peer, error = %e, "request refused: does not parse");
    Some(build::response(
        &lenient,
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
