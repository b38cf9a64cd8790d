//! Scheduled jobs: the `[cron.NAME]` tables of the live release's
//! `paas.toml`, each run as a one-off container of that release, like
//! `paas run` (same image, environment, volume, network and confinement).
//!
//! The jobs are the live release's: a rollback brings back the jobs that
//! release had. At most one run of a job at a time: a run that falls due
//! while the previous one still runs is skipped, and a record says so. A
//! run is killed (its container removed) at its timeout. The last
//! [`KEEP_RUNS`] runs of each job are kept as small JSON files under
//! `apps/<app>/cron/<job>/`, each with the tail of its output; a failed run
//! is logged at error level and shows in `paas cron` and on the dashboard.

use crate::cron_table::{next_after, parse_schedule, time_zone, CronJob};
use crate::ctx::Ctx;
use crate::http_error::{find_app, internal, ApiError};
use crate::store::{App, Release};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Runs kept per job (older records are deleted).
pub const KEEP_RUNS: usize = 20;
/// Bytes of a run's output kept (its end: where the error usually is).
pub const KEEP_OUTPUT: usize = 16 * 1024;
/// How often the clock looks for due jobs.
const TICK: Duration = Duration::from_secs(1);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit code 0.
    Ok,
    /// A non-zero exit code, or the container could not run.
    Failed,
    /// Killed at its timeout.
    TimedOut,
    /// Not started: the previous run was still going.
    Skipped,
}

/// One run of a job (or a skipped one), as kept on disk and shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The job's name.
    pub job: String,
    /// The release whose image ran it.
    pub release: i64,
    /// When the schedule said it was due: Unix milliseconds.
    pub due_at_ms: i64,
    /// When it started (when it was due, if skipped): Unix milliseconds.
    pub started_at_ms: i64,
    /// How long it ran.
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// The command's exit code, when it exited.
    pub exit_code: Option<i64>,
    /// What paas has to say about it (why it failed or was skipped).
    pub message: Option<String>,
    /// The end of its output (at most [`KEEP_OUTPUT`] bytes).
    pub output: String,
}

/// Where a job's run records live.
fn runs_dir(data_dir: &std::path::Path, app: &str, job: &str) -> PathBuf {
    crate::layout::cron_dir(data_dir, app).join(job)
}

/// Keeps `rec` and deletes the oldest records beyond [`KEEP_RUNS`].
pub fn save_run(data_dir: &std::path::Path, app: &str, rec: &RunRecord) -> std::io::Result<()> {
    let dir = runs_dir(data_dir, app, &rec.job);
    std::fs::create_dir_all(&dir)?;
    // Zero-padded milliseconds: names sort as times do.
    let name = format!("{:015}-{}.json", rec.started_at_ms, rec.release);
    let json = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, dir.join(&name))?;
    let mut names = record_names(&dir);
    while names.len() > KEEP_RUNS {
        let oldest = names.remove(0);
        let _ = std::fs::remove_file(dir.join(oldest));
    }
    Ok(())
}

fn record_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A job's kept runs, newest first.
pub fn runs(data_dir: &std::path::Path, app: &str, job: &str) -> Vec<RunRecord> {
    let dir = runs_dir(data_dir, app, job);
    let mut out: Vec<RunRecord> = record_names(&dir)
        .into_iter()
        .filter_map(|n| {
            let bytes = std::fs::read(dir.join(n)).ok()?;
            serde_json::from_slice(&bytes).ok()
        })
        .collect();
    out.reverse();
    out
}

/// Appends `line` to `out`, keeping only its last [`KEEP_OUTPUT`] bytes.
fn keep_tail(out: &mut String, line: &str) {
    out.push_str(line.trim_end_matches(['\r', '\n']));
    out.push('\n');
    if out.len() > KEEP_OUTPUT {
        let mut cut = out.len() - KEEP_OUTPUT;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out.drain(..cut);
    }
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

// ---------------------------------------------------------------- the clock

/// When a job runs next, as the clock planned it.
struct Planned {
    /// The schedule and time zone it was planned with: a change replans.
    schedule: String,
    tz: String,
    next: Timestamp,
}

/// The clock's plan: (app, job) → next run. Jobs of a new release, or
/// whose schedule or time zone changed, are planned from the moment the
/// clock first sees them (never run at once for a time already past).
#[derive(Default)]
pub struct Clock {
    planned: HashMap<(String, String), Planned>,
    /// Apps whose TZ var was refused, and the sentence logged for it
    /// (logged once per change, not every tick).
    bad_tz: HashMap<String, String>,
}

/// Starts the clock: every second, runs the jobs that are due.
pub fn spawn_cron(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut clock = Clock::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            clock.tick(&ctx, Timestamp::now());
        }
    })
}

