//! `paas apps`, `paas apps:create`, `paas apps:destroy`.

use super::{print_json, Result, Target};
use reqwest::Method;

/// `paas apps`: each app's name, live release and URL.
pub async fn list(t: &Target) -> Result<()> {
    let v = t.call(Method::GET, "/api/apps", None).await?;
    if t.json {
        return print_json(&v);
    }
    let apps = v.as_array().cloned().unwrap_or_default();
    if apps.is_empty() {
        println!("No apps yet: git push to http://HOST/<app>.git creates one.");
    }
    for a in apps {
        let live = a["live"]["version"]
            .as_i64()
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<6} {}",
            a["name"].as_str().unwrap_or(""),
            live,
            a["url"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `paas apps:create NAME`: an empty app, and how to push to it.
pub async fn create(t: &Target, name: &str) -> Result<()> {
    let body = serde_json::json!({ "name": name });
    let v = t.call(Method::POST, "/api/apps", Some(body)).await?;
    if t.json {
        return print_json(&v);
    }
    println!("{}", v["message"].as_str().unwrap_or("created"));
    println!("  git remote add paas {}/{name}.git", t.url);
    println!("  git push paas main");
    Ok(())
}

/// `paas apps:destroy -a APP --confirm APP [--no-backup]`.
pub async fn destroy(t: &Target, app: &str, confirm: Option<&str>, no_backup: bool) -> Result<()> {
    let body = serde_json::json!({ "confirm": confirm, "no_backup": no_backup });
    t.say(Method::DELETE, &format!("/api/apps/{app}"), Some(body))
        .await
}
