//! `paas serve`: wires the parts together and runs until asked to stop.
//!
//! Two listeners: the public proxy (`--http`) and the admin listener
//! (`--admin`: dashboard, API, git). The control plane is also reachable
//! through the proxy at `paas.<domain>`. App containers outlive the daemon;
//! on start it reconciles its routes with the engine's labelled containers.

use crate::auth::AdminToken;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::docker::Docker;
use crate::git::{HookEnv, Repos};
use crate::proxy::{ControlAccess, Limits, ProxyOptions};
use crate::store::Store;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a stopping daemon waits for deploys in flight before it fails them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(75);

/// A failure to start; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot create the data dir {path}: {source}; create it or pass another with --data-dir"
    )]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    #[error("cannot listen on {addr} ({source}); is another server using it? Pick another with --{flag}")]
    Listen {
        addr: std::net::SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error("https = {0}: this paas does not speak HTTPS yet; remove --https (or set it to off) and reach the control plane on the admin address, from elsewhere through an SSH tunnel (ssh -N -L 8300:127.0.0.1:8300 root@SERVER)")]
    NoTls(std::net::SocketAddr),
}

/// Sets `path`'s mode (the daemon's own files: never a link an app made).
fn private(path: &std::path::Path, mode: u32) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        StartError::DataDir {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Connections the admin listener keeps open at once (the owner, git, the
/// hooks of deploys in flight).
const ADMIN_MAX_CONNECTIONS: usize = 128;
/// Open files kept for the daemon's own use (the store, the engine's
/// socket, git, logs) whatever the connections take.
const RESERVED_FILES: u64 = 512;

/// The limits of the public and the admin listener. The soft cap on open
/// files is raised to the hard one first; a proxied connection takes two
/// files (client and app), so the public cap fits in what is left.
fn connection_limits() -> (Limits, Limits) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut files = getrlimit(Resource::Nofile);
    if files.maximum > files.current {
        files.current = files.maximum;
        if setrlimit(Resource::Nofile, files).is_err() {
            files = getrlimit(Resource::Nofile);
        }
    }
    let open_files = files.current.unwrap_or(u64::MAX);
    let public_cap = open_files.saturating_sub(RESERVED_FILES + ADMIN_MAX_CONNECTIONS as u64) / 2;
    let public = Limits {
        max_connections: Limits::default()
            .max_connections
            .min(public_cap.max(64) as usize),
        ..Limits::default()
    };
    let admin = Limits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        ..Limits::default()
    };
    (public, admin)
}

/// How often the apps' network ranges are read again from the engine (new
/// networks are added as paas makes them; this drops removed ones).
const APP_NETS_REFRESH: Duration = Duration::from_secs(60);

/// The network image builds run on, whose ranges the control plane refuses
/// too (a build runs a pushed tree's setup code): the engine's default
/// bridge unless `build-network` names another. With `host` a build shares
/// the host's own addresses and cannot be told apart.
fn build_network_name(config: &Config) -> Vec<String> {
    match config.build_network.as_deref() {
        None => vec!["bridge".into()],
        Some(name) if name == "host" || name == "none" || name.contains(':') => vec![],
        Some(name) => vec![name.to_string()],
    }
}

fn spawn_app_nets_refresh(docker: Docker, extra: Vec<String>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(APP_NETS_REFRESH).await;
            if let Err(e) = docker.refresh_app_nets(&extra).await {
                tracing::warn!("cannot read the apps' networks from the engine: {e}");
            }
        }
    });
}

