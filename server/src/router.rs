//! Every route of the control plane, and the one guard in front of them.
//!
//! The guard looks up the matched route in [`ROUTES`] and enforces its
//! [`Guard`] before any handler runs, so no handler checks credentials
//! again and no body or query is parsed for a stranger. What it learned
//! travels to the handler as a [`Caller`] extension.

use crate::auth::Credential;
use crate::auth::{constant_time_eq, session_cookie};
use crate::ctx::Ctx;
use crate::http_error::{unauthorized, ApiError};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Largest dashboard form body the guard reads to find its CSRF token.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// What guards a route, for the auth matrix test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// JSON API: a token in `Authorization` or a session, else 401; when it
    /// changes state on a session alone it also needs `X-CSRF-Token`, else 403.
    Api,
    /// A token in `Authorization`, never a session, else 401: a browser page
    /// cannot add the header, so a forged cross-site WebSocket gets nowhere.
    Token,
    /// A dashboard page: a session, else a redirect to /login.
    Page,
    /// A dashboard form that changes state: a session and its CSRF token, else 403.
    Form,
    /// The login page itself: open to all.
    LoginPage,
    /// The login form: a token, rate-limited per address.
    Login,
    /// Git smart HTTP: a token as the basic-auth password, else 401.
    Git,
    /// The pre-receive hook's endpoint: the per-start hook secret, else 401.
    Hook,
}

/// Every route of the control plane (method, path, guard). A unit test
/// checks it against the routers' `.route(` calls, and the integration
/// test `auth_matrix` sends each one without, with a wrong and with a
/// revoked credential. Git's routes live in the fallback ([`crate::api::git_or_404`]).
pub const ROUTES: &[(&str, &str, Guard)] = &[
    ("POST", "/internal/deploy", Guard::Hook),
    ("GET", "/api/apps", Guard::Api),
    ("POST", "/api/apps", Guard::Api),
    ("GET", "/api/apps/{app}", Guard::Api),
    ("DELETE", "/api/apps/{app}", Guard::Api),
    ("GET", "/api/apps/{app}/releases", Guard::Api),
    ("GET", "/api/apps/{app}/releases/{version}", Guard::Api),
    ("GET", "/api/apps/{app}/config", Guard::Api),
    ("PATCH", "/api/apps/{app}/config", Guard::Api),
    ("POST", "/api/apps/{app}/rollback", Guard::Api),
    ("POST", "/api/apps/{app}/restart", Guard::Api),
    ("GET", "/api/system/df", Guard::Api),
    ("POST", "/api/system/prune", Guard::Api),
    ("GET", "/system/disk", Guard::Page),
    ("GET", "/api/tokens", Guard::Api),
    ("POST", "/api/tokens", Guard::Api),
    ("DELETE", "/api/tokens/{name}", Guard::Api),
    ("GET", "/", Guard::Page),
    ("GET", "/login", Guard::LoginPage),
    ("POST", "/login", Guard::Login),
    ("POST", "/logout", Guard::Form),
    ("GET", "/apps/{app}", Guard::Page),
    ("GET", "/apps/{app}/releases/{version}", Guard::Page),
    ("GET", "/status", Guard::Page),
    ("GET", "/apps/{app}/releases/{version}/log", Guard::Page),
    ("GET", "/apps/{app}/logs", Guard::Page),
    ("POST", "/apps/{app}/rollback", Guard::Form),
    ("POST", "/apps/{app}/restart", Guard::Form),
    ("POST", "/apps/{app}/backups", Guard::Form),
    ("GET", "/metrics", Guard::Api),
    ("GET", "/api/apps/{app}/postgres", Guard::Api),
    ("POST", "/api/apps/{app}/postgres", Guard::Api),
    ("DELETE", "/api/apps/{app}/postgres", Guard::Api),
    ("GET", "/api/apps/{app}/backups", Guard::Api),
    ("POST", "/api/apps/{app}/backups", Guard::Api),
    ("POST", "/api/apps/{app}/backups/{id}/restore", Guard::Api),
    ("GET", "/api/backups/offsite", Guard::Api),
    ("PUT", "/api/backups/offsite", Guard::Api),
    ("GET", "/api/backups/offsite/key", Guard::Api),
    ("POST", "/api/backups/drill", Guard::Api),
    ("POST", "/api/server/backup", Guard::Api),
    ("POST", "/api/server/restore", Guard::Api),
    ("GET", "/api/apps/{app}/domains", Guard::Api),
    ("POST", "/api/apps/{app}/domains", Guard::Api),
    ("DELETE", "/api/apps/{app}/domains/{domain}", Guard::Api),
    ("GET", "/api/apps/{app}/ps", Guard::Api),
    ("POST", "/api/apps/{app}/run", Guard::Api),
    ("GET", "/api/apps/{app}/run/tty", Guard::Token),
    ("GET", "/api/apps/{app}/logs", Guard::Api),
    ("GET", "/api/apps/{app}/cron", Guard::Api),
    ("GET", "/{app}.git/info/refs", Guard::Git),
    ("POST", "/{app}.git/git-upload-pack", Guard::Git),
    ("POST", "/{app}.git/git-receive-pack", Guard::Git),
];

