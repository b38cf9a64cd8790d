//! `paas tokens`, `paas tokens:create`, `paas tokens:revoke`.

use super::{print_json, ClientError, Result, Target};
use reqwest::Method;

/// `paas tokens`: names, creation and last use (never the secrets).
pub async fn list(t: &Target) -> Result<()> {
    let v = t.call(Method::GET, "/api/tokens", None).await?;
    if t.json {
        return print_json(&v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No API tokens yet: `paas tokens:create --name laptop` makes one.");
        return Ok(());
    }
    println!(
        "{:<24} {:<22} {:<22} {:<16} MADE BY",
        "NAME", "CREATED", "LAST USED", "SCOPE"
    );
    for tk in list {
        let when = |k: &str| {
            tk[k]
                .as_i64()
                .map(crate::dashboard::format_time)
                .unwrap_or_else(|| "never".into())
        };
        let scope = match tk["app"].as_str() {
            Some(app) => format!("deploy {app}"),
            None => "admin".into(),
        };
        println!(
            "{:<24} {:<22} {:<22} {:<16} {}",
            tk["name"].as_str().unwrap_or(""),
            when("created_at"),
            when("last_used_at"),
            scope,
            tk["created_by"].as_str().unwrap_or("admin token")
        );
    }
    Ok(())
}

/// A token's name, checked before the daemon is asked.
pub fn check_name(name: &str) -> Result<()> {
    crate::tokens::validate_name(name).map_err(ClientError::Usage)
}

/// `paas tokens:create --name NAME [--app APP]`: the secret alone on stdout.
pub async fn create(t: &Target, name: &str, app: Option<&str>) -> Result<()> {
    let body = match app {
        Some(app) => serde_json::json!({ "name": name, "app": app }),
        None => serde_json::json!({ "name": name }),
    };
    let v = t.call(Method::POST, "/api/tokens", Some(body)).await?;
    if t.json {
        return print_json(&v);
    }
    // The secret goes alone to stdout (for scripts); the advice to stderr.
    println!("{}", v["token"].as_str().unwrap_or(""));
    let scope = match app {
        Some(app) => format!(" It may only push to and read the app {app}."),
        None => String::new(),
    };
    eprintln!(
        "Token {name} created.{scope} It is shown only now: keep it, e.g. export PAAS_TOKEN=<it>, or use it as the password of the paas git remote."
    );
    Ok(())
}

/// `paas tokens:revoke NAME`.
pub async fn revoke(t: &Target, name: &str) -> Result<()> {
    t.say(Method::DELETE, &format!("/api/tokens/{name}"), None)
        .await
}
