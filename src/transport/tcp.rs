//! TCP: accepted and outbound connections, Content-Length framing, CRLF
//! keep-alives (RFC 5626), idle timeouts, outbound connections reused per
//! destination, responses sent back on the connection the request came on.
//! A connection from an address the router takes no requests from is closed
//! as soon as it is accepted, so that strangers cannot hold its slots.
//!
//! Allowed peers cannot hold slots for nothing either: a message must arrive
//! whole within `message_timeout_ms` of its first byte, an accepted
//! connection must carry a message within `first_message_timeout_ms`, and
//! when every slot is taken, the accepted connection least recently used
//! for a message (and with none arriving) is closed to make room for the
//! new one, so that a caller on a new connection always gets in.
//!
//! A pool made with [`TcpPool::new_tls`] runs the same connections over TLS
//! ([`super::tls`]): the handshake comes between the accept (or connect)
//! and the first byte of SIP, within `sip.tls.handshake_timeout_ms`, and
//! off the core's task; everything after it is shared.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use super::tls::{self, TlsContext, Verdict};
use super::{accept, Accepted, Inbound, InboundTx};
use crate::config::TcpConfig;
use crate::proxy::allow::AllowList;
use crate::sip::{self, Limits, Status};
use crate::wire::{ConnId, Proto, Source};

type Outgoing = (Bytes, Option<u64>);

struct Conn {
    out: mpsc::Sender<Outgoing>,
    state: Arc<ConnState>,
}

/// What the accept loop weighs when it must close a connection for a new
/// one.
struct ConnState {
    /// Accepted (not opened by the router to a trunk or a caller).
    inbound: bool,
    /// When a message last went either way, in milliseconds since the
    /// pool's epoch (the accept, before any).
    last_used: AtomicU64,
    /// Part of a message has arrived, or a message is on its way to the
    /// core.
    busy: AtomicBool,
    /// Chosen to be closed for a new connection.
    evicting: AtomicBool,
    close: Notify,
}

struct Inner {
    /// TCP, or TLS with its setup.
    proto: Proto,
    tls: Option<Arc<TlsContext>>,
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
    closed: crate::logbuf::SharedThrottle,
    epoch: Instant,
    /// Held by every connection's writer: the receiver below sees the
    /// channel close once the last writer is done ([`TcpPool::close`]).
    writers: std::sync::Mutex<Option<mpsc::Sender<()>>>,
    writers_done: tokio::sync::Mutex<mpsc::Receiver<()>>,
    /// The other pool sharing `slots` (TCP and TLS), whose idle
    /// connections make room when this one has none to close.
    sibling: std::sync::OnceLock<std::sync::Weak<Inner>>,
}

/// Every TCP connection, inbound and outbound.
#[derive(Clone)]
pub struct TcpPool {
    inner: Arc<Inner>,
}

impl TcpPool {
    pub fn new(tx: InboundTx, limits: Limits, cfg: TcpConfig) -> TcpPool {
        TcpPool::with(tx, limits, cfg, None)
    }

    /// A pool of TLS connections beside `plain`, the TCP pool: they share
    /// its `max_connections` slots (the open file limit was fitted to
    /// them), each pool closing its own least recently used connection for
    /// a new one of its own.
    pub fn new_tls(plain: &TcpPool, cfg: TcpConfig, tls: Arc<TlsContext>) -> TcpPool {
        let inner = &plain.inner;
        let pool = TcpPool::with(
            inner.tx.clone(),
            inner.limits,
            cfg,
            Some((tls, inner.slots.clone())),
        );
        let _ = pool.inner.sibling.set(Arc::downgrade(&plain.inner));
        let _ = plain.inner.sibling.set(Arc::downgrade(&pool.inner));
        pool
    }

