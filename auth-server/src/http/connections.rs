//! Serving connections, and the bounds on clients that send slowly or not at all.
//!
//! Each connection's task watches which phase it is in:
//!
//! - **reading a request's head**, from the connection's start (its first request) or from the
//!   first byte of a later request: at most `header_read`. The deadline does not move while bytes
//!   trickle in, so a client sending one byte a second is disconnected like a silent one.
//! - **serving**: one or more requests are in the handlers, bounded by the request deadline; the
//!   body's arrival is bounded by `body_read` ([`BodyDeadline`], answered 408).
//! - **idle**, between a response and the first byte of the next request: at most `idle`.
//!
//! Reads and requests only note the time; the connection's task looks at least every
//! `header_read`, so the head of a later request on a kept-alive connection is cut off within
//! twice `header_read`, and every other deadline on time.
//!
//! A connection past its deadline is asked to close (HTTP/2 gets a GOAWAY) and dropped if it has
//! not within [`CLOSE_GRACE`]. At most `max_connections` are served at once; one accepted beyond
//! that is closed at once rather than left in the kernel's backlog, where it would wait unseen.
//! HTTP/1.1 and HTTP/2 (prior knowledge) are served alike; on HTTP/2, frames a client sends while
//! no stream is open (pings) count as the start of a request, so such a connection closes after
//! `header_read` unless a request follows.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use crate::config::ConnectionLimits;
use crate::metrics::Metrics;

/// How long a connection asked to close (past a deadline) may take before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often a refusal at capacity is logged at most (each one is counted in the metrics).
const CAPACITY_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then lets every connection finish its
/// requests (each still under its deadlines) and returns once all have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = u32::try_from(limits.max_connections).unwrap_or(u32::MAX).max(1);
    let free = Arc::new(Semaphore::new(slots as usize));
    let (stop, stopping) = watch::channel(false);
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut warned_at: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset while queued: wait a little
                    // rather than spin on the error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = free.clone().try_acquire_owned() else {
            metrics.connections_dropped.with_label_values(&["over_capacity"]).inc();
            if warned_at.is_none_or(|at| at.elapsed() >= CAPACITY_WARNING_EVERY) {
                warned_at = Some(Instant::now());
                tracing::warn!(max_connections = slots, "at the connection limit: new connections are closed as accepted");
            }
            drop(stream);
            continue;
        };
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            limits,
            metrics: metrics.clone(),
            stopping: stopping.clone(),
            _slot: slot,
        };
        tokio::spawn(connection.serve(stream, peer));
    }
    let _ = stop.send(true);
    // Every connection holds a slot until it closes: all slots free means all drained.
    let _ = free.acquire_many(slots).await;
}

/// One accepted connection and what it needs.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    stopping: watch::Receiver<bool>,
    /// Given back when the connection closes.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream, peer: SocketAddr) {
        // Answers are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let phase = Arc::new(Phase::new());
        let io = TokioIo::new(Watched { inner: stream, phase: phase.clone() });
        let app = self.app.clone();
        let serving = phase.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_handlers = Serving::begin(serving.clone());
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await;
                drop(in_handlers);
                response
            }
        });
        let connection = self.builder.serve_connection(io, service);
        tokio::pin!(connection);
        self.metrics.connections_open.inc();
        let mut stopping = false;
        // When the connection was asked to close for a deadline it missed.
        let mut expired_at: Option<Instant> = None;
        loop {
            // Requests and reads only note the time (no wake-up per request): the task looks at
            // least every `header_read`, so the head of a later request is cut off within twice
            // that, and the other deadlines on time.
            let deadline = match expired_at {
                Some(at) => at + CLOSE_GRACE,
                None => {
                    let next_look = Instant::now() + self.limits.header_read;
                    phase.due(&self.limits).map_or(next_look, |(at, _)| at.min(next_look))
                }
            };
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if expired_at.is_some() {
                        break;
                    }
                    if let Some((at, reason)) = phase.due(&self.limits)
                        && Instant::now() >= at
                    {
                        self.metrics.connections_dropped.with_label_values(&[reason]).inc();
                        tracing::debug!(%peer, reason, "closing a connection");
                        expired_at = Some(Instant::now());
                        if !stopping {
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
                _ = self.stopping.changed(), if !stopping => {
                    stopping = true;
                    if expired_at.is_none() {
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        self.metrics.connections_open.dec();
    }
}

/// Where a connection is between requests, shared by its reads, its requests and its task.
struct Phase {
    state: Mutex<PhaseState>,
}

struct PhaseState {
    /// Requests in the handlers.
    serving: usize,
    /// When the connection last became idle (its start, or the end of its last request).
    idle_since: Instant,
    /// When the head of the next request started to arrive (the connection's start for the
    /// first request); `None` while idle or serving.
    head_since: Option<Instant>,
}

impl Phase {
    fn new() -> Self {
        let now = Instant::now();
        Self { state: Mutex::new(PhaseState { serving: 0, idle_since: now, head_since: Some(now) }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PhaseState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: on an idle connection, the next request's head has started.
    fn bytes_arrived(&self) {
        let mut state = self.lock();
        if state.serving == 0 && state.head_since.is_none() {
            state.head_since = Some(Instant::now());
        }
    }

    /// When the current phase runs out, and the reason to close the connection then; `None`
    /// while serving (requests are bounded by their own deadlines).
    fn due(&self, limits: &ConnectionLimits) -> Option<(Instant, &'static str)> {
        let state = self.lock();
        match state.head_since {
            _ if state.serving > 0 => None,
            Some(since) => Some((since + limits.header_read, "header_read_timeout")),
            None => Some((state.idle_since + limits.idle, "idle_timeout")),
        }
    }
}

/// A request in the handlers, from its head's arrival to its response.
struct Serving(Arc<Phase>);

impl Serving {
    fn begin(phase: Arc<Phase>) -> Self {
        let mut state = phase.lock();
        state.serving += 1;
        state.head_since = None;
        drop(state);
        Self(phase)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.serving = state.serving.saturating_sub(1);
        if state.serving == 0 {
            state.idle_since = Instant::now();
            state.head_since = None;
        }
    }
}

/// A TCP stream that reports the bytes it reads to its connection's [`Phase`].
struct Watched {
    inner: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must have arrived by a deadline: past it, reading fails with
/// [`BodyTimedOut`] (answered 408 by the extractors, see `error::body_code`).
pub struct BodyDeadline {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    within: Duration,
}

impl BodyDeadline {
    /// `body`, to be read within `within` from now.
    pub fn new(body: Body, within: Duration) -> Self {
        Self { inner: body, deadline: Box::pin(tokio::time::sleep(within)), within }
    }
}

/// The body did not arrive within the body-read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

impl HttpBody for BodyDeadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        // What has arrived is taken even past the deadline; only waiting for more is refused.
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let within = self.within;
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(within))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
