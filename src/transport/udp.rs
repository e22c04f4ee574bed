//! UDP: one socket per listener, a receive loop per socket, sends straight
//! from the driver.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{accept, Accepted, InboundTx};
use crate::proxy::{Proto, Source};
use crate::sip::Limits;

#[derive(Clone)]
pub struct UdpEndpoint {
    pub socket: Arc<UdpSocket>,
    pub local: SocketAddr,
}

/// Binds with address reuse and large buffers.
pub fn bind(addr: SocketAddr, buffer: usize) -> io::Result<UdpEndpoint> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
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

/// Receives datagrams until the socket fails. Each datagram is copied once
/// into a buffer of its own size: the parser then borrows from it, and a
/// message kept by a transaction pins only its own bytes.
pub async fn recv_loop(ep: UdpEndpoint, tx: InboundTx, limits: Limits) {
    // One byte more than the largest message, to tell "too large" apart.
    let mut buf = vec![0u8; limits.max_message + 1];
    loop {
        let (n, peer) = match ep.socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on some systems; keep going.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let data = &buf[..n];
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue; // keep-alive
        }
        let source = Source {
            proto: Proto::Udp,
            peer,
            local: ep.local,
            conn: None,
        };
        match accept(Bytes::copy_from_slice(data), source, false, &limits) {
            // A full core queue drops the datagram rather than stall the
            // socket: the sender's retransmission brings it back.
            Accepted::Core(inbound) => {
                if tx.try_send(inbound).is_err() {
                    tracing::warn!(%peer, "core queue full; datagram dropped (the sender retransmits)");
                }
            }
            Accepted::Reply(resp) => {
                let _ = ep.socket.try_send_to(&resp, peer);
            }
            Accepted::Nothing => {}
        }
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
