//! The story of one deploy, step by step.
//!
//! Queued → Building → Releasing → Starting → HealthChecking → Live, then the
//! previous release drains and retires. Any failure marks the release Failed
//! with one sentence for the user, removes what this deploy created, and
//! leaves the running release untouched: the route is swapped last, after
//! the new container has proven healthy and the store has made it the live
//! release — nothing that can fail comes after the swap.
//!
//! One deploy at a time per app: a second push waits for the first and says
//! so. Different apps deploy concurrently.
//!
//! The story talks to the container engine through [`Engine`], the narrow
//! set of calls it needs: the daemon passes the real engine, the unit tests
//! (deploy/tests.rs) an in-memory one.

mod build_log;
mod engine;
#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

pub use engine::Engine;

use crate::buildpack::{self, BuildOptions};
use crate::ctx::Ctx;
use crate::docker::{ContainerSpec, ContainerState};
use crate::git;
use crate::health::{self, HealthCheck};
use crate::layout::{
    self, built_tag, labels, labels_app, network_name, APP_PORT, APP_UID, APP_USER,
};
use crate::proxy::Route;
use crate::store::{App, Release, ReleaseMeta, ReleaseStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tracing::Instrument;

/// Every container of an app (web, Procfile processes, the release phase,
/// `paas run`) starts from this: the owner's memory, CPU and pids limits,
/// no Linux capability at all (gunicorn binds port 8000 as uid 10001 and
/// needs none), no way to gain privileges (setuid binaries stay inert), and
/// uid 10001. Callers fill in image, command, environment and the rest.
pub fn confined_app(config: &crate::config::Config) -> ContainerSpec {
    ContainerSpec {
        memory_bytes: Some(config.memory_mb as i64 * 1024 * 1024),
        nano_cpus: Some(nano_cpus(config.cpus)),
        pids_limit: Some(config.pids_limit as i64),
        capabilities: Some(Vec::new()),
        no_new_privileges: true,
        user: Some(APP_USER.into()),
        ..Default::default()
    }
}

/// Every build container (the dependency install, the code step) starts
/// from this: the owner's build memory (swap included) and CPU limits, a
/// CPU weight below the live apps' (so under contention the sites get two
/// thirds of the CPU and a build one third), a pids limit, and compiler and
/// installer parallelism that follows the limits. Callers fill in image,
/// command, mounts and labels.
pub fn build_container_limits(config: &crate::config::Config) -> ContainerSpec {
    let jobs = build_jobs(config.build_cpus, config.build_memory_mb).to_string();
    let env = [
        // setuptools/distutils extensions, ninja, torch-style builds.
        "MAX_JOBS",
        // cmake and make when a package drives them.
        "CMAKE_BUILD_PARALLEL_LEVEL",
        "NPY_NUM_BUILD_JOBS",
        // uv: source builds and wheel unpacking at once.
        "UV_CONCURRENT_BUILDS",
        "UV_CONCURRENT_INSTALLS",
    ]
    .into_iter()
    .map(|k| (k.to_string(), jobs.clone()))
    .chain([("MAKEFLAGS".to_string(), format!("-j{jobs}"))])
    .collect();
    ContainerSpec {
        memory_bytes: Some(config.build_memory_mb as i64 * 1024 * 1024),
        memory_swap_bytes: Some(config.build_memory_mb as i64 * 1024 * 1024),
        nano_cpus: Some(nano_cpus(config.build_cpus)),
        cpu_shares: Some(BUILD_CPU_SHARES),
        pids_limit: Some(BUILD_PIDS_LIMIT),
        env,
        ..Default::default()
    }
}

/// How many compilers or installers a build runs at once: one per CPU it
/// may use (rounded up), and no more than its memory holds at about 384 MiB
/// each (a C++ compiler alone reaches that), never fewer than one.
pub fn build_jobs(cpus: f64, memory_mb: u64) -> u64 {
    let by_cpu = cpus.ceil().max(1.0) as u64;
    by_cpu.min(memory_mb / 384).max(1)
}

/// A build that failed because a layer it used from the cache was removed
/// under it (the engine's words for it), not because of the app.
fn lost_a_cached_layer(e: &crate::docker::DockerError) -> bool {
    let text = e.to_string();
    text.contains("unknown parent image ID")
        || (text.contains("failed to get digest") && text.contains("no such file or directory"))
}

/// CPUs as the engine counts them: billionths of a CPU.
fn nano_cpus(cpus: f64) -> i64 {
    (cpus * 1e9).round() as i64
}

/// Release images kept per app for rollback.
pub use crate::prune::KEEP_IMAGES;
/// Upper bound for the release phase (migrate).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Longest a push's build step (collectstatic) may run.
const BUILD_STEP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// CPU weight of the build step against the default 1024 of every app
/// container: when the CPU is contended, live apps get twice its share.
const BUILD_CPU_SHARES: i64 = 512;
/// Most processes and threads the build step may hold at once.
const BUILD_PIDS_LIMIT: i64 = 512;

/// A deploy without a build: an image that went live before, in new containers.
#[derive(Debug, Clone)]
pub enum Redeploy {
    /// Back to release `to` (None: the newest one before the live release),
    /// with the config vars it ran with; with `restore_db`, the data as it
    /// was before the next release's migrations too.
    Rollback { to: Option<i64>, restore_db: bool },
    /// Fresh containers of the live release.
    Restart,
    /// The live release's image with the app's current config vars; the
    /// names of the vars that changed (never their values).
    Config { keys: Vec<String> },
}

/// What a push hands to the deployer.
pub struct DeployRequest {
    pub app: String,
    /// The commit's first line (or why it is built again).
    pub message: String,
    /// Where the commit is read from (during a push: with its quarantine).
    pub source: git::CommitSource,
}

/// Largest tree a deploy writes out (the files of one commit).
pub const MAX_TREE_BYTES: u64 = 1 << 30;

/// Why a deploy did not go live. Each variant says what became of the
/// release that was live; the message is for the user: what happened and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The app has no live release yet, so there is nothing to restart,
    /// roll back or rebuild; nothing was recorded.
    #[error("{app} has no live release yet: `git push` deploys it first")]
    NoLiveRelease { app: String },
    /// paas is stopping: the deploy did not start, nothing was recorded,
    /// and the running release was not touched (the sentence says so).
    #[error("paas is shutting down, so this deploy did not start and the running release was not touched; try again once paas is back")]
    ShuttingDown,
    /// The Docker engine did not answer before anything was recorded:
    /// nothing was deployed and the running release keeps serving, as the
    /// sentence says (the proxy and the app's containers need no engine).
    /// `again` is how the user tries again ("push again").
    #[error("the Docker engine is not reachable at {addr} ({cause}), so nothing was deployed and the running release keeps serving: start it (systemctl start docker) and {again}")]
    EngineUnreachable {
        addr: String,
        cause: String,
        again: &'static str,
    },
    /// Refused before a release was recorded (an unknown version, one that
    /// never went live, an image that is gone, …): nothing ran and the
    /// running release was not touched.
    #[error("{0}")]
    Refused(String),
    /// The release phase (the pre-migrate snapshot, migrate, the
    /// Procfile's release command) failed: the new release never started,
    /// its leftovers were removed, and the running release was not touched
    /// — the sentence says so itself.
    #[error("{0}")]
    ReleasePhase(String),
    /// A step failed after the release was recorded: it is marked failed,
    /// what it created was removed, and the running release was not
    /// touched (its route never changed).
    #[error("{0}")]
    Failed(String),
    /// Like [`DeployError::Failed`], but a `rollback --restore-db` had
    /// restored the data already: the running release kept serving, on the
    /// restored data.
    #[error("{reason}; the data had already been restored from snapshot {snapshot}, and the running release now uses it")]
    FailedAfterRestore { reason: String, snapshot: String },
}

impl DeployError {
    /// The sentence for whoever asked for a build-less deploy: the deploy's
    /// own, then `kept` (what became of the running release, in the
    /// caller's words) unless the variant has it said already or there is
    /// no running release. Without a full stop: callers add their own.
    pub fn sentence(&self, kept: &str) -> String {
        let own = self.to_string();
        let own = own.trim_end_matches('.');
        match self {
            Self::NoLiveRelease { .. }
            | Self::ShuttingDown
            | Self::EngineUnreachable { .. }
            | Self::ReleasePhase(_)
            | Self::FailedAfterRestore { .. } => own.to_string(),
            Self::Refused(_) | Self::Failed(_) => format!("{own}; {kept}"),
        }
    }
}

/// A store failure as the reason a deploy failed (after its release was recorded).
fn store_failed(e: crate::store::StoreError) -> DeployError {
    DeployError::Failed(e.to_string())
}

/// Where progress goes: to the pusher (if still connected) and the release log.
pub struct Progress {
    tx: Option<UnboundedSender<String>>,
    buffer: String,
}

impl Progress {
    /// Progress lines sent to `tx` (the push stream); None for background deploys.
    pub fn new(tx: Option<UnboundedSender<String>>) -> Progress {
        Progress {
            tx,
            buffer: String::new(),
        }
    }

    /// A step heading, Heroku style.
    pub fn step(&mut self, text: &str) {
        self.line(&format!("-----> {text}"));
    }

    /// Detail under a step.
    pub fn info(&mut self, text: &str) {
        self.line(&format!("       {text}"));
    }

    fn line(&mut self, text: &str) {
        self.send_to_pusher(text);
        self.append_to_log(text);
    }

    /// A raw line of the image build: kept in the release log (the
    /// dashboard's release page shows it whole), not sent to the pusher.
    fn log_only(&mut self, text: &str) {
        self.append_to_log(&format!("       {text}"));
    }

    /// What the pusher sees of the build instead (see [`build_log`]).
    fn pusher_only(&mut self, shown: build_log::Shown) {
        match shown {
            build_log::Shown::Step(t) => self.send_to_pusher(&format!("-----> {t}")),
            build_log::Shown::Info(t) => self.send_to_pusher(&format!("       {t}")),
        }
    }

    fn send_to_pusher(&mut self, text: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(format!("{text}\n"));
        }
    }

    fn append_to_log(&mut self, text: &str) {
        self.buffer.push_str(text);
        self.buffer.push('\n');
    }

    fn take(&mut self) -> String {
        std::mem::take(&mut self.buffer)
    }
}

/// Everything the steps share.
struct Run<'a, E: Engine> {
    ctx: &'a Ctx,
    /// The container engine this deploy talks to.
    engine: &'a E,
    app: App,
    release: Release,
    progress: Progress,
    timings: Vec<(String, u64)>,
    /// Objects this deploy made, removed if it fails.
    new_container: Option<String>,
    image: Option<String>,
    static_dir: Option<PathBuf>,
    /// The snapshot a `rollback --restore-db` put back, once it has.
    restored: Option<String>,
}

