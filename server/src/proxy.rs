//! The public reverse proxy: Host header → app, forwarding, static and media
//! files, and draining of retired releases.
//!
//! The request path reads one [`ArcSwap`] snapshot of the host table: no lock,
//! no database. Writers ([`RouteTable::set`], [`RouteTable::remove_app`]) build
//! a new map and swap it in, so a deploy's swap is atomic for every host of the
//! app at once.
//!
//! Every routed request holds an in-flight guard on its [`Route`] until its
//! response body ends (the guard lives inside the body), so
//! [`Route::drain`] waits for streaming responses and WebSocket tunnels, and
//! closes the tunnels that are still open at the deadline.
//!
//! Requests whose Host is the control host go to the control [`axum::Router`]
//! (dashboard, API, git), so the whole product is reachable on one port.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::services::ServeDir;

const PAGE_404: &str = include_str!("../../web-ui/errors/404.html");
const PAGE_502: &str = include_str!("../../web-ui/errors/502.html");
const PAGE_503: &str = include_str!("../../web-ui/errors/503.html");
const PAGE_504: &str = include_str!("../../web-ui/errors/504.html");

/// Cache policy for file names that carry a content hash (Django's
/// `ManifestStaticFilesStorage`): the name changes whenever the content does.
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy for every other static or media file.
const CACHE_SHORT: &str = "public, max-age=60";

/// How long [`serve`] waits for open connections after `shutdown` resolves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Where one release of an app is served: its web container's address plus
/// the directories the proxy serves itself.
pub struct Route {
    /// App name, used for stats and logs.
    app: String,
    /// The web container's published address.
    backend: SocketAddr,
    /// `backend` as a URI authority, computed once.
    authority: Authority,
    /// `/static/…` served from disk, if configured.
    static_files: Option<FileMount>,
    /// `/media/…` served from disk, if configured.
    media_files: Option<FileMount>,
    /// Requests routed here whose response has not ended, plus open tunnels.
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to zero.
    idle: Notify,
    /// Cancelled at the drain deadline: closes the open tunnels.
    closing: CancellationToken,
    /// The app's counters, shared across releases; attached by [`RouteTable::set`].
    stats: OnceLock<Arc<StatsCounters>>,
}

/// A URL prefix served from a directory.
struct FileMount {
    /// Always starts and ends with `/`.
    prefix: String,
    dir: ServeDir,
    /// Whether hashed names get the immutable cache policy (static, not media).
    immutable_hashed: bool,
}

impl FileMount {
    fn new(prefix: Option<String>, dir: Option<PathBuf>, immutable_hashed: bool) -> Option<Self> {
        let (prefix, dir) = (prefix?, dir?);
        let mut prefix = prefix.trim().trim_matches('/').to_string();
        prefix.insert(0, '/');
        if prefix.len() > 1 {
            prefix.push('/');
        }
        let dir = ServeDir::new(dir)
            .precompressed_br()
            .precompressed_gzip()
            .append_index_html_on_directories(false)
            .redirect_to_trailing_slash(false);
        Some(FileMount {
            prefix,
            dir,
            immutable_hashed,
        })
    }
}

impl Route {
    /// A route to `backend`; static (media) files are served from
    /// `static_dir` (`media_dir`) under `static_prefix` (`media_prefix`) when
    /// both halves are given.
    pub fn new(
        app: String,
        backend: SocketAddr,
        static_prefix: Option<String>,
        static_dir: Option<PathBuf>,
        media_prefix: Option<String>,
        media_dir: Option<PathBuf>,
    ) -> Route {
        let authority = Authority::try_from(backend.to_string())
            .expect("a socket address is a valid URI authority");
        Route {
            app,
            backend,
            authority,
            static_files: FileMount::new(static_prefix, static_dir, true),
            media_files: FileMount::new(media_prefix, media_dir, false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            closing: CancellationToken::new(),
            stats: OnceLock::new(),
        }
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    /// Requests on this route whose response has not ended, plus open
    /// upgraded (WebSocket) connections.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight on this route, or until `deadline`
    /// has passed. Returns how many were still open then (0 when drained);
    /// upgraded connections still open at the deadline are closed.
    pub async fn drain(&self, deadline: Duration) -> usize {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking, so a drop to zero in between wakes us.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                break;
            }
        }
        let open = self.in_flight();
        if open > 0 {
            tracing::debug!(app = %self.app, open, "drain deadline reached, closing tunnels");
        }
        self.closing.cancel();
        open
    }

