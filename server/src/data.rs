//! Data that survives: PostgreSQL for the apps that ask for it, and backups.
//!
//! - **PostgreSQL** (`pg:create`): one server container for all apps of this
//!   daemon, started on demand, its data in `<data>/postgres/data` on the
//!   host. Each app gets its own database and role (random password), and the
//!   server joins the app's network `paas-<app>` under the alias
//!   [`PG_ALIAS`], so only that app's containers (and paas) reach it.
//!   `DATABASE_URL` is set as a config var; it takes effect on the next
//!   deploy or restart. State: `<data>/postgres/` (0600 files, no SQL rows).
//! - **Backups**: `pg_dump -Fc` in a one-off container on the app's network,
//!   or SQLite's online backup API on `<data>/apps/<app>/data/db.sqlite3`,
//!   plus the media dir as a tar. Each lives in `<data>/backups/<app>/<id>/`
//!   with a `manifest.json` (kind, checksums, size, duration, status). The
//!   newest [`KEEP_BACKUPS`] good ones are kept; a daily task backs up every app.
//!
//! Passwords live in 0600 files and in one-off containers' environment; they
//! are never logged, and tool output is scrubbed of them before it is shown.

use crate::api::ApiError;
use crate::deploy::{network_name, APP_UID};
use crate::docker::{ContainerSpec, ContainerState, DockerError};
use crate::server::Ctx;
use crate::store::App;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The PostgreSQL image: the official one for users; tests build it offline.
pub const POSTGRES_IMAGE: &str = "postgres:17";
/// The server's DNS name on every app network that has a database.
pub const PG_ALIAS: &str = "paas-postgres";
/// How many good backups of an app are kept; older ones are pruned.
pub const KEEP_BACKUPS: usize = 7;
/// Every app is backed up once per this interval.
pub const BACKUP_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How often the scheduler looks for apps that are due.
const SCHEDULER_TICK: Duration = Duration::from_secs(3600);
const PG_PORT: u16 = 5432;
/// The server's memory limit: a hobby VPS shares it with every app.
const PG_MEMORY_BYTES: i64 = 384 << 20;
/// Small-machine settings: modest caches, few connections.
const PG_SETTINGS: &[&str] = &[
    "shared_buffers=48MB",
    "effective_cache_size=128MB",
    "work_mem=2MB",
    "maintenance_work_mem=32MB",
    "wal_buffers=2MB",
    "max_connections=60",
    "max_wal_size=256MB",
];
/// Longest a one-off (psql, pg_dump, pg_restore) may take.
const ONE_OFF_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A failure with the HTTP status to answer and one sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DataError {}

