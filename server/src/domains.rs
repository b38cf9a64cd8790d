//! Custom domains: `paas domains:add www.example.com`. A domain is routed by
//! the proxy and allowed by Django (ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS come
//! from the app's hosts), so adding or removing one rolls the app through the
//! zero-downtime path, like a config change; if that fails, the change is
//! undone and the running release keeps serving.

use crate::ctx::Ctx;
use crate::deploy::{self, Progress, Redeploy};
use crate::http_error::find_app;
use crate::http_error::{internal, ApiError};
use crate::store::App;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/api/apps/{app}/domains", get(api_list).post(api_add))
        .route("/api/apps/{app}/domains/{domain}", delete(api_remove))
}

/// A host name paas can route for an app: lowercase DNS labels, at least two
/// of them, and not under paas's own domain (those are the apps' defaults).
pub fn validate(host: &str, platform_domain: &str) -> Result<String, String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!(
            "{host:?} is not a domain name: give one like www.example.com (letters, digits and hyphens between dots)"
        ));
    }
    if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "{host} is an IP address: give a domain name whose DNS points at this server"
        ));
    }
    let platform = platform_domain.to_ascii_lowercase();
    if host == platform || host.ends_with(&format!(".{platform}")) {
        return Err(format!(
            "{host} is under paas's own domain {platform}, whose names belong to the apps: give a domain you own"
        ));
    }
    Ok(host)
}

async fn api_list(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    _headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let app = find_app(&ctx, &app)?;
    let custom = ctx.store.domains(&app).map_err(internal)?;
    Ok(Json(serde_json::json!({
        "app": app.name,
        "default": ctx.config.app_host(&app.name),
        "domains": custom,
    })))
}

#[derive(Deserialize)]
struct AddBody {
    domain: String,
}

async fn api_add(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let app = find_app(&ctx, &app)?;
    let Ok(AddBody { domain }) = serde_json::from_slice::<AddBody>(&body) else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "send {\"domain\": \"www.example.com\"}".into(),
        ));
    };
    let host = validate(&domain, &ctx.config.domain)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    match ctx.store.domain_owner(&host).map_err(internal)? {
        Some(owner) if owner == app.name => {
            return Ok((
                StatusCode::OK,
                Json(serde_json::json!({
                    "app": app.name, "domain": host, "release": null,
                    "message": format!("{host} is already a domain of {}", app.name),
                })),
            ))
        }
        Some(owner) => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("{host} is a domain of {owner} already: remove it there first (`paas domains:remove {host} -a {owner}`)"),
            ))
        }
        None => {}
    }
    ctx.store.add_domain(&app, &host).map_err(internal)?;
    let rolled = roll(&ctx, &app, &format!("domain {host} added")).await;
    if let Err(e) = rolled {
        let _ = ctx.store.remove_domain(&app, &host);
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{host} was not added, and the running release was not touched: {e}"),
        ));
    }
    let release = rolled.ok().flatten();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "app": app.name,
            "domain": host,
            "release": release,
            "message": match release {
                Some(v) => format!("{host} added; v{v} is live and answers to it. Point its DNS (an A record) at this server."),
                None => format!("{host} added; it is served from the next deploy. Point its DNS (an A record) at this server."),
            },
        })),
    ))
}

async fn api_remove(
    State(ctx): State<Arc<Ctx>>,
    Path((app, domain)): Path<(String, String)>,
    _headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let app = find_app(&ctx, &app)?;
    let host = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if !ctx.store.remove_domain(&app, &host).map_err(internal)? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "{host} is not a domain of {0}: `paas domains -a {0}` lists them",
                app.name
            ),
        ));
    }
    if let Err(e) = roll(&ctx, &app, &format!("domain {host} removed")).await {
        let _ = ctx.store.add_domain(&app, &host);
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{host} was not removed, and the running release was not touched: {e}"),
        ));
    }
    // Its certificate is forgotten (files removed, never renewed).
    ctx.certs.look_again();
    Ok(Json(serde_json::json!({
        "app": app.name,
        "domain": host,
        "message": format!("{host} removed; {} no longer answers to it", app.name),
    })))
}

