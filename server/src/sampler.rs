//! The samplers: on a clock, read the proxy's request counters and the
//! engine's container stats into the histories in [`Ctx`] that the
//! dashboard draws ([`crate::metrics`]). Nothing of it runs on a request's path.

use crate::ctx::Ctx;
use crate::docker::{CpuReading, MANAGED_LABEL};
use crate::metrics::{now, stats_interval, Usage, SAMPLE_EVERY};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Samples the proxy's counters into its history every [`SAMPLE_EVERY`],
/// for as long as the daemon runs.
pub fn spawn_request_sampler(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            ctx.history.record(now(), &ctx.routes.stats());
        }
    })
}

/// The host's memory (`MemTotal` of /proc/meminfo), to tell a container
/// without a limit (the engine then reports the host's memory) from one with.
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples the memory and CPU of every app's running containers every
/// [`stats_interval`] (the first at once), for as long as the daemon runs.
/// Without apps it asks the engine nothing.
///
/// CPU: a one-shot stats reading carries no previous reading (`precpu`), so
/// the sampler keeps each container's last CPU counters and the share is
/// the average over the interval between two samples; a container's first
/// sample has no CPU share.
pub fn spawn_usage_sampler(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
    let every = stats_interval();
    tokio::spawn(async move {
        let host = host_memory();
        let mut kept: HashMap<String, CpuReading> = HashMap::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sample_usage(&ctx, &mut kept, host).await;
        }
    })
}

async fn sample_usage(ctx: &Ctx, kept: &mut HashMap<String, CpuReading>, host: Option<u64>) {
    let apps: HashSet<String> = match ctx.store.apps() {
        Ok(apps) => apps.into_iter().map(|a| a.name).collect(),
        Err(e) => {
            tracing::debug!("usage sampler: {e}");
            return;
        }
    };
    ctx.usage.retain(&apps);
    if apps.is_empty() {
        kept.clear();
        return;
    }
    let list = match ctx.docker.list_containers(&[MANAGED_LABEL]).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!("usage sampler: {e}");
            return;
        }
    };
    let mut per_app: HashMap<&str, Usage> = apps
        .iter()
        .map(|a| (a.as_str(), Usage::default()))
        .collect();
    let mut seen = HashSet::new();
    for c in list.iter().filter(|c| c.state == "running") {
        let Some(u) = c
            .labels
            .get("paas.app")
            .and_then(|a| per_app.get_mut(a.as_str()))
        else {
            continue;
        };
        let s = match ctx.docker.stats_once(&c.id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("usage sampler, container {}: {e}", c.name);
                continue;
            }
        };
        let cpu = s.cpu_percent(kept.get(&c.id));
        kept.insert(c.id.clone(), s.cpu);
        seen.insert(c.id.clone());
        u.add(&s, cpu, host);
    }
    kept.retain(|id, _| seen.contains(id));
    let now = now();
    for (app, u) in per_app {
        ctx.usage.record(now, app, u);
    }
}
