//! Pruning: paas removes what it made, and nothing else.
//!
//! A host-wide `docker system prune` takes the owner's own images and
//! containers too (Coolify users lost theirs that way). paas finds what it
//! removes by its own names and labels only:
//! - an app's release images (`paas/<app>:v<N>`) beyond the images of the
//!   last [`KEEP_IMAGES`] releases that went live, and not used by a container;
//! - an app's stopped containers (label `paas.app`) of releases other than
//!   the live one, stopped for a while (a leftover of a crash);
//! - an app's static-file folders (`apps/<app>/releases/v<N>`) of releases
//!   whose image is gone;
//! - untagged (dangling) images that carry a paas label, made an hour ago or more;
//! - dependency images (`paas-deps:<key>`, label `paas.deps`) that no release
//!   image on the engine stands on and that were made over
//!   [`DEPS_UNUSED_FOR`] ago (a release built on one carries its key, so
//!   a dependency image in use is always referenced).
//!
//! The build cache: the classic builder's cache is the intermediate images
//! under each release image, and they go with it (removing a tag removes its
//! untagged parents no other image stands on). BuildKit's cache
//! (`/build/prune`) carries no labels and cannot be scoped to paas, so paas
//! leaves it alone.
//!
//! It runs after every push (in the background, once the deploy has let go
//! of the app) and daily ([`crate::schedule`]), holding the app's deploy
//! turn so no build is half-way.

use crate::ctx::Ctx;
use crate::docker::{Docker, ImageFilter};
use crate::store::{Release, ReleaseStatus};
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Release images kept per app for rollback.
pub const KEEP_IMAGES: usize = 5;
/// A dependency image no release image refers to is removed once it is
/// this old.
pub const DEPS_UNUSED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// A stopped container of an app is left this long after it was made
/// (someone may be reading why it stopped).
const STOPPED_GRACE: Duration = Duration::from_secs(10 * 60);
/// A dangling image is left this long after it was made: a build running
/// now may be about to stand on it.
const DANGLING_GRACE: Duration = Duration::from_secs(3600);

/// What one prune removed.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Pruned {
    /// Image tags and ids removed.
    pub images: Vec<String>,
    /// Container names removed.
    pub containers: Vec<String>,
    /// Static-file folders removed (`<app>/v<N>`).
    pub release_dirs: Vec<String>,
}

impl Pruned {
    fn add(&mut self, other: Pruned) {
        self.images.extend(other.images);
        self.containers.extend(other.containers);
        self.release_dirs.extend(other.release_dirs);
    }

    /// True when nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.containers.is_empty() && self.release_dirs.is_empty()
    }
}

/// The images to keep for rollback: those of the newest [`KEEP_IMAGES`]
/// releases that went live (Live or Retired), plus `current`'s (a release
/// going live now). A rollback release shares its image with an older one,
/// so fewer distinct images may be kept. `releases` is newest first.
pub fn kept_images(releases: &[Release], current: Option<i64>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut counted = 0;
    for r in releases {
        let Some(image) = &r.image else { continue };
        let good = matches!(r.status, ReleaseStatus::Live | ReleaseStatus::Retired)
            || Some(r.version) == current;
        if good && counted < KEEP_IMAGES {
            counted += 1;
            if !kept.contains(image) {
                kept.push(image.clone());
            }
        }
    }
    kept
}

/// The version of a release tag of `app` (`paas/<app>:v<N>`).
pub fn tag_version(tag: &str, app: &str) -> Option<i64> {
    tag.strip_prefix("paas/")?
        .strip_prefix(app)?
        .strip_prefix(":v")?
        .parse()
        .ok()
}

/// Seconds since the epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Prunes one app. The caller holds the app's deploy turn.
pub async fn prune_app(ctx: &Ctx, app: &str) -> Pruned {
    prune_app_in(ctx, app, STOPPED_GRACE).await
}

