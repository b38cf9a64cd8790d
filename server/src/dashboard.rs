//! The dashboard: server-rendered tera templates from web-ui/, embedded in the
//! binary. Log in with the admin token; a session cookie (HttpOnly,
//! SameSite=Strict) carries the login. Pages: apps, an app's releases, one
//! release's log.

use crate::api::{app_view, ReleaseView};
use crate::ctx::Ctx;
use crate::http_error::{internal, ApiError};
use axum::extract::{ConnectInfo, Form, FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use tera::{Context, Tera};

use crate::auth::{session_cookie, COOKIE};
/// A one-shot result message for the next page (set by an action, shown and
/// cleared by the app page): `ok.<base64url>` or `error.<base64url>`.
const FLASH: &str = "paas_flash";

fn templates() -> &'static Tera {
    static TERA: OnceLock<Tera> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut t = Tera::default();
        t.add_raw_templates(vec![
            (
                "base.html",
                include_str!("../../web-ui/templates/base.html"),
            ),
            (
                "login.html",
                include_str!("../../web-ui/templates/login.html"),
            ),
            (
                "apps.html",
                include_str!("../../web-ui/templates/apps.html"),
            ),
            ("app.html", include_str!("../../web-ui/templates/app.html")),
            (
                "release.html",
                include_str!("../../web-ui/templates/release.html"),
            ),
            (
                "disk.html",
                include_str!("../../web-ui/templates/disk.html"),
            ),
        ])
        .expect("the embedded templates parse (checked by a unit test)");
        t
    })
}

/// The dashboard's routes (merged into the control-plane router).
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/", get(apps_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/apps/{app}", get(app_page))
        .route("/apps/{app}/releases/{version}", get(release_page))
        .route("/status", get(status_json))
        .route("/system/disk", get(disk_page))
        .route(
            "/apps/{app}/releases/{version}/log",
            get(release_log_events),
        )
        .route("/apps/{app}/logs", get(runtime_log_events))
        .route("/apps/{app}/rollback", post(rollback_action))
        .route("/apps/{app}/restart", post(restart_action))
        .route("/apps/{app}/backups", post(backup_action))
        .route("/metrics", get(metrics))
}

