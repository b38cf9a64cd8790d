//! Restore drills: a backup never restored is not a backup.
//!
//! A drill downloads the latest offsite copy of an app, decrypts it,
//! checks its files against the manifest inside, restores the database
//! into a scratch SQLite file or a scratch PostgreSQL database, and checks
//! that it opens and has the tables and row counts the manifest recorded
//! when the backup was taken. The result (and its date) is kept in the
//! store and shown on the dashboard; a failure is logged at error. Weekly
//! from the scheduler, and on demand (`paas backups:drill`).

use crate::backup::{
    copy_id, offsite_target, passphrase, sqlite_counts, verify, Kind, Manifest, SEALED_SUFFIX,
};
use crate::ctx::Ctx;
use crate::offsite::S3;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every app is drilled once per this interval.
pub const DRILL_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The outcome of one drill.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Drill {
    pub app: String,
    /// Unix seconds.
    pub at: i64,
    pub ok: bool,
    /// The backup restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Why it failed, as one sentence saying what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows per table found in the scratch restore.
    #[serde(default)]
    pub tables: BTreeMap<String, i64>,
    pub duration_ms: u64,
}

fn setting_key(app: &str) -> String {
    format!("drill.{app}")
}

/// The app's last drill, if any.
pub fn last_drill(ctx: &Ctx, app: &str) -> Option<Drill> {
    let text = ctx.store.setting(&setting_key(app)).ok()??;
    serde_json::from_str(&text).ok()
}

/// Drills the app now and records the result.
pub async fn drill_app(ctx: &Ctx, app: &str) -> Drill {
    let t = Instant::now();
    let mut tables = BTreeMap::new();
    let mut backup = None;
    let outcome = run(ctx, app, &mut backup, &mut tables).await;
    let d = Drill {
        app: app.into(),
        at: crate::metrics::now(),
        ok: outcome.is_ok(),
        backup,
        error: outcome.err(),
        tables,
        duration_ms: t.elapsed().as_millis() as u64,
    };
    match &d.error {
        None => tracing::info!(app, backup = ?d.backup, ms = d.duration_ms, "restore drill passed"),
        Some(why) => tracing::error!(app, backup = ?d.backup, "restore drill FAILED: {why}"),
    }
    if let Ok(json) = serde_json::to_string(&d) {
        if let Err(e) = ctx.store.set_setting(&setting_key(app), &json) {
            tracing::error!(app, "cannot record the drill: {e}");
        }
    }
    d
}

