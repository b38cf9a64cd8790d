//! Data that survives: backups and restores of a deployed SQLite app, and a
//! PostgreSQL database per app on a real server (the postgres:17 image,
//! built offline by tests/setup.sh), reached from a container on the app's
//! network with the credentials in DATABASE_URL.
//!
//! The data API is served in-process (`paas::router::router` over a `Ctx` on
//! the same data dir as a real daemon), so these tests need no router wiring
//! and only one `git push`.

use crate::harness::{Daemon, Project};
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use paas::ctx::Ctx;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use tower::ServiceExt;

/// A `Ctx` over an existing (or new) data dir, as `paas serve` makes it.
fn ctx_over(data_dir: &Path) -> Arc<Ctx> {
    let config = paas::config::Config::resolve(paas::config::Overrides {
        data_dir: Some(data_dir.to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let (token, _) = paas::auth::AdminToken::load_or_create(data_dir).unwrap();
    let store = paas::store::Store::open(&data_dir.join("paas.db")).unwrap();
    let docker = paas::docker::Docker::connect().unwrap();
    let repos = paas::git::Repos::new(data_dir.join("repos"), "paas".into());
    let hook = paas::git::HookEnv {
        daemon_url: String::new(),
        secret: String::new(),
    };
    Arc::new(Ctx::new(config, store, docker, repos, token, hook))
}

/// One request to the data routes: (status, JSON body).
async fn call(
    ctx: &Arc<Ctx>,
    method: &str,
    path: &str,
    authorized: bool,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if authorized {
        req = req.header("authorization", format!("Bearer {}", ctx.token.reveal()));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = paas::router::router(ctx.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `psql URL -c SQL` in a one-off container, on `network` if given.
fn psql(network: Option<&str>, url: &str, sql: &str) -> (bool, String) {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--label", "paas.test=data"]);
    if let Some(n) = network {
        cmd.args(["--network", n]);
    }
    let out = cmd
        .args(["postgres:17", "psql", "-X", "-At", url, "-c", sql])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn require_postgres_image() {
    let ok = Command::new("docker")
        .args(["image", "inspect", "postgres:17"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the image postgres:17 is missing: run bash tests/setup.sh as root (it builds it offline)"
    );
}

/// Removes this data dir's PostgreSQL server and its network.
struct ServerGone<'a>(&'a Path);

impl Drop for ServerGone<'_> {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &paas::layout::server_name(self.0)])
            .output();
        let _ = Command::new("docker")
            .args(["network", "rm", &paas::layout::server_network(self.0)])
            .output();
    }
}

/// Removes an app's containers, network and images.
struct AppGone(String);

impl Drop for AppGone {
    fn drop(&mut self) {
        crate::harness::remove_app_objects(&self.0);
    }
}

/// SQLite: back up a deployed app through the API, write more, restore, and
/// the app serves the rows of the backup only.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_backup_and_restore_of_a_deployed_app() {
    let mut d = Daemon::start();
    let app = d.app("bk");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    let r = d.post_form(&app, "/add/", "text=row+before+backup");
    assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());
    let ctx = ctx_over(d.data.path());
    let base = format!("/api/apps/{app}/backups");

    let (status, _) = call(&ctx, "POST", &base, false, None).await;
    assert_eq!(status, 401);
    let (status, body) = call(&ctx, "GET", "/api/apps/nope/backups", true, None).await;
    assert_eq!(status, 404, "{body}");

    let (status, m) = call(&ctx, "POST", &base, true, None).await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["kind"], "sqlite", "{m}");
    assert_eq!(m["status"], "ok", "{m}");
    assert_eq!(m["sha256"].as_str().unwrap().len(), 64, "{m}");
    let names: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db.sqlite3", "media.tar"], "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let manifest = d
        .data
        .path()
        .join("backups")
        .join(&app)
        .join(&id)
        .join("manifest.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&manifest).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", manifest.display());
    let root = d.data.path().join("backups");
    let mode = std::fs::metadata(&root).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", root.display());
    eprintln!(
        "sqlite backup: {} bytes in {} ms",
        m["size"], m["duration_ms"]
    );

    let r = d.post_form(&app, "/add/", "text=row+after+backup");
    assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());
    assert!(d.get(&app, "/").text().contains("row after backup"));

    let restore = format!("{base}/{id}/restore");
    let (status, body) = call(&ctx, "POST", &restore, true, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("confirm"),
        "{body}"
    );
    let (status, body) = call(
        &ctx,
        "POST",
        &format!("{base}/20990101-000000-dead/restore"),
        true,
        Some(json!({ "confirm": app })),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(
        &ctx,
        "POST",
        &restore,
        true,
        Some(json!({ "confirm": app })),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let page = d.get(&app, "/");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("row before backup"), "{}", page.text());
    assert!(!page.text().contains("row after backup"), "{}", page.text());

    let (status, list) = call(&ctx, "GET", &base, true, None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // apps:destroy: confirmation first, then everything goes but a final
    // backup, which a new push of the same name can restore.
    let (ok, _, err) = paas_cli(&d, &["apps:destroy", "-a", &app]);
    assert!(!ok && err.contains(&format!("--confirm {app}")), "{err}");
    let (ok, out, err) = paas_cli(&d, &["apps:destroy", "-a", &app, "--confirm", &app]);
    assert!(ok, "apps:destroy failed: {out}{err}");
    assert!(out.contains("final backup"), "{out}");
    let page = d.get(&app, "/");
    assert_eq!(page.status, 404, "{}", page.text());
    let (containers, images) = crate::harness::engine_objects(&app);
    assert!(
        containers.is_empty() && images.is_empty(),
        "left behind: {containers:?} {images:?}"
    );
    let net = Command::new("docker")
        .args(["network", "inspect", &format!("paas-{app}")])
        .output()
        .unwrap();
    assert!(!net.status.success(), "the app's network is still there");
    for gone in [
        d.data.path().join("apps").join(&app),
        d.data.path().join("repos").join(format!("{app}.git")),
    ] {
        assert!(!gone.exists(), "{} is still there", gone.display());
    }
    let (ok, _, err) = paas_cli(&d, &["releases", "-a", &app]);
    assert!(!ok && err.contains("no app named"), "{err}");
    let kept: Vec<_> = std::fs::read_dir(d.data.path().join("backups").join(&app))
        .unwrap()
        .collect();
    assert_eq!(kept.len(), 2, "the manual and the final backup");

    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push after destroy rejected:\n{out}");
    assert!(!d.get(&app, "/").text().contains("row before backup"));
    let (ok, out, err) = paas_cli(&d, &["backups", "-a", &app]);
    assert!(ok, "{err}");
    let final_id = out
        .lines()
        .find(|l| l.contains("final"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no final backup listed:\n{out}"))
        .to_string();
    let (ok, out, err) = paas_cli(
        &d,
        &["backups:restore", &final_id, "-a", &app, "--confirm", &app],
    );
    assert!(ok, "restore of the final backup failed: {out}{err}");
    let page = d.get(&app, "/");
    assert!(page.text().contains("row before backup"), "{}", page.text());
}

/// Runs the built `paas` client against the test daemon, in a client
/// environment of its own: (success, stdout, stderr).
fn paas_cli(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let cli = d.cli();
    let out = cli
        .command(cli.home.path())
        .args(args)
        .env("PAAS_TOKEN", &d.token)
        .output()
        .expect("the paas binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// PostgreSQL: pg:create gives the app a database reachable from its own
/// network only; a backup restores a table to its earlier rows; pg:destroy
/// needs confirmation, then drops it and unsets DATABASE_URL.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_database_per_app_with_backup_and_restore() {
    crate::harness::require_parts();
    require_postgres_image();
    let data = tempfile::Builder::new()
        .prefix("paas-it-pg-")
        .tempdir()
        .unwrap();
    let app_name = format!(
        "pg-{:06x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 0xff_ffff
    );
    // Dropped last: the app's objects, once the server has left its network.
    let _app = AppGone(app_name.clone());
    let _server = ServerGone(data.path());
    let ctx = ctx_over(data.path());
    let app = ctx.store.create_app(&app_name, "k").unwrap();
    let network = format!("paas-{app_name}");
    let pg = format!("/api/apps/{app_name}/postgres");

    let (status, _) = call(&ctx, "POST", &pg, false, None).await;
    assert_eq!(status, 401);
    let t = std::time::Instant::now();
    let (status, body) = call(&ctx, "POST", &pg, true, None).await;
    assert_eq!(status, 201, "{body}");
    eprintln!("pg:create (server start, initdb): {:?}", t.elapsed());
    assert!(
        body["message"].as_str().unwrap().contains("redeploy"),
        "{body}"
    );
    assert!(body.get("password").is_none() && !body.to_string().contains("postgres://"));
    let url = ctx.store.config_vars(&app).unwrap()["DATABASE_URL"].clone();
    let prefix = format!("postgres://{app_name}:");
    assert!(url.starts_with(&prefix), "{url}");
    assert!(url.ends_with(&format!("@paas-postgres:5432/{app_name}")));
    let t = std::time::Instant::now();
    let (status, body) = call(&ctx, "POST", &pg, true, None).await;
    assert_eq!(status, 200, "{body}");
    eprintln!("pg:create again (server running): {:?}", t.elapsed());
    assert_eq!(ctx.store.config_vars(&app).unwrap()["DATABASE_URL"], url);

    // Reachable from the app's network with DATABASE_URL; not from elsewhere.
    let (ok, out) = psql(
        Some(&network),
        &url,
        "CREATE TABLE notes (text text); INSERT INTO notes VALUES ('before');",
    );
    assert!(ok, "{out}");
    let (ok, out) = psql(None, &url, "SELECT 1");
    assert!(!ok, "reachable from the default bridge: {out}");
    // Its role cannot reach the server's own database.
    let other = url.rsplit_once('/').unwrap().0.to_string() + "/postgres";
    let (ok, out) = psql(Some(&network), &other, "SELECT 1");
    assert!(!ok && out.contains("no pg_hba.conf entry"), "{out}");

    let backups = format!("/api/apps/{app_name}/backups");
    let (status, m) = call(&ctx, "POST", &backups, true, None).await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["kind"], "postgres", "{m}");
    assert_eq!(m["files"][0]["name"], "db.dump", "{m}");
    eprintln!(
        "postgres backup: {} bytes in {} ms",
        m["size"], m["duration_ms"]
    );
    let id = m["id"].as_str().unwrap().to_string();

    let (ok, out) = psql(
        Some(&network),
        &url,
        "INSERT INTO notes VALUES ('after'); DELETE FROM notes WHERE text = 'before';",
    );
    assert!(ok, "{out}");
    let restore = format!("{backups}/{id}/restore");
    let (status, body) = call(&ctx, "POST", &restore, true, Some(json!({"confirm": "x"}))).await;
    assert_eq!(status, 400, "{body}");
    let t = std::time::Instant::now();
    let (status, body) = call(
        &ctx,
        "POST",
        &restore,
        true,
        Some(json!({ "confirm": app_name })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eprintln!("postgres restore: {:?}", t.elapsed());
    let (ok, out) = psql(Some(&network), &url, "SELECT text FROM notes ORDER BY 1");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "before");

    // A second app on the same server: neither reaches the other's database.
    let other_name = format!("{app_name}-b");
    let _other = AppGone(other_name.clone());
    let other_app = ctx.store.create_app(&other_name, "k").unwrap();
    let (status, body) = call(
        &ctx,
        "POST",
        &format!("/api/apps/{other_name}/postgres"),
        true,
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let other_url = ctx.store.config_vars(&other_app).unwrap()["DATABASE_URL"].clone();
    let other_network = format!("paas-{other_name}");
    let (ok, out) = psql(Some(&other_network), &other_url, "SELECT 1");
    assert!(ok, "the second app cannot reach its own database: {out}");
    // The first app's role, on the first app's network, at the second database.
    let (base_url, _) = url.rsplit_once('/').unwrap();
    let cross = format!("{base_url}/{other_name}");
    let (ok, out) = psql(Some(&network), &cross, "SELECT 1");
    assert!(
        !ok && out.contains("no pg_hba.conf entry"),
        "one app reached another's database: {out}"
    );
    let (ok, out) = psql(
        Some(&other_network),
        &format!("{base_url}/{app_name}"),
        "SELECT 1",
    );
    assert!(
        !ok,
        "the first app's credentials work from the second app's network: {out}"
    );
    let (status, body) = call(
        &ctx,
        "DELETE",
        &format!("/api/apps/{other_name}/postgres"),
        true,
        Some(json!({ "confirm": other_name })),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = call(&ctx, "DELETE", &pg, true, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{{\"confirm\": \"{app_name}\"}}")),
        "{body}"
    );
    let (status, body) = call(
        &ctx,
        "DELETE",
        &pg,
        true,
        Some(json!({ "confirm": app_name })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!ctx
        .store
        .config_vars(&app)
        .unwrap()
        .contains_key("DATABASE_URL"));
    let (status, _) = call(&ctx, "GET", &pg, true, None).await;
    assert_eq!(status, 404);
    let (ok, out) = psql(Some(&network), &url, "SELECT 1");
    assert!(!ok, "still reachable after pg:destroy: {out}");
    let (status, body) = call(
        &ctx,
        "POST",
        &restore,
        true,
        Some(json!({ "confirm": app_name })),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("pg:create"),
        "{body}"
    );

    // Nothing of the app is left in the engine but its network.
    let left = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=paas.app={app_name}"),
        ])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "one-off containers left behind");
}

/// A backup that cannot be taken is loud: non-2xx with the reason, a
/// manifest with status failed (no partial files), and it cannot be restored.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_backup_is_recorded_and_refused_for_restore() {
    let data = tempfile::Builder::new()
        .prefix("paas-it-bkfail-")
        .tempdir()
        .unwrap();
    let ctx = ctx_over(data.path());
    ctx.store.create_app("broken", "k").unwrap();
    let base = "/api/apps/broken/backups";
    let (status, body) = call(&ctx, "POST", base, true, None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("deploy it first"),
        "{body}"
    );

    let vol = data.path().join("apps/broken/data");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("db.sqlite3"), vec![b'x'; 4096]).unwrap();
    let (status, body) = call(&ctx, "POST", base, true, None).await;
    assert_eq!(status, 500, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("failed") && error.contains("not a database"),
        "{error}"
    );

    let (_, list) = call(&ctx, "GET", base, true, None).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "failed");
    assert!(list[0]["error"]
        .as_str()
        .unwrap()
        .contains("not a database"));
    let id = list[0]["id"].as_str().unwrap();
    let files: Vec<_> = std::fs::read_dir(data.path().join("backups/broken").join(id))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["manifest.json"]);

    // Loud on the dashboard too: the app page says the latest backup failed.
    let session = ctx.sessions.create();
    let page = paas::router::router(ctx.clone())
        .oneshot(
            Request::get("/apps/broken")
                .header("cookie", format!("paas_session={session}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8_lossy(&html);
    assert!(
        html.contains("The latest backup failed") && html.contains("not a database"),
        "{html}"
    );

    let (status, body) = call(
        &ctx,
        "POST",
        &format!("{base}/{id}/restore"),
        true,
        Some(json!({ "confirm": "broken" })),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("did not complete"),
        "{body}"
    );
}

/// A release whose migration drops a column: paas snapshots the data before
/// migrating, and `paas rollback v1 --restore-db` brings back the old code
/// and the data its schema needs.
#[test]
fn rollback_restore_db_undoes_a_migration_that_dropped_a_column() {
    let mut d = Daemon::start();
    let app = d.app("mig");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "first push rejected:\n{out}");
    let r = d.post_form(&app, "/add/", "text=kept+row");
    assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());

    // v2 drops Note.created; v1's code orders by it.
    p.replace(
        "    created = models.DateTimeField(auto_now_add=True)\n",
        "",
    );
    p.replace("order_by('created')", "order_by('pk')");
    p.replace("Notes v1", "Notes v2");
    std::fs::write(
        p.dir
            .path()
            .join("notes/migrations/0002_remove_note_created.py"),
        "from django.db import migrations\n\n\n\
         class Migration(migrations.Migration):\n    \
             dependencies = [('notes', '0001_initial')]\n    \
             operations = [migrations.RemoveField(model_name='note', name='created')]\n",
    )
    .unwrap();
    p.commit("drop Note.created");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push of v2 rejected:\n{out}");
    assert!(
        out.contains("taking a snapshot of the data first"),
        "no snapshot before the migration:\n{out}"
    );
    d.assert_serves(&app, "Notes v2");
    let r = d.post_form(&app, "/add/", "text=row+after+v2");
    assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());
    let (ok, list, err) = paas_cli(&d, &["backups", "-a", &app]);
    assert!(ok && list.contains("pre-migrate"), "{list}{err}");

    // A redeploy without migrations takes no snapshot.
    p.replace("Notes v2", "Notes v2b");
    p.commit("text only");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push of v3 rejected:\n{out}");
    assert!(out.contains("No migrations to apply"), "{out}");
    assert!(!out.contains("snapshot"), "{out}");

    let (ok, out, err) = paas_cli(&d, &["rollback", "v1", "--restore-db", "-a", &app]);
    assert!(ok, "rollback --restore-db failed: {out}{err}");
    let page = d.get(&app, "/");
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    assert!(
        text.contains("Notes v1") && text.contains("kept row"),
        "{text}"
    );
    assert!(!text.contains("row after v2"), "{text}");

    // Nothing migrated after v4 (the rollback): nothing to restore.
    let (ok, _, err) = paas_cli(&d, &["rollback", "v3", "--restore-db", "-a", &app]);
    assert!(!ok, "a restore without a snapshot succeeded");
    assert!(err.contains("no pre-migrate snapshot"), "{err}");
}

/// Unmounts a test mount, even when the test fails.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, opts: &str) -> Unmount {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "cannot mount a tmpfs at {}: this test needs root (run the suite as root, as tests/setup.sh says)",
        dir.display()
    );
    Unmount(dir.to_path_buf())
}

