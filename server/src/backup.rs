//! Backups and restores of an app's data.
//!
//! `pg_dump -Fc` in a one-off container on the app's network, or SQLite's
//! online backup API on `<data>/apps/<app>/data/db.sqlite3`, plus the media
//! dir as a tar. Each lives in `<data>/backups/<app>/<id>/` with a
//! `manifest.json` (kind, checksums, size, duration, status). The newest
//! [`KEEP_BACKUPS`] good ones are kept.

use crate::ctx::Ctx;
use crate::http_error::io_err;
use crate::http_error::DataError;
use crate::layout::{self, APP_UID};
use crate::layout::{backups_dir, hex, media_path, sqlite_path};
use crate::offsite::{self, Target};
use crate::postgres::{
    app_env, ensure_server, join_app_network, no_database, parse_counts, pg_database, run_one_off,
    OneOff, COUNTS_TXT, COUNT_ROWS_SQL,
};
use crate::store::App;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// How many good backups of an app are kept; older ones are pruned.
pub const KEEP_BACKUPS: usize = 7;

// ---------------------------------------------------------------- backups

/// `YYYYMMDD-HHMMSS` in UTC (the bare number past the year 9999, which
/// `metrics::now` never reaches).
pub fn utc_stamp(secs: i64) -> String {
    use time::{format_description::BorrowedFormatItem, macros::format_description, UtcDateTime};
    const FORMAT: &[BorrowedFormatItem] =
        format_description!("[year][month][day]-[hour][minute][second]");
    UtcDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// What a backup holds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Where a backup is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being taken (or the daemon stopped while it was).
    Running,
    Ok,
    Failed,
}

/// One file of a backup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// `<data>/backups/<app>/<id>/manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub id: String,
    pub app: String,
    pub kind: Kind,
    pub status: Status,
    /// `manual` or `scheduled`.
    pub trigger: String,
    /// Unix seconds.
    pub created_at: i64,
    pub duration_ms: u64,
    /// Bytes of all files.
    pub size: u64,
    /// Checksum of the database file (the first of `files`).
    pub sha256: String,
    pub files: Vec<FileSum>,
    /// Why it failed (status `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The release whose migrations this snapshot was taken before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<i64>,
    /// Rows per table at backup time (what a restore drill checks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, i64>,
    /// Its encrypted copy in the offsite storage, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<OffsiteCopy>,
}

/// Where a backup's offsite copy is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OffsiteCopy {
    pub status: CopyStatus,
    /// The object's key in the bucket.
    pub key: String,
    /// Bytes stored (encrypted).
    #[serde(default)]
    pub size: u64,
    /// Unix seconds of the last attempt.
    pub at: i64,
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether the offsite copy is there.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CopyStatus {
    /// Not tried yet (a pre-migrate snapshot waits for the hourly pass).
    Pending,
    Uploaded,
    /// Failed; retried every hour.
    Failed,
}

const DB_SQLITE: &str = "db.sqlite3";
const DB_DUMP: &str = "db.dump";
const MEDIA_TAR: &str = "media.tar";
const MANIFEST: &str = "manifest.json";

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), DataError> {
    let json = serde_json::to_vec_pretty(m).map_err(|e| DataError::internal(e.to_string()))?;
    let path = dir.join(MANIFEST);
    layout::write_private(&path, &json).map_err(|e| io_err("write", &path, e))
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let bytes = std::fs::read(dir.join(MANIFEST)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The app's backups, newest first.
pub fn list_backups(data_dir: &Path, app: &str) -> Vec<Manifest> {
    let dir = backups_dir(data_dir, app);
    let mut out: Vec<Manifest> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| read_manifest(&e.path()))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    out
}

/// Ids to delete: everything older than the `keep`-th newest good backup.
/// Failed ones newer than that stay, so a failure remains visible.
pub fn to_prune(backups: &[Manifest], keep: usize) -> Vec<String> {
    let mut sorted: Vec<&Manifest> = backups.iter().collect();
    sorted.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let mut good = 0;
    let mut out = Vec::new();
    for m in sorted {
        if good >= keep {
            out.push(m.id.clone());
        } else if m.status == Status::Ok {
            good += 1;
        }
    }
    out
}

/// Whether an app whose newest good backup was taken at `newest_ok` is due.
pub fn due(newest_ok: Option<i64>, now: i64, interval: Duration) -> bool {
    newest_ok.is_none_or(|t| now - t >= interval.as_secs() as i64)
}

/// SHA-256 and size of a file.
pub fn file_sum(path: &Path) -> std::io::Result<FileSum> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(FileSum {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size,
        sha256: hex(&hasher.finalize()),
    })
}

/// Checks every file of a backup against its manifest.
pub fn verify(dir: &Path, m: &Manifest) -> Result<(), String> {
    for f in &m.files {
        // A name is one file of the backup's folder: never `..`, `/…` or `a/b`.
        let mut parts = Path::new(&f.name).components();
        let plain = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(n)), None) if n == f.name.as_str()
        );
        if !plain {
            return Err(format!(
                "its manifest names {:?}, which is not a file of the backup's folder",
                f.name
            ));
        }
        let actual =
            file_sum(&dir.join(&f.name)).map_err(|e| format!("{} cannot be read ({e})", f.name))?;
        if actual.sha256 != f.sha256 || actual.size != f.size {
            return Err(format!(
                "{} does not match the checksum in its manifest",
                f.name
            ));
        }
    }
    Ok(())
}

/// Copies a live SQLite database with SQLite's online backup API (a
/// consistent snapshot while the app keeps running), then checks the copy.
pub fn sqlite_copy(src: &Path, dst: &Path) -> Result<(), String> {
    use rusqlite::{Connection, OpenFlags};
    // The app owns its volume: a db.sqlite3 that is a symlink is refused.
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| format!("cannot open {}: {e}", src.display()))?;
    // The backup API reports a damaged source as "not an error": ask first.
    from.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| format!("{} cannot be read ({e})", src.display()))?;
    let mut to =
        Connection::open(dst).map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
    sqlite_backup_all(&from, &mut to)?;
    let check: String = to
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| format!("cannot check the copy: {e}"))?;
    if check != "ok" {
        return Err(format!("the copy fails SQLite's quick_check: {check}"));
    }
    Ok(())
}

