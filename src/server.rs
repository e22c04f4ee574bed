//! The router process: binds the listeners, spawns the I/O tasks and drives
//! the proxy core on one task, until the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::{Config, TransportName};
use crate::metrics as m;
use crate::proxy::{Core, CoreConfig, Proto, Router, Target, Transmit};
use crate::sip::Limits;
use crate::transport::{tcp, udp, Inbound};

/// The sockets a running router bound (ports are real even when the config
/// said 0).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
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

/// Runs the router until `shutdown` completes.
pub async fn run(
    config: Config,
    router: Arc<dyn Router>,
    shutdown: impl Future<Output = ()>,
    on_bound: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    let limits = Limits::default();
    let (udps, tcps, bound) = bind(&config).await?;
    on_bound(&bound);
    let mut locals: Vec<SocketAddr> = bound.udp.clone();
    locals.extend(&bound.tcp);
    let seed: u64 = rand::random();
    let core_cfg = CoreConfig::from_config(&config, locals, seed);
    let mut core = Core::new(core_cfg, router);
    core.start(Instant::now());

    let (tx, mut rx) = mpsc::channel::<Inbound>(65536);
    let pool = tcp::TcpPool::new(tx.clone(), limits, config.sip.tcp.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for ep in &udps {
        tasks.spawn(udp::recv_loop(ep.clone(), tx.clone(), limits));
    }
    for l in tcps {
        tasks.spawn(pool.clone().listen(l));
    }
    tokio::pin!(shutdown);
    loop {
        let deadline = core.next_deadline().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            inbound = rx.recv() => {
                let Some(first) = inbound else { break };
                let now = Instant::now();
                handle(&mut core, now, first);
                // Take what else is queued before sending, in one batch.
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(more) => handle(&mut core, now, more),
                        Err(_) => break,
                    }
                }
            }
            _ = sleep => core.handle_timeout(Instant::now()),
        }
        flush(&mut core, &udps, &pool, &tx);
    }
    tasks.abort_all();
    Ok(())
}

fn handle(core: &mut Core, now: Instant, inbound: Inbound) {
    match inbound {
        Inbound::Message(msg, source) => core.handle_message(now, *msg, source),
        Inbound::SendFailed { token } => core.handle_send_failure(now, token),
        Inbound::ConnOpened(_) | Inbound::ConnClosed(_) => {}
    }
}

fn flush(
    core: &mut Core,
    udps: &[udp::UdpEndpoint],
    pool: &tcp::TcpPool,
    tx: &mpsc::Sender<Inbound>,
) {
    metrics::gauge!(m::TCP_CONNECTIONS).set(pool.open() as f64);
    while let Some(t) = core.poll_transmit() {
        send(t, udps, pool, tx);
    }
}

fn send(t: Transmit, udps: &[udp::UdpEndpoint], pool: &tcp::TcpPool, tx: &mpsc::Sender<Inbound>) {
    let Transmit { dest, bytes, token } = t;
    let addr = match dest.target {
        Target::Addr(a) => a,
        Target::Host(host, port) => {
            // Names resolve off the driver task.
            let (udps, pool, tx) = (udps.to_vec(), pool.clone(), tx.clone());
            tokio::spawn(async move {
                let resolved = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .ok()
                    .and_then(|mut a| a.next());
                match resolved {
                    Some(a) => send(
                        Transmit {
                            dest: crate::proxy::Dest {
                                target: Target::Addr(a),
                                ..dest
                            },
                            bytes,
                            token,
                        },
                        &udps,
                        &pool,
                        &tx,
                    ),
                    None => {
                        tracing::warn!(%host, "could not resolve a next hop");
                        if let Some(token) = token {
                            let _ = tx.try_send(Inbound::SendFailed { token });
                        }
                    }
                }
            });
            return;
        }
    };
    metrics::counter!(m::SIP_SENT, "transport" => dest.proto.lower()).increment(1);
    match dest.proto {
        Proto::Udp => {
            if let Err(e) = udp::send(udps, addr, bytes) {
                tracing::debug!(%addr, error = %e, "udp send failed");
                metrics::counter!(m::SEND_FAILURES, "transport" => "udp").increment(1);
                if let Some(token) = token {
                    let _ = tx.try_send(Inbound::SendFailed { token });
                }
            }
        }
        Proto::Tcp => pool.send(addr, dest.conn, bytes, token),
    }
}
