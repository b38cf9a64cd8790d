//! API tokens: `POST /api/tokens {"name": "laptop"}` makes an admin-scoped
//! one and answers its secret once; `{"name": "ci", "app": "blog"}` makes a
//! deploy-only token, which may push to and read that app and nothing else
//! (the router's guard enforces it). `GET /api/tokens` lists names, scopes
//! and dates, never secrets; `DELETE /api/tokens/{name}` revokes one at
//! once, with every token it minted and the dashboard sessions opened with
//! them. Only the admin token and admin-scoped tokens reach these routes.

pub use crate::auth::Credential;
use crate::auth::{hash_token, new_api_token};
use crate::ctx::{Caller, Ctx};
use crate::http_error::{find_app, ApiError};
use crate::store::{ApiToken, StoreError};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

/// Check a presented secret against the admin token and the API tokens.
pub fn check_secret(ctx: &Ctx, secret: &str) -> Option<Credential> {
    if secret.is_empty() {
        return None;
    }
    if ctx.token.matches(secret) {
        return Some(Credential::Admin);
    }
    match ctx.store.use_token(&hash_token(secret)) {
        Ok(found) => found.map(|t| match t.app {
            None => Credential::Token(t.name),
            Some(app) => Credential::Deploy { name: t.name, app },
        }),
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
    /// A deploy-only token for this app; none: admin scope.
    #[serde(default)]
    app: Option<String>,
}

/// The token a caller presented or opened its dashboard session with
/// (`None`: the admin token).
fn minted_by(ctx: &Ctx, caller: &Caller) -> Option<String> {
    match (&caller.credential, &caller.session) {
        (Some(c), _) => c.token_name().map(str::to_string),
        (None, Some(s)) => ctx.sessions.opened_with(&s.id).flatten(),
        (None, None) => None,
    }
}

async fn create(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<CreateBody>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (name, app) = body.map(|Json(b)| (b.name, b.app)).unwrap_or_default();
    validate_name(&name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    if let Some(app) = &app {
        find_app(&ctx, app)?;
    }
    let by = minted_by(&ctx, &caller);
    let secret = new_api_token();
    let t = ctx
        .store
        .create_token(&name, &hash_token(&secret), app.as_deref(), by.as_deref())
        .map_err(store_error)?;
    tracing::info!(token = %name, app = app.as_deref().unwrap_or("(admin scope)"), by = by.as_deref().unwrap_or("the admin token"), "API token created");
    let scope = match &app {
        Some(app) => format!("it may only push to and read the app {app}"),
        None => "it may do anything the admin token does".into(),
    };
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "name": t.name,
            "created_at": t.created_at,
            "last_used_at": t.last_used_at,
            "app": t.app,
            "created_by": t.created_by,
            "token": secret,
            "message": format!("token {name} created; {scope}; it is shown only now, so keep it (e.g. export PAAS_TOKEN=...)"),
        })),
    ))
}

async fn revoke(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let gone = ctx.store.revoke_token(&name).map_err(store_error)?;
    for n in &gone {
        ctx.sessions.remove_for_token(n);
    }
    tracing::info!(token = %name, revoked = ?gone, "API token revoked");
    let also = match gone.len() {
        1 => String::new(),
        _ => format!(", and so are the tokens it made: {}", gone[1..].join(", ")),
    };
    Ok(Json(serde_json::json!({
        "name": name,
        "revoked": gone,
        "message": format!("token {name} revoked: it no longer works for the API, git or the dashboard{also}"),
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
