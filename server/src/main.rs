//! The `paas` command: the daemon (`paas serve`), the git hook it installs,
//! and a small client for the API.

use clap::{Parser, Subcommand};
use paas::config::{Config, Overrides};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "paas",
    version,
    about = "git push your Django project; paas runs it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: git, API and dashboard on --admin, the apps' proxy on --http.
    Serve(ServeArgs),
    /// Git hooks installed into each app's repository (not for people).
    #[command(hide = true)]
    Hook {
        #[command(subcommand)]
        hook: HookCommand,
    },
    /// List the apps, their URL and live release.
    Apps(ClientArgs),
    /// Release history of an app.
    Releases {
        #[command(flatten)]
        client: ClientArgs,
        /// The app.
        #[arg(long, short)]
        app: String,
    },
    /// Go back to an earlier release (default: the one before the live one): its image and config, no build, no migrations.
    Rollback {
        #[command(flatten)]
        client: ClientArgs,
        /// The app.
        #[arg(long, short)]
        app: String,
        /// The release to go back to, e.g. v3.
        version: Option<String>,
        /// Also put the data back as it was before the next release migrated
        /// (its pre-migrate snapshot); changes made since are replaced.
        #[arg(long)]
        restore_db: bool,
    },
    /// Replace the app's containers with new ones of the live release, without downtime.
    Restart {
        #[command(flatten)]
        client: ClientArgs,
        /// The app.
        #[arg(long, short)]
        app: String,
    },
    /// Show the app's config vars.
    Config {
        #[command(flatten)]
        client: ClientArgs,
        /// The app.
        #[arg(long, short)]
        app: String,
    },
    /// Set config vars (KEY=VALUE …); a live app restarts with them, without downtime.
    #[command(name = "config:set")]
    ConfigSet {
        #[command(flatten)]
        client: ClientArgs,
        /// The app.
        #[arg(long, short)]
        app: String,
        /// KEY=VALUE pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Unset config vars (KEY …); a live app restarts without them, without downtime.
    #[command(name = "config:unset")]
    ConfigUnset {
        #[command(flatten)]
        client: ClientArgs,
        /// The app.
        #[arg(long, short)]
        app: String,
        /// Names of the vars.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Give an app its own PostgreSQL database and set DATABASE_URL.
    #[command(name = "pg:create")]
    PgCreate {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short)]
        app: String,
    },
    /// Show an app's PostgreSQL database.
    #[command(name = "pg:info")]
    PgInfo {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short)]
        app: String,
    },
    /// Drop an app's PostgreSQL database (needs --confirm APP).
    #[command(name = "pg:destroy")]
    PgDestroy {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short)]
        app: String,
        /// The app's name again: dropping cannot be undone.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// List an app's backups, newest first.
    #[command(visible_alias = "pg:backups")]
    Backups {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short)]
        app: String,
    },
    /// Back up an app's database and media files now.
    #[command(name = "backups:create", visible_alias = "pg:backup")]
    BackupsCreate {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short)]
        app: String,
    },
    /// Restore a backup into the app (needs --confirm APP).
    #[command(name = "backups:restore", visible_alias = "pg:restore")]
    BackupsRestore {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short)]
        app: String,
        /// The backup's id (`paas backups --app APP` lists them).
        id: String,
        /// The app's name again: restoring replaces its data.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// Destroy an app: containers, images, data, database, git repository
    /// (needs --confirm APP). A final backup is kept unless --no-backup.
    #[command(name = "apps:destroy")]
    AppsDestroy {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short)]
        app: String,
        /// The app's name again: destroying cannot be undone.
        #[arg(long)]
        confirm: Option<String>,
        /// Do not keep a final backup of the app's data.
        #[arg(long)]
        no_backup: bool,
    },
}