/// Restores a SQLite backup into the live file, in place (the app's open
/// connections see the restored data; the file keeps its owner).
pub fn sqlite_restore(backup: &Path, live: &Path) -> Result<(), String> {
    use rusqlite::{Connection, OpenFlags};
    let existed = match live.symlink_metadata() {
        Ok(m) if m.is_file() => true,
        Ok(_) => {
            return Err(format!(
                "{} is not a regular file (the app's code put a link or a folder there); move it away on the server (mv {0} {0}.moved) and restore again",
                live.display()
            ))
        }
        Err(_) => false,
    };
    let from = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", backup.display()))?;
    from.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| format!("{} cannot be read ({e})", backup.display()))?;
    // The app owns its volume: never write through a symlink it planted.
    let mut to = Connection::open_with_flags(
        live,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| format!("cannot open {}: {e}", live.display()))?;
    sqlite_backup_all(&from, &mut to)?;
    drop(to);
    if !existed {
        std::os::unix::fs::lchown(live, Some(APP_UID), Some(APP_UID))
            .map_err(|e| format!("cannot hand {} to the app: {e}", live.display()))?;
    }
    Ok(())
}

/// All pages in one step, retrying while the other side is busy (a write in
/// progress) for up to 30 s.
fn sqlite_backup_all(
    from: &rusqlite::Connection,
    to: &mut rusqlite::Connection,
) -> Result<(), String> {
    use rusqlite::backup::{Backup, StepResult};
    let backup = Backup::new(from, to).map_err(|e| format!("cannot start the copy: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match backup.step(-1) {
            Ok(StepResult::Done) => return Ok(()),
            Ok(StepResult::More) => {}
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(_) => {
                return Err(
                    "the database stayed locked for 30 s; try again when the app is less busy"
                        .into(),
                )
            }
            // The step's own message is often "not an error"; its code is not.
            Err(e) => {
                return Err(match e.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::DiskFull) => {
                        "the copy failed: the disk is full".into()
                    }
                    Some(rusqlite::ErrorCode::ReadOnly) => {
                        "the copy failed: read-only file system".into()
                    }
                    _ => format!("the copy failed: {e}"),
                })
            }
        }
    }
}

/// A backup that failed because of where it is written: one sentence that
/// says what to do, or `None` for any other failure.
fn place_problem(dir: &Path, detail: &str) -> Option<String> {
    let d = detail.to_lowercase();
    if d.contains("no space left") || d.contains("os error 28") || d.contains("disk is full") {
        Some(format!(
            "the disk holding {} is full: free some space there (older backups can go), then back up again",
            dir.display()
        ))
    } else if d.contains("read-only file system") || d.contains("os error 30") {
        Some(format!(
            "{} is on a read-only file system: make it writable again (remount it read-write), then back up again",
            dir.display()
        ))
    } else {
        None
    }
}

/// Tars a media dir. False when there is none. The app writes this folder:
/// a `media` that is a symlink is refused, and links inside it are stored
/// as links, never followed ([`crate::beneath::tar_tree`]).
pub fn tar_dir(dir: &Path, out: &Path) -> std::io::Result<bool> {
    if !crate::beneath::real_dir(dir)? {
        return Ok(false);
    }
    let f = std::fs::File::create(out)?;
    let mut b = tar::Builder::new(f);
    crate::beneath::tar_tree(dir, &mut b)?;
    b.into_inner()?.sync_all()?;
    Ok(true)
}

/// Replaces the folder `dir` (inside an app's volume) with a tar's
/// contents: unpacked into a fresh root-only folder next to it, through
/// folders held open (so nothing the app does meanwhile redirects a
/// write), owned by the app whatever the archive says, then renamed into
/// place. Whatever was at `dir` before — a folder, or a symlink the app
/// planted — is moved aside and removed without following links.
pub fn untar_replacing(tar_file: &Path, dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{mkdirat, renameat, Mode};
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(std::io::Error::other(format!(
            "{} has no parent folder",
            dir.display()
        )));
    };
    std::fs::create_dir_all(parent)?;
    let parent_fd = crate::beneath::open_dir(parent)?;
    let fresh = format!(".paas-restore-{}", crate::auth::random_hex(8));
    mkdirat(&parent_fd, fresh.as_str(), Mode::from_raw_mode(0o700))?;
    let unpacked = (|| {
        let fresh_fd = crate::beneath::open_subdir(&parent_fd, fresh.as_ref())?;
        crate::beneath::untar_into(std::fs::File::open(tar_file)?, &fresh_fd, APP_UID)?;
        rustix::fs::fchown(
            &fresh_fd,
            Some(rustix::fs::Uid::from_raw(APP_UID)),
            Some(rustix::fs::Gid::from_raw(APP_UID)),
        )?;
        rustix::fs::fchmod(&fresh_fd, Mode::from_raw_mode(0o755))?;
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = unpacked {
        let _ = std::fs::remove_dir_all(parent.join(&fresh));
        return Err(e);
    }
    let old = format!(".paas-replaced-{}", crate::auth::random_hex(8));
    let moved_aside = match renameat(&parent_fd, name, &parent_fd, old.as_str()) {
        Ok(()) => true,
        Err(rustix::io::Errno::NOENT) => false,
        Err(e) => {
            let _ = std::fs::remove_dir_all(parent.join(&fresh));
            return Err(e.into());
        }
    };
    if let Err(e) = renameat(&parent_fd, fresh.as_str(), &parent_fd, name) {
        let _ = std::fs::remove_dir_all(parent.join(&fresh));
        return Err(e.into());
    }
    if moved_aside {
        // remove_dir_all removes a symlink itself, never what it points to.
        let old = parent.join(old);
        match std::fs::symlink_metadata(&old) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&old)?,
            Ok(_) => std::fs::remove_file(&old)?,
            Err(_) => {}
        }
    }
    Ok(())
}

/// What an app's backup would hold: its PostgreSQL database if it has one,
/// else its SQLite file; None when it has neither yet.
pub(crate) fn backup_kind(data_dir: &Path, app: &str) -> Result<Option<Kind>, DataError> {
    if pg_database(data_dir, app)?.is_some() {
        Ok(Some(Kind::Postgres))
    } else if std::fs::symlink_metadata(sqlite_path(data_dir, app)).is_ok_and(|m| m.is_file()) {
        Ok(Some(Kind::Sqlite))
    } else {
        Ok(None)
    }
}