pub use crate::ctx::{Caller, Session};

/// The whole control-plane router.
pub fn router(ctx: Arc<Ctx>) -> Router {
    use crate::{api, dashboard, data_api, domains, run, tokens};
    Router::new()
        .route("/internal/deploy", post(api::internal_deploy))
        .route("/api/apps", get(api::api_apps).post(api::api_create_app))
        .route(
            "/api/apps/{app}",
            get(api::api_app).delete(crate::destroy::api_destroy),
        )
        .route("/api/apps/{app}/releases", get(api::api_releases))
        .route("/api/apps/{app}/releases/{version}", get(api::api_release))
        .route(
            "/api/apps/{app}/config",
            get(api::api_config_get).patch(api::api_config_set),
        )
        .route("/api/apps/{app}/rollback", post(api::api_rollback))
        .route("/api/apps/{app}/restart", post(api::api_restart))
        .route("/api/system/df", get(api::api_system_df))
        .route("/api/system/prune", post(api::api_system_prune))
        .merge(tokens::routes())
        .merge(dashboard::routes())
        .merge(data_api::routes())
        .merge(domains::routes())
        .merge(run::routes())
        .merge(crate::cron::routes())
        .fallback(api::git_or_404)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .with_state(ctx)
}

/// What a deploy-only token may read besides git for its app: its app's
/// state, never its config, data, one-off commands, tokens or pages.
pub const DEPLOY_READS: &[&str] = &[
    "/api/apps/{app}",
    "/api/apps/{app}/releases",
    "/api/apps/{app}/releases/{version}",
    "/api/apps/{app}/ps",
    "/api/apps/{app}/logs",
    "/api/apps/{app}/domains",
];

/// May a deploy-only token for `app` make this request? Git for its app
/// (push and fetch), and GETs of [`DEPLOY_READS`] for its app.
fn deploy_token_may(
    kind: Guard,
    method: &Method,
    matched: Option<&str>,
    path: &str,
    app: &str,
) -> bool {
    match kind {
        Guard::Git => crate::api::split_git_path(path).is_some_and(|(a, _)| a == app),
        Guard::Api => {
            matches!(*method, Method::GET | Method::HEAD)
                && matched.is_some_and(|m| DEPLOY_READS.contains(&m))
                && path.split('/').nth(3) == Some(app)
        }
        _ => false,
    }
}