#[derive(Subcommand)]
enum HookCommand {
    PreReceive,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A TOML file with the same names as these flags (default: <data-dir>/paas.toml if present).
    #[arg(long = "config", env = "PAAS_CONFIG")]
    config_file: Option<PathBuf>,
    /// Where paas keeps its state, repositories and app data [default: /var/lib/paas].
    #[arg(long, env = "PAAS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The public listener: the apps, through paas's proxy [default: 0.0.0.0:80].
    #[arg(long, env = "PAAS_HTTP")]
    http: Option<String>,
    /// The control listener: git, API and dashboard [default: 127.0.0.1:8300].
    #[arg(long, env = "PAAS_ADMIN")]
    admin: Option<String>,
    /// Apps are served at <app>.<domain> [default: localhost].
    #[arg(long, env = "PAAS_DOMAIN")]
    domain: Option<String>,
    /// Docker network mode for image builds (e.g. host), when builds need it to reach PyPI.
    #[arg(long, env = "PAAS_BUILD_NETWORK")]
    build_network: Option<String>,
    /// Base image name pattern [default: python:{version}-slim].
    #[arg(long, env = "PAAS_IMAGE_PATTERN")]
    image_pattern: Option<String>,
    /// Seconds an old release may finish in-flight requests after a swap [default: 30].
    #[arg(long = "drain-timeout", env = "PAAS_DRAIN_TIMEOUT")]
    drain_timeout_secs: Option<u64>,
    /// Memory limit of each app container, in MiB [default: 512].
    #[arg(long, env = "PAAS_MEMORY_MB")]
    memory_mb: Option<u64>,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The daemon's control URL.
    #[arg(long, env = "PAAS_URL", default_value = "http://127.0.0.1:8300")]
    url: String,
    /// The admin token (default: read from /var/lib/paas/admin.token when readable).
    #[arg(long, env = "PAAS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paas: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => rt.block_on(serve(args)),
        Command::Hook {
            hook: HookCommand::PreReceive,
        } => rt.block_on(pre_receive()),
        Command::Apps(c) => rt.block_on(client_apps(c)),
        Command::Releases { client, app } => rt.block_on(client_releases(client, app)),
        Command::Rollback {
            client,
            app,
            version,
            restore_db,
        } => {
            let body = match version {
                None => serde_json::json!({ "restore_db": restore_db }),
                Some(v) => match v.trim_start_matches('v').parse::<i64>() {
                    Ok(n) => serde_json::json!({ "version": n, "restore_db": restore_db }),
                    Err(_) => {
                        eprintln!("paas: {v:?} is not a release like v3: `paas releases --app {app}` lists them");
                        return ExitCode::from(2);
                    }
                },
            };
            rt.block_on(client_action(
                client,
                reqwest::Method::POST,
                format!("/api/apps/{app}/rollback"),
                body,
            ))
        }
        Command::Restart { client, app } => rt.block_on(client_action(
            client,
            reqwest::Method::POST,
            format!("/api/apps/{app}/restart"),
            serde_json::json!({}),
        )),
        Command::Config { client, app } => rt.block_on(client_config(client, app)),
        Command::ConfigSet { client, app, pairs } => {
            let mut changes = serde_json::Map::new();
            for pair in pairs {
                let Some((k, v)) = pair.split_once('=') else {
                    eprintln!("paas: {pair:?} is not KEY=VALUE: write it as KEY=VALUE (quote values with spaces)");
                    return ExitCode::from(2);
                };
                changes.insert(k.to_string(), serde_json::json!(v));
            }
            rt.block_on(client_action(
                client,
                reqwest::Method::PATCH,
                format!("/api/apps/{app}/config"),
                serde_json::Value::Object(changes),
            ))
        }
        Command::ConfigUnset { client, app, keys } => {
            let changes: serde_json::Map<String, serde_json::Value> = keys
                .into_iter()
                .map(|k| (k, serde_json::Value::Null))
                .collect();
            rt.block_on(client_action(
                client,
                reqwest::Method::PATCH,
                format!("/api/apps/{app}/config"),
                serde_json::Value::Object(changes),
            ))
        }
        Command::PgCreate { client, app } => rt.block_on(client_data(&client, |u, t| {
            Box::pin(async move { paas::data::cli_pg_create(&u, &t, &app).await })
        })),
        Command::PgInfo { client, app } => rt.block_on(client_data(&client, |u, t| {
            Box::pin(async move { paas::data::cli_pg_info(&u, &t, &app).await })
        })),
        Command::PgDestroy {
            client,
            app,
            confirm,
        } => rt.block_on(client_data(&client, |u, t| {
            Box::pin(
                async move { paas::data::cli_pg_destroy(&u, &t, &app, confirm.as_deref()).await },
            )
        })),
        Command::Backups { client, app } => rt.block_on(client_data(&client, |u, t| {
            Box::pin(async move { paas::data::cli_backups(&u, &t, &app).await })
        })),
        Command::BackupsCreate { client, app } => rt.block_on(client_data(&client, |u, t| {
            Box::pin(async move { paas::data::cli_backup(&u, &t, &app).await })
        })),
        Command::BackupsRestore {
            client,
            app,
            id,
            confirm,
        } => rt.block_on(client_data(&client, |u, t| {
            Box::pin(
                async move { paas::data::cli_restore(&u, &t, &app, &id, confirm.as_deref()).await },
            )
        })),
        Command::AppsDestroy {
            client,
            app,
            confirm,
            no_backup,
        } => rt.block_on(client_data(&client, |u, t| {
            Box::pin(async move {
                paas::destroy::cli_destroy(&u, &t, &app, confirm.as_deref(), no_backup).await
            })
        })),
    }
}