/// [`prune_app`], leaving stopped containers younger than `stopped_grace`.
async fn prune_app_in(ctx: &Ctx, app: &str, stopped_grace: Duration) -> Pruned {
    let mut pruned = Pruned::default();
    let docker = &ctx.docker;
    let releases = match ctx.store.releases(app) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(app, "prune: cannot read the releases: {e}");
            return pruned;
        }
    };
    let live = releases
        .iter()
        .find(|r| r.status == ReleaseStatus::Live)
        .map(|r| r.version);
    let kept = kept_images(&releases, None);
    let now = now();

    // Stopped containers first: the images they held become free.
    let containers = match docker.list_containers(&[("paas.app", app)]).await {
        Ok(list) => list,
        Err(e) => {
            // Without the list no image is known to be unused: stop here.
            tracing::warn!(app, "prune: cannot list the containers: {e}");
            return pruned;
        }
    };
    let mut in_use: HashSet<String> = HashSet::new();
    for c in containers {
        let release = c
            .labels
            .get("paas.release")
            .and_then(|v| v.parse::<i64>().ok());
        let stopped = matches!(c.state.as_str(), "exited" | "dead" | "created");
        let old_enough = now - c.created >= stopped_grace.as_secs() as i64;
        if stopped && old_enough && (release.is_none() || release != live) {
            match docker.stop_and_remove(&c.id, Duration::from_secs(1)).await {
                Ok(()) => pruned.containers.push(c.name),
                Err(e) => {
                    tracing::warn!(app, container = %c.name, "prune: {e}");
                    in_use.insert(c.image);
                }
            }
        } else {
            in_use.insert(c.image);
        }
    }

    // Release images beyond the kept ones, by tag (also tags no release
    // recorded: a daemon stopped half-way through a deploy).
    let repo = format!("paas/{app}");
    let filter = ImageFilter {
        reference: Some(&repo),
        ..Default::default()
    };
    match docker.list_images_where(&filter).await {
        Ok(images) => {
            for image in images {
                for tag in &image.tags {
                    if tag_version(tag, app).is_none()
                        || kept.contains(tag)
                        || in_use.contains(tag)
                        || in_use.contains(&image.id)
                    {
                        continue;
                    }
                    match docker.remove_image_if_unused(tag).await {
                        Ok(true) => pruned.images.push(tag.clone()),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(app, image = %tag, "prune: {e}"),
                    }
                }
            }
        }
        Err(e) => tracing::warn!(app, "prune: cannot list the images: {e}"),
    }

    // Static files of releases whose image is not kept.
    let keep_dirs: HashSet<i64> = releases
        .iter()
        .filter(|r| Some(r.version) == live || r.image.as_ref().is_some_and(|i| kept.contains(i)))
        .map(|r| r.version)
        .collect();
    let dir = ctx.config.data_dir.join("apps").join(app).join("releases");
    for version in release_dir_versions(&dir) {
        if keep_dirs.contains(&version) {
            continue;
        }
        let path = dir.join(format!("v{version}"));
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => pruned.release_dirs.push(format!("{app}/v{version}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(app, dir = %path.display(), "prune: {e}"),
        }
    }
    pruned
}

/// The versions of the `v<N>` folders in `dir`.
fn release_dir_versions(dir: &Path) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix('v')?
                .parse::<i64>()
                .ok()
        })
        .collect()
}

/// The dependency keys release images on the engine stand on.
pub fn referenced_deps(images: &[crate::docker::ImageInfo]) -> HashSet<String> {
    images
        .iter()
        .filter(|i| i.tags.iter().any(|t| t.starts_with("paas/")))
        .filter_map(|i| i.labels.get("paas.deps").cloned())
        .collect()
}

/// What paas made that no app owns: dangling images carrying a paas
/// label, and dependency images nothing refers to any more.
pub async fn prune_shared(docker: &Docker) -> Pruned {
    prune_shared_in(docker, &[], DANGLING_GRACE, DEPS_UNUSED_FOR).await
}

/// [`prune_shared`] over the images that also carry every `scope` label
/// (a test's own), with the given ages.
async fn prune_shared_in(
    docker: &Docker,
    scope: &[&str],
    dangling_grace: Duration,
    deps_grace: Duration,
) -> Pruned {
    let mut pruned = Pruned::default();
    let now = now();
    let mut seen = HashSet::new();
    for label in ["paas.managed", "paas.app", "paas.deps"] {
        let labels: Vec<&str> = std::iter::once(label)
            .chain(scope.iter().copied())
            .collect();
        let filter = ImageFilter {
            labels: &labels,
            dangling: true,
            ..Default::default()
        };
        let images = match docker.list_images_where(&filter).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("prune: cannot list dangling images: {e}");
                continue;
            }
        };
        for image in images {
            let old_enough = now - image.created >= dangling_grace.as_secs() as i64;
            if !image.tags.is_empty() || !old_enough || !seen.insert(image.id.clone()) {
                continue;
            }
            match docker.remove_image_if_unused(&image.id).await {
                Ok(true) => pruned.images.push(image.id),
                Ok(false) => {}
                Err(e) => tracing::warn!(image = %image.id, "prune: {e}"),
            }
        }
    }

    // Dependency images: kept while a release image refers to one.
    let labels: Vec<&str> = std::iter::once("paas.deps")
        .chain(scope.iter().copied())
        .collect();
    let labelled = ImageFilter {
        labels: &labels,
        ..Default::default()
    };
    let all = match docker.list_images_where(&labelled).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("prune: cannot list the dependency images: {e}");
            return pruned;
        }
    };
    let referenced = referenced_deps(&all);
    for image in &all {
        let Some(key) = image.labels.get("paas.deps") else {
            continue;
        };
        let old = now - image.created >= deps_grace.as_secs() as i64;
        if referenced.contains(key) || !old {
            continue;
        }
        for tag in image.tags.iter().filter(|t| t.starts_with("paas-deps:")) {
            match docker.remove_image_if_unused(tag).await {
                Ok(true) => pruned.images.push(tag.clone()),
                Ok(false) => {}
                Err(e) => tracing::warn!(image = %tag, "prune: {e}"),
            }
        }
    }
    pruned
}