fn nothing_to_back_up(app: &str) -> DataError {
    DataError::user(
        StatusCode::CONFLICT,
        format!("{app} has no database to back up yet: deploy it first (git push), or create one with `paas pg:create -a {app}`"),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, DataError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(DataError::internal),
        Err(e) => Err(DataError::internal(format!("the worker thread died: {e}"))),
    }
}

/// Takes a backup of the app now (`trigger`: manual, scheduled, final). The
/// caller holds the app's turn ([`crate::queue::Deployer::turn`]), so no
/// deploy, restore or other backup of the app runs meanwhile. A failure
/// is recorded (manifest status `failed`), logged at error, and returned.
pub async fn backup_app(ctx: &Ctx, app: &App, trigger: &str) -> Result<Manifest, DataError> {
    backup_app_for(ctx, app, trigger, None).await
}

/// The pre-migrate snapshot of release `version` (under the deploy's turn):
/// a backup taken right before its migrations run, found again by `rollback --restore-db`.
/// `None` when the app has no database yet (nothing to protect).
pub async fn snapshot_before_migrate(
    ctx: &Ctx,
    app: &App,
    version: i64,
) -> Result<Option<Manifest>, DataError> {
    if backup_kind(&ctx.config.data_dir, &app.name)?.is_none() {
        return Ok(None);
    }
    backup_app_for(ctx, app, "pre-migrate", Some(version))
        .await
        .map(Some)
}

/// The snapshot that holds the data as release `version` last saw it: the
/// first good pre-migrate snapshot of a later release.
pub fn snapshot_after(data_dir: &Path, app: &str, version: i64) -> Option<Manifest> {
    list_backups(data_dir, app)
        .into_iter()
        .filter(|m| m.status == Status::Ok && m.release.is_some_and(|r| r > version))
        .min_by_key(|m| (m.release, m.created_at))
}

async fn backup_app_for(
    ctx: &Ctx,
    app: &App,
    trigger: &str,
    release: Option<i64>,
) -> Result<Manifest, DataError> {
    let data_dir = ctx.config.data_dir.clone();
    let Some(kind) = backup_kind(&data_dir, &app.name)? else {
        return Err(nothing_to_back_up(&app.name));
    };
    let created_at = crate::metrics::now();
    let id = format!("{}-{}", utc_stamp(created_at), crate::auth::random_hex(2));
    let dir = backups_dir(&data_dir, &app.name).join(&id);
    std::fs::create_dir_all(&dir).map_err(|e| {
        let e = io_err("create", &dir, e);
        match place_problem(&dir, &e.message) {
            Some(why) => DataError::internal(format!("backup of {} failed: {why}", app.name)),
            None => e,
        }
    })?;
    // Backups hold every app's data: root only.
    let root = data_dir.join("backups");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("protect", &root, e))?;
    }
    let mut m = Manifest {
        id: id.clone(),
        app: app.name.clone(),
        kind,
        status: Status::Running,
        trigger: trigger.into(),
        created_at,
        duration_ms: 0,
        size: 0,
        sha256: String::new(),
        files: Vec::new(),
        error: None,
        release,
        counts: BTreeMap::new(),
        offsite: None,
    };
    write_manifest(&dir, &m)?;
    let t = Instant::now();
    let outcome = take_backup(ctx, &app.name, kind, &dir).await;
    m.duration_ms = t.elapsed().as_millis() as u64;
    match outcome {
        Ok((files, counts)) => {
            m.counts = counts;
            m.status = Status::Ok;
            m.size = files.iter().map(|f| f.size).sum();
            m.sha256 = files.first().map(|f| f.sha256.clone()).unwrap_or_default();
            m.files = files;
            write_manifest(&dir, &m)?;
            tracing::info!(app = %app.name, backup = %id, kind = ?kind, size = m.size, ms = m.duration_ms, "backup taken");
            prune(&data_dir, &app.name);
            if trigger == "pre-migrate" {
                // A deploy is waiting: the hourly pass uploads it.
                if offsite_target(ctx).is_some() {
                    m.offsite = Some(OffsiteCopy {
                        status: CopyStatus::Pending,
                        key: String::new(),
                        size: 0,
                        at: created_at,
                        attempts: 0,
                        error: None,
                    });
                    write_manifest(&dir, &m)?;
                }
            } else {
                upload_copy(ctx, &dir, &mut m).await;
            }
            Ok(m)
        }
        Err(e) => {
            for f in [DB_SQLITE, DB_DUMP, MEDIA_TAR] {
                let _ = std::fs::remove_file(dir.join(f));
            }
            m.status = Status::Failed;
            m.error = Some(e.message.clone());
            let _ = write_manifest(&dir, &m);
            tracing::error!(app = %app.name, backup = %id, "backup failed: {}", e.message);
            let why = place_problem(&dir, &e.message).unwrap_or(e.message);
            Err(DataError::internal(format!(
                "backup {id} of {} failed: {why}",
                app.name
            )))
        }
    }
}

