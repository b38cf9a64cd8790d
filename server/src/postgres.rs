//! PostgreSQL for the apps that ask for it (`pg:create`).
//!
//! One server container for all apps of this daemon, started on demand, its
//! data in `<data>/postgres/data` on the host. Each app gets its own database
//! and role (random password), and the server joins the app's network
//! `paas-<app>` under the alias [`PG_ALIAS`], so only that app's containers
//! (and paas) reach it. `DATABASE_URL` is set as a config var; it takes effect
//! on the next deploy or restart. State: `<data>/postgres/` (0600 files, no
//! SQL rows). `pg_hba.conf` lets each app's role in only from its own network.
//!
//! Passwords live in 0600 files and in one-off containers' environment; they
//! are never logged, and tool output is scrubbed of them before it is shown.

use crate::ctx::Ctx;
use crate::docker::{ContainerSpec, ContainerState};
use crate::http_error::io_err;
use crate::http_error::DataError;
use crate::layout::{self, network_name};
use crate::layout::{pg_app_file, pg_dir, server_name, server_network};
use crate::store::App;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The PostgreSQL image: the official one for users; tests build it offline.
pub const POSTGRES_IMAGE: &str = "postgres:17";
/// The server's DNS name on every app network that has a database.
pub const PG_ALIAS: &str = "paas-postgres";
pub(crate) const PG_PORT: u16 = 5432;
const PG_MEMORY_BYTES: i64 = 384 << 20;
/// Processes of the server: `max_connections` (60) backends, its auxiliary
/// processes (checkpointer, WAL writer, autovacuum and parallel workers,
/// about 20 at most) and headroom.
const PG_PIDS_LIMIT: i64 = 160;
/// The capabilities the server's entrypoint needs: it starts as root, makes
/// its data folder the `postgres` user's (CHOWN, FOWNER for chmod, and
/// DAC_OVERRIDE to reach folders of another owner) and then drops to that
/// user (SETUID, SETGID). Every other capability is dropped.
const PG_CAPABILITIES: &[&str] = &["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"];
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
            let pw = crate::auth::random_hex(24);
            layout::write_private(&path, format!("{pw}\n").as_bytes())
                .map_err(|e| io_err("write", &path, e))?;
            Ok(pw)
        }
        Err(e) => Err(io_err("read", &path, e)),
    }
}

/// Makes sure this daemon's PostgreSQL server runs (creating it on first
/// use; data survives in `<data>/postgres/data`) and returns its name.
pub async fn ensure_server(ctx: &Ctx) -> Result<String, DataError> {
    let _guard = ctx.pg_server.lock().await;
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
        pids_limit: Some(PG_PIDS_LIMIT),
        capabilities: Some(PG_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        no_new_privileges: true,
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
pub(crate) async fn join_app_network(
    ctx: &Ctx,
    server: &str,
    app: &str,
) -> Result<String, DataError> {
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
pub(crate) struct OneOff<'a> {
    pub(crate) what: &'a str,
    pub(crate) app: &'a str,
    pub(crate) network: String,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) binds: Vec<String>,
    pub(crate) script: String,
    /// Scrubbed from the output before it is shown anywhere.
    pub(crate) secrets: Vec<String>,
}

pub(crate) async fn run_one_off(ctx: &Ctx, job: OneOff<'_>) -> Result<Vec<String>, DataError> {
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

/// Where a dump-with-counts or a scratch restore writes `table|rows` lines.
pub(crate) const COUNTS_TXT: &str = "counts.txt";

/// Reads `table|rows` lines.
pub(crate) fn parse_counts(text: &str) -> Result<BTreeMap<String, i64>, DataError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let bad = || DataError::internal(format!("cannot read the row count line {l:?}"));
            let (table, n) = l.rsplit_once('|').ok_or_else(bad)?;
            Ok((
                table.to_string(),
                n.trim().parse::<i64>().map_err(|_| bad())?,
            ))
        })
        .collect()
}

