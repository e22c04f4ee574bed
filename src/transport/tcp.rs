//! TCP: accepted and outbound connections, Content-Length framing, CRLF
//! keep-alives (RFC 5626), idle timeouts, outbound connections reused per
//! destination, responses sent back on the connection the request came on.
//! A connection from an address the router takes no requests from is closed
//! as soon as it is accepted, so that strangers cannot hold its slots.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use super::{accept, Accepted, Inbound, InboundTx};
use crate::config::TcpConfig;
use crate::proxy::allow::AllowList;
use crate::proxy::{ConnId, Proto, Source};
use crate::sip::{self, Limits, Status};

type Outgoing = (Bytes, Option<u64>);

struct Conn {
    out: mpsc::Sender<Outgoing>,
}

struct Inner {
    conns: DashMap<ConnId, Conn>,
    by_peer: DashMap<SocketAddr, ConnId>,
    next: AtomicU64,
    tx: InboundTx,
    limits: Limits,
    cfg: TcpConfig,
    slots: Arc<Semaphore>,
    /// Who may connect; swapped on reload.
    allowed: ArcSwap<AllowList>,
    /// Accepted connections open by peer address.
    per_peer: DashMap<std::net::IpAddr, usize>,
    refused: crate::logbuf::SharedThrottle,
}

/// Every TCP connection, inbound and outbound.
#[derive(Clone)]
pub struct TcpPool {
    inner: Arc<Inner>,
}

impl TcpPool {
    pub fn new(tx: InboundTx, limits: Limits, cfg: TcpConfig) -> TcpPool {
        let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
        TcpPool {
            inner: Arc::new(Inner {
                conns: DashMap::new(),
                by_peer: DashMap::new(),
                next: AtomicU64::new(1),
                tx,
                limits,
                cfg,
                slots,
                allowed: ArcSwap::from_pointee(AllowList::default()),
                per_peer: DashMap::new(),
                refused: Default::default(),
            }),
        }
    }