/// Prometheus text format: the proxy's request counts and latency histogram
/// per app, deploys by result and their durations. Needs credentials.
async fn metrics(State(ctx): State<Arc<Ctx>>, _headers: HeaderMap) -> Response {
    let apps = match ctx.store.apps() {
        Ok(a) => a,
        Err(e) => return internal(e).into_response(),
    };
    let mut releases = Vec::new();
    for a in &apps {
        match ctx.store.releases(&a.name) {
            Ok(r) => releases.push((a.name.clone(), r)),
            Err(e) => return internal(e).into_response(),
        }
    }
    let body = render_metrics(&ctx.routes.stats(), &releases);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The metrics page from the proxy's counters and the release history.
pub fn render_metrics(
    stats: &[(String, crate::proxy::AppStats)],
    releases: &[(String, Vec<crate::store::Release>)],
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    o.push_str(
        "# HELP paas_http_requests_total Requests the proxy answered, by app and status class.\n",
    );
    o.push_str("# TYPE paas_http_requests_total counter\n");
    for (app, s) in stats {
        for (class, n) in [
            ("1xx", s.status_1xx),
            ("2xx", s.status_2xx),
            ("3xx", s.status_3xx),
            ("4xx", s.status_4xx),
            ("5xx", s.status_5xx),
        ] {
            let _ = writeln!(
                o,
                "paas_http_requests_total{{app=\"{app}\",status=\"{class}\"}} {n}"
            );
        }
    }
    o.push_str("# HELP paas_http_request_duration_seconds Time from request to response head, through the proxy.\n");
    o.push_str("# TYPE paas_http_request_duration_seconds histogram\n");
    for (app, s) in stats {
        for (bound, n) in crate::proxy::LATENCY_BUCKETS_MS.iter().zip(s.latency_le) {
            let le = *bound as f64 / 1000.0;
            let _ = writeln!(
                o,
                "paas_http_request_duration_seconds_bucket{{app=\"{app}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "paas_http_request_duration_seconds_bucket{{app=\"{app}\",le=\"+Inf\"}} {}",
            s.requests
        );
        let _ = writeln!(
            o,
            "paas_http_request_duration_seconds_sum{{app=\"{app}\"}} {}",
            s.latency_sum_us as f64 / 1e6
        );
        let _ = writeln!(
            o,
            "paas_http_request_duration_seconds_count{{app=\"{app}\"}} {}",
            s.requests
        );
    }
    o.push_str(
        "# HELP paas_deploys_total Deploys by app and how they ended (or where they are).\n",
    );
    o.push_str("# TYPE paas_deploys_total counter\n");
    for (app, rels) in releases {
        let mut by: std::collections::BTreeMap<&str, u64> = Default::default();
        for r in rels {
            *by.entry(r.status.as_str()).or_default() += 1;
        }
        for (status, n) in by {
            let _ = writeln!(
                o,
                "paas_deploys_total{{app=\"{app}\",status=\"{status}\"}} {n}"
            );
        }
    }
    o.push_str("# HELP paas_deploy_duration_seconds Duration of finished deploys.\n");
    o.push_str("# TYPE paas_deploy_duration_seconds summary\n");
    for (app, rels) in releases {
        let done: Vec<i64> = rels.iter().filter_map(|r| r.duration_secs()).collect();
        let _ = writeln!(
            o,
            "paas_deploy_duration_seconds_sum{{app=\"{app}\"}} {}",
            done.iter().sum::<i64>()
        );
        let _ = writeln!(
            o,
            "paas_deploy_duration_seconds_count{{app=\"{app}\"}} {}",
            done.len()
        );
    }
    o.push_str("# HELP paas_live_release The live release number of each app (0: none).\n");
    o.push_str("# TYPE paas_live_release gauge\n");
    for (app, rels) in releases {
        let live = rels
            .iter()
            .find(|r| r.status == crate::store::ReleaseStatus::Live)
            .map_or(0, |r| r.version);
        let _ = writeln!(o, "paas_live_release{{app=\"{app}\"}} {live}");
    }
    o
}

fn logged_in(ctx: &Ctx, headers: &HeaderMap) -> bool {
    session_cookie(headers).is_some_and(|id| ctx.sessions.check(&id))
}

/// The CSRF token of the request's session, when logged in.
fn session_csrf(ctx: &Ctx, headers: &HeaderMap) -> Option<String> {
    session_cookie(headers).and_then(|id| ctx.sessions.csrf(&id))
}

fn render(name: &str, mut context: Context, csrf: Option<String>) -> Response {
    context.insert("logged_in", &csrf.is_some());
    context.insert("csrf", &csrf.unwrap_or_default());
    match templates().render(name, &context) {
        Ok(html) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
            ],
            Html(html),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("rendering {name}: {e:?}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// Seconds since the epoch → `2026-11-27 12:34 UTC` (the bare number past
/// the year 9999, which no stored time reaches).
pub fn format_time(epoch: i64) -> String {
    use time::{format_description::BorrowedFormatItem, macros::format_description, UtcDateTime};
    const FORMAT: &[BorrowedFormatItem] =
        format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    UtcDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| epoch.to_string())
}

async fn login_page(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if logged_in(&ctx, &headers) {
        return Redirect::to("/").into_response();
    }
    render("login.html", Context::new(), None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if !ctx.login_limiter.allowed(ip) {
        let mut c = Context::new();
        c.insert(
            "error",
            "Too many failed logins from your address: wait 15 minutes, then try again with the token from admin.token.",
        );
        let mut r = render("login.html", c, None);
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    }
    let Ok(Form(form)) = Form::<LoginForm>::from_request(req, &()).await else {
        return (StatusCode::BAD_REQUEST, "send the form field token").into_response();
    };
    let Some(who) = crate::tokens::check_secret(&ctx, form.token.trim()) else {
        ctx.login_limiter.failed(ip);
        tracing::warn!(%ip, "failed dashboard login");
        let mut c = Context::new();
        c.insert(
            "error",
            "That is not the admin token nor a live API token. Find the admin token in admin.token in paas's data directory.",
        );
        let mut r = render("login.html", c, None);
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    if let crate::tokens::Credential::Deploy { name, app } = &who {
        tracing::warn!(%ip, token = %name, "a deploy-only token tried the dashboard");
        let mut c = Context::new();
        c.insert(
            "error",
            &format!("The token {name} may only deploy and read the app {app}; it cannot open the dashboard. Log in with the admin token or a token made without --app."),
        );
        let mut r = render("login.html", c, None);
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    let id = ctx.sessions.create_for(who.token_name());
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

async fn logout(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    // The router's guard checked the session and the form's CSRF token.
    let headers = req.headers().clone();
    if let Some(id) = session_cookie(&headers) {
        ctx.sessions.remove(&id);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

#[derive(Serialize)]
struct AppRow {
    #[serde(flatten)]
    view: crate::api::AppView,
    last_when: String,
    /// Requests per minute over the last hour, as inline SVG.
    spark: String,
    /// Requests in the last minute.
    rpm: u64,
}

async fn apps_page(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    // The router's guard let only a live session in.
    let csrf = session_csrf(&ctx, &headers).unwrap_or_default();
    let now = crate::metrics::now();
    let rows: Result<Vec<AppRow>, ApiError> = ctx.store.apps().map_err(internal).and_then(|apps| {
        apps.iter()
            .map(|a| {
                let view = app_view(&ctx, a)?;
                let last_when = view
                    .last
                    .as_ref()
                    .map(|r| format_time(r.created_at))
                    .unwrap_or_default();
                let series = ctx.history.series(&a.name, now);
                Ok(AppRow {
                    view,
                    last_when,
                    spark: crate::metrics::sparkline(&series),
                    rpm: series.last().map_or(0, |m| m.requests),
                })
            })
            .collect()
    });
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut c = Context::new();
    c.insert("apps", &rows);
    c.insert("control", &ctx.config.admin.to_string());
    c.insert(
        "disk_warning",
        &crate::disk::full_warning(&ctx.config.data_dir),
    );
    render("apps.html", c, Some(csrf))
}

#[derive(Serialize)]
struct DiskRow {
    app: String,
    images: String,
    volume: String,
    backups: String,
    logs: String,
    total: String,
}

/// Disk use per app and of the data dir's disk.
async fn disk_page(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let csrf = session_csrf(&ctx, &headers).unwrap_or_default();
    let report = match crate::disk::disk_report(&ctx).await {
        Ok(r) => r,
        Err(e) => return internal(e).into_response(),
    };
    let h = crate::disk::human_bytes;
    let rows: Vec<DiskRow> = report
        .apps
        .iter()
        .map(|a| DiskRow {
            app: a.app.clone(),
            images: h(a.images),
            volume: h(a.volume),
            backups: h(a.backups),
            logs: h(a.logs),
            total: h(a.total()),
        })
        .collect();
    let fs = &report.filesystem;
    let mut c = Context::new();
    c.insert("apps", &rows);
    c.insert("fs", fs);
    c.insert("fs_total", &h(fs.total));
    c.insert("fs_used", &h(fs.used));
    c.insert("fs_available", &h(fs.available));
    c.insert("fs_percent", &format!("{:.0}", fs.percent));
    c.insert("disk_warning", &report.warning);
    render("disk.html", c, Some(csrf))
}

#[derive(Serialize)]
struct ReleaseRow {
    #[serde(flatten)]
    view: ReleaseView,
    short: String,
    error_short: Option<String>,
    when: String,
    /// It went live once and is not live now: it can be rolled back to.
    can_rollback: bool,
}

fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(format!(
            "<p>{}</p><p><a href=\"/\">All apps</a></p>",
            tera::escape_html(&what)
        )),
    )
        .into_response()
}

/// One scheduled job on the app page.
#[derive(Serialize)]
struct CronRow {
    name: String,
    command: String,
    schedule: String,
    time_zone: String,
    next: String,
    /// ok, failed, timed_out, skipped, running or -.
    result: String,
    duration: String,
    when: String,
    failing: bool,
    /// Why the last failing run failed.
    message: String,
}

impl CronRow {
    fn of(j: crate::cron::JobView) -> CronRow {
        let ser = |o: crate::cron::Outcome| {
            serde_json::to_value(o)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let failed = j
            .recent
            .iter()
            .find(|r| r.outcome != crate::cron::Outcome::Skipped);
        CronRow {
            result: if j.running {
                "running".into()
            } else {
                j.last
                    .as_ref()
                    .map(|r| ser(r.outcome))
                    .unwrap_or_else(|| "-".into())
            },
            duration: j
                .last
                .as_ref()
                .map(|r| format!("{:.1} s", r.duration_ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
            when: j
                .last
                .as_ref()
                .map(|r| format_time(r.started_at_ms / 1000))
                .unwrap_or_else(|| "never".into()),
            next: j.next_run_at.map(format_time).unwrap_or_else(|| "-".into()),
            message: failed.and_then(|r| r.message.clone()).unwrap_or_default(),
            failing: j.failing,
            name: j.name,
            command: j.command,
            schedule: j.schedule,
            time_zone: j.time_zone,
        }
    }
}

async fn app_page(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    // The router's guard let only a live session in.
    let csrf = session_csrf(&ctx, &headers).unwrap_or_default();
    let app = match ctx.store.find_app(&name) {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(format!("No app named {name}.")),
        Err(e) => return internal(e).into_response(),
    };
    let view = match app_view(&ctx, &app) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let releases = match ctx.store.releases(&app.name) {
        Ok(r) => r,
        Err(e) => return internal(e).into_response(),
    };
    let rows: Vec<ReleaseRow> = releases
        .iter()
        .map(|r| ReleaseRow {
            view: ReleaseView::of(r, false),
            short: r.commit_sha.chars().take(7).collect(),
            error_short: r.error.as_ref().map(|e| {
                if e.chars().count() > 140 {
                    format!("{}…", e.chars().take(140).collect::<String>())
                } else {
                    e.clone()
                }
            }),
            when: format_time(r.created_at),
            can_rollback: r.status == crate::store::ReleaseStatus::Retired && r.image.is_some(),
        })
        .collect();
    let backups: Vec<BackupRow> = crate::backup::list_backups(&ctx.config.data_dir, &app.name)
        .into_iter()
        .map(|m| BackupRow {
            status: match m.status {
                crate::backup::Status::Ok => "ok",
                crate::backup::Status::Running => "running",
                crate::backup::Status::Failed => "failed",
            },
            trigger: match m.release {
                Some(v) => format!("{} v{v}", m.trigger),
                None => m.trigger.clone(),
            },
            size: human_size(m.size),
            when: format_time(m.created_at),
            error: m.error.clone(),
            offsite: match m.offsite.as_ref().map(|c| c.status) {
                Some(crate::backup::CopyStatus::Uploaded) => "uploaded",
                Some(crate::backup::CopyStatus::Pending) => "pending",
                Some(crate::backup::CopyStatus::Failed) => "failed",
                None => "",
            },
            offsite_error: m.offsite.as_ref().and_then(|c| c.error.clone()),
            id: m.id,
        })
        .collect();
    let offsite_failed = backups
        .iter()
        .find(|b| b.status == "ok" && !b.offsite.is_empty())
        .filter(|b| b.offsite == "failed")
        .and_then(|b| b.offsite_error.clone());
    let drill = crate::drill::last_drill(&ctx, &app.name).map(|d| DrillView {
        ok: d.ok,
        when: format_time(d.at),
        backup: d.backup.unwrap_or_default(),
        error: d.error,
        tables: d.tables.len(),
        rows: d.tables.values().sum(),
    });
    let mut c = Context::new();
    c.insert("offsite_failed", &offsite_failed);
    c.insert("drill", &drill);
    c.insert("app", &view);
    c.insert("releases", &rows);
    c.insert("backups", &backups);
    let cron: Vec<CronRow> = match crate::cron::job_views(&ctx, &app) {
        Ok(v) => v.into_iter().map(CronRow::of).collect(),
        Err(e) => return e.into_response(),
    };
    c.insert("cron", &cron);
    // Names only: a value reaches the page when its owner asks for it
    // (the reveal button fetches it from the API with the session).
    let config_keys: Vec<String> = match ctx.store.config_vars(&app) {
        Ok(vars) => vars.into_keys().collect(),
        Err(e) => return internal(e).into_response(),
    };
    c.insert("config_keys", &config_keys);
    c.insert("domains", &crate::deploy::app_hosts(&ctx, &app));
    let series = ctx.history.series(&app.name, crate::metrics::now());
    c.insert("rate_chart", &crate::metrics::rate_chart(&series));
    c.insert("latency_chart", &crate::metrics::latency_chart(&series));
    c.insert(
        "requests_hour",
        &series.iter().map(|m| m.requests).sum::<u64>(),
    );
    let usage = ctx.usage.series(&app.name, crate::metrics::now());
    c.insert("memory_chart", &crate::metrics::memory_chart(&usage));
    c.insert("cpu_chart", &crate::metrics::cpu_chart(&usage));
    if let Some((_, u)) = ctx.usage.latest(&app.name) {
        c.insert("usage_now", &crate::metrics::usage_text(&u));
    }
    let flash = flash_of(&headers);
    if let Some((ok, text)) = &flash {
        c.insert("flash_ok", ok);
        c.insert("flash", text);
    }
    c.insert(
        "disk_warning",
        &crate::disk::full_warning(&ctx.config.data_dir),
    );
    let mut page = render("app.html", c, Some(csrf));
    if flash.is_some() {
        if let Ok(v) = format!(
            "{FLASH}=; Path=/apps/{}; Max-Age=0; HttpOnly; SameSite=Strict",
            app.name
        )
        .parse()
        {
            page.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    page
}

#[derive(Serialize)]
struct BackupRow {
    id: String,
    status: &'static str,
    trigger: String,
    size: String,
    when: String,
    error: Option<String>,
    /// The offsite copy: `uploaded`, `pending`, `failed` or empty (none set).
    offsite: &'static str,
    offsite_error: Option<String>,
}

/// The app's last restore drill.
#[derive(Serialize)]
struct DrillView {
    ok: bool,
    when: String,
    backup: String,
    error: Option<String>,
    tables: usize,
    rows: i64,
}

/// 1234567 → "1.2 MB".
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[derive(Serialize)]
struct Step {
    name: String,
    secs: String,
    /// Its bar's length, in percent of the longest step.
    pct: u64,
}

async fn release_page(
    State(ctx): State<Arc<Ctx>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // The router's guard let only a live session in.
    let csrf = session_csrf(&ctx, &headers).unwrap_or_default();
    let Ok(v) = version.trim_start_matches('v').parse::<i64>() else {
        return not_found(format!("{version} is not a release number."));
    };
    let rel = match ctx.store.release(&name, v) {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(format!("{name} has no release v{v}.")),
        Err(e) => return internal(e).into_response(),
    };
    let longest = rel
        .timings
        .iter()
        .map(|(_, ms)| *ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let steps: Vec<Step> = rel
        .timings
        .iter()
        .map(|(n, ms)| Step {
            name: n.clone(),
            secs: format!("{:.1}", *ms as f64 / 1000.0),
            pct: (ms * 100 / longest).max(1),
        })
        .collect();
    let mut c = Context::new();
    c.insert("app", &name);
    c.insert("r", &ReleaseView::of(&rel, true));
    c.insert("steps", &steps);
    c.insert("log_bytes", &rel.log.len());
    c.insert("in_flight", &rel.status.in_flight());
    render("release.html", c, Some(csrf))
}

// ------------------------------------------------------------ live views

/// How often the release-log stream looks at the store for new text.
const LOG_POLL: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Serialize)]
struct AppStatus {
    name: String,
    live: Option<i64>,
    last_version: Option<i64>,
    last_status: Option<String>,
    last_error: Option<String>,
}

/// `GET /status`: every app's live release and last deploy, polled by the
/// overview and app pages so status changes show without a reload.
async fn status_json(State(ctx): State<Arc<Ctx>>, _headers: HeaderMap) -> Response {
    let apps = match ctx.store.apps() {
        Ok(a) => a,
        Err(e) => return internal(e).into_response(),
    };
    let mut out = Vec::with_capacity(apps.len());
    for a in apps {
        let rels = match ctx.store.releases(&a.name) {
            Ok(r) => r,
            Err(e) => return internal(e).into_response(),
        };
        let live = rels
            .iter()
            .find(|r| r.status == crate::store::ReleaseStatus::Live)
            .map(|r| r.version);
        let last = rels.first();
        out.push(AppStatus {
            name: a.name,
            live,
            last_version: last.map(|r| r.version),
            last_status: last.map(|r| r.status.as_str().to_string()),
            last_error: last.and_then(|r| r.error.clone()),
        });
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "apps": out })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct FromQuery {
    /// Bytes of the log the page already shows.
    #[serde(default)]
    from: usize,
}

/// Where a release-log stream is.
struct LogCursor {
    ctx: Arc<Ctx>,
    app: String,
    version: i64,
    sent: usize,
    status: Option<crate::store::ReleaseStatus>,
    first: bool,
    done: bool,
}

/// One look at the release: the new log text, a status change, the end.
async fn log_step(mut c: LogCursor) -> Option<(Vec<axum::response::sse::Event>, LogCursor)> {
    use axum::response::sse::Event;
    if c.done {
        return None;
    }
    if !c.first {
        tokio::time::sleep(LOG_POLL).await;
    }
    c.first = false;
    let mut events = Vec::new();
    let rel = match c.ctx.store.release(&c.app, c.version) {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) => {
            c.done = true;
            events.push(Event::default().event("end").data("gone"));
            return Some((events, c));
        }
    };
    if rel.log.len() > c.sent {
        // The log only grows by appends: the old length is a char boundary.
        let new = rel.log.get(c.sent..).unwrap_or(&rel.log);
        events.push(
            Event::default()
                .event("log")
                .id(rel.log.len().to_string())
                .data(serde_json::to_string(new).unwrap_or_default()),
        );
        c.sent = rel.log.len();
    }
    if c.status != Some(rel.status) {
        c.status = Some(rel.status);
        let body = serde_json::json!({
            "status": rel.status.as_str(),
            "error": rel.error,
            "duration_secs": rel.duration_secs(),
        });
        events.push(Event::default().event("status").data(body.to_string()));
    }
    if !rel.status.in_flight() {
        c.done = true;
        events.push(Event::default().event("end").data(rel.status.as_str()));
    }
    Some((events, c))
}

/// `GET /apps/{app}/releases/{version}/log?from=BYTES`: the release's log
/// as server-sent events while it deploys (`log`: new text as a JSON
/// string, `status`: status changes, `end`: it is over).
async fn release_log_events(
    State(ctx): State<Arc<Ctx>>,
    Path((name, version)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<FromQuery>,
    headers: HeaderMap,
) -> Response {
    use futures_util::StreamExt;
    let Ok(v) = version.trim_start_matches('v').parse::<i64>() else {
        return not_found(format!("{version} is not a release number."));
    };
    match ctx.store.release(&name, v) {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(format!("{name} has no release v{v}.")),
        Err(e) => return internal(e).into_response(),
    }
    // A reconnecting EventSource says how far it got.
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(q.from);
    let cursor = LogCursor {
        ctx,
        app: name,
        version: v,
        sent: from,
        status: None,
        first: true,
        done: false,
    };
    let events = futures_util::stream::unfold(cursor, log_step).flat_map(|evs| {
        futures_util::stream::iter(evs.into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    axum::response::sse::Sse::new(events)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response()
}

/// `GET /apps/{app}/logs`: the live web container's output as server-sent
/// events (`log`: one line as a JSON string), from its last 100 lines on.
async fn runtime_log_events(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    _headers: HeaderMap,
) -> Response {
    use axum::response::sse::Event;
    use futures_util::StreamExt;
    let live = match ctx.store.find_app(&name) {
        Ok(Some(_)) => match ctx.store.live_release(&name) {
            Ok(r) => r,
            Err(e) => return internal(e).into_response(),
        },
        Ok(None) => return not_found(format!("No app named {name}.")),
        Err(e) => return internal(e).into_response(),
    };
    let Some(live) = live else {
        return not_found(format!(
            "{name} has no live release, so no running container: push to deploy it."
        ));
    };
    let version = live.version.to_string();
    let containers = match ctx
        .docker
        .list_containers(&[
            ("paas.app", name.as_str()),
            ("paas.process", "web"),
            ("paas.release", version.as_str()),
        ])
        .await
    {
        Ok(c) => c,
        Err(e) => return internal(e).into_response(),
    };
    let Some(c) = containers.into_iter().find(|c| c.state == "running") else {
        return not_found(format!(
            "{name} v{version} has no running web container: restart it from this page."
        ));
    };
    let lines = ctx.docker.follow_logs(&c.id, 100).map(|line| {
        let text = match line {
            Ok(l) => l,
            Err(e) => format!("[paas: the log stream broke: {e}]"),
        };
        Ok::<_, std::convert::Infallible>(
            Event::default()
                .event("log")
                .data(serde_json::to_string(&text).unwrap_or_default()),
        )
    });
    axum::response::sse::Sse::new(lines)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response()
}

// ------------------------------------------------------------ actions

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    version: String,
}

/// The gate of every dashboard form that changes state: a session (else the
/// login page), then its CSRF token (else 403), then the app (else 404).
async fn action_gate(
    ctx: &Ctx,
    name: &str,
    req: Request,
) -> Result<(crate::store::App, ActionForm), Response> {
    let form = Form::<ActionForm>::from_request(req, &())
        .await
        .map(|Form(f)| f)
        .unwrap_or(ActionForm {
            version: String::new(),
        });
    match ctx.store.find_app(name) {
        Ok(Some(app)) => Ok((app, form)),
        Ok(None) => Err(not_found(format!("No app named {name}."))),
        Err(e) => Err(internal(e).into_response()),
    }
}

/// Back to the app page, carrying the action's result for one view.
fn back_with(app: &str, ok: bool, message: &str) -> Response {
    use base64::Engine;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message);
    let kind = if ok { "ok" } else { "error" };
    (
        [(
            header::SET_COOKIE,
            format!(
                "{FLASH}={kind}.{text}; Path=/apps/{app}; Max-Age=120; HttpOnly; SameSite=Strict"
            ),
        )],
        Redirect::to(&format!("/apps/{app}")),
    )
        .into_response()
}

/// The flash message in the request, if any: (ok, text).
fn flash_of(headers: &HeaderMap) -> Option<(bool, String)> {
    use base64::Engine;
    let raw = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == FLASH)
        .map(|(_, v)| v.to_string())?;
    let (kind, text) = raw.split_once('.')?;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())?;
    Some((kind == "ok", text))
}

/// The sentence a build-less deploy ends with, as the API says it.
fn redeploy_message(
    outcome: crate::api::Outcome,
    ok: impl FnOnce(&crate::store::Release) -> String,
) -> (bool, String) {
    match outcome.result {
        Ok(rel) => (true, ok(&rel)),
        Err(e) => (
            false,
            format!("{}.", e.sentence("the running release was not touched")),
        ),
    }
}

/// The rollback button of a release row: the same deploy as `paas rollback vN`.
async fn rollback_action(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (app, form) = match action_gate(&ctx, &name, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(to) = form
        .version
        .trim()
        .trim_start_matches('v')
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
    else {
        return back_with(
            &app.name,
            false,
            "Pick the release to roll back to with its button in the releases table.",
        );
    };
    let what = crate::deploy::Redeploy::Rollback {
        to: Some(to),
        restore_db: false,
    };
    let outcome = crate::api::run_redeploy(&ctx, &app.name, what).await;
    let (ok, msg) = redeploy_message(outcome, |rel| {
        format!("{}: v{} is live.", rel.description, rel.version)
    });
    back_with(&app.name, ok, &msg)
}

/// The restart button: new containers of the live release, as `paas restart`.
async fn restart_action(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (app, _) = match action_gate(&ctx, &name, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let outcome = crate::api::run_redeploy(&ctx, &app.name, crate::deploy::Redeploy::Restart).await;
    let (ok, msg) = redeploy_message(outcome, |rel| {
        format!("Restarted: v{} is live.", rel.version)
    });
    back_with(&app.name, ok, &msg)
}

/// The back-up-now button, as `paas backups:create`.
async fn backup_action(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (app, _) = match action_gate(&ctx, &name, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let turn = ctx.deployer.turn(&app.name).await;
    let taken = crate::backup::backup_app(&ctx, &app, "manual").await;
    drop(turn);
    match taken {
        Ok(m) => back_with(
            &app.name,
            true,
            &format!("Backup {} taken ({}).", m.id, human_size(m.size)),
        ),
        Err(e) => back_with(&app.name, false, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_234_567), "1.2 MB");
        assert_eq!(human_size(5_000_000_000_000), "5000.0 GB");
    }

    #[test]
    fn templates_parse_and_render() {
        let mut c = Context::new();
        c.insert("apps", &Vec::<String>::new());
        c.insert("control", "127.0.0.1:8300");
        c.insert("logged_in", &true);
        c.insert("csrf", "t0ken");
        let html = templates().render("apps.html", &c).unwrap();
        assert!(html.contains("No apps yet"));
        let mut c = Context::new();
        c.insert("logged_in", &false);
        c.insert("csrf", "");
        c.insert("error", "<b>x</b>");
        let html = templates().render("login.html", &c).unwrap();
        assert!(html.contains("&lt;b&gt;x"), "errors are escaped");
        // The disk page, with the warning every page shows at 90 % full.
        let mut c = Context::new();
        c.insert("logged_in", &true);
        c.insert("csrf", "t0ken");
        let fs = crate::disk::FsUse {
            path: "/var/lib/paas".into(),
            total: 100,
            used: 95,
            available: 5,
            percent: 95.0,
        };
        c.insert("fs", &fs);
        for k in ["fs_total", "fs_used", "fs_available", "fs_percent"] {
            c.insert(k, "1");
        }
        let rows = vec![DiskRow {
            app: "blog".into(),
            images: "1.0 GB".into(),
            volume: "2 B".into(),
            backups: "0 B".into(),
            logs: "3 B".into(),
            total: "1.0 GB".into(),
        }];
        c.insert("apps", &rows);
        c.insert("disk_warning", &crate::disk::warning_for(&fs));
        let html = templates().render("disk.html", &c).unwrap();
        assert!(html.contains("id=\"disk-warning\""), "{html}");
        assert!(html.contains("95 % full"), "{html}");
        assert!(html.contains("data-app=\"blog\""), "{html}");
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let stats = crate::proxy::AppStats {
            requests: 3,
            status_2xx: 2,
            status_5xx: 1,
            latency_le: [1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3],
            latency_sum_us: 15_000,
            ..Default::default()
        };
        let text = render_metrics(&[("blog".into(), stats)], &[("blog".into(), vec![])]);
        assert!(text.contains("paas_http_requests_total{app=\"blog\",status=\"2xx\"} 2"));
        assert!(text.contains("paas_http_requests_total{app=\"blog\",status=\"5xx\"} 1"));
        assert!(
            text.contains("paas_http_request_duration_seconds_bucket{app=\"blog\",le=\"0.005\"} 1")
        );
        assert!(
            text.contains("paas_http_request_duration_seconds_bucket{app=\"blog\",le=\"+Inf\"} 3")
        );
        assert!(text.contains("paas_http_request_duration_seconds_sum{app=\"blog\"} 0.015"));
        assert!(text.contains("paas_live_release{app=\"blog\"} 0"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn times_format_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_795_782_896), "2026-11-27 12:34 UTC");
        assert_eq!(format_time(-1), "1969-12-31 23:59 UTC");
        assert_eq!(format_time(951_825_599), "2000-02-29 11:59 UTC");
    }

    #[test]
    fn flash_survives_the_redirect_once() {
        let r = back_with("blog", false, "rollback to v1 failed; \"x\" é");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/apps/blog");
        let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("Path=/apps/blog") && set.contains("HttpOnly"),
            "{set}"
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            set.split(';').next().unwrap().parse().unwrap(),
        );
        assert_eq!(
            flash_of(&h),
            Some((false, "rollback to v1 failed; \"x\" é".to_string()))
        );
        h.insert(header::COOKIE, "paas_flash=ok.!!!".parse().unwrap());
        assert_eq!(flash_of(&h), None, "garbage is ignored");
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; paas_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("xyz"));
    }
}
