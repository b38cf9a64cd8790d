//! One-off commands (`paas run`) and the app's processes (`paas ps`).
//!
//! `paas run -- CMD ARGS` starts a container from the live release's image
//! with the app's environment (plus `-e K=V` extras), its `/data` volume and
//! its network, labelled `paas.process=run`, and removes it afterwards. The
//! plain API streams the output as text and ends with one line
//! `paas-run-exit: N` (N is the command's exit code); a client that goes
//! away stops and removes the container.

use crate::api::{find_app, ApiError};
use crate::docker::ContainerSpec;
use crate::server::Ctx;
use crate::store::{App, Release};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The last line of a `POST /api/apps/{app}/run` stream: `paas-run-exit: N`.
pub const EXIT_PREFIX: &str = "paas-run-exit: ";
/// The longest a one-off command may run.
const RUN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The routes of this module (listed in `api::ROUTES`).
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/api/apps/{app}/ps", get(api_ps))
        .route("/api/apps/{app}/run", post(api_run))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

// ---------------------------------------------------------------- ps

/// One container of an app, as `paas ps` shows it.
#[derive(Serialize, Debug)]
pub struct ProcessView {
    /// `web`, a Procfile name (`worker`), `run`, `release` or `data`.
    pub process: String,
    /// The release it belongs to (none for data jobs).
    pub release: Option<i64>,
    pub name: String,
    /// Short container id.
    pub id: String,
    /// `running`, `exited`, `restarting`, …
    pub state: String,
    /// The engine's phrase: `Up 3 minutes`, `Exited (1) 2 seconds ago`.
    pub status: String,
    pub created_at: i64,
    /// Seconds since it was created, while it runs.
    pub uptime_secs: Option<i64>,
}

/// `GET /api/apps/{app}/ps`: the app's containers, web first, then the
/// other processes by name, newest release first.
async fn api_ps(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<ProcessView>>, ApiError> {
    let app = find_app(&ctx, &name)?;
    let list = ctx
        .docker
        .list_containers(&[("paas.app", app.name.as_str())])
        .await
        .map_err(internal)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let mut views: Vec<ProcessView> = list
        .into_iter()
        .filter_map(|c| {
            let process = c.labels.get("paas.process")?.clone();
            Some(ProcessView {
                release: c.labels.get("paas.release").and_then(|v| v.parse().ok()),
                process,
                id: c.id.chars().take(12).collect(),
                uptime_secs: (c.state == "running").then(|| (now - c.created).max(0)),
                name: c.name,
                state: c.state,
                status: c.status,
                created_at: c.created,
            })
        })
        .collect();
    views.sort_by(|a, b| {
        (a.process != "web", &a.process, std::cmp::Reverse(a.release)).cmp(&(
            b.process != "web",
            &b.process,
            std::cmp::Reverse(b.release),
        ))
    });
    Ok(Json(views))
}

/// `1h 02m`, `3m 04s`, `12s`.
pub fn format_uptime(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

// ---------------------------------------------------------------- run

/// `POST /api/apps/{app}/run` body.
#[derive(Deserialize, Debug)]
pub struct RunRequest {
    /// The command and its arguments (no shell: use `sh -c` for one).
    pub command: Vec<String>,
    /// Extra environment for this run only; wins over the app's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn valid_var_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The live release, or the sentence that says there is none.
fn live_release(ctx: &Ctx, app: &App) -> Result<Release, ApiError> {
    let live = ctx.store.live_release(&app.name).map_err(internal)?;
    live.filter(|r| r.image.is_some()).ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            format!(
                "{} has no live release yet, and `paas run` starts its container from the live release: `git push paas main` first",
                app.name
            ),
        )
    })
}

/// The container of a one-off command: the live release's image, the
/// app's env (then `extra`), volume and network.
pub fn one_off_spec(
    ctx: &Ctx,
    app: &App,
    live: &Release,
    command: Vec<String>,
    extra: &BTreeMap<String, String>,
) -> Result<ContainerSpec, ApiError> {
    if command.is_empty() || command[0].trim().is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "no command given: write it after --, e.g. `paas run -- python manage.py shell`".into(),
        ));
    }
    if let Some(k) = extra.keys().find(|k| !valid_var_name(k)) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{k:?} is not an environment variable name: use letters, digits and _, not starting with a digit"),
        ));
    }
    let vars = ctx.store.config_vars(app).map_err(internal)?;
    let mut env = crate::deploy::app_env(ctx, app, live.version, &vars);
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    let volume = crate::deploy::ensure_volume(&ctx.config.data_dir, &app.name)
        .map_err(|e| internal(format!("cannot prepare the app's data volume: {e}")))?;
    Ok(ContainerSpec {
        name: Some(format!(
            "paas-{}-run-{}",
            app.name,
            crate::auth::random_token(4).to_lowercase()
        )),
        image: live.image.clone().unwrap_or_default(),
        cmd: Some(command),
        env,
        labels: vec![
            ("paas.app".into(), app.name.clone()),
            ("paas.release".into(), live.version.to_string()),
            ("paas.process".into(), "run".into()),
        ],
        binds: vec![format!("{}:/data", volume.display())],
        network: Some(crate::deploy::network_name(&app.name)),
        restart_unless_stopped: false,
        memory_bytes: Some(ctx.config.memory_mb as i64 * 1024 * 1024),
        user: Some(crate::deploy::APP_USER.into()),
        working_dir: None,
    })
}