/// The peer's address (unspecified when the server gave none, as in unit tests).
fn peer_ip(req: &Request) -> std::net::IpAddr {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The credential in the request's `Authorization` header (bearer or basic
/// password): the admin token or a live API token. A wrong secret counts
/// against the peer's address like a failed login; an address over the
/// limit is refused (429) before its secret is even checked.
fn header_credential(
    ctx: &Ctx,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
) -> Result<Option<Credential>, Box<Response>> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(secret) = crate::auth::presented_secret(auth) else {
        return Ok(None);
    };
    if !ctx.login_limiter.allowed(ip) {
        return Err(Box::new(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong tokens and failed logins from your address: wait 15 minutes, then use the admin token (admin.token in paas's data directory) or a live API token".into(),
        )
        .into_response()));
    }
    let found = crate::tokens::check_secret(ctx, &secret);
    if found.is_none() {
        ctx.login_limiter.failed(ip);
        tracing::warn!(%ip, "a wrong token was presented");
    }
    Ok(found)
}

fn live_session(ctx: &Ctx, headers: &HeaderMap) -> Option<Session> {
    let id = session_cookie(headers)?;
    let csrf = ctx.sessions.csrf(&id)?;
    Some(Session { id, csrf })
}

/// The guard of a request: from its matched route (HEAD as GET), or git's
/// for the fallback's `/<app>.git/…` paths; `None` for paths nothing serves.
fn guard_of(method: &Method, matched: Option<&str>, path: &str) -> Option<Guard> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    match matched {
        Some(m) => ROUTES
            .iter()
            .find(|(rm, rp, _)| *rp == m && *rm == method)
            .map(|(_, _, g)| *g),
        None => crate::api::split_git_path(path).map(|_| Guard::Git),
    }
}

fn refuse_csrf(what: &str) -> Response {
    ApiError(StatusCode::FORBIDDEN, what.into()).into_response()
}

/// The gate in front of every handler: see [`Guard`] for what each kind of
/// route needs. Answers 401 (API, git), a redirect to /login (pages), 403
/// (a state change without its CSRF token).
async fn guard(
    State(ctx): State<Arc<Ctx>>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let Some(kind) = guard_of(req.method(), matched.as_deref(), req.uri().path()) else {
        // Nothing serves this path (or not with this method): axum answers
        // 404/405 without running a handler.
        return next.run(req).await;
    };
    let ip = peer_ip(&req);
    let headers = req.headers();
    // The hook's secret is not a token: it is checked below, on its own.
    let credential = if kind == Guard::Hook {
        None
    } else {
        match header_credential(&ctx, headers, ip) {
            Ok(c) => c,
            Err(refused) => return *refused,
        }
    };
    // Pages and forms go by the session alone; where a token counts, a
    // deploy-only one reaches its own app's git and reads only.
    let token_counts = matches!(kind, Guard::Api | Guard::Token | Guard::Git);
    if let (true, Some(Credential::Deploy { name, app })) = (token_counts, &credential) {
        if !deploy_token_may(
            kind,
            req.method(),
            matched.as_deref(),
            req.uri().path(),
            app,
        ) {
            tracing::warn!(token = %name, %app, path = req.uri().path(), "a deploy-only token was refused");
            return ApiError(
                StatusCode::FORBIDDEN,
                format!("the token {name} may only deploy and read the app {app}: use the admin token, or a token made without --app, for this"),
            )
            .into_response();
        }
    }
    let session = live_session(&ctx, headers);
    match kind {
        Guard::Hook => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !constant_time_eq(presented.as_bytes(), ctx.hook.secret.as_bytes()) {
                return unauthorized().into_response();
            }
        }
        Guard::Api => {
            if credential.is_none() {
                let Some(s) = &session else {
                    return unauthorized().into_response();
                };
                let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
                let presented = headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !safe && !ctx.sessions.check_csrf(&s.id, presented) {
                    return refuse_csrf("this request lacks the session's CSRF token: send it in the X-CSRF-Token header (reload the dashboard page for a fresh one)");
                }
            }
        }
        Guard::Token => {
            if credential.is_none() {
                return ApiError(
                    StatusCode::UNAUTHORIZED,
                    "a terminal session needs a token in the Authorization header (the admin token or an API token), not a dashboard session".into(),
                )
                .into_response();
            }
        }
        Guard::Page => {
            if session.is_none() {
                return Redirect::to("/login").into_response();
            }
        }
        Guard::Form => {
            let Some(s) = &session else {
                return Redirect::to("/login").into_response();
            };
            // The form's CSRF field: read the (small) body, then hand it on.
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
                return (StatusCode::PAYLOAD_TOO_LARGE, "This form is too large.").into_response();
            };
            let presented = form_field(&bytes, "csrf").unwrap_or_default();
            if !ctx.sessions.check_csrf(&s.id, &presented) {
                return (
                    StatusCode::FORBIDDEN,
                    "This form is missing its CSRF token: reload the page and try again.",
                )
                    .into_response();
            }
            req = Request::from_parts(parts, Body::from(bytes));
        }
        Guard::LoginPage | Guard::Login => {}
        Guard::Git => {
            if credential.is_none() {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic realm=\"paas\"")],
                    "Authentication required: run `paas login http://HOST:8300` once (git then gets the token from paas, and remotes need none: git remote add paas http://HOST:8300/APP.git), or give the admin token or an API token as the password when git asks.\n",
                )
                    .into_response();
            }
        }
    }
    req.extensions_mut().insert(Caller {
        credential,
        session,
    });
    next.run(req).await
}

