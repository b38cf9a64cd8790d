//! One-off commands (`paas run`) and the app's processes (`paas ps`).
//!
//! `paas run -- CMD ARGS` starts a container from the live release's image
//! with the app's environment (plus `-e K=V` extras), its `/data` volume and
//! its network, labelled `paas.process=run`, and removes it afterwards. The
//! plain API streams the output as text and ends with one line
//! `paas-run-exit: N` (N is the command's exit code); a client that goes
//! away stops and removes the container.

use crate::ctx::Ctx;
use crate::docker::ContainerSpec;
use crate::http_error::{find_app, internal, ApiError};
use crate::layout::valid_var_name;
use crate::store::{App, Release};
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
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
        .route("/api/apps/{app}/run/tty", get(api_run_tty))
        .route("/api/apps/{app}/logs", get(api_logs))
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

// ---------------------------------------------------------------- logs

/// `GET /api/apps/{app}/logs` query.
#[derive(Deserialize, Debug)]
pub struct LogsQuery {
    /// Keep the stream open and send new lines as they come.
    #[serde(default)]
    pub follow: bool,
    /// Lines of each container's past output to start with (default 100).
    pub tail: Option<usize>,
    /// Only this process (`web`, `worker`, …).
    pub process: Option<String>,
}

/// `GET /api/apps/{app}/logs?follow=true&tail=100&process=web`: the output
/// of the live release's processes (web and Procfile processes), each line
/// prefixed with `[process] `, as plain text; with `follow` the answer
/// stays open until those containers stop.
async fn api_logs(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogsQuery>,
) -> Result<Response, ApiError> {
    use futures_util::StreamExt;
    let app = find_app(&ctx, &name)?;
    let live = live_release(&ctx, &app)?;
    let version = live.version.to_string();
    let containers = ctx
        .docker
        .list_containers(&[
            ("paas.app", app.name.as_str()),
            ("paas.release", version.as_str()),
        ])
        .await
        .map_err(internal)?;
    let mut chosen: Vec<(String, String)> = containers
        .into_iter()
        .filter_map(|c| {
            let process = c.labels.get("paas.process")?.clone();
            let wanted = match &q.process {
                Some(p) => *p == process,
                None => !matches!(process.as_str(), "run" | "release" | "data"),
            };
            wanted.then_some((process, c.id))
        })
        .collect();
    chosen.sort();
    if chosen.is_empty() {
        let what = q.process.as_deref().unwrap_or("process");
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "v{} of {} has no {what} container: `paas ps` lists what runs",
                live.version, app.name
            ),
        ));
    }
    let tail = q.tail.unwrap_or(100).min(10_000);
    let streams = chosen.into_iter().map(|(process, id)| {
        let prefix = format!("[{process}] ");
        let lines = if q.follow {
            ctx.docker.follow_logs(&id, tail).boxed()
        } else {
            let docker = ctx.docker.clone();
            futures_util::stream::once(async move { docker.logs_tail(&id, tail).await })
                .flat_map(|r| match r {
                    Ok(lines) => futures_util::stream::iter(lines.into_iter().map(Ok)).boxed(),
                    Err(e) => futures_util::stream::iter([Err(e)]).boxed(),
                })
                .boxed()
        };
        lines.map(move |line| {
            let text = match line {
                Ok(l) => format!("{prefix}{}\n", l.trim_end_matches(['\r', '\n'])),
                Err(e) => format!("{prefix}(paas: reading the logs failed: {e})\n"),
            };
            Ok::<_, std::io::Error>(bytes::Bytes::from(text))
        })
    });
    Ok(text_stream(futures_util::stream::select_all(streams)))
}

/// A plain-text answer streamed as it is made (never cached).
fn text_stream<S>(stream: S) -> Response
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
{
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
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
        network: Some(crate::layout::network_name(&app.name)),
        restart_unless_stopped: false,
        ..crate::deploy::confined_app(&ctx.config)
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
            &crate::layout::network_name(&app.name),
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
    Ok(text_stream(stream))
}

