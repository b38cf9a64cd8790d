//! What a request or a deploy may touch, handed to them by argument.
//!
//! One [`Ctx`] per daemon, made by `server::run`; nothing in paas
//! keeps state in a global.

use crate::auth::{AdminToken, LoginLimiter, Sessions};
use crate::certs::Certs;
use crate::config::Config;
use crate::docker::Docker;
use crate::git::{HookEnv, Repos};
use crate::metrics::{History, UsageHistory};
use crate::proxy::RouteTable;
use crate::queue::Deployer;
use crate::store::Store;

/// The shared state every handler and deploy sees.
pub struct Ctx {
    /// The validated configuration.
    pub config: Config,
    /// Apps, releases, config vars, domains, tokens.
    pub store: Store,
    /// The Docker engine.
    pub docker: Docker,
    /// Host → backend, read by the proxy, swapped by deploys.
    pub routes: RouteTable,
    /// The certificates the HTTPS listener serves (`<data-dir>/certs`).
    pub certs: std::sync::Arc<Certs>,
    /// The per-app deploy queues and the deploys in flight.
    pub deployer: Deployer,
    /// The bare repositories.
    pub repos: Repos,
    /// The admin token.
    pub token: AdminToken,
    /// Dashboard sessions.
    pub sessions: Sessions,
    /// What hooks spawned by this daemon use to call it back.
    pub hook: HookEnv,
    /// Failed logins per address (dashboard form, bearer and basic auth).
    pub login_limiter: LoginLimiter,
    /// Requests and latency per app over the last hour.
    pub history: History,
    /// Memory and CPU of each app's containers over the last hour.
    pub usage: UsageHistory,
    /// One PostgreSQL server for all apps: started by one caller at a time.
    pub pg_server: tokio::sync::Mutex<()>,
    /// Scheduled jobs running now: (app, job) → when the run started (Unix ms).
    pub cron_running: std::sync::Mutex<std::collections::HashMap<(String, String), i64>>,
}

impl Ctx {
    /// The state of a daemon over these parts; the rest starts empty.
    pub fn new(
        config: Config,
        store: Store,
        docker: Docker,
        repos: Repos,
        token: AdminToken,
        hook: HookEnv,
    ) -> Ctx {
        let login_limiter = LoginLimiter::new(config.auth_failure_limit);
        let certs = std::sync::Arc::new(
            Certs::new(config.data_dir.join("certs")).serve_without_sni(config.control_host()),
        );
        Ctx {
            config,
            store,
            docker,
            routes: RouteTable::new(),
            certs,
            deployer: Deployer::default(),
            repos,
            token,
            sessions: Sessions::default(),
            hook,
            login_limiter,
            history: History::default(),
            usage: UsageHistory::default(),
            pg_server: tokio::sync::Mutex::new(()),
            cron_running: Default::default(),
        }
    }
}

/// Who is calling, as the guard established it.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token presented in `Authorization`, if any.
    pub credential: Option<crate::auth::Credential>,
    /// The dashboard session riding on the request's cookie, if live.
    pub session: Option<Session>,
}

/// A live dashboard session: its id and its CSRF token (for rendering forms).
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub csrf: String,
}