impl<E: Engine> Run<'_, E> {
    fn status(&mut self, s: ReleaseStatus) {
        if let Err(e) = self.ctx.store.set_status(self.release.id, s) {
            tracing::error!("recording status {}: {e}", s.as_str());
        }
        self.flush_log();
    }

    fn flush_log(&mut self) {
        append_log(&self.ctx.store, self.release.id, &mut self.progress);
    }

    fn timed(&mut self, step: &str, since: Instant) {
        self.timings
            .push((step.to_string(), since.elapsed().as_millis() as u64));
    }
}

/// Moves what `progress` gathered into the release's log in the store.
fn append_log(store: &crate::store::Store, release_id: i64, progress: &mut Progress) {
    let text = progress.take();
    if !text.is_empty() {
        if let Err(e) = store.append_log(release_id, &text) {
            tracing::error!("appending release log: {e}");
        }
    }
}

/// Deploy a pushed commit. Returns the live release, or why it failed.
pub async fn deploy(
    ctx: &Ctx,
    req: DeployRequest,
    progress: Progress,
) -> Result<Release, DeployError> {
    let app = req.app.clone();
    run_job(ctx, &ctx.docker, &app, Job::Push(&req), progress).await
}

/// Builds and deploys the live release's commit again, through the push
/// path (build, release phase, health gate): for changes the image itself
/// must follow, like a new database that needs its driver and `migrate`.
pub async fn rebuild(
    ctx: &Ctx,
    app: &str,
    why: &str,
    progress: Progress,
) -> Result<Release, DeployError> {
    let live = ctx
        .store
        .live_release(app)
        .map_err(|e| DeployError::Refused(e.to_string()))?
        .ok_or_else(|| DeployError::NoLiveRelease { app: app.into() })?;
    let req = DeployRequest {
        app: app.to_string(),
        message: why.to_string(),
        source: git::CommitSource {
            repo: ctx.repos.path(app),
            rev: live.commit_sha.clone(),
            objects: None,
        },
    };
    deploy(ctx, req, progress).await
}

/// Roll back, restart or apply a config change: the live (or an earlier)
/// release's image through the same start → health → swap → drain path as a
/// push, as a new release, without a build and without migrations.
pub async fn redeploy(
    ctx: &Ctx,
    app: &str,
    what: Redeploy,
    progress: Progress,
) -> Result<Release, DeployError> {
    run_job(ctx, &ctx.docker, app, Job::Redeploy(what), progress).await
}

enum Job<'r> {
    Push(&'r DeployRequest),
    Redeploy(Redeploy),
}

/// What a build-less deploy runs: an earlier release's image and facts.
struct Source {
    release: Release,
    vars: BTreeMap<String, String>,
    description: String,
    /// A rollback puts the release's config vars back as the app's.
    restore_config: bool,
    /// `rollback --restore-db`: the pre-migrate snapshot to restore first.
    snapshot: Option<crate::backup::Manifest>,
}

