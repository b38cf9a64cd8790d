//! The data routes of the API: `pg:*` and `backups*`. Handlers parse, call a
//! story ([`crate::postgres`], [`crate::backup`]) and answer; the router's
//! guard has already checked the credentials.

use crate::backup::{backup_app, backup_kind, backups_with_copies, offsite_target, restore};
use crate::ctx::Ctx;
use crate::docker::ContainerState;
use crate::http_error::confirmed;
use crate::http_error::find_app;
use crate::http_error::{ApiError, DataError};
use crate::layout::server_name;
use crate::offsite::{self, Target};
use crate::postgres::{no_database, pg_create, pg_database, pg_destroy};
use crate::store::App;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

// -------------------------------------------------------------------- API

/// The routes of this module, merged into the control-plane router.
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route(
            "/api/apps/{app}/postgres",
            get(api_pg_info).post(api_pg_create).delete(api_pg_destroy),
        )
        .route(
            "/api/apps/{app}/backups",
            get(api_backups).post(api_backup_create),
        )
        .route(
            "/api/apps/{app}/backups/{id}/restore",
            post(api_backup_restore),
        )
        .route(
            "/api/backups/offsite",
            get(api_offsite_show).put(api_offsite_set),
        )
        .route("/api/backups/offsite/key", get(api_offsite_key))
        .route("/api/backups/drill", post(api_drill))
        .route("/api/server/backup", post(api_server_backup))
        .route("/api/server/restore", post(api_server_restore))
}

fn restart_hint(app: &str) -> String {
    format!("restart or redeploy {app} (git push) for the change to DATABASE_URL to take effect")
}

type ApiResult = Result<(StatusCode, Json<serde_json::Value>), ApiError>;

async fn api_pg_info(
    State(ctx): State<Arc<Ctx>>,
    UrlPath(app): UrlPath<String>,
    _headers: HeaderMap,
) -> ApiResult {
    let app = find_app(&ctx, &app)?;
    let db = pg_database(&ctx.config.data_dir, &app.name)?.ok_or_else(|| no_database(&app.name))?;
    let server = ctx
        .docker
        .container_state(&server_name(&ctx.config.data_dir))
        .await
        .map_err(DataError::from)?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "app": app.name,
            "database": db.database,
            "role": db.role,
            "host": db.host,
            "port": db.port,
            "created_at": db.created_at,
            "server": server_name(&ctx.config.data_dir),
            "server_running": server == ContainerState::Running,
        })),
    ))
}

async fn api_pg_create(
    State(ctx): State<Arc<Ctx>>,
    UrlPath(app): UrlPath<String>,
    _headers: HeaderMap,
) -> ApiResult {
    let app = find_app(&ctx, &app)?;
    let before = ctx
        .store
        .config_vars(&app)
        .map_err(|e| DataError::internal(e.to_string()))?
        .get("DATABASE_URL")
        .cloned();
    let (db, created) = {
        let _turn = ctx.deployer.turn(&app.name).await;
        pg_create(&ctx, &app).await?
    };
    let live = ctx
        .store
        .live_release(&app.name)
        .map_err(|e| DataError::internal(e.to_string()))?;
    let mut went_live = None;
    if live.is_some() && before.as_deref() != Some(db.url().as_str()) {
        // The app moves now: rebuilt (the image may need a driver) and
        // migrated on the new database behind the health gate.
        match move_database(&ctx, &app, "PostgreSQL database created", before).await {
            Ok(v) => went_live = Some(v),
            Err(why) => {
                return Err(DataError::user(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "PostgreSQL database {} is ready, but {} did not go live on it, so DATABASE_URL was put back and the app keeps its old database: {why}",
                        db.database, app.name
                    ),
                )
                .into());
            }
        }
    }
    let message = if let Some(v) = went_live {
        format!(
            "PostgreSQL database {} created; v{v} of {} is live on it (migrated, without downtime). Data in the old database was not copied.",
            db.database, app.name
        )
    } else if created {
        format!(
            "PostgreSQL database {} created and DATABASE_URL set; {}.",
            db.database,
            restart_hint(&app.name)
        )
    } else {
        format!(
            "{} already has PostgreSQL database {}; DATABASE_URL is set to it.",
            app.name, db.database
        )
    };
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(serde_json::json!({
            "app": app.name,
            "database": db.database,
            "host": db.host,
            "port": db.port,
            "created": created,
            "release": went_live,
            "restart_needed": created && went_live.is_none(),
            "message": message,
        })),
    ))
}

