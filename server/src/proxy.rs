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
//! Requests whose Host is the control host (`paas.<domain>`) are the control
//! plane's (dashboard, API, git), and [`ControlAccess`] says what this
//! listener does with them: on plain HTTP they would carry tokens and
//! session cookies in clear, so there they are refused (or, once paas
//! speaks HTTPS, redirected to it); only a TLS listener serves them. A peer
//! on an app's network never reaches the control plane, on any listener.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
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
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Notify;

use crate::peers::AppNets;
use tokio_util::sync::CancellationToken;

mod files;
mod listener;
mod static_cache;
mod websocket;

pub use listener::{serve_router, BodyTimedOut, IdleTimeout, Limits};

const PAGE_404: &str = include_str!("../../web-ui/errors/404.html");
const PAGE_502: &str = include_str!("../../web-ui/errors/502.html");
const PAGE_503: &str = include_str!("../../web-ui/errors/503.html");
const PAGE_504: &str = include_str!("../../web-ui/errors/504.html");

/// Cache policy for file names that carry a content hash (Django's
/// `ManifestStaticFilesStorage`): the name changes whenever the content does.
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy for every other static or media file.
const CACHE_SHORT: &str = "public, max-age=60";

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
    /// When the first answer on this route was ready (a deploy reports how
    /// long after the swap that was).
    first_answer: OnceLock<Instant>,
}

/// A URL prefix served from a directory.
struct FileMount {
    /// Always starts and ends with `/`.
    prefix: String,
    /// Files are opened below it without following symlinks ([`files`]).
    root: PathBuf,
    /// Small files in memory: static mounts only (a release's static files
    /// never change; media files do).
    cache: Option<static_cache::StaticCache>,
    /// Whether hashed names get the immutable cache policy and `.br`/`.gz`
    /// variants are served (static, not media).
    immutable_hashed: bool,
}