/// Prunes every app (each in its deploy turn), then what no app owns.
pub async fn prune_all(ctx: &Ctx) -> Pruned {
    let mut pruned = Pruned::default();
    let apps = match ctx.store.apps() {
        Ok(apps) => apps,
        Err(e) => {
            tracing::error!("prune: cannot list the apps: {e}");
            return pruned;
        }
    };
    for app in apps {
        let _turn = ctx.deployer.turn(&app.name).await;
        pruned.add(prune_app(ctx, &app.name).await);
    }
    pruned.add(prune_shared(&ctx.docker).await);
    log(&pruned, None);
    pruned
}

/// After a push: prunes the app once its deploy has let go of it, then
/// what no app owns. In the background; the pusher does not wait.
pub fn spawn_after_deploy(ctx: Arc<Ctx>, app: String) {
    tokio::spawn(async move {
        let mut pruned = {
            let _turn = ctx.deployer.turn(&app).await;
            prune_app(&ctx, &app).await
        };
        pruned.add(prune_shared(&ctx.docker).await);
        log(&pruned, Some(&app));
    });
}

fn log(pruned: &Pruned, app: Option<&str>) {
    if pruned.is_empty() {
        return;
    }
    tracing::info!(
        app = app.unwrap_or("*"),
        images = pruned.images.len(),
        containers = pruned.containers.len(),
        release_dirs = pruned.release_dirs.len(),
        "pruned what paas made and no longer needs"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ImageInfo;
    use std::collections::HashMap;

    fn release(version: i64, status: ReleaseStatus, image: Option<&str>) -> Release {
        Release {
            id: version,
            app: "blog".into(),
            version,
            commit_sha: "abc".into(),
            image: image.map(str::to_string),
            status,
            error: None,
            log: String::new(),
            timings: Vec::new(),
            meta: Default::default(),
            created_at: 0,
            finished_at: None,
            description: String::new(),
            config: Default::default(),
        }
    }

    #[test]
    fn the_last_five_releases_that_went_live_keep_their_images() {
        use ReleaseStatus::*;
        let tag = |v: i64| format!("paas/blog:v{v}");
        let mut rs: Vec<Release> = (1..=8)
            .rev()
            .map(|v| release(v, if v == 8 { Live } else { Retired }, Some(&tag(v))))
            .collect();
        assert_eq!(
            kept_images(&rs, None),
            (4..=8).rev().map(tag).collect::<Vec<_>>()
        );
        // A failed release keeps nothing and does not count.
        rs.insert(0, release(9, Failed, Some(&tag(9))));
        assert_eq!(kept_images(&rs, None)[0], tag(8));
        assert_eq!(kept_images(&rs, None).len(), 5);
        // Unless it is the one going live now.
        assert_eq!(kept_images(&rs, Some(9))[0], tag(9));
        assert!(!kept_images(&rs, Some(9)).contains(&tag(4)));
        // A rollback shares an image: it counts, the image is listed once.
        rs.insert(0, release(10, Live, Some(&tag(5))));
        let kept = kept_images(&rs, None);
        assert_eq!(kept, [tag(5), tag(8), tag(7), tag(6)]);
    }

    #[test]
    fn only_the_apps_own_release_tags_have_a_version() {
        assert_eq!(tag_version("paas/blog:v12", "blog"), Some(12));
        assert_eq!(tag_version("paas/blog:latest", "blog"), None);
        assert_eq!(tag_version("paas/blog-2:v1", "blog"), None);
        assert_eq!(tag_version("paas/blo:v1", "blog"), None);
        assert_eq!(tag_version("python:3.11-slim", "blog"), None);
        assert_eq!(tag_version("paas-deps:abc", "blog"), None);
    }

    #[test]
    fn a_dependency_image_is_referenced_only_by_release_images() {
        let image = |tags: &[&str], deps: &str| ImageInfo {
            id: format!("sha256:{}", tags.join("")),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            labels: HashMap::from([("paas.deps".to_string(), deps.to_string())]),
            created: 0,
            size: 0,
        };
        let images = [
            image(&["paas-deps:aaa"], "aaa"),
            image(&["paas-deps:bbb"], "bbb"),
            image(&["paas/blog:v3"], "aaa"),
            image(&["someone/else:1"], "bbb"),
        ];
        let referenced = referenced_deps(&images);
        assert!(referenced.contains("aaa"));
        assert!(
            !referenced.contains("bbb"),
            "a foreign image does not hold it"
        );
    }

    /// Real images on the real engine, all labelled `paas.test=<id>` (and
    /// removed by it at the end); the prune is scoped to that label so no
    /// other test's images are touched.
    #[tokio::test]
    async fn shared_prune_takes_paas_leftovers_and_spares_foreign_and_referenced_images() {
        use std::process::Command;
        let id = format!("prune-{:08x}", rand::random::<u32>());
        let scope = format!("paas.test={id}");
        struct Cleanup(String);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let out = Command::new("docker")
                    .args(["images", "-aq", "--filter", &format!("label={}", self.0)])
                    .output()
                    .unwrap();
                for i in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rmi", "-f", i]).output();
                }
            }
        }
        let _cleanup = Cleanup(scope.clone());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM python:3.11-slim\n").unwrap();
        let build = |tag: &str, labels: &[&str]| -> String {
            let mut cmd = Command::new("docker");
            cmd.args(["build", "-q", "-t", tag, "--label", &scope]);
            for l in labels {
                cmd.args(["--label", l]);
            }
            let out = cmd.arg(dir.path()).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let exists = |image: &str| {
            Command::new("docker")
                .args(["image", "inspect", image])
                .output()
                .unwrap()
                .status
                .success()
        };
        // A paas build's leftover: its tag moved to a newer build.
        let ours = build(&format!("paas-it-{id}/x:1"), &["paas.managed=true", "n=1"]);
        build(&format!("paas-it-{id}/x:1"), &["paas.managed=true", "n=2"]);
        // The same, of someone else's.
        let theirs = build(&format!("foreign-{id}/x:1"), &["n=1"]);
        build(&format!("foreign-{id}/x:1"), &["n=2"]);
        // Dependency images: one a release stands on, one nothing does.
        let used = format!("paas-deps:{id}-used");
        let unused = format!("paas-deps:{id}-unused");
        build(&used, &[&format!("paas.deps={id}-used")]);
        build(&unused, &[&format!("paas.deps={id}-unused")]);
        let release = format!("paas/{id}:v1");
        build(&release, &[&format!("paas.deps={id}-used"), "n=3"]);
        assert!(exists(&ours) && exists(&theirs));

        let docker = Docker::connect().unwrap();
        let pruned = prune_shared_in(&docker, &[&scope], Duration::ZERO, Duration::ZERO).await;
        assert!(!exists(&ours), "paas's dangling image goes: {pruned:?}");
        assert!(!exists(&unused), "the unreferenced dependency image goes");
        assert!(exists(&theirs), "a foreign dangling image stays");
        assert!(
            exists(&used),
            "a dependency image a release stands on stays"
        );
        assert!(exists(&release));
        assert!(pruned.images.contains(&unused), "{pruned:?}");
        // Too young to go: nothing at the real ages.
        build(&unused, &[&format!("paas.deps={id}-unused")]);
        let pruned = prune_shared_in(&docker, &[&scope], DANGLING_GRACE, DEPS_UNUSED_FOR).await;
        assert!(pruned.is_empty(), "{pruned:?}");
        assert!(exists(&unused));
    }

    /// One app on the real engine and a real store: its stopped containers
    /// of other releases, its release tags beyond the kept ones and their
    /// static files go; the live release's stopped container, a running
    /// one, the live image and its files stay.
    #[tokio::test]
    async fn an_apps_prune_takes_its_leftovers_and_spares_the_live_release() {
        use std::process::Command;
        let app = format!("prune-{:08x}", rand::random::<u32>());
        struct Cleanup(String);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let out = Command::new("docker")
                    .args([
                        "ps",
                        "-aq",
                        "--filter",
                        &format!("label=paas.app={}", self.0),
                    ])
                    .output()
                    .unwrap();
                for c in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rm", "-f", c]).output();
                }
                for v in ["v1", "v2", "v3"] {
                    let tag = format!("paas/{}:{v}", self.0);
                    let _ = Command::new("docker").args(["rmi", &tag]).output();
                }
            }
        }
        let _cleanup = Cleanup(app.clone());
        let docker_cli = |args: &[&str]| {
            let out = Command::new("docker").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::resolve(crate::config::Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let store = crate::store::Store::open(&dir.path().join("paas.db")).unwrap();
        let a = store.create_app(&app, "k").unwrap();
        // v1 failed (no image kept), v2 is live.
        let v1 = store.create_release(&a, "aaa", "deploy aaa").unwrap();
        store.fail_release(v1.id, "boom").unwrap();
        let v2 = store.create_release(&a, "bbb", "deploy bbb").unwrap();
        let live_tag = format!("paas/{app}:v2");
        store
            .update_release(
                v2.id,
                Some(&live_tag),
                &Default::default(),
                &Default::default(),
                &[],
            )
            .unwrap();
        store.promote(&a, v2.id, None).unwrap();
        for v in ["v1", "v2", "v3"] {
            docker_cli(&["tag", "python:3.11-slim", &format!("paas/{app}:{v}")]);
            std::fs::create_dir_all(dir.path().join("apps").join(&app).join("releases").join(v))
                .unwrap();
        }
        let label = |release: &str| {
            vec![
                "--label".to_string(),
                format!("paas.app={app}"),
                "--label".to_string(),
                format!("paas.release={release}"),
            ]
        };
        let run = |release: &str, image: &str, cmd: &[&str], detach: bool| {
            let mut args: Vec<String> = vec!["run".into()];
            if detach {
                args.push("-d".into());
            }
            args.extend(label(release));
            args.push(image.into());
            args.extend(cmd.iter().map(|c| c.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker_cli(&args)
        };
        let old_exited = run("1", &format!("paas/{app}:v1"), &["true"], true);
        let live_exited = run("2", &live_tag, &["true"], true);
        let running = run("1", "python:3.11-slim", &["sleep", "60"], true);
        let exists = |id: &str| {
            Command::new("docker")
                .args(["inspect", id])
                .output()
                .unwrap()
                .status
                .success()
        };
        // Let the short ones exit.
        for _ in 0..50 {
            let state = docker_cli(&["inspect", "-f", "{{.State.Status}}", &old_exited]);
            if state == "exited" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let (token, _) = crate::auth::AdminToken::load_or_create(dir.path()).unwrap();
        let ctx = Ctx::new(
            config,
            store,
            Docker::connect().unwrap(),
            crate::git::Repos::new(dir.path().join("repos"), "paas".into()),
            token,
            crate::git::HookEnv {
                daemon_url: String::new(),
                secret: String::new(),
            },
        );
        // Too young at the real grace: containers stay, and the image the
        // stopped one was made from; v3's tag, used by nothing, goes.
        let first = prune_app(&ctx, &app).await;
        assert!(first.containers.is_empty(), "{first:?}");
        assert_eq!(first.images, [format!("paas/{app}:v3")]);
        let mut pruned = prune_app_in(&ctx, &app, Duration::ZERO).await;
        pruned.add(first);
        assert!(!exists(&old_exited), "{pruned:?}");
        assert!(exists(&live_exited), "the live release's container stays");
        assert!(exists(&running), "a running container stays");
        let mut images = pruned.images.clone();
        images.sort();
        assert_eq!(
            images,
            [format!("paas/{app}:v1"), format!("paas/{app}:v3")],
            "{}",
            docker_cli(&["images", &format!("paas/{app}")])
        );
        assert!(
            docker_cli(&["images", "-q", &live_tag]).len() > 1,
            "live image stays"
        );
        let mut dirs = pruned.release_dirs.clone();
        dirs.sort();
        assert_eq!(dirs, [format!("{app}/v1"), format!("{app}/v3")]);
        assert!(dir
            .path()
            .join("apps")
            .join(&app)
            .join("releases/v2")
            .is_dir());
        assert!(exists("python:3.11-slim"), "the base image stays");
    }

    #[test]
    fn release_folders_are_read_by_version() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["v1", "v12", "tmp", "vx"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let mut v = release_dir_versions(dir.path());
        v.sort();
        assert_eq!(v, [1, 12]);
        assert!(release_dir_versions(&dir.path().join("missing")).is_empty());
    }
}
