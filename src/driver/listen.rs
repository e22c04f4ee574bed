//! The SIP sockets: every listener of `sip.listen`, bound before anything
//! else starts.

use std::net::SocketAddr;

use anyhow::Context;

use crate::config::{Config, TransportName};
use crate::transport::tls::TlsSetup;
use crate::transport::{tcp, udp};

/// The stream listeners bound, and what TLS needs (read and checked before
/// anything is bound, so that a bad certificate stops the start).
pub struct Streams {
    pub tcp: Vec<tokio::net::TcpListener>,
    pub tls: Vec<tokio::net::TcpListener>,
    pub tls_setup: Option<TlsSetup>,
    /// The first TLS listener's port.
    pub tls_port: Option<u16>,
}

/// The sockets a running router bound (ports are real even when the config
/// said 0).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// Binds every listener. A TCP listener on port 0 takes the port its UDP
/// twin got, so that one port serves both, as SIP expects: the router
/// writes one port into its Via and Record-Route. When another socket
/// holds that port for TCP, every port-0 listener is bound again, on
/// fresh ports, a few times before giving up.
pub async fn bind(config: &Config) -> anyhow::Result<(Vec<udp::UdpEndpoint>, Streams, Bound)> {
    const TRIES: usize = 16;
    let tls_setup = TlsSetup::load(config).map_err(anyhow::Error::msg)?;
    let mut found = None;
    for _ in 1..TRIES {
        if let Some(bound) = bind_once(config, false)? {
            found = Some(bound);
            break;
        }
    }
    let (udps, tcp, mut bound) = match found {
        Some(b) => b,
        None => bind_once(config, true)?.expect("a last try always binds or fails"),
    };
    let mut tls = Vec::new();
    for l in config
        .listeners()?
        .iter()
        .filter(|l| l.transport == TransportName::Tls)
    {
        let listener = tcp::bind(l.addr).with_context(|| format!("binding tls {}", l.addr))?;
        bound.tls.push(listener.local_addr()?);
        tls.push(listener);
    }
    let streams = Streams {
        tcp,
        tls,
        tls_setup,
        tls_port: bound.tls.first().map(|a| a.port()),
    };
    Ok((udps, streams, bound))
}

/// One try of [`bind`]; `None` when a TCP twin could not get its UDP
/// port, unless this is the `last` try (it then takes any port).
#[allow(clippy::type_complexity)]
fn bind_once(
    config: &Config,
    last: bool,
) -> anyhow::Result<Option<(Vec<udp::UdpEndpoint>, Vec<tokio::net::TcpListener>, Bound)>> {
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
        let twin = (addr.port() == 0)
            .then(|| bound.udp.iter().find(|u| u.ip() == addr.ip()))
            .flatten();
        if let Some(twin) = twin {
            addr.set_port(twin.port());
        }
        let listener = match tcp::bind(addr) {
            Ok(t) => t,
            Err(_) if twin.is_some() && !last => return Ok(None),
            Err(_) if l.addr.port() == 0 => tcp::bind(l.addr)?,
            Err(e) => return Err(e).with_context(|| format!("binding tcp {addr}")),
        };
        bound.tcp.push(listener.local_addr()?);
        tcps.push(listener);
    }
    Ok(Some((udps, tcps, bound)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Port 0 for both transports: one port serves both, every time.
    #[tokio::test]
    async fn udp_and_tcp_on_port_0_share_one_port() {
        let config = Config::from_toml(
            r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
"#,
        )
        .unwrap();
        for _ in 0..50 {
            let (_udps, _tcps, bound) = bind(&config).await.unwrap();
            assert_eq!(bound.udp.len(), 1);
            assert_eq!(bound.udp[0].port(), bound.tcp[0].port(), "{bound:?}");
        }
    }
}