/// What the web container of a new release is made of.
struct Prepared {
    image: String,
    meta: ReleaseMeta,
    vars: BTreeMap<String, String>,
    /// A rollback: the app's config vars become `vars` when it goes live,
    /// those of this earlier release.
    config_of: Option<i64>,
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// One deploy of any kind on `engine`, from the queue to Live or Failed.
async fn run_job<E: Engine>(
    ctx: &Ctx,
    engine: &E,
    app_name: &str,
    job: Job<'_>,
    mut progress: Progress,
) -> Result<Release, DeployError> {
    let app = ctx
        .store
        .app(app_name)
        .map_err(|e| DeployError::Refused(e.to_string()))?;
    // In flight from here on (shutdown waits for it), then checked: a
    // deploy counted before the daemon closed the tracker is waited for,
    // one counted after it sees it closed.
    let _in_flight = ctx.deployer.track();
    if ctx.deployer.is_closed() {
        return Err(DeployError::ShuttingDown);
    }
    let queue = ctx.deployer.queue_for(&app.name);
    let _turn = match queue.turn.try_lock() {
        Ok(g) => g,
        Err(_) => {
            let ahead = queue.current.load(Ordering::SeqCst);
            let who = if ahead > 0 {
                format!("v{ahead}")
            } else {
                "another deploy".to_string()
            };
            progress.step(&format!(
                "Queued behind {who}: one deploy at a time per app"
            ));
            queue.turn.lock().await
        }
    };
    queue.current.store(0, Ordering::SeqCst);
    if ctx.deployer.is_closed() {
        return Err(DeployError::ShuttingDown);
    }
    let again = match &job {
        Job::Push(_) => "push again",
        Job::Redeploy(_) => "run the command again",
    };
    // Before any release is recorded: without the engine nothing can be
    // built or started, and the running containers and proxy need it not.
    engine.ping().await.map_err(|e| engine_failed(e, again))?;
    if let Some(warning) = crate::disk::full_warning(&ctx.config.data_dir) {
        progress.info(&warning);
    }
    // Resolved only now: the live release may have changed while queued.
    let (commit, description, source) = match &job {
        Job::Push(req) => {
            let rev = &req.source.rev;
            (rev.clone(), format!("deploy {}", short(rev)), None)
        }
        Job::Redeploy(what) => {
            let src = resolve(ctx, engine, &app, what).await?;
            (
                src.release.commit_sha.clone(),
                src.description.clone(),
                Some(src),
            )
        }
    };
    let release = ctx
        .store
        .create_release(&app, &commit, &description)
        .map_err(|e| DeployError::Refused(e.to_string()))?;
    queue.current.store(release.version, Ordering::SeqCst);
    let span = tracing::info_span!("deploy", app = %app.name, release = release.version);
    let mut run = Run {
        ctx,
        engine,
        app,
        release,
        progress,
        timings: Vec::new(),
        new_container: None,
        image: None,
        static_dir: None,
        restored: None,
    };
    let started = Instant::now();
    let result = async {
        let prepared = match (&job, &source) {
            (Job::Push(req), _) => build_steps(&mut run, req).await?,
            (Job::Redeploy(_), Some(src)) => reuse_steps(&mut run, src).await?,
            (Job::Redeploy(_), None) => unreachable!("a redeploy always has a source"),
        };
        go_live(&mut run, prepared).await
    }
    .instrument(span.clone())
    .await;
    run.timed("total", started);
    // Not `span.enter()`: a guard held across an await leaks the span onto
    // whichever worker thread polls next, and tags unrelated log lines.
    async move {
        match result {
            Ok(()) => {
                tracing::info!(secs = started.elapsed().as_secs_f64(), "live");
                run.progress.step(&timings_line(&run.timings));
                run.flush_log();
                let rel = ctx
                    .store
                    .release(&run.app.name, run.release.version)
                    .ok()
                    .flatten()
                    .unwrap_or(run.release);
                Ok(rel)
            }
            Err(e) => {
                let e = match (e, run.restored.take()) {
                    (DeployError::Failed(reason), Some(snapshot)) => {
                        DeployError::FailedAfterRestore { reason, snapshot }
                    }
                    (e, _) => e,
                };
                tracing::warn!("deploy failed: {e}");
                cleanup_failed(&mut run).await;
                run.flush_log();
                if let Err(err) = ctx.store.fail_release(run.release.id, &e.to_string()) {
                    tracing::error!("recording failure: {err}");
                }
                Err(e)
            }
        }
    }
    .instrument(span)
    .await
}

/// The push's last line: how long the whole deploy and each step took.
fn timings_line(timings: &[(String, u64)]) -> String {
    let secs = |ms: u64| format!("{:.1}s", ms as f64 / 1000.0);
    let total = timings.iter().find(|(s, _)| s == "total");
    let steps: Vec<String> = timings
        .iter()
        .filter(|(s, _)| s != "total")
        .map(|(s, ms)| format!("{s} {}", secs(*ms)))
        .collect();
    match total {
        Some((_, ms)) if steps.is_empty() => format!("Done in {}", secs(*ms)),
        Some((_, ms)) => format!("Done in {} ({})", secs(*ms), steps.join(", ")),
        None => format!("Done ({})", steps.join(", ")),
    }
}

/// A Docker error as the reason a deploy failed; an unreachable engine
/// says what to do about it (`again`: "push again" or the like).
fn engine_failed(e: crate::docker::DockerError, again: &'static str) -> DeployError {
    match e {
        crate::docker::DockerError::Unreachable { addr, cause } => {
            DeployError::EngineUnreachable { addr, cause, again }
        }
        other => DeployError::Failed(other.to_string()),
    }
}

/// Does a build error say its step was killed (exit 137: SIGKILL, which is
/// what the memory limit's OOM killer sends)?
fn out_of_memory(message: &str) -> bool {
    message.contains("returned a non-zero code: 137")
}

/// Pulls the build's base image unless the engine has it; when it cannot
/// be pulled (no registry reachable), the deploy fails before the build
/// with the Pythons whose images are on this server.
async fn ensure_base_image<E: Engine>(
    engine: &E,
    plan: &buildpack::BuildPlan,
    pattern: &str,
    progress: &mut Progress,
) -> Result<(), DeployError> {
    let image = &plan.base_image;
    if engine.image_exists(image).await.unwrap_or(false) {
        return Ok(());
    }
    progress.step(&format!("Pulling the base image {image}"));
    let Err(e) = engine.ensure_image(image).await else {
        return Ok(());
    };
    if matches!(e, crate::docker::DockerError::Unreachable { .. }) {
        return Err(engine_failed(e, "push again"));
    }
    let here = buildpack::local_pythons(&engine.image_tags().await.unwrap_or_default(), pattern);
    let pin = pin_a_local_python(&here, plan.django_support.as_ref());
    Err(DeployError::Failed(format!(
        "Python {} needs the base image {image}, which is not on this server and cannot be pulled ({e}): give the server access to its image registry{pin}",
        plan.python_version
    )))
}

/// The end of the cannot-pull sentence: the local Pythons (`here`, newest
/// first) the project could pin instead, only those its Django supports.
fn pin_a_local_python(here: &[String], django: Option<&(String, buildpack::Support)>) -> String {
    let minor = |v: &String| v.strip_prefix("3.").and_then(|m| m.parse::<u32>().ok());
    match django {
        None if here.is_empty() => String::new(),
        None => format!(
            ", or pin a Python whose image is on this server ({}) in .python-version",
            here.join(", ")
        ),
        Some((d, support)) => {
            let fits: Vec<&str> = here
                .iter()
                .filter(|v| minor(v).is_some_and(|m| support.allows(m)))
                .map(String::as_str)
                .collect();
            if fits.is_empty() {
                format!(
                    " (Django {d} supports Python {}, and no image of those is on this server)",
                    support.shown()
                )
            } else {
                format!(
                    ", or pin a Python that Django {d} supports and whose image is on this server ({}) in .python-version",
                    fits.join(", ")
                )
            }
        }
    }
}

/// Which release a build-less deploy starts again, checked before any
/// release is recorded: a mistyped version leaves no failed release behind.
async fn resolve<E: Engine>(
    ctx: &Ctx,
    engine: &E,
    app: &App,
    what: &Redeploy,
) -> Result<Source, DeployError> {
    let name = &app.name;
    let store_err = |e: crate::store::StoreError| DeployError::Refused(e.to_string());
    let live = ctx.store.live_release(name).map_err(store_err)?;
    let Some(live) = live else {
        return Err(DeployError::NoLiveRelease { app: name.clone() });
    };
    let current_vars = || ctx.store.config_vars(app).map_err(store_err);
    let src = match what {
        Redeploy::Restart => Source {
            vars: current_vars()?,
            description: "restart".into(),
            restore_config: false,
            snapshot: None,
            release: live,
        },
        Redeploy::Config { keys } => Source {
            vars: current_vars()?,
            description: format!("config change: {}", keys.join(", ")),
            restore_config: false,
            snapshot: None,
            release: live,
        },

        Redeploy::Rollback { to, restore_db } => {
            let releases = ctx.store.releases(name).map_err(store_err)?;
            let went_live = |r: &Release| {
                matches!(r.status, ReleaseStatus::Live | ReleaseStatus::Retired)
                    && r.image.is_some()
            };
            let target = match to {
                Some(v) => releases.iter().find(|r| r.version == *v).ok_or_else(|| {
                    DeployError::Refused(format!(
                        "{name} has no release v{v}: `paas releases --app {name}` lists them"
                    ))
                })?,
                None => releases
                    .iter()
                    .find(|r| r.version < live.version && went_live(r))
                    .ok_or_else(|| {
                        DeployError::Refused(format!(
                            "{name} has no earlier release that went live, so there is nothing to roll back to"
                        ))
                    })?,
            };
            if !went_live(target) {
                return Err(DeployError::Refused(format!(
                    "v{} never went live ({}), so it cannot be rolled back to: pick a retired release from `paas releases --app {name}`",
                    target.version,
                    target.status.as_str()
                )));
            }
            let snapshot = if *restore_db {
                let v = target.version;
                Some(
                    crate::backup::snapshot_after(&ctx.config.data_dir, name, v).ok_or_else(
                        || {
                            DeployError::Refused(format!(
                                "no pre-migrate snapshot was taken after v{v}, so no migration changed the data since: roll back without --restore-db"
                            ))
                        },
                    )?,
                )
            } else {
                None
            };
            Source {
                vars: target.config.clone(),
                description: format!(
                    "rollback to v{}{}",
                    target.version,
                    if snapshot.is_some() {
                        " with its data"
                    } else {
                        ""
                    }
                ),
                restore_config: true,
                release: target.clone(),
                snapshot,
            }
        }
    };
    let image = src.release.image.clone().unwrap_or_default();
    match engine.image_exists(&image).await {
        Ok(true) => Ok(src),
        Ok(false) => Err(DeployError::Refused(format!(
            "the image of v{} ({image}) is gone (paas keeps the last {KEEP_IMAGES} releases' images): push that commit again instead",
            src.release.version
        ))),
        Err(e) => Err(DeployError::Refused(e.to_string())),
    }
}

/// The build-less path's first steps: reuse an image, its facts and its static files.
async fn reuse_steps<E: Engine>(
    run: &mut Run<'_, E>,
    src: &Source,
) -> Result<Prepared, DeployError> {
    let ctx = run.ctx;
    let app = run.app.name.clone();
    let version = run.release.version;
    let from = src.release.version;
    let image = src.release.image.clone().unwrap_or_default();
    let what = match src.description.as_str() {
        "restart" => format!("Restarting {app}: v{version} runs v{from}'s image in new containers"),
        d if d.starts_with("rollback") => format!(
            "Rolling back {app} to v{from}: v{version} runs v{from}'s image and config (no build, no migrations)"
        ),
        _ => format!(
            "Applying the config change to {app}: v{version} runs v{from}'s image with the new config"
        ),
    };
    run.progress.step(&what);
    if let Some(m) = &src.snapshot {
        // Before the new containers start: the old code must meet the old schema.
        run.progress.step(&format!(
            "Restoring the data from snapshot {} (taken before v{} migrated); changes made since are replaced",
            m.id,
            m.release.unwrap_or_default()
        ));
        run.flush_log();
        crate::backup::restore(ctx, &run.app, &m.id)
            .await
            .map_err(|e| {
                DeployError::Failed(format!(
                    "restoring snapshot {} failed, so nothing was rolled back: {e}",
                    m.id
                ))
            })?;
        run.restored = Some(m.id.clone());
    }
    let source_static = layout::release_dir(&ctx.config.data_dir, &app, from).join("static");
    if source_static.is_dir() {
        let dest = layout::release_dir(&ctx.config.data_dir, &app, version).join("static");
        run.static_dir = Some(dest.clone());
        tokio::task::spawn_blocking(move || link_tree(&source_static, &dest))
            .await
            .map_err(|e| DeployError::Failed(format!("copying the static files failed: {e}")))?
            .map_err(|e| DeployError::Failed(format!("copying the static files failed: {e}")))?;
    }
    ctx.store
        .update_release(
            run.release.id,
            Some(&image),
            &src.release.meta,
            &src.vars,
            &run.timings,
        )
        .map_err(store_failed)?;
    Ok(Prepared {
        image,
        meta: src.release.meta.clone(),
        vars: src.vars.clone(),
        config_of: src.restore_config.then_some(src.release.version),
    })
}

/// Copy a tree as hard links (static files are never written in place).
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        let kind = e.file_type()?;
        if kind.is_dir() {
            link_tree(&e.path(), &dest)?;
        } else if kind.is_file() && std::fs::hard_link(e.path(), &dest).is_err() {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}
/// A push's first steps: build the image, then migrate with it.
async fn build_steps<E: Engine>(
    run: &mut Run<'_, E>,
    req: &DeployRequest,
) -> Result<Prepared, DeployError> {
    let (ctx, engine) = (run.ctx, run.engine);
    let app = run.app.name.clone();
    let version = run.release.version;
    let short = short(&req.source.rev);
    run.progress.step(&format!(
        "Deploying {app} v{version} ({short}{})",
        if req.message.is_empty() {
            String::new()
        } else {
            format!(": {}", req.message)
        }
    ));

    // ---- Building ----
    run.status(ReleaseStatus::Building);
    let t = Instant::now();
    let vars = ctx.store.config_vars(&run.app).map_err(store_failed)?;
    let workdir = ctx
        .config
        .data_dir
        .join("tmp")
        .join(format!("{app}-v{version}"));
    let _cleanup = RemoveOnDrop(workdir.clone());
    // The tree goes to disk file by file, straight from the repository;
    // its symlinks only into the build context (see git::export_tree).
    let tree = workdir.join("tree");
    let (source, wd, dest) = (req.source.clone(), workdir.clone(), tree.clone());
    let export = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&wd);
        std::fs::create_dir_all(&wd)?;
        git::export_tree(&source, &dest, MAX_TREE_BYTES)
    })
    .await
    .map_err(|e| DeployError::Failed(format!("writing out the pushed code failed: {e}")))?
    .map_err(|e| match e {
        // Sentences that already say what to do.
        e @ (git::GitError::TooLarge(_)
        | git::GitError::BadPath(_)
        | git::GitError::NoCommit(_)) => DeployError::Failed(e.to_string()),
        e => DeployError::Failed(format!("writing out the pushed code failed: {e}")),
    })?;
    if !export.symlinks.is_empty() {
        let mut names: Vec<&str> = export
            .symlinks
            .iter()
            .map(|l| l.path.as_str())
            .take(5)
            .collect();
        if export.symlinks.len() > names.len() {
            names.push("…");
        }
        run.progress.info(&format!(
            "Symlinks go into the image as they are, but paas reads no file through one (a Procfile, paas.toml or requirements file must be a regular file): {}",
            names.join(", ")
        ));
    }
    let opts = BuildOptions {
        image_pattern: ctx.config.image_pattern.clone(),
        python_version: vars.get("PYTHON_VERSION").cloned(),
        settings_module: vars.get("DJANGO_SETTINGS_MODULE").cloned(),
        local_pythons: buildpack::local_pythons(
            &engine.image_tags().await.unwrap_or_default(),
            &ctx.config.image_pattern,
        ),
    };
    let build_vars = buildpack::BuildVars::from_config_vars(&vars);
    let plan = match buildpack::detect_with(&tree, &opts, &build_vars) {
        Ok(plan) => plan,
        Err(buildpack::DetectError::Several(blockers)) => {
            // Every blocker on its own line, so one push shows them all.
            run.progress.step(&format!(
                "{} problems stop this push before the build",
                blockers.len()
            ));
            for (i, b) in blockers.iter().enumerate() {
                run.progress.info(&format!("{}. {b}", i + 1));
            }
            return Err(DeployError::Failed(format!(
                "{} problems stop this push (each is on its own line above): fix them all, then push again",
                blockers.len()
            )));
        }
        Err(e) => return Err(DeployError::Failed(e.to_string())),
    };
    // The optional paas.toml at the project root: checked before the build,
    // so a typo costs seconds, not a build.
    let repo_file = tree.join("paas.toml");
    // symlink_metadata: never through a link (the tree holds none; belt and braces).
    let (health_table, cron_jobs) = if std::fs::symlink_metadata(&repo_file)
        .is_ok_and(|m| m.is_file())
    {
        let text = tokio::fs::read_to_string(&repo_file)
            .await
            .map_err(|e| DeployError::Failed(format!("paas.toml in the pushed code cannot be read ({e}); make it a UTF-8 text file and push again")))?;
        (
            Some(health::parse_repo_file(&text).map_err(DeployError::Failed)?),
            crate::cron_table::parse_repo_file(&text).map_err(DeployError::Failed)?,
        )
    } else {
        (None, Default::default())
    };
    if !cron_jobs.is_empty() {
        crate::cron_table::time_zone(&vars).map_err(DeployError::Failed)?;
    }
    health::settings(&health_table.clone().unwrap_or_default(), &vars)
        .map_err(DeployError::Failed)?;
    run.progress.step("Django project detected");
    for note in &plan.notes {
        run.progress.info(note);
    }
    let procfile = crate::procfile::Procfile::find(&tree, &plan.project_dir)
        .map_err(|e| DeployError::Failed(e.to_string()))?
        .unwrap_or_default();
    if !procfile.processes.is_empty() {
        let names: Vec<&str> = procfile.processes.keys().map(String::as_str).collect();
        run.progress
            .info(&format!("Procfile processes: {}", names.join(", ")));
        if procfile
            .processes
            .get("web")
            .is_some_and(|c| c.contains("collectstatic"))
        {
            run.progress.info(
                "The Procfile's web process runs collectstatic at boot: collectstatic already ran during the build, so this only slows every start (the app's folder is writable, so it works; drop it from web: to start faster)",
            );
        }
    }
    ensure_base_image(engine, &plan, &ctx.config.image_pattern, &mut run.progress).await?;
    // ---- The dependency image: built once per content, shared ----
    let deps = {
        let (plan, dir) = (plan.clone(), tree.clone());
        tokio::task::spawn_blocking(move || buildpack::dependency_build(&plan, &dir))
            .await
            .map_err(|e| DeployError::Failed(format!("preparing the build failed: {e}")))?
            .map_err(|e| DeployError::Failed(format!("preparing the build failed: {e}")))?
    };
    let deps_tag = deps.tag();
    if engine.image_exists(&deps_tag).await.unwrap_or(false) {
        run.progress.step(&format!(
            "Dependencies unchanged: reusing {deps_tag} (no install)"
        ));
    } else {
        build_dependencies(run, &deps, &deps_tag, &workdir, &plan.python_version).await?;
    }
    run.timed("dependencies", t);

    // ---- The code: one layer on the dependency image ----
    let t_code = Instant::now();
    let tag = format!("paas/{app}:v{version}");
    run.progress.step(&format!("Building image {tag}"));
    run.flush_log();
    let settings = buildpack::run_settings(&plan);
    let upload = workdir.join("code.tar");
    {
        // The config vars reach the build step as a file it reads and
        // removes first (never the container's environment, which the
        // image would inherit, and never the layer).
        let env = app_env(ctx, &run.app, version, &vars);
        let files = buildpack::code_files(&plan);
        let (dir, out) = (tree.clone(), upload.clone());
        tokio::task::spawn_blocking(move || code_upload(&dir, &export.symlinks, files, &env, &out))
            .await
            .map_err(|e| DeployError::Failed(format!("preparing the build failed: {e}")))?
            .map_err(|e| DeployError::Failed(format!("preparing the build failed: {e}")))?;
    }
    // The step also runs the release check (`check --deploy`, `migrate
    // --check`) with the app's real config: on the app's network (its
    // database) with its data read-only.
    let (volume, network) = app_place(ctx, engine, &app).await?;
    // The build's limits (memory, CPU, a lower CPU weight, pids) and the
    // parallelism they allow; the image never inherits this environment
    // (its config is made from the dependency image's and `settings`).
    let limits = build_container_limits(&ctx.config);
    let step = crate::docker::BuildStep {
        spec: ContainerSpec {
            name: None,
            image: deps_tag.clone(),
            cmd: Some(settings.build_cmd.clone()),
            env: settings.env.iter().chain(&limits.env).cloned().collect(),
            labels: labels(&app, version, Some("build")),
            binds: vec![format!("{}:/data:ro", volume.display())],
            network: Some(network),
            working_dir: Some(settings.working_dir.clone()),
            // Root, as a Dockerfile's RUN: STATIC_ROOT may lie outside
            // /app; what it writes under /app is handed to the app's user.
            user: Some("0:0".into()),
            no_new_privileges: true,
            ..limits
        },
        upload: &upload,
        out_dir: "/paas",
        tag: &tag,
        image: crate::docker::ImageSettings {
            entrypoint: settings.entrypoint.clone(),
            cmd: settings.cmd.clone(),
            env: settings.env.clone(),
            working_dir: settings.working_dir.clone(),
            labels: vec![("paas.deps".to_string(), deps.key.clone())],
            exposed_port: Some(settings.port),
        },
        scratch: &workdir,
        timeout: BUILD_STEP_TIMEOUT,
    };
    let mut missing_var = None;
    // The buildpack's own sentence for an app module that fails to import.
    let mut import_failure: Option<String> = None;
    let outcome = {
        let progress = &mut run.progress;
        let mut checking = false;
        let mut on_line = |line: &str| {
            let line = line.trim_end();
            if line.is_empty() {
                return;
            }
            progress.log_only(line);
            if let Some(var) = build_log::missing_env_var(line) {
                missing_var = Some(var);
            }
            if let Some(sentence) = line
                .strip_prefix("-----> ")
                .filter(|l| l.starts_with("the app's module ") && l.contains(" failed to import "))
            {
                import_failure = Some(sentence.to_string());
            }
            if line == buildpack::CHECK_MARK {
                checking = true;
                progress.pusher_only(build_log::Shown::Step(
                    "Checking the deployment (manage.py check --deploy; warnings do not stop the push)".into(),
                ));
            } else if line == buildpack::CHECK_END {
                checking = false;
            } else if checking {
                if let Some(shown) = build_log::check_line(line) {
                    progress.pusher_only(build_log::Shown::Info(shown));
                }
            } else if !line.starts_with("-----> paas metadata:") {
                let shown = line.strip_prefix("-----> ").unwrap_or(line);
                progress.pusher_only(build_log::Shown::Info(shown.to_string()));
            }
        };
        engine.run_build_step(&step, &mut on_line).await
    };
    let limit = ctx.config.build_memory_mb;
    let (meta_bytes, kept) = match outcome {
        Ok(crate::docker::BuildStepOutcome::Built { meta, kept }) => (meta, kept),
        Ok(crate::docker::BuildStepOutcome::Failed { code: 137 }) => {
            return Err(DeployError::Failed(format!(
                "the build step (collectstatic) ran out of memory ({limit} MiB): raise build-memory-mb in paas.toml (e.g. build-memory-mb = {}) and push again",
                (limit * 2).min(2047)
            )))
        }
        Ok(crate::docker::BuildStepOutcome::Failed { code }) => {
            return Err(DeployError::Failed(match (missing_var, import_failure) {
                (_, Some(sentence)) => sentence,
                (Some(var), None) => format!(
                    "the project's settings need the {var} environment variable (see the error above): set it with `paas config:set {var}=…` (config vars reach the build too) and push again"
                ),
                (None, None) => format!(
                    "the build step failed (exit code {code}): fix the error shown above and push again"
                ),
            }))
        }
        Err(e @ crate::docker::DockerError::Unreachable { .. }) => {
            return Err(engine_failed(e, "push again"))
        }
        Err(e) => {
            return Err(DeployError::Failed(format!(
                "the image build failed: {e}. Push again; if it fails the same way, the server's log has the details"
            )))
        }
    };
    run.image = Some(tag.clone());
    tracing::debug!("code: the build step ended");

    // What the build learnt about static and media files.
    let mut meta: ReleaseMeta = serde_json::from_slice(&meta_bytes).unwrap_or_default();
    // Whether the step's `migrate --check` found migrations to apply (or
    // could not tell): anything but a clear "no" migrates.
    #[derive(serde::Deserialize)]
    struct ReleaseCheck {
        migrations_pending: Option<bool>,
    }
    let pending = serde_json::from_slice::<ReleaseCheck>(&meta_bytes)
        .ok()
        .and_then(|c| c.migrations_pending)
        .unwrap_or(true);
    // The health check and the Procfile travel with the release: a
    // rollback or restart probes as it did and runs the processes it had.
    meta.healthcheck = health_table.filter(|t| *t != health::HealthTable::default());
    meta.processes = procfile.processes.clone();
    meta.cron = cron_jobs;
    // The build ran the app's own code: its facts are checked, never trusted.
    let media = check_build_paths(&meta).map_err(DeployError::Failed)?;
    match &media {
        MediaPlace::Elsewhere(root) if !root.is_empty() => run.progress.info(&format!(
            "MEDIA_ROOT is {root}: paas serves uploads only from /data/media (the app's volume), so files kept there are not served at MEDIA_URL; set MEDIA_ROOT to \"/data/media\" (or leave it unset) to have them served"
        )),
        _ => {}
    }
    let static_dir = ctx
        .config
        .data_dir
        .join("apps")
        .join(&app)
        .join("releases")
        .join(format!("v{version}"))
        .join("static");
    if let Some(root) = &meta.static_root {
        let _ = tokio::fs::remove_dir_all(&static_dir).await;
        tokio::fs::create_dir_all(&static_dir)
            .await
            .map_err(|e| DeployError::Failed(format!("cannot create the static dir: {e}")))?;
        run.static_dir = Some(static_dir.clone());
        // From the layer's folders the build step left on this host when
        // STATIC_ROOT lies in one (no container needed), else from the image.
        let copied = match static_in_kept(&kept, root) {
            Some((tar, top)) => {
                let dest = static_dir.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::File::open(&tar).and_then(|f| {
                        crate::docker::unpack_below(std::io::BufReader::new(f), Some(&top), &dest)
                    })
                })
                .await
                .map_err(|e| {
                    DeployError::Failed(format!("copying the static files was interrupted: {e}"))
                })?
                .map_err(|e| e.to_string())
            }
            None => engine
                .copy_from_image(&tag, root, &static_dir)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = copied {
            // An app without static files has no STATIC_ROOT dir: fine.
            tracing::info!("no static files copied: {e}");
        }
        let dir = static_dir.clone();
        tokio::task::spawn_blocking(move || resolve_links(&dir))
            .await
            .map_err(|e| DeployError::Failed(format!("checking the static files failed: {e}")))?
            .map_err(|e| DeployError::Failed(format!("checking the static files failed: {e}")))?;
    }
    tracing::debug!("code: static files copied");
    run.timed("code", t_code);
    ctx.store
        .update_release(run.release.id, Some(&tag), &meta, &vars, &run.timings)
        .map_err(store_failed)?;

    // ---- Releasing: migrate (and the Procfile's release command) ----
    release_phase(run, &tag, &vars, &procfile, pending).await?;
    Ok(Prepared {
        image: tag,
        meta,
        vars,
        config_of: None,
    })
}