/// The value of `name` in a urlencoded form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route(` in the sources, as (METHOD, path).
    fn routes_in_sources() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("server/src");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            // Unit tests' own routers are not the product's.
            let mut rest = src.split("#[cfg(test)]").next().unwrap();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + 7..];
                // The call's text, up to its closing parenthesis.
                let mut depth = 1;
                let Some(end) = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map(|(i, _)| i)
                else {
                    continue;
                };
                let call = rest[..end].trim_start();
                // Only router calls: a path literal, then the method router.
                let (Some(route), Some(comma)) = (call.split('"').nth(1), call.find(',')) else {
                    continue;
                };
                if !call.starts_with('"') {
                    continue;
                }
                let methods = &call[comma..];
                for m in ["get", "post", "patch", "put", "delete"] {
                    let hit = methods
                        .match_indices(&format!("{m}("))
                        .any(|(j, _)| j == 0 || !methods.as_bytes()[j - 1].is_ascii_alphanumeric());
                    if hit {
                        found.push((m.to_uppercase(), route.to_string()));
                    }
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn every_route_is_in_the_auth_matrix_list() {
        let found = routes_in_sources();
        assert!(found.len() >= 20, "the source scan found {found:?}");
        let listed: Vec<(String, String)> = ROUTES
            .iter()
            .filter(|(_, _, g)| *g != Guard::Git)
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        for r in &found {
            assert!(
                listed.contains(r),
                "route {} {} is not in api::ROUTES: add it with its guard, so the auth matrix test checks it",
                r.0,
                r.1
            );
        }
        for r in &listed {
            assert!(
                found.contains(r),
                "api::ROUTES lists {r:?}, which no router serves"
            );
        }
    }

    #[test]
    fn form_fields_are_read_from_urlencoded_bodies() {
        assert_eq!(
            form_field(b"version=3&csrf=a%2Bb", "csrf").as_deref(),
            Some("a+b")
        );
        assert_eq!(form_field(b"version=3", "csrf"), None);
    }

    #[test]
    fn a_deploy_token_reaches_git_and_the_reads_of_its_own_app_only() {
        let get = Method::GET;
        let may = |kind, method: &Method, matched: Option<&str>, path: &str| {
            deploy_token_may(kind, method, matched, path, "blog")
        };
        assert!(may(
            Guard::Git,
            &Method::POST,
            None,
            "/blog.git/git-receive-pack"
        ));
        assert!(may(Guard::Git, &get, None, "/blog.git/info/refs"));
        assert!(!may(Guard::Git, &get, None, "/blog2.git/info/refs"));
        assert!(!may(Guard::Git, &get, None, "/shop.git/info/refs"));
        let own = Some("/api/apps/{app}/releases");
        assert!(may(Guard::Api, &get, own, "/api/apps/blog/releases"));
        assert!(may(
            Guard::Api,
            &Method::HEAD,
            own,
            "/api/apps/blog/releases"
        ));
        assert!(!may(Guard::Api, &get, own, "/api/apps/shop/releases"));
        assert!(!may(Guard::Api, &get, own, "/api/apps/blog%2f/releases"));
        let config = Some("/api/apps/{app}/config");
        assert!(!may(Guard::Api, &get, config, "/api/apps/blog/config"));
        assert!(!may(
            Guard::Api,
            &Method::POST,
            Some("/api/apps/{app}/restart"),
            "/api/apps/blog/restart"
        ));
        assert!(!may(Guard::Api, &get, Some("/api/apps"), "/api/apps"));
        assert!(!may(
            Guard::Token,
            &get,
            Some("/api/apps/{app}/run/tty"),
            "/api/apps/blog/run/tty"
        ));
        assert!(!may(Guard::Page, &get, Some("/apps/{app}"), "/apps/blog"));
        // Every read it is given is a real GET route of the table.
        for r in DEPLOY_READS {
            assert!(
                ROUTES
                    .iter()
                    .any(|(m, p, g)| *m == "GET" && p == r && *g == Guard::Api),
                "{r} is not a GET API route"
            );
        }
    }

    #[test]
    fn guards_come_from_the_matched_route() {
        assert_eq!(guard_of(&Method::HEAD, Some("/"), "/"), Some(Guard::Page));
        assert_eq!(
            guard_of(&Method::POST, Some("/login"), "/login"),
            Some(Guard::Login)
        );
        assert_eq!(
            guard_of(&Method::GET, None, "/blog.git/info/refs"),
            Some(Guard::Git)
        );
        assert_eq!(guard_of(&Method::GET, None, "/nothing"), None);
    }
}

