//! Whole-server disaster recovery: one command from a fresh VPS to every
//! site live again.
//!
//! `server:backup` (also daily) takes a fresh backup of every app's data
//! (each uploaded offsite as usual), then puts one encrypted object
//! offsite with everything else needed to rebuild the server: the store
//! (apps, config vars, domains, token hashes, releases, settings), the git
//! repositories, the apps' PostgreSQL records (their roles' passwords)
//! and the certificates folder, plus a manifest naming each app's live
//! commit and data backup. `server:restore` on a fresh install reads it
//! back: store, repositories, databases re-created, each app's live
//! commit rebuilt and deployed through the push path (which routes its
//! domains), then its data restored.

use crate::backup::{
    backup_app, backup_kind, offsite_target, passphrase, restore, CopyStatus, Kind, Manifest,
    SEALED_SUFFIX,
};
use crate::ctx::Ctx;
use crate::http_error::DataError;
use crate::offsite::{self, Target, S3};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A whole-server backup is taken once per this interval.
pub const SERVER_BACKUP_INTERVAL: Duration = Duration::from_secs(24 * 3600);
const LAST_SETTING: &str = "server_backup.last";

/// One app in a server backup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppEntry {
    pub name: String,
    /// The live release's commit, rebuilt on restore.
    pub commit: Option<String>,
    /// Its data backup (uploaded under `apps/NAME/`).
    pub backup: Option<String>,
    pub kind: Option<Kind>,
}

/// `manifest.json` of a server backup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerManifest {
    pub id: String,
    pub created_at: i64,
    pub apps: Vec<AppEntry>,
    /// Bytes uploaded (encrypted).
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub key: String,
}

fn user(status: StatusCode, m: impl Into<String>) -> DataError {
    DataError::user(status, m)
}

fn not_set() -> DataError {
    user(
        StatusCode::CONFLICT,
        "no offsite storage is set: `paas backups:offsite:set s3://BUCKET/FOLDER --endpoint URL --access-key-id ID --secret-access-key KEY` first",
    )
}

fn offsite_err(e: offsite::OffsiteError) -> DataError {
    DataError::internal(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, DataError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(DataError::internal),
        Err(e) => Err(DataError::internal(format!("the worker thread died: {e}"))),
    }
}

/// Tars the folder `dir` (links stored as links, never followed) into `out`.
fn tar_folder(dir: &Path, out: &Path) -> Result<(), String> {
    let f =
        std::fs::File::create(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)
        .and_then(|_| b.into_inner())
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot archive {}: {e}", dir.display()))
}

/// Unpacks a tar made by [`tar_folder`] into `dir` (tar refuses `..` and
/// absolute names).
fn untar_folder(tar_file: &Path, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let f = std::fs::File::open(tar_file).map_err(|e| e.to_string())?;
    tar::Archive::new(f)
        .unpack(dir)
        .map_err(|e| format!("cannot unpack into {}: {e}", dir.display()))
}

fn scratch(ctx: &Ctx, what: &str) -> Result<PathBuf, DataError> {
    let dir = ctx
        .config
        .data_dir
        .join("server-backups")
        .join(format!("{what}-{}", crate::auth::random_hex(4)));
    std::fs::create_dir_all(&dir)
        .map_err(|e| DataError::internal(format!("cannot make {}: {e}", dir.display())))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(
        dir.parent().unwrap_or(&dir),
        std::fs::Permissions::from_mode(0o700),
    );
    Ok(dir)
}

/// `paas server:backup`: everything needed to rebuild this server, offsite.
pub async fn server_backup(ctx: &Ctx, trigger: &str) -> Result<ServerManifest, DataError> {
    let outcome = take(ctx, trigger).await;
    let record = match &outcome {
        Ok(m) => serde_json::json!({ "id": m.id, "at": m.created_at, "ok": true }),
        Err(e) => {
            tracing::error!("server backup FAILED: {}", e.message);
            serde_json::json!({ "at": crate::metrics::now(), "ok": false, "error": e.message })
        }
    };
    let _ = ctx.store.set_setting(LAST_SETTING, &record.to_string());
    outcome
}

