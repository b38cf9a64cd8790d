//! `paas domains`, `paas domains:add`, `paas domains:remove`.

use super::{print_json, Result, Target};
use reqwest::Method;

/// `paas domains`: the default host, then the custom domains.
pub async fn list(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::GET, &format!("/api/apps/{app}/domains"), None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    println!("{} (default)", v["default"].as_str().unwrap_or(""));
    for d in v["domains"].as_array().cloned().unwrap_or_default() {
        println!("{}", d.as_str().unwrap_or(""));
    }
    Ok(())
}

/// `paas domains:add HOST`.
pub async fn add(t: &Target, app: &str, domain: &str) -> Result<()> {
    let body = serde_json::json!({ "domain": domain });
    t.say(
        Method::POST,
        &format!("/api/apps/{app}/domains"),
        Some(body),
    )
    .await
}

/// `paas domains:remove HOST`.
pub async fn remove(t: &Target, app: &str, domain: &str) -> Result<()> {
    t.say(
        Method::DELETE,
        &format!("/api/apps/{app}/domains/{domain}"),
        None,
    )
    .await
}