#[cfg(test)]
mod props {
    //! Property tests: concrete request paths against [`ROUTES`], through
    //! axum's own matching, as the guard middleware sees them.

    use super::*;
    use crate::fuzz::{check, ensure};
    use axum::extract::MatchedPath;
    use axum::routing::MethodFilter;
    use proptest::prelude::*;
    use tower::ServiceExt;

    /// A router with every route of [`ROUTES`] (git's in the fallback, as
    /// in the product) whose middleware reports `guard_of` in `x-guard`.
    fn mirror() -> Router {
        let mut by_path: Vec<(&str, Vec<&str>)> = Vec::new();
        for (m, p, g) in ROUTES {
            if *g == Guard::Git {
                continue;
            }
            match by_path.iter_mut().find(|(q, _)| q == p) {
                Some((_, ms)) => ms.push(m),
                None => by_path.push((p, vec![m])),
            }
        }
        let mut router = Router::new();
        for (path, methods) in by_path {
            let mut mr = axum::routing::MethodRouter::new();
            for m in methods {
                let filter = match m {
                    "GET" => MethodFilter::GET,
                    "POST" => MethodFilter::POST,
                    "PATCH" => MethodFilter::PATCH,
                    "DELETE" => MethodFilter::DELETE,
                    "PUT" => MethodFilter::PUT,
                    other => panic!("ROUTES has a method {other} the mirror lacks"),
                };
                mr = mr.on(filter, || async { "route" });
            }
            router = router.route(path, mr);
        }
        router
            .fallback(|| async { "fallback" })
            .layer(axum::middleware::from_fn(
                |req: Request, next: axum::middleware::Next| async move {
                    let matched = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|m| m.as_str().to_string());
                    let g = guard_of(req.method(), matched.as_deref(), req.uri().path());
                    let mut res = next.run(req).await;
                    let v = format!("{g:?}");
                    res.headers_mut().insert(
                        "x-guard",
                        v.parse().expect("a guard name is a header value"),
                    );
                    res
                },
            ))
    }

    /// (body, x-guard) of a request through the mirror; None when the path
    /// is not a URI at all.
    fn send(
        rt: &tokio::runtime::Runtime,
        router: &Router,
        method: &str,
        path: &str,
    ) -> Option<(String, String)> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .ok()?;
        rt.block_on(async {
            let res = router.clone().oneshot(req).await.unwrap();
            let guard = res.headers()["x-guard"].to_str().unwrap().to_string();
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap();
            Some((String::from_utf8_lossy(&body).into_owned(), guard))
        })
    }

    /// A path segment a client may send in place of `{app}`, `{id}` …
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9._~-]{1,12}",
            Just(".".to_string()),
            Just("..".to_string()),
            Just("x.git".to_string()),
            any::<String>()
                .prop_filter("a value", |s| !s.is_empty())
                .prop_map(|s| percent_encoding::utf8_percent_encode(
                    &s,
                    percent_encoding::NON_ALPHANUMERIC
                )
                .to_string()),
        ]
    }

    #[test]
    fn fuzz_route_guards() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let router = mirror();
        let input = (
            prop::sample::select(ROUTES.to_vec()),
            prop::collection::vec(value(), 3),
            any::<bool>(),
        );
        check(
            "route_guards",
            256,
            input,
            |((method, pattern, guard), values, head)| {
                let mut values = values.into_iter();
                let path: String = pattern
                    .split('/')
                    .map(|seg| match (seg.find('{'), seg.find('}')) {
                        (Some(a), Some(b)) => {
                            format!("{}{}{}", &seg[..a], values.next().unwrap(), &seg[b + 1..])
                        }
                        _ => seg.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                let method = if head && method == "GET" {
                    "HEAD"
                } else {
                    method
                };
                let Some((body, got)) = send(&rt, &router, method, &path) else {
                    return Ok(());
                };
                let want = format!("{:?}", Some(guard));
                ensure(got == want, || {
                    format!("{method} {path} (route {pattern}) is guarded by {got}, not {want}")
                })?;
                let served_by = if guard == Guard::Git {
                    "fallback"
                } else {
                    "route"
                };
                ensure(body == served_by || method == "HEAD", || {
                    format!("{method} {path} (route {pattern}) reached the {body}")
                })
            },
        );
    }

    #[test]
    fn fuzz_every_served_path_has_a_guard() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let router = mirror();
        let word = prop_oneof![
            prop::sample::select(vec![
                "api",
                "apps",
                "blog",
                "releases",
                "3",
                "config",
                "tokens",
                "domains",
                "run",
                "tty",
                "login",
                "logout",
                "status",
                "metrics",
                "internal",
                "deploy",
                "x.git",
                ".git",
                "info",
                "refs",
                "git-receive-pack",
                "backups",
                "restore",
                "",
                ".",
                "..",
            ])
            .prop_map(str::to_string),
            value(),
        ];
        let input = (
            prop::collection::vec(word, 1..7),
            prop::sample::select(vec![
                "GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "OPTIONS",
            ]),
        );
        check("served_paths_guarded", 256, input, |(words, method)| {
            let path = format!("/{}", words.join("/"));
            let git = crate::api::split_git_path(&path);
            if let Some((repo, rest)) = git {
                ensure(
                    !repo.contains('/') && format!("/{repo}.git{rest}") == path,
                    || format!("{path} split as {repo:?} + {rest:?}"),
                )?;
            }
            let Some((body, got)) = send(&rt, &router, method, &path) else {
                return Ok(());
            };
            // The product's fallback serves git for exactly these paths.
            let served = body == "route" || (body == "fallback" && git.is_some());
            ensure(!served || got != "None", || {
                format!("{method} {path} reached a handler ({body}) with no guard")
            })?;
            ensure(
                body != "fallback" || git.is_none() || got == "Some(Git)",
                || format!("{method} {path} is git's, but its guard is {got}"),
            )
        });
    }
}
