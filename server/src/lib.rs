//! paas: `git push` turns a Django project into a live site on one VPS.
//!
//! The modules, in layers: a module uses only modules listed above it
//! (`bench/layers.sh` checks there is no cycle).
//!
//! Leaves — names, settings, errors:
//! - [`config`]: the one validated configuration (file → env → flags).
//! - [`layout`]: names and paths (networks, labels, release dirs, volumes).
//! - [`lines`]: byte streams cut into lines, one way for every stream.
//! - [`beneath`]: files below a root, reached without following symlinks (app volumes).
//! - [`peers`]: the address ranges of the networks app code runs on.
//!
//! Engines — each wraps one outside thing:
//! - [`store`]: SQLite state (apps, releases, config vars, domains, tokens).
//! - [`auth`]: the admin token, dashboard sessions, the login limiter.
//! - [`docker`]: the one wrapper over the Docker engine (bollard).
//! - [`git`]: bare repositories and `git http-backend`; the pre-receive hook.
//! - [`buildpack`]: detect a Django project and render its build plan.
//! - [`procfile`]: the Procfile's processes.
//! - [`cron_table`]: the `[cron.NAME]` jobs of `paas.toml` and their schedules.
//! - [`proxy`]: the public reverse proxy: Host → backend table, static files.
//! - [`queue`]: the per-app deploy queues and the deploys in flight.
//! - [`metrics`]: the last hour of requests and resource use per app, and charts.
//! - [`offsite`]: an S3-compatible bucket; encryption (age) and retention of what goes there.
//!
//! What a story may touch, and how it answers a request:
//! - [`ctx`]: the daemon's shared state, passed by argument.
//! - [`http_error`]: one sentence and a status for every failure.
//!
//! Stories — what paas does:
//! - [`deploy`]: one deploy, step by step: build → release → start → health → swap.
//! - [`health`]: the readiness probe that gates every swap.
//! - [`postgres`]: a PostgreSQL database per app that asks for one.
//! - [`backup`]: backups and restores of an app's data, and their offsite copies.
//! - [`drill`]: restore drills: the latest offsite copy restored into a scratch database.
//! - [`prune`]: removes what paas made and no longer needs, and nothing else.
//! - [`schedule`]: the daily backups, offsite retries, drills and prune.
//! - [`cron`]: the apps' scheduled jobs, run as one-off containers.
//! - [`sampler`]: request and container-usage samples for the charts.
//! - [`disk`]: disk use per app, and the warning before the disk fills.
//! - [`disaster`]: `server:backup` and `server:restore`: the whole server, offsite.
//! - [`destroy`]: `apps:destroy`, with a final backup.
//! - [`domains`]: custom domains, rolled out without downtime.
//! - [`run`]: `paas run` one-off containers, `paas ps` and `paas logs`.
//!
//! Edges — where requests come in:
//! - [`router`]: every route of the control plane and the one auth guard.
//! - [`api`], [`data_api`], [`tokens`], [`dashboard`]: handlers.
//! - [`server`]: wires the parts together for `paas serve`.
//! - [`client`]: the `paas` command-line client.

pub mod beneath;
pub mod config;
pub mod layout;
pub mod lines;
pub mod peers;

pub mod auth;
pub mod buildpack;
pub mod cron_table;
pub mod docker;
pub mod git;
pub mod metrics;
pub mod offsite;
pub mod procfile;
pub mod proxy;
pub mod queue;
pub mod store;

pub mod ctx;
pub mod http_error;

pub mod backup;
pub mod cron;
pub mod deploy;
pub mod destroy;
pub mod disaster;
pub mod disk;
pub mod domains;
pub mod drill;
pub mod health;
pub mod postgres;
pub mod prune;
pub mod run;
pub mod sampler;
pub mod schedule;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod layers;

pub mod api;
pub mod dashboard;
pub mod data_api;
pub mod router;
pub mod server;
pub mod tokens;

pub mod client;