async fn take(ctx: &Ctx, trigger: &str) -> Result<ServerManifest, DataError> {
    let target = offsite_target(ctx).ok_or_else(not_set)?;
    let pass = passphrase(ctx).ok_or_else(not_set)?;
    let data_dir = ctx.config.data_dir.clone();
    let created_at = crate::metrics::now();
    let id = format!(
        "{}-{}",
        crate::backup::utc_stamp(created_at),
        crate::auth::random_hex(2)
    );
    let mut entries = Vec::new();
    let apps = ctx
        .store
        .apps()
        .map_err(|e| DataError::internal(e.to_string()))?;
    for app in &apps {
        let commit = ctx
            .store
            .live_release(&app.name)
            .map_err(|e| DataError::internal(e.to_string()))?
            .map(|r| r.commit_sha);
        let kind = backup_kind(&data_dir, &app.name)?;
        let backup = match kind {
            Some(_) => {
                let m = {
                    let _turn = ctx.deployer.turn(&app.name).await;
                    backup_app(ctx, app, trigger).await?
                };
                match &m.offsite {
                    Some(c) if c.status == CopyStatus::Uploaded => Some(m.id),
                    other => {
                        return Err(DataError::internal(format!(
                            "the backup of {} did not reach the offsite storage ({}); nothing else was uploaded",
                            app.name,
                            other
                                .as_ref()
                                .and_then(|c| c.error.clone())
                                .unwrap_or_else(|| "no copy made".into())
                        )))
                    }
                }
            }
            None => None,
        };
        entries.push(AppEntry {
            name: app.name.clone(),
            commit,
            backup,
            kind,
        });
    }
    let work = scratch(ctx, "backup")?;
    let result = async {
        let mut m = ServerManifest {
            id: id.clone(),
            created_at,
            apps: entries,
            size: 0,
            key: String::new(),
        };
        ctx.store
            .copy_to(&work.join("paas.db"))
            .map_err(|e| DataError::internal(e.to_string()))?;
        let mut files = vec![("paas.db".to_string(), work.join("paas.db"))];
        for (name, dir) in [
            ("repos.tar", ctx.repos.root().to_path_buf()),
            ("pg-apps.tar", crate::layout::pg_dir(&data_dir).join("apps")),
            ("certs.tar", data_dir.join("certs")),
        ] {
            if dir.is_dir() {
                let out = work.join(name);
                blocking(move || tar_folder(&dir, &out)).await?;
                files.push((name.to_string(), work.join(name)));
            }
        }
        let json = serde_json::to_vec_pretty(&m).map_err(|e| DataError::internal(e.to_string()))?;
        crate::layout::write_private(&work.join("manifest.json"), &json)
            .map_err(|e| DataError::internal(e.to_string()))?;
        files.insert(0, ("manifest.json".to_string(), work.join("manifest.json")));
        let sealed = work.join(format!("server{SEALED_SUFFIX}"));
        let out = sealed.clone();
        blocking(move || {
            offsite::seal(&files, &pass, &out).map_err(|e| format!("cannot encrypt: {e}"))
        })
        .await?;
        let key = target.key(&format!("server/{id}{SEALED_SUFFIX}"));
        let s3 = S3::new(&target).map_err(offsite_err)?;
        m.size = s3.put_file(&key, &sealed).await.map_err(offsite_err)?;
        m.key = key;
        thin(&s3, &target).await;
        Ok::<_, DataError>(m)
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    let m = result?;
    tracing::info!(backup = %m.id, size = m.size, apps = m.apps.len(), "server backup uploaded");
    Ok(m)
}

async fn thin(s3: &S3, target: &Target) {
    let folder = target.key("server/");
    let Ok(objects) = s3.list(&folder).await else {
        return;
    };
    let items: Vec<(String, i64)> = objects
        .iter()
        .filter_map(|o| {
            let id = o.key.strip_prefix(&folder)?.strip_suffix(SEALED_SUFFIX)?;
            Some((o.key.clone(), offsite::stamp_time(id)?))
        })
        .collect();
    for key in offsite::to_delete(
        &items,
        offsite::KEEP_DAILY,
        offsite::KEEP_WEEKLY,
        offsite::KEEP_MONTHLY,
    ) {
        let _ = s3.delete(&key).await;
    }
}

/// Whether the daily server backup is due (only once offsite storage is set).
pub fn server_backup_due(ctx: &Ctx) -> bool {
    if offsite_target(ctx).is_none() {
        return false;
    }
    let last = ctx
        .store
        .setting(LAST_SETTING)
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| v["ok"] == true)
        .and_then(|v| v["at"].as_i64());
    crate::backup::due(last, crate::metrics::now(), SERVER_BACKUP_INTERVAL)
}

