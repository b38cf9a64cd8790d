//! What a request or a deploy may touch, handed to them by argument.
//!
//! One [`Ctx`] per daemon, made by `server::run`; nothing in paas
//! keeps state in a global.

use crate::auth::{AdminToken, LoginLimiter, Sessions};
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
        Ctx {
            config,
            store,
            docker,
            routes: RouteTable::new(),
            deployer: Deployer::default(),
            repos,
            token,
            sessions: Sessions::default(),
            hook,
            login_limiter: LoginLimiter::default(),
            history: History::default(),
            usage: UsageHistory::default(),
            pg_server: tokio::sync::Mutex::new(()),
        }
    }
}