async fn run(
    ctx: &Ctx,
    app: &str,
    backup: &mut Option<String>,
    tables: &mut BTreeMap<String, i64>,
) -> Result<(), String> {
    let target = offsite_target(ctx).ok_or(
        "no offsite storage is set: point paas at one with `paas backups:offsite:set s3://BUCKET/FOLDER --endpoint URL --access-key-id ID --secret-access-key KEY`",
    )?;
    let pass = passphrase(ctx)
        .ok_or("no backup passphrase is set: run `paas backups:offsite:set` again")?;
    let s3 = S3::new(&target).map_err(|e| e.to_string())?;
    let objects = s3
        .list(&target.app_folder(app))
        .await
        .map_err(|e| e.to_string())?;
    let Some((key, id)) = objects
        .iter()
        .filter_map(|o| copy_id(&target, app, &o.key).map(|id| (o.key.clone(), id)))
        .max_by(|a, b| a.1.cmp(&b.1))
    else {
        return Err(format!(
            "{app} has no offsite copy yet: `paas backups:create -a {app}` takes a backup and uploads it"
        ));
    };
    *backup = Some(id.clone());
    let scratch = ctx
        .config
        .data_dir
        .join("drills")
        .join(format!("{app}-{}", crate::auth::random_hex(4)));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| format!("cannot make {}: {e}", scratch.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(
            scratch.parent().unwrap_or(&scratch),
            std::fs::Permissions::from_mode(0o700),
        );
    }
    let result = restore_into(ctx, &s3, &key, &id, &pass, &scratch, tables).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn restore_into(
    ctx: &Ctx,
    s3: &S3,
    key: &str,
    id: &str,
    pass: &str,
    scratch: &Path,
    tables: &mut BTreeMap<String, i64>,
) -> Result<(), String> {
    let download = scratch.join(format!("download{SEALED_SUFFIX}"));
    s3.get_to_file(key, &download)
        .await
        .map_err(|e| format!("cannot download backup {id}: {e}"))?;
    let files = scratch.join("files");
    std::fs::create_dir(&files).map_err(|e| format!("cannot make {}: {e}", files.display()))?;
    let (src, dir, p) = (download.clone(), files.clone(), pass.to_string());
    tokio::task::spawn_blocking(move || crate::offsite::unseal(&src, &p, &dir))
        .await
        .map_err(|e| format!("the worker thread died: {e}"))?
        .map_err(|e| format!("backup {id} (offsite) is unusable: {e}"))?;
    let manifest: Manifest = std::fs::read(files.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("backup {id} (offsite) has no readable manifest: take a new backup with `paas backups:create`"))?;
    let (dir, m) = (files.clone(), manifest.clone());
    tokio::task::spawn_blocking(move || verify(&dir, &m))
        .await
        .map_err(|e| format!("the worker thread died: {e}"))?
        .map_err(|e| format!("backup {id} (offsite) is damaged: {e}"))?;
    let found = match manifest.kind {
        Kind::Sqlite => {
            let db = files.join("db.sqlite3");
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .map_err(|e| format!("the restored database does not open: {e}"))?;
                let check: String = conn
                    .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                    .map_err(|e| format!("the restored database cannot be checked: {e}"))?;
                if check != "ok" {
                    return Err(format!(
                        "the restored database fails SQLite's integrity check: {check}"
                    ));
                }
                sqlite_counts(&db)
            })
            .await
            .map_err(|e| format!("the worker thread died: {e}"))??
        }
        Kind::Postgres => crate::postgres::scratch_restore_counts(ctx, &manifest.app, &files)
            .await
            .map_err(|e| format!("the dump does not restore into a scratch database: {e}"))?,
    };
    *tables = found.clone();
    if manifest.files.iter().any(|f| f.name == "media.tar") {
        let tar_file = files.join("media.tar");
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&tar_file).map_err(|e| e.to_string())?;
            let mut a = tar::Archive::new(f);
            for e in a.entries().map_err(|e| e.to_string())? {
                e.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        })
        .await
        .map_err(|e| format!("the worker thread died: {e}"))?
        .map_err(|e| format!("the media archive of backup {id} cannot be read: {e}"))?;
    }
    let diff = differences(&manifest.counts, &found);
    if !diff.is_empty() {
        return Err(format!(
            "backup {id} restored, but not as it was taken: {}; take a new backup (`paas backups:create`) and drill again",
            diff.join(", ")
        ));
    }
    Ok(())
}

/// What differs between the tables and row counts a manifest recorded and
/// those a restore found, one phrase each.
pub fn differences(want: &BTreeMap<String, i64>, found: &BTreeMap<String, i64>) -> Vec<String> {
    let mut out = Vec::new();
    for (t, n) in want {
        match found.get(t) {
            None => out.push(format!("table {t} is missing")),
            Some(m) if m != n => out.push(format!("table {t} has {m} rows, not {n}")),
            _ => {}
        }
    }
    for t in found.keys().filter(|t| !want.contains_key(*t)) {
        out.push(format!("table {t} was not in the backup"));
    }
    out
}

/// Whether an app last drilled at `last` is due for another.
pub fn drill_due(last: Option<i64>, now: i64) -> bool {
    last.is_none_or(|t| now - t >= DRILL_INTERVAL.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_table_that_does_not_match() {
        let want = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 0)]);
        assert!(differences(&want, &want).is_empty());
        let found = BTreeMap::from([("a".to_string(), 2), ("c".to_string(), 1)]);
        assert_eq!(
            differences(&want, &found),
            [
                "table a has 2 rows, not 3",
                "table b is missing",
                "table c was not in the backup"
            ]
        );
    }

    #[test]
    fn drills_are_weekly() {
        assert!(drill_due(None, 0));
        assert!(!drill_due(Some(100), 100 + 6 * 86_400));
        assert!(drill_due(Some(100), 100 + 7 * 86_400));
    }
}
