//! The control plane: git over smart HTTP, the hook's deploy endpoint, the
//! JSON API and the dashboard. Served on the admin listener and, through the
//! proxy, on `paas.<domain>`. Every route needs credentials: the admin token
//! (HTTP basic password or bearer) or a dashboard session cookie; the hook's
//! endpoint needs the per-start secret only hooks spawned by this daemon know.

use crate::auth::constant_time_eq;
use crate::deploy::{self, DeployRequest, Progress, Redeploy};
use crate::git::{self, CgiRequest, RESULT_FAILED, RESULT_OK};
use crate::server::Ctx;
use crate::store::{App, Release};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest pushed tree paas accepts (the `git archive` of one commit).
const MAX_PUSH_BYTES: usize = 1 << 30;

/// What guards a route, for the auth matrix test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// JSON API: a token in `Authorization` or a session, else 401; when it
    /// changes state on a session alone it also needs `X-CSRF-Token`, else 403.
    Api,
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
/// revoked credential. Git's routes live in the fallback ([`git_or_404`]).
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
    ("GET", "/api/apps/{app}/domains", Guard::Api),
    ("POST", "/api/apps/{app}/domains", Guard::Api),
    ("DELETE", "/api/apps/{app}/domains/{domain}", Guard::Api),
    ("GET", "/api/apps/{app}/ps", Guard::Api),
    ("POST", "/api/apps/{app}/run", Guard::Api),
    ("GET", "/api/apps/{app}/run/tty", Guard::Api),
    ("GET", "/api/apps/{app}/logs", Guard::Api),
    ("GET", "/{app}.git/info/refs", Guard::Git),
    ("POST", "/{app}.git/git-upload-pack", Guard::Git),
    ("POST", "/{app}.git/git-receive-pack", Guard::Git),
];

/// The whole control-plane router.
pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/internal/deploy", post(internal_deploy))
        .route("/api/apps", get(api_apps).post(api_create_app))
        .route(
            "/api/apps/{app}",
            get(api_app).delete(crate::destroy::api_destroy),
        )
        .route("/api/apps/{app}/releases", get(api_releases))
        .route("/api/apps/{app}/releases/{version}", get(api_release))
        .route(
            "/api/apps/{app}/config",
            get(api_config_get).patch(api_config_set),
        )
        .route("/api/apps/{app}/rollback", post(api_rollback))
        .route("/api/apps/{app}/restart", post(api_restart))
        .merge(crate::tokens::routes())
        .merge(crate::dashboard::routes())
        .merge(crate::data::routes())
        .merge(crate::domains::routes())
        .merge(crate::run::routes())
        .fallback(git_or_404)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .with_state(ctx)
}

/// The credential in the request's `Authorization` header (bearer or basic
/// password): the admin token or a live API token.
pub fn header_credential(ctx: &Ctx, headers: &HeaderMap) -> Option<crate::tokens::Credential> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    crate::auth::presented_secret(auth).and_then(|s| crate::tokens::check_secret(ctx, &s))
}

/// Is this request carrying the admin token, an API token or a live
/// dashboard session?
pub fn authorized(ctx: &Ctx, headers: &HeaderMap) -> bool {
    header_credential(ctx, headers).is_some()
        || crate::dashboard::session_cookie(headers).is_some_and(|id| ctx.sessions.check(&id))
}

/// The gate in front of every handler, so no handler can forget it (and no
/// body or query is parsed for a stranger):
/// - `/api/…` and `/metrics` need a token in `Authorization` or a live
///   dashboard session, else 401;
/// - a state-changing `/api/…` request that rides on the session alone (no
///   token) must carry the session's CSRF token in `X-CSRF-Token`, else 403:
///   a cookie alone is what a forged cross-site request has;
/// - `/internal/…` needs the per-start hook secret, else 401.
///
/// Dashboard pages redirect to /login themselves; git checks its own
/// basic auth (it answers git's way).
async fn guard(
    State(ctx): State<Arc<Ctx>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let headers = req.headers();
    if path.starts_with("/internal/") {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), ctx.hook.secret.as_bytes()) {
            return unauthorized().into_response();
        }
    } else if (path.starts_with("/api/") || path == "/api" || path == "/metrics")
        && header_credential(&ctx, headers).is_none()
    {
        let Some(id) =
            crate::dashboard::session_cookie(headers).filter(|id| ctx.sessions.check(id))
        else {
            return unauthorized().into_response();
        };
        let safe = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        );
        let presented = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !safe && !ctx.sessions.check_csrf(&id, presented) {
            return ApiError(
                StatusCode::FORBIDDEN,
                "this request lacks the session's CSRF token: send it in the X-CSRF-Token header (reload the dashboard page for a fresh one)".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// A JSON or plain error with one sentence for the user.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"paas\""),
            );
        }
        r
    }
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "missing, wrong or revoked credentials: send the admin token or an API token as a bearer token or as the HTTP basic password".into(),
    )
}