    /// Counts an accepted connection from `ip`; false when `ip` has its
    /// most already (`sip.tcp.max_connections_per_peer`), so that one peer
    /// (a switch that leaks connections) cannot take every slot.
    fn take_peer_slot(&self, ip: std::net::IpAddr) -> bool {
        let limit = self.inner.cfg.max_connections_per_peer;
        let mut n = self.inner.per_peer.entry(ip).or_insert(0);
        if limit > 0 && *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    fn release_peer_slot(&self, ip: std::net::IpAddr) {
        self.inner.per_peer.remove_if_mut(&ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }

    /// Who may connect from now on (the core's allow list).
    pub fn set_allowed(&self, allowed: Arc<AllowList>) {
        self.inner.allowed.store(allowed);
    }

    pub fn open(&self) -> usize {
        self.inner.conns.len()
    }

    /// Accepts connections until the listener fails.
    pub async fn listen(self, listener: TcpListener) {
        let local = match listener.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        loop {
            let permit = match self.inner.slots.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            };
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let refusal = if !self.inner.allowed.load().contains(peer.ip()) {
                Some("not_allowed")
            } else if !self.take_peer_slot(peer.ip()) {
                Some("peer_limit")
            } else {
                None
            };
            if let Some(reason) = refusal {
                drop(stream);
                metrics::counter!(crate::metrics::TCP_REFUSED, "reason" => reason).increment(1);
                if let Some(refused) = self.inner.refused.hit() {
                    tracing::info!(refused, %peer, reason, "tcp connection refused: closed at once (count since the last such line; the latest named)");
                }
                continue;
            }
            let _ = stream.set_nodelay(true);
            let (id, rx) = self.register(peer);
            let pool = self.clone();
            tokio::spawn(async move {
                pool.run(id, stream, peer, local, rx).await;
                pool.release_peer_slot(peer.ip());
                drop(permit);
            });
        }
    }

    fn register(&self, peer: SocketAddr) -> (ConnId, mpsc::Receiver<Outgoing>) {
        let id = ConnId(self.inner.next.fetch_add(1, Ordering::Relaxed));
        let (out, rx) = mpsc::channel(1024);
        self.inner.conns.insert(id, Conn { out });
        self.inner.by_peer.insert(peer, id);
        let _ = self.inner.tx.try_send(Inbound::ConnOpened(id));
        (id, rx)
    }

    fn unregister(&self, id: ConnId, peer: SocketAddr) {
        self.inner.conns.remove(&id);
        self.inner.by_peer.remove_if(&peer, |_, v| *v == id);
        let _ = self.inner.tx.try_send(Inbound::ConnClosed(id));
    }

    /// Sends on `conn` if it is open, else on a connection to `dest`
    /// (opening one if needed). A failure is reported with `token`.
    pub fn send(&self, dest: SocketAddr, conn: Option<ConnId>, bytes: Bytes, token: Option<u64>) {
        let id = conn
            .filter(|c| self.inner.conns.contains_key(c))
            .or_else(|| self.inner.by_peer.get(&dest).map(|e| *e));
        if let Some(id) = id {
            if let Some(c) = self.inner.conns.get(&id) {
                if c.out.try_send((bytes, token)).is_ok() {
                    return;
                }
            }
            self.failed(token);
            return;
        }
        // A new outbound connection; messages queue until it is up.
        let (id, rx) = self.register(dest);
        if let Some(c) = self.inner.conns.get(&id) {
            let _ = c.out.try_send((bytes, token));
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let timeout = Duration::from_millis(pool.inner.cfg.connect_timeout_ms);
            match tokio::time::timeout(timeout, TcpStream::connect(dest)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(dest);
                    pool.run(id, stream, dest, local, rx).await;
                }
                Ok(Err(e)) => pool.connect_failed(id, dest, rx, &e.to_string()),
                Err(_) => pool.connect_failed(id, dest, rx, "timed out"),
            }
        });
    }

    fn connect_failed(
        &self,
        id: ConnId,
        dest: SocketAddr,
        mut rx: mpsc::Receiver<Outgoing>,
        why: &str,
    ) {
        tracing::warn!(%dest, error = why, "tcp connect failed");
        self.unregister(id, dest);
        while let Ok((_, token)) = rx.try_recv() {
            self.failed(token);
        }
    }

    fn failed(&self, token: Option<u64>) {
        metrics::counter!(crate::metrics::SEND_FAILURES, "transport" => "tcp").increment(1);
        if let Some(token) = token {
            let _ = self.inner.tx.try_send(Inbound::SendFailed { token });
        }
    }

    async fn run(
        &self,
        id: ConnId,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        mut rx: mpsc::Receiver<Outgoing>,
    ) {
        let (mut rd, mut wr) = stream.into_split();
        let pool = self.clone();
        let writer = tokio::spawn(async move {
            // Whatever queued while the last write ran leaves in one
            // writev: under load the writer keeps up with fewer wake-ups
            // and system calls instead of falling behind one message at a
            // time until the queue is full.
            let mut batch = Vec::with_capacity(WRITE_BATCH);
            while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
                if let Err(sent) = write_batch(&mut wr, &batch).await {
                    for (_, token) in batch.drain(sent..) {
                        pool.failed(token);
                    }
                    while let Ok((_, t)) = rx.try_recv() {
                        pool.failed(t);
                    }
                    return;
                }
                batch.clear();
            }
        });
        let idle = Duration::from_secs(self.inner.cfg.idle_timeout_s.max(1));
        let limits = self.inner.limits;
        let source = Source {
            proto: Proto::Tcp,
            peer,
            local,
            conn: Some(id),
        };
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut counters = crate::metrics::MessageCounters::default();
        'conn: loop {
            match tokio::time::timeout(idle, rd.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => {
                    tracing::debug!(%peer, "tcp connection idle; closed");
                    break;
                }
            }
            loop {
                // RFC 5626 keep-alive: a double CRLF ping gets a CRLF pong.
                while buf.starts_with(b"\r\n\r\n") {
                    let _ = buf.split_to(4);
                    self.reply(id, Bytes::from_static(b"\r\n"));
                }
                if &buf[..] == b"\r\n" {
                    buf.clear();
                }
                match sip::frame_stream(&buf, &limits) {
                    Ok(Status::Partial) => break,
                    Ok(Status::Complete((), n)) => {
                        let data = buf.split_to(n).freeze();
                        match accept(data, source, true, &limits, &mut counters) {
                            // Nothing over TCP is sent twice: a full core
                            // queue holds this connection back instead.
                            Accepted::Core(inbound) => {
                                if self.inner.tx.send(inbound).await.is_err() {
                                    break 'conn;
                                }
                            }
                            Accepted::Reply(resp) => self.reply(id, resp),
                            Accepted::Nothing => {}
                        }
                    }
                    Err(e) => {
                        // The stream cannot be resynchronised: answer if we
                        // can, then close.
                        metrics::counter!(crate::metrics::PARSE_ERRORS, "transport" => "tcp", "kind" => e.kind()).increment(1);
                        let head = buf.split().freeze();
                        if let Some(req) = sip::parse_lenient(head).filter(|m| m.is_request()) {
                            self.reply(
                                id,
                                sip::build::response(
                                    &req,
                                    Some(peer),
                                    e.status(),
                                    &e.reason(),
                                    Some("sos-bad"),
                                    &[],
                                    None,
                                ),
                            );
                        }
                        tracing::info!(%peer, error = %e, "tcp stream framing error; connection closed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break 'conn;
                    }
                }
            }
        }
        self.unregister(id, peer);
        writer.abort();
    }

    fn reply(&self, id: ConnId, bytes: Bytes) {
        if let Some(c) = self.inner.conns.get(&id) {
            let _ = c.out.try_send((bytes, None));
        }
    }
}

