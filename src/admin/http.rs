//! The HTTP listeners' own accept loop (admin and metrics), bounded so that
//! idle or slow clients cannot hold what the router needs for SIP: a cap
//! on connections per listener and per peer address, a deadline for each
//! request's header block, and an idle timeout between requests.
//!
//! When every slot is taken, the connection least recently used with no
//! request in progress (idle, or still sending its header block) is closed
//! for the new one, so that a health probe on a fresh connection is served
//! while idle connections hold the slots; when every connection has a
//! request in progress, the new one is closed at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::{AdminConfig, ListenConfig};
use crate::metrics as m;

/// The bounds of one HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// `0`: no limit but `max_connections`.
    pub max_connections_per_peer: usize,
    /// From the accept, or from a request's first byte, to the end of its
    /// header block.
    pub header_read_timeout: Duration,
    /// No request in progress and nothing sent either way.
    pub idle_timeout: Duration,
}

impl HttpLimits {
    pub fn admin(a: &AdminConfig) -> HttpLimits {
        HttpLimits {
            max_connections: a.max_connections.max(1),
            max_connections_per_peer: a.max_connections_per_peer,
            header_read_timeout: Duration::from_millis(a.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_secs(a.idle_timeout_s.max(1)),
        }
    }

    pub fn metrics(c: &ListenConfig) -> HttpLimits {
        HttpLimits {
            max_connections: c.max_connections.max(1),
            max_connections_per_peer: c.max_connections_per_peer,
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_secs(c.idle_timeout_s.max(1)),
        }
    }
}

/// Largest read buffer of a connection, header block included: what one
/// connection can make the router hold.
const MAX_BUF: usize = 64 * 1024;

/// What the accept loop and a connection's watchdog know of it. Times are
/// milliseconds since the listener's epoch.
struct ConnState {
    /// When a byte last went either way, or a request ended.
    last_io: AtomicU64,
    /// Requests handed to the application and not answered yet.
    in_flight: AtomicUsize,
    /// When the header block now arriving began (the accept, for the
    /// first), plus one; 0 while none is arriving.
    head_since: AtomicU64,
    evicting: AtomicBool,
    close: Notify,
    /// A header block began: its deadline is nearer than the one the
    /// watchdog sleeps to.
    rearm: Notify,
}

struct Listener {
    name: &'static str,
    limits: HttpLimits,
    epoch: Instant,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    refused: crate::logbuf::SharedThrottle,
    closed: crate::logbuf::SharedThrottle,
    failed: crate::logbuf::SharedThrottle,
}

impl Listener {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Takes a place for a connection from `ip`, closing the least
    /// recently used idle one when the listener is full; the reason it
    /// is refused otherwise.
    fn admit(&self, ip: IpAddr) -> Result<(u64, Arc<ConnState>), &'static str> {
        {
            let mut per_peer = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_peer.entry(ip).or_insert(0);
            let limit = self.limits.max_connections_per_peer;
            if limit > 0 && *n >= limit {
                return Err("peer_limit");
            }
            *n += 1;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let evicting = conns
            .values()
            .filter(|c| c.evicting.load(Ordering::Relaxed))
            .count();
        if conns.len() - evicting >= self.limits.max_connections {
            let victim = conns
                .values()
                .filter(|c| {
                    c.in_flight.load(Ordering::Relaxed) == 0 && !c.evicting.load(Ordering::Relaxed)
                })
                .min_by_key(|c| c.last_io.load(Ordering::Relaxed));
            match victim {
                Some(v) => {
                    v.evicting.store(true, Ordering::Relaxed);
                    v.close.notify_one();
                }
                None => {
                    drop(conns);
                    self.release_peer(ip);
                    return Err("full");
                }
            }
        }
        let now = self.now();
        let state = Arc::new(ConnState {
            last_io: AtomicU64::new(now),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(now + 1),
            evicting: AtomicBool::new(false),
            close: Notify::new(),
            rearm: Notify::new(),
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        conns.insert(id, state.clone());
        metrics::gauge!(m::HTTP_CONNECTIONS, "listener" => self.name).set(conns.len() as f64);
        Ok((id, state))
    }

    fn release_peer(&self, ip: IpAddr) {
        let mut per_peer = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_peer.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_peer.remove(&ip);
            }
        }
    }