/// `Ok` when the request is authorized, else the 401 that says what to send.
pub fn require(ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    if authorized(ctx, headers) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

pub(crate) fn find_app(ctx: &Ctx, name: &str) -> Result<App, ApiError> {
    match ctx.store.find_app(name) {
        Ok(Some(app)) => Ok(app),
        Ok(None) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no app named {name:?}: `paas apps` lists them, and a first `git push` creates one"
            ),
        )),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// A server-side failure as a 500 with its message.
pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The public URL of an app.
pub fn app_url(ctx: &Ctx, app: &str) -> String {
    let host = ctx.config.app_host(app);
    match ctx.config.http.port() {
        80 => format!("http://{host}/"),
        port => format!("http://{host}:{port}/"),
    }
}

// ---------------------------------------------------------------- JSON API

#[derive(Serialize)]
pub struct AppView {
    pub name: String,
    pub url: String,
    pub live: Option<ReleaseView>,
    pub last: Option<ReleaseView>,
}

#[derive(Serialize, Clone)]
pub struct ReleaseView {
    pub version: i64,
    pub commit: String,
    pub status: String,
    pub image: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub duration_secs: Option<i64>,
    pub timings: Vec<(String, u64)>,
    /// What made it: `deploy abc1234`, `rollback to v3`, `restart`, `config change: …`.
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

impl ReleaseView {
    pub fn of(r: &Release, with_log: bool) -> ReleaseView {
        ReleaseView {
            version: r.version,
            commit: r.commit_sha.clone(),
            status: r.status.as_str().to_string(),
            image: r.image.clone(),
            error: r.error.clone(),
            created_at: r.created_at,
            finished_at: r.finished_at,
            duration_secs: r.duration_secs(),
            timings: r.timings.clone(),
            description: r.description.clone(),
            log: with_log.then(|| r.log.clone()),
        }
    }
}

pub fn app_view(ctx: &Ctx, app: &App) -> Result<AppView, ApiError> {
    let live = ctx.store.live_release(&app.name).map_err(internal)?;
    let releases = ctx.store.releases(&app.name).map_err(internal)?;
    Ok(AppView {
        name: app.name.clone(),
        url: app_url(ctx, &app.name),
        live: live.as_ref().map(|r| ReleaseView::of(r, false)),
        last: releases.first().map(|r| ReleaseView::of(r, false)),
    })
}

#[derive(Deserialize)]
struct CreateApp {
    name: String,
}

/// `POST /api/apps` `{"name": "blog"}`: an empty app, as a first push makes.
async fn api_create_app(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require(&ctx, &headers)?;
    let Ok(CreateApp { name }) = serde_json::from_slice::<CreateApp>(&body) else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "send {\"name\": \"blog\"}".into(),
        ));
    };
    git::validate_app_name(&name)
        .map_err(|rule| ApiError(StatusCode::UNPROCESSABLE_ENTITY, rule))?;
    if ctx.store.find_app(&name).map_err(internal)?.is_some() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("an app named {name} exists already: pick another name, or push to it"),
        ));
    }
    ctx.store
        .create_app(&name, &crate::auth::random_token(40))
        .map_err(internal)?;
    ctx.repos.ensure(&name).await.map_err(internal)?;
    tracing::info!(app = %name, "app created");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "app": name,
            "url": app_url(&ctx, &name),
            "message": format!("{name} created; `git push` to it deploys it"),
        })),
    ))
}

