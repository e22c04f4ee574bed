//! The SIP sockets: every listener of `sip.listen`, bound before anything
//! else starts.

use std::net::SocketAddr;

use anyhow::Context;

use crate::config::{Config, TransportName};
use crate::transport::{tcp, udp};

/// The sockets a running router bound (ports are real even when the config
/// said 0).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// Binds every listener. A TCP listener on port 0 takes the port its UDP
/// twin got, so that one port serves both, as SIP expects.
pub async fn bind(
    config: &Config,
) -> anyhow::Result<(Vec<udp::UdpEndpoint>, Vec<tokio::net::TcpListener>, Bound)> {
    let mut udps = Vec::new();
    let mut tcps = Vec::new();
    let mut bound = Bound::default();
    let listeners = config.listeners()?;
    for l in listeners
        .iter()
        .filter(|l| l.transport == TransportName::Udp)
    {
        let ep = udp::bind(l.addr, config.sip.socket_buffer)
            .with_context(|| format!("binding udp {}", l.addr))?;
        bound.udp.push(ep.local);
        udps.push(ep);
    }
    for l in listeners
        .iter()
        .filter(|l| l.transport == TransportName::Tcp)
    {
        let mut addr = l.addr;
        if addr.port() == 0 {
            if let Some(twin) = bound.udp.iter().find(|u| u.ip() == addr.ip()) {
                addr.set_port(twin.port());
            }
        }
        let listener = match tcp::bind(addr) {
            Ok(t) => t,
            Err(_) if l.addr.port() == 0 => tcp::bind(l.addr)?,
            Err(e) => return Err(e).with_context(|| format!("binding tcp {addr}")),
        };
        bound.tcp.push(listener.local_addr()?);
        tcps.push(listener);
    }
    Ok((udps, tcps, bound))
}
