//! Where messages come from and go to, as plain values: the core names
//! addresses and connections, the transport layer owns the sockets.
//!
//! Below the proxy core, the transport layer and the metrics, which all
//! speak of them; `proxy` re-exports them.

use core::net::SocketAddr;

use bytes::Bytes;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
    /// TCP with TLS (RFC 3261 section 26.2, RFC 5630).
    Tls,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
        }
    }

    pub fn lower(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
        }
    }

    pub fn is_reliable(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Tls)
    }
}

/// A TCP or TLS connection, named by the transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub proto: Proto,
    pub peer: SocketAddr,
    /// The listener or socket address it arrived on.
    pub local: SocketAddr,
    /// The connection, for TCP and TLS.
    pub conn: Option<ConnId>,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    /// A host name the transport layer resolves. Port 0: none was given,
    /// and RFC 3263 applies (NAPTR and SRV records name the targets and
    /// their ports).
    Host(String, u16),
    /// The same name's `n`th target (from 0) in the order its lookup gave
    /// them: the next SRV target once the ones before it have failed.
    HostAlt(String, u16, usize),
}

impl Target {
    /// The host name, for a target given by name.
    pub fn host(&self) -> Option<&str> {
        match self {
            Target::Addr(_) => None,
            Target::Host(h, _) | Target::HostAlt(h, _, _) => Some(h),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    pub proto: Proto,
    pub target: Target,
    /// Send on this connection when it is still open (responses over TCP).
    pub conn: Option<ConnId>,
}

impl Dest {
    pub fn reply_to(source: &Source) -> Dest {
        Dest {
            proto: source.proto,
            target: Target::Addr(source.peer),
            conn: source.conn,
        }
    }
}

/// Bytes to send. `token` comes back in a send failure report, so the core
/// can fail the transaction over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Dest,
    pub bytes: Bytes,
    pub token: Option<u64>,
}