async fn api_apps(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
) -> Result<Json<Vec<AppView>>, ApiError> {
    require(&ctx, &headers)?;
    let apps = ctx.store.apps().map_err(internal)?;
    let views = apps
        .iter()
        .map(|a| app_view(&ctx, a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(views))
}

async fn api_app(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<AppView>, ApiError> {
    require(&ctx, &headers)?;
    let app = find_app(&ctx, &name)?;
    Ok(Json(app_view(&ctx, &app)?))
}

async fn api_releases(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<ReleaseView>>, ApiError> {
    require(&ctx, &headers)?;
    let app = find_app(&ctx, &name)?;
    let rels = ctx.store.releases(&app.name).map_err(internal)?;
    Ok(Json(
        rels.iter().map(|r| ReleaseView::of(r, false)).collect(),
    ))
}

async fn api_release(
    State(ctx): State<Arc<Ctx>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<ReleaseView>, ApiError> {
    require(&ctx, &headers)?;
    let app = find_app(&ctx, &name)?;
    let v: i64 = version.trim_start_matches('v').parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{version:?} is not a release number like v3"),
        )
    })?;
    match ctx.store.release(&app.name, v).map_err(internal)? {
        Some(r) => Ok(Json(ReleaseView::of(&r, true))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{name} has no release v{v}: `paas releases` lists them"),
        )),
    }
}

async fn api_config_get(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    require(&ctx, &headers)?;
    let app = find_app(&ctx, &name)?;
    Ok(Json(ctx.store.config_vars(&app).map_err(internal)?))
}

/// `{"KEY": "value", "OTHER": null}`: set and unset in one change. With a
/// live release the app rolls through the zero-downtime path with the new
/// config; when that release fails the change is undone.
async fn api_config_set(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(changes): Json<BTreeMap<String, Option<String>>>,
) -> Result<Response, ApiError> {
    require(&ctx, &headers)?;
    let app = find_app(&ctx, &name)?;
    if changes.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "no config vars given: send {\"KEY\": \"value\"} to set, {\"KEY\": null} to unset"
                .into(),
        ));
    }
    for key in changes.keys() {
        if !valid_var_name(key) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("{key:?} is not a config var name: use letters, digits and _, not starting with a digit"),
            ));
        }
    }
    let before = ctx.store.config_vars(&app).map_err(internal)?;
    let keys: Vec<String> = changes.keys().cloned().collect();
    let changes: Vec<(String, Option<String>)> = changes.into_iter().collect();
    ctx.store
        .set_config_vars(&app, &changes)
        .map_err(internal)?;
    let has_live = ctx
        .store
        .live_release(&app.name)
        .map_err(internal)?
        .is_some();
    if !has_live {
        let config = ctx.store.config_vars(&app).map_err(internal)?;
        return Ok(Json(serde_json::json!({
            "config": config,
            "release": null,
            "message": format!("config saved; {name} has no live release, so it applies at the next deploy"),
        }))
        .into_response());
    }
    let outcome = run_redeploy(&ctx, &app.name, Redeploy::Config { keys }).await;
    if outcome.result.is_err() {
        // Undo: the live release still runs the old config.
        let undo: Vec<(String, Option<String>)> = changes
            .iter()
            .map(|(k, _)| (k.clone(), before.get(k).cloned()))
            .collect();
        ctx.store.set_config_vars(&app, &undo).map_err(internal)?;
    }
    let config = ctx.store.config_vars(&app).map_err(internal)?;
    Ok(outcome.response(
        serde_json::json!({ "config": config }),
        |rel| format!("config saved; v{} is live with it", rel.version),
        "the config change was undone and the running release was not touched",
    ))
}

#[derive(Deserialize, Default)]
struct RollbackBody {
    /// The release to go back to (`3` or `"v3"`); default: the one before the live release.
    version: Option<serde_json::Value>,
    /// Also restore the pre-migrate snapshot taken after that release.
    #[serde(default)]
    restore_db: bool,
}