impl DataError {
    pub(crate) fn user(status: StatusCode, message: impl Into<String>) -> DataError {
        DataError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn internal(message: impl Into<String>) -> DataError {
        Self::user(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<DockerError> for DataError {
    fn from(e: DockerError) -> DataError {
        DataError::internal(e.to_string())
    }
}

impl From<DataError> for ApiError {
    fn from(e: DataError) -> ApiError {
        if e.status.is_server_error() {
            tracing::error!("{}", e.message);
        }
        ApiError(e.status, e.message)
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> DataError {
    DataError::internal(format!("cannot {what} {}: {e}", path.display()))
}

// ------------------------------------------------------------------ paths

fn pg_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("postgres")
}

fn pg_app_file(data_dir: &Path, app: &str) -> PathBuf {
    pg_dir(data_dir).join("apps").join(format!("{app}.json"))
}

pub(crate) fn backups_dir(data_dir: &Path, app: &str) -> PathBuf {
    data_dir.join("backups").join(app)
}

fn sqlite_path(data_dir: &Path, app: &str) -> PathBuf {
    data_dir
        .join("apps")
        .join(app)
        .join("data")
        .join("db.sqlite3")
}

fn media_path(data_dir: &Path, app: &str) -> PathBuf {
    data_dir.join("apps").join(app).join("data").join("media")
}

/// Short stable tag of a data dir: two daemons on one engine (tests, a
/// staging copy) never share a PostgreSQL server.
fn data_dir_tag(data_dir: &Path) -> String {
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    hex(&digest[..4])
}

/// The name of this daemon's PostgreSQL server container.
pub fn server_name(data_dir: &Path) -> String {
    format!("paas-postgres-{}", data_dir_tag(data_dir))
}

/// The server's own network (underscores: no app network can be named so).
pub fn server_network(data_dir: &Path) -> String {
    format!("paas_postgres_{}", data_dir_tag(data_dir))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex(&buf)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = crate::dashboard::utc_parts(secs);
    format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
}

/// Writes a file readable by root only, atomically (temp file + rename).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), DataError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err("write", &tmp, e))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("write", path, e))
}

/// One lock per app: a backup, restore, create or destroy at a time.
fn app_lock(app: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(app.to_string()).or_default().clone()
}

// ------------------------------------------------------------- PostgreSQL

/// An app's database, as stored in `<data>/postgres/apps/<app>.json` (0600).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PgDatabase {
    pub app: String,
    pub database: String,
    pub role: String,
    /// Secret: never logged, never in an API answer (DATABASE_URL holds it).
    pub password: String,
    pub host: String,
    pub port: u16,
    pub created_at: i64,
}

impl PgDatabase {
    /// `postgres://role:password@host:5432/database`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            self.role, self.password, self.host, self.port, self.database
        )
    }
}

/// The app's database, if `pg:create` made one.
pub fn pg_database(data_dir: &Path, app: &str) -> Result<Option<PgDatabase>, DataError> {
    let path = pg_app_file(data_dir, app);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DataError::internal(format!("{} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &path, e)),
    }
}

fn pg_databases(data_dir: &Path) -> Vec<PgDatabase> {
    let dir = pg_dir(data_dir).join("apps");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let app = name.strip_suffix(".json")?;
            pg_database(data_dir, app).ok().flatten()
        })
        .collect()
}

