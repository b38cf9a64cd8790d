//! The daemon's state in SQLite: apps, releases, config vars, domains.
//!
//! Typed methods only; no SQL lives anywhere else. The schema is a list of
//! embedded migrations applied in order and tracked with `PRAGMA user_version`,
//! so an old data dir upgrades itself on start.
//!
//! Calls are short (single-row reads and writes on a local file), so the
//! connection sits behind a plain mutex and is used from async code directly.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Schema migrations, in order. Append only: never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE apps (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_key  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE releases (
    id              INTEGER PRIMARY KEY,
    app_id          INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    commit_sha      TEXT NOT NULL,
    image           TEXT,
    status          TEXT NOT NULL,
    error           TEXT,
    log             TEXT NOT NULL DEFAULT '',
    config          TEXT NOT NULL DEFAULT '{}',
    timings         TEXT NOT NULL DEFAULT '{}',
    meta            TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    UNIQUE (app_id, version)
);
CREATE TABLE config_vars (
    app_id  INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (app_id, key)
);
CREATE TABLE domains (
    app_id  INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    host    TEXT NOT NULL UNIQUE
);
"#,
    r#"
ALTER TABLE releases ADD COLUMN description TEXT NOT NULL DEFAULT '';
"#,
    r#"
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    hash          TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
"#,
    // A token's scope: `app` NULL is an admin-scoped token (what every token
    // made before this was); an app's name makes a deploy-only token for it.
    // `created_by` names the token that minted it (NULL: the admin token),
    // so revoking a token revokes what it made.
    r#"
ALTER TABLE api_tokens ADD COLUMN app TEXT;
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;
"#,
    // Server-wide settings, one JSON value per key: the offsite backup
    // target (with its secret), the backup passphrase, the last drills.
    r#"
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"#,
];

/// Where a release is in its deploy. Stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Queued,
    Building,
    Releasing,
    Starting,
    HealthChecking,
    Live,
    Failed,
    Retired,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Building => "building",
            Self::Releasing => "releasing",
            Self::Starting => "starting",
            Self::HealthChecking => "health_checking",
            Self::Live => "live",
            Self::Failed => "failed",
            Self::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "building" => Self::Building,
            "releasing" => Self::Releasing,
            "starting" => Self::Starting,
            "health_checking" => Self::HealthChecking,
            "live" => Self::Live,
            "retired" => Self::Retired,
            _ => Self::Failed,
        }
    }

    /// Still moving: a daemon that finds one of these on boot was killed mid-deploy.
    pub fn in_flight(self) -> bool {
        !matches!(self, Self::Live | Self::Failed | Self::Retired)
    }
}

/// One app.
#[derive(Debug, Clone, Serialize)]
pub struct App {
    pub id: i64,
    pub name: String,
    #[serde(skip)]
    pub secret_key: String,
    pub created_at: i64,
}

/// What a release knows about itself, kept with it in the store (as JSON)
/// so that a rollback or restart runs with the facts its release had: where
/// the build put the static files and where media live (the buildpack's
/// `/paas/meta.json`), the health check of the repository's `paas.toml`,
/// and the Procfile's processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseMeta {
    /// Django's STATIC_URL (`/static/`), when staticfiles is installed.
    pub static_url: Option<String>,
    /// STATIC_ROOT inside the image: collectstatic's output, copied out
    /// of the image so the proxy serves it.
    pub static_root: Option<String>,
    /// Django's MEDIA_URL (`/media/`).
    pub media_url: Option<String>,
    /// MEDIA_ROOT inside the container; the proxy serves it when it lies
    /// in the app's volume (`/data/…`).
    pub media_root: Option<String>,
    /// The `[healthcheck]` table of the pushed `paas.toml`, when it set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthTable>,
    /// The Procfile's processes: name → command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processes: BTreeMap<String, String>,
    /// The `[cron.NAME]` jobs of the pushed `paas.toml`: name → job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cron: BTreeMap<String, crate::cron_table::CronJob>,
}

