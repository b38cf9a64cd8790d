//! The deploy story against the in-memory engine ([`MemoryEngine`]): each
//! state a deploy goes through, and each failure with its cleanup — the new
//! container and image removed, the old release still live and its route
//! unchanged, the release recorded as failed with its reason. A real
//! [`Store`] on a temp SQLite file, the real buildpack on the blog fixture.

use super::memory::{Container, MemoryEngine};
use super::*;
use crate::auth::AdminToken;
use crate::config::Config;
use crate::docker::{Docker, DockerError};
use crate::git::{HookEnv, Repos};
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::mpsc::UnboundedReceiver;

const APP: &str = "blog";
const HOST: &str = "blog.paas.test";

/// A daemon's state in a temp dir, with an in-memory engine.
struct Fixture {
    dir: tempfile::TempDir,
    ctx: Arc<Ctx>,
    engine: MemoryEngine,
}

/// What a deploy returned, and the lines its pusher saw.
type Outcome = (Result<Release, DeployError>, String);

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let config = Config {
            data_dir: data_dir.clone(),
            http: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            domain: "paas.test".into(),
            https: None,
            acme_email: None,
            acme_directory: crate::config::LETS_ENCRYPT.into(),
            acme_ca_file: None,
            build_network: None,
            image_pattern: "python:{version}-slim".into(),
            drain_timeout: Duration::from_millis(20),
            memory_mb: 256,
            cpus: 1.0,
            pids_limit: 256,
            build_memory_mb: 768,
            build_cpus: 1.0,
            auth_failure_limit: 10,
        };
        let store = Store::open(&data_dir.join("paas.db")).unwrap();
        store.create_app(APP, "not-a-secret").unwrap();
        let (token, _) = AdminToken::load_or_create(&data_dir).unwrap();
        let repos = Repos::new(data_dir.join("repos"), "paas".into());
        let hook = HookEnv {
            daemon_url: "http://127.0.0.1:1".into(),
            secret: "hook".into(),
        };
        // The story runs on `engine`; a call straying to `docker` fails.
        let ctx = Arc::new(Ctx::new(
            config,
            store,
            Docker::nowhere(),
            repos,
            token,
            hook,
        ));
        Fixture {
            dir,
            ctx,
            engine: MemoryEngine::new(),
        }
    }

    /// Pushes the blog fixture, plus `extra` files, as a new commit of the
    /// app's repository (`label` is its message).
    async fn push(&self, label: &str, extra: &[(&str, &str)]) -> Outcome {
        let repo = self.ctx.repos.ensure(APP).await.unwrap();
        let rev = commit_project(&repo, label, extra);
        let req = DeployRequest {
            app: APP.into(),
            message: "a change".into(),
            source: crate::git::CommitSource {
                repo,
                rev,
                objects: None,
            },
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = Job::Push(&req);
        let result = run_job(&self.ctx, &self.engine, APP, job, Progress::new(Some(tx))).await;
        (result, lines(rx))
    }

    /// A restart, rollback or config change.
    async fn redeploy(&self, what: Redeploy) -> Outcome {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = Job::Redeploy(what);
        let result = run_job(&self.ctx, &self.engine, APP, job, Progress::new(Some(tx))).await;
        (result, lines(rx))
    }

    fn release(&self, version: i64) -> Release {
        self.ctx.store.release(APP, version).unwrap().unwrap()
    }

    fn versions(&self) -> usize {
        self.ctx.store.releases(APP).unwrap().len()
    }

    /// The web containers of release `version`.
    fn web(&self, version: i64) -> Vec<Container> {
        self.engine
            .containers_labelled("paas.release", &version.to_string())
            .into_iter()
            .filter(|c| {
                c.spec
                    .labels
                    .contains(&("paas.process".into(), "web".into()))
            })
            .collect()
    }

    fn backend(&self) -> Option<SocketAddr> {
        self.ctx.routes.get(HOST).map(|r| r.backend())
    }

    /// v`version` is live: in the store, in one running web container, and
    /// the route points at that container.
    fn assert_serving(&self, version: i64) -> SocketAddr {
        let live = self
            .ctx
            .store
            .live_release(APP)
            .unwrap()
            .expect("a live release");
        assert_eq!(live.version, version, "the live release");
        let web = self.web(version);
        assert_eq!(web.len(), 1, "one web container of v{version}: {web:?}");
        assert_eq!(web[0].state, ContainerState::Running);
        let backend = SocketAddr::new(web[0].ip, APP_PORT);
        assert_eq!(
            self.backend(),
            Some(backend),
            "the route goes to v{version}"
        );
        backend
    }

    /// What a failed deploy of v`version` leaves: the release marked failed
    /// with `error`'s sentence, and nothing it made — no container, no
    /// image of its own, no files.
    fn assert_failed_and_cleaned_up(&self, version: i64, error: &DeployError) {
        let r = self.release(version);
        assert_eq!(r.status, ReleaseStatus::Failed);
        assert_eq!(r.error.as_deref(), Some(error.to_string().as_str()));
        assert!(
            r.log.contains(&error.to_string()) || r.log.contains("-----> "),
            "the log is kept: {}",
            r.log
        );
        let left = self
            .engine
            .containers_labelled("paas.release", &version.to_string());
        assert!(left.is_empty(), "containers of v{version} left: {left:?}");
        assert!(
            !self
                .engine
                .state()
                .images
                .contains_key(&built_tag(APP, version)),
            "the image v{version} built is removed"
        );
        assert!(
            !layout::release_dir(&self.ctx.config.data_dir, APP, version).exists(),
            "v{version}'s static files are removed"
        );
        assert!(self.ctx.store.in_flight_releases().unwrap().is_empty());
    }

    /// v1 pushed and live; its route.
    async fn with_v1_live(&self) -> SocketAddr {
        let (r, out) = self.push("1111111", &[]).await;
        let r = r.unwrap_or_else(|e| panic!("v1 did not go live: {e}\n{out}"));
        assert_eq!(r.version, 1);
        self.assert_serving(1)
    }

    /// Waits (briefly) until `done` holds: the old release retires in the background.
    async fn eventually(&self, what: &str, done: impl Fn(&Fixture) -> bool) {
        for _ in 0..200 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("not within a second: {what}");
    }
}