async fn take_backup(
    ctx: &Ctx,
    app: &str,
    kind: Kind,
    dir: &Path,
) -> Result<(Vec<FileSum>, BTreeMap<String, i64>), DataError> {
    let data_dir = &ctx.config.data_dir;
    let (db_file, counts) = match kind {
        Kind::Sqlite => {
            let (src, dst) = (sqlite_path(data_dir, app), dir.join(DB_SQLITE));
            let counts = blocking(move || {
                sqlite_copy(&src, &dst)?;
                sqlite_counts(&dst)
            })
            .await?;
            (DB_SQLITE, counts)
        }
        Kind::Postgres => {
            let db = pg_database(data_dir, app)?.ok_or_else(|| no_database(app))?;
            let server = ensure_server(ctx).await?;
            let network = join_app_network(ctx, &server, app).await?;
            run_one_off(
                ctx,
                OneOff {
                    what: "pg_dump",
                    app,
                    network,
                    env: app_env(&db),
                    binds: vec![format!("{}:/backup", dir.display())],
                    script: pg_dump_with_counts(),
                    secrets: vec![db.password.clone()],
                },
            )
            .await?;
            let counts_file = dir.join(COUNTS_TXT);
            let text = std::fs::read_to_string(&counts_file)
                .map_err(|e| io_err("read", &counts_file, e))?;
            let _ = std::fs::remove_file(&counts_file);
            (DB_DUMP, parse_counts(&text)?)
        }
    };
    let (media, dir2) = (media_path(data_dir, app), dir.to_path_buf());
    blocking(move || {
        let mut names = vec![db_file];
        if tar_dir(&media, &dir2.join(MEDIA_TAR))
            .map_err(|e| format!("cannot archive the media files: {e}"))?
        {
            names.push(MEDIA_TAR);
        }
        names
            .into_iter()
            .map(|n| {
                // Backups hold every secret of the app: root's alone.
                use std::os::unix::fs::PermissionsExt;
                let path = dir2.join(n);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("cannot protect {n}: {e}"))?;
                file_sum(&path).map_err(|e| format!("cannot read back {n}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .await
    .map(|files| (files, counts))
}

/// The dump and the row counts of one snapshot: pg_dump runs inside the
/// transaction that counts (`--snapshot`), so both see the same rows.
/// `/backup/counts.txt` gets `table|rows` lines.
fn pg_dump_with_counts() -> String {
    format!(
        r#"psql -X -q -At -v ON_ERROR_STOP=1 <<'SQL'
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot() AS snap \gset
\setenv PAAS_SNAPSHOT :snap
\! pg_dump -Fc --no-owner --snapshot="$PAAS_SNAPSHOT" -f /backup/{DB_DUMP} || rm -f /backup/{DB_DUMP}
\o /backup/{COUNTS_TXT}
{COUNT_ROWS_SQL}
\o
COMMIT;
SQL
test -s /backup/{DB_DUMP} || {{ echo "pg_dump wrote no dump" >&2; exit 1; }}"#
    )
}

/// Rows per table of a SQLite file (SQLite's own tables left out).
pub fn sqlite_counts(path: &Path) -> Result<BTreeMap<String, i64>, String> {
    use rusqlite::{Connection, OpenFlags};
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| format!("cannot list the tables of {}: {e}", path.display()))?;
    tables
        .into_iter()
        .map(|t| {
            let n: i64 = db
                .query_row(
                    &format!("SELECT count(*) FROM \"{}\"", t.replace('"', "\"\"")),
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| format!("cannot count the rows of {t}: {e}"))?;
            Ok((t, n))
        })
        .collect()
}

fn prune(data_dir: &Path, app: &str) {
    let all = list_backups(data_dir, app);
    for id in to_prune(&all, KEEP_BACKUPS) {
        let dir = backups_dir(data_dir, app).join(&id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!(app, backup = %id, "old backup pruned"),
            Err(e) => tracing::warn!(app, backup = %id, "cannot prune an old backup: {e}"),
        }
    }
}

/// Restores a backup into the app's live database (and media files). The
/// caller holds the app's turn (a deploy that restores holds it already).
pub async fn restore(ctx: &Ctx, app: &App, id: &str) -> Result<Manifest, DataError> {
    let no_such = || {
        DataError::user(
            StatusCode::NOT_FOUND,
            format!(
                "{} has no backup {id:?}: `paas backups -a {}` lists them",
                app.name, app.name
            ),
        )
    };
    if !valid_id(id) {
        return Err(no_such());
    }
    let data_dir = ctx.config.data_dir.clone();
    let dir = backups_dir(&data_dir, &app.name).join(id);
    let m = read_manifest(&dir).ok_or_else(no_such)?;
    if m.status != Status::Ok {
        return Err(DataError::user(
            StatusCode::CONFLICT,
            format!("backup {id} did not complete and cannot be restored: pick another from `paas backups -a {}`", app.name),
        ));
    }
    let (d, m2) = (dir.clone(), m.clone());
    blocking(move || verify(&d, &m2)).await.map_err(|e| {
        DataError::user(
            StatusCode::CONFLICT,
            format!(
                "backup {id} is damaged ({e}); nothing was restored: pick another from `paas backups -a {}`",
                app.name
            ),
        )
    })?;
    let t = Instant::now();
    match m.kind {
        Kind::Sqlite => {
            let (src, live) = (dir.join(DB_SQLITE), sqlite_path(&data_dir, &app.name));
            blocking(move || sqlite_restore(&src, &live)).await?;
        }
        Kind::Postgres => {
            let db = pg_database(&data_dir, &app.name)?.ok_or_else(|| {
                DataError::user(
                    StatusCode::CONFLICT,
                    format!(
                        "{0} has no PostgreSQL database to restore into: `paas pg:create -a {0}` first",
                        app.name
                    ),
                )
            })?;
            let server = ensure_server(ctx).await?;
            let network = join_app_network(ctx, &server, &app.name).await?;
            run_one_off(
                ctx,
                OneOff {
                    what: "pg_restore",
                    app: &app.name,
                    network,
                    env: app_env(&db),
                    binds: vec![format!("{}:/backup:ro", dir.display())],
                    script: format!(
                        "pg_restore --clean --if-exists --no-owner --no-privileges \
                         --single-transaction --exit-on-error -d \"$PGDATABASE\" /backup/{DB_DUMP}"
                    ),
                    secrets: vec![db.password.clone()],
                },
            )
            .await?;
        }
    }
    if m.files.iter().any(|f| f.name == MEDIA_TAR) {
        let (tar_file, media) = (dir.join(MEDIA_TAR), media_path(&data_dir, &app.name));
        blocking(move || {
            untar_replacing(&tar_file, &media)
                .map_err(|e| format!("cannot restore the media files: {e}"))
        })
        .await?;
    }
    tracing::info!(app = %app.name, backup = %id, ms = t.elapsed().as_millis() as u64, "backup restored");
    Ok(m)
}

// ---------------------------------------------------------- offsite copies

/// The offsite target, when the owner set one.
pub fn offsite_target(ctx: &Ctx) -> Option<Target> {
    let text = ctx.store.setting(offsite::SETTING).ok()??;
    serde_json::from_str(&text).ok()
}

/// The passphrase backups are encrypted under (set with the target).
pub fn passphrase(ctx: &Ctx) -> Option<String> {
    ctx.store.setting(offsite::PASSPHRASE_SETTING).ok()?
}

/// The key of a backup's copy: `PREFIX/apps/APP/ID.tar.age`.
pub fn copy_key(target: &Target, app: &str, id: &str) -> String {
    format!("{}{id}{SEALED_SUFFIX}", target.app_folder(app))
}

/// How the key of an app's copy ends.
pub const SEALED_SUFFIX: &str = ".tar.age";

/// Encrypts a good backup (its manifest and files, as one tar) and uploads
/// it, then thins the app's offsite copies to the retention. The outcome
/// goes into the manifest; a failure is logged at error and retried by the
/// hourly pass ([`retry_uploads`]). No target set: nothing happens.
pub async fn upload_copy(ctx: &Ctx, dir: &Path, m: &mut Manifest) {
    let Some(target) = offsite_target(ctx) else {
        return;
    };
    let key = copy_key(&target, &m.app, &m.id);
    let attempts = m.offsite.as_ref().map_or(0, |c| c.attempts) + 1;
    let outcome = seal_and_put(ctx, &target, dir, m, &key).await;
    let at = crate::metrics::now();
    m.offsite = Some(match outcome {
        Ok(size) => {
            tracing::info!(app = %m.app, backup = %m.id, size, "offsite copy uploaded");
            OffsiteCopy {
                status: CopyStatus::Uploaded,
                key,
                size,
                at,
                attempts,
                error: None,
            }
        }
        Err(why) => {
            tracing::error!(app = %m.app, backup = %m.id, "offsite copy failed: {why}");
            OffsiteCopy {
                status: CopyStatus::Failed,
                key,
                size: 0,
                at,
                attempts,
                error: Some(why),
            }
        }
    });
    if let Err(e) = write_manifest(dir, m) {
        tracing::error!(app = %m.app, backup = %m.id, "cannot record the offsite copy: {e}");
    }
    if m.offsite
        .as_ref()
        .is_some_and(|c| c.status == CopyStatus::Uploaded)
    {
        thin_offsite(&target, &m.app).await;
    }
}

async fn seal_and_put(
    ctx: &Ctx,
    target: &Target,
    dir: &Path,
    m: &Manifest,
    key: &str,
) -> Result<u64, String> {
    let Some(pass) = passphrase(ctx) else {
        return Err("no backup passphrase is set: run `paas backups:offsite:set` again".into());
    };
    let sealed = dir.join(format!("offsite{SEALED_SUFFIX}"));
    // The manifest as it was when the backup was taken (no offsite state).
    let mut inner = m.clone();
    inner.offsite = None;
    let json = serde_json::to_vec_pretty(&inner).map_err(|e| e.to_string())?;
    let mut files = vec![(MANIFEST.to_string(), dir.join(format!("{MANIFEST}.sealed")))];
    layout::write_private(&files[0].1, &json).map_err(|e| format!("cannot write: {e}"))?;
    files.extend(m.files.iter().map(|f| (f.name.clone(), dir.join(&f.name))));
    let (out, tmp) = (sealed.clone(), files[0].1.clone());
    let sealed_res = tokio::task::spawn_blocking(move || offsite::seal(&files, &pass, &out))
        .await
        .map_err(|e| format!("the worker thread died: {e}"))
        .and_then(|r| r.map_err(|e| format!("cannot encrypt the backup: {e}")));
    let _ = std::fs::remove_file(&tmp);
    let put = match sealed_res {
        Ok(_) => match offsite::S3::new(target) {
            Ok(s3) => s3.put_file(key, &sealed).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&sealed);
    put
}

/// Deletes the app's offsite copies that the retention lets go.
async fn thin_offsite(target: &Target, app: &str) {
    let s3 = match offsite::S3::new(target) {
        Ok(s3) => s3,
        Err(_) => return,
    };
    let objects = match s3.list(&target.app_folder(app)).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(app, "cannot list the offsite copies to thin them: {e}");
            return;
        }
    };
    let items: Vec<(String, i64)> = objects
        .iter()
        .filter_map(|o| {
            let id = copy_id(target, app, &o.key)?;
            Some((o.key.clone(), offsite::stamp_time(&id)?))
        })
        .collect();
    let doomed = offsite::to_delete(
        &items,
        offsite::KEEP_DAILY,
        offsite::KEEP_WEEKLY,
        offsite::KEEP_MONTHLY,
    );
    for key in doomed {
        match s3.delete(&key).await {
            Ok(()) => tracing::info!(app, key, "old offsite copy deleted"),
            Err(e) => tracing::warn!(app, key, "cannot delete an old offsite copy: {e}"),
        }
    }
}

/// The backup id of an app's copy key, if it is one.
pub fn copy_id(target: &Target, app: &str, key: &str) -> Option<String> {
    let id = key
        .strip_prefix(&target.app_folder(app))?
        .strip_suffix(SEALED_SUFFIX)?;
    valid_id(id).then(|| id.to_string())
}

/// Uploads every good local backup whose offsite copy failed or waits.
/// Returns how many went up.
pub async fn retry_uploads(ctx: &Ctx) -> usize {
    if offsite_target(ctx).is_none() {
        return 0;
    }
    let Ok(apps) = ctx.store.apps() else {
        return 0;
    };
    let mut done = 0;
    for app in apps {
        for m in list_backups(&ctx.config.data_dir, &app.name) {
            let waiting = m.status == Status::Ok
                && m.offsite
                    .as_ref()
                    .is_some_and(|c| c.status != CopyStatus::Uploaded);
            if !waiting {
                continue;
            }
            let _turn = ctx.deployer.turn(&app.name).await;
            let dir = backups_dir(&ctx.config.data_dir, &app.name).join(&m.id);
            // Pruned or changed meanwhile: read it again under the turn.
            let Some(mut m) = read_manifest(&dir) else {
                continue;
            };
            upload_copy(ctx, &dir, &mut m).await;
            if m.offsite
                .as_ref()
                .is_some_and(|c| c.status == CopyStatus::Uploaded)
            {
                done += 1;
            }
        }
    }
    done
}

/// An app's backups with where their copies are: each local one, plus
/// those only offsite (pruned here, kept there). `Err` says why the
/// offsite listing failed (the local ones are still listed).
pub async fn backups_with_copies(ctx: &Ctx, app: &str) -> (Vec<serde_json::Value>, Option<String>) {
    let local = list_backups(&ctx.config.data_dir, app);
    let mut offsite_ids = Vec::new();
    let mut problem = None;
    if let Some(target) = offsite_target(ctx) {
        let listed = match offsite::S3::new(&target) {
            Ok(s3) => s3.list(&target.app_folder(app)).await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(objects) => {
                offsite_ids = objects
                    .iter()
                    .filter_map(|o| copy_id(&target, app, &o.key).map(|id| (id, o.size)))
                    .collect()
            }
            Err(e) => problem = Some(format!("the offsite copies cannot be listed: {e}")),
        }
    }
    let mut out: Vec<(i64, String, serde_json::Value)> = Vec::new();
    for m in &local {
        let mut copies = vec!["local"];
        if offsite_ids.iter().any(|(id, _)| id == &m.id) {
            copies.push("offsite");
        }
        let mut v = serde_json::to_value(m).unwrap_or_default();
        v["copies"] = serde_json::json!(copies);
        out.push((m.created_at, m.id.clone(), v));
    }
    for (id, size) in offsite_ids {
        if local.iter().any(|m| m.id == id) {
            continue;
        }
        let at = offsite::stamp_time(&id).unwrap_or(0);
        out.push((
            at,
            id.clone(),
            serde_json::json!({
                "id": id, "app": app, "status": "ok", "created_at": at,
                "size": size, "copies": ["offsite"], "trigger": "", "kind": "",
            }),
        ));
    }
    out.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    (out.into_iter().map(|(_, _, v)| v).collect(), problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, created_at: i64, status: Status) -> Manifest {
        Manifest {
            id: id.into(),
            app: "blog".into(),
            kind: Kind::Sqlite,
            status,
            trigger: "manual".into(),
            created_at,
            duration_ms: 1,
            size: 1,
            sha256: String::new(),
            files: Vec::new(),
            error: None,
            release: None,
            counts: BTreeMap::new(),
            offsite: None,
        }
    }

    #[test]
    fn full_and_read_only_places_get_a_sentence_saying_what_to_do() {
        let dir = Path::new("/srv/backups/blog");
        let full = place_problem(dir, "cannot write x: No space left on device (os error 28)");
        assert!(full.unwrap().contains("/srv/backups/blog is full: free"));
        let full = place_problem(dir, "the copy failed: the disk is full").unwrap();
        assert!(full.contains("is full"));
        let ro = place_problem(dir, "cannot create x: Read-only file system (os error 30)");
        assert!(ro
            .unwrap()
            .contains("read-only file system: make it writable"));
        assert_eq!(place_problem(dir, "pg_dump: connection refused"), None);
    }

    #[test]
    fn the_snapshot_for_a_rollback_is_the_first_one_after_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let put = |id: &str, at: i64, status: Status, release: Option<i64>| {
            let mut m = manifest(id, at, status);
            m.release = release;
            let d = backups_dir(dir.path(), "blog").join(id);
            std::fs::create_dir_all(&d).unwrap();
            write_manifest(&d, &m).unwrap();
        };
        put("20260101-000000-aaaa", 1, Status::Ok, Some(3));
        put("20260102-000000-bbbb", 2, Status::Ok, None);
        put("20260103-000000-cccc", 3, Status::Failed, Some(5));
        put("20260104-000000-dddd", 4, Status::Ok, Some(6));
        put("20260105-000000-eeee", 5, Status::Ok, Some(8));
        let id = |v| snapshot_after(dir.path(), "blog", v).map(|m| m.id);
        assert_eq!(id(2).as_deref(), Some("20260101-000000-aaaa"));
        // v5's snapshot failed: v6's holds the data v4 and v5 saw.
        assert_eq!(id(4).as_deref(), Some("20260104-000000-dddd"));
        assert_eq!(id(7).as_deref(), Some("20260105-000000-eeee"));
        assert_eq!(id(8), None);
    }

    #[test]
    fn retention_keeps_the_newest_good_backups() {
        let ms: Vec<Manifest> = (0..10)
            .map(|i| manifest(&format!("b{i}"), 100 + i, Status::Ok))
            .collect();
        let mut pruned = to_prune(&ms, 7);
        pruned.sort();
        assert_eq!(pruned, ["b0", "b1", "b2"]);
        assert!(to_prune(&ms[..7], 7).is_empty());
    }

    #[test]
    fn retention_does_not_count_failed_backups() {
        // Newest first: two failures, then eight good ones.
        let mut ms = vec![
            manifest("f2", 200, Status::Failed),
            manifest("f1", 199, Status::Failed),
        ];
        ms.extend((0..8).map(|i| manifest(&format!("b{i}"), 100 + i, Status::Ok)));
        ms.push(manifest("old-fail", 50, Status::Failed));
        ms.push(manifest("stale-run", 40, Status::Running));
        let mut pruned = to_prune(&ms, 7);
        pruned.sort();
        // The failures stay visible; the oldest good one and anything older go.
        assert_eq!(pruned, ["b0", "old-fail", "stale-run"]);
        assert!(to_prune(&[], 7).is_empty());
    }

    #[test]
    fn due_once_per_interval() {
        let day = Duration::from_secs(86_400);
        assert!(due(None, 1_000, day));
        assert!(!due(Some(1_000), 1_000 + 86_399, day));
        assert!(due(Some(1_000), 1_000 + 86_400, day));
    }

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_795_774_824), "20261127-102024");
        assert!(valid_id(&format!("{}-ab12", utc_stamp(1_795_774_824))));
        assert!(!valid_id("../etc"));
        assert!(!valid_id(""));
    }

    #[test]
    fn manifest_round_trips_and_says_what_it_holds() {
        let mut m = manifest("20261127-102024-ab12", 5, Status::Failed);
        m.error = Some("pg_dump failed".into());
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"kind\":\"sqlite\""), "{json}");
        assert!(json.contains("\"status\":\"failed\""), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        m.error = None;
        assert!(!serde_json::to_string(&m).unwrap().contains("error"));
    }

    #[test]
    fn checksums_catch_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db.dump"), b"abc").unwrap();
        let sum = file_sum(&dir.path().join("db.dump")).unwrap();
        assert_eq!(sum.size, 3);
        assert_eq!(
            sum.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut m = manifest("x", 1, Status::Ok);
        m.files = vec![sum];
        verify(dir.path(), &m).unwrap();
        std::fs::write(dir.path().join("db.dump"), b"abd").unwrap();
        let err = verify(dir.path(), &m).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        std::fs::remove_file(dir.path().join("db.dump")).unwrap();
        assert!(verify(dir.path(), &m)
            .unwrap_err()
            .contains("cannot be read"));
    }

    #[test]
    fn a_manifest_naming_files_outside_its_folder_is_refused() {
        // Found by the property test `props::fuzz_verify`: the checksum of
        // a file outside the backup's folder passed for one of its files.
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("backup");
        std::fs::create_dir(&backup).unwrap();
        std::fs::write(dir.path().join("secret"), b"abc").unwrap();
        std::fs::write(backup.join("db.dump"), b"abc").unwrap();
        let outside = dir.path().join("secret").display().to_string();
        for name in ["../secret", outside.as_str(), "./db.dump", "db.dump/", ""] {
            let mut sum = file_sum(&backup.join("db.dump")).unwrap();
            sum.name = name.to_string();
            let mut m = manifest("x", 1, Status::Ok);
            m.files = vec![sum];
            let err = verify(&backup, &m).unwrap_err();
            assert!(
                err.contains("not a file of the backup's folder"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn sqlite_backup_and_restore_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("db.sqlite3");
        let copy = dir.path().join("copy.sqlite3");
        let app = rusqlite::Connection::open(&live).unwrap();
        app.execute_batch("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('first');")
            .unwrap();
        sqlite_copy(&live, &copy).unwrap();
        app.execute("INSERT INTO notes VALUES ('second')", [])
            .unwrap();
        sqlite_restore(&copy, &live).unwrap();
        // The app's own open connection sees the restored rows.
        let rows: Vec<String> = app
            .prepare("SELECT text FROM notes")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, ["first"]);
        let err = sqlite_copy(&dir.path().join("missing.sqlite3"), &copy).unwrap_err();
        assert!(err.contains("cannot"), "{err}");
        std::fs::write(&copy, [b'x'; 4096]).unwrap();
        let err = sqlite_copy(&copy, &dir.path().join("c2")).unwrap_err();
        assert!(err.contains("not a database"), "{err}");
    }

    #[test]
    fn media_tar_round_trip_replaces_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir_all(media.join("uploads")).unwrap();
        std::fs::write(media.join("uploads/a.png"), b"png").unwrap();
        let tar_file = dir.path().join("media.tar");
        assert!(tar_dir(&media, &tar_file).unwrap());
        std::fs::write(media.join("later.txt"), b"later").unwrap();
        std::fs::remove_file(media.join("uploads/a.png")).unwrap();
        untar_replacing(&tar_file, &media).unwrap();
        assert_eq!(std::fs::read(media.join("uploads/a.png")).unwrap(), b"png");
        assert!(!media.join("later.txt").exists());
        assert!(!tar_dir(&dir.path().join("none"), &tar_file).unwrap());
        // Owned by the app, whatever the archive recorded.
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(media.join("uploads/a.png")).unwrap();
        assert_eq!((m.uid(), m.gid()), (APP_UID, APP_UID));
    }

    #[test]
    fn a_linked_media_folder_is_neither_archived_nor_restored_into() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir_all(&media).unwrap();
        std::fs::write(media.join("a.png"), b"png").unwrap();
        let tar_file = dir.path().join("media.tar");
        assert!(tar_dir(&media, &tar_file).unwrap());

        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("keep.txt"), b"host file").unwrap();
        std::fs::remove_dir_all(&media).unwrap();
        std::os::unix::fs::symlink(&host, &media).unwrap();
        let e = tar_dir(&media, &dir.path().join("other.tar")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");

        untar_replacing(&tar_file, &media).unwrap();
        assert!(!media.is_symlink(), "the link was replaced by a folder");
        assert_eq!(std::fs::read(media.join("a.png")).unwrap(), b"png");
        assert_eq!(std::fs::read(host.join("keep.txt")).unwrap(), b"host file");
        assert!(!host.join("a.png").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with(".paas-")), "{names:?}");
    }
}