/// One release of an app (a deploy attempt, successful or not).
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub id: i64,
    pub app: String,
    pub version: i64,
    pub commit_sha: String,
    pub image: Option<String>,
    pub status: ReleaseStatus,
    pub error: Option<String>,
    #[serde(skip)]
    pub log: String,
    /// Step name → milliseconds, in the order the steps ran.
    pub timings: Vec<(String, u64)>,
    /// What the build found out (static and media locations, health
    /// check, processes).
    pub meta: ReleaseMeta,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// What made this release: `deploy abc1234`, `rollback to v3`, `restart`, `config change`.
    pub description: String,
    /// The config vars the release ran with (a snapshot; may hold secrets, never log it).
    #[serde(skip)]
    pub config: BTreeMap<String, String>,
}

impl Release {
    /// Wall time of the deploy in seconds, when it has finished.
    pub fn duration_secs(&self) -> Option<i64> {
        self.finished_at.map(|f| f - self.created_at)
    }
}

/// A failure of the state database. Rare; the message says where to look.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the state database failed ({0}); check that the data dir is writable and the disk is not full")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no app named {0:?}; create it with `paas apps:create {0}` or push to it")]
    NoSuchApp(String),
    #[error("an app named {0:?} exists already")]
    AppExists(String),
    #[error("a token named {0:?} exists already: pick another --name, or revoke it first with `paas tokens:revoke {0}`")]
    TokenExists(String),
    #[error("no token named {0:?}: `paas tokens` lists them")]
    NoSuchToken(String),
}

/// An API token as listed: never its secret, nor its hash.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// `None`: admin scope. `Some(app)`: may only deploy and read that app.
    pub app: Option<String>,
    /// The token that minted this one (`None`: the admin token).
    pub created_by: Option<String>,
}

/// A live token, as a presented secret resolves to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    pub name: String,
    /// `None`: admin scope; `Some(app)`: deploy-only for that app.
    pub app: Option<String>,
}

/// Most bytes one release's log keeps in the store: a build that prints
/// without end (a looping compiler, a chatty install) cannot fill the disk.
pub const RELEASE_LOG_MAX: usize = 1 << 20;

/// What stands where a capped log left lines out.
const LOG_CUT: &str = "\n[... paas left out lines here: a release keeps the first and the last of its log, 1 MiB in all ...]\n";

