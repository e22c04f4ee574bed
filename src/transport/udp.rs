//! UDP: one socket per listener, read and written by the driver itself (no
//! task or channel between the socket and the core).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::parse_received;
use crate::metrics::MessageCounters;
use crate::sip::{Limits, Message};
use crate::wire::{Proto, Source};

#[derive(Clone)]
pub struct UdpEndpoint {
    pub socket: Arc<UdpSocket>,
    pub local: SocketAddr,
}

/// Binds with large buffers. Without address reuse: on UDP it would let a
/// second process bind the same address and port (a second router started
/// by mistake, or two given the same ephemeral port) and take part of the
/// traffic in silence; the second bind must fail instead.
pub fn bind(addr: SocketAddr, buffer: usize) -> io::Result<UdpEndpoint> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // The kernel may cap these; what it grants is enough either way.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let socket = UdpSocket::from_std(socket.into())?;
    let local = socket.local_addr()?;
    Ok(UdpEndpoint {
        socket: Arc::new(socket),
        local,
    })
}

/// The receive buffer for one endpoint: one byte more than the largest
/// message, to tell "too large" apart.
pub fn receive_buffer(limits: &Limits) -> Vec<u8> {
    vec![0u8; limits.max_message + 1]
}

/// Ready when one of the endpoints has a datagram waiting (its index);
/// otherwise registers to be woken when one has.
pub fn poll_any_readable(endpoints: &[UdpEndpoint], cx: &mut Context<'_>) -> Poll<usize> {
    for (i, ep) in endpoints.iter().enumerate() {
        // An error (the socket is gone) reads as ready: the read reports it.
        if ep.socket.poll_recv_ready(cx).is_ready() {
            return Poll::Ready(i);
        }
    }
    Poll::Pending
}

/// What one datagram brought.
#[allow(clippy::large_enum_variant)] // returned once, never stored; a box would cost an allocation per message
pub enum Received {
    Message(Message, Source),
    /// A request that does not parse, and the answer built for it; the core
    /// decides whether it goes (a stranger's comes out of a budget).
    Unparsed(Bytes, Source),
}

/// Takes one datagram without waiting. `Err(WouldBlock)` once the socket is
/// empty; `Ok(None)` for a datagram that needs nothing (a keep-alive, a
/// message that does not parse and gets no answer, a receive error). Each
/// datagram is copied once into a buffer of its own size: the parser
/// borrows from it, and a message kept by a transaction pins only its own
/// bytes.
///
/// When the core falls behind, datagrams wait in the socket's receive
/// buffer; when that is full, the kernel drops them and the sender's
/// retransmission brings them back.
pub fn try_receive(
    ep: &UdpEndpoint,
    buf: &mut [u8],
    limits: &Limits,
    counters: &mut MessageCounters,
) -> io::Result<Option<Received>> {
    let (n, peer) = match ep.socket.try_recv_from(buf) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
        Err(e) => {
            // ICMP errors surface here on some systems; keep going.
            tracing::debug!(error = %e, "udp receive error");
            return Ok(None);
        }
    };
    let data = &buf[..n];
    if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Ok(None); // keep-alive
    }
    let source = Source {
        proto: Proto::Udp,
        peer,
        local: ep.local,
        conn: None,
    };
    match parse_received(
        Bytes::copy_from_slice(data),
        &source,
        false,
        limits,
        counters,
    ) {
        Ok(msg) => Ok(Some(Received::Message(msg, source))),
        Err(Some(resp)) => Ok(Some(Received::Unparsed(resp, source))),
        Err(None) => Ok(None),
    }
}

/// Sends a datagram from the endpoint of the destination's address family.
pub fn send(endpoints: &[UdpEndpoint], dest: SocketAddr, bytes: Bytes) -> io::Result<()> {
    let ep = endpoints
        .iter()
        .find(|e| e.local.is_ipv4() == dest.is_ipv4())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no UDP socket for this address family",
            )
        })?;
    match ep.socket.try_send_to(&bytes, dest) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            let socket = ep.socket.clone();
            tokio::spawn(async move {
                let _ = socket.send_to(&bytes, dest).await;
            });
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second bind of the address a router holds fails, as it must: two
    /// processes on one UDP port would each get part of the calls.
    #[tokio::test]
    async fn a_second_bind_of_the_same_port_fails() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 1 << 16).unwrap();
        let again = bind(first.local, 1 << 16);
        assert!(again.is_err(), "bound twice to {}", first.local);
    }
}