fn lines(mut rx: UnboundedReceiver<String>) -> String {
    let mut out = String::new();
    while let Ok(line) = rx.try_recv() {
        out.push_str(&line);
    }
    out
}

/// The blog fixture as `git archive` sends it, plus `extra` files.
fn commit_project(repo_path: &Path, label: &str, extra: &[(&str, &str)]) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blog");
    let repo = git2::Repository::open_bare(repo_path).unwrap();
    let mut index = git2::Index::new().unwrap();
    let mut add = |path: &str, bytes: &[u8], mode: u32| {
        let id = repo.blob(bytes).unwrap();
        let entry = git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode,
            uid: 0,
            gid: 0,
            file_size: bytes.len() as u32,
            id,
            flags: 0,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        };
        index.add(&entry).unwrap();
    };
    let mut stack = vec![fixture.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(&fixture)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                add(&rel, &std::fs::read(&p).unwrap(), 0o100644);
            }
        }
    }
    for (path, text) in extra {
        add(path, text.as_bytes(), 0o100644);
    }
    let tree = repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap();
    let sig = git2::Signature::new("test", "test@example.org", &git2::Time::new(0, 0)).unwrap();
    let parent = repo
        .find_reference("refs/heads/main")
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("refs/heads/main"), &sig, &sig, label, &tree, &parents)
        .unwrap()
        .to_string()
}

/// The status of the newest release at every engine call, in order, with
/// repeats folded: the states the engine saw the deploy in.
fn watch_statuses(f: &Fixture) -> Arc<Mutex<Vec<Option<ReleaseStatus>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (ctx, log) = (f.ctx.clone(), seen.clone());
    f.engine.watch(move |_call| {
        let status = ctx.store.releases(APP).unwrap().first().map(|r| r.status);
        let mut log = log.lock().unwrap();
        if log.last() != Some(&status) {
            log.push(status);
        }
    });
    seen
}

// ---- the way to Live ----

#[tokio::test]
async fn a_push_goes_building_releasing_starting_health_checking_live() {
    let f = Fixture::new();
    // A first deploy: the build step's `migrate --check` finds no database.
    f.engine.migrations_pending(true);
    let seen = watch_statuses(&f);
    let (r, out) = f.push("1111111", &[]).await;
    let r = r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    use ReleaseStatus::*;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            None,
            Some(Building),
            Some(Releasing),
            Some(Starting),
            Some(HealthChecking)
        ],
        "{out}"
    );
    assert_eq!(r.status, Live);
    f.assert_serving(1);
    // What the pusher saw, in order.
    let steps = [
        "Deploying blog v1 (",
        ": a change)",
        "Django project detected",
        "Building image paas/blog:v1",
        "Running migrations",
        "Starting web container",
        "Health check: GET / with Host blog.paas.test",
        "v1 is live at http://blog.paas.test",
        "Done in ",
    ];
    let mut at = 0;
    for s in steps {
        at += out[at..]
            .find(s)
            .unwrap_or_else(|| panic!("{s:?} in order:\n{out}"));
    }
    assert_eq!(out.matches("is live").count(), 1, "{out}");
    // Docker's plumbing stays out of the pusher's terminal, and in the
    // release log the dashboard shows.
    assert!(
        !out.contains("Step 1/1") && !out.contains("Successfully tagged"),
        "{out}"
    );
    assert!(
        r.log.contains("Step 1/1 : FROM python:3.11-slim")
            && r.log.contains("Successfully tagged paas-deps:"),
        "{}",
        r.log
    );
    // The build step got the pushed code and the buildpack's files; the
    // dependency build got its Dockerfile and requirements, no code.
    let state = f.engine.state();
    let context = state.contexts["paas/blog:v1"].clone();
    assert!(context.iter().any(|n| n == "app/manage.py"), "{context:?}");
    assert!(
        context.iter().any(|n| n == "paas/paas_settings.py"),
        "{context:?}"
    );
    let deps = state
        .contexts
        .iter()
        .find(|(tag, _)| tag.starts_with("paas-deps:"))
        .map(|(_, files)| files.clone())
        .expect("a dependency build");
    drop(state);
    assert_eq!(deps, [".paas/Dockerfile", "requirements.txt"]);
    // The facts the build learnt are kept as a type, and used by the route.
    assert_eq!(r.meta.static_root.as_deref(), Some("/app/staticfiles"));
    assert_eq!(r.image.as_deref(), Some("paas/blog:v1"));
    let css = layout::release_dir(&f.ctx.config.data_dir, APP, 1).join("static/site.css");
    assert!(css.is_file(), "static files copied out of the image");
    // The release phase ran in the new image, labelled as this release's.
    let one_offs = f.engine.state().one_offs.clone();
    assert!(!one_offs.is_empty());
    for spec in &one_offs {
        assert_eq!(spec.image, "paas/blog:v1");
        assert!(spec.labels.contains(&("paas.release".into(), "1".into())));
    }
}

