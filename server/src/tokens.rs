//! API tokens: `POST /api/tokens {"name": "laptop"}` makes one and answers
//! its secret once; `GET /api/tokens` lists names and dates, never secrets;
//! `DELETE /api/tokens/{name}` revokes one at once, with the dashboard
//! sessions opened with it.

use crate::auth::{hash_token, new_api_token};
use crate::ctx::Ctx;
use crate::http_error::ApiError;
use crate::store::{ApiToken, StoreError};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

/// Who a presented secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The admin token from `<data-dir>/admin.token`.
    Admin,
    /// The API token of this name.
    Token(String),
}

/// Check a presented secret against the admin token and the API tokens.
pub fn check_secret(ctx: &Ctx, secret: &str) -> Option<Credential> {
    if secret.is_empty() {
        return None;
    }
    if ctx.token.matches(secret) {
        return Some(Credential::Admin);
    }
    match ctx.store.use_token(&hash_token(secret)) {
        Ok(name) => name.map(Credential::Token),
        Err(e) => {
            tracing::error!("checking an API token: {e}");
            None
        }
    }
}

/// The routes of this module, merged into the control-plane router.
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/api/tokens", get(list).post(create))
        .route("/api/tokens/{name}", delete(revoke))
}

/// A token name: what `--name` accepts.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a token name: use 1 to 64 letters, digits, '-', '_' or '.', e.g. --name laptop"
        ))
    }
}

fn store_error(e: StoreError) -> ApiError {
    let status = match e {
        StoreError::TokenExists(_) => StatusCode::CONFLICT,
        StoreError::NoSuchToken(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

async fn list(
    State(ctx): State<Arc<Ctx>>,
    _headers: HeaderMap,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(ctx.store.tokens().map_err(store_error)?))
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    name: String,
}

async fn create(
    State(ctx): State<Arc<Ctx>>,
    _headers: HeaderMap,
    body: Option<Json<CreateBody>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let name = body.map(|Json(b)| b.name).unwrap_or_default();
    validate_name(&name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let secret = new_api_token();
    let t = ctx
        .store
        .create_token(&name, &hash_token(&secret))
        .map_err(store_error)?;
    tracing::info!(token = %name, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "name": t.name,
            "created_at": t.created_at,
            "last_used_at": t.last_used_at,
            "token": secret,
            "message": format!("token {name} created; it is shown only now, so keep it (e.g. export PAAS_TOKEN=...)"),
        })),
    ))
}

async fn revoke(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    _headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    ctx.store.revoke_token(&name).map_err(store_error)?;
    ctx.sessions.remove_for_token(&name);
    tracing::info!(token = %name, "API token revoked");
    Ok(Json(serde_json::json!({
        "name": name,
        "message": format!("token {name} revoked: it no longer works for the API, git or the dashboard"),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("laptop").is_ok());
        assert!(validate_name("ci-2.runner_1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }
}