    fn with(
        tx: InboundTx,
        limits: Limits,
        cfg: TcpConfig,
        tls: Option<(Arc<TlsContext>, Arc<Semaphore>)>,
    ) -> TcpPool {
        let (tls, slots) = match tls {
            Some((t, s)) => (Some(t), s),
            None => (None, Arc::new(Semaphore::new(cfg.max_connections.max(1)))),
        };
        let (writers, writers_done) = mpsc::channel(1);
        // Connection ids of the two pools never meet: the core keeps
        // some by id.
        let first_id = if tls.is_some() { 1 << 48 } else { 1 };
        TcpPool {
            inner: Arc::new(Inner {
                proto: if tls.is_some() {
                    Proto::Tls
                } else {
                    Proto::Tcp
                },
                tls,
                conns: DashMap::new(),
                by_peer: DashMap::new(),
                next: AtomicU64::new(first_id),
                tx,
                limits,
                cfg,
                slots,
                allowed: ArcSwap::from_pointee(AllowList::default()),
                per_peer: DashMap::new(),
                refused: Default::default(),
                closed: Default::default(),
                epoch: Instant::now(),
                writers: std::sync::Mutex::new(Some(writers)),
                writers_done: tokio::sync::Mutex::new(writers_done),
                sibling: std::sync::OnceLock::new(),
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

    /// Lets every connection write out what is queued for it, then
    /// closes them, waiting at most `within`; nothing new is sent after.
    /// The last answers of a drain leave this way before the process
    /// ends.
    pub async fn close(&self, within: Duration) {
        if let Ok(mut w) = self.inner.writers.lock() {
            w.take();
        }
        // Each writer ends once its queue is empty and its sender gone.
        self.inner.conns.clear();
        self.inner.by_peer.clear();
        let mut done = self.inner.writers_done.lock().await;
        let _ = tokio::time::timeout(within, done.recv()).await;
    }

    /// Accepts connections until the listener fails.
    pub async fn listen(self, listener: TcpListener) {
        let local = match listener.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over TLS, a trunk identified by its certificate may connect
            // from an address nobody else may: its handshake decides.
            let may = self.inner.allowed.load().contains(peer.ip())
                || (self.inner.tls.as_ref()).is_some_and(|t| t.current().may_connect(peer.ip()));
            let refusal = if !may {
                Some("not_allowed")
            } else if !self.take_peer_slot(peer.ip()) {
                Some("peer_limit")
            } else {
                None
            };
            if let Some(reason) = refusal {
                drop(stream);
                metrics::counter!(crate::metrics::TCP_REFUSED, "reason" => reason, "transport" => self.inner.proto.lower()).increment(1);
                if let Some(refused) = self.inner.refused.hit() {
                    tracing::info!(refused, %peer, reason, "tcp connection refused: closed at once (count since the last such line; the latest named)");
                }
                continue;
            }
            let Some(permit) = self.slot().await else {
                self.release_peer_slot(peer.ip());
                return;
            };
            let _ = stream.set_nodelay(true);
            let pool = self.clone();
            if let Some(tls) = self.inner.tls.clone() {
                tokio::spawn(async move {
                    pool.accept_tls(&tls, stream, peer, local).await;
                    pool.release_peer_slot(peer.ip());
                    drop(permit);
                });
                continue;
            }
            let (id, rx) = self.register(peer, true);
            tokio::spawn(async move {
                let (rd, wr) = stream.into_split();
                pool.run(id, rd, wr, peer, local, rx).await;
                pool.release_peer_slot(peer.ip());
                drop(permit);
            });
        }
    }

    /// The handshake of an accepted TLS connection, then the connection,
    /// when its certificate (or its address) lets it in.
    async fn accept_tls(
        &self,
        tls: &TlsContext,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
    ) {
        let setup = tls.current();
        let Some(server) = setup.server() else {
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let stream =
            match tokio::time::timeout(setup.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tls::handshake_failed("inbound", peer, tls::failure_reason(&e), &e.to_string());
                    return;
                }
                Err(_) => {
                    tls::handshake_failed("inbound", peer, "timeout", "handshake timed out");
                    return;
                }
            };
        let verdict = setup.identify(
            peer.ip(),
            stream.get_ref().1.peer_certificates(),
            &self.inner.allowed.load(),
        );
        let trunk = match verdict {
            Verdict::Refused(reason) => {
                tls::handshake_failed(
                    "inbound",
                    peer,
                    reason,
                    "the certificate names no inbound trunk allowed from this address",
                );
                return;
            }
            Verdict::Trunk(t) => Some(t),
            Verdict::ByAddress => None,
        };
        tls::handshake_ok("inbound");
        let (id, rx) = self.register(peer, true);
        if let Some(trunk) = trunk {
            tracing::info!(%peer, %trunk, "tls peer identified by its certificate");
            // Before any message of the connection, on the same queue.
            if self
                .inner
                .tx
                .send(Inbound::Identified { conn: id, trunk })
                .await
                .is_err()
            {
                self.unregister(id, peer);
                return;
            }
        }
        let (rd, wr) = tokio::io::split(stream);
        self.run(id, rd, wr, peer, local, rx).await;
    }

    /// A slot of `max_connections` for a connection just accepted. When
    /// every slot is taken, the accepted connection least recently used
    /// with no message arriving is closed for it (one of this pool's, else
    /// of the pool sharing the slots); while there is none such,
    /// the wait goes on (the connections that have one in progress end it
    /// or are closed within `message_timeout_ms`). `None` when the pool is
    /// gone.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            match self.inner.slots.clone().try_acquire_owned() {
                Ok(p) => return Some(p),
                Err(TryAcquireError::Closed) => return None,
                Err(TryAcquireError::NoPermits) => {}
            }
            let wait = if self.evict_one() || self.evict_in_sibling() {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(100)
            };
            match tokio::time::timeout(wait, self.inner.slots.clone().acquire_owned()).await {
                Ok(Ok(p)) => return Some(p),
                Ok(Err(_)) => return None,
                Err(_) => {}
            }
        }
    }

