//! The `paas` command: the daemon (`paas serve`), the git hook it installs,
//! and a small client for the API.

use clap::{Parser, Subcommand};
use paas::client::{self, app_name, ClientError, Target};
use paas::config::{Config, Overrides};
use std::collections::BTreeMap;
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
    /// Git's credential helper (set up by `paas login`; git runs it):
    /// answers `get` with the saved login's token for its URL.
    #[command(name = "git-credential", hide = true)]
    GitCredential {
        /// get, store or erase (git's operations; only get answers).
        operation: String,
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
    /// The app's scheduled jobs ([cron.NAME] in paas.toml): schedule, next
    /// run, last result and duration; a failing job's output.
    Cron {
        #[command(flatten)]
        client: ClientArgs,
        /// The app [default: from the `paas` git remote here].
        #[arg(long, short)]
        app: Option<String>,
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
    /// Copy every backup, encrypted, to S3-compatible storage (the
    /// passphrase is $PAAS_BACKUP_PASSPHRASE, else the one paas has, else a new one).
    #[command(name = "backups:offsite:set")]
    BackupsOffsiteSet {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        s3: S3Args,
        /// The passphrase backups are encrypted under (12 characters or more).
        #[arg(long, env = "PAAS_BACKUP_PASSPHRASE", hide_env_values = true)]
        passphrase: Option<String>,
    },
    /// Show where offsite copies go (never the secret).
    #[command(name = "backups:offsite")]
    BackupsOffsite {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the backup passphrase and how to decrypt a backup by hand.
    #[command(name = "backups:offsite:key")]
    BackupsOffsiteKey {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore the latest offsite copy into a scratch database and check it
    /// (every app, or one); fails when a drill fails.
    #[command(name = "backups:drill")]
    BackupsDrill {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this app [default: every app with data].
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Put everything needed to rebuild this server offsite, encrypted
    /// (also daily): the store, the git repositories, each app's data.
    #[command(name = "server:backup")]
    ServerBackup {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// On a fresh install: bring every app back from the latest server
    /// backup (passphrase from $PAAS_BACKUP_PASSPHRASE, else asked).
    #[command(name = "server:restore")]
    ServerRestore {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        s3: S3Args,
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
    /// With --app, a deploy-only token: it may push to and read that app, nothing else.
    #[command(name = "tokens:create")]
    TokensCreate {
        #[command(flatten)]
        client: ClientArgs,
        /// A name to tell it by, e.g. laptop.
        #[arg(long)]
        name: String,
        /// Make a deploy-only token for this app (for CI): git push and read-only API.
        #[arg(long = "app", value_name = "APP")]
        scope_app: Option<String>,
    },
    /// Revoke an API token, and every token it made: they stop working at once.
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
    /// Disk use per app (images, volume, backups, logs) and of the data dir's disk.
    #[command(name = "system:df")]
    SystemDf {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove what paas made and no longer needs (old release images, stopped
    /// containers, old static files); paas does it after pushes and daily too.
    #[command(name = "system:prune")]
    SystemPrune {
        #[command(flatten)]
        client: ClientArgs,
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
    /// The HTTPS listener for paas.<domain>, or off [default: off; paas does not speak TLS yet].
    #[arg(long, env = "PAAS_HTTPS")]
    https: Option<String>,
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
    /// CPU limit of each app container, in CPUs (e.g. 0.5) [default: 1].
    #[arg(long, env = "PAAS_CPUS")]
    cpus: Option<f64>,
    /// Most processes and threads each app container may hold [default: 256].
    #[arg(long, env = "PAAS_PIDS_LIMIT")]
    pids_limit: Option<u64>,
    /// Memory limit of each image build step, in MiB, swap included [default: 768].
    #[arg(long, env = "PAAS_BUILD_MEMORY_MB")]
    build_memory_mb: Option<u64>,
    /// CPU limit of each image build step, in CPUs [default: 1].
    #[arg(long, env = "PAAS_BUILD_CPUS")]
    build_cpus: Option<f64>,
    /// Failed logins and wrong tokens one address may send in 15 minutes
    /// before it is refused until they age out [default: 10].
    #[arg(long, env = "PAAS_AUTH_FAILURE_LIMIT")]
    auth_failure_limit: Option<usize>,
}

/// An S3-compatible location and its keys.
#[derive(clap::Args)]
struct S3Args {
    /// s3://BUCKET or s3://BUCKET/FOLDER
    #[arg(value_name = "S3_URL")]
    location: String,
    /// The storage's URL, e.g. https://s3.eu-central-003.backblazeb2.com
    #[arg(long)]
    endpoint: String,
    /// The bucket's region [default: us-east-1, which most S3-compatible storage accepts].
    #[arg(long)]
    region: Option<String>,
    #[arg(long, env = "PAAS_S3_ACCESS_KEY_ID")]
    access_key_id: String,
    #[arg(long, env = "PAAS_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The daemon's control URL [default: from the `paas` git remote here, else http://127.0.0.1:8300].
    #[arg(long, env = "PAAS_URL")]
    url: Option<String>,
    /// The admin token or an API token [default: the `paas` git remote's password, else the saved login, else $PAAS_DATA_DIR/admin.token (/var/lib/paas)].
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
        Command::GitCredential { operation } => finish(client::credential::run(&operation)),
        client => finish(rt.block_on(run_client(client))),
    }
}

fn finish(r: client::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Server(e)) => {
            eprintln!("paas: {e}");
            ExitCode::FAILURE
        }
        Err(ClientError::Usage(e)) => {
            eprintln!("paas: {e}");
            ExitCode::from(2)
        }
        Err(ClientError::Exit(code)) => ExitCode::from(code),
    }
}

fn target(c: &ClientArgs) -> client::Result<Target> {
    Target::resolve(c.url.clone(), c.token.clone(), c.json)
}

/// `-e KEY=VALUE` pairs of `paas run`.
fn env_pairs(env: Vec<String>) -> client::Result<BTreeMap<String, String>> {
    let mut extra = BTreeMap::new();
    for pair in env {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(ClientError::Usage(format!(
                "-e {pair:?} is not KEY=VALUE: write it as -e KEY=VALUE"
            )));
        };
        extra.insert(k.to_string(), v.to_string());
    }
    Ok(extra)
}

async fn run_client(command: Command) -> client::Result<()> {
    use client::{apps, config, data, domains, login, releases, run, system, tokens};
    match command {
        Command::Serve(_)
        | Command::Hook { .. }
        | Command::GitCredential { .. }
        | Command::Completions { .. } => {
            unreachable!("handled in main")
        }
        Command::Apps(c) => apps::list(&target(&c)?).await,
        Command::AppsCreate { client, name } => apps::create(&target(&client)?, &name).await,
        Command::AppsDestroy {
            client,
            app,
            confirm,
            no_backup,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            apps::destroy(&t, &app, confirm.as_deref(), no_backup).await
        }
        Command::Releases { client, app } => {
            releases::list(&target(&client)?, &app_name(app)?).await
        }
        Command::Rollback {
            client,
            app,
            version,
            restore_db,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            releases::rollback(&t, &app, version.as_deref(), restore_db).await
        }
        Command::Restart { client, app } => {
            releases::restart(&target(&client)?, &app_name(app)?).await
        }
        Command::Ps { client, app } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            println!("{}", run::ps(&t.url, &t.token, &app, t.json).await?);
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
            run::logs(
                &t.url,
                &t.token,
                &app,
                follow,
                tail,
                process.as_deref(),
                t.json,
            )
            .await
        }
        Command::Run {
            client,
            app,
            env,
            no_tty,
            command,
        } => {
            let extra = env_pairs(env)?;
            let (t, app) = (target(&client)?, app_name(app)?);
            use std::io::IsTerminal;
            let tty = !no_tty
                && !t.json
                && std::io::stdin().is_terminal()
                && std::io::stdout().is_terminal();
            let code = if tty {
                run::run_tty(&t.url, &t.token, &app, &command, &extra).await?
            } else {
                run::run_plain(&t.url, &t.token, &app, &command, &extra, t.json).await?
            };
            match code {
                0 => Ok(()),
                c => Err(ClientError::Exit(c.clamp(1, 255) as u8)),
            }
        }
        Command::Config { client, app } => config::show(&target(&client)?, &app_name(app)?).await,
        Command::ConfigSet { client, app, pairs } => {
            let changes = config::parse_pairs(&pairs)?;
            config::set(&target(&client)?, &app_name(app)?, changes).await
        }
        Command::ConfigUnset { client, app, keys } => {
            config::unset(&target(&client)?, &app_name(app)?, keys).await
        }
        Command::PgCreate { client, app } => {
            data::pg_create(&target(&client)?, &app_name(app)?).await
        }
        Command::PgInfo { client, app } => data::pg_info(&target(&client)?, &app_name(app)?).await,
        Command::PgDestroy {
            client,
            app,
            confirm,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data::pg_destroy(&t, &app, confirm.as_deref()).await
        }
        Command::Cron { client, app } => {
            client::cron::list(&target(&client)?, &app_name(app)?).await
        }
        Command::Backups { client, app } => data::backups(&target(&client)?, &app_name(app)?).await,
        Command::BackupsCreate { client, app } => {
            data::backup(&target(&client)?, &app_name(app)?).await
        }
        Command::BackupsOffsiteSet {
            client,
            s3,
            passphrase,
        } => {
            let body = serde_json::json!({
                "url": s3.location, "endpoint": s3.endpoint, "region": s3.region,
                "access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key,
                "passphrase": passphrase,
            });
            data::offsite_set(&target(&client)?, body).await
        }
        Command::ServerBackup { client } => data::server_backup(&target(&client)?).await,
        Command::ServerRestore { client, s3 } => {
            let mut body = serde_json::json!({
                "url": s3.location, "endpoint": s3.endpoint, "region": s3.region,
                "access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key,
            });
            body["passphrase"] = data::ask_passphrase()?.into();
            data::server_restore(&target(&client)?, body).await
        }
        Command::BackupsOffsite { client } => data::offsite_show(&target(&client)?).await,
        Command::BackupsOffsiteKey { client } => data::offsite_key(&target(&client)?).await,
        Command::BackupsDrill { client, app } => {
            data::drill(&target(&client)?, app.as_deref()).await
        }
        Command::BackupsRestore {
            client,
            app,
            id,
            confirm,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            data::restore(&t, &app, &id, confirm.as_deref()).await
        }
        Command::Tokens(c) => tokens::list(&target(&c)?).await,
        Command::TokensCreate {
            client,
            name,
            scope_app,
        } => {
            tokens::check_name(&name)?;
            tokens::create(&target(&client)?, &name, scope_app.as_deref()).await
        }
        Command::TokensRevoke { client, name } => tokens::revoke(&target(&client)?, &name).await,
        Command::Login { url, token } => login::login(&url, token).await,
        Command::SystemDf { client } => system::df(&target(&client)?).await,
        Command::SystemPrune { client } => system::prune(&target(&client)?).await,
        Command::Domains { client, app } => domains::list(&target(&client)?, &app_name(app)?).await,
        Command::DomainsAdd {
            client,
            app,
            domain,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            domains::add(&t, &app, &domain).await
        }
        Command::DomainsRemove {
            client,
            app,
            domain,
        } => {
            let (t, app) = (target(&client)?, app_name(app)?);
            domains::remove(&t, &app, &domain).await
        }
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
        https: a.https,
        build_network: a.build_network,
        image_pattern: a.image_pattern,
        drain_timeout_secs: a.drain_timeout_secs,
        memory_mb: a.memory_mb,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        build_memory_mb: a.build_memory_mb,
        build_cpus: a.build_cpus,
        auth_failure_limit: a.auth_failure_limit,
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