    fn record(&self, status: StatusCode) {
        if let Some(stats) = self.stats.get() {
            stats.record(status);
        }
    }

    fn file_mount(&self, path: &str) -> Option<&FileMount> {
        [&self.static_files, &self.media_files]
            .into_iter()
            .flatten()
            .find(|m| path.starts_with(&m.prefix))
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("app", &self.app)
            .field("backend", &self.backend)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// Counts one request (or tunnel) on a route for as long as it lives.
struct InFlight(Arc<Route>);

impl InFlight {
    fn new(route: Arc<Route>) -> Self {
        route.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(route)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A response body that releases its in-flight guard when it ends (or is
/// dropped, when the client goes away).
struct Tracked<B> {
    inner: B,
    guard: Option<InFlight>,
}

impl<B> hyper::body::Body for Tracked<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn tracked<B>(response: Response<B>, guard: InFlight) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    response.map(|inner| {
        Body::new(Tracked {
            inner,
            guard: Some(guard),
        })
    })
}

/// Request counts of one app, as counted by the proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppStats {
    pub requests: u64,
    pub status_1xx: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
}

#[derive(Default)]
struct StatsCounters {
    requests: AtomicU64,
    /// 1xx..5xx.
    by_class: [AtomicU64; 5],
}

impl StatsCounters {
    fn record(&self, status: StatusCode) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status.as_u16() / 100);
        if let Some(counter) = class.checked_sub(1).and_then(|i| self.by_class.get(i)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self) -> AppStats {
        let class = |i: usize| self.by_class[i].load(Ordering::Relaxed);
        AppStats {
            requests: self.requests.load(Ordering::Relaxed),
            status_1xx: class(0),
            status_2xx: class(1),
            status_3xx: class(2),
            status_4xx: class(3),
            status_5xx: class(4),
        }
    }
}

type HostMap = HashMap<String, Arc<Route>>;

/// Host name → route. Cheap to clone; all clones share one table.
#[derive(Clone, Default)]
pub struct RouteTable {
    inner: Arc<TableInner>,
}

#[derive(Default)]
struct TableInner {
    /// Read lock-free on every request.
    hosts: ArcSwap<HostMap>,
    /// Serialises writers; holds each app's counters, which outlive releases.
    writer: Mutex<HashMap<String, Arc<StatsCounters>>>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Atomically points every host in `hosts` at `route`. `hosts` is the
    /// app's full host list: hosts of the same app that are not in it stop
    /// being served. Returns the distinct previous routes that the table no
    /// longer references, for the caller to drain.
    pub fn set(&self, hosts: &[String], route: Arc<Route>) -> Vec<Arc<Route>> {
        let mut registry = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let counters = registry.entry(route.app.clone()).or_default().clone();
        // A route set twice keeps the counters it got first (same app).
        let _ = route.stats.set(counters);
        let old = self.inner.hosts.load_full();
        let mut new: HostMap = old
            .iter()
            .filter(|(_, r)| r.app != route.app)
            .map(|(h, r)| (h.clone(), r.clone()))
            .collect();
        for host in hosts {
            new.insert(normalize_host(host).into_owned(), route.clone());
        }
        let retired = retired_routes(&old, &new);
        self.inner.hosts.store(Arc::new(new));
        retired
    }

    /// Stops serving every host of `app`; returns its routes, for draining.
    pub fn remove_app(&self, app: &str) -> Vec<Arc<Route>> {
        let _registry = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.inner.hosts.load_full();
        let new: HostMap = old
            .iter()
            .filter(|(_, r)| r.app != app)
            .map(|(h, r)| (h.clone(), r.clone()))
            .collect();
        let retired = retired_routes(&old, &new);
        self.inner.hosts.store(Arc::new(new));
        retired
    }

    /// The route for `host`, which may carry a port and any case.
    pub fn get(&self, host: &str) -> Option<Arc<Route>> {
        self.inner.hosts.load().get(&*normalize_host(host)).cloned()
    }

    /// Every host and its route, sorted by host.
    pub fn snapshot(&self) -> Vec<(String, Arc<Route>)> {
        let mut all: Vec<_> = self
            .inner
            .hosts
            .load()
            .iter()
            .map(|(h, r)| (h.clone(), r.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Requests counted per app since the table was created, sorted by app.
    pub fn stats(&self) -> Vec<(String, AppStats)> {
        let registry = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = registry
            .iter()
            .map(|(app, c)| (app.clone(), c.get()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.snapshot()).finish()
    }
}

/// Distinct routes of `old` that `new` does not reference.
fn retired_routes(old: &HostMap, new: &HostMap) -> Vec<Arc<Route>> {
    let mut retired: Vec<Arc<Route>> = Vec::new();
    for route in old.values() {
        let still_used = new.values().any(|r| Arc::ptr_eq(r, route));
        if !still_used && !retired.iter().any(|r| Arc::ptr_eq(r, route)) {
            retired.push(route.clone());
        }
    }
    retired
}

/// Lowercase host without port or trailing dot; borrows when already clean.
fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.trim();
    let host = if host.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.split(':').next().unwrap_or(host)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// What [`serve`] needs besides the route table.
#[derive(Clone)]
pub struct ProxyOptions {
    /// Requests for this host go to `control` (any case, port ignored).
    pub control_host: Option<String>,
    /// The dashboard, API and git server; gets `ConnectInfo<SocketAddr>`.
    pub control: Option<axum::Router>,
    /// How long to wait for a backend's response headers before a 504.
    pub upstream_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            control_host: None,
            control: None,
            upstream_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves the public port until `shutdown` resolves, then stops accepting
/// and gives open connections a short grace period to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    table: RouteTable,
    opts: ProxyOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let proxy = Arc::new(Proxy::new(table, opts));
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req, remote).await) }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%remote, %err, "connection ended with an error");
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

/// Shared state of the serving connections.
struct Proxy {
    table: RouteTable,
    control_host: Option<String>,
    control: Option<axum::Router>,
    upstream_timeout: Duration,
    client: Client<HttpConnector, Incoming>,
}

impl Proxy {
    fn new(table: RouteTable, opts: ProxyOptions) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Proxy {
            table,
            control_host: opts.control_host.map(|h| normalize_host(&h).into_owned()),
            control: opts.control,
            upstream_timeout: opts.upstream_timeout,
            client,
        }
    }

    async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let (response, route) = self.route(req, remote).await;
        if let Some(route) = &route {
            route.record(response.status());
        }
        tracing::debug!(
            app = route.as_ref().map_or("-", |r| r.app()),
            %method,
            path = uri.path(),
            status = response.status().as_u16(),
            ms = start.elapsed().as_secs_f64() * 1000.0,
            "proxied"
        );
        response
    }

    async fn route(
        &self,
        mut req: Request<Incoming>,
        remote: SocketAddr,
    ) -> (Response<Body>, Option<Arc<Route>>) {
        let host = request_host(&req);
        if let (Some(control_host), Some(control)) = (&self.control_host, &self.control) {
            if normalize_host(&host) == control_host.as_str() {
                req.extensions_mut().insert(ConnectInfo(remote));
                let response = match control.clone().oneshot(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                return (response, None);
            }
        }
        let Some(route) = self.table.get(&host) else {
            return (error_page(StatusCode::NOT_FOUND, &host), None);
        };
        let response = match route.file_mount(req.uri().path()) {
            Some(mount) => serve_file(&route, mount, req).await,
            None => self.forward(&route, req, remote, &host).await,
        };
        (response, Some(route))
    }

    async fn forward(
        &self,
        route: &Arc<Route>,
        mut req: Request<Incoming>,
        remote: SocketAddr,
        host: &str,
    ) -> Response<Body> {
        let guard = InFlight::new(route.clone());
        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol);
        }
        add_forwarded(&mut parts.headers, remote);
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(route.authority.clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        parts.uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "bad request target\n"),
        };
        parts.version = Version::HTTP_11;
        parts.extensions = Default::default();
        let req = Request::from_parts(parts, body);