fn superuser_password(data_dir: &Path) -> Result<String, DataError> {
    let path = pg_dir(data_dir).join("superuser.password");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => Err(DataError::internal(format!(
            "{} is empty: restore it from a copy (or, to start over with an empty server, remove it and {})",
            path.display(),
            pg_dir(data_dir).join("data").display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pw = random_hex(24);
            write_private(&path, format!("{pw}\n").as_bytes())?;
            Ok(pw)
        }
        Err(e) => Err(io_err("read", &path, e)),
    }
}

/// Makes sure this daemon's PostgreSQL server runs (creating it on first
/// use; data survives in `<data>/postgres/data`) and returns its name.
pub async fn ensure_server(ctx: &Ctx) -> Result<String, DataError> {
    static SERVER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _guard = SERVER_LOCK.lock().await;
    let data_dir = &ctx.config.data_dir;
    let name = server_name(data_dir);
    match ctx.docker.container_state(&name).await? {
        ContainerState::Running | ContainerState::Restarting => return Ok(name),
        ContainerState::Missing => {}
        // Stopped by hand or crashed: a fresh container on the same data.
        _ => {
            ctx.docker
                .stop_and_remove(&name, Duration::from_secs(30))
                .await?
        }
    }
    ctx.docker.ensure_image(POSTGRES_IMAGE).await?;
    let data = pg_dir(data_dir).join("data");
    std::fs::create_dir_all(&data).map_err(|e| io_err("create", &data, e))?;
    let password = superuser_password(data_dir)?;
    let network = server_network(data_dir);
    let labels = vec![("paas.service".to_string(), "postgres".to_string())];
    ctx.docker.ensure_network(&network, &labels).await?;
    let mut cmd = vec!["postgres".to_string()];
    for s in PG_SETTINGS {
        cmd.push("-c".into());
        cmd.push(s.to_string());
    }
    let spec = ContainerSpec {
        name: Some(name.clone()),
        image: POSTGRES_IMAGE.into(),
        cmd: Some(cmd),
        env: vec![
            ("POSTGRES_USER".into(), "postgres".into()),
            ("POSTGRES_PASSWORD".into(), password),
        ],
        labels,
        binds: vec![format!("{}:/var/lib/postgresql/data", data.display())],
        network: Some(network),
        restart_unless_stopped: true,
        memory_bytes: Some(PG_MEMORY_BYTES),
        ..Default::default()
    };
    ctx.docker.start_container(&spec).await?;
    tracing::info!(container = %name, "PostgreSQL server started");
    // A new container has lost the old one's app networks: join them again.
    for db in pg_databases(data_dir) {
        let net = network_name(&db.app);
        if let Err(e) = ctx.docker.connect_network(&name, &net, &[PG_ALIAS]).await {
            tracing::warn!(app = %db.app, "PostgreSQL server cannot join {net}: {e}");
        }
    }
    // The apps' networks may have been made again since (new subnets).
    refresh_hba(ctx, &name).await?;
    Ok(name)
}

/// Rewrites the server's `pg_hba.conf` so that each app's role reaches its
/// own database only from its own network (paas's one-offs for that app run
/// there too), the superuser from any of them, then makes the server reload
/// it (SIGHUP). Leaked credentials of one app are useless from another's
/// containers. A server whose data dir is not initialised yet is left alone:
/// it has no app databases.
async fn refresh_hba(ctx: &Ctx, server: &str) -> Result<(), DataError> {
    let data_dir = &ctx.config.data_dir;
    let path = pg_dir(data_dir).join("data").join("pg_hba.conf");
    if !path.is_file() {
        return Ok(());
    }
    let mut text = String::from(
        "# Written by paas: every app's role reaches its own database from its own network only.\n\
         local all all trust\n\
         host all postgres all scram-sha-256\n",
    );
    for db in pg_databases(data_dir) {
        let net = network_name(&db.app);
        match ctx.docker.network_subnets(&net).await {
            Ok(subnets) => {
                for subnet in subnets {
                    text.push_str(&format!(
                        "host \"{}\" \"{}\" {subnet} scram-sha-256\n",
                        db.database, db.role
                    ));
                }
            }
            Err(e) => tracing::warn!(app = %db.app, "no access rule for {net}: {e}"),
        }
    }
    // Written in place: the file keeps the server's owner and mode.
    std::fs::write(&path, text).map_err(|e| io_err("write", &path, e))?;
    ctx.docker.signal(server, "SIGHUP").await?;
    Ok(())
}

/// Joins the server to the app's network (creating the network if the app
/// was never deployed).
async fn join_app_network(ctx: &Ctx, server: &str, app: &str) -> Result<String, DataError> {
    let net = network_name(app);
    let labels = vec![("paas.app".to_string(), app.to_string())];
    ctx.docker.ensure_network(&net, &labels).await?;
    ctx.docker
        .connect_network(server, &net, &[PG_ALIAS])
        .await?;
    Ok(net)
}

/// Waits until the server answers, then runs `script`, in a one-off
/// container of the postgres image on `network`.
const WAIT_READY: &str = "i=0; until pg_isready -q -t 2 >/dev/null 2>&1; do i=$((i+1)); \
if [ $i -ge 120 ]; then echo \"PostgreSQL at $PGHOST:$PGPORT did not answer within a minute\" >&2; exit 3; fi; \
sleep 0.5; done; ";

/// What a one-off runs: environment (with secrets), binds, and a shell script.
struct OneOff<'a> {
    what: &'a str,
    app: &'a str,
    network: String,
    env: Vec<(String, String)>,
    binds: Vec<String>,
    script: String,
    /// Scrubbed from the output before it is shown anywhere.
    secrets: Vec<String>,
}

async fn run_one_off(ctx: &Ctx, job: OneOff<'_>) -> Result<Vec<String>, DataError> {
    let spec = ContainerSpec {
        image: POSTGRES_IMAGE.into(),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("{WAIT_READY}{}", job.script),
        ]),
        env: job.env,
        labels: vec![
            ("paas.app".into(), job.app.into()),
            ("paas.process".into(), "data".into()),
        ],
        binds: job.binds,
        network: Some(job.network),
        memory_bytes: Some(256 << 20),
        ..Default::default()
    };
    let mut lines = Vec::new();
    let secrets = job.secrets;
    let mut on_line = |l: &str| {
        let mut l = l.to_string();
        for s in &secrets {
            if !s.is_empty() {
                l = l.replace(s.as_str(), "********");
            }
        }
        lines.push(l);
    };
    let code = ctx
        .docker
        .run_to_completion(&spec, ONE_OFF_TIMEOUT, &mut on_line)
        .await?;
    if code != 0 {
        let tail: Vec<&str> = lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(DataError::internal(format!(
            "{} failed (exit code {code}): {}",
            job.what,
            if tail.is_empty() {
                "no output".to_string()
            } else {
                tail.join(" / ")
            }
        )));
    }
    Ok(lines)
}