/// The most queued messages written in one system call.
const WRITE_BATCH: usize = 64;

/// Writes every message of `batch`, in order, with as few `writev` calls as
/// the socket allows. On a failure, how many messages went out whole before
/// it: only the others are reported as not sent.
async fn write_batch<W>(wr: &mut W, batch: &[Outgoing]) -> Result<(), usize>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
    let n = batch.len().min(WRITE_BATCH);
    for (slice, (bytes, _)) in slices.iter_mut().zip(batch) {
        *slice = IoSlice::new(bytes);
    }
    let mut rest = &mut slices[..n];
    // Empty messages would read as a closed socket below.
    IoSlice::advance_slices(&mut rest, 0);
    let mut total = 0;
    while !rest.is_empty() {
        let written = match wr.write_vectored(rest).await {
            Ok(0) | Err(_) => {
                let mut whole = 0;
                let mut end = 0;
                for (bytes, _) in &batch[..n] {
                    end += bytes.len();
                    if end > total {
                        break;
                    }
                    whole += 1;
                }
                return Err(whole);
            }
            Ok(written) => written,
        };
        total += written;
        IoSlice::advance_slices(&mut rest, written);
    }
    Ok(())
}

/// Binds a TCP listener with address reuse.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A pipe that takes a few bytes per write forces partial writes in the
    /// middle of messages; empty messages in between change nothing.
    #[tokio::test]
    async fn a_batch_arrives_whole_and_in_order_through_short_writes() {
        let (mut wr, mut rd) = tokio::io::duplex(7);
        let batch: Vec<Outgoing> = vec![
            (Bytes::from_static(b""), None),
            (
                Bytes::from_static(b"INVITE sip:911@host SIP/2.0\r\n"),
                Some(1),
            ),
            (Bytes::from_static(b""), None),
            (Bytes::from_static(b"\r\n"), None),
            (
                Bytes::from_static(b"BYE sip:psap@host SIP/2.0\r\n"),
                Some(2),
            ),
            (Bytes::from_static(b""), None),
        ];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await.map(|_| got)
        });
        write_batch(&mut wr, &batch).await.unwrap();
        drop(wr);
        let got = reader.await.unwrap().unwrap();
        assert_eq!(
            got,
            b"INVITE sip:911@host SIP/2.0\r\n\r\nBYE sip:psap@host SIP/2.0\r\n"
        );
    }

    #[tokio::test]
    async fn a_closed_peer_fails_the_batch() {
        let (mut wr, rd) = tokio::io::duplex(7);
        drop(rd);
        let batch: Vec<Outgoing> = vec![(Bytes::from_static(b"OPTIONS"), Some(1))];
        assert_eq!(write_batch(&mut wr, &batch).await, Err(0));
    }

    /// A peer that goes away after reading part of the batch: the messages
    /// that went out whole are not reported as failed, the one cut short
    /// and those after it are.
    #[tokio::test]
    async fn a_peer_gone_mid_batch_fails_only_what_did_not_go_out_whole() {
        let (mut wr, mut rd) = tokio::io::duplex(7);
        let batch: Vec<Outgoing> = vec![
            (Bytes::from_static(b"abc"), Some(1)),
            (Bytes::from_static(b"defghijkl"), Some(2)),
            (Bytes::from_static(b"mno"), Some(3)),
        ];
        let reader = tokio::spawn(async move {
            let mut seven = [0; 7];
            rd.read_exact(&mut seven).await.map(|_| seven)
        });
        assert_eq!(write_batch(&mut wr, &batch).await, Err(1));
        assert_eq!(&reader.await.unwrap().unwrap(), b"abcdefg");
    }
}