// ---------------------------------------------------------------- TTY

/// The first message of a `paas run` terminal session (WebSocket text).
#[derive(Deserialize, Debug)]
pub struct TtyStart {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "default_cols")]
    pub cols: u16,
    #[serde(default = "default_rows")]
    pub rows: u16,
}

fn default_cols() -> u16 {
    80
}
fn default_rows() -> u16 {
    24
}

/// `GET /api/apps/{app}/run/tty` (WebSocket): an interactive one-off
/// command on a terminal. The client sends a [`TtyStart`] text message,
/// then its keystrokes as binary messages and `{"resize": [cols, rows]}`
/// text messages; paas sends the terminal's output as binary messages and
/// ends with `{"exit": N}` (or `{"error": "..."}`). A client that goes
/// away ends the command and removes its container.
///
/// Only a token opens it, never a dashboard session: a browser page cannot
/// add the header, so a forged cross-site WebSocket gets nowhere.
async fn api_run_tty(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let app = find_app(&ctx, &name)?;
    let live = live_release(&ctx, &app)?;
    Ok(ws.on_upgrade(move |socket| async move {
        tty_session(ctx, app, live, socket).await;
    }))
}

async fn tty_session(ctx: Arc<Ctx>, app: App, live: Release, socket: WebSocket) {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    let (mut tx, mut rx) = socket.split();
    let say = |v: serde_json::Value| Message::Text(v.to_string().into());
    let start = match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<TtyStart>(&t),
        _ => return,
    };
    let start = match start {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("the terminal session must start with {{\"command\": [...]}} ({e})");
            let _ = tx.send(say(serde_json::json!({ "error": msg }))).await;
            return;
        }
    };
    let spec = match one_off_spec(&ctx, &app, &live, start.command, &start.env) {
        Ok(s) => s,
        Err(ApiError(_, msg)) => {
            let _ = tx.send(say(serde_json::json!({ "error": msg }))).await;
            return;
        }
    };
    let network = crate::layout::network_name(&app.name);
    let labels = [("paas.app".to_string(), app.name.clone())];
    let attached = match ctx.docker.ensure_network(&network, &labels).await {
        Ok(()) => {
            ctx.docker
                .start_attached(&spec, start.cols, start.rows)
                .await
        }
        Err(e) => Err(e),
    };
    let mut attached = match attached {
        Ok(a) => a,
        Err(e) => {
            let msg = format!("the command could not start: {e}");
            let _ = tx.send(say(serde_json::json!({ "error": msg }))).await;
            return;
        }
    };
    tracing::info!(app = %app.name, release = live.version, "one-off terminal session started");
    loop {
        tokio::select! {
            out = attached.output.next() => match out {
                Some(Ok(bytes)) => {
                    if tx.send(Message::Binary(bytes)).await.is_err() {
                        return; // the client left: dropping `attached` removes the container
                    }
                }
                // The command ended (its terminal closed).
                Some(Err(_)) | None => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if attached.input.write_all(&b).await.is_err() {
                        break;
                    }
                    let _ = attached.input.flush().await;
                }
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                    if let (Some(c), Some(r)) = (v["resize"][0].as_u64(), v["resize"][1].as_u64()) {
                        let (c, r) = (c.min(u16::MAX as u64) as u16, r.min(u16::MAX as u64) as u16);
                        let _ = ctx.docker.resize_tty(&attached.id, c, r).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
    let end = match ctx.docker.finish_attached(attached).await {
        Ok(code) => serde_json::json!({ "exit": code }),
        Err(e) => {
            serde_json::json!({ "error": format!("the command's exit code is unknown: {e}") })
        }
    };
    let _ = tx.send(say(end)).await;
    let _ = tx.close().await;
}

// ---------------------------------------------------------------- client

/// Why the client could not get an exit code: (sentence, usage error?).
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