fn superuser_env(ctx: &Ctx) -> Result<Vec<(String, String)>, DataError> {
    Ok(vec![
        ("PGHOST".into(), PG_ALIAS.into()),
        ("PGPORT".into(), PG_PORT.to_string()),
        ("PGUSER".into(), "postgres".into()),
        ("PGDATABASE".into(), "postgres".into()),
        (
            "PGPASSWORD".into(),
            superuser_password(&ctx.config.data_dir)?,
        ),
    ])
}

fn app_env(db: &PgDatabase) -> Vec<(String, String)> {
    vec![
        ("PGHOST".into(), db.host.clone()),
        ("PGPORT".into(), db.port.to_string()),
        ("PGUSER".into(), db.role.clone()),
        ("PGDATABASE".into(), db.database.clone()),
        ("PGPASSWORD".into(), db.password.clone()),
    ]
}

/// Runs SQL as the superuser (from the environment: no secret on a command line).
async fn superuser_sql(
    ctx: &Ctx,
    app: &str,
    network: String,
    what: &str,
    sql: String,
    secrets: Vec<String>,
) -> Result<(), DataError> {
    let mut env = superuser_env(ctx)?;
    let mut secrets = secrets;
    secrets.extend(
        env.iter()
            .filter(|(k, _)| k == "PGPASSWORD")
            .map(|(_, v)| v.clone()),
    );
    env.push(("PAAS_SQL".into(), sql));
    run_one_off(
        ctx,
        OneOff {
            what,
            app,
            network,
            env,
            binds: Vec::new(),
            script: "printf '%s\\n' \"$PAAS_SQL\" | psql -X -q -v ON_ERROR_STOP=1".into(),
            secrets,
        },
    )
    .await?;
    Ok(())
}

/// SQL that makes (or re-asserts) an app's role and database, which only
/// that role may connect to (and no app role to the server's own database). Names are app
/// names (`[a-z0-9-]`) and the password is hex, so quoting is enough.
fn create_sql(db: &PgDatabase) -> String {
    let (r, d, p) = (&db.role, &db.database, &db.password);
    format!(
        "SELECT 'CREATE ROLE \"{r}\"' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{r}')\\gexec\n\
         ALTER ROLE \"{r}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{p}';\n\
         SELECT 'CREATE DATABASE \"{d}\" OWNER \"{r}\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{d}')\\gexec\n\
         REVOKE ALL ON DATABASE \"{d}\" FROM PUBLIC;\n\
         REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;\n\
         GRANT ALL ON DATABASE \"{d}\" TO \"{r}\";\n"
    )
}

fn drop_sql(db: &PgDatabase) -> String {
    let (r, d) = (&db.role, &db.database);
    format!(
        "DROP DATABASE IF EXISTS \"{d}\" WITH (FORCE);\n\
         DROP ROLE IF EXISTS \"{r}\";\n"
    )
}

fn check_name(app: &str) -> Result<(), DataError> {
    let ok = !app.is_empty()
        && app.len() <= 63
        && app
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(DataError::user(
            StatusCode::BAD_REQUEST,
            format!("{app:?} cannot name a database: app names are lower-case letters, digits and dashes"),
        ))
    }
}