/// A backup into a full or a read-only location fails loudly: a sentence
/// that says what to do, a non-zero exit from the CLI, a failed entry.
#[test]
fn a_backup_into_a_full_or_read_only_place_fails_loudly() {
    let mut d = Daemon::start();
    let app = d.app("full");
    let ctx = ctx_over(d.data.path());
    ctx.store.create_app(&app, "k").unwrap();
    let vol = d.data.path().join("apps").join(&app).join("data");
    std::fs::create_dir_all(&vol).unwrap();
    {
        let db = rusqlite::Connection::open(vol.join("db.sqlite3")).unwrap();
        db.execute_batch("CREATE TABLE t (x blob);").unwrap();
        for _ in 0..64 {
            db.execute("INSERT INTO t VALUES (randomblob(4096))", [])
                .unwrap();
        }
    }
    let backups = d.data.path().join("backups").join(&app);

    let full = mount_tmpfs(&backups, "size=64k");
    let (ok, out, err) = paas_cli(&d, &["backups:create", "-a", &app]);
    assert!(!ok, "a backup into a full disk succeeded: {out}");
    assert!(
        err.contains("is full") && err.contains("free"),
        "the message says what to do: {err}"
    );
    drop(full);

    let ro = mount_tmpfs(&backups, "ro,size=64k");
    let (ok, out, err) = paas_cli(&d, &["backups:create", "-a", &app]);
    assert!(!ok, "a backup into a read-only place succeeded: {out}");
    assert!(err.contains("read-only"), "the message says why: {err}");
    drop(ro);

    // And with room again, the same backup works.
    let (ok, out, err) = paas_cli(&d, &["backups:create", "-a", &app]);
    assert!(ok, "{out}{err}");
}

