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
    println!("{:<24} {:<22} LAST USED", "NAME", "CREATED");
    for tk in list {
        let when = |k: &str| {
            tk[k]
                .as_i64()
                .map(crate::dashboard::format_time)
                .unwrap_or_else(|| "never".into())
        };
        println!(
            "{:<24} {:<22} {}",
            tk["name"].as_str().unwrap_or(""),
            when("created_at"),
            when("last_used_at")
        );
    }
    Ok(())
}

/// A token's name, checked before the daemon is asked.
pub fn check_name(name: &str) -> Result<()> {
    crate::tokens::validate_name(name).map_err(ClientError::Usage)
}

/// `paas tokens:create --name NAME`: the secret alone on stdout.
pub async fn create(t: &Target, name: &str) -> Result<()> {
    let v = t
        .call(
            Method::POST,
            "/api/tokens",
            Some(serde_json::json!({ "name": name })),
        )
        .await?;
    if t.json {
        return print_json(&v);
    }
    // The secret goes alone to stdout (for scripts); the advice to stderr.
    println!("{}", v["token"].as_str().unwrap_or(""));
    eprintln!(
        "Token {name} created. It is shown only now: keep it, e.g. export PAAS_TOKEN=<it>, or use it as the password of the paas git remote."
    );
    Ok(())
}

/// `paas tokens:revoke NAME`.
pub async fn revoke(t: &Target, name: &str) -> Result<()> {
    t.say(Method::DELETE, &format!("/api/tokens/{name}"), None)
        .await
}
