//! The clock: every app is backed up once per [`BACKUP_INTERVAL`], failed
//! offsite copies are retried every hour, every app's latest offsite copy is
//! restore-drilled once a week ([`crate::drill::DRILL_INTERVAL`]), and what
//! paas made and no longer needs is pruned once per [`PRUNE_INTERVAL`].

use crate::backup::{backup_app, backup_kind, due, list_backups, Status};
use crate::ctx::Ctx;
use std::sync::Arc;
use std::time::Duration;

/// Every app is backed up once per this interval.
pub const BACKUP_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How often everything paas made is pruned (besides after each push).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How often the scheduler looks for apps that are due.
const SCHEDULER_TICK: Duration = Duration::from_secs(3600);

// -------------------------------------------------------------- schedule

/// Backs up every app once per [`BACKUP_INTERVAL`]: checks hourly which apps
/// have no good backup that recent. Survives restarts (the manifests say
/// when the last one was taken).
pub fn spawn_scheduler(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Let the daemon settle (reconcile, first requests) before the first look.
        tokio::time::sleep(Duration::from_secs(120)).await;
        let mut pruned_at: Option<tokio::time::Instant> = None;
        loop {
            run_due_backups(&ctx).await;
            // Offsite copies that failed (or wait after a deploy) go up again.
            crate::backup::retry_uploads(&ctx).await;
            run_due_drills(&ctx).await;
            if crate::disaster::server_backup_due(&ctx) {
                // server_backup logs its own failure at error.
                let _ = crate::disaster::server_backup(&ctx, "scheduled").await;
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_INTERVAL) {
                crate::prune::prune_all(&ctx).await;
                pruned_at = Some(tokio::time::Instant::now());
            }
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
    let now = crate::metrics::now();
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
        let _turn = ctx.deployer.turn(&app.name).await;
        if backup_app(ctx, &app, "scheduled").await.is_ok() {
            taken += 1;
        }
    }
    taken
}

/// Drills every app with data whose last drill is a week old (only once an
/// offsite target is set). Returns how many ran.
pub async fn run_due_drills(ctx: &Ctx) -> usize {
    if crate::backup::offsite_target(ctx).is_none() {
        return 0;
    }
    let Ok(apps) = ctx.store.apps() else {
        return 0;
    };
    let now = crate::metrics::now();
    let mut ran = 0;
    for app in apps {
        if !matches!(backup_kind(&ctx.config.data_dir, &app.name), Ok(Some(_))) {
            continue;
        }
        let last = crate::drill::last_drill(ctx, &app.name).map(|d| d.at);
        if crate::drill::drill_due(last, now) {
            // drill_app logs a failure at error and records it for the dashboard.
            crate::drill::drill_app(ctx, &app.name).await;
            ran += 1;
        }
    }
    ran
}