/// Restores the dump `dir/db.dump` into a scratch database of the server
/// (dropped afterwards, whatever happens) and answers its rows per table.
/// For restore drills: the app's own database is never touched.
pub(crate) async fn scratch_restore_counts(
    ctx: &Ctx,
    app: &str,
    dir: &Path,
) -> Result<BTreeMap<String, i64>, DataError> {
    let server = ensure_server(ctx).await?;
    let network = join_app_network(ctx, &server, app).await?;
    let env = superuser_env(ctx)?;
    let secrets = env
        .iter()
        .filter(|(k, _)| k == "PGPASSWORD")
        .map(|(_, v)| v.clone())
        .collect();
    let scratch = format!("paas_drill_{}", crate::auth::random_hex(6));
    let script = format!(
        r#"set -e
psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE DATABASE "{scratch}"'
trap 'psql -X -q -c "DROP DATABASE IF EXISTS "{scratch}"" >/dev/null' EXIT
pg_restore --no-owner --no-privileges --exit-on-error -d {scratch} /backup/db.dump
psql -X -q -At -v ON_ERROR_STOP=1 -d {scratch} -o /backup/{COUNTS_TXT} <<'SQL'
{COUNT_ROWS_SQL}
SQL"#
    );
    let _ = std::fs::remove_file(dir.join(COUNTS_TXT));
    run_one_off(
        ctx,
        OneOff {
            what: "the scratch restore",
            app,
            network,
            env,
            binds: vec![format!("{}:/backup", dir.display())],
            script,
            secrets,
        },
    )
    .await?;
    let path = dir.join(COUNTS_TXT);
    let text = std::fs::read_to_string(&path).map_err(|e| io_err("read", &path, e))?;
    parse_counts(&text)
}

/// psql input that prints `table|rows` for every table of the database
/// (schema-qualified outside `public`).
pub(crate) const COUNT_ROWS_SQL: &str = r#"SELECT format('SELECT %L || ''|'' || count(*) FROM %I.%I', CASE WHEN table_schema = 'public' THEN table_name ELSE table_schema || '.' || table_name END, table_schema, table_name) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1 \gexec"#;

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

pub(crate) fn app_env(db: &PgDatabase) -> Vec<(String, String)> {
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

/// `pg:create` (the caller holds the app's turn): the app's database and role, DATABASE_URL set. Idempotent:
/// a second call keeps the password. Returns the database and whether it is new.
pub async fn pg_create(ctx: &Ctx, app: &App) -> Result<(PgDatabase, bool), DataError> {
    check_name(&app.name)?;
    let data_dir = &ctx.config.data_dir;
    let existing = pg_database(data_dir, &app.name)?;
    let created = existing.is_none();
    let db = existing.unwrap_or_else(|| PgDatabase {
        app: app.name.clone(),
        database: app.name.clone(),
        role: app.name.clone(),
        password: crate::auth::random_hex(24),
        host: PG_ALIAS.into(),
        port: PG_PORT,
        created_at: crate::metrics::now(),
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
    let path = pg_app_file(data_dir, &app.name);
    layout::write_private(&path, &json).map_err(|e| io_err("write", &path, e))?;
    refresh_hba(ctx, &server).await?;
    ctx.store
        .set_config_vars(app, &[("DATABASE_URL".into(), Some(db.url()))])
        .map_err(|e| DataError::internal(e.to_string()))?;
    tracing::info!(app = %app.name, created, "PostgreSQL database ready");
    Ok((db, created))
}

/// `pg:destroy` (the caller holds the app's turn): drops the database and role, unsets DATABASE_URL (when it
/// is still ours) and takes the server off the app's network.
pub async fn pg_destroy(ctx: &Ctx, app: &App) -> Result<PgDatabase, DataError> {
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

pub(crate) fn no_database(app: &str) -> DataError {
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

#[cfg(test)]
mod tests {
    use super::*;
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