    fn remove(&self, id: u64, ip: IpAddr) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.remove(&id);
        metrics::gauge!(m::HTTP_CONNECTIONS, "listener" => self.name).set(conns.len() as f64);
        drop(conns);
        self.release_peer(ip);
    }

    /// Why the connection must close now, or when to look again.
    fn verdict(&self, c: &ConnState) -> Result<Instant, &'static str> {
        let now = self.now();
        let (deadline, why) = if c.in_flight.load(Ordering::Relaxed) > 0 {
            // The application answers; its own limits apply.
            (now + self.limits.idle_timeout.as_millis() as u64, "")
        } else {
            match c.head_since.load(Ordering::Relaxed) {
                0 => (
                    c.last_io.load(Ordering::Relaxed) + self.limits.idle_timeout.as_millis() as u64,
                    "idle",
                ),
                since => (
                    since - 1 + self.limits.header_read_timeout.as_millis() as u64,
                    "header_timeout",
                ),
            }
        };
        if now >= deadline && !why.is_empty() {
            return Err(why);
        }
        Ok(self.epoch + Duration::from_millis(deadline.max(now + 1)))
    }

    fn tell_refused(&self, peer: SocketAddr, reason: &'static str) {
        metrics::counter!(m::HTTP_REFUSED, "listener" => self.name, "reason" => reason)
            .increment(1);
        if let Some(refused) = self.refused.hit() {
            tracing::info!(refused, listener = self.name, %peer, reason, "http connection refused: closed at once (count since the last such line; the latest named)");
        }
    }

    fn tell_closed(&self, peer: SocketAddr, reason: &'static str) {
        metrics::counter!(m::HTTP_CLOSED, "listener" => self.name, "reason" => reason).increment(1);
        if let Some(closed) = self.closed.hit() {
            tracing::info!(closed, listener = self.name, %peer, reason, "http connection closed by the router (count since the last such line; the latest named)");
        }
    }
}

/// The certificate an HTTPS listener serves: the router's (`[sip.tls]`),
/// swapped on reload; each handshake takes the one current then.
pub type HttpTls = Arc<arc_swap::ArcSwapOption<rustls::ServerConfig>>;