#[tokio::test]
async fn a_second_push_swaps_the_route_then_retires_the_old_release() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    let (r, out) = f.push("2222222", &[]).await;
    assert_eq!(r.unwrap_or_else(|e| panic!("{e}\n{out}")).version, 2);
    let v2 = f.assert_serving(2);
    assert_ne!(v1, v2);
    assert_eq!(f.release(1).status, ReleaseStatus::Retired);
    f.eventually("v1's web container is removed after the drain", |f| {
        f.web(1).is_empty()
    })
    .await;
    // Its image stays for a rollback.
    assert!(f.engine.state().images.contains_key("paas/blog:v1"));
}

#[tokio::test]
async fn a_restart_goes_queued_starting_health_checking_live_without_a_build() {
    let f = Fixture::new();
    f.with_v1_live().await;
    let builds = f.engine.calls_to("build_image").len();
    let one_offs = f.engine.calls_to("run_to_completion").len();
    let seen = watch_statuses(&f);
    let (r, out) = f.redeploy(Redeploy::Restart).await;
    let r = r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    use ReleaseStatus::*;
    let seen = seen.lock().unwrap().clone();
    // Before v2 is recorded the newest release is v1 (live); v2 is then
    // queued until it starts.
    assert_eq!(
        seen,
        [
            Some(Live),
            Some(Queued),
            Some(Starting),
            Some(HealthChecking)
        ],
        "{out}"
    );
    assert_eq!((r.version, r.status), (2, Live));
    assert_eq!(r.image.as_deref(), Some("paas/blog:v1"), "v1's image again");
    assert_eq!(f.engine.calls_to("build_image").len(), builds, "no build");
    assert_eq!(
        f.engine.calls_to("run_to_completion").len(),
        one_offs,
        "no release phase"
    );
    f.assert_serving(2);
}

#[tokio::test]
async fn a_rollback_runs_the_old_image_and_puts_its_config_back_as_it_goes_live() {
    let f = Fixture::new();
    f.with_v1_live().await;
    let app = f.ctx.store.app(APP).unwrap();
    f.ctx
        .store
        .set_config_vars(&app, &[("FEATURE".into(), Some("on".into()))])
        .unwrap();
    let (r, out) = f.push("2222222", &[]).await;
    r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    let (r, out) = f
        .redeploy(Redeploy::Rollback {
            to: None,
            restore_db: false,
        })
        .await;
    let r = r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(r.description, "rollback to v1");
    assert_eq!(r.image.as_deref(), Some("paas/blog:v1"));
    assert!(out.contains("config vars restored to those of v1"), "{out}");
    assert!(f.ctx.store.config_vars(&app).unwrap().is_empty());
    f.assert_serving(3);
    let env = &f.web(3)[0].spec.env;
    assert!(!env.iter().any(|(k, _)| k == "FEATURE"), "v1's config");
}

#[tokio::test]
async fn the_procfile_and_health_check_travel_with_the_release() {
    let f = Fixture::new();
    let extra = [
        (
            "Procfile",
            "web: gunicorn mysite.wsgi\nworker: python manage.py work\n",
        ),
        (
            "paas.toml",
            "[healthcheck]\npath = \"/up/\"\nattempts = 3\n",
        ),
    ];
    let (r, out) = f.push("1111111", &extra).await;
    let r = r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(r.meta.processes["worker"], "python manage.py work");
    assert_eq!(r.meta.healthcheck.as_ref().unwrap().attempts, Some(3));
    let probes = f.engine.calls_to("probe");
    assert_eq!(probes.len(), 3, "three good answers asked for: {probes:?}");
    assert!(probes[0].ends_with("blog.paas.test /up/"), "{probes:?}");
    let workers = f.engine.containers_labelled("paas.process", "worker");
    assert_eq!(workers.len(), 1);
    // A restart runs what the release had, from its stored facts.
    let (r, out) = f.redeploy(Redeploy::Restart).await;
    r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains("Health check: GET /up/"), "{out}");
    f.eventually("the old worker is replaced", |f| {
        let w = f.engine.containers_labelled("paas.process", "worker");
        w.len() == 1
            && w[0]
                .spec
                .labels
                .contains(&("paas.release".into(), "2".into()))
    })
    .await;
}