/// `POST /api/apps/{app}/rollback` `{"version": 3}`: a new release running
/// v3's image and config (no build, no migrations).
async fn api_rollback(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Option<Json<RollbackBody>>,
) -> Result<Response, ApiError> {
    require(&ctx, &headers)?;
    let app = find_app(&ctx, &name)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let to = match body.version {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim_start_matches('v').parse().ok(),
        Some(_) => Some(-1),
    };
    if to.is_some_and(|v| v < 1) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the version to roll back to is a release number like 3 or \"v3\": `paas releases` lists them".into(),
        ));
    }
    let restore_db = body.restore_db;
    let outcome = run_redeploy(&ctx, &app.name, Redeploy::Rollback { to, restore_db }).await;
    Ok(outcome.response(
        serde_json::json!({}),
        |rel| format!("{}: v{} is live", rel.description, rel.version),
        "the running release was not touched",
    ))
}

/// `POST /api/apps/{app}/restart`: new containers of the live release, zero downtime.
async fn api_restart(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require(&ctx, &headers)?;
    let app = find_app(&ctx, &name)?;
    let outcome = run_redeploy(&ctx, &app.name, Redeploy::Restart).await;
    Ok(outcome.response(
        serde_json::json!({}),
        |rel| format!("restarted: v{} is live", rel.version),
        "the running release was not touched",
    ))
}

/// A build-less deploy's result and its progress lines.
pub(crate) struct Outcome {
    pub(crate) result: Result<crate::store::Release, deploy::DeployError>,
    pub(crate) log: String,
}