impl Clock {
    /// One look at the jobs at time `now`: starts the runs that are due
    /// (each in its own task) and returns how many fell due.
    pub fn tick(&mut self, ctx: &Arc<Ctx>, now: Timestamp) -> usize {
        let apps = match ctx.store.apps() {
            Ok(apps) => apps,
            Err(e) => {
                tracing::error!("cron: cannot list the apps: {e}");
                return 0;
            }
        };
        let mut seen = Vec::new();
        let mut due = 0;
        for app in apps {
            let live = match ctx.store.live_release(&app.name) {
                Ok(Some(r)) if r.image.is_some() && !r.meta.cron.is_empty() => r,
                _ => continue,
            };
            let vars = ctx.store.config_vars(&app).unwrap_or_default();
            let tz = match time_zone(&vars) {
                Ok(tz) => {
                    self.bad_tz.remove(&app.name);
                    tz
                }
                Err(why) => {
                    if self.bad_tz.get(&app.name) != Some(&why) {
                        tracing::error!(app = %app.name, "cron jobs do not run: {why}");
                        self.bad_tz.insert(app.name.clone(), why);
                    }
                    continue;
                }
            };
            let tz_name = vars.get("TZ").cloned().unwrap_or_default();
            for (name, job) in &live.meta.cron {
                let key = (app.name.clone(), name.clone());
                seen.push(key.clone());
                if let Some(due_at) = self.due(key, &job.schedule, &tz_name, &tz, now) {
                    due += 1;
                    start_run(ctx, &app, &live, name, job, due_at);
                }
            }
        }
        self.planned.retain(|k, _| seen.contains(k));
        due
    }

    /// Is the job `key` due at `now`? The time it was due, and its next
    /// run planned. A job seen for the first time, or with a new schedule
    /// or time zone, is planned from `now` and not due; times missed while
    /// the clock was not looking make one run, not one each.
    fn due(
        &mut self,
        key: (String, String),
        schedule: &str,
        tz_name: &str,
        tz: &jiff::tz::TimeZone,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let cron = parse_schedule(schedule).ok()?; // checked at push time
        let replan = self
            .planned
            .get(&key)
            .is_none_or(|p| p.schedule != schedule || p.tz != tz_name);
        if replan {
            if let Some(next) = next_after(&cron, now, tz) {
                let plan = Planned {
                    schedule: schedule.to_string(),
                    tz: tz_name.to_string(),
                    next,
                };
                self.planned.insert(key, plan);
            }
            return None;
        }
        let plan = self.planned.get_mut(&key)?;
        if now < plan.next {
            return None;
        }
        let due_at = plan.next;
        match next_after(&cron, now, tz) {
            Some(next) => plan.next = next,
            None => {
                self.planned.remove(&key);
            }
        }
        Some(due_at)
    }
}

/// Starts one run of `job` (in its own task), or records it as skipped
/// when the previous run still goes.
fn start_run(ctx: &Arc<Ctx>, app: &App, live: &Release, name: &str, job: &CronJob, due: Timestamp) {
    let key = (app.name.clone(), name.to_string());
    let data_dir = ctx.config.data_dir.clone();
    {
        let mut running = ctx.cron_running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = running.get(&key) {
            let message = format!(
                "skipped the run due at {}: the run started at {} was still going (at most one run of a job at a time)",
                Timestamp::from_millisecond(due.as_millisecond()).unwrap_or(due),
                Timestamp::from_millisecond(*since).unwrap_or(due)
            );
            tracing::warn!(app = %app.name, job = %name, "cron job {message}");
            let rec = RunRecord {
                job: name.to_string(),
                release: live.version,
                due_at_ms: due.as_millisecond(),
                started_at_ms: due.as_millisecond(),
                duration_ms: 0,
                outcome: Outcome::Skipped,
                exit_code: None,
                message: Some(message),
                output: String::new(),
            };
            if let Err(e) = save_run(&data_dir, &app.name, &rec) {
                tracing::error!(app = %app.name, job = %name, "cannot keep a cron run's record: {e}");
            }
            return;
        }
        running.insert(key.clone(), now_ms());
    }
    let (ctx, app, live, name, job) = (
        ctx.clone(),
        app.clone(),
        live.clone(),
        name.to_string(),
        job.clone(),
    );
    tokio::spawn(async move {
        let rec = run_job(&ctx, &app, &live, &name, &job, due).await;
        match rec.outcome {
            Outcome::Ok => {
                tracing::info!(app = %app.name, job = %name, release = live.version, ms = rec.duration_ms, "cron job done")
            }
            _ => tracing::error!(
                app = %app.name, job = %name, release = live.version,
                "cron job failed: {}", rec.message.as_deref().unwrap_or("")
            ),
        }
        if let Err(e) = save_run(&ctx.config.data_dir, &app.name, &rec) {
            tracing::error!(app = %app.name, job = %name, "cannot keep a cron run's record: {e}");
        }
        ctx.cron_running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(app.name.clone(), name.clone()));
    });
}