impl FileMount {
    fn new(prefix: Option<String>, dir: Option<PathBuf>, immutable_hashed: bool) -> Option<Self> {
        let (prefix, root) = (prefix?, dir?);
        let mut prefix = prefix.trim().trim_matches('/').to_string();
        prefix.insert(0, '/');
        if prefix.len() > 1 {
            prefix.push('/');
        }
        let cache = immutable_hashed.then(|| static_cache::StaticCache::new(root.clone()));
        Some(FileMount {
            prefix,
            root,
            cache,
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
            first_answer: OnceLock::new(),
        }
    }

    /// The folder `/media/…` is served from, if any.
    pub fn media_root(&self) -> Option<&std::path::Path> {
        self.media_files.as_ref().map(|m| m.root.as_path())
    }

    /// When the first answer on this route was ready, if there was one yet.
    pub fn first_answer(&self) -> Option<Instant> {
        self.first_answer.get().copied()
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

    fn record(&self, status: StatusCode, elapsed: Duration) {
        let _ = self.first_answer.set(Instant::now());
        if let Some(stats) = self.stats.get() {
            stats.record(status, elapsed);
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
    /// Requests whose response head came within each of
    /// [`LATENCY_BUCKETS_MS`] (cumulative, Prometheus style).
    pub latency_le: [u64; LATENCY_BUCKETS_MS.len()],
    /// Sum of the latencies, in microseconds.
    pub latency_sum_us: u64,
}

/// Upper bounds (ms) of the latency histogram the proxy keeps per app.
pub const LATENCY_BUCKETS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

#[derive(Default)]
struct StatsCounters {
    requests: AtomicU64,
    /// 1xx..5xx.
    by_class: [AtomicU64; 5],
    latency_le: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_sum_us: AtomicU64,
}

impl StatsCounters {
    fn record(&self, status: StatusCode, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status.as_u16() / 100);
        if let Some(counter) = class.checked_sub(1).and_then(|i| self.by_class.get(i)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let ms = elapsed.as_millis() as u64;
        for (bound, counter) in LATENCY_BUCKETS_MS.iter().zip(&self.latency_le) {
            if ms <= *bound {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
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
            latency_le: std::array::from_fn(|i| self.latency_le[i].load(Ordering::Relaxed)),
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
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
    // Blanks before the port and the root's dot(s) go too, so a name
    // normalises to itself.
    let host = host.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// What a listener does with requests for the control host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlAccess {
    /// Hand them to the control router: for a listener that speaks TLS.
    Serve,
    /// Answer with a permanent redirect to this base (`https://paas.<domain>`,
    /// with a port when not 443), path and query kept: plain HTTP when the
    /// daemon speaks HTTPS.
    Redirect(String),
    /// Answer 421 with the sentence saying where the control plane is:
    /// plain HTTP while the daemon has no HTTPS.
    Refuse,
}

/// What [`serve`] needs besides the route table.
#[derive(Clone)]
pub struct ProxyOptions {
    /// Requests for this host are the control plane's (any case, port ignored).
    pub control_host: Option<String>,
    /// The dashboard, API and git server; gets `ConnectInfo<SocketAddr>`.
    pub control: Option<axum::Router>,
    /// Serve, redirect or refuse requests for the control host.
    pub control_access: ControlAccess,
    /// Peers on these networks (the apps') get 403 for the control host
    /// whatever `control_access` says; they still reach the apps' sites.
    pub app_nets: AppNets,
    /// How long to wait for a backend's response headers before a 504.
    pub upstream_timeout: Duration,
    /// Timeouts, the connection cap and the body buffer.
    pub limits: Limits,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            control_host: None,
            control: None,
            control_access: ControlAccess::Refuse,
            app_nets: AppNets::default(),
            upstream_timeout: Duration::from_secs(60),
            limits: Limits::default(),
        }
    }
}

/// The answer to a control-host request on plain HTTP before paas speaks HTTPS.
pub const CONTROL_REFUSED: &str = "The paas control plane is not served on the public port over plain HTTP, which would send your token in clear: use the admin address instead (paas serve --admin, 127.0.0.1:8300 by default), from your laptop through an SSH tunnel: ssh -N -L 8300:127.0.0.1:8300 root@YOUR-SERVER, then http://127.0.0.1:8300/\n";

/// The answer to a control-host request from an app's own network.
pub const CONTROL_FROM_APP: &str =
    "The paas control plane does not answer the apps' own networks.\n";

/// Serves the public port until `shutdown` resolves, then stops accepting
/// and gives open connections a short grace period to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    table: RouteTable,
    opts: ProxyOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = opts.limits;
    let proxy = Arc::new(Proxy::new(table, opts));
    let handle = move |req: Request<Incoming>, remote: SocketAddr| {
        let proxy = proxy.clone();
        async move { proxy.handle(req, remote).await }
    };
    listener::serve_with(listener, limits, None, handle, shutdown).await
}

/// Shared state of the serving connections.
struct Proxy {
    table: RouteTable,
    control_host: Option<String>,
    control: Option<axum::Router>,
    control_access: ControlAccess,
    app_nets: AppNets,
    upstream_timeout: Duration,
    limits: Limits,
    client: Client<HttpConnector, Upstream>,
}

impl Proxy {
    fn new(table: RouteTable, opts: ProxyOptions) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            // Below gunicorn's default keep-alive (2 s): reusing a connection
            // the backend is about to close would fail the request.
            .pool_idle_timeout(Duration::from_millis(1500))
            .build(connector);
        Proxy {
            table,
            control_host: opts.control_host.map(|h| normalize_host(&h).into_owned()),
            control: opts.control,
            control_access: opts.control_access,
            app_nets: opts.app_nets,
            upstream_timeout: opts.upstream_timeout,
            limits: opts.limits,
            client,
        }
    }

    async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let (response, route) = self.route(req, remote).await;
        if let Some(route) = &route {
            route.record(response.status(), start.elapsed());
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
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> (Response<Body>, Option<Arc<Route>>) {
        let host = request_host(&req);
        if let (Some(control_host), Some(control)) = (&self.control_host, &self.control) {
            if normalize_host(&host) == control_host.as_str() {
                let response = self.control(control, req, remote).await;
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

    /// A request for the control host: served, redirected or refused.
    async fn control(
        &self,
        control: &axum::Router,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<Body> {
        if self.app_nets.contains(remote.ip()) {
            return plain(StatusCode::FORBIDDEN, CONTROL_FROM_APP);
        }
        match &self.control_access {
            ControlAccess::Serve => {
                let idle = self.limits.body_idle_timeout;
                listener::call_router(control.clone(), req, remote, idle).await
            }
            ControlAccess::Redirect(base) => {
                let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
                Response::builder()
                    .status(StatusCode::PERMANENT_REDIRECT)
                    .header(header::LOCATION, format!("{base}{path}"))
                    .body(Body::empty())
                    .expect("a redirect's parts are valid")
            }
            ControlAccess::Refuse => plain(StatusCode::MISDIRECTED_REQUEST, CONTROL_REFUSED),
        }
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
        let websocket = upgrade
            .as_ref()
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"websocket"));

        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol);
        }
        add_forwarded(&mut parts.headers, remote);
        // Read a small body whole before the app sees the request, as nginx
        // does: a slow client then holds a proxy task, not an app worker.
        let body = match Upstream::read(body, &self.limits).await {
            Ok(body) => body,
            Err(err) => {
                tracing::debug!(app = %route.app, %err, "request body not received");
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body stopped arriving; send the request again.\n",
                );
            }
        };
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
                    websocket,
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
/// backend, until either side closes or the route's drain deadline passes
/// (a WebSocket then gets a close frame: [`websocket::tunnel`]).
async fn tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    _guard: InFlight,
    closing: CancellationToken,
    websocket: bool,
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
    if websocket {
        websocket::tunnel(client, backend, closing).await;
        return;
    }
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
    let rest = &req.uri().path()[mount.prefix.len()..];
    let hashed = mount.immutable_hashed && is_hashed_name(rest);
    let policy = if hashed { CACHE_IMMUTABLE } else { CACHE_SHORT };
    if let Some(cache) = &mount.cache {
        if let static_cache::Lookup::Hit(response) =
            cache.lookup(req.method(), rest, req.headers()).await
        {
            let mut response = response.map(Body::from);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
            return tracked(response, guard);
        }
    }
    let mut response = files::serve(
        &mount.root,
        rest,
        req.method(),
        req.headers(),
        mount.immutable_hashed,
    )
    .await;
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
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

/// Forwarding headers a client may send but only the edge may set: each is
/// removed before paas sets its own (a spoofed `X-Forwarded-Protocol: ssl`
/// would make gunicorn call a plain request secure).
const CLIENT_FORWARDING: [HeaderName; 8] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-protocol"),
];

/// The proxy is the edge: whatever forwarding headers the client sent are
/// dropped (as are header names with `_`, which WSGI would read as their
/// `-` twins); X-Forwarded-For is the peer address, X-Forwarded-Proto is
/// `http`, X-Forwarded-Host is the Host header, which is kept as sent.
fn add_forwarded(headers: &mut HeaderMap, remote: SocketAddr) {
    for name in &CLIENT_FORWARDING {
        headers.remove(name);
    }
    if headers.keys().any(|k| k.as_str().contains('_')) {
        let underscored: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().contains('_'))
            .cloned()
            .collect();
        for name in underscored {
            headers.remove(name);
        }
    }
    // An address fits in 45 bytes: format it on the stack, copy it once.
    let mut buf = [0u8; 48];
    let len = {
        use std::io::Write;
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cursor, "{}", remote.ip());
        cursor.position() as usize
    };
    if let Ok(value) = HeaderValue::from_bytes(&buf[..len]) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// A request body on its way to the app. Bodies up to
/// [`Limits::max_buffered_body`] are read whole first; larger ones go on as
/// they arrive, each piece within the body idle timeout.
enum Upstream {
    /// The whole body (no chunk at all for a bodiless request: no allocation).
    Whole(VecDeque<Bytes>),
    /// The chunks read before the body proved large, then the rest.
    Streaming {
        head: VecDeque<Bytes>,
        rest: IdleTimeout<Incoming>,
    },
}

impl Upstream {
    async fn read(mut body: Incoming, limits: &Limits) -> Result<Upstream, axum::BoxError> {
        use http_body_util::BodyExt;
        let mut chunks = VecDeque::new();
        if hyper::body::Body::is_end_stream(&body) {
            return Ok(Upstream::Whole(chunks));
        }
        let limit = limits.max_buffered_body as u64;
        let mut read = 0u64;
        while hyper::body::Body::size_hint(&body).lower() <= limit.saturating_sub(read) {
            let frame = tokio::time::timeout(limits.body_idle_timeout, body.frame())
                .await
                .map_err(|_| BodyTimedOut(limits.body_idle_timeout))?;
            match frame {
                None => return Ok(Upstream::Whole(chunks)),
                Some(frame) => {
                    // Trailers of a buffered body are dropped: rare, and
                    // gunicorn ignores them.
                    if let Ok(data) = frame?.into_data() {
                        read += data.len() as u64;
                        chunks.push_back(data);
                    }
                }
            }
        }
        Ok(Upstream::Streaming {
            head: chunks,
            rest: IdleTimeout::new(body, limits.body_idle_timeout),
        })
    }
}

impl hyper::body::Body for Upstream {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        match self.get_mut() {
            Upstream::Whole(chunks) => Poll::Ready(chunks.pop_front().map(|c| Ok(Frame::data(c)))),
            Upstream::Streaming { head, rest } => match head.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Upstream::Whole(chunks) => chunks.is_empty(),
            Upstream::Streaming { head, rest } => head.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let queued = |q: &VecDeque<Bytes>| q.iter().map(|c| c.len() as u64).sum::<u64>();
        match self {
            Upstream::Whole(chunks) => SizeHint::with_exact(queued(chunks)),
            Upstream::Streaming { head, rest } => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(queued(head) + rest.lower());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(queued(head) + upper);
                }
                hint
            }
        }
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

#[cfg(test)]
mod tests {
    //! Real sockets on 127.0.0.1: a proxy on an ephemeral port in front of
    //! small axum/hyper backends, driven by reqwest or raw TCP when the test
    //! needs bytes that a client library would normalise.

    use super::*;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicBool;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const WAIT: Duration = Duration::from_secs(5);

    async fn start_backend(router: axum::Router) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        addr
    }

    /// A backend answering `text` on every path.
    async fn start_text_backend(text: &'static str) -> SocketAddr {
        start_backend(axum::Router::new().fallback(move || async move { text })).await
    }

    async fn start_proxy(table: RouteTable, opts: ProxyOptions) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, table, opts, std::future::pending()));
        addr
    }

    fn route(app: &str, backend: SocketAddr) -> Arc<Route> {
        Arc::new(Route::new(app.into(), backend, None, None, None, None))
    }

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| h.to_string()).collect()
    }

    async fn get_host(proxy: SocketAddr, host: &str, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("http://{proxy}{path}"))
            .header(header::HOST, host)
            .send()
            .await
            .unwrap()
    }

    /// Sends `request` as is and returns the whole response (the request
    /// should say `Connection: close`).
    async fn raw(proxy: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn table_normalises_hosts_and_returns_retired_routes() {
        let table = RouteTable::new();
        let backend: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (a1, a2, b) = (
            route("a", backend),
            route("a", backend),
            route("b", backend),
        );
        assert!(table
            .set(&hosts(&["A.example.com", "www.a.test"]), a1.clone())
            .is_empty());
        assert!(table.set(&hosts(&["b.example.com"]), b.clone()).is_empty());
        assert_eq!(table.get("a.EXAMPLE.com:8080").unwrap().app(), "a");
        assert_eq!(table.get("a.example.com.").unwrap().app(), "a");
        assert!(table.get("nope.example.com").is_none());

        // The new list is the app's whole list: www.a.test is dropped.
        let retired = table.set(&hosts(&["a.example.com"]), a2.clone());
        assert_eq!(retired.len(), 1);
        assert!(Arc::ptr_eq(&retired[0], &a1));
        assert!(Arc::ptr_eq(&table.get("a.example.com").unwrap(), &a2));
        assert!(table.get("www.a.test").is_none());
        let snapshot: Vec<_> = table
            .snapshot()
            .into_iter()
            .map(|(h, r)| (h, r.app().to_string()))
            .collect();
        assert_eq!(
            snapshot,
            [
                ("a.example.com".into(), "a".into()),
                ("b.example.com".into(), "b".into())
            ]
        );

        let removed = table.remove_app("a");
        assert_eq!(removed.len(), 1);
        assert!(Arc::ptr_eq(&removed[0], &a2));
        assert!(table.get("a.example.com").is_none());
        assert!(table.get("b.example.com").is_some());
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        // Found by `props::fuzz_normalize_host`: a blank before the port or
        // a second dot stayed, so the name was not a fixed point.
        for host in [
            "b.example.com :80",
            "b.example.com..",
            "B.example.com\t:1",
            "b.example.com. ",
        ] {
            assert_eq!(normalize_host(host), "b.example.com", "{host:?}");
            assert_eq!(table.get(host).unwrap().app(), "b", "{host:?}");
        }
    }

    #[test]
    fn hashed_names_are_recognised() {
        assert!(is_hashed_name("css/style.3f2a9c1b4e5d.css"));
        assert!(is_hashed_name("admin/js/x.min.0123456789ab.js"));
        assert!(!is_hashed_name("style.css"));
        assert!(!is_hashed_name("3f2a9c1b4e5d.css"));
        assert!(!is_hashed_name("style.3f2a9c1b4e5.css"));
        assert!(!is_hashed_name("style.3f2a9c1b4e5g.css"));
    }

    #[tokio::test]
    async fn routes_by_host_ignoring_case_and_port_and_counts_requests() {
        let table = RouteTable::new();
        table.set(
            &hosts(&["app.example.com"]),
            route("app", start_text_backend("from app").await),
        );
        let proxy = start_proxy(table.clone(), ProxyOptions::default()).await;

        let response = get_host(proxy, "APP.Example.com:8080", "/").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "from app");

        let response = get_host(proxy, "nope.example.com", "/").await;
        assert_eq!(response.status(), 404);
        let page = response.text().await.unwrap();
        assert!(
            page.contains("No app is deployed at nope.example.com"),
            "{page}"
        );
        assert!(page.contains("git push paas main"));

        let response = get_host(proxy, "<b>x</b>.example.com", "/").await;
        assert!(!response.text().await.unwrap().contains("<b>x</b>"));

        let stats = table.stats();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].0, "app");
        assert_eq!(stats[0].1.requests, 1);
        assert_eq!(stats[0].1.status_2xx, 1);
    }

    #[tokio::test]
    async fn control_host_goes_to_the_control_router_with_connect_info() {
        let control = axum::Router::new().route(
            "/api",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("control sees {}", peer.ip())
            }),
        );
        let opts = ProxyOptions {
            control_host: Some("paas.example.com".into()),
            control: Some(control),
            control_access: ControlAccess::Serve,
            ..ProxyOptions::default()
        };
        let proxy = start_proxy(RouteTable::new(), opts.clone()).await;
        let response = get_host(proxy, "PAAS.example.com:80", "/api").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "control sees 127.0.0.1");

        // Peers on an app's network never reach it, whatever the mode.
        let app_nets = AppNets::default();
        app_nets.add(crate::peers::Subnet::parse("127.0.0.0/8"));
        let walled = ProxyOptions {
            app_nets,
            ..opts.clone()
        };
        let proxy = start_proxy(RouteTable::new(), walled).await;
        let response = get_host(proxy, "paas.example.com", "/api").await;
        assert_eq!(response.status(), 403);
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("apps' own networks"));
    }

    #[tokio::test]
    async fn control_host_on_plain_http_is_refused_or_redirected() {
        let control = axum::Router::new().fallback(|| async { "control" });
        let refuse = ProxyOptions {
            control_host: Some("paas.example.com".into()),
            control: Some(control),
            ..ProxyOptions::default()
        };
        assert_eq!(refuse.control_access, ControlAccess::Refuse);
        let proxy = start_proxy(RouteTable::new(), refuse.clone()).await;
        let response = get_host(proxy, "paas.example.com", "/api/apps").await;
        assert_eq!(response.status(), 421);
        let text = response.text().await.unwrap();
        assert!(text.contains("ssh -N -L 8300:127.0.0.1:8300"), "{text}");
        assert_ne!(text, "control", "the router was not asked");
        // Other hosts are the apps' as ever.
        let response = get_host(proxy, "nope.example.com", "/").await;
        assert_eq!(response.status(), 404);

        let redirect = ProxyOptions {
            control_access: ControlAccess::Redirect("https://paas.example.com".into()),
            ..refuse
        };
        let proxy = start_proxy(RouteTable::new(), redirect).await;
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("http://{proxy}/apps/blog?x=1"))
            .header(header::HOST, "paas.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 308);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://paas.example.com/apps/blog?x=1"
        );
    }

    #[tokio::test]
    async fn forwarding_headers_are_the_edges_own_host_is_kept_hop_by_hop_stripped() {
        let echo = axum::Router::new().fallback(|headers: HeaderMap, uri: Uri| async move {
            let h = |name: &str| {
                let values: Vec<_> = headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_string())
                    .collect();
                format!("{name}={}\n", values.join("|"))
            };
            [
                format!("uri={uri}\n"),
                h("host"),
                h("x-forwarded-for"),
                h("x-forwarded-proto"),
                h("x-forwarded-host"),
                h("x-hop"),
                h("x-kept"),
                h("x-real-ip"),
                h("forwarded"),
                h("x-forwarded-ssl"),
                h("x-forwarded-port"),
                h("x-forwarded-protocol"),
                h("x_forwarded_for"),
            ]
            .concat()
        });
        let table = RouteTable::new();
        table.set(
            &hosts(&["app.example.com"]),
            route("app", start_backend(echo).await),
        );
        let proxy = start_proxy(table, ProxyOptions::default()).await;

        let response = raw(
            proxy,
            "GET /path?q=1 HTTP/1.1\r\nHost: App.example.com:8080\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n\
             X-Real-IP: 10.0.0.3\r\nForwarded: for=10.0.0.4;proto=https\r\nX-Forwarded-Ssl: on\r\n\
             X-Forwarded-Port: 443\r\nX-Forwarded-Protocol: ssl\r\nX_Forwarded_For: 10.0.0.5\r\n\
             Connection: close, x-hop\r\nX-Hop: secret\r\nX-Kept: yes\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        for line in [
            "uri=/path?q=1\n",
            "host=App.example.com:8080\n",
            "x-forwarded-for=127.0.0.1\n",
            "x-forwarded-proto=http\n",
            "x-forwarded-host=App.example.com:8080\n",
            "x-hop=\n",
            "x-kept=yes\n",
            "x-real-ip=\n",
            "forwarded=\n",
            "x-forwarded-ssl=\n",
            "x-forwarded-port=\n",
            "x-forwarded-protocol=\n",
            "x_forwarded_for=\n",
        ] {
            assert!(response.contains(line), "missing {line:?} in {response}");
        }
    }

    #[tokio::test]
    async fn streams_the_response_body_without_buffering() {
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let release_rx = Arc::new(Mutex::new(Some(release_rx)));
        let backend = axum::Router::new().fallback(move || {
            let release_rx = release_rx.lock().unwrap().take();
            async move {
                let first = futures_util::stream::once(async {
                    Ok::<_, Infallible>(Bytes::from("first,"))
                });
                let last = futures_util::stream::once(async move {
                    if let Some(rx) = release_rx {
                        let _ = rx.await;
                    }
                    Ok::<_, Infallible>(Bytes::from("last"))
                });
                Body::from_stream(futures_util::StreamExt::chain(first, last))
            }
        });
        let table = RouteTable::new();
        let app = route("app", start_backend(backend).await);
        table.set(&hosts(&["app.example.com"]), app.clone());
        let proxy = start_proxy(table, ProxyOptions::default()).await;

        let mut response = get_host(proxy, "app.example.com", "/").await;
        assert_eq!(response.status(), 200);
        // The backend holds "last" back until we release it, so a buffering
        // proxy would time out here.
        let first = tokio::time::timeout(WAIT, response.chunk())
            .await
            .expect("first chunk");
        assert_eq!(first.unwrap().unwrap(), "first,");
        assert_eq!(app.in_flight(), 1, "a streaming response is in flight");
        release_tx.send(()).unwrap();
        let mut rest = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(rest, b"last");
        wait_for("the body guard to drop", || app.in_flight() == 0).await;
    }

    #[tokio::test]
    async fn backend_down_is_502_and_slow_backend_is_504() {
        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let slow = start_backend(axum::Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }))
        .await;
        let table = RouteTable::new();
        table.set(&hosts(&["down.example.com"]), route("down", closed));
        table.set(&hosts(&["slow.example.com"]), route("slow", slow));
        let opts = ProxyOptions {
            upstream_timeout: Duration::from_millis(300),
            ..ProxyOptions::default()
        };
        let proxy = start_proxy(table.clone(), opts).await;

        let response = get_host(proxy, "down.example.com", "/").await;
        assert_eq!(response.status(), 502);
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("down.example.com is not answering"));

        let response = get_host(proxy, "slow.example.com", "/").await;
        assert_eq!(response.status(), 504);
        assert!(response.text().await.unwrap().contains("took too long"));

        let stats: HashMap<_, _> = table.stats().into_iter().collect();
        assert_eq!(stats["down"].status_5xx, 1);
        assert_eq!(stats["slow"].status_5xx, 1);
    }

    /// A site with `static/` (hashed, plain, precompressed files), `media/`,
    /// and a secret file next to them that must never be served.
    fn site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("static/css")).unwrap();
        std::fs::create_dir_all(dir.path().join("media")).unwrap();
        std::fs::write(
            dir.path().join("static/css/style.3f2a9c1b4e5d.css"),
            "body{color:red}",
        )
        .unwrap();
        std::fs::write(dir.path().join("static/plain.css"), "p{}").unwrap();
        std::fs::write(dir.path().join("static/app.js"), "console.log(1)").unwrap();
        std::fs::write(dir.path().join("static/app.js.gz"), "pretend-gzip").unwrap();
        std::fs::write(dir.path().join("media/photo.0123456789ab.jpg"), "jpeg").unwrap();
        std::fs::write(dir.path().join("secret"), "TOP-SECRET").unwrap();
        // Links an app could plant: none of them is ever followed.
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("media/x")).unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("media/up")).unwrap();
        std::os::unix::fs::symlink("../secret", dir.path().join("static/evil.css")).unwrap();
        dir
    }

    async fn static_proxy(site: &tempfile::TempDir) -> (SocketAddr, Arc<Route>) {
        let backend = start_text_backend("from django").await;
        let app = Arc::new(Route::new(
            "app".into(),
            backend,
            Some("/static/".into()),
            Some(site.path().join("static")),
            Some("/media/".into()),
            Some(site.path().join("media")),
        ));
        let table = RouteTable::new();
        table.set(&hosts(&["app.example.com"]), app.clone());
        (start_proxy(table, ProxyOptions::default()).await, app)
    }

    #[tokio::test]
    async fn serves_static_files_with_cache_policy_and_304() {
        let site = site();
        let (proxy, _) = static_proxy(&site).await;

        let response = get_host(
            proxy,
            "app.example.com",
            "/static/css/style.3f2a9c1b4e5d.css",
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/css");
        assert_eq!(response.headers()[header::CACHE_CONTROL], CACHE_IMMUTABLE);
        let etag = response.headers()[header::ETAG].clone();
        assert_eq!(response.text().await.unwrap(), "body{color:red}");

        let response = reqwest::Client::new()
            .get(format!("http://{proxy}/static/css/style.3f2a9c1b4e5d.css"))
            .header(header::HOST, "app.example.com")
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 304);

        let response = get_host(proxy, "app.example.com", "/static/plain.css").await;
        assert_eq!(response.headers()[header::CACHE_CONTROL], CACHE_SHORT);

        let response = reqwest::Client::new()
            .get(format!("http://{proxy}/static/app.js"))
            .header(header::HOST, "app.example.com")
            .header(header::ACCEPT_ENCODING, "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(response.text().await.unwrap(), "pretend-gzip");

        // Media: hashed-looking names are still not immutable.
        let response = get_host(proxy, "app.example.com", "/media/photo.0123456789ab.jpg").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CACHE_CONTROL], CACHE_SHORT);

        // One byte range, and a 304 on Last-Modified.
        let response = reqwest::Client::new()
            .get(format!("http://{proxy}/media/photo.0123456789ab.jpg"))
            .header(header::HOST, "app.example.com")
            .header(header::RANGE, "bytes=1-2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206);
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 1-2/4");
        let modified = response.headers()[header::LAST_MODIFIED].clone();
        assert_eq!(response.text().await.unwrap(), "pe");
        let response = reqwest::Client::new()
            .get(format!("http://{proxy}/media/photo.0123456789ab.jpg"))
            .header(header::HOST, "app.example.com")
            .header(header::IF_MODIFIED_SINCE, modified)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 304);

        // A missing file is a 404 from the proxy, not a request to Django.
        let response = get_host(proxy, "app.example.com", "/static/missing.css").await;
        assert_eq!(response.status(), 404);
        assert_ne!(response.text().await.unwrap(), "from django");

        let response = get_host(proxy, "app.example.com", "/other").await;
        assert_eq!(response.text().await.unwrap(), "from django");
    }

    #[tokio::test]
    async fn path_traversal_and_planted_links_are_refused() {
        let site = site();
        let (proxy, _) = static_proxy(&site).await;
        for target in [
            "/static/../secret",
            "/static/%2e%2e/secret",
            "/static/..%2fsecret",
            "/static/css/../../secret",
            "/static/%2F..%2F..%2Fsecret",
            "/media/../secret",
            "/media/x",
            "/media/up/secret",
            "/static/evil.css",
        ] {
            let response = raw(
                proxy,
                &format!(
                    "GET {target} HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"
                ),
            )
            .await;
            assert!(response.starts_with("HTTP/1.1 404"), "{target}: {response}");
            assert!(!response.contains("TOP-SECRET"), "{target}: {response}");
        }
    }

    #[tokio::test]
    async fn swap_keeps_old_requests_sends_new_ones_to_new_backend_and_drains() {
        let release = Arc::new(Notify::new());
        let release_in_handler = release.clone();
        let old_backend = start_backend(
            axum::Router::new()
                .route(
                    "/slow",
                    get(move || {
                        let release = release_in_handler.clone();
                        async move {
                            release.notified().await;
                            "old, slow"
                        }
                    }),
                )
                .fallback(|| async { "old" }),
        )
        .await;
        let table = RouteTable::new();
        let old = route("app", old_backend);
        let app_hosts = hosts(&["app.example.com"]);
        table.set(&app_hosts, old.clone());
        let proxy = start_proxy(table.clone(), ProxyOptions::default()).await;

        let slow = tokio::spawn(async move {
            get_host(proxy, "app.example.com", "/slow")
                .await
                .text()
                .await
                .unwrap()
        });
        wait_for("the slow request to reach the old route", || {
            old.in_flight() == 1
        })
        .await;

        let new = route("app", start_text_backend("new").await);
        let retired = table.set(&app_hosts, new.clone());
        assert_eq!(retired.len(), 1);
        assert!(Arc::ptr_eq(&retired[0], &old));
        assert_eq!(
            get_host(proxy, "app.example.com", "/")
                .await
                .text()
                .await
                .unwrap(),
            "new"
        );

        let drained = Arc::new(AtomicBool::new(false));
        let drain = tokio::spawn({
            let (old, drained) = (old.clone(), drained.clone());
            async move {
                let open = old.drain(WAIT * 2).await;
                drained.store(true, Ordering::SeqCst);
                open
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !drained.load(Ordering::SeqCst),
            "drain returned while a request was open"
        );
        release.notify_one();
        assert_eq!(slow.await.unwrap(), "old, slow");
        assert_eq!(tokio::time::timeout(WAIT, drain).await.unwrap().unwrap(), 0);
        assert_eq!(new.in_flight(), 0);
        assert_eq!(
            table.stats()[0].1.status_2xx,
            2,
            "counters survive the swap"
        );
    }

    #[tokio::test]
    async fn drain_gives_up_at_the_deadline_and_reports_open_requests() {
        let backend = start_backend(axum::Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }))
        .await;
        let table = RouteTable::new();
        let app = route("app", backend);
        table.set(&hosts(&["app.example.com"]), app.clone());
        let proxy = start_proxy(table, ProxyOptions::default()).await;
        let _pending = tokio::spawn(async move { get_host(proxy, "app.example.com", "/").await });
        wait_for("the request to be in flight", || app.in_flight() == 1).await;
        assert_eq!(app.drain(Duration::from_millis(100)).await, 1);
    }

    /// A hyper backend that accepts `Upgrade: echo` and echoes the tunnel.
    async fn start_upgrade_echo_backend() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let service = hyper::service::service_fn(|mut req: Request<Incoming>| async move {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let upgraded = TokioIo::new(upgrade.await.unwrap());
                        let (mut reader, mut writer) = tokio::io::split(upgraded);
                        let _ = tokio::io::copy(&mut reader, &mut writer).await;
                    });
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header(header::UPGRADE, "echo")
                            .header(header::CONNECTION, "upgrade")
                            .body(http_body_util::Empty::<Bytes>::new())
                            .unwrap(),
                    )
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades(),
                );
            }
        });
        addr
    }

    #[tokio::test]
    async fn upgrade_is_tunnelled_and_closed_by_drain_deadline() {
        let table = RouteTable::new();
        let app = route("app", start_upgrade_echo_backend().await);
        table.set(&hosts(&["app.example.com"]), app.clone());
        let proxy = start_proxy(table, ProxyOptions::default()).await;

        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
                .await
                .unwrap()
                .unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("upgrade: echo"), "{head}");

        stream.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        tokio::time::timeout(WAIT, stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echoed, b"ping");
        assert_eq!(app.in_flight(), 1, "the tunnel counts as in flight");

        assert_eq!(app.drain(Duration::from_millis(100)).await, 1);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
            .await
            .expect("tunnel closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        wait_for("the tunnel guard to drop", || app.in_flight() == 0).await;
    }

    fn short_limits() -> ProxyOptions {
        ProxyOptions {
            limits: Limits {
                header_timeout: Duration::from_millis(300),
                body_idle_timeout: Duration::from_millis(300),
                max_connections: 8,
                max_buffered_body: 1 << 20,
            },
            ..ProxyOptions::default()
        }
    }

    /// Reads until the peer closes (or `limit` passes) and says how long it took.
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
        let start = Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "still open after {limit:?}");
        (start.elapsed(), String::from_utf8_lossy(&out).into_owned())
    }

    #[tokio::test]
    async fn half_sent_headers_and_idle_keep_alive_are_closed_by_the_header_timeout() {
        let proxy = start_proxy(RouteTable::new(), short_limits()).await;
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a")
            .await
            .unwrap();
        let (took, _) = closed_within(&mut stream, WAIT).await;
        assert!(took >= Duration::from_millis(250), "{took:?}");

        // A kept-alive connection that sends nothing more is closed too.
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: nope.example.com\r\n\r\n")
            .await
            .unwrap();
        let (_, response) = closed_within(&mut stream, WAIT).await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");

        // The same on a router served by the admin side.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let router = axum::Router::new().fallback(|| async { "admin" });
        tokio::spawn(serve_router(
            listener,
            router,
            short_limits().limits,
            AppNets::default(),
            std::future::pending(),
        ));
        let mut stream = TcpStream::connect(admin).await.unwrap();
        stream.write_all(b"POST /api HTTP/1.1\r\nHo").await.unwrap();
        closed_within(&mut stream, WAIT).await;
    }

    /// The admin listener resets a peer on an app's network before
    /// answering anything, and answers the others.
    #[tokio::test]
    async fn admin_listener_resets_peers_on_the_apps_networks() {
        let serve_admin = |refuse: AppNets| async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let router = axum::Router::new().fallback(|| async { "admin" });
            tokio::spawn(serve_router(
                listener,
                router,
                Limits::default(),
                refuse,
                std::future::pending(),
            ));
            addr
        };
        let ask = |addr: SocketAddr| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let _ = stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut got = Vec::new();
            let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut got))
                .await
                .expect("the listener closes or answers at once");
            (
                read.map_err(|e| e.kind()),
                String::from_utf8_lossy(&got).into_owned(),
            )
        };
        let open = serve_admin(AppNets::default()).await;
        let (read, text) = ask(open).await;
        assert!(read.is_ok() && text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("admin"), "{text}");

        let walled_nets = AppNets::default();
        walled_nets.add(crate::peers::Subnet::parse("127.0.0.0/8"));
        let walled = serve_admin(walled_nets).await;
        let (read, text) = ask(walled).await;
        // Reset: the read fails, or ends at once if the write saw it first.
        assert_eq!(text, "", "no byte of an answer ({read:?})");
        assert!(
            matches!(read, Ok(_) | Err(std::io::ErrorKind::ConnectionReset)),
            "{read:?}"
        );
    }

    /// A backend that counts the requests it got and answers with the body's length.
    async fn start_counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        // Counted when the head arrives, before the body is read.
        let router = axum::Router::new()
            .fallback(|body: Bytes| async move { format!("got {} bytes", body.len()) })
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(req)
                },
            ));
        let backend = start_backend(router).await;
        (backend, seen)
    }

    #[tokio::test]
    async fn a_slow_body_reaches_the_app_only_once_complete_and_a_stalled_one_is_cut() {
        let (backend, seen) = start_counting_backend().await;
        let table = RouteTable::new();
        table.set(&hosts(&["app.example.com"]), route("app", backend));
        let proxy = start_proxy(table, short_limits()).await;

        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(b"POST /up HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234")
            .await
            .unwrap();
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(seen.load(Ordering::SeqCst), 0, "the app saw half a body");
            stream.write_all(b"5").await.unwrap();
        }
        stream.write_all(b"789").await.unwrap();
        let (_, response) = closed_within(&mut stream, WAIT).await;
        assert!(response.ends_with("got 10 bytes"), "{response}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        // Chunked, and stalled past the body idle timeout: a 408, no request to the app.
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(b"POST /up HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            .await
            .unwrap();
        let (_, response) = closed_within(&mut stream, WAIT).await;
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("send the request again"), "{response}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn bodies_past_the_buffer_are_streamed_whole() {
        let (backend, _) = start_counting_backend().await;
        let table = RouteTable::new();
        table.set(&hosts(&["app.example.com"]), route("app", backend));
        let mut opts = short_limits();
        opts.limits.max_buffered_body = 1000;
        let proxy = start_proxy(table, opts).await;
        let client = reqwest::Client::new();
        for (len, chunked) in [(999, false), (5000, false), (5000, true)] {
            let body = vec![b'x'; len];
            let request = client
                .post(format!("http://{proxy}/up"))
                .header(header::HOST, "app.example.com");
            let request = if chunked {
                let chunks = body
                    .chunks(700)
                    .map(|c| Ok::<_, Infallible>(Bytes::copy_from_slice(c)));
                let chunks: Vec<_> = chunks.collect();
                request.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )))
            } else {
                request.body(body)
            };
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.text().await.unwrap(), format!("got {len} bytes"));
        }
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_for_a_free_slot() {
        let table = RouteTable::new();
        table.set(
            &hosts(&["app.example.com"]),
            route("app", start_text_backend("ok").await),
        );
        let mut opts = short_limits();
        opts.limits.max_connections = 1;
        opts.limits.header_timeout = Duration::from_secs(2);
        let proxy = start_proxy(table, opts).await;
        let mut first = TcpStream::connect(proxy).await.unwrap();
        first.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let second = tokio::spawn(raw(
            proxy,
            "GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "a second connection was served past the cap"
        );
        drop(first);
        let response = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    /// Not a test: the proxy under load for `bench/proxy.sh`, configured by
    /// PAAS_BENCH_LISTEN, PAAS_BENCH_BACKEND and PAAS_BENCH_STATIC (a dir
    /// served at /static/). Hosts 127.0.0.1 and localhost route to the backend.
    #[test]
    #[ignore = "benchmark server, run by bench/proxy.sh"]
    fn bench_server() {
        let var = |name: &str| std::env::var(name).ok();
        let (Some(listen), Some(backend)) = (var("PAAS_BENCH_LISTEN"), var("PAAS_BENCH_BACKEND"))
        else {
            eprintln!("set PAAS_BENCH_LISTEN and PAAS_BENCH_BACKEND");
            return;
        };
        let static_dir = var("PAAS_BENCH_STATIC").map(PathBuf::from);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let route = Route::new(
                "bench".into(),
                backend.parse().unwrap(),
                static_dir.as_ref().map(|_| "/static/".to_string()),
                static_dir,
                None,
                None,
            );
            let table = RouteTable::new();
            table.set(&hosts(&["127.0.0.1", "localhost"]), Arc::new(route));
            let listener = TcpListener::bind(listen).await.unwrap();
            serve(
                listener,
                table,
                ProxyOptions::default(),
                std::future::pending(),
            )
            .await
            .unwrap();
        });
    }
}