/// `pg:create` on a live app moves it to PostgreSQL without downtime (a
/// rebuild adds the driver, migrate runs on the new database); rows written
/// there survive a redeploy, a rollback, a restart and a SIGKILL of paas;
/// `pg:destroy` moves it back to SQLite before dropping anything.
#[test]
fn a_live_app_moves_to_postgres_and_its_rows_survive_everything() {
    require_postgres_image();
    let mut d = Daemon::start();
    let data_path = d.data.path().to_path_buf();
    let _server = ServerGone(&data_path);
    let app = d.app("pgmove");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "first push rejected:\n{out}");
    let r = d.post_form(&app, "/add/", "text=sqlite+row");
    assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());

    let (ok, out, err) = paas_cli(&d, &["pg:create", "-a", &app]);
    assert!(ok, "pg:create failed: {out}{err}");
    assert!(out.contains("is live on it"), "{out}");
    let (ok, info, err) = paas_cli(&d, &["pg:info", "-a", &app]);
    assert!(ok, "pg:info failed: {err}");
    assert!(
        info.contains(&format!("database {app} (role {app})")) && info.contains("running"),
        "{info}"
    );
    assert!(
        !info.contains("postgres://"),
        "pg:info shows no password: {info}"
    );
    let vendor = |d: &Daemon| {
        let (ok, out, err) = paas_cli(
            d,
            &[
                "run",
                "--no-tty",
                "-a",
                &app,
                "--",
                "python",
                "manage.py",
                "shell",
                "-c",
                "from django.db import connection; print('vendor', connection.vendor)",
            ],
        );
        assert!(ok, "paas run failed: {out}{err}");
        out
    };
    assert!(vendor(&d).contains("vendor postgresql"));
    let page = d.get(&app, "/");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(!page.text().contains("sqlite row"), "a new, empty database");
    let r = d.post_form(&app, "/add/", "text=postgres+row");
    assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());

    for (from, v) in [("Notes v1", "Notes v3"), ("Notes v3", "Notes v4")] {
        p.replace(from, v);
        p.commit(v);
        let (ok, out) = p.push(&d.remote(&app));
        assert!(ok, "push rejected:\n{out}");
        d.assert_serves(&app, v);
        d.assert_serves(&app, "postgres row");
    }
    let (ok, out, err) = paas_cli(&d, &["rollback", "-a", &app]);
    assert!(ok, "rollback failed: {out}{err}");
    d.assert_serves(&app, "postgres row");
    let (ok, out, err) = paas_cli(&d, &["restart", "-a", &app]);
    assert!(ok, "restart failed: {out}{err}");
    d.assert_serves(&app, "postgres row");
    let mut child = d.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    d.spawn();
    d.assert_serves(&app, "postgres row");

    let (ok, out, err) = paas_cli(&d, &["pg:destroy", "-a", &app, "--confirm", &app]);
    assert!(ok, "pg:destroy failed: {out}{err}");
    assert!(out.contains("live on SQLite again"), "{out}");
    assert!(vendor(&d).contains("vendor sqlite"));
    d.assert_serves(&app, "sqlite row");
}
