//! paas: `git push` turns a Django project into a live site on one VPS.
//!
//! The parts, in the order a deploy meets them:
//!
//! - [`config`]: the one validated configuration (file → env → flags).
//! - [`store`]: SQLite state (apps, releases, config vars, domains).
//! - [`auth`]: the admin token, dashboard sessions.
//! - [`git`]: bare repositories and `git http-backend` behind axum; the pre-receive hook.
//! - [`buildpack`]: detect the pushed Django project and render its image build.
//! - [`health`]: the readiness probe that gates every swap.
//! - [`proxy`]: the public port: Host → release routing, static files, drain.

pub mod auth;
pub mod buildpack;
pub mod config;
pub mod docker;
pub mod git;
pub mod health;
pub mod proxy;
pub mod store;