#[tokio::test]
async fn a_second_deploy_waits_its_turn() {
    let f = Fixture::new();
    f.with_v1_live().await;
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let (held_tx, held) = tokio::sync::oneshot::channel::<()>();
    let ctx = f.ctx.clone();
    let holder = tokio::spawn(async move {
        ctx.deployer
            .while_idle(APP, async move {
                let _ = held_tx.send(());
                let _ = wait.await;
            })
            .await
    });
    held.await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (ctx, engine) = (f.ctx.clone(), f.engine.clone());
    let deploy = tokio::spawn(async move {
        run_job(
            &ctx,
            &engine,
            APP,
            Job::Redeploy(Redeploy::Restart),
            Progress::new(Some(tx)),
        )
        .await
    });
    let first = rx.recv().await.unwrap();
    assert!(
        first.contains("Queued behind another deploy: one deploy at a time per app"),
        "{first}"
    );
    assert_eq!(f.versions(), 1, "nothing recorded while queued");
    assert_eq!(
        f.ctx.deployer.in_flight(),
        1,
        "a queued deploy is in flight"
    );
    go.send(()).unwrap();
    assert!(holder.await.unwrap().is_some());
    let r = deploy.await.unwrap().unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(f.ctx.deployer.in_flight(), 0);
}

#[tokio::test]
async fn shutdown_waits_for_a_queued_deploy_which_then_does_not_start() {
    let f = Fixture::new();
    f.with_v1_live().await;
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let (held_tx, held) = tokio::sync::oneshot::channel::<()>();
    let ctx = f.ctx.clone();
    let holder = tokio::spawn(async move {
        ctx.deployer
            .while_idle(APP, async move {
                let _ = held_tx.send(());
                let _ = wait.await;
            })
            .await
    });
    held.await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (ctx, engine) = (f.ctx.clone(), f.engine.clone());
    let deploy = tokio::spawn(async move {
        let job = Job::Redeploy(Redeploy::Restart);
        run_job(&ctx, &engine, APP, job, Progress::new(Some(tx))).await
    });
    rx.recv().await.unwrap();
    f.ctx.deployer.close();
    assert!(
        !f.ctx.deployer.wait_idle(Duration::from_millis(20)).await,
        "a queued deploy is waited for"
    );
    go.send(()).unwrap();
    holder.await.unwrap();
    let e = deploy.await.unwrap().unwrap_err();
    assert!(matches!(e, DeployError::ShuttingDown), "{e:?}");
    assert!(f.ctx.deployer.wait_idle(Duration::from_secs(1)).await);
    assert_eq!(f.versions(), 1, "it never started");
    assert_eq!(f.ctx.deployer.in_flight(), 0);
}

// ---- refusals: nothing recorded ----

#[tokio::test]
async fn an_unreachable_engine_refuses_before_anything_is_recorded() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    f.engine.fail(
        "ping",
        DockerError::Unreachable {
            addr: "unix:///run/docker.sock".into(),
            cause: "no socket".into(),
        },
    );
    let (r, _) = f.push("2222222", &[]).await;
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            DeployError::EngineUnreachable {
                again: "push again",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .ends_with("start it (systemctl start docker) and push again"));
    assert_eq!(f.versions(), 1);
    assert_eq!(f.backend(), Some(v1));
}

#[tokio::test]
async fn a_stopping_daemon_refuses_deploys_and_waits_for_none() {
    let f = Fixture::new();
    f.with_v1_live().await;
    f.ctx.deployer.close();
    assert!(f.ctx.deployer.wait_idle(Duration::from_millis(100)).await);
    let (r, _) = f.redeploy(Redeploy::Restart).await;
    let e = r.unwrap_err();
    assert!(matches!(e, DeployError::ShuttingDown), "{e:?}");
    assert_eq!(f.versions(), 1);
    assert_eq!(f.ctx.deployer.in_flight(), 0);
    // The sentence says it already: nothing is added to it.
    assert_eq!(
        e.sentence("the running release was not touched"),
        e.to_string()
    );
}

#[tokio::test]
async fn refusals_say_why_and_what_became_of_the_running_release() {
    let f = Fixture::new();
    let (r, _) = f.redeploy(Redeploy::Restart).await;
    let e = r.unwrap_err();
    assert!(matches!(e, DeployError::NoLiveRelease { .. }), "{e:?}");
    // Nothing runs: no word about a running release.
    assert_eq!(
        e.sentence("the running release was not touched"),
        "blog has no live release yet: `git push` deploys it first"
    );
    f.with_v1_live().await;
    let what = Redeploy::Rollback {
        to: Some(99),
        restore_db: false,
    };
    let e = f.redeploy(what).await.0.unwrap_err();
    assert!(matches!(e, DeployError::Refused(_)), "{e:?}");
    assert_eq!(
        e.sentence("the running release was not touched"),
        "blog has no release v99: `paas releases --app blog` lists them; the running release was not touched"
    );
    assert_eq!(f.versions(), 1, "a refusal records no release");
    f.engine.state().images.clear();
    let e = f.redeploy(Redeploy::Restart).await.0.unwrap_err();
    assert!(e.to_string().contains("is gone"), "{e}");
    assert_eq!(f.versions(), 1);
}

// ---- failures: cleaned up, the old release untouched ----

/// A push whose requirements changed: its dependency image is built anew.
const NEW_REQUIREMENTS: &[(&str, &str)] = &[("requirements.txt", "Django>=4.2,<5.3\nrequests\n")];