        let mut response = match tokio::time::timeout(
            self.upstream_timeout,
            self.client.request(req),
        )
        .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                tracing::debug!(app = %route.app, backend = %route.backend, err = ?err, "backend request failed");
                return error_page(StatusCode::BAD_GATEWAY, host);
            }
            Err(_) => {
                tracing::debug!(app = %route.app, backend = %route.backend, "backend timed out");
                return error_page(StatusCode::GATEWAY_TIMEOUT, host);
            }
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(tunnel(
                    client_upgrade,
                    backend_upgrade,
                    guard,
                    route.closing.clone(),
                ));
                // Connection/Upgrade are what a 101 is made of: keep them.
                return response.map(|_| Body::empty());
            }
        }
        strip_hop_by_hop(response.headers_mut());
        tracked(response, guard)
    }
}

/// Copies bytes both ways between an upgraded client connection and the
/// backend, until either side closes or the route's drain deadline passes.
async fn tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    _guard: InFlight,
    closing: CancellationToken,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(err) => {
            tracing::debug!(%err, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
            if let Err(err) = copied {
                tracing::debug!(%err, "tunnel ended with an error");
            }
        }
        () = closing.cancelled() => {
            tracing::debug!("tunnel closed by drain");
        }
    }
}

/// Serves a file of a static or media mount. Never falls through to the app.
async fn serve_file(
    route: &Arc<Route>,
    mount: &FileMount,
    req: Request<Incoming>,
) -> Response<Body> {
    let guard = InFlight::new(route.clone());
    let (mut parts, body) = req.into_parts();
    let rest = &parts.uri.path()[mount.prefix.len()..];
    let hashed = mount.immutable_hashed && is_hashed_name(rest);
    let target = match parts.uri.query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    };
    parts.uri = match Uri::try_from(target) {
        Ok(uri) => uri,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "bad request target\n"),
    };
    let req = Request::from_parts(parts, body);
    let mut response = match mount.dir.clone().oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        let policy = if hashed { CACHE_IMMUTABLE } else { CACHE_SHORT };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    tracked(response, guard)
}

