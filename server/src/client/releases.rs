//! `paas releases`, `paas rollback`, `paas restart`.

use super::{print_json, ClientError, Result, Target};
use reqwest::Method;

/// `paas releases`: one line per release, newest first.
pub async fn list(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::GET, &format!("/api/apps/{app}/releases"), None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    let rels = v.as_array().cloned().unwrap_or_default();
    if rels.is_empty() {
        println!("{app} has no releases yet: `git push paas main` deploys it.");
    }
    for r in rels {
        println!(
            "v{:<4} {:<16} {:<8} {:<24} {}",
            r["version"].as_i64().unwrap_or(0),
            r["status"].as_str().unwrap_or(""),
            r["commit"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(7)
                .collect::<String>(),
            r["description"].as_str().unwrap_or(""),
            r["error"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `paas rollback [vN] [--restore-db]`.
pub async fn rollback(
    t: &Target,
    app: &str,
    version: Option<&str>,
    restore_db: bool,
) -> Result<()> {
    let body = match version {
        None => serde_json::json!({ "restore_db": restore_db }),
        Some(v) => match v.trim_start_matches('v').parse::<i64>() {
            Ok(n) => serde_json::json!({ "version": n, "restore_db": restore_db }),
            Err(_) => {
                return Err(ClientError::Usage(format!(
                    "{v:?} is not a release like v3: `paas releases --app {app}` lists them"
                )))
            }
        },
    };
    t.action(Method::POST, &format!("/api/apps/{app}/rollback"), body)
        .await
}

/// `paas restart`: new containers of the live release.
pub async fn restart(t: &Target, app: &str) -> Result<()> {
    t.action(
        Method::POST,
        &format!("/api/apps/{app}/restart"),
        serde_json::json!({}),
    )
    .await
}