#[tokio::test]
async fn a_code_only_push_reuses_the_dependency_image_and_a_changed_requirement_builds_one() {
    let f = Fixture::new();
    f.with_v1_live().await;
    assert_eq!(f.engine.calls_to("build_image").len(), 1);
    let (r, out) = f.push("2222222", &[("mysite/extra.py", "X = 1\n")]).await;
    assert_eq!(r.unwrap().version, 2, "{out}");
    assert_eq!(
        f.engine.calls_to("build_image").len(),
        1,
        "no install: {out}"
    );
    assert!(
        out.contains("Dependencies unchanged: reusing paas-deps:"),
        "{out}"
    );
    let steps = f.engine.state().build_steps.clone();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].image, steps[1].image, "one dependency image");
    let (r, out) = f.push("3333333", NEW_REQUIREMENTS).await;
    assert_eq!(r.unwrap().version, 3, "{out}");
    assert_eq!(f.engine.calls_to("build_image").len(), 2, "{out}");
    let steps = f.engine.state().build_steps.clone();
    assert_ne!(steps[2].image, steps[1].image);
    assert!(steps[2].image.starts_with("paas-deps:"));
}

/// The build step runs with the build's limits, below the apps' CPU
/// weight, and its environment (which the image inherits) holds no config
/// var: those travel in the upload, in a file the step removes.
#[tokio::test]
async fn the_build_step_is_limited_and_its_config_vars_never_reach_the_image() {
    let f = Fixture::new();
    let app = f.ctx.store.app(APP).unwrap();
    f.ctx
        .store
        .set_config_vars(&app, &[("API_TOKEN".into(), Some("s3cret-value".into()))])
        .unwrap();
    f.with_v1_live().await;
    let step = f.engine.state().build_steps[0].clone();
    assert_eq!(step.memory_bytes, Some(768 * 1024 * 1024));
    assert!(step.nano_cpus.is_some());
    assert_eq!(step.cpu_shares, Some(512));
    assert!(step.pids_limit.is_some());
    assert!(step.no_new_privileges);
    assert!(
        !step
            .env
            .iter()
            .any(|(k, v)| k == "API_TOKEN" || v.contains("s3cret")),
        "{:?}",
        step.env
    );
    let files = f.engine.state().contexts["paas/blog:v1"].clone();
    assert!(files.iter().any(|n| n == "tmp/paas-build-env"), "{files:?}");
    assert!(files.iter().any(|n| n == "app/manage.py"), "{files:?}");
}

#[tokio::test]
async fn settings_stopping_on_a_missing_variable_name_the_config_var_to_set() {
    let f = Fixture::new();
    f.engine.state().step_output = vec![
        "django.core.exceptions.ImproperlyConfigured: Set the DJANGO_AZURE_ACCOUNT_KEY environment variable".into(),
    ];
    f.engine.exit_code("collectstatic", 1);
    let (r, _) = f.push("1111111", &[]).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "the project's settings need the DJANGO_AZURE_ACCOUNT_KEY environment variable (see the error above): set it with `paas config:set DJANGO_AZURE_ACCOUNT_KEY=…` (config vars reach the build too) and push again"
    );
}

#[tokio::test]
async fn an_app_module_failing_to_import_at_build_is_the_deploys_reason() {
    let f = Fixture::new();
    let sentence = "the app's module mysite.wsgi failed to import (the error is above): the web server imports it to start the app, so fix the error and push again";
    f.engine.state().step_output = vec![
        "ModuleNotFoundError: No module named 'paas_no_such_module'".into(),
        format!("-----> {sentence}"),
    ];
    f.engine.exit_code("collectstatic", 1);
    let (r, _) = f.push("1111111", &[]).await;
    assert_eq!(r.unwrap_err().to_string(), sentence);
}

#[tokio::test]
async fn a_failed_build_step_leaves_the_live_release_and_its_route() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    f.engine.exit_code("collectstatic", 1);
    let (r, out) = f.push("2222222", &[]).await;
    let e = r.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the build step failed (exit code 1): fix the error shown above and push again"
    );
    assert!(out.contains("collectstatic failed"), "{out}");
    f.assert_failed_and_cleaned_up(2, &e);
    assert_eq!(f.assert_serving(1), v1);
}

#[tokio::test]
async fn a_failed_build_leaves_the_live_release_and_its_route() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    f.engine.fail(
        "build_image",
        DockerError::Build {
            message: "pip install returned 1".into(),
        },
    );
    let (r, out) = f.push("2222222", NEW_REQUIREMENTS).await;
    let e = r.unwrap_err();
    assert!(matches!(e, DeployError::Failed(_)), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "the image build failed: the Docker build stopped: pip install returned 1"
        ),
        "{e}"
    );
    assert!(!out.contains("Running migrations"), "{out}");
    f.assert_failed_and_cleaned_up(2, &e);
    assert_eq!(f.assert_serving(1), v1);
}