/// Whether the file name has a dot-separated 12-hex-digit segment before its
/// extension, like `style.3f2a9c1b4e5d.css`.
fn is_hashed_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let segments: Vec<&str> = name.split('.').collect();
    segments.len() >= 3
        && segments[1..segments.len() - 1]
            .iter()
            .any(|s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The Host header, or the authority of an absolute-form target.
fn request_host<B>(req: &Request<B>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string()
}

/// The protocol a request asks to upgrade to, if it does so properly.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| upgrade.clone())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the client to X-Forwarded-For; sets X-Forwarded-Proto and
/// X-Forwarded-Host. The Host header itself is kept as the client sent it.
fn add_forwarded(headers: &mut HeaderMap, remote: SocketAddr) {
    let ip = remote.ip().to_string();
    let mut chain: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    chain.push(&ip);
    if let Ok(value) = HeaderValue::from_str(&chain.join(", ")) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// One of our own error pages, naming the host.
fn error_page(status: StatusCode, host: &str) -> Response<Body> {
    let template = match status {
        StatusCode::NOT_FOUND => PAGE_404,
        StatusCode::BAD_GATEWAY => PAGE_502,
        StatusCode::SERVICE_UNAVAILABLE => PAGE_503,
        _ => PAGE_504,
    };
    let host = normalize_host(host);
    let host = if host.is_empty() {
        "this address".into()
    } else {
        html_escape(&host)
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(template.replace("{{host}}", &host)))
        .expect("static response parts are valid")
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text))
        .expect("static response parts are valid")
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
