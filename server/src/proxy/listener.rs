//! The accept loop both listeners share, with the limits that keep slow or
//! numerous clients from exhausting the daemon: a header-read timeout (which
//! is also the idle timeout of a kept-alive connection), a body idle timeout,
//! and a cap on open connections.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::peers::AppNets;

/// How long [`serve_with`] waits for open connections after `shutdown` resolves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What one listener allows a client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the first byte awaited to the end of a request's head; also how
    /// long a kept-alive connection may sit idle between requests.
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_idle_timeout: Duration,
    /// Connections open at once; further clients wait in the kernel's
    /// backlog until one closes.
    pub max_connections: usize,
    /// Request bodies up to this size are read whole by the proxy before the
    /// app sees the request (a slow upload never holds an app worker).
    pub max_buffered_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(15),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_buffered_body: 10 << 20,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, serving each
/// request with `handle(request, peer)` under `limits`; then stops accepting
/// and gives open connections a short grace period to finish. A peer in
/// `refuse` gets its connection reset at once, before a byte is read.
pub(crate) async fn serve_with<H, F>(
    listener: tokio::net::TcpListener,
    limits: Limits,
    refuse: Option<AppNets>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handle: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // Plain HTTP is HTTP/1.1 only; over TLS, ALPN picks h2 or HTTP/1.1.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if tls.is_none() {
        builder = builder.http1_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A free slot first: at the cap, new clients wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if refuse.as_ref().is_some_and(|r| r.contains(remote.ip())) {
            refused(stream, remote);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let response = handle(req, remote);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let Some(acceptor) = acceptor else {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(err) = watcher.watch(conn).await {
                    tracing::debug!(%remote, %err, "connection ended with an error");
                }
                return;
            };
            // The handshake counts against the header timeout: a client
            // that opens a connection and says nothing holds a slot no longer.
            let stream =
                match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%remote, %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            // A TLS-ALPN-01 validator only needs the handshake.
            if stream.get_ref().1.alpn_protocol() == Some(crate::certs::ACME_TLS_ALPN) {
                return;
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%remote, %err, "TLS connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::debug!("shutdown grace period over, dropping open connections");
        }
    }
    Ok(())
}

/// Closes a connection from an app's network with a reset (no answer, no
/// lingering), and says so in the log at most once a minute: a hostile app
/// knocking in a loop must not fill the journal.
fn refused(stream: tokio::net::TcpStream, remote: SocketAddr) {
    static LAST_WARNED: AtomicU64 = AtomicU64::new(0);
    let _ = stream.set_zero_linger();
    drop(stream);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNED.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST_WARNED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            %remote,
            "refused a connection to the control plane from an app's network (said once a minute)"
        );
    } else {
        tracing::debug!(%remote, "refused a connection from an app's network");
    }
}

/// Serves an axum router (the admin listener) under `limits`; handlers get
/// `ConnectInfo<SocketAddr>`. Peers on the apps' networks (`refuse`) are
/// reset at once: the control plane never answers app code.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
    refuse: AppNets,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = move |req: Request<Incoming>, remote: SocketAddr| {
        call_router(router.clone(), req, remote, limits.body_idle_timeout)
    };
    serve_with(listener, limits, Some(refuse), None, handle, shutdown).await
}

/// One request to `router`, its body under the idle timeout.
pub(crate) async fn call_router(
    router: axum::Router,
    req: Request<Incoming>,
    remote: SocketAddr,
    body_idle: Duration,
) -> Response<Body> {
    let mut req = req.map(|body| Body::new(IdleTimeout::new(body, body_idle)));
    req.extensions_mut().insert(ConnectInfo(remote));
    match router.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The client sent no piece of the body for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body stopped arriving for {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body whose next frame must arrive within `idle` of being
/// asked for (the time a consumer takes between asks is not counted).
pub struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// A poll returned Pending: the timer runs for that wait.
    waiting: bool,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
        }
    }
}

impl<B> hyper::body::Body for IdleTimeout<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut(this.idle).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