#[tokio::test]
async fn a_base_image_that_cannot_be_pulled_fails_before_the_build_naming_the_local_pythons() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    // The engine holds only an older Python; the pull of the wanted one fails.
    f.engine.state().images.clear();
    f.engine
        .state()
        .images
        .insert("python:3.9-slim".into(), Default::default());
    f.engine.fail(
        "ensure_image",
        DockerError::Engine("cannot pull the image python:3.11-slim (no such host)".into()),
    );
    let builds = f.engine.calls_to("build_image").len();
    let (r, out) = f.push("2222222", &[]).await;
    let e = r.unwrap_err();
    assert!(
        out.contains("Pulling the base image python:3.11-slim"),
        "{out}"
    );
    assert!(
        e.to_string().starts_with("Python 3.11 needs the base image python:3.11-slim, which is not on this server and cannot be pulled"),
        "{e}"
    );
    assert!(
        e.to_string()
            .ends_with("or pin a Python whose image is on this server (3.9) in .python-version"),
        "{e}"
    );
    assert_eq!(
        f.engine.calls_to("build_image").len(),
        builds,
        "no build ran"
    );
    assert_eq!(f.assert_serving(1), v1);
}

#[tokio::test]
async fn a_base_image_that_cannot_be_pulled_names_only_the_local_pythons_the_django_supports() {
    let f = Fixture::new();
    // Pinned to 3.11, whose image is not here (unpinned, detection would
    // pick a local Python the Django supports).
    let pinned = [
        ("requirements.txt", "Django==4.2.3\n"),
        (".python-version", "3.11\n"),
    ];
    let cannot_pull = |f: &Fixture, here: &[&str]| {
        let mut state = f.engine.state();
        state.images.clear();
        for v in here {
            state
                .images
                .insert(format!("python:{v}-slim"), Default::default());
        }
        drop(state);
        f.engine.fail(
            "ensure_image",
            DockerError::Engine("cannot pull the image python:3.11-slim (no such host)".into()),
        );
    };
    // Django 4.2.3 runs on Python 3.8 to 3.11: of 3.9, 3.12 and 3.13 only 3.9.
    cannot_pull(&f, &["3.9", "3.12", "3.13"]);
    let (r, out) = f.push("1111111", &pinned).await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("Python 3.11 needs the base image python:3.11-slim, which is not on this server and cannot be pulled"),
        "{e}\n{out}"
    );
    assert!(
        e.ends_with(", or pin a Python that Django 4.2.3 supports and whose image is on this server (3.9) in .python-version"),
        "{e}"
    );
    // None of the local ones: the sentence says so instead of naming them.
    cannot_pull(&f, &["3.12", "3.13"]);
    let (r, _) = f.push("2222222", &pinned).await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.ends_with(": give the server access to its image registry (Django 4.2.3 supports Python 3.8 to 3.11, and no image of those is on this server)"),
        "{e}"
    );
    assert!(!e.contains("3.12"), "{e}");
    assert!(f.engine.calls_to("build_image").is_empty(), "no build ran");
}

#[tokio::test]
async fn a_missing_base_image_is_pulled_then_built_on() {
    let f = Fixture::new();
    let (r, out) = f.push("1111111", &[]).await;
    assert_eq!(r.unwrap().version, 1, "{out}");
    assert_eq!(
        f.engine.calls_to("ensure_image"),
        ["ensure_image python:3.11-slim"]
    );
    assert!(
        out.contains("Pulling the base image python:3.11-slim"),
        "{out}"
    );
    // Pulled once: the next push finds it.
    let (r, out) = f.push("2222222", &[]).await;
    assert_eq!(r.unwrap().version, 2, "{out}");
    assert_eq!(f.engine.calls_to("ensure_image").len(), 1);
    assert!(!out.contains("Pulling"), "{out}");
}

#[tokio::test]
async fn a_build_step_killed_by_its_memory_limit_says_which_limit_to_raise() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    f.engine.fail(
        "build_image",
        DockerError::Build {
            message: "The command '/bin/sh -c pip install -r /paas/deps/requirements.txt' returned a non-zero code: 137".into(),
        },
    );
    let (r, _) = f.push("2222222", NEW_REQUIREMENTS).await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("the image build ran out of memory (each build step may use 768 MiB): raise build-memory-mb in paas.toml (e.g. build-memory-mb = 1536)"),
        "{e}"
    );
    assert_eq!(f.assert_serving(1), v1);
}

#[tokio::test]
async fn a_dependency_that_needs_a_compiler_the_build_lacks_says_how_to_name_one() {
    let f = Fixture::new();
    f.with_v1_live().await;
    f.engine.state().build_output =
        vec!["      error: [Errno 2] No such file or directory: 'x86_64-linux-gnu-gcc'".into()];
    f.engine.fail(
        "build_image",
        DockerError::Build {
            message: "The command '/bin/sh -c pip install' returned a non-zero code: 1".into(),
        },
    );
    let (r, _) = f.push("2222222", NEW_REQUIREMENTS).await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("a dependency compiles C code and the build has no compiler for it: name the Debian packages it needs with `paas config:set PAAS_BUILD_PACKAGES=\"gcc libc6-dev\"`"),
        "{e}"
    );
}