/// New containers with the app's new host list, when a release is live.
/// The version that went live, or None when nothing runs yet.
async fn roll(ctx: &Ctx, app: &App, why: &str) -> Result<Option<i64>, String> {
    let live = ctx
        .store
        .live_release(&app.name)
        .map_err(|e| e.to_string())?;
    if live.is_none() {
        return Ok(None);
    }
    let what = Redeploy::Config {
        keys: vec![why.to_string()],
    };
    deploy::redeploy(ctx, &app.name, what, Progress::new(None))
        .await
        .map(|rel| Some(rel.version))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn domain_names_are_checked_with_a_reason() {
        assert_eq!(
            validate(" WWW.Example.com. ", "paas.example.net").unwrap(),
            "www.example.com"
        );
        assert!(validate("localhost", "x.net")
            .unwrap_err()
            .contains("not a domain name"));
        assert!(validate("a..b", "x.net")
            .unwrap_err()
            .contains("not a domain name"));
        assert!(validate("-a.com", "x.net")
            .unwrap_err()
            .contains("not a domain name"));
        assert!(validate("a_b.com", "x.net")
            .unwrap_err()
            .contains("not a domain name"));
        assert!(validate("10.0.0.1", "x.net")
            .unwrap_err()
            .contains("IP address"));
        assert!(validate("blog.paas.example.net", "paas.example.net")
            .unwrap_err()
            .contains("paas's own domain"));
        assert!(validate("example.net", "paas.example.net").is_ok());
    }
}

#[cfg(test)]
mod props {
    //! Property tests: what `domains:add` accepts.

    use super::validate;
    use crate::fuzz::{check, ensure};
    use proptest::prelude::*;

    fn label_ok(l: &str) -> bool {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    fn typed() -> impl Strategy<Value = String> {
        let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?";
        prop_oneof![
            (
                prop::collection::vec(label, 1..5),
                "[ \t]{0,2}",
                "\\.?",
                "[ \t]{0,2}"
            )
                .prop_map(|(l, a, dot, b)| format!("{a}{}{dot}{b}", l.join("."))),
            "[a-zA-Z0-9.:/_@ -]{0,30}",
            "[0-9.]{1,16}",
            "([a-z0-9-]{1,4}\\.){0,3}paas\\.Example\\.net\\.?",
            any::<String>(),
        ]
    }

    #[test]
    fn fuzz_domains() {
        let platform =
            prop::sample::select(vec!["paas.example.net", "PAAS.example.net", "example.net"]);
        check("domains", 1024, (typed(), platform), |(typed, platform)| {
            let got = validate(&typed, platform);
            let Ok(host) = got else {
                // Refused: was it a name under the rules, then it was for the
                // platform's own domain or for being an address.
                let clean = typed.trim().trim_end_matches('.').to_ascii_lowercase();
                let labels: Vec<&str> = clean.split('.').collect();
                let fine =
                    clean.len() <= 253 && labels.len() >= 2 && labels.iter().all(|l| label_ok(l));
                let platform = platform.to_ascii_lowercase();
                let reserved = clean == platform
                    || clean.ends_with(&format!(".{platform}"))
                    || labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()));
                return ensure(!fine || reserved, || {
                    format!("{typed:?} is a domain name, yet it was refused: {got:?}")
                });
            };
            let labels: Vec<&str> = host.split('.').collect();
            ensure(
                host.len() <= 253 && labels.len() >= 2 && labels.iter().all(|l| label_ok(l)),
                || format!("{typed:?} was accepted as {host:?}, which is not a domain name"),
            )?;
            ensure(
                !labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())),
                || format!("{typed:?} was accepted as {host:?}, an address"),
            )?;
            let platform_l = platform.to_ascii_lowercase();
            ensure(
                host != platform_l && !host.ends_with(&format!(".{platform_l}")),
                || format!("{typed:?} was accepted as {host:?}, under paas's own {platform}"),
            )?;
            ensure(
                host.eq_ignore_ascii_case(typed.trim().trim_end_matches('.')),
                || format!("{typed:?} was stored as another name, {host:?}"),
            )?;
            ensure(validate(&host, platform).as_ref() == Ok(&host), || {
                format!("{host:?} is not accepted again as itself")
            })
        });
    }
}