/// Serves `app` on `addr` within `limits` until `shutdown` completes: the
/// listener stops accepting, and each connection ends once its request in
/// progress, if any, is answered. With `tls`, over HTTPS only.
pub async fn serve(
    name: &'static str,
    addr: SocketAddr,
    app: axum::Router,
    limits: HttpLimits,
    tls: Option<HttpTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    // The SIP listeners' backlog (1,024): a burst of connections waits
    // for the accept loop rather than have its SYNs dropped.
    let listener = crate::transport::tcp::bind(addr)?;
    let local = listener.local_addr()?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let shared = Arc::new(Listener {
        name,
        limits,
        epoch: Instant::now(),
        next: AtomicU64::new(1),
        conns: Mutex::new(HashMap::new()),
        per_peer: Mutex::new(HashMap::new()),
        refused: Default::default(),
        closed: Default::default(),
        failed: Default::default(),
    });
    tokio::spawn(accept_loop(listener, shared, app, tls, stop));
    Ok(local)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Listener>,
    app: axum::Router,
    tls: Option<HttpTls>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, most likely: what waits stays in the
                // kernel's queue meanwhile.
                if let Some(failed) = shared.failed.hit() {
                    tracing::warn!(failed, listener = shared.name, error = %e, "http accept failed (count since the last such line)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (id, state) = match shared.admit(peer.ip()) {
            Ok(s) => s,
            Err(reason) => {
                drop(stream);
                shared.tell_refused(peer, reason);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (shared, app, mut stop) = (shared.clone(), app.clone(), stop.clone());
        let tls = tls.as_ref().map(|t| t.load_full());
        tokio::spawn(async move {
            let tracked = Tracked {
                inner: stream,
                state: state.clone(),
                shared: shared.clone(),
            };
            let closed = match tls {
                None => connection(tracked, peer, &shared, &state, app, stop).await,
                // Configured for HTTPS with no certificate loaded: never
                // answered in plain text.
                Some(None) => Some("no-certificate"),
                Some(Some(config)) => {
                    match handshake(tracked, peer, config, &shared, &state, &mut stop).await {
                        Ok(s) => connection(s, peer, &shared, &state, app, stop).await,
                        Err(reason) => reason,
                    }
                }
            };
            if let Some(reason) = closed {
                shared.tell_closed(peer, reason);
            }
            shared.remove(id, peer.ip());
        });
    }
}

/// The TLS handshake of an HTTPS connection, within the time a header
/// block may take: a client that opens and says nothing holds a slot no
/// longer than one that sends half a request. The error is why it closed
/// (`None`: the listener is stopping).
async fn handshake(
    tracked: Tracked,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    shared: &Arc<Listener>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<bool>,
) -> Result<tokio_rustls::server::TlsStream<Tracked>, Option<&'static str>> {
    use crate::transport::tls as t;
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(tracked);
    let timed = tokio::time::timeout(shared.limits.header_read_timeout, accept);
    tokio::select! {
        r = timed => match r {
            Ok(Ok(s)) => {
                t::handshake_ok("https");
                Ok(s)
            }
            Ok(Err(e)) => {
                t::handshake_failed("https", peer, t::failure_reason(&e), &e.to_string());
                Err(Some("tls-handshake"))
            }
            Err(_) => {
                t::handshake_failed("https", peer, "timeout", "no handshake within the header read timeout");
                Err(Some("header-timeout"))
            }
        },
        _ = state.close.notified() => Err(Some("evicted")),
        _ = stop.wait_for(|s| *s) => Err(None),
    }
}

/// Serves one connection; why the router closed it, if it did.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    shared: &Arc<Listener>,
    state: &Arc<ConnState>,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> Option<&'static str>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    // The peer's address travels with each request, so that the API can
    // name (and bound per source) the requests it refuses.
    let peer = Some(peer);
    let inner = TowerToHyperService::new(app);
    let service = {
        let (state, shared) = (state.clone(), shared.clone());
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(peer) = peer {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
            }
            let guard = InFlight::start(&state, &shared);
            let answer = hyper::service::Service::call(&inner, req);
            async move {
                let answer = answer.await;
                drop(guard);
                answer
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_BUF)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let next = match shared.verdict(state) {
            Ok(at) => at,
            Err(reason) => return Some(reason),
        };
        tokio::select! {
            _ = conn.as_mut() => return None,
            _ = tokio::time::sleep_until(next) => {}
            _ = state.rearm.notified() => {}
            _ = state.close.notified() => return Some("evicted"),
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A request handed to the application, until its answer is ready.
struct InFlight(Arc<ConnState>, Arc<Listener>);

impl InFlight {
    fn start(state: &Arc<ConnState>, shared: &Arc<Listener>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.head_since.store(0, Ordering::Relaxed);
        InFlight(state.clone(), shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_io.store(self.1.now(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting when bytes go either way and when a header block
/// begins.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
    shared: Arc<Listener>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = this.shared.now();
            this.state.last_io.store(now, Ordering::Relaxed);
            if this.state.in_flight.load(Ordering::Relaxed) == 0 {
                let began = this.state.head_since.compare_exchange(
                    0,
                    now + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if began.is_ok() {
                    this.state.rearm.notify_one();
                }
            }
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.state
                .last_io
                .store(this.shared.now(), Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.state
                .last_io
                .store(this.shared.now(), Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