#[tokio::test]
async fn a_dependency_that_fails_to_compile_is_named_with_both_ways_out() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    f.engine.state().build_output = [
        "Collecting backports.zoneinfo==0.2.1",
        "  Building wheel for backports.zoneinfo (pyproject.toml): finished with status 'error'",
        "  error: subprocess-exited-with-error",
        "Failed to build backports.zoneinfo",
    ]
    .map(String::from)
    .to_vec();
    f.engine.fail(
        "build_image",
        DockerError::Build {
            message: "The command '/bin/sh -c pip install' returned a non-zero code: 1".into(),
        },
    );
    let (r, _) = f.push("2222222", NEW_REQUIREMENTS).await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("backports.zoneinfo failed to compile for Python 3.11 (pip's error is above): pin a release of backports.zoneinfo that ships a wheel for Python 3.11, or set the Python the project was written for (e.g. `paas config:set PYTHON_VERSION=3.10`)"),
        "{e}"
    );
    assert_eq!(f.assert_serving(1), v1);
}

#[tokio::test]
async fn a_build_whose_cached_layer_was_removed_under_it_is_built_again() {
    let f = Fixture::new();
    f.with_v1_live().await;
    f.engine.fail_once(
        "build_image",
        DockerError::Build {
            message: "failed to export image: failed to set parent sha256:65fd: unknown parent image ID sha256:65fd".into(),
        },
    );
    let (r, out) = f.push("2222222", NEW_REQUIREMENTS).await;
    assert_eq!(r.unwrap().version, 2, "{out}");
    assert!(out.contains("building again"), "{out}");
    f.assert_serving(2);
}

#[tokio::test]
async fn a_failed_migration_leaves_the_live_release_and_its_route() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    // Migrations pending, and migrate fails.
    f.engine.migrations_pending(true);
    f.engine.exit_code("migrate --noinput", 1);
    let (r, out) = f.push("2222222", &[]).await;
    let e = r.unwrap_err();
    assert!(matches!(e, DeployError::ReleasePhase(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "migrate failed (exit code 1); the running release was not touched. Fix the migration shown above and push again"
    );
    assert!(
        out.contains("no database yet: nothing to snapshot"),
        "{out}"
    );
    assert!(
        f.engine.calls_to("start_container").len() == 1,
        "v2 never started"
    );
    f.assert_failed_and_cleaned_up(2, &e);
    assert_eq!(f.assert_serving(1), v1);
    // The sentence tells the user already: nothing is added to it.
    assert_eq!(
        e.sentence("the running release was not touched"),
        e.to_string().trim_end_matches('.')
    );
}

#[tokio::test]
async fn a_failed_release_command_leaves_the_live_release() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    f.engine.exit_code("manage.py seed", 3);
    let (r, _) = f
        .push(
            "2222222",
            &[("Procfile", "release: python manage.py seed\n")],
        )
        .await;
    let e = r.unwrap_err();
    assert!(matches!(e, DeployError::ReleasePhase(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("the Procfile's release command failed (exit code 3)"),
        "{e}"
    );
    f.assert_failed_and_cleaned_up(2, &e);
    assert_eq!(f.assert_serving(1), v1);
}

#[tokio::test]
async fn a_web_container_that_cannot_start_leaves_the_live_release() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    f.engine.fail(
        "start_container",
        DockerError::Engine("no space left on device".into()),
    );
    let (r, _) = f.push("2222222", &[]).await;
    let e = r.unwrap_err();
    assert_eq!(
        e.to_string(),
        "starting the web container failed: the Docker engine reported an error: no space left on device"
    );
    f.assert_failed_and_cleaned_up(2, &e);
    assert_eq!(f.assert_serving(1), v1);
}

#[tokio::test]
async fn a_release_that_dies_at_start_fails_the_health_gate_and_shows_why() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    f.engine.crash_at_start(
        "paas/blog:v2",
        &[
            "[INFO] Starting gunicorn",
            "Traceback (most recent call last):",
            "  File \"/app/mysite/wsgi.py\", line 1, in <module>",
            "ModuleNotFoundError: No module named 'nope'",
        ],
    );
    let (r, out) = f.push("2222222", &[]).await;
    let e = r.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the new release never became healthy: the web container exited with code 1 while starting; see its output above. Fix the error in the app's output and push again"
    );
    assert!(
        out.contains("  ModuleNotFoundError: No module named 'nope'"),
        "{out}"
    );
    assert!(
        !out.contains("Starting gunicorn"),
        "the traceback, not the noise: {out}"
    );
    assert!(f.engine.calls_to("probe").len() <= 2, "v1's probes only");
    f.assert_failed_and_cleaned_up(2, &e);
    assert_eq!(f.assert_serving(1), v1);
}

#[tokio::test]
async fn a_worker_that_cannot_start_keeps_the_new_release_from_going_live() {
    let f = Fixture::new();
    let procfile = [("Procfile", "worker: python manage.py work\n")];
    let (r, out) = f.push("1111111", &procfile).await;
    r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    let v1 = f.assert_serving(1);
    // v2's web container starts; its worker does not.
    f.engine.fail_after(
        "start_container",
        1,
        DockerError::Engine("no space left on device".into()),
    );
    let (r, _) = f.push("2222222", &procfile).await;
    let e = r.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("starting the worker process failed, so v2 did not go live"),
        "{e}"
    );
    f.assert_failed_and_cleaned_up(2, &e);
    assert_eq!(f.assert_serving(1), v1);
    let workers = f.engine.containers_labelled("paas.process", "worker");
    assert_eq!(workers.len(), 1, "v1's worker keeps running");
}

