//! `paas apps:destroy`: an app and everything paas made for it go away —
//! routes, containers, release images, network, PostgreSQL database and role,
//! persistent volume, git repository and records — except a final backup,
//! kept under `<data>/backups/<app>/` unless the owner passes `--no-backup`.
//! Pushing the same name again makes a new app that sees that backup, so
//! `paas backups:restore ID` brings the data back.
//!
//! Nothing is removed when the final backup fails, and nothing while a
//! deploy of the app is running or queued.

use crate::backup::Manifest;
use crate::ctx::Ctx;
use crate::http_error::find_app;
use crate::http_error::ApiError;
use crate::http_error::DataError;
use crate::store::App;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What a destroy removed, and the backup it kept.
#[derive(Debug)]
pub struct Destroyed {
    pub backup: Option<Manifest>,
    pub containers: usize,
    pub images: usize,
}

/// Destroys `app`; takes a final backup first when `backup` is true and the
/// app has a database (an app that never deployed has nothing to keep).
pub async fn destroy_app(ctx: &Ctx, app: &App, backup: bool) -> Result<Destroyed, DataError> {
    let name = app.name.clone();
    let work = async {
        let kept = if backup {
            match crate::backup::backup_app(ctx, app, "final").await {
                Ok(m) => Some(m),
                // Nothing to back up (never deployed): nothing to lose either.
                Err(e) if e.status == StatusCode::CONFLICT => None,
                Err(e) => {
                    return Err(DataError::user(
                        e.status,
                        format!(
                            "the final backup of {name} failed, so nothing was removed: {}; fix that, or destroy without a backup with --no-backup",
                            e.message
                        ),
                    ))
                }
            }
        } else {
            None
        };
        remove_everything(ctx, app)
            .await
            .map(|(containers, images)| Destroyed {
                backup: kept,
                containers,
                images,
            })
    };
    match ctx.deployer.while_idle(&name, work).await {
        Some(result) => result,
        None => Err(DataError::user(
            StatusCode::CONFLICT,
            format!("a deploy of {name} is running: wait for it to finish (`paas releases -a {name}` shows it), then destroy the app"),
        )),
    }
}

/// Containers, images and network in the engine; database; files; records.
/// Returns (containers removed, images removed).
async fn remove_everything(ctx: &Ctx, app: &App) -> Result<(usize, usize), DataError> {
    let name = app.name.as_str();
    let docker = &ctx.docker;
    // Requests get paas's 404 page from now on, not a 502 from a stopping app.
    ctx.routes.remove_app(name);

    let containers = docker.list_containers(&[("paas.app", name)]).await?;
    for c in &containers {
        docker
            .stop_and_remove(&c.id, Duration::from_secs(10))
            .await?;
    }

    if crate::postgres::pg_database(&ctx.config.data_dir, name)?.is_some() {
        crate::postgres::pg_destroy(ctx, app).await?;
    } else {
        // The database server may still sit on the network from an earlier
        // pg:create; the engine refuses to remove a network in use.
        let _ = crate::postgres::forget_app_network(ctx, name).await;
    }
    docker
        .remove_network(&crate::layout::network_name(name))
        .await?;

    let mut images = 0;
    let releases = ctx
        .store
        .releases(name)
        .map_err(|e| DataError::internal(e.to_string()))?;
    let mut tags: Vec<String> = releases.iter().filter_map(|r| r.image.clone()).collect();
    tags.sort();
    tags.dedup();
    for tag in tags {
        if docker.image_exists(&tag).await? {
            docker.remove_image(&tag).await?;
            images += 1;
        }
    }

    let data_dir = &ctx.config.data_dir;
    remove_dir(&data_dir.join("apps").join(name))?;
    remove_dir(&ctx.repos.path(name))?;
    ctx.store
        .delete_app(name)
        .map_err(|e| DataError::internal(e.to_string()))?;
    // Its deploy-only tokens die with it: a leftover CI secret must not
    // create a new app of the same name with its first push.
    let tokens = ctx
        .store
        .revoke_app_tokens(name)
        .map_err(|e| DataError::internal(e.to_string()))?;
    for t in &tokens {
        ctx.sessions.remove_for_token(t);
    }
    // Its certificates are forgotten (files removed, never renewed).
    ctx.certs.look_again();
    tracing::info!(app = %name, containers = containers.len(), images, "app destroyed");
    Ok((containers.len(), images))
}

fn remove_dir(dir: &Path) -> Result<(), DataError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DataError::internal(format!(
            "cannot remove {}: {e}",
            dir.display()
        ))),
    }
}

#[derive(Deserialize, Default)]
struct DestroyBody {
    #[serde(default)]
    no_backup: bool,
}

/// `DELETE /api/apps/{app}` with `{"confirm": "<app>", "no_backup": false}`.
pub async fn api_destroy(
    State(ctx): State<Arc<Ctx>>,
    UrlPath(app): UrlPath<String>,
    _headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let app = find_app(&ctx, &app)?;
    crate::http_error::confirmed(
        &body,
        &app.name,
        &format!(
            "Destroying {} (its containers, data, database and git repository)",
            app.name
        ),
    )?;
    let opts: DestroyBody = serde_json::from_slice(&body).unwrap_or_default();
    let done = destroy_app(&ctx, &app, !opts.no_backup).await?;
    let name = &app.name;
    let message = match &done.backup {
        Some(m) => format!(
            "{name} destroyed. Its final backup {} is kept in {}; push {name} again and run `paas backups:restore {} -a {name} --confirm {name}` to bring the data back.",
            m.id,
            crate::layout::backups_dir(&ctx.config.data_dir, name).join(&m.id).display(),
            m.id
        ),
        None if opts.no_backup => format!("{name} destroyed, without a final backup."),
        None => format!("{name} destroyed; it had no data to back up."),
    };
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "app": name,
            "backup": done.backup,
            "containers_removed": done.containers,
            "images_removed": done.images,
            "message": message,
        })),
    ))
}