/// The tar file of a kept folder holding `static_root`, and the folder
/// inside that archive that is `static_root` (`/app/static` in the folder
/// `/app` is `app/static`).
fn static_in_kept(
    kept: &[crate::docker::KeptFolder],
    static_root: &str,
) -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(static_root);
    kept.iter().find_map(|k| {
        let folder = Path::new(&k.folder);
        let rel = root.strip_prefix(folder).ok()?;
        let top = Path::new(folder.file_name()?).join(rel);
        Some((k.tar.clone(), top))
    })
}

/// Builds the dependency image `tag` from `deps` (a Dockerfile and the
/// requirement files, none of the code): pip's output condensed for the
/// pusher, and a failure said in words that name the way out.
async fn build_dependencies<E: Engine>(
    run: &mut Run<'_, E>,
    deps: &buildpack::DependencyBuild,
    tag: &str,
    workdir: &Path,
    python: &str,
) -> Result<(), DeployError> {
    let (ctx, engine) = (run.ctx, run.engine);
    run.progress.step(&format!(
        "Installing dependencies into {tag} (once for these requirements)"
    ));
    run.flush_log();
    let context = workdir.join("dependencies.tar");
    let (files, out) = (deps.files.clone(), context.clone());
    tokio::task::spawn_blocking(move || files_tar(files, &out))
        .await
        .map_err(|e| DeployError::Failed(format!("preparing the build failed: {e}")))?
        .map_err(|e| DeployError::Failed(format!("preparing the build failed: {e}")))?;
    {
        let progress = &mut run.progress;
        let (store, release_id) = (&ctx.store, run.release.id);
        let mut flushed = Instant::now();
        let mut condenser = build_log::Condenser::new();
        // Why it failed, if it does: the OOM killer, no compiler for a
        // package the buildpack did not know compiles, a package that failed to compile.
        let mut watch = build_log::FailureWatch::new();
        let mut on_line = |line: &str| {
            let line = line.trim_end();
            if !line.is_empty() {
                progress.log_only(line);
            }
            watch.line(line);
            for shown in condenser.line(line) {
                progress.pusher_only(shown);
            }
            // The dashboard streams the release log from the store: keep it
            // current during a long build, about once a second.
            if flushed.elapsed() >= Duration::from_secs(1) {
                flushed = Instant::now();
                append_log(store, release_id, progress);
            }
        };
        let request = || crate::docker::BuildRequest {
            context: crate::docker::BuildContext::File(context.clone()),
            dockerfile: ".paas/Dockerfile",
            tag,
            // One LABEL step, once per dependency set: prune finds the
            // image by it (and keeps those a kept release stands on).
            labels: vec![("paas.deps".to_string(), deps.key.clone())],
            network_mode: ctx.config.build_network.as_deref(),
            limits: crate::docker::BuildLimits {
                memory_bytes: Some(ctx.config.build_memory_mb as i64 * 1024 * 1024),
                nano_cpus: Some(nano_cpus(ctx.config.build_cpus)),
            },
        };
        let mut built = engine.build_image(request(), &mut on_line).await;
        if built.as_ref().is_err_and(lost_a_cached_layer) {
            // Another app's cleanup removed a cached layer this build stood
            // on (builds of the same dependencies share them): once more,
            // on what is there now.
            on_line(
                "A cached layer went away during the build (another app's cleanup): building again",
            );
            built = engine.build_image(request(), &mut on_line).await;
        }
        for shown in condenser.finish() {
            progress.pusher_only(shown);
        }
        let limit = ctx.config.build_memory_mb;
        let verdict = watch.verdict();
        built.map_err(|e| match (e, verdict) {
            (e @ crate::docker::DockerError::Unreachable { .. }, _) => engine_failed(e, "push again"),
            (e, v) if v == Some(build_log::FailedBuild::OutOfMemory) || out_of_memory(&e.to_string()) => DeployError::Failed(format!(
                "the image build ran out of memory (each build step may use {limit} MiB): raise build-memory-mb in paas.toml (e.g. build-memory-mb = {}) and push again, or install a wheel instead of compiling ({e})",
                (limit * 2).min(2047)
            )),
            (e, Some(build_log::FailedBuild::NoCompiler { package })) => DeployError::Failed(format!(
                "{} compiles C code and the build has no compiler for it: name the Debian packages it needs with `paas config:set PAAS_BUILD_PACKAGES=\"gcc libc6-dev\"` (plus the library's -dev package, and PAAS_RUNTIME_PACKAGES for its run-time library), pin a release of it with a wheel for Python {python}, or pin another Python; then push again ({e})",
                match package {
                    Some(p) => format!("the dependency {p}"),
                    None => "a dependency".to_string(),
                }
            )),
            (_, Some(build_log::FailedBuild::Compile { packages })) => {
                DeployError::Failed(build_log::failed_to_compile(&packages, python))
            }
            (e, _) => DeployError::Failed(format!(
                "the image build failed: {e}. Fix the cause shown above and push again"
            )),
        })?;
    }
    Ok(())
}