/// `POST /api/apps/{app}/run` `{"command": [...], "env": {...}}`: the
/// command's output as it comes, then `paas-run-exit: N`.
async fn api_run(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    Json(req): Json<RunRequest>,
) -> Result<Response, ApiError> {
    let app = find_app(&ctx, &name)?;
    let live = live_release(&ctx, &app)?;
    let spec = one_off_spec(&ctx, &app, &live, req.command, &req.env)?;
    ctx.docker
        .ensure_network(
            &crate::deploy::network_name(&app.name),
            &[("paas.app".to_string(), app.name.clone())],
        )
        .await
        .map_err(internal)?;
    tracing::info!(app = %app.name, release = live.version, "one-off command started");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let docker = ctx.docker.clone();
    tokio::spawn(async move {
        let out = tx.clone();
        let mut on_line = move |line: &str| {
            let _ = out.send(format!("{}\n", line.trim_end_matches(['\r', '\n'])));
        };
        // A client that goes away ends the run: dropping it removes the container.
        let result = tokio::select! {
            r = docker.run_to_completion(&spec, RUN_TIMEOUT, &mut on_line) => r,
            _ = tx.closed() => return,
        };
        let last = match result {
            Ok(code) => format!("{EXIT_PREFIX}{code}\n"),
            Err(e) => format!("paas: the command could not run: {e}\n{EXIT_PREFIX}1\n"),
        };
        let _ = tx.send(last);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::io::Error>(bytes::Bytes::from(line)), rx))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

// ---------------------------------------------------------------- client

/// Why the client could not get an exit code: (sentence, usage error?).
pub type CliError = (String, bool);

fn unreachable_daemon(url: &str, e: impl std::fmt::Display) -> CliError {
    (
        format!("cannot reach paas at {url} ({e}); is `paas serve` running? Set PAAS_URL if it listens elsewhere"),
        false,
    )
}

/// The server's sentence from an error answer.
async fn refusal(resp: reqwest::Response) -> CliError {
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return ("the daemon refused the token (HTTP 401): it is wrong or was revoked; set PAAS_TOKEN to the admin token or a live API token".into(), false);
    }
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    let msg = v["error"].as_str().unwrap_or("the request failed");
    (format!("{msg} (HTTP {status})"), false)
}

/// `paas run -- CMD ARGS` without a terminal: prints the command's output
/// as it comes; returns its exit code.
pub async fn cli_run_plain(
    url: &str,
    token: &str,
    app: &str,
    command: &[String],
    env: &BTreeMap<String, String>,
) -> Result<i32, CliError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/apps/{app}/run"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "command": command, "env": env }))
        .send()
        .await
        .map_err(|e| unreachable_daemon(url, e))?;
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    let mut body = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            (
                format!("the connection to paas broke before the command finished ({e})"),
                false,
            )
        })?;
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            if let Some(code) = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.strip_prefix(EXIT_PREFIX))
            {
                let _ = stdout.flush();
                return Ok(code.trim().parse().unwrap_or(1));
            }
            let _ = stdout.write_all(&line);
        }
        let _ = stdout.flush();
    }
    Err((
        "the connection to paas ended before the command finished, so its exit code is unknown"
            .into(),
        false,
    ))
}

/// `paas ps`: the app's containers as a table (or the API's JSON).
pub async fn cli_ps(url: &str, token: &str, app: &str, json: bool) -> Result<String, CliError> {
    let resp = reqwest::Client::new()
        .get(format!("{url}/api/apps/{app}/ps"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| unreachable_daemon(url, e))?;
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    let v: serde_json::Value = resp.json().await.map_err(|e| {
        (
            format!("paas answered with something unreadable ({e})"),
            false,
        )
    })?;
    if json {
        return Ok(format!("{v:#}"));
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok(format!(
            "{app} runs no containers: `git push paas main` deploys it, `paas restart -a {app}` starts a live release again"
        ));
    }
    let mut out = format!(
        "{:<10} {:<8} {:<11} {:<9} {}",
        "PROCESS", "RELEASE", "STATE", "UPTIME", "NAME"
    );
    for p in list {
        out.push_str(&format!(
            "\n{:<10} {:<8} {:<11} {:<9} {}",
            p["process"].as_str().unwrap_or(""),
            p["release"]
                .as_i64()
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "-".into()),
            p["state"].as_str().unwrap_or(""),
            p["uptime_secs"]
                .as_i64()
                .map(format_uptime)
                .unwrap_or_else(|| "-".into()),
            p["name"].as_str().unwrap_or("")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_at_a_glance() {
        assert_eq!(format_uptime(12), "12s");
        assert_eq!(format_uptime(184), "3m 04s");
        assert_eq!(format_uptime(3720), "1h 02m");
    }

    #[test]
    fn env_names() {
        assert!(valid_var_name("DJANGO_SUPERUSER_USERNAME"));
        assert!(!valid_var_name("1A"));
        assert!(!valid_var_name("A=B"));
    }
}