/// Rebuilds a live app on its new DATABASE_URL (set by the caller) through
/// the push path; on failure puts `previous` back and returns why.
async fn move_database(
    ctx: &Ctx,
    app: &App,
    why: &str,
    previous: Option<String>,
) -> Result<i64, String> {
    match crate::deploy::rebuild(ctx, &app.name, why, crate::deploy::Progress::new(None)).await {
        Ok(rel) => Ok(rel.version),
        Err(e) => {
            let _ = ctx
                .store
                .set_config_vars(app, &[("DATABASE_URL".into(), previous)]);
            Err(e.to_string())
        }
    }
}

async fn api_pg_destroy(
    State(ctx): State<Arc<Ctx>>,
    UrlPath(app): UrlPath<String>,
    _headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let app = find_app(&ctx, &app)?;
    confirmed(&body, &app.name, "Dropping the database")?;
    let internal = |e: crate::store::StoreError| DataError::internal(e.to_string());
    let url = ctx
        .store
        .config_vars(&app)
        .map_err(internal)?
        .get("DATABASE_URL")
        .cloned();
    let ours = pg_database(&ctx.config.data_dir, &app.name)?.map(|db| db.url());
    let live = ctx.store.live_release(&app.name).map_err(internal)?;
    let mut went_live = None;
    if live.is_some() && url.is_some() && url == ours {
        // Off the database before it is dropped: a live site never points at
        // a database that is gone.
        ctx.store
            .set_config_vars(&app, &[("DATABASE_URL".into(), None)])
            .map_err(internal)?;
        match move_database(&ctx, &app, "PostgreSQL database dropped", url).await {
            Ok(v) => went_live = Some(v),
            Err(why) => {
                return Err(DataError::user(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "{} did not go live without its PostgreSQL database, so nothing was dropped: {why}",
                        app.name
                    ),
                )
                .into());
            }
        }
    }
    let db = {
        let _turn = ctx.deployer.turn(&app.name).await;
        pg_destroy(&ctx, &app).await?
    };
    let message = match went_live {
        Some(v) => format!(
            "PostgreSQL database {} dropped; v{v} of {} is live on SQLite again.",
            db.database, app.name
        ),
        None => format!(
            "PostgreSQL database {} dropped and DATABASE_URL unset; {} (the app falls back to SQLite).",
            db.database,
            restart_hint(&app.name)
        ),
    };
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "app": app.name,
            "dropped": db.database,
            "release": went_live,
            "restart_needed": went_live.is_none(),
            "message": message,
        })),
    ))
}

async fn api_backups(
    State(ctx): State<Arc<Ctx>>,
    UrlPath(app): UrlPath<String>,
    _headers: HeaderMap,
) -> Result<(StatusCode, HeaderMap, Json<serde_json::Value>), ApiError> {
    let app = find_app(&ctx, &app)?;
    let (list, problem) = backups_with_copies(&ctx, &app.name).await;
    let mut headers = HeaderMap::new();
    if let Some(p) = problem {
        tracing::error!(app = %app.name, "{p}");
        // The list stays a list (scripts read it); the problem rides along.
        if let Ok(v) = axum::http::HeaderValue::from_str(&p.replace(['\r', '\n'], " ")) {
            headers.insert("paas-offsite-error", v);
        }
    }
    Ok((StatusCode::OK, headers, Json(serde_json::json!(list))))
}

async fn api_backup_create(
    State(ctx): State<Arc<Ctx>>,
    UrlPath(app): UrlPath<String>,
    _headers: HeaderMap,
) -> ApiResult {
    let app = find_app(&ctx, &app)?;
    let m = {
        let _turn = ctx.deployer.turn(&app.name).await;
        backup_app(&ctx, &app, "manual").await?
    };
    Ok((StatusCode::CREATED, Json(serde_json::json!(m))))
}