/// The release phase in one-off containers of `image`, after the build
/// step's release check (`check --deploy`, `migrate --check`): when
/// migrations are `pending`, a snapshot of the live data, then `migrate`;
/// then the Procfile's `release:` command. A code-only push with neither
/// starts no container here.
async fn release_phase<E: Engine>(
    run: &mut Run<'_, E>,
    image: &str,
    vars: &BTreeMap<String, String>,
    procfile: &crate::procfile::Procfile,
    pending: bool,
) -> Result<(), DeployError> {
    let (ctx, engine) = (run.ctx, run.engine);
    let app = run.app.name.clone();
    let version = run.release.version;
    let env = app_env(ctx, &run.app, version, vars);
    let tag = image.to_string();
    run.status(ReleaseStatus::Releasing);
    let t = Instant::now();
    let volume = ensure_volume(&ctx.config.data_dir, &app)
        .map_err(|e| DeployError::Failed(format!("cannot prepare the app's data volume: {e}")))?;
    let network = network_name(&app);
    let migrate = |args: &[&str]| ContainerSpec {
        name: None,
        image: tag.clone(),
        cmd: Some(
            ["python", "manage.py", "migrate"]
                .iter()
                .chain(args)
                .map(|s| s.to_string())
                .collect(),
        ),
        env: env.clone(),
        labels: labels(&app, version, Some("release")),
        binds: vec![format!("{}:/data", volume.display())],
        network: Some(network.clone()),
        restart_unless_stopped: false,
        ..confined_app(&ctx.config)
    };
    run.progress
        .step("Running migrations (manage.py migrate --noinput)");
    if !pending {
        run.progress.info("No migrations to apply.");
    } else {
        let has_live = ctx
            .store
            .live_release(&app)
            .map_err(store_failed)?
            .is_some();
        if has_live {
            run.progress
                .info("migrations to apply: taking a snapshot of the data first");
            match crate::backup::snapshot_before_migrate(ctx, &run.app, version).await {
                Ok(Some(m)) => run.progress.info(&format!(
                    "snapshot {} ({} bytes); `paas rollback --restore-db` brings it back",
                    m.id, m.size
                )),
                Ok(None) => run.progress.info("no database yet: nothing to snapshot"),
                Err(e) => {
                    return Err(DeployError::ReleasePhase(format!(
                        "the snapshot before migrating failed, so migrate did not run and the running release was not touched: {e}"
                    )))
                }
            }
        }
        run.flush_log();
        let code = {
            let progress = &mut run.progress;
            let mut on_line = |line: &str| progress.info(line.trim_end());
            engine
                .run_to_completion(&migrate(&["--noinput"]), RELEASE_TIMEOUT, &mut on_line)
                .await
                .map_err(|e| DeployError::Failed(format!("the release phase could not run: {e}")))?
        };
        if code != 0 {
            return Err(DeployError::ReleasePhase(format!(
                "migrate failed (exit code {code}); the running release was not touched. Fix the migration shown above and push again"
            )));
        }
    }
    if let Some(command) = procfile.processes.get("release") {
        run.progress.step(&format!(
            "Running the Procfile's release command: {command}"
        ));
        run.flush_log();
        let spec = ContainerSpec {
            cmd: Some(crate::procfile::shell_command(command)),
            ..migrate(&[])
        };
        let code = {
            let progress = &mut run.progress;
            let mut on_line = |line: &str| progress.info(line.trim_end());
            engine
                .run_to_completion(&spec, RELEASE_TIMEOUT, &mut on_line)
                .await
                .map_err(|e| {
                    DeployError::Failed(format!("the release command could not run: {e}"))
                })?
        };
        if code != 0 {
            return Err(DeployError::ReleasePhase(format!(
                "the Procfile's release command failed (exit code {code}); the running release was not touched. Fix the error shown above and push again"
            )));
        }
    }
    run.timed("release", t);
    Ok(())
}

/// The app's data volume and network, made when missing: every container
/// of the app that touches its data runs on them.
async fn app_place<E: Engine>(
    ctx: &Ctx,
    engine: &E,
    app: &str,
) -> Result<(PathBuf, String), DeployError> {
    let volume = ensure_volume(&ctx.config.data_dir, app)
        .map_err(|e| DeployError::Failed(format!("cannot prepare the app's data volume: {e}")))?;
    let network = network_name(app);
    engine
        .ensure_network(&network, &labels_app(app))
        .await
        .map_err(|e| DeployError::Failed(e.to_string()))?;
    Ok((volume, network))
}

