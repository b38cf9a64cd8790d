//! paas: `git push` turns a Django project into a live site on one VPS.
//!
//! The parts, in the order a deploy meets them:
//!
//! - [`config`]: the one validated configuration (file → env → flags).
//! - [`store`]: SQLite state (apps, releases, config vars, domains).
//! - [`auth`]: the admin token, dashboard sessions; [`tokens`]: API tokens.
//! - [`git`]: bare repositories and `git http-backend` behind axum; the pre-receive hook.
//! - [`buildpack`]: detect a Django project and render its build plan (Dockerfile, settings shim).
//! - [`docker`]: the one wrapper over the Docker engine (bollard).
//! - [`procfile`]: the Procfile's processes (web command, release command, workers).
//! - [`deploy`]: one deploy, step by step: build → release (migrate) → start → health → swap.
//! - [`health`]: the readiness probe that gates every swap.
//! - [`proxy`]: the public reverse proxy: Host → backend table, static files.
//! - [`api`] and [`dashboard`]: the control plane on the admin listener;
//!   [`metrics`]: the last hour of requests per app, and its SVG charts.
//! - [`data`]: PostgreSQL for apps that ask for it, backups and restores.
//! - [`run`]: `paas run` one-off containers, `paas ps` and `paas logs`.
//! - [`destroy`]: `apps:destroy`, with a final backup.
//! - [`domains`]: custom domains, rolled out without downtime.
//! - [`server`]: wires the parts together for `paas serve`.
//! - [`beneath`]: files below a root, reached without following symlinks (app volumes).

pub mod api;
pub mod auth;
pub mod beneath;
pub mod buildpack;
pub mod config;
pub mod dashboard;
pub mod data;
pub mod deploy;
pub mod destroy;
pub mod docker;
pub mod domains;
pub mod git;
pub mod health;
pub mod metrics;
pub mod procfile;
pub mod proxy;
pub mod run;
pub mod server;
pub mod store;
pub mod tokens;