/// `pg:create`: the app's database and role, DATABASE_URL set. Idempotent:
/// a second call keeps the password. Returns the database and whether it is new.
pub async fn pg_create(ctx: &Ctx, app: &App) -> Result<(PgDatabase, bool), DataError> {
    check_name(&app.name)?;
    let lock = app_lock(&app.name);
    let _guard = lock.lock().await;
    let data_dir = &ctx.config.data_dir;
    let existing = pg_database(data_dir, &app.name)?;
    let created = existing.is_none();
    let db = existing.unwrap_or_else(|| PgDatabase {
        app: app.name.clone(),
        database: app.name.clone(),
        role: app.name.clone(),
        password: random_hex(24),
        host: PG_ALIAS.into(),
        port: PG_PORT,
        created_at: now_unix(),
    });
    let server = ensure_server(ctx).await?;
    let network = join_app_network(ctx, &server, &app.name).await?;
    superuser_sql(
        ctx,
        &app.name,
        network,
        "creating the database",
        create_sql(&db),
        vec![db.password.clone()],
    )
    .await?;
    let json = serde_json::to_vec_pretty(&db).map_err(|e| DataError::internal(e.to_string()))?;
    write_private(&pg_app_file(data_dir, &app.name), &json)?;
    refresh_hba(ctx, &server).await?;
    ctx.store
        .set_config_vars(app, &[("DATABASE_URL".into(), Some(db.url()))])
        .map_err(|e| DataError::internal(e.to_string()))?;
    tracing::info!(app = %app.name, created, "PostgreSQL database ready");
    Ok((db, created))
}

/// `pg:destroy`: drops the database and role, unsets DATABASE_URL (when it
/// is still ours) and takes the server off the app's network.
pub async fn pg_destroy(ctx: &Ctx, app: &App) -> Result<PgDatabase, DataError> {
    let lock = app_lock(&app.name);
    let _guard = lock.lock().await;
    let data_dir = &ctx.config.data_dir;
    let Some(db) = pg_database(data_dir, &app.name)? else {
        return Err(no_database(&app.name));
    };
    let server = ensure_server(ctx).await?;
    let network = join_app_network(ctx, &server, &app.name).await?;
    superuser_sql(
        ctx,
        &app.name,
        network.clone(),
        "dropping the database",
        drop_sql(&db),
        vec![db.password.clone()],
    )
    .await?;
    let vars = ctx
        .store
        .config_vars(app)
        .map_err(|e| DataError::internal(e.to_string()))?;
    if vars.get("DATABASE_URL") == Some(&db.url()) {
        ctx.store
            .set_config_vars(app, &[("DATABASE_URL".into(), None)])
            .map_err(|e| DataError::internal(e.to_string()))?;
    }
    let file = pg_app_file(data_dir, &app.name);
    std::fs::remove_file(&file).map_err(|e| io_err("remove", &file, e))?;
    refresh_hba(ctx, &server).await?;
    ctx.docker.disconnect_network(&server, &network).await?;
    tracing::info!(app = %app.name, "PostgreSQL database dropped");
    Ok(db)
}

fn no_database(app: &str) -> DataError {
    DataError::user(
        StatusCode::NOT_FOUND,
        format!("{app} has no PostgreSQL database: `paas pg:create -a {app}` makes one"),
    )
}

/// Takes the server off an app's network; call it before removing the
/// network (an app being destroyed), or the engine refuses the removal.
pub async fn forget_app_network(ctx: &Ctx, app: &str) -> Result<(), DataError> {
    let server = server_name(&ctx.config.data_dir);
    Ok(ctx
        .docker
        .disconnect_network(&server, &network_name(app))
        .await?)
}

// ---------------------------------------------------------------- backups

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
    write_private(&dir.join(MANIFEST), &json)
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
    let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)
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
    let existed = live.exists();
    let from = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", backup.display()))?;
    from.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| format!("{} cannot be read ({e})", backup.display()))?;
    let mut to =
        Connection::open(live).map_err(|e| format!("cannot open {}: {e}", live.display()))?;
    sqlite_backup_all(&from, &mut to)?;
    drop(to);
    if !existed {
        std::os::unix::fs::chown(live, Some(APP_UID), Some(APP_UID))
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

/// Tars a media dir (symlinks kept as links). False when there is none.
pub fn tar_dir(dir: &Path, out: &Path) -> std::io::Result<bool> {
    if !dir.is_dir() {
        return Ok(false);
    }
    let f = std::fs::File::create(out)?;
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)?;
    b.into_inner()?.sync_all()?;
    Ok(true)
}

/// Replaces a dir's contents with a tar's, owners and modes included.
pub fn untar_replacing(tar_file: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    let mut a = tar::Archive::new(std::fs::File::open(tar_file)?);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    a.unpack(dir)
}