#[cfg(test)]
mod props {
    //! Property tests of what the network sends: request paths below a
    //! static or media mount, and Host headers into the route table.

    use super::*;
    use crate::fuzz::{check, ensure};
    use hyper::Method;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    /// Request path segments that matter to a file lookup.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e%2e".to_string()),
            Just("%2E.".to_string()),
            Just("%2f".to_string()),
            Just("a%2F..".to_string()),
            Just("%00".to_string()),
            Just("%".to_string()),
            Just("%zz".to_string()),
            Just("%ff".to_string()),
            Just("%C3%A9".to_string()),
            Just("a%20b".to_string()),
            "[a-z0-9._~+@-]{1,8}",
            any::<String>(),
        ]
    }

    fn request_path() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 1..6).prop_map(|s| s.join("/"))
    }

    /// A decoded segment is a plain name when the path parser sees exactly
    /// that one ordinary name in it.
    fn plain_name(decoded: &str) -> bool {
        let comps: Vec<Component> = Path::new(decoded).components().collect();
        !decoded.contains('\0') && comps == [Component::Normal(decoded.as_ref())]
    }

    #[test]
    fn fuzz_relative_path() {
        check("relative_path", 256, request_path(), |rest| {
            let decoded: Vec<Option<String>> = rest
                .split('/')
                .map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .ok()
                        .map(|d| d.into_owned())
                })
                .collect();
            let all_plain = decoded.iter().all(|d| d.as_deref().is_some_and(plain_name));
            let got = files::relative_path(&rest);
            ensure(got.is_some() == all_plain, || {
                format!("{rest:?} gave {got:?}, but its segments are {decoded:?}")
            })?;
            let Some(rel) = got else { return Ok(()) };
            let comps: Vec<Component> = rel.components().collect();
            ensure(comps.len() == decoded.len(), || {
                format!("{rest:?} → {rel:?} lost or merged segments")
            })?;
            ensure(
                comps.iter().all(|c| matches!(c, Component::Normal(_))),
                || format!("{rest:?} → {rel:?} has a component that is not a name"),
            )?;
            let root = Path::new("/srv/site/static");
            let joined = root.join(&rel);
            ensure(joined.starts_with(root) && joined != root, || {
                format!("{rest:?} → {joined:?} leaves {root:?}")
            })?;
            // Encoding each name again finds the same file.
            let again: Vec<String> = comps
                .iter()
                .map(|c| {
                    percent_encoding::utf8_percent_encode(
                        &c.as_os_str().to_string_lossy(),
                        percent_encoding::NON_ALPHANUMERIC,
                    )
                    .to_string()
                })
                .collect();
            let again = files::relative_path(&again.join("/"));
            ensure(again.as_ref() == Some(&rel), || {
                format!("{rel:?} encoded again reads as {again:?}")
            })
        });
    }

    #[test]
    fn fuzz_static_plain_path() {
        check("static_plain_path", 256, request_path(), |rest| {
            // The cache keys its files by the raw path: it must name the very
            // file the file server would open.
            if static_cache::plain_path(&rest) {
                let rel = files::relative_path(&rest);
                ensure(rel.as_deref() == Some(Path::new(&rest)), || {
                    format!("the cache takes {rest:?} as it is, the file server as {rel:?}")
                })?;
            }
            Ok(())
        });
    }

    /// `static/` with files, a precompressed variant and planted links; a
    /// secret next to it that must never be served.
    fn static_site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("static/sub")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::write(d.join("outside/secret.txt"), "SECRET").unwrap();
        std::fs::write(d.join("static/a.css"), "A").unwrap();
        std::fs::write(d.join("static/a.css.gz"), "A-GZIP").unwrap();
        std::fs::write(d.join("static/sub/b.js"), "B").unwrap();
        std::os::unix::fs::symlink("../outside/secret.txt", d.join("static/link.css")).unwrap();
        std::os::unix::fs::symlink("../outside", d.join("static/dirlink")).unwrap();
        std::os::unix::fs::symlink(d.join("outside/secret.txt"), d.join("static/abs.css")).unwrap();
        std::os::unix::fs::symlink("b.js", d.join("static/sub/c.js")).unwrap();
        dir
    }

    /// The file a path names when it is reached through no link at all.
    fn model_file(root: &Path, rest: &str) -> Option<std::path::PathBuf> {
        let rel = files::relative_path(rest)?;
        let mut at = root.to_path_buf();
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            at.push(c);
            let meta = std::fs::symlink_metadata(&at).ok()?;
            let last = i + 1 == comps.len();
            if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
                return None;
            }
        }
        Some(at)
    }

    #[test]
    fn fuzz_static_lookup() {
        let site = static_site();
        let root = site.path().join("static");
        let cache = static_cache::StaticCache::new(root.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name = prop_oneof![
            Just("a.css"),
            Just("a.css.gz"),
            Just("sub"),
            Just("b.js"),
            Just("c.js"),
            Just("link.css"),
            Just("dirlink"),
            Just("secret.txt"),
            Just("abs.css"),
            Just("outside"),
            Just(".."),
            Just("."),
            Just(""),
            Just("%2e%2e"),
            Just("%61.css"),
        ];
        let input = (
            prop::collection::vec(name, 1..5),
            any::<bool>(),
            prop::sample::select(vec![Method::GET, Method::HEAD, Method::POST]),
        );
        check("static_lookup", 128, input, |(names, gzip, method)| {
            let rest = names.join("/");
            let mut headers = HeaderMap::new();
            if gzip {
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            }
            let (status, encoding, body, cached) = rt.block_on(async {
                let r = files::serve(&root, &rest, &method, &headers, true).await;
                let status = r.status();
                let encoding = r.headers().get(header::CONTENT_ENCODING).cloned();
                let body = axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let cached = match cache.lookup(&method, &rest, &headers).await {
                    static_cache::Lookup::Hit(r) => Some(r),
                    static_cache::Lookup::Pass => None,
                };
                (status, encoding, body, cached)
            });
            let expected = model_file(&root, &rest);
            let servable = expected.is_some() && method != Method::POST;
            ensure((status == StatusCode::OK) == servable, || {
                format!("{method} {rest:?} answered {status}; the file reached through no link is {expected:?}")
            })?;
            ensure(!body.windows(6).any(|w| w == b"SECRET"), || {
                format!("{method} {rest:?} served the secret outside the static folder")
            })?;
            if let (StatusCode::OK, Some(file)) = (status, &expected) {
                let gz = std::path::PathBuf::from(format!("{}.gz", file.display()));
                let want = match encoding {
                    Some(_) => std::fs::read(gz).unwrap(),
                    None => std::fs::read(file).unwrap(),
                };
                let want: &[u8] = if method == Method::HEAD { b"" } else { &want };
                ensure(body == want, || {
                    format!("{method} {rest:?} served {body:?}, not the file's {want:?}")
                })?;
            }
            if let Some(hit) = cached {
                ensure(
                    hit.status() == status
                        && hit.headers().get(header::CONTENT_ENCODING) == encoding.as_ref()
                        && *hit.body() == body,
                    || {
                        format!(
                            "{method} {rest:?}: the cache answered {} {:?}, the file server {status} {body:?}",
                            hit.status(),
                            hit.body()
                        )
                    },
                )?;
            }
            Ok(())
        });
    }

    /// DNS labels in any case.
    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?"
    }

    fn domain() -> impl Strategy<Value = String> {
        (prop::collection::vec(label(), 1..4), "[a-zA-Z]{2,6}")
            .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
    }

    /// What a client may send as Host for a name: any case, a port, the
    /// root's dot, stray blanks.
    fn host_header(name: String) -> impl Strategy<Value = String> {
        (
            prop::collection::vec(any::<bool>(), name.len()),
            prop::option::of(any::<u16>()),
            any::<bool>(),
            "[ \t]{0,2}",
            "[ \t]{0,2}",
        )
            .prop_map(move |(upper, port, dot, lead, trail)| {
                let mut h: String = name
                    .chars()
                    .zip(upper)
                    .map(|(c, u)| {
                        if u {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    })
                    .collect();
                if dot {
                    h.push('.');
                }
                if let Some(p) = port {
                    h.push_str(&format!(":{p}"));
                }
                format!("{lead}{h}{trail}")
            })
    }

    fn any_host() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ \t]*\\[?[a-zA-Z0-9:.\\]-]{0,20}[ \t.:]*",
            domain().prop_flat_map(host_header),
        ]
    }

    #[test]
    fn fuzz_normalize_host() {
        check("normalize_host", 512, any_host(), |host| {
            let once = normalize_host(&host).into_owned();
            let twice = normalize_host(&once).into_owned();
            ensure(once == twice, || {
                format!("{host:?} → {once:?} → {twice:?}: not a fixed point")
            })?;
            ensure(!once.bytes().any(|b| b.is_ascii_uppercase()), || {
                format!("{host:?} → {once:?} keeps upper case")
            })?;
            ensure(once.trim() == once && !once.ends_with('.'), || {
                format!("{host:?} → {once:?} keeps blanks or a trailing dot")
            })?;
            ensure(once.starts_with('[') || !once.contains(':'), || {
                format!("{host:?} → {once:?} keeps a port")
            })
        });
    }

    #[test]
    fn fuzz_route_table() {
        let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let input = (
            prop::collection::vec(domain(), 1..4),
            prop::collection::vec(domain(), 1..4),
        )
            .prop_flat_map(|(mine, theirs)| {
                // (who sent it: 0 a host of mine, 1 of theirs, 2 anything)
                let asks = prop::collection::vec(
                    prop_oneof![
                        prop::sample::select(mine.clone())
                            .prop_flat_map(host_header)
                            .prop_map(|h| (0u8, h)),
                        prop::sample::select(theirs.clone())
                            .prop_flat_map(host_header)
                            .prop_map(|h| (1u8, h)),
                        any_host().prop_map(|h| (2u8, h)),
                    ],
                    1..8,
                );
                (Just(mine), Just(theirs), asks)
            });
        check("route_table", 128, input, |(mine, theirs, asks)| {
            let table = RouteTable::new();
            let route =
                |app: &str| Arc::new(Route::new(app.into(), backend, None, None, None, None));
            table.set(&mine, route("mine"));
            // A name both apps list stays mine: set() gives it to one app only.
            let theirs: Vec<String> = theirs
                .into_iter()
                .filter(|t| !mine.iter().any(|m| m.eq_ignore_ascii_case(t)))
                .collect();
            table.set(&theirs, route("theirs"));
            let ours = |ask: &str| {
                let bare = ask
                    .trim()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('.')
                    .trim();
                mine.iter().any(|m| m.eq_ignore_ascii_case(bare))
            };
            for (from, ask) in asks {
                let got = table.get(&ask);
                let got = got.as_ref().map(|r| r.app());
                let want = match from {
                    0 => Some("mine"),
                    1 if ours(&ask) => Some("mine"),
                    1 => Some("theirs"),
                    // Anything else reaches an app only by one of its names.
                    _ => match got {
                        Some(app) => {
                            let names = if app == "mine" { &mine } else { &theirs };
                            let key = normalize_host(&ask);
                            ensure(names.iter().any(|n| n.eq_ignore_ascii_case(&key)), || {
                                format!("Host {ask:?} reached {app}, which does not have that name")
                            })?;
                            got
                        }
                        None => None,
                    },
                };
                ensure(got == want, || {
                    format!("Host {ask:?} went to {got:?}, not {want:?}")
                })?;
            }
            Ok(())
        });
    }

    #[test]
    fn fuzz_custom_domains_route() {
        // A domain `domains:add` accepts is routed for every way a browser
        // may write it in the Host header.
        let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let input =
            domain().prop_flat_map(|d| (Just(d.clone()), host_header(d.clone()), host_header(d)));
        check(
            "custom_domains_route",
            128,
            input,
            |(typed, as_typed, asked)| {
                let Ok(host) = crate::domains::validate(&as_typed, "paas.example.net") else {
                    return Ok(());
                };
                ensure(host == typed.to_ascii_lowercase(), || {
                    format!("{as_typed:?} was stored as {host:?}")
                })?;
                ensure(normalize_host(&host) == host, || {
                    format!("the stored {host:?} is not a route table key")
                })?;
                let table = RouteTable::new();
                table.set(
                    std::slice::from_ref(&host),
                    Arc::new(Route::new("app".into(), backend, None, None, None, None)),
                );
                ensure(table.get(&asked).is_some(), || {
                    format!("{host:?} was added, but Host {asked:?} does not reach it")
                })
            },
        );
    }
}
