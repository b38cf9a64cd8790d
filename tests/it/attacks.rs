//! Attacks by a hostile app on the host, performed against a real daemon
//! and the real engine. The app's code runs as its own user, but it writes
//! its volume (`/data`), its build writes `/paas/meta.json`, and the daemon
//! that reads both runs as root: each test plants what an attacker would
//! and checks that the host file or folder aimed at stays unread and
//! untouched.

use crate::harness::{Daemon, HttpResponse, Project};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `paas ARGS` in the project `dir` (the daemon comes from its remote).
fn paas(dir: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paas"));
    cmd.args(args).current_dir(dir);
    for k in ["PAAS_URL", "PAAS_TOKEN", "PAAS_CONFIG", "PAAS_DATA_DIR"] {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("the paas binary runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sh -c SCRIPT` in a one-off container of the app (as the app's user).
fn in_app(dir: &Path, script: &str) -> Out {
    paas(dir, &["run", "--no-tty", "--", "sh", "-c", script])
}

fn api(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (HttpResponse, String) {
    let auth = format!("Bearer {}", d.token);
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = d.admin_request(method, path, &headers, body.map(str::as_bytes));
    let text = r.text();
    (r, text)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A host folder the attacker aims at, with a file in it; root's own.
fn host_folder() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("paas-host-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("keep.txt"), "host file, not the app's").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// What a host folder holds and who owns it, to compare before and after.
fn fingerprint(dir: &Path) -> (u32, u32, u32, Vec<(String, String)>) {
    let m = std::fs::symlink_metadata(dir).unwrap();
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    files.sort();
    (m.uid(), m.gid(), m.mode() & 0o7777, files)
}

/// Probe 1 and High 1–2: links the app plants in its volume. The proxy
/// serves none of them (the admin token stays unread), a backup refuses a
/// linked media folder, `paas run` (which prepares the volume, with a
/// chown) refuses it without changing the host folder's owner, and a
/// restore replaces the link with a real folder instead of emptying and
/// unpacking into the host folder.
#[test]
fn links_planted_in_the_volume_reach_no_host_file() {
    let mut d = Daemon::start();
    let app = d.app("evil");
    let p = Project::from_fixture("blog");
    let here = p.dir.path();
    assert!(p
        .git(&["remote", "add", "paas", &d.remote(&app)])
        .status
        .success());
    let (ok, out) = p.push("paas");
    assert!(ok, "push rejected:\n{out}");

    let data = d.data.path().display().to_string();
    let token_file = format!("{data}/admin.token");
    let r = in_app(
        here,
        &format!(
            "set -e; cd /data/media; echo public > ok.txt; \
             ln -s {token_file} x; ln -s {data} d; ln -s / root; \
             mkdir sub; ln -s {token_file} sub/y; ln -s ../../../../../../../{token_file} up; \
             mkfifo fifo; ls -la"
        ),
    );
    assert_eq!(r.code, 0, "{r}");

    // The media mount works: the 404s below are the locks, not a missing mount.
    let ok = d.get(&app, "/media/ok.txt");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.text().trim(), "public");
    for path in [
        "/media/x",
        "/media/d/admin.token",
        "/media/d/paas.db",
        "/media/root/etc/passwd",
        "/media/sub/y",
        "/media/up",
        "/media/fifo",
        "/media/%2e%2e/db.sqlite3",
        "/media/..%2fdb.sqlite3",
    ] {
        let r = d.get(&app, path);
        assert_eq!(r.status, 404, "GET {path}: {}", r.text());
        assert!(
            !r.text().contains(&d.token),
            "GET {path} served the admin token"
        );
        assert!(
            !r.text().contains("root:x:0:0"),
            "GET {path} served /etc/passwd"
        );
    }

    // A backup stores the links as links: the token is not in it.
    let (r, text) = api(&d, "POST", &format!("/api/apps/{app}/backups"), None);
    assert_eq!(r.status, 201, "{text}");
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let good = m["id"].as_str().unwrap().to_string();
    let backup_dir = d.data.path().join("backups").join(&app).join(&good);
    let tar = std::fs::read(backup_dir.join("media.tar")).unwrap();
    assert!(
        !String::from_utf8_lossy(&tar).contains(&d.token),
        "the backup followed a link to the admin token"
    );
    for f in ["media.tar", "db.sqlite3", "manifest.json"] {
        assert_eq!(mode(&backup_dir.join(f)), 0o600, "{f}");
    }

    // Now the whole media folder becomes a link to a host folder.
    let host = host_folder();
    let before = fingerprint(host.path());
    let r = in_app(
        here,
        &format!(
            "rm -rf /data/media && ln -s {} /data/media",
            host.path().display()
        ),
    );
    assert_eq!(r.code, 0, "{r}");
    let r = d.get(&app, "/media/keep.txt");
    assert_eq!(
        r.status,
        404,
        "the proxy followed /data/media: {}",
        r.text()
    );

    // High 2: preparing the volume (here for `paas run`) chowned through the
    // link; now it refuses, with what to do.
    let r = paas(here, &["run", "--no-tty", "--", "true"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("is a symbolic link where paas expects a folder")
            && r.stderr.contains("move it away on the server"),
        "{r}"
    );
    assert_eq!(fingerprint(host.path()), before, "the host folder changed");

    // High 1: the backup refuses the linked folder instead of archiving the host's.
    let (r, text) = api(&d, "POST", &format!("/api/apps/{app}/backups"), None);
    assert!(r.status >= 400, "{text}");
    assert!(text.contains("symbolic link"), "{text}");
    let archived = std::fs::read_dir(d.data.path().join("backups").join(&app))
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("media.tar")).ok())
        .any(|t| String::from_utf8_lossy(&t).contains("host file, not the app's"));
    assert!(!archived, "a backup archived the host folder");

    // The restore puts a real folder back; the host folder is not emptied
    // and nothing is unpacked into it.
    let (r, text) = api(
        &d,
        "POST",
        &format!("/api/apps/{app}/backups/{good}/restore"),
        Some(&format!(r#"{{"confirm": "{app}"}}"#)),
    );
    assert_eq!(r.status, 200, "{text}");
    assert_eq!(fingerprint(host.path()), before, "the host folder changed");
    let media = d
        .data
        .path()
        .join("apps")
        .join(&app)
        .join("data")
        .join("media");
    let m = std::fs::symlink_metadata(&media).unwrap();
    assert!(m.is_dir(), "media is a real folder again");
    assert_eq!((m.uid(), m.gid()), (10001, 10001), "owned by the app");
    let ok = std::fs::symlink_metadata(media.join("ok.txt")).unwrap();
    assert_eq!((ok.uid(), ok.mode() & 0o7000), (10001, 0));
    assert!(std::fs::symlink_metadata(media.join("x"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(d.get(&app, "/media/ok.txt").text().trim(), "public");
    assert_eq!(d.get(&app, "/media/x").status, 404);
    let r = paas(here, &["run", "--no-tty", "--", "true"]);
    assert_eq!(r.code, 0, "{r}");
}

/// Probe 2 and its neighbours: a build (the app's code) that reports a
/// MEDIA_ROOT climbing out of /data, or the whole volume as MEDIA_ROOT, is
/// refused with a sentence saying what to set; an honest build whose
/// collectstatic output holds links serves an in-tree link's file and no
/// link to a host file.
#[test]
fn a_build_cannot_point_the_proxy_outside_its_files() {
    let mut d = Daemon::start();
    let app = d.app("meta");
    let p = Project::from_fixture("blog");
    let remote = d.remote(&app);
    let settings = p.dir.path().join("mysite/settings.py");
    let honest = std::fs::read_to_string(&settings).unwrap();
    let token_file = d.data.path().join("admin.token");

    // The build step runs the app's settings: they rewrite the metadata
    // when it exits.
    let lie = format!(
        "{honest}\nimport atexit as _atexit, json as _json, os as _os, sys as _sys\n\
         if _sys.argv[1:2] == ['build']:\n\
         \x20   def _lie():\n\
         \x20       with open(_os.path.join(_sys.argv[2], 'meta.json'), 'w') as f:\n\
         \x20           _json.dump({{'static_url': '/static/', 'static_root': '/app/staticfiles', \
         'media_url': '/media/', 'media_root': '/data/../../..'}}, f)\n\
         \x20   _atexit.register(_lie)\n"
    );
    std::fs::write(&settings, lie).unwrap();
    p.commit("a build that lies about MEDIA_ROOT");
    let (ok, out) = p.push(&remote);
    assert!(!ok, "a climbing MEDIA_ROOT was accepted:\n{out}");
    assert!(
        out.contains("\"/data/../../..\", which is not a plain absolute path")
            && out.contains("set MEDIA_ROOT to \"/data/media\""),
        "{out}"
    );
    for path in ["/media/etc/passwd", "/media/proc/self/environ"] {
        let r = d.get(&app, path);
        assert_ne!(r.status, 200, "GET {path}: {}", r.text());
        assert!(!r.text().contains("root:x:0:0"), "GET {path}");
    }

    // MEDIA_ROOT = /data would publish db.sqlite3.
    std::fs::write(&settings, format!("{honest}\nMEDIA_ROOT = '/data'\n")).unwrap();
    p.commit("MEDIA_ROOT is the whole volume");
    let (ok, out) = p.push(&remote);
    assert!(!ok, "MEDIA_ROOT=/data was accepted:\n{out}");
    assert!(
        out.contains("MEDIA_ROOT is /data, the app's whole volume")
            && out.contains("set MEDIA_ROOT to \"/data/media\""),
        "{out}"
    );

    // Honest paths, but links in the collected static files: one to a file
    // in the tree, one to the admin token on the host.
    let plant = format!(
        "{honest}\nimport atexit as _atexit, os as _os, sys as _sys\n\
         if _sys.argv[1:2] == ['build']:\n\
         \x20   def _plant():\n\
         \x20       _os.symlink('notes/style.css', '/app/staticfiles/alias.css')\n\
         \x20       _os.symlink('{}', '/app/staticfiles/token.css')\n\
         \x20       _os.symlink('../../../../../../..{}', '/app/staticfiles/up.css')\n\
         \x20   _atexit.register(_plant)\n",
        token_file.display(),
        token_file.display()
    );
    std::fs::write(&settings, plant).unwrap();
    p.commit("links in the static files");
    let (ok, out) = p.push(&remote);
    assert!(ok, "push rejected:\n{out}");
    d.assert_serves(&app, "Notes v1");
    let css = d.get(&app, "/static/notes/style.css");
    assert_eq!(css.status, 200, "{}", css.text());
    let alias = d.get(&app, "/static/alias.css");
    assert_eq!(alias.status, 200, "{}", alias.text());
    assert_eq!(alias.body, css.body);
    for path in ["/static/token.css", "/static/up.css", "/media/../paas.db"] {
        let r = d.get(&app, path);
        assert_eq!(r.status, 404, "GET {path}: {}", r.text());
        assert!(!r.text().contains(&d.token), "GET {path} served the token");
    }
}

/// Secrets at rest: whatever modes an installer left, a daemon start makes
/// the data folder 0700 and the token and state database 0600.
#[test]
fn a_start_makes_the_data_folder_private() {
    let mut d = Daemon::start();
    let dir = d.data.path().to_path_buf();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("admin.token")), 0o600);
    assert_eq!(mode(&dir.join("paas.db")), 0o600);

    // An installer that left everything readable.
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    for (path, m) in [
        (dir.clone(), 0o755),
        (dir.join("admin.token"), 0o644),
        (dir.join("paas.db"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    d.spawn();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("admin.token")), 0o600);
    assert_eq!(mode(&dir.join("paas.db")), 0o600);
}
