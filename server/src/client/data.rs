//! `paas pg:*` and `paas backups*`.

use super::{print_json, Result, Target};
use reqwest::Method;

/// `paas pg:create`.
pub async fn pg_create(t: &Target, app: &str) -> Result<()> {
    t.say(Method::POST, &format!("/api/apps/{app}/postgres"), None)
        .await
}

/// `paas pg:info`: where the database is (never its password).
pub async fn pg_info(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::GET, &format!("/api/apps/{app}/postgres"), None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    println!(
        "database {} (role {}) at {}:{} on server {} ({})",
        v["database"].as_str().unwrap_or(""),
        v["role"].as_str().unwrap_or(""),
        v["host"].as_str().unwrap_or(""),
        v["port"],
        v["server"].as_str().unwrap_or(""),
        if v["server_running"].as_bool() == Some(true) {
            "running"
        } else {
            "not running: it starts on the next pg or backup command"
        }
    );
    Ok(())
}

/// `paas pg:destroy --confirm APP`.
pub async fn pg_destroy(t: &Target, app: &str, confirm: Option<&str>) -> Result<()> {
    let body = serde_json::json!({ "confirm": confirm });
    t.say(
        Method::DELETE,
        &format!("/api/apps/{app}/postgres"),
        Some(body),
    )
    .await
}

/// `paas backups:create`.
pub async fn backup(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::POST, &format!("/api/apps/{app}/backups"), None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    println!(
        "backup {} of {} taken ({}, {} bytes, {} ms)",
        v["id"].as_str().unwrap_or(""),
        app,
        v["kind"].as_str().unwrap_or(""),
        v["size"],
        v["duration_ms"]
    );
    Ok(())
}

/// `paas backups`: one line per backup, newest first.
pub async fn backups(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::GET, &format!("/api/apps/{app}/backups"), None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!(
            "No backups of {app} yet: `paas backups:create -a {app}` takes one (paas also takes one daily)."
        );
    }
    for b in list {
        println!(
            "{:<22} {:<8} {:<7} {:>12} {:<9} {}",
            b["id"].as_str().unwrap_or(""),
            b["kind"].as_str().unwrap_or(""),
            b["status"].as_str().unwrap_or(""),
            b["size"],
            b["trigger"].as_str().unwrap_or(""),
            b["error"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `paas backups:restore ID --confirm APP`.
pub async fn restore(t: &Target, app: &str, id: &str, confirm: Option<&str>) -> Result<()> {
    let body = serde_json::json!({ "confirm": confirm });
    t.say(
        Method::POST,
        &format!("/api/apps/{app}/backups/{id}/restore"),
        Some(body),
    )
    .await
}
