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
    }
}

async fn serve(a: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAAS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
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

async fn client_releases(c: ClientArgs, app: String) -> ExitCode {
    match get_json(&c, &format!("/api/apps/{app}/releases")).await {
        Ok(v) if c.json => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            for r in v.as_array().cloned().unwrap_or_default() {
                println!(
                    "v{:<4} {:<16} {:<8} {}",
                    r["version"].as_i64().unwrap_or(0),
                    r["status"].as_str().unwrap_or(""),
                    r["commit"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(7)
                        .collect::<String>(),
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
