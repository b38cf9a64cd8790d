//! Errors a request answers with: one sentence for the user and the status
//! that goes with it. Handlers return [`ApiError`]; the data stories return
//! [`DataError`], which converts into it.

use crate::ctx::Ctx;
use crate::docker::DockerError;
use crate::store::App;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::path::Path;

/// A JSON or plain error with one sentence for the user.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"paas\""),
            );
        }
        r
    }
}

/// The 401 that says what to send.
pub fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "missing, wrong or revoked credentials: send the admin token or an API token as a bearer token or as the HTTP basic password".into(),
    )
}

/// The app named in a request's path, or the 404 that says how to make one.
pub fn find_app(ctx: &Ctx, name: &str) -> Result<App, ApiError> {
    match ctx.store.find_app(name) {
        Ok(Some(app)) => Ok(app),
        Ok(None) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no app named {name:?}: `paas apps` lists them, and a first `git push` creates one"
            ),
        )),
        Err(e) => Err(internal(e)),
    }
}

/// A server-side failure as a 500 with its message.
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// A failure with the HTTP status to answer and one sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DataError {}

impl DataError {
    pub(crate) fn user(status: StatusCode, message: impl Into<String>) -> DataError {
        DataError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn internal(message: impl Into<String>) -> DataError {
        Self::user(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<DockerError> for DataError {
    fn from(e: DockerError) -> DataError {
        DataError::internal(e.to_string())
    }
}

impl From<DataError> for ApiError {
    fn from(e: DataError) -> ApiError {
        if e.status.is_server_error() {
            tracing::error!("{}", e.message);
        }
        ApiError(e.status, e.message)
    }
}

pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> DataError {
    DataError::internal(format!("cannot {what} {}: {e}", path.display()))
}

#[derive(Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

/// Destructive calls carry `{"confirm": "<app>"}`.
pub fn confirmed(body: &[u8], app: &str, action: &str) -> Result<(), DataError> {
    let given = serde_json::from_slice::<Confirm>(body)
        .ok()
        .and_then(|c| c.confirm);
    if given.as_deref() == Some(app) {
        Ok(())
    } else {
        Err(DataError::user(
            StatusCode::BAD_REQUEST,
            format!("{action} cannot be undone: confirm by sending {{\"confirm\": \"{app}\"}} (on the command line: --confirm {app})"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_names_the_app() {
        assert!(confirmed(br#"{"confirm":"blog"}"#, "blog", "Dropping").is_ok());
        for body in [&b""[..], b"{}", br#"{"confirm":"other"}"#, b"not json"] {
            let e = confirmed(body, "blog", "Dropping the database").unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(r#"{"confirm": "blog"}"#), "{e}");
        }
    }
}
