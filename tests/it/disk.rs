//! The disk never fills: paas prunes what it made (and nothing it did not
//! make), and `paas system:df` says where the space went.

use crate::harness::{Daemon, Project};
use std::process::Command;
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The `name:tag`s of a repository, sorted.
fn tags(repo: &str) -> Vec<String> {
    let (_, out) = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}", repo]);
    let mut tags: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty() && !l.ends_with(":<none>"))
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

/// `paas ARGS` against `d` with its admin token: (success, stdout, stderr).
fn paas(d: &Daemon, args: &[&str]) -> (bool, String, String) {
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

/// An image tagged by this test: removed at its end, whatever happens.
struct ForeignTag(String);

impl Drop for ForeignTag {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.0]);
    }
}

/// After 8 pushes exactly the last 5 releases' images remain (and a tag a
/// daemon stopped half-way through a deploy would leave goes too), with
/// the static files of those 5 only; an image of the owner's, tagged
/// before the pushes, is still there.
#[test]
fn prune_keeps_the_kept_releases_images_and_nothing_foreign() {
    let mut d = Daemon::start();
    let app = d.app("prune");
    let foreign = ForeignTag(format!(
        "{}/foreign:1",
        app.replace("prune-", "paas-it-foreign-")
    ));
    let (ok, out) = docker(&["tag", "python:3.11-slim", &foreign.0]);
    assert!(ok, "{out}");

    let p = Project::from_fixture("blog");
    for n in 1..=8 {
        if n > 1 {
            p.append("notes/views.py", &format!("\n# push {n}\n"));
            p.commit(&format!("push {n}"));
        }
        let (ok, out) = p.push(&d.remote(&app));
        assert!(ok, "push {n} rejected:\n{out}");
        if n == 1 {
            // What a daemon stopped between the build and the store leaves.
            let (ok, out) = docker(&[
                "tag",
                &format!("paas/{app}:v1"),
                &format!("paas/{app}:v1000"),
            ]);
            assert!(ok, "{out}");
        }
    }
    d.assert_serves(&app, "Notes");

    let want: Vec<String> = (4..=8).map(|v| format!("paas/{app}:v{v}")).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    // The old release drains (5 s here) before its image and its static
    // files may go.
    let releases = d.data.path().join("apps").join(&app).join("releases");
    let dirs = || {
        let mut dirs: Vec<String> = std::fs::read_dir(&releases)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        dirs.sort();
        dirs
    };
    let want_dirs = ["v4", "v5", "v6", "v7", "v8"];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = tags(&format!("paas/{app}"));
    while (got != want_sorted || dirs() != want_dirs) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        got = tags(&format!("paas/{app}"));
    }
    assert_eq!(got, want_sorted, "the kept releases' images, no more");
    assert_eq!(dirs(), want_dirs, "static files of the kept releases");
    assert_eq!(
        tags(foreign.0.split(':').next().unwrap()),
        std::slice::from_ref(&foreign.0),
        "an image paas did not make survives"
    );
    assert!(
        docker(&["image", "inspect", "python:3.11-slim"]).0,
        "the base image survives"
    );
    // The dependency image the kept releases stand on stays.
    let (ok, key) = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"paas.deps\"}}",
        &want[4],
    ]);
    assert!(ok && !key.trim().is_empty(), "v8 carries paas.deps: {key}");
    let (_, deps) = docker(&[
        "images",
        "-q",
        "--filter",
        &format!("label=paas.deps={}", key.trim()),
        "paas-deps",
    ]);
    assert!(!deps.trim().is_empty(), "paas-deps image of {key} kept");

    // `paas system:df`: what the app's images, volume and logs take.
    let (ok, out, err) = paas(&d, &["system:df", "--json"]);
    assert!(ok, "{err}");
    let df: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = df["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == app.as_str())
        .unwrap_or_else(|| panic!("{app} in {df:#}"))
        .clone();
    let sizes: u64 = want
        .iter()
        .map(|tag| {
            let (ok, out) = docker(&["image", "inspect", "--format", "{{.Size}}", tag]);
            assert!(ok, "{out}");
            out.trim().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(row["images"], sizes, "the kept images' sizes: {row:#}");
    assert!(row["volume"].as_u64().unwrap() > 0, "static files: {row:#}");
    assert!(row["logs"].as_u64().unwrap() > 0, "release logs: {row:#}");
    // The pre-migrate snapshots of the pushes.
    fn bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|es| {
                es.flatten()
                    .map(|e| {
                        let m = e.path().symlink_metadata().unwrap();
                        if m.is_dir() {
                            bytes(&e.path())
                        } else {
                            m.len()
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    let backups = bytes(&d.data.path().join("backups").join(&app));
    assert_eq!(row["backups"], backups, "{row:#}");
    let fs = &df["filesystem"];
    assert!(fs["total"].as_u64().unwrap() >= fs["used"].as_u64().unwrap());
    let percent = fs["percent"].as_f64().unwrap();
    assert_eq!(df["warning"].is_string(), percent >= 90.0, "{df:#}");
    let (ok, text, err) = paas(&d, &["system:df"]);
    assert!(
        ok && text.contains("IMAGES") && text.contains(&app),
        "{text}{err}"
    );
    // Nothing of this app's left to prune.
    let (ok, text, err) = paas(&d, &["system:prune"]);
    assert!(
        ok && text.contains("nothing paas did not make"),
        "{text}{err}"
    );
    assert!(!text.contains(&format!("paas/{app}:")), "{text}");
    assert_eq!(tags(&format!("paas/{app}")), want_sorted);

    // A rollback to the oldest kept release still works.
    let (ok, out, err) = paas(&d, &["rollback", "v4", "-a", &app]);
    assert!(ok, "{out}{err}");
    d.assert_serves(&app, "Notes");
}

/// A file system mounted for one test, unmounted at its end.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// With the data dir's disk 90 % full or more, the push output and the
/// API (and so the dashboard and `system:df`) carry the warning. The disk
/// is a small tmpfs filled up by the test, the push a real one.
#[test]
fn a_nearly_full_disk_is_shown_in_the_push_and_the_api() {
    let data = tempfile::Builder::new()
        .prefix("paas-it-full-")
        .tempdir()
        .unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mounting a tmpfs (the test needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _mount = Mount(data.path().to_path_buf());
    // 93 % of 256 MiB: about 18 MiB stay free for the push.
    let fill = data.path().join("fill");
    let f = std::fs::File::create(&fill).unwrap();
    std::io::Write::write_all(&mut &f, &vec![0u8; 238 << 20]).unwrap();
    drop(f);
    let mut d = Daemon::start_in(data, &[], "127.0.0.1");
    let app = d.app("full");
    let p = Project::from_fixture("blog");
    let (_, out) = p.push(&d.remote(&app));
    assert!(
        out.contains("% full") && out.contains("paas system:df"),
        "the push warns:\n{out}"
    );
    let (ok, json, err) = paas(&d, &["system:df", "--json"]);
    assert!(ok, "{err}");
    let df: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        df["filesystem"]["percent"].as_f64().unwrap() >= 90.0,
        "{df:#}"
    );
    assert!(
        df["warning"].as_str().unwrap_or("").contains("% full"),
        "{df:#}"
    );
    // Room again: no warning.
    std::fs::remove_file(d.data.path().join("fill")).unwrap();
    let (_, json, _) = paas(&d, &["system:df", "--json"]);
    let df: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(df["warning"].is_null(), "{df:#}");
}