/// Open the state, connect to the engine, bind both listeners, reconcile,
/// and serve until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    if let Some(addr) = config.https {
        // The proxy is ready (ControlAccess::Redirect for plain HTTP, Serve
        // for the TLS listener); the TLS listener itself is not written yet.
        return Err(StartError::NoTls(addr));
    }
    let data_dir = config.data_dir.clone();
    // Secrets at rest: whatever installed paas, everything the daemon makes
    // from here on is its own (0600 files, 0700 folders), and the data
    // folder (tokens, paas.db, backups, every app's data) is root's alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    for sub in ["", "repos", "apps", "tmp"] {
        let p = data_dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|source| StartError::DataDir { path: p, source })?;
    }
    private(&data_dir, 0o700)?;
    let (token, created) =
        AdminToken::load_or_create(&data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.join("admin.token"),
            source,
        })?;
    if created {
        // Printed once, on first start only; never logged.
        println!(
            "paas: your admin token (stored 0600 in {}): {}",
            data_dir.join("admin.token").display(),
            token.reveal()
        );
    }
    let store = Store::open(&data_dir.join("paas.db"))?;
    for name in ["paas.db", "paas.db-wal", "paas.db-shm", "admin.token"] {
        let path = data_dir.join(name);
        if path.exists() {
            private(&path, 0o600)?;
        }
    }
    let docker = Docker::connect()?;
    docker.ping().await?;
    // The apps' networks, known before either listener takes a connection.
    let build_net = build_network_name(&config);
    docker.refresh_app_nets(&build_net).await?;
    tracing::info!(
        ranges = ?docker.app_nets().list().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "the control plane refuses peers on the apps' networks"
    );
    let admin = TcpListener::bind(config.admin)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.admin,
            flag: "admin",
            source,
        })?;
    let http = TcpListener::bind(config.http)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.http,
            flag: "http",
            source,
        })?;
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("paas"));
    let repos = Repos::new(data_dir.join("repos"), exe);
    repos.refresh_hooks().await?;
    let hook = HookEnv {
        daemon_url: config.admin_local_url(),
        secret: crate::auth::random_token(32),
    };
    let ctx = Arc::new(Ctx::new(config, store, docker, repos, token, hook));

    crate::deploy::reconcile(&ctx).await;
    crate::schedule::spawn_scheduler(ctx.clone());
    crate::cron::spawn_cron(ctx.clone());
    crate::sampler::spawn_request_sampler(ctx.clone());
    crate::sampler::spawn_usage_sampler(ctx.clone());
    spawn_app_nets_refresh(ctx.docker.clone(), build_net);

    let router = crate::router::router(ctx.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_ctx = ctx.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Listeners keep serving (the sites, and the pushes' progress) while
        // deploys in flight finish; past the bound they are failed cleanly.
        stop_ctx.deployer.close();
        let n = stop_ctx.deployer.in_flight();
        if n > 0 {
            tracing::info!(
                "waiting up to {} s for {n} deploy(s) in flight",
                SHUTDOWN_GRACE.as_secs()
            );
            if !stop_ctx.deployer.wait_idle(SHUTDOWN_GRACE).await {
                crate::deploy::fail_in_flight(
                    &stop_ctx,
                    "paas was stopped before this deploy finished; the previous release kept serving. Push (or run the command) again",
                )
                .await;
            }
        }
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    tracing::info!(
        admin = %ctx.config.admin,
        http = %ctx.config.http,
        domain = %ctx.config.domain,
        "paas is serving"
    );
    let (public_limits, admin_limits) = connection_limits();
    let proxy = crate::proxy::serve(
        http,
        ctx.routes.clone(),
        ProxyOptions {
            control_host: Some(ctx.config.control_host()),
            control: Some(router.clone()),
            control_access: match ctx.config.control_https_base() {
                Some(base) => ControlAccess::Redirect(base),
                None => ControlAccess::Refuse,
            },
            app_nets: ctx.docker.app_nets(),
            upstream_timeout: Duration::from_secs(60),
            limits: public_limits,
        },
        wait(stop_rx.clone()),
    );
    let admin_srv = crate::proxy::serve_router(
        admin,
        router,
        admin_limits,
        ctx.docker.app_nets(),
        wait(stop_rx.clone()),
    );
    let (a, b) = tokio::join!(proxy, admin_srv);
    if let Err(e) = a {
        tracing::error!("proxy: {e}");
    }
    if let Err(e) = b {
        tracing::error!("admin listener: {e}");
    }
    tracing::info!("paas stopped");
    Ok(())
}