#[cfg(test)]
mod props {
    //! Property tests: backup manifests and the media archives restored
    //! into an app's volume.

    use super::*;
    use crate::fuzz::{check, ensure, raw_tar, walk, TarEntry as Entry};
    use proptest::prelude::*;
    use std::os::unix::fs::MetadataExt;

    fn manifest() -> impl Strategy<Value = Manifest> {
        let file = (any::<String>(), any::<u64>(), "[0-9a-f]{64}")
            .prop_map(|(name, size, sha256)| FileSum { name, size, sha256 });
        (
            (
                "[a-z0-9-]{1,20}",
                "[a-z][a-z0-9-]{0,10}",
                any::<bool>(),
                0u8..3,
            ),
            (any::<String>(), any::<i64>(), any::<u64>(), any::<u64>()),
            ("[0-9a-f]{64}", prop::collection::vec(file, 0..3)),
            (
                prop::option::of(any::<String>()),
                prop::option::of(any::<i64>()),
            ),
        )
            .prop_map(
                |(
                    (id, app, pg, status),
                    (trigger, created_at, duration_ms, size),
                    (sha256, files),
                    (error, release),
                )| Manifest {
                    id,
                    app,
                    kind: if pg { Kind::Postgres } else { Kind::Sqlite },
                    status: [Status::Running, Status::Ok, Status::Failed][status as usize],
                    trigger,
                    created_at,
                    duration_ms,
                    size,
                    sha256,
                    files,
                    error,
                    release,
                    counts: BTreeMap::new(),
                    offsite: None,
                },
            )
    }