/// What an app's backup would hold: its PostgreSQL database if it has one,
/// else its SQLite file; None when it has neither yet.
fn backup_kind(data_dir: &Path, app: &str) -> Result<Option<Kind>, DataError> {
    if pg_database(data_dir, app)?.is_some() {
        Ok(Some(Kind::Postgres))
    } else if sqlite_path(data_dir, app).is_file() {
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

/// Takes a backup of the app now (`trigger`: manual or scheduled). A failure
/// is recorded (manifest status `failed`), logged at error, and returned.
pub async fn backup_app(ctx: &Ctx, app: &App, trigger: &str) -> Result<Manifest, DataError> {
    backup_app_for(ctx, app, trigger, None).await
}

/// The pre-migrate snapshot of release `version`: a backup taken right
/// before its migrations run, found again by `rollback --restore-db`.
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
    let lock = app_lock(&app.name);
    let _guard = lock.lock().await;
    let data_dir = ctx.config.data_dir.clone();
    let Some(kind) = backup_kind(&data_dir, &app.name)? else {
        return Err(nothing_to_back_up(&app.name));
    };
    let created_at = now_unix();
    let id = format!("{}-{}", utc_stamp(created_at), random_hex(2));
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
    };
    write_manifest(&dir, &m)?;
    let t = Instant::now();
    let outcome = take_backup(ctx, &app.name, kind, &dir).await;
    m.duration_ms = t.elapsed().as_millis() as u64;
    match outcome {
        Ok(files) => {
            m.status = Status::Ok;
            m.size = files.iter().map(|f| f.size).sum();
            m.sha256 = files.first().map(|f| f.sha256.clone()).unwrap_or_default();
            m.files = files;
            write_manifest(&dir, &m)?;
            tracing::info!(app = %app.name, backup = %id, kind = ?kind, size = m.size, ms = m.duration_ms, "backup taken");
            prune(&data_dir, &app.name);
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
) -> Result<Vec<FileSum>, DataError> {
    let data_dir = &ctx.config.data_dir;
    let db_file = match kind {
        Kind::Sqlite => {
            let (src, dst) = (sqlite_path(data_dir, app), dir.join(DB_SQLITE));
            blocking(move || sqlite_copy(&src, &dst)).await?;
            DB_SQLITE
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
                    script: format!("pg_dump -Fc --no-owner -f /backup/{DB_DUMP}"),
                    secrets: vec![db.password.clone()],
                },
            )
            .await?;
            DB_DUMP
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
            .map(|n| file_sum(&dir2.join(n)).map_err(|e| format!("cannot read back {n}: {e}")))
            .collect()
    })
    .await
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

/// Restores a backup into the app's live database (and media files).
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
    let lock = app_lock(&app.name);
    let _guard = lock.lock().await;
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

// -------------------------------------------------------------- schedule

/// Backs up every app once per [`BACKUP_INTERVAL`]: checks hourly which apps
/// have no good backup that recent. Survives restarts (the manifests say
/// when the last one was taken).
pub fn spawn_scheduler(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Let the daemon settle (reconcile, first requests) before the first look.
        tokio::time::sleep(Duration::from_secs(120)).await;
        loop {
            run_due_backups(&ctx).await;
            tokio::time::sleep(SCHEDULER_TICK).await;
        }
    })
}

/// One pass of the scheduler; returns how many backups it took.
pub async fn run_due_backups(ctx: &Ctx) -> usize {
    let apps = match ctx.store.apps() {
        Ok(apps) => apps,
        Err(e) => {
            tracing::error!("scheduled backups: cannot list the apps: {e}");
            return 0;
        }
    };
    let now = now_unix();
    let mut taken = 0;
    for app in apps {
        if !matches!(backup_kind(&ctx.config.data_dir, &app.name), Ok(Some(_))) {
            continue;
        }
        let newest_ok = list_backups(&ctx.config.data_dir, &app.name)
            .into_iter()
            .find(|m| m.status == Status::Ok)
            .map(|m| m.created_at);
        if !due(newest_ok, now, BACKUP_INTERVAL) {
            continue;
        }
        // backup_app logs its own failure at error.
        if backup_app(ctx, &app, "scheduled").await.is_ok() {
            taken += 1;
        }
    }
    taken
}

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