async fn api_backup_restore(
    State(ctx): State<Arc<Ctx>>,
    UrlPath((app, id)): UrlPath<(String, String)>,
    _headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let app = find_app(&ctx, &app)?;
    confirmed(
        &body,
        &app.name,
        "Restoring a backup replaces the app's data and",
    )?;
    let m = {
        let _turn = ctx.deployer.turn(&app.name).await;
        restore(&ctx, &app, &id).await?
    };
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "app": app.name,
            "restored": m.id,
            "kind": m.kind,
            "message": format!("backup {} restored into {}.", m.id, app.name),
        })),
    ))
}

// ---------------------------------------------------------------- offsite

/// `PUT /api/backups/offsite`: what `paas backups:offsite:set` sends.
#[derive(serde::Deserialize)]
struct OffsiteSet {
    url: String,
    endpoint: String,
    #[serde(default)]
    region: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    /// The owner's passphrase (`PAAS_BACKUP_PASSPHRASE` on the client);
    /// without one paas keeps the one it has, or makes one.
    #[serde(default)]
    passphrase: Option<String>,
}

fn store_err(e: crate::store::StoreError) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn api_offsite_show(State(ctx): State<Arc<Ctx>>, _headers: HeaderMap) -> ApiResult {
    let body = match offsite_target(&ctx) {
        Some(t) => {
            let mut v = t.public();
            v["configured"] = true.into();
            v
        }
        None => serde_json::json!({
            "configured": false,
            "message": "no offsite storage is set: `paas backups:offsite:set s3://BUCKET/FOLDER --endpoint URL --access-key-id ID --secret-access-key KEY` sets one",
        }),
    };
    Ok((StatusCode::OK, Json(body)))
}

async fn api_offsite_set(
    State(ctx): State<Arc<Ctx>>,
    _headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: OffsiteSet = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("send url, endpoint, access_key_id and secret_access_key as JSON ({e})"),
        )
    })?;
    let target = Target::parse(
        &req.url,
        &req.endpoint,
        req.region.as_deref(),
        &req.access_key_id,
        &req.secret_access_key,
    )
    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    if let Some(p) = &req.passphrase {
        if p.chars().count() < 12 {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "PAAS_BACKUP_PASSPHRASE is shorter than 12 characters: pick a longer one (or unset it and paas makes one)".into(),
            ));
        }
    }
    // Refuse a target that cannot be used now, rather than fail every night.
    let s3 =
        offsite::S3::new(&target).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    s3.check()
        .await
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let json = serde_json::to_string(&target).map_err(crate::http_error::internal)?;
    ctx.store
        .set_setting(offsite::SETTING, &json)
        .map_err(store_err)?;
    let had = crate::backup::passphrase(&ctx);
    let made = match (&req.passphrase, &had) {
        (Some(p), _) => {
            ctx.store
                .set_setting(offsite::PASSPHRASE_SETTING, p)
                .map_err(store_err)?;
            false
        }
        (None, Some(_)) => false,
        (None, None) => {
            ctx.store
                .set_setting(offsite::PASSPHRASE_SETTING, &offsite::new_passphrase())
                .map_err(store_err)?;
            true
        }
    };
    tracing::info!(target = %target.url(), endpoint = %target.endpoint, "offsite storage set");
    // Copies that failed or waited go up now, not in an hour.
    let bg = ctx.clone();
    tokio::spawn(async move {
        crate::backup::retry_uploads(&bg).await;
    });
    let mut message = format!(
        "Offsite storage set: every backup is encrypted and copied to {} at {}.",
        target.url(),
        target.endpoint
    );
    if made {
        message.push_str(" paas made a passphrase for them: `paas backups:offsite:key` shows it with the recovery steps; keep it somewhere other than this server.");
    }
    let mut v = target.public();
    v["message"] = message.into();
    v["passphrase_made"] = made.into();
    Ok((StatusCode::OK, Json(v)))
}