/// kamal-proxy's order: healthy → install → drain. The store's promote is
/// the last step that can fail, and it comes before the route swap.
#[tokio::test]
async fn a_failed_promote_leaves_the_old_route_in_place() {
    let f = Fixture::new();
    let v1 = f.with_v1_live().await;
    // The state database refuses to make any release live (as a full disk
    // or a read-only file would), through a second connection to the file.
    let db = rusqlite::Connection::open(f.dir.path().join("paas.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER no_promote BEFORE UPDATE OF status ON releases
         WHEN NEW.status = 'live' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    let (r, out) = f.push("2222222", &[]).await;
    let e = r.unwrap_err();
    assert!(matches!(e, DeployError::Failed(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("the state database failed"),
        "{e}"
    );
    assert!(out.contains("Health check"), "v2 was healthy first: {out}");
    assert!(!out.contains("v2 is live"), "{out}");
    f.assert_failed_and_cleaned_up(2, &e);
    assert_eq!(f.assert_serving(1), v1, "the old route, to v1's container");
    assert_eq!(f.release(1).status, ReleaseStatus::Live);
}

/// What of a crashed app's output a failed deploy shows.
mod telling {
    use super::super::telling_lines;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn the_traceback_is_shown_even_when_a_restart_printed_after_it() {
        let log = lines(
            "[INFO] Starting gunicorn 23.0.0\n\
             [ERROR] Exception in worker process\n\
             Traceback (most recent call last):\n  \
               File \"/app/blog/wsgi.py\", line 1, in <module>\n    \
                 import paas_no_such_module\n\
             ModuleNotFoundError: No module named 'paas_no_such_module'\n\
             [INFO] Worker exiting (pid: 9)\n\
             Traceback (most recent call last):\n  \
               File \"/opt/venv/bin/gunicorn\", line 8, in <module>\n\
             gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>\n\
             [INFO] Starting gunicorn 23.0.0\n\
             [INFO] Listening at: http://0.0.0.0:5000\n\
             [INFO] Booting worker with pid: 8",
        );
        let shown = telling_lines(&log, 3);
        assert_eq!(shown.first().unwrap(), "Traceback (most recent call last):");
        assert_eq!(
            shown.last().unwrap(),
            "ModuleNotFoundError: No module named 'paas_no_such_module'"
        );
    }

    #[test]
    fn the_apps_traceback_wins_over_gunicorns_halt_that_follows_it() {
        let log = lines(
            "[ERROR] Exception in worker process\n\
             Traceback (most recent call last):\n  \
               File \"/app/blog/wsgi.py\", line 1, in <module>\n    \
                 import paas_no_such_module\n\
             ModuleNotFoundError: No module named 'paas_no_such_module'\n\
             [INFO] Worker exiting (pid: 9)\n\
             Traceback (most recent call last):\n  \
               File \"/opt/venv/lib/python3.11/site-packages/gunicorn/arbiter.py\", line 683, in reap_workers\n    \
                 raise HaltServer(reason, self.WORKER_BOOT_ERROR)\n\
             gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>",
        );
        let shown = telling_lines(&log, 10);
        assert_eq!(
            shown.last().unwrap(),
            "ModuleNotFoundError: No module named 'paas_no_such_module'"
        );
        // Alone, gunicorn's traceback is still better than nothing.
        let shown = telling_lines(&log[6..], 10);
        assert!(shown.last().unwrap().contains("HaltServer"), "{shown:?}");
    }

    #[test]
    fn without_a_traceback_the_last_lines_are_shown() {
        let log = lines("a\nb\nc\nd");
        assert_eq!(telling_lines(&log, 2), ["c", "d"]);
        assert!(telling_lines(&[], 2).is_empty());
    }

    #[test]
    fn long_tracebacks_keep_their_innermost_frames() {
        let mut text = String::from("Traceback (most recent call last):\n");
        for i in 0..50 {
            text.push_str(&format!("  File \"f{i}.py\"\n"));
        }
        text.push_str("ValueError: boom\n");
        let shown = telling_lines(&lines(&text), 5);
        assert_eq!(shown.len(), 10);
        assert_eq!(shown[1], "  …");
        assert_eq!(shown.last().unwrap(), "ValueError: boom");
        assert_eq!(shown[8], "  File \"f49.py\"");
    }
}

#[test]
fn build_parallelism_follows_the_cpu_and_memory_limits() {
    assert_eq!(build_jobs(1.0, 768), 1);
    assert_eq!(build_jobs(0.5, 768), 1, "a fraction of a CPU is one job");
    assert_eq!(build_jobs(2.0, 2047), 2);
    assert_eq!(build_jobs(4.0, 768), 2, "memory for two compilers only");
    assert_eq!(build_jobs(2.0, 256), 1, "never fewer than one");
    let f = Fixture::new();
    let spec = build_container_limits(&f.ctx.config);
    assert_eq!(spec.memory_bytes, Some(768 << 20));
    assert_eq!(spec.memory_swap_bytes, spec.memory_bytes, "no swap on top");
    assert_eq!(spec.nano_cpus, Some(1_000_000_000));
    assert!(spec.cpu_shares.unwrap() < 1024, "below the apps' weight");
    assert!(spec.env.contains(&("MAKEFLAGS".into(), "-j1".into())));
}