    /// Asks the accepted connection least recently used, of those with no
    /// message arriving, to close; false when there is none.
    /// [`TcpPool::evict_one`] in the other pool that shares the slots (TCP
    /// for TLS, TLS for TCP), when this one has no connection to close.
    fn evict_in_sibling(&self) -> bool {
        let sibling = self.inner.sibling.get().and_then(std::sync::Weak::upgrade);
        sibling.is_some_and(|inner| TcpPool { inner }.evict_one())
    }

    fn evict_one(&self) -> bool {
        let mut victim: Option<(u64, Arc<ConnState>)> = None;
        for e in self.inner.conns.iter() {
            let s = &e.value().state;
            if !s.inbound || s.busy.load(Ordering::Relaxed) || s.evicting.load(Ordering::Relaxed) {
                continue;
            }
            let used = s.last_used.load(Ordering::Relaxed);
            if victim.as_ref().is_none_or(|(u, _)| used < *u) {
                victim = Some((used, s.clone()));
            }
        }
        match victim {
            Some((_, s)) => {
                s.evicting.store(true, Ordering::Relaxed);
                s.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Milliseconds since the pool's epoch.
    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    fn register(&self, peer: SocketAddr, inbound: bool) -> (ConnId, mpsc::Receiver<Outgoing>) {
        let id = ConnId(self.inner.next.fetch_add(1, Ordering::Relaxed));
        let (out, rx) = mpsc::channel(1024);
        let state = Arc::new(ConnState {
            inbound,
            last_used: AtomicU64::new(self.now_ms()),
            busy: AtomicBool::new(false),
            evicting: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.inner.conns.insert(id, Conn { out, state });
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
        self.send_named(dest, None, conn, bytes, token)
    }

    /// [`TcpPool::send`], with the host name `dest` was found by: over
    /// TLS, the server's certificate must carry it (else `dest`'s
    /// address), unless its trunk names another (`tls_server_name`).
    pub fn send_named(
        &self,
        dest: SocketAddr,
        host: Option<&str>,
        conn: Option<ConnId>,
        bytes: Bytes,
        token: Option<u64>,
    ) {
        let id = conn
            .filter(|c| self.inner.conns.contains_key(c))
            .or_else(|| self.inner.by_peer.get(&dest).map(|e| *e));
        if let Some(id) = id {
            if let Some(c) = self.inner.conns.get(&id) {
                if c.out.try_send((bytes, token)).is_ok() {
                    c.state.last_used.store(self.now_ms(), Ordering::Relaxed);
                    return;
                }
            }
            self.failed(token);
            return;
        }
        // A new outbound connection; messages queue until it is up.
        let (id, rx) = self.register(dest, false);
        if let Some(c) = self.inner.conns.get(&id) {
            let _ = c.out.try_send((bytes, token));
        }
        let pool = self.clone();
        let host = match host {
            Some(h) => h.to_string(),
            None => dest.ip().to_string(),
        };
        tokio::spawn(async move {
            let timeout = Duration::from_millis(pool.inner.cfg.connect_timeout_ms);
            let stream = match tokio::time::timeout(timeout, TcpStream::connect(dest)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return pool.connect_failed(id, dest, rx, &e.to_string()),
                Err(_) => return pool.connect_failed(id, dest, rx, "timed out"),
            };
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(dest);
            let Some(tls) = pool.inner.tls.clone() else {
                let (rd, wr) = stream.into_split();
                return pool.run(id, rd, wr, dest, local, rx).await;
            };
            let setup = tls.current();
            let (name, config) = setup.client_for(&host);
            let Ok(server_name) = rustls_pki_types::ServerName::try_from(name) else {
                return pool.connect_failed(id, dest, rx, "no server name to check");
            };
            let connector = tokio_rustls::TlsConnector::from(config);
            match tokio::time::timeout(
                setup.handshake_timeout,
                connector.connect(server_name, stream),
            )
            .await
            {
                Ok(Ok(s)) => {
                    tls::handshake_ok("outbound");
                    let (rd, wr) = tokio::io::split(s);
                    pool.run(id, rd, wr, dest, local, rx).await;
                }
                Ok(Err(e)) => {
                    let reason = tls::failure_reason(&e);
                    tls::handshake_failed("outbound", dest, reason, &e.to_string());
                    pool.connect_failed(id, dest, rx, &format!("tls handshake failed: {reason}"));
                }
                Err(_) => {
                    tls::handshake_failed("outbound", dest, "timeout", "handshake timed out");
                    pool.connect_failed(id, dest, rx, "tls handshake timed out");
                }
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
        let transport = self.inner.proto.lower();
        tracing::warn!(%dest, transport, error = why, "connect failed");
        self.unregister(id, dest);
        while let Ok((_, token)) = rx.try_recv() {
            self.failed(token);
        }
    }

    fn failed(&self, token: Option<u64>) {
        metrics::counter!(crate::metrics::SEND_FAILURES, "transport" => self.inner.proto.lower())
            .increment(1);
        if let Some(token) = token {
            let _ = self.inner.tx.try_send(Inbound::SendFailed { token });
        }
    }

    /// Runs a connection, given its two halves (a TCP socket's, or a TLS
    /// stream's), until it closes.
    async fn run<R, W>(
        &self,
        id: ConnId,
        mut rd: R,
        mut wr: W,
        peer: SocketAddr,
        local: SocketAddr,
        mut rx: mpsc::Receiver<Outgoing>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let pool = self.clone();
        let alive = self.inner.writers.lock().ok().and_then(|w| w.clone());
        let writer = tokio::spawn(async move {
            let _alive = alive;
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
        let cfg = &self.inner.cfg;
        let idle = Duration::from_secs(cfg.idle_timeout_s.max(1));
        let message_timeout =
            (cfg.message_timeout_ms > 0).then(|| Duration::from_millis(cfg.message_timeout_ms));
        let state = match self.inner.conns.get(&id) {
            Some(c) => c.state.clone(),
            None => return,
        };
        let start = Instant::now();
        // Only an accepted connection must carry a message soon: one the
        // router opened waits for the router's own requests.
        let mut first_deadline = (state.inbound && cfg.first_message_timeout_ms > 0)
            .then(|| start + Duration::from_millis(cfg.first_message_timeout_ms));
        let mut idle_deadline = start + idle;
        let mut message_deadline: Option<Instant> = None;
        let mut closed_for: Option<&'static str> = None;
        let limits = self.inner.limits;
        let source = Source {
            proto: self.inner.proto,
            peer,
            local,
            conn: Some(id),
        };
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut counters = crate::metrics::MessageCounters::default();
        'conn: loop {
            let mut deadline = (idle_deadline, "idle");
            for (at, why) in [
                (message_deadline, "message_timeout"),
                (first_deadline, "first_message_timeout"),
            ] {
                if let Some(at) = at.filter(|at| *at < deadline.0) {
                    deadline = (at, why);
                }
            }
            let read = tokio::select! {
                biased;
                _ = state.close.notified() => {
                    closed_for = Some("evicted");
                    break;
                }
                read = tokio::time::timeout_at(deadline.0, rd.read_buf(&mut buf)) => read,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => idle_deadline = Instant::now() + idle,
                Err(_) => {
                    closed_for = Some(deadline.1);
                    break;
                }
            }
            state.busy.store(true, Ordering::Relaxed);
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
                        first_deadline = None;
                        message_deadline = None;
                        state.last_used.store(self.now_ms(), Ordering::Relaxed);
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
                        metrics::counter!(crate::metrics::PARSE_ERRORS, "transport" => self.inner.proto.lower(), "kind" => e.kind()).increment(1);
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
                        tracing::info!(%peer, transport = self.inner.proto.lower(), error = %e, "stream framing error; connection closed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break 'conn;
                    }
                }
            }
            // What is left is the start of the next message: its deadline
            // runs from now, and no byte that follows moves it.
            let arriving = !buf.is_empty();
            state.busy.store(arriving, Ordering::Relaxed);
            if !arriving {
                message_deadline = None;
            } else if message_deadline.is_none() {
                message_deadline = message_timeout.map(|t| Instant::now() + t);
            }
        }
        if let Some(reason) = closed_for {
            self.closed(peer, reason, start.elapsed());
        }
        self.unregister(id, peer);
        writer.abort();
    }

    /// Counts and logs a connection the router closed.
    fn closed(&self, peer: SocketAddr, reason: &'static str, open: Duration) {
        let transport = self.inner.proto.lower();
        metrics::counter!(crate::metrics::TCP_CLOSED, "reason" => reason, "transport" => transport)
            .increment(1);
        if reason == "idle" {
            tracing::debug!(%peer, transport, "connection idle; closed");
            return;
        }
        let open_ms = open.as_millis() as u64;
        if let Some(closed) = self.inner.closed.hit() {
            tracing::info!(closed, %peer, transport, reason, open_ms, "connection closed by the router (count since the last such line; the latest named)");
        } else {
            tracing::debug!(%peer, transport, reason, open_ms, "connection closed");
        }
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

    const OPTIONS: &[u8] = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKslot\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: slot\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    /// A pool listening on 127.0.0.1 that takes connections from loopback;
    /// the messages it hands to the core come out of the receiver.
    async fn pool(cfg: TcpConfig) -> (TcpPool, SocketAddr, mpsc::Receiver<Bytes>) {
        let (tx, mut rx) = mpsc::channel(64);
        let pool = TcpPool::new(tx, Limits::default(), cfg);
        pool.set_allowed(Arc::new(AllowList::new(
            &["127.0.0.0/8".parse().unwrap()],
            &[],
        )));
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(pool.clone().listen(listener));
        let (msgs, out) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(inbound) = rx.recv().await {
                if let Inbound::Message(m, _) = inbound {
                    let _ = msgs.send(m.buf().clone()).await;
                }
            }
        });
        (pool, addr, out)
    }

    fn config(f: impl FnOnce(&mut TcpConfig)) -> TcpConfig {
        let mut cfg = TcpConfig::default();
        f(&mut cfg);
        cfg
    }

    /// Whether the router closed `s` within `within` (end of stream or a
    /// reset); whatever else arrives (pongs) is read past.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let end = Instant::now() + within;
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(end, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }

    /// Whether `s` is open: a CRLF ping gets its pong.
    async fn pongs(s: &mut TcpStream) -> bool {
        if s.write_all(b"\r\n\r\n").await.is_err() {
            return false;
        }
        let mut pong = [0u8; 2];
        matches!(
            tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut pong)).await,
            Ok(Ok(_))
        ) && &pong == b"\r\n"
    }

    /// One byte at a time, each well within the idle timeout: the message
    /// deadline runs from its first byte and closes the connection.
    #[tokio::test]
    async fn a_message_that_trickles_in_is_cut_off_at_its_deadline() {
        let (_pool, addr, _rx) = pool(config(|c| c.message_timeout_ms = 500)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        let mut closed = false;
        for b in OPTIONS {
            if s.write_all(&[*b]).await.is_err()
                || closed_within(&mut s, Duration::from_millis(100)).await
            {
                closed = true;
                break;
            }
        }
        let took = start.elapsed();
        assert!(closed, "the whole message went out a byte at a time");
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    /// An accepted connection that carries no message, only keep-alives,
    /// is closed at `first_message_timeout_ms`; one that has carried a
    /// message and is quiet is not.
    #[tokio::test]
    async fn a_connection_that_never_sends_a_message_is_closed() {
        let (_pool, addr, mut rx) = pool(config(|c| c.first_message_timeout_ms = 400)).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut pinging = TcpStream::connect(addr).await.unwrap();
        let mut used = TcpStream::connect(addr).await.unwrap();
        used.write_all(OPTIONS).await.unwrap();
        assert!(rx.recv().await.is_some());
        let start = Instant::now();
        let mut pinging_closed = false;
        while start.elapsed() < Duration::from_millis(1500) {
            if !pongs(&mut pinging).await {
                pinging_closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(pinging_closed, "keep-alives are no message");
        assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            pongs(&mut used).await,
            "a quiet connection that carried a message stays"
        );
    }

    /// With every slot taken, a new connection gets in: the accepted
    /// connection least recently used, of those with no message arriving,
    /// is closed for it.
    #[tokio::test]
    async fn a_new_connection_takes_the_slot_of_the_least_recently_used() {
        let (_pool, addr, mut rx) = pool(config(|c| c.max_connections = 3)).await;
        let step = Duration::from_millis(30);
        let mut a = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(step).await;
        let mut b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(step).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(step).await;
        // a is the oldest but has just been used; b is older than c but
        // has a message on its way.
        a.write_all(OPTIONS).await.unwrap();
        assert!(rx.recv().await.is_some());
        b.write_all(&OPTIONS[..20]).await.unwrap();
        tokio::time::sleep(step).await;
        let mut d = TcpStream::connect(addr).await.unwrap();
        d.write_all(OPTIONS).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await;
        assert!(matches!(got, Ok(Some(_))), "the new connection is served");
        assert!(closed_within(&mut c, Duration::from_secs(2)).await);
        assert!(pongs(&mut a).await);
        assert!(pongs(&mut d).await);
        b.write_all(&OPTIONS[20..]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await;
        assert!(
            matches!(got, Ok(Some(_))),
            "the message in progress arrives"
        );
    }

    /// A connection the router opened is never closed for carrying no
    /// message of the far end's.
    #[tokio::test]
    async fn an_outbound_connection_waits_for_the_routers_requests() {
        let (pool, _addr, _rx) = pool(config(|c| c.first_message_timeout_ms = 200)).await;
        let trunk = TcpListener::bind("127.0.0.1:0").await.unwrap();
        pool.send(
            trunk.local_addr().unwrap(),
            None,
            Bytes::from_static(OPTIONS),
            None,
        );
        let (mut s, _) = trunk.accept().await.unwrap();
        let mut got = vec![0u8; OPTIONS.len()];
        s.read_exact(&mut got).await.unwrap();
        assert!(!closed_within(&mut s, Duration::from_millis(800)).await);
    }

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