    #[test]
    fn fuzz_manifest_round_trip() {
        check("manifest_round_trip", 256, manifest(), |m| {
            let json = serde_json::to_vec_pretty(&m).unwrap();
            let back: Result<Manifest, _> = serde_json::from_slice(&json);
            ensure(back.as_ref().ok() == Some(&m), || {
                format!("{m:?} read back as {back:?}")
            })
        });
        let text = prop_oneof![
            any::<String>(),
            "\\{\"id\":\"[a-z]{0,3}\",\"kind\":\"(sqlite|postgres|x)\",\"status\":\"(ok|failed)\",\"files\":\\[(\\{\"name\":\"[./a-z]{0,6}\",\"size\":-?[0-9]{1,3},\"sha256\":\"\"\\})?\\]\\}",
        ];
        check("manifest_text", 256, text, |text| {
            // Whatever is on disk: a manifest or none, never a panic.
            let _ = serde_json::from_str::<Manifest>(&text);
            Ok(())
        });
    }

    #[test]
    fn fuzz_verify() {
        let name = prop::sample::select(vec![
            "db.dump",
            "media.tar",
            "../outside/secret",
            "OUTSIDE_ABS",
            "db.dump/../../outside/secret",
            "./db.dump",
            "sub/x",
            ".",
            "..",
            "",
        ]);
        check("verify", 96, prop::collection::vec(name, 0..4), |names| {
            let sandbox = tempfile::tempdir().unwrap();
            let s = sandbox.path();
            let dir = s.join("backup");
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::create_dir_all(s.join("outside")).unwrap();
            std::fs::write(dir.join("db.dump"), "dump").unwrap();
            std::fs::write(dir.join("media.tar"), "tar").unwrap();
            std::fs::write(dir.join("sub/x"), "x").unwrap();
            std::fs::write(s.join("outside/secret"), "SECRET").unwrap();
            let abs = s.join("outside/secret").display().to_string();
            // Each name with the checksum of what it would reach.
            let files: Vec<FileSum> = names
                .iter()
                .map(|n| {
                    let name = n.replace("OUTSIDE_ABS", &abs);
                    let sum = file_sum(&dir.join(&name)).ok();
                    FileSum {
                        name,
                        size: sum.as_ref().map_or(0, |f| f.size),
                        sha256: sum.map(|f| f.sha256).unwrap_or_default(),
                    }
                })
                .collect();
            let m = Manifest {
                id: "x".into(),
                app: "blog".into(),
                kind: Kind::Postgres,
                status: Status::Ok,
                trigger: "manual".into(),
                created_at: 0,
                duration_ms: 0,
                size: 0,
                sha256: String::new(),
                files: files.clone(),
                error: None,
                release: None,
                counts: BTreeMap::new(),
                offsite: None,
            };
            let got = verify(&dir, &m);
            if got.is_ok() {
                for f in &files {
                    let comps: Vec<_> = Path::new(&f.name).components().collect();
                    ensure(
                        comps.len() == 1
                            && matches!(comps[0], std::path::Component::Normal(_))
                            && comps[0].as_os_str() == f.name.as_str(),
                        || {
                            format!("verify accepted the file {:?}, which is not a name in the backup's folder", f.name)
                        },
                    )?;
                }
            }
            Ok(())
        });
    }