/// Runs `job` to its end (or its timeout) in a one-off container of `live`.
async fn run_job(
    ctx: &Ctx,
    app: &App,
    live: &Release,
    name: &str,
    job: &CronJob,
    due: Timestamp,
) -> RunRecord {
    let started = now_ms();
    let t0 = std::time::Instant::now();
    let mut output = String::new();
    let command = vec!["sh".to_string(), "-c".to_string(), job.command.clone()];
    let result = async {
        let mut spec = crate::run::one_off_spec(ctx, app, live, command, &BTreeMap::new())
            .map_err(|ApiError(_, m)| m)?;
        spec.name = Some(format!(
            "paas-{}-cron-{name}-{}",
            app.name,
            crate::auth::random_token(4).to_lowercase()
        ));
        // A one-off like `paas run` (`paas.process=run`): deploys leave it
        // running, a daemon that died has it removed on boot, and a Procfile
        // process may be named `cron` without being mistaken for it.
        spec.labels.push(("paas.cron".into(), name.to_string()));
        ctx.docker
            .ensure_network(
                &crate::layout::network_name(&app.name),
                &[("paas.app".to_string(), app.name.clone())],
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(app = %app.name, job = %name, release = live.version, "cron job started");
        let mut on_line = |line: &str| keep_tail(&mut output, line);
        ctx.docker
            .run_to_completion(&spec, job.timeout(), &mut on_line)
            .await
            .map_err(|e| match e {
                crate::docker::DockerError::Timeout(_) => format!(
                    "killed at its timeout of {} s; make it faster or raise `timeout` in paas.toml [cron.{name}]",
                    job.timeout().as_secs()
                ),
                e => format!("the job's container could not run: {e}"),
            })
    }
    .await;
    let duration_ms = t0.elapsed().as_millis() as u64;
    let (outcome, exit_code, message) = match result {
        Ok(0) => (Outcome::Ok, Some(0), None),
        Ok(code) => (
            Outcome::Failed,
            Some(code),
            Some(format!(
                "exited with code {code}; its output is kept: `paas cron -a {} --json` shows it",
                app.name
            )),
        ),
        Err(m) if m.starts_with("killed at its timeout") => (Outcome::TimedOut, None, Some(m)),
        Err(m) => (Outcome::Failed, None, Some(m)),
    };
    RunRecord {
        job: name.to_string(),
        release: live.version,
        due_at_ms: due.as_millisecond(),
        started_at_ms: started,
        duration_ms,
        outcome,
        exit_code,
        message,
        output,
    }
}

// ---------------------------------------------------------------- API

/// One job as `paas cron` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobView {
    pub name: String,
    pub schedule: String,
    pub command: String,
    pub timeout_secs: u64,
    /// The time zone the schedule is read in (`UTC` or the TZ var).
    pub time_zone: String,
    /// The next run: Unix seconds (none when the TZ var is not a time zone).
    pub next_run_at: Option<i64>,
    /// A run is going now.
    pub running: bool,
    /// The last run (skips included), with its output.
    pub last: Option<RunRecord>,
    /// The last run that did not succeed, when it is the last run that ran:
    /// the job is failing.
    pub failing: bool,
    /// The kept runs, newest first, without their output.
    pub recent: Vec<RunRecord>,
}

/// The jobs of `app`'s live release, with their next and last runs.
pub fn job_views(ctx: &Ctx, app: &App) -> Result<Vec<JobView>, ApiError> {
    let Some(live) = ctx.store.live_release(&app.name).map_err(internal)? else {
        return Ok(Vec::new());
    };
    let vars = ctx.store.config_vars(app).map_err(internal)?;
    let tz = time_zone(&vars).ok();
    let tz_name = vars
        .get("TZ")
        .filter(|v| !v.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| "UTC".into());
    let running = ctx
        .cron_running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let now = Timestamp::now();
    Ok(live
        .meta
        .cron
        .iter()
        .map(|(name, job)| {
            let kept = runs(&ctx.config.data_dir, &app.name, name);
            let last_ran = kept.iter().find(|r| r.outcome != Outcome::Skipped);
            let next = match (&tz, parse_schedule(&job.schedule)) {
                (Some(tz), Ok(cron)) => next_after(&cron, now, tz).map(|t| t.as_second()),
                _ => None,
            };
            JobView {
                name: name.clone(),
                schedule: job.schedule.clone(),
                command: job.command.clone(),
                timeout_secs: job.timeout().as_secs(),
                time_zone: tz_name.clone(),
                next_run_at: next,
                running: running.contains_key(&(app.name.clone(), name.clone())),
                failing: last_ran.is_some_and(|r| r.outcome != Outcome::Ok),
                last: kept.first().cloned(),
                recent: kept
                    .iter()
                    .map(|r| RunRecord {
                        output: String::new(),
                        ..r.clone()
                    })
                    .collect(),
            }
        })
        .collect())
}