/// Start → health gate → promote → swap → drain and retire: shared by every
/// kind of deploy. Everything that can fail comes before the route swap
/// (kamal-proxy's order: healthy, then install, then drain the old one),
/// so a failure leaves the old route, and the old release, serving.
async fn go_live<E: Engine>(run: &mut Run<'_, E>, p: Prepared) -> Result<(), DeployError> {
    let (ctx, engine) = (run.ctx, run.engine);
    let app = run.app.name.clone();
    let version = run.release.version;
    let check = health_check(&p.meta, &p.vars)?;
    let env = app_env(ctx, &run.app, version, &p.vars);
    let hosts = app_hosts(ctx, &run.app);
    let (volume, network) = app_place(ctx, engine, &app).await?;

    // ---- Starting ----
    run.status(ReleaseStatus::Starting);
    let t = Instant::now();
    run.progress.step("Starting web container");
    let procfile = crate::procfile::Procfile {
        processes: p.meta.processes.clone(),
    };
    let web = ContainerSpec {
        name: Some(format!(
            "paas-{app}-v{version}-web-{}",
            crate::auth::random_token(3).to_lowercase()
        )),
        image: p.image.clone(),
        // The Procfile's `web:` replaces the image's gunicorn command.
        cmd: procfile.command("web"),
        env,
        labels: labels(&app, version, Some("web")),
        binds: vec![format!("{}:/data", volume.display())],
        network: Some(network.clone()),
        restart_unless_stopped: true,
        ..confined_app(&ctx.config)
    };
    let id = engine
        .start_container(&web)
        .await
        .map_err(|e| DeployError::Failed(format!("starting the web container failed: {e}")))?;
    run.new_container = Some(id.clone());
    tracing::debug!("start: container started");
    let ip = engine
        .container_ip(&id, &network)
        .await
        .map_err(|e| DeployError::Failed(e.to_string()))?;
    let backend = std::net::SocketAddr::new(ip, APP_PORT);

    // ---- HealthChecking ----
    run.status(ReleaseStatus::HealthChecking);
    let probe_host = hosts[0].clone();
    run.progress.step(&format!(
        "Health check: GET {} with Host {probe_host}",
        check.path
    ));
    run.flush_log();
    let health = {
        let progress = &mut run.progress;
        health::wait_healthy_with(
            &check,
            &probe_host,
            || engine.probe(backend, &probe_host, &check.path, check.timeout),
            || container_alive(engine, &id),
            |msg| progress.info(msg),
        )
        .await
    };
    if let Err(e) = health {
        // Stopped first: under the restart policy a crashed app boots again
        // and its fresh start-up lines would push the error out of the tail.
        let _ = engine.stop(&id, Duration::from_secs(2)).await;
        let lines = engine.logs_tail(&id, 400).await.unwrap_or_default();
        let shown = telling_lines(&lines, 20);
        if !shown.is_empty() {
            run.progress.info("Last lines of the app's output:");
            for l in shown {
                run.progress.info(&format!("  {}", l.trim_end()));
            }
        }
        let todo = match e {
            health::HealthError::Died(_) => ". Fix the error in the app's output and push again",
            _ => "",
        };
        return Err(DeployError::Failed(format!(
            "the new release never became healthy: {e}{todo}"
        )));
    }
    // The Procfile's other processes: containers of this release beside
    // web, without a route. A failure here fails the deploy (its cleanup
    // removes every container labelled with this release).
    for (name, command) in procfile.extra() {
        run.progress
            .step(&format!("Starting {name} process: {command}"));
        let spec = ContainerSpec {
            name: Some(format!(
                "paas-{app}-v{version}-{name}-{}",
                crate::auth::random_token(3).to_lowercase()
            )),
            cmd: Some(crate::procfile::shell_command(command)),
            labels: labels(&app, version, Some(name)),
            ..web.clone()
        };
        engine.start_container(&spec).await.map_err(|e| {
            DeployError::Failed(format!(
                "starting the {name} process failed, so v{version} did not go live: {e}"
            ))
        })?;
    }
    run.timed("start", t);
    let healthy_at = Instant::now();

    // ---- Promote, then swap ----
    // The store first: it is the last step that can fail. A rollback's
    // config vars become the app's in the same transaction.
    ctx.store
        .update_release(run.release.id, None, &p.meta, &p.vars, &run.timings)
        .map_err(store_failed)?;
    ctx.store
        .promote(
            &run.app,
            run.release.id,
            p.config_of.is_some().then_some(&p.vars),
        )
        .map_err(store_failed)?;
    run.new_container = None; // now the live one; never clean it up as failed
    run.image = None;
    let static_dir = run.static_dir.take();
    // The route swap cannot fail: it swaps one pointer in memory (under
    // the table's writer lock), so nothing below can leave the store and
    // the proxy disagreeing.
    let route = Arc::new(make_route(&app, backend, &p.meta, static_dir, &volume));
    let old = ctx.routes.set(&hosts, route.clone());
    if let Some(v) = p.config_of {
        run.progress
            .info(&format!("config vars restored to those of v{v}"));
    }
    let (https_url, cert_lines) = crate::tls::push_report(ctx, &hosts).await;
    let url = https_url.unwrap_or_else(|| match ctx.config.http.port() {
        80 => format!("http://{}/", hosts[0]),
        port => format!("http://{}:{port}/", hosts[0]),
    });
    run.progress.step(&format!("v{version} is live at {url}"));
    for line in cert_lines {
        run.progress.info(&line);
    }
    run.flush_log();

    // ---- Retire the previous release in the background ----
    let engine = engine.clone();
    let drain = ctx.config.drain_timeout;
    let data_dir = ctx.config.data_dir.clone();
    let store_releases = ctx.store.releases(&app).unwrap_or_default();
    tokio::spawn(async move {
        // Workers take no requests: the old ones stop now, not after the drain.
        stop_older_workers(&engine, &app, version).await;
        for r in old {
            r.drain(drain).await;
        }
        retire_others(&engine, &app, version, &data_dir, &store_releases).await;
    });
    // How long the first request waited for the new release (benchmarks read it).
    tokio::spawn(
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Some(at) = route.first_answer() {
                    let ms = at.saturating_duration_since(healthy_at).as_secs_f64() * 1000.0;
                    tracing::info!(ms, "first answer from the new release after it was healthy");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        .in_current_span(),
    );
    Ok(())
}

/// Stop the Procfile process containers (not web, not one-offs) of
/// releases older than `version`: they take no requests, so they need no drain.
async fn stop_older_workers<E: Engine>(engine: &E, app: &str, version: i64) {
    let Ok(list) = engine.list_containers(&[("paas.app", app)]).await else {
        return;
    };
    for c in list {
        let process = c.labels.get("paas.process").map(String::as_str);
        let older = c
            .labels
            .get("paas.release")
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v < version);
        if older && !matches!(process, None | Some("web" | "run" | "data" | "release")) {
            if let Err(e) = engine.stop_and_remove(&c.id, Duration::from_secs(10)).await {
                tracing::warn!("retiring container {}: {e}", c.id);
            }
        }
    }
}

/// Stop every process container (web, workers) of `app` from a release
/// older than `version` (never one-off `run` or data jobs), prune old
/// images and static dirs beyond the last [`KEEP_IMAGES`].
async fn retire_others<E: Engine>(
    engine: &E,
    app: &str,
    version: i64,
    data_dir: &Path,
    releases: &[Release],
) {
    // Only older releases: a newer deploy (a restart right after this one)
    // may be starting its container while this drain ran.
    let older = |c: &crate::docker::ContainerInfo| {
        c.labels
            .get("paas.release")
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v < version)
    };
    let one_off = |c: &crate::docker::ContainerInfo| {
        matches!(
            c.labels.get("paas.process").map(String::as_str),
            None | Some("run") | Some("data")
        )
    };
    let mut in_use: Vec<String> = Vec::new();
    match engine.list_containers(&[("paas.app", app)]).await {
        Ok(list) => {
            for c in list {
                if !older(&c) || one_off(&c) {
                    in_use.push(c.image.clone());
                    continue;
                }
                if let Err(e) = engine.stop_and_remove(&c.id, Duration::from_secs(10)).await {
                    tracing::warn!("retiring container {}: {e}", c.id);
                }
            }
        }
        Err(e) => tracing::warn!("listing containers to retire: {e}"),
    }
    // Keep the images of the newest KEEP_IMAGES releases that went live
    // (rollback). A rollback release shares its image with an older one:
    // an image is removed only when no kept release runs it.
    let kept = crate::prune::kept_images(releases, Some(version));
    for r in releases {
        if kept.iter().any(|k| Some(k.as_str()) == r.image.as_deref())
            || in_use
                .iter()
                .any(|i| Some(i.as_str()) == r.image.as_deref())
        {
            continue;
        }
        if let Some(image) = &r.image {
            let _ = engine.remove_image(image).await;
        }
        let dir = data_dir
            .join("apps")
            .join(app)
            .join("releases")
            .join(format!("v{}", r.version));
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
}

/// Remove what a failed deploy made: its containers (the web one and any
/// release-phase one that survived), the image it built, its static files.
async fn cleanup_failed<E: Engine>(run: &mut Run<'_, E>) {
    let docker = run.engine;
    if let Some(id) = run.new_container.take() {
        let _ = docker.stop_and_remove(&id, Duration::from_secs(5)).await;
    }
    // Release-phase containers of this version, if any survived.
    if let Ok(list) = docker
        .list_containers(&[
            ("paas.app", run.app.name.as_str()),
            ("paas.release", run.release.version.to_string().as_str()),
        ])
        .await
    {
        for c in list {
            let _ = docker.stop_and_remove(&c.id, Duration::from_secs(5)).await;
        }
    }
    if let Some(image) = run.image.take() {
        let _ = docker.remove_image(&image).await;
    }
    if let Some(dir) = run.static_dir.take() {
        if let Some(parent) = dir.parent() {
            let _ = tokio::fs::remove_dir_all(parent).await;
        }
    }
}

/// What to show of a failed container's output: the last Python traceback
/// through its exception line when there is one (that is the reason), else
/// the last `n` lines. gunicorn's own "Worker failed to boot" traceback only
/// repeats that a worker died, so the worker's traceback before it wins.
fn telling_lines(lines: &[String], n: usize) -> Vec<String> {
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("Traceback (most recent call last)"))
        .map(|(i, _)| i)
        .collect();
    let traceback = |start: usize| {
        let mut end = start + 1;
        while end < lines.len() {
            let l = lines[end].trim_end();
            end += 1;
            // The exception line is the first unindented one after the frames.
            if !l.is_empty() && !l.starts_with(' ') && !l.starts_with('\t') {
                break;
            }
        }
        &lines[start..end]
    };
    let chosen = starts
        .iter()
        .rev()
        .map(|&s| traceback(s))
        .find(|t| {
            !t.last()
                .is_some_and(|l| l.contains("gunicorn.errors.HaltServer"))
        })
        .or_else(|| starts.last().map(|&s| traceback(s)));
    let Some(body) = chosen else {
        return lines[lines.len().saturating_sub(n)..].to_vec();
    };
    // Long tracebacks: the outermost frames matter least.
    if body.len() > 2 * n {
        let mut v = vec![body[0].clone(), "  …".to_string()];
        v.extend(body[body.len() - (2 * n - 2)..].iter().cloned());
        return v;
    }
    body.to_vec()
}

/// Between health probes: is the new web container still up, and was it
/// never restarted? The reason when not.
async fn container_alive<E: Engine>(engine: &E, id: &str) -> Result<(), String> {
    match engine.container_state(id).await {
        // The restart policy hides a crash at boot: a container that
        // exited and came back is not healthy, however it answers.
        Ok(ContainerState::Running) => match engine.restart_count(id).await {
            Ok(0) => Ok(()),
            Ok(_) => Err("the web container crashed while starting (the engine restarted it); see its output above".into()),
            Err(e) => Err(e.to_string()),
        },
        Ok(ContainerState::Created) => Ok(()),
        Ok(ContainerState::Exited { code }) => Err(format!(
            "the web container exited with code {code} while starting; see its output above"
        )),
        Ok(ContainerState::Restarting) => {
            Err("the web container crashed while starting (the engine is restarting it); see its output above".into())
        }
        Ok(ContainerState::Missing) => Err("the web container disappeared while starting".into()),
        Ok(ContainerState::Other(s)) => Err(format!("the web container is {s} while starting")),
        Err(e) => Err(e.to_string()),
    }
}

/// A release's health check: the `[healthcheck]` table of its repository's
/// paas.toml (kept in the release's facts, so a rollback probes as the
/// release did) under its config vars.
fn health_check(
    meta: &ReleaseMeta,
    vars: &BTreeMap<String, String>,
) -> Result<HealthCheck, DeployError> {
    let table = meta.healthcheck.clone().unwrap_or_default();
    health::settings(&table, vars).map_err(DeployError::Failed)
}

