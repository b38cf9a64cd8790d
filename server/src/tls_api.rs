//! The certificates' API: `GET /api/certs` (every name paas serves),
//! `GET /api/apps/{app}/certs` (one app's), `GET /api/certs/ca` (the local
//! CA's root PEM, for `paas certs:ca`).

use crate::ctx::Ctx;
use crate::http_error::{find_app, internal, ApiError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/api/certs", get(api_all))
        .route("/api/certs/ca", get(api_ca))
        .route("/api/apps/{app}/certs", get(api_app))
}

/// Said when the daemon runs with `--https off`.
const HTTPS_OFF: &str = "HTTPS is off on this paas (--https off): start it with --https 0.0.0.0:443 (the default) to get certificates";

fn https_on(ctx: &Ctx) -> Result<(), ApiError> {
    match ctx.config.https {
        Some(_) => Ok(()),
        None => Err(ApiError(StatusCode::CONFLICT, HTTPS_OFF.into())),
    }
}

async fn api_all(State(ctx): State<Arc<Ctx>>) -> Result<Json<serde_json::Value>, ApiError> {
    https_on(&ctx)?;
    let names = crate::tls::wanted_names(&ctx);
    Ok(Json(serde_json::json!(crate::tls::status(&ctx, &names))))
}

async fn api_app(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let app = find_app(&ctx, &app)?;
    https_on(&ctx)?;
    let names = crate::deploy::app_hosts(&ctx, &app);
    Ok(Json(serde_json::json!(crate::tls::status(&ctx, &names))))
}

async fn api_ca(State(ctx): State<Arc<Ctx>>) -> Result<Json<serde_json::Value>, ApiError> {
    https_on(&ctx)?;
    let ca = ctx.certs.local_ca().map_err(internal)?;
    Ok(Json(serde_json::json!({
        "issuer": crate::certs::LOCAL_ISSUER,
        "root": ca.root_pem(),
    })))
}