async fn api_offsite_key(State(ctx): State<Arc<Ctx>>, _headers: HeaderMap) -> ApiResult {
    let (Some(t), Some(pass)) = (offsite_target(&ctx), crate::backup::passphrase(&ctx)) else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "no offsite storage is set: `paas backups:offsite:set s3://BUCKET/FOLDER --endpoint URL --access-key-id ID --secret-access-key KEY` sets one".into(),
        ));
    };
    let folder = t.app_folder("APP");
    let instructions = format!(
        "Your backups are encrypted with age (https://age-encryption.org) under this passphrase:\n\n    {pass}\n\n\
Keep it somewhere other than this server: without it no backup can be read.\n\n\
To restore by hand, without paas:\n\
  1. Download a backup from s3://{bucket}/{folder}ID.tar.age (endpoint {endpoint}), e.g.\n\
       aws s3 cp --endpoint-url {endpoint} s3://{bucket}/{folder}ID.tar.age .\n\
  2. Decrypt it (age asks for the passphrase):\n\
       age --decrypt -o backup.tar ID.tar.age\n\
  3. Unpack it: tar xf backup.tar gives manifest.json (tables, row counts, checksums),\n\
     db.sqlite3 (a SQLite file) or db.dump (pg_restore --no-owner -d DATABASE db.dump),\n\
     and media.tar (the uploads: tar xf media.tar).\n\n\
To rebuild the whole server on a fresh install:\n\
  PAAS_BACKUP_PASSPHRASE='...' paas server:restore {url} --endpoint {endpoint} --access-key-id ID --secret-access-key KEY\n",
        bucket = t.bucket,
        endpoint = t.endpoint,
        url = t.url(),
    );
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "passphrase": pass,
            "url": t.url(),
            "endpoint": t.endpoint,
            "message": instructions,
        })),
    ))
}

/// `POST /api/backups/drill`: `{"app": NAME}` drills one app, `{}` every
/// app that has data. Answers each drill; 200 even when one failed (its
/// `ok` says so, and `failed` counts them).
async fn api_drill(State(ctx): State<Arc<Ctx>>, _headers: HeaderMap, body: Bytes) -> ApiResult {
    let asked: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["app"].as_str().map(str::to_string));
    let apps: Vec<App> = match asked {
        Some(name) => vec![find_app(&ctx, &name)?],
        None => ctx
            .store
            .apps()
            .map_err(store_err)?
            .into_iter()
            .filter(|a| matches!(backup_kind(&ctx.config.data_dir, &a.name), Ok(Some(_))))
            .collect(),
    };
    let mut drills = Vec::new();
    for app in &apps {
        drills.push(crate::drill::drill_app(&ctx, &app.name).await);
    }
    let failed = drills.iter().filter(|d| !d.ok).count();
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({ "drills": drills, "failed": failed })),
    ))
}

// ------------------------------------------------------------ whole server

async fn api_server_backup(State(ctx): State<Arc<Ctx>>, _headers: HeaderMap) -> ApiResult {
    let m = crate::disaster::server_backup(&ctx, "server").await?;
    let mut v = serde_json::json!(m);
    v["message"] = format!(
        "server backup {} uploaded to {} ({} apps, {} bytes encrypted)",
        m.id,
        m.key,
        m.apps.len(),
        m.size
    )
    .into();
    Ok((StatusCode::CREATED, Json(v)))
}

async fn api_server_restore(
    State(ctx): State<Arc<Ctx>>,
    _headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: OffsiteSet = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "send url, endpoint, access_key_id, secret_access_key and passphrase as JSON ({e})"
            ),
        )
    })?;
    let target = Target::parse(
        &req.url,
        &req.endpoint,
        req.region.as_deref(),
        &req.access_key_id,
        &req.secret_access_key,
    )
    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let Some(pass) = req.passphrase.filter(|p| !p.is_empty()) else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the backup passphrase is needed: set PAAS_BACKUP_PASSPHRASE or type it when asked"
                .into(),
        ));
    };
    let (m, report) = crate::disaster::server_restore(&ctx, target, pass).await?;
    let failed = report.iter().filter(|r| r.error.is_some()).count();
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "backup": m.id,
            "apps": report,
            "failed": failed,
            "message": format!("server backup {} restored: {} apps, {} failed", m.id, m.apps.len(), failed),
        })),
    ))
}
