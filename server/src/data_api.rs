//! The data routes of the API: `pg:*` and `backups*`. Handlers parse, call a
//! story ([`crate::postgres`], [`crate::backup`]) and answer; the router's
//! guard has already checked the credentials.

use crate::backup::{backup_app, list_backups, restore};
use crate::ctx::Ctx;
use crate::docker::ContainerState;
use crate::http_error::confirmed;
use crate::http_error::find_app;
use crate::http_error::{ApiError, DataError};
use crate::layout::server_name;
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
) -> ApiResult {
    let app = find_app(&ctx, &app)?;
    let list = list_backups(&ctx.config.data_dir, &app.name);
    Ok((StatusCode::OK, Json(serde_json::json!(list))))
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