/// What a restore did for one app.
#[derive(Clone, Debug, Serialize)]
pub struct AppRestored {
    pub app: String,
    /// The release now live.
    pub release: Option<i64>,
    /// The data backup restored into it.
    pub data: Option<String>,
    pub error: Option<String>,
}

/// `paas server:restore` on a fresh install.
pub async fn server_restore(
    ctx: &Ctx,
    target: Target,
    pass: String,
) -> Result<(ServerManifest, Vec<AppRestored>), DataError> {
    let existing = ctx
        .store
        .apps()
        .map_err(|e| DataError::internal(e.to_string()))?;
    if !existing.is_empty() {
        return Err(user(
            StatusCode::CONFLICT,
            format!(
                "this paas has apps already ({}): server:restore rebuilds a fresh install; run it on a new server (or a daemon with an empty --data-dir)",
                existing.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let s3 = S3::new(&target).map_err(|e| user(StatusCode::BAD_REQUEST, e.to_string()))?;
    let folder = target.key("server/");
    let objects = s3
        .list(&folder)
        .await
        .map_err(|e| user(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let Some(latest) = objects
        .iter()
        .filter(|o| o.key.ends_with(SEALED_SUFFIX))
        .max_by(|a, b| a.key.cmp(&b.key))
    else {
        return Err(user(
            StatusCode::NOT_FOUND,
            format!(
                "{} holds no server backup (looked under {folder}): check the location, or run `paas server:backup` on the old server",
                target.url()
            ),
        ));
    };
    let work = scratch(ctx, "restore")?;
    let result = restore_from(ctx, &s3, &target, &pass, &latest.key, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn restore_from(
    ctx: &Ctx,
    s3: &S3,
    target: &Target,
    pass: &str,
    key: &str,
    work: &Path,
) -> Result<(ServerManifest, Vec<AppRestored>), DataError> {
    let data_dir = ctx.config.data_dir.clone();
    let download = work.join(format!("server{SEALED_SUFFIX}"));
    s3.get_to_file(key, &download).await.map_err(offsite_err)?;
    let files = work.join("files");
    std::fs::create_dir_all(&files).map_err(|e| DataError::internal(e.to_string()))?;
    let (src, dir, p) = (download.clone(), files.clone(), pass.to_string());
    match tokio::task::spawn_blocking(move || offsite::unseal(&src, &p, &dir)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(user(
                StatusCode::BAD_REQUEST,
                format!("the server backup {key} cannot be opened: {e}"),
            ))
        }
        Err(e) => return Err(DataError::internal(e.to_string())),
    }
    let manifest: ServerManifest = std::fs::read(files.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            DataError::internal(format!("the server backup {key} has no readable manifest"))
        })?;
    ctx.store
        .restore_from(&files.join("paas.db"))
        .map_err(|e| DataError::internal(e.to_string()))?;
    // The location and keys given now are the ones that work.
    let json = serde_json::to_string(target).map_err(|e| DataError::internal(e.to_string()))?;
    let internal = |e: crate::store::StoreError| DataError::internal(e.to_string());
    ctx.store
        .set_setting(offsite::SETTING, &json)
        .map_err(internal)?;
    ctx.store
        .set_setting(offsite::PASSPHRASE_SETTING, pass)
        .map_err(internal)?;
    for (name, dir) in [
        ("repos.tar", ctx.repos.root().to_path_buf()),
        ("pg-apps.tar", crate::layout::pg_dir(&data_dir).join("apps")),
        ("certs.tar", data_dir.join("certs")),
    ] {
        let tar_file = files.join(name);
        if tar_file.exists() {
            blocking(move || untar_folder(&tar_file, &dir)).await?;
        }
    }
    ctx.repos
        .refresh_hooks()
        .await
        .map_err(|e| DataError::internal(e.to_string()))?;
    let mut report = Vec::new();
    for entry in &manifest.apps {
        let mut done = AppRestored {
            app: entry.name.clone(),
            release: None,
            data: None,
            error: None,
        };
        if let Err(e) = restore_app(ctx, s3, target, pass, entry, &mut done).await {
            tracing::error!(app = %entry.name, "server restore of the app FAILED: {e}");
            done.error = Some(e);
        }
        report.push(done);
    }
    tracing::info!(backup = %manifest.id, apps = report.len(), "server restored");
    Ok((manifest, report))
}

async fn restore_app(
    ctx: &Ctx,
    s3: &S3,
    target: &Target,
    pass: &str,
    entry: &AppEntry,
    done: &mut AppRestored,
) -> Result<(), String> {
    let app = ctx.store.app(&entry.name).map_err(|e| e.to_string())?;
    if crate::postgres::pg_database(&ctx.config.data_dir, &app.name)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        let _turn = ctx.deployer.turn(&app.name).await;
        crate::postgres::pg_create(ctx, &app)
            .await
            .map_err(|e| format!("its PostgreSQL database cannot be made again: {e}"))?;
    }
    if entry.commit.is_some() {
        let rel = crate::deploy::rebuild(
            ctx,
            &app.name,
            "restored from a server backup",
            crate::deploy::Progress::new(None),
        )
        .await
        .map_err(|e| format!("its live commit did not deploy again: {e}"))?;
        done.release = Some(rel.version);
    }
    if let Some(id) = &entry.backup {
        let dir = crate::layout::backups_dir(&ctx.config.data_dir, &app.name).join(id);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let download = dir.join(format!("download{SEALED_SUFFIX}"));
        let key = crate::backup::copy_key(target, &app.name, id);
        s3.get_to_file(&key, &download)
            .await
            .map_err(|e| format!("its data backup {id} cannot be downloaded: {e}"))?;
        let (src, d, p) = (download.clone(), dir.clone(), pass.to_string());
        tokio::task::spawn_blocking(move || crate::offsite::unseal(&src, &p, &d))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("its data backup {id} cannot be opened: {e}"))?;
        let _ = std::fs::remove_file(&download);
        // The manifest inside has no offsite state: it is offsite already.
        if let Some(mut m) = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        {
            m.offsite = Some(crate::backup::OffsiteCopy {
                status: CopyStatus::Uploaded,
                key,
                size: 0,
                at: crate::metrics::now(),
                attempts: 0,
                error: None,
            });
            if let Ok(json) = serde_json::to_vec_pretty(&m) {
                let _ = crate::layout::write_private(&dir.join("manifest.json"), &json);
            }
        }
        let _turn = ctx.deployer.turn(&app.name).await;
        restore(ctx, &app, id)
            .await
            .map_err(|e| format!("its data backup {id} did not restore: {e}"))?;
        done.data = Some(id.clone());
    }
    Ok(())
}