    fn tar_entry() -> impl Strategy<Value = Entry> {
        let name = prop::sample::select(vec![
            "a",
            "b/c",
            "../escape",
            "/abs",
            "a/../../escape",
            "./a",
            "a//b",
            "l/x",
            "l",
            "h",
            ".",
            "d/",
            "up/pwn",
            "d/e/f",
        ]);
        let target = prop::sample::select(vec![
            "/",
            "../outside",
            ".",
            "a",
            "OUTSIDE_ABS",
            "../../outside/secret",
        ]);
        prop_oneof![
            3 => (name.clone(), "[a-z]{0,8}").prop_map(|(n, c)| Entry::File(n.into(), c.into_bytes())),
            1 => name.clone().prop_map(|n| Entry::Dir(n.into())),
            2 => (name.clone(), target.clone()).prop_map(|(n, t)| Entry::Symlink(n.into(), t)),
            2 => (name.clone(), target).prop_map(|(n, t)| Entry::Hardlink(n.into(), t)),
            1 => name.clone().prop_map(|n| Entry::Fifo(n.into())),
            1 => name.prop_map(|n| Entry::CharDevice(n.into())),
        ]
    }

    #[test]
    fn fuzz_untar_replacing() {
        let input = (prop::collection::vec(tar_entry(), 0..8), any::<bool>());
        check("untar_replacing", 128, input, |(entries, planted_link)| {
            let sandbox = tempfile::tempdir().unwrap();
            let s = sandbox.path();
            std::fs::create_dir(s.join("outside")).unwrap();
            std::fs::write(s.join("outside/secret"), "SECRET").unwrap();
            let volume = s.join("volume");
            std::fs::create_dir(&volume).unwrap();
            let media = volume.join("media");
            if planted_link {
                std::os::unix::fs::symlink(s.join("outside"), &media).unwrap();
            } else {
                std::fs::create_dir(&media).unwrap();
                std::fs::write(media.join("old.txt"), "old").unwrap();
            }
            let abs = s.join("outside").display().to_string();
            let tar_file = s.join("media.tar");
            std::fs::write(&tar_file, raw_tar(&entries, &abs)).unwrap();

            let got = untar_replacing(&tar_file, &media);

            let outside: Vec<_> = std::fs::read_dir(s.join("outside")).unwrap().collect();
            let secret = std::fs::symlink_metadata(s.join("outside/secret")).unwrap();
            ensure(
                outside.len() == 1
                    && std::fs::read(s.join("outside/secret")).unwrap() == b"SECRET"
                    && secret.nlink() == 1
                    && secret.uid() == 0,
                || format!("restoring {entries:?} reached the folder outside (result {got:?})"),
            )?;
            let mut top: Vec<String> = std::fs::read_dir(s)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            top.sort();
            ensure(top == ["media.tar", "outside", "volume"], || {
                format!("restoring {entries:?} wrote beside the volume: {top:?}")
            })?;
            let around: Vec<String> = std::fs::read_dir(&volume)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            ensure(around == ["media"], || {
                format!("restoring {entries:?} left {around:?} in the volume (result {got:?})")
            })?;
            let meta = std::fs::symlink_metadata(&media).unwrap();
            if got.is_err() {
                // Nothing replaced: the old folder (or the planted link) stays.
                let unchanged = if planted_link {
                    meta.file_type().is_symlink()
                } else {
                    meta.is_dir() && std::fs::read(media.join("old.txt")).is_ok_and(|c| c == b"old")
                };
                return ensure(unchanged, || {
                    format!("a failed restore of {entries:?} changed the media folder")
                });
            }
            ensure(meta.is_dir() && meta.uid() == APP_UID, || {
                format!("after restoring {entries:?} media is {meta:?}")
            })?;
            let mut all = Vec::new();
            walk(&media, &mut all);
            for (p, m) in &all {
                let t = m.file_type();
                ensure(t.is_dir() || t.is_file() || t.is_symlink(), || {
                    format!("restoring {entries:?} made the special file {p:?}")
                })?;
                ensure(m.uid() == APP_UID && m.gid() == APP_UID, || {
                    format!(
                        "restoring {entries:?} left {p:?} owned by {}:{}",
                        m.uid(),
                        m.gid()
                    )
                })?;
                ensure(
                    m.mode() & 0o7000 == 0 && m.mode() & 0o022 == 0 || t.is_symlink(),
                    || format!("restoring {entries:?} left {p:?} with mode {:o}", m.mode()),
                )?;
                ensure(!t.is_file() || m.nlink() == 1, || {
                    format!("restoring {entries:?} made a hard link {p:?}")
                })?;
            }
            Ok(())
        });
    }
}
