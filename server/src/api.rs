//! The control plane: git over smart HTTP, the hook's deploy endpoint, the
//! JSON API and the dashboard. Served on the admin listener and, through the
//! proxy, on `paas.<domain>`. Every route needs credentials: the admin token
//! (HTTP basic password or bearer) or a dashboard session cookie; the hook's
//! endpoint needs the per-start secret only hooks spawned by this daemon know.

use crate::ctx::Ctx;
use crate::deploy::{self, DeployRequest, Progress, Redeploy};
use crate::git::{self, CgiRequest, RESULT_FAILED, RESULT_OK};
use crate::http_error::{find_app, internal, ApiError};
use crate::layout::valid_var_name;
use crate::store::{App, Release};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

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
pub(crate) struct CreateApp {
    name: String,
}

/// `POST /api/apps` `{"name": "blog"}`: an empty app, as a first push makes.
pub(crate) async fn api_create_app(
    State(ctx): State<Arc<Ctx>>,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
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

pub(crate) async fn api_apps(
    State(ctx): State<Arc<Ctx>>,
    _headers: HeaderMap,
) -> Result<Json<Vec<AppView>>, ApiError> {
    let apps = ctx.store.apps().map_err(internal)?;
    let views = apps
        .iter()
        .map(|a| app_view(&ctx, a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(views))
}

/// `GET /api/system/df`: each app's disk use and the data dir's disk.
pub(crate) async fn api_system_df(
    State(ctx): State<Arc<Ctx>>,
    _headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report = crate::disk::disk_report(&ctx).await.map_err(internal)?;
    let mut v = serde_json::json!(report);
    for (row, app) in v["apps"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .zip(&report.apps)
    {
        row["total"] = serde_json::json!(app.total());
    }
    Ok(Json(v))
}

/// `POST /api/system/prune`: what paas made and no longer needs, removed now.
pub(crate) async fn api_system_prune(
    State(ctx): State<Arc<Ctx>>,
    _headers: HeaderMap,
) -> Json<crate::prune::Pruned> {
    Json(crate::prune::prune_all(&ctx).await)
}

pub(crate) async fn api_app(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    _headers: HeaderMap,
) -> Result<Json<AppView>, ApiError> {
    let app = find_app(&ctx, &name)?;
    Ok(Json(app_view(&ctx, &app)?))
}

pub(crate) async fn api_releases(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    _headers: HeaderMap,
) -> Result<Json<Vec<ReleaseView>>, ApiError> {
    let app = find_app(&ctx, &name)?;
    let rels = ctx.store.releases(&app.name).map_err(internal)?;
    Ok(Json(
        rels.iter().map(|r| ReleaseView::of(r, false)).collect(),
    ))
}

pub(crate) async fn api_release(
    State(ctx): State<Arc<Ctx>>,
    Path((name, version)): Path<(String, String)>,
    _headers: HeaderMap,
) -> Result<Json<ReleaseView>, ApiError> {
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

pub(crate) async fn api_config_get(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    _headers: HeaderMap,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    let app = find_app(&ctx, &name)?;
    Ok(Json(ctx.store.config_vars(&app).map_err(internal)?))
}

/// `{"KEY": "value", "OTHER": null}`: set and unset in one change. With a
/// live release the app rolls through the zero-downtime path with the new
/// config; when that release fails the change is undone.
pub(crate) async fn api_config_set(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    _headers: HeaderMap,
    Json(changes): Json<BTreeMap<String, Option<String>>>,
) -> Result<Response, ApiError> {
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
pub(crate) struct RollbackBody {
    /// The release to go back to (`3` or `"v3"`); default: the one before the live release.
    version: Option<serde_json::Value>,
    /// Also restore the pre-migrate snapshot taken after that release.
    #[serde(default)]
    restore_db: bool,
}

/// `POST /api/apps/{app}/rollback` `{"version": 3}`: a new release running
/// v3's image and config (no build, no migrations).
pub(crate) async fn api_rollback(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    _headers: HeaderMap,
    body: Option<Json<RollbackBody>>,
) -> Result<Response, ApiError> {
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
pub(crate) async fn api_restart(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    _headers: HeaderMap,
) -> Result<Response, ApiError> {
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

// ------------------------------------------------------- the hook's endpoint

#[derive(Deserialize)]
pub(crate) struct DeployQuery {
    app: String,
    rev: String,
    #[serde(rename = "ref")]
    _refname: Option<String>,
    /// The push's quarantine object directory (absent outside a push).
    objects: Option<String>,
}

/// Called by `paas hook pre-receive` with the pushed commit's id and the
/// quarantine directory its objects wait in; the code itself is read from
/// the repository, not sent. Answers with the deploy's progress, line by
/// line, then one result line (`paas-result: ok` or `paas-result: failed:
/// <reason>`). The deploy goes on to its end even when the pusher goes away.
pub(crate) async fn internal_deploy(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<DeployQuery>,
) -> Response {
    // The hook's secret was checked by the router's guard.
    if let Err(rule) = git::validate_app_name(&q.app) {
        return ApiError(StatusCode::BAD_REQUEST, rule).into_response();
    }
    let objects = match q
        .objects
        .as_deref()
        .map(|o| ctx.repos.object_dir(&q.app, o))
    {
        None => None,
        Some(Ok(dir)) => Some(dir),
        Some(Err(e)) => return ApiError(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let source = git::CommitSource {
        repo: ctx.repos.path(&q.app),
        rev: q.rev.clone(),
        objects,
    };
    let read = source.clone();
    let message = match tokio::task::spawn_blocking(move || read.summary()).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return ApiError(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        Err(e) => return internal(e).into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let req = DeployRequest {
        app: q.app.clone(),
        message,
        source,
    };
    let task_ctx = ctx.clone();
    tokio::spawn(async move {
        let app = req.app.clone();
        let result = deploy::deploy(&task_ctx, req, Progress::new(Some(tx.clone()))).await;
        // Each push leaves an image (and a failed one, maybe more): prune
        // what paas made and no longer needs, once the deploy let go.
        crate::prune::spawn_after_deploy(task_ctx.clone(), app);
        // The deploy's own output already said where the release is live.
        let last = match result {
            Ok(_) => format!("{RESULT_OK}\n"),
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
pub(crate) fn split_git_path(path: &str) -> Option<(&str, &str)> {
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

pub(crate) async fn git_or_404(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some((repo, rest)) = split_git_path(&path) else {
        return ApiError(
            StatusCode::NOT_FOUND,
            format!("nothing at {path}: git remotes look like http://HOST/<app>.git"),
        )
        .into_response();
    };
    let (repo, rest) = (repo.to_string(), rest.to_string());
    // The router's guard has checked the token.
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