/// The route the proxy serves for a release.
pub fn make_route(
    app: &str,
    backend: std::net::SocketAddr,
    meta: &ReleaseMeta,
    static_dir: Option<PathBuf>,
    volume: &Path,
) -> Route {
    let prefix = |p: Option<String>| {
        p.filter(|p| p.starts_with('/') && p.len() > 1 && plain_url_path(p))
            .map(|mut p| {
                if !p.ends_with('/') {
                    p.push('/');
                }
                p
            })
    };
    // Media is always the volume's own media folder, whatever the build said.
    let media_dir = (media_place(meta.media_root.as_deref()) == Ok(MediaPlace::Volume))
        .then(|| volume.join("media"));
    let media_prefix = prefix(meta.media_url.clone()).filter(|_| media_dir.is_some());
    Route::new(
        app.to_string(),
        backend,
        prefix(meta.static_url.clone()).filter(|_| static_dir.is_some()),
        static_dir,
        media_prefix.clone(),
        media_dir.filter(|_| media_prefix.is_some()),
    )
}

/// Where a release keeps its uploads, from the build's `media_root`.
#[derive(Debug, PartialEq, Eq)]
pub enum MediaPlace {
    /// `/data/media`: served by the proxy from `<volume>/media`.
    Volume,
    /// No MEDIA_ROOT, or one elsewhere: nothing is served as media.
    Elsewhere(String),
}

const MEDIA_FIX: &str = "set MEDIA_ROOT to \"/data/media\" in your settings (or leave it unset, paas then uses /data/media) and push again";