/// The routes of this module (listed in `router::ROUTES`).
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new().route("/api/apps/{app}/cron", get(api_cron))
}

/// `GET /api/apps/{app}/cron`: the live release's jobs.
async fn api_cron(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let app = find_app(&ctx, &name)?;
    Ok(Json(job_views(&ctx, &app)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(job: &str, at: i64, outcome: Outcome) -> RunRecord {
        RunRecord {
            job: job.into(),
            release: 1,
            due_at_ms: at,
            started_at_ms: at,
            duration_ms: 5,
            outcome,
            exit_code: None,
            message: None,
            output: "out\n".into(),
        }
    }

    #[test]
    fn runs_are_kept_newest_first_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..(KEEP_RUNS as i64 + 5) {
            save_run(dir.path(), "blog", &rec("tick", 1_000 + i, Outcome::Ok)).unwrap();
        }
        save_run(dir.path(), "blog", &rec("other", 1, Outcome::Failed)).unwrap();
        let kept = runs(dir.path(), "blog", "tick");
        assert_eq!(kept.len(), KEEP_RUNS);
        assert_eq!(kept[0].started_at_ms, 1_000 + KEEP_RUNS as i64 + 4);
        assert_eq!(kept.last().unwrap().started_at_ms, 1_005);
        assert_eq!(
            runs(dir.path(), "blog", "other")[0].outcome,
            Outcome::Failed
        );
        assert!(runs(dir.path(), "blog", "none").is_empty());
    }

    /// The clock's plan, driven by a clock of the test's own.
    #[test]
    fn jobs_fall_due_on_schedule_once_per_time_and_replan_on_change() {
        let at = |s: &str| -> Timestamp { format!("2026-11-30T{s}Z").parse().unwrap() };
        let utc = jiff::tz::TimeZone::UTC;
        let key = || ("blog".to_string(), "digest".to_string());
        let mut c = Clock::default();
        // First sight: planned, not run (even at a matching minute).
        assert_eq!(c.due(key(), "*/5 * * * *", "", &utc, at("10:00:00")), None);
        assert_eq!(c.due(key(), "*/5 * * * *", "", &utc, at("10:04:59")), None);
        assert_eq!(
            c.due(key(), "*/5 * * * *", "", &utc, at("10:05:00")),
            Some(at("10:05:00"))
        );
        assert_eq!(c.due(key(), "*/5 * * * *", "", &utc, at("10:05:01")), None);
        // A clock that was away for 20 minutes: one late run, then on time.
        assert_eq!(
            c.due(key(), "*/5 * * * *", "", &utc, at("10:27:30")),
            Some(at("10:10:00"))
        );
        assert_eq!(c.due(key(), "*/5 * * * *", "", &utc, at("10:29:59")), None);
        assert_eq!(
            c.due(key(), "*/5 * * * *", "", &utc, at("10:30:00")),
            Some(at("10:30:00"))
        );
        // A new schedule (a deploy or a rollback) is planned afresh.
        assert_eq!(c.due(key(), "0 * * * *", "", &utc, at("10:35:00")), None);
        assert_eq!(c.due(key(), "0 * * * *", "", &utc, at("10:40:00")), None);
        assert_eq!(
            c.due(key(), "0 * * * *", "", &utc, at("11:00:00")),
            Some(at("11:00:00"))
        );
        // So is a new time zone: 12:00 in Paris is 11:00 UTC in winter.
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let daily = "0 12 * * *";
        assert_eq!(
            c.due(key(), daily, "Europe/Paris", &paris, at("10:00:00")),
            None
        );
        assert_eq!(
            c.due(key(), daily, "Europe/Paris", &paris, at("10:59:59")),
            None
        );
        assert_eq!(
            c.due(key(), daily, "Europe/Paris", &paris, at("11:00:00")),
            Some(at("11:00:00"))
        );
    }

    #[test]
    fn output_keeps_its_end() {
        let mut out = String::new();
        for i in 0..10_000 {
            keep_tail(&mut out, &format!("line {i} é\r\n"));
        }
        assert!(out.len() <= KEEP_OUTPUT);
        assert!(out.ends_with("line 9999 é\n"), "{}", &out[out.len() - 40..]);
    }
}