impl Outcome {
    /// 200 with the release, or 422 with the reason (the deploy's own
    /// sentence plus what happened to the running release).
    fn response(
        self,
        mut body: serde_json::Value,
        ok: impl FnOnce(&crate::store::Release) -> String,
        kept: &str,
    ) -> Response {
        let status = match &self.result {
            Ok(rel) => {
                body["release"] = serde_json::json!(ReleaseView::of(rel, false));
                body["message"] = serde_json::json!(ok(rel));
                StatusCode::OK
            }
            Err(e) => {
                body["error"] = serde_json::json!(e.sentence(kept));
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        body["log"] = serde_json::json!(self.log);
        (status, Json(body)).into_response()
    }
}

/// Run a build-less deploy in its own task (a client that goes away does
/// not cut it short) and collect its progress.
pub(crate) async fn run_redeploy(ctx: &Arc<Ctx>, app: &str, what: Redeploy) -> Outcome {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let task_ctx = ctx.clone();
    let app = app.to_string();
    let task = tokio::spawn(async move {
        deploy::redeploy(&task_ctx, &app, what, Progress::new(Some(tx))).await
    });
    let result = match task.await {
        Ok(Ok(rel)) => Ok(rel),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(deploy::DeployError::Failed(format!(
            "the deploy stopped unexpectedly ({e})"
        ))),
    };
    let mut log = String::new();
    while let Ok(line) = rx.try_recv() {
        log.push_str(&line);
    }
    Outcome { result, log }
}

/// A config var name: a letter or `_`, then letters, digits and `_`.
pub(crate) fn valid_var_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ------------------------------------------------------- the hook's endpoint

#[derive(Deserialize)]
struct DeployQuery {
    app: String,
    rev: String,
    #[serde(rename = "ref")]
    _refname: Option<String>,
    message: Option<String>,
}

/// Called by `paas hook pre-receive` with the `git archive` of the pushed
/// commit. Answers with the deploy's progress, line by line, then one result
/// line (`paas-result: ok` or `paas-result: failed: <reason>`). The deploy
/// goes on to its end even when the pusher goes away.
async fn internal_deploy(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<DeployQuery>,
    body: Body,
) -> Response {
    // The hook's secret was checked by `guard`, like every /internal/ route.
    if let Err(rule) = git::validate_app_name(&q.app) {
        return ApiError(StatusCode::BAD_REQUEST, rule).into_response();
    }
    let tar = match git::read_body_limited(body, MAX_PUSH_BYTES).await {
        Ok(t) => t,
        Err(e) => return ApiError(StatusCode::PAYLOAD_TOO_LARGE, e).into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let req = DeployRequest {
        app: q.app.clone(),
        rev: q.rev.clone(),
        message: q.message.clone().unwrap_or_default(),
        tar,
    };
    let task_ctx = ctx.clone();
    tokio::spawn(async move {
        let result = deploy::deploy(&task_ctx, req, Progress::new(Some(tx.clone()))).await;
        let last = match result {
            Ok(rel) => format!(
                "-----> {} v{} is live at {}\n{RESULT_OK}\n",
                rel.app,
                rel.version,
                app_url(&task_ctx, &rel.app)
            ),
            Err(e) => format!("{RESULT_FAILED}{}\n", e.to_string().replace('\n', " ")),
        };
        let _ = tx.send(last);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::io::Error>(bytes::Bytes::from(line)), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

// --------------------------------------------------------------------- git

/// `/<app>.git/<rest>` → (app, "/<rest>").
fn split_git_path(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/')?;
    let (repo, _) = path.split_once(".git/")?;
    if repo.contains('/') {
        return None;
    }
    Some((repo, &path[repo.len() + 4..]))
}

/// A pkt-line (git's framing): 4 hex digits of length, then the payload.
fn pkt_line(s: &str) -> String {
    format!("{:04x}{s}", s.len() + 4)
}

/// An error git shows its user as `remote error: …` while it reads refs.
fn git_refusal(service: &str, message: &str) -> Response {
    let body = format!(
        "{}0000{}",
        pkt_line(&format!("# service={service}\n")),
        pkt_line(&format!("ERR {message}"))
    );
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            format!("application/x-{service}-advertisement"),
        )
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::BAD_REQUEST.into_response())
}

async fn git_or_404(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some((repo, rest)) = split_git_path(&path) else {
        return ApiError(
            StatusCode::NOT_FOUND,
            format!("nothing at {path}: git remotes look like http://HOST/<app>.git"),
        )
        .into_response();
    };
    let (repo, rest) = (repo.to_string(), rest.to_string());
    if header_credential(&ctx, req.headers()).is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"paas\"")],
            "Authentication required: use the admin token or an API token as the password, e.g. git remote add paas http://paas:TOKEN@HOST/app.git\n",
        )
            .into_response();
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let service = if rest == "/git-receive-pack" || query.contains("service=git-receive-pack") {
        "git-receive-pack"
    } else {
        "git-upload-pack"
    };
    let pushing = service == "git-receive-pack";
    if let Err(rule) = git::validate_app_name(&repo) {
        return git_refusal(service, &rule);
    }
    match ctx.store.find_app(&repo) {
        Ok(Some(_)) => {}
        Ok(None) if pushing => {
            let secret = crate::auth::random_token(40);
            if let Err(e) = ctx.store.create_app(&repo, &secret) {
                // A concurrent first push may have created it.
                if !matches!(ctx.store.find_app(&repo), Ok(Some(_))) {
                    return git_refusal(service, &format!("cannot create app {repo}: {e}"));
                }
            } else {
                tracing::info!(app = %repo, "app created by first push");
            }
        }
        Ok(None) => {
            return git_refusal(
                service,
                &format!("no app named {repo}: push to it first (git push paas main) to create it"),
            )
        }
        Err(e) => return git_refusal(service, &e.to_string()),
    }
    if let Err(e) = ctx.repos.ensure(&repo).await {
        return git_refusal(service, &format!("cannot prepare the repository: {e}"));
    }
    let remote_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let cgi = CgiRequest {
        app: repo,
        path: rest,
        method: parts.method,
        query,
        headers: parts.headers,
        remote_addr,
        body,
    };
    match git::serve_cgi(&ctx.repos, &ctx.hook, cgi).await {
        Ok(r) => r,
        Err(e) => internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_paths_split() {
        assert_eq!(
            split_git_path("/blog.git/info/refs"),
            Some(("blog", "/info/refs"))
        );
        assert_eq!(
            split_git_path("/blog.git/git-receive-pack"),
            Some(("blog", "/git-receive-pack"))
        );
        assert_eq!(split_git_path("/a/b.git/info/refs"), None);
        assert_eq!(split_git_path("/apps/blog"), None);
    }

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
    fn pkt_lines_are_framed() {
        assert_eq!(pkt_line("ERR x"), "0009ERR x");
    }

    #[test]
    fn var_names() {
        assert!(valid_var_name("SECRET_KEY"));
        assert!(valid_var_name("_X1"));
        assert!(!valid_var_name("1X"));
        assert!(!valid_var_name("A-B"));
        assert!(!valid_var_name(""));
    }
}
