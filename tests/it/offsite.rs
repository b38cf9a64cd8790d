//! Offsite backups against a real S3-compatible server (moto's, over real
//! HTTP): set the target, every backup encrypted and uploaded, listed with
//! its copies, drilled back into a scratch database; a byte flipped in the
//! stored object fails the drill, loudly; an upload that fails is loud and
//! retried. One daemon and one push for all of it.

use crate::dashboard::login;
use crate::harness::{Daemon, Project, S3Server};

const BUCKET: &str = "paas-offsite";
const SECRET: &str = "moto-secret-KEY-4242";
const PASSPHRASE: &str = "correct horse battery staple";

/// Runs the built `paas` client against the daemon: (success, stdout, stderr).
fn paas(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let cli = d.cli();
    let out = cli
        .command(cli.home.path())
        .args(args)
        .env("PAAS_TOKEN", &d.token)
        .env("PAAS_BACKUP_PASSPHRASE", PASSPHRASE)
        .output()
        .expect("the paas binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn set_target(d: &Daemon, url: &str, endpoint: &str) -> (bool, String, String) {
    paas(
        d,
        &[
            "backups:offsite:set",
            url,
            "--endpoint",
            endpoint,
            "--access-key-id",
            "moto-id",
            "--secret-access-key",
            SECRET,
        ],
    )
}

fn dashboard_page(d: &Daemon, session: &str, app: &str) -> String {
    let r = d.admin_request("GET", &format!("/apps/{app}"), &[("Cookie", session)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn backups_go_offsite_encrypted_and_a_drill_catches_a_flipped_byte() {
    crate::harness::require_parts();
    let mut s3 = S3Server::start(BUCKET);
    let mut d = Daemon::start();
    let app = d.app("off");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    for row in ["offsite+row+one", "offsite+row+two"] {
        let r = d.post_form(&app, "/add/", &format!("text={row}"));
        assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());
    }
    // An upload, as the app would have stored it.
    let media = paas::layout::media_path(d.data.path(), &app).join("uploads");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("cat.txt"), "an uploaded cat").unwrap();

    // Nothing set yet: said so, and a drill says what to do.
    let (ok, out, _) = paas(&d, &["backups:offsite"]);
    assert!(ok && out.contains("no offsite storage is set"), "{out}");
    let (ok, _, err) = paas(&d, &["backups:drill", "-a", &app]);
    assert!(!ok && err.contains("backups:offsite:set"), "{err}");

    // A bucket that does not exist, and a storage that does not answer, are
    // refused when set, with what to do.
    let (ok, _, err) = set_target(&d, "s3://no-such-bucket/x", &s3.endpoint());
    assert!(!ok && err.contains("create the bucket"), "{err}");
    let (ok, _, err) = set_target(&d, "s3://some-bucket", "http://127.0.0.1:9");
    assert!(
        !ok && err.contains("cannot reach the offsite storage"),
        "{err}"
    );
    let (ok, _, err) = set_target(&d, "bucket-only", &s3.endpoint());
    assert!(!ok && err.contains("s3://BUCKET"), "{err}");

    let url = format!("s3://{BUCKET}/vps1");
    let (ok, out, err) = set_target(&d, &url, &s3.endpoint());
    assert!(ok, "offsite:set failed: {out}{err}");
    for args in [&["backups:offsite"][..], &["backups:offsite", "--json"]] {
        let (ok, out, err) = paas(&d, args);
        assert!(ok, "{err}");
        assert!(
            out.contains(&s3.endpoint()) && out.contains("moto-id"),
            "{out}"
        );
        assert!(!out.contains(SECRET), "the secret is shown: {out}");
    }
    let (ok, out, _) = paas(&d, &["backups:offsite:key"]);
    assert!(
        ok && out.contains(PASSPHRASE) && out.contains("age --decrypt"),
        "{out}"
    );

    // A backup: taken, encrypted, uploaded.
    let (ok, out, err) = paas(&d, &["backups:create", "-a", &app]);
    assert!(ok, "backups:create: {out}{err}");
    assert!(out.contains("uploaded offsite"), "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let keys = s3.keys(BUCKET, &format!("vps1/apps/{app}/"));
    let key = format!("vps1/apps/{app}/{id}.tar.age");
    assert_eq!(keys, std::slice::from_ref(&key));
    let object = s3.get_object(BUCKET, &key);
    assert!(
        object.starts_with(b"age-encryption.org/v1"),
        "not an age file"
    );
    for plain in [&b"offsite row one"[..], b"an uploaded cat", b"CREATE TABLE"] {
        assert!(
            !object.windows(plain.len()).any(|w| w == plain),
            "the stored object holds {:?} in clear",
            String::from_utf8_lossy(plain)
        );
    }
    let (ok, out, err) = paas(&d, &["backups", "-a", &app]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("local+offsite"), "{out}");

    // The drill: the latest offsite copy restored into a scratch file, with
    // the tables and rows of its manifest.
    let (ok, out, err) = paas(&d, &["backups:drill", "-a", &app]);
    assert!(ok, "drill failed: {out}{err}");
    assert!(out.contains("drill passed") && out.contains(&id), "{out}");
    let session = login(&d, &d.token);
    let page = dashboard_page(&d, &session, &app);
    assert!(page.contains("Last restore drill: passed"), "{page}");

    // A byte flipped in the stored object: the drill fails, loudly.
    let mut body = object.clone();
    let at = body.len() / 2;
    body[at] ^= 0x20;
    s3.put_object(BUCKET, &key, body);
    let (ok, out, err) = paas(&d, &["backups:drill", "-a", &app]);
    assert!(!ok, "a drill of a damaged object passed: {out}");
    assert!(
        err.contains("restore drill FAILED") && err.contains("changed or damaged"),
        "{err}"
    );
    let page = dashboard_page(&d, &session, &app);
    assert!(page.contains("Last restore drill FAILED"), "{page}");
    assert!(
        d.log_text().contains("restore drill FAILED"),
        "not in the log"
    );

    // The storage goes away: the backup is kept here, its copy fails loudly
    // (CLI, listing, dashboard, log), and goes up once the storage is back.
    let port = s3.port;
    s3.stop();
    let (ok, out, err) = paas(&d, &["backups:create", "-a", &app]);
    assert!(!ok, "an upload to a stopped storage passed: {out}");
    assert!(
        err.contains("offsite copy FAILED") && err.contains("cannot reach"),
        "{err}"
    );
    let failed_id = out.split_whitespace().nth(1).unwrap().to_string();
    let (ok, out, err) = paas(&d, &["backups", "-a", &app]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&failed_id))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("offsite FAILED"), "{out}");
    assert!(err.contains("cannot be listed"), "{err}");
    let page = dashboard_page(&d, &session, &app);
    assert!(
        page.contains("offsite copy of the latest backup FAILED"),
        "{page}"
    );
    assert!(
        d.log_text().contains("offsite copy failed"),
        "not in the log"
    );

    let s3 = S3Server::start_on(port, BUCKET);
    let (ok, out, err) = set_target(&d, &url, &s3.endpoint());
    assert!(ok, "{out}{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let keys = s3.keys(BUCKET, &format!("vps1/apps/{app}/"));
        if keys.iter().any(|k| k.contains(&failed_id)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failed copy was not retried: {keys:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (ok, out, err) = paas(&d, &["backups:drill", "-a", &app]);
    assert!(ok, "drill after the retry failed: {out}{err}");
    assert!(
        out.contains(&failed_id),
        "the latest copy was drilled: {out}"
    );

    // Neither the secret nor the passphrase reach the log.
    let log = d.log_text();
    assert!(
        !log.contains(SECRET) && !log.contains(PASSPHRASE),
        "a secret in the log"
    );
}

/// Removes a data dir's PostgreSQL server, its volume and its network.
struct PgServerGone(std::path::PathBuf);

impl Drop for PgServerGone {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", &paas::layout::server_name(&self.0)])
            .output();
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &paas::layout::server_network(&self.0)])
            .output();
    }
}

/// The disaster: two apps (SQLite with uploads and a custom domain,
/// PostgreSQL) with rows; server:backup; the data folder, containers,
/// volumes and images gone; a fresh daemon; server:restore; both serve the
/// same rows and uploads, and a drill of each passes.
#[test]
fn a_fresh_install_comes_back_from_a_server_backup() {
    crate::harness::require_parts();
    let s3 = S3Server::start(BUCKET);
    let mut old = Daemon::start();
    let old_pg = PgServerGone(old.data.path().to_path_buf());
    let files = old.app("dr-files");
    let pg = old.app("dr-pg");
    let p1 = Project::from_fixture("uploads");
    let (ok, out) = p1.push(&old.remote(&files));
    assert!(ok, "push rejected:\n{out}");
    let r = crate::buildpack::upload(&old, &files, "kept.txt", "an upload that must come back");
    assert_eq!(r.status, 201, "upload: {}", r.text());
    let (ok, out, err) = paas(&old, &["domains:add", "files.example.test", "-a", &files]);
    assert!(ok, "domains:add: {out}{err}");

    let p2 = Project::from_fixture("blog");
    let (ok, out) = p2.push(&old.remote(&pg));
    assert!(ok, "push rejected:\n{out}");
    let (ok, out, err) = paas(&old, &["pg:create", "-a", &pg]);
    assert!(ok, "pg:create: {out}{err}");
    for row in ["postgres+row+one", "postgres+row+two"] {
        let r = old.post_form(&pg, "/add/", &format!("text={row}"));
        assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());
    }
    let (ok, out, err) = paas(&old, &["config:set", "-a", &pg, "GREETING=hello"]);
    assert!(ok, "config:set: {out}{err}");

    let url = format!("s3://{BUCKET}/vps2");
    let (ok, out, err) = set_target(&old, &url, &s3.endpoint());
    assert!(ok, "{out}{err}");
    let t = std::time::Instant::now();
    let (ok, out, err) = paas(&old, &["server:backup"]);
    assert!(ok, "server:backup: {out}{err}");
    eprintln!("server:backup took {:?}: {out}", t.elapsed());
    assert_eq!(s3.keys(BUCKET, "vps2/server/").len(), 1);

    // The disaster: the daemon, its data folder, the apps' containers,
    // images and networks, the PostgreSQL server and its volume, all gone.
    let mut child = old.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    for app in [&files, &pg] {
        crate::harness::remove_app_objects(app);
    }
    drop(old_pg);
    std::fs::remove_dir_all(old.data.path()).unwrap();

    let mut new = Daemon::start();
    let _new_pg = PgServerGone(new.data.path().to_path_buf());
    new.adopt(&files);
    new.adopt(&pg);
    let t = std::time::Instant::now();
    let (ok, out, err) = paas(
        &new,
        &[
            "server:restore",
            &url,
            "--endpoint",
            &s3.endpoint(),
            "--access-key-id",
            "moto-id",
            "--secret-access-key",
            SECRET,
        ],
    );
    assert!(ok, "server:restore: {out}{err}");
    eprintln!("server:restore took {:?}:\n{out}", t.elapsed());

    let r = new.get(&files, "/files/attachments/kept.txt");
    assert_eq!(r.status, 200, "the upload: {}", r.text());
    assert_eq!(r.text().trim_end(), "an upload that must come back");
    new.assert_serves(&files, "kept.txt");
    let r = crate::harness::http(new.http, "GET", "files.example.test", "/", &[], None);
    assert_eq!(r.status, 200, "the custom domain: {}", r.text());
    new.assert_serves(&pg, "postgres row one");
    new.assert_serves(&pg, "postgres row two");
    let (ok, out, err) = paas(&new, &["config", "-a", &pg]);
    assert!(ok && out.contains("GREETING"), "{out}{err}");
    // A second restore onto a server with apps is refused.
    let (ok, _, err) = paas(
        &new,
        &[
            "server:restore",
            &url,
            "--endpoint",
            &s3.endpoint(),
            "--access-key-id",
            "moto-id",
            "--secret-access-key",
            SECRET,
        ],
    );
    assert!(!ok && err.contains("fresh install"), "{err}");
    // Both apps' offsite copies restore into scratch databases (PostgreSQL
    // included) with the rows their manifests recorded.
    let (ok, out, err) = paas(&new, &["backups:drill"]);
    assert!(ok, "drill: {out}{err}");
    assert_eq!(out.matches("drill passed").count(), 2, "{out}");
}
