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
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Go back to an earlier release (default: the one before the live one): its image and config, no build, no migrations.
    Rollback {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
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
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// The app's containers: web, Procfile processes, one-off runs; state, release, uptime.
    Ps {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// The live release's output (web and Procfile processes), `[process]` before each line.
    Logs {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
        /// Keep following: print new lines as they come.
        #[arg(long, short)]
        follow: bool,
        /// Lines of past output per container to start with.
        #[arg(long, short = 'n', default_value_t = 100)]
        tail: usize,
        /// Only this process, e.g. web or worker.
        #[arg(long = "ps")]
        process: Option<String>,
    },
    /// Run a one-off command in a new container of the live release, e.g.
    /// `paas run -- python manage.py createsuperuser`; exits with its exit code.
    Run {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
        /// Extra environment for this run only: -e KEY=VALUE (repeatable).
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Stream the output without a terminal even when attached to one.
        #[arg(long)]
        no_tty: bool,
        /// The command and its arguments, after `--`.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Show the app's config vars.
    Config {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Set config vars (KEY=VALUE …); a live app restarts with them, without downtime.
    #[command(name = "config:set")]
    ConfigSet {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
        /// KEY=VALUE pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Unset config vars (KEY …); a live app restarts without them, without downtime.
    #[command(name = "config:unset")]
    ConfigUnset {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
        /// Names of the vars.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Give an app its own PostgreSQL database and set DATABASE_URL.
    #[command(name = "pg:create")]
    PgCreate {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Show an app's PostgreSQL database.
    #[command(name = "pg:info")]
    PgInfo {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Drop an app's PostgreSQL database (needs --confirm APP).
    #[command(name = "pg:destroy")]
    PgDestroy {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
        /// The app's name again: dropping cannot be undone.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// List an app's backups, newest first.
    #[command(visible_alias = "pg:backups")]
    Backups {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Back up an app's database and media files now.
    #[command(name = "backups:create", visible_alias = "pg:backup")]
    BackupsCreate {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Restore a backup into the app (needs --confirm APP).
    #[command(name = "backups:restore", visible_alias = "pg:restore")]
    BackupsRestore {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
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
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
        /// The app's name again: destroying cannot be undone.
        #[arg(long)]
        confirm: Option<String>,
        /// Do not keep a final backup of the app's data.
        #[arg(long)]
        no_backup: bool,
    },
    /// Print a shell completion script, e.g. `paas completions bash > /etc/bash_completion.d/paas`.
    Completions {
        /// The shell: bash, zsh or fish.
        shell: CompletionShell,
    },
    /// List the API tokens: name, created, last used (never the secret).
    Tokens(ClientArgs),
    /// Create an API token for the API, git and the dashboard; prints it once.
    #[command(name = "tokens:create")]
    TokensCreate {
        #[command(flatten)]
        client: ClientArgs,
        /// A name to tell it by, e.g. laptop.
        #[arg(long)]
        name: String,
    },
    /// Revoke an API token: it stops working at once.
    #[command(name = "tokens:revoke")]
    TokensRevoke {
        #[command(flatten)]
        client: ClientArgs,
        /// The token's name (`paas tokens` lists them).
        name: String,
    },
    /// Create an empty app (a first `git push` does it too).
    #[command(name = "apps:create")]
    AppsCreate {
        #[command(flatten)]
        client: ClientArgs,
        /// The app's name: a lowercase letter, then up to 29 letters, digits or hyphens.
        name: String,
    },
    /// Remember a daemon's URL and token for this user (~/.config/paas/login.json).
    Login {
        /// The daemon's control URL, e.g. http://203.0.113.7:8300.
        url: String,
        /// The token [default: asked for on the terminal].
        #[arg(long, env = "PAAS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// List an app's domains: its default one and custom ones.
    Domains {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Add a custom domain (the app restarts with it, without downtime).
    #[command(name = "domains:add")]
    DomainsAdd {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
        /// e.g. www.example.com (its DNS must point at this server).
        domain: String,
    },
    /// Remove a custom domain (the app restarts without it, without downtime).
    #[command(name = "domains:remove")]
    DomainsRemove {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
        domain: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
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
    /// The daemon's control URL [default: from the `paas` git remote here, else http://127.0.0.1:8300].
    #[arg(long, env = "PAAS_URL")]
    url: Option<String>,
    /// The admin token or an API token [default: the `paas` git remote's password, else /var/lib/paas/admin.token].
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
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "paas", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        client => finish(rt.block_on(run_client(client))),
    }
}

/// How a client command ends: 0 done, 1 the server refused or failed (or
/// cannot be reached), 2 the command was not usable as given.
enum Fail {
    Usage(String),
    Server(String),
    /// A one-off command's own exit code (`paas run`), passed on silently.
    Exit(u8),
}

fn finish(r: Result<(), Fail>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Server(e)) => {
            eprintln!("paas: {e}");
            ExitCode::FAILURE
        }
        Err(Fail::Usage(e)) => {
            eprintln!("paas: {e}");
            ExitCode::from(2)
        }
        Err(Fail::Exit(code)) => ExitCode::from(code),
    }
}

async fn run_client(command: Command) -> Result<(), Fail> {
    use reqwest::Method;
    match command {
        Command::Serve(_) | Command::Hook { .. } | Command::Completions { .. } => {
            unreachable!("handled in main")
        }
        Command::Apps(c) => {
            let t = target(&c)?;
            let v = t.call(Method::GET, "/api/apps", None).await?;
            if t.json {
                return print_json(&v);
            }
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
            Ok(())
        }
        Command::Releases { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            let v = t
                .call(Method::GET, &format!("/api/apps/{app}/releases"), None)
                .await?;
            if t.json {
                return print_json(&v);
            }
            let rels = v.as_array().cloned().unwrap_or_default();
            if rels.is_empty() {
                println!("{app} has no releases yet: `git push paas main` deploys it.");
            }
            for r in rels {
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
            Ok(())
        }
        Command::Rollback {
            client,
            app,
            version,
            restore_db,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            let body = match version {
                None => serde_json::json!({ "restore_db": restore_db }),
                Some(v) => match v.trim_start_matches('v').parse::<i64>() {
                    Ok(n) => serde_json::json!({ "version": n, "restore_db": restore_db }),
                    Err(_) => {
                        return Err(Fail::Usage(format!(
                            "{v:?} is not a release like v3: `paas releases --app {app}` lists them"
                        )))
                    }
                },
            };
            t.action(Method::POST, &format!("/api/apps/{app}/rollback"), body)
                .await
        }
        Command::Restart { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            t.action(
                Method::POST,
                &format!("/api/apps/{app}/restart"),
                serde_json::json!({}),
            )
            .await
        }
        Command::Ps { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            let text = paas::run::cli_ps(&t.url, &t.token, &app, t.json)
                .await
                .map_err(cli_fail)?;
            println!("{text}");
            Ok(())
        }
        Command::Logs {
            client,
            app,
            follow,
            tail,
            process,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            paas::run::cli_logs(&t.url, &t.token, &app, follow, tail, process.as_deref())
                .await
                .map_err(cli_fail)
        }
        Command::Run {
            client,
            app,
            env,
            no_tty,
            command,
        } => {
            let mut extra = std::collections::BTreeMap::new();
            for pair in env {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(Fail::Usage(format!(
                        "-e {pair:?} is not KEY=VALUE: write it as -e KEY=VALUE"
                    )));
                };
                extra.insert(k.to_string(), v.to_string());
            }
            let (t, app) = (target(&client)?, app_name(app)?);
            use std::io::IsTerminal;
            let tty = !no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
            let code = if tty {
                paas::run::cli_run_tty(&t.url, &t.token, &app, &command, &extra).await
            } else {
                paas::run::cli_run_plain(&t.url, &t.token, &app, &command, &extra).await
            }
            .map_err(cli_fail)?;
            match code {
                0 => Ok(()),
                c => Err(Fail::Exit(c.clamp(1, 255) as u8)),
            }
        }
        Command::Config { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            let v = t
                .call(Method::GET, &format!("/api/apps/{app}/config"), None)
                .await?;
            if t.json {
                return print_json(&v);
            }
            let vars = v.as_object().cloned().unwrap_or_default();
            if vars.is_empty() {
                println!(
                    "{app} has no config vars: `paas config:set --app {app} KEY=VALUE` sets one."
                );
            }
            for (k, val) in vars {
                println!("{k}={}", val.as_str().unwrap_or(""));
            }
            Ok(())
        }
        Command::ConfigSet { client, app, pairs } => {
            let mut changes = serde_json::Map::new();
            for pair in pairs {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(Fail::Usage(format!(
                        "{pair:?} is not KEY=VALUE: write it as KEY=VALUE (quote values with spaces)"
                    )));
                };
                changes.insert(k.to_string(), serde_json::json!(v));
            }
            let (t, app) = (target(&client)?, app_name(app)?);
            t.action(
                Method::PATCH,
                &format!("/api/apps/{app}/config"),
                serde_json::Value::Object(changes),
            )
            .await
        }
        Command::ConfigUnset { client, app, keys } => {
            let changes: serde_json::Map<String, serde_json::Value> = keys
                .into_iter()
                .map(|k| (k, serde_json::Value::Null))
                .collect();
            let (t, app) = (target(&client)?, app_name(app)?);
            t.action(
                Method::PATCH,
                &format!("/api/apps/{app}/config"),
                serde_json::Value::Object(changes),
            )
            .await
        }
        Command::PgCreate { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data_done(paas::client::data::cli_pg_create(&t.url, &t.token, &app).await)
        }
        Command::PgInfo { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data_done(paas::client::data::cli_pg_info(&t.url, &t.token, &app).await)
        }
        Command::PgDestroy {
            client,
            app,
            confirm,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data_done(
                paas::client::data::cli_pg_destroy(&t.url, &t.token, &app, confirm.as_deref())
                    .await,
            )
        }
        Command::Backups { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data_done(paas::client::data::cli_backups(&t.url, &t.token, &app).await)
        }
        Command::BackupsCreate { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data_done(paas::client::data::cli_backup(&t.url, &t.token, &app).await)
        }
        Command::BackupsRestore {
            client,
            app,
            id,
            confirm,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data_done(
                paas::client::data::cli_restore(&t.url, &t.token, &app, &id, confirm.as_deref())
                    .await,
            )
        }
        Command::AppsDestroy {
            client,
            app,
            confirm,
            no_backup,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data_done(
                paas::client::data::cli_destroy(
                    &t.url,
                    &t.token,
                    &app,
                    confirm.as_deref(),
                    no_backup,
                )
                .await,
            )
        }
        Command::Tokens(c) => {
            let t = target(&c)?;
            let v = t.call(Method::GET, "/api/tokens", None).await?;
            if t.json {
                return print_json(&v);
            }
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("No API tokens yet: `paas tokens:create --name laptop` makes one.");
                return Ok(());
            }
            println!("{:<24} {:<22} LAST USED", "NAME", "CREATED");
            for tk in list {
                let when = |k: &str| {
                    tk[k]
                        .as_i64()
                        .map(paas::dashboard::format_time)
                        .unwrap_or_else(|| "never".into())
                };
                println!(
                    "{:<24} {:<22} {}",
                    tk["name"].as_str().unwrap_or(""),
                    when("created_at"),
                    when("last_used_at")
                );
            }
            Ok(())
        }
        Command::TokensCreate { client, name } => {
            if let Err(e) = paas::tokens::validate_name(&name) {
                return Err(Fail::Usage(e));
            }
            let t = target(&client)?;
            let v = t
                .call(
                    Method::POST,
                    "/api/tokens",
                    Some(serde_json::json!({ "name": name })),
                )
                .await?;
            if t.json {
                return print_json(&v);
            }
            // The secret goes alone to stdout (for scripts); the advice to stderr.
            println!("{}", v["token"].as_str().unwrap_or(""));
            eprintln!(
                "Token {name} created. It is shown only now: keep it, e.g. export PAAS_TOKEN=<it>, or use it as the password of the paas git remote."
            );
            Ok(())
        }
        Command::TokensRevoke { client, name } => {
            let t = target(&client)?;
            let v = t
                .call(Method::DELETE, &format!("/api/tokens/{name}"), None)
                .await?;
            if t.json {
                return print_json(&v);
            }
            println!("{}", v["message"].as_str().unwrap_or("revoked"));
            Ok(())
        }
        Command::AppsCreate { client, name } => {
            let t = target(&client)?;
            let body = serde_json::json!({ "name": name });
            let v = t.call(Method::POST, "/api/apps", Some(body)).await?;
            if t.json {
                return print_json(&v);
            }
            println!("{}", v["message"].as_str().unwrap_or("created"));
            println!("  git remote add paas {}/{name}.git", t.url);
            println!("  git push paas main");
            Ok(())
        }
        Command::Login { url, token } => login(&url, token).await,
        Command::Domains { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            let v = t
                .call(Method::GET, &format!("/api/apps/{app}/domains"), None)
                .await?;
            if t.json {
                return print_json(&v);
            }
            println!("{} (default)", v["default"].as_str().unwrap_or(""));
            for d in v["domains"].as_array().cloned().unwrap_or_default() {
                println!("{}", d.as_str().unwrap_or(""));
            }
            Ok(())
        }
        Command::DomainsAdd {
            client,
            app,
            domain,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            let body = serde_json::json!({ "domain": domain });
            let v = t
                .call(
                    Method::POST,
                    &format!("/api/apps/{app}/domains"),
                    Some(body),
                )
                .await?;
            if t.json {
                return print_json(&v);
            }
            println!("{}", v["message"].as_str().unwrap_or("added"));
            Ok(())
        }
        Command::DomainsRemove {
            client,
            app,
            domain,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            let v = t
                .call(
                    Method::DELETE,
                    &format!("/api/apps/{app}/domains/{domain}"),
                    None,
                )
                .await?;
            if t.json {
                return print_json(&v);
            }
            println!("{}", v["message"].as_str().unwrap_or("removed"));
            Ok(())
        }
    }
}

/// Where `paas login` keeps the URL and token: `$XDG_CONFIG_HOME/paas` or
/// `~/.config/paas`, file mode 0600.
fn login_file() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config")))?;
    Some(base.join("paas").join("login.json"))
}

/// The saved login: (url, token).
fn saved_login() -> Option<(String, String)> {
    let text = std::fs::read_to_string(login_file()?).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((
        v["url"].as_str()?.to_string(),
        v["token"].as_str()?.to_string(),
    ))
}

/// Reads a token from the terminal without echoing it.
fn ask_token() -> Result<String, Fail> {
    use std::io::{BufRead, IsTerminal, Write};
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        eprint!("Token (the admin token, or one from `paas tokens:create`): ");
        let _ = std::io::stderr().flush();
        stty("-echo");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    read.map_err(|e| Fail::Usage(format!("cannot read the token: {e}")))?;
    let token = line.trim().to_string();
    if token.is_empty() {
        return Err(Fail::Usage(
            "no token given: type it at the prompt or pass --token".into(),
        ));
    }
    Ok(token)
}

async fn login(url: &str, token: Option<String>) -> Result<(), Fail> {
    let url = url.trim().trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Fail::Usage(format!(
            "{url:?} is not a URL: give the daemon's control URL, like http://203.0.113.7:8300"
        )));
    }
    let token = match token {
        Some(t) => t,
        None => ask_token()?,
    };
    let t = Target {
        url: url.clone(),
        token: token.clone(),
        json: false,
    };
    // Proves the URL and the token before anything is saved.
    t.call(reqwest::Method::GET, "/api/apps", None).await?;
    let file = login_file().ok_or_else(|| {
        Fail::Usage("no home directory to save the login in: set HOME or XDG_CONFIG_HOME".into())
    })?;
    let save = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(file.parent().expect("a file has a parent"))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)?;
        f.write_all(
            serde_json::json!({ "url": url, "token": token })
                .to_string()
                .as_bytes(),
        )
    };
    save()
        .map_err(|e| Fail::Server(format!("cannot save the login in {}: {e}", file.display())))?;
    println!("Logged in to {url}; saved in {}.", file.display());
    Ok(())
}

fn print_json(v: &serde_json::Value) -> Result<(), Fail> {
    println!("{v:#}");
    Ok(())
}

fn cli_fail((msg, usage): paas::run::CliError) -> Fail {
    if usage {
        Fail::Usage(msg)
    } else {
        Fail::Server(msg)
    }
}

fn data_done(r: Result<String, String>) -> Result<(), Fail> {
    match r {
        Ok(text) => {
            println!("{text}");
            Ok(())
        }
        Err(e) => Err(Fail::Server(e)),
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

/// What `git remote get-url paas` says about the app and the daemon.
#[derive(Debug, PartialEq, Eq)]
struct Remote {
    /// scheme://host[:port] of the daemon, without credentials.
    base: String,
    app: String,
    /// The password of the remote's URL, when it carries one (a token).
    password: Option<String>,
}

/// `http://paas:TOKEN@host:8300/blog.git` → base `http://host:8300`, app `blog`.
fn parse_remote(url: &str) -> Option<Remote> {
    let (scheme, rest) = url.trim().split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = rest.split_once('/')?;
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let app = path.trim_end_matches('/').strip_suffix(".git")?;
    if app.is_empty() || app.contains('/') || hostport.is_empty() {
        return None;
    }
    let password = userinfo
        .and_then(|u| u.split_once(':'))
        .map(|(_, p)| p.to_string())
        .filter(|p| !p.is_empty());
    Some(Remote {
        base: format!("{scheme}://{hostport}"),
        app: app.to_string(),
        password,
    })
}

/// The `paas` git remote of the current directory, if any.
fn git_remote() -> Option<Remote> {
    let out = std::process::Command::new("git")
        .args(["remote", "get-url", "paas"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_remote(&String::from_utf8_lossy(&out.stdout))
}

fn app_name(given: Option<String>) -> Result<String, Fail> {
    if let Some(app) = given {
        return Ok(app);
    }
    git_remote().map(|r| r.app).ok_or_else(|| {
        Fail::Usage("no --app given and no `paas` git remote here: pass --app NAME or run inside the app's git checkout".into())
    })
}

/// Where and as whom a client command talks to the daemon.
struct Target {
    url: String,
    token: String,
    json: bool,
}

fn target(c: &ClientArgs) -> Result<Target, Fail> {
    let remote = git_remote();
    let saved = saved_login();
    let url = c
        .url
        .clone()
        .or_else(|| remote.as_ref().map(|r| r.base.clone()))
        .or_else(|| saved.as_ref().map(|(u, _)| u.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:8300".into());
    let url = url.trim_end_matches('/').to_string();
    // The remote's password is a token for the daemon the remote points at;
    // so is the saved login's, for its daemon.
    let remote_token = remote.filter(|r| r.base == url).and_then(|r| r.password);
    let saved_token = saved.filter(|(u, _)| *u == url).map(|(_, t)| t);
    let token = match (&c.token, remote_token.or(saved_token)) {
        (Some(t), _) => t.clone(),
        (None, Some(t)) => t,
        (None, None) => std::fs::read_to_string("/var/lib/paas/admin.token")
            .map(|t| t.trim().to_string())
            .map_err(|_| Fail::Usage("no token: set PAAS_TOKEN (the admin token paas serve printed on first start, or one from `paas tokens:create`), run `paas login URL`, or pass --token".into()))?,
    };
    Ok(Target {
        url,
        token,
        json: c.json,
    })
}

impl Target {
    /// One API request; the parsed JSON answer, or the server's sentence.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Fail> {
        let (status, v) = self.send(method, path, body).await?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(server_error(status, &v))
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(reqwest::StatusCode, serde_json::Value), Fail> {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            Fail::Server(format!(
                "cannot reach paas at {} ({e}); is `paas serve` running? Set PAAS_URL if it listens elsewhere",
                self.url
            ))
        })?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or_default()))
    }

    /// A request that changes something: prints the deploy's progress (if
    /// any), then the outcome; fails when the API says it failed.
    async fn action(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> Result<(), Fail> {
        let (status, v) = self.send(method, path, Some(body)).await?;
        if self.json {
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
            Ok(())
        } else {
            Err(server_error(status, &v))
        }
    }
}

fn server_error(status: reqwest::StatusCode, v: &serde_json::Value) -> Fail {
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Fail::Server(
            "the daemon refused the token (HTTP 401): it is wrong or was revoked; set PAAS_TOKEN to the admin token or a live API token".into(),
        );
    }
    let msg = v["error"].as_str().unwrap_or("the request failed");
    Fail::Server(format!("{msg} (HTTP {status})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_name_the_app_and_the_daemon() {
        assert_eq!(
            parse_remote("http://paas:s3cret@example.org:8300/blog.git\n"),
            Some(Remote {
                base: "http://example.org:8300".into(),
                app: "blog".into(),
                password: Some("s3cret".into()),
            })
        );
        let r = parse_remote("https://host/shop.git").unwrap();
        assert_eq!((r.base.as_str(), r.app.as_str()), ("https://host", "shop"));
        assert_eq!(r.password, None);
        assert_eq!(parse_remote("git@github.com:me/blog.git"), None);
        assert_eq!(parse_remote("http://host/a/blog.git"), None);
        assert_eq!(parse_remote("http://host/blog"), None);
    }
}