/// Sorts the build's `media_root`; a path that climbs (`..`) or that would
/// publish the whole volume (`/data`, where db.sqlite3 lives) is refused
/// with a sentence saying what to set.
pub fn media_place(root: Option<&str>) -> Result<MediaPlace, String> {
    let Some(root) = root else {
        return Ok(MediaPlace::Elsewhere(String::new()));
    };
    let path = Path::new(root);
    let names: Option<Vec<&str>> = path
        .components()
        .map(|c| match c {
            std::path::Component::RootDir => Some(""),
            std::path::Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    match names.as_deref() {
        Some(["", "data"]) => Err(format!(
            "MEDIA_ROOT is /data, the app's whole volume, so its database (/data/db.sqlite3) would be published at MEDIA_URL: {MEDIA_FIX}"
        )),
        Some(["", "data", "media"]) => Ok(MediaPlace::Volume),
        Some(["", ..]) => Ok(MediaPlace::Elsewhere(root.to_string())),
        _ => Err(format!(
            "the build reported MEDIA_ROOT as {root:?}, which is not a plain absolute path: {MEDIA_FIX}"
        )),
    }
}

/// Checks the paths a build reported in `/paas/meta.json` (written while the
/// app's code ran): MEDIA_ROOT as [`media_place`] does, STATIC_ROOT must be
/// a plain absolute path.
pub fn check_build_paths(meta: &ReleaseMeta) -> Result<MediaPlace, String> {
    if let Some(root) = meta.static_root.as_deref() {
        let plain = root.starts_with('/')
            && Path::new(root).components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
        if !plain {
            return Err(format!(
                "the build reported STATIC_ROOT as {root:?}, which is not a plain absolute path: set STATIC_ROOT to an absolute folder inside the project (or leave it unset) and push again"
            ));
        }
    }
    media_place(meta.media_root.as_deref())
}

/// A URL prefix made of plain segments (no `.`/`..`, no percent-escapes).
fn plain_url_path(p: &str) -> bool {
    p.split('/').filter(|s| !s.is_empty()).all(|s| {
        s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~+@".contains(&b))
    })
}

/// Makes a release's extracted static tree link-free: a link to a file
/// inside the tree becomes a hard link to it (the proxy follows no
/// symlink), any other link is removed. The tree is the daemon's own
/// (root-only), so nothing changes under this walk.
fn resolve_links(root: &Path) -> std::io::Result<()> {
    if !root.is_dir() {
        return Ok(());
    }
    let top = root.canonicalize()?;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let kind = e.file_type()?;
            if kind.is_dir() {
                dirs.push(e.path());
            } else if kind.is_symlink() {
                let link = e.path();
                let target = link.canonicalize().ok().filter(|t| {
                    t.starts_with(&top) && std::fs::symlink_metadata(t).is_ok_and(|m| m.is_file())
                });
                std::fs::remove_file(&link)?;
                if let Some(target) = target {
                    if std::fs::hard_link(&target, &link).is_err() {
                        std::fs::copy(&target, &link)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The environment of every container of an app (PRODUCT.md), user's vars last so they win.
pub fn app_env(
    ctx: &Ctx,
    app: &App,
    version: i64,
    vars: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let hosts = app_hosts(ctx, app).join(",");
    let workers = (ctx.config.memory_mb / 256).clamp(1, 8);
    let mut env: Vec<(String, String)> = vec![
        ("PORT".into(), APP_PORT.to_string()),
        ("DATABASE_URL".into(), "sqlite:////data/db.sqlite3".into()),
        ("SECRET_KEY".into(), app.secret_key.clone()),
        ("DJANGO_SECRET_KEY".into(), app.secret_key.clone()),
        ("ALLOWED_HOSTS".into(), hosts.clone()),
        ("DJANGO_ALLOWED_HOSTS".into(), hosts),
        ("WEB_CONCURRENCY".into(), workers.to_string()),
        // Only the proxy (and the app's own containers) reach the app's network.
        ("FORWARDED_ALLOW_IPS".into(), "*".into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("PAAS_APP".into(), app.name.clone()),
        ("PAAS_RELEASE".into(), format!("v{version}")),
    ];
    if ctx.config.https.is_some() {
        // The settings shim makes the cookies Secure (tls.rs keeps the certificates).
        env.push(("PAAS_HTTPS".into(), "1".into()));
    }
    for (k, v) in vars {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// The hosts an app answers to: `<app>.<domain>` first, then custom domains.
pub fn app_hosts(ctx: &Ctx, app: &App) -> Vec<String> {
    let mut hosts = vec![ctx.config.app_host(&app.name)];
    hosts.extend(ctx.store.domains(app).unwrap_or_default());
    hosts
}

/// The app's persistent volume on the host, mounted at /data (database, media).
///
/// The app's code writes inside it, so `media` may have become a symlink:
/// anything that is not a real folder is refused with a sentence saying
/// what to do, and ownership is changed with `lchown`, which never follows
/// a link (a link swapped in after the check gets a new owner itself,
/// nothing else does).
pub fn ensure_volume(data_dir: &Path, app: &str) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("apps").join(app).join("data");
    let media = dir.join("media");
    for (d, all) in [(&dir, true), (&media, false)] {
        if !crate::beneath::real_dir(d)? {
            let made = if all {
                std::fs::create_dir_all(d)
            } else {
                std::fs::create_dir(d)
            };
            match made {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                _ => {
                    crate::beneath::real_dir(d)?;
                }
            }
        }
        std::os::unix::fs::lchown(d, Some(APP_UID), Some(APP_UID))?;
    }
    Ok(dir)
}

/// Writes the build step's upload to `out`, extracted at `/` in its
/// container: the exported tree under `app/` owned by the app's user (its
/// symlinks as symlinks), the buildpack's files (`paas/…`), and the app's
/// environment as `tmp/paas-build-env` (0600, read and removed by the step
/// before the app's code runs). Streamed to disk, never whole in memory.
fn code_upload(
    dir: &Path,
    symlinks: &[git::Symlink],
    files: Vec<(String, Vec<u8>)>,
    env: &[(String, String)],
    out: &Path,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut b = tar::Builder::new(file);
    b.follow_symlinks(false);
    // The daemon's umask 077 left the exported tree 0600/0700 on disk; the
    // image needs it readable: folders and executables 0755, other files
    // 0644 (what git's modes say), owner the app's user, a fixed time.
    let owned = |h: &mut tar::Header| {
        h.set_uid(APP_UID as u64);
        h.set_gid(APP_UID as u64);
        h.set_mtime(0);
    };
    let mut stack = vec![(dir.to_path_buf(), PathBuf::from("app"))];
    while let Some((on_disk, in_tar)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&on_disk)?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        owned(&mut h);
        if meta.is_dir() {
            h.set_size(0);
            b.append_data(&mut h, &in_tar, std::io::empty())?;
            let mut names: Vec<_> = std::fs::read_dir(&on_disk)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for name in names.into_iter().rev() {
                stack.push((on_disk.join(&name), in_tar.join(&name)));
            }
        } else if meta.is_file() {
            b.append_data(&mut h, &in_tar, std::fs::File::open(&on_disk)?)?;
        }
        // export_tree writes no symlink to disk: they come from the list.
    }
    for link in symlinks {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        owned(&mut h);
        let target = Path::new(std::ffi::OsStr::from_bytes(&link.target));
        b.append_link(&mut h, Path::new("app").join(&link.path), target)?;
    }
    let mut dir_header = root_header(0, 0o755);
    dir_header.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut dir_header, "paas", std::io::empty())?;
    for (path, bytes) in files {
        let mut h = root_header(bytes.len(), 0o644);
        if path.starts_with("app/") {
            owned(&mut h);
        }
        b.append_data(&mut h, &path, bytes.as_slice())?;
    }
    let mut text = String::new();
    for (k, v) in env {
        // Single quotes keep every byte; a quote inside is closed, escaped, reopened.
        text.push_str(&format!("{k}='{}'\n", v.replace('\'', "'\\''")));
    }
    let mut h = root_header(text.len(), 0o600);
    b.append_data(&mut h, "tmp/paas-build-env", text.as_bytes())?;
    b.into_inner()?.flush()
}

/// A regular file's tar header: `size` bytes, `mode`, owned by root, time 0.
fn root_header(size: usize, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Writes `files` (path in the archive, bytes) as a tar to `out`.
fn files_tar(files: Vec<(String, Vec<u8>)>, out: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut b = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(out)?));
    for (path, bytes) in files {
        b.append_data(
            &mut root_header(bytes.len(), 0o644),
            &path,
            bytes.as_slice(),
        )?;
    }
    b.into_inner()?.flush()
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fail every deploy still in flight with `reason` and remove what it
/// made: its containers, the image it built (never an image it reused),
/// its static files and build dir. The live release is not touched.
pub async fn fail_in_flight(ctx: &Ctx, reason: &str) {
    let failed = mark_in_flight_failed(ctx, reason);
    remove_leftovers(ctx, &ctx.docker, &failed).await;
}

/// Record every deploy still in flight as failed with `reason` (store only,
/// fast); returns them so their engine objects can be removed.
fn mark_in_flight_failed(ctx: &Ctx, reason: &str) -> Vec<Release> {
    let list = match ctx.store.in_flight_releases() {
        Ok(list) => list,
        Err(e) => {
            tracing::error!("listing deploys in flight: {e}");
            return Vec::new();
        }
    };
    for r in &list {
        tracing::warn!(app = %r.app, release = r.version, "failing an interrupted deploy");
        if let Err(e) = ctx.store.fail_release(r.id, reason) {
            tracing::error!("recording failure: {e}");
        }
        let _ = ctx
            .store
            .append_log(r.id, &format!("-----> Deploy failed: {reason}\n"));
    }
    list
}

/// Remove what failed deploys made: their containers, the image each built
/// (never an image it reused), their static files and build dirs.
async fn remove_leftovers<E: Engine>(ctx: &Ctx, engine: &E, failed: &[Release]) {
    for r in failed {
        // Files first: no engine round trips (or stop grace) in front of them.
        let _ =
            tokio::fs::remove_dir_all(layout::release_dir(&ctx.config.data_dir, &r.app, r.version))
                .await;
        let _ = tokio::fs::remove_dir_all(
            ctx.config
                .data_dir
                .join("tmp")
                .join(format!("{}-v{}", r.app, r.version)),
        )
        .await;
        let v = r.version.to_string();
        if let Ok(cs) = engine
            .list_containers(&[("paas.app", r.app.as_str()), ("paas.release", v.as_str())])
            .await
        {
            for c in cs {
                let _ = engine.stop_and_remove(&c.id, Duration::from_secs(5)).await;
            }
        }
        // Only a tag this release built; a rollback's image belongs to an older release.
        let _ = engine.remove_image(&built_tag(&r.app, r.version)).await;
    }
}

/// On boot, before the listeners accept anything: rebuild the route table
/// from the store and the engine's labelled containers (so the sites answer
/// at once), record the deploys a killed daemon left in flight as failed,
/// and note the web containers of releases that are no longer live (a drain
/// cut short). Removing those objects takes seconds (containers get a stop
/// grace), so it runs in the background and does not hold the sites back;
/// what to remove is fixed here, so a deploy started meanwhile is safe.
pub async fn reconcile(ctx: &Arc<Ctx>) {
    reconcile_on(ctx, ctx.docker.clone()).await
}

/// [`reconcile`] on `engine`.
async fn reconcile_on<E: Engine>(ctx: &Arc<Ctx>, engine: E) {
    let apps = ctx.store.apps().unwrap_or_default();
    let mut stale = Vec::new();
    for app in &apps {
        let Ok(Some(live)) = ctx.store.live_release(&app.name) else {
            continue;
        };
        let v = live.version.to_string();
        let all = engine
            .list_containers(&[("paas.app", app.name.as_str())])
            .await
            .unwrap_or_default();
        // The live release's web and Procfile processes stay; everything
        // else of the app is a leftover: older releases' processes, and
        // one-offs (release phase, `paas run`, backups) whose daemon died.
        // Listed before any deploy can start, so none of these is a new one.
        let (keep, other): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| {
            let process = c.labels.get("paas.process").map(String::as_str);
            c.labels.get("paas.release") == Some(&v)
                && !matches!(process, None | Some("release" | "run" | "data"))
        });
        stale.extend(other.into_iter().map(|c| c.id));
        let live_web: Vec<_> = keep
            .into_iter()
            .filter(|c| c.labels.get("paas.process").map(String::as_str) == Some("web"))
            .collect();
        let Some(c) = live_web.first() else {
            tracing::warn!(app = %app.name, "live release v{v} has no container; `paas restart --app {}` starts one", app.name);
            continue;
        };
        let Ok(ip) = engine.container_ip(&c.id, &network_name(&app.name)).await else {
            continue;
        };
        let static_dir =
            layout::release_dir(&ctx.config.data_dir, &app.name, live.version).join("static");
        let volume = ctx
            .config
            .data_dir
            .join("apps")
            .join(&app.name)
            .join("data");
        let route = make_route(
            &app.name,
            std::net::SocketAddr::new(ip, APP_PORT),
            &live.meta,
            static_dir.exists().then_some(static_dir),
            &volume,
        );
        ctx.routes.set(&app_hosts(ctx, app), Arc::new(route));
        tracing::info!(app = %app.name, release = live.version, "route restored");
    }
    let failed = mark_in_flight_failed(
        ctx,
        "paas stopped during this deploy; the previous release kept serving. Push (or run the command) again",
    );
    let ctx = ctx.clone();
    tokio::spawn(async move {
        remove_leftovers(&ctx, &engine, &failed).await;
        for id in stale {
            let _ = engine.stop_and_remove(&id, Duration::from_secs(5)).await;
        }
        // A request the killed daemon had sent (create a container, tag an
        // image) can complete in the engine after the first pass: sweep again.
        for pause in [2, 10] {
            if failed.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(pause)).await;
            remove_leftovers(&ctx, &engine, &failed).await;
        }
    });
}

#[cfg(test)]
mod path_tests {
    use crate::store::ReleaseMeta;

    /// A tree exported under the daemon's umask 077 (0700 folders, 0600
    /// files) reaches the image readable, owned by the app's user, under
    /// /app; the config vars go to a 0600 file the build step removes.
    #[test]
    fn the_code_upload_is_the_apps_whatever_the_umask_left() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("notes")).unwrap();
        let set = |p: &std::path::Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        std::fs::write(tree.join("manage.py"), "print()").unwrap();
        std::fs::write(tree.join("run.sh"), "true").unwrap();
        set(&tree.join("manage.py"), 0o600);
        set(&tree.join("run.sh"), 0o700);
        set(&tree.join("notes"), 0o700);
        let out = tmp.path().join("code.tar");
        let link = crate::git::Symlink {
            path: "notes/latest".into(),
            target: b"../manage.py".to_vec(),
        };
        let env = [("SECRET_KEY".to_string(), "it's \"x\" $HOME".to_string())];
        super::code_upload(
            &tree,
            &[link],
            vec![("paas/x.sh".into(), b"x".to_vec())],
            &env,
            &out,
        )
        .unwrap();
        let mut seen = std::collections::BTreeMap::new();
        let mut env_file = String::new();
        let mut archive = tar::Archive::new(std::fs::File::open(&out).unwrap());
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let h = e.header();
            seen.insert(path.clone(), (h.mode().unwrap(), h.uid().unwrap()));
            if path == "tmp/paas-build-env" {
                std::io::Read::read_to_string(&mut e, &mut env_file).unwrap();
            }
        }
        assert_eq!(seen["app/manage.py"], (0o644, 10001), "{seen:?}");
        assert_eq!(seen["app/run.sh"], (0o755, 10001), "{seen:?}");
        assert_eq!(seen["app/notes"], (0o755, 10001), "{seen:?}");
        assert_eq!(seen["app/notes/latest"].1, 10001, "{seen:?}");
        assert_eq!(seen["paas/x.sh"], (0o644, 0), "{seen:?}");
        assert_eq!(seen["tmp/paas-build-env"], (0o600, 0), "{seen:?}");
        // The value comes back byte for byte from a POSIX shell.
        let sh = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{env_file}printf %s \"$SECRET_KEY\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&sh.stdout), "it's \"x\" $HOME");
    }

    #[test]
    fn build_paths_from_the_image_are_checked() {
        use super::{check_build_paths, media_place, MediaPlace};
        let meta = |static_root: &str, media_root: Option<&str>| ReleaseMeta {
            static_root: Some(static_root.into()),
            media_root: media_root.map(String::from),
            ..Default::default()
        };
        assert_eq!(media_place(Some("/data/media")), Ok(MediaPlace::Volume));
        assert_eq!(media_place(Some("/data/media/")), Ok(MediaPlace::Volume));
        assert_eq!(
            media_place(Some("/srv/uploads")),
            Ok(MediaPlace::Elsewhere("/srv/uploads".into()))
        );
        let e = media_place(Some("/data")).unwrap_err();
        assert!(
            e.contains("MEDIA_ROOT is /data") && e.contains("set MEDIA_ROOT to"),
            "{e}"
        );
        assert!(media_place(Some("/data/")).is_err());
        for bad in ["/data/../../..", "/data/media/../..", "data/media", ""] {
            let e = media_place(Some(bad)).unwrap_err();
            assert!(e.contains("not a plain absolute path"), "{bad}: {e}");
        }
        assert!(check_build_paths(&meta("/app/../etc", None)).is_err());
        assert_eq!(
            check_build_paths(&meta("/app/staticfiles", Some("/data/media"))),
            Ok(MediaPlace::Volume)
        );
    }

    #[test]
    fn static_files_come_from_the_kept_folder_that_holds_static_root() {
        use super::static_in_kept;
        use std::path::PathBuf;
        let kept = |f: &str, t: &str| crate::docker::KeptFolder {
            folder: f.into(),
            tar: PathBuf::from(t),
        };
        let kept = [kept("/paas", "/s/keep0.tar"), kept("/app", "/s/keep1.tar")];
        assert_eq!(
            static_in_kept(&kept, "/app/static"),
            Some((PathBuf::from("/s/keep1.tar"), PathBuf::from("app/static")))
        );
        assert_eq!(
            static_in_kept(&kept, "/app"),
            Some((PathBuf::from("/s/keep1.tar"), PathBuf::from("app")))
        );
        // Not below a kept folder (a sibling with a shared prefix neither):
        // copied from the image instead.
        assert_eq!(static_in_kept(&kept, "/srv/static"), None);
        assert_eq!(static_in_kept(&kept, "/application/static"), None);
        assert_eq!(static_in_kept(&[], "/app/static"), None);
    }

    #[test]
    fn a_media_root_that_climbs_is_never_served() {
        let volume = std::path::Path::new("/v");
        let backend = "127.0.0.1:1".parse().unwrap();
        for root in ["/data/../../..", "/data", "/data/x/../../etc"] {
            let meta = ReleaseMeta {
                media_url: Some("/media/".into()),
                media_root: Some(root.into()),
                ..Default::default()
            };
            let route = super::make_route("a", backend, &meta, None, volume);
            assert_eq!(route.media_root(), None, "{root}");
        }
        let meta = ReleaseMeta {
            media_url: Some("/media/".into()),
            media_root: Some("/data/media".into()),
            ..Default::default()
        };
        let route = super::make_route("a", backend, &meta, None, volume);
        assert_eq!(route.media_root(), Some(std::path::Path::new("/v/media")));
    }

    #[test]
    fn ensure_volume_refuses_a_linked_media_folder_and_leaves_its_target_alone() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        std::fs::create_dir(&host).unwrap();
        let before = std::fs::metadata(&host).unwrap();
        let dir = super::ensure_volume(t.path(), "a").unwrap();
        std::fs::remove_dir(dir.join("media")).unwrap();
        std::os::unix::fs::symlink(&host, dir.join("media")).unwrap();
        let e = super::ensure_volume(t.path(), "a").unwrap_err().to_string();
        assert!(
            e.contains("is a symbolic link where paas expects a folder"),
            "{e}"
        );
        let after = std::fs::metadata(&host).unwrap();
        assert_eq!((before.uid(), before.gid()), (after.uid(), after.gid()));
    }
}