pub(crate) fn guard(ctx: &Ctx, headers: &HeaderMap, app: &str) -> Result<App, ApiError> {
    crate::api::require(ctx, headers)?;
    match ctx.store.find_app(app) {
        Ok(Some(app)) => Ok(app),
        Ok(None) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no app named {app:?}: `paas apps` lists them, and a first `git push` creates one"
            ),
        )),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[derive(Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

/// Destructive calls carry `{"confirm": "<app>"}`.
pub(crate) fn confirmed(body: &[u8], app: &str, action: &str) -> Result<(), DataError> {
    let given = serde_json::from_slice::<Confirm>(body)
        .ok()
        .and_then(|c| c.confirm);
    if given.as_deref() == Some(app) {
        Ok(())
    } else {
        Err(DataError::user(
            StatusCode::BAD_REQUEST,
            format!("{action} cannot be undone: confirm by sending {{\"confirm\": \"{app}\"}} (on the command line: --confirm {app})"),
        ))
    }
}

fn restart_hint(app: &str) -> String {
    format!("restart or redeploy {app} (git push) for the change to DATABASE_URL to take effect")
}

type ApiResult = Result<(StatusCode, Json<serde_json::Value>), ApiError>;

async fn api_pg_info(
    State(ctx): State<Arc<Ctx>>,
    UrlPath(app): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult {
    let app = guard(&ctx, &headers, &app)?;
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
    headers: HeaderMap,
) -> ApiResult {
    let app = guard(&ctx, &headers, &app)?;
    let before = ctx
        .store
        .config_vars(&app)
        .map_err(|e| DataError::internal(e.to_string()))?
        .get("DATABASE_URL")
        .cloned();
    let (db, created) = pg_create(&ctx, &app).await?;
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
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let app = guard(&ctx, &headers, &app)?;
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
    let db = pg_destroy(&ctx, &app).await?;
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
    headers: HeaderMap,
) -> ApiResult {
    let app = guard(&ctx, &headers, &app)?;
    let list = list_backups(&ctx.config.data_dir, &app.name);
    Ok((StatusCode::OK, Json(serde_json::json!(list))))
}

async fn api_backup_create(
    State(ctx): State<Arc<Ctx>>,
    UrlPath(app): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult {
    let app = guard(&ctx, &headers, &app)?;
    let m = backup_app(&ctx, &app, "manual").await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!(m))))
}

async fn api_backup_restore(
    State(ctx): State<Arc<Ctx>>,
    UrlPath((app, id)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let app = guard(&ctx, &headers, &app)?;
    confirmed(
        &body,
        &app.name,
        "Restoring a backup replaces the app's data and",
    )?;
    let m = restore(&ctx, &app, &id).await?;
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

// -------------------------------------------------------------------- CLI

/// One request to the daemon for the CLI; the error is one sentence.
pub(crate) async fn cli_request(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let full = format!("{}{path}", url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .request(method, &full)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| {
        format!("cannot reach paas at {url} ({e}); is `paas serve` running? Set PAAS_URL if it listens elsewhere")
    })?;
    let status = resp.status();
    let value: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let msg = value
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or("the request failed");
        return Err(format!("{msg} (HTTP {status})"));
    }
    Ok(value)
}

pub(crate) fn message(v: &serde_json::Value) -> String {
    v["message"].as_str().unwrap_or("done").to_string()
}

/// `paas pg:create -a APP`: the text to print.
pub async fn cli_pg_create(url: &str, token: &str, app: &str) -> Result<String, String> {
    let path = format!("/api/apps/{app}/postgres");
    cli_request(url, token, reqwest::Method::POST, &path, None)
        .await
        .map(|v| message(&v))
}

/// `paas pg:info -a APP`.
pub async fn cli_pg_info(url: &str, token: &str, app: &str) -> Result<String, String> {
    let path = format!("/api/apps/{app}/postgres");
    let v = cli_request(url, token, reqwest::Method::GET, &path, None).await?;
    Ok(format!(
        "database {} (role {}) at {}:{} on server {} ({})",
        v["database"].as_str().unwrap_or(""),
        v["role"].as_str().unwrap_or(""),
        v["host"].as_str().unwrap_or(""),
        v["port"],
        v["server"].as_str().unwrap_or(""),
        if v["server_running"].as_bool() == Some(true) {
            "running"
        } else {
            "not running: it starts on the next pg or backup command"
        }
    ))
}

/// `paas pg:destroy -a APP --confirm APP`.
pub async fn cli_pg_destroy(
    url: &str,
    token: &str,
    app: &str,
    confirm: Option<&str>,
) -> Result<String, String> {
    let path = format!("/api/apps/{app}/postgres");
    let body = serde_json::json!({ "confirm": confirm });
    cli_request(url, token, reqwest::Method::DELETE, &path, Some(body))
        .await
        .map(|v| message(&v))
}

/// `paas backups:create -a APP`.
pub async fn cli_backup(url: &str, token: &str, app: &str) -> Result<String, String> {
    let path = format!("/api/apps/{app}/backups");
    let v = cli_request(url, token, reqwest::Method::POST, &path, None).await?;
    Ok(format!(
        "backup {} of {} taken ({}, {} bytes, {} ms)",
        v["id"].as_str().unwrap_or(""),
        app,
        v["kind"].as_str().unwrap_or(""),
        v["size"],
        v["duration_ms"]
    ))
}

/// `paas backups -a APP`: one line per backup, newest first.
pub async fn cli_backups(url: &str, token: &str, app: &str) -> Result<String, String> {
    let path = format!("/api/apps/{app}/backups");
    let v = cli_request(url, token, reqwest::Method::GET, &path, None).await?;
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok(format!(
            "No backups of {app} yet: `paas backups:create -a {app}` takes one (paas also takes one daily)."
        ));
    }
    let lines: Vec<String> = list
        .iter()
        .map(|b| {
            format!(
                "{:<22} {:<8} {:<7} {:>12} {:<9} {}",
                b["id"].as_str().unwrap_or(""),
                b["kind"].as_str().unwrap_or(""),
                b["status"].as_str().unwrap_or(""),
                b["size"],
                b["trigger"].as_str().unwrap_or(""),
                b["error"].as_str().unwrap_or("")
            )
        })
        .collect();
    Ok(lines.join("\n"))
}

/// `paas backups:restore -a APP ID --confirm APP`.
pub async fn cli_restore(
    url: &str,
    token: &str,
    app: &str,
    id: &str,
    confirm: Option<&str>,
) -> Result<String, String> {
    let path = format!("/api/apps/{app}/backups/{id}/restore");
    let body = serde_json::json!({ "confirm": confirm });
    cli_request(url, token, reqwest::Method::POST, &path, Some(body))
        .await
        .map(|v| message(&v))
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
    }

    #[test]
    fn confirmation_names_the_app() {
        assert!(confirmed(br#"{"confirm":"blog"}"#, "blog", "Dropping").is_ok());
        for body in [&b""[..], b"{}", br#"{"confirm":"other"}"#, b"not json"] {
            let e = confirmed(body, "blog", "Dropping the database").unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(r#"{"confirm": "blog"}"#), "{e}");
        }
    }

    #[test]
    fn sql_quotes_names_and_urls_carry_the_alias() {
        let db = PgDatabase {
            app: "my-blog".into(),
            database: "my-blog".into(),
            role: "my-blog".into(),
            password: "00ff".into(),
            host: PG_ALIAS.into(),
            port: 5432,
            created_at: 0,
        };
        assert_eq!(
            db.url(),
            "postgres://my-blog:00ff@paas-postgres:5432/my-blog"
        );
        let sql = create_sql(&db);
        assert!(
            sql.contains("CREATE DATABASE \"my-blog\" OWNER \"my-blog\""),
            "{sql}"
        );
        assert!(
            sql.contains("REVOKE ALL ON DATABASE \"my-blog\" FROM PUBLIC"),
            "{sql}"
        );
        assert!(drop_sql(&db).contains("DROP ROLE IF EXISTS \"my-blog\""));
        assert!(check_name("my-blog").is_ok());
        assert!(check_name("x\"; DROP").is_err());
        assert_ne!(server_name(Path::new("/a")), server_name(Path::new("/b")));
        assert!(server_network(Path::new("/a")).contains('_'));
    }
}