/// `log` followed by `more`, at most `max` bytes (`max` well above
/// [`LOG_CUT`]'s length): past it, the first quarter of the log (how the
/// build started), [`LOG_CUT`], then the newest lines (how it ended). Cuts
/// fall on line starts where one is near, never inside a character.
pub fn cap_log(mut log: String, more: &str, max: usize) -> String {
    log.push_str(more);
    if log.len() <= max {
        return log;
    }
    let (head, rest) = match log.find(LOG_CUT) {
        Some(i) => (&log[..i], &log[i + LOG_CUT.len()..]),
        None => {
            let mut end = floor_boundary(&log, max / 4);
            if let Some(nl) = log[..end].rfind('\n') {
                end = nl + 1;
            }
            (&log[..end], &log[end..])
        }
    };
    let room = max.saturating_sub(head.len() + LOG_CUT.len());
    let mut start = ceil_boundary(rest, rest.len().saturating_sub(room));
    if let Some(nl) = rest[start..].find('\n') {
        if nl + 1 < rest.len() - start {
            start += nl + 1;
        }
    }
    format!("{head}{LOG_CUT}{}", &rest[start..])
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The state database.
pub struct Store {
    conn: Mutex<Connection>,
}

/// Applies the migrations `conn` has not seen yet.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {sql} PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// Replaces the whole state with the database at `src` (a whole-server
    /// restore onto a fresh install), then brings it to this version's schema.
    pub fn restore_from(&self, src: &Path) -> Result<(), StoreError> {
        let from = Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut db = self.db();
        {
            let backup = rusqlite::backup::Backup::new(&from, &mut db)?;
            backup.run_to_completion(256, std::time::Duration::from_millis(10), None)?;
        }
        migrate(&db)?;
        Ok(())
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (every
        // write is one statement or one transaction), so poison is ignored.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- apps ----

    /// Create an app with its generated secret key.
    pub fn create_app(&self, name: &str, secret_key: &str) -> Result<App, StoreError> {
        let db = self.db();
        let n = db.execute(
            "INSERT OR IGNORE INTO apps (name, secret_key, created_at) VALUES (?1, ?2, ?3)",
            params![name, secret_key, now()],
        )?;
        if n == 0 {
            return Err(StoreError::AppExists(name.into()));
        }
        drop(db);
        self.app(name)
    }

    /// The app of that name.
    pub fn app(&self, name: &str) -> Result<App, StoreError> {
        self.find_app(name)?
            .ok_or_else(|| StoreError::NoSuchApp(name.into()))
    }

    /// The app of that name, if any.
    pub fn find_app(&self, name: &str) -> Result<Option<App>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT id, name, secret_key, created_at FROM apps WHERE name = ?1",
                [name],
                app_row,
            )
            .optional()?)
    }

    /// Every app, by name.
    pub fn apps(&self) -> Result<Vec<App>, StoreError> {
        let db = self.db();
        let mut st =
            db.prepare("SELECT id, name, secret_key, created_at FROM apps ORDER BY name")?;
        let rows = st.query_map([], app_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete an app and everything recorded about it.
    pub fn delete_app(&self, name: &str) -> Result<(), StoreError> {
        let n = self
            .db()
            .execute("DELETE FROM apps WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(StoreError::NoSuchApp(name.into()));
        }
        Ok(())
    }

    // ---- releases ----

    /// Record a new release (next version number) in status `Queued`.
    pub fn create_release(
        &self,
        app: &App,
        commit_sha: &str,
        description: &str,
    ) -> Result<Release, StoreError> {
        let db = self.db();
        let version: i64 = db.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app_id = ?1",
            [app.id],
            |r| r.get(0),
        )?;
        db.execute(
            "INSERT INTO releases (app_id, version, commit_sha, status, created_at, description) VALUES (?1, ?2, ?3, 'queued', ?4, ?5)",
            params![app.id, version, commit_sha, now(), description],
        )?;
        let id = db.last_insert_rowid();
        drop(db);
        self.release_by_id(id)
    }

    fn release_by_id(&self, id: i64) -> Result<Release, StoreError> {
        Ok(self.db().query_row(
            &format!("{RELEASE_SELECT} WHERE r.id = ?1"),
            [id],
            release_row,
        )?)
    }

    /// Release `version` of `app`, if it exists.
    pub fn release(&self, app: &str, version: i64) -> Result<Option<Release>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &format!("{RELEASE_SELECT} WHERE a.name = ?1 AND r.version = ?2"),
                params![app, version],
                release_row,
            )
            .optional()?)
    }

    /// Releases of an app, newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<Release>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "{RELEASE_SELECT} WHERE a.name = ?1 ORDER BY r.version DESC"
        ))?;
        let rows = st.query_map([app], release_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The release currently serving the app, if any.
    pub fn live_release(&self, app: &str) -> Result<Option<Release>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &format!(
                    "{RELEASE_SELECT} WHERE a.name = ?1 AND r.status = 'live' ORDER BY r.version DESC LIMIT 1"
                ),
                [app],
                release_row,
            )
            .optional()?)
    }

    /// Releases of every app that were still in flight (the daemon died mid-deploy).
    pub fn in_flight_releases(&self) -> Result<Vec<Release>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "{RELEASE_SELECT} WHERE r.status NOT IN ('live', 'failed', 'retired')"
        ))?;
        let rows = st.query_map([], release_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Move a release to a new status.
    pub fn set_status(&self, release_id: i64, status: ReleaseStatus) -> Result<(), StoreError> {
        let finished = (!status.in_flight()).then(now);
        self.db().execute(
            "UPDATE releases SET status = ?2, finished_at = COALESCE(?3, finished_at) WHERE id = ?1",
            params![release_id, status.as_str(), finished],
        )?;
        Ok(())
    }

    /// Mark a release failed with the sentence the user sees.
    pub fn fail_release(&self, release_id: i64, error: &str) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE releases SET status = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1",
            params![release_id, error, now()],
        )?;
        Ok(())
    }

    /// Make `release_id` the live one and retire whichever was live before;
    /// with `config`, the app's config vars become exactly those (a rollback
    /// restores its release's), in the same transaction.
    pub fn promote(
        &self,
        app: &App,
        release_id: i64,
        config: Option<&BTreeMap<String, String>>,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        if let Some(vars) = config {
            tx.execute("DELETE FROM config_vars WHERE app_id = ?1", [app.id])?;
            for (k, v) in vars {
                tx.execute(
                    "INSERT INTO config_vars (app_id, key, value) VALUES (?1, ?2, ?3)",
                    params![app.id, k, v],
                )?;
            }
        }
        tx.execute(
            "UPDATE releases SET status = 'retired' WHERE app_id = ?1 AND status = 'live' AND id != ?2",
            params![app.id, release_id],
        )?;
        tx.execute(
            "UPDATE releases SET status = 'live', finished_at = ?2 WHERE id = ?1",
            params![release_id, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record the image, build facts, config snapshot and step timings of a release.
    pub fn update_release(
        &self,
        release_id: i64,
        image: Option<&str>,
        meta: &ReleaseMeta,
        config: &BTreeMap<String, String>,
        timings: &[(String, u64)],
    ) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE releases SET image = COALESCE(?2, image), meta = ?3, config = ?4, timings = ?5 WHERE id = ?1",
            params![
                release_id,
                image,
                serde_json::to_string(meta).unwrap_or_default(),
                serde_json::to_string(config).unwrap_or_default(),
                serde_json::to_string(timings).unwrap_or_default()
            ],
        )?;
        Ok(())
    }

    /// Append lines to a release's log (kept for the dashboard).
    /// Release logs are capped at [`RELEASE_LOG_MAX`] bytes: past it the
    /// log keeps its beginning and its newest lines (see [`cap_log`]).
    pub fn append_log(&self, release_id: i64, text: &str) -> Result<(), StoreError> {
        let db = self.db();
        let appended = db.execute(
            "UPDATE releases SET log = log || ?2
             WHERE id = ?1 AND length(CAST(log AS BLOB)) + ?3 <= ?4",
            params![release_id, text, text.len() as i64, RELEASE_LOG_MAX as i64],
        )?;
        if appended == 0 {
            let log: Option<String> = db
                .query_row(
                    "SELECT log FROM releases WHERE id = ?1",
                    [release_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(log) = log {
                db.execute(
                    "UPDATE releases SET log = ?2 WHERE id = ?1",
                    params![release_id, cap_log(log, text, RELEASE_LOG_MAX)],
                )?;
            }
        }
        Ok(())
    }

    /// Bytes of the release logs each app holds in the store: (app, bytes).
    pub fn release_log_bytes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT a.name, COALESCE(SUM(length(CAST(r.log AS BLOB))), 0)
             FROM apps a LEFT JOIN releases r ON r.app_id = a.id GROUP BY a.name",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- config vars ----

    /// The app's config vars.
    pub fn config_vars(&self, app: &App) -> Result<BTreeMap<String, String>, StoreError> {
        let db = self.db();
        let mut st = db.prepare("SELECT key, value FROM config_vars WHERE app_id = ?1")?;
        let rows = st.query_map([app.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Set (and with `None`, unset) config vars in one transaction.
    pub fn set_config_vars(
        &self,
        app: &App,
        changes: &[(String, Option<String>)],
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for (k, v) in changes {
            match v {
                Some(v) => tx.execute(
                    "INSERT INTO config_vars (app_id, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value",
                    params![app.id, k, v],
                )?,
                None => tx.execute(
                    "DELETE FROM config_vars WHERE app_id = ?1 AND key = ?2",
                    params![app.id, k],
                )?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    /// Replace all of the app's config vars with `vars` (a rollback restores a snapshot).
    pub fn replace_config_vars(
        &self,
        app: &App,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute("DELETE FROM config_vars WHERE app_id = ?1", [app.id])?;
        for (k, v) in vars {
            tx.execute(
                "INSERT INTO config_vars (app_id, key, value) VALUES (?1, ?2, ?3)",
                params![app.id, k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- API tokens ----

    /// Record a token by the SHA-256 hex of its secret: admin-scoped when
    /// `app` is `None`, else deploy-only for that app; `created_by` is the
    /// minting token's name (`None`: the admin token).
    pub fn create_token(
        &self,
        name: &str,
        hash: &str,
        app: Option<&str>,
        created_by: Option<&str>,
    ) -> Result<ApiToken, StoreError> {
        let created_at = now();
        let n = self.db().execute(
            "INSERT OR IGNORE INTO api_tokens (name, hash, created_at, app, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, hash, created_at, app, created_by],
        )?;
        if n == 0 {
            return Err(StoreError::TokenExists(name.into()));
        }
        Ok(ApiToken {
            name: name.into(),
            created_at,
            last_used_at: None,
            app: app.map(str::to_string),
            created_by: created_by.map(str::to_string),
        })
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT name, created_at, last_used_at, app, created_by FROM api_tokens ORDER BY name",
        )?;
        let rows = st.query_map([], |r| {
            Ok(ApiToken {
                name: r.get(0)?,
                created_at: r.get(1)?,
                last_used_at: r.get(2)?,
                app: r.get(3)?,
                created_by: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete a token and every token minted by it, or by those, and so on:
    /// they stop working with the next request. Answers the names deleted,
    /// the named one first.
    pub fn revoke_token(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let names: Vec<String> = {
            let mut st = tx.prepare(
                "WITH RECURSIVE doomed(name, depth) AS (
                     SELECT name, 0 FROM api_tokens WHERE name = ?1
                     UNION
                     SELECT t.name, d.depth + 1 FROM api_tokens t JOIN doomed d ON t.created_by = d.name
                 )
                 SELECT name FROM doomed ORDER BY depth, name",
            )?;
            let rows = st.query_map([name], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if names.is_empty() {
            return Err(StoreError::NoSuchToken(name.into()));
        }
        for n in &names {
            tx.execute("DELETE FROM api_tokens WHERE name = ?1", [n])?;
        }
        tx.commit()?;
        Ok(names)
    }

    /// Delete the deploy-only tokens of an app (the app is gone): answers
    /// their names.
    pub fn revoke_app_tokens(&self, app: &str) -> Result<Vec<String>, StoreError> {
        let names: Vec<String> = {
            let db = self.db();
            let mut st = db.prepare("SELECT name FROM api_tokens WHERE app = ?1 ORDER BY name")?;
            let rows = st.query_map([app], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut gone = Vec::new();
        for n in names {
            match self.revoke_token(&n) {
                Ok(mut list) => gone.append(&mut list),
                // Revoked already, as a descendant of an earlier one.
                Err(StoreError::NoSuchToken(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(gone)
    }

    /// The token with this hash, if any; marks it used.
    pub fn use_token(&self, hash: &str) -> Result<Option<TokenScope>, StoreError> {
        let db = self.db();
        let found: Option<TokenScope> = db
            .query_row(
                "SELECT name, app FROM api_tokens WHERE hash = ?1",
                [hash],
                |r| {
                    Ok(TokenScope {
                        name: r.get(0)?,
                        app: r.get(1)?,
                    })
                },
            )
            .optional()?;
        if found.is_some() {
            // At most one write a minute per token, not one per request.
            db.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE hash = ?1
                 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
                params![hash, now()],
            )?;
        }
        Ok(found)
    }

    // ---- settings ----

    /// A server-wide setting, if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets (or replaces) a server-wide setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Removes a server-wide setting; false when it was not set.
    pub fn unset_setting(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .db()
            .execute("DELETE FROM settings WHERE key = ?1", [key])?
            == 1)
    }

    /// A consistent copy of the whole state database at `dst` (SQLite's
    /// online backup API), for the whole-server backup.
    pub fn copy_to(&self, dst: &Path) -> Result<(), StoreError> {
        self.db().backup(rusqlite::DatabaseName::Main, dst, None)?;
        Ok(())
    }

    // ---- domains ----

    /// Custom domains of an app (the default `<app>.<domain>` is not stored).
    pub fn domains(&self, app: &App) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut st = db.prepare("SELECT host FROM domains WHERE app_id = ?1 ORDER BY host")?;
        let rows = st.query_map([app.id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The app that has `host` as a custom domain, if any.
    pub fn domain_owner(&self, host: &str) -> Result<Option<String>, StoreError> {
        let db = self.db();
        Ok(db
            .query_row(
                "SELECT a.name FROM domains d JOIN apps a ON a.id = d.app_id WHERE d.host = ?1",
                [host],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Adds a custom domain; false when the app has it already.
    pub fn add_domain(&self, app: &App, host: &str) -> Result<bool, StoreError> {
        let db = self.db();
        let n = db.execute(
            "INSERT OR IGNORE INTO domains (app_id, host) VALUES (?1, ?2)",
            rusqlite::params![app.id, host],
        )?;
        Ok(n == 1)
    }

    /// Removes a custom domain; false when the app did not have it.
    pub fn remove_domain(&self, app: &App, host: &str) -> Result<bool, StoreError> {
        let db = self.db();
        let n = db.execute(
            "DELETE FROM domains WHERE app_id = ?1 AND host = ?2",
            rusqlite::params![app.id, host],
        )?;
        Ok(n == 1)
    }
}

const RELEASE_SELECT: &str =
    "SELECT r.id, a.name, r.version, r.commit_sha, r.image, r.status, r.error, r.log,
    r.timings, r.meta, r.created_at, r.finished_at, r.description, r.config FROM releases r JOIN apps a ON a.id = r.app_id";

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        id: r.get(0)?,
        name: r.get(1)?,
        secret_key: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn release_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Release> {
    let status: String = r.get(5)?;
    let timings: String = r.get(8)?;
    let meta: String = r.get(9)?;
    Ok(Release {
        id: r.get(0)?,
        app: r.get(1)?,
        version: r.get(2)?,
        commit_sha: r.get(3)?,
        image: r.get(4)?,
        status: ReleaseStatus::parse(&status),
        error: r.get(6)?,
        log: r.get(7)?,
        timings: serde_json::from_str(&timings).unwrap_or_default(),
        // Written by `update_release` only; an older or unreadable row
        // reads as "nothing known" rather than failing the whole list.
        meta: serde_json::from_str(&meta).unwrap_or_default(),
        created_at: r.get(10)?,
        finished_at: r.get(11)?,
        description: r.get(12)?,
        config: serde_json::from_str(&r.get::<_, String>(13)?).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_number_up_and_promotion_retires_the_previous() {
        let s = Store::open_in_memory().unwrap();
        let app = s.create_app("blog", "k").unwrap();
        assert!(matches!(
            s.create_app("blog", "k"),
            Err(StoreError::AppExists(_))
        ));
        let r1 = s.create_release(&app, "aaa", "deploy aaa").unwrap();
        let r2 = s.create_release(&app, "bbb", "deploy bbb").unwrap();
        assert_eq!((r1.version, r2.version), (1, 2));
        s.promote(&app, r1.id, None).unwrap();
        assert_eq!(s.live_release("blog").unwrap().unwrap().version, 1);
        s.promote(&app, r2.id, None).unwrap();
        assert_eq!(s.live_release("blog").unwrap().unwrap().version, 2);
        assert_eq!(
            s.release("blog", 1).unwrap().unwrap().status,
            ReleaseStatus::Retired
        );
        let r3 = s.create_release(&app, "ccc", "deploy ccc").unwrap();
        s.set_status(r3.id, ReleaseStatus::Building).unwrap();
        assert_eq!(s.in_flight_releases().unwrap().len(), 1);
        s.fail_release(r3.id, "boom").unwrap();
        assert!(s.in_flight_releases().unwrap().is_empty());
        assert_eq!(s.live_release("blog").unwrap().unwrap().version, 2);
    }

    #[test]
    fn config_vars_set_and_unset() {
        let s = Store::open_in_memory().unwrap();
        let app = s.create_app("blog", "k").unwrap();
        s.set_config_vars(
            &app,
            &[
                ("A".into(), Some("1".into())),
                ("B".into(), Some("2".into())),
            ],
        )
        .unwrap();
        s.set_config_vars(&app, &[("A".into(), None), ("B".into(), Some("3".into()))])
            .unwrap();
        let vars = s.config_vars(&app).unwrap();
        assert_eq!(vars.len(), 1);
        assert_eq!(vars["B"], "3");
        let snapshot = BTreeMap::from([("C".to_string(), "4".to_string())]);
        s.replace_config_vars(&app, &snapshot).unwrap();
        assert_eq!(s.config_vars(&app).unwrap(), snapshot);
    }

    #[test]
    fn tokens_are_created_listed_used_and_revoked() {
        let s = Store::open_in_memory().unwrap();
        s.create_token("laptop", "h1", None, None).unwrap();
        let e = s.create_token("laptop", "h2", None, None).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        let used = s.use_token("h1").unwrap().unwrap();
        assert_eq!((used.name.as_str(), used.app), ("laptop", None));
        assert_eq!(s.use_token("h2").unwrap(), None);
        let list = s.tokens().unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].last_used_at.is_some());
        assert_eq!(s.revoke_token("laptop").unwrap(), vec!["laptop"]);
        assert_eq!(s.use_token("h1").unwrap(), None);
        let e = s.revoke_token("laptop").unwrap_err();
        assert!(matches!(e, StoreError::NoSuchToken(_)), "{e}");
    }

    #[test]
    fn revoking_a_token_revokes_what_it_minted_and_an_app_takes_its_deploy_tokens() {
        let s = Store::open_in_memory().unwrap();
        s.create_token("ops", "h-ops", None, None).unwrap();
        s.create_token("ci", "h-ci", Some("blog"), Some("ops"))
            .unwrap();
        s.create_token("ops2", "h-ops2", None, Some("ops")).unwrap();
        s.create_token("deep", "h-deep", Some("shop"), Some("ops2"))
            .unwrap();
        s.create_token("other", "h-other", Some("blog"), None)
            .unwrap();
        let scope = s.use_token("h-ci").unwrap().unwrap();
        assert_eq!(scope.app.as_deref(), Some("blog"));
        assert_eq!(
            s.revoke_token("ops").unwrap(),
            vec!["ops", "ci", "ops2", "deep"]
        );
        let left: Vec<String> = s.tokens().unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(left, vec!["other"]);
        assert_eq!(s.revoke_app_tokens("blog").unwrap(), vec!["other"]);
        assert!(s.tokens().unwrap().is_empty());
    }

    #[test]
    fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("paas.db");
        {
            let s = Store::open(&p).unwrap();
            let app = s.create_app("blog", "k").unwrap();
            s.create_release(&app, "aaa", "deploy aaa").unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.releases("blog").unwrap().len(), 1);
        s.delete_app("blog").unwrap();
        assert!(s.releases("blog").unwrap().is_empty());
    }

    #[test]
    fn release_facts_are_read_back_as_a_type() {
        let s = Store::open_in_memory().unwrap();
        let app = s.create_app("blog", "k").unwrap();
        let r = s.create_release(&app, "aaa", "deploy aaa").unwrap();
        assert_eq!(r.meta, ReleaseMeta::default(), "nothing known yet");
        // As the buildpack writes /paas/meta.json, with paas' own facts added.
        let mut meta: ReleaseMeta = serde_json::from_str(
            r#"{"static_url": "/static/", "static_root": "/app/staticfiles",
                "media_url": "/media/", "media_root": "/data/media", "extra": 1}"#,
        )
        .unwrap();
        meta.processes
            .insert("worker".into(), "celery -A x worker".into());
        meta.healthcheck = Some(crate::health::HealthTable {
            path: Some("/up/".into()),
            ..Default::default()
        });
        s.update_release(r.id, Some("paas/blog:v1"), &meta, &BTreeMap::new(), &[])
            .unwrap();
        assert_eq!(s.release("blog", 1).unwrap().unwrap().meta, meta);
        // A row written before the facts had a type: same JSON, same facts.
        s.db()
            .execute(
                "UPDATE releases SET meta = ?2 WHERE id = ?1",
                params![
                    r.id,
                    r#"{"static_url": null, "static_root": null, "media_url": "/media/",
                        "media_root": "/data/media", "processes": {"web": "gunicorn x"},
                        "healthcheck": {"attempts": 3}}"#
                ],
            )
            .unwrap();
        let old = s.release("blog", 1).unwrap().unwrap().meta;
        assert_eq!(old.media_url.as_deref(), Some("/media/"));
        assert_eq!(old.static_root, None);
        assert_eq!(old.processes["web"], "gunicorn x");
        assert_eq!(old.healthcheck.unwrap().attempts, Some(3));
    }

    #[test]
    fn settings_are_set_replaced_and_unset() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.setting("offsite").unwrap(), None);
        s.set_setting("offsite", "{\"a\":1}").unwrap();
        s.set_setting("offsite", "{\"a\":2}").unwrap();
        assert_eq!(s.setting("offsite").unwrap().as_deref(), Some("{\"a\":2}"));
        assert!(s.unset_setting("offsite").unwrap());
        assert!(!s.unset_setting("offsite").unwrap());
        assert_eq!(s.setting("offsite").unwrap(), None);
    }

    #[test]
    fn a_copy_restores_the_whole_state_into_a_fresh_store() {
        let dir = tempfile::tempdir().unwrap();
        let old = Store::open(&dir.path().join("old.db")).unwrap();
        let app = old.create_app("blog", "k").unwrap();
        old.set_config_vars(&app, &[("A".into(), Some("1".into()))])
            .unwrap();
        old.add_domain(&app, "blog.example.com").unwrap();
        old.create_token("laptop", "h1", None, None).unwrap();
        old.copy_to(&dir.path().join("copy.db")).unwrap();
        let fresh = Store::open(&dir.path().join("fresh.db")).unwrap();
        fresh.create_app("other", "k2").unwrap();
        fresh.restore_from(&dir.path().join("copy.db")).unwrap();
        let names: Vec<String> = fresh.apps().unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["blog"]);
        let app = fresh.app("blog").unwrap();
        assert_eq!(fresh.config_vars(&app).unwrap()["A"], "1");
        assert_eq!(fresh.domains(&app).unwrap(), ["blog.example.com"]);
        assert!(fresh.use_token("h1").unwrap().is_some());
    }

    #[test]
    fn promoting_with_a_config_replaces_the_vars_in_the_same_step() {
        let s = Store::open_in_memory().unwrap();
        let app = s.create_app("blog", "k").unwrap();
        s.set_config_vars(&app, &[("NEW".into(), Some("1".into()))])
            .unwrap();
        let r = s.create_release(&app, "aaa", "rollback to v1").unwrap();
        let old = BTreeMap::from([("OLD".to_string(), "2".to_string())]);
        s.promote(&app, r.id, Some(&old)).unwrap();
        assert_eq!(s.config_vars(&app).unwrap(), old);
        assert_eq!(s.live_release("blog").unwrap().unwrap().id, r.id);
    }

    #[test]
    fn a_release_log_keeps_its_start_and_its_end_within_the_cap() {
        let s = Store::open_in_memory().unwrap();
        let app = s.create_app("blog", "k").unwrap();
        let r = s.create_release(&app, "aaa", "deploy aaa").unwrap();
        s.append_log(r.id, "Building image paas/blog:v1\n").unwrap();
        // 3 MiB of build output, a line at a time in big appends.
        let chunk: String = (0..1000).map(|i| format!("compiling é {i}\n")).collect();
        for _ in 0..(3 << 20) / chunk.len() {
            s.append_log(r.id, &chunk).unwrap();
        }
        s.append_log(r.id, "ERROR: the last line\n").unwrap();
        let log = s.release("blog", 1).unwrap().unwrap().log;
        assert!(log.len() <= RELEASE_LOG_MAX, "{}", log.len());
        assert!(log.len() > RELEASE_LOG_MAX - 64 * 1024, "{}", log.len());
        assert!(log.starts_with("Building image paas/blog:v1\n"));
        assert!(log.ends_with("ERROR: the last line\n"));
        assert_eq!(log.matches("paas left out lines").count(), 1);
        // Whole lines on both sides of the cut.
        let after = log.split(LOG_CUT).nth(1).unwrap();
        assert!(after.starts_with("compiling é "), "{}", &after[..40]);
        let stored = s.release_log_bytes().unwrap();
        assert_eq!(stored, [("blog".to_string(), log.len() as u64)]);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        for max in 200..260 {
            let log = cap_log("é".repeat(200), &"ü".repeat(200), max);
            assert!(log.len() <= max, "{max}: {}", log.len());
            assert!(log.contains(LOG_CUT.trim()));
        }
        assert_eq!(cap_log("a\n".into(), "b\n", 100), "a\nb\n");
    }
}