async fn serve(a: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAAS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        // Colour codes only for a person at a terminal, not in journald or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::resolve(Overrides {
        config_file: a.config_file,
        data_dir: a.data_dir,
        http: a.http,
        admin: a.admin,
        domain: a.domain,
        build_network: a.build_network,
        image_pattern: a.image_pattern,
        drain_timeout_secs: a.drain_timeout_secs,
        memory_mb: a.memory_mb,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paas: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        tracing::info!("shutting down");
    };
    match paas::server::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paas: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn pre_receive() -> ExitCode {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let (url, secret, app) = (
        var("PAAS_HOOK_URL"),
        var("PAAS_HOOK_SECRET"),
        var("PAAS_APP"),
    );
    if url.is_empty() || app.is_empty() {
        println!("This repository is served by paas: push through the paas daemon (git push paas main), not to the directory.");
        return ExitCode::FAILURE;
    }
    let code = paas::git::run_pre_receive_hook(&url, &secret, &app, tokio::io::stdin()).await;
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn token_of(c: &ClientArgs) -> Result<String, String> {
    if let Some(t) = &c.token {
        return Ok(t.clone());
    }
    std::fs::read_to_string("/var/lib/paas/admin.token")
        .map(|t| t.trim().to_string())
        .map_err(|_| "no token: set PAAS_TOKEN (the admin token paas serve printed on first start) or pass --token".to_string())
}

async fn get_json(c: &ClientArgs, path: &str) -> Result<serde_json::Value, String> {
    let token = token_of(c)?;
    let url = format!("{}{path}", c.url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("cannot reach paas at {} ({e}); is `paas serve` running? Set PAAS_URL if it listens elsewhere", c.url))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let msg = body
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or("the request failed");
        return Err(format!("{msg} (HTTP {status})"));
    }
    Ok(body)
}

async fn client_apps(c: ClientArgs) -> ExitCode {
    match get_json(&c, "/api/apps").await {
        Ok(v) if c.json => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let apps = v.as_array().cloned().unwrap_or_default();
            if apps.is_empty() {
                println!("No apps yet: git push to http://HOST/<app>.git creates one.");
            }
            for a in apps {
                let live = a["live"]["version"]
                    .as_i64()
                    .map(|v| format!("v{v}"))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<20} {:<6} {}",
                    a["name"].as_str().unwrap_or(""),
                    live,
                    a["url"].as_str().unwrap_or("")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paas: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A request that changes something: prints the deploy's progress (if
/// any), then the outcome; fails when the API says it failed.
async fn client_action(
    c: ClientArgs,
    method: reqwest::Method,
    path: String,
    body: serde_json::Value,
) -> ExitCode {
    let token = match token_of(&c) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("paas: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("{}{path}", c.url.trim_end_matches('/'));
    let resp = match reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paas: cannot reach paas at {} ({e}); is `paas serve` running? Set PAAS_URL if it listens elsewhere", c.url);
            return ExitCode::FAILURE;
        }
    };
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if c.json {
        println!("{v:#}");
    } else {
        if let Some(log) = v["log"].as_str() {
            print!("{log}");
        }
        if let Some(m) = v["message"].as_str() {
            println!("{m}");
        }
    }
    if status.is_success() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "paas: {} (HTTP {status})",
            v["error"].as_str().unwrap_or("the request failed")
        );
        ExitCode::FAILURE
    }
}

async fn client_config(c: ClientArgs, app: String) -> ExitCode {
    match get_json(&c, &format!("/api/apps/{app}/config")).await {
        Ok(v) if c.json => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let vars = v.as_object().cloned().unwrap_or_default();
            if vars.is_empty() {
                println!(
                    "{app} has no config vars: `paas config:set --app {app} KEY=VALUE` sets one."
                );
            }
            for (k, val) in vars {
                println!("{k}={}", val.as_str().unwrap_or(""));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paas: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn client_releases(c: ClientArgs, app: String) -> ExitCode {
    match get_json(&c, &format!("/api/apps/{app}/releases")).await {
        Ok(v) if c.json => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            for r in v.as_array().cloned().unwrap_or_default() {
                println!(
                    "v{:<4} {:<16} {:<8} {:<24} {}",
                    r["version"].as_i64().unwrap_or(0),
                    r["status"].as_str().unwrap_or(""),
                    r["commit"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(7)
                        .collect::<String>(),
                    r["description"].as_str().unwrap_or(""),
                    r["error"].as_str().unwrap_or("")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paas: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>>>>;

/// Runs one data command (paas::data::cli_*) and prints its answer.
async fn client_data(c: &ClientArgs, run: impl FnOnce(String, String) -> CliFuture) -> ExitCode {
    let token = match token_of(c) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("paas: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(c.url.clone(), token).await {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paas: {e}");
            ExitCode::FAILURE
        }
    }
}
